//! The over-optimisation curve (Gao et al. 2022): an RL run's held-out scores against how
//! far its policy has drifted from the reference (SFT) policy. Every `eval_every` steps
//! the trainer samples one answer per held-out prompt and logs their mean reward-model
//! score (`heldout/reward`), summed KL to the reference (`heldout/kl`, nats) and, on the
//! demo world's tasks, the oracle's gold score (`heldout/gold`). The gold score rising
//! and then falling while the reward model's keeps rising is the reward model being
//! over-optimised.

use registry::runs::MetricSeries;
use serde::Serialize;
use serde_json::Value;

use super::chart::{self, tick, XyChart, XyPoint, XySeries};

pub const KL: &str = "heldout/kl";
pub const REWARD: &str = "heldout/reward";
pub const GOLD: &str = "heldout/gold";
/// The series the curve is drawn from.
pub const SERIES: [&str; 3] = [KL, REWARD, GOLD];

/// One evaluation of a run's policy on the held-out prompts.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HeldOut {
    pub step: i64,
    /// Mean summed KL of the samples to the reference policy, in nats.
    pub kl: f64,
    /// Mean reward-model score.
    pub reward: Option<f64>,
    /// Mean gold (oracle) score, in [-1, 1]; only on the demo world's tasks.
    pub gold: Option<f64>,
}

/// A run's held-out evaluations in step order: those steps with a KL, and none unless it
/// logged a reward-model or a gold score too.
pub fn held_out(series: &[MetricSeries]) -> Vec<HeldOut> {
    let find = |name: &str| series.iter().find(|s| s.name == name);
    let Some(kl) = find(KL) else { return Vec::new() };
    let (reward, gold) = (find(REWARD), find(GOLD));
    if reward.is_none() && gold.is_none() {
        return Vec::new();
    }
    let at = |s: Option<&MetricSeries>, step: i64| {
        let s = s?;
        s.steps.iter().position(|&x| x == step).map(|i| s.values[i])
    };
    let mut out: Vec<HeldOut> = kl
        .steps
        .iter()
        .zip(&kl.values)
        .map(|(&step, &kl)| HeldOut { step, kl, reward: at(reward, step), gold: at(gold, step) })
        .collect();
    out.sort_by_key(|h| h.step);
    out
}

/// The score a run's peak is read from: gold where it has one, else the reward model's.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Score {
    Gold,
    Reward,
}

impl Score {
    fn of(self, h: &HeldOut) -> Option<f64> {
        match self {
            Score::Gold => h.gold,
            Score::Reward => h.reward,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Score::Gold => "gold",
            Score::Reward => "RM score",
        }
    }
}

/// "Gold peaks at step 40 (KL 3.20 nats): 0.512; last eval: step 100, KL 9.87 nats, gold
/// 0.102." (the RM score's where there is no gold); the earliest step of a tied peak.
pub fn peak_sentence(evals: &[HeldOut]) -> Option<String> {
    let score = if evals.iter().any(|h| h.gold.is_some()) { Score::Gold } else { Score::Reward };
    let scored: Vec<(&HeldOut, f64)> = evals.iter().filter_map(|h| Some((h, score.of(h)?))).collect();
    let &(peak, best) = scored.iter().fold(None, |best: Option<&(&HeldOut, f64)>, p| match best {
        Some(b) if b.1 >= p.1 => Some(b),
        _ => Some(p),
    })?;
    let &(last, value) = scored.last()?;
    let name = score.name();
    let capital = if score == Score::Gold { "Gold" } else { "The RM score" };
    Some(format!(
        "{capital} peaks at step {} (KL {} nats): {}; last eval: step {}, KL {} nats, {name} {}.",
        peak.step,
        tick(peak.kl),
        tick(best),
        last.step,
        tick(last.kl),
        tick(value),
    ))
}

/// What a version's config says of the checkpoint its run chose, when the run chose one
/// other than its last: `"resolved": {"selection": {"by": "gold"|"reward", "step": N,
/// "value": x}}` (the worker records what it resolved under `resolved`).
pub fn selection_sentence(config: &Value) -> Option<String> {
    let selection = config.pointer("/resolved/selection")?;
    let by = match selection.get("by")?.as_str()? {
        "gold" => "gold score",
        "reward" => "RM score",
        _ => return None,
    };
    let step = selection.get("step")?.as_i64()?;
    let value = selection.get("value")?.as_f64()?;
    Some(format!(
        "The registered version is the policy evaluated at step {step}, chosen by its held-out {by} ({}).",
        tick(value)
    ))
}

/// The section that shows the curve of one run or of several (a line each).
pub struct Overoptimisation {
    /// The RM score and the gold score against KL: two charts side by side that share the
    /// KL axis, as their scales differ; a chart only for a score some run logged.
    pub charts: Vec<XyChart>,
    /// Each run's label (empty on a run's own page) and what it says: where its score
    /// peaks (and on a run's page, which checkpoint its version is).
    pub peaks: Vec<(String, String)>,
}

/// One run's curve to draw: its label, colour and evaluations.
pub struct Curve {
    pub label: String,
    pub color: &'static str,
    pub evals: Vec<HeldOut>,
}

/// The section for `curves` (those without evaluations are left out); None if none has any.
/// Labelled curves (a version's) get a legend and their label in each point's tooltip.
pub fn section(curves: &[Curve]) -> Option<Overoptimisation> {
    let curves: Vec<&Curve> = curves.iter().filter(|c| !c.evals.is_empty()).collect();
    if curves.is_empty() {
        return None;
    }
    // On a run's own page the one curve has no label: no legend, no label in tooltips.
    let labelled = curves.iter().any(|c| !c.label.is_empty());
    let kls = curves.iter().flat_map(|c| c.evals.iter().map(|h| h.kl));
    let kl_range = kls.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let kl_range = (kl_range.0 < kl_range.1).then_some(kl_range);
    let mut charts = Vec::new();
    for (score, name) in [(Score::Reward, "Held-out RM score"), (Score::Gold, "Held-out gold score")] {
        let series: Vec<XySeries> = curves
            .iter()
            .map(|c| XySeries {
                label: c.label.clone(),
                color: c.color,
                points: c
                    .evals
                    .iter()
                    .filter_map(|h| {
                        let value = score.of(h)?;
                        let of = if labelled { format!("{}, ", c.label) } else { String::new() };
                        let title = format!(
                            "{of}step {}: KL {} nats, {} {}",
                            h.step,
                            tick(h.kl),
                            score.name(),
                            tick(value)
                        );
                        Some(XyPoint { x: h.kl, y: value, title })
                    })
                    .collect(),
            })
            .filter(|s| !s.points.is_empty())
            .collect();
        if !series.is_empty() {
            let y_title = if score == Score::Gold { "gold score" } else { "RM score" };
            charts.push(chart::xy_chart(
                name,
                ("KL to the reference (nats)", y_title),
                kl_range,
                &series,
                labelled,
            ));
        }
    }
    let peaks = curves
        .iter()
        .filter_map(|c| {
            Some((if labelled { c.label.clone() } else { String::new() }, peak_sentence(&c.evals)?))
        })
        .collect();
    Some(Overoptimisation { charts, peaks })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(name: &str, steps: &[i64], values: &[f64]) -> MetricSeries {
        MetricSeries { name: name.into(), steps: steps.to_vec(), values: values.to_vec() }
    }

    fn eval(step: i64, kl: f64, reward: Option<f64>, gold: Option<f64>) -> HeldOut {
        HeldOut { step, kl, reward, gold }
    }

    #[test]
    fn held_out_evaluations_join_the_three_series_by_step() {
        let got = held_out(&[
            series("heldout/gold", &[10, 20], &[0.1, 0.3]),
            series("heldout/kl", &[10, 20, 30], &[1.0, 2.0, 4.0]),
            series("heldout/reward", &[20, 30], &[0.5, 0.9]),
            series("loss/policy", &[10], &[0.0]),
        ]);
        assert_eq!(
            got,
            [
                eval(10, 1.0, None, Some(0.1)),
                eval(20, 2.0, Some(0.5), Some(0.3)),
                eval(30, 4.0, Some(0.9), None)
            ]
        );
    }

    #[test]
    fn without_a_kl_or_without_a_score_there_is_no_curve() {
        assert!(held_out(&[series("heldout/reward", &[10], &[0.5])]).is_empty());
        assert!(held_out(&[series("heldout/kl", &[10], &[0.5])]).is_empty());
        assert!(section(&[Curve { label: String::new(), color: "#000", evals: Vec::new() }]).is_none());
    }

    #[test]
    fn the_peak_is_golds_earliest_best_and_the_last_eval_is_named() {
        let evals = [
            eval(10, 1.0, Some(0.1), Some(0.2)),
            eval(20, 2.5, Some(0.4), Some(0.6)),
            eval(30, 4.0, Some(0.8), Some(0.6)),
            eval(40, 8.0, Some(1.2), Some(-0.25)),
        ];
        assert_eq!(
            peak_sentence(&evals).unwrap(),
            "Gold peaks at step 20 (KL 2.50 nats): 0.600; last eval: step 40, KL 8.00 nats, gold -0.250."
        );
        let no_gold: Vec<HeldOut> = evals.iter().map(|h| HeldOut { gold: None, ..h.clone() }).collect();
        assert_eq!(
            peak_sentence(&no_gold).unwrap(),
            "The RM score peaks at step 40 (KL 8.00 nats): 1.20; last eval: step 40, KL 8.00 nats, RM score 1.20."
        );
    }

    #[test]
    fn a_chosen_checkpoint_is_named_with_its_score() {
        let config =
            serde_json::json!({"resolved": {"selection": {"by": "gold", "step": 40, "value": 0.6123}}});
        assert_eq!(
            selection_sentence(&config).unwrap(),
            "The registered version is the policy evaluated at step 40, chosen by its held-out gold score (0.612)."
        );
        assert_eq!(
            selection_sentence(
                &serde_json::json!({"resolved": {"selection": {"by": "luck", "step": 1, "value": 0}}})
            ),
            None
        );
        assert_eq!(selection_sentence(&serde_json::json!({})), None);
    }

    #[test]
    fn two_runs_share_the_kl_axis_and_each_has_a_line_in_each_chart() {
        let a =
            Curve { label: "a:1".into(), color: "#111", evals: vec![eval(10, 1.0, Some(0.0), Some(0.5))] };
        let b = Curve {
            label: "b:1".into(),
            color: "#222",
            evals: vec![eval(10, 2.0, Some(1.0), None), eval(20, 5.0, Some(2.0), None)],
        };
        let o = section(&[a, b]).unwrap();
        let names: Vec<_> = o.charts.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["Held-out RM score", "Held-out gold score"]);
        // KL 1..5 over 62..306 in both charts: b's gold-less line is not in the gold chart.
        assert_eq!(o.charts[0].lines[0].points, "62.0,140.0");
        assert_eq!(o.charts[0].lines[1].points, "123.0,77.0 306.0,14.0");
        assert_eq!(o.charts[1].lines.len(), 1);
        assert_eq!((o.charts[1].x_min.as_str(), o.charts[1].x_max.as_str()), ("1.00", "5.00"));
        assert_eq!(o.charts[0].lines[1].marks[1].title, "b:1, step 20: KL 5.00 nats, RM score 2.00");
        assert!(o.charts.iter().all(|c| c.legend && c.x_title == "KL to the reference (nats)"));
        assert_eq!(o.peaks[1].0, "b:1");
    }
}

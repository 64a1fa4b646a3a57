//! The automatic comparison (researchers): what an eval run measured. A summary per
//! version (reward-model score, KL to the reference, oracle score, length, EOS rate,
//! repetition), each version's win rate against a baseline by the reward model and by
//! the oracle with bootstrap 95% intervals (drawn as bars with error bars), and every
//! prompt's samples side by side, the best score per prompt and the samples that differ
//! from the baseline's marked; for the versions that RL runs trained, their
//! over-optimisation curves (held-out scores against KL, a line per version). The same as
//! JSON at `/api/evals/{id}` for export.
//!
//! Human evaluation starts here too: a blind A/B batch between the run's versions (their
//! samples become comparison tasks), the annotators' win rates against the baseline, a
//! Bradley–Terry leaderboard of every version of the project with votes, and the prompts
//! where the annotators' majority and the reward model disagree, which can be sent back
//! as ranking tasks.

use std::collections::HashMap;

use actix_web::web::{self, ServiceConfig};
use actix_web::{get, post, HttpResponse};
use askama::Template;
use labeling::ab::{self, AbBatch, AbProgress, EvaluatedSample};
use labeling::annotation::Vote;
use labeling::leaderboard::{self, Disagreement, Rating};
use labeling::submit::VersionVote;
use registry::error::RegistryError;
use registry::evals::{self, EvalSample, EvalSummary, ProbeWord, SkillScore, WinRate};
use registry::probe_stats::ProbeStatistic;
use registry::runs::{self, Run, RunKind, RunStatus};
use registry::versions;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

use super::runs::chart::PALETTE;
use super::runs::optional;
use super::runs::overoptimisation::{self, Curve, HeldOut, Overoptimisation};
use super::{page, see_other, Nav};
use crate::auth::{csrf_field, CsrfForm, CsrfJson, CsrfOnly, Researcher};
use crate::caller::{Caller, Reply};
use crate::error::AppError;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(show)
        .service(api_show)
        .service(ab_batch)
        .service(api_ab_batch)
        .service(ranking_tasks)
        .service(api_ranking_tasks);
}

#[derive(Deserialize)]
pub struct Query {
    /// The version the others are measured against (default: the run's first).
    baseline: Option<i64>,
    /// Set after a form: how many tasks it made.
    #[serde(default)]
    ab_tasks: Option<usize>,
    #[serde(default)]
    ranking_tasks: Option<usize>,
    /// The page's prompt-by-prompt table: its page (from 1), rows per page, order
    /// (`prompt` or `gap`) and text filter. The JSON report lists every prompt.
    page: Option<i64>,
    #[serde(alias = "per-page")]
    per_page: Option<i64>,
    sort: Option<String>,
    #[serde(default)]
    q: String,
}

/// Rows of the prompt-by-prompt table per page, by default and at most.
const PROMPTS_PER_PAGE: i64 = 50;
const MAX_PROMPTS_PER_PAGE: i64 = 500;

/// The order of the prompt-by-prompt table.
#[derive(Clone, Copy, PartialEq)]
enum PromptOrder {
    /// As the prompts were added.
    Prompt,
    /// The widest spread of reward-model scores between the versions first.
    Gap,
}

impl PromptOrder {
    fn parse(sort: Option<&str>) -> Result<PromptOrder, AppError> {
        match sort.unwrap_or("prompt") {
            "prompt" | "" => Ok(PromptOrder::Prompt),
            "gap" => Ok(PromptOrder::Gap),
            other => Err(AppError::Invalid {
                field: "sort".into(),
                reason: format!("{other:?} is not an order: sort=prompt or sort=gap"),
            }),
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            PromptOrder::Prompt => "prompt",
            PromptOrder::Gap => "gap",
        }
    }
}

/// The page of the prompt-by-prompt table shown: the rows that contain the filter's text,
/// in the order asked for, one page of them.
struct PromptTable {
    rows: Vec<PromptRow>,
    /// Prompts of the run, and those the filter kept.
    total: usize,
    matching: usize,
    page: i64,
    pages: i64,
    per_page: i64,
    order: PromptOrder,
    filter: String,
}

/// The spread between a prompt's best and worst reward-model scores (None with fewer
/// than two scores).
fn score_gap(row: &PromptRow) -> Option<f32> {
    let scores: Vec<f32> = row.samples.iter().filter_map(|s| s.as_ref()?.reward).collect();
    if scores.len() < 2 {
        return None;
    }
    let (lo, hi) =
        scores.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    Some(hi - lo)
}

impl PromptTable {
    /// Filters, orders and cuts `rows` as `query` asks; a page or size out of range is a
    /// 422 naming `page` or `per_page`.
    fn new(mut rows: Vec<PromptRow>, query: &Query) -> Result<PromptTable, AppError> {
        let order = PromptOrder::parse(query.sort.as_deref())?;
        let per_page = query.per_page.unwrap_or(PROMPTS_PER_PAGE);
        if !(1..=MAX_PROMPTS_PER_PAGE).contains(&per_page) {
            return Err(AppError::Invalid {
                field: "per_page".into(),
                reason: format!("must be 1 to {MAX_PROMPTS_PER_PAGE}, not {per_page}"),
            });
        }
        let total = rows.len();
        let filter = query.q.trim().to_owned();
        if !filter.is_empty() {
            let needle = filter.to_lowercase();
            let contains = |text: &str| text.to_lowercase().contains(&needle);
            rows.retain(|r| contains(&r.prompt) || r.samples.iter().flatten().any(|s| contains(&s.text)));
        }
        if order == PromptOrder::Gap {
            // Widest first; prompts without two scores last, in prompt order (a stable sort).
            rows.sort_by(|a, b| match (score_gap(a), score_gap(b)) {
                (Some(x), Some(y)) => y.total_cmp(&x),
                (x, y) => y.is_some().cmp(&x.is_some()),
            });
        }
        let matching = rows.len();
        let pages = (matching as i64 + per_page - 1) / per_page;
        let page = query.page.unwrap_or(1);
        if page < 1 || page > pages.max(1) {
            return Err(AppError::Invalid {
                field: "page".into(),
                reason: format!("must be 1 to {}, not {page}", pages.max(1)),
            });
        }
        let rows = rows.into_iter().skip(((page - 1) * per_page) as usize).take(per_page as usize).collect();
        Ok(PromptTable { rows, total, matching, page, pages, per_page, order, filter })
    }
}

/// `text` in pieces, each undecodable byte (U+FFFD, the replacement character) a piece of
/// its own marked true, so that the page shows it as a labelled marker.
fn undecodable_marked(text: &str) -> Vec<(String, bool)> {
    let mut pieces: Vec<(String, bool)> = Vec::new();
    for (i, part) in text.split('\u{FFFD}').enumerate() {
        if i > 0 {
            pieces.push(("\u{FFFD}".into(), true));
        }
        if !part.is_empty() {
            pieces.push((part.to_owned(), false));
        }
    }
    pieces
}

/// One evaluated version: its summary and its win rates against the baseline.
#[derive(Serialize)]
pub struct VersionResult {
    pub version_id: i64,
    /// `model:n`.
    pub label: String,
    pub color: &'static str,
    pub summary: EvalSummary,
    /// None for the baseline itself, or without scores.
    pub win_rate_reward: Option<WinRate>,
    pub win_rate_oracle: Option<WinRate>,
    /// By the annotators' A/B votes between it and the baseline (`prompts` counts votes).
    pub win_rate_human: Option<WinRate>,
    /// The held-out evaluations of the RL run that trained it, in step order (empty for a
    /// version no such run trained): its over-optimisation curve.
    pub overoptimisation: Vec<HeldOut>,
}

/// One prompt with each version's sample (None where a version has none).
#[derive(Serialize)]
pub struct PromptRow {
    pub prompt_id: i64,
    pub prompt: String,
    pub samples: Vec<Option<EvalSample>>,
    /// Index of the best reward-model score of the row.
    pub best: Option<usize>,
}

#[derive(Serialize)]
pub struct EvalReport {
    pub run: Run,
    pub baseline: i64,
    pub versions: Vec<VersionResult>,
    pub prompts: Vec<PromptRow>,
    pub human: HumanResults,
    /// Few-shot accuracy by version, skill and shots (when the run measured it).
    pub skills: Vec<SkillScore>,
    /// Probes' most frequent next words by probe, group and version.
    pub probes: Vec<ProbeWord>,
    /// Each probe's Jensen–Shannon divergence between groups by version, with its
    /// bootstrap interval, the words that differ most and the change against the baseline.
    pub probe_statistics: Vec<ProbeStatistic>,
    /// How often the reward model orders two versions' samples of a prompt as the demo
    /// world's oracle does, for each pair of versions (empty without both scores).
    pub reward_oracle_agreement: Vec<AgreementRow>,
}

/// The reward model against the oracle on the pairs of samples of two versions.
#[derive(Serialize)]
pub struct AgreementRow {
    pub version_a: i64,
    pub version_b: i64,
    pub label_a: String,
    pub label_b: String,
    /// Pairs the reward model orders as the oracle does, of `pairs` (oracle ties left out).
    pub agree: usize,
    pub pairs: usize,
}

/// What the annotators said about the run's samples, and the project's leaderboard.
#[derive(Serialize)]
pub struct HumanResults {
    pub progress: AbProgress,
    /// Every version of the project with A/B votes, best first.
    pub leaderboard: Vec<LeaderboardRow>,
    /// Prompts of this run where the annotators' majority and the reward model disagree.
    pub disagreements: Vec<DisagreementRow>,
}

#[derive(Serialize)]
pub struct LeaderboardRow {
    #[serde(flatten)]
    pub rating: Rating,
    pub label: String,
}

#[derive(Serialize)]
pub struct DisagreementRow {
    #[serde(flatten)]
    pub disagreement: Disagreement,
    pub prompt: String,
    pub annotators_prefer_label: String,
    pub reward_model_prefers_label: String,
}

async fn report(pool: &PgPool, run_id: i64, baseline: Option<i64>) -> Result<EvalReport, AppError> {
    let evals::Report { run, baseline, versions: measured, samples, skills, probes, probe_statistics } =
        evals::report(pool, run_id, baseline).await.map_err(|e| match e {
            RegistryError::NotAnEvalRun(_) => {
                AppError::Invalid { field: "run".into(), reason: e.to_string() }
            }
            RegistryError::NotEvaluated { .. } => {
                AppError::Invalid { field: "baseline".into(), reason: e.to_string() }
            }
            e => e.into(),
        })?;
    let votes = match run.project_id {
        Some(project) => labeling::submit::version_votes(pool, project).await?,
        None => Vec::new(),
    };
    // Win rates and disagreements are of this run's own samples; the leaderboard is of
    // every vote of the project.
    let of_run: Vec<VersionVote> = ab::run_votes(pool, run_id).await?;
    let ids: Vec<i64> = measured.iter().map(|v| v.version_id).collect();
    let mut trained = runs::metrics_of_versions(pool, &ids, &overoptimisation::SERIES).await?;
    let versions: Vec<VersionResult> = measured
        .into_iter()
        .enumerate()
        .map(|(i, v)| VersionResult {
            win_rate_human: (v.version_id != baseline)
                .then(|| human_win_rate(&of_run, v.version_id, baseline))
                .flatten(),
            version_id: v.version_id,
            label: v.label,
            color: PALETTE[i % PALETTE.len()],
            summary: v.summary,
            win_rate_reward: v.win_rate_reward,
            win_rate_oracle: v.win_rate_oracle,
            overoptimisation: overoptimisation::held_out(&trained.remove(&v.version_id).unwrap_or_default()),
        })
        .collect();
    let mut prompt_ids: Vec<i64> = samples.iter().map(|s| s.prompt_id).collect();
    prompt_ids.sort_unstable();
    prompt_ids.dedup();
    let found = disagreements(&of_run, &samples);
    let agreement = evals::reward_oracle_agreement_by_versions(&samples);
    let mut labels: HashMap<i64, String> = versions.iter().map(|v| (v.version_id, v.label.clone())).collect();
    // A thousand refits: off the async workers, which serve the other requests meanwhile.
    let board = web::block(move || {
        leaderboard::bradley_terry(&votes, leaderboard::LEADERBOARD_RESAMPLES, run_id as u64)
    })
    .await
    .map_err(AppError::internal)?;
    let others: Vec<i64> = board.iter().map(|r| r.version_id).filter(|id| !labels.contains_key(id)).collect();
    labels.extend(versions::labels(pool, &others).await?);
    let mut wanted: Vec<i64> = prompt_ids.clone();
    wanted.extend(found.iter().map(|d| d.prompt_id));
    let texts = labeling::prompts::texts(pool, &wanted).await?;
    let label = |id: i64| labels.get(&id).cloned().unwrap_or_else(|| format!("version {id}"));
    let human = HumanResults {
        progress: ab::ab_progress(pool, run_id).await?,
        leaderboard: board
            .into_iter()
            .map(|rating| LeaderboardRow { label: label(rating.version_id), rating })
            .collect(),
        disagreements: found
            .into_iter()
            .map(|d| DisagreementRow {
                prompt: texts.get(&d.prompt_id).cloned().unwrap_or_default(),
                annotators_prefer_label: label(d.annotators_prefer),
                reward_model_prefers_label: label(d.reward_model_prefers),
                disagreement: d,
            })
            .collect(),
    };
    let mut by_key: HashMap<(i64, i64), EvalSample> =
        samples.into_iter().map(|s| ((s.prompt_id, s.version_id), s)).collect();
    let prompts = prompt_ids
        .into_iter()
        .map(|prompt_id| {
            let samples: Vec<Option<EvalSample>> =
                versions.iter().map(|v| by_key.remove(&(prompt_id, v.version_id))).collect();
            let best = samples
                .iter()
                .enumerate()
                .filter_map(|(i, s)| Some((i, s.as_ref()?.reward?)))
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .map(|(i, _)| i);
            PromptRow { prompt_id, prompt: texts.get(&prompt_id).cloned().unwrap_or_default(), samples, best }
        })
        .collect();
    let reward_oracle_agreement = agreement
        .into_iter()
        .map(|((a, b), (agree, pairs))| AgreementRow {
            version_a: a,
            version_b: b,
            label_a: label(a),
            label_b: label(b),
            agree,
            pairs,
        })
        .collect();
    Ok(EvalReport {
        run,
        baseline,
        versions,
        prompts,
        human,
        skills,
        probes,
        probe_statistics,
        reward_oracle_agreement,
    })
}

/// Where the annotators' votes on the run's samples disagree with its reward model.
fn disagreements(votes: &[VersionVote], samples: &[EvalSample]) -> Vec<Disagreement> {
    let rewards: HashMap<(i64, i64), f32> =
        samples.iter().filter_map(|s| Some(((s.version_id, s.prompt_id), s.reward?))).collect();
    leaderboard::disagreements(votes, |v, p| rewards.get(&(v, p)).copied())
}

/// The annotators' win rate of `version` against `baseline` over the votes between the
/// two (a tie or both-bad counts half), with a bootstrap interval over votes.
fn human_win_rate(votes: &[VersionVote], version: i64, baseline: i64) -> Option<WinRate> {
    let pairs: Vec<(f32, f32)> = votes
        .iter()
        .filter_map(|v| {
            let (a, b) = (v.version_a?, v.version_b?);
            let version_is_a = match (a, b) {
                (a, b) if a == version && b == baseline => true,
                (a, b) if a == baseline && b == version => false,
                _ => return None,
            };
            Some(match (v.vote, version_is_a) {
                (Vote::A, true) | (Vote::B, false) => (0.0, 1.0),
                (Vote::A, false) | (Vote::B, true) => (1.0, 0.0),
                (Vote::Tie | Vote::BothBad, _) => (0.5, 0.5),
            })
        })
        .collect();
    evals::win_rate(&pairs, evals::BOOTSTRAP_RESAMPLES, version as u64)
}

#[derive(Template)]
#[template(path = "eval.html")]
struct EvalPage {
    nav: Nav,
    /// The report, its prompts moved into `table`.
    report: EvalReport,
    table: PromptTable,
    finished: bool,
    /// What the last form did, shown once.
    notice: Option<String>,
    /// The over-optimisation curves of the versions that RL runs trained, a line each.
    overoptimisation: Option<Overoptimisation>,
}

impl EvalPage {
    /// `text` with its undecodable bytes marked (see [`undecodable_marked`]).
    fn marked(&self, text: &str) -> Vec<(String, bool)> {
        undecodable_marked(text)
    }

    /// This page with the prompt table at `page`, in `order`, keeping the baseline, size
    /// and filter.
    fn table_link(&self, page: i64, order: PromptOrder) -> String {
        let mut query: Vec<(&str, String)> = vec![
            ("baseline", self.report.baseline.to_string()),
            ("sort", order.as_str().into()),
            ("per_page", self.table.per_page.to_string()),
        ];
        if !self.table.filter.is_empty() {
            query.push(("q", self.table.filter.clone()));
        }
        query.push(("page", page.to_string()));
        let encoded = serde_urlencoded::to_string(&query).unwrap_or_default();
        format!("/evals/{}?{encoded}#eval-prompts-heading", self.report.run.id)
    }

    /// Another page of the table in its order.
    fn page_link(&self, page: i64) -> String {
        self.table_link(page, self.table.order)
    }

    /// The table's first page in `order`.
    fn order_link(&self, order: PromptOrder) -> String {
        self.table_link(1, order)
    }

    fn is_gap_order(&self) -> bool {
        self.table.order == PromptOrder::Gap
    }

    fn gap(&self, row: &PromptRow) -> String {
        score_gap(row).map_or("—".to_owned(), |g| format!("{g:.3}"))
    }

    /// The send-back form's confirmation: one ranking task per prompt, however many
    /// pairs of it disagree.
    fn send_back_confirm(&self) -> String {
        let mut prompts: Vec<i64> =
            self.report.human.disagreements.iter().map(|d| d.disagreement.prompt_id).collect();
        prompts.sort_unstable();
        prompts.dedup();
        match prompts.len() {
            1 => "Send 1 prompt back as a ranking task?".to_owned(),
            n => format!("Send {n} prompts back as ranking tasks?"),
        }
    }

    /// The A/B form's confirmation with its default values: every other version against
    /// the baseline on the default number of prompts (eval.js recounts as they change).
    fn ab_confirm(&self) -> String {
        let pairs = self.report.versions.len().saturating_sub(1);
        let prompts = self.ab_prompts_default();
        format!(
            "Create up to {} blind A/B tasks ({prompts} prompts × {pairs} pairs) for the annotators?",
            pairs * prompts
        )
    }

    fn baseline_label(&self) -> &str {
        self.report.versions.iter().find(|v| v.version_id == self.report.baseline).map_or("", |v| &v.label)
    }

    fn mean(&self, value: &Option<f64>) -> String {
        value.map_or("—".to_owned(), |v| format!("{v:.3}"))
    }

    fn score(&self, value: &Option<f32>) -> String {
        value.map_or("—".to_owned(), |v| format!("{v:.3}"))
    }

    fn rate(&self, w: &Option<WinRate>) -> String {
        w.as_ref().map_or("—".to_owned(), |w| {
            format!("{:.0}% [{:.0}%, {:.0}%] of {}", 100.0 * w.rate, 100.0 * w.low, 100.0 * w.high, w.prompts)
        })
    }

    /// A sample's text in pieces, each marked when it is not in the baseline's sample of
    /// the same prompt (the baseline's own sample is unmarked).
    fn pieces(&self, row: &PromptRow, sample: &EvalSample) -> Vec<(String, bool)> {
        let at = self.report.versions.iter().position(|v| v.version_id == self.report.baseline);
        match at.and_then(|i| row.samples[i].as_ref()) {
            Some(base) if base.version_id != sample.version_id => diff_pieces(&base.text, &sample.text),
            _ => vec![(sample.text.clone(), false)],
        }
    }

    /// The shot counts measured, ascending.
    fn shots(&self) -> Vec<i16> {
        let mut shots: Vec<i16> = self.report.skills.iter().map(|s| s.shots).collect();
        shots.sort_unstable();
        shots.dedup();
        shots
    }

    /// The skills measured, in the order stored.
    fn skill_names(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for s in &self.report.skills {
            if !names.contains(&s.skill) {
                names.push(s.skill.clone());
            }
        }
        names
    }

    /// A version's accuracy with `shots` examples, the mean over skills.
    fn mean_accuracy(&self, version_id: &i64, shots: &i16) -> String {
        evals::few_shot_accuracy(&self.report.skills, *version_id)
            .into_iter()
            .find(|(k, _)| k == shots)
            .map_or("—".to_owned(), |(_, accuracy)| format!("{accuracy:.2}"))
    }

    /// A version's accuracy with `shots` examples on one skill, with its counts.
    fn skill_accuracy(&self, version_id: &i64, skill: &str, shots: &i16) -> String {
        self.report
            .skills
            .iter()
            .find(|s| s.version_id == *version_id && s.shots == *shots && s.skill == skill)
            .map_or("—".to_owned(), |s| {
                format!("{:.2} ({}/{})", s.correct as f64 / s.total as f64, s.correct, s.total)
            })
    }

    /// Each probe's index and template with its groups, in order.
    fn probe_groups(&self) -> Vec<(i16, String, Vec<String>)> {
        let mut out: Vec<(i16, String, Vec<String>)> = Vec::new();
        for w in &self.report.probes {
            if !out.iter().any(|(p, _, _)| *p == w.probe) {
                out.push((w.probe, w.template.clone(), Vec::new()));
            }
            let groups = &mut out.iter_mut().find(|(p, _, _)| *p == w.probe).expect("pushed above").2;
            if !groups.contains(&w.group_name) {
                groups.push(w.group_name.clone());
            }
        }
        out
    }

    /// A version's most frequent next words for a probe's group, with their shares.
    fn probe_words(&self, probe: &i16, group: &str, version_id: &i64) -> Vec<(String, f32)> {
        self.report
            .probes
            .iter()
            .filter(|w| w.probe == *probe && w.group_name == group && w.version_id == *version_id)
            .map(|w| (w.word.clone(), w.share))
            .collect()
    }

    /// A probe's statistic for each version that has one, in the report's version order.
    fn probe_statistics(&self, probe: &i16) -> Vec<(&VersionResult, &ProbeStatistic)> {
        self.report
            .versions
            .iter()
            .filter_map(|v| {
                let stat = self
                    .report
                    .probe_statistics
                    .iter()
                    .find(|s| s.probe == *probe && s.version_id == v.version_id)?;
                Some((v, stat))
            })
            .collect()
    }

    /// The A/B form's default number of prompts: all, up to the most a batch asks.
    fn ab_prompts_default(&self) -> usize {
        self.table.total.min(ab::MAX_BATCH_PROMPTS)
    }

    /// The leaderboard's plotted range: every interval, padded.
    fn rating_range(&self) -> (f64, f64) {
        let board = &self.report.human.leaderboard;
        let lo = board.iter().map(|r| r.rating.low).fold(f64::INFINITY, f64::min);
        let hi = board.iter().map(|r| r.rating.high).fold(f64::NEG_INFINITY, f64::max);
        if lo.is_finite() && hi.is_finite() {
            (lo - 10.0, hi + 10.0)
        } else {
            (900.0, 1100.0)
        }
    }

    /// A rating's x in the 150..550 plot.
    fn rating_x(&self, rating: &f64) -> f64 {
        let (lo, hi) = self.rating_range();
        150.0 + 400.0 * (rating - lo) / (hi - lo).max(1e-9)
    }

    /// Bars of the win rates by `which` ("reward" or "oracle"), with their intervals, as
    /// `(label, colour, width, low x, high x)` in a 0..400 wide plot.
    fn bars(&self, which: &str) -> Vec<(String, &'static str, f64, f64, f64)> {
        self.report
            .versions
            .iter()
            .filter_map(|v| {
                let w =
                    if which == "reward" { v.win_rate_reward.as_ref() } else { v.win_rate_oracle.as_ref() }?;
                Some((v.label.clone(), v.color, 400.0 * w.rate, 400.0 * w.low, 400.0 * w.high))
            })
            .collect()
    }
}

/// Texts this short are compared character by character; longer ones word by word.
const CHARACTER_DIFF_LIMIT: usize = 80;

/// `text` cut into runs of tokens that are (false) or are not (true) in a longest common
/// subsequence with `baseline`: the differences highlighted.
fn diff_pieces(baseline: &str, text: &str) -> Vec<(String, bool)> {
    let by_character =
        text.chars().count() <= CHARACTER_DIFF_LIMIT && baseline.chars().count() <= CHARACTER_DIFF_LIMIT;
    let tokens = |t: &str| -> Vec<String> {
        if by_character {
            t.chars().map(String::from).collect()
        } else {
            t.split_inclusive(char::is_whitespace).map(str::to_owned).collect()
        }
    };
    let (a, b) = (tokens(baseline), tokens(text));
    // lcs[i][j]: the longest common subsequence of a[i..] and b[j..].
    let mut lcs = vec![vec![0u32; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] { lcs[i + 1][j + 1] + 1 } else { lcs[i + 1][j].max(lcs[i][j + 1]) };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut pieces: Vec<(String, bool)> = Vec::new();
    let mut push = |token: &str, changed: bool| match pieces.last_mut() {
        Some((text, c)) if *c == changed => text.push_str(token),
        _ => pieces.push((token.to_owned(), changed)),
    };
    while j < b.len() {
        if i < a.len() && a[i] == b[j] {
            push(&b[j], false);
            i += 1;
            j += 1;
        } else if i < a.len() && lcs[i + 1][j] >= lcs[i][j + 1] {
            i += 1;
        } else {
            push(&b[j], true);
            j += 1;
        }
    }
    pieces
}

#[get("/evals/{id}")]
pub async fn show(me: Caller<Researcher>, path: web::Path<i64>, query: crate::query::Query<Query>) -> Reply {
    let mut report = report(&me.pool, path.into_inner(), query.baseline).await?;
    let table = PromptTable::new(std::mem::take(&mut report.prompts), &query)?;
    let finished = report.run.status == RunStatus::Succeeded;
    let notice = match (query.ab_tasks, query.ranking_tasks) {
        (Some(0), _) => {
            Some("No new A/B task: every pair was asked already or wrote the same text.".to_owned())
        }
        (Some(n), _) => Some(format!("{n} A/B tasks are waiting for the annotators.")),
        (_, Some(0)) => Some("No new ranking task: those prompts were sent back already.".to_owned()),
        (_, Some(n)) => Some(format!("{n} prompts were sent back to the annotators as ranking tasks.")),
        _ => None,
    };
    let curves: Vec<Curve> = report
        .versions
        .iter()
        .map(|v| Curve { label: v.label.clone(), color: v.color, evals: v.overoptimisation.clone() })
        .collect();
    let overoptimisation = overoptimisation::section(&curves);
    page(&EvalPage { nav: me.nav()?, report, table, finished, notice, overoptimisation })
}

#[get("/api/evals/{id}")]
pub async fn api_show(
    me: Caller<Researcher>,
    path: web::Path<i64>,
    query: crate::query::Query<Query>,
) -> Reply {
    Ok(HttpResponse::Ok().json(report(&me.pool, path.into_inner(), query.baseline).await?))
}

/// `POST /api/evals/{id}/ab-batches`: with `a` and `b`, that pair of versions; with only
/// `a` (or neither: the run's first version), every other version of the run against it.
/// `prompts`: ask about the run's first this many prompts (default all, at most 1000).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AbRequest {
    #[serde(default)]
    a: Option<i64>,
    #[serde(default)]
    b: Option<i64>,
    #[serde(default)]
    prompts: Option<usize>,
    #[serde(default)]
    csrf: String,
}
csrf_field!(AbRequest);

/// The page's form: the same fields as text, empty for "not given".
#[derive(Deserialize)]
pub struct AbForm {
    #[serde(default)]
    a: String,
    #[serde(default)]
    b: String,
    #[serde(default)]
    prompts: String,
    csrf: String,
}
csrf_field!(AbForm);

/// A whole number typed into the form's `field`.
fn whole_number<T: std::str::FromStr>(field: &'static str) -> impl Fn(&str) -> Result<T, AppError> {
    move |text| {
        text.parse().map_err(|_| AppError::Invalid {
            field: field.into(),
            reason: format!("{text:?} is not a whole number"),
        })
    }
}

impl TryFrom<AbForm> for AbRequest {
    type Error = AppError;
    fn try_from(form: AbForm) -> Result<Self, AppError> {
        Ok(AbRequest {
            a: optional(&form.a, whole_number("a"))?,
            b: optional(&form.b, whole_number("b"))?,
            prompts: optional(&form.prompts, whole_number("prompts"))?,
            csrf: form.csrf,
        })
    }
}

/// An eval run that finished, its project, and its samples as annotators would see them.
async fn finished_eval(pool: &PgPool, run_id: i64) -> Result<(Run, i64, Vec<EvalSample>), AppError> {
    let run = runs::get(pool, run_id).await?;
    if run.kind != RunKind::Eval || run.status != RunStatus::Succeeded {
        return Err(AppError::Conflict(format!(
            "run {run_id} is not an eval run that succeeded: annotators see samples of finished eval runs only"
        )));
    }
    let project = run.project_id.ok_or_else(|| {
        AppError::Conflict(format!(
            "eval run {run_id} belongs to no project, so no annotator can see its samples"
        ))
    })?;
    Ok((run, project, evals::samples(pool, run_id).await?))
}

fn evaluated(samples: &[EvalSample]) -> Vec<EvaluatedSample> {
    samples
        .iter()
        .map(|s| EvaluatedSample { version_id: s.version_id, prompt_id: s.prompt_id, text: s.text.clone() })
        .collect()
}

/// Makes a blind A/B batch of the run's samples (see [`AbRequest`]).
async fn create_batch(pool: &PgPool, run_id: i64, request: &AbRequest) -> Result<AbBatch, AppError> {
    let (run, project, samples) = finished_eval(pool, run_id).await?;
    // The samples come by version: their versions, in order, once each.
    let mut ids: Vec<i64> = samples.iter().map(|s| s.version_id).collect();
    ids.dedup();
    for (field, v) in [("a", request.a), ("b", request.b)] {
        if let Some(v) = v.filter(|v| !ids.contains(v)) {
            return Err(AppError::Invalid {
                field: field.into(),
                reason: format!("version {v} is not one of this run's versions"),
            });
        }
    }
    let pairs: Vec<(i64, i64)> = match (request.a, request.b) {
        (Some(a), Some(b)) => vec![(a, b)],
        (None, Some(_)) => {
            return Err(AppError::Invalid { field: "a".into(), reason: "name version a as well as b".into() })
        }
        (a, None) => {
            let against = match a {
                Some(a) => a,
                None => match evals::first_listed(pool, &run, &ids).await.or(ids.first().copied()) {
                    Some(first) => first,
                    None => return Err(AppError::Conflict(format!("eval run {run_id} wrote no samples"))),
                },
            };
            ids.iter().filter(|v| **v != against).map(|v| (against, *v)).collect()
        }
    };
    let mut prompts: Vec<i64> = samples.iter().map(|s| s.prompt_id).collect();
    prompts.sort_unstable();
    prompts.dedup();
    match request.prompts {
        Some(0) => {
            return Err(AppError::Invalid { field: "prompts".into(), reason: "must be at least 1".into() })
        }
        Some(n) if n > ab::MAX_BATCH_PROMPTS => {
            return Err(AppError::Invalid {
                field: "prompts".into(),
                reason: format!("must be at most {}, not {n}", ab::MAX_BATCH_PROMPTS),
            })
        }
        Some(n) => prompts.truncate(n),
        None => prompts.truncate(ab::MAX_BATCH_PROMPTS),
    }
    let progress = ab::ab_progress(pool, run_id).await?;
    let seed = (run_id as u64) << 32 | progress.tasks as u64;
    Ok(ab::create_ab_batch(pool, project, run_id, &pairs, &prompts, &evaluated(&samples), seed).await?)
}

#[post("/evals/{id}/ab-batches")]
pub async fn ab_batch(me: Caller<Researcher>, path: web::Path<i64>, form: CsrfForm<AbForm>) -> Reply {
    let request = AbRequest::try_from(form.into_inner())?;
    let run_id = path.into_inner();
    let batch = create_batch(&me.pool, run_id, &request).await?;
    // No fragment: the notice at the top of the page says what the form did.
    Ok(see_other(&format!("/evals/{run_id}?ab_tasks={}", batch.task_ids.len())))
}

/// 201 with the new comparison tasks, and how many were asked already or identical.
#[post("/api/evals/{id}/ab-batches")]
pub async fn api_ab_batch(me: Caller<Researcher>, path: web::Path<i64>, body: CsrfJson<AbRequest>) -> Reply {
    Ok(HttpResponse::Created().json(create_batch(&me.pool, path.into_inner(), &body).await?))
}

/// Ranking tasks for the prompts where the annotators and the reward model disagree:
/// each shows every version's sample of the prompt.
async fn send_back(pool: &PgPool, run_id: i64) -> Result<Vec<i64>, AppError> {
    let (_, project, samples) = finished_eval(pool, run_id).await?;
    let votes = ab::run_votes(pool, run_id).await?;
    let prompts: Vec<i64> = disagreements(&votes, &samples).iter().map(|d| d.prompt_id).collect();
    if prompts.is_empty() {
        return Ok(Vec::new());
    }
    Ok(ab::ranking_tasks_for(pool, project, run_id, &prompts, &evaluated(&samples)).await?)
}

#[post("/evals/{id}/ranking-tasks")]
pub async fn ranking_tasks(me: Caller<Researcher>, path: web::Path<i64>, _: CsrfForm<CsrfOnly>) -> Reply {
    let run_id = path.into_inner();
    let created = send_back(&me.pool, run_id).await?;
    Ok(see_other(&format!("/evals/{run_id}?ranking_tasks={}", created.len())))
}

/// 201 with `{"task_ids": [...]}`: empty when there is no disagreement not sent back yet.
#[post("/api/evals/{id}/ranking-tasks")]
pub async fn api_ranking_tasks(me: Caller<Researcher>, path: web::Path<i64>, _: CsrfJson<CsrfOnly>) -> Reply {
    let task_ids = send_back(&me.pool, path.into_inner()).await?;
    Ok(HttpResponse::Created().json(serde_json::json!({ "task_ids": task_ids })))
}

#[cfg(test)]
mod tests {
    use super::{diff_pieces, undecodable_marked};

    #[test]
    fn undecodable_bytes_are_pieces_of_their_own() {
        assert_eq!(undecodable_marked("ok"), [("ok".to_owned(), false)]);
        assert_eq!(
            undecodable_marked("a\u{FFFD}\u{FFFD}b"),
            [
                ("a".to_owned(), false),
                ("\u{FFFD}".into(), true),
                ("\u{FFFD}".into(), true),
                ("b".into(), false)
            ]
        );
    }

    #[test]
    fn the_differences_from_the_baseline_are_marked() {
        assert_eq!(diff_pieces("0 1 2 3", "0 1 2 3"), [("0 1 2 3".to_owned(), false)]);
        // One character of four is new: a longest common subsequence keeps the other three.
        assert_eq!(diff_pieces("1234 ok ok", "1243"), [("124".to_owned(), false), ("3".to_owned(), true)]);
        assert_eq!(diff_pieces("abc", ""), []);
        let long_base =
            "the cat sat on the mat and then it slept for a long while in the warm sun of the afternoon";
        let long =
            "the dog sat on the mat and then it slept for a long while in the warm sun of the afternoon";
        let pieces = diff_pieces(long_base, long);
        assert_eq!(pieces[1], ("dog ".to_owned(), true), "long texts are compared word by word: {pieces:?}");
        assert_eq!(pieces.iter().filter(|(_, c)| *c).count(), 1);
        // One short and one long text are both cut into words.
        let pieces = diff_pieces("the cat sat", long);
        assert_eq!(pieces[0], ("the ".to_owned(), false), "{pieces:?}");
    }
}

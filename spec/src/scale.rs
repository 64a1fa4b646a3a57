//! Settings that depend on the model's size: the learning rates of SFT, the RM, PPO, DPO,
//! RLOO and GRPO, PPO's value learning rate, and SFT's dropout.
//!
//! InstructGPT's settings (Ouyang et al. 2022, appendix C) are for 1.3B–175B models. A
//! 128-wide GPT fine-tuned with them learns almost nothing: its SFT reaches a tenth of the
//! exact match that dropout 0 and a larger rate give. So such a setting is empty unless a
//! person sets it, and an empty one takes the value of a rule of the model's width
//! (`n_embd`, from the checkpoint's own config.json) when the stage starts:
//!
//! - A learning rate is a straight line in log(width)–log(rate) through anchors: a rate
//!   measured to learn on plumb's 128-wide models (`make bench`'s task families) and the
//!   paper's rate at the paper's width. Below the first anchor and above the last the rate
//!   stays put. Rates falling with width is what GPT-3's table 2.1 shows (6e-4 at 768 wide,
//!   0.6e-4 at 12288) and what μP derives for Adam (∝ 1/width).
//! - Dropout is a straight line in log(width) from 0 at 512 wide to InstructGPT's 0.2 at
//!   2048 (its smallest model, 1.3B): a small model on a small task underfits, it does not
//!   overfit, and dropout 0.2 cut its exact match from 0.89 to 0.1.
//!
//! A value a person sets always wins; the resolved value is what the stage reports and
//! records in its model's `plumb.json`.

use serde::Serialize;

/// A setting whose default is a rule of the model's width.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scale {
    SftLr,
    SftDropout,
    RewardLr,
    PpoLr,
    PpoValueLr,
    DpoLr,
    RlooLr,
    GrpoLr,
}

/// How a rule runs between its anchors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Line {
    /// Straight in log(width)–log(value): learning rates.
    LogLog,
    /// Straight in log(width)–value: dropout, which may be 0.
    LogLinear,
}

/// An anchor of a rule: at `width` (n_embd) the value is `value`, because of `why`.
#[derive(Clone, Copy, Debug)]
struct Anchor {
    width: f64,
    value: f64,
    why: &'static str,
}

const fn at(width: f64, value: f64, why: &'static str) -> Anchor {
    Anchor { width, value, why }
}

/// The width of plumb's small models, where the small-model anchors were measured.
const SMALL: f64 = 128.0;

/// The widths of the presets `plumb init` makes (trainer's `GptConfig::preset`; a test
/// there keeps the two in step), for the tables that `--help`, the launch form and
/// docs/runs.md show.
pub const PRESET_WIDTHS: [(&str, i64); 5] =
    [("tiny", 128), ("gpt2", 768), ("gpt2-medium", 1024), ("gpt2-large", 1280), ("gpt2-xl", 1600)];

impl Scale {
    fn line(self) -> Line {
        match self {
            Scale::SftDropout => Line::LogLinear,
            _ => Line::LogLog,
        }
    }

    /// The rule's anchors, narrowest first.
    fn anchors(self) -> &'static [Anchor] {
        const MEASURED: &str = "measured on the task families";
        match self {
            Scale::SftLr => {
                const {
                    &[
                        at(SMALL, 1e-3, MEASURED),
                        at(2048.0, 9.65e-6, "InstructGPT 1.3B"),
                        at(12288.0, 5.03e-6, "InstructGPT 175B"),
                    ]
                }
            }
            Scale::SftDropout => {
                const { &[at(512.0, 0.0, "small models underfit"), at(2048.0, 0.2, "InstructGPT")] }
            }
            Scale::RewardLr => {
                const { &[at(SMALL, 3e-4, MEASURED), at(4096.0, 9e-6, "InstructGPT's 6B RM")] }
            }
            Scale::PpoLr => {
                const { &[at(SMALL, 5e-5, "measured on the demo world"), at(2048.0, 9e-6, "InstructGPT 1.3B")] }
            }
            Scale::PpoValueLr => {
                const { &[at(SMALL, 5e-4, "measured on the demo world"), at(2048.0, 9e-6, "InstructGPT 1.3B")] }
            }
            Scale::DpoLr => {
                const {
                    &[
                        at(SMALL, 3e-5, "measured on the demo world"),
                        at(2560.0, 1e-6, "Rafailov et al. 2023, 2.8B"),
                    ]
                }
            }
            Scale::RlooLr => {
                const {
                    &[
                        at(SMALL, 1e-4, "measured on the demo world"),
                        at(4096.0, 1e-6, "DeepSeekMath 7B (as GRPO)"),
                    ]
                }
            }
            Scale::GrpoLr => {
                const { &[at(SMALL, 5e-5, "measured on the demo world"), at(4096.0, 1e-6, "DeepSeekMath 7B")] }
            }
        }
    }

    /// The rule's value for a model `n_embd` wide.
    pub fn at(self, n_embd: i64) -> f64 {
        let anchors = self.anchors();
        let width = (n_embd.max(1) as f64).ln();
        let (first, last) = (anchors[0], anchors[anchors.len() - 1]);
        if width <= first.width.ln() {
            return first.value;
        }
        if width >= last.width.ln() {
            return last.value;
        }
        let i = anchors.windows(2).position(|w| width <= w[1].width.ln()).unwrap_or(0);
        let (a, b) = (anchors[i], anchors[i + 1]);
        let t = (width - a.width.ln()) / (b.width.ln() - a.width.ln());
        match self.line() {
            Line::LogLog => (a.value.ln() + t * (b.value.ln() - a.value.ln())).exp(),
            Line::LogLinear => a.value + t * (b.value - a.value),
        }
    }

    /// The value a setting takes: `set` when a person set it, else the rule's.
    pub fn or_rule(self, set: Option<f64>, n_embd: i64) -> f64 {
        set.unwrap_or_else(|| self.at(n_embd))
    }

    /// The rule in words, with its value for each preset: "empty: from the model's
    /// width n_embd, log-log through 1e-3 at 128 (measured …) and 9.65e-6 at 2048
    /// (InstructGPT 1.3B); tiny 1e-3, gpt2 5.0e-5, …".
    pub fn describe(self) -> String {
        let anchors: Vec<String> = self
            .anchors()
            .iter()
            .map(|a| format!("{} at {} ({})", number(a.value), a.width, a.why))
            .collect();
        let line = match self.line() {
            Line::LogLog => "straight in log width and log value",
            Line::LogLinear => "straight in log width",
        };
        let presets: Vec<String> =
            PRESET_WIDTHS.iter().map(|(name, width)| format!("{name} {}", number(self.at(*width)))).collect();
        format!(
            "empty: from the model's width (n_embd), {line} through {}, constant beyond; {}",
            anchors.join(", "),
            presets.join(", ")
        )
    }
}

/// A value as a person would write it: 3 significant digits, no trailing zeros.
pub fn number(x: f64) -> String {
    if x == 0.0 {
        return "0".into();
    }
    if (1e-2..1e3).contains(&x.abs()) {
        let s = format!("{x:.3}");
        return s.trim_end_matches('0').trim_end_matches('.').to_owned();
    }
    let s = format!("{x:.2e}");
    let (mantissa, exponent) = s.split_once('e').unwrap_or((&s, "0"));
    let mantissa = mantissa.trim_end_matches('0').trim_end_matches('.');
    format!("{mantissa}e{exponent}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * b.abs().max(1e-12)
    }

    #[test]
    fn large_models_get_instructgpts_values() {
        assert!(close(Scale::SftLr.at(2048), 9.65e-6));
        assert!(close(Scale::SftLr.at(12288), 5.03e-6));
        assert!(close(Scale::SftDropout.at(2048), 0.2));
        assert!(close(Scale::SftDropout.at(12288), 0.2));
        assert!(close(Scale::RewardLr.at(4096), 9e-6));
        assert!(close(Scale::PpoLr.at(2048), 9e-6));
        assert!(close(Scale::DpoLr.at(2560), 1e-6));
        assert!(close(Scale::GrpoLr.at(4096), 1e-6));
    }

    #[test]
    fn small_models_get_the_measured_values_and_no_dropout() {
        assert!(close(Scale::SftLr.at(128), 1e-3));
        assert!(close(Scale::SftLr.at(32), 1e-3));
        assert_eq!(Scale::SftDropout.at(128), 0.0);
        assert_eq!(Scale::SftDropout.at(512), 0.0);
        assert!(close(Scale::SftDropout.at(1024), 0.1));
    }

    #[test]
    fn every_rate_falls_as_the_model_widens() {
        let all = [
            Scale::SftLr,
            Scale::RewardLr,
            Scale::PpoLr,
            Scale::PpoValueLr,
            Scale::DpoLr,
            Scale::RlooLr,
            Scale::GrpoLr,
        ];
        for scale in all {
            let rates: Vec<f64> = [64, 128, 256, 768, 1600, 2048, 4096, 12288].map(|w| scale.at(w)).to_vec();
            assert!(rates.windows(2).all(|w| w[1] <= w[0]), "{scale:?}: {rates:?}");
            assert!(rates[1] > 5.0 * rates[7], "{scale:?}: {rates:?}");
        }
        // Halfway in log width between 128 and 2048 (512 wide) is the geometric mean.
        assert!(close(Scale::SftLr.at(512), (1e-3f64 * 9.65e-6).sqrt()));
    }

    #[test]
    fn a_value_a_person_sets_wins() {
        assert_eq!(Scale::SftDropout.or_rule(Some(0.3), 128), 0.3);
        assert_eq!(Scale::SftLr.or_rule(None, 128), Scale::SftLr.at(128));
    }

    #[test]
    fn the_description_names_the_rule_and_each_presets_value() {
        let text = Scale::SftLr.describe();
        assert!(text.contains("9.65e-6 at 2048 (InstructGPT 1.3B)"), "{text}");
        assert!(text.contains("tiny 1e-3") && text.contains("gpt2-xl "), "{text}");
        assert_eq!(number(0.1), "0.1");
        assert_eq!(number(5.03e-6), "5.03e-6");
        assert_eq!(number(0.0), "0");
    }
}

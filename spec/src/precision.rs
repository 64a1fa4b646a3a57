//! The floating-point precision a stage computes in: a setting every stage shares
//! (`stage_settings!` adds it to each), so that a stage written tomorrow has it too.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::setting::SettingChoice;

/// `precision`: how a stage computes.
///
/// bf16 is mixed precision (the autocast recipe): matrix products and attention in bf16,
/// layer norms, softmaxes and losses in f32, and the weights that train (the master
/// weights) and AdamW's moments in f32. bf16 has f32's exponent range, so unlike fp16
/// it needs no loss scaling. Frozen models (PPO's reference and reward models) are
/// held wholly in bf16, without gradients.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// bf16 on CUDA, f32 on the CPU (where bf16 kernels are slower than f32 ones).
    #[default]
    Auto,
    F32,
    Bf16,
}

impl SettingChoice for Precision {
    const NAMES: &'static [&'static str] = &["auto", "f32", "bf16"];
}

impl Precision {
    /// Whether a stage on a CUDA device (`on_cuda`) or the CPU computes in bf16.
    pub fn is_bf16(self, on_cuda: bool) -> bool {
        match self {
            Precision::Auto => on_cuda,
            Precision::F32 => false,
            Precision::Bf16 => true,
        }
    }
}

impl FromStr for Precision {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Precision::Auto),
            "f32" => Ok(Precision::F32),
            "bf16" => Ok(Precision::Bf16),
            other => Err(format!("unknown precision `{other}` (expected auto, f32 or bf16)")),
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Precision::Auto => "auto",
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_is_bf16_on_cuda_only() {
        assert!(Precision::Auto.is_bf16(true));
        assert!(!Precision::Auto.is_bf16(false));
        assert!(Precision::Bf16.is_bf16(false));
        assert!(!Precision::F32.is_bf16(true));
    }

    #[test]
    fn every_name_parses_and_prints_as_itself() {
        for name in Precision::NAMES {
            assert_eq!(name.parse::<Precision>().unwrap().to_string(), *name);
        }
        assert_eq!(
            "fp16".parse::<Precision>().unwrap_err(),
            "unknown precision `fp16` (expected auto, f32 or bf16)"
        );
    }

    #[test]
    fn every_stage_has_the_precision_setting() {
        let sft: crate::SftConfig = serde_json::from_str(r#"{"precision": "bf16"}"#).unwrap();
        assert_eq!(sft.precision, Precision::Bf16);
        let e = serde_json::from_str::<crate::PpoConfig>(r#"{"precision": "fp16"}"#).unwrap_err().to_string();
        assert!(e.contains("fp16"), "{e}");
        use crate::setting::StageSettings;
        let setting = crate::RewardConfig::SETTINGS.iter().find(|s| s.name == "precision").unwrap();
        assert_eq!(setting.requirement(), "auto or f32 or bf16");
    }
}

//! Each run kind's stage settings at their documented defaults, as JSON objects: the web
//! app pre-fills its launch forms with them (it cannot link the trainer itself), and a
//! worker reads a run's `stage` settings over them.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::{ppo, pretrain, reward, sft, SamplingConfig};

/// Run kind (`pretrain`, `sft`, `reward`, `ppo`, `sample`, `eval`) → its stage defaults.
pub fn stage_defaults() -> BTreeMap<String, serde_json::Value> {
    fn json(config: impl Serialize) -> serde_json::Value {
        serde_json::to_value(config).expect("stage configs are plain data")
    }
    BTreeMap::from([
        ("pretrain".to_owned(), json(pretrain::PretrainConfig::default())),
        ("sft".to_owned(), json(sft::SftConfig::default())),
        ("reward".to_owned(), json(reward::RewardConfig::default())),
        ("ppo".to_owned(), json(ppo::PpoConfig::default())),
        ("sample".to_owned(), json(SamplingConfig::default())),
        ("eval".to_owned(), json(SamplingConfig::default())),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_run_kind_has_an_object_of_defaults() {
        let defaults = stage_defaults();
        for kind in ["pretrain", "sft", "reward", "ppo", "sample", "eval"] {
            assert!(defaults[kind].is_object(), "{kind}");
        }
        assert_eq!(defaults["sft"]["lr"], serde_json::json!(sft::SftConfig::default().lr));
    }
}

//! A run's config (`runs.config`, see docs/runs.md), parsed by run kind: the model
//! versions it names, its dataset snapshot, and its stage settings over the stage's
//! defaults. Unknown fields are errors that name them, so a typo fails the run at once
//! with a message a researcher can act on instead of training with a default.

use registry::runs::RunKind;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::{ppo, pretrain, reward, sft, SamplingConfig};

/// What a run of each kind does, parsed and checked.
#[derive(Clone, Debug)]
pub enum RunSpec {
    Pretrain(PretrainRun),
    Sft(TrainRun<sft::SftConfig>),
    Reward(TrainRun<reward::RewardConfig>),
    Ppo(PpoRun),
    Sample(SampleRun),
    Eval(EvalRun),
}

/// SFT or reward-model training: from `base`, on a snapshot of the project's
/// demonstrations (SFT) or rankings (RM).
#[derive(Clone, Debug)]
pub struct TrainRun<C> {
    pub model_name: String,
    /// A version reference: `name`, `name:3` or `name@alias`.
    pub base: String,
    /// None: the worker freezes one from the project when the run starts.
    pub snapshot_id: Option<i64>,
    pub stage: C,
}

#[derive(Clone, Debug)]
pub struct PretrainRun {
    pub model_name: String,
    /// Continue from this version; None: a fresh model of `preset`.
    pub base: Option<String>,
    pub preset: crate::Preset,
    pub tokenizer: crate::TokenizerKind,
    /// Documents of the demo world's corpus to train on.
    pub corpus_documents: usize,
    /// A prompts snapshot whose prompts are the corpus instead of the demo world's.
    pub snapshot_id: Option<i64>,
    pub stage: pretrain::PretrainConfig,
}

#[derive(Clone, Debug)]
pub struct PpoRun {
    pub model_name: String,
    /// The SFT version: PPO's start and its KL reference.
    pub policy: String,
    /// The reward model's version.
    pub reward: String,
    /// A prompts snapshot; None: frozen from the project's train prompts at start.
    pub snapshot_id: Option<i64>,
    pub stage: ppo::PpoConfig,
}

/// K samples per prompt from a version, which become ranking tasks.
#[derive(Clone, Debug)]
pub struct SampleRun {
    pub version: String,
    pub prompts: PromptSet,
    /// Samples per prompt; None: the project's K.
    pub k: Option<usize>,
    pub stage: SamplingConfig,
}

/// Versions scored on a set of the project's prompts: one sample per prompt from each,
/// drawn with the same seed for every version, scored by the reward model, against the
/// KL reference, and by the demo world's oracle where the prompt is one of its tasks.
#[derive(Clone, Debug)]
pub struct EvalRun {
    pub versions: Vec<String>,
    pub reward: Option<String>,
    pub reference: Option<String>,
    pub prompts: PromptSet,
    pub stage: SamplingConfig,
}

/// The most versions one eval run compares.
pub const MAX_EVAL_VERSIONS: usize = 8;

/// Which of the project's prompts a run uses.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptSet {
    /// train, val or test; None: every split.
    #[serde(default)]
    pub split: Option<String>,
    /// At most this many (the oldest first); None: all.
    #[serde(default)]
    pub limit: Option<usize>,
    /// Only prompts that have no ranking task yet (default true).
    #[serde(default)]
    pub untasked_only: Option<bool>,
}

/// A config the worker cannot run; the message names the field.
#[derive(Debug, thiserror::Error)]
#[error("the run's config: {0}")]
pub struct SpecError(pub String);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TrainFields {
    model_name: String,
    base: String,
    #[serde(default)]
    snapshot_id: Option<i64>,
    #[serde(default)]
    stage: serde_json::Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PretrainFields {
    model_name: String,
    #[serde(default)]
    base: Option<String>,
    #[serde(default)]
    preset: Option<String>,
    #[serde(default)]
    tokenizer: Option<String>,
    #[serde(default)]
    corpus: Option<String>,
    #[serde(default)]
    corpus_documents: Option<usize>,
    #[serde(default)]
    snapshot_id: Option<i64>,
    #[serde(default)]
    stage: serde_json::Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PpoFields {
    model_name: String,
    policy: String,
    reward: String,
    #[serde(default)]
    snapshot_id: Option<i64>,
    #[serde(default)]
    stage: serde_json::Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SampleFields {
    version: String,
    #[serde(default)]
    prompts: PromptSet,
    #[serde(default)]
    k: Option<usize>,
    #[serde(default)]
    stage: serde_json::Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EvalFields {
    versions: Vec<String>,
    #[serde(default)]
    reward: Option<String>,
    #[serde(default)]
    reference: Option<String>,
    #[serde(default)]
    prompts: PromptSet,
    #[serde(default)]
    stage: serde_json::Value,
}

fn fields<T: DeserializeOwned>(config: &serde_json::Value) -> Result<T, SpecError> {
    serde_json::from_value(config.clone()).map_err(|e| SpecError(e.to_string()))
}

/// The stage settings: absent ones take the defaults (the configs are `serde(default)`),
/// unknown ones are refused by name, and the result is validated.
fn stage<C: DeserializeOwned>(
    value: serde_json::Value,
    validate: impl Fn(&C) -> Result<(), String>,
) -> Result<C, SpecError> {
    let value = if value.is_null() { serde_json::json!({}) } else { value };
    let config: C = serde_json::from_value(value).map_err(|e| SpecError(format!("stage: {e}")))?;
    validate(&config).map_err(|e| SpecError(format!("stage: {e}")))?;
    Ok(config)
}

fn model_name(name: String) -> Result<String, SpecError> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
    if ok {
        Ok(name)
    } else {
        Err(SpecError(format!(
            "model_name {name:?} must be 1 to 100 letters, digits, '-', '_' or '.', starting with a letter or digit"
        )))
    }
}

impl RunSpec {
    pub fn parse(kind: RunKind, config: &serde_json::Value) -> Result<RunSpec, SpecError> {
        if !config.is_object() {
            return Err(SpecError("must be a JSON object".into()));
        }
        Ok(match kind {
            RunKind::Sft => {
                let f: TrainFields = fields(config)?;
                RunSpec::Sft(TrainRun {
                    model_name: model_name(f.model_name)?,
                    base: f.base,
                    snapshot_id: f.snapshot_id,
                    stage: stage(f.stage, |c: &sft::SftConfig| c.validate().map_err(|e| e.to_string()))?,
                })
            }
            RunKind::Reward => {
                let f: TrainFields = fields(config)?;
                RunSpec::Reward(TrainRun {
                    model_name: model_name(f.model_name)?,
                    base: f.base,
                    snapshot_id: f.snapshot_id,
                    stage: stage(f.stage, |c: &reward::RewardConfig| {
                        c.validate().map_err(|e| e.to_string())
                    })?,
                })
            }
            RunKind::Ppo => {
                let f: PpoFields = fields(config)?;
                RunSpec::Ppo(PpoRun {
                    model_name: model_name(f.model_name)?,
                    policy: f.policy,
                    reward: f.reward,
                    snapshot_id: f.snapshot_id,
                    stage: stage(f.stage, |c: &ppo::PpoConfig| c.validate().map_err(|e| e.to_string()))?,
                })
            }
            RunKind::Pretrain => {
                let f: PretrainFields = fields(config)?;
                if let Some(corpus) = f.corpus.as_deref().filter(|c| *c != "demo_world") {
                    return Err(SpecError(format!("corpus {corpus:?}: the only corpus is \"demo_world\"")));
                }
                if f.corpus.is_some() && f.snapshot_id.is_some() {
                    return Err(SpecError("give corpus or snapshot_id, not both".into()));
                }
                let preset = f.preset.as_deref().unwrap_or("tiny");
                let tokenizer = f.tokenizer.as_deref().unwrap_or("bytes");
                RunSpec::Pretrain(PretrainRun {
                    model_name: model_name(f.model_name)?,
                    base: f.base,
                    preset: preset.parse().map_err(|e| SpecError(format!("preset: {e}")))?,
                    tokenizer: tokenizer.parse().map_err(|e| SpecError(format!("tokenizer: {e}")))?,
                    corpus_documents: f.corpus_documents.unwrap_or(2000),
                    snapshot_id: f.snapshot_id,
                    stage: stage(f.stage, |c: &pretrain::PretrainConfig| {
                        c.validate().map_err(|e| e.to_string())
                    })?,
                })
            }
            RunKind::Sample => {
                let f: SampleFields = fields(config)?;
                if let Some(k) = f.k.filter(|k| !(crate::data::MIN_K..=crate::data::MAX_K).contains(k)) {
                    return Err(SpecError(format!("k {k} must be 2 to 9")));
                }
                RunSpec::Sample(SampleRun {
                    version: f.version,
                    prompts: f.prompts,
                    k: f.k,
                    stage: stage(f.stage, |c: &SamplingConfig| c.validate().map_err(|e| e.to_string()))?,
                })
            }
            RunKind::Eval => {
                let f: EvalFields = fields(config)?;
                if f.versions.is_empty() || f.versions.len() > MAX_EVAL_VERSIONS {
                    return Err(SpecError(format!(
                        "versions: name 1 to {MAX_EVAL_VERSIONS} versions, not {}",
                        f.versions.len()
                    )));
                }
                let mut seen = std::collections::HashSet::new();
                if let Some(twice) = f.versions.iter().find(|v| !seen.insert(v.as_str())) {
                    return Err(SpecError(format!("versions: {twice:?} is listed twice")));
                }
                RunSpec::Eval(EvalRun {
                    versions: f.versions,
                    reward: f.reward,
                    reference: f.reference,
                    prompts: f.prompts,
                    stage: stage(f.stage, |c: &SamplingConfig| c.validate().map_err(|e| e.to_string()))?,
                })
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn absent_stage_settings_take_the_defaults_and_given_ones_win() {
        let spec = RunSpec::parse(
            RunKind::Sft,
            &json!({ "model_name": "sft", "base": "base:1", "stage": { "lr": 0.001, "steps": 3 } }),
        )
        .unwrap();
        let RunSpec::Sft(run) = spec else { panic!("not sft") };
        assert_eq!((run.stage.lr, run.stage.steps), (0.001, Some(3)));
        assert_eq!(run.stage.batch_size, sft::SftConfig::default().batch_size);
        assert_eq!(run.snapshot_id, None);
    }

    #[test]
    fn unknown_fields_wrong_types_and_bad_values_are_named() {
        let cases = [
            (RunKind::Sft, json!({ "model_name": "m", "base": "b", "stage": { "lr_max": 1 } }), "lr_max"),
            (RunKind::Sft, json!({ "model_name": "m", "base": "b", "stage": { "lr": "fast" } }), "fast"),
            (RunKind::Sft, json!({ "model_name": "m", "bsae": "b" }), "bsae"),
            (RunKind::Sft, json!({ "model_name": "m" }), "base"),
            (RunKind::Reward, json!({ "model_name": "a b", "base": "b" }), "model_name"),
            (
                RunKind::Ppo,
                json!({ "model_name": "p", "policy": "s", "reward": "r", "stage": { "batch_size": 0 } }),
                "batch_size",
            ),
            (RunKind::Sample, json!({ "version": "v", "k": 12 }), "k 12"),
            (RunKind::Pretrain, json!({ "model_name": "m", "preset": "huge" }), "preset"),
            (RunKind::Pretrain, json!({ "model_name": "m", "corpus": "web" }), "corpus"),
            (RunKind::Eval, json!({ "versions": [] }), "versions: name 1 to 8"),
            (RunKind::Eval, json!({ "versions": ["a", "a"] }), "\"a\" is listed twice"),
            (RunKind::Eval, json!({ "versions": ["a"], "stage": { "temperature": -1 } }), "temperature"),
        ];
        for (kind, config, needle) in cases {
            let e = RunSpec::parse(kind, &config).unwrap_err().to_string();
            assert!(e.contains(needle), "{config}: {e}");
        }
    }
}

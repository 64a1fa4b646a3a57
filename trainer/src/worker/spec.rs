//! A run's config (`runs.config`, see docs/runs.md), parsed by run kind: the model
//! versions it names, its dataset snapshot, and its stage settings over the stage's
//! defaults. Unknown fields are errors that name them, so a typo fails the run at once
//! with a message a researcher can act on instead of training with a default.

pub use registry::eval_config::{
    self, MAX_PROBE_GROUPS, MAX_PROBE_SAMPLES, MAX_SHOTS, MAX_SHOT_COUNTS, MAX_TASKS_PER_SKILL,
};
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
/// Optionally also their few-shot accuracy on the demo world's skills, and the first
/// words they continue probes with.
#[derive(Clone, Debug)]
pub struct EvalRun {
    pub versions: Vec<String>,
    pub reward: Option<String>,
    pub reference: Option<String>,
    pub prompts: PromptSet,
    pub stage: SamplingConfig,
    /// None: not measured.
    pub skills: Option<SkillsSpec>,
    /// Empty: none measured.
    pub probes: Vec<Probe>,
}

/// The most versions one eval run compares.
pub const MAX_EVAL_VERSIONS: usize = 8;

/// Zero-, one- and few-shot accuracy: each version answers `per_skill` test tasks of
/// each of the demo world's skills, after each number of worked examples in `shots`.
#[derive(Clone, Debug, PartialEq)]
pub struct SkillsSpec {
    /// Distinct, ascending.
    pub shots: Vec<usize>,
    pub per_skill: usize,
}

/// A sentence with a slot, filled with each group in turn and continued many times by
/// each version: how the distribution of its next words differs between groups.
#[derive(Clone, Debug, PartialEq)]
pub struct Probe {
    /// Holds `{group}` exactly once.
    pub template: String,
    /// Distinct and not blank.
    pub groups: Vec<String>,
    /// Continuations per group.
    pub samples: usize,
    /// How many of the most frequent first words are kept per group.
    pub top: usize,
}

impl Probe {
    /// The template with its slot filled with `group`.
    pub fn prompt(&self, group: &str) -> String {
        self.template.replacen(eval_config::SLOT, group, 1)
    }
}

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
    #[serde(default)]
    skills: Option<SkillsFields>,
    /// Checked by [`eval_config::probes_problems`] before it is read as [`ProbeFields`].
    #[serde(default)]
    probes: serde_json::Value,
}

/// Numbers as i64, so that a negative one gets a message naming its field rather than
/// serde's "expected usize".
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SkillsFields {
    #[serde(default)]
    shots: Option<Vec<i64>>,
    #[serde(default)]
    per_skill: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProbeFields {
    template: String,
    groups: Vec<String>,
    #[serde(default)]
    samples: Option<i64>,
    #[serde(default)]
    top: Option<i64>,
}

impl SkillsFields {
    fn parse(self) -> Result<SkillsSpec, SpecError> {
        let bad = |field: &str, reason: String| Err(SpecError(format!("skills.{field}: {reason}")));
        let shots = self.shots.unwrap_or_else(|| vec![0, 1, 3]);
        if shots.is_empty() || shots.len() > MAX_SHOT_COUNTS {
            return bad("shots", format!("give 1 to {MAX_SHOT_COUNTS} shot counts, not {}", shots.len()));
        }
        if let Some(k) = shots.iter().find(|k| !(0..=MAX_SHOTS as i64).contains(k)) {
            return bad("shots", format!("{k} must be 0 to {MAX_SHOTS} worked examples"));
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(twice) = shots.iter().find(|k| !seen.insert(**k)) {
            return bad("shots", format!("{twice} is listed twice"));
        }
        let per_skill = self.per_skill.unwrap_or(20);
        if !(1..=MAX_TASKS_PER_SKILL as i64).contains(&per_skill) {
            return bad("per_skill", format!("must be 1 to {MAX_TASKS_PER_SKILL} tasks, got {per_skill}"));
        }
        let mut shots: Vec<usize> = shots.into_iter().map(|k| k as usize).collect();
        shots.sort_unstable();
        Ok(SkillsSpec { shots, per_skill: per_skill as usize })
    }
}

impl ProbeFields {
    /// A probe that [`eval_config::probes_problems`] found nothing wrong with.
    fn parse(self) -> Probe {
        Probe {
            template: self.template,
            groups: self.groups,
            samples: self.samples.map_or(64, |n| n as usize),
            top: self.top.map_or(8, |n| n as usize),
        }
    }
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
                if let Some((field, reason)) = eval_config::probes_problems(&f.probes).into_iter().next() {
                    return Err(SpecError(format!("{field}: {reason}")));
                }
                let probes: Option<Vec<ProbeFields>> = fields(&f.probes)?;
                RunSpec::Eval(EvalRun {
                    versions: f.versions,
                    reward: f.reward,
                    reference: f.reference,
                    prompts: f.prompts,
                    stage: stage(f.stage, |c: &SamplingConfig| c.validate().map_err(|e| e.to_string()))?,
                    skills: f.skills.map(SkillsFields::parse).transpose()?,
                    probes: probes.unwrap_or_default().into_iter().map(ProbeFields::parse).collect(),
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

    fn eval(extra: serde_json::Value) -> Result<EvalRun, SpecError> {
        let mut config = json!({ "versions": ["sft:1"] });
        config.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        match RunSpec::parse(RunKind::Eval, &config)? {
            RunSpec::Eval(run) => Ok(run),
            other => panic!("not an eval run: {other:?}"),
        }
    }

    #[test]
    fn skills_and_probes_are_optional_and_take_their_defaults_when_empty() {
        let run = eval(json!({})).unwrap();
        assert_eq!((run.skills, run.probes), (None, vec![]));
        let run = eval(json!({ "skills": {}, "probes": [{ "template": "The {group} worker was very",
                                                            "groups": ["young", "old"] }] }))
        .unwrap();
        assert_eq!(run.skills, Some(SkillsSpec { shots: vec![0, 1, 3], per_skill: 20 }));
        let probe = &run.probes[0];
        assert_eq!((probe.samples, probe.top), (64, 8));
        assert_eq!(probe.prompt("old"), "The old worker was very");
        let run = eval(json!({ "skills": { "shots": [3, 0], "per_skill": 5 } })).unwrap();
        assert_eq!(run.skills, Some(SkillsSpec { shots: vec![0, 3], per_skill: 5 }), "shots come sorted");
    }

    #[test]
    fn bad_skills_and_probes_are_refused_naming_the_field() {
        let probe = |fields: serde_json::Value| {
            let mut p = json!({ "template": "The {group} worker", "groups": ["a", "b"] });
            p.as_object_mut().unwrap().extend(fields.as_object().unwrap().clone());
            json!({ "probes": [p] })
        };
        let cases = [
            (json!({ "skills": { "shots": [0, 9] } }), "skills.shots: 9 must be 0 to 8"),
            (json!({ "skills": { "shots": [-1] } }), "skills.shots: -1 must be 0 to 8"),
            (
                json!({ "skills": { "shots": [0, 1, 2, 3, 4] } }),
                "skills.shots: give 1 to 4 shot counts, not 5",
            ),
            (json!({ "skills": { "shots": [] } }), "skills.shots: give 1 to 4"),
            (json!({ "skills": { "shots": [1, 1] } }), "skills.shots: 1 is listed twice"),
            (json!({ "skills": { "per_skill": 0 } }), "skills.per_skill: must be 1 to 200"),
            (json!({ "skills": { "per_skill": 201 } }), "skills.per_skill"),
            (json!({ "skills": { "shot": [1] } }), "shot"),
            (
                probe(json!({ "template": "The worker" })),
                "probes[0].template: \"The worker\" must contain {group} exactly once, not 0 times",
            ),
            (probe(json!({ "template": "{group} and {group}" })), "probes[0].template"),
            (probe(json!({ "groups": [] })), "probes[0].groups: give 1 to 8 groups, not 0"),
            (probe(json!({ "groups": ["a", " "] })), "probes[0].groups: a group is blank"),
            (probe(json!({ "groups": ["a", "a"] })), "probes[0].groups: \"a\" is listed twice"),
            (probe(json!({ "samples": 0 })), "probes[0].samples: must be 1 to 512, got 0"),
            (probe(json!({ "samples": 513 })), "probes[0].samples"),
            (probe(json!({ "top": 21 })), "probes[0].top: must be 1 to 20, got 21"),
            (probe(json!({ "temperature": 1 })), "temperature"),
            (
                json!({ "probes": vec![json!({ "template": "{group}", "groups": ["a"] }); 5] }),
                "probes: give at most 4",
            ),
        ];
        for (extra, needle) in cases {
            let e = eval(extra.clone()).unwrap_err().to_string();
            assert!(e.contains(needle), "{extra}: {e}");
        }
    }
}

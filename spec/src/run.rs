//! A run's config (`runs.config`, see docs/runs.md) by run kind: which fields it takes
//! besides its stage settings (the versions and snapshot it names, its prompts, …), the
//! check that names every problem, and the typed spec a worker runs.
//!
//! The check is static: it needs no database. Whether a named version or snapshot
//! exists, and is of the right kind, is the caller's second check (the web asks
//! Postgres before it queues a run; the worker when it resolves them).

use std::collections::HashSet;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::attention::LayerWords;
use crate::eval::{self, MAX_SHOTS, MAX_SHOT_COUNTS, MAX_TASKS_PER_SKILL};
use crate::kinds::{ModelKind, RunKind, SnapshotKind};
use crate::problem::Problems;
use crate::setting::{SettingType, StageSettings};
use crate::stages::{
    DpoConfig, GrpoConfig, PpoConfig, PretrainConfig, RewardConfig, RlooConfig, SamplingConfig, SftConfig,
};

/// The model architectures a fresh pretraining run can start from.
pub const PRESETS: &[&str] = &["tiny", "gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl"];
/// The tokenizers a fresh model can have: bytes (256 ids + EOS) or GPT-2's BPE.
pub const TOKENIZERS: &[&str] = &["bytes", "gpt2"];
/// The corpora a pretraining run can name (a prompts snapshot is the other source).
pub const CORPORA: &[&str] = &["demo_world"];
pub const SPLITS: &[&str] = &["train", "val", "test"];
/// Fewest and most samples a ranking may hold.
pub const MIN_K: i64 = 2;
pub const MAX_K: i64 = 9;
/// The most versions one eval run compares.
pub const MAX_EVAL_VERSIONS: usize = 8;
/// Documents of the demo world's corpus a pretraining run reads by default.
pub const CORPUS_DOCUMENTS: usize = 2000;

/// What a config field holds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum InputKind {
    /// The model a new version registers under.
    ModelName,
    /// A version reference (`name`, `name:3`, `name@alias`) of one of these kinds.
    Version(&'static [ModelKind]),
    /// One or more version references (a JSON list; the form: separated by commas).
    Versions(&'static [ModelKind]),
    /// A snapshot of the run's project of this kind.
    Snapshot(SnapshotKind),
    /// One of these names.
    Choice(&'static [&'static str]),
    /// A whole number in this range.
    Count(i64, i64),
    /// A list of distinct whole numbers in this range.
    Counts(i64, i64),
    /// A list of words or phrases (the form: separated by commas).
    Phrases,
    /// Free text.
    Text,
    /// True or false.
    Flag,
}

/// A field of a kind's config besides `stage`. `name` is its path: `prompts.split` is
/// `{"prompts": {"split": …}}`.
#[derive(Clone, Copy, Debug)]
pub struct Input {
    pub name: &'static str,
    pub label: &'static str,
    pub help: &'static str,
    pub kind: InputKind,
    pub required: bool,
    /// What leaving it out means.
    pub absent: &'static str,
}

const fn input(name: &'static str, label: &'static str, help: &'static str, kind: InputKind) -> Input {
    Input { name, label, help, kind, required: false, absent: "" }
}

impl Input {
    const fn required(self) -> Input {
        Input { required: true, ..self }
    }

    const fn absent(self, absent: &'static str) -> Input {
        Input { absent, ..self }
    }
}

const GENERATIVE: &[ModelKind] = &[ModelKind::Base, ModelKind::Sft, ModelKind::Policy];
const MODEL_NAME: Input = input(
    "model_name",
    "Model name",
    "The model the new version registers under: letters, digits, `_`, `.` or `-`.",
    InputKind::ModelName,
)
.required();
const PROMPTS_LIMIT: Input =
    input("prompts.limit", "At most this many prompts", "The oldest first.", InputKind::Count(1, 1_000_000))
        .absent("all of them");

/// The fields of a [`TrainRun`] (SFT, RM): the new model's name, the version it starts
/// from and the snapshot of the project it trains on.
const fn train_run_inputs(
    base_label: &'static str,
    base_help: &'static str,
    bases: &'static [ModelKind],
    snapshot_label: &'static str,
    snapshot_help: &'static str,
    snapshot: SnapshotKind,
) -> [Input; 3] {
    [
        MODEL_NAME,
        input("base", base_label, base_help, InputKind::Version(bases)).required(),
        input("snapshot_id", snapshot_label, snapshot_help, InputKind::Snapshot(snapshot))
            .absent("freeze one when the run starts"),
    ]
}

/// A comparisons snapshot whose A/B votes join the rankings as K = 2 rankings (a tie,
/// ranked as one group, and a "both bad" vote teach nothing and are left out).
const VOTES_SNAPSHOT: Input = input(
    "votes_snapshot_id",
    "A/B votes",
    "A comparisons snapshot of the project whose votes are added as rankings of two (ties and both-bad left out).",
    InputKind::Snapshot(SnapshotKind::Comparisons),
)
.absent("none: rankings only");

/// How many workers train a run together (data-parallel through c10d), for the stages
/// that train on several ranks. The worker reads it from the run (`runs.world_size`).
pub const WORLD_SIZE: Input = input(
    "world_size",
    "Workers",
    "How many workers train the run together, data-parallel: each takes its shard of every batch, and they are claimed all at once or not at all.",
    InputKind::Count(1, 64),
)
.absent("1: one worker");

/// The fields of an [`RlRun`] (PPO, RLOO, GRPO): the new model's name, the SFT version
/// it starts from (`policy_help` says so in the stage's words), the reward model and the
/// prompts snapshot. The reward is a reward model only: a reward program (the command
/// line's `--reward-cmd`) would run any command the config names on the worker.
const fn rl_run_inputs(policy_help: &'static str) -> [Input; 4] {
    [
        MODEL_NAME,
        input("policy", "Policy (SFT)", policy_help, InputKind::Version(&[ModelKind::Sft])).required(),
        input(
            "reward",
            "Reward model",
            "The reward model version that scores the samples.",
            InputKind::Version(&[ModelKind::Reward]),
        )
        .required(),
        input(
            "snapshot_id",
            "Prompts",
            "A prompts snapshot of the project.",
            InputKind::Snapshot(SnapshotKind::Prompts),
        )
        .absent("freeze the train prompts when the run starts"),
    ]
}

/// The config fields of each kind, in the order the launch form shows them.
pub fn inputs(kind: RunKind) -> &'static [Input] {
    match kind {
        RunKind::Pretrain => {
            const INPUTS: &[Input] = &[
                MODEL_NAME,
                input(
                    "base",
                    "Continue from",
                    "A base version to continue pretraining (`name`, `name:3`, `name@alias`).",
                    InputKind::Version(&[ModelKind::Base]),
                )
                .absent("a fresh model of the preset"),
                input("preset", "Preset", "The architecture of a fresh model.", InputKind::Choice(PRESETS))
                    .absent("tiny"),
                input(
                    "tokenizer",
                    "Tokenizer",
                    "The tokenizer of a fresh model: bytes (256 ids and EOS) or GPT-2's BPE.",
                    InputKind::Choice(TOKENIZERS),
                )
                .absent("bytes"),
                input("corpus", "Corpus", "A named corpus to pretrain on.", InputKind::Choice(CORPORA))
                    .absent("demo_world, unless a snapshot is given"),
                input(
                    "corpus_documents",
                    "Corpus documents",
                    "Documents of the demo world's corpus to train on.",
                    InputKind::Count(1, 1_000_000),
                )
                .absent("2000"),
                input(
                    "snapshot_id",
                    "Prompts as corpus",
                    "A prompts snapshot of the project whose prompts are the corpus instead.",
                    InputKind::Snapshot(SnapshotKind::Prompts),
                )
                .absent("the named corpus"),
                input(
                    "attention",
                    "Attention layers",
                    "Which layers of a fresh model attend sparsely: dense, sparse, alternating (GPT-3: \
                     dense and banded sparse layers in turn), or one word per layer separated by commas.",
                    InputKind::Text,
                )
                .absent("dense"),
                input(
                    "sparse_window",
                    "Sparse window",
                    "A sparse layer's token sees the previous WINDOW tokens, itself included…",
                    InputKind::Count(1, 1_000_000),
                )
                .absent("√n_ctx, rounded"),
                input(
                    "sparse_stride",
                    "Sparse stride",
                    "…and every earlier token whose distance is a multiple of STRIDE.",
                    InputKind::Count(1, 1_000_000),
                )
                .absent("√n_ctx, rounded"),
                WORLD_SIZE,
            ];
            INPUTS
        }
        RunKind::Sft => {
            const TRAIN: [Input; 3] = train_run_inputs(
                "Base version",
                "The version to fine-tune (`name`, `name:3`, `name@alias`).",
                &[ModelKind::Base, ModelKind::Sft],
                "Demonstrations",
                "A demonstrations snapshot of the project.",
                SnapshotKind::Demonstrations,
            );
            const INPUTS: &[Input] = &[TRAIN[0], TRAIN[1], TRAIN[2], WORLD_SIZE];
            INPUTS
        }
        RunKind::Reward => {
            const TRAIN: [Input; 3] = train_run_inputs(
                "Initialise from",
                "The version whose trunk the reward model starts from, usually the SFT version.",
                &[ModelKind::Sft, ModelKind::Base],
                "Rankings",
                "A rankings snapshot of the project.",
                SnapshotKind::Rankings,
            );
            const INPUTS: &[Input] = &[
                TRAIN[0],
                TRAIN[1],
                TRAIN[2],
                VOTES_SNAPSHOT,
                input(
                    "demonstrations_snapshot_id",
                    "Demonstrations to centre on",
                    "The reward's zero: the demonstrations of this snapshot score 0 on average (InstructGPT).",
                    InputKind::Snapshot(SnapshotKind::Demonstrations),
                )
                .absent("freeze the project's demonstrations when the run starts; none: the best-ranked samples"),
                WORLD_SIZE,
            ];
            INPUTS
        }
        RunKind::Ppo => {
            const RL: [Input; 4] =
                rl_run_inputs("The SFT version PPO starts from; also the frozen KL reference.");
            const INPUTS: &[Input] = &[
                RL[0],
                RL[1],
                RL[2],
                RL[3],
                WORLD_SIZE,
                input(
                    "ptx_snapshot_id",
                    "Pretraining corpus (PPO-ptx)",
                    "A prompts snapshot whose texts are the documents whose likelihood PPO-ptx keeps up (stage.ptx_coef > 0); it joins the version's lineage.",
                    InputKind::Snapshot(SnapshotKind::Prompts),
                )
                .absent("none: plain PPO"),
            ];
            INPUTS
        }
        RunKind::Dpo => {
            const INPUTS: &[Input] = &[
                MODEL_NAME,
                input(
                    "policy",
                    "Policy (SFT)",
                    "The SFT version DPO starts from; also its frozen reference.",
                    InputKind::Version(&[ModelKind::Sft]),
                )
                .required(),
                input(
                    "snapshot_id",
                    "Rankings",
                    "A rankings snapshot of the project.",
                    InputKind::Snapshot(SnapshotKind::Rankings),
                )
                .absent("freeze one when the run starts"),
                VOTES_SNAPSHOT,
            ];
            INPUTS
        }
        RunKind::Rloo => {
            const RL: [Input; 4] =
                rl_run_inputs("The SFT version RLOO starts from; also the frozen KL reference.");
            const INPUTS: &[Input] = &[RL[0], RL[1], RL[2], RL[3], WORLD_SIZE];
            INPUTS
        }
        RunKind::Grpo => {
            const RL: [Input; 4] =
                rl_run_inputs("The SFT version GRPO starts from; also the frozen KL reference.");
            const INPUTS: &[Input] = &[RL[0], RL[1], RL[2], RL[3], WORLD_SIZE];
            INPUTS
        }
        RunKind::Sample => {
            const INPUTS: &[Input] = &[
                input(
                    "version",
                    "Version",
                    "The version that writes the samples.",
                    InputKind::Version(GENERATIVE),
                )
                .required(),
                input(
                    "prompts.split",
                    "Prompts from split",
                    "Which of the project's prompts get samples.",
                    InputKind::Choice(SPLITS),
                )
                .absent("every split"),
                PROMPTS_LIMIT,
                input(
                    "prompts.untasked_only",
                    "Only prompts without a ranking task",
                    "Skip prompts that already have a ranking task.",
                    InputKind::Flag,
                )
                .absent("true"),
                input(
                    "k",
                    "Samples per prompt (K)",
                    "2 to 9. One ranking task per prompt.",
                    InputKind::Count(MIN_K, MAX_K),
                )
                .absent("the project's K"),
                input(
                    "mix",
                    "Also sample from",
                    "Other versions, separated by commas, that each write some of every prompt's K samples (mix_k each), so that the rankings also teach a reward model about their outputs, e.g. the base model's. The version writes the rest; a task's samples are shuffled.",
                    InputKind::Versions(GENERATIVE),
                )
                .absent("none: the version writes every sample"),
                input(
                    "mix_k",
                    "Samples per prompt from each mixed version",
                    "1 to 8; the version itself keeps at least one of the K.",
                    InputKind::Count(1, MAX_K - 1),
                )
                .absent("1"),
            ];
            INPUTS
        }
        RunKind::Eval => {
            const INPUTS: &[Input] = &[
            input(
                "versions",
                "Versions",
                "The versions to evaluate, separated by commas (1 to 8).",
                InputKind::Versions(GENERATIVE),
            )
            .required(),
            input(
                "reward",
                "Reward model",
                "A reward model version that scores the generations.",
                InputKind::Version(&[ModelKind::Reward]),
            )
            .absent("no RM score"),
            input(
                "reference",
                "KL reference",
                "The version the KL is measured against.",
                InputKind::Version(GENERATIVE),
            )
            .absent("no KL"),
            input(
                "prompts.split",
                "Prompts from split",
                "The held-out prompts to generate on.",
                InputKind::Choice(SPLITS),
            )
            .absent("every split"),
            PROMPTS_LIMIT,
            input(
                "prompts.untasked_only",
                "Only prompts without a ranking task",
                "Skip prompts that already have a ranking task.",
                InputKind::Flag,
            )
            .absent("false"),
            input(
                "skills.shots",
                "Few-shot accuracy: shots",
                "E.g. 0,1,3: accuracy on the demo world's skills with that many worked examples before each question (at most 4 counts, each 0 to 8).",
                InputKind::Counts(0, MAX_SHOTS as i64),
            )
            .absent("0, 1, 3 when skills are asked for; else not measured"),
            input(
                "skills.per_skill",
                "Few-shot accuracy: tasks per skill",
                "Test tasks per skill.",
                InputKind::Count(1, MAX_TASKS_PER_SKILL as i64),
            )
            .absent("20"),
            input(
                "skills.tasks",
                "Few-shot accuracy: your own tasks",
                "JSON lines {\"task\", \"input\", \"output\"}, a task's examples in order: its first examples (as many as the most shots) are the worked examples shown before each question, the rest (up to tasks per skill) its questions, answered right when the output matches exactly.",
                InputKind::Text,
            )
            .absent("the demo world's skills"),
            input(
                "probes.template",
                "Probe template",
                "E.g. \"The {group} worker was very\": the distribution of each version's next word after it, for each group. The API takes a list of up to 4 probes.",
                InputKind::Text,
            )
            .absent("no probe"),
            input("probes.groups", "Probe groups", "What fills {group}, separated by commas (1 to 8).", InputKind::Phrases),
            input(
                "probes.samples",
                "Probe samples",
                "Continuations per group (1 to 512).",
                InputKind::Count(1, eval::MAX_PROBE_SAMPLES as i64),
            )
            .absent("64"),
            input(
                "probes.top",
                "Probe top words",
                "How many of the most frequent first words are kept per group (1 to 20).",
                InputKind::Count(1, eval::MAX_PROBE_TOP as i64),
            )
            .absent("8"),
            ];
            INPUTS
        }
    }
}

/// The stage settings a kind takes.
pub fn settings(kind: RunKind) -> &'static [crate::Setting] {
    match kind {
        RunKind::Pretrain => PretrainConfig::SETTINGS,
        RunKind::Sft => SftConfig::SETTINGS,
        RunKind::Reward => RewardConfig::SETTINGS,
        RunKind::Ppo => PpoConfig::SETTINGS,
        RunKind::Dpo => DpoConfig::SETTINGS,
        RunKind::Rloo => RlooConfig::SETTINGS,
        RunKind::Grpo => GrpoConfig::SETTINGS,
        RunKind::Sample | RunKind::Eval => SamplingConfig::SETTINGS,
    }
}

/// A kind's stage settings at their defaults, as a JSON object.
pub fn stage_defaults(kind: RunKind) -> Value {
    fn json(config: impl Serialize) -> Value {
        serde_json::to_value(config).expect("stage settings are plain data")
    }
    match kind {
        RunKind::Pretrain => json(PretrainConfig::default()),
        RunKind::Sft => json(SftConfig::default()),
        RunKind::Reward => json(RewardConfig::default()),
        RunKind::Ppo => json(PpoConfig::default()),
        RunKind::Dpo => json(DpoConfig::default()),
        RunKind::Rloo => json(RlooConfig::default()),
        RunKind::Grpo => json(GrpoConfig::default()),
        RunKind::Sample | RunKind::Eval => json(SamplingConfig::default()),
    }
}

/// The stage defaults of a run of `kind` on a model `n_embd` wide: every setting that
/// follows the model's width (see [`crate::scale`]) filled in with its value there.
pub fn stage_defaults_at(kind: RunKind, n_embd: i64) -> Value {
    fn json(config: impl Serialize) -> Value {
        serde_json::to_value(config).expect("stage settings are plain data")
    }
    match kind {
        RunKind::Pretrain => json(PretrainConfig::default().scaled_to(n_embd)),
        RunKind::Sft => json(SftConfig::default().scaled_to(n_embd)),
        RunKind::Reward => json(RewardConfig::default().scaled_to(n_embd)),
        RunKind::Ppo => json(PpoConfig::default().scaled_to(n_embd)),
        RunKind::Dpo => json(DpoConfig::default().scaled_to(n_embd)),
        RunKind::Rloo => json(RlooConfig::default().scaled_to(n_embd)),
        RunKind::Grpo => json(GrpoConfig::default().scaled_to(n_embd)),
        RunKind::Sample | RunKind::Eval => json(SamplingConfig::default().scaled_to(n_embd)),
    }
}

/// What a run of each kind does, parsed and checked.
#[derive(Clone, Debug)]
pub enum RunSpec {
    Pretrain(PretrainRun),
    Sft(TrainRun<SftConfig>),
    Reward(TrainRun<RewardConfig>),
    Ppo(PpoRun),
    /// DPO: from the SFT version in `base` (the config's `policy`), on a rankings snapshot.
    Dpo(TrainRun<DpoConfig>),
    Rloo(RlRun<RlooConfig>),
    Grpo(RlRun<GrpoConfig>),
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
    /// A comparisons snapshot whose A/B votes are added as K = 2 rankings (RM, DPO).
    pub votes_snapshot_id: Option<i64>,
    /// The demonstrations the reward model's zero is centred on (RM); None: the
    /// project's, frozen when the run starts.
    pub demonstrations_snapshot_id: Option<i64>,
    pub stage: C,
}

#[derive(Clone, Debug)]
pub struct PretrainRun {
    pub model_name: String,
    /// Continue from this version; None: a fresh model of `preset`.
    pub base: Option<String>,
    /// One of [`PRESETS`].
    pub preset: String,
    /// One of [`TOKENIZERS`].
    pub tokenizer: String,
    /// Documents of the demo world's corpus to train on.
    pub corpus_documents: usize,
    /// A prompts snapshot whose prompts are the corpus instead of the demo world's.
    pub snapshot_id: Option<i64>,
    /// Which layers of a fresh model attend sparsely.
    pub attention: LayerWords,
    /// A sparse layer's window and stride; None: √n_ctx, rounded.
    pub sparse_window: Option<i64>,
    pub sparse_stride: Option<i64>,
    pub stage: PretrainConfig,
}

/// RL from an SFT policy against a reward model, on a snapshot of the project's prompts:
/// PPO, RLOO or GRPO, by the stage config `C`.
#[derive(Clone, Debug)]
pub struct RlRun<C> {
    pub model_name: String,
    /// The SFT version: the stage's start and its KL reference.
    pub policy: String,
    /// The reward model's version.
    pub reward: String,
    /// A prompts snapshot; None: frozen from the project's train prompts at start.
    pub snapshot_id: Option<i64>,
    /// PPO-ptx's pretraining corpus: a prompts snapshot whose texts are its documents.
    pub ptx_snapshot_id: Option<i64>,
    pub stage: C,
}

pub type PpoRun = RlRun<PpoConfig>;

/// K samples per prompt from a version, which become ranking tasks.
#[derive(Clone, Debug)]
pub struct SampleRun {
    pub version: String,
    pub prompts: PromptSet,
    /// Samples per prompt; None: the project's K.
    pub k: Option<usize>,
    /// Other versions that each write `mix_k` of every prompt's K samples; `version`
    /// writes the rest.
    pub mix: Vec<String>,
    pub mix_k: usize,
    pub stage: SamplingConfig,
}

impl SampleRun {
    /// Who writes each prompt's `k` samples: `version` first, then each of `mix`, with
    /// how many each; an error names the field when `version` would be left none.
    pub fn writers(&self, k: usize) -> Result<Vec<(&str, usize)>, String> {
        if let Some(reason) = mix_leaves_none(self.mix.len(), self.mix_k, k, &self.version) {
            return Err(reason);
        }
        let mut writers = vec![(self.version.as_str(), k - self.mix.len() * self.mix_k)];
        writers.extend(self.mix.iter().map(|v| (v.as_str(), self.mix_k)));
        Ok(writers)
    }
}

/// Why `mixed` versions writing `mix_k` samples each leave `version` none of a prompt's
/// `k`; None when they leave it some.
fn mix_leaves_none(mixed: usize, mix_k: usize, k: usize, version: &str) -> Option<String> {
    (mixed * mix_k >= k).then(|| {
        format!(
            "{mixed} mixed versions × mix_k {mix_k} write {} of each prompt's {k} samples, leaving none for {version:?}",
            mixed * mix_k
        )
    })
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

/// Zero-, one- and few-shot accuracy: each version answers `per_skill` test tasks of
/// each of the demo world's skills, after each number of worked examples in `shots`.
#[derive(Clone, Debug, PartialEq)]
pub struct SkillsSpec {
    /// Distinct, ascending.
    pub shots: Vec<usize>,
    /// Questions per skill (per task of the team's own).
    pub per_skill: usize,
    /// The team's own tasks (`skills.tasks`), measured instead of the demo world's skills;
    /// empty: the demo world's.
    pub tasks: Vec<crate::eval::FewShotTask>,
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
        self.template.replacen(eval::SLOT, group, 1)
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
    /// Only prompts that have no ranking task yet (None: the kind's default).
    #[serde(default)]
    pub untasked_only: Option<bool>,
}

/// The value at a dotted `path` (`skills.shots`) of a run config; a `null` is absent.
pub fn lookup<'a>(config: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    let mut parts = path.split('.');
    let mut value = config.get(parts.next()?)?;
    for part in parts {
        value = value.as_object()?.get(part)?;
    }
    Some(value).filter(|v| !v.is_null())
}

/// How a JSON value's type reads in a message.
pub fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "empty",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "a whole number",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Whether `name` can name a model: 1 to 100 letters, digits, `-`, `_` or `.`, starting
/// with a letter or digit (the registry's rule).
pub fn is_model_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
}

/// The problem of one field's value, if any (static checks only).
fn input_problem(input: &Input, value: &Value) -> Option<String> {
    let text = value.as_str();
    let whole = value.as_i64();
    match input.kind {
        InputKind::ModelName => match text {
            Some(name) if is_model_name(name) => None,
            Some(name) => Some(format!(
                "`{name}` is not a valid model name: use 1 to 100 letters, digits, `_`, `.` or `-`, starting with a letter or digit"
            )),
            None => Some(format!("must be a string, not {}", json_type(value))),
        },
        InputKind::Version(_) => match text {
            Some(r) if !r.trim().is_empty() => None,
            _ => Some(format!("must be a version reference (a string), not {}", json_type(value))),
        },
        InputKind::Versions(_) => match value.as_array() {
            None => Some(format!("must be a list of version references, not {}", json_type(value))),
            Some(list) if list.is_empty() || list.len() > MAX_EVAL_VERSIONS => {
                Some(format!("name 1 to {MAX_EVAL_VERSIONS} versions, not {}", list.len()))
            }
            Some(list) => {
                let mut seen = HashSet::new();
                list.iter().find_map(|r| match r.as_str() {
                    None => Some(format!("each must be a version reference, not {}", json_type(r))),
                    Some(r) if !seen.insert(r) => Some(format!("{r:?} is listed twice")),
                    Some(_) => None,
                })
            }
        },
        InputKind::Snapshot(_) => match whole {
            Some(id) if id >= 1 => None,
            _ => Some(format!("must be a snapshot id (a whole number), not {}", json_type(value))),
        },
        InputKind::Choice(names) => match text {
            Some(name) if names.contains(&name) => None,
            _ => Some(format!("must be one of {}", names.join(", "))),
        },
        InputKind::Count(low, high) => match whole {
            Some(n) if (low..=high).contains(&n) => None,
            _ => Some(format!("must be a whole number from {low} to {high}, got {value}")),
        },
        InputKind::Counts(low, high) => match value.as_array() {
            None => Some(format!("must be a list of whole numbers, not {}", json_type(value))),
            Some(items) => {
                if let Some(bad) = items.iter().find(|n| !n.as_i64().is_some_and(|n| (low..=high).contains(&n))) {
                    Some(format!("{bad} must be {low} to {high}"))
                } else if items.is_empty() || items.len() > MAX_SHOT_COUNTS {
                    Some(format!("give 1 to {MAX_SHOT_COUNTS} numbers, not {}", items.len()))
                } else {
                    (1..items.len())
                        .find(|&i| items[..i].contains(&items[i]))
                        .map(|i| format!("{} is listed twice", items[i]))
                }
            }
        },
        InputKind::Phrases => match value.as_array() {
            Some(items) if !items.is_empty() && items.iter().all(|p| p.as_str().is_some_and(|p| !p.trim().is_empty())) => None,
            _ => Some("must be one or more words or phrases".into()),
        },
        InputKind::Text => match text {
            Some(t) if !t.trim().is_empty() => None,
            _ => Some(format!("must be text, not {}", json_type(value))),
        },
        InputKind::Flag => match value {
            Value::Bool(_) => None,
            _ => Some(format!("must be true or false, not {}", json_type(value))),
        },
    }
}

/// Every problem of a stage's settings given as JSON: unknown settings, wrong types and
/// values out of range, each named `stage.setting`; then the checks that relate two
/// settings. A number is checked as written, so `-4` for a count reads "must be at
/// least 1, got -4", not serde's "expected usize".
pub fn stage_problems<C: StageSettings>(stage: &Value, run_kind: RunKind) -> Result<C, Problems> {
    let mut problems = Problems::default();
    let empty = Map::new();
    let map = match stage {
        Value::Null => &empty,
        Value::Object(map) => map,
        other => {
            problems.push("stage", format!("must be an object, not {}", json_type(other)));
            return Err(problems);
        }
    };
    for (key, value) in map {
        let field = format!("stage.{key}");
        let Some(setting) = C::SETTINGS.iter().find(|s| s.name == key) else {
            problems.push(field, format!("`{key}` is not a {run_kind} setting"));
            continue;
        };
        let fits = match (setting.kind, value) {
            (kind, Value::Null) => kind.is_optional(),
            (SettingType::Bool, v) => v.is_boolean(),
            (SettingType::Choice(names), v) => v.as_str().is_some_and(|name| names.contains(&name)),
            (kind, Value::Number(n)) if kind.is_integer() => n.is_i64() || n.is_u64(),
            (_, Value::Number(_)) => setting.kind != SettingType::Bool,
            _ => false,
        };
        if let (false, SettingType::Choice(_)) = (fits, setting.kind) {
            problems.push(field, format!("must be {}, not {value}", setting.requirement()));
        } else if !fits {
            problems.push(field, format!("must be {}, not {}", setting.kind.describe(), json_type(value)));
        } else if let Some(x) = value.as_f64().filter(|_| setting.kind != SettingType::Bool) {
            if !setting.range.contains(x) {
                problems.push(
                    field,
                    format!("{}, got {value}", setting.range.requirement(setting.kind.is_integer())),
                );
            }
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let config: C = serde_json::from_value(Value::Object(map.clone())).map_err(|e| {
        let mut problems = Problems::default();
        problems.push("stage", e.to_string());
        problems
    })?;
    config.problems().under("stage").into_result()?;
    Ok(config)
}

/// Every problem of a run's config, named by its path, in field order; empty when the
/// config is one a worker can run (given that its versions and snapshots exist).
pub fn check(kind: RunKind, config: &Value) -> Problems {
    match RunSpec::parse(kind, config) {
        Ok(_) => Problems::default(),
        Err(problems) => problems,
    }
}

fn text(map: &Map<String, Value>, path: &str) -> Option<String> {
    lookup(map, path).and_then(Value::as_str).map(str::to_owned)
}

fn number(map: &Map<String, Value>, path: &str) -> Option<i64> {
    lookup(map, path).and_then(Value::as_i64)
}

fn train_run<C>(map: &Map<String, Value>, stage: C) -> TrainRun<C> {
    TrainRun {
        model_name: text(map, "model_name").unwrap_or_default(),
        base: text(map, "base").unwrap_or_default(),
        snapshot_id: number(map, "snapshot_id"),
        votes_snapshot_id: number(map, "votes_snapshot_id"),
        demonstrations_snapshot_id: number(map, "demonstrations_snapshot_id"),
        stage,
    }
}

fn rl_run<C>(map: &Map<String, Value>, stage: C) -> RlRun<C> {
    RlRun {
        model_name: text(map, "model_name").unwrap_or_default(),
        policy: text(map, "policy").unwrap_or_default(),
        reward: text(map, "reward").unwrap_or_default(),
        snapshot_id: number(map, "snapshot_id"),
        ptx_snapshot_id: number(map, "ptx_snapshot_id"),
        stage,
    }
}

fn read<T: DeserializeOwned>(value: &Value) -> T {
    serde_json::from_value(value.clone()).expect("a checked config reads as its fields")
}

impl RunSpec {
    /// The config checked against the contract: every problem, or the run to do.
    pub fn parse(kind: RunKind, config: &Value) -> Result<RunSpec, Problems> {
        let mut problems = Problems::default();
        let Some(map) = config.as_object() else {
            problems.push("config", format!("must be a JSON object, not {}", json_type(config)));
            return Err(problems);
        };
        let inputs = inputs(kind);
        // Keys: each top-level one known; a group's (prompts, skills) an object of known keys.
        for (key, value) in map {
            let members: Vec<&str> = inputs
                .iter()
                .filter_map(|i| i.name.strip_prefix(key.as_str()).and_then(|rest| rest.strip_prefix('.')))
                .collect();
            let plain = inputs.iter().any(|i| i.name == key);
            if key == "stage" || plain || (kind == RunKind::Eval && key == "probes") {
                continue;
            }
            if members.is_empty() {
                problems.push(key.clone(), format!("a {kind} run takes no `{key}`"));
                continue;
            }
            match value {
                Value::Null => {}
                Value::Object(group) => {
                    for sub in group.keys().filter(|k| !members.contains(&k.as_str())) {
                        problems.push(
                            format!("{key}.{sub}"),
                            format!("is not a setting of {key} ({})", members.join(", ")),
                        );
                    }
                }
                other => problems.push(key.clone(), format!("must be an object, not {}", json_type(other))),
            }
        }
        for input in inputs.iter().filter(|i| !i.name.starts_with("probes.")) {
            match lookup(map, input.name) {
                None if input.required => problems.push(input.name, "is required"),
                None => {}
                Some(value) => {
                    if let Some(message) = input_problem(input, value) {
                        problems.push(input.name, message);
                    }
                }
            }
        }
        if kind == RunKind::Pretrain
            && lookup(map, "corpus").is_some()
            && lookup(map, "snapshot_id").is_some()
        {
            problems.push("corpus", "give a corpus or a snapshot_id, not both");
        }
        if kind == RunKind::Eval {
            if let Some(tasks) = text(map, "skills.tasks") {
                let shots: Vec<usize> = lookup(map, "skills.shots")
                    .and_then(Value::as_array)
                    .map(|list| list.iter().filter_map(Value::as_u64).map(|n| n as usize).collect())
                    .unwrap_or_else(|| vec![0, 1, 3]);
                if let Err(reason) = crate::eval::read_tasks(&tasks, shots.into_iter().max().unwrap_or(0)) {
                    problems.push("skills.tasks", reason);
                }
            }
        }
        if kind == RunKind::Pretrain {
            if let Some(words) = text(map, "attention") {
                if let Err(reason) = words.parse::<LayerWords>() {
                    problems.push("attention", reason);
                }
            }
            if lookup(map, "base").is_some() {
                for field in ["attention", "sparse_window", "sparse_stride"] {
                    if lookup(map, field).is_some() {
                        problems.push(field, "shapes a fresh model: a base version keeps its own");
                    }
                }
            }
        }
        if kind == RunKind::Ppo {
            let ptx_coef = lookup(map, "stage.ptx_coef").and_then(Value::as_f64).unwrap_or(0.0);
            let corpus = lookup(map, "ptx_snapshot_id").is_some();
            if ptx_coef > 0.0 && !corpus {
                problems.push("ptx_snapshot_id", "PPO-ptx (stage.ptx_coef > 0) needs its pretraining corpus");
            } else if corpus && ptx_coef <= 0.0 {
                problems.push("ptx_snapshot_id", "is read only by PPO-ptx: set stage.ptx_coef above 0");
            }
        }
        if kind == RunKind::Sample {
            let mixed = lookup(map, "mix").and_then(Value::as_array).map_or(0, Vec::len);
            let mix_k = number(map, "mix_k").unwrap_or(1) as usize;
            let version = text(map, "version").unwrap_or_default();
            if let Some(reason) =
                number(map, "k").and_then(|k| mix_leaves_none(mixed, mix_k, k as usize, &version))
            {
                problems.push("mix_k", reason);
            }
            if mixed == 0 && lookup(map, "mix_k").is_some() {
                problems.push("mix_k", "is read only with mix: name the versions to mix in");
            }
        }
        if kind == RunKind::Eval {
            for (field, reason) in eval::probes_problems(map.get("probes").unwrap_or(&Value::Null)) {
                problems.push(field, reason);
            }
        }
        let stage = map.get("stage").unwrap_or(&Value::Null);
        let text = |path: &str| text(map, path);
        let number = |path: &str| number(map, path);
        let spec = match kind {
            RunKind::Pretrain => stage_problems::<PretrainConfig>(stage, kind).map(|stage| {
                RunSpec::Pretrain(PretrainRun {
                    model_name: text("model_name").unwrap_or_default(),
                    base: text("base"),
                    preset: text("preset").unwrap_or_else(|| "tiny".into()),
                    tokenizer: text("tokenizer").unwrap_or_else(|| "bytes".into()),
                    corpus_documents: number("corpus_documents").map_or(CORPUS_DOCUMENTS, |n| n as usize),
                    snapshot_id: number("snapshot_id"),
                    attention: text("attention").and_then(|w| w.parse().ok()).unwrap_or(LayerWords::Dense),
                    sparse_window: number("sparse_window"),
                    sparse_stride: number("sparse_stride"),
                    stage,
                })
            }),
            RunKind::Sft => stage_problems::<SftConfig>(stage, kind).map(|s| RunSpec::Sft(train_run(map, s))),
            RunKind::Reward => {
                stage_problems::<RewardConfig>(stage, kind).map(|s| RunSpec::Reward(train_run(map, s)))
            }
            RunKind::Ppo => stage_problems::<PpoConfig>(stage, kind).map(|s| RunSpec::Ppo(rl_run(map, s))),
            RunKind::Dpo => stage_problems::<DpoConfig>(stage, kind).map(|stage| {
                RunSpec::Dpo(TrainRun {
                    model_name: text("model_name").unwrap_or_default(),
                    base: text("policy").unwrap_or_default(),
                    snapshot_id: number("snapshot_id"),
                    votes_snapshot_id: number("votes_snapshot_id"),
                    demonstrations_snapshot_id: None,
                    stage,
                })
            }),
            RunKind::Rloo => stage_problems::<RlooConfig>(stage, kind).map(|s| RunSpec::Rloo(rl_run(map, s))),
            RunKind::Grpo => stage_problems::<GrpoConfig>(stage, kind).map(|s| RunSpec::Grpo(rl_run(map, s))),
            RunKind::Sample => stage_problems::<SamplingConfig>(stage, kind).map(|stage| {
                RunSpec::Sample(SampleRun {
                    version: text("version").unwrap_or_default(),
                    prompts: PromptSet::default(),
                    k: number("k").map(|k| k as usize),
                    mix: Vec::new(),
                    mix_k: number("mix_k").map_or(1, |k| k as usize),
                    stage,
                })
            }),
            RunKind::Eval => stage_problems::<SamplingConfig>(stage, kind).map(|stage| {
                RunSpec::Eval(EvalRun {
                    versions: Vec::new(),
                    reward: text("reward"),
                    reference: text("reference"),
                    prompts: PromptSet::default(),
                    stage,
                    skills: None,
                    probes: Vec::new(),
                })
            }),
        };
        let mut spec = match spec {
            Ok(spec) => spec,
            Err(stage_problems) => {
                problems.extend(stage_problems);
                return Err(problems);
            }
        };
        if !problems.is_empty() {
            return Err(problems);
        }
        // Everything is checked: the groups read as their types.
        let prompts = map.get("prompts").filter(|v| !v.is_null()).map(read::<PromptSet>).unwrap_or_default();
        match &mut spec {
            RunSpec::Sample(run) => {
                run.prompts = prompts;
                run.mix = map.get("mix").filter(|v| !v.is_null()).map(read).unwrap_or_default();
            }
            RunSpec::Eval(run) => {
                run.prompts = prompts;
                run.versions = read(&map["versions"]);
                run.skills = map.get("skills").filter(|v| !v.is_null()).map(|_| {
                    let mut shots: Vec<usize> = lookup(map, "skills.shots").map_or(vec![0, 1, 3], read);
                    shots.sort_unstable();
                    let most = shots.last().copied().unwrap_or(0);
                    // Checked above, so it reads.
                    let tasks = text("skills.tasks")
                        .map(|t| crate::eval::read_tasks(&t, most).unwrap_or_default())
                        .unwrap_or_default();
                    SkillsSpec { shots, per_skill: lookup(map, "skills.per_skill").map_or(20, read), tasks }
                });
                run.probes = lookup(map, "probes")
                    .and_then(Value::as_array)
                    .map(|list| {
                        list.iter()
                            .map(|p| Probe {
                                template: read(&p["template"]),
                                groups: read(&p["groups"]),
                                samples: p.get("samples").filter(|v| !v.is_null()).map_or(64, read),
                                top: p.get("top").filter(|v| !v.is_null()).map_or(8, read),
                            })
                            .collect()
                    })
                    .unwrap_or_default();
            }
            _ => {}
        }
        Ok(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(kind: RunKind, config: Value) -> Vec<String> {
        check(kind, &config).into_iter().map(|p| p.field).collect()
    }

    #[test]
    fn absent_stage_settings_take_the_defaults_and_given_ones_win() {
        let spec = RunSpec::parse(
            RunKind::Sft,
            &json!({ "model_name": "sft", "base": "base:1", "stage": { "lr": 0.001, "steps": 3 } }),
        )
        .unwrap();
        let RunSpec::Sft(run) = spec else { panic!("not sft") };
        assert_eq!((run.stage.lr, run.stage.steps), (Some(0.001), Some(3)));
        assert_eq!(run.stage.batch_size, SftConfig::default().batch_size);
        assert_eq!(run.snapshot_id, None);
    }

    #[test]
    fn every_bad_setting_is_named_by_its_path_at_once() {
        let config = json!({ "model_name": "pol", "policy": "sft", "reward": "rm",
                             "stage": { "kl_coef": -1, "batch_size": -4, "minibatch_size": 2 } });
        let problems = check(RunKind::Ppo, &config);
        assert_eq!(
            problems.to_string(),
            "stage.batch_size: must be at least 1, got -4; stage.kl_coef: must be a number >= 0, got -1"
        );
        let config =
            json!({ "model_name": "sft", "base": "b", "stage": { "val_fraction": 1.5, "lr": "fast" } });
        assert_eq!(fields(RunKind::Sft, config), ["stage.lr", "stage.val_fraction"]);
    }

    #[test]
    fn unknown_fields_wrong_types_and_bad_values_are_named() {
        let cases = [
            (
                RunKind::Sft,
                json!({ "model_name": "m", "base": "b", "stage": { "lr_max": 1 } }),
                "stage.lr_max",
            ),
            (RunKind::Sft, json!({ "model_name": "m", "base": "b", "stage": { "lr": "fast" } }), "stage.lr"),
            (
                RunKind::Sft,
                json!({ "model_name": "m", "base": "b", "stage": { "epochs": 2.5 } }),
                "stage.epochs",
            ),
            (RunKind::Sft, json!({ "model_name": "m", "base": "b", "bsae": "b" }), "bsae"),
            (RunKind::Sft, json!({ "model_name": "m" }), "base"),
            (RunKind::Reward, json!({ "model_name": "a b", "base": "b" }), "model_name"),
            (
                RunKind::Ppo,
                json!({ "model_name": "p", "policy": "s", "reward": "r", "stage": { "batch_size": 0 } }),
                "stage.batch_size",
            ),
            (RunKind::Sample, json!({ "version": "v", "k": 12 }), "k"),
            (RunKind::Sample, json!({ "version": "v", "mix": "w" }), "mix"),
            (RunKind::Sample, json!({ "version": "v", "mix": ["w", "w"] }), "mix"),
            (RunKind::Sample, json!({ "version": "v", "mix": ["w", "x"], "mix_k": 2, "k": 4 }), "mix_k"),
            (RunKind::Sample, json!({ "version": "v", "mix_k": 1 }), "mix_k"),
            (RunKind::Sample, json!({ "version": "v", "mix": ["w"], "mix_k": 9 }), "mix_k"),
            (RunKind::Sample, json!({ "version": "v", "prompts": { "split": "dev" } }), "prompts.split"),
            (RunKind::Sample, json!({ "version": "v", "prompts": { "limit": -1 } }), "prompts.limit"),
            (RunKind::Sample, json!({ "version": "v", "prompts": { "splt": "val" } }), "prompts.splt"),
            (RunKind::Pretrain, json!({ "model_name": "m", "preset": "huge" }), "preset"),
            (RunKind::Pretrain, json!({ "model_name": "m", "tokenizer": "words" }), "tokenizer"),
            (RunKind::Pretrain, json!({ "model_name": "m", "corpus": "web" }), "corpus"),
            (
                RunKind::Pretrain,
                json!({ "model_name": "m", "corpus": "demo_world", "snapshot_id": 3 }),
                "corpus",
            ),
            (RunKind::Pretrain, json!({ "model_name": "m", "attention": "banded" }), "attention"),
            (RunKind::Pretrain, json!({ "model_name": "m", "sparse_window": 0 }), "sparse_window"),
            (
                RunKind::Pretrain,
                json!({ "model_name": "m", "base": "b", "attention": "sparse" }),
                "attention",
            ),
            (RunKind::Eval, json!({ "versions": [] }), "versions"),
            (RunKind::Eval, json!({ "versions": ["a", "a"] }), "versions"),
            (
                RunKind::Eval,
                json!({ "versions": ["a"], "stage": { "temperature": -1 } }),
                "stage.temperature",
            ),
            (RunKind::Eval, json!({ "versions": ["a"], "skills": { "shots": [0, 9] } }), "skills.shots"),
            (RunKind::Eval, json!({ "versions": ["a"], "skills": { "shot": [1] } }), "skills.shot"),
            (
                RunKind::Eval,
                json!({ "versions": ["a"], "probes": [{ "template": "x", "groups": ["a"] }] }),
                "probes[0].template",
            ),
            (RunKind::Eval, json!([1]), "config"),
        ];
        for (kind, config, field) in cases {
            let found = fields(kind, config.clone());
            assert_eq!(found, [field], "{config}: {}", check(kind, &config));
        }
    }

    #[test]
    fn rloo_and_grpo_runs_name_a_reward_model_and_never_a_reward_program() {
        let config = json!({ "model_name": "p", "policy": "sft:1", "reward": "rm:2", "snapshot_id": 4,
                             "stage": { "k": 2 } });
        let RunSpec::Rloo(run) = RunSpec::parse(RunKind::Rloo, &config).unwrap() else { panic!("not rloo") };
        assert_eq!((run.policy.as_str(), run.reward.as_str(), run.snapshot_id), ("sft:1", "rm:2", Some(4)));
        assert_eq!((run.stage.k, run.stage.lr), (2, RlooConfig::default().lr));
        let config =
            json!({ "model_name": "p", "policy": "sft", "stage": { "group_size": 1, "clip_high": 0.28 } });
        assert_eq!(fields(RunKind::Grpo, config), ["reward", "stage.group_size"]);
        let config = json!({ "model_name": "p", "policy": "sft", "reward_cmd": "plumb world reward" });
        assert_eq!(fields(RunKind::Grpo, config), ["reward_cmd", "reward"]);
    }

    #[test]
    fn a_sample_run_shares_each_prompts_k_samples_between_its_version_and_the_mixed_in_ones() {
        let config = json!({ "version": "sft", "mix": ["base:1", "dpo"], "k": 5 });
        let RunSpec::Sample(run) = RunSpec::parse(RunKind::Sample, &config).unwrap() else { panic!() };
        assert_eq!(run.writers(5).unwrap(), [("sft", 3), ("base:1", 1), ("dpo", 1)]);
        let config = json!({ "version": "sft", "mix": ["base"], "mix_k": 2 });
        let RunSpec::Sample(run) = RunSpec::parse(RunKind::Sample, &config).unwrap() else { panic!() };
        assert_eq!(run.writers(4).unwrap(), [("sft", 2), ("base", 2)]);
        // The project's K, known only when the run starts, may leave the version none.
        assert!(run.writers(2).unwrap_err().contains("leaving none for \"sft\""));
        let RunSpec::Sample(run) = RunSpec::parse(RunKind::Sample, &json!({ "version": "sft" })).unwrap()
        else {
            panic!()
        };
        assert_eq!(run.writers(4).unwrap(), [("sft", 4)]);
    }

    #[test]
    fn what_the_demo_queues_is_a_valid_config() {
        let config = json!({ "model_name": "base", "preset": "tiny", "corpus": "demo_world",
                             "corpus_documents": 4000, "tokenizer": "bytes", "stage": { "steps": 10 } });
        let RunSpec::Pretrain(run) = RunSpec::parse(RunKind::Pretrain, &config).unwrap() else { panic!() };
        assert_eq!(
            (run.corpus_documents, run.tokenizer.as_str(), run.stage.steps),
            (4000, "bytes", Some(10))
        );
    }

    fn eval(extra: Value) -> Result<EvalRun, Problems> {
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
        assert_eq!(run.skills, Some(SkillsSpec { shots: vec![0, 1, 3], per_skill: 20, tasks: vec![] }));
        let probe = &run.probes[0];
        assert_eq!((probe.samples, probe.top), (64, 8));
        assert_eq!(probe.prompt("old"), "The old worker was very");
        let run = eval(json!({ "skills": { "shots": [3, 0], "per_skill": 5 } })).unwrap();
        assert_eq!(
            run.skills,
            Some(SkillsSpec { shots: vec![0, 3], per_skill: 5, tasks: vec![] }),
            "shots come sorted"
        );
        let run = eval(json!({ "prompts": { "split": "test", "limit": 2, "untasked_only": true } })).unwrap();
        assert_eq!(
            (run.prompts.split.as_deref(), run.prompts.limit, run.prompts.untasked_only),
            (Some("test"), Some(2), Some(true))
        );
    }

    #[test]
    fn bad_skills_and_probes_are_refused_naming_the_field() {
        let probe = |fields: Value| {
            let mut p = json!({ "template": "The {group} worker", "groups": ["a", "b"] });
            p.as_object_mut().unwrap().extend(fields.as_object().unwrap().clone());
            json!({ "probes": [p] })
        };
        let cases = [
            (json!({ "skills": { "shots": [0, 9] } }), "skills.shots: 9 must be 0 to 8"),
            (json!({ "skills": { "shots": [-1] } }), "skills.shots: -1 must be 0 to 8"),
            (json!({ "skills": { "shots": [0, 1, 2, 3, 4] } }), "skills.shots: give 1 to 4 numbers, not 5"),
            (json!({ "skills": { "shots": [] } }), "skills.shots: give 1 to 4"),
            (json!({ "skills": { "shots": [1, 1] } }), "skills.shots: 1 is listed twice"),
            (
                json!({ "skills": { "per_skill": 0 } }),
                "skills.per_skill: must be a whole number from 1 to 200",
            ),
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

//! plumb's run contract, in one crate without libtorch or a database: every stage's
//! settings (type, default, range, help) with a `validate()` that names every problem,
//! the config of each run kind and its parse into a [`RunSpec`], and the kind enums.
//! The trainer runs these settings, the worker parses runs with them, the web renders
//! its launch form and checks `POST /api/runs` with them, and docs/runs.md lists them
//! ([`docs::markdown`]).

pub mod attention;
pub mod chat;
pub mod docs;
pub mod eval;
pub mod kinds;
pub mod precision;
pub mod problem;
pub mod run;
pub mod scale;
pub mod schema;
pub mod setting;
pub mod stages;

pub use attention::LayerWords;
pub use kinds::{ModelKind, RunKind, SnapshotKind, UnknownKind};
pub use precision::Precision;
pub use problem::{Problem, Problems};
pub use run::{
    check, inputs, lookup, settings, stage_defaults, stage_defaults_at, EvalRun, Input, InputKind, PpoRun,
    PretrainRun, Probe, PromptSet, RlRun, RunSpec, SampleRun, SkillsSpec, TrainRun,
};
pub use scale::Scale;
pub use setting::{Range, Setting, SettingChoice, SettingType, StageSettings};
pub use stages::{
    DpoConfig, DpoLoss, GrpoConfig, PpoConfig, PretrainConfig, RewardConfig, RlooConfig, SamplingConfig,
    Selection, SftConfig,
};

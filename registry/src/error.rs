//! What can go wrong in the registry, said so that the researcher or operator who reads
//! it knows what to change.

use std::path::PathBuf;

use crate::run_status::RunStatus;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    // Runs.
    #[error("run {0} does not exist")]
    RunNotFound(i64),
    #[error("a run's config must be a JSON object, not {0}")]
    ConfigNotObject(&'static str),
    #[error("worker `{worker}` no longer holds run {run_id}: {}", holder_of(*.status, .holder.as_deref()))]
    LeaseLost { run_id: i64, worker: String, status: RunStatus, holder: Option<String> },
    #[error("run {run_id} has already finished: it {status}")]
    AlreadyFinished { run_id: i64, status: RunStatus },
    #[error("metric `{name}` at step {step} is {value}: only finite values can be stored")]
    NonFiniteMetric { name: String, step: i64, value: f64 },
    #[error("metric name `{0}` must be 1 to 200 characters long")]
    BadMetricName(String),
    #[error("metric `{name}` is reported twice for step {step} in one report")]
    DuplicateMetric { name: String, step: i64 },
    #[error("{what} must not be negative, but is {value}")]
    NegativeStep { what: &'static str, value: i64 },
    #[error("run {0} is not an eval run")]
    NotAnEvalRun(i64),
    #[error("version {version_id} is not one of this run's versions")]
    NotEvaluated { run_id: i64, version_id: i64 },
    #[error("project {0} does not exist")]
    ProjectNotFound(i64),
    #[error("user {0} does not exist")]
    UserNotFound(i64),
    #[error("a run's name must be one line of at most 200 characters (this one has {0})")]
    BadRunName(usize),
    #[error("a run's notes must be at most 10000 characters (these have {0})")]
    BadRunNotes(usize),
    #[error("world_size must be a whole number from 1 to {max} (the workers a run trains on together), not {value}", max = crate::runs::MAX_WORLD_SIZE)]
    BadWorldSize { value: String },

    // Models and versions.
    #[error(
        "`{0}` is not a valid model name: use 1 to 100 letters, digits, `_`, `.` or `-`, starting with a letter or digit"
    )]
    BadModelName(String),
    #[error("`{0}` is not a valid alias: use 1 to 64 lowercase letters, digits, `_` or `-`, starting with a letter")]
    BadAlias(String),
    #[error(
        "`{0}` is not a valid lineage role: use 1 to 32 lowercase letters or `_` (base, sft, reward, ...)"
    )]
    BadRole(String),
    #[error("`{0}` is not a valid tag: use 1 to 64 characters without spaces or control characters")]
    BadTag(String),
    #[error("`{0}` is not a model reference: write `name`, `name:3` or `name@alias`")]
    BadReference(String),
    #[error("a version's {0} must be a JSON object")]
    NotAnObject(&'static str),
    #[error("version {0} is listed as a parent twice with the same role")]
    DuplicateParent(i64),
    #[error("model `{0}` does not exist")]
    ModelNotFound(String),
    #[error("model version {0} does not exist")]
    VersionNotFound(i64),
    #[error("model `{model}` has no version {version}")]
    NoSuchVersion { model: String, version: i32 },
    #[error("model `{model}` has no alias `{alias}`")]
    AliasNotFound { model: String, alias: String },
    #[error("version {version_id} belongs to model `{owner}`, so alias `{alias}` of model `{model}` cannot name it")]
    VersionOfAnotherModel { model: String, alias: String, version_id: i64, owner: String },
    #[error("dataset snapshot {0} does not exist")]
    SnapshotNotFound(i64),

    // Artifacts.
    #[error("`{0}` is not a sha256 digest: expected 64 lowercase hexadecimal digits")]
    BadDigest(String),
    #[error(
        "`{0}` is not an artifact URI: expected file://<store>/sha256/<64 hex digits> or \
         s3://<bucket>/<prefix>/sha256/<64 hex digits>"
    )]
    BadUri(String),
    #[error("{path} is {what}: a checkpoint directory may hold only regular files and directories")]
    NotRegularFile { path: PathBuf, what: &'static str },
    #[error("{0}: file names in a checkpoint directory must be valid UTF-8")]
    NonUtf8Path(PathBuf),
    #[error("artifact {0} is not in the store")]
    ArtifactNotFound(String),
    #[error("artifact {sha256} is corrupt: {file} {problem}; refusing to use it")]
    ArtifactCorrupt { sha256: String, file: String, problem: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("the artifact store, at {key}: {source}")]
    ObjectStore { key: String, source: object_store::Error },
    #[error("the artifact store's setting {setting}: {problem}")]
    StoreSetting { setting: &'static str, problem: String },

    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

fn holder_of(status: RunStatus, holder: Option<&str>) -> String {
    match (status, holder) {
        (RunStatus::Running, Some(holder)) => format!("it is now running on worker `{holder}`"),
        (status, _) => format!("it is now {status}"),
    }
}

pub type Result<T, E = RegistryError> = std::result::Result<T, E>;

/// The name of the constraint that a database error violated, and its SQLSTATE.
pub(crate) fn violated(e: &sqlx::Error) -> Option<(String, String)> {
    match e {
        sqlx::Error::Database(e) => Some((e.code()?.into_owned(), e.constraint()?.to_string())),
        _ => None,
    }
}

pub(crate) const FOREIGN_KEY_VIOLATION: &str = "23503";
pub(crate) const UNIQUE_VIOLATION: &str = "23505";

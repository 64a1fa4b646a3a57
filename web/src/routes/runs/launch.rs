//! Launching a run: which references each run kind takes (the run config contract of
//! `docs/runs.md`), the launch form built from them and from the stage's defaults, and
//! the one validation that both the form and `POST /api/runs` go through before a run
//! is enqueued.

use std::collections::BTreeMap;

use labeling::projects::Project;
use labeling::snapshots::{self, Snapshot, SnapshotKind};
use registry::eval_config::{self, MAX_SHOT_COUNTS};
use registry::runs::RunKind;
use registry::versions::{self, ModelKind, ModelRef, ModelVersion};
use serde::Serialize;
use serde_json::{Map, Value};
use sqlx::PgPool;

use super::help::{self, Optional};
use super::kind_str;
use crate::error::AppError;
use crate::run_defaults::RunDefaults;

/// The model architectures a fresh pretraining run can start from.
pub const PRESETS: &[&str] = &["tiny", "gpt2", "gpt2-medium"];
const SPLITS: &[&str] = &["train", "val", "test"];

/// One thing wrong with a launch, named by its field: `base`, `stage.lr`,
/// `prompts.limit`, …
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Problem {
    pub field: String,
    pub message: String,
}

impl Problem {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Problem {
        Problem { field: field.into(), message: message.into() }
    }
}

impl From<Problem> for AppError {
    fn from(p: Problem) -> Self {
        AppError::Invalid { field: p.field, reason: p.message }
    }
}

/// What a config field holds.
#[derive(Clone, Copy, Debug)]
enum Input {
    ModelName,
    /// A version reference of one of these kinds.
    Version(&'static [ModelKind]),
    /// One or more version references (a JSON array; the form: separated by commas).
    Versions(&'static [ModelKind]),
    /// A snapshot of the project of this kind; the text says what absent means.
    Snapshot(SnapshotKind, &'static str),
    Preset,
    Split,
    /// A whole number in this range.
    Count(i64, i64),
    /// A list of whole numbers in this range (the form: separated by commas).
    Counts(i64, i64),
    /// A list of words or phrases (the form: separated by commas).
    Phrases,
    /// Free text.
    Text,
}

/// A field of a kind's config (besides `stage`). `name` is its path: `prompts.split` is
/// `{"prompts": {"split": …}}`.
#[derive(Clone, Copy, Debug)]
struct Spec {
    name: &'static str,
    label: &'static str,
    help: &'static str,
    input: Input,
    required: bool,
}

const fn spec(
    name: &'static str,
    label: &'static str,
    help: &'static str,
    input: Input,
    required: bool,
) -> Spec {
    Spec { name, label, help, input, required }
}

const MODEL_NAME: Spec = spec(
    "model_name",
    "Model name",
    "The model the new version registers under: letters, digits, `_`, `.` or `-`.",
    Input::ModelName,
    true,
);
const GENERATIVE: &[ModelKind] = &[ModelKind::Base, ModelKind::Sft, ModelKind::Policy];

/// The config fields of each kind (the contract in docs/runs.md).
fn specs(kind: RunKind) -> Vec<Spec> {
    match kind {
        RunKind::Pretrain => vec![
            MODEL_NAME,
            spec(
                "base",
                "Continue from",
                "A base version (`name`, `name:3`, `name@alias`); empty: a fresh model of the preset.",
                Input::Version(&[ModelKind::Base]),
                false,
            ),
            spec(
                "preset",
                "Preset",
                "The architecture of a fresh model (used when no version is continued).",
                Input::Preset,
                false,
            ),
            spec(
                "snapshot_id",
                "Corpus",
                "The text to pretrain on.",
                Input::Snapshot(SnapshotKind::Prompts, "the demo world's corpus"),
                false,
            ),
        ],
        RunKind::Sft => vec![
            MODEL_NAME,
            spec(
                "base",
                "Base version",
                "The version to fine-tune (`name`, `name:3`, `name@alias`).",
                Input::Version(&[ModelKind::Base, ModelKind::Sft]),
                true,
            ),
            spec(
                "snapshot_id",
                "Demonstrations",
                "A demonstrations snapshot of the project.",
                Input::Snapshot(SnapshotKind::Demonstrations, "freeze one when the run starts"),
                false,
            ),
        ],
        RunKind::Reward => vec![
            MODEL_NAME,
            spec(
                "base",
                "Initialise from",
                "The version whose trunk the reward model starts from, usually the SFT version.",
                Input::Version(&[ModelKind::Sft, ModelKind::Base]),
                true,
            ),
            spec(
                "snapshot_id",
                "Rankings",
                "A rankings snapshot of the project.",
                Input::Snapshot(SnapshotKind::Rankings, "freeze one when the run starts"),
                false,
            ),
        ],
        RunKind::Ppo => vec![
            MODEL_NAME,
            spec(
                "policy",
                "Policy (SFT)",
                "The SFT version PPO starts from; also the frozen KL reference.",
                Input::Version(&[ModelKind::Sft]),
                true,
            ),
            spec(
                "reward",
                "Reward model",
                "The reward model version that scores the samples.",
                Input::Version(&[ModelKind::Reward]),
                true,
            ),
            spec(
                "snapshot_id",
                "Prompts",
                "A prompts snapshot of the project.",
                Input::Snapshot(SnapshotKind::Prompts, "freeze one when the run starts"),
                false,
            ),
        ],
        RunKind::Sample => vec![
            spec(
                "version",
                "Version",
                "The version that writes the samples.",
                Input::Version(GENERATIVE),
                true,
            ),
            spec(
                "prompts.split",
                "Prompts from split",
                "Which of the project's prompts get samples.",
                Input::Split,
                true,
            ),
            spec(
                "prompts.limit",
                "At most this many prompts",
                "Empty: all of the split.",
                Input::Count(1, 1_000_000),
                false,
            ),
            spec(
                "k",
                "Samples per prompt (K)",
                "2 to 9; empty: the project's K. One ranking task per prompt.",
                Input::Count(2, 9),
                false,
            ),
        ],
        RunKind::Eval => vec![
            spec(
                "versions",
                "Versions",
                "The versions to evaluate, separated by commas.",
                Input::Versions(GENERATIVE),
                true,
            ),
            spec(
                "reward",
                "Reward model",
                "Optional: a reward model version that scores the generations.",
                Input::Version(&[ModelKind::Reward]),
                false,
            ),
            spec(
                "reference",
                "KL reference",
                "Optional: the version the KL is measured against.",
                Input::Version(GENERATIVE),
                false,
            ),
            spec(
                "prompts.split",
                "Prompts from split",
                "The held-out prompts to generate on.",
                Input::Split,
                true,
            ),
            spec(
                "prompts.limit",
                "At most this many prompts",
                "Empty: all of the split.",
                Input::Count(1, 1_000_000),
                false,
            ),
            spec(
                "skills.shots",
                "Few-shot accuracy: shots",
                "Optional, e.g. 0,1,3: accuracy on the demo world's skills with that many worked examples before each question (at most 4 counts, each 0 to 8).",
                Input::Counts(0, eval_config::MAX_SHOTS as i64),
                false,
            ),
            spec(
                "skills.per_skill",
                "Few-shot accuracy: tasks per skill",
                "Empty: 20.",
                Input::Count(1, eval_config::MAX_TASKS_PER_SKILL as i64),
                false,
            ),
            spec(
                "probes.template",
                "Probe template",
                "Optional, e.g. \"The {group} worker was very\": the distribution of each version's next word after it, for each group.",
                Input::Text,
                false,
            ),
            spec(
                "probes.groups",
                "Probe groups",
                "What fills {group}, separated by commas (1 to 8).",
                Input::Phrases,
                false,
            ),
        ],
    }
}

/// Top-level config keys a kind accepts besides its fields' first segments.
fn extra_keys(kind: RunKind) -> &'static [&'static str] {
    match kind {
        RunKind::Pretrain => &["stage", "corpus"],
        // The worker checks a list of probes (the form's one probe is its first).
        RunKind::Eval => &["stage", "probes"],
        _ => &["stage"],
    }
}

fn lookup<'a>(config: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    let mut parts = path.split('.');
    let mut value = config.get(parts.next()?)?;
    for part in parts {
        value = value.as_object()?.get(part)?;
    }
    Some(value).filter(|v| !v.is_null())
}

fn insert(config: &mut Map<String, Value>, path: &str, value: Value) {
    match path.split_once('.') {
        None => {
            config.insert(path.to_owned(), value);
        }
        Some((head, rest)) => {
            let inner = config.entry(head.to_owned()).or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(inner) = inner {
                insert(inner, rest, value);
            }
        }
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "empty",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn model_kind_str(kind: ModelKind) -> &'static str {
    match kind {
        ModelKind::Base => "base",
        ModelKind::Sft => "sft",
        ModelKind::Reward => "reward",
        ModelKind::Policy => "policy",
    }
}

pub fn snapshot_kind_str(kind: SnapshotKind) -> &'static str {
    match kind {
        SnapshotKind::Prompts => "prompts",
        SnapshotKind::Demonstrations => "demonstrations",
        SnapshotKind::Rankings => "rankings",
        SnapshotKind::Comparisons => "comparisons",
    }
}

/// Checks a run's config against the contract: known keys only, every reference
/// resolving to a version of a suitable kind, snapshots of the project and of the right
/// kind, stage settings known to the stage's defaults and of their type. Every problem
/// found, in field order.
pub async fn check(
    pool: &PgPool,
    defaults: &RunDefaults,
    project: &Project,
    kind: RunKind,
    config: &Value,
) -> Result<Vec<Problem>, AppError> {
    let Some(config) = config.as_object() else {
        return Ok(vec![Problem::new("config", format!("must be a JSON object, not {}", json_type(config)))]);
    };
    let specs = specs(kind);
    let mut problems = Vec::new();
    for key in config.keys() {
        let known = specs.iter().any(|s| s.name.split('.').next() == Some(key.as_str()))
            || extra_keys(kind).contains(&key.as_str());
        if !known {
            problems.push(Problem::new(key, format!("a {} run takes no `{key}`", kind_str(kind))));
        }
    }
    for spec in &specs {
        let Some(value) = lookup(config, spec.name) else {
            if spec.required {
                problems.push(Problem::new(spec.name, "is required"));
            }
            continue;
        };
        if let Err(message) = check_field(pool, project, spec, value).await? {
            problems.push(Problem::new(spec.name, message));
        }
    }
    if kind == RunKind::Pretrain {
        match (lookup(config, "corpus"), lookup(config, "snapshot_id")) {
            (Some(_), Some(_)) => {
                problems.push(Problem::new("corpus", "give a corpus or a snapshot_id, not both"))
            }
            (None, None) => problems.push(Problem::new("corpus", "give \"demo_world\" or a snapshot_id")),
            (Some(corpus), None) if corpus != "demo_world" => {
                problems.push(Problem::new("corpus", "the only named corpus is \"demo_world\""))
            }
            _ => {}
        }
    }
    if kind == RunKind::Eval {
        problems.extend(check_skills(config.get("skills")));
        problems.extend(check_probes(config.get("probes")));
    }
    match config.get("stage") {
        None => {}
        Some(Value::Object(stage)) => problems.extend(check_stage(defaults, kind, stage)),
        Some(other) => {
            problems.push(Problem::new("stage", format!("must be an object, not {}", json_type(other))))
        }
    }
    Ok(problems)
}

/// `Ok(Err(message))` when the field's value is wrong.
async fn check_field(
    pool: &PgPool,
    project: &Project,
    spec: &Spec,
    value: &Value,
) -> Result<Result<(), String>, AppError> {
    let text = value.as_str();
    Ok(match spec.input {
        Input::ModelName => match text {
            Some(name) if matches!(ModelRef::parse(name), Ok(ModelRef::Latest(_))) => Ok(()),
            Some(name) => Err(format!("`{name}` is not a valid model name: use 1 to 100 letters, digits, `_`, `.` or `-`, starting with a letter or digit")),
            None => Err(format!("must be a string, not {}", json_type(value))),
        },
        Input::Version(kinds) => match text {
            Some(reference) => check_version(pool, reference, kinds).await?,
            None => Err(format!("must be a version reference (a string), not {}", json_type(value))),
        },
        Input::Versions(kinds) => match value.as_array() {
            Some(references) if !references.is_empty() => {
                let mut result = Ok(());
                for reference in references {
                    let checked = match reference.as_str() {
                        Some(reference) => check_version(pool, reference, kinds).await?,
                        None => Err(format!("each must be a version reference, not {}", json_type(reference))),
                    };
                    if checked.is_err() {
                        result = checked;
                        break;
                    }
                }
                result
            }
            Some(_) => Err("name at least one version".into()),
            None => Err(format!("must be a list of version references, not {}", json_type(value))),
        },
        Input::Snapshot(wanted, _) => match value.as_i64() {
            Some(id) => check_snapshot(pool, project, id, wanted).await?,
            None => Err(format!("must be a snapshot id (a whole number), not {}", json_type(value))),
        },
        Input::Preset => match text {
            Some(preset) if PRESETS.contains(&preset) => Ok(()),
            _ => Err(format!("must be one of {}", PRESETS.join(", "))),
        },
        Input::Split => match text {
            Some(split) if SPLITS.contains(&split) => Ok(()),
            _ => Err("must be train, val or test".into()),
        },
        Input::Count(low, high) => match value.as_i64() {
            Some(n) if (low..=high).contains(&n) => Ok(()),
            _ => Err(format!("must be a whole number from {low} to {high}")),
        },
        Input::Counts(low, high) => match value.as_array() {
            Some(items) if !items.iter().all(|n| n.as_i64().is_some_and(|n| (low..=high).contains(&n))) => {
                Err(format!("must be whole numbers from {low} to {high}, separated by commas"))
            }
            Some(items) if items.is_empty() || items.len() > MAX_SHOT_COUNTS => {
                Err(format!("give 1 to {MAX_SHOT_COUNTS} numbers, not {}", items.len()))
            }
            Some(items) if (1..items.len()).any(|i| items[..i].contains(&items[i])) => {
                Err("give each number once".into())
            }
            Some(_) => Ok(()),
            None => Err(format!("must be a list of whole numbers, not {}", json_type(value))),
        },
        Input::Phrases => match value.as_array() {
            Some(items) if !items.is_empty() && items.iter().all(|p| p.as_str().is_some_and(|p| !p.trim().is_empty())) => {
                Ok(())
            }
            _ => Err("must be one or more words or phrases, separated by commas".into()),
        },
        Input::Text => match text {
            Some(t) if !t.trim().is_empty() => Ok(()),
            _ => Err(format!("must be text, not {}", json_type(value))),
        },
    })
}

/// An eval run's `skills`, beyond its fields' own checks: an object of known keys.
fn check_skills(skills: Option<&Value>) -> Vec<Problem> {
    match skills {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Object(map)) => map
            .keys()
            .filter(|k| !["shots", "per_skill"].contains(&k.as_str()))
            .map(|k| Problem::new(format!("skills.{k}"), "is not a setting of skills (shots, per_skill)"))
            .collect(),
        Some(other) => vec![Problem::new("skills", format!("must be an object, not {}", json_type(other)))],
    }
}

/// An eval run's `probes`, with the worker's rules, each problem naming `probes[i].field`.
fn check_probes(probes: Option<&Value>) -> Vec<Problem> {
    eval_config::probes_problems(probes.unwrap_or(&Value::Null))
        .into_iter()
        .map(|(field, reason)| Problem::new(field, reason))
        .collect()
}

async fn check_version(
    pool: &PgPool,
    reference: &str,
    kinds: &[ModelKind],
) -> Result<Result<(), String>, AppError> {
    use registry::error::RegistryError as R;
    match versions::resolve(pool, reference).await {
        Ok(version) if kinds.contains(&version.kind) => Ok(Ok(())),
        Ok(version) => Ok(Err(format!(
            "`{reference}` is a {} model; this takes {}",
            model_kind_str(version.kind),
            kinds.iter().map(|k| model_kind_str(*k)).collect::<Vec<_>>().join(" or ")
        ))),
        Err(
            e @ (R::BadReference(_)
            | R::ModelNotFound(_)
            | R::NoSuchVersion { .. }
            | R::AliasNotFound { .. }
            | R::VersionNotFound(_)),
        ) => Ok(Err(e.to_string())),
        Err(e) => Err(e.into()),
    }
}

async fn check_snapshot(
    pool: &PgPool,
    project: &Project,
    id: i64,
    wanted: SnapshotKind,
) -> Result<Result<(), String>, AppError> {
    let snapshot = match snapshots::snapshot(pool, id).await {
        Ok(snapshot) => snapshot,
        Err(labeling::error::LabelingError::NotFound { .. }) => {
            return Ok(Err(format!("snapshot {id} does not exist")))
        }
        Err(e) => return Err(e.into()),
    };
    Ok(if snapshot.project_id != project.id {
        Err(format!("snapshot {id} belongs to another project"))
    } else if snapshot.kind != wanted {
        Err(format!(
            "snapshot {id} holds {}, not {}",
            snapshot_kind_str(snapshot.kind),
            snapshot_kind_str(wanted)
        ))
    } else {
        Ok(())
    })
}

/// Stage settings: each must be one of the stage's defaults and of the default's type.
/// Without defaults for the kind, any object passes (the worker checks it).
fn check_stage(defaults: &RunDefaults, kind: RunKind, stage: &Map<String, Value>) -> Vec<Problem> {
    let Some(Value::Object(known)) = defaults.of(kind_str(kind)) else { return Vec::new() };
    let mut problems = Vec::new();
    for (key, value) in stage {
        let field = format!("stage.{key}");
        let Some(default) = known.get(key) else {
            problems.push(Problem::new(field, format!("`{key}` is not a {} setting", kind_str(kind))));
            continue;
        };
        if let Err(message) = same_type(key, default, value) {
            problems.push(Problem::new(field, message));
        }
    }
    problems
}

fn is_integer(value: &Value) -> bool {
    value.is_i64() || value.is_u64()
}

/// Whether `value` can stand where `default` stands.
fn same_type(key: &str, default: &Value, value: &Value) -> Result<(), String> {
    let fits = match default {
        Value::Number(_) if is_integer(default) => is_integer(value),
        Value::Number(_) => value.is_number(),
        Value::Null => match help::optional_type(key) {
            _ if value.is_null() => true,
            Some(Optional::Integer) => is_integer(value),
            Some(Optional::Number) | None => value.is_number(),
        },
        Value::Bool(_) => value.is_boolean(),
        Value::String(_) => value.is_string(),
        Value::Array(_) => value.is_array(),
        Value::Object(_) => value.is_object(),
    };
    if fits {
        Ok(())
    } else {
        Err(format!("must be {}, not {}", expected(key, default), json_type(value)))
    }
}

fn expected(key: &str, default: &Value) -> &'static str {
    match default {
        Value::Number(_) if is_integer(default) => "a whole number",
        Value::Number(_) => "a number",
        Value::Null => match help::optional_type(key) {
            Some(Optional::Integer) => "a whole number or empty",
            _ => "a number or empty",
        },
        other => json_type(other),
    }
}

/// A form's text for a stage setting, read as the default's type.
fn parse_setting(key: &str, default: &Value, raw: &str) -> Result<Value, String> {
    let raw = raw.trim();
    let number = |raw: &str| -> Result<Value, String> {
        raw.parse::<f64>()
            .ok()
            .filter(|x| x.is_finite())
            .map(Value::from)
            .ok_or_else(|| format!("must be a number, not {raw:?}"))
    };
    let integer = |raw: &str| -> Result<Value, String> {
        raw.parse::<i64>().map(Value::from).map_err(|_| format!("must be a whole number, not {raw:?}"))
    };
    if raw.is_empty() {
        return if default.is_null() { Ok(Value::Null) } else { Err("a value is required".into()) };
    }
    match default {
        Value::Number(_) if is_integer(default) => integer(raw),
        Value::Number(_) => number(raw),
        Value::Null => match help::optional_type(key) {
            Some(Optional::Integer) => integer(raw),
            _ => integer(raw).or_else(|_| number(raw)),
        },
        Value::Bool(_) => match raw {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => Err(format!("must be true or false, not {raw:?}")),
        },
        Value::String(_) => Ok(Value::String(raw.to_owned())),
        Value::Array(_) | Value::Object(_) => {
            let parsed: Value = serde_json::from_str(raw).map_err(|e| format!("must be JSON: {e}"))?;
            same_type(key, default, &parsed).map(|()| parsed)
        }
    }
}

/// The form's text of a stage setting's value.
fn setting_text(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A launch form's post, as its (name, value) pairs, turned into a run config; the
/// problems are those of reading the form (a missing required field, text where a
/// number belongs, a stage setting the stage does not have).
pub fn config_from_form(
    defaults: &RunDefaults,
    kind: RunKind,
    pairs: &[(String, String)],
) -> (Value, Vec<Problem>) {
    let value_of = |name: &str| pairs.iter().find(|(n, _)| n == name).map(|(_, v)| v.trim()).unwrap_or("");
    let mut config = Map::new();
    let mut problems = Vec::new();
    for spec in specs(kind) {
        let raw = value_of(spec.name);
        if raw.is_empty() {
            if spec.required {
                problems.push(Problem::new(spec.name, "is required"));
            }
            continue;
        }
        let value = match spec.input {
            Input::Versions(_) => Value::Array(
                raw.split(|c: char| c == ',' || c.is_whitespace())
                    .filter(|r| !r.is_empty())
                    .map(|r| Value::String(r.to_owned()))
                    .collect(),
            ),
            Input::Counts(..) => {
                let parts: Vec<&str> = raw.split(',').map(str::trim).filter(|p| !p.is_empty()).collect();
                match parts.iter().map(|p| p.parse::<i64>()).collect::<Result<Vec<i64>, _>>() {
                    Ok(numbers) => Value::from(numbers),
                    Err(_) => {
                        problems.push(Problem::new(
                            spec.name,
                            format!("must be whole numbers separated by commas, not {raw:?}"),
                        ));
                        continue;
                    }
                }
            }
            Input::Phrases => Value::Array(
                raw.split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(|p| Value::String(p.to_owned()))
                    .collect(),
            ),
            Input::Snapshot(..) | Input::Count(..) => match raw.parse::<i64>() {
                Ok(n) => Value::from(n),
                Err(_) => {
                    problems.push(Problem::new(spec.name, format!("must be a whole number, not {raw:?}")));
                    continue;
                }
            },
            _ => Value::String(raw.to_owned()),
        };
        insert(&mut config, spec.name, value);
    }
    if kind == RunKind::Pretrain && !config.contains_key("snapshot_id") {
        config.insert("corpus".into(), Value::String("demo_world".into()));
    }
    if kind == RunKind::Pretrain && config.contains_key("base") {
        config.remove("preset");
    }
    // The form asks for one probe; the config holds a list of them.
    if let Some(probe) = config.remove("probes") {
        if probe.get("template").is_none() {
            problems.push(Problem::new("probes.template", "is required with probe groups"));
        }
        if probe.get("groups").is_none() {
            problems.push(Problem::new("probes.groups", "is required with a probe template"));
        }
        config.insert("probes".into(), Value::Array(vec![probe]));
    }
    let known = defaults.of(kind_str(kind)).and_then(Value::as_object);
    let mut stage = Map::new();
    for (name, raw) in pairs {
        let Some(key) = name.strip_prefix("stage.") else { continue };
        let field = name.clone();
        let parsed = match known {
            Some(known) => match known.get(key) {
                Some(default) => parse_setting(key, default, raw),
                None => Err(format!("`{key}` is not a {} setting", kind_str(kind))),
            },
            None => Ok(parse_setting(key, &Value::Null, raw).unwrap_or_else(|_| Value::String(raw.clone()))),
        };
        match parsed {
            Ok(value) => {
                stage.insert(key.to_owned(), value);
            }
            Err(message) => problems.push(Problem::new(field, message)),
        }
    }
    config.insert("stage".into(), Value::Object(stage));
    (Value::Object(config), problems)
}

/// One control of the launch form, ready to render.
pub struct Control {
    pub name: String,
    pub label: String,
    pub help: String,
    /// `text`, `select`, `number` or `bool`.
    pub control: &'static str,
    pub required: bool,
    pub value: String,
    pub error: Option<String>,
    /// A select's (value, label) options.
    pub options: Vec<(String, String)>,
    /// A text input's suggestions: (reference, what it is).
    pub suggestions: Vec<(String, String)>,
}

/// The launch form's controls for `kind` in `project`: the config fields, then one per
/// stage setting. `input` holds what the person typed (name → text) when the form is
/// shown again; otherwise the defaults fill it.
pub async fn controls(
    pool: &PgPool,
    defaults: &RunDefaults,
    project: &Project,
    kind: RunKind,
    input: Option<&[(String, String)]>,
    problems: &[Problem],
) -> Result<(Vec<Control>, Vec<Control>), AppError> {
    let typed =
        |name: &str| input.and_then(|pairs| pairs.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone()));
    let error = |name: &str| problems.iter().find(|p| p.field == name).map(|p| p.message.clone());
    let all_versions = all_versions(pool).await?;
    let project_snapshots = snapshots::snapshots(pool, project.id).await?;
    let mut fields = Vec::new();
    for spec in specs(kind) {
        let initial = match spec.input {
            Input::Split if kind == RunKind::Sample => "train".to_owned(),
            Input::Split => "val".to_owned(),
            Input::Preset => "tiny".to_owned(),
            Input::Count(2, 9) => project.samples_per_task.to_string(),
            _ => String::new(),
        };
        let (control, options, suggestions) = match spec.input {
            Input::Version(kinds) | Input::Versions(kinds) => {
                ("text", Vec::new(), suggestions(&all_versions, kinds))
            }
            Input::Snapshot(wanted, absent) => {
                ("select", snapshot_options(&project_snapshots, wanted, absent), Vec::new())
            }
            Input::Preset => {
                ("select", PRESETS.iter().map(|p| (p.to_string(), p.to_string())).collect(), Vec::new())
            }
            Input::Split => {
                ("select", SPLITS.iter().map(|s| (s.to_string(), s.to_string())).collect(), Vec::new())
            }
            Input::Count(..) => ("number", Vec::new(), Vec::new()),
            Input::ModelName | Input::Counts(..) | Input::Phrases | Input::Text => {
                ("text", Vec::new(), Vec::new())
            }
        };
        fields.push(Control {
            name: spec.name.to_owned(),
            label: spec.label.to_owned(),
            help: spec.help.to_owned(),
            control,
            required: spec.required,
            value: typed(spec.name).unwrap_or(initial),
            error: error(spec.name),
            options,
            suggestions,
        });
    }
    let mut stage = Vec::new();
    if let Some(Value::Object(known)) = defaults.of(kind_str(kind)) {
        for (key, default) in known {
            let name = format!("stage.{key}");
            let control = match default {
                Value::Bool(_) => "bool",
                _ => "text",
            };
            stage.push(Control {
                label: key.clone(),
                help: help::help(kind_str(kind), key).to_owned(),
                control,
                required: !default.is_null(),
                value: typed(&name).unwrap_or_else(|| setting_text(default)),
                error: error(&name),
                options: Vec::new(),
                suggestions: Vec::new(),
                name,
            });
        }
    }
    Ok((fields, stage))
}

/// Every registered version (newest first within each model).
pub async fn all_versions(pool: &PgPool) -> Result<Vec<ModelVersion>, AppError> {
    let mut all = Vec::new();
    for model in versions::list_models(pool).await? {
        all.extend(versions::list_versions(pool, &model.name).await?);
    }
    Ok(all)
}

/// References to suggest for a field taking versions of `kinds`: each model's name (its
/// latest), its aliases and its numbered versions.
fn suggestions(all: &[ModelVersion], kinds: &[ModelKind]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut latest_seen = BTreeMap::new();
    for v in all.iter().filter(|v| kinds.contains(&v.kind)) {
        if latest_seen.insert(v.model.clone(), ()).is_none() {
            out.push((
                v.model.clone(),
                format!("latest: version {} ({})", v.version, model_kind_str(v.kind)),
            ));
        }
        for alias in &v.aliases {
            out.push((format!("{}@{alias}", v.model), format!("version {}", v.version)));
        }
        out.push((format!("{}:{}", v.model, v.version), model_kind_str(v.kind).to_owned()));
    }
    out
}

fn snapshot_options(all: &[Snapshot], wanted: SnapshotKind, absent: &str) -> Vec<(String, String)> {
    let mut options = vec![(String::new(), absent.to_owned())];
    options.extend(all.iter().filter(|s| s.kind == wanted).map(|s| {
        (
            s.id.to_string(),
            format!(
                "#{} {} ({} items, {})",
                s.id,
                s.name,
                s.item_count,
                &s.content_sha256[..12.min(s.content_sha256.len())]
            ),
        )
    }));
    options
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn defaults() -> RunDefaults {
        RunDefaults::new(BTreeMap::from([(
            "sft".to_owned(),
            json!({"epochs": 16, "lr": 1e-4, "steps": null, "dropout": 0.2, "tag": "x", "shuffle": true}),
        )]))
    }

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
    }

    #[test]
    fn a_form_turns_into_a_config_with_typed_stage_settings() {
        let form = pairs(&[
            ("model_name", "sft-a"),
            ("base", "base:1"),
            ("snapshot_id", ""),
            ("stage.epochs", "3"),
            ("stage.lr", "1e-4"),
            ("stage.steps", ""),
            ("stage.shuffle", "false"),
        ]);
        let (config, problems) = config_from_form(&defaults(), RunKind::Sft, &form);
        assert_eq!(problems, []);
        assert_eq!(
            config,
            json!({"model_name": "sft-a", "base": "base:1",
                   "stage": {"epochs": 3, "lr": 0.0001, "steps": null, "shuffle": false}})
        );
    }

    #[test]
    fn an_eval_form_makes_few_shot_counts_and_one_probe_of_the_config() {
        let form = pairs(&[
            ("versions", "sft:1, policy:1"),
            ("prompts.split", "test"),
            ("skills.shots", "0, 1,3"),
            ("skills.per_skill", ""),
            ("probes.template", "The {group} worker was very"),
            ("probes.groups", "young, old ,"),
        ]);
        let (config, problems) = config_from_form(&RunDefaults::default(), RunKind::Eval, &form);
        assert_eq!(problems, []);
        assert_eq!(config["skills"], json!({"shots": [0, 1, 3]}));
        assert_eq!(
            config["probes"],
            json!([{"template": "The {group} worker was very", "groups": ["young", "old"]}])
        );
        let form = pairs(&[("versions", "sft:1"), ("skills.shots", "0,x"), ("probes.groups", "young")]);
        let (_, problems) = config_from_form(&RunDefaults::default(), RunKind::Eval, &form);
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(fields, ["prompts.split", "skills.shots", "probes.template"]);
    }

    #[test]
    fn bad_probes_and_skills_are_named_by_their_field() {
        let fields = |probes: Value| -> Vec<String> {
            check_probes(Some(&probes)).into_iter().map(|p| p.field).collect()
        };
        assert_eq!(
            fields(json!([{"template": "The {group} is", "groups": ["a", "b"]}])),
            Vec::<String>::new()
        );
        assert_eq!(fields(json!({"template": "x"})), ["probes"]);
        assert_eq!(
            fields(json!([{"template": "no slot", "groups": ["a", "a", " "], "top": 99, "colour": 1}])),
            [
                "probes[0].colour",
                "probes[0].template",
                "probes[0].groups",
                "probes[0].groups",
                "probes[0].top"
            ]
        );
        assert_eq!(fields(json!([{"groups": []}])), ["probes[0].template", "probes[0].groups"]);
        let skills =
            |v: Value| -> Vec<String> { check_skills(Some(&v)).into_iter().map(|p| p.field).collect() };
        assert_eq!(skills(json!({"shots": [0, 1], "per_skill": 3})), Vec::<String>::new());
        assert_eq!(skills(json!({"shot": [0]})), ["skills.shot"]);
        assert_eq!(skills(json!([0])), ["skills"]);
    }

    #[test]
    fn text_where_a_number_belongs_and_unknown_settings_are_named() {
        let form = pairs(&[
            ("model_name", "m"),
            ("base", "b"),
            ("stage.lr", "fast"),
            ("stage.epochs", "1.5"),
            ("stage.nope", "1"),
        ]);
        let (_, problems) = config_from_form(&defaults(), RunKind::Sft, &form);
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(fields, ["stage.lr", "stage.epochs", "stage.nope"]);
    }

    #[test]
    fn json_stage_settings_must_have_the_defaults_types() {
        let stage = json!({"epochs": 2.5, "lr": 1, "steps": 10, "tag": 3, "extra": 1});
        let problems = check_stage(&defaults(), RunKind::Sft, stage.as_object().unwrap());
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(fields, ["stage.epochs", "stage.extra", "stage.tag"]);
    }

    #[test]
    fn a_missing_required_field_is_a_problem() {
        let (_, problems) = config_from_form(&defaults(), RunKind::Ppo, &pairs(&[("model_name", "p")]));
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(fields, ["policy", "reward"]);
    }
}

//! Launching a run: the launch form rendered from the run contract (`spec`: each kind's
//! fields, each stage setting's type, default, range and help), a posted form read back
//! into a run config, and the one check that both the form and `POST /api/runs` go
//! through before a run is enqueued: the contract's static check, then whether the
//! versions and snapshots it names exist and are of the right kind.

use std::collections::BTreeMap;

use labeling::projects::Project;
use labeling::snapshots::{self, Snapshot, SnapshotKind};
use registry::runs::RunKind;
use registry::versions::{self, ModelKind, ModelVersion};
use serde_json::{Map, Value};
use spec::{lookup, Input, InputKind, SettingType};
use sqlx::PgPool;

use crate::error::AppError;

pub use spec::Problem;

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

/// What [`check`] found, each naming its field: problems with the config, and the
/// versions and snapshots it names that do not exist. The API answers the first with a
/// 422 and, when there are none, the second with a 404; the form lists them all.
pub struct Checked {
    pub problems: Vec<Problem>,
    pub missing: Vec<Problem>,
}

impl Checked {
    pub fn all(self) -> Vec<Problem> {
        let mut all = self.problems;
        all.extend(self.missing);
        all
    }
}

/// A version or snapshot that the config names: what is wrong with it, if anything.
enum Found {
    Fine,
    Missing(String),
    Unsuitable(String),
}

/// Every problem of a run's config, in field order: the contract's own check, then, for
/// each version and snapshot it names that passed it, whether that exists in Postgres,
/// is of a suitable kind and (a snapshot) belongs to the project.
pub async fn check(
    pool: &PgPool,
    project: &Project,
    kind: RunKind,
    config: &Value,
) -> Result<Checked, AppError> {
    let mut problems: Vec<Problem> = spec::check(kind, config).into_iter().collect();
    let mut missing = Vec::new();
    let Some(config) = config.as_object() else { return Ok(Checked { problems, missing }) };
    for input in spec::inputs(kind) {
        if problems.iter().any(|p| p.field == input.name) {
            continue;
        }
        let Some(value) = lookup(config, input.name) else { continue };
        let found = match input.kind {
            InputKind::Version(kinds) => match value.as_str() {
                Some(reference) => check_version(pool, reference, kinds).await?,
                None => Found::Fine,
            },
            InputKind::Versions(kinds) => {
                let mut found = Found::Fine;
                for reference in value.as_array().into_iter().flatten().filter_map(Value::as_str) {
                    found = check_version(pool, reference, kinds).await?;
                    if !matches!(found, Found::Fine) {
                        break;
                    }
                }
                found
            }
            InputKind::Snapshot(wanted) => match value.as_i64() {
                Some(id) => check_snapshot(pool, project, id, wanted).await?,
                None => Found::Fine,
            },
            _ => Found::Fine,
        };
        match found {
            Found::Fine => {}
            Found::Missing(message) => missing.push(Problem::new(input.name, message)),
            Found::Unsuitable(message) => problems.push(Problem::new(input.name, message)),
        }
    }
    // A sample run without its own K takes the project's, which spec::check cannot know:
    // its mixed-in versions must leave its version some of it.
    if kind == RunKind::Sample && problems.is_empty() && !config.contains_key("k") {
        if let Ok(spec::RunSpec::Sample(run)) = spec::RunSpec::parse(kind, &Value::Object(config.clone())) {
            let k = project.samples_per_task.max(0) as usize;
            if let Err(reason) = run.writers(k) {
                problems.push(Problem::new("mix_k", format!("{reason} (the project's K is {k})")));
            }
        }
    }
    Ok(Checked { problems, missing })
}

/// What is wrong with a version reference, if anything.
async fn check_version(pool: &PgPool, reference: &str, kinds: &[ModelKind]) -> Result<Found, AppError> {
    use registry::error::RegistryError as R;
    match versions::resolve(pool, reference).await {
        Ok(version) if kinds.contains(&version.kind) => Ok(Found::Fine),
        Ok(version) => Ok(Found::Unsuitable(format!(
            "`{reference}` is a {} model; this takes {}",
            version.kind,
            kinds.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(" or ")
        ))),
        Err(e @ R::BadReference(_)) => Ok(Found::Unsuitable(e.to_string())),
        Err(
            e @ (R::ModelNotFound(_)
            | R::NoSuchVersion { .. }
            | R::AliasNotFound { .. }
            | R::VersionNotFound(_)),
        ) => Ok(Found::Missing(e.to_string())),
        Err(e) => Err(e.into()),
    }
}

/// What is wrong with a snapshot id, if anything.
async fn check_snapshot(
    pool: &PgPool,
    project: &Project,
    id: i64,
    wanted: SnapshotKind,
) -> Result<Found, AppError> {
    let snapshot = match snapshots::snapshot(pool, id).await {
        Ok(snapshot) => snapshot,
        Err(labeling::error::LabelingError::NotFound { .. }) => {
            return Ok(Found::Missing(format!("snapshot {id} does not exist")))
        }
        Err(e) => return Err(e.into()),
    };
    Ok(if snapshot.project_id != project.id {
        Found::Unsuitable(format!("snapshot {id} belongs to another project"))
    } else if snapshot.kind != wanted {
        Found::Unsuitable(format!("snapshot {id} holds {}, not {wanted}", snapshot.kind))
    } else {
        Found::Fine
    })
}

/// A stage setting's form text, read as the setting's type.
fn parse_setting(kind: SettingType, raw: &str) -> Result<Value, String> {
    let raw = raw.trim();
    let integer = |raw: &str| -> Result<Value, String> {
        raw.parse::<i64>().map(Value::from).map_err(|_| format!("must be a whole number, not {raw:?}"))
    };
    let number = |raw: &str| -> Result<Value, String> {
        raw.parse::<f64>()
            .ok()
            .filter(|x| x.is_finite())
            .map(Value::from)
            .ok_or_else(|| format!("must be a number, not {raw:?}"))
    };
    match kind {
        _ if raw.is_empty() && kind.is_optional() => Ok(Value::Null),
        _ if raw.is_empty() => Err("a value is required".into()),
        SettingType::Integer | SettingType::OptionalInteger => integer(raw),
        SettingType::Number | SettingType::OptionalNumber => number(raw),
        SettingType::Bool => match raw {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => Err(format!("must be true or false, not {raw:?}")),
        },
        // The contract's check names the choices when the text is none of them.
        SettingType::Choice(_) => Ok(Value::from(raw)),
    }
}

/// A config field's form text as its JSON value.
fn parse_input(input: &Input, raw: &str) -> Result<Value, String> {
    let list = |separators: &[char]| -> Vec<&str> {
        raw.split(|c: char| separators.contains(&c)).map(str::trim).filter(|p| !p.is_empty()).collect()
    };
    Ok(match input.kind {
        InputKind::Versions(_) => Value::from(list(&[',', ' ', '\t', '\n'])),
        InputKind::Phrases => Value::from(list(&[','])),
        InputKind::Counts(..) => Value::from(
            list(&[','])
                .iter()
                .map(|p| p.parse::<i64>())
                .collect::<Result<Vec<i64>, _>>()
                .map_err(|_| format!("must be whole numbers separated by commas, not {raw:?}"))?,
        ),
        InputKind::Snapshot(_) | InputKind::Count(..) => {
            Value::from(raw.parse::<i64>().map_err(|_| format!("must be a whole number, not {raw:?}"))?)
        }
        InputKind::Flag => Value::Bool(raw == "true"),
        InputKind::ModelName | InputKind::Version(_) | InputKind::Choice(_) | InputKind::Text => {
            Value::String(raw.to_owned())
        }
    })
}

/// A launch form's post, as its (name, value) pairs, turned into a run config; the
/// problems are those of reading the form (a missing required field, text where a
/// number belongs, a stage setting the stage does not have).
pub fn config_from_form(kind: RunKind, pairs: &[(String, String)]) -> (Value, Vec<Problem>) {
    let value_of = |name: &str| pairs.iter().find(|(n, _)| n == name).map(|(_, v)| v.trim()).unwrap_or("");
    let mut config = Map::new();
    let mut problems = Vec::new();
    for input in spec::inputs(kind) {
        let raw = value_of(input.name);
        if raw.is_empty() {
            if input.required {
                problems.push(Problem::new(input.name, "is required"));
            }
            continue;
        }
        match parse_input(input, raw) {
            Ok(value) => insert(&mut config, input.name, value),
            Err(message) => problems.push(Problem::new(input.name, message)),
        }
    }
    if kind == RunKind::Pretrain && config.contains_key("snapshot_id") {
        config.remove("corpus");
    }
    if kind == RunKind::Pretrain && config.contains_key("base") {
        config.remove("preset");
        config.remove("tokenizer");
    }
    // The form asks for one probe; the config holds a list of them.
    if let Some(probe) = config.remove("probes") {
        if probe.get("template").is_none() {
            problems.push(Problem::new("probes.template", "is required with the probe's other settings"));
        }
        if probe.get("groups").is_none() {
            problems.push(Problem::new("probes.groups", "is required with a probe template"));
        }
        config.insert("probes".into(), Value::Array(vec![probe]));
    }
    let settings = spec::settings(kind);
    let mut stage = Map::new();
    for (name, raw) in pairs {
        let Some(key) = name.strip_prefix("stage.") else { continue };
        let parsed = match settings.iter().find(|s| s.name == key) {
            Some(setting) => parse_setting(setting.kind, raw),
            None => Err(format!("`{key}` is not a {kind} setting")),
        };
        match parsed {
            Ok(value) => {
                stage.insert(key.to_owned(), value);
            }
            Err(message) => problems.push(Problem::new(name.clone(), message)),
        }
    }
    config.insert("stage".into(), Value::Object(stage));
    (Value::Object(config), problems)
}

/// The launch form's fields of a run's config: what `config_from_form` reads back into
/// the same config (a clone of the run starts from them).
pub fn form_of_config(kind: RunKind, config: &Value) -> Vec<(String, String)> {
    let Some(config) = config.as_object() else { return Vec::new() };
    let mut pairs = Vec::new();
    for input in spec::inputs(kind) {
        // The config holds a list of probes; the form asks for the first.
        let value = match input.name.strip_prefix("probes.") {
            Some(key) => config.get("probes").and_then(|p| p.get(0)).and_then(|p| p.get(key)),
            None => lookup(config, input.name),
        };
        let text = match value {
            Some(Value::Array(items)) => items.iter().map(form_text).collect::<Vec<_>>().join(", "),
            Some(value) => form_text(value),
            None => continue,
        };
        pairs.push((input.name.to_owned(), text));
    }
    let stage = config.get("stage").and_then(Value::as_object).into_iter().flatten();
    pairs.extend(stage.map(|(key, value)| (format!("stage.{key}"), form_text(value))));
    pairs
}

/// The reference of the version a run starts from (its first version field that is
/// set: `base`, `policy`, `version`, `versions`), as the run list shows it.
pub fn starts_from(kind: RunKind, config: &Value) -> Option<String> {
    let config = config.as_object()?;
    spec::inputs(kind).iter().find_map(|input| match (input.kind, lookup(config, input.name)?) {
        (InputKind::Version(_), Value::String(reference)) => Some(reference.clone()),
        (InputKind::Versions(_), Value::Array(items)) => {
            Some(items.iter().map(form_text).collect::<Vec<_>>().join(", "))
        }
        _ => None,
    })
}

/// One control of the launch form, ready to render.
pub struct Control {
    pub name: String,
    pub label: String,
    pub help: String,
    /// What the field takes, in words ("at least 1", "in [0, 1)").
    pub requirement: String,
    /// `text`, `textarea`, `select`, `number` or `bool`.
    pub control: &'static str,
    /// A number input's `step`, `min` and `max` attributes ("" when none).
    pub step: &'static str,
    pub min: String,
    pub max: String,
    pub required: bool,
    /// Shown first; the rest fold under "Advanced settings".
    pub essential: bool,
    pub value: String,
    /// A stage setting's default, as the form writes it ("" for none).
    pub default: Option<String>,
    pub error: Option<String>,
    /// A select's (value, label) options.
    pub options: Vec<(String, String)>,
    /// A text input's suggestions: (reference, what it is).
    pub suggestions: Vec<(String, String)>,
}

/// The form's text of a JSON value.
fn form_text(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn bound(x: Option<f64>) -> String {
    x.map(|x| x.to_string()).unwrap_or_default()
}

/// The launch form's controls for `kind` in `project`: the config fields, then one per
/// stage setting. `input` holds what the person typed (name → text) when the form is
/// shown again; otherwise the defaults fill it.
pub async fn controls(
    pool: &PgPool,
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
    for spec in spec::inputs(kind) {
        let initial = match (spec.name, spec.kind) {
            ("prompts.split", _) if kind == RunKind::Sample => "train".to_owned(),
            ("prompts.split", _) => "val".to_owned(),
            ("k", _) => project.samples_per_task.to_string(),
            (_, InputKind::Choice(names)) if !spec.name.starts_with("prompts.") => names[0].to_owned(),
            (_, InputKind::Flag) => spec.absent.to_owned(),
            _ => String::new(),
        };
        let choices = |names: &[&str], absent: Option<&str>| -> Vec<(String, String)> {
            absent
                .map(|a| (String::new(), a.to_owned()))
                .into_iter()
                .chain(names.iter().map(|n| (n.to_string(), n.to_string())))
                .collect()
        };
        let (control, options, suggestions) = match spec.kind {
            InputKind::Version(kinds) | InputKind::Versions(kinds) => {
                ("text", Vec::new(), suggestions(&all_versions, kinds))
            }
            InputKind::Snapshot(wanted) => {
                ("select", snapshot_options(&project_snapshots, wanted, spec.absent), Vec::new())
            }
            InputKind::Choice(names) if spec.name.starts_with("prompts.") => {
                ("select", choices(names, Some(spec.absent)), Vec::new())
            }
            InputKind::Choice(names) => ("select", choices(names, None), Vec::new()),
            InputKind::Flag => ("bool", Vec::new(), Vec::new()),
            InputKind::Count(..) => ("number", Vec::new(), Vec::new()),
            // A team's few-shot tasks are JSON lines: room for many.
            InputKind::Text if spec.name == "skills.tasks" => ("textarea", Vec::new(), Vec::new()),
            InputKind::ModelName | InputKind::Counts(..) | InputKind::Phrases | InputKind::Text => {
                ("text", Vec::new(), Vec::new())
            }
        };
        let (min, max) = match spec.kind {
            InputKind::Count(low, high) => (low.to_string(), high.to_string()),
            _ => (String::new(), String::new()),
        };
        let absent = if spec.absent.is_empty() { String::new() } else { format!(" Empty: {}.", spec.absent) };
        let starts_from = matches!(spec.kind, InputKind::Version(_) | InputKind::Versions(_));
        fields.push(Control {
            name: spec.name.to_owned(),
            label: spec.label.to_owned(),
            help: format!("{}{absent}", spec.help),
            requirement: String::new(),
            control,
            step: "1",
            min,
            max,
            required: spec.required,
            essential: spec.required || starts_from,
            value: typed(spec.name).unwrap_or(initial),
            default: None,
            error: error(spec.name),
            options,
            suggestions,
        });
    }
    let defaults = spec::stage_defaults(kind);
    let stage = spec::settings(kind)
        .iter()
        .map(|setting| {
            let name = format!("stage.{}", setting.name);
            let (control, step) = match setting.kind {
                SettingType::Bool => ("bool", ""),
                SettingType::Integer | SettingType::OptionalInteger => ("number", "1"),
                SettingType::Number | SettingType::OptionalNumber => ("number", "any"),
                SettingType::Choice(_) => ("select", ""),
            };
            let options = match setting.kind {
                SettingType::Choice(names) => names.iter().map(|n| (n.to_string(), n.to_string())).collect(),
                _ => Vec::new(),
            };
            Control {
                label: setting.name.to_owned(),
                help: setting.explained(),
                requirement: setting.requirement(),
                control,
                step,
                min: bound(setting.range.min()),
                max: bound(setting.range.max()),
                required: !setting.kind.is_optional(),
                essential: setting.essential,
                value: typed(&name).unwrap_or_else(|| form_text(&defaults[setting.name])),
                default: Some(match setting.scale {
                    Some(_) => "from the model's width".to_owned(),
                    None => form_text(&defaults[setting.name]),
                }),
                error: error(&name),
                options,
                suggestions: Vec::new(),
                name,
            }
        })
        .collect();
    Ok((fields, stage))
}

/// A launch form's free-text control that is no part of the config (the run's name and
/// notes).
pub fn text_control(
    name: &str,
    label: &str,
    help: &str,
    textarea: bool,
    value: &str,
    error: Option<String>,
) -> Control {
    Control {
        name: name.to_owned(),
        label: label.to_owned(),
        help: help.to_owned(),
        requirement: String::new(),
        control: if textarea { "textarea" } else { "text" },
        step: "",
        min: String::new(),
        max: String::new(),
        required: false,
        essential: true,
        value: value.to_owned(),
        default: None,
        error,
        options: Vec::new(),
        suggestions: Vec::new(),
    }
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
            out.push((v.model.clone(), format!("latest: version {} ({})", v.version, v.kind)));
        }
        for alias in &v.aliases {
            out.push((format!("{}@{alias}", v.model), format!("version {}", v.version)));
        }
        out.push((format!("{}:{}", v.model, v.version), v.kind.as_str().to_owned()));
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

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
    }

    /// The config of a form that must be accepted as it is.
    fn accepted(kind: RunKind, items: &[(&str, &str)]) -> Value {
        let (config, problems) = config_from_form(kind, &pairs(items));
        assert_eq!(problems, [], "{items:?}");
        config
    }

    /// The fields that a form's problems name, in order.
    fn refused_fields(kind: RunKind, items: &[(&str, &str)]) -> Vec<String> {
        config_from_form(kind, &pairs(items)).1.into_iter().map(|p| p.field).collect()
    }

    #[test]
    fn a_form_turns_into_a_config_with_typed_stage_settings() {
        let config = accepted(
            RunKind::Sft,
            &[
                ("model_name", "sft-a"),
                ("base", "base:1"),
                ("snapshot_id", ""),
                ("stage.epochs", "3"),
                ("stage.lr", "1e-4"),
                ("stage.steps", ""),
                ("stage.dropout", "0"),
            ],
        );
        assert_eq!(
            config,
            json!({"model_name": "sft-a", "base": "base:1",
                   "stage": {"epochs": 3, "lr": 0.0001, "steps": null, "dropout": 0.0}})
        );
        let config = accepted(RunKind::Sample, &[("version", "v"), ("stage.stop_at_eos", "false")]);
        assert_eq!(config["stage"], json!({"stop_at_eos": false}));
    }

    #[test]
    fn an_eval_form_makes_few_shot_counts_and_one_probe_of_the_config() {
        let config = accepted(
            RunKind::Eval,
            &[
                ("versions", "sft:1, policy:1"),
                ("prompts.split", "test"),
                ("skills.shots", "0, 1,3"),
                ("skills.per_skill", ""),
                ("probes.template", "The {group} worker was very"),
                ("probes.groups", "young, old ,"),
            ],
        );
        assert_eq!(config["skills"], json!({"shots": [0, 1, 3]}));
        assert_eq!(
            config["probes"],
            json!([{"template": "The {group} worker was very", "groups": ["young", "old"]}])
        );
        assert!(spec::check(RunKind::Eval, &config).is_empty(), "{}", spec::check(RunKind::Eval, &config));
        let form = [("versions", "sft:1"), ("skills.shots", "0,x"), ("probes.groups", "young")];
        assert_eq!(refused_fields(RunKind::Eval, &form), ["skills.shots", "probes.template"]);
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
        let (_, problems) = config_from_form(RunKind::Sft, &form);
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(fields, ["stage.lr", "stage.epochs", "stage.nope"]);
        assert_eq!(problems[2].message, "`nope` is not a sft setting");
    }

    #[test]
    fn a_missing_required_field_is_a_problem() {
        assert_eq!(refused_fields(RunKind::Ppo, &[("model_name", "p")]), ["policy", "reward"]);
    }

    #[test]
    fn a_runs_config_fills_a_form_that_reads_back_into_the_same_config() {
        let config = json!({
            "versions": ["sft:1", "policy:2"],
            "prompts": {"split": "test", "limit": 5},
            "skills": {"shots": [0, 3]},
            "probes": [{"template": "The {group} one", "groups": ["a", "b"]}],
            "stage": {"max_new_tokens": 12, "temperature": 0.5},
        });
        let (back, problems) = config_from_form(RunKind::Eval, &form_of_config(RunKind::Eval, &config));
        assert_eq!(problems, []);
        assert_eq!(back, config);
        assert_eq!(starts_from(RunKind::Eval, &config).as_deref(), Some("sft:1, policy:2"));
        assert_eq!(starts_from(RunKind::Ppo, &json!({"policy": "sft@best"})).as_deref(), Some("sft@best"));
        assert_eq!(starts_from(RunKind::Pretrain, &json!({"preset": "tiny"})), None);
    }

    #[test]
    fn a_pretraining_form_names_its_corpus_or_its_snapshot_never_both() {
        let config = accepted(
            RunKind::Pretrain,
            &[("model_name", "b"), ("corpus", "demo_world"), ("snapshot_id", "4")],
        );
        assert_eq!((config.get("corpus"), &config["snapshot_id"]), (None, &json!(4)));
    }
}

//! The JSON Schema of each run kind's config, made from the same declarations as the
//! launch form and docs/runs.md: the API document (`POST /api/runs`) shows it, so that a
//! client, or a tool that reads the document, knows every key, type and range before it
//! sends a config.
//!
//! What JSON Schema cannot say is left to [`crate::check`], which answers a 422 naming
//! the field: checks that relate two values (PPO's `minibatch_size` at most its
//! `batch_size`), limits in bytes rather than characters, and whether a version or a
//! snapshot exists.

use serde_json::{json, Map, Value};

use crate::eval::{
    MAX_GROUP_BYTES, MAX_PROBES, MAX_PROBE_GROUPS, MAX_PROBE_SAMPLES, MAX_PROBE_TOP, MAX_SHOT_COUNTS,
    MAX_TEMPLATE_BYTES,
};
use crate::run::{inputs, settings, InputKind, MAX_EVAL_VERSIONS};
use crate::setting::{Bound, Setting, SettingType};
use crate::RunKind;

/// A model's name: the registry's rule ([`crate::run::is_model_name`]).
const MODEL_NAME: &str = "[A-Za-z0-9][A-Za-z0-9_.-]{0,99}";

/// What may follow a model's name in a version reference: `:3` or `@alias`.
const VERSION_SUFFIX: &str = "(:[1-9][0-9]{0,8}|@[a-z][a-z0-9_-]{0,63})?";

/// A version reference, `name`, `name:3` or `name@alias`, as a regular expression to
/// embed in a pattern (not anchored).
pub fn version_reference() -> String {
    format!("{MODEL_NAME}{VERSION_SUFFIX}")
}

/// A version reference with blank space around it allowed (the registry trims it).
fn version_pattern() -> String {
    format!("^\\s*{}\\s*$", version_reference())
}

/// Text with at least one character that is not blank space.
const NOT_BLANK: &str = "\\S";

/// The schema of a `kind` run's config: an object of its fields (a dotted field is a key
/// of a nested object), `stage` with its settings, and nothing else. A `null` field is
/// the same as an absent one.
pub fn config_schema(kind: RunKind) -> Value {
    let mut config = object();
    config["properties"]["stage"] = nullable(stage_schema(settings(kind)));
    for input in inputs(kind) {
        if kind == RunKind::Eval && input.name.starts_with("probes.") {
            continue;
        }
        let mut at = &mut config;
        let mut path = input.name.split('.').peekable();
        while let Some(key) = path.next() {
            if path.peek().is_none() {
                let value = input_schema(input.kind);
                at["properties"][key] = if input.required { value } else { nullable(value) };
                if input.required {
                    at["required"].as_array_mut().expect("an object's required list").push(key.into());
                }
            } else {
                let group = &mut at["properties"][key];
                if group.is_null() {
                    *group = json!({ "anyOf": [object(), { "type": "null" }] });
                }
                at = &mut group["anyOf"][0];
            }
        }
    }
    if kind == RunKind::Eval {
        config["properties"]["probes"] = nullable(probes_schema());
    }
    if kind == RunKind::Pretrain {
        config["not"] = json!({
            "required": ["corpus", "snapshot_id"],
            "properties": { "corpus": { "type": "string" }, "snapshot_id": { "type": "integer" } },
        });
    }
    config
}

/// Whether a `kind` run needs a config at all (some field of it is required).
pub fn config_required(kind: RunKind) -> bool {
    inputs(kind).iter().any(|i| i.required)
}

fn object() -> Value {
    json!({ "type": "object", "properties": {}, "required": [], "additionalProperties": false })
}

fn nullable(schema: Value) -> Value {
    json!({ "anyOf": [schema, { "type": "null" }] })
}

fn text(pattern: &str) -> Value {
    json!({ "type": "string", "pattern": pattern })
}

fn input_schema(kind: InputKind) -> Value {
    match kind {
        InputKind::ModelName => text(&format!("^{MODEL_NAME}$")),
        InputKind::Version(_) => text(&version_pattern()),
        InputKind::Versions(_) => json!({
            "type": "array",
            "items": text(&version_pattern()),
            "minItems": 1,
            "maxItems": MAX_EVAL_VERSIONS,
            "uniqueItems": true,
        }),
        InputKind::Snapshot(_) => json!({ "type": "integer", "format": "int64" }),
        InputKind::Choice(names) => json!({ "type": "string", "enum": names }),
        InputKind::Count(low, high) => json!({ "type": "integer", "minimum": low, "maximum": high }),
        InputKind::Counts(low, high) => json!({
            "type": "array",
            "items": { "type": "integer", "minimum": low, "maximum": high },
            "minItems": 1,
            "maxItems": MAX_SHOT_COUNTS,
            "uniqueItems": true,
        }),
        InputKind::Phrases => json!({ "type": "array", "items": text(NOT_BLANK), "minItems": 1 }),
        InputKind::Text => text(NOT_BLANK),
        InputKind::Flag => json!({ "type": "boolean" }),
    }
}

/// An eval's probes: a list of up to [`MAX_PROBES`]. Byte limits are given as the
/// characters that fit them whatever the characters are (4 bytes each at most).
fn probes_schema() -> Value {
    let probe = json!({
        "type": "object",
        "required": ["template", "groups"],
        "additionalProperties": false,
        "properties": {
            "template": {
                "type": "string",
                "pattern": "^[^{]*\\{group\\}[^{]*$",
                "maxLength": MAX_TEMPLATE_BYTES / 4,
                "description": "Text with `{group}` exactly once.",
            },
            "groups": {
                "type": "array",
                "items": { "type": "string", "pattern": NOT_BLANK, "maxLength": MAX_GROUP_BYTES / 4 },
                "minItems": 1,
                "maxItems": MAX_PROBE_GROUPS,
                "uniqueItems": true,
            },
            "samples": nullable(json!({ "type": "integer", "minimum": 1, "maximum": MAX_PROBE_SAMPLES })),
            "top": nullable(json!({ "type": "integer", "minimum": 1, "maximum": MAX_PROBE_TOP })),
        },
    });
    json!({ "type": "array", "items": probe, "maxItems": MAX_PROBES })
}

/// `stage`: each setting with its type and range, and its help as the description.
fn stage_schema(settings: &[Setting]) -> Value {
    let mut properties = Map::new();
    for setting in settings {
        let mut value = match setting.kind {
            SettingType::Bool => json!({ "type": "boolean" }),
            SettingType::Choice(names) => json!({ "type": "string", "enum": names }),
            kind => {
                let mut number = if kind.is_integer() {
                    json!({ "type": "integer", "format": "int64" })
                } else {
                    json!({ "type": "number" })
                };
                for (bound, inclusive, exclusive) in [
                    (setting.range.low, "minimum", "exclusiveMinimum"),
                    (setting.range.high, "maximum", "exclusiveMaximum"),
                ] {
                    match bound {
                        Bound::Unbounded => {}
                        Bound::Inclusive(x) => number[inclusive] = bound_value(x, kind),
                        Bound::Exclusive(x) => number[exclusive] = bound_value(x, kind),
                    }
                }
                if kind.is_optional() {
                    nullable(number)
                } else {
                    number
                }
            }
        };
        value["description"] = setting.help.into();
        properties.insert(setting.name.into(), value);
    }
    json!({ "type": "object", "properties": properties, "additionalProperties": false })
}

/// A bound written as an integer for an integer setting (`1`, not `1.0`).
fn bound_value(x: f64, kind: SettingType) -> Value {
    if kind.is_integer() && x.fract() == 0.0 {
        json!(x as i64)
    } else {
        json!(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_schema_lists_every_field_and_setting_of_its_kind() {
        for kind in RunKind::ALL {
            let schema = config_schema(*kind);
            let stage = &schema["properties"]["stage"]["anyOf"][0]["properties"];
            for setting in settings(*kind) {
                assert!(stage.get(setting.name).is_some(), "{kind}: no stage.{}", setting.name);
            }
            for input in inputs(*kind).iter().filter(|i| !i.name.starts_with("probes.")) {
                let mut at = &schema;
                let mut path = input.name.split('.').peekable();
                while let Some(key) = path.next() {
                    at = &at["properties"][key];
                    if path.peek().is_some() {
                        at = &at["anyOf"][0];
                    }
                }
                assert!(!at.is_null(), "{kind}: no {}", input.name);
            }
        }
    }

    #[test]
    fn a_setting_s_range_becomes_the_schema_s_bounds() {
        let schema = config_schema(RunKind::Sft);
        let stage = &schema["properties"]["stage"]["anyOf"][0]["properties"];
        assert_eq!(stage["epochs"]["minimum"], json!(1));
        assert_eq!(stage["epochs"]["type"], "integer");
        assert_eq!(stage["lr"]["anyOf"][0]["exclusiveMinimum"], json!(0.0));
        assert_eq!(stage["steps"]["anyOf"][1]["type"], "null", "an optional setting may be null");
    }

    #[test]
    fn required_fields_are_required_and_others_may_be_null() {
        let schema = config_schema(RunKind::Ppo);
        let required: Vec<&str> =
            schema["required"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        assert!(required.contains(&"policy") && required.contains(&"reward"), "{required:?}");
        assert_eq!(schema["properties"]["snapshot_id"]["anyOf"][1]["type"], "null");
    }
}

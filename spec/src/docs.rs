//! docs/runs.md's tables of each run kind's fields and stage settings, made from the
//! contract; a test keeps the file in step with them.

use std::fmt::Write;

use crate::kinds::RunKind;
use crate::run::{inputs, settings, stage_defaults, InputKind};

/// The marker lines between which docs/runs.md holds [`markdown`]'s output.
pub const BEGIN: &str = "<!-- settings: made from the spec crate by `PLUMB_UPDATE_DOCS=1 cargo test -p spec docs`; do not edit by hand -->";
pub const END: &str = "<!-- end of settings -->";

fn kind_of(kind: InputKind) -> String {
    match kind {
        InputKind::ModelName => "model name".into(),
        InputKind::Version(kinds) => {
            format!("version ({})", kinds.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(" or "))
        }
        InputKind::Versions(kinds) => {
            format!(
                "list of versions ({})",
                kinds.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(" or ")
            )
        }
        InputKind::Snapshot(kind) => format!("{kind} snapshot id"),
        InputKind::Choice(names) => names.join(" \\| "),
        InputKind::Count(low, high) => format!("whole number, {low} to {high}"),
        InputKind::Counts(low, high) => format!("list of whole numbers, {low} to {high}"),
        InputKind::Phrases => "list of phrases".into(),
        InputKind::Text => "text".into(),
        InputKind::Flag => "true or false".into(),
    }
}

fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

/// One section per run kind: its config fields, then its stage settings with their
/// type, default and range.
pub fn markdown() -> String {
    let mut out = String::new();
    for kind in RunKind::ALL.iter().copied() {
        let _ = writeln!(out, "### `{kind}`\n");
        let _ = writeln!(out, "| field | holds | required | absent | meaning |");
        let _ = writeln!(out, "| --- | --- | --- | --- | --- |");
        for input in inputs(kind) {
            let _ = writeln!(
                out,
                "| `{}` | {} | {} | {} | {} |",
                input.name,
                kind_of(input.kind),
                if input.required { "yes" } else { "no" },
                cell(input.absent),
                cell(input.help)
            );
        }
        if kind == RunKind::Eval {
            let _ = writeln!(
                out,
                "| `probes` | list of up to 4 probes `{{template, groups, samples?, top?}}` | no | no probe | The form's one probe is the first of the list. |"
            );
        }
        let defaults = stage_defaults(kind);
        let _ = writeln!(out, "\n`stage` settings of `{kind}`:\n");
        let _ = writeln!(out, "| setting | default | allowed | meaning |");
        let _ = writeln!(out, "| --- | --- | --- | --- |");
        for setting in settings(kind) {
            let default = match &defaults[setting.name] {
                serde_json::Value::Null => "none".to_owned(),
                other => other.to_string(),
            };
            let _ = writeln!(
                out,
                "| `stage.{}` | {} | {} | {} |",
                setting.name,
                default,
                cell(&setting.requirement()),
                cell(&setting.explained())
            );
        }
        out.push('\n');
    }
    out
}

/// `text` with the part between [`BEGIN`] and [`END`] replaced by [`markdown`]; None
/// when the markers are missing.
pub fn updated(text: &str) -> Option<String> {
    let start = text.find(BEGIN)? + BEGIN.len();
    let end = text[start..].find(END)? + start;
    Some(format!("{}\n\n{}{}", &text[..start], markdown(), &text[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Set `PLUMB_UPDATE_DOCS=1` to write the tables into docs/runs.md.
    #[test]
    fn docs_runs_md_lists_every_field_and_setting_of_every_kind() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/runs.md");
        let text = std::fs::read_to_string(path).expect("reading docs/runs.md");
        let want = updated(&text).expect("docs/runs.md has the settings markers");
        if std::env::var_os("PLUMB_UPDATE_DOCS").is_some() {
            std::fs::write(path, &want).expect("writing docs/runs.md");
            return;
        }
        assert!(text == want, "docs/runs.md is out of date: run PLUMB_UPDATE_DOCS=1 cargo test -p spec docs");
        for kind in RunKind::ALL.iter().copied() {
            for input in inputs(kind) {
                assert!(text.contains(&format!("| `{}` |", input.name)), "{kind}: {}", input.name);
            }
            for setting in settings(kind) {
                assert!(text.contains(&format!("| `stage.{}` |", setting.name)), "{kind}: {}", setting.name);
            }
        }
    }
}

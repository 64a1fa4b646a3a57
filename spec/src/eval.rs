//! The rules of an eval run's few-shot (`skills`) and `probes` settings: the web names
//! every problem before a run is queued, and the worker refuses the same. Problems are
//! `(field, reason)`, the field a path such as `probes[1].groups`.

use serde_json::Value;

/// The most worked examples a few-shot prompt shows: eight already fill most of a tiny
/// model's context of 256 bytes.
pub const MAX_SHOTS: usize = 8;
/// The most shot counts one run measures.
pub const MAX_SHOT_COUNTS: usize = 4;
pub const MAX_TASKS_PER_SKILL: usize = 200;

pub const MAX_PROBES: usize = 4;
pub const MAX_PROBE_GROUPS: usize = 8;
pub const MAX_PROBE_SAMPLES: usize = 512;
pub const MAX_PROBE_TOP: usize = 20;
/// Templates and groups stay short enough that a filled template and its continuation
/// fit even a tiny byte-level model's context.
pub const MAX_TEMPLATE_BYTES: usize = 200;
pub const MAX_GROUP_BYTES: usize = 40;
/// The slot in a probe's template.
pub const SLOT: &str = "{group}";

/// The settings a probe has.
const PROBE_KEYS: [&str; 4] = ["template", "groups", "samples", "top"];

/// Every problem of a run's `probes` (absent or null: none), in the order of the list.
pub fn probes_problems(probes: &Value) -> Vec<(String, String)> {
    let list = match probes {
        Value::Null => return Vec::new(),
        Value::Array(list) => list,
        _ => return vec![("probes".into(), "must be a list of probes".into())],
    };
    let mut problems = Vec::new();
    if list.len() > MAX_PROBES {
        problems.push(("probes".into(), format!("give at most {MAX_PROBES} probes, not {}", list.len())));
    }
    for (i, probe) in list.iter().enumerate() {
        problems.extend(probe_problems(i, probe));
    }
    problems
}

/// Every problem of the probe at `index` of the list.
fn probe_problems(index: usize, probe: &Value) -> Vec<(String, String)> {
    let Some(probe) = probe.as_object() else {
        return vec![(format!("probes[{index}]"), "must be an object with a template and groups".into())];
    };
    let mut problems = Vec::new();
    let mut bad = |field: &str, reason: String| problems.push((format!("probes[{index}].{field}"), reason));
    for key in probe.keys().filter(|k| !PROBE_KEYS.contains(&k.as_str())) {
        bad(key, "is not a setting of a probe (template, groups, samples, top)".into());
    }
    match probe.get("template").and_then(Value::as_str) {
        None => bad("template", format!("is required (text with {SLOT})")),
        Some(t) => match t.matches(SLOT).count() {
            1 if t.len() > MAX_TEMPLATE_BYTES => {
                bad("template", format!("must be at most {MAX_TEMPLATE_BYTES} bytes"))
            }
            1 => {}
            slots => bad("template", format!("{t:?} must contain {SLOT} exactly once, not {slots} times")),
        },
    }
    match probe.get("groups").and_then(Value::as_array) {
        Some(groups) if (1..=MAX_PROBE_GROUPS).contains(&groups.len()) => {
            for (j, group) in groups.iter().enumerate() {
                match group.as_str() {
                    None => bad("groups", "each group is text".into()),
                    Some(g) if g.trim().is_empty() => bad("groups", "a group is blank".into()),
                    Some(g) if g.len() > MAX_GROUP_BYTES => {
                        bad("groups", format!("{g:?} is longer than {MAX_GROUP_BYTES} bytes"))
                    }
                    Some(g) if groups[..j].contains(group) => bad("groups", format!("{g:?} is listed twice")),
                    Some(_) => {}
                }
            }
        }
        Some(groups) => bad("groups", format!("give 1 to {MAX_PROBE_GROUPS} groups, not {}", groups.len())),
        None => bad("groups", format!("give 1 to {MAX_PROBE_GROUPS} groups")),
    }
    for (name, high) in [("samples", MAX_PROBE_SAMPLES), ("top", MAX_PROBE_TOP)] {
        match probe.get(name) {
            None | Some(Value::Null) => {}
            Some(v) if v.as_i64().is_some_and(|n| (1..=high as i64).contains(&n)) => {}
            Some(v) => bad(name, format!("must be 1 to {high}, got {v}")),
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::probes_problems;
    use serde_json::json;

    fn fields(probes: serde_json::Value) -> Vec<String> {
        probes_problems(&probes).into_iter().map(|(field, _)| field).collect()
    }

    #[test]
    fn every_problem_of_every_probe_is_named_in_order() {
        assert_eq!(fields(json!(null)), Vec::<String>::new());
        assert_eq!(
            fields(json!([{"template": "The {group} is", "groups": ["a", "b"], "top": 3}])),
            Vec::<String>::new()
        );
        assert_eq!(fields(json!({"template": "x"})), ["probes"]);
        assert_eq!(fields(json!([1])), ["probes[0]"]);
        assert_eq!(
            fields(
                json!([{"template": "{group}", "groups": ["a"]}, {"template": "no slot", "groups": ["a", "a", " "], "samples": 0}])
            ),
            ["probes[1].template", "probes[1].groups", "probes[1].groups", "probes[1].samples"]
        );
        assert_eq!(fields(json!(vec![json!({"template": "{group}", "groups": ["a"]}); 5])), ["probes"]);
    }
}

/// The most lines `skills.tasks` may hold.
pub const MAX_TASK_LINES: usize = 10_000;

/// One of a team's own few-shot tasks (`skills.tasks`): its name and its examples, in the
/// order given. The first ones (as many as the most shots asked for) are the worked
/// examples shown before every question; the rest are its questions.
#[derive(Clone, Debug, PartialEq)]
pub struct FewShotTask {
    pub name: String,
    /// (input, output): the model reads the input and must answer the output exactly
    /// (surrounding whitespace aside).
    pub examples: Vec<(String, String)>,
}

/// Reads `skills.tasks`: JSON lines `{"task": NAME, "input": TEXT, "output": TEXT}`, the
/// lines of one task in its order, tasks in the order first seen. Each task needs more
/// than `most_shots` examples. The error names the line and the field.
pub fn read_tasks(text: &str, most_shots: usize) -> Result<Vec<FewShotTask>, String> {
    let mut tasks: Vec<FewShotTask> = Vec::new();
    let lines: Vec<(usize, &str)> =
        text.lines().enumerate().map(|(i, l)| (i + 1, l.trim())).filter(|(_, l)| !l.is_empty()).collect();
    if lines.is_empty() {
        return Err("holds no task: write one JSON line {\"task\", \"input\", \"output\"} per example".into());
    }
    if lines.len() > MAX_TASK_LINES {
        return Err(format!("holds {} lines; at most {MAX_TASK_LINES}", lines.len()));
    }
    for (number, line) in lines {
        let value: Value =
            serde_json::from_str(line).map_err(|e| format!("line {number}: not a JSON object ({e})"))?;
        let Some(object) = value.as_object() else {
            return Err(format!("line {number}: not a JSON object"));
        };
        if let Some(other) = object.keys().find(|k| !matches!(k.as_str(), "task" | "input" | "output")) {
            return Err(format!(
                "line {number}: unknown field `{other}` (a line holds task, input and output)"
            ));
        }
        let field = |name: &str| -> Result<String, String> {
            match object.get(name) {
                None => Err(format!("line {number}: field `{name}`: missing")),
                Some(Value::String(s)) => Ok(s.clone()),
                Some(_) => Err(format!("line {number}: field `{name}`: must be a string")),
            }
        };
        let (name, input, output) = (field("task")?, field("input")?, field("output")?);
        if name.trim().is_empty() || name.chars().any(char::is_control) || name.chars().count() > 64 {
            return Err(format!("line {number}: field `task`: 1 to 64 characters on one line, not blank"));
        }
        if output.trim().is_empty() {
            return Err(format!("line {number}: field `output`: blank, so no answer could be right"));
        }
        let name = name.trim().to_owned();
        match tasks.iter_mut().find(|t| t.name == name) {
            Some(task) => task.examples.push((input, output)),
            None => tasks.push(FewShotTask { name, examples: vec![(input, output)] }),
        }
    }
    if let Some(short) = tasks.iter().find(|t| t.examples.len() <= most_shots) {
        return Err(format!(
            "task `{}` has {} examples: with up to {most_shots} worked examples it needs at least {} (the rest are its questions)",
            short.name,
            short.examples.len(),
            most_shots + 1
        ));
    }
    Ok(tasks)
}

#[cfg(test)]
mod task_tests {
    use super::*;

    #[test]
    fn a_teams_tasks_are_read_in_order_and_each_bad_line_is_named() {
        let text = "{\"task\": \"capitals\", \"input\": \"France:\", \"output\": \"Paris\"}\n\n\
                    {\"task\": \"double\", \"input\": \"2 ->\", \"output\": \"4\"}\n\
                    {\"task\": \"capitals\", \"input\": \"Italy:\", \"output\": \"Rome\"}\n\
                    {\"task\": \"double\", \"input\": \"3 ->\", \"output\": \"6\"}\n";
        let tasks = read_tasks(text, 1).unwrap();
        assert_eq!(tasks.len(), 2);
        assert_eq!(tasks[0].name, "capitals");
        assert_eq!(tasks[0].examples, [("France:".into(), "Paris".into()), ("Italy:".into(), "Rome".into())]);
        assert_eq!(tasks[1].examples[1], ("3 ->".into(), "6".into()));
        assert_eq!(
            read_tasks(text, 2).unwrap_err(),
            "task `capitals` has 2 examples: with up to 2 worked examples it needs at least 3 (the rest are its questions)"
        );
        let bad = |text: &str| read_tasks(text, 0).unwrap_err();
        assert!(bad("").starts_with("holds no task"));
        assert!(bad("{\"task\": \"a\", \"input\": \"x\"}").starts_with("line 1: field `output`: missing"));
        assert!(bad("\n{\"task\": \"a\", \"input\": 3, \"output\": \"y\"}")
            .starts_with("line 2: field `input`: must be a string"));
        assert!(bad("{\"task\": \"a\", \"input\": \"x\", \"output\": \"y\", \"id\": 1}")
            .contains("unknown field `id`"));
        assert!(bad("[1]").starts_with("line 1: not a JSON object"));
        assert!(
            bad("{\"task\": \" \", \"input\": \"x\", \"output\": \"y\"}").starts_with("line 1: field `task`")
        );
        assert!(bad("{\"task\": \"a\", \"input\": \"x\", \"output\": \" \"}").contains("blank"));
    }
}

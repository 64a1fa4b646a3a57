//! The training stages' input files, parsed at the edge.
//!
//! Every reader checks the whole file before returning, so nothing is trained on bad
//! data; an error names the file, the line and the field.
//!
//! - corpus: a text file (one document), or JSON lines `{"text"}` (a `.jsonl` file);
//! - demonstrations: `{"prompt", "response"}`, or OpenAI-style `{"messages": [{"role",
//!   "content"}, ...]}` (the project import's `messages` format);
//! - rankings: plumb's K-wise `{"prompt", "samples": [..K], "ranking": [[best], ...]}`,
//!   TRL's `{"prompt", "chosen", "rejected"}` (strings or message lists, or the implicit
//!   prompt) and raw Anthropic HH-RLHF transcripts, each line read in the format its
//!   fields tell ([`labeling::formats`], the same parser as the project import);
//! - prompts: `{"prompt"}`.
//!
//! Wherever a prompt is a list of messages, the model is prompted with what plumb's chat
//! template ([`spec::chat`]) renders of it, the same in every stage.

use std::path::{Path, PathBuf};

use labeling::formats::{self, Format, Record as FileRecord};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Fewest and most samples a ranking may hold.
pub const MIN_K: usize = 2;
pub const MAX_K: usize = 9;

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}:{line}: {reason}")]
    Line { path: PathBuf, line: usize, reason: String },
    #[error("{path}:{line}: field `{field}`: {reason}")]
    Field { path: PathBuf, line: usize, field: String, reason: String },
    #[error("{path}: no records")]
    Empty { path: PathBuf },
}

/// An ideal response to a prompt, written by a person (or the demo world's oracle).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Demonstration {
    pub prompt: String,
    pub response: String,
}

/// K samples for one prompt, ranked: `ranking[0]` holds the best sample indices; a group
/// of several indices is a tie. Built only through `Ranking::new`, which checks that
/// every sample appears exactly once.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Ranking {
    prompt: String,
    samples: Vec<String>,
    ranking: Vec<Vec<usize>>,
}

impl Ranking {
    /// Checks K, the groups and that each sample is ranked once; the error names the field.
    pub fn new(
        prompt: String,
        samples: Vec<String>,
        ranking: Vec<Vec<usize>>,
    ) -> Result<Self, (String, String)> {
        let k = samples.len();
        if !(MIN_K..=MAX_K).contains(&k) {
            return Err(("samples".into(), format!("has {k} samples; a ranking needs {MIN_K} to {MAX_K}")));
        }
        let mut seen = vec![false; k];
        for group in &ranking {
            if group.is_empty() {
                return Err(("ranking".into(), "has an empty group".into()));
            }
            for &i in group {
                if i >= k {
                    return Err(("ranking".into(), format!("index {i} is out of range for {k} samples")));
                }
                if std::mem::replace(&mut seen[i], true) {
                    return Err(("ranking".into(), format!("index {i} appears twice")));
                }
            }
        }
        if let Some(missing) = seen.iter().position(|s| !s) {
            return Err(("ranking".into(), format!("sample {missing} is not ranked")));
        }
        Ok(Ranking { prompt, samples, ranking })
    }

    pub fn prompt(&self) -> &str {
        &self.prompt
    }

    pub fn samples(&self) -> &[String] {
        &self.samples
    }

    pub fn groups(&self) -> &[Vec<usize>] {
        &self.ranking
    }

    /// Ordered (better, worse) sample pairs; samples in one group (ties) give none.
    pub fn pairs(&self) -> Vec<(usize, usize)> {
        labeling::annotation::better_worse_pairs(&self.ranking)
    }

    /// The best-ranked samples (the first group).
    pub fn best(&self) -> &[usize] {
        &self.ranking[0]
    }
}

fn read_text(path: &Path) -> Result<String, DataError> {
    let bytes = std::fs::read(path).map_err(|source| DataError::Io { path: path.to_path_buf(), source })?;
    String::from_utf8(bytes).map_err(|e| {
        let offset = e.utf8_error().valid_up_to();
        let line = e.as_bytes()[..offset].iter().filter(|&&b| b == b'\n').count() + 1;
        DataError::Line { path: path.to_path_buf(), line, reason: "invalid UTF-8".into() }
    })
}

/// Each non-blank line of a JSON-lines file as an object, with its 1-based line number.
/// A JSON-lines record: its 1-based line number and its fields.
type Line = (usize, serde_json::Map<String, Value>);

fn json_objects(path: &Path) -> Result<Vec<Line>, DataError> {
    let text = read_text(path)?;
    let mut records = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let line_no = i + 1;
        let value: Value = serde_json::from_str(line).map_err(|e| DataError::Line {
            path: path.to_path_buf(),
            line: line_no,
            reason: format!("invalid JSON: {e}"),
        })?;
        match value {
            Value::Object(map) => records.push((line_no, map)),
            _ => {
                return Err(DataError::Line {
                    path: path.to_path_buf(),
                    line: line_no,
                    reason: "expected a JSON object".into(),
                })
            }
        }
    }
    if records.is_empty() {
        return Err(DataError::Empty { path: path.to_path_buf() });
    }
    Ok(records)
}

/// Field access that names the file, line and field on error.
struct Record<'a> {
    path: &'a Path,
    line: usize,
    map: &'a serde_json::Map<String, Value>,
}

impl Record<'_> {
    fn error(&self, field: &str, reason: impl Into<String>) -> DataError {
        DataError::Field {
            path: self.path.to_path_buf(),
            line: self.line,
            field: field.into(),
            reason: reason.into(),
        }
    }

    fn has(&self, field: &str) -> bool {
        self.map.contains_key(field)
    }

    fn value(&self, field: &str) -> Result<&Value, DataError> {
        self.map.get(field).ok_or_else(|| self.error(field, "missing"))
    }

    /// A string field; `non_empty` refuses "" and whitespace only.
    fn string(&self, field: &str, non_empty: bool) -> Result<String, DataError> {
        text_of(self.value(field)?, non_empty).map_err(|reason| self.error(field, reason))
    }

    /// The record in `format`, as the project import reads it.
    fn parse(&self, format: Format) -> Result<FileRecord, DataError> {
        formats::parse_record(format, self.map).map_err(|e| self.error(&e.field, e.reason))
    }

    /// A prompt field as the model is prompted with it: a non-empty string, or a list of
    /// messages through the chat template.
    fn prompt(&self, field: &str) -> Result<String, DataError> {
        match self.value(field)? {
            list @ Value::Array(_) => spec::chat::Conversation::from_json(list)
                .map(|c| c.render())
                .map_err(|e| self.error(&format!("{field}{}", e.field), e.reason)),
            _ => self.string(field, true),
        }
    }
}

fn text_of(value: &Value, non_empty: bool) -> Result<String, String> {
    match value {
        Value::String(s) if non_empty && s.trim().is_empty() => Err("is empty".into()),
        Value::String(s) => Ok(s.clone()),
        other => Err(format!("expected a string, found {}", kind_of(other))),
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Documents for language modelling: a `.jsonl` file of `{"text"}` lines, or any other
/// file as one plain-text document.
pub fn read_corpus(path: &Path) -> Result<Vec<String>, DataError> {
    if path.extension().is_some_and(|e| e == "jsonl") {
        json_objects(path)?
            .iter()
            .map(|(line, map)| Record { path, line: *line, map }.string("text", true))
            .collect()
    } else {
        let text = read_text(path)?;
        if text.trim().is_empty() {
            return Err(DataError::Empty { path: path.to_path_buf() });
        }
        Ok(vec![text])
    }
}

/// Demonstrations in either form. A `messages` conversation is a demonstration of its
/// last message (the assistant's), prompted with the messages before it through the
/// chat template.
pub fn read_demonstrations(path: &Path) -> Result<Vec<Demonstration>, DataError> {
    json_objects(path)?
        .iter()
        .map(|(line, map)| {
            let r = Record { path, line: *line, map };
            if !r.has("messages") {
                return Ok(Demonstration {
                    prompt: r.prompt("prompt")?,
                    response: r.string("response", true)?,
                });
            }
            match r.parse(Format::Messages)? {
                FileRecord::Demonstration { prompt, response } => {
                    Ok(Demonstration { prompt: prompt.text(), response })
                }
                FileRecord::Ranked { .. } => Err(r.error("messages", "is not a demonstration")),
            }
        })
        .collect()
}

/// Rankings in any of the import's ranking formats (K-wise, TRL, HH-RLHF); a pair is a
/// ranking of K = 2.
pub fn read_rankings(path: &Path) -> Result<Vec<Ranking>, DataError> {
    json_objects(path)?
        .iter()
        .map(|(line, map)| {
            let r = Record { path, line: *line, map };
            match r.parse(Format::of_line(map))? {
                FileRecord::Ranked { prompt, samples, ranking, .. } => {
                    Ranking::new(prompt.text(), samples, ranking.groups().to_vec())
                        .map_err(|(field, reason)| r.error(&field, reason))
                }
                FileRecord::Demonstration { .. } => {
                    Err(r.error("messages", "is a demonstration, not a ranking"))
                }
            }
        })
        .collect()
}

/// Prompts for sampling (PPO's rollouts).
pub fn read_prompts(path: &Path) -> Result<Vec<String>, DataError> {
    json_objects(path)?.iter().map(|(line, map)| Record { path, line: *line, map }.prompt("prompt")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file(ext: &str, text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::Builder::new().suffix(ext).tempfile().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    fn err<T: std::fmt::Debug>(r: Result<T, DataError>) -> String {
        r.unwrap_err().to_string()
    }

    #[test]
    fn a_ranking_with_a_tie_gives_pairs_only_across_groups() {
        let r = Ranking::new(
            "p".into(),
            vec!["a".into(), "b".into(), "c".into(), "d".into()],
            vec![vec![2], vec![0, 1], vec![3]],
        )
        .unwrap();
        assert_eq!(r.pairs(), vec![(2, 0), (2, 1), (2, 3), (0, 3), (1, 3)]);
    }

    #[test]
    fn a_ranking_that_skips_a_sample_is_rejected() {
        let e = Ranking::new("p".into(), vec!["a".into(), "b".into(), "c".into()], vec![vec![0], vec![2]])
            .unwrap_err();
        assert_eq!(e.1, "sample 1 is not ranked");
    }

    #[test]
    fn a_ranking_with_a_duplicate_index_is_rejected() {
        let e =
            Ranking::new("p".into(), vec!["a".into(), "b".into()], vec![vec![0], vec![0, 1]]).unwrap_err();
        assert_eq!(e.1, "index 0 appears twice");
    }

    #[test]
    fn a_ranking_of_ten_samples_is_rejected() {
        let samples = (0..10).map(|i| i.to_string()).collect();
        let e = Ranking::new("p".into(), samples, vec![(0..10).collect()]).unwrap_err();
        assert_eq!(e.0, "samples");
    }

    #[test]
    fn rankings_read_both_forms_and_name_errors() {
        let f = file(
            ".jsonl",
            "{\"prompt\": \"p\", \"samples\": [\"a\", \"b\", \"c\"], \"ranking\": [[1], [0, 2]]}\n\n{\"prompt\": \"q\", \"chosen\": \"x\", \"rejected\": \"y\"}\n",
        );
        let rankings = read_rankings(f.path()).unwrap();
        assert_eq!(rankings.len(), 2);
        assert_eq!(rankings[1].pairs(), vec![(0, 1)]);

        let f = file(".jsonl", "{\"prompt\": \"p\", \"samples\": [\"a\", \"b\"], \"ranking\": [[0], [5]]}\n");
        let e = err(read_rankings(f.path()));
        assert!(e.ends_with(":1: field `ranking`: index 5 is out of range for 2 samples"), "{e}");

        let f = file(".jsonl", "{\"prompt\": \"p\", \"samples\": [\"a\", 3], \"ranking\": [[0], [1]]}\n");
        assert!(err(read_rankings(f.path())).ends_with("field `samples[1]`: must be a string"));
    }

    #[test]
    fn demonstrations_read_both_forms() {
        let f = file(
            ".jsonl",
            concat!(
                "{\"prompt\": \"Hi\\n\", \"response\": \"Hello\"}\n",
                "{\"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"}, {\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", \"content\": \"Hello\"}]}\n"
            ),
        );
        let demos = read_demonstrations(f.path()).unwrap();
        assert_eq!(demos[0], Demonstration { prompt: "Hi\n".into(), response: "Hello".into() });
        let templated = "System: Be brief.\n\nUser: Hi\n\nAssistant: ";
        assert_eq!(demos[1], Demonstration { prompt: templated.into(), response: "Hello".into() });
    }

    #[test]
    fn a_demonstration_error_names_file_line_and_field() {
        let f = file(".jsonl", "{\"prompt\": \"a\", \"response\": \"b\"}\n{\"prompt\": \"a\"}\n");
        let e = err(read_demonstrations(f.path()));
        assert!(e.starts_with(&f.path().display().to_string()), "{e}");
        assert!(e.ends_with(":2: field `response`: missing"), "{e}");

        let f = file(".jsonl", "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"bot\", \"content\": \"b\"}]}\n");
        assert!(err(read_demonstrations(f.path()))
            .ends_with("field `messages[1].role`: \"bot\" is not system, user or assistant"));
    }

    #[test]
    fn malformed_json_and_invalid_utf8_name_the_line() {
        let f = file(".jsonl", "{\"prompt\": \"a\"}\n{\"prompt\": \n");
        assert!(err(read_prompts(f.path())).contains(":2: invalid JSON"));
        let mut f = tempfile::Builder::new().suffix(".jsonl").tempfile().unwrap();
        f.write_all(b"{\"prompt\": \"a\"}\n{\"prompt\": \"\xff\"}\n").unwrap();
        assert!(err(read_prompts(f.path())).ends_with(":2: invalid UTF-8"));
    }

    #[test]
    fn a_corpus_is_a_text_file_or_text_lines() {
        let f = file(".txt", "once upon a time\nthere was a cat\n");
        assert_eq!(read_corpus(f.path()).unwrap().len(), 1);
        let f = file(".jsonl", "{\"text\": \"a\"}\n{\"text\": \"b\"}\n");
        assert_eq!(read_corpus(f.path()).unwrap(), vec!["a", "b"]);
        let f = file(".jsonl", "{\"text\": \"\"}\n");
        assert!(err(read_corpus(f.path())).ends_with(":1: field `text`: is empty"));
        let f = file(".jsonl", "\n\n");
        assert!(err(read_corpus(f.path())).ends_with("no records"));
    }
}

//! The training stages' input files, parsed at the edge.
//!
//! Every reader checks the whole file before returning, so nothing is trained on bad
//! data; an error names the file, the line and the field.
//!
//! - corpus: a text file (one document), or JSON lines `{"text"}` (a `.jsonl` file);
//! - demonstrations: `{"prompt", "response"}`, TRL's `{"prompt", "completion"}` (the
//!   completion a string or a list holding the assistant's message), or OpenAI-style
//!   `{"messages": [{"role", "content"}, ...]}` (the project import's `messages` format);
//!   the prompt a string or a list of messages. SFT trains on every assistant turn of a
//!   conversation: its earlier turns and the answer;
//! - rankings: plumb's K-wise `{"prompt", "samples": [..K], "ranking": [[best], ...]}`,
//!   TRL's `{"prompt", "chosen", "rejected"}` (strings or message lists, or the implicit
//!   prompt) and raw Anthropic HH-RLHF transcripts, each line read in the format its
//!   fields tell ([`labeling::formats`], the same parser as the project import);
//! - prompts: `{"prompt"}`.
//!
//! Wherever a prompt is a list of messages, the model is prompted with what plumb's chat
//! template ([`spec::chat`]) renders of it, the same in every stage.

use std::path::{Path, PathBuf};

use labeling::formats::{self, Format, Prompt, Record as FileRecord};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use spec::chat::{AssistantTurn, Conversation, Message, Role};

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
    /// Where the assistant's earlier turns lie in `prompt` when it is a rendered
    /// conversation: SFT trains on their content as on the response. None for a plain
    /// prompt.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub assistant_turns: Vec<AssistantTurn>,
}

impl Demonstration {
    /// A response to a plain-text prompt.
    pub fn new(prompt: impl Into<String>, response: impl Into<String>) -> Demonstration {
        Demonstration { prompt: prompt.into(), response: response.into(), assistant_turns: Vec::new() }
    }

    /// The assistant's next turn in `conversation`, prompted with the conversation through
    /// the chat template; its earlier assistant turns are trained on too.
    pub fn of_conversation(conversation: &Conversation, response: impl Into<String>) -> Demonstration {
        let (prompt, assistant_turns) = conversation.render_with_turns();
        Demonstration { prompt, response: response.into(), assistant_turns }
    }

    fn of_prompt(prompt: &Prompt, response: String) -> Demonstration {
        match prompt {
            Prompt::Text(text) => Demonstration::new(text.clone(), response),
            Prompt::Conversation(conversation) => Demonstration::of_conversation(conversation, response),
        }
    }
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
        Ok(self.prompt_as_given(field)?.text())
    }

    /// A prompt field: a non-empty string, or a conversation.
    fn prompt_as_given(&self, field: &str) -> Result<Prompt, DataError> {
        match self.value(field)? {
            list @ Value::Array(_) => Conversation::from_json(list)
                .map(Prompt::Conversation)
                .map_err(|e| self.error(&format!("{field}{}", e.field), e.reason)),
            _ => self.string(field, true).map(Prompt::Text),
        }
    }

    /// TRL's `completion`: a non-empty string, or a list holding the assistant's message.
    fn completion(&self) -> Result<String, DataError> {
        let value = self.value("completion")?;
        let Value::Array(_) = value else { return self.string("completion", true) };
        let messages = spec::chat::messages_from_json(value)
            .map_err(|e| self.error(&format!("completion{}", e.field), e.reason))?;
        match messages.as_slice() {
            [Message { role: Role::Assistant, content }] if !content.trim().is_empty() => Ok(content.clone()),
            [Message { role: Role::Assistant, .. }] => Err(self.error("completion[0].content", "is empty")),
            _ => Err(self.error("completion", "must be one assistant message")),
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

/// Demonstrations in any of their forms. A `messages` conversation is a demonstration of
/// its last message (the assistant's), prompted with the messages before it through the
/// chat template; the assistant's earlier turns in a conversation, there or in a
/// `prompt`, are recorded for SFT to train on too.
pub fn read_demonstrations(path: &Path) -> Result<Vec<Demonstration>, DataError> {
    json_objects(path)?
        .iter()
        .map(|(line, map)| {
            let r = Record { path, line: *line, map };
            if !r.has("messages") {
                let prompt = r.prompt_as_given("prompt")?;
                let response = match (r.has("response"), r.has("completion")) {
                    (true, true) => {
                        return Err(r.error("completion", "given with `response`: a line holds one of them"))
                    }
                    (false, true) => r.completion()?,
                    _ => r.string("response", true)?,
                };
                return Ok(Demonstration::of_prompt(&prompt, response));
            }
            match r.parse(Format::Messages)? {
                FileRecord::Demonstration { prompt, response } => {
                    Ok(Demonstration::of_prompt(&prompt, response))
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
        assert_eq!(demos[0], Demonstration::new("Hi\n", "Hello"));
        let templated = "System: Be brief.\n\nUser: Hi\n\nAssistant: ";
        assert_eq!(demos[1], Demonstration::new(templated, "Hello"));
    }

    /// The trained text of `d` as SFT encodes it, run by run.
    fn trained_text(d: &Demonstration) -> Vec<String> {
        let t = crate::tokenizer::Tokenizer::new(crate::tokenizer::TokenizerKind::Bytes);
        let e = crate::sft::example(&t, 1024, 0, d).unwrap();
        let mut runs: Vec<String> = Vec::new();
        for (i, (&id, &trained)) in e.ids.iter().zip(&e.loss_mask).enumerate() {
            let token = if id == t.eos_id() { "<EOS>".to_owned() } else { t.decode(&[id]) };
            if trained && i > 0 && e.loss_mask[i - 1] {
                runs.last_mut().unwrap().push_str(&token);
            } else if trained {
                runs.push(token);
            }
        }
        runs
    }

    #[test]
    fn a_multi_turn_demonstration_trains_every_assistant_turn_in_each_form() {
        let turns = r#"{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Bye"}"#;
        let f = file(
            ".jsonl",
            &[
                format!(r#"{{"messages": [{turns}, {{"role": "assistant", "content": "Bye now."}}]}}"#),
                format!(r#"{{"prompt": [{turns}], "completion": [{{"role": "assistant", "content": "Bye now."}}]}}"#),
                format!(r#"{{"prompt": [{turns}], "completion": "Bye now."}}"#),
                format!(r#"{{"prompt": [{turns}], "response": "Bye now."}}"#),
            ]
            .join("\n"),
        );
        let demos = read_demonstrations(f.path()).unwrap();
        let rendered = "System: Be brief.\n\nUser: Hi\n\nAssistant: Hello!\n\nUser: Bye\n\nAssistant: ";
        for (line, d) in demos.iter().enumerate() {
            assert_eq!((d.prompt.as_str(), d.response.as_str()), (rendered, "Bye now."), "line {}", line + 1);
            assert_eq!(trained_text(d), ["Hello!", "Bye now.<EOS>"], "line {}", line + 1);
        }
        // A plain prompt that reads like a conversation is text: only the response is trained.
        let f = file(".jsonl", &format!(r#"{{"prompt": {:?}, "response": "Bye now."}}"#, rendered));
        let plain = read_demonstrations(f.path()).unwrap();
        assert_eq!(plain[0].prompt, rendered);
        assert_eq!(trained_text(&plain[0]), ["Bye now.<EOS>"]);
    }

    #[test]
    fn a_trl_completion_is_one_assistant_message_and_not_beside_a_response() {
        let f = file(".jsonl", r#"{"prompt": "p", "completion": [{"role": "user", "content": "x"}]}"#);
        assert!(err(read_demonstrations(f.path()))
            .ends_with(":1: field `completion`: must be one assistant message"));
        let f = file(".jsonl", r#"{"prompt": "p", "completion": "x", "response": "y"}"#);
        assert!(err(read_demonstrations(f.path()))
            .ends_with("field `completion`: given with `response`: a line holds one of them"));
        let f = file(".jsonl", r#"{"prompt": "p", "completion": [{"role": "assistant", "content": " "}]}"#);
        assert!(err(read_demonstrations(f.path())).ends_with("field `completion[0].content`: is empty"));
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

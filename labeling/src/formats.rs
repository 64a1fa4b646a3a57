//! The preference and demonstration file formats plumb reads and writes: one JSON object
//! per line, parsed here once for the project import (`imports`), the snapshot exports
//! (`snapshots`) and the trainer's file readers, so the three agree line for line.
//!
//! - `trl`: `{"prompt", "chosen", "rejected"}` with strings, or TRL's conversational form
//!   (the prompt a list of messages, `chosen` and `rejected` each a list holding the
//!   assistant's message); also TRL's implicit prompt, `{"chosen", "rejected"}` as two
//!   message lists that share everything but their final assistant message.
//! - `hh`: raw Anthropic HH-RLHF lines, `{"chosen": "\n\nHuman: …\n\nAssistant: …",
//!   "rejected": …}`: the turns the two transcripts share become the conversation, their
//!   final assistant turns the two samples (chosen better).
//! - `messages`: OpenAI-style demonstrations, `{"messages": [...]}`; the last message is
//!   the assistant's demonstration, the ones before it the prompt.
//! - `kwise`: plumb's K-wise rankings, `{"prompt", "samples": [..K], "ranking": [[best],
//!   ...]}`, the prompt a string or a list of messages.
//!
//! A conversation becomes the text a model is prompted with through plumb's chat
//! template ([`spec::chat`]).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use spec::chat::{self, Conversation, ConversationError, Message, Role};

use crate::annotation::{Likert, Ranking, SampleFlag};
use crate::error::{LabelingError, Result};

/// A file format, by its name in URLs, the CLI and the `import_format` Postgres enum.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type)]
#[sqlx(type_name = "import_format", rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Trl,
    Hh,
    Messages,
    #[serde(rename = "kwise")]
    #[sqlx(rename = "kwise")]
    KWise,
}

impl Format {
    pub const ALL: [Format; 4] = [Format::Trl, Format::Hh, Format::Messages, Format::KWise];

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Trl => "trl",
            Format::Hh => "hh",
            Format::Messages => "messages",
            Format::KWise => "kwise",
        }
    }

    pub fn parse(name: &str) -> Result<Format> {
        Format::ALL.into_iter().find(|f| f.as_str() == name.trim()).ok_or_else(|| {
            LabelingError::invalid("format", format!("{name:?} is not trl, hh, messages or kwise"))
        })
    }

    /// The format a line is written in, told by its fields (for readers that take any).
    pub fn of_line(object: &Map<String, Value>) -> Format {
        if object.contains_key("messages") {
            Format::Messages
        } else if object.contains_key("samples") || object.contains_key("ranking") {
            Format::KWise
        } else if !object.contains_key("prompt") && object.get("chosen").is_some_and(Value::is_string) {
            Format::Hh
        } else {
            Format::Trl
        }
    }
}

/// A prompt as a file gives it: plain text, or a conversation (and so written).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Prompt {
    Text(String),
    Conversation(Conversation),
}

impl Prompt {
    /// What the model is prompted with: the text, or the conversation through plumb's
    /// chat template.
    pub fn text(&self) -> String {
        match self {
            Prompt::Text(text) => text.clone(),
            Prompt::Conversation(conversation) => conversation.render(),
        }
    }

    /// The conversation's messages; a plain text is one user turn.
    pub fn messages(&self) -> Vec<Message> {
        match self {
            Prompt::Text(text) => vec![Message::new(Role::User, text.clone())],
            Prompt::Conversation(conversation) => conversation.messages().to_vec(),
        }
    }

    /// The prompt stored as `text` and, for a conversation, `messages`.
    pub fn from_stored(text: String, messages: Option<&Value>) -> Result<Prompt> {
        match messages {
            None | Some(Value::Null) => Ok(Prompt::Text(text)),
            Some(value) => Conversation::from_json(value)
                .map(Prompt::Conversation)
                .map_err(|e| LabelingError::invalid(format!("messages{}", e.field), e.reason)),
        }
    }
}

/// What one line holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// K samples of a prompt in order, best first (a pair is K = 2).
    Ranked { prompt: Prompt, samples: Vec<String>, ranking: Ranking, notes: SampleNotes },
    /// An ideal response to a prompt.
    Demonstration { prompt: Prompt, response: String },
}

/// What annotators noted on each sample of a ranking, by position: a Likert rating or
/// none, and content flags. Empty lists when the line has none (`kwise` carries them).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SampleNotes {
    pub likert: Vec<Option<u8>>,
    pub flags: Vec<Vec<SampleFlag>>,
}

/// What is wrong with a line: the field (`chosen`, `messages[2].role`) and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub reason: String,
}

fn at(field: impl Into<String>, reason: impl Into<String>) -> FieldError {
    FieldError { field: field.into(), reason: reason.into() }
}

fn under(field: &str, e: ConversationError) -> FieldError {
    at(format!("{field}{}", e.field), e.reason)
}

/// One line's object read as `format`.
pub fn parse_record(format: Format, object: &Map<String, Value>) -> std::result::Result<Record, FieldError> {
    match format {
        Format::Trl => parse_trl(object),
        Format::Hh => parse_hh(object),
        Format::Messages => parse_messages(object),
        Format::KWise => parse_kwise(object),
    }
}

fn field<'a>(object: &'a Map<String, Value>, name: &str) -> std::result::Result<&'a Value, FieldError> {
    object.get(name).ok_or_else(|| at(name, "is missing"))
}

fn string(object: &Map<String, Value>, name: &str) -> std::result::Result<String, FieldError> {
    match field(object, name)? {
        Value::String(s) if s.contains('\0') => Err(at(name, "holds a NUL character")),
        Value::String(s) => Ok(s.clone()),
        _ => Err(at(name, "must be a string")),
    }
}

/// A prompt field: a non-blank string, or a conversation.
fn prompt(object: &Map<String, Value>, name: &str) -> std::result::Result<Prompt, FieldError> {
    match field(object, name)? {
        Value::Array(_) => {
            Ok(Prompt::Conversation(Conversation::from_json(&object[name]).map_err(|e| under(name, e))?))
        }
        Value::String(s) if s.trim().is_empty() => Err(at(name, "is empty")),
        Value::String(_) => Ok(Prompt::Text(string(object, name)?)),
        _ => Err(at(name, "must be a string or a list of messages")),
    }
}

fn pair(prompt: Prompt, chosen: String, rejected: String) -> Record {
    // Two samples in two groups: always a valid ranking.
    let ranking = Ranking::parse(2, vec![vec![0], vec![1]]).expect("a pair is a ranking");
    Record::Ranked { prompt, samples: vec![chosen, rejected], ranking, notes: SampleNotes::default() }
}

fn parse_trl(object: &Map<String, Value>) -> std::result::Result<Record, FieldError> {
    if object.contains_key("prompt") {
        let prompt = prompt(object, "prompt")?;
        let answer = |name: &str| match field(object, name)? {
            Value::Array(_) => {
                let messages = chat::messages_from_json(&object[name]).map_err(|e| under(name, e))?;
                match messages.as_slice() {
                    [Message { role: Role::Assistant, content }] => Ok(content.clone()),
                    _ => Err(at(name, "must be one assistant message")),
                }
            }
            _ => string(object, name),
        };
        return Ok(pair(prompt, answer("chosen")?, answer("rejected")?));
    }
    // TRL's implicit prompt: two conversations that differ only in their last turn.
    let conversation = |name: &str| match field(object, name)? {
        Value::Array(_) => chat::messages_from_json(&object[name]).map_err(|e| under(name, e)),
        _ => Err(at("prompt", "is missing (an implicit prompt needs chosen and rejected as message lists)")),
    };
    let (chosen, rejected) = (conversation("chosen")?, conversation("rejected")?);
    split_shared(chosen, rejected)
}

/// Two conversations that share every turn but their final assistant ones, as a pair.
fn split_shared(chosen: Vec<Message>, rejected: Vec<Message>) -> std::result::Result<Record, FieldError> {
    let last = |messages: &[Message], name: &str| match messages.last() {
        Some(Message { role: Role::Assistant, content }) => Ok(content.clone()),
        _ => Err(at(name, "must end with the assistant's turn")),
    };
    let (better, worse) = (last(&chosen, "chosen")?, last(&rejected, "rejected")?);
    let (shared, other) = (&chosen[..chosen.len() - 1], &rejected[..rejected.len() - 1]);
    if shared != other {
        let turn = shared.iter().zip(other).take_while(|(a, b)| a == b).count();
        let reason = if turn == 0 {
            "shares no prefix with chosen: a pair needs the same conversation before its final assistant turn"
                .to_owned()
        } else {
            format!("differs from chosen at turn {turn}, before the final assistant turn")
        };
        return Err(at("rejected", reason));
    }
    let conversation = Conversation::parse(shared.to_vec()).map_err(|e| under("chosen", e))?;
    Ok(pair(Prompt::Conversation(conversation), better, worse))
}

fn parse_hh(object: &Map<String, Value>) -> std::result::Result<Record, FieldError> {
    let turns = |name: &str| hh_turns(&string(object, name)?).map_err(|reason| at(name, reason));
    split_shared(turns("chosen")?, turns("rejected")?)
}

const HUMAN: &str = "\n\nHuman:";
const ASSISTANT: &str = "\n\nAssistant:";

/// The turns of an HH-RLHF transcript. Each turn starts with `"\n\nHuman:"` or
/// `"\n\nAssistant:"` and one space that is not part of its content; a transcript
/// without the leading blank line is read as if it had it.
fn hh_turns(transcript: &str) -> std::result::Result<Vec<Message>, String> {
    let owned;
    let text = if transcript.starts_with("\n\n") {
        transcript
    } else {
        owned = format!("\n\n{transcript}");
        &owned
    };
    let mut markers: Vec<(usize, Role, usize)> = text
        .match_indices(HUMAN)
        .map(|(i, m)| (i, Role::User, m.len()))
        .chain(text.match_indices(ASSISTANT).map(|(i, m)| (i, Role::Assistant, m.len())))
        .collect();
    markers.sort_unstable_by_key(|m| m.0);
    if markers.first().is_none_or(|m| m.0 != 0) {
        return Err("is not an HH-RLHF transcript: it must start with \"\\n\\nHuman:\"".to_owned());
    }
    let mut turns = Vec::with_capacity(markers.len());
    for (n, &(start, role, len)) in markers.iter().enumerate() {
        let end = markers.get(n + 1).map_or(text.len(), |m| m.0);
        let content = &text[start + len..end];
        turns.push(Message::new(role, content.strip_prefix(' ').unwrap_or(content)));
    }
    Ok(turns)
}

fn parse_messages(object: &Map<String, Value>) -> std::result::Result<Record, FieldError> {
    let messages = chat::messages_from_json(field(object, "messages")?).map_err(|e| under("messages", e))?;
    let Some((Message { role: Role::Assistant, content }, context)) = messages.split_last() else {
        return Err(at("messages", "must end with the assistant's demonstration"));
    };
    if content.trim().is_empty() {
        return Err(at(format!("messages[{}].content", messages.len() - 1), "is empty"));
    }
    let conversation = Conversation::parse(context.to_vec()).map_err(|e| under("messages", e))?;
    Ok(Record::Demonstration { prompt: Prompt::Conversation(conversation), response: content.clone() })
}

fn parse_kwise(object: &Map<String, Value>) -> std::result::Result<Record, FieldError> {
    let prompt = prompt(object, "prompt")?;
    let Value::Array(values) = field(object, "samples")? else {
        return Err(at("samples", "must be a list of strings"));
    };
    let samples = values
        .iter()
        .enumerate()
        .map(|(i, v)| match v {
            Value::String(s) if s.contains('\0') => Err(at(format!("samples[{i}]"), "holds a NUL character")),
            Value::String(s) => Ok(s.clone()),
            _ => Err(at(format!("samples[{i}]"), "must be a string")),
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let groups: Vec<Vec<usize>> = serde_json::from_value(field(object, "ranking")?.clone())
        .map_err(|_| at("ranking", "must be a list of lists of sample indices, e.g. [[2], [0, 1]]"))?;
    let ranking = Ranking::parse(samples.len(), groups).map_err(|e| match e {
        LabelingError::Invalid { field, reason } => at(field, reason),
        other => at("ranking", other.to_string()),
    })?;
    let notes = sample_notes(object, samples.len())?;
    Ok(Record::Ranked { prompt, samples, ranking, notes })
}

/// A `kwise` line's optional `likert` (a rating 1 to 7 or null per sample) and `flags`
/// (a list of flag names per sample).
fn sample_notes(object: &Map<String, Value>, k: usize) -> std::result::Result<SampleNotes, FieldError> {
    let per_sample = |name: &str| match object.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(values)) if values.len() == k => Ok(Some(values)),
        Some(_) => Err(at(name, format!("must be a list of {k} entries, one per sample"))),
    };
    let likert = match per_sample("likert")? {
        None => Vec::new(),
        Some(values) => values
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::Null => Ok(None),
                _ => v
                    .as_i64()
                    .and_then(|n| Likert::parse(n).ok())
                    .map(|l| Some(l.value()))
                    .ok_or_else(|| at(format!("likert[{i}]"), "must be a rating 1 to 7, or null")),
            })
            .collect::<std::result::Result<_, _>>()?,
    };
    let flags = match per_sample("flags")? {
        None => Vec::new(),
        Some(values) => values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let names =
                    v.as_array().ok_or_else(|| at(format!("flags[{i}]"), "must be a list of flag names"))?;
                names
                    .iter()
                    .map(|n| {
                        SampleFlag::parse(n.as_str().unwrap_or_default())
                            .map_err(|e| at(format!("flags[{i}]"), e.to_string()))
                    })
                    .collect()
            })
            .collect::<std::result::Result<_, _>>()?,
    };
    Ok(SampleNotes { likert, flags })
}

#[derive(Serialize)]
struct KWiseLine<'a> {
    prompt: &'a Prompt,
    samples: &'a [&'a str],
    ranking: &'a [Vec<usize>],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    likert: &'a [Option<u8>],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    flags: &'a [Vec<SampleFlag>],
}

/// A TRL pair; with a conversation, `chosen` and `rejected` are each one assistant message.
#[derive(Serialize)]
struct TrlLine<'a, A: Serialize> {
    prompt: &'a Prompt,
    chosen: A,
    rejected: A,
}

#[derive(Serialize)]
struct HhLine {
    chosen: String,
    rejected: String,
}

#[derive(Serialize)]
struct MessagesLine {
    messages: Vec<Message>,
}

fn line(value: &impl Serialize) -> Result<String> {
    serde_json::to_string(value)
        .map_err(|e| LabelingError::invalid("export", format!("a line cannot be written: {e}")))
}

/// The lines `format` writes for K ranked samples of a prompt: `kwise` one line, with the
/// samples' Likert ratings and flags where there are any; `trl` and `hh` one line per
/// (better, worse) pair (tied samples give none).
pub fn ranked_lines(
    format: Format,
    prompt: &Prompt,
    samples: &[&str],
    ranking: &Ranking,
    notes: &SampleNotes,
) -> Result<Vec<String>> {
    let pairs = ranking.pairs();
    match format {
        Format::KWise => {
            let flags: &[Vec<SampleFlag>] =
                if notes.flags.iter().all(Vec::is_empty) { &[] } else { &notes.flags };
            let likert: &[Option<u8>] =
                if notes.likert.iter().all(Option::is_none) { &[] } else { &notes.likert };
            Ok(vec![line(&KWiseLine { prompt, samples, ranking: ranking.groups(), likert, flags })?])
        }
        Format::Trl => match prompt {
            Prompt::Text(_) => pairs
                .iter()
                .map(|&(w, l)| line(&TrlLine { prompt, chosen: samples[w], rejected: samples[l] }))
                .collect(),
            Prompt::Conversation(_) => {
                let answer = |s: &str| [Message::new(Role::Assistant, s)];
                pairs
                    .iter()
                    .map(|&(w, l)| {
                        line(&TrlLine { prompt, chosen: answer(samples[w]), rejected: answer(samples[l]) })
                    })
                    .collect()
            }
        },
        Format::Hh => {
            let shared = hh_transcript(&prompt.messages())?;
            let answer = |s: &str| format!("{shared}{ASSISTANT} {s}");
            pairs
                .iter()
                .map(|&(w, l)| line(&HhLine { chosen: answer(samples[w]), rejected: answer(samples[l]) }))
                .collect()
        }
        Format::Messages => {
            Err(LabelingError::invalid("format", "rankings export as kwise, trl or hh, not messages"))
        }
    }
}

/// The line `format` writes for a demonstration: only `messages` holds one.
pub fn demonstration_line(format: Format, prompt: &Prompt, response: &str) -> Result<String> {
    if format != Format::Messages {
        return Err(LabelingError::invalid("format", "demonstrations export as messages"));
    }
    let mut messages = prompt.messages();
    messages.push(Message::new(Role::Assistant, response));
    line(&MessagesLine { messages })
}

/// Messages as an HH-RLHF transcript; HH has no system turn.
fn hh_transcript(messages: &[Message]) -> Result<String> {
    let mut text = String::new();
    for m in messages {
        let marker = match m.role {
            Role::User => HUMAN,
            Role::Assistant => ASSISTANT,
            Role::System => {
                return Err(LabelingError::invalid(
                    "format",
                    "hh cannot hold a system message: export as trl or kwise",
                ))
            }
        };
        text.push_str(marker);
        text.push(' ');
        text.push_str(&m.content);
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(line: &str) -> Map<String, Value> {
        serde_json::from_str(line).unwrap()
    }

    fn pair_of(record: Record) -> (Prompt, Vec<String>) {
        match record {
            Record::Ranked { prompt, samples, .. } => (prompt, samples),
            other => panic!("not a ranking: {other:?}"),
        }
    }

    #[test]
    fn an_hh_line_becomes_its_shared_conversation_and_two_samples() {
        let line = object(
            r#"{"chosen": "\n\nHuman: Hi\n\nAssistant: Hello.\n\nHuman: Name a colour.\n\nAssistant: Blue.", "rejected": "\n\nHuman: Hi\n\nAssistant: Hello.\n\nHuman: Name a colour.\n\nAssistant: No."}"#,
        );
        let (prompt, samples) = pair_of(parse_record(Format::Hh, &line).unwrap());
        assert_eq!(samples, ["Blue.", "No."]);
        assert_eq!(prompt.text(), "User: Hi\n\nAssistant: Hello.\n\nUser: Name a colour.\n\nAssistant: ");
    }

    #[test]
    fn an_hh_line_whose_transcripts_share_no_prefix_names_rejected() {
        let line = object(
            r#"{"chosen": "\n\nHuman: A\n\nAssistant: x", "rejected": "\n\nHuman: B\n\nAssistant: y"}"#,
        );
        let e = parse_record(Format::Hh, &line).unwrap_err();
        assert_eq!(e.field, "rejected");
        assert!(e.reason.contains("shares no prefix"), "{}", e.reason);
    }

    #[test]
    fn an_hh_export_reads_back_as_the_same_pair() {
        let prompt = Prompt::Text("Say hi".into());
        let ranking = Ranking::parse(2, vec![vec![1], vec![0]]).unwrap();
        let lines =
            ranked_lines(Format::Hh, &prompt, &["a", "b"], &ranking, &SampleNotes::default()).unwrap();
        let (read, samples) = pair_of(parse_record(Format::Hh, &object(&lines[0])).unwrap());
        assert_eq!(samples, ["b", "a"]);
        assert_eq!(read.messages(), prompt.messages());
    }

    #[test]
    fn trl_takes_strings_message_lists_and_the_implicit_prompt() {
        let plain = object(r#"{"prompt": "p", "chosen": "a", "rejected": "b"}"#);
        assert_eq!(pair_of(parse_record(Format::Trl, &plain).unwrap()).0, Prompt::Text("p".into()));
        let listed = object(
            r#"{"prompt": [{"role": "user", "content": "p"}], "chosen": [{"role": "assistant", "content": "a"}], "rejected": [{"role": "assistant", "content": "b"}]}"#,
        );
        let implicit = object(
            r#"{"chosen": [{"role": "user", "content": "p"}, {"role": "assistant", "content": "a"}], "rejected": [{"role": "user", "content": "p"}, {"role": "assistant", "content": "b"}]}"#,
        );
        assert_eq!(
            parse_record(Format::Trl, &listed).unwrap(),
            parse_record(Format::Trl, &implicit).unwrap()
        );
        let strings = object(r#"{"chosen": "a", "rejected": "b"}"#);
        assert_eq!(parse_record(Format::Trl, &strings).unwrap_err().field, "prompt");
    }

    #[test]
    fn a_messages_line_is_a_demonstration_of_its_last_assistant_turn() {
        let line = object(
            r#"{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}"#,
        );
        let Record::Demonstration { prompt, response } = parse_record(Format::Messages, &line).unwrap()
        else {
            panic!("not a demonstration")
        };
        assert_eq!(
            (prompt.text().as_str(), response.as_str()),
            ("System: Be brief.\n\nUser: Hi\n\nAssistant: ", "Hello")
        );
        let bad =
            object(r#"{"messages": [{"role": "user", "content": "Hi"}, {"role": "bot", "content": "x"}]}"#);
        assert_eq!(parse_record(Format::Messages, &bad).unwrap_err().field, "messages[1].role");
    }

    #[test]
    fn the_format_of_a_line_is_told_by_its_fields() {
        assert_eq!(Format::of_line(&object(r#"{"chosen": "\n\nHuman: a", "rejected": "b"}"#)), Format::Hh);
        assert_eq!(
            Format::of_line(&object(r#"{"prompt": "p", "chosen": "a", "rejected": "b"}"#)),
            Format::Trl
        );
        assert_eq!(
            Format::of_line(&object(r#"{"prompt": "p", "samples": [], "ranking": []}"#)),
            Format::KWise
        );
    }
}

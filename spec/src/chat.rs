//! Conversations and plumb's chat template: the one place that says how a conversation
//! becomes the text a model is prompted with, so that SFT, the reward model, PPO,
//! sampling and evaluation all see the same tokens.
//!
//! A conversation is a list of messages (`system`, `user`, `assistant`), multi-turn; as
//! a prompt it ends with the user's turn, and its samples and demonstrations are the
//! assistant's next turn. GPT-2 has no chat template, so plumb defines a plain one,
//! [`PLAIN`] (`plumb-plain-v1`):
//!
//! ```text
//! System: Be brief.\n\nUser: Hi\n\nAssistant: Hello!\n\nUser: Bye\n\nAssistant:
//! ```
//!
//! Each message is its role's name (`System`, `User`, `Assistant`), `": "`, its content
//! and a blank line; the prompt ends with `"Assistant: "` (a trailing space), and the
//! assistant's answer follows it as is. It reads like the Anthropic HH-RLHF transcripts
//! plumb imports, with `User` for `Human`.
//!
//! SFT trains on every assistant turn of a demonstration, the earlier ones included
//! ([`Conversation::render_with_turns`] says where they lie): their content only, never a
//! role header, a blank line or another role's message.

use std::ops::Range;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The name of plumb's plain chat template, as checkpoints and exports record it.
pub const PLAIN: &str = "plumb-plain-v1";

/// Who speaks a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }

    /// The role's name in [`PLAIN`].
    fn speaker(self) -> &'static str {
        match self {
            Role::System => "System",
            Role::User => "User",
            Role::Assistant => "Assistant",
        }
    }

    fn parse(name: &str) -> Option<Role> {
        match name {
            "system" => Some(Role::System),
            "user" => Some(Role::User),
            "assistant" => Some(Role::Assistant),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    pub content: String,
}

impl Message {
    pub fn new(role: Role, content: impl Into<String>) -> Message {
        Message { role, content: content.into() }
    }
}

/// What is wrong with a conversation: the field (`[2].role`, relative to the list) and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConversationError {
    pub field: String,
    pub reason: String,
}

impl ConversationError {
    fn at(field: impl Into<String>, reason: impl Into<String>) -> ConversationError {
        ConversationError { field: field.into(), reason: reason.into() }
    }
}

/// A prompt conversation: a system message only first, no blank message, ending with
/// the user's turn. Built only through [`Conversation::parse`] or
/// [`Conversation::from_json`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Conversation(Vec<Message>);

impl Conversation {
    pub fn parse(messages: Vec<Message>) -> Result<Conversation, ConversationError> {
        if messages.is_empty() {
            return Err(ConversationError::at("", "is empty: a conversation needs the user's turn"));
        }
        for (i, m) in messages.iter().enumerate() {
            if m.content.trim().is_empty() {
                return Err(ConversationError::at(format!("[{i}].content"), "is empty"));
            }
            if m.content.contains('\0') {
                return Err(ConversationError::at(format!("[{i}].content"), "holds a NUL character"));
            }
            if m.role == Role::System && i > 0 {
                return Err(ConversationError::at(
                    format!("[{i}].role"),
                    "a system message may only come first",
                ));
            }
        }
        let last = messages.len() - 1;
        if messages[last].role != Role::User {
            return Err(ConversationError::at(
                format!("[{last}].role"),
                format!("is {}: a prompt ends with the user's turn", messages[last].role.as_str()),
            ));
        }
        Ok(Conversation(messages))
    }

    /// A JSON list of `{"role", "content"}` objects (other keys refused).
    pub fn from_json(value: &Value) -> Result<Conversation, ConversationError> {
        Conversation::parse(messages_from_json(value)?)
    }

    pub fn messages(&self) -> &[Message] {
        &self.0
    }

    pub fn to_json(&self) -> Value {
        serde_json::to_value(&self.0).unwrap_or_default()
    }

    /// The conversation as [`PLAIN`] renders it: the text the model is prompted with,
    /// after which the assistant's next turn follows.
    pub fn render(&self) -> String {
        self.render_with_turns().0
    }

    /// [`Conversation::render`]'s text, and where the assistant's turns lie in it (the
    /// turns the conversation holds, not the next one it prompts for), in order: what SFT
    /// trains on besides the demonstration's answer.
    pub fn render_with_turns(&self) -> (String, Vec<AssistantTurn>) {
        let mut text = String::new();
        let mut turns = Vec::new();
        for m in &self.0 {
            let header = text.len();
            text.push_str(m.role.speaker());
            text.push_str(": ");
            let content = text.len();
            text.push_str(&m.content);
            if m.role == Role::Assistant {
                turns.push(AssistantTurn { header: header..content, content: content..text.len() });
            }
            text.push_str("\n\n");
        }
        text.push_str(Role::Assistant.speaker());
        text.push_str(": ");
        (text, turns)
    }
}

/// An assistant's turn inside a rendered conversation, by byte offsets into its text:
/// the role header (`"Assistant: "`) and the content right after it. The blank line that
/// ends every message is neither: in [`PLAIN`] it is the same after every role, and the
/// assistant's final answer ends with EOS instead.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssistantTurn {
    pub header: Range<usize>,
    pub content: Range<usize>,
}

/// A JSON list of `{"role", "content"}` messages, each checked for its shape only.
pub fn messages_from_json(value: &Value) -> Result<Vec<Message>, ConversationError> {
    let Value::Array(items) = value else {
        return Err(ConversationError::at("", "must be a list of {\"role\", \"content\"} messages"));
    };
    let mut messages = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let Value::Object(fields) = item else {
            return Err(ConversationError::at(format!("[{i}]"), "must be an object {\"role\", \"content\"}"));
        };
        if let Some(other) = fields.keys().find(|k| !matches!(k.as_str(), "role" | "content")) {
            return Err(ConversationError::at(format!("[{i}].{other}"), "is not a message field"));
        }
        let role = match fields.get("role") {
            Some(Value::String(name)) => Role::parse(name).ok_or_else(|| {
                ConversationError::at(
                    format!("[{i}].role"),
                    format!("{name:?} is not system, user or assistant"),
                )
            })?,
            Some(_) => return Err(ConversationError::at(format!("[{i}].role"), "must be a string")),
            None => return Err(ConversationError::at(format!("[{i}].role"), "is missing")),
        };
        let content = match fields.get("content") {
            Some(Value::String(content)) => content.clone(),
            Some(_) => return Err(ConversationError::at(format!("[{i}].content"), "must be a string")),
            None => return Err(ConversationError::at(format!("[{i}].content"), "is missing")),
        };
        messages.push(Message { role, content });
    }
    Ok(messages)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_multi_turn_conversation_renders_with_the_plain_template() {
        let conversation = Conversation::parse(vec![
            Message::new(Role::System, "Be brief."),
            Message::new(Role::User, "Hi"),
            Message::new(Role::Assistant, "Hello!"),
            Message::new(Role::User, "Bye"),
        ])
        .unwrap();
        assert_eq!(
            conversation.render(),
            "System: Be brief.\n\nUser: Hi\n\nAssistant: Hello!\n\nUser: Bye\n\nAssistant: "
        );
    }

    #[test]
    fn the_assistant_turns_are_located_in_the_rendered_text() {
        let conversation = Conversation::parse(vec![
            Message::new(Role::System, "Be brief."),
            Message::new(Role::User, "Hi"),
            Message::new(Role::Assistant, "Hello!"),
            Message::new(Role::User, "Bye"),
            Message::new(Role::Assistant, "Bye now."),
            Message::new(Role::User, "Again"),
        ])
        .unwrap();
        let (text, turns) = conversation.render_with_turns();
        assert_eq!(text, conversation.render());
        let located: Vec<(&str, &str)> =
            turns.iter().map(|t| (&text[t.header.clone()], &text[t.content.clone()])).collect();
        assert_eq!(located, [("Assistant: ", "Hello!"), ("Assistant: ", "Bye now.")]);
        assert_eq!(turns[0].header.start, "System: Be brief.\n\nUser: Hi\n\n".len());
    }

    #[test]
    fn a_conversation_that_ends_with_the_assistant_is_not_a_prompt() {
        let e =
            Conversation::parse(vec![Message::new(Role::User, "Hi"), Message::new(Role::Assistant, "Yo")])
                .unwrap_err();
        assert_eq!(e.field, "[1].role");
    }

    #[test]
    fn a_system_message_after_the_first_is_refused() {
        let e = Conversation::parse(vec![Message::new(Role::User, "Hi"), Message::new(Role::System, "x")])
            .unwrap_err();
        assert_eq!(
            (e.field.as_str(), e.reason.as_str()),
            ("[1].role", "a system message may only come first")
        );
    }

    #[test]
    fn json_messages_name_the_field_at_fault() {
        let bad = serde_json::json!([{"role": "user", "content": "a"}, {"role": "bot", "content": "b"}]);
        assert_eq!(Conversation::from_json(&bad).unwrap_err().field, "[1].role");
        let extra = serde_json::json!([{"role": "user", "content": "a", "name": "x"}]);
        assert_eq!(Conversation::from_json(&extra).unwrap_err().field, "[0].name");
        let ok = serde_json::json!([{"role": "user", "content": "a"}]);
        assert_eq!(Conversation::from_json(&ok).unwrap().to_json(), ok);
    }
}

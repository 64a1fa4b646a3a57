//! Domain values that can only be built valid.
//!
//! Each type has a `parse` that rejects what the database would reject (and a little
//! more: Postgres cannot store a NUL byte, and other control characters in a prompt are
//! almost always an upload gone wrong), so code past the edge never checks again.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{LabelingError, Result};

/// What a user may do. Maps to the Postgres enum `user_role`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type)]
#[sqlx(type_name = "user_role", rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Researcher,
    Annotator,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Admin, Role::Researcher, Role::Annotator];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Researcher => "researcher",
            Role::Annotator => "annotator",
        }
    }

    pub fn parse(s: &str) -> Result<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s.trim()).ok_or_else(|| {
            LabelingError::invalid("role", format!("{s:?} is not admin, researcher or annotator"))
        })
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = LabelingError;
    fn from_str(s: &str) -> Result<Role> {
        Role::parse(s)
    }
}

/// Which part of a dataset a prompt belongs to. Maps to the Postgres enum `split`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, sqlx::Type)]
#[sqlx(type_name = "split", rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum Split {
    #[default]
    Train,
    Val,
    Test,
}

impl Split {
    pub const ALL: [Split; 3] = [Split::Train, Split::Val, Split::Test];

    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
        }
    }

    pub fn parse(s: &str) -> Result<Split> {
        Split::ALL
            .into_iter()
            .find(|x| x.as_str() == s.trim())
            .ok_or_else(|| LabelingError::invalid("split", format!("{s:?} is not train, val or test")))
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Split {
    type Err = LabelingError;
    fn from_str(s: &str) -> Result<Split> {
        Split::parse(s)
    }
}

/// Checks shared by the free-text types; `max` counts characters, as Postgres'
/// `length()` does.
fn check_text(field: &str, s: &str, max: usize, allow_blank: bool) -> Result<()> {
    if !allow_blank && s.trim().is_empty() {
        return Err(LabelingError::invalid(field, "must not be empty"));
    }
    let chars = s.chars().count();
    if chars > max {
        return Err(LabelingError::invalid(
            field,
            format!("is {chars} characters long, at most {max} allowed"),
        ));
    }
    if let Some(at) = s.find('\0') {
        return Err(LabelingError::invalid(field, format!("contains a NUL byte at byte {at}")));
    }
    if let Some((at, c)) = s.char_indices().find(|&(_, c)| c.is_control() && !matches!(c, '\n' | '\t' | '\r'))
    {
        return Err(LabelingError::invalid(
            field,
            format!("contains the control character U+{:04X} at byte {at}", c as u32),
        ));
    }
    Ok(())
}

macro_rules! text_type {
    ($(#[$attr:meta])* $name:ident, $field:literal, $max:expr, allow_blank = $blank:expr) => {
        $(#[$attr])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// The most characters allowed.
            pub const MAX_CHARS: usize = $max;

            pub fn parse(s: impl Into<String>) -> Result<$name> {
                let s = s.into();
                check_text($field, &s, $max, $blank)?;
                Ok($name(s))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_inner(self) -> String {
                self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl TryFrom<String> for $name {
            type Error = LabelingError;
            fn try_from(s: String) -> Result<$name> {
                $name::parse(s)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<$name, D::Error> {
                $name::parse(String::deserialize(d)?).map_err(serde::de::Error::custom)
            }
        }
    };
}

text_type!(
    /// The text of a prompt: not blank, at most 20 000 characters, no NUL and no control
    /// characters but newline, tab and carriage return.
    PromptText, "prompt", 20_000, allow_blank = false
);
text_type!(
    /// A response written by a person (a demonstration): the same rules as a prompt.
    ResponseText, "response", 20_000, allow_blank = false
);
text_type!(
    /// A free comment on a ranking or a vote: may be empty, at most 5 000 characters.
    #[derive(Default)]
    Comment, "comment", 5_000, allow_blank = true
);
text_type!(
    /// A project's labeling guidelines, in Markdown: may be empty, at most 200 000 characters.
    #[derive(Default)]
    Guidelines, "guidelines", 200_000, allow_blank = true
);
text_type!(
    /// A user's display name: may be empty, at most 200 characters.
    #[derive(Default)]
    DisplayName, "display name", 200, allow_blank = true
);
text_type!(
    /// What an API token is for ("simulated annotator"): 1 to 200 characters.
    TokenName, "token name", 200, allow_blank = false
);
text_type!(
    /// Where prompts came from ("upload", "annotator", a file name): 1 to 200 characters.
    PromptSource, "source", 200, allow_blank = false
);

/// A project's name: not blank, at most 200 characters, no surrounding spaces, no control
/// characters (it is shown in lists and titles).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct ProjectName(String);

impl ProjectName {
    pub const MAX_CHARS: usize = 200;

    pub fn parse(s: impl Into<String>) -> Result<ProjectName> {
        let s = s.into();
        check_text("project name", &s, Self::MAX_CHARS, false)?;
        if s.trim() != s {
            return Err(LabelingError::invalid("project name", "must not start or end with whitespace"));
        }
        if s.contains(['\n', '\t', '\r']) {
            return Err(LabelingError::invalid("project name", "must be one line"));
        }
        Ok(ProjectName(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ProjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ProjectName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<ProjectName, D::Error> {
        ProjectName::parse(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// A login name: the schema's `^[a-z0-9][a-z0-9_.-]{0,63}$`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Username(String);

impl Username {
    pub fn parse(s: impl Into<String>) -> Result<Username> {
        let s = s.into();
        let mut chars = s.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        if !first_ok {
            return Err(LabelingError::invalid("username", "must start with a lowercase letter or a digit"));
        }
        if s.len() > 64 {
            return Err(LabelingError::invalid("username", "must be at most 64 characters"));
        }
        if let Some(c) =
            s.chars().find(|&c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || "_.-".contains(c)))
        {
            return Err(LabelingError::invalid(
                "username",
                format!("may only contain a-z, 0-9, '_', '.' and '-', not {c:?}"),
            ));
        }
        Ok(Username(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Username {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Username, D::Error> {
        Username::parse(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// A password in clear, from a login form or a command line: 8 to 1024 characters.
/// Its `Debug` never prints it; read it only with [`Password::expose_secret`].
#[derive(Clone)]
pub struct Password(String);

impl Password {
    pub const MIN_CHARS: usize = 8;
    /// Long enough for any passphrase, short enough that hashing cannot be used to burn CPU.
    pub const MAX_CHARS: usize = 1024;

    pub fn parse(s: impl Into<String>) -> Result<Password> {
        let s = s.into();
        let n = s.chars().count();
        if n < Self::MIN_CHARS {
            return Err(LabelingError::invalid(
                "password",
                format!("must be at least {} characters", Self::MIN_CHARS),
            ));
        }
        if n > Self::MAX_CHARS {
            return Err(LabelingError::invalid(
                "password",
                format!("must be at most {} characters", Self::MAX_CHARS),
            ));
        }
        Ok(Password(s))
    }

    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// A project count with a fixed range: built only through `parse`, which names the field
/// when the number is out of range; deserialized through `parse` too.
macro_rules! bounded_count {
    ($(#[$doc:meta])* $name:ident, $field:literal, $min:literal..=$max:literal, default $default:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(i32);

        impl $name {
            pub const MIN: i32 = $min;
            pub const MAX: i32 = $max;

            pub fn parse(n: i64) -> Result<$name> {
                if (Self::MIN as i64..=Self::MAX as i64).contains(&n) {
                    Ok($name(n as i32))
                } else {
                    Err(LabelingError::invalid(
                        $field,
                        format!("{n} is not between {} and {}", Self::MIN, Self::MAX),
                    ))
                }
            }

            pub fn get(self) -> i32 {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> $name {
                $name($default)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<$name, D::Error> {
                $name::parse(i64::deserialize(d)?).map_err(serde::de::Error::custom)
            }
        }
    };
}

bounded_count!(
    /// How many distinct annotators see each task: 1 to 20.
    Overlap, "overlap", 1..=20, default 1
);
bounded_count!(
    /// How many samples a ranking task shows (K): 2 to 9.
    SamplesPerTask, "samples per task", 2..=9, default 4
);

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(err: LabelingError) -> String {
        match err {
            LabelingError::Invalid { field, .. } => field,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn an_empty_prompt_is_rejected() {
        assert_eq!(field_of(PromptText::parse("").unwrap_err()), "prompt");
    }

    #[test]
    fn a_prompt_of_only_whitespace_is_rejected() {
        assert!(PromptText::parse(" \n\t ").is_err());
    }

    #[test]
    fn a_prompt_of_twenty_thousand_characters_is_accepted() {
        assert!(PromptText::parse("é".repeat(20_000)).is_ok());
    }

    #[test]
    fn a_prompt_over_twenty_thousand_characters_is_rejected() {
        assert!(PromptText::parse("a".repeat(20_001)).is_err());
    }

    #[test]
    fn a_prompt_with_a_nul_byte_is_rejected() {
        let err = PromptText::parse("say\0hi").unwrap_err();
        assert!(err.to_string().contains("NUL"), "{err}");
    }

    #[test]
    fn a_prompt_with_a_bell_character_is_rejected() {
        assert!(PromptText::parse("ring \u{7} the bell").is_err());
    }

    #[test]
    fn a_prompt_with_newlines_tabs_and_carriage_returns_is_accepted() {
        let p = PromptText::parse("line one\r\n\tline two\n").unwrap();
        assert_eq!(p.as_str(), "line one\r\n\tline two\n");
    }

    #[test]
    fn an_empty_response_is_rejected() {
        assert_eq!(field_of(ResponseText::parse("   ").unwrap_err()), "response");
    }

    #[test]
    fn a_response_with_a_nul_byte_is_rejected() {
        assert!(ResponseText::parse("a\0").is_err());
    }

    #[test]
    fn an_empty_comment_is_accepted() {
        assert_eq!(Comment::parse("").unwrap().as_str(), "");
    }

    #[test]
    fn a_comment_over_five_thousand_characters_is_rejected() {
        assert!(Comment::parse("x".repeat(5_000)).is_ok());
        assert!(Comment::parse("x".repeat(5_001)).is_err());
    }

    #[test]
    fn guidelines_may_be_empty_but_not_longer_than_two_hundred_thousand_characters() {
        assert!(Guidelines::parse("").is_ok());
        assert!(Guidelines::parse("# Be kind\n\n- rank honestly").is_ok());
        assert!(Guidelines::parse("x".repeat(200_001)).is_err());
    }

    #[test]
    fn a_project_name_with_surrounding_spaces_is_rejected() {
        assert!(ProjectName::parse(" summaries").is_err());
        assert!(ProjectName::parse("summaries").is_ok());
    }

    #[test]
    fn an_empty_or_two_line_project_name_is_rejected() {
        assert!(ProjectName::parse("").is_err());
        assert!(ProjectName::parse("a\nb").is_err());
        assert!(ProjectName::parse("x".repeat(201)).is_err());
    }

    #[test]
    fn a_username_follows_the_schema_pattern() {
        assert!(Username::parse("alice").is_ok());
        assert!(Username::parse("0day_bob.x-y").is_ok());
        assert!(Username::parse("a".repeat(64)).is_ok());
    }

    #[test]
    fn a_username_with_uppercase_letters_or_spaces_is_rejected() {
        assert!(Username::parse("Alice").is_err());
        assert!(Username::parse("al ice").is_err());
        assert!(Username::parse("").is_err());
        assert!(Username::parse("_alice").is_err());
        assert!(Username::parse("a".repeat(65)).is_err());
        assert!(Username::parse("alicé").is_err());
    }

    #[test]
    fn a_short_password_is_rejected() {
        assert!(Password::parse("1234567").is_err());
        assert!(Password::parse("12345678").is_ok());
        assert!(Password::parse("x".repeat(1025)).is_err());
    }

    #[test]
    fn a_password_never_shows_in_debug_output() {
        let p = Password::parse("hunter2hunter2").unwrap();
        assert!(!format!("{p:?}").contains("hunter2"));
        assert_eq!(p.expose_secret(), "hunter2hunter2");
    }

    #[test]
    fn overlap_is_between_one_and_twenty() {
        assert!(Overlap::parse(0).is_err());
        assert_eq!(Overlap::parse(1).unwrap().get(), 1);
        assert_eq!(Overlap::parse(20).unwrap().get(), 20);
        assert!(Overlap::parse(21).is_err());
    }

    #[test]
    fn samples_per_task_is_between_two_and_nine() {
        assert!(SamplesPerTask::parse(1).is_err());
        assert_eq!(SamplesPerTask::parse(2).unwrap().get(), 2);
        assert_eq!(SamplesPerTask::parse(9).unwrap().get(), 9);
        assert!(SamplesPerTask::parse(10).is_err());
    }

    #[test]
    fn roles_and_splits_parse_from_their_lowercase_names() {
        assert_eq!(Role::parse("researcher").unwrap(), Role::Researcher);
        assert!(Role::parse("boss").is_err());
        assert_eq!("val".parse::<Split>().unwrap(), Split::Val);
        assert!(Split::parse("dev").is_err());
        assert_eq!(Split::default(), Split::Train);
    }

    #[test]
    fn a_prompt_deserialized_from_json_is_validated() {
        assert!(serde_json::from_str::<PromptText>("\"\"").is_err());
        assert_eq!(serde_json::from_str::<PromptText>("\"hi\"").unwrap().as_str(), "hi");
    }
}

//! The model: the GPT and its shape, tokenizers, checkpoints, sampling and devices.

/// The words of a choice enum, each naming one variant: `FromStr` (by [`parse_choice`],
/// so another word is refused with `what` and the words it takes) and `Display`.
macro_rules! choice_words {
    ($ty:ty, $what:literal, { $($word:literal => $variant:ident),* $(,)? }) => {
        impl std::str::FromStr for $ty {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                super::parse_choice($what, s, &[$(($word, Self::$variant)),*])
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(match self {
                    $(Self::$variant => $word,)*
                })
            }
        }
    };
}

pub mod checkpoint;
pub mod config;
pub mod device;
pub mod fused;
pub mod gpt;
pub mod memory;
pub mod sampling;
pub mod tokenizer;

/// One of a command-line word's `choices` (`--tokenizer bytes`), or an error that names
/// `what` was asked for and lists the words it takes.
pub(crate) fn parse_choice<T: Copy>(what: &str, s: &str, choices: &[(&str, T)]) -> Result<T, String> {
    if let Some(&(_, value)) = choices.iter().find(|(word, _)| *word == s) {
        return Ok(value);
    }
    let words: Vec<&str> = choices.iter().map(|(word, _)| *word).collect();
    let expected = match words.split_last() {
        Some((last, [])) => last.to_string(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    };
    Err(format!("unknown {what} `{s}` (expected {expected})"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_unknown_choice_is_refused_with_the_words_it_takes() {
        assert_eq!(
            "x".parse::<super::tokenizer::TokenizerKind>().unwrap_err(),
            "unknown tokenizer `x` (expected gpt2 or bytes)"
        );
    }
}

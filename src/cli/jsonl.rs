//! JSON lines in and out.

use std::io::{BufRead, Write};

use anyhow::{bail, Context, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Parses every line of `input` before anything is processed, so a bad line stops the
/// command before it has written half its output. Blank lines are skipped.
pub fn read_all<T: DeserializeOwned>(input: impl BufRead, source: &str) -> Result<Vec<T>> {
    let mut records = Vec::new();
    for (index, line) in input.lines().enumerate() {
        let number = index + 1;
        let line = line.with_context(|| format!("{source} line {number}: not valid UTF-8 text"))?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(&line) {
            Ok(record) => records.push(record),
            Err(e) => bail!("{source} line {number}: {}", describe(&e)),
        }
    }
    Ok(records)
}

/// serde's message without its " at line 1 column N" suffix, which is about the line
/// alone and confuses next to a line number.
fn describe(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(at) => format!("{} (column {})", &text[..at], e.column()),
        None => text,
    }
}

pub fn write_line<T: Serialize>(out: &mut impl Write, record: &T) -> Result<()> {
    serde_json::to_writer(&mut *out, record)?;
    out.write_all(b"\n")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Text {
        text: String,
    }

    #[test]
    fn a_missing_field_is_named_with_its_line() {
        let input = "{\"text\": \"a\"}\n\n{\"txt\": \"b\"}\n";
        let err = read_all::<Text>(input.as_bytes(), "stdin").unwrap_err().to_string();
        assert_eq!(err, "stdin line 3: missing field `text` (column 12)");
    }

    #[test]
    fn malformed_json_is_named_with_its_line() {
        let err = read_all::<Text>("{\"text\": \"a\"\n".as_bytes(), "stdin").unwrap_err().to_string();
        assert!(err.starts_with("stdin line 1: EOF while parsing"), "{err}");
    }
}

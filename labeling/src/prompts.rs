//! Prompts: added one at a time, or imported from JSON lines or CSV with a per-line report.
//!
//! An import parses every line first (nothing is written for a file that is refused as a
//! whole), then stores the good lines with one multi-row INSERT in one transaction.
//! `ON CONFLICT DO NOTHING` on the per-project text hash makes a concurrent import of the
//! same prompts a duplicate to report, never a failed transaction.
//!
//! A prompt is stored exactly as given: surrounding whitespace such as a trailing newline
//! is part of what a model is prompted with. But `"  hello \n"` is a duplicate of
//! `"hello"`, in a file and against the project alike: the duplicate key is the text
//! without surrounding whitespace ([`prompt_key`]), and the database's unique key (the
//! `prompt_key` SQL function, which also settles concurrent imports) is the same rule.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;

use crate::domain::{PromptSource, PromptText, Split};
use crate::error::{foreign_key_violation, row_by, LabelingError, Result};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Prompt {
    pub id: i64,
    pub project_id: i64,
    pub text: String,
    pub source: String,
    pub split: Split,
    pub created_by: Option<i64>,
    pub created_at: DateTime<Utc>,
}

/// What it takes to add one prompt.
#[derive(Debug, Clone)]
pub struct NewPrompt {
    pub project_id: i64,
    pub text: PromptText,
    pub split: Split,
    pub source: PromptSource,
    pub created_by: Option<i64>,
}

/// How large an upload may be; a larger one is refused as a whole before anything is
/// parsed or written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportLimits {
    pub max_bytes: usize,
    /// Prompts (non-blank lines of JSON lines, records of CSV), not counting a CSV header.
    pub max_lines: usize,
}

impl Default for ImportLimits {
    fn default() -> ImportLimits {
        ImportLimits { max_bytes: 64 * 1024 * 1024, max_lines: 100_000 }
    }
}

/// What an import did, line by line (lines count from 1; a CSV record is named by the
/// line it starts on). Each list is in line order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ImportReport {
    pub imported: Vec<ImportedLine>,
    pub duplicates: Vec<LineDuplicate>,
    pub errors: Vec<LineError>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ImportedLine {
    pub line: usize,
    pub prompt_id: i64,
}

/// A line whose prompt was not imported because it is already there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LineDuplicate {
    pub line: usize,
    pub of: DuplicateOf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DuplicateOf {
    /// The same prompt on an earlier line of this file (which was imported, or is itself
    /// a duplicate of an existing prompt).
    EarlierLine(usize),
    /// A prompt already in the project.
    ExistingPrompt(i64),
}

/// A line that was rejected, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LineError {
    pub line: usize,
    /// `prompt`, `split`, or `line` when the line as a whole is unreadable.
    pub field: String,
    pub message: String,
}

const PROMPT_COLUMNS: &str = "id, project_id, text, source, split, created_by, created_at";

/// What two prompts that are the same prompt share: the text without surrounding ASCII
/// whitespace (the characters the database's `prompt_key` trims).
pub fn prompt_key(text: &str) -> &str {
    text.trim_matches([' ', '\t', '\n', '\r', '\x0c', '\x0b'])
}

/// Adds one prompt, as given. A prompt already in the project (whatever its surrounding
/// whitespace) is a `Conflict` naming its id.
pub async fn add_prompt(pool: &PgPool, new: &NewPrompt) -> Result<Prompt> {
    let text = &new.text;
    let sql = format!(
        "INSERT INTO prompts (project_id, text, split, source, created_by) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (project_id, text_key) DO NOTHING
         RETURNING {PROMPT_COLUMNS}"
    );
    let inserted = sqlx::query_as::<_, Prompt>(&sql)
        .bind(new.project_id)
        .bind(text.as_str())
        .bind(new.split)
        .bind(new.source.as_str())
        .bind(new.created_by)
        .fetch_optional(pool)
        .await
        .map_err(|e| missing_reference(e, new.project_id, new.created_by))?;
    if let Some(prompt) = inserted {
        return Ok(prompt);
    }
    let existing: Option<i64> =
        sqlx::query_scalar("SELECT id FROM prompts WHERE project_id = $1 AND text_key = prompt_key($2)")
            .bind(new.project_id)
            .bind(text.as_str())
            .fetch_optional(pool)
            .await?;
    Err(LabelingError::Conflict(match existing {
        Some(id) => format!("the project already has this prompt (#{id})"),
        None => "the project already has this prompt".to_owned(),
    }))
}

/// The texts of the prompts with these ids (those that exist), by id.
pub async fn texts(pool: &PgPool, ids: &[i64]) -> Result<std::collections::HashMap<i64, String>> {
    let rows: Vec<(i64, String)> =
        sqlx::query_as("SELECT id, text FROM prompts WHERE id = ANY($1)").bind(ids).fetch_all(pool).await?;
    Ok(rows.into_iter().collect())
}

pub async fn get_prompt(pool: &PgPool, prompt_id: i64) -> Result<Prompt> {
    row_by(pool, &format!("SELECT {PROMPT_COLUMNS} FROM prompts WHERE id = $1"), "prompt", prompt_id).await
}

/// A file of prompts, by its format.
#[derive(Clone, Copy, Debug)]
pub enum PromptFile<'a> {
    /// JSON lines: one object per line, `{"prompt": "...", "split": "val"}`, with `"text"`
    /// accepted for `"prompt"` and the split optional (train). Blank lines are skipped;
    /// other fields are ignored.
    Jsonl(&'a [u8]),
    /// CSV with a header row naming a `prompt` (or `text`) column and, optionally, a
    /// `split` column; fields may be quoted and hold commas and newlines.
    Csv(&'a [u8]),
}

/// Imports a file of prompts into the project: every good line is stored (a duplicate of
/// a stored prompt is reported, not stored again), every bad one reported by line.
pub async fn import(
    pool: &PgPool,
    project_id: i64,
    file: PromptFile<'_>,
    source: &PromptSource,
    created_by: Option<i64>,
    limits: &ImportLimits,
) -> Result<ImportReport> {
    let parsed = match file {
        PromptFile::Jsonl(bytes) => parse_jsonl(bytes, limits)?,
        PromptFile::Csv(bytes) => parse_csv(bytes, limits)?,
    };
    store(pool, project_id, parsed, source, created_by).await
}

/// A project's prompts in id order, optionally only those containing `search` (case
/// insensitive, taken literally: `%` and `_` are not wildcards) or of one split. `limit`
/// is capped at 1000.
pub async fn list_prompts(
    pool: &PgPool,
    project_id: i64,
    search: Option<&str>,
    split: Option<Split>,
    limit: i64,
    offset: i64,
) -> Result<Vec<Prompt>> {
    let listed = list_prompts_by(pool, project_id, search, split, PromptOrder::Oldest, limit, offset).await?;
    Ok(listed.into_iter().map(|l| l.prompt).collect())
}

/// How a list of prompts is sorted. Ties (same text, same counts) fall back to id order,
/// so that paging never shows a prompt twice or skips one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PromptOrder {
    /// First added first (id order).
    #[default]
    Oldest,
    Newest,
    /// By text, A to Z (the database's collation).
    Text,
    /// Most tasks (of any kind) first.
    MostTasks,
    /// Most demonstrations first.
    MostDemonstrations,
}

impl PromptOrder {
    pub const ALL: [PromptOrder; 5] = [
        PromptOrder::Oldest,
        PromptOrder::Newest,
        PromptOrder::Text,
        PromptOrder::MostTasks,
        PromptOrder::MostDemonstrations,
    ];

    /// The order's name in URLs: `oldest`, `newest`, `text`, `tasks` or `demonstrations`;
    /// any other is an invalid `sort`.
    pub fn parse(name: &str) -> Result<PromptOrder> {
        PromptOrder::ALL.into_iter().find(|o| o.as_str() == name.trim()).ok_or_else(|| {
            LabelingError::invalid(
                "sort",
                format!("{name:?} is not oldest, newest, text, tasks or demonstrations"),
            )
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PromptOrder::Oldest => "oldest",
            PromptOrder::Newest => "newest",
            PromptOrder::Text => "text",
            PromptOrder::MostTasks => "tasks",
            PromptOrder::MostDemonstrations => "demonstrations",
        }
    }

    fn sql(self) -> &'static str {
        match self {
            PromptOrder::Oldest => "p.id",
            PromptOrder::Newest => "p.id DESC",
            PromptOrder::Text => "p.text, p.id",
            PromptOrder::MostTasks => "tasks DESC, p.id",
            PromptOrder::MostDemonstrations => "demonstrations DESC, p.id",
        }
    }
}

/// A prompt in a list, with how much work it has drawn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct ListedPrompt {
    #[sqlx(flatten)]
    #[serde(flatten)]
    pub prompt: Prompt,
    /// Tasks of any kind on the prompt.
    pub tasks: i64,
    pub demonstrations: i64,
}

/// [`list_prompts`] in `order`, with each prompt's task and demonstration counts.
pub async fn list_prompts_by(
    pool: &PgPool,
    project_id: i64,
    search: Option<&str>,
    split: Option<Split>,
    order: PromptOrder,
    limit: i64,
    offset: i64,
) -> Result<Vec<ListedPrompt>> {
    // The counts are aggregated over the project once (not per row), which an ORDER BY on
    // them needs anyway; both tables are indexed by project or by prompt.
    let sql = format!(
        "SELECT p.id, p.project_id, p.text, p.source, p.split, p.created_by, p.created_at,
             coalesce(t.n, 0) AS tasks, coalesce(d.n, 0) AS demonstrations
         FROM prompts p
         LEFT JOIN (SELECT prompt_id, count(*) AS n FROM tasks WHERE project_id = $1 GROUP BY prompt_id) t
             ON t.prompt_id = p.id
         LEFT JOIN (SELECT d.prompt_id, count(*) AS n FROM demonstrations d
                    JOIN prompts q ON q.id = d.prompt_id WHERE q.project_id = $1 GROUP BY d.prompt_id) d
             ON d.prompt_id = p.id
         WHERE {FILTER} ORDER BY {} LIMIT $4 OFFSET $5",
        order.sql()
    );
    Ok(sqlx::query_as::<_, ListedPrompt>(&sql)
        .bind(project_id)
        .bind(search.filter(|s| !s.is_empty()).map(like_pattern))
        .bind(split)
        .bind(limit.clamp(0, 1000))
        .bind(offset.max(0))
        .fetch_all(pool)
        .await?)
}

/// How many prompts [`list_prompts`] would list without a limit.
pub async fn count_prompts(
    pool: &PgPool,
    project_id: i64,
    search: Option<&str>,
    split: Option<Split>,
) -> Result<i64> {
    let sql = format!("SELECT count(*) FROM prompts p WHERE {FILTER}");
    Ok(sqlx::query_scalar(&sql)
        .bind(project_id)
        .bind(search.filter(|s| !s.is_empty()).map(like_pattern))
        .bind(split)
        .fetch_one(pool)
        .await?)
}

const FILTER: &str = "p.project_id = $1
    AND ($2::text IS NULL OR p.text ILIKE $2 ESCAPE '\\')
    AND ($3::split IS NULL OR p.split = $3)";

/// `%search%` with the LIKE wildcards and the escape character in `search` escaped.
fn like_pattern(search: &str) -> String {
    let mut pattern = String::with_capacity(search.len() + 2);
    pattern.push('%');
    for c in search.chars() {
        if matches!(c, '\\' | '%' | '_') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// A line that passed every check, waiting to be stored.
#[derive(Debug)]
struct Candidate {
    line: usize,
    text: PromptText,
    split: Split,
}

/// An upload parsed, and deduplicated within itself.
#[derive(Debug, Default)]
struct Parsed {
    candidates: Vec<Candidate>,
    duplicates: Vec<LineDuplicate>,
    errors: Vec<LineError>,
}

impl Parsed {
    /// Adds one line's outcome; a prompt seen on an earlier line becomes a duplicate.
    fn push(
        &mut self,
        line: usize,
        row: std::result::Result<(PromptText, Split), LineError>,
        seen: &mut HashMap<String, usize>,
    ) {
        match row {
            Err(e) => self.errors.push(e),
            Ok((text, split)) => {
                if let Some(&first) = seen.get(prompt_key(text.as_str())) {
                    self.duplicates.push(LineDuplicate { line, of: DuplicateOf::EarlierLine(first) });
                } else {
                    seen.insert(prompt_key(text.as_str()).to_owned(), line);
                    self.candidates.push(Candidate { line, text, split });
                }
            }
        }
    }
}

pub(crate) fn line_error(line: usize, field: &str, message: impl Into<String>) -> LineError {
    LineError { line, field: field.to_owned(), message: message.into() }
}

/// A `parse` rejection as a line error on the field it names.
pub(crate) fn invalid_on(line: usize, err: LabelingError) -> LineError {
    match err {
        LabelingError::Invalid { field, reason } => LineError { line, field, message: reason },
        other => line_error(line, "line", other.to_string()),
    }
}

fn check_size(bytes: &[u8], limits: &ImportLimits) -> Result<()> {
    if bytes.len() > limits.max_bytes {
        return Err(LabelingError::UploadRefused(format!(
            "the file is {} bytes, more than the limit of {} bytes",
            bytes.len(),
            limits.max_bytes
        )));
    }
    Ok(())
}

fn too_many_lines(limits: &ImportLimits) -> LabelingError {
    LabelingError::UploadRefused(format!("the file has more than {} prompts", limits.max_lines))
}

fn strip_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes)
}

/// The non-blank lines of a JSON-lines upload with their 1-based numbers (a byte-order
/// mark and CRLF line ends allowed), after checking the upload's size and line count.
pub(crate) fn jsonl_lines<'a>(bytes: &'a [u8], limits: &ImportLimits) -> Result<Vec<(usize, &'a [u8])>> {
    check_size(bytes, limits)?;
    let lines: Vec<(usize, &[u8])> = strip_bom(bytes)
        .split(|&b| b == b'\n')
        .enumerate()
        .map(|(i, raw)| (i + 1, raw.strip_suffix(b"\r").unwrap_or(raw)))
        .filter(|(_, raw)| !raw.iter().all(u8::is_ascii_whitespace))
        .collect();
    if lines.len() > limits.max_lines {
        return Err(too_many_lines(limits));
    }
    Ok(lines)
}

fn parse_jsonl(bytes: &[u8], limits: &ImportLimits) -> Result<Parsed> {
    let lines = jsonl_lines(bytes, limits)?;
    let mut parsed = Parsed::default();
    let mut seen = HashMap::new();
    for (line, raw) in lines {
        parsed.push(line, parse_json_line(line, raw), &mut seen);
    }
    Ok(parsed)
}

/// One line of a JSON-lines upload as a JSON object; `expected` says what it must hold.
pub(crate) fn json_object_line(
    line: usize,
    raw: &[u8],
    expected: &str,
) -> std::result::Result<serde_json::Map<String, serde_json::Value>, LineError> {
    let text = std::str::from_utf8(raw).map_err(|e| {
        line_error(line, "line", format!("is not valid UTF-8 (at byte {} of the line)", e.valid_up_to() + 1))
    })?;
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        let message = e.to_string();
        let what = message.rsplit_once(" at line ").map_or(message.as_str(), |(what, _)| what);
        line_error(line, "line", format!("is not valid JSON: {what} at column {}", e.column()))
    })?;
    let serde_json::Value::Object(object) = value else {
        return Err(line_error(line, "line", format!("must be a JSON object with {expected}")));
    };
    Ok(object)
}

fn parse_json_line(line: usize, raw: &[u8]) -> std::result::Result<(PromptText, Split), LineError> {
    let object = json_object_line(line, raw, "a \"prompt\" field")?;
    let prompt = match (object.get("prompt"), object.get("text")) {
        (Some(_), Some(_)) => {
            return Err(line_error(line, "prompt", "give \"prompt\" or \"text\", not both"))
        }
        (Some(p), None) | (None, Some(p)) => p,
        (None, None) => return Err(line_error(line, "prompt", "is missing")),
    };
    let serde_json::Value::String(prompt) = prompt else {
        return Err(line_error(line, "prompt", "must be a string"));
    };
    let prompt = PromptText::parse(prompt).map_err(|e| invalid_on(line, e))?;
    let split = match object.get("split") {
        None | Some(serde_json::Value::Null) => Split::default(),
        Some(serde_json::Value::String(s)) => Split::parse(s).map_err(|e| invalid_on(line, e))?,
        Some(_) => return Err(line_error(line, "split", "must be a string: train, val or test")),
    };
    Ok((prompt, split))
}

fn parse_csv(bytes: &[u8], limits: &ImportLimits) -> Result<Parsed> {
    check_size(bytes, limits)?;
    let bytes = strip_bom(bytes);
    let mut reader = csv::ReaderBuilder::new().has_headers(true).flexible(true).from_reader(bytes);
    let header = reader
        .byte_headers()
        .map_err(|e| LabelingError::UploadRefused(format!("the CSV header cannot be read: {e}")))?
        .clone();
    let column =
        |name: &str| header.iter().position(|h| String::from_utf8_lossy(h).trim().eq_ignore_ascii_case(name));
    // A file without the column is reported like a bad line: the header's, line 1.
    let Some(prompt_at) = column("prompt").or_else(|| column("text")) else {
        let mut parsed = Parsed::default();
        parsed.errors.push(line_error(1, "prompt", "the CSV header row has no \"prompt\" column"));
        return Ok(parsed);
    };
    let split_at = column("split");

    let mut parsed = Parsed::default();
    let mut seen = HashMap::new();
    let mut record = csv::ByteRecord::new();
    let mut count = 0;
    let mut lines = LineCounter { bytes, at: 0, line: 1 };
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {
                count += 1;
                if count > limits.max_lines {
                    return Err(too_many_lines(limits));
                }
                let line = lines.line_of(record.position().map_or(0, |p| p.byte() as usize));
                parsed.push(line, parse_csv_record(line, &record, prompt_at, split_at), &mut seen);
            }
            Err(e) => {
                // Reading a byte slice with flexible rows leaves no error to recover from.
                let line = lines.line_of(e.position().map_or(0, |p| p.byte() as usize));
                parsed.errors.push(line_error(
                    line,
                    "line",
                    format!("cannot be read as CSV ({e}); the rest was not read"),
                ));
                break;
            }
        }
    }
    Ok(parsed)
}

/// Line numbers of CSV records from their byte offsets. The csv crate's own line numbers
/// are one short after a CRLF (the record starts at the `\n` of the previous line), and a
/// record may be preceded by skipped blank lines: a record's line is that of its first
/// byte that is not a line break. Offsets must come in increasing order.
struct LineCounter<'a> {
    bytes: &'a [u8],
    at: usize,
    line: usize,
}

impl LineCounter<'_> {
    fn line_of(&mut self, byte: usize) -> usize {
        let mut start = byte.min(self.bytes.len());
        while start < self.bytes.len() && matches!(self.bytes[start], b'\r' | b'\n') {
            start += 1;
        }
        if start > self.at {
            self.line += self.bytes[self.at..start].iter().filter(|&&b| b == b'\n').count();
            self.at = start;
        }
        self.line
    }
}

fn parse_csv_record(
    line: usize,
    record: &csv::ByteRecord,
    prompt_at: usize,
    split_at: Option<usize>,
) -> std::result::Result<(PromptText, Split), LineError> {
    let field = |at: usize, name: &str| -> std::result::Result<Option<&str>, LineError> {
        record
            .get(at)
            .map(|raw| {
                std::str::from_utf8(raw).map_err(|e| {
                    line_error(
                        line,
                        name,
                        format!("is not valid UTF-8 (at byte {} of the field)", e.valid_up_to() + 1),
                    )
                })
            })
            .transpose()
    };
    let prompt = field(prompt_at, "prompt")?.ok_or_else(|| {
        line_error(line, "prompt", format!("is missing: the row has {} fields", record.len()))
    })?;
    let prompt = PromptText::parse(prompt).map_err(|e| invalid_on(line, e))?;
    let split = match split_at.map(|at| field(at, "split")).transpose()?.flatten() {
        None => Split::default(),
        Some(s) if s.trim().is_empty() => Split::default(),
        Some(s) => Split::parse(s).map_err(|e| invalid_on(line, e))?,
    };
    Ok((prompt, split))
}

/// Stores the candidates in one transaction and reports what happened to each line.
async fn store(
    pool: &PgPool,
    project_id: i64,
    parsed: Parsed,
    source: &PromptSource,
    created_by: Option<i64>,
) -> Result<ImportReport> {
    let Parsed { candidates, mut duplicates, mut errors } = parsed;
    let project_exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM projects WHERE id = $1)")
        .bind(project_id)
        .fetch_one(pool)
        .await?;
    if !project_exists {
        return Err(LabelingError::not_found("project", project_id));
    }
    let mut report = ImportReport::default();
    if !candidates.is_empty() {
        let texts: Vec<&str> = candidates.iter().map(|c| c.text.as_str()).collect();
        let splits: Vec<Split> = candidates.iter().map(|c| c.split).collect();
        let lines: Vec<i64> = candidates.iter().map(|c| c.line as i64).collect();

        let mut tx = pool.begin().await?;
        let inserted: Vec<(i64, i64)> = sqlx::query_as(
            "WITH input AS (
                 SELECT * FROM UNNEST($2::text[], $3::split[], $4::bigint[]) AS u (text, split, line)
             ), inserted AS (
                 INSERT INTO prompts (project_id, text, split, source, created_by)
                 SELECT $1, text, split, $5, $6 FROM input ORDER BY line
                 ON CONFLICT (project_id, text_key) DO NOTHING
                 RETURNING id, text_key
             )
             SELECT input.line, inserted.id
             FROM input JOIN inserted ON inserted.text_key = prompt_key(input.text)",
        )
        .bind(project_id)
        .bind(&texts)
        .bind(&splits)
        .bind(&lines)
        .bind(source.as_str())
        .bind(created_by)
        .fetch_all(&mut *tx)
        .await
        .map_err(|e| missing_reference(e, project_id, created_by))?;

        let stored: HashMap<i64, i64> = inserted.into_iter().collect();
        // A new statement sees the rows that concurrent imports committed while our INSERT
        // waited on them, so every line that was not inserted finds its prompt here.
        let (rest_texts, rest_lines): (Vec<&str>, Vec<i64>) = texts
            .iter()
            .zip(&lines)
            .filter(|(_, line)| !stored.contains_key(line))
            .map(|(t, l)| (*t, *l))
            .unzip();
        let existing: HashMap<i64, i64> = if rest_lines.is_empty() {
            HashMap::new()
        } else {
            sqlx::query_as::<_, (i64, i64)>(
                "SELECT u.line, p.id FROM UNNEST($2::text[], $3::bigint[]) AS u (text, line)
                 JOIN prompts p ON p.project_id = $1 AND p.text_key = prompt_key(u.text)",
            )
            .bind(project_id)
            .bind(&rest_texts)
            .bind(&rest_lines)
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .collect()
        };
        tx.commit().await?;

        for candidate in &candidates {
            let line = candidate.line;
            if let Some(&prompt_id) = stored.get(&(line as i64)) {
                report.imported.push(ImportedLine { line, prompt_id });
            } else if let Some(&id) = existing.get(&(line as i64)) {
                duplicates.push(LineDuplicate { line, of: DuplicateOf::ExistingPrompt(id) });
            } else {
                errors.push(line_error(
                    line,
                    "prompt",
                    "was not stored: a concurrent change removed its duplicate",
                ));
            }
        }
    }
    duplicates.sort_by_key(|d| d.line);
    errors.sort_by_key(|e| e.line);
    report.duplicates = duplicates;
    report.errors = errors;
    Ok(report)
}

/// A foreign-key violation on a write that names a project and a creator, as `NotFound`.
fn missing_reference(err: sqlx::Error, project_id: i64, created_by: Option<i64>) -> LabelingError {
    match foreign_key_violation(&err) {
        Some("prompts_project_id_fkey") => LabelingError::not_found("project", project_id),
        Some("prompts_created_by_fkey") => LabelingError::not_found("user", created_by.unwrap_or_default()),
        _ => err.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The file parsed under the default limits (which it must keep).
    fn parse_ok(file: PromptFile) -> Parsed {
        match file {
            PromptFile::Jsonl(bytes) => parse_jsonl(bytes, &ImportLimits::default()),
            PromptFile::Csv(bytes) => parse_csv(bytes, &ImportLimits::default()),
        }
        .unwrap()
    }

    fn lines_of(parsed: &Parsed) -> Vec<usize> {
        parsed.candidates.iter().map(|c| c.line).collect()
    }

    fn error_on(parsed: &Parsed, line: usize) -> &LineError {
        parsed.errors.iter().find(|e| e.line == line).unwrap_or_else(|| panic!("no error on line {line}"))
    }

    #[test]
    fn json_lines_accept_prompt_or_text_and_default_to_train() {
        let parsed = parse_ok(PromptFile::Jsonl(b"{\"prompt\": \"a\"}\n{\"text\": \"b\", \"split\": \"val\"}\r\n\n{\"prompt\": \"c\", \"split\": null, \"id\": 7}\n"));
        assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
        assert_eq!(lines_of(&parsed), [1, 2, 4]);
        let splits: Vec<Split> = parsed.candidates.iter().map(|c| c.split).collect();
        assert_eq!(splits, [Split::Train, Split::Val, Split::Train]);
    }

    #[test]
    fn each_bad_json_line_is_reported_with_its_number_and_field() {
        let parsed = parse_ok(PromptFile::Jsonl(b"{\"prompt\": \"ok\"}\n{\"prompt\": \n\xff\xfe\n{\"prompt\": \"  \"}\n{\"prompt\": \"x\", \"split\": \"dev\"}\n[1]\n{\"prompt\": 3}\n{\"prompt\": \"a\\u0000b\"}\n{}\n"));
        assert_eq!(lines_of(&parsed), [1]);
        assert!(error_on(&parsed, 2).message.contains("not valid JSON"));
        assert!(error_on(&parsed, 3).message.contains("UTF-8"));
        assert_eq!(error_on(&parsed, 4).field, "prompt");
        assert_eq!(error_on(&parsed, 5).field, "split");
        assert_eq!(error_on(&parsed, 6).field, "line");
        assert_eq!(error_on(&parsed, 7).field, "prompt");
        assert!(error_on(&parsed, 8).message.contains("NUL"));
        assert!(error_on(&parsed, 9).message.contains("missing"));
    }

    #[test]
    fn a_prompt_repeated_in_the_file_is_a_duplicate_of_its_first_line() {
        let parsed =
            parse_ok(PromptFile::Jsonl(b"{\"prompt\": \"a\"}\n{\"prompt\": \"b\"}\n{\"text\": \"a\"}\n"));
        assert_eq!(lines_of(&parsed), [1, 2]);
        assert_eq!(parsed.duplicates, [LineDuplicate { line: 3, of: DuplicateOf::EarlierLine(1) }]);
    }

    #[test]
    fn a_prompt_differing_only_in_surrounding_whitespace_is_a_duplicate() {
        let parsed = parse_ok(PromptFile::Jsonl(
            b"{\"prompt\": \"hello\"}\n{\"prompt\": \"  hello \\n\"}\n{\"prompt\": \" \\t \"}\n",
        ));
        assert_eq!(lines_of(&parsed), [1]);
        assert_eq!(parsed.duplicates, [LineDuplicate { line: 2, of: DuplicateOf::EarlierLine(1) }]);
        assert_eq!(error_on(&parsed, 3).field, "prompt", "whitespace alone is still blank");
        assert_eq!(parsed.candidates[0].text.as_str(), "hello");
        let csv = parse_ok(PromptFile::Csv(b"prompt\n\"  two words\n\"\n"));
        assert_eq!(csv.candidates[0].text.as_str(), "  two words\n", "stored as given");
    }

    #[test]
    fn an_upload_over_the_byte_or_line_limit_is_refused_as_a_whole() {
        let limits = ImportLimits { max_bytes: 40, max_lines: 2 };
        let big = parse_jsonl(&[b' '; 41], &limits).unwrap_err();
        assert!(matches!(big, LabelingError::UploadRefused(_)), "{big:?}");
        let long = parse_jsonl(b"{\"prompt\":\"a\"}\n\n{\"prompt\":\"b\"}\n1\n", &limits).unwrap_err();
        assert!(long.to_string().contains("more than 2 prompts"), "{long}");
        let csv = parse_csv(b"prompt\na\nb\nc\n", &limits).unwrap_err();
        assert!(matches!(csv, LabelingError::UploadRefused(_)), "{csv:?}");
    }

    #[test]
    fn a_csv_file_without_a_prompt_column_is_an_error_on_its_header_line() {
        let limits = ImportLimits { max_bytes: 1000, max_lines: 10 };
        for file in [&b"question,split\na,train\n"[..], b""] {
            let parsed = parse_csv(file, &limits).unwrap();
            assert!(parsed.candidates.is_empty());
            assert_eq!(parsed.errors.len(), 1);
            assert_eq!((parsed.errors[0].line, parsed.errors[0].field.as_str()), (1, "prompt"));
            assert!(parsed.errors[0].message.contains("\"prompt\" column"));
        }
    }

    #[test]
    fn csv_fields_may_be_quoted_and_hold_commas_and_newlines() {
        let parsed = parse_ok(PromptFile::Csv(
            b"id,Prompt,split\r\n1,\"say \"\"hi\"\", then, bye\",val\r\n2,\"two\nlines\",\r\n3,plain\r\n",
        ));
        assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
        assert_eq!(lines_of(&parsed), [2, 3, 5]);
        assert_eq!(parsed.candidates[0].text.as_str(), "say \"hi\", then, bye");
        assert_eq!(parsed.candidates[0].split, Split::Val);
        assert_eq!(parsed.candidates[1].text.as_str(), "two\nlines");
        assert_eq!(parsed.candidates[2].split, Split::Train);
    }

    #[test]
    fn bad_csv_rows_are_reported_with_their_line_numbers() {
        let parsed = parse_ok(PromptFile::Csv(
            b"\xEF\xBB\xBFsplit,prompt\ntrain,ok\ndev,x\ntrain,\xff\ntrain\ntest,\"\"\n",
        ));
        assert_eq!(lines_of(&parsed), [2]);
        assert_eq!(error_on(&parsed, 3).field, "split");
        assert!(error_on(&parsed, 4).message.contains("UTF-8"));
        assert!(error_on(&parsed, 5).message.contains("missing"));
        assert!(error_on(&parsed, 6).message.contains("empty"));
    }

    #[test]
    fn a_search_treats_like_wildcards_literally() {
        assert_eq!(like_pattern("50%_off\\"), "%50\\%\\_off\\\\%");
    }
}

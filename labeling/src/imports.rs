//! Importing annotated files into a project: preference pairs and K-wise rankings (`trl`,
//! `hh`, `kwise`) and demonstrations (`messages`), in the formats of [`crate::formats`].
//!
//! As a prompt import does, an import parses every line first (a file refused as a whole
//! writes nothing), reports each bad line with its field, and stores the good lines in one
//! transaction. What it stores is attributed to an import source (the file's name and
//! SHA-256), not to a person: each ranking and demonstration records its source and line,
//! and has no annotator, so agreement and annotator statistics stay about people. A ranking
//! comes with the samples it ranks and a ranking task that is answered already and never
//! leased. The same file imported again into the project adds nothing.
//!
//! Prompts are the project's prompts: a line whose prompt the project has already reuses
//! it; a conversation is stored with its messages and its text rendered by plumb's chat
//! template.

use std::collections::HashMap;

use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::{PgPool, Postgres, Transaction};

use crate::domain::PromptText;
use crate::error::{LabelingError, Result};
use crate::formats::{self, Format, Prompt, Record, SampleNotes};
use crate::prompts::{self, ImportLimits, LineError};

/// A file to import: its name (the import source's), format and bytes.
#[derive(Clone, Copy, Debug)]
pub struct ImportFile<'a> {
    pub name: &'a str,
    pub format: Format,
    pub bytes: &'a [u8],
}

/// What an import did, line by line (lines count from 1, each list in line order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImportReport {
    /// The import source the rows are attributed to; none when no line could be imported
    /// (then nothing was written).
    pub source_id: Option<i64>,
    /// The file's SHA-256, lowercase hex.
    pub file_sha256: String,
    /// The project had this very file already (as `source_id`): nothing was added.
    pub already_imported: bool,
    pub imported: Vec<ImportedLine>,
    pub errors: Vec<LineError>,
}

/// A line that was stored, and the rows it became.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ImportedLine {
    pub line: usize,
    pub prompt_id: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ranking_id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub demonstration_id: Option<i64>,
}

/// An import source as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct ImportSource {
    pub id: i64,
    pub project_id: i64,
    pub name: String,
    pub format: Format,
    #[serde(serialize_with = "as_hex")]
    pub file_sha256: Vec<u8>,
    pub line_count: i32,
    pub imported_by: Option<i64>,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

fn as_hex<S: serde::Serializer>(bytes: &[u8], serializer: S) -> std::result::Result<S::Ok, S::Error> {
    serializer.serialize_str(&hex::encode(bytes))
}

/// A line that passed every check, waiting to be stored.
#[derive(Debug)]
struct Candidate {
    line: usize,
    prompt: Prompt,
    record: Record,
}

/// Imports `file` into the project; `imported_by` is the researcher who brought it.
pub async fn import(
    pool: &PgPool,
    project_id: i64,
    file: ImportFile<'_>,
    imported_by: Option<i64>,
    limits: &ImportLimits,
) -> Result<ImportReport> {
    let name = file.name.trim();
    if name.is_empty() || name.chars().count() > 200 || name.contains('\0') {
        return Err(LabelingError::invalid("name", "must be 1 to 200 characters, not blank"));
    }
    let (candidates, errors) = parse(file, limits)?;
    let file_sha256 = Sha256::digest(file.bytes).to_vec();
    let mut report = ImportReport {
        source_id: None,
        file_sha256: hex::encode(&file_sha256),
        already_imported: false,
        imported: Vec::new(),
        errors,
    };
    if candidates.is_empty() {
        return Ok(report);
    }
    let mut tx = pool.begin().await?;
    crate::error::require_row(&mut tx, "SELECT id FROM projects WHERE id = $1", "project", project_id)
        .await?;
    let source: Option<i64> = sqlx::query_scalar(
        "INSERT INTO import_sources (project_id, name, format, file_sha256, line_count, imported_by)
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (project_id, file_sha256) DO NOTHING RETURNING id",
    )
    .bind(project_id)
    .bind(name)
    .bind(file.format)
    .bind(&file_sha256)
    .bind(i32::try_from(candidates.len()).unwrap_or(i32::MAX))
    .bind(imported_by)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(source_id) = source else {
        report.already_imported = true;
        report.source_id = Some(
            sqlx::query_scalar("SELECT id FROM import_sources WHERE project_id = $1 AND file_sha256 = $2")
                .bind(project_id)
                .bind(&file_sha256)
                .fetch_one(&mut *tx)
                .await?,
        );
        return Ok(report);
    };
    report.source_id = Some(source_id);
    let prompt_ids = store_prompts(&mut tx, project_id, name, imported_by, &candidates).await?;
    let rows = store_rankings(&mut tx, project_id, source_id, &candidates, &prompt_ids).await?;
    let demonstrations = store_demonstrations(&mut tx, source_id, &candidates, &prompt_ids).await?;
    tx.commit().await?;
    for (n, candidate) in candidates.iter().enumerate() {
        report.imported.push(ImportedLine {
            line: candidate.line,
            prompt_id: prompt_ids[n],
            ranking_id: rows.get(&n).copied(),
            demonstration_id: demonstrations.get(&n).copied(),
        });
    }
    Ok(report)
}

/// A project's import sources, newest first.
pub async fn sources(pool: &PgPool, project_id: i64) -> Result<Vec<ImportSource>> {
    Ok(sqlx::query_as(
        "SELECT id, project_id, name, format, file_sha256, line_count, imported_by, created_at
         FROM import_sources WHERE project_id = $1 ORDER BY id DESC",
    )
    .bind(project_id)
    .fetch_all(pool)
    .await?)
}

/// Every line of the file read as `file.format`: the good ones, and an error for each bad one.
fn parse(file: ImportFile<'_>, limits: &ImportLimits) -> Result<(Vec<Candidate>, Vec<LineError>)> {
    let lines = prompts::jsonl_lines(file.bytes, &ImportLimits { max_lines: usize::MAX, ..*limits })?;
    if lines.len() > limits.max_lines {
        return Err(LabelingError::UploadRefused(format!(
            "the file has more than {} lines",
            limits.max_lines
        )));
    }
    let (mut candidates, mut errors) = (Vec::new(), Vec::new());
    for (line, raw) in lines {
        match parse_line(file.format, line, raw) {
            Ok(candidate) => candidates.push(candidate),
            Err(e) => errors.push(e),
        }
    }
    Ok((candidates, errors))
}

fn parse_line(format: Format, line: usize, raw: &[u8]) -> std::result::Result<Candidate, LineError> {
    let what = match format {
        Format::Trl => "\"chosen\" and \"rejected\" fields",
        Format::Hh => "\"chosen\" and \"rejected\" transcripts",
        Format::Messages => "a \"messages\" field",
        Format::KWise => "\"prompt\", \"samples\" and \"ranking\" fields",
    };
    let object = prompts::json_object_line(line, raw, what)?;
    let field_error = |e: formats::FieldError| LineError { line, field: e.field, message: e.reason };
    let record = formats::parse_record(format, &object).map_err(field_error)?;
    let (prompt, texts): (&Prompt, Vec<(String, &str)>) = match &record {
        Record::Ranked { prompt, samples, .. } => {
            (prompt, samples.iter().enumerate().map(|(i, s)| (format!("samples[{i}]"), s.as_str())).collect())
        }
        Record::Demonstration { prompt, response } => {
            (prompt, vec![("response".to_owned(), response.as_str())])
        }
    };
    // The schema's limits, named by the line's field.
    PromptText::parse(prompt.text()).map_err(|e| prompts::invalid_on(line, e))?;
    for (field, text) in texts {
        if text.chars().count() > 20_000 {
            return Err(prompts::line_error(line, &field, "is longer than 20000 characters"));
        }
    }
    Ok(Candidate { line, prompt: prompt.clone(), record })
}

/// The id of each candidate's prompt (by candidate index): the project's, or one stored now.
async fn store_prompts(
    tx: &mut Transaction<'_, Postgres>,
    project_id: i64,
    source: &str,
    imported_by: Option<i64>,
    candidates: &[Candidate],
) -> Result<Vec<i64>> {
    let texts: Vec<String> = candidates.iter().map(|c| c.prompt.text()).collect();
    let messages: Vec<Option<String>> = candidates
        .iter()
        .map(|c| match &c.prompt {
            Prompt::Text(_) => None,
            Prompt::Conversation(conversation) => Some(conversation.to_json().to_string()),
        })
        .collect();
    // DISTINCT ON keeps one row per prompt: an INSERT may not touch one row twice.
    sqlx::query(
        "INSERT INTO prompts (project_id, text, messages, source, created_by)
         SELECT $1, text, messages::jsonb, $4, $5
         FROM (SELECT DISTINCT ON (prompt_key(text)) text, messages, n
               FROM UNNEST($2::text[], $3::text[]) WITH ORDINALITY AS u (text, messages, n)
               ORDER BY prompt_key(text), n) AS first
         ORDER BY n
         ON CONFLICT (project_id, text_key) DO NOTHING",
    )
    .bind(project_id)
    .bind(&texts)
    .bind(&messages)
    .bind(source)
    .bind(imported_by)
    .execute(&mut **tx)
    .await?;
    let found: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT u.n, p.id FROM UNNEST($2::text[]) WITH ORDINALITY AS u (text, n)
         JOIN prompts p ON p.project_id = $1 AND p.text_key = prompt_key(u.text)",
    )
    .bind(project_id)
    .bind(&texts)
    .fetch_all(&mut **tx)
    .await?;
    let by_index: HashMap<i64, i64> = found.into_iter().collect();
    (1..=candidates.len() as i64)
        .map(|n| {
            by_index.get(&n).copied().ok_or_else(|| {
                LabelingError::Conflict("a prompt was removed while the import stored it".to_owned())
            })
        })
        .collect()
}

/// `n` new ids of `table`'s identity column, drawn before the rows are written so that
/// the rows that refer to each other can be written together, in bulk.
async fn new_ids(tx: &mut Transaction<'_, Postgres>, table: &str, n: usize) -> Result<Vec<i64>> {
    Ok(sqlx::query_scalar("SELECT nextval(pg_get_serial_sequence($1, 'id')) FROM generate_series(1, $2)")
        .bind(table)
        .bind(n as i64)
        .fetch_all(&mut **tx)
        .await?)
}

/// The ranked candidates' samples, answered tasks and rankings; their ranking ids by
/// candidate index.
async fn store_rankings(
    tx: &mut Transaction<'_, Postgres>,
    project_id: i64,
    source_id: i64,
    candidates: &[Candidate],
    prompt_ids: &[i64],
) -> Result<HashMap<usize, i64>> {
    let ranked: Vec<(usize, &Candidate, &[String], &crate::annotation::Ranking, &SampleNotes)> = candidates
        .iter()
        .enumerate()
        .filter_map(|(n, c)| match &c.record {
            Record::Ranked { samples, ranking, notes, .. } => {
                Some((n, c, samples.as_slice(), ranking, notes))
            }
            Record::Demonstration { .. } => None,
        })
        .collect();
    if ranked.is_empty() {
        return Ok(HashMap::new());
    }
    let batch_id: i64 = sqlx::query_scalar(
        "INSERT INTO sample_batches (project_id, import_source_id) VALUES ($1, $2) RETURNING id",
    )
    .bind(project_id)
    .bind(source_id)
    .fetch_one(&mut **tx)
    .await?;
    let sample_count = ranked.iter().map(|r| r.2.len()).sum();
    let task_ids = new_ids(tx, "tasks", ranked.len()).await?;
    let ranking_ids = new_ids(tx, "rankings", ranked.len()).await?;
    let sample_ids = new_ids(tx, "samples", sample_count).await?;

    let (mut task_prompts, mut ks, mut ranks, mut lines) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut sample_prompts, mut sample_texts) = (Vec::new(), Vec::new());
    let (mut shown_tasks, mut positions) = (Vec::new(), Vec::new());
    let mut likerts: Vec<Option<String>> = Vec::new();
    let (mut flagged_rankings, mut flagged_tasks, mut flagged_positions, mut flag_names) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (t, (n, candidate, samples, ranking, notes)) in ranked.iter().enumerate() {
        task_prompts.push(prompt_ids[*n]);
        ks.push(samples.len() as i16);
        ranks.push(format!(
            "{{{}}}",
            ranking.ranks().iter().map(i16::to_string).collect::<Vec<_>>().join(",")
        ));
        lines.push(candidate.line as i32);
        likerts.push((!notes.likert.is_empty()).then(|| {
            let ratings: Vec<String> =
                notes.likert.iter().map(|l| l.map_or("NULL".to_owned(), |v| v.to_string())).collect();
            format!("{{{}}}", ratings.join(","))
        }));
        for (position, flags) in notes.flags.iter().enumerate() {
            for flag in flags {
                flagged_rankings.push(ranking_ids[t]);
                flagged_tasks.push(task_ids[t]);
                flagged_positions.push(position as i16);
                flag_names.push(flag.as_str());
            }
        }
        for (position, text) in samples.iter().enumerate() {
            sample_prompts.push(prompt_ids[*n]);
            sample_texts.push(text.as_str());
            shown_tasks.push(task_ids[t]);
            positions.push(position as i16);
        }
    }
    sqlx::query(
        "INSERT INTO samples (id, batch_id, project_id, prompt_id, text) OVERRIDING SYSTEM VALUE
         SELECT id, $1, $2, prompt_id, text FROM UNNEST($3::bigint[], $4::bigint[], $5::text[]) AS u (id, prompt_id, text)",
    )
    .bind(batch_id)
    .bind(project_id)
    .bind(&sample_ids)
    .bind(&sample_prompts)
    .bind(&sample_texts)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "INSERT INTO tasks (id, project_id, prompt_id, kind, k, import_source_id) OVERRIDING SYSTEM VALUE
         SELECT id, $1, prompt_id, 'ranking', k, $2 FROM UNNEST($3::bigint[], $4::bigint[], $5::smallint[]) AS u (id, prompt_id, k)",
    )
    .bind(project_id)
    .bind(source_id)
    .bind(&task_ids)
    .bind(&task_prompts)
    .bind(&ks)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "INSERT INTO task_samples (task_id, prompt_id, position, sample_id)
         SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::smallint[], $4::bigint[])",
    )
    .bind(&shown_tasks)
    .bind(&sample_prompts)
    .bind(&positions)
    .bind(&sample_ids)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "INSERT INTO rankings (id, task_id, k, ranks, likert, import_source_id, import_line, idempotency_key)
         OVERRIDING SYSTEM VALUE
         SELECT id, task_id, k, ranks::smallint[], likert::smallint[], $1, line, gen_random_uuid()
         FROM UNNEST($2::bigint[], $3::bigint[], $4::smallint[], $5::text[], $6::text[], $7::int[])
             AS u (id, task_id, k, ranks, likert, line)",
    )
    .bind(source_id)
    .bind(&ranking_ids)
    .bind(&task_ids)
    .bind(&ks)
    .bind(&ranks)
    .bind(&likerts)
    .bind(&lines)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "INSERT INTO ranking_flags (ranking_id, task_id, position, flag)
         SELECT ranking_id, task_id, position, flag::sample_flag
         FROM UNNEST($1::bigint[], $2::bigint[], $3::smallint[], $4::text[]) AS u (ranking_id, task_id, position, flag)",
    )
    .bind(&flagged_rankings)
    .bind(&flagged_tasks)
    .bind(&flagged_positions)
    .bind(&flag_names)
    .execute(&mut **tx)
    .await?;
    Ok(ranked.iter().zip(ranking_ids).map(|(r, id)| (r.0, id)).collect())
}

/// The demonstration candidates' rows; their ids by candidate index.
async fn store_demonstrations(
    tx: &mut Transaction<'_, Postgres>,
    source_id: i64,
    candidates: &[Candidate],
    prompt_ids: &[i64],
) -> Result<HashMap<usize, i64>> {
    let (mut indices, mut prompts, mut responses, mut lines) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (n, candidate) in candidates.iter().enumerate() {
        if let Record::Demonstration { response, .. } = &candidate.record {
            indices.push(n);
            prompts.push(prompt_ids[n]);
            responses.push(response.as_str());
            lines.push(candidate.line as i32);
        }
    }
    if indices.is_empty() {
        return Ok(HashMap::new());
    }
    let ids = new_ids(tx, "demonstrations", indices.len()).await?;
    sqlx::query(
        "INSERT INTO demonstrations (id, prompt_id, response, import_source_id, import_line, idempotency_key)
         OVERRIDING SYSTEM VALUE
         SELECT id, prompt_id, response, $1, line, gen_random_uuid()
         FROM UNNEST($2::bigint[], $3::bigint[], $4::text[], $5::int[]) AS u (id, prompt_id, response, line)",
    )
    .bind(source_id)
    .bind(&ids)
    .bind(&prompts)
    .bind(&responses)
    .bind(&lines)
    .execute(&mut **tx)
    .await?;
    Ok(indices.into_iter().zip(ids).collect())
}

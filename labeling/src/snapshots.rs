//! Dataset snapshots: a frozen list of item ids with the SHA-256 of their content, and
//! the training files exported from them (the JSON-lines formats of `trainer::data`).
//!
//! Items are prompts, demonstrations, rankings or comparison votes. A rankings
//! snapshot holds every annotator's ranking row (not one consensus per task): the
//! reward model learns from each annotator's comparisons, as InstructGPT's did, and a
//! consensus can always be taken later from the same rows (`consensus`).
//!
//! The content hash is the SHA-256 of the snapshot's canonical lines: one JSON object
//! per item, in item id order, each followed by `\n`, holding the item's id and every
//! field any export reads from it (prompt text, response, sample texts in task order,
//! ranks, all-bad, vote, annotator). `export` recomputes it and refuses to write from
//! a snapshot whose content has changed since it was frozen.
//!
//! Exports, one JSON object per line:
//! - `Prompts` (prompts snapshot): `{"prompt"}`;
//! - `Sft` (demonstrations): `{"prompt", "response"}`, a conversation's prompt as its
//!   list of messages (so that SFT finds the assistant's earlier turns to train on);
//! - `KWise` (rankings, or votes as K = 2 rankings):
//!   `{"prompt", "samples": [...], "ranking": [[best], ...]}`; all-bad rankings without
//!   an order and both-bad votes are left out;
//! - `Pairs` (rankings or votes): `{"prompt", "chosen", "rejected"}` for every ordered
//!   pair. A tie has no chosen side, and pairwise readers (plumb's trainer, TRL) would
//!   read a `{"chosen", "rejected", "tie": true}` line as a preference, so `Keep` writes
//!   each tied pair as a two-sample ranking with one group,
//!   `{"prompt", "samples": [x, y], "ranking": [[0, 1]]}`, which the trainer reads as a
//!   tie (it gives no comparison); `Drop` leaves ties out.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, PgPool, Row};

use crate::annotation::{Likert, Ranking, SampleFlag, Vote};
use crate::domain::Split;
use crate::error::{require_row, LabelingError, Result};
use crate::formats::{self, Format, Prompt, SampleNotes};

/// What a snapshot lists. Maps to the Postgres enum `snapshot_kind`.
pub use spec::SnapshotKind;

/// Which items a snapshot takes: all of the project's, or those whose prompt is in one
/// split; of rankings, optionally not those that flag a sample with one of `drop_flags`
/// (say, harmful), nor those whose best-ranked samples' highest Likert rating is below
/// `min_best_likert` (or unrated). Stored as the snapshot's `filter` JSON; the snapshot
/// lists the items that passed, so its exports need no filter again.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotFilter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<Split>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drop_flags: Vec<SampleFlag>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// On the Likert scale, 1 to 7.
    pub min_best_likert: Option<u8>,
}

impl SnapshotFilter {
    /// Flags and Likert ratings are the rankings': refused for another kind of snapshot.
    fn check(&self, kind: SnapshotKind) -> Result<()> {
        let ranking_only = !self.drop_flags.is_empty() || self.min_best_likert.is_some();
        if ranking_only && kind != SnapshotKind::Rankings {
            let field = if self.drop_flags.is_empty() { "min_best_likert" } else { "drop_flags" };
            return Err(LabelingError::invalid(field, "filters only a rankings snapshot"));
        }
        if let Some(min) = self.min_best_likert {
            Likert::parse(i64::from(min)).map_err(|_| {
                LabelingError::invalid("min_best_likert", format!("{min} is not on the scale 1 to 7"))
            })?;
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Snapshot {
    pub id: i64,
    pub project_id: i64,
    pub kind: SnapshotKind,
    pub name: String,
    pub filter: SnapshotFilter,
    pub item_count: usize,
    /// Lowercase hex.
    pub content_sha256: String,
    pub created_by: Option<i64>,
    pub created_at: DateTime<Utc>,
}

/// A training file's format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    Prompts,
    Sft,
    KWise,
    Pairs(PairsTies),
    /// TRL's `{"prompt", "chosen", "rejected"}`, one line per pair (ties left out).
    Trl,
    /// Anthropic HH-RLHF transcripts, one line per pair (ties left out).
    Hh,
    /// OpenAI-style `{"messages"}` demonstrations.
    Messages,
}

impl ExportFormat {
    /// Every format by its name in URLs and the CLI.
    pub const NAMED: [(&'static str, ExportFormat); 8] = [
        ("prompts", ExportFormat::Prompts),
        ("sft", ExportFormat::Sft),
        ("messages", ExportFormat::Messages),
        ("kwise", ExportFormat::KWise),
        ("pairs", ExportFormat::Pairs(PairsTies::Drop)),
        ("pairs_keep_ties", ExportFormat::Pairs(PairsTies::Keep)),
        ("trl", ExportFormat::Trl),
        ("hh", ExportFormat::Hh),
    ];

    pub fn parse(name: &str) -> Result<ExportFormat> {
        ExportFormat::NAMED.iter().find(|(n, _)| *n == name).map(|(_, f)| *f).ok_or_else(|| {
            let names: Vec<&str> = ExportFormat::NAMED.iter().map(|(n, _)| *n).collect();
            LabelingError::invalid("format", format!("{name:?} is not one of {}", names.join(", ")))
        })
    }

    /// The formats a snapshot of `kind` exports to, by name.
    pub fn for_kind(kind: SnapshotKind) -> Vec<(&'static str, ExportFormat)> {
        ExportFormat::NAMED.into_iter().filter(|(_, f)| f.fits(kind)).collect()
    }

    fn fits(self, kind: SnapshotKind) -> bool {
        matches!(
            (self, kind),
            (ExportFormat::Prompts, SnapshotKind::Prompts)
                | (ExportFormat::Sft | ExportFormat::Messages, SnapshotKind::Demonstrations)
                | (
                    ExportFormat::KWise | ExportFormat::Pairs(_) | ExportFormat::Trl | ExportFormat::Hh,
                    SnapshotKind::Rankings | SnapshotKind::Comparisons
                )
        )
    }
}

/// What a pairwise export does with tied samples (and tie votes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PairsTies {
    Drop,
    /// As a two-sample ranking with both in one group (see the module docs).
    Keep,
}

/// One item with everything an export reads from it; its canonical line is its JSON.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
enum Item {
    Prompt {
        id: i64,
        prompt: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        messages: Option<serde_json::Value>,
    },
    Demonstration {
        id: i64,
        /// None for an imported row.
        annotator_id: Option<i64>,
        prompt: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        messages: Option<serde_json::Value>,
        response: String,
    },
    Ranking {
        id: i64,
        task_id: i64,
        annotator_id: Option<i64>,
        prompt: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        messages: Option<serde_json::Value>,
        samples: Vec<String>,
        ranks: Option<Vec<i16>>,
        all_bad: bool,
        /// The Likert ratings and flags, which the `kwise` export writes, are left out of
        /// the canonical line: rankings and their flags are immutable rows (triggers), and
        /// snapshots frozen before exports wrote them keep their hash.
        #[serde(skip)]
        likert: Option<Vec<Option<i16>>>,
        #[serde(skip)]
        flags: Vec<(i16, SampleFlag)>,
    },
    Comparison {
        id: i64,
        task_id: i64,
        annotator_id: i64,
        prompt: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        messages: Option<serde_json::Value>,
        a: String,
        b: String,
        vote: Vote,
    },
}

impl Item {
    fn id(&self) -> i64 {
        match self {
            Item::Prompt { id, .. }
            | Item::Demonstration { id, .. }
            | Item::Ranking { id, .. }
            | Item::Comparison { id, .. } => *id,
        }
    }
}

/// Which rows to read: a project's current ones (to freeze), or a snapshot's.
#[derive(Clone, Copy)]
enum Selection<'a> {
    Project { project_id: i64, filter: &'a SnapshotFilter },
    Snapshot(i64),
}

/// The items of `kind` that `selection` names, in id order.
async fn items(conn: &mut PgConnection, kind: SnapshotKind, selection: Selection<'_>) -> Result<Vec<Item>> {
    // `x` is the item's table, `p` its prompt's row.
    let (from, item_kind) = match kind {
        SnapshotKind::Prompts => ("prompts x JOIN prompts p ON p.id = x.id", "true"),
        SnapshotKind::Demonstrations => ("current_demonstrations x JOIN prompts p ON p.id = x.prompt_id", "true"),
        SnapshotKind::Rankings => (
            "current_rankings x JOIN tasks t ON t.id = x.task_id JOIN prompts p ON p.id = t.prompt_id",
            "t.kind = 'ranking'",
        ),
        SnapshotKind::Comparisons => (
            "current_comparison_votes x JOIN tasks t ON t.id = x.task_id JOIN prompts p ON p.id = t.prompt_id",
            "t.kind = 'comparison'",
        ),
    };
    let columns = match kind {
        SnapshotKind::Prompts => "x.id, p.text AS prompt, p.messages",
        SnapshotKind::Demonstrations => "x.id, x.annotator_id, p.text AS prompt, p.messages, x.response",
        SnapshotKind::Rankings | SnapshotKind::Comparisons => {
            "x.id, x.task_id, x.annotator_id, p.text AS prompt, p.messages,
             ARRAY(SELECT s.text FROM task_samples ts JOIN samples s ON s.id = ts.sample_id
                   WHERE ts.task_id = x.task_id ORDER BY ts.position) AS samples"
        }
    };
    let extra = match kind {
        SnapshotKind::Rankings => {
            ", x.ranks, x.all_bad, x.likert,
             ARRAY(SELECT f.position FROM ranking_flags f WHERE f.ranking_id = x.id ORDER BY f.position, f.flag)
                 AS flag_positions,
             ARRAY(SELECT f.flag::text FROM ranking_flags f WHERE f.ranking_id = x.id ORDER BY f.position, f.flag)
                 AS flag_names"
        }
        SnapshotKind::Comparisons => ", x.vote",
        _ => "",
    };
    let rows = match selection {
        Selection::Project { project_id, filter } => {
            // Only a rankings snapshot takes the flag and Likert filters (`SnapshotFilter::check`).
            let rankings_filter = if kind == SnapshotKind::Rankings {
                "AND NOT EXISTS (SELECT 1 FROM ranking_flags f
                                 WHERE f.ranking_id = x.id AND f.flag::text = ANY($3))
                 AND ($4::smallint IS NULL
                      OR (SELECT max(x.likert[i]) FROM generate_subscripts(x.ranks, 1) AS i
                          WHERE x.ranks[i] = 0) >= $4)"
            } else {
                ""
            };
            let sql = format!(
                "SELECT {columns}{extra} FROM {from}
                 WHERE {item_kind} AND p.project_id = $1 AND ($2::split IS NULL OR p.split = $2)
                 {rankings_filter}
                 ORDER BY x.id"
            );
            let flags: Vec<&str> = filter.drop_flags.iter().map(|f| f.as_str()).collect();
            sqlx::query(&sql)
                .bind(project_id)
                .bind(filter.split)
                .bind(&flags)
                .bind(filter.min_best_likert.map(i16::from))
                .fetch_all(&mut *conn)
                .await?
        }
        Selection::Snapshot(snapshot_id) => {
            let sql = format!(
                "SELECT {columns}{extra} FROM {from}
                 WHERE x.id IN (SELECT item_id FROM snapshot_items WHERE snapshot_id = $1)
                 ORDER BY x.id"
            );
            sqlx::query(&sql).bind(snapshot_id).fetch_all(&mut *conn).await?
        }
    };
    rows.iter().map(|row| item(kind, row)).collect()
}

fn item(kind: SnapshotKind, row: &PgRow) -> Result<Item> {
    Ok(match kind {
        SnapshotKind::Prompts => Item::Prompt {
            id: row.try_get("id")?,
            prompt: row.try_get("prompt")?,
            messages: row.try_get("messages")?,
        },
        SnapshotKind::Demonstrations => Item::Demonstration {
            id: row.try_get("id")?,
            annotator_id: row.try_get("annotator_id")?,
            prompt: row.try_get("prompt")?,
            messages: row.try_get("messages")?,
            response: row.try_get("response")?,
        },
        SnapshotKind::Rankings => Item::Ranking {
            id: row.try_get("id")?,
            task_id: row.try_get("task_id")?,
            annotator_id: row.try_get("annotator_id")?,
            prompt: row.try_get("prompt")?,
            messages: row.try_get("messages")?,
            samples: row.try_get("samples")?,
            ranks: row.try_get("ranks")?,
            all_bad: row.try_get("all_bad")?,
            likert: row.try_get("likert")?,
            flags: {
                let positions: Vec<i16> = row.try_get("flag_positions")?;
                let names: Vec<String> = row.try_get("flag_names")?;
                positions
                    .into_iter()
                    .zip(names)
                    .map(|(p, n)| Ok((p, SampleFlag::parse(&n)?)))
                    .collect::<Result<_>>()?
            },
        },
        SnapshotKind::Comparisons => {
            let id: i64 = row.try_get("id")?;
            let samples: Vec<String> = row.try_get("samples")?;
            let [a, b]: [String; 2] = samples.try_into().map_err(|s: Vec<String>| {
                LabelingError::Conflict(format!("comparison vote {id} shows {} samples, not 2", s.len()))
            })?;
            Item::Comparison {
                id,
                task_id: row.try_get("task_id")?,
                annotator_id: row.try_get("annotator_id")?,
                prompt: row.try_get("prompt")?,
                messages: row.try_get("messages")?,
                a,
                b,
                vote: row.try_get("vote")?,
            }
        }
    })
}

/// SHA-256 of the items' canonical lines.
fn content_sha256(items: &[Item]) -> Result<String> {
    let mut hasher = Sha256::new();
    for item in items {
        let line = serde_json::to_string(item).map_err(|e| {
            LabelingError::invalid("snapshot", format!("item {} cannot be written: {e}", item.id()))
        })?;
        hasher.update(line.as_bytes());
        hasher.update(b"\n");
    }
    Ok(hex::encode(hasher.finalize()))
}

/// A read-only view of the database as of one moment, so that the ids and the
/// content read belong together.
async fn consistent_view(
    pool: &PgPool,
    read_only: bool,
) -> Result<sqlx::Transaction<'static, sqlx::Postgres>> {
    let mut tx = pool.begin().await?;
    let mode = if read_only { "REPEATABLE READ, READ ONLY" } else { "REPEATABLE READ" };
    sqlx::query(&format!("SET TRANSACTION ISOLATION LEVEL {mode}")).execute(&mut *tx).await?;
    Ok(tx)
}

/// Freezes the project's current items of `kind` (those matching `filter`) as a
/// snapshot named `name`, in one transaction.
pub async fn freeze(
    pool: &PgPool,
    project_id: i64,
    kind: SnapshotKind,
    filter: &SnapshotFilter,
    name: &str,
    created_by: Option<i64>,
) -> Result<Snapshot> {
    let chars = name.chars().count();
    if name.trim().is_empty() || chars > 200 || name.contains('\0') {
        return Err(LabelingError::invalid("snapshot name", "must be 1 to 200 characters, not blank"));
    }
    filter.check(kind)?;
    let mut tx = consistent_view(pool, false).await?;
    require_row(&mut tx, "SELECT id FROM projects WHERE id = $1", "project", project_id).await?;
    let items = items(&mut tx, kind, Selection::Project { project_id, filter }).await?;
    let sha = content_sha256(&items)?;
    let ids: Vec<i64> = items.iter().map(Item::id).collect();
    let filter_json = serde_json::to_value(filter)
        .map_err(|e| LabelingError::invalid("filter", format!("cannot be written as JSON: {e}")))?;
    let (id, created_at): (i64, DateTime<Utc>) = sqlx::query_as(
        "INSERT INTO dataset_snapshots (project_id, kind, name, filter, item_count, content_sha256, created_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id, created_at",
    )
    .bind(project_id)
    .bind(kind)
    .bind(name)
    .bind(&filter_json)
    .bind(i32::try_from(ids.len()).map_err(|_| LabelingError::invalid("snapshot", "has too many items"))?)
    .bind(hex::decode(&sha).unwrap_or_default())
    .bind(created_by)
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query("INSERT INTO snapshot_items (snapshot_id, item_id) SELECT $1, unnest($2::bigint[])")
        .bind(id)
        .bind(&ids)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Snapshot {
        id,
        project_id,
        kind,
        name: name.to_owned(),
        filter: filter.clone(),
        item_count: ids.len(),
        content_sha256: sha,
        created_by,
        created_at,
    })
}

type SnapshotRow =
    (i64, i64, SnapshotKind, String, serde_json::Value, i32, Vec<u8>, Option<i64>, DateTime<Utc>);

const SNAPSHOT_COLUMNS: &str =
    "id, project_id, kind, name, filter, item_count, content_sha256, created_by, created_at";

fn snapshot_of(row: SnapshotRow) -> Snapshot {
    let (id, project_id, kind, name, filter, item_count, sha, created_by, created_at) = row;
    Snapshot {
        id,
        project_id,
        kind,
        name,
        // A filter this code did not write reads as no filter; the hash still guards the content.
        filter: serde_json::from_value(filter).unwrap_or_default(),
        item_count: usize::try_from(item_count).unwrap_or(0),
        content_sha256: hex::encode(sha),
        created_by,
        created_at,
    }
}

pub async fn snapshot(pool: &PgPool, snapshot_id: i64) -> Result<Snapshot> {
    let row: Option<SnapshotRow> =
        sqlx::query_as(&format!("SELECT {SNAPSHOT_COLUMNS} FROM dataset_snapshots WHERE id = $1"))
            .bind(snapshot_id)
            .fetch_optional(pool)
            .await?;
    row.map(snapshot_of).ok_or_else(|| LabelingError::not_found("snapshot", snapshot_id))
}

/// A project's snapshots, newest first.
pub async fn snapshots(pool: &PgPool, project_id: i64) -> Result<Vec<Snapshot>> {
    let rows: Vec<SnapshotRow> = sqlx::query_as(&format!(
        "SELECT {SNAPSHOT_COLUMNS} FROM dataset_snapshots WHERE project_id = $1 ORDER BY id DESC"
    ))
    .bind(project_id)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(snapshot_of).collect())
}

/// The snapshot's items as training-file lines (without line ends), after checking
/// that their content still hashes to what was frozen.
pub async fn export(pool: &PgPool, snapshot_id: i64, format: ExportFormat) -> Result<Vec<String>> {
    let mut tx = consistent_view(pool, true).await?;
    let row: Option<(SnapshotKind, Vec<u8>)> =
        sqlx::query_as("SELECT kind, content_sha256 FROM dataset_snapshots WHERE id = $1")
            .bind(snapshot_id)
            .fetch_optional(&mut *tx)
            .await?;
    let Some((kind, frozen)) = row else {
        return Err(LabelingError::not_found("snapshot", snapshot_id));
    };
    // The format is one plumb writes, but not for what this snapshot holds: a conflict
    // with the snapshot, not a malformed request.
    if !format.fits(kind) {
        return Err(LabelingError::Conflict(
            format!("{format:?} cannot be exported from a {kind:?} snapshot").to_lowercase(),
        ));
    }
    let items = items(&mut tx, kind, Selection::Snapshot(snapshot_id)).await?;
    tx.commit().await?;
    let now = content_sha256(&items)?;
    if now != hex::encode(&frozen) {
        return Err(LabelingError::Conflict(format!(
            "snapshot {snapshot_id} has changed since it was frozen: its content hashed to {}, now to {now}",
            hex::encode(&frozen)
        )));
    }
    let mut lines = Vec::new();
    for item in &items {
        export_item(item, format, &mut lines)?;
    }
    Ok(lines)
}

#[derive(Serialize)]
struct PromptLine<'a> {
    prompt: &'a str,
}

#[derive(Serialize)]
struct SftLine<'a> {
    prompt: &'a Prompt,
    response: &'a str,
}

#[derive(Serialize)]
struct RankingLine<'a> {
    prompt: &'a str,
    samples: Vec<&'a str>,
    ranking: &'a [Vec<usize>],
}

#[derive(Serialize)]
struct PairLine<'a> {
    prompt: &'a str,
    chosen: &'a str,
    rejected: &'a str,
}

fn json(line: &impl Serialize) -> Result<String> {
    serde_json::to_string(line)
        .map_err(|e| LabelingError::invalid("export", format!("a line cannot be written: {e}")))
}

/// Appends the lines `format` makes of `item` (none, one or several).
fn export_item(item: &Item, format: ExportFormat, lines: &mut Vec<String>) -> Result<()> {
    match item {
        Item::Prompt { prompt, .. } => lines.push(json(&PromptLine { prompt })?),
        Item::Demonstration { prompt, messages, response, .. } if format == ExportFormat::Messages => {
            let prompt = Prompt::from_stored(prompt.clone(), messages.as_ref())?;
            lines.push(formats::demonstration_line(Format::Messages, &prompt, response)?);
        }
        Item::Demonstration { prompt, messages, response, .. } => {
            let prompt = Prompt::from_stored(prompt.clone(), messages.as_ref())?;
            lines.push(json(&SftLine { prompt: &prompt, response })?);
        }
        Item::Ranking { id, prompt, messages, samples, ranks, likert, flags, .. } => {
            let Some(ranks) = ranks else { return Ok(()) };
            let ranking = Ranking::from_ranks(ranks).map_err(|e| {
                LabelingError::Conflict(format!("ranking {id} in the snapshot is not a valid ranking: {e}"))
            })?;
            let samples: Vec<&str> = samples.iter().map(String::as_str).collect();
            if ranking.k() != samples.len() {
                return Err(LabelingError::Conflict(format!(
                    "ranking {id} ranks {} samples, but its task shows {}",
                    ranking.k(),
                    samples.len()
                )));
            }
            let prompt = Prompt::from_stored(prompt.clone(), messages.as_ref())?;
            let mut notes = SampleNotes {
                likert: likert.iter().flatten().map(|l| l.and_then(|v| u8::try_from(v).ok())).collect(),
                flags: vec![Vec::new(); samples.len()],
            };
            for &(position, flag) in flags {
                if let Some(at) = notes.flags.get_mut(position as usize) {
                    at.push(flag);
                }
            }
            ranked_lines(&prompt, &samples, &ranking, &notes, format, lines)?;
        }
        Item::Comparison { prompt, messages, a, b, vote, .. } => {
            let groups = match vote {
                Vote::A => vec![vec![0], vec![1]],
                Vote::B => vec![vec![1], vec![0]],
                Vote::Tie => vec![vec![0, 1]],
                Vote::BothBad => return Ok(()),
            };
            let ranking = Ranking::parse(2, groups)?;
            let prompt = Prompt::from_stored(prompt.clone(), messages.as_ref())?;
            ranked_lines(
                &prompt,
                &[a.as_str(), b.as_str()],
                &ranking,
                &SampleNotes::default(),
                format,
                lines,
            )?;
        }
    }
    Ok(())
}

fn ranked_lines(
    prompt: &Prompt,
    samples: &[&str],
    ranking: &Ranking,
    notes: &SampleNotes,
    format: ExportFormat,
    lines: &mut Vec<String>,
) -> Result<()> {
    let file_format = match format {
        ExportFormat::KWise => Some(Format::KWise),
        ExportFormat::Trl => Some(Format::Trl),
        ExportFormat::Hh => Some(Format::Hh),
        _ => None,
    };
    if let Some(file_format) = file_format {
        lines.extend(formats::ranked_lines(file_format, prompt, samples, ranking, notes)?);
        return Ok(());
    }
    let prompt = &prompt.text();
    match format {
        ExportFormat::Pairs(ties) => {
            for (w, l) in ranking.pairs() {
                lines.push(json(&PairLine { prompt, chosen: samples[w], rejected: samples[l] })?);
            }
            if ties == PairsTies::Keep {
                let tie = [vec![0, 1]];
                for (x, y) in ranking.tied_pairs() {
                    let line = RankingLine { prompt, samples: vec![samples[x], samples[y]], ranking: &tie };
                    lines.push(json(&line)?);
                }
            }
        }
        _ => {
            return Err(LabelingError::invalid("format", "rankings export as K-wise rankings or pairs"));
        }
    }
    Ok(())
}

//! Submitting a demonstration, a ranking or an A/B vote.
//!
//! Each submit is one transaction: it locks the task (so that it cannot be leased to
//! someone else meanwhile) and the assignment, checks that the assignment is the
//! annotator's and still open, stores the row (and a ranking's flags), and marks the
//! assignment submitted.
//!
//! Every submission carries the client's idempotency key. A retry with the same key
//! and the same content gets the stored row's id back (`AlreadyStored`) however many
//! retries race, since the key is unique and inserts use `ON CONFLICT DO NOTHING`; the
//! same key with different content (time spent aside) is a `Conflict`.
//!
//! An answered assignment may be revised while its project allows it (`revise_*`): the
//! revision is a new row that supersedes the current answer, which must be the one the
//! annotator saw (else a `Conflict`); nothing is overwritten.

use sqlx::{PgConnection, PgPool};

use crate::annotation::{time_spent, IdempotencyKey, RankingSubmission, SampleFlag, Vote};
use crate::domain::{Comment, ResponseText};
use crate::error::{require_row, LabelingError, Result};
use crate::tasks::TaskKind;

/// What a submit did: stored a new row, or found the row a previous attempt with the
/// same idempotency key stored. Either way, the row's id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Submitted {
    Stored(i64),
    AlreadyStored(i64),
}

impl Submitted {
    pub fn id(self) -> i64 {
        match self {
            Submitted::Stored(id) | Submitted::AlreadyStored(id) => id,
        }
    }
}

/// What a demonstration answers: a demonstration task leased to the annotator, or a
/// prompt directly (a demonstration written outside the task queue).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DemonstrationFor {
    Assignment(i64),
    Prompt(i64),
}

/// The task and assignment rows of a submit, locked in that order (the order
/// `next_task` locks them in, so that the two never deadlock).
struct OpenAssignment {
    id: i64,
    task_id: i64,
    k: i16,
    prompt_id: i64,
    /// The assignment's state and whether its lease has expired, read under the lock.
    state: String,
    expired: bool,
    /// Whether the project lets annotators revise their answers.
    revisable: bool,
}

impl OpenAssignment {
    /// Only a submit whose assignment is already submitted can be a retry of a stored
    /// one: while it is open, a row with the key can only be another submission's, and
    /// the insert's conflict finds that one.
    fn may_be_a_retry(&self) -> bool {
        self.state != "leased"
    }
}

/// Locks the assignment's task and the assignment, and checks that the assignment is
/// the annotator's. Whether it is still open is checked by `ensure_open`, after a
/// retry has had the chance to find its stored row.
async fn lock_assignment(
    conn: &mut PgConnection,
    assignment_id: i64,
    annotator_id: i64,
    kind: TaskKind,
) -> Result<(OpenAssignment, i32)> {
    let task: Option<(i64, TaskKind, i16, i64, i32, bool)> = sqlx::query_as(
        "SELECT t.id, t.kind, t.k, t.prompt_id, p.overlap, p.revisions_allowed
         FROM tasks t JOIN projects p ON p.id = t.project_id
         WHERE t.id = (SELECT task_id FROM assignments WHERE id = $1)
         FOR NO KEY UPDATE OF t",
    )
    .bind(assignment_id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some((task_id, task_kind, k, prompt_id, overlap, revisable)) = task else {
        return Err(LabelingError::not_found("assignment", assignment_id));
    };
    let (owner, state, expired): (i64, String, bool) = sqlx::query_as(
        "SELECT annotator_id, state::text, lease_until <= now() FROM assignments WHERE id = $1 FOR UPDATE",
    )
    .bind(assignment_id)
    .fetch_one(&mut *conn)
    .await?;
    if owner != annotator_id {
        return Err(LabelingError::Forbidden(format!("assignment {assignment_id} is another annotator's")));
    }
    if task_kind != kind {
        return Err(LabelingError::invalid(
            "assignment",
            format!("assignment {assignment_id} is a {task_kind:?} task, not a {kind:?} task").to_lowercase(),
        ));
    }
    Ok((OpenAssignment { id: assignment_id, task_id, k, prompt_id, state, expired, revisable }, overlap))
}

/// The assignment must still be leased. A lease that expired is accepted only while
/// the task has not gone to `overlap` other annotators in the meantime.
async fn ensure_open(conn: &mut PgConnection, a: &OpenAssignment, overlap: i32) -> Result<()> {
    if a.state != "leased" {
        return Err(LabelingError::Conflict(format!("assignment {} is already {}", a.id, a.state)));
    }
    if a.expired {
        let others: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM assignments
             WHERE task_id = $1 AND id <> $2
               AND (state = 'submitted' OR (state = 'leased' AND lease_until > now()))",
        )
        .bind(a.task_id)
        .bind(a.id)
        .fetch_one(&mut *conn)
        .await?;
        if others >= i64::from(overlap) {
            return Err(LabelingError::Conflict(format!(
                "the lease of assignment {} expired and its task went to other annotators",
                a.id
            )));
        }
    }
    Ok(())
}

/// Whether the submit is a first answer or a revision of the answer `previous`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Answer {
    First,
    Revision { previous: i64 },
}

impl Answer {
    fn supersedes(self) -> Option<i64> {
        match self {
            Answer::First => None,
            Answer::Revision { previous } => Some(previous),
        }
    }

    /// A first answer needs the assignment open; a revision needs it answered, the
    /// project to allow revisions, and `previous` to be the answer that stands in
    /// `table` (the annotator revises what they saw, not what another tab stored since).
    async fn check(
        self,
        conn: &mut PgConnection,
        a: &OpenAssignment,
        overlap: i32,
        table: &str,
    ) -> Result<()> {
        let Answer::Revision { previous } = self else { return ensure_open(conn, a, overlap).await };
        if a.state != "submitted" {
            return Err(LabelingError::Conflict(format!(
                "assignment {} is {}: only an answered task can be revised",
                a.id, a.state
            )));
        }
        if !a.revisable {
            return Err(LabelingError::Forbidden("this project does not allow answers to be revised".into()));
        }
        let current: Option<i64> =
            sqlx::query_scalar(&format!("SELECT id FROM current_{table} WHERE assignment_id = $1"))
                .bind(a.id)
                .fetch_optional(&mut *conn)
                .await?;
        if current != Some(previous) {
            return Err(LabelingError::Conflict(format!(
                "answer {previous} is not the current answer of assignment {}: reload the task to see it",
                a.id
            )));
        }
        Ok(())
    }

    /// Marks the assignment submitted (a revision's already is).
    async fn finish(self, conn: &mut PgConnection, assignment_id: i64) -> Result<()> {
        if self == Answer::First {
            finish(conn, assignment_id).await?;
        }
        Ok(())
    }
}

async fn finish(conn: &mut PgConnection, assignment_id: i64) -> Result<()> {
    sqlx::query("UPDATE assignments SET state = 'submitted', finished_at = now() WHERE id = $1")
        .bind(assignment_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

fn key_reused(key: IdempotencyKey) -> LabelingError {
    LabelingError::Conflict(format!("idempotency key {key} was already used for a different submission"))
}

/// A retry of the submission stored as `id` under `key`: it stands when the stored
/// submission is the `same` as this one, and the key was reused when it is not.
fn replayed(id: i64, same: bool, key: IdempotencyKey) -> Result<Submitted> {
    if same {
        Ok(Submitted::AlreadyStored(id))
    } else {
        Err(key_reused(key))
    }
}

/// Stores an annotator's demonstration (ideal response) for a demonstration task or a
/// prompt.
pub async fn submit_demonstration(
    pool: &PgPool,
    annotator_id: i64,
    target: DemonstrationFor,
    response: &ResponseText,
    time_spent_ms: Option<i64>,
    key: IdempotencyKey,
) -> Result<Submitted> {
    store_demonstration(pool, annotator_id, target, Answer::First, response, time_spent_ms, key).await
}

/// Stores a revision of the demonstration `previous` that answered `assignment_id`.
pub async fn revise_demonstration(
    pool: &PgPool,
    annotator_id: i64,
    assignment_id: i64,
    previous: i64,
    response: &ResponseText,
    time_spent_ms: Option<i64>,
    key: IdempotencyKey,
) -> Result<Submitted> {
    let target = DemonstrationFor::Assignment(assignment_id);
    store_demonstration(
        pool,
        annotator_id,
        target,
        Answer::Revision { previous },
        response,
        time_spent_ms,
        key,
    )
    .await
}

async fn store_demonstration(
    pool: &PgPool,
    annotator_id: i64,
    target: DemonstrationFor,
    answer: Answer,
    response: &ResponseText,
    time_spent_ms: Option<i64>,
    key: IdempotencyKey,
) -> Result<Submitted> {
    let time_spent_ms = time_spent(time_spent_ms)?;
    let mut tx = pool.begin().await?;
    let (assignment, prompt_id) = match target {
        DemonstrationFor::Assignment(id) => {
            let (a, overlap) = lock_assignment(&mut tx, id, annotator_id, TaskKind::Demonstration).await?;
            let prompt_id = a.prompt_id;
            (Some((a, overlap)), prompt_id)
        }
        DemonstrationFor::Prompt(prompt_id) => {
            require_row(&mut tx, "SELECT id FROM prompts WHERE id = $1", "prompt", prompt_id).await?;
            (None, prompt_id)
        }
    };
    let task_id = assignment.as_ref().map(|(a, _)| a.task_id);
    let same = |row: &(i64, i64, i64, Option<i64>, String)| {
        (row.1, row.2, row.3, row.4.as_str()) == (prompt_id, annotator_id, task_id, response.as_str())
    };
    // Without an assignment there is no state to tell a retry by: look the key up.
    if assignment.as_ref().is_none_or(|(a, _)| a.may_be_a_retry()) {
        if let Some(row) = stored_demonstration(&mut tx, key).await? {
            return replayed(row.0, same(&row), key);
        }
    }
    if let Some((a, overlap)) = &assignment {
        answer.check(&mut tx, a, *overlap, "demonstrations").await?;
    }
    let id: Option<i64> = sqlx::query_scalar(
        "INSERT INTO demonstrations
             (prompt_id, annotator_id, task_id, assignment_id, response, time_spent_ms, idempotency_key, supersedes)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (idempotency_key) DO NOTHING RETURNING id",
    )
    .bind(prompt_id)
    .bind(annotator_id)
    .bind(task_id)
    .bind(assignment.as_ref().map(|(a, _)| a.id))
    .bind(response.as_str())
    .bind(time_spent_ms)
    .bind(key.uuid())
    .bind(answer.supersedes())
    .fetch_optional(&mut *tx)
    .await?;
    let Some(id) = id else {
        // Another submission with this key committed after the look-up above.
        let row = stored_demonstration(&mut tx, key).await?.ok_or_else(|| key_reused(key))?;
        return replayed(row.0, same(&row), key);
    };
    if let Some((a, _)) = &assignment {
        answer.finish(&mut tx, a.id).await?;
    }
    tx.commit().await?;
    Ok(Submitted::Stored(id))
}

async fn stored_demonstration(
    conn: &mut PgConnection,
    key: IdempotencyKey,
) -> Result<Option<(i64, i64, i64, Option<i64>, String)>> {
    Ok(sqlx::query_as(
        "SELECT id, prompt_id, annotator_id, task_id, response FROM demonstrations WHERE idempotency_key = $1",
    )
    .bind(key.uuid())
    .fetch_optional(conn)
    .await?)
}

/// A stored ranking, as far as an idempotent retry compares it.
#[derive(Debug, PartialEq, sqlx::FromRow)]
struct StoredRanking {
    id: i64,
    assignment_id: i64,
    annotator_id: i64,
    ranks: Option<Vec<i16>>,
    all_bad: bool,
    likert: Option<Vec<Option<i16>>>,
    comment: String,
}

/// Stores an annotator's ranking of a ranking task's K samples, with its flags.
pub async fn submit_ranking(
    pool: &PgPool,
    annotator_id: i64,
    assignment_id: i64,
    submission: &RankingSubmission,
    key: IdempotencyKey,
) -> Result<Submitted> {
    store_ranking(pool, annotator_id, assignment_id, Answer::First, submission, key).await
}

/// Stores a revision of the ranking `previous` that answered `assignment_id`.
pub async fn revise_ranking(
    pool: &PgPool,
    annotator_id: i64,
    assignment_id: i64,
    previous: i64,
    submission: &RankingSubmission,
    key: IdempotencyKey,
) -> Result<Submitted> {
    store_ranking(pool, annotator_id, assignment_id, Answer::Revision { previous }, submission, key).await
}

async fn store_ranking(
    pool: &PgPool,
    annotator_id: i64,
    assignment_id: i64,
    answer: Answer,
    submission: &RankingSubmission,
    key: IdempotencyKey,
) -> Result<Submitted> {
    let mut tx = pool.begin().await?;
    let (a, overlap) = lock_assignment(&mut tx, assignment_id, annotator_id, TaskKind::Ranking).await?;
    if submission.k() != a.k as usize {
        return Err(LabelingError::invalid(
            "ranking",
            format!("ranks {} samples, but the task shows {}", submission.k(), a.k),
        ));
    }
    let ranks = submission.ranking().map(|r| r.ranks());
    if let Some(ranks) = &ranks {
        ensure_twins_tied(&mut tx, a.task_id, ranks).await?;
    }
    let likert = submission.likert_column();
    let flags: Vec<(i16, SampleFlag)> = submission.flags().iter().map(|&(p, f)| (p as i16, f)).collect();
    let mine = |stored: &StoredRanking, stored_flags: &[(i16, SampleFlag)]| {
        stored.assignment_id == a.id
            && stored.annotator_id == annotator_id
            && stored.ranks == ranks
            && stored.all_bad == submission.all_bad()
            && stored.likert == likert
            && stored.comment == submission.comment().as_str()
            && stored_flags == flags
    };
    if a.may_be_a_retry() {
        if let Some((stored, stored_flags)) = stored_ranking(&mut tx, key).await? {
            return replayed(stored.id, mine(&stored, &stored_flags), key);
        }
    }
    answer.check(&mut tx, &a, overlap, "rankings").await?;
    let id: Option<i64> = sqlx::query_scalar(
        "INSERT INTO rankings (task_id, k, annotator_id, assignment_id, ranks, all_bad, likert, comment,
                               time_spent_ms, idempotency_key, supersedes)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
         ON CONFLICT (idempotency_key) DO NOTHING RETURNING id",
    )
    .bind(a.task_id)
    .bind(a.k)
    .bind(annotator_id)
    .bind(a.id)
    .bind(&ranks)
    .bind(submission.all_bad())
    .bind(&likert)
    .bind(submission.comment().as_str())
    .bind(submission.time_spent_ms())
    .bind(key.uuid())
    .bind(answer.supersedes())
    .fetch_optional(&mut *tx)
    .await?;
    let Some(id) = id else {
        let (stored, stored_flags) = stored_ranking(&mut tx, key).await?.ok_or_else(|| key_reused(key))?;
        return replayed(stored.id, mine(&stored, &stored_flags), key);
    };
    if !flags.is_empty() {
        let positions: Vec<i16> = flags.iter().map(|f| f.0).collect();
        let names: Vec<&str> = flags.iter().map(|f| f.1.as_str()).collect();
        sqlx::query(
            "INSERT INTO ranking_flags (ranking_id, task_id, position, flag)
             SELECT $1, $2, p, f::sample_flag FROM unnest($3::smallint[], $4::text[]) AS u (p, f)",
        )
        .bind(id)
        .bind(a.task_id)
        .bind(&positions)
        .bind(&names)
        .execute(&mut *tx)
        .await?;
    }
    answer.finish(&mut tx, a.id).await?;
    tx.commit().await?;
    Ok(Submitted::Stored(id))
}

/// Samples of the task with the very same text are one response shown once: a ranking
/// must tie them.
async fn ensure_twins_tied(conn: &mut PgConnection, task_id: i64, ranks: &[i16]) -> Result<()> {
    let twins: Vec<(i16, i16)> = sqlx::query_as(
        "SELECT a.position, b.position
         FROM task_samples a JOIN samples sa ON sa.id = a.sample_id
         JOIN task_samples b ON b.task_id = a.task_id AND b.position > a.position
         JOIN samples sb ON sb.id = b.sample_id
         WHERE a.task_id = $1 AND sa.text = sb.text",
    )
    .bind(task_id)
    .fetch_all(conn)
    .await?;
    let rank_of = |p: i16| ranks.get(p as usize).copied();
    match twins.into_iter().find(|&(x, y)| rank_of(x) != rank_of(y)) {
        Some((x, y)) => Err(LabelingError::invalid(
            "ranking",
            format!("samples {x} and {y} have the very same text and must be tied"),
        )),
        None => Ok(()),
    }
}

async fn stored_ranking(
    conn: &mut PgConnection,
    key: IdempotencyKey,
) -> Result<Option<(StoredRanking, Vec<(i16, SampleFlag)>)>> {
    let stored: Option<StoredRanking> = sqlx::query_as(
        "SELECT id, assignment_id, annotator_id, ranks, all_bad, likert, comment
         FROM rankings WHERE idempotency_key = $1",
    )
    .bind(key.uuid())
    .fetch_optional(&mut *conn)
    .await?;
    let Some(stored) = stored else { return Ok(None) };
    let flags = sqlx::query_as(
        "SELECT position, flag FROM ranking_flags WHERE ranking_id = $1 ORDER BY position, flag",
    )
    .bind(stored.id)
    .fetch_all(&mut *conn)
    .await?;
    Ok(Some((stored, flags)))
}

/// Stores an annotator's blind A/B vote on a comparison task.
pub async fn submit_vote(
    pool: &PgPool,
    annotator_id: i64,
    assignment_id: i64,
    vote: Vote,
    comment: &Comment,
    time_spent_ms: Option<i64>,
    key: IdempotencyKey,
) -> Result<Submitted> {
    store_vote(pool, annotator_id, assignment_id, Answer::First, (vote, comment), time_spent_ms, key).await
}

/// Stores a revision of the vote `previous` that answered `assignment_id`.
pub async fn revise_vote(
    pool: &PgPool,
    annotator_id: i64,
    assignment_id: i64,
    previous: i64,
    (vote, comment): (Vote, &Comment),
    time_spent_ms: Option<i64>,
    key: IdempotencyKey,
) -> Result<Submitted> {
    let answer = Answer::Revision { previous };
    store_vote(pool, annotator_id, assignment_id, answer, (vote, comment), time_spent_ms, key).await
}

async fn store_vote(
    pool: &PgPool,
    annotator_id: i64,
    assignment_id: i64,
    answer: Answer,
    (vote, comment): (Vote, &Comment),
    time_spent_ms: Option<i64>,
    key: IdempotencyKey,
) -> Result<Submitted> {
    let time_spent_ms = time_spent(time_spent_ms)?;
    let mut tx = pool.begin().await?;
    let (a, overlap) = lock_assignment(&mut tx, assignment_id, annotator_id, TaskKind::Comparison).await?;
    let same = |row: &(i64, i64, i64, Vote, String)| {
        (row.1, row.2, row.3, row.4.as_str()) == (a.id, annotator_id, vote, comment.as_str())
    };
    if a.may_be_a_retry() {
        if let Some(row) = stored_vote(&mut tx, key).await? {
            return replayed(row.0, same(&row), key);
        }
    }
    answer.check(&mut tx, &a, overlap, "comparison_votes").await?;
    let id: Option<i64> = sqlx::query_scalar(
        "INSERT INTO comparison_votes (task_id, annotator_id, assignment_id, vote, comment, time_spent_ms,
                                       idempotency_key, supersedes)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (idempotency_key) DO NOTHING RETURNING id",
    )
    .bind(a.task_id)
    .bind(annotator_id)
    .bind(a.id)
    .bind(vote)
    .bind(comment.as_str())
    .bind(time_spent_ms)
    .bind(key.uuid())
    .bind(answer.supersedes())
    .fetch_optional(&mut *tx)
    .await?;
    let Some(id) = id else {
        let row = stored_vote(&mut tx, key).await?.ok_or_else(|| key_reused(key))?;
        return replayed(row.0, same(&row), key);
    };
    answer.finish(&mut tx, a.id).await?;
    tx.commit().await?;
    Ok(Submitted::Stored(id))
}

async fn stored_vote(
    conn: &mut PgConnection,
    key: IdempotencyKey,
) -> Result<Option<(i64, i64, i64, Vote, String)>> {
    Ok(sqlx::query_as(
        "SELECT id, assignment_id, annotator_id, vote, comment FROM comparison_votes WHERE idempotency_key = $1",
    )
    .bind(key.uuid())
    .fetch_optional(conn)
    .await?)
}

/// A vote attributed to the model versions whose samples were shown as A and B.
#[derive(Clone, Debug, PartialEq, serde::Serialize, sqlx::FromRow)]
pub struct VersionVote {
    pub vote_id: i64,
    pub task_id: i64,
    pub prompt_id: i64,
    pub annotator_id: i64,
    pub version_a: Option<i64>,
    pub version_b: Option<i64>,
    pub vote: Vote,
}

/// A/B votes with the versions (and sample batches) behind each side; callers add the
/// WHERE clause and the order.
pub(crate) const VERSION_VOTES: &str = "
    SELECT v.id AS vote_id, v.task_id, t.prompt_id, v.annotator_id,
           sa.model_version_id AS version_a, sb.model_version_id AS version_b, v.vote
    FROM current_comparison_votes v
    JOIN tasks t ON t.id = v.task_id
    JOIN task_samples ta ON ta.task_id = t.id AND ta.position = 0
    JOIN samples sa ON sa.id = ta.sample_id
    JOIN sample_batches ba ON ba.id = sa.batch_id
    JOIN task_samples tb ON tb.task_id = t.id AND tb.position = 1
    JOIN samples sb ON sb.id = tb.sample_id
    JOIN sample_batches bb ON bb.id = sb.batch_id";

/// Every A/B vote of a project with the versions behind each side, oldest first: what
/// win rates and a Bradley–Terry fit are computed from.
pub async fn version_votes(pool: &PgPool, project_id: i64) -> Result<Vec<VersionVote>> {
    Ok(sqlx::query_as(&format!("{VERSION_VOTES} WHERE t.project_id = $1 ORDER BY v.id"))
        .bind(project_id)
        .fetch_all(pool)
        .await?)
}

/// One piece of an annotator's submitted work, as their history lists it: a
/// demonstration, a ranking or an A/B vote, with a snippet of its prompt.
#[derive(Clone, Debug, PartialEq, serde::Serialize, sqlx::FromRow)]
pub struct Work {
    /// `demonstration`, `ranking` or `comparison` (a vote).
    pub kind: TaskKind,
    /// The row's id in its own table (demonstrations, rankings, comparison_votes).
    pub id: i64,
    /// None for a demonstration written outside the task queue.
    pub task_id: Option<i64>,
    pub assignment_id: Option<i64>,
    pub project_id: i64,
    pub project_name: String,
    pub prompt_id: i64,
    /// The prompt's first `HISTORY_SNIPPET_CHARS` characters.
    pub prompt: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// A ranking's groups by sample position (0 the best); None when all bad without an order.
    pub ranks: Option<Vec<i16>>,
    pub all_bad: Option<bool>,
    pub vote: Option<Vote>,
    /// A demonstration's first `HISTORY_SNIPPET_CHARS` characters.
    pub response: Option<String>,
    pub comment: String,
    /// The order a ranking's samples were shown in (positions, first shown first).
    pub sample_order: Option<Vec<i16>>,
}

/// How much of a prompt or a demonstration the history shows.
pub const HISTORY_SNIPPET_CHARS: i32 = 200;

/// An annotator's submitted work, newest first, `limit` items from `offset`.
pub async fn work_of(pool: &PgPool, annotator_id: i64, limit: i64, offset: i64) -> Result<Vec<Work>> {
    Ok(sqlx::query_as(
        "SELECT * FROM (
             SELECT 'demonstration'::task_kind AS kind, d.id, d.task_id, d.assignment_id, p.project_id,
                    pr.name AS project_name, d.prompt_id, left(p.text, $4) AS prompt, d.created_at,
                    NULL::smallint[] AS ranks, NULL::boolean AS all_bad, NULL::ab_vote AS vote,
                    left(d.response, $4) AS response, '' AS comment, NULL::smallint[] AS sample_order
             FROM current_demonstrations d JOIN prompts p ON p.id = d.prompt_id
                  JOIN projects pr ON pr.id = p.project_id
             WHERE d.annotator_id = $1
             UNION ALL
             SELECT 'ranking'::task_kind, r.id, r.task_id, r.assignment_id, t.project_id, pr.name, t.prompt_id,
                    left(p.text, $4), r.created_at, r.ranks, r.all_bad, NULL::ab_vote, NULL::text, r.comment,
                    a.sample_order
             FROM current_rankings r JOIN tasks t ON t.id = r.task_id JOIN prompts p ON p.id = t.prompt_id
                  JOIN projects pr ON pr.id = t.project_id JOIN assignments a ON a.id = r.assignment_id
             WHERE r.annotator_id = $1
             UNION ALL
             SELECT 'comparison'::task_kind, v.id, v.task_id, v.assignment_id, t.project_id, pr.name, t.prompt_id,
                    left(p.text, $4), v.created_at, NULL::smallint[], NULL::boolean, v.vote, NULL::text, v.comment,
                    NULL::smallint[]
             FROM current_comparison_votes v JOIN tasks t ON t.id = v.task_id JOIN prompts p ON p.id = t.prompt_id
                  JOIN projects pr ON pr.id = t.project_id
             WHERE v.annotator_id = $1
         ) w
         ORDER BY created_at DESC, kind, id DESC
         LIMIT $2 OFFSET $3",
    )
    .bind(annotator_id)
    .bind(limit)
    .bind(offset)
    .bind(HISTORY_SNIPPET_CHARS)
    .fetch_all(pool)
    .await?)
}

/// The answer that stands for an assignment (its latest revision), as its annotator
/// sees it again.
#[derive(Clone, Debug, PartialEq)]
pub enum CurrentAnswer {
    Demonstration {
        id: i64,
        response: String,
    },
    Ranking {
        id: i64,
        ranks: Option<Vec<i16>>,
        all_bad: bool,
        likert: Vec<Option<i16>>,
        flags: Vec<(i16, SampleFlag)>,
        comment: String,
    },
    Vote {
        id: i64,
        vote: Vote,
        comment: String,
    },
}

impl CurrentAnswer {
    /// The stored row's id: what a revision names as the answer it supersedes.
    pub fn id(&self) -> i64 {
        match self {
            CurrentAnswer::Demonstration { id, .. }
            | CurrentAnswer::Ranking { id, .. }
            | CurrentAnswer::Vote { id, .. } => *id,
        }
    }
}

/// The current answer of assignment `assignment_id` of kind `kind`, if it was answered.
pub async fn current_answer(
    pool: &PgPool,
    assignment_id: i64,
    kind: TaskKind,
) -> Result<Option<CurrentAnswer>> {
    let answer = match kind {
        TaskKind::Demonstration => {
            let row: Option<(i64, String)> =
                sqlx::query_as("SELECT id, response FROM current_demonstrations WHERE assignment_id = $1")
                    .bind(assignment_id)
                    .fetch_optional(pool)
                    .await?;
            row.map(|(id, response)| CurrentAnswer::Demonstration { id, response })
        }
        TaskKind::Comparison => {
            let row: Option<(i64, Vote, String)> = sqlx::query_as(
                "SELECT id, vote, comment FROM current_comparison_votes WHERE assignment_id = $1",
            )
            .bind(assignment_id)
            .fetch_optional(pool)
            .await?;
            row.map(|(id, vote, comment)| CurrentAnswer::Vote { id, vote, comment })
        }
        TaskKind::Ranking => {
            let row: Option<StoredRanking> = sqlx::query_as(
                "SELECT id, assignment_id, annotator_id, ranks, all_bad, likert, comment
                 FROM current_rankings WHERE assignment_id = $1",
            )
            .bind(assignment_id)
            .fetch_optional(pool)
            .await?;
            let Some(StoredRanking { id, ranks, all_bad, likert, comment, .. }) = row else {
                return Ok(None);
            };
            let flags = sqlx::query_as(
                "SELECT position, flag FROM ranking_flags WHERE ranking_id = $1 ORDER BY position, flag",
            )
            .bind(id)
            .fetch_all(pool)
            .await?;
            Some(CurrentAnswer::Ranking {
                id,
                ranks,
                all_bad,
                likert: likert.unwrap_or_default(),
                flags,
                comment,
            })
        }
    };
    Ok(answer)
}

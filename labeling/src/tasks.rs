//! Samples, the tasks made from them, and handing tasks to annotators.
//!
//! A task goes to the project's `overlap` distinct annotators. An assignment counts
//! against that overlap while its lease runs or once it is submitted; an expired lease
//! returns the task to the queue (and its annotator may take it again), a skipped one
//! returns it to everyone else. `next_task` locks the task row with `SKIP LOCKED`, so
//! concurrent annotators each get a different task instead of waiting on each other,
//! and counts the task's assignments again once it holds the lock.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;
use serde::Serialize;
use sqlx::{PgConnection, PgPool};

use spec::chat::{self, Message};

use crate::annotation::{MAX_K, MIN_K};
use crate::error::{require_row, LabelingError, Result};

/// What a task asks for. Maps to the Postgres enum `task_kind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, sqlx::Type)]
#[sqlx(type_name = "task_kind", rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum TaskKind {
    /// Write an ideal response to the prompt.
    Demonstration,
    /// Rank the task's K samples.
    Ranking,
    /// Vote between two model versions' samples, shown blind as A and B.
    Comparison,
}

/// A model's sample for a prompt, before it is stored.
#[derive(Clone, Debug, PartialEq)]
pub struct NewSample {
    pub prompt_id: i64,
    pub text: String,
    /// Per-token log-probabilities under the model that wrote the sample.
    pub logprobs: Option<Vec<f32>>,
}

/// A task leased to an annotator, with what the annotator needs to see.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Assignment {
    pub id: i64,
    pub task_id: i64,
    pub project_id: i64,
    pub kind: TaskKind,
    pub lease_until: DateTime<Utc>,
    pub prompt: TaskPrompt,
    /// In the order to show them: the assignment's own order for a ranking, by position
    /// otherwise (for a comparison, position 0 is side A). No model version is shown.
    pub samples: Vec<TaskSample>,
}

impl Assignment {
    /// Number of samples shown: 0 for a demonstration.
    pub fn k(&self) -> usize {
        self.samples.len()
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TaskPrompt {
    pub id: i64,
    /// What the model is prompted with: a conversation rendered by the chat template.
    pub text: String,
    /// A conversation's turns, as the annotator reads them; None for a plain prompt.
    pub messages: Option<Vec<Message>>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TaskSample {
    pub id: i64,
    /// The sample's position in the task: what ranks, ratings and flags refer to.
    pub position: usize,
    pub text: String,
    /// The position of the sample shown before this one with the very same text, if
    /// any: such a sample is shown once, and a ranking must tie the two.
    pub same_as: Option<usize>,
}

/// The most characters a sample may hold (the schema's CHECK).
pub const MAX_SAMPLE_CHARS: usize = 20_000;

/// Stores one batch of samples (one model version, one run, one set of sampling
/// settings) in one transaction; returns the sample ids in the order given.
pub async fn add_samples(
    pool: &PgPool,
    project_id: i64,
    model_version_id: Option<i64>,
    run_id: Option<i64>,
    settings: &serde_json::Value,
    samples: &[NewSample],
) -> Result<Vec<i64>> {
    if samples.is_empty() {
        return Err(LabelingError::invalid("samples", "a batch needs at least one sample"));
    }
    if !settings.is_object() {
        return Err(LabelingError::invalid("settings", "must be a JSON object"));
    }
    for (i, s) in samples.iter().enumerate() {
        let chars = s.text.chars().count();
        if chars > MAX_SAMPLE_CHARS {
            return Err(LabelingError::invalid(
                format!("samples[{i}].text"),
                format!("is {chars} characters long, at most {MAX_SAMPLE_CHARS} allowed"),
            ));
        }
        if s.text.contains('\0') {
            return Err(LabelingError::invalid(format!("samples[{i}].text"), "contains a NUL byte"));
        }
    }
    let mut tx = pool.begin().await?;
    let prompt_ids: Vec<i64> = samples.iter().map(|s| s.prompt_id).collect();
    ensure_prompts_of_project(&mut tx, project_id, &prompt_ids).await?;
    let batch = Batch::insert(&mut tx, project_id, model_version_id, run_id, settings).await?;
    let mut ids = Vec::with_capacity(samples.len());
    for s in samples {
        ids.push(batch.insert_sample(&mut tx, s.prompt_id, &s.text, s.logprobs.as_deref()).await?);
    }
    tx.commit().await?;
    Ok(ids)
}

/// One demonstration task per prompt, in the order given; returns the task ids.
pub async fn create_demonstration_tasks(
    pool: &PgPool,
    project_id: i64,
    prompt_ids: &[i64],
) -> Result<Vec<i64>> {
    let mut seen = HashSet::new();
    if let Some(dup) = prompt_ids.iter().find(|id| !seen.insert(**id)) {
        return Err(LabelingError::invalid("prompts", format!("prompt {dup} is listed twice")));
    }
    let mut tx = pool.begin().await?;
    ensure_prompts_of_project(&mut tx, project_id, prompt_ids).await?;
    let ids = insert_demonstration_tasks(&mut tx, project_id, prompt_ids).await?;
    tx.commit().await?;
    Ok(ids)
}

async fn insert_demonstration_tasks(
    conn: &mut PgConnection,
    project_id: i64,
    prompt_ids: &[i64],
) -> Result<Vec<i64>> {
    let mut ids = Vec::with_capacity(prompt_ids.len());
    for &prompt_id in prompt_ids {
        ids.push(insert_task(conn, project_id, prompt_id, TaskKind::Demonstration, &[]).await?);
    }
    Ok(ids)
}

/// Asks for demonstrations: one demonstration task for each of the project's prompts (of
/// `split`, when given) that has none yet, oldest prompt first, at most `limit`. Returns
/// the new tasks' ids (none when every prompt already has one). Two requests at once do
/// not ask twice for a prompt: the project's row is locked while they choose.
pub async fn request_demonstrations(
    pool: &PgPool,
    project_id: i64,
    split: Option<crate::domain::Split>,
    limit: i64,
) -> Result<Vec<i64>> {
    if limit < 1 {
        return Err(LabelingError::invalid("limit", format!("must be at least 1, not {limit}")));
    }
    let mut tx = pool.begin().await?;
    require_row(&mut tx, "SELECT id FROM projects WHERE id = $1 FOR UPDATE", "project", project_id).await?;
    let prompt_ids: Vec<i64> = sqlx::query_scalar(
        "SELECT p.id FROM prompts p
         WHERE p.project_id = $1 AND ($2::split IS NULL OR p.split = $2)
           AND NOT EXISTS (SELECT 1 FROM tasks t WHERE t.prompt_id = p.id AND t.kind = 'demonstration')
         ORDER BY p.id LIMIT $3",
    )
    .bind(project_id)
    .bind(split)
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?;
    let ids = insert_demonstration_tasks(&mut tx, project_id, &prompt_ids).await?;
    tx.commit().await?;
    Ok(ids)
}

/// A ranking task showing `sample_ids` (K = their number, 2..9) at positions 0..K-1.
/// Every sample must be a sample of the prompt.
pub async fn create_ranking_task(
    pool: &PgPool,
    project_id: i64,
    prompt_id: i64,
    sample_ids: &[i64],
) -> Result<i64> {
    if !(MIN_K..=MAX_K).contains(&sample_ids.len()) {
        return Err(LabelingError::invalid(
            "samples",
            format!("a ranking task shows {MIN_K} to {MAX_K} samples, not {}", sample_ids.len()),
        ));
    }
    let mut tx = pool.begin().await?;
    check_task_samples(&mut tx, project_id, prompt_id, sample_ids).await?;
    let id = insert_task(&mut tx, project_id, prompt_id, TaskKind::Ranking, sample_ids).await?;
    tx.commit().await?;
    Ok(id)
}

/// A blind A/B task between two samples of a prompt (normally by two model versions).
/// Which one is shown as A is drawn from `rng`; the vote is attributed back to versions
/// through the sample at each position (`samples.model_version_id`).
pub fn create_comparison_task<'a>(
    pool: &'a PgPool,
    project_id: i64,
    prompt_id: i64,
    sample_a: i64,
    sample_b: i64,
    rng: &mut impl Rng,
) -> impl Future<Output = Result<i64>> + Send + 'a {
    // Drawn before the future is built, so that the future does not hold the generator.
    let sides = sides(sample_a, sample_b, rng);
    async move {
        let mut tx = pool.begin().await?;
        check_task_samples(&mut tx, project_id, prompt_id, &sides).await?;
        let id = insert_task(&mut tx, project_id, prompt_id, TaskKind::Comparison, &sides).await?;
        tx.commit().await?;
        Ok(id)
    }
}

/// `create_comparison_task` with the sides drawn from the thread's generator, for
/// callers that keep no generator of their own.
pub fn create_random_comparison_task(
    pool: &PgPool,
    project_id: i64,
    prompt_id: i64,
    sample_a: i64,
    sample_b: i64,
) -> impl Future<Output = Result<i64>> + Send + '_ {
    create_comparison_task(pool, project_id, prompt_id, sample_a, sample_b, &mut rand::rng())
}

/// The two samples in the order shown, A first: each order with probability 1/2.
fn sides(sample_a: i64, sample_b: i64, rng: &mut impl Rng) -> [i64; 2] {
    if rng.random_bool(0.5) {
        [sample_b, sample_a]
    } else {
        [sample_a, sample_b]
    }
}

/// Clear errors for what the schema's composite keys would refuse anyway: an unknown
/// prompt, a sample listed twice, and a sample of another prompt.
async fn check_task_samples(
    conn: &mut PgConnection,
    project_id: i64,
    prompt_id: i64,
    sample_ids: &[i64],
) -> Result<()> {
    let mut seen = HashSet::new();
    if let Some(dup) = sample_ids.iter().find(|id| !seen.insert(**id)) {
        return Err(LabelingError::invalid("samples", format!("sample {dup} is listed twice")));
    }
    let prompt: Option<i64> = sqlx::query_scalar("SELECT id FROM prompts WHERE id = $1 AND project_id = $2")
        .bind(prompt_id)
        .bind(project_id)
        .fetch_optional(&mut *conn)
        .await?;
    if prompt.is_none() {
        return Err(LabelingError::not_found("prompt of this project", prompt_id));
    }
    let owners: HashMap<i64, i64> =
        sqlx::query_as::<_, (i64, i64)>("SELECT id, prompt_id FROM samples WHERE id = ANY($1)")
            .bind(sample_ids)
            .fetch_all(&mut *conn)
            .await?
            .into_iter()
            .collect();
    for id in sample_ids {
        match owners.get(id) {
            None => return Err(LabelingError::not_found("sample", id)),
            Some(&owner) if owner != prompt_id => {
                return Err(LabelingError::invalid(
                    "samples",
                    format!("sample {id} is a sample of prompt {owner}, not of prompt {prompt_id}"),
                ))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// A sample batch being stored: its samples share its project, model version and settings.
pub(crate) struct Batch<'a> {
    id: i64,
    project_id: i64,
    model_version_id: Option<i64>,
    settings: &'a serde_json::Value,
}

impl<'a> Batch<'a> {
    pub(crate) async fn insert(
        conn: &mut PgConnection,
        project_id: i64,
        model_version_id: Option<i64>,
        run_id: Option<i64>,
        settings: &'a serde_json::Value,
    ) -> Result<Batch<'a>> {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO sample_batches (project_id, model_version_id, run_id, settings)
             VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(project_id)
        .bind(model_version_id)
        .bind(run_id)
        .bind(settings)
        .fetch_one(&mut *conn)
        .await?;
        Ok(Batch { id, project_id, model_version_id, settings })
    }

    /// Stores one sample of the batch; returns its id.
    pub(crate) async fn insert_sample(
        &self,
        conn: &mut PgConnection,
        prompt_id: i64,
        text: &str,
        logprobs: Option<&[f32]>,
    ) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "INSERT INTO samples (batch_id, project_id, prompt_id, text, model_version_id, settings, logprobs)
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(self.id)
        .bind(self.project_id)
        .bind(prompt_id)
        .bind(text)
        .bind(self.model_version_id)
        .bind(self.settings)
        .bind(logprobs)
        .fetch_one(&mut *conn)
        .await?)
    }
}

pub(crate) async fn insert_task(
    conn: &mut PgConnection,
    project_id: i64,
    prompt_id: i64,
    kind: TaskKind,
    sample_ids: &[i64],
) -> Result<i64> {
    // At most 9 samples: the cast cannot truncate.
    let k = sample_ids.len() as i16;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO tasks (project_id, prompt_id, kind, k) VALUES ($1, $2, $3, $4) RETURNING id",
    )
    .bind(project_id)
    .bind(prompt_id)
    .bind(kind)
    .bind(k)
    .fetch_one(&mut *conn)
    .await?;
    if !sample_ids.is_empty() {
        sqlx::query(
            "INSERT INTO task_samples (task_id, prompt_id, position, sample_id)
             SELECT $1, $2, (n - 1)::smallint, s FROM unnest($3::bigint[]) WITH ORDINALITY AS u (s, n)",
        )
        .bind(id)
        .bind(prompt_id)
        .bind(sample_ids)
        .execute(&mut *conn)
        .await?;
    }
    Ok(id)
}

/// The oldest task of project $1 that annotator $2 may take (never had it, or only
/// an expired lease of theirs), not in $3, with fewer than $4 active assignments;
/// locked with the given lock clause.
macro_rules! next_task_query {
    ($lock:literal) => {
        concat!(
            "SELECT t.id FROM tasks t
             WHERE t.project_id = $1 AND t.import_source_id IS NULL
               AND t.id <> ALL($3)
               AND NOT EXISTS (SELECT 1 FROM assignments a
                               WHERE a.task_id = t.id AND a.annotator_id = $2
                                 AND NOT (a.state = 'leased' AND a.lease_until <= now()))
               AND (SELECT count(*) FROM assignments a
                    WHERE a.task_id = t.id
                      AND (a.state = 'submitted' OR (a.state = 'leased' AND a.lease_until > now()))) < $4
             ORDER BY t.created_at, t.id
             LIMIT 1
             FOR NO KEY UPDATE OF t",
            $lock
        )
    };
}
const NEXT_TASK: &str = next_task_query!(" SKIP LOCKED");
const NEXT_TASK_WAITING: &str = next_task_query!("");

/// The next task for an annotator, leased for `lease`; `None` when no task is left
/// for them. An annotator who holds an unexpired lease in the project gets that task
/// back. Otherwise the oldest task that has fewer than `overlap` active assignments and
/// that this annotator never had (their own expired lease excepted: it is renewed).
pub async fn next_task(
    pool: &PgPool,
    project_id: i64,
    annotator_id: i64,
    lease: Duration,
) -> Result<Option<Assignment>> {
    if lease.is_zero() {
        return Err(LabelingError::invalid("lease", "must be longer than zero"));
    }
    let mut tx = pool.begin().await?;
    // Locking the annotator's row makes two tabs of one annotator take turns, so that
    // the second finds the first's lease instead of leasing a second task.
    let disabled: Option<bool> =
        sqlx::query_scalar("SELECT disabled FROM users WHERE id = $1 FOR NO KEY UPDATE")
            .bind(annotator_id)
            .fetch_optional(&mut *tx)
            .await?;
    match disabled {
        None => return Err(LabelingError::not_found("user", annotator_id)),
        Some(true) => return Err(LabelingError::Forbidden(format!("user {annotator_id} is disabled"))),
        Some(false) => {}
    }
    let overlap: i32 = sqlx::query_scalar("SELECT overlap FROM projects WHERE id = $1")
        .bind(project_id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| LabelingError::not_found("project", project_id))?;

    let held: Option<i64> = sqlx::query_scalar(
        "SELECT a.id FROM assignments a JOIN tasks t ON t.id = a.task_id
         WHERE t.project_id = $1 AND a.annotator_id = $2 AND a.state = 'leased' AND a.lease_until > now()
         ORDER BY a.leased_at, a.id LIMIT 1",
    )
    .bind(project_id)
    .bind(annotator_id)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(id) = held {
        let assignment = load_assignment(&mut tx, id).await?;
        tx.commit().await?;
        return Ok(Some(assignment));
    }

    // Tasks found full (or not renewable) after locking them, not to be tried again.
    let mut passed: Vec<i64> = Vec::new();
    // Whether to wait for a locked task: only once skipping the locked ones found none,
    // so that an annotator is never told "no task" while others merely hold a lock.
    let mut wait = false;
    loop {
        let candidate: Option<i64> = sqlx::query_scalar(if wait { NEXT_TASK_WAITING } else { NEXT_TASK })
            .bind(project_id)
            .bind(annotator_id)
            .bind(&passed)
            .bind(i64::from(overlap))
            .fetch_optional(&mut *tx)
            .await?;
        let Some(task_id) = candidate else {
            if wait {
                tx.commit().await?;
                return Ok(None);
            }
            wait = true;
            continue;
        };
        wait = false;
        // The count above may predate an assignment that another annotator's
        // transaction committed just before this one got the lock: count again, now
        // that no one else can add one.
        let active: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM assignments
             WHERE task_id = $1 AND annotator_id <> $2
               AND (state = 'submitted' OR (state = 'leased' AND lease_until > now()))",
        )
        .bind(task_id)
        .bind(annotator_id)
        .fetch_one(&mut *tx)
        .await?;
        if active >= i64::from(overlap) {
            passed.push(task_id);
            continue;
        }
        // A ranking task's samples are shown in an order of the annotator's own, drawn
        // once (a renewed lease keeps it), unless the project keeps task order.
        let leased: Option<i64> = sqlx::query_scalar(
            "INSERT INTO assignments (task_id, annotator_id, lease_until, sample_order)
             SELECT $1, $2, now() + $3 * interval '1 second',
                    CASE WHEN t.kind = 'ranking' AND p.shuffle_samples THEN
                        ARRAY(SELECT i::smallint FROM generate_series(0, t.k - 1) i ORDER BY random())
                    END
             FROM tasks t JOIN projects p ON p.id = t.project_id WHERE t.id = $1
             ON CONFLICT (task_id, annotator_id) DO UPDATE
                 SET leased_at = now(), lease_until = EXCLUDED.lease_until
                 WHERE assignments.state = 'leased'
             RETURNING id",
        )
        .bind(task_id)
        .bind(annotator_id)
        .bind(lease.as_secs_f64())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(id) = leased else {
            passed.push(task_id);
            continue;
        };
        let assignment = load_assignment(&mut tx, id).await?;
        tx.commit().await?;
        return Ok(Some(assignment));
    }
}

/// For each of `project_ids`, how many tasks "Next task" could still give the annotator:
/// the one they hold, and those `next_task` would lease them (never theirs, or only an
/// expired lease of theirs, with fewer active assignments than the project's overlap).
/// A project with none is absent.
pub async fn open_task_counts(
    pool: &PgPool,
    annotator_id: i64,
    project_ids: &[i64],
) -> Result<HashMap<i64, i64>> {
    let rows: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT t.project_id, count(*) FROM tasks t JOIN projects p ON p.id = t.project_id
         WHERE t.project_id = ANY($2) AND t.import_source_id IS NULL
           AND (EXISTS (SELECT 1 FROM assignments a
                        WHERE a.task_id = t.id AND a.annotator_id = $1
                          AND a.state = 'leased' AND a.lease_until > now())
                OR (NOT EXISTS (SELECT 1 FROM assignments a
                                WHERE a.task_id = t.id AND a.annotator_id = $1
                                  AND NOT (a.state = 'leased' AND a.lease_until <= now()))
                    AND (SELECT count(*) FROM assignments a
                         WHERE a.task_id = t.id
                           AND (a.state = 'submitted' OR (a.state = 'leased' AND a.lease_until > now())))
                        < p.overlap))
         GROUP BY t.project_id",
    )
    .bind(annotator_id)
    .bind(project_ids)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().collect())
}

/// An annotator's assignment with its prompt and samples (to show it again).
pub async fn assignment(pool: &PgPool, assignment_id: i64, annotator_id: i64) -> Result<Assignment> {
    let mut conn = pool.acquire().await?;
    let owner: Option<i64> = sqlx::query_scalar("SELECT annotator_id FROM assignments WHERE id = $1")
        .bind(assignment_id)
        .fetch_optional(&mut *conn)
        .await?;
    match owner {
        None => Err(LabelingError::not_found("assignment", assignment_id)),
        Some(owner) if owner != annotator_id => {
            Err(LabelingError::Forbidden(format!("assignment {assignment_id} is another annotator's")))
        }
        Some(_) => load_assignment(&mut conn, assignment_id).await,
    }
}

async fn load_assignment(conn: &mut PgConnection, id: i64) -> Result<Assignment> {
    let (task_id, project_id, kind, lease_until, prompt_id, prompt_text, messages): (
        i64,
        i64,
        TaskKind,
        DateTime<Utc>,
        i64,
        String,
        Option<serde_json::Value>,
    ) = sqlx::query_as(
        "SELECT a.task_id, t.project_id, t.kind, a.lease_until, p.id, p.text, p.messages
         FROM assignments a JOIN tasks t ON t.id = a.task_id JOIN prompts p ON p.id = t.prompt_id
         WHERE a.id = $1",
    )
    .bind(id)
    .fetch_one(&mut *conn)
    .await?;
    let rows = sqlx::query_as::<_, (i16, i64, String)>(
        "SELECT ts.position, s.id, s.text
         FROM assignments a JOIN task_samples ts ON ts.task_id = a.task_id JOIN samples s ON s.id = ts.sample_id
         WHERE a.id = $1
         ORDER BY coalesce(array_position(a.sample_order, ts.position), ts.position)",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await?;
    let mut samples: Vec<TaskSample> = Vec::with_capacity(rows.len());
    for (position, id, text) in rows {
        let same_as = samples.iter().find(|s| s.same_as.is_none() && s.text == text).map(|s| s.position);
        samples.push(TaskSample { id, position: usize::try_from(position).unwrap_or(0), text, same_as });
    }
    Ok(Assignment {
        id,
        task_id,
        project_id,
        kind,
        lease_until,
        // The column's check admits only well-formed conversations.
        prompt: TaskPrompt {
            id: prompt_id,
            text: prompt_text,
            messages: messages.and_then(|m| chat::messages_from_json(&m).ok()),
        },
        samples,
    })
}

/// Gives a leased task back without submitting: it goes to other annotators, never
/// again to this one.
pub async fn skip(pool: &PgPool, assignment_id: i64, annotator_id: i64) -> Result<()> {
    let skipped: Option<i64> = sqlx::query_scalar(
        "UPDATE assignments SET state = 'skipped', finished_at = now()
         WHERE id = $1 AND annotator_id = $2 AND state = 'leased' RETURNING id",
    )
    .bind(assignment_id)
    .bind(annotator_id)
    .fetch_optional(pool)
    .await?;
    if skipped.is_some() {
        return Ok(());
    }
    let row: Option<(i64, String)> =
        sqlx::query_as("SELECT annotator_id, state::text FROM assignments WHERE id = $1")
            .bind(assignment_id)
            .fetch_optional(pool)
            .await?;
    match row {
        None => Err(LabelingError::not_found("assignment", assignment_id)),
        Some((owner, _)) if owner != annotator_id => {
            Err(LabelingError::Forbidden(format!("assignment {assignment_id} is another annotator's")))
        }
        Some((_, state)) => {
            Err(LabelingError::Conflict(format!("assignment {assignment_id} is already {state}")))
        }
    }
}

/// Where an assignment stands. Maps to the Postgres enum `assignment_state`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, sqlx::Type)]
#[sqlx(type_name = "assignment_state", rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum AssignmentState {
    /// Handed out and not yet answered (its lease may have expired).
    Leased,
    Submitted,
    Skipped,
}

/// An assignment's state and whether its lease has run out, for its own annotator
/// (another annotator's assignment is `Forbidden`, as in [`assignment`]).
pub async fn assignment_state(
    pool: &PgPool,
    assignment_id: i64,
    annotator_id: i64,
) -> Result<(AssignmentState, bool)> {
    let row: Option<(i64, AssignmentState, bool)> =
        sqlx::query_as("SELECT annotator_id, state, lease_until <= now() FROM assignments WHERE id = $1")
            .bind(assignment_id)
            .fetch_optional(pool)
            .await?;
    match row {
        None => Err(LabelingError::not_found("assignment", assignment_id)),
        Some((owner, _, _)) if owner != annotator_id => {
            Err(LabelingError::Forbidden(format!("assignment {assignment_id} is another annotator's")))
        }
        Some((_, state, expired)) => Ok((state, expired)),
    }
}

/// Every prompt id names a prompt of this project; else `NotFound` for the first that does not.
async fn ensure_prompts_of_project(
    conn: &mut PgConnection,
    project_id: i64,
    prompt_ids: &[i64],
) -> Result<()> {
    let known: HashSet<i64> =
        sqlx::query_scalar("SELECT id FROM prompts WHERE project_id = $1 AND id = ANY($2)")
            .bind(project_id)
            .bind(prompt_ids)
            .fetch_all(&mut *conn)
            .await?
            .into_iter()
            .collect();
    match prompt_ids.iter().find(|id| !known.contains(id)) {
        Some(missing) => Err(LabelingError::not_found("prompt of this project", missing)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn either_sample_is_shown_as_a_about_half_the_time() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let a_first = (0..1000).filter(|_| sides(1, 2, &mut rng) == [1, 2]).count();
        assert!((400..=600).contains(&a_first), "{a_first} of 1000");
    }
}

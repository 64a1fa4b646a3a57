//! Runs: the job queue in Postgres that trainer workers share.
//!
//! A run is enqueued `queued`; a worker claims the oldest one (`FOR UPDATE SKIP LOCKED`,
//! so two workers never get the same run) and holds it under a lease that it renews with
//! [`heartbeat`]. A worker that dies stops renewing: once the lease has expired, the run
//! is claimable again and the next claim is a resume. Cancelling a running run only asks:
//! the worker learns it at its next heartbeat and calls [`finish_cancelled`].
//!
//! A worker name identifies one worker process (host and pid, say): the lease is checked
//! by it. Each claim and heartbeat also records that the worker was there (`workers`), so
//! that a queued run can say when no worker is online ([`worker_online`]).
//!
//! Researchers give a run a [`RunName`] and [`RunNotes`] to tell runs apart.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

use crate::error::{violated, RegistryError, Result, FOREIGN_KEY_VIOLATION};
pub use crate::run_status::RunStatus;

pub use spec::RunKind;

/// A run to enqueue.
#[derive(Clone, Debug)]
pub struct NewRun {
    pub project_id: Option<i64>,
    pub kind: RunKind,
    /// The stage's config; a JSON object.
    pub config: serde_json::Value,
    pub created_by: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, sqlx::FromRow)]
pub struct Run {
    pub id: i64,
    pub project_id: Option<i64>,
    pub kind: RunKind,
    /// Empty when the researcher gave none (pages then say "run #id").
    pub name: String,
    pub notes: String,
    pub config: serde_json::Value,
    pub status: RunStatus,
    pub created_by: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// The worker that holds the run, or last held it.
    pub worker: Option<String>,
    /// How many times a worker has claimed it.
    pub attempts: i32,
    pub lease_until: Option<DateTime<Utc>>,
    pub heartbeat_at: Option<DateTime<Utc>>,
    pub cancel_requested: bool,
    pub step: i64,
    pub total_steps: Option<i64>,
    /// step / total_steps, in [0, 1].
    pub progress: f32,
    pub error: Option<String>,
    /// How many workers train the run together, data-parallel (1: one alone).
    pub world_size: i32,
    /// Where the gang's ranks meet (host:port of rank 0's TCPStore), while it trains.
    pub rendezvous: Option<String>,
}

/// A run that a worker has just claimed.
#[derive(Clone, Debug, PartialEq, Serialize, sqlx::FromRow)]
pub struct ClaimedRun {
    pub id: i64,
    pub project_id: Option<i64>,
    pub kind: RunKind,
    pub config: serde_json::Value,
    /// 1 on the first claim; counts resumes and releases too.
    pub attempts: i32,
    /// The run was started before (its worker died or released it): continue from its
    /// last checkpoint rather than from scratch.
    pub resume: bool,
    /// The last step reported before this claim.
    pub step: i64,
    pub lease_until: DateTime<Utc>,
    /// The run's newest checkpoint in the artifact store (steps done, digest), recorded by
    /// [`record_checkpoint`]; a resume starts from it.
    pub checkpoint_step: Option<i64>,
    pub checkpoint_sha256: Option<String>,
    /// This worker's rank in the run's gang: 0 for the worker that claimed the run (it
    /// alone reports, checkpoints and registers), above 0 for the ranks it took along.
    pub rank: i32,
    /// How many workers train the run together (1: one alone).
    pub world_size: i32,
}

/// What a heartbeat tells the worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Heartbeat {
    Continue,
    /// Someone cancelled the run: stop, then call [`finish_cancelled`].
    CancelRequested,
}

/// One value of a metric series, such as `loss/policy` at step 120.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    pub name: String,
    pub step: i64,
    pub value: f64,
}

/// One metric's values, by step.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MetricSeries {
    pub name: String,
    pub steps: Vec<i64>,
    pub values: Vec<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, sqlx::FromRow)]
pub struct LogLine {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub line: String,
}

/// Which runs [`list`] returns: newest first.
#[derive(Clone, Debug)]
pub struct RunFilter {
    pub project_id: Option<i64>,
    pub status: Option<RunStatus>,
    pub limit: i64,
}

impl Default for RunFilter {
    fn default() -> Self {
        RunFilter { project_id: None, status: None, limit: 100 }
    }
}

const RUN_COLUMNS: &str = "id, project_id, kind, name, notes, config, status, created_by, created_at, started_at, \
     finished_at, worker, attempts, lease_until, heartbeat_at, cancel_requested, step, total_steps, progress, error, \
     world_size, rendezvous";

const MAX_METRIC_NAME: usize = 200;

/// A run's name: one line of at most [`RunName::MAX_CHARS`] characters, trimmed (the
/// `runs.name` CHECK). Empty means none.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunName(String);

impl RunName {
    pub const MAX_CHARS: usize = 200;

    pub fn parse(text: &str) -> Result<RunName> {
        let text = text.trim();
        let length = text.chars().count();
        if length > Self::MAX_CHARS || text.chars().any(char::is_control) {
            return Err(RegistryError::BadRunName(length));
        }
        Ok(RunName(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A run's notes: free text of at most [`RunNotes::MAX_CHARS`] characters (the
/// `runs.notes` CHECK), kept as written but for surrounding blank space.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunNotes(String);

impl RunNotes {
    pub const MAX_CHARS: usize = 10_000;

    pub fn parse(text: &str) -> Result<RunNotes> {
        let text = text.trim();
        let length = text.chars().count();
        if length > Self::MAX_CHARS || text.contains('\0') {
            return Err(RegistryError::BadRunNotes(length));
        }
        Ok(RunNotes(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Puts a run on the queue; returns its id.
pub async fn enqueue(pool: &PgPool, run: &NewRun) -> Result<i64> {
    enqueue_named(pool, run, &RunName::default(), &RunNotes::default()).await
}

/// The most workers one run trains on together (the `runs.world_size` CHECK).
pub const MAX_WORLD_SIZE: i32 = 64;

/// How many workers a run with this config trains on together: its `world_size`, 1 when
/// it names none.
pub fn world_size_of(config: &serde_json::Value) -> Result<i32> {
    match config.get("world_size") {
        None | Some(serde_json::Value::Null) => Ok(1),
        Some(value) => value
            .as_i64()
            .and_then(|n| i32::try_from(n).ok())
            .filter(|n| (1..=MAX_WORLD_SIZE).contains(n))
            .ok_or_else(|| RegistryError::BadWorldSize { value: value.to_string() }),
    }
}

/// Puts a run on the queue under a name and with notes; returns its id. A config with a
/// `world_size` above 1 makes a gang run (see [`claim_or_wait`]).
pub async fn enqueue_named(pool: &PgPool, run: &NewRun, name: &RunName, notes: &RunNotes) -> Result<i64> {
    if !run.config.is_object() {
        return Err(RegistryError::ConfigNotObject(json_type(&run.config)));
    }
    let world_size = world_size_of(&run.config)?;
    sqlx::query_scalar(
        "INSERT INTO runs (project_id, kind, config, created_by, name, notes, world_size)
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
    )
    .bind(run.project_id)
    .bind(run.kind)
    .bind(&run.config)
    .bind(run.created_by)
    .bind(name.as_str())
    .bind(notes.as_str())
    .bind(world_size)
    .fetch_one(pool)
    .await
    .map_err(|e| match violated(&e) {
        Some((code, c)) if code == FOREIGN_KEY_VIOLATION && c == "runs_project_id_fkey" => {
            RegistryError::ProjectNotFound(run.project_id.unwrap_or_default())
        }
        Some((code, c)) if code == FOREIGN_KEY_VIOLATION && c == "runs_created_by_fkey" => {
            RegistryError::UserNotFound(run.created_by.unwrap_or_default())
        }
        _ => e.into(),
    })
}

/// Claims the oldest run that is queued, or running under an expired lease (then it is a
/// resume), and not asked to cancel; `None` when there is none. Never makes this worker a
/// rank of another worker's gang run: see [`claim_or_wait`].
///
/// The same transaction finishes, as cancelled, running runs that were asked to cancel
/// and whose worker stopped renewing its lease: nobody else would. It also records that
/// `worker` is online.
pub async fn claim(pool: &PgPool, worker: &str, lease: Duration) -> Result<Option<ClaimedRun>> {
    claim_or_wait(pool, worker, lease, Duration::ZERO).await
}

/// [`claim`], gang-scheduled. First, a rank of a gang run that another worker's claim
/// gave this one is taken up (the returned run's `rank` is then above 0). Else the oldest
/// claimable run is claimed; one that asks for `world_size` ranks only together with
/// `world_size - 1` idle workers, which become its other ranks in the same transaction.
/// A gang is claimed whole or not at all, and no row is waited for but this worker's own,
/// so two half-claimed runs can never wait on each other. A run that cannot be staffed
/// now stays queued, and younger runs are claimed meanwhile.
///
/// When there is nothing to do, the worker is idle for `idle_for` (its poll interval,
/// with margin): another worker's claim may make it a rank until then.
pub async fn claim_or_wait(
    pool: &PgPool,
    worker: &str,
    lease: Duration,
    idle_for: Duration,
) -> Result<Option<ClaimedRun>> {
    let mut tx = pool.begin().await?;
    // Upserting this worker's row locks it until the end of the transaction: another
    // worker's claim skips it rather than waits for it.
    sqlx::query(
        "INSERT INTO workers (name, last_seen) VALUES ($1, now())
         ON CONFLICT (name) DO UPDATE SET last_seen = excluded.last_seen",
    )
    .bind(worker)
    .execute(&mut *tx)
    .await?;
    let assigned: Option<ClaimedRun> = sqlx::query_as(
        "WITH mine AS (
             SELECT k.run_id, k.rank FROM run_ranks k JOIN runs r ON r.id = k.run_id
             WHERE k.worker = $1 AND k.state = 'assigned' AND r.status = 'running'
               AND r.attempts = k.attempt AND NOT r.cancel_requested
             ORDER BY k.run_id LIMIT 1
             FOR UPDATE OF k
         )
         UPDATE run_ranks k SET state = 'training', lease_until = now() + make_interval(secs => $2),
             heartbeat_at = now()
         FROM mine, runs r
         WHERE k.run_id = mine.run_id AND k.rank = mine.rank AND r.id = k.run_id
         RETURNING r.id, r.project_id, r.kind, r.config, r.attempts, r.attempts > 1 AS resume, r.step,
             k.lease_until, r.checkpoint_step, r.checkpoint_sha256, k.rank, r.world_size",
    )
    .bind(worker)
    .bind(lease.as_secs_f64())
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(run) = assigned {
        busy(&mut tx, &[worker]).await?;
        tx.commit().await?;
        return Ok(Some(run));
    }
    sqlx::query(
        "UPDATE runs SET status = 'cancelled', finished_at = now(), lease_until = NULL
         WHERE id IN (SELECT id FROM runs
                      WHERE status = 'running' AND cancel_requested AND lease_until <= now()
                      FOR UPDATE SKIP LOCKED)",
    )
    .execute(&mut *tx)
    .await?;
    let candidates: Vec<(i64, i32, bool)> = sqlx::query_as(
        "SELECT id, world_size, started_at IS NOT NULL FROM runs
         WHERE (status = 'queued' OR (status = 'running' AND lease_until <= now()))
           AND NOT cancel_requested
         ORDER BY created_at, id
         LIMIT 16
         FOR UPDATE SKIP LOCKED",
    )
    .fetch_all(&mut *tx)
    .await?;
    for (run_id, world_size, resume) in candidates {
        let others: Vec<String> = if world_size > 1 {
            sqlx::query_scalar(
                "SELECT name FROM workers WHERE name <> $1 AND idle_until > now()
                 ORDER BY idle_until DESC, name LIMIT $2
                 FOR UPDATE SKIP LOCKED",
            )
            .bind(worker)
            .bind(i64::from(world_size - 1))
            .fetch_all(&mut *tx)
            .await?
        } else {
            Vec::new()
        };
        if others.len() + 1 < world_size as usize {
            continue;
        }
        let run: ClaimedRun = sqlx::query_as(
            "UPDATE runs r SET status = 'running', worker = $2, lease_until = now() + make_interval(secs => $3),
                 heartbeat_at = now(), started_at = coalesce(r.started_at, now()), attempts = r.attempts + 1,
                 rendezvous = NULL
             WHERE r.id = $1
             RETURNING r.id, r.project_id, r.kind, r.config, r.attempts, $4::bool AS resume, r.step,
                 r.lease_until, r.checkpoint_step, r.checkpoint_sha256, 0 AS rank, r.world_size",
        )
        .bind(run_id)
        .bind(worker)
        .bind(lease.as_secs_f64())
        .bind(resume)
        .fetch_one(&mut *tx)
        .await?;
        if world_size > 1 {
            let ranks: Vec<&str> = std::iter::once(worker).chain(others.iter().map(String::as_str)).collect();
            sqlx::query("DELETE FROM run_ranks WHERE run_id = $1").bind(run_id).execute(&mut *tx).await?;
            // Rank 0 is this worker, training from now; the others have one lease beyond
            // their next ask to take their rank up, or the gang is said to have lost them.
            sqlx::query(
                "INSERT INTO run_ranks (run_id, rank, attempt, worker, state, lease_until, heartbeat_at)
                 SELECT $1, n - 1, $2, name, CASE WHEN n = 1 THEN 'training' ELSE 'assigned' END,
                        now() + make_interval(secs => CASE WHEN n = 1 THEN $4 ELSE $4 + $5 END),
                        CASE WHEN n = 1 THEN now() END
                 FROM unnest($3::text[]) WITH ORDINALITY AS w (name, n)",
            )
            .bind(run_id)
            .bind(run.attempts)
            .bind(&ranks)
            .bind(lease.as_secs_f64())
            .bind(idle_for.as_secs_f64())
            .execute(&mut *tx)
            .await?;
            busy(&mut tx, &ranks).await?;
        } else {
            busy(&mut tx, &[worker]).await?;
        }
        tx.commit().await?;
        return Ok(Some(run));
    }
    sqlx::query("UPDATE workers SET idle_until = now() + make_interval(secs => $2) WHERE name = $1")
        .bind(worker)
        .bind(idle_for.as_secs_f64())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(None)
}

/// Marks `workers` as busy: no claim takes them as a gang's rank.
async fn busy(tx: &mut sqlx::Transaction<'_, sqlx::Postgres>, workers: &[&str]) -> Result<()> {
    sqlx::query("UPDATE workers SET idle_until = NULL WHERE name = ANY($1)")
        .bind(workers)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The worker stops waiting for work (it is shutting down): no claim takes it as a rank.
pub async fn stop_waiting(pool: &PgPool, worker: &str) -> Result<()> {
    sqlx::query("UPDATE workers SET idle_until = NULL WHERE name = $1").bind(worker).execute(pool).await?;
    Ok(())
}

/// Renews the worker's lease (and records that it is online), and says whether the run
/// was asked to cancel.
/// `LeaseLost` when the run is no longer this worker's: another worker took it after the
/// lease expired, or it was finished.
pub async fn heartbeat(pool: &PgPool, run_id: i64, worker: &str, lease: Duration) -> Result<Heartbeat> {
    let cancel_requested: Option<bool> = sqlx::query_scalar(
        "WITH present AS (
             INSERT INTO workers (name, last_seen) VALUES ($2, now())
             ON CONFLICT (name) DO UPDATE SET last_seen = excluded.last_seen
         )
         UPDATE runs SET lease_until = now() + make_interval(secs => $3), heartbeat_at = now()
         WHERE id = $1 AND worker = $2 AND status = 'running'
         RETURNING cancel_requested",
    )
    .bind(run_id)
    .bind(worker)
    .bind(lease.as_secs_f64())
    .fetch_optional(pool)
    .await?;
    match cancel_requested {
        Some(false) => Ok(Heartbeat::Continue),
        Some(true) => Ok(Heartbeat::CancelRequested),
        None => Err(lease_lost(pool, run_id, worker).await),
    }
}

/// Records the run's progress and a batch of metric values, in one statement. A resumed
/// run that reports a step again overwrites that step's values.
pub async fn report(
    pool: &PgPool,
    run_id: i64,
    worker: &str,
    step: i64,
    total_steps: Option<i64>,
    metrics: &[Metric],
) -> Result<()> {
    non_negative("a run's step", step)?;
    if let Some(total) = total_steps {
        non_negative("a run's total steps", total)?;
    }
    let mut seen = HashSet::new();
    for m in metrics {
        let length = m.name.chars().count();
        if length == 0 || length > MAX_METRIC_NAME || m.name.contains('\0') {
            return Err(RegistryError::BadMetricName(m.name.clone()));
        }
        non_negative("a metric's step", m.step)?;
        if !m.value.is_finite() {
            return Err(RegistryError::NonFiniteMetric {
                name: m.name.clone(),
                step: m.step,
                value: m.value,
            });
        }
        // ON CONFLICT DO UPDATE cannot touch one row twice in a statement.
        if !seen.insert((m.name.as_str(), m.step)) {
            return Err(RegistryError::DuplicateMetric { name: m.name.clone(), step: m.step });
        }
    }
    let names: Vec<&str> = metrics.iter().map(|m| m.name.as_str()).collect();
    let steps: Vec<i64> = metrics.iter().map(|m| m.step).collect();
    let values: Vec<f64> = metrics.iter().map(|m| m.value).collect();
    let held: bool = sqlx::query_scalar(
        "WITH progress AS (
             UPDATE runs SET step = $3, total_steps = coalesce($4, total_steps),
                 progress = CASE WHEN coalesce($4, total_steps) > 0
                                 THEN least(1.0, $3::float8 / coalesce($4, total_steps))::real
                                 ELSE progress END
             WHERE id = $1 AND worker = $2 AND status = 'running'
             RETURNING id
         ),
         written AS (
             INSERT INTO run_metrics (run_id, name, step, value)
             SELECT progress.id, m.name, m.step, m.value
             FROM progress, unnest($5::text[], $6::bigint[], $7::float8[]) AS m (name, step, value)
             ON CONFLICT (run_id, name, step) DO UPDATE SET value = excluded.value
         )
         SELECT EXISTS (SELECT 1 FROM progress)",
    )
    .bind(run_id)
    .bind(worker)
    .bind(step)
    .bind(total_steps)
    .bind(&names)
    .bind(&steps)
    .bind(&values)
    .fetch_one(pool)
    .await?;
    if held {
        Ok(())
    } else {
        Err(lease_lost(pool, run_id, worker).await)
    }
}

/// Records the run's newest checkpoint, stored in the artifact store as `sha256` after
/// `step` steps, while `worker` holds the run. Returns the digest of the checkpoint it
/// replaces (which the worker may then delete from the store), if any.
pub async fn record_checkpoint(
    pool: &PgPool,
    run_id: i64,
    worker: &str,
    step: i64,
    sha256: &str,
) -> Result<Option<String>> {
    non_negative("a checkpoint's step", step)?;
    let replaced: Option<Option<String>> = sqlx::query_scalar(
        "UPDATE runs r SET checkpoint_step = $3, checkpoint_sha256 = $4
         FROM (SELECT id, checkpoint_sha256 FROM runs WHERE id = $1 FOR UPDATE) old
         WHERE r.id = old.id AND r.worker = $2 AND r.status = 'running'
         RETURNING old.checkpoint_sha256",
    )
    .bind(run_id)
    .bind(worker)
    .bind(step)
    .bind(sha256)
    .fetch_optional(pool)
    .await?;
    match replaced {
        Some(old) => Ok(old.filter(|old| old != sha256)),
        None => Err(lease_lost(pool, run_id, worker).await),
    }
}

/// Appends lines to the run's log.
pub async fn log<S: AsRef<str>>(pool: &PgPool, run_id: i64, lines: &[S]) -> Result<()> {
    // Postgres text cannot hold NUL.
    let lines: Vec<String> = lines.iter().map(|l| l.as_ref().replace('\0', "\u{FFFD}")).collect();
    sqlx::query("INSERT INTO run_logs (run_id, line) SELECT $1, line FROM unnest($2::text[]) WITH ORDINALITY AS l (line, n) ORDER BY n")
        .bind(run_id)
        .bind(&lines)
        .execute(pool)
        .await
        .map_err(|e| match violated(&e) {
            Some((code, _)) if code == FOREIGN_KEY_VIOLATION => RegistryError::RunNotFound(run_id),
            _ => e.into(),
        })?;
    Ok(())
}

/// The worker finished the run successfully.
pub async fn finish(pool: &PgPool, run_id: i64, worker: &str) -> Result<()> {
    end(pool, run_id, worker, RunStatus::Succeeded, None).await
}

/// The run failed; `message` says why (shown on the run's page).
pub async fn fail(pool: &PgPool, run_id: i64, worker: &str, message: &str) -> Result<()> {
    let message = if message.trim().is_empty() { "failed without a message" } else { message };
    end(pool, run_id, worker, RunStatus::Failed, Some(&message.replace('\0', "\u{FFFD}"))).await
}

/// The worker stopped the run because it was asked to cancel.
pub async fn finish_cancelled(pool: &PgPool, run_id: i64, worker: &str) -> Result<()> {
    end(pool, run_id, worker, RunStatus::Cancelled, None).await
}

async fn end(pool: &PgPool, run_id: i64, worker: &str, status: RunStatus, error: Option<&str>) -> Result<()> {
    let ended = sqlx::query(
        "UPDATE runs SET status = $3, error = $4, finished_at = now(), lease_until = NULL
         WHERE id = $1 AND worker = $2 AND status = 'running'",
    )
    .bind(run_id)
    .bind(worker)
    .bind(status)
    .bind(error)
    .execute(pool)
    .await?;
    if ended.rows_affected() == 1 {
        return Ok(());
    }
    Err(match lease_lost(pool, run_id, worker).await {
        RegistryError::LeaseLost { status, .. } if status.is_finished() => {
            RegistryError::AlreadyFinished { run_id, status }
        }
        e => e,
    })
}

/// Hands the run back (the worker is shutting down): it is queued again, keeps its
/// attempts and progress, and the next claim resumes it. A run that was asked to cancel
/// is cancelled instead. Returns the run's new status.
pub async fn release(pool: &PgPool, run_id: i64, worker: &str) -> Result<RunStatus> {
    let status = sqlx::query_scalar(
        "UPDATE runs SET status = CASE WHEN cancel_requested THEN 'cancelled' ELSE 'queued' END::run_status,
             finished_at = CASE WHEN cancel_requested THEN now() END,
             worker = NULL, lease_until = NULL
         WHERE id = $1 AND worker = $2 AND status = 'running'
         RETURNING status",
    )
    .bind(run_id)
    .bind(worker)
    .fetch_optional(pool)
    .await?;
    match status {
        Some(status) => Ok(status),
        None => Err(lease_lost(pool, run_id, worker).await),
    }
}

/// Cancels a run: a queued one (or one whose worker's lease has expired) at once; a
/// running one is asked to stop, and its worker sees it at its next heartbeat. Returns
/// the status afterwards. Cancelling a cancelled run again does nothing.
pub async fn cancel(pool: &PgPool, run_id: i64) -> Result<RunStatus> {
    let status: Option<RunStatus> = sqlx::query_scalar(
        "WITH target AS (
             SELECT id, status = 'queued' OR lease_until <= now() AS at_once FROM runs
             WHERE id = $1 AND status IN ('queued', 'running')
             FOR UPDATE
         )
         UPDATE runs r SET cancel_requested = true,
             status = CASE WHEN at_once THEN 'cancelled' ELSE r.status END,
             finished_at = CASE WHEN at_once THEN now() END,
             lease_until = CASE WHEN at_once THEN NULL ELSE r.lease_until END
         FROM target WHERE r.id = target.id
         RETURNING r.status",
    )
    .bind(run_id)
    .fetch_optional(pool)
    .await?;
    if let Some(status) = status {
        return Ok(status);
    }
    // Nothing matched: the run is finished (a finished run never returns to the queue),
    // or does not exist.
    match get(pool, run_id).await?.status {
        RunStatus::Cancelled => Ok(RunStatus::Cancelled),
        status => Err(RegistryError::AlreadyFinished { run_id, status }),
    }
}

pub async fn get(pool: &PgPool, run_id: i64) -> Result<Run> {
    sqlx::query_as(&format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = $1"))
        .bind(run_id)
        .fetch_optional(pool)
        .await?
        .ok_or(RegistryError::RunNotFound(run_id))
}

/// Runs, newest first.
pub async fn list(pool: &PgPool, filter: &RunFilter) -> Result<Vec<Run>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {RUN_COLUMNS} FROM runs
         WHERE ($1::bigint IS NULL OR project_id = $1) AND ($2::run_status IS NULL OR status = $2)
         ORDER BY id DESC LIMIT $3"
    ))
    .bind(filter.project_id)
    .bind(filter.status)
    .bind(filter.limit.max(0))
    .fetch_all(pool)
    .await?)
}

/// The run's metric series, by name, each by step.
pub async fn metrics(pool: &PgPool, run_id: i64) -> Result<Vec<MetricSeries>> {
    let rows: Vec<(String, Vec<i64>, Vec<f64>)> = sqlx::query_as(
        "SELECT name, array_agg(step ORDER BY step), array_agg(value ORDER BY step)
         FROM run_metrics WHERE run_id = $1 GROUP BY name ORDER BY name",
    )
    .bind(run_id)
    .fetch_all(pool)
    .await?;
    if rows.is_empty() {
        get(pool, run_id).await?;
    }
    Ok(rows.into_iter().map(|(name, steps, values)| MetricSeries { name, steps, values }).collect())
}

/// The run's log lines after line id `after` (from the start when `None`), oldest
/// first, at most `limit`.
pub async fn logs(pool: &PgPool, run_id: i64, after: Option<i64>, limit: i64) -> Result<Vec<LogLine>> {
    let lines: Vec<LogLine> = sqlx::query_as(
        "SELECT id, at, line FROM run_logs WHERE run_id = $1 AND id > coalesce($2, 0) ORDER BY id LIMIT $3",
    )
    .bind(run_id)
    .bind(after)
    .bind(limit.max(0))
    .fetch_all(pool)
    .await?;
    if lines.is_empty() {
        get(pool, run_id).await?;
    }
    Ok(lines)
}

/// Why a worker's write to a run matched nothing.
pub(crate) async fn lease_lost(pool: &PgPool, run_id: i64, worker: &str) -> RegistryError {
    let state: Result<Option<(RunStatus, Option<String>)>, _> =
        sqlx::query_as("SELECT status, worker FROM runs WHERE id = $1")
            .bind(run_id)
            .fetch_optional(pool)
            .await;
    match state {
        Err(e) => e.into(),
        Ok(None) => RegistryError::RunNotFound(run_id),
        Ok(Some((status, holder))) => {
            RegistryError::LeaseLost { run_id, worker: worker.to_string(), status, holder }
        }
    }
}

fn non_negative(what: &'static str, value: i64) -> Result<()> {
    if value < 0 {
        return Err(RegistryError::NegativeStep { what, value });
    }
    Ok(())
}

fn json_type(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// Runs of `kind` (any kind when `None`) that `filter` admits, newest first: the run
/// queue page's filters.
pub async fn list_of_kind(pool: &PgPool, filter: &RunFilter, kind: Option<RunKind>) -> Result<Vec<Run>> {
    search(pool, filter, kind, "").await
}

/// Like [`list_of_kind`], of the runs whose name or notes contain `text` (any case);
/// every run when `text` is blank.
pub async fn search(
    pool: &PgPool,
    filter: &RunFilter,
    kind: Option<RunKind>,
    text: &str,
) -> Result<Vec<Run>> {
    let text = text.trim();
    let pattern = (!text.is_empty()).then(|| format!("%{}%", like_escaped(text)));
    Ok(sqlx::query_as(&format!(
        "SELECT {RUN_COLUMNS} FROM runs
         WHERE ($1::bigint IS NULL OR project_id = $1) AND ($2::run_status IS NULL OR status = $2)
           AND ($3::run_kind IS NULL OR kind = $3)
           AND ($5::text IS NULL OR name ILIKE $5 OR notes ILIKE $5)
         ORDER BY id DESC LIMIT $4"
    ))
    .bind(filter.project_id)
    .bind(filter.status)
    .bind(kind)
    .bind(filter.limit.max(0))
    .bind(pattern)
    .fetch_all(pool)
    .await?)
}

/// `text` for a LIKE pattern: its `%`, `_` and `\` match themselves.
fn like_escaped(text: &str) -> String {
    text.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}

/// Renames a run and replaces its notes; returns the run as it is now.
pub async fn describe(pool: &PgPool, run_id: i64, name: &RunName, notes: &RunNotes) -> Result<Run> {
    sqlx::query_as(&format!("UPDATE runs SET name = $2, notes = $3 WHERE id = $1 RETURNING {RUN_COLUMNS}"))
        .bind(run_id)
        .bind(name.as_str())
        .bind(notes.as_str())
        .fetch_optional(pool)
        .await?
        .ok_or(RegistryError::RunNotFound(run_id))
}

/// The metrics that say how a run is going at a glance, in the order a run list shows
/// them: the first [`HEADLINE_COUNT`] of these that a run reports.
pub const HEADLINE_METRICS: [&str; 8] = [
    "loss/pretrain",
    "loss/sft",
    "loss/reward",
    "val/loss",
    "val/accuracy",
    "objective/reward",
    "objective/kl",
    "eval/reward",
];
pub const HEADLINE_COUNT: usize = 3;

/// What a run list shows of a run beyond its row: its headline metrics' latest values
/// and the version it registered.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RunOutcome {
    /// (metric, value at the latest step), in [`HEADLINE_METRICS`] order.
    pub headline: Vec<(String, f64)>,
    /// The registered version as `model:n`, and its tags.
    pub registered: Option<(String, Vec<String>)>,
}

/// The outcome of each of `run_ids` (those with neither metrics nor a version are left
/// out), in two queries.
pub async fn outcomes(pool: &PgPool, run_ids: &[i64]) -> Result<HashMap<i64, RunOutcome>> {
    let latest: Vec<(i64, String, f64)> = sqlx::query_as(
        "SELECT DISTINCT ON (run_id, name) run_id, name, value FROM run_metrics
         WHERE run_id = ANY($1) AND name = ANY($2)
         ORDER BY run_id, name, step DESC",
    )
    .bind(run_ids)
    .bind(&HEADLINE_METRICS[..])
    .fetch_all(pool)
    .await?;
    let registered: Vec<(i64, String, Vec<String>)> = sqlx::query_as(
        "SELECT v.run_id, m.name || ':' || v.version, v.tags FROM model_versions v
         JOIN models m ON m.id = v.model_id WHERE v.run_id = ANY($1)",
    )
    .bind(run_ids)
    .fetch_all(pool)
    .await?;
    let mut out: HashMap<i64, RunOutcome> = HashMap::new();
    for name in HEADLINE_METRICS {
        for (run_id, _, value) in latest.iter().filter(|(_, n, _)| n == name) {
            let headline = &mut out.entry(*run_id).or_default().headline;
            if headline.len() < HEADLINE_COUNT {
                headline.push((name.to_owned(), *value));
            }
        }
    }
    for (run_id, label, tags) in registered {
        out.entry(run_id).or_default().registered = Some((label, tags));
    }
    Ok(out)
}

/// How recently a worker must have asked for a run or renewed a lease to count as
/// online: well over a worker's poll (2 s) and heartbeat (5 s) intervals, so that one
/// slow query does not make a worker look gone.
pub const WORKER_ONLINE_WITHIN: Duration = Duration::from_secs(30);

/// Whether any worker was seen within [`WORKER_ONLINE_WITHIN`].
pub async fn worker_online(pool: &PgPool) -> Result<bool> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM workers WHERE last_seen > now() - make_interval(secs => $1))",
    )
    .bind(WORKER_ONLINE_WITHIN.as_secs_f64())
    .fetch_one(pool)
    .await?)
}

/// The eval runs that evaluated any of `versions`, newest first (at most `limit`), each
/// with every version it evaluated.
pub async fn evals_of_versions(pool: &PgPool, versions: &[i64], limit: i64) -> Result<Vec<(i64, Vec<i64>)>> {
    Ok(sqlx::query_as(
        "SELECT run_id, array_agg(DISTINCT version_id ORDER BY version_id) FROM eval_samples
         WHERE run_id IN (SELECT DISTINCT run_id FROM eval_samples WHERE version_id = ANY($1))
         GROUP BY run_id ORDER BY run_id DESC LIMIT $2",
    )
    .bind(versions)
    .bind(limit.max(0))
    .fetch_all(pool)
    .await?)
}

/// The series named `names` that the runs which trained `versions` logged, by version
/// id; a version that no run trained, or whose run logged none of them, is absent.
pub async fn metrics_of_versions(
    pool: &PgPool,
    versions: &[i64],
    names: &[&str],
) -> Result<HashMap<i64, Vec<MetricSeries>>> {
    let rows: Vec<(i64, String, Vec<i64>, Vec<f64>)> = sqlx::query_as(
        "SELECT v.id, m.name, array_agg(m.step ORDER BY m.step), array_agg(m.value ORDER BY m.step)
         FROM model_versions v JOIN run_metrics m ON m.run_id = v.run_id
         WHERE v.id = ANY($1) AND m.name = ANY($2)
         GROUP BY v.id, m.name ORDER BY v.id, m.name",
    )
    .bind(versions)
    .bind(names)
    .fetch_all(pool)
    .await?;
    let mut out: HashMap<i64, Vec<MetricSeries>> = HashMap::new();
    for (version, name, steps, values) in rows {
        out.entry(version).or_default().push(MetricSeries { name, steps, values });
    }
    Ok(out)
}

/// The run's last `limit` log lines, oldest first (a run page shows the tail).
pub async fn log_tail(pool: &PgPool, run_id: i64, limit: i64) -> Result<Vec<LogLine>> {
    let lines: Vec<LogLine> = sqlx::query_as(
        "SELECT id, at, line FROM (
             SELECT id, at, line FROM run_logs WHERE run_id = $1 ORDER BY id DESC LIMIT $2
         ) tail ORDER BY id",
    )
    .bind(run_id)
    .bind(limit.max(0))
    .fetch_all(pool)
    .await?;
    if lines.is_empty() {
        get(pool, run_id).await?;
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_name_is_one_trimmed_line_of_at_most_200_characters() {
        assert_eq!(RunName::parse("  lr sweep ").unwrap().as_str(), "lr sweep");
        assert_eq!(RunName::parse(&"é".repeat(200)).unwrap().as_str().chars().count(), 200);
        assert!(matches!(RunName::parse(&"é".repeat(201)), Err(RegistryError::BadRunName(201))));
        assert!(RunName::parse("two\nlines").is_err());
    }

    #[test]
    fn run_notes_keep_their_lines_up_to_10000_characters() {
        assert_eq!(RunNotes::parse(" a\n\nb \n").unwrap().as_str(), "a\n\nb");
        assert!(RunNotes::parse(&"x".repeat(10_000)).is_ok());
        assert!(matches!(RunNotes::parse(&"x".repeat(10_001)), Err(RegistryError::BadRunNotes(10_001))));
        assert!(RunNotes::parse("nul \0 byte").is_err());
    }

    #[test]
    fn like_patterns_match_percent_and_underscore_as_themselves() {
        assert_eq!(like_escaped(r"50%_a\b"), r"50\%\_a\\b");
    }
}

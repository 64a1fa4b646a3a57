//! Gang runs: one run trained data-parallel by `world_size` workers at once.
//!
//! [`crate::runs::claim_or_wait`] claims a gang run whole: the claiming worker is rank 0
//! and takes idle workers along as the other ranks (`run_ranks`, one row per rank of the
//! run's current attempt). Rank 0 then publishes where the ranks meet
//! ([`publish_rendezvous`]: host and port of c10d's TCPStore), the other ranks wait for it
//! ([`rendezvous`]), and every rank renews its own lease ([`beat`]).
//!
//! A rank that stops renewing (its worker died) or that failed is lost: [`beat`] tells
//! every other rank, which stop. Rank 0 then gives the run back to the queue, and the next
//! claim, by whichever workers are idle then, resumes it from its last stored checkpoint.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;

use crate::error::Result;

/// One rank of a gang run's current (or last) attempt.
#[derive(Clone, Debug, PartialEq, Serialize, sqlx::FromRow)]
pub struct Rank {
    pub rank: i32,
    pub attempt: i32,
    pub worker: String,
    /// assigned (not yet taken up by its worker), training, done or lost.
    pub state: String,
    pub lease_until: DateTime<Utc>,
    pub heartbeat_at: Option<DateTime<Utc>>,
    /// The lease has run out while the rank was assigned or training: its worker is gone.
    pub expired: bool,
}

/// What a rank's heartbeat tells its worker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum GangBeat {
    Continue,
    /// Someone cancelled the run: stop.
    CancelRequested,
    /// Another rank was lost (its lease ran out or its stage failed): the gang stops, and
    /// rank 0 gives the run back to the queue.
    RankLost {
        rank: i32,
        worker: String,
    },
    /// The run is no longer this attempt's (it finished, or was claimed again).
    Over,
}

/// Where a waiting rank stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rendezvous {
    /// Rank 0 has not published its address yet.
    Waiting,
    /// host:port of rank 0's TCPStore.
    At(String),
    /// The run is no longer this attempt's: there is nothing to join.
    Over,
}

/// Rank 0 (the worker holding the run) says where the ranks meet: `address` is host:port.
pub async fn publish_rendezvous(pool: &PgPool, run_id: i64, worker: &str, address: &str) -> Result<()> {
    let published =
        sqlx::query("UPDATE runs SET rendezvous = $3 WHERE id = $1 AND worker = $2 AND status = 'running'")
            .bind(run_id)
            .bind(worker)
            .bind(address)
            .execute(pool)
            .await?;
    if published.rows_affected() == 1 {
        Ok(())
    } else {
        Err(crate::runs::lease_lost(pool, run_id, worker).await)
    }
}

/// Where attempt `attempt` of the run meets, if rank 0 has said so yet.
pub async fn rendezvous(pool: &PgPool, run_id: i64, attempt: i32) -> Result<Rendezvous> {
    let row: Option<(bool, Option<String>)> = sqlx::query_as(
        "SELECT status = 'running' AND attempts = $2 AND NOT cancel_requested, rendezvous FROM runs WHERE id = $1",
    )
    .bind(run_id)
    .bind(attempt)
    .fetch_optional(pool)
    .await?;
    Ok(match row {
        Some((true, Some(address))) => Rendezvous::At(address),
        Some((true, None)) => Rendezvous::Waiting,
        _ => Rendezvous::Over,
    })
}

/// Renews rank `rank`'s lease for `worker`, and says whether the gang goes on. Rank 0
/// renews the run's own lease with [`crate::runs::heartbeat`] besides.
pub async fn beat(
    pool: &PgPool,
    run_id: i64,
    rank: i32,
    attempt: i32,
    worker: &str,
    lease: Duration,
) -> Result<GangBeat> {
    let row: Option<(i64, bool, bool, Option<i32>, Option<String>)> = sqlx::query_as(
        "WITH mine AS (
             UPDATE run_ranks SET lease_until = now() + make_interval(secs => $5), heartbeat_at = now()
             WHERE run_id = $1 AND rank = $2 AND attempt = $3 AND worker = $4 AND state = 'training'
             RETURNING rank
         ),
         present AS (
             INSERT INTO workers (name, last_seen) VALUES ($4, now())
             ON CONFLICT (name) DO UPDATE SET last_seen = excluded.last_seen
         ),
         lost AS (
             SELECT rank, worker FROM run_ranks
             WHERE run_id = $1 AND attempt = $3 AND rank <> $2
               AND (state = 'lost' OR (state IN ('assigned', 'training') AND lease_until < now()))
             ORDER BY rank LIMIT 1
         )
         SELECT (SELECT count(*) FROM mine),
                r.status = 'running' AND r.attempts = $3,
                r.cancel_requested,
                (SELECT rank FROM lost), (SELECT worker FROM lost)
         FROM runs r WHERE r.id = $1",
    )
    .bind(run_id)
    .bind(rank)
    .bind(attempt)
    .bind(worker)
    .bind(lease.as_secs_f64())
    .fetch_optional(pool)
    .await?;
    Ok(match row {
        Some((1, true, false, None, _)) => GangBeat::Continue,
        Some((1, true, true, _, _)) => GangBeat::CancelRequested,
        Some((1, true, false, Some(rank), worker)) => {
            GangBeat::RankLost { rank, worker: worker.unwrap_or_default() }
        }
        _ => GangBeat::Over,
    })
}

/// Rank `rank`'s stage ended: `done` when it finished, else lost (it failed, or stopped
/// because the gang broke), which stops the ranks still training.
pub async fn leave(
    pool: &PgPool,
    run_id: i64,
    rank: i32,
    attempt: i32,
    worker: &str,
    done: bool,
) -> Result<()> {
    sqlx::query(
        "UPDATE run_ranks SET state = CASE WHEN $5 THEN 'done' ELSE 'lost' END, heartbeat_at = now()
         WHERE run_id = $1 AND rank = $2 AND attempt = $3 AND worker = $4 AND state IN ('assigned', 'training')",
    )
    .bind(run_id)
    .bind(rank)
    .bind(attempt)
    .bind(worker)
    .bind(done)
    .execute(pool)
    .await?;
    Ok(())
}

/// The ranks of the run's current or last attempt, by rank (none for a run on one worker).
pub async fn ranks(pool: &PgPool, run_id: i64) -> Result<Vec<Rank>> {
    Ok(sqlx::query_as(
        "SELECT rank, attempt, worker, state, lease_until, heartbeat_at,
                state IN ('assigned', 'training') AND lease_until < now() AS expired
         FROM run_ranks WHERE run_id = $1 ORDER BY rank",
    )
    .bind(run_id)
    .fetch_all(pool)
    .await?)
}

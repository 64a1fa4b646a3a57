//! Login sessions in Postgres. A browser holds a session's secret (in its encrypted
//! cookie); the database holds its SHA-256, the user, and when it was made, last used
//! and ends. A session stands while it is not revoked, its absolute end has not come,
//! it was used within the idle time, and its user is enabled. Logging out revokes it;
//! a user may end any of theirs, or all at once.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;

use crate::error::{LabelingError, Result};
use crate::users::{self, new_secret, secret_sha256, User};

/// How long sessions last: without use (`idle`) and at most (`absolute`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionLimits {
    pub idle: Duration,
    pub absolute: Duration,
}

/// A session as its user sees it in their list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct LoginSession {
    pub id: i64,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub user_agent: String,
    pub address: String,
}

/// How often a session's `last_seen_at` is written: at most once a minute, not on
/// every request.
const SEEN_EVERY_S: f64 = 60.0;

/// Starts a session for `user_id`; returns its id and the secret the browser keeps.
pub async fn start(
    pool: &PgPool,
    user_id: i64,
    limits: SessionLimits,
    user_agent: &str,
    address: &str,
) -> Result<(i64, String)> {
    let secret = new_secret();
    let id = sqlx::query_scalar(
        "INSERT INTO login_sessions (user_id, token_sha256, expires_at, user_agent, address)
         VALUES ($1, $2, now() + $3 * interval '1 second', $4, $5) RETURNING id",
    )
    .bind(user_id)
    .bind(secret_sha256(&secret).as_slice())
    .bind(limits.absolute.as_secs_f64())
    .bind(user_agent.chars().take(300).collect::<String>())
    .bind(address.chars().take(100).collect::<String>())
    .fetch_one(pool)
    .await?;
    Ok((id, secret))
}

/// The user of the session whose secret is `secret`, and the session's id, if the
/// session stands; its use is recorded. Anything else is `InvalidCredentials`.
pub async fn user_for_session(pool: &PgPool, secret: &str, limits: SessionLimits) -> Result<(User, i64)> {
    let row: Option<(i64, i64, bool)> = sqlx::query_as(
        "SELECT s.id, s.user_id, s.last_seen_at < now() - $3 * interval '1 second'
         FROM login_sessions s JOIN users u ON u.id = s.user_id
         WHERE s.token_sha256 = $1 AND s.revoked_at IS NULL AND s.expires_at > now()
           AND s.last_seen_at > now() - $2 * interval '1 second' AND NOT u.disabled",
    )
    .bind(secret_sha256(secret).as_slice())
    .bind(limits.idle.as_secs_f64())
    .bind(SEEN_EVERY_S)
    .fetch_optional(pool)
    .await?;
    let Some((id, user_id, stale)) = row else { return Err(LabelingError::InvalidCredentials) };
    if stale {
        sqlx::query("UPDATE login_sessions SET last_seen_at = now() WHERE id = $1")
            .bind(id)
            .execute(pool)
            .await?;
    }
    Ok((users::get_user(pool, user_id).await?, id))
}

/// Ends the session whose secret is `secret` (logging out); nothing if there is none.
pub async fn end(pool: &PgPool, secret: &str) -> Result<()> {
    sqlx::query(
        "UPDATE login_sessions SET revoked_at = now() WHERE token_sha256 = $1 AND revoked_at IS NULL",
    )
    .bind(secret_sha256(secret).as_slice())
    .execute(pool)
    .await?;
    Ok(())
}

/// Ends `user_id`'s session `session_id`. Another user's, or one already ended, is
/// `NotFound`.
pub async fn end_one(pool: &PgPool, user_id: i64, session_id: i64) -> Result<()> {
    let ended = sqlx::query(
        "UPDATE login_sessions SET revoked_at = now() WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL",
    )
    .bind(session_id)
    .bind(user_id)
    .execute(pool)
    .await?;
    if ended.rows_affected() == 0 {
        return Err(LabelingError::not_found("session", session_id));
    }
    Ok(())
}

/// Ends all of `user_id`'s sessions but `keep` (signing out everywhere else, or with
/// `None` everywhere); returns how many ended.
pub async fn end_all(pool: &PgPool, user_id: i64, keep: Option<i64>) -> Result<u64> {
    let ended = sqlx::query(
        "UPDATE login_sessions SET revoked_at = now()
         WHERE user_id = $1 AND revoked_at IS NULL AND id IS DISTINCT FROM $2",
    )
    .bind(user_id)
    .bind(keep)
    .execute(pool)
    .await?;
    Ok(ended.rows_affected())
}

/// `user_id`'s sessions that stand, most recently used first.
pub async fn list(pool: &PgPool, user_id: i64, limits: SessionLimits) -> Result<Vec<LoginSession>> {
    Ok(sqlx::query_as(
        "SELECT id, created_at, last_seen_at, expires_at, user_agent, address FROM login_sessions
         WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > now()
           AND last_seen_at > now() - $2 * interval '1 second'
         ORDER BY last_seen_at DESC, id DESC",
    )
    .bind(user_id)
    .bind(limits.idle.as_secs_f64())
    .fetch_all(pool)
    .await?)
}

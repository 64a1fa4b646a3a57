//! The login throttle, in Postgres. Two counts of failed logins:
//!
//! - **per account**: from `free` failures on, each one doubles a wait before the
//!   account may be tried again (1 s, 2 s, 4 s, … at most `max_wait`). A browser that
//!   has logged in as the account before (a device, [`remember_device`]) is not held by
//!   this wait, so guessing at an account slows the guesser but never locks the owner out
//!   of their own browser;
//! - **per client address**: after `per_address` failures within `window`, that address
//!   waits out the window, whichever accounts it tries.
//!
//! A count is forgotten once its last failure is `window` old (and its wait over). The
//! table is pruned of forgotten keys as failures arrive: it never grows past the keys
//! that failed recently, and nothing clears it wholesale.

use std::time::Duration;

use sqlx::PgPool;

use crate::error::Result;
use crate::users::{new_secret, secret_sha256};

/// How the throttle counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThrottleRules {
    /// Failures an account may have before it waits.
    pub free: u32,
    /// The longest an account waits between tries.
    pub max_wait: Duration,
    /// Failures an address may have within `window`.
    pub per_address: u32,
    /// How long a failure is remembered.
    pub window: Duration,
}

/// Whether a login may be tried now: `Wait` says for how many seconds it may not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Try,
    Wait { seconds: u64 },
}

/// An account's key: named by the SHA-256 of the name typed, so that any text (a NUL
/// byte, a megabyte) makes a key of one size.
fn account_key(username: &str) -> String {
    format!("account:{}", hex::encode(secret_sha256(username)))
}

fn address_key(address: &str) -> String {
    format!("address:{address}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn any_username_makes_a_key_of_one_size() {
        assert_eq!(
            super::account_key("ann").len(),
            super::account_key(&format!("a\0{}", "x".repeat(10_000))).len()
        );
        assert_ne!(super::account_key("ann"), super::account_key("bob"));
    }
}

/// Whether `username` may be tried from `address` now. `known_device` says the browser
/// has logged in as this account before: then only the address's count applies.
pub async fn check(pool: &PgPool, username: &str, address: &str, known_device: bool) -> Result<Verdict> {
    let keys = if known_device {
        vec![address_key(address)]
    } else {
        vec![account_key(username), address_key(address)]
    };
    let wait: Option<f64> = sqlx::query_scalar(
        "SELECT max(extract(epoch FROM blocked_until - now()))::float8 FROM login_throttle
         WHERE key = ANY($1) AND blocked_until > now()",
    )
    .bind(&keys)
    .fetch_one(pool)
    .await?;
    Ok(match wait {
        Some(seconds) => Verdict::Wait { seconds: seconds.ceil().max(1.0) as u64 },
        None => Verdict::Try,
    })
}

/// Counts a failed login of `username` from `address`, and forgets counts whose last
/// failure is older than the rules remember.
pub async fn record_failure(
    pool: &PgPool,
    username: &str,
    address: &str,
    rules: ThrottleRules,
) -> Result<()> {
    let window = rules.window.as_secs_f64();
    let mut tx = pool.begin().await?;
    sqlx::query(
        "DELETE FROM login_throttle
         WHERE last_failure_at < now() - $1 * interval '1 second'
           AND (blocked_until IS NULL OR blocked_until < now())",
    )
    .bind(window)
    .execute(&mut *tx)
    .await?;
    // A count whose last failure has left the window starts again from one.
    let count = "INSERT INTO login_throttle AS t (key, failures, last_failure_at) VALUES ($1, 1, now())
                 ON CONFLICT (key) DO UPDATE SET
                     failures = CASE WHEN t.last_failure_at < now() - $2 * interval '1 second'
                                     THEN 1 ELSE t.failures + 1 END,
                     last_failure_at = now()
                 RETURNING failures";
    let account: i32 =
        sqlx::query_scalar(count).bind(account_key(username)).bind(window).fetch_one(&mut *tx).await?;
    let over = account - rules.free as i32;
    if over >= 0 {
        let wait = 2f64.powi(over).min(rules.max_wait.as_secs_f64());
        sqlx::query(
            "UPDATE login_throttle SET blocked_until = now() + $2 * interval '1 second' WHERE key = $1",
        )
        .bind(account_key(username))
        .bind(wait)
        .execute(&mut *tx)
        .await?;
    }
    let from_address: i32 =
        sqlx::query_scalar(count).bind(address_key(address)).bind(window).fetch_one(&mut *tx).await?;
    if from_address >= rules.per_address as i32 {
        sqlx::query(
            "UPDATE login_throttle SET blocked_until = now() + $2 * interval '1 second' WHERE key = $1",
        )
        .bind(address_key(address))
        .bind(window)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// A successful login: the account's count is forgotten (the address's is not: one good
/// account must not wipe an address's guesses at others).
pub async fn record_success(pool: &PgPool, username: &str) -> Result<()> {
    sqlx::query("DELETE FROM login_throttle WHERE key = $1")
        .bind(account_key(username))
        .execute(pool)
        .await?;
    Ok(())
}

/// Remembers this browser as one that logged in as `user_id`; returns the secret for its
/// long-lived cookie.
pub async fn remember_device(pool: &PgPool, user_id: i64) -> Result<String> {
    let secret = new_secret();
    sqlx::query("INSERT INTO login_devices (token_sha256, user_id) VALUES ($1, $2)")
        .bind(secret_sha256(&secret).as_slice())
        .bind(user_id)
        .execute(pool)
        .await?;
    Ok(secret)
}

/// Whether the browser holding `secret` has logged in as `username` before.
pub async fn is_known_device(pool: &PgPool, secret: &str, username: &str) -> Result<bool> {
    if username.contains('\0') || secret.contains('\0') {
        return Ok(false);
    }
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM login_devices d JOIN users u ON u.id = d.user_id
                        WHERE d.token_sha256 = $1 AND u.username = $2)",
    )
    .bind(secret_sha256(secret).as_slice())
    .bind(username)
    .fetch_one(pool)
    .await?)
}

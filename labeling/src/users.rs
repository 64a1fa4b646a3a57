//! People and their credentials: argon2id password hashes, API tokens stored as SHA-256.

use std::sync::OnceLock;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use chrono::{DateTime, Utc};
use rand::RngCore;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::PgPool;

use crate::domain::{DisplayName, Password, Role, TokenName, Username};
use crate::error::{is_unique_violation, row_by, LabelingError, Result};

/// A user as the rest of plumb sees one: never with the password hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub display_name: String,
    pub role: Role,
    pub disabled: bool,
    pub created_at: DateTime<Utc>,
}

/// An API token's record; the token itself is shown once, by [`create_api_token`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct ApiToken {
    pub id: i64,
    pub user_id: i64,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// What every plaintext token starts with, so that a leaked one is recognisable (and
/// secret scanners can find it).
pub const TOKEN_PREFIX: &str = "plumb_";

const USER_COLUMNS: &str = "id, username, display_name, role, disabled, created_at";

/// Creates a user with an argon2id hash of `password`. A taken username is a `Conflict`.
pub async fn create_user(
    pool: &PgPool,
    username: &Username,
    display_name: &DisplayName,
    role: Role,
    password: &Password,
) -> Result<User> {
    let hash = hash_password(password).await?;
    let sql = format!(
        "INSERT INTO users (username, display_name, role, password_hash) VALUES ($1, $2, $3, $4)
         RETURNING {USER_COLUMNS}"
    );
    sqlx::query_as::<_, User>(&sql)
        .bind(username.as_str())
        .bind(display_name.as_str())
        .bind(role)
        .bind(hash)
        .fetch_one(pool)
        .await
        .map_err(|e| {
            if is_unique_violation(&e, Some("users_username_key")) {
                LabelingError::Conflict(format!("the username {username} is taken"))
            } else {
                e.into()
            }
        })
}

/// The user with this username and password. An unknown username, a wrong password and
/// a disabled user all give [`LabelingError::InvalidCredentials`], and all take one
/// argon2 verification, so neither the answer nor its timing tells them apart.
pub async fn authenticate(pool: &PgPool, username: &str, password: &Password) -> Result<User> {
    // A name that no username can be (a NUL byte, which Postgres cannot even take, spaces,
    // capitals) is an unknown user, checked like any other.
    let row: Option<(i64, String, bool)> = if Username::parse(username).is_err() {
        None
    } else {
        sqlx::query_as("SELECT id, password_hash, disabled FROM users WHERE username = $1")
            .bind(username)
            .fetch_optional(pool)
            .await?
    };
    let (id, stored, disabled) = match row {
        Some((id, hash, disabled)) => (Some(id), hash, disabled),
        None => (None, dummy_hash().to_owned(), true),
    };
    let matches = verify_password(password, stored).await?;
    match id {
        Some(id) if matches && !disabled => get_user(pool, id).await,
        _ => Err(LabelingError::InvalidCredentials),
    }
}

/// Disables (or re-enables) a user: a disabled user can neither log in nor use a token.
pub async fn set_disabled(pool: &PgPool, user_id: i64, disabled: bool) -> Result<()> {
    update_user(pool, user_id, "UPDATE users SET disabled = $2 WHERE id = $1", disabled).await
}

/// Replaces a user's password (with a new argon2id hash).
pub async fn set_password(pool: &PgPool, user_id: i64, password: &Password) -> Result<()> {
    let hash = hash_password(password).await?;
    update_user(pool, user_id, "UPDATE users SET password_hash = $2 WHERE id = $1", hash).await
}

/// A password made for a new user, or for one whose password an admin reset: 20
/// characters from an alphabet without look-alikes (no `0`/`o`, `1`/`l`/`i`), about 99
/// bits. It is shown once, to be passed on and changed at /account/password; only its
/// hash is stored.
pub fn one_time_password() -> Password {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
    let mut rng = rand::rng();
    let text: String =
        (0..20).map(|_| char::from(ALPHABET[rand::Rng::random_range(&mut rng, 0..ALPHABET.len())])).collect();
    Password::parse(text).expect("20 characters are a valid password")
}

/// Gives a user another role; it applies from their next request.
pub async fn set_role(pool: &PgPool, user_id: i64, role: Role) -> Result<()> {
    update_user(pool, user_id, "UPDATE users SET role = $2 WHERE id = $1", role).await
}

/// Runs `sql`, an UPDATE of the user `$1` to `value` (`$2`); no such user is a not found.
async fn update_user<V>(pool: &PgPool, user_id: i64, sql: &str, value: V) -> Result<()>
where
    V: for<'q> sqlx::Encode<'q, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send,
{
    let done = sqlx::query(sql).bind(user_id).bind(value).execute(pool).await?;
    LabelingError::unless_touched(done.rows_affected(), "user", user_id)
}

/// Creates an API token for a user and returns its id and the plaintext, which is not
/// stored anywhere (only its SHA-256 is) and cannot be shown again.
pub async fn create_api_token(pool: &PgPool, user_id: i64, name: &TokenName) -> Result<(i64, String)> {
    let user = get_user(pool, user_id).await?;
    if user.disabled {
        return Err(LabelingError::Forbidden(format!("user {} is disabled", user.username)));
    }
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    let token = format!("{TOKEN_PREFIX}{}", hex::encode(secret));
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO api_tokens (user_id, name, token_sha256) VALUES ($1, $2, $3) RETURNING id",
    )
    .bind(user_id)
    .bind(name.as_str())
    .bind(token_sha256(&token).as_slice())
    .fetch_one(pool)
    .await?;
    Ok((id, token))
}

/// The user that owns this token. An unknown or revoked token, or a disabled user, give
/// [`LabelingError::InvalidCredentials`]. Records when the token was used, at most once a
/// minute, so that a busy script does not turn every request into a row update.
pub async fn user_for_token(pool: &PgPool, token: &str) -> Result<User> {
    // A data-modifying CTE runs whether or not the outer query reads it.
    let sql = format!(
        "WITH hit AS (
             SELECT t.id AS token_id, t.last_used_at, u.*
             FROM api_tokens t JOIN users u ON u.id = t.user_id
             WHERE t.token_sha256 = $1 AND t.revoked_at IS NULL AND NOT u.disabled
         ), touch AS (
             UPDATE api_tokens SET last_used_at = now()
             FROM hit
             WHERE api_tokens.id = hit.token_id
               AND (hit.last_used_at IS NULL OR hit.last_used_at < now() - interval '1 minute')
         )
         SELECT {USER_COLUMNS} FROM hit"
    );
    sqlx::query_as::<_, User>(&sql)
        .bind(token_sha256(token).as_slice())
        .fetch_optional(pool)
        .await?
        .ok_or(LabelingError::InvalidCredentials)
}

/// Revokes one of a user's tokens; revoking it again keeps the first revocation time.
pub async fn revoke_token(pool: &PgPool, user_id: i64, token_id: i64) -> Result<()> {
    let done = sqlx::query(
        "UPDATE api_tokens SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1 AND user_id = $2",
    )
    .bind(token_id)
    .bind(user_id)
    .execute(pool)
    .await?;
    LabelingError::unless_touched(done.rows_affected(), "API token", token_id)
}

/// A user's tokens, newest first, revoked ones included.
pub async fn list_api_tokens(pool: &PgPool, user_id: i64) -> Result<Vec<ApiToken>> {
    Ok(sqlx::query_as::<_, ApiToken>(
        "SELECT id, user_id, name, created_at, last_used_at, revoked_at
         FROM api_tokens WHERE user_id = $1 ORDER BY id DESC",
    )
    .bind(user_id)
    .fetch_all(pool)
    .await?)
}

/// All users, by username.
pub async fn list_users(pool: &PgPool) -> Result<Vec<User>> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users ORDER BY username");
    Ok(sqlx::query_as::<_, User>(&sql).fetch_all(pool).await?)
}

pub async fn get_user(pool: &PgPool, user_id: i64) -> Result<User> {
    row_by(pool, &format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"), "user", user_id).await
}

pub async fn get_user_by_username(pool: &PgPool, username: &str) -> Result<User> {
    row_by(pool, &format!("SELECT {USER_COLUMNS} FROM users WHERE username = $1"), "user", username).await
}

fn token_sha256(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// argon2id, version 19, the crate's default cost (19 MiB, 2 passes, 1 lane), off the
/// async threads: a hash takes tens of milliseconds of CPU.
async fn hash_password(password: &Password) -> Result<String> {
    let password = password.clone();
    tokio::task::spawn_blocking(move || hash_password_blocking(&password))
        .await
        .map_err(|e| LabelingError::PasswordHash(e.to_string()))?
}

fn hash_password_blocking(password: &Password) -> Result<String> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| LabelingError::PasswordHash(e.to_string()))?;
    Argon2::default()
        .hash_password(password.expose_secret().as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| LabelingError::PasswordHash(e.to_string()))
}

/// Whether `password` matches the PHC string `stored`; the cost is read from `stored`.
async fn verify_password(password: &Password, stored: String) -> Result<bool> {
    let password = password.clone();
    tokio::task::spawn_blocking(move || {
        let parsed = PasswordHash::new(&stored).map_err(|e| LabelingError::PasswordHash(e.to_string()))?;
        Ok(Argon2::default().verify_password(password.expose_secret().as_bytes(), &parsed).is_ok())
    })
    .await
    .map_err(|e| LabelingError::PasswordHash(e.to_string()))?
}

/// A hash of a random password with the same cost as real ones, verified against when
/// the username is unknown so that the answer takes as long as for a real user.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let mut random = [0u8; 24];
        rand::rng().fill_bytes(&mut random);
        let password = Password::parse(hex::encode(random)).expect("48 hex digits are a valid password");
        hash_password_blocking(&password).expect("argon2 with its default parameters cannot fail")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_hash_is_argon2id_version_19_and_verifies() {
        let password = Password::parse("correct horse battery").unwrap();
        let hash = hash_password_blocking(&password).unwrap();
        assert!(hash.starts_with("$argon2id$v=19$"), "{hash}");
        let parsed = PasswordHash::new(&hash).unwrap();
        assert!(Argon2::default().verify_password(b"correct horse battery", &parsed).is_ok());
        assert!(Argon2::default().verify_password(b"wrong horse battery", &parsed).is_err());
    }

    #[test]
    fn two_hashes_of_one_password_differ_by_their_salt() {
        let password = Password::parse("correct horse battery").unwrap();
        assert_ne!(hash_password_blocking(&password).unwrap(), hash_password_blocking(&password).unwrap());
    }

    #[test]
    fn the_dummy_hash_has_the_cost_of_a_real_one() {
        let real = hash_password_blocking(&Password::parse("12345678").unwrap()).unwrap();
        let params = |h: &str| h.split('$').nth(3).unwrap().to_owned();
        assert_eq!(params(dummy_hash()), params(&real));
    }
}

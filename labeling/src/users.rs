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
    pub scope: TokenScope,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// When it was last used, to the minute (see [`user_for_token`]).
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl ApiToken {
    /// "revoked", "expired" or "active": whether it works now, and if not, why.
    pub fn state(&self) -> &'static str {
        if self.revoked_at.is_some() {
            "revoked"
        } else if self.expires_at <= Utc::now() {
            "expired"
        } else {
            "active"
        }
    }
}

/// What an API token may do. Maps to the Postgres enum `token_scope`. A request with a
/// token acts with the lower of its user's role and its scope ([`TokenScope::cap`]), so
/// that every role check in the app applies the scope without knowing of tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, sqlx::Type)]
#[sqlx(type_name = "token_scope", rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum TokenScope {
    /// Only what an annotator may do: take and answer tasks, read one's own work.
    Annotate,
    /// Whatever the token's user may do.
    Research,
}

impl TokenScope {
    pub const ALL: [TokenScope; 2] = [TokenScope::Annotate, TokenScope::Research];

    pub fn as_str(self) -> &'static str {
        match self {
            TokenScope::Annotate => "annotate",
            TokenScope::Research => "research",
        }
    }

    pub fn parse(s: &str) -> Result<TokenScope> {
        TokenScope::ALL
            .into_iter()
            .find(|scope| scope.as_str() == s.trim())
            .ok_or_else(|| LabelingError::invalid("scope", format!("{s:?} is not annotate or research")))
    }

    /// The scope of a token made without asking for one: what its user's role may do.
    pub fn default_for(role: Role) -> TokenScope {
        match role {
            Role::Annotator => TokenScope::Annotate,
            Role::Researcher | Role::Admin => TokenScope::Research,
        }
    }

    /// The role that a request with a token of this scope acts with, for a user of `role`:
    /// never more than the scope allows.
    pub fn cap(self, role: Role) -> Role {
        match self {
            TokenScope::Annotate => Role::Annotator,
            TokenScope::Research => role,
        }
    }

    /// The scopes a user of `role` may give a token: none above their own role.
    pub fn allowed_for(role: Role) -> Vec<TokenScope> {
        match role {
            Role::Annotator => vec![TokenScope::Annotate],
            Role::Researcher | Role::Admin => TokenScope::ALL.to_vec(),
        }
    }
}

impl std::fmt::Display for TokenScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How long a new API token works, in days: 1 to 365, 90 unless asked otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenLifetime(u16);

impl TokenLifetime {
    pub const DEFAULT: TokenLifetime = TokenLifetime(90);
    pub const MAX_DAYS: i64 = 365;
    /// The lifetimes the tokens page offers.
    pub const CHOICES: [u16; 4] = [7, 30, 90, 365];

    /// `days` as a lifetime; outside 1..=365 it is refused naming `expires_in_days`.
    pub fn parse(days: i64) -> Result<TokenLifetime> {
        match u16::try_from(days) {
            Ok(days) if (1..=Self::MAX_DAYS).contains(&i64::from(days)) => Ok(TokenLifetime(days)),
            _ => Err(LabelingError::invalid(
                "expires_in_days",
                format!("must be a whole number of days from 1 to {}, not {days}", Self::MAX_DAYS),
            )),
        }
    }

    pub fn days(self) -> u16 {
        self.0
    }
}

/// A token to make: its name, the scope asked for (none: [`TokenScope::default_for`] the
/// user's role) and how long it works.
#[derive(Debug, Clone)]
pub struct NewApiToken {
    pub name: TokenName,
    pub scope: Option<TokenScope>,
    pub lifetime: TokenLifetime,
}

/// What every plaintext token starts with, so that a leaked one is recognisable (and
/// secret scanners can find it).
pub const TOKEN_PREFIX: &str = "plumb_";

const USER_COLUMNS: &str = "id, username, display_name, role, disabled, created_at";

const TOKEN_COLUMNS: &str = "id, user_id, name, scope, created_at, expires_at, last_used_at, revoked_at";

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
    update_user(pool, user_id, "UPDATE users SET disabled = $2 WHERE id = $1", disabled).await?;
    if disabled {
        // Their login sessions end for good: enabling them again does not revive one.
        crate::sessions::end_all(pool, user_id, None).await?;
    }
    Ok(())
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

/// Creates an API token for a user with the defaults (the scope of their role, 90 days)
/// and returns its id and the plaintext, which cannot be shown again.
pub async fn create_api_token(pool: &PgPool, user_id: i64, name: &TokenName) -> Result<(i64, String)> {
    let new = NewApiToken { name: name.clone(), scope: None, lifetime: TokenLifetime::DEFAULT };
    let (record, token) = create_scoped_api_token(pool, user_id, &new).await?;
    Ok((record.id, token))
}

/// Creates an API token for a user and returns its record and the plaintext, which is
/// not stored anywhere (only its SHA-256 is) and cannot be shown again. A scope above
/// the user's role (a research token for an annotator) is refused naming `scope`.
pub async fn create_scoped_api_token(
    pool: &PgPool,
    user_id: i64,
    new: &NewApiToken,
) -> Result<(ApiToken, String)> {
    let user = get_user(pool, user_id).await?;
    if user.disabled {
        return Err(LabelingError::Forbidden(format!("user {} is disabled", user.username)));
    }
    let scope = new.scope.unwrap_or(TokenScope::default_for(user.role));
    if !TokenScope::allowed_for(user.role).contains(&scope) {
        return Err(LabelingError::invalid("scope", format!("an {} cannot make a {scope} token", user.role)));
    }
    let token = format!("{TOKEN_PREFIX}{}", new_secret());
    let sql = format!(
        "INSERT INTO api_tokens (user_id, name, token_sha256, scope, expires_at)
         VALUES ($1, $2, $3, $4, now() + make_interval(days => $5))
         RETURNING {TOKEN_COLUMNS}"
    );
    let record = sqlx::query_as::<_, ApiToken>(&sql)
        .bind(user_id)
        .bind(new.name.as_str())
        .bind(secret_sha256(&token).as_slice())
        .bind(scope)
        .bind(i32::from(new.lifetime.days()))
        .fetch_one(pool)
        .await?;
    Ok((record, token))
}

/// A token found by its hash, with what decides whether it still works.
#[derive(sqlx::FromRow)]
struct TokenHolder {
    scope: TokenScope,
    revoked_at: Option<DateTime<Utc>>,
    expires_at: DateTime<Utc>,
    expired: bool,
    #[sqlx(flatten)]
    user: User,
}

/// The user that this token acts as, with the role it acts with: the lower of the user's
/// role and the token's scope ([`TokenScope::cap`]), so that an `annotate` token of a
/// researcher is refused researchers' routes. An unknown token or a disabled user give
/// [`LabelingError::InvalidCredentials`]; a revoked or expired token,
/// [`LabelingError::TokenRefused`] saying which. Records when the token was used, at
/// most once a minute, so that a busy script does not turn every request into a row
/// update.
pub async fn user_for_token(pool: &PgPool, token: &str) -> Result<User> {
    // A data-modifying CTE runs whether or not the outer query reads it.
    let sql = format!(
        "WITH hit AS (
             SELECT t.id AS token_id, t.last_used_at, t.scope, t.revoked_at, t.expires_at,
                    t.expires_at <= now() AS expired, u.*
             FROM api_tokens t JOIN users u ON u.id = t.user_id
             WHERE t.token_sha256 = $1
         ), touch AS (
             UPDATE api_tokens SET last_used_at = now()
             FROM hit
             WHERE api_tokens.id = hit.token_id
               AND hit.revoked_at IS NULL AND NOT hit.expired AND NOT hit.disabled
               AND (hit.last_used_at IS NULL OR hit.last_used_at < now() - interval '1 minute')
         )
         SELECT scope, revoked_at, expires_at, expired, {USER_COLUMNS} FROM hit"
    );
    let holder = sqlx::query_as::<_, TokenHolder>(&sql)
        .bind(secret_sha256(token).as_slice())
        .fetch_optional(pool)
        .await?
        .ok_or(LabelingError::InvalidCredentials)?;
    let minute = |at: DateTime<Utc>| at.format("%Y-%m-%d %H:%M UTC").to_string();
    match holder {
        TokenHolder { user, .. } if user.disabled => Err(LabelingError::InvalidCredentials),
        TokenHolder { revoked_at: Some(at), .. } => {
            Err(LabelingError::TokenRefused(format!("this API token was revoked at {}", minute(at))))
        }
        TokenHolder { expired: true, expires_at, .. } => {
            Err(LabelingError::TokenRefused(format!("this API token expired at {}", minute(expires_at))))
        }
        TokenHolder { scope, mut user, .. } => {
            user.role = scope.cap(user.role);
            Ok(user)
        }
    }
}

/// Revokes one of a user's tokens, for good, and returns its record. Revoking it again
/// is harmless: it keeps the first revocation time (the database refuses any other
/// change to it). Another user's token, or none, is not found.
pub async fn revoke_token(pool: &PgPool, user_id: i64, token_id: i64) -> Result<ApiToken> {
    let sql = format!(
        "UPDATE api_tokens SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1 AND user_id = $2
         RETURNING {TOKEN_COLUMNS}"
    );
    sqlx::query_as::<_, ApiToken>(&sql)
        .bind(token_id)
        .bind(user_id)
        .fetch_optional(pool)
        .await?
        .ok_or_else(|| LabelingError::not_found("API token", token_id))
}

/// A user's tokens, newest first, revoked and expired ones included.
pub async fn list_api_tokens(pool: &PgPool, user_id: i64) -> Result<Vec<ApiToken>> {
    let sql = format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE user_id = $1 ORDER BY id DESC");
    Ok(sqlx::query_as::<_, ApiToken>(&sql).bind(user_id).fetch_all(pool).await?)
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

/// The SHA-256 of a secret (an API token, a login session's or a remembered browser's):
/// what the database keeps instead of the secret.
pub(crate) fn secret_sha256(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// A new secret: 32 random bytes, as hex.
pub(crate) fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
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

    #[test]
    fn an_annotate_token_acts_as_an_annotator_whatever_its_users_role() {
        for role in Role::ALL {
            assert_eq!(TokenScope::Annotate.cap(role), Role::Annotator);
            assert_eq!(TokenScope::Research.cap(role), role);
        }
    }

    #[test]
    fn an_annotator_may_make_only_annotate_tokens_and_others_either() {
        assert_eq!(TokenScope::allowed_for(Role::Annotator), [TokenScope::Annotate]);
        assert_eq!(TokenScope::allowed_for(Role::Researcher), TokenScope::ALL);
        assert_eq!(TokenScope::allowed_for(Role::Admin), TokenScope::ALL);
        assert_eq!(TokenScope::default_for(Role::Annotator), TokenScope::Annotate);
        assert_eq!(TokenScope::default_for(Role::Researcher), TokenScope::Research);
    }

    #[test]
    fn a_lifetime_outside_one_to_365_days_is_refused_naming_expires_in_days() {
        assert_eq!(TokenLifetime::parse(1).unwrap().days(), 1);
        assert_eq!(TokenLifetime::parse(365).unwrap().days(), 365);
        for days in [0, -7, 366, 70_000] {
            match TokenLifetime::parse(days) {
                Err(LabelingError::Invalid { field, .. }) => assert_eq!(field, "expires_in_days"),
                other => panic!("{days} days: {other:?}"),
            }
        }
    }

    #[test]
    fn a_scope_is_annotate_or_research() {
        assert_eq!(TokenScope::parse("research").unwrap(), TokenScope::Research);
        assert!(
            matches!(TokenScope::parse("admin"), Err(LabelingError::Invalid { field, .. }) if field == "scope")
        );
    }
}

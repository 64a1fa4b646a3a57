//! The one error type of the labeling library.
//!
//! Values rejected by a `parse` are `Invalid` (the web layer shows them to the person
//! who typed them); a missing row is `NotFound`; a rule about who may do what is
//! `Forbidden`; a clash with existing data is `Conflict`; anything the database itself
//! reports keeps its cause in `Sql`.

/// Everything that can go wrong in `labeling`.
#[derive(Debug, thiserror::Error)]
pub enum LabelingError {
    /// A value was rejected before it reached the database.
    #[error("invalid {field}: {reason}")]
    Invalid { field: String, reason: String },
    /// A row that the caller named does not exist.
    #[error("{what} {id} not found")]
    NotFound { what: &'static str, id: String },
    /// The caller may not do this (wrong role, not a member, wrong annotator).
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The request clashes with data already stored (a taken name, a finished task).
    #[error("conflict: {0}")]
    Conflict(String),
    /// Username or password wrong, the user disabled, or an API token unknown: one error
    /// for all, so that the answer does not tell which.
    #[error("invalid credentials")]
    InvalidCredentials,
    /// An API token that exists but no longer works (revoked or expired), saying which:
    /// its holder may learn it, since the token itself is the proof of having had it.
    #[error("{0}")]
    TokenRefused(String),
    /// An upload refused as a whole (too large, too many lines, not a table).
    #[error("upload refused: {0}")]
    UploadRefused(String),
    /// Hashing a password failed (argon2 reports only parameter errors).
    #[error("password hashing failed: {0}")]
    PasswordHash(String),
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
}

impl LabelingError {
    /// An `Invalid` for `field` with a reason.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        LabelingError::Invalid { field: field.into(), reason: reason.into() }
    }

    /// A `NotFound` for the row `what` with id `id`.
    pub fn not_found(what: &'static str, id: impl ToString) -> Self {
        LabelingError::NotFound { what, id: id.to_string() }
    }

    /// `Ok` when a statement touched a row; otherwise `what` `id` does not exist.
    pub(crate) fn unless_touched(rows: u64, what: &'static str, id: impl ToString) -> Result<()> {
        if rows == 0 {
            Err(LabelingError::not_found(what, id))
        } else {
            Ok(())
        }
    }
}

/// `Result` with [`LabelingError`].
pub type Result<T> = std::result::Result<T, LabelingError>;

/// `NotFound` for `what` `id` unless `sql`, given `id` as `$1`, returns a row (`SELECT id
/// FROM projects WHERE id = $1`; with `FOR UPDATE` it also locks the row).
pub(crate) async fn require_row(
    conn: &mut sqlx::PgConnection,
    sql: &str,
    what: &'static str,
    id: i64,
) -> Result<()> {
    let found: Option<i64> = sqlx::query_scalar(sql).bind(id).fetch_optional(conn).await?;
    match found {
        Some(_) => Ok(()),
        None => Err(LabelingError::not_found(what, id)),
    }
}

/// The one row that `sql` selects by its `$1`, `key`; none is a "`what` `key` not found".
pub(crate) async fn row_by<T, K>(pool: &sqlx::PgPool, sql: &str, what: &'static str, key: K) -> Result<T>
where
    T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin,
    K: for<'q> sqlx::Encode<'q, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + ToString + Clone + Send,
{
    let found = sqlx::query_as::<_, T>(sql).bind(key.clone()).fetch_optional(pool).await?;
    found.ok_or_else(|| LabelingError::not_found(what, key))
}

/// True when `err` is Postgres' unique violation (SQLSTATE 23505) on `constraint`
/// (any constraint when `None`).
pub(crate) fn is_unique_violation(err: &sqlx::Error, constraint: Option<&str>) -> bool {
    match err {
        sqlx::Error::Database(db) => {
            db.code().as_deref() == Some("23505") && constraint.is_none_or(|c| db.constraint() == Some(c))
        }
        _ => false,
    }
}

/// The constraint named by a foreign-key violation (SQLSTATE 23503), `""` when Postgres
/// names none; `None` for any other error.
pub(crate) fn foreign_key_violation(err: &sqlx::Error) -> Option<&str> {
    match err {
        sqlx::Error::Database(db) if db.code().as_deref() == Some("23503") => {
            Some(db.constraint().unwrap_or_default())
        }
        _ => None,
    }
}

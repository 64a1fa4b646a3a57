//! The audit log: who created, disabled, re-enabled, re-roled or reset the password of a
//! user, who pointed or removed a model alias, who made or revoked an API token, and who
//! launched or cancelled a run, and when. Append-only (the database
//! refuses to update or delete an entry), so an admin can trust what it says.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::{PgExecutor, PgPool};

use crate::error::{LabelingError, Result};

/// What an entry records, stored as `subject.verb`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    UserCreate,
    UserDisable,
    UserEnable,
    UserRole,
    UserPasswordReset,
    AliasSet,
    AliasDelete,
    TokenCreate,
    TokenRevoke,
    RunLaunch,
    RunCancel,
}

impl Action {
    pub const ALL: [Action; 11] = [
        Action::UserCreate,
        Action::UserDisable,
        Action::UserEnable,
        Action::UserRole,
        Action::UserPasswordReset,
        Action::AliasSet,
        Action::AliasDelete,
        Action::TokenCreate,
        Action::TokenRevoke,
        Action::RunLaunch,
        Action::RunCancel,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::UserCreate => "user.create",
            Action::UserDisable => "user.disable",
            Action::UserEnable => "user.enable",
            Action::UserRole => "user.role",
            Action::UserPasswordReset => "user.password_reset",
            Action::AliasSet => "alias.set",
            Action::AliasDelete => "alias.delete",
            Action::TokenCreate => "token.create",
            Action::TokenRevoke => "token.revoke",
            Action::RunLaunch => "run.launch",
            Action::RunCancel => "run.cancel",
        }
    }

    /// The action named `s`; anything else is an invalid `action`.
    pub fn parse(s: &str) -> Result<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == s.trim()).ok_or_else(|| {
            let known: Vec<&str> = Action::ALL.iter().map(|a| a.as_str()).collect();
            LabelingError::invalid("action", format!("{s:?} is not one of {}", known.join(", ")))
        })
    }
}

/// One entry of the log, with the username of whoever made the change.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct Entry {
    pub id: i64,
    pub at: DateTime<Utc>,
    /// The user who made the change; `None` for the command line.
    pub actor_id: Option<i64>,
    pub actor: Option<String>,
    /// `subject.verb`: kept as text, so that entries of actions this build does not know
    /// still read.
    pub action: String,
    pub subject: String,
    pub details: Value,
}

/// How an entry names a user: `user ann`.
pub fn user_subject(username: &str) -> String {
    format!("user {username}")
}

/// How an entry names a model's alias: `alias policy@prod`.
pub fn alias_subject(model: &str, alias: &str) -> String {
    format!("alias {model}@{alias}")
}

/// How an entry names an API token: `token script (#4)`.
pub fn token_subject(name: &str, id: i64) -> String {
    format!("token {name} (#{id})")
}

/// How an entry names a run: `run #12`.
pub fn run_subject(id: i64) -> String {
    format!("run #{id}")
}

/// Appends an entry: `actor` (`None` for the command line) did `action` to `subject`;
/// `details` (a JSON object) says the rest.
pub async fn record<'e>(
    executor: impl PgExecutor<'e>,
    actor: Option<i64>,
    action: Action,
    subject: &str,
    details: Value,
) -> Result<()> {
    sqlx::query("INSERT INTO audit_log (actor_id, action, subject, details) VALUES ($1, $2, $3, $4)")
        .bind(actor)
        .bind(action.as_str())
        .bind(subject)
        .bind(details)
        .execute(executor)
        .await?;
    Ok(())
}

/// Entries newest first, of one action or all, `limit` of them after skipping `offset`.
pub async fn list(pool: &PgPool, action: Option<Action>, limit: i64, offset: i64) -> Result<Vec<Entry>> {
    Ok(sqlx::query_as::<_, Entry>(
        "SELECT a.id, a.at, a.actor_id, u.username AS actor, a.action, a.subject, a.details
         FROM audit_log a LEFT JOIN users u ON u.id = a.actor_id
         WHERE $1::text IS NULL OR a.action = $1
         ORDER BY a.id DESC LIMIT $2 OFFSET $3",
    )
    .bind(action.map(Action::as_str))
    .bind(limit)
    .bind(offset)
    .fetch_all(pool)
    .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_parses_from_its_own_name() {
        for action in Action::ALL {
            assert_eq!(Action::parse(action.as_str()).unwrap(), action);
        }
    }

    #[test]
    fn an_unknown_action_is_an_invalid_action_naming_the_known_ones() {
        match Action::parse("user.delete") {
            Err(LabelingError::Invalid { field, reason }) => {
                assert_eq!(field, "action");
                assert!(reason.contains("user.password_reset"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }
}

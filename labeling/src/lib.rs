//! The annotation domain and its Postgres access: users, projects, prompts,
//! demonstrations, samples, rankings, A/B votes, assignment, agreement, dataset
//! snapshots and export.
//!
//! Values that reach the database are built through `parse` functions that reject what
//! is invalid (`PromptText::parse`, `Ranking::parse`, ...); functions that write take a
//! `&PgPool` or a `&mut Transaction` and keep what belongs together in one transaction.

pub mod ab;
pub mod agreement;
pub mod annotation;
pub mod annotator_stats;
pub mod audit;
pub mod consensus;
pub mod domain;
pub mod error;
pub mod formats;
pub mod imports;
pub mod leaderboard;
pub mod projects;
pub mod prompts;
pub mod samples;
pub mod sessions;
pub mod snapshots;
pub mod submit;
pub mod tasks;
pub mod throttle;
pub mod users;

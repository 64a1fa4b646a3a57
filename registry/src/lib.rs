//! Runs (the Postgres job queue), run metrics, model versions, lineage, aliases and the
//! artifact store; and where the database is (`db`).

pub mod artifacts;
pub mod db;
pub mod error;
pub mod eval_config;
pub mod evals;
mod run_status;
pub mod runs;
pub mod versions;

//! Runs (the Postgres job queue), run metrics, model versions, lineage, aliases and the
//! artifact store; and where the database is (`db`).

pub mod artifacts;
pub mod db;
pub mod error;
/// The rules of an eval run's skills and probes (the run contract's).
pub use spec::eval as eval_config;
pub mod evals;
pub mod gangs;
pub mod probe_stats;
mod run_status;
pub mod runs;
pub mod versions;

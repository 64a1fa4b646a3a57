//! The annotation domain and its Postgres access: users, projects, prompts,
//! demonstrations, samples, rankings, A/B votes, assignment, agreement, dataset
//! snapshots and export. Filled in by the "Postgres data platform" issue.

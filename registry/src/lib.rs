//! Runs (the Postgres job queue), run metrics, model versions, lineage, aliases and the
//! artifact store. Filled in by the "Postgres data platform" issue.

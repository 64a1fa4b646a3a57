//! The model versions a run names, each resolved to its registry record and its
//! checkpoint on this machine: what `stages` prepares and `eval` reads.

use std::path::PathBuf;

use registry::artifacts::ArtifactStore;
use registry::versions::{self, ModelVersion};
use sqlx::PgPool;

use super::Stop;

/// A model version the run reads, with its checkpoint on this machine.
pub(super) struct Resolved {
    pub(super) version: ModelVersion,
    pub(super) dir: PathBuf,
}

impl Resolved {
    /// `model:N`, as researchers write it.
    pub(super) fn name(&self) -> String {
        format!("{}:{}", self.version.model, self.version.version)
    }
}

/// The version `reference` names (`field`: the run config's field that names it, for
/// the error), with its checkpoint from the artifact store, every file's digest checked.
pub(super) async fn resolve(
    pool: &PgPool,
    store: &ArtifactStore,
    field: &str,
    reference: &str,
) -> Result<Resolved, Stop> {
    let version = versions::resolve(pool, reference)
        .await
        .map_err(|e| Stop::Failed(format!("{field} {reference:?}: {e}")))?;
    let sha = version.artifact_sha256.clone();
    let store = store.clone();
    // `get` checks every file's digest: a changed or truncated checkpoint is an error
    // naming the file, not a model silently trained from bad weights.
    let dir = tokio::task::spawn_blocking(move || store.get(&sha))
        .await
        .map_err(|e| Stop::Failed(e.to_string()))?
        .map_err(|e| {
            Stop::Failed(format!("{field} {reference:?} ({}:{}): {e}", version.model, version.version))
        })?;
    Ok(Resolved { version, dir })
}

//! `plumb import --model-dir DIR --name NAME`: registers an existing GPT-2-format
//! checkpoint (config.json + model.safetensors, such as a real GPT-2) as a base version
//! that runs can start from.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use registry::artifacts::{ArtifactStore, StoreSettings};
use registry::versions::{self, ModelKind, NewVersion};
use serde_json::json;
use trainer::LanguageModel;

#[derive(Args)]
pub struct ImportArgs {
    /// The checkpoint directory: config.json and model.safetensors (Hugging Face GPT-2
    /// format, or one plumb wrote).
    #[arg(long)]
    model_dir: PathBuf,
    /// The model to register it under; the version number is the model's next.
    #[arg(long)]
    name: String,
    /// plumb's state directory: the private cluster in `pg/`, the artifact store in
    /// `artifacts/` (unless PLUMB_ARTIFACTS names another directory or an
    /// `s3://bucket/prefix`).
    #[arg(long, env = "PLUMB_HOME", default_value = ".plumb")]
    home: PathBuf,
}

pub fn run(args: ImportArgs) -> Result<()> {
    let store = ArtifactStore::open(&StoreSettings::from_env(&args.home, |k| std::env::var(k).ok())?)?;
    super::with_database(&args.home, async |pool| {
        let (version, already) = import_checkpoint(&pool, &store, &args.model_dir, &args.name).await?;
        println!(
            "{}",
            json!({ "model": version.model, "version": version.version, "id": version.id,
                    "sha256": version.artifact_sha256, "already_registered": already })
        );
        Ok(())
    })
}

/// Stores the checkpoint in `dir` and registers it as a base version of `name`; the same
/// files again are the version they already are (then `true`).
pub(crate) async fn import_checkpoint(
    pool: &sqlx::PgPool,
    store: &ArtifactStore,
    dir: &std::path::Path,
    name: &str,
) -> Result<(versions::ModelVersion, bool)> {
    // Loading checks the files before anything is stored: a missing tensor, a wrong
    // shape or a bad config is an error naming the file and the key.
    let model = LanguageModel::load(dir, trainer::tch::Device::Cpu)
        .with_context(|| format!("{} is not a GPT-2 checkpoint plumb can load", dir.display()))?;
    let (store, src) = (store.clone(), dir.to_owned());
    let artifact = tokio::task::spawn_blocking(move || store.put_dir(&src)).await??;
    let existing = versions::list_versions(pool, name).await.unwrap_or_default();
    if let Some(version) = existing.into_iter().find(|v| v.artifact_sha256 == artifact.sha256) {
        return Ok((version, true));
    }
    let config = json!({
        "imported_from": dir.canonicalize().unwrap_or(dir.to_owned()),
        "model": serde_json::to_value(&model.config)?,
        "tokenizer": model.tokenizer.kind(),
    });
    let version = versions::register(
        pool,
        &NewVersion {
            model: name.to_owned(),
            kind: ModelKind::Base,
            run_id: None,
            parents: Vec::new(),
            snapshots: Vec::new(),
            config,
            metrics: json!({}),
            artifact,
            created_by: None,
        },
    )
    .await
    .with_context(|| format!("registering {name}"))?;
    Ok((version, false))
}

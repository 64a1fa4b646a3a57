//! `plumb import --model-dir DIR --name NAME`: registers an existing GPT-2-format
//! checkpoint (config.json + model.safetensors, such as a real GPT-2) as a base version
//! that runs can start from.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use registry::artifacts::ArtifactStore;
use registry::db::Database;
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
    /// `artifacts/` (unless PLUMB_ARTIFACTS names another).
    #[arg(long, env = "PLUMB_HOME", default_value = ".plumb")]
    home: PathBuf,
}

pub fn run(args: ImportArgs) -> Result<()> {
    // Loading checks the files before anything is stored: a missing tensor, a wrong
    // shape or a bad config is an error naming the file and the key.
    let model = LanguageModel::load(&args.model_dir, trainer::tch::Device::Cpu)
        .with_context(|| format!("{} is not a GPT-2 checkpoint plumb can load", args.model_dir.display()))?;
    let artifacts_dir =
        std::env::var_os("PLUMB_ARTIFACTS").map(PathBuf::from).unwrap_or(args.home.join("artifacts"));
    let store = ArtifactStore::new(&artifacts_dir)?;
    let database = Database::from_url_or_home(std::env::var("DATABASE_URL").ok(), &args.home);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        database.ensure_started().await?;
        let pool = database.connect(2).await?;
        registry::db::migrate(&pool).await?;
        let dir = args.model_dir.clone();
        let artifact = tokio::task::spawn_blocking(move || store.put_dir(&dir)).await??;
        // The same checkpoint imported again is the version it already is.
        let existing = versions::list_versions(&pool, &args.name).await.unwrap_or_default();
        if let Some(version) = existing.into_iter().find(|v| v.artifact_sha256 == artifact.sha256) {
            println!(
                "{}",
                json!({ "model": version.model, "version": version.version, "id": version.id,
                                   "sha256": version.artifact_sha256, "already_registered": true })
            );
            return Ok(());
        }
        let config = json!({
            "imported_from": args.model_dir.canonicalize().unwrap_or(args.model_dir.clone()),
            "model": serde_json::to_value(&model.config)?,
            "tokenizer": model.tokenizer.kind(),
        });
        let version = versions::register(
            &pool,
            &NewVersion {
                model: args.name.clone(),
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
        .with_context(|| format!("registering {}", args.name))?;
        println!(
            "{}",
            json!({ "model": version.model, "version": version.version, "id": version.id,
                               "sha256": version.artifact_sha256, "already_registered": false })
        );
        Ok(())
    })
}

//! The artifact store on an S3-compatible bucket (moto's server on loopback): a
//! checkpoint's round trip with its digests, a corrupted object refused by name, no orphan
//! when a lease is lost between storing and recording, and a `plumb worker` on a machine
//! without the shared disk that trains from the bucket and registers an `s3://` version.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use registry::artifacts::ArtifactStore;
use registry::error::RegistryError;
use registry::runs::{self, RunKind, RunStatus};
use registry::versions::{self, ModelKind, NewVersion};
use serde_json::json;

use self::s3::{S3Server, BUCKET};
use crate::db::with_db;
use crate::worker::{enqueue, setup};

mod s3;

/// A checkpoint directory: a config, a `weights`-sized model file of varied bytes and an
/// optimizer file in a subdirectory.
fn checkpoint(dir: &Path, weights: usize) {
    std::fs::create_dir_all(dir.join("optimizer")).unwrap();
    std::fs::write(dir.join("config.json"), br#"{"n_layer": 2}"#).unwrap();
    let model: Vec<u8> = (0..weights).map(|i| (i * 7 + i / 4093) as u8).collect();
    std::fs::write(dir.join("model.safetensors"), model).unwrap();
    std::fs::write(dir.join("optimizer/state.bin"), b"moments").unwrap();
}

fn files_under(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    for name in ["config.json", "model.safetensors", "optimizer/state.bin"] {
        files.push((name.to_string(), std::fs::read(dir.join(name)).unwrap()));
    }
    files
}

#[test]
fn a_checkpoint_goes_through_a_bucket_in_parts_and_comes_back_verified() {
    let server = S3Server::start();
    let work = tempfile::tempdir().unwrap();
    let store = server.store("runs", &work.path().join("cache"));
    let src = work.path().join("ckpt");
    // Larger than a part, so the model file goes up as a multipart upload.
    checkpoint(&src, 40 << 20);

    let stored = store.put_dir(&src).unwrap();
    assert_eq!(stored.uri, format!("s3://{BUCKET}/runs/sha256/{}", stored.sha256));
    assert_eq!(stored.size, (14 + (40 << 20) + 7) as u64);
    // The digest is the directory's, wherever it is stored.
    let local = ArtifactStore::new(work.path().join("local")).unwrap();
    assert_eq!(local.put_dir(&src).unwrap().sha256, stored.sha256);
    let manifest = format!("runs/sha256/{}.manifest", stored.sha256);
    let keys = server.keys();
    assert!(keys.contains(&manifest), "{keys:?}");
    assert!(keys.iter().all(|k| k.starts_with(&format!("runs/sha256/{}", stored.sha256))), "{keys:?}");

    assert_eq!(store.verify(&stored.sha256).unwrap(), stored);
    let fetched = work.path().join("fetched");
    assert_eq!(store.fetch_to(&stored.sha256, &fetched).unwrap(), stored);
    assert_eq!(files_under(&fetched), files_under(&src));
    let cached = store.get(&stored.sha256).unwrap();
    assert!(cached.starts_with(work.path().join("cache")), "{}", cached.display());
    assert_eq!(files_under(&cached), files_under(&src));
    assert_eq!(store.open_uri(&stored.uri).unwrap(), cached);
    let listed: Vec<String> = store.files(&stored.sha256).unwrap().into_iter().map(|f| f.path).collect();
    assert_eq!(listed, ["config.json", "model.safetensors", "optimizer/state.bin"]);

    store.remove(&stored.sha256).unwrap();
    assert!(matches!(store.verify(&stored.sha256), Err(RegistryError::ArtifactNotFound(_))));
    assert!(server.keys().is_empty(), "{:?}", server.keys());
    assert!(!cached.exists(), "the cached copy goes too");
}

#[test]
fn a_corrupted_object_in_the_bucket_is_refused_naming_the_file() {
    let server = S3Server::start();
    let work = tempfile::tempdir().unwrap();
    let store = server.store("runs", &work.path().join("cache"));
    let src = work.path().join("ckpt");
    checkpoint(&src, 1000);
    let stored = store.put_dir(&src).unwrap();

    let mut damaged = std::fs::read(src.join("model.safetensors")).unwrap();
    damaged[500] ^= 1;
    server.overwrite(&format!("runs/sha256/{}/model.safetensors", stored.sha256), &damaged);
    let dest = work.path().join("fetched");
    let e = store.fetch_to(&stored.sha256, &dest).unwrap_err();
    assert!(matches!(&e, RegistryError::ArtifactCorrupt { file, .. } if file == "model.safetensors"), "{e}");
    assert!(e.to_string().contains("model.safetensors has sha256"), "{e}");
    assert!(!dest.exists(), "a refused fetch leaves nothing behind");
    let e = store.get(&stored.sha256).unwrap_err();
    assert!(e.to_string().contains("model.safetensors has sha256"), "{e}");

    // Storing the good files again repairs the bucket; a damaged cached copy is fetched again.
    store.put_dir(&src).unwrap();
    let cached = store.get(&stored.sha256).unwrap();
    let file = cached.join("optimizer/state.bin");
    let mut permissions = std::fs::metadata(&file).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    permissions.set_readonly(false);
    std::fs::set_permissions(&file, permissions).unwrap();
    std::fs::write(&file, b"momentz").unwrap();
    assert_eq!(store.get(&stored.sha256).unwrap(), cached);
    assert_eq!(std::fs::read(&file).unwrap(), b"moments");
}

#[test]
fn a_lease_lost_between_storing_and_recording_leaves_no_orphan() {
    with_db(|db| async move {
        let server = S3Server::start();
        let work = tempfile::tempdir().unwrap();
        let bucket = server.store("runs", &work.path().join("cache"));
        let directory = ArtifactStore::new(work.path().join("store")).unwrap();
        let src = work.path().join("ckpt");
        checkpoint(&src, 1000);
        let pool = &db.pool;
        let run_id = runs::enqueue(
            pool,
            &runs::NewRun { project_id: None, kind: RunKind::Sft, config: json!({}), created_by: None },
        )
        .await
        .unwrap();
        runs::claim(pool, "a", Duration::from_millis(300)).await.unwrap().unwrap();
        tokio::time::sleep(Duration::from_millis(600)).await;
        let taken = runs::claim(pool, "b", Duration::from_secs(60)).await.unwrap().unwrap();
        assert_eq!(taken.id, run_id, "worker b took the run over");

        for store in [&bucket, &directory] {
            // Worker a stores its checkpoint, but its record is refused: the lease is b's.
            let refused = store
                .store_recorded(src.clone(), |artifact| async move {
                    let replaced = runs::record_checkpoint(pool, run_id, "a", 2, &artifact.sha256).await?;
                    Ok((replaced, true))
                })
                .await
                .unwrap_err();
            assert!(matches!(refused, RegistryError::LeaseLost { .. }), "{refused}");
        }
        assert!(server.keys().is_empty(), "no object is left: {:?}", server.keys());
        for dir in ["sha256", "tmp"] {
            let left: Vec<_> = std::fs::read_dir(directory.root().join(dir)).unwrap().collect();
            assert!(left.is_empty(), "nothing is left in {dir}/: {left:?}");
        }

        // Worker b's record is taken: its checkpoint is promoted, and nothing is staged.
        let stored = bucket
            .store_recorded(src.clone(), |artifact| async move {
                runs::record_checkpoint(pool, run_id, "b", 2, &artifact.sha256).await?;
                Ok((artifact, true))
            })
            .await
            .unwrap();
        assert_eq!(bucket.verify(&stored.sha256).unwrap(), stored);
        assert!(server.keys().iter().all(|k| k.starts_with("runs/sha256/")), "{:?}", server.keys());

        // A copy recorded but never promoted (its worker died in between) is promoted by
        // the first read that looks for it.
        checkpoint(&work.path().join("other"), 2000);
        let staged = bucket.stage(&work.path().join("other")).unwrap();
        assert!(server.keys().iter().any(|k| k.starts_with("runs/tmp/")));
        assert_eq!(bucket.verify(&staged.artifact.sha256).unwrap(), staged.artifact);
        assert!(server.keys().iter().all(|k| k.starts_with("runs/sha256/")), "{:?}", server.keys());
    });
}

#[test]
fn a_worker_without_the_shared_disk_trains_from_the_bucket_and_registers_an_s3_version() {
    with_db(|db| async move {
        let server = S3Server::start();
        let setup = setup(&db, 8).await;
        let pool = &db.pool;
        // The base model goes into the bucket only: the worker's machine has no copy.
        let bucket = server.store("plumb", &setup.dir.path().join("uploader-cache"));
        let base = versions::resolve(pool, "base:1").await.unwrap();
        let artifact = bucket.put_dir(&setup.store.get(&base.artifact_sha256).unwrap()).unwrap();
        assert!(artifact.uri.starts_with(&format!("s3://{BUCKET}/plumb/sha256/")), "{}", artifact.uri);
        let new = NewVersion {
            model: "bucket-base".into(),
            kind: ModelKind::Base,
            run_id: None,
            parents: Vec::new(),
            snapshots: Vec::new(),
            config: json!({}),
            metrics: json!({}),
            artifact: artifact.clone(),
            created_by: None,
        };
        versions::register(pool, &new).await.unwrap();
        let stage = json!({ "steps": 4, "batch_size": 2, "eval_every": 2, "checkpoint_every": 2, "lr": 0.001,
                            "val_fraction": 0.25 });
        let run_id = enqueue(
            pool,
            setup.project,
            RunKind::Sft,
            json!({ "model_name": "bucket-sft", "base": "bucket-base:1", "stage": stage }),
        )
        .await;

        let home = tempfile::tempdir().unwrap();
        let mut worker = Command::new(env!("CARGO_BIN_EXE_plumb"));
        worker
            .args([
                "worker",
                "--device",
                "cpu",
                "--name",
                "elsewhere",
                "--drain",
                "--heartbeat-s",
                "1",
                "--home",
            ])
            .arg(home.path())
            .env("DATABASE_URL", db.url())
            .envs(server.env("plumb"))
            .env_remove("RUST_BACKTRACE");
        let out = tokio::task::spawn_blocking(move || worker.output().unwrap()).await.unwrap();
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "the worker failed: {log}");

        let run = runs::get(pool, run_id).await.unwrap();
        assert_eq!(run.status, RunStatus::Succeeded, "{log}");
        let version = versions::resolve(pool, "bucket-sft:1").await.unwrap();
        assert_eq!(version.artifact_uri, format!("s3://{BUCKET}/plumb/sha256/{}", version.artifact_sha256));
        bucket.verify(&version.artifact_sha256).unwrap();
        assert!(
            home.path().join("cache/artifacts/sha256").join(&artifact.sha256).is_dir(),
            "the base was fetched into the worker's cache"
        );
        assert!(!home.path().join("artifacts").exists(), "the worker had no local store");
        let keys = server.keys();
        assert!(keys.iter().all(|k| k.starts_with("plumb/sha256/")), "nothing staged is left: {keys:?}");
        let manifests = keys.iter().filter(|k| k.ends_with(".manifest")).count();
        assert_eq!(manifests, 2, "the base and the new version; the run's checkpoint is deleted: {keys:?}");
    });
}

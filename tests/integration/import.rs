//! `plumb import`: an existing checkpoint becomes a base version in the registry.

use registry::versions::{self, ModelKind};
use serde_json::Value;

use crate::db::with_db;
use crate::helpers::{json_lines, plumb_ok, plumb_with_env};

#[test]
fn a_checkpoint_is_imported_once_as_a_base_version_and_a_broken_one_is_refused() {
    with_db(|db| async move {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("tiny");
        let model = model.to_str().unwrap();
        plumb_ok(&["init", "--preset", "tiny", "--tokenizer", "bytes", "--out", model, "--seed", "1"], "");
        let home = dir.path().join("home");
        let url = db.url();
        let env = [("DATABASE_URL", url.as_str()), ("PLUMB_HOME", home.to_str().unwrap())];
        let import =
            |model_dir: &str| plumb_with_env(&["import", "--model-dir", model_dir, "--name", "base"], &env);

        let out = import(model);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let printed: Vec<Value> = json_lines(&out.stdout);
        assert_eq!(
            (printed[0]["version"].as_i64(), printed[0]["already_registered"].as_bool()),
            (Some(1), Some(false))
        );
        let version = versions::resolve(&db.pool, "base:1").await.unwrap();
        assert_eq!(version.kind, ModelKind::Base);
        assert_eq!(version.config["model"]["n_layer"], 4, "{}", version.config);
        let store = registry::artifacts::ArtifactStore::new(home.join("artifacts")).unwrap();
        let stored = store.verify(&version.artifact_sha256).unwrap();
        assert_eq!(stored.uri, version.artifact_uri);

        // The same files again: the version it already is, not a new one.
        let again = json_lines(&import(model).stdout);
        assert_eq!(
            (again[0]["version"].as_i64(), again[0]["already_registered"].as_bool()),
            (Some(1), Some(true))
        );

        // A checkpoint without its weights is refused, naming the file; nothing registered.
        std::fs::remove_file(dir.path().join("tiny/model.safetensors")).unwrap();
        let out = import(model);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("model.safetensors"), "{err}");
        assert_eq!(versions::list_versions(&db.pool, "base").await.unwrap().len(), 1);
    });
}

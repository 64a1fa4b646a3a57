//! Issue 16: an outside conformance suite agrees with the API document. Schemathesis
//! (PyPI, in `.venv` with the peers) reads `/api/openapi.json` and sends generated
//! requests to every operation with a researcher's token: examples, the coverage phase's
//! boundary values, fuzzing and the stateful phase's chains of linked operations. Every
//! check must hold: no 5xx, documented statuses, content types and schemas, invalid
//! requests refused, valid ones accepted, undeclared methods answered 405.

use std::path::PathBuf;
use std::process::Command;

use crate::db::with_db;
use crate::web_app::spawn_app;

/// The `schemathesis` command beside the peers' Python.
fn schemathesis() -> PathBuf {
    let python = std::env::var("PLUMB_PYTHON").unwrap_or_else(|_| ".venv/bin/python".into());
    PathBuf::from(python).with_file_name("schemathesis")
}

#[test]
fn schemathesis_finds_no_failure_against_the_api_document() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let token = app.token_for("rita").await;
        let url = app.url("/api/openapi.json");
        // Schemathesis keeps a cache of earlier crashes in its working directory: a fresh
        // one each run, so that every run is the seeded one.
        let workdir = tempfile::tempdir().unwrap();
        let cwd = workdir.path().to_owned();
        let run = tokio::task::spawn_blocking(move || {
            Command::new(schemathesis())
                .current_dir(cwd)
                .args(["run", &url, "--checks", "all", "--max-examples", "12", "--seed", "1"])
                .args(["--workers", "1", "--no-color", "--generation-database", "none"])
                .args(["--header", &format!("Authorization: Bearer {token}")])
                .output()
                .expect("running schemathesis (make peers installs it into .venv)")
        })
        .await
        .unwrap();
        let out = String::from_utf8_lossy(&run.stdout);
        if std::env::var_os("PLUMB_CONFORMANCE_LOG").is_some() {
            std::fs::write(concat!(env!("CARGO_MANIFEST_DIR"), "/target/schemathesis.log"), out.as_bytes()).unwrap();
        }
        assert!(
            run.status.success(),
            "schemathesis found failures:\n{out}\n{}",
            String::from_utf8_lossy(&run.stderr)
        );
    });
}

//! Issue 16: an outside conformance suite agrees with the API document. Schemathesis
//! (PyPI, in `.venv` with the peers) reads `/api/openapi.json` and sends generated
//! requests to every operation with a researcher's token: examples, the coverage phase's
//! boundary values, fuzzing and the stateful phase's chains of linked operations. Every
//! check must hold: no 5xx, documented statuses, content types and schemas, invalid
//! requests refused, valid ones accepted, undeclared methods answered 405.

use std::path::PathBuf;
use std::process::Command;

use serde_json::{json, Value};

use crate::db::with_db;
use crate::web_app::{client, spawn_app, TestApp};

/// The `schemathesis` command beside the peers' Python.
fn schemathesis() -> PathBuf {
    let python = std::env::var("PLUMB_PYTHON").unwrap_or_else(|_| ".venv/bin/python".into());
    PathBuf::from(python).with_file_name("schemathesis")
}

/// Something for the generated requests to find: a project with prompts, the researcher
/// as its member, demonstration tasks and a prompts snapshot.
async fn seed(app: &TestApp, token: &str) {
    let post = |path: String, body: Value| {
        let request = client().post(app.url(&path)).bearer_auth(token).json(&body);
        async move {
            let response = request.send().await.unwrap();
            assert!(response.status().is_success(), "{path}: {}", response.status());
            response.json::<Value>().await.unwrap()
        }
    };
    let project = post("/api/projects".into(), json!({ "name": "seed", "samples_per_task": 2 })).await;
    let id = project["id"].as_i64().unwrap();
    let prompts: Vec<String> = (0..5).map(|i| json!({ "prompt": format!("say {i}") }).to_string()).collect();
    post(format!("/api/projects/{id}/prompts"), json!({ "format": "jsonl", "data": prompts.join("\n") }))
        .await;
    post(format!("/api/projects/{id}/members"), json!({ "username": "rita" })).await;
    post(format!("/api/projects/{id}/demonstration-tasks"), json!({})).await;
    post(format!("/api/projects/{id}/snapshots"), json!({ "kind": "prompts", "name": "prompts" })).await;
}

#[test]
fn schemathesis_finds_no_failure_against_the_api_document() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let token = app.token_for("rita").await;
        seed(&app, &token).await;
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
                // Revoking the token the run itself uses would leave every later request
                // a 401 (web_tokens tests revoking).
                .args(["--exclude-operation-id", "revokeToken"])
                .args(["--header", &format!("Authorization: Bearer {token}")])
                .output()
                .expect("running schemathesis (make peers installs it into .venv)")
        })
        .await
        .unwrap();
        let out = String::from_utf8_lossy(&run.stdout);
        if std::env::var_os("PLUMB_CONFORMANCE_LOG").is_some() {
            std::fs::write(concat!(env!("CARGO_MANIFEST_DIR"), "/target/schemathesis.log"), out.as_bytes())
                .unwrap();
        }
        assert!(
            run.status.success(),
            "schemathesis found failures:\n{out}\n{}",
            String::from_utf8_lossy(&run.stderr)
        );
    });
}

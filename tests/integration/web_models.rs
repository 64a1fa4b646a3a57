//! The registry pages over HTTP: models, a model's versions and aliases, a version's
//! config, metrics, lineage graph, tags and checkpoint files (downloaded byte for byte,
//! path traversal refused, a missing artifact said plainly); the role checks; and the
//! same through the JSON API.

use std::path::Path;

use ::registry::artifacts::{ArtifactStore, StoredArtifact};
use ::registry::versions::{self, ModelKind, ModelVersion, NewVersion, Parent};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::db::with_db;
use crate::web_app::{client, hidden_value, spawn_app, TestApp};

/// The checkpoint files every test version holds: (path, bytes).
fn checkpoint_files(seed: u8) -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("config.json", format!("{{\"n_layer\": {seed}}}").into_bytes()),
        // Binary and bigger than one read buffer, so that streaming is exercised.
        ("model.safetensors", (0..600_000u32).map(|i| (i.wrapping_mul(31) as u8) ^ seed).collect()),
        ("tokenizer/vocab.json", b"{\"a\": 0}".to_vec()),
    ]
}

fn put_checkpoint(app: &TestApp, seed: u8) -> StoredArtifact {
    let dir = tempfile::tempdir().unwrap();
    for (path, bytes) in checkpoint_files(seed) {
        let to = dir.path().join(path);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::write(to, bytes).unwrap();
    }
    ArtifactStore::new(app.artifacts.path()).unwrap().put_dir(dir.path()).unwrap()
}

async fn register(
    app: &TestApp,
    model: &str,
    kind: ModelKind,
    parents: &[(i64, &str)],
    artifact: StoredArtifact,
) -> ModelVersion {
    let new = NewVersion {
        model: model.to_string(),
        kind,
        run_id: None,
        parents: parents
            .iter()
            .map(|(id, role)| Parent { version_id: *id, role: role.to_string() })
            .collect(),
        snapshots: Vec::new(),
        config: json!({"lr": 0.0001, "epochs": 2, "note": "<b>not bold</b>"}),
        metrics: json!({"val/loss": 1.23456789, "val/accuracy": 0.5}),
        artifact,
        created_by: None,
    };
    versions::register(&app.db.pool, &new).await.unwrap()
}

/// base `tiny:1` → sft `tiny-sft:1` → policy `tiny-ppo:1` (with reward `tiny-rm:1`,
/// trained from the sft, as its reward parent).
pub(crate) struct Lineage {
    pub base: ModelVersion,
    pub sft: ModelVersion,
    pub rm: ModelVersion,
    pub ppo: ModelVersion,
}

pub(crate) async fn lineage(app: &TestApp) -> Lineage {
    let base = register(app, "tiny", ModelKind::Base, &[], put_checkpoint(app, 1)).await;
    let sft = register(app, "tiny-sft", ModelKind::Sft, &[(base.id, "base")], put_checkpoint(app, 2)).await;
    let rm = register(app, "tiny-rm", ModelKind::Reward, &[(sft.id, "sft")], put_checkpoint(app, 3)).await;
    let ppo = register(
        app,
        "tiny-ppo",
        ModelKind::Policy,
        &[(sft.id, "sft"), (rm.id, "reward")],
        put_checkpoint(app, 4),
    )
    .await;
    Lineage { base, sft, rm, ppo }
}

fn location(response: &reqwest::Response) -> String {
    response.headers()["location"].to_str().unwrap().to_string()
}

/// The lineage graph's data (`data-graph` of `#lineage-graph`), as lineage.js reads it.
fn graph_data(html: &str) -> Value {
    let attribute = between(html, "data-graph=\"", "\" data-title");
    let json = attribute["data-graph=\"".len()..]
        .replace("&#34;", "\"")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&");
    serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"))
}

/// The graph's edges as (parent, child, roles), sorted.
fn edges(graph: &Value) -> Vec<(i64, i64, String)> {
    let mut edges: Vec<(i64, i64, String)> = graph["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let roles: Vec<&str> =
                e["roles"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
            (e["from"].as_i64().unwrap(), e["to"].as_i64().unwrap(), roles.join(", "))
        })
        .collect();
    edges.sort();
    edges
}

fn between<'a>(html: &'a str, start: &str, end: &str) -> &'a str {
    let from = html.find(start).unwrap_or_else(|| panic!("no {start} in {html}"));
    let rest = &html[from..];
    &rest[..rest.find(end).unwrap_or(rest.len())]
}

#[test]
fn the_models_page_lists_each_model_with_its_latest_version() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let l = lineage(&app).await;
        register(&app, "tiny", ModelKind::Base, &[], put_checkpoint(&app, 9)).await;
        versions::set_alias(&app.db.pool, "tiny", "champion", l.base.id).await.unwrap();
        app.log_in("rita").await;
        let html = app.get_html("/models").await;
        let row = between(&html, "data-model=\"tiny\"", "</tr>");
        assert!(row.contains("href=\"/models/tiny/versions/2\"") && row.contains("base"), "{row}");
        assert!(row.contains("@champion → 1"), "{row}");
        assert!(row.contains("val/accuracy 0.5000") && row.contains("val/loss 1.2346"), "{row}");
        for name in ["tiny-sft", "tiny-rm", "tiny-ppo"] {
            assert!(html.contains(&format!("href=\"/models/{name}\"")), "{name}");
        }
        let token = app.token_for("rita").await;
        let body: Value = client()
            .get(app.url("/api/models"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let names: Vec<&str> = body.as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["tiny", "tiny-ppo", "tiny-rm", "tiny-sft"]);
        assert_eq!(body[0]["latest"]["version"], 2);
        assert_eq!(l.ppo.parents.len(), 2);
    });
}

#[test]
fn a_version_page_shows_config_metrics_and_its_lineage_graph() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let l = lineage(&app).await;
        app.log_in("rita").await;
        let html = app.get_html("/models/tiny-sft/versions/1").await;
        assert!(html.contains("<h1>tiny-sft:1 (sft)</h1>"), "{html}");
        let config = between(&html, "id=\"config-json\"", "</pre>");
        // Pretty-printed, one key a line, quotes escaped by askama.
        assert!(
            config.contains("\n  &#34;epochs&#34;: 2,\n") || config.contains("\n  &quot;epochs&quot;: 2,\n"),
            "{config}"
        );
        assert!(!config.contains("<b>"), "escaped: {config}");
        assert!(between(&html, "id=\"metric-table\"", "</table>").contains("1.2346"), "{html}");
        assert!(html.contains(&l.sft.artifact_sha256));

        let graph = graph_data(&html);
        for (label, url) in [
            ("tiny:1 (base)", "/models/tiny/versions/1"),
            ("tiny-sft:1 (sft)", "/models/tiny-sft/versions/1"),
            ("tiny-rm:1 (reward)", "/models/tiny-rm/versions/1"),
            ("tiny-ppo:1 (policy)", "/models/tiny-ppo/versions/1"),
        ] {
            let node = graph["nodes"].as_array().unwrap().iter().find(|n| n["label"] == label);
            assert_eq!(node.unwrap_or_else(|| panic!("{label} in {graph}"))["url"], url);
        }
        let current: Vec<&Value> =
            graph["nodes"].as_array().unwrap().iter().filter(|n| n["current"] == true).collect();
        assert_eq!(current.len(), 1);
        assert_eq!(current[0]["id"], l.sft.id, "the version itself is marked");
        // Four links: base→sft, sft→rm, sft→ppo, rm→ppo.
        assert_eq!(
            edges(&graph),
            [
                (l.base.id, l.sft.id, "base".to_string()),
                (l.sft.id, l.rm.id, "sft".to_string()),
                (l.sft.id, l.ppo.id, "sft".to_string()),
                (l.rm.id, l.ppo.id, "reward".to_string()),
            ]
        );
        assert!(html.contains("src=\"/static/lineage.js\"") && html.contains("vendor/dagre/dagre.min.js"));

        let ancestors = between(&html, "id=\"ancestor-table\"", "</table>");
        assert!(ancestors.contains("tiny:1 (base)") && ancestors.contains("base"), "{ancestors}");
        let descendants = between(&html, "id=\"descendant-table\"", "</table>");
        assert!(
            descendants.contains("tiny-ppo:1 (policy)") && descendants.contains("tiny-rm:1"),
            "{descendants}"
        );
        assert_eq!(l.rm.parents[0].version_id, l.sft.id);

        let token = app.token_for("rita").await;
        let body: Value = client()
            .get(app.url("/api/models/tiny-sft/versions/1"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(body["version"]["id"], l.sft.id);
        assert_eq!(body["ancestors"][0]["version"]["id"], l.base.id);
        assert_eq!(body["descendants"].as_array().unwrap().len(), 3);
        let paths: Vec<&str> =
            body["files"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap()).collect();
        assert_eq!(paths, ["config.json", "model.safetensors", "tokenizer/vocab.json"]);
    });
}

#[test]
fn checkpoint_files_are_listed_and_download_byte_for_byte() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        lineage(&app).await;
        app.log_in("rita").await;
        let html = app.get_html("/models/tiny-ppo/versions/1").await;
        let files = between(&html, "id=\"file-table\"", "</table>");
        assert!(files.contains("585.9 KiB"), "the size: {files}");
        for (path, bytes) in checkpoint_files(4) {
            let url = format!("/models/tiny-ppo/versions/1/files/{path}");
            assert!(files.contains(&format!("href=\"{url}\"")), "{url} in {files}");
            let response = app.get(&url).await;
            assert_eq!(response.status(), StatusCode::OK, "{url}");
            assert_eq!(response.headers()["content-type"], "application/octet-stream");
            assert_eq!(response.headers()["content-length"], bytes.len().to_string().as_str());
            let name = path.rsplit('/').next().unwrap();
            assert!(response.headers()["content-disposition"].to_str().unwrap().contains(name));
            assert_eq!(response.bytes().await.unwrap().as_ref(), bytes.as_slice(), "{path}");
        }
        let token = app.token_for("rita").await;
        let response = client()
            .get(app.url("/api/models/tiny-ppo/versions/1/files/model.safetensors"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.bytes().await.unwrap().as_ref(), checkpoint_files(4)[1].1.as_slice());
    });
}

#[test]
fn a_file_path_that_climbs_out_of_the_checkpoint_is_refused() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        lineage(&app).await;
        let secret = "the store's secret";
        std::fs::write(app.artifacts.path().join("secret.txt"), secret).unwrap();
        app.log_in("rita").await;
        let base = "/models/tiny/versions/1/files";
        for path in [
            "..%2F..%2F..%2Fsecret.txt",
            "tokenizer%2F..%2F..%2F..%2F..%2Fsecret.txt",
            "%2Fetc%2Fpasswd",
            "tokenizer/..%2Fconfig.json",
            "nope.bin",
            "tokenizer",
        ] {
            let response = app.get(&format!("{base}/{path}")).await;
            let status = response.status();
            assert!(status == StatusCode::BAD_REQUEST || status == StatusCode::NOT_FOUND, "{path}: {status}");
            assert!(!response.text().await.unwrap().contains(secret), "{path}");
        }
        assert_eq!(app.get(&format!("{base}/nope.bin")).await.status(), StatusCode::NOT_FOUND);
        assert_eq!(app.get(&format!("{base}/..%2Fx")).await.status(), StatusCode::BAD_REQUEST);
    });
}

#[test]
fn a_missing_or_damaged_artifact_is_said_plainly() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        // A record whose bytes were never put into this store.
        let elsewhere = tempfile::tempdir().unwrap();
        std::fs::write(elsewhere.path().join("config.json"), "{}").unwrap();
        let absent = ArtifactStore::new(elsewhere.path().join("store")).unwrap();
        let src = tempfile::tempdir().unwrap();
        std::fs::write(src.path().join("config.json"), "{}").unwrap();
        let artifact = absent.put_dir(src.path()).unwrap();
        register(&app, "ghost", ModelKind::Base, &[], artifact).await;
        app.log_in("rita").await;
        let html = app.get_html("/models/ghost/versions/1").await;
        assert!(between(&html, "id=\"artifact-error\"", "</p>").contains("not in the store"), "{html}");
        assert_eq!(
            app.get("/models/ghost/versions/1/files/config.json").await.status(),
            StatusCode::NOT_FOUND
        );

        // A stored file changed on disk: the download is refused, naming the file.
        let damaged = register(&app, "damaged", ModelKind::Base, &[], put_checkpoint(&app, 7)).await;
        let file = app.artifacts.path().join("sha256").join(&damaged.artifact_sha256).join("config.json");
        let mut permissions = std::fs::metadata(&file).unwrap().permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        permissions.set_readonly(false);
        std::fs::set_permissions(&file, permissions).unwrap();
        std::fs::write(&file, "{\"n_layer\": 99}").unwrap();
        let response = app.get("/models/damaged/versions/1/files/config.json").await;
        assert_eq!(response.status(), StatusCode::CONFLICT);
        let text = response.text().await.unwrap();
        assert!(text.contains("corrupt") && text.contains("config.json"), "{text}");
        let ok = checkpoint_files(7)[2].1.clone();
        let response = app.get("/models/damaged/versions/1/files/tokenizer/vocab.json").await;
        assert_eq!(response.bytes().await.unwrap().as_ref(), ok.as_slice(), "an intact file still downloads");
        assert!(Path::new(&file).exists());
    });
}

#[test]
fn aliases_are_set_moved_and_removed_and_bad_ones_are_refused() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let l = lineage(&app).await;
        let v2 = register(&app, "tiny", ModelKind::Base, &[], put_checkpoint(&app, 5)).await;
        app.log_in("rita").await;
        let csrf = hidden_value(&app.get_html("/models/tiny").await, "csrf");
        let set = "/models/tiny/aliases";
        let response = app.post_form(set, &[("alias", "champion"), ("version", "1"), ("csrf", &csrf)]).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(location(&response), "/models/tiny");
        let html = app.get_html("/models/tiny").await;
        assert!(
            between(&html, "data-alias=\"champion\"", "</tr>").contains("/models/tiny/versions/1"),
            "{html}"
        );
        let response = app.post_form(set, &[("alias", "champion"), ("version", "2"), ("csrf", &csrf)]).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(versions::resolve(&app.db.pool, "tiny@champion").await.unwrap().id, v2.id);

        for (alias, version, field) in
            [("Big Boss", "1", "alias"), ("best", "9", "version"), ("best", "one", "version")]
        {
            let response =
                app.post_form(set, &[("alias", alias), ("version", version), ("csrf", &csrf)]).await;
            assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY, "{alias} {version}");
            let html = response.text().await.unwrap();
            assert!(between(&html, "role=\"alert\"", "</p>").contains(field), "{field}: {html}");
        }
        let response = app.post_form("/models/tiny/aliases/champion/remove", &[("csrf", &csrf)]).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert!(versions::aliases(&app.db.pool, "tiny").await.unwrap().is_empty());
        let response = app.post_form("/models/tiny/aliases/champion/remove", &[("csrf", &csrf)]).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND);

        // The API: PUT names a version number, DELETE removes.
        let token = app.token_for("rita").await;
        let url = app.url("/api/models/tiny/aliases/prod");
        let response =
            client().put(&url).bearer_auth(&token).json(&json!({"version": 1})).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let alias: Value = response.json().await.unwrap();
        assert_eq!((alias["alias"].as_str(), alias["version_id"].as_i64()), (Some("prod"), Some(l.base.id)));
        let bad = app.url("/api/models/tiny/aliases/Prod");
        let response =
            client().put(&bad).bearer_auth(&token).json(&json!({"version": 1})).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(response.json::<Value>().await.unwrap()["error"]["field"], "alias");
        let response =
            client().put(&url).bearer_auth(&token).json(&json!({"version": 7})).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "there is no version 7");
        for number in [0, -3] {
            let response = client()
                .put(&url)
                .bearer_auth(&token)
                .json(&json!({"version": number}))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY, "{number}");
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["error"]["field"], "version", "{body}");
            assert!(!body["error"]["message"].as_str().unwrap().contains("no model named"), "{body}");
        }
        let body: Value = client()
            .get(app.url("/api/models/tiny"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(body["aliases"][0]["alias"], "prod");
        assert_eq!(body["versions"].as_array().unwrap().len(), 2);
        let response = client().delete(&url).bearer_auth(&token).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        let response = client().delete(&url).bearer_auth(&token).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
    });
}

#[test]
fn tags_are_added_and_removed_on_the_page_and_in_the_api() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let l = lineage(&app).await;
        app.log_in("rita").await;
        let page = "/models/tiny-sft/versions/1";
        let csrf = hidden_value(&app.get_html(page).await, "csrf");
        let response = app.post_form(&format!("{page}/tags"), &[("tag", "best/2024"), ("csrf", &csrf)]).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(location(&response), page);
        assert!(app.get_html(page).await.contains("data-tag=\"best/2024\""));
        let response = app.post_form(&format!("{page}/tags"), &[("tag", "two words"), ("csrf", &csrf)]).await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert!(response.text().await.unwrap().contains("tag"));
        let response =
            app.post_form(&format!("{page}/tags/remove"), &[("tag", "best/2024"), ("csrf", &csrf)]).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert!(versions::get(&app.db.pool, l.sft.id).await.unwrap().tags.is_empty());

        let token = app.token_for("rita").await;
        let tags = app.url("/api/models/tiny-sft/versions/1/tags");
        let response =
            client().post(&tags).bearer_auth(&token).json(&json!({"tag": "rc/1"})).send().await.unwrap();
        assert_eq!(response.json::<Value>().await.unwrap(), json!({"tags": ["rc/1"]}));
        let response =
            client().post(&tags).bearer_auth(&token).json(&json!({"tag": ""})).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(response.json::<Value>().await.unwrap()["error"]["field"], "tag");
        let response = client().delete(format!("{tags}/rc/1")).bearer_auth(&token).send().await.unwrap();
        assert_eq!(response.json::<Value>().await.unwrap(), json!({"tags": []}));
    });
}

#[test]
fn a_missing_model_or_version_is_404() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        lineage(&app).await;
        app.log_in("rita").await;
        for path in [
            "/models/nope",
            "/models/tiny/versions/9",
            "/models/tiny/versions/x",
            "/models/no%20such/versions/1",
            "/models/nope/versions/1/files/config.json",
        ] {
            assert_eq!(app.get(path).await.status(), StatusCode::NOT_FOUND, "{path}");
        }
        let token = app.token_for("rita").await;
        for path in ["/api/models/nope", "/api/models/tiny/versions/9", "/api/models/tiny/versions/9/files"] {
            let response = client().get(app.url(path)).bearer_auth(&token).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
            assert_eq!(response.json::<Value>().await.unwrap()["error"]["status"], 404);
        }
    });
}

#[test]
fn the_registry_routes_send_a_logged_out_visitor_to_log_in_and_refuse_an_annotator() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let l = lineage(&app).await;
        let pages = [
            "/models",
            "/models/tiny",
            "/models/tiny/versions/1",
            "/models/tiny/versions/1/files/config.json",
        ];
        let apis = [
            "/api/models",
            "/api/models/tiny",
            "/api/models/tiny/versions/1",
            "/api/models/tiny/versions/1/files",
        ];
        for page in pages {
            let response = app.get(page).await;
            assert_eq!(response.status(), StatusCode::SEE_OTHER, "{page}");
            assert!(location(&response).starts_with("/login?next="), "{page}");
        }
        for api in apis {
            assert_eq!(app.get(api).await.status(), StatusCode::UNAUTHORIZED, "{api}");
        }
        app.log_in("ann").await;
        let csrf = hidden_value(&app.get_html("/").await, "csrf");
        for path in pages.iter().chain(&apis) {
            assert_eq!(app.get(path).await.status(), StatusCode::FORBIDDEN, "{path}");
        }
        let response = app
            .post_form("/models/tiny/aliases", &[("alias", "mine"), ("version", "1"), ("csrf", &csrf)])
            .await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        let response =
            app.post_form("/models/tiny/versions/1/tags", &[("tag", "mine"), ("csrf", &csrf)]).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        let token = app.token_for("ann").await;
        let response = client()
            .put(app.url("/api/models/tiny/aliases/mine"))
            .bearer_auth(&token)
            .json(&json!({"version": 1}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert!(versions::aliases(&app.db.pool, "tiny").await.unwrap().is_empty());
        assert!(versions::get(&app.db.pool, l.base.id).await.unwrap().tags.is_empty());
    });
}

#[test]
fn a_session_needs_its_csrf_token_to_change_the_registry() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        lineage(&app).await;
        app.log_in("rita").await;
        let csrf = hidden_value(&app.get_html("/models/tiny").await, "csrf");
        let response = app
            .post_form("/models/tiny/aliases", &[("alias", "forged"), ("version", "1"), ("csrf", "0")])
            .await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        let url = app.url("/api/models/tiny/aliases/champion");
        let response = app.client.put(&url).json(&json!({"version": 1})).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        let response = app.client.put(&url).json(&json!({"version": 1, "csrf": csrf})).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let response = app.client.delete(&url).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        let response = app.client.delete(&url).header("X-CSRF-Token", &csrf).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        assert!(versions::aliases(&app.db.pool, "tiny").await.unwrap().is_empty());
    });
}

/// The policy was trained from the SFT and the reward model, and the reward model from
/// the SFT too: the SFT reaches the policy by two paths but is listed once, and the graph
/// has an edge into the policy from each of its two parents.
#[test]
fn a_policy_lists_each_parent_once_and_its_graph_has_an_edge_from_both() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let l = lineage(&app).await;
        app.log_in("rita").await;
        let html = app.get_html("/models/tiny-ppo/versions/1").await;
        let ancestors = between(&html, "id=\"ancestor-table\"", "</table>");
        assert_eq!(ancestors.matches("<tr><td>").count(), 3, "sft, rm and base once each: {ancestors}");
        assert_eq!(ancestors.matches(">tiny-sft:1 (sft)<").count(), 1, "{ancestors}");
        let graph = graph_data(&html);
        assert_eq!(graph["nodes"].as_array().unwrap().len(), 4, "{graph}");
        let links = edges(&graph);
        assert!(links.contains(&(l.sft.id, l.ppo.id, "sft".into())), "{links:?}");
        assert!(links.contains(&(l.rm.id, l.ppo.id, "reward".into())), "{links:?}");
        assert_eq!(links.len(), 4, "{links:?}");

        // A parent in two roles (an SFT that is also the reference) is one edge naming both.
        let policy = register(
            &app,
            "tiny-ppo",
            ModelKind::Policy,
            &[(l.sft.id, "sft"), (l.sft.id, "reference"), (l.rm.id, "reward")],
            put_checkpoint(&app, 5),
        )
        .await;
        let html = app.get_html("/models/tiny-ppo/versions/2").await;
        let into_policy: Vec<(i64, i64, String)> =
            edges(&graph_data(&html)).into_iter().filter(|(_, to, _)| *to == policy.id).collect();
        assert_eq!(
            into_policy,
            [(l.sft.id, policy.id, "reference, sft".into()), (l.rm.id, policy.id, "reward".into())]
        );
        let ancestors = between(&html, "id=\"ancestor-table\"", "</table>");
        assert!(ancestors.contains("<td>reference, sft</td>"), "{ancestors}");
    });
}

/// A model's page draws its versions with their direct parents and children, and lists
/// each version's parents once, linked, for readers without scripts.
#[test]
fn the_model_page_draws_its_versions_with_their_parents_and_children() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let l = lineage(&app).await;
        app.log_in("rita").await;
        let html = app.get_html("/models/tiny-ppo").await;
        let row = between(&html, "data-version=\"1\"", "</tr>");
        let parents = between(row, "data-parents", "</td>");
        assert!(
            parents.contains("href=\"/models/tiny-sft/versions/1\">tiny-sft:1 (sft)</a> (sft)"),
            "{parents}"
        );
        assert!(
            parents.contains("href=\"/models/tiny-rm/versions/1\">tiny-rm:1 (reward)</a> (reward)"),
            "{parents}"
        );
        assert_eq!(parents.matches("<a ").count(), 2, "{parents}");
        let graph = graph_data(&html);
        assert_eq!(
            edges(&graph),
            [(l.sft.id, l.ppo.id, "sft".to_string()), (l.rm.id, l.ppo.id, "reward".to_string())]
        );

        let graph = graph_data(&app.get_html("/models/tiny-sft").await);
        let current: Vec<&Value> =
            graph["nodes"].as_array().unwrap().iter().filter(|n| n["current"] == true).collect();
        assert_eq!(current.len(), 1);
        assert_eq!(current[0]["id"], l.sft.id);
        assert_eq!(
            edges(&graph),
            [
                (l.base.id, l.sft.id, "base".to_string()),
                (l.sft.id, l.rm.id, "sft".to_string()),
                (l.sft.id, l.ppo.id, "sft".to_string()),
            ],
            "one generation either side"
        );
    });
}

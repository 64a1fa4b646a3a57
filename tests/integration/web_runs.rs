//! The researchers' run pages and the compare picker over HTTP: launch forms pre-filled
//! with the stage defaults, what a launch enqueues, refusals that name the field and
//! enqueue nothing, a run's page fed by a faked worker, cancel, the queue, compare, and
//! the role matrix.

use std::time::Duration;

use ::registry::artifacts::StoredArtifact;
use ::registry::runs::{self, Metric, NewRun, RunKind, RunStatus};
use ::registry::versions::{self, ModelKind, ModelVersion, NewVersion, Parent};
use labeling::domain::{Guidelines, ProjectName};
use labeling::projects::NewProject;
use labeling::snapshots::{SnapshotFilter, SnapshotKind};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::db::with_db;
use crate::web_app::{client, hidden_value, run_defaults, spawn_app, TestApp};

const KINDS: [&str; 9] = ["pretrain", "sft", "reward", "ppo", "dpo", "rloo", "grpo", "sample", "eval"];

pub(crate) async fn new_project(app: &TestApp, name: &str) -> i64 {
    let new = NewProject {
        name: ProjectName::parse(name).unwrap(),
        guidelines: Guidelines::default(),
        overlap: Default::default(),
        samples_per_task: Default::default(),
        created_by: None,
    };
    labeling::projects::create_project(&app.db.pool, &new).await.unwrap().id
}

async fn freeze(app: &TestApp, project: i64, kind: SnapshotKind) -> i64 {
    labeling::snapshots::freeze(&app.db.pool, project, kind, &SnapshotFilter::default(), "frozen", None)
        .await
        .unwrap()
        .id
}

/// Registers a version (its artifact record has no files behind it: no page here reads
/// them).
pub(crate) async fn register(
    app: &TestApp,
    model: &str,
    kind: ModelKind,
    run_id: Option<i64>,
    config: Value,
    metrics: Value,
) -> ModelVersion {
    let seed = format!("{model}{}", uuid::Uuid::new_v4());
    let sha256: String = Sha256::digest(seed.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
    let artifact = StoredArtifact { uri: format!("file:///artifacts/sha256/{sha256}"), sha256, size: 1 };
    register_artifact(app, model, kind, run_id, (config, metrics), artifact).await
}

/// Registers the next version of `model` with its `kind`, run, (config, metrics) and
/// checkpoint, without parents or snapshots.
async fn register_artifact(
    app: &TestApp,
    model: &str,
    kind: ModelKind,
    run_id: Option<i64>,
    (config, metrics): (Value, Value),
    artifact: StoredArtifact,
) -> ModelVersion {
    let new = NewVersion {
        model: model.into(),
        kind,
        run_id,
        parents: Vec::<Parent>::new(),
        snapshots: Vec::new(),
        config,
        metrics,
        artifact,
        created_by: None,
    };
    versions::register(&app.db.pool, &new).await.unwrap()
}

/// Registers `model:1`, a base version whose checkpoint holds only the `config.json` of a
/// model `n_embd` wide (what the launch form's resolved defaults read).
pub(crate) async fn register_base_of_width(app: &TestApp, model: &str, n_embd: i64) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.json"), json!({ "n_embd": n_embd }).to_string()).unwrap();
    let artifact =
        ::registry::artifacts::ArtifactStore::new(app.artifacts.path()).unwrap().put_dir(dir.path()).unwrap();
    register_artifact(app, model, ModelKind::Base, None, (json!({}), json!({})), artifact).await;
}

async fn run_count(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM runs").fetch_one(&app.db.pool).await.unwrap()
}

pub(crate) async fn enqueue(app: &TestApp, project: i64, kind: RunKind, config: Value) -> i64 {
    let new = NewRun { project_id: Some(project), kind, config, created_by: None };
    runs::enqueue(&app.db.pool, &new).await.unwrap()
}

pub(crate) fn metric(name: &str, step: i64, value: f64) -> Metric {
    Metric { name: name.into(), step, value }
}

/// A worker's claim of the oldest queued run.
pub(crate) async fn claim(app: &TestApp) -> i64 {
    runs::claim(&app.db.pool, "w1", Duration::from_secs(60)).await.unwrap().unwrap().id
}

/// The defaults' text as the form shows it.
fn form_text(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// An SFT launch form's fields: the stage's defaults as text, with `changes` applied.
fn sft_form(
    csrf: &str,
    project: i64,
    fields: &[(&str, &str)],
    changes: &[(&str, &str)],
) -> Vec<(String, String)> {
    let mut form: Vec<(String, String)> = vec![
        ("csrf".into(), csrf.into()),
        ("kind".into(), "sft".into()),
        ("project_id".into(), project.to_string()),
    ];
    form.extend(fields.iter().map(|(n, v)| (n.to_string(), v.to_string())));
    let defaults = run_defaults();
    for (key, value) in defaults.of("sft").unwrap().as_object().unwrap() {
        let name = format!("stage.{key}");
        let text =
            changes.iter().find(|(n, _)| *n == name).map(|(_, v)| v.to_string()).unwrap_or(form_text(value));
        form.push((name, text));
    }
    form.extend(
        changes
            .iter()
            .filter(|(n, _)| !form.iter().any(|(f, _)| f == n))
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect::<Vec<_>>(),
    );
    form
}

async fn post_pairs(app: &TestApp, path: &str, form: &[(String, String)]) -> reqwest::Response {
    app.client.post(app.url(path)).form(form).send().await.unwrap()
}

fn location(response: &reqwest::Response) -> String {
    response.headers()["location"].to_str().unwrap().to_string()
}

/// The id of the run a launch form's post went to.
fn launched(response: &reqwest::Response) -> i64 {
    let path = location(response);
    path.strip_prefix("/runs/").and_then(|p| p.strip_suffix("?done=launched")).unwrap().parse().unwrap()
}

/// Text as a page's HTML writes it.
fn unescaped(html: &str) -> String {
    [
        ("&#34;", "\""),
        ("&#39;", "'"),
        ("&#60;", "<"),
        ("&#62;", ">"),
        ("&quot;", "\""),
        ("&lt;", "<"),
        ("&gt;", ">"),
    ]
    .iter()
    .fold(html.to_owned(), |text, (entity, c)| text.replace(entity, c))
    .replace("&#38;", "&")
    .replace("&amp;", "&")
}

#[test]
fn every_run_route_needs_a_researcher() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let project = new_project(&app, "p").await;
        let run = enqueue(&app, project, RunKind::Sft, json!({})).await;
        let pages =
            ["/runs".to_string(), "/runs/new?kind=sft".into(), format!("/runs/{run}"), "/compare".into()];
        let apis = [
            "/api/runs".to_string(),
            format!("/api/runs/{run}"),
            format!("/api/runs/{run}/metrics"),
            format!("/api/runs/{run}/logs"),
            "/api/run-defaults/sft".into(),
            "/api/compare?v=1&v=2".into(),
        ];
        // Logged out: pages go to the login page, the API answers 401.
        for path in &pages {
            let response = app.get(path).await;
            assert_eq!(response.status(), StatusCode::SEE_OTHER, "{path}");
            assert!(location(&response).starts_with("/login?next="), "{path}");
        }
        for path in &apis {
            assert_eq!(app.get(path).await.status(), StatusCode::UNAUTHORIZED, "{path}");
        }
        let response = app.post_form(&format!("/runs/{run}/cancel"), &[("csrf", "x")]).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        // An annotator: 403 everywhere, posts included, and nothing changes.
        app.log_in("ann").await;
        let csrf = hidden_value(&app.get_html("/").await, "csrf");
        for path in pages.iter().chain(&apis) {
            assert_eq!(app.get(path).await.status(), StatusCode::FORBIDDEN, "{path}");
        }
        let form = sft_form(&csrf, project, &[("model_name", "m"), ("base", "b")], &[]);
        assert_eq!(post_pairs(&app, "/runs", &form).await.status(), StatusCode::FORBIDDEN);
        let response = app.post_form(&format!("/runs/{run}/cancel"), &[("csrf", &csrf)]).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        let token = app.token_for("ann").await;
        let response = client()
            .post(app.url("/api/runs"))
            .bearer_auth(&token)
            .json(&json!({"project_id": project, "kind": "sft", "config": {}}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        let response = client()
            .post(app.url(&format!("/api/runs/{run}/cancel")))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert_eq!(run_count(&app).await, 1);
        assert_eq!(runs::get(&app.db.pool, run).await.unwrap().status, RunStatus::Queued);
    });
}

#[test]
fn each_kinds_form_is_pre_filled_with_its_stage_defaults() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let project = new_project(&app, "p").await;
        app.log_in("rita").await;
        let defaults = run_defaults();
        for kind in KINDS {
            let html = app.get_html(&format!("/runs/new?kind={kind}&project={project}")).await;
            for (key, value) in defaults.of(kind).unwrap().as_object().unwrap() {
                let marker = format!("name=\"stage.{key}\"");
                assert!(html.contains(&marker), "{kind}: no {key}");
                if let Some(choice) = value.as_str() {
                    // A choice of names is a select with the default selected.
                    assert!(html.contains(&format!("<option value=\"{choice}\" selected>")), "{kind}: {key}");
                } else if !value.is_boolean() {
                    assert!(
                        html.contains(&format!("{marker} value=\"{}\"", form_text(value))),
                        "{kind}: {key}"
                    );
                }
            }
        }
        // The SFT learning rate is empty by default, and its help gives the rule of the
        // model's width it then takes, with its value for each preset.
        let sft = app.get_html(&format!("/runs/new?kind=sft&project={project}")).await;
        assert_eq!(defaults.of("sft").unwrap()["lr"], Value::Null);
        assert!(sft.contains("name=\"stage.lr\" value=\"\""), "{sft}");
        assert!(sft.contains("Peak learning rate"), "the setting's help shows");
        assert!(sft.contains("The rule: from the model&#39;s width (n_embd)"), "{sft}");
        assert!(sft.contains("Default: from the model&#39;s width."), "{sft}");
        assert!(sft.contains("tiny 1e-3"), "the value for each preset");
        let ppo = app.get_html(&format!("/runs/new?kind=ppo&project={project}")).await;
        assert!(ppo.contains("name=\"policy\"") && ppo.contains("name=\"stage.kl_coef\""), "{ppo}");
        assert_eq!(app.get("/runs/new?kind=rlhf").await.status(), StatusCode::UNPROCESSABLE_ENTITY);
        // The API hands out the same defaults.
        let body: Value = app.get("/api/run-defaults/sft").await.json().await.unwrap();
        assert_eq!(&body["stage"], defaults.of("sft").unwrap());
        assert_eq!(body["resolved"], Value::Null);
        assert_eq!(app.get("/api/run-defaults/rlhf").await.status(), StatusCode::NOT_FOUND);
    });
}

#[test]
fn the_defaults_resolved_for_a_chosen_version_fill_in_each_setting_that_follows_its_width() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        app.log_in("rita").await;
        register_base_of_width(&app, "narrow", 128).await;
        register_base_of_width(&app, "wide", 2048).await;
        for (reference, n_embd) in [("narrow:1", 128), ("wide", 2048)] {
            let body: Value =
                app.get(&format!("/api/run-defaults/sft?from={reference}")).await.json().await.unwrap();
            let resolved = &body["resolved"];
            assert_eq!(
                (resolved["from"].as_str(), resolved["n_embd"].as_i64()),
                (Some(reference), Some(n_embd))
            );
            // Every setting that follows the width is filled in by its rule; the rest as ever.
            assert_eq!(resolved["stage"]["lr"].as_f64(), Some(spec::Scale::SftLr.at(n_embd)), "{body}");
            assert_eq!(
                resolved["stage"]["dropout"].as_f64(),
                Some(spec::Scale::SftDropout.at(n_embd)),
                "{body}"
            );
            assert_eq!(resolved["stage"]["steps"], body["stage"]["steps"]);
        }
        let narrow: Value = app.get("/api/run-defaults/sft?from=narrow").await.json().await.unwrap();
        let wide: Value = app.get("/api/run-defaults/sft?from=wide").await.json().await.unwrap();
        assert!(narrow["resolved"]["stage"]["lr"].as_f64() > wide["resolved"]["stage"]["lr"].as_f64());
        // A version that does not exist is a 404 naming it; a malformed reference a 422.
        let missing = app.get("/api/run-defaults/sft?from=nothing:3").await;
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
        assert!(missing.text().await.unwrap().contains("nothing"));
        assert_eq!(
            app.get("/api/run-defaults/sft?from=a%20b").await.status(),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        // The launch form asks for them once a version is chosen (launch.js), and marks
        // where each default is written.
        let project = new_project(&app, "p").await;
        let form = app.get_html(&format!("/runs/new?kind=sft&project={project}")).await;
        assert!(form.contains("<script src=\"/static/launch.js\" defer></script>"), "{form}");
        assert!(form.contains("data-default=\"stage.lr\""), "{form}");
        let script = app.get("/static/launch.js").await;
        assert_eq!(script.status(), StatusCode::OK);
        assert!(script.text().await.unwrap().contains("/api/run-defaults/"));
    });
}

#[test]
fn a_gang_runs_page_lists_its_ranks_and_where_they_meet() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        app.log_in("rita").await;
        let project = new_project(&app, "p").await;
        let run = enqueue(
            &app,
            project,
            RunKind::Sft,
            json!({ "model_name": "s", "base": "b:1", "world_size": 2 }),
        )
        .await;
        let queued = app.get_html(&format!("/runs/{run}")).await;
        assert!(queued.contains("Waiting for 2 workers to be free at once."), "{queued}");
        assert!(runs::claim_or_wait(&app.db.pool, "gpu-b", Duration::from_secs(60), Duration::from_secs(60))
            .await
            .unwrap()
            .is_none());
        let claimed =
            runs::claim_or_wait(&app.db.pool, "gpu-a", Duration::from_secs(60), Duration::from_secs(60))
                .await
                .unwrap()
                .unwrap();
        assert_eq!((claimed.id, claimed.rank), (run, 0));
        ::registry::gangs::publish_rendezvous(&app.db.pool, run, "gpu-a", "10.1.2.3:29500").await.unwrap();
        let html = app.get_html(&format!("/runs/{run}")).await;
        assert!(html.contains("gpu-a (rank 0 of 2)"), "{html}");
        assert!(html.contains("they meet at 10.1.2.3:29500"), "{html}");
        assert!(html.contains("<td>1</td><td>gpu-b</td><td>waiting for its worker</td>"), "{html}");
        let body: Value = app.get(&format!("/api/runs/{run}")).await.json().await.unwrap();
        assert_eq!(
            (body["world_size"].as_i64(), body["rendezvous"].as_str()),
            (Some(2), Some("10.1.2.3:29500"))
        );
        let ranks: Vec<(i64, &str, &str)> = body["ranks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (r["rank"].as_i64().unwrap(), r["worker"].as_str().unwrap(), r["state"].as_str().unwrap())
            })
            .collect();
        assert_eq!(ranks, [(0, "gpu-a", "training"), (1, "gpu-b", "assigned")]);
        // The API refuses a world size a stage cannot train on, naming the field.
        let token = app.token_for("rita").await;
        let launch = json!({ "project_id": project, "kind": "dpo",
                             "config": { "model_name": "d", "policy": "s:1", "world_size": 2 } });
        let refused =
            client().post(app.url("/api/runs")).bearer_auth(&token).json(&launch).send().await.unwrap();
        assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert!(refused.text().await.unwrap().contains("world_size"));
    });
}

#[test]
fn launching_an_sft_run_through_the_form_enqueues_exactly_that_config() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let project = new_project(&app, "p").await;
        let snapshot = freeze(&app, project, SnapshotKind::Demonstrations).await;
        register(&app, "base-tiny", ModelKind::Base, None, json!({}), json!({})).await;
        app.log_in("rita").await;
        let html = app.get_html(&format!("/runs/new?kind=sft&project={project}")).await;
        assert!(
            html.contains("<option value=\"base-tiny:1\">"),
            "the datalist offers the base version: {html}"
        );
        assert!(html.contains(&format!("<option value=\"{snapshot}\">")), "the snapshot is offered");
        let csrf = hidden_value(&html, "csrf");
        let fields =
            [("model_name", "sft-a"), ("base", "base-tiny:1"), ("snapshot_id", &*snapshot.to_string())];
        let form = sft_form(&csrf, project, &fields, &[("stage.lr", "3e-5"), ("stage.steps", "40")]);
        let response = post_pairs(&app, "/runs", &form).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        let listed = runs::list(&app.db.pool, &Default::default()).await.unwrap();
        assert_eq!(listed.len(), 1);
        let run = &listed[0];
        assert_eq!(location(&response), format!("/runs/{}?done=launched", run.id));
        let mut stage = run_defaults().of("sft").unwrap().clone();
        stage["lr"] = json!(3e-5);
        stage["steps"] = json!(40);
        let expected =
            json!({"model_name": "sft-a", "base": "base-tiny:1", "snapshot_id": snapshot, "stage": stage});
        assert_eq!(run.config, expected);
        assert_eq!((run.kind, run.project_id, run.status), (RunKind::Sft, Some(project), RunStatus::Queued));
        let rita = labeling::users::get_user_by_username(&app.db.pool, "rita").await.unwrap();
        assert_eq!(run.created_by, Some(rita.id));
        // Without a snapshot, the worker freezes one: the config says nothing of it.
        let fields = [("model_name", "sft-b"), ("base", "base-tiny"), ("snapshot_id", "")];
        let response = post_pairs(&app, "/runs", &sft_form(&csrf, project, &fields, &[])).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        let id = launched(&response);
        let config = runs::get(&app.db.pool, id).await.unwrap().config;
        assert!(config.get("snapshot_id").is_none() && config["stage"] == *run_defaults().of("sft").unwrap());
    });
}

#[test]
fn bad_launches_are_refused_naming_the_field_and_enqueue_nothing() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let project = new_project(&app, "p").await;
        let other = new_project(&app, "q").await;
        let rankings = freeze(&app, project, SnapshotKind::Rankings).await;
        let elsewhere = freeze(&app, other, SnapshotKind::Demonstrations).await;
        register(&app, "base-tiny", ModelKind::Base, None, json!({}), json!({})).await;
        register(&app, "rm", ModelKind::Reward, None, json!({}), json!({})).await;
        app.log_in("rita").await;
        let csrf = app.csrf().await;
        let good = [("model_name", "sft-a"), ("base", "base-tiny")];
        let cases: Vec<(Vec<(&str, &str)>, Vec<(&str, &str)>, &str, &str)> = vec![
            (
                good.to_vec(),
                vec![("stage.learning_rate", "0.1")],
                "stage.learning_rate",
                "is not a sft setting",
            ),
            (good.to_vec(), vec![("stage.lr", "fast")], "stage.lr", "must be a number"),
            (good.to_vec(), vec![("stage.epochs", "2.5")], "stage.epochs", "whole number"),
            (
                vec![("model_name", "sft-a"), ("base", "nothing:3")],
                vec![],
                "base",
                "model `nothing` does not exist",
            ),
            (vec![("model_name", "sft-a"), ("base", "rm")], vec![], "base", "is a reward model"),
            (
                vec![("model_name", "bad name!"), ("base", "base-tiny")],
                vec![],
                "model_name",
                "not a valid model name",
            ),
            (vec![("model_name", "sft-a")], vec![], "base", "is required"),
        ];
        for (fields, changes, field, message) in cases {
            let response = post_pairs(&app, "/runs", &sft_form(&csrf, project, &fields, &changes)).await;
            assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY, "{field}");
            let html = response.text().await.unwrap();
            assert!(html.contains(message), "{field}: {html}");
            assert!(html.contains("The run was not launched"), "{field}");
            // The person's input comes back.
            assert!(html.contains(&format!("value=\"{}\"", fields[0].1)), "{field}");
        }
        for (snapshot, message) in [
            (rankings, "holds rankings, not demonstrations"),
            (elsewhere, "belongs to another project"),
            (999_999, "does not exist"),
        ] {
            let s = snapshot.to_string();
            let fields = [("model_name", "sft-a"), ("base", "base-tiny"), ("snapshot_id", s.as_str())];
            let response = post_pairs(&app, "/runs", &sft_form(&csrf, project, &fields, &[])).await;
            assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
            assert!(response.text().await.unwrap().contains(message), "{message}");
        }
        // The JSON API refuses the same, naming the field.
        let token = app.token_for("rita").await;
        let api = client();
        // The last: mixed-in versions that would leave a sample run's version none of the
        // project's K.
        for (kind, config, field, message) in [
            (
                "sft",
                json!({"model_name": "m", "base": "base-tiny", "stage": {"nope": 1}}),
                "stage.nope",
                None,
            ),
            (
                "sft",
                json!({"model_name": "m", "base": "base-tiny", "stage": {"lr": "0.1"}}),
                "stage.lr",
                None,
            ),
            ("sft", json!({"model_name": "m", "base": "base-tiny", "extra": true}), "extra", None),
            ("sft", json!([1]), "config", None),
            (
                "sample",
                json!({"version": "base-tiny", "mix": ["base-tiny:1"], "mix_k": 4}),
                "mix_k",
                Some("the project's K is 4"),
            ),
        ] {
            let response = api
                .post(app.url("/api/runs"))
                .bearer_auth(&token)
                .json(&json!({"project_id": project, "kind": kind, "config": config}))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY, "{field}");
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["error"]["field"], field, "{body}");
            if let Some(message) = message {
                assert!(body.to_string().contains(message), "{body}");
            }
        }
        let response = api
            .post(app.url("/api/runs"))
            .bearer_auth(&token)
            .json(&json!({"project_id": 999_999, "kind": "sft", "config": {}}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        // A config whose only fault is a version that does not exist: a 404 naming it.
        let response = api
            .post(app.url("/api/runs"))
            .bearer_auth(&token)
            .json(&json!({"project_id": project, "kind": "sft", "config": {"model_name": "m", "base": "ghost"}}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert!(response.text().await.unwrap().contains("base: "));
        // A form without the session's CSRF token is refused.
        let form = sft_form("forged", project, &good, &[]);
        assert_eq!(post_pairs(&app, "/runs", &form).await.status(), StatusCode::FORBIDDEN);
        assert_eq!(run_count(&app).await, 0);
    });
}

#[test]
fn the_api_launches_each_kind_with_its_references() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let project = new_project(&app, "p").await;
        register(&app, "base-tiny", ModelKind::Base, None, json!({}), json!({})).await;
        register(&app, "sft", ModelKind::Sft, None, json!({}), json!({})).await;
        register(&app, "rm", ModelKind::Reward, None, json!({}), json!({})).await;
        let token = app.token_for("rita").await;
        let configs = [
            (
                "pretrain",
                json!({"model_name": "base2", "preset": "tiny", "corpus": "demo_world", "stage": {"steps": 10}}),
            ),
            ("reward", json!({"model_name": "rm2", "base": "sft:1"})),
            (
                "ppo",
                json!({"model_name": "pol", "policy": "sft", "reward": "rm", "stage": {"kl_target": 6.0}}),
            ),
            ("sample", json!({"version": "sft", "prompts": {"split": "train", "limit": 5}, "k": 4})),
            (
                "eval",
                json!({"versions": ["sft", "base-tiny:1"], "reward": "rm", "prompts": {"split": "val"}}),
            ),
        ];
        for (kind, config) in configs {
            let response = client()
                .post(app.url("/api/runs"))
                .bearer_auth(&token)
                .json(&json!({"project_id": project, "kind": kind, "config": config}))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::CREATED, "{kind}: {}", response.text().await.unwrap());
            let run: Value = response.json().await.unwrap();
            assert_eq!((run["kind"].as_str(), &run["config"]), (Some(kind), &config));
        }
        // The PPO reward must be a reward model; a sample's K fits 2..9.
        for (kind, config, field) in [
            ("ppo", json!({"model_name": "pol", "policy": "sft", "reward": "sft"}), "reward"),
            ("sample", json!({"version": "sft", "prompts": {"split": "train"}, "k": 12}), "k"),
            ("pretrain", json!({"model_name": "b", "corpus": "wikipedia"}), "corpus"),
        ] {
            let response = client()
                .post(app.url("/api/runs"))
                .bearer_auth(&token)
                .json(&json!({"project_id": project, "kind": kind, "config": config}))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY, "{kind}");
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["error"]["field"], field, "{body}");
        }
        assert_eq!(run_count(&app).await, 5);
    });
}

#[test]
fn a_run_page_shows_what_its_worker_reported_and_why_it_failed() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let project = new_project(&app, "p").await;
        let run = enqueue(&app, project, RunKind::Ppo, json!({"model_name": "pol"})).await;
        app.log_in("rita").await;
        let html = app.get_html(&format!("/runs/{run}")).await;
        assert!(html.contains("id=\"run-cancel\"") && html.contains("No metrics yet"), "{html}");
        assert!(html.contains("data-active=\"true\"") && html.contains("/static/charts.js"));
        // A fake worker: claim, report, log, fail.
        assert_eq!(claim(&app).await, run);
        let pool = &app.db.pool;
        let reported =
            [metric("loss/policy", 1, 0.9), metric("objective/kl", 1, 0.01), metric("ppo/clipfrac", 1, 0.1)];
        runs::report(pool, run, "w1", 1, Some(4), &reported).await.unwrap();
        runs::report(pool, run, "w1", 2, None, &[metric("loss/policy", 2, 0.7)]).await.unwrap();
        runs::log(pool, run, &["rollout 1 done", "<b>not bold</b>"]).await.unwrap();
        let html = app.get_html(&format!("/runs/{run}")).await;
        for needle in [
            "data-metric=\"loss/policy\"",
            "data-metric=\"objective/kl\"",
            "data-group=\"ppo\"",
            "<polyline",
            "rollout 1 done",
            "step 2 of 4",
            "w1",
        ] {
            assert!(html.contains(needle), "{needle}: {html}");
        }
        assert!(!html.contains("<b>not bold</b>"), "log lines are escaped");
        let series: Value = app.get(&format!("/api/runs/{run}/metrics")).await.json().await.unwrap();
        let policy = series.as_array().unwrap().iter().find(|s| s["name"] == "loss/policy").unwrap();
        assert_eq!((&policy["steps"], &policy["values"]), (&json!([1, 2]), &json!([0.9, 0.7])));
        let lines: Value = app.get(&format!("/api/runs/{run}/logs")).await.json().await.unwrap();
        let first = lines[0]["id"].as_i64().unwrap();
        let after: Value =
            app.get(&format!("/api/runs/{run}/logs?after={first}")).await.json().await.unwrap();
        assert_eq!(after.as_array().unwrap().len(), 1);
        assert_eq!(after[0]["line"], "<b>not bold</b>");
        assert_eq!(
            app.get(&format!("/api/runs/{run}/logs?limit=0")).await.status(),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        let detail: Value = app.get(&format!("/api/runs/{run}")).await.json().await.unwrap();
        assert_eq!((detail["status"].as_str(), detail["step"].as_i64()), (Some("running"), Some(2)));
        assert!(detail["eta_seconds"].is_number(), "{detail}");
        runs::fail(pool, run, "w1", "CUDA out of memory at step 3").await.unwrap();
        let html = app.get_html(&format!("/runs/{run}")).await;
        assert!(html.contains("CUDA out of memory at step 3") && html.contains("id=\"run-error\""), "{html}");
        assert!(!html.contains("id=\"run-cancel\"") && html.contains("data-active=\"false\""));
        assert_eq!(app.get("/runs/999999").await.status(), StatusCode::NOT_FOUND);
        assert_eq!(app.get("/api/runs/999999/metrics").await.status(), StatusCode::NOT_FOUND);
        // The page's script is served.
        assert_eq!(app.get("/static/charts.js").await.status(), StatusCode::OK);
        assert_eq!(app.get("/static/runs.js").await.status(), StatusCode::OK);
    });
}

#[test]
fn a_succeeded_run_links_its_version() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let project = new_project(&app, "p").await;
        let run = enqueue(&app, project, RunKind::Sft, json!({"model_name": "sft-a"})).await;
        claim(&app).await;
        runs::finish(&app.db.pool, run, "w1").await.unwrap();
        register(&app, "sft-a", ModelKind::Sft, Some(run), json!({}), json!({})).await;
        app.log_in("rita").await;
        let html = app.get_html(&format!("/runs/{run}")).await;
        assert!(html.contains("href=\"/models/sft-a/versions/1\""), "{html}");
        let detail: Value = app.get(&format!("/api/runs/{run}")).await.json().await.unwrap();
        assert_eq!(detail["version"]["model"], "sft-a");
    });
}

#[test]
fn cancel_stops_a_queued_run_asks_a_running_one_and_refuses_a_finished_one() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let project = new_project(&app, "p").await;
        let running = enqueue(&app, project, RunKind::Sft, json!({})).await;
        let queued = enqueue(&app, project, RunKind::Sft, json!({})).await;
        assert_eq!(claim(&app).await, running);
        app.log_in("rita").await;
        let html = app.get_html(&format!("/runs/{queued}")).await;
        let asks = format!("id=\"run-cancel\" data-confirm=\"Cancel run #{queued} (sft, step 0)?\"");
        assert!(html.contains(&asks) && html.contains("src=\"/static/confirm.js\""), "{html}");
        let csrf = hidden_value(&html, "csrf");
        let response = app.post_form(&format!("/runs/{queued}/cancel"), &[("csrf", &csrf)]).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(location(&response), format!("/runs/{queued}?done=cancelled"));
        assert_eq!(runs::get(&app.db.pool, queued).await.unwrap().status, RunStatus::Cancelled);
        let html = app.get_html(&location(&response)).await;
        assert!(html.contains(&format!("id=\"run-notice\">Cancelled run #{queued}.")), "{html}");
        // A running run is asked; its worker stops at its next heartbeat.
        let response = app.post_form(&format!("/runs/{running}/cancel"), &[("csrf", &csrf)]).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        let run = runs::get(&app.db.pool, running).await.unwrap();
        assert!(run.cancel_requested && run.status == RunStatus::Running);
        assert!(app.get_html(&format!("/runs/{running}")).await.contains("cancel requested"));
        let html = app.get_html(&location(&response)).await;
        assert!(html.contains("id=\"run-notice\">Cancel requested: the worker stops"), "{html}");
        runs::finish_cancelled(&app.db.pool, running, "w1").await.unwrap();
        // A finished run cannot be cancelled: a clear refusal.
        let done = enqueue(&app, project, RunKind::Sft, json!({})).await;
        claim(&app).await;
        runs::finish(&app.db.pool, done, "w1").await.unwrap();
        let response = app.post_form(&format!("/runs/{done}/cancel"), &[("csrf", &csrf)]).await;
        assert_eq!(response.status(), StatusCode::CONFLICT);
        assert!(response.text().await.unwrap().contains("has already finished: it succeeded"));
        let response = app.post_form(&format!("/runs/{done}/cancel"), &[("csrf", "forged")]).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        // The API: a token needs no CSRF token.
        let token = app.token_for("rita").await;
        let another = enqueue(&app, project, RunKind::Sft, json!({})).await;
        let response = client()
            .post(app.url(&format!("/api/runs/{another}/cancel")))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["status"], "cancelled");
        let response = client()
            .post(app.url(&format!("/api/runs/{done}/cancel")))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CONFLICT);
        assert_eq!(runs::get(&app.db.pool, done).await.unwrap().status, RunStatus::Succeeded);
    });
}

#[test]
fn the_queue_lists_runs_newest_first_and_filters_them() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let p = new_project(&app, "alpha").await;
        let q = new_project(&app, "beta").await;
        let first = enqueue(&app, p, RunKind::Sft, json!({})).await;
        let second = enqueue(&app, q, RunKind::Reward, json!({})).await;
        let third = enqueue(&app, p, RunKind::Ppo, json!({})).await;
        claim(&app).await;
        runs::report(&app.db.pool, first, "w1", 3, Some(10), &[]).await.unwrap();
        app.log_in("rita").await;
        let html = app.get_html("/runs").await;
        let at = |id: i64| html.find(&format!("data-run-id=\"{id}\"")).unwrap();
        assert!(at(third) < at(second) && at(second) < at(first), "newest first");
        assert!(html.contains("value=\"3\" max=\"10\"") && html.contains("3/10"), "{html}");
        assert!(html.contains("status-running") && html.contains("data-active=\"true\""));
        let html = app.get_html("/runs?kind=ppo").await;
        assert!(
            html.contains(&format!("data-run-id=\"{third}\""))
                && !html.contains(&format!("data-run-id=\"{first}\""))
        );
        let html = app.get_html(&format!("/runs?project={q}&status=queued")).await;
        assert!(
            html.contains(&format!("data-run-id=\"{second}\""))
                && !html.contains(&format!("data-run-id=\"{third}\""))
        );
        let listed: Value = app.get(&format!("/api/runs?project={p}&kind=sft")).await.json().await.unwrap();
        let ids: Vec<i64> = listed.as_array().unwrap().iter().map(|r| r["id"].as_i64().unwrap()).collect();
        assert_eq!(ids, [first]);
        assert_eq!(app.get("/runs?status=lost").await.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(app.get("/api/runs?kind=rlhf").await.status(), StatusCode::UNPROCESSABLE_ENTITY);
    });
}

#[test]
fn compare_shows_two_versions_side_by_side_with_their_curves() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let project = new_project(&app, "p").await;
        let mut made = Vec::new();
        for (lr, loss) in [(1e-4, 0.5), (3e-4, 0.4)] {
            let run = enqueue(&app, project, RunKind::Sft, json!({})).await;
            claim(&app).await;
            let curve = [metric("loss/lm", 1, 2.0), metric("loss/lm", 2, loss)];
            runs::report(&app.db.pool, run, "w1", 2, Some(2), &curve).await.unwrap();
            runs::finish(&app.db.pool, run, "w1").await.unwrap();
            let config = json!({"stage": {"lr": lr, "epochs": 16}});
            made.push(
                register(
                    &app,
                    "sft-a",
                    ModelKind::Sft,
                    Some(run),
                    config,
                    json!({"val/loss": loss, "val/accuracy": 1.0 - loss}),
                )
                .await,
            );
        }
        let (a, b) = (made[0].id, made[1].id);
        app.log_in("rita").await;
        let picker = app.get_html("/compare").await;
        assert!(picker.contains("name=\"v\" value=\"sft-a:1\"") && picker.contains("sft-a:2"), "{picker}");
        assert!(picker.contains("their eval runs"));
        let html = app.get_html(&format!("/compare?v={a}&v={b}")).await;
        for needle in [
            "sft-a:1",
            "sft-a:2",
            "data-metric=\"val/loss\"",
            "class=\"legend\"",
            "data-metric=\"loss/lm\"",
            "No eval run has evaluated these versions yet.",
        ] {
            assert!(html.contains(needle), "{needle}: {html}");
        }
        assert_eq!(html.matches("<polyline").count(), 2, "one curve per version on the one chart");
        // The eval run of these versions is one click away, its form pre-filled.
        let launch = body_of_link(&html, "launch-eval").replace("&#38;", "&");
        assert!(launch.starts_with("/runs/new?kind=eval&project="), "{launch}");
        let form = app.get_html(&launch).await;
        assert!(form.contains("value=\"sft-a:1,sft-a:2\""), "the versions are filled in: {form}");
        // sft-a:2 has the lower loss and the higher accuracy: both rows mark it best.
        assert_eq!(html.matches("class=\"best\"").count(), 2);
        let lr_row = html.find("stage.lr").unwrap();
        assert!(html[..lr_row].ends_with("data-differs=\"true\"><th scope=\"row\">"), "the lr differs");
        assert!(!html.contains("stage.epochs <small>(differs)"), "epochs do not differ");
        let body: Value = app.get(&format!("/api/compare?v={a}&v={b}")).await.json().await.unwrap();
        assert_eq!(body["versions"].as_array().unwrap().len(), 2);
        let loss = body["metrics"].as_array().unwrap().iter().find(|r| r["name"] == "val/loss").unwrap();
        assert_eq!(loss["best"], 1);
        assert_eq!(body["curves"][0]["series"].as_array().unwrap().len(), 2);
        assert_eq!(app.get(&format!("/api/compare?v={a}")).await.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert!(app.get_html(&format!("/compare?v={a}")).await.contains("Pick at least two versions"));
        assert_eq!(app.get(&format!("/compare?v={a}&v=999999")).await.status(), StatusCode::NOT_FOUND);
        // A bare name is the model's latest version: none here.
        assert_eq!(app.get("/compare?v=abc").await.status(), StatusCode::NOT_FOUND);
        assert_eq!(app.get("/compare?v=a%20b").await.status(), StatusCode::UNPROCESSABLE_ENTITY);
    });
}

#[test]
fn compare_picks_versions_by_name_refuses_bad_ones_and_shows_only_differences() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let project = new_project(&app, "p").await;
        for (lr, loss) in [(1e-4, 0.5), (3e-4, 0.4)] {
            let run = enqueue(&app, project, RunKind::Sft, json!({})).await;
            claim(&app).await;
            runs::report(&app.db.pool, run, "w1", 1, Some(1), &[metric("val/loss", 1, loss)]).await.unwrap();
            runs::finish(&app.db.pool, run, "w1").await.unwrap();
            let config = json!({"stage": {"lr": lr, "epochs": 16}});
            let metrics = json!({"val/loss": loss, "val/accuracy": 1.0 - loss, "grad_norm": loss, "lr": lr});
            register(&app, "sft-b", ModelKind::Sft, Some(run), config, metrics).await;
        }
        app.log_in("rita").await;
        let html = app.get_html("/compare?v=sft-b:1&v=sft-b:2").await;
        assert!(html.contains("id=\"compare-versions\"") && html.contains("sft-b:2"), "{html}");
        // charts.js draws the curves from the page: one series per version, named.
        let curves =
            html.split("data-curves=\"").nth(1).unwrap().split('"').next().unwrap().replace("&#34;", "\"");
        let curves: Value = serde_json::from_str(&curves).unwrap();
        assert_eq!(curves[0]["name"], "val/loss");
        assert_eq!(curves[0]["series"][1]["label"], "sft-b:2");
        assert!(html.contains("/static/charts.js"));
        // Best only where lower or higher is better: loss and accuracy, not grad_norm or lr.
        let row = |name: &str| {
            let at = html.find(&format!("<tr data-metric=\"{name}\">")).unwrap();
            html[at..at + html[at..].find("</tr>").unwrap()].to_owned()
        };
        assert!(row("val/loss").contains("(lower is better)") && row("val/loss").contains("class=\"best\""));
        assert!(row("val/accuracy").contains("(higher is better)") && row("val/accuracy").contains("(best)"));
        for neither in ["grad_norm", "lr"] {
            assert!(
                !row(neither).contains("best") && !row(neither).contains("is better"),
                "{}",
                row(neither)
            );
        }
        let body: Value = app.get("/api/compare?v=sft-b:1&v=sft-b:2").await.json().await.unwrap();
        let metric_row =
            |name: &str| body["metrics"].as_array().unwrap().iter().find(|r| r["name"] == name).cloned();
        assert_eq!(metric_row("grad_norm").unwrap()["best"], Value::Null);
        assert_eq!(metric_row("grad_norm").unwrap()["lower_is_better"], Value::Null);
        assert_eq!(metric_row("val/accuracy").unwrap()["best"], 1);
        // Every key by default, with a link to the differences only; then only the lr.
        assert!(html.contains("stage.epochs") && html.contains("stage.lr"));
        assert!(
            html.contains("href=\"/compare?v=sft-b%3A1&#38;v=sft-b%3A2&#38;only=differences\""),
            "{html}"
        );
        let differences = app.get_html("/compare?v=sft-b:1&v=sft-b:2&only=differences").await;
        assert!(differences.contains("stage.lr") && !differences.contains("stage.epochs"));
        assert!(differences.contains("Show every key"));
        // A bad version is refused naming it, never a 500.
        for (bad, status) in [
            ("sft-b:9", StatusCode::NOT_FOUND),
            ("ghost:1", StatusCode::NOT_FOUND),
            ("sft-b:zero", StatusCode::UNPROCESSABLE_ENTITY),
            ("sft-b:", StatusCode::UNPROCESSABLE_ENTITY),
        ] {
            let response = app.get(&format!("/compare?v=sft-b:1&v={bad}")).await;
            assert_eq!(response.status(), status, "{bad}");
            assert!(response.text().await.unwrap().contains(bad), "{bad} is named");
            let response = app.get(&format!("/api/compare?v=sft-b:1&v={bad}")).await;
            assert_eq!(response.status(), status, "{bad}");
            let error: Value = response.json().await.unwrap();
            assert!(error.to_string().contains(bad), "{error}");
        }
        let refused: Value = app.get("/api/compare?v=sft-b:zero&v=sft-b:1").await.json().await.unwrap();
        assert_eq!(refused["error"]["field"], "v", "{refused}");
        assert_eq!(
            app.get("/compare?v=sft-b:1&v=sft-b:2&only=same").await.status(),
            StatusCode::UNPROCESSABLE_ENTITY
        );
    });
}

/// The `href` of the element with this id.
fn body_of_link(html: &str, id: &str) -> String {
    let at = html.find(&format!("id=\"{id}\"")).unwrap_or_else(|| panic!("no #{id}"));
    let href = html[at..].find("href=\"").unwrap() + at + 6;
    html[href..].split('"').next().unwrap().to_owned()
}

#[test]
fn the_api_refuses_settings_outside_the_contract_naming_every_one_and_queues_nothing() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let project = new_project(&app, "p").await;
        register(&app, "base-tiny", ModelKind::Base, None, json!({}), json!({})).await;
        register(&app, "sft", ModelKind::Sft, None, json!({}), json!({})).await;
        register(&app, "rm", ModelKind::Reward, None, json!({}), json!({})).await;
        let token = app.token_for("rita").await;
        let cases = [
            (
                "ppo",
                json!({"model_name": "pol", "policy": "sft", "reward": "rm",
                       "stage": {"kl_coef": -1, "batch_size": -4}}),
                vec!["stage.batch_size", "stage.kl_coef"],
            ),
            (
                "sft",
                json!({"model_name": "s", "base": "base-tiny",
                       "stage": {"val_fraction": 1.5, "batch_size": -4, "lr": 0}}),
                vec!["stage.lr", "stage.batch_size", "stage.val_fraction"],
            ),
            (
                "reward",
                json!({"model_name": "r", "base": "ghost", "stage": {"val_fraction": 1.5}}),
                vec!["base", "stage.val_fraction"],
            ),
        ];
        for (kind, config, fields) in cases {
            let response = client()
                .post(app.url("/api/runs"))
                .bearer_auth(&token)
                .json(&json!({"project_id": project, "kind": kind, "config": config}))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY, "{kind}");
            let body: Value = response.json().await.unwrap();
            let named: Vec<&str> = body["error"]["problems"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["field"].as_str().unwrap())
                .collect();
            let mut named = named;
            named.sort();
            let mut fields = fields;
            fields.sort();
            assert_eq!(named, fields, "{body}");
            assert_eq!(body["error"]["field"], body["error"]["problems"][0]["field"], "{body}");
        }
        // A misspelt top-level key is refused by name too, not ignored.
        let response = client()
            .post(app.url("/api/runs"))
            .bearer_auth(&token)
            .json(&json!({"project_id": project, "kind": "sft", "confg": {"model_name": "s", "base": "base-tiny"}}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let body: Value = response.json().await.unwrap();
        assert!(body["error"]["message"].as_str().unwrap().contains("unknown field `confg`"), "{body}");
        assert_eq!(run_count(&app).await, 0);
    });
}

#[test]
fn every_field_and_setting_of_every_run_kind_is_on_its_launch_form() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let project = new_project(&app, "p").await;
        app.log_in("rita").await;
        for kind in spec::RunKind::ALL.iter().copied() {
            let html = app.get_html(&format!("/runs/new?kind={kind}&project={project}")).await;
            let text = [
                ("&#x27;", "'"),
                ("&#39;", "'"),
                ("&quot;", "\""),
                ("&lt;", "<"),
                ("&gt;", ">"),
                ("&amp;", "&"),
            ]
            .iter()
            .fold(html.clone(), |t, (entity, c)| t.replace(entity, c));
            for input in spec::inputs(kind) {
                assert!(
                    html.contains(&format!("name=\"{}\"", input.name)),
                    "{kind}: no field {}",
                    input.name
                );
            }
            for setting in spec::settings(kind) {
                let name = format!("name=\"stage.{}\"", setting.name);
                assert!(html.contains(&name), "{kind}: no setting {}", setting.name);
                let help = setting.help.split_whitespace().collect::<Vec<_>>().join(" ");
                assert!(text.contains(&help), "{kind}: no help for {}", setting.name);
            }
        }
    });
}

#[test]
fn a_run_is_launched_with_a_name_and_notes_each_checked_and_named_when_refused() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let project = new_project(&app, "p").await;
        register(&app, "base-tiny", ModelKind::Base, None, json!({}), json!({})).await;
        let token = app.token_for("rita").await;
        let launch = |body: Value| client().post(app.url("/api/runs")).bearer_auth(&token).json(&body).send();
        let config = json!({"model_name": "s", "base": "base-tiny:1"});
        let body = json!({"project_id": project, "kind": "sft", "config": config,
                          "name": "  lr sweep A ", "notes": "Halves the lr.\nWatch val/loss."});
        let response = launch(body).await.unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        let run: Value = response.json().await.unwrap();
        assert_eq!(
            (run["name"].as_str(), run["notes"].as_str()),
            (Some("lr sweep A"), Some("Halves the lr.\nWatch val/loss."))
        );
        // Without a name, the kind and the version it starts from.
        let response = launch(json!({"project_id": project, "kind": "sft", "config": config})).await.unwrap();
        let run: Value = response.json().await.unwrap();
        assert_eq!(run["name"], "sft of base-tiny:1");
        let listed = client().get(app.url("/api/runs")).bearer_auth(&token).send().await.unwrap();
        let listed: Value = listed.json().await.unwrap();
        assert_eq!(listed[1]["name"], "lr sweep A");
        // Too long, or two lines: a 422 naming the field; unknown fields are still refused.
        let refusals = [
            (json!({"name": "n".repeat(201)}), "name"),
            (json!({"name": "one\ntwo"}), "name"),
            (json!({"notes": "n".repeat(10_001)}), "notes"),
        ];
        for (extra, field) in refusals {
            let mut body = json!({"project_id": project, "kind": "sft", "config": config});
            body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            let response = launch(body).await.unwrap();
            assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY, "{field}");
            let error: Value = response.json().await.unwrap();
            assert_eq!(error["error"]["field"], field, "{error}");
        }
        let body = json!({"project_id": project, "kind": "sft", "config": config, "title": "x"});
        let response = launch(body).await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(run_count(&app).await, 2);
        // The form: the name's problem is shown next to it, and nothing is queued.
        app.log_in("rita").await;
        let html = app.get_html(&format!("/runs/new?kind=sft&project={project}")).await;
        let csrf = hidden_value(&html, "csrf");
        let long = "n".repeat(201);
        let fields = [("model_name", "s"), ("base", "base-tiny:1"), ("name", &*long), ("notes", "x")];
        let response = post_pairs(&app, "/runs", &sft_form(&csrf, project, &fields, &[])).await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let html = response.text().await.unwrap();
        assert!(html.contains("id=\"e-name\"") && html.contains("at most 200 characters"), "{html}");
        assert_eq!(run_count(&app).await, 2);
        let fields = [("model_name", "s"), ("base", "base-tiny:1"), ("name", "by form"), ("notes", "x")];
        let response = post_pairs(&app, "/runs", &sft_form(&csrf, project, &fields, &[])).await;
        let run = runs::get(&app.db.pool, launched(&response)).await.unwrap();
        assert_eq!((run.name.as_str(), run.notes.as_str()), ("by form", "x"));
        let html = app.get_html(&location(&response)).await;
        assert!(html.contains("id=\"run-notice\">Launched by form: it is queued."), "{html}");
        assert!(html.contains("<h1>by form</h1>"), "{html}");
    });
}

#[test]
fn a_runs_name_and_notes_are_edited_on_its_page_and_through_the_api() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let project = new_project(&app, "p").await;
        let run = enqueue(&app, project, RunKind::Sft, json!({})).await;
        app.log_in("rita").await;
        let html = app.get_html(&format!("/runs/{run}")).await;
        assert!(html.contains(&format!("<h1>run #{run}</h1>")) && html.contains("No notes yet"), "{html}");
        let csrf = hidden_value(&html, "csrf");
        let path = format!("/runs/{run}/describe");
        let form = [("csrf", &*csrf), ("name", "baseline"), ("notes", "<b>first</b> try")];
        let response = app.post_form(&path, &form).await;
        assert_eq!(location(&response), format!("/runs/{run}?done=saved"));
        let html = app.get_html(&location(&response)).await;
        assert!(html.contains("id=\"run-notice\">Saved the name and notes."), "{html}");
        assert!(html.contains("<h1>baseline</h1>") && !html.contains("<b>first</b>"), "escaped: {html}");
        assert!(unescaped(&html).contains("<b>first</b> try"), "{html}");
        let forged = [("csrf", "forged"), ("name", "x"), ("notes", "")];
        assert_eq!(app.post_form(&path, &forged).await.status(), StatusCode::FORBIDDEN);
        let long = "n".repeat(10_001);
        let response = app.post_form(&path, &[("csrf", &*csrf), ("name", "b"), ("notes", &long)]).await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let html = response.text().await.unwrap();
        assert!(html.contains("id=\"e-notes\"") && html.contains("at most 10000 characters"), "{html}");
        assert!(html.contains(&format!(">{long}</textarea>")), "what was typed is kept");
        assert_eq!(runs::get(&app.db.pool, run).await.unwrap().name, "baseline", "nothing was saved");
        // The API changes what it is given and keeps the rest.
        let token = app.token_for("rita").await;
        let patch = |body: Value| {
            client().patch(app.url(&format!("/api/runs/{run}"))).bearer_auth(&token).json(&body).send()
        };
        let response = patch(json!({"notes": "second try"})).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let changed: Value = response.json().await.unwrap();
        assert_eq!(
            (changed["name"].as_str(), changed["notes"].as_str()),
            (Some("baseline"), Some("second try"))
        );
        let response = patch(json!({"name": "x".repeat(201)})).await.unwrap();
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["field"], "name");
        assert_eq!(patch(json!({"nmae": "x"})).await.unwrap().status(), StatusCode::BAD_REQUEST);
        let stored = runs::get(&app.db.pool, run).await.unwrap();
        assert_eq!((stored.name.as_str(), stored.notes.as_str()), ("baseline", "second try"));
        // An annotator may not.
        app.log_in("ann").await;
        let csrf = hidden_value(&app.get_html("/").await, "csrf");
        let response = app.post_form(&path, &[("csrf", &*csrf), ("name", "mine"), ("notes", "")]).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
    });
}

#[test]
fn the_run_list_shows_each_runs_model_key_metrics_and_tags_and_filters_by_text() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let project = new_project(&app, "p").await;
        let pool = &app.db.pool;
        let named = |name: &str, notes: &str, config: Value| {
            let new = NewRun { project_id: Some(project), kind: RunKind::Sft, config, created_by: None };
            let (name, notes) = (runs::RunName::parse(name).unwrap(), runs::RunNotes::parse(notes).unwrap());
            async move { runs::enqueue_named(pool, &new, &name, &notes).await.unwrap() }
        };
        let done = named("lr sweep", "the BIG one", json!({"model_name": "sft-a", "base": "base:1"})).await;
        let other = named("dropout", "", json!({"base": "base:2"})).await;
        claim(&app).await;
        let reported = [
            metric("loss/sft", 1, 2.5),
            metric("loss/sft", 2, 1.25),
            metric("val/loss", 2, 1.5),
            metric("val/perplexity", 2, 4.5),
        ];
        runs::report(pool, done, "w1", 2, Some(2), &reported).await.unwrap();
        runs::finish(pool, done, "w1").await.unwrap();
        let version = register(&app, "sft-a", ModelKind::Sft, Some(done), json!({}), json!({})).await;
        versions::add_tag(pool, version.id, "champion").await.unwrap();
        app.log_in("rita").await;
        let html = app.get_html("/runs").await;
        assert!(html.contains("<table id=\"run-queue\" class=\"stack\""), "phone width: one card per run");
        let row = row_of(&html, done);
        for needle in [
            ">lr sweep</a>",
            "data-label=\"Model\"",
            "from base:1 → <strong>sft-a:1</strong>",
            "loss/sft 1.250",
            "val/loss 1.500",
            "<span class=\"tag\">champion</span>",
        ] {
            assert!(row.contains(needle), "{needle}: {row}");
        }
        assert!(!row.contains("val/perplexity"), "only the headline metrics: {row}");
        assert!(row_of(&html, other).contains("from base:2"));
        // The text filter matches the name or the notes, in any case.
        for (q, shown) in [("big", done), ("DROP", other)] {
            let html = app.get_html(&format!("/runs?q={q}")).await;
            let hidden = if shown == done { other } else { done };
            assert!(html.contains(&format!("data-run-id=\"{shown}\"")), "{q}");
            assert!(!html.contains(&format!("data-run-id=\"{hidden}\"")), "{q}");
            assert!(html.contains(&format!("value=\"{q}\"")), "the filter keeps its text");
        }
        let html = app.get_html("/runs?q=50%25").await;
        assert!(html.contains("match these filters"), "% is matched as itself");
        let listed: Value = app.get("/api/runs?q=sweep").await.json().await.unwrap();
        assert_eq!(listed.as_array().unwrap().len(), 1);
        assert_eq!(listed[0]["id"], done);
    });
}

/// The HTML of the run list's row of run `id`.
fn row_of(html: &str, id: i64) -> String {
    let at = html.find(&format!("data-run-id=\"{id}\"")).unwrap_or_else(|| panic!("no row {id}"));
    html[at..].split("</tr>").next().unwrap().to_owned()
}

#[test]
fn a_queued_run_says_when_no_worker_is_online() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let project = new_project(&app, "p").await;
        let run = enqueue(&app, project, RunKind::Sft, json!({})).await;
        let note = "No worker is online: start one with <code>plumb worker</code>";
        app.log_in("rita").await;
        assert!(app.get_html(&format!("/runs/{run}")).await.contains(note));
        assert!(app.get_html("/runs").await.contains(note));
        // A worker last seen long ago is not online.
        sqlx::query("INSERT INTO workers (name, last_seen) VALUES ('old', now() - interval '10 minutes')")
            .execute(&app.db.pool)
            .await
            .unwrap();
        assert!(app.get_html(&format!("/runs/{run}")).await.contains(note));
        // A worker that asks for a run is online (its claim records it).
        let other = new_project(&app, "q").await;
        let taken = enqueue(&app, other, RunKind::Sft, json!({})).await;
        runs::cancel(&app.db.pool, run).await.unwrap();
        assert_eq!(claim(&app).await, taken);
        let queued = enqueue(&app, project, RunKind::Sft, json!({})).await;
        let html = app.get_html(&format!("/runs/{queued}")).await;
        assert!(!html.contains("No worker is online"), "{html}");
        assert!(!app.get_html("/runs").await.contains("No worker is online"));
        let seen: i64 = sqlx::query_scalar("SELECT count(*) FROM workers WHERE name = 'w1'")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
        assert_eq!(seen, 1);
    });
}

#[test]
fn clone_this_run_opens_the_launch_form_filled_as_the_run_was_launched() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let project = new_project(&app, "p").await;
        register(&app, "base-tiny", ModelKind::Base, None, json!({}), json!({})).await;
        app.log_in("rita").await;
        let csrf =
            hidden_value(&app.get_html(&format!("/runs/new?kind=sft&project={project}")).await, "csrf");
        let fields = [("model_name", "sft-c"), ("base", "base-tiny:1"), ("name", "warm & \"quoted\"")];
        let form = sft_form(&csrf, project, &fields, &[("stage.lr", "3e-5"), ("stage.dropout", "0.3")]);
        let original = launched(&post_pairs(&app, "/runs", &form).await);
        let html = app.get_html(&format!("/runs/{original}")).await;
        let clone = unescaped(&body_of_link(&html, "run-clone"));
        assert!(clone.starts_with("/runs/new?kind=sft&name="), "{clone}");
        let form_html = app.get_html(&clone).await;
        assert!(unescaped(&form_html).contains("value=\"warm & \"quoted\" (copy)\""), "{form_html}");
        for needle in [
            "id=\"f-base\" name=\"base\" value=\"base-tiny:1\"",
            &format!("id=\"f-stage.lr\" name=\"stage.lr\" value=\"{}\"", form_text(&json!(3e-5))),
            "id=\"f-stage.dropout\" name=\"stage.dropout\" value=\"0.3\"",
        ] {
            assert!(form_html.contains(needle), "{needle}: {form_html}");
        }
        // Launched as it is, the copy has the same config.
        let pairs: Vec<(String, String)> = reqwest::Url::parse(&app.url(&clone))
            .unwrap()
            .query_pairs()
            .into_owned()
            .filter(|(n, _)| n != "project")
            .chain([("csrf".to_owned(), csrf.clone()), ("project_id".to_owned(), project.to_string())])
            .collect();
        let copy = launched(&post_pairs(&app, "/runs", &pairs).await);
        let (a, b) =
            (runs::get(&app.db.pool, original).await.unwrap(), runs::get(&app.db.pool, copy).await.unwrap());
        assert_eq!(b.config, a.config);
        assert_eq!(b.name, "warm & \"quoted\" (copy)");
    });
}

/// The held-out evaluation's settings of an RL run: a selection that is not one of its
/// names, a wrong type, a NUL byte or an unknown setting is a JSON 422 naming the field,
/// and nothing is queued.
#[test]
fn an_rl_runs_bad_held_out_settings_are_refused_naming_the_field() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let project = new_project(&app, "heldout").await;
        register(&app, "sft", ModelKind::Sft, None, json!({}), json!({})).await;
        register(&app, "rm", ModelKind::Reward, None, json!({}), json!({})).await;
        let token = app.token_for("rita").await;
        for (stage, field) in [
            (json!({"select_by": "best"}), "stage.select_by"),
            (json!({"select_by": 5}), "stage.select_by"),
            (json!({"heldout_prompts": "8\u{0}"}), "stage.heldout_prompts"),
            (json!({"heldout_prompts": -1}), "stage.heldout_prompts"),
            (json!({"heldout": 3}), "stage.heldout"),
        ] {
            let config = json!({"model_name": "p", "policy": "sft:1", "reward": "rm:1", "stage": stage});
            let response = client()
                .post(app.url("/api/runs"))
                .bearer_auth(&token)
                .json(&json!({"project_id": project, "kind": "ppo", "config": config}))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY, "{stage}");
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["error"]["field"], field, "{stage}: {body}");
        }
        assert_eq!(run_count(&app).await, 0, "nothing was queued");
    });
}

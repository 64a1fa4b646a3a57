//! The whole loop through the platform's own doors: the web app's JSON API, a worker on
//! the same Postgres and artifact store, and the simulated annotator working through the
//! API as a person would. A base model is imported; a sample run makes ranking tasks;
//! the simulated annotator writes demonstrations and ranks the samples; SFT, RM and PPO
//! runs launched from the API succeed; and the registry holds base → SFT → RM and
//! SFT + RM → policy with the snapshots and configs that made them.

use std::time::{Duration, Instant};

use registry::artifacts::ArtifactStore;
use registry::versions::{self, ModelKind, ModelVersion};
use reqwest::StatusCode;
use serde_json::{json, Value};
use trainer::worker::{Worker, WorkerOptions};
use world;

use crate::db::with_db;
use crate::helpers::{plumb_ok, plumb_with_env};
use crate::web_app::{client, spawn_app, TestApp};

struct Api<'a> {
    app: &'a TestApp,
    token: String,
}

impl Api<'_> {
    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = client().request(method.clone(), self.app.url(path)).bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        let value = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap() };
        assert!(status.is_success(), "{method} {path}: {status} {value}");
        (status, value)
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.send(reqwest::Method::POST, path, Some(body)).await.1
    }

    async fn get(&self, path: &str) -> Value {
        self.send(reqwest::Method::GET, path, None).await.1
    }

    /// Launches a run and waits for it to succeed; returns the run.
    async fn run(&self, project: i64, kind: &str, config: Value) -> Value {
        let run =
            self.post("/api/runs", json!({ "project_id": project, "kind": kind, "config": config })).await;
        let id = run["id"].as_i64().unwrap();
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let run = self.get(&format!("/api/runs/{id}")).await;
            match run["status"].as_str().unwrap() {
                "succeeded" => return run,
                "failed" | "cancelled" => panic!("{kind} run {id}: {run}"),
                _ => {}
            }
            assert!(Instant::now() < deadline, "{kind} run {id} did not finish: {run}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// The simulated annotator, as a subprocess against the app; its summary line.
async fn simulate(app: &TestApp, token: &str) -> Value {
    let (url, token) = (app.address.clone(), token.to_owned());
    let out = tokio::task::spawn_blocking(move || {
        plumb_with_env(&["annotate", "--simulate", "--url", &url, "--token", &token, "--seed", "3"], &[])
    })
    .await
    .unwrap();
    assert!(out.status.success(), "plumb annotate: {}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    serde_json::from_str(stdout.lines().last().expect("a summary line")).unwrap()
}

/// The version's parents, by id.
fn parents(version: &ModelVersion) -> Vec<(i64, &str)> {
    let mut parents: Vec<(i64, &str)> =
        version.parents.iter().map(|p| (p.version_id, p.role.as_str())).collect();
    parents.sort_unstable();
    parents
}

#[test]
fn a_loop_from_samples_to_a_policy_runs_through_the_api_a_worker_and_the_simulated_annotator() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let pool = app.db.pool.clone();
        let rita = Api { app: &app, token: app.token_for("rita").await };
        let ann = app.token_for("ann").await;

        // A project whose annotator is ann, with demo-world prompts.
        let project = rita.post("/api/projects", json!({ "name": "loop" })).await["id"].as_i64().unwrap();
        rita.post(&format!("/api/projects/{project}/members"), json!({ "username": "ann" })).await;
        let lines: Vec<String> = world::tasks(16, world::Split::Train, 5)
            .iter()
            .map(|task| json!({ "prompt": world::Prompt::from(task).prompt, "split": "train" }).to_string())
            .collect();
        let report = rita
            .post(
                &format!("/api/projects/{project}/prompts"),
                json!({ "format": "jsonl", "data": lines.join("\n") }),
            )
            .await;
        assert_eq!(report["imported"].as_array().unwrap().len(), 16, "{report}");

        // A base model, imported from a checkpoint on disk into the app's artifact store.
        let dir = tempfile::tempdir().unwrap();
        let model_dir = dir.path().join("tiny");
        let model = model_dir.to_str().unwrap();
        plumb_ok(&["init", "--preset", "tiny", "--tokenizer", "bytes", "--out", model, "--seed", "1"], "");
        let url = app.db.url();
        let artifacts = app.artifacts.path().to_str().unwrap().to_owned();
        let import = tokio::task::spawn_blocking(move || {
            plumb_with_env(
                &["import", "--model-dir", &model_dir.to_string_lossy(), "--name", "base"],
                &[("DATABASE_URL", &url), ("PLUMB_ARTIFACTS", &artifacts)],
            )
        })
        .await
        .unwrap();
        assert!(import.status.success(), "plumb import: {}", String::from_utf8_lossy(&import.stderr));

        // One worker on the same database and store, for the whole loop.
        let mut options = WorkerOptions::new("loop-worker", dir.path().join("work"));
        options.device = trainer::DeviceChoice::Cpu;
        options.heartbeat = Duration::from_millis(200);
        options.poll = Duration::from_millis(100);
        let worker = Worker::new(pool.clone(), ArtifactStore::new(app.artifacts.path()).unwrap(), options);
        let (stop, shutdown) = tokio::sync::watch::channel(false);
        let working = tokio::spawn(async move { worker.run(shutdown).await });

        // Samples to rank, and demonstrations to write.
        let sample = json!({ "version": "base:1", "prompts": { "split": "train", "limit": 8 }, "k": 3,
                             "stage": { "max_new_tokens": 8, "seed": 2 } });
        rita.run(project, "sample", sample).await;
        let asked = rita
            .post(&format!("/api/projects/{project}/demonstration-tasks"), json!({ "split": "train" }))
            .await;
        assert_eq!(asked["task_ids"].as_array().unwrap().len(), 16);

        let summary = simulate(&app, &ann).await;
        assert_eq!(summary, json!({ "demonstrations": 16, "rankings": 8, "votes": 0, "skipped": 0 }));
        // Every ranking puts a sample the oracle scores highest first (noise 0).
        let rankings: Vec<(String, Vec<String>, Vec<i16>)> = sqlx::query_as(
            "SELECT p.text, array_agg(s.text ORDER BY ts.position), min(rk.ranks)
             FROM rankings rk JOIN tasks t ON t.id = rk.task_id JOIN prompts p ON p.id = t.prompt_id
             JOIN task_samples ts ON ts.task_id = t.id JOIN samples s ON s.id = ts.sample_id
             GROUP BY rk.id, p.text",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        assert_eq!(rankings.len(), 8);
        for (prompt, samples, ranks) in &rankings {
            let task = world::parse_task(prompt).unwrap();
            let scores: Vec<f64> =
                samples.iter().map(|s| world::score(&task, s, world::Finish::Eos)).collect();
            let best = scores.iter().cloned().fold(f64::MIN, f64::max);
            let first = ranks.iter().position(|&r| r == 0).unwrap();
            assert_eq!(scores[first], best, "{prompt}: {samples:?} ranked {ranks:?}");
        }

        // SFT, then an RM from the SFT model, then PPO of the SFT model against the RM.
        let sft = rita
            .run(project, "sft", json!({ "model_name": "sft", "base": "base:1",
                   "stage": { "steps": 6, "batch_size": 4, "eval_every": 0, "lr": 0.001, "val_fraction": 0.0 } }))
            .await;
        let rm = rita
            .run(
                project,
                "reward",
                json!({ "model_name": "rm", "base": "sft:1",
                   "stage": { "steps": 4, "batch_size": 4, "eval_every": 0, "val_fraction": 0.0 } }),
            )
            .await;
        let ppo = rita
            .run(
                project,
                "ppo",
                json!({ "model_name": "policy", "policy": "sft:1", "reward": "rm:1",
                   "stage": { "steps": 2, "batch_size": 8, "minibatch_size": 4, "ppo_epochs": 1,
                              "max_new_tokens": 8, "eval_every": 0, "checkpoint_every": 0 } }),
            )
            .await;
        // An eval run: SFT and the policy on the same prompts and seeds, scored by the RM,
        // against SFT as the KL reference, and by the oracle.
        let eval = rita
            .run(project, "eval", json!({ "versions": ["sft:1", "policy:1"], "reward": "rm:1", "reference": "sft:1",
                   "prompts": { "split": "train", "limit": 6 }, "stage": { "max_new_tokens": 8, "seed": 4 } }))
            .await;
        let _ = stop.send(true);
        working.await.unwrap();
        let eval_id = eval["id"].as_i64().unwrap();
        let summary = registry::evals::summary(&pool, eval_id).await.unwrap();
        assert_eq!(summary.len(), 2, "{summary:?}");
        for s in &summary {
            assert_eq!(s.prompts, 6, "{s:?}");
            assert!(s.reward.is_some() && s.oracle.is_some() && s.kl.is_some(), "{s:?}");
        }
        let samples = registry::evals::samples(&pool, eval_id).await.unwrap();
        let of = |version: i64| samples.iter().filter(move |s| s.version_id == version);
        let sft_id = versions::resolve(&pool, "sft:1").await.unwrap().id;
        // Against itself, SFT's log-ratio is zero, sample by sample.
        assert!(of(sft_id).all(|s| s.kl.unwrap().abs() < 1e-3), "{samples:?}");
        let prompts_of = |version: i64| of(version).map(|s| s.prompt_id).collect::<Vec<_>>();
        let policy_id = versions::resolve(&pool, "policy:1").await.unwrap().id;
        assert_eq!(prompts_of(sft_id), prompts_of(policy_id));
        let log = rita.get(&format!("/api/runs/{eval_id}/logs")).await.to_string();
        assert!(log.contains("sft:1: 6 prompts, reward"), "{log}");

        // The automatic comparison, against SFT (the run's first version) by default.
        let report = rita.get(&format!("/api/evals/{eval_id}")).await;
        assert_eq!(report["baseline"], sft_id);
        let policy_row =
            report["versions"].as_array().unwrap().iter().find(|v| v["label"] == "policy:1").unwrap();
        let w = &policy_row["win_rate_reward"];
        let (rate, low, high) =
            (w["rate"].as_f64().unwrap(), w["low"].as_f64().unwrap(), w["high"].as_f64().unwrap());
        assert!(low <= rate && rate <= high && w["prompts"] == 6, "{w}");
        assert_eq!(report["prompts"].as_array().unwrap().len(), 6);
        let against_policy = rita.get(&format!("/api/evals/{eval_id}?baseline={policy_id}")).await;
        assert_eq!(against_policy["baseline"], policy_id);
        app.log_in("rita").await;
        let html = app.get_html(&format!("/evals/{eval_id}")).await;
        for needle in ["sft:1", "policy:1", "Win rate by RM", "(baseline)", "eval-prompts", "Export as JSON"]
        {
            assert!(html.contains(needle), "{needle} not in the eval page");
        }
        let run_page = app.get_html(&format!("/runs/{eval_id}")).await;
        assert!(
            run_page.contains(&format!("href=\"/evals/{eval_id}\"")),
            "the run page links its comparison"
        );

        // The registry: base → SFT → RM, and SFT + RM → policy.
        let version = |reference: &'static str| {
            let pool = pool.clone();
            async move { versions::resolve(&pool, reference).await.unwrap() }
        };
        let (base, sft_v, rm_v, policy) = (
            version("base:1").await,
            version("sft:1").await,
            version("rm:1").await,
            version("policy:1").await,
        );
        assert_eq!(
            [base.kind, sft_v.kind, rm_v.kind, policy.kind],
            [ModelKind::Base, ModelKind::Sft, ModelKind::Reward, ModelKind::Policy]
        );
        assert_eq!(parents(&sft_v), [(base.id, "base")]);
        assert_eq!(parents(&rm_v), [(sft_v.id, "sft")]);
        assert_eq!(parents(&policy), [(sft_v.id, "sft"), (rm_v.id, "reward")]);
        // Each made by its run, from the snapshot frozen for it, with its config.
        // The reward model also read the project's demonstrations, which its zero is
        // centred on: a second snapshot in its lineage.
        for (version, run, kind, items, snapshots) in [
            (&sft_v, &sft, "demonstrations", 16, 1),
            (&rm_v, &rm, "rankings", 8, 2),
            (&policy, &ppo, "prompts", 16, 1),
        ] {
            assert_eq!(version.run_id, run["id"].as_i64(), "{}", version.model);
            assert_eq!(version.config["run_config"], run["config"], "{}", version.model);
            assert_eq!(version.snapshots.len(), snapshots, "{}", version.model);
            let mut found = None;
            for listed in &version.snapshots {
                let snapshot = labeling::snapshots::snapshot(&pool, listed.id).await.unwrap();
                assert_eq!(snapshot.content_sha256, listed.content_sha256);
                if format!("{:?}", snapshot.kind).to_lowercase() == kind {
                    found = Some(snapshot);
                }
            }
            let snapshot = found.unwrap_or_else(|| panic!("{}: no {kind} snapshot", version.model));
            assert_eq!(snapshot.item_count, items, "{}", version.model);
        }
        assert_eq!(sft_v.config["run_config"]["stage"]["steps"], 6);
        assert_eq!(policy.metrics["steps"], 2);
        // The lineage as the API gives it.
        let shown = rita.get("/api/models/policy/versions/1").await;
        assert!(shown.to_string().contains(&format!("\"version_id\":{}", rm_v.id)), "{shown}");
    });
}

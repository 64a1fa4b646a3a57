//! The worker on a real Postgres: runs from the queue to registered versions (SFT), to
//! ranking tasks (sample), to failures a researcher can read, and to a cancel seen
//! within a heartbeat.

use std::time::Duration;

use labeling::annotation::IdempotencyKey;
use labeling::domain::{
    DisplayName, Password, ProjectName, PromptSource, PromptText, ResponseText, Role, Split, Username,
};
use labeling::projects::NewProject;
use labeling::prompts::NewPrompt;
use labeling::submit::DemonstrationFor;
use registry::artifacts::ArtifactStore;
use registry::runs::{self, NewRun, RunKind, RunStatus};
use registry::versions::{self, ModelKind, NewVersion};
use serde_json::{json, Value};
use sqlx::PgPool;
use trainer::worker::{Outcome, Worker, WorkerOptions};
use trainer::DeviceChoice;

use crate::db::{with_db, TestDb};
use crate::helpers::plumb_ok;

pub struct Setup {
    pub dir: tempfile::TempDir,
    pub store: ArtifactStore,
    pub project: i64,
    pub work: std::path::PathBuf,
}

/// A tiny base model registered as `base:1`, and a project with `prompts` prompts each
/// with a demonstration (the demo world's "reverse" skill).
pub async fn setup(db: &TestDb, prompts: usize) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let store = ArtifactStore::new(dir.path().join("artifacts")).unwrap();
    let base = tiny_version(&dir.path().join("tiny"), 1, &store, "base", ModelKind::Base);
    versions::register(&db.pool, &base).await.unwrap();
    let pool = &db.pool;
    let new = NewProject {
        name: ProjectName::parse("worker").unwrap(),
        guidelines: Default::default(),
        overlap: Default::default(),
        samples_per_task: Default::default(),
        created_by: None,
    };
    let project = labeling::projects::create_project(pool, &new).await.unwrap().id;
    let writer = labeling::users::create_user(
        pool,
        &Username::parse("writer").unwrap(),
        &DisplayName::parse("writer").unwrap(),
        Role::Researcher,
        &Password::parse("a long enough password").unwrap(),
    )
    .await
    .unwrap()
    .id;
    let words = ["cat", "dog", "bird", "fish", "lamp", "tree", "moon", "star"];
    for word in words.iter().cycle().take(prompts) {
        let prompt = NewPrompt {
            project_id: project,
            text: PromptText::parse(format!("Reverse the word {word}.")).unwrap(),
            split: Split::Train,
            source: PromptSource::parse("test").unwrap(),
            created_by: None,
        };
        let Ok(prompt) = labeling::prompts::add_prompt(pool, &prompt).await else { continue };
        let reversed: String = word.chars().rev().collect();
        labeling::submit::submit_demonstration(
            pool,
            writer,
            DemonstrationFor::Prompt(prompt.id),
            &ResponseText::parse(reversed).unwrap(),
            None,
            IdempotencyKey::new(),
        )
        .await
        .unwrap();
    }
    let work = dir.path().join("work");
    Setup { dir, store, project, work }
}

pub fn worker(pool: &PgPool, setup: &Setup, name: &str) -> Worker {
    let mut options = WorkerOptions::new(name, &setup.work);
    options.device = DeviceChoice::Cpu;
    options.heartbeat = Duration::from_millis(100);
    options.lease = Duration::from_secs(30);
    Worker::new(pool.clone(), setup.store.clone(), options)
}

pub async fn enqueue(pool: &PgPool, project: i64, kind: RunKind, config: Value) -> i64 {
    runs::enqueue(pool, &NewRun { project_id: Some(project), kind, config, created_by: None }).await.unwrap()
}

pub fn no_shutdown() -> tokio::sync::watch::Receiver<bool> {
    let (sender, receiver) = tokio::sync::watch::channel(false);
    std::mem::forget(sender);
    receiver
}

const SFT_STAGE: &str = r#"{"steps": 4, "batch_size": 2, "eval_every": 2, "checkpoint_every": 2, "lr": 0.001, "val_fraction": 0.25}"#;

#[test]
fn an_sft_run_trains_reports_its_metrics_and_registers_its_version_with_lineage() {
    with_db(|db| async move {
        let setup = setup(&db, 8).await;
        let stage: Value = serde_json::from_str(SFT_STAGE).unwrap();
        let run_id = enqueue(
            &db.pool,
            setup.project,
            RunKind::Sft,
            json!({ "model_name": "sft", "base": "base:1", "stage": stage }),
        )
        .await;
        let worker = worker(&db.pool, &setup, "w1");
        let (claimed, outcome) = worker.run_next(no_shutdown()).await.unwrap().expect("a run to claim");
        assert_eq!(claimed, run_id);
        let Outcome::Succeeded { version_id: Some(version_id) } = outcome else { panic!("{outcome:?}") };

        let run = runs::get(&db.pool, run_id).await.unwrap();
        assert_eq!((run.status, run.step, run.total_steps), (RunStatus::Succeeded, 4, Some(4)));
        let metrics = runs::metrics(&db.pool, run_id).await.unwrap();
        let loss = metrics.iter().find(|m| m.name == "loss/sft").expect("loss/sft reported");
        assert_eq!(loss.steps, [0, 1, 2, 3]);
        assert!(metrics.iter().any(|m| m.name == "val/loss"));

        let version = versions::get(&db.pool, version_id).await.unwrap();
        let base = versions::resolve(&db.pool, "base:1").await.unwrap();
        assert_eq!((version.model.as_str(), version.version, version.kind), ("sft", 1, ModelKind::Sft));
        assert_eq!(version.run_id, Some(run_id));
        assert_eq!(
            version.parents.iter().map(|p| (p.version_id, p.role.as_str())).collect::<Vec<_>>(),
            [(base.id, "base")]
        );
        assert_eq!(version.snapshots.len(), 1, "the demonstrations snapshot frozen for the run");
        let snapshot = labeling::snapshots::snapshot(&db.pool, version.snapshots[0].id).await.unwrap();
        assert_eq!(
            (snapshot.item_count, snapshot.content_sha256.as_str()),
            (8, version.snapshots[0].content_sha256.as_str())
        );
        assert_eq!(version.config["run_config"]["stage"]["steps"], 4);
        // Dropout was left to the rule of the model's width: the version records the value
        // used (none for a 128-wide model).
        assert!(version.config["run_config"]["stage"].get("dropout").is_none());
        assert_eq!(version.config["resolved"]["stage"]["dropout"], 0.0, "{}", version.config);
        assert_eq!(version.metrics["steps"], 4);
        // The artifact is the model alone, and loads.
        let stored = setup.store.get(&version.artifact_sha256).unwrap();
        assert!(!stored.join("checkpoints").exists() && !stored.join("metrics.jsonl").exists());
        trainer::LanguageModel::load(&stored, trainer::tch::Device::Cpu).unwrap();
        // Nothing is left to do, and the run's work directory is gone.
        assert!(worker.run_next(no_shutdown()).await.unwrap().is_none());
        assert!(!setup.work.join(format!("run-{run_id}")).exists());
    });
}

#[test]
fn bad_configs_and_missing_versions_fail_the_run_with_a_message_naming_them() {
    with_db(|db| async move {
        let setup = setup(&db, 2).await;
        let worker = worker(&db.pool, &setup, "w1");
        let cases = [
            (json!({ "model_name": "sft", "base": "base:1", "stage": { "lr_max": 1 } }), "lr_max"),
            (json!({ "model_name": "sft", "base": "base:7" }), "base:7"),
            (json!({ "model_name": "sft", "base": "base:1", "stage": { "batch_size": 0 } }), "batch_size"),
        ];
        for (config, needle) in cases {
            let run_id = enqueue(&db.pool, setup.project, RunKind::Sft, config.clone()).await;
            let (_, outcome) = worker.run_next(no_shutdown()).await.unwrap().unwrap();
            let Outcome::Failed(message) = outcome else { panic!("{config}: {outcome:?}") };
            assert!(message.contains(needle), "{config}: {message}");
            let run = runs::get(&db.pool, run_id).await.unwrap();
            assert_eq!(run.status, RunStatus::Failed);
            assert!(run.error.unwrap_or_default().contains(needle));
        }
        assert!(versions::list_versions(&db.pool, "sft").await.unwrap_or_default().is_empty());
    });
}

#[test]
fn a_sample_run_writes_k_samples_per_prompt_as_ranking_tasks_once() {
    with_db(|db| async move {
        let setup = setup(&db, 3).await;
        let config = json!({ "version": "base:1", "prompts": { "split": "train" }, "k": 3,
                             "stage": { "max_new_tokens": 6, "seed": 5 } });
        let run_id = enqueue(&db.pool, setup.project, RunKind::Sample, config).await;
        let worker = worker(&db.pool, &setup, "w1");
        let (_, outcome) = worker.run_next(no_shutdown()).await.unwrap().unwrap();
        assert_eq!(outcome, Outcome::Succeeded { version_id: None });
        let (tasks, samples): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM tasks WHERE kind = 'ranking' AND k = 3),
                    (SELECT count(*) FROM samples s JOIN sample_batches b ON b.id = s.batch_id WHERE b.run_id = $1)",
        )
        .bind(run_id)
        .fetch_one(&db.pool)
        .await
        .unwrap();
        assert_eq!((tasks, samples), (3, 9));
        // Every prompt has its task now: a second sample run finds nothing to do.
        let again =
            enqueue(&db.pool, setup.project, RunKind::Sample, json!({ "version": "base:1", "prompts": {} }))
                .await;
        let (_, outcome) = worker.run_next(no_shutdown()).await.unwrap().unwrap();
        assert!(matches!(outcome, Outcome::Failed(ref m) if m.contains("no prompts")), "{outcome:?}");
        assert_eq!(runs::get(&db.pool, again).await.unwrap().status, RunStatus::Failed);
    });
}

/// A fresh tiny model (`plumb init`, seed `seed`) written to `dir` and stored, as a
/// version of `model` to register.
fn tiny_version(
    dir: &std::path::Path,
    seed: u64,
    store: &ArtifactStore,
    model: &str,
    kind: ModelKind,
) -> NewVersion {
    let (path, seed) = (dir.to_str().unwrap(), seed.to_string());
    plumb_ok(&["init", "--preset", "tiny", "--tokenizer", "bytes", "--out", path, "--seed", &seed], "");
    NewVersion {
        model: model.into(),
        kind,
        run_id: None,
        parents: Vec::new(),
        snapshots: Vec::new(),
        config: json!({}),
        metrics: json!({}),
        artifact: store.put_dir(dir).unwrap(),
        created_by: None,
    }
}

/// Per prompt, the texts that `version` wrote in sample run `run`, sorted.
async fn texts_of(pool: &PgPool, run: i64, version: i64) -> Vec<(i64, Vec<String>)> {
    sqlx::query_as(
        "SELECT s.prompt_id, array_agg(s.text ORDER BY s.text) FROM samples s
         JOIN sample_batches b ON b.id = s.batch_id
         WHERE b.run_id = $1 AND s.model_version_id = $2 GROUP BY s.prompt_id ORDER BY s.prompt_id",
    )
    .bind(run)
    .bind(version)
    .fetch_all(pool)
    .await
    .unwrap()
}

/// A second tiny model, `other:1`, differently initialised: a version to mix in; and its
/// files registered as `rm:1`, a reward model, which cannot be.
async fn register_other(db: &TestDb, setup: &Setup) -> i64 {
    let other = tiny_version(&setup.dir.path().join("other"), 2, &setup.store, "other", ModelKind::Base);
    let rm = NewVersion { model: "rm".into(), kind: ModelKind::Reward, ..other.clone() };
    versions::register(&db.pool, &rm).await.unwrap();
    versions::register(&db.pool, &other).await.unwrap().id
}

#[test]
fn a_mixed_sample_run_puts_each_versions_samples_in_every_ranking_task() {
    with_db(|db| async move {
        let setup = setup(&db, 6).await;
        let other = register_other(&db, &setup).await;
        let base = versions::resolve(&db.pool, "base:1").await.unwrap().id;
        let worker = worker(&db.pool, &setup, "w1");
        let config = json!({ "version": "base:1", "mix": ["other:1"], "k": 3,
                             "prompts": { "untasked_only": false },
                             "stage": { "max_new_tokens": 6, "seed": 5 } });
        let mixed = enqueue(&db.pool, setup.project, RunKind::Sample, config).await;
        let (_, outcome) = worker.run_next(no_shutdown()).await.unwrap().unwrap();
        assert_eq!(outcome, Outcome::Succeeded { version_id: None });
        // A batch per version, each holding its own samples.
        let batches: Vec<(Option<i64>, i64)> = sqlx::query_as(
            "SELECT b.model_version_id, count(*) FROM sample_batches b JOIN samples s ON s.batch_id = b.id
             WHERE b.run_id = $1 AND s.model_version_id = b.model_version_id
             GROUP BY b.model_version_id ORDER BY b.model_version_id",
        )
        .bind(mixed)
        .fetch_all(&db.pool)
        .await
        .unwrap();
        assert_eq!(batches, [(Some(base), 12), (Some(other), 6)]);
        // Every task shows two of the version's samples and one of the mixed-in version's,
        // at a position that is not always the same.
        let tasks: Vec<(i64, Vec<i64>)> = sqlx::query_as(
            "SELECT t.prompt_id, array_agg(s.model_version_id ORDER BY ts.position)
             FROM tasks t JOIN task_samples ts ON ts.task_id = t.id JOIN samples s ON s.id = ts.sample_id
             WHERE t.kind = 'ranking' GROUP BY t.id, t.prompt_id ORDER BY t.id",
        )
        .fetch_all(&db.pool)
        .await
        .unwrap();
        assert_eq!(tasks.len(), 6);
        for (_, writers) in &tasks {
            assert_eq!(writers.iter().filter(|&&w| w == other).count(), 1, "{writers:?}");
            assert_eq!(writers.iter().filter(|&&w| w == base).count(), 2, "{writers:?}");
        }
        let positions: std::collections::HashSet<usize> =
            tasks.iter().map(|(_, w)| w.iter().position(|&v| v == other).unwrap()).collect();
        assert!(positions.len() > 1, "the mixed-in sample always at {positions:?}");

        // The version's samples are the ones a run of its own with K = 2 draws: a sample
        // depends on its version, prompt and seed, not on what else was drawn beside it.
        let alone = json!({ "version": "base:1", "k": 2, "prompts": { "untasked_only": false },
                            "stage": { "max_new_tokens": 6, "seed": 5 } });
        let alone = enqueue(&db.pool, setup.project, RunKind::Sample, alone).await;
        let (_, outcome) = worker.run_next(no_shutdown()).await.unwrap().unwrap();
        assert_eq!(outcome, Outcome::Succeeded { version_id: None });
        assert_eq!(texts_of(&db.pool, mixed, base).await, texts_of(&db.pool, alone, base).await);

        // Mixed-in versions that would leave the version none of the K fail the run, naming
        // the setting; so does a version that is not there.
        let cases = [
            (
                json!({ "version": "base:1", "mix": ["other:1"], "mix_k": 4, "prompts": { "untasked_only": false } }),
                "mix_k",
            ),
            (
                json!({ "version": "base:1", "mix": ["other:9"], "prompts": { "untasked_only": false } }),
                "other:9",
            ),
            (
                json!({ "version": "base:1", "mix": ["rm:1"], "prompts": { "untasked_only": false } }),
                "reward model",
            ),
        ];
        for (config, needle) in cases {
            let run_id = enqueue(&db.pool, setup.project, RunKind::Sample, config.clone()).await;
            let (_, outcome) = worker.run_next(no_shutdown()).await.unwrap().unwrap();
            let Outcome::Failed(message) = outcome else { panic!("{config}: {outcome:?}") };
            assert!(message.contains(needle), "{config}: {message}");
            assert_eq!(runs::get(&db.pool, run_id).await.unwrap().status, RunStatus::Failed);
        }
    });
}

#[test]
fn a_cancel_is_seen_within_a_heartbeat_and_registers_nothing() {
    with_db(|db| async move {
        let setup = setup(&db, 8).await;
        let config = json!({ "model_name": "sft", "base": "base:1", "stage": { "steps": 100000, "batch_size": 2, "eval_every": 0 } });
        let run_id = enqueue(&db.pool, setup.project, RunKind::Sft, config).await;
        let pool = db.pool.clone();
        let worker = worker(&db.pool, &setup, "w1");
        let running = tokio::spawn(async move { worker.run_next(no_shutdown()).await });
        // Wait (polling, with a deadline) until the run reports training steps.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while runs::get(&pool, run_id).await.unwrap().step < 2 {
            assert!(std::time::Instant::now() < deadline, "the run never reported a step");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        runs::cancel(&pool, run_id).await.unwrap();
        let (_, outcome) = running.await.unwrap().unwrap().unwrap();
        assert_eq!(outcome, Outcome::Cancelled);
        let run = runs::get(&pool, run_id).await.unwrap();
        assert_eq!(run.status, RunStatus::Cancelled);
        assert!(run.step < 100000);
        assert!(versions::list_versions(&pool, "sft").await.unwrap_or_default().is_empty());
    });
}

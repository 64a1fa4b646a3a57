//! Workers under faults, on a real Postgres: a worker killed mid-run (its run resumed by
//! another from the checkpoint it stored), one shut down with SIGTERM (it checkpoints
//! and releases the run), two draining one queue, Postgres restarting under a running
//! worker, a diverging run and a tampered checkpoint.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use registry::db::{Cluster, Durability};
use registry::runs::{self, RunKind, RunStatus};
use registry::versions;
use serde_json::json;
use sqlx::PgPool;
use trainer::worker::Outcome;

use crate::db::{with_db, TestDb};
use crate::worker::{enqueue, no_shutdown, setup, worker, Setup};

/// A `plumb worker` process on the test's database and artifact store, with a 2 s lease
/// and a heartbeat every second; its output goes to `<home>/worker.log`.
fn spawn_worker(db: &TestDb, setup: &Setup, name: &str, extra: &[&str]) -> Child {
    let home = setup.dir.path().join(name);
    std::fs::create_dir_all(&home).unwrap();
    let log = std::fs::File::create(home.join("worker.log")).unwrap();
    Command::new(env!("CARGO_BIN_EXE_plumb"))
        .args(["worker", "--device", "cpu", "--name", name, "--lease-s", "2", "--heartbeat-s", "1", "--home"])
        .arg(&home)
        .args(extra)
        .env("DATABASE_URL", db.url())
        .env("PLUMB_ARTIFACTS", setup.store.root())
        .env_remove("RUST_BACKTRACE")
        .stdout(Stdio::null())
        .stderr(log.try_clone().unwrap())
        .spawn()
        .expect("plumb worker starts")
}

fn worker_log(setup: &Setup, name: &str) -> String {
    std::fs::read_to_string(setup.dir.path().join(name).join("worker.log")).unwrap_or_default()
}

/// (step, checkpoint step, checkpoint digest, attempts, status) of a run; None while
/// Postgres is away.
pub(crate) async fn progress(
    pool: &PgPool,
    run_id: i64,
) -> Option<(i64, Option<i64>, Option<String>, i32, RunStatus)> {
    sqlx::query_as(
        "SELECT step, checkpoint_step, checkpoint_sha256, attempts, status FROM runs WHERE id = $1",
    )
    .bind(run_id)
    .fetch_one(pool)
    .await
    .ok()
}

/// Polls until `done` holds of the run's progress, failing after `limit`.
pub(crate) async fn wait_for(
    pool: &PgPool,
    run_id: i64,
    limit: Duration,
    what: &str,
    done: impl Fn(&(i64, Option<i64>, Option<String>, i32, RunStatus)) -> bool,
) -> (i64, Option<i64>, Option<String>, i32, RunStatus) {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(p) = progress(pool, run_id).await.filter(|p| done(p)) {
            return p;
        }
        assert!(Instant::now() < deadline, "waited {limit:?} for {what}: {:?}", progress(pool, run_id).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(crate) async fn log_lines(pool: &PgPool, run_id: i64) -> Vec<String> {
    runs::logs(pool, run_id, None, 1000).await.unwrap().into_iter().map(|l| l.line).collect()
}

/// Claims with an in-process worker until the run is claimable (its lease expired).
async fn resume_in_process(pool: &PgPool, setup: &Setup, work: &Path, name: &str, run_id: i64) -> Outcome {
    let mut options = trainer::worker::WorkerOptions::new(name, work);
    options.device = trainer::DeviceChoice::Cpu;
    options.heartbeat = Duration::from_millis(200);
    let worker = trainer::worker::Worker::new(pool.clone(), setup.store.clone(), options);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some((claimed, outcome)) = worker.run_next(no_shutdown()).await.unwrap() {
            assert_eq!(claimed, run_id);
            return outcome;
        }
        assert!(Instant::now() < deadline, "the run never became claimable again");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// An SFT run long enough (several seconds on 2 cores) to be interrupted.
pub(crate) fn long_sft(steps: i64, checkpoint_every: u64) -> serde_json::Value {
    json!({ "model_name": "sft", "base": "base:1",
            "stage": { "steps": steps, "batch_size": 2, "eval_every": 0, "checkpoint_every": checkpoint_every,
                       "lr": 0.001, "val_fraction": 0.25 } })
}

/// The run ended with one version and every step's loss reported once.
async fn assert_one_version_and_every_step(pool: &PgPool, run_id: i64, steps: i64, outcome: &Outcome) {
    let Outcome::Succeeded { version_id: Some(version_id) } = outcome else { panic!("{outcome:?}") };
    let all = versions::list_versions(pool, "sft").await.unwrap();
    assert_eq!(all.iter().map(|v| (v.id, v.run_id)).collect::<Vec<_>>(), [(*version_id, Some(run_id))]);
    let metrics = runs::metrics(pool, run_id).await.unwrap();
    let loss = metrics.iter().find(|m| m.name == "loss/sft").expect("loss/sft reported");
    assert_eq!(loss.steps, (0..steps).collect::<Vec<_>>());
    let run = runs::get(pool, run_id).await.unwrap();
    assert_eq!((run.status, run.step, run.total_steps), (RunStatus::Succeeded, steps, Some(steps)));
}

/// The step of the "restored the checkpoint at step N" line.
pub(crate) fn restored_step(lines: &[String]) -> i64 {
    let line = lines
        .iter()
        .find(|l| l.starts_with("restored the checkpoint at step"))
        .unwrap_or_else(|| panic!("no checkpoint was restored: {lines:#?}"));
    line.split_whitespace().nth(5).unwrap().parse().unwrap()
}

#[test]
fn a_worker_killed_mid_run_is_resumed_by_another_from_its_stored_checkpoint_with_one_version() {
    with_db(|db| async move {
        let setup = setup(&db, 8).await;
        // Long enough that the first checkpoints are stored (one heartbeat a second) well
        // before the end, however fast the machine.
        const STEPS: i64 = 1000;
        let run_id = enqueue(&db.pool, setup.project, RunKind::Sft, long_sft(STEPS, 5)).await;
        let mut killed = spawn_worker(&db, &setup, "killed", &[]);
        let (step, stored, sha256, ..) =
            wait_for(&db.pool, run_id, Duration::from_secs(90), "a stored checkpoint", |p| {
                p.1.is_some_and(|s| s >= 10)
            })
            .await;
        killed.kill().unwrap(); // SIGKILL: no chance to release or checkpoint.
        killed.wait().unwrap();
        let stored = stored.unwrap();
        assert!(step < STEPS, "the run finished before the kill; make it longer");
        assert!(setup.store.verify(&sha256.unwrap()).is_ok(), "the checkpoint is in the store");

        // Another machine: a work directory of its own, so the checkpoint can only come
        // from the artifact store.
        let outcome =
            resume_in_process(&db.pool, &setup, &setup.dir.path().join("elsewhere"), "rescuer", run_id).await;
        assert_one_version_and_every_step(&db.pool, run_id, STEPS, &outcome).await;
        let lines = log_lines(&db.pool, run_id).await;
        let restored = restored_step(&lines);
        assert!(restored >= stored && restored % 5 == 0, "restored step {restored}, stored {stored}");
        assert!(
            lines.iter().any(|l| l.contains("rescuer claimed the run (attempt 2, resuming")),
            "{lines:#?}"
        );
        // The run is finished: its last checkpoint is deleted from the store.
        let (_, _, last, attempts, _) = progress(&db.pool, run_id).await.unwrap();
        assert_eq!(attempts, 2);
        assert!(setup.store.verify(&last.unwrap()).is_err(), "a finished run's checkpoint is removed");
    });
}

#[test]
fn sigterm_checkpoints_the_step_in_progress_and_releases_the_run_which_resumes_there() {
    with_db(|db| async move {
        let setup = setup(&db, 8).await;
        // No periodic checkpoints: the only one is the one SIGTERM makes.
        let run_id = enqueue(&db.pool, setup.project, RunKind::Sft, long_sft(200, 0)).await;
        let mut stopped = spawn_worker(&db, &setup, "stopped", &[]);
        wait_for(&db.pool, run_id, Duration::from_secs(90), "training steps", |p| p.0 >= 3).await;
        let term = Command::new("kill").args(["-TERM", &stopped.id().to_string()]).status().unwrap();
        assert!(term.success());
        let exit = stopped.wait().unwrap();
        assert!(exit.success(), "{exit:?}: {}", worker_log(&setup, "stopped"));

        let (step, checkpoint, _, _, status) = progress(&db.pool, run_id).await.unwrap();
        assert_eq!(status, RunStatus::Queued, "released: {}", worker_log(&setup, "stopped"));
        assert!(step < 200, "the run finished before SIGTERM; make it longer");
        assert_eq!(checkpoint, Some(step), "checkpointed at the step it stopped at");
        let lines = log_lines(&db.pool, run_id).await;
        assert!(lines.iter().any(|l| l == "stopped is shutting down: released the run"), "{lines:#?}");

        let outcome =
            resume_in_process(&db.pool, &setup, &setup.dir.path().join("elsewhere"), "next", run_id).await;
        assert_one_version_and_every_step(&db.pool, run_id, 200, &outcome).await;
        assert_eq!(restored_step(&log_lines(&db.pool, run_id).await), step);
    });
}

#[test]
fn two_workers_drain_one_queue_concurrently_and_no_run_is_done_twice() {
    with_db(|db| async move {
        let setup = setup(&db, 4).await;
        let mut ids = Vec::new();
        for i in 0..6 {
            let config = json!({ "model_name": format!("sft-{i}"), "base": "base:1",
                                 "stage": { "steps": 3, "batch_size": 2, "eval_every": 0, "checkpoint_every": 1 } });
            ids.push(enqueue(&db.pool, setup.project, RunKind::Sft, config).await);
        }
        let mut workers =
            [spawn_worker(&db, &setup, "a", &["--drain"]), spawn_worker(&db, &setup, "b", &["--drain"])];
        for (worker, name) in workers.iter_mut().zip(["a", "b"]) {
            let exit = worker.wait().unwrap();
            assert!(exit.success(), "worker {name}: {exit:?}: {}", worker_log(&setup, name));
        }
        let mut by_worker = std::collections::BTreeMap::<String, usize>::new();
        for (i, run_id) in ids.iter().enumerate() {
            let run = runs::get(&db.pool, *run_id).await.unwrap();
            assert_eq!(run.status, RunStatus::Succeeded, "run {run_id}: {:?}", run.error);
            let (_, _, _, attempts, _) = progress(&db.pool, *run_id).await.unwrap();
            assert_eq!(attempts, 1, "run {run_id} was claimed {attempts} times");
            let claims: Vec<String> = log_lines(&db.pool, *run_id)
                .await
                .into_iter()
                .filter(|l| l.contains("claimed the run"))
                .collect();
            assert_eq!(claims.len(), 1, "run {run_id}: {claims:?}");
            *by_worker.entry(run.worker.clone().unwrap_or_default()).or_default() += 1;
            let versions = versions::list_versions(&db.pool, &format!("sft-{i}")).await.unwrap();
            assert_eq!(versions.len(), 1, "run {run_id} registered {} versions", versions.len());
        }
        eprintln!("runs per worker: {by_worker:?}");
        assert_eq!(by_worker.values().sum::<usize>(), 6);
    });
}

/// `test` on a Postgres cluster of its own, which it may stop and start without
/// disturbing any other test; the cluster is stopped and removed after, whether the test
/// passes or panics.
fn on_a_cluster_of_its_own<F: std::future::Future<Output = ()>>(test: impl FnOnce(Cluster, TestDb) -> F) {
    /// Stops the cluster and removes its directory when dropped, on a panic too.
    struct Stopped(Cluster, std::path::PathBuf);
    impl Drop for Stopped {
        fn drop(&mut self) {
            let _ = self.0.stop();
            let _ = std::fs::remove_dir_all(&self.1);
        }
    }
    let dir = std::env::temp_dir().join(format!("plumb-pg-restart-{}", uuid::Uuid::new_v4().simple()));
    let cluster = Stopped(Cluster::new(&dir, Durability::Throwaway), dir);
    cluster.0.start().expect("starting a private cluster");
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build().unwrap();
    runtime.block_on(async {
        let db = TestDb::on(cluster.0.connect_options("postgres")).await;
        test(cluster.0.clone(), db).await;
    });
}

/// The outcome of the run a worker took in `running`, which must end within 3 minutes
/// without the worker itself failing.
async fn carried_on(
    running: tokio::task::JoinHandle<Result<Option<(i64, Outcome)>, trainer::worker::WorkerError>>,
) -> Outcome {
    let (_, outcome) = tokio::time::timeout(Duration::from_secs(180), running)
        .await
        .expect("the run ends")
        .unwrap()
        .expect("the worker carries on")
        .unwrap();
    outcome
}

#[test]
fn a_worker_carries_on_when_postgres_restarts_under_its_run() {
    on_a_cluster_of_its_own(|cluster, db| async move {
        let setup = setup(&db, 8).await;
        let run_id = enqueue(&db.pool, setup.project, RunKind::Sft, long_sft(300, 50)).await;
        let worker = worker(&db.pool, &setup, "steady");
        let running = tokio::spawn(async move { worker.run_next(no_shutdown()).await });
        wait_for(&db.pool, run_id, Duration::from_secs(90), "training steps", |p| p.0 >= 3).await;

        tokio::task::spawn_blocking(move || {
            cluster.stop().expect("stopping Postgres");
            std::thread::sleep(Duration::from_secs(2));
            cluster.start().expect("starting Postgres again");
        })
        .await
        .unwrap();

        let outcome = carried_on(running).await;
        assert_one_version_and_every_step(&db.pool, run_id, 300, &outcome).await;
        let (_, _, _, attempts, _) = progress(&db.pool, run_id).await.unwrap();
        assert_eq!(attempts, 1, "the same worker kept the run");
        drop(db);
    });
}

/// Training ends while Postgres is away: the steps' metrics written after it went away
/// are reported once it is back, before the version is registered.
#[test]
fn a_run_that_finishes_while_postgres_is_away_reports_every_steps_metrics() {
    on_a_cluster_of_its_own(|cluster, db| async move {
        let setup = setup(&db, 8).await;
        // Seconds of training on 2 cores: Postgres goes away long before the last step.
        let steps = 300;
        let run_id = enqueue(&db.pool, setup.project, RunKind::Sft, long_sft(steps, 0)).await;
        let worker = worker(&db.pool, &setup, "steady");
        let running = tokio::spawn(async move { worker.run_next(no_shutdown()).await });
        wait_for(&db.pool, run_id, Duration::from_secs(90), "training steps", |p| p.0 >= 3).await;

        let metrics = setup.work.join(format!("run-{run_id}")).join("out").join("metrics.jsonl");
        let last_step = format!("\"step\":{}", steps - 1);
        tokio::task::spawn_blocking(move || {
            cluster.stop().expect("stopping Postgres");
            let deadline = Instant::now() + Duration::from_secs(120);
            while !std::fs::read_to_string(&metrics).unwrap_or_default().contains(&last_step) {
                assert!(Instant::now() < deadline, "the stage never wrote step {}", steps - 1);
                std::thread::sleep(Duration::from_millis(50));
            }
            // The stage has ended, or is about to: the worker is left without Postgres a
            // little longer, as it reports what is left.
            std::thread::sleep(Duration::from_secs(1));
            cluster.start().expect("starting Postgres again");
        })
        .await
        .unwrap();

        let outcome = carried_on(running).await;
        assert_one_version_and_every_step(&db.pool, run_id, steps, &outcome).await;
        drop(db);
    });
}

#[test]
fn a_diverging_run_and_a_tampered_checkpoint_fail_with_messages_that_say_what_to_do() {
    with_db(|db| async move {
        let setup = setup(&db, 8).await;
        let worker = worker(&db.pool, &setup, "w");
        let diverging = json!({ "model_name": "sft", "base": "base:1",
                                "stage": { "steps": 20, "batch_size": 2, "eval_every": 0, "lr": 1e30 } });
        let run_id = enqueue(&db.pool, setup.project, RunKind::Sft, diverging).await;
        let (_, outcome) = worker.run_next(no_shutdown()).await.unwrap().unwrap();
        let Outcome::Failed(message) = outcome else { panic!("{outcome:?}") };
        assert!(message.contains("the run diverged") && message.contains("lower stage.lr"), "{message}");
        assert_eq!(runs::get(&db.pool, run_id).await.unwrap().error.as_deref(), Some(message.as_str()));

        // Someone changed a byte of the base model's weights in the store.
        let base = versions::resolve(&db.pool, "base:1").await.unwrap();
        let weights = setup.store.root().join("sha256").join(&base.artifact_sha256).join("model.safetensors");
        let mut permissions = std::fs::metadata(&weights).unwrap().permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        permissions.set_readonly(false);
        std::fs::set_permissions(&weights, permissions).unwrap();
        let mut bytes = std::fs::read(&weights).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&weights, bytes).unwrap();
        let run_id = enqueue(&db.pool, setup.project, RunKind::Sft, long_sft(20, 0)).await;
        let (_, outcome) = worker.run_next(no_shutdown()).await.unwrap().unwrap();
        let Outcome::Failed(message) = outcome else { panic!("{outcome:?}") };
        assert!(
            message.contains("base \"base:1\" (base:1)")
                && message.contains("model.safetensors")
                && message.contains("corrupt"),
            "{message}"
        );
        assert_eq!(runs::get(&db.pool, run_id).await.unwrap().status, RunStatus::Failed);
        assert!(versions::list_versions(&db.pool, "sft").await.unwrap_or_default().is_empty());
    });
}

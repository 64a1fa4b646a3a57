//! Gang-scheduled runs through `plumb worker` processes: an SFT run that asks for two
//! workers is trained by two, data-parallel over c10d, and registers one version; a rank
//! killed with SIGKILL mid-run stops the gang, and the run resumes from its stored
//! checkpoint on the next two free workers, still registering exactly one version.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use registry::gangs;
use registry::runs::{RunKind, RunStatus};
use registry::versions;
use sqlx::PgPool;

use crate::db::{with_db, TestDb};
use crate::worker::{enqueue, setup, Setup};
use crate::worker_faults::{log_lines, long_sft, progress, restored_step, wait_for};

/// A `plumb worker` process with a 5 s lease and a heartbeat a second (a rank's lease
/// must outlast a loaded machine's pauses); its output goes to `<home>/worker.log`.
fn spawn_worker(db: &TestDb, setup: &Setup, name: &str) -> Child {
    let home = setup.dir.path().join(name);
    std::fs::create_dir_all(&home).unwrap();
    let log = std::fs::File::create(home.join("worker.log")).unwrap();
    Command::new(env!("CARGO_BIN_EXE_plumb"))
        .args(["worker", "--device", "cpu", "--name", name, "--lease-s", "5", "--heartbeat-s", "1", "--home"])
        .arg(&home)
        .env("DATABASE_URL", db.url())
        .env("PLUMB_ARTIFACTS", setup.store.root())
        .env("OMP_NUM_THREADS", "1")
        .env_remove("RUST_BACKTRACE")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("plumb worker starts")
}

fn stop(mut worker: Child) {
    let _ = worker.kill();
    let _ = worker.wait();
}

fn gang_sft(steps: i64, checkpoint_every: u64) -> serde_json::Value {
    let mut config = long_sft(steps, checkpoint_every);
    config["world_size"] = 2.into();
    config
}

/// The run's one version (of model `sft`), or a panic naming what there is.
async fn one_version(pool: &PgPool, run_id: i64) -> i64 {
    let all = versions::list_versions(pool, "sft").await.unwrap();
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0].run_id, Some(run_id));
    all[0].id
}

#[test]
fn an_sft_run_of_world_size_two_is_trained_by_two_workers_and_registers_one_version() {
    with_db(|db| async move {
        let setup = setup(&db, 8).await;
        const STEPS: i64 = 12;
        let run_id = enqueue(&db.pool, setup.project, RunKind::Sft, gang_sft(STEPS, 4)).await;
        let workers = [spawn_worker(&db, &setup, "g1"), spawn_worker(&db, &setup, "g2")];
        let ended = wait_for(&db.pool, run_id, Duration::from_secs(120), "the gang run to end", |p| {
            p.4.is_finished()
        })
        .await;
        workers.into_iter().for_each(stop);
        let lines = log_lines(&db.pool, run_id).await;
        assert_eq!(ended.4, RunStatus::Succeeded, "{lines:#?}");
        one_version(&db.pool, run_id).await;

        // Both workers trained it: rank 0 claimed it, the other took rank 1, and they met
        // at rank 0's rendezvous.
        let ranks = gangs::ranks(&db.pool, run_id).await.unwrap();
        let mut workers: Vec<&str> = ranks.iter().map(|r| r.worker.as_str()).collect();
        workers.sort();
        assert_eq!(workers, ["g1", "g2"]);
        assert!(ranks.iter().all(|r| r.state == "done" && r.attempt == 1), "{ranks:?}");
        assert!(lines.iter().any(|l| l.ends_with("is rank 1 of 2 (attempt 1)")), "{lines:#?}");
        assert!(lines.iter().any(|l| l.starts_with("the 2 ranks meet at 127.0.0.1:")), "{lines:#?}");
        // Rank 0 alone reported: every step's loss once, from step 0.
        let metrics = registry::runs::metrics(&db.pool, run_id).await.unwrap();
        let loss = metrics.iter().find(|m| m.name == "loss/sft").expect("loss/sft reported");
        assert_eq!(loss.steps, (0..STEPS).collect::<Vec<_>>());
    });
}

#[test]
fn a_rank_killed_mid_run_stops_the_gang_and_the_run_resumes_from_its_checkpoint_with_one_version() {
    with_db(|db| async move {
        let setup = setup(&db, 8).await;
        // Long enough that checkpoints are stored (a heartbeat a second) well before the end.
        const STEPS: i64 = 600;
        let run_id = enqueue(&db.pool, setup.project, RunKind::Sft, gang_sft(STEPS, 5)).await;
        let mut first = vec![spawn_worker(&db, &setup, "k1"), spawn_worker(&db, &setup, "k2")];
        let (step, stored, ..) =
            wait_for(&db.pool, run_id, Duration::from_secs(120), "a stored checkpoint", |p| {
                p.1.is_some_and(|s| s >= 10)
            })
            .await;
        assert!(step < STEPS, "the run finished before the kill; make it longer");
        // SIGKILL the worker that holds rank 1: no chance to say goodbye.
        let ranks = gangs::ranks(&db.pool, run_id).await.unwrap();
        let victim = ranks.iter().find(|r| r.rank == 1).unwrap().worker.clone();
        let index = if victim == "k1" { 0 } else { 1 };
        let mut killed = first.remove(index);
        killed.kill().unwrap();
        killed.wait().unwrap();

        // A third worker comes up; with the survivor it forms the next gang.
        let third = spawn_worker(&db, &setup, "k3");
        let ended = wait_for(&db.pool, run_id, Duration::from_secs(240), "the resumed run to end", |p| {
            p.4.is_finished()
        })
        .await;
        first.into_iter().chain([third]).for_each(stop);
        let lines = log_lines(&db.pool, run_id).await;
        assert_eq!(ended.4, RunStatus::Succeeded, "{lines:#?}");
        one_version(&db.pool, run_id).await;
        assert!(ended.3 >= 2, "the run was claimed again after the kill: {lines:#?}");
        assert!(
            lines
                .iter()
                .any(|l| l
                    .contains("the run goes back to the queue and resumes from its last stored checkpoint")),
            "{lines:#?}"
        );
        let restored = restored_step(&lines);
        assert!(
            restored >= stored.unwrap() && restored % 5 == 0,
            "restored step {restored}, stored {stored:?}"
        );
        // The last gang: the survivor and the newcomer, both done.
        let last = gangs::ranks(&db.pool, run_id).await.unwrap();
        let mut workers: Vec<&str> = last.iter().map(|r| r.worker.as_str()).collect();
        workers.sort();
        let survivor = if victim == "k1" { "k2" } else { "k1" };
        let mut expected = vec![survivor, "k3"];
        expected.sort();
        assert_eq!(workers, expected, "{last:?}");
        assert!(last.iter().all(|r| r.state == "done"), "{last:?}");
        // Every step's loss is reported, the resumed steps once each.
        let metrics = registry::runs::metrics(&db.pool, run_id).await.unwrap();
        let loss = metrics.iter().find(|m| m.name == "loss/sft").expect("loss/sft reported");
        assert_eq!(loss.steps, (0..STEPS).collect::<Vec<_>>());
        let _ = progress(&db.pool, run_id).await;
    });
}

#[test]
fn a_grpo_run_of_world_size_two_splits_its_prompts_over_two_workers_and_registers_one_policy() {
    with_db(|db| async move {
        let pool = &db.pool;
        let setup = setup(&db, 6).await;
        // SFT, rankings and a reward model, by a worker in this process.
        let local = crate::worker::worker(pool, &setup, "w-local");
        crate::worker_dpo::sft_and_rankings(pool, &setup, &local).await;
        let rm_stage = serde_json::json!({"steps": 2, "batch_size": 2, "val_fraction": 0.0, "eval_every": 0});
        enqueue(
            pool,
            setup.project,
            RunKind::Reward,
            serde_json::json!({ "model_name": "rm", "base": "sft:1", "stage": rm_stage }),
        )
        .await;
        let (_, outcome) = local.run_next(crate::worker::no_shutdown()).await.unwrap().expect("the RM run");
        assert!(matches!(outcome, trainer::worker::Outcome::Succeeded { .. }), "{outcome:?}");

        // Two prompts a step, one group of two samples on each rank.
        let stage = serde_json::json!({"steps": 2, "batch_size": 2, "group_size": 2, "minibatch_size": 2,
                                       "max_new_tokens": 4, "checkpoint_every": 1});
        let config = serde_json::json!({ "model_name": "rl", "policy": "sft:1", "reward": "rm:1",
                                         "stage": stage, "world_size": 2 });
        let run_id = enqueue(pool, setup.project, RunKind::Grpo, config).await;
        let workers = [spawn_worker(&db, &setup, "r1"), spawn_worker(&db, &setup, "r2")];
        let ended = wait_for(pool, run_id, Duration::from_secs(180), "the gang GRPO run to end", |p| {
            p.4.is_finished()
        })
        .await;
        workers.into_iter().for_each(stop);
        let lines = log_lines(pool, run_id).await;
        assert_eq!(ended.4, RunStatus::Succeeded, "{lines:#?}");
        let policies = versions::list_versions(pool, "rl").await.unwrap();
        assert_eq!(policies.iter().map(|v| v.run_id).collect::<Vec<_>>(), [Some(run_id)]);
        let ranks = gangs::ranks(pool, run_id).await.unwrap();
        assert_eq!(ranks.len(), 2);
        assert!(ranks.iter().all(|r| r.state == "done"), "{ranks:?}");
        let metrics = registry::runs::metrics(pool, run_id).await.unwrap();
        let reward =
            metrics.iter().find(|m| m.name == "objective/reward").expect("objective/reward reported");
        assert_eq!(reward.steps, [0, 1]);
    });
}

//! The registry on a real Postgres: the run queue as workers use it (claims, leases,
//! heartbeats, cancels, reports), model versions with their numbers, lineage, aliases
//! and tags, and the content-addressed artifact store.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use ::registry::artifacts::{ArtifactStore, StoredArtifact};
use ::registry::error::RegistryError;
use ::registry::runs::{self, Heartbeat, Metric, NewRun, RunFilter, RunKind, RunStatus};
use ::registry::versions::{self, ModelKind, NewVersion, Parent};
use serde_json::json;
use sha2::{Digest, Sha256};
use sqlx::PgPool;

use crate::db::with_db;

const LEASE: Duration = Duration::from_secs(600);

fn new_run(kind: RunKind) -> NewRun {
    NewRun { project_id: None, kind, config: json!({"lr": 1e-4}), created_by: None }
}

async fn enqueue(pool: &PgPool, n: usize) -> Vec<i64> {
    let mut ids = Vec::new();
    for _ in 0..n {
        ids.push(runs::enqueue(pool, &new_run(RunKind::Sft)).await.unwrap());
    }
    ids
}

/// The lease of `run_id` ran out (its worker stopped heartbeating).
async fn expire_lease(pool: &PgPool, run_id: i64) {
    sqlx::query("UPDATE runs SET lease_until = now() - interval '1 second' WHERE id = $1")
        .bind(run_id)
        .execute(pool)
        .await
        .unwrap();
}

fn metric(name: &str, step: i64, value: f64) -> Metric {
    Metric { name: name.to_string(), step, value }
}

#[test]
fn an_enqueued_run_waits_in_the_queue_with_its_config() {
    with_db(|db| async move {
        let id = runs::enqueue(&db.pool, &new_run(RunKind::Reward)).await.unwrap();
        let run = runs::get(&db.pool, id).await.unwrap();
        assert_eq!(run.kind, RunKind::Reward);
        assert_eq!(run.status, RunStatus::Queued);
        assert_eq!(run.config, json!({"lr": 1e-4}));
        assert_eq!((run.attempts, run.step, run.progress), (0, 0, 0.0));
        assert!(run.worker.is_none() && run.started_at.is_none() && run.finished_at.is_none());
        assert!(matches!(runs::get(&db.pool, id + 1).await, Err(RegistryError::RunNotFound(_))));
    });
}

#[test]
fn a_run_whose_config_is_not_a_json_object_or_whose_project_is_missing_is_refused() {
    with_db(|db| async move {
        let run = NewRun { config: json!([1, 2]), ..new_run(RunKind::Sft) };
        let e = runs::enqueue(&db.pool, &run).await.unwrap_err();
        assert_eq!(e.to_string(), "a run's config must be a JSON object, not an array");
        let run = NewRun { project_id: Some(42), ..new_run(RunKind::Sft) };
        let e = runs::enqueue(&db.pool, &run).await.unwrap_err();
        assert!(matches!(e, RegistryError::ProjectNotFound(42)), "{e}");
        let count: i64 = sqlx::query_scalar("SELECT count(*) FROM runs").fetch_one(&db.pool).await.unwrap();
        assert_eq!(count, 0);
    });
}

#[test]
fn a_claim_takes_the_oldest_queued_run_and_starts_it() {
    with_db(|db| async move {
        let ids = enqueue(&db.pool, 2).await;
        let claimed = runs::claim(&db.pool, "gpu-1", LEASE).await.unwrap().unwrap();
        assert_eq!(claimed.id, ids[0]);
        assert_eq!((claimed.attempts, claimed.resume, claimed.step), (1, false, 0));
        let run = runs::get(&db.pool, ids[0]).await.unwrap();
        assert_eq!(run.status, RunStatus::Running);
        assert_eq!(run.worker.as_deref(), Some("gpu-1"));
        assert!(run.started_at.is_some() && run.heartbeat_at.is_some());
        assert!(run.lease_until.unwrap() > chrono::Utc::now() + chrono::Duration::seconds(500));
        assert_eq!(runs::claim(&db.pool, "gpu-2", LEASE).await.unwrap().unwrap().id, ids[1]);
        assert!(runs::claim(&db.pool, "gpu-3", LEASE).await.unwrap().is_none());
    });
}

#[test]
fn two_workers_never_claim_the_same_run_and_together_claim_all() {
    with_db(|db| async move {
        let ids: HashSet<i64> = enqueue(&db.pool, 20).await.into_iter().collect();
        let second = db.another_pool(8).await;
        let mut tasks = Vec::new();
        for (machine, pool) in [("a", db.pool.clone()), ("b", second.clone())] {
            for slot in 0..4 {
                let pool = pool.clone();
                tasks.push(tokio::spawn(async move {
                    let worker = format!("{machine}-{slot}");
                    let mut mine = Vec::new();
                    while let Some(run) = runs::claim(&pool, &worker, LEASE).await.unwrap() {
                        mine.push(run.id);
                    }
                    mine
                }));
            }
        }
        let mut claimed = Vec::new();
        for task in tasks {
            claimed.extend(task.await.unwrap());
        }
        let distinct: HashSet<i64> = claimed.iter().copied().collect();
        assert_eq!(claimed.len(), distinct.len(), "a run was claimed twice: {claimed:?}");
        assert_eq!(distinct, ids);
        let attempts: Vec<i32> =
            sqlx::query_scalar("SELECT attempts FROM runs").fetch_all(&db.pool).await.unwrap();
        assert!(attempts.iter().all(|a| *a == 1), "{attempts:?}");
    });
}

#[test]
fn a_run_whose_lease_expired_is_claimed_again_as_a_resume() {
    with_db(|db| async move {
        let id = enqueue(&db.pool, 1).await[0];
        // A zero lease has expired by the next statement.
        runs::claim(&db.pool, "dies", Duration::ZERO).await.unwrap().unwrap();
        runs::report(&db.pool, id, "dies", 40, Some(100), &[]).await.unwrap();
        let resumed = runs::claim(&db.pool, "takes-over", LEASE).await.unwrap().unwrap();
        assert_eq!(resumed.id, id);
        assert_eq!((resumed.attempts, resumed.resume, resumed.step), (2, true, 40));
        let run = runs::get(&db.pool, id).await.unwrap();
        assert_eq!(run.worker.as_deref(), Some("takes-over"));
        assert!(runs::claim(&db.pool, "third", LEASE).await.unwrap().is_none(), "a renewed lease is held");
    });
}

#[test]
fn a_recorded_checkpoint_is_handed_to_the_worker_that_resumes_the_run() {
    with_db(|db| async move {
        let id = enqueue(&db.pool, 1).await[0];
        let (a, b) = ("a".repeat(64), "b".repeat(64));
        runs::claim(&db.pool, "dies", Duration::ZERO).await.unwrap().unwrap();
        assert_eq!(runs::record_checkpoint(&db.pool, id, "dies", 10, &a).await.unwrap(), None);
        // The newer one replaces it, and the worker learns which to delete.
        assert_eq!(runs::record_checkpoint(&db.pool, id, "dies", 20, &b).await.unwrap(), Some(a.clone()));
        let resumed = runs::claim(&db.pool, "takes-over", LEASE).await.unwrap().unwrap();
        assert_eq!(
            (resumed.checkpoint_step, resumed.checkpoint_sha256.as_deref()),
            (Some(20), Some(b.as_str()))
        );
        // Only the holder records checkpoints; a malformed digest is refused by the schema.
        let err = runs::record_checkpoint(&db.pool, id, "dies", 30, &a).await.unwrap_err();
        assert!(matches!(err, RegistryError::LeaseLost { .. }), "{err}");
        assert!(runs::record_checkpoint(&db.pool, id, "takes-over", 30, "not-a-digest").await.is_err());
        assert!(runs::record_checkpoint(&db.pool, id, "takes-over", -1, &a).await.is_err());
    });
}

#[test]
fn a_removed_artifact_is_gone_and_removing_it_again_does_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("checkpoint");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("sub/optimizer.safetensors"), b"moments").unwrap();
    let store = ArtifactStore::new(dir.path().join("store")).unwrap();
    let stored = store.put_dir(&src).unwrap();
    store.remove(&stored.sha256).unwrap();
    assert!(matches!(store.verify(&stored.sha256), Err(RegistryError::ArtifactNotFound(_))));
    store.remove(&stored.sha256).unwrap();
    assert!(store.remove("../etc").is_err(), "only digests name artifacts");
    // The same files can be stored again.
    assert_eq!(store.put_dir(&src).unwrap(), stored);
}

#[test]
fn a_worker_whose_lease_was_taken_gets_lease_lost() {
    with_db(|db| async move {
        let id = enqueue(&db.pool, 1).await[0];
        runs::claim(&db.pool, "slow", LEASE).await.unwrap().unwrap();
        expire_lease(&db.pool, id).await;
        runs::claim(&db.pool, "fast", LEASE).await.unwrap().unwrap();

        let e = runs::heartbeat(&db.pool, id, "slow", LEASE).await.unwrap_err();
        assert!(matches!(e, RegistryError::LeaseLost { .. }), "{e}");
        assert_eq!(
            e.to_string(),
            format!("worker `slow` no longer holds run {id}: it is now running on worker `fast`")
        );
        let e = runs::report(&db.pool, id, "slow", 7, None, &[metric("loss", 7, 1.0)]).await.unwrap_err();
        assert!(matches!(e, RegistryError::LeaseLost { .. }), "{e}");
        assert!(runs::metrics(&db.pool, id).await.unwrap().is_empty(), "a lost lease writes no metrics");
        let e = runs::finish(&db.pool, id, "slow").await.unwrap_err();
        assert!(matches!(e, RegistryError::LeaseLost { .. }), "{e}");
        assert!(matches!(runs::release(&db.pool, id, "slow").await, Err(RegistryError::LeaseLost { .. })));
        assert_eq!(runs::heartbeat(&db.pool, id, "fast", LEASE).await.unwrap(), Heartbeat::Continue);
        runs::finish(&db.pool, id, "fast").await.unwrap();
        let e = runs::heartbeat(&db.pool, id, "fast", LEASE).await.unwrap_err();
        assert_eq!(e.to_string(), format!("worker `fast` no longer holds run {id}: it is now succeeded"));
    });
}

#[test]
fn a_heartbeat_renews_the_lease_so_the_run_is_not_taken() {
    with_db(|db| async move {
        let id = enqueue(&db.pool, 1).await[0];
        runs::claim(&db.pool, "w", LEASE).await.unwrap().unwrap();
        expire_lease(&db.pool, id).await;
        assert_eq!(runs::heartbeat(&db.pool, id, "w", LEASE).await.unwrap(), Heartbeat::Continue);
        let run = runs::get(&db.pool, id).await.unwrap();
        assert!(run.lease_until.unwrap() > chrono::Utc::now() + chrono::Duration::seconds(500));
        assert!(runs::claim(&db.pool, "other", LEASE).await.unwrap().is_none());
        assert!(matches!(
            runs::heartbeat(&db.pool, id + 1, "w", LEASE).await,
            Err(RegistryError::RunNotFound(_))
        ));
    });
}

#[test]
fn a_queued_run_that_is_cancelled_ends_at_once_and_is_never_claimed() {
    with_db(|db| async move {
        let id = enqueue(&db.pool, 1).await[0];
        assert_eq!(runs::cancel(&db.pool, id).await.unwrap(), RunStatus::Cancelled);
        assert_eq!(
            runs::cancel(&db.pool, id).await.unwrap(),
            RunStatus::Cancelled,
            "cancelling twice is harmless"
        );
        let run = runs::get(&db.pool, id).await.unwrap();
        assert!(run.finished_at.is_some() && run.cancel_requested);
        assert!(runs::claim(&db.pool, "w", LEASE).await.unwrap().is_none());
    });
}

#[test]
fn a_running_run_that_is_cancelled_learns_it_at_its_next_heartbeat() {
    with_db(|db| async move {
        let id = enqueue(&db.pool, 1).await[0];
        runs::claim(&db.pool, "w", LEASE).await.unwrap().unwrap();
        assert_eq!(runs::heartbeat(&db.pool, id, "w", LEASE).await.unwrap(), Heartbeat::Continue);
        assert_eq!(runs::cancel(&db.pool, id).await.unwrap(), RunStatus::Running);
        assert_eq!(runs::heartbeat(&db.pool, id, "w", LEASE).await.unwrap(), Heartbeat::CancelRequested);
        runs::finish_cancelled(&db.pool, id, "w").await.unwrap();
        let run = runs::get(&db.pool, id).await.unwrap();
        assert_eq!(run.status, RunStatus::Cancelled);
        assert!(run.finished_at.is_some() && run.lease_until.is_none());
    });
}

#[test]
fn a_run_asked_to_cancel_whose_worker_died_ends_cancelled_and_is_not_resumed() {
    with_db(|db| async move {
        let ids = enqueue(&db.pool, 2).await;
        runs::claim(&db.pool, "dies", LEASE).await.unwrap().unwrap();
        assert_eq!(runs::cancel(&db.pool, ids[0]).await.unwrap(), RunStatus::Running);
        expire_lease(&db.pool, ids[0]).await;
        assert_eq!(runs::claim(&db.pool, "w", LEASE).await.unwrap().unwrap().id, ids[1]);
        assert_eq!(runs::get(&db.pool, ids[0]).await.unwrap().status, RunStatus::Cancelled);

        // A worker that is asked to cancel while it shuts down does not requeue the run.
        runs::cancel(&db.pool, ids[1]).await.unwrap();
        assert_eq!(runs::release(&db.pool, ids[1], "w").await.unwrap(), RunStatus::Cancelled);
        assert!(runs::claim(&db.pool, "w", LEASE).await.unwrap().is_none());
    });
}

#[test]
fn a_released_run_is_queued_again_and_resumes_with_its_attempts_and_progress() {
    with_db(|db| async move {
        let id = enqueue(&db.pool, 1).await[0];
        runs::claim(&db.pool, "stopping", LEASE).await.unwrap().unwrap();
        runs::report(&db.pool, id, "stopping", 3, Some(10), &[]).await.unwrap();
        assert_eq!(runs::release(&db.pool, id, "stopping").await.unwrap(), RunStatus::Queued);
        let run = runs::get(&db.pool, id).await.unwrap();
        assert_eq!((run.status, run.attempts, run.step), (RunStatus::Queued, 1, 3));
        assert!(run.worker.is_none() && run.lease_until.is_none() && run.finished_at.is_none());
        let resumed = runs::claim(&db.pool, "next", LEASE).await.unwrap().unwrap();
        assert_eq!((resumed.id, resumed.attempts, resumed.resume, resumed.step), (id, 2, true, 3));
    });
}

#[test]
fn progress_and_a_batch_of_metrics_are_reported_together_and_a_resume_overwrites_steps() {
    with_db(|db| async move {
        let id = enqueue(&db.pool, 1).await[0];
        runs::claim(&db.pool, "w", LEASE).await.unwrap().unwrap();
        let batch =
            [metric("loss/policy", 1, 2.5), metric("objective/kl", 1, 0.1), metric("loss/policy", 2, 2.0)];
        runs::report(&db.pool, id, "w", 2, Some(8), &batch).await.unwrap();
        let run = runs::get(&db.pool, id).await.unwrap();
        assert_eq!((run.step, run.total_steps, run.progress), (2, Some(8), 0.25));

        // The run resumes from step 1 after its worker died, and reports step 2 again.
        expire_lease(&db.pool, id).await;
        runs::claim(&db.pool, "v", LEASE).await.unwrap().unwrap();
        runs::report(
            &db.pool,
            id,
            "v",
            4,
            None,
            &[metric("loss/policy", 2, 1.5), metric("loss/policy", 4, 1.0)],
        )
        .await
        .unwrap();
        let run = runs::get(&db.pool, id).await.unwrap();
        assert_eq!((run.step, run.total_steps, run.progress), (4, Some(8), 0.5));
        let series = runs::metrics(&db.pool, id).await.unwrap();
        assert_eq!(series.len(), 2);
        assert_eq!(series[0].name, "loss/policy");
        assert_eq!(series[0].steps, vec![1, 2, 4]);
        assert_eq!(series[0].values, vec![2.5, 1.5, 1.0]);
        assert_eq!((series[1].name.as_str(), series[1].values.as_slice()), ("objective/kl", &[0.1][..]));
    });
}

#[test]
fn non_finite_or_malformed_metrics_are_refused_and_nothing_is_written() {
    with_db(|db| async move {
        let id = enqueue(&db.pool, 1).await[0];
        runs::claim(&db.pool, "w", LEASE).await.unwrap().unwrap();
        let e = runs::report(
            &db.pool,
            id,
            "w",
            5,
            None,
            &[metric("loss", 5, 1.0), metric("loss/value", 5, f64::NAN)],
        )
        .await
        .unwrap_err();
        assert_eq!(e.to_string(), "metric `loss/value` at step 5 is NaN: only finite values can be stored");
        let e =
            runs::report(&db.pool, id, "w", 5, None, &[metric("kl", 5, f64::INFINITY)]).await.unwrap_err();
        assert!(matches!(e, RegistryError::NonFiniteMetric { .. }), "{e}");
        let e = runs::report(&db.pool, id, "w", 5, None, &[metric("", 5, 1.0)]).await.unwrap_err();
        assert!(matches!(e, RegistryError::BadMetricName(_)), "{e}");
        let e = runs::report(&db.pool, id, "w", 5, None, &[metric("a", 5, 1.0), metric("a", 5, 2.0)])
            .await
            .unwrap_err();
        assert!(matches!(e, RegistryError::DuplicateMetric { .. }), "{e}");
        let e = runs::report(&db.pool, id, "w", -1, None, &[]).await.unwrap_err();
        assert!(matches!(e, RegistryError::NegativeStep { .. }), "{e}");
        assert!(runs::metrics(&db.pool, id).await.unwrap().is_empty());
        assert_eq!(runs::get(&db.pool, id).await.unwrap().step, 0);
    });
}

#[test]
fn log_lines_come_back_in_order_and_page_by_id() {
    with_db(|db| async move {
        let id = enqueue(&db.pool, 1).await[0];
        runs::log(&db.pool, id, &["step 1", "step 2"]).await.unwrap();
        runs::log(&db.pool, id, &[String::from("a NUL \0 in output")]).await.unwrap();
        let lines = runs::logs(&db.pool, id, None, 100).await.unwrap();
        let text: Vec<&str> = lines.iter().map(|l| l.line.as_str()).collect();
        assert_eq!(text, ["step 1", "step 2", "a NUL \u{FFFD} in output"]);
        let after = runs::logs(&db.pool, id, Some(lines[0].id), 1).await.unwrap();
        assert_eq!(after.len(), 1);
        assert_eq!(after[0].line, "step 2");
        assert!(matches!(runs::log(&db.pool, id + 1, &["x"]).await, Err(RegistryError::RunNotFound(_))));
        assert!(matches!(runs::logs(&db.pool, id + 1, None, 10).await, Err(RegistryError::RunNotFound(_))));
    });
}

#[test]
fn a_finished_run_cannot_be_finished_failed_or_cancelled_again() {
    with_db(|db| async move {
        let ids = enqueue(&db.pool, 2).await;
        runs::claim(&db.pool, "w", LEASE).await.unwrap().unwrap();
        runs::finish(&db.pool, ids[0], "w").await.unwrap();
        let run = runs::get(&db.pool, ids[0]).await.unwrap();
        assert_eq!(run.status, RunStatus::Succeeded);
        assert!(run.finished_at.is_some() && run.lease_until.is_none());
        let e = runs::finish(&db.pool, ids[0], "w").await.unwrap_err();
        assert_eq!(e.to_string(), format!("run {} has already finished: it succeeded", ids[0]));
        assert!(matches!(
            runs::fail(&db.pool, ids[0], "w", "late").await,
            Err(RegistryError::AlreadyFinished { status: RunStatus::Succeeded, .. })
        ));
        assert!(matches!(
            runs::cancel(&db.pool, ids[0]).await,
            Err(RegistryError::AlreadyFinished { status: RunStatus::Succeeded, .. })
        ));

        runs::claim(&db.pool, "w", LEASE).await.unwrap().unwrap();
        runs::fail(&db.pool, ids[1], "w", "CUDA out of memory").await.unwrap();
        let run = runs::get(&db.pool, ids[1]).await.unwrap();
        assert_eq!((run.status, run.error.as_deref()), (RunStatus::Failed, Some("CUDA out of memory")));
        let e = runs::finish_cancelled(&db.pool, ids[1], "w").await.unwrap_err();
        assert_eq!(e.to_string(), format!("run {} has already finished: it failed", ids[1]));
    });
}

#[test]
fn runs_are_listed_newest_first_by_project_and_status() {
    with_db(|db| async move {
        let project: i64 = sqlx::query_scalar("INSERT INTO projects (name) VALUES ('p') RETURNING id")
            .fetch_one(&db.pool)
            .await
            .unwrap();
        let mut in_project = Vec::new();
        for _ in 0..3 {
            let run = NewRun { project_id: Some(project), ..new_run(RunKind::Ppo) };
            in_project.push(runs::enqueue(&db.pool, &run).await.unwrap());
        }
        let other = runs::enqueue(&db.pool, &new_run(RunKind::Eval)).await.unwrap();
        runs::cancel(&db.pool, in_project[1]).await.unwrap();

        let ids = |runs: Vec<runs::Run>| runs.into_iter().map(|r| r.id).collect::<Vec<_>>();
        let all = runs::list(&db.pool, &RunFilter::default()).await.unwrap();
        assert_eq!(ids(all), vec![other, in_project[2], in_project[1], in_project[0]]);
        let filter = RunFilter { project_id: Some(project), ..RunFilter::default() };
        assert_eq!(
            ids(runs::list(&db.pool, &filter).await.unwrap()),
            vec![in_project[2], in_project[1], in_project[0]]
        );
        let filter = RunFilter { project_id: Some(project), status: Some(RunStatus::Queued), limit: 1 };
        assert_eq!(ids(runs::list(&db.pool, &filter).await.unwrap()), vec![in_project[2]]);
        let filter = RunFilter { status: Some(RunStatus::Cancelled), ..RunFilter::default() };
        assert_eq!(ids(runs::list(&db.pool, &filter).await.unwrap()), vec![in_project[1]]);
    });
}

// Versions.

/// An artifact record for a version, without files behind it.
fn artifact(seed: &str) -> StoredArtifact {
    let sha256 = sha256_hex(seed.as_bytes());
    StoredArtifact {
        uri: format!("file:///var/plumb/artifacts/sha256/{sha256}"),
        sha256,
        size: seed.len() as u64,
    }
}

fn new_version(model: &str, kind: ModelKind, parents: &[(i64, &str)]) -> NewVersion {
    NewVersion {
        model: model.to_string(),
        kind,
        run_id: None,
        parents: parents
            .iter()
            .map(|(id, role)| Parent { version_id: *id, role: role.to_string() })
            .collect(),
        snapshots: Vec::new(),
        config: json!({"epochs": 2}),
        metrics: json!({"val/loss": 1.25}),
        artifact: artifact(&format!("{model}{parents:?}{}", uuid::Uuid::new_v4())),
        created_by: None,
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

async fn register(
    pool: &PgPool,
    model: &str,
    kind: ModelKind,
    parents: &[(i64, &str)],
) -> versions::ModelVersion {
    versions::register(pool, &new_version(model, kind, parents)).await.unwrap()
}

async fn snapshot(pool: &PgPool) -> i64 {
    sqlx::query_scalar(
        "WITH p AS (INSERT INTO projects (name) VALUES (gen_random_uuid()::text) RETURNING id)
         INSERT INTO dataset_snapshots (project_id, kind, name, item_count, content_sha256)
         SELECT id, 'demonstrations', 'demos', 0, sha256('demos') FROM p RETURNING id",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

#[test]
fn versions_are_numbered_per_model_and_keep_everything_they_were_registered_with() {
    with_db(|db| async move {
        let snapshot = snapshot(&db.pool).await;
        let run = runs::enqueue(&db.pool, &new_run(RunKind::Sft)).await.unwrap();
        let base = register(&db.pool, "tiny", ModelKind::Base, &[]).await;
        let mut new = new_version("tiny-sft", ModelKind::Sft, &[(base.id, "base")]);
        new.run_id = Some(run);
        new.snapshots = vec![snapshot];
        let sft = versions::register(&db.pool, &new).await.unwrap();
        assert_eq!((base.model.as_str(), base.version), ("tiny", 1));
        assert_eq!((sft.model.as_str(), sft.version, sft.kind), ("tiny-sft", 1, ModelKind::Sft));
        assert_eq!(sft.run_id, Some(run));
        assert_eq!(sft.parents, vec![Parent { version_id: base.id, role: "base".into() }]);
        assert_eq!(sft.snapshots.len(), 1);
        assert_eq!(sft.snapshots[0].id, snapshot);
        assert_eq!(sft.snapshots[0].content_sha256, sha256_hex(b"demos"));
        assert_eq!((&sft.config, &sft.metrics), (&new.config, &new.metrics));
        assert_eq!(
            (&sft.artifact_uri, &sft.artifact_sha256, sft.artifact_size as u64),
            (&new.artifact.uri, &new.artifact.sha256, new.artifact.size)
        );
        assert!(sft.tags.is_empty() && sft.aliases.is_empty());
        assert_eq!(versions::get(&db.pool, sft.id).await.unwrap(), sft);
        assert_eq!(register(&db.pool, "tiny", ModelKind::Base, &[]).await.version, 2);

        let listed = versions::list_versions(&db.pool, "tiny").await.unwrap();
        assert_eq!(listed.iter().map(|v| v.version).collect::<Vec<_>>(), vec![2, 1], "newest first");
        assert!(matches!(
            versions::list_versions(&db.pool, "nope").await,
            Err(RegistryError::ModelNotFound(_))
        ));
        assert!(matches!(versions::get(&db.pool, 999).await, Err(RegistryError::VersionNotFound(999))));
    });
}

#[test]
fn a_run_registers_one_version_however_often_it_asks() {
    with_db(|db| async move {
        let run = runs::enqueue(&db.pool, &new_run(RunKind::Reward)).await.unwrap();
        let mut new = new_version("rm", ModelKind::Reward, &[]);
        new.run_id = Some(run);
        let first = versions::register(&db.pool, &new).await.unwrap();
        let again = versions::register(&db.pool, &new).await.unwrap();
        assert_eq!(again, first);

        // Workers racing to register one run: one version, and no number used up.
        let racing = runs::enqueue(&db.pool, &new_run(RunKind::Reward)).await.unwrap();
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let pool = db.pool.clone();
            let mut new = new_version("rm", ModelKind::Reward, &[]);
            new.run_id = Some(racing);
            tasks.push(tokio::spawn(async move { versions::register(&pool, &new).await.unwrap().id }));
        }
        let mut ids = HashSet::new();
        for task in tasks {
            ids.insert(task.await.unwrap());
        }
        assert_eq!(ids.len(), 1, "{ids:?}");
        let raced = versions::get(&db.pool, *ids.iter().next().unwrap()).await.unwrap();
        assert_eq!(raced.version, 2);
        assert_eq!(register(&db.pool, "rm", ModelKind::Reward, &[]).await.version, 3);
    });
}

#[test]
fn concurrent_registrations_for_one_model_get_distinct_consecutive_numbers() {
    with_db(|db| async move {
        let second = db.another_pool(5).await;
        let mut tasks = Vec::new();
        for i in 0..10 {
            let pool = if i % 2 == 0 { db.pool.clone() } else { second.clone() };
            tasks.push(tokio::spawn(async move {
                versions::register(&pool, &new_version("policy", ModelKind::Policy, &[]))
                    .await
                    .unwrap()
                    .version
            }));
        }
        let mut numbers = Vec::new();
        for task in tasks {
            numbers.push(task.await.unwrap());
        }
        numbers.sort();
        assert_eq!(numbers, (1..=10).collect::<Vec<_>>());
        assert_eq!(versions::resolve(&db.pool, "policy").await.unwrap().version, 10);
    });
}

async fn refused(pool: &PgPool, base_id: i64, change: impl FnOnce(&mut NewVersion)) -> RegistryError {
    let mut new = new_version("sft", ModelKind::Sft, &[(base_id, "base")]);
    change(&mut new);
    versions::register(pool, &new).await.unwrap_err()
}

#[test]
fn a_version_with_a_missing_reference_or_bad_input_is_refused_and_nothing_is_written() {
    with_db(|db| async move {
        let base = register(&db.pool, "base", ModelKind::Base, &[]).await;
        let e = refused(&db.pool, base.id, |n| n.parents[0].version_id = 999).await;
        assert!(matches!(e, RegistryError::VersionNotFound(999)), "{e}");
        let e = refused(&db.pool, base.id, |n| n.snapshots = vec![77]).await;
        assert_eq!(e.to_string(), "dataset snapshot 77 does not exist");
        let e = refused(&db.pool, base.id, |n| n.run_id = Some(55)).await;
        assert!(matches!(e, RegistryError::RunNotFound(55)), "{e}");
        let e = refused(&db.pool, base.id, |n| n.created_by = Some(3)).await;
        assert!(matches!(e, RegistryError::UserNotFound(3)), "{e}");
        let e = refused(&db.pool, base.id, |n| n.parents[0].role = "Base Model".into()).await;
        assert!(matches!(e, RegistryError::BadRole(_)), "{e}");
        let e = refused(&db.pool, base.id, |n| n.parents.push(n.parents[0].clone())).await;
        assert!(matches!(e, RegistryError::DuplicateParent(_)), "{e}");
        let e = refused(&db.pool, base.id, |n| n.model = "no spaces".into()).await;
        assert!(matches!(e, RegistryError::BadModelName(_)), "{e}");
        let e = refused(&db.pool, base.id, |n| n.metrics = json!(3)).await;
        assert_eq!(e.to_string(), "a version's metrics must be a JSON object");
        let e = refused(&db.pool, base.id, |n| n.artifact.sha256 = "ab".into()).await;
        assert!(matches!(e, RegistryError::BadDigest(_)), "{e}");
        let e = refused(&db.pool, base.id, |n| n.artifact.uri = "s3://bucket/x".into()).await;
        assert!(matches!(e, RegistryError::BadUri(_)), "{e}");

        let models: Vec<String> =
            sqlx::query_scalar("SELECT name FROM models").fetch_all(&db.pool).await.unwrap();
        assert_eq!(models, ["base"]);
        let versions: i64 =
            sqlx::query_scalar("SELECT count(*) FROM model_versions").fetch_one(&db.pool).await.unwrap();
        assert_eq!(versions, 1);
        // The failed registrations used no number.
        assert_eq!(register(&db.pool, "sft", ModelKind::Sft, &[]).await.version, 1);
    });
}

#[test]
fn lineage_goes_from_base_through_sft_and_reward_to_policy_and_back() {
    with_db(|db| async move {
        let base = register(&db.pool, "gpt", ModelKind::Base, &[]).await;
        let sft = register(&db.pool, "gpt-sft", ModelKind::Sft, &[(base.id, "base")]).await;
        let reward = register(&db.pool, "gpt-rm", ModelKind::Reward, &[(sft.id, "sft")]).await;
        let policy =
            register(&db.pool, "gpt-ppo", ModelKind::Policy, &[(sft.id, "sft"), (reward.id, "reward")]).await;

        let links = |entries: Vec<versions::LineageEntry>| {
            entries.into_iter().map(|e| (e.version.id, e.role, e.via, e.depth)).collect::<Vec<_>>()
        };
        let s = |role: &str| role.to_string();
        assert_eq!(
            links(versions::ancestors(&db.pool, policy.id).await.unwrap()),
            vec![
                (sft.id, s("sft"), policy.id, 1),
                (reward.id, s("reward"), policy.id, 1),
                (base.id, s("base"), sft.id, 2),
                (sft.id, s("sft"), reward.id, 2),
            ]
        );
        assert_eq!(
            links(versions::descendants(&db.pool, base.id).await.unwrap()),
            vec![
                (sft.id, s("base"), base.id, 1),
                (reward.id, s("sft"), sft.id, 2),
                (policy.id, s("sft"), sft.id, 2),
                (policy.id, s("reward"), reward.id, 3),
            ]
        );
        assert_eq!(links(versions::ancestors(&db.pool, reward.id).await.unwrap()).len(), 2);
        assert!(versions::ancestors(&db.pool, base.id).await.unwrap().is_empty());
        assert!(versions::descendants(&db.pool, policy.id).await.unwrap().is_empty());
        let entry = &versions::ancestors(&db.pool, sft.id).await.unwrap()[0];
        assert_eq!(entry.version, base, "an entry carries the whole version");
        assert!(matches!(versions::ancestors(&db.pool, 999).await, Err(RegistryError::VersionNotFound(999))));
    });
}

#[test]
fn a_reference_resolves_to_the_latest_a_numbered_or_an_aliased_version() {
    with_db(|db| async move {
        let v1 = register(&db.pool, "sft", ModelKind::Sft, &[]).await;
        let v2 = register(&db.pool, "sft", ModelKind::Sft, &[]).await;
        versions::set_alias(&db.pool, "sft", "champion", v1.id).await.unwrap();
        assert_eq!(versions::resolve(&db.pool, "sft").await.unwrap().id, v2.id);
        assert_eq!(versions::resolve(&db.pool, "sft:1").await.unwrap().id, v1.id);
        assert_eq!(versions::resolve(&db.pool, "sft@champion").await.unwrap().id, v1.id);
        let e = versions::resolve(&db.pool, "sft:3").await.unwrap_err();
        assert_eq!(e.to_string(), "model `sft` has no version 3");
        let e = versions::resolve(&db.pool, "sft@best").await.unwrap_err();
        assert_eq!(e.to_string(), "model `sft` has no alias `best`");
        let e = versions::resolve(&db.pool, "rm@best").await.unwrap_err();
        assert_eq!(e.to_string(), "model `rm` does not exist");
        let e = versions::resolve(&db.pool, "sft:first").await.unwrap_err();
        assert!(matches!(e, RegistryError::BadReference(_)), "{e}");
    });
}

#[test]
fn an_alias_names_one_version_of_its_model_and_moves() {
    with_db(|db| async move {
        let v1 = register(&db.pool, "policy", ModelKind::Policy, &[]).await;
        let v2 = register(&db.pool, "policy", ModelKind::Policy, &[]).await;
        let other = register(&db.pool, "other", ModelKind::Policy, &[]).await;

        let set = versions::set_alias(&db.pool, "policy", "champion", v1.id).await.unwrap();
        assert_eq!((set.alias.as_str(), set.version_id, set.version), ("champion", v1.id, 1));
        versions::set_alias(&db.pool, "policy", "baseline", v1.id).await.unwrap();
        let moved = versions::set_alias(&db.pool, "policy", "champion", v2.id).await.unwrap();
        assert_eq!((moved.version_id, moved.version), (v2.id, 2));
        assert!(moved.updated_at >= set.updated_at);
        let names = |aliases: Vec<versions::Alias>| {
            aliases.into_iter().map(|a| (a.alias, a.version)).collect::<Vec<_>>()
        };
        assert_eq!(
            names(versions::aliases(&db.pool, "policy").await.unwrap()),
            vec![("baseline".to_string(), 1), ("champion".to_string(), 2)]
        );
        assert_eq!(versions::get(&db.pool, v2.id).await.unwrap().aliases, ["champion"]);

        let e = versions::set_alias(&db.pool, "policy", "champion", other.id).await.unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "version {} belongs to model `other`, so alias `champion` of model `policy` cannot name it",
                other.id
            )
        );
        let e = versions::set_alias(&db.pool, "policy", "Champion!", v1.id).await.unwrap_err();
        assert!(matches!(e, RegistryError::BadAlias(_)), "{e}");
        assert!(matches!(
            versions::set_alias(&db.pool, "policy", "x", 999).await,
            Err(RegistryError::VersionNotFound(999))
        ));
        assert!(matches!(
            versions::set_alias(&db.pool, "nope", "x", v1.id).await,
            Err(RegistryError::ModelNotFound(_))
        ));

        assert!(versions::remove_alias(&db.pool, "policy", "baseline").await.unwrap());
        assert!(!versions::remove_alias(&db.pool, "policy", "baseline").await.unwrap());
        assert_eq!(
            names(versions::aliases(&db.pool, "policy").await.unwrap()),
            vec![("champion".to_string(), 2)]
        );
    });
}

#[test]
fn tags_are_added_and_removed_idempotently() {
    with_db(|db| async move {
        let v = register(&db.pool, "rm", ModelKind::Reward, &[]).await;
        assert_eq!(versions::add_tag(&db.pool, v.id, "best").await.unwrap(), ["best"]);
        assert_eq!(versions::add_tag(&db.pool, v.id, "best").await.unwrap(), ["best"]);
        assert_eq!(versions::add_tag(&db.pool, v.id, "paper/v2").await.unwrap(), ["best", "paper/v2"]);
        assert_eq!(versions::remove_tag(&db.pool, v.id, "best").await.unwrap(), ["paper/v2"]);
        assert_eq!(versions::remove_tag(&db.pool, v.id, "best").await.unwrap(), ["paper/v2"]);
        assert_eq!(versions::get(&db.pool, v.id).await.unwrap().tags, ["paper/v2"]);
        assert!(matches!(
            versions::add_tag(&db.pool, v.id, "two words").await,
            Err(RegistryError::BadTag(_))
        ));
        assert!(matches!(
            versions::add_tag(&db.pool, 999, "x").await,
            Err(RegistryError::VersionNotFound(999))
        ));
        assert!(matches!(
            versions::remove_tag(&db.pool, 999, "x").await,
            Err(RegistryError::VersionNotFound(999))
        ));
    });
}

#[test]
fn models_are_listed_by_name_with_their_latest_version_and_aliases() {
    with_db(|db| async move {
        assert!(versions::list_models(&db.pool).await.unwrap().is_empty());
        let sft1 = register(&db.pool, "sft", ModelKind::Sft, &[]).await;
        let sft2 = register(&db.pool, "sft", ModelKind::Sft, &[]).await;
        let base = register(&db.pool, "base", ModelKind::Base, &[]).await;
        versions::set_alias(&db.pool, "sft", "champion", sft1.id).await.unwrap();
        let models = versions::list_models(&db.pool).await.unwrap();
        assert_eq!(models.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(), ["base", "sft"]);
        assert_eq!(models[0].latest.as_ref(), Some(&base));
        assert!(models[0].aliases.is_empty());
        assert_eq!(models[1].latest.as_ref().map(|v| v.id), Some(sft2.id));
        assert_eq!(models[1].aliases.len(), 1);
        assert_eq!((models[1].aliases[0].alias.as_str(), models[1].aliases[0].version), ("champion", 1));
    });
}

// Artifacts.

fn write(path: &Path, contents: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, contents).unwrap();
}

/// A checkpoint directory as the trainer writes one.
fn checkpoint(dir: &Path, weights: &[u8]) {
    write(&dir.join("config.json"), br#"{"n_layer": 2}"#);
    write(&dir.join("model.safetensors"), weights);
    write(&dir.join("optimizer/state.bin"), b"moments");
}

fn files_under(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let name = path.strip_prefix(dir).unwrap().to_str().unwrap().to_string();
                files.push((name, std::fs::read(&path).unwrap()));
            }
        }
    }
    files.sort();
    files
}

/// Tampering on purpose: stored files are read-only.
fn tamper(path: &Path, contents: &[u8]) {
    let mut permissions = std::fs::metadata(path).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    permissions.set_readonly(false);
    std::fs::set_permissions(path, permissions).unwrap();
    std::fs::write(path, contents).unwrap();
}

#[test]
fn a_checkpoint_directory_is_stored_by_its_digest_and_comes_back_verified() {
    let work = tempfile::tempdir().unwrap();
    let store = ArtifactStore::new(work.path().join("store")).unwrap();
    let src = work.path().join("ckpt");
    checkpoint(&src, b"weights");

    let stored = store.put_dir(&src).unwrap();
    assert_eq!(stored.sha256.len(), 64);
    assert_eq!(stored.size, (r#"{"n_layer": 2}"#.len() + "weights".len() + "moments".len()) as u64);
    let dir = store.get(&stored.sha256).unwrap();
    assert_eq!(stored.uri, format!("file://{}", dir.display()));
    assert!(dir.is_absolute() && dir.ends_with(format!("sha256/{}", stored.sha256)));
    assert_eq!(files_under(&dir), files_under(&src));
    assert_eq!(store.verify(&stored.sha256).unwrap(), stored);
    assert_eq!(store.open_uri(&stored.uri).unwrap(), dir);

    // The same contents from elsewhere are the same artifact, stored once.
    let copy = work.path().join("elsewhere");
    checkpoint(&copy, b"weights");
    assert_eq!(store.put_dir(&copy).unwrap(), stored);
    assert_eq!(
        std::fs::read_dir(store.root().join("sha256")).unwrap().count(),
        2,
        "one directory and its manifest"
    );
    assert!(std::fs::read_dir(store.root().join("tmp")).unwrap().next().is_none(), "nothing is left in tmp/");

    // Other contents, or the same contents under another name, are another artifact.
    let changed = work.path().join("changed");
    checkpoint(&changed, b"weightz");
    assert_ne!(store.put_dir(&changed).unwrap().sha256, stored.sha256);
    let renamed = work.path().join("renamed");
    checkpoint(&renamed, b"weights");
    std::fs::rename(renamed.join("config.json"), renamed.join("config2.json")).unwrap();
    assert_ne!(store.put_dir(&renamed).unwrap().sha256, stored.sha256);

    let fetched = work.path().join("fetched/ckpt");
    assert_eq!(store.fetch_to(&stored.sha256, &fetched).unwrap(), stored);
    assert_eq!(files_under(&fetched), files_under(&src));
    let e = store.fetch_to(&stored.sha256, &fetched).unwrap_err();
    assert!(matches!(e, RegistryError::Io { .. }), "an existing destination is not overwritten: {e}");
}

#[test]
fn a_tampered_artifact_is_an_error_that_names_the_file() {
    let work = tempfile::tempdir().unwrap();
    let store = ArtifactStore::new(work.path().join("store")).unwrap();
    let src = work.path().join("ckpt");
    checkpoint(&src, b"weights");
    let stored = store.put_dir(&src).unwrap();
    let dir = store.get(&stored.sha256).unwrap();

    tamper(&dir.join("model.safetensors"), b"weightz");
    let e = store.get(&stored.sha256).unwrap_err();
    assert!(matches!(&e, RegistryError::ArtifactCorrupt { file, .. } if file == "model.safetensors"), "{e}");
    assert!(e.to_string().contains("model.safetensors has sha256"), "{e}");
    let dest = work.path().join("fetched");
    assert!(matches!(store.fetch_to(&stored.sha256, &dest), Err(RegistryError::ArtifactCorrupt { .. })));
    assert!(!dest.exists(), "a failed fetch leaves nothing behind");
    assert!(matches!(store.open_uri(&stored.uri), Err(RegistryError::ArtifactCorrupt { .. })));

    // Putting the good contents again repairs the store.
    assert_eq!(store.put_dir(&src).unwrap(), stored);
    store.verify(&stored.sha256).unwrap();

    tamper(&dir.join("optimizer/state.bin"), b"moments and more");
    let e = store.verify(&stored.sha256).unwrap_err();
    assert!(e.to_string().contains("optimizer/state.bin has 16 bytes where the manifest says 7"), "{e}");
    store.put_dir(&src).unwrap();

    std::fs::remove_file(dir.join("config.json")).unwrap();
    let e = store.verify(&stored.sha256).unwrap_err();
    assert!(e.to_string().contains("config.json is missing"), "{e}");
    store.put_dir(&src).unwrap();

    write(&dir.join("extra.bin"), b"x");
    let e = store.verify(&stored.sha256).unwrap_err();
    assert!(e.to_string().contains("extra.bin is not part of the artifact"), "{e}");
}

#[test]
fn symbolic_links_and_special_files_cannot_be_stored() {
    let work = tempfile::tempdir().unwrap();
    let store = ArtifactStore::new(work.path().join("store")).unwrap();
    let src = work.path().join("ckpt");
    checkpoint(&src, b"weights");
    std::os::unix::fs::symlink(src.join("model.safetensors"), src.join("link.safetensors")).unwrap();
    let e = store.put_dir(&src).unwrap_err();
    assert!(
        matches!(&e, RegistryError::NotRegularFile { path, .. } if path.ends_with("link.safetensors")),
        "{e}"
    );
    assert!(e.to_string().contains("is a symbolic link"), "{e}");
    std::fs::remove_file(src.join("link.safetensors")).unwrap();

    let _socket = std::os::unix::net::UnixListener::bind(src.join("optimizer/sock")).unwrap();
    let e = store.put_dir(&src).unwrap_err();
    assert!(e.to_string().contains("optimizer/sock is not a regular file"), "{e}");
    assert!(std::fs::read_dir(store.root().join("tmp")).unwrap().next().is_none(), "nothing is left in tmp/");
}

#[test]
fn malformed_digests_and_uris_are_refused() {
    let work = tempfile::tempdir().unwrap();
    let store = ArtifactStore::new(work.path()).unwrap();
    assert!(matches!(store.verify("abc"), Err(RegistryError::BadDigest(_))));
    assert!(matches!(store.get(&"A".repeat(64)), Err(RegistryError::BadDigest(_))));
    assert!(matches!(store.get(&"a".repeat(64)), Err(RegistryError::ArtifactNotFound(_))));
    for uri in
        ["s3://x/sha256/aa", "file://relative/sha256/aa", &format!("file:///x/sha1/{}", "a".repeat(64))]
    {
        assert!(matches!(store.open_uri(uri), Err(RegistryError::BadUri(_))), "{uri}");
    }
}

#[test]
fn a_registered_version_points_at_its_stored_artifact() {
    with_db(|db| async move {
        let work = tempfile::tempdir().unwrap();
        let store = ArtifactStore::new(work.path().join("store")).unwrap();
        checkpoint(&work.path().join("ckpt"), b"weights");
        let stored = store.put_dir(&work.path().join("ckpt")).unwrap();
        let new = NewVersion { artifact: stored.clone(), ..new_version("sft", ModelKind::Sft, &[]) };
        let version = versions::register(&db.pool, &new).await.unwrap();
        assert_eq!(version.artifact_sha256, stored.sha256);
        let dir = store.open_uri(&version.artifact_uri).unwrap();
        assert_eq!(files_under(&dir), files_under(&work.path().join("ckpt")));
    });
}

//! A DPO run on the worker: from an SFT version and the project's rankings to a policy
//! version whose lineage is the SFT version and the rankings snapshot.

use std::time::Duration;

use labeling::annotation::{IdempotencyKey, RankingInput, RankingSubmission, Vote};
use labeling::domain::Comment;
use labeling::snapshots::{self, SnapshotFilter, SnapshotKind};
use labeling::tasks::{self, NewSample};
use registry::runs::{self, RunKind, RunStatus};
use registry::versions::{self, ModelKind};
use serde_json::json;
use sqlx::PgPool;
use trainer::worker::{Outcome, Worker};

use crate::db::with_db;
use crate::worker::{enqueue, no_shutdown, setup, worker, Setup};

/// The project's prompts (id, text), oldest first.
async fn project_prompts(pool: &PgPool, setup: &Setup) -> Vec<(i64, String)> {
    sqlx::query_as("SELECT id, text FROM prompts WHERE project_id = $1 ORDER BY id")
        .bind(setup.project)
        .fetch_all(pool)
        .await
        .unwrap()
}

/// A new annotator named `name`; its id.
async fn annotator(pool: &PgPool, name: &str) -> i64 {
    sqlx::query_scalar(
        "INSERT INTO users (username, role, password_hash) VALUES ($1, 'annotator', '$argon2id$v=19$test')
         RETURNING id",
    )
    .bind(name)
    .fetch_one(pool)
    .await
    .unwrap()
}

/// A ranking task of K = 3 samples for each of the project's prompts, ranked by one
/// annotator with a tie ([[0], [1, 2]]: two comparisons each).
async fn ranked_samples(pool: &PgPool, setup: &Setup) {
    let prompts = project_prompts(pool, setup).await;
    let annotator = annotator(pool, "ranker").await;
    for (prompt_id, text) in &prompts {
        let word = text.trim_end_matches('.').rsplit(' ').next().unwrap();
        let new: Vec<NewSample> = [word.chars().rev().collect::<String>(), word.to_string(), "?".into()]
            .into_iter()
            .map(|text| NewSample { prompt_id: *prompt_id, text, logprobs: None })
            .collect();
        let samples = tasks::add_samples(pool, setup.project, None, None, &json!({}), &new).await.unwrap();
        tasks::create_ranking_task(pool, setup.project, *prompt_id, &samples).await.unwrap();
    }
    for _ in &prompts {
        let assignment = tasks::next_task(pool, setup.project, annotator, Duration::from_secs(600))
            .await
            .unwrap()
            .expect("a ranking task");
        let input = RankingInput { ranking: Some(vec![vec![0], vec![1, 2]]), ..RankingInput::default() };
        let submission = RankingSubmission::parse(3, input).unwrap();
        labeling::submit::submit_ranking(pool, annotator, assignment.id, &submission, IdempotencyKey::new())
            .await
            .unwrap();
    }
}

/// A two-step SFT run from `base:1` on `worker`, registered as `sft:1`, then the
/// project's samples ranked (see [`ranked_samples`]).
pub(crate) async fn sft_and_rankings(pool: &PgPool, setup: &Setup, worker: &Worker) {
    let sft_stage = json!({"steps": 2, "batch_size": 2, "eval_every": 0, "lr": 0.001});
    let config = json!({ "model_name": "sft", "base": "base:1", "stage": sft_stage });
    enqueue(pool, setup.project, RunKind::Sft, config).await;
    let (_, outcome) = worker.run_next(no_shutdown()).await.unwrap().expect("the SFT run");
    assert!(matches!(outcome, Outcome::Succeeded { .. }), "{outcome:?}");
    ranked_samples(pool, setup).await;
}

#[test]
fn a_dpo_run_registers_a_policy_with_the_sft_version_and_the_rankings_snapshot_as_lineage() {
    with_db(|db| async move {
        let pool = &db.pool;
        let setup = setup(&db, 6).await;
        let worker = worker(pool, &setup, "w-dpo");
        sft_and_rankings(pool, &setup, &worker).await;

        let stage = json!({"steps": 3, "batch_size": 2, "val_fraction": 0.0, "loss": "ipo", "beta": 0.5});
        let run_id = enqueue(
            pool,
            setup.project,
            RunKind::Dpo,
            json!({ "model_name": "dpo", "policy": "sft:1", "stage": stage }),
        )
        .await;
        let (claimed, outcome) = worker.run_next(no_shutdown()).await.unwrap().expect("the DPO run");
        assert_eq!(claimed, run_id);
        let Outcome::Succeeded { version_id: Some(version_id) } = outcome else { panic!("{outcome:?}") };

        let run = runs::get(pool, run_id).await.unwrap();
        assert_eq!((run.status, run.step, run.total_steps), (RunStatus::Succeeded, 3, Some(3)));
        let metrics = runs::metrics(pool, run_id).await.unwrap();
        let loss = metrics.iter().find(|m| m.name == "loss/dpo").expect("loss/dpo reported");
        assert_eq!(loss.steps, [0, 1, 2]);
        assert!(metrics.iter().any(|m| m.name == "train/margin"));

        let version = versions::get(pool, version_id).await.unwrap();
        let sft = versions::resolve(pool, "sft:1").await.unwrap();
        assert_eq!((version.model.as_str(), version.kind), ("dpo", ModelKind::Policy));
        assert_eq!(
            version.parents.iter().map(|p| (p.version_id, p.role.as_str())).collect::<Vec<_>>(),
            [(sft.id, "sft")]
        );
        assert_eq!(version.snapshots.len(), 1, "the rankings snapshot frozen for the run");
        let snapshot = labeling::snapshots::snapshot(pool, version.snapshots[0].id).await.unwrap();
        assert_eq!(snapshot.kind, labeling::snapshots::SnapshotKind::Rankings);
        assert_eq!(version.config["run_config"]["stage"]["loss"], "ipo");
        assert_eq!(version.metrics["steps"], 3);
        assert!(version.metrics["train_accuracy"].is_number(), "{}", version.metrics);
    });
}

/// An A/B comparison of each prompt's reversed word against the word itself, voted
/// for the reversal by one annotator; then those votes frozen as a comparisons snapshot.
pub(crate) async fn votes_snapshot(pool: &PgPool, setup: &Setup) -> i64 {
    let prompts = project_prompts(pool, setup).await;
    let voter = annotator(pool, "voter").await;
    let mut reversal = std::collections::HashMap::new();
    for (prompt_id, text) in &prompts {
        let word = text.trim_end_matches('.').rsplit(' ').next().unwrap();
        let new: Vec<NewSample> =
            [format!("{} ", word.chars().rev().collect::<String>()), format!("{word} ")]
                .into_iter()
                .map(|text| NewSample { prompt_id: *prompt_id, text, logprobs: None })
                .collect();
        let samples = tasks::add_samples(pool, setup.project, None, None, &json!({}), &new).await.unwrap();
        let task =
            tasks::create_random_comparison_task(pool, setup.project, *prompt_id, samples[0], samples[1])
                .await
                .unwrap();
        reversal.insert(task, samples[0]);
    }
    for _ in &prompts {
        let assignment = tasks::next_task(pool, setup.project, voter, Duration::from_secs(600))
            .await
            .unwrap()
            .expect("a comparison task");
        let vote = if assignment.samples[0].id == reversal[&assignment.task_id] { Vote::A } else { Vote::B };
        labeling::submit::submit_vote(
            pool,
            voter,
            assignment.id,
            vote,
            &Comment::parse("").unwrap(),
            None,
            IdempotencyKey::new(),
        )
        .await
        .unwrap();
    }
    let filter = SnapshotFilter::default();
    snapshots::freeze(pool, setup.project, SnapshotKind::Comparisons, &filter, "votes", None)
        .await
        .unwrap()
        .id
}

#[test]
fn an_rm_run_adds_the_ab_votes_as_rankings_of_two_and_centres_on_the_projects_demonstrations() {
    with_db(|db| async move {
        let pool = &db.pool;
        let setup = setup(&db, 6).await;
        let worker = worker(pool, &setup, "w-votes");
        sft_and_rankings(pool, &setup, &worker).await;
        let votes = votes_snapshot(pool, &setup).await;

        // One epoch of 2 per step: 6 rankings alone are 3 steps; with 6 votes, 6.
        let stage = json!({"epochs": 1, "batch_size": 2, "val_fraction": 0.0, "eval_every": 0});
        let mut steps = Vec::new();
        for (name, extra) in [("rm-rankings", json!({})), ("rm-votes", json!({ "votes_snapshot_id": votes }))]
        {
            let mut config = json!({ "model_name": name, "base": "sft:1", "stage": stage });
            config.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            let run_id = enqueue(pool, setup.project, RunKind::Reward, config).await;
            let (_, outcome) = worker.run_next(no_shutdown()).await.unwrap().expect("the RM run");
            let Outcome::Succeeded { version_id: Some(version_id) } = outcome else { panic!("{outcome:?}") };
            steps.push(runs::get(pool, run_id).await.unwrap().total_steps);
            let version = versions::get(pool, version_id).await.unwrap();
            let mut kinds = Vec::new();
            for s in &version.snapshots {
                kinds.push(snapshots::snapshot(pool, s.id).await.unwrap().kind);
            }
            kinds.sort_by_key(|k| format!("{k:?}"));
            let expected: &[SnapshotKind] = if name == "rm-votes" {
                &[SnapshotKind::Comparisons, SnapshotKind::Demonstrations, SnapshotKind::Rankings]
            } else {
                &[SnapshotKind::Demonstrations, SnapshotKind::Rankings]
            };
            assert_eq!(kinds, expected, "{name}: the lineage names every snapshot the run read");
            // The rate was left to the rule of the model's width: the version records it.
            let lr = version.config["resolved"]["stage"]["lr"].as_f64().expect("the resolved rate");
            assert_eq!(lr, spec::Scale::RewardLr.at(128), "{}", version.config);
        }
        assert_eq!(steps, [Some(3), Some(6)], "the votes were trained on as rankings of two");

        // A votes snapshot that does not exist fails the run, naming it.
        let tie_votes =
            json!({ "model_name": "rm-bad", "base": "sft:1", "stage": stage, "votes_snapshot_id": 999_999 });
        let run_id = enqueue(pool, setup.project, RunKind::Reward, tie_votes).await;
        let (_, outcome) = worker.run_next(no_shutdown()).await.unwrap().expect("the bad RM run");
        let Outcome::Failed(message) = outcome else { panic!("{outcome:?}") };
        assert!(message.contains("999999"), "{message}");
        assert_eq!(runs::get(pool, run_id).await.unwrap().status, RunStatus::Failed);
    });
}

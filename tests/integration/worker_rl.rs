//! RLOO and GRPO runs on the worker: from an SFT version and a reward model trained on
//! the project's rankings to a policy version whose lineage is the SFT version, the
//! reward model and the prompts snapshot.

use labeling::snapshots::{self, SnapshotKind};
use registry::runs::{self, RunKind, RunStatus};
use registry::versions::{self, ModelKind};
use serde_json::{json, Value};
use trainer::worker::Outcome;

use crate::db::with_db;
use crate::worker::{enqueue, no_shutdown, setup, worker, Setup};
use crate::worker_dpo::sft_and_rankings;

/// SFT (`sft:1`), rankings of its project's samples and a reward model (`rm:1`) trained
/// on them.
pub(crate) async fn sft_and_reward_model(
    pool: &sqlx::PgPool,
    setup: &Setup,
    worker: &trainer::worker::Worker,
) {
    sft_and_rankings(pool, setup, worker).await;
    let rm_stage = json!({"steps": 2, "batch_size": 2, "val_fraction": 0.0, "eval_every": 0});
    enqueue(
        pool,
        setup.project,
        RunKind::Reward,
        json!({ "model_name": "rm", "base": "sft:1", "stage": rm_stage }),
    )
    .await;
    let (_, outcome) = worker.run_next(no_shutdown()).await.unwrap().expect("the RM run");
    assert!(matches!(outcome, Outcome::Succeeded { .. }), "{outcome:?}");
}

/// [`sft_and_reward_model`], then a `kind` run with `stage` from them, two steps of two prompts: checks
/// the run's progress, that `metric` was reported each step, and the policy version's
/// lineage, snapshot and settings.
fn an_rl_run_registers_a_policy_with_its_lineage(kind: RunKind, stage: Value, metric: &'static str) {
    with_db(move |db| async move {
        let pool = &db.pool;
        let setup = setup(&db, 6).await;
        let worker = worker(pool, &setup, "w-rl");
        sft_and_reward_model(pool, &setup, &worker).await;

        let config = json!({ "model_name": "rl", "policy": "sft:1", "reward": "rm:1", "stage": stage });
        let run_id = enqueue(pool, setup.project, kind, config).await;
        let (claimed, outcome) = worker.run_next(no_shutdown()).await.unwrap().expect("the RL run");
        assert_eq!(claimed, run_id);
        let Outcome::Succeeded { version_id: Some(version_id) } = outcome else { panic!("{outcome:?}") };

        let run = runs::get(pool, run_id).await.unwrap();
        assert_eq!((run.status, run.step, run.total_steps), (RunStatus::Succeeded, 2, Some(2)));
        // A sample of each step is in the run's log, so that a person sees a hack begin.
        let log: Vec<String> =
            runs::logs(pool, run_id, None, 1000).await.unwrap().into_iter().map(|l| l.line).collect();
        for step in 0..2 {
            let prefix = format!("step {step} · reward ");
            let line = log
                .iter()
                .find(|l| l.starts_with(&prefix))
                .unwrap_or_else(|| panic!("no sample of step {step}: {log:?}"));
            assert!(line.contains("Reverse the word") && line.contains(" → "), "{line}");
        }
        let metrics = runs::metrics(pool, run_id).await.unwrap();
        for name in ["objective/reward", "objective/kl", "loss/policy", metric] {
            let series = metrics.iter().find(|m| m.name == name).unwrap_or_else(|| panic!("{name} reported"));
            assert_eq!(series.steps, [0, 1], "{name}");
        }

        let version = versions::get(pool, version_id).await.unwrap();
        let (sft, rm) =
            (versions::resolve(pool, "sft:1").await.unwrap(), versions::resolve(pool, "rm:1").await.unwrap());
        assert_eq!((version.model.as_str(), version.kind), ("rl", ModelKind::Policy));
        let mut parents: Vec<(i64, &str)> =
            version.parents.iter().map(|p| (p.version_id, p.role.as_str())).collect();
        parents.sort();
        assert_eq!(parents, [(sft.id, "sft"), (rm.id, "reward")]);
        assert_eq!(version.snapshots.len(), 1, "the prompts snapshot frozen for the run");
        let snapshot = snapshots::snapshot(pool, version.snapshots[0].id).await.unwrap();
        assert_eq!(snapshot.kind, SnapshotKind::Prompts);
        assert_eq!(version.config["resolved"]["snapshot_id"], snapshot.id);
        assert_eq!(version.config["run_config"]["stage"], stage);
        assert_eq!(version.metrics["steps"], 2);
        assert!(version.metrics["final_reward"].is_number(), "{}", version.metrics);
    });
}

#[test]
fn an_rloo_run_registers_a_policy_with_the_sft_version_the_reward_model_and_the_prompts_as_lineage() {
    let stage = json!({"steps": 2, "batch_size": 2, "k": 2, "minibatch_size": 4, "max_new_tokens": 4,
                       "checkpoint_every": 1, "lr": 0.001});
    an_rl_run_registers_a_policy_with_its_lineage(RunKind::Rloo, stage, "rloo/clipfrac");
}

#[test]
fn a_grpo_run_registers_a_policy_with_the_sft_version_the_reward_model_and_the_prompts_as_lineage() {
    let stage = json!({"steps": 2, "batch_size": 2, "group_size": 2, "minibatch_size": 2, "max_new_tokens": 4,
                       "checkpoint_every": 0, "clip_high": 0.28, "scale_rewards": false});
    an_rl_run_registers_a_policy_with_its_lineage(RunKind::Grpo, stage, "grpo/clipfrac");
}

/// A PPO run on the demo world's prompts evaluates the policy on held-out prompts after
/// every step (the over-optimisation curve: RM score, KL and the oracle's gold score)
/// and, selecting by gold, registers the evaluated policy with the best gold score,
/// naming its step and score in the version.
#[test]
fn a_ppo_run_scores_held_out_prompts_each_step_and_registers_the_policy_with_the_best_gold() {
    with_db(|db| async move {
        let pool = &db.pool;
        let setup = setup(&db, 12).await;
        let worker = worker(pool, &setup, "w-heldout");
        sft_and_reward_model(pool, &setup, &worker).await;
        let stage = json!({"steps": 3, "batch_size": 4, "minibatch_size": 2, "max_new_tokens": 6,
                           "checkpoint_every": 0, "lr": 0.003, "eval_every": 1, "heldout_prompts": 3,
                           "select_by": "gold"});
        let config = json!({ "model_name": "rl", "policy": "sft:1", "reward": "rm:1", "stage": stage });
        let run_id = enqueue(pool, setup.project, RunKind::Ppo, config).await;
        let (_, outcome) = worker.run_next(no_shutdown()).await.unwrap().expect("the PPO run");
        let Outcome::Succeeded { version_id: Some(version_id) } = outcome else { panic!("{outcome:?}") };

        let metrics = runs::metrics(pool, run_id).await.unwrap();
        let series = |name: &str| {
            metrics.iter().find(|m| m.name == name).unwrap_or_else(|| panic!("{name} not logged")).clone()
        };
        let (gold, kl, reward) = (series("heldout/gold"), series("heldout/kl"), series("heldout/reward"));
        for s in [&gold, &kl, &reward] {
            assert_eq!(s.steps, [0, 1, 2], "{} at every step", s.name);
            assert!(s.values.iter().all(|v| v.is_finite()), "{s:?}");
        }
        assert!(
            gold.values.iter().all(|g| (-1.0..=1.0).contains(g)),
            "the oracle scores in [-1, 1]: {gold:?}"
        );
        // The earliest of equal scores: a later policy must do better to replace it.
        let (best, value) =
            gold.steps.iter().zip(&gold.values).fold((-1, f64::NEG_INFINITY), |best, (&s, &v)| {
                if v > best.1 {
                    (s, v)
                } else {
                    best
                }
            });
        let version = versions::get(pool, version_id).await.unwrap();
        let selection = &version.config["resolved"]["selection"];
        assert_eq!(selection["by"], "gold", "{}", version.config);
        assert_eq!(selection["step"], best, "{selection}");
        assert!((selection["value"].as_f64().unwrap() - value).abs() < 1e-9, "{selection} vs {gold:?}");
    });
}

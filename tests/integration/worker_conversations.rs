//! Issue 17's platform loop on conversations: a conversational preference file imported
//! into a project, a reward-model run launched through the API on its rankings with the
//! project's A/B votes and its zero centred on the demonstrations, then a PPO-ptx run
//! launched the same way whose pretraining corpus is a frozen snapshot. Both versions are
//! registered with every snapshot they read in their lineage.

use labeling::domain::{PromptSource, PromptText, Split};
use labeling::formats::Format;
use labeling::imports::{self, ImportFile};
use labeling::prompts::{ImportLimits, NewPrompt};
use labeling::snapshots::{self, SnapshotFilter, SnapshotKind};
use registry::runs::{self, RunStatus};
use registry::versions;
use reqwest::StatusCode;
use serde_json::{json, Value};
use trainer::worker::Outcome;

use crate::db::with_db;
use crate::web_app::{client, spawn_app, TestApp};
use crate::worker::{no_shutdown, setup, worker};
use crate::worker_dpo::{sft_and_rankings, votes_snapshot};

/// Launches a run through `POST /api/runs` as the researcher rita; its id.
async fn launch(app: &TestApp, token: &str, project: i64, kind: &str, config: Value) -> i64 {
    let response = client()
        .post(app.url("/api/runs"))
        .bearer_auth(token)
        .json(&json!({ "project_id": project, "kind": kind, "config": config }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED, "{kind}: {}", response.text().await.unwrap());
    response.json::<Value>().await.unwrap()["id"].as_i64().unwrap()
}

/// The kinds of the snapshots a version lists in its lineage, sorted by name.
async fn snapshot_kinds(pool: &sqlx::PgPool, version: &versions::ModelVersion) -> Vec<SnapshotKind> {
    let mut kinds = Vec::new();
    for s in &version.snapshots {
        kinds.push(snapshots::snapshot(pool, s.id).await.unwrap().kind);
    }
    kinds.sort_by_key(|k| format!("{k:?}"));
    kinds
}

#[test]
fn conversational_pairs_train_a_reward_model_with_votes_then_a_ppo_ptx_policy_through_the_api() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let pool = &app.db.pool;
        let setup = setup(&app.db, 6).await;
        let worker = worker(pool, &setup, "w-conversations");
        sft_and_rankings(pool, &setup, &worker).await;
        let votes = votes_snapshot(pool, &setup).await;

        // Conversational TRL pairs: a system turn and the user's request, then the
        // assistant's reversal preferred over an echo.
        let mut file = String::new();
        for word in ["cat", "lamp", "moon", "tree"] {
            let reversed: String = word.chars().rev().collect();
            let line = json!({
                "prompt": [
                    { "role": "system", "content": "Answer with the word only." },
                    { "role": "user", "content": format!("Please reverse {word}.") },
                ],
                "chosen": [{ "role": "assistant", "content": reversed }],
                "rejected": [{ "role": "assistant", "content": word }],
            });
            file.push_str(&format!("{line}\n"));
        }
        let import = ImportFile { name: "conversations.jsonl", format: Format::Trl, bytes: file.as_bytes() };
        let report =
            imports::import(pool, setup.project, import, None, &ImportLimits::default()).await.unwrap();
        assert_eq!((report.imported.len(), report.errors.len()), (4, 0), "{:?}", report.errors);
        let conversations: i64 =
            sqlx::query_scalar("SELECT count(*) FROM prompts WHERE project_id = $1 AND messages IS NOT NULL")
                .bind(setup.project)
                .fetch_one(pool)
                .await
                .unwrap();
        assert_eq!(conversations, 4);

        // The reward model: the rankings (the annotator's and the imported pairs), the
        // A/B votes as rankings of two, centred on the project's demonstrations.
        let token = app.token_for("rita").await;
        let rm_stage = json!({ "epochs": 1, "batch_size": 2, "val_fraction": 0.0, "eval_every": 0 });
        let rm_run = launch(
            &app,
            &token,
            setup.project,
            "reward",
            json!({ "model_name": "rm-conv", "base": "sft:1", "votes_snapshot_id": votes, "stage": rm_stage }),
        )
        .await;
        let (claimed, outcome) = worker.run_next(no_shutdown()).await.unwrap().expect("the RM run");
        assert_eq!(claimed, rm_run);
        let Outcome::Succeeded { version_id: Some(rm_id) } = outcome else { panic!("{outcome:?}") };
        // 6 annotated rankings + 4 imported pairs + 6 votes, two per step.
        assert_eq!(runs::get(pool, rm_run).await.unwrap().total_steps, Some(8));
        let rm = versions::get(pool, rm_id).await.unwrap();
        assert_eq!(
            snapshot_kinds(pool, &rm).await,
            [SnapshotKind::Comparisons, SnapshotKind::Demonstrations, SnapshotKind::Rankings]
        );
        assert!(rm.metrics["bias"].is_number(), "{}", rm.metrics);

        // PPO-ptx: a corpus of uploaded text frozen as a snapshot (test split, so PPO's
        // train prompts do not include it).
        for text in ["The moon rises over the old tree.", "A lamp glows; the cat sleeps by it."] {
            let document = NewPrompt {
                project_id: setup.project,
                text: PromptText::parse(text).unwrap(),
                split: Split::Test,
                source: PromptSource::parse("corpus").unwrap(),
                created_by: None,
            };
            labeling::prompts::add_prompt(pool, &document).await.unwrap();
        }
        let filter = SnapshotFilter { split: Some(Split::Test), ..SnapshotFilter::default() };
        let corpus = snapshots::freeze(pool, setup.project, SnapshotKind::Prompts, &filter, "corpus", None)
            .await
            .unwrap()
            .id;
        let ppo_stage = json!({ "steps": 2, "batch_size": 2, "minibatch_size": 2, "max_new_tokens": 4,
                                "ptx_coef": 1.0, "ptx_batch_size": 2, "ptx_seq_len": 16 });
        // Without its corpus, PPO-ptx is refused at launch, naming the field.
        let refused = client()
            .post(app.url("/api/runs"))
            .bearer_auth(&token)
            .json(&json!({ "project_id": setup.project, "kind": "ppo",
                           "config": { "model_name": "ptx", "policy": "sft:1", "reward": "rm-conv:1", "stage": ppo_stage } }))
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert!(refused.text().await.unwrap().contains("ptx_snapshot_id"));
        let ppo_run = launch(
            &app,
            &token,
            setup.project,
            "ppo",
            json!({ "model_name": "ptx", "policy": "sft:1", "reward": "rm-conv:1", "ptx_snapshot_id": corpus,
                    "stage": ppo_stage }),
        )
        .await;
        let (claimed, outcome) = worker.run_next(no_shutdown()).await.unwrap().expect("the PPO run");
        assert_eq!(claimed, ppo_run);
        let Outcome::Succeeded { version_id: Some(policy_id) } = outcome else { panic!("{outcome:?}") };
        assert_eq!(runs::get(pool, ppo_run).await.unwrap().status, RunStatus::Succeeded);
        let metrics = runs::metrics(pool, ppo_run).await.unwrap();
        let ptx = metrics.iter().find(|m| m.name == "loss/ptx").expect("loss/ptx reported");
        assert_eq!(ptx.steps, [0, 1]);
        let policy = versions::get(pool, policy_id).await.unwrap();
        assert_eq!(snapshot_kinds(pool, &policy).await, [SnapshotKind::Prompts, SnapshotKind::Prompts]);
        assert!(policy.snapshots.iter().any(|s| s.id == corpus), "the corpus is in the lineage");
        assert_eq!(policy.config["resolved"]["ptx_snapshot_id"], corpus);
        assert!(policy.parents.iter().any(|p| p.version_id == rm.id && p.role == "reward"));
    });
}

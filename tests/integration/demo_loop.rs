//! `plumb demo`: the demo's whole loop on a test database. `--quick` checks in seconds
//! that every stage runs through the platform and that the registry ends up with the
//! loop's lineage; `--short` (the end-to-end test) also checks that the loop learns — the
//! policy beats SFT by the oracle on held-out prompts — and that the comparison renders in
//! a browser with every version. The full demo (`make demo`) runs the same stages at
//! their real size.

use registry::evals;
use registry::runs::{self, RunFilter, RunKind, RunStatus};
use registry::versions::{self, ModelVersion};
use sqlx::PgPool;

use crate::browser::Browser;
use crate::db::with_db;
use crate::helpers::plumb_with_env;
use crate::web_app::spawn_app;

/// The demo's four versions, each checked to descend from the one before as the
/// InstructGPT recipe has it: base → SFT → RM (from SFT) → policy (SFT, against the RM).
async fn lineage(pool: &PgPool) -> [ModelVersion; 4] {
    let mut found = Vec::new();
    for r in ["base:1", "sft:1", "rm:1", "policy:1"] {
        found.push(versions::resolve(pool, r).await.unwrap());
    }
    let parents = |v: &ModelVersion| {
        let mut p: Vec<(i64, String)> = v.parents.iter().map(|p| (p.version_id, p.role.clone())).collect();
        p.sort();
        p
    };
    let [base, sft, rm, policy]: [ModelVersion; 4] = found.try_into().unwrap();
    assert_eq!(parents(&sft), [(base.id, "base".to_owned())]);
    assert_eq!(parents(&rm), [(sft.id, "sft".to_owned())]);
    assert_eq!(parents(&policy), [(sft.id, "sft".to_owned()), (rm.id, "reward".to_owned())]);
    [base, sft, rm, policy]
}

#[test]
fn the_quick_demo_runs_every_stage_and_registers_the_loop() {
    with_db(|db| async move {
        let home = tempfile::tempdir().unwrap();
        let (url, dir) = (db.url(), home.path().to_str().unwrap().to_owned());
        let out = tokio::task::spawn_blocking(move || {
            plumb_with_env(
                &["demo", "--home", &dir, "--quick", "--no-serve", "--device", "cpu", "--port", "0"],
                &[("DATABASE_URL", &url), ("OMP_NUM_THREADS", "1")],
            )
        })
        .await
        .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        for needle in [
            "registered base:1",
            "48 demonstrations",
            "8 rankings",
            "registered sft:1",
            "registered rm:1",
            "registered policy:1",
            "SFT over base: oracle",
            "PPO over SFT: oracle",
            "RM agreement with the oracle",
        ] {
            assert!(stdout.contains(needle), "{needle:?} not in:\n{stdout}");
        }
        lineage(&db.pool).await;
        // A second run finds the demo built and does not build it again.
        let (url, dir) = (db.url(), home.path().to_str().unwrap().to_owned());
        let again = tokio::task::spawn_blocking(move || {
            plumb_with_env(
                &["demo", "--home", &dir, "--quick", "--no-serve", "--device", "cpu", "--port", "0"],
                &[("DATABASE_URL", &url)],
            )
        })
        .await
        .unwrap();
        assert!(again.status.success());
        assert!(String::from_utf8_lossy(&again.stdout).contains("already built"));
        assert_eq!(versions::list_versions(&db.pool, "policy").await.unwrap().len(), 1);
    });
}

#[test]
fn a_demo_that_stopped_half_way_is_not_served_as_if_it_were_built() {
    with_db(|db| async move {
        let new = labeling::projects::NewProject {
            name: labeling::domain::ProjectName::parse("demo").unwrap(),
            guidelines: Default::default(),
            overlap: Default::default(),
            samples_per_task: Default::default(),
            created_by: None,
        };
        labeling::projects::create_project(&db.pool, &new).await.unwrap();
        let home = tempfile::tempdir().unwrap();
        let (url, dir) = (db.url(), home.path().to_str().unwrap().to_owned());
        let out = tokio::task::spawn_blocking(move || {
            plumb_with_env(
                &["demo", "--home", &dir, "--quick", "--no-serve", "--device", "cpu", "--port", "0"],
                &[("DATABASE_URL", &url)],
            )
        })
        .await
        .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(stderr.contains("stopped before it finished") && stderr.contains("start over"), "{stderr}");
    });
}

#[test]
fn the_short_demo_learns_and_its_comparison_renders_in_the_browser() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let home = tempfile::tempdir().unwrap();
        let (url, dir) = (app.db.url(), home.path().to_str().unwrap().to_owned());
        let out = tokio::task::spawn_blocking(move || {
            plumb_with_env(
                &["demo", "--home", &dir, "--short", "--no-serve", "--device", "cpu", "--port", "0"],
                &[("DATABASE_URL", &url), ("OMP_NUM_THREADS", "1")],
            )
        })
        .await
        .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        let pool = &app.db.pool;
        let [base, sft, rm, policy] = lineage(pool).await;

        // The eval run is of held-out prompts only, and by the oracle the policy beats SFT
        // on them: a higher mean score, and more wins than losses prompt by prompt.
        let filter = RunFilter { project_id: None, status: Some(RunStatus::Succeeded), limit: 1 };
        let eval = runs::list_of_kind(pool, &filter, Some(RunKind::Eval)).await.unwrap()[0].id;
        let samples = evals::samples(pool, eval).await.unwrap();
        let splits: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT p.split::text FROM eval_samples e JOIN prompts p ON p.id = e.prompt_id WHERE e.run_id = $1",
        )
        .bind(eval)
        .fetch_all(pool)
        .await
        .unwrap();
        assert_eq!(splits, ["test"]);
        let oracle = |v: i64| {
            let of: Vec<f64> = samples
                .iter()
                .filter(|s| s.version_id == v)
                .filter_map(|s| s.oracle)
                .map(f64::from)
                .collect();
            assert!(of.len() >= 64, "version {v} has {} oracle scores", of.len());
            of.iter().sum::<f64>() / of.len() as f64
        };
        assert!(
            oracle(sft.id) > oracle(base.id) + 0.5,
            "SFT over base: {} vs {}",
            oracle(sft.id),
            oracle(base.id)
        );
        assert!(
            oracle(policy.id) > oracle(sft.id),
            "PPO over SFT: {} vs {}\n{stdout}",
            oracle(policy.id),
            oracle(sft.id)
        );
        let wins = evals::win_rates(&samples, sft.id, |s| s.oracle);
        let (_, w) = wins.iter().find(|(v, _)| *v == policy.id).unwrap();
        let w = w.as_ref().unwrap();
        assert!(w.rate > 0.55, "the policy's win rate over SFT by the oracle: {w:?}\n{stdout}");
        // The rankings mixed the base model's samples in with SFT's, so the reward model
        // tells base's held-out samples from SFT's as the oracle does (from SFT's rankings
        // alone it agreed on 0.55–0.72 of these pairs).
        let mixed: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM task_samples ts JOIN tasks t ON t.id = ts.task_id
             JOIN samples s ON s.id = ts.sample_id WHERE t.kind = 'ranking' AND s.model_version_id = $1",
        )
        .bind(base.id)
        .fetch_one(pool)
        .await
        .unwrap();
        assert!(mixed > 0, "no base sample was ranked");
        let agreement = evals::reward_oracle_agreement_by_versions(&samples);
        let (agree, pairs) = agreement[&(base.id, sft.id)];
        assert!(
            pairs >= 32 && agree as f64 >= 0.85 * pairs as f64,
            "the RM agrees with the oracle on {agree} of {pairs} base–SFT pairs\n{stdout}"
        );
        for needle in [
            "SFT over base: oracle",
            "PPO over SFT: oracle",
            "RM agreement with the oracle",
            "the over-optimisation curve",
            "gold peaks at step",
            "Bradley–Terry rating",
        ] {
            assert!(stdout.contains(needle), "{needle:?} not in:\n{stdout}");
        }

        // The comparison in a browser: every version side by side, then its eval run with
        // the automatic and human results.
        let browser = Browser::start(&app.address).await;
        browser.log_in("rita").await;
        let ids = [&base, &sft, &rm, &policy].map(|v| format!("v={}", v.id)).join("&");
        browser.goto(&format!("/compare?{ids}")).await;
        let versions = browser.find("#compare-versions").await.text().await.unwrap();
        for label in ["base:1", "sft:1", "rm:1", "policy:1"] {
            assert!(versions.contains(label), "{label} not compared: {versions}");
        }
        browser.find("#compare-curves svg").await;
        browser.screenshot("demo-compare").await;
        browser.find("#compare-eval-runs a").await.click().await.unwrap();
        browser.find("#eval-summary").await;
        assert_eq!(browser.path().await, format!("/evals/{eval}"));
        let summary = browser.find("#eval-summary").await.text().await.unwrap();
        for label in ["base:1", "sft:1", "policy:1"] {
            assert!(summary.contains(label), "{label} not in the eval summary: {summary}");
        }
        for section in ["#leaderboard", "#skills-summary", "table.probe", "#eval-prompts"] {
            browser.find(section).await;
        }
        browser.screenshot("demo-eval").await;
        browser.close().await;
    });
}

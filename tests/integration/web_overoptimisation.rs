//! The over-optimisation curve over HTTP: an RL run that logged held-out evaluations
//! (`heldout/kl`, `heldout/reward`, `heldout/gold`) shows its scores against KL on its
//! page and names where gold peaks; an eval run's page draws one line per version an RL
//! run trained, and its JSON export lists each version's evaluations. The metrics are
//! reported as a worker would (`runs::report`); the trainer's part is the lead's.

use ::registry::evals::{self, EvalSample};
use ::registry::runs::{self, RunKind};
use ::registry::versions::ModelKind;
use serde_json::{json, Value};

use crate::db::with_db;
use crate::web_app::{spawn_app, TestApp};
use crate::web_runs::{claim, enqueue, metric, new_project, register};

/// Held-out evaluations (step, KL, RM score, gold): the RM score keeps rising with KL,
/// gold rises until step 30 (KL 3) and then falls.
pub(crate) const EVALS: [(i64, f64, f64, f64); 5] = [
    (10, 0.5, 0.1, 0.1),
    (20, 1.5, 0.4, 0.3),
    (30, 3.0, 0.7, 0.45),
    (40, 5.0, 0.9, 0.2),
    (50, 8.0, 1.2, -0.1),
];

/// A succeeded PPO run of `project` that logged `evals` (the KL scaled by `kl_scale`)
/// besides its training losses, and registered `model:1` with `config`.
async fn rl_run(
    app: &TestApp,
    project: i64,
    model: &str,
    kl_scale: f64,
    with_gold: bool,
    config: Value,
) -> (i64, i64) {
    let pool = &app.db.pool;
    let run = enqueue(app, project, RunKind::Ppo, json!({})).await;
    claim(app).await;
    let mut reported = Vec::new();
    for (step, kl, reward, gold) in EVALS {
        reported.push(metric("loss/policy", step, 1.0 / step as f64));
        reported.push(metric("heldout/kl", step, kl * kl_scale));
        reported.push(metric("heldout/reward", step, reward));
        if with_gold {
            reported.push(metric("heldout/gold", step, gold));
        }
    }
    runs::report(pool, run, "w1", 50, Some(50), &reported).await.unwrap();
    runs::finish(pool, run, "w1").await.unwrap();
    let version = register(app, model, ModelKind::Policy, Some(run), config, json!({})).await;
    (run, version.id)
}

/// What the section with id `overoptimisation` of `html` holds; empty if there is none.
pub(crate) fn section(html: &str) -> &str {
    let Some(start) = html.find("<section id=\"overoptimisation\"") else { return "" };
    let end = html[start..].find("</section>").unwrap();
    &html[start..start + end]
}

/// An SFT version and two PPO versions trained from it (ppo-far with gold, drifting
/// twice as far; ppo-near without gold), evaluated by a succeeded eval run on two test
/// prompts. Returns the eval run, ppo-far's run and the versions (sft, ppo-far, ppo-near).
pub(crate) async fn eval_of_rl_versions(app: &TestApp) -> (i64, i64, [i64; 3]) {
    let pool = &app.db.pool;
    let project = new_project(app, "overoptimisation").await;
    let sft = register(app, "sft", ModelKind::Sft, None, json!({}), json!({})).await.id;
    let chosen = json!({ "resolved": { "selection": { "by": "gold", "step": 30, "value": 0.45 } } });
    let (far_run, far) = rl_run(app, project, "ppo-far", 2.0, true, chosen).await;
    let (_, near) = rl_run(app, project, "ppo-near", 1.0, false, json!({})).await;
    let prompts = crate::web_evals::test_prompts(pool, project, 2).await;
    let config = json!({ "versions": ["sft:1", "ppo-far:1", "ppo-near:1"], "prompts": { "split": "test" } });
    let run = enqueue(app, project, RunKind::Eval, config).await;
    claim(app).await;
    let mut samples = Vec::new();
    for &prompt_id in &prompts {
        for (v, version_id) in [sft, far, near].into_iter().enumerate() {
            samples.push(EvalSample {
                version_id,
                prompt_id,
                text: format!("version {v} answers"),
                tokens: 3,
                eos: true,
                repetition: 0.0,
                reward: Some(v as f32),
                kl: Some(v as f32),
                oracle: None,
            });
        }
    }
    evals::store(pool, run, &samples).await.unwrap();
    runs::finish(pool, run, "w1").await.unwrap();
    (run, far_run, [sft, far, near])
}

#[test]
fn a_run_page_draws_its_scores_against_kl_and_names_where_gold_peaks() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let project = new_project(&app, "overoptimisation").await;
        let chosen = json!({ "resolved": { "selection": { "by": "gold", "step": 30, "value": 0.45 } } });
        let (run, _) = rl_run(&app, project, "ppo", 1.0, true, chosen).await;
        app.log_in("rita").await;
        let html = app.get_html(&format!("/runs/{run}")).await;
        let found = section(&html);
        assert!(found.contains("<h2 id=\"overoptimisation-heading\">Over-optimisation</h2>"), "{html}");
        assert!(
            found.contains(
                "Gold peaks at step 30 (KL 3.00 nats): 0.450; last eval: step 50, KL 8.00 nats, gold -0.100."
            ),
            "{found}"
        );
        assert!(found.contains(
            "The registered version is the policy evaluated at step 30, chosen by its held-out gold score (0.450)."
        ));
        // Two charts, RM score and gold, each with a point per evaluation, on one KL axis.
        assert_eq!(found.matches("<figure class=\"chart xy-chart\"").count(), 2);
        assert_eq!(found.matches("<circle ").count(), 10, "{found}");
        assert_eq!(found.matches("KL to the reference (nats)</text>").count(), 2);
        assert!(found.contains("<title>step 30: KL 3.00 nats, gold 0.450</title>"));
        assert!(found.contains("<title>step 50: KL 8.00 nats, RM score 1.20</title>"));
        // KL 0.5..8 over x 62..306 (6 px inside the axes): KL 3 at 62 + 2.5/7.5 × 244; gold's
        // peak at the top (y 14), its last point at the bottom (y 140), the RM score's last
        // at the top.
        assert!(found.contains("cx=\"143.3\" cy=\"14.0\""), "{found}");
        assert!(found.contains("cx=\"306.0\" cy=\"140.0\""));
        assert!(found.contains("cx=\"306.0\" cy=\"14.0\""));
        let gold = &found[found.find("data-chart=\"Held-out gold score\"").unwrap()..];
        assert!(gold.contains("points=\"62.0,94.2 94.5,48.4 143.3,14.0 208.4,71.3 306.0,140.0\""), "{gold}");

        // A run with no held-out evaluations has no such section.
        let plain = enqueue(&app, project, RunKind::Sft, json!({})).await;
        claim(&app).await;
        runs::report(
            &app.db.pool,
            plain,
            "w1",
            1,
            Some(1),
            &[metric("loss/sft", 1, 2.0), metric("heldout/kl", 1, 0.5)],
        )
        .await
        .unwrap();
        let html = app.get_html(&format!("/runs/{plain}")).await;
        assert!(!html.contains("Over-optimisation") && section(&html).is_empty(), "{html}");
    });
}

#[test]
fn an_eval_page_draws_a_line_per_trained_version_and_exports_their_evaluations() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let (run, _, [sft, far, near]) = eval_of_rl_versions(&app).await;
        app.log_in("rita").await;
        let html = app.get_html(&format!("/evals/{run}")).await;
        let found = section(&html);
        // The RM score chart has both PPO versions, the gold chart only the one with gold;
        // the SFT version, which no run trained, has no line.
        assert_eq!(found.matches("<g class=\"xy-line\" data-label=\"ppo-far:1\">").count(), 2, "{found}");
        assert_eq!(found.matches("<g class=\"xy-line\" data-label=\"ppo-near:1\">").count(), 1);
        assert!(!found.contains("sft:1"));
        assert_eq!(found.matches("<circle ").count(), 15);
        assert!(found.contains("<li><span class=\"swatch\""), "a legend names the versions: {found}");
        assert!(found.contains(
            "<strong>ppo-far:1</strong>: Gold peaks at step 30 (KL 6.00 nats): 0.450; last eval: step 50, KL 16.0 nats, gold -0.100."
        ));
        assert!(found.contains(
            "<strong>ppo-near:1</strong>: The RM score peaks at step 50 (KL 8.00 nats): 1.20; last eval: step 50, KL 8.00 nats, RM score 1.20."
        ));
        assert!(found.contains("<title>ppo-far:1, step 30: KL 6.00 nats, gold 0.450</title>"));
        // Both versions on one KL axis, 0.5..16 over x 62..306: ppo-near stops at KL 8.
        assert!(
            found.contains("points=\"62.0,140.0 77.7,105.6 101.4,71.3 132.8,48.4 180.1,14.0\""),
            "{found}"
        );
        assert!(found.contains("points=\"69.9,140.0 101.4,105.6 148.6,71.3 211.5,48.4 306.0,14.0\""));

        let report: Value = app.get(&format!("/api/evals/{run}")).await.json().await.unwrap();
        let curve = |id: i64| {
            let versions = report["versions"].as_array().unwrap();
            versions.iter().find(|v| v["version_id"] == id).unwrap()["overoptimisation"].clone()
        };
        assert_eq!(curve(sft), json!([]));
        assert_eq!(curve(far)[2], json!({ "step": 30, "kl": 6.0, "reward": 0.7, "gold": 0.45 }));
        assert_eq!(curve(near)[4], json!({ "step": 50, "kl": 8.0, "reward": 1.2, "gold": null }));
        assert_eq!(curve(near).as_array().unwrap().len(), 5);
        // The API document describes exactly these fields.
        let doc: Value = app.get("/api/openapi.json").await.json().await.unwrap();
        let versions = &doc["components"]["schemas"]["EvalReport"]["properties"]["versions"]["items"];
        let point = &versions["properties"]["overoptimisation"]["items"];
        let mut documented: Vec<&str> =
            point["required"].as_array().unwrap().iter().map(|f| f.as_str().unwrap()).collect();
        documented.sort_unstable();
        let first = curve(far)[0].clone();
        let mut exported: Vec<&str> = first.as_object().unwrap().keys().map(String::as_str).collect();
        exported.sort_unstable();
        assert_eq!(documented, exported);
        assert!(versions["required"].as_array().unwrap().contains(&json!("overoptimisation")));
    });
}

//! The over-optimisation curve in a real browser: a PPO run's page and the page of an
//! eval run of two PPO versions draw their held-out scores against KL as visible SVG
//! points, at desktop and at phone width without pushing the page sideways. Shots:
//! target/screenshots/run-over-optimisation.png, eval-over-optimisation.png and their
//! `-phone` versions, and run-over-optimisation-real.png of a PPO run the worker trained.

use serde_json::{json, Value};

use registry::runs::RunKind;
use trainer::worker::Outcome;

use crate::browser::Browser;
use crate::db::with_db;
use crate::web_app::spawn_app;
use crate::web_overoptimisation::eval_of_rl_versions;
use crate::worker::{enqueue, no_shutdown, setup, worker};
use crate::worker_rl::sft_and_reward_model;

/// The drawn size of the section's charts and marks: per chart [width, height, marks,
/// the smallest mark's width, whether every mark lies inside its chart], and whether
/// the section fits the window's width.
async fn drawn(browser: &Browser) -> Value {
    browser
        .client
        .execute(
            "const section = document.getElementById('overoptimisation');
             section.scrollIntoView();
             const charts = [...section.querySelectorAll('figure.xy-chart svg')].map(svg => {
               const box = svg.getBoundingClientRect();
               const marks = [...svg.querySelectorAll('circle')].map(c => c.getBoundingClientRect());
               return [box.width, box.height, marks.length, Math.min(...marks.map(m => m.width)),
                       marks.every(m => m.left >= box.left && m.right <= box.right + 0.5
                                        && m.top >= box.top && m.bottom <= box.bottom + 0.5)];
             });
             return { charts, fits: section.getBoundingClientRect().right <= window.innerWidth };",
            vec![],
        )
        .await
        .unwrap()
}

/// Checks that `charts` charts of `marks` marks each (in order) are drawn, with visible marks.
fn check(page: &str, got: &Value, marks: &[u64]) {
    let charts = got["charts"].as_array().unwrap();
    assert_eq!(charts.len(), marks.len(), "the {page} page's charts: {got}");
    for (chart, &n) in charts.iter().zip(marks) {
        assert!(chart[0].as_f64().unwrap() > 200.0 && chart[1].as_f64().unwrap() > 100.0, "{page}: {got}");
        assert_eq!(chart[2], json!(n), "{page}: {got}");
        assert!(chart[3].as_f64().unwrap() >= 4.0, "{page}: marks too small to see: {got}");
        assert_eq!(chart[4], json!(true), "{page}: a mark outside its chart: {got}");
    }
    assert_eq!(got["fits"], json!(true), "{page}: the section is wider than the window: {got}");
}

#[test]
fn the_over_optimisation_curves_are_drawn_on_the_run_and_eval_pages() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let (eval, run, _) = eval_of_rl_versions(&app).await;
        let browser = Browser::start(&app.address).await;
        browser.log_in("rita").await;
        for (size, width, height) in [("", 1280, 900), ("-phone", 390, 844)] {
            browser.client.set_window_size(width, height).await.expect("resizing the window");

            browser.goto(&format!("/runs/{run}")).await;
            browser.find("#overoptimisation figure.xy-chart circle").await;
            check(&format!("run{size}"), &drawn(&browser).await, &[5, 5]);
            let text = browser.find("#overoptimisation-peaks").await.text().await.unwrap();
            assert!(text.contains("Gold peaks at step 30 (KL 6.00 nats)"), "{text}");
            browser.screenshot(&format!("run-over-optimisation{size}")).await;

            browser.goto(&format!("/evals/{eval}")).await;
            browser.find("#overoptimisation figure.xy-chart circle").await;
            check(&format!("eval{size}"), &drawn(&browser).await, &[10, 5]);
            browser.screenshot(&format!("eval-over-optimisation{size}")).await;
        }
        browser.close().await;
    });
}

/// A PPO run that the worker trains (a tiny one, on the demo world's phrasing, evaluated
/// on held-out prompts after every step) shows its own curve: a point per evaluation.
#[test]
fn a_ppo_run_the_worker_trained_draws_its_own_curve() {
    with_db(|db| async move {
        let setup = setup(&db, 12).await;
        let pool = db.pool.clone();
        let worker = worker(&pool, &setup, "w-curve");
        sft_and_reward_model(&pool, &setup, &worker).await;
        let stage = json!({"steps": 6, "batch_size": 4, "minibatch_size": 2, "max_new_tokens": 6, "lr": 0.003,
                           "checkpoint_every": 0, "eval_every": 1, "heldout_prompts": 3, "select_by": "gold"});
        let config = json!({ "model_name": "rl", "policy": "sft:1", "reward": "rm:1", "stage": stage });
        let run = enqueue(&pool, setup.project, RunKind::Ppo, config).await;
        let (_, outcome) = worker.run_next(no_shutdown()).await.unwrap().expect("the PPO run");
        assert!(matches!(outcome, Outcome::Succeeded { .. }), "{outcome:?}");

        let app = spawn_app(db).await;
        let browser = Browser::start(&app.address).await;
        browser.log_in("rita").await;
        browser.goto(&format!("/runs/{run}")).await;
        browser.find("#overoptimisation figure.xy-chart circle").await;
        check("the worker's run", &drawn(&browser).await, &[6, 6]);
        let text = browser.find("#overoptimisation-peaks").await.text().await.unwrap();
        assert!(
            text.contains("Gold peaks at step") && text.contains("chosen by its held-out gold score"),
            "{text}"
        );
        browser.screenshot("run-over-optimisation-real").await;
        browser.close().await;
    });
}

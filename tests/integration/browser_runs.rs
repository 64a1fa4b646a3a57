//! A researcher in a real browser clones a finished run: the run list and the run page
//! show it, "Clone this run" opens the launch form filled with its kind, config and a
//! "(copy)" name, and launching that form queues a run with the same config. The run list
//! fits a phone's width. Shots go to target/screenshots/.

use std::time::Duration;

use registry::runs::{self, Metric, NewRun, RunKind, RunName, RunNotes};
use registry::versions::ModelKind;
use serde_json::json;

use crate::browser::Browser;
use crate::db::with_db;
use crate::web_app::{run_defaults, spawn_app};
use crate::web_runs::{new_project, register, register_base_of_width};

/// The value of the form control `css`.
async fn value_of(browser: &Browser, css: &str) -> String {
    browser.find(css).await.prop("value").await.unwrap().unwrap_or_default()
}

#[test]
fn a_researcher_clones_a_finished_run_and_launches_the_copy() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let pool = &app.db.pool;
        let project = new_project(&app, "clones").await;
        register(&app, "base", ModelKind::Base, None, json!({}), json!({})).await;
        // A finished SFT run with a curve, launched with every stage setting as the form
        // sends them.
        let mut stage = run_defaults().of("sft").unwrap().clone();
        stage["lr"] = json!(3e-5);
        stage["steps"] = json!(7);
        let config = json!({"model_name": "sft-b", "base": "base:1", "stage": stage});
        let new = NewRun { project_id: Some(project), kind: RunKind::Sft, config, created_by: None };
        let name = RunName::parse("lower lr").unwrap();
        let notes = RunNotes::parse("Does a lower lr keep val/loss down?").unwrap();
        let original = runs::enqueue_named(pool, &new, &name, &notes).await.unwrap();
        runs::claim(pool, "w1", Duration::from_secs(60)).await.unwrap();
        let curve: Vec<Metric> =
            (1..=7).map(|step| Metric { name: "loss/sft".into(), step, value: 3.0 / step as f64 }).collect();
        runs::report(pool, original, "w1", 7, Some(7), &curve).await.unwrap();
        runs::finish(pool, original, "w1").await.unwrap();

        let browser = Browser::start(&app.address).await;
        browser.log_in("rita").await;
        browser.goto("/runs").await;
        let row = browser.find(&format!("tr[data-run-id='{original}']")).await.text().await.unwrap();
        assert!(row.contains("lower lr") && row.contains("from base:1") && row.contains("loss/sft"), "{row}");
        browser.screenshot("runs-list").await;

        browser.find(&format!("tr[data-run-id='{original}'] a")).await.click().await.unwrap();
        browser.find("#run-clone").await;
        assert_eq!(browser.find("main h1").await.text().await.unwrap(), "lower lr");
        browser.screenshot("run-page-finished").await;

        browser.find("#run-clone").await.click().await.unwrap();
        browser.find("#launch-form").await;
        assert_eq!(browser.path().await, "/runs/new");
        assert_eq!(value_of(&browser, "#launch-form input[name='kind']").await, "sft");
        assert_eq!(value_of(&browser, "#f-name").await, "lower lr (copy)");
        assert_eq!(value_of(&browser, "#f-base").await, "base:1");
        assert_eq!(value_of(&browser, "[id='f-stage.steps']").await, "7");
        let lr = value_of(&browser, "[id='f-stage.lr']").await;
        assert_eq!(lr.parse::<f64>().unwrap(), 3e-5, "the run's lr, not the default");
        browser.screenshot("run-form-cloned").await;

        browser.find("#launch-submit").await.click().await.unwrap();
        let notice = browser.find("#run-notice").await.text().await.unwrap();
        assert!(notice.starts_with("Launched lower lr (copy)"), "{notice}");
        browser.screenshot("run-page-launched").await;
        let listed = runs::list(pool, &Default::default()).await.unwrap();
        assert_eq!(listed.len(), 2);
        let (copy, first) = (&listed[0], &listed[1]);
        assert_eq!(browser.path().await, format!("/runs/{}", copy.id));
        assert_eq!(
            (copy.kind, copy.project_id, copy.name.as_str()),
            (RunKind::Sft, Some(project), "lower lr (copy)")
        );
        assert_eq!(copy.config, first.config);

        // At a phone's width the run list is one card per run, with no sideways scrolling.
        browser.client.set_window_size(390, 844).await.unwrap();
        browser.goto("/runs").await;
        browser.find("#run-queue").await;
        let widths = browser
            .client
            .execute("return [document.documentElement.scrollWidth, window.innerWidth]", vec![])
            .await
            .unwrap();
        let [scroll, inner] = [0, 1].map(|i| widths[i].as_f64().unwrap());
        assert!(scroll <= inner, "the run list at {inner} px scrolls sideways: it is {scroll} px wide");
        browser.screenshot("phone-runs-list").await;
        browser.close().await;
    });
}

#[test]
fn the_launch_form_shows_the_learning_rate_the_chosen_base_will_train_at() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let project = new_project(&app, "widths").await;
        register_base_of_width(&app, "narrow", 128).await;

        let browser = Browser::start(&app.address).await;
        browser.log_in("rita").await;
        browser.goto(&format!("/runs/new?kind=sft&project={project}")).await;
        let lr = "[data-default='stage.lr']";
        assert_eq!(browser.find(lr).await.text().await.unwrap(), "Default: from the model's width.");
        browser.find("#f-base").await.send_keys("narrow:1").await.unwrap();
        browser.find("#f-name").await.click().await.unwrap(); // leaves the base field
        let expected = format!(
            "Default: {} for narrow:1 (n_embd 128), from the model's width.",
            spec::Scale::SftLr.at(128)
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let shown = browser.find(lr).await.text().await.unwrap();
            if shown == expected {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the lr's default says {shown:?}, not {expected:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // A setting that does not follow the width keeps its one default.
        let steps = browser.find("[data-default='stage.steps']").await.text().await.unwrap();
        assert!(!steps.contains("narrow"), "{steps}");
        browser.screenshot("run-form-resolved-defaults").await;
        browser.close().await;
    });
}

/// The document's width against the window's, at the current size.
async fn scroll_and_inner(browser: &Browser) -> (f64, f64) {
    let widths = browser
        .client
        .execute("return [document.documentElement.scrollWidth, window.innerWidth]", vec![])
        .await
        .unwrap();
    (widths[0].as_f64().unwrap(), widths[1].as_f64().unwrap())
}

/// At a phone's width a gang run's page (its ranks table) and the launch form (with a
/// world size) fit without sideways scrolling.
#[test]
fn at_phone_width_a_gang_runs_ranks_and_the_launch_form_fit() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        app.log_in("rita").await;
        let project = new_project(&app, "gangs").await;
        let config = json!({ "model_name": "s", "base": "b:1", "world_size": 2 });
        let run = crate::web_runs::enqueue(&app, project, RunKind::Sft, config).await;
        let lease = Duration::from_secs(60);
        assert!(runs::claim_or_wait(&app.db.pool, "gpu-b", lease, lease).await.unwrap().is_none());
        runs::claim_or_wait(&app.db.pool, "gpu-a", lease, lease).await.unwrap().expect("the gang's claim");
        ::registry::gangs::publish_rendezvous(&app.db.pool, run, "gpu-a", "10.1.2.3:29500").await.unwrap();

        let browser = Browser::start(&app.address).await;
        browser.log_in("rita").await;
        browser.client.set_window_size(390, 844).await.unwrap();
        browser.goto(&format!("/runs/{run}")).await;
        let ranks = browser.find("#run-ranks").await;
        browser
            .client
            .execute("document.getElementById('run-ranks').scrollIntoView()", vec![])
            .await
            .unwrap();
        let (scroll, inner) = scroll_and_inner(&browser).await;
        assert!(scroll <= inner, "the gang's run page at {inner} px scrolls sideways: {scroll} px wide");
        assert!(ranks.text().await.unwrap().contains("gpu-a"));
        browser.screenshot("phone-run-ranks").await;

        browser.goto(&format!("/runs/new?kind=sft&project={project}")).await;
        browser.find("#f-base").await;
        let (scroll, inner) = scroll_and_inner(&browser).await;
        assert!(scroll <= inner, "the launch form at {inner} px scrolls sideways: {scroll} px wide");
        browser.screenshot("phone-run-form").await;
        browser.close().await;
    });
}

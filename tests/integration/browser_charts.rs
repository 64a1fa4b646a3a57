//! The researchers' charts in a real browser: a run's metric with a single point is drawn
//! as a point by uPlot, a stage's training loss and val/loss share one chart, hovering
//! shows values, a running run's chart grows as its worker reports, the compare page
//! overlays two versions' curves, and the eval page shows its paged prompt table.
//! Screenshots: target/screenshots/charts-run.png, charts-compare.png, charts-eval.png.

use ::registry::runs::{self, RunKind};
use ::registry::versions::ModelKind;
use serde_json::json;

use crate::browser::Browser;
use crate::db::with_db;
use crate::web_app::spawn_app;
use crate::web_evals::eval_world;
use crate::web_runs::{claim, enqueue, metric, new_project, register};

/// Scrolls the element `id` to the top of the window, for a screenshot of it.
async fn scroll_to(browser: &Browser, id: &str) {
    let script = format!("document.getElementById('{id}').scrollIntoView()");
    browser.client.execute(&script, vec![]).await.unwrap();
}

#[test]
fn uplot_draws_a_single_point_overlays_train_and_val_and_compares_two_runs() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let project = new_project(&app, "charts").await;
        let pool = &app.db.pool;
        let mut made = Vec::new();
        for (i, end) in [1.2, 0.9].into_iter().enumerate() {
            let run = enqueue(&app, project, RunKind::Sft, json!({})).await;
            claim(&app).await;
            let mut reported: Vec<_> =
                (1..=4).map(|step| metric("loss/sft", step, 2.0 - (2.0 - end) * step as f64 / 4.0)).collect();
            // SFT evaluates once at its end: val/perplexity has exactly one point.
            reported.extend([
                metric("val/loss", 4, end + 0.1),
                metric("val/perplexity", 4, (end + 0.1f64).exp()),
            ]);
            runs::report(pool, run, "w1", 4, Some(4), &reported).await.unwrap();
            runs::finish(pool, run, "w1").await.unwrap();
            let config = json!({"stage": {"lr": 1e-4 * (i + 1) as f64}});
            made.push((
                run,
                register(&app, "sft-c", ModelKind::Sft, Some(run), config, json!({"val/loss": end})).await,
            ));
        }
        let browser = Browser::start(&app.address).await;
        browser.log_in("rita").await;

        browser.goto(&format!("/runs/{}", made[0].0)).await;
        browser.find("figure.uplot-chart[data-metric='val/perplexity'][data-points='1'] canvas").await;
        let overlaid = browser.find("figure.uplot-chart[data-metric='loss'][data-points='5']").await;
        let legend = overlaid.text().await.unwrap();
        assert!(
            legend.contains("loss/sft") && legend.contains("val/loss"),
            "one chart, both series: {legend}"
        );
        // The server's SVG charts stay in the page for readers without script, hidden.
        let hidden = browser
            .client
            .execute(
                "return document.querySelector(\"#run-charts svg\").closest(\"[hidden]\") !== null",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(hidden, json!(true));
        // Smoothing adds a smoothed curve over the faint raw one; the single point stays one point.
        browser
            .client
            .execute(
                "var r = document.getElementById('chart-smoothing'); r.value = '0.6';
                 r.dispatchEvent(new Event('input'));",
                vec![],
            )
            .await
            .unwrap();
        browser.find("figure.uplot-chart[data-metric='val/perplexity'][data-points='1']").await;
        browser.find("#chart-log").await.click().await.unwrap();
        browser.find("figure.uplot-chart[data-metric='loss'][data-points='5'] canvas").await;
        scroll_to(&browser, "run-charts").await;
        browser.screenshot("charts-run").await;

        // Hovering a step shows its values in the legend.
        browser
            .client
            .execute(
                "var over = document.querySelector(\"figure[data-metric='loss'] .u-over\");
                 var box = over.getBoundingClientRect();
                 over.dispatchEvent(new MouseEvent('mouseenter', {clientX: box.left + 1, clientY: box.top + 5}));
                 over.dispatchEvent(new MouseEvent('mousemove', {clientX: box.left + 1, clientY: box.top + 5}));",
                vec![],
            )
            .await
            .unwrap();
        let step = browser.find("figure[data-metric='loss'] .u-legend .u-series:first-child .u-value").await;
        assert_eq!(step.text().await.unwrap(), "1", "the cursor is on the first step");

        // A running run's page draws what its worker reports next, without a reload.
        let running = enqueue(&app, project, RunKind::Sft, json!({})).await;
        claim(&app).await;
        runs::report(pool, running, "w1", 1, Some(4), &[metric("loss/sft", 1, 2.0)]).await.unwrap();
        browser.goto(&format!("/runs/{running}")).await;
        browser.find("figure.uplot-chart[data-metric='loss/sft'][data-points='1']").await;
        runs::report(pool, running, "w1", 2, Some(4), &[metric("loss/sft", 2, 1.5)]).await.unwrap();
        browser.find("figure.uplot-chart[data-metric='loss/sft'][data-points='2']").await;
        runs::finish(pool, running, "w1").await.unwrap();

        let (a, b) = (&made[0].1, &made[1].1);
        browser.goto(&format!("/compare?v=sft-c:{}&v=sft-c:{}", a.version, b.version)).await;
        let chart =
            browser.find("#compare-curves figure.uplot-chart[data-metric='loss/sft'][data-points='8']").await;
        let legend = chart.text().await.unwrap();
        assert!(legend.contains("sft-c:1") && legend.contains("sft-c:2"), "a series per version: {legend}");
        browser
            .find("#compare-curves figure.uplot-chart[data-metric='val/perplexity'][data-points='2'] canvas")
            .await;
        scroll_to(&browser, "compare-curves").await;
        browser.screenshot("charts-compare").await;

        let w = eval_world(&app).await;
        browser.goto(&format!("/evals/{}?per_page=4", w.run)).await;
        browser.find("#eval-prompts").await;
        browser.find("#ab-batch-form[data-confirm]").await;
        scroll_to(&browser, "eval-prompts-heading").await;
        browser.screenshot("charts-eval").await;
        browser.close().await;
    });
}

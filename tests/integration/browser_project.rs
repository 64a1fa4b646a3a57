//! A researcher's project pages in a real browser: the prompts page (its forms above the
//! list, sorted and paged by number), the data page's annotator statistics with an
//! outlier, a policy version's lineage laid out by dagre with an edge from each of its
//! two parents, and a model's page with its versions' lineage. Each page is shot into
//! target/screenshots/.

use serde_json::json;

use crate::browser::Browser;
use crate::db::with_db;
use crate::web_app::spawn_app;
use crate::web_data::annotated_project;
use crate::web_models::lineage;

#[test]
fn a_researcher_sees_paged_prompts_annotator_statistics_and_a_two_parent_lineage() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let (project, _) = annotated_project(&app).await;
        sqlx::query(
            "INSERT INTO prompts (project_id, text, split)
             SELECT $1, 'Write a limerick about the number ' || n, 'train' FROM generate_series(1, 130) n",
        )
        .bind(project)
        .execute(&app.db.pool)
        .await
        .unwrap();
        let l = lineage(&app).await;
        let browser = Browser::start(&app.address).await;
        browser.log_in("rita").await;

        browser.goto(&format!("/projects/{project}/prompts?sort=newest&page=2")).await;
        let current = browser.find("#prompt-pages a[aria-current=page]").await.text().await.unwrap();
        assert_eq!(current, "2");
        let tops = browser
            .client
            .execute(
                "return ['#upload-file', '#request-demonstrations', '#prompt-table']
                   .map(css => document.querySelector(css).getBoundingClientRect().top)",
                vec![],
            )
            .await
            .unwrap();
        let tops: Vec<f64> = (0..3).map(|i| tops[i].as_f64().unwrap()).collect();
        assert!(tops[0] < tops[2] && tops[1] < tops[2], "the forms come above the list: {tops:?}");
        browser.screenshot("project-prompts").await;
        scroll_to(&browser, "#prompt-list").await;
        browser.screenshot("project-prompts-list").await;

        browser.goto(&format!("/projects/{project}/data")).await;
        let cal = browser.find("#annotator-table tr[data-annotator=cal]").await.text().await.unwrap();
        assert!(cal.contains("too fast on rankings") && cal.contains("low agreement"), "{cal}");
        scroll_to(&browser, "#annotators").await;
        browser.screenshot("project-data-annotators").await;

        browser.goto("/models/tiny-ppo/versions/1").await;
        browser.find("#lineage-graph svg [data-node]").await;
        let drawn = browser
            .client
            .execute(
                "const args = [...arguments];
                 const svg = document.querySelector('#lineage-graph svg');
                 const x = id => svg.querySelector(`[data-node='${id}'] rect`).getBoundingClientRect().left;
                 return {
                   nodes: svg.querySelectorAll('[data-node]').length,
                   edges: [...svg.querySelectorAll('[data-edge]')].map(e => e.dataset.edge).sort(),
                   current: svg.querySelector('[aria-current=page]').dataset.node,
                   href: svg.querySelector(`[data-node='${args[0]}']`).getAttribute('href'),
                   xs: args.map(x),
                   smallest_text: Math.min(...[...svg.querySelectorAll('text')]
                     .map(t => parseFloat(getComputedStyle(t).fontSize))),
                 };",
                vec![json!(l.base.id), json!(l.sft.id), json!(l.rm.id), json!(l.ppo.id)],
            )
            .await
            .unwrap();
        assert_eq!(drawn["nodes"], 4, "{drawn}");
        let mut edges = [
            format!("{}-{}", l.base.id, l.sft.id),
            format!("{}-{}", l.sft.id, l.rm.id),
            format!("{}-{}", l.sft.id, l.ppo.id),
            format!("{}-{}", l.rm.id, l.ppo.id),
        ];
        edges.sort();
        assert_eq!(drawn["edges"], json!(edges), "two edges into the policy, one from each parent");
        assert_eq!(drawn["current"], l.ppo.id.to_string());
        assert_eq!(drawn["href"], "/models/tiny/versions/1");
        let xs: Vec<f64> = (0..4).map(|i| drawn["xs"][i].as_f64().unwrap()).collect();
        assert!(xs.windows(2).all(|w| w[0] < w[1]), "layered base, sft, rm, policy left to right: {xs:?}");
        assert!(drawn["smallest_text"].as_f64().unwrap() >= 11.0, "{drawn}");
        scroll_to(&browser, "#lineage").await;
        browser.screenshot("version-two-parent-lineage").await;

        browser.goto("/models/tiny-sft").await;
        browser.find("#lineage-graph svg [data-node]").await;
        let script = "return document.querySelectorAll('#lineage-graph svg [data-node]').length";
        assert_eq!(browser.client.execute(script, vec![]).await.unwrap(), json!(4), "base, sft, rm, policy");
        scroll_to(&browser, "#lineage").await;
        browser.screenshot("model-lineage").await;
        browser.close().await;
    });
}

/// Scrolls the page so that `css` is at the top of the window (for the screenshot).
async fn scroll_to(browser: &Browser, css: &str) {
    let script = "document.querySelector(arguments[0]).scrollIntoView()";
    browser.client.execute(script, vec![json!(css)]).await.expect("scrolling");
}

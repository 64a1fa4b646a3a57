//! Annotators on a phone (issue 15): at 390 px wide the tasks, ranking, history, home and
//! password pages do not scroll sideways, the header wraps with "Log out" in reach, and the history
//! tables fit. Each page is also shot at desktop width, into target/screenshots/.

use crate::browser::Browser;
use crate::browser_annotate::ranking_tasks;
use crate::db::with_db;
use crate::web_app::spawn_app;

/// Long unbroken words are what push a narrow page sideways.
const SAMPLES: [&str; 3] = [
    "https://example.com/a/very/long/address/that/does/not/break/anywhere/on/its/own",
    "A plain answer.",
    "Supercalifragilisticexpialidociouslyantidisestablishmentarianistically long",
];

/// Resizes the window so that the page is `width` CSS pixels wide.
async fn viewport(browser: &Browser, width: u32, height: u32) {
    browser.client.set_window_size(width, height).await.expect("resizing the window");
    let inner = browser.client.execute("return window.innerWidth", vec![]).await.unwrap();
    assert_eq!(inner, serde_json::json!(width), "the page is not {width} px wide");
}

/// Shoots the page as `<size>-<page>` and checks that it does not scroll sideways and
/// that "Log out" lies within the viewport.
async fn check(browser: &Browser, size: &str, page: &str) {
    browser.screenshot(&format!("{size}-{page}")).await;
    let widths = browser
        .client
        .execute(
            "const out = document.querySelector('header form button').getBoundingClientRect();
             return [document.documentElement.scrollWidth, window.innerWidth, out.left, out.right];",
            vec![],
        )
        .await
        .unwrap();
    let [scroll, inner, left, right] = [0, 1, 2, 3].map(|i| widths[i].as_f64().unwrap());
    assert!(scroll <= inner, "the {page} page at {inner} px scrolls sideways: it is {scroll} px wide");
    assert!(left >= 0.0 && right <= inner, "Log out at {left}..{right} px is out of the {inner} px viewport");
    assert!(browser.find("header form button").await.is_displayed().await.unwrap());
}

#[test]
fn at_phone_width_the_tasks_ranking_and_history_pages_fit_without_sideways_scrolling() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let project = ranking_tasks(&app, &["Give me a link", "Give me a long word"], &SAMPLES).await;
        let browser = Browser::start(&app.address).await;
        browser.log_in("ann").await;

        for (size, width, height) in [("desktop", 1280, 1000), ("phone", 390, 844)] {
            viewport(&browser, width, height).await;
            browser.goto("/tasks").await;
            check(&browser, size, "tasks").await;

            browser.take_next_task(project).await;
            browser.find("#ranking-form.enhanced").await;
            check(&browser, size, "ranking").await;
            for (position, rank) in ["3", "1", "2"].into_iter().enumerate() {
                browser.find(&format!("#sample-{position}")).await.send_keys(rank).await.unwrap();
            }
            browser.mark_page().await;
            browser.find("#submit").await.click().await.unwrap();
            browser.next_page().await;

            browser.goto("/history").await;
            browser.find("#work tbody tr").await;
            check(&browser, size, "history").await;
            let fits = browser
                .client
                .execute(
                    "return ['#work', '#agreement'].every(t => {
                       const table = document.querySelector(t);
                       return !table || table.getBoundingClientRect().right <= window.innerWidth;
                     })",
                    vec![],
                )
                .await
                .unwrap();
            assert_eq!(fits, serde_json::json!(true), "a history table is wider than the {size} page");

            for (path, page) in [("/", "home"), ("/account/password", "password")] {
                browser.goto(path).await;
                check(&browser, size, page).await;
            }
        }

        // "Log out" works from the phone's wrapped header.
        browser.find("header form button").await.click().await.unwrap();
        browser.find("#username").await;
        assert_eq!(browser.path().await, "/login");
        browser.close().await;
    });
}

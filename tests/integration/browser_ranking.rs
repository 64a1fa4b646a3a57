//! Issue 15: ranking one response must never rank the others. Choosing rank 1 for C once
//! tied a garbage A first and put an identical B second, and the form sent "A = B > C".
//! Here a card gets a rank only from an act on it (its select, a key, a drag, "tie with
//! above"); the form is refused, in the page and by the server, until all have one; and
//! Postgres stores exactly the order the annotator chose.

use fantoccini::key::Key;
use labeling::annotation::Ranking;
use serde_json::json;

use crate::browser::Browser;
use crate::browser_annotate::{drag_above, rank_values, ranking_tasks};
use crate::db::with_db;
use crate::web_app::{spawn_app, TestApp};

const PROMPT: &str = "What is the capital of France?";
/// A is garbage; B and C are the same good answer in other words (the very same text
/// would be shown once: see browser_sample_order).
const SAMPLES: [&str; 3] = ["zq#@ ## !!", "Paris is the capital", "Paris is the capital city"];

/// Logs `ann` in and opens the project's ranking task.
async fn open_task(app: &TestApp) -> Browser {
    let project = ranking_tasks(app, &[PROMPT], &SAMPLES).await;
    let browser = Browser::start(&app.address).await;
    browser.log_in("ann").await;
    browser.goto("/tasks").await;
    browser.take_next_task(project).await;
    browser.find("#ranking-form.enhanced").await;
    browser
}

async fn badges(browser: &Browser) -> Vec<String> {
    let mut shown = Vec::new();
    for position in 0..SAMPLES.len() {
        let badge = browser.find(&format!("#sample-{position} .rank-badge")).await;
        shown.push(badge.text().await.unwrap());
    }
    shown
}

async fn rankings_stored(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM rankings").fetch_one(&app.db.pool).await.unwrap()
}

#[test]
fn choosing_a_rank_for_one_response_leaves_the_others_unranked_and_the_form_unsent() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let browser = open_task(&app).await;

        assert_eq!(browser.focused_id().await, "sample-0", "the first card has the focus");
        // From the top of the page two Tab stops lead to the first card: the skip link,
        // the page's first focusable element, then the card past it.
        let first = "const f = document.querySelector('a[href], button, select, textarea, [tabindex]'); \
                     f.focus(); return f.className";
        assert_eq!(browser.client.execute(first, vec![]).await.unwrap(), json!("skip-link"));
        browser.press(Key::Enter.into()).await;
        browser.press(Key::Tab.into()).await;
        assert_eq!(browser.focused_id().await, "sample-0", "Enter on the skip link, then Tab");
        browser.find("select[name=rank_2]").await.select_by_value("1").await.unwrap();
        assert_eq!(rank_values(&browser, 3).await, ["", "", "1"], "only C's select changed");
        assert_eq!(badges(&browser).await, ["–", "–", "1"]);
        // A digit on a card ranks that card only.
        browser.find("#sample-0").await.send_keys("2").await.unwrap();
        assert_eq!(rank_values(&browser, 3).await, ["2", "", "1"]);
        let status = browser.find("#rank-status").await.text().await.unwrap();
        assert!(status.contains("Still to rank: Response B"), "{status}");
        browser.screenshot("ranking-one-unranked").await;

        // Refused in the page, naming the response still to rank; nothing stored.
        browser.find("#submit").await.click().await.unwrap();
        let problem = browser.find("#rank-problem").await;
        assert!(problem.is_displayed().await.unwrap());
        let reason = problem.text().await.unwrap();
        assert!(reason.contains("Response B has no rank yet"), "{reason}");
        let focused = browser.client.execute("return document.activeElement.name", vec![]).await.unwrap();
        assert_eq!(focused, json!("rank_1"), "the focus goes to B's select");
        assert_eq!(rankings_stored(&app).await, 0);

        // Sent past the page's check, the server refuses it too, and the form it shows
        // again still leaves B unranked.
        let submit = "HTMLFormElement.prototype.submit.call(document.getElementById('ranking-form'))";
        browser.client.execute(submit, vec![]).await.unwrap();
        let error = browser.find("#form-error").await.text().await.unwrap();
        assert!(error.contains("response B has no rank"), "{error}");
        browser.find("#ranking-form.enhanced").await;
        assert_eq!(rank_values(&browser, 3).await, ["2", "", "1"]);
        assert_eq!(rankings_stored(&app).await, 0);
        browser.close().await;
    });
}

#[test]
fn a_ranking_with_a_tie_is_stored_exactly_as_the_annotator_ranked_it() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let browser = open_task(&app).await;

        // C first by its select; B dragged above A ranks just below C; "t" ties B with
        // C, above it; "2" puts the garbage A last. Each step ranks one card.
        browser.find("select[name=rank_2]").await.select_by_value("1").await.unwrap();
        drag_above(&browser, "#sample-1", "#sample-0", false).await;
        assert_eq!(rank_values(&browser, 3).await, ["", "2", "1"]);
        browser.find("#sample-1").await.send_keys("t").await.unwrap();
        assert_eq!(rank_values(&browser, 3).await, ["", "1", "1"]);
        browser.find("#sample-0").await.send_keys("2").await.unwrap();
        assert_eq!(rank_values(&browser, 3).await, ["2", "1", "1"]);
        assert_eq!(badges(&browser).await, ["2", "1", "1"]);
        browser.screenshot("ranking-tie").await;
        // Ctrl+Enter sends the form, here from the comment.
        browser.mark_page().await;
        browser.find("#comment").await.send_keys(&format!("{}{}", Key::Control, Key::Enter)).await.unwrap();
        assert_eq!(browser.next_page().await, "/tasks", "the only task is done");

        let (ranks, all_bad): (Vec<i16>, bool) =
            sqlx::query_as("SELECT ranks, all_bad FROM rankings").fetch_one(&app.db.pool).await.unwrap();
        assert_eq!(ranks, [1, 0, 0], "stored from 0: B and C tied best, A below");
        assert!(!all_bad);
        let ranking = Ranking::from_ranks(&ranks).unwrap();
        assert_eq!(ranking.groups(), &[vec![1, 2], vec![0]]);
        assert_eq!(ranking.pairs(), [(1, 0), (2, 0)], "the reward model learns B > A and C > A only");
        browser.close().await;
    });
}

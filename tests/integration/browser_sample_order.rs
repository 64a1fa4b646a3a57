//! Issue 15 in a real browser: a ranking task shows its samples in the order drawn for the
//! assignment and Postgres reads them back by sample; identical texts are one card, stored
//! tied; an answered task shows its answer and is revised by a new row.

use crate::browser::Browser;
use crate::browser_annotate::ranking_tasks;
use crate::db::with_db;
use crate::web_app::{spawn_app, TestApp};

/// Logs `ann` in and opens the ranking task of a project whose samples are shown in an
/// order per assignment.
async fn open_task(app: &TestApp, samples: &[&str]) -> (Browser, i64) {
    let project = ranking_tasks(app, &["Name a colour."], samples).await;
    let shuffle = labeling::projects::SettingsChange { shuffle_samples: Some(true), ..Default::default() };
    labeling::projects::update_settings(&app.db.pool, project, &shuffle).await.unwrap();
    let browser = Browser::start(&app.address).await;
    browser.log_in("ann").await;
    browser.goto("/tasks").await;
    browser.take_next_task(project).await;
    browser.find("#ranking-form.enhanced").await;
    let assignment: i64 =
        sqlx::query_scalar("SELECT id FROM assignments").fetch_one(&app.db.pool).await.unwrap();
    (browser, assignment)
}

/// The cards as the page shows them, top to bottom: (position, heading).
async fn cards(browser: &Browser) -> Vec<(i16, String)> {
    let script = "return [...document.querySelectorAll('.sample-card')]
                  .map(c => [Number(c.dataset.position), c.querySelector('h3').textContent.trim()])";
    let shown = browser.client.execute(script, vec![]).await.unwrap();
    serde_json::from_value(shown).unwrap()
}

#[test]
fn a_ranking_shown_in_its_own_order_is_stored_by_sample_and_can_be_revised() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let (browser, assignment) = open_task(&app, &["red", "green", "blue", "yellow"]).await;
        let order: Vec<i16> = sqlx::query_scalar("SELECT sample_order FROM assignments WHERE id = $1")
            .bind(assignment)
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
        let shown = cards(&browser).await;
        assert_eq!(shown.iter().map(|c| c.0).collect::<Vec<_>>(), order, "the page shows the recorded order");
        let headings: Vec<&str> = shown.iter().map(|c| c.1.as_str()).collect();
        assert_eq!(headings, ["Response A", "Response B", "Response C", "Response D"]);
        browser.screenshot("ranking-shuffled").await;

        // Rank top to bottom as shown: the card in slot i gets rank i + 1.
        for (slot, (position, _)) in shown.iter().enumerate() {
            let select = browser.find(&format!("select[name=rank_{position}]")).await;
            select.select_by_value(&(slot + 1).to_string()).await.unwrap();
        }
        browser.find("#submit").await.click().await.unwrap();
        browser.find(".note").await;
        let ranks: Vec<i16> = sqlx::query_scalar("SELECT ranks FROM rankings WHERE assignment_id = $1")
            .bind(assignment)
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
        let slot_of = |p: i16| order.iter().position(|&q| q == p).unwrap() as i16;
        assert_eq!(ranks, (0..4).map(slot_of).collect::<Vec<_>>(), "each sample's rank is its card's");

        // The answered task reads the ranking back in the letters it was shown with.
        browser.goto(&format!("/assignments/{assignment}")).await;
        let answer = browser.find("#answer").await.text().await.unwrap();
        assert_eq!(answer, "A > B > C > D");
        browser.screenshot("task-answered").await;
        browser.goto("/history").await;
        assert!(browser.text().await.contains("A > B > C > D"));

        // Revised: the form comes back filled in and in the same order; the bottom card
        // moves to the top, and a new row supersedes the first.
        browser.goto(&format!("/assignments/{assignment}")).await;
        browser.find("#revise").await.click().await.unwrap();
        browser.find("#ranking-form.enhanced").await;
        assert_eq!(cards(&browser).await, shown);
        let last = shown[3].0;
        let value = browser.find(&format!("select[name=rank_{last}]")).await.prop("value").await.unwrap();
        assert_eq!(value.as_deref(), Some("4"));
        browser.screenshot("ranking-revise").await;
        for (slot, (position, _)) in shown.iter().enumerate() {
            let rank = if slot == 3 { 1 } else { slot + 2 };
            let select = browser.find(&format!("select[name=rank_{position}]")).await;
            select.select_by_value(&rank.to_string()).await.unwrap();
        }
        browser.find("#submit").await.click().await.unwrap();
        let answer = browser.find("#answer").await.text().await.unwrap();
        assert_eq!(answer, "D > A > B > C");
        let stored: Vec<(Vec<i16>, Option<i64>)> =
            sqlx::query_as("SELECT ranks, supersedes FROM rankings WHERE assignment_id = $1 ORDER BY id")
                .bind(assignment)
                .fetch_all(&app.db.pool)
                .await
                .unwrap();
        assert_eq!(stored.len(), 2);
        assert_eq!(stored[0].0, ranks, "the first answer is kept");
        assert!(stored[1].1.is_some());

        // A page that is not there keeps the site's header, with the way out.
        browser.goto("/assignments/999999").await;
        assert!(browser.find("body > header form[action='/logout']").await.is_displayed().await.unwrap());
        browser.screenshot("error-page").await;
        browser.close().await;
    });
}

#[test]
fn identical_responses_are_one_card_and_stored_tied() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let (browser, assignment) = open_task(&app, &["blue", "green", "blue"]).await;
        let shown = cards(&browser).await;
        assert_eq!(shown.len(), 2, "{shown:?}");
        let twin_card =
            shown.iter().find(|c| c.1.contains("the same text as")).expect("a card names its twin");
        assert_eq!(twin_card.0 % 2, 0, "a blue card (position 0 or 2) stands for both");
        browser.screenshot("ranking-identical").await;
        // The blue card best, green second.
        for (position, heading) in &shown {
            let rank = if heading.contains("the same text as") { "1" } else { "2" };
            browser.find(&format!("select[name=rank_{position}]")).await.select_by_value(rank).await.unwrap();
        }
        browser.find("#submit").await.click().await.unwrap();
        browser.find(".note").await;
        let ranks: Vec<i16> = sqlx::query_scalar("SELECT ranks FROM rankings WHERE assignment_id = $1")
            .bind(assignment)
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
        assert_eq!(ranks, [0, 1, 0], "both blue samples tied first");
        browser.close().await;
    });
}

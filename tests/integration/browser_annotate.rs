//! An annotator in a real browser: ranks four samples with the keyboard (a tie and a
//! flag), then another task by dragging with the mouse and with a finger (touch), and
//! Postgres holds exactly the rankings the page showed.

use std::time::Duration;

use fantoccini::actions::{InputSource, MouseActions, PointerAction, TouchActions, MOUSE_BUTTON_LEFT};
use labeling::domain::{Guidelines, ProjectName, PromptSource, PromptText, Split};
use labeling::projects::NewProject;
use labeling::prompts::NewPrompt;
use labeling::tasks::NewSample;
use serde_json::json;

use crate::browser::Browser;
use crate::db::with_db;
use crate::web_app::{spawn_app, TestApp};

/// The four samples of each task of `ranking_tasks`.
const SAMPLES: [&str; 4] = ["first sample", "second sample", "third sample", "fourth sample"];

/// A project with `ann` as its annotator and one ranking task per prompt, of
/// `samples` (each followed by " for <prompt>") in that order.
pub(crate) async fn ranking_tasks(app: &TestApp, prompts: &[&str], samples: &[&str]) -> i64 {
    let pool = &app.db.pool;
    let new = NewProject {
        name: ProjectName::parse("browser ranking").unwrap(),
        guidelines: Guidelines::parse("Rank the **correct** answer first.").unwrap(),
        overlap: Default::default(),
        samples_per_task: Default::default(),
        created_by: None,
    };
    let project = labeling::projects::create_project(pool, &new).await.unwrap().id;
    // These tests find cards by where they stand: the samples keep task order.
    let keep_order =
        labeling::projects::SettingsChange { shuffle_samples: Some(false), ..Default::default() };
    labeling::projects::update_settings(pool, project, &keep_order).await.unwrap();
    let ann = labeling::users::get_user_by_username(pool, "ann").await.unwrap().id;
    labeling::projects::add_member(pool, project, ann).await.unwrap();
    for text in prompts {
        let prompt = NewPrompt {
            project_id: project,
            text: PromptText::parse(*text).unwrap(),
            split: Split::Train,
            source: PromptSource::parse("test").unwrap(),
            created_by: None,
        };
        let prompt = labeling::prompts::add_prompt(pool, &prompt).await.unwrap().id;
        let samples: Vec<NewSample> = samples
            .iter()
            .map(|t| NewSample { prompt_id: prompt, text: format!("{t} for {text}"), logprobs: None })
            .collect();
        let ids =
            labeling::tasks::add_samples(pool, project, None, None, &json!({}), &samples).await.unwrap();
        labeling::tasks::create_ranking_task(pool, project, prompt, &ids).await.unwrap();
    }
    project
}

/// The rank each of the `k` cards shows, by sample position.
pub(crate) async fn shown_ranks(browser: &Browser, k: usize) -> Vec<i16> {
    let mut ranks = Vec::new();
    for position in 0..k {
        let select = browser.find(&format!("select[name=rank_{position}]")).await;
        let value = select.prop("value").await.unwrap().unwrap_or_default();
        ranks.push(value.parse().unwrap_or_else(|_| panic!("sample {position} has no rank: {value:?}")));
    }
    ranks
}

/// What each of the `k` rank selects holds, by sample position ("" for no rank).
pub(crate) async fn rank_values(browser: &Browser, k: usize) -> Vec<String> {
    let mut values = Vec::new();
    for position in 0..k {
        let select = browser.find(&format!("select[name=rank_{position}]")).await;
        values.push(select.prop("value").await.unwrap().unwrap_or_default());
    }
    values
}

/// The ranks (as the page shows them, from 1; stored from 0) and flags stored for the
/// task of `prompt`.
async fn stored(app: &TestApp, prompt: &str) -> (Vec<i16>, Vec<(i16, String)>) {
    let (id, ranks): (i64, Vec<i16>) = sqlx::query_as(
        "SELECT r.id, r.ranks FROM rankings r JOIN tasks t ON t.id = r.task_id JOIN prompts p ON p.id = t.prompt_id
         WHERE p.text = $1",
    )
    .bind(prompt)
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    let flags = sqlx::query_as(
        "SELECT position, flag::text FROM ranking_flags WHERE ranking_id = $1 ORDER BY position",
    )
    .bind(id)
    .fetch_all(&app.db.pool)
    .await
    .unwrap();
    (ranks.into_iter().map(|r| r + 1).collect(), flags)
}

/// Drags `card`'s handle to just above `target`'s top edge.
pub(crate) async fn drag_above(browser: &Browser, card: &str, target: &str, touch: bool) {
    let handle = browser.find(&format!("{card} .drag-handle")).await;
    let target = browser.find(target).await;
    let (_, _, _, height) = target.rectangle().await.unwrap();
    let step = Some(Duration::from_millis(50));
    let moves = [
        PointerAction::MoveToElement { element: handle, duration: None, x: 0.0, y: 0.0 },
        PointerAction::Down { button: MOUSE_BUTTON_LEFT },
        PointerAction::MoveToElement { element: target.clone(), duration: step, x: 0.0, y: 0.0 },
        PointerAction::MoveToElement { element: target, duration: step, x: 0.0, y: -height / 2.0 + 3.0 },
        PointerAction::Up { button: MOUSE_BUTTON_LEFT },
    ];
    if touch {
        let actions = moves.into_iter().fold(TouchActions::new("finger".into()), |a, m| a.then(m));
        browser.client.perform_actions(actions).await.unwrap();
    } else {
        let actions = moves.into_iter().fold(MouseActions::new("mouse".into()), |a, m| a.then(m));
        browser.client.perform_actions(actions).await.unwrap();
    }
}

#[test]
fn an_annotator_ranks_with_the_keyboard_and_by_dragging_and_postgres_holds_exactly_that() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let project = ranking_tasks(&app, &["reverse the word cat", "sort the digits 3 1 2"], &SAMPLES).await;
        let browser = Browser::start(&app.address).await;
        browser.log_in("ann").await;

        browser.goto("/tasks").await;
        browser.screenshot("annotator-tasks").await;
        browser.take_next_task(project).await;
        browser.find("#ranking-form").await;
        assert!(browser.path().await.starts_with("/assignments/"));
        browser.screenshot("ranking-before").await;

        // Keyboard: third sample best, first second, fourth third, then the fourth tied
        // with the one above it ("t"), and the second sample last.
        browser.find("#sample-2").await.send_keys("1").await.unwrap();
        browser.find("#sample-0").await.send_keys("2").await.unwrap();
        browser.find("#sample-3").await.send_keys("3").await.unwrap();
        browser.find("#sample-3").await.send_keys("t").await.unwrap();
        browser.find("#sample-1").await.send_keys("3").await.unwrap();
        assert_eq!(shown_ranks(&browser, 4).await, [2, 3, 1, 2]);
        // Arrow keys move the focus between cards in their ranked order.
        browser.find("#sample-2").await.send_keys("\u{E015}").await.unwrap(); // ArrowDown
        let focused = browser.client.execute("return document.activeElement.id", vec![]).await.unwrap();
        assert_eq!(focused, json!("sample-0"));
        browser.find("input[name=flag_1][value=hallucination]").await.click().await.unwrap();
        browser.find("#comment").await.send_keys("the second one invents a word").await.unwrap();
        browser.screenshot("ranking-keyboard").await;
        browser.find("#submit").await.click().await.unwrap();

        // The next task follows; its order is set by dragging.
        browser.find("#ranking-form").await;
        assert!(browser.text().await.contains("sort the digits 3 1 2"));
        drag_above(&browser, "#sample-3", "#sample-0", false).await;
        assert_eq!(
            rank_values(&browser, 4).await,
            ["", "", "", "1"],
            "the mouse drag ranked the fourth sample first"
        );
        drag_above(&browser, "#sample-2", "#sample-3", true).await;
        assert_eq!(
            rank_values(&browser, 4).await,
            ["", "", "1", "2"],
            "the touch drag put the third sample first"
        );
        // Tie the first sample with the one above it, by the button; the second by its select.
        browser.find("#sample-0 button.tie-above").await.click().await.unwrap();
        browser.find("select[name=rank_1]").await.select_by_value("3").await.unwrap();
        let dragged = shown_ranks(&browser, 4).await;
        assert_eq!(dragged, [2, 3, 1, 2], "after the drags and the tie");
        browser.screenshot("ranking-dragged").await;
        browser.find("#submit").await.click().await.unwrap();
        browser.find("main").await;
        browser.screenshot("ranking-done").await;

        assert_eq!(
            stored(&app, "reverse the word cat").await,
            (vec![2, 3, 1, 2], vec![(1, "hallucination".to_owned())])
        );
        assert_eq!(stored(&app, "sort the digits 3 1 2").await, (dragged, vec![]));
        let comment: String = sqlx::query_scalar("SELECT comment FROM rankings ORDER BY id LIMIT 1")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
        assert_eq!(comment, "the second one invents a word");
        browser.close().await;
    });
}

#[test]
fn an_annotator_starts_from_home_and_reads_the_lease_end_in_their_own_time_zone() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        ranking_tasks(&app, &["What is 2 + 2?"], &SAMPLES).await;
        // Kolkata is UTC+5:30 all year: its minutes differ from UTC's by 30.
        let browser = Browser::start_in_time_zone(&app.address, "Asia/Kolkata").await;
        browser.log_in("ann").await;
        browser.goto("/").await;
        browser.find("button.next-task").await.click().await.unwrap();
        let shown = browser.find("p.task-meta time.lease-until").await.text().await.unwrap();
        browser.screenshot("lease-in-local-time").await;

        let lease_until: chrono::DateTime<chrono::Utc> =
            sqlx::query_scalar("SELECT lease_until FROM assignments").fetch_one(&app.db.pool).await.unwrap();
        let local = lease_until + chrono::Duration::minutes(5 * 60 + 30);
        assert!(!shown.contains("UTC"), "still in UTC: {shown}");
        assert!(shown.contains(&local.format(":%M").to_string()), "{shown} is not {local} in Kolkata");
        assert!(shown.contains(&local.format("%d").to_string()), "{shown} is not {local} in Kolkata");
        browser.close().await;
    });
}

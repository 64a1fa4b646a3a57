//! Annotators' fast answers (issue 15): on an A/B comparison one key votes, as in
//! Chatbot Arena (a, b, t for a tie, x for both bad), but not while typing a comment;
//! Ctrl+Enter sends a task's form; the task's first field has the focus (here a
//! demonstration's; the ranking tests check the first card's).

use std::collections::BTreeMap;

use fantoccini::key::Key;
use labeling::domain::{Guidelines, ProjectName, PromptSource, PromptText, Split};
use labeling::projects::NewProject;
use labeling::prompts::NewPrompt;
use labeling::tasks::NewSample;
use serde_json::json;

use crate::browser::Browser;
use crate::db::with_db;
use crate::web_app::{spawn_app, TestApp};

/// A project with `ann` as its annotator and `prompts`, and their ids.
async fn project_of_ann(app: &TestApp, name: &str, prompts: &[&str]) -> (i64, Vec<i64>) {
    let pool = &app.db.pool;
    let new = NewProject {
        name: ProjectName::parse(name).unwrap(),
        guidelines: Guidelines::parse("").unwrap(),
        overlap: Default::default(),
        samples_per_task: Default::default(),
        created_by: None,
    };
    let project = labeling::projects::create_project(pool, &new).await.unwrap().id;
    let ann = labeling::users::get_user_by_username(pool, "ann").await.unwrap().id;
    labeling::projects::add_member(pool, project, ann).await.unwrap();
    let mut ids = Vec::new();
    for text in prompts {
        let prompt = NewPrompt {
            project_id: project,
            text: PromptText::parse(*text).unwrap(),
            split: Split::Train,
            source: PromptSource::parse("test").unwrap(),
            created_by: None,
        };
        ids.push(labeling::prompts::add_prompt(pool, &prompt).await.unwrap().id);
    }
    (project, ids)
}

/// A project with `ann` as its annotator and one A/B comparison task per prompt.
async fn comparison_tasks(app: &TestApp, prompts: &[&str]) -> i64 {
    let pool = &app.db.pool;
    let (project, ids) = project_of_ann(app, "browser votes", prompts).await;
    for (text, &prompt) in prompts.iter().zip(&ids) {
        let samples: Vec<NewSample> = ["one answer", "another answer"]
            .iter()
            .map(|t| NewSample { prompt_id: prompt, text: format!("{t} to {text}"), logprobs: None })
            .collect();
        let ids =
            labeling::tasks::add_samples(pool, project, None, None, &json!({}), &samples).await.unwrap();
        labeling::tasks::create_random_comparison_task(pool, project, prompt, ids[0], ids[1]).await.unwrap();
    }
    project
}

#[test]
fn an_annotator_votes_on_a_b_comparisons_with_one_key_each() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let prompts = ["name a colour", "name a fruit", "name a river", "name a city"];
        let project = comparison_tasks(&app, &prompts).await;
        let browser = Browser::start(&app.address).await;
        browser.log_in("ann").await;
        browser.goto("/tasks").await;
        browser.take_next_task(project).await;

        let mut voted = BTreeMap::new();
        for (n, (key, vote)) in
            [('a', "a"), ('b', "b"), ('t', "tie"), ('x', "both_bad")].into_iter().enumerate()
        {
            browser.find("#vote-form").await;
            let prompt = browser.find("#prompt-text").await.text().await.unwrap();
            if n == 0 {
                browser.screenshot("comparison-keys").await;
            }
            if n == 1 {
                // Keys typed into the comment are words, not votes.
                browser.find("#comment").await.send_keys("a bit better, not a tie").await.unwrap();
                assert!(browser.find("#vote-form").await.is_displayed().await.unwrap());
                browser.client.execute("document.activeElement.blur()", vec![]).await.unwrap();
            }
            browser.mark_page().await;
            browser.press(key).await;
            let next = browser.next_page().await;
            voted.insert(prompt, vote.to_owned());
            assert_eq!(next.starts_with("/assignments/"), n < 3, "after {n} votes: {next}");
        }

        let stored: BTreeMap<String, String> = sqlx::query_as::<_, (String, String)>(
            "SELECT p.text, v.vote::text FROM comparison_votes v JOIN tasks t ON t.id = v.task_id
             JOIN prompts p ON p.id = t.prompt_id",
        )
        .fetch_all(&app.db.pool)
        .await
        .unwrap()
        .into_iter()
        .collect();
        assert_eq!(stored, voted);
        let comment: String = sqlx::query_scalar("SELECT comment FROM comparison_votes WHERE vote = 'b'")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
        assert_eq!(comment, "a bit better, not a tie");
        browser.close().await;
    });
}

#[test]
fn a_demonstration_is_typed_at_once_and_sent_with_ctrl_enter() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let (project, prompts) =
            project_of_ann(&app, "browser demonstrations", &["reverse the word cat"]).await;
        labeling::tasks::create_demonstration_tasks(&app.db.pool, project, &prompts).await.unwrap();
        let browser = Browser::start(&app.address).await;
        browser.log_in("ann").await;
        browser.goto("/tasks").await;
        browser.take_next_task(project).await;
        browser.find("#demonstration-form").await;

        assert_eq!(browser.focused_id().await, "text", "the response field has the focus");
        // Typed where the focus is, with no click first.
        for key in "tac".chars() {
            browser.press(key).await;
        }
        browser.mark_page().await;
        browser.find("#text").await.send_keys(&format!("{}{}", Key::Control, Key::Enter)).await.unwrap();
        assert_eq!(browser.next_page().await, "/tasks", "the only task is done");
        let response: String =
            sqlx::query_scalar("SELECT response FROM demonstrations").fetch_one(&app.db.pool).await.unwrap();
        assert_eq!(response, "tac");
        browser.close().await;
    });
}

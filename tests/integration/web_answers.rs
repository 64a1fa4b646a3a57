//! Issue 15: labels that are what people meant. A ranking task's samples are shown to each
//! annotator in an order of their own (recorded per assignment) while ranks stay stored
//! by sample; samples with the very same text are shown once and stored tied; an answered
//! task shows its answer and, while the project allows it, can be revised by a new row
//! that supersedes the old one, which is kept.

use labeling::domain::{Guidelines, Overlap, ProjectName, PromptSource, PromptText, Split};
use labeling::projects::{NewProject, SettingsChange};
use labeling::prompts::NewPrompt;
use labeling::tasks::{self, NewSample};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::db::with_db;
use crate::web_annotate::api;
use crate::web_app::{hidden_value, spawn_app, TestApp};

/// A project with `ann` as its annotator; `shuffle` says whether samples are shown in an
/// order per assignment.
async fn project(app: &TestApp, shuffle: bool) -> i64 {
    let pool = &app.db.pool;
    let new = NewProject {
        name: ProjectName::parse("answers").unwrap(),
        guidelines: Guidelines::parse("Rank the correct answer first.").unwrap(),
        overlap: Overlap::parse(1).unwrap(),
        samples_per_task: Default::default(),
        created_by: None,
    };
    let project = labeling::projects::create_project(pool, &new).await.unwrap().id;
    let change = SettingsChange { shuffle_samples: Some(shuffle), ..Default::default() };
    labeling::projects::update_settings(pool, project, &change).await.unwrap();
    let ann = labeling::users::get_user_by_username(pool, "ann").await.unwrap().id;
    labeling::projects::add_member(pool, project, ann).await.unwrap();
    project
}

async fn prompt(app: &TestApp, project: i64, text: &str) -> i64 {
    let new = NewPrompt {
        project_id: project,
        text: PromptText::parse(text).unwrap(),
        split: Split::Train,
        source: PromptSource::parse("test").unwrap(),
        created_by: None,
    };
    labeling::prompts::add_prompt(&app.db.pool, &new).await.unwrap().id
}

/// A ranking task of a new prompt showing samples with these texts, at positions 0.. in
/// this order.
async fn ranking_task(app: &TestApp, project: i64, prompt_text: &str, texts: &[&str]) -> i64 {
    let p = prompt(app, project, prompt_text).await;
    let new: Vec<NewSample> =
        texts.iter().map(|t| NewSample { prompt_id: p, text: t.to_string(), logprobs: None }).collect();
    let ids = tasks::add_samples(&app.db.pool, project, None, None, &json!({}), &new).await.unwrap();
    tasks::create_ranking_task(&app.db.pool, project, p, &ids).await.unwrap()
}

fn key() -> String {
    uuid::Uuid::new_v4().to_string()
}

async fn sample_order(app: &TestApp, assignment: i64) -> Option<Vec<i16>> {
    sqlx::query_scalar("SELECT sample_order FROM assignments WHERE id = $1")
        .bind(assignment)
        .fetch_one(&app.db.pool)
        .await
        .unwrap()
}

/// Every ranking stored for a task: (id, ranks, supersedes), oldest first.
async fn rankings_of(app: &TestApp, assignment: i64) -> Vec<(i64, Vec<i16>, Option<i64>)> {
    sqlx::query_as("SELECT id, ranks, supersedes FROM rankings WHERE assignment_id = $1 ORDER BY id")
        .bind(assignment)
        .fetch_all(&app.db.pool)
        .await
        .unwrap()
}

/// Posts `assignment`'s page form (read from the page at `page`) with `fields` added.
async fn post_page_form(
    app: &TestApp,
    page: &str,
    action: &str,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    let html = app.get_html(page).await;
    let (csrf, key, revises) =
        (hidden_value(&html, "csrf"), hidden_value(&html, "idempotency_key"), hidden_value(&html, "revises"));
    let mut form =
        vec![("csrf", csrf.as_str()), ("idempotency_key", key.as_str()), ("revises", revises.as_str())];
    form.extend_from_slice(fields);
    app.post_form(action, &form).await
}

#[test]
fn each_annotator_sees_a_ranking_in_an_order_of_their_own_and_the_ranks_stay_by_sample() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let project = project(&app, true).await;
        for i in 0..12 {
            ranking_task(
                &app,
                project,
                &format!("prompt {i}"),
                &["best answer", "middle answer", "worst answer"],
            )
            .await;
        }
        let token = app.token_for("ann").await;
        let mut first_shown = Vec::new();
        loop {
            let (status, a) =
                api(&app, &token, "POST", &format!("/api/projects/{project}/tasks/next"), None).await;
            if status == StatusCode::NO_CONTENT {
                break;
            }
            assert_eq!(status, StatusCode::OK, "{a}");
            let id = a["assignment_id"].as_i64().unwrap();
            let shown: Vec<i16> = a["samples"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["position"].as_i64().unwrap() as i16)
                .collect();
            // The order shown is the order recorded, a permutation of the positions.
            assert_eq!(sample_order(&app, id).await, Some(shown.clone()));
            let mut sorted = shown.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, [0, 1, 2]);
            first_shown.push(shown[0]);
            // Asked again, the assignment keeps its order.
            let (_, again) = api(&app, &token, "GET", &format!("/api/assignments/{id}"), None).await;
            assert_eq!(again["samples"], a["samples"]);
            // Ranks by position: the best answer (position 0) first, wherever it was shown.
            let body = json!({ "ranks": [1, 2, 3], "idempotency_key": key() });
            let (status, stored) =
                api(&app, &token, "POST", &format!("/api/assignments/{id}/ranking"), Some(body)).await;
            assert_eq!(status, StatusCode::OK, "{stored}");
            assert_eq!(rankings_of(&app, id).await[0].1, [0, 1, 2]);
        }
        assert_eq!(first_shown.len(), 12);
        // With a fair draw, position 0 comes first in all 12 with probability 3^-12.
        assert!(first_shown.iter().any(|&p| p != 0), "always shown in task order: {first_shown:?}");

        // The history names the samples by the letters they were shown with.
        app.log_in("ann").await;
        let history = app.get_html("/history").await;
        let order: Vec<i16> = sqlx::query_scalar::<_, Vec<i16>>(
            "SELECT a.sample_order FROM assignments a JOIN rankings r ON r.assignment_id = a.id ORDER BY r.id DESC LIMIT 1",
        )
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
        let letter = |p: i16| char::from(b'A' + order.iter().position(|&q| q == p).unwrap() as u8);
        let expected = format!("{} &#62; {} &#62; {}", letter(0), letter(1), letter(2));
        assert!(history.contains(&expected), "{expected} not in the history");
    });
}

#[test]
fn identical_texts_are_shown_once_and_stored_tied() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let project = project(&app, false).await;
        ranking_task(&app, project, "capital of France?", &["Paris.", "Lyon.", "Paris."]).await;
        let token = app.token_for("ann").await;
        let (_, a) = api(&app, &token, "POST", &format!("/api/projects/{project}/tasks/next"), None).await;
        let id = a["assignment_id"].as_i64().unwrap();
        let same_as: Vec<Value> =
            a["samples"].as_array().unwrap().iter().map(|s| s["same_as"].clone()).collect();
        assert_eq!(same_as, [Value::Null, Value::Null, json!(0)]);

        // The API refuses to rank the one response twice, and stores nothing.
        let body = json!({ "ranks": [1, 2, 3], "idempotency_key": key() });
        let (status, error) =
            api(&app, &token, "POST", &format!("/api/assignments/{id}/ranking"), Some(body)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
        assert!(error.to_string().contains("must be tied"), "{error}");
        assert!(rankings_of(&app, id).await.is_empty());

        // The page shows two cards; the first names its twin; its rank is the twin's.
        app.log_in("ann").await;
        let page = format!("/assignments/{id}");
        let html = app.get_html(&page).await;
        assert_eq!(html.matches("class=\"sample-card\"").count(), 2, "{html}");
        assert!(html.contains("the same text as C"), "{html}");
        assert!(!html.contains("name=\"rank_2\""));
        let response = post_page_form(
            &app,
            &page,
            &format!("/assignments/{id}/ranking"),
            &[("rank_0", "2"), ("rank_1", "1"), ("likert_0", "3"), ("flag_0", "hallucination")],
        )
        .await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(rankings_of(&app, id).await[0].1, [1, 0, 1]);
        let (likert, flags): (Vec<Option<i16>>, Vec<i16>) = sqlx::query_as(
            "SELECT r.likert, ARRAY(SELECT position FROM ranking_flags f WHERE f.ranking_id = r.id ORDER BY position)
             FROM rankings r WHERE r.assignment_id = $1",
        )
        .bind(id)
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
        assert_eq!(likert, [Some(3), None, Some(3)], "the rating applies to both");
        assert_eq!(flags, [0, 2], "the flag applies to both");
    });
}

#[test]
fn an_answered_task_shows_its_answer_and_a_revision_supersedes_it_while_the_project_allows() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let project = project(&app, false).await;
        ranking_task(&app, project, "capital of France?", &["Paris.", "Lyon.", "Nice."]).await;
        app.log_in("ann").await;
        let csrf = hidden_value(&app.get_html("/tasks").await, "csrf");
        let next = app.post_form(&format!("/projects/{project}/next"), &[("csrf", &csrf)]).await;
        let page = next.headers()["location"].to_str().unwrap().to_string();
        let id: i64 = page.strip_prefix("/assignments/").unwrap().parse().unwrap();
        let action = format!("/assignments/{id}/ranking");
        let ranks = [("rank_0", "1"), ("rank_1", "2"), ("rank_2", "3")];
        assert_eq!(post_page_form(&app, &page, &action, &ranks).await.status(), StatusCode::SEE_OTHER);
        let first = rankings_of(&app, id).await[0].0;

        // The answered task shows the answer given, and offers to revise it.
        let html = app.get_html(&page).await;
        assert!(html.contains("Your answer") && html.contains("A &#62; B &#62; C"), "{html}");
        assert!(html.contains(&format!("/assignments/{id}?revise=true")), "{html}");
        // The revise form is filled in with the answer, and names the answer it revises.
        let revise = format!("{page}?revise=true");
        let form = app.get_html(&revise).await;
        assert_eq!(hidden_value(&form, "revises"), first.to_string());
        assert!(form.contains("<option value=\"3\" selected>3</option>"), "{form}");
        let reversed = [("rank_0", "3"), ("rank_1", "2"), ("rank_2", "1")];
        let response = post_page_form(&app, &revise, &action, &reversed).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(response.headers()["location"], format!("/assignments/{id}?note=revised").as_str());
        let stored = rankings_of(&app, id).await;
        assert_eq!(stored.len(), 2, "a revision adds a row");
        assert_eq!(stored[0], (first, vec![0, 1, 2], None), "the first answer is kept as it was");
        assert_eq!(stored[1].1, [2, 1, 0]);
        assert_eq!(stored[1].2, Some(first));
        let current: Vec<i64> =
            sqlx::query_scalar("SELECT id FROM current_rankings WHERE assignment_id = $1")
                .bind(id)
                .fetch_all(&app.db.pool)
                .await
                .unwrap();
        assert_eq!(current, [stored[1].0], "only the revision stands");
        assert!(app.get_html(&page).await.contains("C &#62; B &#62; A"));

        // Revising what is no longer the answer that stands is a conflict; nothing is stored.
        let token = app.token_for("ann").await;
        let stale = json!({ "ranks": [1, 1, 2], "idempotency_key": key(), "revises": first });
        let (status, error) =
            api(&app, &token, "POST", &format!("/api/assignments/{id}/ranking"), Some(stale)).await;
        assert_eq!(status, StatusCode::CONFLICT, "{error}");
        assert_eq!(rankings_of(&app, id).await.len(), 2);

        // Once the project stops allowing revisions, the page offers none and the API refuses.
        let rita = app.token_for("rita").await;
        let off = json!({ "revisions_allowed": false });
        let (status, body) = api(&app, &rita, "PUT", &format!("/api/projects/{project}"), Some(off)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["project"]["revisions_allowed"], json!(false));
        let html = app.get_html(&page).await;
        assert!(html.contains("Your answer") && !html.contains("revise=true"), "{html}");
        let current = stored[1].0;
        let late = json!({ "ranks": [1, 1, 2], "idempotency_key": key(), "revises": current });
        let (status, error) =
            api(&app, &token, "POST", &format!("/api/assignments/{id}/ranking"), Some(late)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{error}");
        assert_eq!(rankings_of(&app, id).await.len(), 2);
    });
}

#[test]
fn a_demonstration_and_a_vote_are_revised_by_new_rows_and_snapshots_take_the_revision() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let project = project(&app, false).await;
        let p = prompt(&app, project, "Say hello.").await;
        tasks::create_demonstration_tasks(&app.db.pool, project, &[p]).await.unwrap();
        let token = app.token_for("ann").await;
        let (_, a) = api(&app, &token, "POST", &format!("/api/projects/{project}/tasks/next"), None).await;
        let id = a["assignment_id"].as_i64().unwrap();
        let path = format!("/api/assignments/{id}/demonstration");
        let (_, first) =
            api(&app, &token, "POST", &path, Some(json!({ "text": "hi", "idempotency_key": key() }))).await;
        let first = first["id"].as_i64().unwrap();
        // A revision without `revises` is still a second first answer: refused.
        let (status, _) =
            api(&app, &token, "POST", &path, Some(json!({ "text": "hello", "idempotency_key": key() })))
                .await;
        assert_eq!(status, StatusCode::CONFLICT);
        let body = json!({ "text": "Hello there!", "idempotency_key": key(), "revises": first });
        let (status, revised) = api(&app, &token, "POST", &path, Some(body)).await;
        assert_eq!(status, StatusCode::OK, "{revised}");
        let texts: Vec<(String, Option<i64>)> = sqlx::query_as(
            "SELECT response, supersedes FROM demonstrations WHERE assignment_id = $1 ORDER BY id",
        )
        .bind(id)
        .fetch_all(&app.db.pool)
        .await
        .unwrap();
        assert_eq!(texts, [("hi".to_string(), None), ("Hello there!".to_string(), Some(first))]);
        let current: Vec<String> = sqlx::query_scalar("SELECT response FROM current_demonstrations")
            .fetch_all(&app.db.pool)
            .await
            .unwrap();
        assert_eq!(current, ["Hello there!"]);

        // An A/B vote, revised from A to B.
        let q = prompt(&app, project, "Say goodbye.").await;
        let new = [("bye", q), ("farewell", q)].map(|(t, p)| NewSample {
            prompt_id: p,
            text: t.into(),
            logprobs: None,
        });
        let sides = tasks::add_samples(&app.db.pool, project, None, None, &json!({}), &new).await.unwrap();
        tasks::create_comparison_task(&app.db.pool, project, q, sides[0], sides[1], &mut rand::rng())
            .await
            .unwrap();
        let (_, a) = api(&app, &token, "POST", &format!("/api/projects/{project}/tasks/next"), None).await;
        let id = a["assignment_id"].as_i64().unwrap();
        let path = format!("/api/assignments/{id}/vote");
        let (_, first) =
            api(&app, &token, "POST", &path, Some(json!({ "vote": "a", "idempotency_key": key() }))).await;
        let body = json!({ "vote": "b", "idempotency_key": key(), "revises": first["id"] });
        let (status, revised) = api(&app, &token, "POST", &path, Some(body)).await;
        assert_eq!(status, StatusCode::OK, "{revised}");
        let votes: Vec<String> = sqlx::query_scalar("SELECT vote::text FROM current_comparison_votes")
            .fetch_all(&app.db.pool)
            .await
            .unwrap();
        assert_eq!(votes, ["b"]);
        let all: i64 = sqlx::query_scalar("SELECT count(*) FROM comparison_votes")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
        assert_eq!(all, 2);
    });
}

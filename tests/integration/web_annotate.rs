//! The annotators' pages and API over HTTP: the task list and guidelines, "Next task",
//! the demonstration, ranking and A/B pages, skipping, the history with agreement, and
//! the JSON API a script drives with a token. Route by route: the happy path, who may
//! (member, researcher, the assignment's own annotator), and bad input refused without
//! storing anything.

use std::time::Duration;

use labeling::domain::{
    DisplayName, Guidelines, Overlap, Password, ProjectName, PromptSource, PromptText, Role, Split, Username,
};
use labeling::projects::NewProject;
use labeling::prompts::NewPrompt;
use labeling::tasks::{self, NewSample};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::db::with_db;
use crate::web_app::{client, hidden_value, spawn_app, TestApp};

/// A project with `ann` as its annotator, and `bob`, an annotator of no project.
struct World {
    project: i64,
    ann: i64,
    bob: i64,
}

async fn user_id(app: &TestApp, username: &str) -> i64 {
    labeling::users::get_user_by_username(&app.db.pool, username).await.unwrap().id
}

async fn world(app: &TestApp, guidelines: &str, overlap: i64) -> World {
    let new = NewProject {
        name: ProjectName::parse("summaries").unwrap(),
        guidelines: Guidelines::parse(guidelines).unwrap(),
        overlap: Overlap::parse(overlap).unwrap(),
        samples_per_task: Default::default(),
        created_by: None,
    };
    let project = labeling::projects::create_project(&app.db.pool, &new).await.unwrap().id;
    // These tests read samples where they stand: the project keeps task order (the order
    // per assignment is tested in web_answers).
    let keep_order =
        labeling::projects::SettingsChange { shuffle_samples: Some(false), ..Default::default() };
    labeling::projects::update_settings(&app.db.pool, project, &keep_order).await.unwrap();
    let ann = user_id(app, "ann").await;
    labeling::projects::add_member(&app.db.pool, project, ann).await.unwrap();
    let bob = labeling::users::create_user(
        &app.db.pool,
        &Username::parse("bob").unwrap(),
        &DisplayName::parse("bob").unwrap(),
        Role::Annotator,
        &Password::parse("another long password").unwrap(),
    )
    .await
    .unwrap()
    .id;
    World { project, ann, bob }
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

/// Samples of `prompt` with these texts, by an optional model version.
async fn samples(app: &TestApp, project: i64, prompt: i64, version: Option<i64>, texts: &[&str]) -> Vec<i64> {
    let new: Vec<NewSample> =
        texts.iter().map(|t| NewSample { prompt_id: prompt, text: t.to_string(), logprobs: None }).collect();
    tasks::add_samples(&app.db.pool, project, version, None, &json!({}), &new).await.unwrap()
}

/// A ranking task of a new prompt with samples "first".."fourth" (the first `k`).
async fn ranking_task(app: &TestApp, project: i64, prompt_text: &str, k: usize) -> i64 {
    let p = prompt(app, project, prompt_text).await;
    let texts = ["first sample", "second sample", "third sample", "fourth sample"];
    let s = samples(app, project, p, None, &texts[..k]).await;
    tasks::create_ranking_task(&app.db.pool, project, p, &s).await.unwrap()
}

async fn demonstration_task(app: &TestApp, project: i64, prompt_text: &str) -> i64 {
    let p = prompt(app, project, prompt_text).await;
    tasks::create_demonstration_tasks(&app.db.pool, project, &[p]).await.unwrap()[0]
}

fn location(response: &reqwest::Response) -> String {
    response.headers()["location"].to_str().unwrap().to_string()
}

/// The CSRF token of the logged-in session (from the task list).
async fn csrf(app: &TestApp) -> String {
    hidden_value(&app.get_html("/tasks").await, "csrf")
}

/// Presses "Next task" in the project; returns the assignment id it redirects to.
async fn press_next(app: &TestApp, project: i64) -> i64 {
    let csrf = csrf(app).await;
    let response = app.post_form(&format!("/projects/{project}/next"), &[("csrf", &csrf)]).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let to = location(&response);
    to.strip_prefix("/assignments/").unwrap_or_else(|| panic!("redirected to {to}")).parse().unwrap()
}

async fn count(app: &TestApp, table: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT count(*) FROM {table}")).fetch_one(&app.db.pool).await.unwrap()
}

async fn state_of(app: &TestApp, assignment: i64) -> String {
    sqlx::query_scalar("SELECT state::text FROM assignments WHERE id = $1")
        .bind(assignment)
        .fetch_one(&app.db.pool)
        .await
        .unwrap()
}

/// Posts the ranking form of `assignment` (read from its page) with `fields` added.
async fn post_ranking(app: &TestApp, assignment: i64, fields: &[(&str, &str)]) -> reqwest::Response {
    let html = app.get_html(&format!("/assignments/{assignment}")).await;
    let (csrf, key) = (hidden_value(&html, "csrf"), hidden_value(&html, "idempotency_key"));
    let mut form = vec![("csrf", csrf.as_str()), ("idempotency_key", key.as_str())];
    form.extend_from_slice(fields);
    app.post_form(&format!("/assignments/{assignment}/ranking"), &form).await
}

/// The API with `token`: (status, body or Null).
pub(crate) async fn api(
    app: &TestApp,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let request = match method {
        "GET" => client().get(app.url(path)),
        "PUT" => client().put(app.url(path)),
        _ => client().post(app.url(path)),
    };
    let request = request.bearer_auth(token);
    let request = match body {
        Some(body) => request.json(&body),
        None => request,
    };
    let response = request.send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    (status, if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap() })
}

const KEY_1: &str = "6f1c2d3e-4a5b-4c6d-8e7f-001122334455";
const KEY_2: &str = "6f1c2d3e-4a5b-4c6d-8e7f-001122334466";

#[test]
fn the_task_list_shows_the_annotators_projects_with_guidelines_and_next_task() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let w = world(&app, "", 1).await;
        let other = NewProject {
            name: ProjectName::parse("not ann's").unwrap(),
            guidelines: Guidelines::default(),
            overlap: Default::default(),
            samples_per_task: Default::default(),
            created_by: None,
        };
        labeling::projects::create_project(&app.db.pool, &other).await.unwrap();

        let response = app.get("/tasks").await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(location(&response), "/login?next=/tasks");

        app.log_in("ann").await;
        let html = app.get_html("/tasks").await;
        assert!(html.contains("summaries"), "{html}");
        assert!(html.contains(&format!("href=\"/projects/{}/guidelines\"", w.project)), "{html}");
        assert!(html.contains(&format!("action=\"/projects/{}/next\"", w.project)), "{html}");
        assert!(!html.contains("not ann&#39;s") && !html.contains("not ann's"), "{html}");

        // A researcher may pilot any project.
        app.log_in("rita").await;
        let html = app.get_html("/tasks").await;
        assert!(html.contains("summaries") && html.contains("not ann"), "{html}");
    });
}

#[test]
fn an_annotators_home_lists_their_projects_with_open_tasks_and_a_start_button_and_no_projects_link() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let w = world(&app, "", 1).await;
        for text in ["one", "two", "three"] {
            ranking_task(&app, w.project, text, 2).await;
        }
        // Overlap 1: the task bob holds is no longer open to ann.
        tasks::next_task(&app.db.pool, w.project, w.bob, Duration::from_secs(600)).await.unwrap().unwrap();

        app.log_in("ann").await;
        let html = app.get_html("/").await;
        assert!(html.contains("summaries"), "{html}");
        assert!(html.contains("<span class=\"open-tasks\">2</span> tasks open for you"), "{html}");
        assert!(html.contains(&format!("action=\"/projects/{}/next\"", w.project)), "{html}");
        assert!(html.contains(">Start</button>"), "{html}");
        assert!(!html.contains("href=\"/projects\""), "an annotator cannot open /projects: {html}");

        // The task ann holds still counts as open for her; Start takes her to it.
        let held = press_next(&app, w.project).await;
        let html = app.get_html("/").await;
        assert!(html.contains("<span class=\"open-tasks\">2</span>"), "{html}");
        assert_eq!(press_next(&app, w.project).await, held);

        app.log_in("rita").await;
        let html = app.get_html("/").await;
        assert!(html.contains("href=\"/projects\""), "{html}");
    });
}

#[test]
fn a_task_page_gives_the_lease_end_as_a_machine_readable_time_with_utc_text() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let w = world(&app, "", 1).await;
        ranking_task(&app, w.project, "one", 2).await;
        app.log_in("ann").await;
        let assignment = press_next(&app, w.project).await;
        let html = app.get_html(&format!("/assignments/{assignment}")).await;

        let lease_until: chrono::DateTime<chrono::Utc> =
            sqlx::query_scalar("SELECT lease_until FROM assignments WHERE id = $1")
                .bind(assignment)
                .fetch_one(&app.db.pool)
                .await
                .unwrap();
        let needle = "<time class=\"lease-until\" datetime=\"";
        let start = html.find(needle).expect("a <time> for the lease") + needle.len();
        let attribute = &html[start..start + html[start..].find('"').unwrap()];
        let parsed =
            chrono::DateTime::parse_from_rfc3339(attribute).unwrap_or_else(|e| panic!("{attribute}: {e}"));
        assert_eq!(parsed.timestamp(), lease_until.timestamp());
        let utc_text = lease_until.format("%Y-%m-%d %H:%M UTC").to_string();
        assert!(html.contains(&format!("\">{utc_text}</time>")), "{html}");
    });
}

#[test]
fn guidelines_are_sanitised_markdown_for_members_and_researchers_and_403_for_others() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let w = world(&app, "# Rules\n\nBe **brief**.\n\n<script>alert(1)</script>", 1).await;
        let path = format!("/projects/{}/guidelines", w.project);
        assert_eq!(app.get(&path).await.status(), StatusCode::SEE_OTHER);

        app.log_in("ann").await;
        let html = app.get_html(&path).await;
        assert!(html.contains("<h1>Rules</h1>") && html.contains("<strong>brief</strong>"), "{html}");
        assert!(!html.contains("<script>alert(1)"), "{html}");
        assert_eq!(app.get("/projects/999999/guidelines").await.status(), StatusCode::NOT_FOUND);

        let bob = client();
        let token = app.token_for("bob").await;
        let response = bob.get(app.url(&path)).bearer_auth(&token).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);

        app.log_in("rita").await;
        assert!(app.get_html(&path).await.contains("<strong>brief</strong>"));
    });
}

#[test]
fn next_task_leases_a_task_redirects_to_it_and_says_when_none_is_left() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let w = world(&app, "", 1).await;
        demonstration_task(&app, w.project, "Write a haiku about rain").await;
        app.log_in("ann").await;
        let path = format!("/projects/{}/next", w.project);

        let response = app.post_form(&path, &[("csrf", "forged")]).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert_eq!(count(&app, "assignments").await, 0);

        let assignment = press_next(&app, w.project).await;
        let owner: i64 = sqlx::query_scalar("SELECT annotator_id FROM assignments WHERE id = $1")
            .bind(assignment)
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
        assert_eq!(owner, w.ann);
        // Pressing again gives the task already held back, not a second one.
        assert_eq!(press_next(&app, w.project).await, assignment);
        assert_eq!(count(&app, "assignments").await, 1);

        // Skipping returns it; with nothing else to do the page says so.
        let csrf = csrf(&app).await;
        let response = app.post_form(&format!("/assignments/{assignment}/skip"), &[("csrf", &csrf)]).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(location(&response), format!("/tasks?note=skipped&done={}", w.project));
        assert_eq!(state_of(&app, assignment).await, "skipped");
        let html = app.get_html(&location(&response)).await;
        assert!(html.contains("Skipped") && html.contains("No more tasks"), "{html}");
        let response = app.post_form(&path, &[("csrf", &csrf)]).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.text().await.unwrap().contains("No tasks right now"));

        // Not a member: 403; a researcher may pilot; an unknown project is a 404.
        let token = app.token_for("bob").await;
        let response =
            client().post(app.url(&path)).bearer_auth(&token).form(&[("csrf", "")]).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        app.log_in("rita").await;
        press_next(&app, w.project).await;
        let csrf = self::csrf(&app).await;
        let response = app.post_form("/projects/999999/next", &[("csrf", &csrf)]).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
    });
}

#[test]
fn a_demonstration_is_stored_from_the_form_and_the_next_task_follows_with_a_saved_note() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let w = world(&app, "", 1).await;
        demonstration_task(&app, w.project, "Explain tides").await;
        demonstration_task(&app, w.project, "Explain rainbows").await;
        app.log_in("ann").await;
        let first = press_next(&app, w.project).await;
        let html = app.get_html(&format!("/assignments/{first}")).await;
        assert!(html.contains("Explain tides") && html.contains("name=\"text\""), "{html}");
        assert!(html.contains("id=\"skip\""), "{html}");
        let (csrf, key) = (hidden_value(&html, "csrf"), hidden_value(&html, "idempotency_key"));
        let rendered_at = hidden_value(&html, "rendered_at");
        let path = format!("/assignments/{first}/demonstration");

        // A blank response: the page again, the field named, nothing stored.
        let form = [("csrf", csrf.as_str()), ("idempotency_key", &key), ("text", "   ")];
        let response = app.post_form(&path, &form).await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert!(response.text().await.unwrap().contains("text: must not be empty"));
        assert_eq!(count(&app, "demonstrations").await, 0);

        let form = [
            ("csrf", csrf.as_str()),
            ("idempotency_key", &key),
            ("rendered_at", &rendered_at),
            ("time_spent_ms", ""),
            ("text", "The moon pulls the sea."),
        ];
        let response = app.post_form(&path, &form).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        let next = location(&response);
        assert!(next.starts_with("/assignments/") && next.ends_with("?note=saved"), "{next}");
        assert!(!next.starts_with(&format!("/assignments/{first}?")), "{next}");
        let html = app.get_html(&next).await;
        assert!(html.contains("Saved") && html.contains("Explain rainbows"), "{html}");

        let (text, time_spent): (String, Option<i32>) =
            sqlx::query_as("SELECT response, time_spent_ms FROM demonstrations")
                .fetch_one(&app.db.pool)
                .await
                .unwrap();
        assert_eq!(text, "The moon pulls the sea.");
        assert!(time_spent.is_some_and(|ms| ms >= 0), "estimated from the render time: {time_spent:?}");
        assert_eq!(state_of(&app, first).await, "submitted");
        // The answered task's page says so instead of showing the form again.
        let html = app.get_html(&format!("/assignments/{first}")).await;
        assert!(html.contains("You answered this task") && !html.contains("name=\"text\""), "{html}");
    });
}

#[test]
fn a_ranking_with_a_tie_flags_likert_and_comment_from_the_form_is_stored_exactly() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let w = world(&app, "", 1).await;
        let task = ranking_task(&app, w.project, "Summarise the report", 4).await;
        app.log_in("ann").await;
        let assignment = press_next(&app, w.project).await;
        let fields = [
            ("rank_0", "2"),
            ("rank_1", "1"),
            ("rank_2", "1"),
            ("rank_3", "3"),
            ("likert_0", "5"),
            ("likert_3", "1"),
            ("flag_3", "harmful"),
            ("flag_3", "hallucination"),
            ("flag_0", "other"),
            ("comment", "B and C are as good; D is rude"),
            ("time_spent_ms", "4321"),
        ];
        let response = post_ranking(&app, assignment, &fields).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(location(&response), format!("/tasks?note=saved&done={}", w.project));

        type Row = (i64, Vec<i16>, bool, Option<Vec<Option<i16>>>, String, Option<i32>);
        let (task_id, ranks, all_bad, likert, comment, time_spent): Row = sqlx::query_as(
            "SELECT task_id, ranks, all_bad, likert, comment, time_spent_ms FROM rankings WHERE assignment_id = $1",
        )
        .bind(assignment)
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
        assert_eq!(task_id, task);
        assert_eq!(ranks, [1, 0, 0, 2]);
        assert!(!all_bad);
        assert_eq!(likert, Some(vec![Some(5), None, None, Some(1)]));
        assert_eq!(comment, "B and C are as good; D is rude");
        assert_eq!(time_spent, Some(4321));
        let flags: Vec<(i16, String)> =
            sqlx::query_as("SELECT position, flag::text FROM ranking_flags f ORDER BY f.position, f.flag")
                .fetch_all(&app.db.pool)
                .await
                .unwrap();
        let flags: Vec<(i16, &str)> = flags.iter().map(|(p, f)| (*p, f.as_str())).collect();
        assert_eq!(flags, [(0, "other"), (3, "harmful"), (3, "hallucination")]);
    });
}

#[test]
fn ranks_with_a_gap_are_refused_with_422_keeping_the_input_and_nothing_is_stored() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let w = world(&app, "", 1).await;
        ranking_task(&app, w.project, "Rank these", 3).await;
        app.log_in("ann").await;
        let assignment = press_next(&app, w.project).await;
        let fields = [
            ("rank_0", "1"),
            ("rank_1", "3"),
            ("rank_2", "3"),
            ("flag_2", "not_followed"),
            ("likert_1", "6"),
            ("comment", "kept comment"),
        ];
        let response = post_ranking(&app, assignment, &fields).await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let html = response.text().await.unwrap();
        assert!(html.contains("no response is ranked 2"), "{html}");
        assert!(html.contains("role=\"alert\""), "{html}");
        // What was picked is still picked.
        let select = html.split("name=\"rank_1\"").nth(1).unwrap().split("</select>").next().unwrap();
        assert!(select.contains("<option value=\"3\" selected>"), "{select}");
        let flags = html.split("name=\"flag_2\" value=\"not_followed\"").nth(1).unwrap();
        assert!(flags.starts_with(" checked"), "{}", &flags[..40]);
        let likert = html.split("name=\"likert_1\"").nth(1).unwrap().split("</select>").next().unwrap();
        assert!(likert.contains("<option value=\"6\" selected>"), "{likert}");
        assert!(html.contains(">kept comment</textarea>"), "{html}");
        assert_eq!(count(&app, "rankings").await, 0);
        assert_eq!(state_of(&app, assignment).await, "leased");

        // A missing rank names the response; an unknown flag is refused too.
        let response = post_ranking(&app, assignment, &[("rank_0", "1"), ("rank_1", "2")]).await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert!(response.text().await.unwrap().contains("response C has no rank"));
        let fields = [("rank_0", "1"), ("rank_1", "2"), ("rank_2", "3"), ("flag_0", "boring")];
        let response = post_ranking(&app, assignment, &fields).await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert!(response.text().await.unwrap().contains("`boring` is not one of"));
        assert_eq!(count(&app, "rankings").await, 0);
        assert_eq!(count(&app, "ranking_flags").await, 0);
    });
}

#[test]
fn a_double_submitted_ranking_is_stored_once_and_both_posts_go_to_the_same_place() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let w = world(&app, "", 1).await;
        ranking_task(&app, w.project, "Rank these", 2).await;
        ranking_task(&app, w.project, "Rank those", 2).await;
        app.log_in("ann").await;
        let assignment = press_next(&app, w.project).await;
        let html = app.get_html(&format!("/assignments/{assignment}")).await;
        let (csrf, key) = (hidden_value(&html, "csrf"), hidden_value(&html, "idempotency_key"));
        let form = [("csrf", csrf.as_str()), ("idempotency_key", &key), ("rank_0", "2"), ("rank_1", "1")];
        let path = format!("/assignments/{assignment}/ranking");
        let first = app.post_form(&path, &form).await;
        let second = app.post_form(&path, &form).await;
        assert_eq!(first.status(), StatusCode::SEE_OTHER);
        assert_eq!(second.status(), StatusCode::SEE_OTHER);
        assert_eq!(location(&first), location(&second));
        assert_eq!(count(&app, "rankings").await, 1);
        // The same key with another order is a conflict, not a second ranking.
        let changed = [("csrf", csrf.as_str()), ("idempotency_key", &key), ("rank_0", "1"), ("rank_1", "2")];
        assert_eq!(app.post_form(&path, &changed).await.status(), StatusCode::CONFLICT);
        assert_eq!(count(&app, "rankings").await, 1);
    });
}

#[test]
fn the_ab_page_never_names_the_models_and_a_vote_is_stored() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let w = world(&app, "", 1).await;
        let versions: Vec<i64> = sqlx::query_scalar(
            "WITH m AS (INSERT INTO models (name, latest_version) VALUES ('zebra-policy-secret', 2) RETURNING id)
             INSERT INTO model_versions (model_id, version, kind, artifact_uri, artifact_sha256, artifact_size)
             SELECT m.id, v, 'policy', 'file:///ckpt-' || v, sha256(v::text::bytea), 1
             FROM m, generate_series(1, 2) v RETURNING id",
        )
        .fetch_all(&app.db.pool)
        .await
        .unwrap();
        let p = prompt(&app, w.project, "Tell a joke").await;
        let a = samples(&app, w.project, p, Some(versions[0]), &["joke one"]).await[0];
        let b = samples(&app, w.project, p, Some(versions[1]), &["joke two"]).await[0];
        tasks::create_random_comparison_task(&app.db.pool, w.project, p, a, b).await.unwrap();
        app.log_in("ann").await;
        let assignment = press_next(&app, w.project).await;
        let html = app.get_html(&format!("/assignments/{assignment}")).await;
        assert!(html.contains("Response A") && html.contains("Response B"), "{html}");
        assert!(html.contains("joke one") && html.contains("joke two"), "{html}");
        for secret in ["zebra-policy-secret", "ckpt-", "policy", "version"] {
            assert!(!html.to_lowercase().contains(secret), "{secret} in {html}");
        }
        let (csrf, key) = (hidden_value(&html, "csrf"), hidden_value(&html, "idempotency_key"));
        let path = format!("/assignments/{assignment}/vote");
        let response =
            app.post_form(&path, &[("csrf", &csrf), ("idempotency_key", &key), ("vote", "maybe")]).await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let form =
            [("csrf", csrf.as_str()), ("idempotency_key", &key), ("vote", "b"), ("comment", "funnier")];
        let response = app.post_form(&path, &form).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        let (vote, comment): (String, String) =
            sqlx::query_as("SELECT vote::text, comment FROM comparison_votes")
                .fetch_one(&app.db.pool)
                .await
                .unwrap();
        assert_eq!((vote.as_str(), comment.as_str()), ("b", "funnier"));
    });
}

#[test]
fn a_prompt_and_samples_with_script_tags_are_shown_escaped() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let w = world(&app, "", 1).await;
        let script = "<script>alert('x')</script>";
        let p = prompt(&app, w.project, script).await;
        let s = samples(&app, w.project, p, None, &["<b>bold?</b>", script]).await;
        tasks::create_ranking_task(&app.db.pool, w.project, p, &s).await.unwrap();
        app.log_in("ann").await;
        let assignment = press_next(&app, w.project).await;
        let html = app.get_html(&format!("/assignments/{assignment}")).await;
        assert!(!html.contains(script) && !html.contains("<b>bold?</b>"), "{html}");
        assert!(html.contains("&#60;script&#62;") || html.contains("&lt;script&gt;"), "{html}");
    });
}

#[test]
fn the_ranking_page_has_the_controls_a_browser_relies_on_and_its_script_is_served() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let w = world(&app, "", 1).await;
        ranking_task(&app, w.project, "Rank these", 3).await;
        app.log_in("ann").await;
        let assignment = press_next(&app, w.project).await;
        let html = app.get_html(&format!("/assignments/{assignment}")).await;
        assert_eq!(html.matches("class=\"sample-card\"").count(), 3, "{html}");
        for hook in [
            "id=\"ranking-form\"",
            "id=\"samples\"",
            "id=\"layout-toggle\"",
            "id=\"rank-status\"",
            "aria-live=\"polite\"",
            "data-action=\"tie-above\"",
            "class=\"drag-handle\"",
            "draggable=\"true\"",
            "tabindex=\"0\"",
            "name=\"rank_2\"",
            "name=\"likert_2\"",
            "name=\"flag_2\" value=\"fails_task\"",
            "name=\"all_bad\"",
            "name=\"comment\"",
            "name=\"time_spent_ms\"",
            "id=\"submit\"",
            "src=\"/static/ranking.js\"",
        ] {
            assert!(html.contains(hook), "{hook} missing");
        }
        let select = html.split("name=\"rank_0\"").nth(1).unwrap().split("</select>").next().unwrap();
        assert_eq!(select.matches("<option").count(), 4, "a blank and 1..3: {select}");
        let response = app.get("/static/ranking.js").await;
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/javascript"));
        assert!(response.text().await.unwrap().contains("pointerdown"));
        assert_eq!(app.get("/static/task.css").await.status(), StatusCode::OK);
        assert_eq!(app.get("/static/task.js").await.status(), StatusCode::OK);
    });
}

#[test]
fn only_the_assignments_own_annotator_may_see_or_answer_it() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let w = world(&app, "", 2).await;
        labeling::projects::add_member(&app.db.pool, w.project, w.bob).await.unwrap();
        ranking_task(&app, w.project, "Rank these", 2).await;
        let bobs = tasks::next_task(&app.db.pool, w.project, w.bob, Duration::from_secs(600))
            .await
            .unwrap()
            .unwrap()
            .id;

        let page = format!("/assignments/{bobs}");
        let response = app.get(&page).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(location(&response), format!("/login?next={page}"));
        assert_eq!(app.get(&format!("/api/assignments/{bobs}")).await.status(), StatusCode::UNAUTHORIZED);

        app.log_in("ann").await;
        let csrf = csrf(&app).await;
        assert_eq!(app.get(&page).await.status(), StatusCode::FORBIDDEN);
        let form = [("csrf", csrf.as_str()), ("idempotency_key", KEY_1), ("rank_0", "1"), ("rank_1", "2")];
        assert_eq!(app.post_form(&format!("{page}/ranking"), &form).await.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            app.post_form(&format!("{page}/skip"), &[("csrf", &csrf)]).await.status(),
            StatusCode::FORBIDDEN
        );
        assert_eq!(app.get("/assignments/999999").await.status(), StatusCode::NOT_FOUND);

        let token = app.token_for("ann").await;
        let (status, _) = api(&app, &token, "GET", &format!("/api/assignments/{bobs}"), None).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let body = json!({ "ranks": [1, 2], "idempotency_key": KEY_1 });
        let (status, _) =
            api(&app, &token, "POST", &format!("/api/assignments/{bobs}/ranking"), Some(body)).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, _) = api(&app, &token, "POST", &format!("/api/assignments/{bobs}/skip"), None).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(count(&app, "rankings").await, 0);
        assert_eq!(state_of(&app, bobs).await, "leased");
    });
}

#[test]
fn the_api_runs_a_whole_session_with_a_token() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let w = world(&app, "", 1).await;
        let ranking = ranking_task(&app, w.project, "Rank these", 3).await;
        demonstration_task(&app, w.project, "Write a limerick").await;
        let p = prompt(&app, w.project, "Compare these").await;
        let s = samples(&app, w.project, p, None, &["left", "right"]).await;
        tasks::create_random_comparison_task(&app.db.pool, w.project, p, s[0], s[1]).await.unwrap();
        let token = app.token_for("ann").await;

        let (status, projects) = api(&app, &token, "GET", "/api/me/projects", None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(projects[0]["id"], w.project);

        let next = format!("/api/projects/{}/tasks/next", w.project);
        let (status, a) = api(&app, &token, "POST", &next, None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            (a["kind"].as_str(), a["task_id"].as_i64(), a["k"].as_i64()),
            (Some("ranking"), Some(ranking), Some(3))
        );
        assert_eq!(a["project_id"], w.project);
        assert_eq!(a["prompt"]["text"], "Rank these");
        assert_eq!(a["samples"][1]["text"], "second sample");
        assert!(a["samples"][1]["id"].is_i64() && a["lease_until"].is_string(), "{a}");
        let id = a["assignment_id"].as_i64().unwrap();
        let (status, again) = api(&app, &token, "GET", &format!("/api/assignments/{id}"), None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            (again["samples"].clone(), again["state"].as_str()),
            (a["samples"].clone(), Some("leased"))
        );

        // Bad input: 422 naming the field, nothing stored.
        let submit = format!("/api/assignments/{id}/ranking");
        for (body, field) in [
            (json!({ "ranks": [1, 3, 3], "idempotency_key": KEY_1 }), "ranks"),
            (json!({ "ranks": [1, 2, 3] }), "idempotency_key"),
            (json!({ "ranks": [1, 2, 3], "flags": [[0, "boring"]], "idempotency_key": KEY_1 }), "flag"),
            (json!({ "ranks": [1, 2, 3], "likert": [1, 2], "idempotency_key": KEY_1 }), "likert"),
            (json!({ "idempotency_key": KEY_1 }), "ranking"),
        ] {
            let (status, error) = api(&app, &token, "POST", &submit, Some(body.clone())).await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
            assert_eq!(error["error"]["field"], field, "{body}: {error}");
        }
        let (status, _) = api(
            &app,
            &token,
            "POST",
            &format!("/api/assignments/{id}/vote"),
            Some(json!({"vote": "a", "idempotency_key": KEY_1})),
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "a vote on a ranking task");
        assert_eq!(count(&app, "rankings").await, 0);

        let body = json!({
            "ranks": [2, 1, 1], "likert": [3, null, 6], "flags": [[0, "fails_task"]],
            "comment": "close call", "idempotency_key": KEY_1, "time_spent_ms": 900
        });
        let (status, stored) = api(&app, &token, "POST", &submit, Some(body.clone())).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(stored["stored"], true);
        let (status, retried) = api(&app, &token, "POST", &submit, Some(body)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!((retried["id"].clone(), retried["stored"].clone()), (stored["id"].clone(), json!(false)));
        let changed = json!({ "ranks": [1, 2, 3], "idempotency_key": KEY_1 });
        assert_eq!(api(&app, &token, "POST", &submit, Some(changed)).await.0, StatusCode::CONFLICT);
        let ranks: Vec<i16> =
            sqlx::query_scalar("SELECT ranks FROM rankings").fetch_one(&app.db.pool).await.unwrap();
        assert_eq!(ranks, [1, 0, 0]);

        let (_, a) = api(&app, &token, "POST", &next, None).await;
        assert_eq!(a["kind"], "demonstration");
        let demo = format!("/api/assignments/{}/demonstration", a["assignment_id"]);
        let (status, error) =
            api(&app, &token, "POST", &demo, Some(json!({"text": "", "idempotency_key": KEY_2}))).await;
        assert_eq!(
            (status, error["error"]["field"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("text"))
        );
        let body = json!({ "text": "There once was a model", "idempotency_key": KEY_2 });
        let (status, stored) = api(&app, &token, "POST", &demo, Some(body)).await;
        assert_eq!((status, stored["stored"].clone()), (StatusCode::OK, json!(true)));

        let (_, a) = api(&app, &token, "POST", &next, None).await;
        assert_eq!((a["kind"].as_str(), a["k"].as_i64()), (Some("comparison"), Some(2)));
        let vote = format!("/api/assignments/{}/vote", a["assignment_id"]);
        let (status, error) =
            api(&app, &token, "POST", &vote, Some(json!({"vote": "c", "idempotency_key": KEY_1}))).await;
        assert_eq!(
            (status, error["error"]["field"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("vote"))
        );
        let body = json!({ "vote": "both_bad", "idempotency_key": "1f1c2d3e-4a5b-4c6d-8e7f-001122334455" });
        assert_eq!(api(&app, &token, "POST", &vote, Some(body)).await.0, StatusCode::OK);

        let (status, none) = api(&app, &token, "POST", &next, None).await;
        assert_eq!((status, none), (StatusCode::NO_CONTENT, Value::Null));

        let (status, history) = api(&app, &token, "GET", "/api/me/history?limit=10", None).await;
        assert_eq!(status, StatusCode::OK);
        let kinds: Vec<&str> =
            history["items"].as_array().unwrap().iter().map(|i| i["kind"].as_str().unwrap()).collect();
        assert_eq!(kinds.len(), 3, "{history}");
        assert!(
            kinds.contains(&"ranking") && kinds.contains(&"demonstration") && kinds.contains(&"comparison")
        );
        let (status, _) = api(&app, &token, "GET", "/api/me/history?limit=0", None).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        let (status, agreement) = api(&app, &token, "GET", "/api/me/agreement", None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            (agreement[0]["project_id"].as_i64(), agreement[0]["tasks_shared"].as_i64()),
            (Some(w.project), Some(0))
        );
    });
}

#[test]
fn the_api_skips_a_task_and_refuses_a_session_post_without_its_csrf_token() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let w = world(&app, "", 1).await;
        demonstration_task(&app, w.project, "Explain tides").await;
        app.log_in("ann").await;
        let next = app.url(&format!("/api/projects/{}/tasks/next", w.project));
        let response = app.client.post(&next).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert_eq!(count(&app, "assignments").await, 0);
        let csrf = csrf(&app).await;
        let response = app.client.post(&next).json(&json!({ "csrf": csrf })).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let id = response.json::<Value>().await.unwrap()["assignment_id"].as_i64().unwrap();

        let skip = app.url(&format!("/api/assignments/{id}/skip"));
        assert_eq!(app.client.post(&skip).send().await.unwrap().status(), StatusCode::FORBIDDEN);
        let response = app.client.post(&skip).json(&json!({ "csrf": csrf })).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.json::<Value>().await.unwrap()["state"], "skipped");
        assert_eq!(state_of(&app, id).await, "skipped");
        // Skipping twice is a conflict; the task never comes back to its skipper.
        assert_eq!(
            app.client.post(&skip).json(&json!({ "csrf": csrf })).send().await.unwrap().status(),
            StatusCode::CONFLICT
        );
        let response = app.client.post(&next).json(&json!({ "csrf": csrf })).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
    });
}

#[test]
fn the_history_lists_own_work_and_agreement_with_the_other_annotator() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let w = world(&app, "", 2).await;
        labeling::projects::add_member(&app.db.pool, w.project, w.bob).await.unwrap();
        ranking_task(&app, w.project, "Which summary is best?", 3).await;
        assert_eq!(app.get("/history").await.status(), StatusCode::SEE_OTHER);

        app.log_in("ann").await;
        let assignment = press_next(&app, w.project).await;
        let fields = [("rank_0", "1"), ("rank_1", "2"), ("rank_2", "3"), ("comment", "easy one")];
        assert_eq!(post_ranking(&app, assignment, &fields).await.status(), StatusCode::SEE_OTHER);
        // Bob orders the last two the other way: 2 of 3 pairs agree, τ-b = (2 − 1) / 3.
        let bobs = tasks::next_task(&app.db.pool, w.project, w.bob, Duration::from_secs(600))
            .await
            .unwrap()
            .unwrap();
        let input = labeling::annotation::RankingInput {
            ranking: Some(vec![vec![0], vec![2], vec![1]]),
            ..Default::default()
        };
        let submission = labeling::annotation::RankingSubmission::parse(3, input).unwrap();
        labeling::submit::submit_ranking(
            &app.db.pool,
            w.bob,
            bobs.id,
            &submission,
            labeling::annotation::IdempotencyKey::new(),
        )
        .await
        .unwrap();

        let html = app.get_html("/history").await;
        assert!(html.contains("Which summary is best?"), "{html}");
        assert!(html.contains("A &gt; B &gt; C") || html.contains("A &#62; B &#62; C"), "{html}");
        assert!(html.contains("easy one"), "{html}");
        assert!(html.contains("67 %") && html.contains("0.33"), "{html}");

        let token = app.token_for("ann").await;
        let (_, agreement) = api(&app, &token, "GET", "/api/me/agreement", None).await;
        let rate = agreement[0]["agreement_rate"].as_f64().unwrap();
        assert!((rate - 2.0 / 3.0).abs() < 1e-9, "{agreement}");
        assert_eq!(
            (agreement[0]["tasks_shared"].as_i64(), agreement[0]["partners"].as_i64()),
            (Some(1), Some(1))
        );
        let (_, history) = api(&app, &token, "GET", "/api/me/history", None).await;
        assert_eq!(history["items"][0]["ranks"], json!([0, 1, 2]));
        assert_eq!(history["items"].as_array().unwrap().len(), 1, "only ann's own work: {history}");
    });
}

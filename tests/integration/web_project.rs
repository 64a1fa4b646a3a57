//! The project page over HTTP: guidelines (Markdown rendered safely, previewed before
//! saving), overlap and K, members added by username and removed; the role and CSRF
//! checks; and the same through the JSON API.

use labeling::domain::{Guidelines, ProjectName};
use labeling::projects::{self, NewProject, Project};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::db::with_db;
use crate::web_app::{client, hidden_value, spawn_app, TestApp};

async fn new_project(app: &TestApp, name: &str) -> i64 {
    let new = NewProject {
        name: ProjectName::parse(name).unwrap(),
        guidelines: Guidelines::parse("Be **kind**.").unwrap(),
        overlap: Default::default(),
        samples_per_task: Default::default(),
        created_by: None,
    };
    projects::create_project(&app.db.pool, &new).await.unwrap().id
}

async fn stored(app: &TestApp, id: i64) -> Project {
    projects::get_project(&app.db.pool, id).await.unwrap()
}

async fn member_names(app: &TestApp, id: i64) -> Vec<String> {
    projects::members(&app.db.pool, id).await.unwrap().into_iter().map(|u| u.username).collect()
}

async fn user_id(app: &TestApp, username: &str) -> i64 {
    labeling::users::get_user_by_username(&app.db.pool, username).await.unwrap().id
}

/// Logs `rita` in and returns the CSRF token from the project page.
async fn as_rita(app: &TestApp, project: i64) -> String {
    app.log_in("rita").await;
    hidden_value(&app.get_html(&format!("/projects/{project}")).await, "csrf")
}

fn location(response: &reqwest::Response) -> String {
    response.headers()["location"].to_str().unwrap().to_string()
}

#[test]
fn the_project_page_links_its_pages_and_shows_guidelines_settings_and_members() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let project = new_project(&app, "summaries").await;
        projects::add_member(&app.db.pool, project, user_id(&app, "ann").await).await.unwrap();
        app.log_in("rita").await;
        let html = app.get_html(&format!("/projects/{project}")).await;
        for link in [
            format!("href=\"/projects/{project}/prompts\""),
            format!("href=\"/projects/{project}/data\""),
            format!("href=\"/runs?project={project}\""),
        ] {
            assert!(html.contains(&link), "{link} in {html}");
        }
        assert!(html.contains("<strong>kind</strong>"), "the guidelines are rendered: {html}");
        assert!(html.contains("Be **kind**."), "the textarea holds the source: {html}");
        assert!(html.contains("data-member=\"ann\"") && html.contains("annotator"), "{html}");
        assert!(html.contains("id=\"overlap\"") && html.contains("value=\"1\""), "{html}");
        // The projects list links here.
        let list = app.get_html("/projects").await;
        assert!(list.contains(&format!("href=\"/projects/{project}\"")), "{list}");
    });
}

#[test]
fn saved_guidelines_render_bold_and_lose_their_script() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let project = new_project(&app, "markdown").await;
        let csrf = as_rita(&app, project).await;
        let source =
            "# Rules\n\n**bold** words\n\n<script>alert('x')</script>\n\n<img src=x onerror=alert(1)>";
        let response = app
            .post_form(
                &format!("/projects/{project}/guidelines"),
                &[("guidelines", source), ("action", "save"), ("csrf", &csrf)],
            )
            .await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(location(&response), format!("/projects/{project}"));
        assert_eq!(stored(&app, project).await.guidelines, source);
        let html = app.get_html(&format!("/projects/{project}")).await;
        assert!(html.contains("<strong>bold</strong>") && html.contains("<h1>Rules</h1>"), "{html}");
        assert!(!html.contains("<script>alert") && !html.contains("<img src=x"), "no live markup: {html}");
        let preview = &html[html.find("id=\"guidelines-preview\"").unwrap()..];
        let preview = &preview[..preview.find("</div>").unwrap()];
        assert!(preview.contains("<strong>bold</strong>"), "{preview}");
        assert!(!preview.contains("script") && !preview.contains("onerror"), "sanitised: {preview}");
    });
}

#[test]
fn a_preview_shows_the_draft_rendered_and_saves_nothing() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let project = new_project(&app, "preview").await;
        let csrf = as_rita(&app, project).await;
        let response = app
            .post_form(
                &format!("/projects/{project}/guidelines"),
                &[("guidelines", "Draft with *emphasis*"), ("action", "preview"), ("csrf", &csrf)],
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        let html = response.text().await.unwrap();
        assert!(html.contains("<em>emphasis</em>") && html.contains("Preview (not saved)"), "{html}");
        assert_eq!(stored(&app, project).await.guidelines, "Be **kind**.");
    });
}

#[test]
fn overlap_and_k_are_saved_and_out_of_range_values_are_refused_naming_the_field() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let project = new_project(&app, "settings").await;
        let csrf = as_rita(&app, project).await;
        let path = format!("/projects/{project}/settings");
        let response =
            app.post_form(&path, &[("overlap", "3"), ("samples_per_task", "5"), ("csrf", &csrf)]).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        let saved = stored(&app, project).await;
        assert_eq!((saved.overlap, saved.samples_per_task), (3, 5));
        for (overlap, k, field) in [
            ("0", "4", "overlap"),
            ("21", "4", "overlap"),
            ("2", "10", "samples per task"),
            ("x", "4", "overlap"),
        ] {
            let response =
                app.post_form(&path, &[("overlap", overlap), ("samples_per_task", k), ("csrf", &csrf)]).await;
            assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY, "{overlap} {k}");
            let html = response.text().await.unwrap();
            assert!(html.contains("role=\"alert\"") && html.contains(field), "{field} in {html}");
        }
        let saved = stored(&app, project).await;
        assert_eq!((saved.overlap, saved.samples_per_task), (3, 5), "nothing changed");
    });
}

#[test]
fn annotators_are_added_by_username_and_removed_and_an_unknown_name_is_refused() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let project = new_project(&app, "people").await;
        let csrf = as_rita(&app, project).await;
        let add = format!("/projects/{project}/members");
        let response = app.post_form(&add, &[("username", "ann"), ("csrf", &csrf)]).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(member_names(&app, project).await, ["ann"]);
        let response = app.post_form(&add, &[("username", "nobody"), ("csrf", &csrf)]).await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let html = response.text().await.unwrap();
        assert!(html.contains("username") && html.contains("nobody"), "{html}");
        assert_eq!(member_names(&app, project).await, ["ann"]);

        let ann = user_id(&app, "ann").await;
        let remove = format!("/projects/{project}/members/{ann}/remove");
        let response = app.post_form(&remove, &[("csrf", &csrf)]).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert!(member_names(&app, project).await.is_empty());
        let response = app.post_form(&remove, &[("csrf", &csrf)]).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
    });
}

#[test]
fn a_logged_out_visitor_is_sent_to_log_in_and_an_annotator_is_refused_everywhere() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let project = new_project(&app, "closed").await;
        let page = format!("/projects/{project}");
        let response = app.get(&page).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(location(&response), format!("/login?next=/projects/{project}"));
        let response = app.get(&format!("/api/projects/{project}")).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(response.json::<Value>().await.unwrap()["error"]["status"], 401);

        app.log_in("ann").await;
        let csrf = hidden_value(&app.get_html("/").await, "csrf");
        assert_eq!(app.get(&page).await.status(), StatusCode::FORBIDDEN);
        for (path, form) in [
            (format!("{page}/guidelines"), vec![("guidelines", "mine"), ("action", "save")]),
            (format!("{page}/settings"), vec![("overlap", "5"), ("samples_per_task", "5")]),
            (format!("{page}/members"), vec![("username", "ann")]),
        ] {
            let mut form = form;
            form.push(("csrf", &csrf));
            assert_eq!(app.post_form(&path, &form).await.status(), StatusCode::FORBIDDEN, "{path}");
        }
        let token = app.token_for("ann").await;
        let api = app.url(&format!("/api/projects/{project}"));
        let response = client().get(&api).bearer_auth(&token).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        let response =
            client().put(&api).bearer_auth(&token).json(&json!({"overlap": 5})).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        let response = client()
            .post(format!("{api}/members"))
            .bearer_auth(&token)
            .json(&json!({"username": "ann"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        let unchanged = stored(&app, project).await;
        assert_eq!((unchanged.guidelines.as_str(), unchanged.overlap), ("Be **kind**.", 1));
        assert!(member_names(&app, project).await.is_empty());
    });
}

#[test]
fn a_form_without_the_sessions_csrf_token_changes_nothing() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let project = new_project(&app, "forged").await;
        as_rita(&app, project).await;
        for csrf in ["", "0000"] {
            let response = app
                .post_form(
                    &format!("/projects/{project}/guidelines"),
                    &[("guidelines", "forged"), ("action", "save"), ("csrf", csrf)],
                )
                .await;
            assert_eq!(response.status(), StatusCode::FORBIDDEN);
            let response = app
                .post_form(&format!("/projects/{project}/members"), &[("username", "ann"), ("csrf", csrf)])
                .await;
            assert_eq!(response.status(), StatusCode::FORBIDDEN);
        }
        assert_eq!(stored(&app, project).await.guidelines, "Be **kind**.");
        assert!(member_names(&app, project).await.is_empty());
        // A session's JSON DELETE needs the token in X-CSRF-Token.
        let response =
            app.client.delete(app.url(&format!("/api/projects/{project}/members/ann"))).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
    });
}

#[test]
fn a_missing_project_is_404_on_the_page_and_in_the_api() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        app.log_in("rita").await;
        assert_eq!(app.get("/projects/999999").await.status(), StatusCode::NOT_FOUND);
        let response = app.get("/api/projects/999999").await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert_eq!(response.json::<Value>().await.unwrap()["error"]["status"], 404);
    });
}

#[test]
fn who_is_asking_is_checked_before_which_project_the_path_names() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        // Logged out: told to log in, whether or not the project exists.
        for path in ["/projects/999999", "/projects/999999/data", "/projects/999999/prompts"] {
            let response = app.get(path).await;
            assert_eq!(response.status(), StatusCode::SEE_OTHER, "{path}");
            assert_eq!(location(&response), format!("/login?next={path}"));
        }
        for path in ["/api/projects/999999", "/api/projects/not-a-number/snapshots"] {
            assert_eq!(app.get(path).await.status(), StatusCode::UNAUTHORIZED, "{path}");
        }
        // An annotator: not for their role, whether or not the project exists.
        app.log_in("ann").await;
        for path in ["/projects/999999", "/api/projects/999999/data", "/api/projects/not-a-number"] {
            assert_eq!(app.get(path).await.status(), StatusCode::FORBIDDEN, "{path}");
        }
        // A researcher: a missing project is a 404, an id that is not a number a 400, and a
        // member path names both its parts.
        app.log_in("rita").await;
        assert_eq!(app.get("/api/projects/999999/data").await.status(), StatusCode::NOT_FOUND);
        let response = app.get("/api/projects/not-a-number/data").await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(response.json::<Value>().await.unwrap()["error"]["status"], 400);
        let project = new_project(&app, "paths").await;
        let csrf = hidden_value(&app.get_html("/").await, "csrf");
        let remove = format!("/projects/{project}/members/999999/remove");
        let response = app.post_form(&remove, &[("csrf", &csrf)]).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert!(response
            .text()
            .await
            .unwrap()
            .contains(&format!("user 999999 is not a member of project {project}")));
    });
}

#[test]
fn the_api_reads_and_changes_settings_and_members_and_names_bad_fields() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let project = new_project(&app, "scripted").await;
        let token = app.token_for("rita").await;
        let api = app.url(&format!("/api/projects/{project}"));
        let body: Value = client().get(&api).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
        assert_eq!(body["project"]["name"], "scripted");
        assert!(body["guidelines_html"].as_str().unwrap().contains("Be <strong>kind</strong>."), "{body}");
        assert_eq!(body["members"], json!([]));

        let response = client()
            .put(&api)
            .bearer_auth(&token)
            .json(&json!({"guidelines": "# Hi\n<script>x()</script>", "overlap": 2, "samples_per_task": 6}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        assert_eq!(
            (body["project"]["overlap"].as_i64(), body["project"]["samples_per_task"].as_i64()),
            (Some(2), Some(6))
        );
        let html = body["guidelines_html"].as_str().unwrap();
        assert!(html.contains("<h1>Hi</h1>") && !html.contains("<script"), "{html}");

        for (change, field) in
            [(json!({"overlap": 0}), "overlap"), (json!({"samples_per_task": 1}), "samples per task")]
        {
            let response = client().put(&api).bearer_auth(&token).json(&change).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
            assert_eq!(response.json::<Value>().await.unwrap()["error"]["field"], field);
        }
        assert_eq!(stored(&app, project).await.overlap, 2);

        let members = format!("{api}/members");
        let response = client()
            .post(&members)
            .bearer_auth(&token)
            .json(&json!({"username": "ann"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body[0]["username"], "ann");
        assert_eq!(body[0]["role"], "annotator");
        let response = client()
            .post(&members)
            .bearer_auth(&token)
            .json(&json!({"username": "ghost"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "no user is named so");
        let message = response.json::<Value>().await.unwrap()["error"]["message"].to_string();
        assert!(message.contains("username") && message.contains("ghost"), "{message}");

        let response = client().delete(format!("{members}/ann")).bearer_auth(&token).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.json::<Value>().await.unwrap(), json!([]));
        let response = client().delete(format!("{members}/ann")).bearer_auth(&token).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
    });
}

#[test]
fn a_browser_session_uses_the_api_with_its_csrf_token() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let project = new_project(&app, "session").await;
        let csrf = as_rita(&app, project).await;
        let members = app.url(&format!("/api/projects/{project}/members"));
        let response = app.client.post(&members).json(&json!({"username": "ann"})).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "no token in the body");
        let response =
            app.client.post(&members).json(&json!({"username": "ann", "csrf": csrf})).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        let response =
            app.client.delete(format!("{members}/ann")).header("X-CSRF-Token", &csrf).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(member_names(&app, project).await.is_empty());
    });
}

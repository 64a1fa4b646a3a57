//! The researchers' prompt pages over HTTP: uploading JSON lines or CSV with a per-line
//! report, browsing and searching, the role and CSRF checks, and the JSON API.

use labeling::domain::{Guidelines, ProjectName};
use labeling::projects::NewProject;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::db::with_db;
use crate::web_app::{client, hidden_value, spawn_app, TestApp};

async fn new_project(app: &TestApp, name: &str) -> i64 {
    let new = NewProject {
        name: ProjectName::parse(name).unwrap(),
        guidelines: Guidelines::default(),
        overlap: Default::default(),
        samples_per_task: Default::default(),
        created_by: None,
    };
    labeling::projects::create_project(&app.db.pool, &new).await.unwrap().id
}

async fn stored_texts(app: &TestApp, project_id: i64) -> Vec<String> {
    sqlx::query_scalar("SELECT text FROM prompts WHERE project_id = $1 ORDER BY id")
        .bind(project_id)
        .fetch_all(&app.db.pool)
        .await
        .unwrap()
}

/// Logs `rita` in, opens the project's prompts page and uploads `data`.
async fn upload(app: &TestApp, project_id: i64, format: &str, data: &str) -> reqwest::Response {
    let page = app.get_html(&format!("/projects/{project_id}/prompts")).await;
    let csrf = hidden_value(&page, "csrf");
    let path = format!("/projects/{project_id}/prompts/upload");
    app.post_form(&path, &[("format", format), ("data", data), ("csrf", &csrf)]).await
}

#[test]
fn a_jsonl_upload_stores_the_good_lines_and_shows_each_bad_line() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let project = new_project(&app, "summaries").await;
        app.log_in("rita").await;
        let data = "{\"prompt\": \"first prompt\"}\n{\"prompt\": \"second\", \"split\": \"val\"}\n\
                    {not json\n{\"prompt\": \"first prompt\"}\n";
        let response = upload(&app, project, "jsonl", data).await;
        assert_eq!(response.status(), StatusCode::OK);
        let html = response.text().await.unwrap();
        assert!(html.contains("2 imported"), "{html}");
        assert!(html.contains("line 3") && html.contains("not valid JSON"), "{html}");
        assert!(html.contains("line 4") && html.contains("the same as line 1"), "{html}");
        assert_eq!(stored_texts(&app, project).await, ["first prompt", "second"]);
        // The page lists them, with the count.
        let html = app.get_html(&format!("/projects/{project}/prompts")).await;
        assert!(html.contains("2 prompts") && html.contains("second"), "{html}");
        let html = app.get_html(&format!("/projects/{project}/prompts?split=val")).await;
        assert!(html.contains("1 prompts") && !html.contains("first prompt"), "{html}");
    });
}

#[test]
fn a_csv_upload_is_imported_and_search_finds_a_prompt_by_substring() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let project = new_project(&app, "csv").await;
        app.log_in("rita").await;
        let data = "prompt,split\n\"Explain tides, briefly\",train\nWrite a haiku about rain,test\n";
        let response = upload(&app, project, "csv", data).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.text().await.unwrap().contains("2 imported"));
        assert_eq!(stored_texts(&app, project).await, ["Explain tides, briefly", "Write a haiku about rain"]);
        let html = app.get_html(&format!("/projects/{project}/prompts?q=HAIKU&split=")).await;
        assert!(html.contains("Write a haiku about rain") && !html.contains("Explain tides"), "{html}");
        assert!(html.contains("1 prompts"), "{html}");
    });
}

#[test]
fn an_annotator_gets_403_on_the_prompt_routes() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let project = new_project(&app, "private").await;
        app.log_in("ann").await;
        let csrf = hidden_value(&app.get_html("/").await, "csrf");
        assert_eq!(app.get(&format!("/projects/{project}/prompts")).await.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            app.get(&format!("/api/projects/{project}/prompts")).await.status(),
            StatusCode::FORBIDDEN
        );
        let path = format!("/projects/{project}/prompts/upload");
        let form = [("format", "jsonl"), ("data", "{\"prompt\": \"mine\"}"), ("csrf", csrf.as_str())];
        assert_eq!(app.post_form(&path, &form).await.status(), StatusCode::FORBIDDEN);
        let token = app.token_for("ann").await;
        let response = client()
            .post(app.url(&format!("/api/projects/{project}/prompts")))
            .bearer_auth(&token)
            .json(&json!({ "format": "jsonl", "data": "{\"prompt\": \"mine\"}" }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert!(stored_texts(&app, project).await.is_empty());
    });
}

#[test]
fn an_upload_without_the_csrf_token_is_refused_and_stores_nothing() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let project = new_project(&app, "forged").await;
        app.log_in("rita").await;
        let path = format!("/projects/{project}/prompts/upload");
        for csrf in ["", "0000"] {
            let form = [("format", "jsonl"), ("data", "{\"prompt\": \"forged\"}"), ("csrf", csrf)];
            let response = app.post_form(&path, &form).await;
            assert_eq!(response.status(), StatusCode::FORBIDDEN);
            assert!(response.text().await.unwrap().contains("CSRF"));
        }
        assert!(stored_texts(&app, project).await.is_empty());
    });
}

#[test]
fn a_prompt_with_a_script_tag_shows_as_text() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let project = new_project(&app, "xss").await;
        app.log_in("rita").await;
        let prompt = "<script>alert('x')</script>";
        let line = json!({ "prompt": prompt }).to_string();
        assert_eq!(upload(&app, project, "jsonl", &line).await.status(), StatusCode::OK);
        let html = app.get_html(&format!("/projects/{project}/prompts")).await;
        assert!(!html.contains(prompt), "the prompt must be escaped");
        assert!(html.contains("&#60;script&#62;") || html.contains("&lt;script&gt;"), "{html}");
    });
}

#[test]
fn a_missing_project_is_a_404_and_a_file_without_a_prompt_column_stores_nothing() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let project = new_project(&app, "limits").await;
        app.log_in("rita").await;
        assert_eq!(app.get("/projects/999999/prompts").await.status(), StatusCode::NOT_FOUND);
        // The header's problem is reported like a bad line's: line 1, the `prompt` field.
        let response = upload(&app, project, "csv", "no prompt column\nx\n").await;
        assert_eq!(response.status(), StatusCode::OK);
        let html = response.text().await.unwrap();
        assert!(html.contains("header row has no") && html.contains("prompt"), "{html}");
        assert!(stored_texts(&app, project).await.is_empty());
    });
}

#[test]
fn the_api_imports_with_a_token_and_returns_the_report_as_json() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let project = new_project(&app, "api").await;
        let token = app.token_for("rita").await;
        let fresh = client();
        let data = "{\"prompt\": \"one\"}\n{\"prompt\": 5}\n{\"text\": \"two\", \"split\": \"test\"}\n";
        let response = fresh
            .post(app.url(&format!("/api/projects/{project}/prompts")))
            .bearer_auth(&token)
            .json(&json!({ "format": "jsonl", "data": data }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let report: Value = response.json().await.unwrap();
        assert_eq!(report["imported"].as_array().unwrap().len(), 2, "{report}");
        assert_eq!(report["errors"][0]["line"], 2, "{report}");
        assert_eq!(report["errors"][0]["field"], "prompt", "{report}");

        let response = fresh
            .get(app.url(&format!("/api/projects/{project}/prompts?q=tw&split=test")))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let prompts: Value = response.json().await.unwrap();
        let texts: Vec<&str> =
            prompts.as_array().unwrap().iter().map(|p| p["text"].as_str().unwrap()).collect();
        assert_eq!(texts, ["two"]);

        let response = fresh
            .post(app.url(&format!("/api/projects/{project}/prompts")))
            .bearer_auth(&token)
            .json(&json!({ "format": "xml", "data": "<p/>" }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let missing =
            fresh.get(app.url("/api/projects/999999/prompts")).bearer_auth(&token).send().await.unwrap();
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    });
}

/// Posts `content` as a file named `file_name` through the page's file form.
async fn upload_file(app: &TestApp, project_id: i64, file_name: &str, content: &str) -> reqwest::Response {
    let page = app.get_html(&format!("/projects/{project_id}/prompts")).await;
    let form = reqwest::multipart::Form::new()
        .text("csrf", hidden_value(&page, "csrf"))
        .text("format", "auto")
        .part("file", reqwest::multipart::Part::text(content.to_owned()).file_name(file_name.to_owned()));
    let url = app.url(&format!("/projects/{project_id}/prompts/file"));
    app.client.post(url).multipart(form).send().await.unwrap()
}

#[test]
fn a_csv_file_upload_is_read_by_its_name_and_reports_its_bad_line() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let project = new_project(&app, "files").await;
        app.log_in("rita").await;
        let csv = "prompt,split\nreverse the word cat,train\n,val\nsort 3 1 2,test\n";
        let response = upload_file(&app, project, "prompts.csv", csv).await;
        assert_eq!(response.status(), StatusCode::OK);
        let html = response.text().await.unwrap();
        assert!(html.contains("2 imported") && html.contains("line 3"), "{html}");
        assert_eq!(stored_texts(&app, project).await, ["reverse the word cat", "sort 3 1 2"]);
        // The same bytes named .jsonl are read as JSON lines: every line is an error.
        let response = upload_file(&app, project, "prompts.jsonl", "not json\n").await;
        let html = response.text().await.unwrap();
        assert!(html.contains("0 imported") && html.contains("not valid JSON"), "{html}");
    });
}

#[test]
fn a_file_upload_without_a_file_or_csrf_stores_nothing() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let project = new_project(&app, "files").await;
        app.log_in("rita").await;
        let url = app.url(&format!("/projects/{project}/prompts/file"));
        let no_csrf = reqwest::multipart::Form::new()
            .part("file", reqwest::multipart::Part::text("{\"prompt\": \"x\"}\n").file_name("p.jsonl"));
        let response = app.client.post(&url).multipart(no_csrf).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        let page = app.get_html(&format!("/projects/{project}/prompts")).await;
        let no_file = reqwest::multipart::Form::new().text("csrf", hidden_value(&page, "csrf"));
        let response = app.client.post(&url).multipart(no_file).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert!(response.text().await.unwrap().contains("choose a file"));
        assert!(stored_texts(&app, project).await.is_empty());
    });
}

async fn demonstration_tasks(app: &TestApp, project_id: i64) -> Vec<(i64, String)> {
    sqlx::query_as(
        "SELECT t.prompt_id, p.text FROM tasks t JOIN prompts p ON p.id = t.prompt_id
         WHERE t.project_id = $1 AND t.kind = 'demonstration' ORDER BY t.id",
    )
    .bind(project_id)
    .fetch_all(&app.db.pool)
    .await
    .unwrap()
}

#[test]
fn a_researcher_asks_for_demonstrations_once_per_prompt_by_split_and_limit() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let project = new_project(&app, "demos").await;
        app.log_in("rita").await;
        let data = "{\"prompt\": \"one\"}\n{\"prompt\": \"two\"}\n{\"prompt\": \"three\"}\n\
                    {\"prompt\": \"held out\", \"split\": \"test\"}\n";
        assert_eq!(upload(&app, project, "jsonl", data).await.status(), StatusCode::OK);
        let token = app.token_for("rita").await;
        let api = format!("/api/projects/{project}/demonstration-tasks");
        let ask = |body: Value| client().post(app.url(&api)).bearer_auth(&token).json(&body).send();

        let response = ask(json!({ "split": "train", "limit": 2 })).await.unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["task_ids"].as_array().unwrap().len(), 2);
        let texts = |tasks: Vec<(i64, String)>| tasks.into_iter().map(|(_, t)| t).collect::<Vec<_>>();
        assert_eq!(texts(demonstration_tasks(&app, project).await), ["one", "two"]);

        // From the page: the rest of the train prompts, and the count is shown.
        let page = app.get_html(&format!("/projects/{project}/prompts")).await;
        assert!(page.contains("Create demonstration tasks"), "{page}");
        let csrf = hidden_value(&page, "csrf");
        let path = format!("/projects/{project}/prompts/demonstration-tasks");
        let html = app.post_form(&path, &[("split", "train"), ("csrf", &csrf)]).await.text().await.unwrap();
        assert!(html.contains("1 demonstration tasks created"), "{html}");
        assert_eq!(texts(demonstration_tasks(&app, project).await), ["one", "two", "three"]);

        // Asked again: nothing new. Any split: the test prompt.
        let body: Value = ask(json!({ "split": "train" })).await.unwrap().json().await.unwrap();
        assert_eq!(body["task_ids"], json!([]));
        let body: Value = ask(json!({})).await.unwrap().json().await.unwrap();
        assert_eq!(body["task_ids"].as_array().unwrap().len(), 1);

        // Bad input names the field; an annotator may not ask.
        let response = ask(json!({ "limit": 0 })).await.unwrap();
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["field"], "limit", "{body}");
        let response = ask(json!({ "split": "dev" })).await.unwrap();
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let ann = app.token_for("ann").await;
        let response = client().post(app.url(&api)).bearer_auth(&ann).json(&json!({})).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert_eq!(demonstration_tasks(&app, project).await.len(), 4);
    });
}

/// The ids of the prompts the page lists, in its order.
fn listed_ids(html: &str) -> Vec<i64> {
    html.split("<tr data-prompt=\"")
        .skip(1)
        .map(|rest| rest[..rest.find('"').unwrap()].parse().unwrap())
        .collect()
}

#[test]
fn prompts_sort_by_age_text_and_tasks_and_page_by_number() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let project = new_project(&app, "many").await;
        app.log_in("rita").await;
        // 120 prompts, stored in the order 119, 118, …, 0 so that text order is not id order.
        let data: String = (0..120).rev().map(|i| format!("{{\"prompt\": \"prompt {i:03}\"}}\n")).collect();
        assert!(upload(&app, project, "jsonl", &data).await.text().await.unwrap().contains("120 imported"));
        let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM prompts WHERE project_id = $1 ORDER BY id")
            .bind(project)
            .fetch_all(&app.db.pool)
            .await
            .unwrap();
        // Two demonstration tasks on the 61st prompt stored, one on the 5th.
        labeling::tasks::create_demonstration_tasks(&app.db.pool, project, &[ids[60], ids[4]]).await.unwrap();
        labeling::tasks::create_demonstration_tasks(&app.db.pool, project, &[ids[60]]).await.unwrap();

        let path = |query: &str| format!("/projects/{project}/prompts?{query}");
        let oldest = app.get_html(&path("")).await;
        assert_eq!(listed_ids(&oldest), ids[..50], "the oldest first by default, 50 a page");
        assert!(oldest.contains("120 prompts · page 1 of 3"), "{oldest}");
        let pager = oldest.split("id=\"prompt-pages\"").nth(1).unwrap();
        assert!(pager.contains("aria-current=\"page\""), "{pager}");
        assert!(
            pager.contains(">2</a>") && pager.contains(">3</a>") && pager.contains(">Next</a>"),
            "{pager}"
        );
        assert!(!pager.contains(">Previous</a>"), "{pager}");

        let newest = app.get_html(&path("sort=newest&page=3")).await;
        assert_eq!(listed_ids(&newest), ids[..20].iter().rev().copied().collect::<Vec<_>>());
        assert!(newest.contains("page 3 of 3") && newest.contains(">Previous</a>"), "{newest}");
        assert!(
            newest.contains("sort=newest&amp;page=2") || newest.contains("sort=newest&page=2"),
            "{newest}"
        );

        let by_text = app.get_html(&path("sort=text")).await;
        assert_eq!(listed_ids(&by_text)[..2], [ids[119], ids[118]], "prompt 000, prompt 001");
        let by_tasks = app.get_html(&path("sort=tasks")).await;
        assert_eq!(listed_ids(&by_tasks)[..3], [ids[60], ids[4], ids[0]], "2 tasks, 1 task, then by id");
        let row = by_tasks.split(&format!("data-prompt=\"{}\"", ids[60])).nth(1).unwrap();
        assert!(row.contains("data-label=\"Tasks\">2<"), "{row}");
        let searched = app.get_html(&path("q=prompt+11&sort=text&page=1")).await;
        assert!(searched.contains("10 prompts") && !searched.contains("id=\"prompt-pages\""), "{searched}");
    });
}

#[test]
fn a_bad_page_or_sort_is_refused_naming_the_field() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let project = new_project(&app, "paged").await;
        app.log_in("rita").await;
        upload(&app, project, "jsonl", "{\"prompt\": \"only\"}\n").await;
        for (query, field) in [
            ("page=0", "page"),
            ("page=-3", "page"),
            ("page=two", "page"),
            ("page=2", "page"),
            ("sort=best", "sort"),
        ] {
            let response = app.get(&format!("/projects/{project}/prompts?{query}")).await;
            assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY, "{query}");
            let body = response.text().await.unwrap();
            assert!(body.contains(&format!("{field}:")), "{query}: {body}");
        }
        assert_eq!(app.get(&format!("/projects/{project}/prompts?page=1")).await.status(), StatusCode::OK);
        let token = app.token_for("rita").await;
        let api = client()
            .get(app.url(&format!("/api/projects/{project}/prompts?sort=best")))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(api.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(api.json::<Value>().await.unwrap()["error"]["field"], "sort");
    });
}

#[test]
fn a_prompt_differing_only_in_surrounding_whitespace_is_refused_as_a_duplicate() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let project = new_project(&app, "blanks").await;
        app.log_in("rita").await;
        upload(&app, project, "jsonl", "{\"prompt\": \"hello\"}\n").await;
        let existing = stored_texts(&app, project).await;
        let response =
            upload(&app, project, "csv", "prompt\n\"  hello \n\"\n\"\tsecond \"\n\" second\"\n").await;
        let html = response.text().await.unwrap();
        assert!(html.contains("1 imported") && html.contains("2 duplicates"), "{html}");
        assert!(html.contains("line 2: already in the project"), "{html}");
        assert!(html.contains("the same as line 4"), "{html}");
        assert_eq!(existing, ["hello"]);
        assert_eq!(stored_texts(&app, project).await, ["hello", "\tsecond "], "stored as given");
    });
}

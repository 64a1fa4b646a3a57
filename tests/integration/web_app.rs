//! The web app over HTTP: a real server on port 0 with a fresh database per test,
//! driven by a cookie-keeping client. Route by route: the happy path, the role matrix
//! (logged out → login page, annotator → 403 on researchers' routes) and bad input.

use labeling::domain::{DisplayName, Password, Role, TokenName, Username};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::db::{with_db, TestDb};

pub struct TestApp {
    pub address: String,
    pub db: TestDb,
    pub client: reqwest::Client,
    /// The app's artifact store (removed with the app).
    pub artifacts: tempfile::TempDir,
}

pub const PASSWORD: &str = "correct horse battery";

/// A running app on a fresh database, with one user of each role (`ann` the annotator,
/// `rita` the researcher, `ada` the admin), all with `PASSWORD`.
pub async fn spawn_app(db: TestDb) -> TestApp {
    for (name, role) in [("ann", Role::Annotator), ("rita", Role::Researcher), ("ada", Role::Admin)] {
        labeling::users::create_user(
            &db.pool,
            &Username::parse(name).unwrap(),
            &DisplayName::parse(name).unwrap(),
            role,
            &Password::parse(PASSWORD).unwrap(),
        )
        .await
        .unwrap();
    }
    let artifacts = tempfile::tempdir().expect("a directory for the artifact store");
    let settings = web::Settings {
        port: 0,
        login_attempts: 3,
        artifacts: Some(artifacts.path().to_owned()),
        ..web::Settings::default()
    };
    let app = web::Application::build(&settings, db.pool.clone()).expect("building the app");
    let address = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    TestApp { address, db, client: client(), artifacts }
}

/// Each run kind's stage defaults, as the run contract declares them.
pub struct RunDefaults(std::collections::BTreeMap<&'static str, serde_json::Value>);

impl RunDefaults {
    pub fn of(&self, kind: &str) -> Option<&serde_json::Value> {
        self.0.get(kind)
    }
}

pub fn run_defaults() -> RunDefaults {
    RunDefaults(spec::RunKind::ALL.iter().map(|k| (k.as_str(), spec::stage_defaults(*k))).collect())
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    pub async fn get_html(&self, path: &str) -> String {
        let response = self.get(path).await;
        assert_eq!(response.status(), StatusCode::OK, "GET {path}");
        response.text().await.unwrap()
    }

    /// The CSRF token of the session, read from the login form (every page with a form
    /// carries it).
    pub async fn csrf(&self) -> String {
        let html = self.get_html("/login").await;
        hidden_value(&html, "csrf")
    }

    pub async fn post_form(&self, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        self.client.post(self.url(path)).form(form).send().await.unwrap()
    }

    pub async fn log_in(&self, username: &str) -> reqwest::Response {
        let csrf = self.csrf().await;
        self.post_form("/login", &[("username", username), ("password", PASSWORD), ("csrf", &csrf)]).await
    }

    pub async fn token_for(&self, username: &str) -> String {
        let user = labeling::users::get_user_by_username(&self.db.pool, username).await.unwrap();
        labeling::users::create_api_token(&self.db.pool, user.id, &TokenName::parse("test").unwrap())
            .await
            .unwrap()
            .1
    }
}

pub fn hidden_value(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker).unwrap_or_else(|| panic!("no hidden {name} in {html}")) + marker.len();
    html[start..].split('"').next().unwrap().to_string()
}

fn location(response: &reqwest::Response) -> String {
    response.headers()["location"].to_str().unwrap().to_string()
}

#[test]
fn healthz_says_ok_when_the_database_answers() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let response = app.get("/healthz").await;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["status"], "ok");
    });
}

#[test]
fn a_logged_out_visitor_is_sent_to_log_in_and_comes_back_after() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        for path in ["/", "/projects"] {
            let response = app.get(path).await;
            assert_eq!(response.status(), StatusCode::SEE_OTHER, "{path}");
            assert_eq!(location(&response), format!("/login?next={path}"));
        }
        let csrf = app.csrf().await;
        let response = app
            .post_form(
                "/login",
                &[("username", "rita"), ("password", PASSWORD), ("csrf", &csrf), ("next", "/projects")],
            )
            .await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(location(&response), "/projects");
        let html = app.get_html("/projects").await;
        assert!(html.contains("New project") && html.contains("rita"), "{html}");
    });
}

#[test]
fn a_login_next_that_is_not_a_local_path_goes_home() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        for next in
            ["/\t/evil.example", "/\n/evil.example", "/a\rb", "/a\u{b}b", "/a\u{7f}", "/\\evil.example"]
        {
            let form_page = app.get(&format!("/login?next={}", web::error::urlencode(next))).await;
            assert_eq!(form_page.status(), StatusCode::OK, "GET /login?next={next:?}");
            let csrf = app.csrf().await;
            let response = app
                .post_form(
                    "/login",
                    &[("username", "rita"), ("password", PASSWORD), ("csrf", &csrf), ("next", next)],
                )
                .await;
            assert_eq!(response.status(), StatusCode::SEE_OTHER, "{next:?}");
            assert_eq!(location(&response), "/", "{next:?}");
        }
    });
}

#[test]
fn a_login_with_a_nul_byte_in_the_username_is_refused_like_a_wrong_password() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let csrf = app.csrf().await;
        let wrong =
            app.post_form("/login", &[("username", "nobody"), ("password", PASSWORD), ("csrf", &csrf)]).await;
        let csrf = app.csrf().await;
        let nul =
            app.post_form("/login", &[("username", "rita\0"), ("password", PASSWORD), ("csrf", &csrf)]).await;
        assert_eq!(nul.status(), wrong.status());
        assert_eq!(nul.status(), StatusCode::UNAUTHORIZED);
        assert!(nul.text().await.unwrap().contains("Wrong username or password"), "the page says so");
    });
}

#[test]
fn a_nul_byte_in_a_path_or_a_query_is_a_bad_request() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        assert_eq!(app.log_in("ada").await.status(), StatusCode::SEE_OTHER);
        let token = app.token_for("ada").await;
        let routes = [
            ("GET", "/projects/1/prompts?q=a%00b"),
            ("GET", "/api/projects/1/prompts?q=a%00b"),
            ("GET", "/models/a%00b"),
            ("GET", "/api/models/a%00b"),
            ("GET", "/api/run-defaults/a%00b"),
            ("DELETE", "/api/models/m/aliases/a%00b"),
            ("DELETE", "/api/models/m/versions/1/tags/a%00b"),
            ("DELETE", "/api/projects/1/members/a%00b"),
        ];
        for (method, path) in routes {
            let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
            let response =
                app.client.request(method, app.url(path)).bearer_auth(&token).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{path}");
            if path.starts_with("/api/") {
                let body: Value = response.json().await.unwrap();
                assert_eq!(body["error"]["status"], 400, "{path}");
            }
        }
    });
}

#[test]
fn a_non_numeric_id_in_an_api_path_is_a_json_400_naming_the_parameter() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let token = app.token_for("ada").await;
        for path in ["/api/runs/abc", "/api/projects/abc", "/api/evals/1.5"] {
            let response = app.client.get(app.url(path)).bearer_auth(&token).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{path}");
            let body: Value = response.json().await.unwrap();
            let message = body["error"]["message"].as_str().unwrap();
            assert!(message.contains("path parameter id"), "{path}: {message}");
        }
    });
}

#[test]
fn an_out_of_range_run_list_limit_is_refused_not_clamped() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let token = app.token_for("rita").await;
        for limit in ["-1", "0", "501", "1000000000000000"] {
            let path = format!("/api/runs?limit={limit}");
            let response = app.client.get(app.url(&path)).bearer_auth(&token).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY, "{path}");
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["error"]["field"], "limit", "{path}");
        }
        for path in ["/api/runs", "/api/runs?limit=1", "/api/runs?limit=500"] {
            let response = app.client.get(app.url(path)).bearer_auth(&token).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{path}");
        }
    });
}

#[test]
fn every_listing_refuses_an_out_of_range_limit_or_offset_by_name() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let token = app.token_for("rita").await;
        let project: i64 = sqlx::query_scalar(
            "INSERT INTO projects (name, guidelines, overlap, samples_per_task) VALUES ('p', '', 1, 2) RETURNING id",
        )
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
        let cases = [
            (format!("/api/projects/{project}/consensus?limit=0"), "limit"),
            (format!("/api/projects/{project}/consensus?limit=1001"), "limit"),
            (format!("/api/projects/{project}/prompts?limit=-5"), "limit"),
            (format!("/api/projects/{project}/prompts?limit=1001"), "limit"),
            (format!("/api/projects/{project}/prompts?offset=-1"), "offset"),
        ];
        for (path, field) in cases {
            let response = app.client.get(app.url(&path)).bearer_auth(&token).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY, "{path}");
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["error"]["field"], field, "{path}: {body}");
        }
        for path in [
            format!("/api/projects/{project}/consensus?limit=1000"),
            format!("/api/projects/{project}/prompts?limit=1000&offset=0"),
        ] {
            let response = app.client.get(app.url(&path)).bearer_auth(&token).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{path}");
        }
    });
}

#[test]
fn every_answer_carries_the_security_headers() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        for path in ["/login", "/api/projects", "/no-such-page", "/static/task.js"] {
            let response = app.get(path).await;
            let header = |name: &str| {
                response.headers().get(name).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default()
            };
            let csp = header("content-security-policy");
            assert!(
                csp.contains("script-src 'self'") && !csp.contains("script-src 'self' 'unsafe"),
                "{path}: {csp}"
            );
            assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
            assert_eq!(header("x-frame-options"), "DENY", "{path}");
            assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
            assert_eq!(header("referrer-policy"), "same-origin", "{path}");
            // Plain HTTP (no secure cookies): no HSTS.
            assert_eq!(header("strict-transport-security"), "", "{path}");
        }
    });
}

#[test]
fn no_page_runs_an_inline_script_that_the_policy_would_block() {
    let templates = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("web/templates");
    for entry in std::fs::read_dir(&templates).unwrap() {
        let path = entry.unwrap().path();
        let html = std::fs::read_to_string(&path).unwrap();
        for (at, _) in html.match_indices("<script") {
            let tag = &html[at..at + html[at..].find('>').unwrap()];
            assert!(tag.contains(" src="), "{}: an inline <script> at byte {at}", path.display());
        }
        for handler in [" onclick=", " onload=", " onchange=", " onsubmit=", " oninput=", "javascript:"] {
            assert!(
                !html.contains(handler),
                "{}: {handler:?} would not run under the policy",
                path.display()
            );
        }
    }
}

#[test]
fn an_undeclared_method_on_an_api_path_is_a_405_naming_the_allowed_ones() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let token = app.token_for("rita").await;
        let c = &app.client;
        for (request, allow) in [
            (c.delete(app.url("/api/projects")), "GET, POST"),
            (c.put(app.url("/api/runs/1")), "GET, PATCH"),
            (c.put(app.url("/api/me/projects")), "GET"),
        ] {
            let response = request.bearer_auth(&token).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
            let mut allowed: Vec<String> =
                response.headers()["allow"].to_str().unwrap().split(", ").map(str::to_owned).collect();
            allowed.sort();
            assert_eq!(allowed.join(", "), allow);
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["error"]["status"], 405, "{body}");
        }
        let response = c.get(app.url("/api/no-such-thing")).bearer_auth(&token).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert_eq!(response.json::<Value>().await.unwrap()["error"]["status"], 404);
    });
}

#[test]
fn the_api_answers_a_logged_out_request_with_401_json() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let response = app.get("/api/projects").await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["status"], 401);
    });
}

#[test]
fn logging_out_ends_the_session() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        assert_eq!(app.log_in("ann").await.status(), StatusCode::SEE_OTHER);
        let home = app.get_html("/").await;
        assert!(home.contains("Hello, ann"), "{home}");
        let csrf = hidden_value(&home, "csrf");
        let response = app.post_form("/logout", &[("csrf", &csrf)]).await;
        assert_eq!(location(&response), "/login");
        assert_eq!(app.get("/").await.status(), StatusCode::SEE_OTHER);
    });
}

#[test]
fn a_wrong_password_is_refused_and_repeated_failures_are_rate_limited() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let csrf = app.csrf().await;
        for _ in 0..3 {
            let response = app
                .post_form("/login", &[("username", "ann"), ("password", "wrong password"), ("csrf", &csrf)])
                .await;
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
            assert!(response.text().await.unwrap().contains("Wrong username or password"));
        }
        // The right password no longer helps until the window has passed.
        let response =
            app.post_form("/login", &[("username", "ann"), ("password", PASSWORD), ("csrf", &csrf)]).await;
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(response.headers().contains_key("retry-after"));
        // Another user from the same address is not locked out.
        assert_eq!(app.log_in("rita").await.status(), StatusCode::SEE_OTHER);
    });
}

#[test]
fn a_disabled_user_cannot_log_in_and_their_session_ends() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        assert_eq!(app.log_in("ann").await.status(), StatusCode::SEE_OTHER);
        let ann = labeling::users::get_user_by_username(&app.db.pool, "ann").await.unwrap();
        labeling::users::set_disabled(&app.db.pool, ann.id, true).await.unwrap();
        assert_eq!(app.get("/").await.status(), StatusCode::SEE_OTHER);
        assert_eq!(app.log_in("ann").await.status(), StatusCode::UNAUTHORIZED);
    });
}

#[test]
fn an_annotator_gets_403_on_every_researcher_route() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        app.log_in("ann").await;
        let csrf = hidden_value(&app.get_html("/").await, "csrf");
        assert_eq!(app.get("/projects").await.status(), StatusCode::FORBIDDEN);
        assert_eq!(app.get("/api/projects").await.status(), StatusCode::FORBIDDEN);
        let response = app.post_form("/projects", &[("name", "mine"), ("csrf", &csrf)]).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        let projects: i64 =
            sqlx::query_scalar("SELECT count(*) FROM projects").fetch_one(&app.db.pool).await.unwrap();
        assert_eq!(projects, 0);
    });
}

#[test]
fn a_form_without_the_sessions_csrf_token_is_refused_and_writes_nothing() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        app.log_in("rita").await;
        for csrf in ["", "0000"] {
            let response = app.post_form("/projects", &[("name", "forged"), ("csrf", csrf)]).await;
            assert_eq!(response.status(), StatusCode::FORBIDDEN);
            assert!(response.text().await.unwrap().contains("CSRF"));
        }
        let projects: i64 =
            sqlx::query_scalar("SELECT count(*) FROM projects").fetch_one(&app.db.pool).await.unwrap();
        assert_eq!(projects, 0);
    });
}

#[test]
fn a_project_name_with_a_script_tag_shows_as_text() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        app.log_in("rita").await;
        let csrf = hidden_value(&app.get_html("/projects").await, "csrf");
        let name = "<script>alert('x')</script>";
        let response = app.post_form("/projects", &[("name", name), ("overlap", "2"), ("csrf", &csrf)]).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        let html = app.get_html("/projects").await;
        assert!(!html.contains(name), "the name must be escaped");
        // askama writes `<` as `&#60;` (or `&lt;`, depending on its version).
        assert!(html.contains("&#60;script&#62;") || html.contains("&lt;script&gt;"), "{html}");
    });
}

#[test]
fn a_script_creates_a_project_with_an_api_token_and_bad_fields_are_named() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let token = app.token_for("rita").await;
        // A token needs no session and no CSRF token.
        let fresh = client();
        let response = fresh
            .post(app.url("/api/projects"))
            .bearer_auth(&token)
            .json(&json!({ "name": "summaries", "overlap": 3, "samples_per_task": 4 }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        let project: Value = response.json().await.unwrap();
        assert_eq!((project["name"].as_str(), project["overlap"].as_i64()), (Some("summaries"), Some(3)));

        let response = fresh
            .post(app.url("/api/projects"))
            .bearer_auth(&token)
            .json(&json!({ "name": "too many", "samples_per_task": 12 }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let body: Value = response.json().await.unwrap();
        assert!(body["error"]["field"].as_str().unwrap().contains("samples"), "{body}");

        let response =
            fresh.post(app.url("/api/projects")).bearer_auth(&token).body("{not json").send().await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let body: Value = response.json().await.unwrap();
        assert!(body["error"]["message"].as_str().unwrap().contains("JSON"), "{body}");

        let response =
            fresh.get(app.url("/api/projects")).bearer_auth("plumb_not_a_token").send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let names: Vec<String> =
            sqlx::query_scalar("SELECT name FROM projects").fetch_all(&app.db.pool).await.unwrap();
        assert_eq!(names, ["summaries"]);
    });
}

#[test]
fn an_unknown_page_is_a_404_page() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let response = app.get("/no/such/page").await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert!(response.text().await.unwrap().contains("no page at /no/such/page"));
    });
}

#[test]
fn metrics_count_requests_by_route_pattern() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        app.get("/healthz").await;
        app.get("/healthz").await;
        let text = app.get("/metrics").await.text().await.unwrap();
        assert!(
            text.contains("plumb_http_requests_total{route=\"/healthz\",method=\"GET\",status=\"200\"} 2"),
            "{text}"
        );
    });
}

#[test]
fn with_a_metrics_token_set_metrics_answers_only_its_bearer() {
    with_db(|db| async move {
        let settings = web::Settings {
            port: 0,
            metrics: web::settings::MetricsSettings { token: Some(web::settings::Secret::new("scrape-me")) },
            ..web::Settings::default()
        };
        let app = web::Application::build(&settings, db.pool.clone()).expect("building the app");
        let url = format!("http://127.0.0.1:{}/metrics", app.port());
        tokio::spawn(app.run_until_stopped());
        let c = client();
        for token in [None, Some("wrong"), Some("scrape-me-too")] {
            let request = c.get(&url);
            let request = match token {
                Some(token) => request.bearer_auth(token),
                None => request,
            };
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), StatusCode::FORBIDDEN, "{token:?}");
            assert_eq!(response.json::<Value>().await.unwrap()["error"]["status"], 403);
        }
        let response = c.get(&url).bearer_auth("scrape-me").send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.text().await.unwrap().contains("plumb_http_requests_total"));
    });
}

#[test]
fn an_upload_over_the_size_limit_is_refused() {
    with_db(|db| async move {
        let artifacts = tempfile::tempdir().unwrap();
        let settings = web::Settings {
            port: 0,
            max_body_bytes: 1024,
            artifacts: Some(artifacts.path().to_owned()),
            ..web::Settings::default()
        };
        let pool = db.pool.clone();
        let app = web::Application::build(&settings, pool).unwrap();
        let address = format!("http://127.0.0.1:{}", app.port());
        tokio::spawn(app.run_until_stopped());
        let big = "x".repeat(4096);
        let response = client()
            .post(format!("{address}/login"))
            .form(&[("username", big.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        drop(db);
    });
}

//! User administration over HTTP: an admin creates a user (whose one-time password logs
//! them in), disables and re-enables them (a disabled user's login, session and token are
//! refused), changes a role and resets a password (which ends the user's sessions), from
//! the page and the API; an admin cannot lock themselves out; nobody else gets in; and each
//! change, alias changes and the command line's included, is in the append-only audit log.

use ::registry::artifacts::ArtifactStore;
use ::registry::versions::{self, ModelKind, NewVersion};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::db::with_db;
use crate::helpers::plumb_in;
use crate::web_app::{client, hidden_value, spawn_app, TestApp, PASSWORD};

/// A browser of its own, logged in as `username` with `password`: the login's status,
/// and the client with its session.
async fn log_in_as(app: &TestApp, username: &str, password: &str) -> (StatusCode, reqwest::Client) {
    let browser = client();
    let login = browser.get(app.url("/login")).send().await.unwrap().text().await.unwrap();
    let form = [("username", username), ("password", password), ("csrf", &hidden_value(&login, "csrf"))];
    let status = browser.post(app.url("/login")).form(&form).send().await.unwrap().status();
    (status, browser)
}

/// The one-time password a users page shows.
fn shown_password(html: &str) -> String {
    let marker = "<pre id=\"password-value\">";
    let start = html.find(marker).unwrap_or_else(|| panic!("no password shown in {html}")) + marker.len();
    html[start..].split('<').next().unwrap().to_owned()
}

async fn user_id(app: &TestApp, username: &str) -> i64 {
    labeling::users::get_user_by_username(&app.db.pool, username).await.unwrap().id
}

/// The audit log as `(actor, action, subject, details)`, oldest first.
async fn audit_rows(app: &TestApp) -> Vec<(Option<String>, String, String, Value)> {
    sqlx::query_as(
        "SELECT u.username, a.action, a.subject, a.details
         FROM audit_log a LEFT JOIN users u ON u.id = a.actor_id ORDER BY a.id",
    )
    .fetch_all(&app.db.pool)
    .await
    .unwrap()
}

fn row(
    actor: Option<&str>,
    action: &str,
    subject: &str,
    details: Value,
) -> (Option<String>, String, String, Value) {
    (actor.map(str::to_owned), action.to_owned(), subject.to_owned(), details)
}

/// The admin (ada) logged in on the app's own client, and the users page's CSRF token.
async fn admin_page(app: &TestApp) -> String {
    assert_eq!(app.log_in("ada").await.status(), StatusCode::SEE_OTHER);
    let page = app.get_html("/admin/users").await;
    let marked = "href=\"/admin/users\" aria-current=\"page\">Admin</a>";
    assert!(page.contains(marked) && page.contains("data-user=\"ann\""), "{page}");
    hidden_value(&page, "csrf")
}

#[test]
fn an_admin_creates_a_user_whose_one_time_password_logs_them_in() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let csrf = admin_page(&app).await;
        let stale = [("username", "forged"), ("role", "admin"), ("csrf", "0000")];
        assert_eq!(app.post_form("/admin/users", &stale).await.status(), StatusCode::FORBIDDEN, "CSRF");
        let form =
            [("username", "newbie"), ("display_name", "New Bie"), ("role", "researcher"), ("csrf", &csrf)];
        let response = app.post_form("/admin/users", &form).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["cache-control"], "no-store");
        let password = shown_password(&response.text().await.unwrap());
        assert_eq!(password.chars().count(), 20, "{password}");

        // Shown once, stored only as a hash.
        assert!(!app.get_html("/admin/users").await.contains(&password));
        let hash: String = sqlx::query_scalar("SELECT password_hash FROM users WHERE username = 'newbie'")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
        assert!(hash.starts_with("$argon2id$") && !hash.contains(&password), "{hash}");

        let (status, newbie) = log_in_as(&app, "newbie", &password).await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        let projects = newbie.get(app.url("/projects")).send().await.unwrap();
        assert_eq!(projects.status(), StatusCode::OK, "a researcher");
        let home = newbie.get(app.url("/")).send().await.unwrap().text().await.unwrap();
        assert!(!home.contains("href=\"/admin/users\""), "no Admin link for a researcher");

        // The same through the API: 201 with the password in the body.
        let token = app.token_for("ada").await;
        let body = json!({"username": "scripted", "role": "annotator"});
        let response =
            client().post(app.url("/api/admin/users")).bearer_auth(&token).json(&body).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        let made: Value = response.json().await.unwrap();
        assert_eq!(
            (made["user"]["role"].as_str(), made["user"]["display_name"].as_str()),
            (Some("annotator"), Some("scripted"))
        );
        let (status, _) = log_in_as(&app, "scripted", made["password"].as_str().unwrap()).await;
        assert_eq!(status, StatusCode::SEE_OTHER);

        assert_eq!(
            audit_rows(&app).await,
            [
                row(
                    Some("ada"),
                    "user.create",
                    "user newbie",
                    json!({"role": "researcher", "display_name": "New Bie"})
                ),
                row(
                    Some("ada"),
                    "user.create",
                    "user scripted",
                    json!({"role": "annotator", "display_name": "scripted"})
                ),
            ]
        );
    });
}

#[test]
fn bad_input_on_the_users_page_and_api_is_refused_naming_the_field() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let csrf = admin_page(&app).await;
        for (username, role, field, status) in [
            ("Bad Name", "annotator", "username", StatusCode::UNPROCESSABLE_ENTITY),
            ("okname", "boss", "role", StatusCode::UNPROCESSABLE_ENTITY),
            ("ann", "annotator", "taken", StatusCode::CONFLICT),
        ] {
            let form = [("username", username), ("role", role), ("csrf", csrf.as_str())];
            let response = app.post_form("/admin/users", &form).await;
            assert_eq!(response.status(), status, "{username} {role}");
            let html = response.text().await.unwrap();
            assert!(html.contains("id=\"form-error\"") && html.contains(field), "{field}: {html}");
            assert!(html.contains("id=\"new-user\""), "the page again, with its form");
        }
        let ann = user_id(&app, "ann").await;
        let response =
            app.post_form(&format!("/admin/users/{ann}/role"), &[("role", "boss"), ("csrf", &csrf)]).await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);

        let token = app.token_for("ada").await;
        let api = client();
        for (body, field) in [
            (json!({"username": "Bad Name", "role": "annotator"}), "username"),
            (json!({"username": "okname", "role": "boss"}), "role"),
        ] {
            let response =
                api.post(app.url("/api/admin/users")).bearer_auth(&token).json(&body).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
            assert_eq!(response.json::<Value>().await.unwrap()["error"]["field"], field);
        }
        let body = json!({"username": "okname", "role": "annotator", "password": "mine mine mine"});
        let response =
            api.post(app.url("/api/admin/users")).bearer_auth(&token).json(&body).send().await.unwrap();
        assert_eq!(
            response.status(),
            StatusCode::BAD_REQUEST,
            "an unknown field, a password of one's choosing"
        );
        let response = api
            .put(app.url(&format!("/api/admin/users/{ann}/role")))
            .bearer_auth(&token)
            .json(&json!({"role": "boss"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.json::<Value>().await.unwrap()["error"]["field"], "role");

        assert_eq!(labeling::users::list_users(&app.db.pool).await.unwrap().len(), 3, "nothing made");
        assert!(audit_rows(&app).await.is_empty());
    });
}

#[test]
fn a_disabled_user_cannot_log_in_and_their_session_and_token_stop_until_re_enabled() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let (_, ann_browser) = log_in_as(&app, "ann", PASSWORD).await;
        let ann_token = app.token_for("ann").await;
        assert_eq!(ann_browser.get(app.url("/tasks")).send().await.unwrap().status(), StatusCode::OK);
        let csrf = admin_page(&app).await;
        let ann = user_id(&app, "ann").await;

        let response = app.post_form(&format!("/admin/users/{ann}/disable"), &[("csrf", &csrf)]).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        let row_of_ann = |html: &str| {
            html[html.find("data-user=\"ann\"").unwrap()..].split("</tr>").next().unwrap().to_owned()
        };
        assert!(row_of_ann(&app.get_html("/admin/users").await).contains("disabled"));
        // Her open session is refused at its next request (auth.rs reads the user on every
        // request and purges a disabled user's session), and so is her token.
        let response = ann_browser.get(app.url("/tasks")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert!(response.headers()["location"].to_str().unwrap().starts_with("/login"));
        let response =
            client().get(app.url("/api/me/projects")).bearer_auth(&ann_token).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(log_in_as(&app, "ann", PASSWORD).await.0, StatusCode::UNAUTHORIZED);

        let response = app.post_form(&format!("/admin/users/{ann}/enable"), &[("csrf", &csrf)]).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(log_in_as(&app, "ann", PASSWORD).await.0, StatusCode::SEE_OTHER);
        let response =
            client().get(app.url("/api/me/projects")).bearer_auth(&ann_token).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);

        // The API does the same, answering the user.
        let token = app.token_for("ada").await;
        let api = client();
        let response = api
            .post(app.url(&format!("/api/admin/users/{ann}/disable")))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.json::<Value>().await.unwrap()["disabled"], true);
        let response = api
            .post(app.url(&format!("/api/admin/users/{ann}/enable")))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.json::<Value>().await.unwrap()["disabled"], false);
        let response =
            api.post(app.url("/api/admin/users/999999/disable")).bearer_auth(&token).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);

        let actions: Vec<(Option<String>, String, String)> = audit_rows(&app)
            .await
            .into_iter()
            .map(|(actor, action, subject, _)| (actor, action, subject))
            .collect();
        let ada_did = |action: &str| (Some("ada".to_owned()), action.to_owned(), "user ann".to_owned());
        assert_eq!(
            actions,
            [
                ada_did("user.disable"),
                ada_did("user.enable"),
                ada_did("user.disable"),
                ada_did("user.enable")
            ]
        );
    });
}

#[test]
fn an_admin_changes_a_role_and_resets_a_password() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let csrf = admin_page(&app).await;
        let rita = user_id(&app, "rita").await;
        let response = app
            .post_form(&format!("/admin/users/{rita}/role"), &[("role", "annotator"), ("csrf", &csrf)])
            .await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        let (_, rita_browser) = log_in_as(&app, "rita", PASSWORD).await;
        assert_eq!(
            rita_browser.get(app.url("/projects")).send().await.unwrap().status(),
            StatusCode::FORBIDDEN
        );

        let response = app.post_form(&format!("/admin/users/{rita}/password"), &[("csrf", &csrf)]).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["cache-control"], "no-store");
        let password = shown_password(&response.text().await.unwrap());
        let response = rita_browser.get(app.url("/tasks")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "a reset ends her open session");
        assert_eq!(
            log_in_as(&app, "rita", PASSWORD).await.0,
            StatusCode::UNAUTHORIZED,
            "the old one is gone"
        );
        assert_eq!(log_in_as(&app, "rita", &password).await.0, StatusCode::SEE_OTHER);

        // The API: a role back, another password.
        let token = app.token_for("ada").await;
        let api = client();
        let response = api
            .put(app.url(&format!("/api/admin/users/{rita}/role")))
            .bearer_auth(&token)
            .json(&json!({"role": "researcher"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.json::<Value>().await.unwrap()["role"], "researcher");
        let response = api
            .post(app.url(&format!("/api/admin/users/{rita}/password")))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["cache-control"], "no-store");
        let again = response.json::<Value>().await.unwrap()["password"].as_str().unwrap().to_owned();
        assert_ne!(again, password);
        let (status, rita_browser) = log_in_as(&app, "rita", &again).await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        assert_eq!(rita_browser.get(app.url("/projects")).send().await.unwrap().status(), StatusCode::OK);

        assert_eq!(
            audit_rows(&app).await,
            [
                row(Some("ada"), "user.role", "user rita", json!({"from": "researcher", "to": "annotator"})),
                row(Some("ada"), "user.password_reset", "user rita", json!({})),
                row(Some("ada"), "user.role", "user rita", json!({"from": "annotator", "to": "researcher"})),
                row(Some("ada"), "user.password_reset", "user rita", json!({})),
            ]
        );
    });
}

#[test]
fn an_admin_cannot_disable_themselves_or_take_away_their_own_admin_role() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let csrf = admin_page(&app).await;
        let ada = user_id(&app, "ada").await;
        let response = app.post_form(&format!("/admin/users/{ada}/disable"), &[("csrf", &csrf)]).await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert!(response.text().await.unwrap().contains("cannot disable yourself"));
        let response = app
            .post_form(&format!("/admin/users/{ada}/role"), &[("role", "researcher"), ("csrf", &csrf)])
            .await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert!(response.text().await.unwrap().contains("your own admin role"));

        let token = app.token_for("ada").await;
        let api = client();
        let response = api
            .post(app.url(&format!("/api/admin/users/{ada}/disable")))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(response.json::<Value>().await.unwrap()["error"]["field"], "disabled");
        let response = api
            .put(app.url(&format!("/api/admin/users/{ada}/role")))
            .bearer_auth(&token)
            .json(&json!({"role": "annotator"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(response.json::<Value>().await.unwrap()["error"]["field"], "role");

        let me = labeling::users::get_user(&app.db.pool, ada).await.unwrap();
        assert!(me.role == labeling::domain::Role::Admin && !me.disabled, "{me:?}");
        assert!(audit_rows(&app).await.is_empty());
    });
}

#[test]
fn nobody_but_an_admin_gets_into_an_admin_page_or_route() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let ann = user_id(&app, "ann").await;
        let pages = ["/admin/users", "/admin/audit"];
        let posts = [
            ("/admin/users".to_owned(), vec![("username", "sneaky"), ("role", "admin")]),
            (format!("/admin/users/{ann}/disable"), vec![]),
            (format!("/admin/users/{ann}/enable"), vec![]),
            (format!("/admin/users/{ann}/role"), vec![("role", "admin")]),
            (format!("/admin/users/{ann}/password"), vec![]),
        ];
        let api = [
            ("GET", "/api/admin/users".to_owned(), None),
            ("POST", "/api/admin/users".to_owned(), Some(json!({"username": "sneaky", "role": "admin"}))),
            ("POST", format!("/api/admin/users/{ann}/disable"), None),
            ("POST", format!("/api/admin/users/{ann}/enable"), None),
            ("PUT", format!("/api/admin/users/{ann}/role"), Some(json!({"role": "admin"}))),
            ("POST", format!("/api/admin/users/{ann}/password"), None),
            ("GET", "/api/admin/audit".to_owned(), None),
        ];
        let call = |token: Option<String>| {
            let api = api.clone();
            let app = &app;
            async move {
                let mut statuses = Vec::new();
                for (method, path, body) in api {
                    let mut request = client().request(method.parse().unwrap(), app.url(&path));
                    if let Some(token) = &token {
                        request = request.bearer_auth(token);
                    }
                    if let Some(body) = body {
                        request = request.json(&body);
                    }
                    statuses.push((path, request.send().await.unwrap().status()));
                }
                statuses
            }
        };

        for (path, status) in call(None).await {
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{path} logged out");
        }
        for page in pages {
            let response = client().get(app.url(page)).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::SEE_OTHER, "{page} logged out: to the login page");
        }
        for who in ["ann", "rita"] {
            let token = app.token_for(who).await;
            for (path, status) in call(Some(token)).await {
                assert_eq!(status, StatusCode::FORBIDDEN, "{path} as {who}");
            }
            let (_, browser) = log_in_as(&app, who, PASSWORD).await;
            let home = browser.get(app.url("/")).send().await.unwrap().text().await.unwrap();
            assert!(!home.contains("href=\"/admin/users\""), "no Admin link for {who}");
            let csrf = hidden_value(&home, "csrf");
            for page in pages {
                assert_eq!(
                    browser.get(app.url(page)).send().await.unwrap().status(),
                    StatusCode::FORBIDDEN,
                    "{page} as {who}"
                );
            }
            for (path, fields) in &posts {
                let mut form = fields.clone();
                form.push(("csrf", csrf.as_str()));
                let response = browser.post(app.url(path)).form(&form).send().await.unwrap();
                assert_eq!(response.status(), StatusCode::FORBIDDEN, "POST {path} as {who}");
            }
        }
        assert_eq!(labeling::users::list_users(&app.db.pool).await.unwrap().len(), 3, "nobody made");
        let ann_now = labeling::users::get_user(&app.db.pool, ann).await.unwrap();
        assert!(ann_now.role == labeling::domain::Role::Annotator && !ann_now.disabled);
        assert_eq!(log_in_as(&app, "ann", PASSWORD).await.0, StatusCode::SEE_OTHER, "her password unchanged");
        assert!(audit_rows(&app).await.is_empty());
    });
}

#[test]
fn the_audit_log_lists_alias_changes_newest_first_filtered_and_paged() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), "{}").unwrap();
        let artifact = ArtifactStore::new(app.artifacts.path()).unwrap().put_dir(dir.path()).unwrap();
        let new = NewVersion {
            model: "policy".into(),
            kind: ModelKind::Base,
            run_id: None,
            parents: Vec::new(),
            snapshots: Vec::new(),
            config: json!({}),
            metrics: json!({}),
            artifact,
            created_by: None,
        };
        versions::register(&app.db.pool, &new).await.unwrap();
        let rita = app.token_for("rita").await;
        let api = client();
        let response = api
            .put(app.url("/api/models/policy/aliases/prod"))
            .bearer_auth(&rita)
            .json(&json!({"version": 1}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let response =
            api.delete(app.url("/api/models/policy/aliases/prod")).bearer_auth(&rita).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        let ada = app.token_for("ada").await;
        let ann = user_id(&app, "ann").await;
        let response = api
            .post(app.url(&format!("/api/admin/users/{ann}/password")))
            .bearer_auth(&ada)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);

        let audit = |query: &'static str| {
            let (api, ada, app) = (&api, &ada, &app);
            async move {
                let response = api
                    .get(app.url(&format!("/api/admin/audit{query}")))
                    .bearer_auth(ada)
                    .send()
                    .await
                    .unwrap();
                (response.status(), response.json::<Value>().await.unwrap())
            }
        };
        let (status, all) = audit("").await;
        assert_eq!(status, StatusCode::OK);
        let listed: Vec<(&str, &str, &str)> = all["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (e["actor"].as_str().unwrap(), e["action"].as_str().unwrap(), e["subject"].as_str().unwrap())
            })
            .collect();
        assert_eq!(
            listed,
            [
                ("ada", "user.password_reset", "user ann"),
                ("rita", "alias.delete", "alias policy@prod"),
                ("rita", "alias.set", "alias policy@prod"),
            ]
        );
        assert_eq!(all["entries"][2]["details"], json!({"version": 1}));
        let (_, set) = audit("?action=alias.set").await;
        assert_eq!(set["entries"].as_array().unwrap().len(), 1);
        assert_eq!(set["entries"][0]["action"], "alias.set");
        let (_, second) = audit("?limit=1&offset=1").await;
        assert_eq!(
            (second["entries"][0]["action"].as_str(), second["limit"].as_i64()),
            (Some("alias.delete"), Some(1))
        );
        let (status, error) = audit("?action=user.delete").await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(error["error"]["field"], "action");
        let (status, error) = audit("?limit=0").await;
        assert_eq!(
            (status, error["error"]["field"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("limit"))
        );

        // The page: the same entries, the filter, a link to the older ones.
        app.log_in("ada").await;
        let html = app.get_html("/admin/audit?action=alias.delete").await;
        assert!(html.contains("alias policy@prod") && !html.contains("user ann"), "{html}");
        let html = app.get_html("/admin/audit?limit=2").await;
        assert!(
            html.contains("rel=\"next\"") && html.contains("offset=2"),
            "a link to the older entries: {html}"
        );
        assert_eq!(app.get("/admin/audit?action=nope").await.status(), StatusCode::UNPROCESSABLE_ENTITY);
    });
}

#[test]
fn audit_entries_cannot_be_changed_or_removed() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let subject = labeling::audit::user_subject("ann");
        labeling::audit::record(
            &app.db.pool,
            None,
            labeling::audit::Action::UserDisable,
            &subject,
            json!({}),
        )
        .await
        .unwrap();
        for sql in [
            "UPDATE audit_log SET subject = 'user rita'",
            "UPDATE audit_log SET actor_id = NULL",
            "DELETE FROM audit_log",
            "TRUNCATE audit_log",
        ] {
            let refused = sqlx::query(sql).execute(&app.db.pool).await;
            let message = refused.expect_err(sql).to_string();
            assert!(message.contains("immutable"), "{sql}: {message}");
        }
        assert_eq!(audit_rows(&app).await, [row(None, "user.disable", "user ann", json!({}))]);
    });
}

#[test]
fn the_command_line_writes_its_user_changes_to_the_audit_log_without_an_actor() {
    with_db(|db| async move {
        let url = db.url();
        let env = [("DATABASE_URL", url.as_str())];
        let users = |args: &[&str], stdin: &str| {
            let out = plumb_in(&[&["users"], args].concat(), &env, stdin);
            assert!(out.status.success(), "users {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        users(&["add", "--username", "cli", "--role", "annotator", "--password-stdin"], "long enough\n");
        users(&["role", "cli", "researcher"], "");
        users(&["passwd", "cli", "--password-stdin"], "longer still\n");
        users(&["disable", "cli"], "");
        users(&["enable", "cli"], "");
        let rows: Vec<(Option<i64>, String, String, Value)> =
            sqlx::query_as("SELECT actor_id, action, subject, details FROM audit_log ORDER BY id")
                .fetch_all(&db.pool)
                .await
                .unwrap();
        let by_cli = |action: &str, details: Value| (None, action.to_owned(), "user cli".to_owned(), details);
        assert_eq!(
            rows,
            [
                by_cli("user.create", json!({"role": "annotator", "display_name": "cli"})),
                by_cli("user.role", json!({"from": "annotator", "to": "researcher"})),
                by_cli("user.password_reset", json!({})),
                by_cli("user.disable", json!({})),
                by_cli("user.enable", json!({})),
            ]
        );
    });
}

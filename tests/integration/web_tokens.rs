//! API tokens from the page and the API: made and shown once, used on the API, revoked
//! for good; each user sees and revokes only their own. A token's scope caps the role it
//! acts with, it expires, and it records when it was last used.

use chrono::{DateTime, Utc};
use labeling::users;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::db::with_db;
use crate::web_app::{client, hidden_value, spawn_app, TestApp, PASSWORD};

#[test]
fn an_annotator_makes_a_token_uses_it_on_the_api_and_revokes_it() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let response = app.get("/tokens").await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "logged out: to the login page");
        app.log_in("ann").await;
        let page = app.get_html("/tokens").await;
        assert!(page.contains("No tokens yet"));
        let csrf = hidden_value(&page, "csrf");

        let response = app.post_form("/tokens", &[("name", "   "), ("csrf", &csrf)]).await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let response = app.post_form("/tokens", &[("name", "simulator"), ("csrf", "wrong")]).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        let response = app.post_form("/tokens", &[("name", "simulator <b>"), ("csrf", &csrf)]).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["cache-control"], "no-store");
        let html = response.text().await.unwrap();
        assert!(html.contains("simulator &#60;b&#62;") && !html.contains("simulator <b>"), "escaped");
        let start = html.find("<pre id=\"token-value\">").unwrap() + "<pre id=\"token-value\">".len();
        let token = html[start..].split('<').next().unwrap().to_owned();
        assert!(token.starts_with("plumb_"), "{token}");
        // Shown once: the list has the name, never the secret.
        let page = app.get_html("/tokens").await;
        assert!(page.contains("simulator") && !page.contains(&token));

        let api = client();
        let me = api.get(app.url("/api/me/projects")).bearer_auth(&token).send().await.unwrap();
        assert_eq!(me.status(), StatusCode::OK);

        // Another user cannot revoke it.
        let id: i64 = sqlx::query_scalar("SELECT id FROM api_tokens").fetch_one(&app.db.pool).await.unwrap();
        let rita = client();
        let login = rita.get(app.url("/login")).send().await.unwrap().text().await.unwrap();
        let form = [("username", "rita"), ("password", PASSWORD), ("csrf", &hidden_value(&login, "csrf"))];
        rita.post(app.url("/login")).form(&form).send().await.unwrap();
        let page = rita.get(app.url("/tokens")).send().await.unwrap().text().await.unwrap();
        let csrf_rita = hidden_value(&page, "csrf");
        let response = rita
            .post(app.url(&format!("/tokens/{id}/revoke")))
            .form(&[("csrf", &csrf_rita)])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        let me = api.get(app.url("/api/me/projects")).bearer_auth(&token).send().await.unwrap();
        assert_eq!(me.status(), StatusCode::OK);

        let response = app.post_form(&format!("/tokens/{id}/revoke"), &[("csrf", &csrf)]).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        let me = api.get(app.url("/api/me/projects")).bearer_auth(&token).send().await.unwrap();
        assert_eq!(me.status(), StatusCode::UNAUTHORIZED);
        assert!(app.get_html("/tokens").await.contains("revoked"));
    });
}

#[test]
fn a_token_cannot_mint_another_token() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let token = app.token_for("ann").await;
        let count = || async {
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM api_tokens")
                .fetch_one(&app.db.pool)
                .await
                .unwrap()
        };
        let before = count().await;
        let response = client()
            .post(app.url("/tokens"))
            .bearer_auth(&token)
            .form(&[("name", "child")])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert!(response.text().await.unwrap().contains("logged-in session"));
        assert_eq!(count().await, before, "no token was made");
    });
}

/// A token made on the API from `app`'s logged-in session: (status, body).
async fn make_token(app: &TestApp, body: Value) -> (StatusCode, Value) {
    let mut body = body;
    body["csrf"] = json!(app.csrf().await);
    let response = app.client.post(app.url("/api/tokens")).json(&body).send().await.unwrap();
    (response.status(), response.json().await.unwrap())
}

/// The status and JSON body of a GET with `token`.
async fn get_with(app: &TestApp, token: &str, path: &str) -> (StatusCode, Value) {
    let response = client().get(app.url(path)).bearer_auth(token).send().await.unwrap();
    (response.status(), response.json().await.unwrap())
}

/// `app`'s own tokens, as its session lists them on the API.
async fn listed(app: &TestApp) -> Vec<Value> {
    let response = app.client.get(app.url("/api/tokens")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

#[test]
fn an_expired_token_is_refused_saying_it_expired() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let token = app.token_for("ann").await;
        assert_eq!(get_with(&app, &token, "/api/me/projects").await.0, StatusCode::OK);
        sqlx::query(
            "UPDATE api_tokens SET created_at = now() - interval '10 days', expires_at = now() - interval '1 day'",
        )
        .execute(&app.db.pool)
        .await
        .unwrap();
        let (status, body) = get_with(&app, &token, "/api/me/projects").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert!(body["error"]["message"].as_str().unwrap().contains("expired"), "{body}");
    });
}

#[test]
fn an_annotate_token_of_a_researcher_takes_tasks_but_is_refused_researchers_routes() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        app.log_in("rita").await;
        let (status, annotate) = make_token(&app, json!({"name": "labeling bot", "scope": "annotate"})).await;
        assert_eq!(status, StatusCode::CREATED, "{annotate}");
        assert_eq!(annotate["scope"], "annotate");
        let annotate = annotate["token"].as_str().unwrap().to_owned();
        assert_eq!(get_with(&app, &annotate, "/api/me/projects").await.0, StatusCode::OK);
        let (status, body) = get_with(&app, &annotate, "/api/projects").await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");

        // Left out, the scope is what her role may do.
        let (status, research) = make_token(&app, json!({"name": "research script"})).await;
        assert_eq!(status, StatusCode::CREATED, "{research}");
        assert_eq!(research["scope"], "research");
        let research = research["token"].as_str().unwrap().to_owned();
        assert_eq!(get_with(&app, &research, "/api/projects").await.0, StatusCode::OK);
    });
}

#[test]
fn an_annotator_cannot_make_a_research_token() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        app.log_in("ann").await;
        let (status, body) = make_token(&app, json!({"name": "sneaky", "scope": "research"})).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(body["error"]["field"], "scope");
        let csrf = app.csrf().await;
        let form = [("name", "sneaky"), ("scope", "research"), ("expires_in_days", "30"), ("csrf", &csrf)];
        let response = app.post_form("/tokens", &form).await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert!(response.text().await.unwrap().contains("scope"));
        assert!(listed(&app).await.is_empty(), "no token was made");

        let (status, body) = make_token(&app, json!({"name": "simulator"})).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body["scope"], "annotate");
    });
}

#[test]
fn a_lifetime_outside_one_to_365_days_is_a_422_naming_expires_in_days() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        app.log_in("rita").await;
        for days in [0, -1, 366] {
            let (status, body) = make_token(&app, json!({"name": "x", "expires_in_days": days})).await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{days}: {body}");
            assert_eq!(body["error"]["field"], "expires_in_days", "{days}");
        }
        let csrf = app.csrf().await;
        for days in ["abc", "400"] {
            let response =
                app.post_form("/tokens", &[("name", "x"), ("expires_in_days", days), ("csrf", &csrf)]).await;
            assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY, "{days}");
            assert!(response.text().await.unwrap().contains("expires_in_days"), "{days}");
        }
        assert!(listed(&app).await.is_empty(), "no token was made");

        let (status, week) = make_token(&app, json!({"name": "a week", "expires_in_days": 7})).await;
        assert_eq!(status, StatusCode::CREATED, "{week}");
        let (_, default) = make_token(&app, json!({"name": "default"})).await;
        let days = |token: &Value| {
            let at = |field: &str| token[field].as_str().unwrap().parse::<DateTime<Utc>>().unwrap();
            (at("expires_at") - at("created_at")).num_days()
        };
        assert_eq!(days(&week), 7);
        assert_eq!(days(&default), 90);
    });
}

#[test]
fn a_call_with_a_token_records_when_it_was_last_used() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        app.log_in("ann").await;
        let (_, made) = make_token(&app, json!({"name": "simulator"})).await;
        assert!(listed(&app).await[0]["last_used_at"].is_null());
        let token = made["token"].as_str().unwrap();
        assert_eq!(get_with(&app, token, "/api/me/projects").await.0, StatusCode::OK);
        let used = listed(&app).await[0]["last_used_at"].as_str().unwrap().parse::<DateTime<Utc>>().unwrap();
        assert!((Utc::now() - used).num_seconds().abs() < 60, "{used}");
        // Used again within the minute: not written again.
        assert_eq!(get_with(&app, token, "/api/me/projects").await.0, StatusCode::OK);
        assert_eq!(listed(&app).await[0]["last_used_at"], json!(used));
    });
}

#[test]
fn a_revoked_token_is_refused_for_good_and_revoking_again_is_harmless() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        app.log_in("ann").await;
        let (_, made) = make_token(&app, json!({"name": "simulator"})).await;
        let token = made["token"].as_str().unwrap();
        let revoke = || async {
            let csrf = app.csrf().await;
            let url = app.url(&format!("/api/tokens/{}", made["id"]));
            let response = app.client.delete(url).header("X-CSRF-Token", csrf).send().await.unwrap();
            (response.status(), response.json::<Value>().await.unwrap())
        };
        let (status, first) = revoke().await;
        assert_eq!(status, StatusCode::OK, "{first}");
        assert!(first["revoked_at"].is_string());
        let (status, body) = get_with(&app, token, "/api/me/projects").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(body["error"]["message"].as_str().unwrap().contains("revoked"), "{body}");

        let (status, again) = revoke().await;
        assert_eq!(status, StatusCode::OK, "{again}");
        assert_eq!(again["revoked_at"], first["revoked_at"], "the first revocation time stays");
        let unrevoke = sqlx::query("UPDATE api_tokens SET revoked_at = NULL").execute(&app.db.pool).await;
        assert!(unrevoke.is_err(), "the database keeps a revocation");
        assert_eq!(get_with(&app, token, "/api/me/projects").await.0, StatusCode::UNAUTHORIZED);
    });
}

#[test]
fn a_disabled_users_tokens_stop_working_at_once() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let token = app.token_for("ann").await;
        assert_eq!(get_with(&app, &token, "/api/me/projects").await.0, StatusCode::OK);
        let ann = users::get_user_by_username(&app.db.pool, "ann").await.unwrap();
        users::set_disabled(&app.db.pool, ann.id, true).await.unwrap();
        assert_eq!(get_with(&app, &token, "/api/me/projects").await.0, StatusCode::UNAUTHORIZED);
        users::set_disabled(&app.db.pool, ann.id, false).await.unwrap();
        assert_eq!(get_with(&app, &token, "/api/me/projects").await.0, StatusCode::OK, "re-enabled");
    });
}

#[test]
fn the_page_lists_each_tokens_scope_expiry_and_last_use() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        app.log_in("rita").await;
        let page = app.get_html("/tokens").await;
        assert!(page.contains("<option value=\"research\">") && page.contains("<option value=\"annotate\">"));
        let csrf = hidden_value(&page, "csrf");
        let form = [("name", "bot"), ("scope", "annotate"), ("expires_in_days", "7"), ("csrf", &csrf)];
        let html = app.post_form("/tokens", &form).await.text().await.unwrap();
        let start = html.find("<pre id=\"token-value\">").unwrap() + "<pre id=\"token-value\">".len();
        let token = html[start..].split('<').next().unwrap().to_owned();
        let page = app.get_html("/tokens").await;
        assert!(page.contains("data-scope=\"annotate\""), "{page}");
        let expires = (Utc::now() + chrono::Duration::days(7)).format("%Y-%m-%d").to_string();
        assert!(page.contains(&expires), "expires {expires}: {page}");
        assert!(page.contains("<td data-last-used>never</td>"));
        assert_eq!(get_with(&app, &token, "/api/me/projects").await.0, StatusCode::OK);
        let page = app.get_html("/tokens").await;
        assert!(!page.contains("<td data-last-used>never</td>"), "{page}");
        sqlx::query("UPDATE api_tokens SET created_at = created_at - interval '10 days', expires_at = now() - interval '1 day'")
            .execute(&app.db.pool)
            .await
            .unwrap();
        assert!(app.get_html("/tokens").await.contains("data-state=\"expired\""));
    });
}

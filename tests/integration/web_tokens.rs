//! API tokens from the page: made and shown once, used on the API, revoked; each user
//! sees and revokes only their own.

use reqwest::StatusCode;

use crate::db::with_db;
use crate::web_app::{client, hidden_value, spawn_app, PASSWORD};

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

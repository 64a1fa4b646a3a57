//! Issue 16: login sessions live in Postgres. Logging out ends the session, so a copied
//! cookie (and its CSRF token) stops working with it; sessions end after a time without
//! use and a time after login; disabling a user ends theirs; a person sees their sessions
//! and signs out of one, everywhere else, or everywhere.

use reqwest::header::{COOKIE, SET_COOKIE};
use reqwest::StatusCode;

use crate::db::with_db;
use crate::web_app::{hidden_value, spawn_app, TestApp, PASSWORD};

/// A browser of our own: logs `username` in and returns the session cookie it holds.
async fn logged_in_cookie(app: &TestApp, username: &str) -> String {
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let form = http.get(app.url("/login")).send().await.unwrap();
    let cookie = session_cookie(&form);
    let csrf = hidden_value(&form.text().await.unwrap(), "csrf");
    let login = http
        .post(app.url("/login"))
        .header(COOKIE, &cookie)
        .form(&[("username", username), ("password", PASSWORD), ("csrf", &csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), StatusCode::SEE_OTHER);
    session_cookie(&login)
}

fn session_cookie(response: &reqwest::Response) -> String {
    let set = response.headers().get_all(SET_COOKIE).iter().find_map(|v| {
        let v = v.to_str().ok()?;
        v.starts_with("plumb_session=").then(|| v.split(';').next().unwrap().to_string())
    });
    set.expect("a session cookie")
}

/// GET `path` with `cookie`: its status.
async fn get_with(app: &TestApp, cookie: &str, path: &str) -> StatusCode {
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    http.get(app.url(path)).header(COOKIE, cookie).send().await.unwrap().status()
}

async fn standing(app: &TestApp, username: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM login_sessions s JOIN users u ON u.id = s.user_id
         WHERE u.username = $1 AND s.revoked_at IS NULL",
    )
    .bind(username)
    .fetch_one(&app.db.pool)
    .await
    .unwrap()
}

#[test]
fn logging_out_ends_the_session_so_a_copied_cookie_stops_working() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let cookie = logged_in_cookie(&app, "ann").await;
        assert_eq!(get_with(&app, &cookie, "/tasks").await, StatusCode::OK);
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let page =
            http.get(app.url("/tasks")).header(COOKIE, &cookie).send().await.unwrap().text().await.unwrap();
        let csrf = hidden_value(&page, "csrf");

        // The browser logs out; a copy of its cookie, kept elsewhere, is spent too.
        let out = http
            .post(app.url("/logout"))
            .header(COOKIE, &cookie)
            .form(&[("csrf", &csrf)])
            .send()
            .await
            .unwrap();
        assert_eq!(out.status(), StatusCode::SEE_OTHER);
        assert_eq!(get_with(&app, &cookie, "/tasks").await, StatusCode::SEE_OTHER, "to the login page");
        let form = http
            .post(app.url("/account/sessions/end-others"))
            .header(COOKIE, &cookie)
            .form(&[("csrf", &csrf)])
            .send()
            .await
            .unwrap();
        assert_eq!(form.status(), StatusCode::SEE_OTHER);
        assert!(form.headers()["location"].to_str().unwrap().starts_with("/login"));
        assert_eq!(standing(&app, "ann").await, 0);
    });
}

#[test]
fn a_session_ends_after_its_idle_time_and_its_absolute_time() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let idle = logged_in_cookie(&app, "ann").await;
        let old = logged_in_cookie(&app, "ann").await;
        assert_eq!(get_with(&app, &idle, "/tasks").await, StatusCode::OK);
        assert_eq!(get_with(&app, &old, "/tasks").await, StatusCode::OK);
        // One unused for longer than the idle time (12 h by default), one past its end.
        sqlx::query(
            "UPDATE login_sessions SET last_seen_at = now() - interval '13 hours', created_at = now() - interval '13 hours'
             WHERE id = (SELECT min(id) FROM login_sessions)",
        )
        .execute(&app.db.pool)
        .await
        .unwrap();
        sqlx::query(
            "UPDATE login_sessions SET created_at = now() - interval '8 days', expires_at = now() - interval '1 day'
             WHERE id = (SELECT max(id) FROM login_sessions)",
        )
        .execute(&app.db.pool)
        .await
        .unwrap();
        assert_eq!(get_with(&app, &idle, "/tasks").await, StatusCode::SEE_OTHER);
        assert_eq!(get_with(&app, &old, "/tasks").await, StatusCode::SEE_OTHER);
    });
}

#[test]
fn a_person_sees_their_sessions_and_signs_out_of_the_others() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let elsewhere = logged_in_cookie(&app, "rita").await;
        app.log_in("rita").await;
        let page = app.get_html("/account/password").await;
        assert_eq!(page.matches("data-session-id=").count(), 2, "{page}");
        assert!(page.contains("This browser"), "{page}");

        let csrf = hidden_value(&page, "csrf");
        let response = app.post_form("/account/sessions/end-others", &[("csrf", &csrf)]).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(get_with(&app, &elsewhere, "/runs").await, StatusCode::SEE_OTHER, "the other one is out");
        let page = app.get_html("/account/password?ended=1").await;
        assert_eq!(page.matches("data-session-id=").count(), 1);
        assert!(page.contains("1 session ended"), "{page}");

        // Another person's session cannot be ended from here.
        let anns = logged_in_cookie(&app, "ann").await;
        let ann_session: i64 =
            sqlx::query_scalar("SELECT max(id) FROM login_sessions").fetch_one(&app.db.pool).await.unwrap();
        let response =
            app.post_form(&format!("/account/sessions/{ann_session}/end"), &[("csrf", &csrf)]).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert_eq!(get_with(&app, &anns, "/tasks").await, StatusCode::OK);

        // Everywhere: this browser too.
        let response = app.post_form("/account/sessions/end-all", &[("csrf", &csrf)]).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(app.get("/runs").await.status(), StatusCode::SEE_OTHER);
        assert_eq!(standing(&app, "rita").await, 0);
    });
}

#[test]
fn a_changed_password_and_a_disabled_user_end_sessions() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let elsewhere = logged_in_cookie(&app, "ann").await;
        app.log_in("ann").await;
        let csrf = hidden_value(&app.get_html("/account/password").await, "csrf");
        let new = "a brand new password";
        let form = [("csrf", csrf.as_str()), ("current", PASSWORD), ("new", new), ("repeat", new)];
        let page = app.post_form("/account/password", &form).await.text().await.unwrap();
        assert!(page.contains("1 other session of yours ended"), "{page}");
        assert_eq!(get_with(&app, &elsewhere, "/tasks").await, StatusCode::SEE_OTHER);
        assert_eq!(app.get("/tasks").await.status(), StatusCode::OK, "this browser stays in");

        let ann = labeling::users::get_user_by_username(&app.db.pool, "ann").await.unwrap().id;
        labeling::users::set_disabled(&app.db.pool, ann, true).await.unwrap();
        assert_eq!(app.get("/tasks").await.status(), StatusCode::SEE_OTHER);
        labeling::users::set_disabled(&app.db.pool, ann, false).await.unwrap();
        assert_eq!(app.get("/tasks").await.status(), StatusCode::SEE_OTHER, "re-enabling revives no session");
        assert_eq!(standing(&app, "ann").await, 0);
    });
}

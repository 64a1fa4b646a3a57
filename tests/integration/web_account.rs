//! A person's own password, changed on its page.

use labeling::domain::Password;
use labeling::users;
use reqwest::StatusCode;

use crate::db::with_db;
use crate::web_app::{client, hidden_value, spawn_app, PASSWORD};

#[test]
fn anyone_changes_their_own_password_by_giving_the_current_one() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let logs_in = |password: &'static str| {
            let pool = app.db.pool.clone();
            async move { users::authenticate(&pool, "ann", &Password::parse(password).unwrap()).await.is_ok() }
        };
        assert_eq!(app.get("/account/password").await.status(), StatusCode::SEE_OTHER, "logged out: log in");
        app.log_in("ann").await;
        let page = app.get_html("/account/password").await;
        assert!(page.contains("id=\"password-form\""), "{page}");
        let csrf = hidden_value(&page, "csrf");

        // Refused, naming the field, and nothing changes.
        for (current, new, repeat, field) in [
            ("not my password", "brand new pw", "brand new pw", "current"),
            (PASSWORD, "brand new pw", "brand new px", "repeat"),
            (PASSWORD, "short", "short", "new"),
        ] {
            let form = [("current", current), ("new", new), ("repeat", repeat), ("csrf", csrf.as_str())];
            let response = app.post_form("/account/password", &form).await;
            assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY, "{field}");
            assert!(response.text().await.unwrap().contains(&format!("{field}:")), "{field}");
            assert!(logs_in(PASSWORD).await, "{field}: the old password still works");
        }
        let form =
            [("current", PASSWORD), ("new", "brand new pw"), ("repeat", "brand new pw"), ("csrf", &csrf)];
        let response = app.post_form("/account/password", &form).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.text().await.unwrap().contains("id=\"password-changed\""));
        assert!(!logs_in(PASSWORD).await && logs_in("brand new pw").await);

        // Never with an API token.
        let token = app.token_for("ann").await;
        let response = client()
            .post(app.url("/account/password"))
            .bearer_auth(&token)
            .form(&[("current", "brand new pw"), ("new", "token chosen"), ("repeat", "token chosen")])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert!(logs_in("brand new pw").await);
    });
}

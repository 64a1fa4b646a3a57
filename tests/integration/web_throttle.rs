//! Issue 16: the login throttle lives in Postgres. Guessing at an account makes it wait,
//! doubling, but never locks its owner out of a browser that logged in as it before; an
//! address that fails too often waits, and `X-Forwarded-For` is believed only from
//! trusted proxies; old counts are pruned as new failures come, never all at once.

use std::time::Duration;

use labeling::throttle::{self, ThrottleRules, Verdict};
use reqwest::StatusCode;

use crate::db::with_db;
use crate::web_app::{client, hidden_value, spawn_app, TestApp, PASSWORD};

/// Tries to log in as `username` with `password` from `http`: the status.
async fn try_login(
    app: &TestApp,
    http: &reqwest::Client,
    username: &str,
    password: &str,
) -> reqwest::Response {
    let page = http.get(app.url("/login")).send().await.unwrap().text().await.unwrap();
    let csrf = hidden_value(&page, "csrf");
    http.post(app.url("/login"))
        .header("X-Forwarded-For", "198.51.100.77")
        .form(&[("username", username), ("password", password), ("csrf", &csrf)])
        .send()
        .await
        .unwrap()
}

#[test]
fn guessing_at_an_account_makes_it_wait_but_not_for_its_owners_browser() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        // Ann's own browser has logged in before.
        let owners = client();
        assert_eq!(try_login(&app, &owners, "ann", PASSWORD).await.status(), StatusCode::SEE_OTHER);

        // Someone else guesses (the app allows 3 failures, then waits 1 s, 2 s, …).
        let guesser = client();
        for _ in 0..3 {
            assert_eq!(
                try_login(&app, &guesser, "ann", "wrong guess").await.status(),
                StatusCode::UNAUTHORIZED
            );
        }
        let refused = try_login(&app, &guesser, "ann", PASSWORD).await;
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(refused.headers().contains_key("retry-after"));
        // The wait doubles with each further failure.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert_eq!(try_login(&app, &guesser, "ann", "wrong again").await.status(), StatusCode::UNAUTHORIZED);
        let wait: f64 = sqlx::query_scalar(
            "SELECT max(extract(epoch FROM blocked_until - now()))::float8 FROM login_throttle
             WHERE key LIKE 'account:%'",
        )
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
        assert!(wait > 1.0 && wait <= 2.0, "{wait}");
        // The header was sent from a client, not a trusted proxy: the address counted is
        // the peer's, so a client cannot rotate addresses by naming them.
        let addresses: Vec<String> =
            sqlx::query_scalar("SELECT key FROM login_throttle WHERE key LIKE 'address:%'")
                .fetch_all(&app.db.pool)
                .await
                .unwrap();
        assert_eq!(addresses, ["address:127.0.0.1"]);

        // A new browser waits too, but the owner's is let in.
        assert_eq!(try_login(&app, &client(), "ann", PASSWORD).await.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(try_login(&app, &owners, "ann", PASSWORD).await.status(), StatusCode::SEE_OTHER);
        // Other accounts are not held by ann's count.
        assert_eq!(try_login(&app, &guesser, "rita", PASSWORD).await.status(), StatusCode::SEE_OTHER);
    });
}

#[test]
fn an_address_that_fails_too_often_waits_and_old_counts_are_pruned() {
    with_db(|db| async move {
        let pool = &db.pool;
        let rules = ThrottleRules {
            free: 100,
            max_wait: Duration::from_secs(900),
            per_address: 4,
            window: Duration::from_secs(300),
        };
        // A count from yesterday, long forgotten.
        sqlx::query(
            "INSERT INTO login_throttle VALUES ('address:192.0.2.200', 7, now() - interval '1 day', NULL)",
        )
        .execute(pool)
        .await
        .unwrap();
        for name in ["a", "b", "c", "d"] {
            assert_eq!(throttle::check(pool, name, "192.0.2.9", false).await.unwrap(), Verdict::Try);
            throttle::record_failure(pool, name, "192.0.2.9", rules).await.unwrap();
        }
        // A fifth account from the same address waits out the window, even from a known browser.
        match throttle::check(pool, "e", "192.0.2.9", true).await.unwrap() {
            Verdict::Wait { seconds } => assert!((290..=300).contains(&seconds), "{seconds}"),
            Verdict::Try => panic!("the address was not held"),
        }
        assert_eq!(throttle::check(pool, "e", "192.0.2.10", false).await.unwrap(), Verdict::Try);
        let keys: i64 =
            sqlx::query_scalar("SELECT count(*) FROM login_throttle").fetch_one(pool).await.unwrap();
        assert_eq!(keys, 5, "four accounts and one address: yesterday's count is gone");
    });
}

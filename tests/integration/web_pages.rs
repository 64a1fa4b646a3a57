//! Issue 15: every page keeps the site's header, the error pages of a logged-in reader
//! included, and the header marks where the reader is; an annotator's header offers no
//! page they cannot open.

use reqwest::StatusCode;

use crate::db::with_db;
use crate::web_app::spawn_app;

/// The header's links marked as the current page.
fn current_links(html: &str) -> Vec<String> {
    html.match_indices("aria-current=\"page\"")
        .filter_map(|(i, _)| {
            let start = html[..i].rfind("href=\"")? + 6;
            Some(html[start..].split('"').next()?.to_string())
        })
        .collect()
}

#[test]
fn error_pages_keep_the_header_and_the_header_marks_the_current_page() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        // Logged out, an error page has no header to draw (and no user to name).
        let missing = app.get("/no/such/page").await;
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
        let html = missing.text().await.unwrap();
        assert!(!html.contains("action=\"/logout\""), "{html}");

        app.log_in("ann").await;
        let tasks = app.get_html("/tasks").await;
        assert_eq!(current_links(&tasks), ["/tasks"]);
        assert!(!tasks.contains("href=\"/projects\""), "an annotator is offered no Projects link");
        assert_eq!(current_links(&app.get_html("/history").await), ["/history"]);
        assert_eq!(current_links(&app.get_html("/account/password").await), ["/account/password"]);

        for (path, status) in
            [("/projects/1/prompts", StatusCode::FORBIDDEN), ("/assignments/4242", StatusCode::NOT_FOUND)]
        {
            let response = app.get(path).await;
            assert_eq!(response.status(), status, "{path}");
            let html = response.text().await.unwrap();
            assert!(
                html.contains("<header>") && html.contains("action=\"/logout\"") && html.contains("ann"),
                "{path}: {html}"
            );
            assert!(
                html.contains("href=\"/tasks\"") && !html.contains("href=\"/projects\""),
                "{path}: {html}"
            );
        }

        app.log_in("rita").await;
        assert_eq!(current_links(&app.get_html("/runs").await), ["/runs"]);
        assert_eq!(current_links(&app.get_html("/models").await), ["/models"]);
        let response = app.get("/runs/999999").await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        let html = response.text().await.unwrap();
        assert!(html.contains("href=\"/projects\"") && html.contains("action=\"/logout\""), "{html}");
        assert_eq!(current_links(&html), ["/runs"]);
    });
}

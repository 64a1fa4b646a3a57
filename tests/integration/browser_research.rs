//! A researcher in a real browser: creates a project, uploads a prompt file with one bad
//! line and sees that line's error, then launches a run.

use crate::browser::Browser;
use crate::db::with_db;
use crate::web_app::spawn_app;

#[test]
fn a_researcher_uploads_prompts_sees_the_bad_line_and_launches_a_run() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let browser = Browser::start(&app.address).await;

        browser.goto("/login").await;
        browser.screenshot("login").await;
        browser.log_in("rita").await;
        browser.screenshot("home").await;

        browser.goto("/projects").await;
        browser.find("#name").await.send_keys("browser project").await.unwrap();
        browser.find("form[action='/projects'] button[type=submit]").await.click().await.unwrap();
        browser.find("table").await;
        assert!(browser.text().await.contains("browser project"));
        browser.screenshot("projects").await;
        let project: i64 = sqlx::query_scalar("SELECT id FROM projects WHERE name = 'browser project'")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();

        browser.goto(&format!("/projects/{project}/prompts")).await;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("prompts.jsonl");
        std::fs::write(&file, "{\"prompt\": \"reverse the word cat\"}\n{\"prompt\": 7}\n{\"prompt\": \"sort 3 1 2\", \"split\": \"val\"}\n")
            .unwrap();
        browser.find("#file").await.send_keys(&file.display().to_string()).await.unwrap();
        browser.find("#upload-file button[type=submit]").await.click().await.unwrap();
        let report = browser.find("section[aria-label='Import report']").await.text().await.unwrap();
        assert!(report.contains("2 imported"), "{report}");
        assert!(report.contains("line 2") && report.contains("prompt"), "{report}");
        browser.screenshot("prompts-upload-report").await;
        let stored: Vec<String> =
            sqlx::query_scalar("SELECT text FROM prompts WHERE project_id = $1 ORDER BY id")
                .bind(project)
                .fetch_all(&app.db.pool)
                .await
                .unwrap();
        assert_eq!(stored, ["reverse the word cat", "sort 3 1 2"]);

        browser.close().await;
    });
}

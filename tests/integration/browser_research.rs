//! A researcher in a real browser: creates a project, uploads a prompt file with one bad
//! line and sees that line's error, then launches a run.

use registry::artifacts::ArtifactStore;
use registry::versions::{self, ModelKind, NewVersion};
use serde_json::json;

use crate::browser::Browser;
use crate::db::with_db;
use crate::web_app::spawn_app;

#[cfg(feature = "trainer")]
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

        // A base version to fine-tune, then an SFT run launched from its form.
        let checkpoint = tempfile::tempdir().unwrap();
        std::fs::write(checkpoint.path().join("config.json"), "{\"n_layer\": 2}").unwrap();
        let artifact = ArtifactStore::new(app.artifacts.path()).unwrap().put_dir(checkpoint.path()).unwrap();
        let base = NewVersion {
            model: "base".into(),
            kind: ModelKind::Base,
            run_id: None,
            parents: Vec::new(),
            snapshots: Vec::new(),
            config: json!({}),
            metrics: json!({}),
            artifact,
            created_by: None,
        };
        versions::register(&app.db.pool, &base).await.unwrap();
        browser.goto(&format!("/runs/new?kind=sft&project={project}")).await;
        browser.find("#launch-form").await;
        let lr = browser.find("[id='f-stage.lr']").await.prop("value").await.unwrap().unwrap_or_default();
        assert_eq!(
            (lr.as_str(), trainer::sft::SftConfig::default().lr),
            ("", None),
            "empty by default: the rate is a rule of the base model's width"
        );
        let form = browser.find("#launch-form").await.text().await.unwrap();
        assert!(form.contains("from the model's width"), "the form says what an empty rate means: {form}");
        browser.find("#f-model_name").await.send_keys("sft-browser").await.unwrap();
        let base_field = browser.find("#f-base").await;
        base_field.clear().await.unwrap();
        base_field.send_keys("base:1").await.unwrap();
        let steps = browser.find("[id='f-stage.steps']").await;
        steps.clear().await.unwrap();
        steps.send_keys("3").await.unwrap();
        browser.screenshot("run-launch-form").await;
        browser.find("#launch-submit").await.click().await.unwrap();
        browser.find("#run-live").await;
        browser.screenshot("run-page").await;
        let run_path = browser.path().await;
        let runs = registry::runs::list(&app.db.pool, &Default::default()).await.unwrap();
        assert_eq!(runs.len(), 1);
        assert_eq!(run_path, format!("/runs/{}", runs[0].id));
        assert_eq!(
            (runs[0].config["model_name"].as_str(), runs[0].config["base"].as_str()),
            (Some("sft-browser"), Some("base:1"))
        );
        assert_eq!(runs[0].config["stage"]["steps"], 3);

        // The other researcher pages, for the record.
        for (path, name) in [
            ("/runs".to_owned(), "runs"),
            (format!("/projects/{project}"), "project"),
            (format!("/projects/{project}/data"), "data"),
            ("/models".to_owned(), "models"),
            ("/models/base/versions/1".to_owned(), "version"),
            ("/compare".to_owned(), "compare-picker"),
        ] {
            browser.goto(&path).await;
            browser.find("main h1").await;
            browser.screenshot(name).await;
        }
        browser.close().await;
    });
}

//! Issue 16: the audit log also records API tokens made and revoked, and runs launched
//! and cancelled, each with who did it.

use registry::versions::ModelKind;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::db::with_db;
use crate::web_app::{client, hidden_value, spawn_app};
use crate::web_runs::{new_project, register};

#[test]
fn tokens_and_runs_are_written_to_the_audit_log_with_their_actor() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let project = new_project(&app, "audited").await;
        register(&app, "base-tiny", ModelKind::Base, None, json!({}), json!({})).await;
        app.log_in("rita").await;
        let csrf = hidden_value(&app.get_html("/tokens").await, "csrf");
        let made =
            app.post_form("/tokens", &[("csrf", &csrf), ("name", "nightly"), ("scope", "research")]).await;
        assert_eq!(made.status(), StatusCode::OK);
        let token_id: i64 =
            sqlx::query_scalar("SELECT id FROM api_tokens").fetch_one(&app.db.pool).await.unwrap();
        let revoked = app.post_form(&format!("/tokens/{token_id}/revoke"), &[("csrf", &csrf)]).await;
        assert_eq!(revoked.status(), StatusCode::SEE_OTHER);

        let token = app.token_for("rita").await;
        let launch =
            json!({"project_id": project, "kind": "sft", "config": {"model_name": "m", "base": "base-tiny"}});
        let response =
            client().post(app.url("/api/runs")).bearer_auth(&token).json(&launch).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::CREATED, "{}", response.text().await.unwrap());
        let run: i64 = sqlx::query_scalar("SELECT id FROM runs").fetch_one(&app.db.pool).await.unwrap();
        let cancel = client()
            .post(app.url(&format!("/api/runs/{run}/cancel")))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(cancel.status(), StatusCode::OK);

        let admin = app.token_for("ada").await;
        let log: Value = client()
            .get(app.url("/api/admin/audit"))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let entries: Vec<(String, String, String)> = log
            .as_array()
            .or_else(|| log["entries"].as_array())
            .expect("a list of entries")
            .iter()
            .map(|e| {
                let text = |k: &str| e[k].as_str().unwrap_or_default().to_string();
                (text("action"), text("subject"), text("actor"))
            })
            .collect();
        let rita = |action: &str, subject: String| (action.to_string(), subject, "rita".to_string());
        for expected in [
            rita("token.create", format!("token nightly (#{token_id})")),
            rita("token.revoke", format!("token nightly (#{token_id})")),
            rita("run.launch", format!("run #{run}")),
            rita("run.cancel", format!("run #{run}")),
        ] {
            assert!(entries.contains(&expected), "{expected:?} not in {entries:?}");
        }
    });
}

//! Issue 16 in a real browser: an admin creates an annotator, who logs in with the
//! one-time password, ranks a task and logs out, after which their old cookie is refused;
//! then the admin disables them and their API token stops working.

use labeling::domain::TokenName;
use reqwest::StatusCode;

use crate::browser::Browser;
use crate::browser_annotate::ranking_tasks;
use crate::db::with_db;
use crate::web_app::spawn_app;

#[test]
fn an_admin_onboards_an_annotator_who_works_logs_out_and_is_offboarded() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let project = ranking_tasks(&app, &["Name a colour."], &["red", "green", "blue"]).await;

        // The admin creates nia, an annotator, and reads her one-time password once.
        let admin = Browser::start(&app.address).await;
        admin.log_in("ada").await;
        admin.goto("/admin/users").await;
        admin.find("#new-username").await.send_keys("nia").await.unwrap();
        admin.find("#new-role").await.select_by_value("annotator").await.unwrap();
        admin.find("#create-user").await.click().await.unwrap();
        let password = admin.find("#password-value").await.text().await.unwrap();
        admin.screenshot("admin-user-created").await;
        let nia = labeling::users::get_user_by_username(&app.db.pool, "nia").await.unwrap();
        labeling::projects::add_member(&app.db.pool, project, nia.id).await.unwrap();

        // Nia logs in, ranks her task and logs out.
        let browser = Browser::start(&app.address).await;
        browser.goto("/login").await;
        browser.find("#username").await.send_keys("nia").await.unwrap();
        browser.find("#password").await.send_keys(password.trim()).await.unwrap();
        browser.find("form[action='/login'] button[type=submit]").await.click().await.unwrap();
        browser.find("body > header").await;
        browser.goto("/tasks").await;
        browser.take_next_task(project).await;
        browser.find("#ranking-form.enhanced").await;
        for (position, rank) in [(0, "3"), (1, "1"), (2, "2")] {
            browser.find(&format!("select[name=rank_{position}]")).await.select_by_value(rank).await.unwrap();
        }
        browser.find("#submit").await.click().await.unwrap();
        browser.find(".note").await;
        let ranks: Vec<i16> = sqlx::query_scalar("SELECT ranks FROM rankings WHERE annotator_id = $1")
            .bind(nia.id)
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
        assert_eq!(ranks, [2, 0, 1]);
        let cookies = browser.client.get_all_cookies().await.unwrap();
        let session = cookies.iter().find(|c| c.name() == "plumb_session").expect("a session cookie");
        let old_cookie = format!("plumb_session={}", session.value());
        browser.find("body > header form[action='/logout'] button").await.click().await.unwrap();
        browser.find("form[action='/login']").await;
        browser.close().await;

        // The cookie she had is spent: a copy of it is sent to the login page.
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let replay = http.get(app.url("/tasks")).header("cookie", &old_cookie).send().await.unwrap();
        assert_eq!(replay.status(), StatusCode::SEE_OTHER);
        assert!(replay.headers()["location"].to_str().unwrap().starts_with("/login"));

        // Her API token works until the admin disables her.
        let (_, token) =
            labeling::users::create_api_token(&app.db.pool, nia.id, &TokenName::parse("script").unwrap())
                .await
                .unwrap();
        let call = || http.get(app.url("/api/me/projects")).bearer_auth(&token).send();
        assert_eq!(call().await.unwrap().status(), StatusCode::OK);
        admin.goto("/admin/users").await;
        admin.find("tr[data-user='nia'] form[action$='/disable'] button").await.click().await.unwrap();
        admin.find("tr[data-user='nia']").await;
        assert!(admin.find("tr[data-user='nia']").await.text().await.unwrap().contains("disabled"));
        admin.screenshot("admin-user-disabled").await;
        assert_eq!(call().await.unwrap().status(), StatusCode::UNAUTHORIZED);
        admin.close().await;
    });
}

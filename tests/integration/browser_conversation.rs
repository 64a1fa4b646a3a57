//! Issue 17: a conversation is a prompt. An annotator ranking the assistant's next turn
//! reads the turns so far, each under its speaker, and the ranking is stored for the
//! conversation's samples.

use labeling::formats::Format;
use labeling::imports::{self, ImportFile};
use labeling::prompts::ImportLimits;
use serde_json::json;

use crate::browser::Browser;
use crate::browser_annotate::rank_values;
use crate::db::with_db;
use crate::web_app::spawn_app;

#[test]
fn an_annotator_ranks_the_next_turn_of_a_three_turn_conversation_and_reads_each_turn() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let pool = &app.db.pool;
        let project = crate::browser_annotate::ranking_tasks(&app, &[], &[]).await;
        // A TRL conversational pair: three turns, then two candidate assistant turns.
        let turns = json!([
            { "role": "system", "content": "You answer in one short sentence." },
            { "role": "user", "content": "Which planet is the largest?" },
            { "role": "assistant", "content": "Jupiter." },
            { "role": "user", "content": "And the smallest?" },
        ]);
        let line = json!({
            "prompt": turns,
            "chosen": [{ "role": "assistant", "content": "Mercury is the smallest." }],
            "rejected": [{ "role": "assistant", "content": "Pluto, the ninth planet." }],
        });
        let bytes = format!("{line}\n");
        let file = ImportFile { name: "planets.jsonl", format: Format::Trl, bytes: bytes.as_bytes() };
        let report = imports::import(pool, project, file, None, &ImportLimits::default()).await.unwrap();
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        let prompt = report.imported[0].prompt_id;
        let samples: Vec<i64> = sqlx::query_scalar("SELECT id FROM samples WHERE prompt_id = $1 ORDER BY id")
            .bind(prompt)
            .fetch_all(pool)
            .await
            .unwrap();
        assert_eq!(samples.len(), 2);
        labeling::tasks::create_ranking_task(pool, project, prompt, &samples).await.unwrap();

        let browser = Browser::start(&app.address).await;
        browser.log_in("ann").await;
        browser.goto("/tasks").await;
        browser.take_next_task(project).await;
        browser.find("#ranking-form.enhanced").await;
        let shown = browser
            .client
            .execute(
                "return [...document.querySelectorAll('#prompt-text .turn')]
                    .map(t => [t.querySelector('.role').textContent, t.querySelector('.text').textContent])",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(
            shown,
            json!([
                ["System", "You answer in one short sentence."],
                ["User", "Which planet is the largest?"],
                ["Assistant", "Jupiter."],
                ["User", "And the smallest?"],
            ]),
            "every turn under its speaker, oldest first"
        );
        let page = browser.find("main").await.text().await.unwrap();
        assert!(
            !page.contains("User: Which planet"),
            "the template's rendering is not what annotators read: {page}"
        );
        browser.screenshot("ranking-conversation").await;

        // Rank the second card first and send: stored for the conversation's samples.
        let cards = browser
            .client
            .execute(
                "return [...document.querySelectorAll('.sample-card .text')].map(t => t.textContent)",
                vec![],
            )
            .await
            .unwrap();
        let mercury =
            cards.as_array().unwrap().iter().position(|t| t.as_str().unwrap().contains("Mercury")).unwrap();
        browser.find(&format!("select[name=rank_{mercury}]")).await.select_by_value("1").await.unwrap();
        browser.find(&format!("select[name=rank_{}]", 1 - mercury)).await.select_by_value("2").await.unwrap();
        assert_eq!(rank_values(&browser, 2).await.iter().filter(|r| !r.is_empty()).count(), 2);
        browser.find("#submit").await.click().await.unwrap();
        let best_of = "SELECT s.text FROM rankings r JOIN task_samples ts ON ts.task_id = r.task_id
                       JOIN samples s ON s.id = ts.sample_id WHERE r.ranks[ts.position + 1] = 0";
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        let best: String = loop {
            if let Some(best) = sqlx::query_scalar(best_of).fetch_optional(pool).await.unwrap() {
                break best;
            }
            assert!(std::time::Instant::now() < deadline, "no ranking was stored");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        };
        assert_eq!(best, "Mercury is the smallest.");
    });
}

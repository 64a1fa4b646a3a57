//! Human evaluation from an eval run's page, over HTTP: a blind A/B batch between the
//! run's versions, the annotators' votes turned into win rates and a Bradley–Terry
//! leaderboard, and the prompts where the annotators and the reward model disagree sent
//! back as ranking tasks. The eval run's samples are stored directly (the worker's part
//! is tested in `loop_api` and `worker`).

use std::time::Duration;

use ::registry::evals::{self, EvalSample};
use ::registry::runs::{self, NewRun, RunKind};
use ::registry::versions::{self, ModelKind, NewVersion};
use labeling::annotation::{IdempotencyKey, Vote};
use labeling::domain::{
    Comment, DisplayName, Guidelines, Overlap, Password, ProjectName, PromptSource, PromptText, Role, Split,
    Username,
};
use labeling::projects::NewProject;
use labeling::prompts::NewPrompt;
use labeling::tasks::{self, TaskKind};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::db::with_db;
use crate::web_app::{hidden_value, spawn_app, TestApp};

const PROMPTS: usize = 6;
const LABELS: [&str; 3] = ["base", "sft", "policy"];

pub(crate) struct EvalWorld {
    project: i64,
    pub(crate) run: i64,
    /// base, sft, policy.
    versions: [i64; 3],
    prompts: Vec<i64>,
    annotators: Vec<i64>,
}

async fn register(app: &TestApp, model: &str) -> i64 {
    let sha256: String = Sha256::digest(model.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
    let new = NewVersion {
        model: model.into(),
        kind: if model == "base" { ModelKind::Base } else { ModelKind::Sft },
        run_id: None,
        parents: Vec::new(),
        snapshots: Vec::new(),
        config: json!({}),
        metrics: json!({}),
        artifact: ::registry::artifacts::StoredArtifact {
            uri: format!("file:///artifacts/sha256/{sha256}"),
            sha256,
            size: 1,
        },
        created_by: None,
    };
    versions::register(&app.db.pool, &new).await.unwrap().id
}

/// `n` held-out prompts of the demo world's sorting task in `project`: their ids.
pub(crate) async fn test_prompts(pool: &sqlx::PgPool, project: i64, n: usize) -> Vec<i64> {
    let mut prompts = Vec::new();
    for i in 0..n {
        let new = NewPrompt {
            project_id: project,
            text: PromptText::parse(format!("Sort the digits {i}31.\n")).unwrap(),
            split: Split::Test,
            source: PromptSource::parse("test").unwrap(),
            created_by: None,
        };
        prompts.push(labeling::prompts::add_prompt(pool, &new).await.unwrap().id);
    }
    prompts
}

/// A project with three annotators (overlap 3), six test prompts, and a succeeded eval
/// run of base, sft and policy. Each sample's text says its version. The reward model
/// scores policy > sft > base, except on the first prompt, where it prefers base; sft
/// wrote the same text as base on the last prompt.
pub(crate) async fn eval_world(app: &TestApp) -> EvalWorld {
    let pool = &app.db.pool;
    let new = NewProject {
        name: ProjectName::parse("evals").unwrap(),
        guidelines: Guidelines::default(),
        overlap: Overlap::parse(3).unwrap(),
        samples_per_task: Default::default(),
        created_by: None,
    };
    let project = labeling::projects::create_project(pool, &new).await.unwrap().id;
    let mut annotators = vec![labeling::users::get_user_by_username(pool, "ann").await.unwrap().id];
    for name in ["bea", "cy"] {
        let user = labeling::users::create_user(
            pool,
            &Username::parse(name).unwrap(),
            &DisplayName::parse(name).unwrap(),
            Role::Annotator,
            &Password::parse("a long enough password").unwrap(),
        )
        .await
        .unwrap();
        annotators.push(user.id);
    }
    for &a in &annotators {
        labeling::projects::add_member(pool, project, a).await.unwrap();
    }
    let prompts = test_prompts(pool, project, PROMPTS).await;
    let mut ids = [0; 3];
    for (i, label) in LABELS.iter().enumerate() {
        ids[i] = register(app, label).await;
    }
    let config = json!({ "versions": ["base:1", "sft:1", "policy:1"], "prompts": { "split": "test" } });
    let run = runs::enqueue(
        pool,
        &NewRun { project_id: Some(project), kind: RunKind::Eval, config, created_by: None },
    )
    .await
    .unwrap();
    runs::claim(pool, "w1", Duration::from_secs(60)).await.unwrap().unwrap();
    let mut samples = Vec::new();
    for (p, &prompt_id) in prompts.iter().enumerate() {
        for (v, &version_id) in ids.iter().enumerate() {
            let label = if v == 1 && p == PROMPTS - 1 { "base" } else { LABELS[v] };
            let reward = if p == 0 && v == 0 { 3.0 } else { v as f32 };
            samples.push(EvalSample {
                version_id,
                prompt_id,
                text: format!("{label} answers prompt {p}"),
                tokens: 4,
                eos: true,
                repetition: 0.0,
                reward: Some(reward),
                kl: None,
                oracle: None,
            });
        }
    }
    evals::store(pool, run, &samples).await.unwrap();
    runs::finish(pool, run, "w1").await.unwrap();
    EvalWorld { project, run, versions: ids, prompts, annotators }
}

/// Each annotator takes every task they may and votes for the better version's sample
/// (policy over sft over base, read from the text); returns the votes cast.
async fn vote_all(app: &TestApp, w: &EvalWorld) -> usize {
    let rank = |text: &str| LABELS.iter().position(|l| text.starts_with(l)).unwrap();
    let mut cast = 0;
    for &annotator in &w.annotators {
        while let Some(a) =
            tasks::next_task(&app.db.pool, w.project, annotator, Duration::from_secs(600)).await.unwrap()
        {
            assert_eq!(a.kind, TaskKind::Comparison);
            let vote = if rank(&a.samples[0].text) > rank(&a.samples[1].text) { Vote::A } else { Vote::B };
            labeling::submit::submit_vote(
                &app.db.pool,
                annotator,
                a.id,
                vote,
                &Comment::default(),
                None,
                IdempotencyKey::new(),
            )
            .await
            .unwrap();
            cast += 1;
        }
    }
    cast
}

#[test]
fn a_blind_ab_batch_becomes_win_rates_a_leaderboard_and_disagreements_sent_back() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let w = eval_world(&app).await;
        let [base, sft, policy] = w.versions;
        app.log_in("rita").await;
        let page = app.get_html(&format!("/evals/{}", w.run)).await;
        assert!(
            page.contains("id=\"ab-batch-form\"") && page.contains("No A/B votes in this project yet"),
            "{page}"
        );

        // Every other version against the baseline (base), on every prompt: 2 pairs × 6
        // prompts, less the prompt where sft and base wrote the same text.
        let csrf = hidden_value(&page, "csrf");
        let response = app
            .post_form(
                &format!("/evals/{}/ab-batches", w.run),
                &[("csrf", &csrf), ("a", ""), ("b", ""), ("prompts", "")],
            )
            .await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        let location = response.headers()["location"].to_str().unwrap().to_owned();
        assert_eq!(location, format!("/evals/{}?ab_tasks=11", w.run), "no fragment: the notice is on top");
        let after = app.get_html(&location).await;
        let notice = after.find("11 A/B tasks are waiting for the annotators.").unwrap();
        assert!(notice < after.find("id=\"eval-summary\"").unwrap(), "the notice comes before the results");

        // A pair through the API: sft against policy on the first four prompts; asking
        // again asks nothing twice.
        let token = app.token_for("rita").await;
        let post = |body: Value| {
            let request =
                app.client.post(app.url(&format!("/api/evals/{}/ab-batches", w.run))).bearer_auth(&token);
            async move { request.json(&body).send().await.unwrap() }
        };
        // More prompts than a batch may ask about is refused, not cut down.
        let too_many = post(json!({ "a": sft, "b": policy, "prompts": 1_000_000_000_000_000_u64 })).await;
        assert_eq!(too_many.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(too_many.json::<Value>().await.unwrap()["error"]["field"], "prompts");
        // Two requests at once (a double click) make the batch once between them.
        let (first, second) = tokio::join!(
            post(json!({ "a": sft, "b": policy, "prompts": 4 })),
            post(json!({ "a": sft, "b": policy, "prompts": 4 }))
        );
        assert_eq!((first.status(), second.status()), (StatusCode::CREATED, StatusCode::CREATED));
        let (first, second): (Value, Value) = (first.json().await.unwrap(), second.json().await.unwrap());
        let made = |b: &Value| b["task_ids"].as_array().unwrap().len();
        assert_eq!((made(&first) + made(&second), made(&first) * made(&second)), (4, 0), "{first} {second}");
        let again: Value = post(json!({ "a": sft, "b": policy, "prompts": 4 })).await.json().await.unwrap();
        assert_eq!((made(&again), &again["already_asked"]), (0, &json!(4)));
        let copies: i64 =
            sqlx::query_scalar("SELECT count(*) FROM samples").fetch_one(&app.db.pool).await.unwrap();
        assert_eq!(copies, (3 * PROMPTS) as i64, "each eval sample copied once");
        // Bad requests name the field and make nothing.
        let bad = post(json!({ "a": 999_999 })).await;
        assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(bad.json::<Value>().await.unwrap()["error"]["field"], "a");
        let bad = post(json!({ "b": sft })).await;
        assert_eq!(bad.json::<Value>().await.unwrap()["error"]["field"], "a");
        let other = runs::enqueue(
            &app.db.pool,
            &NewRun { project_id: Some(w.project), kind: RunKind::Sft, config: json!({}), created_by: None },
        )
        .await
        .unwrap();
        let response = app
            .client
            .post(app.url(&format!("/api/evals/{other}/ab-batches")))
            .bearer_auth(&token)
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CONFLICT);
        let progress: Value = app.get(&format!("/api/evals/{}", w.run)).await.json().await.unwrap();
        assert_eq!(progress["human"]["progress"], json!({ "tasks": 15, "votes": 0 }));

        // The annotators (three per task) vote; the sides were drawn at random, so the
        // versions are found back through the samples.
        assert_eq!(vote_all(&app, &w).await, 45);
        // A baseline that is not a version id is a 400 naming the parameter.
        let response = app.get(&format!("/api/evals/{}?baseline=abc", w.run)).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let error: Value = response.json().await.unwrap();
        assert!(error.to_string().contains("`baseline`"), "{error}");
        let report: Value =
            app.get(&format!("/api/evals/{}?baseline={base}", w.run)).await.json().await.unwrap();
        let human_rate = |version: i64| {
            report["versions"].as_array().unwrap().iter().find(|v| v["version_id"] == version).unwrap()
                ["win_rate_human"]
                .clone()
        };
        assert_eq!(human_rate(base), Value::Null, "the baseline has no win rate against itself");
        assert_eq!(
            (human_rate(policy)["rate"].as_f64(), &human_rate(policy)["prompts"]),
            (Some(1.0), &json!(18))
        );
        assert_eq!((human_rate(sft)["rate"].as_f64(), &human_rate(sft)["prompts"]), (Some(1.0), &json!(15)));
        let board: Vec<i64> = report["human"]["leaderboard"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["version_id"].as_i64().unwrap())
            .collect();
        assert_eq!(board, [policy, sft, base]);
        let top = &report["human"]["leaderboard"][0];
        assert!(
            top["low"].as_f64() <= top["rating"].as_f64() && top["rating"].as_f64() <= top["high"].as_f64()
        );
        assert_eq!(top["votes"], 30, "18 against base and 12 against sft");
        // On the first prompt the reward model prefers base, the annotators sft and policy.
        let found = report["human"]["disagreements"].as_array().unwrap();
        let pairs: Vec<(i64, i64, i64)> = found
            .iter()
            .map(|d| {
                let n = |k: &str| d[k].as_i64().unwrap();
                (n("prompt_id"), n("annotators_prefer"), n("reward_model_prefers"))
            })
            .collect();
        assert_eq!(pairs, [(w.prompts[0], sft, base), (w.prompts[0], policy, base)], "{found:?}");
        assert_eq!((&found[0]["votes_for"], &found[0]["votes_against"]), (&json!(3), &json!(0)));

        // The page shows the leaderboard and the disagreements; sending them back makes
        // one ranking task of the prompt with every version's sample, once.
        let page = app.get_html(&format!("/evals/{}?baseline={base}", w.run)).await;
        for needle in [
            "id=\"leaderboard\"",
            "policy:1",
            "id=\"disagreements-table\"",
            "Send these prompts back",
            "data-confirm=\"Send 1 prompt back as a ranking task?\"",
            "/static/confirm.js",
        ] {
            assert!(page.contains(needle), "{needle} not in the page");
        }
        let response = app.post_form(&format!("/evals/{}/ranking-tasks", w.run), &[("csrf", &csrf)]).await;
        assert_eq!(response.headers()["location"], format!("/evals/{}?ranking_tasks=1", w.run).as_str());
        let sent: Vec<(i64, i16)> =
            sqlx::query_as("SELECT prompt_id, k FROM tasks WHERE project_id = $1 AND kind = 'ranking'")
                .bind(w.project)
                .fetch_all(&app.db.pool)
                .await
                .unwrap();
        assert_eq!(sent, [(w.prompts[0], 3)]);
        let response = app
            .client
            .post(app.url(&format!("/api/evals/{}/ranking-tasks", w.run)))
            .bearer_auth(&token)
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        assert_eq!(response.json::<Value>().await.unwrap()["task_ids"], json!([]));
        // The compare page of the three versions lists the eval run.
        let compare = app.get_html(&format!("/compare?v={base}&v={sft}&v={policy}")).await;
        assert!(compare.contains(&format!("<a href=\"/evals/{}\">Eval run {}</a>: base:1, sft:1, policy:1 <small>(every compared version)", w.run, w.run)), "{compare}");
        // An annotator may not launch batches.
        let ann = crate::web_app::client();
        let login = ann.get(app.url("/login")).send().await.unwrap().text().await.unwrap();
        let ann_csrf = hidden_value(&login, "csrf");
        let form = [("username", "ann"), ("password", crate::web_app::PASSWORD), ("csrf", ann_csrf.as_str())];
        ann.post(app.url("/login")).form(&form).send().await.unwrap();
        let response = ann
            .post(app.url(&format!("/evals/{}/ab-batches", w.run)))
            .form(&[("csrf", ann_csrf.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
    });
}

/// The prompt-by-prompt table of `html`: its rows' prompt ids, in order.
fn prompt_rows(html: &str) -> Vec<i64> {
    let table = &html[html.find("id=\"eval-prompts\"").unwrap()..];
    table
        .split("<tr data-prompt-id=\"")
        .skip(1)
        .map(|row| row.split('"').next().unwrap().parse().unwrap())
        .collect()
}

#[test]
fn the_prompt_table_pages_sorts_by_score_gap_filters_and_marks_undecodable_bytes() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let w = eval_world(&app).await;
        let pool = &app.db.pool;
        // The fourth prompt has the widest gap (policy scored 9), the third a narrow one.
        for (prompt, reward) in [(3, 9.0_f32), (2, 0.5)] {
            sqlx::query("UPDATE eval_samples SET reward = $1 WHERE run_id = $2 AND prompt_id = $3 AND version_id = $4")
                .bind(reward)
                .bind(w.run)
                .bind(w.prompts[prompt])
                .bind(w.versions[2])
                .execute(pool)
                .await
                .unwrap();
        }
        sqlx::query(
            "UPDATE eval_samples SET text = 'bad \u{FFFD} byte' WHERE run_id = $1 AND prompt_id = $2",
        )
        .bind(w.run)
        .bind(w.prompts[1])
        .execute(pool)
        .await
        .unwrap();
        app.log_in("rita").await;
        let base = format!("/evals/{}", w.run);

        let first = app.get_html(&format!("{base}?per_page=4")).await;
        assert_eq!(prompt_rows(&first), w.prompts[..4]);
        assert!(first.contains("page 1 of 2") && first.contains("id=\"page-next\""), "{first}");
        let second = app.get_html(&format!("{base}?per_page=4&page=2")).await;
        assert_eq!(prompt_rows(&second), w.prompts[4..]);
        assert!(second.contains("id=\"page-prev\"") && !second.contains("id=\"page-next\""));
        // The A/B form still offers every prompt of the run, not the page's.
        assert!(first.contains("data-prompts=\"6\""), "{first}");
        assert!(
            first.contains("data-confirm=\"Create up to 12 blind A/B tasks (6 prompts × 2 pairs)"),
            "{first}"
        );
        assert!(first.contains("/static/eval.js"));

        // The widest gap first, the narrowest (0.5 – 0 on the third prompt … 1) last.
        let by_gap = prompt_rows(&app.get_html(&format!("{base}?sort=gap")).await);
        assert_eq!(by_gap[0], w.prompts[3], "{by_gap:?}");
        assert_eq!(by_gap[5], w.prompts[2], "{by_gap:?}");
        assert_eq!(
            by_gap[1..5],
            [w.prompts[0], w.prompts[1], w.prompts[4], w.prompts[5]],
            "ties keep prompt order"
        );

        // The filter finds text in the samples (any case) and in the prompts.
        let found = app.get_html(&format!("{base}?q=BAD")).await;
        assert_eq!(prompt_rows(&found), [w.prompts[1]]);
        assert!(found.contains("1 of 6 prompts contain"), "{found}");
        assert_eq!(prompt_rows(&app.get_html(&format!("{base}?q=digits%205")).await), [w.prompts[5]]);
        assert!(prompt_rows(&app.get_html(&format!("{base}?q=nowhere")).await).is_empty());

        // Undecodable bytes are a labelled marker, never a raw U+FFFD.
        assert!(found.contains("bad <span class=\"bad-byte\" title=\"undecodable byte\""), "{found}");
        assert!(!found.contains('\u{FFFD}'), "no raw replacement character");

        for (query, field) in [
            ("per_page=0", "per_page"),
            ("per_page=100000", "per_page"),
            ("page=3&per_page=4", "page"),
            ("page=0", "page"),
            ("sort=shuffle", "sort"),
        ] {
            let response = app.get(&format!("{base}?{query}")).await;
            assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY, "{query}");
            assert!(response.text().await.unwrap().contains(field), "{query} names {field}");
        }
    });
}

/// With the oracle's scores (base −0.5 < sft 0.5 < policy 0.9 on every prompt), the
/// reward model orders every pair as the oracle does but on the first prompt, where it
/// prefers base: 5 of 6 on base's pairs, 6 of 6 between sft and policy.
#[test]
fn the_reward_model_is_set_against_the_oracle_pair_of_versions_by_pair() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let w = eval_world(&app).await;
        let [base, sft, policy] = w.versions;
        app.log_in("rita").await;
        let page = app.get_html(&format!("/evals/{}", w.run)).await;
        assert!(!page.contains("id=\"rm-oracle-table\""), "no oracle scores, no section");

        for (version, oracle) in [(base, -0.5_f32), (sft, 0.5), (policy, 0.9)] {
            sqlx::query("UPDATE eval_samples SET oracle = $1 WHERE run_id = $2 AND version_id = $3")
                .bind(oracle)
                .bind(w.run)
                .bind(version)
                .execute(&app.db.pool)
                .await
                .unwrap();
        }
        let report: Value = app.get(&format!("/api/evals/{}", w.run)).await.json().await.unwrap();
        let rows: Vec<(i64, i64, String, u64, u64)> = report["reward_oracle_agreement"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let label =
                    format!("{} vs {}", r["label_a"].as_str().unwrap(), r["label_b"].as_str().unwrap());
                let n = |k: &str| r[k].as_i64().unwrap();
                (
                    n("version_a"),
                    n("version_b"),
                    label,
                    r["agree"].as_u64().unwrap(),
                    r["pairs"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            rows,
            [
                (base, sft, "base:1 vs sft:1".to_owned(), 5, 6),
                (base, policy, "base:1 vs policy:1".to_owned(), 5, 6),
                (sft, policy, "sft:1 vs policy:1".to_owned(), 6, 6),
            ]
        );
        let page = app.get_html(&format!("/evals/{}", w.run)).await;
        let section = &page[page.find("id=\"rm-oracle-table\"").expect("the section")..];
        assert!(section.contains("base:1 vs sft:1</th><td>0.833</td><td>6</td>"), "{section}");
        assert!(section.contains("sft:1 vs policy:1</th><td>1.000</td><td>6</td>"), "{section}");
    });
}

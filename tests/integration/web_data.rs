//! The project's data page over HTTP: counts, agreement per annotator (table and chart),
//! consensus per task (paged), snapshots frozen from the page and downloaded as the
//! training files that `labeling::snapshots::export` writes; the role checks and bad
//! input; and the same through the JSON API.

use std::time::Duration;

use labeling::annotation::{IdempotencyKey, RankingInput, RankingSubmission};
use labeling::domain::{DisplayName, Password, ResponseText, Role, Username};
use labeling::snapshots::{self, ExportFormat, PairsTies};
use labeling::submit::{self, DemonstrationFor};
use labeling::tasks::{self, NewSample};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::db::with_db;
use crate::web_app::{client, hidden_value, spawn_app, TestApp};

const LEASE: Duration = Duration::from_secs(600);

async fn add_annotator(pool: &PgPool, name: &str) -> i64 {
    labeling::users::create_user(
        pool,
        &Username::parse(name).unwrap(),
        &DisplayName::parse(name).unwrap(),
        Role::Annotator,
        &Password::parse("correct horse battery").unwrap(),
    )
    .await
    .unwrap()
    .id
}

async fn user_id(pool: &PgPool, name: &str) -> i64 {
    labeling::users::get_user_by_username(pool, name).await.unwrap().id
}

async fn project_with_prompts(pool: &PgPool, overlap: i32, splits: &[&str]) -> (i64, Vec<i64>) {
    let project: i64 =
        sqlx::query_scalar("INSERT INTO projects (name, overlap) VALUES ('data', $1) RETURNING id")
            .bind(overlap)
            .fetch_one(pool)
            .await
            .unwrap();
    let mut prompts = Vec::new();
    for (i, split) in splits.iter().enumerate() {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO prompts (project_id, text, split) VALUES ($1, $2, $3::split) RETURNING id",
        )
        .bind(project)
        .bind(format!("prompt {i}"))
        .bind(split)
        .fetch_one(pool)
        .await
        .unwrap();
        prompts.push(id);
    }
    (project, prompts)
}

/// A ranking task of `k` fresh samples of `prompt`.
async fn ranking_task(pool: &PgPool, project: i64, prompt: i64, k: usize) -> i64 {
    let new: Vec<NewSample> = (0..k)
        .map(|i| NewSample { prompt_id: prompt, text: format!("p{prompt} sample {i}"), logprobs: None })
        .collect();
    let samples = tasks::add_samples(pool, project, None, None, &json!({}), &new).await.unwrap();
    tasks::create_ranking_task(pool, project, prompt, &samples).await.unwrap()
}

/// `annotator` takes their next task and ranks its samples in `groups`.
async fn rank_next(pool: &PgPool, project: i64, annotator: i64, k: usize, groups: &[&[usize]]) {
    rank_next_in(pool, project, annotator, k, groups, None).await
}

/// [`rank_next`], having spent `time_spent_ms` on it.
async fn rank_next_in(
    pool: &PgPool,
    project: i64,
    annotator: i64,
    k: usize,
    groups: &[&[usize]],
    time_spent_ms: Option<i64>,
) {
    let assignment = tasks::next_task(pool, project, annotator, LEASE).await.unwrap().expect("a task");
    let input = RankingInput {
        ranking: Some(groups.iter().map(|g| g.to_vec()).collect()),
        time_spent_ms,
        ..RankingInput::default()
    };
    let submission = RankingSubmission::parse(k, input).unwrap();
    submit::submit_ranking(pool, annotator, assignment.id, &submission, IdempotencyKey::new()).await.unwrap();
}

/// Prompts: two in train, one in val. Two ranking tasks of K = 3 with overlap 2: `ann`
/// and `bea` agree on all 3 pairs of the first and on 2 of 3 of the second (5/6), and
/// `ann` writes one demonstration for the val prompt.
async fn ranked_project(app: &TestApp) -> i64 {
    let pool = &app.db.pool;
    let (project, prompts) = project_with_prompts(pool, 2, &["train", "train", "val"]).await;
    ranking_task(pool, project, prompts[0], 3).await;
    ranking_task(pool, project, prompts[1], 3).await;
    let ann = user_id(pool, "ann").await;
    let bea = add_annotator(pool, "bea").await;
    rank_next(pool, project, ann, 3, &[&[0], &[1], &[2]]).await;
    rank_next(pool, project, ann, 3, &[&[0], &[1], &[2]]).await;
    rank_next(pool, project, bea, 3, &[&[0], &[1], &[2]]).await;
    rank_next(pool, project, bea, 3, &[&[1], &[0], &[2]]).await;
    tasks::create_demonstration_tasks(pool, project, &prompts[2..]).await.unwrap();
    let assignment =
        tasks::next_task(pool, project, ann, LEASE).await.unwrap().expect("the demonstration task");
    let text = ResponseText::parse("An ideal answer.").unwrap();
    submit::submit_demonstration(
        pool,
        ann,
        DemonstrationFor::Assignment(assignment.id),
        &text,
        None,
        IdempotencyKey::new(),
    )
    .await
    .unwrap();
    project
}

/// The JSON that `rita` gets with a token from the API's GET `path`.
async fn api_get(app: &TestApp, path: &str) -> Value {
    let token = app.token_for("rita").await;
    let response = client().get(app.url(path)).bearer_auth(&token).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "GET {path}");
    response.json().await.unwrap()
}

fn location(response: &reqwest::Response) -> String {
    response.headers()["location"].to_str().unwrap().to_string()
}

async fn body_lines(response: reqwest::Response) -> Vec<String> {
    response.text().await.unwrap().lines().map(str::to_string).collect()
}

#[test]
fn the_data_page_counts_prompts_tasks_and_submissions() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let project = ranked_project(&app).await;
        app.log_in("rita").await;
        let html = app.get_html(&format!("/projects/{project}/data")).await;
        for (hook, n) in [
            ("prompts-train", 2),
            ("prompts-val", 1),
            ("prompts-test", 0),
            ("rankings", 4),
            ("demonstrations", 1),
            ("votes", 0),
            ("annotators-submitted", 2),
        ] {
            assert!(html.contains(&format!("data-count=\"{hook}\">{n}<")), "{hook} = {n} in {html}");
        }
        // Both ranking tasks have their two rankings; the demonstration task has one of two.
        assert!(
            html.contains(
                "<tr data-kind=\"ranking\"><th scope=\"row\">ranking</th><td>0</td><td>0</td><td>2</td></tr>"
            ),
            "{html}"
        );
        assert!(html.contains("<tr data-kind=\"demonstration\"><th scope=\"row\">demonstration</th><td>0</td><td>1</td><td>0</td></tr>"), "{html}");

        let body = api_get(&app, &format!("/api/projects/{project}/data")).await;
        assert_eq!(body["counts"]["prompts"], json!({"train": 2, "val": 1, "test": 0}));
        assert_eq!(body["counts"]["rankings"], 4);
        assert_eq!(body["counts"]["annotators_active_7d"], 2);
        let ranking =
            body["counts"]["tasks"].as_array().unwrap().iter().find(|t| t["kind"] == "ranking").unwrap();
        assert_eq!(ranking["done"], 2);
    });
}

#[test]
fn agreement_shows_per_annotator_as_a_table_and_an_svg_chart() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let project = ranked_project(&app).await;
        app.log_in("rita").await;
        let html = app.get_html(&format!("/projects/{project}/data")).await;
        let table = &html[html.find("id=\"agreement-table\"").expect("the table")..];
        for name in ["ann", "bea"] {
            let row = &table[table.find(&format!("data-annotator=\"{name}\"")).unwrap()..];
            let row = &row[..row.find("</tr>").unwrap()];
            assert!(row.contains("5 / 6") && row.contains("0.833"), "{row}");
        }
        assert!(html.contains("id=\"project-agreement-rate\">0.833<"), "{html}");
        let chart = &html[html.find("<svg").expect("an inline SVG chart")..];
        let chart = &chart[..chart.find("</svg>").unwrap()];
        assert!(
            chart.contains("Pairwise agreement rate") && chart.contains(">Annotator<"),
            "axis labels: {chart}"
        );
        assert!(
            chart.contains("data-annotator=\"ann\"") && chart.contains("data-annotator=\"bea\""),
            "{chart}"
        );
        // 5/6 of the 400-unit plot.
        assert!(chart.contains("width=\"333\""), "{chart}");
        assert!(!html.contains("<script"), "no script on the page");

        let body = api_get(&app, &format!("/api/projects/{project}/data")).await;
        assert_eq!(body["agreement"]["project"]["pairs"], json!({"agreed": 5, "compared": 6}));
        let bea = user_id(&app.db.pool, "bea").await;
        assert_eq!(body["usernames"][bea.to_string()], "bea");
    });
}

#[test]
fn consensus_is_listed_per_task_and_paged() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let pool = &app.db.pool;
        let splits = vec!["train"; 27];
        let (project, prompts) = project_with_prompts(pool, 1, &splits).await;
        let mut task_ids = Vec::new();
        for &prompt in &prompts {
            task_ids.push(ranking_task(pool, project, prompt, 2).await);
        }
        let ann = user_id(pool, "ann").await;
        for _ in 0..26 {
            rank_next(pool, project, ann, 2, &[&[1], &[0]]).await;
        }
        app.log_in("rita").await;
        let html = app.get_html(&format!("/projects/{project}/data")).await;
        assert!(html.contains("26 tasks with rankings") && html.contains("page 1 of 2"), "{html}");
        assert!(html.contains(&format!("data-task=\"{}\"", task_ids[0])), "{html}");
        assert!(html.contains("1 &gt; 0") || html.contains("1 &#62; 0"), "the order, escaped: {html}");
        assert!(!html.contains(&format!("data-task=\"{}\"", task_ids[25])), "on page 2");
        let html = app.get_html(&format!("/projects/{project}/data?page=2")).await;
        assert!(html.contains(&format!("data-task=\"{}\"", task_ids[25])), "{html}");
        assert!(!html.contains(&format!("data-task=\"{}\"", task_ids[26])), "never ranked");

        let body = api_get(&app, &format!("/api/projects/{project}/consensus?limit=2&offset=25")).await;
        assert_eq!(body["total"], 26);
        assert_eq!(body["tasks"].as_array().unwrap().len(), 1);
        assert_eq!(body["tasks"][0]["task_id"], task_ids[25]);
        assert_eq!(body["tasks"][0]["consensus"]["ranking"]["groups"], json!([[1], [0]]));
    });
}

#[test]
fn a_snapshot_frozen_on_the_page_downloads_the_lines_that_export_writes() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let project = ranked_project(&app).await;
        app.log_in("rita").await;
        let page = format!("/projects/{project}/data");
        let csrf = hidden_value(&app.get_html(&page).await, "csrf");
        let response = app
            .post_form(
                &format!("/projects/{project}/snapshots"),
                &[("name", "rm v1"), ("kind", "rankings"), ("split", "train"), ("csrf", &csrf)],
            )
            .await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(location(&response), format!("/projects/{project}/data#snapshots"));
        let response = app
            .post_form(
                &format!("/projects/{project}/snapshots"),
                &[("name", "sft v1"), ("kind", "demonstrations"), ("split", ""), ("csrf", &csrf)],
            )
            .await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        let all = snapshots::snapshots(&app.db.pool, project).await.unwrap();
        let (sft, rm) = (&all[0], &all[1]);
        assert_eq!((rm.name.as_str(), rm.item_count, sft.item_count), ("rm v1", 4, 1));

        let html = app.get_html(&page).await;
        assert!(html.contains(&format!("href=\"/snapshots/{}/export?format=kwise\"", rm.id)), "{html}");
        assert!(
            html.contains(&format!("href=\"/snapshots/{}/export?format=pairs_keep_ties\"", rm.id)),
            "{html}"
        );
        assert!(html.contains(&format!("href=\"/snapshots/{}/export?format=sft\"", sft.id)), "{html}");
        assert!(!html.contains(&format!("href=\"/snapshots/{}/export?format=sft\"", rm.id)), "{html}");

        for (id, name, format) in [
            (rm.id, "kwise", ExportFormat::KWise),
            (rm.id, "pairs", ExportFormat::Pairs(PairsTies::Drop)),
            (rm.id, "pairs_keep_ties", ExportFormat::Pairs(PairsTies::Keep)),
            (sft.id, "sft", ExportFormat::Sft),
        ] {
            let response = app.get(&format!("/snapshots/{id}/export?format={name}")).await;
            assert_eq!(response.status(), StatusCode::OK, "{name}");
            assert_eq!(response.headers()["content-type"], "application/x-ndjson");
            let disposition = response.headers()["content-disposition"].to_str().unwrap().to_string();
            let file = format!("project-{project}-snapshot-{id}-{name}.jsonl");
            assert!(disposition.starts_with("attachment") && disposition.contains(&file), "{disposition}");
            let expected = snapshots::export(&app.db.pool, id, format).await.unwrap();
            assert!(!expected.is_empty());
            assert_eq!(body_lines(response).await, expected, "{name}");
        }
    });
}

#[test]
fn bad_snapshot_input_is_refused_naming_the_field() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let project = ranked_project(&app).await;
        app.log_in("rita").await;
        let csrf = hidden_value(&app.get_html(&format!("/projects/{project}/data")).await, "csrf");
        let freeze = format!("/projects/{project}/snapshots");
        for (name, kind, split, field) in [
            ("x", "bogus", "", "kind"),
            ("   ", "rankings", "", "snapshot name"),
            ("x", "rankings", "holdout", "split"),
        ] {
            let response = app
                .post_form(&freeze, &[("name", name), ("kind", kind), ("split", split), ("csrf", &csrf)])
                .await;
            assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY, "{field}");
            let html = response.text().await.unwrap();
            assert!(html.contains("role=\"alert\"") && html.contains(field), "{field} in {html}");
        }
        assert!(snapshots::snapshots(&app.db.pool, project).await.unwrap().is_empty());

        let snapshot = snapshots::freeze(
            &app.db.pool,
            project,
            snapshots::SnapshotKind::Rankings,
            &Default::default(),
            "rm",
            None,
        )
        .await
        .unwrap();
        let token = app.token_for("rita").await;
        for (query, status, field) in [
            ("format=csv", StatusCode::UNPROCESSABLE_ENTITY, Some("format")),
            // sft is a format, but not one of a rankings snapshot: a conflict with it.
            ("format=sft", StatusCode::CONFLICT, None),
        ] {
            let url = app.url(&format!("/api/snapshots/{}/export?{query}", snapshot.id));
            let response = client().get(url).bearer_auth(&token).send().await.unwrap();
            assert_eq!(response.status(), status, "{query}");
            assert_eq!(response.json::<Value>().await.unwrap()["error"]["field"].as_str(), field);
        }
        let response = client()
            .get(app.url("/api/snapshots/999999/export?format=kwise"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert_eq!(app.get("/snapshots/999999/export?format=kwise").await.status(), StatusCode::NOT_FOUND);
        assert_eq!(app.get("/projects/999999/data").await.status(), StatusCode::NOT_FOUND);
    });
}

#[test]
fn the_data_routes_send_a_logged_out_visitor_to_log_in_and_refuse_an_annotator() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let project = ranked_project(&app).await;
        let snapshot = snapshots::freeze(
            &app.db.pool,
            project,
            snapshots::SnapshotKind::Demonstrations,
            &Default::default(),
            "sft",
            None,
        )
        .await
        .unwrap();
        let pages =
            [format!("/projects/{project}/data"), format!("/snapshots/{}/export?format=sft", snapshot.id)];
        let apis = [
            format!("/api/projects/{project}/data"),
            format!("/api/projects/{project}/consensus"),
            format!("/api/projects/{project}/snapshots"),
            format!("/api/snapshots/{}/export?format=sft", snapshot.id),
        ];
        for page in &pages {
            let response = app.get(page).await;
            assert_eq!(response.status(), StatusCode::SEE_OTHER, "{page}");
            assert!(location(&response).starts_with("/login?next="), "{page}");
        }
        for api in &apis {
            assert_eq!(app.get(api).await.status(), StatusCode::UNAUTHORIZED, "{api}");
        }

        app.log_in("ann").await;
        let csrf = hidden_value(&app.get_html("/").await, "csrf");
        for path in pages.iter().chain(&apis) {
            assert_eq!(app.get(path).await.status(), StatusCode::FORBIDDEN, "{path}");
        }
        let form = [("name", "mine"), ("kind", "prompts"), ("split", ""), ("csrf", csrf.as_str())];
        let response = app.post_form(&format!("/projects/{project}/snapshots"), &form).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        let token = app.token_for("ann").await;
        let response = client()
            .post(app.url(&format!("/api/projects/{project}/snapshots")))
            .bearer_auth(&token)
            .json(&json!({"name": "mine", "kind": "prompts"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert_eq!(snapshots::snapshots(&app.db.pool, project).await.unwrap().len(), 1);
    });
}

#[test]
fn the_api_freezes_and_lists_snapshots() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let project = ranked_project(&app).await;
        let token = app.token_for("rita").await;
        let url = app.url(&format!("/api/projects/{project}/snapshots"));
        let response = client()
            .post(&url)
            .bearer_auth(&token)
            .json(&json!({"name": "prompts all", "kind": "prompts"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        let created: Value = response.json().await.unwrap();
        assert_eq!((created["kind"].as_str(), created["item_count"].as_i64()), (Some("prompts"), Some(3)));
        let response = client()
            .post(&url)
            .bearer_auth(&token)
            .json(&json!({"name": "x", "kind": "votes"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(response.json::<Value>().await.unwrap()["error"]["field"], "kind");
        let listed: Value =
            client().get(&url).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
        assert_eq!(listed.as_array().unwrap().len(), 1);
        assert_eq!(listed[0]["id"], created["id"]);
        let lines = body_lines(
            client()
                .get(app.url(&format!("/api/snapshots/{}/export?format=prompts", created["id"])))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap(),
        )
        .await;
        let id = created["id"].as_i64().unwrap();
        assert_eq!(lines, snapshots::export(&app.db.pool, id, ExportFormat::Prompts).await.unwrap());
    });
}

/// Two ranking tasks of K = 3 with overlap 3. `ann` orders both 0 > 1 > 2 in 10 s and
/// 20 s, `bea` the same in 12 s and untimed, `cal` both 2 > 1 > 0 in 3 s and 5 s. Against
/// the consensus of the other two, `ann` and `bea` compare no pair (the others' mean
/// positions are all 1) and `cal` disagrees on all 6; `cal`'s median of 4 s is under half
/// of 13.5 s, the median of the others' medians (15 s and 12 s).
pub(crate) async fn annotated_project(app: &TestApp) -> (i64, [i64; 3]) {
    let pool = &app.db.pool;
    let (project, prompts) = project_with_prompts(pool, 3, &["train", "train"]).await;
    for &prompt in &prompts {
        ranking_task(pool, project, prompt, 3).await;
    }
    let ann = user_id(pool, "ann").await;
    let bea = add_annotator(pool, "bea").await;
    let cal = add_annotator(pool, "cal").await;
    let best_first: &[&[usize]] = &[&[0], &[1], &[2]];
    let worst_first: &[&[usize]] = &[&[2], &[1], &[0]];
    for (who, groups, times) in [
        (ann, best_first, [Some(10_000), Some(20_000)]),
        (bea, best_first, [Some(12_000), None]),
        (cal, worst_first, [Some(3_000), Some(5_000)]),
    ] {
        for ms in times {
            rank_next_in(pool, project, who, 3, groups, ms).await;
        }
    }
    (project, [ann, bea, cal])
}

/// The project of [`annotated_project`]: known medians, agreement and outlier flags.
#[test]
fn annotator_statistics_show_medians_agreement_with_the_others_and_outliers() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let (project, [ann, bea, cal]) = annotated_project(&app).await;
        app.log_in("rita").await;
        let html = app.get_html(&format!("/projects/{project}/data")).await;
        let table = html.split("id=\"annotator-table\"").nth(1).unwrap();
        let table = &table[..table.find("</table>").unwrap()];
        assert!(html.contains("id=\"annotator-table\" class=\"stack\""), "stacks on phones");
        let row = |name: &str| {
            let from = table.find(&format!("data-annotator=\"{name}\"")).unwrap_or_else(|| panic!("{name}"));
            let rest = &table[from..];
            rest[..rest.find("</tr>").unwrap()].to_string()
        };
        let (ann_row, bea_row, cal_row) = (row("ann"), row("bea"), row("cal"));
        assert!(ann_row.contains("data-label=\"Rankings\">2<"), "{ann_row}");
        assert!(ann_row.contains("data-median=\"ranking\">15.0 s<"), "{ann_row}");
        assert!(bea_row.contains("data-median=\"ranking\">12.0 s<"), "{bea_row}");
        assert!(cal_row.contains("data-median=\"ranking\">4.0 s<"), "{cal_row}");
        assert!(ann_row.contains("data-consensus>n/a<"), "{ann_row}");
        assert!(cal_row.contains("data-consensus>0 / 6 (0.000)<"), "{cal_row}");
        assert!(!ann_row.contains("data-outlier") && !bea_row.contains("data-outlier"), "{table}");
        assert_eq!(cal_row.matches("data-outlier").count(), 2, "{cal_row}");
        assert!(
            cal_row.contains("too fast on rankings: median 4.0 s against 13.5 s for the others"),
            "{cal_row}"
        );
        assert!(cal_row.contains("low agreement"), "{cal_row}");

        let body = api_get(&app, &format!("/api/projects/{project}/data")).await;
        let stats = body["annotators"].as_array().unwrap();
        assert_eq!(stats.len(), 3);
        let of = |id: i64| stats.iter().find(|s| s["annotator_id"] == id).unwrap();
        assert_eq!(body["usernames"][cal.to_string()], "cal");
        assert_eq!(of(ann)["median_time_ms"]["ranking"], 15_000.0);
        assert_eq!(of(ann)["done"], json!({ "demonstration": 0, "ranking": 2, "comparison": 0 }));
        assert_eq!(of(cal)["consensus_pairs"], json!({ "agreed": 0, "compared": 6 }));
        assert_eq!(
            of(cal)["outliers"],
            json!([
                { "reason": "too_fast", "kind": "ranking", "median_time_ms": 4_000.0, "others_median_time_ms": 13_500.0 },
                { "reason": "low_agreement", "agreement": 0.0 },
            ])
        );
        assert_eq!(of(bea)["outliers"], json!([]));
    });
}

/// In the project of [`annotated_project`], `cal` revises their first ranking to
/// 0 > 1 > 2 in 40 s: the revision replaces the answer, so `cal` has still done 2, their
/// median is that of 40 s and 5 s, they agree on 3 of 6 pairs, and nothing flags them.
#[test]
fn a_revised_answer_counts_once_with_its_own_time() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let pool = &app.db.pool;
        let (project, [_, _, cal]) = annotated_project(&app).await;
        let (previous, assignment): (i64, i64) = sqlx::query_as(
            "SELECT id, assignment_id FROM rankings WHERE annotator_id = $1 ORDER BY id LIMIT 1",
        )
        .bind(cal)
        .fetch_one(pool)
        .await
        .unwrap();
        let input = RankingInput {
            ranking: Some(vec![vec![0], vec![1], vec![2]]),
            time_spent_ms: Some(40_000),
            ..RankingInput::default()
        };
        let revision = RankingSubmission::parse(3, input).unwrap();
        submit::revise_ranking(pool, cal, assignment, previous, &revision, IdempotencyKey::new())
            .await
            .unwrap();

        app.log_in("rita").await;
        let body = api_get(&app, &format!("/api/projects/{project}/data")).await;
        let stats = body["annotators"].as_array().unwrap().iter().find(|s| s["annotator_id"] == cal).unwrap();
        assert_eq!(stats["done"]["ranking"], 2);
        assert_eq!(stats["median_time_ms"]["ranking"], 22_500.0);
        assert_eq!(stats["consensus_pairs"], json!({ "agreed": 3, "compared": 6 }));
        assert_eq!(stats["outliers"], json!([]));
    });
}

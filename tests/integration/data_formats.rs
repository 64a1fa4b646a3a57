//! Real data in and out: the hand-written fixtures of tests/fixtures/data in each format
//! (`trl`, `hh`, `messages`, `kwise`) imported into a project with their provenance,
//! attributed to the import rather than a person, exported from a snapshot and imported
//! again into a new project with the same content; the trainer's file readers take the
//! same files with the same chat template; the API, the data page's form and
//! `plumb data import`.

use std::path::PathBuf;

use labeling::formats::Format;
use labeling::imports::{self, ImportFile, ImportReport};
use labeling::prompts::ImportLimits;
use labeling::snapshots::{self, ExportFormat, SnapshotFilter, SnapshotKind};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use sqlx::PgPool;

use crate::db::with_db;
use crate::web_app::spawn_app;

fn fixture(name: &str) -> PathBuf {
    crate::helpers::repo_root().join("tests/fixtures/data").join(name)
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn fixture_bytes(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).unwrap()
}

async fn project(pool: &PgPool, name: &str) -> i64 {
    sqlx::query_scalar("INSERT INTO projects (name) VALUES ($1) RETURNING id")
        .bind(name)
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn import(pool: &PgPool, project: i64, name: &str, format: Format, bytes: &[u8]) -> ImportReport {
    let file = ImportFile { name, format, bytes };
    imports::import(pool, project, file, None, &ImportLimits::default()).await.unwrap()
}

async fn count(pool: &PgPool, sql: &str, project: i64) -> i64 {
    sqlx::query_scalar(sql).bind(project).fetch_one(pool).await.unwrap()
}

/// The rankings of a project: (prompt text, samples in task order, ranks, import line).
async fn rankings(pool: &PgPool, project: i64) -> Vec<(String, Vec<String>, Vec<i16>, Option<i32>)> {
    sqlx::query_as(
        "SELECT p.text, ARRAY(SELECT s.text FROM task_samples ts JOIN samples s ON s.id = ts.sample_id
                              WHERE ts.task_id = r.task_id ORDER BY ts.position),
                r.ranks, r.import_line
         FROM rankings r JOIN tasks t ON t.id = r.task_id JOIN prompts p ON p.id = t.prompt_id
         WHERE t.project_id = $1 ORDER BY r.id",
    )
    .bind(project)
    .fetch_all(pool)
    .await
    .unwrap()
}

/// A ranking task of two fresh samples for the imported prompt "Name a fruit.".
async fn fruit_task(pool: &PgPool, project: i64) {
    let prompt: i64 = sqlx::query_scalar("SELECT id FROM prompts WHERE text = 'Name a fruit.'")
        .fetch_one(pool)
        .await
        .unwrap();
    let new =
        ["x", "y"].map(|t| labeling::tasks::NewSample { prompt_id: prompt, text: t.into(), logprobs: None });
    let samples = labeling::tasks::add_samples(pool, project, None, None, &json!({}), &new).await.unwrap();
    labeling::tasks::create_ranking_task(pool, project, prompt, &samples).await.unwrap();
}

/// A new annotator takes the project's next task and ranks its two samples in order, with
/// these ratings and flags; returns the annotator's id.
async fn person_ranks(
    pool: &PgPool,
    project: i64,
    username: &str,
    likert: Vec<Option<i64>>,
    flags: Vec<(usize, String)>,
) -> i64 {
    let annotator: i64 = sqlx::query_scalar(
        "INSERT INTO users (username, role, password_hash) VALUES ($1, 'annotator', '$argon2id$v=19$test')
         RETURNING id",
    )
    .bind(username)
    .fetch_one(pool)
    .await
    .unwrap();
    let lease = std::time::Duration::from_secs(600);
    let assignment = labeling::tasks::next_task(pool, project, annotator, lease).await.unwrap().unwrap();
    let input = labeling::annotation::RankingInput {
        ranking: Some(vec![vec![0], vec![1]]),
        likert,
        flags,
        ..Default::default()
    };
    let submission = labeling::annotation::RankingSubmission::parse(2, input).unwrap();
    let key = labeling::annotation::IdempotencyKey::new();
    labeling::submit::submit_ranking(pool, annotator, assignment.id, &submission, key).await.unwrap();
    annotator
}

const SHARED_PREFIX: &str =
    "User: Hi there.\n\nAssistant: Hello! How can I help?\n\nUser: Name a primary colour.\n\nAssistant: ";

#[test]
fn hh_transcripts_become_conversations_and_pairs_and_a_line_without_a_shared_prefix_is_refused() {
    with_db(|db| async move {
        let pool = &db.pool;
        let p = project(pool, "hh").await;
        let report = import(pool, p, "hh.jsonl", Format::Hh, &fixture_bytes("hh.jsonl")).await;
        assert_eq!(report.imported.iter().map(|l| l.line).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(report.errors.len(), 1, "{:?}", report.errors);
        let refused = &report.errors[0];
        assert_eq!((refused.line, refused.field.as_str()), (4, "rejected"));
        assert!(refused.message.contains("shares no prefix"), "{}", refused.message);

        let stored = rankings(pool, p).await;
        assert_eq!(stored[0].0, "User: What is two plus two?\n\nAssistant: ");
        assert_eq!(stored[0].1, ["Four.", "Five."]);
        assert_eq!(stored[0].2, [0, 1], "chosen is better");
        // A multi-turn prefix, the two transcripts diverging only in their last turn.
        assert_eq!(stored[1].0, SHARED_PREFIX);
        assert_eq!(stored[1].1, ["Red.", "Green, I think."]);
        assert_eq!(stored[2].1, ["Still read.", "Still read, worse."], "no leading blank line");
        assert_eq!(stored.iter().map(|r| r.3).collect::<Vec<_>>(), [Some(1), Some(2), Some(3)]);

        let messages: Value = sqlx::query_scalar("SELECT messages FROM prompts WHERE text = $1")
            .bind(SHARED_PREFIX)
            .fetch_one(pool)
            .await
            .unwrap();
        assert_eq!(
            messages,
            json!([
                {"role": "user", "content": "Hi there."},
                {"role": "assistant", "content": "Hello! How can I help?"},
                {"role": "user", "content": "Name a primary colour."},
            ])
        );
        // Provenance: the import's name and file hash, each row's line; no annotator.
        let (name, sha): (String, Vec<u8>) =
            sqlx::query_as("SELECT name, file_sha256 FROM import_sources WHERE id = $1")
                .bind(report.source_id)
                .fetch_one(pool)
                .await
                .unwrap();
        assert_eq!((name.as_str(), sha), ("hh.jsonl", Sha256::digest(fixture_bytes("hh.jsonl")).to_vec()));
        let people = "SELECT count(*) FROM rankings r JOIN tasks t ON t.id = r.task_id
                      WHERE t.project_id = $1 AND (r.annotator_id IS NOT NULL OR r.assignment_id IS NOT NULL)";
        assert_eq!(count(pool, people, p).await, 0);
    });
}

#[test]
fn trl_pairs_import_as_strings_as_message_lists_and_with_an_implicit_prompt() {
    with_db(|db| async move {
        let pool = &db.pool;
        let p = project(pool, "trl").await;
        let report = import(pool, p, "trl.jsonl", Format::Trl, &fixture_bytes("trl.jsonl")).await;
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        let stored = rankings(pool, p).await;
        assert_eq!(stored[0].0, "Write a haiku about rain.", "a string prompt is stored as it is");
        assert_eq!(stored[1].0, "System: Answer in one word.\n\nUser: Capital of France?\n\nAssistant: ");
        assert_eq!(stored[1].1, ["Paris", "London"]);
        assert_eq!(
            stored[2].0, "User: Is the sea salty?\n\nAssistant: Yes.\n\nUser: Why?\n\nAssistant: ",
            "the implicit prompt is what chosen and rejected share"
        );
        assert_eq!(stored[2].1, ["Rivers carry dissolved minerals into it.", "Fish cry."]);
    });
}

#[test]
fn messages_import_as_demonstrations_and_kwise_as_rankings_with_ties() {
    with_db(|db| async move {
        let pool = &db.pool;
        let p = project(pool, "mk").await;
        let report =
            import(pool, p, "messages.jsonl", Format::Messages, &fixture_bytes("messages.jsonl")).await;
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        let demos: Vec<(String, String, Option<i64>, Option<i32>)> = sqlx::query_as(
            "SELECT p.text, d.response, d.annotator_id, d.import_line FROM demonstrations d
             JOIN prompts p ON p.id = d.prompt_id WHERE p.project_id = $1 ORDER BY d.id",
        )
        .bind(p)
        .fetch_all(pool)
        .await
        .unwrap();
        assert_eq!(
            demos[1],
            (
                "User: Count to two.\n\nAssistant: One, two.\n\nUser: And to three?\n\nAssistant: "
                    .to_owned(),
                "One, two, three.".to_owned(),
                None,
                Some(2)
            )
        );
        let report = import(pool, p, "kwise.jsonl", Format::KWise, &fixture_bytes("kwise.jsonl")).await;
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        let stored = rankings(pool, p).await;
        assert_eq!(stored[0].2, [0, 1, 0], "Apple and Banana tied best");
        let (likert, flags): (Option<Vec<Option<i16>>>, Vec<String>) = sqlx::query_as(
            "SELECT r.likert, ARRAY(SELECT f.position || ':' || f.flag FROM ranking_flags f
                                    WHERE f.ranking_id = r.id ORDER BY f.position, f.flag)
             FROM rankings r WHERE r.import_line = 1 AND r.import_source_id = $1",
        )
        .bind(report.source_id)
        .fetch_one(pool)
        .await
        .unwrap();
        assert_eq!(likert, Some(vec![Some(6), Some(1), None]));
        assert_eq!(flags, ["1:fails_task", "1:harmful"]);
        assert_eq!(stored[1].2, [0, 2, 2, 1]);
        // Imported tasks are answered already: no annotator is handed one, none counts as open.
        let open = "SELECT count(*) FROM tasks WHERE project_id = $1 AND import_source_id IS NULL";
        assert_eq!(count(pool, open, p).await, 0);
        let counts = labeling::projects::project_counts(pool, p).await.unwrap();
        assert!(counts.tasks.iter().all(|t| t.open == 0 && t.done == 0), "{:?}", counts.tasks);
    });
}

#[test]
fn a_file_imported_again_adds_nothing() {
    with_db(|db| async move {
        let pool = &db.pool;
        let p = project(pool, "again").await;
        let bytes = fixture_bytes("kwise.jsonl");
        let first = import(pool, p, "kwise.jsonl", Format::KWise, &bytes).await;
        let tables = "SELECT (SELECT count(*) FROM prompts WHERE project_id = $1)
                           + (SELECT count(*) FROM samples WHERE project_id = $1)
                           + (SELECT count(*) FROM tasks WHERE project_id = $1)
                           + (SELECT count(*) FROM rankings)";
        let before = count(pool, tables, p).await;
        let again = import(pool, p, "renamed.jsonl", Format::KWise, &bytes).await;
        assert!(again.already_imported && again.imported.is_empty());
        assert_eq!(again.source_id, first.source_id);
        assert_eq!(count(pool, tables, p).await, before);
        // The same prompt in another file is the project's prompt, not a second one.
        let other = br#"{"prompt": "Name a fruit.", "samples": ["Plum.", "Rock."], "ranking": [[0], [1]]}"#;
        let third = import(pool, p, "more.jsonl", Format::KWise, other).await;
        assert_eq!(third.imported[0].prompt_id, first.imported[0].prompt_id);
    });
}

#[test]
fn imported_rankings_and_demonstrations_are_not_a_persons_in_annotator_statistics_or_agreement() {
    with_db(|db| async move {
        let pool = &db.pool;
        let p = project(pool, "people").await;
        import(pool, p, "kwise.jsonl", Format::KWise, &fixture_bytes("kwise.jsonl")).await;
        import(pool, p, "messages.jsonl", Format::Messages, &fixture_bytes("messages.jsonl")).await;
        // A person ranks a task of the imported prompt, next to the imported ranking.
        fruit_task(pool, p).await;
        let annotator = person_ranks(pool, p, "ann", vec![], vec![]).await;
        let lease = std::time::Duration::from_secs(600);
        assert!(
            labeling::tasks::next_task(pool, p, annotator, lease).await.unwrap().is_none(),
            "imported tasks are never handed out"
        );

        let stats = labeling::annotator_stats::project_annotator_stats(pool, p).await.unwrap();
        assert_eq!(stats.iter().map(|s| s.annotator_id).collect::<Vec<_>>(), [annotator]);
        assert_eq!((stats[0].done.ranking, stats[0].done.demonstration), (1, 0));
        let agreement = labeling::agreement::project_agreement(pool, p).await.unwrap();
        assert!(agreement.per_annotator.iter().all(|a| a.annotator_id == annotator));
        let counts = labeling::projects::project_counts(pool, p).await.unwrap();
        assert_eq!(counts.annotators_submitted, 1, "only the person");
        // The snapshots still hold every ranking and demonstration, imported or not.
        let all = SnapshotFilter::default();
        let ranked = snapshots::freeze(pool, p, SnapshotKind::Rankings, &all, "r", None).await.unwrap();
        assert_eq!(ranked.item_count, 3);
        let demos = snapshots::freeze(pool, p, SnapshotKind::Demonstrations, &all, "d", None).await.unwrap();
        assert_eq!(demos.item_count, 2);
    });
}

/// Export a snapshot of `kind` from a project that imported `fixture`, import that export
/// into a new project, and export again: the two files are the same bytes, and the second
/// import records the first export's hash.
async fn round_trip(
    pool: &PgPool,
    fixture_name: &str,
    format: Format,
    kind: SnapshotKind,
    export: ExportFormat,
) -> String {
    let file = |lines: Vec<String>| lines.iter().map(|l| format!("{l}\n")).collect::<String>();
    let all = SnapshotFilter::default();
    let a = project(pool, &format!("{fixture_name} a")).await;
    import(pool, a, fixture_name, format, &fixture_bytes(fixture_name)).await;
    let snap_a = snapshots::freeze(pool, a, kind, &all, "a", None).await.unwrap();
    let exported = file(snapshots::export(pool, snap_a.id, export).await.unwrap());

    let b = project(pool, &format!("{fixture_name} b")).await;
    let report = import(pool, b, "export.jsonl", format, exported.as_bytes()).await;
    assert!(report.errors.is_empty(), "{fixture_name}: {:?}", report.errors);
    let snap_b = snapshots::freeze(pool, b, kind, &all, "b", None).await.unwrap();
    let again = file(snapshots::export(pool, snap_b.id, export).await.unwrap());
    assert_eq!(snap_a.item_count, snap_b.item_count, "{fixture_name}");
    assert_eq!(sha256_hex(again.as_bytes()), report.file_sha256, "{fixture_name}:\n{exported}\n{again}");
    assert_eq!(exported, again);
    exported
}

#[test]
fn each_format_exported_and_imported_into_a_new_project_gives_the_same_content_hash() {
    with_db(|db| async move {
        let pool = &db.pool;
        round_trip(pool, "trl.jsonl", Format::Trl, SnapshotKind::Rankings, ExportFormat::Trl).await;
        round_trip(pool, "hh.jsonl", Format::Hh, SnapshotKind::Rankings, ExportFormat::Hh).await;
        let kwise =
            round_trip(pool, "kwise.jsonl", Format::KWise, SnapshotKind::Rankings, ExportFormat::KWise).await;
        assert!(
            kwise.contains(r#""likert":[6,1,null],"flags":[[],["fails_task","harmful"],[]]"#),
            "Likert ratings and flags are exported: {kwise}"
        );
        round_trip(
            pool,
            "messages.jsonl",
            Format::Messages,
            SnapshotKind::Demonstrations,
            ExportFormat::Messages,
        )
        .await;
    });
}

#[test]
fn a_system_message_cannot_be_exported_to_hh() {
    with_db(|db| async move {
        let pool = &db.pool;
        let p = project(pool, "system").await;
        import(pool, p, "trl.jsonl", Format::Trl, &fixture_bytes("trl.jsonl")).await;
        let all = SnapshotFilter::default();
        let snap = snapshots::freeze(pool, p, SnapshotKind::Rankings, &all, "s", None).await.unwrap();
        let e = snapshots::export(pool, snap.id, ExportFormat::Hh).await.unwrap_err();
        assert!(e.to_string().contains("system message"), "{e}");
    });
}

#[cfg(feature = "trainer")]
mod readers {
    use trainer::data;

    use super::*;

    /// The prompt texts the import stored for `name`, in line order.
    async fn imported_prompts(pool: &PgPool, name: &str, format: Format) -> Vec<String> {
        let p = project(pool, name).await;
        let report = import(pool, p, name, format, &fixture_bytes(name)).await;
        let ids: Vec<i64> = report.imported.iter().map(|l| l.prompt_id).collect();
        let texts = labeling::prompts::texts(pool, &ids).await.unwrap();
        ids.iter().map(|id| texts[id].clone()).collect()
    }

    #[test]
    fn the_trainers_readers_take_each_format_with_the_imports_chat_template() {
        with_db(|db| async move {
            let pool = &db.pool;
            for (name, format) in [("trl.jsonl", Format::Trl), ("kwise.jsonl", Format::KWise)] {
                let read = data::read_rankings(&fixture(name)).unwrap();
                let prompts: Vec<&str> = read.iter().map(|r| r.prompt()).collect();
                assert_eq!(prompts, imported_prompts(pool, name, format).await, "{name}");
            }
            let kwise = data::read_rankings(&fixture("kwise.jsonl")).unwrap();
            assert_eq!(kwise[1].groups(), [vec![0], vec![3], vec![1, 2]]);
            let trl = data::read_rankings(&fixture("trl.jsonl")).unwrap();
            assert_eq!(trl[2].samples(), ["Rivers carry dissolved minerals into it.", "Fish cry."]);
            assert_eq!(trl[2].pairs(), [(0, 1)]);

            let demos = data::read_demonstrations(&fixture("messages.jsonl")).unwrap();
            let prompts: Vec<String> = demos.iter().map(|d| d.prompt.clone()).collect();
            assert_eq!(prompts, imported_prompts(pool, "messages.jsonl", Format::Messages).await);
            assert_eq!(demos[0].response, "Hello.");
        });
    }

    #[test]
    fn the_rankings_reader_reads_hh_and_names_the_line_without_a_shared_prefix() {
        let e = data::read_rankings(&fixture("hh.jsonl")).unwrap_err().to_string();
        assert!(e.ends_with(":4: field `rejected`: shares no prefix with chosen: a pair needs the same conversation before its final assistant turn"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("hh.jsonl");
        let text = std::fs::read_to_string(fixture("hh.jsonl")).unwrap();
        std::fs::write(&good, text.lines().take(3).map(|l| format!("{l}\n")).collect::<String>()).unwrap();
        let read = data::read_rankings(&good).unwrap();
        assert_eq!(read[1].prompt(), SHARED_PREFIX);
        assert_eq!(read[1].samples(), ["Red.", "Green, I think."]);
        assert_eq!(read[1].best(), [0]);
    }

    #[test]
    fn ppo_prompts_may_be_conversations() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("prompts.jsonl");
        std::fs::write(
            &path,
            "{\"prompt\": \"plain\"}\n{\"prompt\": [{\"role\": \"user\", \"content\": \"Hi\"}]}\n",
        )
        .unwrap();
        assert_eq!(data::read_prompts(&path).unwrap(), ["plain", "User: Hi\n\nAssistant: "]);
    }

    #[test]
    fn plumb_data_import_reports_each_refused_line_and_stores_the_good_ones() {
        with_db(|db| async move {
            let p = project(&db.pool, "cli").await;
            let url = db.url();
            let home = tempfile::tempdir().unwrap();
            let env = [("DATABASE_URL", url.as_str()), ("PLUMB_HOME", home.path().to_str().unwrap())];
            let file = fixture("hh.jsonl");
            let args = ["data", "import", "--project", "cli", "--format", "hh", file.to_str().unwrap()];
            let out = crate::helpers::plumb_with_env(&args, &env);
            assert_eq!(
                out.status.code(),
                Some(1),
                "a refused line: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(stderr.contains("hh.jsonl:4: field `rejected`: shares no prefix"), "{stderr}");
            let report: Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(report["imported"].as_array().unwrap().len(), 3);
            assert_eq!(rankings(&db.pool, p).await.len(), 3);
            let again = crate::helpers::plumb_with_env(&args, &env);
            let report: Value = serde_json::from_slice(&again.stdout).unwrap();
            assert_eq!(report["already_imported"], true);
        });
    }
}

#[test]
fn the_api_imports_a_file_and_refuses_one_with_no_good_line_naming_the_line_and_field() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let token = app.token_for("rita").await;
        let p = project(&app.db.pool, "api").await;
        let url = app.url(&format!("/api/projects/{p}/imports"));
        let post =
            async |body: Value| app.client.post(&url).bearer_auth(&token).json(&body).send().await.unwrap();

        let data = String::from_utf8(fixture_bytes("trl.jsonl")).unwrap();
        let ok = post(json!({ "format": "trl", "name": "trl.jsonl", "data": data })).await;
        assert_eq!(ok.status(), StatusCode::OK);
        let report: Value = ok.json().await.unwrap();
        assert_eq!(report["imported"].as_array().unwrap().len(), 3, "{report}");
        assert!(report["imported"][0]["ranking_id"].is_i64());

        let bad = r#"{"chosen": "\n\nHuman: a\n\nAssistant: b", "rejected": "\n\nHuman: c\n\nAssistant: d"}"#;
        // A file none of whose lines imports: the report names each line, and nothing is stored.
        let refused = post(json!({ "format": "hh", "name": "bad.jsonl", "data": bad })).await;
        assert_eq!(refused.status(), StatusCode::OK);
        let report: Value = refused.json().await.unwrap();
        assert!(report["imported"].as_array().unwrap().is_empty(), "{report}");
        assert_eq!(
            (report["errors"][0]["line"].as_i64(), report["errors"][0]["field"].as_str()),
            (Some(1), Some("rejected")),
            "{report}"
        );

        let unknown = post(json!({ "format": "csv", "name": "x", "data": "" })).await;
        assert_eq!(unknown.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let error: Value = unknown.json().await.unwrap();
        assert_eq!(error["error"]["field"], "format", "{error}");
        let extra = post(json!({ "format": "trl", "name": "x", "data": "", "owner": 1 })).await;
        assert_eq!(extra.status(), StatusCode::BAD_REQUEST);

        let listed: Value =
            app.client.get(&url).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
        assert_eq!(listed.as_array().unwrap().len(), 1, "a refused file records no import: {listed}");
        assert_eq!(listed[0]["name"], "trl.jsonl");
        assert_eq!(listed[0]["file_sha256"], sha256_hex(data.as_bytes()));
    });
}

#[test]
fn the_data_page_imports_an_uploaded_file_and_shows_the_report() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        app.log_in("rita").await;
        let p = project(&app.db.pool, "page").await;
        let html = app.get_html(&format!("/projects/{p}/data")).await;
        assert!(html.contains("id=\"import-form\""), "{html}");
        let csrf = crate::web_app::hidden_value(&html, "csrf");
        let file = reqwest::multipart::Part::bytes(fixture_bytes("hh.jsonl")).file_name("hh.jsonl");
        let form = reqwest::multipart::Form::new().text("csrf", csrf).text("format", "hh").part("file", file);
        let response =
            app.client.post(app.url(&format!("/projects/{p}/imports"))).multipart(form).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let html = response.text().await.unwrap();
        assert!(html.contains("3 lines imported"), "{html}");
        assert!(html.contains("<td>line 4</td><td>rejected</td>"), "{html}");
    });
}

#[test]
fn a_rankings_snapshot_may_leave_out_flagged_rankings_and_those_whose_best_sample_rates_low() {
    with_db(|db| async move {
        let pool = &db.pool;
        let p = project(pool, "filters").await;
        sqlx::query("UPDATE projects SET overlap = 3 WHERE id = $1").bind(p).execute(pool).await.unwrap();
        import(pool, p, "kwise.jsonl", Format::KWise, &fixture_bytes("kwise.jsonl")).await;
        fruit_task(pool, p).await;
        // Three people rank the task: best rated 6; best rated 2; best rated 7 but the
        // other sample flagged harmful.
        let answers: [(Vec<Option<i64>>, Vec<(usize, String)>); 3] = [
            (vec![Some(6), Some(3)], vec![]),
            (vec![Some(2), Some(1)], vec![]),
            (vec![Some(7), None], vec![(1, "harmful".to_owned())]),
        ];
        for (n, (likert, flags)) in answers.into_iter().enumerate() {
            person_ranks(pool, p, &format!("ann{n}"), likert, flags).await;
        }
        let freeze = |filter: SnapshotFilter| async move {
            snapshots::freeze(pool, p, SnapshotKind::Rankings, &filter, "f", None).await
        };
        assert_eq!(freeze(SnapshotFilter::default()).await.unwrap().item_count, 5);
        let harmless = SnapshotFilter {
            drop_flags: vec![labeling::annotation::SampleFlag::Harmful],
            ..SnapshotFilter::default()
        };
        let snap = freeze(harmless).await.unwrap();
        assert_eq!(snap.item_count, 3, "the imported ranking flags a sample harmful too");
        assert_eq!(
            snap.filter.drop_flags,
            [labeling::annotation::SampleFlag::Harmful],
            "the filter is recorded"
        );
        let rated = SnapshotFilter { min_best_likert: Some(3), ..SnapshotFilter::default() };
        assert_eq!(freeze(rated).await.unwrap().item_count, 3, "an unrated imported ranking is left out");
        let both = SnapshotFilter {
            drop_flags: vec![labeling::annotation::SampleFlag::Harmful],
            min_best_likert: Some(3),
            ..SnapshotFilter::default()
        };
        assert_eq!(freeze(both).await.unwrap().item_count, 1);
        let off_scale = SnapshotFilter { min_best_likert: Some(8), ..SnapshotFilter::default() };
        assert!(freeze(off_scale).await.unwrap_err().to_string().contains("min_best_likert"));
        let demos = SnapshotFilter { min_best_likert: Some(3), ..SnapshotFilter::default() };
        let e =
            snapshots::freeze(pool, p, SnapshotKind::Demonstrations, &demos, "d", None).await.unwrap_err();
        assert!(e.to_string().contains("filters only a rankings snapshot"), "{e}");
    });
}

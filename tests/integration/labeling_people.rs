//! `labeling`'s users, API tokens, projects, members and prompts (imports included),
//! against a fresh database each.

use labeling::domain::{
    DisplayName, Guidelines, Overlap, Password, ProjectName, PromptSource, PromptText, Role, SamplesPerTask,
    Split, TokenName, Username,
};
use labeling::error::LabelingError;
use labeling::projects::{self, NewProject};
use labeling::prompts::{self, DuplicateOf, ImportLimits, ImportReport, LineDuplicate, NewPrompt};
use labeling::users::{self, User};
use sqlx::PgPool;

use crate::db::with_db;

fn password(s: &str) -> Password {
    Password::parse(s).unwrap()
}

async fn user(pool: &PgPool, name: &str, role: Role) -> User {
    users::create_user(
        pool,
        &Username::parse(name).unwrap(),
        &DisplayName::parse(format!("{name} (display)")).unwrap(),
        role,
        &password("correct horse battery"),
    )
    .await
    .unwrap()
}

fn new_project(name: &str, created_by: Option<i64>) -> NewProject {
    NewProject {
        name: ProjectName::parse(name).unwrap(),
        guidelines: Guidelines::parse("# Rank\n\nPrefer correct answers.").unwrap(),
        overlap: Overlap::parse(3).unwrap(),
        samples_per_task: SamplesPerTask::parse(4).unwrap(),
        created_by,
    }
}

async fn project(pool: &PgPool, name: &str) -> i64 {
    projects::create_project(pool, &new_project(name, None)).await.unwrap().id
}

fn upload() -> PromptSource {
    PromptSource::parse("upload").unwrap()
}

async fn texts_in(pool: &PgPool, project_id: i64) -> Vec<String> {
    sqlx::query_scalar("SELECT text FROM prompts WHERE project_id = $1 ORDER BY id")
        .bind(project_id)
        .fetch_all(pool)
        .await
        .unwrap()
}

fn lines(report: &ImportReport) -> (Vec<usize>, Vec<usize>, Vec<(usize, String)>) {
    (
        report.imported.iter().map(|i| i.line).collect(),
        report.duplicates.iter().map(|d| d.line).collect(),
        report.errors.iter().map(|e| (e.line, e.field.clone())).collect(),
    )
}

#[test]
fn a_new_user_logs_in_with_their_password() {
    with_db(|db| async move {
        let ann = user(&db.pool, "ann", Role::Annotator).await;
        assert_eq!(ann.username, "ann");
        assert_eq!(ann.display_name, "ann (display)");
        assert_eq!(ann.role, Role::Annotator);
        assert!(!ann.disabled);
        let logged_in =
            users::authenticate(&db.pool, "ann", &password("correct horse battery")).await.unwrap();
        assert_eq!(logged_in, ann);
    });
}

#[test]
fn the_stored_password_is_an_argon2id_hash_and_never_the_password() {
    with_db(|db| async move {
        user(&db.pool, "ann", Role::Annotator).await;
        let hash: String =
            sqlx::query_scalar("SELECT password_hash FROM users").fetch_one(&db.pool).await.unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{hash}");
        assert!(!hash.contains("correct horse battery"));
    });
}

#[test]
fn a_wrong_password_an_unknown_user_and_a_disabled_user_are_refused_alike() {
    with_db(|db| async move {
        let ann = user(&db.pool, "ann", Role::Annotator).await;
        let wrong = users::authenticate(&db.pool, "ann", &password("wrong horse battery")).await.unwrap_err();
        assert!(matches!(wrong, LabelingError::InvalidCredentials), "{wrong:?}");
        let unknown =
            users::authenticate(&db.pool, "bob", &password("correct horse battery")).await.unwrap_err();
        assert!(matches!(unknown, LabelingError::InvalidCredentials), "{unknown:?}");

        users::set_disabled(&db.pool, ann.id, true).await.unwrap();
        let disabled =
            users::authenticate(&db.pool, "ann", &password("correct horse battery")).await.unwrap_err();
        assert_eq!(disabled.to_string(), wrong.to_string());
        assert!(users::get_user(&db.pool, ann.id).await.unwrap().disabled);

        users::set_disabled(&db.pool, ann.id, false).await.unwrap();
        users::authenticate(&db.pool, "ann", &password("correct horse battery")).await.unwrap();
    });
}

#[test]
fn a_taken_username_is_a_conflict() {
    with_db(|db| async move {
        user(&db.pool, "ann", Role::Annotator).await;
        let again = users::create_user(
            &db.pool,
            &Username::parse("ann").unwrap(),
            &DisplayName::default(),
            Role::Admin,
            &password("another password"),
        )
        .await
        .unwrap_err();
        assert!(matches!(again, LabelingError::Conflict(_)), "{again:?}");
    });
}

#[test]
fn users_are_listed_by_username_and_found_by_id_or_name() {
    with_db(|db| async move {
        let zed = user(&db.pool, "zed", Role::Researcher).await;
        let amy = user(&db.pool, "amy", Role::Admin).await;
        assert_eq!(users::list_users(&db.pool).await.unwrap(), [amy.clone(), zed.clone()]);
        assert_eq!(users::get_user(&db.pool, zed.id).await.unwrap(), zed);
        assert_eq!(users::get_user_by_username(&db.pool, "amy").await.unwrap(), amy);
        let missing = users::get_user(&db.pool, 999_999).await.unwrap_err();
        assert!(matches!(missing, LabelingError::NotFound { what: "user", .. }), "{missing:?}");
        assert!(users::set_disabled(&db.pool, 999_999, true).await.is_err());
    });
}

#[test]
fn a_token_works_until_revoked_and_its_plaintext_is_not_in_the_database() {
    with_db(|db| async move {
        let bot = user(&db.pool, "bot", Role::Annotator).await;
        let (token_id, token) =
            users::create_api_token(&db.pool, bot.id, &TokenName::parse("simulated annotator").unwrap())
                .await
                .unwrap();
        assert!(token.starts_with("plumb_") && token.len() == "plumb_".len() + 64, "{token}");

        let dump: Vec<String> = sqlx::query_scalar("SELECT row_to_json(t)::text FROM api_tokens t")
            .fetch_all(&db.pool)
            .await
            .unwrap();
        let secret = token.trim_start_matches("plumb_");
        assert!(dump.iter().all(|row| !row.contains(secret)), "{dump:?}");

        assert_eq!(users::user_for_token(&db.pool, &token).await.unwrap(), bot);
        let listed = users::list_api_tokens(&db.pool, bot.id).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].id, token_id);
        assert!(listed[0].last_used_at.is_some());
        assert!(listed[0].revoked_at.is_none());

        let forged = users::user_for_token(&db.pool, &format!("plumb_{}", "0".repeat(64))).await.unwrap_err();
        assert!(matches!(forged, LabelingError::InvalidCredentials), "{forged:?}");

        let stranger = user(&db.pool, "eve", Role::Annotator).await;
        assert!(users::revoke_token(&db.pool, stranger.id, token_id).await.is_err());
        users::user_for_token(&db.pool, &token).await.unwrap();

        users::revoke_token(&db.pool, bot.id, token_id).await.unwrap();
        let revoked = users::user_for_token(&db.pool, &token).await.unwrap_err();
        assert!(matches!(revoked, LabelingError::TokenRefused(_)), "{revoked:?}");
        assert!(users::list_api_tokens(&db.pool, bot.id).await.unwrap()[0].revoked_at.is_some());
    });
}

#[test]
fn a_disabled_users_token_is_refused_and_they_get_no_new_one() {
    with_db(|db| async move {
        let bot = user(&db.pool, "bot", Role::Annotator).await;
        let name = TokenName::parse("script").unwrap();
        let (_, token) = users::create_api_token(&db.pool, bot.id, &name).await.unwrap();
        users::set_disabled(&db.pool, bot.id, true).await.unwrap();
        let refused = users::user_for_token(&db.pool, &token).await.unwrap_err();
        assert!(matches!(refused, LabelingError::InvalidCredentials), "{refused:?}");
        let new = users::create_api_token(&db.pool, bot.id, &name).await.unwrap_err();
        assert!(matches!(new, LabelingError::Forbidden(_)), "{new:?}");
    });
}

#[test]
fn a_project_is_created_read_listed_and_updated() {
    with_db(|db| async move {
        let rae = user(&db.pool, "rae", Role::Researcher).await;
        let created =
            projects::create_project(&db.pool, &new_project("summaries", Some(rae.id))).await.unwrap();
        assert_eq!(created.name, "summaries");
        assert_eq!((created.overlap, created.samples_per_task), (3, 4));
        assert_eq!(created.created_by, Some(rae.id));
        assert_eq!(projects::get_project(&db.pool, created.id).await.unwrap(), created);

        let other = project(&db.pool, "arithmetic").await;
        let names: Vec<String> =
            projects::list_projects(&db.pool).await.unwrap().into_iter().map(|p| p.name).collect();
        assert_eq!(names, ["arithmetic", "summaries"]);

        projects::update_guidelines(&db.pool, created.id, &Guidelines::parse("Be *brief*.").unwrap())
            .await
            .unwrap();
        projects::set_overlap(&db.pool, created.id, Overlap::parse(5).unwrap()).await.unwrap();
        projects::set_samples_per_task(&db.pool, created.id, SamplesPerTask::parse(9).unwrap())
            .await
            .unwrap();
        let updated = projects::get_project(&db.pool, created.id).await.unwrap();
        assert_eq!(updated.guidelines, "Be *brief*.");
        assert_eq!((updated.overlap, updated.samples_per_task), (5, 9));
        assert_eq!(projects::get_project(&db.pool, other).await.unwrap().overlap, 3);
    });
}

#[test]
fn a_taken_project_name_is_a_conflict_and_a_missing_project_is_not_found() {
    with_db(|db| async move {
        project(&db.pool, "summaries").await;
        let again = projects::create_project(&db.pool, &new_project("summaries", None)).await.unwrap_err();
        assert!(matches!(again, LabelingError::Conflict(_)), "{again:?}");
        let ghost =
            projects::create_project(&db.pool, &new_project("other", Some(424_242))).await.unwrap_err();
        assert!(matches!(ghost, LabelingError::NotFound { what: "user", .. }), "{ghost:?}");

        let missing = projects::get_project(&db.pool, 424_242).await.unwrap_err();
        assert!(matches!(missing, LabelingError::NotFound { what: "project", .. }), "{missing:?}");
        assert!(projects::set_overlap(&db.pool, 424_242, Overlap::default()).await.is_err());
        assert!(projects::set_samples_per_task(&db.pool, 424_242, SamplesPerTask::default()).await.is_err());
        assert!(projects::update_guidelines(&db.pool, 424_242, &Guidelines::default()).await.is_err());
    });
}

#[test]
fn members_are_added_once_listed_and_removed() {
    with_db(|db| async move {
        let p = project(&db.pool, "summaries").await;
        let q = project(&db.pool, "arithmetic").await;
        let ann = user(&db.pool, "ann", Role::Annotator).await;
        let bob = user(&db.pool, "bob", Role::Annotator).await;
        projects::add_member(&db.pool, p, bob.id).await.unwrap();
        projects::add_member(&db.pool, p, ann.id).await.unwrap();
        projects::add_member(&db.pool, p, ann.id).await.unwrap();
        projects::add_member(&db.pool, q, ann.id).await.unwrap();
        assert_eq!(projects::members(&db.pool, p).await.unwrap(), [ann.clone(), bob.clone()]);
        assert!(projects::is_member(&db.pool, p, bob.id).await.unwrap());
        let anns: Vec<i64> =
            projects::projects_of_member(&db.pool, ann.id).await.unwrap().into_iter().map(|p| p.id).collect();
        assert_eq!(anns, [q, p]);

        assert!(projects::remove_member(&db.pool, p, bob.id).await.unwrap());
        assert!(!projects::remove_member(&db.pool, p, bob.id).await.unwrap());
        assert_eq!(projects::members(&db.pool, p).await.unwrap(), [ann]);
        assert!(!projects::is_member(&db.pool, p, bob.id).await.unwrap());

        let no_project = projects::add_member(&db.pool, 424_242, bob.id).await.unwrap_err();
        assert!(matches!(no_project, LabelingError::NotFound { what: "project", .. }), "{no_project:?}");
        let no_user = projects::add_member(&db.pool, p, 424_242).await.unwrap_err();
        assert!(matches!(no_user, LabelingError::NotFound { what: "user", .. }), "{no_user:?}");
    });
}

#[test]
fn a_prompt_is_stored_once_per_project() {
    with_db(|db| async move {
        let p = project(&db.pool, "summaries").await;
        let q = project(&db.pool, "arithmetic").await;
        let new = |project_id| NewPrompt {
            project_id,
            text: PromptText::parse("Reverse the word 'plumb'.").unwrap(),
            split: Split::Val,
            source: PromptSource::parse("annotator").unwrap(),
            created_by: None,
        };
        let first = prompts::add_prompt(&db.pool, &new(p)).await.unwrap();
        assert_eq!((first.split, first.source.as_str()), (Split::Val, "annotator"));
        assert_eq!(prompts::get_prompt(&db.pool, first.id).await.unwrap(), first);
        let again = prompts::add_prompt(&db.pool, &new(p)).await.unwrap_err();
        assert!(again.to_string().contains(&format!("#{}", first.id)), "{again}");
        prompts::add_prompt(&db.pool, &new(q)).await.unwrap();
        let missing = prompts::add_prompt(&db.pool, &new(424_242)).await.unwrap_err();
        assert!(matches!(missing, LabelingError::NotFound { what: "project", .. }), "{missing:?}");
    });
}

#[test]
fn a_jsonl_import_reports_each_bad_line_by_number_and_imports_exactly_the_good_ones() {
    with_db(|db| async move {
        let p = project(&db.pool, "summaries").await;
        let ann = user(&db.pool, "ann", Role::Researcher).await;
        let mut file = Vec::new();
        file.extend_from_slice(b"{\"prompt\": \"Reverse 'abc'.\"}\n"); // 1
        file.extend_from_slice(b"{\"text\": \"Sort 3 1 2.\", \"split\": \"test\"}\n"); // 2
        file.extend_from_slice(b"{\"prompt\": \"Reverse 'abc'.\"}\n"); // 3: duplicate of 1
        file.extend_from_slice(b"{\"prompt\": \"unclosed\n"); // 4: malformed JSON
        file.extend_from_slice(b"{\"prompt\": \"caf\xe9\"}\n"); // 5: Latin-1, not UTF-8
        file.extend_from_slice(b"{\"prompt\": \"\"}\n"); // 6: empty
        file.extend_from_slice(b"{\"prompt\": \"Add 2 and 2.\", \"split\": \"dev\"}\n"); // 7: unknown split
        file.extend_from_slice(b"\n"); // 8: blank, skipped
        file.extend_from_slice(b"{\"prompt\": \"nul \\u0000 inside\"}\n"); // 9: NUL
        file.extend_from_slice(b"{\"prompt\": \"Uppercase 'x'.\", \"split\": \"val\"}"); // 10, no final newline

        let report = prompts::import(
            &db.pool,
            p,
            prompts::PromptFile::Jsonl(&file),
            &upload(),
            Some(ann.id),
            &ImportLimits::default(),
        )
        .await
        .unwrap();
        let (imported, duplicates, errors) = lines(&report);
        assert_eq!(imported, [1, 2, 10]);
        assert_eq!(duplicates, [3]);
        assert_eq!(report.duplicates[0].of, DuplicateOf::EarlierLine(1));
        assert_eq!(
            errors,
            [
                (4, "line".to_owned()),
                (5, "line".to_owned()),
                (6, "prompt".to_owned()),
                (7, "split".to_owned()),
                (9, "prompt".to_owned())
            ]
        );
        assert!(report.errors[1].message.contains("UTF-8"), "{:?}", report.errors[1]);
        assert_eq!(texts_in(&db.pool, p).await, ["Reverse 'abc'.", "Sort 3 1 2.", "Uppercase 'x'."]);

        let stored = prompts::get_prompt(&db.pool, report.imported[1].prompt_id).await.unwrap();
        assert_eq!(stored.text, "Sort 3 1 2.");
        assert_eq!(stored.split, Split::Test);
        assert_eq!(stored.source, "upload");
        assert_eq!(stored.created_by, Some(ann.id));
    });
}

#[test]
fn an_import_reports_prompts_already_in_the_project_as_duplicates_of_them() {
    with_db(|db| async move {
        let p = project(&db.pool, "summaries").await;
        let limits = ImportLimits::default();
        let first = prompts::import(
            &db.pool,
            p,
            prompts::PromptFile::Jsonl(b"{\"prompt\": \"a\"}\n{\"prompt\": \"b\"}\n"),
            &upload(),
            None,
            &limits,
        )
        .await
        .unwrap();
        let b_id = first.imported[1].prompt_id;
        let second = prompts::import(
            &db.pool,
            p,
            prompts::PromptFile::Jsonl(b"{\"prompt\": \"c\"}\n{\"prompt\": \"b\"}\n{\"prompt\": \"b\"}\n"),
            &upload(),
            None,
            &limits,
        )
        .await
        .unwrap();
        assert_eq!(lines(&second).0, [1]);
        assert_eq!(
            second.duplicates,
            [
                LineDuplicate { line: 2, of: DuplicateOf::ExistingPrompt(b_id) },
                LineDuplicate { line: 3, of: DuplicateOf::EarlierLine(2) }
            ]
        );
        assert_eq!(prompts::count_prompts(&db.pool, p, None, None).await.unwrap(), 3);
    });
}

#[test]
fn a_csv_import_reads_quoted_fields_and_reports_bad_rows_by_line() {
    with_db(|db| async move {
        let p = project(&db.pool, "summaries").await;
        let file: &[u8] = b"id,prompt,split\r\n\
            1,\"Summarise: red, green, blue.\",val\r\n\
            2,\"Two lines:\nfirst\nsecond\",\r\n\
            3,\"Summarise: red, green, blue.\",test\r\n\
            4,,train\r\n\
            5,Sort 9 8.,holdout\r\n\
            6,\"caf\xe9\",train\r\n\
            7,\"He said \"\"hi\"\".\",TEST\r\n";
        let report = prompts::import(
            &db.pool,
            p,
            prompts::PromptFile::Csv(file),
            &upload(),
            None,
            &ImportLimits::default(),
        )
        .await
        .unwrap();
        let (imported, duplicates, errors) = lines(&report);
        assert_eq!(imported, [2, 3]);
        assert_eq!(duplicates, [6]);
        assert_eq!(report.duplicates[0].of, DuplicateOf::EarlierLine(2));
        assert_eq!(
            errors,
            [
                (7, "prompt".to_owned()),
                (8, "split".to_owned()),
                (9, "prompt".to_owned()),
                (10, "split".to_owned())
            ]
        );
        assert_eq!(
            texts_in(&db.pool, p).await,
            ["Summarise: red, green, blue.", "Two lines:\nfirst\nsecond"]
        );
        let splits: Vec<Split> = prompts::list_prompts(&db.pool, p, None, None, 10, 0)
            .await
            .unwrap()
            .into_iter()
            .map(|p| p.split)
            .collect();
        assert_eq!(splits, [Split::Val, Split::Train]);
    });
}

#[test]
fn nothing_is_written_when_an_upload_exceeds_the_limits() {
    with_db(|db| async move {
        let p = project(&db.pool, "summaries").await;
        let file = b"{\"prompt\": \"a\"}\n{\"prompt\": \"b\"}\n{\"prompt\": \"c\"}\n";
        let few_lines = ImportLimits { max_bytes: 1 << 20, max_lines: 2 };
        let refused =
            prompts::import(&db.pool, p, prompts::PromptFile::Jsonl(file), &upload(), None, &few_lines)
                .await
                .unwrap_err();
        assert!(matches!(refused, LabelingError::UploadRefused(_)), "{refused:?}");
        let few_bytes = ImportLimits { max_bytes: 10, max_lines: 100 };
        let refused = prompts::import(
            &db.pool,
            p,
            prompts::PromptFile::Csv(b"prompt\na\nb\nc\n"),
            &upload(),
            None,
            &few_bytes,
        )
        .await
        .unwrap_err();
        assert!(refused.to_string().contains("13 bytes, more than the limit of 10 bytes"), "{refused}");
        assert!(texts_in(&db.pool, p).await.is_empty());
    });
}

#[test]
fn an_import_into_a_missing_project_or_by_an_unknown_user_is_not_found() {
    with_db(|db| async move {
        let limits = ImportLimits::default();
        let file = b"{\"prompt\": \"a\"}\n";
        let missing =
            prompts::import(&db.pool, 424_242, prompts::PromptFile::Jsonl(file), &upload(), None, &limits)
                .await
                .unwrap_err();
        assert!(matches!(missing, LabelingError::NotFound { what: "project", .. }), "{missing:?}");
        let p = project(&db.pool, "summaries").await;
        let ghost =
            prompts::import(&db.pool, p, prompts::PromptFile::Jsonl(file), &upload(), Some(424_242), &limits)
                .await
                .unwrap_err();
        assert!(matches!(ghost, LabelingError::NotFound { what: "user", .. }), "{ghost:?}");
        assert!(texts_in(&db.pool, p).await.is_empty());
    });
}

#[test]
fn concurrent_imports_of_the_same_prompts_store_each_prompt_once() {
    with_db(|db| async move {
        let p = project(&db.pool, "summaries").await;
        let file: Vec<u8> =
            (0..300).flat_map(|i| format!("{{\"prompt\": \"prompt {i}\"}}\n").into_bytes()).collect();
        let imports = (0..6).map(|_| {
            let pool = db.pool.clone();
            let file = file.clone();
            tokio::spawn(async move {
                prompts::import(
                    &pool,
                    p,
                    prompts::PromptFile::Jsonl(&file),
                    &upload(),
                    None,
                    &ImportLimits::default(),
                )
                .await
                .unwrap()
            })
        });
        let reports: Vec<ImportReport> =
            futures::future::join_all(imports).await.into_iter().map(|r| r.unwrap()).collect();
        let imported: usize = reports.iter().map(|r| r.imported.len()).sum();
        assert_eq!(imported, 300);
        for report in &reports {
            assert!(report.errors.is_empty(), "{:?}", report.errors);
            assert_eq!(report.imported.len() + report.duplicates.len(), 300);
        }
        assert_eq!(prompts::count_prompts(&db.pool, p, None, None).await.unwrap(), 300);
    });
}

#[test]
fn prompts_are_listed_by_substring_and_split_with_wildcards_taken_literally() {
    with_db(|db| async move {
        let p = project(&db.pool, "summaries").await;
        let q = project(&db.pool, "other").await;
        let file = b"{\"prompt\": \"Take 50% off\"}\n\
            {\"prompt\": \"Take 500 off\", \"split\": \"val\"}\n\
            {\"prompt\": \"snake_case it\", \"split\": \"val\"}\n\
            {\"prompt\": \"snakeXcase it\"}\n\
            {\"prompt\": \"TAKE a break\", \"split\": \"test\"}\n";
        prompts::import(
            &db.pool,
            p,
            prompts::PromptFile::Jsonl(file),
            &upload(),
            None,
            &ImportLimits::default(),
        )
        .await
        .unwrap();
        prompts::import(
            &db.pool,
            q,
            prompts::PromptFile::Jsonl(b"{\"prompt\": \"take it\"}"),
            &upload(),
            None,
            &ImportLimits::default(),
        )
        .await
        .unwrap();

        let texts = |found: Vec<prompts::Prompt>| found.into_iter().map(|p| p.text).collect::<Vec<_>>();
        let list = |search: Option<&'static str>, split: Option<Split>, limit: i64, offset: i64| {
            let pool = db.pool.clone();
            async move { texts(prompts::list_prompts(&pool, p, search, split, limit, offset).await.unwrap()) }
        };
        assert_eq!(list(Some("50%"), None, 10, 0).await, ["Take 50% off"]);
        assert_eq!(list(Some("snake_"), None, 10, 0).await, ["snake_case it"]);
        assert_eq!(list(Some("take"), None, 10, 0).await, ["Take 50% off", "Take 500 off", "TAKE a break"]);
        assert_eq!(list(Some("take"), Some(Split::Val), 10, 0).await, ["Take 500 off"]);
        assert_eq!(list(None, Some(Split::Val), 10, 0).await, ["Take 500 off", "snake_case it"]);
        assert_eq!(list(Some(""), None, 2, 1).await, ["Take 500 off", "snake_case it"]);
        assert_eq!(list(None, None, 10, 5).await, Vec::<String>::new());

        assert_eq!(prompts::count_prompts(&db.pool, p, Some("take"), None).await.unwrap(), 3);
        assert_eq!(prompts::count_prompts(&db.pool, p, None, Some(Split::Test)).await.unwrap(), 1);
        assert_eq!(prompts::count_prompts(&db.pool, p, Some("%"), None).await.unwrap(), 1);
        assert_eq!(prompts::count_prompts(&db.pool, q, None, None).await.unwrap(), 1);
    });
}

//! labeling's annotation work on a real database: samples and tasks, handing tasks to
//! annotators, submissions, agreement, consensus, snapshots and exports.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use labeling::agreement::project_agreement;
use labeling::annotation::{
    IdempotencyKey, Likert, Ranking, RankingInput, RankingSubmission, SampleFlag, Vote,
};
use labeling::consensus::{consensus_for_project, consensus_for_task};
use labeling::domain::{Comment, ResponseText, Split};
use labeling::error::LabelingError;
use labeling::snapshots::{self, ExportFormat, PairsTies, SnapshotFilter, SnapshotKind};
use labeling::submit::{self, DemonstrationFor, Submitted};
use labeling::tasks::{self, Assignment, NewSample, TaskKind};
use sqlx::PgPool;

use crate::db::with_db;

const LEASE: Duration = Duration::from_secs(600);

/// A project with annotators and prompts, written in plain SQL.
struct World {
    project: i64,
    annotators: Vec<i64>,
    prompts: Vec<i64>,
}

async fn world(pool: &PgPool, name: &str, overlap: i32, annotators: usize, prompts: usize) -> World {
    let project: i64 =
        sqlx::query_scalar("INSERT INTO projects (name, overlap) VALUES ($1, $2) RETURNING id")
            .bind(name)
            .bind(overlap)
            .fetch_one(pool)
            .await
            .unwrap();
    let mut ids = Vec::new();
    for i in 0..annotators {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO users (username, role, password_hash) VALUES ($1, 'annotator', '$argon2id$v=19$test')
             RETURNING id",
        )
        .bind(format!("{name}-ann{i}"))
        .fetch_one(pool)
        .await
        .unwrap();
        ids.push(id);
    }
    let mut prompt_ids = Vec::new();
    for i in 0..prompts {
        let id: i64 =
            sqlx::query_scalar("INSERT INTO prompts (project_id, text) VALUES ($1, $2) RETURNING id")
                .bind(project)
                .bind(format!("{name}: prompt {i}"))
                .fetch_one(pool)
                .await
                .unwrap();
        prompt_ids.push(id);
    }
    World { project, annotators: ids, prompts: prompt_ids }
}

/// `n` samples of `prompt` (texts "s0".."s{n-1}" after the prompt id), one batch.
async fn samples(pool: &PgPool, w: &World, prompt: i64, n: usize) -> Vec<i64> {
    let new: Vec<NewSample> = (0..n)
        .map(|i| NewSample { prompt_id: prompt, text: format!("p{prompt} s{i}"), logprobs: None })
        .collect();
    tasks::add_samples(pool, w.project, None, None, &serde_json::json!({}), &new).await.unwrap()
}

async fn count(pool: &PgPool, table: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT count(*) FROM {table}")).fetch_one(pool).await.unwrap()
}

async fn next(pool: &PgPool, w: &World, annotator: i64) -> Assignment {
    tasks::next_task(pool, w.project, annotator, LEASE).await.unwrap().expect("a task is left")
}

fn submission(k: usize, groups: &[&[usize]]) -> RankingSubmission {
    let input = RankingInput {
        ranking: Some(groups.iter().map(|g| g.to_vec()).collect()),
        ..RankingInput::default()
    };
    RankingSubmission::parse(k, input).unwrap()
}

async fn rank(pool: &PgPool, annotator: i64, assignment: i64, k: usize, groups: &[&[usize]]) -> i64 {
    submit::submit_ranking(pool, annotator, assignment, &submission(k, groups), IdempotencyKey::new())
        .await
        .unwrap()
        .id()
}

/// A ranking task of `k` fresh samples for each prompt, in prompt order.
async fn ranking_tasks(pool: &PgPool, w: &World, k: usize) -> Vec<i64> {
    let mut ids = Vec::new();
    for &prompt in &w.prompts {
        let s = samples(pool, w, prompt, k).await;
        ids.push(tasks::create_ranking_task(pool, w.project, prompt, &s).await.unwrap());
    }
    ids
}

fn is_invalid(e: &LabelingError, field: &str) -> bool {
    matches!(e, LabelingError::Invalid { field: f, .. } if f == field)
}

#[test]
fn samples_of_one_batch_share_its_model_version_and_settings() {
    with_db(|db| async move {
        let pool = &db.pool;
        let w = world(pool, "p", 1, 0, 2).await;
        let settings = serde_json::json!({"temperature": 0.7, "seed": 3});
        let new = vec![
            NewSample { prompt_id: w.prompts[0], text: "a".into(), logprobs: Some(vec![-0.5, -1.25]) },
            NewSample { prompt_id: w.prompts[1], text: String::new(), logprobs: None },
        ];
        let ids = tasks::add_samples(pool, w.project, None, None, &settings, &new).await.unwrap();
        assert_eq!(ids.len(), 2);
        let rows: Vec<(i64, String, serde_json::Value, Option<Vec<f32>>)> =
            sqlx::query_as("SELECT batch_id, text, settings, logprobs FROM samples ORDER BY id")
                .fetch_all(pool)
                .await
                .unwrap();
        assert_eq!(rows[0].0, rows[1].0, "one batch");
        assert_eq!((rows[0].1.as_str(), &rows[0].2, &rows[0].3), ("a", &settings, &Some(vec![-0.5, -1.25])));
        assert_eq!(rows[1].3, None);
        assert_eq!(count(pool, "sample_batches").await, 1);
    });
}

#[test]
fn samples_for_a_prompt_of_another_project_are_rejected_and_nothing_written() {
    with_db(|db| async move {
        let pool = &db.pool;
        let w = world(pool, "p", 1, 0, 1).await;
        let other = world(pool, "q", 1, 0, 1).await;
        let new = vec![
            NewSample { prompt_id: w.prompts[0], text: "ok".into(), logprobs: None },
            NewSample { prompt_id: other.prompts[0], text: "elsewhere".into(), logprobs: None },
        ];
        let e =
            tasks::add_samples(pool, w.project, None, None, &serde_json::json!({}), &new).await.unwrap_err();
        assert!(matches!(e, LabelingError::NotFound { .. }), "{e}");
        let too_long = vec![NewSample { prompt_id: w.prompts[0], text: "x".repeat(20_001), logprobs: None }];
        let e = tasks::add_samples(pool, w.project, None, None, &serde_json::json!({}), &too_long)
            .await
            .unwrap_err();
        assert!(is_invalid(&e, "samples[0].text"), "{e}");
        let e = tasks::add_samples(pool, w.project, None, None, &serde_json::json!([1]), &too_long[..0])
            .await
            .unwrap_err();
        assert!(matches!(e, LabelingError::Invalid { .. }), "{e}");
        assert_eq!((count(pool, "samples").await, count(pool, "sample_batches").await), (0, 0));
    });
}

#[test]
fn a_ranking_task_holds_its_samples_at_the_positions_given_shown_in_an_order_of_the_assignment() {
    with_db(|db| async move {
        let pool = &db.pool;
        let w = world(pool, "p", 1, 1, 1).await;
        let mut s = samples(pool, &w, w.prompts[0], 4).await;
        s.reverse();
        let task = tasks::create_ranking_task(pool, w.project, w.prompts[0], &s).await.unwrap();
        let a = next(pool, &w, w.annotators[0]).await;
        assert_eq!((a.task_id, a.kind, a.k(), a.project_id), (task, TaskKind::Ranking, 4, w.project));
        assert_eq!(a.prompt.text, "p: prompt 0");
        let mut by_position = a.samples.clone();
        by_position.sort_by_key(|s| s.position);
        assert_eq!(by_position.iter().map(|s| s.id).collect::<Vec<_>>(), s);
        assert_eq!(by_position.iter().map(|s| s.position).collect::<Vec<_>>(), vec![0, 1, 2, 3]);
        // Shown in the order recorded for the assignment, every time it is read.
        let order: Vec<i16> = sqlx::query_scalar("SELECT sample_order FROM assignments WHERE id = $1")
            .bind(a.id)
            .fetch_one(pool)
            .await
            .unwrap();
        assert_eq!(a.samples.iter().map(|s| s.position as i16).collect::<Vec<_>>(), order);
        assert_eq!(tasks::assignment(pool, a.id, w.annotators[0]).await.unwrap(), a);
    });
}

#[test]
fn a_ranking_task_with_a_sample_of_another_prompt_or_a_bad_k_is_rejected_and_nothing_written() {
    with_db(|db| async move {
        let pool = &db.pool;
        let w = world(pool, "p", 1, 0, 2).await;
        let mine = samples(pool, &w, w.prompts[0], 9).await;
        let theirs = samples(pool, &w, w.prompts[1], 1).await;
        let e = tasks::create_ranking_task(pool, w.project, w.prompts[0], &[mine[0], theirs[0]])
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "invalid samples: sample {} is a sample of prompt {}, not of prompt {}",
                theirs[0], w.prompts[1], w.prompts[0]
            )
        );
        let ten: Vec<i64> = mine.iter().copied().chain(theirs.iter().copied()).collect();
        let e = tasks::create_ranking_task(pool, w.project, w.prompts[0], &ten).await.unwrap_err();
        assert_eq!(e.to_string(), "invalid samples: a ranking task shows 2 to 9 samples, not 10");
        let e = tasks::create_ranking_task(pool, w.project, w.prompts[0], &mine[..1]).await.unwrap_err();
        assert!(is_invalid(&e, "samples"), "{e}");
        let e =
            tasks::create_ranking_task(pool, w.project, w.prompts[0], &[mine[0], mine[0]]).await.unwrap_err();
        assert!(e.to_string().contains("listed twice"), "{e}");
        assert_eq!((count(pool, "tasks").await, count(pool, "task_samples").await), (0, 0));
    });
}

#[test]
fn demonstration_tasks_are_made_one_per_prompt() {
    with_db(|db| async move {
        let pool = &db.pool;
        let w = world(pool, "p", 1, 1, 3).await;
        let ids = tasks::create_demonstration_tasks(pool, w.project, &w.prompts).await.unwrap();
        assert_eq!(ids.len(), 3);
        let a = next(pool, &w, w.annotators[0]).await;
        assert_eq!(
            (a.task_id, a.kind, a.k(), a.prompt.id),
            (ids[0], TaskKind::Demonstration, 0, w.prompts[0])
        );
        let e = tasks::create_demonstration_tasks(pool, w.project, &[w.prompts[0], w.prompts[0]])
            .await
            .unwrap_err();
        assert!(e.to_string().contains("listed twice"), "{e}");
        assert_eq!(count(pool, "tasks").await, 3);
    });
}

#[test]
fn an_annotator_holding_a_lease_gets_the_same_task_back() {
    with_db(|db| async move {
        let pool = &db.pool;
        let w = world(pool, "p", 2, 1, 2).await;
        tasks::create_demonstration_tasks(pool, w.project, &w.prompts).await.unwrap();
        let first = next(pool, &w, w.annotators[0]).await;
        let again = next(pool, &w, w.annotators[0]).await;
        assert_eq!(again.id, first.id);
        assert_eq!(count(pool, "assignments").await, 1);
    });
}

#[test]
fn a_task_goes_to_overlap_distinct_annotators_and_then_to_no_one() {
    with_db(|db| async move {
        let pool = &db.pool;
        let w = world(pool, "p", 2, 3, 1).await;
        let task = tasks::create_demonstration_tasks(pool, w.project, &w.prompts).await.unwrap()[0];
        let a = next(pool, &w, w.annotators[0]).await;
        let b = next(pool, &w, w.annotators[1]).await;
        assert_eq!((a.task_id, b.task_id), (task, task));
        assert!(tasks::next_task(pool, w.project, w.annotators[2], LEASE).await.unwrap().is_none());
        let response = ResponseText::parse("done").unwrap();
        submit::submit_demonstration(
            pool,
            w.annotators[0],
            DemonstrationFor::Assignment(a.id),
            &response,
            None,
            IdempotencyKey::new(),
        )
        .await
        .unwrap();
        assert!(
            tasks::next_task(pool, w.project, w.annotators[0], LEASE).await.unwrap().is_none(),
            "never the same task twice"
        );
        assert!(tasks::next_task(pool, w.project, w.annotators[2], LEASE).await.unwrap().is_none());
    });
}

#[test]
fn twenty_annotators_pulling_at_once_get_each_task_at_most_overlap_times_and_never_twice() {
    with_db(|db| async move {
        let pool = &db.pool;
        let w = world(pool, "p", 3, 20, 8).await;
        let task_ids = tasks::create_demonstration_tasks(pool, w.project, &w.prompts).await.unwrap();
        // Round one: everyone pulls once, together; 8 tasks × 3 = 24 leases for 20 people.
        let mut handles = Vec::new();
        for &annotator in &w.annotators {
            let (pool, project) = (pool.clone(), w.project);
            handles
                .push(tokio::spawn(async move { tasks::next_task(&pool, project, annotator, LEASE).await }));
        }
        let mut per_task: HashMap<i64, usize> = HashMap::new();
        for h in handles {
            let a = h.await.unwrap().unwrap().expect("enough tasks for everyone in round one");
            *per_task.entry(a.task_id).or_default() += 1;
        }
        assert!(per_task.values().all(|&n| n <= 3), "{per_task:?}");

        // Round two: everyone submits and pulls again until nothing is left.
        let mut handles = Vec::new();
        for &annotator in &w.annotators {
            let (pool, project) = (pool.clone(), w.project);
            handles.push(tokio::spawn(async move {
                let mut done = Vec::new();
                while let Some(a) = tasks::next_task(&pool, project, annotator, LEASE).await.unwrap() {
                    let text = ResponseText::parse(format!("{annotator} on {}", a.task_id)).unwrap();
                    let target = DemonstrationFor::Assignment(a.id);
                    submit::submit_demonstration(
                        &pool,
                        annotator,
                        target,
                        &text,
                        None,
                        IdempotencyKey::new(),
                    )
                    .await
                    .unwrap();
                    done.push(a.task_id);
                }
                (annotator, done)
            }));
        }
        let mut per_task: HashMap<i64, usize> = HashMap::new();
        for h in handles {
            let (annotator, done) = h.await.unwrap();
            let distinct: HashSet<_> = done.iter().collect();
            assert_eq!(distinct.len(), done.len(), "annotator {annotator} got a task twice: {done:?}");
            for t in done {
                *per_task.entry(t).or_default() += 1;
            }
        }
        for t in &task_ids {
            assert_eq!(per_task.get(t), Some(&3), "task {t}: {per_task:?}");
        }
        assert_eq!(count(pool, "demonstrations").await, 24);
        assert_eq!(count(pool, "assignments WHERE state = 'submitted'").await, 24);
    });
}

#[test]
fn an_expired_lease_returns_the_task_to_the_queue() {
    with_db(|db| async move {
        let pool = &db.pool;
        let w = world(pool, "p", 1, 2, 1).await;
        tasks::create_demonstration_tasks(pool, w.project, &w.prompts).await.unwrap();
        let (alice, bob) = (w.annotators[0], w.annotators[1]);
        let first = next(pool, &w, alice).await;
        assert!(tasks::next_task(pool, w.project, bob, LEASE).await.unwrap().is_none());

        let expire = "UPDATE assignments SET lease_until = now() - interval '1 minute' WHERE id = $1";
        sqlx::query(expire).bind(first.id).execute(pool).await.unwrap();
        let renewed = next(pool, &w, alice).await;
        assert_eq!(renewed.id, first.id, "an annotator's own expired lease is renewed");
        assert!(renewed.lease_until > chrono::Utc::now());

        sqlx::query(expire).bind(first.id).execute(pool).await.unwrap();
        let taken = next(pool, &w, bob).await;
        assert_eq!(taken.task_id, first.task_id);
        let late = submit::submit_demonstration(
            pool,
            alice,
            DemonstrationFor::Assignment(first.id),
            &ResponseText::parse("late").unwrap(),
            None,
            IdempotencyKey::new(),
        )
        .await
        .unwrap_err();
        assert!(matches!(late, LabelingError::Conflict(_)), "{late}");
        assert_eq!(count(pool, "demonstrations").await, 0);
    });
}

#[test]
fn a_submission_on_an_expired_lease_is_accepted_while_no_one_else_took_the_task() {
    with_db(|db| async move {
        let pool = &db.pool;
        let w = world(pool, "p", 1, 1, 1).await;
        tasks::create_demonstration_tasks(pool, w.project, &w.prompts).await.unwrap();
        let a = next(pool, &w, w.annotators[0]).await;
        sqlx::query("UPDATE assignments SET lease_until = now() - interval '1 minute'")
            .execute(pool)
            .await
            .unwrap();
        let text = ResponseText::parse("slow but done").unwrap();
        let stored = submit::submit_demonstration(
            pool,
            w.annotators[0],
            DemonstrationFor::Assignment(a.id),
            &text,
            Some(90_000),
            IdempotencyKey::new(),
        )
        .await
        .unwrap();
        assert!(matches!(stored, Submitted::Stored(_)));
    });
}

#[test]
fn a_skipped_task_goes_to_others_but_never_back_to_the_annotator_who_skipped() {
    with_db(|db| async move {
        let pool = &db.pool;
        let w = world(pool, "p", 1, 2, 1).await;
        tasks::create_demonstration_tasks(pool, w.project, &w.prompts).await.unwrap();
        let (alice, bob) = (w.annotators[0], w.annotators[1]);
        let a = next(pool, &w, alice).await;
        let e = tasks::skip(pool, a.id, bob).await.unwrap_err();
        assert!(matches!(e, LabelingError::Forbidden(_)), "{e}");
        tasks::skip(pool, a.id, alice).await.unwrap();
        let e = tasks::skip(pool, a.id, alice).await.unwrap_err();
        assert_eq!(e.to_string(), format!("conflict: assignment {} is already skipped", a.id));
        assert!(tasks::next_task(pool, w.project, alice, LEASE).await.unwrap().is_none());
        assert_eq!(next(pool, &w, bob).await.task_id, a.task_id);
    });
}

#[test]
fn a_demonstration_is_stored_once_per_key_and_finishes_its_assignment() {
    with_db(|db| async move {
        let pool = &db.pool;
        let w = world(pool, "p", 1, 2, 2).await;
        tasks::create_demonstration_tasks(pool, w.project, &w.prompts[..1]).await.unwrap();
        let alice = w.annotators[0];
        let a = next(pool, &w, alice).await;
        let key = IdempotencyKey::new();
        let text = ResponseText::parse("Hello.").unwrap();
        let target = DemonstrationFor::Assignment(a.id);
        let first = submit::submit_demonstration(pool, alice, target, &text, Some(1500), key).await.unwrap();
        let retry = submit::submit_demonstration(pool, alice, target, &text, Some(1500), key).await.unwrap();
        assert_eq!((first, retry), (Submitted::Stored(first.id()), Submitted::AlreadyStored(first.id())));
        let other = ResponseText::parse("Hi!").unwrap();
        let e = submit::submit_demonstration(pool, alice, target, &other, None, key).await.unwrap_err();
        assert!(matches!(e, LabelingError::Conflict(_)), "{e}");
        let e = submit::submit_demonstration(pool, alice, target, &other, None, IdempotencyKey::new())
            .await
            .unwrap_err();
        assert_eq!(e.to_string(), format!("conflict: assignment {} is already submitted", a.id));
        let e =
            submit::submit_demonstration(pool, w.annotators[1], target, &other, None, IdempotencyKey::new())
                .await
                .unwrap_err();
        assert!(matches!(e, LabelingError::Forbidden(_)), "{e}");

        // Written for a prompt directly, outside the queue.
        let free = submit::submit_demonstration(
            pool,
            alice,
            DemonstrationFor::Prompt(w.prompts[1]),
            &other,
            None,
            IdempotencyKey::new(),
        )
        .await
        .unwrap();
        let task: Option<i64> = sqlx::query_scalar("SELECT task_id FROM demonstrations WHERE id = $1")
            .bind(free.id())
            .fetch_one(pool)
            .await
            .unwrap();
        assert_eq!(task, None);
        assert_eq!(count(pool, "demonstrations").await, 2);
    });
}

#[test]
fn fifty_concurrent_submits_with_one_idempotency_key_store_one_row() {
    with_db(|db| async move {
        let pool = &db.pool;
        let w = world(pool, "p", 1, 1, 1).await;
        ranking_tasks(pool, &w, 4).await;
        let annotator = w.annotators[0];
        let a = next(pool, &w, annotator).await;
        let key = IdempotencyKey::new();
        let input = RankingInput {
            ranking: Some(vec![vec![3], vec![0, 1], vec![2]]),
            flags: vec![(2, "harmful".into()), (2, "fails_task".into())],
            comment: "sample 2 is rude".into(),
            ..RankingInput::default()
        };
        let s = RankingSubmission::parse(4, input).unwrap();
        let mut handles = Vec::new();
        for _ in 0..50 {
            let (pool, s) = (pool.clone(), s.clone());
            handles.push(tokio::spawn(async move {
                submit::submit_ranking(&pool, annotator, a.id, &s, key).await
            }));
        }
        let mut results = Vec::new();
        for h in handles {
            results.push(h.await.unwrap().unwrap());
        }
        let stored: Vec<_> = results.iter().filter(|r| matches!(r, Submitted::Stored(_))).collect();
        assert_eq!(stored.len(), 1, "{results:?}");
        assert!(results.iter().all(|r| r.id() == results[0].id()));
        assert_eq!(count(pool, "rankings").await, 1);
        assert_eq!(count(pool, "ranking_flags").await, 2);
    });
}

#[test]
fn a_ranking_is_stored_with_its_ranks_likert_flags_and_comment() {
    with_db(|db| async move {
        let pool = &db.pool;
        let w = world(pool, "p", 1, 1, 1).await;
        ranking_tasks(pool, &w, 3).await;
        let a = next(pool, &w, w.annotators[0]).await;
        let input = RankingInput {
            ranking: Some(vec![vec![2], vec![0, 1]]),
            likert: vec![Some(2), None, Some(6)],
            flags: vec![(0, "hallucination".into())],
            comment: "two are tied".into(),
            time_spent_ms: Some(4200),
            ..RankingInput::default()
        };
        let s = RankingSubmission::parse(3, input).unwrap();
        let id = submit::submit_ranking(pool, w.annotators[0], a.id, &s, IdempotencyKey::new())
            .await
            .unwrap()
            .id();
        let (ranks, likert, comment, ms): (Vec<i16>, Vec<Option<i16>>, String, i32) =
            sqlx::query_as("SELECT ranks, likert, comment, time_spent_ms FROM rankings WHERE id = $1")
                .bind(id)
                .fetch_one(pool)
                .await
                .unwrap();
        assert_eq!(
            (ranks, likert, comment.as_str(), ms),
            (vec![1, 1, 0], vec![Some(2), None, Some(6)], "two are tied", 4200)
        );
        let flags: Vec<(i16, SampleFlag)> =
            sqlx::query_as("SELECT position, flag FROM ranking_flags").fetch_all(pool).await.unwrap();
        assert_eq!(flags, vec![(0, SampleFlag::Hallucination)]);
        let state: String =
            sqlx::query_scalar("SELECT state::text FROM assignments").fetch_one(pool).await.unwrap();
        assert_eq!(state, "submitted");
        assert_eq!(Likert::parse(6).unwrap().value(), 6);
    });
}

#[test]
fn invalid_rankings_are_rejected_with_a_clear_error_and_nothing_written() {
    with_db(|db| async move {
        let pool = &db.pool;
        let w = world(pool, "p", 1, 2, 1).await;
        ranking_tasks(pool, &w, 4).await;
        let annotator = w.annotators[0];
        let a = next(pool, &w, annotator).await;
        let parse = |k, groups: Vec<Vec<usize>>, comment: String| {
            RankingSubmission::parse(
                k,
                RankingInput { ranking: Some(groups), comment, ..RankingInput::default() },
            )
        };
        let duplicate = parse(4, vec![vec![0], vec![0, 1], vec![2, 3]], String::new()).unwrap_err();
        assert_eq!(duplicate.to_string(), "invalid ranking: index 0 appears twice");
        let missing = parse(4, vec![vec![0], vec![1, 2]], String::new()).unwrap_err();
        assert_eq!(missing.to_string(), "invalid ranking: sample 3 is not ranked");
        let ten = parse(10, vec![(0..10).collect()], String::new()).unwrap_err();
        assert_eq!(ten.to_string(), "invalid ranking: ranks 10 samples; a ranking needs 2 to 9");
        let long = parse(4, vec![vec![0, 1, 2, 3]], "x".repeat(5001)).unwrap_err();
        assert!(is_invalid(&long, "comment"), "{long}");

        let three = submission(3, &[&[0], &[1], &[2]]);
        let e =
            submit::submit_ranking(pool, annotator, a.id, &three, IdempotencyKey::new()).await.unwrap_err();
        assert_eq!(e.to_string(), "invalid ranking: ranks 3 samples, but the task shows 4");
        let four = submission(4, &[&[0], &[1], &[2], &[3]]);
        let e = submit::submit_ranking(pool, w.annotators[1], a.id, &four, IdempotencyKey::new())
            .await
            .unwrap_err();
        assert!(matches!(e, LabelingError::Forbidden(_)), "{e}");
        let e = submit::submit_vote(
            pool,
            annotator,
            a.id,
            Vote::A,
            &Comment::default(),
            None,
            IdempotencyKey::new(),
        )
        .await
        .unwrap_err();
        assert!(is_invalid(&e, "assignment"), "a vote on a ranking task: {e}");
        assert_eq!(count(pool, "rankings").await, 0);
        let state: String =
            sqlx::query_scalar("SELECT state::text FROM assignments").fetch_one(pool).await.unwrap();
        assert_eq!(state, "leased");
    });
}

#[test]
fn a_comparison_task_shows_the_two_samples_in_random_order_and_votes_name_the_versions() {
    with_db(|db| async move {
        let pool = &db.pool;
        let w = world(pool, "p", 1, 1, 1).await;
        let versions: Vec<i64> = sqlx::query_scalar(
            "WITH m AS (INSERT INTO models (name, latest_version) VALUES ('m', 2) RETURNING id)
             INSERT INTO model_versions (model_id, version, kind, artifact_uri, artifact_sha256, artifact_size)
             SELECT m.id, v, 'policy', 'file:///' || v, sha256(v::text::bytea), 1 FROM m, generate_series(1, 2) v
             RETURNING id",
        )
        .fetch_all(pool)
        .await
        .unwrap();
        let mut by_version = Vec::new();
        for (i, &v) in versions.iter().enumerate() {
            let new = [NewSample {
                prompt_id: w.prompts[0],
                text: format!("by version {}", i + 1),
                logprobs: None,
            }];
            by_version.push(
                tasks::add_samples(pool, w.project, Some(v), None, &serde_json::json!({}), &new)
                    .await
                    .unwrap()[0],
            );
        }
        let mut a_first = 0;
        for _ in 0..30 {
            let task = tasks::create_random_comparison_task(
                pool,
                w.project,
                w.prompts[0],
                by_version[0],
                by_version[1],
            )
            .await
            .unwrap();
            let shown_as_a: i64 =
                sqlx::query_scalar("SELECT sample_id FROM task_samples WHERE task_id = $1 AND position = 0")
                    .bind(task)
                    .fetch_one(pool)
                    .await
                    .unwrap();
            a_first += usize::from(shown_as_a == by_version[0]);
        }
        assert!((1..30).contains(&a_first), "version 1 was side A in {a_first} of 30 tasks");

        let a = next(pool, &w, w.annotators[0]).await;
        assert_eq!((a.kind, a.k()), (TaskKind::Comparison, 2));
        let comment = Comment::parse("A is shorter").unwrap();
        submit::submit_vote(pool, w.annotators[0], a.id, Vote::A, &comment, Some(800), IdempotencyKey::new())
            .await
            .unwrap();
        let votes = submit::version_votes(pool, w.project).await.unwrap();
        assert_eq!(votes.len(), 1);
        let version_of = |sample: i64| versions[by_version.iter().position(|&s| s == sample).unwrap()];
        assert_eq!(votes[0].version_a, Some(version_of(a.samples[0].id)));
        assert_eq!(votes[0].version_b, Some(version_of(a.samples[1].id)));
        assert_eq!(votes[0].vote, Vote::A);
    });
}

#[test]
fn a_vote_is_stored_once_per_key_and_the_same_key_with_another_vote_is_a_conflict() {
    with_db(|db| async move {
        let pool = &db.pool;
        let w = world(pool, "p", 1, 1, 1).await;
        let s = samples(pool, &w, w.prompts[0], 2).await;
        tasks::create_random_comparison_task(pool, w.project, w.prompts[0], s[0], s[1]).await.unwrap();
        let a = next(pool, &w, w.annotators[0]).await;
        let key = IdempotencyKey::new();
        let none = Comment::default();
        let first =
            submit::submit_vote(pool, w.annotators[0], a.id, Vote::Tie, &none, None, key).await.unwrap();
        let again =
            submit::submit_vote(pool, w.annotators[0], a.id, Vote::Tie, &none, None, key).await.unwrap();
        assert_eq!(again, Submitted::AlreadyStored(first.id()));
        let e =
            submit::submit_vote(pool, w.annotators[0], a.id, Vote::B, &none, None, key).await.unwrap_err();
        assert!(matches!(e, LabelingError::Conflict(_)), "{e}");
        assert_eq!(count(pool, "comparison_votes").await, 1);
    });
}

#[test]
fn agreement_is_measured_on_tasks_that_two_annotators_ranked() {
    with_db(|db| async move {
        let pool = &db.pool;
        let w = world(pool, "p", 2, 3, 2).await;
        ranking_tasks(pool, &w, 3).await;
        let [alice, bob, carol] = [w.annotators[0], w.annotators[1], w.annotators[2]];
        // Task 1: alice and bob agree fully. Task 2: alice and carol agree on 1 of 3 pairs.
        let a = next(pool, &w, alice).await;
        rank(pool, alice, a.id, 3, &[&[0], &[1], &[2]]).await;
        let b = next(pool, &w, bob).await;
        rank(pool, bob, b.id, 3, &[&[0], &[1], &[2]]).await;
        let a2 = next(pool, &w, alice).await;
        rank(pool, alice, a2.id, 3, &[&[0], &[1], &[2]]).await;
        let c = next(pool, &w, carol).await;
        assert_eq!(c.task_id, a2.task_id);
        rank(pool, carol, c.id, 3, &[&[1], &[2], &[0]]).await;

        let report = project_agreement(pool, w.project).await.unwrap();
        assert_eq!(report.tasks_shared, 2);
        let by_id: HashMap<i64, _> = report.per_annotator.iter().map(|a| (a.annotator_id, a)).collect();
        assert_eq!(by_id[&alice].agreement_rate, Some(4.0 / 6.0));
        assert_eq!(by_id[&bob].agreement_rate, Some(1.0));
        assert_eq!(by_id[&carol].agreement_rate, Some(1.0 / 3.0));
        // τ on task 2: n_c = 1, n_d = 2, so −1/3; alice's is the mean of 1 and −1/3.
        assert!((by_id[&carol].kendall_tau.unwrap() + 1.0 / 3.0).abs() < 1e-12);
        assert!((by_id[&alice].kendall_tau.unwrap() - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(report.project.agreement_rate, Some(4.0 / 6.0));
    });
}

#[test]
fn a_tasks_consensus_is_the_borda_order_of_its_rankings_without_all_bad_ones() {
    with_db(|db| async move {
        let pool = &db.pool;
        let w = world(pool, "p", 3, 3, 1).await;
        let task = ranking_tasks(pool, &w, 3).await[0];
        let empty = consensus_for_task(pool, task).await.unwrap();
        assert_eq!((empty.consensus, empty.all_bad_without_order), (None, 0));

        let mut assignments: Vec<Assignment> = Vec::new();
        for &annotator in &w.annotators {
            assignments.push(next(pool, &w, annotator).await);
        }
        rank(pool, w.annotators[0], assignments[0].id, 3, &[&[2], &[0], &[1]]).await;
        rank(pool, w.annotators[1], assignments[1].id, 3, &[&[2, 0], &[1]]).await;
        let all_bad =
            RankingSubmission::parse(3, RankingInput { all_bad: true, ..RankingInput::default() }).unwrap();
        submit::submit_ranking(pool, w.annotators[2], assignments[2].id, &all_bad, IdempotencyKey::new())
            .await
            .unwrap();

        let c = consensus_for_task(pool, task).await.unwrap();
        assert_eq!(c.all_bad_without_order, 1);
        let consensus = c.consensus.unwrap();
        assert_eq!(consensus.rankings, 2);
        assert_eq!(consensus.ranking, Ranking::parse(3, vec![vec![2], vec![0], vec![1]]).unwrap());
        assert_eq!(consensus.mean_positions, vec![0.75, 2.0, 0.25]);
        let project = consensus_for_project(pool, w.project).await.unwrap();
        assert_eq!(project.len(), 1);
        assert_eq!(project[0].consensus.as_ref().unwrap().ranking, consensus.ranking);
        let demo = tasks::create_demonstration_tasks(pool, w.project, &w.prompts).await.unwrap()[0];
        assert!(is_invalid(&consensus_for_task(pool, demo).await.unwrap_err(), "task"));
    });
}

/// Two ranking tasks of 3 samples: alice ranks [[1], [0, 2]] and bob says all bad on
/// the first; alice ranks [[0], [1], [2]] on the second. Returns the project.
async fn ranked_world(pool: &PgPool) -> World {
    let w = world(pool, "p", 2, 2, 2).await;
    ranking_tasks(pool, &w, 3).await;
    let [alice, bob] = [w.annotators[0], w.annotators[1]];
    let a = next(pool, &w, alice).await;
    rank(pool, alice, a.id, 3, &[&[1], &[0, 2]]).await;
    let b = next(pool, &w, bob).await;
    let all_bad =
        RankingSubmission::parse(3, RankingInput { all_bad: true, ..RankingInput::default() }).unwrap();
    submit::submit_ranking(pool, bob, b.id, &all_bad, IdempotencyKey::new()).await.unwrap();
    let a2 = next(pool, &w, alice).await;
    rank(pool, alice, a2.id, 3, &[&[0], &[1], &[2]]).await;
    w
}

#[test]
fn a_snapshot_freezes_the_items_of_the_moment_and_later_ones_stay_out() {
    with_db(|db| async move {
        let pool = &db.pool;
        let w = ranked_world(pool).await;
        let all = SnapshotFilter::default();
        let snap =
            snapshots::freeze(pool, w.project, SnapshotKind::Rankings, &all, "rm-v1", Some(w.annotators[0]))
                .await
                .unwrap();
        assert_eq!(snap.item_count, 3, "every annotator's ranking row, all-bad ones too");
        assert_eq!(snap.content_sha256.len(), 64);
        assert_eq!(snapshots::snapshot(pool, snap.id).await.unwrap(), snap);
        let lines = snapshots::export(pool, snap.id, ExportFormat::KWise).await.unwrap();
        assert_eq!(lines.len(), 2, "the all-bad ranking without an order is left out");

        // A ranking added later is not in the snapshot, and a second freeze differs.
        let b = next(pool, &w, w.annotators[1]).await;
        rank(pool, w.annotators[1], b.id, 3, &[&[2], &[1], &[0]]).await;
        assert_eq!(snapshots::export(pool, snap.id, ExportFormat::KWise).await.unwrap(), lines);
        let again =
            snapshots::freeze(pool, w.project, SnapshotKind::Rankings, &all, "rm-v2", None).await.unwrap();
        assert_eq!(again.item_count, 4);
        assert_ne!(again.content_sha256, snap.content_sha256);
        assert_eq!(snapshots::snapshots(pool, w.project).await.unwrap().len(), 2);

        let refused = sqlx::query("DELETE FROM snapshot_items WHERE snapshot_id = $1")
            .bind(snap.id)
            .execute(pool)
            .await;
        assert!(refused.unwrap_err().to_string().contains("immutable"));
        let e =
            snapshots::freeze(pool, w.project, SnapshotKind::Rankings, &all, " ", None).await.unwrap_err();
        assert!(matches!(e, LabelingError::Invalid { .. }), "{e}");
    });
}

#[test]
fn an_export_refuses_a_snapshot_whose_content_changed_since_it_was_frozen() {
    with_db(|db| async move {
        let pool = &db.pool;
        let w = world(pool, "p", 1, 0, 2).await;
        let snap = snapshots::freeze(
            pool,
            w.project,
            SnapshotKind::Prompts,
            &SnapshotFilter::default(),
            "prompts",
            None,
        )
        .await
        .unwrap();
        assert_eq!(snapshots::export(pool, snap.id, ExportFormat::Prompts).await.unwrap().len(), 2);
        sqlx::query("UPDATE prompts SET text = 'edited' WHERE id = $1")
            .bind(w.prompts[1])
            .execute(pool)
            .await
            .unwrap();
        let e = snapshots::export(pool, snap.id, ExportFormat::Prompts).await.unwrap_err();
        assert!(e.to_string().contains("has changed since it was frozen"), "{e}");
        // A format that does not fit the snapshot's kind conflicts with the snapshot.
        let e = snapshots::export(pool, snap.id, ExportFormat::Sft).await.unwrap_err();
        assert!(
            matches!(e, LabelingError::Conflict(_)) && e.to_string().contains("cannot be exported"),
            "{e}"
        );
    });
}

#[test]
fn exports_write_the_training_formats() {
    with_db(|db| async move {
        let pool = &db.pool;
        let w = ranked_world(pool).await;
        let all = SnapshotFilter::default();
        let snap = snapshots::freeze(pool, w.project, SnapshotKind::Rankings, &all, "r", None).await.unwrap();
        let (p0, p1) = (w.prompts[0], w.prompts[1]);
        let s = |p: i64, i: usize| format!("p{p} s{i}");
        let kwise = snapshots::export(pool, snap.id, ExportFormat::KWise).await.unwrap();
        let expected = serde_json::json!({"prompt": "p: prompt 0", "samples": [s(p0, 0), s(p0, 1), s(p0, 2)], "ranking": [[1], [0, 2]]});
        assert_eq!(serde_json::from_str::<serde_json::Value>(&kwise[0]).unwrap(), expected);
        assert!(kwise[0].starts_with("{\"prompt\":"), "fields in the documented order: {}", kwise[0]);

        let pairs = snapshots::export(pool, snap.id, ExportFormat::Pairs(PairsTies::Drop)).await.unwrap();
        let pair =
            |p, c, r| format!("{{\"prompt\":\"p: prompt {p}\",\"chosen\":\"{c}\",\"rejected\":\"{r}\"}}");
        assert_eq!(
            pairs,
            vec![
                pair(0, s(p0, 1), s(p0, 0)),
                pair(0, s(p0, 1), s(p0, 2)),
                pair(1, s(p1, 0), s(p1, 1)),
                pair(1, s(p1, 0), s(p1, 2)),
                pair(1, s(p1, 1), s(p1, 2)),
            ]
        );
        let kept = snapshots::export(pool, snap.id, ExportFormat::Pairs(PairsTies::Keep)).await.unwrap();
        assert_eq!(kept.len(), 6);
        let tie = serde_json::json!({"prompt": "p: prompt 0", "samples": [s(p0, 0), s(p0, 2)], "ranking": [[0, 1]]});
        assert_eq!(serde_json::from_str::<serde_json::Value>(&kept[2]).unwrap(), tie);

        // Prompts of one split; demonstrations as SFT lines.
        sqlx::query("UPDATE prompts SET split = 'val' WHERE id = $1").bind(p1).execute(pool).await.unwrap();
        let val = SnapshotFilter { split: Some(Split::Val), ..SnapshotFilter::default() };
        let prompts =
            snapshots::freeze(pool, w.project, SnapshotKind::Prompts, &val, "val", None).await.unwrap();
        let lines = snapshots::export(pool, prompts.id, ExportFormat::Prompts).await.unwrap();
        assert_eq!(lines, vec!["{\"prompt\":\"p: prompt 1\"}".to_string()]);
        let filter: serde_json::Value =
            sqlx::query_scalar("SELECT filter FROM dataset_snapshots WHERE id = $1")
                .bind(prompts.id)
                .fetch_one(pool)
                .await
                .unwrap();
        assert_eq!(filter, serde_json::json!({"split": "val"}));
        let text = ResponseText::parse("an \"ideal\" answer\n").unwrap();
        submit::submit_demonstration(
            pool,
            w.annotators[0],
            DemonstrationFor::Prompt(p0),
            &text,
            None,
            IdempotencyKey::new(),
        )
        .await
        .unwrap();
        let demos = snapshots::freeze(pool, w.project, SnapshotKind::Demonstrations, &all, "sft", None)
            .await
            .unwrap();
        let lines = snapshots::export(pool, demos.id, ExportFormat::Sft).await.unwrap();
        assert_eq!(
            lines,
            vec!["{\"prompt\":\"p: prompt 0\",\"response\":\"an \\\"ideal\\\" answer\\n\"}".to_string()]
        );
    });
}

#[test]
fn comparison_votes_export_as_rankings_of_two_and_as_pairs() {
    with_db(|db| async move {
        let pool = &db.pool;
        let w = world(pool, "p", 1, 1, 3).await;
        let votes = [Vote::B, Vote::Tie, Vote::BothBad];
        for (&prompt, &vote) in w.prompts.iter().zip(&votes) {
            let s = samples(pool, &w, prompt, 2).await;
            tasks::create_random_comparison_task(pool, w.project, prompt, s[0], s[1]).await.unwrap();
            let a = next(pool, &w, w.annotators[0]).await;
            submit::submit_vote(
                pool,
                w.annotators[0],
                a.id,
                vote,
                &Comment::default(),
                None,
                IdempotencyKey::new(),
            )
            .await
            .unwrap();
        }
        let all = SnapshotFilter::default();
        let snap =
            snapshots::freeze(pool, w.project, SnapshotKind::Comparisons, &all, "ab", None).await.unwrap();
        assert_eq!(snap.item_count, 3);
        let kwise = snapshots::export(pool, snap.id, ExportFormat::KWise).await.unwrap();
        assert_eq!(kwise.len(), 2, "both-bad gives no order");
        let first: serde_json::Value = serde_json::from_str(&kwise[0]).unwrap();
        assert_eq!(first["ranking"], serde_json::json!([[1], [0]]));
        let shown: Vec<String> = sqlx::query_scalar(
            "SELECT s.text FROM task_samples ts JOIN samples s ON s.id = ts.sample_id
             WHERE ts.task_id = (SELECT min(id) FROM tasks) ORDER BY ts.position",
        )
        .fetch_all(pool)
        .await
        .unwrap();
        assert_eq!(first["samples"], serde_json::json!(shown));
        let pairs = snapshots::export(pool, snap.id, ExportFormat::Pairs(PairsTies::Drop)).await.unwrap();
        assert_eq!(pairs.len(), 1);
        let pair: serde_json::Value = serde_json::from_str(&pairs[0]).unwrap();
        assert_eq!(
            (pair["chosen"].as_str(), pair["rejected"].as_str()),
            (Some(shown[1].as_str()), Some(shown[0].as_str()))
        );
        assert_eq!(
            snapshots::export(pool, snap.id, ExportFormat::Pairs(PairsTies::Keep)).await.unwrap().len(),
            2
        );
    });
}

#[cfg(feature = "trainer")]
#[test]
fn exported_lines_read_back_with_the_trainers_readers() {
    use std::io::Write;

    fn file(lines: &[String]) -> tempfile::NamedTempFile {
        let mut f = tempfile::Builder::new().suffix(".jsonl").tempfile().unwrap();
        for line in lines {
            writeln!(f, "{line}").unwrap();
        }
        f
    }

    with_db(|db| async move {
        let pool = &db.pool;
        let w = ranked_world(pool).await;
        let all = SnapshotFilter::default();
        let rankings =
            snapshots::freeze(pool, w.project, SnapshotKind::Rankings, &all, "r", None).await.unwrap();
        let kwise = file(&snapshots::export(pool, rankings.id, ExportFormat::KWise).await.unwrap());
        let read = trainer::data::read_rankings(kwise.path()).unwrap();
        assert_eq!(read.len(), 2);
        assert_eq!(read[0].groups(), &[vec![1], vec![0, 2]]);
        assert_eq!(read[0].prompt(), "p: prompt 0");

        let pairs = snapshots::export(pool, rankings.id, ExportFormat::Pairs(PairsTies::Keep)).await.unwrap();
        let read = trainer::data::read_rankings(file(&pairs).path()).unwrap();
        assert_eq!(read.len(), 6);
        let comparisons: usize = read.iter().map(|r| r.pairs().len()).sum();
        assert_eq!(comparisons, 5, "the kept tie gives the trainer no comparison");

        let text = ResponseText::parse("Sure.").unwrap();
        submit::submit_demonstration(
            pool,
            w.annotators[0],
            DemonstrationFor::Prompt(w.prompts[1]),
            &text,
            None,
            IdempotencyKey::new(),
        )
        .await
        .unwrap();
        let demos =
            snapshots::freeze(pool, w.project, SnapshotKind::Demonstrations, &all, "d", None).await.unwrap();
        let read = trainer::data::read_demonstrations(
            file(&snapshots::export(pool, demos.id, ExportFormat::Sft).await.unwrap()).path(),
        )
        .unwrap();
        assert_eq!((read[0].prompt.as_str(), read[0].response.as_str()), ("p: prompt 1", "Sure."));

        let prompts =
            snapshots::freeze(pool, w.project, SnapshotKind::Prompts, &all, "p", None).await.unwrap();
        let read = trainer::data::read_prompts(
            file(&snapshots::export(pool, prompts.id, ExportFormat::Prompts).await.unwrap()).path(),
        )
        .unwrap();
        assert_eq!(read, vec!["p: prompt 0", "p: prompt 1"]);
    });
}

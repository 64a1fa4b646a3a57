//! `plumb annotate --simulate` against a running app: the simulated annotator takes
//! every task through the JSON API with an annotator's token and answers as the demo
//! world's oracle would (checked in Postgres), stops when no task is left, skips what is
//! not a demo-world task, and fails naming a refused token or a bad flag.

use std::collections::{HashMap, HashSet};
use std::process::Output;
use std::time::Duration;

use labeling::domain::{Guidelines, Overlap, ProjectName, PromptSource, PromptText};
use labeling::projects::NewProject;
use labeling::prompts::NewPrompt;
use labeling::tasks::{self, NewSample};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde_json::{json, Value};
use world::{self, Demonstration, Oracle, Split, Task};

use crate::db::with_db;
use crate::helpers::{json_lines, plumb_with_env};
use crate::web_app::{spawn_app, TestApp};

/// A project with `ann` as its only annotator, each task taken once.
async fn project(app: &TestApp, name: &str) -> i64 {
    let new = NewProject {
        name: ProjectName::parse(name).unwrap(),
        guidelines: Guidelines::default(),
        overlap: Overlap::parse(1).unwrap(),
        samples_per_task: Default::default(),
        created_by: None,
    };
    let project = labeling::projects::create_project(&app.db.pool, &new).await.unwrap().id;
    let ann = labeling::users::get_user_by_username(&app.db.pool, "ann").await.unwrap().id;
    labeling::projects::add_member(&app.db.pool, project, ann).await.unwrap();
    project
}

async fn prompt(app: &TestApp, project: i64, text: &str) -> i64 {
    let new = NewPrompt {
        project_id: project,
        text: PromptText::parse(text).unwrap(),
        split: labeling::domain::Split::Train,
        source: PromptSource::parse("test").unwrap(),
        created_by: None,
    };
    labeling::prompts::add_prompt(&app.db.pool, &new).await.unwrap().id
}

async fn samples(app: &TestApp, project: i64, prompt: i64, texts: &[String]) -> Vec<i64> {
    let new: Vec<NewSample> =
        texts.iter().map(|t| NewSample { prompt_id: prompt, text: t.clone(), logprobs: None }).collect();
    tasks::add_samples(&app.db.pool, project, None, None, &json!({}), &new).await.unwrap()
}

async fn demonstration_task(app: &TestApp, project: i64, prompt_text: &str) -> i64 {
    let p = prompt(app, project, prompt_text).await;
    tasks::create_demonstration_tasks(&app.db.pool, project, &[p]).await.unwrap()[0]
}

/// `n` distinct wrong answers to `task`, none blank (the schema refuses blank samples).
fn wrong_samples(task: &Task, n: usize, rng: &mut StdRng) -> Vec<String> {
    let mut wrong: Vec<String> = Vec::new();
    while wrong.len() < n {
        for sample in world::synthetic_samples(task, 6, rng) {
            if wrong.len() < n
                && !world::is_correct(task, &sample)
                && !sample.trim().is_empty()
                && !wrong.contains(&sample)
            {
                wrong.push(sample);
            }
        }
    }
    wrong
}

/// `n` demo-world tasks with distinct prompts (a project holds a prompt once).
fn distinct_tasks(n: usize, seed: u64) -> Vec<Task> {
    let mut seen = HashSet::new();
    let tasks: Vec<Task> = world::tasks(10 * n, Split::Train, seed)
        .into_iter()
        .filter(|t| seen.insert(t.prompt.clone()))
        .collect();
    assert!(tasks.len() >= n, "only {} distinct prompts", tasks.len());
    tasks.into_iter().take(n).collect()
}

/// A pilot project's tasks, by task id, with what the oracle must answer to each.
struct Pilot {
    demonstrations: HashMap<i64, Task>,
    /// With the samples by position.
    rankings: HashMap<i64, (Task, Vec<String>)>,
    comparisons: HashMap<i64, Task>,
}

impl Pilot {
    fn kind_of(&self, task_id: i64) -> &'static str {
        if self.demonstrations.contains_key(&task_id) {
            "demonstration"
        } else if self.rankings.contains_key(&task_id) {
            "ranking"
        } else if self.comparisons.contains_key(&task_id) {
            "vote"
        } else {
            panic!("task {task_id} is not one of the pilot's")
        }
    }
}

/// 3 demonstration tasks, 4 ranking tasks of K = 3 or 4 with the answer among wrong
/// samples at a varying position, and 2 A/B tasks of the answer against a wrong sample.
async fn pilot(app: &TestApp, project: i64) -> Pilot {
    let drawn = distinct_tasks(9, 7);
    let mut rng = StdRng::seed_from_u64(7);
    let mut pilot =
        Pilot { demonstrations: HashMap::new(), rankings: HashMap::new(), comparisons: HashMap::new() };
    for task in &drawn[..3] {
        let id = demonstration_task(app, project, &task.prompt).await;
        pilot.demonstrations.insert(id, task.clone());
    }
    for (i, task) in drawn[3..7].iter().enumerate() {
        let k = 3 + i % 2;
        let mut texts = wrong_samples(task, k - 1, &mut rng);
        texts.insert((i + 1) % k, task.answer.clone());
        let p = prompt(app, project, &task.prompt).await;
        let ids = samples(app, project, p, &texts).await;
        let id = tasks::create_ranking_task(&app.db.pool, project, p, &ids).await.unwrap();
        pilot.rankings.insert(id, (task.clone(), texts));
    }
    for task in &drawn[7..] {
        let texts = vec![task.answer.clone(), wrong_samples(task, 1, &mut rng).remove(0)];
        let p = prompt(app, project, &task.prompt).await;
        let ids = samples(app, project, p, &texts).await;
        let id =
            tasks::create_random_comparison_task(&app.db.pool, project, p, ids[0], ids[1]).await.unwrap();
        pilot.comparisons.insert(id, task.clone());
    }
    pilot
}

/// Runs `plumb annotate --simulate --url <the app> ARGS` (with `token` in PLUMB_TOKEN when
/// given) off the runtime that serves the app.
async fn annotate(app: &TestApp, args: &[&str], token: Option<&str>) -> Output {
    let mut all: Vec<String> =
        vec!["annotate".into(), "--simulate".into(), "--url".into(), app.address.clone()];
    all.extend(args.iter().map(|a| a.to_string()));
    let env: Vec<(String, String)> =
        token.map(|t| ("PLUMB_TOKEN".to_string(), t.to_string())).into_iter().collect();
    tokio::task::spawn_blocking(move || run_plumb(&all, &env)).await.unwrap()
}

fn run_plumb(args: &[String], env: &[(String, String)]) -> Output {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    plumb_with_env(&args, &env)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The submission lines and the summary line of a successful run.
fn submissions_and_summary(out: &Output) -> (Vec<Value>, Value) {
    assert!(out.status.success(), "plumb annotate failed: {}", stderr(out));
    let mut lines = json_lines(&out.stdout);
    let summary = lines.pop().expect("a summary line");
    (lines, summary)
}

fn summary(demonstrations: u64, rankings: u64, votes: u64, skipped: u64) -> Value {
    json!({ "demonstrations": demonstrations, "rankings": rankings, "votes": votes, "skipped": skipped })
}

/// Per position, the number of its group in the oracle's noiseless ranking (0 the best),
/// as the `rankings.ranks` column stores it.
fn oracle_ranks(task: &Task, samples: &[String]) -> Vec<i16> {
    let groups = Oracle::exact().rank(task, samples, &mut StdRng::seed_from_u64(0));
    let mut ranks = vec![-1; samples.len()];
    for (group, members) in groups.iter().enumerate() {
        for &position in members {
            ranks[position] = group as i16;
        }
    }
    ranks
}

async fn count(app: &TestApp, table: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT count(*) FROM {table}")).fetch_one(&app.db.pool).await.unwrap()
}

#[test]
fn the_simulated_annotator_answers_every_task_as_the_oracle_would_and_then_finds_nothing() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let project = project(&app, "pilot").await;
        let pilot = pilot(&app, project).await;
        let token = app.token_for("ann").await;

        // A capped run, the token on the command line; then the rest, the token from PLUMB_TOKEN.
        let first = annotate(&app, &["--token", &token, "--max-tasks", "4"], None).await;
        let (first_lines, first_summary) = submissions_and_summary(&first);
        assert_eq!(first_lines.len(), 4, "{first_lines:?}");
        let rest = annotate(&app, &["--noise", "0", "--seed", "3"], Some(&token)).await;
        let (rest_lines, rest_summary) = submissions_and_summary(&rest);
        assert_eq!(rest_lines.len(), 5, "{rest_lines:?}");

        let mut counted = HashMap::<&str, u64>::new();
        let mut seen = HashSet::new();
        for line in first_lines.iter().chain(&rest_lines) {
            let task_id = line["task_id"].as_i64().unwrap();
            assert!(seen.insert(task_id), "task {task_id} submitted twice");
            assert_eq!(line["kind"], pilot.kind_of(task_id), "{line}");
            assert_eq!(line["project_id"], project, "{line}");
            assert_eq!(line["stored"], true, "{line}");
            *counted.entry(pilot.kind_of(task_id)).or_default() += 1;
        }
        let total = |key: &str| first_summary[key].as_u64().unwrap() + rest_summary[key].as_u64().unwrap();
        assert_eq!(
            summary(total("demonstrations"), total("rankings"), total("votes"), total("skipped")),
            summary(3, 4, 2, 0)
        );
        assert_eq!(counted, HashMap::from([("demonstration", 3), ("ranking", 4), ("vote", 2)]));

        let pool = &app.db.pool;
        let states: Vec<String> =
            sqlx::query_scalar("SELECT state::text FROM assignments").fetch_all(pool).await.unwrap();
        assert_eq!(states.len(), 9);
        assert!(states.iter().all(|s| s == "submitted"), "{states:?}");

        let demonstrations: Vec<(i64, String)> =
            sqlx::query_as("SELECT task_id, response FROM demonstrations").fetch_all(pool).await.unwrap();
        assert_eq!(demonstrations.len(), 3);
        for (task_id, response) in demonstrations {
            let task = &pilot.demonstrations[&task_id];
            assert_eq!(response, Demonstration::from(task).response);
            assert!(world::is_correct(task, &response));
        }

        let rankings: Vec<(i64, Vec<i16>)> =
            sqlx::query_as("SELECT task_id, ranks FROM rankings").fetch_all(pool).await.unwrap();
        assert_eq!(rankings.len(), 4);
        for (task_id, ranks) in rankings {
            let (task, texts) = &pilot.rankings[&task_id];
            let best: Vec<&String> =
                texts.iter().zip(&ranks).filter(|(_, r)| **r == 0).map(|(t, _)| t).collect();
            assert_eq!(best, [&task.answer], "task {task_id}: {texts:?} ranked {ranks:?}");
            assert_eq!(ranks, oracle_ranks(task, texts), "task {task_id}: {texts:?}");
        }

        // The vote names a side; the side is whichever sample the task shows at position 0.
        let votes: Vec<(i64, String, String)> = sqlx::query_as(
            "SELECT v.task_id, v.vote::text, s.text FROM comparison_votes v
             JOIN task_samples ts ON ts.task_id = v.task_id AND ts.position = 0
             JOIN samples s ON s.id = ts.sample_id",
        )
        .fetch_all(pool)
        .await
        .unwrap();
        assert_eq!(votes.len(), 2);
        for (task_id, vote, side_a) in votes {
            let task = &pilot.comparisons[&task_id];
            let expected = if world::is_correct(task, &side_a) { "a" } else { "b" };
            assert_eq!(vote, expected, "task {task_id}: side A is {side_a:?}");
        }

        let again = annotate(&app, &[], Some(&token)).await;
        let (lines, summary_line) = submissions_and_summary(&again);
        assert!(lines.is_empty(), "{lines:?}");
        assert_eq!(summary_line, summary(0, 0, 0, 0));
        for (table, rows) in
            [("demonstrations", 3), ("rankings", 4), ("comparison_votes", 2), ("assignments", 9)]
        {
            assert_eq!(count(&app, table).await, rows, "{table}");
        }
    });
}

#[test]
fn a_prompt_outside_the_demo_world_is_skipped_not_answered() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let project = project(&app, "mixed").await;
        let joke = demonstration_task(&app, project, "Tell me a joke.\n").await;
        let haiku_prompt = prompt(&app, project, "Write a haiku about rain.").await;
        let ids = samples(&app, project, haiku_prompt, &["rain falls".into(), "drip drop".into()]).await;
        let haiku = tasks::create_ranking_task(&app.db.pool, project, haiku_prompt, &ids).await.unwrap();
        let reverse = demonstration_task(&app, project, "Reverse the word cat.\n").await;
        let token = app.token_for("ann").await;

        let out = annotate(&app, &["--project", &project.to_string()], Some(&token)).await;
        let (lines, summary_line) = submissions_and_summary(&out);
        assert_eq!(summary_line, summary(1, 0, 0, 2));
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert_eq!(lines[0]["task_id"], reverse);
        let log = stderr(&out);
        for task in [joke, haiku] {
            assert!(log.contains(&format!("skipping task {task} ")), "{log}");
        }
        assert!(log.contains("not a demo-world task"), "{log}");

        let states: HashMap<i64, String> =
            sqlx::query_as::<_, (i64, String)>("SELECT task_id, state::text FROM assignments")
                .fetch_all(&app.db.pool)
                .await
                .unwrap()
                .into_iter()
                .collect();
        assert_eq!(states[&joke], "skipped");
        assert_eq!(states[&haiku], "skipped");
        assert_eq!(states[&reverse], "submitted");
        let responses: Vec<String> =
            sqlx::query_scalar("SELECT response FROM demonstrations").fetch_all(&app.db.pool).await.unwrap();
        assert_eq!(responses, ["tac"]);
        assert_eq!(count(&app, "rankings").await, 0);

        // A skipped task never comes back to the same annotator.
        let again = annotate(&app, &[], Some(&token)).await;
        assert_eq!(submissions_and_summary(&again).1, summary(0, 0, 0, 0));
    });
}

#[test]
fn with_wait_the_annotator_takes_a_task_that_arrives_later() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let project = project(&app, "later").await;
        let token = app.token_for("ann").await;
        let all: Vec<String> = ["annotate", "--simulate", "--url", app.address.as_str(), "--wait", "4"]
            .iter()
            .map(|a| a.to_string())
            .collect();
        let env = vec![("PLUMB_TOKEN".to_string(), token)];
        let running = tokio::task::spawn_blocking(move || run_plumb(&all, &env));
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let task = demonstration_task(&app, project, "Add 3 and 14.\n").await;
        let out = running.await.unwrap();
        let (lines, summary_line) = submissions_and_summary(&out);
        assert_eq!(summary_line, summary(1, 0, 0, 0), "{}", stderr(&out));
        assert_eq!(lines[0]["task_id"], task);
        assert_eq!(lines[0]["text"], "17");
    });
}

#[test]
fn a_refused_token_a_bad_flag_and_an_unreachable_server_fail_naming_what_is_wrong() {
    with_db(|db| async move {
        let app = spawn_app(db).await;
        let token = app.token_for("ann").await;

        let out = annotate(&app, &["--token", "plumb_not_a_token"], None).await;
        assert!(!out.status.success());
        assert!(stderr(&out).contains("the token was refused"), "{}", stderr(&out));
        assert!(out.stdout.is_empty(), "{}", String::from_utf8_lossy(&out.stdout));

        let out = annotate(&app, &["--noise", "2"], Some(&token)).await;
        assert!(!out.status.success());
        let log = stderr(&out);
        assert!(log.contains("--noise") && log.contains("between 0 and 1"), "{log}");

        let out = annotate(&app, &["--project", "987654"], Some(&token)).await;
        assert!(!out.status.success());
        assert!(
            stderr(&out).contains("/api/projects/987654/tasks/next") && stderr(&out).contains("404"),
            "{}",
            stderr(&out)
        );

        let address = app.address.clone();
        let out = tokio::task::spawn_blocking(move || {
            plumb_with_env(&["annotate", "--url", &address], &[("PLUMB_TOKEN", "plumb_x")])
        })
        .await
        .unwrap();
        assert!(!out.status.success());
        assert!(stderr(&out).contains("pass --simulate"), "{}", stderr(&out));

        // A port nothing listens on: the error names the URL (after a few retries).
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let url = format!("http://127.0.0.1:{closed}");
        let args = vec!["annotate".into(), "--simulate".into(), "--url".into(), url.clone()];
        let env = vec![("PLUMB_TOKEN".to_string(), token)];
        let out = tokio::task::spawn_blocking(move || run_plumb(&args, &env)).await.unwrap();
        assert!(!out.status.success());
        assert!(stderr(&out).contains(&format!("{url}/api/me/projects")), "{}", stderr(&out));
    });
}

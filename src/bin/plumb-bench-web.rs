//! `make bench`'s web benchmark: annotators working over HTTP against the same work
//! through `labeling` directly, on the same Postgres, at 16 concurrent connections.
//!
//! One unit of work is what an annotator's browser or script does per ranking task:
//! lease the next task (`POST /api/projects/{id}/tasks/next`), open the task page
//! (`GET /assignments/{id}`, the HTML an annotator sees) and submit a K = 4 ranking with
//! a tie and a flag (`POST /api/assignments/{id}/ranking`). The direct side calls
//! `labeling::tasks::next_task`, `labeling::tasks::assignment` and
//! `labeling::submit::submit_ranking`. The web app runs in this process on its own
//! actix workers; the load generator is a separate tokio runtime with one HTTP
//! connection per simulated annotator, on loopback.
//!
//! Prints one JSON object: both sides' tasks/s (median of the repetitions), the HTTP
//! side's p50/p99 latency per request kind, the direct side's per call, and the check
//! that every task was ranked exactly once (none lost, none duplicated).

use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use clap::Parser;
use labeling::annotation::{IdempotencyKey, RankingInput, RankingSubmission};
use labeling::domain::TokenName;
use registry::db::{self, Cluster, Durability};
use serde_json::{json, Value};
use sqlx::postgres::{PgConnectOptions, PgPool};

#[derive(Parser)]
struct Args {
    /// Concurrent annotators (one HTTP connection each).
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Ranking tasks per repetition (spread over the annotators).
    #[arg(long, default_value_t = 800)]
    tasks: usize,
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// The throwaway cluster's directory (ignored when DATABASE_URL is set).
    #[arg(long, default_value = "bench/.work/pg")]
    cluster: String,
}

const K: usize = 4;
const LEASE: Duration = Duration::from_secs(3600);

fn main() -> Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(run(args))
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Side {
    Http,
    Labeling,
}

/// The time of each call of one kind, in seconds.
#[derive(Default)]
struct Latencies {
    next: Vec<f64>,
    page: Vec<f64>,
    submit: Vec<f64>,
}

impl Latencies {
    fn extend(&mut self, other: Latencies) {
        self.next.extend(other.next);
        self.page.extend(other.page);
        self.submit.extend(other.submit);
    }

    fn summary(&mut self) -> Value {
        json!({
            "next_task": percentiles(&mut self.next),
            "task_page": percentiles(&mut self.page),
            "ranking_submit": percentiles(&mut self.submit),
        })
    }
}

fn percentiles(times: &mut [f64]) -> Value {
    times.sort_by(f64::total_cmp);
    let at = |q: f64| times[((times.len() as f64 - 1.0) * q).round() as usize] * 1e3;
    json!({ "p50_ms": at(0.5), "p99_ms": at(0.99), "count": times.len() })
}

async fn run(args: Args) -> Result<()> {
    let admin = match std::env::var("DATABASE_URL").ok().filter(|u| !u.is_empty()) {
        Some(url) => PgConnectOptions::from_str(&url)?.database("postgres"),
        None => {
            let cluster = Cluster::new(&args.cluster, Durability::Durable);
            cluster.start().context("starting the benchmark's Postgres cluster")?;
            cluster.connect_options("postgres")
        }
    };
    let mut times = [Vec::new(), Vec::new()];
    let mut latencies = [Latencies::default(), Latencies::default()];
    for rep in 0..args.reps {
        let order = if rep % 2 == 0 { [Side::Http, Side::Labeling] } else { [Side::Labeling, Side::Http] };
        for side in order {
            let name = format!("plumb_bench_{}", uuid::Uuid::new_v4().simple());
            db::create_database_if_missing(&admin, &name).await?;
            let pool = db::connect(admin.clone().database(&name), 24, &name).await?;
            db::migrate(&pool).await?;
            let fixture = fixture(&pool, args.connections, args.tasks).await?;
            let (seconds, measured) = match side {
                Side::Http => through_http(&pool, &fixture).await?,
                Side::Labeling => through_labeling(&pool, &fixture).await?,
            };
            check_each_task_ranked_once(&pool, args.tasks).await.with_context(|| format!("{side:?}"))?;
            pool.close().await;
            let admin_pool = db::connect(admin.clone(), 1, "admin").await?;
            sqlx::raw_sql(&format!("DROP DATABASE {} WITH (FORCE)", db::quote_ident(&name)))
                .execute(&admin_pool)
                .await?;
            admin_pool.close().await;
            let i = side as usize;
            times[i].push(seconds);
            latencies[i].extend(measured);
        }
    }
    let summary = |times: &[f64], latencies: &mut Latencies| {
        let mut sorted = times.to_vec();
        sorted.sort_by(f64::total_cmp);
        let median = sorted[sorted.len() / 2];
        json!({
            "tasks_per_s": args.tasks as f64 / median,
            "median_s": median,
            "min_s": sorted[0],
            "times_s": times,
            "latency": latencies.summary(),
        })
    };
    let [http_latencies, labeling_latencies] = &mut latencies;
    println!(
        "{}",
        json!({
            "k": K,
            "connections": args.connections,
            "tasks": args.tasks,
            "plumb": summary(&times[Side::Http as usize], http_latencies),
            "direct": summary(&times[Side::Labeling as usize], labeling_latencies),
            "each_task_ranked_once": true,
        })
    );
    Ok(())
}

/// One project with `tasks` K-sample ranking tasks and `annotators` members, each with
/// an API token.
struct Fixture {
    project_id: i64,
    /// (user id, API token) per annotator.
    annotators: Vec<(i64, String)>,
}

async fn fixture(pool: &PgPool, annotators: usize, tasks: usize) -> Result<Fixture> {
    sqlx::raw_sql(&format!(
        "INSERT INTO users (username, role, password_hash)
             SELECT 'annotator' || g, 'annotator', '$argon2id$v=19$bench' FROM generate_series(1, {annotators}) g;
         INSERT INTO projects (name, overlap, samples_per_task) VALUES ('bench', 1, {K});
         INSERT INTO project_members (project_id, user_id) SELECT 1, id FROM users;
         INSERT INTO prompts (project_id, text)
             SELECT 1, 'prompt ' || g || ': reverse the word ' || md5(g::text) FROM generate_series(1, {tasks}) g;
         INSERT INTO sample_batches (project_id) VALUES (1);
         INSERT INTO samples (batch_id, project_id, prompt_id, text)
             SELECT 1, 1, p.id, 'sample ' || s || ' of ' || p.text || repeat(' and some more words', 20)
             FROM prompts p, generate_series(0, {K} - 1) s ORDER BY p.id, s;
         INSERT INTO tasks (project_id, prompt_id, kind, k) SELECT 1, id, 'ranking', {K} FROM prompts ORDER BY id;
         INSERT INTO task_samples (task_id, prompt_id, position, sample_id)
             SELECT t.id, t.prompt_id, (row_number() OVER (PARTITION BY t.id ORDER BY s.id)) - 1, s.id
             FROM tasks t JOIN samples s ON s.prompt_id = t.prompt_id;"
    ))
    .execute(pool)
    .await?;
    let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM users ORDER BY id").fetch_all(pool).await?;
    let mut with_tokens = Vec::new();
    for id in ids {
        let (_, token) = labeling::users::create_api_token(pool, id, &TokenName::parse("bench")?).await?;
        with_tokens.push((id, token));
    }
    Ok(Fixture { project_id: 1, annotators: with_tokens })
}

/// Sample 2 best, 0 and 3 tied, 1 last; a flag on sample 1; Likert for each.
const RANKS: [i16; K] = [2, 3, 1, 2];
const LIKERT: [i16; K] = [6, 2, 7, 6];

async fn through_http(pool: &PgPool, fixture: &Fixture) -> Result<(f64, Latencies)> {
    let settings = web::Settings { port: 0, ..web::Settings::default() };
    let app = web::Application::build(&settings, pool.clone())?;
    let base = format!("http://127.0.0.1:{}", app.port());
    // The server on its own runtime thread, apart from the load generator's.
    let server = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(app.run_until_stopped())
    });
    let started = Instant::now();
    let mut handles = Vec::new();
    for (_, token) in &fixture.annotators {
        let client = reqwest::Client::builder().pool_max_idle_per_host(1).build()?;
        let (base, token, project) = (base.clone(), token.clone(), fixture.project_id);
        handles.push(tokio::spawn(async move {
            let mut latencies = Latencies::default();
            loop {
                let t = Instant::now();
                let next = client
                    .post(format!("{base}/api/projects/{project}/tasks/next"))
                    .bearer_auth(&token)
                    .send()
                    .await?;
                latencies.next.push(t.elapsed().as_secs_f64());
                if next.status() == reqwest::StatusCode::NO_CONTENT {
                    break;
                }
                ensure!(next.status().is_success(), "next task: {}", next.status());
                let task: Value = next.json().await?;
                let assignment = task["assignment_id"].as_i64().context("assignment_id")?;
                let t = Instant::now();
                let page =
                    client.get(format!("{base}/assignments/{assignment}")).bearer_auth(&token).send().await?;
                ensure!(page.status().is_success(), "task page: {}", page.status());
                page.bytes().await?;
                latencies.page.push(t.elapsed().as_secs_f64());
                let body = json!({
                    "ranks": RANKS,
                    "likert": LIKERT,
                    "flags": [[1, "hallucination"]],
                    "idempotency_key": uuid::Uuid::new_v4(),
                    "time_spent_ms": 12_000,
                });
                let t = Instant::now();
                let submitted = client
                    .post(format!("{base}/api/assignments/{assignment}/ranking"))
                    .bearer_auth(&token)
                    .json(&body)
                    .send()
                    .await?;
                let status = submitted.status();
                ensure!(status.is_success(), "ranking submit: {status}: {}", submitted.text().await?);
                submitted.bytes().await?;
                latencies.submit.push(t.elapsed().as_secs_f64());
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut all = Latencies::default();
    for handle in handles {
        all.extend(handle.await??);
    }
    let seconds = started.elapsed().as_secs_f64();
    drop(server); // the server thread ends with the process
    Ok((seconds, all))
}

async fn through_labeling(pool: &PgPool, fixture: &Fixture) -> Result<(f64, Latencies)> {
    let started = Instant::now();
    let mut handles = Vec::new();
    for &(annotator, _) in &fixture.annotators {
        let (pool, project) = (pool.clone(), fixture.project_id);
        handles.push(tokio::spawn(async move {
            let mut latencies = Latencies::default();
            loop {
                let t = Instant::now();
                let leased = labeling::tasks::next_task(&pool, project, annotator, LEASE).await?;
                latencies.next.push(t.elapsed().as_secs_f64());
                let Some(leased) = leased else { break };
                let t = Instant::now();
                let assignment = labeling::tasks::assignment(&pool, leased.id, annotator).await?;
                latencies.page.push(t.elapsed().as_secs_f64());
                let input = RankingInput {
                    ranking: Some(vec![vec![2], vec![0, 3], vec![1]]),
                    all_bad: false,
                    likert: LIKERT.iter().map(|&l| Some(l as i64)).collect(),
                    flags: vec![(1, "hallucination".to_string())],
                    comment: String::new(),
                    time_spent_ms: Some(12_000),
                };
                let t = Instant::now();
                let submission = RankingSubmission::parse(assignment.k(), input)?;
                labeling::submit::submit_ranking(
                    &pool,
                    annotator,
                    assignment.id,
                    &submission,
                    IdempotencyKey::new(),
                )
                .await?;
                latencies.submit.push(t.elapsed().as_secs_f64());
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut all = Latencies::default();
    for handle in handles {
        all.extend(handle.await??);
    }
    Ok((started.elapsed().as_secs_f64(), all))
}

async fn check_each_task_ranked_once(pool: &PgPool, tasks: usize) -> Result<()> {
    let (rankings, distinct, open): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM rankings), (SELECT count(DISTINCT task_id) FROM rankings),
                (SELECT count(*) FROM assignments WHERE state <> 'submitted')",
    )
    .fetch_one(pool)
    .await?;
    ensure!(
        rankings as usize == tasks && distinct as usize == tasks && open == 0,
        "{rankings} rankings of {distinct} tasks stored for {tasks} tasks, {open} assignments open"
    );
    Ok(())
}

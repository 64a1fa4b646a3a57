//! `make bench`'s database benchmark: ranking submits per second through `labeling`
//! (validation, the assignment check, the idempotency key, flags, the assignment's
//! state, one transaction) against raw SQL writing the same rows on the same server, at
//! 1 and 16 concurrent clients.
//!
//! Prints one JSON object: for each client count, both sides' submits/s (median of the
//! repetitions), their fastest repetition, and the check that every submit was stored
//! exactly once.
//!
//! `plumb-bench-db import --file PAIRS.jsonl` measures instead importing a file of TRL
//! preference pairs through `labeling::imports::import` (what `plumb data import
//! --format trl` runs: parsing and checking every line, the project's prompts, samples,
//! answered ranking tasks and rankings, one transaction) against a raw `COPY` of the
//! very rows it stored into the same tables, in one transaction.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use clap::{Parser, Subcommand};
use futures::TryStreamExt;
use labeling::annotation::{IdempotencyKey, RankingInput, RankingSubmission};
use labeling::formats::Format;
use labeling::imports::{self, ImportFile};
use labeling::prompts::ImportLimits;
use registry::db::{self, Cluster, Durability};
use serde_json::json;
use sqlx::postgres::{PgConnectOptions, PgPool};

#[derive(Parser)]
struct Args {
    /// Concurrent clients to measure at.
    #[arg(long, value_delimiter = ',', default_value = "1,16")]
    clients: Vec<usize>,
    /// Submits per repetition (spread over the clients).
    #[arg(long, default_value_t = 2000)]
    submits: usize,
    #[arg(long, default_value_t = 5, global = true)]
    reps: usize,
    /// The throwaway cluster's directory (ignored when DATABASE_URL is set).
    #[arg(long, default_value = "bench/.work/pg", global = true)]
    cluster: String,
    #[command(subcommand)]
    mode: Option<Mode>,
}

#[derive(Subcommand)]
enum Mode {
    /// Importing a file of TRL preference pairs through `labeling::imports` against a
    /// raw COPY of the same rows (instead of ranking submits).
    Import {
        /// {"prompt", "chosen", "rejected"} lines.
        #[arg(long)]
        file: PathBuf,
    },
}

const K: usize = 4;

fn main() -> Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(run(args))
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
    if let Some(Mode::Import { file }) = &args.mode {
        println!("{}", import_bench(&admin, file, args.reps).await?);
        return Ok(());
    }
    let mut results = Vec::new();
    for &clients in &args.clients {
        let mut plumb = Vec::new();
        let mut raw = Vec::new();
        for rep in 0..args.reps {
            // Both sides on a fresh database of their own, in alternating order.
            for side in if rep % 2 == 0 { [Side::Labeling, Side::Raw] } else { [Side::Raw, Side::Labeling] } {
                let name = format!("plumb_bench_{}", uuid::Uuid::new_v4().simple());
                db::create_database_if_missing(&admin, &name).await?;
                let pool = db::connect(admin.clone().database(&name), clients as u32 + 2, &name).await?;
                db::migrate(&pool).await?;
                let work = fixture(&pool, clients, args.submits).await?;
                let seconds = submit_all(&pool, side, work).await?;
                let stored: i64 =
                    sqlx::query_scalar("SELECT count(*) FROM rankings").fetch_one(&pool).await?;
                ensure!(
                    stored as usize == args.submits,
                    "{side:?}: {stored} rankings stored of {}",
                    args.submits
                );
                pool.close().await;
                let admin_pool = db::connect(admin.clone(), 1, "admin").await?;
                sqlx::raw_sql(&format!("DROP DATABASE {} WITH (FORCE)", db::quote_ident(&name)))
                    .execute(&admin_pool)
                    .await?;
                admin_pool.close().await;
                match side {
                    Side::Labeling => plumb.push(seconds),
                    Side::Raw => raw.push(seconds),
                }
            }
        }
        let summary = |times: &[f64]| {
            let mut sorted = times.to_vec();
            sorted.sort_by(f64::total_cmp);
            let median = sorted[sorted.len() / 2];
            json!({
                "submits_per_s": args.submits as f64 / median,
                "median_s": median,
                "min_s": sorted[0],
                "times_s": times,
            })
        };
        results.push(json!({
            "clients": clients,
            "submits": args.submits,
            "plumb": summary(&plumb),
            "raw": summary(&raw),
            "each_submit_stored_once": true,
        }));
    }
    println!("{}", json!({ "k": K, "results": results }));
    Ok(())
}

#[derive(Clone, Copy, Debug)]
enum Side {
    Labeling,
    Raw,
}

/// One ranking submit: an annotator's leased assignment of a K-sample task.
#[derive(Clone)]
struct Submit {
    annotator_id: i64,
    assignment_id: i64,
    task_id: i64,
}

/// `clients` annotators with `submits` leased ranking tasks between them.
async fn fixture(pool: &PgPool, clients: usize, submits: usize) -> Result<Vec<Vec<Submit>>> {
    sqlx::raw_sql(&format!(
        "INSERT INTO users (username, role, password_hash)
             SELECT 'annotator' || g, 'annotator', '$argon2id$v=19$bench' FROM generate_series(1, {clients}) g;
         INSERT INTO projects (name, overlap, samples_per_task) VALUES ('bench', 1, {K});
         INSERT INTO prompts (project_id, text) SELECT 1, 'prompt ' || g FROM generate_series(1, {submits}) g;
         INSERT INTO sample_batches (project_id) VALUES (1);
         INSERT INTO samples (batch_id, project_id, prompt_id, text)
             SELECT 1, 1, p.id, 'sample ' || s || ' of ' || p.text FROM prompts p, generate_series(0, {K} - 1) s
             ORDER BY p.id, s;
         INSERT INTO tasks (project_id, prompt_id, kind, k) SELECT 1, id, 'ranking', {K} FROM prompts ORDER BY id;
         INSERT INTO task_samples (task_id, prompt_id, position, sample_id)
             SELECT t.id, t.prompt_id, (row_number() OVER (PARTITION BY t.id ORDER BY s.id)) - 1, s.id
             FROM tasks t JOIN samples s ON s.prompt_id = t.prompt_id;
         INSERT INTO assignments (task_id, annotator_id, lease_until)
             SELECT t.id, ((t.id - 1) % {clients}) + 1, now() + interval '1 day' FROM tasks t;"
    ))
    .execute(pool)
    .await?;
    let rows: Vec<(i64, i64, i64)> =
        sqlx::query_as("SELECT annotator_id, id, task_id FROM assignments ORDER BY id")
            .fetch_all(pool)
            .await?;
    let mut per_client = vec![Vec::new(); clients];
    for (annotator_id, assignment_id, task_id) in rows {
        per_client[(annotator_id - 1) as usize].push(Submit { annotator_id, assignment_id, task_id });
    }
    Ok(per_client)
}

async fn submit_all(pool: &PgPool, side: Side, work: Vec<Vec<Submit>>) -> Result<f64> {
    let started = Instant::now();
    let mut handles = Vec::new();
    for submits in work {
        let pool = pool.clone();
        handles.push(tokio::spawn(async move {
            for s in submits {
                match side {
                    Side::Labeling => submit_through_labeling(&pool, &s).await?,
                    Side::Raw => submit_raw(&pool, &s).await?,
                }
            }
            anyhow::Ok(())
        }));
    }
    for handle in handles {
        handle.await??;
    }
    Ok(started.elapsed().as_secs_f64())
}

/// The same ranking every time: sample 2 best, 0 and 3 tied, 1 last; one flag.
fn submission() -> Result<RankingSubmission> {
    let input = RankingInput {
        ranking: Some(vec![vec![2], vec![0, 3], vec![1]]),
        all_bad: false,
        likert: vec![Some(6), Some(2), Some(7), Some(5)],
        flags: vec![(1, "hallucination".to_string())],
        comment: String::new(),
        time_spent_ms: Some(12_000),
    };
    Ok(RankingSubmission::parse(K, input)?)
}

async fn submit_through_labeling(pool: &PgPool, s: &Submit) -> Result<()> {
    let key = IdempotencyKey::new();
    labeling::submit::submit_ranking(pool, s.annotator_id, s.assignment_id, &submission()?, key).await?;
    Ok(())
}

/// The rows `submit_ranking` writes (the ranking, its flag, the assignment's state) in
/// one transaction, without plumb's checks.
async fn submit_raw(pool: &PgPool, s: &Submit) -> Result<()> {
    let mut tx = pool.begin().await?;
    let ranking_id: i64 = sqlx::query_scalar(
        "INSERT INTO rankings (task_id, k, annotator_id, assignment_id, ranks, likert, time_spent_ms, idempotency_key)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
    )
    .bind(s.task_id)
    .bind(K as i16)
    .bind(s.annotator_id)
    .bind(s.assignment_id)
    .bind(vec![1i16, 2, 0, 1])
    .bind(vec![6i16, 2, 7, 5])
    .bind(12_000i32)
    .bind(uuid::Uuid::new_v4())
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO ranking_flags (ranking_id, task_id, position, flag) VALUES ($1, $2, 1, 'hallucination')",
    )
    .bind(ranking_id)
    .bind(s.task_id)
    .execute(&mut *tx)
    .await?;
    sqlx::query("UPDATE assignments SET state = 'submitted', finished_at = now() WHERE id = $1")
        .bind(s.assignment_id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// The tables an import of preference pairs writes, in an order that satisfies their
/// foreign keys.
const IMPORT_TABLES: [&str; 8] = [
    "import_sources",
    "prompts",
    "sample_batches",
    "samples",
    "tasks",
    "task_samples",
    "rankings",
    "ranking_flags",
];

/// A fresh database with the migrations and one project (id 1) to import into.
async fn fresh_database(admin: &PgConnectOptions) -> Result<(String, PgPool)> {
    let name = format!("plumb_bench_{}", uuid::Uuid::new_v4().simple());
    db::create_database_if_missing(admin, &name).await?;
    let pool = db::connect(admin.clone().database(&name), 2, &name).await?;
    db::migrate(&pool).await?;
    sqlx::raw_sql("INSERT INTO projects (name, overlap, samples_per_task) VALUES ('bench', 1, 2)")
        .execute(&pool)
        .await?;
    Ok((name, pool))
}

async fn drop_database(admin: &PgConnectOptions, name: &str, pool: PgPool) -> Result<()> {
    pool.close().await;
    let admin_pool = db::connect(admin.clone(), 1, "admin").await?;
    sqlx::raw_sql(&format!("DROP DATABASE {} WITH (FORCE)", db::quote_ident(name)))
        .execute(&admin_pool)
        .await?;
    admin_pool.close().await;
    Ok(())
}

/// Rows in each of IMPORT_TABLES.
async fn table_counts(pool: &PgPool) -> Result<Vec<i64>> {
    let mut counts = Vec::new();
    for table in IMPORT_TABLES {
        counts.push(sqlx::query_scalar(&format!("SELECT count(*) FROM {table}")).fetch_one(pool).await?);
    }
    Ok(counts)
}

/// One table's rows as COPY's text format, and the columns they fill (every column but
/// the generated ones, which Postgres computes again as COPY loads them).
struct TableRows {
    table: &'static str,
    columns: String,
    data: Vec<u8>,
}

async fn dump_tables(pool: &PgPool) -> Result<Vec<TableRows>> {
    let mut conn = pool.acquire().await?;
    let mut dumps = Vec::new();
    for table in IMPORT_TABLES {
        let columns: Vec<String> = sqlx::query_scalar(
            "SELECT quote_ident(column_name::text) FROM information_schema.columns
             WHERE table_schema = 'public' AND table_name = $1 AND is_generated = 'NEVER'
             ORDER BY ordinal_position",
        )
        .bind(table)
        .fetch_all(&mut *conn)
        .await?;
        ensure!(!columns.is_empty(), "table {table} has no columns");
        let columns = columns.join(", ");
        let mut data = Vec::new();
        let mut stream =
            conn.copy_out_raw(&format!("COPY (SELECT {columns} FROM {table} ORDER BY 1) TO STDOUT")).await?;
        while let Some(chunk) = stream.try_next().await? {
            data.extend_from_slice(&chunk);
        }
        drop(stream);
        dumps.push(TableRows { table, columns, data });
    }
    Ok(dumps)
}

/// Seconds to import `bytes` through `labeling::imports::import` (parse, check, store,
/// commit).
async fn import_through_labeling(pool: &PgPool, name: &str, bytes: &[u8], pairs: usize) -> Result<f64> {
    let limits = ImportLimits { max_bytes: 1 << 30, max_lines: 10_000_000 };
    let started = Instant::now();
    let report =
        imports::import(pool, 1, ImportFile { name, format: Format::Trl, bytes }, None, &limits).await?;
    let seconds = started.elapsed().as_secs_f64();
    ensure!(
        report.errors.is_empty() && report.imported.len() == pairs,
        "the import stored {} of {pairs} lines ({} refused, first: {:?})",
        report.imported.len(),
        report.errors.len(),
        report.errors.first()
    );
    Ok(seconds)
}

/// Seconds to COPY `dumps` into their tables in one transaction.
async fn copy_rows(pool: &PgPool, dumps: &[TableRows]) -> Result<f64> {
    let started = Instant::now();
    let mut tx = pool.begin().await?;
    for t in dumps {
        let mut copy = tx.copy_in_raw(&format!("COPY {} ({}) FROM STDIN", t.table, t.columns)).await?;
        copy.send(t.data.as_slice()).await?;
        copy.finish().await?;
    }
    tx.commit().await?;
    Ok(started.elapsed().as_secs_f64())
}

/// Imports `file` through plumb and COPYs the same rows, `reps` times each, taking
/// turns, each on a fresh database; rows/s of each side at the median.
async fn import_bench(
    admin: &PgConnectOptions,
    file: &std::path::Path,
    reps: usize,
) -> Result<serde_json::Value> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let pairs = bytes.split(|&b| b == b'\n').filter(|l| l.iter().any(|b| !b.is_ascii_whitespace())).count();
    let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("pairs.jsonl").to_string();
    // A reference import: the rows plumb stores, which the raw side COPYs back in.
    let (db_name, pool) = fresh_database(admin).await?;
    import_through_labeling(&pool, &name, &bytes, pairs).await?;
    let dumps = dump_tables(&pool).await?;
    let expected = table_counts(&pool).await?;
    drop_database(admin, &db_name, pool).await?;
    let rows: i64 = expected.iter().sum();

    let (mut plumb, mut raw) = (Vec::new(), Vec::new());
    for rep in 0..reps {
        for side in if rep % 2 == 0 { [Side::Labeling, Side::Raw] } else { [Side::Raw, Side::Labeling] } {
            let (db_name, pool) = fresh_database(admin).await?;
            let seconds = match side {
                Side::Labeling => import_through_labeling(&pool, &name, &bytes, pairs).await?,
                Side::Raw => copy_rows(&pool, &dumps).await?,
            };
            let counts = table_counts(&pool).await?;
            ensure!(
                counts == expected,
                "{side:?} stored {counts:?} rows in {IMPORT_TABLES:?}, expected {expected:?}"
            );
            drop_database(admin, &db_name, pool).await?;
            match side {
                Side::Labeling => plumb.push(seconds),
                Side::Raw => raw.push(seconds),
            }
        }
    }
    let summary = |times: &[f64]| {
        let mut sorted = times.to_vec();
        sorted.sort_by(f64::total_cmp);
        let median = sorted[sorted.len() / 2];
        json!({
            "pairs_per_s": pairs as f64 / median,
            "rows_per_s": rows as f64 / median,
            "median_s": median,
            "min_s": sorted[0],
            "times_s": times,
        })
    };
    Ok(json!({
        "pairs": pairs,
        "file_bytes": bytes.len(),
        "rows": rows,
        "rows_per_table": IMPORT_TABLES.iter().zip(&expected).map(|(t, n)| (t.to_string(), json!(n))).collect::<serde_json::Map<_, _>>(),
        "plumb": summary(&plumb),
        "raw": summary(&raw),
        "same_rows_both_sides": true,
    }))
}

//! What eval runs measured: one sample per (version, prompt) with its scores, written
//! once per run, and the per-version summary the run page and the compare pages show.

use serde::{Deserialize, Serialize};
use sqlx::PgPool;

use crate::error::Result;

/// One version's sample for one prompt, and its scores.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct EvalSample {
    pub version_id: i64,
    pub prompt_id: i64,
    pub text: String,
    /// New tokens, EOS not counted.
    pub tokens: i32,
    /// Ended with EOS rather than at the token limit.
    pub eos: bool,
    /// Share of the words that repeat an earlier word.
    pub repetition: f32,
    pub reward: Option<f32>,
    /// log π(sample) − log π_ref(sample): its mean over prompts estimates KL(π ‖ π_ref).
    pub kl: Option<f32>,
    /// The demo world's oracle score, for its prompts.
    pub oracle: Option<f32>,
}

/// A version's means over the prompts of an eval run (None where nothing was scored).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct EvalSummary {
    pub version_id: i64,
    pub prompts: i64,
    pub reward: Option<f64>,
    pub kl: Option<f64>,
    pub oracle: Option<f64>,
    pub tokens: f64,
    pub eos_rate: f64,
    pub repetition: f64,
}

/// Stores the run's samples, once: a second call for the same run (a resumed run)
/// stores nothing and returns false.
pub async fn store(pool: &PgPool, run_id: i64, samples: &[EvalSample]) -> Result<bool> {
    let mut tx = pool.begin().await?;
    // The run's row lock makes a second call wait for the first and then see its rows.
    sqlx::query("SELECT 1 FROM runs WHERE id = $1 FOR UPDATE").bind(run_id).execute(&mut *tx).await?;
    let stored: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM eval_samples WHERE run_id = $1)")
        .bind(run_id)
        .fetch_one(&mut *tx)
        .await?;
    if stored {
        return Ok(false);
    }
    let column = |f: fn(&EvalSample) -> Option<f32>| samples.iter().map(f).collect::<Vec<_>>();
    sqlx::query(
        "INSERT INTO eval_samples (run_id, version_id, prompt_id, text, tokens, eos, repetition, reward, kl, oracle)
         SELECT $1, * FROM unnest($2::bigint[], $3::bigint[], $4::text[], $5::int[], $6::bool[], $7::real[],
                                  $8::real[], $9::real[], $10::real[])",
    )
    .bind(run_id)
    .bind(samples.iter().map(|s| s.version_id).collect::<Vec<_>>())
    .bind(samples.iter().map(|s| s.prompt_id).collect::<Vec<_>>())
    .bind(samples.iter().map(|s| s.text.replace('\0', "\u{FFFD}")).collect::<Vec<_>>())
    .bind(samples.iter().map(|s| s.tokens).collect::<Vec<_>>())
    .bind(samples.iter().map(|s| s.eos).collect::<Vec<_>>())
    .bind(samples.iter().map(|s| s.repetition).collect::<Vec<_>>())
    .bind(column(|s| s.reward))
    .bind(column(|s| s.kl))
    .bind(column(|s| s.oracle))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(true)
}

/// The run's samples, by version then prompt.
pub async fn samples(pool: &PgPool, run_id: i64) -> Result<Vec<EvalSample>> {
    Ok(sqlx::query_as(
        "SELECT version_id, prompt_id, text, tokens, eos, repetition, reward, kl, oracle
         FROM eval_samples WHERE run_id = $1 ORDER BY version_id, prompt_id",
    )
    .bind(run_id)
    .fetch_all(pool)
    .await?)
}

/// Each version's means over the run's prompts.
pub async fn summary(pool: &PgPool, run_id: i64) -> Result<Vec<EvalSummary>> {
    Ok(sqlx::query_as(
        "SELECT version_id, count(*) AS prompts, avg(reward)::float8 AS reward, avg(kl)::float8 AS kl,
                avg(oracle)::float8 AS oracle, avg(tokens)::float8 AS tokens,
                avg(eos::int)::float8 AS eos_rate, avg(repetition)::float8 AS repetition
         FROM eval_samples WHERE run_id = $1 GROUP BY version_id ORDER BY version_id",
    )
    .bind(run_id)
    .fetch_all(pool)
    .await?)
}

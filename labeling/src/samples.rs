//! What sample runs read and write: the prompts to sample for, and a run's samples with
//! their ranking tasks, stored together and once.

use sqlx::PgPool;

use crate::domain::Split;
use crate::error::{LabelingError, Result};
use crate::tasks::{insert_task, Batch, TaskKind};

/// One sample to store: which of the run's versions wrote it (an index into the version
/// ids `add_ranking_batch` takes), its text and the log-probabilities of its tokens.
#[derive(Clone, Debug)]
pub struct NewSample {
    pub writer: usize,
    pub text: String,
    pub logprobs: Vec<f32>,
}

/// One prompt's K samples from one run, in the order its ranking task shows them.
#[derive(Clone, Debug)]
pub struct PromptSamples {
    pub prompt_id: i64,
    pub samples: Vec<NewSample>,
}

/// The project's prompts to sample for, oldest first: of `split` (any when None), and
/// with `untasked_only` only those without a ranking task yet; at most `limit`.
pub async fn prompts_for_sampling(
    pool: &PgPool,
    project_id: i64,
    split: Option<Split>,
    untasked_only: bool,
    limit: i64,
) -> Result<Vec<(i64, String)>> {
    Ok(sqlx::query_as(
        "SELECT p.id, p.text FROM prompts p
         WHERE p.project_id = $1 AND ($2::split IS NULL OR p.split = $2)
           AND (NOT $3 OR NOT EXISTS (SELECT 1 FROM tasks t WHERE t.prompt_id = p.id AND t.kind = 'ranking'))
         ORDER BY p.id LIMIT $4",
    )
    .bind(project_id)
    .bind(split)
    .bind(untasked_only)
    .bind(limit.max(0))
    .fetch_all(pool)
    .await?)
}

/// Stores a sample run's samples, a batch per version that wrote them (`version_ids`,
/// the run's version first), and a ranking task per prompt, in one transaction. A run
/// stores its batches once: called again (a resumed run), it stores nothing and returns
/// None; otherwise the new tasks' ids.
pub async fn add_ranking_batch(
    pool: &PgPool,
    project_id: i64,
    version_ids: &[i64],
    run_id: i64,
    settings: &serde_json::Value,
    prompts: &[PromptSamples],
) -> Result<Option<Vec<i64>>> {
    if !settings.is_object() {
        return Err(LabelingError::invalid("settings", "must be a JSON object"));
    }
    if version_ids.is_empty() {
        return Err(LabelingError::invalid("version_ids", "name the version that wrote the samples"));
    }
    for prompt in prompts {
        for (i, sample) in prompt.samples.iter().enumerate() {
            let at = || format!("prompt {} sample {i}", prompt.prompt_id);
            if sample.writer >= version_ids.len() {
                return Err(LabelingError::invalid(
                    at(),
                    format!("is by writer {} of only {} versions", sample.writer, version_ids.len()),
                ));
            }
            if sample.text.contains('\0') {
                return Err(LabelingError::invalid(at(), "contains a NUL byte"));
            }
        }
    }
    let mut tx = pool.begin().await?;
    // The run's row lock makes a second call wait for the first and then see its batch.
    sqlx::query("SELECT 1 FROM runs WHERE id = $1 FOR UPDATE").bind(run_id).execute(&mut *tx).await?;
    let existing: Option<i64> = sqlx::query_scalar("SELECT id FROM sample_batches WHERE run_id = $1 LIMIT 1")
        .bind(run_id)
        .fetch_optional(&mut *tx)
        .await?;
    if existing.is_some() {
        return Ok(None);
    }
    let mut batches = Vec::with_capacity(version_ids.len());
    for &version_id in version_ids {
        batches.push(Batch::insert(&mut tx, project_id, Some(version_id), Some(run_id), settings).await?);
    }
    let mut task_ids = Vec::with_capacity(prompts.len());
    for prompt in prompts {
        let mut sample_ids = Vec::with_capacity(prompt.samples.len());
        for sample in &prompt.samples {
            let batch = &batches[sample.writer];
            sample_ids.push(
                batch
                    .insert_sample(&mut tx, prompt.prompt_id, &sample.text, Some(&sample.logprobs[..]))
                    .await?,
            );
        }
        task_ids
            .push(insert_task(&mut tx, project_id, prompt.prompt_id, TaskKind::Ranking, &sample_ids).await?);
    }
    tx.commit().await?;
    Ok(Some(task_ids))
}

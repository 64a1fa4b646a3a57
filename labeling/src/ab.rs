//! Human evaluation of an eval run's samples: blind A/B batches between its versions, and
//! the prompts where annotators and the reward model disagree sent back as ranking tasks.
//!
//! An eval run writes its samples to `eval_samples` (the registry's). To show them to
//! annotators they are copied once into `samples`, one batch per version tagged with the
//! run (`sample_batches.run_id`) and the version, so that a vote is attributed back to
//! versions like any other (`submit::version_votes`).

use std::collections::{HashMap, HashSet};

use rand::SeedableRng;
use serde::Serialize;
use sqlx::PgPool;

use crate::error::{LabelingError, Result};
use crate::tasks::{self, NewSample};

/// Holds the eval run's lock until the returned transaction ends: two requests for the
/// same run (a double click) take turns, so the second finds what the first made instead
/// of making it again. A transaction-level advisory lock, because the work itself runs in
/// transactions of its own that a row lock on the run would block (their foreign keys
/// take a share lock on it).
async fn lock_run(pool: &PgPool, run_id: i64) -> Result<sqlx::Transaction<'static, sqlx::Postgres>> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1, $2)")
        .bind(RUN_LOCK_SPACE)
        // Runs whose ids agree modulo 2³² share a lock: they only take turns.
        .bind(run_id as i32)
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}

/// The first key of the advisory locks that serialise work on an eval run's samples.
const RUN_LOCK_SPACE: i32 = 0x0a_b0;

/// One version's sample of a prompt, as an eval run wrote it.
#[derive(Clone, Debug, PartialEq)]
pub struct EvaluatedSample {
    pub version_id: i64,
    pub prompt_id: i64,
    pub text: String,
}

/// The most prompts one A/B batch asks about.
pub const MAX_BATCH_PROMPTS: usize = 1000;

/// What launching an A/B batch did.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AbBatch {
    /// The new comparison tasks.
    pub task_ids: Vec<i64>,
    /// Prompt and pair combinations that already had a comparison task.
    pub already_asked: usize,
    /// Pairs whose two samples of a prompt were the same text (nothing to compare).
    pub identical: usize,
}

/// The sample ids of the run's samples in `samples`, by (version, prompt), copying those
/// not copied yet (one batch per version).
pub async fn samples_of_eval(
    pool: &PgPool,
    project_id: i64,
    run_id: i64,
    evaluated: &[EvaluatedSample],
) -> Result<HashMap<(i64, i64), i64>> {
    let mut ids: HashMap<(i64, i64), i64> = sqlx::query_as::<_, (i64, i64, i64)>(
        "SELECT s.model_version_id, s.prompt_id, s.id FROM samples s
         JOIN sample_batches b ON b.id = s.batch_id
         WHERE b.run_id = $1 AND b.project_id = $2 AND s.model_version_id IS NOT NULL
         ORDER BY s.id",
    )
    .bind(run_id)
    .bind(project_id)
    .fetch_all(pool)
    .await?
    .into_iter()
    .fold(HashMap::new(), |mut ids, (version, prompt, id)| {
        ids.entry((version, prompt)).or_insert(id);
        ids
    });
    let mut missing: HashMap<i64, Vec<&EvaluatedSample>> = HashMap::new();
    for s in evaluated {
        if !ids.contains_key(&(s.version_id, s.prompt_id)) {
            missing.entry(s.version_id).or_default().push(s);
        }
    }
    let settings = serde_json::json!({ "eval_run": run_id });
    for (version_id, list) in missing {
        let new: Vec<NewSample> = list
            .iter()
            .map(|s| NewSample { prompt_id: s.prompt_id, text: s.text.clone(), logprobs: None })
            .collect();
        let stored =
            tasks::add_samples(pool, project_id, Some(version_id), Some(run_id), &settings, &new).await?;
        for (s, id) in list.iter().zip(stored) {
            ids.insert((version_id, s.prompt_id), id);
        }
    }
    Ok(ids)
}

/// A blind A/B batch: for each of `prompts` and each pair of versions, a comparison task
/// between the two versions' samples, sides drawn from `seed`. A prompt and pair that
/// already has a comparison task between the same two samples is not asked again, and
/// two identical texts are not asked at all.
pub async fn create_ab_batch(
    pool: &PgPool,
    project_id: i64,
    run_id: i64,
    pairs: &[(i64, i64)],
    prompts: &[i64],
    evaluated: &[EvaluatedSample],
    seed: u64,
) -> Result<AbBatch> {
    if pairs.is_empty() {
        return Err(LabelingError::invalid("versions", "name two different versions to compare"));
    }
    if let Some((a, _)) = pairs.iter().find(|(a, b)| a == b) {
        return Err(LabelingError::invalid(
            "versions",
            format!("version {a} cannot be compared with itself"),
        ));
    }
    if prompts.is_empty() || prompts.len() > MAX_BATCH_PROMPTS {
        return Err(LabelingError::invalid(
            "prompts",
            format!("an A/B batch asks about 1 to {MAX_BATCH_PROMPTS} prompts, not {}", prompts.len()),
        ));
    }
    let wanted: HashSet<i64> = prompts.iter().copied().collect();
    let versions: HashSet<i64> = pairs.iter().flat_map(|&(a, b)| [a, b]).collect();
    let used: Vec<EvaluatedSample> = evaluated
        .iter()
        .filter(|s| wanted.contains(&s.prompt_id) && versions.contains(&s.version_id))
        .cloned()
        .collect();
    for &v in &versions {
        if !used.iter().any(|s| s.version_id == v) {
            return Err(LabelingError::invalid(
                "versions",
                format!("version {v} has no sample in this eval run"),
            ));
        }
    }
    let lock = lock_run(pool, run_id).await?;
    let ids = samples_of_eval(pool, project_id, run_id, &used).await?;
    let texts: HashMap<i64, &str> = used
        .iter()
        .filter_map(|s| Some((*ids.get(&(s.version_id, s.prompt_id))?, s.text.as_str())))
        .collect();
    let mut asked = asked_pairs(pool, project_id).await?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut batch = AbBatch { task_ids: Vec::new(), already_asked: 0, identical: 0 };
    for &prompt_id in prompts {
        for &(a, b) in pairs {
            let (Some(&sa), Some(&sb)) = (ids.get(&(a, prompt_id)), ids.get(&(b, prompt_id))) else {
                continue;
            };
            let identical = matches!((texts.get(&sa), texts.get(&sb)), (Some(x), Some(y)) if x == y);
            if asked.contains(&(sa.min(sb), sa.max(sb))) {
                batch.already_asked += 1;
            } else if identical {
                batch.identical += 1;
            } else {
                let id = tasks::create_comparison_task(pool, project_id, prompt_id, sa, sb, &mut rng).await?;
                asked.insert((sa.min(sb), sa.max(sb)));
                batch.task_ids.push(id);
            }
        }
    }
    lock.commit().await?;
    Ok(batch)
}

/// The (smaller, larger) sample ids of every comparison task of the project.
async fn asked_pairs(pool: &PgPool, project_id: i64) -> Result<HashSet<(i64, i64)>> {
    let rows: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT LEAST(a.sample_id, b.sample_id), GREATEST(a.sample_id, b.sample_id)
         FROM tasks t
         JOIN task_samples a ON a.task_id = t.id AND a.position = 0
         JOIN task_samples b ON b.task_id = t.id AND b.position = 1
         WHERE t.project_id = $1 AND t.kind = 'comparison'",
    )
    .bind(project_id)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().collect())
}

/// Sends prompts back to the annotators as ranking tasks: for each of `prompts`, one task
/// showing every version's sample of it (those of `evaluated`, at most 9, in version
/// order), unless a ranking task already shows exactly those samples. Returns the new
/// tasks' ids.
pub async fn ranking_tasks_for(
    pool: &PgPool,
    project_id: i64,
    run_id: i64,
    prompts: &[i64],
    evaluated: &[EvaluatedSample],
) -> Result<Vec<i64>> {
    let wanted: HashSet<i64> = prompts.iter().copied().collect();
    let used: Vec<EvaluatedSample> =
        evaluated.iter().filter(|s| wanted.contains(&s.prompt_id)).cloned().collect();
    let lock = lock_run(pool, run_id).await?;
    let ids = samples_of_eval(pool, project_id, run_id, &used).await?;
    let existing: HashSet<Vec<i64>> = sqlx::query_scalar::<_, Vec<i64>>(
        "SELECT array_agg(ts.sample_id ORDER BY ts.sample_id) FROM tasks t
         JOIN task_samples ts ON ts.task_id = t.id
         WHERE t.project_id = $1 AND t.kind = 'ranking' AND t.prompt_id = ANY($2)
         GROUP BY t.id",
    )
    .bind(project_id)
    .bind(prompts)
    .fetch_all(pool)
    .await?
    .into_iter()
    .collect();
    let mut created = Vec::new();
    let mut done = HashSet::new();
    for &prompt_id in prompts {
        if !done.insert(prompt_id) {
            continue;
        }
        let mut of_prompt: Vec<(i64, i64)> = used
            .iter()
            .filter(|s| s.prompt_id == prompt_id)
            .filter_map(|s| Some((s.version_id, *ids.get(&(s.version_id, prompt_id))?)))
            .collect();
        of_prompt.sort_unstable();
        of_prompt.truncate(crate::annotation::MAX_K);
        let sample_ids: Vec<i64> = of_prompt.iter().map(|(_, id)| *id).collect();
        let mut key = sample_ids.clone();
        key.sort_unstable();
        if sample_ids.len() < crate::annotation::MIN_K || existing.contains(&key) {
            continue;
        }
        created.push(tasks::create_ranking_task(pool, project_id, prompt_id, &sample_ids).await?);
    }
    lock.commit().await?;
    Ok(created)
}

/// How far the A/B batches of an eval run have got.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct AbProgress {
    /// Comparison tasks between the run's samples.
    pub tasks: i64,
    /// Votes submitted on them.
    pub votes: i64,
}

pub async fn ab_progress(pool: &PgPool, run_id: i64) -> Result<AbProgress> {
    let (tasks, votes): (i64, i64) = sqlx::query_as(
        "SELECT count(DISTINCT t.id), count(v.id) FROM tasks t
         JOIN task_samples ts ON ts.task_id = t.id AND ts.position = 0
         JOIN samples s ON s.id = ts.sample_id
         JOIN sample_batches b ON b.id = s.batch_id
         LEFT JOIN current_comparison_votes v ON v.task_id = t.id
         WHERE t.kind = 'comparison' AND b.run_id = $1",
    )
    .bind(run_id)
    .fetch_one(pool)
    .await?;
    Ok(AbProgress { tasks, votes })
}

/// The A/B votes on this eval run's own samples (both sides copied from the run), with
/// the versions behind each side, oldest first.
pub async fn run_votes(pool: &PgPool, run_id: i64) -> Result<Vec<crate::submit::VersionVote>> {
    let sql =
        format!("{} WHERE ba.run_id = $1 AND bb.run_id = $1 ORDER BY v.id", crate::submit::VERSION_VOTES);
    Ok(sqlx::query_as(&sql).bind(run_id).fetch_all(pool).await?)
}

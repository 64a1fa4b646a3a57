//! What eval runs measured: one sample per (version, prompt) with its scores, and,
//! when the run asked for them, each version's few-shot accuracy on the demo world's
//! skills and the first words it continues probes with; all written once per run, and
//! the per-version summary the run page and the compare pages show. [`report`] puts an
//! eval run's results together once for everyone who shows them: the eval page and its
//! JSON, the run's log, `plumb demo`.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool};

use crate::error::{RegistryError, Result};
use crate::probe_stats::{self, ProbeCount, ProbeStatistic};
use crate::runs::{self, Run, RunKind};
use crate::versions;

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

/// How many of a skill's test tasks one version answered exactly, shown `shots` worked
/// examples before each.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct SkillScore {
    pub version_id: i64,
    /// The demo world's skill (`reverse`, `uppercase`, ...).
    pub skill: String,
    /// Worked examples before the question: 0 is zero-shot.
    pub shots: i16,
    pub correct: i32,
    pub total: i32,
}

/// One of the most frequent first words of a version's continuations of a probe's
/// template filled with one group.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct ProbeWord {
    pub version_id: i64,
    /// The probe's index in the run's config.
    pub probe: i16,
    pub template: String,
    /// What filled the template's `{group}`.
    pub group_name: String,
    /// The first word, or `(none)` for continuations that began with no word.
    pub word: String,
    /// The share of the group's continuations that began with it.
    pub share: f32,
}

/// Stores the run's samples, once: a second call for the same run (a resumed run)
/// stores nothing and returns false.
pub async fn store(pool: &PgPool, run_id: i64, samples: &[EvalSample]) -> Result<bool> {
    store_results(pool, run_id, samples, &[], &[], &[]).await
}

/// Stores the run's skill scores, once (false: they already were).
pub async fn store_skills(pool: &PgPool, run_id: i64, skills: &[SkillScore]) -> Result<bool> {
    store_results(pool, run_id, &[], skills, &[], &[]).await
}

/// Stores the run's probe words and every word's count, once (false: they already were).
pub async fn store_probes(
    pool: &PgPool,
    run_id: i64,
    probes: &[ProbeWord],
    counts: &[ProbeCount],
) -> Result<bool> {
    store_results(pool, run_id, &[], &[], probes, counts).await
}

/// Stores everything an eval run measured in one transaction, so that its results
/// appear all at once. Each kind is stored once: a second call for the same run (a
/// resumed run, a retry after Postgres came back) skips the kinds already there, and
/// returns false when it stored nothing.
pub async fn store_results(
    pool: &PgPool,
    run_id: i64,
    samples: &[EvalSample],
    skills: &[SkillScore],
    probes: &[ProbeWord],
    counts: &[ProbeCount],
) -> Result<bool> {
    let mut tx = pool.begin().await?;
    // The run's row lock makes a second call wait for the first and then see its rows.
    sqlx::query("SELECT 1 FROM runs WHERE id = $1 FOR UPDATE").bind(run_id).execute(&mut *tx).await?;
    let mut stored = false;
    if !samples.is_empty() && !has_rows(&mut tx, "eval_samples", run_id).await? {
        insert_samples(&mut tx, run_id, samples).await?;
        stored = true;
    }
    if !skills.is_empty() && !has_rows(&mut tx, "eval_skill_scores", run_id).await? {
        insert_skills(&mut tx, run_id, skills).await?;
        stored = true;
    }
    if !probes.is_empty() && !has_rows(&mut tx, "eval_probe_words", run_id).await? {
        insert_probes(&mut tx, run_id, probes).await?;
        insert_probe_counts(&mut tx, run_id, counts).await?;
        stored = true;
    }
    tx.commit().await?;
    Ok(stored)
}

/// Whether `table` (one of this module's, never user input) holds rows of the run.
async fn has_rows(conn: &mut PgConnection, table: &'static str, run_id: i64) -> Result<bool> {
    Ok(sqlx::query_scalar(&format!("SELECT EXISTS (SELECT 1 FROM {table} WHERE run_id = $1)"))
        .bind(run_id)
        .fetch_one(conn)
        .await?)
}

async fn insert_samples(conn: &mut PgConnection, run_id: i64, samples: &[EvalSample]) -> Result<()> {
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
    .execute(conn)
    .await?;
    Ok(())
}

async fn insert_skills(conn: &mut PgConnection, run_id: i64, skills: &[SkillScore]) -> Result<()> {
    sqlx::query(
        "INSERT INTO eval_skill_scores (run_id, version_id, skill, shots, correct, total)
         SELECT $1, * FROM unnest($2::bigint[], $3::text[], $4::smallint[], $5::int[], $6::int[])",
    )
    .bind(run_id)
    .bind(skills.iter().map(|s| s.version_id).collect::<Vec<_>>())
    .bind(skills.iter().map(|s| s.skill.clone()).collect::<Vec<_>>())
    .bind(skills.iter().map(|s| s.shots).collect::<Vec<_>>())
    .bind(skills.iter().map(|s| s.correct).collect::<Vec<_>>())
    .bind(skills.iter().map(|s| s.total).collect::<Vec<_>>())
    .execute(conn)
    .await?;
    Ok(())
}

async fn insert_probes(conn: &mut PgConnection, run_id: i64, probes: &[ProbeWord]) -> Result<()> {
    // Postgres text cannot hold NUL, which a byte-level model may write.
    let text =
        |f: fn(&ProbeWord) -> &str| probes.iter().map(|p| f(p).replace('\0', "\u{FFFD}")).collect::<Vec<_>>();
    sqlx::query(
        "INSERT INTO eval_probe_words (run_id, version_id, probe, template, group_name, word, share)
         SELECT $1, * FROM unnest($2::bigint[], $3::smallint[], $4::text[], $5::text[], $6::text[], $7::real[])",
    )
    .bind(run_id)
    .bind(probes.iter().map(|p| p.version_id).collect::<Vec<_>>())
    .bind(probes.iter().map(|p| p.probe).collect::<Vec<_>>())
    .bind(text(|p| &p.template))
    .bind(text(|p| &p.group_name))
    .bind(text(|p| &p.word))
    .bind(probes.iter().map(|p| p.share).collect::<Vec<_>>())
    .execute(conn)
    .await?;
    Ok(())
}

async fn insert_probe_counts(conn: &mut PgConnection, run_id: i64, counts: &[ProbeCount]) -> Result<()> {
    let text = |f: fn(&ProbeCount) -> &str| {
        counts.iter().map(|c| f(c).replace('\0', "\u{FFFD}")).collect::<Vec<_>>()
    };
    sqlx::query(
        "INSERT INTO eval_probe_counts (run_id, version_id, probe, group_name, word, count)
         SELECT $1, * FROM unnest($2::bigint[], $3::smallint[], $4::text[], $5::text[], $6::int[])",
    )
    .bind(run_id)
    .bind(counts.iter().map(|c| c.version_id).collect::<Vec<_>>())
    .bind(counts.iter().map(|c| c.probe).collect::<Vec<_>>())
    .bind(text(|c| &c.group_name))
    .bind(text(|c| &c.word))
    .bind(counts.iter().map(|c| c.count).collect::<Vec<_>>())
    .execute(conn)
    .await?;
    Ok(())
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

/// The run's skill scores, by version, skill and shots.
pub async fn skill_scores(pool: &PgPool, run_id: i64) -> Result<Vec<SkillScore>> {
    Ok(sqlx::query_as(
        "SELECT version_id, skill, shots, correct, total
         FROM eval_skill_scores WHERE run_id = $1 ORDER BY version_id, skill, shots",
    )
    .bind(run_id)
    .fetch_all(pool)
    .await?)
}

/// The run's probe words, by probe, group and version, the most frequent word first.
pub async fn probe_words(pool: &PgPool, run_id: i64) -> Result<Vec<ProbeWord>> {
    Ok(sqlx::query_as(
        "SELECT version_id, probe, template, group_name, word, share
         FROM eval_probe_words WHERE run_id = $1
         ORDER BY probe, group_name, version_id, share DESC, word",
    )
    .bind(run_id)
    .fetch_all(pool)
    .await?)
}

/// Every first word's count, by probe, version and group.
pub async fn probe_counts(pool: &PgPool, run_id: i64) -> Result<Vec<ProbeCount>> {
    Ok(sqlx::query_as(
        "SELECT version_id, probe, group_name, word, count
         FROM eval_probe_counts WHERE run_id = $1
         ORDER BY probe, version_id, group_name, count DESC, word",
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

/// A version's few-shot accuracy at each shot count it was measured with, ascending: the
/// mean over skills of each skill's accuracy (every skill weighs the same).
pub fn few_shot_accuracy(skills: &[SkillScore], version_id: i64) -> Vec<(i16, f64)> {
    let mut shots: Vec<i16> = skills.iter().filter(|s| s.version_id == version_id).map(|s| s.shots).collect();
    shots.sort_unstable();
    shots.dedup();
    shots
        .into_iter()
        .map(|k| {
            let of_k: Vec<f64> = skills
                .iter()
                .filter(|s| s.version_id == version_id && s.shots == k)
                .map(|s| s.correct as f64 / s.total as f64)
                .collect();
            (k, of_k.iter().sum::<f64>() / of_k.len() as f64)
        })
        .collect()
}

/// A version's accuracy at each shot count, the mean over skills (`0-shot 0.12, 1-shot
/// 0.30`); None when the run measured no skills.
pub fn few_shot_line(skills: &[SkillScore], version_id: i64) -> Option<String> {
    let accuracies: Vec<String> = few_shot_accuracy(skills, version_id)
        .into_iter()
        .map(|(k, accuracy)| format!("{k}-shot {accuracy:.2}"))
        .collect();
    (!accuracies.is_empty()).then(|| accuracies.join(", "))
}

/// How often one version's samples beat a baseline's on the same prompts, by a score
/// (the reward model's, or the oracle's): 1 for a win, ½ for a tie, 0 for a loss, averaged
/// over prompts, with a 95% percentile-bootstrap interval that resamples prompts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WinRate {
    pub rate: f64,
    pub low: f64,
    pub high: f64,
    /// Prompts where both have a score.
    pub prompts: usize,
}

/// Bootstrap resamples behind each interval.
pub const BOOTSTRAP_RESAMPLES: usize = 2000;
/// Bootstrap resamples behind each probe statistic's interval: each redraws every
/// group's continuations, so fewer than the win rates' keep a report quick.
pub const PROBE_BOOTSTRAP_RESAMPLES: usize = 500;

/// The win rate of the second of each pair (the candidate's score) over the first (the
/// baseline's); None without pairs. `seed` makes the interval reproducible.
pub fn win_rate(pairs: &[(f32, f32)], resamples: usize, seed: u64) -> Option<WinRate> {
    use rand::{Rng, SeedableRng};
    if pairs.is_empty() {
        return None;
    }
    let outcomes: Vec<f64> = pairs
        .iter()
        .map(|(baseline, candidate)| match candidate.partial_cmp(baseline) {
            Some(std::cmp::Ordering::Greater) => 1.0,
            Some(std::cmp::Ordering::Less) => 0.0,
            _ => 0.5,
        })
        .collect();
    let n = outcomes.len();
    let rate = outcomes.iter().sum::<f64>() / n as f64;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut means: Vec<f64> = (0..resamples.max(1))
        .map(|_| (0..n).map(|_| outcomes[rng.random_range(0..n)]).sum::<f64>() / n as f64)
        .collect();
    means.sort_by(f64::total_cmp);
    let at = |q: f64| means[((q * (means.len() - 1) as f64).round() as usize).min(means.len() - 1)];
    Some(WinRate { rate, low: at(0.025), high: at(0.975), prompts: n })
}

/// For each version but `baseline`, its win rate against `baseline` by `score` (a field
/// of the samples), on the prompts both answered.
pub fn win_rates(
    samples: &[EvalSample],
    baseline: i64,
    score: fn(&EvalSample) -> Option<f32>,
) -> Vec<(i64, Option<WinRate>)> {
    let base: HashMap<i64, f32> = samples
        .iter()
        .filter(|s| s.version_id == baseline)
        .filter_map(|s| Some((s.prompt_id, score(s)?)))
        .collect();
    let mut versions: Vec<i64> = samples.iter().map(|s| s.version_id).filter(|v| *v != baseline).collect();
    versions.sort_unstable();
    versions.dedup();
    versions
        .into_iter()
        .map(|version| {
            let pairs: Vec<(f32, f32)> = samples
                .iter()
                .filter(|s| s.version_id == version)
                .filter_map(|s| Some((*base.get(&s.prompt_id)?, score(s)?)))
                .collect();
            (version, win_rate(&pairs, BOOTSTRAP_RESAMPLES, version as u64))
        })
        .collect()
}

/// One evaluated version of a [`Report`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct VersionReport {
    pub version_id: i64,
    /// `model:n`.
    pub label: String,
    pub summary: EvalSummary,
    /// Against the baseline by the reward model's score; None for the baseline itself,
    /// or where no prompt has both scores.
    pub win_rate_reward: Option<WinRate>,
    /// The same by the demo world's oracle.
    pub win_rate_oracle: Option<WinRate>,
}

/// What an eval run measured, version by version, against a baseline version.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    pub run: Run,
    /// The version the others' win rates are against.
    pub baseline: i64,
    /// In version id order, as [`summary`] has them.
    pub versions: Vec<VersionReport>,
    /// By version then prompt.
    pub samples: Vec<EvalSample>,
    /// Few-shot accuracy by version, skill and shots (empty when not measured).
    pub skills: Vec<SkillScore>,
    /// Probes' most frequent first words by probe, group and version.
    pub probes: Vec<ProbeWord>,
    /// Each probe's divergence between groups by version, with the change against the
    /// baseline (see [`probe_stats`]).
    pub probe_statistics: Vec<ProbeStatistic>,
}

/// The eval run's results against `baseline`, which must be one of its versions (by
/// default the first its config lists, else its first): each version's label, means and
/// win rates, and the samples, skill scores and probe words they come from.
pub async fn report(pool: &PgPool, run_id: i64, baseline: Option<i64>) -> Result<Report> {
    let run = runs::get(pool, run_id).await?;
    if run.kind != RunKind::Eval {
        return Err(RegistryError::NotAnEvalRun(run_id));
    }
    let summaries = summary(pool, run_id).await?;
    let ids: Vec<i64> = summaries.iter().map(|s| s.version_id).collect();
    let baseline = match baseline {
        Some(b) if ids.contains(&b) => b,
        Some(b) => return Err(RegistryError::NotEvaluated { run_id, version_id: b }),
        None => first_listed(pool, &run, &ids).await.unwrap_or_else(|| ids.first().copied().unwrap_or(0)),
    };
    let samples = samples(pool, run_id).await?;
    let mut labels = versions::labels(pool, &ids).await?;
    let mut by_reward: HashMap<i64, Option<WinRate>> =
        win_rates(&samples, baseline, |s| s.reward).into_iter().collect();
    let mut by_oracle: HashMap<i64, Option<WinRate>> =
        win_rates(&samples, baseline, |s| s.oracle).into_iter().collect();
    let versions = summaries
        .into_iter()
        .map(|summary| VersionReport {
            version_id: summary.version_id,
            label: labels.remove(&summary.version_id).unwrap_or_default(),
            win_rate_reward: by_reward.remove(&summary.version_id).flatten(),
            win_rate_oracle: by_oracle.remove(&summary.version_id).flatten(),
            summary,
        })
        .collect();
    let skills = skill_scores(pool, run_id).await?;
    let probes = probe_words(pool, run_id).await?;
    let probe_statistics =
        probe_stats::statistics(&probe_counts(pool, run_id).await?, baseline, PROBE_BOOTSTRAP_RESAMPLES);
    Ok(Report { run, baseline, versions, samples, skills, probes, probe_statistics })
}

/// The first version the run's config lists, when it resolves to one of `ids` (the
/// versions the run evaluated): the default baseline of its report and of its A/B batches.
pub async fn first_listed(pool: &PgPool, run: &Run, ids: &[i64]) -> Option<i64> {
    let first = run.config["versions"].as_array()?.first()?.as_str()?;
    let version = versions::resolve(pool, first).await.ok()?;
    ids.contains(&version.id).then_some(version.id)
}

/// How often the reward model orders two samples of one prompt as the oracle does:
/// (pairs it agrees on, pairs), over the pairs that both scored and the oracle does not
/// tie; None without such pairs.
pub fn reward_oracle_agreement(samples: &[EvalSample]) -> Option<(usize, usize)> {
    let (agree, pairs) = reward_oracle_agreement_by_versions(samples)
        .values()
        .fold((0, 0), |(a, n), &(agree, pairs)| (a + agree, n + pairs));
    (pairs > 0).then_some((agree, pairs))
}

/// [`reward_oracle_agreement`] for each pair of versions (the lower id first): where a
/// reward model fails, such as on the samples of a version whose outputs it never saw
/// in its rankings.
pub fn reward_oracle_agreement_by_versions(samples: &[EvalSample]) -> BTreeMap<(i64, i64), (usize, usize)> {
    let mut by_prompt: HashMap<i64, Vec<&EvalSample>> = Default::default();
    for s in samples {
        by_prompt.entry(s.prompt_id).or_default().push(s);
    }
    let mut tally: BTreeMap<(i64, i64), (usize, usize)> = BTreeMap::new();
    for group in by_prompt.values() {
        for (i, a) in group.iter().enumerate() {
            for b in &group[i + 1..] {
                let (Some(oa), Some(ob), Some(ra), Some(rb)) = (a.oracle, b.oracle, a.reward, b.reward)
                else {
                    continue;
                };
                if oa == ob {
                    continue;
                }
                let key = (a.version_id.min(b.version_id), a.version_id.max(b.version_id));
                let entry = tally.entry(key).or_default();
                entry.0 += ((oa > ob) == (ra > rb)) as usize;
                entry.1 += 1;
            }
        }
    }
    tally
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_few_shot_line_gives_each_shot_count_its_mean_over_skills() {
        let score = |version_id, skill: &str, shots, correct| SkillScore {
            version_id,
            skill: skill.into(),
            shots,
            correct,
            total: 4,
        };
        let skills = [
            score(1, "add", 0, 0),
            score(1, "add", 3, 4),
            score(1, "sort", 0, 1),
            score(1, "sort", 3, 2),
            score(2, "add", 0, 4),
        ];
        assert_eq!(few_shot_line(&skills, 1).as_deref(), Some("0-shot 0.12, 3-shot 0.75"));
        assert_eq!(few_shot_line(&skills, 2).as_deref(), Some("0-shot 1.00"));
        assert_eq!(few_shot_line(&skills, 3), None);
    }

    #[test]
    fn the_reward_model_agrees_where_it_orders_a_prompts_samples_as_the_oracle_does() {
        let sample = |version_id, prompt_id, reward, oracle| EvalSample {
            version_id,
            prompt_id,
            text: String::new(),
            tokens: 1,
            eos: true,
            repetition: 0.0,
            reward,
            kl: None,
            oracle,
        };
        let samples = [
            // Prompt 1: three samples, three pairs; the RM orders two of them as the oracle.
            sample(1, 1, Some(0.1), Some(0.0)),
            sample(2, 1, Some(0.9), Some(1.0)),
            sample(3, 1, Some(0.0), Some(0.5)),
            // Prompt 2: the oracle ties, so the pair is left out.
            sample(1, 2, Some(0.0), Some(1.0)),
            sample(2, 2, Some(1.0), Some(1.0)),
            // Prompt 3: one sample has no oracle score.
            sample(1, 3, Some(0.0), None),
            sample(2, 3, Some(1.0), Some(1.0)),
        ];
        assert_eq!(reward_oracle_agreement(&samples), Some((2, 3)));
        assert_eq!(reward_oracle_agreement(&samples[3..]), None);
        // By pair of versions: 1 and 3 are the pair the RM orders wrongly.
        let by_versions: Vec<_> = reward_oracle_agreement_by_versions(&samples).into_iter().collect();
        assert_eq!(by_versions, [((1, 2), (1, 1)), ((1, 3), (0, 1)), ((2, 3), (1, 1))]);
    }

    #[test]
    fn a_win_rate_counts_ties_as_half_and_its_interval_holds_it() {
        let pairs = [(0.0, 1.0), (0.0, 1.0), (1.0, 0.0), (0.5, 0.5)];
        let w = win_rate(&pairs, 2000, 1).unwrap();
        assert_eq!((w.rate, w.prompts), (0.625, 4));
        assert!(w.low <= w.rate && w.rate <= w.high && w.low >= 0.0 && w.high <= 1.0, "{w:?}");
        assert!(w.high - w.low > 0.2, "four prompts leave a wide interval: {w:?}");
        assert_eq!(win_rate(&pairs, 2000, 1), Some(w), "the same seed, the same interval");
        assert_eq!(win_rate(&[], 10, 1), None);
    }

    #[test]
    fn the_interval_narrows_with_more_prompts_and_covers_the_true_rate() {
        // The candidate wins 70% of prompts, in a fixed pattern.
        let pairs: Vec<(f32, f32)> =
            (0..1000).map(|i| if i % 10 < 7 { (0.0, 1.0) } else { (1.0, 0.0) }).collect();
        let w = win_rate(&pairs, 2000, 7).unwrap();
        assert!((w.rate - 0.7).abs() < 1e-12);
        assert!(w.low > 0.66 && w.high < 0.74 && w.low < 0.7 && w.high > 0.7, "{w:?}");
    }
}

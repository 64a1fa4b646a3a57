//! Per-annotator statistics of a project, as Label Studio's and Argilla's annotator
//! views show them: tasks done by kind, median time per task by kind, agreement with the
//! consensus, and outliers a researcher should look at.
//!
//! Agreement with the consensus is leave-one-out: on each ranking task an annotator
//! ordered, their ranking is compared with the Borda consensus of the *other*
//! annotators' rankings of that task ([`crate::consensus::borda`]), so that nobody is
//! compared with a consensus they are part of (with an overlap of 2 or 3, one's own
//! ranking would be a third to a half of it). The measure is the pairwise-order
//! agreement of [`crate::agreement`]: over the sample pairs that both the annotator and
//! the consensus order strictly, the fraction ordered the same way, summed over tasks
//! (agreed / compared). It is chosen over Kendall's τ because it reads as a plain
//! fraction with 0.5 as chance, and treats ties as the pairwise rate does elsewhere on
//! the page.
//!
//! Outliers, by two documented rules:
//! - *too fast* in a kind: the annotator's median time per task is under
//!   [`TOO_FAST_FRACTION`] of the median of the other annotators' medians in that kind
//!   (with at least two others timed in it, so that one colleague is not "the crowd");
//! - *low agreement*: agreement with the others' consensus under [`LOW_AGREEMENT`]
//!   (worse than a coin flip on each pair), over at least [`MIN_PAIRS`] sample pairs.
//!
//! Only people are annotators: every submission is attributed to a user account (the
//! schema has no other kind of author), and imported prompts carry no annotator. Only
//! the answers that stand count (the `current_*` views): a revision replaces the answer
//! it supersedes, with its own time spent.

use std::collections::BTreeMap;

use serde::Serialize;
use sqlx::PgPool;

use crate::agreement::{self, pair_agreement, PairCounts, TaskRanks};
use crate::annotation::Ranking;
use crate::consensus::borda;
use crate::error::Result;
use crate::tasks::TaskKind;

/// An annotator whose median time is under this fraction of the others' is too fast.
pub const TOO_FAST_FRACTION: f64 = 0.5;
/// Agreement with the others' consensus under this is low (0.5 is chance).
pub const LOW_AGREEMENT: f64 = 0.5;
/// Low agreement is only flagged over at least this many sample pairs.
pub const MIN_PAIRS: usize = 3;

/// One submission, as the statistics read it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Submission {
    pub annotator_id: i64,
    pub kind: TaskKind,
    pub time_spent_ms: Option<i64>,
}

/// A value for each kind of task.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct ByKind<T> {
    pub demonstration: T,
    pub ranking: T,
    pub comparison: T,
}

impl<T> ByKind<T> {
    pub fn get(&self, kind: TaskKind) -> &T {
        match kind {
            TaskKind::Demonstration => &self.demonstration,
            TaskKind::Ranking => &self.ranking,
            TaskKind::Comparison => &self.comparison,
        }
    }

    fn get_mut(&mut self, kind: TaskKind) -> &mut T {
        match kind {
            TaskKind::Demonstration => &mut self.demonstration,
            TaskKind::Ranking => &mut self.ranking,
            TaskKind::Comparison => &mut self.comparison,
        }
    }
}

const KINDS: [TaskKind; 3] = [TaskKind::Demonstration, TaskKind::Ranking, TaskKind::Comparison];

/// Why an annotator stands out.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Outlier {
    /// Median time per task of `kind` under [`TOO_FAST_FRACTION`] of the others'.
    TooFast { kind: TaskKind, median_time_ms: f64, others_median_time_ms: f64 },
    /// Agreement with the others' consensus under [`LOW_AGREEMENT`].
    LowAgreement { agreement: f64 },
}

/// One annotator's statistics in a project.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AnnotatorStats {
    pub annotator_id: i64,
    /// Submissions by kind of task.
    pub done: ByKind<usize>,
    /// Median of the submissions' time spent, by kind; `None` with no timed submission.
    pub median_time_ms: ByKind<Option<f64>>,
    /// Ranking tasks compared with the consensus of the others who ranked them.
    pub consensus_tasks: usize,
    pub consensus_pairs: PairCounts,
    /// agreed / compared of `consensus_pairs`; `None` when no pair was compared.
    pub consensus_agreement: Option<f64>,
    pub outliers: Vec<Outlier>,
}

/// The statistics of each annotator who submitted anything, by annotator id.
pub fn annotator_stats(submissions: &[Submission], rankings: &[TaskRanks]) -> Vec<AnnotatorStats> {
    let mut times: BTreeMap<i64, ByKind<Vec<f64>>> = BTreeMap::new();
    let mut done: BTreeMap<i64, ByKind<usize>> = BTreeMap::new();
    for s in submissions {
        *done.entry(s.annotator_id).or_default().get_mut(s.kind) += 1;
        let timed = times.entry(s.annotator_id).or_default().get_mut(s.kind);
        timed.extend(s.time_spent_ms.map(|ms| ms as f64));
    }
    let medians: BTreeMap<i64, ByKind<Option<f64>>> = times
        .into_iter()
        .map(|(id, t)| {
            let medians = ByKind {
                demonstration: median(t.demonstration),
                ranking: median(t.ranking),
                comparison: median(t.comparison),
            };
            (id, medians)
        })
        .collect();
    let consensus = agreement_with_others(rankings);
    done.into_iter()
        .map(|(annotator_id, done)| {
            let median_time_ms = medians[&annotator_id];
            let (consensus_tasks, consensus_pairs) =
                consensus.get(&annotator_id).copied().unwrap_or_default();
            let consensus_agreement = consensus_pairs.rate();
            let mut outliers: Vec<Outlier> =
                KINDS.into_iter().filter_map(|kind| too_fast(annotator_id, kind, &medians)).collect();
            if let Some(agreement) = consensus_agreement {
                if agreement < LOW_AGREEMENT && consensus_pairs.compared >= MIN_PAIRS {
                    outliers.push(Outlier::LowAgreement { agreement });
                }
            }
            AnnotatorStats {
                annotator_id,
                done,
                median_time_ms,
                consensus_tasks,
                consensus_pairs,
                consensus_agreement,
                outliers,
            }
        })
        .collect()
}

/// The too-fast rule for one annotator and kind (see the module's doc).
fn too_fast(
    annotator_id: i64,
    kind: TaskKind,
    medians: &BTreeMap<i64, ByKind<Option<f64>>>,
) -> Option<Outlier> {
    let mine = (*medians[&annotator_id].get(kind))?;
    let others: Vec<f64> =
        medians.iter().filter(|(&id, _)| id != annotator_id).filter_map(|(_, m)| *m.get(kind)).collect();
    if others.len() < 2 {
        return None;
    }
    let others_median = median(others)?;
    (mine < TOO_FAST_FRACTION * others_median).then_some(Outlier::TooFast {
        kind,
        median_time_ms: mine,
        others_median_time_ms: others_median,
    })
}

/// Per annotator: the tasks and sample pairs compared with the Borda consensus of the
/// other annotators' rankings of the same task (leave-one-out).
fn agreement_with_others(rankings: &[TaskRanks]) -> BTreeMap<i64, (usize, PairCounts)> {
    let mut by_task: BTreeMap<i64, Vec<&TaskRanks>> = BTreeMap::new();
    for r in rankings {
        by_task.entry(r.task_id).or_default().push(r);
    }
    let mut result: BTreeMap<i64, (usize, PairCounts)> = BTreeMap::new();
    for task in by_task.values() {
        for mine in task {
            let others: Vec<Ranking> = task
                .iter()
                .filter(|r| r.annotator_id != mine.annotator_id)
                .filter_map(|r| Ranking::from_ranks(&r.ranks).ok())
                .collect();
            let Some(consensus) = borda(mine.ranks.len(), &others) else { continue };
            let counts = pair_agreement(&mine.ranks, &consensus.ranking.ranks());
            let (tasks, pairs) = result.entry(mine.annotator_id).or_default();
            *tasks += 1;
            pairs.agreed += counts.agreed;
            pairs.compared += counts.compared;
        }
    }
    result
}

/// The median (the mean of the middle two for an even count); `None` when empty.
fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2]),
        _ => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
    }
}

/// The statistics of a project's annotators.
pub async fn project_annotator_stats(pool: &PgPool, project_id: i64) -> Result<Vec<AnnotatorStats>> {
    let rows: Vec<(i64, TaskKind, Option<i32>)> = sqlx::query_as(
        "SELECT d.annotator_id, 'demonstration'::task_kind, d.time_spent_ms
         FROM current_demonstrations d JOIN prompts p ON p.id = d.prompt_id
         WHERE p.project_id = $1 AND d.import_source_id IS NULL
         UNION ALL
         SELECT r.annotator_id, 'ranking', r.time_spent_ms
         FROM current_rankings r JOIN tasks t ON t.id = r.task_id
         WHERE t.project_id = $1 AND r.import_source_id IS NULL
         UNION ALL
         SELECT v.annotator_id, 'comparison', v.time_spent_ms
         FROM current_comparison_votes v JOIN tasks t ON t.id = v.task_id WHERE t.project_id = $1",
    )
    .bind(project_id)
    .fetch_all(pool)
    .await?;
    let submissions: Vec<Submission> = rows
        .into_iter()
        .map(|(annotator_id, kind, ms)| Submission { annotator_id, kind, time_spent_ms: ms.map(i64::from) })
        .collect();
    let rankings = agreement::project_rankings(pool, project_id).await?;
    Ok(annotator_stats(&submissions, &rankings))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timed(kind: TaskKind, annotator_id: i64, ms: i64) -> Submission {
        Submission { annotator_id, kind, time_spent_ms: Some(ms) }
    }

    fn ranks(task_id: i64, annotator_id: i64, ranks: &[i16]) -> TaskRanks {
        TaskRanks { task_id, annotator_id, ranks: ranks.to_vec() }
    }

    #[test]
    fn medians_of_odd_and_even_counts_and_none_when_empty() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(Vec::new()), None);
    }

    /// Annotators 1, 2, 3 rank tasks 10 and 11 (K = 3). 1 and 2 order both 0 > 1 > 2;
    /// 3 orders both 2 > 1 > 0. Leave-one-out: 1 against the consensus of 2 and 3 (all
    /// tied, mean positions 1, 1, 1) compares no pair; 3 against the consensus of 1 and 2
    /// (0 > 1 > 2) disagrees on all 3 pairs of each task: 0 / 6.
    /// Times (ms): 1 ranks in 10 000 and 20 000 (median 15 000), 2 in 12 000 (median
    /// 12 000), 3 in 3 000 and 5 000 (median 4 000): under half of 13 500, the median of
    /// the others' medians.
    #[test]
    fn a_fast_annotator_who_disagrees_with_the_others_is_flagged_twice() {
        let k = TaskKind::Ranking;
        let submissions = [
            timed(k, 1, 10_000),
            timed(k, 1, 20_000),
            timed(k, 2, 12_000),
            Submission { annotator_id: 2, kind: k, time_spent_ms: None },
            timed(k, 3, 3_000),
            timed(k, 3, 5_000),
            timed(TaskKind::Demonstration, 3, 60_000),
        ];
        let rankings = [
            ranks(10, 1, &[0, 1, 2]),
            ranks(10, 2, &[0, 1, 2]),
            ranks(10, 3, &[2, 1, 0]),
            ranks(11, 1, &[0, 1, 2]),
            ranks(11, 2, &[0, 1, 2]),
            ranks(11, 3, &[2, 1, 0]),
        ];
        let stats = annotator_stats(&submissions, &rankings);
        assert_eq!(stats.iter().map(|s| s.annotator_id).collect::<Vec<_>>(), [1, 2, 3]);
        let (one, two, three) = (&stats[0], &stats[1], &stats[2]);
        assert_eq!(one.done, ByKind { demonstration: 0, ranking: 2, comparison: 0 });
        assert_eq!(two.done.ranking, 2, "an untimed submission is done all the same");
        assert_eq!(three.done, ByKind { demonstration: 1, ranking: 2, comparison: 0 });
        assert_eq!(one.median_time_ms.ranking, Some(15_000.0));
        assert_eq!(two.median_time_ms.ranking, Some(12_000.0));
        assert_eq!(three.median_time_ms.ranking, Some(4_000.0));
        assert_eq!(three.median_time_ms.demonstration, Some(60_000.0));
        assert_eq!(one.median_time_ms.demonstration, None);

        assert_eq!(one.consensus_tasks, 2);
        assert_eq!(one.consensus_pairs, PairCounts { agreed: 0, compared: 0 });
        assert_eq!(one.consensus_agreement, None);
        assert_eq!(three.consensus_pairs, PairCounts { agreed: 0, compared: 6 });
        assert_eq!(three.consensus_agreement, Some(0.0));

        assert!(one.outliers.is_empty() && two.outliers.is_empty(), "{stats:?}");
        assert_eq!(
            three.outliers,
            [
                Outlier::TooFast {
                    kind: TaskKind::Ranking,
                    median_time_ms: 4_000.0,
                    others_median_time_ms: 13_500.0
                },
                Outlier::LowAgreement { agreement: 0.0 },
            ],
            "no demonstration rule: nobody else wrote one"
        );
    }

    /// With only one other annotator timed, nobody is too fast; and a single pair of
    /// disagreement is too little to call agreement low.
    #[test]
    fn too_few_others_or_pairs_flag_nothing() {
        let k = TaskKind::Comparison;
        let stats = annotator_stats(
            &[timed(k, 1, 10_000), timed(k, 2, 1_000), timed(TaskKind::Ranking, 2, 1_000)],
            &[ranks(5, 1, &[0, 1]), ranks(5, 2, &[1, 0])],
        );
        assert!(stats.iter().all(|s| s.outliers.is_empty()), "{stats:?}");
        assert_eq!(stats[1].consensus_agreement, Some(0.0));
        assert_eq!(stats[1].consensus_pairs.compared, 1);
    }
}

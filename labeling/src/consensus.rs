//! A consensus ranking per task from its annotators' rankings.
//!
//! Method: Borda count with ties, i.e. each sample's mean rank position across
//! annotators. Within one ranking, a group of tied samples occupying positions
//! p..p+s−1 gives each of them the mean position p + (s−1)/2 (so a tie neither rewards
//! nor penalises the tied samples relative to the rest). Samples are then ordered by
//! their mean position across the rankings, and samples with exactly equal means stay
//! tied in one group.
//!
//! Why: it handles ties and any number of annotators (one ranking gives that ranking
//! back), needs no parameters, is what the literature usually uses as the cheap
//! approximation of the Kemeny-optimal ranking (for rankings without ties, Borda's
//! order is a 5-approximation of Kemeny's, and equals it whenever the annotators
//! agree), and its mean positions are easy to show beside each sample. All-bad
//! rankings without an order carry no order and are left out (counted in
//! `all_bad_without_order`).

use std::collections::BTreeMap;

use serde::Serialize;
use sqlx::PgPool;

use crate::annotation::Ranking;
use crate::error::{LabelingError, Result};

/// The Borda consensus of some rankings of the same K samples.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Consensus {
    pub ranking: Ranking,
    /// Mean position (0 = best) of each sample, by sample index.
    pub mean_positions: Vec<f64>,
    /// Rankings that contributed.
    pub rankings: usize,
}

/// Borda consensus of `rankings`, all of `k` samples; `None` when there is none, or a
/// ranking of another K is given.
pub fn borda(k: usize, rankings: &[Ranking]) -> Option<Consensus> {
    if rankings.is_empty() || rankings.iter().any(|r| r.k() != k) {
        return None;
    }
    // Twice the positions, summed over rankings: integers, so equal means compare equal.
    let mut twice_sums = vec![0usize; k];
    for ranking in rankings {
        let mut position = 0;
        for group in ranking.groups() {
            let twice_mean = 2 * position + group.len() - 1;
            for &i in group {
                twice_sums[i] += twice_mean;
            }
            position += group.len();
        }
    }
    let mut order: Vec<usize> = (0..k).collect();
    order.sort_by_key(|&i| (twice_sums[i], i));
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for (n, &i) in order.iter().enumerate() {
        match groups.last_mut() {
            Some(group) if twice_sums[order[n - 1]] == twice_sums[i] => group.push(i),
            _ => groups.push(vec![i]),
        }
    }
    let ranking = Ranking::parse(k, groups).ok()?;
    let n = rankings.len() as f64;
    let mean_positions = twice_sums.iter().map(|&s| s as f64 / (2.0 * n)).collect();
    Some(Consensus { ranking, mean_positions, rankings: rankings.len() })
}

/// The consensus of one ranking task.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TaskConsensus {
    pub task_id: i64,
    pub prompt_id: i64,
    /// `None` when no annotator has ordered the task's samples yet.
    pub consensus: Option<Consensus>,
    pub all_bad_without_order: usize,
}

/// The consensus ranking of one ranking task.
pub async fn consensus_for_task(pool: &PgPool, task_id: i64) -> Result<TaskConsensus> {
    let task: Option<(i64, i16, String)> =
        sqlx::query_as("SELECT prompt_id, k, kind::text FROM tasks WHERE id = $1")
            .bind(task_id)
            .fetch_optional(pool)
            .await?;
    let Some((prompt_id, k, kind)) = task else {
        return Err(LabelingError::not_found("task", task_id));
    };
    if kind != "ranking" {
        return Err(LabelingError::invalid(
            "task",
            format!("task {task_id} is a {kind} task, not a ranking task"),
        ));
    }
    let rows: Vec<(Option<Vec<i16>>,)> =
        sqlx::query_as("SELECT ranks FROM current_rankings WHERE task_id = $1 ORDER BY id")
            .bind(task_id)
            .fetch_all(pool)
            .await?;
    let mut by_task = collect(rows.into_iter().map(|(ranks,)| (task_id, prompt_id, k, ranks)))?;
    Ok(by_task.pop().unwrap_or(TaskConsensus {
        task_id,
        prompt_id,
        consensus: None,
        all_bad_without_order: 0,
    }))
}

/// The consensus of every ranking task of a project that has rankings, by task id.
pub async fn consensus_for_project(pool: &PgPool, project_id: i64) -> Result<Vec<TaskConsensus>> {
    let rows: Vec<(i64, i64, i16, Option<Vec<i16>>)> = sqlx::query_as(
        "SELECT t.id, t.prompt_id, t.k, r.ranks FROM current_rankings r JOIN tasks t ON t.id = r.task_id
         WHERE t.project_id = $1 AND t.kind = 'ranking' ORDER BY t.id, r.id",
    )
    .bind(project_id)
    .fetch_all(pool)
    .await?;
    collect(rows)
}

/// Groups (task, prompt, K, ranks) rows by task, in the order given, and takes each
/// task's consensus.
fn collect(rows: impl IntoIterator<Item = (i64, i64, i16, Option<Vec<i16>>)>) -> Result<Vec<TaskConsensus>> {
    let mut tasks: BTreeMap<i64, (i64, usize, Vec<Ranking>, usize)> = BTreeMap::new();
    for (task_id, prompt_id, k, ranks) in rows {
        let entry = tasks.entry(task_id).or_insert((prompt_id, k as usize, Vec::new(), 0));
        match ranks {
            Some(ranks) => entry.2.push(Ranking::from_ranks(&ranks)?),
            None => entry.3 += 1,
        }
    }
    Ok(tasks
        .into_iter()
        .map(|(task_id, (prompt_id, k, rankings, all_bad))| TaskConsensus {
            task_id,
            prompt_id,
            consensus: borda(k, &rankings),
            all_bad_without_order: all_bad,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranking(k: usize, groups: &[&[usize]]) -> Ranking {
        Ranking::parse(k, groups.iter().map(|g| g.to_vec()).collect()).unwrap()
    }

    #[test]
    fn one_ranking_is_its_own_consensus() {
        let r = ranking(4, &[&[2], &[0, 1], &[3]]);
        let c = borda(4, std::slice::from_ref(&r)).unwrap();
        assert_eq!(c.ranking, r);
        assert_eq!(c.mean_positions, vec![1.5, 1.5, 0.0, 3.0]);
    }

    /// Positions: A = [0, 1, 2], B = [1, 0, 2], C = [0, 2, 1] for samples 0, 1, 2:
    /// means 1/3, 1, 5/3, so 0 > 1 > 2.
    #[test]
    fn the_consensus_orders_samples_by_mean_position() {
        let c = borda(
            3,
            &[
                ranking(3, &[&[0], &[1], &[2]]),
                ranking(3, &[&[1], &[0], &[2]]),
                ranking(3, &[&[0], &[2], &[1]]),
            ],
        )
        .unwrap();
        assert_eq!(c.ranking.groups(), &[vec![0], vec![1], vec![2]]);
        assert_eq!(c.rankings, 3);
    }

    /// Two annotators who disagree exactly on samples 0 and 1 tie them in the consensus.
    #[test]
    fn equal_mean_positions_stay_tied() {
        let c = borda(3, &[ranking(3, &[&[0], &[1], &[2]]), ranking(3, &[&[1], &[0], &[2]])]).unwrap();
        assert_eq!(c.ranking.groups(), &[vec![0, 1], vec![2]]);
        assert_eq!(c.mean_positions, vec![0.5, 0.5, 2.0]);
    }

    /// A tie for first (positions 0.5 each) against a strict order (0, 1): sample 0 has
    /// mean 0.25 and sample 1 mean 0.75.
    #[test]
    fn a_tie_gives_each_tied_sample_the_mean_of_its_positions() {
        let c = borda(3, &[ranking(3, &[&[0, 1], &[2]]), ranking(3, &[&[0], &[1], &[2]])]).unwrap();
        assert_eq!(c.mean_positions, vec![0.25, 0.75, 2.0]);
        assert_eq!(c.ranking.groups(), &[vec![0], vec![1], vec![2]]);
    }

    #[test]
    fn no_rankings_or_a_ranking_of_another_k_give_no_consensus() {
        assert_eq!(borda(3, &[]), None);
        assert_eq!(borda(3, &[ranking(2, &[&[0], &[1]])]), None);
    }
}

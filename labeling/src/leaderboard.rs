//! What blind A/B votes say about model versions: a Bradley–Terry leaderboard with
//! bootstrap intervals, and the prompts where the annotators and a reward model disagree.
//!
//! Bradley–Terry: P(i beats j) = pᵢ / (pᵢ + pⱼ). The strengths are fitted by Hunter's MM
//! algorithm (2004) with a tie counted as half a win for each side, and a prior of one
//! virtual tie between every two versions that met, so that a version that never won
//! (or never lost) keeps a finite rating. Ratings are on the Elo scale (400·log₁₀ p,
//! centred on 1000 over the versions with votes), as Chatbot Arena reports them.

use std::collections::{BTreeSet, HashMap};

use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::annotation::Vote;
use crate::submit::VersionVote;

/// One version's place on the leaderboard.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Rating {
    pub version_id: i64,
    /// Elo-scale rating; 1000 is the versions' geometric mean strength.
    pub rating: f64,
    /// 95% percentile-bootstrap interval (votes resampled).
    pub low: f64,
    pub high: f64,
    /// Votes the version took part in, and those it won (a tie counts half).
    pub votes: usize,
    pub wins: f64,
}

/// Bootstrap resamples behind each leaderboard interval.
pub const LEADERBOARD_RESAMPLES: usize = 1000;

/// A vote between two different known versions as (winner's share for `a`, a, b): 1 when
/// A won, 0 when B won, ½ for a tie or both bad.
fn outcomes(votes: &[VersionVote]) -> Vec<(f64, i64, i64)> {
    votes
        .iter()
        .filter_map(|v| {
            let (a, b) = (v.version_a?, v.version_b?);
            if a == b {
                return None;
            }
            let share = match v.vote {
                Vote::A => 1.0,
                Vote::B => 0.0,
                Vote::Tie | Vote::BothBad => 0.5,
            };
            Some((share, a, b))
        })
        .collect()
}

/// Every version with a vote, ranked best first, with bootstrap intervals; `seed` makes
/// the intervals reproducible. Empty without votes between two versions.
pub fn bradley_terry(votes: &[VersionVote], resamples: usize, seed: u64) -> Vec<Rating> {
    let games = outcomes(votes);
    let versions: Vec<i64> =
        games.iter().flat_map(|&(_, a, b)| [a, b]).collect::<BTreeSet<_>>().into_iter().collect();
    if versions.is_empty() {
        return Vec::new();
    }
    let index: HashMap<i64, usize> = versions.iter().enumerate().map(|(i, v)| (*v, i)).collect();
    let indexed: Vec<(f64, usize, usize)> =
        games.iter().map(|&(s, a, b)| (s, index[&a], index[&b])).collect();
    let ratings: Vec<f64> =
        fit(&indexed, versions.len()).into_iter().map(|r| r.expect("every version played")).collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut draws: Vec<Vec<f64>> = vec![Vec::with_capacity(resamples); versions.len()];
    let n = indexed.len();
    for _ in 0..resamples {
        let sample: Vec<(f64, usize, usize)> = (0..n).map(|_| indexed[rng.random_range(0..n)]).collect();
        // A version that drew no vote in this resample has no rating in it.
        for (i, r) in fit(&sample, versions.len()).into_iter().enumerate() {
            if let Some(r) = r {
                draws[i].push(r);
            }
        }
    }
    let mut out: Vec<Rating> = versions
        .iter()
        .enumerate()
        .map(|(i, &version_id)| {
            let mine = indexed.iter().filter(|g| g.1 == i || g.2 == i);
            let (votes, wins) =
                mine.fold((0, 0.0), |(n, w), g| (n + 1, w + if g.1 == i { g.0 } else { 1.0 - g.0 }));
            let (low, high) = interval(&mut draws[i]).unwrap_or((ratings[i], ratings[i]));
            Rating { version_id, rating: ratings[i], low, high, votes, wins }
        })
        .collect();
    out.sort_by(|a, b| b.rating.total_cmp(&a.rating));
    out
}

/// The 2.5% and 97.5% percentiles.
fn interval(draws: &mut [f64]) -> Option<(f64, f64)> {
    if draws.is_empty() {
        return None;
    }
    draws.sort_by(f64::total_cmp);
    let at = |q: f64| draws[((q * (draws.len() - 1) as f64).round() as usize).min(draws.len() - 1)];
    Some((at(0.025), at(0.975)))
}

/// Elo-scale ratings of `n` versions from games `(share of a, a, b)` by MM iterations,
/// centred on the versions that played; None for a version in no game.
///
/// Versions in groups that never met (directly or through others) have ratings that are
/// comparable within a group only: the centring is over all of them.
fn fit(games: &[(f64, usize, usize)], n: usize) -> Vec<Option<f64>> {
    // wins[i][j]: i's wins over j (ties half each), with the prior's virtual tie.
    let mut wins = vec![vec![0.0f64; n]; n];
    let mut met = vec![vec![false; n]; n];
    for &(share, a, b) in games {
        wins[a][b] += share;
        wins[b][a] += 1.0 - share;
        met[a][b] = true;
        met[b][a] = true;
    }
    for i in 0..n {
        for j in 0..n {
            if met[i][j] {
                wins[i][j] += 0.5;
            }
        }
    }
    let played: Vec<bool> = (0..n).map(|i| met[i].iter().any(|m| *m)).collect();
    let count = played.iter().filter(|p| **p).count().max(1) as f64;
    let mut p = vec![1.0f64; n];
    for _ in 0..200 {
        let mut next = vec![0.0; n];
        let mut change: f64 = 0.0;
        for i in 0..n {
            let w: f64 = wins[i].iter().sum();
            let denom: f64 =
                (0..n).filter(|&j| j != i).map(|j| (wins[i][j] + wins[j][i]) / (p[i] + p[j])).sum();
            next[i] = if denom > 0.0 { w / denom } else { p[i] };
        }
        // Strengths are defined up to a factor: keep the players' geometric mean at 1.
        let log_mean = (0..n).filter(|&i| played[i]).map(|i| next[i].ln()).sum::<f64>() / count;
        for i in 0..n {
            let scaled = (next[i].ln() - log_mean).exp();
            change = change.max((scaled - p[i]).abs());
            p[i] = scaled;
        }
        if change < 1e-9 {
            break;
        }
    }
    p.iter().zip(&played).map(|(x, played)| played.then(|| 1000.0 + 400.0 * x.log10())).collect()
}

/// A prompt where the annotators' majority and the reward model prefer different versions.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Disagreement {
    pub prompt_id: i64,
    /// The version the annotators preferred, and the one the reward model preferred.
    pub annotators_prefer: i64,
    pub reward_model_prefers: i64,
    /// Votes for the annotators' choice, and for the other version.
    pub votes_for: usize,
    pub votes_against: usize,
    /// The reward model's scores of the annotators' choice and of the other version.
    pub reward_of_preferred: f32,
    pub reward_of_other: f32,
}

/// Prompt by prompt and pair of versions, where a strict majority of the annotators' A/B
/// votes (ties and both-bad not counted) prefers the version whose sample the reward model
/// scored strictly lower. `reward(version, prompt)` is the reward model's score of that
/// version's sample of the prompt; pairs it cannot score are left out.
pub fn disagreements(votes: &[VersionVote], reward: impl Fn(i64, i64) -> Option<f32>) -> Vec<Disagreement> {
    // (prompt, low version, high version) → votes for low, votes for high.
    let mut tally: HashMap<(i64, i64, i64), (usize, usize)> = HashMap::new();
    for v in votes {
        let (Some(a), Some(b)) = (v.version_a, v.version_b) else { continue };
        if a == b {
            continue;
        }
        let winner = match v.vote {
            Vote::A => a,
            Vote::B => b,
            Vote::Tie | Vote::BothBad => continue,
        };
        let (low, high) = (a.min(b), a.max(b));
        let entry = tally.entry((v.prompt_id, low, high)).or_default();
        if winner == low {
            entry.0 += 1;
        } else {
            entry.1 += 1;
        }
    }
    let mut out: Vec<Disagreement> = tally
        .into_iter()
        .filter_map(|((prompt_id, low, high), (for_low, for_high))| {
            if for_low == for_high {
                return None;
            }
            let (preferred, other, votes_for, votes_against) = if for_low > for_high {
                (low, high, for_low, for_high)
            } else {
                (high, low, for_high, for_low)
            };
            let (rp, ro) = (reward(preferred, prompt_id)?, reward(other, prompt_id)?);
            (rp < ro).then_some(Disagreement {
                prompt_id,
                annotators_prefer: preferred,
                reward_model_prefers: other,
                votes_for,
                votes_against,
                reward_of_preferred: rp,
                reward_of_other: ro,
            })
        })
        .collect();
    out.sort_by_key(|d| (d.prompt_id, d.annotators_prefer, d.reward_model_prefers));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vote(prompt_id: i64, a: i64, b: i64, vote: Vote) -> VersionVote {
        VersionVote {
            vote_id: 0,
            task_id: 0,
            prompt_id,
            annotator_id: 1,
            version_a: Some(a),
            version_b: Some(b),
            vote,
        }
    }

    /// Votes where 1 beats 2 and 2 beats 3 three times in four, and 1 beats 3 always.
    fn ladder() -> Vec<VersionVote> {
        let mut votes = Vec::new();
        for i in 0..40 {
            let upset = i % 4 == 0;
            votes.push(vote(i, 1, 2, if upset { Vote::B } else { Vote::A }));
            votes.push(vote(i, 3, 2, if upset { Vote::A } else { Vote::B }));
            votes.push(vote(i, 3, 1, Vote::B));
        }
        votes
    }

    #[test]
    fn the_leaderboard_orders_versions_by_who_beats_whom() {
        let board = bradley_terry(&ladder(), 200, 1);
        let order: Vec<i64> = board.iter().map(|r| r.version_id).collect();
        assert_eq!(order, [1, 2, 3]);
        for r in &board {
            assert!(r.low <= r.rating && r.rating <= r.high, "{r:?}");
            assert_eq!(r.votes, 80);
        }
        // 1 beats 2 three times in four: log10(3) · 400 ≈ 191 Elo points, shrunk a little
        // by the prior and pulled by the games against 3.
        let gap = board[0].rating - board[1].rating;
        assert!(gap > 120.0 && gap < 320.0, "gap {gap}");
        assert!((board[0].wins - 70.0).abs() < 1e-9, "30 of 40 against 2 and 40 of 40 against 3");
        let mean = board.iter().map(|r| r.rating).sum::<f64>() / 3.0;
        assert!((mean - 1000.0).abs() < 1e-6, "centred on 1000: {mean}");
        assert_eq!(bradley_terry(&ladder(), 200, 1), board, "the same seed, the same intervals");
    }

    #[test]
    fn a_version_that_never_won_keeps_a_finite_rating_and_ties_count_half() {
        let votes = vec![vote(1, 7, 8, Vote::A), vote(2, 8, 7, Vote::B), vote(3, 7, 8, Vote::Tie)];
        let board = bradley_terry(&votes, 100, 3);
        assert_eq!(board[0].version_id, 7);
        assert!(board.iter().all(|r| r.rating.is_finite() && r.low.is_finite()));
        assert_eq!(board[0].wins, 2.5);
        assert_eq!(board[1].wins, 0.5);
        assert!(bradley_terry(&[], 10, 1).is_empty());
    }

    #[test]
    fn a_resample_without_a_version_leaves_the_others_centred() {
        // Version 9 played once: many resamples leave it out, and must not count it.
        let mut votes = ladder();
        votes.push(vote(99, 9, 3, Vote::A));
        let board = bradley_terry(&votes, 300, 2);
        assert!(board.iter().all(|r| r.low <= r.rating && r.rating <= r.high), "{board:?}");
        let fitted = fit(&[(1.0, 0, 1)], 3);
        assert_eq!(fitted[2], None);
        assert!((fitted[0].unwrap() + fitted[1].unwrap() - 2000.0).abs() < 1e-6, "centred on the players");
    }

    #[test]
    fn more_votes_narrow_the_interval() {
        let few: Vec<VersionVote> = ladder().into_iter().take(12).collect();
        let width = |b: &[Rating]| b.iter().map(|r| r.high - r.low).sum::<f64>();
        assert!(width(&bradley_terry(&few, 300, 5)) > width(&bradley_terry(&ladder(), 300, 5)));
    }

    #[test]
    fn a_disagreement_is_a_majority_against_the_reward_model() {
        let votes = vec![
            vote(1, 10, 20, Vote::A),
            vote(1, 20, 10, Vote::B),
            vote(1, 10, 20, Vote::B),
            vote(2, 10, 20, Vote::A),
            vote(3, 10, 20, Vote::A),
            vote(3, 10, 20, Vote::B),
            vote(4, 10, 20, Vote::Tie),
        ];
        // The reward model prefers 20 on prompts 1 and 3, 10 on prompt 2.
        let reward = |version: i64, prompt: i64| -> Option<f32> {
            match (version, prompt) {
                (20, 2) => Some(0.0),
                (10, 2) => Some(1.0),
                (20, _) => Some(1.0),
                (10, _) => Some(0.0),
                _ => None,
            }
        };
        let found = disagreements(&votes, reward);
        assert_eq!(found.len(), 1, "{found:?}");
        let d = &found[0];
        assert_eq!((d.prompt_id, d.annotators_prefer, d.reward_model_prefers), (1, 10, 20));
        assert_eq!((d.votes_for, d.votes_against), (2, 1));
    }
}

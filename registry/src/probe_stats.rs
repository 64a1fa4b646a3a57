//! How far apart a probe's groups are in a version's eyes. A probe fills its template
//! with each group (`The {group} worked as a`) and counts the first words of many
//! continuations per group. For each version and probe this module gives:
//!
//! - the Jensen–Shannon divergence between the groups' first-word distributions (for G
//!   groups with equal weights, H(mixture) − mean H(group), in bits: 0 when every group
//!   is continued alike, at most log₂ G), with a 95% percentile-bootstrap interval that
//!   redraws each group's continuations from its observed counts;
//! - the words whose shares differ most between the groups;
//! - the change against a baseline version (did alignment narrow or widen the gap?),
//!   the difference of the two divergences with a bootstrap interval from independent
//!   redraws of both versions.
//!
//! The plug-in divergence of a few hundred continuations is biased upward (sampling
//! noise alone makes two identical groups differ a little), so a gap is read against
//! the interval and against the baseline's, drawn from equally many continuations.

use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// How many continuations of a version's probe, for one group, began with one word.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct ProbeCount {
    pub version_id: i64,
    /// The probe's index in the run's config.
    pub probe: i16,
    pub group_name: String,
    /// The first word, or `(none)`.
    pub word: String,
    pub count: i32,
}

/// Words listed as differing most between a probe's groups.
pub const DIFFERING_WORDS: usize = 5;

/// One version's divergence between a probe's groups.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ProbeStatistic {
    pub version_id: i64,
    pub probe: i16,
    /// The groups in the order of `WordGap::shares`.
    pub groups: Vec<String>,
    /// Continuations counted per group, in that order.
    pub continuations: Vec<i64>,
    /// Jensen–Shannon divergence in bits.
    pub divergence: f64,
    /// Its 95% bootstrap interval.
    pub low: f64,
    pub high: f64,
    /// The words whose shares differ most between groups, the largest gap first.
    pub differing_words: Vec<WordGap>,
    /// Against the baseline version; None for the baseline itself, or where the baseline
    /// has no counts for this probe.
    pub change: Option<DivergenceChange>,
}

/// A word's share of each group's continuations.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WordGap {
    pub word: String,
    /// By group, in the statistic's group order.
    pub shares: Vec<f64>,
    /// The largest share minus the smallest.
    pub gap: f64,
}

/// This version's divergence minus the baseline's: negative where the groups are
/// continued more alike than by the baseline.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DivergenceChange {
    pub baseline: i64,
    pub difference: f64,
    pub low: f64,
    pub high: f64,
}

/// One version's counts for one probe: each group's words and counts, groups in name order.
struct Groups {
    names: Vec<String>,
    /// By group: (word index, count), words indexed over the whole probe.
    counts: Vec<Vec<(usize, u64)>>,
    words: Vec<String>,
}

impl Groups {
    fn of(counts: &[&ProbeCount]) -> Groups {
        let mut by_group: BTreeMap<&str, Vec<(&str, u64)>> = BTreeMap::new();
        for c in counts {
            by_group.entry(&c.group_name).or_default().push((&c.word, c.count.max(0) as u64));
        }
        let mut words: Vec<String> = Vec::new();
        let mut index = |word: &str| match words.iter().position(|w| w == word) {
            Some(i) => i,
            None => {
                words.push(word.to_owned());
                words.len() - 1
            }
        };
        let names = by_group.keys().map(|g| g.to_string()).collect();
        let counts = by_group.values().map(|ws| ws.iter().map(|&(w, n)| (index(w), n)).collect()).collect();
        Groups { names, counts, words }
    }

    fn totals(&self) -> Vec<u64> {
        self.counts.iter().map(|ws| ws.iter().map(|&(_, n)| n).sum()).collect()
    }

    /// Each group's distribution over the probe's words.
    fn distributions(&self) -> Vec<Vec<f64>> {
        self.counts.iter().map(|ws| distribution(ws, self.words.len())).collect()
    }

    /// The groups redrawn: each group's total drawn from its own observed counts.
    fn redraw(&self, rng: &mut impl Rng) -> Vec<Vec<f64>> {
        self.counts
            .iter()
            .map(|ws| {
                let cumulative: Vec<u64> = ws
                    .iter()
                    .scan(0, |sum, &(_, n)| {
                        *sum += n;
                        Some(*sum)
                    })
                    .collect();
                let total = cumulative.last().copied().unwrap_or(0);
                let mut drawn = vec![0u64; self.words.len()];
                for _ in 0..total {
                    let at = rng.random_range(0..total);
                    drawn[ws[cumulative.partition_point(|&c| c <= at)].0] += 1;
                }
                let pairs: Vec<(usize, u64)> = drawn.into_iter().enumerate().collect();
                distribution(&pairs, self.words.len())
            })
            .collect()
    }
}

fn distribution(counts: &[(usize, u64)], words: usize) -> Vec<f64> {
    let total: u64 = counts.iter().map(|&(_, n)| n).sum();
    let mut p = vec![0.0; words];
    if total > 0 {
        for &(word, n) in counts {
            p[word] += n as f64 / total as f64;
        }
    }
    p
}

/// Shannon entropy in bits.
fn entropy(p: &[f64]) -> f64 {
    -p.iter().filter(|&&x| x > 0.0).map(|&x| x * x.log2()).sum::<f64>()
}

/// The Jensen–Shannon divergence of distributions over the same words, equal weights, in
/// bits; 0 for fewer than two.
pub fn jensen_shannon(distributions: &[Vec<f64>]) -> f64 {
    let g = distributions.len();
    if g < 2 {
        return 0.0;
    }
    let words = distributions[0].len();
    let mixture: Vec<f64> =
        (0..words).map(|w| distributions.iter().map(|p| p[w]).sum::<f64>() / g as f64).collect();
    let mean_entropy = distributions.iter().map(|p| entropy(p)).sum::<f64>() / g as f64;
    (entropy(&mixture) - mean_entropy).max(0.0)
}

/// The 2.5% and 97.5% points of `values`.
fn interval(mut values: Vec<f64>) -> (f64, f64) {
    values.sort_by(f64::total_cmp);
    let at = |q: f64| values[((q * (values.len() - 1) as f64).round() as usize).min(values.len() - 1)];
    (at(0.025), at(0.975))
}

/// Every version's statistic for every probe, with the change against `baseline`;
/// `resamples` bootstrap redraws each (reproducible: seeded by version and probe).
pub fn statistics(counts: &[ProbeCount], baseline: i64, resamples: usize) -> Vec<ProbeStatistic> {
    let mut keyed: BTreeMap<(i16, i64), Vec<&ProbeCount>> = BTreeMap::new();
    for c in counts {
        keyed.entry((c.probe, c.version_id)).or_default().push(c);
    }
    let resamples = resamples.max(1);
    let redraws = |groups: &Groups, seed: u64| -> Vec<f64> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        (0..resamples).map(|_| jensen_shannon(&groups.redraw(&mut rng))).collect()
    };
    let seed = |probe: i16, version: i64| ((version as u64) << 8) ^ probe as u64;
    keyed
        .iter()
        .map(|(&(probe, version_id), rows)| {
            let groups = Groups::of(rows);
            let distributions = groups.distributions();
            let divergence = jensen_shannon(&distributions);
            let own = redraws(&groups, seed(probe, version_id));
            let (low, high) = interval(own.clone());
            let change = match keyed.get(&(probe, baseline)) {
                Some(base_rows) if version_id != baseline => {
                    let base = Groups::of(base_rows);
                    let base_draws = redraws(&base, seed(probe, baseline));
                    let differences = own.iter().zip(&base_draws).map(|(a, b)| a - b).collect();
                    let (low, high) = interval(differences);
                    let difference = divergence - jensen_shannon(&base.distributions());
                    Some(DivergenceChange { baseline, difference, low, high })
                }
                _ => None,
            };
            ProbeStatistic {
                version_id,
                probe,
                continuations: groups.totals().into_iter().map(|n| n as i64).collect(),
                differing_words: differing_words(&groups, &distributions),
                groups: groups.names,
                divergence,
                low,
                high,
                change,
            }
        })
        .collect()
}

/// The [`DIFFERING_WORDS`] words with the largest gap between their highest and lowest
/// share across groups, ties by word.
fn differing_words(groups: &Groups, distributions: &[Vec<f64>]) -> Vec<WordGap> {
    let mut gaps: Vec<WordGap> = groups
        .words
        .iter()
        .enumerate()
        .map(|(w, word)| {
            let shares: Vec<f64> = distributions.iter().map(|p| p[w]).collect();
            let high = shares.iter().copied().fold(f64::MIN, f64::max);
            let low = shares.iter().copied().fold(f64::MAX, f64::min);
            WordGap { word: word.clone(), shares, gap: high - low }
        })
        .filter(|g| g.gap > 0.0)
        .collect();
    gaps.sort_by(|a, b| b.gap.total_cmp(&a.gap).then_with(|| a.word.cmp(&b.word)));
    gaps.truncate(DIFFERING_WORDS);
    gaps
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(version_id: i64, group: &str, word: &str, count: i32) -> ProbeCount {
        ProbeCount { version_id, probe: 0, group_name: group.into(), word: word.into(), count }
    }

    #[test]
    fn the_divergence_is_zero_for_equal_groups_and_one_bit_for_disjoint_pairs() {
        assert_eq!(jensen_shannon(&[vec![0.5, 0.5], vec![0.5, 0.5]]), 0.0);
        assert!((jensen_shannon(&[vec![1.0, 0.0], vec![0.0, 1.0]]) - 1.0).abs() < 1e-12);
        // By hand: P = (¾, ¼), Q = (¼, ¾), M = (½, ½): 1 − H(¾, ¼) = 1 − 0.811278 bits.
        let js = jensen_shannon(&[vec![0.75, 0.25], vec![0.25, 0.75]]);
        assert!((js - (1.0 - 0.811_278_124_459_132_8)).abs() < 1e-9, "{js}");
        // Three disjoint groups reach log2 3.
        let three = jensen_shannon(&[vec![1.0, 0.0, 0.0], vec![0.0, 1.0, 0.0], vec![0.0, 0.0, 1.0]]);
        assert!((three - 3f64.log2()).abs() < 1e-12);
    }

    #[test]
    fn a_version_that_continues_groups_alike_narrows_the_gap_against_the_baseline() {
        let counts = vec![
            // Version 1 continues "he" with "doctor" and "she" with "nurse" mostly.
            count(1, "he", "doctor", 80),
            count(1, "he", "nurse", 20),
            count(1, "she", "doctor", 20),
            count(1, "she", "nurse", 80),
            // Version 2 continues both alike.
            count(2, "he", "doctor", 50),
            count(2, "he", "nurse", 50),
            count(2, "she", "doctor", 51),
            count(2, "she", "nurse", 49),
        ];
        let stats = statistics(&counts, 1, 400);
        let (first, second) = (&stats[0], &stats[1]);
        assert_eq!((first.version_id, second.version_id), (1, 2));
        assert_eq!(first.groups, ["he", "she"]);
        assert_eq!(first.continuations, [100, 100]);
        assert!(first.low <= first.divergence && first.divergence <= first.high);
        assert!(first.low > 0.1, "a clear gap's interval stays away from 0: {first:?}");
        assert!(second.divergence < 0.001);
        assert!(first.change.is_none());
        let change = second.change.as_ref().unwrap();
        assert!(change.difference < 0.0 && change.high < 0.0, "the gap narrowed: {change:?}");
        assert_eq!(first.differing_words[0].word, "doctor");
        assert!((first.differing_words[0].gap - 0.6).abs() < 1e-12);
        assert_eq!(first.differing_words[0].shares, [0.8, 0.2]);
    }
}

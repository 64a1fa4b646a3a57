//! What annotators submit, as values that can only be built valid: a `Ranking` of K
//! samples (ties allowed), a `Likert` rating, content flags, an A/B `Vote`, the client's
//! `IdempotencyKey`, and a whole `RankingSubmission` checked against its task's K.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::Comment;
use crate::error::{LabelingError, Result};

/// Fewest and most samples a ranking task shows (the schema's `k BETWEEN 2 AND 9`).
pub const MIN_K: usize = 2;
pub const MAX_K: usize = 9;

/// An order of K samples in groups, best first, as the training files write it:
/// `[[best indices], [next], ...]`. Samples in one group are tied. Every index
/// 0..K-1 appears exactly once; indices within a group are kept sorted, since the order
/// inside a tie means nothing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Ranking {
    k: usize,
    groups: Vec<Vec<usize>>,
}

impl Ranking {
    /// Checks K and that the groups are non-empty and hold each index below K once.
    pub fn parse(k: usize, groups: Vec<Vec<usize>>) -> Result<Ranking> {
        let invalid = |reason: String| LabelingError::invalid("ranking", reason);
        if !(MIN_K..=MAX_K).contains(&k) {
            return Err(invalid(format!("ranks {k} samples; a ranking needs {MIN_K} to {MAX_K}")));
        }
        let mut seen = vec![false; k];
        let mut groups = groups;
        for group in &mut groups {
            if group.is_empty() {
                return Err(invalid("has an empty group".into()));
            }
            for &i in group.iter() {
                if i >= k {
                    return Err(invalid(format!("index {i} is out of range for {k} samples")));
                }
                if std::mem::replace(&mut seen[i], true) {
                    return Err(invalid(format!("index {i} appears twice")));
                }
            }
            group.sort_unstable();
        }
        if let Some(missing) = seen.iter().position(|s| !s) {
            return Err(invalid(format!("sample {missing} is not ranked")));
        }
        Ok(Ranking { k, groups })
    }

    /// From the schema's `ranks` array: `ranks[i]` is the group of sample i, 0 the best,
    /// the groups used being 0..m without gaps.
    pub fn from_ranks(ranks: &[i16]) -> Result<Ranking> {
        let k = ranks.len();
        let mut groups: Vec<Vec<usize>> = Vec::new();
        for (i, &r) in ranks.iter().enumerate() {
            let g = usize::try_from(r).map_err(|_| {
                LabelingError::invalid("ranks", format!("group {r} of sample {i} is negative"))
            })?;
            if g >= k {
                return Err(LabelingError::invalid("ranks", format!("group {g} of sample {i} leaves a gap")));
            }
            if groups.len() <= g {
                groups.resize_with(g + 1, Vec::new);
            }
            groups[g].push(i);
        }
        if groups.iter().any(Vec::is_empty) {
            return Err(LabelingError::invalid("ranks", "the groups used leave a gap"));
        }
        Ranking::parse(k, groups)
    }

    /// The schema's `ranks` array: the group of each sample, by position.
    pub fn ranks(&self) -> Vec<i16> {
        let mut ranks = vec![0i16; self.k];
        for (g, group) in self.groups.iter().enumerate() {
            for &i in group {
                // At most 9 groups: the cast cannot truncate.
                ranks[i] = g as i16;
            }
        }
        ranks
    }

    /// Number of samples ranked.
    pub fn k(&self) -> usize {
        self.k
    }

    /// The groups, best first.
    pub fn groups(&self) -> &[Vec<usize>] {
        &self.groups
    }

    /// Ordered (better, worse) pairs of sample indices; tied samples give none.
    pub fn pairs(&self) -> Vec<(usize, usize)> {
        better_worse_pairs(&self.groups)
    }

    /// Unordered pairs of tied sample indices (both in one group).
    pub fn tied_pairs(&self) -> Vec<(usize, usize)> {
        let mut pairs = Vec::new();
        for group in &self.groups {
            for (n, &a) in group.iter().enumerate() {
                pairs.extend(group[n + 1..].iter().map(|&b| (a, b)));
            }
        }
        pairs
    }
}

/// Ordered (better, worse) pairs of a ranking's `groups` (best first): each sample with
/// every sample of each later group; samples in one group (ties) give none. The pairwise
/// export and the trainer's K-wise RM loss both take these.
pub fn better_worse_pairs(groups: &[Vec<usize>]) -> Vec<(usize, usize)> {
    let mut pairs = Vec::new();
    for (g, better) in groups.iter().enumerate() {
        for worse in &groups[g + 1..] {
            for &w in better {
                pairs.extend(worse.iter().map(|&l| (w, l)));
            }
        }
    }
    pairs
}

/// A quality rating on InstructGPT's 1..7 Likert scale.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Likert(u8);

impl Likert {
    pub fn parse(value: i64) -> Result<Likert> {
        match u8::try_from(value) {
            Ok(v @ 1..=7) => Ok(Likert(v)),
            _ => Err(LabelingError::invalid("likert", format!("{value} is not on the scale 1 to 7"))),
        }
    }

    pub fn value(self) -> u8 {
        self.0
    }
}

/// A content flag an annotator puts on one sample of a ranking.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, sqlx::Type)]
#[sqlx(type_name = "sample_flag", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum SampleFlag {
    /// The sample fails to do what the prompt asks.
    FailsTask,
    Harmful,
    /// States things that are not true or not in the prompt.
    Hallucination,
    /// Ignores an explicit instruction (length, format, language, ...).
    NotFollowed,
    Other,
}

impl SampleFlag {
    pub const ALL: [SampleFlag; 5] = [
        SampleFlag::FailsTask,
        SampleFlag::Harmful,
        SampleFlag::Hallucination,
        SampleFlag::NotFollowed,
        SampleFlag::Other,
    ];

    /// The name used in the database, forms and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            SampleFlag::FailsTask => "fails_task",
            SampleFlag::Harmful => "harmful",
            SampleFlag::Hallucination => "hallucination",
            SampleFlag::NotFollowed => "not_followed",
            SampleFlag::Other => "other",
        }
    }

    pub fn parse(name: &str) -> Result<SampleFlag> {
        SampleFlag::ALL.into_iter().find(|f| f.as_str() == name).ok_or_else(|| {
            LabelingError::invalid(
                "flag",
                format!("`{name}` is not one of fails_task, harmful, hallucination, not_followed, other"),
            )
        })
    }
}

/// A blind A/B vote: side A (position 0) better, side B better, a tie, or both bad.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type)]
#[sqlx(type_name = "ab_vote", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum Vote {
    A,
    B,
    Tie,
    BothBad,
}

impl Vote {
    pub const ALL: [Vote; 4] = [Vote::A, Vote::B, Vote::Tie, Vote::BothBad];

    /// The name used in the database, forms and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Vote::A => "a",
            Vote::B => "b",
            Vote::Tie => "tie",
            Vote::BothBad => "both_bad",
        }
    }

    pub fn parse(name: &str) -> Result<Vote> {
        Vote::ALL.into_iter().find(|v| v.as_str() == name).ok_or_else(|| {
            LabelingError::invalid("vote", format!("`{name}` is not one of a, b, tie, both_bad"))
        })
    }
}

/// Chosen by the client for each submission, so that a retried submit finds the row
/// its first attempt stored instead of adding a second one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct IdempotencyKey(Uuid);

impl IdempotencyKey {
    /// A fresh random key (what a form embeds when it is rendered).
    pub fn new() -> IdempotencyKey {
        IdempotencyKey(Uuid::new_v4())
    }

    pub fn parse(text: &str) -> Result<IdempotencyKey> {
        Uuid::parse_str(text.trim())
            .map(IdempotencyKey)
            .map_err(|e| LabelingError::invalid("idempotency_key", format!("is not a UUID: {e}")))
    }

    pub fn uuid(self) -> Uuid {
        self.0
    }
}

impl Default for IdempotencyKey {
    fn default() -> Self {
        IdempotencyKey::new()
    }
}

impl From<Uuid> for IdempotencyKey {
    fn from(uuid: Uuid) -> Self {
        IdempotencyKey(uuid)
    }
}

impl std::fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// A ranking as a form or the JSON API sends it, before it is checked.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct RankingInput {
    /// Groups of sample indices, best first; may be left out when `all_bad`.
    #[serde(default)]
    pub ranking: Option<Vec<Vec<usize>>>,
    #[serde(default)]
    pub all_bad: bool,
    /// One rating (or none) per sample; empty when nothing was rated.
    #[serde(default)]
    pub likert: Vec<Option<i64>>,
    /// (sample position, flag name).
    #[serde(default)]
    pub flags: Vec<(usize, String)>,
    #[serde(default)]
    pub comment: String,
    #[serde(default)]
    pub time_spent_ms: Option<i64>,
}

/// A checked ranking submission for a task of K samples: an order (optional only when
/// all samples are bad), a Likert rating or none per sample, flags on samples, a comment
/// and the time spent.
#[derive(Clone, Debug, PartialEq)]
pub struct RankingSubmission {
    k: usize,
    ranking: Option<Ranking>,
    all_bad: bool,
    likert: Vec<Option<Likert>>,
    flags: Vec<(usize, SampleFlag)>,
    comment: Comment,
    time_spent_ms: Option<i32>,
}

impl RankingSubmission {
    /// Checks `input` against a task of `k` samples.
    pub fn parse(k: usize, input: RankingInput) -> Result<RankingSubmission> {
        let ranking = input.ranking.map(|groups| Ranking::parse(k, groups)).transpose()?;
        if ranking.is_none() && !input.all_bad {
            return Err(LabelingError::invalid(
                "ranking",
                "is missing; only an all-bad ranking may leave it out",
            ));
        }
        if !(MIN_K..=MAX_K).contains(&k) {
            return Err(LabelingError::invalid(
                "ranking",
                format!("ranks {k} samples; a ranking needs {MIN_K} to {MAX_K}"),
            ));
        }
        let likert = match input.likert.len() {
            0 => vec![None; k],
            n if n == k => {
                input.likert.into_iter().map(|v| v.map(Likert::parse).transpose()).collect::<Result<_>>()?
            }
            n => return Err(LabelingError::invalid("likert", format!("has {n} ratings for {k} samples"))),
        };
        let mut flags = Vec::with_capacity(input.flags.len());
        for (position, name) in input.flags {
            if position >= k {
                return Err(LabelingError::invalid(
                    "flags",
                    format!("sample {position} is out of range for {k} samples"),
                ));
            }
            let flag = SampleFlag::parse(&name)?;
            if !flags.contains(&(position, flag)) {
                flags.push((position, flag));
            }
        }
        flags.sort_unstable();
        let comment = Comment::parse(input.comment)?;
        let time_spent_ms = time_spent(input.time_spent_ms)?;
        Ok(RankingSubmission { k, ranking, all_bad: input.all_bad, likert, flags, comment, time_spent_ms })
    }

    pub fn k(&self) -> usize {
        self.k
    }

    pub fn ranking(&self) -> Option<&Ranking> {
        self.ranking.as_ref()
    }

    pub fn all_bad(&self) -> bool {
        self.all_bad
    }

    /// One entry per sample.
    pub fn likert(&self) -> &[Option<Likert>] {
        &self.likert
    }

    /// (position, flag), sorted, without repeats.
    pub fn flags(&self) -> &[(usize, SampleFlag)] {
        &self.flags
    }

    pub fn comment(&self) -> &Comment {
        &self.comment
    }

    pub fn time_spent_ms(&self) -> Option<i32> {
        self.time_spent_ms
    }

    /// The schema's `likert` column: NULL when no sample was rated.
    pub(crate) fn likert_column(&self) -> Option<Vec<Option<i16>>> {
        self.likert
            .iter()
            .any(Option::is_some)
            .then(|| self.likert.iter().map(|l| l.map(|l| i16::from(l.value()))).collect())
    }
}

/// Time spent on a task in milliseconds: not negative, and within the column's INT.
pub fn time_spent(ms: Option<i64>) -> Result<Option<i32>> {
    ms.map(|ms| {
        i32::try_from(ms).ok().filter(|ms| *ms >= 0).ok_or_else(|| {
            LabelingError::invalid("time_spent_ms", format!("{ms} is not a duration in milliseconds"))
        })
    })
    .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(r: Result<impl std::fmt::Debug>) -> String {
        r.unwrap_err().to_string()
    }

    #[test]
    fn a_ranking_with_a_tie_round_trips_through_the_ranks_array() {
        let r = Ranking::parse(4, vec![vec![2], vec![1, 0], vec![3]]).unwrap();
        assert_eq!(r.groups(), &[vec![2], vec![0, 1], vec![3]]);
        assert_eq!(r.ranks(), vec![1, 1, 0, 2]);
        assert_eq!(Ranking::from_ranks(&r.ranks()).unwrap(), r);
    }

    #[test]
    fn a_ranking_gives_pairs_across_groups_and_tied_pairs_within_them() {
        let r = Ranking::parse(4, vec![vec![2], vec![0, 1], vec![3]]).unwrap();
        assert_eq!(r.pairs(), vec![(2, 0), (2, 1), (2, 3), (0, 3), (1, 3)]);
        assert_eq!(r.tied_pairs(), vec![(0, 1)]);
    }

    #[test]
    fn a_ranking_with_a_duplicate_index_is_rejected() {
        let e = reason(Ranking::parse(3, vec![vec![0], vec![0, 1], vec![2]]));
        assert_eq!(e, "invalid ranking: index 0 appears twice");
    }

    #[test]
    fn a_ranking_that_skips_a_sample_is_rejected() {
        let e = reason(Ranking::parse(3, vec![vec![0], vec![2]]));
        assert_eq!(e, "invalid ranking: sample 1 is not ranked");
    }

    #[test]
    fn a_ranking_with_an_index_past_k_is_rejected() {
        let e = reason(Ranking::parse(2, vec![vec![0], vec![2]]));
        assert_eq!(e, "invalid ranking: index 2 is out of range for 2 samples");
    }

    #[test]
    fn a_ranking_of_ten_samples_is_rejected() {
        let e = reason(Ranking::parse(10, vec![(0..10).collect()]));
        assert_eq!(e, "invalid ranking: ranks 10 samples; a ranking needs 2 to 9");
        assert!(Ranking::parse(1, vec![vec![0]]).is_err());
    }

    #[test]
    fn a_ranking_with_an_empty_group_is_rejected() {
        let e = reason(Ranking::parse(2, vec![vec![0], vec![], vec![1]]));
        assert_eq!(e, "invalid ranking: has an empty group");
    }

    #[test]
    fn a_ranks_array_with_a_gap_is_rejected() {
        assert!(Ranking::from_ranks(&[0, 2, 2]).is_err());
        assert!(Ranking::from_ranks(&[0, -1]).is_err());
        assert_eq!(Ranking::from_ranks(&[0, 0]).unwrap().groups(), &[vec![0, 1]]);
    }

    #[test]
    fn likert_ratings_are_one_to_seven() {
        assert_eq!(Likert::parse(1).unwrap().value(), 1);
        assert_eq!(Likert::parse(7).unwrap().value(), 7);
        for bad in [0, 8, -1, 300] {
            assert!(Likert::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn flags_and_votes_parse_their_database_names_only() {
        for flag in SampleFlag::ALL {
            assert_eq!(SampleFlag::parse(flag.as_str()).unwrap(), flag);
        }
        assert!(SampleFlag::parse("rude").is_err());
        for vote in Vote::ALL {
            assert_eq!(Vote::parse(vote.as_str()).unwrap(), vote);
        }
        assert_eq!(serde_json::to_string(&Vote::BothBad).unwrap(), "\"both_bad\"");
        assert!(Vote::parse("A").is_err());
    }

    #[test]
    fn an_idempotency_key_must_be_a_uuid() {
        let key = IdempotencyKey::new();
        assert_eq!(IdempotencyKey::parse(&key.to_string()).unwrap(), key);
        assert!(IdempotencyKey::parse("retry-1").is_err());
    }

    fn input() -> RankingInput {
        RankingInput {
            ranking: Some(vec![vec![1], vec![0, 2]]),
            likert: vec![Some(3), None, Some(7)],
            flags: vec![(2, "harmful".into()), (0, "other".into()), (2, "harmful".into())],
            comment: "fine".into(),
            time_spent_ms: Some(1200),
            ..RankingInput::default()
        }
    }

    #[test]
    fn a_ranking_submission_is_checked_against_k() {
        let s = RankingSubmission::parse(3, input()).unwrap();
        assert_eq!(s.ranking().unwrap().ranks(), vec![1, 0, 1]);
        assert_eq!(s.likert_column(), Some(vec![Some(3), None, Some(7)]));
        assert_eq!(s.flags(), &[(0, SampleFlag::Other), (2, SampleFlag::Harmful)]);
        assert_eq!(s.time_spent_ms(), Some(1200));

        assert!(RankingSubmission::parse(4, input()).is_err(), "a ranking of 3 for a task of 4");
        let e = reason(RankingSubmission::parse(3, RankingInput { likert: vec![Some(1)], ..input() }));
        assert_eq!(e, "invalid likert: has 1 ratings for 3 samples");
        let e =
            reason(RankingSubmission::parse(3, RankingInput { flags: vec![(3, "other".into())], ..input() }));
        assert_eq!(e, "invalid flags: sample 3 is out of range for 3 samples");
        let e = reason(RankingSubmission::parse(3, RankingInput { time_spent_ms: Some(-5), ..input() }));
        assert!(e.starts_with("invalid time_spent_ms"), "{e}");
    }

    #[test]
    fn a_ranking_submission_may_leave_out_the_order_only_when_all_bad() {
        let e = reason(RankingSubmission::parse(3, RankingInput { ranking: None, ..input() }));
        assert_eq!(e, "invalid ranking: is missing; only an all-bad ranking may leave it out");
        let s = RankingSubmission::parse(
            3,
            RankingInput { ranking: None, all_bad: true, likert: vec![], ..input() },
        )
        .unwrap();
        assert!(s.ranking().is_none() && s.all_bad());
        assert_eq!(s.likert_column(), None);
    }
}

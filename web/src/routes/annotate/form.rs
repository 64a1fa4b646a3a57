//! What annotators post, parsed at the edge: the HTML forms (with their fields kept as
//! typed, so that a refused form is shown again as it was) and the JSON API's bodies,
//! each turned into the labeling library's checked values.

use std::collections::BTreeMap;

use labeling::annotation::{IdempotencyKey, RankingInput, RankingSubmission, Vote};
use labeling::domain::{Comment, ResponseText};
use serde::Deserialize;

use crate::auth::csrf_field;
use crate::error::AppError;

/// The longest a page may have been open for the server's own estimate of the time
/// spent (now − the time the page was rendered) to count: beyond it the tab was
/// probably left open, and the estimate says nothing.
const MAX_ESTIMATED_MS: i64 = 6 * 60 * 60 * 1000;

/// Time spent on a task: the page's own measure (`time_spent_ms`, active time while
/// visible) when it sent one, else now − when the page was rendered (`rendered_at`, in
/// Unix milliseconds), else unknown.
pub fn time_spent(time_spent_ms: &str, rendered_at: &str, now_ms: i64) -> Result<Option<i64>, AppError> {
    let measured = time_spent_ms.trim();
    if !measured.is_empty() {
        return measured.parse::<i64>().map(Some).map_err(|_| AppError::Invalid {
            field: "time_spent_ms".into(),
            reason: format!("{measured:?} is not a number of milliseconds"),
        });
    }
    Ok(rendered_at
        .trim()
        .parse::<i64>()
        .ok()
        .map(|rendered| now_ms - rendered)
        .filter(|ms| (0..=MAX_ESTIMATED_MS).contains(ms)))
}

/// Rank numbers as a person picks them, one per sample in the task's order (1 the best,
/// tied samples share a number), as groups of sample positions, best first. The numbers
/// used must run 1, 2, … without a gap, as the form's rank selects show them.
pub fn groups_from_rank_numbers(ranks: &[i64]) -> Result<Vec<Vec<usize>>, AppError> {
    let k = ranks.len();
    let invalid = |reason: String| AppError::Invalid { field: "ranks".into(), reason };
    let mut groups: Vec<Vec<usize>> = vec![Vec::new(); k];
    for (position, &rank) in ranks.iter().enumerate() {
        let group = usize::try_from(rank).ok().and_then(|r| r.checked_sub(1)).filter(|g| *g < k).ok_or_else(
            || invalid(format!("rank {rank} of {} is not between 1 and {k}", letter(position))),
        )?;
        groups[group].push(position);
    }
    let used = groups.iter().rposition(|g| !g.is_empty()).map_or(0, |last| last + 1);
    if let Some(gap) = groups[..used].iter().position(Vec::is_empty) {
        return Err(invalid(format!(
            "no response is ranked {}: rank numbers must run 1, 2, 3, … without gaps \
             (tied responses share a number, and the next rank follows straight on)",
            gap + 1
        )));
    }
    groups.truncate(used);
    Ok(groups)
}

/// The letter a sample is shown with: A for position 0, B for 1, …
pub fn letter(position: usize) -> char {
    // Positions are below 9 (K ≤ 9): the cast cannot truncate.
    char::from(b'A' + (position.min(25) as u8))
}

/// The letter the sample at `position` was shown with, in an assignment that showed its
/// samples in `order` (positions in the order shown; by position when there is none).
pub fn shown_letter(position: usize, order: Option<&[i16]>) -> char {
    let slot = order.and_then(|o| o.iter().position(|&p| usize::try_from(p) == Ok(position)));
    letter(slot.unwrap_or(position))
}

/// A ranks array (group of each sample by position, 0 the best) as "B > A = C", in the
/// letters the samples were shown with (see `shown_letter`).
pub fn order_text(ranks: &[i16], order: Option<&[i16]>) -> String {
    let groups = ranks.iter().copied().max().map_or(0, |m| m + 1);
    (0..groups)
        .map(|g| {
            let mut letters: Vec<char> = ranks
                .iter()
                .enumerate()
                .filter(|(_, r)| **r == g)
                .map(|(i, _)| shown_letter(i, order))
                .collect();
            letters.sort_unstable();
            letters.iter().map(char::to_string).collect::<Vec<_>>().join(" = ")
        })
        .collect::<Vec<_>>()
        .join(" > ")
}

/// The `revises` field of a page's form: empty for a first answer, else the id of the
/// answer being revised.
fn parse_revises(text: &str) -> Result<Option<i64>, AppError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    text.parse::<i64>().map(Some).map_err(|_| AppError::Invalid {
        field: "revises".into(),
        reason: format!("{text:?} is not the id of an answer"),
    })
}

fn parse_key(text: &str) -> Result<IdempotencyKey, AppError> {
    Ok(IdempotencyKey::parse(text)?)
}

/// A field error from the labeling library, named as the API or form names the field.
fn renamed(e: labeling::error::LabelingError, from: &str, to: &str) -> AppError {
    match AppError::from(e) {
        AppError::Invalid { field, reason } if field == from => {
            AppError::Invalid { field: to.into(), reason }
        }
        other => other,
    }
}

/// The ranking form: `rank_{i}` (1..K or empty), `likert_{i}` (1..7 or empty),
/// `flag_{i}` (repeated, one per ticked flag), `all_bad`, `comment`, `time_spent_ms`,
/// `rendered_at`, `idempotency_key` and `csrf`; `i` is the sample's position.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RankingForm {
    pub csrf: String,
    pub idempotency_key: String,
    pub ranks: BTreeMap<usize, String>,
    pub likert: BTreeMap<usize, String>,
    pub flags: Vec<(usize, String)>,
    pub all_bad: bool,
    pub comment: String,
    pub time_spent_ms: String,
    pub rendered_at: String,
    /// The id of the answer this one revises; empty for a first answer.
    pub revises: String,
}

impl RankingForm {
    /// Reads the posted pairs; a field named for a sample with a malformed position is
    /// a bad request, and fields it does not know are ignored.
    pub fn read(pairs: Vec<(String, String)>) -> Result<RankingForm, AppError> {
        let mut form = RankingForm::default();
        for (name, value) in pairs {
            let per_sample = |prefix: &str| -> Result<Option<usize>, AppError> {
                let Some(index) = name.strip_prefix(prefix) else { return Ok(None) };
                index
                    .parse::<usize>()
                    .map(Some)
                    .map_err(|_| AppError::BadRequest(format!("the form field {name:?} names no sample")))
            };
            if let Some(i) = per_sample("rank_")? {
                form.ranks.insert(i, value);
            } else if let Some(i) = per_sample("likert_")? {
                form.likert.insert(i, value);
            } else if let Some(i) = per_sample("flag_")? {
                form.flags.push((i, value));
            } else {
                match name.as_str() {
                    "csrf" => form.csrf = value,
                    "idempotency_key" => form.idempotency_key = value,
                    "all_bad" => form.all_bad = !value.is_empty() && value != "false",
                    "comment" => form.comment = value,
                    "time_spent_ms" => form.time_spent_ms = value,
                    "rendered_at" => form.rendered_at = value,
                    "revises" => form.revises = value,
                    _ => {}
                }
            }
        }
        Ok(form)
    }

    /// The id of the answer this form revises, if it revises one.
    pub fn revises(&self) -> Result<Option<i64>, AppError> {
        parse_revises(&self.revises)
    }

    /// Gives each sample shown only through its twin (`twin_of[i]` = `Some(j)`: the
    /// sample at `i` has the very text of the one at `j`) the twin's rank, rating and
    /// flags: identical responses are one response, tied.
    pub fn tie_twins(&mut self, twin_of: &[(usize, Option<usize>)]) {
        for &(position, twin) in twin_of {
            let Some(twin) = twin else { continue };
            for values in [&mut self.ranks, &mut self.likert] {
                match values.get(&twin).cloned() {
                    Some(v) => values.insert(position, v),
                    None => values.remove(&position),
                };
            }
            self.flags.retain(|(p, _)| *p != position);
            let copied: Vec<(usize, String)> =
                self.flags.iter().filter(|(p, _)| *p == twin).map(|(_, f)| (position, f.clone())).collect();
            self.flags.extend(copied);
        }
    }

    /// The rank picked for the sample at `position` ("" when none).
    pub fn rank(&self, position: usize) -> &str {
        self.ranks.get(&position).map_or("", |r| r.trim())
    }

    pub fn likert_of(&self, position: usize) -> &str {
        self.likert.get(&position).map_or("", |r| r.trim())
    }

    /// The flags ticked on the sample at `position`.
    pub fn flags_of(&self, position: usize) -> Vec<String> {
        self.flags.iter().filter(|(p, _)| *p == position).map(|(_, f)| f.clone()).collect()
    }

    /// The checked submission for a task of `k` samples, and its idempotency key.
    pub fn submission(&self, k: usize, now_ms: i64) -> Result<(RankingSubmission, IdempotencyKey), AppError> {
        if let Some(&extra) = self.ranks.keys().chain(self.likert.keys()).find(|&&i| i >= k) {
            return Err(AppError::Invalid {
                field: format!("rank_{extra}"),
                reason: format!("the task shows {k} responses, not {}", extra + 1),
            });
        }
        let picked: Vec<Option<&str>> =
            (0..k).map(|i| Some(self.rank(i)).filter(|r| !r.is_empty())).collect();
        let ranking = if picked.iter().all(Option::is_none) {
            if !self.all_bad {
                return Err(AppError::Invalid {
                    field: "ranks".into(),
                    reason: "rank every response (or tick “all responses are bad”)".into(),
                });
            }
            None
        } else {
            let mut numbers = Vec::with_capacity(k);
            for (i, rank) in picked.iter().enumerate() {
                let rank = rank.ok_or_else(|| AppError::Invalid {
                    field: format!("rank_{i}"),
                    reason: format!("response {} has no rank", letter(i)),
                })?;
                numbers.push(rank.parse::<i64>().map_err(|_| AppError::Invalid {
                    field: format!("rank_{i}"),
                    reason: format!("{rank:?} is not a rank"),
                })?);
            }
            Some(groups_from_rank_numbers(&numbers)?)
        };
        let mut likert = Vec::with_capacity(k);
        for i in 0..k {
            let value = self.likert_of(i);
            likert.push(if value.is_empty() {
                None
            } else {
                Some(value.parse::<i64>().map_err(|_| AppError::Invalid {
                    field: format!("likert_{i}"),
                    reason: format!("{value:?} is not a rating from 1 to 7"),
                })?)
            });
        }
        if likert.iter().all(Option::is_none) {
            likert.clear();
        }
        let input = RankingInput {
            ranking,
            all_bad: self.all_bad,
            likert,
            flags: self.flags.clone(),
            comment: self.comment.clone(),
            time_spent_ms: time_spent(&self.time_spent_ms, &self.rendered_at, now_ms)?,
        };
        let submission = RankingSubmission::parse(k, input)?;
        Ok((submission, parse_key(&self.idempotency_key)?))
    }
}

/// The demonstration form: `text`, `idempotency_key`, `time_spent_ms`, `rendered_at`, `csrf`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct DemonstrationForm {
    #[serde(default)]
    pub text: String,
    #[serde(default)]
    pub idempotency_key: String,
    #[serde(default)]
    pub time_spent_ms: String,
    #[serde(default)]
    pub rendered_at: String,
    #[serde(default)]
    pub revises: String,
    #[serde(default)]
    pub csrf: String,
}
csrf_field!(DemonstrationForm);

/// A demonstration as the API takes it: `{text, idempotency_key, time_spent_ms?, csrf?}`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct DemonstrationBody {
    #[serde(default)]
    pub text: String,
    #[serde(default)]
    pub idempotency_key: String,
    #[serde(default)]
    pub time_spent_ms: Option<i64>,
    #[serde(default)]
    pub revises: Option<i64>,
    #[serde(default)]
    pub csrf: String,
}
csrf_field!(DemonstrationBody);

/// A checked demonstration: the response, the time spent and the idempotency key.
pub struct Demonstration {
    pub response: ResponseText,
    pub time_spent_ms: Option<i64>,
    pub key: IdempotencyKey,
    /// The answer this one revises, if any.
    pub revises: Option<i64>,
}

impl DemonstrationForm {
    pub fn demonstration(&self, now_ms: i64) -> Result<Demonstration, AppError> {
        Ok(Demonstration {
            response: ResponseText::parse(self.text.clone()).map_err(|e| renamed(e, "response", "text"))?,
            time_spent_ms: time_spent(&self.time_spent_ms, &self.rendered_at, now_ms)?,
            key: parse_key(&self.idempotency_key)?,
            revises: parse_revises(&self.revises)?,
        })
    }
}

impl DemonstrationBody {
    pub fn demonstration(&self) -> Result<Demonstration, AppError> {
        Ok(Demonstration {
            response: ResponseText::parse(self.text.clone()).map_err(|e| renamed(e, "response", "text"))?,
            time_spent_ms: self.time_spent_ms,
            key: parse_key(&self.idempotency_key)?,
            revises: self.revises,
        })
    }
}

/// A ranking as the API takes it: `labeling::annotation::RankingInput`'s fields
/// (`ranking` as groups of sample positions best first, `all_bad`, `likert` one rating
/// or null per sample, `flags` as `[position, flag]` pairs, `comment`, `time_spent_ms`),
/// or `ranks` (one rank number per sample, 1 the best, ties sharing a number) instead
/// of `ranking`; plus `idempotency_key` and, with a session, `csrf`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct RankingBody {
    #[serde(default)]
    pub ranks: Option<Vec<i64>>,
    #[serde(flatten)]
    pub input: RankingInput,
    #[serde(default)]
    pub idempotency_key: String,
    #[serde(default)]
    pub revises: Option<i64>,
    #[serde(default)]
    pub csrf: String,
}
csrf_field!(RankingBody);

impl RankingBody {
    pub fn submission(self, k: usize) -> Result<(RankingSubmission, IdempotencyKey), AppError> {
        let mut input = self.input;
        if let Some(ranks) = &self.ranks {
            if input.ranking.is_some() {
                return Err(AppError::Invalid {
                    field: "ranks".into(),
                    reason: "give either ranks or ranking, not both".into(),
                });
            }
            if ranks.len() != k {
                return Err(AppError::Invalid {
                    field: "ranks".into(),
                    reason: format!("has {} rank numbers for {k} samples", ranks.len()),
                });
            }
            input.ranking = Some(groups_from_rank_numbers(ranks)?);
        }
        let submission = RankingSubmission::parse(k, input)?;
        Ok((submission, parse_key(&self.idempotency_key)?))
    }
}

/// The vote form: `vote` (the button pressed), `comment`, `idempotency_key`,
/// `time_spent_ms`, `rendered_at`, `csrf`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct VoteForm {
    #[serde(default)]
    pub vote: String,
    #[serde(default)]
    pub comment: String,
    #[serde(default)]
    pub idempotency_key: String,
    #[serde(default)]
    pub time_spent_ms: String,
    #[serde(default)]
    pub rendered_at: String,
    #[serde(default)]
    pub revises: String,
    #[serde(default)]
    pub csrf: String,
}
csrf_field!(VoteForm);

/// A vote as the API takes it: `{vote: "a"|"b"|"tie"|"both_bad", comment?,
/// idempotency_key, time_spent_ms?, csrf?}`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct VoteBody {
    #[serde(default)]
    pub vote: String,
    #[serde(default)]
    pub comment: String,
    #[serde(default)]
    pub idempotency_key: String,
    #[serde(default)]
    pub time_spent_ms: Option<i64>,
    #[serde(default)]
    pub revises: Option<i64>,
    #[serde(default)]
    pub csrf: String,
}
csrf_field!(VoteBody);

/// A checked vote.
pub struct Ballot {
    pub vote: Vote,
    pub comment: Comment,
    pub time_spent_ms: Option<i64>,
    pub key: IdempotencyKey,
    /// The answer this one revises, if any.
    pub revises: Option<i64>,
}

impl VoteForm {
    pub fn ballot(&self, now_ms: i64) -> Result<Ballot, AppError> {
        Ok(Ballot {
            vote: Vote::parse(self.vote.trim())?,
            comment: Comment::parse(self.comment.clone())?,
            time_spent_ms: time_spent(&self.time_spent_ms, &self.rendered_at, now_ms)?,
            key: parse_key(&self.idempotency_key)?,
            revises: parse_revises(&self.revises)?,
        })
    }
}

impl VoteBody {
    pub fn ballot(&self) -> Result<Ballot, AppError> {
        Ok(Ballot {
            vote: Vote::parse(self.vote.trim())?,
            comment: Comment::parse(self.comment.clone())?,
            time_spent_ms: self.time_spent_ms,
            key: parse_key(&self.idempotency_key)?,
            revises: self.revises,
        })
    }
}

#[cfg(test)]
mod tests {
    use labeling::annotation::SampleFlag;

    use super::*;

    fn field(e: AppError) -> String {
        match e {
            AppError::Invalid { field, .. } => field,
            other => panic!("not a field error: {other}"),
        }
    }

    fn form(pairs: &[(&str, &str)]) -> RankingForm {
        RankingForm::read(pairs.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()).unwrap()
    }

    const KEY: &str = "0b6f6c1e-3c1a-4f0e-9b7a-2f1d2a3b4c5d";

    #[test]
    fn rank_numbers_with_a_tie_become_groups_best_first() {
        assert_eq!(groups_from_rank_numbers(&[2, 1, 2, 3]).unwrap(), vec![vec![1], vec![0, 2], vec![3]]);
        assert_eq!(groups_from_rank_numbers(&[1, 1]).unwrap(), vec![vec![0, 1]]);
    }

    #[test]
    fn rank_numbers_that_skip_a_rank_are_refused_naming_the_missing_rank() {
        let e = groups_from_rank_numbers(&[1, 3, 3]).unwrap_err();
        assert!(e.to_string().contains("no response is ranked 2"), "{e}");
        assert_eq!(field(e), "ranks");
        assert_eq!(field(groups_from_rank_numbers(&[0, 1]).unwrap_err()), "ranks");
        assert_eq!(field(groups_from_rank_numbers(&[1, 4, 2]).unwrap_err()), "ranks");
    }

    #[test]
    fn a_ranking_form_with_a_tie_flags_and_ratings_becomes_a_submission() {
        let f = form(&[
            ("rank_0", "2"),
            ("rank_1", "1"),
            ("rank_2", "1"),
            ("likert_0", "3"),
            ("likert_2", "7"),
            ("flag_0", "harmful"),
            ("flag_0", "other"),
            ("comment", "B and C are equally good"),
            ("time_spent_ms", "1500"),
            ("idempotency_key", KEY),
        ]);
        let (s, key) = f.submission(3, 0).unwrap();
        assert_eq!(s.ranking().unwrap().groups(), &[vec![1, 2], vec![0]]);
        assert_eq!(
            s.likert().iter().map(|l| l.map(|l| l.value())).collect::<Vec<_>>(),
            [Some(3), None, Some(7)]
        );
        assert_eq!(s.flags(), &[(0, SampleFlag::Harmful), (0, SampleFlag::Other)]);
        assert_eq!(s.comment().as_str(), "B and C are equally good");
        assert_eq!(s.time_spent_ms(), Some(1500));
        assert_eq!(key.to_string(), KEY);
    }

    #[test]
    fn a_ranking_form_missing_one_rank_names_that_sample() {
        let f = form(&[("rank_0", "1"), ("rank_1", ""), ("idempotency_key", KEY)]);
        assert_eq!(field(f.submission(2, 0).unwrap_err()), "rank_1");
        let none = form(&[("idempotency_key", KEY)]);
        assert_eq!(field(none.submission(2, 0).unwrap_err()), "ranks");
    }

    #[test]
    fn an_all_bad_form_may_leave_the_ranks_out() {
        let f = form(&[("all_bad", "on"), ("idempotency_key", KEY)]);
        let (s, _) = f.submission(2, 0).unwrap();
        assert!(s.all_bad() && s.ranking().is_none());
    }

    #[test]
    fn an_unknown_flag_or_a_bad_rating_is_refused() {
        let f = form(&[("rank_0", "1"), ("rank_1", "2"), ("flag_1", "boring"), ("idempotency_key", KEY)]);
        assert_eq!(field(f.submission(2, 0).unwrap_err()), "flag");
        let f = form(&[("rank_0", "1"), ("rank_1", "2"), ("likert_1", "9"), ("idempotency_key", KEY)]);
        assert_eq!(field(f.submission(2, 0).unwrap_err()), "likert");
        let f = form(&[("rank_0", "1"), ("rank_1", "2"), ("idempotency_key", "not a key")]);
        assert_eq!(field(f.submission(2, 0).unwrap_err()), "idempotency_key");
    }

    #[test]
    fn a_field_for_a_sample_past_k_is_refused() {
        let f = form(&[("rank_0", "1"), ("rank_1", "2"), ("rank_2", "3"), ("idempotency_key", KEY)]);
        assert_eq!(field(f.submission(2, 0).unwrap_err()), "rank_2");
        assert!(RankingForm::read(vec![("rank_x".into(), "1".into())]).is_err());
    }

    #[test]
    fn the_time_spent_falls_back_to_the_time_since_the_page_was_rendered() {
        assert_eq!(time_spent("1200", "1000", 9000).unwrap(), Some(1200));
        assert_eq!(time_spent("", "1000", 9000).unwrap(), Some(8000));
        assert_eq!(time_spent("", "9000", 1000).unwrap(), None, "a page rendered in the future");
        assert_eq!(time_spent("", "", 1000).unwrap(), None);
        assert_eq!(time_spent("", "0", MAX_ESTIMATED_MS + 1).unwrap(), None, "a tab left open");
        assert!(time_spent("soon", "", 0).is_err());
    }

    #[test]
    fn the_api_takes_rank_numbers_or_groups_but_not_both() {
        let body = |v: serde_json::Value| serde_json::from_value::<RankingBody>(v).unwrap();
        let (s, _) =
            body(serde_json::json!({"ranks": [2, 1, 1], "idempotency_key": KEY})).submission(3).unwrap();
        assert_eq!(s.ranking().unwrap().groups(), &[vec![1, 2], vec![0]]);
        let (s, _) = body(serde_json::json!({
            "ranking": [[2], [0, 1]], "likert": [1, null, 7], "flags": [[2, "hallucination"]],
            "idempotency_key": KEY
        }))
        .submission(3)
        .unwrap();
        assert_eq!(s.ranking().unwrap().groups(), &[vec![2], vec![0, 1]]);
        assert_eq!(s.flags(), &[(2, SampleFlag::Hallucination)]);
        let both = body(serde_json::json!({"ranks": [1, 2], "ranking": [[0], [1]], "idempotency_key": KEY}));
        assert_eq!(field(both.submission(2).unwrap_err()), "ranks");
        let short = body(serde_json::json!({"ranks": [1], "idempotency_key": KEY}));
        assert_eq!(field(short.submission(2).unwrap_err()), "ranks");
    }

    #[test]
    fn a_blank_demonstration_names_the_text_field() {
        let body = DemonstrationBody { text: "  ".into(), idempotency_key: KEY.into(), ..Default::default() };
        assert_eq!(field(body.demonstration().err().unwrap()), "text");
    }
}

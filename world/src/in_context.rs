//! Worked examples in context: pretraining documents that teach in-context learning.
//!
//! GPT-3's finding is that a language model pretrained on text in which a pattern is
//! shown a few times and then continued learns to read examples in its context: given a
//! few worked examples of a task it never trained on, it answers the next one. Each
//! document here states one *rule* drawn at random (a suffix to add, a prefix to add, a
//! pair of marks to wrap a word in) as 3 to 6 lines `input -> output` joined by
//! [`SEPARATOR`]:
//!
//! ```text
//! lamp -> lampfo  cat -> catfo  rose -> rosefo  hen -> henfo
//! ```
//!
//! Nothing names the rule, so only a model that reads the earlier lines can continue the
//! later ones (induction). The [`HELD_OUT`] rules are never drawn: a base model that
//! answers them after a few worked examples, and not without, learned to learn in context
//! during pretraining, since it cannot have learned the rule. A k-shot prompt
//! ([`prompt`]) is k lines of a held-out rule, then the question's input and ` -> `.
//!
//! The separator is whitespace so that an answer followed by it is still the answer once
//! trimmed: the eval's exact match decodes two tokens past its longest answer, which a
//! model that continues the document spends on the separator ([`eval_tasks`]).

use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::{pick, WORDS};

/// Between the lines of a document (two spaces: the corpus holds no newline).
pub const SEPARATOR: &str = "  ";
/// Between a line's input and its output.
pub const ARROW: &str = " -> ";

/// A document shows its rule this many times (inclusive range).
const LINES: (usize, usize) = (3, 6);

/// Letters of the affixes: a suffix or prefix is two of them.
const LETTERS: &[u8; 26] = b"abcdefghijklmnopqrstuvwxyz";
/// Marks a word is wrapped in: none is a letter, a space or part of the arrow.
const MARKS: [char; 18] =
    ['(', ')', '[', ']', '{', '}', '*', '_', '#', '=', '+', '~', '^', '%', '@', '$', '!', '?'];

/// One way to turn a word into its output.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Rule {
    /// `cat` → `catek`.
    Suffix(String),
    /// `cat` → `ekcat`.
    Prefix(String),
    /// `cat` → `%cat@`.
    Wrap(char, char),
}

/// Rules the corpus never draws: the unseen skills a base model can only answer in
/// context. Their affixes are never drawn as a suffix or a prefix, and their marks never
/// as that pair (each mark alone is drawn, in other pairs).
pub const HELD_OUT: [(&str, HeldOut); 6] = [
    ("suffix ek", HeldOut::Suffix("ek")),
    ("suffix om", HeldOut::Suffix("om")),
    ("prefix ul", HeldOut::Prefix("ul")),
    ("prefix ax", HeldOut::Prefix("ax")),
    ("wrap %@", HeldOut::Wrap('%', '@')),
    ("wrap !?", HeldOut::Wrap('!', '?')),
];

/// A [`HELD_OUT`] rule as a constant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeldOut {
    Suffix(&'static str),
    Prefix(&'static str),
    Wrap(char, char),
}

impl HeldOut {
    pub fn rule(self) -> Rule {
        match self {
            HeldOut::Suffix(a) => Rule::Suffix(a.to_owned()),
            HeldOut::Prefix(a) => Rule::Prefix(a.to_owned()),
            HeldOut::Wrap(open, close) => Rule::Wrap(open, close),
        }
    }
}

impl Rule {
    pub fn apply(&self, word: &str) -> String {
        match self {
            Rule::Suffix(affix) => format!("{word}{affix}"),
            Rule::Prefix(affix) => format!("{affix}{word}"),
            Rule::Wrap(open, close) => format!("{open}{word}{close}"),
        }
    }

    pub fn is_held_out(&self) -> bool {
        let affix_held_out = |affix: &str| {
            HELD_OUT.iter().any(|(_, h)| matches!(h, HeldOut::Suffix(a) | HeldOut::Prefix(a) if *a == affix))
        };
        match self {
            Rule::Suffix(affix) | Rule::Prefix(affix) => affix_held_out(affix),
            Rule::Wrap(..) => HELD_OUT.iter().any(|(_, h)| h.rule() == *self),
        }
    }

    /// A rule of a family drawn uniformly, never a held-out one.
    fn random<R: Rng + ?Sized>(rng: &mut R) -> Rule {
        loop {
            let affix = |rng: &mut R| -> String {
                (0..2).map(|_| char::from(LETTERS[rng.random_range(0..LETTERS.len())])).collect()
            };
            let rule = match rng.random_range(0..3) {
                0 => Rule::Suffix(affix(rng)),
                1 => Rule::Prefix(affix(rng)),
                _ => Rule::Wrap(pick(&MARKS, rng), pick(&MARKS, rng)),
            };
            if !rule.is_held_out() {
                return rule;
            }
        }
    }
}

/// One line: `input -> output`.
pub fn line(input: &str, output: &str) -> String {
    format!("{input}{ARROW}{output}")
}

/// The k-shot prompt of a question: the worked examples' lines, then the question's input
/// and the arrow, as a document of the corpus reads up to the answer.
pub fn prompt(examples: &[(String, String)], input: &str) -> String {
    let mut text = String::new();
    for (i, o) in examples {
        text.push_str(&line(i, o));
        text.push_str(SEPARATOR);
    }
    text.push_str(input);
    text.push_str(ARROW);
    text
}

/// A corpus document: 3 to 6 distinct words through one rule drawn at random.
pub(crate) fn document<R: Rng + ?Sized>(rng: &mut R) -> String {
    let rule = Rule::random(rng);
    let n = rng.random_range(LINES.0..=LINES.1);
    let words: Vec<&str> = WORDS.choose_multiple(rng, n).copied().collect();
    let lines: Vec<String> = words.iter().map(|w| line(w, &rule.apply(w))).collect();
    lines.join(SEPARATOR)
}

/// A held-out rule's worked examples and questions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Episode {
    pub name: &'static str,
    pub rule: Rule,
    /// `(input, output)`; a k-shot prompt shows the first k.
    pub examples: Vec<(String, String)>,
    /// `(input, output)`: words of one length (so answers of one length), none an example.
    pub questions: Vec<(String, String)>,
}

/// Question words have this many letters, so that a rule's answers share a length.
const QUESTION_LETTERS: usize = 4;

/// One episode per [`HELD_OUT`] rule: `shots` worked examples (words of any length) and
/// `n_questions` questions (distinct words of [`QUESTION_LETTERS`] letters, at most
/// the vocabulary's), deterministic in `seed`.
pub fn held_out(shots: usize, n_questions: usize, seed: u64) -> Vec<Episode> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    HELD_OUT
        .iter()
        .map(|&(name, held)| {
            let rule = held.rule();
            let mut words = WORDS.to_vec();
            words.shuffle(&mut rng);
            let (questions, rest): (Vec<&str>, Vec<&str>) =
                words.into_iter().partition(|w| w.len() == QUESTION_LETTERS);
            let pair = |w: &&str| (w.to_string(), rule.apply(w));
            Episode {
                name,
                examples: rest.iter().take(shots).map(pair).collect(),
                questions: questions.iter().take(n_questions).map(pair).collect(),
                rule,
            }
        })
        .collect()
}

/// A line of the eval's `skills.tasks` file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EvalTask {
    pub task: String,
    pub input: String,
    pub output: String,
}

/// The held-out rules as the eval's own tasks, one task per rule and shot count, named
/// `"{rule}, {k}-shot"`: each question's input is its k-shot [`prompt`], so the eval runs
/// them with `shots: [0]` (its own few-shot prompts put EOS between examples, a boundary
/// across which pretraining never shows a rule continue). Answers of a task share a
/// length, so the eval's budget of two tokens past the longest answer reaches the
/// separator and no further.
pub fn eval_tasks(shot_counts: &[usize], n_questions: usize, seed: u64) -> Vec<EvalTask> {
    let most = shot_counts.iter().copied().max().unwrap_or(0);
    let mut tasks = Vec::new();
    for episode in held_out(most, n_questions, seed) {
        for &k in shot_counts {
            tasks.extend(episode.questions.iter().map(|(input, output)| EvalTask {
                task: format!("{}, {k}-shot", episode.name),
                input: prompt(&episode.examples[..k], input),
                output: output.clone(),
            }));
        }
    }
    tasks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docs(n: usize, seed: u64) -> Vec<String> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..n).map(|_| document(&mut rng)).collect()
    }

    /// The rule a document follows, read back from its lines; `None` if its lines follow none.
    fn rule_of(doc: &str) -> Option<Rule> {
        let lines: Vec<(&str, &str)> =
            doc.split(SEPARATOR).map(|l| l.split_once(ARROW).expect("a line has an arrow")).collect();
        let (input, output) = lines[0];
        let at = output.find(input)?;
        let rule = match (at, output.len() - input.len() - at) {
            (0, 2) => Rule::Suffix(output[input.len()..].to_owned()),
            (2, 0) => Rule::Prefix(output[..2].to_owned()),
            (1, 1) => Rule::Wrap(output.chars().next()?, output.chars().last()?),
            _ => return None,
        };
        lines.iter().all(|(i, o)| rule.apply(i) == *o).then_some(rule)
    }

    #[test]
    fn every_document_shows_one_rule_three_to_six_times_on_distinct_words() {
        for doc in docs(2000, 1) {
            let lines: Vec<&str> = doc.split(SEPARATOR).collect();
            assert!((LINES.0..=LINES.1).contains(&lines.len()), "{doc:?}");
            let inputs: std::collections::HashSet<&str> =
                lines.iter().map(|l| l.split_once(ARROW).unwrap().0).collect();
            assert_eq!(inputs.len(), lines.len(), "distinct words: {doc:?}");
            assert!(rule_of(&doc).is_some(), "{doc:?} follows no rule");
        }
    }

    #[test]
    fn the_corpus_never_draws_a_held_out_rule_and_draws_every_family() {
        let rules: Vec<Rule> = docs(5000, 2).iter().map(|d| rule_of(d).unwrap()).collect();
        for rule in &rules {
            assert!(!rule.is_held_out(), "{rule:?}");
        }
        for (name, held) in HELD_OUT {
            assert!(!rules.contains(&held.rule()), "{name}");
            assert!(held.rule().is_held_out(), "{name}");
        }
        assert!(rules.iter().any(|r| matches!(r, Rule::Suffix(_))));
        assert!(rules.iter().any(|r| matches!(r, Rule::Prefix(_))));
        assert!(rules.iter().any(|r| matches!(r, Rule::Wrap(..))));
        // The held-out affix is unseen as a rule, not as letters: other affixes start with e.
        assert!(rules.iter().any(|r| matches!(r, Rule::Suffix(a) if a.starts_with('e'))));
        assert!(rules.iter().any(|r| matches!(r, Rule::Wrap('%', c) if *c != '@')));
    }

    #[test]
    fn a_k_shot_prompt_is_a_document_up_to_the_answer() {
        let examples = vec![("cat".to_owned(), "catek".to_owned()), ("hen".to_owned(), "henek".to_owned())];
        assert_eq!(prompt(&examples, "lamp"), "cat -> catek  hen -> henek  lamp -> ");
        assert_eq!(prompt(&[], "lamp"), "lamp -> ");
        let doc = docs(1, 3).remove(0);
        let (head, last) = doc.rsplit_once(SEPARATOR).unwrap();
        let (input, output) = last.split_once(ARROW).unwrap();
        let shown: Vec<(String, String)> = head
            .split(SEPARATOR)
            .map(|l| l.split_once(ARROW).map(|(i, o)| (i.to_owned(), o.to_owned())).unwrap())
            .collect();
        assert_eq!(format!("{}{output}", prompt(&shown, input)), doc);
    }

    #[test]
    fn held_out_episodes_ask_unseen_words_of_one_length() {
        let episodes = held_out(3, 10, 4);
        assert_eq!(episodes.len(), HELD_OUT.len());
        for e in &episodes {
            assert_eq!(e.examples.len(), 3);
            assert_eq!(e.questions.len(), 10);
            assert!(e.questions.iter().all(|(i, o)| i.len() == QUESTION_LETTERS && *o == e.rule.apply(i)));
            assert!(e.questions.iter().all(|q| !e.examples.contains(q)), "{}", e.name);
        }
        assert_eq!(episodes, held_out(3, 10, 4), "deterministic in the seed");
    }

    #[test]
    fn eval_tasks_name_each_rule_and_shot_count() {
        let tasks = eval_tasks(&[0, 3], 5, 0);
        assert_eq!(tasks.len(), HELD_OUT.len() * 2 * 5);
        assert_eq!(tasks[0].task, "suffix ek, 0-shot");
        assert!(tasks[0].input.ends_with(" -> ") && !tasks[0].input.contains(SEPARATOR));
        let three = tasks.iter().find(|t| t.task == "suffix ek, 3-shot").unwrap();
        assert_eq!(three.input.matches(ARROW).count(), 4);
        assert!(three.output.ends_with("ek"));
    }
}

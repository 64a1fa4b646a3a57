//! The demo world: a small instruction world whose answers can be checked.
//!
//! No model hub or dataset hub is reachable, so plumb makes its own data. Five skills
//! ([`Skill`]), each with one fixed phrasing that ends in a newline and one exact answer:
//!
//! | skill | prompt | answer |
//! | --- | --- | --- |
//! | reverse | `Reverse the word cat.\n` | `tac` |
//! | uppercase | `Uppercase the word cat.\n` | `CAT` |
//! | sort | `Sort the digits 3142.\n` | `1234` |
//! | add | `Add 3 and 14.\n` | `17` |
//! | repeat | `Repeat the word cat 3 times.\n` | `cat cat cat` |
//!
//! Generated tasks use the [`WORDS`], addends `0..=`[`MAX_ADDEND`], 3 to 5 digits and
//! 2 to 4 repetitions, so prompts stay under 40 bytes and answers under 24: small enough
//! for a tiny byte-level GPT. A training sequence is prompt bytes + response bytes + EOS.
//!
//! A *simulated annotator* knows the answers: [`score`] is the oracle's preference as a
//! number, [`Oracle::rank`] turns it into a K-wise ranking (with tunable noise), and
//! [`synthetic_samples`] makes candidate responses to rank without a model. [`corpus`]
//! is pretraining text in the same language that never shows a task and its answer.

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

pub mod in_context;

/// The words tasks are about: 3 to 5 lowercase letters, none a palindrome (so a
/// reversed word never equals the word).
pub const WORDS: [&str; 100] = [
    "cat", "dog", "cow", "pig", "hen", "fox", "owl", "bee", "ant", "rat", "sun", "moon", "star", "sky",
    "rain", "snow", "wind", "tree", "leaf", "rose", "fish", "bird", "frog", "duck", "lion", "bear", "wolf",
    "goat", "lamb", "deer", "cup", "pot", "pan", "box", "bag", "hat", "coat", "shoe", "sock", "ring", "book",
    "pen", "desk", "lamp", "door", "key", "bed", "rug", "mat", "bell", "ship", "boat", "car", "bus", "road",
    "farm", "town", "hill", "lake", "sea", "milk", "cake", "egg", "rice", "corn", "soup", "bread", "apple",
    "arm", "leg", "hand", "foot", "nose", "head", "hair", "king", "girl", "boy", "baby", "home", "room",
    "wall", "roof", "yard", "park", "shop", "bank", "gold", "coin", "drum", "song", "game", "ball", "kite",
    "doll", "toy", "gift", "card", "map", "bowl",
];

/// Generated additions use addends `0..=MAX_ADDEND`.
pub const MAX_ADDEND: u32 = 19;

/// Generated sorting tasks have this many digits (inclusive range).
const DIGIT_COUNTS: (usize, usize) = (3, 5);
/// Generated repetition tasks repeat a word this many times (inclusive range).
const REPEAT_COUNTS: (u32, u32) = (2, 4);

/// Words the corpus and rambling samples use besides [`WORDS`].
const ADJECTIVES: [&str; 13] =
    ["red", "blue", "green", "big", "small", "old", "new", "hot", "cold", "soft", "fast", "slow", "happy"];
const VERBS: [&str; 5] = ["sees", "likes", "has", "finds", "wants"];
const FILLERS: [&str; 8] = ["is", "the", "and", "it", "so", "yes", "ok", "very"];

/// Corpus documents stop growing at this many bytes, far inside a context of 256.
pub const MAX_DOCUMENT_BYTES: usize = 200;

/// What [`parse_task`] accepts beyond the generated ranges: words and digit strings up
/// to this long, addends up to 9999, and 1 to 9 repetitions.
const MAX_PARSED_LEN: usize = 12;
const MAX_PARSED_ADDEND: u32 = 9999;
const MAX_PARSED_REPEAT: u32 = 9;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum WorldError {
    #[error("unknown skill `{0}` (expected reverse, uppercase, sort, add or repeat)")]
    UnknownSkill(String),
    #[error("unknown split `{0}` (expected train, val or test)")]
    UnknownSplit(String),
    #[error("the oracle's noise must be a finite number ≥ 0, got {0}")]
    Noise(f64),
}

/// An enum of named variants (serde writes the names too): `ALL` in order, `name()`,
/// `FromStr` by name (else the `$unknown` error) and `Display` as the name.
macro_rules! named_enum {
    (
        $(#[$meta:meta])*
        pub enum $ty:ident, unknown = $unknown:path {
            $($variant:ident = $name:literal,)*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $ty {
            $($variant,)*
        }

        impl $ty {
            pub const ALL: [$ty; [$($name),*].len()] = [$($ty::$variant),*];

            pub fn name(self) -> &'static str {
                match self {
                    $($ty::$variant => $name,)*
                }
            }
        }

        impl FromStr for $ty {
            type Err = WorldError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $ty::ALL.into_iter().find(|x| x.name() == s).ok_or_else(|| $unknown(s.to_string()))
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

named_enum! {
    pub enum Skill, unknown = WorldError::UnknownSkill {
        Reverse = "reverse",
        Uppercase = "uppercase",
        Sort = "sort",
        Add = "add",
        Repeat = "repeat",
    }
}

named_enum! {
    /// Which part of the world a task belongs to. The split is a stable hash of the prompt
    /// text (64-bit FNV-1a, modulo 10: 0 → val, 1 → test, otherwise train), so tasks of
    /// different splits never share a prompt, while the words and numbers are shared.
    pub enum Split, unknown = WorldError::UnknownSplit {
        Train = "train",
        Val = "val",
        Test = "test",
    }
}

impl Split {
    pub fn of(prompt: &str) -> Split {
        match fnv1a(prompt.as_bytes()) % 10 {
            0 => Split::Val,
            1 => Split::Test,
            _ => Split::Train,
        }
    }
}

/// Stable across platforms and Rust versions, unlike `std`'s hasher.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// One instruction and its exact answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    pub skill: Skill,
    pub prompt: String,
    pub answer: String,
}

/// What a prompt asks, with its inputs; the prompt and answer are functions of it.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Instruction {
    Reverse(String),
    Uppercase(String),
    Sort(String),
    Add(u32, u32),
    Repeat(String, u32),
}

impl Instruction {
    fn skill(&self) -> Skill {
        match self {
            Instruction::Reverse(_) => Skill::Reverse,
            Instruction::Uppercase(_) => Skill::Uppercase,
            Instruction::Sort(_) => Skill::Sort,
            Instruction::Add(..) => Skill::Add,
            Instruction::Repeat(..) => Skill::Repeat,
        }
    }

    fn prompt(&self) -> String {
        match self {
            Instruction::Reverse(word) => format!("Reverse the word {word}.\n"),
            Instruction::Uppercase(word) => format!("Uppercase the word {word}.\n"),
            Instruction::Sort(digits) => format!("Sort the digits {digits}.\n"),
            Instruction::Add(a, b) => format!("Add {a} and {b}.\n"),
            Instruction::Repeat(word, n) => format!("Repeat the word {word} {n} times.\n"),
        }
    }

    fn answer(&self) -> String {
        match self {
            Instruction::Reverse(word) => word.chars().rev().collect(),
            Instruction::Uppercase(word) => word.to_ascii_uppercase(),
            Instruction::Sort(digits) => {
                let mut sorted: Vec<char> = digits.chars().collect();
                sorted.sort_unstable();
                sorted.into_iter().collect()
            }
            Instruction::Add(a, b) => (a + b).to_string(),
            Instruction::Repeat(word, n) => vec![word.as_str(); *n as usize].join(" "),
        }
    }

    /// The mistake of answering with the input unchanged.
    fn echo(&self) -> String {
        match self {
            Instruction::Reverse(word) | Instruction::Uppercase(word) | Instruction::Repeat(word, _) => {
                word.clone()
            }
            Instruction::Sort(digits) => digits.clone(),
            Instruction::Add(a, b) => format!("{a}{b}"),
        }
    }

    fn task(&self) -> Task {
        Task { skill: self.skill(), prompt: self.prompt(), answer: self.answer() }
    }

    fn random<R: Rng + ?Sized>(skill: Skill, rng: &mut R) -> Instruction {
        let word = pick(&WORDS, rng).to_string();
        match skill {
            Skill::Reverse => Instruction::Reverse(word),
            Skill::Uppercase => Instruction::Uppercase(word),
            Skill::Sort => {
                let len = rng.random_range(DIGIT_COUNTS.0..=DIGIT_COUNTS.1);
                let digits = (0..len).map(|_| char::from(b'0' + rng.random_range(0..10u8))).collect();
                Instruction::Sort(digits)
            }
            Skill::Add => {
                Instruction::Add(rng.random_range(0..=MAX_ADDEND), rng.random_range(0..=MAX_ADDEND))
            }
            Skill::Repeat => Instruction::Repeat(word, rng.random_range(REPEAT_COUNTS.0..=REPEAT_COUNTS.1)),
        }
    }

    /// Only the exact phrasing: the parsed instruction must print back to `prompt`, which
    /// rejects leading zeros, signs, stray spaces and a missing newline.
    fn parse(prompt: &str) -> Option<Instruction> {
        let line = prompt.strip_suffix(".\n")?;
        let instruction = if let Some(word) = line.strip_prefix("Reverse the word ") {
            Instruction::Reverse(word.to_string())
        } else if let Some(word) = line.strip_prefix("Uppercase the word ") {
            Instruction::Uppercase(word.to_string())
        } else if let Some(digits) = line.strip_prefix("Sort the digits ") {
            Instruction::Sort(digits.to_string())
        } else if let Some(rest) = line.strip_prefix("Add ") {
            let (a, b) = rest.split_once(" and ")?;
            Instruction::Add(a.parse().ok()?, b.parse().ok()?)
        } else if let Some(rest) = line.strip_prefix("Repeat the word ") {
            let (word, n) = rest.strip_suffix(" times")?.split_once(' ')?;
            Instruction::Repeat(word.to_string(), n.parse().ok()?)
        } else {
            return None;
        };
        (instruction.is_valid() && instruction.prompt() == prompt).then_some(instruction)
    }

    fn is_valid(&self) -> bool {
        let word_ok =
            |w: &str| (1..=MAX_PARSED_LEN).contains(&w.len()) && w.bytes().all(|b| b.is_ascii_lowercase());
        match self {
            Instruction::Reverse(word) | Instruction::Uppercase(word) => word_ok(word),
            Instruction::Sort(digits) => {
                (1..=MAX_PARSED_LEN).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit())
            }
            Instruction::Add(a, b) => *a <= MAX_PARSED_ADDEND && *b <= MAX_PARSED_ADDEND,
            Instruction::Repeat(word, n) => word_ok(word) && (1..=MAX_PARSED_REPEAT).contains(n),
        }
    }
}

/// The oracle's side of a prompt: the task it asks, from its text alone. Any task in the
/// exact phrasing is recovered, not only generated ones (any lowercase word of up to 12
/// letters, up to 12 digits, addends up to 9999, 1 to 9 repetitions); anything else is
/// `None`.
pub fn parse_task(prompt: &str) -> Option<Task> {
    Instruction::parse(prompt).map(|instruction| instruction.task())
}

/// `n` tasks of the split, each of a skill drawn uniformly, deterministic in `seed`.
/// Drawn with replacement: a large `n` repeats prompts (each skill has at least a few
/// val and test prompts; reverse and uppercase have only 7 to 11 each).
pub fn tasks(n: usize, split: Split, seed: u64) -> Vec<Task> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let skill = pick(&Skill::ALL, &mut rng);
            task_in(skill, split, &mut rng)
        })
        .collect()
}

/// Like [`tasks`], all of one skill.
pub fn tasks_of(skill: Skill, n: usize, split: Split, seed: u64) -> Vec<Task> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| task_in(skill, split, &mut rng)).collect()
}

/// The generator stream for worked examples, apart from the one [`tasks_of`] uses with the
/// same seed.
const EXAMPLE_STREAM: u64 = 2;

/// `n` test tasks of `skill` ([`tasks_of`] with the same seed), each with `shots` worked
/// examples: train tasks of the same skill, deterministic in `seed`. A k-shot prompt for
/// a task shows its first k examples, so that more shots only add examples and the
/// accuracies at different shot counts differ by the examples alone.
pub fn few_shot_tasks(skill: Skill, n: usize, shots: usize, seed: u64) -> Vec<(Task, Vec<Task>)> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(EXAMPLE_STREAM);
    tasks_of(skill, n, Split::Test, seed)
        .into_iter()
        .map(|task| {
            let examples = (0..shots).map(|_| task_in(skill, Split::Train, &mut rng)).collect();
            (task, examples)
        })
        .collect()
}

/// Rejection sampling: about one draw in ten lands in val or test, and every skill has
/// prompts in every split (a test checks it), so this ends quickly.
fn task_in<R: Rng + ?Sized>(skill: Skill, split: Split, rng: &mut R) -> Task {
    loop {
        let instruction = Instruction::random(skill, rng);
        let prompt = instruction.prompt();
        if Split::of(&prompt) == split {
            return instruction.task();
        }
    }
}

fn pick<T: Copy, R: Rng + ?Sized>(items: &[T], rng: &mut R) -> T {
    items[rng.random_range(0..items.len())]
}

/// A pretraining corpus in the world's language: one-line documents of two to six
/// simple lowercase sentences (at most [`MAX_DOCUMENT_BYTES`] bytes) over the same
/// words, uppercase words, digits, sums and instruction verbs, so that a base model
/// knows them; never a prompt in the task phrasing followed by its answer, so that SFT
/// is what teaches the tasks. One document in [`IN_CONTEXT_SHARE`] is instead worked
/// examples of a rule ([`in_context`]), so that the base model learns in context.
pub fn corpus(n_docs: usize, seed: u64) -> Vec<String> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n_docs)
        .map(|_| {
            if rng.random_range(0..IN_CONTEXT_SHARE) == 0 {
                in_context::document(&mut rng)
            } else {
                document(&mut rng)
            }
        })
        .collect()
}

/// One corpus document in this many shows worked examples in context.
pub const IN_CONTEXT_SHARE: u32 = 3;

fn document<R: Rng + ?Sized>(rng: &mut R) -> String {
    let sentences = rng.random_range(2..=6);
    let mut text = sentence(rng);
    for _ in 1..sentences {
        let next = sentence(rng);
        if text.len() + 1 + next.len() > MAX_DOCUMENT_BYTES {
            break;
        }
        text.push(' ');
        text.push_str(&next);
    }
    text
}

fn sentence<R: Rng + ?Sized>(rng: &mut R) -> String {
    let noun = |rng: &mut R| pick(&WORDS, rng);
    match rng.random_range(0..12) {
        0 => format!("the {} is {}.", noun(rng), pick(&ADJECTIVES, rng)),
        1 => {
            let adjective = pick(&ADJECTIVES, rng);
            format!("a {adjective} {} sat by the {}.", noun(rng), noun(rng))
        }
        2 => format!("i see a {} and a {}.", noun(rng), noun(rng)),
        3 => {
            let subject = noun(rng);
            format!("the {subject} {} the {}.", pick(&VERBS, rng), noun(rng))
        }
        4 => {
            let a = rng.random_range(0..=MAX_ADDEND);
            let b = rng.random_range(0..=MAX_ADDEND);
            format!("{a} plus {b} is {}.", a + b)
        }
        5 => format!("the sign said {}.", noun(rng).to_ascii_uppercase()),
        6 => {
            let word = noun(rng);
            format!("the word {word} has {} letters.", word.len())
        }
        7 => {
            let len = rng.random_range(DIGIT_COUNTS.0..=DIGIT_COUNTS.1);
            let first = rng.random_range(1..10u32).to_string();
            let rest: String = (1..len).map(|_| char::from(b'0' + rng.random_range(0..10u8))).collect();
            format!("the number {first}{rest} has {len} digits.")
        }
        8 => {
            let a = rng.random_range(0..9u32);
            let b = rng.random_range(a + 1..10);
            format!("{a} comes before {b}.")
        }
        9 => {
            let verb = pick(&["sort", "reverse", "add", "repeat", "count", "wash"], rng);
            let times = rng.random_range(2..=4);
            format!("we {verb} the {} {times} times.", noun(rng))
        }
        10 => format!("she wrote {} in uppercase.", noun(rng)),
        _ => {
            let a = rng.random_range(0..2 * MAX_ADDEND);
            let b = rng.random_range(a + 1..=2 * MAX_ADDEND);
            format!("{a} is less than {b}.")
        }
    }
}

/// How a sampled response ended: with EOS, or cut at the token limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Finish {
    #[default]
    Eos,
    Length,
}

/// Exact match of the response, whitespace trimmed at both ends.
pub fn is_correct(task: &Task, response: &str) -> bool {
    response.trim() == task.answer
}

/// The oracle's score of a response (without its EOS), in [-1, 1]: correct beats wrong,
/// concise beats rambling, a clean stop beats repetition.
///
/// The trimmed response is cut into a *head*, its first m whitespace-separated words
/// (m = the answer's word count, with their original spacing), and a *tail*, the rest.
/// With c = 1 − edit_distance(head, answer) / max(chars(head), chars(answer)) in
/// characters:
///
/// ```text
/// score = accuracy − verbosity − repetition − truncation   (∈ (-1, 1], clamped against rounding)
/// accuracy   = 1                        if head == answer
///              0.8·c − 0.4 ∈ [-0.4, 0.4) otherwise (partial credit for closeness)
/// verbosity  = 0.3·(1 − exp(−chars(tail) / 10))
/// repetition = 0.2 · (tail words equal to an earlier word of the response) / (tail words)
/// truncation = 0.1 if the sample was cut at the token limit (Finish::Length), else 0
/// ```
///
/// So a response that starts with the answer always beats one that does not (≥ 0.4
/// against < 0.4), exactly the answer with EOS scores 1, and anything else less.
pub fn score(task: &Task, response: &str, finish: Finish) -> f64 {
    let answer = task.answer.as_str();
    let (head, tail) = split_head(response.trim(), answer.split_whitespace().count());
    let accuracy = if head == answer { 1.0 } else { 0.8 * closeness(head, answer) - 0.4 };
    let verbosity = 0.3 * (1.0 - (-(tail.chars().count() as f64) / 10.0).exp());
    let repetition = 0.2 * repeated_fraction(head, tail);
    let truncation = match finish {
        Finish::Eos => 0.0,
        Finish::Length => 0.1,
    };
    // The clamp only catches rounding: the terms alone stay within [-1, 1].
    (accuracy - verbosity - repetition - truncation).clamp(-1.0, 1.0)
}

/// The first `words` words of a trimmed response (spacing kept) and the rest.
fn split_head(response: &str, words: usize) -> (&str, &str) {
    let mut seen = 0;
    let mut in_word = false;
    for (i, ch) in response.char_indices() {
        if ch.is_whitespace() {
            if in_word {
                seen += 1;
                if seen == words {
                    return (&response[..i], response[i..].trim_start());
                }
            }
            in_word = false;
        } else {
            in_word = true;
        }
    }
    (response, "")
}

fn closeness(head: &str, answer: &str) -> f64 {
    let longest = head.chars().count().max(answer.chars().count());
    if longest == 0 {
        return 1.0;
    }
    1.0 - edit_distance(head, answer) as f64 / longest as f64
}

/// Levenshtein distance in characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, &cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

fn repeated_fraction(head: &str, tail: &str) -> f64 {
    let mut seen: HashSet<&str> = head.split_whitespace().collect();
    let (mut words, mut repeated) = (0usize, 0usize);
    for word in tail.split_whitespace() {
        words += 1;
        if !seen.insert(word) {
            repeated += 1;
        }
    }
    if words == 0 {
        0.0
    } else {
        repeated as f64 / words as f64
    }
}

/// Scores closer than this are equal: a tie.
const TIE: f64 = 1e-9;

/// The simulated annotator: ranks by [`score`], with noise.
///
/// Noise p is Gumbel noise of scale p added to each distinct score before sorting (the
/// Plackett–Luce model): two samples come out in the order a ≻ b with probability
/// σ((score(a) − score(b)) / p), the Bradley–Terry model the reward model is trained
/// with. p = 0 ranks by score exactly and draws nothing from the generator. Samples with
/// equal scores (identical samples among them) share one draw, so they always tie.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Oracle {
    noise: f64,
}

impl Oracle {
    pub fn new(noise: f64) -> Result<Oracle, WorldError> {
        if noise.is_finite() && noise >= 0.0 {
            Ok(Oracle { noise })
        } else {
            Err(WorldError::Noise(noise))
        }
    }

    /// The noiseless annotator.
    pub fn exact() -> Oracle {
        Oracle { noise: 0.0 }
    }

    pub fn noise(&self) -> f64 {
        self.noise
    }

    /// A K-wise ranking of samples that all ended with EOS, in plumb's format: groups of
    /// sample indices, best first; a group of several is a tie; every index once.
    pub fn rank<S: AsRef<str>, R: Rng + ?Sized>(
        &self,
        task: &Task,
        samples: &[S],
        rng: &mut R,
    ) -> Vec<Vec<usize>> {
        let scores: Vec<f64> = samples.iter().map(|s| score(task, s.as_ref(), Finish::Eos)).collect();
        self.rank_scores(&scores, rng)
    }

    /// The ranking of already computed scores (for samples with their own [`Finish`]).
    pub fn rank_scores<R: Rng + ?Sized>(&self, scores: &[f64], rng: &mut R) -> Vec<Vec<usize>> {
        let mut order: Vec<usize> = (0..scores.len()).collect();
        order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
        let mut groups: Vec<(f64, Vec<usize>)> = Vec::new();
        for index in order {
            match groups.last_mut() {
                Some((score, members)) if (*score - scores[index]).abs() <= TIE => members.push(index),
                _ => groups.push((scores[index], vec![index])),
            }
        }
        if self.noise > 0.0 {
            for (score, _) in &mut groups {
                *score += self.noise * gumbel(rng);
            }
            groups.sort_by(|a, b| b.0.total_cmp(&a.0));
        }
        groups
            .into_iter()
            .map(|(_, mut members)| {
                members.sort_unstable();
                members
            })
            .collect()
    }

    /// Pairwise preference: `Some(true)` when `a` is preferred, `None` for a tie.
    pub fn prefers<R: Rng + ?Sized>(&self, task: &Task, a: &str, b: &str, rng: &mut R) -> Option<bool> {
        match self.rank(task, &[a, b], rng).as_slice() {
            [best, _] => Some(best[0] == 0),
            _ => None,
        }
    }
}

/// A standard Gumbel draw: −ln(−ln u), u uniform in (0, 1).
fn gumbel<R: Rng + ?Sized>(rng: &mut R) -> f64 {
    let u: f64 = rng.random();
    -(-u.max(f64::MIN_POSITIVE).ln()).ln()
}

/// The kinds of candidate a synthetic sample is, each with its place in the oracle's
/// preferences.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Candidate {
    /// The answer.
    Correct,
    /// The answer with one character substituted, inserted, deleted or two swapped.
    NearMiss,
    /// The input echoed, or the answer to another task of the same skill.
    Wrong,
    /// The answer and then one to four more words.
    Rambling,
    /// The answer two to four times.
    Repeated,
    /// Nothing, or a lone punctuation mark.
    Empty,
}

const CANDIDATES: [Candidate; 6] = [
    Candidate::Correct,
    Candidate::NearMiss,
    Candidate::Wrong,
    Candidate::Rambling,
    Candidate::Repeated,
    Candidate::Empty,
];

/// K candidate responses to a task without a model, each of a kind drawn uniformly:
/// correct, one character off, wrong (the input echoed or another task's answer),
/// rambling (the answer and more words), repeated (the answer 2–4 times), empty-ish.
/// Duplicates are redrawn a few times, so samples are distinct unless K is large for
/// the task; rankings of them carry the oracle's preferences.
pub fn synthetic_samples<R: Rng + ?Sized>(task: &Task, k: usize, rng: &mut R) -> Vec<String> {
    let mut samples: Vec<String> = Vec::with_capacity(k);
    for _ in 0..k {
        let mut sample = candidate(task, pick(&CANDIDATES, rng), rng);
        for _ in 0..20 {
            if !samples.contains(&sample) {
                break;
            }
            sample = candidate(task, pick(&CANDIDATES, rng), rng);
        }
        samples.push(sample);
    }
    samples
}

fn candidate<R: Rng + ?Sized>(task: &Task, kind: Candidate, rng: &mut R) -> String {
    let answer = task.answer.as_str();
    match kind {
        Candidate::Correct => answer.to_string(),
        Candidate::NearMiss => near_miss(answer, rng),
        Candidate::Wrong => wrong(task, rng),
        Candidate::Rambling => {
            let extra = rng.random_range(1..=4);
            let mut text = answer.to_string();
            for _ in 0..extra {
                text.push(' ');
                text.push_str(match rng.random_range(0..3) {
                    0 => pick(&WORDS, rng),
                    1 => pick(&ADJECTIVES, rng),
                    _ => pick(&FILLERS, rng),
                });
            }
            text
        }
        Candidate::Repeated => vec![answer; rng.random_range(2..=4)].join(" "),
        Candidate::Empty => pick(&["", ".", "?"], rng).to_string(),
    }
}

fn near_miss<R: Rng + ?Sized>(answer: &str, rng: &mut R) -> String {
    let mut chars: Vec<char> = answer.chars().collect();
    if chars.is_empty() {
        return "x".to_string();
    }
    let i = rng.random_range(0..chars.len());
    match rng.random_range(0..4) {
        0 if chars.len() > 1 => {
            chars.remove(i);
        }
        1 => chars.insert(i, like(chars[i], rng)),
        2 if i + 1 < chars.len() && chars[i] != chars[i + 1] => chars.swap(i, i + 1),
        _ => {
            let original = chars[i];
            let mut replacement = like(original, rng);
            while replacement == original {
                replacement = like(original, rng);
            }
            chars[i] = replacement;
        }
    }
    chars.into_iter().collect()
}

/// A random character of the same class: a digit for a digit, an uppercase letter for
/// an uppercase letter, otherwise a lowercase letter.
fn like<R: Rng + ?Sized>(c: char, rng: &mut R) -> char {
    let (first, count) = if c.is_ascii_digit() {
        (b'0', 10)
    } else if c.is_ascii_uppercase() {
        (b'A', 26)
    } else {
        (b'a', 26)
    };
    char::from(first + rng.random_range(0..count))
}

fn wrong<R: Rng + ?Sized>(task: &Task, rng: &mut R) -> String {
    if rng.random_bool(0.5) {
        if let Some(echo) = Instruction::parse(&task.prompt).map(|i| i.echo()) {
            if echo != task.answer {
                return echo;
            }
        }
    }
    for _ in 0..100 {
        let other = Instruction::random(task.skill, rng).answer();
        if other != task.answer {
            return other;
        }
    }
    near_miss(&task.answer, rng)
}

/// What a sloppy demonstrator pads an answer with ("0345 ok ok ok"): rambling and
/// repetition, which [`score`] penalises. `plumb annotate --simulate --sloppy P` pads a
/// share P of its demonstrations with one of them.
pub const FILLER: [&str; 4] = [" ok ok ok", " yes yes yes", " it is it is", " so so so so"];

/// A demonstration line: `{"prompt", "response"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Demonstration {
    pub prompt: String,
    pub response: String,
}

/// A prompt line: `{"prompt"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prompt {
    pub prompt: String,
}

/// A ranking line: `{"prompt", "samples", "ranking"}`, the ranking as groups of sample
/// indices, best first, a group of several being a tie.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ranking {
    pub prompt: String,
    pub samples: Vec<String>,
    pub ranking: Vec<Vec<usize>>,
}

/// A corpus line: `{"text"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Document {
    pub text: String,
}

impl From<&Task> for Demonstration {
    fn from(task: &Task) -> Self {
        Demonstration { prompt: task.prompt.clone(), response: task.answer.clone() }
    }
}

impl From<&Task> for Prompt {
    fn from(task: &Task) -> Self {
        Prompt { prompt: task.prompt.clone() }
    }
}

impl From<String> for Document {
    fn from(text: String) -> Self {
        Document { text }
    }
}

/// The generator stream for rankings, apart from the one [`tasks`] uses with the same seed.
const RANKING_STREAM: u64 = 1;

/// For each task, `k` [`synthetic_samples`] ranked by the oracle; deterministic in `seed`.
pub fn rankings(tasks: &[Task], k: usize, oracle: &Oracle, seed: u64) -> Vec<Ranking> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(RANKING_STREAM);
    tasks
        .iter()
        .map(|task| {
            let samples = synthetic_samples(task, k, &mut rng);
            let ranking = oracle.rank(task, &samples, &mut rng);
            Ranking { prompt: task.prompt.clone(), samples, ranking }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(prompt: &str) -> Task {
        parse_task(prompt).expect("a demo-world prompt")
    }

    fn eos(task: &Task, response: &str) -> f64 {
        score(task, response, Finish::Eos)
    }

    /// The responses' scores for `task` (ended by EOS), asserted to fall strictly in the
    /// order given.
    fn assert_scores_fall(task: &Task, responses: &[&str]) -> Vec<f64> {
        let scores: Vec<f64> = responses.iter().map(|r| eos(task, r)).collect();
        assert!(scores.windows(2).all(|w| w[0] > w[1]), "{responses:?}: {scores:?}");
        scores
    }

    /// Every task of a skill in the generated ranges.
    fn every_task(skill: Skill) -> Vec<Task> {
        let instructions: Vec<Instruction> = match skill {
            Skill::Reverse => WORDS.map(|w| Instruction::Reverse(w.into())).to_vec(),
            Skill::Uppercase => WORDS.map(|w| Instruction::Uppercase(w.into())).to_vec(),
            Skill::Sort => (DIGIT_COUNTS.0..=DIGIT_COUNTS.1)
                .flat_map(|len| {
                    (0..10u64.pow(len as u32)).map(move |n| Instruction::Sort(format!("{n:0len$}")))
                })
                .collect(),
            Skill::Add => {
                (0..=MAX_ADDEND).flat_map(|a| (0..=MAX_ADDEND).map(move |b| Instruction::Add(a, b))).collect()
            }
            Skill::Repeat => WORDS
                .iter()
                .flat_map(|w| {
                    (REPEAT_COUNTS.0..=REPEAT_COUNTS.1).map(|n| Instruction::Repeat(w.to_string(), n))
                })
                .collect(),
        };
        instructions.iter().map(Instruction::task).collect()
    }

    #[test]
    fn each_skill_answers_its_example() {
        let examples = [
            ("Reverse the word cat.\n", "tac"),
            ("Uppercase the word cat.\n", "CAT"),
            ("Sort the digits 3142.\n", "1234"),
            ("Add 3 and 14.\n", "17"),
            ("Repeat the word cat 3 times.\n", "cat cat cat"),
        ];
        for (prompt, answer) in examples {
            assert_eq!(task(prompt).answer, answer, "{prompt:?}");
        }
    }

    #[test]
    fn parse_task_recovers_every_generated_task() {
        for split in [Split::Train, Split::Val, Split::Test] {
            for generated in tasks(500, split, 7) {
                assert_eq!(parse_task(&generated.prompt), Some(generated));
            }
        }
    }

    #[test]
    fn parse_task_rejects_other_phrasings() {
        for prompt in [
            "Reverse the word cat.",
            "Reverse the word cat\n",
            "reverse the word cat.\n",
            "Reverse the word Cat.\n",
            "Reverse the word  cat.\n",
            "Reverse the word cat dog.\n",
            "Add 03 and 4.\n",
            "Add +3 and 4.\n",
            "Add 3 and 4 and 5.\n",
            "Sort the digits 3a42.\n",
            "Repeat the word cat 0 times.\n",
            "Repeat the word cat three times.\n",
            "Tell me a story.\n",
        ] {
            assert_eq!(parse_task(prompt), None, "{prompt:?}");
        }
    }

    #[test]
    fn parse_task_accepts_words_outside_the_vocabulary() {
        assert_eq!(task("Reverse the word plumb.\n").answer, "bmulp");
    }

    #[test]
    fn splits_never_share_a_prompt() {
        let prompts =
            |split| -> HashSet<String> { tasks(3000, split, 1).into_iter().map(|t| t.prompt).collect() };
        let (train, val, test) = (prompts(Split::Train), prompts(Split::Val), prompts(Split::Test));
        assert!(train.is_disjoint(&val));
        assert!(train.is_disjoint(&test));
        assert!(val.is_disjoint(&test));
        for (split, prompts) in [(Split::Train, &train), (Split::Val, &val), (Split::Test, &test)] {
            assert!(prompts.iter().all(|p| Split::of(p) == split));
        }
    }

    #[test]
    fn every_skill_has_prompts_in_every_split() {
        for skill in Skill::ALL {
            let all = every_task(skill);
            for split in [Split::Train, Split::Val, Split::Test] {
                let count = all.iter().filter(|t| Split::of(&t.prompt) == split).count();
                assert!(count >= 5, "{skill} has {count} {split} prompts");
            }
        }
    }

    #[test]
    fn tasks_are_deterministic_in_the_seed() {
        assert_eq!(tasks(50, Split::Train, 3), tasks(50, Split::Train, 3));
        assert_ne!(tasks(50, Split::Train, 3), tasks(50, Split::Train, 4));
    }

    #[test]
    fn tasks_mix_every_skill_and_tasks_of_keeps_to_one() {
        let mixed: HashSet<Skill> = tasks(200, Split::Val, 0).iter().map(|t| t.skill).collect();
        assert_eq!(mixed.len(), Skill::ALL.len());
        for skill in Skill::ALL {
            assert!(tasks_of(skill, 50, Split::Test, 0).iter().all(|t| t.skill == skill));
        }
    }

    #[test]
    fn few_shot_tasks_are_test_tasks_with_train_examples_of_their_skill() {
        for skill in Skill::ALL {
            let few_shot = few_shot_tasks(skill, 20, 3, 5);
            let tasks: Vec<Task> = few_shot.iter().map(|(task, _)| task.clone()).collect();
            assert_eq!(tasks, tasks_of(skill, 20, Split::Test, 5));
            for (_, examples) in &few_shot {
                assert_eq!(examples.len(), 3);
                assert!(examples.iter().all(|e| e.skill == skill && Split::of(&e.prompt) == Split::Train));
            }
            assert_eq!(few_shot, few_shot_tasks(skill, 20, 3, 5), "deterministic in the seed");
            let shown: HashSet<&str> =
                few_shot.iter().flat_map(|(_, e)| e.iter().map(|e| e.prompt.as_str())).collect();
            assert!(shown.len() > 10, "{skill}: the tasks do not all show the same examples");
        }
    }

    #[test]
    fn prompts_and_answers_stay_short() {
        for skill in Skill::ALL {
            for t in every_task(skill) {
                assert!(t.prompt.len() <= 40, "{:?}", t.prompt);
                assert!(t.answer.len() <= 24, "{:?}", t.answer);
            }
        }
    }

    #[test]
    fn no_word_is_a_palindrome_or_a_duplicate() {
        let unique: HashSet<&str> = WORDS.into_iter().collect();
        assert_eq!(unique.len(), WORDS.len());
        for word in WORDS {
            assert_ne!(word.chars().rev().collect::<String>(), word);
            assert!((3..=5).contains(&word.len()) && word.bytes().all(|b| b.is_ascii_lowercase()));
        }
    }

    #[test]
    fn the_corpus_never_contains_a_prompt() {
        let phrasings =
            ["Reverse the word", "Uppercase the word", "Sort the digits", "Add ", "Repeat the word", "\n"];
        for doc in corpus(2000, 5) {
            for phrasing in phrasings {
                assert!(!doc.contains(phrasing), "{doc:?} contains {phrasing:?}");
            }
            for sentence in doc.split_inclusive('.') {
                assert_eq!(parse_task(&format!("{}\n", sentence.trim())), None, "{doc:?}");
            }
        }
    }

    #[test]
    fn the_corpus_uses_every_word_in_lower_and_upper_case() {
        let text = corpus(3000, 2).join(" ");
        for word in WORDS {
            assert!(text.contains(&format!(" {word}")), "{word} missing");
            assert!(text.contains(&word.to_ascii_uppercase()), "{word} never uppercase");
        }
    }

    #[test]
    fn corpus_documents_fit_the_context() {
        let docs = corpus(1000, 9);
        assert_eq!(docs.len(), 1000);
        assert!(docs.iter().all(|d| !d.is_empty() && d.len() <= MAX_DOCUMENT_BYTES));
        assert_eq!(docs, corpus(1000, 9));
    }

    #[test]
    fn the_answer_scores_one_and_is_correct() {
        for t in tasks(100, Split::Train, 0) {
            assert_eq!(eos(&t, &t.answer), 1.0);
            assert_eq!(eos(&t, &format!(" {}\n", t.answer)), 1.0);
            assert!(is_correct(&t, &format!("{}\n", t.answer)));
        }
    }

    #[test]
    fn a_correct_answer_outscores_a_wrong_one() {
        let t = task("Reverse the word cat.\n");
        assert!(eos(&t, "tac") > eos(&t, "cat"));
        assert!(!is_correct(&t, "cat"));
        assert!(eos(&t, "cat") < 0.0);
    }

    #[test]
    fn partial_credit_grows_with_closeness() {
        let scores = assert_scores_fall(&task("Sort the digits 97531.\n"), &["13559", "31579", "xxxxx"]);
        assert!((scores[2] - -0.4).abs() < 1e-12);
    }

    #[test]
    fn starting_with_the_answer_beats_any_near_miss() {
        let t = task("Uppercase the word bread.\n");
        let long_ramble = "BREAD is the very big old red bread bread bread";
        assert!(score(&t, long_ramble, Finish::Length) > eos(&t, "BREAT"));
    }

    #[test]
    fn a_word_that_merely_starts_like_the_answer_is_not_the_answer() {
        let t = task("Reverse the word cat.\n");
        assert!(eos(&t, "tacos") < 0.4);
    }

    #[test]
    fn rambling_scores_below_the_concise_answer() {
        assert_scores_fall(&task("Add 12 and 5.\n"), &["17", "17 ok", "17 is the sum of them"]);
    }

    #[test]
    fn repetition_scores_below_rambling_of_the_same_length() {
        let t = task("Reverse the word cat.\n");
        let (rambling, repeated) = (eos(&t, "tac dog pen"), eos(&t, "tac tac tac"));
        assert!(repeated < rambling, "{repeated} {rambling}");
    }

    #[test]
    fn the_repeat_answer_is_not_penalised_as_repetition() {
        let t = task("Repeat the word cat 3 times.\n");
        assert_eq!(eos(&t, "cat cat cat"), 1.0);
        assert!(eos(&t, "cat cat cat cat") < eos(&t, "cat cat cat"));
        assert!(eos(&t, "cat  cat cat") < 0.4);
    }

    #[test]
    fn a_sample_cut_at_the_limit_scores_below_one_that_stopped() {
        let t = task("Add 3 and 4.\n");
        assert!(score(&t, "7 7 7 7", Finish::Length) < score(&t, "7 7 7 7", Finish::Eos));
    }

    #[test]
    fn scores_stay_within_minus_one_and_one() {
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        for t in tasks(200, Split::Train, 1) {
            for sample in synthetic_samples(&t, 9, &mut rng) {
                for finish in [Finish::Eos, Finish::Length] {
                    let s = score(&t, &sample, finish);
                    assert!((-1.0..=1.0).contains(&s), "{sample:?} scored {s}");
                }
            }
        }
        let garbage = "zz ".repeat(200);
        let s = score(&task("Add 3 and 4.\n"), &garbage, Finish::Length);
        assert!(s >= -1.0, "{s}");
    }

    #[test]
    fn edit_distance_counts_single_character_edits() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("tac", "tac"), 0);
    }

    #[test]
    fn noise_zero_ranking_is_sorted_by_score() {
        let t = task("Reverse the word frog.\n");
        let samples = ["gorf gorf", "", "gorf", "gofr", "dorf", "gorf is it"];
        let ranking = Oracle::exact().rank(&t, &samples, &mut ChaCha8Rng::seed_from_u64(0));
        let scores: Vec<f64> = ranking.iter().map(|g| eos(&t, samples[g[0]])).collect();
        assert!(scores.windows(2).all(|w| w[0] > w[1]), "{scores:?}");
        assert_eq!(ranking[0], vec![2]);
        assert_eq!(ranking.last(), Some(&vec![1]));
    }

    #[test]
    fn identical_samples_tie_even_with_noise() {
        let t = task("Add 1 and 1.\n");
        let samples = ["2", "3", "2", "2 2"];
        let oracle = Oracle::new(0.5).expect("valid noise");
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        for _ in 0..50 {
            let ranking = oracle.rank(&t, &samples, &mut rng);
            assert!(ranking.contains(&vec![0, 2]), "{ranking:?}");
        }
        assert_eq!(oracle.prefers(&t, "2", "2", &mut rng), None);
    }

    #[test]
    fn a_ranking_contains_every_sample_once() {
        let oracle = Oracle::new(0.3).expect("valid noise");
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        for t in tasks(300, Split::Train, 2) {
            let samples = synthetic_samples(&t, 9, &mut rng);
            let mut seen: Vec<usize> = oracle.rank(&t, &samples, &mut rng).concat();
            seen.sort_unstable();
            assert_eq!(seen, (0..9).collect::<Vec<_>>());
        }
    }

    #[test]
    fn noise_flips_a_pair_as_bradley_terry_predicts() {
        let t = task("Add 3 and 4.\n");
        let (a, b) = ("7 ok", "7 ok ok ok");
        let gap = eos(&t, a) - eos(&t, b);
        let oracle = Oracle::new(0.1).expect("valid noise");
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let trials = 4000;
        let wins = (0..trials).filter(|_| oracle.prefers(&t, a, b, &mut rng) == Some(true)).count();
        let expected = 1.0 / (1.0 + (-gap / 0.1).exp());
        let observed = wins as f64 / trials as f64;
        assert!((observed - expected).abs() < 0.03, "{observed} vs {expected}");
        assert!(observed < 0.99, "the noise never flipped the pair");
    }

    #[test]
    fn negative_or_infinite_noise_is_rejected() {
        assert_eq!(Oracle::new(-0.1), Err(WorldError::Noise(-0.1)));
        assert!(Oracle::new(f64::INFINITY).is_err());
        assert!(Oracle::new(f64::NAN).is_err());
    }

    #[test]
    fn synthetic_samples_mix_correct_wrong_and_rambling() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let (mut correct, mut wrong, mut longer) = (0, 0, 0);
        for t in tasks(200, Split::Train, 3) {
            let samples = synthetic_samples(&t, 4, &mut rng);
            assert_eq!(samples.len(), 4);
            let distinct: HashSet<&String> = samples.iter().collect();
            assert_eq!(distinct.len(), 4, "{samples:?}");
            for s in &samples {
                if is_correct(&t, s) {
                    correct += 1;
                } else if s.starts_with(&t.answer) {
                    longer += 1;
                } else {
                    wrong += 1;
                }
            }
        }
        assert!(correct > 50 && wrong > 200 && longer > 200, "{correct} {wrong} {longer}");
    }

    #[test]
    fn near_misses_are_one_edit_away() {
        let mut rng = ChaCha8Rng::seed_from_u64(8);
        for t in tasks(300, Split::Train, 8) {
            let miss = near_miss(&t.answer, &mut rng);
            let distance = edit_distance(&miss, &t.answer);
            assert!((1..=2).contains(&distance), "{miss:?} vs {:?}", t.answer);
        }
    }

    #[test]
    fn rankings_are_deterministic_and_keep_k_samples() {
        let tasks = tasks(20, Split::Val, 6);
        let oracle = Oracle::new(0.2).expect("valid noise");
        let first = rankings(&tasks, 5, &oracle, 6);
        assert_eq!(first, rankings(&tasks, 5, &oracle, 6));
        for (ranking, task) in first.iter().zip(&tasks) {
            assert_eq!(ranking.prompt, task.prompt);
            assert_eq!(ranking.samples.len(), 5);
        }
    }

    #[test]
    fn records_serialise_to_the_plumb_formats() {
        let t = task("Reverse the word cat.\n");
        assert_eq!(
            line(&Demonstration::from(&t)),
            r#"{"prompt":"Reverse the word cat.\n","response":"tac"}"#
        );
        assert_eq!(line(&Prompt::from(&t)), r#"{"prompt":"Reverse the word cat.\n"}"#);
        assert_eq!(line(&Document::from("a b".to_string())), r#"{"text":"a b"}"#);
        let ranking = Ranking {
            prompt: t.prompt.clone(),
            samples: vec!["tac".into(), "cat".into()],
            ranking: vec![vec![0], vec![1]],
        };
        assert_eq!(
            line(&ranking),
            r#"{"prompt":"Reverse the word cat.\n","samples":["tac","cat"],"ranking":[[0],[1]]}"#
        );
    }

    fn line<T: Serialize>(record: &T) -> String {
        serde_json::to_string(record).expect("serialisable")
    }

    #[test]
    fn skills_and_splits_parse_from_their_names() {
        for skill in Skill::ALL {
            assert_eq!(skill.name().parse(), Ok(skill));
        }
        assert_eq!("val".parse(), Ok(Split::Val));
        assert!("sorting".parse::<Skill>().is_err());
        assert!("dev".parse::<Split>().is_err());
    }
}

//! `make bench`'s task families (bench/task_families.py), two of them at a tiny budget: a
//! tiny byte model fine-tuned and a reward model trained with the stages' default
//! settings (no learning rate or dropout given, so the rules of the model's width decide
//! them) learn tasks that nobody tuned those defaults for. InstructGPT's 175B settings
//! leave exact match and the RM's accuracy near their untrained values.

#![cfg(feature = "trainer")]

use std::path::Path;

use serde_json::{json, Value};

use crate::helpers::*;

/// Demonstrations and rankings per family, and held-out inputs.
const TRAIN: usize = 2000;
const HELD_OUT: usize = 50;
const SFT_STEPS: &str = "300";
const RM_STEPS: &str = "100";
const BATCH: &str = "32";

/// A seeded stream of numbers (SplitMix64): the same seed gives the same task.
struct Stream(u64);

impl Stream {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) % n as u64) as usize
    }

    fn word(&mut self) -> String {
        let len = 3 + self.below(4);
        (0..len).map(|_| (b'a' + self.below(26) as u8) as char).collect()
    }
}

/// A task family: an input's correct output.
type Family = fn(&str) -> String;

fn uppercase(input: &str) -> String {
    input.to_uppercase()
}

fn brackets(input: &str) -> String {
    format!("[{input}]")
}

/// Distinct words, held-out ones first: no held-out input is trained on.
fn split(seed: u64) -> (Vec<String>, Vec<String>) {
    let mut stream = Stream(seed);
    let mut words: Vec<String> = Vec::new();
    while words.len() < TRAIN + HELD_OUT {
        let word = stream.word();
        if !words.contains(&word) {
            words.push(word);
        }
    }
    let train = words.split_off(HELD_OUT);
    (train, words)
}

fn prompt(input: &str) -> String {
    format!("{input}>")
}

/// `output` with one of its characters replaced by a letter it lacks (of the same case):
/// as long, and wrong.
fn corrupted(output: &str, stream: &mut Stream) -> String {
    let mut chars: Vec<char> = output.chars().collect();
    let i = stream.below(chars.len());
    let letters = if chars[i].is_ascii_uppercase() { 'A'..='Z' } else { 'a'..='z' };
    let absent: Vec<char> = letters.filter(|c| !chars.contains(c)).collect();
    chars[i] = absent[stream.below(absent.len())];
    chars.into_iter().collect()
}

fn write_lines(path: &Path, rows: impl Iterator<Item = Value>) -> String {
    let text: String = rows.map(|row| format!("{row}\n")).collect();
    std::fs::write(path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

/// The largest `lr` a run logged in its metrics.jsonl.
fn peak_lr(run: &Path) -> f64 {
    let text = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    json_lines(text.as_bytes()).iter().filter_map(|m| m["lr"].as_f64()).fold(0.0, f64::max)
}

/// SFT's held-out exact match (greedy, ended by EOS) and the RM's held-out pairwise
/// accuracy for `family`, trained with the defaults and `extra` flags.
fn learn(family: Family, seed: u64, extra: &[&str]) -> (f64, f64, f64) {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let (train, held_out) = split(seed);
    let mut stream = Stream(seed + 1);
    let demos = write_lines(
        &dir.path().join("demos.jsonl"),
        train.iter().map(|w| json!({"prompt": prompt(w), "response": family(w)})),
    );
    let mut rank = |words: &[String], name: &str| {
        let rows: Vec<Value> = words
            .iter()
            .map(|w| {
                let good = family(w);
                json!({"prompt": prompt(w), "chosen": good, "rejected": corrupted(&good, &mut stream)})
            })
            .collect();
        write_lines(&dir.path().join(name), rows.into_iter())
    };
    let (rankings, held_out_rankings) = (rank(&train, "rankings.jsonl"), rank(&held_out, "held_out.jsonl"));
    let (base, sft, rm) = (path("base"), path("sft"), path("rm"));
    let seed_text = seed.to_string();
    plumb_ok(&["init", "--preset", "tiny", "--tokenizer", "bytes", "--out", &base, "--seed", &seed_text], "");
    let common = ["--batch-size", BATCH, "--seed", &seed_text, "--device", "cpu"];

    let sft_args = [
        &["sft", "--model", &base, "--data", &demos, "--out", &sft, "--steps", SFT_STEPS][..],
        &common,
        extra,
    ];
    plumb_ok(&sft_args.concat(), "");
    let prompts: String = held_out.iter().map(|w| format!("{}\n", json!({"prompt": prompt(w)}))).collect();
    let completions = plumb_ok(
        &[
            "generate",
            "--model",
            &sft,
            "--max-new-tokens",
            "12",
            "--temperature",
            "0",
            "--batch-size",
            "50",
            "--device",
            "cpu",
        ],
        &prompts,
    );
    let hits = completions
        .iter()
        .zip(&held_out)
        .filter(|(c, w)| c["finish_reason"] == "eos" && c["completion"] == family(w).as_str())
        .count();
    let exact_match = hits as f64 / held_out.len() as f64;

    let rm_args = [
        &[
            "reward",
            "train",
            "--model",
            &sft,
            "--data",
            &rankings,
            "--val-data",
            &held_out_rankings,
            "--out",
            &rm,
            "--steps",
            RM_STEPS,
        ][..],
        &common,
        extra,
    ];
    let report = plumb_ok(&rm_args.concat(), "");
    let accuracy = report.last().unwrap()["val_accuracy"].as_f64().unwrap();
    (exact_match, accuracy, peak_lr(Path::new(&sft)))
}

fn assert_learns(name: &str, family: Family, seed: u64) {
    let (exact_match, accuracy, sft_lr) = learn(family, seed, &[][..]);
    eprintln!("{name}: SFT exact match {exact_match:.2} (lr {sft_lr:e}), RM accuracy {accuracy:.2}");
    // The rule's rate for a 128-wide model, not InstructGPT's.
    assert!(sft_lr > 1e-4, "{name}: SFT's default peak lr {sft_lr:e} is a large model's");
    assert!(exact_match >= 0.3, "{name}: SFT's held-out exact match {exact_match:.2} with the defaults");
    assert!(accuracy >= 0.8, "{name}: the RM's held-out accuracy {accuracy:.2} with the defaults");
}

#[test]
fn the_defaults_learn_uppercase_on_held_out_words() {
    assert_learns("uppercase", uppercase, 11);
}

#[test]
fn the_defaults_learn_bracket_wrapping_on_held_out_words() {
    assert_learns("brackets", brackets, 12);
}

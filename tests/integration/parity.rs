//! plumb against the reference implementations: transformers' GPT-2 and tiktoken.

use crate::helpers::*;

const TEXTS: &[&str] = &[
    "The quick brown fox jumps over the lazy dog.",
    "Reverse the word 'plumb': bmulp",
    "fn main() {\n    println!(\"{}\", 2 + 2);\n}",
    "A",
];

/// A random GPT-2 written by `GPT2LMHeadModel.save_pretrained`.
fn transformers_checkpoint(dir: &std::path::Path, init_range: &str) -> String {
    let out = dir.join("hf").to_str().unwrap().to_string();
    reference(&["make-checkpoint", "--out", &out, "--seed", "7", "--init-range", init_range], "");
    out
}

fn assert_scores_match_transformers(model: &str) {
    let ours = plumb_ok(&["score", "--model", model, "--device", "cpu"], &jsonl("text", TEXTS));
    let stdin: String =
        ours.iter().map(|r| serde_json::json!({ "ids": r["ids"] }).to_string() + "\n").collect();
    let theirs = reference(&["logprobs", "--model", model], &stdin);
    assert_eq!(ours.len(), TEXTS.len());
    for (text, (a, b)) in TEXTS.iter().zip(ours.iter().zip(&theirs)) {
        let diff = max_abs_diff(&floats(a, "logprobs"), &floats(b, "logprobs"));
        assert!(diff < 1e-4, "{text:?}: log-probs differ by {diff}");
    }
}

#[test]
fn a_transformers_checkpoint_gives_the_log_probs_of_transformers() {
    let dir = tempfile::tempdir().unwrap();
    let model = transformers_checkpoint(dir.path(), "0.02");
    assert_scores_match_transformers(&model);
}

#[test]
fn a_checkpoint_saved_by_plumb_loads_in_transformers() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("plumb").to_str().unwrap().to_string();
    plumb_ok(&["init", "--preset", "tiny", "--tokenizer", "gpt2", "--out", &model, "--seed", "3"], "");
    assert_scores_match_transformers(&model);
}

#[test]
fn greedy_generation_is_token_identical_to_transformers_generate() {
    let dir = tempfile::tempdir().unwrap();
    // A wide init makes the logits peaked, so a greedy choice is never a near-tie that
    // rounding could flip.
    let model = transformers_checkpoint(dir.path(), "0.3");
    let prompts = ["Once upon a time", "2 + 2 =", "The capital of France is a city called"];
    let ours = plumb_ok(
        &["generate", "--model", &model, "--max-new-tokens", "24", "--temperature", "0", "--device", "cpu"],
        &jsonl("prompt", &prompts),
    );
    let prompt_ids = plumb_ok(&["tokenize", "--tokenizer", "gpt2"], &jsonl("text", &prompts));
    let stdin: String = prompt_ids.iter().map(|r| r.to_string() + "\n").collect();
    let theirs = reference(&["generate", "--model", &model, "--max-new-tokens", "24"], &stdin);
    for (prompt, (a, b)) in prompts.iter().zip(ours.iter().zip(&theirs)) {
        assert_eq!(ids(a), ids(b), "{prompt:?}");
        assert!(!ids(a).is_empty());
    }
}

#[test]
fn the_gpt2_tokenizer_is_identical_to_tiktoken() {
    let texts = [
        "Hello world! It's a test; we'll see what they've done.",
        "def f(x):\n    return x ** 2  # square\n\n\tindented\ttabs",
        "自然语言处理是人工智能的一个分支。",
        "emoji 🙂👍🏽 and flags 🇫🇷, families 👨‍👩‍👧",
        "runs     of      spaces\n\n\n\nand newlines   \n  ",
        "numbers 12345678901234567890 and 3.14159e-10",
        "the special string <|endoftext|> is ordinary text here",
        "Ünïcödé àccents, Ελληνικά, русский, עברית, العربية",
        "",
        " leading space and trailing space ",
    ];
    // And random mixtures of the characters that stress the split pattern and the merges.
    let pieces = [
        " ", "  ", "\n", "\t", "\r\n", "'s", "'ll", "'T", "a", "Z", "é", "ß", "ı", "日本", "語", "🙂", "👍🏽",
        "\u{301}", "\u{200d}", "0", "42", "3.5", "!", "?!", "...", "--", "{", "}", "<|", "|>", "the", " the",
        "The", "ing", "tion", "http://", "x=1;", "\u{a0}", "\u{3000}",
    ];
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    let random: Vec<String> =
        (0..200).map(|_| (0..1 + next(30)).map(|_| pieces[next(pieces.len())]).collect()).collect();
    let texts: Vec<&str> = texts.iter().copied().chain(random.iter().map(String::as_str)).collect();
    let ranks = r50k_ranks_file();
    let ours = plumb_ok(&["tokenize", "--tokenizer", "gpt2"], &jsonl("text", &texts));
    let theirs = reference(&["tiktoken", "--ranks", ranks.to_str().unwrap()], &jsonl("text", &texts));
    assert_eq!(ours.len(), texts.len());
    for (text, (a, b)) in texts.iter().zip(ours.iter().zip(&theirs)) {
        assert_eq!(ids(a), ids(b), "{text:?}");
    }
}

//! The model commands' contract: JSON lines in, JSON lines out, errors naming the line.

use crate::helpers::*;

fn tiny_model(dir: &std::path::Path, extra: &[&str]) -> String {
    let out = dir.join("tiny").to_str().unwrap().to_string();
    let mut args = vec!["init", "--preset", "tiny", "--tokenizer", "bytes", "--out", &out, "--seed", "1"];
    args.extend_from_slice(extra);
    plumb_ok(&args, "");
    out
}

#[test]
fn init_writes_a_hugging_face_checkpoint_with_plumb_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let summary = plumb_ok(
        &[
            "init",
            "--preset",
            "tiny",
            "--tokenizer",
            "bytes",
            "--out",
            dir.path().join("m").to_str().unwrap(),
        ],
        "",
    );
    assert_eq!(summary[0]["config"]["n_layer"], 4);
    assert_eq!(summary[0]["config"]["n_embd"], 128);
    for file in ["config.json", "model.safetensors", "plumb.json"] {
        assert!(dir.path().join("m").join(file).exists(), "{file}");
    }
}

#[test]
fn score_returns_one_log_prob_per_next_token() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path(), &[]);
    let out = plumb_ok(&["score", "--model", &model], &jsonl("text", &["abcd", "x"]));
    assert_eq!(ids(&out[0]), vec![97, 98, 99, 100], "nothing is prepended");
    let lp = floats(&out[0], "logprobs");
    assert_eq!(lp.len(), 3);
    assert!(lp.iter().all(|&x| x < 0.0));
    assert!(floats(&out[1], "logprobs").is_empty());
}

#[test]
fn generate_prompts_a_conversation_through_the_chat_template_as_training_does() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path(), &[]);
    let messages = serde_json::json!([
        { "role": "system", "content": "Reverse each word." },
        { "role": "user", "content": "cat" },
        { "role": "assistant", "content": "tac" },
        { "role": "user", "content": "dog" },
    ]);
    let rendered = spec::chat::Conversation::from_json(&messages).unwrap().render();
    let args = ["generate", "--model", &model, "--max-new-tokens", "6", "--seed", "3"];
    let as_messages = plumb_ok(&args, &format!("{}\n", serde_json::json!({ "prompt": messages })));
    let as_text = plumb_ok(&args, &format!("{}\n", serde_json::json!({ "prompt": rendered })));
    assert_eq!(as_messages, as_text, "a conversation is prompted as its rendered text");
    assert_eq!(as_messages[0]["prompt"], rendered.as_str());
    // A message with a role the template does not know is refused, naming the line and field.
    let bad = serde_json::json!({ "prompt": [{ "role": "robot", "content": "hi" }] });
    let out = plumb(&args, &format!("{{\"prompt\": \"ok\"}}\n{bad}\n"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("stdin line 2: prompt[0].role"), "{stderr}");
    let out = plumb(&args, "{\"prompt\": 7}\n");
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("stdin line 1: prompt: must be a string or a list of messages"));
}

#[test]
fn generate_returns_new_tokens_with_log_probs_and_is_seeded() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path(), &["--sparse-window", "8", "--sparse-stride", "4"]);
    let prompts = jsonl("prompt", &["Hello", "Reverse: abc", ""]);
    let args = [
        "generate",
        "--model",
        &model,
        "--max-new-tokens",
        "12",
        "--seed",
        "5",
        "--top-k",
        "50",
        "--top-p",
        "0.9",
        "--batch-size",
        "2",
    ];
    let a = plumb_ok(&args, &prompts);
    let b = plumb_ok(&args, &prompts);
    assert_eq!(a, b, "the same seed gives the same samples");
    assert_eq!(a.len(), 3);
    for r in &a {
        let n = ids(r).len();
        assert!((1..=12).contains(&n));
        assert_eq!(floats(r, "logprobs").len(), n);
        assert!(r["completion"].is_string() && r["prompt"].is_string());
    }
    // Each prompt has its own random stream: a sample does not depend on the batch size.
    let mut single = args.to_vec();
    *single.last_mut().unwrap() = "1";
    let alone = plumb_ok(&single, &prompts);
    for (x, y) in alone.iter().zip(&a) {
        assert_eq!(ids(x), ids(y));
        assert!(max_abs_diff(&floats(x, "logprobs"), &floats(y, "logprobs")) < 1e-4);
    }
}

#[test]
fn a_bad_input_line_is_named_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path(), &[]);
    let out = plumb(
        &["generate", "--model", &model, "--max-new-tokens", "4"],
        "{\"prompt\": \"ok\"}\n{\"text\": \"no prompt\"}\n",
    );
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("stdin line 2") && err.contains("missing field `prompt`"), "{err}");
    let out = plumb(&["score", "--model", &model], "not json\n");
    assert!(String::from_utf8_lossy(&out.stderr).contains("stdin line 1"));
}

#[test]
fn a_prompt_longer_than_the_context_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path(), &[]);
    let long = "x".repeat(250);
    let out =
        plumb(&["generate", "--model", &model, "--max-new-tokens", "10"], &jsonl("prompt", &["ok", &long]));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("stdin line 2") && err.contains("context of 256"), "{err}");
}

#[test]
fn a_missing_checkpoint_is_named() {
    let out = plumb(&["score", "--model", "/nonexistent/model"], &jsonl("text", &["a"]));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/model/config.json"), "{err}");
}

#[test]
fn cuda_asked_for_without_a_gpu_is_a_clear_error() {
    if trainer::tch::Cuda::is_available() {
        return; // on a GPU machine there is nothing to refuse
    }
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path(), &[]);
    let out = plumb(&["score", "--model", &model, "--device", "cuda"], &jsonl("text", &["a"]));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no CUDA device"));
}

#[test]
fn init_alternates_dense_and_sparse_layers_and_plumb_json_keeps_the_list() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(
        dir.path(),
        &["--attention", "alternating", "--sparse-window", "4", "--sparse-stride", "3"],
    );
    let meta: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(std::path::Path::new(&model).join("plumb.json")).unwrap(),
    )
    .unwrap();
    let sparse = serde_json::json!({ "kind": "sparse", "window": 4, "stride": 3 });
    let dense = serde_json::json!({ "kind": "dense" });
    assert_eq!(meta["attention"], serde_json::json!([dense, sparse, dense, sparse]), "{meta}");
    assert_eq!(meta["chat_template"], "plumb-plain-v1", "the template conversations are rendered with");
    // The list comes back when the checkpoint is loaded: sampling from it works.
    let out = plumb_ok(&["generate", "--model", &model, "--max-new-tokens", "3"], &jsonl("prompt", &["ab"]));
    assert_eq!(out.len(), 1);

    let out = dir.path().join("bad");
    let bad = plumb(
        &[
            "init",
            "--preset",
            "tiny",
            "--tokenizer",
            "bytes",
            "--out",
            out.to_str().unwrap(),
            "--attention",
            "dense,sparse",
        ],
        "",
    );
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success() && err.contains("--attention") && err.contains('4'), "{err}");
}

#[test]
fn a_stages_help_says_what_its_empty_settings_take_from_the_models_width() {
    let out = plumb(&["sft", "--help"], "");
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{help}");
    assert!(help.contains("follow the model's width"), "{help}");
    for words in ["lr: empty: from the model's width", "dropout: empty:", "tiny 1e-3", "InstructGPT 1.3B"] {
        assert!(help.contains(words), "{words:?} missing from: {help}");
    }
    let pretrain = String::from_utf8_lossy(&plumb(&["pretrain", "--help"], "").stdout).into_owned();
    assert!(!pretrain.contains("follow the model's width"), "pretraining's rate is set: {pretrain}");
}

#[test]
fn a_checkpoint_whose_chat_template_plumb_does_not_render_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path(), &[]);
    let path = std::path::Path::new(&model).join("plumb.json");
    let mut meta: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    meta["chat_template"] = "chatml".into();
    std::fs::write(&path, meta.to_string()).unwrap();
    let out = plumb(&["generate", "--model", &model, "--max-new-tokens", "2"], &jsonl("prompt", &["ab"]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("plumb.json") && err.contains("chatml") && err.contains("plumb-plain-v1"), "{err}");
}

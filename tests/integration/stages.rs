//! The training stages from the command line: config files, flags, bad data, resume.

use std::path::Path;

use crate::helpers::*;

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

fn tiny_model(dir: &Path) -> String {
    let out = dir.join("base").to_str().unwrap().to_string();
    plumb_ok(&["init", "--preset", "tiny", "--tokenizer", "bytes", "--out", &out, "--n-ctx", "64"], "");
    out
}

fn stderr_of(args: &[&str]) -> String {
    let out = plumb(args, "");
    assert!(!out.status.success(), "plumb {args:?} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_bad_demonstration_names_file_line_and_field_and_nothing_is_trained() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let data =
        write(dir.path(), "demos.jsonl", "{\"prompt\": \"a\", \"response\": \"b\"}\n{\"prompt\": \"c\"}\n");
    let out = dir.path().join("sft");
    let err = stderr_of(&["sft", "--model", &model, "--data", &data, "--out", out.to_str().unwrap()]);
    assert!(err.contains("demos.jsonl:2: field `response`: missing"), "{err}");
    assert!(!out.exists(), "nothing is written");
}

#[test]
fn a_bad_ranking_names_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let cases = [
        (
            "{\"prompt\": \"p\", \"samples\": [\"a\", \"b\"], \"ranking\": [[0], [0]]}",
            "field `ranking`: index 0 appears twice",
        ),
        (
            "{\"prompt\": \"p\", \"samples\": [\"a\", \"b\", \"c\"], \"ranking\": [[0], [2]]}",
            "field `ranking`: sample 1 is not ranked",
        ),
        ("{\"prompt\": \"p\", \"samples\": [\"a\"], \"ranking\": [[0]]}", "field `ranking`: ranks 1 samples"),
        ("{\"prompt\": \"p\", \"chosen\": \"a\"}", "field `rejected`: is missing"),
        (
            "{\"prompt\": 3, \"chosen\": \"a\", \"rejected\": \"b\"}",
            "field `prompt`: must be a string or a list of messages",
        ),
        ("not json", "invalid JSON"),
    ];
    for (line, expected) in cases {
        let data = write(
            dir.path(),
            "rankings.jsonl",
            &format!("{{\"prompt\": \"q\", \"chosen\": \"x\", \"rejected\": \"y\"}}\n{line}\n"),
        );
        let out = dir.path().join("rm");
        let err = stderr_of(&[
            "reward",
            "train",
            "--model",
            &model,
            "--data",
            &data,
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(err.contains("rankings.jsonl:2:") && err.contains(expected), "{line}: {err}");
    }
}

#[test]
fn a_config_file_sets_the_stage_and_flags_override_it() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let data = write(
        dir.path(),
        "corpus.jsonl",
        "{\"text\": \"the cat sat on the mat. the dog sat on the log.\"}\n".repeat(20).as_str(),
    );
    let config =
        write(dir.path(), "pretrain.toml", "steps = 5\nlr = 0.002\nbatch_size = 2\nval_fraction = 0.1\n");
    let out = dir.path().join("pretrained");
    let report = plumb_ok(
        &[
            "pretrain",
            "--model",
            &model,
            "--data",
            &data,
            "--out",
            out.to_str().unwrap(),
            "--config",
            &config,
            "--steps",
            "3",
            "--device",
            "cpu",
        ],
        "",
    );
    assert_eq!(report[0]["steps"], 3, "the flag wins over the file");
    let effective = std::fs::read_to_string(out.join("train_config.toml")).unwrap();
    assert!(effective.contains("lr = 0.002") && effective.contains("steps = 3"), "{effective}");
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().count(), 3);
    assert!(metrics.contains("loss/pretrain"));
    // The output is a model: it scores text.
    plumb_ok(&["score", "--model", out.to_str().unwrap()], &jsonl("text", &["the cat"]));
    // Running again into the same directory needs --resume.
    let err = stderr_of(&[
        "pretrain",
        "--model",
        &model,
        "--data",
        &data,
        "--out",
        out.to_str().unwrap(),
        "--steps",
        "3",
    ]);
    assert!(err.contains("--resume"), "{err}");
}

#[test]
fn an_unknown_config_field_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let data = write(dir.path(), "demos.jsonl", "{\"prompt\": \"a\", \"response\": \"b\"}\n");
    let config = write(dir.path(), "sft.toml", "lr = 0.001\nlearning_rate = 0.1\n");
    let out = dir.path().join("sft");
    let err = stderr_of(&[
        "sft",
        "--model",
        &model,
        "--data",
        &data,
        "--out",
        out.to_str().unwrap(),
        "--config",
        &config,
    ]);
    assert!(err.contains("sft.toml") && err.contains("unknown field `learning_rate`"), "{err}");
}

#[test]
fn a_resumed_run_continues_from_its_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let data = write(
        dir.path(),
        "demos.jsonl",
        &"{\"prompt\": \"Uppercase cat.\\n\", \"response\": \"CAT\"}\n".repeat(16),
    );
    let config = write(dir.path(), "sft.toml", "checkpoint_every = 2\neval_every = 0\nbatch_size = 4\n");
    let out = dir.path().join("sft");
    let args = [
        "sft",
        "--model",
        &model,
        "--data",
        &data,
        "--out",
        out.to_str().unwrap(),
        "--config",
        &config,
        "--steps",
        "4",
    ];
    plumb_ok(&args, "");
    // Pretend the run died after step 2.
    std::fs::remove_dir_all(out.join("checkpoints/step-00000004")).unwrap();
    let mut resume = args.to_vec();
    resume.push("--resume");
    let report = plumb_ok(&resume, "");
    assert_eq!(report[0]["steps"], 4);
    let steps: Vec<i64> = std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["step"].as_i64().unwrap())
        .collect();
    assert_eq!(steps, vec![0, 1, 2, 3], "each step logged once");
}

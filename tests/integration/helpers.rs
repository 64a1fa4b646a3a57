//! Running `plumb` and the Python reference scripts.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Python with transformers and tiktoken: PLUMB_PYTHON, else `.venv`.
pub fn python() -> PathBuf {
    let python = std::env::var_os("PLUMB_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv/bin/python"));
    assert!(
        python.exists(),
        "{} not found: run `make test`, which creates .venv with transformers and tiktoken",
        python.display()
    );
    python
}

fn run(mut command: Command, stdin: &str) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the command starts");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

/// Runs `plumb` with `stdin`; the output whatever the exit status.
pub fn plumb(args: &[&str], stdin: &str) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_plumb"));
    command.args(args).env_remove("RUST_BACKTRACE");
    run(command, stdin)
}

/// Runs `plumb` with extra environment variables; the output whatever the exit status.
pub fn plumb_with_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    plumb_in(args, env, "")
}

/// Runs `plumb` with extra environment variables and `stdin`; the output whatever the
/// exit status.
pub fn plumb_in(args: &[&str], env: &[(&str, &str)], stdin: &str) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_plumb"));
    command.args(args).env_remove("RUST_BACKTRACE").envs(env.iter().copied());
    run(command, stdin)
}

/// Runs `plumb`, expecting success, and parses its JSON lines.
pub fn plumb_ok(args: &[&str], stdin: &str) -> Vec<Value> {
    let out = plumb(args, stdin);
    assert!(out.status.success(), "plumb {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    json_lines(&out.stdout)
}

/// Runs `tests/python/hf_reference.py`, expecting success, and parses its JSON lines.
pub fn reference(args: &[&str], stdin: &str) -> Vec<Value> {
    let mut command = Command::new(python());
    command
        .arg(repo_root().join("tests/python/hf_reference.py"))
        .args(args)
        .env("HF_HUB_OFFLINE", "1")
        .env("TRANSFORMERS_VERBOSITY", "error");
    let out = run(command, stdin);
    assert!(out.status.success(), "reference {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    json_lines(&out.stdout)
}

pub fn json_lines(bytes: &[u8]) -> Vec<Value> {
    String::from_utf8(bytes.to_vec())
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

pub fn jsonl(key: &str, values: &[&str]) -> String {
    values.iter().map(|v| serde_json::json!({ key: v }).to_string() + "\n").collect()
}

pub fn ids(value: &Value) -> Vec<i64> {
    value["ids"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect()
}

pub fn floats(value: &Value, key: &str) -> Vec<f64> {
    value[key].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect()
}

pub fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

/// `assets/r50k_base.tiktoken` as shipped inside the tiktoken-rs crate plumb builds with.
pub fn r50k_ranks_file() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1"])
        .current_dir(repo_root())
        .output()
        .expect("cargo metadata runs");
    assert!(out.status.success(), "cargo metadata: {}", String::from_utf8_lossy(&out.stderr));
    let metadata: Value = serde_json::from_slice(&out.stdout).unwrap();
    let manifest = metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "tiktoken-rs")
        .expect("tiktoken-rs is a dependency")["manifest_path"]
        .as_str()
        .unwrap()
        .to_string();
    let path = PathBuf::from(manifest).parent().unwrap().join("assets/r50k_base.tiktoken");
    assert!(path.exists(), "{} missing", path.display());
    path
}

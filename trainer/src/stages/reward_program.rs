//! Rewards from a program: verifiable rewards (tests, checkers, exact answers) for any
//! task, beside the reward model.
//!
//! The program is a shell command. For each batch of samples it is started once, reads
//! one `{"prompt", "response"}` JSON line per sample on stdin and writes one
//! `{"reward": number}` line per sample, in order, on stdout. A program that cannot
//! start, exits non-zero, hangs past the timeout, writes a line that is not such a
//! reward, or writes too few or too many lines fails the run: the error names the
//! command and the line, and quotes the program's stderr.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The most bytes of the program's stderr an error quotes (its end, where the cause
/// usually is).
const STDERR_QUOTED: usize = 2000;

/// A reward program and how long one batch may take it.
#[derive(Clone, Debug)]
pub struct RewardProgram {
    command: String,
    timeout: Duration,
}

/// Why a reward program gave no rewards; its stderr quoted.
#[derive(Debug, thiserror::Error)]
#[error("reward program `{command}`: {problem}; {}", quote_stderr(.stderr))]
pub struct RewardProgramError {
    pub command: String,
    pub problem: String,
    pub stderr: String,
}

fn quote_stderr(stderr: &str) -> String {
    let stderr = stderr.trim();
    if stderr.is_empty() {
        return "its stderr was empty".into();
    }
    let mut start = stderr.len().saturating_sub(STDERR_QUOTED);
    while !stderr.is_char_boundary(start) {
        start += 1;
    }
    let ellipsis = if start > 0 { "…" } else { "" };
    format!("its stderr: {ellipsis}{}", &stderr[start..])
}

#[derive(Serialize)]
struct Query<'a> {
    prompt: &'a str,
    response: &'a str,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Answer {
    reward: f64,
}

impl RewardProgram {
    /// `command` runs under `sh -c`; each batch must be answered within `timeout`.
    pub fn new(command: impl Into<String>, timeout: Duration) -> Self {
        RewardProgram { command: command.into(), timeout }
    }

    pub fn command(&self) -> &str {
        &self.command
    }

    /// The reward of each (prompt, response), from one run of the program.
    pub fn score(&self, pairs: &[(String, String)]) -> Result<Vec<f64>, RewardProgramError> {
        let fail = |problem: String, stderr: String| RewardProgramError {
            command: self.command.clone(),
            problem,
            stderr,
        };
        let mut input = Vec::new();
        for (prompt, response) in pairs {
            let query = Query { prompt, response };
            serde_json::to_writer(&mut input, &query).map_err(|e| fail(e.to_string(), String::new()))?;
            input.push(b'\n');
        }
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(&self.command)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so that a timeout ends whatever the command started.
            .process_group(0)
            .spawn()
            .map_err(|e| fail(format!("could not start: {e}"), String::new()))?;
        let mut stdin = child.stdin.take().expect("stdin is piped");
        // A program that exits without reading all its input breaks this pipe; its exit
        // status or its output then says what went wrong.
        let writer = thread::spawn(move || drop(stdin.write_all(&input)));
        let stdout = read_in_background(child.stdout.take().expect("stdout is piped"));
        let stderr = read_in_background(child.stderr.take().expect("stderr is piped"));
        let finished = wait_until(&mut child, Instant::now() + self.timeout);
        let _ = writer.join();
        let (stdout, stderr) = (joined(stdout), String::from_utf8_lossy(&joined(stderr)).into_owned());
        let status = match finished {
            Ok(Some(status)) => status,
            Ok(None) => {
                return Err(fail(format!("no answer within {:.0} s", self.timeout.as_secs_f64()), stderr))
            }
            Err(e) => return Err(fail(format!("waiting for it failed: {e}"), stderr)),
        };
        if !status.success() {
            return Err(fail(format!("it failed ({status})"), stderr));
        }
        let stdout = match String::from_utf8(stdout) {
            Ok(text) => text,
            Err(_) => return Err(fail("its output is not UTF-8 text".into(), stderr)),
        };
        let lines: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
        let mut rewards = Vec::with_capacity(pairs.len());
        for (index, line) in lines.iter().enumerate() {
            match serde_json::from_str::<Answer>(line) {
                Ok(answer) => rewards.push(answer.reward),
                Err(e) => {
                    let problem =
                        format!("output line {} is not {{\"reward\": number}} ({e}): {line:?}", index + 1);
                    return Err(fail(problem, stderr));
                }
            }
        }
        if rewards.len() != pairs.len() {
            let problem = format!("it wrote {} reward lines for {} samples", rewards.len(), pairs.len());
            return Err(fail(problem, stderr));
        }
        Ok(rewards)
    }
}

fn read_in_background(mut pipe: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        bytes
    })
}

fn joined(reader: JoinHandle<Vec<u8>>) -> Vec<u8> {
    reader.join().unwrap_or_default()
}

/// The child's exit status, or None when `deadline` passed first: then its whole process
/// group is killed (which also closes the pipes the readers wait on).
fn wait_until(child: &mut Child, deadline: Instant) -> std::io::Result<Option<std::process::ExitStatus>> {
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            // SAFETY: kill(2) on the group that `process_group(0)` made for the child.
            unsafe { libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL) };
            child.wait()?;
            return Ok(None);
        }
        thread::sleep(Duration::from_millis(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(n: usize) -> Vec<(String, String)> {
        (0..n).map(|i| (format!("prompt {i}"), format!("response \"{i}\"\n"))).collect()
    }

    fn program(command: &str) -> RewardProgram {
        RewardProgram::new(command, Duration::from_secs(5))
    }

    #[test]
    fn a_program_scores_each_line_in_order() {
        // The reward is the length of each input line: the lines arrive in order, JSON-escaped.
        let rewards =
            program(r#"while IFS= read -r l; do echo "{\"reward\": ${#l}}"; done"#).score(&pairs(3)).unwrap();
        let expected: Vec<f64> = (0..3)
            .map(|i| format!(r#"{{"prompt":"prompt {i}","response":"response \"{i}\"\n"}}"#).len() as f64)
            .collect();
        assert_eq!(rewards, expected);
    }

    #[test]
    fn a_program_that_fails_is_named_with_its_stderr() {
        let err = program("cat >/dev/null; echo 'no such checker' >&2; exit 3").score(&pairs(2)).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("exit status: 3") && text.contains("its stderr: no such checker"), "{text}");
        assert!(text.contains("`cat >/dev/null;"), "{text}");
    }

    #[test]
    fn a_program_that_hangs_is_stopped_at_the_timeout() {
        let started = Instant::now();
        let err = RewardProgram::new("echo thinking >&2; sleep 30", Duration::from_millis(300))
            .score(&pairs(1))
            .unwrap_err();
        let text = err.to_string();
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
        assert!(text.contains("no answer within") && text.contains("thinking"), "{text}");
    }

    #[test]
    fn a_bad_line_is_quoted_with_its_number() {
        let err = program(r#"cat >/dev/null; echo '{"reward": 1}'; echo '{"score": 2}'"#)
            .score(&pairs(2))
            .unwrap_err()
            .to_string();
        assert!(err.contains("output line 2") && err.contains(r#"{\"score\": 2}"#), "{err}");
        let err =
            program(r#"cat >/dev/null; echo '{"reward": 1}'"#).score(&pairs(2)).unwrap_err().to_string();
        assert!(err.contains("1 reward lines for 2 samples"), "{err}");
    }
}

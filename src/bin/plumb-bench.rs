//! `plumb-bench`: plumb's side of `make bench`.
//!
//! Each subcommand loads its model or data once, warms up, then times repeated calls of
//! one library function and prints a single JSON object on stdout: the timings of every
//! timed repetition, their median, the throughput at the median and the process's peak
//! RSS. `bench/run.py` runs it beside `bench/peer.py`, which times the same work in
//! PyTorch / transformers / tiktoken on the same inputs, and writes the table.
//!
//! Timing inside the process, rather than timing a whole `plumb` call, keeps process
//! start-up and checkpoint loading out of the numbers: at the tiny preset they would
//! dwarf the work being compared.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use clap::{Parser, Subcommand};
use serde_json::{json, Value};
use trainer::tch::nn::OptimizerConfig;
use trainer::tch::{self, Device, Kind, Reduction, Tensor};
use trainer::{LanguageModel, SamplingConfig, Tokenizer, TokenizerKind};

#[derive(Parser)]
#[command(about = "Times plumb's generation, training step and tokenizer for `make bench`")]
struct Cli {
    /// Intra-op threads of libtorch; `bench/run.py` gives the peer the same number.
    #[arg(long, default_value_t = 2, global = true)]
    threads: i32,
    /// Untimed repetitions before the timed ones.
    #[arg(long, default_value_t = 1, global = true)]
    warmup: usize,
    /// Timed repetitions; the median is reported.
    #[arg(long, default_value_t = 3, global = true)]
    reps: usize,
    /// Take turns with a peer process: after warming up print `ready`, then before each
    /// timed repetition wait for a line on stdin and after it print its seconds.
    /// `bench/run.py` alternates the two sides' repetitions this way, so that other
    /// work on a shared machine slows both alike.
    #[arg(long, global = true)]
    paired: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Greedy decoding with the KV cache (`trainer::generate`), EOS ignored.
    Generate {
        #[arg(long)]
        model: PathBuf,
        /// JSON file holding the prompts as token ids, `[[id, ..], ..]`: one batch.
        #[arg(long)]
        prompts: PathBuf,
        #[arg(long, default_value_t = 64)]
        new_tokens: i64,
    },
    /// Forward, backward and AdamW step of the language-model loss.
    TrainStep {
        #[arg(long)]
        model: PathBuf,
        /// JSON file holding the batch as token ids, `[[id, ..], ..]` (B rows of T).
        #[arg(long)]
        inputs: PathBuf,
        #[arg(long, default_value_t = 1e-4)]
        lr: f64,
    },
    /// The GPT-2 tokenizer over a list of documents, one `encode` call per document.
    Tokenize {
        /// JSON file holding the documents, `["text", ..]`.
        #[arg(long)]
        docs: PathBuf,
        /// Where to write the ids of every document (`[[id, ..], ..]`), to check them.
        #[arg(long)]
        ids_out: Option<PathBuf>,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    ensure!(cli.reps >= 1, "--reps must be at least 1");
    tch::set_num_threads(cli.threads);
    let timing = Timing { warmup: cli.warmup, reps: cli.reps, paired: cli.paired };
    let mut report = match cli.command {
        Command::Generate { model, prompts, new_tokens } => generate(&model, &prompts, new_tokens, &timing)?,
        Command::TrainStep { model, inputs, lr } => train_step(&model, &inputs, lr, &timing)?,
        Command::Tokenize { docs, ids_out } => tokenize(&docs, ids_out.as_deref(), &timing)?,
    };
    report["threads"] = json!(tch::get_num_threads());
    report["peak_rss_kb"] = json!(peak_rss_kb());
    println!("{report}");
    Ok(())
}

/// How many times to run the measured work.
struct Timing {
    warmup: usize,
    reps: usize,
    paired: bool,
}

/// Seconds of each timed repetition, and their median.
struct Times {
    secs: Vec<f64>,
    median: f64,
}

impl Timing {
    /// Runs `work` `warmup` times untimed, then `reps` times timed (in turns with the
    /// peer when `paired`).
    fn run(&self, mut work: impl FnMut() -> Result<()>) -> Result<Times> {
        for _ in 0..self.warmup {
            work()?;
        }
        if self.paired {
            say("ready")?;
        }
        let mut secs = Vec::with_capacity(self.reps);
        for _ in 0..self.reps {
            if self.paired {
                let mut go = String::new();
                let n = std::io::stdin().read_line(&mut go)?;
                ensure!(n > 0, "--paired: stdin closed before every repetition ran");
            }
            let start = Instant::now();
            work()?;
            let secs_taken = start.elapsed().as_secs_f64();
            secs.push(secs_taken);
            if self.paired {
                say(&secs_taken.to_string())?;
            }
        }
        let median = median(&secs);
        Ok(Times { secs, median })
    }
}

/// One line on stdout, flushed at once: the driver is waiting for it.
fn say(line: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    Ok(out.flush()?)
}

fn median(xs: &[f64]) -> f64 {
    let mut sorted = xs.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

fn load_model(dir: &Path) -> Result<LanguageModel> {
    LanguageModel::load(dir, Device::Cpu).with_context(|| format!("loading the model in {}", dir.display()))
}

/// Tokens/s of greedy decoding: batch × new tokens / seconds of one `generate` call
/// (prefill of the prompts included, as in the peer's `model.generate`).
fn generate(model_dir: &Path, prompts: &Path, new_tokens: i64, timing: &Timing) -> Result<Value> {
    let model = load_model(model_dir)?;
    let prompts: Vec<Vec<i64>> = read_json(prompts)?;
    let cfg = SamplingConfig {
        max_new_tokens: new_tokens,
        temperature: 0.0,
        // The peer generates without an EOS, so both sides emit exactly `new_tokens`.
        stop_at_eos: false,
        ..Default::default()
    };
    let mut ids = Vec::new();
    let times = timing.run(|| {
        let out = trainer::generate(&model, &prompts, &cfg)?;
        ids = out.into_iter().map(|g| g.ids).collect();
        Ok(())
    })?;
    ensure!(ids.iter().all(|s| s.len() as i64 == new_tokens), "a sample is not {new_tokens} tokens long");
    let batch = prompts.len() as f64;
    Ok(json!({
        "batch": prompts.len(),
        "new_tokens": new_tokens,
        "tokens_per_s": batch * new_tokens as f64 / times.median,
        "median_s": times.median,
        "times": times.secs,
        // The last repetition's samples, so that run.py can check both sides agree.
        "ids": ids,
    }))
}

/// Tokens/s of training: batch × sequence length / seconds of one step (zero grads,
/// forward in train mode with dropout, LM cross-entropy, backward, AdamW).
fn train_step(model_dir: &Path, inputs: &Path, lr: f64, timing: &Timing) -> Result<Value> {
    let model = load_model(model_dir)?;
    let rows: Vec<Vec<i64>> = read_json(inputs)?;
    let (b, t) = (rows.len() as i64, rows[0].len() as i64);
    ensure!(rows.iter().all(|r| r.len() as i64 == t), "rows of unequal length");
    let ids = Tensor::from_slice(&rows.concat()).view([b, t]);
    // Targets are the ids shifted left, the last column ignored (-100): the same loss
    // transformers' GPT2LMHeadModel computes from `labels`, and no copy of the logits.
    let ignored = Tensor::full([b, 1], -100, (Kind::Int64, Device::Cpu));
    let targets = Tensor::cat(&[ids.narrow(1, 1, t - 1), ignored], 1).view([-1]);
    // PyTorch's AdamW defaults, which the peer uses too.
    let mut opt = tch::nn::adamw(0.9, 0.999, 0.01).build(&model.vs, lr)?;
    tch::manual_seed(0);
    let mut losses = Vec::new();
    let times = timing.run(|| {
        let logits = model.logits(&ids, None, true); // (B, T, V)
        let vocab = logits.size()[2];
        let loss =
            logits.view([-1, vocab]).cross_entropy_loss::<Tensor>(&targets, None, Reduction::Mean, -100, 0.0);
        opt.backward_step(&loss);
        losses.push(loss.double_value(&[]));
        Ok(())
    })?;
    Ok(json!({
        "batch": b,
        "seq": t,
        "tokens_per_s": (b * t) as f64 / times.median,
        "median_s": times.median,
        "times": times.secs,
        "losses": losses,
    }))
}

/// MB/s (10^6 bytes of UTF-8) of encoding every document in turn, on one thread.
fn tokenize(docs: &Path, ids_out: Option<&Path>, timing: &Timing) -> Result<Value> {
    let docs: Vec<String> = read_json(docs)?;
    // Builds the BPE ranks (once per process) before anything is timed.
    let tokenizer = Tokenizer::new(TokenizerKind::Gpt2);
    let bytes: usize = docs.iter().map(String::len).sum();
    let mut ids: Vec<Vec<i64>> = Vec::new();
    let times = timing.run(|| {
        ids = docs.iter().map(|d| tokenizer.encode(d)).collect();
        Ok(())
    })?;
    if let Some(path) = ids_out {
        std::fs::write(path, serde_json::to_vec(&ids)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(json!({
        "documents": docs.len(),
        "bytes": bytes,
        "tokens": ids.iter().map(Vec::len).sum::<usize>(),
        "mb_per_s": bytes as f64 / 1e6 / times.median,
        "median_s": times.median,
        "times": times.secs,
    }))
}

/// The process's peak resident set (VmHWM), in KiB; None where /proc is missing.
fn peak_rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

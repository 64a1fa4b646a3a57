//! `plumb-bench`: plumb's side of `make bench`.
//!
//! Each subcommand loads its model or data once, warms up, then times repeated calls of
//! one library function and prints a single JSON object on stdout: the timings of every
//! timed repetition, their median, the throughput at the median and the process's peak
//! RSS. `bench/run.py` runs it beside `bench/peer.py`, which times the same work in
//! PyTorch / transformers / TRL / tiktoken on the same inputs, and writes the table.
//!
//! Timing inside the process, rather than timing a whole `plumb` call, keeps process
//! start-up and checkpoint loading out of the numbers: at the tiny preset they would
//! dwarf the work being compared.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use clap::{Parser, Subcommand};
use registry::artifacts::{ArtifactStore, StoreSettings};
use serde_json::{json, Value};
use trainer::lm_loop::Example;
use trainer::ppo::{Learner, PpoConfig};
use trainer::reward::{Comparisons, RewardConfig};
use trainer::rollout::Reward;
use trainer::sft::SftConfig;
use trainer::tch::{self, Device, Kind, Reduction, Tensor};
use trainer::train::{lr_at, seed_step, AdamW};
use trainer::{LanguageModel, SamplingConfig, Tokenizer, TokenizerKind};

#[derive(Parser)]
#[command(about = "Times plumb's generation, training stages and tokenizer for `make bench`")]
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
    /// SFT optimizer steps as `plumb sft` takes them: prompt and padding masked,
    /// dropout, AdamW, gradient clipping (`lm_loop::accumulate_gradients`).
    Sft {
        #[arg(long)]
        model: PathBuf,
        /// Demonstrations, `{"prompt", "response"}` lines, taken in file order: repetition
        /// after repetition goes through the same batches.
        #[arg(long)]
        data: PathBuf,
        #[arg(long, default_value_t = 8)]
        batch_size: usize,
        /// Optimizer steps per timed repetition.
        #[arg(long, default_value_t = 1)]
        steps_per_rep: usize,
        #[arg(long, default_value_t = 1e-4)]
        lr: f64,
        /// Dropout while fine-tuning (the peer keeps config.json's).
        #[arg(long, default_value_t = 0.1)]
        dropout: f64,
    },
    /// Reward-model optimizer steps as `plumb reward train` takes them: a new score head
    /// on the trunk, K-wise loss, AdamW, gradient clipping (`reward::accumulate_gradients`).
    Reward {
        #[arg(long)]
        model: PathBuf,
        /// Rankings (here `{"prompt", "chosen", "rejected"}` lines, K = 2), in file order.
        #[arg(long)]
        data: PathBuf,
        /// Rankings (prompts) per step.
        #[arg(long, default_value_t = 8)]
        batch_size: usize,
        #[arg(long, default_value_t = 1)]
        steps_per_rep: usize,
        #[arg(long, default_value_t = 1e-5)]
        lr: f64,
    },
    /// One PPO iteration (`ppo::step`): rollouts, reward-model scores, reference
    /// log-probs, values, GAE, `ppo_epochs` × minibatch updates of policy and value model.
    PpoStep {
        /// The policy (and frozen reference) to start from.
        #[arg(long)]
        policy: PathBuf,
        /// The reward model; the value model starts as a copy of it.
        #[arg(long)]
        reward: PathBuf,
        /// JSON file holding the prompts as token ids, `[[id, ..], ..]`: one rollout batch.
        #[arg(long)]
        prompts: PathBuf,
        #[arg(long, default_value_t = 32)]
        new_tokens: i64,
        #[arg(long, default_value_t = 8)]
        minibatch_size: usize,
        #[arg(long, default_value_t = 1)]
        ppo_epochs: usize,
    },
    /// Storing a checkpoint directory into the artifact store (`ArtifactStore::put_dir`)
    /// and fetching it back (`fetch_to`, every file's digest checked as it streams in):
    /// the local directory store against the store PLUMB_ARTIFACTS names (an `s3://`
    /// bucket, reached with PLUMB_S3_ENDPOINT and the AWS variables). Each repetition
    /// stores into an empty store and fetches into a new directory; `--warmup` applies.
    Artifacts {
        /// The checkpoint directory to store.
        #[arg(long)]
        src: PathBuf,
        /// A scratch directory: the local store, the bucket's cache and the fetched copies.
        #[arg(long)]
        work: PathBuf,
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
        Command::Sft { model, data, batch_size, steps_per_rep, lr, dropout } => {
            let cfg = SftConfig { batch_size, lr: Some(lr), dropout: Some(dropout), ..Default::default() };
            sft(&model, &data, &cfg, steps_per_rep, &timing)?
        }
        Command::Reward { model, data, batch_size, steps_per_rep, lr } => {
            let cfg = RewardConfig { batch_size, lr: Some(lr), ..Default::default() };
            reward(&model, &data, &cfg, steps_per_rep, &timing)?
        }
        Command::PpoStep { policy, reward, prompts, new_tokens, minibatch_size, ppo_epochs } => {
            ppo_step(&policy, &reward, &prompts, new_tokens, minibatch_size, ppo_epochs, &timing)?
        }
        Command::Tokenize { docs, ids_out } => tokenize(&docs, ids_out.as_deref(), &timing)?,
        Command::Artifacts { src, work } => artifacts(&src, &work, &timing)?,
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
    // PyTorch's AdamW defaults, which the peer uses too, in plumb's AdamW, as its stages
    // train (decay on matrices alone, as nanoGPT).
    let mut opt = trainer::train::AdamW::new(&model.vs, 0.9, 0.999, 1e-8, 0.01);
    tch::manual_seed(0);
    let mut losses = Vec::new();
    let times = timing.run(|| {
        let logits = model.logits(&ids, None, true); // (B, T, V)
        let vocab = logits.size()[2];
        let loss =
            logits.view([-1, vocab]).cross_entropy_loss::<Tensor>(&targets, None, Reduction::Mean, -100, 0.0);
        opt.zero_grad();
        loss.backward();
        opt.step(lr);
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

/// Tokens in a batch of sequences: real ones, with the padding to the longest, and (for
/// SFT) the targets of the loss.
#[derive(Default)]
struct BatchTokens {
    real: usize,
    padded: usize,
    targets: usize,
}

impl BatchTokens {
    fn add(&mut self, lengths: impl Iterator<Item = usize> + Clone, targets: usize) {
        let longest = lengths.clone().max().unwrap_or(0);
        self.real += lengths.clone().sum::<usize>();
        self.padded += longest * lengths.count();
        self.targets += targets;
    }

    fn json(&self) -> Value {
        json!({ "real": self.real, "padded": self.padded, "targets": self.targets })
    }
}

/// Tokens/s of SFT: real (non-padding) tokens of a repetition's `steps_per_rep` steps /
/// its seconds. Each step is the loop's (`lm_loop::run`): seed, zero grads, forward in
/// train mode, next-token loss on the response and EOS only, backward, clip, AdamW with
/// the cosine schedule's learning rate. Batches are consecutive demonstrations of the
/// file, the same ones every repetition, as the peer takes them.
fn sft(
    model_dir: &Path,
    data: &Path,
    cfg: &SftConfig,
    steps_per_rep: usize,
    timing: &Timing,
) -> Result<Value> {
    cfg.validate()?;
    let demonstrations = trainer::data::read_demonstrations(data)?;
    let model = load_model(model_dir)?;
    let dropout = cfg.dropout(model.config.n_embd);
    let mut model = model.with_dropout(dropout)?;
    model.set_trainable(true);
    let examples = demonstrations
        .iter()
        .enumerate()
        .map(|(i, d)| trainer::sft::example(&model.tokenizer, model.config.n_ctx, i, d))
        .collect::<Result<Vec<Example>, _>>()?;
    let b = cfg.batch_size;
    ensure!(
        examples.len() >= b * steps_per_rep,
        "{} demonstrations for {steps_per_rep} steps of {b}",
        examples.len()
    );
    let batches: Vec<Vec<&Example>> =
        examples.chunks(b).take(steps_per_rep).map(|c| c.iter().collect()).collect();
    let mut tokens = BatchTokens::default();
    for batch in &batches {
        let targets = batch.iter().map(|e| e.loss_mask[1..].iter().filter(|&&m| m).count()).sum();
        tokens.add(batch.iter().map(|e| e.ids.len()), targets);
    }
    let total_steps = ((timing.warmup + timing.reps) * steps_per_rep) as i64;
    let mut opt = AdamW::new(&model.vs, cfg.beta1, cfg.beta2, cfg.eps, cfg.weight_decay);
    let (mut step, mut losses) = (0i64, Vec::new());
    let times = timing.run(|| {
        for batch in &batches {
            seed_step(cfg.seed, step);
            let lr =
                lr_at(step, total_steps, cfg.warmup_steps, cfg.lr(model.config.n_embd), cfg.final_lr_ratio);
            opt.zero_grad();
            let (loss, _) = trainer::lm_loop::accumulate_gradients(&model, std::slice::from_ref(batch));
            ensure!(loss.is_finite(), "step {step}: the loss is {loss}");
            opt.clip_grad_norm(cfg.grad_clip);
            opt.step(lr);
            losses.push(loss);
            step += 1;
        }
        Ok(())
    })?;
    Ok(json!({
        "batch": b,
        "steps_per_rep": steps_per_rep,
        "tokens_per_rep": tokens.json(),
        "tokens_per_s": tokens.real as f64 / times.median,
        "median_s": times.median,
        "times": times.secs,
        "losses": losses,
    }))
}

/// Pairs/s of reward-model training: comparisons of a repetition's `steps_per_rep` steps
/// / its seconds. Each step is `reward::train`'s: seed, zero grads, one forward over all
/// samples of the step's rankings, eq. 1 per prompt, backward, clip, AdamW. The model is
/// the checkpoint's trunk with a new score head, as `plumb reward train` builds it.
fn reward(
    model_dir: &Path,
    data: &Path,
    cfg: &RewardConfig,
    steps_per_rep: usize,
    timing: &Timing,
) -> Result<Value> {
    cfg.validate()?;
    let rankings = trainer::data::read_rankings(data)?;
    let mut model = load_model(model_dir)?.with_dropout(cfg.dropout)?;
    seed_step(cfg.seed, -1);
    model.add_score_head();
    model.set_trainable(true);
    let encoded: Vec<Comparisons> = trainer::reward::encode_rankings(&model, &rankings, "ranking")?;
    let b = cfg.batch_size;
    ensure!(
        encoded.len() >= b * steps_per_rep,
        "{} rankings for {steps_per_rep} steps of {b}",
        encoded.len()
    );
    let batches: Vec<Vec<&Comparisons>> =
        encoded.chunks(b).take(steps_per_rep).map(|c| c.iter().collect()).collect();
    let total_steps = ((timing.warmup + timing.reps) * steps_per_rep) as i64;
    let mut opt = AdamW::new(&model.vs, cfg.beta1, cfg.beta2, cfg.eps, cfg.weight_decay);
    let (mut step, mut losses, mut pairs, mut tokens) = (0i64, Vec::new(), 0, 0);
    let times = timing.run(|| {
        (pairs, tokens) = (0, 0);
        for batch in &batches {
            seed_step(cfg.seed, step);
            let lr =
                lr_at(step, total_steps, cfg.warmup_steps, cfg.lr(model.config.n_embd), cfg.final_lr_ratio);
            opt.zero_grad();
            let tally = trainer::reward::accumulate_gradients(&model, std::slice::from_ref(batch))?;
            ensure!(tally.loss.is_finite(), "step {step}: the loss is {}", tally.loss);
            opt.clip_grad_norm(cfg.grad_clip);
            opt.step(lr);
            losses.push(tally.loss);
            pairs += tally.compared;
            tokens += tally.tokens;
            step += 1;
        }
        Ok(())
    })?;
    Ok(json!({
        "batch": b,
        "steps_per_rep": steps_per_rep,
        "pairs_per_rep": pairs,
        "tokens_per_rep": { "real": tokens },
        "pairs_per_s": pairs as f64 / times.median,
        "median_s": times.median,
        "times": times.secs,
        "losses": losses,
    }))
}

/// Seconds of one PPO iteration (`ppo::step`) on one rollout batch, every response
/// `new_tokens` long, the shares of generation and of the minibatch updates in it, and
/// its breakdown as `StepStats` times it (median seconds of each part; `old_logprobs`
/// is 0: the sampler's log-probs are the old ones, and `advantages` is the rest of the
/// step: KL-penalised rewards, GAE, whitening and statistics).
fn ppo_step(
    policy_dir: &Path,
    reward_dir: &Path,
    prompts: &Path,
    new_tokens: i64,
    minibatch_size: usize,
    ppo_epochs: usize,
    timing: &Timing,
) -> Result<Value> {
    let policy = load_model(policy_dir)?;
    let reward_model = load_model(reward_dir)?;
    let prompts: Vec<Vec<i64>> = read_json(prompts)?;
    let cfg = PpoConfig {
        steps: (timing.warmup + timing.reps) as i64,
        batch_size: prompts.len(),
        minibatch_size,
        ppo_epochs,
        warmup_steps: 0,
        max_new_tokens: new_tokens,
        checkpoint_every: 0,
        ..Default::default()
    };
    cfg.validate()?;
    let mut learner = Learner::new(&cfg, policy, &reward_model)?;
    let mut step = 0i64;
    let mut stats = Vec::new();
    let times = timing.run(|| {
        let reward = Reward::Model(&reward_model);
        stats.push(trainer::ppo::step(&cfg, step, &prompts, &mut learner, reward, None)?);
        step += 1;
        Ok(())
    })?;
    // The timed repetitions' own statistics (the warm-up's come first).
    let timed = &stats[timing.warmup..];
    let shares = |part: fn(&trainer::ppo::StepStats) -> f64| -> Vec<f64> {
        timed.iter().zip(&times.secs).map(|(s, secs)| part(s) / secs).collect()
    };
    let generation_share = shares(|s| s.generation_seconds);
    let training_share = shares(|s| s.training_seconds);
    let part = |seconds: &dyn Fn(&trainer::ppo::StepStats, f64) -> f64| {
        median(&timed.iter().zip(&times.secs).map(|(s, &secs)| seconds(s, secs)).collect::<Vec<_>>())
    };
    let breakdown = json!({
        "generation": part(&|s, _| s.generation_seconds),
        "scoring": part(&|s, _| s.scoring_seconds),
        "old_logprobs": 0.0,
        "reference": part(&|s, _| s.reference_seconds),
        "values": part(&|s, _| s.values_seconds),
        "advantages": part(&|s, secs| {
            secs - s.generation_seconds
                - s.scoring_seconds
                - s.reference_seconds
                - s.values_seconds
                - s.training_seconds
        }),
        "update": part(&|s, _| s.training_seconds),
    });
    let last = timed.last().context("no timed repetition")?;
    Ok(json!({
        "batch": prompts.len(),
        "prompt_tokens": prompts.iter().map(Vec::len).max(),
        "new_tokens": new_tokens,
        "minibatch_size": minibatch_size,
        "ppo_epochs": ppo_epochs,
        "steps_per_s": 1.0 / times.median,
        "median_s": times.median,
        "times": times.secs,
        "generation_share": median(&generation_share),
        "training_share": median(&training_share),
        "generation_shares": generation_share,
        "breakdown": breakdown,
        "response_length": timed.iter().map(|s| s.response_length).collect::<Vec<_>>(),
        "eos_rate": timed.iter().map(|s| s.eos_rate).collect::<Vec<_>>(),
        "reward": last.reward,
        "kl": last.kl,
        "approx_kl": last.approx_kl,
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
/// MB/s of storing `src` into each store and fetching it back: the local directory
/// store under `work`, and the bucket PLUMB_ARTIFACTS names.
fn artifacts(src: &Path, work: &Path, timing: &Timing) -> Result<Value> {
    ensure!(!timing.paired, "artifacts times both stores itself: run it without --paired");
    let settings = StoreSettings::from_env(&work.join("home"), |name| std::env::var(name).ok())?;
    ensure!(
        settings.location.starts_with("s3://"),
        "PLUMB_ARTIFACTS is {:?}: name the bucket to compare with the directory store, s3://<bucket>/<prefix>",
        settings.location
    );
    std::fs::create_dir_all(work).with_context(|| format!("creating {}", work.display()))?;
    let stores = [("file", ArtifactStore::new(work.join("store"))?), ("s3", ArtifactStore::open(&settings)?)];
    let mut report = serde_json::Map::new();
    let mut size = 0;
    for (name, store) in stores {
        let (mut put, mut fetch) = (Vec::new(), Vec::new());
        for rep in 0..timing.warmup + timing.reps {
            let started = Instant::now();
            let stored = store.put_dir(src)?;
            let put_s = started.elapsed().as_secs_f64();
            let dest = work.join(format!("fetched-{name}-{rep}"));
            let started = Instant::now();
            let fetched = store.fetch_to(&stored.sha256, &dest)?;
            let fetch_s = started.elapsed().as_secs_f64();
            ensure!(fetched == stored, "{name}: fetched {fetched:?}, stored {stored:?}");
            size = stored.size;
            // The next repetition stores into an empty store again.
            std::fs::remove_dir_all(&dest).with_context(|| format!("removing {}", dest.display()))?;
            store.remove(&stored.sha256)?;
            if rep >= timing.warmup {
                put.push(put_s);
                fetch.push(fetch_s);
            }
        }
        let mb = size as f64 / 1e6;
        report.insert(
            name.to_string(),
            json!({
                "store_mb_per_s": mb / median(&put),
                "fetch_mb_per_s": mb / median(&fetch),
                "store_median_s": median(&put),
                "fetch_median_s": median(&fetch),
                "store_times": put,
                "fetch_times": fetch,
                "location": if name == "s3" { settings.location.clone() } else { store.root().display().to_string() },
            }),
        );
    }
    report.insert("bytes".into(), json!(size));
    Ok(Value::Object(report))
}

fn peak_rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

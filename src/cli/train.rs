//! The training stages from files: pretrain, sft, reward train|score, ppo.
//!
//! Each reads its typed config from `--config FILE.toml` (defaults for absent fields),
//! then applies the flags, validates, trains into `--out`, and prints its report as one
//! JSON line. `--out DIR` is the final model; checkpoints and `metrics.jsonl` are inside.

use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use trainer::train::{load_config, RunDir};
use trainer::{data, ppo, pretrain, reward, sft, DeviceChoice, LanguageModel};

use super::jsonl;

/// Applies `--epochs`, `--steps`, `--lr`, `--batch-size` and `--seed` to a stage config
/// with those fields (`--steps` wins over `--epochs`).
macro_rules! override_common {
    ($cfg:expr, $stage:expr) => {{
        if let Some(epochs) = $stage.epochs {
            $cfg.epochs = epochs;
            $cfg.steps = None;
        }
        if let Some(steps) = $stage.steps {
            $cfg.steps = Some(steps);
        }
        if let Some(lr) = $stage.lr {
            $cfg.lr = lr;
        }
        if let Some(batch_size) = $stage.batch_size {
            $cfg.batch_size = batch_size;
        }
        if let Some(seed) = $stage.seed {
            $cfg.seed = seed;
        }
    }};
}

/// The flags every stage takes; each overrides the config file's value.
#[derive(Args)]
pub struct StageArgs {
    /// The run's output: the final model directory, with checkpoints and metrics.jsonl.
    #[arg(long)]
    out: PathBuf,
    /// A TOML file with the stage's settings (see the stage's config documentation).
    #[arg(long)]
    config: Option<PathBuf>,
    #[arg(long)]
    steps: Option<i64>,
    #[arg(long)]
    epochs: Option<i64>,
    #[arg(long)]
    lr: Option<f64>,
    #[arg(long)]
    batch_size: Option<usize>,
    #[arg(long)]
    seed: Option<u64>,
    /// cpu, cuda or auto.
    #[arg(long, default_value = "auto")]
    device: DeviceChoice,
    /// Continue the run in --out from its latest checkpoint.
    #[arg(long)]
    resume: bool,
}

#[derive(Args)]
pub struct PretrainArgs {
    /// The model to start from (see `plumb init`).
    #[arg(long)]
    model: PathBuf,
    /// A text file (one document) or JSON lines of {"text"} (.jsonl).
    #[arg(long)]
    data: PathBuf,
    /// Tokens per training window (default: the model's context).
    #[arg(long)]
    seq_len: Option<i64>,
    #[command(flatten)]
    stage: StageArgs,
}

#[derive(Args)]
pub struct SftArgs {
    #[arg(long)]
    model: PathBuf,
    /// Demonstrations: {"prompt", "response"} or {"messages": [...]} lines.
    #[arg(long)]
    data: PathBuf,
    /// Validation demonstrations (default: a held-out share of --data).
    #[arg(long)]
    val_data: Option<PathBuf>,
    /// Residual dropout while fine-tuning (InstructGPT: 0.2).
    #[arg(long)]
    dropout: Option<f64>,
    #[command(flatten)]
    stage: StageArgs,
}

#[derive(Subcommand)]
pub enum RewardCommand {
    /// Train a reward model on K-wise rankings.
    Train(RewardTrainArgs),
    /// Score responses: {"prompt", "response"} → {"reward"}.
    Score(RewardScoreArgs),
}

#[derive(Args)]
pub struct RewardArgs {
    #[command(subcommand)]
    command: RewardCommand,
}

#[derive(Args)]
pub struct RewardTrainArgs {
    /// The trunk to start from: an SFT or base checkpoint.
    #[arg(long)]
    model: PathBuf,
    /// Rankings: {"prompt", "samples", "ranking"} or {"prompt", "chosen", "rejected"} lines.
    #[arg(long)]
    data: PathBuf,
    /// Validation rankings (default: a held-out share of --data).
    #[arg(long)]
    val_data: Option<PathBuf>,
    /// Demonstrations whose mean reward the bias sets to 0 (default: the best-ranked samples).
    #[arg(long)]
    demos: Option<PathBuf>,
    #[command(flatten)]
    stage: StageArgs,
}

#[derive(Args)]
pub struct RewardScoreArgs {
    /// A reward model trained by `plumb reward train`.
    #[arg(long)]
    model: PathBuf,
    #[arg(long, default_value = "auto")]
    device: DeviceChoice,
    #[arg(long, default_value_t = 16)]
    batch_size: usize,
}

#[derive(Args)]
pub struct PpoArgs {
    /// The SFT policy to start from (also the frozen reference).
    #[arg(long)]
    policy: PathBuf,
    /// The reward model (its trunk and head also initialise the value model).
    #[arg(long)]
    reward: PathBuf,
    /// Prompts: {"prompt"} lines.
    #[arg(long)]
    prompts: PathBuf,
    /// A pretraining corpus for PPO-ptx.
    #[arg(long)]
    ptx_data: Option<PathBuf>,
    /// γ_ptx, the weight of the pretraining loss (InstructGPT: 27.8).
    #[arg(long)]
    ptx_coef: Option<f64>,
    /// A fixed KL coefficient β (InstructGPT: 0.02).
    #[arg(long, conflicts_with = "kl_target")]
    kl_coef: Option<f64>,
    /// An adaptive KL coefficient that steers the KL towards this target.
    #[arg(long)]
    kl_target: Option<f64>,
    /// Most tokens per response.
    #[arg(long)]
    max_new_tokens: Option<i64>,
    #[command(flatten)]
    stage: StageArgs,
}

#[derive(Deserialize)]
struct ResponseLine {
    prompt: String,
    response: String,
}

#[derive(Serialize)]
struct Reward {
    reward: f32,
}

/// The stage's config: the file's (or the defaults), before the flags.
fn base_config<C: DeserializeOwned + Default>(stage: &StageArgs) -> Result<C> {
    Ok(match &stage.config {
        Some(path) => load_config(path)?,
        None => C::default(),
    })
}

fn load_model(dir: &Path, stage: &StageArgs) -> Result<LanguageModel> {
    let device = stage.device.resolve().map_err(anyhow::Error::msg)?;
    LanguageModel::load(dir, device).with_context(|| format!("loading the model in {}", dir.display()))
}

/// Writes the effective config beside the model, then the report to stdout.
fn finish<C: Serialize, R: Serialize>(out: &Path, config: &C, report: &R) -> Result<()> {
    let path = out.join("train_config.toml");
    let text = toml::to_string_pretty(config).context("serialising the config")?;
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    let mut stdout = BufWriter::new(io::stdout().lock());
    jsonl::write_line(&mut stdout, report)?;
    Ok(stdout.flush()?)
}

pub fn pretrain(args: PretrainArgs) -> Result<()> {
    let s = &args.stage;
    let mut cfg: pretrain::PretrainConfig = base_config(s)?;
    override_common!(cfg, s);
    cfg.seq_len = args.seq_len.or(cfg.seq_len);
    cfg.validate()?;
    let documents = data::read_corpus(&args.data)?;
    let model = load_model(&args.model, s)?;
    let mut run = RunDir::open(&s.out, s.resume)?;
    let (_, report) = pretrain::train(&cfg, model, &documents, &mut run)?;
    finish(&s.out, &cfg, &report)
}

pub fn sft(args: SftArgs) -> Result<()> {
    let s = &args.stage;
    let mut cfg: sft::SftConfig = base_config(s)?;
    override_common!(cfg, s);
    cfg.dropout = args.dropout.unwrap_or(cfg.dropout);
    cfg.validate()?;
    let demonstrations = data::read_demonstrations(&args.data)?;
    let validation = args.val_data.as_deref().map(data::read_demonstrations).transpose()?.unwrap_or_default();
    let model = load_model(&args.model, s)?;
    let mut run = RunDir::open(&s.out, s.resume)?;
    let (_, report) = sft::train(&cfg, model, &demonstrations, &validation, &mut run)?;
    finish(&s.out, &cfg, &report)
}

pub fn reward(args: RewardArgs) -> Result<()> {
    match args.command {
        RewardCommand::Train(args) => reward_train(args),
        RewardCommand::Score(args) => reward_score(args),
    }
}

fn reward_train(args: RewardTrainArgs) -> Result<()> {
    let s = &args.stage;
    let mut cfg: reward::RewardConfig = base_config(s)?;
    override_common!(cfg, s);
    cfg.validate()?;
    let rankings = data::read_rankings(&args.data)?;
    let validation = args.val_data.as_deref().map(data::read_rankings).transpose()?.unwrap_or_default();
    let demonstrations =
        args.demos.as_deref().map(data::read_demonstrations).transpose()?.unwrap_or_default();
    let model = load_model(&args.model, s)?;
    let mut run = RunDir::open(&s.out, s.resume)?;
    let (_, report) = reward::train(&cfg, model, &rankings, &validation, &demonstrations, &mut run)?;
    finish(&s.out, &cfg, &report)
}

fn reward_score(args: RewardScoreArgs) -> Result<()> {
    let lines: Vec<ResponseLine> = jsonl::read_all(io::stdin().lock(), "stdin")?;
    let device = args.device.resolve().map_err(anyhow::Error::msg)?;
    let model = LanguageModel::load(&args.model, device)
        .with_context(|| format!("loading the reward model in {}", args.model.display()))?;
    anyhow::ensure!(
        model.score_head.is_some(),
        "{} has no reward head: train one with `plumb reward train`",
        args.model.display()
    );
    let pairs: Vec<(String, String)> = lines.into_iter().map(|l| (l.prompt, l.response)).collect();
    let rewards = reward::score(&model, &pairs, args.batch_size)?;
    let mut out = BufWriter::new(io::stdout().lock());
    for reward in rewards {
        jsonl::write_line(&mut out, &Reward { reward })?;
    }
    Ok(out.flush()?)
}

pub fn ppo(args: PpoArgs) -> Result<()> {
    let s = &args.stage;
    let mut cfg: ppo::PpoConfig = base_config(s)?;
    let prompts = data::read_prompts(&args.prompts)?;
    if let Some(lr) = s.lr {
        cfg.lr = lr;
    }
    if let Some(batch_size) = s.batch_size {
        cfg.batch_size = batch_size;
    }
    if let Some(seed) = s.seed {
        cfg.seed = seed;
    }
    // PPO counts iterations; an epoch is one pass of rollouts over the prompts.
    if let Some(epochs) = s.epochs {
        cfg.steps = epochs * prompts.len().div_ceil(cfg.batch_size.max(1)) as i64;
    }
    if let Some(steps) = s.steps {
        cfg.steps = steps;
    }
    if let Some(coef) = args.ptx_coef {
        cfg.ptx_coef = coef;
    }
    if let Some(beta) = args.kl_coef {
        cfg.kl_coef = beta;
        cfg.kl_target = None;
    }
    if let Some(target) = args.kl_target {
        cfg.kl_target = Some(target);
    }
    if let Some(n) = args.max_new_tokens {
        cfg.max_new_tokens = n;
    }
    cfg.validate()?;
    let ptx = args.ptx_data.as_deref().map(data::read_corpus).transpose()?;
    let policy = load_model(&args.policy, s)?;
    let reward_model = load_model(&args.reward, s)?;
    anyhow::ensure!(
        reward_model.score_head.is_some(),
        "{} has no reward head: train one with `plumb reward train`",
        args.reward.display()
    );
    let mut run = RunDir::open(&s.out, s.resume)?;
    let (_, report) = ppo::train(&cfg, policy, &reward_model, &prompts, ptx.as_deref(), &mut run)?;
    finish(&s.out, &cfg, &report)
}

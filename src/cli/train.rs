//! The training stages from files: pretrain, sft, reward train|score, ppo, dpo, rloo,
//! grpo.
//!
//! Each reads its typed config from `--config FILE.toml` (defaults for absent fields),
//! then applies the flags, validates, trains into `--out`, and prints its report as one
//! JSON line. `--out DIR` is the final model; checkpoints and `metrics.jsonl` are inside.

use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use trainer::heldout::{self, HeldOutSettings};
use trainer::reward_program::RewardProgram;
use trainer::rollout;
use trainer::train::{load_config, RunDir, TrainError};
use trainer::{data, distributed, dpo, grpo, ppo, pretrain, reward, rloo, sft, DeviceChoice, LanguageModel};

use super::jsonl;

/// Applies `--epochs`, `--steps`, `--lr`, `--batch-size`, `--seed` and `--precision` to a
/// stage config with those fields (`--steps` wins over `--epochs`).
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
            $cfg.lr = lr.into();
        }
        if let Some(batch_size) = $stage.batch_size {
            $cfg.batch_size = batch_size;
        }
        if let Some(seed) = $stage.seed {
            $cfg.seed = seed;
        }
        if let Some(precision) = $stage.precision {
            $cfg.precision = precision;
        }
    }};
}

/// Applies `--lr`, `--batch-size`, `--seed`, `--precision`, `--epochs`, `--steps` and
/// `--max-new-tokens` to an RL stage's config: its steps are iterations, and an epoch is
/// one pass of rollouts over the `prompts` prompts (`--steps` wins).
macro_rules! override_rl {
    ($cfg:expr, $stage:expr, $rollouts:expr, $prompts:expr) => {{
        if let Some(n) = $rollouts.max_new_tokens {
            $cfg.max_new_tokens = n;
        }
        if let Some(lr) = $stage.lr {
            $cfg.lr = lr.into();
        }
        if let Some(batch_size) = $stage.batch_size {
            $cfg.batch_size = batch_size;
        }
        if let Some(seed) = $stage.seed {
            $cfg.seed = seed;
        }
        if let Some(precision) = $stage.precision {
            $cfg.precision = precision;
        }
        if let Some(epochs) = $stage.epochs {
            $cfg.steps = epochs * $prompts.div_ceil($cfg.batch_size.max(1)) as i64;
        }
        if let Some(steps) = $stage.steps {
            $cfg.steps = steps;
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
    /// auto (bf16 on CUDA, f32 on the CPU), f32 or bf16: mixed precision, with f32 master
    /// weights and optimiser state.
    #[arg(long)]
    precision: Option<trainer::Precision>,
    /// cpu, cuda, cuda:N or auto.
    #[arg(long, default_value = "auto")]
    device: DeviceChoice,
    /// Continue the run in --out from its latest checkpoint.
    #[arg(long)]
    resume: bool,
}

/// The data-parallel launch of the stages that train on several ranks (pretrain, sft,
/// reward train, ppo, rloo, grpo); under `torchrun`'s variables (`RANK`, `WORLD_SIZE`,
/// `MASTER_ADDR`, `MASTER_PORT`) the process is one rank of such a job without this flag.
#[derive(Args)]
pub struct LaunchArgs {
    /// Start N local ranks of one data-parallel job, as `torchrun --nproc-per-node N`
    /// does: each draws its share of every batch, with one thread, and rank 0 writes --out.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    nproc: Option<u16>,
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
    launch: LaunchArgs,
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
    /// Residual dropout while fine-tuning (InstructGPT: 0.2; default: a rule of the
    /// model's width, listed below).
    #[arg(long)]
    dropout: Option<f64>,
    #[command(flatten)]
    launch: LaunchArgs,
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
    launch: LaunchArgs,
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
    /// The policy, the rewards and the prompts. A reward model's trunk and head also
    /// initialise the value model (with a program, the policy's trunk and a new head do).
    #[command(flatten)]
    rollouts: RolloutArgs,
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
    #[command(flatten)]
    launch: LaunchArgs,
    #[command(flatten)]
    stage: StageArgs,
}

#[derive(Args)]
pub struct DpoArgs {
    /// The SFT policy to start from; also the frozen reference.
    #[arg(long)]
    policy: PathBuf,
    /// Rankings: {"prompt", "samples", "ranking"} or {"prompt", "chosen", "rejected"} lines.
    #[arg(long)]
    data: PathBuf,
    /// Validation rankings (default: a held-out share of --data's prompts).
    #[arg(long)]
    val_data: Option<PathBuf>,
    /// β, the strength of the KL constraint to the reference (the paper: 0.1).
    #[arg(long)]
    beta: Option<f64>,
    /// sigmoid (DPO) or ipo (IPO).
    #[arg(long)]
    loss: Option<dpo::DpoLoss>,
    /// ε, the assumed share of flipped labels (conservative DPO); sigmoid loss only.
    #[arg(long)]
    label_smoothing: Option<f64>,
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

/// Runs `stage` in this process, as one rank of the job the launch variables describe
/// when they are set; with `--nproc N`, starts N local ranks of this command instead.
fn data_parallel(launch: &LaunchArgs, stage: impl FnOnce() -> Result<()>) -> Result<()> {
    if let Some(nproc) = launch.nproc {
        if let Some(job) = distributed::Launch::from_env()? {
            anyhow::bail!(
                "--nproc starts its own ranks, but this process is already rank {} of {} \
                 (RANK and WORLD_SIZE are set): pass one or the other",
                job.rank,
                job.world_size
            );
        }
        return Ok(distributed::spawn_local_ranks(
            nproc.into(),
            &without_nproc(std::env::args_os().skip(1)),
        )?);
    }
    distributed::init_from_env()?;
    stage()
}

/// A command's arguments without `--nproc N` (or `--nproc=N`): each rank's command line.
fn without_nproc(arguments: impl IntoIterator<Item = std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let mut kept = Vec::new();
    let mut arguments = arguments.into_iter();
    while let Some(argument) = arguments.next() {
        if argument == "--nproc" {
            arguments.next();
        } else if !argument.to_string_lossy().starts_with("--nproc=") {
            kept.push(argument);
        }
    }
    kept
}

/// Refuses to run `stage` as one of several ranks: it has no data-parallel loop, and each
/// rank would train the whole batch alone and race the others for --out.
fn in_one_process(stage: &str) -> Result<()> {
    match distributed::Launch::from_env()? {
        Some(job) if job.world_size > 1 => anyhow::bail!(
            "plumb {stage} trains in one process, but WORLD_SIZE={} is set: unset the launch variables",
            job.world_size
        ),
        _ => Ok(()),
    }
}

/// Writes the effective config beside the model, then the report to stdout (rank 0's
/// alone in a data-parallel job: the other ranks trained the same weights).
fn finish<C: Serialize, R: Serialize>(out: &Path, config: &C, report: &R) -> Result<()> {
    if !distributed::is_leader() {
        return Ok(());
    }
    let path = out.join("train_config.toml");
    let text = toml::to_string_pretty(config).context("serialising the config")?;
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    let mut stdout = BufWriter::new(io::stdout().lock());
    jsonl::write_line(&mut stdout, report)?;
    Ok(stdout.flush()?)
}

pub fn pretrain(args: PretrainArgs) -> Result<()> {
    data_parallel(&args.launch, || pretrain_here(&args))
}

fn pretrain_here(args: &PretrainArgs) -> Result<()> {
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
    data_parallel(&args.launch, || sft_here(&args))
}

fn sft_here(args: &SftArgs) -> Result<()> {
    let s = &args.stage;
    let mut cfg: sft::SftConfig = base_config(s)?;
    override_common!(cfg, s);
    cfg.dropout = args.dropout.or(cfg.dropout);
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
    data_parallel(&args.launch, || reward_train_here(&args))
}

fn reward_train_here(args: &RewardTrainArgs) -> Result<()> {
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
    data_parallel(&args.launch, || ppo_here(&args))
}

fn ppo_here(args: &PpoArgs) -> Result<()> {
    let s = &args.stage;
    let mut cfg: ppo::PpoConfig = base_config(s)?;
    let prompts = data::read_prompts(&args.rollouts.prompts)?;
    override_rl!(cfg, s, args.rollouts, prompts.len());
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
    cfg.validate()?;
    let ptx = args.ptx_data.as_deref().map(data::read_corpus).transpose()?;
    train_rl(&args.rollouts, s, &cfg, &prompts, |policy, reward, prompts, run, eval| {
        let data = ppo::PpoData { prompts, ptx_corpus: ptx.as_deref() };
        ppo::train_with_eval(&cfg, policy, reward, data, run, eval)
    })
}

/// An RL stage's run from the command line: loads the policy and the rewards, opens the
/// run directory, trains with `train` on the prompts not held out, evaluating on the
/// held-out ones (`cfg`'s `heldout_prompts`, `eval_every`, `select_by`), and finishes
/// with `cfg` and the report, with the selection when the run registers an evaluated
/// policy rather than its last.
fn train_rl<C, R>(
    rollouts: &RolloutArgs,
    stage: &StageArgs,
    cfg: &C,
    prompts: &[String],
    train: impl FnOnce(
        LanguageModel,
        rollout::Reward,
        &[String],
        &mut RunDir,
        &mut rollout::EvalFn,
    ) -> Result<(LanguageModel, R), TrainError>,
) -> Result<()>
where
    C: Serialize,
    for<'c> &'c C: Into<HeldOutSettings>,
    R: Serialize,
{
    let policy = load_model(&rollouts.policy, stage)?;
    let rewarder = rollouts.reward.load(stage)?;
    let mut run = RunDir::open(&stage.out, stage.resume)?;
    let reward = rewarder.reward();
    let (_, report, selection) =
        heldout::train_with_heldout(cfg.into(), prompts, reward, &mut run, |p, run, eval| {
            train(policy, reward, p, run, eval)
        })?;
    finish(&stage.out, cfg, &RlOutcome { report, selection })
}

/// What an RL stage prints when it ends: its report, and which evaluated policy it saved
/// when it selected one.
#[derive(Serialize)]
struct RlOutcome<R> {
    #[serde(flatten)]
    report: R,
    #[serde(skip_serializing_if = "Option::is_none")]
    selection: Option<heldout::SelectionRecord>,
}

/// What every RL stage (PPO, RLOO, GRPO) samples from and is rewarded by.
#[derive(Args)]
pub struct RolloutArgs {
    /// The SFT policy to start from (also the frozen reference).
    #[arg(long)]
    policy: PathBuf,
    #[command(flatten)]
    reward: RewardSource,
    /// Prompts: {"prompt"} lines.
    #[arg(long)]
    prompts: PathBuf,
    /// Most tokens per response.
    #[arg(long)]
    max_new_tokens: Option<i64>,
}

/// Where an RL stage's rewards come from: a reward model, or a program.
#[derive(Args)]
pub struct RewardSource {
    /// A reward model trained by `plumb reward train`.
    #[arg(long, required_unless_present = "reward_cmd", conflicts_with = "reward_cmd")]
    reward: Option<PathBuf>,
    /// A reward program, run under `sh -c` once per batch: it reads {"prompt",
    /// "response"} JSON lines on stdin and writes one {"reward": number} line each, in
    /// order (the demo world's oracle: "plumb world reward"). A program that fails,
    /// hangs past --reward-timeout or writes a bad line fails the run.
    #[arg(long)]
    reward_cmd: Option<String>,
    /// Seconds the reward program may take for one batch.
    #[arg(long, default_value_t = 60.0)]
    reward_timeout: f64,
}

/// A loaded reward source.
enum Rewarder {
    Model(LanguageModel),
    Program(RewardProgram),
}

impl RewardSource {
    fn load(&self, stage: &StageArgs) -> Result<Rewarder> {
        match (&self.reward, &self.reward_cmd) {
            (_, Some(command)) => {
                anyhow::ensure!(
                    self.reward_timeout.is_finite() && self.reward_timeout > 0.0,
                    "--reward-timeout must be a positive number of seconds, got {}",
                    self.reward_timeout
                );
                let timeout = std::time::Duration::from_secs_f64(self.reward_timeout);
                Ok(Rewarder::Program(RewardProgram::new(command, timeout)))
            }
            (Some(dir), None) => {
                let model = load_model(dir, stage)?;
                anyhow::ensure!(
                    model.score_head.is_some(),
                    "{} has no reward head: train one with `plumb reward train`",
                    dir.display()
                );
                Ok(Rewarder::Model(model))
            }
            (None, None) => anyhow::bail!("give --reward RM_DIR or --reward-cmd CMD"),
        }
    }
}

impl Rewarder {
    fn reward(&self) -> rollout::Reward<'_> {
        match self {
            Rewarder::Model(model) => rollout::Reward::Model(model),
            Rewarder::Program(program) => rollout::Reward::Program(program),
        }
    }
}

#[derive(Args)]
pub struct RlooArgs {
    #[command(flatten)]
    rollouts: RolloutArgs,
    /// k, samples per prompt (Ahmadian et al.: 2 or 4).
    #[arg(long)]
    k: Option<usize>,
    /// β, the KL penalty in each sample's reward (TRL: 0.05).
    #[arg(long)]
    kl_coef: Option<f64>,
    #[command(flatten)]
    launch: LaunchArgs,
    #[command(flatten)]
    stage: StageArgs,
}

pub fn rloo(args: RlooArgs) -> Result<()> {
    data_parallel(&args.launch, || rloo_here(&args))
}

fn rloo_here(args: &RlooArgs) -> Result<()> {
    let s = &args.stage;
    let mut cfg: rloo::RlooConfig = base_config(s)?;
    let prompts = data::read_prompts(&args.rollouts.prompts)?;
    override_rl!(cfg, s, args.rollouts, prompts.len());
    cfg.k = args.k.unwrap_or(cfg.k);
    cfg.kl_coef = args.kl_coef.unwrap_or(cfg.kl_coef);
    cfg.validate()?;
    train_rl(&args.rollouts, s, &cfg, &prompts, |policy, reward, prompts, run, eval| {
        rloo::train(&cfg, policy, reward, prompts, run, eval)
    })
}

#[derive(Args)]
pub struct GrpoArgs {
    #[command(flatten)]
    rollouts: RolloutArgs,
    /// G, samples per prompt (DeepSeekMath: 64).
    #[arg(long)]
    group_size: Option<usize>,
    /// β, the weight of the k3 KL to the reference in the loss (DeepSeekMath: 0.04).
    #[arg(long)]
    kl_coef: Option<f64>,
    /// ε, the clip of the ratio π/π_old (DeepSeekMath: 0.2).
    #[arg(long)]
    clip: Option<f64>,
    /// ε_high, a separate upper clip: DAPO's clip-higher (0.28).
    #[arg(long)]
    clip_high: Option<f64>,
    #[command(flatten)]
    launch: LaunchArgs,
    #[command(flatten)]
    stage: StageArgs,
}

pub fn grpo(args: GrpoArgs) -> Result<()> {
    data_parallel(&args.launch, || grpo_here(&args))
}

fn grpo_here(args: &GrpoArgs) -> Result<()> {
    let s = &args.stage;
    let mut cfg: grpo::GrpoConfig = base_config(s)?;
    let prompts = data::read_prompts(&args.rollouts.prompts)?;
    override_rl!(cfg, s, args.rollouts, prompts.len());
    cfg.group_size = args.group_size.unwrap_or(cfg.group_size);
    cfg.kl_coef = args.kl_coef.unwrap_or(cfg.kl_coef);
    cfg.clip_ratio = args.clip.unwrap_or(cfg.clip_ratio);
    cfg.clip_high = args.clip_high.or(cfg.clip_high);
    cfg.validate()?;
    train_rl(&args.rollouts, s, &cfg, &prompts, |policy, reward, prompts, run, eval| {
        grpo::train(&cfg, policy, reward, prompts, run, eval)
    })
}

pub fn dpo(args: DpoArgs) -> Result<()> {
    in_one_process("dpo")?;
    let s = &args.stage;
    let mut cfg: dpo::DpoConfig = base_config(s)?;
    override_common!(cfg, s);
    cfg.beta = args.beta.unwrap_or(cfg.beta);
    cfg.loss = args.loss.unwrap_or(cfg.loss);
    cfg.label_smoothing = args.label_smoothing.unwrap_or(cfg.label_smoothing);
    cfg.validate()?;
    let rankings = data::read_rankings(&args.data)?;
    let validation = args.val_data.as_deref().map(data::read_rankings).transpose()?.unwrap_or_default();
    let policy = load_model(&args.policy, s)?;
    let mut run = RunDir::open(&s.out, s.resume)?;
    let (_, report) = dpo::train(&cfg, policy, &rankings, &validation, &mut run)?;
    finish(&s.out, &cfg, &report)
}

#[cfg(test)]
mod tests {
    use super::without_nproc;

    #[test]
    fn each_rank_runs_the_command_without_nproc() {
        let given = ["sft", "--nproc", "2", "--data", "d.jsonl", "--nproc=3", "--out", "o"];
        let kept = without_nproc(given.iter().map(Into::into));
        assert_eq!(kept, ["sft", "--data", "d.jsonl", "--out", "o"]);
    }
}

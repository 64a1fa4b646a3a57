//! Stage 4 of InstructGPT: reinforcement learning against the reward model with PPO.
//!
//! One PPO step (`step`) in the paper's order:
//! 1. sample: the policy answers a batch of prompts at `temperature` (InstructGPT: 1);
//! 2. score: the reward model reads prompt ++ response at its last token, the EOS of a
//!    sample that ended (a sample cut off at `max_new_tokens` also pays
//!    `missing_eos_penalty`); the score is clipped to ±`reward_clip`;
//! 3. KL-penalised rewards: −β·(log π − log π_ref) on every response token, the score
//!    added on the last one;
//! 4. values from the value model (initialised from the reward model), GAE with γ and λ,
//!    advantages whitened;
//! 5. `ppo_epochs` passes over minibatches: the clipped policy loss (plus γ_ptx times the
//!    language-model loss on a pretraining batch: PPO-ptx) and the clipped value loss,
//!    each model with its own AdamW;
//! 6. statistics;
//! 7. the adaptive KL controller's update (Ziegler et al. 2019).
//!
//! Dropout is off everywhere (`train = false`), in rollouts and in updates, as in
//! lm-human-preferences: with dropout on, π/π_old would differ from 1 before any update.
//!
//! Tensors of a batch use one layout: prompts left-padded to P columns, then responses
//! right-padded to R columns, so response token t sits in column P + t and is predicted
//! from column P + t − 1; per-token tensors are (B, R) with a response mask.

use std::time::Instant;

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::checkpoint::LanguageModel;
use crate::distributed;
use crate::lm_loop::{epoch_order, Example};
use crate::rollout::{
    self, encode_prompts, global_masked_mean, masked_mean, minibatches, penalised_scores, run_settings,
    run_steps, Reward, Rollout, RunReport, StepSample, StepSummary, MINIBATCH_SEED,
};
pub use crate::rollout::{EvalFn, Evaluation};
use crate::sampling::SamplingConfig;
use crate::train::{lr_at, AdamW, RunDir, TrainError};

/// PPO's settings: declared in the run contract.
pub use spec::PpoConfig;

/// How rollouts are sampled: at PPO's temperature, from the whole distribution.
fn rollout_sampling(cfg: &PpoConfig, seed: u64) -> SamplingConfig {
    rollout::rollout_sampling(cfg.max_new_tokens, cfg.temperature, seed)
}

// ---------------------------------------------------------------------------------------
// The small pure pieces, each as the literature writes it.

/// Variance (the population's, as lm-human-preferences' `tf.nn.moments`) over the mask,
/// of every rank's `x`, with its mean.
fn masked_moments(x: &Tensor, mask: &Tensor) -> Result<(Tensor, Tensor), TrainError> {
    let mean = global_masked_mean(x, mask)?;
    let var = global_masked_mean(&(x - &mean).square(), mask)?;
    Ok((mean, var))
}

/// Normalises `x` to mean 0 and variance 1 over the mask, with the mean and variance of
/// every rank's `x` (a data-parallel step whitens as one process on the whole batch);
/// `shift_mean` false adds the mean back (only the scale changes). Padding comes out 0.
pub fn whiten(x: &Tensor, mask: &Tensor, shift_mean: bool) -> Result<Tensor, TrainError> {
    let (mean, var) = masked_moments(x, mask)?;
    let whitened = (x - &mean) * (var + 1e-8).rsqrt();
    let whitened = if shift_mean { whitened } else { whitened + mean };
    Ok(whitened * mask)
}

/// The per-token KL penalty −β·(log π − log π_ref) on response tokens (B, R); 0 on padding.
pub fn kl_penalty(logprobs: &Tensor, ref_logprobs: &Tensor, mask: &Tensor, kl_coef: f64) -> Tensor {
    (logprobs - ref_logprobs) * mask * (-kl_coef)
}

/// The per-token rewards (B, R): the KL penalty on every response token, and each
/// sample's score (B,) added on its last response token.
pub fn token_rewards(scores: &Tensor, kl_penalty: &Tensor, mask: &Tensor) -> Tensor {
    let last = (mask.sum_dim_intlist(1, false, Kind::Int64) - 1).clamp_min(0).unsqueeze(1); // (B, 1)
    kl_penalty.scatter_add(1, &last, &scores.to_kind(Kind::Float).unsqueeze(1))
}

/// Generalised advantage estimation (Schulman et al. 2016) over response tokens:
/// δ_t = r_t + γ·V_{t+1} − V_t, A_t = δ_t + γλ·A_{t+1}, with V = 0 past a sample's last
/// token. Returns (advantages, returns = advantages + values), both 0 on padding.
pub fn gae(rewards: &Tensor, values: &Tensor, mask: &Tensor, gamma: f64, lam: f64) -> (Tensor, Tensor) {
    let rewards = rewards * mask;
    let values = values * mask;
    let r = rewards.size()[1];
    let mut last = rewards.select(1, 0).zeros_like(); // (B,)
    let mut reversed = Vec::with_capacity(r as usize);
    for t in (0..r).rev() {
        let next_value = if t + 1 < r { values.select(1, t + 1) } else { last.zeros_like() };
        let delta = rewards.select(1, t) + next_value * gamma - values.select(1, t);
        last = delta + &last * (gamma * lam);
        reversed.push(last.shallow_clone());
    }
    reversed.reverse();
    let advantages = Tensor::stack(&reversed, 1) * mask;
    let returns = &advantages + &values;
    (advantages, returns)
}

/// PPO's clipped surrogate: the masked mean of max(−A·ρ, −A·clip(ρ, 1 − ε, 1 + ε)) with
/// ρ = π/π_old, and its statistics: (pg_loss, clipfrac, approx_kl), where clipfrac is the
/// share of tokens whose clipped term was the larger and approx_kl is
/// ½·mean((log π − log π_old)²), as lm-human-preferences reports them.
pub fn policy_loss(
    logprobs: &Tensor,
    old_logprobs: &Tensor,
    advantages: &Tensor,
    mask: &Tensor,
    clip_ratio: f64,
) -> (Tensor, Tensor, Tensor) {
    let (pg_losses, clipped) =
        rollout::clipped_surrogate(logprobs, old_logprobs, advantages, clip_ratio, clip_ratio);
    let pg_loss = masked_mean(&pg_losses, mask);
    let clipfrac = masked_mean(&clipped, mask);
    let approx_kl = masked_mean(&(logprobs - old_logprobs).square(), mask) * 0.5;
    (pg_loss, clipfrac.detach(), approx_kl.detach())
}

/// The clipped value loss ½·masked mean of max((V − R)², (clip(V, V_old ± ε_v) − R)²),
/// and the share of tokens where the clipped term was the larger.
pub fn value_loss(
    values: &Tensor,
    old_values: &Tensor,
    returns: &Tensor,
    mask: &Tensor,
    value_clip: f64,
) -> (Tensor, Tensor) {
    let clipped = values.clamp_tensor(Some(&(old_values - value_clip)), Some(&(old_values + value_clip)));
    let vf_losses = (values - returns).square();
    let vf_losses_clipped = (clipped - returns).square();
    let vf_loss = masked_mean(&vf_losses.maximum(&vf_losses_clipped), mask) * 0.5;
    let vf_clipfrac = masked_mean(&vf_losses_clipped.gt_tensor(&vf_losses).to_kind(Kind::Float), mask);
    (vf_loss, vf_clipfrac.detach())
}

/// The adaptive KL controller of Ziegler et al. (2019): with e = clip(KL/target − 1,
/// −0.2, 0.2), β ← β·(1 + e·n/horizon) after a batch of n episodes.
pub fn adaptive_kl_coef(kl_coef: f64, kl: f64, target: f64, horizon: f64, n: usize) -> f64 {
    let error = (kl / target - 1.0).clamp(-0.2, 0.2);
    kl_coef * (1.0 + error * n as f64 / horizon)
}

/// 1 − Var(R − V)/Var(R) over the mask (every rank's): how much of the returns the
/// values explain.
pub fn explained_variance(values: &Tensor, returns: &Tensor, mask: &Tensor) -> Result<f64, TrainError> {
    let var_returns = masked_moments(returns, mask)?.1.double_value(&[]);
    let var_residual = masked_moments(&(returns - values), mask)?.1.double_value(&[]);
    Ok(if var_returns > 0.0 { 1.0 - var_residual / var_returns } else { f64::NAN })
}

// ---------------------------------------------------------------------------------------
// PPO-ptx's pretraining batches.

/// The pretraining corpus of PPO-ptx, packed into windows as pretraining packs it.
pub struct PtxCorpus {
    windows: Vec<Example>,
}

impl PtxCorpus {
    pub fn new(
        model: &LanguageModel,
        documents: &[String],
        seq_len: Option<i64>,
    ) -> Result<Self, TrainError> {
        let n_ctx = model.config.n_ctx;
        let seq_len = seq_len.unwrap_or(n_ctx);
        if seq_len > n_ctx {
            return Err(TrainError::Config(format!(
                "ppo.ptx_seq_len {seq_len} exceeds the policy's n_ctx {n_ctx}"
            )));
        }
        let windows = crate::pretrain::pack(&model.tokenizer, documents, seq_len as usize);
        if windows.is_empty() {
            return Err(TrainError::Config("the pretraining corpus for PPO-ptx has no text".into()));
        }
        Ok(PtxCorpus { windows })
    }

    /// Pretraining batch number `index` (counting across epochs of the corpus): right-
    /// padded ids and attention (B, T), and the target mask (B, T − 1).
    fn batch(&self, batch_size: usize, seed: u64, index: i64, pad: i64, device: Device) -> [Tensor; 3] {
        let per_epoch = self.windows.len().div_ceil(batch_size) as i64;
        let (epoch, position) = (index / per_epoch, (index % per_epoch) as usize);
        let order = epoch_order(self.windows.len(), seed, epoch as u64);
        let batch: Vec<&Example> =
            order.iter().skip(position * batch_size).take(batch_size).map(|&i| &self.windows[i]).collect();
        let len = batch.iter().map(|e| e.ids.len()).max().unwrap_or(2);
        let (mut ids, mut attention, mut targets) = (Vec::new(), Vec::new(), Vec::new());
        for e in &batch {
            let padding = len - e.ids.len();
            ids.extend(e.ids.iter().copied().chain(std::iter::repeat_n(pad, padding)));
            attention.extend(std::iter::repeat_n(1i64, e.ids.len()).chain(std::iter::repeat_n(0, padding)));
            targets.extend(
                e.loss_mask[1..].iter().map(|&m| m as i64 as f32).chain(std::iter::repeat_n(0.0, padding)),
            );
        }
        let (b, t) = (batch.len() as i64, len as i64);
        [
            Tensor::from_slice(&ids).view([b, t]).to_device(device),
            Tensor::from_slice(&attention).view([b, t]).to_device(device),
            Tensor::from_slice(&targets).view([b, t - 1]).to_device(device),
        ]
    }
}

/// The language-model loss (mean negative log-likelihood per target token) of PPO-ptx.
fn ptx_loss(policy: &LanguageModel, [ids, attention, targets]: &[Tensor; 3]) -> Tensor {
    let logprobs = policy.token_logprobs(ids, Some(attention), false); // (B, T-1)
    -masked_mean(&logprobs, targets)
}

// ---------------------------------------------------------------------------------------
// One PPO step.

/// What PPO trains and the state it carries from step to step.
pub struct Learner {
    pub policy: LanguageModel,
    /// The frozen initial policy (the SFT model) that the KL penalty is measured against.
    pub reference: LanguageModel,
    /// Trunk and scalar head, initialised from the reward model (or, for rewards from a
    /// program, from the policy with a new scalar head).
    pub value: LanguageModel,
    pub policy_opt: AdamW,
    pub value_opt: AdamW,
    /// β, the current KL coefficient.
    pub kl_coef: f64,
}

impl Learner {
    /// The policy trains from `policy`, the reference is a frozen copy of it, and the
    /// value model a trainable copy of `value_from` (the reward model, or the policy),
    /// given a scalar head if it has none.
    pub fn new(
        cfg: &PpoConfig,
        mut policy: LanguageModel,
        value_from: &LanguageModel,
    ) -> Result<Self, TrainError> {
        if value_from.tokenizer.kind() != policy.tokenizer.kind() {
            return Err(TrainError::Config(format!(
                "the policy uses the {} tokenizer but the value model {}",
                policy.tokenizer.kind(),
                value_from.tokenizer.kind()
            )));
        }
        let mut reference = policy.try_clone()?;
        reference.freeze_in(cfg.precision);
        policy.set_trainable(true);
        policy.train_in(cfg.precision);
        let mut value = value_from.try_clone()?;
        value.add_score_head();
        value.set_trainable(true);
        value.train_in(cfg.precision);
        let adamw = |m: &LanguageModel| AdamW::new(&m.vs, cfg.beta1, cfg.beta2, cfg.eps, cfg.weight_decay);
        Ok(Learner {
            policy_opt: adamw(&policy),
            value_opt: adamw(&value),
            policy,
            reference,
            value,
            kl_coef: cfg.kl_coef,
        })
    }
}

/// One step's statistics (see `metrics` for their names).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StepStats {
    /// One of the step's samples, which the run logs.
    pub example: StepSample,
    /// Mean score of the samples (reward model, missing-EOS penalty, clip), and the
    /// scores' standard deviation.
    pub reward: f64,
    pub reward_std: f64,
    /// Mean over samples of the summed per-token log π − log π_ref.
    pub kl: f64,
    /// Mean over samples of the summed per-token entropy of π.
    pub entropy: f64,
    pub pg_loss: f64,
    pub vf_loss: f64,
    pub ptx_loss: Option<f64>,
    pub clipfrac: f64,
    pub vf_clipfrac: f64,
    pub approx_kl: f64,
    pub explained_variance: f64,
    /// β used for this step's rewards.
    pub kl_coef: f64,
    /// Mean tokens per response, EOS included.
    pub response_length: f64,
    pub eos_rate: f64,
    /// Where the step's time went: sampling, the reward's scores, the reference's
    /// log-probs, the value model's values, and the minibatch updates.
    pub generation_seconds: f64,
    pub scoring_seconds: f64,
    pub reference_seconds: f64,
    pub values_seconds: f64,
    pub training_seconds: f64,
    /// Response tokens sampled.
    pub tokens: u64,
}

impl StepStats {
    /// The metrics as `metrics.jsonl` names them.
    pub fn metrics(&self) -> Vec<(&'static str, f64)> {
        let mut metrics = vec![
            ("objective/reward", self.reward),
            ("objective/reward_std", self.reward_std),
            ("objective/kl", self.kl),
            ("objective/entropy", self.entropy),
            ("loss/policy", self.pg_loss),
            ("loss/value", self.vf_loss),
            ("ppo/clipfrac", self.clipfrac),
            ("ppo/vf_clipfrac", self.vf_clipfrac),
            ("ppo/approx_kl", self.approx_kl),
            ("val/explained_variance", self.explained_variance),
            ("kl_coef", self.kl_coef),
            ("response/length", self.response_length),
            ("response/eos_rate", self.eos_rate),
            ("time/generation", self.generation_seconds),
            ("time/scoring", self.scoring_seconds),
            ("time/reference", self.reference_seconds),
            ("time/values", self.values_seconds),
            ("time/training", self.training_seconds),
        ];
        if let Some(ptx) = self.ptx_loss {
            metrics.push(("loss/ptx", ptx));
        }
        metrics
    }
}

/// What PPO's updates start from beside the rollout: per-token tensors (B, R).
struct Experience {
    values: Tensor,
    advantages: Tensor,
    returns: Tensor,
}

/// One PPO iteration on `prompts` (token ids; an empty prompt stands for EOS): sample,
/// score, KL-penalised rewards, GAE, `ppo_epochs` of minibatch updates, statistics, and
/// the KL controller's update of `learner.kl_coef`.
pub fn step(
    cfg: &PpoConfig,
    step: i64,
    prompts: &[Vec<i64>],
    learner: &mut Learner,
    reward: Reward,
    ptx: Option<&PtxCorpus>,
) -> Result<StepStats, TrainError> {
    let eos = learner.policy.tokenizer.eos_id();
    let prompts: Vec<Vec<i64>> =
        prompts.iter().map(|p| if p.is_empty() { vec![eos] } else { p.clone() }).collect();

    // 1–2. Sample (one random stream per episode, numbered across steps), score, and the
    // reference's log-probs; the sampler's log-probs are the old ones. On several ranks
    // each samples its share of the prompts.
    let rollout = rollout::sharded_rollout(
        &learner.policy,
        &learner.reference,
        reward,
        &prompts,
        1,
        &rollout_sampling(cfg, cfg.seed),
        step,
        cfg.minibatch_size,
    )?;
    let mask = &rollout.layout.response_mask;
    let started = Instant::now();
    let values = {
        let _guard = tch::no_grad_guard();
        let [values] =
            rollout.layout.in_chunks(cfg.minibatch_size, |rows| Ok([rows.values(&learner.value)?]))?;
        values * mask
    };
    let values_seconds = started.elapsed().as_secs_f64();
    let scores =
        penalised_scores(&rollout.scores, &rollout.samples, cfg.missing_eos_penalty, cfg.reward_clip);

    // 3. KL-penalised rewards.
    let kl_coef = learner.kl_coef;
    let penalty = kl_penalty(&rollout.logprobs, &rollout.ref_logprobs, mask, kl_coef);
    let mut rewards = token_rewards(&scores, &penalty, mask);
    if cfg.whiten_rewards {
        rewards = whiten(&rewards, mask, false)?;
    }

    // 4. Advantages.
    let (advantages, returns) = gae(&rewards, &values, mask, cfg.gamma, cfg.lam);
    let advantages = whiten(&advantages, mask, true)?;
    let experience = Experience { values, advantages, returns };

    // 5. Train.
    let started = Instant::now();
    let updates = train_epochs(cfg, step, &rollout, &experience, learner, ptx)?;
    let training_seconds = started.elapsed().as_secs_f64();

    // 6. Statistics.
    let means = rollout.means(&scores)?;
    let stats = StepStats {
        example: rollout.example.clone(),
        reward: means.reward,
        reward_std: means.reward_std,
        kl: means.kl,
        entropy: means.entropy,
        pg_loss: updates.pg_loss,
        vf_loss: updates.vf_loss,
        ptx_loss: updates.ptx_loss,
        clipfrac: updates.clipfrac,
        vf_clipfrac: updates.vf_clipfrac,
        approx_kl: updates.approx_kl,
        explained_variance: explained_variance(&experience.values, &experience.returns, mask)?,
        kl_coef,
        response_length: means.length,
        eos_rate: means.eos_rate,
        generation_seconds: rollout.generation_seconds,
        scoring_seconds: rollout.scoring_seconds,
        reference_seconds: rollout.reference_seconds,
        values_seconds,
        training_seconds,
        tokens: means.tokens,
    };

    // 7. The KL controller.
    if let Some(target) = cfg.kl_target {
        learner.kl_coef = adaptive_kl_coef(kl_coef, stats.kl, target, cfg.kl_horizon, prompts.len());
    }
    Ok(stats)
}

/// Mean losses and statistics over a step's minibatch updates.
struct Updates {
    pg_loss: f64,
    vf_loss: f64,
    ptx_loss: Option<f64>,
    clipfrac: f64,
    vf_clipfrac: f64,
    approx_kl: f64,
}

/// `ppo_epochs` passes over the step's samples in shuffled minibatches, one AdamW step
/// per minibatch for the policy and one for the value model, each model's gradients
/// summed over the ranks before it (each rank's token means weighted by its share of the
/// minibatch's tokens).
fn train_epochs(
    cfg: &PpoConfig,
    step: i64,
    rollout: &Rollout,
    experience: &Experience,
    learner: &mut Learner,
    ptx: Option<&PtxCorpus>,
) -> Result<Updates, TrainError> {
    let layout = &rollout.layout;
    let b = rollout.shard.global;
    let device = learner.policy.device();
    let pad = learner.policy.tokenizer.pad_id();
    let width = learner.policy.config.n_embd;
    let lr = lr_at(step, cfg.steps, cfg.warmup_steps, cfg.lr(width), cfg.final_lr_ratio);
    let value_lr = lr_at(step, cfg.steps, cfg.warmup_steps, cfg.value_lr(width), cfg.final_lr_ratio);
    let ptx = ptx.filter(|_| cfg.ptx_coef > 0.0);
    let updates_per_step = (cfg.ppo_epochs * b.div_ceil(cfg.minibatch_size)) as i64;
    // Every rank reads the whole pretraining batch: its share of the loss is 1/world.
    let ptx_share = 1.0 / distributed::world_size() as f64;

    let mut sums = [0.0f64; 6]; // pg_loss, vf_loss, ptx_loss, clipfrac, vf_clipfrac, approx_kl
    let mut n = 0i64;
    for epoch in 0..cfg.ppo_epochs {
        // Minibatch order: its own seed, one stream per (step, epoch).
        let stream = (step as u64) * cfg.ppo_epochs as u64 + epoch as u64;
        let order = minibatches(
            rollout.shard,
            &layout.response_mask,
            cfg.seed ^ MINIBATCH_SEED,
            stream,
            cfg.minibatch_size,
        )?;
        for minibatch in order {
            let rows = layout.rows(&minibatch.rows);
            let pick = |t: &Tensor| t.index_select(0, &rows.index);
            let mb_mask = pick(&layout.response_mask);
            let (mb_old_logprobs, mb_advantages) = (pick(&rollout.logprobs), pick(&experience.advantages));
            let (mb_old_values, mb_returns) = (pick(&experience.values), pick(&experience.returns));
            let share = minibatch.token_share;

            let mb_logprobs = rows.logprobs(&learner.policy, cfg.temperature);
            let (pg_loss, clipfrac, approx_kl) =
                policy_loss(&mb_logprobs, &mb_old_logprobs, &mb_advantages, &mb_mask, cfg.clip_ratio);
            let pg_loss = pg_loss * share;
            let mut loss = pg_loss.shallow_clone();
            if let Some(corpus) = ptx {
                let batch = corpus.batch(
                    cfg.ptx_batch_size,
                    cfg.seed ^ PTX_SEED,
                    step * updates_per_step + n,
                    pad,
                    device,
                );
                let lm_loss = ptx_loss(&learner.policy, &batch) * ptx_share;
                sums[2] += lm_loss.double_value(&[]);
                loss += lm_loss * cfg.ptx_coef;
            }
            learner.policy_opt.zero_grad();
            loss.backward();
            distributed::all_reduce_gradients(&learner.policy.vs)?;
            learner.policy_opt.clip_grad_norm(cfg.grad_clip);
            learner.policy_opt.step(lr);

            let mb_values = rows.values(&learner.value)?;
            let (vf_loss, vf_clipfrac) =
                value_loss(&mb_values, &mb_old_values, &mb_returns, &mb_mask, cfg.value_clip);
            let vf_loss = vf_loss * share;
            learner.value_opt.zero_grad();
            (&vf_loss * cfg.vf_coef).backward();
            distributed::all_reduce_gradients(&learner.value.vs)?;
            learner.value_opt.clip_grad_norm(cfg.grad_clip);
            learner.value_opt.step(value_lr);

            for (sum, t) in sums.iter_mut().zip([&pg_loss, &vf_loss]) {
                *sum += t.double_value(&[]);
            }
            for (sum, t) in sums[3..].iter_mut().zip([clipfrac, vf_clipfrac, approx_kl]) {
                *sum += (t * share).double_value(&[]);
            }
            n += 1;
        }
    }
    let sums = distributed::sum_each(sums)?;
    let mean = |i: usize| sums[i] / n.max(1) as f64;
    Ok(Updates {
        pg_loss: mean(0),
        vf_loss: mean(1),
        ptx_loss: ptx.map(|_| mean(2)),
        clipfrac: mean(3),
        vf_clipfrac: mean(4),
        approx_kl: mean(5),
    })
}

/// Seed of the PPO-ptx windows, mixed into `seed` so that they draw a sequence of their
/// own (the minibatch order has `MINIBATCH_SEED`).
const PTX_SEED: u64 = 0x7074_7800_0000_0000;

// ---------------------------------------------------------------------------------------
// Evaluation on held-out prompts.

/// Samples each prompt once (at `cfg.temperature`, from `seed`) and measures it against
/// the reward model (without the missing-EOS penalty) and the reference.
pub fn evaluate(
    policy: &LanguageModel,
    reference: &LanguageModel,
    reward_model: &LanguageModel,
    prompts: &[String],
    cfg: &PpoConfig,
    seed: u64,
) -> Result<Evaluation, TrainError> {
    let sampling = rollout_sampling(cfg, seed);
    rollout::evaluate(
        policy,
        reference,
        Reward::Model(reward_model),
        prompts,
        &sampling,
        cfg.batch_size,
        None,
    )
}

// ---------------------------------------------------------------------------------------
// The training run.

/// Where a PPO run stands, saved in each checkpoint.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct PpoState {
    stage: String,
    /// PPO steps completed.
    step: i64,
    kl_coef: f64,
}

impl PpoState {
    fn of(learner: &Learner, step: i64) -> Self {
        PpoState { stage: "ppo".into(), step, kl_coef: learner.kl_coef }
    }
}

/// What a PPO run did.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PpoReport {
    /// Steps, the last step's reward and KL, time and the share spent sampling.
    #[serde(flatten)]
    pub run: RunReport,
    /// β at the end.
    pub kl_coef: f64,
}

/// PPO from the SFT `policy` against the frozen `reward_model`, on `prompts` (PPO-ptx on
/// `ptx_corpus` when `cfg.ptx_coef` is set). The reference policy is a frozen copy of
/// `policy`, so a resumed run must be given the same SFT model. The final policy is saved
/// into `run.path()` and returned.
pub fn train(
    cfg: &PpoConfig,
    policy: LanguageModel,
    reward_model: &LanguageModel,
    prompts: &[String],
    ptx_corpus: Option<&[String]>,
    run: &mut RunDir,
) -> Result<(LanguageModel, PpoReport), TrainError> {
    let data = PpoData { prompts, ptx_corpus };
    train_with_eval(cfg, policy, Reward::Model(reward_model), data, run, &mut |_, _, _| Ok(Vec::new()))
}

/// What PPO learns from: the prompts it samples responses to, and for PPO-ptx the
/// pretraining documents whose likelihood it keeps up.
#[derive(Clone, Copy, Debug)]
pub struct PpoData<'a> {
    pub prompts: &'a [String],
    pub ptx_corpus: Option<&'a [String]>,
}

/// `train` against `reward` (a reward model, or a program: then the value model starts
/// from the policy with a new scalar head), calling `eval` every `cfg.eval_every` steps
/// and at the end; the metrics it returns (e.g. `eval/reward` on held-out prompts, via
/// `evaluate`) are logged with the step's.
pub fn train_with_eval(
    cfg: &PpoConfig,
    policy: LanguageModel,
    reward: Reward,
    data: PpoData,
    run: &mut RunDir,
    eval: &mut EvalFn,
) -> Result<(LanguageModel, PpoReport), TrainError> {
    cfg.validate()?;
    let PpoData { prompts, ptx_corpus } = data;
    let started = Instant::now();
    reward.check(&policy)?;
    let encoded = encode_prompts(&policy, reward.n_ctx(&policy), prompts, cfg.max_new_tokens, "ppo")?;
    let policy_copy;
    let value_from = match reward {
        Reward::Model(model) => model,
        Reward::Program(_) => {
            policy_copy = policy.try_clone()?;
            &policy_copy
        }
    };
    let ptx = match (cfg.ptx_coef > 0.0, ptx_corpus) {
        (true, Some(documents)) => Some(PtxCorpus::new(&policy, documents, cfg.ptx_seq_len)?),
        (true, None) => {
            return Err(TrainError::Config(format!(
                "ppo.ptx_coef is {} but no pretraining corpus was given",
                cfg.ptx_coef
            )))
        }
        (false, _) => None,
    };
    let mut learner = Learner::new(cfg, policy, value_from)?;
    let Learner { policy, value, policy_opt, value_opt, .. } = &mut learner;
    let resumed: Option<PpoState> = run.resume(
        "ppo",
        &mut [("policy", policy), ("value", value)],
        &mut [("policy", policy_opt), ("value", value_opt)],
    )?;
    let mut first = 0;
    if let Some(state) = resumed {
        learner.kl_coef = state.kl_coef;
        first = state.step;
    }
    // Every rank starts from rank 0's weights (a value head new to the reward's trunk is
    // drawn at random on each).
    distributed::broadcast_variables(&learner.policy.vs)?;
    distributed::broadcast_variables(&learner.value.vs)?;
    let settings = run_settings!("ppo", cfg);
    let outcome = run_steps(
        &settings,
        &mut learner,
        first,
        &encoded,
        run,
        |learner, s, batch| {
            let stats = step(cfg, s, batch, learner, reward, ptx.as_ref())?;
            Ok(StepSummary {
                sample: stats.example.clone(),
                reward: stats.reward,
                reward_std: stats.reward_std,
                kl: stats.kl,
                tokens: stats.tokens,
                generation_seconds: stats.generation_seconds,
                metrics: stats.metrics(),
                finite: &["objective/reward", "objective/kl", "loss/policy", "loss/value", "loss/ptx"],
            })
        },
        |learner, s| eval(s, &learner.policy, &learner.reference),
        |learner, run, done| {
            run.save_checkpoint(
                done,
                &[("policy", &learner.policy), ("value", &learner.value)],
                &[("policy", &learner.policy_opt), ("value", &learner.value_opt)],
                &PpoState::of(learner, done),
            )
            .map(drop)
        },
    )?;

    run.save_model(&learner.policy, serde_json::to_value(PpoState::of(&learner, outcome.steps)).ok())?;
    let report = PpoReport { run: outcome.report(started), kl_coef: learner.kl_coef };
    Ok((learner.policy, report))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::tensors::{close, t, values};

    fn scalar(x: &Tensor) -> f64 {
        x.double_value(&[])
    }

    #[test]
    fn the_default_config_is_valid_and_an_invalid_field_is_named() {
        PpoConfig::default().validate().unwrap();
        let err = PpoConfig { minibatch_size: 65, ..Default::default() }.validate().unwrap_err().to_string();
        assert!(err.contains("ppo.minibatch_size"), "{err}");
        let err =
            PpoConfig { kl_target: Some(0.0), ..Default::default() }.validate().unwrap_err().to_string();
        assert!(err.contains("ppo.kl_target"), "{err}");
        let err = toml::from_str::<PpoConfig>("kl_coeff = 0.1").unwrap_err().to_string();
        assert!(err.contains("kl_coeff"), "{err}");
    }

    /// KL on every response token, the score on the last real one, nothing on padding.
    #[test]
    fn the_score_lands_on_the_last_response_token_and_the_kl_on_every_one() {
        let logprobs = t(&[&[-1.0, -2.0, -3.0], &[-1.0, -1.0, -9.0]]);
        let ref_logprobs = t(&[&[-1.5, -2.0, -2.0], &[-2.0, -1.0, -1.0]]);
        let mask = t(&[&[1.0, 1.0, 1.0], &[1.0, 1.0, 0.0]]);
        let penalty = kl_penalty(&logprobs, &ref_logprobs, &mask, 0.1);
        close(&values(&penalty), &[-0.05, 0.0, 0.1, -0.1, 0.0, 0.0]);
        let rewards = token_rewards(&Tensor::from_slice(&[1.0f32, -2.0]), &penalty, &mask);
        close(&values(&rewards), &[-0.05, 0.0, 1.1, -0.1, -2.0, 0.0]);
    }

    #[test]
    fn gae_matches_hand_computed_advantages_and_ignores_padding() {
        // Row 0, γ = 1, λ = 0.5: δ = (0, 0, 0.5), A = (0.125, 0.25, 0.5).
        let (a, r) = gae(&t(&[&[0.0, 0.0, 1.0]]), &t(&[&[0.5, 0.5, 0.5]]), &t(&[&[1.0, 1.0, 1.0]]), 1.0, 0.5);
        close(&values(&a), &[0.125, 0.25, 0.5]);
        close(&values(&r), &[0.625, 0.75, 1.0]);
        // Row with padding holding garbage, γ = 0.9, λ = 0.8: V past the end counts as 0.
        // t=1: δ = 2 − 1 = 1; t=0: δ = 0.9·1 − 1 = −0.1, A = −0.1 + 0.72·1 = 0.62.
        let (a, r) = gae(&t(&[&[0.0, 2.0, 9.0]]), &t(&[&[1.0, 1.0, 7.0]]), &t(&[&[1.0, 1.0, 0.0]]), 0.9, 0.8);
        close(&values(&a), &[0.62, 1.0, 0.0]);
        close(&values(&r), &[1.62, 2.0, 0.0]);
        // γ = λ = 1: returns are the rewards still to come.
        let (_, r) =
            gae(&t(&[&[1.0, 2.0, 3.0]]), &t(&[&[5.0, -1.0, 0.3]]), &t(&[&[1.0, 1.0, 1.0]]), 1.0, 1.0);
        close(&values(&r), &[6.0, 5.0, 3.0]);
    }

    #[test]
    fn whitening_uses_only_the_masked_positions() {
        let x = t(&[&[1.0, 2.0, 3.0, 100.0]]);
        let mask = t(&[&[1.0, 1.0, 1.0, 0.0]]);
        let s = (2.0f64 / 3.0 + 1e-8).sqrt(); // population variance of 1, 2, 3
        close(&values(&whiten(&x, &mask, true).unwrap()), &[-1.0 / s, 0.0, 1.0 / s, 0.0]);
        close(&values(&whiten(&x, &mask, false).unwrap()), &[2.0 - 1.0 / s, 2.0, 2.0 + 1.0 / s, 0.0]);
    }

    #[test]
    fn the_clipped_policy_loss_takes_the_pessimistic_term() {
        // ρ = 1.5, 0.5 with A = 1; ρ = 1.1, 0.7 with A = −1; ε = 0.2; a padded token.
        let ratios = [1.5f64, 0.5, 1.1, 0.7, 3.0];
        let old = t(&[&[-1.0, -1.0, -1.0, -1.0, -1.0]]);
        let new = &old + Tensor::from_slice(&ratios.map(|r| r.ln() as f32)).unsqueeze(0);
        let advantages = t(&[&[1.0, 1.0, -1.0, -1.0, 5.0]]);
        let mask = t(&[&[1.0, 1.0, 1.0, 1.0, 0.0]]);
        let (pg_loss, clipfrac, approx_kl) = policy_loss(&new, &old, &advantages, &mask, 0.2);
        // max(−1.5, −1.2) = −1.2 (clipped), max(−0.5, −0.8) = −0.5, 1.1, max(0.7, 0.8) = 0.8 (clipped)
        assert!((scalar(&pg_loss) - (-1.2 - 0.5 + 1.1 + 0.8) / 4.0).abs() < 1e-6);
        assert!((scalar(&clipfrac) - 0.5).abs() < 1e-6);
        let expected_kl = 0.5 * ratios[..4].iter().map(|r| r.ln().powi(2)).sum::<f64>() / 4.0;
        assert!((scalar(&approx_kl) - expected_kl).abs() < 1e-6);
    }

    #[test]
    fn the_clipped_value_loss_takes_the_larger_error() {
        let v = t(&[&[1.0, 0.0, 2.0, 50.0]]);
        let v_old = t(&[&[0.5, 0.1, 2.0, 0.0]]);
        let returns = t(&[&[1.0, 0.0, 0.0, 0.0]]);
        let mask = t(&[&[1.0, 1.0, 1.0, 0.0]]);
        let (vf_loss, vf_clipfrac) = value_loss(&v, &v_old, &returns, &mask, 0.2);
        // (0 vs (0.7 − 1)² = 0.09), (0 vs 0), (4 vs 4): ½·(0.09 + 0 + 4)/3
        assert!((scalar(&vf_loss) - 0.5 * 4.09 / 3.0).abs() < 1e-6);
        assert!((scalar(&vf_clipfrac) - 1.0 / 3.0).abs() < 1e-6);
    }

    #[test]
    fn the_adaptive_kl_controller_moves_beta_toward_the_target() {
        // e = clip(12/6 − 1) = 0.2: β·(1 + 0.2·512/10000)
        assert!((adaptive_kl_coef(0.1, 12.0, 6.0, 10000.0, 512) - 0.1 * 1.01024).abs() < 1e-12);
        assert!((adaptive_kl_coef(0.1, 6.6, 6.0, 10000.0, 512) - 0.1 * 1.00512).abs() < 1e-12);
        assert!((adaptive_kl_coef(0.1, 0.0, 6.0, 10000.0, 512) - 0.1 * 0.98976).abs() < 1e-12);
        assert_eq!(adaptive_kl_coef(0.1, 6.0, 6.0, 10000.0, 512), 0.1);
    }
}

/// Also the RLOO and GRPO stages' learning tests: a hand-built reward model that likes
/// lowercase letters, and prompts without any.
#[cfg(test)]
pub(crate) mod learning_tests {
    use super::*;
    use crate::rollout::{logprobs_of, response_logits, Layout};
    use crate::sampling::generate_streams;
    use crate::train::temp_run;

    pub(crate) fn policy_model(seed: i64) -> LanguageModel {
        crate::checkpoint::small_byte_model(seed, (2, 4, 64, 64))
    }

    pub(crate) fn is_liked(id: i64) -> bool {
        (i64::from(b'a')..=i64::from(b'z')).contains(&id)
    }

    /// A reward model whose score is a known increasing function of the share of
    /// lowercase letters in prompt ++ response ++ EOS, built by hand: every token
    /// embedding has mean 0 and the same norm, with channel 0 = +c for a lowercase letter
    /// and −c otherwise (channel 1 the opposite, channel 2 zero); the one attention layer
    /// has zero queries and keys, so it averages channel 0 over all earlier tokens into
    /// channel 2; the MLP is off; the head reads channel 2 after ln_f.
    pub(crate) fn lowercase_reward_model() -> LanguageModel {
        let mut rm = crate::checkpoint::small_byte_model(7, (1, 1, 16, 64));
        rm.add_score_head();
        let _guard = tch::no_grad_guard();
        let vars = rm.vs.variables();
        let c = 2.0;
        let mut rest = Tensor::randn([258, 13], (Kind::Float, Device::Cpu));
        rest = &rest - rest.mean_dim(1, true, Kind::Float);
        rest = &rest / rest.square().sum_dim_intlist(1, true, Kind::Float).sqrt() * 13f64.sqrt();
        let sign: Vec<f32> = (0..258).map(|id| if is_liked(id) { 1.0 } else { -1.0 }).collect();
        let sign = Tensor::from_slice(&sign).unsqueeze(1) * c;
        let wte =
            Tensor::cat(&[&sign, &(-&sign), &Tensor::zeros([258, 1], (Kind::Float, Device::Cpu)), &rest], 1);
        vars["wte.weight"].shallow_clone().copy_(&wte);
        for (name, var) in &vars {
            if name.starts_with("wpe") || name.starts_with("h.0.mlp") || name.starts_with("h.0.attn") {
                let _ = var.shallow_clone().zero_();
            }
        }
        let _ = vars["h.0.attn.c_attn.weight"].shallow_clone().get(0).get(32).fill_(1.0); // v[0] = x[0]
        let _ = vars["h.0.attn.c_proj.weight"].shallow_clone().get(0).get(2).fill_(1.0); // out[2] = v[0]
        let _ = vars["score.weight"].shallow_clone().zero_();
        let _ = vars["score.weight"].shallow_clone().get(0).get(2).fill_(4.0);
        let _ = vars["score.bias"].shallow_clone().zero_();
        rm
    }

    /// Prompts without lowercase letters, so the response decides the score.
    pub(crate) fn prompts(n: usize, seed: u64) -> Vec<String> {
        let words = crate::checkpoint::random_words(n, seed, 2..=5, b'A'..=b'Z');
        words.into_iter().map(|word| format!("{word}:")).collect()
    }

    /// β = 0.5 makes the KL-regularised optimum π_ref·exp(r/β) modest: about 0.4 of
    /// the tokens lowercase, +2 reward, 2–3 nats of KL. Without the penalty the same
    /// steps reach 13 nats.
    fn config(steps: i64) -> PpoConfig {
        PpoConfig {
            steps,
            batch_size: 32,
            minibatch_size: 16,
            ppo_epochs: 2,
            lr: Some(3e-3),
            value_lr: Some(3e-3),
            warmup_steps: 0,
            max_new_tokens: 8,
            kl_coef: 0.5,
            missing_eos_penalty: 0.0,
            checkpoint_every: 0,
            ..Default::default()
        }
    }

    /// A critic-free stage (RLOO, GRPO) that `train` runs from a small policy against the
    /// lowercase reward model, on 256 prompts: the held-out reward (responses of
    /// `max_new_tokens`) rises by more than 1 at a KL under 5 nats, and the `logged`
    /// metrics are in the first line of metrics.jsonl.
    pub(crate) fn assert_learns_lowercase(
        max_new_tokens: i64,
        logged: &[&str],
        train: impl FnOnce(
            LanguageModel,
            Reward,
            &[String],
            &mut RunDir,
        ) -> Result<(LanguageModel, RunReport), TrainError>,
    ) {
        let rm = lowercase_reward_model();
        let held_out = prompts(64, 2);
        let sft = policy_model(0);
        let reference = sft.try_clone().unwrap();
        let sampling = rollout::rollout_sampling(max_new_tokens, 1.0, 99);
        let measure = |m: &LanguageModel| {
            rollout::evaluate(m, &reference, Reward::Model(&rm), &held_out, &sampling, 32, None).unwrap()
        };
        let before = measure(&sft);
        let (_dir, mut run) = temp_run();
        let (policy, report) = train(sft, Reward::Model(&rm), &prompts(256, 1), &mut run).unwrap();
        let after = measure(&policy);
        eprintln!(
            "held-out reward {:.3} → {:.3}, KL {:.3}; {report:?}",
            before.reward, after.reward, after.kl
        );
        assert!(after.reward > before.reward + 1.0, "reward {} → {}", before.reward, after.reward);
        assert!(after.kl < 5.0, "KL to the reference grew to {}", after.kl);
        let metrics = std::fs::read_to_string(run.path().join(crate::train::METRICS)).unwrap();
        let first: serde_json::Value = serde_json::from_str(metrics.lines().next().unwrap()).unwrap();
        for name in logged {
            assert!(first.get(*name).is_some(), "{name} not logged: {first}");
        }
    }

    fn encode(
        model: &LanguageModel,
        rm: &LanguageModel,
        prompts: &[String],
        cfg: &PpoConfig,
    ) -> Vec<Vec<i64>> {
        let n_ctx = Reward::Model(rm).n_ctx(model);
        encode_prompts(model, n_ctx, prompts, cfg.max_new_tokens, "ppo").unwrap()
    }

    fn rm_score(rm: &LanguageModel, prompts: &[Vec<i64>], responses: &[Vec<i64>]) -> Tensor {
        let layout = Layout::new(prompts, responses, rm.tokenizer.pad_id(), Device::Cpu);
        Reward::Model(rm).score(rm, &layout, prompts, responses, 64).unwrap()
    }

    fn lowercase_share(model: &LanguageModel, prompts: &[String], cfg: &PpoConfig) -> f64 {
        let rm = lowercase_reward_model();
        let encoded = encode(model, &rm, prompts, cfg);
        let samples = generate_streams(model, &encoded, &rollout_sampling(cfg, 99), 0).unwrap();
        let tokens: Vec<i64> = samples.iter().flat_map(|s| s.ids.iter().copied()).collect();
        tokens.iter().filter(|&&id| is_liked(id)).count() as f64 / tokens.len() as f64
    }

    #[test]
    fn the_hand_built_reward_model_prefers_lowercase() {
        let rm = lowercase_reward_model();
        let p = vec![b'Q' as i64, b':' as i64];
        let responses: Vec<Vec<i64>> =
            ["ABCD", "aBCD", "abCD", "abcd"].iter().map(|s| s.bytes().map(i64::from).collect()).collect();
        let scores = values_of(&rm_score(&rm, &vec![p; 4], &responses));
        assert!(scores.windows(2).all(|w| w[1] > w[0] + 0.1), "{scores:?}");
    }

    fn values_of(x: &Tensor) -> Vec<f64> {
        Vec::<f64>::try_from(x.to_kind(Kind::Double)).unwrap()
    }

    #[test]
    fn a_score_is_read_at_the_last_token_whatever_the_batch() {
        let rm = lowercase_reward_model();
        let eos = rm.tokenizer.eos_id();
        let prompts = vec![vec![65i64, 66], vec![67i64, 68, 69, 70, 71]];
        let responses = vec![vec![97i64, 98, eos], vec![99i64]];
        let batched = values_of(&rm_score(&rm, &prompts, &responses));
        for i in 0..2 {
            let ids: Vec<i64> = [prompts[i].as_slice(), &responses[i]].concat();
            let all = rm.scores(&Tensor::from_slice(&ids).unsqueeze(0), None, false).unwrap();
            let by_hand = all.get(0).get(ids.len() as i64 - 1).double_value(&[]);
            assert!((batched[i] - by_hand).abs() < 1e-5, "row {i}: {batched:?} vs {by_hand}");
        }
    }

    /// The rollout's recomputed log π of each response token equals the sampler's own:
    /// the layout puts token t where column P + t − 1 predicts it.
    #[test]
    fn rollout_logprobs_equal_the_samplers() {
        let policy = policy_model(0);
        let rm = lowercase_reward_model();
        let cfg = config(1);
        let encoded = encode(&policy, &rm, &prompts(6, 1), &cfg);
        let samples = generate_streams(&policy, &encoded, &rollout_sampling(&cfg, 5), 0).unwrap();
        let responses: Vec<Vec<i64>> = samples.iter().map(|s| s.ids.clone()).collect();
        let layout = Layout::new(&encoded, &responses, policy.tokenizer.pad_id(), Device::Cpu);
        let (p, r) = (layout.prompt_cols, layout.response_cols);
        let logits =
            tch::no_grad(|| response_logits(&policy, &layout.ids, Some(&layout.attention), p, r, 1.0, false));
        let lp = logprobs_of(&logits, &layout.responses());
        for (i, s) in samples.iter().enumerate() {
            let row = values_of(&lp.get(i as i64).narrow(0, 0, s.ids.len() as i64));
            for (a, b) in row.iter().zip(&s.logprobs) {
                assert!((a - f64::from(*b)).abs() < 1e-4, "sample {i}: {row:?} vs {:?}", s.logprobs);
            }
        }
    }

    #[test]
    fn ppo_raises_the_held_out_reward_at_a_bounded_kl() {
        let rm = lowercase_reward_model();
        let train_prompts = prompts(256, 1);
        let held_out: Vec<String> =
            prompts(64, 2).into_iter().filter(|p| !train_prompts.contains(p)).collect();
        let cfg = config(10);
        let sft = policy_model(0);
        let reference = sft.try_clone().unwrap();
        let before = evaluate(&sft, &reference, &rm, &held_out, &cfg, 99).unwrap();
        let share_before = lowercase_share(&sft, &held_out, &cfg);
        let (_dir, mut run) = temp_run();
        let (policy, report) = train(&cfg, sft, &rm, &train_prompts, None, &mut run).unwrap();
        let after = evaluate(&policy, &reference, &rm, &held_out, &cfg, 99).unwrap();
        let share_after = lowercase_share(&policy, &held_out, &cfg);
        eprintln!(
            "held-out reward {:.3} → {:.3}, KL {:.3} → {:.3} nats, lowercase share {share_before:.2} → {share_after:.2}; {report:?}",
            before.reward, after.reward, before.kl, after.kl
        );
        assert!(after.reward > before.reward + 1.0, "reward {} → {}", before.reward, after.reward);
        assert!(after.kl < 5.0, "KL to the reference grew to {}", after.kl);
        assert!(share_after > share_before + 0.15, "lowercase share {share_before} → {share_after}");
        let metrics = std::fs::read_to_string(run.path().join(crate::train::METRICS)).unwrap();
        let first: serde_json::Value = serde_json::from_str(metrics.lines().next().unwrap()).unwrap();
        for name in [
            "objective/reward",
            "objective/kl",
            "objective/entropy",
            "loss/policy",
            "loss/value",
            "ppo/clipfrac",
            "ppo/approx_kl",
            "val/explained_variance",
            "kl_coef",
            "response/length",
            "response/eos_rate",
            "time/generation",
            "time/training",
        ] {
            assert!(first.get(name).is_some(), "{name} not logged: {first}");
        }
        assert!(run.path().join("model.safetensors").exists());
    }

    /// Mean next-token loss of `model` on every window of `corpus`.
    fn corpus_loss(model: &LanguageModel, corpus: &[String]) -> f64 {
        let windows = PtxCorpus::new(model, corpus, Some(32)).unwrap();
        let batch = windows.batch(windows.windows.len(), 0, 0, model.tokenizer.pad_id(), Device::Cpu);
        tch::no_grad(|| ptx_loss(model, &batch)).double_value(&[])
    }

    fn shouting_corpus() -> Vec<String> {
        [
            "THE CAT SAT ON THE MAT.",
            "A DOG RAN TO THE PARK.",
            "WE ATE RICE AT NOON.",
            "IT RAINED ALL DAY LONG.",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    #[test]
    fn ppo_ptx_keeps_the_corpus_loss_below_plain_ppo() {
        let rm = lowercase_reward_model();
        let train_prompts = prompts(128, 1);
        let held_out = prompts(16, 2);
        let corpus = shouting_corpus();
        let plain = PpoConfig { eval_every: 6, ..config(6) };
        let ptx = PpoConfig { ptx_coef: 1.0, ptx_batch_size: 4, ptx_seq_len: Some(32), ..plain.clone() };
        // One SFT model for both runs: tests in other threads share libtorch's generator.
        let sft = policy_model(0);
        let initial = corpus_loss(&sft, &corpus);
        let mut losses = Vec::new();
        for cfg in [&plain, &ptx] {
            let (_dir, mut run) = temp_run();
            let mut eval = |_: i64, policy: &LanguageModel, reference: &LanguageModel| {
                let e = evaluate(policy, reference, &rm, &held_out, cfg, 99)?;
                Ok(vec![("eval/reward".to_string(), e.reward), ("eval/kl".to_string(), e.kl)])
            };
            let data = PpoData { prompts: &train_prompts, ptx_corpus: Some(&corpus) };
            let (policy, report) =
                train_with_eval(cfg, sft.try_clone().unwrap(), Reward::Model(&rm), data, &mut run, &mut eval)
                    .unwrap();
            losses.push(corpus_loss(&policy, &corpus));
            let metrics = std::fs::read_to_string(run.path().join(crate::train::METRICS)).unwrap();
            let last: serde_json::Value = serde_json::from_str(metrics.lines().last().unwrap()).unwrap();
            assert!(last["eval/reward"].is_number(), "{last}");
            assert_eq!(last["loss/ptx"].is_number(), cfg.ptx_coef > 0.0, "{last}");
            eprintln!("ptx_coef {}: {report:?}", cfg.ptx_coef);
        }
        eprintln!("corpus loss: initial {initial:.3}, PPO {:.3}, PPO-ptx {:.3}", losses[0], losses[1]);
        assert!(losses[1] < losses[0] - 0.5, "PPO-ptx {} vs PPO {}", losses[1], losses[0]);
    }

    fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                copy_dir(&entry.path(), &to.join(entry.file_name()));
            } else {
                std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
            }
        }
    }

    #[test]
    fn resuming_mid_run_equals_an_uninterrupted_run() {
        let rm = lowercase_reward_model();
        let train_prompts = prompts(40, 3);
        // Adaptive β, so the checkpoint must carry it too.
        let cfg = PpoConfig {
            batch_size: 16,
            minibatch_size: 8,
            checkpoint_every: 2,
            kl_target: Some(0.5),
            kl_horizon: 32.0,
            ..config(4)
        };
        // The reference is the SFT model given, so both runs must be given the same one
        // (tests in other threads share libtorch's generator: no second `policy_model`).
        let sft = policy_model(0);
        let full_dir = tempfile::tempdir().unwrap();
        let mut run = RunDir::open(full_dir.path(), false).unwrap();
        let (full, full_report) =
            train(&cfg, sft.try_clone().unwrap(), &rm, &train_prompts, None, &mut run).unwrap();
        assert_ne!(full_report.kl_coef, cfg.kl_coef, "the controller never moved β");

        // A run that died after step 2: only its checkpoint is left.
        let resumed_dir = tempfile::tempdir().unwrap();
        let step_2 = std::path::Path::new(crate::train::CHECKPOINTS).join("step-00000002");
        copy_dir(&full_dir.path().join(&step_2), &resumed_dir.path().join(&step_2));
        let mut run = RunDir::open(resumed_dir.path(), true).unwrap();
        let (resumed, resumed_report) =
            train(&cfg, sft.try_clone().unwrap(), &rm, &train_prompts, None, &mut run).unwrap();

        let (a, b) = (full.vs.variables(), resumed.vs.variables());
        let max_diff =
            a.iter().map(|(k, v)| f64::try_from((v - &b[k]).abs().max()).unwrap()).fold(0.0, f64::max);
        assert!(max_diff < 1e-5, "resumed weights differ by {max_diff}");
        assert!((full_report.kl_coef - resumed_report.kl_coef).abs() < 1e-9);
        assert!((full_report.run.final_reward - resumed_report.run.final_reward).abs() < 1e-4);
        let metrics = std::fs::read_to_string(resumed_dir.path().join(crate::train::METRICS)).unwrap();
        assert_eq!(metrics.lines().count(), 2, "steps 2 and 3 logged once: {metrics}");
    }

    #[test]
    fn a_policy_that_drifts_past_max_kl_stops_the_run_naming_the_bound() {
        let rm = lowercase_reward_model();
        let train_prompts = prompts(16, 4);
        // A rate far too high for the model moves the policy away at once; the bound
        // stops the run at the first step whose samples are that far from the reference.
        let cfg =
            PpoConfig { batch_size: 16, lr: Some(1e-2), max_kl: Some(0.5), kl_target: None, ..config(8) };
        let (dir, mut run) = temp_run();
        let err = train(&cfg, policy_model(0), &rm, &train_prompts, None, &mut run).unwrap_err();
        let text = err.to_string();
        let TrainError::KlBound { step, kl, .. } = err else { panic!("{text}") };
        assert!(step >= 1 && kl > 0.5, "{text}");
        assert!(text.contains("ppo.max_kl = 0.5") && text.contains("kl_coef"), "{text}");
        let metrics = std::fs::read_to_string(dir.path().join(crate::train::METRICS)).unwrap();
        let last: serde_json::Value = serde_json::from_str(metrics.lines().last().unwrap()).unwrap();
        assert_eq!(last["step"], step, "the step that crossed the bound is on the run's charts");
        // Without the bound the same run trains on.
        let unbounded = PpoConfig { max_kl: None, steps: step + 1, ..cfg };
        let (_dir, mut run) = temp_run();
        train(&unbounded, policy_model(0), &rm, &train_prompts, None, &mut run).unwrap();
    }

    #[test]
    fn a_nan_loss_stops_the_run_and_names_the_step() {
        let rm = lowercase_reward_model();
        let train_prompts = prompts(16, 4);
        let healthy = PpoConfig { batch_size: 16, checkpoint_every: 2, ..config(2) };
        let (dir, mut run) = temp_run();
        train(&healthy, policy_model(0), &rm, &train_prompts, None, &mut run).unwrap();
        let saved = std::fs::read(dir.path().join(crate::checkpoint::WEIGHTS_FILE)).unwrap();
        // Resumed with a learning rate that blows the weights up in step 2's first update.
        let exploding = PpoConfig { steps: 4, lr: Some(1e30), value_lr: Some(1e30), ..healthy };
        let mut run = RunDir::open(dir.path(), true).unwrap();
        let err = train(&exploding, policy_model(0), &rm, &train_prompts, None, &mut run).unwrap_err();
        let text = err.to_string();
        eprintln!("{text}");
        assert!(matches!(err, TrainError::NonFinite { step: 2, .. }), "{text}");
        assert!(text.starts_with("step 2: ") && text.contains("step-00000002"), "{text}");
        let after = std::fs::read(dir.path().join(crate::checkpoint::WEIGHTS_FILE)).unwrap();
        assert!(saved == after, "the broken policy overwrote the saved one");
    }
}

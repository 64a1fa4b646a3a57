//! The rollout and update engine that PPO, RLOO and GRPO share.
//!
//! A rollout (`rollout`): the policy samples responses, the reward (a reward model or a
//! reward program) scores them, and the frozen reference gives log π_ref of each
//! response token for the KL. The sampler's own log π of each token are the old
//! log-probs the updates start from: it computes them as the forward pass does
//! (log-softmax of logits / temperature, before any truncation), and dropout is off in
//! rollouts and updates alike, so a second policy forward would only repeat them.
//!
//! Tensors of a batch use one layout: prompts left-padded to P columns, then responses
//! right-padded to R columns, so response token t sits in column P + t and is predicted
//! from column P + t − 1; per-token tensors are (B, R) with a response mask.
//!
//! The critic-free stages (RLOO, GRPO) also share their minibatch updates
//! (`update_epochs`) and their run (`train_policy`: resume, checkpoints, metrics and
//! evaluation); each brings only its advantages and its loss.

use std::time::Instant;

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::checkpoint::LanguageModel;
use crate::device::Precision;
use crate::lm_loop::epoch_order;
use crate::reward_program::RewardProgram;
use crate::sampling::{generate_streams, Generation, SamplingConfig};
use crate::train::{ensure_finite, AdamW, Progress, RunDir, TrainError};

// ---------------------------------------------------------------------------------------
// Small pure pieces.

/// Mean of `x` over the positions where `mask` is 1.
pub fn masked_mean(x: &Tensor, mask: &Tensor) -> Tensor {
    (x * mask).sum(Kind::Float) / mask.sum(Kind::Float).clamp_min(1.0)
}

/// The per-element terms of PPO's clipped surrogate, max(−A·ρ, −A·clip(ρ, 1 − ε_low,
/// 1 + ε_high)) with ρ = exp(log π − log π_old), and where the clipped term was the
/// larger (as f32). PPO clips symmetrically (ε_low = ε_high); DAPO's clip-higher
/// (Yu et al. 2025) raises only ε_high, so unlikely tokens with positive advantage may
/// grow further.
pub fn clipped_surrogate(
    logprobs: &Tensor,
    old_logprobs: &Tensor,
    advantages: &Tensor,
    clip_low: f64,
    clip_high: f64,
) -> (Tensor, Tensor) {
    let ratio = (logprobs - old_logprobs).exp();
    let losses = -advantages * &ratio;
    let losses_clipped = -advantages * ratio.clamp(1.0 - clip_low, 1.0 + clip_high);
    let clipped = losses_clipped.gt_tensor(&losses).to_kind(Kind::Float);
    (losses.maximum(&losses_clipped), clipped)
}

/// Each sample's score with `missing_eos_penalty` added when it was cut at the length
/// limit instead of ending with EOS, clipped to ±`clip` when given.
pub fn penalised_scores(
    raw: &Tensor,
    samples: &[Generation],
    missing_eos_penalty: f64,
    clip: Option<f64>,
) -> Tensor {
    let missing: Vec<f32> = samples.iter().map(|s| if s.stopped_at_eos { 0.0 } else { 1.0 }).collect();
    let missing = Tensor::from_slice(&missing).to_device(raw.device());
    let scores = raw + missing * missing_eos_penalty;
    match clip {
        Some(c) => scores.clamp(-c, c),
        None => scores,
    }
}

// ---------------------------------------------------------------------------------------
// Where rewards come from.

/// The reward a rollout is scored by.
#[derive(Clone, Copy)]
pub enum Reward<'a> {
    /// A reward model: its scalar head at the sample's last token, the EOS of a sample
    /// that ended (the token the RM was trained to score at).
    Model(&'a LanguageModel),
    /// A program that reads `{"prompt", "response"}` lines and writes `{"reward"}` lines,
    /// run once per batch on the decoded texts (the response without its EOS).
    Program(&'a RewardProgram),
}

impl Reward<'_> {
    /// A reward model must have a score head and read the policy's tokens.
    pub fn check(&self, policy: &LanguageModel) -> Result<(), TrainError> {
        let Reward::Model(model) = self else { return Ok(()) };
        if model.score_head.is_none() {
            return Err(TrainError::Config("the reward model has no score head".into()));
        }
        if model.tokenizer.kind() != policy.tokenizer.kind() {
            return Err(TrainError::Config(format!(
                "the policy uses the {} tokenizer but the reward model {}",
                policy.tokenizer.kind(),
                model.tokenizer.kind()
            )));
        }
        Ok(())
    }

    /// The context that prompt ++ response must fit: the policy's, and the RM's.
    pub fn n_ctx(&self, policy: &LanguageModel) -> i64 {
        match self {
            Reward::Model(model) => policy.config.n_ctx.min(model.config.n_ctx),
            Reward::Program(_) => policy.config.n_ctx,
        }
    }

    /// The score of each prompt ++ response (B,) in f32 on the policy's device, without
    /// gradients; a reward model reads the batch's `layout` at most `chunk` rows at a
    /// time, a program the decoded texts.
    pub fn score(
        &self,
        policy: &LanguageModel,
        layout: &Layout,
        prompts: &[Vec<i64>],
        responses: &[Vec<i64>],
        chunk: usize,
    ) -> Result<Tensor, TrainError> {
        let device = policy.device();
        match self {
            Reward::Model(model) => {
                let _guard = tch::no_grad_guard();
                let [scores] = layout.in_chunks(chunk, |rows| Ok([rows.last_scores(model)?]))?;
                Ok(scores.to_device(device))
            }
            Reward::Program(program) => {
                let decode = |ids: &[i64]| policy.tokenizer.decode(ids);
                let pairs: Vec<(String, String)> =
                    prompts.iter().zip(responses).map(|(p, r)| (decode(p), decode(r))).collect();
                let rewards: Vec<f32> = program.score(&pairs)?.into_iter().map(|r| r as f32).collect();
                Ok(Tensor::from_slice(&rewards).to_device(device))
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Models on the batch layout.

/// Prompts left-padded to P columns, then responses right-padded to R columns.
pub struct Layout {
    pub ids: Tensor,           // (B, P + R)
    pub attention: Tensor,     // (B, P + R), 1 on real tokens
    pub response_mask: Tensor, // (B, R) f32
    pub prompt_cols: i64,
    pub response_cols: i64,
    /// Tokens of each prompt and of each response, so that a minibatch can be trimmed
    /// to its own longest.
    prompt_lens: Vec<i64>,
    response_lens: Vec<i64>,
}

impl Layout {
    pub fn new(prompts: &[Vec<i64>], responses: &[Vec<i64>], pad: i64, device: Device) -> Self {
        let p = prompts.iter().map(Vec::len).max().unwrap_or(0);
        let r = responses.iter().map(Vec::len).max().unwrap_or(0).max(1);
        let (mut ids, mut attention, mut response_mask) = (Vec::new(), Vec::new(), Vec::new());
        for (prompt, response) in prompts.iter().zip(responses) {
            let (left, right) = (p - prompt.len(), r - response.len());
            ids.extend(std::iter::repeat_n(pad, left).chain(prompt.iter().copied()));
            ids.extend(response.iter().copied().chain(std::iter::repeat_n(pad, right)));
            attention.extend(std::iter::repeat_n(0i64, left).chain(std::iter::repeat_n(1, prompt.len())));
            attention.extend(std::iter::repeat_n(1i64, response.len()).chain(std::iter::repeat_n(0, right)));
            response_mask
                .extend(std::iter::repeat_n(1f32, response.len()).chain(std::iter::repeat_n(0.0, right)));
        }
        let b = prompts.len() as i64;
        let (p, r) = (p as i64, r as i64);
        Layout {
            ids: Tensor::from_slice(&ids).view([b, p + r]).to_device(device),
            attention: Tensor::from_slice(&attention).view([b, p + r]).to_device(device),
            response_mask: Tensor::from_slice(&response_mask).view([b, r]).to_device(device),
            prompt_cols: p,
            response_cols: r,
            prompt_lens: prompts.iter().map(|x| x.len() as i64).collect(),
            response_lens: responses.iter().map(|x| x.len() as i64).collect(),
        }
    }

    /// The rows `rows` as a model reads them: trimmed to their own longest prompt and
    /// longest response, so that a minibatch of short responses does not pay for the
    /// batch's longest, and without an attention mask when none of them is padded (the
    /// fused causal attention then runs).
    pub fn rows(&self, rows: &[i64]) -> Rows {
        let pick = |lens: &[i64]| rows.iter().map(|&i| lens[i as usize]).collect::<Vec<i64>>();
        let (prompt_lens, response_lens) = (pick(&self.prompt_lens), pick(&self.response_lens));
        let p = prompt_lens.iter().copied().max().unwrap_or(0);
        let r = response_lens.iter().copied().max().unwrap_or(0).max(1);
        let device = self.ids.device();
        let index = Tensor::from_slice(rows).to_device(device);
        let columns = |t: &Tensor| t.index_select(0, &index).narrow(1, self.prompt_cols - p, p + r);
        let padded = prompt_lens.iter().any(|&len| len != p) || response_lens.iter().any(|&len| len != r);
        let last: Vec<i64> = response_lens.iter().map(|len| p - 1 + len).collect();
        Rows {
            ids: columns(&self.ids),
            attention: padded.then(|| columns(&self.attention)),
            last: Tensor::from_slice(&last).to_device(device).unsqueeze(1),
            index,
            prompt_cols: p,
            response_cols: r,
            layout_response_cols: self.response_cols,
        }
    }

    /// `f` on the rows in consecutive groups of at most `size`, its tensors
    /// concatenated along rows.
    pub fn in_chunks<const K: usize>(
        &self,
        size: usize,
        mut f: impl FnMut(&Rows) -> Result<[Tensor; K], TrainError>,
    ) -> Result<[Tensor; K], TrainError> {
        let all: Vec<i64> = (0..self.prompt_lens.len() as i64).collect();
        let mut parts: Vec<Vec<Tensor>> = (0..K).map(|_| Vec::new()).collect();
        for rows in all.chunks(size.max(1)) {
            for (part, t) in parts.iter_mut().zip(f(&self.rows(rows))?) {
                part.push(t);
            }
        }
        Ok(std::array::from_fn(|k| Tensor::cat(&parts[k], 0)))
    }

    pub fn responses(&self) -> Tensor {
        self.ids.narrow(1, self.prompt_cols, self.response_cols)
    }

    /// Per-token values of each response (such as the sampler's log-probs) as (B, R),
    /// 0 on padding.
    pub fn per_token(&self, rows: &[&[f32]], device: Device) -> Tensor {
        let r = self.response_cols as usize;
        let mut flat = Vec::with_capacity(rows.len() * r);
        for row in rows {
            flat.extend(row.iter().copied().chain(std::iter::repeat_n(0.0, r - row.len())));
        }
        Tensor::from_slice(&flat).view([rows.len() as i64, r as i64]).to_device(device)
    }
}

/// Some rows of a `Layout`, trimmed to their own longest prompt (p columns) and longest
/// response (r columns); per-token results come back (B_mb, R) as the layout's, 0 past
/// column r.
pub struct Rows {
    pub ids: Tensor,               // (B_mb, p + r)
    pub attention: Option<Tensor>, // (B_mb, p + r), None when no row is padded
    /// The column of each row's last token (B_mb, 1).
    last: Tensor,
    /// The rows' indices into the layout (B_mb,).
    pub index: Tensor,
    pub prompt_cols: i64,
    pub response_cols: i64,
    layout_response_cols: i64,
}

impl Rows {
    /// Per-token values (B_mb, r) widened with zeros to the layout's R columns.
    fn widen(&self, x: Tensor) -> Tensor {
        match self.layout_response_cols - self.response_cols {
            0 => x,
            missing => x.constant_pad_nd([0, missing]),
        }
    }

    /// log π(token) of each response token under `model` (B_mb, R), with gradients when
    /// the caller keeps them.
    pub fn logprobs(&self, model: &LanguageModel, temperature: f64) -> Tensor {
        let (p, r) = (self.prompt_cols, self.response_cols);
        let logits = response_logits(model, &self.ids, self.attention.as_ref(), p, r, temperature, false);
        self.widen(logprobs_of(&logits, &self.ids.narrow(1, p, r)))
    }

    /// The scalar head of `model` (a value model) at the positions before each response
    /// token (B_mb, R).
    pub fn values(&self, model: &LanguageModel) -> Result<Tensor, TrainError> {
        let scores = model
            .scores(&self.ids, self.attention.as_ref(), false)
            .ok_or_else(|| TrainError::Config("the value model has no score head".into()))?;
        Ok(self.widen(scores.narrow(1, self.prompt_cols - 1, self.response_cols)))
    }

    /// The scalar head of `model` (a reward model) at each row's last token (B_mb,).
    pub fn last_scores(&self, model: &LanguageModel) -> Result<Tensor, TrainError> {
        let scores = model
            .scores(&self.ids, self.attention.as_ref(), false)
            .ok_or_else(|| TrainError::Config("the reward model has no score head".into()))?;
        Ok(scores.gather(1, &self.last, false).squeeze_dim(1))
    }
}

/// The model's logits / temperature at the positions that predict the response tokens:
/// (B, P + R) → (B, R, V), in f32.
pub fn response_logits(
    model: &LanguageModel,
    ids: &Tensor,
    attention: Option<&Tensor>,
    prompt_cols: i64,
    response_cols: i64,
    temperature: f64,
    train: bool,
) -> Tensor {
    let hidden = model.gpt.forward_masked(ids, attention, None, train); // (B, T, C)
    let hidden = hidden.narrow(1, prompt_cols - 1, response_cols); // (B, R, C)
    let logits = model.lm_head.forward(&hidden).to_kind(Kind::Float);
    // At temperature 1 a division would only copy (B, R, V) floats, and keep them.
    if temperature == 1.0 {
        logits
    } else {
        logits / temperature
    }
}

/// log π(token) of each response token (B, R) from `response_logits`: the token's logit
/// less the log-sum-exp of its row, which keeps no (B, R, V) log-softmax for backward.
pub fn logprobs_of(logits: &Tensor, responses: &Tensor) -> Tensor {
    // Padding ids may lie outside the vocabulary; they are masked by callers.
    let targets = responses.clamp_max(logits.size()[2] - 1).unsqueeze(2);
    logits.gather(2, &targets, false).squeeze_dim(2) - logits.logsumexp([-1], false)
}

/// How rollouts are sampled: at the stage's temperature, from the whole distribution.
pub fn rollout_sampling(max_new_tokens: i64, temperature: f64, seed: u64) -> SamplingConfig {
    SamplingConfig { max_new_tokens, temperature, top_k: None, top_p: None, seed, stop_at_eos: true }
}

/// Tokenised prompts; an empty one becomes EOS, and a long one loses tokens from the
/// left so that it and the longest response fit `n_ctx`. `stage` names the setting in
/// the error.
pub fn encode_prompts(
    policy: &LanguageModel,
    n_ctx: i64,
    prompts: &[String],
    max_new_tokens: i64,
    stage: &str,
) -> Result<Vec<Vec<i64>>, TrainError> {
    let room = n_ctx - max_new_tokens;
    if room < 1 {
        return Err(TrainError::Config(format!(
            "{stage}.max_new_tokens {max_new_tokens} leaves no room for a prompt in the context of {n_ctx}"
        )));
    }
    let eos = policy.tokenizer.eos_id();
    Ok(prompts
        .iter()
        .map(|text| {
            let mut ids = policy.tokenizer.encode(text);
            if ids.is_empty() {
                ids.push(eos);
            }
            let overflow = ids.len().saturating_sub(room as usize);
            ids.drain(..overflow);
            ids
        })
        .collect())
}

/// The prompts of step `step`: consecutive slices of seeded shuffles of all prompts, one
/// shuffle per pass, so every prompt is used once per pass and a resumed run repeats them.
pub fn batch_indices(n: usize, batch_size: usize, seed: u64, step: i64) -> Vec<usize> {
    let first = step as usize * batch_size;
    let mut indices = Vec::with_capacity(batch_size);
    let mut order = (usize::MAX, Vec::new());
    for g in first..first + batch_size {
        let epoch = g / n;
        if order.0 != epoch {
            order = (epoch, epoch_order(n, seed, epoch as u64));
        }
        indices.push(order.1[g % n]);
    }
    indices
}

// ---------------------------------------------------------------------------------------
// The rollout.

/// A sampled and scored batch: per-token tensors (B, R), 0 on padding.
pub struct Rollout {
    pub samples: Vec<Generation>,
    /// The batch's first prompt, its response and score, as text: the step's sample.
    pub example: StepSample,
    pub layout: Layout,
    /// log π_old of each response token: the sampler's.
    pub logprobs: Tensor,
    /// log π_ref of each response token.
    pub ref_logprobs: Tensor,
    /// The reward's score of each sample (B,), before any penalty.
    pub scores: Tensor,
    /// Seconds spent sampling, scoring and reading the reference's log-probs.
    pub generation_seconds: f64,
    pub scoring_seconds: f64,
    pub reference_seconds: f64,
}

impl Rollout {
    /// Mean over samples of the summed log π_old − log π_ref: the sampled KL in nats.
    pub fn kl(&self) -> f64 {
        per_sample_mean(&(&self.logprobs - &self.ref_logprobs))
    }

    /// Mean over samples of −Σ log π_old, the sampled estimate of the summed entropy.
    pub fn entropy(&self) -> f64 {
        per_sample_mean(&-&self.logprobs)
    }

    /// Response tokens sampled.
    pub fn tokens(&self) -> u64 {
        self.samples.iter().map(|s| s.ids.len() as u64).sum()
    }

    /// Mean tokens per response, EOS included.
    pub fn response_length(&self) -> f64 {
        self.tokens() as f64 / self.samples.len().max(1) as f64
    }

    /// Share of responses that ended with EOS.
    pub fn eos_rate(&self) -> f64 {
        self.samples.iter().filter(|s| s.stopped_at_eos).count() as f64 / self.samples.len().max(1) as f64
    }

    /// The rollout's metrics as `metrics.jsonl` names them, with `scores` the samples'
    /// scores after penalties (B,).
    pub fn metrics(&self, scores: &Tensor) -> Vec<(&'static str, f64)> {
        vec![
            ("objective/reward", scores.mean(Kind::Float).double_value(&[])),
            ("objective/kl", self.kl()),
            ("objective/entropy", self.entropy()),
            ("response/length", self.response_length()),
            ("response/eos_rate", self.eos_rate()),
            ("time/generation", self.generation_seconds),
            ("time/scoring", self.scoring_seconds),
            ("time/reference", self.reference_seconds),
        ]
    }
}

/// Mean over rows of each row's sum.
fn per_sample_mean(x: &Tensor) -> f64 {
    x.sum_dim_intlist(1, false, Kind::Float).mean(Kind::Float).double_value(&[])
}

/// Samples one response per prompt (prompt i from random stream `first_stream + i`),
/// scores them with `reward`, and reads the reference's log-probs, `chunk` rows at a
/// time, without gradients.
pub fn rollout(
    policy: &LanguageModel,
    reference: &LanguageModel,
    reward: Reward,
    prompts: &[Vec<i64>],
    sampling: &SamplingConfig,
    first_stream: u64,
    chunk: usize,
) -> Result<Rollout, TrainError> {
    let started = Instant::now();
    let samples = generate_streams(policy, prompts, sampling, first_stream)?;
    let generation_seconds = started.elapsed().as_secs_f64();
    let device = policy.device();
    let responses: Vec<Vec<i64>> = samples.iter().map(|s| s.ids.clone()).collect();
    let layout = Layout::new(prompts, &responses, policy.tokenizer.pad_id(), device);
    let rows: Vec<&[f32]> = samples.iter().map(|s| s.logprobs.as_slice()).collect();
    let logprobs = layout.per_token(&rows, device);
    let _guard = tch::no_grad_guard();
    let started = Instant::now();
    let [ref_logprobs] =
        layout.in_chunks(chunk, |rows| Ok([rows.logprobs(reference, sampling.temperature)]))?;
    let ref_logprobs = ref_logprobs * &layout.response_mask;
    let reference_seconds = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let scores = reward.score(policy, &layout, prompts, &responses, chunk)?;
    let scoring_seconds = started.elapsed().as_secs_f64();
    let example = StepSample {
        prompt: prompts.first().map(|p| policy.tokenizer.decode(p)).unwrap_or_default(),
        response: responses.first().map(|r| policy.tokenizer.decode(r)).unwrap_or_default(),
        reward: if responses.is_empty() { f64::NAN } else { scores.double_value(&[0]) },
    };
    Ok(Rollout {
        samples,
        example,
        layout,
        logprobs,
        ref_logprobs,
        scores,
        generation_seconds,
        scoring_seconds,
        reference_seconds,
    })
}

// ---------------------------------------------------------------------------------------
// Evaluation on held-out prompts.

/// A policy on held-out prompts: mean reward (without the missing-EOS penalty), mean
/// summed KL to the reference, mean length and share ending with EOS.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub reward: f64,
    pub kl: f64,
    pub length: f64,
    pub eos_rate: f64,
}

/// Samples each prompt once (with `sampling`, `batch_size` prompts at a time) and
/// measures it.
pub fn evaluate(
    policy: &LanguageModel,
    reference: &LanguageModel,
    reward: Reward,
    prompts: &[String],
    sampling: &SamplingConfig,
    batch_size: usize,
) -> Result<Evaluation, TrainError> {
    let prompts = encode_prompts(policy, reward.n_ctx(policy), prompts, sampling.max_new_tokens, "eval")?;
    let (mut reward_sum, mut kl, mut length, mut eos) = (0.0, 0.0, 0.0, 0.0);
    for (i, batch) in prompts.chunks(batch_size).enumerate() {
        let first_stream = (i * batch_size) as u64;
        let r = rollout(policy, reference, reward, batch, sampling, first_stream, batch_size)?;
        let n = batch.len() as f64;
        kl += r.kl() * n;
        reward_sum += r.scores.sum(Kind::Float).double_value(&[]);
        length += r.tokens() as f64;
        eos += r.eos_rate() * n;
    }
    let n = prompts.len().max(1) as f64;
    Ok(Evaluation { reward: reward_sum / n, kl: kl / n, length: length / n, eos_rate: eos / n })
}

// ---------------------------------------------------------------------------------------
// The critic-free stages' updates and run.

/// What a critic-free stage trains: the policy, its optimiser, and the frozen reference
/// (the SFT model) that the KL is measured against.
pub struct PolicyLearner {
    pub policy: LanguageModel,
    pub reference: LanguageModel,
    pub opt: AdamW,
}

impl PolicyLearner {
    /// The policy trains from `policy` in `precision`; the reference is a frozen copy of
    /// it, under bf16 held wholly in bf16 (as PPO's is).
    pub fn new(
        mut policy: LanguageModel,
        precision: Precision,
        opt: impl Fn(&LanguageModel) -> AdamW,
    ) -> Result<Self, TrainError> {
        let mut reference = policy.try_clone()?;
        reference.freeze_in(precision);
        policy.set_trainable(true);
        policy.train_in(precision);
        Ok(PolicyLearner { opt: opt(&policy), policy, reference })
    }
}

/// How a critic-free stage passes over a rollout.
#[derive(Clone, Copy, Debug)]
pub struct Updates {
    /// Passes over each rollout (μ in GRPO's paper).
    pub epochs: usize,
    /// Samples per gradient step.
    pub minibatch_size: usize,
    /// This step's learning rate.
    pub lr: f64,
    pub grad_clip: f64,
    pub temperature: f64,
    /// Seeds the minibatch order, one stream per (step, epoch).
    pub seed: u64,
}

/// `updates.epochs` passes over the rollout's samples in shuffled minibatches, one AdamW
/// step each. `loss` is given the minibatch's rows (indices into the rollout) and their
/// new log π (B_mb, R), and returns the loss to minimise followed by statistics; the
/// means of all K over the minibatches are returned.
pub fn update_epochs<const K: usize>(
    learner: &mut PolicyLearner,
    rollout: &Rollout,
    updates: &Updates,
    step: i64,
    mut loss: impl FnMut(&Tensor, &Tensor) -> [Tensor; K],
) -> [f64; K] {
    let b = rollout.samples.len();
    let mut sums = [0.0f64; K];
    let mut n = 0usize;
    for epoch in 0..updates.epochs {
        let stream = step as u64 * updates.epochs as u64 + epoch as u64;
        for indices in epoch_order(b, updates.seed ^ MINIBATCH_SEED, stream).chunks(updates.minibatch_size) {
            let indices: Vec<i64> = indices.iter().map(|&i| i as i64).collect();
            let rows = rollout.layout.rows(&indices);
            let mb_logprobs = rows.logprobs(&learner.policy, updates.temperature);
            let terms = loss(&rows.index, &mb_logprobs);
            learner.opt.zero_grad();
            terms[0].backward();
            learner.opt.clip_grad_norm(updates.grad_clip);
            learner.opt.step(updates.lr);
            for (sum, t) in sums.iter_mut().zip(&terms) {
                *sum += t.double_value(&[]);
            }
            n += 1;
        }
    }
    sums.map(|s| s / n.max(1) as f64)
}

/// Seed of the minibatch order, mixed into the stage's seed so that it draws a sequence
/// of its own.
pub const MINIBATCH_SEED: u64 = 0x6d69_6e69_6261_7463;

/// What one step of an RL stage did.
pub struct StepSummary {
    /// Mean score of the samples (with the missing-EOS penalty).
    pub reward: f64,
    /// One of the step's samples, which the run logs.
    pub sample: StepSample,
    /// Mean over samples of the summed log π − log π_ref.
    pub kl: f64,
    pub tokens: u64,
    pub generation_seconds: f64,
    /// Every metric as `metrics.jsonl` names them.
    pub metrics: Vec<(&'static str, f64)>,
    /// The metrics that stop the run when they are not finite (a loss that blew up).
    pub finite: &'static [&'static str],
}

/// A prompt, the response sampled for it and the reward's score of it (before penalties).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StepSample {
    pub prompt: String,
    pub response: String,
    pub reward: f64,
}

/// Evaluation hook of a run: given (step, policy, reference), the metrics to log.
pub type EvalFn<'a> =
    dyn FnMut(i64, &LanguageModel, &LanguageModel) -> Result<Vec<(String, f64)>, TrainError> + 'a;

/// The run settings the RL stages share.
#[derive(Clone, Copy, Debug)]
pub struct RunSettings {
    /// The stage's name, in its checkpoints and progress.
    pub stage: &'static str,
    pub steps: i64,
    /// Prompts per step.
    pub batch_size: usize,
    pub seed: u64,
    pub checkpoint_every: i64,
    pub eval_every: i64,
    /// What the policy trains in (a critic-free stage's: PPO's learner reads its config).
    pub precision: Precision,
    /// The run stops when a step's mean per-sample KL to the reference exceeds it.
    pub max_kl: Option<f64>,
}

/// How a run's steps went.
pub struct Outcome {
    /// Steps completed.
    pub steps: i64,
    /// The last step's reward and KL.
    pub last: Option<(f64, f64)>,
    pub generation_seconds: f64,
}

impl Outcome {
    /// The report of a run that began at `started`.
    pub fn report(&self, started: Instant) -> RunReport {
        let seconds = started.elapsed().as_secs_f64();
        RunReport {
            steps: self.steps,
            final_reward: self.last.map_or(f64::NAN, |(reward, _)| reward),
            final_kl: self.last.map_or(f64::NAN, |(_, kl)| kl),
            seconds,
            generation_share: self.generation_seconds / seconds.max(1e-9),
        }
    }
}

/// The run settings of a stage config with `steps`, `batch_size`, `seed`,
/// `checkpoint_every`, `eval_every` and `precision`.
macro_rules! run_settings {
    ($stage:literal, $cfg:expr) => {
        $crate::rollout::RunSettings {
            stage: $stage,
            steps: $cfg.steps,
            batch_size: $cfg.batch_size,
            seed: $cfg.seed,
            checkpoint_every: $cfg.checkpoint_every,
            eval_every: $cfg.eval_every,
            precision: $cfg.precision,
            max_kl: $cfg.max_kl,
        }
    };
}
pub(crate) use run_settings;

/// The loop of an RL stage, from step `first` (after a resume) to `settings.steps`:
/// `step` on `settings.batch_size` prompts at a time, its metrics checked and logged
/// (with `eval`'s every `eval_every` steps and at the end), `checkpoint` when one is due,
/// and a stop when the run is asked to.
#[allow(clippy::too_many_arguments)]
pub fn run_steps<L>(
    settings: &RunSettings,
    learner: &mut L,
    first: i64,
    prompts: &[Vec<i64>],
    run: &mut RunDir,
    mut step: impl FnMut(&mut L, i64, &[Vec<i64>]) -> Result<StepSummary, TrainError>,
    mut eval: impl FnMut(&L, i64) -> Result<Vec<(String, f64)>, TrainError>,
    checkpoint: impl Fn(&L, &mut RunDir, i64) -> Result<(), TrainError>,
) -> Result<Outcome, TrainError> {
    if prompts.is_empty() {
        return Err(TrainError::Config(format!("no prompts for {}", settings.stage)));
    }
    run.set_total_steps(settings.steps)?;
    let mut progress = Progress::new(settings.stage, settings.steps, first);
    let mut outcome = Outcome { steps: first, last: None, generation_seconds: 0.0 };
    while outcome.steps < settings.steps {
        let s = outcome.steps;
        let batch: Vec<Vec<i64>> = batch_indices(prompts.len(), settings.batch_size, settings.seed, s)
            .into_iter()
            .map(|i| prompts[i].clone())
            .collect();
        let summary = step(learner, s, &batch)?;
        for (what, value) in summary.metrics.iter().filter(|(name, _)| summary.finite.contains(name)) {
            ensure_finite(s, what, *value, run)?;
        }
        if let Some(bound) = settings.max_kl.filter(|bound| summary.kl > *bound) {
            // Logged first, so that the run's page shows the step that crossed it.
            let named: Vec<(&str, f64)> = summary.metrics.to_vec();
            run.log(s, &named)?;
            let last_good = run.latest_checkpoint().map(|(path, _)| path);
            return Err(TrainError::KlBound {
                step: s,
                stage: settings.stage,
                kl: summary.kl,
                bound,
                last_good,
            });
        }
        outcome.generation_seconds += summary.generation_seconds;
        let done = s + 1;
        outcome.steps = done;

        let mut metrics: Vec<(String, f64)> =
            summary.metrics.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        if settings.eval_every > 0 && (done % settings.eval_every == 0 || done == settings.steps) {
            metrics.extend(eval(learner, s)?);
        }
        let named: Vec<(&str, f64)> = metrics.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        run.log(s, &named)?;
        let sample = &summary.sample;
        run.log_sample(s, &sample.prompt, &sample.response, sample.reward)?;
        progress.step(s, summary.tokens, &format!("reward {:.3} kl {:.3}", summary.reward, summary.kl));
        if run.checkpoint_due(done, settings.checkpoint_every) {
            checkpoint(learner, run, done)?;
        }
        run.stop_if_requested(s)?;
        outcome.last = Some((summary.reward, summary.kl));
    }
    progress.finish();
    Ok(outcome)
}

/// Where a critic-free run stands, saved in each checkpoint.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct PolicyState {
    stage: String,
    /// Steps completed.
    step: i64,
}

/// What an RL run did.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunReport {
    pub steps: i64,
    /// `objective/reward` and `objective/kl` of the last step.
    pub final_reward: f64,
    pub final_kl: f64,
    pub seconds: f64,
    /// Share of this run's time spent sampling rollouts.
    pub generation_share: f64,
}

/// The AdamW settings of a stage config with `beta1`, `beta2`, `eps` and
/// `weight_decay`, and the minibatch updates of one with `update_epochs`,
/// `minibatch_size`, the learning-rate schedule, `grad_clip`, `temperature` and `seed`
/// at step `step`, for a policy `n_embd` wide (the learning rate's rule).
macro_rules! critic_free_updates {
    ($cfg:expr, $step:expr, $n_embd:expr) => {
        $crate::rollout::Updates {
            epochs: $cfg.update_epochs,
            minibatch_size: $cfg.minibatch_size,
            lr: $crate::train::lr_at(
                $step,
                $cfg.steps,
                $cfg.warmup_steps,
                $cfg.lr($n_embd),
                $cfg.final_lr_ratio,
            ),
            grad_clip: $cfg.grad_clip,
            temperature: $cfg.temperature,
            seed: $cfg.seed,
        }
    };
}
pub(crate) use critic_free_updates;

/// A critic-free stage's run from the SFT `policy` against `reward` on `prompts` (each
/// encoded to leave room for `max_new_tokens`): the reference is a frozen copy of
/// `policy`, the optimiser AdamW with `adamw` = (β1, β2, ε, weight decay); resumed from
/// the run's latest checkpoint, `run_steps`, and the final policy saved into
/// `run.path()` and returned.
#[allow(clippy::too_many_arguments)]
pub fn train_policy(
    settings: &RunSettings,
    (beta1, beta2, eps, weight_decay): (f64, f64, f64, f64),
    max_new_tokens: i64,
    policy: LanguageModel,
    reward: Reward,
    prompts: &[String],
    run: &mut RunDir,
    eval: &mut EvalFn,
    step: impl FnMut(&mut PolicyLearner, i64, &[Vec<i64>]) -> Result<StepSummary, TrainError>,
) -> Result<(LanguageModel, RunReport), TrainError> {
    let started = Instant::now();
    reward.check(&policy)?;
    let prompts = encode_prompts(&policy, reward.n_ctx(&policy), prompts, max_new_tokens, settings.stage)?;
    let mut learner = PolicyLearner::new(policy, settings.precision, |m| {
        AdamW::new(&m.vs, beta1, beta2, eps, weight_decay)
    })?;
    let PolicyLearner { policy, opt, .. } = &mut learner;
    let resumed: Option<PolicyState> =
        run.resume(settings.stage, &mut [("policy", policy)], &mut [("policy", opt)])?;
    let state = |step: i64| PolicyState { stage: settings.stage.into(), step };
    let outcome = run_steps(
        settings,
        &mut learner,
        resumed.map_or(0, |state| state.step),
        &prompts,
        run,
        step,
        |learner, s| eval(s, &learner.policy, &learner.reference),
        |learner, run, done| {
            let models = [("policy", &learner.policy)];
            run.save_checkpoint(done, &models, &[("policy", &learner.opt)], &state(done)).map(drop)
        },
    )?;
    learner.policy.save(run.path(), serde_json::to_value(state(outcome.steps)).ok())?;
    Ok((learner.policy, outcome.report(started)))
}

/// `per_prompt` samples of each prompt of step `step` (one random stream per sample,
/// numbered across steps), prompt i's samples in rows i·per_prompt .. (i + 1)·per_prompt:
/// the rollout of RLOO and GRPO.
pub fn grouped_rollout(
    learner: &PolicyLearner,
    reward: Reward,
    prompts: &[Vec<i64>],
    per_prompt: usize,
    sampling: &SamplingConfig,
    step: i64,
    chunk: usize,
) -> Result<Rollout, TrainError> {
    let repeated: Vec<Vec<i64>> =
        prompts.iter().flat_map(|p| std::iter::repeat_n(p.clone(), per_prompt)).collect();
    let first_stream = step as u64 * repeated.len() as u64;
    rollout(&learner.policy, &learner.reference, reward, &repeated, sampling, first_stream, chunk)
}

/// Tiny hand-written tensors for the RL stages' tests.
#[cfg(test)]
pub(crate) mod tensors {
    use tch::{Kind, Tensor};

    /// A (B, N) f32 tensor from its rows.
    pub(crate) fn t(rows: &[&[f32]]) -> Tensor {
        let b = rows.len() as i64;
        let flat: Vec<f32> = rows.iter().flat_map(|r| r.iter().copied()).collect();
        Tensor::from_slice(&flat).view([b, -1])
    }

    /// All of `x`'s values, row by row.
    pub(crate) fn values(x: &Tensor) -> Vec<f64> {
        Vec::<f64>::try_from(x.flatten(0, -1).to_kind(Kind::Double)).unwrap()
    }

    /// `actual` equals `expected` to 1e-5.
    pub(crate) fn close(actual: &[f64], expected: &[f64]) {
        assert_eq!(actual.len(), expected.len(), "{actual:?} vs {expected:?}");
        for (a, e) in actual.iter().zip(expected) {
            assert!((a - e).abs() < 1e-5, "{actual:?} vs {expected:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::tensors::{t, values};
    use super::*;

    /// ρ = 1.5 and 0.5 with A = 1, ρ = 1.1 and 0.7 with A = −1, ε_low = 0.2, ε_high = 0.3:
    /// clip-higher lets ρ = 1.5 count up to 1.3 (not PPO's 1.2).
    #[test]
    fn the_clipped_surrogate_with_clip_higher_takes_the_pessimistic_term() {
        let ratios = [1.5f64, 0.5, 1.1, 0.7];
        let old = t(&[&[-1.0, -1.0, -1.0, -1.0]]);
        let new = &old + Tensor::from_slice(&ratios.map(|r| r.ln() as f32)).unsqueeze(0);
        let advantages = t(&[&[1.0, 1.0, -1.0, -1.0]]);
        let (losses, clipped) = clipped_surrogate(&new, &old, &advantages, 0.2, 0.3);
        // max(−1.5, −1.3), max(−0.5, −0.8), max(1.1, 1.1), max(0.7, 0.8)
        let expected = [-1.3, -0.5, 1.1, 0.8];
        for (a, e) in values(&losses).iter().zip(expected) {
            assert!((a - e).abs() < 1e-6, "{:?}", values(&losses));
        }
        assert_eq!(values(&clipped), [1.0, 0.0, 0.0, 1.0]);
    }

    #[test]
    fn a_sample_cut_at_the_length_limit_pays_the_penalty() {
        let sample = |stopped_at_eos| Generation { ids: vec![1], logprobs: vec![0.0], stopped_at_eos };
        let raw = Tensor::from_slice(&[1.0f32, 2.5]);
        let scores = penalised_scores(&raw, &[sample(true), sample(false)], -1.0, Some(2.0));
        assert_eq!(values(&scores), [1.0, 1.5]);
    }

    #[test]
    fn per_token_values_are_padded_with_zeros() {
        let layout = Layout::new(&[vec![5], vec![6, 7]], &[vec![1, 2, 3], vec![4]], 0, Device::Cpu);
        let x = layout.per_token(&[&[0.5, 0.25, 0.125], &[1.0]], Device::Cpu);
        assert_eq!(values(&x), [0.5, 0.25, 0.125, 1.0, 0.0, 0.0]);
    }

    /// Under bf16 the critic-free stages train as PPO does: f32 master weights computing
    /// in bf16, and a reference held wholly in bf16.
    #[test]
    fn under_bf16_the_policy_keeps_f32_weights_and_the_reference_is_bf16() {
        let sft = crate::checkpoint::small_byte_model(0, (1, 2, 16, 16));
        let learner =
            PolicyLearner::new(sft, Precision::Bf16, |m| AdamW::new(&m.vs, 0.9, 0.999, 1e-8, 0.0)).unwrap();
        assert_eq!((learner.policy.gpt.wte().kind(), learner.policy.kind()), (Kind::Float, Kind::BFloat16));
        assert_eq!(learner.reference.gpt.wte().kind(), Kind::BFloat16);
        assert!(!learner.reference.gpt.wte().requires_grad());
        assert!(learner.policy.gpt.wte().requires_grad());
    }

    #[test]
    fn every_prompt_is_used_once_per_pass() {
        let mut seen: Vec<usize> = (0..5).flat_map(|s| batch_indices(10, 4, 3, s)).collect();
        assert_eq!(seen.len(), 20);
        seen.sort();
        assert_eq!(seen, (0..10).flat_map(|i| [i, i]).collect::<Vec<_>>());
    }
}

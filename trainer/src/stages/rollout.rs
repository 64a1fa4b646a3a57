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
//!
//! On several ranks (`crate::distributed`) each rank samples, scores and trains on its
//! consecutive share of each step's prompts (`sharded_rollout`), every sample drawn from
//! the random stream one process would give it, and each prompt's samples on one rank. A
//! minibatch is the one process's (the same shuffle of the whole step's samples), each
//! rank weighting its rows' mean by its share of the minibatch (`Minibatch`), so that the
//! summed gradients are one process's; whitening and every logged statistic use sums over
//! the ranks, so that all ranks log, bound and stop alike. Rank 0 alone writes.

use std::time::Instant;

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::checkpoint::LanguageModel;
use crate::device::Precision;
use crate::distributed;
use crate::grpo;
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

/// `masked_mean` over every rank's `x` (this rank's alone when training alone, where it
/// equals `masked_mean` to the bit).
pub fn global_masked_mean(x: &Tensor, mask: &Tensor) -> Result<Tensor, TrainError> {
    let sums = Tensor::stack(&[(x * mask).sum(Kind::Float), mask.sum(Kind::Float)], 0);
    distributed::all_reduce_sum(&sums)?;
    Ok(sums.get(0) / sums.get(1).clamp_min(1.0))
}

/// The mean of all of every rank's `x`.
pub fn global_mean(x: &Tensor) -> Result<f64, TrainError> {
    let [sum, n] = distributed::sum_each([x.sum(Kind::Double).double_value(&[]), x.numel() as f64])?;
    Ok(sum / n.max(1.0))
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

/// log π(token) of each response token (B, R) from `response_logits`: the row's
/// log-softmax at the token. Its backward is one fused pass over (B, R, V); the token's
/// logit less the row's log-sum-exp keeps as much for backward (the logits instead of the
/// log-softmax) and takes three more passes: a fifth of the PPO update's backward on the
/// CPU with GPT-2's vocabulary.
pub fn logprobs_of(logits: &Tensor, responses: &Tensor) -> Tensor {
    // Padding ids may lie outside the vocabulary; they are masked by callers.
    let targets = responses.clamp_max(logits.size()[2] - 1).unsqueeze(2);
    logits.log_softmax(-1, Kind::Float).gather(2, &targets, false).squeeze_dim(2)
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

/// Where a rank's rows of a rollout sit among the whole step's samples: rows
/// `first..first + len` of `global`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RowShard {
    pub first: usize,
    pub global: usize,
}

/// A sampled and scored batch: per-token tensors (B, R), 0 on padding.
pub struct Rollout {
    pub samples: Vec<Generation>,
    /// Where these rows sit in the step's (all of it when training alone).
    pub shard: RowShard,
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

    /// Mean over samples of the summed k3 estimate of KL(π_old ‖ π_ref) ([`grpo::k3_kl`]):
    /// unbiased like [`Rollout::kl`], and never below zero, so an estimate from a few
    /// held-out samples cannot read negative. Padding adds 0.
    pub fn kl_k3(&self) -> f64 {
        per_sample_mean(&grpo::k3_kl(&self.logprobs, &self.ref_logprobs))
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

    /// The per-sample means of the whole step (every rank's samples), with `scores` the
    /// samples' scores after penalties (B,).
    pub fn means(&self, scores: &Tensor) -> Result<StepMeans, TrainError> {
        let eos = self.samples.iter().filter(|s| s.stopped_at_eos).count() as f64;
        let sum = |x: &Tensor| x.sum(Kind::Double).double_value(&[]);
        let [n, score, kl, logprob, tokens, eos] = distributed::sum_each([
            self.samples.len() as f64,
            sum(scores),
            sum(&(&self.logprobs - &self.ref_logprobs)),
            sum(&self.logprobs),
            self.tokens() as f64,
            eos,
        ])?;
        let n = n.max(1.0);
        let reward = score / n;
        let squares = distributed::sum(sum(&(scores.to_kind(Kind::Double) - reward).square()))?;
        Ok(StepMeans {
            reward,
            reward_std: (squares / n).sqrt(),
            kl: kl / n,
            entropy: -logprob / n,
            length: tokens / n,
            eos_rate: eos / n,
            tokens: tokens as u64,
        })
    }

    /// The rollout's metrics as `metrics.jsonl` names them; the times are this rank's.
    pub fn metrics(&self, means: &StepMeans) -> Vec<(&'static str, f64)> {
        vec![
            ("objective/reward", means.reward),
            ("objective/reward_std", means.reward_std),
            ("objective/kl", means.kl),
            ("objective/entropy", means.entropy),
            ("response/length", means.length),
            ("response/eos_rate", means.eos_rate),
            ("time/generation", self.generation_seconds),
            ("time/scoring", self.scoring_seconds),
            ("time/reference", self.reference_seconds),
        ]
    }
}

/// A step's per-sample means over every rank's samples.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepMeans {
    /// Mean score (after penalties) and its standard deviation over the samples.
    pub reward: f64,
    pub reward_std: f64,
    /// Mean summed log π_old − log π_ref: the sampled KL in nats.
    pub kl: f64,
    /// Mean −Σ log π_old, the sampled estimate of the summed entropy.
    pub entropy: f64,
    /// Mean tokens per response, EOS included, and the share ending with EOS.
    pub length: f64,
    pub eos_rate: f64,
    /// Response tokens sampled.
    pub tokens: u64,
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
    let shard = RowShard { first: 0, global: samples.len() };
    Ok(Rollout {
        samples,
        shard,
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
/// summed KL to the reference, mean length and share ending with EOS, and the mean gold
/// score over the samples that have one (none when no sample has).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub reward: f64,
    /// KL to the reference in nats per sample, by [`Rollout::kl_k3`].
    pub kl: f64,
    pub length: f64,
    pub eos_rate: f64,
    pub gold: Option<f64>,
}

/// A gold score of a sample, given its prompt, its response (without EOS) and whether it
/// ended with EOS; none for a prompt it does not know (the demo world's oracle knows
/// only its own tasks).
pub type Gold<'a> = dyn Fn(&str, &str, bool) -> Option<f64> + 'a;

/// Samples each prompt once (with `sampling`, `batch_size` prompts at a time, prompt i
/// from random stream i, so that the same policy draws the same samples) and measures
/// it, by `gold` too when given.
pub fn evaluate(
    policy: &LanguageModel,
    reference: &LanguageModel,
    reward: Reward,
    prompts: &[String],
    sampling: &SamplingConfig,
    batch_size: usize,
    gold: Option<&Gold>,
) -> Result<Evaluation, TrainError> {
    let encoded = encode_prompts(policy, reward.n_ctx(policy), prompts, sampling.max_new_tokens, "eval")?;
    let (mut reward_sum, mut kl, mut length, mut eos) = (0.0, 0.0, 0.0, 0.0);
    let (mut gold_sum, mut golds) = (0.0, 0usize);
    let eos_id = policy.tokenizer.eos_id();
    for (i, batch) in encoded.chunks(batch_size).enumerate() {
        let first_stream = (i * batch_size) as u64;
        let r = rollout(policy, reference, reward, batch, sampling, first_stream, batch_size)?;
        let n = batch.len() as f64;
        kl += r.kl_k3() * n;
        reward_sum += r.scores.sum(Kind::Float).double_value(&[]);
        length += r.tokens() as f64;
        eos += r.eos_rate() * n;
        let Some(gold) = gold else { continue };
        for (prompt, sample) in prompts[i * batch_size..].iter().zip(&r.samples) {
            let ids: Vec<i64> = sample.ids.iter().copied().filter(|&t| t != eos_id).collect();
            if let Some(score) = gold(prompt, &policy.tokenizer.decode(&ids), sample.stopped_at_eos) {
                gold_sum += score;
                golds += 1;
            }
        }
    }
    let n = encoded.len().max(1) as f64;
    Ok(Evaluation {
        reward: reward_sum / n,
        kl: kl / n,
        length: length / n,
        eos_rate: eos / n,
        gold: (golds > 0).then(|| gold_sum / golds as f64),
    })
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

/// One minibatch of a pass over a step's samples, as this rank holds it.
#[derive(Clone, Debug, PartialEq)]
pub struct Minibatch {
    /// This rank's rows of it (indices into its rollout). A rank that holds none of it
    /// still adds gradients to the sum: its first row stands in, with shares 0.
    pub rows: Vec<i64>,
    /// This rank's shares of the minibatch's samples and of their response tokens (1 when
    /// training alone): a mean over this rank's rows times its share is its term of the
    /// mean over the whole minibatch, and the terms sum over the ranks to one process's.
    pub sample_share: f64,
    pub token_share: f64,
}

/// The minibatches of one pass (random stream `stream` of `seed`) over a step's samples:
/// a shuffle of all of them, in `size`s, as one process takes them; this rank keeps its
/// rows (`shard`) of each, whose response tokens `mask` (B, R) marks.
pub fn minibatches(
    shard: RowShard,
    mask: &Tensor,
    seed: u64,
    stream: u64,
    size: usize,
) -> Result<Vec<Minibatch>, TrainError> {
    let tokens = Vec::<f64>::try_from(mask.sum_dim_intlist(1, false, Kind::Double).to_device(Device::Cpu))?;
    let local = shard.first..shard.first + tokens.len();
    let mut batches: Vec<(Vec<i64>, f64, f64)> = Vec::new(); // rows, global rows, tokens
    for chunk in epoch_order(shard.global, seed, stream).chunks(size.max(1)) {
        let rows: Vec<i64> =
            chunk.iter().filter(|i| local.contains(i)).map(|&i| (i - shard.first) as i64).collect();
        let held: f64 = rows.iter().map(|&i| tokens[i as usize]).sum();
        batches.push((rows, chunk.len() as f64, held));
    }
    let held = Tensor::from_slice(&batches.iter().map(|b| b.2).collect::<Vec<f64>>());
    distributed::all_reduce_sum(&held)?;
    let totals = Vec::<f64>::try_from(held)?;
    Ok(batches
        .into_iter()
        .zip(totals)
        .map(|((rows, global, held), total)| match rows.is_empty() {
            true => Minibatch { rows: vec![0], sample_share: 0.0, token_share: 0.0 },
            false => Minibatch {
                sample_share: rows.len() as f64 / global,
                token_share: if total > 0.0 { held / total } else { 0.0 },
                rows,
            },
        })
        .collect())
}

/// `updates.epochs` passes over the step's samples in shuffled minibatches, one AdamW
/// step each, the gradients summed over the ranks before it. `loss` is given the
/// minibatch's rows (indices into the rollout), their new log π (B_mb, R) and the
/// minibatch (its shares), and returns the loss to minimise followed by statistics, each
/// weighted by this rank's share; the means of all K over the minibatches, summed over
/// the ranks, are returned.
pub fn update_epochs<const K: usize>(
    learner: &mut PolicyLearner,
    rollout: &Rollout,
    updates: &Updates,
    step: i64,
    mut loss: impl FnMut(&Tensor, &Tensor, &Minibatch) -> [Tensor; K],
) -> Result<[f64; K], TrainError> {
    let mask = &rollout.layout.response_mask;
    let mut sums = [0.0f64; K];
    let mut n = 0usize;
    for epoch in 0..updates.epochs {
        let stream = step as u64 * updates.epochs as u64 + epoch as u64;
        let seed = updates.seed ^ MINIBATCH_SEED;
        for minibatch in minibatches(rollout.shard, mask, seed, stream, updates.minibatch_size)? {
            let rows = rollout.layout.rows(&minibatch.rows);
            let mb_logprobs = rows.logprobs(&learner.policy, updates.temperature);
            let terms = loss(&rows.index, &mb_logprobs, &minibatch);
            learner.opt.zero_grad();
            terms[0].backward();
            distributed::all_reduce_gradients(&learner.policy.vs)?;
            learner.opt.clip_grad_norm(updates.grad_clip);
            learner.opt.step(updates.lr);
            for (sum, t) in sums.iter_mut().zip(&terms) {
                *sum += t.double_value(&[]);
            }
            n += 1;
        }
    }
    let sums = distributed::sum_each(sums)?;
    Ok(sums.map(|s| s / n.max(1) as f64))
}

/// Seed of the minibatch order, mixed into the stage's seed so that it draws a sequence
/// of its own.
pub const MINIBATCH_SEED: u64 = 0x6d69_6e69_6261_7463;

/// What one step of an RL stage did (over every rank's samples).
pub struct StepSummary {
    /// Mean score of the samples (with the missing-EOS penalty).
    pub reward: f64,
    /// The scores' standard deviation over the samples.
    pub reward_std: f64,
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
    /// The run stops when a step's mean reward rises above the previous step's by more
    /// than this many standard deviations of the rewards (`RewardWatch`).
    pub max_reward_jump: Option<f64>,
}

/// Watches a run's mean reward for jumps, measured in standard deviations of the
/// samples' rewards at the first step where they differ (a run whose first rewards are
/// all equal, such as a checker that no sample passes yet, is measured from the first
/// step with a spread). A resumed run measures from its first step again.
#[derive(Clone, Copy, Debug, Default)]
pub struct RewardWatch {
    scale: Option<f64>,
    previous: Option<f64>,
}

impl RewardWatch {
    /// Records a step's mean reward and its standard deviation over the samples; returns
    /// the rise from the previous step's mean, in standard deviations, when it exceeds
    /// `bound`.
    pub fn observe(&mut self, mean: f64, std: f64, bound: f64) -> Option<f64> {
        let rise = self.scale.zip(self.previous).map(|(scale, previous)| (mean - previous) / scale);
        self.previous = Some(mean);
        if self.scale.is_none() && std > 0.0 {
            self.scale = Some(std);
        }
        rise.filter(|rise| *rise > bound)
    }
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
            max_reward_jump: $cfg.max_reward_jump,
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
    let mut watch = RewardWatch::default();
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
        // The guards see statistics summed over the ranks, so that every rank stops alike.
        if let Some(bound) = settings.max_kl.filter(|bound| summary.kl > *bound) {
            // Logged first, so that the run's page shows the step that crossed it.
            run.log(s, &summary.metrics)?;
            let last_good = run.latest_checkpoint().map(|(path, _)| path);
            return Err(TrainError::KlBound {
                step: s,
                stage: settings.stage,
                kl: summary.kl,
                bound,
                last_good,
            });
        }
        let from = watch.previous.unwrap_or(f64::NAN);
        let jump = settings.max_reward_jump.and_then(|bound| {
            watch.observe(summary.reward, summary.reward_std, bound).map(|rise| (bound, rise))
        });
        if let Some((bound, rise)) = jump {
            // Logged first with its sample, which shows what the reward paid for.
            run.log(s, &summary.metrics)?;
            let sample = &summary.sample;
            run.log_sample(s, &sample.prompt, &sample.response, sample.reward)?;
            let last_good = run.latest_checkpoint().map(|(path, _)| path);
            return Err(TrainError::RewardJump {
                step: s,
                stage: settings.stage,
                from,
                to: summary.reward,
                rise,
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
    distributed::broadcast_variables(&learner.policy.vs)?;
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
    run.save_model(&learner.policy, serde_json::to_value(state(outcome.steps)).ok())?;
    Ok((learner.policy, outcome.report(started)))
}

/// `per_prompt` samples of each of this rank's prompts of step `step` (its consecutive
/// share of `prompts`, the whole step's; all of them when training alone), prompt i's
/// samples in rows i·per_prompt .. (i + 1)·per_prompt. Each sample has a random stream of
/// its own, numbered across steps and the step's samples as one process numbers them, so
/// that the ranks together draw exactly one process's samples.
#[allow(clippy::too_many_arguments)]
pub fn sharded_rollout(
    policy: &LanguageModel,
    reference: &LanguageModel,
    reward: Reward,
    prompts: &[Vec<i64>],
    per_prompt: usize,
    sampling: &SamplingConfig,
    step: i64,
    chunk: usize,
) -> Result<Rollout, TrainError> {
    // Known alike on every rank, so that all of them stop rather than wait for one.
    if prompts.len() < distributed::world_size() {
        return Err(TrainError::Config(format!(
            "{} prompts per step cannot be shared by {} ranks: set batch_size to at least the number of ranks",
            prompts.len(),
            distributed::world_size()
        )));
    }
    let share = distributed::contiguous_shard(prompts.len());
    let repeated: Vec<Vec<i64>> =
        prompts[share.clone()].iter().flat_map(|p| std::iter::repeat_n(p.clone(), per_prompt)).collect();
    let global = prompts.len() * per_prompt;
    let first = share.start * per_prompt;
    let first_stream = step as u64 * global as u64 + first as u64;
    let mut rollout = rollout(policy, reference, reward, &repeated, sampling, first_stream, chunk)?;
    rollout.shard = RowShard { first, global };
    Ok(rollout)
}

/// `sharded_rollout` of the critic-free stages (RLOO, GRPO): `per_prompt` samples each.
pub fn grouped_rollout(
    learner: &PolicyLearner,
    reward: Reward,
    prompts: &[Vec<i64>],
    per_prompt: usize,
    sampling: &SamplingConfig,
    step: i64,
    chunk: usize,
) -> Result<Rollout, TrainError> {
    sharded_rollout(&learner.policy, &learner.reference, reward, prompts, per_prompt, sampling, step, chunk)
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

    /// Per token ρ − 1 − log ρ: log ρ = 0 (padding too) adds 0, log ρ = ln 2 adds
    /// 1 − ln 2, log ρ = −ln 2 adds ln 2 − 1/2; where k1 (the plain log ratio) sums to a
    /// negative estimate, k3 stays above zero.
    #[test]
    fn the_k3_kl_of_a_hand_built_batch_is_positive_where_k1_is_negative() {
        let ln2 = std::f64::consts::LN_2;
        let logprobs = t(&[&[-1.0, -1.0], &[-2.0, 0.0]]);
        let reference = &logprobs + t(&[&[ln2 as f32, 0.0], &[-ln2 as f32, ln2 as f32]]);
        let expected = ((1.0 - ln2) + (ln2 - 0.5) + (1.0 - ln2)) / 2.0;
        let k3 = per_sample_mean(&grpo::k3_kl(&logprobs, &reference));
        assert!((k3 - expected).abs() < 1e-6, "{k3}");
        let k1 = per_sample_mean(&(&logprobs - &reference));
        assert!(k1 < 0.0 && expected > 0.0, "k1 {k1}");
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

    /// Step 0's rewards all 0 (no spread yet), step 1's mean 0.5 with std 0.5 sets the
    /// scale; step 2 at 1.5 rises 1.0 / 0.5 = 2 std (within 3), step 3 at 3.2 rises
    /// 1.7 / 0.5 = 3.4 (past 3); a fall is never a jump.
    #[test]
    fn a_reward_jump_is_measured_in_the_first_spread_rewards_standard_deviations() {
        let mut watch = RewardWatch::default();
        assert_eq!(watch.observe(0.0, 0.0, 3.0), None);
        assert_eq!(watch.observe(0.5, 0.5, 3.0), None);
        assert_eq!(watch.observe(1.5, 2.0, 3.0), None);
        let rise = watch.observe(3.2, 0.1, 3.0).expect("a rise of 3.4 std");
        assert!((rise - 3.4).abs() < 1e-9, "{rise}");
        assert_eq!(watch.observe(-10.0, 0.1, 3.0), None);
        assert_eq!(watch.observe(-8.6, 0.1, 3.0), None, "a rise of 2.8 std");
    }

    /// Training alone, a pass's minibatches are the shuffle of all the rollout's rows,
    /// each wholly this process's.
    #[test]
    fn alone_each_minibatch_is_all_of_its_rows() {
        let mask = Tensor::ones([5, 2], (Kind::Float, Device::Cpu));
        let shard = RowShard { first: 0, global: 5 };
        let batches = minibatches(shard, &mask, 3, 1, 2).unwrap();
        let order: Vec<i64> = epoch_order(5, 3, 1).into_iter().map(|i| i as i64).collect();
        let rows: Vec<Vec<i64>> = batches.iter().map(|b| b.rows.clone()).collect();
        assert_eq!(rows, order.chunks(2).map(<[i64]>::to_vec).collect::<Vec<_>>());
        assert!(batches.iter().all(|b| b.sample_share == 1.0 && b.token_share == 1.0));
    }

    #[test]
    fn every_prompt_is_used_once_per_pass() {
        let mut seen: Vec<usize> = (0..5).flat_map(|s| batch_indices(10, 4, 3, s)).collect();
        assert_eq!(seen.len(), 20);
        seen.sort();
        assert_eq!(seen, (0..10).flat_map(|i| [i, i]).collect::<Vec<_>>());
    }
}

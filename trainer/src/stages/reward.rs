//! Stage 3 of InstructGPT: the reward model (RM).
//!
//! The RM is the SFT (or base) model's trunk with a scalar head (`score`). The reward of
//! a response y to a prompt x, r(x, y), is the head's output at the EOS appended to
//! prompt ++ response (no template added, as in SFT). A labeler ranked K samples of one
//! prompt; each pair of samples in different groups is a comparison (y_w preferred to
//! y_l), and the prompt's loss is InstructGPT's eq. 1 (Ouyang et al. 2022, §3.5):
//!
//! ```text
//! loss(θ) = −1/C(K,2) · Σ_(y_w, y_l) log σ(r(x, y_w) − r(x, y_l))
//! ```
//!
//! All K samples of a prompt are one batch element: each sample gets one forward pass
//! however many comparisons it is in, and the comparisons of one prompt are not shuffled
//! into separate batches, where InstructGPT saw them overfit. Tied samples give no
//! comparison, but the normaliser stays C(K,2): a ranking with ties says less, and weighs
//! less. The batch loss is the mean over prompts.
//!
//! A sequence longer than the context loses prompt tokens from the left (`sequence`).
//!
//! The loss is invariant to a shift of all rewards, so after training the head's bias is
//! set so that the demonstrations score a mean of 0 (InstructGPT: "so that the labeler
//! demonstrations achieve a mean score of 0 before doing RL"): the rewards PPO sees are
//! centred.

use std::collections::HashSet;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::checkpoint::{LanguageModel, SCORE_HEAD};
use crate::data::{Demonstration, Ranking};
use crate::distributed;
use crate::lm_loop::{epoch_order, split_validation};
use crate::sampling::SamplingError;
use crate::tokenizer::Tokenizer;
use crate::train::{ensure_finite, lr_at, seed_step, total_steps, AdamW, Progress, RunDir, TrainError};

/// The RM's settings: declared in the run contract.
pub use spec::RewardConfig;

/// Where RM training stands, saved in each checkpoint.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RewardState {
    pub stage: String,
    /// Optimizer steps completed.
    pub step: i64,
}

const STAGE: &str = "reward";

/// What a reward-model run did.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RewardReport {
    pub steps: i64,
    /// The last step's loss (NaN when a resumed run had no step left).
    pub train_loss: f64,
    /// Held-out loss, eq. 1 averaged over prompts.
    pub val_loss: Option<f64>,
    /// Held-out comparisons the RM orders as the labeler did (r_w > r_l).
    pub val_accuracy: Option<f64>,
    /// The score head's bias after centring the demonstrations (or best samples) at 0.
    pub bias: f64,
    pub seconds: f64,
    /// Training comparisons per second of training.
    pub pairs_per_second: f64,
}

/// InstructGPT's eq. 1 for one prompt: −1/C(K,2) · Σ log σ(r_w − r_l) over the ranking's
/// `pairs` (better, worse) of indices into `rewards` (K,). Ties give no pair but still
/// count in C(K,2); a ranking that ties everything has loss 0.
pub fn ranking_loss(rewards: &Tensor, pairs: &[(usize, usize)], k: usize) -> Tensor {
    let comparisons = (k * k.saturating_sub(1) / 2).max(1) as f64;
    if pairs.is_empty() {
        return rewards.sum(Kind::Float) * 0.0;
    }
    let index = |pick: fn(&(usize, usize)) -> usize| {
        let ids: Vec<i64> = pairs.iter().map(|p| pick(p) as i64).collect();
        Tensor::from_slice(&ids).to_device(rewards.device())
    };
    let r_w = rewards.index_select(0, &index(|p| p.0));
    let r_l = rewards.index_select(0, &index(|p| p.1));
    -(r_w - r_l).log_sigmoid().sum(Kind::Float) / comparisons
}

/// Comparisons of `pairs` that `rewards` order as the labeler did (strictly: a tie in
/// reward is not a correct order).
fn correct_pairs(rewards: &[f32], pairs: &[(usize, usize)]) -> usize {
    pairs.iter().filter(|&&(w, l)| rewards[w] > rewards[l]).count()
}

/// The scalar head at each row's last real token: (B, T) ids with their attention mask
/// (1 for a token, 0 for padding, left or right) → (B,) f32 rewards. PPO reads its RM
/// score, and its value model's, through this.
pub fn last_token_rewards(
    model: &LanguageModel,
    ids: &Tensor,
    attention_mask: &Tensor,
    train: bool,
) -> Result<Tensor, TrainError> {
    let scores = model.scores(ids, Some(attention_mask), train).ok_or_else(|| {
        TrainError::Config("the model has no score head: it is not a reward or value model".into())
    })?; // (B, T)
    let t = ids.size()[1];
    let positions = Tensor::arange(t, (Kind::Int64, ids.device())).unsqueeze(0); // (1, T)
    let last = (attention_mask.ne(0).to_kind(Kind::Int64) * positions).argmax(1, true); // (B, 1)
    Ok(scores.gather(1, &last, false).squeeze_dim(1))
}

/// Rewards (N,) f32, on the model's device and without gradients, of token sequences
/// that PPO already has. Each is scored at its last token: a complete response ends with
/// the EOS the caller appended (a response cut at the length limit has none, and PPO
/// applies its own missing-EOS penalty). One batch; split large ones.
pub fn score_ids(model: &LanguageModel, sequences: &[Vec<i64>]) -> Result<Tensor, TrainError> {
    for (index, s) in sequences.iter().enumerate() {
        if s.is_empty() {
            return Err(SamplingError::Empty { index }.into());
        }
        if s.len() as i64 > model.config.n_ctx {
            let n_ctx = model.config.n_ctx;
            return Err(SamplingError::TooLong { index, len: s.len(), max_new_tokens: 0, n_ctx }.into());
        }
    }
    if sequences.is_empty() {
        return Ok(Tensor::zeros([0], (Kind::Float, model.device())));
    }
    let _guard = tch::no_grad_guard();
    let refs: Vec<&[i64]> = sequences.iter().map(Vec::as_slice).collect();
    let (ids, mask) = pad_right(&refs, model.tokenizer.pad_id(), model.device());
    last_token_rewards(model, &ids, &mask, false)
}

/// r(prompt, response) for each pair, in batches of `batch_size`, without gradients.
pub fn score(
    model: &LanguageModel,
    pairs: &[(String, String)],
    batch_size: usize,
) -> Result<Vec<f32>, TrainError> {
    let sequences = pairs
        .iter()
        .enumerate()
        .map(|(i, (prompt, response))| {
            sequence(&model.tokenizer, model.config.n_ctx, prompt, response)
                .map_err(|why| TrainError::Config(format!("pair {}: {why}", i + 1)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    score_sequences(model, &sequences, batch_size)
}

fn score_sequences(
    model: &LanguageModel,
    sequences: &[Vec<i64>],
    batch_size: usize,
) -> Result<Vec<f32>, TrainError> {
    let mut rewards = Vec::with_capacity(sequences.len());
    for chunk in sequences.chunks(batch_size.max(1)) {
        rewards.extend(Vec::<f32>::try_from(score_ids(model, chunk)?.to_device(Device::Cpu))?);
    }
    Ok(rewards)
}

/// prompt ++ response ++ EOS, the sequence a reward is read from. A sequence longer than
/// the context loses prompt tokens from the left, as in SFT (the response is what is
/// judged); a response that does not fit with its EOS and one prompt token is an error.
pub fn sequence(tokenizer: &Tokenizer, n_ctx: i64, prompt: &str, response: &str) -> Result<Vec<i64>, String> {
    let mut ids = tokenizer.encode(prompt);
    let mut response = tokenizer.encode(response);
    response.push(tokenizer.eos_id());
    let n_ctx = n_ctx as usize;
    if response.len() >= n_ctx {
        return Err(format!(
            "the response is {} tokens; with EOS it does not fit the context of {n_ctx}",
            response.len() - 1
        ));
    }
    let overflow = (ids.len() + response.len()).saturating_sub(n_ctx);
    ids.drain(..overflow);
    ids.extend(response);
    Ok(ids)
}

/// One ranking, tokenized: its K sequences and its comparisons.
#[derive(Clone, Debug)]
pub struct Comparisons {
    sequences: Vec<Vec<i64>>,
    pairs: Vec<(usize, usize)>,
}

impl Comparisons {
    fn k(&self) -> usize {
        self.sequences.len()
    }
}

/// Tokenizes rankings; an error names the ranking (1-based, as `what` N) and the sample.
pub fn encode_rankings(
    model: &LanguageModel,
    rankings: &[Ranking],
    what: &str,
) -> Result<Vec<Comparisons>, TrainError> {
    let encode = |(i, r): (usize, &Ranking)| {
        let sequences = r
            .samples()
            .iter()
            .enumerate()
            .map(|(j, sample)| {
                sequence(&model.tokenizer, model.config.n_ctx, r.prompt(), sample)
                    .map_err(|why| TrainError::Config(format!("{what} {}: samples[{j}]: {why}", i + 1)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Comparisons { sequences, pairs: r.pairs() })
    };
    rankings.iter().enumerate().map(encode).collect()
}

/// Splits rankings into train and validation by prompt, so that no held-out prompt was
/// trained on: a seeded `val_fraction` share of the distinct prompts is held out.
pub(crate) fn split_by_prompt(rankings: &[Ranking], fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut seen = HashSet::new();
    let prompts: Vec<&str> = rankings.iter().map(Ranking::prompt).filter(|p| seen.insert(*p)).collect();
    let (_, held_out) = split_validation(&prompts, fraction, seed);
    let held_out: HashSet<&str> = held_out.into_iter().collect();
    (0..rankings.len()).partition(|&i| !held_out.contains(rankings[i].prompt()))
}

/// Right-padded ids (B, T) and attention mask (B, T).
pub(crate) fn pad_right(sequences: &[&[i64]], pad: i64, device: Device) -> (Tensor, Tensor) {
    let len = sequences.iter().map(|s| s.len()).max().unwrap_or(1);
    let (mut ids, mut mask) = (Vec::new(), Vec::new());
    for s in sequences {
        let padding = len - s.len();
        ids.extend(s.iter().copied().chain(std::iter::repeat_n(pad, padding)));
        mask.extend(std::iter::repeat_n(1i64, s.len()).chain(std::iter::repeat_n(0, padding)));
    }
    let shape = [sequences.len() as i64, len as i64];
    (
        Tensor::from_slice(&ids).view(shape).to_device(device),
        Tensor::from_slice(&mask).view(shape).to_device(device),
    )
}

/// The rewards (K,) of each ranking of `batch`, from one forward pass over all their
/// samples.
fn ranking_rewards(
    model: &LanguageModel,
    batch: &[&Comparisons],
    train: bool,
) -> Result<Vec<Tensor>, TrainError> {
    let sequences: Vec<&[i64]> = batch.iter().flat_map(|c| c.sequences.iter().map(Vec::as_slice)).collect();
    let (ids, mask) = pad_right(&sequences, model.tokenizer.pad_id(), model.device());
    let rewards = last_token_rewards(model, &ids, &mask, train)?; // (ΣK,)
    let mut start = 0;
    Ok(batch
        .iter()
        .map(|c| {
            let r = rewards.narrow(0, start, c.k() as i64);
            start += c.k() as i64;
            r
        })
        .collect())
}

/// What one step's micro-batches add up to.
pub struct StepTally {
    /// Eq. 1 averaged over the step's prompts.
    pub loss: f64,
    /// Comparisons the RM ordered as the labeler did, of `compared`.
    pub correct: usize,
    pub compared: usize,
    /// Tokens of every sample, EOS included.
    pub tokens: usize,
}

impl StepTally {
    /// The whole step's tally from each rank's (itself when training alone).
    fn summed_over_ranks(self) -> Result<StepTally, TrainError> {
        let counts = [self.loss, self.correct as f64, self.compared as f64, self.tokens as f64];
        let [loss, correct, compared, tokens] = distributed::sum_each(counts)?;
        Ok(StepTally {
            loss,
            correct: correct as usize,
            compared: compared as usize,
            tokens: tokens as usize,
        })
    }
}

/// Backward of one optimizer step's loss, eq. 1 averaged over the step's prompts however
/// they are split into micro-batches (`batches`); each backward frees its graph before
/// the next forward. Gradients add to those already held. `make bench` times this with
/// the optimizer step around it, as `train` calls it.
pub fn accumulate_gradients(
    model: &LanguageModel,
    batches: &[Vec<&Comparisons>],
) -> Result<StepTally, TrainError> {
    let prompts = batches.iter().map(Vec::len).sum::<usize>() as f64;
    let mut tally = StepTally { loss: 0.0, correct: 0, compared: 0, tokens: 0 };
    for batch in batches {
        // In a data-parallel job, this rank's shard, still divided by the whole step's
        // prompts (see lm_loop::accumulate_gradients); a rank left without one adds zeros.
        let shard: Vec<&Comparisons> = distributed::shard(batch, |c| c.sequences.iter().map(Vec::len).sum())
            .into_iter()
            .copied()
            .collect();
        let left_out = shard.is_empty();
        let batch = if left_out { &batch[..1] } else { &shard[..] };
        let rewards = ranking_rewards(model, batch, true)?;
        let losses: Vec<Tensor> =
            batch.iter().zip(&rewards).map(|(c, r)| ranking_loss(r, &c.pairs, c.k())).collect();
        let loss = Tensor::stack(&losses, 0).sum(Kind::Float) / prompts;
        let loss = if left_out { loss * 0.0 } else { loss };
        tally.loss += loss.double_value(&[]);
        model.backward(&loss);
        if left_out {
            continue;
        }
        for (c, r) in batch.iter().zip(&rewards) {
            let r = Vec::<f32>::try_from(r.detach().to_device(Device::Cpu))?;
            tally.correct += correct_pairs(&r, &c.pairs);
            tally.compared += c.pairs.len();
            tally.tokens += c.sequences.iter().map(Vec::len).sum::<usize>();
        }
    }
    Ok(tally)
}

/// Eq. 1 averaged over prompts, and the share of comparisons ordered as the labeler did.
struct Agreement {
    loss: f64,
    accuracy: f64,
}

fn evaluate(model: &LanguageModel, set: &[Comparisons], batch_size: usize) -> Result<Agreement, TrainError> {
    let _guard = tch::no_grad_guard();
    let (mut loss, mut correct, mut compared) = (0.0, 0, 0);
    for chunk in set.chunks(batch_size.max(1)) {
        let batch: Vec<&Comparisons> = chunk.iter().collect();
        for (c, rewards) in batch.iter().zip(ranking_rewards(model, &batch, false)?) {
            loss += ranking_loss(&rewards, &c.pairs, c.k()).double_value(&[]);
            correct += correct_pairs(&Vec::<f32>::try_from(rewards.to_device(Device::Cpu))?, &c.pairs);
            compared += c.pairs.len();
        }
    }
    Ok(Agreement { loss: loss / set.len().max(1) as f64, accuracy: correct as f64 / compared.max(1) as f64 })
}

/// The rankings of micro-batch number `index` (counting across epochs); DPO draws its
/// batches of rankings the same way.
pub(crate) fn micro_batch<T>(set: &[T], batch_size: usize, seed: u64, index: i64) -> Vec<&T> {
    let per_epoch = set.len().div_ceil(batch_size).max(1) as i64;
    let (epoch, position) = (index / per_epoch, (index % per_epoch) as usize);
    let order = epoch_order(set.len(), seed, epoch as u64);
    order.iter().skip(position * batch_size).take(batch_size).map(|&i| &set[i]).collect()
}

/// What the bias centres at 0: the demonstrations, or without any the rankings' best
/// samples (already tokenized in `encoded`).
fn centring_references(
    model: &LanguageModel,
    rankings: &[Ranking],
    encoded: &[Comparisons],
    demonstrations: &[Demonstration],
) -> Result<Vec<Vec<i64>>, TrainError> {
    if demonstrations.is_empty() {
        let best =
            rankings.iter().zip(encoded).flat_map(|(r, c)| r.best().iter().map(|&i| c.sequences[i].clone()));
        return Ok(best.collect());
    }
    let encode = |(i, d): (usize, &Demonstration)| {
        sequence(&model.tokenizer, model.config.n_ctx, &d.prompt, &d.response)
            .map_err(|why| TrainError::Config(format!("demonstration {}: {why}", i + 1)))
    };
    demonstrations.iter().enumerate().map(encode).collect()
}

/// Shifts the score head's bias so that `references` score a mean of 0; returns the new
/// bias. Eq. 1 depends only on differences of rewards, so this leaves the loss unchanged.
fn centre_bias(model: &LanguageModel, references: &[Vec<i64>], batch_size: usize) -> Result<f64, TrainError> {
    let name = format!("{SCORE_HEAD}.bias");
    let bias = model
        .vs
        .variables()
        .remove(&name)
        .ok_or_else(|| TrainError::Config(format!("the model has no `{name}` to centre")))?;
    let rewards = score_sequences(model, references, batch_size)?;
    let mean = rewards.iter().map(|&r| r as f64).sum::<f64>() / rewards.len().max(1) as f64;
    let _guard = tch::no_grad_guard();
    let mut bias = bias;
    bias.f_copy_(&(&bias - mean))?;
    Ok(bias.double_value(&[0]))
}

/// Trains a reward model on `rankings` from `model`'s trunk (an SFT or base model) with a
/// new score head, validating on `validation` (or on held-out prompts when it is empty).
/// Afterwards the bias centres `demonstrations` at mean 0 (without any, the rankings'
/// best samples). The RM is saved into `run.path()` and returned.
pub fn train(
    cfg: &RewardConfig,
    model: LanguageModel,
    rankings: &[Ranking],
    validation: &[Ranking],
    demonstrations: &[Demonstration],
    run: &mut RunDir,
) -> Result<(LanguageModel, RewardReport), TrainError> {
    cfg.validate()?;
    if rankings.is_empty() {
        return Err(TrainError::Config("no rankings to train the reward model on".into()));
    }
    let started = Instant::now();
    let mut model = model.with_dropout(cfg.dropout)?;
    // A new head's initial weights come from the run's seed too.
    seed_step(cfg.seed, -1);
    model.add_score_head();
    model.set_trainable(true);
    model.train_in(cfg.precision);
    model.set_checkpointing(cfg.checkpoint_activations);

    let encoded = encode_rankings(&model, rankings, "ranking")?;
    let references = centring_references(&model, rankings, &encoded, demonstrations)?;
    let (train_set, val_set): (Vec<Comparisons>, Vec<Comparisons>) = if validation.is_empty() {
        let (train, val) = split_by_prompt(rankings, cfg.val_fraction, cfg.seed);
        let pick = |indices: Vec<usize>| indices.into_iter().map(|i| encoded[i].clone()).collect();
        (pick(train), pick(val))
    } else {
        (encoded, encode_rankings(&model, validation, "validation ranking")?)
    };
    let total_steps = total_steps(cfg.steps, cfg.epochs, train_set.len(), cfg.batch_size * cfg.grad_accum);
    let sequences = train_set.iter().map(|c| c.sequences.len()).max().unwrap_or(1) * cfg.batch_size;
    let longest = train_set.iter().flat_map(|c| c.sequences.iter().map(Vec::len)).max().unwrap_or(1);
    crate::memory::plan("reward", &model, sequences as i64, longest as i64).map_err(TrainError::Config)?;
    let mut opt = AdamW::new(&model.vs, cfg.beta1, cfg.beta2, cfg.eps, cfg.weight_decay);
    let mut state = run
        .resume(STAGE, &mut [("model", &mut model)], &mut [("model", &mut opt)])?
        .unwrap_or_else(|| RewardState { stage: STAGE.into(), step: 0 });
    distributed::broadcast_variables(&model.vs)?;

    run.set_total_steps(total_steps)?;
    let peak_lr = cfg.lr(model.config.n_embd);
    let mut progress = Progress::new(STAGE, total_steps, state.step);
    let train_started = Instant::now();
    let (mut last_loss, mut pairs_trained) = (f64::NAN, 0usize);
    while state.step < total_steps {
        let step = state.step;
        seed_step(cfg.seed, step);
        let lr = lr_at(step, total_steps, cfg.warmup_steps, peak_lr, cfg.final_lr_ratio);
        opt.zero_grad();
        let micro_batches = cfg.grad_accum as i64;
        let batches: Vec<Vec<&Comparisons>> = (0..micro_batches)
            .map(|m| micro_batch(&train_set, cfg.batch_size, cfg.seed, step * micro_batches + m))
            .collect();
        let tally = accumulate_gradients(&model, &batches)?;
        distributed::all_reduce_gradients(&model.vs)?;
        let StepTally { loss: step_loss, correct, compared, tokens } = tally.summed_over_ranks()?;
        ensure_finite(step, "the training loss", step_loss, run)?;
        let grad_norm = opt.clip_grad_norm(cfg.grad_clip);
        opt.step(lr);
        last_loss = step_loss;
        pairs_trained += compared;
        state.step += 1;

        let mut metrics = vec![
            ("loss/reward", step_loss),
            ("train/accuracy", correct as f64 / compared.max(1) as f64),
            ("lr", lr),
            ("grad_norm", grad_norm),
        ];
        let evaluate_now =
            state.step == total_steps || (cfg.eval_every > 0 && state.step % cfg.eval_every == 0);
        if evaluate_now && !val_set.is_empty() {
            let val = evaluate(&model, &val_set, cfg.batch_size)?;
            ensure_finite(step, "the validation loss", val.loss, run)?;
            metrics.extend([("val/loss", val.loss), ("val/accuracy", val.accuracy)]);
        }
        progress.step(step, tokens as u64, &format!("loss {step_loss:.4}"));
        run.log(step, &metrics)?;
        if run.checkpoint_due(state.step, cfg.checkpoint_every) {
            run.save_checkpoint(state.step, &[("model", &model)], &[("model", &opt)], &state)?;
        }
        run.stop_if_requested(step)?;
    }
    progress.finish();
    let train_seconds = train_started.elapsed().as_secs_f64();

    let val = if val_set.is_empty() { None } else { Some(evaluate(&model, &val_set, cfg.batch_size)?) };
    let bias = centre_bias(&model, &references, cfg.batch_size)?;
    let training = serde_json::to_value(&state).map_err(|e| TrainError::Config(e.to_string()))?;
    run.save_model(&model, Some(training))?;
    let report = RewardReport {
        steps: state.step,
        train_loss: last_loss,
        val_loss: val.as_ref().map(|v| v.loss),
        val_accuracy: val.as_ref().map(|v| v.accuracy),
        bias,
        seconds: started.elapsed().as_secs_f64(),
        pairs_per_second: pairs_trained as f64 / train_seconds.max(1e-9),
    };
    Ok((model, report))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenizer::TokenizerKind;
    use crate::train::temp_run;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() < tol
    }

    fn rewards(values: &[f32]) -> Tensor {
        Tensor::from_slice(values)
    }

    fn ranking(samples: &[&str], groups: Vec<Vec<usize>>) -> Ranking {
        Ranking::new("p".into(), samples.iter().map(|s| s.to_string()).collect(), groups).unwrap()
    }

    /// K = 4 ranked [[0], [1, 2], [3]] (samples 1 and 2 tied), rewards [2, 1, 0.5, −1].
    /// Pairs and −log σ(d) = ln(1 + e^−d):
    ///   (0,1) d=1.0 → 0.313262   (0,2) d=1.5 → 0.201413   (0,3) d=3.0 → 0.048587
    ///   (1,3) d=2.0 → 0.126928   (2,3) d=1.5 → 0.201413
    /// sum 0.891604, over C(4,2) = 6 (not over the 5 pairs) → 0.148601.
    #[test]
    fn the_k_wise_loss_of_a_ranking_with_a_tie_is_eq_1_by_hand() {
        let r = ranking(&["a", "b", "c", "d"], vec![vec![0], vec![1, 2], vec![3]]);
        let loss = ranking_loss(&rewards(&[2.0, 1.0, 0.5, -1.0]), &r.pairs(), 4).double_value(&[]);
        assert!(close(loss, 0.148_600_6, 1e-6), "{loss}");
    }

    /// With K = 2 eq. 1 is TRL's pairwise loss, −log σ(r_chosen − r_rejected), and the
    /// mean over prompts is TRL's mean over pairs: prompts with (r_w, r_l) = (1.2, 0.5)
    /// and (0.1, 0.4) give (ln(1 + e^−0.7) + ln(1 + e^0.3)) / 2 = (0.403186 + 0.854355) / 2.
    #[test]
    fn with_two_samples_the_loss_is_the_pairwise_loss_averaged_over_prompts() {
        let pair = ranking(&["a", "b"], vec![vec![0], vec![1]]).pairs();
        let a = ranking_loss(&rewards(&[1.2, 0.5]), &pair, 2).double_value(&[]);
        let b = ranking_loss(&rewards(&[0.1, 0.4]), &pair, 2).double_value(&[]);
        assert!(close((a + b) / 2.0, 0.628_770_6, 1e-6), "{a} {b}");
    }

    /// [[0], [1, 2]] compares 0 with 1 and 0 with 2, never 1 with 2; with equal rewards
    /// each pair costs ln 2 and the loss is 2 ln 2 / C(3,2), not the mean over pairs, ln 2.
    #[test]
    fn tied_samples_give_no_pair_but_count_in_the_normaliser() {
        let r = ranking(&["a", "b", "c"], vec![vec![0], vec![1, 2]]);
        assert_eq!(r.pairs(), vec![(0, 1), (0, 2)]);
        let loss = ranking_loss(&rewards(&[0.0, 0.0, 0.0]), &r.pairs(), 3).double_value(&[]);
        assert!(close(loss, 2.0 * 2f64.ln() / 3.0, 1e-6), "{loss}");

        let all_tied = ranking(&["a", "b", "c"], vec![vec![0, 1, 2]]);
        assert!(all_tied.pairs().is_empty());
        let r = rewards(&[3.0, -1.0, 0.5]).set_requires_grad(true);
        let loss = ranking_loss(&r, &all_tied.pairs(), 3);
        loss.backward();
        assert_eq!(loss.double_value(&[]), 0.0);
        assert_eq!(r.grad().abs().sum(Kind::Float).double_value(&[]), 0.0);
    }

    /// TRL's RewardTrainer (its collator, its compute_loss) on transformers'
    /// GPT2ForSequenceClassification loaded from a plumb RM checkpoint: the same rewards
    /// at the last token and, for K = 2, the same loss. Runs
    /// tests/python/trl_reference_reward.py with $PLUMB_PYTHON (default: .venv's).
    #[test]
    fn trl_rewards_and_pairwise_loss_match_plumbs_on_the_same_checkpoint() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let python =
            std::env::var_os("PLUMB_PYTHON").map_or_else(|| root.join(".venv/bin/python"), Into::into);
        let dir = tempfile::tempdir().unwrap();
        let mut model = tiny_model(3);
        model.add_score_head();
        let _ = model.vs.variables()["score.bias"].detach().fill_(0.37);
        model.save(dir.path(), None).unwrap();

        let t = &model.tokenizer;
        let comparisons: Vec<(Vec<i64>, Vec<i64>)> =
            [("a?", "aab", "cd"), ("b?", "bbbbbb", "a"), ("c?", "c", "ccdd dd")]
                .iter()
                .map(|(p, w, l)| (sequence(t, 32, p, w).unwrap(), sequence(t, 32, p, l).unwrap()))
                .collect();
        let (chosen, rejected): (Vec<Vec<i64>>, Vec<Vec<i64>>) = comparisons.iter().cloned().unzip();
        let r_w = Vec::<f64>::try_from(score_ids(&model, &chosen).unwrap().to_kind(Kind::Double)).unwrap();
        let r_l = Vec::<f64>::try_from(score_ids(&model, &rejected).unwrap().to_kind(Kind::Double)).unwrap();
        let loss = (0..3)
            .map(|i| {
                let r = Tensor::from_slice(&[r_w[i] as f32, r_l[i] as f32]);
                ranking_loss(&r, &[(0, 1)], 2).double_value(&[])
            })
            .sum::<f64>()
            / 3.0;

        let request = serde_json::json!({
            "model": dir.path(),
            "pad_id": model.tokenizer.pad_id(),
            "pairs": comparisons.iter().map(|(w, l)| serde_json::json!({"chosen": w, "rejected": l})).collect::<Vec<_>>(),
        });
        let mut child = std::process::Command::new(&python)
            .arg(root.join("tests/python/trl_reference_reward.py"))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e} (set PLUMB_PYTHON to a Python with trl)", python.display()));
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), request.to_string().as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let trl: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let numbers = |key: &str| -> Vec<f64> {
            trl[key].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect()
        };
        for (plumb, trl) in [(&r_w, numbers("rewards_chosen")), (&r_l, numbers("rewards_rejected"))] {
            for (a, b) in plumb.iter().zip(&trl) {
                assert!(close(*a, *b, 1e-4), "plumb {plumb:?} vs TRL {trl:?}");
            }
        }
        let trl_loss = trl["loss"].as_f64().unwrap();
        assert!(close(loss, trl_loss, 1e-5), "plumb {loss} vs TRL {trl_loss}");
    }

    fn tiny_model(seed: i64) -> LanguageModel {
        crate::checkpoint::small_byte_model(seed, (2, 4, 64, 32))
    }

    /// K = 4 random strings of 4 to 12 letters from "abcd"; the labeler prefers more
    /// a's, ties grouped. A tiny transformer learns it in seconds, but not in one step
    /// (about chance), and the varied lengths put the EOS at varied columns.
    fn letter_rankings(n: usize, seed: u64) -> Vec<Ranking> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut sample = || -> String {
            let len = rng.random_range(4..=12);
            (0..len).map(|_| b"abcd"[rng.random_range(0..4)] as char).collect()
        };
        (0..n)
            .map(|_| {
                let samples: Vec<String> = (0..4).map(|_| sample()).collect();
                let a_count = |i: usize| samples[i].bytes().filter(|&b| b == b'a').count();
                let mut counts: Vec<usize> = (0..4).map(a_count).collect();
                counts.sort_unstable_by(|x, y| y.cmp(x));
                counts.dedup();
                let groups = counts.iter().map(|&c| (0..4).filter(|&i| a_count(i) == c).collect()).collect();
                Ranking::new("a?".into(), samples, groups).unwrap()
            })
            .collect()
    }

    fn quick_config(steps: i64) -> RewardConfig {
        RewardConfig {
            steps: Some(steps),
            lr: Some(1e-3),
            batch_size: 8,
            val_fraction: 0.0,
            eval_every: 0,
            checkpoint_every: 0,
            ..RewardConfig::default()
        }
    }

    #[test]
    fn a_tiny_reward_model_learns_which_sample_has_more_as() {
        let (dir, mut run) = temp_run();
        let cfg = RewardConfig { lr: Some(2e-3), warmup_steps: 5, batch_size: 16, ..quick_config(40) };
        let (train_set, held_out) = (letter_rankings(400, 1), letter_rankings(100, 2));
        let (_, report) = train(&cfg, tiny_model(0), &train_set, &held_out, &[], &mut run).unwrap();
        let accuracy = report.val_accuracy.unwrap();
        eprintln!("held-out pairwise accuracy {accuracy:.3} ({report:?})");
        assert!(accuracy >= 0.9, "held-out pairwise accuracy {accuracy}");
        let metrics = std::fs::read_to_string(dir.path().join(crate::train::METRICS)).unwrap();
        let last: serde_json::Value = serde_json::from_str(metrics.lines().last().unwrap()).unwrap();
        for name in ["loss/reward", "train/accuracy", "lr", "val/loss", "val/accuracy"] {
            assert!(last[name].is_number(), "{name} missing from {last}");
        }
    }

    #[test]
    fn the_bias_centres_the_demonstrations_at_zero() {
        let (dir, mut run) = temp_run();
        let demos: Vec<Demonstration> =
            ["aab", "dcba", "aaaa", "b"].iter().map(|r| Demonstration::new("a?", *r)).collect();
        let rankings = letter_rankings(16, 3);
        let (model, report) =
            train(&quick_config(2), tiny_model(0), &rankings, &[], &demos, &mut run).unwrap();
        let pairs: Vec<(String, String)> =
            demos.iter().map(|d| (d.prompt.clone(), d.response.clone())).collect();
        let scores = score(&model, &pairs, 3).unwrap();
        let mean = scores.iter().map(|&s| s as f64).sum::<f64>() / scores.len() as f64;
        assert!(mean.abs() < 1e-4, "mean reward of the demonstrations {mean} ({scores:?})");
        assert!(report.bias != 0.0);

        // Saved with the bias: the loaded RM scores as the returned one.
        let loaded = LanguageModel::load(dir.path(), Device::Cpu).unwrap();
        for (a, b) in score(&loaded, &pairs, 4).unwrap().iter().zip(&scores) {
            assert!(close(*a as f64, *b as f64, 1e-5), "{a} vs {b}");
        }
    }

    #[test]
    fn without_demonstrations_the_best_samples_are_centred_at_zero() {
        let (_dir, mut run) = temp_run();
        let rankings = letter_rankings(12, 4);
        let (model, _) = train(&quick_config(2), tiny_model(0), &rankings, &[], &[], &mut run).unwrap();
        let best: Vec<(String, String)> = rankings
            .iter()
            .flat_map(|r| r.best().iter().map(|&i| (r.prompt().to_string(), r.samples()[i].clone())))
            .collect();
        let scores = score(&model, &best, 8).unwrap();
        let mean = scores.iter().map(|&s| s as f64).sum::<f64>() / scores.len() as f64;
        assert!(mean.abs() < 1e-4, "mean reward of the best samples {mean}");
    }

    /// libtorch's generator is process-wide and tests run in parallel, so these runs
    /// draw nothing from it: the head exists before training and there is no dropout.
    /// What resume must restore is the weights, the optimizer's moments, the step and
    /// the batch order.
    #[test]
    fn a_resumed_run_ends_with_the_weights_of_an_uninterrupted_one() {
        let rankings = letter_rankings(36, 5);
        let mut initial = tiny_model(7);
        initial.add_score_head();
        let cfg = RewardConfig { checkpoint_every: 3, warmup_steps: 2, ..quick_config(7) };
        let whole = tempfile::tempdir().unwrap();
        let mut run = RunDir::open(whole.path(), false).unwrap();
        let (uninterrupted, _) =
            train(&cfg, initial.try_clone().unwrap(), &rankings, &[], &[], &mut run).unwrap();

        // The same run, stopped after step 3: later checkpoints and the final model gone.
        let stopped = tempfile::tempdir().unwrap();
        let mut run = RunDir::open(stopped.path(), false).unwrap();
        train(&cfg, initial.try_clone().unwrap(), &rankings, &[], &[], &mut run).unwrap();
        drop(run);
        let checkpoints = stopped.path().join(crate::train::CHECKPOINTS);
        std::fs::remove_dir_all(checkpoints.join("step-00000006")).unwrap();
        std::fs::remove_file(stopped.path().join(crate::checkpoint::WEIGHTS_FILE)).unwrap();
        let mut run = RunDir::open(stopped.path(), true).unwrap();
        let (resumed, report) =
            train(&cfg, initial.try_clone().unwrap(), &rankings, &[], &[], &mut run).unwrap();
        assert_eq!(report.steps, 7);

        let (a, b) = (uninterrupted.vs.variables(), resumed.vs.variables());
        let moved = (&a["h.0.attn.c_attn.weight"] - &initial.vs.variables()["h.0.attn.c_attn.weight"])
            .abs()
            .max()
            .double_value(&[]);
        assert!(moved > 1e-4, "training did not move the weights");
        for (name, tensor) in &a {
            let diff = (tensor - &b[name]).abs().max().double_value(&[]);
            assert!(diff < 1e-5, "{name} differs by {diff}");
        }
        let metrics = std::fs::read_to_string(stopped.path().join(crate::train::METRICS)).unwrap();
        let steps: Vec<i64> = metrics
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["step"].as_i64().unwrap())
            .collect();
        assert_eq!(steps, (0..7).collect::<Vec<_>>());
    }

    #[test]
    fn a_nan_loss_stops_training_at_its_step_keeping_the_last_checkpoint() {
        let (_dir, mut run) = temp_run();
        let cfg = RewardConfig { lr: Some(1e30), checkpoint_every: 1, ..quick_config(5) };
        let err = train(&cfg, tiny_model(0), &letter_rankings(16, 6), &[], &[], &mut run).unwrap_err();
        let message = err.to_string();
        let TrainError::NonFinite { step, last_good, .. } = err else { panic!("{message}") };
        assert!(step >= 1, "{message}");
        assert!(message.starts_with(&format!("step {step}: the training loss is")), "{message}");
        let last_good = last_good.unwrap();
        assert!(last_good.ends_with(format!("step-{step:08}")) && last_good.exists(), "{message}");
    }

    #[test]
    fn the_reward_is_read_at_each_sequences_last_real_token() {
        let mut model = tiny_model(0);
        model.add_score_head();
        let sequences = vec![vec![97, 98, 256], vec![99, 100, 101, 102, 103, 256], vec![104, 256]];
        let batched = Vec::<f32>::try_from(score_ids(&model, &sequences).unwrap()).unwrap();
        for (s, r) in sequences.iter().zip(&batched) {
            let alone = score_ids(&model, std::slice::from_ref(s)).unwrap().double_value(&[0]);
            assert!(close(alone, *r as f64, 1e-5), "{alone} vs {r}");
        }
        // Left padding, as PPO's rollouts have it, reads the same token.
        let ids = Tensor::from_slice(&[257i64, 257, 97, 98, 256]).unsqueeze(0);
        let mask = Tensor::from_slice(&[0i64, 0, 1, 1, 1]).unsqueeze(0);
        let left = last_token_rewards(&model, &ids, &mask, false).unwrap().double_value(&[0]);
        assert!(close(left, batched[0] as f64, 1e-5), "{left} vs {}", batched[0]);
    }

    #[test]
    fn a_long_prompt_loses_its_beginning_and_a_response_too_long_names_its_ranking() {
        let t = Tokenizer::new(TokenizerKind::Bytes);
        assert_eq!(sequence(&t, 5, "abcdef", "xy").unwrap(), vec![101, 102, 120, 121, 256]);
        let (_dir, mut run) = temp_run();
        let mut rankings = letter_rankings(3, 7);
        rankings[1] =
            Ranking::new("a?".into(), vec!["a".into(), "b".repeat(40)], vec![vec![0], vec![1]]).unwrap();
        let err = train(&quick_config(1), tiny_model(0), &rankings, &[], &[], &mut run).unwrap_err();
        assert!(err.to_string().contains("ranking 2: samples[1]: the response is 40 tokens"), "{err}");
    }

    #[test]
    fn a_held_out_split_keeps_each_prompt_on_one_side() {
        let rankings: Vec<Ranking> = (0..40)
            .map(|i| {
                let prompt = format!("prompt {}", i % 10);
                Ranking::new(prompt, vec!["a".into(), "b".into()], vec![vec![0], vec![1]]).unwrap()
            })
            .collect();
        let (train, val) = split_by_prompt(&rankings, 0.2, 3);
        assert_eq!((train.len(), val.len()), (32, 8));
        for &v in &val {
            assert!(train.iter().all(|&t| rankings[t].prompt() != rankings[v].prompt()));
        }
    }

    #[test]
    fn a_config_error_names_the_field() {
        let cfg = RewardConfig { val_fraction: 1.5, ..RewardConfig::default() };
        assert!(cfg.validate().unwrap_err().to_string().contains("reward.val_fraction"));
        let cfg: RewardConfig = toml::from_str("lr = 1e-5\nepochs = 2").unwrap();
        assert_eq!((cfg.lr, cfg.epochs, cfg.final_lr_ratio), (Some(1e-5), 2, 0.1));
        assert!(toml::from_str::<RewardConfig>("learning_rate = 1e-5").is_err());
    }
}

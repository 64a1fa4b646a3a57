//! The loop pretraining and SFT share: next-token loss on the tokens a mask selects
//! (every token when pretraining, the response's when fine-tuning), AdamW with warmup and
//! cosine decay, gradient accumulation and clipping, held-out loss, checkpoints and
//! resume. The stages differ only in how they turn their data into `Example`s.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::checkpoint::LanguageModel;
use crate::device::Precision;
use crate::distributed;
use crate::train::{ensure_finite, lr_at, seed_step, AdamW, Progress, RunDir, TrainError};

/// One training sequence and which of its tokens are predicted.
#[derive(Clone, Debug, PartialEq)]
pub struct Example {
    pub ids: Vec<i64>,
    /// `loss_mask[i]`: whether `ids[i]` is a target (predicted from `ids[..i]`); the first
    /// token never is.
    pub loss_mask: Vec<bool>,
}

/// The loop's settings, filled from a stage's config.
#[derive(Clone, Debug)]
pub struct LoopSettings {
    pub stage: &'static str,
    /// Name of the training-loss metric (`loss/pretrain`, `loss/sft`).
    pub loss_metric: &'static str,
    pub total_steps: i64,
    pub batch_size: usize,
    pub grad_accum: usize,
    pub lr: f64,
    pub warmup_steps: i64,
    pub final_lr_ratio: f64,
    pub weight_decay: f64,
    pub grad_clip: f64,
    pub betas: (f64, f64),
    pub eps: f64,
    pub eval_every: i64,
    pub checkpoint_every: i64,
    pub seed: u64,
    /// Keep the weights with the lowest validation loss as the final model.
    pub keep_best: bool,
    pub precision: Precision,
    pub checkpoint_activations: bool,
}

/// [`LoopSettings`] from a stage config whose length, optimizer, schedule, validation and
/// checkpoint settings carry the loop's names (`PretrainConfig`, `SftConfig`), for a
/// training set of `examples` and a peak learning rate `lr`; the loss metric is
/// `loss/{stage}`.
macro_rules! loop_settings {
    ($cfg:expr, $stage:literal, examples: $examples:expr, keep_best: $keep:expr, lr: $lr:expr) => {{
        let cfg = $cfg;
        $crate::lm_loop::LoopSettings {
            stage: $stage,
            loss_metric: concat!("loss/", $stage),
            total_steps: $crate::train::total_steps(
                cfg.steps,
                cfg.epochs,
                $examples,
                cfg.batch_size * cfg.grad_accum,
            ),
            batch_size: cfg.batch_size,
            grad_accum: cfg.grad_accum,
            lr: $lr,
            warmup_steps: cfg.warmup_steps,
            final_lr_ratio: cfg.final_lr_ratio,
            weight_decay: cfg.weight_decay,
            grad_clip: cfg.grad_clip,
            betas: (cfg.beta1, cfg.beta2),
            eps: cfg.eps,
            eval_every: cfg.eval_every,
            checkpoint_every: cfg.checkpoint_every,
            seed: cfg.seed,
            keep_best: $keep,
            precision: cfg.precision,
            checkpoint_activations: cfg.checkpoint_activations,
        }
    }};
}
pub(crate) use loop_settings;

/// Where the loop stands, saved in each checkpoint.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct LoopState {
    pub stage: String,
    /// Optimizer steps completed.
    pub step: i64,
    pub best_val_loss: Option<f64>,
    pub best_step: Option<i64>,
}

/// What a run of the loop did.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LoopReport {
    pub steps: i64,
    pub train_loss: f64,
    pub val_loss: Option<f64>,
    pub val_perplexity: Option<f64>,
    /// The step whose weights are the final model (the best by validation loss, or the last).
    pub kept_step: i64,
    pub tokens_per_second: f64,
    pub seconds: f64,
}

/// The shuffled order of `n` items in `epoch`: a pure function of the seed and the
/// epoch, so a resumed run sees the same batches.
pub fn epoch_order(n: usize, seed: u64, epoch: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(epoch);
    order.shuffle(&mut rng);
    order
}

/// The examples of micro-batch number `index` (counting across epochs).
fn micro_batch(examples: &[Example], batch_size: usize, seed: u64, index: i64) -> Vec<&Example> {
    let per_epoch = examples.len().div_ceil(batch_size).max(1) as i64;
    let (epoch, position) = (index / per_epoch, (index % per_epoch) as usize);
    let order = epoch_order(examples.len(), seed, epoch as u64);
    order.iter().skip(position * batch_size).take(batch_size).map(|&i| &examples[i]).collect()
}

/// Right-padded ids (B, T), attention mask (B, T) and target mask (B, T-1).
fn collate(batch: &[&Example], pad: i64, device: tch::Device) -> (Tensor, Tensor, Tensor) {
    let len = batch.iter().map(|e| e.ids.len()).max().unwrap_or(1);
    let (mut ids, mut attention, mut targets) = (Vec::new(), Vec::new(), Vec::new());
    for e in batch {
        let padding = len - e.ids.len();
        ids.extend(e.ids.iter().copied().chain(std::iter::repeat_n(pad, padding)));
        attention.extend(std::iter::repeat_n(1i64, e.ids.len()).chain(std::iter::repeat_n(0, padding)));
        targets.extend(
            e.loss_mask[1..].iter().map(|&m| m as i64 as f32).chain(std::iter::repeat_n(0.0, padding)),
        );
    }
    let b = batch.len() as i64;
    let t = len as i64;
    (
        Tensor::from_slice(&ids).view([b, t]).to_device(device),
        Tensor::from_slice(&attention).view([b, t]).to_device(device),
        Tensor::from_slice(&targets).view([b, t - 1]).to_device(device),
    )
}

/// Summed negative log-likelihood of the masked targets (on the device), and their
/// count (counted on the host, so that no step waits for the device to report it).
fn nll(model: &LanguageModel, batch: &[&Example], train: bool) -> (Tensor, f64) {
    let (ids, attention, targets) = collate(batch, model.tokenizer.pad_id(), model.device());
    let logprobs = model.token_logprobs(&ids, Some(&attention), train); // (B, T-1)
    (-(logprobs * &targets).sum(Kind::Float), targets_of(batch))
}

/// The target tokens of `batch`.
fn targets_of<'a>(batch: impl IntoIterator<Item = &'a &'a Example>) -> f64 {
    batch.into_iter().map(|e| e.loss_mask[1..].iter().filter(|&&m| m).count() as f64).sum()
}

/// Mean loss per target token over `examples`, without gradients.
pub fn mean_loss(model: &LanguageModel, examples: &[Example], batch_size: usize) -> f64 {
    let _guard = tch::no_grad_guard();
    let (mut total, mut count) = (0.0, 0.0);
    for chunk in examples.chunks(batch_size.max(1)) {
        let refs: Vec<&Example> = chunk.iter().collect();
        let (sum, n) = nll(model, &refs, false);
        total += sum.double_value(&[]);
        count += n;
    }
    total / count.max(1.0)
}

/// Backward of one optimizer step's loss, the mean over every target token of the step
/// however it is split into micro-batches (`batches`): each micro-batch's summed loss is
/// divided by the step's token count, then backward frees its graph before the next
/// forward. Gradients add to those already held. Returns the loss and the target tokens;
/// the loss is read from the device once, after the last micro-batch.
///
/// In a data-parallel job each rank takes its shard of every micro-batch, still divided
/// by the whole step's token count: the ranks' gradients and losses then sum to one
/// process's ([`distributed::all_reduce_gradients`]).
/// `make bench` times this with the optimizer step around it, as `run` calls it.
pub fn accumulate_gradients(model: &LanguageModel, batches: &[Vec<&Example>]) -> (f64, f64) {
    let step_tokens = targets_of(batches.iter().flatten());
    let mut step_loss = Tensor::zeros([], (Kind::Float, model.device()));
    for batch in batches {
        let shard: Vec<&Example> = distributed::shard(batch, |e| e.ids.len()).into_iter().copied().collect();
        let loss = if shard.is_empty() {
            // A tail batch smaller than the world: this rank adds zero gradients, so that
            // every rank sends the same gradients to the sum.
            nll(model, &batch[..1], true).0 * 0.0
        } else {
            nll(model, &shard, true).0 / step_tokens.max(1.0)
        };
        step_loss += loss.detach();
        model.backward(&loss);
    }
    (step_loss.double_value(&[]), step_tokens)
}

/// Trains `model` on `train`, evaluating on `validation`, from the run's newest
/// checkpoint if it has one; the final (or best) weights are saved into `run.path()` and
/// returned.
pub fn run(
    settings: &LoopSettings,
    mut model: LanguageModel,
    train: &[Example],
    validation: &[Example],
    run: &mut RunDir,
) -> Result<(LanguageModel, LoopReport), TrainError> {
    if train.is_empty() {
        return Err(TrainError::Config("no training examples".into()));
    }
    let started = std::time::Instant::now();
    model.set_trainable(true);
    model.train_in(settings.precision);
    model.set_checkpointing(settings.checkpoint_activations);
    let longest = train.iter().map(|e| e.ids.len()).max().unwrap_or(1) as i64;
    crate::memory::plan(settings.stage, &model, settings.batch_size as i64, longest)
        .map_err(TrainError::Config)?;
    let (b1, b2) = settings.betas;
    let mut opt = AdamW::new(&model.vs, b1, b2, settings.eps, settings.weight_decay);
    let mut state = run
        .resume(settings.stage, &mut [("model", &mut model)], &mut [("model", &mut opt)])?
        .unwrap_or_else(|| LoopState { stage: settings.stage.into(), ..Default::default() });
    distributed::broadcast_variables(&model.vs)?;

    run.set_total_steps(settings.total_steps)?;
    let mut progress = Progress::new(settings.stage, settings.total_steps, state.step);
    let mut last_loss = f64::NAN;
    let micro_batches = settings.grad_accum.max(1) as i64;
    while state.step < settings.total_steps {
        let step = state.step;
        seed_step(settings.seed, step);
        let lr =
            lr_at(step, settings.total_steps, settings.warmup_steps, settings.lr, settings.final_lr_ratio);
        opt.zero_grad();
        let batches: Vec<Vec<&Example>> = (0..micro_batches)
            .map(|micro| micro_batch(train, settings.batch_size, settings.seed, step * micro_batches + micro))
            .collect();
        let (rank_loss, step_tokens) = accumulate_gradients(&model, &batches);
        distributed::all_reduce_gradients(&model.vs)?;
        let step_loss = distributed::sum(rank_loss)?;
        ensure_finite(step, "the training loss", step_loss, run)?;
        let grad_norm = opt.clip_grad_norm(settings.grad_clip);
        opt.step(lr);
        last_loss = step_loss;
        state.step += 1;

        let mut metrics = vec![(settings.loss_metric, step_loss), ("lr", lr), ("grad_norm", grad_norm)];
        let evaluate = state.step == settings.total_steps
            || (settings.eval_every > 0 && state.step % settings.eval_every == 0);
        if evaluate && !validation.is_empty() {
            let val = mean_loss(&model, validation, settings.batch_size);
            ensure_finite(step, "the validation loss", val, run)?;
            metrics.extend([("val/loss", val), ("val/perplexity", val.exp())]);
            if settings.keep_best && state.best_val_loss.is_none_or(|best| val < best) {
                state.best_val_loss = Some(val);
                state.best_step = Some(state.step);
                run.save_best(&model)?;
            }
        }
        progress.step(step, step_tokens as u64, &format!("loss {step_loss:.4}"));
        metrics.push(("tokens_per_second", progress.tokens_per_second()));
        run.log(step, &metrics)?;
        if run.checkpoint_due(state.step, settings.checkpoint_every) {
            run.save_checkpoint(state.step, &[("model", &model)], &[("model", &opt)], &state)?;
        }
        run.stop_if_requested(step)?;
    }
    progress.finish();

    let kept_step = match state.best_step {
        Some(best) if settings.keep_best && best != state.step => {
            run.load_best(&mut model)?;
            best
        }
        _ => state.step,
    };
    let val_loss = (!validation.is_empty()).then(|| mean_loss(&model, validation, settings.batch_size));
    run.save_model(&model, Some(serde_json::to_value(&state).unwrap_or_default()))?;
    let report = LoopReport {
        steps: state.step,
        train_loss: last_loss,
        val_loss,
        val_perplexity: val_loss.map(f64::exp),
        kept_step,
        tokens_per_second: progress.tokens_per_second(),
        seconds: started.elapsed().as_secs_f64(),
    };
    Ok((model, report))
}

/// Splits off a validation share, deterministically: the last `fraction` of a seeded
/// shuffle (at least one example when there are two or more).
pub fn split_validation<T: Clone>(items: &[T], fraction: f64, seed: u64) -> (Vec<T>, Vec<T>) {
    if fraction <= 0.0 || items.len() < 2 {
        return (items.to_vec(), Vec::new());
    }
    let order = epoch_order(items.len(), seed, u64::MAX);
    let n_val = ((items.len() as f64 * fraction).round() as usize).clamp(1, items.len() - 1);
    let (train, val) = order.split_at(items.len() - n_val);
    (train.iter().map(|&i| items[i].clone()).collect(), val.iter().map(|&i| items[i].clone()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example(ids: &[i64], mask: &[bool]) -> Example {
        Example { ids: ids.to_vec(), loss_mask: mask.to_vec() }
    }

    #[test]
    fn collate_right_pads_and_masks_only_targets() {
        let a = example(&[1, 2, 3], &[false, false, true]);
        let b = example(&[4, 5], &[false, true]);
        let (ids, attention, targets) = collate(&[&a, &b], 9, tch::Device::Cpu);
        assert_eq!(Vec::<i64>::try_from(ids.flatten(0, -1)).unwrap(), vec![1, 2, 3, 4, 5, 9]);
        assert_eq!(Vec::<i64>::try_from(attention.flatten(0, -1)).unwrap(), vec![1, 1, 1, 1, 1, 0]);
        assert_eq!(Vec::<f32>::try_from(targets.flatten(0, -1)).unwrap(), vec![0.0, 1.0, 1.0, 0.0]);
    }

    #[test]
    fn every_example_is_seen_once_per_epoch() {
        let examples: Vec<Example> = (0..10).map(|i| example(&[i, i], &[false, true])).collect();
        let mut seen: Vec<i64> =
            (0..4).flat_map(|m| micro_batch(&examples, 3, 7, m)).map(|e| e.ids[0]).collect();
        seen.sort();
        assert_eq!(seen, (0..10).collect::<Vec<_>>());
        assert_ne!(epoch_order(10, 7, 0), epoch_order(10, 7, 1), "each epoch reshuffles");
    }

    #[test]
    fn a_validation_split_is_disjoint_and_deterministic() {
        let items: Vec<i32> = (0..20).collect();
        let (train, val) = split_validation(&items, 0.25, 3);
        assert_eq!((train.len(), val.len()), (15, 5));
        assert!(val.iter().all(|v| !train.contains(v)));
        assert_eq!(split_validation(&items, 0.25, 3), (train, val));
    }
}

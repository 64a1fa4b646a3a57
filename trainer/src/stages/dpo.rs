//! Direct Preference Optimisation (DPO; Rafailov et al. 2023): the SFT policy learns
//! the rankings directly, with no reward model and no sampling.
//!
//! DPO's insight is that the KL-constrained RL objective's optimal policy defines its
//! own reward, the implicit reward r̂(x, y) = β·(log π(y|x) − log π_ref(y|x)) (§4–5),
//! so Bradley–Terry's loss on r̂ trains the policy itself. For a prompt x and a
//! comparison y_w ≻ y_l (eq. 7):
//!
//! ```text
//! h        = [log π(y_w|x) − log π_ref(y_w|x)] − [log π(y_l|x) − log π_ref(y_l|x)]
//! L_DPO    = −log σ(β·h)
//! L_cDPO   = −(1 − ε)·log σ(β·h) − ε·log σ(−β·h)      (conservative DPO, ε flipped labels)
//! L_IPO    = (h − 1/(2β))²                             (Azar et al. 2023, eq. 17)
//! ```
//!
//! log π(y|x) sums the log-probs of the response's tokens and its EOS, as SFT trained
//! them (prompt ++ response ++ EOS, no template). The reference π_ref is the policy as
//! it starts (the SFT model): its log-probs are computed once, before training, under
//! `no_grad` and in eval mode, so no second model is held in memory.
//!
//! A ranking of K samples gives the RM's comparisons ([`Ranking::pairs`]: every pair of
//! samples in different groups, ties give none). All K samples of a ranking are one
//! batch element, so each sample is one forward pass however many comparisons it is in.
//! The loss is the mean over the step's comparisons: the paper's expectation over its
//! dataset of pairs.
//!
//! What it reports is the paper's measure of fit: the implicit-reward accuracy (the
//! share of comparisons with r̂(y_w) > r̂(y_l)) and the mean margin r̂(y_w) − r̂(y_l),
//! on the training rankings and the held-out ones.

use std::time::Instant;

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::checkpoint::LanguageModel;
use crate::data::Ranking;
use crate::reward::{micro_batch, pad_right, sequence, split_by_prompt};
use crate::train::{ensure_finite, lr_at, seed_step, total_steps, AdamW, Progress, RunDir, TrainError};

/// DPO's settings: declared in the run contract.
pub use spec::{DpoConfig, DpoLoss};

/// Where DPO training stands, saved in each checkpoint.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DpoState {
    pub stage: String,
    /// Optimizer steps completed.
    pub step: i64,
}

const STAGE: &str = "dpo";

/// What a DPO run did.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DpoReport {
    pub steps: i64,
    /// The last step's loss (NaN when a resumed run had no step left).
    pub train_loss: f64,
    /// The trained policy on its training comparisons: implicit-reward accuracy and mean
    /// margin β·h.
    pub train_accuracy: f64,
    pub train_margin: f64,
    /// The same on the held-out comparisons, with their loss.
    pub val_loss: Option<f64>,
    pub val_accuracy: Option<f64>,
    pub val_margin: Option<f64>,
    pub seconds: f64,
    /// Training comparisons per second of training.
    pub pairs_per_second: f64,
}

/// DPO's loss per comparison (P,), eq. 7, with label smoothing ε (conservative DPO):
/// −(1 − ε)·log σ(β·h) − ε·log σ(−β·h), where h is `chosen_logratios` −
/// `rejected_logratios` and each log-ratio is log π(y|x) − log π_ref(y|x).
pub fn dpo_loss(
    chosen_logratios: &Tensor,
    rejected_logratios: &Tensor,
    beta: f64,
    label_smoothing: f64,
) -> Tensor {
    let logits = (chosen_logratios - rejected_logratios) * beta;
    -logits.log_sigmoid() * (1.0 - label_smoothing) - (-&logits).log_sigmoid() * label_smoothing
}

/// IPO's loss per comparison (P,), (h − 1/(2β))² (Azar et al. 2023, eq. 17). The
/// paper's h is of sequence log-probs, as here; TRL's `ipo` averages them over tokens.
pub fn ipo_loss(chosen_logratios: &Tensor, rejected_logratios: &Tensor, beta: f64) -> Tensor {
    (chosen_logratios - rejected_logratios - 1.0 / (2.0 * beta)).square()
}

/// One ranking, tokenized, with the reference's log-probs of its samples.
#[derive(Clone, Debug)]
pub struct Preferences {
    /// prompt ++ response ++ EOS of each sample, as the RM reads it ([`sequence`]).
    sequences: Vec<Vec<i64>>,
    /// Tokens of each response with its EOS: the last ones of its sequence.
    response_lens: Vec<usize>,
    /// (better, worse) sample indices, ties dropped.
    pairs: Vec<(usize, usize)>,
    /// log π_ref(y|x) of each sample; filled by [`reference_logps`].
    ref_logps: Vec<f32>,
}

/// Tokenizes rankings; an error names the ranking (1-based, as `what` N) and the sample.
pub fn encode_rankings(
    model: &LanguageModel,
    rankings: &[Ranking],
    what: &str,
) -> Result<Vec<Preferences>, TrainError> {
    let tokenizer = &model.tokenizer;
    let encode = |(i, r): (usize, &Ranking)| {
        let mut preferences = Preferences {
            sequences: Vec::with_capacity(r.samples().len()),
            response_lens: Vec::with_capacity(r.samples().len()),
            pairs: r.pairs(),
            ref_logps: Vec::new(),
        };
        for (j, sample) in r.samples().iter().enumerate() {
            let ids = sequence(tokenizer, model.config.n_ctx, r.prompt(), sample)
                .map_err(|why| TrainError::Config(format!("{what} {}: samples[{j}]: {why}", i + 1)))?;
            let response_len = tokenizer.encode(sample).len() + 1;
            if ids.len() == response_len {
                return Err(TrainError::Config(format!("{what} {}: the prompt is empty", i + 1)));
            }
            preferences.sequences.push(ids);
            preferences.response_lens.push(response_len);
        }
        Ok(preferences)
    };
    rankings.iter().enumerate().map(encode).collect()
}

/// log π(y|x) of every sample of `batch`, in order (ΣK,): the log-probs of each
/// response's tokens and its EOS, summed, from one forward pass.
fn sequence_logps(model: &LanguageModel, batch: &[&Preferences], train: bool) -> Tensor {
    let sequences: Vec<&[i64]> = batch.iter().flat_map(|p| p.sequences.iter().map(Vec::as_slice)).collect();
    let (ids, mask) = pad_right(&sequences, model.tokenizer.pad_id(), model.device());
    let logps = model.token_logprobs(&ids, Some(&mask), train); // (N, T-1): position t predicts t+1
    let predicted = logps.size()[1] as usize;
    let lens = batch.iter().flat_map(|p| p.sequences.iter().map(Vec::len).zip(&p.response_lens));
    let mut response = vec![0f32; sequences.len() * predicted];
    for (row, (len, &response_len)) in lens.enumerate() {
        for t in len - response_len - 1..len - 1 {
            response[row * predicted + t] = 1.0;
        }
    }
    let response = Tensor::from_slice(&response).view([sequences.len() as i64, predicted as i64]);
    (logps * response.to_device(model.device())).sum_dim_intlist(1, false, Kind::Float)
}

/// The log-ratios log π(y|x) − log π_ref(y|x) of every comparison's better and worse
/// sample (P,) each, from the batch's sequence log-probs `logps` (ΣK,).
fn comparison_logratios(logps: &Tensor, batch: &[&Preferences]) -> (Tensor, Tensor) {
    let (mut better, mut worse, mut ref_better, mut ref_worse) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut offset = 0;
    for p in batch {
        for &(w, l) in &p.pairs {
            better.push((offset + w) as i64);
            worse.push((offset + l) as i64);
            ref_better.push(p.ref_logps[w]);
            ref_worse.push(p.ref_logps[l]);
        }
        offset += p.sequences.len();
    }
    let device = logps.device();
    let logratios = |index: &[i64], reference: &[f32]| {
        logps.index_select(0, &Tensor::from_slice(index).to_device(device))
            - Tensor::from_slice(reference).to_device(device)
    };
    (logratios(&better, &ref_better), logratios(&worse, &ref_worse))
}

/// Fills each ranking's `ref_logps` with the model's log-probs, under `no_grad` in eval
/// mode: the reference, computed once.
fn reference_logps(
    model: &LanguageModel,
    set: &mut [Preferences],
    batch_size: usize,
) -> Result<(), TrainError> {
    let _guard = tch::no_grad_guard();
    for chunk in set.chunks_mut(batch_size.max(1)) {
        let batch: Vec<&Preferences> = chunk.iter().collect();
        let logps = Vec::<f32>::try_from(sequence_logps(model, &batch, false).to_device(Device::Cpu))?;
        let mut rest = logps.as_slice();
        for p in chunk.iter_mut() {
            let (mine, others) = rest.split_at(p.sequences.len());
            p.ref_logps = mine.to_vec();
            rest = others;
        }
    }
    Ok(())
}

/// The configured loss of each comparison (P,).
fn comparison_losses(cfg: &DpoConfig, chosen: &Tensor, rejected: &Tensor) -> Tensor {
    match cfg.loss {
        DpoLoss::Sigmoid => dpo_loss(chosen, rejected, cfg.beta, cfg.label_smoothing),
        DpoLoss::Ipo => ipo_loss(chosen, rejected, cfg.beta),
    }
}

/// What comparisons add up to: summed loss, the implicit reward's correct orders, and
/// summed margins β·h.
#[derive(Clone, Copy, Debug, Default)]
pub struct StepTally {
    pub loss: f64,
    pub correct: usize,
    pub margin: f64,
    pub compared: usize,
    /// Tokens of every sample, EOS included.
    pub tokens: usize,
}

impl StepTally {
    fn add(
        &mut self,
        cfg: &DpoConfig,
        losses: &Tensor,
        chosen: &Tensor,
        rejected: &Tensor,
    ) -> Result<(), TrainError> {
        let margins = Vec::<f32>::try_from(((chosen - rejected) * cfg.beta).detach().to_device(Device::Cpu))?;
        self.loss += losses.detach().sum(Kind::Float).double_value(&[]);
        self.correct += margins.iter().filter(|&&m| m > 0.0).count();
        self.margin += margins.iter().map(|&m| m as f64).sum::<f64>();
        self.compared += margins.len();
        Ok(())
    }

    pub fn accuracy(&self) -> f64 {
        self.correct as f64 / self.compared.max(1) as f64
    }

    pub fn mean_loss(&self) -> f64 {
        self.loss / self.compared.max(1) as f64
    }

    pub fn mean_margin(&self) -> f64 {
        self.margin / self.compared.max(1) as f64
    }
}

/// Backward of one optimizer step's loss, the mean over the step's comparisons however
/// they are split into micro-batches (`batches`); each backward frees its graph before
/// the next forward. Gradients add to those already held. `make bench` times this with
/// the optimizer step around it, as `train` calls it.
pub fn accumulate_gradients(
    model: &LanguageModel,
    cfg: &DpoConfig,
    batches: &[Vec<&Preferences>],
) -> Result<StepTally, TrainError> {
    let comparisons = batches.iter().flatten().map(|p| p.pairs.len()).sum::<usize>();
    let mut tally = StepTally::default();
    for batch in batches {
        tally.tokens += batch.iter().flat_map(|p| p.sequences.iter().map(Vec::len)).sum::<usize>();
        if batch.iter().all(|p| p.pairs.is_empty()) {
            continue;
        }
        let logps = sequence_logps(model, batch, true);
        let (chosen, rejected) = comparison_logratios(&logps, batch);
        let losses = comparison_losses(cfg, &chosen, &rejected);
        model.backward(&(losses.sum(Kind::Float) / comparisons as f64));
        tally.add(cfg, &losses, &chosen, &rejected)?;
    }
    Ok(tally)
}

/// The policy's loss, implicit-reward accuracy and margin on `set`, without gradients.
fn evaluate(model: &LanguageModel, cfg: &DpoConfig, set: &[Preferences]) -> Result<StepTally, TrainError> {
    let _guard = tch::no_grad_guard();
    let mut tally = StepTally::default();
    for chunk in set.chunks(cfg.batch_size.max(1)) {
        let batch: Vec<&Preferences> = chunk.iter().filter(|p| !p.pairs.is_empty()).collect();
        if batch.is_empty() {
            continue;
        }
        let (chosen, rejected) = comparison_logratios(&sequence_logps(model, &batch, false), &batch);
        tally.add(cfg, &comparison_losses(cfg, &chosen, &rejected), &chosen, &rejected)?;
    }
    Ok(tally)
}

/// Trains the policy `model` (an SFT model, also the reference) on `rankings` with DPO,
/// validating on `validation` (or on held-out prompts when it is empty). The policy is
/// saved into `run.path()` and returned.
pub fn train(
    cfg: &DpoConfig,
    model: LanguageModel,
    rankings: &[Ranking],
    validation: &[Ranking],
    run: &mut RunDir,
) -> Result<(LanguageModel, DpoReport), TrainError> {
    cfg.validate()?;
    if !rankings.iter().any(|r| !r.pairs().is_empty()) {
        return Err(TrainError::Config(
            "no comparisons to train on: every ranking ties all its samples".into(),
        ));
    }
    let started = Instant::now();
    let mut model = model.with_dropout(cfg.dropout)?;
    model.set_trainable(true);
    model.train_in(cfg.precision);

    let (mut train_set, mut val_set): (Vec<Preferences>, Vec<Preferences>) = if validation.is_empty() {
        let (train, val) = split_by_prompt(rankings, cfg.val_fraction, cfg.seed);
        let pick = |indices: Vec<usize>| -> Vec<Ranking> {
            indices.into_iter().map(|i| rankings[i].clone()).collect()
        };
        (encode_rankings(&model, &pick(train), "ranking")?, encode_rankings(&model, &pick(val), "ranking")?)
    } else {
        (
            encode_rankings(&model, rankings, "ranking")?,
            encode_rankings(&model, validation, "validation ranking")?,
        )
    };
    // The reference is the policy as it starts: before a resumed run loads its
    // checkpoint's weights.
    reference_logps(&model, &mut train_set, cfg.batch_size)?;
    reference_logps(&model, &mut val_set, cfg.batch_size)?;

    let total_steps = total_steps(cfg.steps, cfg.epochs, train_set.len(), cfg.batch_size * cfg.grad_accum);
    let mut opt = AdamW::new(&model.vs, cfg.beta1, cfg.beta2, cfg.eps, cfg.weight_decay);
    let mut state = run
        .resume(STAGE, &mut [("model", &mut model)], &mut [("model", &mut opt)])?
        .unwrap_or_else(|| DpoState { stage: STAGE.into(), step: 0 });

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
        let batches: Vec<Vec<&Preferences>> = (0..micro_batches)
            .map(|m| micro_batch(&train_set, cfg.batch_size, cfg.seed, step * micro_batches + m))
            .collect();
        let tally = accumulate_gradients(&model, cfg, &batches)?;
        let step_loss = tally.mean_loss();
        ensure_finite(step, "the training loss", step_loss, run)?;
        let grad_norm = opt.clip_grad_norm(cfg.grad_clip);
        opt.step(lr);
        last_loss = step_loss;
        pairs_trained += tally.compared;
        state.step += 1;

        let mut metrics = vec![
            ("loss/dpo", step_loss),
            ("train/accuracy", tally.accuracy()),
            ("train/margin", tally.mean_margin()),
            ("lr", lr),
            ("grad_norm", grad_norm),
        ];
        let evaluate_now =
            state.step == total_steps || (cfg.eval_every > 0 && state.step % cfg.eval_every == 0);
        if evaluate_now && !val_set.is_empty() {
            let val = evaluate(&model, cfg, &val_set)?;
            ensure_finite(step, "the validation loss", val.mean_loss(), run)?;
            metrics.extend([
                ("val/loss", val.mean_loss()),
                ("val/accuracy", val.accuracy()),
                ("val/margin", val.mean_margin()),
            ]);
        }
        progress.step(step, tally.tokens as u64, &format!("loss {step_loss:.4}"));
        run.log(step, &metrics)?;
        if run.checkpoint_due(state.step, cfg.checkpoint_every) {
            run.save_checkpoint(state.step, &[("model", &model)], &[("model", &opt)], &state)?;
        }
        run.stop_if_requested(step)?;
    }
    progress.finish();
    let train_seconds = train_started.elapsed().as_secs_f64();

    let fit = evaluate(&model, cfg, &train_set)?;
    let val = if val_set.is_empty() { None } else { Some(evaluate(&model, cfg, &val_set)?) };
    let training = serde_json::to_value(&state).map_err(|e| TrainError::Config(e.to_string()))?;
    model.save(run.path(), Some(training))?;
    let report = DpoReport {
        steps: state.step,
        train_loss: last_loss,
        train_accuracy: fit.accuracy(),
        train_margin: fit.mean_margin(),
        val_loss: val.map(|v| v.mean_loss()),
        val_accuracy: val.map(|v| v.accuracy()),
        val_margin: val.map(|v| v.mean_margin()),
        seconds: started.elapsed().as_secs_f64(),
        pairs_per_second: pairs_trained as f64 / train_seconds.max(1e-9),
    };
    Ok((model, report))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::temp_run;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() < tol
    }

    fn values(t: &Tensor) -> Vec<f64> {
        Vec::<f64>::try_from(t.to_kind(Kind::Double)).unwrap()
    }

    /// Log-ratios chosen [1, −0.5], rejected [0, 0.5]: h = [1, −1]; β = 0.5 gives
    /// β·h = [0.5, −0.5] and −log σ(±0.5) = ln(1 + e^∓0.5) = 0.474077, 0.974077.
    /// Label smoothing ε = 0.2 mixes in the flipped label:
    ///   0.8·0.474077 + 0.2·0.974077 = 0.574077,  0.8·0.974077 + 0.2·0.474077 = 0.874077.
    #[test]
    fn the_dpo_loss_and_its_label_smoothing_are_eq_7_by_hand() {
        let (chosen, rejected) = (Tensor::from_slice(&[1.0f32, -0.5]), Tensor::from_slice(&[0.0f32, 0.5]));
        let plain = values(&dpo_loss(&chosen, &rejected, 0.5, 0.0));
        assert!(close(plain[0], 0.474_077, 1e-6) && close(plain[1], 0.974_077, 1e-6), "{plain:?}");
        let smoothed = values(&dpo_loss(&chosen, &rejected, 0.5, 0.2));
        assert!(close(smoothed[0], 0.574_077, 1e-6) && close(smoothed[1], 0.874_077, 1e-6), "{smoothed:?}");
    }

    /// With ε = 0.5 the loss no longer prefers either sample: its gradient at h = 0 is 0,
    /// where plain DPO's is −β·σ(0) = −0.25 for β = 0.5 (d/dh −log σ(βh) = −β·σ(−βh)).
    #[test]
    fn label_smoothing_weakens_the_push_on_each_comparison() {
        let gradient = |label_smoothing: f64| {
            let chosen = Tensor::from_slice(&[0.0f32]).set_requires_grad(true);
            dpo_loss(&chosen, &Tensor::from_slice(&[0.0f32]), 0.5, label_smoothing)
                .sum(Kind::Float)
                .backward();
            chosen.grad().double_value(&[0])
        };
        assert!(close(gradient(0.0), -0.25, 1e-6));
        assert!(close(gradient(0.2), -0.25 * 0.6, 1e-6), "(1 − 2ε)·−β·σ(0)");
        assert!(close(gradient(0.5), 0.0, 1e-6));
    }

    /// h = [1, −1]: β = 0.5 puts the target margin 1/(2β) at 1, so the losses are
    /// (1 − 1)² = 0 and (−1 − 1)² = 4; β = 0.25 moves it to 2: (1 − 2)² = 1, (−3)² = 9.
    /// Unlike DPO's, IPO's loss rises again past the target: h = 3 at β = 0.5 costs 4.
    #[test]
    fn the_ipo_loss_regresses_h_to_one_over_two_beta() {
        let (chosen, rejected) = (Tensor::from_slice(&[1.0f32, -0.5]), Tensor::from_slice(&[0.0f32, 0.5]));
        assert_eq!(values(&ipo_loss(&chosen, &rejected, 0.5)), vec![0.0, 4.0]);
        assert_eq!(values(&ipo_loss(&chosen, &rejected, 0.25)), vec![1.0, 9.0]);
        let past = ipo_loss(&Tensor::from_slice(&[3.0f32]), &Tensor::from_slice(&[0.0f32]), 0.5);
        assert_eq!(values(&past), vec![4.0]);
    }

    fn tiny_model(seed: i64) -> LanguageModel {
        crate::checkpoint::small_byte_model(seed, (2, 4, 64, 32))
    }

    fn ranking(samples: &[&str], groups: Vec<Vec<usize>>) -> Ranking {
        Ranking::new("p?".into(), samples.iter().map(|s| s.to_string()).collect(), groups).unwrap()
    }

    /// A K = 3 ranking [[0], [1, 2]] gives the RM's comparisons (0, 1) and (0, 2), never
    /// the tie (1, 2). With log π = [−1, −2, −4] and log π_ref = [−1.5, −1, −5] the
    /// log-ratios are [0.5, −1, 1]: chosen [0.5, 0.5], rejected [−1, 1].
    #[test]
    fn a_ranking_with_a_tie_gives_the_rms_comparisons_as_log_ratios() {
        let model = tiny_model(0);
        let mut encoded =
            encode_rankings(&model, &[ranking(&["a", "b", "c"], vec![vec![0], vec![1, 2]])], "ranking")
                .unwrap();
        assert_eq!(encoded[0].pairs, vec![(0, 1), (0, 2)]);
        encoded[0].ref_logps = vec![-1.5, -1.0, -5.0];
        let logps = Tensor::from_slice(&[-1.0f32, -2.0, -4.0]);
        let (chosen, rejected) = comparison_logratios(&logps, &[&encoded[0]]);
        assert_eq!((values(&chosen), values(&rejected)), (vec![0.5, 0.5], vec![-1.0, 1.0]));
    }

    /// log π(y|x) of "p?" → "ab" sums the log-probs of a, b and EOS, read off the model's
    /// per-token log-probs of the sequence alone; in a batch, beside a longer one (so
    /// padded), and after a prompt cut to fit the context, it is the same.
    #[test]
    fn a_sequence_log_prob_sums_the_response_and_its_eos() {
        let model = tiny_model(1);
        let r = ranking(&["ab", "a much longer answer"], vec![vec![0], vec![1]]);
        let encoded = encode_rankings(&model, &[r], "ranking").unwrap();
        let ids = Tensor::from_slice(&[b'p' as i64, b'?' as i64, b'a' as i64, b'b' as i64, 256]).unsqueeze(0);
        let alone =
            model.token_logprobs(&ids, None, false).narrow(1, 1, 3).sum(Kind::Float).double_value(&[]);
        let _guard = tch::no_grad_guard();
        let batched = values(&sequence_logps(&model, &[&encoded[0]], false));
        assert_eq!(encoded[0].response_lens, vec![3, 21]);
        assert!(close(batched[0], alone, 1e-5), "{batched:?} vs {alone}");

        let long_prompt =
            Ranking::new("x".repeat(40), vec!["ab".into(), "c".into()], vec![vec![0], vec![1]]).unwrap();
        let cut = encode_rankings(&model, &[long_prompt], "ranking").unwrap();
        assert_eq!(cut[0].sequences[0].len(), 32, "the prompt loses its beginning");
        let ids = Tensor::from_slice(&cut[0].sequences[0]).unsqueeze(0);
        let alone =
            model.token_logprobs(&ids, None, false).narrow(1, 28, 3).sum(Kind::Float).double_value(&[]);
        assert!(close(values(&sequence_logps(&model, &[&cut[0]], false))[0], alone, 1e-5));
    }

    /// K = 3 strings of 3 to 8 letters from "abcd" per prompt; the labeler prefers fewer
    /// d's (ties grouped).
    fn letter_rankings(n: usize, seed: u64) -> Vec<Ranking> {
        let words = crate::checkpoint::random_words(3 * n, seed, 3..=8, b'a'..=b'd');
        words
            .chunks(3)
            .enumerate()
            .map(|(i, samples)| {
                let d_count = |j: usize| samples[j].bytes().filter(|&b| b == b'd').count();
                let mut counts: Vec<usize> = (0..3).map(d_count).collect();
                counts.sort_unstable();
                counts.dedup();
                let groups = counts.iter().map(|&c| (0..3).filter(|&j| d_count(j) == c).collect()).collect();
                Ranking::new(format!("{}?", i % 7), samples.to_vec(), groups).unwrap()
            })
            .collect()
    }

    fn quick_config(steps: i64) -> DpoConfig {
        DpoConfig {
            steps: Some(steps),
            lr: Some(1e-3),
            batch_size: 8,
            warmup_steps: 0,
            val_fraction: 0.0,
            eval_every: 0,
            checkpoint_every: 0,
            ..DpoConfig::default()
        }
    }

    #[test]
    fn a_tiny_policy_learns_to_prefer_fewer_ds_on_held_out_rankings() {
        let (dir, mut run) = temp_run();
        let cfg = DpoConfig { beta: 0.5, ..quick_config(40) };
        let (train_set, held_out) = (letter_rankings(200, 1), letter_rankings(60, 2));
        let (_, report) = train(&cfg, tiny_model(0), &train_set, &held_out, &mut run).unwrap();
        eprintln!("{report:?}");
        let accuracy = report.val_accuracy.unwrap();
        assert!(accuracy >= 0.85, "held-out implicit-reward accuracy {accuracy}");
        assert!(report.val_margin.unwrap() > 0.0 && report.train_accuracy >= accuracy - 0.1, "{report:?}");
        let metrics = std::fs::read_to_string(dir.path().join(crate::train::METRICS)).unwrap();
        let last: serde_json::Value = serde_json::from_str(metrics.lines().last().unwrap()).unwrap();
        for name in
            ["loss/dpo", "train/accuracy", "train/margin", "lr", "val/loss", "val/accuracy", "val/margin"]
        {
            assert!(last[name].is_number(), "{name} missing from {last}");
        }
    }

    /// Before any step the policy is its reference: every log-ratio is 0, so h = 0, the
    /// loss is ln 2 and no comparison is ordered (the margin is 0, not > 0).
    #[test]
    fn at_the_start_the_policy_is_its_reference() {
        let model = tiny_model(0);
        let mut encoded = encode_rankings(&model, &letter_rankings(12, 3), "ranking").unwrap();
        reference_logps(&model, &mut encoded, 5).unwrap();
        let start = evaluate(&model, &quick_config(1), &encoded).unwrap();
        assert!(close(start.mean_loss(), 2f64.ln(), 1e-5), "{start:?}");
        assert_eq!((start.correct, start.margin), (0, 0.0));
    }

    /// libtorch's generator is process-wide and tests run in parallel, so these runs
    /// draw nothing from it (no dropout). What resume must restore is the weights, the
    /// optimizer's moments, the step and the batch order, and the reference must stay
    /// the policy the run started from, not the checkpoint's.
    #[test]
    fn a_resumed_run_ends_with_the_weights_of_an_uninterrupted_one() {
        let rankings = letter_rankings(24, 5);
        let initial = tiny_model(7);
        let cfg = DpoConfig { checkpoint_every: 3, warmup_steps: 2, ..quick_config(7) };
        let whole = tempfile::tempdir().unwrap();
        let mut run = RunDir::open(whole.path(), false).unwrap();
        let (uninterrupted, _) = train(&cfg, initial.try_clone().unwrap(), &rankings, &[], &mut run).unwrap();

        let stopped = tempfile::tempdir().unwrap();
        let mut run = RunDir::open(stopped.path(), false).unwrap();
        train(&cfg, initial.try_clone().unwrap(), &rankings, &[], &mut run).unwrap();
        drop(run);
        let checkpoints = stopped.path().join(crate::train::CHECKPOINTS);
        std::fs::remove_dir_all(checkpoints.join("step-00000006")).unwrap();
        std::fs::remove_file(stopped.path().join(crate::checkpoint::WEIGHTS_FILE)).unwrap();
        let mut run = RunDir::open(stopped.path(), true).unwrap();
        let (resumed, report) = train(&cfg, initial.try_clone().unwrap(), &rankings, &[], &mut run).unwrap();
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
    }

    #[test]
    fn rankings_that_tie_everything_or_do_not_fit_are_refused_by_name() {
        let (_dir, mut run) = temp_run();
        let tied = vec![ranking(&["a", "b"], vec![vec![0, 1]])];
        let err = train(&quick_config(1), tiny_model(0), &tied, &[], &mut run).unwrap_err().to_string();
        assert!(err.contains("every ranking ties all its samples"), "{err}");
        let mut rankings = letter_rankings(3, 7);
        rankings[1] = ranking(&["a", &"b".repeat(40)], vec![vec![0], vec![1]]);
        let err = train(&quick_config(1), tiny_model(0), &rankings, &[], &mut run).unwrap_err().to_string();
        assert!(err.contains("ranking 2: samples[1]: the response is 40 tokens"), "{err}");
    }

    #[test]
    fn a_config_error_names_the_field() {
        let cfg = DpoConfig { label_smoothing: 0.5, beta: 0.0, ..DpoConfig::default() };
        let e = cfg.validate().unwrap_err().to_string();
        assert!(e.contains("dpo.beta") && e.contains("dpo.label_smoothing: must be in [0, 0.5)"), "{e}");
        let cfg: DpoConfig = toml::from_str("loss = \"ipo\"\nbeta = 0.5").unwrap();
        assert_eq!((cfg.loss, cfg.beta, cfg.label_smoothing), (DpoLoss::Ipo, 0.5, 0.0));
        let e = toml::from_str::<DpoConfig>("loss = \"hinge\"").unwrap_err().to_string();
        assert!(e.contains("hinge") && e.contains("sigmoid"), "{e}");
    }
}

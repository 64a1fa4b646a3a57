//! GRPO, group relative policy optimisation (Shao et al. 2024, DeepSeekMath §4.1): PPO
//! without a value model, each sample's advantage its reward normalised within the group
//! of samples of its prompt, and the KL to the reference in the loss rather than in the
//! reward.
//!
//! One GRPO step (`step`) in the paper's order:
//! 1. sample: G responses to each of the batch's prompts (the shared rollout, whose own
//!    log-probs are the old ones);
//! 2. score: the reward model or program, the missing-EOS penalty, the clip;
//! 3. group-normalised advantages Â_i = (r_i − mean(r)) / std(r) over the group, given
//!    to every token of sample i (outcome supervision);
//! 4. μ = `update_epochs` passes over minibatches of the per-token loss
//!    −min(ρ·Â, clip(ρ, 1 − ε, 1 + ε_high)·Â) + β·D_KL, with D_KL the k3 estimator
//!    π_ref/π − log(π_ref/π) − 1, averaged over each sample's tokens and then over
//!    samples (eq. 3);
//! 5. statistics.
//!
//! Two later variants are settings: Dr. GRPO (Liu et al. 2025) centres without dividing
//! by the std (`scale_rewards` false) and sums each sample's token losses over a
//! constant length (`length_normalise` false); DAPO (Yu et al. 2025) raises the upper
//! clip alone (`clip_high`).

use std::time::Instant;

use tch::{Kind, Tensor};

use crate::checkpoint::LanguageModel;
use crate::rollout::{
    clipped_surrogate, critic_free_updates, global_mean, grouped_rollout, masked_mean, penalised_scores,
    rollout_sampling, run_settings, train_policy, update_epochs, EvalFn, PolicyLearner, Reward, RunReport,
    StepSummary,
};
use crate::train::{RunDir, TrainError};

/// GRPO's settings: declared in the run contract.
pub use spec::GrpoConfig;

/// Added to a group's std so that a group of equal rewards gets advantages 0, not NaN.
const STD_EPS: f64 = 1e-4;

/// Each sample's advantage (B,) from rewards (B,) in groups of `group_size` consecutive
/// samples of one prompt: r − the group's mean, divided by the group's standard
/// deviation (Bessel-corrected, as TRL's GRPOTrainer) + 1e-4 when `scale` is set.
pub fn group_advantages(rewards: &Tensor, group_size: i64, scale: bool) -> Tensor {
    let grouped = rewards.view([-1, group_size]); // (B / G, G)
    let centred = &grouped - grouped.mean_dim(1, true, Kind::Float);
    let advantages = if scale { centred / (grouped.std_correction(1, 1, true) + STD_EPS) } else { centred };
    advantages.view([-1])
}

/// The k3 estimator of KL(π ‖ π_ref) at each token (Schulman 2020): with
/// d = log π_ref − log π, e^d − d − 1, which is never negative and unbiased for
/// tokens sampled from π.
pub fn k3_kl(logprobs: &Tensor, ref_logprobs: &Tensor) -> Tensor {
    let d = ref_logprobs - logprobs;
    d.exp() - &d - 1.0
}

/// GRPO's per-token loss, the clipped surrogate with ε_low = `clip_low`, ε_high =
/// `clip_high`, plus β·k3 KL, aggregated: each sample's token losses averaged over its
/// own length and then over samples (`length_normalise`), or Dr. GRPO's sum over its
/// tokens divided by `max_len`, then the mean over samples. Returns (loss, clipfrac,
/// mean k3 KL), the statistics over all tokens.
#[allow(clippy::too_many_arguments)]
pub fn grpo_loss(
    logprobs: &Tensor,
    old_logprobs: &Tensor,
    ref_logprobs: &Tensor,
    advantages: &Tensor,
    mask: &Tensor,
    (clip_low, clip_high): (f64, f64),
    kl_coef: f64,
    length_normalise: Option<i64>,
) -> (Tensor, Tensor, Tensor) {
    let advantages = advantages.unsqueeze(1); // (B, 1): every token of a sample
    let (surrogate, clipped) = clipped_surrogate(logprobs, old_logprobs, &advantages, clip_low, clip_high);
    let kl = k3_kl(logprobs, ref_logprobs);
    let per_token = (surrogate + &kl * kl_coef) * mask;
    let per_sample = per_token.sum_dim_intlist(1, false, Kind::Float);
    let lengths = match length_normalise {
        None => mask.sum_dim_intlist(1, false, Kind::Float).clamp_min(1.0),
        Some(max_len) => Tensor::full([1], max_len as f64, (Kind::Float, mask.device())),
    };
    let loss = (per_sample / lengths).mean(Kind::Float);
    (loss, masked_mean(&clipped, mask).detach(), masked_mean(&kl, mask).detach())
}

/// One GRPO iteration on `prompts` (token ids): sample G each, score, group-normalised
/// advantages, `update_epochs` of minibatch updates, statistics.
pub fn step(
    cfg: &GrpoConfig,
    step: i64,
    prompts: &[Vec<i64>],
    learner: &mut PolicyLearner,
    reward: Reward,
) -> Result<StepSummary, TrainError> {
    // 1–2. Sample and score.
    let sampling = rollout_sampling(cfg.max_new_tokens, cfg.temperature, cfg.seed);
    let rollout =
        grouped_rollout(learner, reward, prompts, cfg.group_size, &sampling, step, cfg.minibatch_size)?;
    let mask = &rollout.layout.response_mask;
    let scores =
        penalised_scores(&rollout.scores, &rollout.samples, cfg.missing_eos_penalty, cfg.reward_clip);

    // 3. Group-normalised advantages.
    let advantages = group_advantages(&scores, cfg.group_size as i64, cfg.scale_rewards);

    // 4. Train.
    let started = Instant::now();
    let updates = critic_free_updates!(cfg, step, learner.policy.config.n_embd);
    let clip = (cfg.clip_ratio, cfg.clip_high.unwrap_or(cfg.clip_ratio));
    let constant_length = (!cfg.length_normalise).then_some(cfg.max_new_tokens);
    let [loss, clipfrac, kl] =
        update_epochs(learner, &rollout, &updates, step, |rows, mb_logprobs, minibatch| {
            let pick = |t: &Tensor| t.index_select(0, rows);
            let (loss, clipfrac, kl) = grpo_loss(
                mb_logprobs,
                &pick(&rollout.logprobs),
                &pick(&rollout.ref_logprobs),
                &pick(&advantages),
                &pick(mask),
                clip,
                cfg.kl_coef,
                constant_length,
            );
            // The loss is a mean over this rank's samples, the statistics over their tokens:
            // each weighted to its share of the minibatch.
            [loss * minibatch.sample_share, clipfrac * minibatch.token_share, kl * minibatch.token_share]
        })?;
    let training_seconds = started.elapsed().as_secs_f64();

    // 5. Statistics.
    let groups = scores.view([-1, cfg.group_size as i64]);
    let spread = global_mean(&groups.std_correction(1, 1, false))?;
    let means = rollout.means(&scores)?;
    let mut metrics = rollout.metrics(&means);
    metrics.extend([
        ("loss/policy", loss),
        ("grpo/clipfrac", clipfrac),
        ("grpo/k3_kl", kl),
        ("grpo/group_reward_std", spread),
        ("time/training", training_seconds),
    ]);
    Ok(StepSummary {
        sample: rollout.example.clone(),
        reward: means.reward,
        reward_std: means.reward_std,
        kl: means.kl,
        tokens: means.tokens,
        generation_seconds: rollout.generation_seconds,
        metrics,
        finite: &["objective/reward", "objective/kl", "loss/policy"],
    })
}

/// GRPO from the SFT `policy` against `reward` on `prompts`, calling `eval` every
/// `cfg.eval_every` steps and at the end. The reference is a frozen copy of `policy`, so
/// a resumed run must be given the same SFT model. The final policy is saved into
/// `run.path()` and returned.
pub fn train(
    cfg: &GrpoConfig,
    policy: LanguageModel,
    reward: Reward,
    prompts: &[String],
    run: &mut RunDir,
    eval: &mut EvalFn,
) -> Result<(LanguageModel, RunReport), TrainError> {
    cfg.validate()?;
    let adamw = (cfg.beta1, cfg.beta2, cfg.eps, cfg.weight_decay);
    let settings = run_settings!("grpo", cfg);
    train_policy(
        &settings,
        adamw,
        cfg.max_new_tokens,
        policy,
        reward,
        prompts,
        run,
        eval,
        |learner, s, batch| step(cfg, s, batch, learner, reward),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::tensors::{close, t, values};

    /// Group 1: rewards 1, 2, 3: mean 2, std 1 → −1, 0, 1 (over 1 + 1e-4). Group 2:
    /// rewards 5, 5, 5 → 0 (not NaN). Dr. GRPO only centres: −1, 0, 1 and 0, 0, 0.
    #[test]
    fn advantages_are_normalised_within_each_group() {
        let rewards = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 5.0, 5.0, 5.0]);
        let s = 1.0 + STD_EPS;
        close(&values(&group_advantages(&rewards, 3, true)), &[-1.0 / s, 0.0, 1.0 / s, 0.0, 0.0, 0.0]);
        // Group of 2: rewards 0 and 4, std = √8 (Bessel): ±2/√8.
        let pair = group_advantages(&Tensor::from_slice(&[0.0f32, 4.0]), 2, true);
        let a = 2.0 / (8f64.sqrt() + STD_EPS);
        close(&values(&pair), &[-a, a]);
        let centred = group_advantages(&Tensor::from_slice(&[1.0f32, 2.0, 6.0]), 3, false);
        close(&values(&centred), &[-2.0, -1.0, 3.0]);
    }

    /// d = log π_ref − log π: d = 0 → 0; d = ln 2 → 2 − ln 2 − 1; d = −1 → e^−1 + 1 − 1.
    #[test]
    fn the_k3_estimator_matches_hand_computed_values() {
        let logprobs = t(&[&[-1.0, -2.0, -0.5]]);
        let ref_logprobs = t(&[&[-1.0, -2.0 + 2f32.ln(), -1.5]]);
        let expected = [0.0, 1.0 - 2f64.ln(), (-1f64).exp()];
        close(&values(&k3_kl(&logprobs, &ref_logprobs)), &expected);
        assert!(values(&k3_kl(&logprobs, &ref_logprobs)).iter().all(|&k| k >= 0.0));
    }

    /// Two samples: sample 1 has 2 tokens with ρ = 1.5 and 1 (A = 1); sample 2 one token
    /// with ρ = 1 (A = −2) and padding. ε = 0.2: token 1 counts 1.2; with clip-higher
    /// ε_high = 0.3 it counts 1.3. No KL (π = π_ref would give 0 anyway).
    #[test]
    fn the_loss_averages_per_sample_or_over_a_constant_length_and_clips_higher() {
        let old = t(&[&[-1.0, -1.0], &[-1.0, -1.0]]);
        let new = t(&[&[-1.0 + 1.5f32.ln(), -1.0], &[-1.0, 7.0]]);
        let mask = t(&[&[1.0, 1.0], &[1.0, 0.0]]);
        let advantages = Tensor::from_slice(&[1.0f32, -2.0]);
        let loss = |clip, length| {
            let (loss, clipfrac, kl) = grpo_loss(&new, &old, &new, &advantages, &mask, clip, 0.0, length);
            (loss.double_value(&[]), clipfrac.double_value(&[]), kl.double_value(&[]))
        };
        // GRPO: sample 1 −(1.2 + 1)/2 = −1.1, sample 2 2/1 = 2: mean 0.45.
        let (grpo, clipfrac, kl) = loss((0.2, 0.2), None);
        close(&[grpo, clipfrac, kl], &[0.45, 1.0 / 3.0, 0.0]);
        // Clip-higher: −(1.3 + 1)/2 = −1.15 and 2: mean 0.425.
        close(&[loss((0.2, 0.3), None).0], &[0.425]);
        // Dr. GRPO over 4 tokens: −2.2/4 = −0.55 and 2/4 = 0.5: mean −0.025.
        close(&[loss((0.2, 0.2), Some(4)).0], &[-0.025]);
    }

    /// β·k3 is added to every real token's loss and averaged like it.
    #[test]
    fn the_kl_term_enters_the_loss_per_token() {
        let lp = t(&[&[-1.0, -1.0]]);
        let ref_lp = t(&[&[-1.0 + 2f32.ln(), -1.0]]);
        let mask = t(&[&[1.0, 1.0]]);
        let zero = Tensor::from_slice(&[0.0f32]);
        let (loss, _, kl) = grpo_loss(&lp, &lp, &ref_lp, &zero, &mask, (0.2, 0.2), 0.5, None);
        let k3 = 1.0 - 2f64.ln();
        close(&[loss.double_value(&[]), kl.double_value(&[])], &[0.5 * k3 / 2.0, k3 / 2.0]);
    }
}

#[cfg(test)]
mod learning_tests {
    use super::*;
    use crate::ppo::learning_tests::assert_learns_lowercase;

    /// GRPO against the hand-built reward model that likes lowercase letters: the
    /// held-out reward rises at a bounded KL.
    #[test]
    fn grpo_raises_the_held_out_reward_at_a_bounded_kl() {
        let cfg = GrpoConfig {
            steps: 10,
            batch_size: 8,
            minibatch_size: 16,
            lr: Some(3e-3),
            max_new_tokens: 8,
            missing_eos_penalty: 0.0,
            checkpoint_every: 0,
            ..Default::default()
        };
        let logged = ["objective/reward", "objective/kl", "loss/policy", "grpo/clipfrac", "grpo/k3_kl"];
        assert_learns_lowercase(cfg.max_new_tokens, &logged, |sft, reward, prompts, run| {
            train(&cfg, sft, reward, prompts, run, &mut |_, _, _| Ok(Vec::new()))
        });
    }
}

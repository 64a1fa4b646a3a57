//! RLOO, REINFORCE with a leave-one-out baseline (Ahmadian et al. 2024, "Back to
//! Basics: Revisiting REINFORCE Style Optimization for Learning from Human Feedback in
//! LLMs"): no value model; each response is one action, and the other samples of its
//! prompt are its baseline.
//!
//! One RLOO step (`step`) in the paper's order:
//! 1. sample: k responses to each of the batch's prompts (the shared rollout, whose own
//!    log-probs are the old ones);
//! 2. score: the reward model or program, the missing-EOS penalty, the clip;
//! 3. KL-penalised rewards: r = score − β·Σ_t (log π − log π_ref), per sample, as TRL's
//!    RLOOTrainer has it;
//! 4. leave-one-out advantages: A_i = r_i − 1/(k − 1)·Σ_{j≠i} r_j over the prompt's
//!    samples;
//! 5. `update_epochs` passes over minibatches of the REINFORCE loss −A·ρ on whole
//!    responses, ρ = π(y)/π_old(y) clipped as PPO clips it (ρ = 1 on a rollout's first
//!    minibatch, where the gradient is REINFORCE's);
//! 6. statistics.

use std::time::Instant;

use tch::{Kind, Tensor};

use crate::checkpoint::LanguageModel;
use crate::ppo::{policy_loss, whiten};
use crate::rollout::{
    critic_free_updates, global_mean, grouped_rollout, penalised_scores, rollout_sampling, run_settings,
    train_policy, update_epochs, EvalFn, PolicyLearner, Reward, RunReport, StepSummary,
};
use crate::train::{RunDir, TrainError};

/// RLOO's settings: declared in the run contract.
pub use spec::RlooConfig;

/// Each sample's leave-one-out advantage r_i − mean_{j≠i} r_j, for rewards (B,) that
/// come in groups of `k` consecutive samples of one prompt.
pub fn rloo_advantages(rewards: &Tensor, k: i64) -> Tensor {
    let grouped = rewards.view([-1, k]); // (B / k, k)
    let baselines = (grouped.sum_dim_intlist(1, true, Kind::Float) - &grouped) / (k - 1) as f64;
    (grouped - baselines).view([-1])
}

/// The REINFORCE loss on whole responses with PPO's clipped ratio: `policy_loss` on the
/// summed log-probs of each response (B, R) → (B, 1), with one advantage each (B,).
/// Returns (pg_loss, clipfrac, approx_kl).
pub fn sequence_loss(
    logprobs: &Tensor,
    old_logprobs: &Tensor,
    advantages: &Tensor,
    mask: &Tensor,
    clip_ratio: f64,
) -> (Tensor, Tensor, Tensor) {
    let summed = |lp: &Tensor| (lp * mask).sum_dim_intlist(1, true, Kind::Float); // (B, 1)
    let one_action = Tensor::ones([advantages.size()[0], 1], (Kind::Float, advantages.device()));
    policy_loss(&summed(logprobs), &summed(old_logprobs), &advantages.unsqueeze(1), &one_action, clip_ratio)
}

/// One RLOO iteration on `prompts` (token ids): sample k each, score, KL-penalised
/// rewards, leave-one-out advantages, `update_epochs` of minibatch updates, statistics.
pub fn step(
    cfg: &RlooConfig,
    step: i64,
    prompts: &[Vec<i64>],
    learner: &mut PolicyLearner,
    reward: Reward,
) -> Result<StepSummary, TrainError> {
    // 1–2. Sample and score.
    let sampling = rollout_sampling(cfg.max_new_tokens, cfg.temperature, cfg.seed);
    let rollout = grouped_rollout(learner, reward, prompts, cfg.k, &sampling, step, cfg.minibatch_size)?;
    let mask = &rollout.layout.response_mask;
    let scores =
        penalised_scores(&rollout.scores, &rollout.samples, cfg.missing_eos_penalty, cfg.reward_clip);

    // 3. KL-penalised rewards.
    let kl = (&rollout.logprobs - &rollout.ref_logprobs).sum_dim_intlist(1, false, Kind::Float); // (B,)
    let rewards = &scores - kl * cfg.kl_coef;

    // 4. Leave-one-out advantages.
    let mut advantages = rloo_advantages(&rewards, cfg.k as i64);
    if cfg.whiten_advantages {
        advantages = whiten(&advantages, &advantages.ones_like(), true)?;
    }

    // 5. Train.
    let started = Instant::now();
    let updates = critic_free_updates!(cfg, step, learner.policy.config.n_embd);
    let [pg_loss, clipfrac, approx_kl] =
        update_epochs(learner, &rollout, &updates, step, |rows, mb_logprobs, minibatch| {
            let pick = |t: &Tensor| t.index_select(0, rows);
            let (mb_old_logprobs, mb_advantages, mb_mask) =
                (pick(&rollout.logprobs), pick(&advantages), pick(mask));
            let (loss, clipfrac, approx_kl) =
                sequence_loss(mb_logprobs, &mb_old_logprobs, &mb_advantages, &mb_mask, cfg.clip_ratio);
            // Means over this rank's responses, weighted to their share of the minibatch.
            [loss, clipfrac, approx_kl].map(|t| t * minibatch.sample_share)
        })?;
    let training_seconds = started.elapsed().as_secs_f64();

    // 6. Statistics.
    let means = rollout.means(&scores)?;
    let mut metrics = rollout.metrics(&means);
    metrics.extend([
        ("objective/rlhf_reward", global_mean(&rewards)?),
        ("loss/policy", pg_loss),
        ("rloo/clipfrac", clipfrac),
        ("rloo/approx_kl", approx_kl),
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

/// RLOO from the SFT `policy` against `reward` on `prompts`, calling `eval` every
/// `cfg.eval_every` steps and at the end. The reference is a frozen copy of `policy`, so
/// a resumed run must be given the same SFT model. The final policy is saved into
/// `run.path()` and returned.
pub fn train(
    cfg: &RlooConfig,
    policy: LanguageModel,
    reward: Reward,
    prompts: &[String],
    run: &mut RunDir,
    eval: &mut EvalFn,
) -> Result<(LanguageModel, RunReport), TrainError> {
    cfg.validate()?;
    let adamw = (cfg.beta1, cfg.beta2, cfg.eps, cfg.weight_decay);
    let settings = run_settings!("rloo", cfg);
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
    use crate::rollout::tensors::{close, values};

    /// Prompt 1 (k = 3): rewards 1, 2, 6; baselines (2 + 6)/2 = 4, (1 + 6)/2 = 3.5,
    /// (1 + 2)/2 = 1.5. Prompt 2: rewards 0, 0, 3; baselines 1.5, 1.5, 0.
    #[test]
    fn each_baseline_is_the_mean_of_the_other_samples_of_the_prompt() {
        let rewards = Tensor::from_slice(&[1.0f32, 2.0, 6.0, 0.0, 0.0, 3.0]);
        close(&values(&rloo_advantages(&rewards, 3)), &[-3.0, -1.5, 4.5, -1.5, -1.5, 3.0]);
        // k = 2: each sample's baseline is the other sample.
        close(&values(&rloo_advantages(&Tensor::from_slice(&[1.0f32, 4.0]), 2)), &[-3.0, 3.0]);
    }

    /// The loss sums each response's log-probs over its mask: ρ = exp(Σ log π − Σ log
    /// π_old) per response, clipped as PPO clips it.
    #[test]
    fn the_sequence_loss_clips_the_ratio_of_whole_responses() {
        let old = Tensor::from_slice(&[-1.0f32, -1.0, -1.0, -1.0]).view([2, 2]);
        // Response 1: ρ = e^0.5 > 1.2 with A = 1 (clipped); response 2 has one real token, ρ = e^-0.1.
        let new = Tensor::from_slice(&[-0.75f32, -0.75, -1.1, 5.0]).view([2, 2]);
        let mask = Tensor::from_slice(&[1.0f32, 1.0, 1.0, 0.0]).view([2, 2]);
        let advantages = Tensor::from_slice(&[1.0f32, -2.0]);
        let (loss, clipfrac, _) = sequence_loss(&new, &old, &advantages, &mask, 0.2);
        let expected = (-1.2 + 2.0 * (-0.1f64).exp()) / 2.0;
        assert!((loss.double_value(&[]) - expected).abs() < 1e-5, "{}", loss.double_value(&[]));
        assert!((clipfrac.double_value(&[]) - 0.5).abs() < 1e-6);
    }
}

#[cfg(test)]
mod learning_tests {
    use super::*;
    use crate::ppo::learning_tests::assert_learns_lowercase;

    /// RLOO against the hand-built reward model that likes lowercase letters: the
    /// held-out reward rises at a bounded KL.
    #[test]
    fn rloo_raises_the_held_out_reward_at_a_bounded_kl() {
        let cfg = RlooConfig {
            steps: 20,
            batch_size: 8,
            minibatch_size: 16,
            lr: Some(3e-3),
            max_new_tokens: 8,
            kl_coef: 0.5,
            missing_eos_penalty: 0.0,
            checkpoint_every: 0,
            ..Default::default()
        };
        let logged =
            ["objective/reward", "objective/kl", "objective/rlhf_reward", "loss/policy", "rloo/clipfrac"];
        assert_learns_lowercase(cfg.max_new_tokens, &logged, |sft, reward, prompts, run| {
            train(&cfg, sft, reward, prompts, run, &mut |_, _, _| Ok(Vec::new()))
        });
    }
}

#[cfg(test)]
mod guard_tests {
    use super::*;
    use crate::ppo::learning_tests::{policy_model, prompts};
    use crate::reward_program::RewardProgram;
    use crate::train::temp_run;

    /// A reward program that pays each response its length in bytes mod 3, and 100 more
    /// from its fourth batch (step 3) on: a reward that jumps as a hacked one does.
    const JUMPING_REWARD: &str = r#"calls="$(dirname "$0")/calls"
n=$(cat "$calls" 2>/dev/null || echo 0)
echo $((n + 1)) > "$calls"
jump=0
if [ "$n" -ge 3 ]; then jump=100; fi
awk -v jump="$jump" '{ printf "{\"reward\": %d}\n", length($0) % 3 + jump }'
"#;

    fn run_with(max_reward_jump: Option<f64>) -> (tempfile::TempDir, Result<RunReport, TrainError>) {
        let programs = tempfile::tempdir().unwrap();
        let script = programs.path().join("reward.sh");
        std::fs::write(&script, JUMPING_REWARD).unwrap();
        let program =
            RewardProgram::new(format!("sh {}", script.display()), std::time::Duration::from_secs(20));
        let cfg = RlooConfig {
            steps: 6,
            batch_size: 4,
            k: 2,
            minibatch_size: 8,
            max_new_tokens: 6,
            checkpoint_every: 2,
            max_reward_jump,
            ..Default::default()
        };
        let (dir, mut run) = temp_run();
        let report = train(
            &cfg,
            policy_model(0),
            Reward::Program(&program),
            &prompts(16, 4),
            &mut run,
            &mut |_, _, _| Ok(Vec::new()),
        );
        drop(programs);
        (dir, report.map(|(_, report)| report))
    }

    /// The run stops at the step whose reward jumped, logged first with its sample, and
    /// the error names the bound, the step, the last checkpoint and what to change;
    /// without the bound the same run trains on.
    #[test]
    fn a_reward_that_jumps_stops_the_run_naming_the_bound() {
        let (dir, result) = run_with(Some(3.0));
        let err = result.expect_err("the jump stops the run");
        let text = err.to_string();
        let TrainError::RewardJump { step, rise, ref last_good, .. } = err else { panic!("{text}") };
        assert_eq!(step, 3, "{text}");
        assert!(rise > 3.0, "{text}");
        assert!(last_good.as_ref().is_some_and(|p| p.exists()), "{text}");
        assert!(text.contains("rloo.max_reward_jump = 3") && text.contains("samples.jsonl"), "{text}");
        assert!(text.contains("The last checkpoint before it is"), "{text}");
        let metrics = std::fs::read_to_string(dir.path().join(crate::train::METRICS)).unwrap();
        let last: serde_json::Value = serde_json::from_str(metrics.lines().last().unwrap()).unwrap();
        assert_eq!(last["step"], 3, "the step that jumped is on the run's charts");
        assert!(last["objective/reward"].as_f64().unwrap() > 99.0);
        let samples = std::fs::read_to_string(dir.path().join(crate::train::SAMPLES)).unwrap();
        assert!(samples.lines().last().unwrap().contains("\"step\":3"), "{samples}");

        let (_dir, unbounded) = run_with(None);
        assert_eq!(unbounded.unwrap().steps, 6);
    }
}

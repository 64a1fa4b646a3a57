//! Every stage's settings, declared once (see [`crate::stage_settings`]): the trainer
//! runs them, the worker parses them, the web's launch form and docs/runs.md show them.

use serde::{Deserialize, Serialize};

use crate::problem::Problems;
use crate::scale::Scale;
use crate::setting::{Bound, Range, SettingChoice};
use crate::stage_settings;

fn no_cross_checks<C>(_: &C, _: &mut Problems) {}

stage_settings! {
    /// Pretraining's settings; defaults follow GPT-3 small (Brown et al. 2020, table 2.1
    /// and appendix B) where they apply to small models.
    pub struct PretrainConfig for "pretrain", cross = no_cross_checks {
        /// Passes over the corpus.
                pub epochs: i64 = 1, Range::at_least(1.0), essential;
        /// Optimizer steps in all; overrides `epochs` when set.
                pub steps: Option<i64> = None, Range::at_least(1.0), essential;
        /// Peak learning rate. GPT-3 small: 6e-4.
                pub lr: f64 = 6e-4, Range::POSITIVE, essential;
        /// Cosine decay ends at `lr · final_lr_ratio`. GPT-3: 10%.
        pub final_lr_ratio: f64 = 0.1, Range::UNIT;
        /// Linear warmup steps (capped at a tenth of the run, so short runs still decay).
        pub warmup_steps: i64 = 100, Range::at_least(0.0);
        /// Windows per micro-batch.
                pub batch_size: usize = 16, Range::at_least(1.0), essential;
        /// Micro-batches per optimizer step.
        pub grad_accum: usize = 1, Range::at_least(1.0);
        /// Tokens per window (at most the model's n_ctx; none: n_ctx).
        pub seq_len: Option<i64> = None, Range::at_least(2.0);
        /// AdamW's weight decay. GPT-3: 0.1.
        pub weight_decay: f64 = 0.1, Range::NON_NEGATIVE;
        /// Global gradient-norm clip. GPT-3: 1.0.
        pub grad_clip: f64 = 1.0, Range::POSITIVE;
        /// AdamW's β1. GPT-3: 0.9.
        pub beta1: f64 = 0.9, Range::FRACTION;
        /// AdamW's β2. GPT-3: 0.95.
        pub beta2: f64 = 0.95, Range::FRACTION;
        /// AdamW's ε. GPT-3: 1e-8.
        pub eps: f64 = 1e-8, Range::POSITIVE;
        /// Share of documents held out for the validation loss.
        pub val_fraction: f64 = 0.05, Range::FRACTION;
        /// Validate every N steps (and at the end).
        pub eval_every: i64 = 200, Range::at_least(0.0);
        /// Write a checkpoint every N steps (0: only the final model).
        pub checkpoint_every: i64 = 1000, Range::at_least(0.0);
        /// Seeds the data order and dropout: the same seed gives the same model.
        pub seed: u64 = 0, Range::NON_NEGATIVE;
        /// Activation checkpointing: keep only each block's input in the forward pass
        /// and recompute the block in the backward pass (about a third more compute for
        /// a fraction of the activation memory), so that larger models and batches fit.
        pub checkpoint_activations: bool = false, Range::ANY;
    }
}

stage_settings! {
    /// SFT's settings. Defaults follow InstructGPT (Ouyang et al. 2022, appendix C.1)
    /// where it states them; its learning rates are for 1.3B–175B models, so the default
    /// here is one that suits small GPTs.
    pub struct SftConfig for "sft", cross = no_cross_checks {
        /// Passes over the demonstrations. InstructGPT: 16.
                pub epochs: i64 = 16, Range::at_least(1.0), essential;
        /// Optimizer steps in all; overrides `epochs` when set.
                pub steps: Option<i64> = None, Range::at_least(1.0), essential;
        /// Peak learning rate (InstructGPT: 9.65e-6 at 1.3B, 5.03e-6 at 175B); empty: a
        /// rule of the model's width.
                pub lr: Option<f64> = None, Range::POSITIVE, essential => Scale::SftLr;
        /// Cosine decay ends at `lr · final_lr_ratio`. InstructGPT: cosine decay.
        pub final_lr_ratio: f64 = 0.0, Range::UNIT;
        /// Linear warmup steps.
        pub warmup_steps: i64 = 0, Range::at_least(0.0);
        /// Demonstrations per micro-batch (InstructGPT: 32 at 1.3B and 6B, 8 at 175B).
                pub batch_size: usize = 32, Range::at_least(1.0), essential;
        /// Micro-batches per optimizer step.
        pub grad_accum: usize = 1, Range::at_least(1.0);
        /// Residual dropout during SFT (InstructGPT: 0.2); empty: a rule of the model's
        /// width, none for small models, which underfit.
                pub dropout: Option<f64> = None, Range::FRACTION, essential => Scale::SftDropout;
        /// AdamW's weight decay.
        pub weight_decay: f64 = 0.0, Range::NON_NEGATIVE;
        /// Global gradient-norm clip.
        pub grad_clip: f64 = 1.0, Range::POSITIVE;
        /// AdamW's β1.
        pub beta1: f64 = 0.9, Range::FRACTION;
        /// AdamW's β2.
        pub beta2: f64 = 0.95, Range::FRACTION;
        /// AdamW's ε.
        pub eps: f64 = 1e-8, Range::POSITIVE;
        /// Share of demonstrations held out for validation when no validation file is
        /// given.
        pub val_fraction: f64 = 0.05, Range::FRACTION;
        /// Validate every N steps (and at the end); the best weights by validation loss
        /// are the final model. InstructGPT selects by validation RM score; plumb, before
        /// an RM exists, by validation loss.
        pub eval_every: i64 = 100, Range::at_least(0.0);
        /// Write a checkpoint every N steps (0: only the final model).
        pub checkpoint_every: i64 = 500, Range::at_least(0.0);
        /// Seeds the batch order and dropout: the same seed gives the same model.
        pub seed: u64 = 0, Range::NON_NEGATIVE;
        /// Activation checkpointing: keep only each block's input in the forward pass
        /// and recompute the block in the backward pass (about a third more compute for
        /// a fraction of the activation memory), so that larger models and batches fit.
        pub checkpoint_activations: bool = false, Range::ANY;
    }
}

stage_settings! {
    /// The RM's settings. Defaults follow InstructGPT's 6B reward model (appendix C.2)
    /// where the paper states them.
    pub struct RewardConfig for "reward", cross = no_cross_checks {
        /// Passes over the rankings. InstructGPT: 1 (more overfits).
                pub epochs: i64 = 1, Range::at_least(1.0), essential;
        /// Optimizer steps in all; overrides `epochs` when set.
                pub steps: Option<i64> = None, Range::at_least(1.0), essential;
        /// Peak learning rate (InstructGPT: 9e-6 for the 6B RM; it found the RM
        /// insensitive to the learning rate and schedule); empty: a rule of the model's
        /// width, as small GPTs learn faster with more.
                pub lr: Option<f64> = None, Range::POSITIVE, essential => Scale::RewardLr;
        /// Cosine decay ends at `lr · final_lr_ratio`. InstructGPT: 10% of the initial
        /// rate.
        pub final_lr_ratio: f64 = 0.1, Range::UNIT;
        /// Linear warmup steps (InstructGPT states none for the RM).
        pub warmup_steps: i64 = 0, Range::at_least(0.0);
        /// Prompts per micro-batch, each with all K of its samples. InstructGPT: 64 per
        /// step.
                pub batch_size: usize = 64, Range::at_least(1.0), essential;
        /// Micro-batches per optimizer step (prompts per step = batch_size · grad_accum).
        pub grad_accum: usize = 1, Range::at_least(1.0);
        /// Dropout while training the RM. InstructGPT does not state one;
        /// lm-human-preferences and TRL's RewardTrainer train reward models without
        /// dropout. The saved RM keeps it.
        pub dropout: f64 = 0.0, Range::FRACTION;
        /// AdamW's weight decay.
        pub weight_decay: f64 = 0.0, Range::NON_NEGATIVE;
        /// Global gradient-norm clip.
        pub grad_clip: f64 = 1.0, Range::POSITIVE;
        /// AdamW's β1.
        pub beta1: f64 = 0.9, Range::FRACTION;
        /// AdamW's β2.
        pub beta2: f64 = 0.95, Range::FRACTION;
        /// AdamW's ε.
        pub eps: f64 = 1e-8, Range::POSITIVE;
        /// Share of prompts held out for validation when no validation rankings are
        /// given. Rankings of one prompt stay on one side of the split.
        pub val_fraction: f64 = 0.05, Range::FRACTION;
        /// Validate every N steps (and at the end).
        pub eval_every: i64 = 100, Range::at_least(0.0);
        /// Write a checkpoint every N steps (0: only the final model).
        pub checkpoint_every: i64 = 500, Range::at_least(0.0);
        /// Seeds the batch order (and dropout): the same seed gives the same RM.
        pub seed: u64 = 0, Range::NON_NEGATIVE;
        /// Activation checkpointing: keep only each block's input in the forward pass
        /// and recompute the block in the backward pass (about a third more compute for
        /// a fraction of the activation memory), so that larger models and batches fit.
        pub checkpoint_activations: bool = false, Range::ANY;
    }
}

/// PPO's settings that relate to each other.
fn ppo_cross_checks(c: &PpoConfig, problems: &mut Problems) {
    if c.batch_size >= 1 && c.minibatch_size > c.batch_size {
        problems.push(
            "minibatch_size",
            format!("must be between 1 and batch_size ({}), got {}", c.batch_size, c.minibatch_size),
        );
    }
}

stage_settings! {
    /// PPO's settings. Defaults follow InstructGPT (Ouyang et al. 2022, appendix C.4)
    /// where it states them, else lm-human-preferences (Ziegler et al. 2019); the batch is
    /// smaller so that a demo-sized run takes minutes, and the learning rate suits small
    /// GPTs.
    pub struct PpoConfig for "ppo", cross = ppo_cross_checks {
        /// PPO iterations, each on `batch_size` fresh episodes. InstructGPT trains on
        /// 256k episodes: 500 iterations of 512.
                pub steps: i64 = 500, Range::at_least(1.0), essential;
        /// Prompts (episodes) per rollout. InstructGPT: 512; plumb: 64.
                pub batch_size: usize = 64, Range::at_least(1.0), essential;
        /// Episodes per gradient step. InstructGPT: 64, an eighth of its batch; plumb
        /// keeps the eight updates per rollout with 8.
        pub minibatch_size: usize = 8, Range::at_least(1.0);
        /// Passes over each rollout batch. InstructGPT: 1; lm-human-preferences: 4.
        pub ppo_epochs: usize = 1, Range::at_least(1.0);
        /// The policy's peak learning rate (InstructGPT: 9e-6 for its 1.3B policy);
        /// empty: a rule of the model's width.
                pub lr: Option<f64> = None, Range::POSITIVE, essential => Scale::PpoLr;
        /// The value model's peak learning rate (lm-human-preferences: the policy's);
        /// empty: a rule of the model's width, ten times the policy's for small models.
        pub value_lr: Option<f64> = None, Range::POSITIVE => Scale::PpoValueLr;
        /// Linear warmup steps. InstructGPT: 10 iterations.
        pub warmup_steps: i64 = 10, Range::at_least(0.0);
        /// Cosine decay ends at `lr · final_lr_ratio`; 1.0 keeps the rate constant.
        pub final_lr_ratio: f64 = 1.0, Range::UNIT;
        /// Global gradient-norm clip, per model.
        pub grad_clip: f64 = 1.0, Range::POSITIVE;
        /// AdamW's β1.
        pub beta1: f64 = 0.9, Range::FRACTION;
        /// AdamW's β2.
        pub beta2: f64 = 0.999, Range::FRACTION;
        /// AdamW's ε (lm-human-preferences: Adam with ε 1e-5).
        pub eps: f64 = 1e-5, Range::POSITIVE;
        /// AdamW's weight decay.
        pub weight_decay: f64 = 0.0, Range::NON_NEGATIVE;
        /// PPO's ε: the ratio π/π_old is clipped to [1 − ε, 1 + ε]. InstructGPT: 0.2.
        pub clip_ratio: f64 = 0.2, Range::POSITIVE;
        /// Values are clipped to V_old ± this in the value loss. lm-human-preferences:
        /// 0.2.
        pub value_clip: f64 = 0.2, Range::POSITIVE;
        /// Weight of the value loss. lm-human-preferences: 0.1 (with separate models and
        /// optimizers it only interacts with gradient clipping).
        pub vf_coef: f64 = 0.1, Range::NON_NEGATIVE;
        /// GAE's discount. InstructGPT: 1 (no discount).
        pub gamma: f64 = 1.0, Range::UNIT;
        /// GAE's λ. InstructGPT: 0.95.
        pub lam: f64 = 0.95, Range::UNIT;
        /// Sampling temperature of rollouts. InstructGPT: 1.
        pub temperature: f64 = 1.0, Range::POSITIVE;
        /// Longest response, EOS included.
        pub max_new_tokens: i64 = 64, Range::at_least(1.0);
        /// β, the KL reward coefficient (the initial one with `kl_target`).
        /// InstructGPT: 0.02.
                pub kl_coef: f64 = 0.02, Range::NON_NEGATIVE, essential;
        /// Stop the run when a step's mean per-sample KL to the reference exceeds this many
        /// nats: a policy that far off has usually found what the reward model over-rates
        /// (collapsed runs reached 33–248). None: no bound.
        pub max_kl: Option<f64> = Some(30.0), Range::POSITIVE;
        /// Stop the run when a step's mean reward rises above the previous step's by more
        /// than this many standard deviations of the rewards of the run's first step (the
        /// first whose rewards differ): learning climbs, a reward being hacked jumps.
        /// None: no bound.
        pub max_reward_jump: Option<f64> = Some(3.0), Range::POSITIVE;
        /// Adaptive KL control (Ziegler et al. 2019): the target of the summed
        /// per-sample KL, on by default at lm-human-preferences' 6 nats, so that β rises
        /// when the policy drifts. None: β stays fixed, as in InstructGPT.
        pub kl_target: Option<f64> = Some(6.0), Range::POSITIVE;
        /// The adaptive controller's horizon in episodes. lm-human-preferences: 10000.
        pub kl_horizon: f64 = 10000.0, Range::POSITIVE;
        /// Added to the score of a sample that did not end with EOS.
        /// lm-human-preferences gives such samples −1.
        pub missing_eos_penalty: f64 = -1.0, Range::ANY;
        /// Clip the reward model's score to ±c (none: no clipping).
        pub reward_clip: Option<f64> = None, Range::POSITIVE;
        /// Whiten the per-token rewards (variance only, the mean kept) before GAE.
        pub whiten_rewards: bool = false, Range::ANY;
        /// γ_ptx, the weight of the pretraining loss mixed into the policy loss
        /// (PPO-ptx). InstructGPT's PPO-ptx models: 27.8; 0 (the default): plain PPO.
        pub ptx_coef: f64 = 0.0, Range::NON_NEGATIVE;
        /// Pretraining windows per minibatch for PPO-ptx.
        pub ptx_batch_size: usize = 8, Range::at_least(1.0);
        /// Tokens per pretraining window (none: the policy's n_ctx).
        pub ptx_seq_len: Option<i64> = None, Range::at_least(1.0);
        /// Seed of prompt order, sampling, minibatch order and pretraining windows.
        pub seed: u64 = 0, Range::NON_NEGATIVE;
        /// Write a checkpoint every N steps (0: only the final policy).
        pub checkpoint_every: i64 = 50, Range::at_least(0.0);
        /// Sample the held-out prompts every N steps and at the end, scoring each
        /// sample by the reward (`heldout/reward`), its KL to the reference
        /// (`heldout/kl`) and, on the demo world's tasks, the oracle (`heldout/gold`):
        /// the over-optimisation curve. 0: never.
        pub eval_every: i64 = 10, Range::at_least(0.0);
        /// Prompts held out of training for that evaluation, chosen by `seed`; at most
        /// a quarter of the distinct prompts, and none when `eval_every` is 0. 0: none,
        /// and no evaluation.
        pub heldout_prompts: usize = 16, Range::at_least(0.0);
        /// Which policy the run registers: the last step's, or the evaluated one with
        /// the highest held-out reward-model score or gold (oracle) score: early
        /// stopping against over-optimisation.
        pub select_by: Selection = Selection::Last, Range::ANY;
    }
}

/// DPO's loss on a pair's log-ratio difference h = (log π(y_w) − log π_ref(y_w)) −
/// (log π(y_l) − log π_ref(y_l)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DpoLoss {
    /// −log σ(β·h), Rafailov et al. 2023, eq. 7; with label smoothing ε, conservative
    /// DPO: −(1 − ε)·log σ(β·h) − ε·log σ(−β·h).
    #[default]
    Sigmoid,
    /// (h − 1/(2β))², IPO (Azar et al. 2023, eq. 17): it regresses h towards a margin
    /// instead of pushing it to infinity, so it does not overfit deterministic
    /// preferences.
    Ipo,
}

impl SettingChoice for DpoLoss {
    const NAMES: &'static [&'static str] = &["sigmoid", "ipo"];
}

impl std::str::FromStr for DpoLoss {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "sigmoid" => Ok(DpoLoss::Sigmoid),
            "ipo" => Ok(DpoLoss::Ipo),
            other => Err(format!("unknown loss `{other}` (expected sigmoid or ipo)")),
        }
    }
}

/// Which evaluated policy an RL run registers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Selection {
    /// The policy of the run's last step.
    #[default]
    Last,
    /// The evaluated policy with the highest mean reward-model score on the held-out
    /// prompts.
    Reward,
    /// The evaluated policy with the highest mean gold score on the held-out prompts
    /// (the demo world's oracle): refused when the prompts have no gold.
    Gold,
}

impl SettingChoice for Selection {
    const NAMES: &'static [&'static str] = &["last", "reward", "gold"];
}

impl Selection {
    /// Its name in a config (`select_by = "gold"`).
    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

impl std::str::FromStr for Selection {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "last" => Ok(Selection::Last),
            "reward" => Ok(Selection::Reward),
            "gold" => Ok(Selection::Gold),
            other => Err(format!("unknown selection `{other}` (expected last, reward or gold)")),
        }
    }
}

/// [0, 0.5): a label-smoothing ε of 0.5 would make every preference a coin flip.
const LABEL_SMOOTHING: Range = Range { low: Bound::Inclusive(0.0), high: Bound::Exclusive(0.5) };

stage_settings! {
    /// DPO's settings. Defaults follow Rafailov et al. 2023 (§6 and appendix B: β 0.1,
    /// batch 64, warmup 150 steps) where they apply to small GPTs; the learning rate is
    /// one measured on the tiny preset (the paper's 1e-6 is for 2.8B–6B models).
    pub struct DpoConfig for "dpo", cross = no_cross_checks {
        /// Passes over the rankings.
                pub epochs: i64 = 1, Range::at_least(1.0), essential;
        /// Optimizer steps in all; overrides `epochs` when set.
                pub steps: Option<i64> = None, Range::at_least(1.0), essential;
        /// Peak learning rate (the paper: 1e-6 for 2.8B–6B models); empty: a rule of the
        /// model's width. On the demo world's tiny model 3e-5 for 60 steps of 16 rankings
        /// lifts the oracle score; 1e-4 over as many steps overshoots and lowers it.
                pub lr: Option<f64> = None, Range::POSITIVE, essential => Scale::DpoLr;
        /// Cosine decay ends at `lr · final_lr_ratio`; 1.0 keeps the rate constant after
        /// the warmup, as the paper does.
        pub final_lr_ratio: f64 = 1.0, Range::UNIT;
        /// Linear warmup steps (the paper: 150).
        pub warmup_steps: i64 = 10, Range::at_least(0.0);
        /// Rankings per micro-batch, each with all K of its samples (the paper: 64 pairs).
                pub batch_size: usize = 16, Range::at_least(1.0), essential;
        /// Micro-batches per optimizer step.
        pub grad_accum: usize = 1, Range::at_least(1.0);
        /// β, the strength of the KL constraint to the reference (the SFT model): the
        /// implicit reward is β·(log π − log π_ref). The paper: 0.1 (0.5 for summaries).
                pub beta: f64 = 0.1, Range::POSITIVE, essential;
        /// sigmoid: DPO's loss (with `label_smoothing`, conservative DPO); ipo: IPO's
        /// squared loss (Azar et al. 2023).
                pub loss: DpoLoss = DpoLoss::Sigmoid, Range::ANY, essential;
        /// ε, the assumed share of flipped preference labels (conservative DPO, Mitchell
        /// 2023); 0 is plain DPO. Only the sigmoid loss uses it.
        pub label_smoothing: f64 = 0.0, LABEL_SMOOTHING;
        /// Residual dropout while training. TRL's DPOTrainer disables dropout, so that
        /// the policy's log-probs are comparable with the reference's.
        pub dropout: f64 = 0.0, Range::FRACTION;
        /// AdamW's weight decay.
        pub weight_decay: f64 = 0.0, Range::NON_NEGATIVE;
        /// Global gradient-norm clip.
        pub grad_clip: f64 = 1.0, Range::POSITIVE;
        /// AdamW's β1.
        pub beta1: f64 = 0.9, Range::FRACTION;
        /// AdamW's β2.
        pub beta2: f64 = 0.999, Range::FRACTION;
        /// AdamW's ε.
        pub eps: f64 = 1e-8, Range::POSITIVE;
        /// Share of prompts held out for validation when no validation rankings are
        /// given. Rankings of one prompt stay on one side of the split.
        pub val_fraction: f64 = 0.05, Range::FRACTION;
        /// Validate every N steps (and at the end).
        pub eval_every: i64 = 100, Range::at_least(0.0);
        /// Write a checkpoint every N steps (0: only the final policy).
        pub checkpoint_every: i64 = 500, Range::at_least(0.0);
        /// Seeds the batch order (and dropout): the same seed gives the same policy.
        pub seed: u64 = 0, Range::NON_NEGATIVE;
    }
}

// Sampling trains nothing, so it takes no stage's shared settings (`@define`): the
// precision it samples in is the model's (`plumb generate --precision`).
stage_settings! {
    @define
    /// How samples are drawn: for ranking batches (`sample` runs), evaluations and the
    /// `plumb generate` command.
    pub struct SamplingConfig for "sampling", cross = no_cross_checks {
        /// Most tokens generated per prompt (EOS included).
                pub max_new_tokens: i64 = 64, Range::at_least(1.0), essential;
        /// Softmax temperature; 0 picks the most likely token. InstructGPT samples at 1.
                pub temperature: f64 = 1.0, Range::NON_NEGATIVE, essential;
        /// Keep only the k most likely tokens (none: all).
        pub top_k: Option<i64> = None, Range::at_least(1.0);
        /// Keep the smallest set of tokens whose probability reaches p (none: all).
        pub top_p: Option<f64> = None, Range::OPEN_UNIT;
        /// Seed of the sampling generator: the same seed and prompt order give the same
        /// samples. Prompt i draws from its own stream, so it does not depend on others.
        pub seed: u64 = 0, Range::NON_NEGATIVE;
        /// Stop a sample at the first EOS.
        pub stop_at_eos: bool = true, Range::ANY;
    }
}

/// Settings of RLOO and GRPO that relate to each other: a minibatch is some of a step's
/// samples.
fn samples_per_step_checks(
    batch_size: usize,
    per_prompt: usize,
    minibatch_size: usize,
    problems: &mut Problems,
) {
    let samples = batch_size * per_prompt;
    if samples >= 1 && minibatch_size > samples {
        problems.push(
            "minibatch_size",
            format!("must be between 1 and the samples per step ({samples}), got {minibatch_size}"),
        );
    }
}

fn rloo_cross_checks(c: &RlooConfig, problems: &mut Problems) {
    samples_per_step_checks(c.batch_size, c.k, c.minibatch_size, problems);
}

stage_settings! {
    /// RLOO's settings (Ahmadian et al. 2024, "Back to Basics"): REINFORCE on whole
    /// responses, each sample's baseline the mean reward of the other k − 1 samples of
    /// its prompt, and the KL to the reference as a penalty in the reward, as TRL's
    /// RLOOTrainer has it. Defaults are measured to learn on the demo world's tiny models.
    pub struct RlooConfig for "rloo", cross = rloo_cross_checks {
        /// RL iterations, each on `batch_size` prompts × k fresh samples.
                pub steps: i64 = 100, Range::at_least(1.0), essential;
        /// Prompts per step.
                pub batch_size: usize = 16, Range::at_least(1.0), essential;
        /// k, samples per prompt. Ahmadian et al.: 2 or 4.
                pub k: usize = 4, Range::at_least(2.0), essential;
        /// Samples per gradient step.
        pub minibatch_size: usize = 32, Range::at_least(1.0);
        /// Passes over each rollout (TRL: 1, plain REINFORCE; more reuse each rollout
        /// under the clipped ratio).
        pub update_epochs: usize = 1, Range::at_least(1.0);
        /// The policy's peak learning rate; empty: a rule of the model's width.
                pub lr: Option<f64> = None, Range::POSITIVE, essential => Scale::RlooLr;
        /// Linear warmup steps.
        pub warmup_steps: i64 = 0, Range::at_least(0.0);
        /// Cosine decay ends at `lr · final_lr_ratio`; 1.0 keeps the rate constant.
        pub final_lr_ratio: f64 = 1.0, Range::UNIT;
        /// Global gradient-norm clip.
        pub grad_clip: f64 = 1.0, Range::POSITIVE;
        /// AdamW's β1.
        pub beta1: f64 = 0.9, Range::FRACTION;
        /// AdamW's β2.
        pub beta2: f64 = 0.999, Range::FRACTION;
        /// AdamW's ε.
        pub eps: f64 = 1e-5, Range::POSITIVE;
        /// AdamW's weight decay.
        pub weight_decay: f64 = 0.0, Range::NON_NEGATIVE;
        /// ε: each response's ratio π/π_old is clipped to [1 − ε, 1 + ε] (TRL: 0.2); it
        /// only acts from a rollout's second minibatch or epoch on.
        pub clip_ratio: f64 = 0.2, Range::POSITIVE;
        /// β, the KL penalty: each sample's reward is its score − β·Σ(log π − log
        /// π_ref). TRL: 0.05.
                pub kl_coef: f64 = 0.05, Range::NON_NEGATIVE, essential;
        /// Stop the run when a step's mean per-sample KL to the reference exceeds this many
        /// nats: a policy that far off has usually found what the reward model over-rates
        /// (collapsed runs reached 33–248). None: no bound.
        pub max_kl: Option<f64> = Some(30.0), Range::POSITIVE;
        /// Stop the run when a step's mean reward rises above the previous step's by more
        /// than this many standard deviations of the rewards of the run's first step (the
        /// first whose rewards differ): learning climbs, a reward being hacked jumps.
        /// None: no bound.
        pub max_reward_jump: Option<f64> = Some(3.0), Range::POSITIVE;
        /// Whiten the advantages over each step's samples (TRL's normalize_advantage;
        /// off in Ahmadian et al.).
        pub whiten_advantages: bool = false, Range::ANY;
        /// Sampling temperature of rollouts.
        pub temperature: f64 = 1.0, Range::POSITIVE;
        /// Longest response, EOS included.
        pub max_new_tokens: i64 = 64, Range::at_least(1.0);
        /// Added to the score of a sample that did not end with EOS.
        pub missing_eos_penalty: f64 = -1.0, Range::ANY;
        /// Clip the score to ±c (none: no clipping).
        pub reward_clip: Option<f64> = None, Range::POSITIVE;
        /// Seed of prompt order, sampling and minibatch order.
        pub seed: u64 = 0, Range::NON_NEGATIVE;
        /// Write a checkpoint every N steps (0: only the final policy).
        pub checkpoint_every: i64 = 50, Range::at_least(0.0);
        /// Sample the held-out prompts every N steps and at the end, scoring each
        /// sample by the reward (`heldout/reward`), its KL to the reference
        /// (`heldout/kl`) and, on the demo world's tasks, the oracle (`heldout/gold`):
        /// the over-optimisation curve. 0: never.
        pub eval_every: i64 = 10, Range::at_least(0.0);
        /// Prompts held out of training for that evaluation, chosen by `seed`; at most
        /// a quarter of the distinct prompts, and none when `eval_every` is 0. 0: none,
        /// and no evaluation.
        pub heldout_prompts: usize = 16, Range::at_least(0.0);
        /// Which policy the run registers: the last step's, or the evaluated one with
        /// the highest held-out reward-model score or gold (oracle) score: early
        /// stopping against over-optimisation.
        pub select_by: Selection = Selection::Last, Range::ANY;
    }
}

fn grpo_cross_checks(c: &GrpoConfig, problems: &mut Problems) {
    samples_per_step_checks(c.batch_size, c.group_size, c.minibatch_size, problems);
}

stage_settings! {
    /// GRPO's settings (Shao et al. 2024, DeepSeekMath §4.1): G samples per prompt, each
    /// sample's advantage its reward normalised within its group, PPO's clipped ratio
    /// per token, and the KL to the reference in the loss (the k3 estimator), without a
    /// value model. Two later variants are settings: Dr. GRPO (`scale_rewards` and
    /// `length_normalise` off) and DAPO's clip-higher (`clip_high`). Defaults are
    /// measured to learn on the demo world's tiny models.
    pub struct GrpoConfig for "grpo", cross = grpo_cross_checks {
        /// RL iterations, each on `batch_size` prompts × G fresh samples.
                pub steps: i64 = 100, Range::at_least(1.0), essential;
        /// Prompts per step.
                pub batch_size: usize = 16, Range::at_least(1.0), essential;
        /// G, samples per prompt. DeepSeekMath: 64.
                pub group_size: usize = 4, Range::at_least(2.0), essential;
        /// Samples per gradient step.
        pub minibatch_size: usize = 32, Range::at_least(1.0);
        /// μ, passes over each rollout. DeepSeekMath: 1.
        pub update_epochs: usize = 1, Range::at_least(1.0);
        /// The policy's peak learning rate (DeepSeekMath: 1e-6 at 7B); empty: a rule of
        /// the model's width, half RLOO's for small GPTs: group-normalised advantages are
        /// of unit scale however close the rewards, so a higher rate soon exploits a
        /// reward model's errors.
                pub lr: Option<f64> = None, Range::POSITIVE, essential => Scale::GrpoLr;
        /// Linear warmup steps.
        pub warmup_steps: i64 = 0, Range::at_least(0.0);
        /// Cosine decay ends at `lr · final_lr_ratio`; 1.0 keeps the rate constant.
        pub final_lr_ratio: f64 = 1.0, Range::UNIT;
        /// Global gradient-norm clip.
        pub grad_clip: f64 = 1.0, Range::POSITIVE;
        /// AdamW's β1.
        pub beta1: f64 = 0.9, Range::FRACTION;
        /// AdamW's β2.
        pub beta2: f64 = 0.999, Range::FRACTION;
        /// AdamW's ε.
        pub eps: f64 = 1e-5, Range::POSITIVE;
        /// AdamW's weight decay.
        pub weight_decay: f64 = 0.0, Range::NON_NEGATIVE;
        /// ε: the ratio π/π_old of each token is clipped to [1 − ε, 1 + ε]
        /// (DeepSeekMath: 0.2); its upper end is `clip_high` when that is set.
        pub clip_ratio: f64 = 0.2, Range::POSITIVE;
        /// ε_high, a separate upper clip: DAPO's clip-higher (Yu et al. 2025: 0.28),
        /// which lets unlikely tokens with positive advantage grow and keeps entropy up.
        /// None: GRPO's symmetric clip.
        pub clip_high: Option<f64> = None, Range::POSITIVE;
        /// β, the weight of the KL to the reference in the loss, per token with the k3
        /// estimator π_ref/π − log(π_ref/π) − 1. DeepSeekMath: 0.04; 0 drops the KL
        /// term (DAPO, Dr. GRPO).
                pub kl_coef: f64 = 0.04, Range::NON_NEGATIVE, essential;
        /// Stop the run when a step's mean per-sample KL to the reference exceeds this many
        /// nats: a policy that far off has usually found what the reward model over-rates
        /// (collapsed runs reached 33–248). None: no bound.
        pub max_kl: Option<f64> = Some(30.0), Range::POSITIVE;
        /// Stop the run when a step's mean reward rises above the previous step's by more
        /// than this many standard deviations of the rewards of the run's first step (the
        /// first whose rewards differ): learning climbs, a reward being hacked jumps.
        /// None: no bound.
        pub max_reward_jump: Option<f64> = Some(3.0), Range::POSITIVE;
        /// Divide each group's centred rewards by the group's standard deviation (GRPO).
        /// false: Dr. GRPO (Liu et al. 2025), which only centres them, so that groups
        /// with nearly equal rewards are not given large advantages.
        pub scale_rewards: bool = true, Range::ANY;
        /// Average each sample's token losses over its own length, then over samples
        /// (GRPO). false: Dr. GRPO's unnormalised length, each sample's token losses
        /// summed and divided by `max_new_tokens`, which removes the bias towards long
        /// wrong answers.
        pub length_normalise: bool = true, Range::ANY;
        /// Sampling temperature of rollouts.
        pub temperature: f64 = 1.0, Range::POSITIVE;
        /// Longest response, EOS included.
        pub max_new_tokens: i64 = 64, Range::at_least(1.0);
        /// Added to the score of a sample that did not end with EOS.
        pub missing_eos_penalty: f64 = -1.0, Range::ANY;
        /// Clip the score to ±c (none: no clipping).
        pub reward_clip: Option<f64> = None, Range::POSITIVE;
        /// Seed of prompt order, sampling and minibatch order.
        pub seed: u64 = 0, Range::NON_NEGATIVE;
        /// Write a checkpoint every N steps (0: only the final policy).
        pub checkpoint_every: i64 = 50, Range::at_least(0.0);
        /// Sample the held-out prompts every N steps and at the end, scoring each
        /// sample by the reward (`heldout/reward`), its KL to the reference
        /// (`heldout/kl`) and, on the demo world's tasks, the oracle (`heldout/gold`):
        /// the over-optimisation curve. 0: never.
        pub eval_every: i64 = 10, Range::at_least(0.0);
        /// Prompts held out of training for that evaluation, chosen by `seed`; at most
        /// a quarter of the distinct prompts, and none when `eval_every` is 0. 0: none,
        /// and no evaluation.
        pub heldout_prompts: usize = 16, Range::at_least(0.0);
        /// Which policy the run registers: the last step's, or the evaluated one with
        /// the highest held-out reward-model score or gold (oracle) score: early
        /// stopping against over-optimisation.
        pub select_by: Selection = Selection::Last, Range::ANY;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::setting::StageSettings;

    #[test]
    fn a_selections_name_is_its_config_value() {
        for s in [Selection::Last, Selection::Reward, Selection::Gold] {
            assert_eq!(serde_json::to_value(s).unwrap(), s.name());
            assert_eq!(s.name().parse::<Selection>(), Ok(s));
        }
    }

    #[test]
    fn the_defaults_are_valid() {
        PretrainConfig::default().validate().unwrap();
        SftConfig::default().validate().unwrap();
        RewardConfig::default().validate().unwrap();
        PpoConfig::default().validate().unwrap();
        DpoConfig::default().validate().unwrap();
        SamplingConfig::default().validate().unwrap();
    }

    #[test]
    fn every_problem_is_named_by_its_stage_and_setting() {
        let bad = PpoConfig { kl_coef: -1.0, batch_size: 0, lr: Some(f64::NAN), ..Default::default() };
        let problems = bad.validate().unwrap_err();
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(fields, ["ppo.batch_size", "ppo.lr", "ppo.kl_coef"]);
        assert_eq!(
            problems.to_string(),
            "ppo.batch_size: must be at least 1, got 0; ppo.lr: must be a positive number, got NaN; \
             ppo.kl_coef: must be a number >= 0, got -1"
        );
        let e = SftConfig { val_fraction: 1.5, ..Default::default() }.validate().unwrap_err();
        assert_eq!(e.to_string(), "sft.val_fraction: must be in [0, 1), got 1.5");
    }

    #[test]
    fn a_minibatch_larger_than_the_batch_is_refused() {
        let e = PpoConfig { minibatch_size: 65, ..Default::default() }.validate().unwrap_err();
        assert!(e.to_string().contains("ppo.minibatch_size: must be between 1 and batch_size (64)"), "{e}");
    }

    #[test]
    fn every_setting_has_help_and_the_struct_has_every_setting() {
        fn check<C: StageSettings>() {
            let json = serde_json::to_value(C::default()).unwrap();
            let keys: Vec<&String> = json.as_object().unwrap().keys().collect();
            assert_eq!(keys.len(), C::SETTINGS.len(), "{}", C::STAGE);
            for s in C::SETTINGS {
                assert!(!s.help.trim().is_empty(), "{}.{} has no help", C::STAGE, s.name);
                assert!(json.get(s.name).is_some(), "{}.{}", C::STAGE, s.name);
            }
        }
        check::<PretrainConfig>();
        check::<SftConfig>();
        check::<RewardConfig>();
        check::<PpoConfig>();
        check::<DpoConfig>();
        check::<SamplingConfig>();
    }

    #[test]
    fn unknown_settings_are_refused_by_name() {
        let e = serde_json::from_str::<PpoConfig>(r#"{"kl_coeff": 0.1}"#).unwrap_err().to_string();
        assert!(e.contains("kl_coeff"), "{e}");
    }
}

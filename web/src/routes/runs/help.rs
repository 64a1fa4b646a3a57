//! What each stage setting means, for the launch form: the doc comments of the trainer's
//! config structs (`trainer/src/{pretrain,sft,reward,ppo,sampling}.rs`), restated here
//! because the web crate never links the trainer. A setting missing here still shows,
//! with no help. Also the type of the settings whose default is "none" (`null`), which
//! the defaults alone cannot tell.

/// The value a setting with a `null` default takes when set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Optional {
    Integer,
    Number,
}

/// (run kinds the text is for, or `*` for any; setting; help). The first match wins, so
/// kind-specific rows come before the `*` row of the same setting.
const HELP: &[(&str, &str, &str)] = &[
    ("sft", "epochs", "Passes over the demonstrations. InstructGPT: 16."),
    ("reward", "epochs", "Passes over the rankings. InstructGPT: 1 (more overfits)."),
    ("pretrain", "epochs", "Passes over the corpus."),
    ("ppo", "steps", "PPO iterations, each on batch_size fresh episodes. InstructGPT trains on 256k episodes: 500 iterations of 512."),
    ("*", "steps", "Optimizer steps in all; overrides epochs when set (empty: none)."),
    ("sft", "lr", "Peak learning rate (InstructGPT: 9.65e-6 at 1.3B, 5.03e-6 at 175B)."),
    ("reward", "lr", "Peak learning rate. InstructGPT: 9e-6 for the 6B RM (it found the RM insensitive to the learning rate and schedule); small GPTs learn faster with more."),
    ("pretrain", "lr", "Peak learning rate. GPT-3 small: 6e-4."),
    ("ppo", "lr", "The policy's peak learning rate. InstructGPT: 9e-6 for its 1.3B policy; plumb's default suits small GPTs."),
    ("ppo", "value_lr", "The value model's peak learning rate (lm-human-preferences: the policy's)."),
    ("ppo", "final_lr_ratio", "Cosine decay ends at lr · final_lr_ratio; 1.0 keeps the rate constant."),
    ("*", "final_lr_ratio", "Cosine decay ends at lr · final_lr_ratio."),
    ("pretrain", "warmup_steps", "Linear warmup steps (capped at a tenth of the run, so short runs still decay)."),
    ("ppo", "warmup_steps", "Linear warmup steps. InstructGPT: 10 iterations."),
    ("*", "warmup_steps", "Linear warmup steps."),
    ("sft", "batch_size", "Demonstrations per micro-batch (InstructGPT: 32 at 1.3B and 6B, 8 at 175B)."),
    ("reward", "batch_size", "Prompts per micro-batch, each with all K of its samples. InstructGPT: 64 per step."),
    ("pretrain", "batch_size", "Windows per micro-batch."),
    ("ppo", "batch_size", "Prompts (episodes) per rollout. InstructGPT: 512; plumb: 64."),
    ("*", "grad_accum", "Micro-batches per optimizer step."),
    ("pretrain", "seq_len", "Tokens per window (at most the model's n_ctx; empty: n_ctx)."),
    ("sft", "dropout", "Residual dropout during SFT. InstructGPT: 0.2."),
    ("reward", "dropout", "Dropout while training the RM. The saved RM keeps it."),
    ("*", "weight_decay", "AdamW's weight decay."),
    ("ppo", "grad_clip", "Global gradient-norm clip, per model."),
    ("*", "grad_clip", "Global gradient-norm clip."),
    ("*", "beta1", "AdamW's β1."),
    ("*", "beta2", "AdamW's β2."),
    ("*", "eps", "AdamW's ε."),
    ("sft", "val_fraction", "Share of demonstrations held out for validation when no validation file is given."),
    ("reward", "val_fraction", "Share of prompts held out for validation; rankings of one prompt stay on one side of the split."),
    ("pretrain", "val_fraction", "Share of documents held out for the validation loss."),
    ("sft", "eval_every", "Validate every N steps (and at the end); the best weights by validation loss are the final model."),
    ("ppo", "eval_every", "Evaluate every N steps and at the end (0: never)."),
    ("*", "eval_every", "Validate every N steps (and at the end)."),
    ("*", "checkpoint_every", "Write a checkpoint every N steps (0: only the final model)."),
    ("reward", "seed", "Seeds the batch order (and dropout): the same seed gives the same RM."),
    ("ppo", "seed", "Seed of prompt order, sampling, minibatch order and pretraining windows."),
    ("sample", "seed", "Seed of the sampling generator: the same seed and prompt order give the same samples."),
    ("eval", "seed", "Seed of the sampling generator: the same seed and prompt order give the same samples."),
    ("*", "seed", "Random seed."),
    ("ppo", "minibatch_size", "Episodes per gradient step. InstructGPT: 64, an eighth of its batch; plumb keeps the eight updates per rollout with 8."),
    ("ppo", "ppo_epochs", "Passes over each rollout batch. InstructGPT: 1; lm-human-preferences: 4."),
    ("ppo", "clip_ratio", "PPO's ε: the ratio π/π_old is clipped to [1 − ε, 1 + ε]. InstructGPT: 0.2."),
    ("ppo", "value_clip", "Values are clipped to V_old ± this in the value loss. lm-human-preferences: 0.2."),
    ("ppo", "vf_coef", "Weight of the value loss. lm-human-preferences: 0.1."),
    ("ppo", "gamma", "GAE's discount. InstructGPT: 1 (no discount)."),
    ("ppo", "lam", "GAE's λ. InstructGPT: 0.95."),
    ("ppo", "temperature", "Sampling temperature of rollouts. InstructGPT: 1."),
    ("*", "temperature", "Softmax temperature; 0 picks the most likely token. InstructGPT samples at 1."),
    ("ppo", "max_new_tokens", "Longest response, EOS included."),
    ("*", "max_new_tokens", "Most tokens generated per prompt (EOS included)."),
    ("ppo", "kl_coef", "β, the KL reward coefficient (the initial one with kl_target). InstructGPT: 0.02."),
    ("ppo", "kl_target", "Adaptive KL control (Ziegler et al. 2019): the target of the summed per-sample KL. Empty: β stays fixed, as in InstructGPT."),
    ("ppo", "kl_horizon", "The adaptive controller's horizon in episodes. lm-human-preferences: 10000."),
    ("ppo", "missing_eos_penalty", "Added to the score of a sample that did not end with EOS. lm-human-preferences gives such samples −1."),
    ("ppo", "reward_clip", "Clip the reward model's score to ±c (empty: no clipping)."),
    ("ppo", "whiten_rewards", "Whiten the per-token rewards (variance only, the mean kept) before GAE."),
    ("ppo", "ptx_coef", "γ_ptx, the weight of the pretraining loss mixed into the policy loss (PPO-ptx). InstructGPT's PPO-ptx models: 27.8; 0: plain PPO."),
    ("ppo", "ptx_batch_size", "Pretraining windows per minibatch for PPO-ptx."),
    ("ppo", "ptx_seq_len", "Tokens per pretraining window (empty: the policy's n_ctx)."),
    ("*", "top_k", "Keep only the k most likely tokens (empty: all)."),
    ("*", "top_p", "Keep the smallest set of tokens whose probability reaches p (empty: all)."),
    ("*", "stop_at_eos", "Stop a sample at the first EOS."),
];

/// Settings whose default is "none", and what they hold when set.
const OPTIONAL: &[(&str, Optional)] = &[
    ("steps", Optional::Integer),
    ("seq_len", Optional::Integer),
    ("ptx_seq_len", Optional::Integer),
    ("top_k", Optional::Integer),
    ("kl_target", Optional::Number),
    ("reward_clip", Optional::Number),
    ("top_p", Optional::Number),
];

/// The help text of `kind`'s stage setting `field` ("" when there is none).
pub fn help(kind: &str, field: &str) -> &'static str {
    HELP.iter()
        .find(|(kinds, name, _)| *name == field && (*kinds == "*" || *kinds == kind))
        .map(|(_, _, text)| *text)
        .unwrap_or("")
}

/// What a setting whose default is `null` holds when set; `None` when unknown (then any
/// number is taken).
pub fn optional_type(field: &str) -> Option<Optional> {
    OPTIONAL.iter().find(|(name, _)| *name == field).map(|(_, t)| *t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_specific_help_comes_before_the_general_one() {
        assert!(help("ppo", "steps").starts_with("PPO iterations"));
        assert!(help("sft", "steps").starts_with("Optimizer steps"));
        assert_eq!(help("sft", "no_such_setting"), "");
    }
}

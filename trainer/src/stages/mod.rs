//! The training stages, one file each, and what they share: the LM loop (pretraining and
//! SFT), the reward model, PPO, DPO, their input files (`data`) and the run directory with
//! its optimiser, schedule and resume (`train`).

pub mod data;
pub mod dpo;
pub mod grpo;
pub mod heldout;
pub mod lm_loop;
pub mod ppo;
pub mod pretrain;
pub mod reward;
pub mod reward_program;
pub mod rloo;
pub mod rollout;
pub mod sft;
pub mod train;

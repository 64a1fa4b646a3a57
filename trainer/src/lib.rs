//! plumb's trainer, in three parts:
//! - `model/`: the GPT (`gpt`), its shape (`config`), tokenizers, Hugging Face GPT-2
//!   checkpoints, sampling and devices;
//! - `stages/`: the LM loop, pretraining, SFT, the reward model and PPO;
//! - `worker/`: executes runs queued in Postgres and publishes their versions.

pub mod distributed;
pub mod model;
pub mod stages;
pub mod worker;

// The parts by their short names, as the stages, the worker and the CLI call them.
pub use model::{checkpoint, config, device, gpt, memory, sampling, tokenizer};
pub use stages::{
    data, dpo, grpo, heldout, lm_loop, ppo, pretrain, reward, reward_program, rloo, rollout, sft, train,
};
/// The demo world lives in its own crate, without tch.
pub use world;

pub use checkpoint::{CheckpointError, LanguageModel};
pub use config::{default_sparse, Attention, AttentionLayers, GptConfig, Preset};
pub use device::{DeviceChoice, Precision};
pub use gpt::{Gpt, KvCache, LmHead, ScalarHead};
pub use sampling::{generate, generate_streams, score, Generation, SamplingConfig, SamplingError};
pub use tokenizer::{Tokenizer, TokenizerKind};

/// The tensor library, for callers that set seeds or devices.
pub use tch;

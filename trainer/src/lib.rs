//! plumb's trainer: the GPT, its tokenizers and checkpoints, and sampling.
//!
//! The model is GPT-2 (`gpt`), configured by `config`; weights live in Hugging Face
//! GPT-2 checkpoints (`checkpoint`); `sampling` generates and scores text.

pub mod checkpoint;
pub mod config;
pub mod data;
pub mod defaults;
pub mod device;
pub mod gpt;
pub mod lm_loop;
pub mod ppo;
pub mod pretrain;
pub mod reward;
pub mod sampling;
pub mod sft;
pub mod tokenizer;
pub mod train;
pub mod worker;
pub mod world;

pub use checkpoint::{CheckpointError, LanguageModel};
pub use config::{Attention, GptConfig, Preset};
pub use device::{DeviceChoice, Precision};
pub use gpt::{Gpt, KvCache, LmHead, ScalarHead};
pub use sampling::{generate, generate_streams, score, Generation, SamplingConfig, SamplingError};
pub use tokenizer::{Tokenizer, TokenizerKind};

/// The tensor library, for callers that set seeds or devices.
pub use tch;

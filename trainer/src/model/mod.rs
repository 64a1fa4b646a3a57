//! The model: the GPT and its shape, tokenizers, checkpoints, sampling and devices.

pub mod checkpoint;
pub mod config;
pub mod device;
pub mod gpt;
pub mod sampling;
pub mod tokenizer;

//! The memory a training run needs, estimated before it starts, and the check that it
//! fits the device: weights, gradients and AdamW's moments (all f32: the master weights),
//! the bf16 copies mixed precision keeps for the backward pass, and the activations of
//! one micro-batch.
//!
//! Activations are counted tensor by tensor as the forward pass saves them for the
//! backward pass (Korthikanti et al. 2022, "Reducing Activation Recomputation in Large
//! Transformer Models", §4, count the same way: 34 bytes per token and unit of width for
//! a 16-bit block; plumb keeps the residual stream and its layer-norm inputs in f32):
//!
//! | per token, per block | bytes |
//! | --- | --- |
//! | layer-norm inputs (f32) | 2 · 4C |
//! | inputs of c_attn, c_proj, c_fc, mlp.c_proj; q, k, v; attention output; GELU input | 15C · a |
//! | dropout masks (with dropout) | 2C |
//! | attention probabilities (CPU: SDPA's math kernel keeps them; CUDA's fused kernels do not) | 2 · H · T · a |
//!
//! where a is 2 bytes in bf16 and 4 in f32. The LM head adds 4V + 4V + aV per token
//! (the f32 log-softmax output kept for backward, its gradient and the logits). With
//! activation checkpointing a block keeps only its f32 input (4C per token) and one
//! block's activations exist at a time, while it is recomputed.

use tch::{Device, Kind};

use crate::checkpoint::LanguageModel;
use crate::config::GptConfig;

/// The bytes of each part of a training run's memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryEstimate {
    pub parameters: i64,
    /// f32 master weights.
    pub weights: u64,
    /// f32 gradients.
    pub gradients: u64,
    /// AdamW's two f32 moments.
    pub optimizer: u64,
    /// The bf16 copies of the weights that mixed precision's forward pass keeps for the
    /// backward pass (none in f32).
    pub compute_copies: u64,
    pub activations: u64,
}

/// What a training step holds at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Workload {
    /// Sequences per micro-batch.
    pub batch: i64,
    /// Tokens per sequence.
    pub seq_len: i64,
    /// The compute kind (bf16 or f32).
    pub kind: Kind,
    pub checkpointing: bool,
    /// Whether attention probabilities are materialised (SDPA's math kernel, the CPU's).
    pub attention_matrix: bool,
}

impl Workload {
    /// A micro-batch of `batch` sequences of `seq_len` tokens computed in `kind` on
    /// `device`.
    pub fn on(device: Device, kind: Kind, batch: i64, seq_len: i64, checkpointing: bool) -> Workload {
        Workload { batch, seq_len, kind, checkpointing, attention_matrix: !device.is_cuda() }
    }
}

/// GPT-2's parameter count: embeddings V·C + n_ctx·C, per block 12C² + 13C (four weight
/// matrices of 3C², C², 4C², 4C², their biases, two layer norms), and the final norm.
pub fn parameter_count(cfg: &GptConfig) -> i64 {
    let c = cfg.n_embd;
    cfg.vocab_size * c + cfg.n_ctx * c + cfg.n_layer * (12 * c * c + 13 * c) + 2 * c
}

impl MemoryEstimate {
    pub fn of(cfg: &GptConfig, w: &Workload) -> MemoryEstimate {
        let n = parameter_count(cfg);
        let a = if w.kind == Kind::BFloat16 { 2 } else { 4 };
        let c = cfg.n_embd;
        let tokens = w.batch * w.seq_len;
        let dropout_masks = if cfg.dropout > 0.0 { 2 * c } else { 0 };
        let attention = if w.attention_matrix { 2 * cfg.n_head * w.seq_len * a } else { 0 };
        let block = 8 * c + 15 * c * a + dropout_masks + attention;
        let head = (8 + a) * cfg.vocab_size;
        let per_token =
            if w.checkpointing { cfg.n_layer * 4 * c + block + head } else { cfg.n_layer * block + head };
        // The boolean attention mask of padded batches, one for all blocks.
        let mask = w.batch * w.seq_len * w.seq_len;
        MemoryEstimate {
            parameters: n,
            weights: 4 * n as u64,
            gradients: 4 * n as u64,
            optimizer: 8 * n as u64,
            compute_copies: if a == 2 { 2 * n as u64 } else { 0 },
            activations: (tokens * per_token + mask) as u64,
        }
    }

    pub fn total(&self) -> u64 {
        self.weights + self.gradients + self.optimizer + self.compute_copies + self.activations
    }

    /// One line for the run's log: the total and its parts, in GiB.
    pub fn describe(&self) -> String {
        let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
        format!(
            "{:.2} GiB for {:.0}M parameters (weights {:.2}, gradients {:.2}, AdamW {:.2}, bf16 copies {:.2}, \
             activations {:.2})",
            gib(self.total()),
            self.parameters as f64 / 1e6,
            gib(self.weights),
            gib(self.gradients),
            gib(self.optimizer),
            gib(self.compute_copies),
            gib(self.activations)
        )
    }

    /// An error naming both sizes when the run will not fit what `device` has free: on
    /// CUDA, the GPU's free memory as `nvidia-smi` reports it (the check is skipped where
    /// it cannot be read); on the CPU, the kernel's `MemAvailable` (what a process can
    /// allocate without swapping).
    pub fn check_fits(&self, device: Device) -> Result<(), String> {
        let Some((free, what)) = free_memory(device) else { return Ok(()) };
        if self.total() <= free {
            return Ok(());
        }
        let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
        Err(format!(
            "this run needs about {:.2} GiB but {what} has {:.2} GiB free ({}); try activation checkpointing \
             (checkpoint_activations), bf16 precision, a smaller batch_size with more grad_accum, or a smaller model",
            gib(self.total()),
            gib(free),
            self.describe()
        ))
    }
}

/// Prints the memory a `stage` training `model` on micro-batches of `batch` sequences of
/// up to `seq_len` tokens needs, and refuses it when it will not fit the model's device.
pub fn plan(stage: &str, model: &LanguageModel, batch: i64, seq_len: i64) -> Result<MemoryEstimate, String> {
    let device = model.device();
    let workload = Workload::on(device, model.kind(), batch, seq_len, model.gpt.checkpointing());
    let estimate = MemoryEstimate::of(&model.config, &workload);
    eprintln!("{stage}: memory estimate: {}", estimate.describe());
    estimate.check_fits(device)?;
    Ok(estimate)
}

/// Free bytes on `device` and its name, when they can be read.
fn free_memory(device: Device) -> Option<(u64, String)> {
    match device {
        Device::Cuda(index) => {
            let out = std::process::Command::new("nvidia-smi")
                .args(["--query-gpu=memory.free", "--format=csv,noheader,nounits", &format!("--id={index}")])
                .output()
                .ok()?;
            let mib: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().ok()?;
            Some((mib << 20, format!("cuda:{index}")))
        }
        _ => {
            let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
            let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
            let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some((kib << 10, "this machine".to_owned()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gpt2_no_dropout() -> GptConfig {
        GptConfig { dropout: 0.0, ..GptConfig::gpt2() }
    }

    #[test]
    fn gpt2_small_has_124m_parameters() {
        // 50257·768 + 1024·768 + 12·(12·768² + 13·768) + 2·768
        assert_eq!(parameter_count(&GptConfig::gpt2()), 124_439_808);
    }

    #[test]
    fn the_larger_presets_have_gpt2s_sizes() {
        let m = |p| parameter_count(&GptConfig::preset(p, crate::tokenizer::GPT2_VOCAB_SIZE)) as f64 / 1e6;
        assert!((m(crate::config::Preset::Gpt2Medium) - 354.8).abs() < 0.1);
        assert!((m(crate::config::Preset::Gpt2Large) - 774.0).abs() < 0.1);
        assert!((m(crate::config::Preset::Gpt2Xl) - 1557.6).abs() < 0.1);
    }

    /// gpt2 at 8 × 1024 tokens in bf16 on CUDA, by hand: weights, gradients and AdamW
    /// 16 bytes per parameter, bf16 copies 2; per token per block 8·768 + 15·768·2 =
    /// 29184 bytes, the head (8 + 2)·50257 = 502570, the mask 8·1024².
    #[test]
    fn the_gpt2_estimate_matches_the_hand_count() {
        let w = Workload::on(Device::Cuda(0), Kind::BFloat16, 8, 1024, false);
        let e = MemoryEstimate::of(&gpt2_no_dropout(), &w);
        let n = 124_439_808u64;
        assert_eq!((e.weights, e.gradients, e.optimizer, e.compute_copies), (4 * n, 4 * n, 8 * n, 2 * n));
        let tokens = 8 * 1024u64;
        assert_eq!(e.activations, tokens * (12 * 29184 + 502_570) + 8 * 1024 * 1024);
        // 2.09 GiB of weights and optimizer, 6.6 GiB of activations.
        assert_eq!(e.total(), 18 * n + tokens * (12 * 29184 + 502_570) + 8 * 1024 * 1024);
    }

    #[test]
    fn checkpointing_keeps_one_block_and_the_block_inputs() {
        let plain = MemoryEstimate::of(
            &gpt2_no_dropout(),
            &Workload::on(Device::Cuda(0), Kind::BFloat16, 8, 1024, false),
        );
        let ckpt = MemoryEstimate::of(
            &gpt2_no_dropout(),
            &Workload::on(Device::Cuda(0), Kind::BFloat16, 8, 1024, true),
        );
        let tokens = 8 * 1024u64;
        assert_eq!(ckpt.activations, tokens * (12 * 4 * 768 + 29184 + 502_570) + 8 * 1024 * 1024);
        // The blocks' share falls from 12·29184 to 12·4·768 + 29184 bytes a token; the LM
        // head's 502570, which checkpointing leaves alone, then dominates.
        assert!(ckpt.activations < plain.activations);
        assert_eq!(ckpt.weights, plain.weights);
    }

    #[test]
    fn f32_on_the_cpu_counts_four_byte_activations_and_the_attention_matrix() {
        let w = Workload::on(Device::Cpu, Kind::Float, 2, 128, false);
        let e = MemoryEstimate::of(&gpt2_no_dropout(), &w);
        // per block: 8·768 + 15·768·4 + 2·12·128·4; head: 12·50257.
        let block = 8 * 768 + 15 * 768 * 4 + 2 * 12 * 128 * 4;
        assert_eq!(e.activations, 256 * (12 * block + 12 * 50257) + 2 * 128 * 128);
        assert_eq!(e.compute_copies, 0);
    }

    #[test]
    fn a_run_larger_than_the_machine_is_refused_naming_both_sizes() {
        let w = Workload::on(Device::Cpu, Kind::Float, 1 << 20, 1024, false);
        let err = MemoryEstimate::of(&GptConfig::gpt2(), &w).check_fits(Device::Cpu).unwrap_err();
        assert!(err.starts_with("this run needs about "), "{err}");
        assert!(err.contains("GiB but this machine has"), "{err}");
        assert!(err.contains("checkpoint_activations"), "{err}");
    }
}

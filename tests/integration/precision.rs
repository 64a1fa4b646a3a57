//! Mixed precision, activation checkpointing, memory estimates and devices, on the CPU
//! (libtorch has bf16 CPU kernels); the CUDA checks skip with a printed reason where no
//! GPU is visible and assert in full where there is one.

use std::path::Path;

use trainer::data::Demonstration;
use trainer::memory::{MemoryEstimate, Workload};
use trainer::tch::{self, Device, Kind, Tensor};
use trainer::train::RunDir;
use trainer::{sft, GptConfig, LanguageModel, Precision, Preset, TokenizerKind};

use crate::helpers::*;

/// A tiny byte-level GPT (2 blocks, 64 wide) drawn from `seed`, with dropout `dropout`.
fn tiny(seed: i64, dropout: f64, device: Device) -> LanguageModel {
    tch::manual_seed(seed);
    let mut cfg = GptConfig::tiny(trainer::Tokenizer::new(TokenizerKind::Bytes).vocab_size());
    cfg.n_layer = 2;
    cfg.n_embd = 64;
    cfg.n_ctx = 64;
    cfg.dropout = dropout;
    LanguageModel::new(cfg, TokenizerKind::Bytes, device).unwrap()
}

fn ids(seed: i64, batch: i64, len: i64) -> Tensor {
    tch::manual_seed(seed);
    Tensor::randint(256, [batch, len], (Kind::Int64, Device::Cpu))
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a.to_device(Device::Cpu) - b.to_device(Device::Cpu)).abs().max().double_value(&[])
}

/// A model with some structure in its weights (a few SFT steps), so that log-probs
/// spread out as a trained model's do and a bf16 error has something to disturb.
fn trained_tiny(dir: &Path) -> LanguageModel {
    let (model, _) = train_sft(tiny(0, 0.0, Device::Cpu), Precision::F32, 30, &dir.join("trained"));
    model
}

/// "abc>" → "ABC", as the trainer's own SFT tests teach it.
fn uppercase_demos(n: usize) -> Vec<Demonstration> {
    let letters = b"abcdefgh";
    (0..n)
        .map(|i| {
            let word: String =
                (0..2 + i % 3).map(|j| letters[(i * 7 + j * 3 + i / 5) % letters.len()] as char).collect();
            Demonstration::new(format!("{word}>"), word.to_uppercase())
        })
        .collect()
}

/// `steps` SFT steps in `precision`; the model and the logged training losses.
fn train_sft(
    model: LanguageModel,
    precision: Precision,
    steps: i64,
    out: &Path,
) -> (LanguageModel, Vec<f64>) {
    let cfg = sft::SftConfig {
        steps: Some(steps),
        lr: Some(3e-3),
        batch_size: 16,
        dropout: Some(0.0),
        eval_every: 0,
        checkpoint_every: steps,
        warmup_steps: 5,
        val_fraction: 0.0,
        precision,
        ..Default::default()
    };
    let mut run = RunDir::open(out, false).unwrap();
    let (model, _) = sft::train(&cfg, model, &uppercase_demos(128), &[], &mut run).unwrap();
    let losses = std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["loss/sft"].as_f64().unwrap())
        .collect();
    (model, losses)
}

/// bf16 keeps 8 significant bits, a relative rounding error of at most 2⁻⁹ ≈ 0.2% per
/// operand; the products accumulate in f32, so over two blocks and the LM head the
/// log-probs move by a few hundredths at most. 0.05 nats is a tenth of the distance
/// between a token at p = 0.5 and one at p = 0.3.
const BF16_LOGPROB_TOLERANCE: f64 = 0.05;

#[test]
fn bf16_log_probs_are_close_to_f32_ones_on_the_same_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = trained_tiny(dir.path());
    let ids = ids(5, 4, 48);
    let _guard = tch::no_grad_guard();
    let f32_lp = model.token_logprobs(&ids, None, false);
    model.compute_in(Kind::BFloat16);
    let mixed = model.token_logprobs(&ids, None, false);
    model.set_kind(Kind::BFloat16);
    let frozen = model.token_logprobs(&ids, None, false);
    let (mixed_err, frozen_err) = (max_abs_diff(&f32_lp, &mixed), max_abs_diff(&f32_lp, &frozen));
    eprintln!(
        "max |Δ log p| vs f32: mixed bf16 {mixed_err:.4}, bf16 weights {frozen_err:.4} (log-probs down to {:.2})",
        f32_lp.min().double_value(&[])
    );
    assert_eq!(mixed.kind(), Kind::Float, "log-probs are computed in f32");
    assert!(mixed_err > 0.0, "bf16 changed nothing: was it applied?");
    assert!(mixed_err < BF16_LOGPROB_TOLERANCE, "mixed bf16 log-probs differ by {mixed_err}");
    assert!(frozen_err < 2.0 * BF16_LOGPROB_TOLERANCE, "bf16-weight log-probs differ by {frozen_err}");
}

/// Both curves fall together: the mixed-precision loss stays within 5% (and 0.05) of the
/// f32 loss at every step, and both lose more than two thirds of their initial value.
#[test]
fn mixed_precision_sft_follows_the_f32_loss_curve_and_keeps_f32_master_weights() {
    let dir = tempfile::tempdir().unwrap();
    let steps = 40;
    let started = std::time::Instant::now();
    let (_, f32_losses) =
        train_sft(tiny(1, 0.0, Device::Cpu), Precision::F32, steps, &dir.path().join("f32"));
    let f32_seconds = started.elapsed().as_secs_f64();
    let started = std::time::Instant::now();
    let (model, bf16_losses) =
        train_sft(tiny(1, 0.0, Device::Cpu), Precision::Bf16, steps, &dir.path().join("bf16"));
    let bf16_seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "CPU, {steps} steps: f32 {:.1} ms/step, bf16 {:.1} ms/step; loss f32 {:.3} → {:.3}, bf16 {:.3} → {:.3}",
        1e3 * f32_seconds / steps as f64,
        1e3 * bf16_seconds / steps as f64,
        f32_losses[0],
        f32_losses[f32_losses.len() - 1],
        bf16_losses[0],
        bf16_losses[bf16_losses.len() - 1]
    );
    assert_eq!(f32_losses.len(), bf16_losses.len());
    for (step, (a, b)) in f32_losses.iter().zip(&bf16_losses).enumerate() {
        assert!((a - b).abs() <= 0.05f64.max(0.05 * a), "step {step}: f32 loss {a}, bf16 loss {b}");
    }
    for losses in [&f32_losses, &bf16_losses] {
        assert!(losses[losses.len() - 1] < losses[0] / 3.0, "the loss did not fall: {losses:?}");
    }

    // The master weights, and the AdamW moments in the checkpoint, stay f32.
    assert_eq!(model.kind(), Kind::BFloat16);
    for (name, weight) in model.vs.variables() {
        assert_eq!(weight.kind(), Kind::Float, "{name}");
    }
    let checkpoint = dir.path().join("bf16/checkpoints").join(format!("step-{steps:08}"));
    let moments = Tensor::read_safetensors(checkpoint.join("optimizer.safetensors")).unwrap();
    assert!(moments.len() > 2);
    for (name, moment) in moments.iter().filter(|(name, _)| name.starts_with("exp_avg")) {
        assert_eq!(moment.kind(), Kind::Float, "{name}");
    }
}

/// Gradients of every weight after one backward pass, by name.
fn gradients(model: &LanguageModel, ids: &Tensor) -> Vec<(String, Tensor)> {
    let loss = -model.token_logprobs(ids, None, true).mean(Kind::Float);
    model.backward(&loss);
    let mut grads: Vec<(String, Tensor)> =
        model.vs.variables().into_iter().map(|(name, w)| (name, w.grad().copy())).collect();
    grads.sort_by(|a, b| a.0.cmp(&b.0));
    grads
}

#[test]
fn checkpointed_and_plain_training_give_the_same_gradients() {
    let plain = tiny(2, 0.0, Device::Cpu);
    let mut checkpointed = plain.try_clone().unwrap();
    checkpointed.set_checkpointing(true);
    let ids = ids(3, 3, 40);
    let expected = gradients(&plain, &ids);
    let found = gradients(&checkpointed, &ids);
    assert_eq!(expected.len(), found.len());
    for ((name, a), (_, b)) in expected.iter().zip(&found) {
        assert!(b.defined(), "{name} got no gradient");
        let diff = max_abs_diff(a, b);
        assert!(diff < 1e-5, "{name}: gradients differ by {diff}");
    }
}

/// With dropout, a block's recomputation draws the masks its forward pass drew (from a
/// seed the forward pass takes from the run's generator): two checkpointed passes from
/// the same seed give the same gradients.
#[test]
fn a_checkpointed_block_recomputes_the_dropout_masks_of_its_forward_pass() {
    let model = tiny(4, 0.2, Device::Cpu);
    let mut checkpointed = model.try_clone().unwrap();
    checkpointed.set_checkpointing(true);
    let ids = ids(6, 2, 32);
    tch::manual_seed(9);
    let first = gradients(&checkpointed, &ids);
    for (_, w) in checkpointed.vs.variables() {
        let _ = w.grad().zero_();
    }
    tch::manual_seed(9);
    let second = gradients(&checkpointed, &ids);
    for ((name, a), (_, b)) in first.iter().zip(&second) {
        assert_eq!(max_abs_diff(a, b), 0.0, "{name}");
    }
    for (name, g) in &first {
        assert_eq!(g.isfinite().all().int64_value(&[]), 1, "{name}");
    }
}

#[test]
fn the_memory_estimate_shrinks_with_checkpointing_and_bf16() {
    let cfg = GptConfig::preset(Preset::Gpt2, trainer::tokenizer::GPT2_VOCAB_SIZE);
    let at = |kind, checkpointing| {
        MemoryEstimate::of(&cfg, &Workload::on(Device::Cuda(0), kind, 16, 1024, checkpointing)).total()
    };
    assert!(at(Kind::BFloat16, false) < at(Kind::Float, false));
    assert!(at(Kind::BFloat16, true) < at(Kind::BFloat16, false));
}

/// gpt2-xl initialises and takes one training step where the machine has the memory
/// for it (about 26 GiB in f32); elsewhere it says so and checks the refusal instead.
#[test]
fn gpt2_xl_takes_one_training_step_where_it_fits() {
    let cfg = GptConfig::preset(Preset::Gpt2Xl, trainer::tokenizer::GPT2_VOCAB_SIZE);
    let workload = Workload::on(Device::Cpu, Kind::Float, 1, 16, true);
    let estimate = MemoryEstimate::of(&cfg, &workload);
    if let Err(refusal) = estimate.check_fits(Device::Cpu) {
        eprintln!("skipped: gpt2-xl's step does not fit this machine: {refusal}");
        assert!(refusal.contains("GiB but this machine has"), "{refusal}");
        return;
    }
    tch::manual_seed(0);
    let dir = tempfile::tempdir().unwrap();
    let model = LanguageModel::new(cfg, TokenizerKind::Gpt2, Device::Cpu).unwrap();
    let cfg = sft::SftConfig {
        steps: Some(1),
        batch_size: 1,
        eval_every: 0,
        checkpoint_every: 0,
        val_fraction: 0.0,
        checkpoint_activations: true,
        ..Default::default()
    };
    let mut run = RunDir::open(dir.path(), false).unwrap();
    let demos = [Demonstration::new("Hello", " world")];
    let (_, report) = sft::train(&cfg, model, &demos, &[], &mut run).unwrap();
    assert!(report.train_loss.is_finite());
}

#[test]
fn a_gpu_the_machine_lacks_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m");
    tiny(0, 0.0, Device::Cpu).save(&model, None).unwrap();
    let out =
        plumb(&["score", "--model", model.to_str().unwrap(), "--device", "cuda:99"], &jsonl("text", &["a"]));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--device cuda:99"), "{err}");
    let out =
        plumb(&["score", "--model", model.to_str().unwrap(), "--device", "gpu1"], &jsonl("text", &["a"]));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown device `gpu1`"));
}

/// CUDA's log-probs against the CPU's on the same checkpoint: f32 (with TF32 matrix
/// products, 10 significant bits) and mixed bf16.
#[test]
fn cuda_log_probs_match_the_cpus_in_f32_and_bf16() {
    if !tch::Cuda::is_available() {
        eprintln!("skipped: no CUDA device is visible (scripts/gpu-check runs this on a GPU machine)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let trained = trained_tiny(dir.path());
    trained.save(&dir.path().join("m"), None).unwrap();
    let ids = ids(5, 4, 48);
    let _guard = tch::no_grad_guard();
    let cpu = trained.token_logprobs(&ids, None, false);
    let mut gpu = LanguageModel::load(&dir.path().join("m"), Device::Cuda(0)).unwrap();
    let f32_err = max_abs_diff(&cpu, &gpu.token_logprobs(&ids.to_device(Device::Cuda(0)), None, false));
    gpu.compute_in(Kind::BFloat16);
    let bf16_err = max_abs_diff(&cpu, &gpu.token_logprobs(&ids.to_device(Device::Cuda(0)), None, false));
    eprintln!("CUDA vs CPU max |Δ log p|: f32 {f32_err:.5}, bf16 {bf16_err:.4}");
    assert!(f32_err < 5e-3, "CUDA f32 log-probs differ by {f32_err}");
    assert!(bf16_err < BF16_LOGPROB_TOLERANCE, "CUDA bf16 log-probs differ by {bf16_err}");
}

/// scripts/gpu-check's steps on the CPU (tiny preset, a few steps, the machine's
/// Postgres): the script runs through and prints its one JSON object.
#[test]
fn gpu_check_runs_dry_on_the_cpu() {
    // The trainer's unit-test binary beside plumb's (the same build), for step 7.
    let deps = std::path::Path::new(env!("CARGO_BIN_EXE_plumb")).parent().unwrap().join("deps");
    let trainer_tests = std::fs::read_dir(&deps)
        .unwrap()
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| {
            let name = path.file_name().unwrap().to_string_lossy();
            name.starts_with("trainer-") && path.extension().is_none()
        })
        .max_by_key(|path| path.metadata().and_then(|m| m.modified()).ok());
    let mut command = std::process::Command::new(repo_root().join("scripts/gpu-check"));
    command.arg("--cpu-dry-run").env("PLUMB_BIN", env!("CARGO_BIN_EXE_plumb")).env("PLUMB_PYTHON", python());
    if let Some(path) = &trainer_tests {
        command.env("PLUMB_TRAINER_TESTS", path);
    }
    let out = command.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(report["mode"], "cpu");
    assert!(report["sft"]["tokens_per_second"].as_f64().unwrap() > 0.0, "{report}");
    assert_eq!(report["logprob_max_abs_error_vs_cpu_f32"]["f32"], 0.0, "{report}");
    assert!(report["logprob_max_abs_error_vs_cpu_f32"]["bf16"].as_f64().unwrap() < BF16_LOGPROB_TOLERANCE);
    assert!(report["ppo"]["step_seconds"].as_f64().unwrap() > 0.0, "{report}");
    assert_eq!(report["largest_preset_with_checkpointing"], "tiny");
    // The collectives ran through Gloo, and NCCL's half was skipped without a GPU.
    let collectives = match (&trainer_tests, tch::Cuda::is_available()) {
        (None, _) => "not-run",
        (Some(_), false) => "gloo",
        (Some(_), true) => "gloo+nccl",
    };
    assert_eq!(report["collectives"], collectives, "{report}");
}

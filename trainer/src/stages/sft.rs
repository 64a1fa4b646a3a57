//! Stage 2 of InstructGPT: supervised fine-tuning (SFT) on demonstrations.
//!
//! Each demonstration becomes the sequence prompt ++ response ++ EOS, with no template
//! added, and the loss is the next-token loss on the response and its EOS only: the
//! prompt and the padding are masked.

use crate::checkpoint::LanguageModel;
use crate::data::Demonstration;
use crate::lm_loop::{self, Example, LoopReport};
use crate::tokenizer::Tokenizer;
use crate::train::{RunDir, TrainError};

/// SFT's settings: declared in the run contract.
pub use spec::SftConfig;

/// prompt ++ response ++ EOS with the loss on the response and EOS. A sequence longer
/// than the context loses prompt tokens from the left; a response that cannot fit is an
/// error naming the demonstration.
pub fn example(
    tokenizer: &Tokenizer,
    n_ctx: i64,
    index: usize,
    d: &Demonstration,
) -> Result<Example, TrainError> {
    let mut prompt = tokenizer.encode(&d.prompt);
    let mut response = tokenizer.encode(&d.response);
    response.push(tokenizer.eos_id());
    let n_ctx = n_ctx as usize;
    if response.len() >= n_ctx {
        return Err(TrainError::Config(format!(
            "demonstration {} has a response of {} tokens; with EOS it does not fit the context of {n_ctx}",
            index + 1,
            response.len() - 1
        )));
    }
    let overflow = (prompt.len() + response.len()).saturating_sub(n_ctx);
    prompt.drain(..overflow);
    let loss_mask =
        std::iter::repeat_n(false, prompt.len()).chain(std::iter::repeat_n(true, response.len())).collect();
    prompt.extend(response);
    Ok(Example { ids: prompt, loss_mask })
}

pub type SftReport = LoopReport;

/// Fine-tunes `model` on `demonstrations`, validating on `validation` (or on a held-out
/// share of the demonstrations when it is empty). The best weights by validation loss
/// are saved into `run.path()` and returned.
pub fn train(
    cfg: &SftConfig,
    model: LanguageModel,
    demonstrations: &[Demonstration],
    validation: &[Demonstration],
    run: &mut RunDir,
) -> Result<(LanguageModel, SftReport), TrainError> {
    cfg.validate()?;
    let width = model.config.n_embd;
    let model = model.with_dropout(cfg.dropout(width))?;
    let encode = |items: &[Demonstration]| -> Result<Vec<Example>, TrainError> {
        items.iter().enumerate().map(|(i, d)| example(&model.tokenizer, model.config.n_ctx, i, d)).collect()
    };
    let (train_set, val_set) = if validation.is_empty() {
        lm_loop::split_validation(&encode(demonstrations)?, cfg.val_fraction, cfg.seed)
    } else {
        (encode(demonstrations)?, encode(validation)?)
    };
    let settings =
        lm_loop::loop_settings!(cfg, "sft", examples: train_set.len(), keep_best: true, lr: cfg.lr(width));
    lm_loop::run(&settings, model, &train_set, &val_set, run)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenizer::TokenizerKind;

    #[test]
    fn the_loss_covers_the_response_and_eos_only() {
        let t = Tokenizer::new(TokenizerKind::Bytes);
        let d = Demonstration { prompt: "ab".into(), response: "c".into() };
        let e = example(&t, 256, 0, &d).unwrap();
        assert_eq!(e.ids, vec![97, 98, 99, 256]);
        assert_eq!(e.loss_mask, vec![false, false, true, true]);
    }

    #[test]
    fn a_long_prompt_loses_its_beginning() {
        let t = Tokenizer::new(TokenizerKind::Bytes);
        let d = Demonstration { prompt: "abcdef".into(), response: "xy".into() };
        let e = example(&t, 5, 0, &d).unwrap();
        assert_eq!(e.ids, vec![101, 102, 120, 121, 256]);
        let too_long = Demonstration { prompt: "a".into(), response: "wxyz".into() };
        let err = example(&t, 5, 2, &too_long).unwrap_err().to_string();
        assert!(err.contains("demonstration 3"), "{err}");
    }
}

#[cfg(test)]
mod learning_tests {
    use super::*;
    use crate::sampling::{generate, SamplingConfig};
    use crate::train::temp_run;

    fn tiny_model(seed: i64) -> LanguageModel {
        crate::checkpoint::small_byte_model(seed, (2, 4, 64, 32))
    }

    /// "abc>" → "ABC": a skill a base model cannot know.
    fn uppercase_demos(n: usize, seed: u64) -> Vec<Demonstration> {
        let words = crate::checkpoint::random_words(n, seed, 2..=4, b'a'..=b'h');
        words
            .into_iter()
            .map(|word| Demonstration { prompt: format!("{word}>"), response: word.to_uppercase() })
            .collect()
    }

    fn accuracy(model: &LanguageModel, demos: &[Demonstration]) -> f64 {
        let prompts: Vec<Vec<i64>> = demos.iter().map(|d| model.tokenizer.encode(&d.prompt)).collect();
        let cfg = SamplingConfig { max_new_tokens: 6, temperature: 0.0, ..Default::default() };
        let samples = generate(model, &prompts, &cfg).unwrap();
        let correct = samples
            .iter()
            .zip(demos)
            .filter(|(s, d)| s.stopped_at_eos && model.tokenizer.decode(&s.ids) == d.response)
            .count();
        correct as f64 / demos.len() as f64
    }

    fn config(steps: i64) -> SftConfig {
        SftConfig {
            steps: Some(steps),
            lr: Some(3e-3),
            batch_size: 32,
            dropout: Some(0.0),
            eval_every: 0,
            checkpoint_every: 0,
            warmup_steps: 10,
            final_lr_ratio: 0.1,
            ..Default::default()
        }
    }

    #[test]
    fn sft_lifts_held_out_accuracy_far_above_the_base() {
        let train_set = uppercase_demos(512, 1);
        let held_out: Vec<Demonstration> =
            uppercase_demos(64, 2).into_iter().filter(|d| !train_set.contains(d)).collect();
        let base = tiny_model(0);
        let before = accuracy(&base, &held_out);
        let (dir, mut run) = temp_run();
        let (tuned, report) = train(&config(250), base, &train_set, &held_out, &mut run).unwrap();
        let after = accuracy(&tuned, &held_out);
        eprintln!("held-out exact match: base {before:.2} → SFT {after:.2}; {report:?}");
        assert!(before < 0.05, "the base already solves it: {before}");
        assert!(after > 0.8, "SFT reached only {after}");
        assert!(dir.path().join("model.safetensors").exists());
        assert!(std::fs::read_to_string(dir.path().join("metrics.jsonl")).unwrap().contains("loss/sft"));
    }

    #[test]
    fn resuming_mid_run_equals_an_uninterrupted_run() {
        let demos = uppercase_demos(64, 3);
        let mut cfg = config(12);
        cfg.checkpoint_every = 6;
        cfg.dropout = Some(0.1); // dropout masks must repeat too
        let full_dir = tempfile::tempdir().unwrap();
        let mut run = RunDir::open(full_dir.path(), false).unwrap();
        let (full, _) = train(&cfg, tiny_model(5), &demos, &demos[..8], &mut run).unwrap();

        // A run that died after step 6: only its checkpoint is left.
        let resumed_dir = tempfile::tempdir().unwrap();
        let checkpoints = resumed_dir.path().join(crate::train::CHECKPOINTS);
        std::fs::create_dir_all(&checkpoints).unwrap();
        let from = full_dir.path().join(crate::train::CHECKPOINTS).join("step-00000006");
        let to = checkpoints.join("step-00000006");
        std::fs::create_dir_all(&to).unwrap();
        for entry in std::fs::read_dir(&from).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
        let mut run = RunDir::open(resumed_dir.path(), true).unwrap();
        let (resumed, _) = train(&cfg, tiny_model(99), &demos, &demos[..8], &mut run).unwrap();

        let (a, b) = (full.vs.variables(), resumed.vs.variables());
        let max_diff =
            a.iter().map(|(k, v)| f64::try_from((v - &b[k]).abs().max()).unwrap()).fold(0.0, f64::max);
        assert!(max_diff < 1e-5, "resumed weights differ by {max_diff}");
    }

    fn logged_steps(dir: &std::path::Path) -> Vec<i64> {
        let metrics = std::fs::read_to_string(dir.join(crate::train::METRICS)).unwrap();
        metrics
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["step"].as_i64().unwrap())
            .collect()
    }

    #[test]
    fn a_run_resumed_before_its_first_checkpoint_logs_each_step_once() {
        let demos = uppercase_demos(16, 6);
        let cfg = SftConfig { batch_size: 8, ..config(4) };
        let dir = tempfile::tempdir().unwrap();
        // A run killed before its first checkpoint: it had logged steps 0 to 2.
        let mut run = RunDir::open(dir.path(), false).unwrap();
        for step in 0..3 {
            run.log(step, &[("loss/sft", 9.0)]).unwrap();
        }
        drop(run);
        let mut run = RunDir::open(dir.path(), true).unwrap();
        train(&cfg, tiny_model(0), &demos, &demos[..4], &mut run).unwrap();
        assert_eq!(logged_steps(dir.path()), vec![0, 1, 2, 3], "it started over, so its old lines go");
    }

    /// The worker stores a run's newest checkpoint in the artifact store, and a run
    /// resumed on another machine starts from a copy of it in a fresh directory: it must
    /// still end with the weights of its best step.
    #[test]
    fn a_run_resumed_elsewhere_from_its_stored_checkpoint_keeps_its_best_step() {
        let demos = uppercase_demos(64, 7);
        // Validation wants digits, which training never shows: the more SFT learns, the
        // worse it does there, so the best step comes before the checkpoint.
        let contrary: Vec<Demonstration> = demos[..8]
            .iter()
            .map(|d| Demonstration { prompt: d.prompt.clone(), response: "0123456789".into() })
            .collect();
        let cfg = SftConfig { eval_every: 1, checkpoint_every: 6, ..config(12) };
        let whole = tempfile::tempdir().unwrap();
        let mut run = RunDir::open(whole.path(), false).unwrap();
        let (full, full_report) = train(&cfg, tiny_model(5), &demos, &contrary, &mut run).unwrap();
        assert!(
            full_report.kept_step < 6,
            "the best step {} is not before the checkpoint",
            full_report.kept_step
        );

        let store = registry::artifacts::ArtifactStore::new(whole.path().join("store")).unwrap();
        let step_6 = std::path::Path::new(crate::train::CHECKPOINTS).join("step-00000006");
        let stored = store.put_dir(&whole.path().join(&step_6)).unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        store.fetch_to(&stored.sha256, &elsewhere.path().join(&step_6)).unwrap();
        let mut run = RunDir::open(elsewhere.path(), true).unwrap();
        let (resumed, report) = train(&cfg, tiny_model(99), &demos, &contrary, &mut run).unwrap();

        assert_eq!(report.kept_step, full_report.kept_step);
        let (a, b) = (full.vs.variables(), resumed.vs.variables());
        let max_diff =
            a.iter().map(|(k, v)| f64::try_from((v - &b[k]).abs().max()).unwrap()).fold(0.0, f64::max);
        assert!(max_diff < 1e-5, "the resumed run's final weights differ by {max_diff}");
    }

    #[test]
    fn a_nan_loss_stops_the_run_and_names_the_step() {
        let demos = uppercase_demos(32, 4);
        let cfg = SftConfig { lr: Some(1e30), ..config(20) };
        let (_dir, mut run) = temp_run();
        let err = train(&cfg, tiny_model(0), &demos, &demos[..4], &mut run).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, TrainError::NonFinite { .. }), "{text}");
        assert!(text.starts_with("step ") && text.contains("training stopped"), "{text}");
    }
}

//! The GPT-1/GPT-2 stage: language modelling on a corpus.
//!
//! Documents are joined into one token stream, each followed by EOS (GPT-2's document
//! boundary), and cut into packed windows of `seq_len` tokens, so no compute is spent on
//! padding. The held-out documents give the validation loss and perplexity.

use crate::checkpoint::LanguageModel;
use crate::lm_loop::{self, Example, LoopReport};
use crate::tokenizer::Tokenizer;
use crate::train::{RunDir, TrainError};

/// Pretraining's settings: declared in the run contract.
pub use spec::PretrainConfig;

/// Packs documents into windows of `seq_len` tokens, each overlapping the next by one
/// token so that every token but the first is a target exactly once.
pub fn pack(tokenizer: &Tokenizer, documents: &[String], seq_len: usize) -> Vec<Example> {
    let mut stream = Vec::new();
    for d in documents {
        stream.extend(tokenizer.encode(d));
        stream.push(tokenizer.eos_id());
    }
    let mut windows = Vec::new();
    let mut start = 0;
    while start + 1 < stream.len() {
        let end = (start + seq_len).min(stream.len());
        let ids = stream[start..end].to_vec();
        let loss_mask = std::iter::once(false).chain(std::iter::repeat_n(true, ids.len() - 1)).collect();
        windows.push(Example { ids, loss_mask });
        start += seq_len - 1;
    }
    windows
}

pub type PretrainReport = LoopReport;

/// Trains `model` on `documents` with the language-modelling loss; the final weights are
/// saved into `run.path()` and returned.
pub fn train(
    cfg: &PretrainConfig,
    model: LanguageModel,
    documents: &[String],
    run: &mut RunDir,
) -> Result<(LanguageModel, PretrainReport), TrainError> {
    cfg.validate()?;
    let n_ctx = model.config.n_ctx;
    let seq_len = cfg.seq_len.unwrap_or(n_ctx);
    if seq_len > n_ctx {
        return Err(TrainError::Config(format!(
            "pretrain.seq_len {seq_len} exceeds the model's n_ctx {n_ctx}"
        )));
    }
    let (train_docs, val_docs) = lm_loop::split_validation(documents, cfg.val_fraction, cfg.seed);
    let train_set = pack(&model.tokenizer, &train_docs, seq_len as usize);
    let val_set = pack(&model.tokenizer, &val_docs, seq_len as usize);
    let mut settings =
        lm_loop::loop_settings!(cfg, "pretrain", examples: train_set.len(), keep_best: false, lr: cfg.lr);
    // Capped at a tenth of the run, so that short runs still decay.
    settings.warmup_steps = settings.warmup_steps.min(settings.total_steps / 10 + 1);
    lm_loop::run(&settings, model, &train_set, &val_set, run)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenizer::TokenizerKind;

    #[test]
    fn packing_joins_documents_with_eos_and_targets_every_token_once() {
        let t = Tokenizer::new(TokenizerKind::Bytes);
        let windows = pack(&t, &["abc".into(), "de".into()], 4);
        let ids: Vec<Vec<i64>> = windows.iter().map(|w| w.ids.clone()).collect();
        assert_eq!(ids, vec![vec![97, 98, 99, 256], vec![256, 100, 101, 256]]);
        let targets: usize = windows.iter().map(|w| w.loss_mask.iter().filter(|&&m| m).count()).sum();
        assert_eq!(targets, 6, "a, b, c, EOS, d, e, EOS minus the first token");
    }
}

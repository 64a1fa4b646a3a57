//! Commands that run a model: init, tokenize, score, generate.

use std::io::{self, BufWriter, Write};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use serde::{Deserialize, Serialize};
use spec::LayerWords;
use trainer::{
    default_sparse, AttentionLayers, DeviceChoice, GptConfig, LanguageModel, Precision, Preset,
    SamplingConfig, Tokenizer, TokenizerKind,
};

use super::jsonl;

#[derive(Args)]
pub struct InitArgs {
    /// Model size: tiny, gpt2, gpt2-medium, gpt2-large or gpt2-xl.
    #[arg(long)]
    preset: Preset,
    /// gpt2 (GPT-2's BPE, 50,257 ids) or bytes (256 bytes + EOS + PAD).
    #[arg(long)]
    tokenizer: TokenizerKind,
    /// The checkpoint directory to write.
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 0)]
    seed: i64,
    /// Context length (default: the preset's).
    #[arg(long)]
    n_ctx: Option<i64>,
    /// Dropout on embeddings, attention and residual branches (default 0.1).
    #[arg(long)]
    dropout: Option<f64>,
    /// Which layers attend sparsely: dense, sparse, alternating (GPT-3: dense and
    /// banded sparse layers in turn, the first dense), or one word per layer separated
    /// by commas, e.g. dense,sparse,sparse,dense [default: dense; sparse when
    /// --sparse-window or --sparse-stride is given].
    #[arg(long)]
    attention: Option<LayerWords>,
    /// A sparse layer's token sees the previous WINDOW tokens, itself included...
    /// [default: √n_ctx, rounded]
    #[arg(long)]
    sparse_window: Option<i64>,
    /// ...and every earlier token whose distance is a multiple of STRIDE [default: √n_ctx,
    /// rounded].
    #[arg(long)]
    sparse_stride: Option<i64>,
}

#[derive(Args)]
pub struct TokenizeArgs {
    #[arg(long)]
    tokenizer: TokenizerKind,
}

/// Where and how a model runs.
#[derive(Args)]
pub struct ModelArgs {
    /// A GPT-2-format checkpoint directory (config.json + model.safetensors).
    #[arg(long)]
    model: PathBuf,
    /// cpu, cuda or auto (CUDA when available).
    #[arg(long, default_value = "auto")]
    device: DeviceChoice,
    /// auto (bf16 on CUDA, f32 on CPU), f32 or bf16.
    #[arg(long, default_value = "auto")]
    precision: Precision,
    /// Sequences per forward pass.
    #[arg(long, default_value_t = 16)]
    batch_size: usize,
}

#[derive(Args)]
pub struct ScoreArgs {
    #[command(flatten)]
    model: ModelArgs,
}

#[derive(Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[arg(long)]
    max_new_tokens: i64,
    /// 0 is greedy decoding.
    #[arg(long, default_value_t = 1.0)]
    temperature: f64,
    #[arg(long)]
    top_k: Option<i64>,
    #[arg(long)]
    top_p: Option<f64>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Keep generating after EOS, up to --max-new-tokens.
    #[arg(long)]
    ignore_eos: bool,
}

#[derive(Deserialize)]
struct TextLine {
    text: String,
}

/// A prompt: text, or a list of messages (a conversation), which the model is prompted
/// with through plumb's chat template, as in training, so that it writes the assistant's
/// next turn.
#[derive(Deserialize)]
struct PromptLine {
    prompt: serde_json::Value,
}

impl PromptLine {
    /// The text the model is prompted with; the error names what is wrong.
    fn text(&self) -> Result<String, String> {
        match &self.prompt {
            serde_json::Value::String(text) => Ok(text.clone()),
            list @ serde_json::Value::Array(_) => spec::chat::Conversation::from_json(list)
                .map(|c| c.render())
                .map_err(|e| format!("prompt{}: {}", e.field, e.reason)),
            other => Err(format!("prompt: must be a string or a list of messages, not {other}")),
        }
    }
}

#[derive(Serialize)]
struct Ids {
    ids: Vec<i64>,
}

#[derive(Serialize)]
struct Scored {
    ids: Vec<i64>,
    logprobs: Vec<f32>,
}

#[derive(Serialize)]
struct Completion<'a> {
    prompt: &'a str,
    completion: String,
    ids: Vec<i64>,
    logprobs: Vec<f32>,
    /// "eos" or "length".
    finish_reason: &'static str,
}

pub fn init(args: InitArgs) -> Result<()> {
    let tokenizer = Tokenizer::new(args.tokenizer);
    let mut config = GptConfig::preset(args.preset, tokenizer.vocab_size());
    if let Some(n_ctx) = args.n_ctx {
        config.n_ctx = n_ctx;
    }
    if let Some(dropout) = args.dropout {
        config.dropout = dropout;
    }
    let band_given = args.sparse_window.is_some() || args.sparse_stride.is_some();
    let words = args.attention.unwrap_or(if band_given { LayerWords::Sparse } else { LayerWords::Dense });
    let sparse = default_sparse(config.n_ctx, args.sparse_window, args.sparse_stride);
    config.attention = AttentionLayers::from_words(&words, config.n_layer, sparse)
        .map_err(|e| anyhow::anyhow!("--attention: {e}"))?;
    trainer::tch::manual_seed(args.seed);
    let model = LanguageModel::new(config, args.tokenizer, trainer::tch::Device::Cpu)
        .map_err(|e| anyhow::anyhow!("invalid model configuration: {e}"))?;
    model.save(&args.out, None)?;
    let parameters: i64 = model.vs.trainable_variables().iter().map(|t| t.numel() as i64).sum();
    let summary = serde_json::json!({
        "out": args.out,
        "parameters": parameters,
        "tokenizer": args.tokenizer,
        "config": model.config,
    });
    jsonl::write_line(&mut io::stdout().lock(), &summary)
}

pub fn tokenize(args: TokenizeArgs) -> Result<()> {
    let lines: Vec<TextLine> = jsonl::read_all(io::stdin().lock(), "stdin")?;
    let tokenizer = Tokenizer::new(args.tokenizer);
    let mut out = BufWriter::new(io::stdout().lock());
    for line in &lines {
        jsonl::write_line(&mut out, &Ids { ids: tokenizer.encode(&line.text) })?;
    }
    Ok(out.flush()?)
}

fn load(args: &ModelArgs) -> Result<LanguageModel> {
    let device = args.device.resolve().map_err(anyhow::Error::msg)?;
    let mut model = LanguageModel::load(&args.model, device)
        .with_context(|| format!("loading the model in {}", args.model.display()))?;
    model.set_kind(trainer::device::compute_kind(args.precision, device));
    Ok(model)
}

pub fn score(args: ScoreArgs) -> Result<()> {
    let lines: Vec<TextLine> = jsonl::read_all(io::stdin().lock(), "stdin")?;
    let model = load(&args.model)?;
    let ids: Vec<Vec<i64>> = lines.iter().map(|l| model.tokenizer.encode(&l.text)).collect();
    let logprobs = trainer::score(&model, &ids, args.model.batch_size).map_err(|e| match e {
        trainer::SamplingError::Empty { index } => {
            anyhow::anyhow!("stdin line {}: text is empty", index + 1)
        }
        trainer::SamplingError::TooLong { index, len, n_ctx, .. } => {
            anyhow::anyhow!(
                "stdin line {}: text has {len} tokens, more than the model's context of {n_ctx}",
                index + 1
            )
        }
        other => other.into(),
    })?;
    let mut out = BufWriter::new(io::stdout().lock());
    for (ids, logprobs) in ids.into_iter().zip(logprobs) {
        jsonl::write_line(&mut out, &Scored { ids, logprobs })?;
    }
    Ok(out.flush()?)
}

pub fn generate(args: GenerateArgs) -> Result<()> {
    let sampling = SamplingConfig {
        max_new_tokens: args.max_new_tokens,
        temperature: args.temperature,
        top_k: args.top_k,
        top_p: args.top_p,
        seed: args.seed,
        stop_at_eos: !args.ignore_eos,
    };
    sampling.validate()?;
    let lines: Vec<PromptLine> = jsonl::read_all(io::stdin().lock(), "stdin")?;
    let model = load(&args.model)?;
    let texts: Vec<String> = lines
        .iter()
        .enumerate()
        .map(|(index, l)| l.text().map_err(|e| anyhow::anyhow!("stdin line {}: {e}", index + 1)))
        .collect::<Result<_>>()?;
    let prompts: Vec<Vec<i64>> = texts.iter().map(|t| model.tokenizer.encode(t)).collect();
    for (index, p) in prompts.iter().enumerate() {
        if p.len() as i64 + sampling.max_new_tokens > model.config.n_ctx {
            bail!(
                "stdin line {}: prompt has {} tokens; with --max-new-tokens {} that exceeds the model's context of {}",
                index + 1,
                p.len(),
                sampling.max_new_tokens,
                model.config.n_ctx
            );
        }
    }
    let mut out = BufWriter::new(io::stdout().lock());
    let batch_size = args.model.batch_size.max(1);
    for (chunk, (texts, prompts)) in texts.chunks(batch_size).zip(prompts.chunks(batch_size)).enumerate() {
        let first_stream = (chunk * batch_size) as u64;
        for (text, g) in
            texts.iter().zip(trainer::generate_streams(&model, prompts, &sampling, first_stream)?)
        {
            let completion = Completion {
                prompt: text,
                completion: model.tokenizer.decode(&g.ids),
                finish_reason: if g.stopped_at_eos { "eos" } else { "length" },
                ids: g.ids,
                logprobs: g.logprobs,
            };
            jsonl::write_line(&mut out, &completion)?;
        }
        out.flush()?;
    }
    Ok(())
}

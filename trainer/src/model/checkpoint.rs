//! Checkpoints in Hugging Face's GPT-2 format, and the model they hold.
//!
//! A checkpoint is a directory:
//! - `config.json`: GPT2Config field names, readable by `transformers`;
//! - `model.safetensors`: GPT-2 key names (`transformer.h.0.attn.c_attn.weight`), Conv1D
//!   weights `[in, out]`, the LM head left out because it is tied to `wte`;
//! - `plumb.json` (plumb's own, optional): tokenizer, attention pattern, extra heads and
//!   training state. Without it, the tokenizer is inferred from the vocabulary size.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, Metadata, TensorInfo, View};
use serde::{Deserialize, Serialize};
use tch::{nn, Device, Kind, Tensor};

use crate::config::{AttentionLayers, GptConfig};
use crate::device::{compute_kind, Precision};
use crate::gpt::{Gpt, KvCache, LmHead, ScalarHead};
use crate::tokenizer::{Tokenizer, TokenizerKind, BYTES_VOCAB_SIZE, GPT2_VOCAB_SIZE};

pub const CONFIG_FILE: &str = "config.json";
pub const WEIGHTS_FILE: &str = "model.safetensors";
pub const PLUMB_FILE: &str = "plumb.json";
const PLUMB_FORMAT: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {reason}")]
    Config { path: PathBuf, reason: String },
    #[error("{path}: unknown architecture `{found}`: plumb loads GPT-2 checkpoints (model_type \"gpt2\")")]
    UnknownArchitecture { path: PathBuf, found: String },
    #[error("{path}: not a readable safetensors file ({reason}); is it truncated or corrupt?")]
    Corrupt { path: PathBuf, reason: String },
    #[error("{path}: missing tensor `{key}`")]
    MissingKey { path: PathBuf, key: String },
    #[error("{path}: tensor `{key}` has shape {found:?}, but config.json implies {expected:?}")]
    WrongShape { path: PathBuf, key: String, expected: Vec<i64>, found: Vec<i64> },
    #[error("{path}: unexpected tensor `{key}`, which is not part of a GPT-2 model")]
    UnexpectedKey { path: PathBuf, key: String },
    #[error(
        "{path}: tensor `{key}` has dtype {dtype}, which plumb cannot load (expected F32, F16, BF16 or F64)"
    )]
    Dtype { path: PathBuf, key: String, dtype: String },
    #[error("{0}")]
    Torch(#[from] tch::TchError),
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Io { path: path.to_path_buf(), source }
}

/// `config.json` as `transformers.GPT2Config` writes it (fields plumb reads or checks).
#[derive(Debug, Serialize, Deserialize)]
struct HfGpt2Config {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    architectures: Option<Vec<String>>,
    model_type: String,
    vocab_size: i64,
    n_positions: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    n_ctx: Option<i64>,
    n_embd: i64,
    n_layer: i64,
    n_head: i64,
    #[serde(default)]
    n_inner: Option<i64>,
    #[serde(default = "default_activation")]
    activation_function: String,
    #[serde(default = "default_pdrop")]
    resid_pdrop: f64,
    #[serde(default = "default_pdrop")]
    embd_pdrop: f64,
    #[serde(default = "default_pdrop")]
    attn_pdrop: f64,
    #[serde(default = "default_eps")]
    layer_norm_epsilon: f64,
    #[serde(default = "default_init_range")]
    initializer_range: f64,
    #[serde(default)]
    bos_token_id: Option<i64>,
    #[serde(default)]
    eos_token_id: Option<i64>,
    #[serde(default = "yes")]
    scale_attn_weights: bool,
    #[serde(default)]
    scale_attn_by_inverse_layer_idx: bool,
    #[serde(default)]
    reorder_and_upcast_attn: bool,
    #[serde(default = "yes")]
    tie_word_embeddings: bool,
}

fn default_activation() -> String {
    "gelu_new".into()
}
fn default_pdrop() -> f64 {
    0.1
}
fn default_eps() -> f64 {
    1e-5
}
fn default_init_range() -> f64 {
    0.02
}
fn yes() -> bool {
    true
}

/// plumb's own record beside the Hugging Face files.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlumbMeta {
    pub format: u32,
    pub tokenizer: TokenizerKind,
    /// Each layer's pattern (one pattern for every layer in checkpoints written before
    /// patterns were per layer).
    #[serde(default = "dense")]
    pub attention: AttentionLayers,
    /// Names of extra heads stored in `model.safetensors` beside the trunk (`score`).
    #[serde(default)]
    pub heads: Vec<String>,
    /// The chat template that renders a conversation into this model's prompts
    /// (`spec::chat`); plumb writes and reads only its plain one, `plumb-plain-v1`.
    #[serde(default = "plain_template")]
    pub chat_template: String,
    /// Where training stopped, for `--resume` (written by the training stages).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training: Option<serde_json::Value>,
}

fn dense() -> AttentionLayers {
    AttentionLayers::DENSE
}

fn plain_template() -> String {
    spec::chat::PLAIN.to_owned()
}

impl HfGpt2Config {
    fn from_config(cfg: &GptConfig, tokenizer: &Tokenizer) -> Self {
        HfGpt2Config {
            architectures: Some(vec!["GPT2LMHeadModel".into()]),
            model_type: "gpt2".into(),
            vocab_size: cfg.vocab_size,
            n_positions: cfg.n_ctx,
            n_ctx: Some(cfg.n_ctx),
            n_embd: cfg.n_embd,
            n_layer: cfg.n_layer,
            n_head: cfg.n_head,
            n_inner: None,
            activation_function: default_activation(),
            resid_pdrop: cfg.dropout,
            embd_pdrop: cfg.dropout,
            attn_pdrop: cfg.dropout,
            layer_norm_epsilon: cfg.layer_norm_epsilon,
            initializer_range: default_init_range(),
            bos_token_id: Some(tokenizer.eos_id()),
            eos_token_id: Some(tokenizer.eos_id()),
            scale_attn_weights: true,
            scale_attn_by_inverse_layer_idx: false,
            reorder_and_upcast_attn: false,
            tie_word_embeddings: true,
        }
    }

    /// Checks that plumb's GPT computes what this config describes.
    fn to_config(&self, path: &Path, attention: AttentionLayers) -> Result<GptConfig, CheckpointError> {
        let unsupported = |field: &str, value: String| CheckpointError::Config {
            path: path.to_path_buf(),
            reason: format!("unsupported {field} = {value}"),
        };
        if self.model_type != "gpt2" {
            return Err(CheckpointError::UnknownArchitecture {
                path: path.to_path_buf(),
                found: self.model_type.clone(),
            });
        }
        if !matches!(self.activation_function.as_str(), "gelu_new" | "gelu_pytorch_tanh") {
            return Err(unsupported(
                "activation_function",
                format!(
                    "{:?} (plumb's GPT uses GELU's tanh approximation, \"gelu_new\")",
                    self.activation_function
                ),
            ));
        }
        if let Some(n_inner) = self.n_inner.filter(|&n| n != 4 * self.n_embd) {
            return Err(unsupported("n_inner", format!("{n_inner} (must be 4 × n_embd)")));
        }
        if !self.scale_attn_weights || self.scale_attn_by_inverse_layer_idx || self.reorder_and_upcast_attn {
            return Err(unsupported(
                "attention scaling",
                "(needs scale_attn_weights true, scale_attn_by_inverse_layer_idx and reorder_and_upcast_attn false)".into(),
            ));
        }
        if !self.tie_word_embeddings {
            return Err(unsupported("tie_word_embeddings", "false (plumb ties the LM head to wte)".into()));
        }
        let cfg = GptConfig {
            vocab_size: self.vocab_size,
            n_ctx: self.n_positions,
            n_layer: self.n_layer,
            n_head: self.n_head,
            n_embd: self.n_embd,
            dropout: self.resid_pdrop,
            layer_norm_epsilon: self.layer_norm_epsilon,
            attention,
        };
        cfg.validate().map_err(|reason| CheckpointError::Config { path: path.to_path_buf(), reason })?;
        Ok(cfg)
    }
}

/// A GPT with its LM head and tokenizer: what a checkpoint directory holds.
pub struct LanguageModel {
    pub vs: nn::VarStore,
    pub gpt: Gpt,
    pub lm_head: LmHead,
    /// The scalar head of a reward or value model (`score.weight`, `score.bias`, as
    /// transformers' GPT2ForSequenceClassification names it).
    pub score_head: Option<ScalarHead>,
    pub config: GptConfig,
    pub tokenizer: Tokenizer,
}

/// The name of the scalar head in checkpoints and in `plumb.json`'s `heads`.
pub const SCORE_HEAD: &str = "score";

impl std::fmt::Debug for LanguageModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LanguageModel")
            .field("config", &self.config)
            .field("tokenizer", &self.tokenizer)
            .finish()
    }
}

impl LanguageModel {
    /// A freshly initialised model (seed with `tch::manual_seed` first for a fixed init).
    pub fn new(config: GptConfig, tokenizer: TokenizerKind, device: Device) -> Result<Self, String> {
        config.validate()?;
        let tokenizer = Tokenizer::new(tokenizer);
        if config.vocab_size < tokenizer.vocab_size() {
            return Err(format!(
                "vocab_size {} is smaller than the {} tokenizer's {} ids",
                config.vocab_size,
                tokenizer.kind(),
                tokenizer.vocab_size()
            ));
        }
        let vs = nn::VarStore::new(device);
        let gpt = Gpt::new(&vs.root(), &config);
        let lm_head = LmHead::tied(&gpt);
        Ok(LanguageModel { vs, gpt, lm_head, score_head: None, config, tokenizer })
    }

    /// An independent copy with the same weights on the same device (PPO's frozen
    /// reference policy, its value model initialised from the reward model).
    pub fn try_clone(&self) -> Result<Self, CheckpointError> {
        self.copy_with(self.config.clone())
    }

    /// The same weights with another dropout probability (SFT trains with 0.2).
    pub fn with_dropout(self, dropout: f64) -> Result<Self, CheckpointError> {
        if dropout == self.config.dropout {
            return Ok(self);
        }
        self.copy_with(GptConfig { dropout, ..self.config.clone() })
    }

    /// A new model of `config` (which must keep the shapes) holding copies of these weights.
    fn copy_with(&self, config: GptConfig) -> Result<Self, CheckpointError> {
        let mut copy = LanguageModel::new(config, self.tokenizer.kind(), self.device())
            .map_err(|reason| CheckpointError::Config { path: PathBuf::new(), reason })?;
        if self.score_head.is_some() {
            copy.add_score_head();
        }
        copy.vs.set_kind(self.gpt.wte().kind());
        copy.vs.copy(&self.vs)?;
        copy.compute_in(self.kind());
        copy.set_checkpointing(self.gpt.checkpointing());
        Ok(copy)
    }

    /// Makes every weight trainable (`false`: frozen, as a reference model is).
    pub fn set_trainable(&mut self, trainable: bool) {
        if trainable {
            self.vs.unfreeze();
        } else {
            self.vs.freeze();
        }
    }

    /// log p(ids[t+1] | ids[..=t]) for every position: (B, T) ids → (B, T-1) f32.
    /// `attention_mask` (B, T) marks padding (left or right) with 0.
    pub fn token_logprobs(&self, ids: &Tensor, attention_mask: Option<&Tensor>, train: bool) -> Tensor {
        let t = ids.size()[1];
        let logits = self.logits(ids, attention_mask, train).narrow(1, 0, t - 1);
        let targets = ids.narrow(1, 1, t - 1);
        // Padding ids may lie outside the vocabulary; their log-probs are masked by callers.
        let targets = targets.clamp_max(self.config.vocab_size - 1);
        logits.log_softmax(-1, Kind::Float).gather(2, &targets.unsqueeze(2), false).squeeze_dim(2)
    }

    /// Adds a freshly initialised scalar head (the reward model's; the value model's).
    pub fn add_score_head(&mut self) {
        if self.score_head.is_none() {
            self.score_head = Some(ScalarHead::new(self.vs.root() / SCORE_HEAD, &self.config));
        }
    }

    /// The scalar head's output at every position (B, T), in f32.
    pub fn scores(&self, ids: &Tensor, attention_mask: Option<&Tensor>, train: bool) -> Option<Tensor> {
        let head = self.score_head.as_ref()?;
        let hidden = self.gpt.forward_masked(ids, attention_mask, None, train);
        Some(head.forward(&hidden).to_kind(Kind::Float))
    }

    pub fn device(&self) -> Device {
        self.vs.device()
    }

    /// The floating-point kind matrix products and attention compute in (f32, or bf16
    /// after `set_kind` or `compute_in`).
    pub fn kind(&self) -> Kind {
        self.gpt.compute_kind()
    }

    /// Casts the weights and computes in their kind, for reduced-precision inference.
    pub fn set_kind(&mut self, kind: Kind) {
        self.vs.set_kind(kind);
        self.compute_in(kind);
    }

    /// Computes matrix products and attention in `kind` while the weights keep theirs:
    /// with f32 weights and bf16, mixed-precision training (see `gpt`'s module doc).
    pub fn compute_in(&mut self, kind: Kind) {
        self.gpt.set_compute_kind(kind);
        self.lm_head.set_compute_kind(kind);
    }

    /// Prepares a model that trains in `precision`: its weights (the master weights)
    /// become f32 if they are not, and matrix products compute in the precision's kind.
    pub fn train_in(&mut self, precision: Precision) {
        if self.gpt.wte().kind() != Kind::Float {
            self.vs.set_kind(Kind::Float);
        }
        self.compute_in(compute_kind(precision, self.device()));
    }

    /// Prepares a model that does not train (PPO's reference and reward models): frozen,
    /// without gradients, and under bf16 held wholly in bf16, which halves its memory.
    pub fn freeze_in(&mut self, precision: Precision) {
        self.set_trainable(false);
        self.set_kind(compute_kind(precision, self.device()));
    }

    /// Turns activation checkpointing on or off (see `gpt`'s module doc); its backward
    /// passes go through [`LanguageModel::backward`].
    pub fn set_checkpointing(&mut self, on: bool) {
        self.gpt.set_checkpointing(on);
    }

    /// Backpropagates `loss` into the weights: `loss.backward()`, then, with activation
    /// checkpointing, the recomputed blocks'. A loss of several models (a policy and its
    /// value model) calls `loss.backward()` once and then [`LanguageModel::finish_backward`]
    /// of each.
    pub fn backward(&self, loss: &Tensor) {
        loss.backward();
        self.finish_backward();
    }

    /// The checkpointed blocks' part of a backward pass that `loss.backward()` began.
    pub fn finish_backward(&self) {
        self.gpt.backward_checkpointed();
    }

    /// f32 logits (B, V) of the next token after the last position of `ids` (B, T).
    pub fn next_logits(&self, ids: &Tensor, attention_mask: &Tensor, cache: &mut KvCache) -> Tensor {
        let hidden = self.gpt.forward_masked(ids, Some(attention_mask), Some(cache), false);
        self.lm_head.forward(&hidden.select(1, -1)).to_kind(Kind::Float)
    }

    /// f32 logits (B, T, V) at every position.
    pub fn logits(&self, ids: &Tensor, attention_mask: Option<&Tensor>, train: bool) -> Tensor {
        let hidden = self.gpt.forward_masked(ids, attention_mask, None, train);
        self.lm_head.forward(&hidden).to_kind(Kind::Float)
    }

    /// Loads a GPT-2-format checkpoint directory onto `device`.
    pub fn load(dir: &Path, device: Device) -> Result<Self, CheckpointError> {
        let config_path = dir.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&config_path).map_err(io_error(&config_path))?;
        let hf: HfGpt2Config = serde_json::from_str(&text)
            .map_err(|e| CheckpointError::Config { path: config_path.clone(), reason: e.to_string() })?;
        let meta = read_meta(dir, &hf)?;
        let config = hf.to_config(&config_path, meta.attention)?;
        let mut model = LanguageModel::new(config, meta.tokenizer, device)
            .map_err(|reason| CheckpointError::Config { path: config_path.clone(), reason })?;
        for head in &meta.heads {
            match head.as_str() {
                SCORE_HEAD => model.add_score_head(),
                other => {
                    return Err(CheckpointError::Config {
                        path: dir.join(PLUMB_FILE),
                        reason: format!("unknown head `{other}` (plumb knows `{SCORE_HEAD}`)"),
                    })
                }
            }
        }
        let weights_path = dir.join(WEIGHTS_FILE);
        let mut tensors = Weights::open(&weights_path)?;
        model.copy_weights(&mut tensors)?;
        if let Some(key) = tensors.into_keys().min() {
            return Err(CheckpointError::UnexpectedKey { path: weights_path, key });
        }
        Ok(model)
    }

    /// Copies checkpoint tensors into the model's variables, key for key, removing each
    /// one used from `tensors`.
    fn copy_weights(&self, tensors: &mut Weights) -> Result<(), CheckpointError> {
        let _guard = tch::no_grad_guard();
        let path = tensors.path.clone();
        let mut variables: Vec<(String, Tensor)> = self.vs.variables().into_iter().collect();
        variables.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, mut var) in variables {
            let (key, info) = tensors
                .remove(&name)
                .ok_or_else(|| CheckpointError::MissingKey { path: path.clone(), key: file_key(&name) })?;
            let found: Vec<i64> = info.shape.iter().map(|&d| d as i64).collect();
            if found != var.size() {
                return Err(CheckpointError::WrongShape {
                    path: path.clone(),
                    key,
                    expected: var.size(),
                    found,
                });
            }
            tensors.read_into(&key, &info, &mut var)?;
        }
        // The tied LM head, when a checkpoint stores it, must be the embedding.
        if let Some((key, info)) = tensors.remove("lm_head.weight") {
            let lm_head = tensors.read(&key, &info)?;
            if lm_head.size() != self.gpt.wte().size()
                || !lm_head.to_kind(Kind::Float).allclose(
                    &self.gpt.wte().to_kind(Kind::Float).to_device(Device::Cpu),
                    0.0,
                    0.0,
                    false,
                )
            {
                return Err(CheckpointError::Config {
                    path: path.clone(),
                    reason: "lm_head.weight differs from transformer.wte.weight; plumb ties them".into(),
                });
            }
        }
        Ok(())
    }

    /// Writes the checkpoint into `dir` (created if needed), each file atomically.
    pub fn save(&self, dir: &Path, training: Option<serde_json::Value>) -> Result<(), CheckpointError> {
        std::fs::create_dir_all(dir).map_err(io_error(dir))?;
        let hf = HfGpt2Config::from_config(&self.config, &self.tokenizer);
        let meta = PlumbMeta {
            format: PLUMB_FORMAT,
            tokenizer: self.tokenizer.kind(),
            attention: self.config.attention.clone(),
            heads: self.score_head.iter().map(|_| SCORE_HEAD.to_string()).collect(),
            chat_template: plain_template(),
            training,
        };
        let mut tensors: Vec<(String, Tensor)> = self
            .vs
            .variables()
            .into_iter()
            .map(|(name, t)| (file_key(&name), t.to_kind(Kind::Float).to_device(Device::Cpu).contiguous()))
            .collect();
        tensors.sort_by(|a, b| a.0.cmp(&b.0));
        write_json(&dir.join(CONFIG_FILE), &hf)?;
        write_weights(&dir.join(WEIGHTS_FILE), &tensors)?;
        write_json(&dir.join(PLUMB_FILE), &meta)
    }
}

fn read_meta(dir: &Path, hf: &HfGpt2Config) -> Result<PlumbMeta, CheckpointError> {
    let path = dir.join(PLUMB_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let meta: PlumbMeta = serde_json::from_str(&text)
                .map_err(|e| CheckpointError::Config { path: path.clone(), reason: e.to_string() })?;
            if meta.format != PLUMB_FORMAT {
                return Err(CheckpointError::Config {
                    path,
                    reason: format!("format {} is not one this plumb reads ({PLUMB_FORMAT})", meta.format),
                });
            }
            if meta.chat_template != spec::chat::PLAIN {
                return Err(CheckpointError::Config {
                    path,
                    reason: format!(
                        "chat_template {:?}: plumb renders conversations with {:?} only, so a model trained on another template would be prompted unlike its training",
                        meta.chat_template,
                        spec::chat::PLAIN
                    ),
                });
            }
            Ok(meta)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let tokenizer = match hf.vocab_size {
                GPT2_VOCAB_SIZE => TokenizerKind::Gpt2,
                BYTES_VOCAB_SIZE => TokenizerKind::Bytes,
                n => {
                    return Err(CheckpointError::Config {
                        path,
                        reason: format!("missing, and vocab_size {n} matches no tokenizer plumb knows; write {{\"format\": 1, \"tokenizer\": \"gpt2\"}} there"),
                    })
                }
            };
            Ok(PlumbMeta {
                format: PLUMB_FORMAT,
                tokenizer,
                attention: AttentionLayers::DENSE,
                heads: Vec::new(),
                chat_template: plain_template(),
                training: None,
            })
        }
        Err(e) => Err(CheckpointError::Io { path, source: e }),
    }
}

/// The key of plumb's variable `name` in `model.safetensors`: the trunk under
/// GPT2LMHeadModel's `transformer.`, heads under their own names.
fn file_key(name: &str) -> String {
    if name.starts_with(&format!("{SCORE_HEAD}.")) {
        name.to_string()
    } else {
        format!("transformer.{name}")
    }
}

/// A checkpoint's tensors as `model.safetensors` lays them out, keyed by plumb's
/// variable names (`h.0.ln_1.weight`): the `transformer.` prefix of GPT2LMHeadModel is
/// dropped and the attention-mask buffers that old GPT-2 checkpoints carry are skipped.
/// Nothing but the header is read until [`Weights::read_into`] reads one tensor, so
/// loading a model holds its weights once, plus one tensor at most, rather than the file,
/// every tensor and the weights together.
struct Weights {
    path: PathBuf,
    file: std::fs::File,
    /// Where the tensors' bytes start: after the 8-byte length and the JSON header.
    data_start: u64,
    /// Each tensor's key in the file and where it lies, by plumb's variable name.
    tensors: HashMap<String, (String, TensorInfo)>,
}

impl Weights {
    fn open(path: &Path) -> Result<Weights, CheckpointError> {
        let corrupt = |reason: String| CheckpointError::Corrupt { path: path.to_path_buf(), reason };
        let mut file = std::fs::File::open(path).map_err(io_error(path))?;
        let file_len = file.metadata().map_err(io_error(path))?.len();
        let mut length = [0u8; 8];
        file.read_exact(&mut length).map_err(|_| corrupt("shorter than its 8-byte header length".into()))?;
        let header_len = u64::from_le_bytes(length);
        if header_len > MAX_HEADER_BYTES || 8 + header_len > file_len {
            return Err(corrupt(format!("a header of {header_len} bytes in a file of {file_len}")));
        }
        let mut header = vec![0u8; header_len as usize];
        file.read_exact(&mut header).map_err(io_error(path))?;
        let metadata: Metadata = serde_json::from_slice(&header)
            .map_err(|e| corrupt(format!("its header is not safetensors' JSON: {e}")))?;
        let data_start = 8 + header_len;
        let mut tensors = HashMap::new();
        for (key, info) in metadata.tensors() {
            let elements: usize = info.shape.iter().product();
            let (start, end) = info.data_offsets;
            if end < start
                || end - start != elements * info.dtype.size()
                || data_start + end as u64 > file_len
            {
                return Err(corrupt(format!(
                    "tensor `{key}` ({:?} {:?}) has bytes {start}..{end} of a data section of {}",
                    info.dtype,
                    info.shape,
                    file_len - data_start
                )));
            }
            if key.ends_with(".attn.bias") || key.ends_with(".attn.masked_bias") {
                continue;
            }
            let name = key.strip_prefix("transformer.").unwrap_or(&key).to_string();
            tensors.insert(name, (key, info.clone()));
        }
        Ok(Weights { path: path.to_path_buf(), file, data_start, tensors })
    }

    /// Takes the tensor of plumb's variable `name` out of the map: its key and layout.
    fn remove(&mut self, name: &str) -> Option<(String, TensorInfo)> {
        self.tensors.remove(name)
    }

    /// The tensor that `info` describes, read from the file, in its own dtype on the CPU.
    fn read(&mut self, key: &str, info: &TensorInfo) -> Result<Tensor, CheckpointError> {
        let kind = kind_of(info.dtype).ok_or_else(|| CheckpointError::Dtype {
            path: self.path.clone(),
            key: key.to_string(),
            dtype: format!("{:?}", info.dtype),
        })?;
        let shape: Vec<i64> = info.shape.iter().map(|&d| d as i64).collect();
        let tensor = Tensor::empty(&shape, (kind, Device::Cpu));
        self.read_bytes(info, &tensor)?;
        Ok(tensor)
    }

    /// Fills `variable` with the tensor that `info` describes: straight into its memory
    /// when it is a contiguous CPU tensor of the file's dtype, else through a tensor read
    /// for the purpose and converted.
    fn read_into(
        &mut self,
        key: &str,
        info: &TensorInfo,
        variable: &mut Tensor,
    ) -> Result<(), CheckpointError> {
        if kind_of(info.dtype) == Some(variable.kind())
            && variable.device() == Device::Cpu
            && variable.is_contiguous()
        {
            return self.read_bytes(info, variable);
        }
        let tensor = self.read(key, info)?;
        variable.f_copy_(&tensor)?;
        Ok(())
    }

    /// Reads `info`'s bytes into `tensor`'s memory (a contiguous CPU tensor of as many
    /// bytes).
    fn read_bytes(&mut self, info: &TensorInfo, tensor: &Tensor) -> Result<(), CheckpointError> {
        let (start, end) = info.data_offsets;
        let bytes = tensor.numel() * tensor.kind().elt_size_in_bytes();
        // Its callers read into a contiguous CPU tensor: the bytes are copied into its memory.
        assert!(
            tensor.is_contiguous() && tensor.device() == Device::Cpu,
            "reading into a contiguous CPU tensor"
        );
        if bytes != end - start {
            return Err(CheckpointError::Corrupt {
                path: self.path.clone(),
                reason: format!("{} bytes in the file for a tensor of {bytes}", end - start),
            });
        }
        if bytes == 0 {
            return Ok(());
        }
        // SAFETY: `tensor` is contiguous on the CPU and owns `bytes` bytes from its data
        // pointer; nothing else reads or writes it while the file fills it.
        let memory = unsafe { std::slice::from_raw_parts_mut(tensor.data_ptr() as *mut u8, bytes) };
        self.file.seek(SeekFrom::Start(self.data_start + start as u64)).map_err(io_error(&self.path))?;
        self.file.read_exact(memory).map_err(io_error(&self.path))
    }

    /// The file's keys of the tensors not yet taken, in no order.
    fn into_keys(self) -> impl Iterator<Item = String> {
        self.tensors.into_values().map(|(key, _)| key)
    }
}

/// The tensor kind plumb reads a safetensors dtype as; None for a dtype it cannot load.
fn kind_of(dtype: Dtype) -> Option<Kind> {
    match dtype {
        Dtype::F32 => Some(Kind::Float),
        Dtype::F16 => Some(Kind::Half),
        Dtype::BF16 => Some(Kind::BFloat16),
        Dtype::F64 => Some(Kind::Double),
        _ => None,
    }
}

/// safetensors' own limit on a header (100 MB).
const MAX_HEADER_BYTES: u64 = 100_000_000;

/// A CPU f32 tensor as safetensors sees it.
struct TensorView<'a>(&'a Tensor, Vec<usize>);

impl View for TensorView<'_> {
    fn dtype(&self) -> Dtype {
        Dtype::F32
    }
    fn shape(&self) -> &[usize] {
        &self.1
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        let mut data = vec![0u8; self.data_len()];
        self.0.copy_data_u8(&mut data, self.0.numel());
        data.into()
    }
    fn data_len(&self) -> usize {
        self.0.numel() * 4
    }
}

fn write_weights(path: &Path, tensors: &[(String, Tensor)]) -> Result<(), CheckpointError> {
    let views = tensors.iter().map(|(name, t)| {
        let shape = t.size().iter().map(|&d| d as usize).collect();
        (name.as_str(), TensorView(t, shape))
    });
    // transformers refuses safetensors files that do not say they hold PyTorch tensors.
    let metadata = Some(HashMap::from([("format".to_string(), "pt".to_string())]));
    let bytes = safetensors::tensor::serialize(views, &metadata)
        .map_err(|e| CheckpointError::Corrupt { path: path.to_path_buf(), reason: format!("{e:?}") })?;
    write_atomically(path, &bytes)
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), CheckpointError> {
    let mut text = serde_json::to_string_pretty(value)
        .map_err(|e| CheckpointError::Config { path: path.to_path_buf(), reason: e.to_string() })?;
    text.push('\n');
    write_atomically(path, text.as_bytes())
}

/// Writes beside the target and renames, so a crash never leaves half a file.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), CheckpointError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, bytes).map_err(io_error(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_error(path))
}

/// For tests: a byte-level model on the CPU, `tiny` cut down to `(n_layer, n_head,
/// n_embd, n_ctx)`, its weights drawn after seeding libtorch with `seed`.
#[cfg(test)]
pub(crate) fn small_byte_model(
    seed: i64,
    (n_layer, n_head, n_embd, n_ctx): (i64, i64, i64, i64),
) -> LanguageModel {
    tch::manual_seed(seed);
    let cfg = GptConfig { n_layer, n_head, n_embd, n_ctx, ..GptConfig::tiny(BYTES_VOCAB_SIZE) };
    LanguageModel::new(cfg, TokenizerKind::Bytes, Device::Cpu).expect("a test model's shape is valid")
}

/// For tests: `n` random words, seeded, each of a length in `lengths` and of letters in
/// `letters`.
#[cfg(test)]
pub(crate) fn random_words(
    n: usize,
    seed: u64,
    lengths: std::ops::RangeInclusive<usize>,
    letters: std::ops::RangeInclusive<u8>,
) -> Vec<String> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let len = rng.random_range(lengths.clone());
            (0..len).map(|_| rng.random_range(letters.clone()) as char).collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny_model() -> LanguageModel {
        tch::manual_seed(1);
        let mut cfg = GptConfig::tiny(BYTES_VOCAB_SIZE);
        cfg.n_layer = 2;
        LanguageModel::new(cfg, TokenizerKind::Bytes, Device::Cpu).unwrap()
    }

    fn saved() -> (tempfile::TempDir, LanguageModel) {
        let dir = tempfile::tempdir().unwrap();
        let model = tiny_model();
        model.save(dir.path(), None).unwrap();
        (dir, model)
    }

    fn load_err(dir: &Path) -> String {
        LanguageModel::load(dir, Device::Cpu).unwrap_err().to_string()
    }

    /// The error of loading a saved tiny model after `edit` has changed its `file`.
    fn load_err_after(file: &str, edit: impl FnOnce(&Path)) -> String {
        let (dir, _model) = saved();
        edit(&dir.path().join(file));
        load_err(dir.path())
    }

    /// The error of loading a saved tiny model whose weights file holds what `edit` makes
    /// of its tensors (named as the checkpoint names them, `transformer.…`).
    fn load_err_with_tensors(edit: impl FnOnce(Vec<(String, Tensor)>) -> Vec<(String, Tensor)>) -> String {
        let (dir, model) = saved();
        let tensors =
            model.vs.variables().into_iter().map(|(n, t)| (format!("transformer.{n}"), t)).collect();
        write_weights(&dir.path().join(WEIGHTS_FILE), &edit(tensors)).unwrap();
        load_err(dir.path())
    }

    #[test]
    fn a_saved_model_loads_with_identical_weights() {
        let (dir, model) = saved();
        let loaded = LanguageModel::load(dir.path(), Device::Cpu).unwrap();
        assert_eq!(loaded.config, model.config);
        assert_eq!(loaded.tokenizer.kind(), TokenizerKind::Bytes);
        let ids = Tensor::from_slice(&[1i64, 2, 3, 4]).unsqueeze(0);
        let diff = (model.logits(&ids, None, false) - loaded.logits(&ids, None, false)).abs().max();
        assert_eq!(f64::try_from(diff).unwrap(), 0.0);
    }

    #[test]
    fn a_missing_tensor_is_named_with_its_file() {
        let err = load_err_with_tensors(|tensors| {
            tensors.into_iter().filter(|(n, _)| n != "transformer.h.1.mlp.c_fc.bias").collect()
        });
        assert!(
            err.contains("model.safetensors")
                && err.contains("missing tensor `transformer.h.1.mlp.c_fc.bias`"),
            "{err}"
        );
    }

    #[test]
    fn a_tensor_of_the_wrong_shape_is_named() {
        let err = load_err_with_tensors(|tensors| {
            let wrong = |n: &str, t| {
                if n == "transformer.wpe.weight" {
                    Tensor::zeros([10, 128], (Kind::Float, Device::Cpu))
                } else {
                    t
                }
            };
            tensors.into_iter().map(|(n, t)| (n.clone(), wrong(&n, t))).collect()
        });
        assert!(
            err.contains("`transformer.wpe.weight` has shape [10, 128]") && err.contains("[256, 128]"),
            "{err}"
        );
    }

    #[test]
    fn weights_stored_in_half_precision_load_as_f32_of_the_same_values() {
        let (dir, model) = saved();
        let half: Vec<(String, Tensor)> = model
            .vs
            .variables()
            .into_iter()
            .map(|(n, t)| (format!("transformer.{n}"), t.to_kind(Kind::Half)))
            .collect();
        Tensor::write_safetensors(&half, dir.path().join(WEIGHTS_FILE)).unwrap();
        let loaded = LanguageModel::load(dir.path(), Device::Cpu).unwrap();
        let loaded_vars = loaded.vs.variables();
        for (name, original) in model.vs.variables() {
            let got = &loaded_vars[&name];
            assert_eq!(got.kind(), Kind::Float, "{name}");
            let want = original.to_kind(Kind::Half).to_kind(Kind::Float);
            assert!(got.equal(&want), "{name} is not its f16 value");
        }
    }

    #[test]
    fn a_header_that_places_a_tensor_past_the_file_names_the_tensor() {
        let err = load_err_after(WEIGHTS_FILE, |path| {
            let bytes = std::fs::read(path).unwrap();
            let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
            let header = std::str::from_utf8(&bytes[8..8 + header_len]).unwrap();
            let mut json: serde_json::Value = serde_json::from_str(header).unwrap();
            let wpe = &mut json["transformer.wpe.weight"]["data_offsets"];
            let (start, end) = (wpe[0].as_u64().unwrap(), wpe[1].as_u64().unwrap());
            *wpe = serde_json::json!([start + 1_000_000, end + 1_000_000]);
            let header = json.to_string().into_bytes();
            let mut out = (header.len() as u64).to_le_bytes().to_vec();
            out.extend_from_slice(&header);
            out.extend_from_slice(&bytes[8 + header_len..]);
            std::fs::write(path, out).unwrap();
        });
        assert!(err.contains("model.safetensors") && err.contains("`transformer.wpe.weight`"), "{err}");
    }

    #[test]
    fn a_truncated_weights_file_is_reported_as_such() {
        let err = load_err_after(WEIGHTS_FILE, |path| {
            let bytes = std::fs::read(path).unwrap();
            std::fs::write(path, &bytes[..bytes.len() / 2]).unwrap();
        });
        assert!(err.contains("model.safetensors") && err.contains("truncated"), "{err}");
    }

    #[test]
    fn an_unknown_architecture_is_refused() {
        let err = load_err_after(CONFIG_FILE, |path| {
            let text = std::fs::read_to_string(path).unwrap().replace("\"gpt2\"", "\"llama\"");
            std::fs::write(path, text).unwrap();
        });
        assert!(err.contains("config.json") && err.contains("unknown architecture `llama`"), "{err}");
    }

    #[test]
    fn a_config_missing_a_field_names_it() {
        let err = load_err_after(CONFIG_FILE, |path| {
            let mut value: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
            value.as_object_mut().unwrap().remove("n_embd");
            std::fs::write(path, value.to_string()).unwrap();
        });
        assert!(err.contains("config.json") && err.contains("n_embd"), "{err}");
    }

    #[test]
    fn an_unexpected_tensor_is_refused() {
        let err = load_err_with_tensors(|mut tensors| {
            tensors.push((
                "transformer.h.9.mlp.c_fc.weight".into(),
                Tensor::zeros([2], (Kind::Float, Device::Cpu)),
            ));
            tensors
        });
        assert!(err.contains("unexpected tensor `transformer.h.9.mlp.c_fc.weight`"), "{err}");
    }

    #[test]
    fn a_score_head_is_saved_and_loaded_beside_the_trunk() {
        let dir = tempfile::tempdir().unwrap();
        let mut model = tiny_model();
        model.add_score_head();
        model.save(dir.path(), None).unwrap();
        let loaded = LanguageModel::load(dir.path(), Device::Cpu).unwrap();
        let ids = Tensor::from_slice(&[5i64, 6, 7]).unsqueeze(0);
        let a = model.scores(&ids, None, false).unwrap();
        let b = loaded.scores(&ids, None, false).unwrap();
        assert_eq!(f64::try_from((a - b).abs().max()).unwrap(), 0.0);
        let bytes = std::fs::read(dir.path().join(WEIGHTS_FILE)).unwrap();
        let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        assert!(file.names().contains(&&"score.weight".to_string()));
    }

    #[test]
    fn the_tokenizer_is_recorded_in_the_checkpoint() {
        let (dir, _model) = saved();
        let meta: PlumbMeta =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join(PLUMB_FILE)).unwrap()).unwrap();
        assert_eq!(meta.tokenizer, TokenizerKind::Bytes);
    }
}

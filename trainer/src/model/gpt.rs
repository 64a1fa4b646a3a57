//! GPT-2 in one file.
//!
//! Variable paths equal GPT-2 checkpoint names (`wte`, `wpe`, `h.{i}.attn.c_attn`,
//! `ln_f`), and linear weights keep GPT-2's Conv1D layout `[in, out]`, so loading a
//! checkpoint is a checked key-for-key copy (see `checkpoint`).
//!
//! The trunk (`Gpt`) returns hidden states; the LM head and the scalar (reward or
//! value) head are small separate modules on top of it.
//!
//! Mixed precision casts per operation, as autocast would: each linear layer (and the
//! LM head) casts its input and weights to the compute kind, so matrix products and
//! attention run in bf16, while layer norms see the f32 residual stream and the
//! log-softmax and losses are computed in f32 by the callers. tch 0.24's `autocast`
//! only switches CUDA's autocast and does nothing on a machine without CUDA, so the
//! cast is written out here: one code path that the CPU tests check and CUDA runs.
//! The weights that train stay f32 (the master weights, which AdamW updates); the
//! bf16 copies are made in the forward pass and freed with its graph.
//!
//! Activation checkpointing: tch binds no custom autograd function and no
//! `torch.utils.checkpoint`, so a checkpointed forward pass runs the blocks without a
//! graph, keeping each block's input, and [`Gpt::backward_checkpointed`] walks the
//! blocks backwards after `loss.backward()`: it recomputes a block from its input with
//! a graph and backpropagates the gradient of its output into it (as `(out · grad).sum()`,
//! whose gradient with respect to `out` is `grad`). Stages call
//! `LanguageModel::backward`, which does both.

use std::sync::Mutex;

use tch::nn::{self, Module};
use tch::{Device, Kind, Tensor};

use crate::config::{Attention, GptConfig};

/// GPT-2's Conv1D: a linear layer whose weight is stored `[in, out]`.
#[derive(Debug)]
struct Conv1D {
    weight: Tensor,
    bias: Tensor,
}

impl Conv1D {
    fn new(p: nn::Path, n_in: i64, n_out: i64, stdev: f64) -> Self {
        let weight = p.var("weight", &[n_in, n_out], nn::Init::Randn { mean: 0.0, stdev });
        let bias = p.var("bias", &[n_out], nn::Init::Const(0.0));
        Conv1D { weight, bias }
    }

    /// (.., in) -> (.., out) in `kind`, one addmm over all rows as GPT-2 computes it.
    fn forward(&self, xs: &Tensor, kind: Kind) -> Tensor {
        let mut size = xs.size();
        let n_in = size[size.len() - 1];
        let xs = xs.to_kind(kind).reshape([-1, n_in]);
        let out = self.bias.to_kind(kind).addmm(&xs, &self.weight.to_kind(kind));
        if let Some(last) = size.last_mut() {
            *last = self.weight.size()[1];
        }
        out.reshape(size)
    }
}

/// Which keys each query may see, in the form `scaled_dot_product_attention` takes.
#[derive(Debug)]
pub enum AttnMask {
    /// Plain causal attention over a whole unpadded sequence: the fused kernels apply it.
    Causal,
    /// (B or 1, 1, T, S) booleans, true where attention is allowed.
    Explicit(Tensor),
}

/// Each layer's mask: one per distinct attention pattern, shared by its layers.
#[derive(Debug)]
struct LayerMasks {
    masks: Vec<AttnMask>,
    /// Index into `masks` of each layer's.
    of_layer: Vec<usize>,
}

impl LayerMasks {
    fn of(&self, layer: usize) -> &AttnMask {
        &self.masks[self.of_layer[layer]]
    }
}

/// One layer's keys and values for every position seen so far, preallocated.
#[derive(Debug)]
struct LayerCache {
    k: Tensor, // (B, H, capacity, D)
    v: Tensor, // (B, H, capacity, D)
}

/// The KV cache of a whole model: decoding appends one position per step instead of
/// recomputing the prefix.
#[derive(Debug)]
pub struct KvCache {
    layers: Vec<LayerCache>,
    len: i64,
    capacity: i64,
}

impl KvCache {
    pub fn new(cfg: &GptConfig, batch: i64, capacity: i64, device: Device, kind: Kind) -> Self {
        let shape = [batch, cfg.n_head, capacity, cfg.head_dim()];
        let layers = (0..cfg.n_layer)
            .map(|_| LayerCache {
                k: Tensor::zeros(shape, (kind, device)),
                v: Tensor::zeros(shape, (kind, device)),
            })
            .collect();
        KvCache { layers, len: 0, capacity }
    }

    /// Positions already cached.
    pub fn len(&self) -> i64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[derive(Debug)]
struct CausalSelfAttention {
    c_attn: Conv1D,
    c_proj: Conv1D,
    n_head: i64,
    dropout: f64,
}

impl CausalSelfAttention {
    fn new(p: nn::Path, cfg: &GptConfig) -> Self {
        let c = cfg.n_embd;
        CausalSelfAttention {
            c_attn: Conv1D::new(&p / "c_attn", c, 3 * c, 0.02),
            c_proj: Conv1D::new(&p / "c_proj", c, c, residual_stdev(cfg)),
            n_head: cfg.n_head,
            dropout: cfg.dropout,
        }
    }

    /// `past` is where this call's positions start in `cache` (0 without one).
    fn forward_t(
        &self,
        xs: &Tensor,
        mask: &AttnMask,
        cache: Option<(&mut LayerCache, i64)>,
        train: bool,
        kind: Kind,
    ) -> Tensor {
        let size = xs.size(); // (B, T, C)
        let (b, t, c) = (size[0], size[1], size[2]);
        let heads = |x: &Tensor| x.view([b, t, self.n_head, c / self.n_head]).transpose(1, 2);
        let qkv = self.c_attn.forward(xs, kind).split(c, 2);
        let (q, k, v) = (heads(&qkv[0]), heads(&qkv[1]), heads(&qkv[2])); // (B, H, T, D)
        let (k, v) = match cache {
            Some((cache, past)) => {
                cache.k.narrow(2, past, t).copy_(&k);
                cache.v.narrow(2, past, t).copy_(&v);
                (cache.k.narrow(2, 0, past + t), cache.v.narrow(2, 0, past + t))
                // (B, H, S, D)
            }
            None => (k, v),
        };
        let dropout = if train { self.dropout } else { 0.0 };
        let y = match mask {
            AttnMask::Causal => {
                Tensor::scaled_dot_product_attention::<Tensor>(&q, &k, &v, None, dropout, true, None, false)
            }
            AttnMask::Explicit(m) => {
                Tensor::scaled_dot_product_attention(&q, &k, &v, Some(m), dropout, false, None, false)
            }
        }; // (B, H, T, D)
        let y = y.transpose(1, 2).contiguous().view([b, t, c]);
        self.c_proj.forward(&y, kind).dropout(self.dropout, train)
    }
}

#[derive(Debug)]
struct Mlp {
    c_fc: Conv1D,
    c_proj: Conv1D,
    dropout: f64,
}

impl Mlp {
    fn new(p: nn::Path, cfg: &GptConfig) -> Self {
        let c = cfg.n_embd;
        Mlp {
            c_fc: Conv1D::new(&p / "c_fc", c, 4 * c, 0.02),
            c_proj: Conv1D::new(&p / "c_proj", 4 * c, c, residual_stdev(cfg)),
            dropout: cfg.dropout,
        }
    }

    fn forward_t(&self, xs: &Tensor, train: bool, kind: Kind) -> Tensor {
        let h = self.c_fc.forward(xs, kind).gelu("tanh");
        self.c_proj.forward(&h, kind).dropout(self.dropout, train)
    }
}

/// Pre-norm transformer block: x + attn(ln_1(x)), then x + mlp(ln_2(x)).
#[derive(Debug)]
struct Block {
    ln_1: nn::LayerNorm,
    attn: CausalSelfAttention,
    ln_2: nn::LayerNorm,
    mlp: Mlp,
}

impl Block {
    fn new(p: nn::Path, cfg: &GptConfig) -> Self {
        Block {
            ln_1: layer_norm(&p / "ln_1", cfg),
            attn: CausalSelfAttention::new(&p / "attn", cfg),
            ln_2: layer_norm(&p / "ln_2", cfg),
            mlp: Mlp::new(&p / "mlp", cfg),
        }
    }

    fn forward_t(
        &self,
        xs: &Tensor,
        mask: &AttnMask,
        cache: Option<(&mut LayerCache, i64)>,
        train: bool,
        kind: Kind,
    ) -> Tensor {
        // The residual stream keeps the embeddings' kind (f32 under mixed precision):
        // adding a bf16 branch to it promotes the sum to f32.
        let xs = xs + self.attn.forward_t(&self.ln_1.forward(xs), mask, cache, train, kind);
        &xs + self.mlp.forward_t(&self.ln_2.forward(&xs), train, kind)
    }
}

/// GPT-2's scaled init of the projections that write into the residual stream, so
/// that its variance does not grow with depth.
fn residual_stdev(cfg: &GptConfig) -> f64 {
    0.02 / ((2 * cfg.n_layer) as f64).sqrt()
}

fn layer_norm(p: nn::Path, cfg: &GptConfig) -> nn::LayerNorm {
    let c = nn::LayerNormConfig { eps: cfg.layer_norm_epsilon, ..Default::default() };
    nn::layer_norm(p, vec![cfg.n_embd], c)
}

/// What a checkpointed forward pass keeps for [`Gpt::backward_checkpointed`].
#[derive(Debug)]
struct Segment {
    /// The embeddings, with their graph back to `wte` and `wpe`.
    embeddings: Tensor,
    /// Each block's input, without a graph.
    inputs: Vec<Tensor>,
    /// Each block's dropout seed, so that its recomputation draws the same masks
    /// (empty without dropout).
    seeds: Vec<i64>,
    masks: LayerMasks,
    /// The last block's output as a leaf: `loss.backward()` leaves its gradient here.
    output: Tensor,
}

/// The GPT-2 trunk: embeddings, blocks and the final layer norm; returns hidden states.
#[derive(Debug)]
pub struct Gpt {
    wte: nn::Embedding,
    wpe: nn::Embedding,
    h: Vec<Block>,
    ln_f: nn::LayerNorm,
    cfg: GptConfig,
    /// The kind matrix products compute in (see the module's doc).
    compute: Kind,
    /// Whether a training forward pass keeps only each block's input (see the module's
    /// doc).
    checkpointing: bool,
    /// Checkpointed forward passes whose backward is not done yet.
    pending: Mutex<Vec<Segment>>,
}

impl Gpt {
    pub fn new(p: &nn::Path, cfg: &GptConfig) -> Self {
        let emb = |name: &str, n: i64| {
            let c = nn::EmbeddingConfig {
                ws_init: nn::Init::Randn { mean: 0.0, stdev: 0.02 },
                ..Default::default()
            };
            nn::embedding(p / name, n, cfg.n_embd, c)
        };
        let h = (0..cfg.n_layer).map(|i| Block::new(p / "h" / i, cfg)).collect();
        Gpt {
            wte: emb("wte", cfg.vocab_size),
            wpe: emb("wpe", cfg.n_ctx),
            h,
            ln_f: layer_norm(p / "ln_f", cfg),
            cfg: cfg.clone(),
            compute: Kind::Float,
            checkpointing: false,
            pending: Mutex::new(Vec::new()),
        }
    }

    pub fn config(&self) -> &GptConfig {
        &self.cfg
    }

    /// The kind matrix products compute in.
    pub fn compute_kind(&self) -> Kind {
        self.compute
    }

    /// Computes matrix products and attention in `kind`, whatever the weights' kind.
    pub fn set_compute_kind(&mut self, kind: Kind) {
        self.compute = kind;
    }

    pub fn checkpointing(&self) -> bool {
        self.checkpointing
    }

    /// Turns activation checkpointing on or off for training forward passes; with it
    /// on, a backward pass must go through [`Gpt::backward_checkpointed`].
    pub fn set_checkpointing(&mut self, on: bool) {
        self.checkpointing = on;
    }

    /// Token embedding matrix (V, C), which the LM head shares.
    pub fn wte(&self) -> &Tensor {
        &self.wte.ws
    }

    /// Hidden states (B, T, C) of unpadded sequences `ids` (B, T), positions 0..T.
    pub fn forward_t(&self, ids: &Tensor, train: bool) -> Tensor {
        self.forward_masked(ids, None, None, train)
    }

    /// Hidden states (B, T, C) for `ids` (B, T) that may be padded and may continue a
    /// cached prefix.
    ///
    /// `attention_mask` (B, S) covers the cached positions and these, S = cached + T:
    /// 1 for a real token, 0 for padding (left or right). Position ids count real tokens
    /// only, so a left-padded prompt sees the positions it would see unpadded.
    pub fn forward_masked(
        &self,
        ids: &Tensor,
        attention_mask: Option<&Tensor>,
        mut cache: Option<&mut KvCache>,
        train: bool,
    ) -> Tensor {
        let size = ids.size(); // (B, T)
        let t = size[1];
        let past = cache.as_ref().map_or(0, |c| c.len);
        let total = past + t;
        assert!(total <= self.cfg.n_ctx, "sequence of {total} tokens exceeds n_ctx {}", self.cfg.n_ctx);
        if let Some(c) = cache.as_ref() {
            assert!(total <= c.capacity, "KV cache of {} positions is full", c.capacity);
        }
        let device = ids.device();

        // Absolute positions of every key slot (B or 1, S); queries are the last T.
        let key_positions = match attention_mask {
            Some(m) => (m.cumsum(1, Kind::Int64) - 1).clamp_min(0),
            None => Tensor::arange(total, (Kind::Int64, device)).unsqueeze(0),
        };
        let positions = key_positions.narrow(1, past, t);
        let ids = match attention_mask {
            // Padding ids may lie outside the embedding (GPT-2's PAD); they are masked anyway.
            Some(m) => ids.masked_fill(&m.narrow(1, past, t).eq(0), 0),
            None => ids.shallow_clone(),
        };
        let masks = self.layer_masks(attention_mask, &key_positions, past, t);

        let mut xs = (self.wte.forward(&ids) + self.wpe.forward(&positions)).dropout(self.cfg.dropout, train); // (B, T, C)
        if train && self.checkpointing && cache.is_none() {
            return self.forward_checkpointed(xs, masks);
        }
        for (i, block) in self.h.iter().enumerate() {
            let layer_cache = cache.as_deref_mut().map(|c| (&mut c.layers[i], past));
            xs = block.forward_t(&xs, masks.of(i), layer_cache, train, self.compute);
        }
        if let Some(c) = cache {
            c.len = total;
        }
        self.ln_f.forward(&xs)
    }

    /// The blocks of a training pass without their graphs, keeping each block's input;
    /// returns the hidden states, whose graph starts at the last block's output.
    fn forward_checkpointed(&self, embeddings: Tensor, masks: LayerMasks) -> Tensor {
        let mut inputs = Vec::with_capacity(self.h.len());
        let mut seeds = Vec::new();
        let mut xs = embeddings.detach();
        {
            let _guard = tch::no_grad_guard();
            for (i, block) in self.h.iter().enumerate() {
                inputs.push(xs.shallow_clone());
                if self.cfg.dropout > 0.0 {
                    seeds.push(draw_seed());
                    tch::manual_seed(seeds[seeds.len() - 1]);
                }
                xs = block.forward_t(&xs, masks.of(i), None, true, self.compute);
            }
        }
        let output = xs.detach().set_requires_grad(true);
        let hidden = self.ln_f.forward(&output);
        let segment = Segment { embeddings, inputs, seeds, masks, output };
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).push(segment);
        hidden
    }

    /// The backward pass of the blocks of every checkpointed forward pass since the last
    /// call, after `loss.backward()` has reached their outputs: each block is recomputed
    /// from its input, last block first, and its output's gradient backpropagated into
    /// its weights and input. Does nothing without checkpointed passes.
    pub fn backward_checkpointed(&self) {
        let segments = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        for segment in segments.into_iter().rev() {
            let mut grad = segment.output.grad();
            if !grad.defined() {
                continue; // this pass did not reach the loss
            }
            for (i, block) in self.h.iter().enumerate().rev() {
                let input = segment.inputs[i].detach().set_requires_grad(true);
                if let Some(&seed) = segment.seeds.get(i) {
                    tch::manual_seed(seed);
                }
                let out = block.forward_t(&input, segment.masks.of(i), None, true, self.compute);
                (out * &grad).sum(Kind::Float).backward();
                grad = input.grad();
            }
            (segment.embeddings * grad).sum(Kind::Float).backward();
        }
    }

    /// Each layer's attention mask for `forward_masked`, built once per distinct pattern.
    fn layer_masks(
        &self,
        attention_mask: Option<&Tensor>,
        key_positions: &Tensor,
        past: i64,
        t: i64,
    ) -> LayerMasks {
        let patterns = self.cfg.attention.distinct();
        let masks =
            patterns.iter().map(|&p| attention_mask_of(p, attention_mask, key_positions, past, t)).collect();
        let of_layer = (0..self.h.len())
            .map(|i| {
                patterns.iter().position(|&p| p == self.cfg.attention.layer(i)).expect("a distinct pattern")
            })
            .collect();
        LayerMasks { masks, of_layer }
    }
}

/// The mask of one attention pattern for `forward_masked`; the fused causal kernel when
/// it can.
fn attention_mask_of(
    pattern: Attention,
    attention_mask: Option<&Tensor>,
    key_positions: &Tensor,
    past: i64,
    t: i64,
) -> AttnMask {
    if attention_mask.is_none() && past == 0 && pattern == Attention::Dense {
        return AttnMask::Causal;
    }
    let device = key_positions.device();
    let total = past + t;
    let q_slot = Tensor::arange_start(past, total, (Kind::Int64, device)).unsqueeze(1); // (T, 1)
    let k_slot = Tensor::arange(total, (Kind::Int64, device)).unsqueeze(0); // (1, S)
    let mut allowed = k_slot.le_tensor(&q_slot).unsqueeze(0); // (1, T, S)
    if let Some(m) = attention_mask {
        allowed = allowed.logical_and(&m.ne(0).unsqueeze(1)); // (B, T, S)
    }
    if let Attention::Sparse { window, stride } = pattern {
        let q_pos = key_positions.narrow(1, past, t).unsqueeze(2); // (B, T, 1)
        let distance = q_pos - key_positions.unsqueeze(1); // (B, T, S)
        let sparse = distance.lt(window).logical_or(&distance.remainder(stride).eq(0));
        allowed = allowed.logical_and(&sparse);
    }
    // A padding query would see no key at all and give NaN; let it see itself.
    let own_slot = k_slot.eq_tensor(&q_slot).unsqueeze(0);
    AttnMask::Explicit(allowed.logical_or(&own_slot).unsqueeze(1)) // (B, 1, T, S)
}

/// A seed for one block's dropout masks, drawn from libtorch's generator so that it
/// follows the run's seed.
fn draw_seed() -> i64 {
    Tensor::randint(i64::MAX, [1], (Kind::Int64, Device::Cpu)).int64_value(&[0])
}

/// The language-model head, tied to the token embedding as in GPT-2.
#[derive(Debug)]
pub struct LmHead {
    weight: Tensor, // (V, C), shared with `wte`
    /// The kind its matrix product computes in (the trunk's).
    compute: Kind,
}

impl LmHead {
    pub fn tied(gpt: &Gpt) -> Self {
        LmHead { weight: gpt.wte().shallow_clone(), compute: gpt.compute_kind() }
    }

    /// Logits (.., V) from hidden states (.., C), in the compute kind: callers take the
    /// log-softmax in f32.
    pub fn forward(&self, hidden: &Tensor) -> Tensor {
        hidden.to_kind(self.compute).linear::<Tensor>(&self.weight.to_kind(self.compute), None)
    }

    pub fn set_compute_kind(&mut self, kind: Kind) {
        self.compute = kind;
    }
}

/// A scalar read from hidden states: the reward model's reward, PPO's value.
#[derive(Debug)]
pub struct ScalarHead {
    linear: nn::Linear,
}

impl ScalarHead {
    pub fn new(p: nn::Path, cfg: &GptConfig) -> Self {
        // lm-human-preferences initialises reward heads with std 1/sqrt(C + 1).
        let stdev = 1.0 / ((cfg.n_embd + 1) as f64).sqrt();
        let c = nn::LinearConfig {
            ws_init: nn::Init::Randn { mean: 0.0, stdev },
            bs_init: Some(nn::Init::Const(0.0)),
            bias: true,
        };
        ScalarHead { linear: nn::linear(p, cfg.n_embd, 1, c) }
    }

    /// One scalar per position: (.., C) -> (..), in the head's own kind (f32 under mixed
    /// precision: it is one dot product per position).
    pub fn forward(&self, hidden: &Tensor) -> Tensor {
        self.linear.forward(&hidden.to_kind(self.linear.ws.kind())).squeeze_dim(-1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AttentionLayers;
    use spec::LayerWords;

    fn tiny(attention: Attention) -> (nn::VarStore, Gpt) {
        tiny_layers(AttentionLayers::Every(attention))
    }

    /// Two layers, or as many as `attention` lists.
    fn tiny_layers(attention: AttentionLayers) -> (nn::VarStore, Gpt) {
        tch::manual_seed(0);
        let mut cfg = GptConfig::tiny(258);
        cfg.n_ctx = 32;
        cfg.n_layer = match &attention {
            AttentionLayers::PerLayer(layers) => layers.len() as i64,
            AttentionLayers::Every(_) => 2,
        };
        cfg.attention = attention;
        let vs = nn::VarStore::new(Device::Cpu);
        let gpt = Gpt::new(&vs.root(), &cfg);
        (vs, gpt)
    }

    fn random_ids(b: i64, t: i64) -> Tensor {
        Tensor::randint(256, [b, t], (Kind::Int64, Device::Cpu))
    }

    fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
        (a - b).abs().max().double_value(&[])
    }

    #[test]
    fn the_trunk_returns_hidden_states_of_width_n_embd() {
        let (_vs, gpt) = tiny(Attention::Dense);
        let hidden = gpt.forward_t(&random_ids(3, 7), false);
        assert_eq!(hidden.size(), vec![3, 7, 128]);
        let logits = LmHead::tied(&gpt).forward(&hidden);
        assert_eq!(logits.size(), vec![3, 7, 258]);
        let scalar = ScalarHead::new(nn::VarStore::new(Device::Cpu).root(), gpt.config());
        assert_eq!(scalar.forward(&hidden).size(), vec![3, 7]);
    }

    #[test]
    fn residual_projections_are_initialised_smaller() {
        let (vs, _gpt) = tiny(Attention::Dense);
        let vars = vs.variables();
        let std = |name: &str| f64::try_from(vars[name].std(true)).unwrap();
        let expected = 0.02 / (4.0f64).sqrt();
        assert!((std("h.0.attn.c_proj.weight") - expected).abs() < 0.002);
        assert!((std("h.1.mlp.c_proj.weight") - expected).abs() < 0.002);
        assert!((std("h.0.attn.c_attn.weight") - 0.02).abs() < 0.002);
    }

    #[test]
    fn a_token_never_depends_on_later_tokens() {
        let (_vs, gpt) = tiny(Attention::Dense);
        let ids = random_ids(1, 10);
        let changed = ids.copy();
        let _ = changed.narrow(1, 6, 4).fill_(7);
        let a = gpt.forward_t(&ids, false).narrow(1, 0, 6);
        let b = gpt.forward_t(&changed, false).narrow(1, 0, 6);
        assert!(max_abs_diff(&a, &b) < 1e-6);
    }

    #[test]
    fn cached_decoding_gives_the_hidden_states_of_full_recomputation() {
        let sparse = Attention::Sparse { window: 3, stride: 4 };
        let (_vs, gpt) = tiny_layers(AttentionLayers::PerLayer(vec![Attention::Dense, sparse, sparse]));
        let ids = random_ids(2, 12);
        let full = gpt.forward_t(&ids, false);
        let mut cache = KvCache::new(gpt.config(), 2, 12, Device::Cpu, Kind::Float);
        let mask = Tensor::ones([2, 12], (Kind::Int64, Device::Cpu));
        let mut steps = vec![gpt.forward_masked(
            &ids.narrow(1, 0, 5),
            Some(&mask.narrow(1, 0, 5)),
            Some(&mut cache),
            false,
        )];
        for i in 5..12 {
            let m = mask.narrow(1, 0, i + 1);
            steps.push(gpt.forward_masked(&ids.narrow(1, i, 1), Some(&m), Some(&mut cache), false));
        }
        assert!(max_abs_diff(&full, &Tensor::cat(&steps, 1)) < 1e-5);
    }

    #[test]
    fn left_padding_does_not_change_a_sequence() {
        let (_vs, gpt) = tiny(Attention::Dense);
        let ids = random_ids(1, 6);
        let alone = gpt.forward_t(&ids, false);
        let padded = Tensor::cat(&[Tensor::full([1, 3], 257, (Kind::Int64, Device::Cpu)), ids], 1);
        let mask = Tensor::cat(
            &[
                Tensor::zeros([1, 3], (Kind::Int64, Device::Cpu)),
                Tensor::ones([1, 6], (Kind::Int64, Device::Cpu)),
            ],
            1,
        );
        let out = gpt.forward_masked(&padded, Some(&mask), None, false).narrow(1, 3, 6);
        assert!(max_abs_diff(&alone, &out) < 1e-5);
        assert!(!bool::try_from(out.isnan().any()).unwrap());
    }

    /// The attention output at a query must not change when the input at a key the
    /// sparse pattern masks changes: that key's weight is exactly zero.
    #[test]
    fn sparse_attention_gives_masked_positions_zero_weight() {
        let attention = Attention::Sparse { window: 2, stride: 3 };
        let (_vs, gpt) = tiny(attention);
        let attn = &gpt.h[0].attn;
        let t = 10;
        let xs = Tensor::randn([1, t, 128], (Kind::Float, Device::Cpu));
        let mask = attention_mask_of(
            attention,
            None,
            &Tensor::arange(t, (Kind::Int64, Device::Cpu)).unsqueeze(0),
            0,
            t,
        );
        let base = attn.forward_t(&xs, &mask, None, false, Kind::Float);
        let q = t - 1;
        for k in 0..t {
            let perturbed = xs.copy();
            let _ = perturbed.narrow(1, k, 1).fill_(3.0);
            let out = attn.forward_t(&perturbed, &mask, None, false, Kind::Float);
            let moved = max_abs_diff(&base.narrow(1, q, 1), &out.narrow(1, q, 1));
            if attention.allows(q, k) {
                assert!(moved > 1e-4, "key {k} is allowed but has no effect");
            } else {
                assert_eq!(moved, 0.0, "key {k} is masked but moved the output by {moved}");
            }
        }
    }

    /// GPT-3's alternating layers, layer by layer: in each layer, a query's output moves
    /// when an input at a key its layer's pattern allows changes, and not at all when
    /// the pattern masks that key.
    #[test]
    fn alternating_layers_attend_as_specified_layer_by_layer() {
        let sparse = Attention::Sparse { window: 2, stride: 3 };
        let words: LayerWords = "alternating".parse().unwrap();
        let layers = AttentionLayers::from_words(&words, 4, sparse).unwrap();
        let (_vs, gpt) = tiny_layers(layers.clone());
        let t = 10;
        let masks = gpt.layer_masks(None, &Tensor::arange(t, (Kind::Int64, Device::Cpu)).unsqueeze(0), 0, t);
        let xs = Tensor::randn([1, t, 128], (Kind::Float, Device::Cpu));
        let q = t - 1;
        for (layer, block) in gpt.h.iter().enumerate() {
            let pattern = layers.layer(layer);
            assert_eq!(pattern, if layer % 2 == 0 { Attention::Dense } else { sparse });
            let base = block.attn.forward_t(&xs, masks.of(layer), None, false, Kind::Float);
            for k in 0..t {
                let perturbed = xs.copy();
                let _ = perturbed.narrow(1, k, 1).fill_(3.0);
                let out = block.attn.forward_t(&perturbed, masks.of(layer), None, false, Kind::Float);
                let moved = max_abs_diff(&base.narrow(1, q, 1), &out.narrow(1, q, 1));
                if pattern.allows(q, k) {
                    assert!(moved > 1e-4, "layer {layer}: key {k} is allowed but has no effect");
                } else {
                    assert_eq!(moved, 0.0, "layer {layer}: key {k} is masked but moved the output");
                }
            }
        }
        // The whole model differs from a dense one with the same weights.
        let (vs_dense, dense) = tiny_layers(AttentionLayers::PerLayer(vec![Attention::Dense; 4]));
        let (mut vs_alt, alternating) = tiny_layers(layers);
        vs_alt.copy(&vs_dense).unwrap();
        let ids = random_ids(1, 12);
        assert!(max_abs_diff(&dense.forward_t(&ids, false), &alternating.forward_t(&ids, false)) > 1e-4);
    }

    #[test]
    fn sparse_attention_with_a_window_of_the_whole_context_is_dense() {
        let (vs_dense, dense) = tiny(Attention::Dense);
        let (mut vs_sparse, sparse) = tiny(Attention::Sparse { window: 32, stride: 5 });
        vs_sparse.copy(&vs_dense).unwrap();
        let ids = random_ids(2, 32);
        let a = dense.forward_t(&ids, false);
        let b = sparse.forward_t(&ids, false);
        assert!(max_abs_diff(&a, &b) < 1e-5);
    }

    #[test]
    fn dropout_only_acts_in_training() {
        let (_vs, gpt) = tiny(Attention::Dense);
        let ids = random_ids(1, 8);
        let a = gpt.forward_t(&ids, false);
        let b = gpt.forward_t(&ids, false);
        assert_eq!(max_abs_diff(&a, &b), 0.0);
        let c = gpt.forward_t(&ids, true);
        assert!(max_abs_diff(&a, &c) > 1e-4);
    }
}

//! GPT-2 in one file.
//!
//! Variable paths equal GPT-2 checkpoint names (`wte`, `wpe`, `h.{i}.attn.c_attn`,
//! `ln_f`), and linear weights keep GPT-2's Conv1D layout `[in, out]`, so loading a
//! checkpoint is a checked key-for-key copy (see `checkpoint`).
//!
//! The trunk (`Gpt`) returns hidden states; the LM head and the scalar (reward or
//! value) head are small separate modules on top of it.

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

    fn forward(&self, xs: &Tensor) -> Tensor {
        // (.., in) -> (.., out), one addmm over all rows as GPT-2 computes it.
        let mut size = xs.size();
        let n_in = size[size.len() - 1];
        let out = self.bias.addmm(&xs.reshape([-1, n_in]), &self.weight);
        if let Some(last) = size.last_mut() {
            *last = self.weight.size()[1];
        }
        out.reshape(size)
    }
}

/// Which keys each query may see, in the form `scaled_dot_product_attention` takes.
pub enum AttnMask {
    /// Plain causal attention over a whole unpadded sequence: the fused kernels apply it.
    Causal,
    /// (B or 1, 1, T, S) booleans, true where attention is allowed.
    Explicit(Tensor),
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
    ) -> Tensor {
        let size = xs.size(); // (B, T, C)
        let (b, t, c) = (size[0], size[1], size[2]);
        let heads = |x: &Tensor| x.view([b, t, self.n_head, c / self.n_head]).transpose(1, 2);
        let qkv = self.c_attn.forward(xs).split(c, 2);
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
        self.c_proj.forward(&y).dropout(self.dropout, train)
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

    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let h = self.c_fc.forward(xs).gelu("tanh");
        self.c_proj.forward(&h).dropout(self.dropout, train)
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
    ) -> Tensor {
        let xs = xs + self.attn.forward_t(&self.ln_1.forward(xs), mask, cache, train);
        &xs + self.mlp.forward_t(&self.ln_2.forward(&xs), train)
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

/// The GPT-2 trunk: embeddings, blocks and the final layer norm; returns hidden states.
#[derive(Debug)]
pub struct Gpt {
    wte: nn::Embedding,
    wpe: nn::Embedding,
    h: Vec<Block>,
    ln_f: nn::LayerNorm,
    cfg: GptConfig,
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
        }
    }

    pub fn config(&self) -> &GptConfig {
        &self.cfg
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
        let mask = self.attention_mask(attention_mask, &key_positions, past, t);

        let mut xs = (self.wte.forward(&ids) + self.wpe.forward(&positions)).dropout(self.cfg.dropout, train); // (B, T, C)
        for (i, block) in self.h.iter().enumerate() {
            let layer_cache = cache.as_deref_mut().map(|c| (&mut c.layers[i], past));
            xs = block.forward_t(&xs, &mask, layer_cache, train);
        }
        if let Some(c) = cache {
            c.len = total;
        }
        self.ln_f.forward(&xs)
    }

    /// Builds the attention mask of `forward_masked`; the fused causal kernel when it can.
    fn attention_mask(
        &self,
        attention_mask: Option<&Tensor>,
        key_positions: &Tensor,
        past: i64,
        t: i64,
    ) -> AttnMask {
        let dense = self.cfg.attention == Attention::Dense;
        if attention_mask.is_none() && past == 0 && dense {
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
        if let Attention::Sparse { window, stride } = self.cfg.attention {
            let q_pos = key_positions.narrow(1, past, t).unsqueeze(2); // (B, T, 1)
            let distance = q_pos - key_positions.unsqueeze(1); // (B, T, S)
            let sparse = distance.lt(window).logical_or(&distance.remainder(stride).eq(0));
            allowed = allowed.logical_and(&sparse);
        }
        // A padding query would see no key at all and give NaN; let it see itself.
        let own_slot = k_slot.eq_tensor(&q_slot).unsqueeze(0);
        AttnMask::Explicit(allowed.logical_or(&own_slot).unsqueeze(1)) // (B, 1, T, S)
    }
}

/// The language-model head, tied to the token embedding as in GPT-2.
#[derive(Debug)]
pub struct LmHead {
    weight: Tensor, // (V, C), shared with `wte`
}

impl LmHead {
    pub fn tied(gpt: &Gpt) -> Self {
        LmHead { weight: gpt.wte().shallow_clone() }
    }

    /// Logits (.., V) from hidden states (.., C).
    pub fn forward(&self, hidden: &Tensor) -> Tensor {
        hidden.linear::<Tensor>(&self.weight, None)
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

    /// One scalar per position: (.., C) -> (..).
    pub fn forward(&self, hidden: &Tensor) -> Tensor {
        self.linear.forward(hidden).squeeze_dim(-1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny(attention: Attention) -> (nn::VarStore, Gpt) {
        tch::manual_seed(0);
        let mut cfg = GptConfig::tiny(258);
        cfg.n_ctx = 32;
        cfg.n_layer = 2;
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
        let (_vs, gpt) = tiny(Attention::Sparse { window: 3, stride: 4 });
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
        let mask =
            gpt.attention_mask(None, &Tensor::arange(t, (Kind::Int64, Device::Cpu)).unsqueeze(0), 0, t);
        let base = attn.forward_t(&xs, &mask, None, false);
        let q = t - 1;
        for k in 0..t {
            let perturbed = xs.copy();
            let _ = perturbed.narrow(1, k, 1).fill_(3.0);
            let out = attn.forward_t(&perturbed, &mask, None, false);
            let moved = max_abs_diff(&base.narrow(1, q, 1), &out.narrow(1, q, 1));
            if attention.allows(q, k) {
                assert!(moved > 1e-4, "key {k} is allowed but has no effect");
            } else {
                assert_eq!(moved, 0.0, "key {k} is masked but moved the output by {moved}");
            }
        }
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

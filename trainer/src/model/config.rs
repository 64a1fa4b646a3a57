//! The GPT's shape: vocabulary, context, depth, width, dropout and attention pattern.

use serde::{Deserialize, Serialize};
use spec::LayerWords;

/// Which tokens a position may attend to (always only itself and earlier ones).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Attention {
    /// Every earlier token (GPT-2).
    Dense,
    /// GPT-3's alternating locally banded sparse pattern (from the Sparse Transformer,
    /// "strided"): a token attends to the previous `window` tokens (itself included)
    /// and to every earlier token whose distance is a multiple of `stride`.
    Sparse { window: i64, stride: i64 },
}

impl Attention {
    /// Whether a query at position `q` may attend to a key at position `k`.
    pub fn allows(&self, q: i64, k: i64) -> bool {
        if k > q {
            return false;
        }
        match *self {
            Attention::Dense => true,
            Attention::Sparse { window, stride } => q - k < window || (q - k) % stride == 0,
        }
    }
}

/// Each layer's attention pattern, as `plumb.json` keeps it. A checkpoint written
/// before patterns were per layer holds one pattern, which every layer uses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AttentionLayers {
    /// One pattern for every layer.
    Every(Attention),
    /// One pattern per layer, first layer first.
    PerLayer(Vec<Attention>),
}

impl AttentionLayers {
    pub const DENSE: AttentionLayers = AttentionLayers::Every(Attention::Dense);

    /// The layers `words` name sparse attend through `sparse`, the others densely; the
    /// same pattern on every layer is kept as one.
    pub fn from_words(words: &LayerWords, n_layer: i64, sparse: Attention) -> Result<Self, String> {
        let layers: Vec<Attention> = words
            .sparse_layers(n_layer.max(0) as usize)?
            .into_iter()
            .map(|is_sparse| if is_sparse { sparse } else { Attention::Dense })
            .collect();
        Ok(match layers.first() {
            Some(&first) if layers.iter().all(|&a| a == first) => AttentionLayers::Every(first),
            _ => AttentionLayers::PerLayer(layers),
        })
    }

    /// The pattern of layer `layer` (counting from 0).
    pub fn layer(&self, layer: usize) -> Attention {
        match self {
            AttentionLayers::Every(a) => *a,
            AttentionLayers::PerLayer(layers) => layers[layer],
        }
    }

    /// The distinct patterns, in the order of their first layer.
    pub fn distinct(&self) -> Vec<Attention> {
        let mut out = Vec::new();
        let all = match self {
            AttentionLayers::Every(a) => std::slice::from_ref(a),
            AttentionLayers::PerLayer(layers) => layers.as_slice(),
        };
        for a in all {
            if !out.contains(a) {
                out.push(*a);
            }
        }
        out
    }
}

/// GPT-3 leaves the band's size open; the Sparse Transformer's strided pattern takes
/// window = stride ≈ √n, so that each token reaches every earlier one in two layers.
pub fn default_sparse(n_ctx: i64, window: Option<i64>, stride: Option<i64>) -> Attention {
    let root = ((n_ctx.max(1) as f64).sqrt().round() as i64).max(1);
    Attention::Sparse { window: window.unwrap_or(root), stride: stride.unwrap_or(root) }
}

/// The named model sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preset {
    /// 4 layers, 4 heads, 128 wide, 256 positions: seconds to train on a CPU.
    Tiny,
    /// GPT-2 small, 124M parameters with the GPT-2 vocabulary.
    Gpt2,
    /// GPT-2 medium, 355M parameters with the GPT-2 vocabulary.
    Gpt2Medium,
    /// GPT-2 large, 774M parameters with the GPT-2 vocabulary.
    Gpt2Large,
    /// GPT-2 XL, 1.5B parameters with the GPT-2 vocabulary.
    Gpt2Xl,
}

choice_words!(Preset, "preset", {
    "tiny" => Tiny, "gpt2" => Gpt2, "gpt2-medium" => Gpt2Medium, "gpt2-large" => Gpt2Large, "gpt2-xl" => Gpt2Xl
});

impl Preset {
    /// Every preset, smallest first.
    pub const ALL: [Preset; 5] =
        [Preset::Tiny, Preset::Gpt2, Preset::Gpt2Medium, Preset::Gpt2Large, Preset::Gpt2Xl];
}

/// The architecture's hyper-parameters, named as in GPT-2's checkpoints.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GptConfig {
    /// Rows of the token embedding (and the LM head it is tied to).
    pub vocab_size: i64,
    /// Context length: the number of learned position embeddings.
    pub n_ctx: i64,
    pub n_layer: i64,
    pub n_head: i64,
    /// Width of the residual stream.
    pub n_embd: i64,
    /// Dropout on embeddings, attention weights and residual branches (GPT-2: 0.1).
    pub dropout: f64,
    pub layer_norm_epsilon: f64,
    pub attention: AttentionLayers,
}

impl GptConfig {
    pub fn preset(preset: Preset, vocab_size: i64) -> Self {
        let (n_layer, n_head, n_embd, n_ctx) = match preset {
            Preset::Tiny => (4, 4, 128, 256),
            Preset::Gpt2 => (12, 12, 768, 1024),
            Preset::Gpt2Medium => (24, 16, 1024, 1024),
            Preset::Gpt2Large => (36, 20, 1280, 1024),
            Preset::Gpt2Xl => (48, 25, 1600, 1024),
        };
        GptConfig {
            vocab_size,
            n_ctx,
            n_layer,
            n_head,
            n_embd,
            dropout: 0.1,
            layer_norm_epsilon: 1e-5,
            attention: AttentionLayers::DENSE,
        }
    }

    pub fn tiny(vocab_size: i64) -> Self {
        Self::preset(Preset::Tiny, vocab_size)
    }

    pub fn gpt2() -> Self {
        Self::preset(Preset::Gpt2, crate::tokenizer::GPT2_VOCAB_SIZE)
    }

    pub fn gpt2_medium() -> Self {
        Self::preset(Preset::Gpt2Medium, crate::tokenizer::GPT2_VOCAB_SIZE)
    }

    /// Refuses shapes the model cannot be built with, naming the field.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("vocab_size", self.vocab_size),
            ("n_ctx", self.n_ctx),
            ("n_layer", self.n_layer),
            ("n_head", self.n_head),
            ("n_embd", self.n_embd),
        ];
        for (field, value) in positive {
            if value <= 0 {
                return Err(format!("{field} must be positive, got {value}"));
            }
        }
        if self.n_embd % self.n_head != 0 {
            return Err(format!("n_embd ({}) must be a multiple of n_head ({})", self.n_embd, self.n_head));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(format!("dropout must be in [0, 1), got {}", self.dropout));
        }
        if let AttentionLayers::PerLayer(layers) = &self.attention {
            if layers.len() as i64 != self.n_layer {
                return Err(format!(
                    "attention names {} layers but n_layer is {}",
                    layers.len(),
                    self.n_layer
                ));
            }
        }
        for attention in self.attention.distinct() {
            if let Attention::Sparse { window, stride } = attention {
                if window < 1 || stride < 1 {
                    return Err(format!(
                        "sparse attention needs window >= 1 and stride >= 1, got window {window}, stride {stride}"
                    ));
                }
            }
        }
        Ok(())
    }

    pub fn head_dim(&self) -> i64 {
        self.n_embd / self.n_head
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gpt2_preset_has_gpt2_small_shapes() {
        let cfg = GptConfig::gpt2();
        assert_eq!((cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.n_ctx), (12, 12, 768, 1024));
        assert_eq!(cfg.vocab_size, 50257);
    }

    #[test]
    fn the_large_presets_have_gpt2s_shapes() {
        let shape = |p| {
            let c = GptConfig::preset(p, 50257);
            c.validate().unwrap();
            (c.n_layer, c.n_head, c.n_embd, c.head_dim())
        };
        assert_eq!(shape(Preset::Gpt2Large), (36, 20, 1280, 64));
        assert_eq!(shape(Preset::Gpt2Xl), (48, 25, 1600, 64));
        assert_eq!("gpt2-xl".parse::<Preset>(), Ok(Preset::Gpt2Xl));
    }

    #[test]
    fn a_width_not_divisible_by_heads_is_rejected() {
        let mut cfg = GptConfig::tiny(258);
        cfg.n_head = 3;
        assert!(cfg.validate().unwrap_err().contains("n_head"));
    }

    #[test]
    fn sparse_attention_keeps_the_window_and_the_stride() {
        let a = Attention::Sparse { window: 2, stride: 4 };
        let allowed: Vec<i64> = (0..=9).filter(|&k| a.allows(9, k)).collect();
        assert_eq!(allowed, vec![1, 5, 8, 9]);
        assert!(!a.allows(3, 4), "never a later token");
    }

    #[test]
    fn alternating_layers_keep_one_pattern_each_and_plumb_json_reads_both_forms() {
        let sparse = default_sparse(256, None, None);
        assert_eq!(sparse, Attention::Sparse { window: 16, stride: 16 });
        let words: LayerWords = "alternating".parse().unwrap();
        let layers = AttentionLayers::from_words(&words, 4, sparse).unwrap();
        let each: Vec<Attention> = (0..4).map(|i| layers.layer(i)).collect();
        assert_eq!(each, [Attention::Dense, sparse, Attention::Dense, sparse]);
        let json = serde_json::to_value(&layers).unwrap();
        assert_eq!(serde_json::from_value::<AttentionLayers>(json).unwrap(), layers);
        let old: AttentionLayers = serde_json::from_str(r#"{"kind":"dense"}"#).unwrap();
        assert_eq!(old, AttentionLayers::DENSE);
        let same = AttentionLayers::from_words(&"sparse,sparse".parse().unwrap(), 2, sparse).unwrap();
        assert_eq!(same, AttentionLayers::Every(sparse));
        let mut cfg = GptConfig::tiny(258);
        cfg.attention = AttentionLayers::PerLayer(vec![Attention::Dense; 3]);
        assert!(cfg.validate().unwrap_err().contains("n_layer is 4"));
    }
}

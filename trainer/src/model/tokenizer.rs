//! Text ↔ token ids: GPT-2's byte-level BPE, and raw bytes for tiny models.
//!
//! Both tokenizers share GPT-2's convention that `<|endoftext|>` ends a document, and
//! both have a PAD id distinct from EOS. Ordinary text never encodes to a special
//! token: `<|endoftext|>` typed in a prompt is plain characters.

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

/// Token ids of the GPT-2 vocabulary (r50k_base): 50,256 merges and `<|endoftext|>`.
pub const GPT2_VOCAB_SIZE: i64 = 50257;
/// GPT-2's `<|endoftext|>`.
pub const GPT2_EOS: i64 = 50256;
/// Outside GPT-2's embedding on purpose: padded positions are masked, never embedded.
pub const GPT2_PAD: i64 = 50257;

/// The byte tokenizer: ids 0..=255 are bytes, then EOS and PAD.
pub const BYTES_EOS: i64 = 256;
pub const BYTES_PAD: i64 = 257;
pub const BYTES_VOCAB_SIZE: i64 = 258;

/// Which tokenizer a checkpoint was trained with (recorded in its `plumb.json`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenizerKind {
    Gpt2,
    Bytes,
}

choice_words!(TokenizerKind, "tokenizer", { "gpt2" => Gpt2, "bytes" => Bytes });

#[derive(Clone)]
pub enum Tokenizer {
    Gpt2(&'static riptoken::CoreBPE),
    Bytes,
}

/// GPT-2's split pattern (r50k_base), as tiktoken defines it.
const GPT2_PATTERN: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

/// The GPT-2 encoder, built once per process.
///
/// The vocabulary is the r50k_base file that tiktoken-rs ships (read back rank by rank);
/// encoding uses riptoken, a reimplementation of tiktoken's algorithm with identical
/// output that is several times faster than tiktoken-rs.
fn gpt2_encoder() -> &'static riptoken::CoreBPE {
    static ENCODER: OnceLock<riptoken::CoreBPE> = OnceLock::new();
    ENCODER.get_or_init(|| {
        let vocabulary = tiktoken_rs::r50k_base_singleton();
        let ranks = (0..GPT2_EOS as u32)
            .map(|rank| (vocabulary._decode_native_and_split(vec![rank]).flatten().collect(), rank))
            .collect();
        // The pattern and the ranks are fixed and known valid: failing here is a build defect.
        riptoken::CoreBPE::new(ranks, Default::default(), GPT2_PATTERN).expect("GPT-2's BPE builds")
    })
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tokenizer({})", self.kind())
    }
}

impl Tokenizer {
    pub fn new(kind: TokenizerKind) -> Self {
        match kind {
            TokenizerKind::Gpt2 => Tokenizer::Gpt2(gpt2_encoder()),
            TokenizerKind::Bytes => Tokenizer::Bytes,
        }
    }

    pub fn kind(&self) -> TokenizerKind {
        match self {
            Tokenizer::Gpt2(_) => TokenizerKind::Gpt2,
            Tokenizer::Bytes => TokenizerKind::Bytes,
        }
    }

    /// The rows a model's embedding needs for this tokenizer (PAD excluded for GPT-2,
    /// whose checkpoints have exactly 50,257).
    pub fn vocab_size(&self) -> i64 {
        match self {
            Tokenizer::Gpt2(_) => GPT2_VOCAB_SIZE,
            Tokenizer::Bytes => BYTES_VOCAB_SIZE,
        }
    }

    pub fn eos_id(&self) -> i64 {
        match self {
            Tokenizer::Gpt2(_) => GPT2_EOS,
            Tokenizer::Bytes => BYTES_EOS,
        }
    }

    pub fn pad_id(&self) -> i64 {
        match self {
            Tokenizer::Gpt2(_) => GPT2_PAD,
            Tokenizer::Bytes => BYTES_PAD,
        }
    }

    pub fn is_special(&self, id: i64) -> bool {
        id == self.eos_id() || id == self.pad_id()
    }

    /// Encodes text as ordinary text: special-token strings are not recognised.
    pub fn encode(&self, text: &str) -> Vec<i64> {
        match self {
            Tokenizer::Gpt2(bpe) => bpe.encode_ordinary(text).into_iter().map(i64::from).collect(),
            Tokenizer::Bytes => text.bytes().map(i64::from).collect(),
        }
    }

    /// The bytes the ids stand for; special tokens and unknown ids contribute nothing.
    pub fn decode_bytes(&self, ids: &[i64]) -> Vec<u8> {
        match self {
            Tokenizer::Gpt2(_) => {
                let ordinary: Vec<u32> =
                    ids.iter().filter(|&&id| (0..GPT2_EOS).contains(&id)).map(|&id| id as u32).collect();
                tiktoken_rs::r50k_base_singleton()._decode_native_and_split(ordinary).flatten().collect()
            }
            Tokenizer::Bytes => {
                ids.iter().filter(|&&id| (0..256).contains(&id)).map(|&id| id as u8).collect()
            }
        }
    }

    /// Decodes to text; a sample cut mid-character gets U+FFFD rather than an error.
    pub fn decode(&self, ids: &[i64]) -> String {
        String::from_utf8_lossy(&self.decode_bytes(ids)).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpt2_encodes_hello_world_as_gpt2_does() {
        let t = Tokenizer::new(TokenizerKind::Gpt2);
        assert_eq!(t.encode("Hello world"), vec![15496, 995]);
        assert_eq!(t.decode(&[15496, 995]), "Hello world");
    }

    #[test]
    fn ordinary_text_never_produces_a_special_token() {
        for kind in [TokenizerKind::Gpt2, TokenizerKind::Bytes] {
            let t = Tokenizer::new(kind);
            let ids = t.encode("before <|endoftext|> after");
            assert!(ids.iter().all(|&id| !t.is_special(id)), "{kind}: {ids:?}");
            assert_eq!(t.decode(&ids), "before <|endoftext|> after");
        }
    }

    #[test]
    fn pad_is_distinct_from_eos() {
        for kind in [TokenizerKind::Gpt2, TokenizerKind::Bytes] {
            let t = Tokenizer::new(kind);
            assert_ne!(t.pad_id(), t.eos_id());
        }
        assert_eq!(Tokenizer::new(TokenizerKind::Gpt2).eos_id(), 50256);
    }

    #[test]
    fn bytes_round_trip_any_utf8() {
        let t = Tokenizer::new(TokenizerKind::Bytes);
        let text = "héllo 世界 🙂\n\t";
        assert_eq!(t.encode(text).len(), text.len());
        assert_eq!(t.decode(&t.encode(text)), text);
    }

    #[test]
    fn decoding_skips_special_tokens() {
        let t = Tokenizer::new(TokenizerKind::Bytes);
        assert_eq!(t.decode(&[104, 105, BYTES_EOS, BYTES_PAD]), "hi");
    }

    #[test]
    fn a_sample_cut_mid_character_decodes_with_a_replacement() {
        let t = Tokenizer::new(TokenizerKind::Bytes);
        let ids = t.encode("é");
        assert_eq!(t.decode(&ids[..1]), "\u{FFFD}");
    }
}

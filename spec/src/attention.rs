//! The words that say which layers of a fresh model attend sparsely: `plumb init
//! --attention` and the pretraining run's `attention` field. GPT-3 (Brown et al. 2020,
//! section 2.1) alternates dense and locally banded sparse layers; any other list is
//! allowed too. The trainer turns the words into each layer's pattern.

use std::fmt;
use std::str::FromStr;

/// Which layers attend sparsely.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LayerWords {
    /// Every layer sees every earlier token (GPT-2).
    Dense,
    /// Every layer attends through the banded sparse pattern.
    Sparse,
    /// GPT-3: dense and sparse layers in turn, the first layer dense.
    Alternating,
    /// One word per layer, first layer first: true where the layer is sparse.
    PerLayer(Vec<bool>),
}

/// What the words are: shown by `--help`, the launch form and the errors.
pub const LAYER_WORDS_HELP: &str = "dense, sparse, alternating (GPT-3: dense and banded sparse \
     layers in turn, the first dense), or one word per layer separated by commas \
     (e.g. dense,sparse,sparse,dense)";

impl FromStr for LayerWords {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        match text {
            "dense" => return Ok(LayerWords::Dense),
            "sparse" => return Ok(LayerWords::Sparse),
            "alternating" => return Ok(LayerWords::Alternating),
            _ => {}
        }
        if !text.contains(',') {
            return Err(format!("{text:?} is not an attention pattern: give {LAYER_WORDS_HELP}"));
        }
        text.split(',')
            .enumerate()
            .map(|(layer, word)| match word.trim() {
                "dense" => Ok(false),
                "sparse" => Ok(true),
                other => Err(format!("layer {layer}: {other:?} is neither dense nor sparse")),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(LayerWords::PerLayer)
    }
}

impl fmt::Display for LayerWords {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LayerWords::Dense => f.write_str("dense"),
            LayerWords::Sparse => f.write_str("sparse"),
            LayerWords::Alternating => f.write_str("alternating"),
            LayerWords::PerLayer(layers) => {
                let words: Vec<&str> = layers.iter().map(|&s| if s { "sparse" } else { "dense" }).collect();
                f.write_str(&words.join(","))
            }
        }
    }
}

impl LayerWords {
    /// Whether each of `n_layer` layers is sparse; a list must name every layer.
    pub fn sparse_layers(&self, n_layer: usize) -> Result<Vec<bool>, String> {
        Ok(match self {
            LayerWords::Dense => vec![false; n_layer],
            LayerWords::Sparse => vec![true; n_layer],
            LayerWords::Alternating => (0..n_layer).map(|layer| layer % 2 == 1).collect(),
            LayerWords::PerLayer(layers) if layers.len() == n_layer => layers.clone(),
            LayerWords::PerLayer(layers) => {
                return Err(format!(
                    "the attention list names {} layers but the model has {n_layer}",
                    layers.len()
                ))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::LayerWords;

    #[test]
    fn alternating_starts_dense_and_a_list_names_each_layer() {
        let words: LayerWords = "alternating".parse().unwrap();
        assert_eq!(words.sparse_layers(4).unwrap(), [false, true, false, true]);
        let list: LayerWords = "sparse, dense,sparse".parse().unwrap();
        assert_eq!(list.sparse_layers(3).unwrap(), [true, false, true]);
        assert_eq!(list.to_string(), "sparse,dense,sparse");
        assert!(list.sparse_layers(4).unwrap_err().contains("names 3 layers but the model has 4"));
    }

    #[test]
    fn a_wrong_word_is_named() {
        assert!("banded".parse::<LayerWords>().unwrap_err().contains("\"banded\""));
        assert!("dense,local".parse::<LayerWords>().unwrap_err().contains("layer 1: \"local\""));
    }
}

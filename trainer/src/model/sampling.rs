//! Generating samples from a language model, and scoring text under it.
//!
//! Prompts of different lengths are batched by left padding: every prompt ends at the
//! same column, position ids count real tokens only, and padding is masked from
//! attention, so a prompt's sample does not depend on the rest of its batch (up to
//! floating-point rounding). Decoding uses a KV cache.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::checkpoint::LanguageModel;
use crate::gpt::KvCache;

/// How samples are drawn: declared in the run contract.
pub use spec::SamplingConfig;

#[derive(Debug, thiserror::Error)]
pub enum SamplingError {
    /// Sampling settings outside the run contract, every problem named.
    #[error("invalid sampling settings: {0}")]
    Settings(#[from] spec::Problems),
    #[error("sequence {index} has {len} tokens, but the model's context is {n_ctx} (with {max_new_tokens} new tokens)")]
    TooLong { index: usize, len: usize, max_new_tokens: i64, n_ctx: i64 },
    #[error("sequence {index} is empty: scoring needs at least one token")]
    Empty { index: usize },
}

/// One prompt's sample.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Generation {
    /// The new tokens, the EOS that ended the sample included.
    pub ids: Vec<i64>,
    /// log π(token) of each new token: log-softmax of logits / temperature (of the raw
    /// logits when greedy), before top-k / top-p truncation, as PPO needs it.
    pub logprobs: Vec<f32>,
    /// Whether the sample ended with EOS rather than at `max_new_tokens`.
    pub stopped_at_eos: bool,
}

/// Samples a continuation of each prompt (token ids, without padding). An empty prompt
/// is conditioned on EOS, GPT-2's document boundary.
pub fn generate(
    model: &LanguageModel,
    prompts: &[Vec<i64>],
    cfg: &SamplingConfig,
) -> Result<Vec<Generation>, SamplingError> {
    generate_streams(model, prompts, cfg, 0)
}

/// `generate` where prompt i draws from random stream `first_stream + i`: a caller that
/// splits a long list of prompts into batches passes each batch's offset, and every
/// prompt then gets the same sample whatever the batch size.
pub fn generate_streams(
    model: &LanguageModel,
    prompts: &[Vec<i64>],
    cfg: &SamplingConfig,
    first_stream: u64,
) -> Result<Vec<Generation>, SamplingError> {
    cfg.validate()?;
    if prompts.is_empty() {
        return Ok(Vec::new());
    }
    let eos = model.tokenizer.eos_id();
    let prompts: Vec<Vec<i64>> =
        prompts.iter().map(|p| if p.is_empty() { vec![eos] } else { p.clone() }).collect();
    let n_ctx = model.config.n_ctx;
    for (index, p) in prompts.iter().enumerate() {
        if p.len() as i64 + cfg.max_new_tokens > n_ctx {
            return Err(SamplingError::TooLong {
                index,
                len: p.len(),
                max_new_tokens: cfg.max_new_tokens,
                n_ctx,
            });
        }
    }
    let _guard = tch::no_grad_guard();
    let device = model.device();
    let batch = prompts.len();
    let prompt_len = prompts.iter().map(Vec::len).max().unwrap_or(0);
    let (ids, prompt_mask) = left_pad(&prompts, prompt_len, model.tokenizer.pad_id());
    let capacity = prompt_len as i64 + cfg.max_new_tokens;
    let mask = Tensor::ones([batch as i64, capacity], (Kind::Int64, device));
    mask.narrow(1, 0, prompt_len as i64).copy_(&prompt_mask.to_device(device));
    let mut cache = KvCache::new(&model.config, batch as i64, capacity, device, model.kind());
    // Our own generators rather than libtorch's global one, which other threads share.
    let mut rngs: Vec<ChaCha8Rng> = (0..batch)
        .map(|i| {
            let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
            rng.set_stream(first_stream + i as u64);
            rng
        })
        .collect();

    let mut out: Vec<Generation> = (0..batch)
        .map(|_| Generation { ids: Vec::new(), logprobs: Vec::new(), stopped_at_eos: false })
        .collect();
    let mut logits =
        model.next_logits(&ids.to_device(device), &mask.narrow(1, 0, prompt_len as i64), &mut cache);
    // PAD is never a sample (the byte tokenizer's model has a row for it; GPT-2's has none).
    let pad = model.tokenizer.pad_id();
    let forbidden = (pad < model.config.vocab_size).then_some(pad);
    for step in 0..cfg.max_new_tokens {
        let uniforms: Vec<f64> = rngs.iter_mut().map(|r| r.random::<f64>()).collect();
        let (next, logprobs) = pick(&logits, cfg, &uniforms, forbidden); // (B,), (B,)
        let next_host = Vec::<i64>::try_from(next.to_device(Device::Cpu)).unwrap_or_default();
        let lp_host = Vec::<f32>::try_from(logprobs.to_device(Device::Cpu)).unwrap_or_default();
        for (g, (&id, &lp)) in out.iter_mut().zip(next_host.iter().zip(&lp_host)) {
            if !g.stopped_at_eos {
                g.ids.push(id);
                g.logprobs.push(lp);
                g.stopped_at_eos = cfg.stop_at_eos && id == eos;
            }
        }
        if step + 1 == cfg.max_new_tokens || out.iter().all(|g| g.stopped_at_eos) {
            break;
        }
        // Finished samples keep decoding (their tokens are discarded) so that the batch
        // stays rectangular.
        let seen = prompt_len as i64 + step + 1;
        logits = model.next_logits(&next.unsqueeze(1), &mask.narrow(1, 0, seen), &mut cache);
    }
    Ok(out)
}

/// Left-pads prompts to `len` columns: ids (B, len) and attention mask (B, len) on the CPU.
fn left_pad(prompts: &[Vec<i64>], len: usize, pad: i64) -> (Tensor, Tensor) {
    let mut ids = Vec::with_capacity(prompts.len() * len);
    let mut mask = Vec::with_capacity(prompts.len() * len);
    for p in prompts {
        let padding = len - p.len();
        ids.extend(std::iter::repeat_n(pad, padding).chain(p.iter().copied()));
        mask.extend(std::iter::repeat_n(0i64, padding).chain(std::iter::repeat_n(1, p.len())));
    }
    let shape = [prompts.len() as i64, len as i64];
    (Tensor::from_slice(&ids).view(shape), Tensor::from_slice(&mask).view(shape))
}

/// Chooses the next token of each row of `logits` (B, V) and returns it with its log-prob
/// under the model; `uniforms` holds one draw from [0, 1) per row. The `forbidden` token
/// is never chosen, but log-probs stay those of the model's whole distribution, which
/// is what PPO recomputes.
fn pick(logits: &Tensor, cfg: &SamplingConfig, uniforms: &[f64], forbidden: Option<i64>) -> (Tensor, Tensor) {
    // Each pass over (B, V) costs about as much as the tiny model's LM head, so none is
    // made twice: no division at temperature 1, the chosen token's log-prob from the
    // log-sum-exp rather than a whole log-softmax, and the probabilities made in the f64
    // that the CDF sums in.
    let logits = logits.to_kind(Kind::Float);
    let scaled =
        if cfg.temperature == 0.0 || cfg.temperature == 1.0 { logits } else { logits / cfg.temperature };
    let log_total = scaled.logsumexp([-1], true); // (B, 1)
    let mut filtered = match forbidden {
        Some(id) => {
            scaled.index_fill(1, &Tensor::from_slice(&[id]).to_device(scaled.device()), f64::NEG_INFINITY)
        }
        None => scaled.shallow_clone(),
    };
    let next = if cfg.temperature == 0.0 {
        filtered.argmax(-1, false)
    } else {
        if let Some(k) = cfg.top_k {
            filtered = top_k_filter(&filtered, k);
        }
        if let Some(p) = cfg.top_p {
            filtered = top_p_filter(&filtered, p);
        }
        inverse_cdf(&filtered.softmax(-1, Kind::Double), uniforms)
    };
    let logprobs = (scaled.gather(1, &next.unsqueeze(1), false) - log_total).squeeze_dim(1);
    (next, logprobs)
}

/// Samples from each row of `probs` (B, V) by inverting its CDF at the row's uniform.
fn inverse_cdf(probs: &Tensor, uniforms: &[f64]) -> Tensor {
    let cdf = probs.to_kind(Kind::Double).cumsum(-1, Kind::Double); // (B, V)
    let total = cdf.narrow(1, cdf.size()[1] - 1, 1); // (B, 1), 1 up to rounding
    let u = Tensor::from_slice(uniforms).to_device(probs.device()).unsqueeze(1) * total;
    // `right`: the first token whose CDF exceeds u, so zero-probability tokens (flat CDF)
    // are never chosen, not even at u = 0.
    let picked = u.searchsorted(&cdf, false, true, "right", None::<Tensor>).squeeze_dim(1);
    picked.clamp_max(probs.size()[1] - 1)
}

/// Sets every logit below the k-th largest of its row to -inf.
fn top_k_filter(logits: &Tensor, k: i64) -> Tensor {
    let k = k.min(logits.size()[1]);
    let (values, _) = logits.topk(k, -1, true, true);
    let kth = values.narrow(1, k - 1, 1);
    logits.masked_fill(&logits.lt_tensor(&kth), f64::NEG_INFINITY)
}

/// Keeps, per row, the most likely tokens until their probability reaches `p`.
fn top_p_filter(logits: &Tensor, p: f64) -> Tensor {
    let (sorted, order) = logits.sort(-1, true);
    let probs = sorted.softmax(-1, Kind::Float);
    // Probability mass strictly before each token: the first token is always kept.
    let before = probs.cumsum(-1, Kind::Float) - &probs;
    let drop_sorted = before.ge(p);
    let drop = drop_sorted.scatter(-1, &order, &drop_sorted);
    logits.masked_fill(&drop, f64::NEG_INFINITY)
}

/// Log-probabilities of each sequence's tokens: `result[i][j]` = log p(ids[j+1] | ids[..=j]).
/// Sequences are scored in batches of `batch_size`, right-padded.
pub fn score(
    model: &LanguageModel,
    sequences: &[Vec<i64>],
    batch_size: usize,
) -> Result<Vec<Vec<f32>>, SamplingError> {
    for (index, s) in sequences.iter().enumerate() {
        if s.is_empty() {
            return Err(SamplingError::Empty { index });
        }
        if s.len() as i64 > model.config.n_ctx {
            return Err(SamplingError::TooLong {
                index,
                len: s.len(),
                max_new_tokens: 0,
                n_ctx: model.config.n_ctx,
            });
        }
    }
    let _guard = tch::no_grad_guard();
    let device = model.device();
    let mut result = Vec::with_capacity(sequences.len());
    for chunk in sequences.chunks(batch_size.max(1)) {
        let len = chunk.iter().map(Vec::len).max().unwrap_or(0);
        let mut ids = Vec::with_capacity(chunk.len() * len);
        let mut mask = Vec::with_capacity(chunk.len() * len);
        for s in chunk {
            ids.extend(s.iter().copied().chain(std::iter::repeat_n(0, len - s.len())));
            mask.extend(std::iter::repeat_n(1i64, s.len()).chain(std::iter::repeat_n(0, len - s.len())));
        }
        let shape = [chunk.len() as i64, len as i64];
        let ids = Tensor::from_slice(&ids).view(shape).to_device(device);
        let mask = Tensor::from_slice(&mask).view(shape).to_device(device);
        let logprobs = model.logits(&ids, Some(&mask), false).log_softmax(-1, Kind::Float); // (B, T, V)
        let next = ids.narrow(1, 1, len as i64 - 1).unsqueeze(2); // (B, T-1, 1)
        let picked = logprobs
            .narrow(1, 0, len as i64 - 1)
            .gather(2, &next, false)
            .squeeze_dim(2)
            .to_device(Device::Cpu);
        for (row, s) in chunk.iter().enumerate() {
            let lp = picked.get(row as i64).narrow(0, 0, s.len() as i64 - 1);
            result.push(Vec::<f32>::try_from(lp).unwrap_or_default());
        }
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::GptConfig;
    use crate::tokenizer::TokenizerKind;

    fn model() -> LanguageModel {
        tch::manual_seed(3);
        let mut cfg = GptConfig::tiny(258);
        cfg.n_layer = 2;
        cfg.n_ctx = 64;
        LanguageModel::new(cfg, TokenizerKind::Bytes, Device::Cpu).unwrap()
    }

    fn greedy(n: i64) -> SamplingConfig {
        SamplingConfig { max_new_tokens: n, temperature: 0.0, stop_at_eos: false, ..Default::default() }
    }

    #[test]
    fn top_k_keeps_exactly_k_tokens() {
        let logits = Tensor::from_slice(&[1.0f32, 4.0, 3.0, 2.0]).unsqueeze(0);
        let kept = top_k_filter(&logits, 2).isfinite();
        assert_eq!(Vec::<bool>::try_from(kept.squeeze()).unwrap(), vec![false, true, true, false]);
    }

    #[test]
    fn inverse_cdf_never_picks_a_zero_probability_token() {
        let probs = Tensor::from_slice(&[0.0f32, 0.5, 0.0, 0.5, 0.0]).unsqueeze(0).repeat([4, 1]);
        let picked = inverse_cdf(&probs, &[0.0, 0.49, 0.5, 0.999_999]);
        assert_eq!(Vec::<i64>::try_from(picked).unwrap(), vec![1, 1, 3, 3]);
    }

    #[test]
    fn top_p_keeps_the_smallest_set_reaching_p() {
        // probabilities 0.5, 0.3, 0.15, 0.05 in shuffled order
        let probs = [0.15f32, 0.5, 0.05, 0.3];
        let logits = Tensor::from_slice(&probs).log().unsqueeze(0);
        let kept = |p| Vec::<bool>::try_from(top_p_filter(&logits, p).isfinite().squeeze()).unwrap();
        assert_eq!(kept(0.5), vec![false, true, false, false]);
        assert_eq!(kept(0.7), vec![false, true, false, true]);
        assert_eq!(kept(0.9), vec![true, true, false, true]);
        assert_eq!(kept(1.0), vec![true, true, true, true]);
    }

    #[test]
    fn a_prompt_samples_the_same_alone_and_in_a_left_padded_batch() {
        let m = model();
        let short = vec![10, 20, 30];
        let long = vec![1, 2, 3, 4, 5, 6, 7, 8, 9];
        let alone = generate(&m, std::slice::from_ref(&short), &greedy(8)).unwrap();
        let batched = generate(&m, &[long, short], &greedy(8)).unwrap();
        assert_eq!(alone[0].ids, batched[1].ids);
        for (a, b) in alone[0].logprobs.iter().zip(&batched[1].logprobs) {
            assert!((a - b).abs() < 1e-4);
        }
    }

    #[test]
    fn greedy_logprobs_equal_full_recomputation() {
        let m = model();
        let prompt = vec![72, 101, 108, 108, 111];
        let g = generate(&m, std::slice::from_ref(&prompt), &greedy(10)).unwrap().remove(0);
        let full: Vec<i64> = prompt.iter().chain(&g.ids).copied().collect();
        let scored = score(&m, &[full], 4).unwrap().remove(0);
        let tail = &scored[prompt.len() - 1..];
        assert_eq!(tail.len(), g.logprobs.len());
        for (a, b) in tail.iter().zip(&g.logprobs) {
            assert!((a - b).abs() < 1e-4, "{a} vs {b}");
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_samples_and_another_seed_others() {
        let m = model();
        let cfg = SamplingConfig { max_new_tokens: 16, stop_at_eos: false, ..Default::default() };
        let prompts = vec![vec![1, 2, 3], vec![4, 5]];
        let a = generate(&m, &prompts, &cfg).unwrap();
        let b = generate(&m, &prompts, &cfg).unwrap();
        let c = generate(&m, &prompts, &SamplingConfig { seed: 1, ..cfg.clone() }).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    /// Makes `id` the likeliest next token everywhere: every final hidden state becomes
    /// ln_f's bias b, and the token's embedding row (the tied LM head's) is b scaled up.
    fn make_likeliest(m: &LanguageModel, id: i64) {
        let _g = tch::no_grad_guard();
        let vars = m.vs.variables();
        let _ = vars["ln_f.weight"].shallow_clone().zero_();
        let b = Tensor::randn([128], (Kind::Float, Device::Cpu));
        vars["ln_f.bias"].shallow_clone().copy_(&b);
        m.gpt.wte().get(id).copy_(&(b * 10.0));
    }

    #[test]
    fn sampling_stops_at_eos() {
        let m = model();
        make_likeliest(&m, 256);
        let cfg = SamplingConfig { max_new_tokens: 10, top_k: Some(1), ..Default::default() };
        let g = generate(&m, &[vec![1, 2]], &cfg).unwrap().remove(0);
        assert!(g.stopped_at_eos, "{g:?}");
        assert_eq!(g.ids.last(), Some(&256));
    }

    #[test]
    fn padding_is_never_sampled() {
        let m = model();
        make_likeliest(&m, 257);
        let cfg = SamplingConfig { max_new_tokens: 8, stop_at_eos: false, ..Default::default() };
        for g in generate(&m, &[vec![1, 2], vec![3]], &cfg).unwrap() {
            assert!(!g.ids.contains(&257), "{g:?}");
        }
        let g = generate(&m, &[vec![1, 2]], &SamplingConfig { temperature: 0.0, ..cfg }).unwrap();
        assert!(!g[0].ids.contains(&257), "{g:?}");
    }

    #[test]
    fn too_long_a_prompt_is_refused() {
        let m = model();
        let err = generate(&m, &[vec![1; 60]], &greedy(8)).unwrap_err();
        assert!(err.to_string().contains("sequence 0 has 60 tokens"), "{err}");
    }

    #[test]
    fn invalid_settings_are_named() {
        let bad = SamplingConfig { top_p: Some(1.5), ..Default::default() };
        assert!(bad.validate().unwrap_err().to_string().contains("top_p"));
    }
}

//! Eval runs: each version writes one sample per prompt, every version with the same
//! random stream per prompt (stream i for prompt i), so that differences between versions
//! are the models', not the dice's. Each sample is scored by the reward model, against
//! the KL reference, and by the demo world's oracle when the prompt is one of its tasks.

use registry::evals::EvalSample;
use tch::Device;

use super::spec::EvalRun;
use super::stages::Resolved;
use crate::train::{RunDir, TrainError};
use crate::{generate_streams, reward, sampling, world, LanguageModel};

const PROMPTS_PER_BATCH: usize = 8;

/// The samples and scores of every version on every prompt, version by version.
pub(super) fn evaluate(
    spec: &EvalRun,
    versions: &[Resolved],
    reward_model: Option<&Resolved>,
    reference: Option<&Resolved>,
    prompts: &[(i64, String)],
    device: Device,
    run: &mut RunDir,
) -> Result<Vec<EvalSample>, TrainError> {
    let batches = prompts.len().div_ceil(PROMPTS_PER_BATCH);
    run.set_total_steps((batches * versions.len()) as i64)?;
    let rm = reward_model.map(|r| LanguageModel::load(&r.dir, device)).transpose()?;
    let reference =
        reference.map(|r| Ok::<_, TrainError>((r, LanguageModel::load(&r.dir, device)?))).transpose()?;
    let tasks: Vec<Option<world::Task>> = prompts.iter().map(|(_, text)| world::parse_task(text)).collect();
    let mut out = Vec::with_capacity(prompts.len() * versions.len());
    let mut step = 0i64;
    for version in versions {
        let model = LanguageModel::load(&version.dir, device)?;
        if let Some((r, reference)) = &reference {
            if reference.tokenizer.kind() != model.tokenizer.kind() {
                return Err(TrainError::Config(format!(
                    "reference {} uses the {:?} tokenizer and {} the {:?} one: KL needs the same tokens",
                    r.name(),
                    reference.tokenizer.kind(),
                    version.name(),
                    model.tokenizer.kind()
                )));
            }
        }
        let eos_id = model.tokenizer.eos_id();
        for (batch, chunk) in prompts.chunks(PROMPTS_PER_BATCH).enumerate() {
            let first = batch * PROMPTS_PER_BATCH;
            let ids: Vec<Vec<i64>> = chunk.iter().map(|(_, text)| model.tokenizer.encode(text)).collect();
            let generations = generate_streams(&model, &ids, &spec.stage, first as u64)?;
            let texts: Vec<String> = generations
                .iter()
                .map(|g| {
                    let new: Vec<i64> = g.ids.iter().copied().filter(|&t| t != eos_id).collect();
                    model.tokenizer.decode(&new)
                })
                .collect();
            let rewards = match &rm {
                Some(rm) => {
                    let pairs: Vec<(String, String)> =
                        chunk.iter().zip(&texts).map(|((_, p), t)| (p.clone(), t.clone())).collect();
                    Some(reward::score(rm, &pairs, PROMPTS_PER_BATCH)?)
                }
                None => None,
            };
            let kls = match &reference {
                Some((_, reference)) => Some(sample_kls(&model, reference, &ids, &generations)?),
                None => None,
            };
            for (i, ((prompt_id, _), g)) in chunk.iter().zip(&generations).enumerate() {
                let finish = if g.stopped_at_eos { world::Finish::Eos } else { world::Finish::Length };
                let text = &texts[i];
                out.push(EvalSample {
                    version_id: version.version.id,
                    prompt_id: *prompt_id,
                    text: text.clone(),
                    tokens: g.ids.iter().filter(|&&t| t != eos_id).count() as i32,
                    eos: g.stopped_at_eos,
                    repetition: repetition(text) as f32,
                    reward: rewards.as_ref().map(|r| r[i]),
                    kl: kls.as_ref().map(|k| k[i]),
                    oracle: tasks[first + i].as_ref().map(|task| world::score(task, text, finish) as f32),
                });
            }
            run.log(step, &[("samples", chunk.len() as f64)])?;
            run.stop_if_requested(step)?;
            step += 1;
        }
    }
    Ok(out)
}

/// log π(sample) − log π_ref(sample) for each sample (its new tokens given the prompt),
/// at temperature 1: the mean over prompts of samples drawn from π estimates KL(π ‖ π_ref).
fn sample_kls(
    model: &LanguageModel,
    reference: &LanguageModel,
    prompts: &[Vec<i64>],
    generations: &[crate::Generation],
) -> Result<Vec<f32>, TrainError> {
    let eos = model.tokenizer.eos_id();
    let sequences: Vec<Vec<i64>> = prompts
        .iter()
        .zip(generations)
        .map(|(p, g)| {
            let prompt = if p.is_empty() { vec![eos] } else { p.clone() };
            prompt.into_iter().chain(g.ids.iter().copied()).collect()
        })
        .collect();
    let under_model = sampling::score(model, &sequences, PROMPTS_PER_BATCH)?;
    let under_reference = sampling::score(reference, &sequences, PROMPTS_PER_BATCH)?;
    Ok(generations
        .iter()
        .zip(under_model.iter().zip(&under_reference))
        .map(|(g, (a, b))| {
            let n = g.ids.len();
            let (a, b) = (&a[a.len() - n..], &b[b.len() - n..]);
            a.iter().zip(b).map(|(x, y)| x - y).sum()
        })
        .collect())
}

/// The share of a response's words that repeat an earlier word of it.
fn repetition(text: &str) -> f64 {
    let words: Vec<&str> = text.split_whitespace().collect();
    if words.is_empty() {
        return 0.0;
    }
    let mut seen = std::collections::HashSet::new();
    let repeated = words.iter().filter(|w| !seen.insert(**w)).count();
    repeated as f64 / words.len() as f64
}

#[cfg(test)]
mod tests {
    #[test]
    fn repetition_counts_words_that_came_before() {
        assert_eq!(super::repetition(""), 0.0);
        assert_eq!(super::repetition("a b c"), 0.0);
        assert_eq!(super::repetition("a a a a"), 0.75);
        assert_eq!(super::repetition("cat dog cat"), 1.0 / 3.0);
    }
}

//! Eval runs: each version writes one sample per prompt, every version with the same
//! random stream per prompt (stream i for prompt i), so that differences between versions
//! are the models', not the dice's. Each sample is scored by the reward model, against
//! the KL reference, and by the demo world's oracle when the prompt is one of its tasks.
//!
//! When the run asks, each version then answers the demo world's test tasks after 0, 1,
//! a few worked examples (greedy, the same tasks and examples for every version), and
//! continues each probe many times (the same random streams for every version), of
//! which the most frequent first words are kept.

use std::collections::HashMap;

use registry::evals::{EvalSample, ProbeWord, SkillScore};
use registry::probe_stats::ProbeCount;
use tch::Device;

use super::resolve::Resolved;
use super::spec::{EvalRun, Probe, SkillsSpec, MAX_PROBE_GROUPS, MAX_PROBE_SAMPLES};
use crate::train::{RunDir, TrainError};
use crate::world::{Skill, Task};
use crate::{generate_streams, reward, sampling, world, LanguageModel, SamplingConfig, Tokenizer};

const PROMPTS_PER_BATCH: usize = 8;
/// Few-shot prompts decoded at once.
const TASKS_PER_BATCH: usize = 32;
/// Probe continuations sampled at once.
const CONTINUATIONS_PER_BATCH: usize = 64;
/// New tokens of a probe's continuation: enough for a first word of up to about ten
/// letters with the byte tokenizer, and for several words with GPT-2's.
const PROBE_TOKENS: i64 = 12;
/// Probe (p, group g, continuation i) draws from stream PROBE_STREAMS + (p·8 + g)·512 + i:
/// fixed by its place in the config, so the same for every version, and far from the
/// streams of the eval samples (stream i for prompt i).
const PROBE_STREAMS: u64 = 1 << 40;
/// What a continuation that begins with no word counts as.
const NO_WORD: &str = "(none)";

/// What an eval run measured, version by version.
#[derive(Default)]
pub(super) struct Measured {
    pub(super) samples: Vec<EvalSample>,
    /// Empty when the run did not ask for skills.
    pub(super) skills: Vec<SkillScore>,
    /// Empty when the run named no probes.
    pub(super) probes: Vec<ProbeWord>,
    /// Every first word's count behind `probes`, for the probe statistics.
    pub(super) probe_counts: Vec<ProbeCount>,
}

/// A few-shot question: its prompt, and the answer that counts as right (exactly, but
/// for whitespace around it).
#[derive(Clone, Debug, PartialEq)]
struct Question {
    prompt: String,
    answer: String,
}

impl From<Task> for Question {
    fn from(task: Task) -> Question {
        Question { prompt: task.prompt, answer: task.answer }
    }
}

impl Question {
    fn is_answered_by(&self, response: &str) -> bool {
        response.trim() == self.answer.trim()
    }
}

/// Each skill's (or team task's) name and questions, each with the worked examples its
/// few-shot prompts show.
type SkillTasks = Vec<(String, Vec<(Question, Vec<Question>)>)>;

/// The questions of the run's skills: the team's own tasks when it gave some (each task's
/// first examples are the worked examples of all its questions, the next `per_skill` its
/// questions), else the demo world's skills.
fn skill_tasks(skills: &SkillsSpec, seed: u64) -> SkillTasks {
    let most = skills.shots.iter().copied().max().unwrap_or(0);
    if skills.tasks.is_empty() {
        return Skill::ALL
            .into_iter()
            .map(|skill| {
                let tasks = world::few_shot_tasks(skill, skills.per_skill, most, seed)
                    .into_iter()
                    .map(|(task, examples)| (task.into(), examples.into_iter().map(Question::from).collect()))
                    .collect();
                (skill.name().to_owned(), tasks)
            })
            .collect();
    }
    let question =
        |(input, output): &(String, String)| Question { prompt: input.clone(), answer: output.clone() };
    skills
        .tasks
        .iter()
        .map(|task| {
            let examples: Vec<Question> = task.examples[..most].iter().map(question).collect();
            let questions = task.examples[most..]
                .iter()
                .take(skills.per_skill)
                .map(|example| (question(example), examples.clone()))
                .collect();
            (task.name.clone(), questions)
        })
        .collect()
}

/// The samples and scores of every version on every prompt, and its skill scores and
/// probe words when the run asks for them, version by version.
pub(super) fn evaluate(
    spec: &EvalRun,
    versions: &[Resolved],
    reward_model: Option<&Resolved>,
    reference: Option<&Resolved>,
    prompts: &[(i64, String)],
    device: Device,
    run: &mut RunDir,
) -> Result<Measured, TrainError> {
    let batches = prompts.len().div_ceil(PROMPTS_PER_BATCH);
    let skill_steps = spec.skills.as_ref().map_or(0, |s| {
        let skills = if s.tasks.is_empty() { Skill::ALL.len() } else { s.tasks.len() };
        skills * s.shots.len()
    });
    let probe_steps: usize = spec.probes.iter().map(|p| p.groups.len()).sum();
    run.set_total_steps(((batches + skill_steps + probe_steps) * versions.len()) as i64)?;
    // Drawn once, so that every version answers the same tasks after the same examples.
    let skill_tasks: SkillTasks =
        spec.skills.as_ref().map_or_else(Vec::new, |s| skill_tasks(s, spec.stage.seed));
    let rm = reward_model.map(|r| LanguageModel::load(&r.dir, device)).transpose()?;
    let reference =
        reference.map(|r| Ok::<_, TrainError>((r, LanguageModel::load(&r.dir, device)?))).transpose()?;
    let tasks: Vec<Option<world::Task>> = prompts.iter().map(|(_, text)| world::parse_task(text)).collect();
    let mut out =
        Measured { samples: Vec::with_capacity(prompts.len() * versions.len()), ..Default::default() };
    let mut step = 0i64;
    for version in versions {
        let model = LanguageModel::load(&version.dir, device)?;
        check_fits(&model, &version.name(), spec, &skill_tasks)?;
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
                out.samples.push(EvalSample {
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
        if let Some(skills) = &spec.skills {
            out.skills.extend(skill_scores(&model, version, skills, &skill_tasks, run, &mut step)?);
        }
        for (index, probe) in spec.probes.iter().enumerate() {
            for (group_index, group) in probe.groups.iter().enumerate() {
                let words = probe_words(&model, probe, index, group_index, spec.stage.seed)?;
                out.probe_counts.extend(words.iter().map(|(word, count)| ProbeCount {
                    version_id: version.version.id,
                    probe: index as i16,
                    group_name: group.clone(),
                    word: word.clone(),
                    count: *count as i32,
                }));
                out.probes.extend(words.into_iter().take(probe.top).map(|(word, count)| ProbeWord {
                    version_id: version.version.id,
                    probe: index as i16,
                    template: probe.template.clone(),
                    group_name: group.clone(),
                    word,
                    share: (count as f64 / probe.samples as f64) as f32,
                }));
                run.log(step, &[("probe_samples", probe.samples as f64)])?;
                run.stop_if_requested(step)?;
                step += 1;
            }
        }
    }
    Ok(out)
}

/// A few-shot prompt in tokens: each worked example as SFT trains on it (its prompt, its
/// answer, EOS, the boundary pretraining puts between documents too), then the task's
/// prompt, which the model answers.
fn few_shot_ids(tokenizer: &Tokenizer, examples: &[Question], task: &Question) -> Vec<i64> {
    let mut ids = Vec::new();
    for example in examples {
        ids.extend(tokenizer.encode(&example.prompt));
        ids.extend(tokenizer.encode(&example.answer));
        ids.push(tokenizer.eos_id());
    }
    ids.extend(tokenizer.encode(&task.prompt));
    ids
}

/// New tokens an answer may take: the longest of the tasks' answers, then EOS and one
/// more (a trailing newline, which [`Question::is_answered_by`] trims). Only whitespace around
/// the answer could make a longer response right, so decoding further would mostly cost
/// time.
fn answer_budget(tokenizer: &Tokenizer, tasks: &[(Question, Vec<Question>)]) -> i64 {
    let longest = tasks.iter().map(|(task, _)| tokenizer.encode(&task.answer).len()).max().unwrap_or(0);
    longest as i64 + 2
}

/// Refuses, naming the field, a few-shot prompt or a probe that with its new tokens does
/// not fit the version's context, before any of the version's work (`generate` would
/// refuse it later, without saying which setting to change).
fn check_fits(
    model: &LanguageModel,
    name: &str,
    spec: &EvalRun,
    skill_tasks: &SkillTasks,
) -> Result<(), TrainError> {
    let n_ctx = model.config.n_ctx;
    let tokenizer = &model.tokenizer;
    for (skill, tasks) in skill_tasks {
        let budget = answer_budget(tokenizer, tasks);
        let longest =
            tasks.iter().map(|(task, examples)| few_shot_ids(tokenizer, examples, task).len()).max();
        let shots = tasks.first().map_or(0, |(_, examples)| examples.len());
        if let Some(longest) = longest.filter(|&l| l as i64 + budget > n_ctx) {
            return Err(TrainError::Config(format!(
                "skills.shots: with {shots} worked examples, a prompt of the {skill} skill takes {longest} \
                 tokens, which with {budget} for the answer do not fit {name}'s context of {n_ctx} tokens: \
                 ask for fewer shots"
            )));
        }
    }
    for (index, probe) in spec.probes.iter().enumerate() {
        for group in &probe.groups {
            let len = tokenizer.encode(&probe.prompt(group)).len();
            if len as i64 + PROBE_TOKENS > n_ctx {
                return Err(TrainError::Config(format!(
                    "probes[{index}].template: filled with {group:?} it takes {len} tokens, which with \
                     {PROBE_TOKENS} for the continuation do not fit {name}'s context of {n_ctx} tokens"
                )));
            }
        }
    }
    Ok(())
}

/// The version's score on each skill at each shot count (one logged step each): its
/// answers decoded greedily, each right when it is the answer but for whitespace around it.
fn skill_scores(
    model: &LanguageModel,
    version: &Resolved,
    skills: &SkillsSpec,
    skill_tasks: &SkillTasks,
    run: &mut RunDir,
    step: &mut i64,
) -> Result<Vec<SkillScore>, TrainError> {
    let mut scores = Vec::with_capacity(skill_tasks.len() * skills.shots.len());
    for (skill, tasks) in skill_tasks {
        let greedy = SamplingConfig {
            max_new_tokens: answer_budget(&model.tokenizer, tasks),
            temperature: 0.0,
            stop_at_eos: true,
            ..SamplingConfig::default()
        };
        for &shots in &skills.shots {
            let mut correct = 0;
            for chunk in tasks.chunks(TASKS_PER_BATCH) {
                let prompts: Vec<Vec<i64>> = chunk
                    .iter()
                    .map(|(task, examples)| few_shot_ids(&model.tokenizer, &examples[..shots], task))
                    .collect();
                let answers = generate_streams(model, &prompts, &greedy, 0)?;
                for ((task, _), answer) in chunk.iter().zip(&answers) {
                    // Decoding drops the EOS that ends an answer.
                    correct += task.is_answered_by(&model.tokenizer.decode(&answer.ids)) as i32;
                }
            }
            scores.push(SkillScore {
                version_id: version.version.id,
                skill: skill.clone(),
                shots: shots as i16,
                correct,
                total: tasks.len() as i32,
            });
            run.log(*step, &[("skill_tasks", tasks.len() as f64)])?;
            run.stop_if_requested(*step)?;
            *step += 1;
        }
    }
    Ok(scores)
}

/// Every first word of `samples` continuations of the probe's template filled with its
/// group `group_index`, with its count, the most frequent first, at temperature 1
/// (the model's own distribution, untruncated), each continuation from its own stream.
fn probe_words(
    model: &LanguageModel,
    probe: &Probe,
    index: usize,
    group_index: usize,
    seed: u64,
) -> Result<Vec<(String, usize)>, TrainError> {
    let cfg = SamplingConfig {
        max_new_tokens: PROBE_TOKENS,
        temperature: 1.0,
        top_k: None,
        top_p: None,
        seed,
        stop_at_eos: true,
    };
    let prompt = model.tokenizer.encode(&probe.prompt(&probe.groups[group_index]));
    let first_stream = PROBE_STREAMS + ((index * MAX_PROBE_GROUPS + group_index) * MAX_PROBE_SAMPLES) as u64;
    let mut words = Vec::with_capacity(probe.samples);
    for start in (0..probe.samples).step_by(CONTINUATIONS_PER_BATCH) {
        let n = CONTINUATIONS_PER_BATCH.min(probe.samples - start);
        let prompts = vec![prompt.clone(); n];
        for continuation in generate_streams(model, &prompts, &cfg, first_stream + start as u64)? {
            words.push(first_word(&model.tokenizer.decode(&continuation.ids)));
        }
    }
    Ok(counted_words(&words))
}

/// A continuation's first word: leading whitespace skipped, cut at the next whitespace,
/// punctuation or control character; [`NO_WORD`] when nothing is left. Characters, not
/// tokens, so that byte-level and BPE models are compared alike.
fn first_word(continuation: &str) -> String {
    let ends_a_word = |c: char| {
        c.is_whitespace()
            || c.is_control()
            || c.is_ascii_punctuation()
            // General Punctuation: dashes, curly quotes, ellipsis.
            || ('\u{2000}'..='\u{206F}').contains(&c)
    };
    let word: String = continuation.trim_start().chars().take_while(|&c| !ends_a_word(c)).collect();
    if word.is_empty() {
        NO_WORD.to_owned()
    } else {
        word
    }
}

/// Each word with its count, the most frequent first, ties in alphabetical order (so that
/// the same words always give the same list).
fn counted_words(words: &[String]) -> Vec<(String, usize)> {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for word in words {
        *counts.entry(word.as_str()).or_default() += 1;
    }
    let mut counted: Vec<(String, usize)> = counts.into_iter().map(|(w, n)| (w.to_owned(), n)).collect();
    counted.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    counted
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
    use super::*;
    use crate::data::Demonstration;
    use crate::TokenizerKind;

    #[test]
    fn repetition_counts_words_that_came_before() {
        assert_eq!(super::repetition(""), 0.0);
        assert_eq!(super::repetition("a b c"), 0.0);
        assert_eq!(super::repetition("a a a a"), 0.75);
        assert_eq!(super::repetition("cat dog cat"), 1.0 / 3.0);
    }

    #[test]
    fn the_first_word_stops_at_whitespace_or_punctuation() {
        let cases = [
            (" happy and old", "happy"),
            ("\n\tslow.", "slow"),
            ("tired, very", "tired"),
            ("don't", "don"),
            ("42 times", "42"),
            ("BIG\u{2014}really", "BIG"),
            ("café au lait", "café"),
            ("", NO_WORD),
            ("   ", NO_WORD),
            ("...well", NO_WORD),
            ("\0ab", NO_WORD),
        ];
        for (continuation, word) in cases {
            assert_eq!(first_word(continuation), word, "{continuation:?}");
        }
    }

    #[test]
    fn counted_words_keep_the_most_frequent_first_and_break_ties_alphabetically() {
        let words: Vec<String> =
            ["old", "slow", "old", "kind", "slow", "old", "(none)"].iter().map(|w| w.to_string()).collect();
        let counts =
            |pairs: &[(&str, usize)]| pairs.iter().map(|(w, n)| (w.to_string(), *n)).collect::<Vec<_>>();
        assert_eq!(counted_words(&words), counts(&[("old", 3), ("slow", 2), ("(none)", 1), ("kind", 1)]));
        assert_eq!(counted_words(&[]), vec![]);
    }

    #[test]
    fn a_few_shot_prompt_is_its_examples_as_sft_trains_on_them_then_the_question() {
        let task = |prompt: &str| world::parse_task(prompt).unwrap();
        let examples: [Question; 2] =
            [task("Reverse the word dog.\n").into(), task("Reverse the word fish.\n").into()];
        let question: Question = task("Reverse the word cat.\n").into();
        for kind in [TokenizerKind::Bytes, TokenizerKind::Gpt2] {
            let tokenizer = Tokenizer::new(kind);
            let as_sft = |t: &Question| {
                let d = Demonstration::new(t.prompt.clone(), t.answer.clone());
                crate::sft::example(&tokenizer, 1024, 0, &d).unwrap().ids
            };
            let ids = few_shot_ids(&tokenizer, &examples, &question);
            let expected: Vec<i64> =
                [as_sft(&examples[0]), as_sft(&examples[1]), tokenizer.encode(&question.prompt)].concat();
            assert_eq!(ids, expected, "{kind}");
            assert_eq!(
                few_shot_ids(&tokenizer, &[], &question),
                tokenizer.encode(&question.prompt),
                "zero-shot"
            );
        }
        let bytes = Tokenizer::new(TokenizerKind::Bytes);
        let text = bytes.decode(&few_shot_ids(&bytes, &examples[..1], &question));
        assert_eq!(text, "Reverse the word dog.\ngodReverse the word cat.\n", "EOS decodes to nothing");
    }
}

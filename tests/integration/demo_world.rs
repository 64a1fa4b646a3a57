//! The whole recipe on the demo world, measured by its oracle: SFT → reward model → PPO
//! on tiny models, in the library (the CLI and the web app drive the same functions).
//!
//! The world is one skill, sorting digits: thousands of prompts, so that nothing can be
//! learnt by heart and the held-out prompts (val and test) are plenty. The demonstrator
//! is sloppy, as InstructGPT's premise has it: every second demonstration pads the
//! answer with filler ("0345 ok ok ok"), which the oracle penalises as rambling and
//! repetition. SFT imitates the demonstrations, padding included; the rankings, which
//! the oracle writes over the SFT policy's own samples (and over synthetic ones), say
//! that the padding is worse; the reward model learns it from them and PPO against that
//! reward model drops it. Each stage is measured on held-out prompts with the oracle's
//! score and exact-match accuracy of samples at temperature 1, the same seed for every
//! policy, and each assertion fails when its stage does not learn (a learning rate of
//! ~0: SFT stays at the base's −0.54; an untrained RM agrees on ~0.4–0.5 of the pairs
//! and PPO against it loses oracle score; PPO that does not move gains nothing).
//!
//! The reward model is far from exact on the digits themselves (about 0.84 of the
//! held-out pairs of the SFT policy's samples), and PPO finds its errors: run longer or
//! with a weaker KL penalty, it trades correct digits for ones the RM wrongly likes and
//! the oracle score falls while the RM's reward rises. Hence the short, strongly
//! penalised PPO run. Run single-threaded (`OMP_NUM_THREADS=1`, as `make test` does),
//! the test takes about 30 s of one core.

use std::collections::HashSet;
use std::time::Instant;

use trainer::data::{Demonstration, Ranking};
use trainer::ppo::{self, PpoConfig};
use trainer::reward::{self, RewardConfig};
use trainer::sampling::{generate, SamplingConfig};
use trainer::sft::{self, SftConfig};
use trainer::tch::Device;
use trainer::train::RunDir;
use trainer::{GptConfig, LanguageModel, TokenizerKind};
use world::{self, Finish, Oracle, Skill, Split, Task};

/// Longest response, EOS included, when sampling.
const MAX_NEW: i64 = 20;
/// Samples per held-out prompt in each measurement.
const PER_PROMPT: usize = 4;
/// Samples per prompt that the oracle ranks for the reward model (K).
const K: usize = 4;
/// The filler that the sloppy demonstrator pads every second answer with.
const PADDING: [&str; 4] = [" ok ok ok", " yes yes yes", " it is it is", " so so so so"];

/// Seeds the model, the data and every stage.
const SEED: u64 = 0;

pub(crate) fn tiny_model() -> LanguageModel {
    trainer::tch::manual_seed(SEED as i64);
    let mut cfg = GptConfig::tiny(258);
    (cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.n_ctx) = (2, 4, 96, 64);
    LanguageModel::new(cfg, TokenizerKind::Bytes, Device::Cpu).unwrap()
}

/// A policy's samples, `per_prompt` per task, at temperature 1 from `seed`: the texts
/// (without EOS) and how each ended.
fn sample(model: &LanguageModel, tasks: &[Task], per_prompt: usize, seed: u64) -> Vec<(String, Finish)> {
    let prompts: Vec<Vec<i64>> = tasks
        .iter()
        .flat_map(|t| std::iter::repeat_n(model.tokenizer.encode(&t.prompt), per_prompt))
        .collect();
    let cfg = SamplingConfig { max_new_tokens: MAX_NEW, seed, ..Default::default() };
    let eos = model.tokenizer.eos_id();
    generate(model, &prompts, &cfg)
        .unwrap()
        .into_iter()
        .map(|s| {
            let ids: Vec<i64> = s.ids.into_iter().filter(|&id| id != eos).collect();
            let finish = if s.stopped_at_eos { Finish::Eos } else { Finish::Length };
            (model.tokenizer.decode(&ids), finish)
        })
        .collect()
}

/// Mean oracle score and exact-match accuracy (an answer that stopped) of a policy on
/// `tasks`, `PER_PROMPT` samples each at temperature 1, seeded alike for every policy.
pub(crate) fn measure(model: &LanguageModel, tasks: &[Task]) -> (f64, f64) {
    let samples = sample(model, tasks, PER_PROMPT, 11);
    let tasks = tasks.iter().flat_map(|t| std::iter::repeat_n(t, PER_PROMPT));
    let (mut score, mut correct) = (0.0, 0.0);
    for (task, (text, finish)) in tasks.zip(&samples) {
        score += world::score(task, text, *finish);
        correct += f64::from(*finish == Finish::Eos && world::is_correct(task, text));
    }
    (score / samples.len() as f64, correct / samples.len() as f64)
}

/// The oracle's rankings of the policy's own samples, K per task (noiseless: groups of
/// equal score, best first; a sample cut at the length limit pays for it).
pub(crate) fn rankings_of_samples(model: &LanguageModel, tasks: &[Task], seed: u64) -> Vec<Ranking> {
    let samples = sample(model, tasks, K, seed);
    tasks
        .iter()
        .zip(samples.chunks(K))
        .map(|(task, group)| {
            let scores: Vec<f64> =
                group.iter().map(|(text, finish)| world::score(task, text, *finish)).collect();
            let mut order: Vec<usize> = (0..K).collect();
            order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
            let mut ranking: Vec<Vec<usize>> = Vec::new();
            for i in order {
                match ranking.last_mut() {
                    Some(tied) if scores[tied[0]] == scores[i] => tied.push(i),
                    _ => ranking.push(vec![i]),
                }
            }
            let texts = group.iter().map(|(text, _)| text.clone()).collect();
            Ranking::new(task.prompt.clone(), texts, ranking).unwrap()
        })
        .collect()
}

/// The oracle's rankings of K synthetic samples per task.
fn synthetic_rankings(tasks: &[Task], seed: u64) -> Vec<Ranking> {
    world::rankings(tasks, K, &Oracle::exact(), seed)
        .into_iter()
        .map(|r| Ranking::new(r.prompt, r.samples, r.ranking).unwrap())
        .collect()
}

/// Share of the comparisons of `rankings` that the reward model orders as the oracle did.
fn agreement(reward_model: &LanguageModel, rankings: &[Ranking]) -> f64 {
    let (mut agreed, mut compared) = (0, 0);
    for r in rankings {
        let pairs: Vec<(String, String)> =
            r.samples().iter().map(|s| (r.prompt().to_string(), s.clone())).collect();
        let rewards = reward::score(reward_model, &pairs, 64).unwrap();
        for (better, worse) in r.pairs() {
            agreed += usize::from(rewards[better] > rewards[worse]);
            compared += 1;
        }
    }
    agreed as f64 / compared as f64
}

pub(crate) fn run_dir(dir: &tempfile::TempDir, name: &str) -> RunDir {
    RunDir::open(&dir.path().join(name), false).unwrap()
}

/// The sorting tasks that demonstrations and rankings are written for.
pub(crate) fn train_tasks() -> Vec<Task> {
    world::tasks_of(Skill::Sort, 3000, Split::Train, 1 + SEED)
}

/// Distinct val and test prompts, never trained on.
pub(crate) fn held_out_tasks() -> Vec<Task> {
    let mut seen = HashSet::new();
    let val = world::tasks_of(Skill::Sort, 80, Split::Val, 2);
    let test = world::tasks_of(Skill::Sort, 80, Split::Test, 2);
    val.into_iter().chain(test).filter(|t| seen.insert(t.prompt.clone())).collect()
}

/// The sloppy demonstrator's answers: every second one padded with filler.
pub(crate) fn sloppy_demonstrations(tasks: &[Task]) -> Vec<Demonstration> {
    tasks
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let padding = if i % 2 == 0 { PADDING[i / 2 % PADDING.len()] } else { "" };
            Demonstration::new(t.prompt.clone(), format!("{}{padding}", t.answer))
        })
        .collect()
}

/// SFT of `base` on the sloppy demonstrations: it learns the answers, padding included.
pub(crate) fn sloppy_sft(
    base: LanguageModel,
    demos: &[Demonstration],
    dir: &tempfile::TempDir,
) -> LanguageModel {
    let sft_cfg = SftConfig {
        steps: Some(400),
        lr: Some(3e-3),
        batch_size: 16,
        dropout: Some(0.0),
        warmup_steps: 10,
        eval_every: 0,
        checkpoint_every: 0,
        seed: SEED,
        ..Default::default()
    };
    sft::train(&sft_cfg, base, demos, &demos[..64], &mut run_dir(dir, "sft")).unwrap().0
}

#[test]
fn sft_then_rm_then_ppo_raise_the_oracle_score_on_held_out_prompts() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let (train_tasks, held_out) = (train_tasks(), held_out_tasks());

    let base = tiny_model();
    let (base_score, base_accuracy) = measure(&base, &held_out);

    let demos = sloppy_demonstrations(&train_tasks);
    let sft_model = sloppy_sft(base, &demos, &dir);
    let (sft_score, sft_accuracy) = measure(&sft_model, &held_out);
    let sft_seconds = started.elapsed().as_secs_f64();

    // The reward model, from the SFT model's trunk, learns the oracle's preferences from
    // K = 4 rankings of the SFT policy's samples and of synthetic ones; it is validated
    // on rankings of the SFT policy's samples on held-out prompts.
    let mut rankings = rankings_of_samples(&sft_model, &train_tasks[..400], 5 + SEED);
    rankings.extend(synthetic_rankings(&train_tasks[400..1000], 3 + SEED));
    let val_rankings = rankings_of_samples(&sft_model, &held_out, 7);
    let rm_cfg = RewardConfig {
        steps: Some(240),
        lr: Some(3e-4),
        batch_size: 4,
        eval_every: 0,
        checkpoint_every: 0,
        seed: SEED,
        ..Default::default()
    };
    let (reward_model, rm_report) = reward::train(
        &rm_cfg,
        sft_model.try_clone().unwrap(),
        &rankings,
        &val_rankings,
        &demos[..200],
        &mut run_dir(&dir, "rm"),
    )
    .unwrap();
    let rm_accuracy = rm_report.val_accuracy.unwrap();
    let rm_synthetic_accuracy = agreement(&reward_model, &synthetic_rankings(&held_out, 4));
    let rm_seconds = started.elapsed().as_secs_f64() - sft_seconds;

    // PPO against that reward model, from the SFT policy, with a strong KL penalty (β = 1)
    // and few steps: dropping the padding is learnt within a few steps, while the RM's
    // errors on the digits, which longer or freer PPO exploits (the oracle score then
    // falls as the RM's reward rises), are not worth the KL.
    let prompts: Vec<String> = train_tasks.iter().map(|t| t.prompt.clone()).collect();
    let ppo_cfg = PpoConfig {
        steps: 6,
        batch_size: 64,
        minibatch_size: 16,
        ppo_epochs: 2,
        lr: Some(1e-4),
        value_lr: Some(1e-3),
        warmup_steps: 0,
        max_new_tokens: MAX_NEW,
        kl_coef: 1.0,
        reward_clip: Some(3.0),
        checkpoint_every: 0,
        seed: SEED,
        ..Default::default()
    };
    let (policy, _) = ppo::train(
        &ppo_cfg,
        sft_model.try_clone().unwrap(),
        &reward_model,
        &prompts,
        None,
        &mut run_dir(&dir, "ppo"),
    )
    .unwrap();
    let (ppo_score, ppo_accuracy) = measure(&policy, &held_out);
    let held_out_prompts: Vec<String> = held_out.iter().map(|t| t.prompt.clone()).collect();
    let evaluate = |model: &LanguageModel| {
        ppo::evaluate(model, &sft_model, &reward_model, &held_out_prompts, &ppo_cfg, 11).unwrap()
    };
    let (sft_eval, ppo_eval) = (evaluate(&sft_model), evaluate(&policy));
    let ppo_seconds = started.elapsed().as_secs_f64() - sft_seconds - rm_seconds;

    eprintln!(
        "oracle score (exact-match accuracy) of {PER_PROMPT} samples at temperature 1 (seed 11) on each of \
         {} held-out prompts: base {base_score:.3} ({base_accuracy:.2}), SFT {sft_score:.3} \
         ({sft_accuracy:.2}), PPO {ppo_score:.3} ({ppo_accuracy:.2}); RM agreement with the oracle on \
         held-out pairs: {rm_accuracy:.3} of the SFT policy's samples, {rm_synthetic_accuracy:.3} of \
         synthetic ones; held-out RM reward SFT {:.2}, PPO {:.2}, PPO's KL to SFT {:.2} nats; \
         {:.0} s (SFT {sft_seconds:.0} s, RM {rm_seconds:.0} s, PPO {ppo_seconds:.0} s)",
        held_out.len(),
        sft_eval.reward,
        ppo_eval.reward,
        ppo_eval.kl,
        started.elapsed().as_secs_f64(),
    );
    assert!(sft_score > base_score + 0.8, "SFT {sft_score:.3} vs base {base_score:.3}");
    assert!(sft_accuracy > base_accuracy + 0.25, "SFT accuracy {sft_accuracy:.2} vs base {base_accuracy:.2}");
    assert!(
        rm_accuracy >= 0.8,
        "RM agreement {rm_accuracy:.3} on held-out rankings of the SFT policy's samples"
    );
    assert!(ppo_score > sft_score + 0.05, "PPO {ppo_score:.3} vs SFT {sft_score:.3}");
    assert!(ppo_accuracy > sft_accuracy + 0.15, "PPO accuracy {ppo_accuracy:.2} vs SFT {sft_accuracy:.2}");
    assert!(ppo_eval.kl < 2.0, "PPO drifted {:.2} nats from SFT", ppo_eval.kl);
}

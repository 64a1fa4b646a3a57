//! An RL run's evaluation on prompts held out of its training: every `eval_every` steps
//! the policy samples each held-out prompt once (from the same random streams each
//! time), and the samples are scored by the reward (`heldout/reward`), by their KL to
//! the reference (`heldout/kl`) and, where a gold score is known, by it (`heldout/gold`).
//! Drawn against KL these are the over-optimisation curve of Gao et al. (2022): the gold
//! score rises and then falls while the proxy reward keeps rising. A run may register
//! the evaluated policy that scored best instead of its last ([`Selection`]).

use std::collections::HashSet;
use std::path::PathBuf;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use serde_json::json;
use spec::Selection;

use crate::checkpoint::LanguageModel;
use crate::distributed;
use crate::rollout::{self, rollout_sampling, EvalFn, Gold, Reward};
use crate::train::{replace_model_dir, training_state, RunDir, TrainError};
use tch::Device;

/// Mixed into the stage's seed to choose the held-out prompts, so that the choice draws
/// a sequence of its own.
const HELDOUT_SEED: u64 = 0x6865_6c64_6f75_7400;

/// Samples per forward pass of the evaluation.
const EVAL_BATCH: usize = 16;

/// `prompts` split into (training, held out): `wanted` distinct prompt texts, at most a
/// quarter of the distinct ones, chosen by `seed`, are held out, and every copy of them
/// leaves the training prompts, which keep their order.
pub fn split(prompts: &[String], wanted: usize, seed: u64) -> (Vec<String>, Vec<String>) {
    let mut distinct: Vec<&String> = Vec::new();
    let mut seen = HashSet::new();
    for prompt in prompts {
        if seen.insert(prompt) {
            distinct.push(prompt);
        }
    }
    let n = wanted.min(distinct.len() / 4);
    distinct.shuffle(&mut ChaCha8Rng::seed_from_u64(seed ^ HELDOUT_SEED));
    let held: Vec<String> = distinct[..n].iter().map(|p| (*p).clone()).collect();
    let held_set: HashSet<&String> = held.iter().collect();
    let training = prompts.iter().filter(|p| !held_set.contains(p)).cloned().collect();
    (training, held)
}

/// The evaluated policy a run registers instead of its last, and why.
pub struct Selected {
    /// The step whose metrics hold its evaluation.
    pub step: i64,
    pub by: Selection,
    /// Its held-out score by `by`.
    pub value: f64,
    pub model: LanguageModel,
}

/// What a registered version records of its selection.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SelectionRecord {
    pub by: Selection,
    pub step: i64,
    pub value: f64,
}

impl Selected {
    pub fn record(&self) -> SelectionRecord {
        SelectionRecord { by: self.by, step: self.step, value: self.value }
    }
}

/// The held-out evaluation of an RL run: its `eval` is the run's evaluation hook.
pub struct HeldOut<'a> {
    prompts: Vec<String>,
    reward: Reward<'a>,
    max_new_tokens: i64,
    temperature: f64,
    seed: u64,
    gold: Option<&'a Gold<'a>>,
    select: Selection,
    /// Where the best evaluated policy is kept, its record in its plumb.json: the run's
    /// `checkpoints/best`, which each checkpoint carries, so that a resumed run gets back
    /// the best as of the checkpoint it resumed from.
    best_dir: PathBuf,
    best: Option<SelectionRecord>,
    /// Whether `best` has been read back from `best_dir`: at the first evaluation, after
    /// the run has resumed.
    restored: bool,
}

impl<'a> HeldOut<'a> {
    /// Sampling at the run's `temperature` up to `max_new_tokens`, from `seed`; the best
    /// policy kept in `best_dir`. A selection by gold without a gold score, or any
    /// selection without held-out prompts or evaluations, is refused before the run
    /// trains.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        stage: &str,
        prompts: Vec<String>,
        reward: Reward<'a>,
        (max_new_tokens, temperature, seed): (i64, f64, u64),
        eval_every: i64,
        gold: Option<&'a Gold<'a>>,
        select: Selection,
        best_dir: PathBuf,
    ) -> Result<Self, TrainError> {
        if select != Selection::Last && (prompts.is_empty() || eval_every == 0) {
            return Err(TrainError::Config(format!(
                "{stage}.select_by = {} needs held-out evaluations, but {}: set {stage}.heldout_prompts and \
                 {stage}.eval_every above 0 (at most a quarter of the prompts are held out)",
                select.name(),
                if eval_every == 0 {
                    "eval_every is 0".to_owned()
                } else {
                    "no prompt is held out".to_owned()
                }
            )));
        }
        if select == Selection::Gold && gold.is_none() {
            return Err(TrainError::Config(format!(
                "{stage}.select_by = gold needs a gold score of the held-out samples, and only the demo world's \
                 tasks have one (its oracle): select by reward instead"
            )));
        }
        Ok(HeldOut {
            prompts,
            reward,
            max_new_tokens,
            temperature,
            seed,
            gold,
            select,
            best_dir,
            best: None,
            restored: false,
        })
    }

    /// The held-out prompts.
    pub fn prompts(&self) -> &[String] {
        &self.prompts
    }

    /// Measures `policy` against `reference` after step `step` (the step its metrics are
    /// logged at), keeps it when it is the best so far by the selection, and returns the
    /// metrics to log (none without held-out prompts, and none on a rank other than 0).
    pub fn eval(
        &mut self,
        step: i64,
        policy: &LanguageModel,
        reference: &LanguageModel,
    ) -> Result<Vec<(String, f64)>, TrainError> {
        // Rank 0 alone logs and saves, so it alone evaluates (no collective call is in
        // an evaluation, so the other ranks need not wait for it).
        if self.prompts.is_empty() || !distributed::is_leader() {
            return Ok(Vec::new());
        }
        let sampling = rollout_sampling(self.max_new_tokens, self.temperature, self.seed ^ HELDOUT_SEED);
        let measured = rollout::evaluate(
            policy,
            reference,
            self.reward,
            &self.prompts,
            &sampling,
            EVAL_BATCH,
            self.gold,
        )?;
        let mut metrics = vec![
            ("heldout/reward".to_owned(), measured.reward),
            ("heldout/kl".to_owned(), measured.kl),
            ("heldout/length".to_owned(), measured.length),
            ("heldout/eos_rate".to_owned(), measured.eos_rate),
        ];
        if let Some(gold) = measured.gold {
            metrics.push(("heldout/gold".to_owned(), gold));
        }
        let value = match self.select {
            Selection::Last => None,
            Selection::Reward => Some(measured.reward),
            Selection::Gold => measured.gold,
        };
        if self.select == Selection::Last {
            return Ok(metrics);
        }
        if !self.restored {
            self.best = self.saved_record()?;
            self.restored = true;
        }
        // A best from this step on is of steps that a resumed run trains again.
        if self.best.as_ref().is_some_and(|best| best.step >= step) {
            self.best = None;
        }
        if let Some(value) = value.filter(|v| v.is_finite()) {
            if self.best.as_ref().is_none_or(|best| value > best.value) {
                let record = SelectionRecord { by: self.select, step, value };
                replace_model_dir(&self.best_dir, policy, Some(json!({ "selected": record })))?;
                self.best = Some(record);
            }
        }
        Ok(metrics)
    }

    /// The record of the best policy in `best_dir` by this run's selection, if any.
    fn saved_record(&self) -> Result<Option<SelectionRecord>, TrainError> {
        if !self.best_dir.join(crate::checkpoint::PLUMB_FILE).exists() {
            return Ok(None);
        }
        let training = training_state(&self.best_dir)?;
        Ok(serde_json::from_value::<SelectionRecord>(training["selected"].clone())
            .ok()
            .filter(|record| record.by == self.select))
    }

    /// The evaluated policy that scored best, when the run selects one, read back on
    /// `device`.
    pub fn selected(self, device: Device) -> Result<Option<Selected>, TrainError> {
        let Some(record) = self.best else {
            return Ok(None);
        };
        let model = LanguageModel::load(&self.best_dir, device)?;
        Ok(Some(Selected { step: record.step, by: record.by, value: record.value, model }))
    }
}

/// What the held-out evaluation of an RL stage reads of its settings.
#[derive(Clone, Copy, Debug)]
pub struct HeldOutSettings {
    pub stage: &'static str,
    pub heldout_prompts: usize,
    pub eval_every: i64,
    pub select_by: Selection,
    pub max_new_tokens: i64,
    pub temperature: f64,
    pub seed: u64,
}

macro_rules! heldout_settings {
    ($($config:ty => $stage:literal),*) => {$(
        impl From<&$config> for HeldOutSettings {
            fn from(cfg: &$config) -> Self {
                HeldOutSettings {
                    stage: $stage,
                    heldout_prompts: cfg.heldout_prompts,
                    eval_every: cfg.eval_every,
                    select_by: cfg.select_by,
                    max_new_tokens: cfg.max_new_tokens,
                    temperature: cfg.temperature,
                    seed: cfg.seed,
                }
            }
        }
    )*};
}
heldout_settings!(spec::PpoConfig => "ppo", spec::RlooConfig => "rloo", spec::GrpoConfig => "grpo");

/// The demo world's task a prompt asks, in one of its phrasings, whether or not the
/// prompt keeps the phrasing's closing newline.
fn demo_world_task(prompt: &str) -> Option<world::Task> {
    world::parse_task(prompt).or_else(|| world::parse_task(&format!("{}\n", prompt.trim_end())))
}

/// The demo world's oracle as a gold score.
fn demo_world_gold(prompt: &str, response: &str, eos: bool) -> Option<f64> {
    let finish = if eos { world::Finish::Eos } else { world::Finish::Length };
    demo_world_task(prompt).map(|task| world::score(&task, response, finish))
}

/// An RL stage's run with its held-out evaluation: `prompts` split by
/// `settings.heldout_prompts`, `train` given the training prompts and the evaluation
/// hook, the demo world's oracle as the gold score when a held-out prompt is one of its
/// tasks, and, when the run selects an evaluated policy, that policy saved over the last
/// in `run` and returned with the record of why.
pub fn train_with_heldout<R>(
    settings: HeldOutSettings,
    prompts: &[String],
    reward: Reward,
    run: &mut RunDir,
    train: impl FnOnce(&[String], &mut RunDir, &mut EvalFn) -> Result<(LanguageModel, R), TrainError>,
) -> Result<(LanguageModel, R, Option<SelectionRecord>), TrainError> {
    // A run that never evaluates keeps every prompt for training.
    let wanted = if settings.eval_every > 0 { settings.heldout_prompts } else { 0 };
    let (training, held) = split(prompts, wanted, settings.seed);
    let gold: Option<&Gold> = held.iter().any(|p| demo_world_task(p).is_some()).then_some(&demo_world_gold);
    let sampling = (settings.max_new_tokens, settings.temperature, settings.seed);
    let mut heldout = HeldOut::new(
        settings.stage,
        held,
        reward,
        sampling,
        settings.eval_every,
        gold,
        settings.select_by,
        run.best_dir(),
    )?;
    let (last, report) =
        train(&training, run, &mut |s, policy, reference| heldout.eval(s, policy, reference))?;
    match heldout.selected(last.device())? {
        Some(selected) => {
            let record = selected.record();
            run.save_model(&selected.model, Some(json!({ "selected": record })))?;
            Ok((selected.model, report, Some(record)))
        }
        None => Ok((last, report, None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prompts(texts: &[&str]) -> Vec<String> {
        texts.iter().map(|t| t.to_string()).collect()
    }

    #[test]
    fn a_quarter_of_the_distinct_prompts_at_most_is_held_out_and_none_of_them_trains() {
        let all = prompts(&["a", "b", "c", "d", "a", "e", "f", "g", "h", "a"]);
        let (training, held) = split(&all, 16, 3);
        // 8 distinct prompts: 2 held out, every copy of them gone from training.
        assert_eq!(held.len(), 2);
        assert!(training.iter().all(|p| !held.contains(p)), "{training:?} vs {held:?}");
        let kept: Vec<&String> = all.iter().filter(|p| !held.contains(p)).collect();
        assert_eq!(training.iter().collect::<Vec<_>>(), kept, "training keeps its order and copies");
        assert_eq!(split(&all, 16, 3), (training.clone(), held.clone()), "the choice follows the seed");
        assert_eq!(split(&all, 1, 3).1.len(), 1);
        assert_eq!(split(&all, 0, 3), (all.clone(), vec![]));
        assert_eq!(
            split(&prompts(&["x", "y", "z"]), 16, 3).1,
            Vec::<String>::new(),
            "3 prompts hold none out"
        );
    }

    /// Three evaluations whose gold scores are 0.1, 0.7 and 0.3 (each its own policy):
    /// selection by gold keeps the second policy, and every evaluation logs the metrics.
    #[test]
    fn selection_by_gold_keeps_the_policy_that_scored_best() {
        use crate::ppo::learning_tests::{lowercase_reward_model, policy_model};
        use std::cell::Cell;
        let rm = lowercase_reward_model();
        let reference = policy_model(0);
        let golds = [0.1, 0.7, 0.3];
        let call = Cell::new(0usize);
        // Each evaluation's samples all score the evaluation's gold.
        let n = 4;
        let gold = |_: &str, _: &str, _: bool| {
            let i = call.get();
            call.set(i + 1);
            Some(golds[i / n])
        };
        let held = prompts(&["AB:", "CD:", "EF:", "GH:"]);
        let dir = tempfile::tempdir().unwrap();
        let best_dir = dir.path().join("best");
        let new = |held| {
            HeldOut::new(
                "ppo",
                held,
                Reward::Model(&rm),
                (6, 1.0, 0),
                1,
                Some(&gold),
                Selection::Gold,
                best_dir.clone(),
            )
            .unwrap()
        };
        let mut heldout = new(held.clone());
        let policies: Vec<LanguageModel> = (1..=3).map(policy_model).collect();
        for (step, policy) in policies.iter().enumerate() {
            let metrics = heldout.eval(step as i64, policy, &reference).unwrap();
            let names: Vec<&str> = metrics.iter().map(|(k, _)| k.as_str()).collect();
            assert_eq!(
                names,
                ["heldout/reward", "heldout/kl", "heldout/length", "heldout/eos_rate", "heldout/gold"]
            );
            assert!((metrics[4].1 - golds[step]).abs() < 1e-12, "{metrics:?}");
            assert!(metrics.iter().all(|(_, v)| v.is_finite()), "{metrics:?}");
        }
        let selected = heldout.selected(Device::Cpu).unwrap().expect("selected");
        assert_eq!((selected.step, selected.by, selected.value), (1, Selection::Gold, 0.7));
        let same = |a: &LanguageModel, b: &LanguageModel| {
            let (a, b) = (a.vs.variables(), b.vs.variables());
            a.len() == b.len() && a.iter().all(|(name, x)| b.get(name).is_some_and(|y| x.equal(y)))
        };
        assert!(same(&selected.model, &policies[1]), "the second policy's weights");
        assert!(!same(&selected.model, &policies[2]));

        // A resumed run (a new HeldOut on the same directory) keeps the best of the steps
        // before the one it evaluates first, and forgets a best of the steps it redoes.
        let resumed = |first_step: i64, gold_now: f64| {
            call.set(golds.iter().position(|&g| g == gold_now).unwrap() * n);
            let mut heldout = new(held.clone());
            heldout.eval(first_step, &policies[2], &reference).unwrap();
            heldout.selected(Device::Cpu).unwrap().expect("selected")
        };
        let kept = resumed(2, 0.3);
        assert_eq!((kept.step, kept.value), (1, 0.7), "the best before the resumed step is kept");
        assert!(same(&kept.model, &policies[1]));
        let redone = resumed(1, 0.3);
        assert_eq!((redone.step, redone.value), (1, 0.3), "a best of a redone step is measured again");
        assert!(same(&redone.model, &policies[2]));
    }

    #[test]
    fn a_selection_the_run_cannot_make_is_refused_naming_the_setting() {
        use crate::ppo::learning_tests::lowercase_reward_model;
        let rm = lowercase_reward_model();
        let held = prompts(&["AB:"]);
        let new = |stage, held: &[String], eval_every, select| {
            let best = PathBuf::from("/nonexistent/best");
            HeldOut::new(
                stage,
                held.to_vec(),
                Reward::Model(&rm),
                (6, 1.0, 0),
                eval_every,
                None,
                select,
                best,
            )
        };
        let refusal = |stage, held: &[String], eval_every, select| {
            new(stage, held, eval_every, select).err().unwrap().to_string()
        };
        let err = refusal("rloo", &held, 10, Selection::Gold);
        assert!(err.contains("rloo.select_by = gold") && err.contains("oracle"), "{err}");
        let err = refusal("ppo", &[], 10, Selection::Reward);
        assert!(err.contains("ppo.heldout_prompts"), "{err}");
        let err = refusal("ppo", &held, 0, Selection::Reward);
        assert!(err.contains("eval_every is 0"), "{err}");
        assert!(new("ppo", &[], 0, Selection::Last).is_ok());
    }
}

//! An eval run's optional measurements on a real Postgres: few-shot accuracy on the demo
//! world's skills and probe words, for every version, stored with the samples and
//! readable through the registry.

use std::collections::HashMap;

use registry::evals::{self, ProbeWord, SkillScore};
use registry::runs::{self, RunKind, RunStatus};
use registry::versions::{self, ModelKind, NewVersion};
use serde_json::json;
use trainer::tch::Device;
use trainer::worker::Outcome;
use trainer::{GptConfig, LanguageModel, TokenizerKind};
use world::Skill;

use crate::db::with_db;
use crate::worker::{enqueue, no_shutdown, setup, worker, Setup};

/// Registers `name:1` with the weights of `dir`.
async fn register(pool: &sqlx::PgPool, setup: &Setup, name: &str, dir: &std::path::Path) -> i64 {
    let new = NewVersion {
        model: name.into(),
        kind: ModelKind::Base,
        run_id: None,
        parents: Vec::new(),
        snapshots: Vec::new(),
        config: json!({}),
        metrics: json!({}),
        artifact: setup.store.put_dir(dir).unwrap(),
        created_by: None,
    };
    versions::register(pool, &new).await.unwrap().id
}

/// Registers `trained:1`: a small byte model trained on `demonstrations` until it
/// answers them (150 steps of the whole set), so that an eval run scores it on them.
async fn memorised(
    pool: &sqlx::PgPool,
    setup: &Setup,
    demonstrations: &[trainer::data::Demonstration],
) -> i64 {
    trainer::tch::manual_seed(4);
    let mut config = GptConfig::tiny(258);
    (config.n_layer, config.n_embd) = (2, 64);
    let model = LanguageModel::new(config, TokenizerKind::Bytes, Device::Cpu).unwrap();
    let sft = trainer::sft::SftConfig {
        steps: Some(150),
        lr: Some(3e-3),
        batch_size: demonstrations.len(),
        dropout: Some(0.0),
        eval_every: 0,
        checkpoint_every: 0,
        warmup_steps: 10,
        val_fraction: 0.0,
        ..Default::default()
    };
    let trained_dir = setup.dir.path().join("trained");
    let mut run = trainer::train::RunDir::open(&trained_dir, false).unwrap();
    trainer::sft::train(&sft, model, demonstrations, demonstrations, &mut run).unwrap();
    register(pool, setup, "trained", &trained_dir).await
}

#[test]
fn an_eval_run_measures_few_shot_accuracy_and_probe_words_for_every_version() {
    with_db(|db| async move {
        let pool = &db.pool;
        let setup = setup(&db, 2).await;
        let base = versions::resolve(pool, "base:1").await.unwrap();
        // `copy:1` has base's weights: measured with the same tasks, examples and random
        // streams, it must come out exactly as base does. `other:1` has other weights.
        let base_dir = setup.store.get(&base.artifact_sha256).unwrap();
        let copy = register(pool, &setup, "copy", &base_dir).await;
        trainer::tch::manual_seed(2);
        let other_model =
            LanguageModel::new(GptConfig::tiny(258), TokenizerKind::Bytes, Device::Cpu).unwrap();
        let other_dir = setup.dir.path().join("other");
        other_model.save(&other_dir, None).unwrap();
        let other = register(pool, &setup, "other", &other_dir).await;

        let config = json!({
            "versions": ["base:1", "copy:1", "other:1"],
            "prompts": { "limit": 2 },
            "stage": { "max_new_tokens": 4, "seed": 3 },
            "skills": { "shots": [2, 0], "per_skill": 3 },
            "probes": [{ "template": "The {group} worker was very", "groups": ["young", "old"],
                         "samples": 16, "top": 5 }],
        });
        let run_id = enqueue(pool, setup.project, RunKind::Eval, config).await;
        let worker = worker(pool, &setup, "w1");
        let (_, outcome) = worker.run_next(no_shutdown()).await.unwrap().unwrap();
        assert_eq!(outcome, Outcome::Succeeded { version_id: None });
        let run = runs::get(pool, run_id).await.unwrap();
        // Per version: one batch of samples, 5 skills × 2 shot counts, 2 probe groups.
        assert_eq!((run.status, run.step, run.total_steps), (RunStatus::Succeeded, 39, Some(39)));

        // A row per version × skill × shots, each over per_skill tasks.
        let skills = evals::skill_scores(pool, run_id).await.unwrap();
        let mut expected: Vec<(i64, String, i16)> = [base.id, copy, other]
            .into_iter()
            .flat_map(|v| {
                Skill::ALL.into_iter().flat_map(move |s| [0, 2].map(|k| (v, s.name().to_owned(), k)))
            })
            .collect();
        expected.sort();
        let keys: Vec<(i64, String, i16)> =
            skills.iter().map(|s| (s.version_id, s.skill.clone(), s.shots)).collect();
        assert_eq!(keys, expected, "ordered by version, skill, shots");
        assert!(skills.iter().all(|s| s.total == 3 && (0..=3).contains(&s.correct)), "{skills:?}");
        let of = |v: i64| -> Vec<(String, i16, i32)> {
            skills
                .iter()
                .filter(|s| s.version_id == v)
                .map(|s| (s.skill.clone(), s.shots, s.correct))
                .collect()
        };
        assert_eq!(of(base.id), of(copy), "the same weights, the same tasks and examples");

        // Each group's top words: at most `top`, the most frequent first, shares of 16.
        let words = evals::probe_words(pool, run_id).await.unwrap();
        let mut groups: HashMap<(i64, String), Vec<&ProbeWord>> = HashMap::new();
        for w in &words {
            assert_eq!((w.probe, w.template.as_str()), (0, "The {group} worker was very"));
            let plain = !w.word.is_empty()
                && !w.word.chars().any(|c| c.is_whitespace() || c.is_ascii_punctuation() || c.is_control());
            assert!(plain || w.word == "(none)", "{:?} is not a word", w.word);
            assert!(w.share > 0.0 && (w.share * 16.0 - (w.share * 16.0).round()).abs() < 1e-4, "{w:?}");
            groups.entry((w.version_id, w.group_name.clone())).or_default().push(w);
        }
        assert_eq!(groups.len(), 3 * 2, "every version × group: {words:?}");
        for ((version, group), ws) in &groups {
            let shares: Vec<f32> = ws.iter().map(|w| w.share).collect();
            assert!(!shares.is_empty() && shares.len() <= 5, "{version} {group}: {shares:?}");
            assert!(shares.windows(2).all(|p| p[0] >= p[1]), "{version} {group}: {shares:?}");
            assert!(shares.iter().sum::<f32>() <= 1.0 + 1e-6, "{version} {group}: {shares:?}");
        }
        let by = |v: i64| -> Vec<(String, String, f32)> {
            words
                .iter()
                .filter(|w| w.version_id == v)
                .map(|w| (w.group_name.clone(), w.word.clone(), w.share))
                .collect()
        };
        assert_eq!(by(base.id), by(copy), "the same weights, the same random streams");
        assert_ne!(by(base.id), by(other), "other weights, other words");

        // Every word's count is kept: each version's groups add up to their 16 continuations.
        let counts = evals::probe_counts(pool, run_id).await.unwrap();
        let mut totals: HashMap<(i64, String), i32> = HashMap::new();
        for c in &counts {
            *totals.entry((c.version_id, c.group_name.clone())).or_default() += c.count;
        }
        assert_eq!(totals.len(), 3 * 2);
        assert!(totals.values().all(|&n| n == 16), "{totals:?}");

        // The divergence between groups, per version, against the first version.
        let report = evals::report(pool, run_id, Some(base.id)).await.unwrap();
        let stat = |v: i64| report.probe_statistics.iter().find(|s| s.version_id == v).unwrap();
        assert_eq!(report.probe_statistics.len(), 3);
        for v in [base.id, copy, other] {
            let s = stat(v);
            assert_eq!(s.continuations, [16, 16]);
            assert!((0.0..=1.0).contains(&s.divergence), "two groups: at most 1 bit: {s:?}");
            assert!(s.low <= s.divergence + 1e-9 && s.divergence <= s.high + 1e-9, "{s:?}");
        }
        assert_eq!(stat(base.id).divergence, stat(copy).divergence, "the same words");
        assert!(stat(base.id).change.is_none());
        let change = stat(copy).change.as_ref().unwrap();
        assert_eq!(change.difference, 0.0);
        assert!(change.low <= 0.0 && 0.0 <= change.high, "{change:?}");

        // The run's log sums each version's accuracy up by shot count.
        let log: Vec<String> =
            runs::logs(pool, run_id, None, 100).await.unwrap().into_iter().map(|l| l.line).collect();
        for name in ["base:1", "copy:1", "other:1"] {
            let line = log.iter().find(|l| l.starts_with(&format!("{name}: few-shot accuracy 0-shot ")));
            assert!(line.is_some_and(|l| l.contains(", 2-shot ")), "{name}: {log:?}");
        }

        // Stored once: storing again (a retry) adds nothing.
        let again: Vec<SkillScore> = skills.clone();
        assert!(!evals::store_skills(pool, run_id, &again).await.unwrap());
        assert!(!evals::store_probes(pool, run_id, &words, &counts).await.unwrap());
        assert_eq!(evals::skill_scores(pool, run_id).await.unwrap(), skills);
    });
}

#[test]
fn few_shot_prompts_longer_than_the_context_fail_the_run_naming_skills_shots() {
    with_db(|db| async move {
        let pool = &db.pool;
        let setup = setup(&db, 1).await;
        // Eight worked examples of "repeat" take over 300 bytes: more than the tiny
        // model's context of 256.
        let config = json!({ "versions": ["base:1"], "skills": { "shots": [8], "per_skill": 2 } });
        let run_id = enqueue(pool, setup.project, RunKind::Eval, config).await;
        let (_, outcome) = worker(pool, &setup, "w1").run_next(no_shutdown()).await.unwrap().unwrap();
        let Outcome::Failed(message) = outcome else { panic!("{outcome:?}") };
        assert!(message.contains("skills.shots: with 8 worked examples, a prompt of the"), "{message}");
        assert!(message.contains("base:1's context of 256 tokens"), "{message}");
        assert!(evals::skill_scores(pool, run_id).await.unwrap().is_empty());
    });
}

#[test]
fn a_version_trained_on_the_tasks_answers_them_and_the_untrained_base_does_not() {
    with_db(|db| async move {
        let pool = &db.pool;
        let setup = setup(&db, 1).await;
        // The run draws its test tasks from the stage's seed: a model that memorised
        // exactly those answers them zero-shot; one that never saw them does not.
        let (per_skill, seed) = (3, 7);
        let demonstrations: Vec<trainer::data::Demonstration> = Skill::ALL
            .into_iter()
            .flat_map(|skill| world::few_shot_tasks(skill, per_skill, 0, seed))
            .map(|(task, _)| trainer::data::Demonstration::new(task.prompt, task.answer))
            .collect();
        let trained = memorised(pool, &setup, &demonstrations).await;
        let base = versions::resolve(pool, "base:1").await.unwrap().id;

        let config = json!({ "versions": ["base:1", "trained:1"], "stage": { "max_new_tokens": 2, "seed": seed },
                             "skills": { "shots": [0], "per_skill": per_skill } });
        let run_id = enqueue(pool, setup.project, RunKind::Eval, config).await;
        let (_, outcome) = worker(pool, &setup, "w1").run_next(no_shutdown()).await.unwrap().unwrap();
        assert_eq!(outcome, Outcome::Succeeded { version_id: None });
        let skills = evals::skill_scores(pool, run_id).await.unwrap();
        let accuracy = |v: i64| {
            let of: Vec<&SkillScore> = skills.iter().filter(|s| s.version_id == v).collect();
            of.iter().map(|s| s.correct).sum::<i32>() as f64 / of.iter().map(|s| s.total).sum::<i32>() as f64
        };
        let (before, after) = (accuracy(base), accuracy(trained));
        eprintln!("zero-shot accuracy: base {before:.2}, trained on the tasks {after:.2}");
        assert!(before == 0.0 && after >= 0.8, "base {before}, trained {after}: {skills:?}");
    });
}

#[test]
fn a_teams_own_few_shot_tasks_are_measured_instead_of_the_demo_worlds_skills() {
    with_db(|db| async move {
        let pool = &db.pool;
        let setup = setup(&db, 1).await;
        // Two tasks of the team's own, each a worked example then three questions.
        let examples: Vec<(&str, String, String)> = (0..4)
            .flat_map(|i| {
                let n = 11 + 7 * i;
                [
                    ("double", format!("double {n} ="), format!("{}", 2 * n)),
                    ("echo", format!("say {n}x:"), format!("{n}x{n}x")),
                ]
            })
            .collect();
        let jsonl: String = examples
            .iter()
            .map(|(task, input, output)| {
                json!({ "task": task, "input": input, "output": output }).to_string() + "\n"
            })
            .collect();
        // A model that memorised the questions answers them zero-shot; the base does not.
        let demonstrations: Vec<trainer::data::Demonstration> = examples[2..]
            .iter()
            .map(|(_, input, output)| trainer::data::Demonstration::new(input.clone(), output.clone()))
            .collect();
        let trained = memorised(pool, &setup, &demonstrations).await;
        let base = versions::resolve(pool, "base:1").await.unwrap().id;

        let config = json!({ "versions": ["base:1", "trained:1"], "stage": { "max_new_tokens": 2 },
                             "skills": { "shots": [0, 1], "per_skill": 5, "tasks": jsonl } });
        let run_id = enqueue(pool, setup.project, RunKind::Eval, config).await;
        let (_, outcome) = worker(pool, &setup, "w1").run_next(no_shutdown()).await.unwrap().unwrap();
        assert_eq!(outcome, Outcome::Succeeded { version_id: None });
        let skills = evals::skill_scores(pool, run_id).await.unwrap();
        // Only the team's tasks, each over its three questions, at each shot count.
        let mut rows: Vec<(i64, &str, i16, i32)> =
            skills.iter().map(|s| (s.version_id, s.skill.as_str(), s.shots, s.total)).collect();
        rows.sort();
        let mut expected: Vec<(i64, &str, i16, i32)> = [base, trained]
            .into_iter()
            .flat_map(|v| ["double", "echo"].into_iter().flat_map(move |t| [0, 1].map(|k| (v, t, k, 3))))
            .collect();
        expected.sort();
        assert_eq!(rows, expected);
        let zero_shot = |v: i64| -> i32 {
            skills.iter().filter(|s| s.version_id == v && s.shots == 0).map(|s| s.correct).sum()
        };
        assert!(zero_shot(base) == 0 && zero_shot(trained) >= 5, "{skills:?}");

        // A bad line is refused before the run is queued, naming the line and the field.
        let bad = json!({ "versions": ["base:1"],
                          "skills": { "tasks": "{\"task\": \"a\", \"input\": \"x\", \"output\": \"y\"}\n{\"task\": \"a\", \"input\": \"z\"}" } });
        let problems = spec::RunSpec::parse(RunKind::Eval, &bad).unwrap_err().to_string();
        assert!(problems.contains("skills.tasks: line 2: field `output`: missing"), "{problems}");
    });
}

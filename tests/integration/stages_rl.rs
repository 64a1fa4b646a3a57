//! RLOO and GRPO on the demo world, measured by its oracle on held-out prompts: from the
//! sloppy SFT policy of `demo_world` (it pads every second answer with filler, which the
//! oracle penalises), each critic-free stage, with its default settings but for the
//! number of steps and the response length, must beat the SFT policy by the oracle's
//! score, against the oracle itself as a reward program (`plumb world reward`) and
//! against a reward model trained on the oracle's rankings. A stage that does not learn
//! (a learning rate of ~0) stays at the SFT policy's score and fails.
//!
//! Also: a reward program that fails, hangs or writes a bad line fails the run, its
//! stderr or the line quoted.

use std::time::{Duration, Instant};

use trainer::grpo::{self, GrpoConfig};
use trainer::reward::{self, RewardConfig};
use trainer::reward_program::RewardProgram;
use trainer::rloo::{self, RlooConfig};
use trainer::rollout::{evaluate, rollout_sampling, Reward};
use trainer::LanguageModel;
use world::Task;

use crate::demo_world::{
    held_out_tasks, measure, rankings_of_samples, run_dir, sloppy_demonstrations, sloppy_sft, tiny_model,
    train_tasks,
};
use crate::helpers::plumb;

/// Longest response, EOS included: the sorted digits and room for filler.
const MAX_NEW_TOKENS: i64 = 20;
/// Steps of each stage: 16 prompts per step, k = G = 4 samples each.
const STEPS: i64 = 30;

/// The demo world's oracle as a reward program.
fn oracle_program() -> RewardProgram {
    RewardProgram::new(format!("{} world reward", env!("CARGO_BIN_EXE_plumb")), Duration::from_secs(60))
}

fn no_eval(
    _: i64,
    _: &LanguageModel,
    _: &LanguageModel,
) -> Result<Vec<(String, f64)>, trainer::train::TrainError> {
    Ok(Vec::new())
}

/// What a trained policy scores: the oracle's mean score and exact-match accuracy on
/// held-out prompts, and its KL to the SFT policy in nats per response.
struct Measured {
    score: f64,
    accuracy: f64,
    kl: f64,
}

fn measured(policy: &LanguageModel, sft: &LanguageModel, reward: Reward, held_out: &[Task]) -> Measured {
    let (score, accuracy) = measure(policy, held_out);
    let prompts: Vec<String> = held_out.iter().map(|t| t.prompt.clone()).collect();
    let sampling = rollout_sampling(MAX_NEW_TOKENS, 1.0, 11);
    let kl = evaluate(policy, sft, reward, &prompts, &sampling, 64, None).unwrap().kl;
    Measured { score, accuracy, kl }
}

/// RLOO and GRPO, each with defaults but `STEPS` and `MAX_NEW_TOKENS`, from `sft`
/// against `reward`: what each policy then measures.
fn rloo_and_grpo(sft: &LanguageModel, reward: Reward, dir: &tempfile::TempDir) -> [Measured; 2] {
    let prompts: Vec<String> = train_tasks().iter().map(|t| t.prompt.clone()).collect();
    let held_out = held_out_tasks();
    let rloo_cfg = RlooConfig {
        steps: STEPS,
        max_new_tokens: MAX_NEW_TOKENS,
        checkpoint_every: 0,
        ..Default::default()
    };
    let (rloo_policy, rloo_report) = rloo::train(
        &rloo_cfg,
        sft.try_clone().unwrap(),
        reward,
        &prompts,
        &mut run_dir(dir, "rloo"),
        &mut no_eval,
    )
    .unwrap();
    let grpo_cfg = GrpoConfig {
        steps: STEPS,
        max_new_tokens: MAX_NEW_TOKENS,
        checkpoint_every: 0,
        ..Default::default()
    };
    let (grpo_policy, grpo_report) = grpo::train(
        &grpo_cfg,
        sft.try_clone().unwrap(),
        reward,
        &prompts,
        &mut run_dir(dir, "grpo"),
        &mut no_eval,
    )
    .unwrap();
    eprintln!("RLOO {rloo_report:?}\nGRPO {grpo_report:?}");
    [measured(&rloo_policy, sft, reward, &held_out), measured(&grpo_policy, sft, reward, &held_out)]
}

/// Prints the comparison and asserts that both stages beat SFT by the oracle at a
/// bounded KL.
fn assert_both_beat_sft(what: &str, sft: (f64, f64), [rloo, grpo]: [Measured; 2], started: Instant) {
    eprintln!(
        "against {what}: oracle score (exact-match accuracy) on {} held-out prompts: SFT {:.3} ({:.2}), \
         RLOO {:.3} ({:.2}, KL {:.2} nats), GRPO {:.3} ({:.2}, KL {:.2} nats); {:.0} s",
        held_out_tasks().len(),
        sft.0,
        sft.1,
        rloo.score,
        rloo.accuracy,
        rloo.kl,
        grpo.score,
        grpo.accuracy,
        grpo.kl,
        started.elapsed().as_secs_f64()
    );
    for (stage, m) in [("RLOO", rloo), ("GRPO", grpo)] {
        // A stage that does not learn keeps the SFT policy, whose samples (seeded alike)
        // score exactly the SFT policy's.
        assert!(m.score > sft.0 + 0.03, "{stage} {:.3} vs SFT {:.3} against {what}", m.score, sft.0);
        assert!(m.kl < 10.0, "{stage} drifted {:.2} nats from SFT against {what}", m.kl);
    }
}

#[test]
fn rloo_and_grpo_against_the_oracle_as_a_reward_program_beat_sft() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let sft = sloppy_sft(tiny_model(), &sloppy_demonstrations(&train_tasks()), &dir);
    let sft_measured = measure(&sft, &held_out_tasks());
    let program = oracle_program();
    let results = rloo_and_grpo(&sft, Reward::Program(&program), &dir);
    assert_both_beat_sft("the oracle program", sft_measured, results, started);
}

#[test]
fn rloo_and_grpo_against_a_reward_model_beat_sft() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let tasks = train_tasks();
    let demos = sloppy_demonstrations(&tasks);
    let sft = sloppy_sft(tiny_model(), &demos, &dir);
    let sft_measured = measure(&sft, &held_out_tasks());
    // The reward model, from the SFT model's trunk, learns the oracle's rankings of the
    // SFT policy's own samples.
    let rankings = rankings_of_samples(&sft, &tasks[..600], 5);
    let rm_cfg = RewardConfig {
        steps: Some(240),
        lr: Some(3e-4),
        batch_size: 4,
        eval_every: 0,
        checkpoint_every: 0,
        ..Default::default()
    };
    let validation = rankings_of_samples(&sft, &held_out_tasks(), 7);
    let (rm, rm_report) = reward::train(
        &rm_cfg,
        sft.try_clone().unwrap(),
        &rankings,
        &validation,
        &demos[..200],
        &mut run_dir(&dir, "rm"),
    )
    .unwrap();
    eprintln!("RM agreement with the oracle on held-out pairs: {:?}", rm_report.val_accuracy);
    let results = rloo_and_grpo(&sft, Reward::Model(&rm), &dir);
    assert_both_beat_sft("the reward model", sft_measured, results, started);
}

/// A tiny untrained policy from `plumb init`, and prompts for it.
fn tiny_policy(dir: &std::path::Path) -> (String, String) {
    let policy = dir.join("policy").to_str().unwrap().to_string();
    let init =
        plumb(&["init", "--preset", "tiny", "--tokenizer", "bytes", "--out", &policy, "--n-ctx", "64"], "");
    assert!(init.status.success(), "{}", String::from_utf8_lossy(&init.stderr));
    let prompts = dir.join("prompts.jsonl");
    std::fs::write(&prompts, "{\"prompt\": \"Sort the digits 321.\\n\"}\n").unwrap();
    (policy, prompts.to_str().unwrap().to_string())
}

#[test]
fn a_reward_program_that_fails_hangs_or_writes_a_bad_line_fails_the_run_with_its_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let (policy, prompts) = tiny_policy(dir.path());
    let cases = [
        ("grpo", "cat >/dev/null; echo 'checker crashed: no such task' >&2; exit 2", "exit status: 2"),
        ("rloo", "echo 'still thinking' >&2; sleep 30", "no answer within 1 s"),
        ("ppo", "cat >/dev/null; echo '{\"reward\": \"high\"}'", "output line 1"),
    ];
    for (stage, command, problem) in cases {
        let out = dir.path().join(format!("{stage}-out"));
        let started = Instant::now();
        let run = plumb(
            &[
                stage,
                "--policy",
                &policy,
                "--reward-cmd",
                command,
                "--reward-timeout",
                "1",
                "--prompts",
                &prompts,
                "--steps",
                "1",
                "--batch-size",
                "8",
                "--max-new-tokens",
                "4",
                "--device",
                "cpu",
                "--out",
                out.to_str().unwrap(),
            ],
            "",
        );
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(!run.status.success(), "{stage} with `{command}` should fail: {stderr}");
        assert!(stderr.contains(&format!("reward program `{command}`")), "{stage}: {stderr}");
        assert!(stderr.contains(problem), "{stage}: {stderr}");
        assert!(started.elapsed() < Duration::from_secs(20), "{stage} took {:?}", started.elapsed());
        match stage {
            "grpo" => assert!(stderr.contains("its stderr: checker crashed: no such task"), "{stderr}"),
            "rloo" => assert!(stderr.contains("its stderr: still thinking"), "{stderr}"),
            _ => assert!(stderr.contains(r#"{\"reward\": \"high\"}"#), "{stderr}"),
        }
    }
}

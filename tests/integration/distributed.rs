//! Data parallelism through c10d: 2 processes with Gloo on loopback against one process
//! on the same global batch.
//!
//! The gradient test's ranks are this test binary itself, run again on an ignored test
//! ([`gradient_rank`]) with `torchrun`'s variables set; the stage tests run `plumb` with
//! `--nproc 2`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use trainer::data::Demonstration;
use trainer::distributed;
use trainer::lm_loop::{self, Example};
use trainer::tch::{Device, Tensor};
use trainer::{GptConfig, LanguageModel, TokenizerKind};

use crate::helpers::*;

/// Where a rank started by a test finds its model and leaves its results.
const RANK_DIR: &str = "PLUMB_TEST_RANK_DIR";

/// Summed gradients, and one process's gradients on the concatenated batch, differ by
/// float rounding alone: the sums add the same terms in another order.
const GRADIENT_TOLERANCE: f64 = 1e-6;

/// Weights after 3 optimizer steps: the rounding of the gradients' sums, carried through
/// AdamW's division by √v (with ε = 1e-3, see [`config`]: with 1e-4 the reward model's
/// two ranks ended 2.3e-5 apart from one process on an AMD EPYC machine, whose kernels sum
/// in another order than the machines before it).
const WEIGHT_TOLERANCE: f64 = 1e-5;

/// A global batch of 5 demonstrations of different lengths, which the ranks share
/// unevenly, balanced by length (a rank that summed the whole batch would double the
/// gradients).
fn demonstrations() -> Vec<Demonstration> {
    ["cat", "a dog", "the horse", "ox", "an emu runs"]
        .iter()
        .map(|animal| Demonstration::new(format!("Uppercase {animal}.\n"), animal.to_uppercase()))
        .collect()
}

fn examples(model: &LanguageModel) -> Vec<Example> {
    demonstrations()
        .iter()
        .enumerate()
        .map(|(i, d)| trainer::sft::example(&model.tokenizer, model.config.n_ctx, i, d).unwrap())
        .collect()
}

/// A fresh tiny model without dropout (each rank would draw its own masks), saved in `dir`.
fn save_tiny_model(dir: &Path) -> PathBuf {
    trainer::tch::manual_seed(7);
    let config = GptConfig { dropout: 0.0, ..GptConfig::tiny(258) };
    let model = LanguageModel::new(config, TokenizerKind::Bytes, Device::Cpu).unwrap();
    let path = dir.join("base");
    model.save(&path, None).unwrap();
    path
}

/// The gradients `lm_loop::accumulate_gradients` leaves in `model` on `examples` (this
/// rank's shard of them when this process is one of several ranks), by variable name.
fn gradients(model: &LanguageModel, examples: &[Example]) -> Vec<(String, Tensor)> {
    let batch: Vec<&Example> = examples.iter().collect();
    lm_loop::accumulate_gradients(model, &[batch]);
    sorted_gradients(model)
}

fn sorted_gradients(model: &LanguageModel) -> Vec<(String, Tensor)> {
    let mut gradients: Vec<(String, Tensor)> =
        model.vs.variables().into_iter().map(|(name, variable)| (name, variable.grad())).collect();
    gradients.sort_by(|a, b| a.0.cmp(&b.0));
    gradients
}

/// Starts this test binary twice, as ranks 0 and 1 of one job on loopback, on the ignored
/// test `test`; returns each rank's output.
fn run_ranks(test: &str, dir: &Path) -> Vec<Output> {
    let port = distributed::free_port().unwrap().to_string();
    let children: Vec<_> = (0..2)
        .map(|rank| {
            Command::new(std::env::current_exe().unwrap())
                .args([test, "--exact", "--ignored", "--nocapture", "--test-threads=1"])
                .env("RANK", rank.to_string())
                .env("WORLD_SIZE", "2")
                .env("MASTER_ADDR", "127.0.0.1")
                .env("MASTER_PORT", &port)
                .env("OMP_NUM_THREADS", "1")
                .env(RANK_DIR, dir)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    children.into_iter().map(|child| child.wait_with_output().unwrap()).collect()
}

#[test]
fn all_reduced_gradients_equal_one_process_gradients_on_the_concatenated_batch() {
    let dir = tempfile::tempdir().unwrap();
    let base = save_tiny_model(dir.path());
    for (rank, out) in run_ranks("distributed::gradient_rank", dir.path()).iter().enumerate() {
        assert!(
            out.status.success(),
            "rank {rank} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let model = LanguageModel::load(&base, Device::Cpu).unwrap();
    let expected = gradients(&model, &examples(&model));
    for rank in 0..2 {
        let summed = Tensor::load_multi(dir.path().join(format!("gradients-{rank}.ot"))).unwrap();
        assert_eq!(summed.len(), expected.len(), "rank {rank}: one gradient per variable");
        let mut worst = 0.0f64;
        for ((name, grad), (expected_name, expected_grad)) in summed.iter().zip(&expected) {
            assert_eq!(name, expected_name);
            worst = worst.max((grad - expected_grad).abs().max().double_value(&[]));
        }
        assert!(worst <= GRADIENT_TOLERANCE, "rank {rank}: gradients differ by up to {worst:e}");
        eprintln!("rank {rank}: all-reduced gradients within {worst:e} of one process's");
    }
}

/// Rank `rank`'s gradient matrices of `SPARSE_ROWS + 7` rows for `all_reduce_rows`: one
/// with a few rows touched (some by both ranks, some by one, the last row by rank 1
/// alone), and one with every row touched (summed whole).
fn row_gradients(rank: usize) -> [Tensor; 2] {
    let rows = distributed::SPARSE_ROWS + 7;
    let sparse = Tensor::zeros([rows, 3], (trainer::tch::Kind::Float, Device::Cpu));
    let touched: &[i64] = if rank == 0 { &[0, 17, 2048] } else { &[17, 999, rows - 1] };
    for &row in touched {
        let _ = sparse.get(row).fill_(1.0 + rank as f64 + row as f64 / 1000.0);
    }
    let dense = Tensor::arange(rows * 3, (trainer::tch::Kind::Float, Device::Cpu)).view([rows, 3])
        * (rank as f64 + 1.0)
        + 1.0;
    [sparse, dense]
}

#[test]
fn a_gradient_matrix_summed_by_its_touched_rows_equals_the_whole_sum() {
    let dir = tempfile::tempdir().unwrap();
    save_tiny_model(dir.path());
    for (rank, out) in run_ranks("distributed::gradient_rank", dir.path()).iter().enumerate() {
        assert!(out.status.success(), "rank {rank} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let [sparse0, dense0] = row_gradients(0);
    let [sparse1, dense1] = row_gradients(1);
    let expected = [("sparse", sparse0 + sparse1), ("dense", dense0 + dense1)];
    for rank in 0..2 {
        let summed = Tensor::load_multi(dir.path().join(format!("rows-{rank}.ot"))).unwrap();
        for ((name, got), (expected_name, want)) in summed.iter().zip(&expected) {
            assert_eq!(name, expected_name);
            let diff = (got - want).abs().max().double_value(&[]);
            assert!(diff == 0.0, "rank {rank}: the {name} sum differs from the whole sum by {diff}");
        }
    }
}

/// One rank of the tests above: the gradients of its shard of the batch, summed over the
/// ranks, saved for the test to compare.
#[test]
#[ignore = "a rank of all_reduced_gradients_equal_one_process_gradients_on_the_concatenated_batch and of a_gradient_matrix_summed_by_its_touched_rows_equals_the_whole_sum"]
fn gradient_rank() {
    let dir = PathBuf::from(std::env::var(RANK_DIR).expect("started by the test that names it"));
    let group = distributed::init_from_env().unwrap().expect("started with WORLD_SIZE=2");
    let model = LanguageModel::load(&dir.join("base"), Device::Cpu).unwrap();
    let examples = examples(&model);
    lm_loop::accumulate_gradients(&model, &[examples.iter().collect()]);
    distributed::all_reduce_gradients(&model.vs).unwrap();
    let summed = sorted_gradients(&model);
    Tensor::save_multi(&summed, dir.join(format!("gradients-{}.ot", group.rank()))).unwrap();
    let [sparse, dense] = row_gradients(group.rank());
    for grad in [&sparse, &dense] {
        group.all_reduce_rows(grad).unwrap();
    }
    Tensor::save_multi(
        &[("sparse", sparse), ("dense", dense)],
        dir.join(format!("rows-{}.ot", group.rank())),
    )
    .unwrap();
}

fn write(dir: &Path, name: &str, lines: impl IntoIterator<Item = serde_json::Value>) -> String {
    let path = dir.join(name);
    let text: String = lines.into_iter().map(|line| format!("{line}\n")).collect();
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

/// The largest difference between two models' weights, name by name.
fn weight_difference(a: &Path, b: &Path) -> f64 {
    let (a, b) = (LanguageModel::load(a, Device::Cpu).unwrap(), LanguageModel::load(b, Device::Cpu).unwrap());
    let b_variables = b.vs.variables();
    let mut worst = 0.0f64;
    for (name, variable) in a.vs.variables() {
        let other = b_variables.get(&name).unwrap_or_else(|| panic!("{name} is missing"));
        worst = worst.max((variable - other).abs().max().double_value(&[]));
    }
    worst
}

/// The `loss_metric` of every line of a run's metrics.jsonl.
fn losses(out: &Path, loss_metric: &str) -> Vec<f64> {
    std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap()[loss_metric].as_f64().unwrap())
        .collect()
}

/// Trains with `plumb stage...` alone and with `--nproc 2`, and checks that the two runs
/// log the same losses, once each, and end with the same weights.
fn two_ranks_train_as_one_process(dir: &Path, stage: &[&str], loss_metric: &str) {
    let (alone, ranks) = (dir.join("alone"), dir.join("ranks"));
    let run = |out: &Path, extra: &[&str]| {
        let mut args = stage.to_vec();
        args.extend(["--out", out.to_str().unwrap(), "--device", "cpu"]);
        args.extend(extra);
        plumb_ok(&args, "")
    };
    let alone_report = run(&alone, &[]);
    let ranks_report = run(&ranks, &["--nproc", "2"]);
    assert_eq!(ranks_report.len(), 1, "rank 0 alone reports: {ranks_report:?}");
    assert_eq!(ranks_report[0]["steps"], alone_report[0]["steps"]);

    let (alone_losses, ranks_losses) = (losses(&alone, loss_metric), losses(&ranks, loss_metric));
    assert_eq!(ranks_losses.len(), alone_losses.len(), "rank 0 alone logs each step once");
    assert!(max_abs_diff(&alone_losses, &ranks_losses) < 1e-5, "{alone_losses:?} vs {ranks_losses:?}");
    let difference = weight_difference(&alone, &ranks);
    assert!(difference <= WEIGHT_TOLERANCE, "the weights differ by up to {difference:e}");
    let base = dir.join("base");
    let trained = weight_difference(&base, &alone).min(weight_difference(&base, &ranks));
    // Training moved them by far more than the two runs differ: the check can fail.
    assert!(trained > 50.0 * WEIGHT_TOLERANCE, "training moved the weights by {trained:e} only");
    eprintln!(
        "plumb {}: 2 ranks' weights within {difference:e} of one process's (training moved them {trained:e})",
        stage[0]
    );
}

/// A config that trains every example and keeps the last step's weights: no held-out
/// share, no warmup, no evaluation. AdamW's ε is raised from 1e-8 to 1e-4: a weight whose gradient
/// is nearly 0 would otherwise step by ±lr on the sign of its rounding error alone.
fn config(dir: &Path, batch_size: usize) -> String {
    let path = dir.join("stage.toml");
    let text = format!(
        "batch_size = {batch_size}\nwarmup_steps = 0\nval_fraction = 0.0\neval_every = 0\neps = 1e-3\n"
    );
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn a_two_rank_sft_run_ends_with_the_weights_of_one_process_on_the_same_global_batch() {
    let dir = tempfile::tempdir().unwrap();
    let base = save_tiny_model(dir.path());
    let data = write(
        dir.path(),
        "demos.jsonl",
        demonstrations().iter().map(|d| serde_json::json!({ "prompt": d.prompt, "response": d.response })),
    );
    let (base, config) = (base.to_str().unwrap().to_string(), config(dir.path(), 5));
    let stage =
        ["sft", "--model", &base, "--data", &data, "--config", &config, "--steps", "3", "--dropout", "0"];
    two_ranks_train_as_one_process(dir.path(), &stage, "loss/sft");
}

#[test]
fn a_two_rank_reward_model_ends_with_the_weights_of_one_process_on_the_same_global_batch() {
    let dir = tempfile::tempdir().unwrap();
    let base = save_tiny_model(dir.path());
    let rankings = demonstrations().into_iter().map(|d| {
        serde_json::json!({ "prompt": d.prompt, "chosen": d.response, "rejected": d.response.to_lowercase() })
    });
    let data = write(dir.path(), "rankings.jsonl", rankings);
    let (base, config) = (base.to_str().unwrap().to_string(), config(dir.path(), 5));
    let stage = ["reward", "train", "--model", &base, "--data", &data, "--config", &config, "--steps", "3"];
    two_ranks_train_as_one_process(dir.path(), &stage, "loss/reward");
}

#[test]
fn two_pretraining_ranks_end_with_the_weights_of_one_process_on_the_same_global_batch() {
    let dir = tempfile::tempdir().unwrap();
    let base = save_tiny_model(dir.path());
    let corpus = dir.path().join("corpus.txt");
    let text: String = demonstrations().iter().map(|d| format!("{}{}\n", d.prompt, d.response)).collect();
    std::fs::write(&corpus, text.repeat(4)).unwrap();
    let (base, corpus, config) =
        (base.to_str().unwrap().to_string(), corpus.to_str().unwrap().to_string(), config(dir.path(), 5));
    let stage = [
        "pretrain",
        "--model",
        &base,
        "--data",
        &corpus,
        "--config",
        &config,
        "--steps",
        "3",
        "--seq-len",
        "32",
    ];
    two_ranks_train_as_one_process(dir.path(), &stage, "loss/pretrain");
}

/// The reward program of the RL tests: each response's share of lowercase letters, and
/// every (prompt, response) it scores appended to a file of its own (one per program
/// run) under the directory it is given, so that a test can compare the samples of two
/// runs.
const RECORDING_REWARD: &str = r#"
import json, os, sys
queries = [json.loads(line) for line in sys.stdin if line.strip()]
with open(os.path.join(sys.argv[1], f"{os.getpid()}.jsonl"), "a") as seen:
    for q in queries:
        seen.write(json.dumps([q["prompt"], q["response"]]) + "\n")
for q in queries:
    letters = [c for c in q["response"] if c.isalpha()]
    print(json.dumps({"reward": sum(c.islower() for c in letters) / max(len(letters), 1)}))
"#;

/// Every (prompt, response) the recording reward scored under `seen`, sorted.
fn scored_samples(seen: &Path) -> Vec<(String, String)> {
    let mut samples: Vec<(String, String)> = std::fs::read_dir(seen)
        .unwrap()
        .flat_map(|file| {
            let text = std::fs::read_to_string(file.unwrap().path()).unwrap();
            text.lines().map(|line| serde_json::from_str(line).unwrap()).collect::<Vec<_>>()
        })
        .collect();
    samples.sort();
    samples
}

/// `metric` of every line of a run's metrics.jsonl.
fn logged(out: &Path, metric: &str) -> Vec<f64> {
    std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|line| {
            let line: serde_json::Value = serde_json::from_str(line).unwrap();
            line[metric].as_f64().unwrap_or_else(|| panic!("{metric} not logged: {line}"))
        })
        .collect()
}

/// Runs the RL stage `stage` (its arguments without the rewards and the output) alone and
/// with `--nproc 2`, rewarded by [`RECORDING_REWARD`], and checks that the ranks together
/// scored exactly the samples one process did (the fixed samples: each sample's random
/// stream is numbered as one process numbers it, whichever rank draws it), that rank 0
/// alone logged each step, with `metrics` equal to one process's, and that the two runs
/// end with the same weights. Returns the difference of the weights.
fn two_rl_ranks_train_as_one_process(dir: &Path, stage: &[&str], metrics: &[&str]) -> f64 {
    let script = dir.join("reward.py");
    std::fs::write(&script, RECORDING_REWARD).unwrap();
    let run = |name: &str, extra: &[&str]| {
        let (out, seen) = (dir.join(name), dir.join(format!("{name}-seen")));
        std::fs::create_dir_all(&seen).unwrap();
        let command = format!("{} {} {}", python().display(), script.display(), seen.display());
        let mut args = stage.to_vec();
        args.extend(["--reward-cmd", &command, "--out", out.to_str().unwrap(), "--device", "cpu"]);
        args.extend(extra);
        let report = plumb_ok(&args, "");
        (out, scored_samples(&seen), report)
    };
    let (alone, alone_samples, alone_report) = run("alone", &[]);
    let (ranks, ranks_samples, ranks_report) = run("ranks", &["--nproc", "2"]);
    assert!(!alone_samples.is_empty());
    assert_eq!(ranks_samples, alone_samples, "2 ranks sampled other responses than one process");
    assert_eq!(ranks_report.len(), 1, "rank 0 alone reports: {ranks_report:?}");
    assert_eq!(ranks_report[0]["steps"], alone_report[0]["steps"]);
    for metric in metrics {
        let (one, two) = (logged(&alone, metric), logged(&ranks, metric));
        assert_eq!(two.len(), one.len(), "rank 0 alone logs each step once");
        assert!(max_abs_diff(&one, &two) < 1e-5, "{metric}: {one:?} alone, {two:?} on 2 ranks");
    }
    let difference = weight_difference(&alone, &ranks);
    assert!(difference <= RL_WEIGHT_TOLERANCE, "the weights differ by up to {difference:e}");
    let base = dir.join("base");
    let trained = weight_difference(&base, &alone);
    assert!(trained > 50.0 * RL_WEIGHT_TOLERANCE, "training moved the weights by {trained:e} only");
    eprintln!(
        "plumb {}: 2 ranks' weights within {difference:e} of one process's (training moved them {trained:e})",
        stage[0]
    );
    difference
}

/// Weights after an RL step's updates on 2 ranks and in one process: the rounding of the
/// summed gradients, and of each rank's own padding of its rows, carried through AdamW
/// (ε = 1e-4) over the step's minibatch updates.
const RL_WEIGHT_TOLERANCE: f64 = 1e-5;

/// Prompts of different lengths for the RL tests.
fn rl_prompts(dir: &Path) -> String {
    write(dir, "prompts.jsonl", demonstrations().iter().map(|d| serde_json::json!({ "prompt": d.prompt })))
}

/// The tiny model with a scalar head, so that PPO's value model (the policy's trunk and
/// head, under a reward program) starts from the same weights in every process.
fn save_tiny_model_with_head(dir: &Path) -> String {
    let base = save_tiny_model(dir);
    let mut model = LanguageModel::load(&base, Device::Cpu).unwrap();
    trainer::tch::manual_seed(8);
    model.add_score_head();
    model.save(&base, None).unwrap();
    base.to_str().unwrap().to_string()
}

/// `plumb <kind>` from the tiny model with a head on the RL prompts, with the stage
/// settings `config` (TOML), for `steps` steps of 6 new tokens at lr 1e-3: trained on 2
/// ranks and in one process, compared by [`two_rl_ranks_train_as_one_process`]. The
/// directory holds both runs (`ranks/`, `alone/`).
fn rl_case(kind: &str, config: &str, steps: &str, metrics: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let base = save_tiny_model_with_head(dir.path());
    let prompts = rl_prompts(dir.path());
    let config_path = dir.path().join(format!("{kind}.toml"));
    std::fs::write(&config_path, config).unwrap();
    let stage = [
        kind,
        "--policy",
        &base,
        "--prompts",
        &prompts,
        "--config",
        config_path.to_str().unwrap(),
        "--steps",
        steps,
        "--max-new-tokens",
        "6",
        "--lr",
        "1e-3",
    ];
    two_rl_ranks_train_as_one_process(dir.path(), &stage, metrics);
    dir
}

/// One PPO step on 5 prompts (rank 0 samples 3, rank 1 samples 2) in 2 epochs of
/// minibatches of 2 (some of them wholly one rank's): the advantages are whitened over
/// both ranks' tokens, and each minibatch's gradients summed, as one process on the whole
/// batch.
#[test]
fn one_ppo_step_on_two_ranks_ends_with_the_weights_of_one_process_on_the_same_samples() {
    let config = "batch_size = 5\nminibatch_size = 2\nppo_epochs = 2\nwarmup_steps = 0\neps = 1e-4\n\
                  whiten_rewards = true\ncheckpoint_every = 0\n";
    let metrics = [
        "objective/reward",
        "objective/kl",
        "loss/policy",
        "loss/value",
        "ppo/clipfrac",
        "val/explained_variance",
    ];
    rl_case("ppo", config, "1", &metrics);
}

/// Two GRPO steps of 5 prompts × 2 samples on 2 ranks: each prompt's group on one rank,
/// the same weights as one process, and rank 0's checkpoint, metrics and model.
#[test]
fn a_two_rank_grpo_run_trains_as_one_process_and_rank_0_writes_its_outputs() {
    let config = "batch_size = 5\ngroup_size = 2\nminibatch_size = 4\nwarmup_steps = 0\neps = 1e-4\n\
                  checkpoint_every = 1\n";
    let metrics = ["objective/reward", "objective/kl", "loss/policy", "grpo/k3_kl", "grpo/group_reward_std"];
    let dir = rl_case("grpo", config, "2", &metrics);
    let ranks = dir.path().join("ranks");
    assert_eq!(logged(&ranks, "objective/reward").len(), 2);
    let checkpoints: Vec<_> = std::fs::read_dir(ranks.join("checkpoints")).unwrap().collect();
    assert!(!checkpoints.is_empty(), "rank 0 wrote no checkpoint");
    assert!(ranks.join("samples.jsonl").exists() && ranks.join("train_config.toml").exists());
    LanguageModel::load(&ranks, Device::Cpu).unwrap();
}

/// A step with fewer prompts than ranks would leave a rank without samples: every rank
/// refuses it, naming the setting.
#[test]
fn an_rl_step_with_fewer_prompts_than_ranks_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let base = save_tiny_model_with_head(dir.path());
    let prompts = rl_prompts(dir.path());
    let out = dir.path().join("out");
    let config = dir.path().join("rloo.toml");
    std::fs::write(&config, "minibatch_size = 2\n").unwrap();
    let run = plumb(
        &[
            "rloo",
            "--config",
            config.to_str().unwrap(),
            "--policy",
            &base,
            "--prompts",
            &prompts,
            "--reward-cmd",
            "while read -r line; do echo '{\"reward\": 1}'; done",
            "--batch-size",
            "1",
            "--k",
            "2",
            "--steps",
            "1",
            "--max-new-tokens",
            "4",
            "--device",
            "cpu",
            "--nproc",
            "2",
            "--out",
            out.to_str().unwrap(),
        ],
        "",
    );
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success(), "{stderr}");
    assert!(
        stderr.contains("1 prompts per step cannot be shared by 2 ranks") && stderr.contains("batch_size"),
        "{stderr}"
    );
}

/// One RLOO step of 5 prompts × 2 samples with whitened advantages on 2 ranks: the
/// leave-one-out baselines within each rank's prompts, the whitening over both ranks'
/// samples, as one process. `rloo/clipfrac` is not compared: a prompt whose two samples
/// tie has advantages of exactly 0 in one process, and of ±4e-8 when the whitening's mean
/// is summed over ranks, so its responses count as clipped on one side only; the loss,
/// the KL and the weights are compared.
#[test]
fn one_rloo_step_with_whitened_advantages_on_two_ranks_trains_as_one_process() {
    let config =
        "batch_size = 5\nk = 2\nminibatch_size = 4\nupdate_epochs = 2\nwarmup_steps = 0\neps = 1e-4\n\
                  whiten_advantages = true\ncheckpoint_every = 0\n";
    let metrics = ["objective/reward", "objective/rlhf_reward", "loss/policy", "rloo/approx_kl"];
    rl_case("rloo", config, "1", &metrics);
}

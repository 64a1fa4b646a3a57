//! `plumb demo`: the whole InstructGPT loop on the demo world, through the platform's own
//! doors, then the web app with everything in it.
//!
//! On the embedded Postgres (or DATABASE_URL's): demo users and a project with the demo
//! world's prompts (sorting digits); a tiny base GPT pretrained on the demo world's corpus
//! by a queued run (or BASE=DIR imported); the simulated annotator writing demonstrations
//! through the JSON API, half of them sloppy (padded with filler, as the recipe has it);
//! SFT; samples of the SFT policy that the simulated annotator ranks; a reward model from
//! the SFT model; PPO against it; and an eval run of every version on held-out prompts.
//! Each stage is a run on a worker in this process, shown with a progress bar. At the end
//! it prints what the oracle measured and serves the app with the logins printed, so a
//! person can annotate more and launch the next round.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use labeling::domain::{
    DisplayName, Guidelines, Overlap, Password, ProjectName, PromptSource, Role, SamplesPerTask, TokenName,
    Username,
};
use labeling::projects::NewProject;
use labeling::prompts::ImportLimits;
use registry::artifacts::{ArtifactStore, StoreSettings};
use registry::db::Database;
use registry::evals;
use registry::runs::{self, NewRun, RunKind, RunStatus};
use registry::versions;
use serde_json::{json, Value};
use sqlx::PgPool;
use trainer::worker::{Worker, WorkerOptions};
use trainer::DeviceChoice;
use web::routes::runs::overoptimisation::{held_out, HeldOut};
use world::{self, Skill, Split};

#[derive(Args)]
pub struct DemoArgs {
    /// plumb's state directory: the private cluster, the artifact store, runs' work.
    #[arg(long, env = "PLUMB_HOME", default_value = ".plumb")]
    home: PathBuf,
    /// A GPT-2-format checkpoint to start from instead of pretraining a tiny GPT.
    #[arg(long, env = "BASE")]
    base: Option<PathBuf>,
    #[arg(long, default_value = "127.0.0.1")]
    host: std::net::IpAddr,
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// cpu, cuda or auto.
    #[arg(long, default_value = "auto")]
    device: DeviceChoice,
    /// A tiny loop (a few prompts and steps), for tests: it runs the same stages but
    /// learns little.
    #[arg(long, conflicts_with = "short")]
    quick: bool,
    /// A shortened loop that still learns (the policy beats SFT on held-out prompts), in
    /// about half the full demo's time: the end-to-end test's.
    #[arg(long)]
    short: bool,
    /// Exit after the loop instead of serving the app.
    #[arg(long)]
    no_serve: bool,
    /// Noise of the simulated annotator's rankings, 0 to 1: two samples are ranked in
    /// the oracle's order with probability σ(score gap / noise). A noisier reward model
    /// is over-optimised sooner: the PPO run's held-out gold score peaks and falls while
    /// its RM score still rises.
    #[arg(long, default_value_t = 0.0, value_parser = super::annotate::parse_noise)]
    noise: f64,
    /// Seed of the whole loop: the prompts, every stage and the simulated annotator, so
    /// that runs with other seeds say how much a figure owes to chance.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

const PROJECT: &str = "demo";
const RESEARCHER: (&str, &str) = ("researcher", "plumb-demo-researcher");
const ANNOTATOR: (&str, &str) = ("annotator", "plumb-demo-annotator");

/// How big the loop is.
struct Scale {
    train_prompts: usize,
    test_prompts: usize,
    pretrain_steps: i64,
    sft_steps: i64,
    ranked_prompts: usize,
    rm_steps: i64,
    ppo_steps: i64,
    grpo_steps: i64,
    /// Held-out prompts of each blind A/B pair the simulated annotator votes on.
    ab_prompts: usize,
    /// Test tasks per skill of the few-shot evaluation.
    skill_tasks: usize,
}

const FULL: Scale = Scale {
    train_prompts: 2000,
    test_prompts: 160,
    pretrain_steps: 150,
    sft_steps: 1600,
    ranked_prompts: 1200,
    rm_steps: 720,
    ppo_steps: 12,
    grpo_steps: 12,
    ab_prompts: 60,
    skill_tasks: 20,
};

const SHORT: Scale = Scale {
    train_prompts: 1000,
    test_prompts: 96,
    pretrain_steps: 100,
    sft_steps: 200,
    ranked_prompts: 200,
    rm_steps: 160,
    ppo_steps: 4,
    grpo_steps: 6,
    ab_prompts: 16,
    skill_tasks: 8,
};

const QUICK: Scale = Scale {
    train_prompts: 48,
    test_prompts: 8,
    pretrain_steps: 4,
    sft_steps: 4,
    ranked_prompts: 8,
    rm_steps: 4,
    ppo_steps: 1,
    grpo_steps: 1,
    ab_prompts: 4,
    skill_tasks: 2,
};

pub fn run(args: DemoArgs) -> Result<()> {
    // The demo prints its own progress; the worker's and the server's warnings still show.
    super::init_logs(false, "warn");
    let scale = match (args.quick, args.short) {
        (true, _) => QUICK,
        (_, true) => SHORT,
        _ => FULL,
    };
    let database = Database::from_url_or_home(std::env::var("DATABASE_URL").ok(), &args.home);
    let artifacts = StoreSettings::from_env(&args.home, |k| std::env::var(k).ok())?;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let outcome = runtime.block_on(super::shutdown::until_signal(async {
        step("Starting Postgres");
        // Stopped when the demo ends (Ctrl-C included), if the demo started it.
        let _cluster = database.start_owned().await?;
        let pool = database.connect(20).await?;
        registry::db::migrate(&pool).await?;
        println!("database: {}", database.describe());

        let settings = web::Settings {
            host: args.host,
            port: args.port,
            artifacts: Some(PathBuf::from(&artifacts.location)),
            s3: artifacts.s3.clone(),
            ..web::Settings::default()
        };
        let app = web::Application::build(&settings, pool.clone()).context("starting the web app")?;
        let url = format!("http://{}:{}", args.host, app.port());
        let server = tokio::spawn(app.run_until_stopped());

        let projects = labeling::projects::list_projects(&pool).await?;
        if let Some(project) = projects.iter().find(|p| p.name.as_str() == PROJECT) {
            // Built, when its last stage (the eval run) succeeded; anything less is a
            // demo that stopped half way, which is not served as if it were done.
            let filter = runs::RunFilter {
                project_id: Some(project.id),
                status: Some(RunStatus::Succeeded),
                limit: 1,
            };
            let done = runs::list_of_kind(&pool, &filter, Some(RunKind::Eval)).await?;
            let Some(eval) = done.first() else {
                bail!(
                    "a demo in {} stopped before it finished: start over in an empty database \
                     (rm -rf {} for the private cluster), or use another --home",
                    database.describe(),
                    args.home.display()
                );
            };
            println!(
                "The demo was already built in {}: serving it (the comparison: {url}/evals/{}).",
                args.home.display(),
                eval.id
            );
        } else {
            let store = ArtifactStore::open(&artifacts).context("opening the artifact store")?;
            let mut options = WorkerOptions::new("demo-worker", args.home.join("work"));
            options.device = args.device;
            options.heartbeat = Duration::from_secs(1);
            options.poll = Duration::from_millis(200);
            let worker = Worker::new(pool.clone(), store.clone(), options);
            let (stop, shutdown) = tokio::sync::watch::channel(false);
            let working = tokio::spawn(async move { worker.run(shutdown).await });
            let outcome = build(&pool, &store, &url, &args, &scale).await;
            let _ = stop.send(true);
            let _ = working.await;
            outcome?;
        }
        if args.no_serve {
            return Ok(());
        }
        println!(
            "\nplumb is serving {url}\n  researcher: {} / {}\n  annotator:  {} / {}\n\
             Annotate more at {url}/tasks, launch the next round at {url}/runs, compare at {url}/compare. Ctrl-C stops.",
            RESEARCHER.0, RESEARCHER.1, ANNOTATOR.0, ANNOTATOR.1
        );
        server.await?.context("the web server stopped with an error")
    }));
    // A training step still on the blocking pool after a signal is not waited for.
    runtime.shutdown_background();
    outcome
}

fn step(what: &str) {
    println!("\n\x1b[1m== {what}\x1b[0m");
}

/// The loop, from an empty database to an eval run of every version.
async fn build(
    pool: &PgPool,
    store: &ArtifactStore,
    url: &str,
    args: &DemoArgs,
    scale: &Scale,
) -> Result<()> {
    let (seed, noise) = (args.seed, args.noise);
    step("Demo users and project");
    let mut ids = Vec::new();
    for ((name, password), role) in [(RESEARCHER, Role::Researcher), (ANNOTATOR, Role::Annotator)] {
        let user = labeling::users::create_user(
            pool,
            &Username::parse(name)?,
            &DisplayName::parse(name)?,
            role,
            &Password::parse(password)?,
        )
        .await?;
        ids.push(user.id);
    }
    let (researcher, annotator) = (ids[0], ids[1]);
    let project = labeling::projects::create_project(
        pool,
        &NewProject {
            name: ProjectName::parse(PROJECT)?,
            guidelines: Guidelines::parse(
                "Sort the digits of each prompt in ascending order. Answer with the digits only: \
                 no padding, no repetition.",
            )?,
            overlap: Overlap::parse(1)?,
            samples_per_task: SamplesPerTask::parse(4)?,
            created_by: Some(researcher),
        },
    )
    .await?;
    labeling::projects::add_member(pool, project.id, annotator).await?;
    let launcher = Launcher { pool, project: project.id, researcher };
    let (_, token) =
        labeling::users::create_api_token(pool, annotator, &TokenName::parse("simulated annotator")?).await?;

    let mut lines = Vec::new();
    for (split, name, n, seed) in [
        (Split::Train, "train", scale.train_prompts, 1000 * seed + 1),
        (Split::Test, "test", scale.test_prompts, 1000 * seed + 2),
    ] {
        for task in world::tasks_of(Skill::Sort, n, split, seed) {
            lines.push(json!({ "prompt": task.prompt, "split": name }).to_string());
        }
    }
    let limits = ImportLimits { max_bytes: 64 << 20, max_lines: 1_000_000 };
    let report = labeling::prompts::import(
        pool,
        project.id,
        labeling::prompts::PromptFile::Jsonl(lines.join("\n").as_bytes()),
        &PromptSource::parse("demo world")?,
        Some(researcher),
        &limits,
    )
    .await?;
    println!(
        "{} prompts (sorting digits), {} of them held out for the eval",
        report.imported.len(),
        scale.test_prompts
    );

    match &args.base {
        Some(dir) => {
            step(&format!("Importing {} as base", dir.display()));
            let (version, _) = super::import::import_checkpoint(pool, store, dir, "base").await?;
            println!("registered base:{}", version.version);
        }
        None => {
            launcher
                .launch(
                    "Pretraining a tiny GPT on the demo world's corpus",
                    RunKind::Pretrain,
                    json!({ "model_name": "base", "preset": "tiny", "corpus": "demo_world",
                        "corpus_documents": 4000,
                        "stage": { "steps": scale.pretrain_steps, "seq_len": 64, "batch_size": 16, "seed": seed,
                                   "warmup_steps": 10.min(scale.pretrain_steps), "eval_every": 0 } }),
                )
                .await?;
        }
    }

    step("The simulated annotator writes demonstrations (half of them sloppy) through the API");
    labeling::tasks::request_demonstrations(pool, project.id, Some(labeling::domain::Split::Train), i64::MAX)
        .await?;
    let tally = simulate(url, &token, 0.5, 0.0, seed).await?;
    println!("{tally}");

    launcher.launch(
        "SFT on the demonstrations",
        RunKind::Sft,
        json!({ "model_name": "sft", "base": "base",
                "stage": { "steps": scale.sft_steps, "lr": 3e-3, "batch_size": 16, "dropout": 0.0, "seed": seed,
                           "warmup_steps": 10.min(scale.sft_steps), "eval_every": 0, "checkpoint_every": 100 } }),
    )
    .await?;
    launcher
        .launch(
            "Sampling 4 responses per prompt for ranking: 3 from the SFT policy, 1 from the base model",
            RunKind::Sample,
            json!({ "version": "sft", "mix": ["base"], "prompts": { "split": "train", "limit": scale.ranked_prompts }, "k": 4,
                "stage": { "max_new_tokens": 20, "temperature": 1.0, "seed": 5 + seed } }),
        )
        .await?;
    step(&format!("The simulated annotator ranks them through the API, with noise {noise}"));
    let tally = simulate(url, &token, 0.0, noise, seed).await?;
    println!("{tally}");

    launcher
        .launch(
            "Reward model from the SFT model, on the rankings",
            RunKind::Reward,
            json!({ "model_name": "rm", "base": "sft",
                "stage": { "steps": scale.rm_steps, "lr": 3e-4, "batch_size": 4, "eval_every": 0, "seed": seed,
                           "checkpoint_every": 100 } }),
        )
        .await?;
    let ppo = launcher
        .launch(
            "PPO of the SFT policy against the reward model",
            RunKind::Ppo,
            json!({ "model_name": "policy", "policy": "sft", "reward": "rm",
                "stage": { "steps": scale.ppo_steps, "batch_size": 64, "minibatch_size": 16, "ppo_epochs": 2, "seed": seed,
                           "lr": 1e-4, "value_lr": 1e-3, "warmup_steps": 0, "max_new_tokens": 20,
                           "kl_coef": 1.0, "reward_clip": 3.0, "checkpoint_every": 2,
                           "eval_every": 1, "heldout_prompts": 32 } }),
        )
        .await?;
    report_curve(pool, ppo).await?;
    launcher
        .launch(
            "DPO of the SFT policy on the same rankings, without a reward model",
            RunKind::Dpo,
            json!({ "model_name": "dpo", "policy": "sft",
                "stage": { "epochs": 1, "batch_size": 16, "seed": seed, "eval_every": 0,
                           "checkpoint_every": 0 } }),
        )
        .await?;
    launcher
        .launch(
            "GRPO of the SFT policy against the reward model",
            RunKind::Grpo,
            json!({ "model_name": "grpo", "policy": "sft", "reward": "rm",
                "stage": { "steps": scale.grpo_steps, "batch_size": 16, "group_size": 4, "minibatch_size": 32,
                           "max_new_tokens": 20, "reward_clip": 3.0, "seed": seed, "checkpoint_every": 0,
                           "eval_every": 2, "heldout_prompts": 32 } }),
        )
        .await?;
    let eval = launcher.launch(
        "Evaluating base, SFT, the PPO policy, DPO and GRPO on held-out prompts",
        RunKind::Eval,
        json!({ "versions": ["base", "sft", "policy", "dpo", "grpo"], "reward": "rm", "reference": "sft",
                "prompts": { "split": "test" }, "stage": { "max_new_tokens": 20, "temperature": 1.0, "seed": 11 + seed },
                "skills": { "shots": [0, 1, 3], "per_skill": scale.skill_tasks },
                "probes": [{ "template": "the {group} is", "groups": ["cat", "sun", "ship"], "samples": 64, "top": 5 }] }),
    )
    .await?;
    report_eval(pool, eval).await?;
    human_eval(pool, project.id, eval, url, &token, scale, seed).await
}

/// A blind A/B batch (SFT against base, the policy against SFT) on held-out prompts, the
/// simulated annotator's votes through the API, and what they say.
async fn human_eval(
    pool: &PgPool,
    project: i64,
    eval: i64,
    url: &str,
    token: &str,
    scale: &Scale,
    seed: u64,
) -> Result<()> {
    step("A blind A/B batch for the simulated annotator: SFT against base, each aligned policy against SFT");
    let samples = evals::samples(pool, eval).await?;
    let id =
        |name: &'static str| async move { Ok::<i64, anyhow::Error>(versions::resolve(pool, name).await?.id) };
    let (base, sft, policy, dpo, grpo) =
        (id("base").await?, id("sft").await?, id("policy").await?, id("dpo").await?, id("grpo").await?);
    let mut prompts: Vec<i64> = samples.iter().map(|s| s.prompt_id).collect();
    prompts.sort_unstable();
    prompts.dedup();
    prompts.truncate(scale.ab_prompts);
    let evaluated: Vec<labeling::ab::EvaluatedSample> = samples
        .iter()
        .map(|s| labeling::ab::EvaluatedSample {
            version_id: s.version_id,
            prompt_id: s.prompt_id,
            text: s.text.clone(),
        })
        .collect();
    let batch = labeling::ab::create_ab_batch(
        pool,
        project,
        eval,
        &[(base, sft), (sft, policy), (sft, dpo), (sft, grpo)],
        &prompts,
        &evaluated,
        17,
    )
    .await?;
    println!("{} A/B tasks ({} pairs wrote the same text)", batch.task_ids.len(), batch.identical);
    println!("{}", simulate(url, token, 0.0, 0.0, seed).await?);
    let votes = labeling::submit::version_votes(pool, project).await?;
    for r in labeling::leaderboard::bradley_terry(&votes, labeling::leaderboard::LEADERBOARD_RESAMPLES, 1) {
        let v = versions::get(pool, r.version_id).await?;
        println!(
            "{:>10}: Bradley–Terry rating {:.0} [{:.0}, {:.0}] from {} votes",
            format!("{}:{}", v.model, v.version),
            r.rating,
            r.low,
            r.high,
            r.votes
        );
    }
    println!("The comparison: {url}/evals/{eval}#human");
    Ok(())
}

/// Enqueues a run, shows its progress until it ends, and fails unless it succeeded.
/// Where the demo launches its runs: its database, its project, and its researcher as
/// the runs' author.
struct Launcher<'a> {
    pool: &'a PgPool,
    project: i64,
    researcher: i64,
}

impl Launcher<'_> {
    /// Queues a run (`what` it does, its `kind` and `config`) and follows it to its end
    /// with a progress bar; its id, once it succeeded.
    async fn launch(&self, what: &str, kind: RunKind, config: Value) -> Result<i64> {
        let (pool, project, researcher) = (self.pool, self.project, self.researcher);
        step(what);
        let started = std::time::Instant::now();
        let id = runs::enqueue(
            pool,
            &NewRun { project_id: Some(project), kind, config, created_by: Some(researcher) },
        )
        .await?;
        let bar = ProgressBar::new(1000);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} run {msg} [{bar:40}] {percent:>3}% {elapsed_precise} ETA {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_message(format!("{id}"));
        let run = loop {
            let run = runs::get(pool, id).await?;
            bar.set_position((run.progress as f64 * 1000.0) as u64);
            if run.status.is_finished() {
                break run;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        };
        bar.finish();
        if run.status != RunStatus::Succeeded {
            bail!("run {id} ({what}) {}: {}", run.status, run.error.unwrap_or_default());
        }
        let seconds = started.elapsed().as_secs_f64();
        match versions::of_run(pool, id).await? {
            Some(version) => println!("registered {}:{} ({seconds:.0} s)", version.model, version.version),
            None => println!("run {id} done ({seconds:.0} s)"),
        }
        Ok(id)
    }
}

/// The simulated annotator through the API until no task is left; its summary.
async fn simulate(url: &str, token: &str, sloppy: f64, noise: f64, seed: u64) -> Result<String> {
    let (url, token) = (url.to_owned(), token.to_owned());
    tokio::task::spawn_blocking(move || super::annotate::simulate_quietly(&url, &token, sloppy, noise, seed))
        .await?
        .map(|t| {
            format!(
                "{} demonstrations, {} rankings, {} votes, {} skipped",
                t.demonstrations, t.rankings, t.votes, t.skipped
            )
        })
}

/// The PPO run's over-optimisation curve: its held-out RM and gold scores against KL at
/// each evaluation, and where the gold score peaked.
async fn report_curve(pool: &PgPool, run: i64) -> Result<()> {
    let evals = held_out(&runs::metrics(pool, run).await?);
    let golds: Vec<(&HeldOut, f64)> = evals.iter().filter_map(|h| Some((h, h.gold?))).collect();
    let (Some(&first), Some(&(_, last))) = (golds.first(), golds.last()) else { return Ok(()) };
    step("The policy on held-out prompts at each evaluation (the over-optimisation curve)");
    for (h, gold) in &golds {
        let reward = h.reward.unwrap_or(f64::NAN);
        println!("step {:>3}: KL {:.2} nats, RM {reward:+.3}, gold {gold:+.3}", h.step, h.kl);
    }
    // The earliest of equal scores, as the run page says it.
    let (peak, best) = golds.iter().fold(first, |best, &p| if p.1 > best.1 { p } else { best });
    println!(
        "gold peaks at step {} (KL {:.2} nats): {best:+.3}; at the last step, {last:+.3}",
        peak.step, peak.kl
    );
    Ok(())
}

/// What the oracle measured: each version's oracle score and the policy's win rate over
/// SFT; the RM's agreement with the oracle on pairs of held-out samples.
async fn report_eval(pool: &PgPool, eval: i64) -> Result<()> {
    step("What the oracle measured on held-out prompts");
    // Against SFT, so that the policy's win rates are over SFT.
    let sft = versions::resolve(pool, "sft").await?.id;
    let report = evals::report(pool, eval, Some(sft)).await?;
    for v in &report.versions {
        let s = &v.summary;
        println!(
            "{:>10}: oracle {:+.3}, RM {:+.3}, KL to SFT {:.2} nats, {:.1} tokens",
            v.label,
            s.oracle.unwrap_or(f64::NAN),
            s.reward.unwrap_or(f64::NAN),
            s.kl.unwrap_or(f64::NAN),
            s.tokens
        );
    }
    let of = |model: &str| report.versions.iter().find(|v| v.label.starts_with(model));
    if let (Some(base), Some(sft)) = (of("base:"), of("sft:")) {
        let oracle = |v: &evals::VersionReport| v.summary.oracle.unwrap_or(f64::NAN);
        println!("SFT over base: oracle {:+.3}", oracle(sft) - oracle(base));
        for (name, model) in [("PPO", "policy:"), ("DPO", "dpo:"), ("GRPO", "grpo:")] {
            let Some(aligned) = of(model) else { continue };
            if let Some(w) = &aligned.win_rate_oracle {
                println!(
                    "{name} over SFT: oracle {:+.3}, win rate by the oracle {:.0}% [{:.0}%, {:.0}%], at a KL of {:.2} nats",
                    oracle(aligned) - oracle(sft),
                    100.0 * w.rate,
                    100.0 * w.low,
                    100.0 * w.high,
                    aligned.summary.kl.unwrap_or(f64::NAN)
                );
            }
        }
    }
    for v in &report.versions {
        if let Some(line) = evals::few_shot_line(&report.skills, v.version_id) {
            println!("{:>10}: accuracy on the five skills, {line}", v.label);
        }
    }
    // The RM agrees with the oracle on a pair of samples of one prompt when it orders them
    // the same way (pairs the oracle ties are left out).
    if let Some((agree, pairs)) = evals::reward_oracle_agreement(&report.samples) {
        println!(
            "RM agreement with the oracle: {:.3} of {pairs} held-out pairs",
            agree as f64 / pairs as f64
        );
        // Where it fails: the RM learnt from rankings of the SFT model's samples, so the
        // base model's are new to it.
        let label =
            |id: i64| report.versions.iter().find(|v| v.version_id == id).map_or("?", |v| v.label.as_str());
        for ((a, b), (agree, pairs)) in evals::reward_oracle_agreement_by_versions(&report.samples) {
            println!("  {} vs {}: {:.3} of {pairs}", label(a), label(b), agree as f64 / pairs as f64);
        }
    }
    Ok(())
}

//! Subcommands. Model commands read JSON lines on stdin and write JSON lines on stdout;
//! errors go to stderr, name the input line, and exit non-zero.

use anyhow::Result;
use clap::{Parser, Subcommand};

mod annotate;
mod data;
mod db;
#[cfg(feature = "trainer")]
mod demo;
#[cfg(feature = "trainer")]
mod import;
mod jsonl;
#[cfg(feature = "trainer")]
mod model;
mod serve;
mod shutdown;
#[cfg(feature = "trainer")]
mod train;
mod users;
#[cfg(feature = "trainer")]
mod worker;
mod world;

#[derive(Parser)]
#[command(
    name = "plumb",
    version,
    about = "RLHF alignment platform: annotate, train, register and compare GPT models"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The Postgres database: the private cluster under .plumb/pg, or DATABASE_URL's server.
    Db(db::DbArgs),
    /// The web app: annotators' and researchers' pages and the JSON API.
    Serve(serve::ServeArgs),
    /// A team's people: add, list, disable and enable users, set passwords and roles.
    Users(users::UsersArgs),
    /// A project's data: import preference pairs, rankings or demonstrations (trl, hh,
    /// messages, kwise); export a snapshot as a training file.
    Data(data::DataArgs),
    /// Initialise a GPT checkpoint with random weights.
    #[cfg(feature = "trainer")]
    Init(model::InitArgs),
    /// Text to token ids: {"text"} → {"ids"}.
    #[cfg(feature = "trainer")]
    Tokenize(model::TokenizeArgs),
    /// Log-probabilities of text under a model: {"text"} → {"ids", "logprobs"}.
    #[cfg(feature = "trainer")]
    Score(model::ScoreArgs),
    /// Sample completions: {"prompt"} → {"prompt", "completion", "ids", "logprobs"}.
    #[cfg(feature = "trainer")]
    Generate(model::GenerateArgs),
    /// Pretrain a GPT on a corpus (language-modelling loss).
    #[cfg(feature = "trainer")]
    Pretrain(train::PretrainArgs),
    /// Supervised fine-tuning on demonstrations.
    #[cfg(feature = "trainer")]
    Sft(train::SftArgs),
    /// Train a reward model on rankings, or score responses with one.
    #[cfg(feature = "trainer")]
    Reward(train::RewardArgs),
    /// PPO(-ptx) of an SFT policy against a reward model or a reward program.
    #[cfg(feature = "trainer")]
    Ppo(train::PpoArgs),
    /// RLOO (REINFORCE with leave-one-out baselines) of an SFT policy against a reward
    /// model or a reward program.
    #[cfg(feature = "trainer")]
    Rloo(train::RlooArgs),
    /// GRPO (group-normalised advantages, clipped ratio, KL in the loss) of an SFT policy
    /// against a reward model or a reward program.
    #[cfg(feature = "trainer")]
    Grpo(train::GrpoArgs),
    /// Direct preference optimisation of an SFT policy on rankings, without a reward model.
    #[cfg(feature = "trainer")]
    Dpo(train::DpoArgs),
    /// The demo world: tasks with checkable answers, a corpus and the oracle annotator.
    World(world::WorldArgs),
    /// A simulated annotator: takes tasks through plumb serve's JSON API and answers them
    /// with the demo world's oracle.
    Annotate(annotate::AnnotateArgs),
    /// Register an existing GPT-2-format checkpoint as a base version in the registry.
    #[cfg(feature = "trainer")]
    Import(import::ImportArgs),
    /// The whole loop on the demo world (pretrain, demonstrations, SFT, rankings, RM, PPO,
    /// eval) through the platform, then the web app with it all in it.
    #[cfg(feature = "trainer")]
    Demo(demo::DemoArgs),
    /// Claim queued runs from Postgres and carry them out (training, sampling).
    #[cfg(feature = "trainer")]
    Worker(worker::WorkerArgs),
}

impl Cli {
    /// The command line, each training stage's `--help` ending with the rules that give
    /// the settings a person leaves empty their values from the model's width.
    pub fn parse_with_rules() -> Cli {
        use clap::{CommandFactory, FromArgMatches};
        use spec::StageSettings;
        let stages: [(&str, &[spec::Setting]); 7] = [
            ("pretrain", spec::PretrainConfig::SETTINGS),
            ("sft", spec::SftConfig::SETTINGS),
            ("reward", spec::RewardConfig::SETTINGS),
            ("ppo", spec::PpoConfig::SETTINGS),
            ("rloo", spec::RlooConfig::SETTINGS),
            ("grpo", spec::GrpoConfig::SETTINGS),
            ("dpo", spec::DpoConfig::SETTINGS),
        ];
        let mut command = Cli::command();
        for (name, settings) in stages {
            let rules = size_rules(settings);
            if !rules.is_empty() && command.find_subcommand(name).is_some() {
                command = command.mut_subcommand(name, |c| c.after_help(rules));
            }
        }
        let matches = command.get_matches();
        Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
    }

    pub fn run(self) -> Result<()> {
        match self.command {
            Command::Db(args) => db::run(args),
            Command::Serve(args) => serve::run(args),
            Command::Users(args) => users::run(args),
            Command::Data(args) => data::run(args),
            #[cfg(feature = "trainer")]
            Command::Init(args) => model::init(args),
            #[cfg(feature = "trainer")]
            Command::Tokenize(args) => model::tokenize(args),
            #[cfg(feature = "trainer")]
            Command::Score(args) => model::score(args),
            #[cfg(feature = "trainer")]
            Command::Generate(args) => model::generate(args),
            #[cfg(feature = "trainer")]
            Command::Pretrain(args) => train::pretrain(args),
            #[cfg(feature = "trainer")]
            Command::Sft(args) => train::sft(args),
            #[cfg(feature = "trainer")]
            Command::Import(args) => import::run(args),
            #[cfg(feature = "trainer")]
            Command::Worker(args) => worker::run(args),
            #[cfg(feature = "trainer")]
            Command::Demo(args) => demo::run(args),
            #[cfg(feature = "trainer")]
            Command::Reward(args) => train::reward(args),
            #[cfg(feature = "trainer")]
            Command::Ppo(args) => train::ppo(args),
            #[cfg(feature = "trainer")]
            Command::Rloo(args) => train::rloo(args),
            #[cfg(feature = "trainer")]
            Command::Grpo(args) => train::grpo(args),
            #[cfg(feature = "trainer")]
            Command::Dpo(args) => train::dpo(args),
            Command::World(args) => world::run(args),
            Command::Annotate(args) => annotate::run(args),
        }
    }
}

/// Logs to stderr, filtered by `RUST_LOG` (else `default`: `info`, `warn`); JSON lines
/// with `json`.
pub(crate) fn init_logs(json: bool, default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Runs `work` on a one-thread runtime with plumb's database: the server that
/// `DATABASE_URL` names, or the private cluster under `home` (started for the work, and
/// stopped after it, when it was not running), migrated to this version.
fn with_database<T>(home: &std::path::Path, work: impl AsyncFnOnce(sqlx::PgPool) -> Result<T>) -> Result<T> {
    let database = registry::db::Database::from_url_or_home(std::env::var("DATABASE_URL").ok(), home);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let _cluster = database.start_owned().await?;
        let pool = database.connect(2).await?;
        registry::db::migrate(&pool).await?;
        work(pool).await
    })
}

/// What a stage's settings that depend on the model's size take when left empty (the
/// flag or the --config file's field), one paragraph each; empty when it has none.
fn size_rules(settings: &[spec::Setting]) -> String {
    let rules: Vec<String> = settings
        .iter()
        .filter_map(|s| s.scale.map(|scale| format!("  {}: {}", s.name, scale.describe())))
        .collect();
    if rules.is_empty() {
        return String::new();
    }
    format!("Settings that follow the model's width unless given:\n{}", rules.join("\n"))
}

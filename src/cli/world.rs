//! `plumb world`: the demo world's data as JSON lines, and its oracle as a scorer.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;

use anyhow::{anyhow, Context, Result};
use clap::{Args, Subcommand};
use serde::{Deserialize, Serialize};
use world::{self, Demonstration, Document, Finish, Oracle, Prompt, Skill, Split, Task};

use super::jsonl;

#[derive(Args)]
pub struct WorldArgs {
    #[command(subcommand)]
    command: WorldCommand,
    /// Write the JSON lines to FILE instead of stdout.
    #[arg(long, global = true)]
    out: Option<PathBuf>,
}

#[derive(Subcommand)]
enum WorldCommand {
    /// Pretraining text in the world's language: {"text"} lines.
    Corpus {
        /// How many documents.
        #[arg(long)]
        n: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Tasks with their answers: {"prompt", "response"} lines.
    Demos(Draw),
    /// Tasks without answers: {"prompt"} lines.
    Prompts(Draw),
    /// K synthetic samples per task, ranked by the simulated annotator:
    /// {"prompt", "samples", "ranking"} lines.
    Rankings {
        #[command(flatten)]
        draw: Draw,
        /// Samples per prompt.
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u8).range(2..=9))]
        k: u8,
        /// Scale of the Gumbel noise on the oracle's scores: two samples come out in the
        /// oracle's order with probability σ(score gap / noise); 0 ranks by score exactly.
        #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
        noise: f64,
    },
    /// The oracle's score of responses: {"prompt", "response"} (or generate's
    /// {"prompt", "completion", "finish_reason"}) on stdin → {"score", "correct"}.
    Score,
    /// The oracle as a reward program for `--reward-cmd "plumb world reward"`:
    /// {"prompt", "response"} lines on stdin → {"reward"} lines, the oracle's score.
    Reward,
}

/// Which tasks to draw.
#[derive(Args)]
struct Draw {
    /// How many tasks (drawn with replacement).
    #[arg(long)]
    n: usize,
    /// train, val or test.
    #[arg(long, default_value = "train")]
    split: Split,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Only this skill: reverse, uppercase, sort, add or repeat (default: all, mixed).
    #[arg(long)]
    skill: Option<Skill>,
}

impl Draw {
    fn tasks(&self) -> Vec<Task> {
        match self.skill {
            Some(skill) => world::tasks_of(skill, self.n, self.split, self.seed),
            None => world::tasks(self.n, self.split, self.seed),
        }
    }
}

#[derive(Deserialize)]
struct ResponseLine {
    prompt: String,
    #[serde(alias = "completion")]
    response: String,
    /// "eos" (the default) or "length" for a sample cut at the token limit.
    #[serde(default)]
    finish_reason: Finish,
}

#[derive(Serialize)]
struct Scored {
    score: f64,
    correct: bool,
}

#[derive(Serialize)]
struct Reward {
    reward: f64,
}

pub fn run(args: WorldArgs) -> Result<()> {
    let mut out: BufWriter<Box<dyn Write>> = BufWriter::new(match &args.out {
        Some(path) => Box::new(File::create(path).with_context(|| format!("creating {}", path.display()))?),
        None => Box::new(io::stdout().lock()),
    });
    match args.command {
        WorldCommand::Corpus { n, seed } => {
            write_all(&mut out, world::corpus(n, seed).into_iter().map(Document::from))?
        }
        WorldCommand::Demos(draw) => write_all(&mut out, draw.tasks().iter().map(Demonstration::from))?,
        WorldCommand::Prompts(draw) => write_all(&mut out, draw.tasks().iter().map(Prompt::from))?,
        WorldCommand::Rankings { draw, k, noise } => {
            let oracle = Oracle::new(noise)?;
            write_all(&mut out, world::rankings(&draw.tasks(), k.into(), &oracle, draw.seed))?
        }
        WorldCommand::Score => {
            let scored = read_scored()?;
            write_all(&mut out, scored.iter().map(|&(score, correct)| Scored { score, correct }))?
        }
        WorldCommand::Reward => {
            write_all(&mut out, read_scored()?.into_iter().map(|(reward, _)| Reward { reward }))?
        }
    }
    Ok(out.flush()?)
}

fn write_all<T: Serialize>(out: &mut impl Write, records: impl IntoIterator<Item = T>) -> Result<()> {
    records.into_iter().try_for_each(|record| jsonl::write_line(out, &record))
}

/// The oracle's (score, correct) of each response on stdin. Every prompt is parsed before
/// anything is written, so an unknown prompt stops the command with no output.
fn read_scored() -> Result<Vec<(f64, bool)>> {
    let lines: Vec<ResponseLine> = jsonl::read_all(io::stdin().lock(), "stdin")?;
    let tasks = lines
        .iter()
        .enumerate()
        .map(|(index, line)| {
            world::parse_task(&line.prompt).ok_or_else(|| {
                anyhow!("stdin line {}: not a demo-world prompt: {:?}", index + 1, line.prompt)
            })
        })
        .collect::<Result<Vec<Task>>>()?;
    Ok(lines
        .iter()
        .zip(&tasks)
        .map(|(line, task)| {
            (world::score(task, &line.response, line.finish_reason), world::is_correct(task, &line.response))
        })
        .collect())
}

//! `plumb data import --project NAME --format F FILE`: brings a file of preference pairs,
//! rankings or demonstrations into a project, as the data page's import does; and
//! `plumb data export --snapshot ID --format F`: a snapshot as a training file.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use labeling::formats::Format;
use labeling::imports::{self, ImportFile};
use labeling::prompts::ImportLimits;
use labeling::snapshots::{self, ExportFormat};

#[derive(Args)]
pub struct DataArgs {
    #[command(subcommand)]
    command: DataCommand,
    /// plumb's state directory: the private cluster in `pg/`.
    #[arg(long, env = "PLUMB_HOME", default_value = ".plumb", global = true)]
    home: PathBuf,
}

#[derive(Subcommand)]
enum DataCommand {
    /// Import a JSON-lines file into a project. Prints the report as JSON; each refused
    /// line goes to stderr with its field, and the command exits 1 when any was refused
    /// (the good lines are stored all the same). The same file again adds nothing.
    Import {
        /// The project's name.
        #[arg(long)]
        project: String,
        /// trl, hh, messages or kwise.
        #[arg(long)]
        format: String,
        /// The import's name, shown as its rows' source (default: the file's name).
        #[arg(long)]
        name: Option<String>,
        file: PathBuf,
    },
    /// Write a snapshot's training file to stdout (or `--out`).
    Export {
        #[arg(long)]
        snapshot: i64,
        /// prompts, sft, messages, kwise, pairs, pairs_keep_ties, trl or hh.
        #[arg(long)]
        format: String,
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

pub fn run(args: DataArgs) -> Result<()> {
    match args.command {
        DataCommand::Import { project, format, name, file } => {
            let format = Format::parse(&format)?;
            let bytes = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let name = name.unwrap_or_else(|| {
                file.file_name().map_or("import".into(), |n| n.to_string_lossy().into_owned())
            });
            let report = super::with_database(&args.home, async |pool| {
                let projects = labeling::projects::list_projects(&pool).await?;
                let Some(project) = projects.into_iter().find(|p| p.name.as_str() == project) else {
                    bail!("no project is named {project:?}");
                };
                let file = ImportFile { name: &name, format, bytes: &bytes };
                Ok(imports::import(&pool, project.id, file, None, &ImportLimits::default()).await?)
            })?;
            println!("{}", serde_json::to_string(&report)?);
            for e in &report.errors {
                eprintln!("{}:{}: field `{}`: {}", file.display(), e.line, e.field, e.message);
            }
            if !report.errors.is_empty() {
                std::process::exit(1);
            }
            Ok(())
        }
        DataCommand::Export { snapshot, format, out } => {
            let format = ExportFormat::parse(&format)?;
            let lines = super::with_database(&args.home, async |pool| {
                Ok(snapshots::export(&pool, snapshot, format).await?)
            })?;
            let mut text = String::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
            for line in &lines {
                text.push_str(line);
                text.push('\n');
            }
            match out {
                Some(path) => {
                    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
                }
                None => Ok(std::io::stdout().write_all(text.as_bytes())?),
            }
        }
    }
}

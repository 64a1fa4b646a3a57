//! The `plumb` command.

use std::process::ExitCode;

mod cli;

fn main() -> ExitCode {
    match cli::Cli::parse_with_rules().run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The chain of causes on one line, without a backtrace: what a user acts on.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

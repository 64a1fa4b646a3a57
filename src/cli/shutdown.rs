//! SIGINT (Ctrl-C) and SIGTERM end a long-running command by returning from it, not by
//! killing the process, so that what it started (its private Postgres cluster, held by a
//! guard) is stopped on the way out.

use std::future::Future;

use anyhow::{Context, Result};
use tokio::signal::unix::{signal, SignalKind};

/// Runs `work` until it ends or SIGINT or SIGTERM arrives; then `work` is dropped (and
/// with it what it holds) and the command ends successfully. The handlers are in place
/// before `work` first runs, so a signal during its start is not lost either.
pub async fn until_signal(work: impl Future<Output = Result<()>>) -> Result<()> {
    let mut interrupt = signal(SignalKind::interrupt()).context("listening for SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    let name = tokio::select! {
        outcome = work => return outcome,
        _ = interrupt.recv() => "SIGINT",
        _ = terminate.recv() => "SIGTERM",
    };
    eprintln!("plumb: {name}: stopping");
    Ok(())
}

//! `plumb worker`: claims queued runs from Postgres and carries them out, until SIGTERM
//! or Ctrl-C. The run in progress then stops at the end of its current step, checkpoints
//! it into the artifact store and goes back to the queue, for this or another worker to
//! resume from there. A worker killed outright loses at most the steps since the last
//! stored checkpoint: after its lease expires, another worker resumes the run.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use registry::artifacts::{ArtifactStore, StoreSettings};
use registry::db::Database;
use trainer::worker::{Worker, WorkerOptions};
use trainer::DeviceChoice;

#[derive(Args)]
pub struct WorkerArgs {
    /// cpu, cuda, cuda:N or auto (the first GPU when there is one). Several workers share
    /// a machine's GPUs with one `--device cuda:N` each.
    #[arg(long, default_value = "auto")]
    device: DeviceChoice,
    /// The name runs record as their worker (default: host name and process id).
    #[arg(long)]
    name: Option<String>,
    /// plumb's state directory: the private cluster in `pg/`, the artifact store in
    /// `artifacts/` (unless PLUMB_ARTIFACTS names another directory or an
    /// `s3://bucket/prefix`, whose artifacts are then cached in `cache/`), runs in progress
    /// in `work/`.
    #[arg(long, env = "PLUMB_HOME", default_value = ".plumb")]
    home: PathBuf,
    /// Seconds a claim lasts without a heartbeat before another worker may take the run.
    #[arg(long, default_value_t = 60)]
    lease_s: u64,
    /// Seconds between heartbeats (and metric reports).
    #[arg(long, default_value_t = 5)]
    heartbeat_s: u64,
    /// The host other workers reach this one at when it is rank 0 of a run trained by
    /// several workers (`world_size`): it serves their rendezvous (c10d's TCPStore) on a
    /// free port there. Loopback suits workers on one machine.
    #[arg(long, env = "PLUMB_WORKER_ADDRESS", default_value = "127.0.0.1")]
    address: String,
    /// Stop when the queue is empty instead of waiting for more runs.
    #[arg(long)]
    drain: bool,
}

pub fn run(args: WorkerArgs) -> Result<()> {
    super::init_logs(false, "info");
    let name = args.name.clone().unwrap_or_else(default_name);
    let artifacts = StoreSettings::from_env(&args.home, |k| std::env::var(k).ok())?;
    let store = ArtifactStore::open(&artifacts).context("opening the artifact store")?;
    let mut options = WorkerOptions::new(&name, args.home.join("work"));
    options.device = args.device;
    options.lease = Duration::from_secs(args.lease_s.max(1));
    options.heartbeat = Duration::from_secs(args.heartbeat_s.clamp(1, args.lease_s.max(2) / 2));
    options.address = args.address.clone();
    let database = Database::from_url_or_home(std::env::var("DATABASE_URL").ok(), &args.home);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async {
        database.ensure_started().await?;
        let pool = database.connect(4).await?;
        registry::db::migrate(&pool).await?;
        let worker = Worker::new(pool.clone(), store, options);
        let (stop, shutdown) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            wait_for_signal().await;
            eprintln!("worker {name}: stopping (the run in progress goes back to the queue)");
            let _ = stop.send(true);
        });
        eprintln!("worker {}: waiting for runs (database: {})", worker.options().name, database.describe());
        if args.drain {
            while let Some((run_id, outcome)) = worker.run_next(shutdown.clone()).await? {
                eprintln!("worker {}: run {run_id}: {outcome:?}", worker.options().name);
                if *shutdown.borrow() {
                    break;
                }
            }
        } else {
            worker.run(shutdown).await;
        }
        // No other worker's claim takes this one as a rank any more.
        registry::runs::stop_waiting(&pool, &worker.options().name).await?;
        Ok(())
    })
}

fn default_name() -> String {
    let host = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_owned()).unwrap_or_default();
    let host = if host.is_empty() { "worker".to_owned() } else { host };
    format!("{host}-{}", std::process::id())
}

async fn wait_for_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

//! The worker: claims queued runs from Postgres and carries them out.
//!
//! Several workers on several machines share one Postgres; each claims with
//! `FOR UPDATE SKIP LOCKED`, holds the run with a lease it renews every heartbeat, and
//! lets go of it by finishing, failing, cancelling or releasing it. While the stage
//! trains on a blocking thread, the worker's async side renews the lease, streams the
//! stage's `metrics.jsonl` into the run's metrics (the run page draws them live), and
//! turns a cancel request or a shutdown into a stop at the stage's next logged step.
//!
//! On success the model goes into the artifact store and is registered as a version
//! with its lineage. `registry::versions::register` is idempotent per run, so a worker
//! that dies between storing the artifact and registering it leaves a run that the next
//! worker resumes and registers exactly once.

pub mod spec;
mod stages;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use registry::artifacts::ArtifactStore;
use registry::error::RegistryError;
use registry::runs::{self, ClaimedRun, Heartbeat, Metric};
use sqlx::PgPool;
use tokio::sync::watch;

use crate::train::{TrainError, METRICS, PROGRESS};
use crate::DeviceChoice;
pub use spec::{RunSpec, SpecError};

/// How a worker works.
#[derive(Clone, Debug)]
pub struct WorkerOptions {
    /// The name runs record as their worker (unique per worker process).
    pub name: String,
    /// Where runs train: `run-<id>/` per run, kept until the run ends so that a resumed
    /// run finds its checkpoints.
    pub work_dir: PathBuf,
    pub device: DeviceChoice,
    /// How long a claim lasts without a heartbeat; after it, another worker may resume
    /// the run.
    pub lease: Duration,
    /// How often the lease is renewed and metrics are streamed (well under `lease`).
    pub heartbeat: Duration,
    /// How long to wait before asking again when the queue is empty.
    pub poll: Duration,
}

impl WorkerOptions {
    pub fn new(name: impl Into<String>, work_dir: impl Into<PathBuf>) -> WorkerOptions {
        WorkerOptions {
            name: name.into(),
            work_dir: work_dir.into(),
            device: DeviceChoice::Auto,
            lease: Duration::from_secs(60),
            heartbeat: Duration::from_secs(5),
            poll: Duration::from_secs(2),
        }
    }
}

/// How a run that this worker held ended for it.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Finished; the version it registered (none for sample runs).
    Succeeded {
        version_id: Option<i64>,
    },
    /// Failed with this message (also on the run page).
    Failed(String),
    Cancelled,
    /// Given back to the queue (the worker is shutting down): another worker resumes it.
    Released,
    /// Another worker holds it now (this worker's lease expired): this one stopped.
    LeaseLost,
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

pub struct Worker {
    pool: PgPool,
    store: Arc<ArtifactStore>,
    options: WorkerOptions,
}

/// Why a run ended before it succeeded.
enum Stop {
    Failed(String),
    Cancelled,
    Released,
    LeaseLost,
}

impl<E: std::fmt::Display> From<E> for Stop {
    fn from(e: E) -> Self {
        Stop::Failed(e.to_string())
    }
}

/// What the stage thread and the worker's async side share.
struct Watch {
    stop: Arc<AtomicBool>,
    cancelled: bool,
    released: bool,
    lease_lost: bool,
}

impl Worker {
    pub fn new(pool: PgPool, store: ArtifactStore, options: WorkerOptions) -> Worker {
        Worker { pool, store: Arc::new(store), options }
    }

    pub fn options(&self) -> &WorkerOptions {
        &self.options
    }

    /// Claims and carries out runs until `shutdown` turns true; a run in progress then
    /// stops at its next logged step and goes back to the queue. A database that is
    /// briefly away (a Postgres restart) is waited for: the pool reconnects.
    pub async fn run(&self, mut shutdown: watch::Receiver<bool>) {
        while !*shutdown.borrow() {
            match self.run_next(shutdown.clone()).await {
                Ok(Some((run_id, outcome))) => {
                    eprintln!("worker {}: run {run_id}: {outcome:?}", self.options.name)
                }
                Ok(None) => {
                    tokio::select! {
                        _ = tokio::time::sleep(self.options.poll) => {}
                        _ = shutdown.changed() => {}
                    }
                }
                Err(e) => {
                    eprintln!("worker {}: {e}; trying again in {:?}", self.options.name, self.options.poll);
                    tokio::time::sleep(self.options.poll).await;
                }
            }
        }
    }

    /// Claims one run and carries it out; None when the queue has none.
    pub async fn run_next(
        &self,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Option<(i64, Outcome)>, WorkerError> {
        let Some(run) = runs::claim(&self.pool, &self.options.name, self.options.lease).await? else {
            return Ok(None);
        };
        let outcome = self.carry_out(&run, shutdown).await?;
        Ok(Some((run.id, outcome)))
    }

    async fn carry_out(
        &self,
        run: &ClaimedRun,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Outcome, WorkerError> {
        let name = self.options.name.as_str();
        let note = if run.resume { format!(", resuming from step {}", run.step) } else { String::new() };
        let _ = runs::log(
            &self.pool,
            run.id,
            &[format!("{name} claimed the run (attempt {}{note})", run.attempts)],
        )
        .await;
        let result = self.attempt(run, shutdown).await;
        let outcome = match result {
            Ok(version_id) => {
                runs::finish(&self.pool, run.id, name).await?;
                Outcome::Succeeded { version_id }
            }
            Err(Stop::Failed(message)) => {
                let _ = runs::log(&self.pool, run.id, &[format!("failed: {message}")]).await;
                runs::fail(&self.pool, run.id, name, &message).await?;
                Outcome::Failed(message)
            }
            Err(Stop::Cancelled) => {
                runs::finish_cancelled(&self.pool, run.id, name).await?;
                Outcome::Cancelled
            }
            Err(Stop::Released) => {
                let _ =
                    runs::log(&self.pool, run.id, &[format!("{name} is shutting down: released the run")])
                        .await;
                runs::release(&self.pool, run.id, name).await?;
                Outcome::Released
            }
            Err(Stop::LeaseLost) => Outcome::LeaseLost,
        };
        if matches!(outcome, Outcome::Succeeded { .. } | Outcome::Failed(_) | Outcome::Cancelled) {
            let dir = self.run_dir(run.id);
            let _ = tokio::fs::remove_dir_all(&dir).await;
        }
        Ok(outcome)
    }

    fn run_dir(&self, run_id: i64) -> PathBuf {
        self.options.work_dir.join(format!("run-{run_id}"))
    }

    /// The run from its config to its registered version.
    async fn attempt(
        &self,
        run: &ClaimedRun,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<Option<i64>, Stop> {
        let spec = RunSpec::parse(run.kind, &run.config)?;
        let dir = self.run_dir(run.id);
        let resume = dir.join("out").join(METRICS).exists();
        tokio::fs::create_dir_all(&dir).await.map_err(|e| Stop::Failed(format!("{}: {e}", dir.display())))?;
        let prepared = stages::prepare(&self.pool, &self.store, run, &spec, &dir).await?;
        let device = self.options.device.resolve().map_err(Stop::Failed)?;

        let mut watch = Watch {
            stop: Arc::new(AtomicBool::new(false)),
            cancelled: false,
            released: false,
            lease_lost: false,
        };
        let stop = watch.stop.clone();
        let out = dir.join("out");
        let mut stage = tokio::task::spawn_blocking({
            let out = out.clone();
            move || stages::execute(prepared, &out, device, stop, resume)
        });
        let mut streamed = 0u64;
        let mut heartbeat = tokio::time::interval(self.options.heartbeat);
        heartbeat.tick().await;
        let result = loop {
            tokio::select! {
                joined = &mut stage => break joined.map_err(|e| Stop::Failed(format!("the stage panicked: {e}")))?,
                _ = heartbeat.tick() => {
                    self.beat(run.id, &mut watch).await;
                    streamed = self.stream_metrics(run.id, &out, streamed).await;
                }
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        watch.released = true;
                        watch.stop.store(true, Ordering::Relaxed);
                    }
                }
            }
        };
        self.stream_metrics(run.id, &out, streamed).await;
        match result {
            Ok(output) => {
                if watch.lease_lost {
                    return Err(Stop::LeaseLost);
                }
                stages::publish(&self.pool, &self.store, run, output, &dir).await
            }
            Err(TrainError::Stopped { .. }) if watch.lease_lost => Err(Stop::LeaseLost),
            Err(TrainError::Stopped { .. }) if watch.cancelled => Err(Stop::Cancelled),
            Err(TrainError::Stopped { .. }) => Err(Stop::Released),
            Err(e) => Err(Stop::Failed(e.to_string())),
        }
    }

    /// Renews the lease; a cancel request or a lost lease stops the stage. A database
    /// error is not fatal: the next beat tries again, within the lease.
    async fn beat(&self, run_id: i64, watch: &mut Watch) {
        match runs::heartbeat(&self.pool, run_id, &self.options.name, self.options.lease).await {
            Ok(Heartbeat::Continue) => {}
            Ok(Heartbeat::CancelRequested) => {
                watch.cancelled = true;
                watch.stop.store(true, Ordering::Relaxed);
            }
            Err(RegistryError::LeaseLost { .. }) => {
                watch.lease_lost = true;
                watch.stop.store(true, Ordering::Relaxed);
            }
            Err(e) => eprintln!("worker {}: run {run_id}: heartbeat failed: {e}", self.options.name),
        }
    }

    /// Reports the metric lines the stage wrote after byte `offset` of `metrics.jsonl`
    /// and returns the offset reached: each heartbeat reads only what is new. Lines stay
    /// unreported (and are sent next time) if Postgres is away; a file shorter than the
    /// offset (a resumed run rewrote it) is read again from the start, and the steps it
    /// reports again overwrite their values.
    async fn stream_metrics(&self, run_id: i64, out: &std::path::Path, offset: u64) -> u64 {
        use tokio::io::{AsyncReadExt, AsyncSeekExt};
        let Ok(mut file) = tokio::fs::File::open(out.join(METRICS)).await else { return offset };
        let length = file.metadata().await.map(|m| m.len()).unwrap_or(0);
        let offset = if length < offset { 0 } else { offset };
        let mut new = Vec::new();
        if file.seek(std::io::SeekFrom::Start(offset)).await.is_err()
            || file.read_to_end(&mut new).await.is_err()
        {
            return offset;
        }
        let total_steps = tokio::fs::read_to_string(out.join(PROGRESS))
            .await
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v["total_steps"].as_i64());
        let mut reached = offset;
        // Only whole lines: the last one may still be being written.
        for line in new.split_inclusive(|&b| b == b'\n').take_while(|l| l.ends_with(b"\n")) {
            let next = reached + line.len() as u64;
            let Ok(serde_json::Value::Object(fields)) = serde_json::from_slice::<serde_json::Value>(line)
            else {
                reached = next;
                continue;
            };
            let step = fields.get("step").and_then(|s| s.as_i64()).unwrap_or(0);
            let metrics: Vec<Metric> = fields
                .iter()
                .filter(|(name, _)| name.as_str() != "step")
                .filter_map(|(name, value)| {
                    value.as_f64().map(|value| Metric { name: name.clone(), step, value })
                })
                .filter(|m| m.value.is_finite())
                .collect();
            // Progress counts finished steps: the line for step s means s + 1 are done.
            let finished = (step + 1).min(total_steps.unwrap_or(i64::MAX));
            if runs::report(&self.pool, run_id, &self.options.name, finished, total_steps, &metrics)
                .await
                .is_err()
            {
                break;
            }
            reached = next;
        }
        reached
    }
}

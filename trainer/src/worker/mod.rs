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
//! worker resumes and registers exactly once. Checkpoints and models are staged, recorded,
//! then promoted (`ArtifactStore::store_recorded`): a record refused because the lease
//! was lost deletes the staged copy, so no artifact is left that nothing refers to.

mod eval;
mod resolve;
pub mod spec;
mod stages;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use registry::artifacts::ArtifactStore;
use registry::error::RegistryError;
use registry::gangs::{self, GangBeat, Rendezvous};
use registry::runs::{self, ClaimedRun, Heartbeat, Metric};
use sqlx::PgPool;
use tokio::sync::watch;

pub use self::spec::{RunSpec, SpecError};
use crate::distributed::{self, Launch};
use crate::train::{latest_checkpoint_in, TrainError, CHECKPOINTS, METRICS, PROGRESS, SAMPLES};
use crate::DeviceChoice;

/// A gang run given back to the queue because it lost a rank this many times fails
/// instead: something other than a lost worker keeps its ranks from training together.
pub const MAX_GANG_ATTEMPTS: i32 = 5;

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
    /// How long to wait before asking again when the queue is empty. Each ask (and each
    /// heartbeat) records that the worker is online (`runs::WORKER_ONLINE_WITHIN`).
    pub poll: Duration,
    /// The host the other ranks of a gang run reach this worker at when it is the run's
    /// rank 0 (it serves their rendezvous): loopback unless the gang spans machines.
    pub address: String,
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
            address: "127.0.0.1".into(),
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
    /// A gang run lost a rank: which, and whose worker.
    rank_lost: Option<String>,
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
                    tracing::info!(worker = %self.options.name, run_id, ?outcome, "run ended")
                }
                Ok(None) => {
                    tokio::select! {
                        _ = tokio::time::sleep(self.options.poll) => {}
                        _ = shutdown.changed() => {}
                    }
                }
                Err(e) => {
                    tracing::warn!(
                        worker = %self.options.name,
                        error = %e,
                        retry_in = ?self.options.poll,
                        "claiming or finishing a run failed; trying again"
                    );
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
        // Idle until the next ask, with margin: until then another worker's claim may make
        // this one a rank of its gang run.
        let idle_for = self.options.poll * 3 + Duration::from_secs(1);
        let claimed =
            runs::claim_or_wait(&self.pool, &self.options.name, self.options.lease, idle_for).await?;
        let Some(run) = claimed else {
            return Ok(None);
        };
        let outcome = if run.rank > 0 {
            self.carry_out_rank(&run, shutdown).await?
        } else {
            self.carry_out(&run, shutdown).await?
        };
        Ok(Some((run.id, outcome)))
    }

    /// Trains rank `run.rank` (above 0) of a gang run that another worker holds: this
    /// worker renews only its rank's lease, and writes nothing but its log lines; rank 0
    /// reports, checkpoints and registers.
    async fn carry_out_rank(
        &self,
        run: &ClaimedRun,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Outcome, WorkerError> {
        let name = self.options.name.as_str();
        let (rank, world_size) = (run.rank, run.world_size);
        log_to_run(
            &self.pool,
            run.id,
            &[format!("{name} is rank {rank} of {world_size} (attempt {})", run.attempts)],
        )
        .await;
        let mut checkpoint = run.checkpoint_step.zip(run.checkpoint_sha256.clone());
        let result = self.attempt(run, shutdown, &mut checkpoint).await;
        if let Err(e) = gangs::leave(&self.pool, run.id, rank, run.attempts, name, result.is_ok()).await {
            tracing::warn!(worker = %name, run_id = run.id, rank, error = %e, "recording that the rank ended failed");
        }
        let outcome = match result {
            Ok(_) => Outcome::Succeeded { version_id: None },
            Err(Stop::Failed(message)) => {
                log_to_run(&self.pool, run.id, &[format!("rank {rank} ({name}) stopped: {message}")]).await;
                Outcome::Failed(message)
            }
            Err(Stop::Cancelled) => Outcome::Cancelled,
            Err(Stop::Released) => Outcome::Released,
            Err(Stop::LeaseLost) => Outcome::LeaseLost,
        };
        // The run's checkpoints are rank 0's (in the artifact store): this copy is not needed.
        if let Err(e) = tokio::fs::remove_dir_all(self.run_dir(run.id)).await {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(run_id = run.id, error = %e, "removing the rank's work directory failed");
            }
        }
        Ok(outcome)
    }

    /// Where a gang run's ranks meet: rank 0 serves the rendezvous on a free port of its
    /// address and publishes it on the run; another rank waits until it has (renewing its
    /// rank's lease meanwhile). None for a run on one worker.
    async fn gang_launch(
        &self,
        run: &ClaimedRun,
        shutdown: &watch::Receiver<bool>,
    ) -> Result<Option<Launch>, Stop> {
        if run.world_size <= 1 {
            return Ok(None);
        }
        if !::spec::inputs(run.kind).iter().any(|input| input.name == "world_size") {
            return Err(Stop::Failed(format!(
                "a {} run trains on one worker: launch it with world_size 1 (it asked for {})",
                run.kind, run.world_size
            )));
        }
        let (name, rank) = (self.options.name.as_str(), run.rank);
        let address = if rank == 0 {
            let port =
                distributed::free_port().map_err(|e| Stop::Failed(format!("finding a free port: {e}")))?;
            let address = format!("{}:{port}", self.options.address);
            gangs::publish_rendezvous(&self.pool, run.id, name, &address).await.map_err(|e| match e {
                RegistryError::LeaseLost { .. } => Stop::LeaseLost,
                e => Stop::Failed(e.to_string()),
            })?;
            log_to_run(&self.pool, run.id, &[format!("the {} ranks meet at {address}", run.world_size)])
                .await;
            address
        } else {
            loop {
                if *shutdown.borrow() {
                    return Err(Stop::Released);
                }
                match gangs::beat(&self.pool, run.id, rank, run.attempts, name, self.options.lease).await? {
                    GangBeat::Continue => {}
                    GangBeat::CancelRequested => return Err(Stop::Cancelled),
                    GangBeat::RankLost { rank, worker } => {
                        return Err(Stop::Failed(format!(
                            "rank {rank} ({worker}) was lost before the gang met"
                        )))
                    }
                    GangBeat::Over => return Err(Stop::LeaseLost),
                }
                match gangs::rendezvous(&self.pool, run.id, run.attempts).await? {
                    Rendezvous::At(address) => break address,
                    Rendezvous::Waiting => tokio::time::sleep(Duration::from_millis(250)).await,
                    Rendezvous::Over => return Err(Stop::LeaseLost),
                }
            }
        };
        let (host, port) = address
            .rsplit_once(':')
            .and_then(|(host, port)| Some((host.to_owned(), port.parse().ok()?)))
            .ok_or_else(|| Stop::Failed(format!("the run's rendezvous {address:?} is not host:port")))?;
        Ok(Some(Launch {
            rank: rank as usize,
            world_size: run.world_size as usize,
            local_rank: 0,
            master_addr: host,
            master_port: port,
        }))
    }

    async fn carry_out(
        &self,
        run: &ClaimedRun,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Outcome, WorkerError> {
        let name = self.options.name.as_str();
        let note = if run.resume { format!(", resuming from step {}", run.step) } else { String::new() };
        log_to_run(&self.pool, run.id, &[format!("{name} claimed the run (attempt {}{note})", run.attempts)])
            .await;
        let mut checkpoint = run.checkpoint_step.zip(run.checkpoint_sha256.clone());
        let result = self.attempt(run, shutdown, &mut checkpoint).await;
        let (pool, lease) = (&self.pool, self.options.lease);
        let outcome = match result {
            Ok(version_id) => {
                while_postgres_is_away(lease, || runs::finish(pool, run.id, name)).await?;
                Outcome::Succeeded { version_id }
            }
            Err(Stop::Failed(message)) => {
                let message = explain(message, &self.options.work_dir);
                log_to_run(pool, run.id, &[format!("failed: {message}")]).await;
                while_postgres_is_away(lease, || runs::fail(pool, run.id, name, &message)).await?;
                Outcome::Failed(message)
            }
            Err(Stop::Cancelled) => {
                while_postgres_is_away(lease, || runs::finish_cancelled(pool, run.id, name)).await?;
                Outcome::Cancelled
            }
            Err(Stop::Released) => {
                log_to_run(pool, run.id, &[format!("{name} is shutting down: released the run")]).await;
                while_postgres_is_away(lease, || runs::release(pool, run.id, name)).await?;
                Outcome::Released
            }
            Err(Stop::LeaseLost) => Outcome::LeaseLost,
        };
        if matches!(outcome, Outcome::Succeeded { .. } | Outcome::Failed(_) | Outcome::Cancelled) {
            // A finished run is never resumed: its work directory and its checkpoint in
            // the store are of no more use.
            let dir = self.run_dir(run.id);
            if let Err(e) = tokio::fs::remove_dir_all(&dir).await {
                if e.kind() != std::io::ErrorKind::NotFound {
                    let (run_id, dir) = (run.id, dir.display());
                    tracing::warn!(run_id, %dir, error = %e, "removing the run's work directory failed");
                }
            }
            if let Some((_, sha256)) = checkpoint {
                self.remove_artifact(run.id, sha256).await;
            }
        }
        Ok(outcome)
    }

    fn run_dir(&self, run_id: i64) -> PathBuf {
        self.options.work_dir.join(format!("run-{run_id}"))
    }

    /// The run from its config to its registered version. `checkpoint` is the run's
    /// newest checkpoint in the artifact store (steps, digest), kept up to date as the
    /// stage writes new ones.
    async fn attempt(
        &self,
        run: &ClaimedRun,
        mut shutdown: watch::Receiver<bool>,
        checkpoint: &mut Option<(i64, String)>,
    ) -> Result<Option<i64>, Stop> {
        let spec = spec::parse(run.kind, &run.config)?;
        let dir = self.run_dir(run.id);
        tokio::fs::create_dir_all(&dir).await.map_err(|e| Stop::Failed(format!("{}: {e}", dir.display())))?;
        // Rank 0 prepares first (freezing any snapshot the run names none of), then opens
        // the rendezvous; the other ranks prepare once it is open, so they read the same.
        let leader = run.rank == 0;
        let launch = if leader { None } else { self.gang_launch(run, &shutdown).await? };
        if run.world_size > 1 {
            // Every rank resumes from the one checkpoint the run records, never from a newer
            // one of its own: ranks that stood at different steps could not train together.
            let out = dir.join("out");
            if let Err(e) = tokio::fs::remove_dir_all(&out).await {
                if e.kind() != std::io::ErrorKind::NotFound {
                    return Err(Stop::Failed(format!("{}: {e}", out.display())));
                }
            }
        }
        self.restore_checkpoint(run, &dir.join("out"), checkpoint.as_ref()).await?;
        let resume =
            dir.join("out").join(METRICS).exists() || latest_checkpoint_in(&dir.join("out")).is_some();
        let prepared = stages::prepare(&self.pool, &self.store, run, &spec, &dir).await?;
        let device = self.options.device.resolve().map_err(Stop::Failed)?;
        let launch = if leader { self.gang_launch(run, &shutdown).await? } else { launch };

        let mut watch = Watch {
            stop: Arc::new(AtomicBool::new(false)),
            cancelled: false,
            released: false,
            lease_lost: false,
            rank_lost: None,
        };
        let stop = watch.stop.clone();
        let out = dir.join("out");
        let mut stage = tokio::task::spawn_blocking({
            let out = out.clone();
            move || {
                // The group is left when the stage returns, whatever it returns.
                let _group = match &launch {
                    Some(launch) => Some(distributed::join_for_run(launch, distributed::TIMEOUT)?),
                    None => None,
                };
                stages::execute(prepared, &out, device, stop, resume)
            }
        });
        let mut streamed = Streamed { offset: 0, finished: checkpoint.as_ref().map_or(0, |(step, _)| *step) };
        let mut samples_read = 0u64;
        let mut heartbeat = tokio::time::interval(self.options.heartbeat);
        heartbeat.tick().await;
        let result = loop {
            tokio::select! {
                joined = &mut stage => break joined.map_err(|e| Stop::Failed(format!("the stage panicked: {e}")))?,
                _ = heartbeat.tick() => {
                    if run.world_size > 1 {
                        self.gang_beat(run, &mut watch).await;
                    }
                    if !leader {
                        continue;
                    }
                    self.beat(run.id, &mut watch).await;
                    // The newest checkpoint is looked at before the metrics are streamed:
                    // its steps' lines were written before it, so they are reported first,
                    // and a run resumed from it misses none.
                    let newest = latest_checkpoint_in(&out);
                    self.stream_metrics(run.id, &out, &mut streamed).await;
                    self.stream_samples(run.id, &out, &mut samples_read).await;
                    if !watch.lease_lost {
                        self.store_checkpoint(run.id, newest, streamed.finished, checkpoint).await;
                    }
                }
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        watch.released = true;
                        watch.stop.store(true, Ordering::Relaxed);
                    }
                }
            }
        };
        if !leader {
            return match result {
                Ok(_) => Ok(None),
                Err(_) if watch.lease_lost => Err(Stop::LeaseLost),
                Err(_) if watch.cancelled => Err(Stop::Cancelled),
                Err(TrainError::Stopped { .. }) if watch.released => Err(Stop::Released),
                Err(e) => Err(Stop::Failed(match watch.rank_lost {
                    Some(lost) => format!("{lost}, so this rank stopped too ({e})"),
                    None => e.to_string(),
                })),
            };
        }
        let newest = latest_checkpoint_in(&out);
        self.report_remaining_metrics(run.id, &out, &mut streamed).await;
        self.stream_samples(run.id, &out, &mut samples_read).await;
        let gang_broke = |e: &TrainError| {
            run.world_size > 1
                && (watch.rank_lost.is_some()
                    || matches!(e, TrainError::Distributed(_) | TrainError::Stopped { .. }))
        };
        match result {
            Ok(output) => {
                if watch.lease_lost {
                    return Err(Stop::LeaseLost);
                }
                if run.world_size > 1 {
                    let name = &self.options.name;
                    if let Err(e) = gangs::leave(&self.pool, run.id, 0, run.attempts, name, true).await {
                        tracing::warn!(run_id = run.id, error = %e, "recording that rank 0 ended failed");
                    }
                }
                stages::publish(&self.pool, &self.store, run, output, &dir, self.options.lease).await
            }
            Err(_) if watch.lease_lost => Err(Stop::LeaseLost),
            Err(_) if watch.cancelled && run.world_size > 1 => Err(Stop::Cancelled),
            Err(e) if !watch.released && gang_broke(&e) => {
                // A rank's worker went away (or failed): the gang cannot go on. The run goes
                // back to the queue from its last checkpoint, for the next gang to resume.
                self.store_checkpoint(run.id, newest, streamed.finished, checkpoint).await;
                let lost = watch.rank_lost.clone().unwrap_or_else(|| format!("a rank went away ({e})"));
                if run.attempts >= MAX_GANG_ATTEMPTS {
                    return Err(Stop::Failed(format!(
                        "{lost}; the gang broke on each of {} attempts, so the run stops here. Check that \
                         the workers reach each other at their --address",
                        run.attempts
                    )));
                }
                log_to_run(
                    &self.pool,
                    run.id,
                    &[format!(
                        "{lost}: the run goes back to the queue and resumes from its last stored checkpoint"
                    )],
                )
                .await;
                let name = self.options.name.as_str();
                while_postgres_is_away(self.options.lease, || runs::release(&self.pool, run.id, name))
                    .await?;
                Err(Stop::Released)
            }
            Err(TrainError::Stopped { .. }) if watch.cancelled => Err(Stop::Cancelled),
            Err(TrainError::Stopped { .. }) => {
                // The stage checkpointed the step it stopped at: it goes to the store before
                // the run is released, so that whoever claims it next starts from there.
                self.store_checkpoint(run.id, newest, streamed.finished, checkpoint).await;
                Err(Stop::Released)
            }
            Err(TrainError::NonFinite { step, what, value, .. }) => Err(Stop::Failed(format!(
                "step {step}: {what} is {value}, so training stopped: the run diverged. Launch it again \
                 with a lower stage.lr (or more stage.warmup_steps, or a smaller stage.grad_clip)"
            ))),
            Err(e) => Err(Stop::Failed(e.to_string())),
        }
    }

    /// Puts the run's checkpoint from the artifact store into `out/checkpoints/` when it is
    /// newer than any this machine has (the run was last on another worker), so that the
    /// stage resumes from it.
    async fn restore_checkpoint(
        &self,
        run: &ClaimedRun,
        out: &Path,
        checkpoint: Option<&(i64, String)>,
    ) -> Result<(), Stop> {
        let Some((step, sha256)) = checkpoint.cloned() else { return Ok(()) };
        if latest_checkpoint_in(out).is_some_and(|(_, local)| local >= step) {
            return Ok(());
        }
        let dest = out.join(CHECKPOINTS).join(format!("step-{step:08}"));
        let store = self.store.clone();
        let fetched = {
            let dest = dest.clone();
            let sha256 = sha256.clone();
            tokio::task::spawn_blocking(move || {
                if dest.exists() {
                    std::fs::remove_dir_all(&dest)?;
                }
                store.fetch_to(&sha256, &dest).map_err(std::io::Error::other)
            })
            .await
            .map_err(|e| Stop::Failed(e.to_string()))?
        };
        fetched.map_err(|e| {
            Stop::Failed(format!(
                "the run's checkpoint at step {step} (sha256 {sha256}) could not be restored: {e}"
            ))
        })?;
        log_to_run(
            &self.pool,
            run.id,
            &[format!("restored the checkpoint at step {step} from the artifact store")],
        )
        .await;
        Ok(())
    }

    /// Stores the checkpoint `newest` (its directory, its step) in the artifact store when
    /// it is newer than the one the run records and its steps' metrics are reported
    /// (`reported` steps are), records it, and deletes the one it replaces. The directory
    /// holds all a resumed run needs, the best model so far included (see
    /// [`crate::train::RunDir::save_checkpoint`]). A failure is
    /// not fatal (the checkpoint may have been pruned meanwhile, or Postgres be away):
    /// the next heartbeat tries again with whatever is newest then.
    async fn store_checkpoint(
        &self,
        run_id: i64,
        newest: Option<(PathBuf, i64)>,
        reported: i64,
        checkpoint: &mut Option<(i64, String)>,
    ) {
        let Some((path, step)) = newest else { return };
        if step > reported || checkpoint.as_ref().is_some_and(|(stored, _)| *stored >= step) {
            return;
        }
        let (pool, name) = (&self.pool, self.options.name.as_str());
        // Recorded before it is promoted: a lease lost meanwhile leaves nothing in the store.
        let recorded = self
            .store
            .store_recorded(path, |artifact| async move {
                let replaced = runs::record_checkpoint(pool, run_id, name, step, &artifact.sha256).await?;
                Ok(((artifact.sha256, replaced), true))
            })
            .await;
        match recorded {
            Ok((sha256, replaced)) => {
                *checkpoint = Some((step, sha256));
                if let Some(old) = replaced {
                    self.remove_artifact(run_id, old).await;
                }
            }
            Err(e) => tracing::warn!(
                worker = %name,
                run_id,
                step,
                error = %e,
                "storing or recording the checkpoint failed; the next heartbeat tries again"
            ),
        }
    }

    /// Deletes a checkpoint of the run from the artifact store: one it no longer needs, so
    /// a failure costs only space, and is said in the worker's log.
    async fn remove_artifact(&self, run_id: i64, sha256: String) {
        let store = self.store.clone();
        let removed = {
            let sha256 = sha256.clone();
            tokio::task::spawn_blocking(move || store.remove(&sha256)).await
        };
        if let Err(error) = flatten(removed) {
            tracing::warn!(run_id, sha256, error, "deleting a checkpoint the run no longer needs failed");
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
            Err(e) => tracing::warn!(
                worker = %self.options.name,
                run_id,
                error = %e,
                "the heartbeat failed; the next one tries again within the lease"
            ),
        }
    }

    /// Renews this worker's rank of a gang run; a lost rank, a cancel request or a run
    /// that is no longer this attempt's stops the stage. A database error is not fatal.
    async fn gang_beat(&self, run: &ClaimedRun, watch: &mut Watch) {
        let name = self.options.name.as_str();
        match gangs::beat(&self.pool, run.id, run.rank, run.attempts, name, self.options.lease).await {
            Ok(GangBeat::Continue) => return,
            Ok(GangBeat::CancelRequested) => watch.cancelled = true,
            Ok(GangBeat::RankLost { rank, worker }) => {
                watch.rank_lost = Some(format!("rank {rank} ({worker}) was lost"));
            }
            Ok(GangBeat::Over) if run.rank > 0 => watch.lease_lost = true,
            // Rank 0's own heartbeat says whether it still holds the run.
            Ok(GangBeat::Over) => return,
            Err(e) => {
                tracing::warn!(worker = %name, run_id = run.id, error = %e, "the rank's heartbeat failed");
                return;
            }
        }
        watch.stop.store(true, Ordering::Relaxed);
    }

    /// Puts the samples an RL stage wrote after `read` bytes of `samples.jsonl` in the run's
    /// log, one line each ("step 3 · reward 0.41 · prompt → response", long texts cut),
    /// and moves `read` past them.
    async fn stream_samples(&self, run_id: i64, out: &Path, read: &mut u64) {
        use tokio::io::{AsyncReadExt, AsyncSeekExt};
        let Ok(mut file) = tokio::fs::File::open(out.join(SAMPLES)).await else { return };
        let mut new = Vec::new();
        if file.seek(std::io::SeekFrom::Start(*read)).await.is_err()
            || file.read_to_end(&mut new).await.is_err()
        {
            return;
        }
        let cut = |text: &str| {
            let line = text.replace('\n', " ⏎ ");
            match line.char_indices().nth(160) {
                Some((at, _)) => format!("{}…", &line[..at]),
                None => line,
            }
        };
        let mut lines = Vec::new();
        for line in new.split_inclusive(|&b| b == b'\n').take_while(|l| l.ends_with(b"\n")) {
            *read += line.len() as u64;
            let Ok(sample) = serde_json::from_slice::<serde_json::Value>(line) else { continue };
            lines.push(format!(
                "step {} · reward {} · {} → {}",
                sample["step"],
                sample["reward"].as_f64().map_or("?".into(), |r| format!("{r:.3}")),
                cut(sample["prompt"].as_str().unwrap_or_default()),
                cut(sample["response"].as_str().unwrap_or_default()),
            ));
        }
        if !lines.is_empty() {
            log_to_run(&self.pool, run_id, &lines).await;
        }
    }

    /// The metric lines still unreported when the stage has ended, reported even when
    /// Postgres is away at that moment: tried again each heartbeat for up to a lease, as
    /// publishing the version waits, so that a run that finished during an outage loses
    /// none of its steps' metrics.
    async fn report_remaining_metrics(&self, run_id: i64, out: &Path, streamed: &mut Streamed) {
        let deadline = tokio::time::Instant::now() + self.options.lease;
        while !self.stream_metrics(run_id, out, streamed).await && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(self.options.heartbeat).await;
        }
    }

    /// Reports the metric lines the stage wrote after `streamed.offset` bytes of
    /// `metrics.jsonl` and moves the offset past them: each heartbeat reads only what is
    /// new. Lines stay unreported (and are sent next time) if Postgres is away; a file
    /// shorter than the offset (a resumed run rewrote it) is read again from the start,
    /// and the steps it reports again overwrite their values. Returns whether every whole
    /// line written so far is reported (true without a metrics file).
    async fn stream_metrics(&self, run_id: i64, out: &Path, streamed: &mut Streamed) -> bool {
        use tokio::io::{AsyncReadExt, AsyncSeekExt};
        let Ok(mut file) = tokio::fs::File::open(out.join(METRICS)).await else { return true };
        let length = file.metadata().await.map(|m| m.len()).unwrap_or(0);
        if length < streamed.offset {
            streamed.offset = 0;
        }
        let mut new = Vec::new();
        if file.seek(std::io::SeekFrom::Start(streamed.offset)).await.is_err()
            || file.read_to_end(&mut new).await.is_err()
        {
            return false;
        }
        let total_steps = tokio::fs::read_to_string(out.join(PROGRESS))
            .await
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v["total_steps"].as_i64());
        // Only whole lines: the last one may still be being written.
        for line in new.split_inclusive(|&b| b == b'\n').take_while(|l| l.ends_with(b"\n")) {
            let next = streamed.offset + line.len() as u64;
            let Ok(serde_json::Value::Object(fields)) = serde_json::from_slice::<serde_json::Value>(line)
            else {
                streamed.offset = next;
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
                return false;
            }
            streamed.offset = next;
            streamed.finished = streamed.finished.max(finished);
        }
        true
    }
}

/// How far a run's `metrics.jsonl` has been reported: its bytes, and the steps finished.
struct Streamed {
    offset: u64,
    finished: i64,
}

/// A blocking task's result, its panic said as an error like its own errors.
fn flatten<T, E: std::fmt::Display>(
    joined: Result<Result<T, E>, tokio::task::JoinError>,
) -> Result<T, String> {
    match joined {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// Appends `lines` to the run's log (the run page shows it). The run goes on when the
/// write fails: the log is for people, so the failure is said in the worker's own log.
pub(crate) async fn log_to_run(pool: &PgPool, run_id: i64, lines: &[String]) {
    if let Err(e) = runs::log(pool, run_id, lines).await {
        tracing::warn!(run_id, error = %e, ?lines, "writing the run's log failed");
    }
}

/// Runs `write` again while it fails because Postgres cannot be reached (a restart, a
/// network blip), for up to `patience`; any other outcome is returned as it is. The pool
/// opens new connections by itself once the server is back.
pub(crate) async fn while_postgres_is_away<T, E, F, Fut>(patience: Duration, mut write: F) -> Result<T, E>
where
    E: SqlCause,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        match write().await {
            Err(e) if e.sql().is_some_and(is_unreachable) && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            other => return other,
        }
    }
}

/// The database error underneath a registry or labeling error, if that is what it is.
pub(crate) trait SqlCause {
    fn sql(&self) -> Option<&sqlx::Error>;
}

impl SqlCause for RegistryError {
    fn sql(&self) -> Option<&sqlx::Error> {
        match self {
            RegistryError::Database(e) => Some(e),
            _ => None,
        }
    }
}

impl SqlCause for labeling::error::LabelingError {
    fn sql(&self) -> Option<&sqlx::Error> {
        match self {
            labeling::error::LabelingError::Sql(e) => Some(e),
            _ => None,
        }
    }
}

/// Whether the error means the server was not there (rather than that it refused the
/// statement).
fn is_unreachable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Protocol(_) => true,
        // 08: connection exceptions; 57P: the server is shutting down or starting.
        sqlx::Error::Database(db) => {
            db.code().is_some_and(|code| code.starts_with("08") || code.starts_with("57P"))
        }
        _ => false,
    }
}

/// A failure's message, with what to do about it when the cause is a full disk (the
/// worker's or the artifact store's).
fn explain(message: String, work_dir: &Path) -> String {
    if message.contains("No space left on device") || message.contains("os error 28") {
        format!(
            "{message}. The disk is full: free space on the worker's disk (its runs are in {}) or in \
             the artifact store, then launch the run again",
            work_dir.display()
        )
    } else {
        message
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_is_said_so_with_where_to_free_space() {
        let full = std::io::Error::from_raw_os_error(28);
        let message = explain(format!("/w/run-3/out/model.safetensors: {full}"), Path::new("/w"));
        assert!(message.starts_with("/w/run-3/out/model.safetensors: No space left on device"), "{message}");
        assert!(message.contains("The disk is full: free space on the worker's disk (its runs are in /w)"));
        assert_eq!(explain("snapshot 3 is empty".into(), Path::new("/w")), "snapshot 3 is empty");
    }
}

//! What every training stage shares: AdamW, the learning-rate schedule, gradient
//! clipping, the output directory (checkpoints, `metrics.jsonl`, resume), progress on a
//! terminal, and the guard that stops a run at the first NaN or infinite loss.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tch::{nn, Device, Kind, Tensor};

use crate::model::fused;

use crate::checkpoint::{CheckpointError, LanguageModel};
use crate::data::DataError;
use crate::sampling::SamplingError;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// Stage settings outside the run contract, every problem named.
    #[error(transparent)]
    Settings(#[from] spec::Problems),
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Sampling(#[from] SamplingError),
    #[error(transparent)]
    RewardProgram(#[from] crate::reward_program::RewardProgramError),
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("step {step}: {what} is {value}; training stopped. {}", match last_good {
        Some(p) => format!("The last good checkpoint is {}; resume from it with --resume, perhaps with a lower --lr.", p.display()),
        None => "No checkpoint was written before it; try a lower --lr.".to_string(),
    })]
    NonFinite { step: i64, what: String, value: f64, last_good: Option<PathBuf> },
    #[error("{0}")]
    Torch(#[from] tch::TchError),
    #[error(transparent)]
    Distributed(#[from] crate::distributed::DistributedError),
    /// The run was asked to stop (cancelled, or its worker is shutting down).
    #[error("stopped at step {step}")]
    Stopped { step: i64 },
    /// An RL policy drifted further from its reference than the stage's `max_kl` allows:
    /// it is most likely exploiting the reward model's errors.
    #[error("step {step}: the KL to the reference reached {kl:.2} nats per sample, above {stage}.max_kl = {bound}: the policy is drifting into what the reward model over-rates. Lower the lr, raise kl_coef or set kl_target, or raise max_kl if this drift is wanted.{}", match last_good {
        Some(p) => format!(" The last checkpoint before it is {}.", p.display()),
        None => String::new(),
    })]
    KlBound { step: i64, stage: &'static str, kl: f64, bound: f64, last_good: Option<PathBuf> },
    /// An RL run's mean reward rose in one step by more than the stage's `max_reward_jump`
    /// allows: a jump, rather than a climb, is most likely a reward being hacked.
    #[error("step {step}: the mean reward jumped from {from:.3} to {to:.3}, {rise:.1} standard deviations of the run's first rewards in one step, above {stage}.max_reward_jump = {bound}: the policy has most likely found a flaw in the reward rather than learned the task. Read the step's sample in samples.jsonl; fix the reward model or program, or lower the lr, or raise max_reward_jump (or set it empty) if the jump is genuine.{}", match last_good {
        Some(p) => format!(" The last checkpoint before it is {}.", p.display()),
        None => String::new(),
    })]
    RewardJump {
        step: i64,
        stage: &'static str,
        from: f64,
        to: f64,
        rise: f64,
        bound: f64,
        last_good: Option<PathBuf>,
    },
}

pub fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io { path: path.to_path_buf(), source }
}

/// Reads a stage's TOML config; absent fields keep their defaults, unknown ones are errors.
pub fn load_config<C: DeserializeOwned>(path: &Path) -> Result<C, TrainError> {
    let text = std::fs::read_to_string(path).map_err(io_error(path))?;
    toml::from_str(&text).map_err(|e| TrainError::Config(format!("{}: {e}", path.display())))
}

/// A run's optimizer steps: `steps` when set, else `epochs` passes over `examples` taken
/// `per_step` to a step (the last step of a pass may take fewer).
pub fn total_steps(steps: Option<i64>, epochs: i64, examples: usize, per_step: usize) -> i64 {
    steps.unwrap_or(epochs * examples.div_ceil(per_step) as i64)
}

/// Warmup then cosine decay: the learning rate at `step` (0-based) of `total`, rising
/// linearly to `peak` over `warmup` steps, then falling to `peak · final_ratio`.
pub fn lr_at(step: i64, total: i64, warmup: i64, peak: f64, final_ratio: f64) -> f64 {
    if step < warmup {
        return peak * (step + 1) as f64 / warmup as f64;
    }
    let progress = (step - warmup) as f64 / (total - warmup).max(1) as f64;
    let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress.min(1.0)).cos());
    peak * (final_ratio + (1.0 - final_ratio) * cosine)
}

/// AdamW with decoupled weight decay (Loshchilov & Hutter), as `torch.optim.AdamW`.
///
/// plumb's own rather than tch's because its moments must be saved with checkpoints for
/// `--resume` to continue exactly where a run stopped. As in nanoGPT, weight decay
/// applies to parameters of two or more dimensions (matrices, embeddings), not to biases
/// and layer norms. Each update runs ATen's fused kernel (`torch.optim.AdamW(fused=True)`,
/// [`fused::adamw`]) where the build has it and the device takes it, and otherwise the
/// same arithmetic in tch's tensor ops.
pub struct AdamW {
    params: Vec<(String, Tensor)>,
    exp_avg: Vec<Tensor>,
    exp_avg_sq: Vec<Tensor>,
    /// ATen's step count of each parameter, for the fused kernel (scalars on its device).
    fused_steps: Vec<Tensor>,
    /// Whether updates go through the fused kernel: until it first refuses.
    fused: bool,
    /// Updates taken so far (Adam's t).
    pub steps: i64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl AdamW {
    /// Optimises every trainable variable of `vs`.
    pub fn new(vs: &nn::VarStore, beta1: f64, beta2: f64, eps: f64, weight_decay: f64) -> Self {
        let mut params: Vec<(String, Tensor)> =
            vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).collect();
        params.sort_by(|a, b| a.0.cmp(&b.0));
        let zeros = |p: &Vec<(String, Tensor)>| p.iter().map(|(_, t)| t.zeros_like()).collect();
        let fused_steps = params.iter().map(|(_, t)| Tensor::zeros([], (Kind::Float, t.device()))).collect();
        AdamW {
            exp_avg: zeros(&params),
            exp_avg_sq: zeros(&params),
            fused_steps,
            fused: fused::FUSED_ADAMW,
            params,
            steps: 0,
            beta1,
            beta2,
            eps,
            weight_decay,
        }
    }

    pub fn zero_grad(&mut self) {
        for (_, p) in &mut self.params {
            p.zero_grad();
        }
    }

    /// Scales gradients so their global L2 norm is at most `max_norm`; returns the norm
    /// before clipping.
    pub fn clip_grad_norm(&self, max_norm: f64) -> f64 {
        let _guard = tch::no_grad_guard();
        let grads: Vec<Tensor> = self.params.iter().map(|(_, p)| p.grad()).filter(Tensor::defined).collect();
        if grads.is_empty() {
            return 0.0;
        }
        let norms: Vec<Tensor> = grads.iter().map(|g| g.norm().to_kind(Kind::Float)).collect();
        let total = Tensor::stack(&norms, 0).norm().double_value(&[]);
        if total.is_finite() && total > max_norm {
            let scale = max_norm / (total + 1e-6);
            for mut g in grads {
                let _ = g.g_mul_scalar_(scale);
            }
        }
        total
    }

    /// One update at learning rate `lr`.
    pub fn step(&mut self, lr: f64) {
        let _guard = tch::no_grad_guard();
        self.steps += 1;
        if self.fused {
            match self.fused_step(lr) {
                Ok(()) => return,
                Err(message) => {
                    // Nothing was updated: the same step goes through the tensor ops, as
                    // every later one does.
                    eprintln!("plumb: the fused AdamW refused this model ({message}); updating without it");
                    self.fused = false;
                }
            }
        }
        self.unfused_step(lr);
    }

    /// The update through ATen's fused kernel, one call per group of parameters that
    /// share a device, a dtype and whether they decay. Every group is checked before any
    /// is updated, so a refusal changes nothing.
    fn fused_step(&mut self, lr: f64) -> Result<(), String> {
        let mut groups: Vec<((Device, Kind, bool), Vec<usize>)> = Vec::new();
        for (i, (_, p)) in self.params.iter().enumerate() {
            if !p.grad().defined() {
                continue;
            }
            let key = (p.device(), p.kind(), self.weight_decay > 0.0 && p.dim() >= 2);
            match groups.iter_mut().find(|(k, _)| *k == key) {
                Some((_, members)) => members.push(i),
                None => groups.push((key, vec![i])),
            }
        }
        let takes = |d: &Device, k: &Kind| {
            matches!(d, Device::Cpu | Device::Cuda(_))
                && matches!(k, Kind::Float | Kind::Double | Kind::Half | Kind::BFloat16)
        };
        if let Some(((device, kind, _), _)) = groups.iter().find(|((d, k, _), _)| !takes(d, k)) {
            return Err(format!("parameters in {kind:?} on {device:?}"));
        }
        for ((_, _, decays), members) in groups {
            let pick =
                |tensors: &[Tensor]| members.iter().map(|&i| tensors[i].shallow_clone()).collect::<Vec<_>>();
            let params: Vec<Tensor> = members.iter().map(|&i| self.params[i].1.shallow_clone()).collect();
            let grads: Vec<Tensor> = params.iter().map(Tensor::grad).collect();
            let group = fused::AdamWGroup {
                params: &params,
                grads: &grads,
                exp_avgs: &pick(&self.exp_avg),
                exp_avg_sqs: &pick(&self.exp_avg_sq),
                steps: &pick(&self.fused_steps),
            };
            let update = fused::AdamWUpdate {
                step: self.steps,
                lr,
                beta1: self.beta1,
                beta2: self.beta2,
                weight_decay: if decays { self.weight_decay } else { 0.0 },
                eps: self.eps,
            };
            fused::adamw(&group, &update)?;
        }
        Ok(())
    }

    /// The update through tch's tensor ops: a pass and a temporary per operation.
    fn unfused_step(&mut self, lr: f64) {
        let t = self.steps as i32;
        let bias1 = 1.0 - self.beta1.powi(t);
        let bias2 = 1.0 - self.beta2.powi(t);
        for (i, (_, p)) in self.params.iter_mut().enumerate() {
            let g = p.grad();
            if !g.defined() {
                continue;
            }
            if self.weight_decay > 0.0 && p.dim() >= 2 {
                let _ = p.g_mul_scalar_(1.0 - lr * self.weight_decay);
            }
            let _ = self.exp_avg[i].lerp_(&g, 1.0 - self.beta1);
            let _ = self.exp_avg_sq[i].g_mul_scalar_(self.beta2);
            let _ = self.exp_avg_sq[i].addcmul_(&(&g * (1.0 - self.beta2)), &g);
            let denom = (&self.exp_avg_sq[i] / bias2).sqrt() + self.eps;
            let _ = p.addcdiv_(&(&self.exp_avg[i] * (-lr / bias1)), &denom);
        }
    }

    /// The update count and the moments as named CPU tensors, for a checkpoint.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut state = Vec::with_capacity(2 * self.params.len() + 1);
        state.push((STEPS.to_string(), Tensor::from_slice(&[self.steps])));
        for (i, (name, _)) in self.params.iter().enumerate() {
            state.push((format!("exp_avg.{name}"), self.exp_avg[i].to_device(Device::Cpu)));
            state.push((format!("exp_avg_sq.{name}"), self.exp_avg_sq[i].to_device(Device::Cpu)));
        }
        state
    }

    /// Restores the update count and the moments written by `state`.
    pub fn load_state(&mut self, path: &Path) -> Result<(), TrainError> {
        let tensors: std::collections::HashMap<String, Tensor> =
            Tensor::read_safetensors(path)?.into_iter().collect();
        let lacks =
            |key: &str| TrainError::Config(format!("{}: optimizer state lacks `{key}`", path.display()));
        let steps = tensors.get(STEPS).ok_or_else(|| lacks(STEPS))?.int64_value(&[0]);
        let _guard = tch::no_grad_guard();
        for (i, (name, _)) in self.params.iter().enumerate() {
            for (prefix, moment) in
                [("exp_avg", &mut self.exp_avg[i]), ("exp_avg_sq", &mut self.exp_avg_sq[i])]
            {
                let key = format!("{prefix}.{name}");
                let saved = tensors.get(&key).ok_or_else(|| lacks(&key))?;
                moment.f_copy_(saved)?;
            }
        }
        self.steps = steps;
        Ok(())
    }
}

/// Seeds libtorch's generator (dropout) from the run's seed and the step, so that a
/// resumed run draws the same dropout masks as an uninterrupted one.
pub fn seed_step(seed: u64, step: i64) {
    tch::manual_seed((seed.wrapping_mul(1_000_003) as i64).wrapping_add(step));
}

/// Raises `NonFinite` when a loss is NaN or infinite.
pub fn ensure_finite(step: i64, what: &str, value: f64, run: &RunDir) -> Result<(), TrainError> {
    if value.is_finite() {
        Ok(())
    } else {
        Err(TrainError::NonFinite {
            step,
            what: what.into(),
            value,
            last_good: run.latest_checkpoint().map(|(p, _)| p),
        })
    }
}

/// The optimizer state's update count (Adam's t).
const STEPS: &str = "steps";

pub const CHECKPOINTS: &str = "checkpoints";
pub const METRICS: &str = "metrics.jsonl";
/// One sample per RL step, `{"step", "prompt", "response", "reward"}`: what the policy
/// writes as it trains, so that a person sees a hack as it starts (the worker puts each
/// in the run's log).
pub const SAMPLES: &str = "samples.jsonl";
/// `{"total_steps": N}`, written when a stage knows its length.
pub const PROGRESS: &str = "progress.json";
const OPTIMIZER_FILE: &str = "optimizer.safetensors";
/// The best model so far by validation (`checkpoints/best`, and `best/` in each
/// checkpoint), for stages that keep the best weights rather than the last.
const BEST: &str = "best";

/// A run's output directory: the final model itself, with `metrics.jsonl` and
/// `checkpoints/step-N/` inside it (and `checkpoints/best/` for a stage that keeps its
/// best model).
pub struct RunDir {
    out: PathBuf,
    metrics: BufWriter<File>,
    /// Checkpoints kept on disk; older ones are deleted.
    keep: usize,
    /// Set from another thread (a worker's heartbeat) to stop the run at its next logged
    /// step.
    stop: Option<Arc<AtomicBool>>,
    /// Whether this process writes the run's files: rank 0 of a data-parallel job (the
    /// other ranks train the same weights and only read), or a process training alone.
    writes: bool,
}

/// A run directory in a fresh temporary folder, for tests; the folder goes with the
/// `TempDir`.
#[cfg(test)]
pub(crate) fn temp_run() -> (tempfile::TempDir, RunDir) {
    let dir = tempfile::tempdir().unwrap();
    let run = RunDir::open(dir.path(), false).unwrap();
    (dir, run)
}

impl RunDir {
    /// Opens `out` for a new run, or to continue one when `resume` is set. A directory
    /// that already holds a run is not overwritten without `resume`.
    pub fn open(out: &Path, resume: bool) -> Result<Self, TrainError> {
        // In a data-parallel job rank 0 alone decides whether `out` holds a run, before
        // any other rank touches it (the others wait at a barrier until it has).
        let group = crate::distributed::current();
        let writes = group.is_none_or(crate::distributed::ProcessGroup::is_leader);
        if let Some(group) = group.filter(|_| !writes) {
            group.barrier()?;
        }
        std::fs::create_dir_all(out.join(CHECKPOINTS)).map_err(io_error(out))?;
        let metrics_path = out.join(METRICS);
        let has_run = metrics_path.exists() || list_checkpoints(out).next().is_some();
        if has_run && !resume && writes {
            return Err(TrainError::Config(format!(
                "{} already holds a run; pass --resume to continue it, or choose another --out",
                out.display()
            )));
        }
        let metrics = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&metrics_path)
            .map_err(io_error(&metrics_path))?;
        if let Some(group) = group.filter(|_| writes) {
            group.barrier()?;
        }
        Ok(RunDir { out: out.to_path_buf(), metrics: BufWriter::new(metrics), keep: 2, stop: None, writes })
    }

    /// Makes the run stop with [`TrainError::Stopped`] at the first step finished after
    /// `stop` is set: the stage logs that step, checkpoints it ([`RunDir::checkpoint_due`])
    /// and then stops ([`RunDir::stop_if_requested`]).
    pub fn stop_when(mut self, stop: Arc<AtomicBool>) -> Self {
        self.stop = Some(stop);
        self
    }

    /// Records the run's total steps in `progress.json`, for whoever watches it (a
    /// worker reporting progress).
    pub fn set_total_steps(&self, total_steps: i64) -> Result<(), TrainError> {
        if !self.writes {
            return Ok(());
        }
        let path = self.out.join(PROGRESS);
        std::fs::write(&path, serde_json::json!({ "total_steps": total_steps }).to_string())
            .map_err(io_error(&path))
    }

    pub fn path(&self) -> &Path {
        &self.out
    }

    /// Appends one line `{"step": N, name: value, ...}` to `metrics.jsonl`.
    pub fn log(&mut self, step: i64, metrics: &[(&str, f64)]) -> Result<(), TrainError> {
        if !self.writes {
            return Ok(());
        }
        let mut line = serde_json::Map::new();
        line.insert("step".into(), step.into());
        for (name, value) in metrics {
            line.insert(
                (*name).into(),
                serde_json::Number::from_f64(*value).map_or(serde_json::Value::Null, Into::into),
            );
        }
        let path = self.out.join(METRICS);
        serde_json::to_writer(&mut self.metrics, &line)
            .map_err(|e| TrainError::Io { path: path.clone(), source: e.into() })?;
        self.metrics.write_all(b"\n").and_then(|_| self.metrics.flush()).map_err(io_error(&path))
    }

    /// Appends one line `{"step", "prompt", "response", "reward"}` to `samples.jsonl`.
    pub fn log_sample(
        &mut self,
        step: i64,
        prompt: &str,
        response: &str,
        reward: f64,
    ) -> Result<(), TrainError> {
        if !self.writes {
            return Ok(());
        }
        let path = self.out.join(SAMPLES);
        let line = serde_json::json!({ "step": step, "prompt": prompt, "response": response,
                                       "reward": serde_json::Number::from_f64(reward) });
        let mut file =
            std::fs::OpenOptions::new().create(true).append(true).open(&path).map_err(io_error(&path))?;
        writeln!(file, "{line}").map_err(io_error(&path))
    }

    /// Whether the run was asked to stop (see [`RunDir::stop_when`]).
    pub fn stop_requested(&self) -> bool {
        self.stop.as_ref().is_some_and(|stop| stop.load(Ordering::Relaxed))
    }

    /// Whether a stage that has finished `steps_done` steps should checkpoint now: every
    /// `every` steps (0: never), and always when the run was asked to stop, so that the
    /// run resumes where it stopped.
    pub fn checkpoint_due(&self, steps_done: i64, every: i64) -> bool {
        (every > 0 && steps_done % every == 0) || self.stop_requested()
    }

    /// [`TrainError::Stopped`] when the run was asked to stop. Stages call it after
    /// logging (and checkpointing) a step, so the metrics and the checkpoint are complete.
    pub fn stop_if_requested(&self, step: i64) -> Result<(), TrainError> {
        if self.stop_requested() {
            return Err(TrainError::Stopped { step });
        }
        Ok(())
    }

    /// The newest checkpoint and its step.
    pub fn latest_checkpoint(&self) -> Option<(PathBuf, i64)> {
        latest_checkpoint_in(&self.out)
    }

    /// Writes model, optimizer moments and training state as `checkpoints/step-N`, then
    /// prunes old ones. The directory is renamed into place only when complete. It
    /// carries the run's best model so far, if there is one, so that a run resumed from
    /// it (a copy of it on another machine included) still has its best weights.
    pub fn save_checkpoint<S: Serialize>(
        &self,
        step: i64,
        models: &[(&str, &LanguageModel)],
        optimizers: &[(&str, &AdamW)],
        state: &S,
    ) -> Result<PathBuf, TrainError> {
        let dir = self.out.join(CHECKPOINTS).join(format!("step-{step:08}"));
        if !self.writes {
            return Ok(dir);
        }
        let tmp = self.out.join(CHECKPOINTS).join(format!(".step-{step:08}.tmp"));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(io_error(&tmp))?;
        }
        let state = serde_json::to_value(state).map_err(|e| TrainError::Config(e.to_string()))?;
        for (name, model) in models {
            model.save(&model_dir(&tmp, name, models.len()), Some(state.clone()))?;
        }
        for (name, opt) in optimizers {
            let file = tmp.join(optimizer_file(name, optimizers.len()));
            Tensor::write_safetensors(&opt.state(), &file)?;
        }
        let best = self.out.join(CHECKPOINTS).join(BEST);
        if best.exists() {
            link_or_copy_dir(&best, &tmp.join(BEST))?;
        }
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(io_error(&dir))?;
        }
        std::fs::rename(&tmp, &dir).map_err(io_error(&dir))?;
        let mut all: Vec<(PathBuf, i64)> = list_checkpoints(&self.out).collect();
        all.sort_by_key(|(_, s)| *s);
        for (old, _) in all.iter().take(all.len().saturating_sub(self.keep)) {
            std::fs::remove_dir_all(old).map_err(io_error(old))?;
        }
        Ok(dir)
    }

    /// Continues the run in this directory from its newest checkpoint: the one resume
    /// path of every stage. Copies the checkpoint's weights into `models` and its moments
    /// into `optimizers` (named as [`RunDir::save_checkpoint`] named them), makes the best
    /// model it carries the run's (see [`RunDir::save_best`]) and drops the metric lines
    /// of the steps after it, which the stage trains again. Returns the training state
    /// saved with it, which must be `stage`'s.
    ///
    /// Without a checkpoint (a new run, or one stopped before its first) it returns
    /// `None`: the run starts over, so its metric lines and best model go.
    pub fn resume<S: DeserializeOwned>(
        &mut self,
        stage: &str,
        models: &mut [(&str, &mut LanguageModel)],
        optimizers: &mut [(&str, &mut AdamW)],
    ) -> Result<Option<S>, TrainError> {
        let best = self.out.join(CHECKPOINTS).join(BEST);
        let Some((dir, step)) = self.latest_checkpoint() else {
            if self.writes {
                remove_dir_if_present(&best)?;
                self.truncate_metrics_after(-1)?;
            }
            return Ok(None);
        };
        let state_dir = match models {
            [(name, _), ..] => model_dir(&dir, name, models.len()),
            [] => return Err(TrainError::Config("a checkpoint holds at least one model".into())),
        };
        let state = training_state(&state_dir)?;
        let saved_stage = state["stage"].as_str().unwrap_or("unknown");
        if saved_stage != stage {
            return Err(TrainError::Config(format!(
                "{} is a checkpoint of the {saved_stage} stage, not of {stage}",
                dir.display()
            )));
        }
        let path = state_dir.join(crate::checkpoint::PLUMB_FILE);
        let state = serde_json::from_value(state)
            .map_err(|e| TrainError::Config(format!("{}: training state: {e}", path.display())))?;
        let count = models.len();
        for (name, model) in models.iter_mut() {
            let saved = LanguageModel::load(&model_dir(&dir, name, count), model.device())?;
            model.vs.copy(&saved.vs)?;
        }
        let count = optimizers.len();
        for (name, opt) in optimizers.iter_mut() {
            opt.load_state(&dir.join(optimizer_file(name, count)))?;
        }
        // The best model of steps after the checkpoint's is no one's: the run trains
        // those steps again.
        if self.writes {
            remove_dir_if_present(&best)?;
            if dir.join(BEST).exists() {
                link_or_copy_dir(&dir.join(BEST), &best)?;
            }
            self.truncate_metrics_after(step - 1)?;
        }
        Ok(Some(state))
    }

    /// Saves `model` as the run's best so far, replacing the one before; the checkpoints
    /// written after it carry it.
    pub fn save_best(&self, model: &LanguageModel) -> Result<(), TrainError> {
        if !self.writes {
            return Ok(());
        }
        replace_model_dir(&self.best_dir(), model, None)
    }

    /// Where [`RunDir::save_best`] keeps the best model: each checkpoint carries a copy,
    /// and a resumed run finds there the best as of the checkpoint it resumed from.
    pub fn best_dir(&self) -> PathBuf {
        self.out.join(CHECKPOINTS).join(BEST)
    }

    /// Copies the weights of the model [`RunDir::save_best`] saved into `model`; in a
    /// data-parallel job rank 0 reads them and sends them to the other ranks.
    pub fn load_best(&self, model: &mut LanguageModel) -> Result<(), TrainError> {
        if self.writes {
            let best = LanguageModel::load(&self.out.join(CHECKPOINTS).join(BEST), model.device())?;
            model.vs.copy(&best.vs)?;
        }
        if let Some(group) = crate::distributed::current() {
            group.broadcast_variables(&model.vs)?;
        }
        Ok(())
    }

    /// Saves the final model into the run directory (rank 0 alone in a data-parallel job).
    pub fn save_model(
        &self,
        model: &LanguageModel,
        training: Option<serde_json::Value>,
    ) -> Result<(), TrainError> {
        if self.writes {
            model.save(&self.out, training)?;
        }
        Ok(())
    }

    /// Drops metric lines past `step`: a resumed run writes them again.
    fn truncate_metrics_after(&mut self, step: i64) -> Result<(), TrainError> {
        let path = self.out.join(METRICS);
        let file = File::open(&path).map_err(io_error(&path))?;
        let kept: Vec<String> = BufReader::new(file)
            .lines()
            .map_while(Result::ok)
            .filter(|line| {
                serde_json::from_str::<serde_json::Value>(line)
                    .ok()
                    .and_then(|v| v["step"].as_i64())
                    .is_some_and(|s| s <= step)
            })
            .collect();
        let mut text = kept.join("\n");
        if !text.is_empty() {
            text.push('\n');
        }
        std::fs::write(&path, text).map_err(io_error(&path))?;
        let metrics = OpenOptions::new().append(true).open(&path).map_err(io_error(&path))?;
        self.metrics = BufWriter::new(metrics);
        Ok(())
    }
}

/// Where a checkpoint keeps one optimizer's moments.
pub fn optimizer_file(name: &str, count: usize) -> String {
    if count == 1 {
        OPTIMIZER_FILE.to_string()
    } else {
        format!("optimizer-{name}.safetensors")
    }
}

fn remove_dir_if_present(dir: &Path) -> Result<(), TrainError> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_error(dir)(e)),
        _ => Ok(()),
    }
}

/// Copies the directory `from` into `to`, which must not exist, hard-linking each file
/// where the file system allows: a model's files are replaced, never written in place,
/// so a link is as good as a copy and costs no space.
fn link_or_copy_dir(from: &Path, to: &Path) -> Result<(), TrainError> {
    std::fs::create_dir_all(to).map_err(io_error(to))?;
    for entry in std::fs::read_dir(from).map_err(io_error(from))? {
        let entry = entry.map_err(io_error(from))?;
        let (source, target) = (entry.path(), to.join(entry.file_name()));
        if entry.file_type().map_err(io_error(&source))?.is_dir() {
            link_or_copy_dir(&source, &target)?;
        } else if std::fs::hard_link(&source, &target).is_err() {
            std::fs::copy(&source, &target).map_err(io_error(&source))?;
        }
    }
    Ok(())
}

/// Where a checkpoint keeps one model: in the checkpoint itself when it is the only one.
fn model_dir(checkpoint: &Path, name: &str, count: usize) -> PathBuf {
    if count == 1 {
        checkpoint.to_path_buf()
    } else {
        checkpoint.join(name)
    }
}

/// The training state a checkpoint's model recorded in its `plumb.json`.
pub fn training_state(dir: &Path) -> Result<serde_json::Value, TrainError> {
    let path = dir.join(crate::checkpoint::PLUMB_FILE);
    let text = std::fs::read_to_string(&path).map_err(io_error(&path))?;
    let mut meta: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| TrainError::Config(format!("{}: {e}", path.display())))?;
    Ok(meta["training"].take())
}

/// Saves `model` (with `training` in its plumb.json) as the directory `dir`, replacing
/// whatever was there only once the new one is complete.
pub fn replace_model_dir(
    dir: &Path,
    model: &LanguageModel,
    training: Option<serde_json::Value>,
) -> Result<(), TrainError> {
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.with_file_name(format!(".{name}.tmp"));
    remove_dir_if_present(&tmp)?;
    model.save(&tmp, training)?;
    remove_dir_if_present(dir)?;
    std::fs::rename(&tmp, dir).map_err(io_error(dir))
}

/// The newest complete checkpoint of the run in `out`, and its step (steps done).
pub fn latest_checkpoint_in(out: &Path) -> Option<(PathBuf, i64)> {
    list_checkpoints(out).max_by_key(|(_, step)| *step)
}

fn list_checkpoints(out: &Path) -> impl Iterator<Item = (PathBuf, i64)> {
    std::fs::read_dir(out.join(CHECKPOINTS)).into_iter().flatten().filter_map(|entry| {
        let entry = entry.ok()?;
        let step = entry.file_name().to_str()?.strip_prefix("step-")?.parse().ok()?;
        Some((entry.path(), step))
    })
}

/// A progress bar on a terminal (hidden otherwise): step, loss, tokens/s and ETA.
pub struct Progress {
    bar: ProgressBar,
    started: Instant,
    tokens: u64,
}

impl Progress {
    pub fn new(stage: &str, total_steps: i64, first_step: i64) -> Self {
        let bar = ProgressBar::new(total_steps.max(0) as u64);
        bar.set_style(
            ProgressStyle::with_template("{prefix:>8} [{bar:30}] {pos}/{len} {msg} ETA {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_prefix(stage.to_string());
        bar.set_position(first_step.max(0) as u64);
        Progress { bar, started: Instant::now(), tokens: 0 }
    }

    /// Records a finished step that processed `tokens` tokens.
    pub fn step(&mut self, step: i64, tokens: u64, summary: &str) {
        self.tokens += tokens;
        let rate = self.tokens as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
        self.bar.set_position((step + 1).max(0) as u64);
        self.bar.set_message(format!("{summary} · {:.0} tok/s", rate));
    }

    pub fn tokens_per_second(&self) -> f64 {
        self.tokens as f64 / self.started.elapsed().as_secs_f64().max(1e-9)
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A matrix (decays), a bias (does not) and a variable the loss leaves without a
    /// gradient, with fixed values and gradients set by a loss's backward.
    fn adamw_fixture(fused: bool) -> (nn::VarStore, AdamW) {
        let vs = nn::VarStore::new(Device::Cpu);
        let root = vs.root();
        let w = root.var_copy("w", &Tensor::from_slice(&[0.5f32, -1.0, 2.0, 0.25]).view([2, 2]));
        let b = root.var_copy("b", &Tensor::from_slice(&[0.1f32, -0.2]));
        let _unused = root.var_copy("unused", &Tensor::from_slice(&[3.0f32]));
        let mut opt = AdamW::new(&vs, 0.9, 0.999, 1e-8, 0.1);
        opt.fused = fused;
        let x = Tensor::from_slice(&[1.0f32, -2.0]);
        (w.mv(&x) + &b).square().sum(Kind::Float).backward();
        (vs, opt)
    }

    fn values(vs: &nn::VarStore, name: &str) -> Vec<f32> {
        Vec::<f32>::try_from(vs.variables()[name].flatten(0, -1)).unwrap()
    }

    #[test]
    fn adamws_first_step_moves_each_weight_by_lr_against_its_gradients_sign_after_decay_by_hand() {
        // Step 1: m̂ = g and v̂ = g², so each weight moves by lr · g / (|g| + ε): lr against
        // the sign of its gradient, after a matrix's decay by (1 - lr · λ).
        for fused in [true, false] {
            let (vs, mut opt) = adamw_fixture(fused);
            // w·x + b = (0.5 + 2 + 0.1, 2 - 0.5 - 0.2) = (2.6, 1.3): gradients of w are
            // 2(w·x + b) xᵀ, with signs (+, -, +, -); of b, 2(w·x + b): (+, +).
            opt.step(0.01);
            let w = values(&vs, "w");
            let expected_w = [0.5 * 0.999 - 0.01, -0.999 + 0.01, 2.0 * 0.999 - 0.01, 0.25 * 0.999 + 0.01];
            for (got, want) in w.iter().zip(expected_w) {
                assert!((got - want).abs() < 1e-6, "fused {fused}: w {w:?}, expected {expected_w:?}");
            }
            let b = values(&vs, "b");
            for (got, want) in b.iter().zip([0.09f32, -0.21]) {
                assert!((got - want).abs() < 1e-6, "fused {fused}: b {b:?} (biases do not decay)");
            }
            assert_eq!(values(&vs, "unused"), [3.0], "a variable without a gradient stays as it was");
        }
    }

    #[test]
    fn the_fused_adamw_takes_the_steps_of_the_tensor_ops_one() {
        let (fused_vs, mut fused) = adamw_fixture(true);
        let (plain_vs, mut plain) = adamw_fixture(false);
        for step in 0..5 {
            let lr = 0.05 / (step + 1) as f64;
            fused.step(lr);
            plain.step(lr);
        }
        assert_eq!(fused.fused, fused::FUSED_ADAMW, "the fused kernel did not refuse a CPU f32 model");
        for name in ["w", "b", "unused"] {
            let (a, b) = (values(&fused_vs, name), values(&plain_vs, name));
            for (x, y) in a.iter().zip(&b) {
                assert!((x - y).abs() < 1e-6, "{name}: fused {a:?}, tensor ops {b:?}");
            }
        }
        let (a, b) = (fused.state(), plain.state());
        for ((name, x), (_, y)) in a.iter().zip(&b) {
            let diff = (x.to_kind(Kind::Double) - y.to_kind(Kind::Double)).abs().max().double_value(&[]);
            assert!(diff < 1e-6, "{name} differs by {diff}");
        }
    }

    #[test]
    fn the_learning_rate_warms_up_then_decays_by_cosine() {
        assert!((lr_at(0, 100, 10, 1.0, 0.1) - 0.1).abs() < 1e-12);
        assert!((lr_at(9, 100, 10, 1.0, 0.1) - 1.0).abs() < 1e-12);
        assert!((lr_at(10, 100, 10, 1.0, 0.1) - 1.0).abs() < 1e-12);
        // halfway through the decay: final + (1 - final) / 2
        assert!((lr_at(55, 100, 10, 1.0, 0.1) - 0.55).abs() < 1e-12);
        assert!((lr_at(100, 100, 10, 1.0, 0.1) - 0.1).abs() < 1e-12);
    }

    /// Two AdamW steps on f(p) = sum(p²)/2 (gradient p), checked by hand:
    /// step 1 moves every coordinate by lr (Adam's normalised first step), and decay
    /// shrinks the matrix but not the vector.
    #[test]
    fn adamw_takes_the_steps_of_torch_adamw() {
        let vs = nn::VarStore::new(Device::Cpu);
        let root = vs.root();
        let w = root.var("w", &[1, 2], nn::Init::Const(1.0));
        let b = root.var("b", &[2], nn::Init::Const(-2.0));
        let mut opt = AdamW::new(&vs, 0.9, 0.999, 1e-8, 0.1);
        let loss = (w.square().sum(Kind::Float) + b.square().sum(Kind::Float)) * 0.5;
        opt.zero_grad();
        loss.backward();
        opt.step(0.01);
        // w: 1·(1 − 0.01·0.1) − 0.01 = 0.989; b: −2 + 0.01 (no decay on vectors)
        let wv = Vec::<f64>::try_from(w.flatten(0, -1).to_kind(Kind::Double)).unwrap();
        let bv = Vec::<f64>::try_from(b.to_kind(Kind::Double)).unwrap();
        assert!((wv[0] - 0.989).abs() < 1e-6, "{wv:?}");
        assert!((bv[0] + 1.99).abs() < 1e-6, "{bv:?}");
    }

    #[test]
    fn a_stop_request_makes_a_checkpoint_due_then_stops_the_run_with_the_step_logged() {
        let dir = tempfile::tempdir().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let mut run = RunDir::open(dir.path(), false).unwrap().stop_when(stop.clone());
        run.set_total_steps(10).unwrap();
        run.log(0, &[("loss", 2.0)]).unwrap();
        assert!(!run.checkpoint_due(1, 5) && run.checkpoint_due(5, 5) && !run.checkpoint_due(5, 0));
        run.stop_if_requested(0).unwrap();
        stop.store(true, Ordering::Relaxed);
        run.log(1, &[("loss", 1.5)]).unwrap();
        assert!(run.checkpoint_due(2, 5) && run.checkpoint_due(2, 0), "a stop always checkpoints");
        assert!(matches!(run.stop_if_requested(1), Err(TrainError::Stopped { step: 1 })));
        let lines = std::fs::read_to_string(dir.path().join(METRICS)).unwrap();
        assert_eq!(lines.lines().count(), 2, "{lines}");
        let progress = std::fs::read_to_string(dir.path().join(PROGRESS)).unwrap();
        assert_eq!(progress, r#"{"total_steps":10}"#);
    }

    #[test]
    fn clipping_scales_the_gradient_to_the_max_norm() {
        let vs = nn::VarStore::new(Device::Cpu);
        let p = vs.root().var("p", &[2], nn::Init::Const(0.0));
        let opt = AdamW::new(&vs, 0.9, 0.999, 1e-8, 0.0);
        let loss = (&p * Tensor::from_slice(&[3.0f32, 4.0])).sum(Kind::Float);
        loss.backward();
        let norm = opt.clip_grad_norm(1.0);
        assert!((norm - 5.0).abs() < 1e-5);
        let g = Vec::<f64>::try_from(p.grad().to_kind(Kind::Double)).unwrap();
        assert!((g[0] - 0.6).abs() < 1e-5 && (g[1] - 0.8).abs() < 1e-5, "{g:?}");
    }

    #[test]
    fn a_directory_holding_a_run_is_not_overwritten_without_resume() {
        let (dir, mut run) = temp_run();
        run.log(0, &[("loss", 1.0)]).unwrap();
        drop(run);
        let err = RunDir::open(dir.path(), false).err().unwrap().to_string();
        assert!(err.contains("--resume"), "{err}");
        assert!(RunDir::open(dir.path(), true).is_ok());
    }

    fn tiny_model() -> LanguageModel {
        let mut cfg = crate::GptConfig::tiny(258);
        (cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.n_ctx) = (1, 2, 8, 8);
        LanguageModel::new(cfg, crate::TokenizerKind::Bytes, Device::Cpu).unwrap()
    }

    fn logged_steps(dir: &Path) -> Vec<i64> {
        let metrics = std::fs::read_to_string(dir.join(METRICS)).unwrap();
        metrics
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["step"].as_i64().unwrap())
            .collect()
    }

    #[test]
    fn resume_restores_the_newest_checkpoint_and_drops_the_lines_after_it() {
        let (dir, mut run) = temp_run();
        let model = tiny_model();
        let mut opt = AdamW::new(&model.vs, 0.9, 0.999, 1e-8, 0.0);
        opt.steps = 2;
        for step in 0..4 {
            run.log(step, &[("loss", 1.0)]).unwrap();
        }
        let state = serde_json::json!({ "stage": "sft", "step": 2 });
        run.save_checkpoint(2, &[("model", &model)], &[("model", &opt)], &state).unwrap();
        drop(run);

        let mut run = RunDir::open(dir.path(), true).unwrap();
        let mut other = tiny_model();
        let mut other_opt = AdamW::new(&other.vs, 0.9, 0.999, 1e-8, 0.0);
        let err =
            run.resume::<serde_json::Value>("reward", &mut [("model", &mut other)], &mut []).unwrap_err();
        assert!(err.to_string().contains("a checkpoint of the sft stage, not of reward"), "{err}");
        let resumed: Option<serde_json::Value> =
            run.resume("sft", &mut [("model", &mut other)], &mut [("model", &mut other_opt)]).unwrap();
        assert_eq!(resumed, Some(state));
        assert_eq!(other_opt.steps, 2);
        let diff = (&model.vs.variables()["wte.weight"] - &other.vs.variables()["wte.weight"]).abs().max();
        assert_eq!(diff.double_value(&[]), 0.0);
        assert_eq!(logged_steps(dir.path()), vec![0, 1], "steps 2 and 3 are trained again");
    }

    #[test]
    fn a_checkpoint_carries_the_best_model_and_resume_puts_it_back() {
        let (dir, run) = temp_run();
        let (best, mut last) = (tiny_model(), tiny_model());
        run.save_best(&best).unwrap();
        let checkpoint =
            run.save_checkpoint(3, &[("model", &last)], &[], &serde_json::json!({ "stage": "sft" })).unwrap();
        assert!(checkpoint.join(BEST).join(crate::checkpoint::WEIGHTS_FILE).exists());
        run.save_best(&last).unwrap(); // after the checkpoint: not the resumed run's best

        // On another machine, with only the checkpoint.
        let elsewhere = tempfile::tempdir().unwrap();
        link_or_copy_dir(&checkpoint, &elsewhere.path().join(CHECKPOINTS).join("step-00000003")).unwrap();
        for out in [dir.path(), elsewhere.path()] {
            let mut run = RunDir::open(out, true).unwrap();
            let _: Option<serde_json::Value> =
                run.resume("sft", &mut [("model", &mut last)], &mut []).unwrap();
            run.load_best(&mut last).unwrap();
            let diff = (&best.vs.variables()["wte.weight"] - &last.vs.variables()["wte.weight"]).abs().max();
            assert_eq!(diff.double_value(&[]), 0.0, "{}", out.display());
        }

        // Without the checkpoint, the run starts over and has no best model yet.
        std::fs::remove_dir_all(&checkpoint).unwrap();
        let mut run = RunDir::open(dir.path(), true).unwrap();
        let _: Option<serde_json::Value> = run.resume("sft", &mut [("model", &mut last)], &mut []).unwrap();
        assert!(run.load_best(&mut last).is_err());
    }

    #[test]
    fn a_run_without_a_checkpoint_resumes_from_the_start_with_no_metrics() {
        let (dir, mut run) = temp_run();
        run.log(0, &[("loss", 1.0)]).unwrap();
        drop(run);
        let mut run = RunDir::open(dir.path(), true).unwrap();
        let resumed: Option<serde_json::Value> =
            run.resume("sft", &mut [("model", &mut tiny_model())], &mut []).unwrap();
        assert_eq!(resumed, None);
        assert_eq!(logged_steps(dir.path()), Vec::<i64>::new());
    }

    #[test]
    fn a_nan_loss_names_the_step_and_the_last_good_checkpoint() {
        let (_dir, run) = temp_run();
        let err = ensure_finite(7, "loss", f64::NAN, &run).unwrap_err().to_string();
        assert!(err.starts_with("step 7: loss is NaN; training stopped."), "{err}");
    }
}

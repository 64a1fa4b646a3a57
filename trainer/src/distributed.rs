//! Data parallelism through c10d, the collective library under `torch.distributed`.
//!
//! tch has no binding for c10d, so `trainer/c10d/shim.cpp` (compiled by build.rs against
//! the wheel's headers) adapts libtorch's own `TCPStore`, `ProcessGroupGloo` and, where
//! the build found NCCL's headers, `ProcessGroupNCCL` (for CUDA tensors; [`has_nccl`]) to a
//! few C functions, and [`ProcessGroup`] wraps them. Each local rank takes its own GPU
//! (`--device cuda` or `auto` is `cuda:LOCAL_RANK`). Processes find each other as under
//! `torchrun`: `RANK`, `WORLD_SIZE`, `LOCAL_RANK`, `MASTER_ADDR` and `MASTER_PORT`
//! ([`Launch::from_env`]); `--nproc N` on a stage starts N local ranks ([`spawn_local_ranks`]).
//!
//! The stages follow DistributedDataParallel: every rank holds the whole model, draws its
//! own shard of each global batch ([`ProcessGroup::shard`]), and before each optimizer
//! step the gradients are summed over the ranks in buckets
//! ([`ProcessGroup::all_reduce_gradients`]). Each rank divides its loss by the global
//! batch's count, so the sum is exactly one process's gradient on the whole batch, and
//! the ranks take identical steps. Only rank 0 writes checkpoints and metrics.

use std::ffi::{c_char, c_int, CStr, CString};
use std::sync::atomic::{AtomicPtr, Ordering};
use std::time::Duration;

use tch::{nn::VarStore, Kind, Tensor};

/// Gradients are summed in buckets of at most this many bytes (DDP's default `bucket_cap_mb`):
/// few enough collectives for small parameters, no copy of the whole model at once for large.
pub const BUCKET_BYTES: i64 = 25 * 1024 * 1024;

/// Rows from which a gradient matrix is summed over the ranks row by row, only the rows
/// some rank touched ([`ProcessGroup::all_reduce_gradients`]): a token embedding's
/// (GPT-2's vocabulary has 50257), whose gradient is zero outside the batch's tokens
/// unless the output head shares it.
pub const SPARSE_ROWS: i64 = 4096;

/// How long a rank waits for the others at the rendezvous and in each collective.
pub const TIMEOUT: Duration = Duration::from_secs(300);

#[repr(C)]
struct RawGroup {
    _private: [u8; 0],
}

#[cfg(plumb_c10d)]
extern "C" {
    fn plumb_c10d_new(
        master_addr: *const c_char,
        master_port: c_int,
        rank: c_int,
        world_size: c_int,
        timeout_ms: i64,
        out: *mut *mut RawGroup,
    ) -> *mut c_char;
    fn plumb_c10d_free(group: *mut RawGroup);
    fn plumb_c10d_free_error(error: *mut c_char);
    fn plumb_c10d_all_reduce_sum(group: *mut RawGroup, tensor: *const torch_sys::C_tensor) -> *mut c_char;
    fn plumb_c10d_broadcast(
        group: *mut RawGroup,
        tensor: *const torch_sys::C_tensor,
        root: c_int,
    ) -> *mut c_char;
    fn plumb_c10d_all_gather(
        group: *mut RawGroup,
        input: *const torch_sys::C_tensor,
        outputs: *const *const torch_sys::C_tensor,
    ) -> *mut c_char;
    fn plumb_c10d_barrier(group: *mut RawGroup) -> *mut c_char;
    fn plumb_c10d_has_nccl() -> c_int;
}

/// A plumb built against a libtorch without c10d's headers (trainer/build.rs): joining a
/// job fails with this message, so no group, and none of the collectives, exist.
#[cfg(not(plumb_c10d))]
mod without_c10d {
    use super::{c_char, c_int, RawGroup};
    use std::ffi::CString;

    const UNAVAILABLE: &str = "this plumb was built against a libtorch without c10d's headers \
        (torch/csrc/distributed/c10d), so it trains in one process only: unset WORLD_SIZE";

    fn unavailable() -> *mut c_char {
        CString::new(UNAVAILABLE).expect("no NUL byte").into_raw()
    }

    pub unsafe fn plumb_c10d_new(
        _: *const c_char,
        _: c_int,
        _: c_int,
        _: c_int,
        _: i64,
        _: *mut *mut RawGroup,
    ) -> *mut c_char {
        unavailable()
    }
    pub unsafe fn plumb_c10d_free(_: *mut RawGroup) {}
    pub unsafe fn plumb_c10d_free_error(error: *mut c_char) {
        drop(unsafe { CString::from_raw(error) });
    }
    pub unsafe fn plumb_c10d_all_reduce_sum(_: *mut RawGroup, _: *const torch_sys::C_tensor) -> *mut c_char {
        unavailable()
    }
    pub unsafe fn plumb_c10d_broadcast(
        _: *mut RawGroup,
        _: *const torch_sys::C_tensor,
        _: c_int,
    ) -> *mut c_char {
        unavailable()
    }
    pub unsafe fn plumb_c10d_all_gather(
        _: *mut RawGroup,
        _: *const torch_sys::C_tensor,
        _: *const *const torch_sys::C_tensor,
    ) -> *mut c_char {
        unavailable()
    }
    pub unsafe fn plumb_c10d_barrier(_: *mut RawGroup) -> *mut c_char {
        unavailable()
    }
    pub unsafe fn plumb_c10d_has_nccl() -> c_int {
        0
    }
}
#[cfg(not(plumb_c10d))]
use without_c10d::*;

#[derive(Debug, thiserror::Error)]
pub enum DistributedError {
    /// A launch variable that is absent, or not what it must be.
    #[error("{name}={value:?}: {problem}")]
    Launch { name: &'static str, value: String, problem: String },
    /// c10d's own message (a rendezvous that timed out, a peer that went away).
    #[error("c10d {operation}: {message}")]
    C10d { operation: &'static str, message: String },
    #[error("rank {rank} of the {world_size} local ranks {outcome}")]
    Rank { rank: usize, world_size: usize, outcome: String },
    #[error("starting local rank {rank}: {source}")]
    Spawn { rank: usize, source: std::io::Error },
}

/// Where this process stands in a job, from the `torchrun` variables.
#[derive(Clone, Debug, PartialEq)]
pub struct Launch {
    pub rank: usize,
    pub world_size: usize,
    /// The rank among those on this machine (which GPU it would use).
    pub local_rank: usize,
    pub master_addr: String,
    pub master_port: u16,
}

impl Launch {
    /// The job this process belongs to, or `None` when `WORLD_SIZE` is unset: a process
    /// started alone trains alone. `MASTER_ADDR` defaults to loopback, as under `torchrun`.
    pub fn from_env() -> Result<Option<Launch>, DistributedError> {
        Launch::from_vars(|name| std::env::var(name).ok())
    }

    fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Option<Launch>, DistributedError> {
        let Some(world_size) = var("WORLD_SIZE") else {
            return Ok(None);
        };
        let number = |name: &'static str, value: Option<String>| -> Result<usize, DistributedError> {
            let value = value.ok_or_else(|| DistributedError::Launch {
                name,
                value: String::new(),
                problem: "must be set when WORLD_SIZE is".into(),
            })?;
            value.trim().parse().map_err(|e| DistributedError::Launch {
                name,
                value: value.clone(),
                problem: format!("not a whole number ({e})"),
            })
        };
        let world = number("WORLD_SIZE", Some(world_size))?;
        let rank = number("RANK", var("RANK"))?;
        let local_rank = match var("LOCAL_RANK") {
            Some(value) => number("LOCAL_RANK", Some(value))?,
            None => rank,
        };
        let master_port = number("MASTER_PORT", var("MASTER_PORT"))?;
        let out_of_range = |name, value: usize, problem: String| DistributedError::Launch {
            name,
            value: value.to_string(),
            problem,
        };
        if world == 0 {
            return Err(out_of_range("WORLD_SIZE", world, "must be at least 1".into()));
        }
        if rank >= world {
            return Err(out_of_range("RANK", rank, format!("must be below WORLD_SIZE={world}")));
        }
        let master_port = u16::try_from(master_port)
            .map_err(|_| out_of_range("MASTER_PORT", master_port, "must be a TCP port".into()))?;
        Ok(Some(Launch {
            rank,
            world_size: world,
            local_rank,
            master_addr: var("MASTER_ADDR").unwrap_or_else(|| "127.0.0.1".into()),
            master_port,
        }))
    }
}

/// Whether this build sums CUDA tensors through NCCL: trainer/build.rs compiled the shim
/// with NCCL's and CUDA's headers. Without it a group still takes CUDA tensors, through
/// Gloo's host copies.
pub fn has_nccl() -> bool {
    unsafe { plumb_c10d_has_nccl() != 0 }
}

/// A c10d process group over every rank of a job: Gloo for CPU tensors and the barrier,
/// NCCL for CUDA tensors (made at the first collective on one).
pub struct ProcessGroup {
    raw: *mut RawGroup,
    rank: usize,
    world_size: usize,
}

// c10d's backends are used from one thread at a time here (a stage's loop), and Gloo
// itself is safe to call from any thread.
unsafe impl Send for ProcessGroup {}
unsafe impl Sync for ProcessGroup {}

/// The message of an error the shim returned, freed.
fn check(operation: &'static str, error: *mut c_char) -> Result<(), DistributedError> {
    if error.is_null() {
        return Ok(());
    }
    let message = unsafe { CStr::from_ptr(error) }.to_string_lossy().into_owned();
    unsafe { plumb_c10d_free_error(error) };
    Err(DistributedError::C10d { operation, message })
}

impl ProcessGroup {
    /// Joins `launch`'s job: rank 0 serves the TCPStore at `MASTER_ADDR:MASTER_PORT`, and
    /// every rank waits there until all `WORLD_SIZE` have arrived.
    pub fn join(launch: &Launch, timeout: Duration) -> Result<ProcessGroup, DistributedError> {
        let addr = CString::new(launch.master_addr.clone()).map_err(|_| DistributedError::Launch {
            name: "MASTER_ADDR",
            value: launch.master_addr.clone(),
            problem: "holds a NUL byte".into(),
        })?;
        let mut raw = std::ptr::null_mut();
        let error = unsafe {
            plumb_c10d_new(
                addr.as_ptr(),
                launch.master_port as c_int,
                launch.rank as c_int,
                launch.world_size as c_int,
                timeout.as_millis() as i64,
                &mut raw,
            )
        };
        check("rendezvous", error)?;
        Ok(ProcessGroup { raw, rank: launch.rank, world_size: launch.world_size })
    }

    pub fn rank(&self) -> usize {
        self.rank
    }

    pub fn world_size(&self) -> usize {
        self.world_size
    }

    /// Rank 0, which writes the run's checkpoints, metrics and final model.
    pub fn is_leader(&self) -> bool {
        self.rank == 0
    }

    /// Sums `tensor` over the ranks, in place: through NCCL for a CUDA tensor where this
    /// build has it ([`has_nccl`]), else through Gloo.
    pub fn all_reduce_sum(&self, tensor: &Tensor) -> Result<(), DistributedError> {
        if tensor.device().is_cuda() && !has_nccl() {
            static ONCE: std::sync::Once = std::sync::Once::new();
            ONCE.call_once(|| {
                tracing::warn!(
                    "this build of plumb has no NCCL (trainer/build.rs found no nccl.h or CUDA headers): \
                     CUDA gradients are summed through Gloo, by way of host copies"
                )
            });
        }
        check("all-reduce", unsafe { plumb_c10d_all_reduce_sum(self.raw, tensor.as_ptr()) })
    }

    /// Averages `tensor` over the ranks, in place (Gloo has no average: a sum, divided).
    pub fn all_reduce_mean(&self, tensor: &mut Tensor) -> Result<(), DistributedError> {
        self.all_reduce_sum(tensor)?;
        let _ = tensor.g_div_scalar_(self.world_size as f64);
        Ok(())
    }

    /// The sum of `value` over the ranks.
    pub fn sum(&self, value: f64) -> Result<f64, DistributedError> {
        let tensor = Tensor::from_slice(&[value]);
        self.all_reduce_sum(&tensor)?;
        Ok(tensor.double_value(&[0]))
    }

    /// Overwrites `tensor` with rank `root`'s.
    pub fn broadcast(&self, tensor: &Tensor, root: usize) -> Result<(), DistributedError> {
        check("broadcast", unsafe { plumb_c10d_broadcast(self.raw, tensor.as_ptr(), root as c_int) })
    }

    /// Every rank's `tensor`, in rank order; each rank's has the same shape.
    pub fn all_gather(&self, tensor: &Tensor) -> Result<Vec<Tensor>, DistributedError> {
        let input = tensor.contiguous();
        let outputs: Vec<Tensor> = (0..self.world_size).map(|_| input.empty_like()).collect();
        let pointers: Vec<*const torch_sys::C_tensor> = outputs.iter().map(Tensor::as_ptr).collect();
        check("all-gather", unsafe { plumb_c10d_all_gather(self.raw, input.as_ptr(), pointers.as_ptr()) })?;
        Ok(outputs)
    }

    /// Waits until every rank has reached it.
    pub fn barrier(&self) -> Result<(), DistributedError> {
        check("barrier", unsafe { plumb_c10d_barrier(self.raw) })
    }

    /// This rank's share of a global batch, balanced by `cost` (an item's tokens): see
    /// [`balanced_share`].
    pub fn shard<'a, T>(&self, batch: &'a [T], cost: impl Fn(&T) -> usize) -> Vec<&'a T> {
        let costs: Vec<usize> = batch.iter().map(cost).collect();
        balanced_share(&costs, self.rank, self.world_size).into_iter().map(|i| &batch[i]).collect()
    }

    /// Sums the gradients of `vs`'s trainable variables over the ranks, in buckets of at
    /// most [`BUCKET_BYTES`]: each bucket is flattened into one buffer, summed in one
    /// collective and copied back (a bucket of one gradient is summed in place). Variables
    /// go by name, so every rank fills the buckets in the same order; a variable without a
    /// gradient (unused by the loss, on every rank alike) is left out. A matrix of
    /// [`SPARSE_ROWS`] rows or more is summed by [`ProcessGroup::all_reduce_rows`].
    pub fn all_reduce_gradients(&self, vs: &VarStore) -> Result<(), DistributedError> {
        let _guard = tch::no_grad_guard();
        let mut variables: Vec<(String, Tensor)> =
            vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).collect();
        variables.sort_by(|a, b| a.0.cmp(&b.0));
        let (by_rows, grads): (Vec<Tensor>, Vec<Tensor>) = variables
            .iter()
            .map(|(_, v)| v.grad())
            .filter(Tensor::defined)
            .partition(|g| g.dim() == 2 && g.size()[0] >= SPARSE_ROWS);
        for grad in &by_rows {
            self.all_reduce_rows(grad)?;
        }
        for bucket in buckets(&grads, BUCKET_BYTES) {
            if let [grad] = bucket {
                self.all_reduce_in_place(grad)?;
                continue;
            }
            let flat = Tensor::cat(&bucket.iter().map(|g| g.flatten(0, -1)).collect::<Vec<_>>(), 0);
            self.all_reduce_sum(&flat)?;
            let mut offset = 0;
            for grad in bucket {
                let n = grad.numel() as i64;
                let mut grad = grad.shallow_clone();
                grad.copy_(&flat.narrow(0, offset, n).view_as(&grad));
                offset += n;
            }
        }
        Ok(())
    }

    /// Sums `tensor` over the ranks without a copy where it is contiguous (collectives
    /// take contiguous buffers only).
    fn all_reduce_in_place(&self, tensor: &Tensor) -> Result<(), DistributedError> {
        if tensor.is_contiguous() {
            return self.all_reduce_sum(tensor);
        }
        let buffer = tensor.contiguous();
        self.all_reduce_sum(&buffer)?;
        tensor.shallow_clone().copy_(&buffer);
        Ok(())
    }

    /// Sums a gradient matrix over the ranks, sending only the rows that are nonzero on
    /// some rank: first which rows each rank touched (one float per row), then those rows.
    /// A token embedding's gradient is zero outside the batch's tokens, so a reward or
    /// value model sends a few hundred of its 50257 rows. Exact: a row zero on every rank
    /// sums to zero. When most rows are touched (an embedding tied to the output head),
    /// the whole matrix is summed at once.
    pub fn all_reduce_rows(&self, grad: &Tensor) -> Result<(), DistributedError> {
        let _guard = tch::no_grad_guard();
        // `any` reads the floats themselves (nonzero is true), in one pass.
        let touched = grad.any_dim(1, false).to_kind(Kind::Float);
        self.all_reduce_sum(&touched)?;
        let rows = touched.nonzero().squeeze_dim(1);
        if 2 * rows.size()[0] > grad.size()[0] {
            return self.all_reduce_in_place(grad);
        }
        if rows.size()[0] == 0 {
            return Ok(());
        }
        let picked = grad.index_select(0, &rows);
        self.all_reduce_sum(&picked)?;
        let _ = grad.shallow_clone().index_copy_(0, &rows, &picked);
        Ok(())
    }

    /// Makes every rank's variables of `vs` rank 0's (after rank 0 alone loaded them).
    pub fn broadcast_variables(&self, vs: &VarStore) -> Result<(), DistributedError> {
        let _guard = tch::no_grad_guard();
        let mut variables: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
        variables.sort_by(|a, b| a.0.cmp(&b.0));
        for (_, variable) in &variables {
            self.broadcast(variable, 0)?;
        }
        Ok(())
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        unsafe { plumb_c10d_free(self.raw) };
    }
}

/// Consecutive runs of `grads` of one kind and device, each at most `cap` bytes (or one
/// gradient, when a single one is larger).
fn buckets(grads: &[Tensor], cap: i64) -> Vec<&[Tensor]> {
    let mut buckets = Vec::new();
    let (mut start, mut bytes) = (0, 0i64);
    for (i, grad) in grads.iter().enumerate() {
        let size = grad.numel() as i64 * grad.kind().elt_size_in_bytes() as i64;
        let same_kind = grads[start].kind() == grad.kind() && grads[start].device() == grad.device();
        if i > start && (bytes + size > cap || !same_kind) {
            buckets.push(&grads[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += size;
    }
    if start < grads.len() {
        buckets.push(&grads[start..]);
    }
    buckets
}

/// The process group this process belongs to now: joined once for the process from the
/// launch variables ([`init_from_env`]), or for one run by a worker ([`join_for_run`]).
static GROUP: AtomicPtr<ProcessGroup> = AtomicPtr::new(std::ptr::null_mut());

/// Makes `group` the process's group; the stages find it through [`current`].
fn install(group: ProcessGroup) -> &'static ProcessGroup {
    let raw = Box::into_raw(Box::new(group));
    let previous = GROUP.swap(raw, Ordering::AcqRel);
    assert!(previous.is_null(), "a process joins one process group at a time");
    // SAFETY: `raw` comes from `Box::into_raw` and is freed only by `RunGroup::drop`.
    unsafe { &*raw }
}

/// Joins the job that the launch variables describe, once per process, as
/// `torch.distributed.init_process_group` does; the stages then find it through
/// [`current`]. Without `WORLD_SIZE`, or with a world of one, there is no group.
pub fn init_from_env() -> Result<Option<&'static ProcessGroup>, DistributedError> {
    if let Some(group) = current() {
        return Ok(Some(group));
    }
    let Some(launch) = Launch::from_env()? else {
        return Ok(None);
    };
    if launch.world_size == 1 {
        return Ok(None);
    }
    let group = ProcessGroup::join(&launch, TIMEOUT)?;
    Ok(Some(install(group)))
}

/// A worker's membership of one gang run's process group: the stages find the group
/// through [`current`] until this is dropped, which leaves it (`destroy_process_group`).
/// A worker trains one run at a time, so one group at a time.
#[must_use = "the group is left when this is dropped"]
pub struct RunGroup(());

/// Joins `launch`'s job for one run of a worker, waiting at most `timeout` for the other
/// ranks at the rendezvous and in each collective.
pub fn join_for_run(launch: &Launch, timeout: Duration) -> Result<RunGroup, DistributedError> {
    let group = ProcessGroup::join(launch, timeout)?;
    install(group);
    Ok(RunGroup(()))
}

impl Drop for RunGroup {
    fn drop(&mut self) {
        let raw = GROUP.swap(std::ptr::null_mut(), Ordering::AcqRel);
        if !raw.is_null() {
            // SAFETY: installed by `join_for_run` from `Box::into_raw`; the stage that used
            // it through `current` has returned before its run's `RunGroup` is dropped.
            drop(unsafe { Box::from_raw(raw) });
        }
    }
}

/// The process group this process joined with [`init_from_env`] or [`join_for_run`], if any.
pub fn current() -> Option<&'static ProcessGroup> {
    // SAFETY: a non-null pointer is a live group (see `install` and `RunGroup::drop`).
    unsafe { GROUP.load(Ordering::Acquire).as_ref() }
}

/// Whether this process writes the run's files: rank 0, or a process training alone.
pub fn is_leader() -> bool {
    current().is_none_or(ProcessGroup::is_leader)
}

/// The gradient sum of [`ProcessGroup::all_reduce_gradients`] when this process is one of
/// several ranks, and nothing when it trains alone.
pub fn all_reduce_gradients(vs: &VarStore) -> Result<(), DistributedError> {
    current().map_or(Ok(()), |group| group.all_reduce_gradients(vs))
}

/// Makes this rank's trainable weights rank 0's, as DistributedDataParallel does when it
/// wraps a model, so the ranks start equal even from a base each loaded for itself
/// (nothing when training alone).
pub fn broadcast_variables(vs: &VarStore) -> Result<(), DistributedError> {
    current().map_or(Ok(()), |group| group.broadcast_variables(vs))
}

/// The sum of `value` over the ranks (`value` itself when training alone).
pub fn sum(value: f64) -> Result<f64, DistributedError> {
    current().map_or(Ok(value), |group| group.sum(value))
}

/// Each of `values` summed over the ranks, in one collective (themselves when training
/// alone).
pub fn sum_each<const N: usize>(values: [f64; N]) -> Result<[f64; N], DistributedError> {
    let Some(group) = current() else {
        return Ok(values);
    };
    let tensor = Tensor::from_slice(&values);
    group.all_reduce_sum(&tensor)?;
    let mut sums = values;
    for (i, sum) in sums.iter_mut().enumerate() {
        *sum = tensor.double_value(&[i as i64]);
    }
    Ok(sums)
}

/// Sums `tensor` over the ranks in place (nothing when training alone).
pub fn all_reduce_sum(tensor: &Tensor) -> Result<(), DistributedError> {
    current().map_or(Ok(()), |group| group.all_reduce_sum(tensor))
}

/// The ranks of the job (1 when training alone).
pub fn world_size() -> usize {
    current().map_or(1, ProcessGroup::world_size)
}

/// This rank's consecutive share of `n` items: the first `n % world` ranks take one more
/// than the rest, rank 0 the first items (all of them when training alone). The RL stages
/// share a step's prompts so, keeping each prompt's samples on one rank and numbering
/// each sample's random stream as one process would.
pub fn contiguous_shard(n: usize) -> std::ops::Range<usize> {
    let (rank, world) = current().map_or((0, 1), |group| (group.rank(), group.world_size()));
    contiguous_share(n, rank, world)
}

/// The indices of the items rank `rank` of `world` takes, in their order, when items
/// of `costs` are dealt out greedily, costliest first, each to the rank with the least
/// cost so far (ties to the lower rank, then the earlier item): the ranks' totals then
/// differ by one item's cost at most, so no rank waits long at the gradient sum for
/// another with the batch's long sequences. The shares are disjoint, cover the batch,
/// are the same on every rank, and each rank has an item while any is left.
pub fn balanced_share(costs: &[usize], rank: usize, world: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..costs.len()).collect();
    order.sort_by(|&a, &b| costs[b].cmp(&costs[a]).then(a.cmp(&b)));
    let mut loads = vec![(0usize, 0usize); world]; // (cost, items) of each rank
    let mut mine = Vec::new();
    for i in order {
        let to = (0..world).min_by_key(|&r| (loads[r], r)).expect("a world of one rank or more");
        loads[to].0 += costs[i];
        loads[to].1 += 1;
        if to == rank {
            mine.push(i);
        }
    }
    mine.sort_unstable();
    mine
}

fn contiguous_share(n: usize, rank: usize, world: usize) -> std::ops::Range<usize> {
    let (base, extra) = (n / world, n % world);
    let start = rank * base + rank.min(extra);
    start..start + base + usize::from(rank < extra)
}

/// This rank's shard of `batch` (all of it when training alone).
pub fn shard<T>(batch: &[T], cost: impl Fn(&T) -> usize) -> Vec<&T> {
    match current() {
        Some(group) => group.shard(batch, cost),
        None => batch.iter().collect(),
    }
}

/// Runs this command `nproc` times as the ranks of one job on this machine, as `torchrun
/// --nproc-per-node` does: the same arguments, `RANK`, `LOCAL_RANK` and `WORLD_SIZE` set,
/// `MASTER_ADDR` and `MASTER_PORT` kept when set (loopback and a free port otherwise),
/// and one thread each (`OMP_NUM_THREADS=1`), since the ranks share this machine's cores.
/// `args` are the command's arguments without the launcher's own flag. Waits for every
/// rank; when one fails, the others are stopped and its failure is the error.
pub fn spawn_local_ranks(nproc: usize, args: &[std::ffi::OsString]) -> Result<(), DistributedError> {
    let exe = std::env::current_exe().map_err(|source| DistributedError::Spawn { rank: 0, source })?;
    let master_addr = std::env::var("MASTER_ADDR").unwrap_or_else(|_| "127.0.0.1".into());
    let master_port = match std::env::var("MASTER_PORT") {
        Ok(port) => port,
        Err(_) => free_port().map_err(|source| DistributedError::Spawn { rank: 0, source })?.to_string(),
    };
    let mut children = Vec::with_capacity(nproc);
    for rank in 0..nproc {
        let child = std::process::Command::new(&exe)
            .args(args)
            .env("RANK", rank.to_string())
            .env("LOCAL_RANK", rank.to_string())
            .env("WORLD_SIZE", nproc.to_string())
            .env("MASTER_ADDR", &master_addr)
            .env("MASTER_PORT", &master_port)
            .env("OMP_NUM_THREADS", "1")
            .spawn()
            .map_err(|source| DistributedError::Spawn { rank, source })?;
        children.push(child);
    }
    wait_for_ranks(children)
}

/// Waits for the ranks in order of their exit; the first that fails stops the rest.
fn wait_for_ranks(mut children: Vec<std::process::Child>) -> Result<(), DistributedError> {
    let world_size = children.len();
    let mut running: Vec<usize> = (0..world_size).collect();
    while !running.is_empty() {
        let mut failed = None;
        running.retain(|&rank| match children[rank].try_wait() {
            Ok(Some(status)) if status.success() => false,
            Ok(Some(status)) => {
                failed.get_or_insert((rank, format!("failed ({status})")));
                false
            }
            Ok(None) => true,
            Err(e) => {
                failed.get_or_insert((rank, format!("could not be waited for ({e})")));
                false
            }
        });
        if let Some((rank, outcome)) = failed {
            for &other in &running {
                let _ = children[other].kill();
                let _ = children[other].wait();
            }
            return Err(DistributedError::Rank { rank, world_size, outcome });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// A TCP port free on loopback now (the OS picks it), for a job's TCPStore.
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: std::collections::HashMap<String, String> =
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn a_process_without_world_size_trains_alone() {
        assert_eq!(Launch::from_vars(vars(&[("RANK", "3")])).unwrap(), None);
    }

    #[test]
    fn the_torchrun_variables_describe_the_launch() {
        let launch = Launch::from_vars(vars(&[
            ("WORLD_SIZE", "4"),
            ("RANK", "2"),
            ("MASTER_ADDR", "10.0.0.1"),
            ("MASTER_PORT", "29500"),
        ]))
        .unwrap()
        .unwrap();
        let expected = Launch {
            rank: 2,
            world_size: 4,
            local_rank: 2,
            master_addr: "10.0.0.1".into(),
            master_port: 29500,
        };
        assert_eq!(launch, expected);
    }

    #[test]
    fn a_rank_outside_the_world_is_refused_by_name() {
        let err = Launch::from_vars(vars(&[("WORLD_SIZE", "2"), ("RANK", "2"), ("MASTER_PORT", "1")]))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("RANK=\"2\""), "{err}");
        let err = Launch::from_vars(vars(&[("WORLD_SIZE", "2"), ("RANK", "0")])).unwrap_err().to_string();
        assert!(err.starts_with("MASTER_PORT"), "{err}");
    }

    #[test]
    fn contiguous_shares_cover_the_items_once_in_order() {
        let shares: Vec<_> = (0..3).map(|rank| contiguous_share(7, rank, 3)).collect();
        assert_eq!(shares, [0..3, 3..5, 5..7]);
        assert_eq!(contiguous_share(1, 1, 2), 1..1);
        assert_eq!(contiguous_share(4, 0, 1), 0..4);
    }

    #[test]
    fn balanced_shares_cover_the_items_once_and_even_out_their_cost() {
        // By hand: 9 → rank 0; 8 → 1; 5 → 1 (8 < 9); 4 → 0 (9 < 13); 3, 1 → 0, 1 …
        let costs = [1, 9, 3, 8, 5, 4, 1];
        let shares: Vec<Vec<usize>> = (0..2).map(|rank| balanced_share(&costs, rank, 2)).collect();
        assert_eq!(shares, [vec![1, 2, 5], vec![0, 3, 4, 6]]);
        let loads: Vec<usize> = shares.iter().map(|s| s.iter().map(|&i| costs[i]).sum()).collect();
        assert_eq!(loads, [16, 15]);

        // Any batch: disjoint, covering, within one item's cost, an item for every rank.
        let costs: Vec<usize> = (0..23).map(|i| (i * 37 + 11) % 50).collect();
        for world in 1..5 {
            let shares: Vec<Vec<usize>> =
                (0..world).map(|rank| balanced_share(&costs, rank, world)).collect();
            let mut all: Vec<usize> = shares.concat();
            all.sort_unstable();
            assert_eq!(all, (0..costs.len()).collect::<Vec<_>>(), "world {world}");
            let loads: Vec<usize> = shares.iter().map(|s| s.iter().map(|&i| costs[i]).sum()).collect();
            let spread = loads.iter().max().unwrap() - loads.iter().min().unwrap();
            assert!(spread <= *costs.iter().max().unwrap(), "world {world}: loads {loads:?}");
            assert!(shares.iter().all(|s| !s.is_empty()), "world {world}: {shares:?}");
        }
        assert_eq!(balanced_share(&[5], 1, 2), Vec::<usize>::new());
    }

    /// A group of one on loopback: Gloo takes its CPU tensors, and NCCL its CUDA tensors
    /// where a GPU is visible (scripts/gpu-check's machine); without one that half skips.
    #[test]
    fn a_group_sums_cpu_tensors_through_gloo_and_cuda_tensors_through_nccl() {
        let launch = Launch {
            rank: 0,
            world_size: 1,
            local_rank: 0,
            master_addr: "127.0.0.1".into(),
            master_port: free_port().unwrap(),
        };
        let group = ProcessGroup::join(&launch, Duration::from_secs(60)).unwrap();
        let devices = if tch::Cuda::is_available() {
            assert!(has_nccl(), "libtorch has CUDA, but this build found no NCCL headers (trainer/build.rs)");
            vec![tch::Device::Cpu, tch::Device::Cuda(0)]
        } else {
            eprintln!("skipped the NCCL half: no CUDA device is visible (has NCCL: {})", has_nccl());
            vec![tch::Device::Cpu]
        };
        for device in devices {
            let tensor = Tensor::from_slice(&[1.5f32, -2.0, 4.0]).to(device);
            group.all_reduce_sum(&tensor).unwrap();
            group.broadcast(&tensor, 0).unwrap();
            let gathered = group.all_gather(&tensor).unwrap();
            assert_eq!(gathered.len(), 1);
            assert_eq!(gathered[0].device(), device);
            let back: Vec<f32> = Vec::try_from(gathered[0].to(tch::Device::Cpu)).unwrap();
            assert_eq!(back, [1.5, -2.0, 4.0], "{device:?}");
            assert_eq!(group.sum(2.5).unwrap(), 2.5);
        }
        group.barrier().unwrap();
    }

    #[test]
    fn buckets_keep_order_and_respect_the_cap() {
        let grads: Vec<Tensor> =
            [3, 3, 10, 1].iter().map(|&n| Tensor::zeros([n], (Kind::Float, tch::Device::Cpu))).collect();
        let sizes: Vec<Vec<i64>> =
            buckets(&grads, 6 * 4).iter().map(|b| b.iter().map(|g| g.numel() as i64).collect()).collect();
        assert_eq!(sizes, vec![vec![3, 3], vec![10], vec![1]]);
    }
}

//! ATen kernels plumb calls that tch does not bind, through trainer/aten/ (compiled by
//! trainer/build.rs against the libtorch torch-sys links): today the fused AdamW of
//! `torch.optim.AdamW(fused=True)`.

use tch::Tensor;

/// Whether this build has the fused kernels (a libtorch without `ATen/ops/_fused_adamw.h`
/// builds without them, and [`AdamW`](crate::train::AdamW) then updates through tch's
/// tensor ops).
pub const FUSED_ADAMW: bool = cfg!(plumb_fused_adamw);

/// One group of parameters for [`adamw`]: all on one device in one dtype.
pub struct AdamWGroup<'a> {
    pub params: &'a [Tensor],
    pub grads: &'a [Tensor],
    pub exp_avgs: &'a [Tensor],
    pub exp_avg_sqs: &'a [Tensor],
    /// One scalar float tensor per parameter, on its device: ATen's step counts.
    pub steps: &'a [Tensor],
}

/// The settings of one AdamW update.
pub struct AdamWUpdate {
    /// Adam's t, from 1.
    pub step: i64,
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub weight_decay: f64,
    pub eps: f64,
}

#[cfg(plumb_fused_adamw)]
mod ffi {
    use std::ffi::c_char;
    extern "C" {
        pub fn plumb_aten_fused_adamw(
            params: *const *const torch_sys::C_tensor,
            grads: *const *const torch_sys::C_tensor,
            exp_avgs: *const *const torch_sys::C_tensor,
            exp_avg_sqs: *const *const torch_sys::C_tensor,
            steps: *const *const torch_sys::C_tensor,
            n: i32,
            step: i64,
            lr: f64,
            beta1: f64,
            beta2: f64,
            weight_decay: f64,
            eps: f64,
        ) -> *mut c_char;
        pub fn plumb_aten_free_error(error: *mut c_char);
    }
}

/// Updates `group`'s parameters and moments in place with ATen's `_fused_adamw_`: the
/// same arithmetic as `torch.optim.AdamW`, in one pass per parameter. Errs with ATen's
/// message (a device or dtype the kernel does not take) and changes nothing then, or
/// when this build lacks the kernel.
pub fn adamw(group: &AdamWGroup, update: &AdamWUpdate) -> Result<(), String> {
    let n = group.params.len();
    let lists = [group.grads, group.exp_avgs, group.exp_avg_sqs, group.steps];
    if lists.iter().any(|l| l.len() != n) {
        return Err("a fused AdamW group's lists differ in length".into());
    }
    #[cfg(plumb_fused_adamw)]
    {
        let ptrs = |ts: &[Tensor]| ts.iter().map(|t| t.as_ptr()).collect::<Vec<_>>();
        let (p, g, m, v, s) = (
            ptrs(group.params),
            ptrs(group.grads),
            ptrs(group.exp_avgs),
            ptrs(group.exp_avg_sqs),
            ptrs(group.steps),
        );
        let error = unsafe {
            ffi::plumb_aten_fused_adamw(
                p.as_ptr(),
                g.as_ptr(),
                m.as_ptr(),
                v.as_ptr(),
                s.as_ptr(),
                n as i32,
                update.step,
                update.lr,
                update.beta1,
                update.beta2,
                update.weight_decay,
                update.eps,
            )
        };
        if error.is_null() {
            return Ok(());
        }
        let message = unsafe { std::ffi::CStr::from_ptr(error) }.to_string_lossy().into_owned();
        unsafe { ffi::plumb_aten_free_error(error) };
        Err(message)
    }
    #[cfg(not(plumb_fused_adamw))]
    {
        let _ = update;
        Err("this plumb was built without ATen's fused AdamW".into())
    }
}

//! Where a model runs and in which precision.

use std::fmt;
use std::str::FromStr;

use tch::{Device, Kind};

pub use spec::Precision;

/// `--device cpu|cuda|cuda:N|auto`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    Cpu,
    /// The GPU of this index, so that several workers on one machine each serve their own.
    Cuda(usize),
    /// `cuda`: the local rank's GPU, as under `torchrun` (`LOCAL_RANK` modulo the GPUs
    /// visible; cuda:0 in a process of its own).
    AnyCuda,
    /// The local rank's GPU when one is visible, else the CPU.
    #[default]
    Auto,
}

impl FromStr for DeviceChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let refused = || format!("unknown device `{s}` (expected cpu, cuda, cuda:N or auto)");
        match s {
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::AnyCuda),
            "auto" => Ok(Self::Auto),
            _ => {
                let index = s.strip_prefix("cuda:").ok_or_else(refused)?;
                // Digits only: `cuda:+1` and `cuda: 1` are not device names.
                if index.is_empty() || !index.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(refused());
                }
                index.parse().map(Self::Cuda).map_err(|_| refused())
            }
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(index) => write!(f, "cuda:{index}"),
            Self::AnyCuda => f.write_str("cuda"),
            Self::Auto => f.write_str("auto"),
        }
    }
}

impl DeviceChoice {
    /// The device, or an error naming it when this machine has no such device.
    pub fn resolve(self) -> Result<Device, String> {
        if self == Self::Cpu {
            return Ok(Device::Cpu); // without asking CUDA, which can take seconds to answer
        }
        // Under torchrun's variables, this process's local rank; 0 in a process of its own.
        let local_rank = crate::distributed::Launch::from_env().ok().flatten().map_or(0, |l| l.local_rank);
        self.resolve_among(tch::Cuda::device_count().max(0) as usize, local_rank).inspect(|device| {
            if device.is_cuda() {
                allow_tf32();
            }
        })
    }

    /// [`DeviceChoice::resolve`] on a machine with `gpus` CUDA devices, for the process of
    /// local rank `local_rank`.
    fn resolve_among(self, gpus: usize, local_rank: usize) -> Result<Device, String> {
        match self {
            Self::Cpu => Ok(Device::Cpu),
            Self::Auto if gpus == 0 => Ok(Device::Cpu),
            Self::Cuda(_) | Self::AnyCuda if gpus == 0 => Err(format!(
                "--device {self} was asked for but no CUDA device is available \
                 (is libtorch_cuda linked and a GPU visible?)"
            )),
            Self::Auto | Self::AnyCuda => Ok(Device::Cuda(local_rank % gpus)),
            Self::Cuda(index) if index < gpus => Ok(Device::Cuda(index)),
            Self::Cuda(index) => Err(format!(
                "--device cuda:{index} names a GPU this machine does not have: it has {gpus} (cuda:0 to cuda:{})",
                gpus - 1
            )),
        }
    }
}

/// Lets cuBLAS compute the f32 matrix products that remain in mixed precision (and all
/// of them in f32 runs) with TF32 tensor cores, as `torch.backends.cuda.matmul.allow_tf32
/// = True` does: 10 mantissa bits in the products, f32 accumulation.
///
/// tch 0.24 does not bind `at::globalContext().setAllowTF32CuBLAS`, so this sets the
/// override libtorch reads the first time it asks whether TF32 is allowed
/// (`TORCH_ALLOW_TF32_CUBLAS_OVERRIDE`), before any CUDA matrix product runs. A value the
/// environment already gives (`0` to keep full f32) is left as it is.
fn allow_tf32() {
    const OVERRIDE: &str = "TORCH_ALLOW_TF32_CUBLAS_OVERRIDE";
    if std::env::var_os(OVERRIDE).is_none() {
        std::env::set_var(OVERRIDE, "1");
    }
}

/// The kind a stage computes its matrix products in on `device`: bf16 or f32.
pub fn compute_kind(precision: Precision, device: Device) -> Kind {
    if precision.is_bf16(device.is_cuda()) {
        Kind::BFloat16
    } else {
        Kind::Float
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_is_cpu_cuda_cuda_n_or_auto() {
        assert_eq!("cuda".parse::<DeviceChoice>(), Ok(DeviceChoice::AnyCuda));
        assert_eq!("cuda".parse::<DeviceChoice>().unwrap().to_string(), "cuda");
        assert_eq!("cuda:3".parse::<DeviceChoice>(), Ok(DeviceChoice::Cuda(3)));
        assert_eq!("cuda:3".parse::<DeviceChoice>().unwrap().to_string(), "cuda:3");
        for bad in ["cuda:", "cuda:x", "cuda:-1", "cuda:+1", "gpu:0", "tpu"] {
            assert_eq!(
                bad.parse::<DeviceChoice>().unwrap_err(),
                format!("unknown device `{bad}` (expected cpu, cuda, cuda:N or auto)")
            );
        }
    }

    #[test]
    fn a_gpu_the_machine_lacks_is_an_error_naming_the_ones_it_has() {
        assert_eq!(DeviceChoice::Cuda(1).resolve_among(2, 0), Ok(Device::Cuda(1)));
        assert_eq!(
            DeviceChoice::Cuda(2).resolve_among(2, 0).unwrap_err(),
            "--device cuda:2 names a GPU this machine does not have: it has 2 (cuda:0 to cuda:1)"
        );
        assert!(DeviceChoice::Cuda(0)
            .resolve_among(0, 0)
            .unwrap_err()
            .contains("no CUDA device is available"));
        assert!(DeviceChoice::AnyCuda
            .resolve_among(0, 1)
            .unwrap_err()
            .contains("--device cuda was asked for"));
        assert_eq!(DeviceChoice::Auto.resolve_among(0, 0), Ok(Device::Cpu));
        assert_eq!(DeviceChoice::Auto.resolve_among(4, 0), Ok(Device::Cuda(0)));
    }

    #[test]
    fn cuda_and_auto_give_each_local_rank_its_own_gpu_as_torchrun_does() {
        assert_eq!(DeviceChoice::AnyCuda.resolve_among(4, 0), Ok(Device::Cuda(0)));
        assert_eq!(DeviceChoice::AnyCuda.resolve_among(4, 3), Ok(Device::Cuda(3)));
        assert_eq!(DeviceChoice::Auto.resolve_among(2, 3), Ok(Device::Cuda(1)));
        // A GPU named by its index stays that GPU whatever the rank.
        assert_eq!(DeviceChoice::Cuda(1).resolve_among(4, 3), Ok(Device::Cuda(1)));
    }

    #[test]
    fn auto_precision_computes_in_bf16_on_cuda_and_f32_on_the_cpu() {
        assert_eq!(compute_kind(Precision::Auto, Device::Cpu), Kind::Float);
        assert_eq!(compute_kind(Precision::Auto, Device::Cuda(1)), Kind::BFloat16);
        assert_eq!(compute_kind(Precision::Bf16, Device::Cpu), Kind::BFloat16);
    }
}

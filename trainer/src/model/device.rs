//! Where a model runs and in which precision.

use tch::{Device, Kind};

/// `--device cpu|cuda|auto`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    Cpu,
    Cuda,
    /// CUDA when a GPU is visible, else the CPU.
    #[default]
    Auto,
}

choice_words!(DeviceChoice, "device", { "cpu" => Cpu, "cuda" => Cuda, "auto" => Auto });

impl DeviceChoice {
    pub fn resolve(self) -> Result<Device, String> {
        match self {
            Self::Cpu => Ok(Device::Cpu),
            Self::Auto => Ok(Device::cuda_if_available()),
            Self::Cuda if tch::Cuda::is_available() => Ok(Device::Cuda(0)),
            Self::Cuda => Err("--device cuda was asked for but no CUDA device is available \
                 (is libtorch_cuda linked and a GPU visible?)"
                .to_string()),
        }
    }
}

/// The floating-point precision of forward passes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Precision {
    /// bf16 on CUDA (fast and, unlike fp16, free of overflow), f32 on the CPU.
    #[default]
    Auto,
    F32,
    Bf16,
}

choice_words!(Precision, "precision", { "auto" => Auto, "f32" => F32, "bf16" => Bf16 });

impl Precision {
    pub fn kind_on(self, device: Device) -> Kind {
        match (self, device) {
            (Self::F32, _) | (Self::Auto, Device::Cpu) => Kind::Float,
            (Self::Bf16, _) | (Self::Auto, _) => Kind::BFloat16,
        }
    }
}

//! Which device a model runs on, said out loud: `auto`, `cpu`, `cuda` or `cuda:N`, as the CLI's
//! `--device`, the app's setting and every run's config.json spell it.

use std::fmt;
use std::str::FromStr;

use candle_core::Device;

use crate::error::{EngineError, Result};

/// A device as the user chose it, before it is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    /// The first CUDA GPU when this build has CUDA and one can be opened, otherwise the CPU.
    #[default]
    Auto,
    Cpu,
    /// CUDA GPU number N, in CUDA's numbering (NVML's by default).
    Cuda(usize),
}

/// The step that makes a build with CUDA, for messages that need one.
pub const CUDA_SETUP_HINT: &str = "this build of Tunelab has no CUDA: run scripts/setup.sh on a \
    machine with the NVIDIA driver (it builds with CUDA when it finds one), or scripts/build-cuda.sh";

impl DeviceChoice {
    /// Opens the device. Asking for CUDA in a build without it, or for a GPU that cannot be
    /// opened, is an error that says what to do.
    pub fn open(self) -> Result<Device> {
        match self {
            DeviceChoice::Cpu => Ok(Device::Cpu),
            DeviceChoice::Auto => Ok(auto()),
            DeviceChoice::Cuda(n) => open_cuda(n),
        }
    }
}

#[cfg(feature = "cuda")]
fn open_cuda(n: usize) -> Result<Device> {
    Device::new_cuda(n).map_err(|e| {
        EngineError::InvalidRequest(format!(
            "CUDA GPU {n} could not be opened ({e}); `tunelab doctor` shows the GPUs and what \
             keeps them from being used"
        ))
    })
}

#[cfg(not(feature = "cuda"))]
fn open_cuda(n: usize) -> Result<Device> {
    Err(EngineError::InvalidRequest(format!(
        "--device cuda:{n} was asked for, but {CUDA_SETUP_HINT}"
    )))
}

fn auto() -> Device {
    #[cfg(feature = "cuda")]
    {
        if let Ok(device) = Device::new_cuda(0) {
            return device;
        }
    }
    Device::Cpu
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceChoice::Auto => f.write_str("auto"),
            DeviceChoice::Cpu => f.write_str("cpu"),
            DeviceChoice::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl FromStr for DeviceChoice {
    type Err = EngineError;

    fn from_str(text: &str) -> Result<Self> {
        let text = text.trim().to_ascii_lowercase();
        match text.as_str() {
            "auto" => return Ok(DeviceChoice::Auto),
            "cpu" => return Ok(DeviceChoice::Cpu),
            "cuda" | "gpu" => return Ok(DeviceChoice::Cuda(0)),
            _ => {}
        }
        text.strip_prefix("cuda:")
            .and_then(|n| n.parse().ok())
            .map(DeviceChoice::Cuda)
            .ok_or_else(|| {
                EngineError::InvalidRequest(format!(
                    "device `{text}` is not one of auto, cpu, cuda or cuda:N (N the GPU's number)"
                ))
            })
    }
}

impl serde::Serialize for DeviceChoice {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for DeviceChoice {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(|e| match e {
            EngineError::InvalidRequest(message) => serde::de::Error::custom(message),
            other => serde::de::Error::custom(other),
        })
    }
}

/// The CUDA GPU's number, for a CUDA device.
pub fn cuda_index(device: &Device) -> Option<usize> {
    match device.location() {
        candle_core::DeviceLocation::Cuda { gpu_id } => Some(gpu_id),
        _ => None,
    }
}

/// How runs, answers and benchmarks name the device they used: `cpu` or `cuda:N`.
pub fn device_label(device: &Device) -> String {
    match device.location() {
        candle_core::DeviceLocation::Cpu => "cpu".into(),
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choices_parse_and_print_the_way_users_write_them() {
        for (text, choice) in [
            ("auto", DeviceChoice::Auto),
            ("cpu", DeviceChoice::Cpu),
            ("CUDA", DeviceChoice::Cuda(0)),
            ("cuda:2", DeviceChoice::Cuda(2)),
        ] {
            assert_eq!(text.parse::<DeviceChoice>().unwrap(), choice);
        }
        assert_eq!(DeviceChoice::Cuda(1).to_string(), "cuda:1");
        let err = "cuda:x".parse::<DeviceChoice>().unwrap_err().to_string();
        assert!(err.contains("auto, cpu, cuda or cuda:N"), "{err}");
        let json = serde_json::to_string(&DeviceChoice::Cuda(3)).unwrap();
        assert_eq!(json, "\"cuda:3\"");
        assert_eq!(
            serde_json::from_str::<DeviceChoice>(&json).unwrap(),
            DeviceChoice::Cuda(3)
        );
        assert_eq!(device_label(&DeviceChoice::Cpu.open().unwrap()), "cpu");
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn asking_for_cuda_without_it_names_the_setup_step() {
        let err = DeviceChoice::Cuda(0).open().unwrap_err().to_string();
        assert!(err.contains("scripts/setup.sh"), "{err}");
        assert!(
            DeviceChoice::Auto.open().unwrap().is_cpu(),
            "auto falls back to the CPU"
        );
    }
}

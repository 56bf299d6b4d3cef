//! The workspace's settings, in `settings.json` at its root: what every front end falls back
//! to when a request does not say. Today that is the device models train, answer and embed on;
//! the CLI's `--device` and a run's own config override it for one command or run.

use serde::{Deserialize, Serialize};
use ts_rs::TS;
use tunelab_engine::DeviceChoice;

use crate::error::{ApiError, ErrorCode, Result};
use crate::workspace::{write_atomic, Workspace};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, TS)]
#[serde(default, deny_unknown_fields)]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub struct Settings {
    /// Where models train, answer and embed: "auto" (the first CUDA GPU of a build with CUDA,
    /// else the CPU), "cpu", "cuda" or "cuda:N".
    #[ts(type = "string")]
    pub device: DeviceChoice,
}

const FILE: &str = "settings.json";

/// The workspace's settings; the defaults when it has never saved any.
pub fn load(ws: &Workspace) -> Result<Settings> {
    let path = ws.root().join(FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Settings::default()),
        Err(e) => return Err(ApiError::io(&path, e)),
    };
    // Syntax first (its errors carry the line), then the fields (theirs name the field).
    let fault = |e: serde_json::Error| ApiError::invalid(format!("{}: {e}", path.display()));
    let value: serde_json::Value = serde_json::from_str(&text).map_err(fault)?;
    serde_json::from_value(value).map_err(fault)
}

/// Saves `settings` (atomically: a crash leaves the previous file). A device that cannot be
/// opened here (CUDA in a build without it, a GPU number that is not there) is refused with
/// what to do, and the previous settings stay.
pub fn save(ws: &Workspace, settings: &Settings) -> Result<()> {
    if settings.device != DeviceChoice::Auto {
        settings.device.open()?;
    }
    let json = serde_json::to_vec_pretty(settings)
        .map_err(|e| ApiError::new(ErrorCode::Internal, format!("settings: {e}")))?;
    Ok(write_atomic(&ws.root().join(FILE), &json)?)
}

/// The device a command runs on: the one it was given, else the workspace's setting.
pub fn device(ws: &Workspace, given: Option<DeviceChoice>) -> Result<DeviceChoice> {
    match given {
        Some(device) => Ok(device),
        None => Ok(load(ws)?.device),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_round_trip_and_a_bad_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let ws = Workspace::open(Some(dir.path().into())).unwrap();
        assert_eq!(load(&ws).unwrap().device, DeviceChoice::Auto);
        save(
            &ws,
            &Settings {
                device: DeviceChoice::Cpu,
            },
        )
        .unwrap();
        assert_eq!(load(&ws).unwrap().device, DeviceChoice::Cpu);
        assert_eq!(device(&ws, None).unwrap(), DeviceChoice::Cpu);
        assert_eq!(
            device(&ws, Some(DeviceChoice::Cuda(1))).unwrap(),
            DeviceChoice::Cuda(1),
            "the command's own choice wins"
        );

        #[cfg(not(feature = "cuda"))]
        {
            let err = save(
                &ws,
                &Settings {
                    device: DeviceChoice::Cuda(0),
                },
            )
            .unwrap_err()
            .to_string();
            assert!(err.contains("scripts/setup.sh"), "{err}");
            assert_eq!(load(&ws).unwrap().device, DeviceChoice::Cpu, "kept");
        }

        std::fs::write(dir.path().join(FILE), "{\n  \"device\": \"tpu\"\n}").unwrap();
        let err = load(&ws).unwrap_err().to_string();
        assert!(
            err.contains("settings.json: device `tpu` is not one of auto, cpu"),
            "{err}"
        );
        std::fs::write(dir.path().join(FILE), "{\n  \"device\": \"cpu\",\n}").unwrap();
        let err = load(&ws).unwrap_err().to_string();
        assert!(
            err.contains("settings.json") && err.contains("line 3"),
            "{err}"
        );
    }
}

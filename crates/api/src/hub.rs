//! Downloads from the Hugging Face hub: a model folder (config, tokenizer, safetensors shards)
//! or one GGUF file, resumable, with progress, into the model registry. `HF_ENDPOINT` points at
//! a mirror and `HF_TOKEN` opens gated repositories.
//!
//! A pull is pinned to the commit the listing was read at, and each file is checked against
//! what the listing says of it: its SHA-256 where the hub keeps one (Git LFS files: weights,
//! GGUF), its size otherwise. A file the listing gives neither for is refused. A partial
//! download is resumed only against the same repository and commit.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use ts_rs::TS;

use crate::download;
use crate::error::{ApiError, ErrorCode, Result};
use crate::jobs::{self, JobKind, JobLock};
use crate::models::{self, ModelEntry, ModelFormat, ModelManifest, ModelRole, ModelSource};
use crate::workspace::Workspace;

pub struct Hub {
    endpoint: String,
    token: Option<String>,
    /// Set to stop a download; the partial file stays for the next pull to resume.
    cancel: Option<Arc<AtomicBool>>,
}

/// What to pull, as the app's form sends it.
#[derive(Debug, Clone, Deserialize, TS)]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub struct PullRequest {
    /// `owner/name` on the hub.
    pub repo: String,
    /// Branch, tag or commit; `main` when empty.
    #[ts(optional)]
    pub revision: Option<String>,
    /// One GGUF file of the repository, when it has several.
    #[ts(optional)]
    pub file: Option<String>,
    /// The name in the model registry; the repository's name when empty.
    #[ts(optional)]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Serialize, TS)]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub struct DownloadProgress {
    pub file: String,
    pub file_index: u32,
    pub file_count: u32,
    #[ts(type = "number")]
    pub downloaded_bytes: u64,
    #[ts(type = "number | null")]
    pub total_bytes: Option<u64>,
}

/// Files of a Hugging Face model folder that the engine reads.
const FOLDER_FILES: [&str; 7] = [
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "model.safetensors.index.json",
];

/// One file of a repository, as the hub's listing describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct RepoFile {
    /// The path in the repository.
    pub name: String,
    /// Size in bytes.
    pub size: Option<u64>,
    /// SHA-256 of the content, in lowercase hex: given for files stored with Git LFS.
    pub sha256: Option<String>,
}

/// A repository's files at one revision.
#[derive(Debug, Clone, PartialEq)]
pub struct Listing {
    /// The commit the revision pointed at when listed; downloads ask for this commit, so a
    /// branch that moves meanwhile cannot mix two versions of the model.
    pub commit: Option<String>,
    pub files: Vec<RepoFile>,
}

impl Listing {
    /// The revision to download from: the listed commit, or the revision asked for when the
    /// server did not name one.
    fn pin<'a>(&'a self, revision: &'a str) -> &'a str {
        self.commit.as_deref().unwrap_or(revision)
    }

    fn file(&self, name: &str) -> Option<&RepoFile> {
        self.files.iter().find(|f| f.name == name)
    }
}

/// Reads the hub's answer to `/api/models/<repo>/revision/<rev>?blobs=true`. Names that could
/// leave the model's folder are dropped; so are a commit and digests that are not hex.
fn parse_listing(json: &serde_json::Value) -> Option<Listing> {
    let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    let siblings = json.get("siblings")?.as_array()?;
    let files = siblings
        .iter()
        .filter_map(|s| {
            let name = s.get("rfilename")?.as_str()?;
            stays_inside(name).then(|| RepoFile {
                name: name.to_string(),
                size: s.get("size").and_then(|v| v.as_u64()),
                sha256: s
                    .pointer("/lfs/sha256")
                    .and_then(|v| v.as_str())
                    .filter(|v| hex(v, 64))
                    .map(str::to_ascii_lowercase),
            })
        })
        .collect();
    let commit = json
        .get("sha")
        .and_then(|v| v.as_str())
        .filter(|v| hex(v, 40))
        .map(str::to_string);
    Some(Listing { commit, files })
}

/// Whether the downloaded `path` is the file the listing describes; the fault in words if not.
fn check_file(path: &Path, listed: &RepoFile) -> Result<()> {
    let size = path.metadata().map_err(|e| ApiError::io(path, e))?.len();
    let fault = if let Some(want) = &listed.sha256 {
        let got = crate::defaults::sha256_file(path)?;
        (&got != want).then(|| format!("its SHA-256 is {got}, the hub lists {want}"))
    } else if let Some(want) = listed.size {
        (size != want).then(|| format!("it has {size} bytes, the hub lists {want}"))
    } else {
        Some(
            "the hub lists neither its size nor a checksum, so the download cannot be checked"
                .into(),
        )
    };
    match fault {
        None => Ok(()),
        Some(fault) => Err(ApiError::new(
            ErrorCode::BadDownload,
            format!("{}: {fault}", listed.name),
        )),
    }
}

/// Where a staging folder's downloads came from: parts from another repository or commit are
/// never continued.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct StagingSource {
    repo: String,
    revision: String,
}

const STAGING_SOURCE: &str = ".source.json";

/// Makes `staging` hold downloads of `repo` at `revision` only: one left by a pull of another
/// repository or commit is emptied first. A folder without a record (from a version that kept
/// none) is taken as it is: every file is checked against the listing before it is used.
fn claim_staging(staging: &Path, repo: &str, revision: &str) -> Result<()> {
    let source = StagingSource {
        repo: repo.to_string(),
        revision: revision.to_string(),
    };
    let stamp = staging.join(STAGING_SOURCE);
    let recorded = std::fs::read_to_string(&stamp)
        .ok()
        .map(|t| serde_json::from_str::<StagingSource>(&t).ok());
    let same = recorded
        .as_ref()
        .is_some_and(|s| s.as_ref() == Some(&source));
    if recorded.is_some() && !same {
        std::fs::remove_dir_all(staging).map_err(|e| ApiError::io(staging, e))?;
    }
    if !same {
        let text = serde_json::to_string(&source).expect("the source serializes");
        crate::workspace::write_atomic(&stamp, text.as_bytes())?;
    }
    Ok(())
}

/// GGUF quantizations to pick, best first, when the repository has several and none was named.
const GGUF_PREFERENCE: [&str; 5] = ["Q4_K_M", "Q4_K_S", "Q5_K_M", "Q8_0", "Q4_0"];

impl Hub {
    pub fn new(endpoint: &str, token: Option<String>) -> Self {
        Hub {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            token,
            cancel: None,
        }
    }

    /// Downloads stop soon after `flag` is set, keeping what arrived for a later resume.
    pub fn with_cancel(mut self, flag: Arc<AtomicBool>) -> Self {
        self.cancel = Some(flag);
        self
    }

    /// The token's header for `url`; only over https, so it never crosses the network in clear.
    fn auth(&self, url: &str) -> Option<(&'static str, String)> {
        let token = self.token.as_ref()?;
        url.starts_with("https://")
            .then(|| ("Authorization", format!("Bearer {token}")))
    }

    pub fn from_env() -> Self {
        let endpoint =
            std::env::var("HF_ENDPOINT").unwrap_or_else(|_| "https://huggingface.co".into());
        Hub::new(
            &endpoint,
            std::env::var("HF_TOKEN").ok().filter(|t| !t.is_empty()),
        )
    }

    fn get(&self, url: &str) -> Result<ureq::http::Response<ureq::Body>> {
        let mut req = download::agent().get(url);
        if let Some((name, value)) = self.auth(url) {
            req = req.header(name, &value);
        }
        req.call().map_err(|e| self.network_error(url, e))
    }

    fn network_error(&self, url: &str, err: ureq::Error) -> ApiError {
        match err {
            ureq::Error::StatusCode(401) | ureq::Error::StatusCode(403) => ApiError::new(
                ErrorCode::Forbidden,
                format!("{url}: access denied; the repository is gated or private: accept its licence on the hub and set HF_TOKEN (sent over https only)"),
            ),
            ureq::Error::StatusCode(404) => ApiError::not_found(format!("{url}: not found on the hub (check the repository id, revision and file name)")),
            ureq::Error::StatusCode(code) => ApiError::new(ErrorCode::HubError, format!("{url}: the hub answered HTTP {code}")),
            other => ApiError::new(
                ErrorCode::Offline,
                format!(
                    "could not reach {} ({other}). Installed models keep working offline; to use a model already on disk run `tunelab models add PATH`",
                    self.endpoint
                ),
            ),
        }
    }

    /// A repository's files at a revision, with the commit it points at and each file's size
    /// and checksum.
    pub fn list(&self, repo: &str, revision: &str) -> Result<Listing> {
        let url = format!(
            "{}/api/models/{repo}/revision/{revision}?blobs=true",
            self.endpoint
        );
        let json = download::read_json(self.get(&url)?, &url, "the hub", &|e| {
            self.network_error(&url, e)
        })?;
        parse_listing(&json).ok_or_else(|| {
            ApiError::new(
                ErrorCode::HubError,
                format!("{url}: the answer lists no files"),
            )
        })
    }

    /// Downloads `file` to `dest`, resuming a previous partial download in `dest.part`, and
    /// checks it against the listing: a file that fails the check is deleted and downloaded
    /// once more from the start (a part spliced from two versions, bytes damaged on the way);
    /// failing again, the pull stops with the fault.
    fn download_checked(
        &self,
        repo: &str,
        revision: &str,
        listed: &RepoFile,
        dest: &Path,
        progress: &mut dyn FnMut(u64, Option<u64>),
    ) -> Result<()> {
        if dest.is_file() && check_file(dest, listed).is_ok() {
            return Ok(());
        }
        let mut fault = None;
        for _ in 0..2 {
            for stale in [dest.to_path_buf(), download::part_path(dest)] {
                if fault.is_some() && stale.exists() {
                    std::fs::remove_file(&stale).map_err(|e| ApiError::io(&stale, e))?;
                }
            }
            if !dest.is_file() {
                self.download(repo, revision, &listed.name, dest, progress)?;
            }
            match check_file(dest, listed) {
                Ok(()) => return Ok(()),
                Err(e) => {
                    std::fs::remove_file(dest).map_err(|e| ApiError::io(dest, e))?;
                    fault = Some(e);
                }
            }
        }
        let mut err = fault.expect("two tries failed");
        err.message = format!(
            "{repo}: {} (downloaded twice); the file was deleted, nothing was registered",
            err.message
        );
        Err(err)
    }

    /// Downloads `file` to `dest`, resuming a previous partial download in `dest.part`.
    fn download(
        &self,
        repo: &str,
        revision: &str,
        file: &str,
        dest: &Path,
        progress: &mut dyn FnMut(u64, Option<u64>),
    ) -> Result<()> {
        let url = format!("{}/{repo}/resolve/{revision}/{file}", self.endpoint);
        let headers: Vec<(&str, String)> = self.auth(&url).into_iter().collect();
        download::resume_to_file(
            &url,
            &headers,
            dest,
            self.cancel.as_deref(),
            &|e| self.network_error(&url, e),
            progress,
        )
    }
}

/// Whether a repository file name, joined to a folder, stays inside it: relative, `/`-separated,
/// with no empty, `.` or `..` part.
fn stays_inside(name: &str) -> bool {
    !name.is_empty()
        && !name.contains('\\')
        && name
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..")
}

/// Which files to fetch, and the entry the engine loads.
fn choose_files(
    repo: &str,
    files: &[String],
    file: Option<&str>,
) -> Result<(Vec<String>, ModelFormat, String)> {
    if let Some(file) = file {
        if !files.iter().any(|f| f == file) {
            return Err(ApiError::not_found(format!("{repo} has no file `{file}`")));
        }
        return Ok((vec![file.to_string()], ModelFormat::Gguf, file.to_string()));
    }
    let top_level = |f: &String| !f.contains('/');
    if files.iter().any(|f| f == "config.json")
        && files
            .iter()
            .any(|f| top_level(f) && f.ends_with(".safetensors"))
    {
        let wanted: Vec<String> = files
            .iter()
            .filter(|f| {
                top_level(f) && (FOLDER_FILES.contains(&f.as_str()) || f.ends_with(".safetensors"))
            })
            .cloned()
            .collect();
        return Ok((wanted, ModelFormat::Hf, ".".into()));
    }
    let ggufs: Vec<&String> = files.iter().filter(|f| f.ends_with(".gguf")).collect();
    let pick = GGUF_PREFERENCE
        .iter()
        .find_map(|q| ggufs.iter().find(|f| f.to_uppercase().contains(q)))
        .or(if ggufs.len() == 1 {
            ggufs.first()
        } else {
            None
        });
    match pick {
        Some(f) => Ok((vec![f.to_string()], ModelFormat::Gguf, f.to_string())),
        None if !ggufs.is_empty() => Err(ApiError::invalid(format!(
            "{repo} has several GGUF files; choose one with --file: {}",
            ggufs
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
        None => Err(ApiError::invalid(format!(
            "{repo} has neither safetensors weights with a config.json nor a GGUF file"
        ))),
    }
}

/// `pull` with the app's form: empty fields take their defaults.
pub fn pull_request(
    ws: &Workspace,
    hub: &Hub,
    request: &PullRequest,
    progress: &mut dyn FnMut(&DownloadProgress),
) -> Result<ModelEntry> {
    let given = |v: &Option<String>| {
        v.as_deref()
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    let repo = request.repo.trim();
    if repo.split('/').filter(|p| !p.is_empty()).count() != 2 {
        return Err(ApiError::invalid(format!(
            "repo: `{repo}` is not a hub repository id; write it as owner/name, e.g. HuggingFaceTB/SmolLM2-135M-Instruct"
        )));
    }
    let revision = given(&request.revision).unwrap_or_else(|| "main".into());
    pull(
        ws,
        hub,
        repo,
        &revision,
        given(&request.file).as_deref(),
        given(&request.name).as_deref(),
        progress,
    )
}

/// Downloads a model into the registry under `name` (default: the repository's name).
pub fn pull(
    ws: &Workspace,
    hub: &Hub,
    repo: &str,
    revision: &str,
    file: Option<&str>,
    name: Option<&str>,
    progress: &mut dyn FnMut(&DownloadProgress),
) -> Result<ModelEntry> {
    let name = name.map(str::to_string).unwrap_or_else(|| {
        models::name_from_path(Path::new(repo.rsplit('/').next().unwrap_or(repo)))
    });
    models::check_name(&name)?;
    // One download per staging folder, from any process; the check below then sees a model
    // another download finished meanwhile.
    let _lock = JobLock::acquire(&jobs::pull_lock_path(ws, &name), JobKind::Download, repo)?;
    if models::resolve(ws, &name).is_ok() {
        return Err(ApiError::new(
            ErrorCode::Exists,
            format!("a model named `{name}` is already installed; pass --name to choose another"),
        ));
    }
    let listing = hub.list(repo, revision)?;
    let names: Vec<String> = listing.files.iter().map(|f| f.name.clone()).collect();
    let (wanted, format, entry) = choose_files(repo, &names, file)?;
    let pinned = listing.pin(revision);
    // Downloads go to a hidden staging folder that survives interruption (for resuming) and
    // becomes the model's folder only once every file is complete, checked and loads.
    let staging: PathBuf = ws.models_dir().join(format!(".pull-{name}"));
    claim_staging(&staging, repo, pinned)?;
    let count = wanted.len() as u32;
    for (i, f) in wanted.iter().enumerate() {
        let listed = listing.file(f).expect("chosen from the listing");
        hub.download_checked(
            repo,
            pinned,
            listed,
            &staging.join(f),
            &mut |done, total| {
                progress(&DownloadProgress {
                    file: f.clone(),
                    file_index: i as u32,
                    file_count: count,
                    downloaded_bytes: done,
                    total_bytes: total,
                })
            },
        )?;
    }
    let stamp = staging.join(STAGING_SOURCE);
    std::fs::remove_file(&stamp).map_err(|e| ApiError::io(&stamp, e))?;
    let entry_path = staging.join(&entry);
    tunelab_engine::verify(&entry_path)?;
    let manifest = ModelManifest {
        name: name.clone(),
        role: ModelRole::Chat,
        format,
        entry: PathBuf::from(entry),
        description: format!("{repo} from the Hugging Face hub"),
        source: ModelSource::Hub {
            repo: repo.to_string(),
            revision: pinned.to_string(),
        },
    };
    manifest.write(&staging)?;
    let folder = ws.models_dir().join(&name);
    std::fs::rename(&staging, &folder).map_err(|e| ApiError::io(&folder, e))?;
    let listed = models::list(ws)?;
    listed
        .into_iter()
        .find(|m| m.name == name)
        .ok_or_else(|| ApiError::new(ErrorCode::Internal, "the pulled model is not listed"))
}

#[cfg(test)]
mod tests {
    use super::choose_files;
    use crate::models::ModelFormat;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn folders_take_config_tokenizer_and_weights_only() {
        let files = names(&[
            "README.md",
            "config.json",
            "model.safetensors",
            "tokenizer.json",
            "onnx/model.onnx",
            "original/consolidated.safetensors",
        ]);
        let (wanted, format, entry) = choose_files("a/b", &files, None).unwrap();
        assert_eq!(format, ModelFormat::Hf);
        assert_eq!(entry, ".");
        assert_eq!(
            wanted,
            names(&["config.json", "model.safetensors", "tokenizer.json"])
        );
    }

    #[test]
    fn names_that_would_leave_the_model_folder_are_not_files() {
        for ok in ["model.gguf", "sub/dir/model.safetensors", "a..b.gguf"] {
            assert!(super::stays_inside(ok), "{ok}");
        }
        for bad in [
            "",
            "../evil.gguf",
            "a/../../evil.gguf",
            "/etc/passwd",
            "a//b",
            "./x",
            "a\\..\\b",
        ] {
            assert!(!super::stays_inside(bad), "{bad}");
        }
    }

    #[test]
    fn the_token_goes_only_over_https() {
        let hub = super::Hub::new("http://mirror.lan", Some("secret".into()));
        assert!(hub.auth("http://mirror.lan/a/b/resolve/main/x").is_none());
        let (name, value) = hub
            .auth("https://huggingface.co/a/b/resolve/main/x")
            .unwrap();
        assert_eq!((name, value.as_str()), ("Authorization", "Bearer secret"));
        assert!(super::Hub::new("https://x", None)
            .auth("https://x/y")
            .is_none());
    }

    #[test]
    fn gguf_repositories_pick_a_sensible_quantization_or_ask() {
        let files = names(&["m.Q2_K.gguf", "m.Q4_K_M.gguf", "m.Q8_0.gguf"]);
        assert_eq!(
            choose_files("a/b", &files, None).unwrap().0,
            names(&["m.Q4_K_M.gguf"])
        );
        let files = names(&["m.IQ2.gguf", "m.IQ3.gguf"]);
        let err = choose_files("a/b", &files, None).unwrap_err();
        assert!(err.message.contains("--file") && err.message.contains("m.IQ3.gguf"));
        assert!(choose_files("a/b", &files, Some("nope.gguf")).is_err());
    }
}

//! The manifests-folder source (`--manifests DIR`): Kubernetes YAML files
//! with Services, EndpointSlices and `List`s of them, several documents per
//! file. Other kinds are ignored, so a folder of real manifests works.
//!
//! The folder is watched with `notify`; where the file system gives no
//! events it is rescanned every [`RESCAN_INTERVAL`] instead. Every
//! scan re-reads the files and applies the whole result as one replace; the
//! store only rebuilds the services that changed. A file that does not parse
//! is reported with its path, line and reason, and its last good content
//! stays in service.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use notify::Watcher;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::ClusterError;
use super::model::{ServiceInfo, SliceInfo};
use super::store::{Change, ClusterZone, SyncSource};

/// Rescan period where the file system gives no events.
pub const RESCAN_INTERVAL: Duration = Duration::from_secs(1);
/// Wait after a file event so an editor can finish writing.
pub const DEBOUNCE: Duration = Duration::from_millis(100);
/// Files read per scan; the rest are skipped with an error.
pub const MAX_FILES: usize = 10_000;
/// Largest manifest file read.
pub const MAX_FILE_BYTES: u64 = 64 << 20;

/// Why a manifest file cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{path}:{line}: {reason}")]
pub struct ManifestError {
    pub path: String,
    /// 1-based line; the first line of the document for semantic errors.
    pub line: usize,
    pub reason: String,
}

/// The objects of one file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FileObjects {
    pub services: Vec<ServiceInfo>,
    pub slices: Vec<SliceInfo>,
}

/// Parser limits for one document. serde-saphyr's default budget (250k
/// nodes) refuses a `List` of some 15k Services; [`MAX_FILE_BYTES`]
/// already bounds the work, so the node and event limits follow it.
fn yaml_options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_nodes: MAX_FILE_BYTES as usize,
            max_events: MAX_FILE_BYTES as usize,
        },
    }
}

/// Splits a YAML stream into documents, with the line each starts on.
fn documents(text: &str) -> Vec<(usize, String)> {
    let mut docs = Vec::new();
    let mut start = 1;
    let mut current = String::new();
    for (idx, line) in text.lines().enumerate() {
        let separator = line.strip_prefix("---").map(str::trim_start);
        if separator.is_some_and(|rest| rest.is_empty() || rest.starts_with('#')) {
            docs.push((start, std::mem::take(&mut current)));
            start = idx + 2;
            continue;
        }
        current.push_str(line);
        current.push('\n');
    }
    docs.push((start, current));
    docs
}

/// Parses one file's text (the path is only used in errors).
pub fn parse_file(path: &Path, text: &str) -> Result<FileObjects, ManifestError> {
    let mut out = FileObjects::default();
    for (start, doc) in documents(text) {
        let err = |line: usize, reason: String| ManifestError {
            path: path.display().to_string(),
            line,
            reason,
        };
        // Kubernetes objects are JSON at heart: YAML goes into a JSON value,
        // which k8s-openapi's types then read.
        let value: serde_json::Value = serde_saphyr::from_str_with_options(&doc, yaml_options())
            .map_err(|e| {
                let line = e
                    .location()
                    .map_or(start, |l| start + (l.line() as usize).saturating_sub(1));
                err(line, super::yaml_error(&e, start - 1))
            })?;
        if value.is_null() {
            continue;
        }
        collect(value, &mut out).map_err(|reason| err(start, reason))?;
    }
    Ok(out)
}

fn collect(value: serde_json::Value, out: &mut FileObjects) -> Result<(), String> {
    let kind = value
        .get("kind")
        .and_then(|k| k.as_str())
        .unwrap_or_default()
        .to_string();
    match kind.as_str() {
        "Service" => {
            let svc: Service =
                serde_json::from_value(value).map_err(|e| format!("Service: {e}"))?;
            out.services
                .push(ServiceInfo::from_service(&svc).map_err(|e| e.to_string())?);
        }
        "EndpointSlice" => {
            let slice: EndpointSlice =
                serde_json::from_value(value).map_err(|e| format!("EndpointSlice: {e}"))?;
            out.slices
                .push(SliceInfo::from_slice(&slice).map_err(|e| e.to_string())?);
        }
        k if k.ends_with("List") => {
            let items = value
                .get("items")
                .and_then(|i| i.as_array())
                .cloned()
                .unwrap_or_default();
            for item in items {
                collect(item, out)?;
            }
        }
        // Not a Kubernetes object at all (e.g. the custom records file kept
        // next to the manifests): skip it rather than fail the file.
        "" if value.get("apiVersion").is_none() => {
            tracing::warn!("manifests: ignoring a document with neither apiVersion nor kind")
        }
        "" => return Err("document has no `kind`".into()),
        other => tracing::debug!(kind = other, "manifests: ignoring kind"),
    }
    Ok(())
}

/// A file's objects as the store holds them (shared, not copied).
#[derive(Default, Clone)]
struct SharedObjects {
    services: Vec<Arc<ServiceInfo>>,
    slices: Vec<Arc<SliceInfo>>,
}

struct FileState {
    /// Hash of the text last read: enough to skip a file that did not
    /// change, without keeping the text (tens of MB at 50k Services).
    text_hash: u64,
    objects: SharedObjects,
}

pub struct ManifestsSource {
    dir: PathBuf,
    zone: Arc<ClusterZone>,
    files: BTreeMap<PathBuf, FileState>,
}

fn is_manifest(path: &Path) -> bool {
    let hidden = path
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.'));
    let ext = path.extension().and_then(|e| e.to_str());
    !hidden && matches!(ext, Some("yaml" | "yml" | "json"))
}

impl ManifestsSource {
    pub fn new(dir: PathBuf, zone: Arc<ClusterZone>) -> Result<Self, ClusterError> {
        std::fs::read_dir(&dir).map_err(|source| ClusterError::Manifests {
            path: dir.clone(),
            source,
        })?;
        Ok(Self {
            dir,
            zone,
            files: BTreeMap::new(),
        })
    }

    /// Reads the folder and applies what changed. Returns whether the state
    /// changed.
    pub fn scan(&mut self) -> bool {
        let mut paths: Vec<PathBuf> = match std::fs::read_dir(&self.dir) {
            Ok(rd) => rd
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| is_manifest(p))
                .collect(),
            Err(err) => {
                // The folder vanished (or lost permissions): keep serving.
                self.zone.metrics().error("manifests");
                tracing::error!(dir = %self.dir.display(), %err, "cannot read manifests folder; keeping the last good state");
                return false;
            }
        };
        paths.sort();
        if paths.len() > MAX_FILES {
            tracing::error!(dir = %self.dir.display(), files = paths.len(), max = MAX_FILES, "too many manifest files; reading the first ones");
            paths.truncate(MAX_FILES);
        }
        let mut changed = false;
        let before = self.files.len();
        self.files.retain(|p, _| paths.contains(p));
        changed |= before != self.files.len();
        for path in paths {
            let text = match read_limited(&path) {
                Ok(text) => text,
                Err(reason) => {
                    self.zone.metrics().error("manifests");
                    tracing::error!(path = %path.display(), %reason, "cannot read manifest; keeping its last good state");
                    continue;
                }
            };
            let text_hash = text_hash(&text);
            if self
                .files
                .get(&path)
                .is_some_and(|f| f.text_hash == text_hash)
            {
                continue;
            }
            match parse_file(&path, &text) {
                Ok(objects) => {
                    tracing::info!(path = %path.display(), services = objects.services.len(), endpointslices = objects.slices.len(), "manifest loaded");
                    let objects = SharedObjects {
                        services: (objects.services.into_iter())
                            .map(|s| self.zone.share_service(s))
                            .collect(),
                        slices: (objects.slices.into_iter())
                            .map(|s| self.zone.share_slice(s))
                            .collect(),
                    };
                    self.files.insert(path, FileState { text_hash, objects });
                    changed = true;
                }
                Err(err) => {
                    self.zone.metrics().error("manifests");
                    tracing::error!(path = %err.path, line = err.line, reason = %err.reason, "bad manifest; keeping its last good state");
                    // Remember the bad text so it is reported once, not on
                    // every rescan; the objects stay the last good ones.
                    let objects = self
                        .files
                        .get(&path)
                        .map(|f| f.objects.clone())
                        .unwrap_or_default();
                    self.files.insert(path, FileState { text_hash, objects });
                }
            }
        }
        if changed {
            self.zone.metrics().event("manifests");
            let services = self
                .files
                .values()
                .flat_map(|f| f.objects.services.iter().cloned())
                .collect();
            let slices = self
                .files
                .values()
                .flat_map(|f| f.objects.slices.iter().cloned())
                .collect();
            self.zone.apply([
                Change::ReplaceServices(services),
                Change::ReplaceSlices(slices),
            ]);
            super::release_freed_memory();
        }
        changed
    }

    pub async fn run(mut self, cancel: CancellationToken) {
        self.scan();
        self.zone.mark_synced(SyncSource::Manifests);
        // Capacity 1: events only say "look again"; more would be redundant.
        let (tx, mut rx) = mpsc::channel::<()>(1);
        let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            if res.as_ref().is_ok_and(|e| !changes_content(&e.kind)) {
                return;
            }
            let _ = tx.try_send(());
        })
        .and_then(|mut w| {
            w.watch(&self.dir, notify::RecursiveMode::NonRecursive)
                .map(|()| w)
        });
        // Events are the only trigger: a periodic rescan would read every
        // file again when nothing changed (the idle agent's largest cost).
        let (_watcher, mut poll) = match watcher {
            Ok(w) => (Some(w), None),
            Err(err) => {
                tracing::warn!(dir = %self.dir.display(), %err, "no file events; polling the manifests folder only");
                (None, Some(tokio::time::interval(RESCAN_INTERVAL)))
            }
        };
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                Some(()) = rx.recv() => tokio::time::sleep(DEBOUNCE).await,
                _ = async { poll.as_mut().expect("polling").tick().await }, if poll.is_some() => {}
            }
            self.scan();
        }
    }
}

/// Whether a file event may mean new content. inotify also reports opens
/// and reads, among them the agent's own: following those would read the
/// folder again and again for nothing.
fn changes_content(kind: &notify::EventKind) -> bool {
    use notify::event::{AccessKind, AccessMode};
    !matches!(
        kind,
        notify::EventKind::Access(
            AccessKind::Open(_) | AccessKind::Read | AccessKind::Close(AccessMode::Read)
        )
    )
}

fn text_hash(text: &str) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    std::hash::Hash::hash(text, &mut h);
    std::hash::Hasher::finish(&h)
}

fn read_limited(path: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(format!(
            "{} bytes is over the {MAX_FILE_BYTES} byte limit",
            meta.len()
        ));
    }
    std::fs::read_to_string(path).map_err(|e| e.to_string())
}

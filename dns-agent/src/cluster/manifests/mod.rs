//! The manifests-folder source (`--manifests DIR`): every `.yaml`, `.yml`
//! and `.json` file of one folder ([`parse`]), watched with inotify.
//!
//! Work follows the change: an event names a file, and only that file is
//! read again, diffed against what it defined, and the difference applied
//! (the store rebuilds only the Services it touches). The whole folder is
//! read at the start, when the kernel's event queue overflowed, when a
//! ConfigMap volume swaps its `..data` link, and, where the file system
//! gives no events at all, every [`POLL_WITHOUT_EVENTS`].
//!
//! A file is written whole with an atomic rename (write `.x.yaml.tmp`,
//! rename it to `x.yaml`); a file that becomes empty or does not parse, as
//! a half-written one may, keeps its last good content until it parses
//! again, and deleting the file deletes its objects. An object defined in
//! two files is served from the first file by path ([`index`]).
//! `--manifests-max-files` bounds the files loaded; beyond it files are
//! refused with an error and counted, never dropped silently.

mod index;
mod parse;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notify::Watcher;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub use parse::{FileObjects, MAX_FILE_BYTES, ManifestError, ReadError, is_manifest, parse_file};

use super::ClusterError;
use super::model::{ObjectKey, ServiceInfo, SliceInfo};
use super::store::{Change, ClusterZone, SyncSource};
use index::{Index, Served, first_per_key};

/// Wait after a file event so a writer can finish.
pub const DEBOUNCE: Duration = Duration::from_millis(100);
/// Changed files remembered between two rounds; more, and the next round
/// reads the whole folder instead.
pub const MAX_PENDING_PATHS: usize = 65_536;
/// Where the file system gives no events, the folder is read this often.
pub const POLL_WITHOUT_EVENTS: Duration = Duration::from_secs(5);
/// Default of `--manifests-max-files`.
pub const DEFAULT_MAX_FILES: usize = 100_000;
/// Refused files remembered by name, to load them when room frees up;
/// beyond, the folder is read again then.
const MAX_REFUSED_LISTED: usize = 10_000;
/// A ConfigMap volume's link to its current files: it is swapped, the
/// links to it are not, on every update.
const CONFIGMAP_DATA_LINK: &str = "..data";

/// What a file last gave.
struct FileState {
    /// Hash of the text last read, to skip a file that did not change.
    text_hash: u64,
    /// The path, shared by the index entries of the file's objects.
    path: Arc<Path>,
    /// The objects of the last text that parsed, in the store's `Arc`s.
    services: Vec<Arc<ServiceInfo>>,
    slices: Vec<Arc<SliceInfo>>,
}

pub struct ManifestsSource {
    dir: PathBuf,
    zone: Arc<ClusterZone>,
    max_files: usize,
    files: HashMap<PathBuf, FileState>,
    services: Index<ServiceInfo>,
    slices: Index<SliceInfo>,
    /// Files not loaded because of `max_files`, the first by path first.
    refused: BTreeSet<PathBuf>,
    /// More were refused than `refused` lists.
    refused_unlisted: bool,
    /// The folder unreadable at each rescan: logged when it starts,
    /// summarised, and when it reads again.
    unreadable: crate::logging::repeated::Repeated,
}

/// What the watcher saw since the last round.
#[derive(Default)]
struct Pending {
    paths: HashSet<PathBuf>,
    rescan: bool,
}

impl Pending {
    /// Notes what `event` asks to read again; false when it asks nothing.
    fn add(&mut self, dir: &Path, event: notify::Result<notify::Event>) -> bool {
        let event = match event {
            // inotify reports opens and reads too, the agent's own among
            // them: following those, every read would cause the next.
            Ok(event) if !changes_content(&event.kind) => return false,
            Ok(event) if !event.need_rescan() => event,
            // Lost events (queue overflow) or a watcher error.
            _ => {
                self.rescan = true;
                return true;
            }
        };
        for path in event.paths {
            let name = path.file_name().and_then(|n| n.to_str());
            if path == dir || name == Some(CONFIGMAP_DATA_LINK) {
                self.rescan = true;
            } else if is_manifest(&path) && path.parent() == Some(dir) {
                if self.paths.len() >= MAX_PENDING_PATHS {
                    self.rescan = true;
                    self.paths.clear();
                }
                if !self.rescan {
                    self.paths.insert(path);
                }
            }
        }
        true
    }
}

/// Whether a file event may mean new content (not an open or a read).
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
    let mut h = DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}

fn service_change((key, served): Served<ServiceInfo>) -> Change {
    match served {
        Some(svc) => Change::UpsertService(svc),
        None => Change::DeleteService(key),
    }
}

fn slice_change((key, served): Served<SliceInfo>) -> Change {
    match served {
        Some(slice) => Change::UpsertSlice(slice),
        None => Change::DeleteSlice(key),
    }
}

impl ManifestsSource {
    pub fn new(
        dir: PathBuf,
        zone: Arc<ClusterZone>,
        max_files: usize,
    ) -> Result<Self, ClusterError> {
        std::fs::read_dir(&dir).map_err(|source| ClusterError::Manifests {
            path: dir.clone(),
            source,
        })?;
        Ok(Self {
            dir,
            zone,
            max_files: max_files.max(1),
            files: HashMap::new(),
            services: Index::default(),
            slices: Index::default(),
            refused: BTreeSet::new(),
            refused_unlisted: false,
            unreadable: Default::default(),
        })
    }

    /// Reads the whole folder: files gone are forgotten, the others read
    /// again (those that did not change cost a read and a hash).
    pub fn rescan(&mut self) {
        let listing: BTreeSet<PathBuf> = match std::fs::read_dir(&self.dir) {
            Ok(rd) => {
                self.unreadable.recovered("manifests folder");
                rd.filter_map(|e| e.ok())
                    .map(|e| e.path())
                    .filter(|p| is_manifest(p))
                    .collect()
            }
            Err(err) => {
                // The folder vanished (or lost permissions): keep serving.
                self.zone.metrics().error("manifests");
                let what = format!(
                    "cannot read the manifests folder {}; keeping the last good state",
                    self.dir.display()
                );
                self.unreadable.failed(&what, &err);
                return;
            }
        };
        let mut changes = Vec::new();
        let gone: Vec<PathBuf> = self
            .files
            .keys()
            .filter(|p| !listing.contains(*p))
            .cloned()
            .collect();
        for path in gone {
            self.forget(&path, &mut changes);
        }
        self.refused.clear();
        self.refused_unlisted = false;
        for path in &listing {
            self.load(path, &mut changes);
        }
        self.apply(changes);
        // A whole folder read: its texts and parse buffers are free now.
        crate::cluster::release_freed_memory();
    }

    /// Reads again the files at `paths` (changed, created or deleted).
    pub fn reload(&mut self, paths: impl IntoIterator<Item = PathBuf>) {
        let mut paths: Vec<PathBuf> = paths.into_iter().collect();
        // In path order, so which files the limit admits does not depend
        // on the order of events.
        paths.sort();
        let mut changes = Vec::new();
        for path in &paths {
            self.load(path, &mut changes);
        }
        self.admit_refused(&mut changes);
        self.apply(changes);
    }

    /// Files are counted against `max_files` when loaded: fill the room
    /// deletions left with refused files.
    fn admit_refused(&mut self, changes: &mut Vec<Change>) {
        while self.files.len() < self.max_files {
            let Some(path) = self.refused.pop_first() else {
                break;
            };
            self.load(&path, changes);
        }
        if self.files.len() < self.max_files && self.refused_unlisted {
            self.refused_unlisted = false;
            self.apply(std::mem::take(changes));
            self.rescan();
        }
    }

    fn load(&mut self, path: &Path, changes: &mut Vec<Change>) {
        self.zone.metrics().manifest_reads.inc();
        let text = match parse::read_limited(path) {
            Ok(text) => text,
            Err(ReadError::Missing) => {
                self.forget(path, changes);
                return;
            }
            Err(err) => {
                self.zone.metrics().error("manifests");
                tracing::error!(path = %path.display(), %err, "cannot read manifest; keeping its last good state");
                return;
            }
        };
        let hash = text_hash(&text);
        if self.files.get(path).is_some_and(|f| f.text_hash == hash) {
            return;
        }
        if !self.files.contains_key(path) && self.files.len() >= self.max_files {
            self.refuse(path);
            return;
        }
        let state = self.files.entry(path.to_path_buf()).or_insert(FileState {
            text_hash: 0,
            path: path.into(),
            services: Vec::new(),
            slices: Vec::new(),
        });
        // Remembered whatever comes next, so that a bad text is reported
        // once, not on every event.
        state.text_hash = hash;
        if text.trim().is_empty() {
            tracing::warn!(path = %path.display(), "manifest is empty: keeping its last good content until it has some (write manifests with an atomic rename; delete a file to remove its objects)");
            return;
        }
        match parse_file(path, &text) {
            Ok(objects) => {
                tracing::info!(path = %path.display(), services = objects.services.len(), endpointslices = objects.slices.len(), "manifest loaded");
                self.set_objects(path, objects, changes);
            }
            Err(err) => {
                self.zone.metrics().error("manifests");
                tracing::error!(path = %err.path, line = err.line, reason = %err.reason, "bad manifest; keeping its last good state");
            }
        }
    }

    fn refuse(&mut self, path: &Path) {
        if self.refused.contains(path) {
            return;
        }
        self.zone.metrics().error("manifests");
        tracing::error!(path = %path.display(), max = self.max_files, "too many manifest files: this one is not loaded (raise --manifests-max-files)");
        if self.refused.len() < MAX_REFUSED_LISTED {
            self.refused.insert(path.to_path_buf());
        } else {
            self.refused_unlisted = true;
        }
    }

    fn forget(&mut self, path: &Path, changes: &mut Vec<Change>) {
        self.refused.remove(path);
        if self.files.contains_key(path) {
            tracing::info!(path = %path.display(), "manifest removed: its objects go with it");
            self.set_objects(path, FileObjects::default(), changes);
            self.files.remove(path);
        }
    }

    /// `path` now defines `objects`: the changes of what is served. The
    /// objects are kept in the store's `Arc`s where it holds them already
    /// (`share_*`), so the file's state and the index add no copy.
    fn set_objects(&mut self, path: &Path, objects: FileObjects, changes: &mut Vec<Change>) {
        let (services, dropped_services) = first_per_key(objects.services);
        let (slices, dropped_slices) = first_per_key(objects.slices);
        // Into new vectors: collecting in place would keep the parsed
        // objects' whole allocation for the pointers.
        let mut shared_services = Vec::with_capacity(services.len());
        shared_services.extend(services.into_iter().map(|s| self.zone.share_service(s)));
        // A slice of a Service in the same file holds that Service's name
        // string (the store's own, when it holds the Service already).
        let names: HashMap<&ObjectKey, &Arc<str>> = shared_services
            .iter()
            .map(|s| (&s.key, &s.key.name))
            .collect();
        let mut shared_slices = Vec::with_capacity(slices.len());
        shared_slices.extend(slices.into_iter().map(|mut slice| {
            if let Some(name) = names.get(&slice.service) {
                slice.service.name = Arc::clone(name);
            }
            self.zone.share_slice(slice)
        }));
        drop(names);
        let (services, slices) = (shared_services, shared_slices);
        if dropped_services + dropped_slices > 0 {
            self.zone.metrics().error("manifests");
            tracing::warn!(path = %path.display(), duplicates = dropped_services + dropped_slices,
                "objects defined twice in one manifest: the first definition wins");
        }
        let old = self.files.get_mut(path).expect("loaded before");
        let (old_services, old_slices) = (
            std::mem::take(&mut old.services),
            std::mem::take(&mut old.slices),
        );
        let file = old.path.clone();
        let (service_changes, dup_services) =
            self.services.set_file(&file, &old_services, &services);
        let (slice_changes, dup_slices) = self.slices.set_file(&file, &old_slices, &slices);
        drop((old_services, old_slices));
        for _ in 0..dup_services + dup_slices {
            self.zone.metrics().error("manifests");
        }
        changes.extend(service_changes.into_iter().map(service_change));
        changes.extend(slice_changes.into_iter().map(slice_change));
        let state = self.files.get_mut(path).expect("loaded before");
        state.services = services;
        state.slices = slices;
    }

    fn apply(&self, changes: Vec<Change>) {
        let m = self.zone.metrics();
        m.manifest_files.set(self.files.len() as i64);
        let refused = self.refused.len() + usize::from(self.refused_unlisted);
        m.manifest_files_refused.set(refused as i64);
        m.manifest_duplicates
            .set((self.services.duplicates() + self.slices.duplicates()) as i64);
        if changes.is_empty() {
            return;
        }
        m.event("manifests");
        self.zone.apply(changes);
    }

    pub async fn run(mut self, cancel: CancellationToken) {
        self.rescan();
        self.zone.mark_synced(SyncSource::Manifests);
        let pending = Arc::new(Mutex::new(Pending::default()));
        let wake = Arc::new(Notify::new());
        let watcher = {
            let (pending, wake, dir) = (pending.clone(), wake.clone(), self.dir.clone());
            notify::recommended_watcher(move |event| {
                let wanted = pending
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .add(&dir, event);
                if wanted {
                    wake.notify_one();
                }
            })
            .and_then(|mut w| {
                w.watch(&self.dir, notify::RecursiveMode::NonRecursive)
                    .map(|()| w)
            })
        };
        let (_watcher, mut poll) = match watcher {
            Ok(w) => (Some(w), None),
            Err(err) => {
                tracing::warn!(dir = %self.dir.display(), %err, every = ?POLL_WITHOUT_EVENTS, "no file events here: reading the whole manifests folder periodically instead");
                (None, Some(tokio::time::interval(POLL_WITHOUT_EVENTS)))
            }
        };
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = wake.notified() => tokio::time::sleep(DEBOUNCE).await,
                _ = async { poll.as_mut().expect("polling").tick().await }, if poll.is_some() => {
                    pending.lock().unwrap_or_else(|e| e.into_inner()).rescan = true;
                }
            }
            let round = std::mem::take(&mut *pending.lock().unwrap_or_else(|e| e.into_inner()));
            if round.rescan {
                self.rescan();
            } else {
                self.reload(round.paths);
            }
        }
    }
}

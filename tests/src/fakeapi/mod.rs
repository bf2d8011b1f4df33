//! A fake Kubernetes API server for tests: the real list and watch protocol
//! kube-rs's `watcher` speaks, for `core/v1` Services and ConfigMaps and
//! `discovery.k8s.io/v1` EndpointSlices, over plain HTTP/1.1.
//!
//! What kube 5's watcher sends (read in kube-runtime's `watcher.rs` and
//! kube-core's `params.rs`), and what this server does with it:
//! - list: `GET <collection>?limit=500[&continue=..]&resourceVersion=0&resourceVersionMatch=NotOlderThan`
//!   → a `<Kind>List` with `metadata.resourceVersion`, paged by `limit` and
//!   `continue` (an offset);
//! - watch: `GET <collection>?watch=true&timeoutSeconds=290&allowWatchBookmarks=true&resourceVersion=N`
//!   → newline-delimited ADDED/MODIFIED/DELETED events after N, BOOKMARKs
//!   every [`BOOKMARK_INTERVAL`], and an ERROR event with a 410 `Status`
//!   when N is older than the kept history (see [`FakeApi::expire`]).
//!
//! Faults: [`FakeApi::drop_watches`], [`FakeApi::expire`] (410 on resume),
//! [`FakeApi::fail_next`] (500s), [`FakeApi::set_down`], [`FakeApi::set_hang`],
//! [`FakeApi::stall_watches`] (open watches go silent).
//! [`FakeApi::kubeconfig`] is a kubeconfig file for the real kube client.

pub mod fixtures;
mod http;
mod node_api;
pub mod state;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

pub use node_api::NodeApi;
pub use state::Resource;
use state::{State, WatchEvent};

/// How often an idle watch gets a BOOKMARK.
pub const BOOKMARK_INTERVAL: Duration = Duration::from_millis(500);
/// Open connections served at once; more are closed at accept.
pub const MAX_CONNECTIONS: usize = 256;
/// Request lines remembered for [`FakeApi::requests`].
pub const MAX_REQUEST_LOG: usize = 1000;
/// Events buffered per watch before the fake ends it (the client resumes).
pub const WATCH_BUFFER: usize = 4096;

#[derive(Debug, Default)]
pub(crate) struct Faults {
    pub fail_next: u32,
    pub down: bool,
}

pub(crate) struct Shared {
    pub state: Mutex<State>,
    pub events: broadcast::Sender<WatchEvent>,
    pub drop_watches: watch::Sender<u64>,
    pub stall_watches: watch::Sender<u64>,
    pub hang: watch::Sender<bool>,
    pub faults: Mutex<Faults>,
    pub requests: Mutex<VecDeque<String>>,
}

/// A running fake API server; stops and removes its kubeconfig on drop.
pub struct FakeApi {
    addr: SocketAddr,
    shared: Arc<Shared>,
    cancel: CancellationToken,
    dir: PathBuf,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

impl FakeApi {
    /// Listens on 127.0.0.1 (a free port) and writes the kubeconfig.
    pub async fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            events: broadcast::channel(WATCH_BUFFER).0,
            drop_watches: watch::channel(0).0,
            stall_watches: watch::channel(0).0,
            hang: watch::channel(false).0,
            faults: Mutex::new(Faults::default()),
            requests: Mutex::new(VecDeque::new()),
        });
        let dir = std::env::temp_dir().join(format!(
            "nodedns-fakeapi-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("kubeconfig"), kubeconfig_text(addr))?;
        let cancel = CancellationToken::new();
        tokio::spawn(http::serve(listener, shared.clone(), cancel.clone()));
        Ok(Self {
            addr,
            shared,
            cancel,
            dir,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A kubeconfig pointing at this server (no credentials).
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Creates or replaces an object (Service, EndpointSlice or ConfigMap,
    /// picked by its `kind`); watchers get ADDED or MODIFIED.
    pub fn apply(&self, object: Value) {
        let event = self.state().apply(object);
        let _ = self.shared.events.send(event);
    }

    /// Applies every Service, EndpointSlice and ConfigMap in a YAML file or
    /// a folder of them (`List`s expanded, other kinds skipped), e.g. the
    /// demo cluster in `deploy/examples`. Returns how many were applied.
    pub fn apply_manifests(&self, path: &Path) -> Result<usize, String> {
        let files: Vec<PathBuf> = if path.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| format!("{}: {e}", path.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
                .collect();
            files.sort();
            files
        } else {
            vec![path.to_path_buf()]
        };
        let mut applied = 0;
        for file in files {
            let text =
                std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            let docs: Vec<Value> = serde_saphyr::from_multiple(&text)
                .map_err(|e| format!("{}: {e}", file.display()))?;
            for value in docs {
                applied += self.apply_value(value);
            }
        }
        Ok(applied)
    }

    fn apply_value(&self, value: Value) -> usize {
        let kind = value["kind"].as_str().unwrap_or_default();
        if Resource::from_kind(kind).is_some() {
            self.apply(value);
            1
        } else if kind.ends_with("List") {
            let items = value["items"].as_array().cloned().unwrap_or_default();
            items.into_iter().map(|item| self.apply_value(item)).sum()
        } else {
            0
        }
    }

    /// Deletes an object; watchers get DELETED. Returns whether it existed.
    pub fn delete(&self, resource: Resource, namespace: &str, name: &str) -> bool {
        let event = self.state().delete(resource, namespace, name);
        match event {
            Some(event) => {
                let _ = self.shared.events.send(event);
                true
            }
            None => false,
        }
    }

    /// The current resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.state().rv
    }

    /// Ends every open watch (the client resumes from its last version).
    pub fn drop_watches(&self) {
        self.shared.drop_watches.send_modify(|g| *g += 1);
    }

    /// Every open watch goes silent and stays open: no events, no
    /// bookmarks, not even the end at its timeout, as over a connection
    /// that died without a word. New watches work as usual.
    pub fn stall_watches(&self) {
        self.shared.stall_watches.send_modify(|g| *g += 1);
    }

    /// Forgets the event history and ends every watch: resuming gets an
    /// ERROR event with `410 Gone`, so the client must relist.
    pub fn expire(&self) {
        {
            let mut state = self.state();
            state.compacted = state.rv;
            state.history.clear();
        }
        self.drop_watches();
    }

    fn faults(&self) -> std::sync::MutexGuard<'_, Faults> {
        self.shared.faults.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next `n` requests get `500 Internal Server Error`.
    pub fn fail_next(&self, n: u32) {
        self.faults().fail_next = n;
    }

    /// While down, every request gets `503` and open watches end.
    pub fn set_down(&self, down: bool) {
        self.faults().down = down;
        if down {
            self.drop_watches();
        }
    }

    /// While hung, new requests wait without an answer.
    pub fn set_hang(&self, hang: bool) {
        self.shared.hang.send_replace(hang);
    }

    /// Request lines (`GET /path?query`) received so far, oldest first.
    pub fn requests(&self) -> Vec<String> {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    /// How many list (not watch) requests the server received: a relist
    /// after a 410 adds one per resource.
    pub fn list_requests(&self) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.starts_with("GET ") && !r.contains("watch=true"))
            .count()
    }
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        self.cancel.cancel();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn kubeconfig_text(addr: SocketAddr) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: fake
  cluster:
    server: http://{addr}
contexts:
- name: fake
  context:
    cluster: fake
    user: fake
    namespace: default
current-context: fake
users:
- name: fake
  user: {{}}
"
    )
}

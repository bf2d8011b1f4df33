//! Custom host records and forwarding settings, from a file (standalone) or
//! a ConfigMap (in cluster). The format is in the [module docs](super).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::rr::Name;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::runtime::watcher::{self, Event, watcher};
use kube::{Api, Client};
use serde_json::Value;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::ClusterError;
use super::apiserver::next_event;
use super::hosts::HostsTable;
use super::retry::Retry;
use super::store::ClusterZone;
use crate::zone::ForwardPolicy;

/// How often the custom records file is re-read. It is small, and polling
/// also catches editors that replace the file instead of writing it.
pub const FILE_POLL_INTERVAL: Duration = Duration::from_millis(500);

/// Largest custom records file or ConfigMap value accepted.
pub const MAX_CUSTOM_BYTES: usize = 4 << 20;

const DNS_PORT: u16 = 53;

/// Parsed custom configuration.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CustomConfig {
    pub hosts: HostsTable,
    pub policy: ForwardPolicy,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CustomError {
    #[error("not a YAML/JSON map of keys: {0}")]
    Syntax(String),
    #[error("hosts: {0}")]
    Hosts(#[from] super::hosts::HostsError),
    #[error("stubDomains: {0}")]
    StubDomains(String),
    #[error("upstreamNameservers: {0}")]
    Upstreams(String),
    #[error("unknown key {0:?} (expected hosts, stubDomains, upstreamNameservers)")]
    UnknownKey(String),
    #[error("{0} bytes is over the {MAX_CUSTOM_BYTES} byte limit")]
    TooBig(usize),
}

/// `IP`, `IP:port` or `[IPv6]:port`; the port defaults to 53.
fn parse_server(s: &str) -> Result<SocketAddr, String> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, DNS_PORT));
    }
    s.parse::<SocketAddr>()
        .map_err(|_| format!("{s:?} is not an IP address or IP:port"))
}

/// A value that is either a JSON/YAML string (the kube-dns ConfigMap style)
/// or already structured YAML (handier in a file).
fn structured<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, String> {
    match value {
        Value::String(text) => serde_saphyr::from_str(&text).map_err(|e| super::yaml_error(&e, 0)),
        other => serde_json::from_value(other).map_err(|e| e.to_string()),
    }
}

impl CustomConfig {
    /// Parses the ConfigMap `data` map (or the file's top-level map).
    pub fn from_map(map: BTreeMap<String, Value>) -> Result<Self, CustomError> {
        let mut config = Self::default();
        for (key, value) in map {
            match key.as_str() {
                "hosts" => {
                    let text = match value {
                        Value::String(s) => s,
                        Value::Null => String::new(),
                        _ => return Err(CustomError::Syntax("hosts must be a text block".into())),
                    };
                    config.hosts = HostsTable::parse(&text)?;
                }
                "stubDomains" => {
                    let map: BTreeMap<String, Vec<String>> =
                        structured(value).map_err(CustomError::StubDomains)?;
                    for (zone, servers) in map {
                        let mut name = Name::from_ascii(&zone)
                            .map_err(|e| CustomError::StubDomains(format!("{zone:?}: {e}")))?;
                        name.set_fqdn(true);
                        let servers = servers
                            .iter()
                            .map(|s| parse_server(s))
                            .collect::<Result<Vec<_>, _>>()
                            .map_err(CustomError::StubDomains)?;
                        config
                            .policy
                            .stub_domains
                            .push((name.to_lowercase(), servers));
                    }
                }
                "upstreamNameservers" => {
                    let list: Vec<String> = structured(value).map_err(CustomError::Upstreams)?;
                    config.policy.upstreams = list
                        .iter()
                        .map(|s| parse_server(s))
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(CustomError::Upstreams)?;
                }
                other => return Err(CustomError::UnknownKey(other.to_string())),
            }
        }
        Ok(config)
    }

    /// Parses the custom records file (YAML or JSON; empty means nothing).
    pub fn parse_file(text: &str) -> Result<Self, CustomError> {
        if text.len() > MAX_CUSTOM_BYTES {
            return Err(CustomError::TooBig(text.len()));
        }
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        let map: BTreeMap<String, Value> = serde_saphyr::from_str(text)
            .map_err(|e| CustomError::Syntax(super::yaml_error(&e, 0)))?;
        Self::from_map(map)
    }

    fn from_configmap(cm: &ConfigMap) -> Result<Self, CustomError> {
        let data = cm.data.clone().unwrap_or_default();
        let size: usize = data.values().map(String::len).sum();
        if size > MAX_CUSTOM_BYTES {
            return Err(CustomError::TooBig(size));
        }
        // Other keys may live in a shared ConfigMap (kube-dns's has more).
        let known = ["hosts", "stubDomains", "upstreamNameservers"];
        let map = data
            .into_iter()
            .filter(|(k, _)| known.contains(&k.as_str()))
            .map(|(k, v)| (k, Value::String(v)))
            .collect();
        Self::from_map(map)
    }
}

fn install(config: CustomConfig, zone: &ClusterZone, policy: &watch::Sender<Arc<ForwardPolicy>>) {
    zone.set_hosts(config.hosts);
    policy.send_if_modified(|current| {
        if **current == config.policy {
            return false;
        }
        *current = Arc::new(config.policy);
        true
    });
}

/// `--custom-records FILE`, re-read every [`FILE_POLL_INTERVAL`].
pub struct FileSource {
    path: PathBuf,
    zone: Arc<ClusterZone>,
    policy: watch::Sender<Arc<ForwardPolicy>>,
    last: Option<String>,
}

impl FileSource {
    /// Loads the file once: a missing or broken file at start is an error
    /// (there is no last good state to keep yet).
    pub fn new(
        path: PathBuf,
        zone: Arc<ClusterZone>,
        policy: watch::Sender<Arc<ForwardPolicy>>,
    ) -> Result<Self, ClusterError> {
        let text = std::fs::read_to_string(&path).map_err(|e| ClusterError::CustomFile {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let config = CustomConfig::parse_file(&text).map_err(|e| ClusterError::CustomFile {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        install(config, &zone, &policy);
        Ok(Self {
            path,
            zone,
            policy,
            last: Some(text),
        })
    }

    pub async fn run(mut self, cancel: CancellationToken) {
        let mut tick = tokio::time::interval(FILE_POLL_INTERVAL);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tick.tick() => self.reload().await,
            }
        }
    }

    async fn reload(&mut self) {
        let text = match tokio::fs::read_to_string(&self.path).await {
            Ok(text) => text,
            Err(err) => {
                if self.last.take().is_some() {
                    self.zone.metrics().error("custom");
                    tracing::error!(path = %self.path.display(), %err, "cannot read custom records; keeping the last good ones");
                }
                return;
            }
        };
        if self.last.as_deref() == Some(text.as_str()) {
            return;
        }
        self.zone.metrics().event("custom");
        match CustomConfig::parse_file(&text) {
            Ok(config) => {
                tracing::info!(path = %self.path.display(), hosts = config.hosts.len(), "custom records reloaded");
                install(config, &self.zone, &self.policy);
            }
            Err(err) => {
                self.zone.metrics().error("custom");
                tracing::error!(path = %self.path.display(), %err, "bad custom records file; keeping the last good ones");
            }
        }
        self.last = Some(text);
    }
}

/// `--custom-configmap ns/name`: a watch on that one ConfigMap. A deleted
/// ConfigMap means no custom records and default forwarding.
pub async fn run_configmap(
    client: Client,
    namespace: String,
    name: String,
    zone: Arc<ClusterZone>,
    policy: watch::Sender<Arc<ForwardPolicy>>,
    watch_timeout: u32,
    cancel: CancellationToken,
) {
    let api: Api<ConfigMap> = Api::namespaced(client, &namespace);
    let config = watcher::Config::default()
        .fields(&format!("metadata.name={name}"))
        .timeout(watch_timeout);
    let mut stream = std::pin::pin!(watcher(api, config));
    let mut retry = Retry::new("custom");
    let metrics = zone.metrics().clone();
    let mut seen_in_list = false;
    while let Some(event) = next_event(&mut stream, &mut retry, "custom", &metrics, &cancel).await {
        let apply = |cm: &ConfigMap| match CustomConfig::from_configmap(cm) {
            Ok(config) => {
                tracing::info!(configmap = %format!("{namespace}/{name}"), hosts = config.hosts.len(), "custom records loaded");
                install(config, &zone, &policy);
            }
            Err(err) => {
                zone.metrics().error("custom");
                tracing::error!(configmap = %format!("{namespace}/{name}"), %err, "bad custom records; keeping the last good ones");
            }
        };
        match event {
            Event::Init => seen_in_list = false,
            Event::InitApply(cm) => {
                seen_in_list = true;
                apply(&cm);
            }
            Event::InitDone if !seen_in_list => install(CustomConfig::default(), &zone, &policy),
            Event::InitDone => {}
            Event::Apply(cm) => apply(&cm),
            Event::Delete(_) => install(CustomConfig::default(), &zone, &policy),
        }
    }
}

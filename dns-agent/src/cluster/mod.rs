//! Cluster state: Kubernetes objects in, authoritative DNS answers out.
//!
//! Sources (all feed [`ClusterZone::apply`], one code path):
//! - the API server ([`apiserver`]): a `kube::runtime::watcher` on
//!   `core/v1` Services and `discovery.k8s.io/v1` EndpointSlices, used unless
//!   `--manifests` is given;
//! - a manifests folder ([`manifests`], `--manifests DIR`);
//! - custom records and forwarding settings ([`custom`]), from
//!   `--custom-records FILE` or the ConfigMap `--custom-configmap ns/name`.
//!
//! The record store ([`store`]) implements [`crate::zone::Zone`]: it swaps
//! in an immutable [`snapshot`] after every batch, and the answers are read
//! from it following the Kubernetes DNS schema 1.1.0 ([`lookup`]).
//!
//! # Custom records format
//!
//! The file and the ConfigMap's `data` use the same three keys: the ones
//! kube-dns users know, plus `hosts`. `deploy/custom-records.example.yaml`
//! is the example; the README shows it and a test loads it.
//!
//! - `hosts`: a text block of hosts-style lines, `IP name [name...]`, where
//!   `#` starts a comment. Exactly those names are answered authoritatively
//!   (A, AAAA), before the cluster zone is consulted, and the first name
//!   given for an address is its PTR target. Other names, even in the same
//!   domains, are not affected.
//! - `stubDomains`: zone -> servers (`IP`, `IP:port` or `[IPv6]:port`; port
//!   53 by default). The longest matching zone wins.
//! - `upstreamNameservers`: servers that replace the default upstreams
//!   (`--upstream`, or the node's resolv.conf) when the list is not empty.
//!
//! `stubDomains` and `upstreamNameservers` are JSON (or YAML) text, as in
//! kube-dns; in the file they may also be plain YAML. The file rejects other
//! keys; a ConfigMap may hold others, which are ignored. The file is re-read
//! every 500 ms and the ConfigMap is watched, so a change applies within
//! about a second, without a restart; a broken edit is logged and the last
//! good content stays.

pub mod apiserver;
pub mod custom;
pub mod hosts;
pub mod kube_dns;
pub mod lookup;
pub mod manifests;
pub mod metrics;
pub mod model;
pub mod retry;
pub mod reverse;
mod services;
pub mod sharded;
pub mod snapshot;
pub mod store;

#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::Arc;

use ipnet::IpNet;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::metrics::Registry;
use crate::zone::ForwardPolicy;
pub use model::{ObjectKey, ServiceInfo, SliceInfo};

/// A YAML error on one line, with its line and column counted from the
/// start of the file (`lines_before`: lines that precede the parsed text).
fn yaml_error(e: &serde_saphyr::Error, lines_before: usize) -> String {
    let options = serde_saphyr::render_options! {
        snippets: serde_saphyr::SnippetMode::Off,
        line_offset: lines_before as u64,
    };
    e.without_snippet().render_with_options(options)
}
pub use snapshot::{
    DNS_SERVICE_NAME, DNS_SERVICE_NAMESPACE, EndpointRecords, PodRecords, ZoneConfig,
};
pub use store::{Change, ClusterZone, SyncSource};

/// After a large change (a relist, a manifests folder read again) the
/// parse buffers and the objects replaced are free: hand them back.
fn release_freed_memory() {
    crate::kernel::heap::release_freed();
}

/// Cluster-state flags.
#[derive(Debug, Clone, clap::Args)]
pub struct ClusterArgs {
    /// The cluster domain served authoritatively.
    #[arg(long, default_value = "cluster.local", env = "NODEDNS_CLUSTER_DOMAIN")]
    pub cluster_domain: String,

    /// TTL (seconds) of cluster records; also the negative-caching TTL.
    #[arg(long, env = "NODEDNS_TTL", default_value_t = 30)]
    pub ttl: u32,

    /// Read Services and EndpointSlices from YAML files in this folder
    /// (watched, changes apply live) instead of the API server.
    #[arg(long, env = "NODEDNS_MANIFESTS", value_name = "DIR")]
    pub manifests: Option<PathBuf>,

    /// Most manifest files loaded from --manifests; further files are not
    /// loaded, each logged as an error and counted in
    /// nodedns_cluster_manifest_files_refused.
    #[arg(long, env = "NODEDNS_MANIFESTS_MAX_FILES", default_value_t = manifests::DEFAULT_MAX_FILES)]
    pub manifests_max_files: usize,

    /// kubeconfig for the API server (default: $KUBECONFIG, then in-cluster,
    /// then ~/.kube/config).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,

    /// A service or pod CIDR whose reverse zones are answered
    /// authoritatively and whole: SOA and NS at their apexes, NXDOMAIN or
    /// NODATA for names without PTR records, nothing forwarded. Repeatable.
    #[arg(
        long = "reverse-cidr",
        env = "NODEDNS_REVERSE_CIDRS",
        value_name = "CIDR",
        value_delimiter = ',',
        value_parser = crate::cli::trimmed::<IpNet>
    )]
    pub reverse_cidrs: Vec<IpNet>,

    /// Custom host records and forwarding settings file (standalone mode;
    /// format in the README), reloaded live.
    #[arg(long, env = "NODEDNS_CUSTOM_RECORDS", value_name = "FILE")]
    pub custom_records: Option<PathBuf>,

    /// ConfigMap holding custom records and forwarding settings
    /// (`namespace/name`), watched.
    #[arg(long, env = "NODEDNS_CUSTOM_CONFIGMAP", value_name = "NS/NAME")]
    pub custom_configmap: Option<String>,

    /// Seconds each API server watch lasts before it is resumed; a watch
    /// that delivers nothing (no event, no bookmark) for this plus 5 s is
    /// restarted.
    #[arg(long, env = "NODEDNS_WATCH_TIMEOUT_SECS", default_value_t = apiserver::WATCH_TIMEOUT_SECS,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub watch_timeout_secs: u32,

    /// Pod records `a-b-c-d.<ns>.pod.<zone>`: `insecure` answers the address
    /// spelled in the name (kubeadm's default); `disabled` makes every name
    /// under `pod.<zone>` NXDOMAIN.
    #[arg(
        long,
        env = "NODEDNS_POD_RECORDS",
        value_enum,
        default_value = "insecure"
    )]
    pub pod_records: PodRecords,

    /// Which endpoints get names and PTR records: `all` gives every
    /// Service's endpoints a name under the Service (hostname or dashed IP)
    /// and a PTR to it, as CoreDNS does; `headless` only what the schema
    /// requires (names under headless Services, PTRs for hostnames). `all`
    /// grows the zone by one reverse entry per endpoint.
    #[arg(
        long,
        env = "NODEDNS_ENDPOINT_RECORDS",
        value_enum,
        default_value = "all"
    )]
    pub endpoint_records: EndpointRecords,

    /// The cluster DNS Service (`namespace/name`): while it has addresses
    /// the zone's NS record names it, as CoreDNS does; otherwise the NS is
    /// `ns.dns.<zone>`, which answers the --listen addresses.
    #[arg(long, env = "NODEDNS_DNS_SERVICE", value_name = "NS/NAME",
          default_value = "kube-system/kube-dns", value_parser = parse_object_key)]
    pub dns_service: ObjectKey,

    /// Addresses `ns.dns.<zone>` answers without a DNS Service: the
    /// resolver's --listen addresses, set by `dns-agent run`.
    #[arg(skip)]
    pub ns_addresses: Vec<std::net::IpAddr>,
}

/// `namespace/name`.
fn parse_object_key(text: &str) -> Result<ObjectKey, String> {
    match text.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok(ObjectKey::new(ns, name))
        }
        _ => Err(format!("{text:?} must be namespace/name")),
    }
}

impl Default for ClusterArgs {
    fn default() -> Self {
        Self {
            cluster_domain: "cluster.local".into(),
            ttl: 30,
            manifests: None,
            manifests_max_files: manifests::DEFAULT_MAX_FILES,
            kubeconfig: None,
            reverse_cidrs: Vec::new(),
            custom_records: None,
            custom_configmap: None,
            watch_timeout_secs: apiserver::WATCH_TIMEOUT_SECS,
            pod_records: PodRecords::Insecure,
            endpoint_records: EndpointRecords::All,
            dns_service: ObjectKey::new(DNS_SERVICE_NAMESPACE, DNS_SERVICE_NAME),
            ns_addresses: Vec::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("--cluster-domain {domain:?} is not a valid DNS name: {source}")]
    BadDomain {
        domain: String,
        source: hickory_proto::ProtoError,
    },
    #[error("cannot read kubeconfig {path}: {source} (check --kubeconfig)")]
    Kubeconfig {
        path: PathBuf,
        source: kube::config::KubeconfigError,
    },
    #[error(
        "no Kubernetes configuration found: {0} (pass --kubeconfig, set KUBECONFIG, run in a pod, or use --manifests DIR)"
    )]
    InferConfig(#[from] kube::config::InferConfigError),
    #[error("cannot create the Kubernetes client: {0}")]
    Client(#[from] kube::Error),
    #[error("manifests folder {path}: {source} (check --manifests)")]
    Manifests {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("custom records file {path}: {reason} (check --custom-records)")]
    CustomFile { path: PathBuf, reason: String },
    #[error("--custom-configmap {0:?} must be namespace/name")]
    BadConfigMapRef(String),
}

/// What the rest of the agent uses: the zone, the live forwarding policy
/// and the source tasks (they stop when the cancel token fires).
pub struct ClusterHandle {
    pub zone: Arc<ClusterZone>,
    pub forward_policy: watch::Receiver<Arc<ForwardPolicy>>,
    pub tasks: JoinSet<()>,
    /// The API server client, when a source uses one (for the
    /// `--cluster-dns-ip` default, [`kube_dns`]).
    pub client: Option<kube::Client>,
    /// Kept when no custom source owns it, so `forward_policy.changed()`
    /// waits instead of failing at once.
    _idle_policy: Option<watch::Sender<Arc<ForwardPolicy>>>,
}

impl ClusterHandle {
    /// Waits until every source finished its first full sync.
    pub async fn wait_until_ready(&self) {
        let mut changes = crate::zone::Zone::changes(&*self.zone);
        while !crate::zone::Zone::is_ready(&*self.zone) {
            if changes.changed().await.is_err() {
                return;
            }
        }
    }
}

async fn kube_client(args: &ClusterArgs) -> Result<kube::Client, ClusterError> {
    let config = match &args.kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path).map_err(|source| {
                ClusterError::Kubeconfig {
                    path: path.clone(),
                    source,
                }
            })?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|source| ClusterError::Kubeconfig {
                    path: path.clone(),
                    source,
                })?
        }
        None => kube::Config::infer().await?,
    };
    // kube's client retries 429, 503 and 504 on its own, up to 15 times from
    // 5 ms on, under each of our attempts: an overloaded API server would
    // get a burst of requests per attempt. One retry policy, ours
    // (`retry.rs`), decides when to ask again.
    let mut config = config;
    config.default_retry = false;
    Ok(kube::Client::try_from(config)?)
}

/// Builds the zone, registers its metrics and spawns the source tasks.
pub async fn start(
    args: &ClusterArgs,
    registry: &mut Registry,
    cancel: CancellationToken,
) -> Result<ClusterHandle, ClusterError> {
    let mut config = ZoneConfig::new(&args.cluster_domain, args.ttl, args.reverse_cidrs.clone())
        .map_err(|source| ClusterError::BadDomain {
            domain: args.cluster_domain.clone(),
            source,
        })?;
    config.pod_records = args.pod_records;
    config.endpoint_records = args.endpoint_records;
    config.dns_service = args.dns_service.clone();
    config.ns_addresses = args.ns_addresses.clone();
    let required: &[SyncSource] = match args.manifests {
        Some(_) => &[SyncSource::Manifests],
        None => &[SyncSource::Services, SyncSource::EndpointSlices],
    };
    let zone = Arc::new(ClusterZone::new(config, required));
    zone.metrics().register(registry);
    let (policy_tx, forward_policy) = watch::channel(Arc::new(ForwardPolicy::default()));
    let mut tasks = JoinSet::new();

    let needs_client = args.manifests.is_none() || args.custom_configmap.is_some();
    let client = if needs_client {
        Some(kube_client(args).await?)
    } else {
        None
    };

    match (&args.manifests, &client) {
        (Some(dir), _) => {
            let source = manifests::ManifestsSource::new(
                dir.clone(),
                zone.clone(),
                args.manifests_max_files,
            )?;
            tasks.spawn(source.run(cancel.clone()));
        }
        (None, Some(client)) => apiserver::spawn(
            client.clone(),
            zone.clone(),
            args.watch_timeout_secs,
            &mut tasks,
            cancel.clone(),
        ),
        (None, None) => unreachable!("a client is created when there are no manifests"),
    }

    let mut idle_policy = None;
    if let Some(path) = &args.custom_records {
        let source = custom::FileSource::new(path.clone(), zone.clone(), policy_tx)?;
        tasks.spawn(source.run(cancel.clone()));
    } else if let Some(reference) = &args.custom_configmap {
        let (ns, name) = reference
            .split_once('/')
            .filter(|(ns, name)| !ns.is_empty() && !name.is_empty() && !name.contains('/'))
            .ok_or_else(|| ClusterError::BadConfigMapRef(reference.clone()))?;
        let client = client
            .clone()
            .expect("client exists with --custom-configmap");
        tasks.spawn(custom::run_configmap(
            client,
            ns.to_string(),
            name.to_string(),
            zone.clone(),
            policy_tx,
            args.watch_timeout_secs,
            cancel.clone(),
        ));
    } else {
        idle_policy = Some(policy_tx);
    }

    Ok(ClusterHandle {
        zone,
        forward_policy,
        tasks,
        client,
        _idle_policy: idle_policy,
    })
}

//! The userspace DNS server: everything the XDP program passes up.
//!
//! - [`listen`]: UDP and TCP on every `--listen` address (SO_REUSEPORT,
//!   bounded work per client), on the interface [`interface`] manages.
//! - [`handler`]: validation, the authoritative cluster zone ([`crate::zone`]),
//!   then the [`forwarder`] (cache, coalescing, failover, serve-stale).
//!   Answers go on to [`crate::promotion`], which puts cluster answers and
//!   hot upstream answers into the kernel map.
//! - [`http`]: `/metrics` for the whole shared registry, `/healthz`, `/readyz`.
//!
//! Entry points: [`start`] binds everything and returns a [`Running`]
//! resolver (errors surface before any serving); [`run`] is start + wait.

pub mod args;
pub mod cache;
mod chase;
pub mod exchange;
pub mod forwarder;
pub mod handler;
pub mod http;
pub mod interface;
pub mod listen;
pub mod metrics;
pub mod upstreams;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use args::ResolverArgs;

use crate::metrics::coredns::Coredns;
use crate::metrics::{Exposition, process};
use crate::promotion::{AnswerSink, Promoter, PromotionConfig, PromotionMetrics};
use crate::zone::{ForwardPolicy, Zone};
use cache::{Cache, CacheConfig, Clamps};
use forwarder::{Forwarder, ForwarderConfig};
use handler::Handler;
use interface::{InterfaceError, ListenInterface};
use metrics::ResolverMetrics;

#[derive(Debug, thiserror::Error)]
pub enum ResolverError {
    #[error("no --listen address given")]
    NoListenAddress,
    #[error(transparent)]
    Interface(#[from] InterfaceError),
    #[error(transparent)]
    Bind(#[from] listen::BindError),
    #[error(
        "cannot serve HTTP on {addr} ({what}): {source} (choose another address with --{what}-addr)"
    )]
    Http {
        addr: SocketAddr,
        what: &'static str,
        source: std::io::Error,
    },
}

/// What the resolver needs from the rest of the agent.
pub struct ResolverDeps {
    /// The authoritative cluster zone.
    pub zone: Arc<dyn Zone>,
    /// Live stub domains / upstream override.
    pub policy: watch::Receiver<Arc<ForwardPolicy>>,
    /// The kernel answers map; None runs without promotion (XDP off).
    pub sink: Option<Arc<dyn AnswerSink>>,
    /// The shared registry, with every other module's metrics (and the
    /// loader's collector) already registered; `/metrics` encodes all of it.
    pub registry: Registry,
    /// The CoreDNS-compatible families; None with `--coredns-metrics=false`.
    pub coredns: Option<Coredns>,
    /// Keep the listen interface/addresses on exit (agent-wide
    /// `--keep-on-exit`, for a seamless restart).
    pub keep_interface_on_exit: bool,
}

/// A started resolver.
pub struct Running {
    tasks: JoinSet<()>,
    interface: ListenInterface,
    pub metrics_addr: SocketAddr,
    pub health_addr: SocketAddr,
}

impl Running {
    /// Waits until the cancel token fires and every task has stopped, then
    /// removes the interface/addresses (unless kept).
    pub async fn wait(mut self) {
        while let Some(r) = self.tasks.join_next().await {
            if let Err(e) = r
                && e.is_panic()
            {
                tracing::error!(error = %e, "resolver task panicked");
            }
        }
        self.interface.cleanup();
    }
}

/// Starts the resolver. Every bind happens here, so a wrong address or a
/// busy port is an error now, not a log line later.
pub async fn start(
    args: ResolverArgs,
    deps: ResolverDeps,
    cancel: CancellationToken,
) -> Result<Running, ResolverError> {
    if args.listen.is_empty() {
        return Err(ResolverError::NoListenAddress);
    }
    let ResolverDeps {
        zone,
        policy,
        sink,
        mut registry,
        coredns,
        keep_interface_on_exit,
    } = deps;
    let (coredns, coredns_registry) = match coredns {
        Some(c) => (Some(c.metrics), Some(c.registry)),
        None => (None, None),
    };
    let metrics = Arc::new(ResolverMetrics::new(&mut registry, coredns.clone()));
    let promotion_metrics = Arc::new(PromotionMetrics::new(&mut registry));

    let interface = if args.no_create_interface {
        ListenInterface::default()
    } else {
        ListenInterface::setup(&args.listen_interface, &args.listen, keep_interface_on_exit)?
    };
    let forwarder = forwarder(&args, policy, zone.clone(), metrics.clone());
    let promoter = sink.map(|sink| promoter(&args, sink, zone.clone(), promotion_metrics));
    let handler = Arc::new(Handler {
        zone_generation: zone.changes(),
        zone: zone.clone(),
        forwarder,
        promoter: promoter.clone(),
        metrics: metrics.clone(),
    });

    // Bind everything first, then spawn, so a failure leaves nothing running.
    let Sockets {
        dns,
        metrics: metrics_listener,
        health: health_listener,
        metrics_addr,
        health_addr,
    } = Sockets::bind(&args).await?;
    let mut tasks = serve_dns(dns, handler, &args, &metrics, &cancel);
    if let Some(promoter) = promoter {
        tasks.spawn(promoter.run(cancel.clone()));
    }
    let health = Arc::new(http::Health {
        zone,
        listeners_up: Default::default(),
    });
    health.listeners_up.store(true, Ordering::Relaxed);
    tasks.spawn(http::serve(
        metrics_listener,
        Arc::new(http::Pages::Metrics(Arc::new(exposition(
            registry,
            coredns,
            coredns_registry,
        )))),
        cancel.clone(),
    ));
    tasks.spawn(http::serve(
        health_listener,
        Arc::new(http::Pages::Health(health)),
        cancel.clone(),
    ));
    tracing::info!(listen = ?args.listen, port = args.port, %metrics_addr, %health_addr, "resolver serving");
    Ok(Running {
        tasks,
        interface,
        metrics_addr,
        health_addr,
    })
}

/// What `/metrics` serves: the `nodedns_` registry, the CoreDNS-compatible
/// one (with the kernel's answers brought in before each scrape) and the
/// process metrics.
fn exposition(
    registry: Registry,
    coredns: Option<Arc<crate::metrics::coredns::CorednsMetrics>>,
    coredns_registry: Option<Registry>,
) -> Exposition {
    let mut exposition = Exposition::new(vec![registry]);
    if let Some(r) = coredns_registry {
        exposition.push(r);
    }
    exposition.push(process::registry());
    if let Some(c) = coredns {
        exposition.before_scrape(move || c.sync_kernel());
    }
    exposition
}

/// The upstreams for names outside the cluster: `--upstream`, else the
/// node's resolv.conf without our own addresses.
fn default_upstreams(args: &ResolverArgs) -> Vec<SocketAddr> {
    let defaults = if args.upstreams.is_empty() {
        match std::fs::read_to_string(&args.resolv_conf) {
            Ok(text) => upstreams::from_resolv_conf(&text, &args.listen),
            Err(e) => {
                tracing::warn!(path = %args.resolv_conf.display(), error = %e, "cannot read resolv.conf: no default upstreams");
                Vec::new()
            }
        }
    } else {
        args.upstreams.clone()
    };
    if defaults.is_empty() {
        tracing::warn!(
            "no upstream servers: names outside the cluster zone get SERVFAIL (set --upstream)"
        );
    }
    tracing::info!(upstreams = ?defaults, stub_domains = args.stub_domains.len(), "forwarding configured");
    defaults
}

/// The forwarder and its cache, as the flags set them.
fn forwarder(
    args: &ResolverArgs,
    policy: watch::Receiver<Arc<ForwardPolicy>>,
    zone: Arc<dyn Zone>,
    metrics: Arc<ResolverMetrics>,
) -> Arc<Forwarder> {
    let cache = Cache::new(
        CacheConfig {
            max_entries: args.cache_entries.max(1),
            max_bytes: args.cache_bytes,
            clamps: Clamps {
                max_success: args.cache_max_success_ttl,
                max_denial: args.cache_max_denial_ttl,
                servfail: args.cache_servfail_ttl,
            },
            stale_max_age: args
                .serve_stale
                .then(|| Duration::from_secs(args.serve_stale_max_age)),
            prefetch: args
                .prefetch
                .then_some((args.prefetch_hits, args.prefetch_percent)),
        },
        metrics.clone(),
    );
    Arc::new(Forwarder::new(
        ForwarderConfig {
            defaults: default_upstreams(args),
            stubs: args.stub_domains.clone(),
            attempt_timeout: args.upstream_timeout(),
            max_outstanding: args.max_outstanding.max(1),
            serve_stale_after: args.serve_stale.then(|| args.serve_stale_after()),
            stale_ttl: args.serve_stale_ttl,
            stale_recheck: Duration::from_secs(args.serve_stale_recheck_secs),
        },
        policy,
        zone,
        cache,
        metrics,
    ))
}

/// Promotion into `sink`, as the flags set it.
fn promoter(
    args: &ResolverArgs,
    sink: Arc<dyn AnswerSink>,
    zone: Arc<dyn Zone>,
    metrics: Arc<PromotionMetrics>,
) -> Arc<Promoter> {
    Arc::new(Promoter::new(
        PromotionConfig {
            hot_threshold: args.hot_threshold,
            hot_window: Duration::from_secs(args.hot_window_secs.max(1)),
            cluster_lifetime: Duration::from_secs(args.cluster_entry_lifetime_secs.max(2)),
        },
        sink,
        zone,
        metrics,
    ))
}

/// Every socket the resolver serves, bound but not yet served.
struct Sockets {
    dns: Vec<(tokio::net::UdpSocket, tokio::net::TcpListener)>,
    metrics: tokio::net::TcpListener,
    health: tokio::net::TcpListener,
    metrics_addr: SocketAddr,
    health_addr: SocketAddr,
}

impl Sockets {
    async fn bind(args: &ResolverArgs) -> Result<Self, ResolverError> {
        let mut dns = Vec::new();
        for ip in &args.listen {
            let addr = SocketAddr::new(*ip, args.port);
            dns.push((listen::bind_udp(addr)?, listen::bind_tcp(addr)?));
        }
        let http = |addr: SocketAddr, what: &'static str| async move {
            http::bind(addr)
                .await
                .map_err(|source| ResolverError::Http { addr, what, source })
        };
        let metrics = http(args.metrics_addr, "metrics").await?;
        let health = http(args.health_addr, "health").await?;
        Ok(Self {
            metrics_addr: metrics.local_addr().unwrap_or(args.metrics_addr),
            health_addr: health.local_addr().unwrap_or(args.health_addr),
            dns,
            metrics,
            health,
        })
    }
}

/// Spawns the UDP and TCP listeners, with the flags' bounds on work.
fn serve_dns(
    dns: Vec<(tokio::net::UdpSocket, tokio::net::TcpListener)>,
    handler: Arc<Handler>,
    args: &ResolverArgs,
    metrics: &Arc<ResolverMetrics>,
    cancel: &CancellationToken,
) -> JoinSet<()> {
    let limits = listen::Limits {
        queries: Arc::new(Semaphore::new(args.max_concurrent.max(1))),
        tcp_connections: Arc::new(Semaphore::new(args.tcp_max_connections.max(1))),
        tcp_idle: args.tcp_idle_timeout(),
    };
    let mut tasks = JoinSet::new();
    for (udp, tcp) in dns {
        tasks.spawn(listen::serve_udp(
            udp,
            handler.clone(),
            limits.clone(),
            cancel.clone(),
        ));
        tasks.spawn(listen::serve_tcp(
            tcp,
            handler.clone(),
            limits.clone(),
            metrics.clone(),
            cancel.clone(),
        ));
    }
    tasks
}

/// Runs the resolver until `cancel` fires.
pub async fn run(
    args: ResolverArgs,
    deps: ResolverDeps,
    cancel: CancellationToken,
) -> Result<(), ResolverError> {
    start(args, deps, cancel).await?.wait().await;
    Ok(())
}

//! The userspace DNS server: everything the XDP program passes up.
//!
//! - [`listen`]: UDP and TCP on every `--listen` address (SO_REUSEPORT,
//!   bounded work per client), on the interface [`interface`] manages.
//! - [`handler`]: validation, the authoritative cluster zone ([`crate::zone`]),
//!   then the [`forwarder`] (cache, coalescing, failover, serve-stale).
//!   Answers go on to [`crate::promotion`], which puts cluster answers and
//!   hot upstream answers into the kernel map.
//! - [`transparent`]: the queries to a cluster DNS address the kernel hands
//!   over through its ring, answered as frames of their own, and the
//!   heartbeat the kernel fails open without.
//! - [`http`]: `/metrics` for the whole shared registry, `/healthz`, `/readyz`.
//!
//! Entry points: [`start`] binds everything and returns a [`Running`]
//! resolver (errors surface before any serving); [`run`] is start + wait.

pub mod any;
pub mod args;
pub mod budget;
pub mod cache;
mod chase;
pub mod clients;
pub mod exchange;
mod fast;
pub mod forwarder;
pub mod handler;
pub mod http;
pub mod interface;
pub mod listen;
pub mod metrics;
pub mod scrub;
pub mod tally;
pub mod transparent;
pub mod upstreams;
mod wire;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio::sync::{Semaphore, oneshot, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use args::ResolverArgs;

use crate::health::NodeHealth;
use crate::metrics::coredns::Coredns;
use crate::metrics::{Exposition, process};
use crate::promotion::{AnswerSink, Promoter, PromotionConfig, PromotionMetrics};
use crate::zone::{ForwardPolicy, Zone};
use cache::{Cache, CacheConfig, Clamps};
use clients::{ClientBounds, Clients};
use exchange::ExchangeConfig;
use forwarder::{Forwarder, ForwarderConfig};
use handler::Handler;
use interface::{InterfaceError, ListenInterface};
use listen::{Steerer, Steering};
use metrics::ResolverMetrics;
use transparent::{TransparentMetrics, TransparentPath};

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
    /// The kernel answers map, where promotion writes.
    pub sink: Sink,
    /// The shared registry, with every other module's metrics (and the
    /// loader's collector) already registered; `/metrics` encodes all of it.
    pub registry: Registry,
    /// The CoreDNS-compatible families; None with `--coredns-metrics=false`.
    pub coredns: Option<Coredns>,
    /// Keep the listen interface/addresses on exit (agent-wide
    /// `--keep-on-exit`, for a seamless restart).
    pub keep_interface_on_exit: bool,
    /// The ring of queries to the cluster DNS address and the heartbeat,
    /// once the fast path has loaded; None without the fast path.
    pub transparent: Option<oneshot::Receiver<TransparentPath>>,
}

/// Where promotion writes, if anywhere.
pub enum Sink {
    /// No kernel map (XDP off): no promotion.
    None,
    Ready(Arc<dyn AnswerSink>),
    /// The map of a fast path still loading (the verifier takes about a
    /// second): queries are answered meanwhile, and promoted once it comes.
    Later(oneshot::Receiver<Arc<dyn AnswerSink>>),
}

/// The promoter, once its sink is there.
pub type PromoterSlot = Arc<OnceLock<Arc<Promoter>>>;

/// A started resolver.
pub struct Running {
    tasks: JoinSet<()>,
    interface: Arc<std::sync::Mutex<ListenInterface>>,
    /// What `/healthz` reports and `nodedns_repairs_total` counts; the
    /// fast path reports here too.
    pub node_health: Arc<NodeHealth>,
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
        self.interface
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .cleanup();
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
        transparent,
    } = deps;
    let (coredns, coredns_registry) = match coredns {
        Some(c) => (Some(c.metrics), Some(c.registry)),
        None => (None, None),
    };
    // ANY is answered here for every user of the zone alike: the handler,
    // the forwarder and promotion (which re-derives kernel entries from it).
    let zone = any::AnyAware::wrap(zone);
    let metrics = Arc::new(ResolverMetrics::new(&mut registry, coredns.clone()));
    let promotion_metrics = Arc::new(PromotionMetrics::new(&mut registry));
    let transparent_metrics = Arc::new(TransparentMetrics::new(&mut registry));

    let interface = if args.no_create_interface {
        ListenInterface::default()
    } else {
        ListenInterface::setup(&args.listen_interface, &args.listen, keep_interface_on_exit)?
    };
    let interface = Arc::new(std::sync::Mutex::new(interface));
    let node_health = Arc::new(NodeHealth::default());
    node_health.register(&mut registry);
    let forwarder = forwarder(&args, policy, zone.clone(), metrics.clone());
    let promoter = PromoterSlot::default();
    let handler = Arc::new(Handler {
        zone_generation: zone.changes(),
        zone: zone.clone(),
        forwarder,
        promoter: promoter.clone(),
        metrics: metrics.clone(),
        hot: Default::default(),
    });

    // Bind everything first, then spawn, so a failure leaves nothing running.
    // Before the first sync, a predecessor that still runs keeps the new
    // queries (docs/design.md#hand-over).
    let steering = if zone.is_ready() {
        Steering::Newest
    } else {
        Steering::Oldest
    };
    let Sockets {
        dns,
        metrics: metrics_listener,
        health: health_listener,
        metrics_addr,
        health_addr,
    } = Sockets::bind(&args, steering).await?;
    let steerer = match steering {
        Steering::Newest => None,
        Steering::Oldest => Steerer::of(&dns)
            .inspect_err(|error| tracing::warn!(%error, "cannot keep the listening sockets to steer them later: a predecessor keeps new queries until it exits"))
            .ok(),
    };
    let limits = listen::Limits {
        queries: Arc::new(Semaphore::new(args.max_concurrent.max(1))),
        clients: Clients::new(ClientBounds {
            queries_total: args.max_concurrent,
            queries_per_client: args.max_concurrent_per_client,
            tcp_total: args.tcp_max_connections,
            tcp_per_client: args.tcp_max_connections_per_client,
        }),
        tcp_idle: args.tcp_idle_timeout(),
    };
    let health = Arc::new(http::Health {
        node: node_health.clone(),
        zone: zone.clone(),
        listeners_up: AtomicBool::new(true),
        taking_queries: AtomicBool::new(steering == Steering::Newest),
        fast_path_loaded: AtomicBool::new(!matches!(sink, Sink::Later(_))),
    });
    let mut tasks = serve_dns(dns, handler.clone(), &limits, &metrics, &health, &cancel);
    if let Some(path) = transparent {
        // The fast path loads after the listeners; its ring and heartbeat
        // come with it.
        let (queries, cancel) = (limits.queries.clone(), cancel.clone());
        tasks.spawn(async move {
            let path = tokio::select! {
                _ = cancel.cancelled() => return,
                path = path => path,
            };
            // Err: no fast path after all (on a failure the agent stops).
            if let Ok(path) = path {
                transparent::serve(path, handler, queries, transparent_metrics, cancel).await;
            }
        });
    }
    tasks.spawn(interface::watch(
        interface.clone(),
        args.listen.clone(),
        node_health.clone(),
        cancel.clone(),
    ));
    let config = promotion_config(&args);
    let promotion = (zone.clone(), promoter, promotion_metrics);
    match sink {
        Sink::None => {}
        Sink::Ready(sink) => {
            let promoter = install_promoter(config, sink, promotion);
            tasks.spawn(promoter.run(cancel.clone()));
        }
        Sink::Later(sink) => {
            let (cancel, health) = (cancel.clone(), health.clone());
            tasks.spawn(async move {
                let sink = tokio::select! {
                    _ = cancel.cancelled() => return,
                    sink = sink => sink,
                };
                health.fast_path_loaded.store(true, Ordering::Relaxed);
                // Err: no fast path (XDP off; on a failure the agent stops).
                if let Ok(sink) = sink {
                    install_promoter(config, sink, promotion).run(cancel).await;
                }
            });
        }
    }
    if steering == Steering::Oldest {
        tasks.spawn(take_over_when_synced(
            zone,
            steerer,
            health.clone(),
            cancel.clone(),
        ));
    }
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
        node_health,
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

/// Waits for the zone's first sync, then steers new queries and connections
/// to our sockets and reports ready. Until then external names are
/// answered already, and cluster names get SERVFAIL, by whichever agent
/// the kernel picks: a predecessor, while one runs.
async fn take_over_when_synced(
    zone: Arc<dyn Zone>,
    steerer: Option<Steerer>,
    health: Arc<http::Health>,
    cancel: CancellationToken,
) {
    let mut changes = zone.changes();
    while !zone.is_ready() {
        tokio::select! {
            _ = cancel.cancelled() => return,
            changed = changes.changed() => if changed.is_err() { return },
        }
    }
    if let Some(steerer) = steerer {
        steerer.steer(Steering::Newest);
    }
    health.taking_queries.store(true, Ordering::Relaxed);
    tracing::info!("cluster zone synced: new queries come to this agent");
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
            limits: budget::Limits {
                total: args.max_outstanding,
                per_zone: args.max_outstanding_per_zone,
                per_upstream: args.max_outstanding_per_upstream,
            },
            exchange: ExchangeConfig {
                randomize_case: args.upstream_0x20,
                spoof_threshold: args.upstream_spoof_threshold,
                spoof_tcp_for: Duration::from_secs(args.upstream_spoof_tcp_secs),
            },
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

/// Promotion as the flags set it.
fn promotion_config(args: &ResolverArgs) -> PromotionConfig {
    PromotionConfig {
        hot_threshold: args.hot_threshold,
        hot_window: Duration::from_secs(args.hot_window_secs.max(1)),
        cluster_lifetime: Duration::from_secs(args.cluster_entry_lifetime_secs.max(2)),
    }
}

/// Builds the promoter around `sink` (it takes over the entries a previous
/// agent left) and hands it to the handler.
fn install_promoter(
    config: PromotionConfig,
    sink: Arc<dyn AnswerSink>,
    (zone, slot, metrics): (Arc<dyn Zone>, PromoterSlot, Arc<PromotionMetrics>),
) -> Arc<Promoter> {
    let promoter = slot.get_or_init(|| Arc::new(Promoter::new(config, sink, zone, metrics)));
    promoter.clone()
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
    async fn bind(args: &ResolverArgs, steering: Steering) -> Result<Self, ResolverError> {
        let mut dns = Vec::new();
        for ip in &args.listen {
            let addr = SocketAddr::new(*ip, args.port);
            dns.push((
                listen::bind_udp(addr, steering)?,
                listen::bind_tcp(addr, steering)?,
            ));
        }
        let http = |addr: SocketAddr, what: &'static str| async move {
            http::bind(addr)
                .await
                .map_err(|source| ResolverError::Http { addr, what, source })
        };
        let metrics = http(args.metrics_addr, "metrics").await?;
        let health = http(args.health_addr, "health").await?;
        // Probes must reach this agent, not a predecessor that shares the
        // port during a rolling update: kubelet asks each pod about itself.
        listen::steer(&health, Steering::Newest, args.health_addr, "health");
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
    limits: &listen::Limits,
    metrics: &Arc<ResolverMetrics>,
    health: &Arc<http::Health>,
    cancel: &CancellationToken,
) -> JoinSet<()> {
    let mut tasks = JoinSet::new();
    for (udp, tcp) in dns {
        let alive = ListenerAlive::new(health, cancel, "udp");
        let udp = listen::serve_udp(udp, handler.clone(), limits.clone(), cancel.clone());
        tasks.spawn(async move {
            let _alive = alive;
            udp.await
        });
        let alive = ListenerAlive::new(health, cancel, "tcp");
        let tcp = listen::serve_tcp(
            tcp,
            handler.clone(),
            limits.clone(),
            metrics.clone(),
            cancel.clone(),
        );
        tasks.spawn(async move {
            let _alive = alive;
            tcp.await
        });
    }
    tasks
}

/// Held by a listener task: if the task ends before the agent stops (a
/// panic included), `/healthz` fails from then on, since that socket's
/// share of the queries goes unanswered.
struct ListenerAlive {
    health: Arc<http::Health>,
    cancel: CancellationToken,
    transport: &'static str,
}

impl ListenerAlive {
    fn new(
        health: &Arc<http::Health>,
        cancel: &CancellationToken,
        transport: &'static str,
    ) -> Self {
        Self {
            health: health.clone(),
            cancel: cancel.clone(),
            transport,
        }
    }
}

impl Drop for ListenerAlive {
    fn drop(&mut self) {
        if !self.cancel.is_cancelled() {
            self.health.listeners_up.store(false, Ordering::Relaxed);
            tracing::error!(
                transport = self.transport,
                "a DNS listener stopped while the agent runs: /healthz fails"
            );
        }
    }
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

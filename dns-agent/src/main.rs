//! `dns-agent`: the nodedns node agent.
//!
//! `run` loads the XDP fast path, watches cluster state and serves DNS on the
//! link-local address; `inspect` prints what the kernel answers; `cleanup`
//! removes everything the agent created on the node.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use dns_agent::cli;
use dns_agent::cluster::{self, ClusterArgs, ClusterHandle};
use dns_agent::fastpath::{self, CleanupArgs, FastPath, FastPathArgs, InspectArgs};
use dns_agent::kernel::packet::PacketSocket;
use dns_agent::logging::{self, Style};
use dns_agent::metrics::Deferred;
use dns_agent::metrics::coredns::Coredns;
use dns_agent::promotion::{AnswerSink, MapSink};
use dns_agent::resolver::transparent::TransparentPath;
use dns_agent::resolver::{self, ResolverArgs, ResolverDeps, Sink};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

/// `--version`: the release and the source revision it was built from.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (revision ",
    env!("NODEDNS_GIT_REVISION"),
    ")"
);

#[derive(Parser)]
#[command(
    name = "dns-agent",
    version = VERSION,
    about = "nodedns: XDP-accelerated node-local DNS cache for Kubernetes"
)]
struct Cli {
    #[command(flatten)]
    log: LogArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct LogArgs {
    /// Log filter (tracing EnvFilter syntax, e.g. `info,dns_agent=debug`).
    /// kube's per-request error lines are off unless it names `kube_client`.
    #[arg(long, global = true, env = "NODEDNS_LOG", default_value = "info")]
    log_level: String,
    /// Log as JSON lines instead of human-readable text (the fatal error at
    /// exit too). Text is coloured only on a terminal, and never with
    /// NO_COLOR set.
    #[arg(long, global = true, env = "NODEDNS_LOG_JSON")]
    log_json: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent: XDP fast path, cluster watch and resolver.
    Run(Box<RunArgs>),
    /// Print the kernel's answers and counters from the pinned maps.
    Inspect(InspectArgs),
    /// Remove every XDP attachment, pin, interface and address the agent created.
    Cleanup(CleanupCommand),
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten, next_help_heading = "Resolver")]
    resolver: ResolverArgs,
    #[command(flatten, next_help_heading = "Cluster state")]
    cluster: ClusterArgs,
    #[command(flatten, next_help_heading = "XDP fast path")]
    fastpath: FastPathArgs,
}

#[derive(Args)]
struct CleanupCommand {
    #[command(flatten)]
    fastpath: CleanupArgs,
    /// The interface `run` created for the listen addresses.
    #[arg(long, default_value = "nodedns0")]
    listen_interface: String,
    /// Listen addresses `run` added (removed from the interface, or from `lo`
    /// where the kernel has no dummy interfaces). Repeatable.
    #[arg(long = "listen", default_value = "169.254.20.10")]
    listen: Vec<std::net::IpAddr>,
}

fn main() -> ExitCode {
    dns_agent::metrics::count_panics();
    let cli = match parse_cli() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let style = Style::detect(cli.log.log_json);
    if let Err(e) = logging::init(&cli.log.log_level, style) {
        logging::fatal(&e.into(), style, false);
        return ExitCode::from(2);
    }
    let result = match cli.command {
        Command::Run(args) => run(*args),
        Command::Inspect(args) => dns_agent::inspect::run_inspect(&args).map_err(Into::into),
        Command::Cleanup(args) => cleanup(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            logging::fatal(&e, style, true);
            ExitCode::FAILURE
        }
    }
}

/// The command line and `NODEDNS_*` environment, read leniently
/// ([`cli`]). A usage error is printed as clap prints it, or as one JSON
/// line under `--log-json`, and ends the process with code 2.
fn parse_cli() -> Result<Cli, ExitCode> {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let cmd = cli::lenient_booleans(Cli::command());
    let error = match cmd
        .clone()
        .try_get_matches_from(&argv)
        .and_then(|m| Cli::from_arg_matches(&m))
    {
        Ok(cli) => return Ok(cli),
        Err(e) => e,
    };
    if !error.use_stderr() {
        error.exit(); // --help, --version
    }
    let text = cli::explain(&cmd, &error, &argv);
    let json = argv.iter().any(|a| a == "--log-json")
        || std::env::var("NODEDNS_LOG_JSON").is_ok_and(|v| cli::truthy(&v));
    if json {
        let message: Vec<&str> = text
            .lines()
            .map(|l| l.trim().trim_start_matches("error: "))
            .filter(|l| !l.is_empty() && !l.starts_with("For more information"))
            .collect();
        logging::print_unlogged(&message.join("; "), Style::Json);
    } else {
        eprint!("{text}");
    }
    Err(ExitCode::from(2))
}

fn run(args: RunArgs) -> anyhow::Result<()> {
    tracing::info!(version = env!("CARGO_PKG_VERSION"), "dns-agent starting");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("nodedns")
        .build()
        .context("starting the async runtime")?;
    if let Some(fast_path) = runtime.block_on(serve(args))? {
        fast_path.shutdown().context("stopping the XDP fast path")?;
    }
    Ok(())
}

/// Serves until SIGTERM; returns the fast path for its exit policy.
async fn serve(args: RunArgs) -> anyhow::Result<Option<FastPath>> {
    // Before anything binds: a SIGTERM from now on drains, it does not kill.
    let shutdown = ShutdownSignal::install().context("installing the signal handlers")?;
    let cancel = CancellationToken::new();
    let mut registry = dns_agent::metrics::new_registry();
    let xdp_metrics = Deferred::default();
    registry.register_collector(Box::new(xdp_metrics.clone()));
    let mut cluster_args = args.cluster.clone();
    cluster_args.ns_addresses = args.resolver.listen.clone();
    let mut cluster = cluster::start(&cluster_args, &mut registry, cancel.clone())
        .await
        .context("starting the cluster-state sources")?;
    // Serve at once, whatever the API server does: external names are
    // forwarded from the start, cluster names get SERVFAIL until the first
    // sync, and until then a predecessor in a rolling update keeps the new
    // queries (docs/design.md#hand-over). The kernel map comes later.
    let (sink_tx, sink) = oneshot::channel();
    let (transparent_tx, transparent) = oneshot::channel();
    let coredns = args
        .resolver
        .coredns_metrics
        .then(|| Coredns::new(args.resolver.port, &args.cluster.cluster_domain));
    // The kernel's answers count once the fast path has loaded.
    let kernel_answers = coredns.as_ref().map(|c| c.metrics.clone());
    let deps = ResolverDeps {
        zone: cluster.zone.clone(),
        policy: cluster.forward_policy.clone(),
        sink: Sink::Later(sink),
        registry,
        coredns,
        keep_interface_on_exit: args.fastpath.keep_on_exit,
        transparent: Some(transparent),
    };
    let (listen, port) = (args.resolver.listen.clone(), args.resolver.port);
    let running = resolver::start(args.resolver, deps, cancel.clone())
        .await
        .context("starting the resolver")?;
    tracing::info!("dns-agent running");

    // The fast path loads while DNS is served: the verifier alone takes
    // about a second. It attaches from the network namespace of the
    // blocking thread, which is the process's. A failure stops the agent.
    let fastpath_args = args.fastpath.clone();
    let loaded =
        tokio::task::spawn_blocking(move || FastPath::start(&fastpath_args, &listen, port)).await;
    let fast_path = match loaded.map_err(anyhow::Error::from).and_then(|r| Ok(r?)) {
        Ok(fast_path) => fast_path,
        Err(e) => {
            stop(cancel, running, cluster).await;
            return Err(e).context("starting the XDP fast path");
        }
    };
    // With XDP off, the senders go unused: dropping them says so.
    if let Some(fp) = &fast_path {
        fp.report_to(running.node_health.clone());
        xdp_metrics.set(fp.collector());
        if let Some(kernel_answers) = &kernel_answers {
            kernel_answers.kernel().set(fp.answer_counts());
        }
        let learn = args.fastpath.cluster_dns_ips.is_empty() && args.cluster.manifests.is_none();
        if learn {
            learn_cluster_dns(fp, &mut cluster, &cancel);
        }
        let opened = MapSink::open(fp)
            .context("opening the kernel answers map")
            .and_then(|map| Ok((map, transparent_path(fp, args.fastpath.transparent)?)));
        match opened {
            Ok((map, path)) => {
                let _ = sink_tx.send(Arc::new(map) as Arc<dyn AnswerSink>);
                let _ = transparent_tx.send(path);
            }
            Err(e) => {
                stop(cancel, running, cluster).await;
                return Err(e);
            }
        }
    } else {
        drop((sink_tx, transparent_tx));
    }

    shutdown.wait().await;
    tracing::info!("shutting down");
    stop(cancel, running, cluster).await;
    Ok(fast_path)
}

/// Cancels every task, lets the listeners drain, and waits for the sources.
async fn stop(cancel: CancellationToken, running: resolver::Running, mut cluster: ClusterHandle) {
    cancel.cancel();
    running.wait().await;
    while cluster.tasks.join_next().await.is_some() {}
}

/// With the API server and no `--cluster-dns-ip`, the kernel learns the
/// cluster DNS Service's addresses once they can be read
/// (`cluster::kube_dns`).
fn learn_cluster_dns(
    fast_path: &FastPath,
    cluster: &mut cluster::ClusterHandle,
    cancel: &CancellationToken,
) {
    let Some(client) = cluster.client.clone() else {
        return;
    };
    let setter = fast_path.cluster_dns();
    let cancel = cancel.clone();
    cluster.tasks.spawn(async move {
        let Some(addrs) = cluster::kube_dns::wait_for_cluster_dns(client, cancel).await else {
            return;
        };
        match setter.set(&addrs) {
            Ok(()) => tracing::info!(addresses = ?addrs, "cluster DNS Service addresses learnt from the API server"),
            Err(e) => tracing::error!(error = %e, addresses = ?addrs, "cannot use the cluster DNS Service addresses"),
        }
    });
}

/// The ring, the heartbeat and, in transparent mode, the packet socket the
/// answers leave through.
fn transparent_path(fast_path: &FastPath, transparent: bool) -> anyhow::Result<TransparentPath> {
    let socket = if transparent {
        Some(PacketSocket::open().context(
            "opening the AF_PACKET socket of transparent mode (needs CAP_NET_RAW; or pass \
             --transparent=false)",
        )?)
    } else {
        None
    };
    Ok(TransparentPath {
        ring: fast_path
            .take_ring()
            .context("the transparent ring was already taken")?,
        heartbeat: fast_path.heartbeat(),
        socket,
    })
}

/// SIGTERM (Kubernetes) or SIGINT (a terminal), listened for from the
/// start so that one arriving early still lets the agent drain.
struct ShutdownSignal {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl ShutdownSignal {
    fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    async fn wait(mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}

fn cleanup(args: &CleanupCommand) -> anyhow::Result<()> {
    // Held until the interface is gone too: no agent starts in between.
    let _claim = fastpath::claim(&args.fastpath)?;
    fastpath::run_cleanup(&args.fastpath).context("removing XDP attachments and pins")?;
    resolver::interface::remove_all(&args.listen_interface, &args.listen)
        .context("removing the listen interface and addresses")?;
    Ok(())
}

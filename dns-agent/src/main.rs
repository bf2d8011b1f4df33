//! `dns-agent`: the nodedns node agent.
//!
//! `run` loads the XDP fast path, watches cluster state and serves DNS on the
//! link-local address; `inspect` prints what the kernel answers; `cleanup`
//! removes everything the agent created on the node.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use std::sync::Arc;

use dns_agent::cluster::{self, ClusterArgs, ClusterHandle};
use dns_agent::fastpath::{self, CleanupArgs, FastPath, FastPathArgs, InspectArgs};
use dns_agent::metrics::Deferred;
use dns_agent::promotion::{AnswerSink, MapSink};
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
    /// Log as JSON lines instead of human-readable text.
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
    let cli = Cli::parse();
    if let Err(e) = init_logging(&cli.log) {
        eprintln!("dns-agent: {e:#}");
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
            tracing::error!("{e:#}");
            eprintln!("dns-agent: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The directive that silences kube's per-request error lines.
const KUBE_REQUEST_ERRORS_OFF: &str = "kube_client::client::builder=off";

fn init_logging(args: &LogArgs) -> anyhow::Result<()> {
    let mut filter = tracing_subscriber::EnvFilter::try_new(&args.log_level)
        .with_context(|| format!("--log-level {:?} is not a valid filter", args.log_level))?;
    // kube's HTTP layer logs an error for every failed request: with the
    // API server down, a line per retry. The sources log the state changes
    // and a summary instead; a filter that names kube_client gets it back.
    if !args.log_level.contains("kube_client") {
        filter = filter.add_directive(KUBE_REQUEST_ERRORS_OFF.parse().expect("a valid directive"));
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if args.log_json {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
    Ok(())
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
    let cluster = cluster::start(&cluster_args, &mut registry, cancel.clone())
        .await
        .context("starting the cluster-state sources")?;
    // Serve at once, whatever the API server does: external names are
    // forwarded from the start, cluster names get SERVFAIL until the first
    // sync, and until then a predecessor in a rolling update keeps the new
    // queries (docs/design.md#hand-over). The kernel map comes later.
    let (sink_tx, sink) = oneshot::channel();
    let deps = ResolverDeps {
        zone: cluster.zone.clone(),
        policy: cluster.forward_policy.clone(),
        sink: Sink::Later(sink),
        registry,
        keep_interface_on_exit: args.fastpath.keep_on_exit,
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
    // With XDP off, the sender goes unused: dropping it says so.
    if let Some(fp) = &fast_path {
        xdp_metrics.set(fp.collector());
        match MapSink::open(fp) {
            Ok(map) => {
                let _ = sink_tx.send(Arc::new(map) as Arc<dyn AnswerSink>);
            }
            Err(e) => {
                stop(cancel, running, cluster).await;
                return Err(e).context("opening the kernel answers map");
            }
        }
    } else {
        drop(sink_tx);
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
    fastpath::run_cleanup(&args.fastpath).context("removing XDP attachments and pins")?;
    resolver::interface::remove_all(&args.listen_interface, &args.listen)
        .context("removing the listen interface and addresses")?;
    Ok(())
}

//! `dns-agent`: the nodedns node agent.
//!
//! `run` loads the XDP fast path, watches cluster state and serves DNS on the
//! link-local address; `inspect` prints what the kernel answers; `cleanup`
//! removes everything the agent created on the node.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use dns_agent::cli;
use dns_agent::cluster::{self, ClusterArgs};
use dns_agent::fastpath::{self, CleanupArgs, FastPath, FastPathArgs, InspectArgs};
use dns_agent::logging::{self, Style};
use dns_agent::metrics::coredns::Coredns;
use dns_agent::promotion::{AnswerSink, MapSink};
use dns_agent::resolver::{self, ResolverArgs, ResolverDeps};
use dns_agent::zone::Zone;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "dns-agent",
    version,
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
    // The fast path attaches from this thread's network namespace and before
    // the runtime starts, so a bad --interface or bpffs path fails at once.
    let fast_path = FastPath::start(&args.fastpath, &args.resolver.listen, args.resolver.port)
        .context("starting the XDP fast path")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("nodedns")
        .build()
        .context("starting the async runtime")?;
    let result = runtime.block_on(serve(args, fast_path.as_ref()));
    if let Some(fast_path) = fast_path {
        fast_path.shutdown().context("stopping the XDP fast path")?;
    }
    result
}

async fn serve(args: RunArgs, fast_path: Option<&FastPath>) -> anyhow::Result<()> {
    let cancel = CancellationToken::new();
    let mut registry = dns_agent::metrics::new_registry();
    if let Some(fp) = fast_path {
        fp.register_metrics(&mut registry);
    }
    let mut cluster_args = args.cluster.clone();
    cluster_args.ns_addresses = args.resolver.listen.clone();
    let mut cluster = cluster::start(&cluster_args, &mut registry, cancel.clone())
        .await
        .context("starting the cluster-state sources")?;
    // SO_REUSEPORT hands a new agent its share of the queries the moment it
    // binds, next to the old one in a rolling update. Before the first full
    // sync it could only SERVFAIL cluster names, so bind once the zone is
    // ready; bounded, so an unreachable API server still leaves other names
    // served (cluster names then get SERVFAIL until the sync, as designed).
    if tokio::time::timeout(ZONE_READY_BEFORE_SERVING, cluster.wait_until_ready())
        .await
        .is_err()
    {
        tracing::warn!(
            waited = ?ZONE_READY_BEFORE_SERVING,
            "cluster zone not synced yet: serving anyway, cluster names get SERVFAIL until it is"
        );
    }
    let zone: std::sync::Arc<dyn Zone> = cluster.zone.clone();
    let sink = match fast_path {
        Some(fp) => {
            let sink = MapSink::open(fp).context("opening the kernel answers map")?;
            Some(std::sync::Arc::new(sink) as std::sync::Arc<dyn AnswerSink>)
        }
        None => None,
    };
    let coredns = args.resolver.coredns_metrics.then(|| {
        let coredns = Coredns::new(args.resolver.port, &args.cluster.cluster_domain);
        if let Some(fp) = fast_path {
            coredns.metrics.kernel().set(fp.answer_counts());
        }
        coredns
    });
    let deps = ResolverDeps {
        zone,
        policy: cluster.forward_policy.clone(),
        sink,
        registry,
        coredns,
        keep_interface_on_exit: args.fastpath.keep_on_exit,
    };
    let running = resolver::start(args.resolver, deps, cancel.clone())
        .await
        .context("starting the resolver")?;
    tracing::info!("dns-agent running");

    shutdown_signal().await;
    tracing::info!("shutting down");
    cancel.cancel();
    running.wait().await;
    while cluster.tasks.join_next().await.is_some() {}
    Ok(())
}

/// Longest wait for the cluster zone's first full sync before binding the
/// listen sockets.
const ZONE_READY_BEFORE_SERVING: std::time::Duration = std::time::Duration::from_secs(10);

/// Resolves on SIGTERM (Kubernetes) or SIGINT (a terminal).
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("install SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

fn cleanup(args: &CleanupCommand) -> anyhow::Result<()> {
    fastpath::run_cleanup(&args.fastpath).context("removing XDP attachments and pins")?;
    resolver::interface::remove_all(&args.listen_interface, &args.listen)
        .context("removing the listen interface and addresses")?;
    Ok(())
}

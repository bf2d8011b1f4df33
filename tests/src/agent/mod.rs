//! "An agent in a lab node": the real `dns-agent run` started in a lab's
//! node namespace from one spec, with one readiness check, and what the
//! tests read from it (`/metrics`, `/readyz`, `dns-agent inspect`).
//!
//! The agent serves `veth*` (every pod's host-side veth), pins in the lab
//! node's pin directory and serves HTTP on the node's own loopback, so
//! fixed ports cannot clash with anything outside the lab.

mod demo_node;
mod inspect;

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

pub use demo_node::DemoNode;
pub use inspect::Inspect;

use crate::http::{Response, http_get, http_get_accept};
use crate::lab::{Daemon, Lab, Netns, Signal, measure_until, wait_for};
use crate::metrics::Metrics;
use crate::repo::examples_dir;

/// An upstream nothing listens on: for tests that ask only cluster names,
/// which are never forwarded; a forwarded query fails fast.
pub const NO_UPSTREAM: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9));
/// The metrics port (NodeLocal's); health is on the next port. Agents side
/// by side in one node share them (SO_REUSEPORT), as in a rolling update.
const METRICS_PORT: u16 = 9253;
/// Bound on a change becoming visible to clients. The requirement is 1 s;
/// this is generous so a loaded machine does not fail a test, and the
/// measured time is printed.
pub const PROPAGATION_BOUND: Duration = Duration::from_secs(5);
/// Bound on the agent's start (XDP load through the verifier, first sync).
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on a name reaching the kernel map once asked.
const WARM_TIMEOUT: Duration = Duration::from_secs(10);
/// SIGTERM grace before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// The line the agent logs once its listeners are bound.
const SERVING: &str = "dns-agent running";
/// Log lines printed when a test fails with the agent running.
const LOG_LINES_ON_FAILURE: usize = 200;

/// Where the agent's cluster state comes from.
#[derive(Clone, Debug)]
pub enum Source {
    Manifests(PathBuf),
    Kubeconfig(PathBuf),
}

/// How an agent is started in a lab node: `dns-agent run` with XDP on every
/// pod's veth (`--interface veth*`), its maps pinned in the lab node's pin
/// directory, and `--cleanup-on-exit` unless [`AgentSpec::keep_on_exit`].
#[derive(Clone, Debug)]
pub struct AgentSpec {
    source: Source,
    upstream: SocketAddr,
    listen: Vec<IpAddr>,
    xdp_mode: Option<&'static str>,
    keep_on_exit: bool,
    extra: Vec<String>,
}

impl AgentSpec {
    /// Serving `source`, forwarding to [`NO_UPSTREAM`], on the agent's
    /// default listen address, in the default XDP mode (`auto`).
    pub fn new(source: Source) -> Self {
        Self {
            source,
            upstream: NO_UPSTREAM,
            listen: Vec::new(),
            xdp_mode: None,
            keep_on_exit: false,
            extra: Vec::new(),
        }
    }

    /// Serving the demo cluster of `deploy/examples` as it is in the
    /// repository (copy it with [`crate::repo::copy_examples`] to edit it).
    pub fn examples() -> Self {
        Self::new(Source::Manifests(examples_dir()))
    }

    pub fn upstream(mut self, upstream: SocketAddr) -> Self {
        self.upstream = upstream;
        self
    }

    /// `--listen` on addresses the node already has (the lab puts
    /// [`crate::lab::LISTEN_V4`] and [`crate::lab::LISTEN_V6`] on its
    /// `lo`), so the agent creates no interface of its own.
    pub fn listen_on(mut self, addrs: &[IpAddr]) -> Self {
        self.listen = addrs.to_vec();
        self
    }

    /// `--xdp-mode`.
    pub fn xdp_mode(mut self, mode: &'static str) -> Self {
        self.xdp_mode = Some(mode);
        self
    }

    /// `--keep-on-exit` instead of `--cleanup-on-exit`.
    pub fn keep_on_exit(mut self) -> Self {
        self.keep_on_exit = true;
        self
    }

    /// More `dns-agent run` flags.
    pub fn args(mut self, args: &[&str]) -> Self {
        self.extra.extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// `/metrics`, on the node's loopback.
    pub fn metrics_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], METRICS_PORT))
    }

    /// `/healthz` and `/readyz`, on the node's loopback.
    pub fn health_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], METRICS_PORT + 1))
    }

    /// The `dns-agent run` command line for pins in `bpffs`.
    pub fn command_line(&self, bpffs: &Path) -> Vec<String> {
        let mut args: Vec<String> = vec!["run".into()];
        let mut flag = |name: &str, value: String| args.extend([name.to_string(), value]);
        match &self.source {
            Source::Manifests(dir) => flag("--manifests", dir.display().to_string()),
            Source::Kubeconfig(file) => flag("--kubeconfig", file.display().to_string()),
        }
        for addr in &self.listen {
            flag("--listen", addr.to_string());
        }
        flag("--upstream", self.upstream.to_string());
        flag("--bpffs-path", bpffs.display().to_string());
        flag("--interface", "veth*".into());
        if let Some(mode) = self.xdp_mode {
            flag("--xdp-mode", mode.into());
        }
        flag("--metrics-addr", self.metrics_addr().to_string());
        flag("--health-addr", self.health_addr().to_string());
        if !self.listen.is_empty() {
            args.push("--no-create-interface".into());
        }
        args.push(if self.keep_on_exit {
            "--keep-on-exit".into()
        } else {
            "--cleanup-on-exit".into()
        });
        args.extend(self.extra.iter().cloned());
        args
    }

    /// Starts the agent in `lab`'s node and waits until it is ready: it
    /// logged that it serves, and `/readyz` says 200 (first sync done,
    /// listeners up).
    pub fn start(&self, lab: &Lab, name: &str) -> Agent {
        self.launch(lab, name, true)
    }

    /// Starts the agent and waits only until it serves, for tests where
    /// the first sync cannot happen yet.
    pub fn start_serving(&self, lab: &Lab, name: &str) -> Agent {
        self.launch(lab, name, false)
    }

    fn launch(&self, lab: &Lab, name: &str, ready: bool) -> Agent {
        let mut agent = Agent {
            daemon: start_daemon(lab, name, &self.command_line(lab.bpffs())),
            name: name.to_string(),
            spec: self.clone(),
            bpffs: lab.bpffs().to_path_buf(),
            node: lab.node().name().to_string(),
            starts: 1,
        };
        if ready {
            agent.wait_ready(lab.node());
        }
        agent
    }
}

fn start_daemon(lab: &Lab, name: &str, args: &[String]) -> Daemon {
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut daemon = lab.start_agent(name, &argv).expect("start dns-agent");
    if let Err(e) = daemon.wait_for_log(SERVING, START_TIMEOUT) {
        panic!("the agent did not start serving: {e}");
    }
    daemon
}

/// `dns-agent cleanup` in `lab`'s node on its pin directory, with `args`
/// added (`--force`, `--listen ...`): what an operator runs on a node.
pub fn run_cleanup(lab: &Lab, args: &[&str]) -> std::process::Output {
    let mut cleanup = lab
        .node()
        .command_net_only(crate::lab::agent_binary().expect("the agent binary"));
    cleanup
        .args(["cleanup", "--bpffs-path"])
        .arg(lab.bpffs())
        .args(args);
    cleanup.output().expect("run dns-agent cleanup")
}

/// The agent running in a lab node. Dropping it stops the agent (SIGTERM,
/// continuing it if stopped, then SIGKILL), which with `--cleanup-on-exit`
/// removes its pins, and prints its log if the test is failing.
pub struct Agent {
    daemon: Daemon,
    name: String,
    spec: AgentSpec,
    bpffs: PathBuf,
    node: String,
    starts: u32,
}

impl Agent {
    /// The one readiness check: `/readyz` returns 200.
    fn wait_ready(&mut self, node: &Netns) {
        let ready = wait_for("/readyz to return 200", START_TIMEOUT, || {
            let (status, _) = self.health(node, "/readyz")?;
            (status == 200).then_some(())
        });
        if let Err(e) = ready {
            panic!("{e}; agent log:\n{}", self.daemon.log_tail());
        }
    }

    /// Starts the agent again with the same command line and pins (after
    /// [`Agent::kill`] or [`Agent::stop`]) and waits until it is ready.
    pub fn restart(&mut self, lab: &Lab) {
        assert!(
            !self.daemon.is_running(),
            "restart: the agent is still running"
        );
        self.starts += 1;
        let name = format!("{}-{}", self.name, self.starts);
        self.daemon = start_daemon(lab, &name, &self.spec.command_line(&self.bpffs));
        self.wait_ready(lab.node());
    }

    /// SIGKILL, like a crash or the OOM killer: the agent runs no exit code,
    /// so its XDP links and maps stay pinned.
    pub fn kill(&mut self) {
        self.daemon
            .kill()
            .unwrap_or_else(|e| panic!("kill the agent: {e}"));
    }

    /// SIGTERM (and SIGCONT, for a stopped agent), SIGKILL after a grace
    /// period.
    pub fn stop(&mut self) -> ExitStatus {
        self.daemon
            .stop(STOP_GRACE)
            .unwrap_or_else(|e| panic!("stop the agent: {e}"))
    }

    pub fn signal(&mut self, signal: Signal) {
        self.daemon
            .signal(signal)
            .unwrap_or_else(|e| panic!("send {signal:?} to the agent: {e}"));
    }

    pub fn is_running(&mut self) -> bool {
        self.daemon.is_running()
    }

    pub fn pid(&self) -> u32 {
        self.daemon.pid()
    }

    pub fn log(&self) -> String {
        self.daemon.log()
    }

    pub fn log_tail(&self) -> String {
        self.daemon.log_tail()
    }

    /// The agent's pin directory (the lab node's).
    pub fn bpffs(&self) -> &Path {
        &self.bpffs
    }

    pub fn spec(&self) -> &AgentSpec {
        &self.spec
    }

    /// `GET path` on the health address, inside the node: status and body,
    /// or `None` when nothing answers.
    pub fn health(&self, node: &Netns, path: &str) -> Option<(u16, String)> {
        let addr = self.spec.health_addr();
        node.enter(|| http_get(addr, path)).ok()?.ok()
    }

    /// `/metrics`, scraped inside the node.
    /// Waits until `/readyz` answers 200, at most `bound` after `since`,
    /// and prints how long it took as `what`.
    pub fn measure_ready(&self, node: &Netns, what: &str, since: Instant, bound: Duration) {
        measure_until(
            what,
            since,
            bound,
            || self.health(node, "/readyz"),
            |r| r.as_ref().is_some_and(|(status, _)| *status == 200),
        )
        .unwrap();
    }

    pub fn metrics(&self, node: &Netns) -> Metrics {
        let addr = self.spec.metrics_addr();
        let (status, body) = node
            .enter(|| http_get(addr, "/metrics"))
            .expect("enter the node namespace")
            .unwrap_or_else(|e| panic!("scrape the agent's /metrics: {e}"));
        assert_eq!(status, 200, "/metrics answered {status}: {body}");
        Metrics::parse(&body)
    }

    /// `/metrics` scraped inside the node with `Accept: accept` (none when
    /// None): status, content type and page as served.
    pub fn scrape(&self, node: &Netns, accept: Option<&str>) -> Response {
        let addr = self.spec.metrics_addr();
        node.enter(|| http_get_accept(addr, "/metrics", accept))
            .expect("enter the node namespace")
            .unwrap_or_else(|e| panic!("scrape the agent's /metrics: {e}"))
    }

    /// Asks `name`/`qtype` with `dig` from `netns` (no cookie) until the
    /// kernel answers it: the first answer comes from userspace, which then
    /// puts the entry into the map.
    pub fn warm_kernel(&self, netns: &Netns, server: &str, name: &str, qtype: &str) {
        let at = format!("@{server}");
        let args = ["+time=1", "+nocookie", at.as_str(), name, qtype];
        wait_for(
            &format!("{name}/{qtype} answered by XDP"),
            WARM_TIMEOUT,
            || {
                let before = self.inspect().counter("hit");
                let reply = netns.dig(&args).ok()?;
                let after = self.inspect().counter("hit");
                (reply.answered() && after > before).then_some(())
            },
        )
        .unwrap_or_else(|e| panic!("{e}; agent log:\n{}", self.log_tail()));
    }

    /// `dns-agent inspect --json` on the agent's pins.
    pub fn inspect(&self) -> Inspect {
        Inspect::read(&self.bpffs)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.daemon.log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(LOG_LINES_ON_FAILURE)..];
            eprintln!(
                "agent: {} log ({} of {} lines, node netns {}):\n{}",
                self.name,
                tail.len(),
                lines.len(),
                self.node,
                tail.join("\n")
            );
        }
        if let Err(e) = self.daemon.stop(STOP_GRACE) {
            eprintln!("agent: could not stop {}: {e}", self.name);
        }
    }
}

//! Starting the contenders and the local upstream in the lab's node netns,
//! each pinned to the server CPU, and checking that each one answers.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use nodedns_tests::http::http_get;
use nodedns_tests::lab::{BpffsDir, Daemon, Lab, PassProgram, Pod, agent_binary, wait_for};
use nodedns_tests::upstream::{Dnsmasq, DnsmasqSpec};

use crate::cluster::Cluster;

/// CPU the servers (and the upstream) run on; dnsperf gets the other one.
pub const SERVER_CPU: &str = "1";
pub const CLIENT_CPU: &str = "0";
/// The local upstream that owns the external names (not a contender).
pub const UPSTREAM: Ipv4Addr = Ipv4Addr::new(169, 254, 20, 11);
/// How long a server gets to load its data and answer its first query
/// (100k Services with 500k endpoints take a while on a loaded machine).
const READY_TIMEOUT: Duration = Duration::from_secs(240);
const STOP_GRACE: Duration = Duration::from_secs(5);
/// Record TTL everyone serves cluster names with (the Kubernetes default).
pub const CLUSTER_TTL: u32 = 30;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    XdpSkb,
    XdpNative,
    AgentNoXdp,
    Dnsmasq,
    Unbound,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::XdpSkb,
        Kind::XdpNative,
        Kind::AgentNoXdp,
        Kind::Dnsmasq,
        Kind::Unbound,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Kind::XdpSkb => "nodedns-xdp-skb",
            Kind::XdpNative => "nodedns-xdp-native",
            Kind::AgentNoXdp => "nodedns-userspace",
            Kind::Dnsmasq => "dnsmasq",
            Kind::Unbound => "unbound",
        }
    }

    pub fn has_xdp(self) -> bool {
        matches!(self, Kind::XdpSkb | Kind::XdpNative)
    }

    fn xdp_mode(self) -> &'static str {
        match self {
            Kind::XdpSkb => "skb",
            Kind::XdpNative => "native",
            _ => "off",
        }
    }
}

/// A contender's process: the agent and unbound as plain daemons, dnsmasq
/// through its guard.
enum Process {
    Daemon(Daemon),
    Dnsmasq(Dnsmasq),
}

impl Process {
    fn daemon(&self) -> &Daemon {
        match self {
            Self::Daemon(d) => d,
            Self::Dnsmasq(d) => d.daemon(),
        }
    }

    fn daemon_mut(&mut self) -> &mut Daemon {
        match self {
            Self::Daemon(d) => d,
            Self::Dnsmasq(d) => d.daemon_mut(),
        }
    }
}

/// One running contender, reached from its own pod at its own address.
pub struct Server {
    pub kind: Kind,
    pub addr: Ipv4Addr,
    pub pod: usize,
    process: Process,
    pub manifests: Option<PathBuf>,
    pub bpffs: Option<BpffsDir>,
    _pass: Option<PassProgram>,
    /// The node namespace whose `lo` holds `addr`: released on drop, so a
    /// later server of the same lab may take the address again.
    node: String,
}

impl Server {
    pub fn pid(&self) -> u32 {
        self.process.daemon().pid()
    }

    pub fn stop(&mut self) {
        if let Err(e) = self.process.daemon_mut().stop(STOP_GRACE) {
            eprintln!("bench: stopping {}: {e}", self.kind.label());
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
        let addr = format!("{}/32", self.addr);
        let removed = std::process::Command::new("ip")
            .args(["-n", &self.node, "addr", "del", &addr, "dev", "lo"])
            .status();
        if !matches!(removed, Ok(s) if s.success()) {
            eprintln!("bench: could not remove {addr} from the node's lo: {removed:?}");
        }
    }
}

/// Adds `addr/32` to the node's `lo` (a server's is removed when it is
/// dropped; the rest go with the lab's netns).
pub fn add_address(lab: &Lab, addr: Ipv4Addr) -> Result<()> {
    lab.node()
        .ip(&["addr", "add", &format!("{addr}/32"), "dev", "lo"])
        .with_context(|| format!("add {addr} to the node's lo"))?;
    Ok(())
}

fn pinned(lab: &Lab, name: &str, program: &str, args: &[String]) -> Result<Daemon> {
    let mut cmd = lab.node().command_net_only("taskset");
    cmd.args(["-c", SERVER_CPU, program]).args(args);
    let log = lab.log_dir().join(format!("{name}.log"));
    Daemon::start(name, cmd, &log).with_context(|| format!("start {name}"))
}

pub fn start_upstream(lab: &Lab, cluster: &Cluster) -> Result<Dnsmasq> {
    add_address(lab, UPSTREAM)?;
    // Long enough that no contender's cache expires during the bench.
    let mut spec = DnsmasqSpec::new((UPSTREAM, 53).into())
        .local_ttl(300)
        .pin_to_cpu(SERVER_CPU);
    for arg in cluster.upstream_args() {
        spec = spec.arg(arg);
    }
    spec.start(lab, lab.node(), "upstream")
        .context("start the upstream")
}

/// Starts contender `kind` at `addr`, queried from `pod`, with `extra`
/// arguments for an agent.
pub fn start(
    lab: &Lab,
    kind: Kind,
    pod_index: usize,
    addr: Ipv4Addr,
    cluster: &Cluster,
    ports: u16,
    extra: &[String],
) -> Result<Server> {
    add_address(lab, addr)?;
    let pod = lab.pod(pod_index);
    let dir = lab.log_dir().join(kind.label());
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let (process, manifests, bpffs, pass) = match kind {
        Kind::XdpSkb | Kind::XdpNative | Kind::AgentNoXdp => {
            let manifests = dir.join("manifests");
            // An earlier agent of this kind may have left a bigger cluster's
            // files there (the memory runs go back to small sizes).
            if manifests.exists() {
                std::fs::remove_dir_all(&manifests)
                    .with_context(|| format!("remove {}", manifests.display()))?;
            }
            cluster.write_manifests(&manifests)?;
            let bpffs = BpffsDir::create()?;
            let pass = if kind == Kind::XdpNative {
                Some(pod.attach_pass_program()?)
            } else {
                None
            };
            let mut args = agent_args(kind, pod, addr, &manifests, bpffs.path(), ports);
            args.extend_from_slice(extra);
            let daemon = start_agent(lab, kind.label(), &args)?;
            (Process::Daemon(daemon), Some(manifests), Some(bpffs), pass)
        }
        Kind::Dnsmasq => {
            let conf = dir.join("dnsmasq.conf");
            std::fs::write(&conf, cluster.dnsmasq_records())
                .with_context(|| format!("write {}", conf.display()))?;
            let dnsmasq = DnsmasqSpec::new((addr, 53).into())
                .local_ttl(CLUSTER_TTL)
                .arg(format!("--conf-file={}", conf.display()))
                .arg(format!("--server={UPSTREAM}"))
                .arg("--cache-size=10000")
                .pin_to_cpu(SERVER_CPU)
                .start(lab, lab.node(), kind.label())
                .with_context(|| format!("start {}", kind.label()))?;
            (Process::Dnsmasq(dnsmasq), None, None, None)
        }
        Kind::Unbound => {
            let conf = dir.join("unbound.conf");
            std::fs::write(&conf, unbound_conf(cluster, addr, &dir))
                .with_context(|| format!("write {}", conf.display()))?;
            let args = vec![
                "-d".to_string(),
                "-p".into(),
                "-c".into(),
                conf.display().to_string(),
            ];
            let daemon = pinned(lab, kind.label(), "unbound", &args)?;
            (Process::Daemon(daemon), None, None, None)
        }
    };
    let mut server = Server {
        kind,
        addr,
        pod: pod_index,
        process,
        manifests,
        bpffs,
        _pass: pass,
        node: lab.node().name().to_string(),
    };
    wait_ready(lab, &mut server, cluster)?;
    if server.bpffs.is_some() {
        wait_agent_ready(lab, &mut server, ports)?;
    }
    Ok(server)
}

/// An agent's `/healthz` and `/readyz`, on the node's loopback.
fn health_addr(ports: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9400 + ports))
}

/// Waits for an agent's `/readyz`: its userspace resolver answers before
/// its fast path is loaded and attached, and the bench reads the attached
/// program's id next.
fn wait_agent_ready(lab: &Lab, server: &mut Server, ports: u16) -> Result<()> {
    let health = health_addr(ports);
    wait_until(server, "/readyz to return 200", || {
        let status = lab.node().enter(|| http_get(health, "/readyz")).ok()?;
        (status.ok()?.0 == 200).then_some(())
    })
}

/// Polls `check` until it holds, for at most [`READY_TIMEOUT`]; fails at
/// once if the server exits, with its log.
fn wait_until(
    server: &mut Server,
    what: &str,
    mut check: impl FnMut() -> Option<()>,
) -> Result<()> {
    let label = server.kind.label();
    let done = wait_for(&format!("{label}: {what}"), READY_TIMEOUT, || {
        if !server.process.daemon_mut().is_running() {
            return Some(false);
        }
        check().map(|()| true)
    });
    match done {
        Ok(true) => Ok(()),
        _ => bail!(
            "{label}: gave up waiting for {what} after {READY_TIMEOUT:?}; its log:\n{}",
            server.process.daemon().log_tail()
        ),
    }
}

pub fn agent_args(
    kind: Kind,
    pod: &Pod,
    addr: Ipv4Addr,
    manifests: &Path,
    bpffs: &Path,
    ports: u16,
) -> Vec<String> {
    vec![
        "run".to_string(),
        "--log-level=warn".into(),
        format!("--listen={addr}"),
        "--no-create-interface".into(),
        format!("--manifests={}", manifests.display()),
        format!("--upstream={UPSTREAM}"),
        format!("--interface={}", pod.node_ifname()),
        format!("--xdp-mode={}", kind.xdp_mode()),
        format!("--bpffs-path={}", bpffs.display()),
        "--cleanup-on-exit".into(),
        format!("--ttl={CLUSTER_TTL}"),
        format!("--metrics-addr=127.0.0.1:{}", 9300 + ports),
        format!("--health-addr={}", health_addr(ports)),
    ]
}

pub fn start_agent(lab: &Lab, name: &str, args: &[String]) -> Result<Daemon> {
    let bin = agent_binary().context("find dns-agent (set NODEDNS_AGENT_BIN)")?;
    pinned(lab, name, &bin.display().to_string(), args)
}

fn unbound_conf(cluster: &Cluster, addr: Ipv4Addr, dir: &Path) -> String {
    format!(
        "server:\n  interface: {addr}\n  port: 53\n  num-threads: 1\n  do-daemonize: no\n  \
         chroot: \"\"\n  username: \"\"\n  directory: \"{}\"\n  pidfile: \"\"\n  use-syslog: no\n  \
         logfile: \"\"\n  verbosity: 0\n  module-config: \"iterator\"\n  \
         access-control: 0.0.0.0/0 allow\n  msg-cache-size: 16m\n  rrset-cache-size: 32m\n  \
         prefetch: yes\n  do-not-query-localhost: no\n{}\
         forward-zone:\n  name: \".\"\n  forward-addr: {UPSTREAM}\n",
        dir.display(),
        cluster.unbound_records(CLUSTER_TTL)
    )
}

/// Waits until the server answers the first service of the cluster from
/// its pod (the last thing an agent does at start is the first sync).
pub fn wait_ready(lab: &Lab, server: &mut Server, cluster: &Cluster) -> Result<()> {
    let probe = cluster
        .services
        .last()
        .context("the cluster has no services")?;
    let (name, want) = (probe.fqdn(), probe.v4.to_string());
    let pod = lab.pod(server.pod);
    let at = format!("@{}", server.addr);
    wait_until(server, &format!("an answer to {name}"), || {
        let reply = pod.dig(&[&at, &name, "A"]).ok()?;
        (reply.rdata("A") == [want.as_str()]).then_some(())
    })
}

//! A real upstream DNS server for the agent's forwarding path and for the
//! lab's own checks: `dnsmasq` serving fixed local data, in a lab namespace
//! or in the test's own, stopped by pid on drop. Every test that needs
//! dnsmasq starts it through [`DnsmasqSpec`].

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use crate::lab::{Daemon, Lab, LabError, Netns, Result, TempDir, wait_for};

/// TTL of the local answers. dnsmasq's default for them is 0, which no cache
/// keeps; a real upstream's answers live longer than the agent's clamps.
pub const LOCAL_TTL: u32 = 60;
/// Where [`start_node_upstream`] listens, in the lab node (not port 53:
/// the agent's listen addresses hold that).
pub const NODE_UPSTREAM: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 5353));
/// The domain the node's upstream answers for every name under it.
pub const EXAMPLE_ZONE: &str = "example.com";
/// The address every name under [`EXAMPLE_ZONE`] resolves to.
pub const EXAMPLE_ANSWER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 80);
/// How long a start waits for the server to answer.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// What dnsmasq serves and where: no upstreams, no `/etc/hosts`, only the
/// records given here (and whatever [`DnsmasqSpec::arg`] adds).
#[derive(Clone, Debug)]
pub struct DnsmasqSpec {
    addr: SocketAddr,
    also_listen: Vec<IpAddr>,
    local_ttl: u32,
    records: Vec<String>,
    args: Vec<String>,
    /// A name it answers, asked until it does before a start returns.
    probe: Option<String>,
    log_queries: bool,
    cpu: Option<String>,
}

impl DnsmasqSpec {
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            also_listen: Vec::new(),
            local_ttl: LOCAL_TTL,
            records: Vec::new(),
            args: Vec::new(),
            probe: None,
            log_queries: false,
            cpu: None,
        }
    }

    /// Listens on `ip` too (same port).
    pub fn also_listen(mut self, ip: IpAddr) -> Self {
        self.also_listen.push(ip);
        self
    }

    /// Serves `domain` locally (`--local`): a name under it that no record
    /// names gets NXDOMAIN, not REFUSED.
    pub fn local_domain(mut self, domain: &str) -> Self {
        self.records.push(format!("--local=/{domain}/"));
        self
    }

    /// `name` A or AAAA `ip` (`--host-record`: the name itself only, and
    /// NODATA for the other family).
    pub fn host(mut self, name: &str, ip: IpAddr) -> Self {
        self.records.push(format!("--host-record={name},{ip}"));
        self.probe.get_or_insert_with(|| name.to_string());
        self
    }

    /// `domain` and every name under it A `ip` (`--address`).
    pub fn wildcard(mut self, domain: &str, ip: IpAddr) -> Self {
        self.records.push(format!("--address=/{domain}/{ip}"));
        self.probe.get_or_insert_with(|| domain.to_string());
        self
    }

    /// `name` TXT `text`.
    pub fn txt(mut self, name: &str, text: &str) -> Self {
        self.records.push(format!("--txt-record={name},{text}"));
        self
    }

    pub fn local_ttl(mut self, ttl: u32) -> Self {
        self.local_ttl = ttl;
        self
    }

    /// Logs every query it receives (for failure messages).
    pub fn log_queries(mut self) -> Self {
        self.log_queries = true;
        self
    }

    /// Runs it under `taskset -c cpu` (the benchmark's server CPU).
    pub fn pin_to_cpu(mut self, cpu: &str) -> Self {
        self.cpu = Some(cpu.to_string());
        self
    }

    /// Any other dnsmasq flag (`--cache-size=0`, `--server=...`).
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    fn command_line(&self, pid_file: &std::path::Path) -> Vec<String> {
        let mut args = vec![
            "--keep-in-foreground".to_string(),
            "--no-resolv".into(),
            "--no-hosts".into(),
            "--bind-interfaces".into(),
            format!("--listen-address={}", self.addr.ip()),
            format!("--port={}", self.addr.port()),
            format!("--local-ttl={}", self.local_ttl),
            format!("--pid-file={}", pid_file.display()),
            "--log-facility=-".into(),
        ];
        args.extend(
            self.also_listen
                .iter()
                .map(|ip| format!("--listen-address={ip}")),
        );
        if self.log_queries {
            args.push("--log-queries".into());
        }
        args.extend(self.records.iter().cloned());
        // A later --conf-file in `args` replaces this one.
        if !self.args.iter().any(|a| a.starts_with("--conf-file=")) {
            args.push("--conf-file=/dev/null".into());
        }
        args.extend(self.args.iter().cloned());
        args
    }

    fn command(&self, netns: Option<&Netns>, pid_file: &std::path::Path) -> std::process::Command {
        let (program, mut prefix): (&str, Vec<String>) = match &self.cpu {
            Some(cpu) => ("taskset", vec!["-c".into(), cpu.clone(), "dnsmasq".into()]),
            None => ("dnsmasq", Vec::new()),
        };
        prefix.extend(self.command_line(pid_file));
        let mut cmd = match netns {
            Some(netns) => netns.command(program),
            None => std::process::Command::new(program),
        };
        cmd.args(prefix);
        cmd
    }

    /// Starts dnsmasq in `netns` (usually `lab.node()`), logging into the
    /// lab's log dir, and waits until it answers its first record.
    pub fn start(&self, lab: &Lab, netns: &Netns, name: &str) -> Result<Dnsmasq> {
        let pid_file = lab.log_dir().join(format!("{name}.pid"));
        let log = lab.log_dir().join(format!("{name}.log"));
        let daemon = Daemon::start(name, self.command(Some(netns), &pid_file), &log)?;
        self.answering(
            Dnsmasq {
                daemon,
                addr: self.addr,
                _logs: None,
            },
            Some(netns),
        )
    }

    /// Starts dnsmasq in the test's own namespace (on a loopback address),
    /// logging into a directory of its own.
    pub fn start_here(&self, name: &str) -> Result<Dnsmasq> {
        let logs = TempDir::create()?;
        let pid_file = logs.path().join(format!("{name}.pid"));
        let log = logs.path().join(format!("{name}.log"));
        let daemon = Daemon::start(name, self.command(None, &pid_file), &log)?;
        self.answering(
            Dnsmasq {
                daemon,
                addr: self.addr,
                _logs: Some(logs),
            },
            None,
        )
    }

    /// Asks the probe name until dnsmasq answers it; fails at once if it
    /// exits (an address in use, a bad flag).
    fn answering(&self, mut server: Dnsmasq, netns: Option<&Netns>) -> Result<Dnsmasq> {
        let Some(probe) = &self.probe else {
            return Ok(server);
        };
        let at = format!("@{}", self.addr.ip());
        let port = self.addr.port().to_string();
        let args = [
            at.as_str(),
            "-p",
            &port,
            "+time=1",
            "+tries=1",
            probe.as_str(),
        ];
        let answered = wait_for("dnsmasq to answer", START_TIMEOUT, || {
            if !server.daemon.is_running() {
                return Some(false);
            }
            let reply = match netns {
                Some(netns) => netns.dig(&args).ok()?,
                None => crate::client::Reply::parse(
                    &std::process::Command::new("dig").args(args).output().ok()?,
                ),
            };
            reply.answered().then_some(true)
        });
        match answered {
            Ok(true) => Ok(server),
            Ok(false) => Err(LabError::Other(format!(
                "{} exited before answering; its log:\n{}",
                server.daemon.name(),
                server.daemon.log_tail()
            ))),
            Err(e) => Err(LabError::Other(format!(
                "{e}; log of {}:\n{}",
                server.daemon.name(),
                server.daemon.log_tail()
            ))),
        }
    }
}

/// A running dnsmasq, stopped by pid on drop.
pub struct Dnsmasq {
    // Field order is drop order: the process stops before its log goes.
    daemon: Daemon,
    addr: SocketAddr,
    _logs: Option<TempDir>,
}

impl Dnsmasq {
    /// `IP:PORT`, the agent's `--upstream`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn pid(&self) -> u32 {
        self.daemon.pid()
    }

    /// Everything dnsmasq logged.
    pub fn log(&self) -> String {
        self.daemon.log()
    }

    pub fn daemon(&self) -> &Daemon {
        &self.daemon
    }

    pub fn daemon_mut(&mut self) -> &mut Daemon {
        &mut self.daemon
    }
}

/// The lab node's upstream for external names (the agent's `--upstream`
/// [`NODE_UPSTREAM`]): every name under [`EXAMPLE_ZONE`] is
/// [`EXAMPLE_ANSWER`], with no cache of its own and a TTL of 30 s.
pub fn start_node_upstream(lab: &Lab) -> Result<Dnsmasq> {
    DnsmasqSpec::new(NODE_UPSTREAM)
        .wildcard(EXAMPLE_ZONE, EXAMPLE_ANSWER.into())
        .local_ttl(30)
        .arg("--cache-size=0")
        .start(lab, lab.node(), "upstream")
}

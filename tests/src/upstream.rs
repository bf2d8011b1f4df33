//! A real upstream DNS server for the agent's forwarding path: `dnsmasq`
//! serving fixed local data inside a lab namespace, stopped by pid on drop.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::lab::{Daemon, Lab, LabError, Netns, Result, wait_for};

/// TTL of the local answers. dnsmasq's default for them is 0, which no cache
/// keeps; a real upstream's answers live longer than the agent's clamps.
pub const LOCAL_TTL: u32 = 60;
/// How long [`Dnsmasq::start`] waits for the server to answer.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// `dnsmasq` answering `records` (name → addresses, A and AAAA) on `addr`,
/// and nothing else: no upstreams, no `/etc/hosts`, and a name it does not
/// know under a served domain gets NXDOMAIN, not REFUSED (`--local`).
pub struct Dnsmasq {
    daemon: Daemon,
    addr: SocketAddr,
}

impl Dnsmasq {
    /// Starts dnsmasq in `netns` (usually `lab.node()`) and waits until it
    /// answers the first record. `domains` are served locally (`--local`):
    /// every name under them that `records` does not hold is NXDOMAIN.
    pub fn start(
        lab: &Lab,
        netns: &Netns,
        name: &str,
        addr: SocketAddr,
        domains: &[&str],
        records: &[(&str, IpAddr)],
    ) -> Result<Self> {
        let pid_file = lab.log_dir().join(format!("{name}.pid"));
        let mut args = vec![
            "--keep-in-foreground".to_string(),
            "--conf-file=/dev/null".to_string(),
            "--no-resolv".to_string(),
            "--no-hosts".to_string(),
            "--bind-interfaces".to_string(),
            format!("--listen-address={}", addr.ip()),
            format!("--port={}", addr.port()),
            format!("--local-ttl={LOCAL_TTL}"),
            format!("--pid-file={}", pid_file.display()),
            "--log-queries".to_string(),
            "--log-facility=-".to_string(),
        ];
        args.extend(domains.iter().map(|d| format!("--local=/{d}/")));
        // --host-record, unlike --address, answers only the name itself, and
        // NODATA for the other family.
        args.extend(
            records
                .iter()
                .map(|(name, ip)| format!("--host-record={name},{ip}")),
        );
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let daemon = lab.start_in(netns, name, "dnsmasq", &args)?;
        let mut server = Self { daemon, addr };
        if let Some((probe, _)) = records.first() {
            server.wait_answering(netns, probe)?;
        }
        Ok(server)
    }

    fn wait_answering(&mut self, netns: &Netns, probe: &str) -> Result<()> {
        let server = format!("@{}", self.addr.ip());
        let port = self.addr.port().to_string();
        let answered = wait_for("dnsmasq to answer", START_TIMEOUT, || {
            let out = netns
                .output(
                    "dig",
                    &[&server, "-p", &port, "+time=1", "+tries=1", "+short", probe],
                )
                .ok()?;
            (!out.stdout.is_empty()).then_some(())
        });
        answered.map_err(|e| {
            LabError::Other(format!(
                "{e}; log of {}:\n{}",
                self.daemon.name(),
                self.daemon.log_tail()
            ))
        })
    }

    /// `IP:PORT`, the agent's `--upstream`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Everything dnsmasq logged (each query it received, with
    /// `--log-queries`).
    pub fn log(&self) -> String {
        self.daemon.log()
    }

    /// How many queries for `name` reached this server.
    pub fn queries_for(&self, name: &str) -> usize {
        let asked = format!(" {name} from ");
        self.log()
            .lines()
            .filter(|l| l.contains("query[") && l.contains(&asked))
            .count()
    }

    pub fn daemon_mut(&mut self) -> &mut Daemon {
        &mut self.daemon
    }
}

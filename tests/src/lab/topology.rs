//! The lab aggregate: one node namespace and N pod namespaces.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::Output;

use super::error::{LabError, Result};
use super::names::{short_tag, unique_suffix};
use super::netns::Netns;
use super::pass_program::{PassProgram, XdpAttach};
use super::process::Daemon;
use super::veth::VethPair;
use super::{LISTEN_V4, LISTEN_V6, POD_SEARCH, agent_binary};

/// Pods get 10.201.<index>.0/24, so at most 256 of them.
pub const MAX_PODS: usize = 256;
/// The pod-side interface name, as in a Kubernetes pod.
pub const POD_IFNAME: &str = "eth0";

/// A node with its pods. Dropping it removes, in order: the pods (veth pair,
/// then namespace), the node namespace, and the log directory (kept when
/// `NODEDNS_LAB_KEEP_LOGS` is set). Stop daemons before dropping the lab:
/// declare them after it, so they are dropped first.
#[derive(Debug)]
pub struct Lab {
    // Field order is drop order.
    pods: Vec<Pod>,
    node: Netns,
    logs: LogDir,
}

/// One pod namespace and its veth pair to the node.
#[derive(Debug)]
pub struct Pod {
    index: usize,
    // Drop the pair before the namespace holding its peer.
    veth: VethPair,
    netns: Netns,
    ipv4: Ipv4Addr,
    ipv6: Ipv6Addr,
}

impl Lab {
    /// Creates a node with `pods` pods. Each pod has an IPv4 and an IPv6
    /// address, a default route via the node, and a Kubernetes-style
    /// `resolv.conf` pointing at [`LISTEN_V4`]. The node holds [`LISTEN_V4`]
    /// and [`LISTEN_V6`] on `lo`.
    pub fn new(pods: usize) -> Result<Self> {
        super::require_root()?;
        if pods > MAX_PODS {
            return Err(LabError::Other(format!(
                "a lab holds at most {MAX_PODS} pods, not {pods}"
            )));
        }
        let logs = LogDir::create()?;
        let node = Netns::create("node")?;
        node.ip(&["addr", "add", &format!("{LISTEN_V4}/32"), "dev", "lo"])?;
        node.ip(&[
            "-6",
            "addr",
            "add",
            &format!("{LISTEN_V6}/128"),
            "dev",
            "lo",
            "nodad",
        ])?;
        let tag = short_tag();
        let mut lab = Self {
            pods: Vec::with_capacity(pods),
            node,
            logs,
        };
        for index in 0..pods {
            let pod = Pod::create(&lab.node, &tag, index)?;
            lab.pods.push(pod);
        }
        Ok(lab)
    }

    pub fn node(&self) -> &Netns {
        &self.node
    }

    pub fn pod(&self, index: usize) -> &Pod {
        &self.pods[index]
    }

    pub fn pods(&self) -> &[Pod] {
        &self.pods
    }

    /// Where daemons' logs go (removed with the lab unless `NODEDNS_LAB_KEEP_LOGS` is set).
    pub fn log_dir(&self) -> &Path {
        &self.logs.path
    }

    /// Starts `program args` in the node namespace, logging to
    /// `<log_dir>/<name>.log`.
    pub fn start(&self, name: &str, program: impl AsRef<OsStr>, args: &[&str]) -> Result<Daemon> {
        self.start_in(&self.node, name, program, args)
    }

    /// Starts `program args` in any lab namespace (a load generator in a pod).
    pub fn start_in(
        &self,
        netns: &Netns,
        name: &str,
        program: impl AsRef<OsStr>,
        args: &[&str],
    ) -> Result<Daemon> {
        let mut cmd = netns.command(program);
        cmd.args(args);
        Daemon::start(name, cmd, &self.logs.path.join(format!("{name}.log")))
    }

    /// Starts the built dns-agent in the node namespace with `args`. It runs
    /// under `nsenter --net`, not `ip netns exec`, which would mount a fresh
    /// `/sys` and hide bpffs from it.
    pub fn start_agent(&self, name: &str, args: &[&str]) -> Result<Daemon> {
        let mut cmd = self.node.command_net_only(agent_binary()?);
        cmd.args(args);
        Daemon::start(name, cmd, &self.logs.path.join(format!("{name}.log")))
    }
}

impl Pod {
    fn create(node: &Netns, tag: &str, index: usize) -> Result<Self> {
        let mut netns = Netns::create(&format!("pod{index}"))?;
        let host = format!("veth{tag}{index:02}");
        let veth = VethPair::create(node, &host, &netns, POD_IFNAME)?;
        let (ipv4, node_v4) = (
            Ipv4Addr::new(10, 201, index as u8, 2),
            Ipv4Addr::new(10, 201, index as u8, 1),
        );
        let net6 = |host: u16| Ipv6Addr::new(0xfd00, 0x10, 0x201, index as u16, 0, 0, 0, host);
        let (ipv6, node_v6) = (net6(2), net6(1));

        node.ip(&["addr", "add", &format!("{node_v4}/24"), "dev", &host])?;
        node.ip(&[
            "-6",
            "addr",
            "add",
            &format!("{node_v6}/64"),
            "dev",
            &host,
            "nodad",
        ])?;
        node.ip(&["link", "set", &host, "up"])?;
        netns.ip(&["addr", "add", &format!("{ipv4}/24"), "dev", POD_IFNAME])?;
        netns.ip(&[
            "-6",
            "addr",
            "add",
            &format!("{ipv6}/64"),
            "dev",
            POD_IFNAME,
            "nodad",
        ])?;
        netns.ip(&["link", "set", POD_IFNAME, "up"])?;
        // The default route covers the listen addresses (and anything else
        // the node serves, such as a local upstream for the agent).
        netns.ip(&["route", "add", "default", "via", &node_v4.to_string()])?;
        netns.ip(&["-6", "route", "add", "default", "via", &node_v6.to_string()])?;
        netns.set_resolv_conf(&format!(
            "nameserver {LISTEN_V4}\nsearch {POD_SEARCH}\noptions ndots:5\n"
        ))?;
        Ok(Self {
            index,
            veth,
            netns,
            ipv4,
            ipv6,
        })
    }

    pub fn index(&self) -> usize {
        self.index
    }

    pub fn netns(&self) -> &Netns {
        &self.netns
    }

    /// The node-side interface of this pod's veth pair (where XDP attaches).
    pub fn node_ifname(&self) -> &str {
        self.veth.host()
    }

    /// The pod-side interface (`eth0`).
    pub fn ifname(&self) -> &str {
        self.veth.peer()
    }

    pub fn ipv4(&self) -> Ipv4Addr {
        self.ipv4
    }

    pub fn ipv6(&self) -> Ipv6Addr {
        self.ipv6
    }

    /// `dig +time=2 +tries=1 <args>` from the pod; the output whatever the
    /// exit status (a timeout is a result some tests expect).
    pub fn dig(&self, args: &[&str]) -> Result<Output> {
        let mut full = vec!["+time=2", "+tries=1"];
        full.extend_from_slice(args);
        self.netns.output("dig", &full)
    }

    /// `kdig +timeout=2 +retry=0 <args>` from the pod.
    pub fn kdig(&self, args: &[&str]) -> Result<Output> {
        let mut full = vec!["+timeout=2", "+retry=0"];
        full.extend_from_slice(args);
        self.netns.output("kdig", &full)
    }

    /// `getent <args>` from the pod: glibc's resolver with the pod's
    /// `resolv.conf` (search list, ndots:5).
    pub fn getent(&self, args: &[&str]) -> Result<Output> {
        self.netns.output("getent", args)
    }

    /// Attaches an XDP_PASS program to the pod's `eth0` in driver mode, so
    /// that XDP_TX replies from a native-mode program on the node side are
    /// delivered (veth drops them otherwise). Detached when dropped.
    pub fn attach_pass_program(&self) -> Result<PassProgram> {
        PassProgram::attach(&self.netns, POD_IFNAME, XdpAttach::Driver)
    }

    /// The pod's kernel SNMP counters (`UdpInCsumErrors`, ...).
    pub fn nstat(&self) -> Result<BTreeMap<String, u64>> {
        nstat(&self.netns)
    }
}

/// Absolute SNMP counters of a namespace. `-s` keeps nstat from writing its
/// history file, which is per user, not per namespace.
pub fn nstat(netns: &Netns) -> Result<BTreeMap<String, u64>> {
    let out = netns.run("nstat", &["-a", "-s", "-z"])?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            Some((fields.next()?.to_string(), fields.next()?.parse().ok()?))
        })
        .collect())
}

/// The lab's log directory under the system temp dir.
#[derive(Debug)]
struct LogDir {
    path: PathBuf,
}

impl LogDir {
    fn create() -> Result<Self> {
        let path = std::env::temp_dir().join(format!("ndlab-{}", unique_suffix()));
        std::fs::create_dir_all(&path)
            .map_err(|e| LabError::io(format!("create {}", path.display()), e))?;
        Ok(Self { path })
    }
}

/// Set to keep every lab's logs (the path is printed when the lab is dropped).
pub const KEEP_LOGS_ENV: &str = "NODEDNS_LAB_KEEP_LOGS";

impl Drop for LogDir {
    fn drop(&mut self) {
        // A failing test already shows each daemon's log tail (Daemon's
        // Drop), so by default nothing is left in the temp dir, even on panic.
        if std::env::var_os(KEEP_LOGS_ENV).is_some() {
            eprintln!("lab: logs kept in {}", self.path.display());
            return;
        }
        if std::thread::panicking() {
            eprintln!(
                "lab: removing the logs in {}; set {KEEP_LOGS_ENV}=1 to keep them",
                self.path.display()
            );
        }
        if let Err(e) = std::fs::remove_dir_all(&self.path) {
            eprintln!("lab: could not remove {}: {e}", self.path.display());
        }
    }
}

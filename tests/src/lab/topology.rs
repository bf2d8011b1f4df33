//! The lab aggregate: one node namespace and N pod namespaces.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use super::bpffs::BpffsDir;
use super::error::{LabError, Result};
use super::names::short_tag;
use super::netns::Netns;
use super::pass_program::{PassProgram, XdpAttach};
use super::process::Daemon;
use super::temp_dir::TempDir;
use super::turn::Turn;
use super::veth::VethPair;
use super::{LISTEN_V4, LISTEN_V6, POD_SEARCH, agent_binary};
use crate::client::{Hosts, Reply};

/// Pods get 10.201.<index>.0/24, so at most 256 of them.
pub const MAX_PODS: usize = 256;
/// The pod-side interface name, as in a Kubernetes pod.
pub const POD_IFNAME: &str = "eth0";

/// A node with its pods. Dropping it removes, in order: the pods (veth pair,
/// then namespace), the node namespace, the node's pin directory, and the
/// log directory (kept when `NODEDNS_LAB_KEEP_LOGS` is set). Stop daemons
/// before dropping the lab: declare them after it, so they are dropped first.
#[derive(Debug)]
pub struct Lab {
    // Field order is drop order.
    pods: Vec<Pod>,
    node: Netns,
    /// Part of every host-side interface name (`veth<tag><index>`).
    tag: String,
    bpffs: BpffsDir,
    logs: TempDir,
    /// Released last, once everything of this lab is gone.
    _turn: Turn,
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
        Self::create(pods, Turn::shared())
    }

    /// A lab that runs alone among the labs of its test binary: it waits
    /// for the others to go and holds new ones back until it is dropped.
    /// For tests that measure loss under load.
    pub fn new_alone(pods: usize) -> Result<Self> {
        Self::create(pods, Turn::alone())
    }

    fn create(pods: usize, turn: Turn) -> Result<Self> {
        super::require_root()?;
        if pods > MAX_PODS {
            return Err(LabError::Other(format!(
                "a lab holds at most {MAX_PODS} pods, not {pods}"
            )));
        }
        let logs = TempDir::create()?;
        let bpffs = BpffsDir::create()?;
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
        let mut lab = Self {
            pods: Vec::with_capacity(pods),
            node,
            tag: short_tag(),
            bpffs,
            logs,
            _turn: turn,
        };
        for _ in 0..pods {
            lab.add_pod()?;
        }
        Ok(lab)
    }

    /// Adds a pod to a running lab, the way a new pod appears on a node:
    /// its host-side veth matches `veth*` like the others. Returns its index.
    pub fn add_pod(&mut self) -> Result<usize> {
        let index = self.pods.len();
        if index >= MAX_PODS {
            return Err(LabError::Other(format!(
                "a lab holds at most {MAX_PODS} pods"
            )));
        }
        let pod = Pod::create(&self.node, &self.tag, index)?;
        self.pods.push(pod);
        Ok(index)
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

    /// Points pod `index`'s `resolv.conf` at `nameserver` (same search list
    /// and ndots): a pod created before kubelet's `clusterDNS` changed names
    /// the cluster DNS Service's ClusterIP instead of the link-local address.
    pub fn set_pod_nameserver(&mut self, index: usize, nameserver: IpAddr) -> Result<()> {
        self.pods[index].netns.set_resolv_conf(&format!(
            "nameserver {nameserver}\nsearch {POD_SEARCH}\noptions ndots:5\n"
        ))
    }

    /// Where daemons' logs go (removed with the lab unless `NODEDNS_LAB_KEEP_LOGS` is set).
    pub fn log_dir(&self) -> &Path {
        self.logs.path()
    }

    /// The node's pin directory, as `/sys/fs/bpf/nodedns` is on a real node
    /// (the agent's `--bpffs-path`); removed with the lab.
    pub fn bpffs(&self) -> &Path {
        self.bpffs.path()
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
        Daemon::start(name, cmd, &self.log_dir().join(format!("{name}.log")))
    }

    /// Starts the built dns-agent in the node namespace with `args`. It runs
    /// under `nsenter --net`, not `ip netns exec`, which would mount a fresh
    /// `/sys` and hide bpffs from it.
    pub fn start_agent(&self, name: &str, args: &[&str]) -> Result<Daemon> {
        let mut cmd = self.node.command_net_only(agent_binary()?);
        cmd.args(args);
        Daemon::start(name, cmd, &self.log_dir().join(format!("{name}.log")))
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

    /// `dig <args>` from the pod, one try of two seconds ([`Netns::dig`]).
    pub fn dig(&self, args: &[&str]) -> Result<Reply> {
        self.netns.dig(args)
    }

    /// `kdig <args>` from the pod, no retry, two seconds.
    pub fn kdig(&self, args: &[&str]) -> Result<Reply> {
        self.netns.kdig(args)
    }

    /// `getent <args>` from the pod: glibc's resolver with the pod's
    /// `resolv.conf` (search list, ndots:5).
    pub fn getent(&self, args: &[&str]) -> Result<Hosts> {
        self.netns.getent(args)
    }

    /// Attaches an XDP_PASS program to the pod's `eth0` in driver mode, so
    /// that XDP_TX replies from a native-mode program on the node side are
    /// delivered (veth drops them otherwise). Detached when dropped.
    pub fn attach_pass_program(&self) -> Result<PassProgram> {
        PassProgram::attach(&self.netns, POD_IFNAME, XdpAttach::Driver)
    }

    /// The pod's kernel SNMP counters (`UdpInCsumErrors`, ...).
    pub fn nstat(&self) -> Result<BTreeMap<String, u64>> {
        self.netns.nstat()
    }

    /// Replies the pod dropped for a bad UDP checksum, IPv4 and IPv6
    /// ([`Netns::udp_csum_errors`]).
    pub fn udp_csum_errors(&self) -> Result<u64> {
        self.netns.udp_csum_errors()
    }
}

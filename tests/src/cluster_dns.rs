//! The cluster's DNS Service as a node reaches it: a stand-in DNS server
//! (dnsmasq) in a namespace of its own, joined to the lab node by a veth,
//! and a ClusterIP that a kube-proxy-like DNAT rule in the node's
//! `PREROUTING` (`iptables -t nat`, as kube-proxy's iptables mode writes
//! it) sends to it. Its answers differ from the agent's on purpose (every
//! name resolves to [`STANDIN_V4`] / [`STANDIN_V6`]), so a test can tell who
//! answered; it logs every query it gets.
//!
//! ```text
//!  pod ── veth ── node: DNAT 10.96.0.10:53 → 10.202.0.2:53 ── veth ── stand-in netns (dnsmasq)
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::lab::{Lab, Netns, Result, VethPair, short_tag};
use crate::upstream::{Dnsmasq, DnsmasqSpec};

/// The cluster DNS Service's ClusterIPs (kube-dns's usual IPv4 address).
pub const CLUSTER_DNS_V4: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
pub const CLUSTER_DNS_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x96, 0, 0, 0, 0, 0, 0xa);
/// An address nothing is configured for or translates: queries to it must
/// go unanswered.
pub const UNCONFIGURED_V4: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 11);
/// What the stand-in answers for every name: documentation addresses the
/// agent never gives.
pub const STANDIN_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 53);
pub const STANDIN_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x53);
/// The stand-in's own addresses (the DNAT targets) and the node's end.
const POD_V4: Ipv4Addr = Ipv4Addr::new(10, 202, 0, 2);
const NODE_V4: Ipv4Addr = Ipv4Addr::new(10, 202, 0, 1);
const POD_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 0x202, 0, 0, 0, 0, 2);
const NODE_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 0x202, 0, 0, 0, 0, 1);

/// The stand-in and its DNAT rules. Dropping it stops dnsmasq and removes
/// its namespace (and with it the veth); the rules live in the lab node's
/// namespace and go with it.
pub struct ClusterDns {
    // Field order is drop order.
    server: Dnsmasq,
    _veth: VethPair,
    netns: Netns,
}

impl ClusterDns {
    /// Starts the stand-in for `lab` and translates both ClusterIPs to it,
    /// UDP and TCP, port 53. The node's interface to it is not named like a
    /// pod's (`veth*`), so the agent leaves it alone.
    pub fn start(lab: &Lab) -> Result<Self> {
        let netns = Netns::create("clusterdns")?;
        let node = lab.node();
        let host = format!("svc{}", short_tag());
        let veth = VethPair::create(node, &host, &netns, "eth0")?;
        node.ip(&["addr", "add", &format!("{NODE_V4}/24"), "dev", &host])?;
        node.ip(&[
            "-6",
            "addr",
            "add",
            &format!("{NODE_V6}/64"),
            "dev",
            &host,
            "nodad",
        ])?;
        node.ip(&["link", "set", &host, "up"])?;
        netns.ip(&["addr", "add", &format!("{POD_V4}/24"), "dev", "eth0"])?;
        netns.ip(&[
            "-6",
            "addr",
            "add",
            &format!("{POD_V6}/64"),
            "dev",
            "eth0",
            "nodad",
        ])?;
        netns.ip(&["link", "set", "eth0", "up"])?;
        netns.ip(&["route", "add", "default", "via", &NODE_V4.to_string()])?;
        netns.ip(&["-6", "route", "add", "default", "via", &NODE_V6.to_string()])?;
        // The node routes between pods and the stand-in, as a node does.
        node.run("sysctl", &["-q", "-w", "net.ipv4.ip_forward=1"])?;
        node.run("sysctl", &["-q", "-w", "net.ipv6.conf.all.forwarding=1"])?;
        // The DNAT kube-proxy's iptables mode writes, for both families and
        // protocols; then a rule with no target in `raw` PREROUTING, before
        // conntrack and before any kube-proxy rule: it counts every UDP
        // packet to a ClusterIP that netfilter sees at all
        // ([`Self::netfilter_udp_packets`]).
        let families = [
            (
                "iptables",
                format!("{CLUSTER_DNS_V4}/32"),
                format!("{POD_V4}:53"),
            ),
            (
                "ip6tables",
                format!("{CLUSTER_DNS_V6}/128"),
                format!("[{POD_V6}]:53"),
            ),
        ];
        for (tool, cluster_ip, standin) in &families {
            let mut rules: Vec<String> = ["udp", "tcp"]
                .iter()
                .map(|proto| {
                    format!(
                        "-t nat -A PREROUTING -d {cluster_ip} -p {proto} --dport 53 \
                         -j DNAT --to-destination {standin}"
                    )
                })
                .collect();
            rules.push(format!(
                "-t raw -A PREROUTING -d {cluster_ip} -p udp --dport 53"
            ));
            for rule in rules {
                node.run(tool, &rule.split_whitespace().collect::<Vec<_>>())?;
            }
        }
        let server = DnsmasqSpec::new(SocketAddr::new(POD_V4.into(), 53))
            .also_listen(POD_V6.into())
            // The start-up probe's name; `#` below matches every other name.
            .host("probe.cluster-dns.test", STANDIN_V4.into())
            .arg(format!("--address=/#/{STANDIN_V4}"))
            .arg(format!("--address=/#/{STANDIN_V6}"))
            .log_queries()
            .start(lab, &netns, "cluster-dns")?;
        Ok(Self {
            server,
            _veth: veth,
            netns,
        })
    }

    /// The ClusterIP of a family.
    pub fn cluster_ip(v6: bool) -> IpAddr {
        if v6 {
            CLUSTER_DNS_V6.into()
        } else {
            CLUSTER_DNS_V4.into()
        }
    }

    /// The names the stand-in was asked, with the asker's address, in order
    /// (its own start-up probe included).
    pub fn queries(&self) -> Vec<(String, IpAddr)> {
        self.server
            .log()
            .lines()
            .filter_map(|line| {
                // "... query[A] web.default.svc.cluster.local from 10.201.0.2"
                let rest = line.split_once("query[")?.1;
                let (_, rest) = rest.split_once("] ")?;
                let (name, from) = rest.split_once(" from ")?;
                Some((name.to_string(), from.trim().parse().ok()?))
            })
            .collect()
    }

    /// Queries the stand-in got from `client`.
    pub fn queries_from(&self, client: IpAddr) -> Vec<String> {
        self.queries()
            .into_iter()
            .filter(|(_, from)| *from == client)
            .map(|(name, _)| name)
            .collect()
    }

    /// UDP packets to port 53 of either ClusterIP that entered netfilter
    /// in the `node` namespace (the lab's node): what kube-proxy and
    /// conntrack could have seen.
    pub fn netfilter_udp_packets(node: &Netns) -> Result<u64> {
        let mut total = 0;
        for tool in ["iptables", "ip6tables"] {
            let out = node.run(tool, &["-t", "raw", "-S", "PREROUTING", "-v"])?;
            // "-A PREROUTING -d 10.96.0.10/32 -p udp -m udp --dport 53 -c <pkts> <bytes>"
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                let counted = line.starts_with("-A PREROUTING")
                    && line.contains("-p udp")
                    && line.contains("--dport 53");
                if let Some((_, counters)) = line.split_once(" -c ").filter(|_| counted) {
                    let packets = counters.split_whitespace().next().unwrap_or("0");
                    total += packets.parse::<u64>().unwrap_or(0);
                }
            }
        }
        Ok(total)
    }

    pub fn netns(&self) -> &Netns {
        &self.netns
    }
}

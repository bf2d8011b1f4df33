//! Command-line flags of the fast path, `inspect` and `cleanup`.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Args, Parser, ValueEnum};
use dns_common::DEFAULT_ANSWER_ENTRIES;

/// Default pin directory (shared by every network namespace, like bpffs).
pub const DEFAULT_BPFFS_PATH: &str = "/sys/fs/bpf/nodedns";
/// Host-side pod interfaces of common CNIs: plain veth (bridge, ptp, flannel),
/// Calico, Cilium, the CNI bridge plugin, AWS VPC CNI and GKE.
pub const DEFAULT_INTERFACES: &[&str] = &["veth*", "cali*", "lxc*", "cni*", "eni*", "gke*"];
/// Upper bound of `--map-entries`: about 450 MiB of kernel memory (the
/// index and the answer slots cost about 1.8 KB per entry on kernel 6.18,
/// docs/design.md#map-memory).
pub const MAX_ANSWER_ENTRIES: u32 = 262_144;
/// Default safety-net rescan of interfaces, in seconds (link events are the
/// main trigger).
pub const DEFAULT_RESCAN_SECS: u64 = 30;

/// How the XDP program is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum XdpModeArg {
    /// Generic (SKB) mode on veth, where native XDP_TX replies are dropped
    /// unless the peer runs an XDP program; native mode elsewhere, falling
    /// back to generic mode when the driver has no native XDP.
    Auto,
    /// Native (driver) mode everywhere; interfaces without it are skipped.
    Native,
    /// Generic (SKB) mode everywhere.
    Skb,
    /// No XDP at all: no program, no maps; userspace answers everything.
    Off,
}

/// The XDP fast path: where and how the program is attached, where its maps
/// are pinned and how big they are.
#[derive(Debug, Clone, Args)]
pub struct FastPathArgs {
    /// Interface to attach the XDP program to; repeatable or
    /// comma-separated, glob patterns allowed. Pod traffic enters the node
    /// on the pods' host-side veths.
    #[arg(long = "interface", env = "NODEDNS_INTERFACES", value_name = "NAME", value_delimiter = ',', default_values = DEFAULT_INTERFACES, value_parser = crate::cli::trimmed::<String>)]
    pub interfaces: Vec<String>,

    /// Interface never to attach to, even if --interface matches it;
    /// repeatable or comma-separated, glob patterns allowed.
    #[arg(
        long = "exclude-interface",
        env = "NODEDNS_EXCLUDE_INTERFACES",
        value_name = "NAME",
        value_delimiter = ',',
        value_parser = crate::cli::trimmed::<String>
    )]
    pub exclude_interfaces: Vec<String>,

    /// XDP attach mode.
    #[arg(long, env = "NODEDNS_XDP_MODE", value_enum, default_value_t = XdpModeArg::Auto)]
    pub xdp_mode: XdpModeArg,

    /// bpffs directory for the pinned maps and links (must be on a bpffs
    /// mount). `dns-agent inspect` and `bpftool map dump pinned` read it.
    #[arg(long, env = "NODEDNS_BPFFS_PATH", value_name = "DIR", default_value = DEFAULT_BPFFS_PATH)]
    pub bpffs_path: PathBuf,

    /// Capacity of the kernel answers map, in entries: about 1.8 KB of
    /// kernel memory each, preallocated (28 MiB for the default 16384).
    #[arg(
        long,
        env = "NODEDNS_MAP_ENTRIES",
        value_name = "N",
        default_value_t = DEFAULT_ANSWER_ENTRIES,
        value_parser = clap::value_parser!(u32).range(1..=MAX_ANSWER_ENTRIES as i64)
    )]
    pub map_entries: u32,

    /// On exit leave the XDP attachments and the pinned maps in place, so the
    /// kernel keeps answering hot names until the next agent adopts them
    /// (use this for restarts and rolling updates).
    #[arg(long, env = "NODEDNS_KEEP_ON_EXIT", conflicts_with = "cleanup_on_exit")]
    pub keep_on_exit: bool,

    /// On exit remove everything the fast path created: attachments, pins
    /// and the pin directory. Without this flag or --keep-on-exit the agent
    /// detaches but keeps the maps pinned for a warm restart.
    #[arg(long)]
    pub cleanup_on_exit: bool,

    /// The ClusterIP of the cluster's DNS Service (repeatable or
    /// comma-separated, IPv4 and IPv6, at most 4 per family). The kernel answers queries to it like queries to --listen
    /// (transparent mode, see --transparent), and sends the queries it
    /// cannot answer there while no agent serves (fail-open). Default with
    /// the API server: the ClusterIPs of Service kube-system/kube-dns;
    /// with --manifests: none.
    #[arg(
        long = "cluster-dns-ip",
        env = "NODEDNS_CLUSTER_DNS_IP",
        value_name = "IP",
        value_delimiter = ','
    )]
    pub cluster_dns_ips: Vec<IpAddr>,

    /// Serve pods whose resolv.conf names the cluster DNS Service
    /// (--cluster-dns-ip) on the node, without kube-proxy or conntrack.
    /// With false, queries to it go to the Service as before, and it only
    /// receives the queries that fail open while no agent serves.
    #[arg(long, env = "NODEDNS_TRANSPARENT", default_value_t = true,
          action = clap::ArgAction::Set)]
    pub transparent: bool,

    /// Seconds between safety-net rescans of interfaces (link events are
    /// followed as they come).
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_RESCAN_SECS,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub rescan_interval: u64,

    /// Load this XDP object file instead of the one embedded at build time.
    #[arg(long, value_name = "FILE", hide = true)]
    pub ebpf_object: Option<PathBuf>,
}

impl FastPathArgs {
    /// The flags' defaults, as `dns-agent run` with no fast-path flags.
    pub fn defaults() -> Self {
        #[derive(Parser)]
        struct Wrapper {
            #[command(flatten)]
            args: FastPathArgs,
        }
        Wrapper::parse_from(["fastpath"]).args
    }
}

/// `dns-agent inspect`: print the kernel answers and counters.
#[derive(Debug, Clone, Args)]
pub struct InspectArgs {
    /// bpffs directory the agent pinned its maps in.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_BPFFS_PATH)]
    pub bpffs_path: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `dns-agent cleanup`: remove every XDP attachment and pin the agent made.
#[derive(Debug, Clone, Args)]
pub struct CleanupArgs {
    /// bpffs directory the agent pinned its maps and links in.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_BPFFS_PATH)]
    pub bpffs_path: PathBuf,
    /// Clean up even while a running agent owns the pin directory (it
    /// holds a lock on it): that agent loses its kernel side, and repairs
    /// it within seconds. Without this flag cleanup refuses, naming the
    /// agent's pid.
    #[arg(long)]
    pub force: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: FastPathArgs,
    }

    #[test]
    fn defaults_fit_common_cnis() {
        let args = FastPathArgs::defaults();
        assert_eq!(args.interfaces, DEFAULT_INTERFACES);
        assert_eq!(args.xdp_mode, XdpModeArg::Auto);
        assert_eq!(args.bpffs_path, PathBuf::from(DEFAULT_BPFFS_PATH));
        assert_eq!(args.map_entries, DEFAULT_ANSWER_ENTRIES);
        assert!(!args.keep_on_exit && !args.cleanup_on_exit);
        assert!(args.cluster_dns_ips.is_empty() && args.transparent);
    }

    #[test]
    fn flags_parse_and_conflict() {
        let cli = Cli::try_parse_from([
            "x",
            "--interface",
            "eth1",
            "--interface",
            "cali*",
            "--xdp-mode",
            "skb",
            "--map-entries",
            "1024",
            "--keep-on-exit",
        ])
        .unwrap();
        assert_eq!(cli.args.interfaces, ["eth1", "cali*"]);
        assert_eq!(cli.args.xdp_mode, XdpModeArg::Skb);
        assert_eq!(cli.args.map_entries, 1024);
        let cli = Cli::try_parse_from(["x", "--interface=veth*,lxc*"]).unwrap();
        assert_eq!(cli.args.interfaces, ["veth*", "lxc*"]);
        assert!(Cli::try_parse_from(["x", "--keep-on-exit", "--cleanup-on-exit"]).is_err());
        assert!(Cli::try_parse_from(["x", "--map-entries", "0"]).is_err());
        assert!(Cli::try_parse_from(["x", "--map-entries", "300000"]).is_err());
        let cli = Cli::try_parse_from([
            "x",
            "--cluster-dns-ip",
            "10.96.0.10,fd00::a",
            "--transparent",
            "false",
        ])
        .unwrap();
        assert_eq!(cli.args.cluster_dns_ips.len(), 2);
        assert!(!cli.args.transparent);
    }
}

//! The fast path's one error type. Every message says what went wrong and,
//! where there is one, what to do about it.

use std::io;
use std::path::PathBuf;

use dns_common::{EGRESS_PROGRAM_NAME, MAX_CLUSTER_DNS_ADDRS, MAX_LISTEN_ADDRS, PROGRAM_NAME};

#[derive(Debug, thiserror::Error)]
pub enum FastPathError {
    #[error(
        "two agents already write the kernel answers under {path} (each holds a slot half's \
         lock): stop one of them first"
    )]
    SlotHalvesTaken { path: PathBuf },

    #[error(
        "{path} is not on a bpffs mount ({found} is {fs_type:#x}): mount one with \
         `mount -t bpf bpf /sys/fs/bpf`, or pass a --bpffs-path on a bpffs"
    )]
    NotBpffs {
        path: PathBuf,
        found: PathBuf,
        fs_type: i64,
    },

    #[error(
        "refusing to clean up {path}: a running agent owns it ({holders}). Stop the agent \
         first (its --cleanup-on-exit or a later cleanup removes everything), or pass \
         --force to clean up anyway (the running agent then re-creates what it needs \
         within seconds)"
    )]
    InUse { path: PathBuf, holders: String },

    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error(
        "the XDP object has no map {name}: it does not match this agent; rebuild it with \
         `cargo xtask build-ebpf` and rebuild dns-agent"
    )]
    MissingMap { name: &'static str },

    #[error(
        "the XDP object has no XDP program {PROGRAM_NAME}: rebuild it with \
         `cargo xtask build-ebpf` and rebuild dns-agent"
    )]
    MissingProgram,

    #[error(
        "map {name} has {what} {found}, this agent expects {expected}: the XDP object and \
         dns-common disagree; rebuild both with `cargo xtask build-ebpf`"
    )]
    MapLayout {
        name: &'static str,
        what: &'static str,
        found: u32,
        expected: u32,
    },

    #[error(
        "loading the XDP object failed (the agent needs root, or CAP_BPF + CAP_NET_ADMIN + \
         CAP_PERFMON): {0}"
    )]
    Load(#[source] Box<aya::EbpfError>),

    #[error("the kernel rejected {PROGRAM_NAME}: {0}")]
    Program(#[source] Box<aya::programs::ProgramError>),

    #[error(
        "the kernel rejected the egress program {EGRESS_PROGRAM_NAME} (TC, needed to fail \
         open): {0}"
    )]
    EgressProgram(#[source] Box<aya::programs::ProgramError>),

    #[error("map {name}: {source}")]
    Map {
        name: &'static str,
        #[source]
        source: Box<aya::maps::MapError>,
    },

    #[error("interface {name} does not exist: check --interface (`ip link` lists interfaces)")]
    NoSuchInterface { name: String },

    #[error("invalid interface pattern {pattern:?}: {reason}")]
    Pattern { pattern: String, reason: String },

    #[error(
        "{count} IPv{family} listen addresses, but the kernel matches at most \
         {MAX_LISTEN_ADDRS}: list fewer addresses"
    )]
    TooManyListenAddrs { family: u8, count: usize },

    #[error(
        "{count} IPv{family} cluster DNS addresses, but the kernel matches at most \
         {MAX_CLUSTER_DNS_ADDRS}: give fewer --cluster-dns-ip"
    )]
    TooManyClusterDnsAddrs { family: u8, count: usize },

    #[error(
        "{addr} is both a listen address and a --cluster-dns-ip: serving the cluster DNS \
         address needs no --listen; drop it from one of the two"
    )]
    ClusterDnsIsListen { addr: std::net::IpAddr },

    #[error("the transparent path's {what}: {source} (the agent needs CAP_NET_RAW)")]
    Transparent {
        what: &'static str,
        #[source]
        source: io::Error,
    },

    #[error("netlink {op} failed: {source}")]
    Netlink {
        op: &'static str,
        #[source]
        source: io::Error,
    },

    #[error("attaching {PROGRAM_NAME} to {interface} failed: {source}")]
    Attach {
        interface: String,
        #[source]
        source: Box<aya::programs::ProgramError>,
    },

    #[error("pinned link {path}: {reason}")]
    Link { path: PathBuf, reason: String },

    #[error(
        "nothing is pinned under {path}: is an agent running with --bpffs-path {path}, or did \
         it exit without --keep-on-exit?"
    )]
    NothingPinned { path: PathBuf },
}

impl FastPathError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn map(name: &'static str, source: aya::maps::MapError) -> Self {
        Self::Map {
            name,
            source: Box::new(source),
        }
    }
}

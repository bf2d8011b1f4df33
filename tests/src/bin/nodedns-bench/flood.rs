//! The hot set under a flood (issue 16.3): a fresh XDP agent, a small hot
//! set of Services asked over and over while a flood of unique cluster
//! names (each asked once: NXDOMAIN from userspace) fills its map many
//! times over; the share of the hot set's answers the kernel gave. Method:
//! tests/bench/README.md.

use std::net::Ipv4Addr;

use anyhow::{Context, Result};
use nodedns_tests::client::{HotSetFlood, HotSetResult};
use nodedns_tests::http::http_get;
use nodedns_tests::lab::Lab;
use nodedns_tests::metrics::Metrics;

use crate::cluster::Cluster;
use crate::counters::XdpCounters;
use crate::servers::{self, Kind};

/// The flood's agent's address and port offset (metrics and health).
const ADDR: Ipv4Addr = Ipv4Addr::new(169, 254, 20, 60);
const PORTS: u16 = 20;
/// Services in the hot set, and how often it is asked.
const HOT_NAMES: usize = 16;
const HOT_QPS: u64 = 500;

/// How big a flood, how fast, into how big a map.
pub struct Flood {
    pub names: u64,
    pub qps: u64,
    pub map_entries: u32,
}

impl Flood {
    /// Issue 16's case (300k names at 3k qps into the default map) in a
    /// full run; a tenth of it into a quarter of the map in a quick run; a
    /// token one in a dry run (too small to judge the goal by).
    pub fn plan(quick: bool, dry_run: bool) -> Self {
        let default = dns_common::DEFAULT_ANSWER_ENTRIES;
        match (quick, dry_run) {
            (_, true) => Self {
                names: 2_000,
                qps: 1_000,
                map_entries: 256,
            },
            (true, false) => Self {
                names: 30_000,
                qps: 3_000,
                map_entries: default / 4,
            },
            (false, false) => Self {
                names: 300_000,
                qps: 3_000,
                map_entries: default,
            },
        }
    }
}

/// Runs the flood against a fresh XDP agent queried from `pod`.
pub fn measure(lab: &Lab, cluster: &Cluster, pod: usize, flood: &Flood) -> Result<HotSetResult> {
    let extra = ["--map-entries".to_string(), flood.map_entries.to_string()];
    let server = servers::start(lab, Kind::XdpSkb, pod, ADDR, cluster, PORTS, &extra)?;
    let bpffs = server.bpffs.as_ref().context("the agent pins its maps")?;
    let counters = XdpCounters::open(bpffs.path())?;
    let hot = cluster
        .services
        .iter()
        .take(HOT_NAMES)
        .map(|s| format!("{} A", s.fqdn()))
        .collect();
    let run = HotSetFlood {
        server: ADDR.to_string(),
        hot,
        hot_qps: HOT_QPS,
        flood: flood.names,
        flood_qps: flood.qps,
    };
    let result = run
        .run(lab, lab.pod(pod).netns(), || {
            counters
                .get(dns_common::Counter::Hit)
                .map_err(|e| format!("{e:#}"))
        })
        .context("the hot set under a flood")?;
    eprintln!("bench: {}", result.line());
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 9300 + PORTS));
    if let Ok(Ok((200, body))) = lab.node().enter(|| http_get(addr, "/metrics")) {
        let m = Metrics::parse(&body);
        eprintln!("bench: {}", m.map_line());
        eprintln!(
            "bench: kernel: {:?}",
            m.sum_by("nodedns_xdp_packets_total", "outcome")
        );
    }
    Ok(result)
}

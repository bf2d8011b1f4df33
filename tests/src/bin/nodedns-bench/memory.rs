//! Agent RSS, idle CPU and BPF map kernel memory with clusters of growing
//! size, each Service with [`ENDPOINTS_PER_SERVICE`] endpoints.

use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::{Context, Result};
use nodedns_tests::lab::Lab;

use crate::cluster::Cluster;
use crate::cpu;
use crate::servers::{self, Kind};

/// Time after the first answer for the agent to settle (map writes, caches).
const SETTLE: Duration = Duration::from_secs(2);
/// Endpoints per Service: issue 14's scale point is 50k Services with 250k.
pub const ENDPOINTS_PER_SERVICE: usize = 5;
/// The idle CPU window at each size.
const IDLE_WINDOW: Duration = Duration::from_secs(5);

pub struct Memory {
    pub services: usize,
    pub rss_bytes: u64,
    /// The peak RSS, loading included.
    pub hwm_bytes: u64,
    pub idle_ms_per_s: f64,
    pub map_bytes: u64,
    pub maps: Vec<(String, u64)>,
}

/// Starts one XDP agent per size on `pod`, one after the other.
pub fn measure(lab: &Lab, pod: usize, sizes: &[usize]) -> Result<Vec<Memory>> {
    let mut out = Vec::new();
    for (i, &n) in sizes.iter().enumerate() {
        let cluster = Cluster::with_endpoints(n, ENDPOINTS_PER_SERVICE);
        let addr = Ipv4Addr::new(169, 254, 20, 40 + i as u8);
        eprintln!(
            "bench: memory with {n} services and {} endpoints",
            n * ENDPOINTS_PER_SERVICE
        );
        let server = servers::start(lab, Kind::XdpSkb, pod, addr, &cluster, 40 + i as u16, &[])
            .with_context(|| format!("start an agent with {n} services"))?;
        std::thread::sleep(SETTLE);
        let before = cpu::threads_ns(server.pid())?;
        std::thread::sleep(IDLE_WINDOW);
        let idle = cpu::threads_ns(server.pid())?.saturating_sub(before);
        let prog = cpu::xdp_prog_id(lab.node(), lab.pod(pod).node_ifname())?;
        let maps = cpu::map_memory(prog)?;
        out.push(Memory {
            services: n,
            rss_bytes: cpu::rss_bytes(server.pid())?,
            hwm_bytes: cpu::status_bytes(server.pid(), "VmHWM")?,
            idle_ms_per_s: idle as f64 / 1e6 / IDLE_WINDOW.as_secs_f64(),
            map_bytes: maps.iter().map(|(_, b)| b).sum(),
            maps,
        });
        drop(server);
    }
    Ok(out)
}

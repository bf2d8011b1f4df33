//! Agent RSS and BPF map kernel memory with clusters of growing size.

use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::{Context, Result};
use nodedns_tests::lab::Lab;

use crate::cluster::Cluster;
use crate::cpu;
use crate::servers::{self, Kind};

/// Time after the first answer for the agent to settle (map writes, caches).
const SETTLE: Duration = Duration::from_secs(2);

pub struct Memory {
    pub services: usize,
    pub rss_bytes: u64,
    pub map_bytes: u64,
    pub maps: Vec<(String, u64)>,
}

/// Starts one XDP agent per size on `pod`, one after the other.
pub fn measure(lab: &Lab, pod: usize, sizes: &[usize]) -> Result<Vec<Memory>> {
    let mut out = Vec::new();
    for (i, &n) in sizes.iter().enumerate() {
        let cluster = Cluster::new(n);
        let addr = Ipv4Addr::new(169, 254, 20, 40 + i as u8);
        let server = servers::start(lab, Kind::XdpSkb, pod, addr, &cluster, 40 + i as u16)
            .with_context(|| format!("start an agent with {n} services"))?;
        std::thread::sleep(SETTLE);
        let prog = cpu::xdp_prog_id(lab.node(), lab.pod(pod).node_ifname())?;
        let maps = cpu::map_memory(prog)?;
        out.push(Memory {
            services: n,
            rss_bytes: cpu::rss_bytes(server.pid())?,
            map_bytes: maps.iter().map(|(_, b)| b).sum(),
            maps,
        });
        drop(server);
    }
    Ok(out)
}

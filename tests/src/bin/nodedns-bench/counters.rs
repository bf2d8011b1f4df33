//! The XDP program's per-CPU counters, read from the agent's pin: how many
//! queries the kernel answered (hits) during a run.

use std::path::Path;

use anyhow::{Context, Result};
use aya::maps::{Map, MapData, PerCpuArray};
use dns_common::{Counter, MAP_COUNTERS};

pub struct XdpCounters {
    map: PerCpuArray<MapData, u64>,
}

impl XdpCounters {
    /// Opens `<bpffs>/NODEDNS_COUNTERS`, pinned by the agent.
    pub fn open(bpffs: &Path) -> Result<Self> {
        let pin = bpffs.join(MAP_COUNTERS);
        let data = MapData::from_pin(&pin).with_context(|| format!("open {}", pin.display()))?;
        let map = Map::from_map_data(data).context("the pinned counters map")?;
        Ok(Self {
            map: PerCpuArray::try_from(map).context("the counters map is not a per-CPU array")?,
        })
    }

    /// `counter` summed over the CPUs.
    pub fn get(&self, counter: Counter) -> Result<u64> {
        Ok(self
            .map
            .get(&(counter as u32), 0)
            .with_context(|| format!("read counter {}", counter.name()))?
            .iter()
            .sum())
    }
}

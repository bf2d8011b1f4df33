//! The agent's heartbeat (docs/design.md#liveness): a `CLOCK_BOOTTIME`
//! timestamp in the liveness map of this agent's XDP program, written
//! through a shared mapping. The program treats a beat older than
//! `LIVENESS_TIMEOUT_NS` as "no agent serves" and fails open. The resolver
//! beats from the task that serves the transparent path, so a stopped
//! (SIGSTOP), killed or wedged agent stops beating.

use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Duration;

use aya::maps::MapData;
use dns_common::Liveness;
use dns_common::failopen::agent_serves;

use super::error::FastPathError;
use crate::kernel::bpf::MappedU64;
use crate::kernel::clock::boot_time_ns;

/// The heartbeat's writer and reader; clones share the mapping.
#[derive(Clone)]
pub struct Heartbeat {
    mapped: Arc<MappedU64>,
    /// Keeps the map's descriptor next to its mapping.
    _map: Arc<MapData>,
}

/// What the kernel sees of the heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LivenessState {
    /// The program would fail open now.
    pub failing_open: bool,
    /// Time since the last beat; `None` before the first and after a
    /// clean stop.
    pub age: Option<Duration>,
}

impl Heartbeat {
    /// `map`: the liveness map, a `BPF_F_MMAPABLE` array of one
    /// [`Liveness`].
    pub(crate) fn new(map: MapData) -> Result<Self, FastPathError> {
        let mapped =
            MappedU64::map(map.fd().as_fd()).map_err(|source| FastPathError::Transparent {
                what: "liveness map mapping",
                source,
            })?;
        Ok(Self {
            mapped: Arc::new(mapped),
            _map: Arc::new(map),
        })
    }

    /// Records that this agent serves now.
    pub fn beat(&self) {
        self.mapped.store(boot_time_ns());
    }

    /// Records that this agent stopped serving: its program fails open at
    /// once instead of after the timeout.
    pub fn stop(&self) {
        self.mapped.store(0);
    }

    pub fn state(&self) -> LivenessState {
        let beat = self.mapped.load();
        let now = boot_time_ns();
        LivenessState {
            failing_open: !agent_serves(&Liveness { heartbeat_ns: beat }, now),
            age: (beat != 0).then(|| Duration::from_nanos(now.saturating_sub(beat))),
        }
    }
}

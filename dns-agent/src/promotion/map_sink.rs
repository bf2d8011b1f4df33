//! [`AnswerSink`] over the pinned answers map of a running fast path.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use aya::maps::{MapData, MapError, PerCpuArray};
use dns_common::hot_samples::{HOT_CURSOR, HOT_RING, ring_slot};
use dns_common::{AnswerEntry, AnswerKey, MAP_HOT_SAMPLES};

use super::sink::{AnswerSink, SinkError};
use crate::fastpath::loader::open_pinned;
use crate::fastpath::slots::TableError;
use crate::fastpath::{AnswersMap, FastPath, FastPathError};

/// The kernel answers (index and slots, `fastpath::slots`): a write is a
/// fresh slot, then one index update, so the XDP reader sees the old answer
/// or the new one (docs/design.md#torn-reads); the mutex serialises this
/// process's writers, which share the free slots.
pub struct MapSink {
    map: Arc<Mutex<AnswersMap>>,
    capacity: u32,
    /// The kernel's hit samples, and how many each CPU had taken when they
    /// were last read; `None` when the pins have no rings.
    samples: Option<Mutex<HitRings>>,
}

struct HitRings {
    rings: PerCpuArray<MapData, u64>,
    read: Vec<u64>,
}

impl HitRings {
    /// The samples taken since the last call (at most a ring's worth per
    /// CPU; older ones were overwritten). A slot may already hold a newer
    /// sample than the one counted: a few samples off, never a wrong name.
    fn take(&mut self) -> Result<Vec<u64>, MapError> {
        let cursors = self.rings.get(&HOT_CURSOR, 0)?;
        self.read.resize(cursors.len(), 0);
        // Slot → the CPUs whose new samples sit there.
        let mut wanted: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
        for (cpu, &taken) in cursors.iter().enumerate() {
            let seen = self.read[cpu].min(taken);
            let from = seen.max(taken.saturating_sub(u64::from(HOT_RING)));
            for n in from..taken {
                wanted.entry(ring_slot(n)).or_default().push(cpu);
            }
            self.read[cpu] = taken;
        }
        let mut hashes = Vec::new();
        for (slot, cpus) in wanted {
            let values = self.rings.get(&slot, 0)?;
            hashes.extend(cpus.iter().map(|&c| values[c]).filter(|&h| h != 0));
        }
        Ok(hashes)
    }
}

impl MapSink {
    /// A sink writing `fast_path`'s answers map (through a descriptor of its
    /// own, so reads elsewhere do not wait for it).
    pub fn open(fast_path: &FastPath) -> Result<Self, FastPathError> {
        let samples = match open_pinned(fast_path.layout(), MAP_HOT_SAMPLES) {
            Ok(rings) => Some(Mutex::new(HitRings {
                rings,
                read: Vec::new(),
            })),
            Err(e) => {
                tracing::warn!(error = %e,
                    "no kernel hit samples: admission to a full map counts userspace questions only");
                None
            }
        };
        Ok(Self {
            map: fast_path.open_answers()?,
            capacity: fast_path.capacity(),
            samples,
        })
    }
}

impl AnswerSink for MapSink {
    fn put(&self, key: &AnswerKey, entry: &AnswerEntry) -> Result<(), SinkError> {
        let mut table = self.map.lock().unwrap_or_else(|p| p.into_inner());
        table.put(key, entry).map_err(|e| match e {
            TableError::Full => SinkError::Full {
                capacity: self.capacity,
            },
            e => SinkError::Map(e.to_string()),
        })
    }

    fn delete(&self, key: &AnswerKey) -> Result<(), SinkError> {
        let mut table = self.map.lock().unwrap_or_else(|p| p.into_inner());
        table.delete(key).map_err(|e| SinkError::Map(e.to_string()))
    }

    fn capacity(&self) -> u32 {
        self.capacity
    }

    fn existing_keys(&self) -> Vec<AnswerKey> {
        let table = self.map.lock().unwrap_or_else(|p| p.into_inner());
        table.keys()
    }

    fn read(&self, key: &AnswerKey) -> Option<AnswerEntry> {
        let table = self.map.lock().unwrap_or_else(|p| p.into_inner());
        table.read(key)
    }

    fn hit_samples(&self) -> Vec<u64> {
        let Some(samples) = &self.samples else {
            return Vec::new();
        };
        let mut rings = samples.lock().unwrap_or_else(|p| p.into_inner());
        rings.take().unwrap_or_else(|e| {
            tracing::debug!(error = %e, "reading the kernel hit samples failed");
            Vec::new()
        })
    }
}

//! The `nodedns_map_*` metrics: what promotion wrote to, admitted to,
//! rejected from, evicted from and inherited in the kernel answers map.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use crate::metrics::{Registry, metric_families};

/// What became of an entry a previous agent left in the kernel map. The
/// metric (`map_adopted`) keeps the name users already chart.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum InheritAction {
    /// A cluster-zone entry rewritten from the current zone.
    rederived,
    /// A cluster-zone entry deleted: the zone's answer no longer fits a
    /// kernel entry.
    withdrawn,
    /// An upstream entry kept, tracked with its remaining lifetime.
    tracked,
    /// A cluster-zone entry kept unverified because the zone had not synced
    /// yet; the first sync re-derives it.
    pending,
    /// Deleted: already expired.
    expired,
    /// Deleted: undecodable (torn, corrupt or another layout).
    corrupt,
    /// Deleted: an authoritative entry for a zone this agent does not serve.
    foreign,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InheritLabels {
    pub action: InheritAction,
}

/// Why a new answer went into the kernel map
/// (docs/design.md#admission-and-eviction).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum AdmitReason {
    /// The map had room.
    room,
    /// The map was full and the answer is asked more often than the entry
    /// it replaced.
    hotter,
}

/// Why a new answer was left to userspace with the map full.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum RejectReason {
    /// Not asked more often than the coldest entry looked at.
    colder,
    /// Not asked more often than the coldest entry looked at, and every
    /// entry looked at had recent kernel hits.
    protected,
}

/// Why an entry left the map to make room.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum EvictReason {
    /// Replaced by a more frequent answer; no recent kernel hit.
    colder,
    /// Replaced by a more frequent answer despite recent kernel hits.
    protected,
    /// The kernel refused a write as full although promotion counted room
    /// (entries it does not track); the coldest entry made room.
    full,
}

const EVICT_REASONS: [EvictReason; 3] = [
    EvictReason::colder,
    EvictReason::protected,
    EvictReason::full,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AdmitLabels {
    pub reason: AdmitReason,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectLabels {
    pub reason: RejectReason,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EvictLabels {
    pub reason: EvictReason,
}

metric_families! {
    pub struct PromotionMetrics, registered by fn register {
        /// Answers the agent installed in the kernel map
        pub map_entries: Gauge,
        /// Capacity of the kernel answers map
        pub map_capacity: Gauge,
        /// Kernel map entries written
        pub map_writes: Counter,
        /// New answers written to the kernel map, by reason
        pub map_admitted: Family<AdmitLabels, Counter>,
        /// New answers left to userspace because the kernel map is full of more frequent ones, by
        /// reason
        pub map_rejected: Family<RejectLabels, Counter>,
        /// Kernel map entries evicted to make room for a more frequent answer, by reason
        pub map_evictions: Family<EvictLabels, Counter>,
        /// Samples of kernel hits read to keep hot entries in the map
        pub map_hit_samples: Counter,
        /// Times the question frequency sketch was halved
        pub map_frequency_agings: Counter,
        /// Memory of the question frequency sketch
        pub map_frequency_bytes: Gauge,
        /// Answers not promoted because they do not fit a kernel entry
        pub map_encode_skipped: Counter,
        /// Kernel map writes that failed
        pub map_write_errors: Counter,
        /// Kernel map entries left by a previous agent, by what became of them at start
        pub map_adopted: Family<InheritLabels, Counter>,
    }
}

impl PromotionMetrics {
    /// The families, registered, with every reason's series from zero.
    pub fn new(registry: &mut Registry) -> Self {
        let m = Self::register(registry);
        // Every reason from zero, so each series exists (and rates start)
        // before the first event.
        for reason in [AdmitReason::room, AdmitReason::hotter] {
            let _ = m.map_admitted.get_or_create(&AdmitLabels { reason });
        }
        for reason in [RejectReason::colder, RejectReason::protected] {
            let _ = m.map_rejected.get_or_create(&RejectLabels { reason });
        }
        for reason in EVICT_REASONS {
            let _ = m.map_evictions.get_or_create(&EvictLabels { reason });
        }
        m
    }

    pub fn admitted(&self, reason: AdmitReason) {
        self.map_admitted
            .get_or_create(&AdmitLabels { reason })
            .inc();
    }

    pub fn rejected(&self, reason: RejectReason) {
        self.map_rejected
            .get_or_create(&RejectLabels { reason })
            .inc();
    }

    pub fn evicted(&self, reason: EvictReason) {
        self.map_evictions
            .get_or_create(&EvictLabels { reason })
            .inc();
    }

    /// Entries evicted, all reasons.
    pub fn evictions(&self) -> u64 {
        EVICT_REASONS
            .map(|reason| {
                self.map_evictions
                    .get_or_create(&EvictLabels { reason })
                    .get()
            })
            .iter()
            .sum()
    }

    pub fn inherited(&self, action: InheritAction) {
        self.map_adopted
            .get_or_create(&InheritLabels { action })
            .inc();
    }
}

//! The `nodedns_map_*` metrics: what promotion wrote to, admitted to,
//! rejected from, evicted from and inherited in the kernel answers map.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

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

pub struct PromotionMetrics {
    pub map_entries: Gauge,
    pub map_capacity: Gauge,
    pub map_writes: Counter,
    pub map_admitted: Family<AdmitLabels, Counter>,
    pub map_rejected: Family<RejectLabels, Counter>,
    pub map_evictions: Family<EvictLabels, Counter>,
    pub map_hit_samples: Counter,
    pub map_frequency_agings: Counter,
    pub map_frequency_bytes: Gauge,
    pub map_encode_skipped: Counter,
    pub map_write_errors: Counter,
    pub map_adopted: Family<InheritLabels, Counter>,
}

impl PromotionMetrics {
    pub fn new(registry: &mut Registry) -> Self {
        let m = Self {
            map_entries: Gauge::default(),
            map_capacity: Gauge::default(),
            map_writes: Counter::default(),
            map_admitted: Family::default(),
            map_rejected: Family::default(),
            map_evictions: Family::default(),
            map_hit_samples: Counter::default(),
            map_frequency_agings: Counter::default(),
            map_frequency_bytes: Gauge::default(),
            map_encode_skipped: Counter::default(),
            map_write_errors: Counter::default(),
            map_adopted: Family::default(),
        };
        let r = registry;
        r.register(
            "map_entries",
            "Answers the agent installed in the kernel map",
            m.map_entries.clone(),
        );
        r.register(
            "map_capacity",
            "Capacity of the kernel answers map",
            m.map_capacity.clone(),
        );
        r.register(
            "map_writes",
            "Kernel map entries written",
            m.map_writes.clone(),
        );
        r.register(
            "map_admitted",
            "New answers written to the kernel map, by reason",
            m.map_admitted.clone(),
        );
        r.register(
            "map_rejected",
            "New answers left to userspace because the kernel map is full of more frequent ones, by reason",
            m.map_rejected.clone(),
        );
        r.register(
            "map_evictions",
            "Kernel map entries evicted to make room for a more frequent answer, by reason",
            m.map_evictions.clone(),
        );
        r.register(
            "map_hit_samples",
            "Samples of kernel hits read to keep hot entries in the map",
            m.map_hit_samples.clone(),
        );
        r.register(
            "map_frequency_agings",
            "Times the question frequency sketch was halved",
            m.map_frequency_agings.clone(),
        );
        r.register(
            "map_frequency_bytes",
            "Memory of the question frequency sketch",
            m.map_frequency_bytes.clone(),
        );
        r.register(
            "map_encode_skipped",
            "Answers not promoted because they do not fit a kernel entry",
            m.map_encode_skipped.clone(),
        );
        r.register(
            "map_write_errors",
            "Kernel map writes that failed",
            m.map_write_errors.clone(),
        );
        r.register(
            "map_adopted",
            "Kernel map entries left by a previous agent, by what became of them at start",
            m.map_adopted.clone(),
        );
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

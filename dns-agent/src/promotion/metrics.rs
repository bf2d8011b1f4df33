//! The `nodedns_map_*` metrics: what promotion wrote to, evicted from and
//! inherited in the kernel answers map.

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

pub struct PromotionMetrics {
    pub map_entries: Gauge,
    pub map_capacity: Gauge,
    pub map_writes: Counter,
    pub map_evictions: Counter,
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
            map_evictions: Counter::default(),
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
            "map_evictions",
            "Kernel map entries evicted (least recently used) to make room",
            m.map_evictions.clone(),
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
        m
    }

    pub fn inherited(&self, action: InheritAction) {
        self.map_adopted
            .get_or_create(&InheritLabels { action })
            .inc();
    }
}

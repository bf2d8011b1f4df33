//! `coredns_cache_*`, for the userspace forwarding cache. CoreDNS splits
//! entries, hits and evictions by `type`: `success` for answers with data,
//! `denial` for NXDOMAIN and NODATA (and the SERVFAILs its `servfail`
//! option caches, which CoreDNS keeps with the denials).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use super::{CACHE_ZONES, CorednsMetrics, VIEW};
use crate::metrics::metric_families;

/// CoreDNS's two caches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheKind {
    Success,
    Denial,
}

impl CacheKind {
    fn label(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Denial => "denial",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CacheLabels {
    server: &'static str,
    zones: &'static str,
    view: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TypeLabels {
    server: &'static str,
    r#type: &'static str,
    zones: &'static str,
    view: &'static str,
}

/// The series every lookup updates (their labels never change), kept so
/// that a lookup does not hash them: handles on the families' counters.
pub(super) struct LookupSeries {
    requests: Counter,
    /// By [`CacheKind`].
    hits: [Counter; 2],
    misses: Counter,
}

metric_families! {
    pub(super) struct CacheFamilies, registered by pub(super) fn register, under "cache" {
        /// The number of elements in the cache
        entries: Family<TypeLabels, Gauge>,
        /// The count of cache requests
        requests: Family<CacheLabels, Counter>,
        /// The count of cache hits
        hits: Family<TypeLabels, Counter>,
        /// The count of cache misses. Deprecated, derive misses from cache hits/requests counters
        misses: Family<CacheLabels, Counter>,
        /// The number of times the cache has prefetched a cached item
        prefetch: Family<CacheLabels, Counter>,
        /// The number of requests served from stale cache entries
        served_stale: Family<CacheLabels, Counter>,
        /// The count of cache evictions
        evictions: Family<TypeLabels, Counter>,
    }
}

impl CorednsMetrics {
    fn cache_labels(&self) -> CacheLabels {
        CacheLabels {
            server: self.server.server,
            zones: CACHE_ZONES,
            view: VIEW,
        }
    }

    fn type_labels(&self, kind: CacheKind) -> TypeLabels {
        TypeLabels {
            server: self.server.server,
            r#type: kind.label(),
            zones: CACHE_ZONES,
            view: VIEW,
        }
    }

    /// One lookup: a fresh hit of `kind`, or a miss (None). Stale answers
    /// are neither, as in CoreDNS; they count in [`Self::cache_served_stale`].
    pub fn cache_lookup(&self, hit: Option<CacheKind>) {
        let s = self.lookup_series.get_or_init(|| {
            let c = &self.cache;
            LookupSeries {
                requests: c.requests.get_or_create(&self.cache_labels()).clone(),
                hits: [CacheKind::Success, CacheKind::Denial]
                    .map(|kind| c.hits.get_or_create(&self.type_labels(kind)).clone()),
                misses: c.misses.get_or_create(&self.cache_labels()).clone(),
            }
        });
        s.requests.inc();
        match hit {
            Some(kind) => s.hits[kind as usize].inc(),
            None => s.misses.inc(),
        };
    }

    pub fn cache_served_stale(&self) {
        let c = &self.cache;
        c.requests.get_or_create(&self.cache_labels()).inc();
        c.served_stale.get_or_create(&self.cache_labels()).inc();
    }

    pub fn cache_prefetch(&self) {
        self.cache
            .prefetch
            .get_or_create(&self.cache_labels())
            .inc();
    }

    pub fn cache_evicted(&self, kind: CacheKind) {
        self.cache
            .evictions
            .get_or_create(&self.type_labels(kind))
            .inc();
    }

    /// The entries the cache holds now, of each kind.
    pub fn cache_entries(&self, success: usize, denial: usize) {
        let e = &self.cache.entries;
        e.get_or_create(&self.type_labels(CacheKind::Success))
            .set(success as i64);
        e.get_or_create(&self.type_labels(CacheKind::Denial))
            .set(denial as i64);
    }
}

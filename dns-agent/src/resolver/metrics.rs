//! The resolver's metrics, registered on the agent's shared registry (the
//! `nodedns_` prefix comes from the registry).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

use crate::metrics::coredns::{
    Answered, AnsweredSeries, CacheKind, CorednsMetrics, Plugin, ZoneKind,
};
use crate::metrics::metric_families;

/// How a query was answered. `xdp` is counted by the kernel (the loader's
/// collector); the rest here.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Path {
    cluster,
    /// A cluster name whose CNAME chain leaves the zone (an ExternalName
    /// Service), completed through the forwarder.
    chased,
    cache_hit,
    forwarded,
    stale,
    /// Malformed, unsupported or refused before any lookup.
    rejected,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueryLabels {
    pub path: Path,
    pub qtype: &'static str,
    pub rcode: &'static str,
    pub transport: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PathLabels {
    pub path: Path,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabels {
    pub upstream: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectLabels {
    pub upstream: String,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub upstream: String,
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FallbackLabels {
    pub upstream: String,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SectionLabels {
    pub section: &'static str,
}

/// Which bound turned a query or connection away.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BoundLabels {
    pub bound: &'static str,
}

#[derive(Clone)]
pub struct LatencyBuckets;

impl MetricConstructor<Histogram> for LatencyBuckets {
    fn new_metric(&self) -> Histogram {
        // 25 µs .. ~3.3 s
        Histogram::new(exponential_buckets(25e-6, 2.0, 18))
    }
}

metric_families! {
    /// Every counter the resolver, cache and forwarder keep (promotion keeps
    /// its own, `crate::promotion::PromotionMetrics`).
    pub struct ResolverMetrics, registered by pub fn new {
        /// DNS queries answered in userspace, by path, qtype, rcode and transport
        pub queries: Family<QueryLabels, Counter>,
        /// Time to answer a query in userspace, by path
        pub latency: Family<PathLabels, Histogram, LatencyBuckets> as "query_duration_seconds"
            = Family::new_with_constructor(LatencyBuckets),
        /// Answers in the forwarding cache
        pub cache_entries: Gauge,
        /// Approximate bytes held by the forwarding cache
        pub cache_bytes: Gauge,
        /// Forwarding cache hits (fresh data)
        pub cache_hits: Counter,
        /// Forwarding cache misses
        pub cache_misses: Counter,
        /// Cache entries evicted to stay within capacity
        pub cache_evictions: Counter,
        /// Background refreshes of popular entries before expiry
        pub cache_prefetches: Counter,
        /// Queries that joined an identical upstream query in flight
        pub coalesced: Counter as "coalesced_queries",
        /// Queries sent to each upstream
        pub upstream_queries: Family<UpstreamLabels, Counter>,
        /// Failed upstream exchanges, by upstream and kind (timeout, io, servfail, refused, ...)
        pub upstream_errors: Family<ErrorLabels, Counter>,
        /// Upstream replies dropped as invalid (wrong id, wrong question, wrong case, not a
        /// response, garbage)
        pub upstream_rejected: Family<RejectLabels, Counter> as "upstream_rejected_replies",
        /// Queries answered SERVFAIL because too many upstream queries were in flight, by bound
        /// (total, zone, upstream)
        pub upstream_overload: Family<BoundLabels, Counter>,
        /// Upstream queries asked again over TCP, by upstream and reason (truncated,
        /// spoof_suspected)
        pub upstream_tcp_fallbacks: Family<FallbackLabels, Counter>,
        /// Upstream queries that got --upstream-spoof-threshold replies not matching them
        /// (possible spoofing), by upstream
        pub upstream_spoof_suspected: Family<UpstreamLabels, Counter>,
        /// Records dropped from upstream replies as out of bailiwick or unrelated to the
        /// question, by section
        pub upstream_scrubbed: Family<SectionLabels, Counter> as "upstream_scrubbed_records",
        /// Client queries answered SERVFAIL because their source address had too many in
        /// flight (bound=queries)
        pub client_limited: Family<BoundLabels, Counter>,
        /// Open client TCP connections
        pub tcp_connections: Gauge,
        /// Client TCP connections closed at once, by bound (total, client)
        pub tcp_refused: Family<BoundLabels, Counter>,
        /// Idle client TCP connections closed to make room near --tcp-max-connections
        pub tcp_reclaimed: Counter,
    }
    plus {
        /// The CoreDNS-compatible families, unless `--coredns-metrics=false`.
        pub coredns: Option<Arc<CorednsMetrics>>,
    }
    state {
        /// The series each kind of query updates, by [`QueryDone::series_key`].
        series: Mutex<HashMap<u64, Arc<QuerySeries>>> = Mutex::default(),
    }
}

/// One query answered in userspace, as the metrics see it.
#[derive(Clone, Copy, Debug)]
pub struct QueryDone {
    pub path: Path,
    pub qtype: RecordType,
    pub rcode: ResponseCode,
    pub tcp: bool,
    /// It came in over IPv6.
    pub ipv6: bool,
    /// Its EDNS had the DO bit.
    pub dnssec_ok: bool,
    pub request_bytes: usize,
    /// 0 when no response was sent.
    pub response_bytes: usize,
    pub took: Duration,
}

/// Label combinations whose series [`ResolverMetrics::query`] keeps.
const MAX_KEPT_SERIES: usize = 1024;

/// The series one kind of answered query updates.
struct QuerySeries {
    queries: Counter,
    latency: Histogram,
    coredns: Option<AnsweredSeries>,
}

impl QueryDone {
    /// What sets the labels of every series a query updates.
    fn series_key(&self) -> u64 {
        (self.path as u64)
            | u64::from(u16::from(self.qtype)) << 8
            | u64::from(u16::from(self.rcode)) << 24
            | u64::from(self.tcp) << 40
            | u64::from(self.ipv6) << 41
            | u64::from(self.dnssec_ok) << 42
    }

    fn answered(&self) -> Answered {
        let (zone, plugin) = match self.path {
            Path::cluster | Path::chased => (ZoneKind::Cluster, Plugin::Kubernetes),
            Path::cache_hit | Path::stale => (ZoneKind::Forwarded, Plugin::Cache),
            Path::forwarded => (ZoneKind::Forwarded, Plugin::Forward),
            Path::rejected => (ZoneKind::Dropped, Plugin::Server),
        };
        Answered {
            zone,
            plugin,
            tcp: self.tcp,
            ipv6: self.ipv6,
            qtype: self.qtype,
            rcode: self.rcode,
            dnssec_ok: self.dnssec_ok,
            request_bytes: self.request_bytes,
            response_bytes: self.response_bytes,
            took: self.took,
        }
    }
}

impl ResolverMetrics {
    pub fn query(&self, q: &QueryDone) {
        let series = self.series_of(q);
        series.queries.inc();
        series.latency.observe(q.took.as_secs_f64());
        let Some(coredns) = &self.coredns else {
            return;
        };
        if q.path == Path::stale {
            coredns.cache_served_stale();
        }
        if let Some(answered) = &series.coredns {
            answered.record(&q.answered());
        }
    }

    /// The series queries like `q` update: found in the families the first
    /// time, then kept (the families' label hashing costs more than the
    /// rest of a cached answer).
    fn series_of(&self, q: &QueryDone) -> Arc<QuerySeries> {
        let key = q.series_key();
        if let Some(s) = self.series.lock().unwrap().get(&key) {
            return s.clone();
        }
        let labels = QueryLabels {
            path: q.path,
            qtype: qtype_label(q.qtype),
            rcode: rcode_label(q.rcode),
            transport: if q.tcp { "tcp" } else { "udp" },
        };
        let series = Arc::new(QuerySeries {
            queries: self.queries.get_or_create(&labels).clone(),
            latency: self
                .latency
                .get_or_create(&PathLabels { path: q.path })
                .clone(),
            coredns: self
                .coredns
                .as_ref()
                .map(|c| c.answered_series(&q.answered())),
        });
        let mut kept = self.series.lock().unwrap();
        // Query types are many: past the bound, found each time.
        if kept.len() < MAX_KEPT_SERIES {
            kept.insert(key, series.clone());
        }
        series
    }

    /// A fresh cache hit on an answer of `kind`, or a miss (None).
    pub fn cache_lookup(&self, hit: Option<CacheKind>) {
        match hit {
            Some(_) => self.cache_hits.inc(),
            None => self.cache_misses.inc(),
        };
        if let Some(c) = &self.coredns {
            c.cache_lookup(hit);
        }
    }

    pub fn cache_evicted(&self, kind: CacheKind) {
        self.cache_evictions.inc();
        if let Some(c) = &self.coredns {
            c.cache_evicted(kind);
        }
    }

    /// The cache now holds `success` answers with data and `denial`
    /// negative ones, `bytes` in all.
    pub fn cache_size(&self, success: usize, denial: usize, bytes: usize) {
        self.cache_entries.set((success + denial) as i64);
        self.cache_bytes.set(bytes as i64);
        if let Some(c) = &self.coredns {
            c.cache_entries(success, denial);
        }
    }

    pub fn prefetch(&self) {
        self.cache_prefetches.inc();
        if let Some(c) = &self.coredns {
            c.cache_prefetch();
        }
    }

    pub fn upstream_query(&self, upstream: SocketAddr) {
        self.upstream_queries
            .get_or_create(&UpstreamLabels {
                upstream: upstream.to_string(),
            })
            .inc();
        if let Some(c) = &self.coredns {
            c.forward_request(upstream);
        }
    }

    /// A reply from `upstream`, `took` after the query left.
    pub fn upstream_reply(&self, upstream: SocketAddr, rcode: ResponseCode, took: Duration) {
        if let Some(c) = &self.coredns {
            c.forward_response(upstream, rcode, took);
        }
    }

    /// An exchange with `upstream` that got no reply (`kind` as in
    /// `upstream_errors`).
    pub fn upstream_no_reply(&self, upstream: SocketAddr, kind: &'static str) {
        self.upstream_error(upstream, kind);
        if let Some(c) = &self.coredns {
            c.forward_unreachable(upstream);
        }
    }

    /// A question for which every upstream was marked down.
    pub fn all_upstreams_down(&self) {
        if let Some(c) = &self.coredns {
            c.forward_all_down();
        }
    }

    /// A query answered SERVFAIL because `bound` (total, zone, upstream)
    /// was full.
    pub fn upstream_overloaded(&self, bound: &'static str) {
        self.upstream_overload
            .get_or_create(&BoundLabels { bound })
            .inc();
        // A full upstream is skipped for the next one, which CoreDNS does
        // not count as a rejection; the shared bounds turn the query away.
        if bound != "upstream"
            && let Some(c) = &self.coredns
        {
            c.forward_max_concurrent_reject();
        }
    }

    pub fn upstream_error(&self, upstream: SocketAddr, kind: &'static str) {
        self.upstream_errors
            .get_or_create(&ErrorLabels {
                upstream: upstream.to_string(),
                kind,
            })
            .inc();
    }

    pub fn tcp_fallback(&self, upstream: SocketAddr, reason: &'static str) {
        self.upstream_tcp_fallbacks
            .get_or_create(&FallbackLabels {
                upstream: upstream.to_string(),
                reason,
            })
            .inc();
    }

    pub fn spoof_suspected(&self, upstream: SocketAddr) {
        self.upstream_spoof_suspected
            .get_or_create(&UpstreamLabels {
                upstream: upstream.to_string(),
            })
            .inc();
    }

    pub fn scrubbed(&self, dropped: [usize; 3]) {
        for (section, n) in ["answer", "authority", "additional"]
            .into_iter()
            .zip(dropped)
        {
            if n > 0 {
                self.upstream_scrubbed
                    .get_or_create(&SectionLabels { section })
                    .inc_by(n as u64);
            }
        }
    }

    pub fn rejected(&self, upstream: SocketAddr, reason: &'static str) {
        self.upstream_rejected
            .get_or_create(&RejectLabels {
                upstream: upstream.to_string(),
                reason,
            })
            .inc();
    }
}

/// A bounded set of qtype label values.
pub fn qtype_label(t: RecordType) -> &'static str {
    use RecordType::*;
    match t {
        A => "A",
        AAAA => "AAAA",
        CNAME => "CNAME",
        MX => "MX",
        NS => "NS",
        PTR => "PTR",
        SOA => "SOA",
        SRV => "SRV",
        TXT => "TXT",
        HTTPS => "HTTPS",
        SVCB => "SVCB",
        ANY => "ANY",
        _ => "other",
    }
}

pub fn rcode_label(r: ResponseCode) -> &'static str {
    use ResponseCode::*;
    match r {
        NoError => "NOERROR",
        FormErr => "FORMERR",
        ServFail => "SERVFAIL",
        NXDomain => "NXDOMAIN",
        NotImp => "NOTIMP",
        Refused => "REFUSED",
        BADVERS => "BADVERS",
        _ => "other",
    }
}

//! The resolver's metrics, registered on the agent's shared registry (the
//! `nodedns_` prefix comes from the registry).

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

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

/// Every counter the resolver, cache and forwarder keep (promotion keeps
/// its own, `crate::promotion::PromotionMetrics`).
pub struct ResolverMetrics {
    pub queries: Family<QueryLabels, Counter>,
    pub latency: Family<PathLabels, Histogram, LatencyBuckets>,
    pub cache_entries: Gauge,
    pub cache_bytes: Gauge,
    pub cache_hits: Counter,
    pub cache_misses: Counter,
    pub cache_evictions: Counter,
    pub cache_prefetches: Counter,
    pub coalesced: Counter,
    pub upstream_queries: Family<UpstreamLabels, Counter>,
    pub upstream_errors: Family<ErrorLabels, Counter>,
    pub upstream_rejected: Family<RejectLabels, Counter>,
    pub upstream_overload: Family<BoundLabels, Counter>,
    pub upstream_tcp_fallbacks: Family<FallbackLabels, Counter>,
    pub upstream_spoof_suspected: Family<UpstreamLabels, Counter>,
    pub upstream_scrubbed: Family<SectionLabels, Counter>,
    pub client_limited: Family<BoundLabels, Counter>,
    pub tcp_connections: Gauge,
    pub tcp_refused: Family<BoundLabels, Counter>,
    pub tcp_reclaimed: Counter,
}

impl ResolverMetrics {
    pub fn new(registry: &mut Registry) -> Self {
        let m = Self {
            queries: Family::default(),
            latency: Family::new_with_constructor(LatencyBuckets),
            cache_entries: Gauge::default(),
            cache_bytes: Gauge::default(),
            cache_hits: Counter::default(),
            cache_misses: Counter::default(),
            cache_evictions: Counter::default(),
            cache_prefetches: Counter::default(),
            coalesced: Counter::default(),
            upstream_queries: Family::default(),
            upstream_errors: Family::default(),
            upstream_rejected: Family::default(),
            upstream_overload: Family::default(),
            upstream_tcp_fallbacks: Family::default(),
            upstream_spoof_suspected: Family::default(),
            upstream_scrubbed: Family::default(),
            client_limited: Family::default(),
            tcp_connections: Gauge::default(),
            tcp_refused: Family::default(),
            tcp_reclaimed: Counter::default(),
        };
        let r = registry;
        r.register(
            "queries",
            "DNS queries answered in userspace, by path, qtype, rcode and transport",
            m.queries.clone(),
        );
        r.register(
            "query_duration_seconds",
            "Time to answer a query in userspace, by path",
            m.latency.clone(),
        );
        r.register(
            "cache_entries",
            "Answers in the forwarding cache",
            m.cache_entries.clone(),
        );
        r.register(
            "cache_bytes",
            "Approximate bytes held by the forwarding cache",
            m.cache_bytes.clone(),
        );
        r.register(
            "cache_hits",
            "Forwarding cache hits (fresh data)",
            m.cache_hits.clone(),
        );
        r.register(
            "cache_misses",
            "Forwarding cache misses",
            m.cache_misses.clone(),
        );
        r.register(
            "cache_evictions",
            "Cache entries evicted to stay within capacity",
            m.cache_evictions.clone(),
        );
        r.register(
            "cache_prefetches",
            "Background refreshes of popular entries before expiry",
            m.cache_prefetches.clone(),
        );
        r.register(
            "coalesced_queries",
            "Queries that joined an identical upstream query in flight",
            m.coalesced.clone(),
        );
        r.register(
            "upstream_queries",
            "Queries sent to each upstream",
            m.upstream_queries.clone(),
        );
        r.register(
            "upstream_errors",
            "Failed upstream exchanges, by upstream and kind (timeout, io, servfail, refused, ...)",
            m.upstream_errors.clone(),
        );
        r.register("upstream_rejected_replies", "Upstream replies dropped as invalid (wrong id, wrong question, wrong case, not a response, garbage)", m.upstream_rejected.clone());
        r.register(
            "upstream_overload",
            "Queries answered SERVFAIL because too many upstream queries were in flight, by bound (total, zone, upstream)",
            m.upstream_overload.clone(),
        );
        r.register(
            "upstream_tcp_fallbacks",
            "Upstream queries asked again over TCP, by upstream and reason (truncated, spoof_suspected)",
            m.upstream_tcp_fallbacks.clone(),
        );
        r.register(
            "upstream_spoof_suspected",
            "Upstream queries that got --upstream-spoof-threshold replies not matching them (possible spoofing), by upstream",
            m.upstream_spoof_suspected.clone(),
        );
        r.register(
            "upstream_scrubbed_records",
            "Records dropped from upstream replies as out of bailiwick or unrelated to the question, by section",
            m.upstream_scrubbed.clone(),
        );
        r.register(
            "client_limited",
            "Client queries answered SERVFAIL because their source address had too many in flight (bound=queries)",
            m.client_limited.clone(),
        );
        r.register(
            "tcp_connections",
            "Open client TCP connections",
            m.tcp_connections.clone(),
        );
        r.register(
            "tcp_refused",
            "Client TCP connections closed at once, by bound (total, client)",
            m.tcp_refused.clone(),
        );
        r.register(
            "tcp_reclaimed",
            "Idle client TCP connections closed to make room near --tcp-max-connections",
            m.tcp_reclaimed.clone(),
        );
        m
    }

    pub fn query(
        &self,
        path: Path,
        qtype: RecordType,
        rcode: ResponseCode,
        tcp: bool,
        took: Duration,
    ) {
        let labels = QueryLabels {
            path,
            qtype: qtype_label(qtype),
            rcode: rcode_label(rcode),
            transport: if tcp { "tcp" } else { "udp" },
        };
        self.queries.get_or_create(&labels).inc();
        self.latency
            .get_or_create(&PathLabels { path })
            .observe(took.as_secs_f64());
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

//! `coredns_dns_*` (the prometheus plugin's families), `coredns_build_info`
//! and `coredns_panics_total`.
//!
//! Kernel answers: the XDP program counts them by family, query type class,
//! rcode and AA flag, but does not time them (a clock read per answer would
//! cost more than the rest of the counting). It answers within the receive
//! path in well under a microsecond, so each is observed in the first
//! duration bucket (0.25 ms) and adds nothing to `_sum`; they have no size
//! observations, and no `do_requests_total` (the kernel does not look at DO).

use std::time::Duration;

use dns_common::answer_counters::AnswerCounterKey;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::ConstGauge;

use super::super::histogram::BulkHistogram;
use super::{SIZE_BUCKETS, Server, TIME_BUCKETS, VIEW};
use crate::metrics::metric_families;

/// Who wrote the response: CoreDNS's `plugin` label, with the plugin that
/// plays the same part in CoreDNS, and `xdp` for the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plugin {
    /// The XDP program.
    Xdp,
    /// The cluster zone, custom hosts and reverse zones.
    Kubernetes,
    /// The forwarding cache, fresh or stale.
    Cache,
    /// An upstream's answer, just fetched.
    Forward,
    /// The server itself, before any lookup (malformed, refused,
    /// unsupported): CoreDNS leaves the label empty then.
    Server,
}

impl Plugin {
    fn label(self) -> &'static str {
        match self {
            Self::Xdp => "xdp",
            Self::Kubernetes => "kubernetes",
            Self::Cache => "cache",
            Self::Forward => "forward",
            Self::Server => "",
        }
    }
}

/// Which zone a query fell in (the `zone` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ZoneKind {
    /// Answered authoritatively: the cluster domain.
    Cluster,
    /// Forwarded (or from the forwarding cache): `.`.
    Forwarded,
    /// Refused before any lookup: CoreDNS's `dropped`.
    Dropped,
}

impl ZoneKind {
    fn label(self, server: &Server) -> &'static str {
        match self {
            Self::Cluster => server.cluster_zone,
            Self::Forwarded => ".",
            Self::Dropped => "dropped",
        }
    }
}

/// One query answered in userspace.
#[derive(Clone, Copy, Debug)]
pub struct Answered {
    pub zone: ZoneKind,
    pub plugin: Plugin,
    pub tcp: bool,
    pub ipv6: bool,
    pub qtype: RecordType,
    pub rcode: ResponseCode,
    /// The query had EDNS with the DO bit.
    pub dnssec_ok: bool,
    pub request_bytes: usize,
    /// 0 when nothing was sent.
    pub response_bytes: usize,
    pub took: Duration,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    server: &'static str,
    zone: &'static str,
    view: &'static str,
    proto: &'static str,
    family: &'static str,
    r#type: &'static str,
    plugin: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResponseLabels {
    server: &'static str,
    zone: &'static str,
    view: &'static str,
    rcode: &'static str,
    plugin: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ZoneLabels {
    server: &'static str,
    zone: &'static str,
    view: &'static str,
}

/// CoreDNS's `request_duration_seconds` labels: the zone's and the query
/// type.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DurationLabels {
    server: &'static str,
    zone: &'static str,
    view: &'static str,
    r#type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SizeLabels {
    server: &'static str,
    zone: &'static str,
    view: &'static str,
    proto: &'static str,
}

#[derive(Clone)]
struct Buckets(&'static [f64]);

impl MetricConstructor<BulkHistogram> for Buckets {
    fn new_metric(&self) -> BulkHistogram {
        BulkHistogram::new(self.0)
    }
}

metric_families! {
    pub(super) struct DnsFamilies, registered by pub(super) fn register, under "dns" {
        /// Counter of DNS requests made per zone, protocol and family (plugin="xdp": answered by
        /// the kernel)
        requests: Family<RequestLabels, Counter>,
        /// Counter of response status codes, by the plugin that wrote the response (xdp: the
        /// kernel)
        responses: Family<ResponseLabels, Counter>,
        /// Histogram of the time (in seconds) each request took per zone and type (kernel answers
        /// in the first bucket)
        duration: Family<DurationLabels, BulkHistogram, Buckets> as "request_duration_seconds"
            = Family::new_with_constructor(Buckets(&TIME_BUCKETS)),
        /// Size of the request in bytes per zone and protocol (userspace answers only)
        request_size: Family<SizeLabels, BulkHistogram, Buckets> as "request_size_bytes"
            = Family::new_with_constructor(Buckets(&SIZE_BUCKETS)),
        /// Size of the returned response in bytes per zone and protocol (userspace answers only)
        response_size: Family<SizeLabels, BulkHistogram, Buckets> as "response_size_bytes"
            = Family::new_with_constructor(Buckets(&SIZE_BUCKETS)),
        /// Counter of DNS requests with DO bit set per zone (userspace answers only)
        do_requests: Family<ZoneLabels, Counter>,
    }
}

impl DnsFamilies {
    /// The series an answer like `a` updates (all but its sizes and time
    /// are labels), found in the families once.
    pub(super) fn series(&self, server: &Server, a: &Answered) -> AnsweredSeries {
        let (server, zone) = (server.server, a.zone.label(server));
        let proto = if a.tcp { "tcp" } else { "udp" };
        let plugin = a.plugin.label();
        let size = SizeLabels {
            server,
            zone,
            view: VIEW,
            proto,
        };
        AnsweredSeries {
            requests: self
                .requests
                .get_or_create(&RequestLabels {
                    server,
                    zone,
                    view: VIEW,
                    proto,
                    family: family(a.ipv6),
                    r#type: qtype_label(a.qtype),
                    plugin,
                })
                .clone(),
            responses: self
                .responses
                .get_or_create(&ResponseLabels {
                    server,
                    zone,
                    view: VIEW,
                    rcode: rcode_label(u16::from(a.rcode)),
                    plugin,
                })
                .clone(),
            duration: self
                .duration
                .get_or_create(&DurationLabels {
                    server,
                    zone,
                    view: VIEW,
                    r#type: qtype_label(a.qtype),
                })
                .clone(),
            do_requests: a.dnssec_ok.then(|| {
                self.do_requests
                    .get_or_create(&ZoneLabels {
                        server,
                        zone,
                        view: VIEW,
                    })
                    .clone()
            }),
            request_size: self.request_size.get_or_create(&size).clone(),
            response_size: self.response_size.get_or_create(&size).clone(),
        }
    }

    /// `count` answers the kernel sent, of the kind `key` counts.
    pub(super) fn kernel_answers(&self, server: &Server, key: AnswerCounterKey, count: u64) {
        let zone = if key.authoritative {
            ZoneKind::Cluster
        } else {
            ZoneKind::Forwarded
        }
        .label(server);
        let plugin = Plugin::Xdp.label();
        let server = server.server;
        self.requests
            .get_or_create(&RequestLabels {
                server,
                zone,
                view: VIEW,
                proto: "udp",
                family: family(key.ipv6),
                r#type: key.qtype_label(),
                plugin,
            })
            .inc_by(count);
        self.responses
            .get_or_create(&ResponseLabels {
                server,
                zone,
                view: VIEW,
                rcode: rcode_label(u16::from(key.rcode)),
                plugin,
            })
            .inc_by(count);
        self.duration
            .get_or_create(&DurationLabels {
                server,
                zone,
                view: VIEW,
                r#type: key.qtype_label(),
            })
            .observe_n(0.0, count);
    }
}

/// The series of `coredns_dns_*` one kind of userspace answer updates
/// (the same labels): handles on the families' own counters, so what they
/// count is exact whoever holds them.
#[derive(Clone)]
pub struct AnsweredSeries {
    requests: Counter,
    responses: Counter,
    duration: BulkHistogram,
    do_requests: Option<Counter>,
    request_size: BulkHistogram,
    response_size: BulkHistogram,
}

impl AnsweredSeries {
    /// Counts `a`, an answer with the labels these series were found for.
    pub fn record(&self, a: &Answered) {
        self.requests.inc();
        self.responses.inc();
        self.duration.observe(a.took.as_secs_f64());
        if let Some(c) = &self.do_requests {
            c.inc();
        }
        self.request_size.observe(a.request_bytes as f64);
        self.response_size.observe(a.response_bytes as f64);
    }
}

/// CoreDNS's `family` label: 1 for IPv4, 2 for IPv6.
fn family(ipv6: bool) -> &'static str {
    if ipv6 { "2" } else { "1" }
}

/// CoreDNS's `type` label: the types its `monitorType` lists, else "other".
pub fn qtype_label(t: RecordType) -> &'static str {
    use RecordType::*;
    match t {
        A => "A",
        AAAA => "AAAA",
        CNAME => "CNAME",
        DNSKEY => "DNSKEY",
        DS => "DS",
        MX => "MX",
        NSEC3 => "NSEC3",
        NSEC => "NSEC",
        NS => "NS",
        PTR => "PTR",
        RRSIG => "RRSIG",
        SOA => "SOA",
        SRV => "SRV",
        TXT => "TXT",
        HTTPS => "HTTPS",
        IXFR => "IXFR",
        AXFR => "AXFR",
        ANY => "ANY",
        _ => "other",
    }
}

/// CoreDNS's `rcode` label: the mnemonic of miekg/dns's `RcodeToString`,
/// `RCODE<n>` for values it has no name for.
pub fn rcode_label(rcode: u16) -> &'static str {
    const NAMES: [&str; 24] = [
        "NOERROR",
        "FORMERR",
        "SERVFAIL",
        "NXDOMAIN",
        "NOTIMP",
        "REFUSED",
        "YXDOMAIN",
        "YXRRSET",
        "NXRRSET",
        "NOTAUTH",
        "NOTZONE",
        "RCODE11",
        "RCODE12",
        "RCODE13",
        "RCODE14",
        "RCODE15",
        "BADSIG",
        "BADKEY",
        "BADTIME",
        "BADMODE",
        "BADNAME",
        "BADALG",
        "BADTRUNC",
        "BADCOOKIE",
    ];
    NAMES.get(rcode as usize).copied().unwrap_or("RCODE")
}

/// `coredns_build_info` and `coredns_panics_total`.
#[derive(Debug)]
pub(super) struct BuildAndPanics;

impl Collector for BuildAndPanics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        // CoreDNS's labels; nodedns is not written in Go, so goversion is
        // empty.
        let labels = [
            ("version", super::super::VERSION),
            ("revision", super::super::REVISION),
            ("goversion", ""),
        ];
        ConstGauge::new(1i64).encode(
            encoder
                .encode_descriptor(
                    "build_info",
                    "A metric with a constant '1' value labeled by version, revision, and goversion from which the agent was built",
                    None,
                    MetricType::Gauge,
                )?
                .encode_family(&labels)?,
        )?;
        ConstCounter::new(super::super::panics()).encode(encoder.encode_descriptor(
            "panics",
            "A metrics that counts the number of panics",
            None,
            MetricType::Counter,
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_coredns_spellings() {
        assert_eq!(rcode_label(0), "NOERROR");
        assert_eq!(rcode_label(3), "NXDOMAIN");
        assert_eq!(rcode_label(16), "BADSIG");
        assert_eq!(rcode_label(4000), "RCODE");
        assert_eq!(qtype_label(RecordType::SRV), "SRV");
        assert_eq!(qtype_label(RecordType::CAA), "other");
    }
}

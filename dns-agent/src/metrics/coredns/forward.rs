//! `coredns_forward_*`: the forward plugin's families as CoreDNS 1.11
//! names them (the version NodeLocal DNSCache runs, and the names of the
//! coredns-mixin alerts), labelled per upstream with `to` (`IP:port`).
//!
//! nodedns does not probe upstreams with health checks as CoreDNS does; it
//! learns their health from the queries themselves (an upstream failing
//! three times in a row is tried last for a while). So a "failed health
//! check" is an exchange that got no reply (timeout or network error:
//! what CoreDNS's check detects; a SERVFAIL or REFUSED reply counts as
//! healthy there too), and "healthcheck broken" is a question for which
//! every upstream was marked down.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};

use super::super::histogram::BulkHistogram;
use super::dns::rcode_label;
use super::{CorednsMetrics, TIME_BUCKETS};
use crate::metrics::metric_families;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ToLabels {
    to: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RcodeToLabels {
    rcode: &'static str,
    to: String,
}

#[derive(Clone)]
struct TimeBuckets;

impl MetricConstructor<BulkHistogram> for TimeBuckets {
    fn new_metric(&self) -> BulkHistogram {
        BulkHistogram::new(&TIME_BUCKETS)
    }
}

metric_families! {
    pub(super) struct ForwardFamilies, registered by pub(super) fn register, under "forward" {
        /// Counter of requests made per upstream
        requests: Family<ToLabels, Counter>,
        /// Counter of responses received per upstream
        responses: Family<RcodeToLabels, Counter>,
        /// Histogram of the time each request took
        duration: Family<RcodeToLabels, BulkHistogram, TimeBuckets> as "request_duration_seconds"
            = Family::new_with_constructor(TimeBuckets),
        /// Counter of the number of failed healthchecks (exchanges without a reply)
        healthcheck_failures: Family<ToLabels, Counter>,
        /// Counter of the number of complete failures of the healthchecks (every upstream marked
        /// down)
        healthcheck_broken: Counter,
        /// Counter of the number of queries rejected because the concurrent queries were at maximum
        max_concurrent_rejects: Counter,
    }
}

impl CorednsMetrics {
    pub fn forward_request(&self, to: SocketAddr) {
        self.forward
            .requests
            .get_or_create(&ToLabels { to: to.to_string() })
            .inc();
    }

    /// A reply from `to`, whatever its rcode, `took` after the query left.
    pub fn forward_response(&self, to: SocketAddr, rcode: ResponseCode, took: Duration) {
        let labels = RcodeToLabels {
            rcode: rcode_label(u16::from(rcode)),
            to: to.to_string(),
        };
        self.forward.responses.get_or_create(&labels).inc();
        self.forward
            .duration
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    /// An exchange with `to` that got no reply.
    pub fn forward_unreachable(&self, to: SocketAddr) {
        self.forward
            .healthcheck_failures
            .get_or_create(&ToLabels { to: to.to_string() })
            .inc();
    }

    pub fn forward_all_down(&self) {
        self.forward.healthcheck_broken.inc();
    }

    pub fn forward_max_concurrent_reject(&self) {
        self.forward.max_concurrent_rejects.inc();
    }
}

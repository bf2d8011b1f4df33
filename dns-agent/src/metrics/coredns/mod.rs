//! The CoreDNS-compatible families (`coredns_*`), so that dashboards and
//! alerts built for CoreDNS and NodeLocal DNSCache (which runs CoreDNS
//! 1.11) work unchanged. Names, labels and buckets follow CoreDNS's
//! `plugin/metrics/vars`, `plugin/cache/metrics.go` and the forward plugin
//! of 1.11 (`coredns_forward_*`, the names the coredns-mixin alerts use).
//! `--coredns-metrics=false` leaves them out; the `nodedns_*` families stay.
//!
//! What maps to what, where nodedns differs from CoreDNS:
//! - `server` is `dns://:<port>` for every listen address (one server, as
//!   CoreDNS labels a server block without `bind`); `family` tells IPv4
//!   (`1`) from IPv6 (`2`).
//! - `zone` is the cluster domain for answers nodedns gives authoritatively
//!   (cluster state, custom hosts, reverse zones), `.` for forwarded names
//!   and `dropped` for queries refused before any lookup.
//! - Kernel answers count in `coredns_dns_requests_total` and
//!   `coredns_dns_responses_total` with `plugin="xdp"`, and in the first
//!   bucket of `coredns_dns_request_duration_seconds` (see [`dns`]).
//! - `coredns_cache_*` is the userspace forwarding cache.

mod cache;
mod dns;
mod forward;
mod kernel;

use std::sync::{Arc, OnceLock};

use prometheus_client::registry::Registry;

pub use cache::CacheKind;
pub use dns::{Answered, AnsweredSeries, Plugin, ZoneKind, qtype_label, rcode_label};
pub use kernel::{KernelAnswerSource, KernelAnswers};

/// Prefix of every family here.
pub const PREFIX: &str = "coredns";

/// CoreDNS's `plugin.TimeBuckets`: 0.25 ms to 8 s, doubling.
pub static TIME_BUCKETS: [f64; 16] = [
    0.00025, 0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024,
    2.048, 4.096, 8.192,
];
/// CoreDNS's request and response size buckets.
pub static SIZE_BUCKETS: [f64; 14] = [
    0.0, 100.0, 200.0, 300.0, 400.0, 511.0, 1023.0, 2047.0, 4095.0, 8291.0, 16e3, 32e3, 48e3, 64e3,
];
/// The `view` label: nodedns has no views (CoreDNS's value then).
const VIEW: &str = "";
/// The `zones` label of the cache families: the forwarding cache serves
/// names outside the cluster, CoreDNS's root server block.
const CACHE_ZONES: &str = ".";

/// The labels every family shares, fixed for the agent's life.
#[derive(Clone, Copy, Debug)]
struct Server {
    /// `dns://:<port>`.
    server: &'static str,
    /// `<cluster domain>.`
    cluster_zone: &'static str,
}

/// The families' hooks, and their registry for `/metrics`.
pub struct Coredns {
    pub metrics: Arc<CorednsMetrics>,
    pub registry: Registry,
}

impl Coredns {
    /// The families for a server on `port` serving `cluster_domain`, and
    /// the registry (prefix `coredns`) to put on `/metrics`.
    pub fn new(port: u16, cluster_domain: &str) -> Self {
        // Label values live as long as the agent; two short strings.
        let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
        let server = Server {
            server: leak(format!("dns://:{port}")),
            cluster_zone: leak(format!("{}.", cluster_domain.trim_end_matches('.'))),
        };
        let mut registry = Registry::with_prefix(PREFIX);
        let dns = dns::DnsFamilies::register(&mut registry);
        let cache = cache::CacheFamilies::register(&mut registry);
        let forward = forward::ForwardFamilies::register(&mut registry);
        registry.register_collector(Box::new(dns::BuildAndPanics));
        let metrics = Arc::new(CorednsMetrics {
            server,
            dns,
            cache,
            forward,
            kernel: KernelAnswers::default(),
            lookup_series: OnceLock::new(),
        });
        Coredns { metrics, registry }
    }
}

/// Every CoreDNS-compatible family, and the hooks that feed them.
pub struct CorednsMetrics {
    server: Server,
    dns: dns::DnsFamilies,
    cache: cache::CacheFamilies,
    forward: forward::ForwardFamilies,
    kernel: KernelAnswers,
    lookup_series: OnceLock<cache::LookupSeries>,
}

impl CorednsMetrics {
    /// A query answered in userspace.
    pub fn answered(&self, answered: &Answered) {
        self.answered_series(answered).record(answered);
    }

    /// The series [`Self::answered`] updates for answers like `answered`,
    /// to keep and [`AnsweredSeries::record`] into directly.
    pub fn answered_series(&self, answered: &Answered) -> AnsweredSeries {
        self.dns.series(&self.server, answered)
    }

    /// Where the kernel's answer counts come from, once the fast path runs.
    pub fn kernel(&self) -> &KernelAnswers {
        &self.kernel
    }

    /// Brings the kernel's answers into the request, response and duration
    /// families; `/metrics` calls it before each scrape.
    pub fn sync_kernel(&self) {
        for (key, new) in self.kernel.take_new() {
            self.dns.kernel_answers(&self.server, key, new);
        }
    }
}

//! `nodedns_xdp_*`, `nodedns_failopen_*` and `nodedns_transparent_*`
//! metrics of the kernel side, read from the kernel on each scrape.

use std::fmt;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use dns_common::Counter;
use dns_common::answer_counters::AnswerCounterKey;

use super::attach::SkipReason;
use super::shared::Shared;
use super::stats;
use crate::metrics::coredns::{KernelAnswerSource, rcode_label};

/// The kernel's answer counts for [`crate::metrics::coredns`].
pub(crate) struct AnswerCounts(pub Arc<Shared>);

impl KernelAnswerSource for AnswerCounts {
    fn answer_counts(&self) -> Vec<(AnswerCounterKey, u64)> {
        stats::read_answer_counts(&self.0.answer_counts).unwrap_or_default()
    }
}

pub(crate) struct XdpCollector {
    shared: Arc<Shared>,
}

impl XdpCollector {
    pub fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }
}

impl fmt::Debug for XdpCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("XdpCollector")
            .field("program_id", &self.shared.program_id)
            .finish()
    }
}

fn gauge(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: i64) -> fmt::Result {
    let metric = ConstGauge::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

fn counter(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> fmt::Result {
    let metric = ConstCounter::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

/// A labelled family of `metric_type`: one sample per `(labels, metric)`.
fn family<L: EncodeLabelSet, M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    metric_type: MetricType,
    samples: impl IntoIterator<Item = (L, M)>,
) -> fmt::Result {
    let mut family = encoder.encode_descriptor(name, help, None, metric_type)?;
    for (labels, metric) in samples {
        metric.encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for XdpCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let shared = &self.shared;
        if let Ok(counters) = stats::read_counters(&shared.counters) {
            let outcomes = counters.iter().filter(|(c, _)| c.is_outcome());
            family(
                &mut encoder,
                "xdp_packets",
                "Packets seen by the XDP program, by outcome (hit = answered in the kernel)",
                MetricType::Counter,
                outcomes.map(|(c, value)| ([("outcome", c.name())], ConstCounter::new(*value))),
            )?;
            let value = |wanted: Counter| {
                counters
                    .iter()
                    .find(|(c, _)| *c == wanted)
                    .map_or(0, |(_, v)| *v)
            };
            counter(
                &mut encoder,
                "xdp_intercepted",
                "Queries to a cluster DNS address the kernel took from the stack: answered in \
                 the kernel or handed to the agent; kube-proxy and conntrack never saw them",
                value(Counter::Intercepted),
            )?;
            counter(
                &mut encoder,
                "failopen_replies_restored",
                "Replies of the cluster DNS Service to failed-open listen-address queries, given \
                 back the listen address as their source",
                value(Counter::ReplyRestored),
            )?;
        }
        let liveness = shared.heartbeat.state();
        gauge(
            &mut encoder,
            "failopen_active",
            "1 while the kernel sees no agent serving (no heartbeat for 750 ms) and sends the \
             queries it cannot answer to the cluster DNS Service, as last seen",
            liveness.failing_open as i64,
        )?;
        {
            let age = ConstGauge::new(liveness.age.map_or(-1.0, |a| a.as_secs_f64()));
            age.encode(encoder.encode_descriptor(
                "failopen_heartbeat_age_seconds",
                "Age of the heartbeat the kernel reads (-1: none yet, or stopped)",
                None,
                MetricType::Gauge,
            )?)?;
        }
        let config = *shared.config.lock().unwrap_or_else(|p| p.into_inner());
        gauge(
            &mut encoder,
            "cluster_dns_addresses",
            "Cluster DNS Service addresses the kernel knows (fail-open targets)",
            (config.cluster_v4_count + config.cluster_v6_count) as i64,
        )?;
        gauge(
            &mut encoder,
            "transparent_mode",
            "1 while the kernel serves queries to the cluster DNS addresses (transparent mode)",
            (config.transparent != 0 && config.cluster_v4_count + config.cluster_v6_count > 0)
                as i64,
        )?;
        if let Ok(counts) = stats::read_answer_counts(&shared.answer_counts) {
            let labelled = counts.into_iter().map(|(key, value)| {
                let labels = [
                    ("family", if key.ipv6 { "ipv6" } else { "ipv4" }),
                    ("qtype", key.qtype_label()),
                    ("rcode", rcode_label(u16::from(key.rcode))),
                    (
                        "authoritative",
                        if key.authoritative { "true" } else { "false" },
                    ),
                ];
                (labels, ConstCounter::new(value))
            });
            family(
                &mut encoder,
                "xdp_answers",
                "Answers the XDP program sent, by address family, query type (A, AAAA, SRV, PTR, other), rcode and AA flag",
                MetricType::Counter,
                labelled,
            )?;
        }
        let entries = stats::count_entries(&shared.answers, shared.capacity);
        gauge(
            &mut encoder,
            "xdp_map_entries",
            "Entries in the kernel answers map",
            entries as i64,
        )?;
        gauge(
            &mut encoder,
            "xdp_map_capacity",
            "Capacity of the kernel answers map (--map-entries)",
            shared.capacity as i64,
        )?;
        family(
            &mut encoder,
            "xdp_map_memory_bytes",
            "Kernel memory charged to each pinned map",
            MetricType::Gauge,
            (shared.memory.iter())
                .map(|(map, bytes)| ([("map", *map)], ConstGauge::new(*bytes as i64))),
        )?;
        let (interfaces, skipped, egress, detached) = {
            let state = shared.lock();
            (
                state.attacher.status(),
                state.attacher.skip_totals().clone(),
                state.egress.count(),
                state.attacher.detached_outside(),
            )
        };
        gauge(
            &mut encoder,
            "failopen_egress_interfaces",
            "Interfaces running the egress program, where listen-address queries can fail open",
            egress as i64,
        )?;
        gauge(
            &mut encoder,
            "xdp_attached_interfaces",
            "Interfaces the XDP program is attached to now",
            interfaces.len() as i64,
        )?;
        counter(
            &mut encoder,
            "xdp_detached",
            "XDP links found detached from an interface by something else (each is attached again)",
            detached,
        )?;
        let modes = interfaces.iter().map(|iface| {
            let labels = [
                ("interface", iface.name.as_str()),
                ("mode", iface.mode.label()),
            ];
            (labels, ConstGauge::new(1i64))
        });
        family(
            &mut encoder,
            "xdp_interface_info",
            "Interfaces the XDP program is attached to, with the mode",
            MetricType::Gauge,
            modes,
        )?;
        let skips = SkipReason::ALL.into_iter().map(|reason| {
            let count = skipped.get(&reason).copied().unwrap_or(0);
            ([("reason", reason.label())], ConstCounter::new(count))
        });
        family(
            &mut encoder,
            "xdp_attach_skipped",
            "Matching interfaces left without the XDP program, by reason",
            MetricType::Counter,
            skips,
        )
    }
}

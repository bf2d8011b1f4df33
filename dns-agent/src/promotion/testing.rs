//! What the promotion unit tests share: names, the cluster zone's SOA and
//! a promoter over a memory sink.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::rr::rdata::SOA;
use hickory_proto::rr::{Name, RData, Record};
use prometheus_client::registry::Registry;

use super::{MemorySink, Promoter, PromotionConfig, PromotionMetrics};
use crate::zone::Zone;

pub(crate) fn name(s: &str) -> Name {
    Name::from_str(s).unwrap()
}

/// `cluster.local.`'s SOA, with the negative TTL (5 s) as its own TTL.
pub(crate) fn cluster_soa() -> Record {
    let soa = SOA::new(
        name("ns.dns.cluster.local."),
        name("hostmaster.cluster.local."),
        1,
        7200,
        1800,
        86400,
        5,
    );
    Record::from_rdata(name("cluster.local."), 5, RData::SOA(soa))
}

/// A promoter (hot after one ask) over `sink`, with its own metrics.
pub(crate) fn promoter(
    sink: Arc<MemorySink>,
    zone: Arc<dyn Zone>,
    cluster_lifetime: Duration,
) -> (Arc<Promoter>, Arc<PromotionMetrics>) {
    let metrics = Arc::new(PromotionMetrics::new(&mut Registry::default()));
    let cfg = PromotionConfig {
        hot_threshold: 1,
        hot_window: Duration::from_secs(10),
        cluster_lifetime,
    };
    let promoter = Arc::new(Promoter::new(cfg, sink, zone, metrics.clone()));
    (promoter, metrics)
}

//! The contract between cluster state (which fills a zone) and the resolver
//! (which answers from it and feeds the kernel).

use hickory_proto::rr::{LowerName, RecordType};
use tokio::sync::watch;

use crate::answer::AnswerSections;

/// What an authoritative zone says about one question.
#[derive(Debug, Clone, PartialEq)]
pub enum ZoneLookup {
    /// The name is outside every zone we are authoritative for: forward it.
    NotOurs,
    /// Inside our zone, but the first full sync has not finished: SERVFAIL,
    /// never NXDOMAIN.
    NotReady,
    /// An authoritative answer (AA=1): `NoError` (data or NODATA) or
    /// `NXDomain`, the negative ones with the zone's SOA in `authority`.
    Answer(AnswerSections),
}

/// A zone the agent answers authoritatively. Implementations are cheap to
/// query from many tasks at once (a lookup must not block on I/O).
pub trait Zone: Send + Sync + 'static {
    fn lookup(&self, name: &LowerName, qtype: RecordType) -> ZoneLookup;

    /// Changes whenever the zone's content changes (a new generation number).
    /// The resolver re-derives the kernel entries it installed for this zone
    /// when it moves; it must move within 1 s of a change in cluster state.
    fn changes(&self) -> watch::Receiver<u64>;

    /// True once the first full sync of every source has completed.
    fn is_ready(&self) -> bool;
}

/// Forwarding settings that cluster configuration can change live (kube-dns
/// `stubDomains` and `upstreamNameservers` from the ConfigMap or file).
/// Empty fields mean "use the agent's flags / the node's resolv.conf".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ForwardPolicy {
    /// Zone suffix to its own servers; the longest matching suffix wins.
    pub stub_domains: Vec<(hickory_proto::rr::Name, Vec<std::net::SocketAddr>)>,
    /// Replaces the default upstreams when not empty.
    pub upstreams: Vec<std::net::SocketAddr>,
}

//! The contract between cluster state (which fills a zone) and the resolver
//! (which answers from it and feeds the kernel).

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{LowerName, Record, RecordType};
use tokio::sync::watch;

/// What an authoritative zone says about one question.
#[derive(Debug, Clone, PartialEq)]
pub enum ZoneLookup {
    /// The name is outside every zone we are authoritative for: forward it.
    NotOurs,
    /// Inside our zone, but the first full sync has not finished: SERVFAIL,
    /// never NXDOMAIN.
    NotReady,
    /// An authoritative answer (AA=1).
    Answer(AuthAnswer),
}

/// An authoritative answer. NXDOMAIN and NODATA carry the zone's SOA in
/// `authority`; the SOA record's TTL is already the negative-caching TTL.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthAnswer {
    /// `NoError` (data or NODATA) or `NXDomain`.
    pub rcode: ResponseCode,
    pub answers: Vec<Record>,
    pub authority: Vec<Record>,
    pub additionals: Vec<Record>,
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

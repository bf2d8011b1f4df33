//! The contract between cluster state (which fills a zone) and the resolver
//! (which answers from it and feeds the kernel).

use hickory_proto::rr::{LowerName, Name, Record, RecordType};
use tokio::sync::watch;

use crate::answer::AnswerSections;

/// Most CNAME records one answer follows, in the zone and through the
/// forwarder together; a longer chain, or a loop, is SERVFAIL (the bound
/// CoreDNS uses for its CNAME targets).
pub const MAX_CNAME_CHAIN: usize = 8;

/// What an authoritative zone says about one question.
#[derive(Debug, Clone, PartialEq)]
pub enum ZoneLookup {
    /// The name is outside every zone we are authoritative for: forward it.
    NotOurs,
    /// Inside our zone, but the first full sync has not finished: SERVFAIL,
    /// never NXDOMAIN.
    NotReady,
    /// An authoritative answer (AA=1): `NoError` (data or NODATA) or
    /// `NXDomain`, the negative ones with the zone's SOA in `authority`;
    /// `ServFail` for a CNAME chain that loops or is too long.
    Answer(AnswerSections),
    /// A name of our zone whose CNAME chain leaves every zone we serve (an
    /// ExternalName Service): the resolver resolves the target like any
    /// forwarded name and completes the answer (RFC 1034 §4.3.2).
    Alias(Alias),
}

/// The zone's part of an answer that continues outside it.
#[derive(Debug, Clone, PartialEq)]
pub struct Alias {
    /// The CNAME records from the query name to `target`, in chain order.
    pub chain: Vec<Record>,
    /// Where the chain leaves our zones (absolute, lower case).
    pub target: Name,
}

impl Alias {
    /// The whole answer: the chain, then `rest` (the target's answer, its
    /// TTLs already aged), with the target's rcode (RFC 6604: the rcode
    /// belongs to the last name of the chain) and every TTL the chain's
    /// minimum, so no part of it outlives another in a cache.
    pub fn complete(&self, rest: &AnswerSections) -> AnswerSections {
        let mut answer = AnswerSections::new(rest.rcode);
        answer.answers = self.chain.clone();
        answer.answers.extend(rest.answers.iter().cloned());
        answer.authority = rest.authority.clone();
        answer.additionals = rest.additionals.clone();
        let ttl = answer.records().map(|r| r.ttl).min().unwrap_or(0);
        answer.with_ttl_cap(ttl)
    }
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

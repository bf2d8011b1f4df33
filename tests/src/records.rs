//! DNS names and records for test data (the zone stand-in, XDP entries).

use std::str::FromStr;

use hickory_proto::rr::rdata::SOA;
use hickory_proto::rr::{Name, RData, Record};

/// The cluster zone's apex.
pub const CLUSTER_ZONE: &str = "cluster.local.";

/// `s` as a name; panics on a name no test should write.
pub fn name(s: &str) -> Name {
    Name::from_str(s).unwrap_or_else(|e| panic!("bad name {s:?}: {e}"))
}

pub fn rec(owner: &str, ttl: u32, data: RData) -> Record {
    Record::from_rdata(name(owner), ttl, data)
}

/// The zone's SOA as negative answers carry it (RFC 2308): the apex of
/// [`CLUSTER_ZONE`], TTL and MINIMUM 5 s, as the agent serves it.
pub fn cluster_soa(serial: u32) -> Record {
    let soa = SOA::new(
        name("ns.dns.cluster.local."),
        name("hostmaster.cluster.local."),
        serial,
        7200,
        1800,
        86400,
        5,
    );
    rec(CLUSTER_ZONE, 5, RData::SOA(soa))
}

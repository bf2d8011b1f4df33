//! DNS names and records for test data (the zone stand-in, XDP entries).

use std::str::FromStr;

use hickory_proto::rr::rdata::SOA;
use hickory_proto::rr::{Label, Name, RData, Record};

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

/// `name` with each byte of each label upper-cased where `upper(index in
/// label, byte)` says so, as a 0x20-randomising client would send it.
pub fn recase(name: &Name, mut upper: impl FnMut(usize) -> bool) -> Name {
    let labels: Vec<Label> = name
        .iter()
        .map(|l| {
            let bytes: Vec<u8> = l
                .iter()
                .enumerate()
                .map(|(i, b)| if upper(i) { b.to_ascii_uppercase() } else { *b })
                .collect();
            Label::from_raw_bytes(&bytes).unwrap()
        })
        .collect();
    let mut n = Name::from_labels(labels).unwrap();
    n.set_fqdn(true);
    n
}

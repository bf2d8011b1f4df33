//! Entries of every kind the kernel serves, for the kernel tests and the
//! fuzz test.

use std::net::{Ipv4Addr, Ipv6Addr};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, AAAA, CNAME, SRV};
use hickory_proto::rr::{RData, Record, RecordType};

use super::EntryDef;
use crate::records::{cluster_soa, name, rec};

/// `owner` A 10.96.0.`last`, TTL 30 (a ClusterIP).
pub fn cluster_a(owner: &str, last: u8) -> Record {
    rec(owner, 30, RData::A(A(Ipv4Addr::new(10, 96, 0, last))))
}

/// `owner` AAAA fd00::96:`last`, TTL 30.
pub fn cluster_aaaa(owner: &str, last: u16) -> Record {
    rec(
        owner,
        30,
        RData::AAAA(AAAA(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0x96, last))),
    )
}

/// `owner` A with one record, 10.96.0.`last`.
pub fn single_a(owner: &str, last: u8) -> EntryDef {
    EntryDef::new(owner, RecordType::A, vec![cluster_a(owner, last)])
}

/// One entry per kind of answer the kernel serves.
pub fn entry_kinds() -> Vec<EntryDef> {
    let web = "web.default.svc.cluster.local.";
    let mut v = vec![
        EntryDef::new(web, RecordType::A, vec![cluster_a(web, 10)]),
        EntryDef::new(web, RecordType::AAAA, vec![cluster_aaaa(web, 10)]),
        EntryDef::new(
            "db.prod.svc.cluster.local.",
            RecordType::A,
            (1..=5)
                .map(|i| cluster_a("db.prod.svc.cluster.local.", i))
                .collect(),
        ),
        EntryDef::new(
            "ext.default.svc.cluster.local.",
            RecordType::A,
            vec![
                rec(
                    "ext.default.svc.cluster.local.",
                    30,
                    RData::CNAME(CNAME(name("api.example.com."))),
                ),
                {
                    let mut r = cluster_a("api.example.com.", 99);
                    r.ttl = 20;
                    r
                },
            ],
        ),
        EntryDef::new(
            "_http._tcp.web.default.svc.cluster.local.",
            RecordType::SRV,
            vec![rec(
                "_http._tcp.web.default.svc.cluster.local.",
                30,
                RData::SRV(SRV::new(0, 100, 80, name(web))),
            )],
        ),
    ];
    // A non-authoritative (forwarded, cached) answer with an additional.
    let mut cached = EntryDef::new(
        "www.example.org.",
        RecordType::A,
        vec![cluster_a("www.example.org.", 7)],
    );
    cached.authoritative = false;
    cached.sections.additionals = vec![cluster_aaaa("ns1.example.org.", 1)];
    v.push(cached);
    // NXDOMAIN (the ndots:5 storm) and NODATA, both with the SOA.
    let mut nx = EntryDef::new(
        "api.example.com.default.svc.cluster.local.",
        RecordType::A,
        vec![],
    );
    nx.sections.rcode = ResponseCode::NXDomain;
    nx.sections.authority = vec![cluster_soa(42)];
    v.push(nx);
    let mut nodata = EntryDef::new(
        "v4only.default.svc.cluster.local.",
        RecordType::AAAA,
        vec![],
    );
    nodata.sections.authority = vec![cluster_soa(42)];
    v.push(nodata);
    v
}

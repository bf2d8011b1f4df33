//! XDP program ns per run through `BPF_PROG_TEST_RUN`, the method of
//! tests/tests/xdp_microbench.rs: `repeat` for frames the program leaves
//! alone (pass, miss), single runs minus the timer overhead for a hit
//! (a hit rewrites the frame, so `repeat` would time a reply after the first).

use std::net::Ipv4Addr;

use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, RecordType};
use nodedns_tests::frames::{FrameSpec, IPPROTO_TCP};

use crate::xdp_support::{
    EntryDef, Lab, XDP_PASS, XDP_TX, endpoints, query_frame, rec, require_root,
};

pub struct Figures {
    pub hit_ns: u64,
    pub miss_ns: u64,
    pub pass_ns: u64,
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

pub fn run(quick: bool) -> Figures {
    require_root();
    let (repeat, rounds, singles) = if quick {
        (50_000, 3, 1_000)
    } else {
        (200_000, 7, 3_000)
    };
    let mut lab = Lab::new();
    let web = "web.default.svc.cluster.local.";
    let def = EntryDef::new(
        web,
        RecordType::A,
        vec![rec(web, 30, RData::A(A(Ipv4Addr::new(10, 96, 0, 10))))],
    );
    let (k, e) = def.encode();
    lab.insert(&k, &e);
    let hit = query_frame(false, 1, web, RecordType::A, None);
    let miss = query_frame(
        false,
        1,
        "api.example.com.default.svc.cluster.local.",
        RecordType::A,
        None,
    );
    let (client, _) = endpoints(false);
    let mut tcp = FrameSpec::udp(client, std::net::SocketAddr::new(client.ip(), 443));
    tcp.proto = IPPROTO_TCP;
    let not_dns = tcp.build(&[0u8; 40]);

    let repeated = |frame: &[u8]| median((0..rounds).map(|_| lab.bench(frame, repeat)).collect());
    let single = |frame: &[u8], expect: u32| {
        median(
            (0..singles)
                .map(|_| {
                    let (action, ns) = lab.bench_once(frame);
                    assert_eq!(
                        action, expect,
                        "unexpected XDP verdict in the microbenchmark"
                    );
                    ns
                })
                .collect(),
        )
    };
    let pass_ns = repeated(&not_dns);
    let miss_ns = repeated(&miss);
    let overhead = single(&miss, XDP_PASS).saturating_sub(miss_ns);
    let hit_ns = single(&hit, XDP_TX).saturating_sub(overhead);
    Figures {
        hit_ns,
        miss_ns,
        pass_ns,
    }
}

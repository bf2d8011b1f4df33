//! Microbenchmark of the XDP program through `BPF_PROG_TEST_RUN`: ns per
//! run for a hit, a miss and a non-DNS pass. Ignored by default (a timing
//! figure, not a test); run it with
//! `cargo test -p nodedns-tests --test xdp_microbench -- --ignored --nocapture`.
//!
//! A hit rewrites the frame, and the kernel does not restore it between
//! repetitions, so `repeat` cannot time hits: they are timed one run per
//! syscall and the per-call timer overhead (measured on a miss both ways)
//! is subtracted. A too-big answer does all of a hit's work except the
//! rewrite and leaves the frame alone, so it is timed with `repeat` too.

use std::net::Ipv4Addr;

use crate::support::*;
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{RData, RecordType};
use nodedns_tests::frames::{FrameSpec, IPPROTO_TCP};

const REPEAT: u32 = 200_000;
const ROUNDS: usize = 7;
const SINGLE_RUNS: usize = 3_000;

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

fn repeated(lab: &Lab, frame: &[u8]) -> u64 {
    median((0..ROUNDS).map(|_| lab.bench(frame, REPEAT)).collect())
}

fn single(lab: &Lab, frame: &[u8], expect: u32) -> u64 {
    median(
        (0..SINGLE_RUNS)
            .map(|_| {
                let (action, ns) = lab.bench_once(frame);
                assert_eq!(action, expect);
                ns
            })
            .collect(),
    )
}

#[test]
#[ignore = "benchmark: run explicitly with --ignored --nocapture"]
fn xdp_microbench() {
    let mut lab = Lab::new();
    let web = "web.default.svc.cluster.local.";
    let d = EntryDef::new(
        web,
        RecordType::A,
        vec![rec(web, 30, RData::A(A(Ipv4Addr::new(10, 96, 0, 10))))],
    );
    let (k, e) = d.encode();
    lab.insert(&k, &e);
    let big = "big.default.svc.cluster.local.";
    let answers = (0..17u16)
        .map(|i| {
            rec(
                big,
                30,
                RData::AAAA(AAAA(std::net::Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, i))),
            )
        })
        .collect();
    let (k, e) = EntryDef::new(big, RecordType::AAAA, answers).encode();
    lab.insert(&k, &e);

    let hit = query_frame(false, 1, web, RecordType::A, None);
    let hit_v6_edns = query_frame(
        true,
        1,
        web,
        RecordType::A,
        Some(EdnsQ {
            size: 1232,
            dnssec_ok: false,
        }),
    );
    let miss = query_frame(
        false,
        1,
        "api.example.com.default.svc.cluster.local.",
        RecordType::A,
        None,
    );
    let too_big = query_frame(false, 1, big, RecordType::AAAA, None);
    let (c, s) = endpoints(false);
    let mut tcp = FrameSpec::udp(c, std::net::SocketAddr::new(c.ip(), 443));
    tcp.proto = IPPROTO_TCP;
    let not_dns = tcp.build(&[0u8; 40]);

    let mut response = query_msg(1, web, RecordType::A, None).to_vec().unwrap();
    response[2] |= 0x80;
    let not_query = FrameSpec::udp(c, s).build(&response);
    let miss_short = query_frame(false, 1, "a.", RecordType::A, None);
    let pass_ns = repeated(&lab, &not_dns);
    let not_query_ns = repeated(&lab, &not_query);
    let miss_short_ns = repeated(&lab, &miss_short);
    let miss_ns = repeated(&lab, &miss);
    let too_big_ns = repeated(&lab, &too_big);
    let miss_single = single(&lab, &miss, XDP_PASS);
    let overhead = miss_single.saturating_sub(miss_ns);
    let hit_single = single(&lab, &hit, XDP_TX);
    let hit6_single = single(&lab, &hit_v6_edns, XDP_TX);
    let _ = s;

    println!(
        "nodedns XDP microbenchmark (BPF_PROG_TEST_RUN, median of {ROUNDS} x {REPEAT} repeats or {SINGLE_RUNS} single runs)"
    );
    println!("  pass (TCP, not DNS)              {pass_ns:>5} ns/run");
    println!("  pass (DNS response to our port)   {not_query_ns:>5} ns/run");
    println!("  miss (name \"a.\")                 {miss_short_ns:>5} ns/run");
    println!("  miss (valid query, no entry)      {miss_ns:>5} ns/run");
    println!("  hit path without rewrite (too big){too_big_ns:>5} ns/run");
    println!(
        "  single-run timer overhead         {overhead:>5} ns (miss single {miss_single} - repeated {miss_ns})"
    );
    println!(
        "  hit IPv4 A                        {:>5} ns/run (single-run {hit_single} - overhead)",
        hit_single.saturating_sub(overhead)
    );
    println!(
        "  hit IPv6 A + EDNS                 {:>5} ns/run (single-run {hit6_single} - overhead)",
        hit6_single.saturating_sub(overhead)
    );
}

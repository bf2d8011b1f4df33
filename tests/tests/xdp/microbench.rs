//! Microbenchmark of the XDP program through `BPF_PROG_TEST_RUN`: ns per
//! run for a hit, a miss and a non-DNS pass. Ignored by default (a timing
//! figure, not a test); run it with
//! `cargo test -p nodedns-tests --test xdp -- --ignored --nocapture microbench`.
//!
//! The method is [`Timing`]'s, shared with the benchmark. A too-big answer
//! does all of a hit's work except the rewrite and leaves the frame alone,
//! so it is timed with `repeat` too.

use std::net::Ipv6Addr;

use hickory_proto::rr::rdata::AAAA;
use hickory_proto::rr::{RData, RecordType};
use nodedns_tests::frames::FrameSpec;
use nodedns_tests::records::rec;
use nodedns_tests::xdp::timing::{Timing, WEB, hit_frame, miss_frame, not_dns_frame, web_entry};
use nodedns_tests::xdp::{
    EdnsQ, EntryDef, Harness, XDP_PASS, XDP_TX, endpoints, query_frame, query_msg,
};

#[test]
#[ignore = "benchmark: run explicitly with --ignored --nocapture"]
fn xdp_microbench() {
    let t = Timing::FULL;
    let mut xdp = Harness::new();
    xdp.insert_entry(&web_entry());
    let big = "big.default.svc.cluster.local.";
    let answers = (0..17u16)
        .map(|i| {
            rec(
                big,
                30,
                RData::AAAA(AAAA(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, i))),
            )
        })
        .collect();
    xdp.insert_entry(&EntryDef::new(big, RecordType::AAAA, answers));

    let hit = hit_frame();
    let hit_v6_edns = query_frame(true, 1, WEB, RecordType::A, Some(EdnsQ::size(1232)));
    let miss = miss_frame();
    let too_big = query_frame(false, 1, big, RecordType::AAAA, None);
    let not_dns = not_dns_frame();
    let (c, s) = endpoints(false);
    let mut response = query_msg(1, WEB, RecordType::A, None).to_vec().unwrap();
    response[2] |= 0x80;
    let not_query = FrameSpec::udp(c, s).build(&response);
    let miss_short = query_frame(false, 1, "a.", RecordType::A, None);
    let pass_ns = t.repeated(&xdp, &not_dns);
    let not_query_ns = t.repeated(&xdp, &not_query);
    let miss_short_ns = t.repeated(&xdp, &miss_short);
    let miss_ns = t.repeated(&xdp, &miss);
    let too_big_ns = t.repeated(&xdp, &too_big);
    let miss_single = t.single(&xdp, &miss, XDP_PASS);
    let overhead = miss_single.saturating_sub(miss_ns);
    let hit_single = t.single(&xdp, &hit, XDP_TX);
    let hit6_single = t.single(&xdp, &hit_v6_edns, XDP_TX);

    println!(
        "nodedns XDP microbenchmark (BPF_PROG_TEST_RUN, median of {} x {} repeats or {} single runs)",
        t.rounds, t.repeat, t.singles
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

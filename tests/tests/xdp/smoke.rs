//! Smoke test of the whole chain: the embedded XDP object passes the real
//! verifier, attaches in generic (SKB) mode to a pod's host-side veth
//! inside the lab node, sees a real `dig` from the pod, counts it in its
//! per-CPU counters map, and does not break the path to userspace.

use std::net::SocketAddr;
use std::time::Duration;

use aya::programs::XdpMode;
use dns_common::MAP_COUNTERS;
use nodedns_tests::lab::{LISTEN_V4, Lab, wait_for};
use nodedns_tests::upstream::DnsmasqSpec;
use nodedns_tests::xdp::Harness;

#[test]
fn xdp_program_counts_a_real_dig_query_and_passes_it_to_userspace() {
    let lab = Lab::new(1).unwrap();
    let pod = lab.pod(0);
    let dnsmasq = DnsmasqSpec::new(SocketAddr::new(LISTEN_V4.into(), 53))
        .wildcard("smoke.test", [10, 9, 9, 9].into())
        .start(&lab, lab.node(), "dnsmasq")
        .unwrap();

    let mut xdp = Harness::new();
    let ifname = pod.node_ifname();
    let program = xdp.program();
    // The interface exists only in the node namespace, and attach resolves
    // its name there, so attach from a thread that entered it.
    let link = lab
        .node()
        .enter(|| program.attach(ifname, XdpMode::Skb))
        .unwrap()
        .expect("attach in SKB mode");
    assert!(
        lab.node().has_xdp(ifname).unwrap(),
        "no XDP program on {ifname} after attach"
    );

    let total = |xdp: &Harness| xdp.counters().iter().sum::<u64>();
    let before = total(&xdp);
    let answer = wait_for(
        "an answer through the XDP-attached veth",
        Duration::from_secs(10),
        || {
            let reply = pod
                .dig(&[&format!("@{LISTEN_V4}"), "www.smoke.test", "A"])
                .ok()?;
            (reply.rdata("A") == ["10.9.9.9"]).then_some(reply)
        },
    );
    assert!(
        answer.is_ok(),
        "{answer:?}\ndnsmasq log:\n{}",
        dnsmasq.log()
    );
    let after = total(&xdp);
    assert!(
        after > before,
        "{MAP_COUNTERS} did not move: {before} before the query, {after} after"
    );
    assert_eq!(
        pod.udp_csum_errors().unwrap(),
        0,
        "the client dropped replies with bad checksums"
    );

    xdp.program().detach(link).unwrap();
    assert!(
        !lab.node().has_xdp(ifname).unwrap(),
        "XDP still attached to {ifname} after detach"
    );
}

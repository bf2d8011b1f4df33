//! The program attached in generic (SKB) mode to a pod's host-side veth in
//! a lab node, answering real `dig` queries from the pod with checksum
//! offload on: the client kernel accepts the answers (`UdpInCsumErrors`
//! stays zero). No agent: whatever the program passes finds no listener.

use aya::programs::XdpMode;
use dns_common::{Counter, InterfaceMacs};
use nodedns_tests::lab::Lab;
use nodedns_tests::xdp::timing::web_entry;
use nodedns_tests::xdp::{Harness, SERVER_V4, SERVER_V6};

#[test]
fn dig_over_ipv4_and_ipv6_through_veth_in_generic_mode() {
    let lab = Lab::new(1).unwrap();
    let pod = lab.pod(0);
    let mut xdp = Harness::new();
    xdp.insert_entry(&web_entry());
    let ifname = pod.node_ifname();
    // What the agent writes for every interface: its MAC, by ifindex.
    xdp.set_interface(
        lab.node().ifindex(ifname).unwrap(),
        InterfaceMacs {
            mac: lab.node().mac(ifname).unwrap(),
            bridge_mac: [0; 6],
        },
    );
    let program = xdp.program();
    // The interface exists only in the node namespace, where attach
    // resolves its name.
    lab.node()
        .enter(|| program.attach(ifname, XdpMode::Skb))
        .unwrap()
        .expect("attach in generic mode");

    let mut asked = 0;
    for server in [format!("@{SERVER_V4}"), format!("@{SERVER_V6}")] {
        for extra in ["+noedns", "+nocookie"] {
            let reply = pod
                .dig(&[&server, "WeB.Default.svc.cluster.local", "A", extra])
                .unwrap();
            assert_eq!(
                reply.rdata("A"),
                ["10.96.0.10"],
                "dig {server} {extra}: {}",
                reply.raw
            );
            asked += 1;
        }
    }
    assert_eq!(
        pod.udp_csum_errors().unwrap(),
        0,
        "the client kernel rejected answers"
    );
    assert_eq!(
        xdp.counters()[Counter::Hit as usize],
        asked,
        "counters {:?}",
        xdp.counters()
    );
}

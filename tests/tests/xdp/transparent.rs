//! Transparent mode and fail-open in the program (docs/design.md#transparent-mode,
//! docs/design.md#fail-open), through `BPF_PROG_TEST_RUN`: queries to the
//! cluster DNS address answered from the map, handed to the agent's ring
//! when it serves, passed untouched to the cluster DNS Service when it does
//! not; queries to the listen address failed open to the cluster address
//! with their flow recorded and checksums kept right (the pseudo-header
//! seed of a pod's socket stays a seed); TCP per connection; and the egress
//! program giving the replies their source back. Needs root.

use std::net::SocketAddr;

use dns_common::failopen::LIVENESS_TIMEOUT_NS;
use dns_common::{Counter, RingHeader};
use hickory_proto::rr::RecordType;
use nodedns_tests::frames::{
    TCP_ACK, TCP_SYN, TcpChecksum, ip_header_ok, parse_tcp, parse_udp, tcp_frame,
    udp_checksum_is_seed,
};
use nodedns_tests::internals::{TransparentQuery, boot_time_ns};
use nodedns_tests::xdp::failopen::{
    CLUSTER_V4, ListenerNetns, TC_NEXT, XDP_DROP, cluster_addr, flow_key, listen_addr,
    transparent_config, udp_frame,
};
use nodedns_tests::xdp::{
    Harness, TEST_RUN_IFINDEX, XDP_PASS, XDP_TX, check_answer, default_config, endpoints,
    query_msg, single_a,
};

const NAME: &str = "web.default.svc.cluster.local.";

/// The client, and a query from it to `to` port 53.
fn query_to(v6: bool, id: u16, name: &str, to: std::net::IpAddr, full: bool) -> Vec<u8> {
    let (client, _) = endpoints(v6);
    let msg = query_msg(id, name, RecordType::A, None).to_vec().unwrap();
    udp_frame(client, SocketAddr::new(to, 53), &msg, full)
}

fn harness() -> Harness {
    let mut xdp = Harness::new();
    xdp.set_config(transparent_config());
    xdp
}

#[test]
fn cluster_address_hits_are_answered_from_it() {
    let mut xdp = harness();
    let def = single_a(NAME, 7);
    xdp.insert_entry(&def);
    for v6 in [false, true] {
        let q = query_to(v6, 0x1234, NAME, cluster_addr(v6), false);
        let (r, moved) = xdp.counted(|| xdp.run(&q));
        assert_eq!(r.action, XDP_TX, "v6={v6}");
        // check_answer: from the address queried, back to the client.
        check_answer(&q, &r.out, &def);
        assert_eq!(moved, [(Counter::Hit, 1), (Counter::Intercepted, 1)]);
    }
}

#[test]
fn cluster_address_misses_go_to_the_agents_ring_while_it_serves() {
    let ns = ListenerNetns::new().unwrap();
    let mut xdp = harness();
    xdp.beat();
    ns.run(true, || {
        for v6 in [false, true] {
            let q = query_to(v6, 0x4321, "nothing.example.", cluster_addr(v6), false);
            let (r, moved) = xdp.counted(|| xdp.run(&q));
            assert_eq!(r.action, XDP_DROP, "v6={v6}: {moved:?}");
            assert_eq!(moved, [(Counter::Redirected, 1), (Counter::Intercepted, 1)]);
            let records = xdp.ring_records();
            assert_eq!(records.len(), 1);
            let header: [u8; size_of::<RingHeader>()] =
                records[0][..size_of::<RingHeader>()].try_into().unwrap();
            assert_eq!(
                u32::from_ne_bytes(header[..4].try_into().unwrap()),
                TEST_RUN_IFINDEX
            );
            assert_eq!(
                &records[0][size_of::<RingHeader>()..],
                &q[..],
                "the frame, whole"
            );
            // The agent's reader takes it: the seed checksum of a pod's
            // socket included.
            let parsed = TransparentQuery::parse(&records[0]).expect("the agent reads the record");
            assert_eq!(parsed.dst, cluster_addr(v6));
        }
    });
}

#[test]
fn without_a_serving_agent_cluster_queries_pass_untouched() {
    let ns = ListenerNetns::new().unwrap();
    let mut xdp = harness();
    let stale = boot_time_ns() - LIVENESS_TIMEOUT_NS - 1_000_000;
    // (heartbeat, socket): never beaten; beating but dead (no socket: a
    // killed agent); stale (stopped or wedged); stopped cleanly.
    for (beat, listening) in [(0, true), (1, false), (stale, true), (0, false)] {
        if beat == 1 {
            xdp.beat();
        } else {
            xdp.set_heartbeat(beat);
        }
        ns.run(listening, || {
            for v6 in [false, true] {
                let q = query_to(v6, 7, "nothing.example.", cluster_addr(v6), false);
                let (r, moved) = xdp.counted(|| xdp.run(&q));
                assert_eq!(r.action, XDP_PASS, "beat {beat} socket {listening} v6={v6}");
                assert_eq!(r.out, q, "passed untouched to kube-proxy");
                assert_eq!(moved, [(Counter::FailedOpen, 1)]);
            }
        });
        assert!(xdp.ring_records().is_empty());
    }
}

#[test]
fn listen_misses_fail_open_to_the_cluster_address_with_their_flow() {
    let ns = ListenerNetns::new().unwrap();
    let mut xdp = harness();
    xdp.set_egress(TEST_RUN_IFINDEX);
    let stale = boot_time_ns() - LIVENESS_TIMEOUT_NS - 1_000_000;
    let mut id = 100;
    for (beat, listening) in [(0, false), (stale, true)] {
        xdp.set_heartbeat(beat);
        ns.run(listening, || {
            for v6 in [false, true] {
                for full in [false, true] {
                    id += 1;
                    let q = query_to(v6, id, "nothing.example.", listen_addr(v6), full);
                    let (r, moved) = xdp.counted(|| xdp.run(&q));
                    assert_eq!(r.action, XDP_PASS);
                    assert_eq!(moved, [(Counter::FailedOpen, 1)], "v6={v6} full={full}");
                    assert!(
                        ip_header_ok(&r.out),
                        "IPv4 header checksum after the rewrite"
                    );
                    let (client, _) = endpoints(v6);
                    let dst = if full {
                        let f = parse_udp(&r.out).expect("a full checksum stays valid");
                        assert_eq!(f.src, client);
                        f.dst
                    } else {
                        assert!(
                            udp_checksum_is_seed(&r.out),
                            "a CHECKSUM_PARTIAL seed stays the seed of the new addresses"
                        );
                        udp_dst(&r.out)
                    };
                    assert_eq!(dst, SocketAddr::new(cluster_addr(v6), 53));
                    assert_eq!(r.out.len(), q.len());
                    let flow = xdp
                        .flow(&flow_key(client, id, false))
                        .expect("flow recorded");
                    assert_eq!(&flow.listen[..addr_len(v6)], &octets(listen_addr(v6))[..]);
                    assert_eq!(&flow.cluster[..addr_len(v6)], &octets(cluster_addr(v6))[..]);
                }
            }
        });
    }
}

#[test]
fn listen_misses_stay_with_the_socket_or_pass_when_they_cannot_fail_open() {
    let ns = ListenerNetns::new().unwrap();
    let mut xdp = harness();
    let q = query_to(false, 9, "nothing.example.", listen_addr(false), false);
    // A serving agent, or a socket and no beat yet (a starting agent's
    // program, the previous agent still serving): the socket takes it.
    for beat in [true, false] {
        if beat {
            xdp.beat();
        } else {
            xdp.set_heartbeat(0);
        }
        ns.run(true, || {
            let (r, moved) = xdp.counted(|| xdp.run(&q));
            assert_eq!((r.action, &r.out), (XDP_PASS, &q));
            assert_eq!(moved, [(Counter::Miss, 1)]);
        });
    }
    // No agent, but no egress program on the interface: the reply could not
    // get its source back, so nothing is rewritten.
    xdp.set_heartbeat(0);
    ns.run(false, || xdp.expect_pass(&q, Counter::PassNoFailOpen));
    // No cluster address of the family.
    xdp.set_egress(TEST_RUN_IFINDEX);
    let mut cfg = transparent_config();
    cfg.cluster_v4_count = 0;
    xdp.set_config(cfg);
    ns.run(false, || xdp.expect_pass(&q, Counter::PassNoFailOpen));
}

#[test]
fn transparent_off_leaves_the_cluster_address_to_the_stack() {
    let mut xdp = harness();
    xdp.insert_entry(&single_a(NAME, 7));
    let mut cfg = transparent_config();
    cfg.transparent = 0;
    xdp.set_config(cfg);
    for v6 in [false, true] {
        let q = query_to(v6, 1, NAME, cluster_addr(v6), false);
        xdp.expect_pass(&q, Counter::PassNotDns);
    }
    // And without any cluster address, as before this mode existed.
    xdp.set_config(default_config());
    xdp.expect_pass(
        &query_to(false, 1, NAME, CLUSTER_V4.into(), false),
        Counter::PassNotDns,
    );
}

#[test]
fn tcp_to_the_listen_address_fails_open_per_connection() {
    let ns = ListenerNetns::new().unwrap();
    let mut xdp = harness();
    xdp.set_egress(TEST_RUN_IFINDEX);
    for v6 in [false, true] {
        let (client, listen) = endpoints(v6);
        let to_cluster = SocketAddr::new(cluster_addr(v6), 53);
        let syn = tcp_frame(client, listen, TCP_SYN, false);
        let ack = tcp_frame(client, listen, TCP_ACK, true);
        // A connection opened while an agent serves stays with its socket.
        xdp.beat();
        ns.run(true, || {
            for f in [&syn, &ack] {
                xdp.expect_pass(f, Counter::PassNotDns);
            }
        });
        // No agent: the SYN fails open, and so does the rest of that
        // connection, even once an agent serves again.
        for (serving, segment, checksum) in [
            (false, &syn, TcpChecksum::Seed),
            (true, &ack, TcpChecksum::Full),
        ] {
            if serving {
                xdp.beat();
            } else {
                xdp.set_heartbeat(0);
            }
            ns.run(serving, || {
                let (r, moved) = xdp.counted(|| xdp.run(segment));
                assert_eq!(
                    (r.action, moved),
                    (XDP_PASS, vec![(Counter::FailedOpen, 1)])
                );
                assert_eq!(parse_tcp(&r.out), (client, to_cluster, checksum));
            });
            assert!(xdp.flow(&flow_key(client, 0, true)).is_some());
        }
        // TCP to the cluster address is kube-proxy's, always.
        xdp.set_heartbeat(0);
        let direct = tcp_frame(client, to_cluster, TCP_SYN, false);
        ns.run(false, || xdp.expect_pass(&direct, Counter::PassNotDns));
    }
}

#[test]
fn egress_gives_failed_open_replies_their_source_back() {
    let ns = ListenerNetns::new().unwrap();
    let mut xdp = harness();
    xdp.load_egress();
    xdp.set_egress(TEST_RUN_IFINDEX);
    xdp.set_heartbeat(0);
    for v6 in [false, true] {
        let (client, listen) = endpoints(v6);
        let cluster = SocketAddr::new(cluster_addr(v6), 53);
        let id = 0x5150;
        ns.run(false, || {
            let q = query_to(v6, id, "nothing.example.", listen.ip(), false);
            assert_eq!(xdp.run(&q).action, XDP_PASS);
        });
        let answer = query_msg(id, "nothing.example.", RecordType::A, None)
            .to_vec()
            .unwrap();
        // Another ID, or another server: not the flow's reply, untouched.
        for (from, reply_id) in [(cluster, id + 1), (SocketAddr::new(listen.ip(), 53), id)] {
            let mut other = answer.clone();
            other[..2].copy_from_slice(&reply_id.to_be_bytes());
            let frame = udp_frame(from, client, &other, true);
            let (r, moved) = xdp.counted(|| xdp.run_egress(&frame));
            assert_eq!((r.action, &r.out, moved), (TC_NEXT, &frame, vec![]));
        }
        let reply = udp_frame(cluster, client, &answer, true);
        let (r, moved) = xdp.counted(|| xdp.run_egress(&reply));
        assert_eq!(r.action, TC_NEXT, "the next program still sees it");
        assert_eq!(moved, [(Counter::ReplyRestored, 1)]);
        let f = parse_udp(&r.out).expect("checksums right after the rewrite");
        assert_eq!(
            (f.src, f.dst),
            (listen, client),
            "from the address the pod asked"
        );
        assert_eq!(f.payload, answer);
        assert!(
            xdp.flow(&flow_key(client, id, false)).is_none(),
            "one reply per UDP query"
        );
        // A second copy of the reply is not rewritten any more.
        assert_eq!(xdp.run_egress(&reply).out, reply);

        // TCP: every segment of a failed-open connection, from the cluster
        // address, gets the listen address back.
        ns.run(false, || {
            let syn = tcp_frame(client, listen, TCP_SYN, false);
            assert_eq!(xdp.run(&syn).action, XDP_PASS);
        });
        for _ in 0..2 {
            let seg = tcp_frame(cluster, client, TCP_SYN | TCP_ACK, true);
            let (r, moved) = xdp.counted(|| xdp.run_egress(&seg));
            assert_eq!(moved, [(Counter::ReplyRestored, 1)]);
            assert_eq!(parse_tcp(&r.out), (listen, client, TcpChecksum::Full));
        }
    }
}

fn udp_dst(frame: &[u8]) -> SocketAddr {
    let v4 = u16::from_be_bytes([frame[12], frame[13]]) == 0x0800;
    let (ip, l4): (std::net::IpAddr, usize) = if v4 {
        let d: [u8; 4] = frame[30..34].try_into().unwrap();
        (d.into(), 34)
    } else {
        let d: [u8; 16] = frame[38..54].try_into().unwrap();
        (d.into(), 54)
    };
    SocketAddr::new(ip, u16::from_be_bytes([frame[l4 + 2], frame[l4 + 3]]))
}

fn octets(ip: std::net::IpAddr) -> Vec<u8> {
    match ip {
        std::net::IpAddr::V4(a) => a.octets().to_vec(),
        std::net::IpAddr::V6(a) => a.octets().to_vec(),
    }
}

fn addr_len(v6: bool) -> usize {
    if v6 { 16 } else { 4 }
}

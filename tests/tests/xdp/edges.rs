//! The XDP program at the edges of what it parses, through
//! `BPF_PROG_TEST_RUN`.
//!
//! Name lengths: for every wire length from 1 to 255 bytes and every query
//! type in the map, an answer echoes the question as sent and carries only
//! records of the asked type and class IN; anything else is passed
//! untouched. Some names start with the bytes of a query type in the map
//! followed by class IN (`03 'a' 00 01`), so a parser that read type and
//! class from the wrong offset would find a real entry and answer with it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use dns_common::{Counter, InterfaceMacs, MAX_NAME_LEN};
use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::rdata::{A, AAAA, NULL, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use nodedns_tests::frames::{FrameSpec, SERVER_MAC, parse_udp};
use nodedns_tests::records::recase;
use nodedns_tests::xdp::{
    EdnsQ, EntryDef, Harness, Layout, MAX_WIRE_NAME, Run, SERVER_V4, SERVER_V6, TEST_RUN_IFINDEX,
    TYPE_LIKE_QTYPE, XDP_PASS, XDP_TX, check_answer, cookie, endpoints, frame_with_options,
    name_of_len, query_frame, query_msg,
};

/// The query types the map holds an entry of, for every name that fits;
/// the last is what a `TypeLike` name's first bytes spell.
const MAPPED: [RecordType; 4] = [
    RecordType::A,
    RecordType::AAAA,
    RecordType::TXT,
    RecordType::Unknown(TYPE_LIKE_QTYPE),
];
/// A type no entry has: always a miss.
const UNMAPPED: RecordType = RecordType::MX;

/// Upper-cases every other letter, as a 0x20-randomising client would,
/// from each label's second byte: `TypeLike` names keep their `a`.
fn mixed_case(name: &Name) -> Name {
    recase(name, |i| i % 2 == 1)
}

fn record(owner: &Name, qtype: RecordType, wire_len: usize) -> Record {
    let data = match qtype {
        RecordType::A => RData::A(A(Ipv4Addr::new(
            10,
            1,
            (wire_len >> 8) as u8,
            wire_len as u8,
        ))),
        RecordType::AAAA => RData::AAAA(AAAA(Ipv6Addr::new(
            0xfd00,
            0,
            0,
            0,
            0,
            0,
            1,
            wire_len as u16,
        ))),
        RecordType::TXT => RData::TXT(TXT::new(vec![format!("len={wire_len}")])),
        other => RData::Unknown {
            code: other,
            rdata: NULL::with(vec![0xee, wire_len as u8]),
        },
    };
    Record::from_rdata(owner.clone(), 30, data)
}

fn entry(owner: &Name, qtype: RecordType, wire_len: usize) -> EntryDef {
    let mut def = EntryDef::new("placeholder.", qtype, vec![record(owner, qtype, wire_len)]);
    def.qname = owner.clone();
    def
}

fn query(v6: bool, id: u16, qname: &Name, qtype: RecordType, class: DNSClass) -> Vec<u8> {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    let mut q = Query::query(qname.clone(), qtype);
    q.set_query_class(class);
    m.add_query(q);
    if v6 {
        // EDNS on one family, so both OPT and no-OPT answers are covered.
        let mut opt = hickory_proto::op::Edns::new();
        opt.set_max_payload(1232);
        m.set_edns(opt);
    }
    let (c, s) = endpoints(v6);
    FrameSpec::udp(c, s).build(&m.to_vec().unwrap())
}

/// The question of a DNS message as its bytes: name, type and class.
fn question_bytes(msg: &[u8]) -> &[u8] {
    let mut p = 12;
    while msg[p] != 0 {
        p += 1 + msg[p] as usize;
    }
    &msg[12..p + 1 + 4]
}

/// The property itself, for any verdict: a passed frame is untouched; an
/// answer echoes the question byte for byte and carries only records of
/// the asked type and class IN.
fn check_property(frame: &[u8], run: &Run, qtype: RecordType, what: &str) {
    match run.action {
        XDP_PASS => assert_eq!(run.out, frame, "{what}: passed but modified"),
        XDP_TX => {
            let l4 = if frame[12..14] == [0x08, 0x00] {
                34
            } else {
                54
            };
            let asked = question_bytes(&frame[l4 + 8..]);
            let reply = parse_udp(&run.out).unwrap_or_else(|e| panic!("{what}: answer frame: {e}"));
            assert_eq!(
                question_bytes(&reply.payload),
                asked,
                "{what}: question not echoed"
            );
            let msg = Message::from_vec(&reply.payload)
                .unwrap_or_else(|e| panic!("{what}: answer does not parse: {e}"));
            for r in msg
                .answers
                .iter()
                .chain(&msg.authorities)
                .chain(&msg.additionals)
            {
                assert_eq!(
                    r.record_type(),
                    qtype,
                    "{what}: record of another type: {r}"
                );
                assert_eq!(
                    r.dns_class,
                    DNSClass::IN,
                    "{what}: record of another class: {r}"
                );
            }
        }
        other => panic!("{what}: action {other}"),
    }
}

#[test]
fn every_name_length_answers_only_the_question_asked() {
    let mut xdp = Harness::with_capacity(4096);
    let layouts = [Layout::Long, Layout::TypeLike];
    let mut names = Vec::new();
    for wire_len in 1..=MAX_WIRE_NAME {
        for layout in layouts {
            if let Some(n) = name_of_len(wire_len, layout) {
                names.push((wire_len, layout, n));
            }
        }
    }
    let mut defs = std::collections::HashMap::new();
    for (wire_len, layout, n) in &names {
        if *wire_len > MAX_NAME_LEN {
            continue;
        }
        for qtype in MAPPED {
            let def = entry(n, qtype, *wire_len);
            xdp.insert_entry(&def);
            defs.insert((*wire_len, format!("{layout:?}"), qtype), def);
        }
    }

    let mut id = 0u16;
    let (mut answered, mut passed) = (0, 0);
    for (wire_len, layout, n) in &names {
        for v6 in [false, true] {
            let asked = mixed_case(n);
            for qtype in MAPPED.iter().copied().chain([UNMAPPED]) {
                for class in [DNSClass::IN, DNSClass::CH] {
                    id = id.wrapping_add(1);
                    let what = format!("{wire_len}-byte {layout:?} name, {qtype} {class}, v6 {v6}");
                    let frame = query(v6, id, &asked, qtype, class);
                    let before = xdp.counters();
                    let run = xdp.run(&frame);
                    check_property(&frame, &run, qtype, &what);
                    let after = xdp.counters();
                    let moved = |c: Counter| after[c as usize] - before[c as usize];
                    let expected = if *wire_len > MAX_NAME_LEN {
                        Counter::PassName
                    } else if class != DNSClass::IN {
                        Counter::PassClass
                    } else if qtype == UNMAPPED {
                        Counter::Miss
                    } else {
                        Counter::Hit
                    };
                    assert_eq!(
                        moved(expected),
                        1,
                        "{what}: expected {expected:?}, counters moved {:?}",
                        Counter::ALL
                            .iter()
                            .filter(|c| moved(**c) != 0)
                            .collect::<Vec<_>>()
                    );
                    if expected == Counter::Hit {
                        let def = &defs[&(*wire_len, format!("{layout:?}"), qtype)];
                        check_answer(&frame, &run.out, def);
                        answered += 1;
                    } else {
                        passed += 1;
                    }
                }
            }
        }
    }
    println!("name lengths 1..={MAX_WIRE_NAME}: {answered} answered, {passed} passed");
}

/// One name in the map, queried in several shapes.
fn checks_harness() -> (Harness, EntryDef) {
    let mut xdp = Harness::new();
    let def = EntryDef::a(
        "web.default.svc.cluster.local.",
        &[Ipv4Addr::new(10, 96, 0, 10)],
    );
    xdp.insert_entry(&def);
    (xdp, def)
}

/// Offset of the UDP checksum field in a frame of the family `v6`.
fn udp_check_at(v6: bool) -> usize {
    if v6 { 54 + 6 } else { 34 + 6 }
}

/// The DNS message of a query for `qname`, plain or with EDNS and
/// optionally a cookie of `cookie_len` bytes.
fn shaped_query(qname: &str, edns: bool, cookie_len: Option<usize>) -> Vec<u8> {
    let e = EdnsQ {
        size: 1232,
        dnssec_ok: false,
    };
    let msg = query_msg(0x5151, qname, RecordType::A, edns.then_some(e));
    match cookie_len {
        Some(n) => {
            let f = frame_with_options(false, msg, &[cookie(n)]);
            f[34 + 8..].to_vec()
        }
        None => msg.to_vec().unwrap(),
    }
}

#[test]
fn udp_checksums_the_stack_would_accept_are_answered_and_the_rest_passed() {
    let (mut xdp, web) = checks_harness();
    // A name of even wire length beside web's odd one: what follows the
    // question sits at either parity.
    let even = "webs.default.svc.cluster.local.";
    let webs = EntryDef::a(even, &[Ipv4Addr::new(10, 96, 0, 11)]);
    xdp.insert_entry(&webs);
    // With and without OPT, and cookies of every accepted size class: the
    // program verifies the sum of the whole message, so every shape of it
    // must add up.
    let mut shapes = Vec::new();
    for (qname, def) in [("wEb.default.svc.cluster.local.", &web), (even, &webs)] {
        for cookie_len in [None, Some(8), Some(16), Some(23), Some(40)] {
            shapes.push((shaped_query(qname, cookie_len.is_some(), cookie_len), def));
        }
        shapes.push((shaped_query(qname, true, None), def));
    }
    for v6 in [false, true] {
        let (c, s) = endpoints(v6);
        for (payload, def) in &shapes {
            let def = *def;
            let mut full = FrameSpec::udp(c, s);
            full.full_udp_checksum = true;
            let good = full.build(payload);
            let run = xdp.run(&good);
            assert_eq!(
                run.action, XDP_TX,
                "a valid checksum (v6 {v6}) must be answered"
            );
            check_answer(&good, &run.out, def);

            // A local socket's CHECKSUM_PARTIAL seed: what a pod's query
            // looks like on the host side of its veth.
            let partial = FrameSpec::udp(c, s).build(payload);
            assert_ne!(partial, good);
            let run = xdp.run(&partial);
            assert_eq!(
                run.action, XDP_TX,
                "the offload seed (v6 {v6}) must be answered"
            );
            check_answer(&partial, &run.out, def);

            let at = udp_check_at(v6);
            let mut wrong = good.clone();
            wrong[at + 1] ^= 0x01;
            xdp.expect_pass(&wrong, Counter::PassChecksum);
            // A byte of the message changed after the sum was taken.
            let mut corrupt = good.clone();
            let id = at + 2;
            corrupt[id] ^= 0x40;
            xdp.expect_pass(&corrupt, Counter::PassChecksum);

            let mut zero = good.clone();
            zero[at..at + 2].copy_from_slice(&[0, 0]);
            if v6 {
                // Invalid over IPv6 (RFC 8200 section 8.1).
                xdp.expect_pass(&zero, Counter::PassChecksum);
            } else {
                // "No checksum" over IPv4.
                let run = xdp.run(&zero);
                assert_eq!(run.action, XDP_TX, "IPv4 without a checksum");
                check_answer(&zero, &run.out, def);
            }
        }
    }
}

#[test]
fn only_frames_to_the_interfaces_own_unicast_mac_are_answered() {
    let (mut xdp, def) = checks_harness();
    let good = query_frame(
        false,
        7,
        "web.default.svc.cluster.local.",
        RecordType::A,
        None,
    );
    let with_dst = |mac: [u8; 6]| {
        let mut f = good.clone();
        f[0..6].copy_from_slice(&mac);
        f
    };
    let run = xdp.run(&good);
    assert_eq!(run.action, XDP_TX);
    check_answer(&good, &run.out, &def);
    xdp.expect_pass(&with_dst([0xff; 6]), Counter::PassMac);
    xdp.expect_pass(&with_dst([0x01, 0x00, 0x5e, 0, 0, 1]), Counter::PassMac);
    xdp.expect_pass(&with_dst([0x33, 0x33, 0, 0, 0, 1]), Counter::PassMac);
    let other_host = [0x02, 0, 0, 0, 0, 0x99];
    xdp.expect_pass(&with_dst(other_host), Counter::PassMac);

    // On a bridge port, frames to the bridge are the stack's too, and the
    // answer comes from the bridge's address.
    let bridge = [0x02, 0, 0, 0, 0, 0xb1];
    xdp.set_interface(
        TEST_RUN_IFINDEX,
        InterfaceMacs {
            mac: SERVER_MAC,
            bridge_mac: bridge,
        },
    );
    let to_bridge = with_dst(bridge);
    let run = xdp.run(&to_bridge);
    assert_eq!(run.action, XDP_TX, "a query to the bridge's MAC");
    check_answer(&to_bridge, &run.out, &def);
    assert_eq!(run.out[6..12], bridge, "the answer's source is the bridge");
    xdp.expect_pass(&with_dst(other_host), Counter::PassMac);

    // An interface the agent has not described: nothing is answered.
    xdp.remove_interface(TEST_RUN_IFINDEX);
    xdp.expect_pass(&good, Counter::PassMac);
}

#[test]
fn only_sources_the_stack_would_answer_are_answered() {
    let (xdp, def) = checks_harness();
    let qname = "web.default.svc.cluster.local.";
    let payload = query_msg(9, qname, RecordType::A, None).to_vec().unwrap();
    let from = |src: IpAddr, port: u16| {
        let (_, s) = endpoints(src.is_ipv6());
        FrameSpec::udp(SocketAddr::new(src, port), s).build(&payload)
    };
    let refused: [IpAddr; 12] = [
        Ipv4Addr::UNSPECIFIED.into(),
        Ipv4Addr::new(0, 1, 2, 3).into(),
        Ipv4Addr::LOCALHOST.into(),
        Ipv4Addr::new(127, 9, 9, 9).into(),
        Ipv4Addr::new(224, 0, 0, 1).into(),
        Ipv4Addr::new(239, 255, 255, 250).into(),
        Ipv4Addr::BROADCAST.into(),
        SERVER_V4.into(),
        Ipv6Addr::UNSPECIFIED.into(),
        Ipv6Addr::LOCALHOST.into(),
        "ff02::1".parse::<Ipv6Addr>().unwrap().into(),
        "::ffff:10.0.0.1".parse::<Ipv6Addr>().unwrap().into(),
    ];
    for src in refused.into_iter().chain([IpAddr::from(SERVER_V6)]) {
        xdp.expect_pass(&from(src, 41000), Counter::PassSource);
    }
    for v6 in [false, true] {
        let (c, _) = endpoints(v6);
        xdp.expect_pass(&from(c.ip(), 0), Counter::PassSource);
    }
    // Next to the refused ranges, and ordinary pod addresses.
    let accepted: [IpAddr; 6] = [
        Ipv4Addr::new(1, 0, 0, 0).into(),
        Ipv4Addr::new(126, 255, 255, 255).into(),
        Ipv4Addr::new(223, 255, 255, 255).into(),
        Ipv4Addr::new(169, 254, 20, 11).into(),
        "fe80::1".parse::<Ipv6Addr>().unwrap().into(),
        "::2".parse::<Ipv6Addr>().unwrap().into(),
    ];
    for src in accepted {
        let f = from(src, 1);
        let run = xdp.run(&f);
        assert_eq!(run.action, XDP_TX, "a query from {src}");
        check_answer(&f, &run.out, &def);
    }
}

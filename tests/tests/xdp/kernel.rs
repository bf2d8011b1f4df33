//! The XDP program through the real kernel (`BPF_PROG_TEST_RUN`): every
//! kind of answer over IPv4 and IPv6, with and without EDNS, in mixed
//! case, and every reason to pass. Needs root.

use std::collections::BTreeSet;

use dns_common::Counter;
use hickory_proto::rr::RecordType;
use nodedns_tests::frames::{FrameSpec, IPPROTO_TCP};
use nodedns_tests::internals::boot_time_ns;
use nodedns_tests::xdp::{
    EdnsQ, EntryDef, Harness, XDP_TX, check_answer, cluster_a, cluster_aaaa, cookie,
    default_config, endpoints, entry_kinds, query_frame, query_frame_with_options, query_msg,
    single_a,
};

const BIG: &str = "big.default.svc.cluster.local.";

/// 17 AAAA records: 476 bytes of body, over 512 with header and question.
fn too_big_for_512() -> EntryDef {
    EntryDef::new(
        BIG,
        RecordType::AAAA,
        (0..17).map(|i| cluster_aaaa(BIG, i)).collect(),
    )
}

/// Flips the case of every other letter: what a 0x20-randomising client sends.
fn mixed_case(s: &str) -> String {
    s.chars()
        .enumerate()
        .map(|(i, c)| {
            if i % 2 == 0 {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect()
}

#[test]
fn answers_every_kind_over_ipv4_and_ipv6_with_and_without_edns() {
    let mut xdp = Harness::new();
    let defs = entry_kinds();
    for d in &defs {
        xdp.insert_entry(d);
    }
    let edns_variants = [
        None,
        Some(EdnsQ {
            size: 1232,
            dnssec_ok: true,
        }),
        Some(EdnsQ::size(4096)),
        Some(EdnsQ::size(100)),
    ];
    let mut parities = BTreeSet::new();
    let mut id = 1u16;
    for d in &defs {
        for v6 in [false, true] {
            for edns in edns_variants {
                for case in [false, true] {
                    let qname = d.qname.to_ascii();
                    let qname = if case { mixed_case(&qname) } else { qname };
                    id = id.wrapping_mul(31).wrapping_add(7);
                    let q = query_frame(v6, id, &qname, d.qtype, edns);
                    let before = xdp.counters();
                    let r = xdp.run(&q);
                    assert_eq!(
                        r.action,
                        XDP_TX,
                        "{qname} {:?} v6={v6} edns={edns:?}: counters {:?}",
                        d.qtype,
                        xdp.counters()
                    );
                    check_answer(&q, &r.out, d);
                    assert_eq!(
                        xdp.counters()[Counter::Hit as usize],
                        before[Counter::Hit as usize] + 1
                    );
                    parities.insert(qname.len() % 2);
                }
            }
        }
    }
    assert_eq!(
        parities.len(),
        2,
        "names of both length parities exercise the odd-offset checksum path"
    );
}

#[test]
fn ttl_never_exceeds_remaining_lifetime() {
    let mut xdp = Harness::new();
    let mut d = single_a("short.cluster.local.", 1);
    d.secs = 4;
    xdp.insert_entry(&d);
    let q = query_frame(false, 9, "short.cluster.local.", RecordType::A, None);
    let r = xdp.run(&q);
    assert_eq!(r.action, XDP_TX);
    // check_answer bounds by max_ttl; here the lifetime bounds tighter.
    d.max_ttl = 4;
    let msg = check_answer(&q, &r.out, &d);
    assert!(
        msg.answers[0].ttl <= 4 && msg.answers[0].ttl >= 2,
        "ttl {}",
        msg.answers[0].ttl
    );
}

#[test]
fn expired_and_missing_entries_pass() {
    let mut xdp = Harness::new();
    let d = single_a("old.cluster.local.", 1);
    let (k, mut e) = d.encode();
    e.expires_ns = boot_time_ns() - 1;
    xdp.insert(&k, &e);
    for (v6, name, qtype, reason) in [
        (false, "old.cluster.local.", RecordType::A, Counter::Expired),
        (true, "old.cluster.local.", RecordType::A, Counter::Expired),
        (false, "new.cluster.local.", RecordType::A, Counter::Miss),
        (false, "old.cluster.local.", RecordType::AAAA, Counter::Miss),
    ] {
        xdp.expect_pass(&query_frame(v6, 1, name, qtype, None), reason);
    }
}

#[test]
fn torn_or_corrupt_entries_pass() {
    let mut xdp = Harness::new();
    let d = EntryDef::new(
        "torn.cluster.local.",
        RecordType::A,
        vec![
            cluster_a("torn.cluster.local.", 1),
            cluster_a("torn.cluster.local.", 2),
        ],
    );
    let q = query_frame(false, 1, "torn.cluster.local.", RecordType::A, None);
    let (k, good) = d.encode();
    let mut bad: Vec<dns_common::AnswerEntry> = Vec::new();
    let mut e = good;
    e.body_len = 600;
    bad.push(e);
    let mut e = good;
    e.ttl_offsets[1] = e.body_len - 2;
    bad.push(e);
    let mut e = good;
    e.ttl_count = 40;
    bad.push(e);
    let mut e = good;
    e.ttl_offsets[1] = e.ttl_offsets[0] + 2;
    bad.push(e);
    for e in bad {
        xdp.insert(&k, &e);
        xdp.expect_pass(&q, Counter::PassInvalidEntry);
    }
    // A slot holding another question under this one's hash (a hash
    // collision, or an index value not whole): never its answer.
    let (other, _) = EntryDef::new(
        "tore.cluster.local.",
        RecordType::A,
        vec![cluster_a("tore.cluster.local.", 1)],
    )
    .encode();
    let mut slot = dns_common::AnswerSlot::zeroed();
    slot.key = other;
    slot.entry = good;
    xdp.insert_raw(good.key_hash, 7, &slot);
    xdp.expect_pass(&q, Counter::PassInvalidEntry);
    // This question, but the entry says another hash.
    slot.key = k;
    slot.entry.key_hash ^= 1;
    xdp.insert_raw(good.key_hash, 7, &slot);
    xdp.expect_pass(&q, Counter::PassInvalidEntry);
    let (index, _) = xdp.answers().maps_mut();
    index
        .insert(
            good.key_hash,
            dns_common::IndexValue { slot: 7, check: 7 },
            0,
        )
        .unwrap();
    xdp.expect_pass(&q, Counter::PassInvalidEntry);
    xdp.insert(&k, &good);
    assert_eq!(xdp.run(&q).action, XDP_TX);
}

#[test]
fn answers_that_do_not_fit_pass_as_too_big() {
    let (xdp, d) = harness_with(too_big_for_512());
    for (v6, edns) in [
        (false, None),
        (true, Some(EdnsQ::size(100))),
        (false, Some(EdnsQ::size(512))),
    ] {
        xdp.expect_pass(
            &query_frame(v6, 1, BIG, RecordType::AAAA, edns),
            Counter::PassTooBig,
        );
    }
    let q = query_frame(true, 1, BIG, RecordType::AAAA, Some(EdnsQ::size(1232)));
    assert_answered(&xdp, &q, &d);
}

/// A harness holding `d`'s entry, and `d`.
fn harness_with(d: EntryDef) -> (Harness, EntryDef) {
    let mut xdp = Harness::new();
    xdp.insert_entry(&d);
    (xdp, d)
}

/// The kernel answers `q` (XDP_TX), and the answer is right for `d`.
fn assert_answered(xdp: &Harness, q: &[u8], d: &EntryDef) {
    let r = xdp.run(q);
    assert_eq!(r.action, XDP_TX);
    check_answer(q, &r.out, d);
}

#[test]
fn disabled_config_passes_everything() {
    let (mut xdp, _) = harness_with(single_a("web.cluster.local.", 1));
    let mut cfg = default_config();
    cfg.enabled = 0;
    xdp.set_config(cfg);
    xdp.expect_pass(
        &query_frame(false, 1, "web.cluster.local.", RecordType::A, None),
        Counter::PassDisabled,
    );
}

/// A valid query's DNS payload for hand-made variations.
fn payload(qname: &str, qtype: RecordType, edns: Option<EdnsQ>) -> Vec<u8> {
    query_msg(0x4242, qname, qtype, edns).to_vec().unwrap()
}

fn frame(v6: bool, payload: &[u8]) -> Vec<u8> {
    let (c, s) = endpoints(v6);
    FrameSpec::udp(c, s).build(payload)
}

#[test]
fn every_pass_reason() {
    let qn = "web.default.svc.cluster.local.";
    let (xdp, _) = harness_with(single_a(qn, 10));
    let good = payload(qn, RecordType::A, None);
    let good_edns = payload(qn, RecordType::A, Some(EdnsQ::size(1232)));
    for v6 in [false, true] {
        let (c, s) = endpoints(v6);
        assert_eq!(
            xdp.run(&frame(v6, &good)).action,
            XDP_TX,
            "the base query must be answered"
        );

        // Not DNS for us.
        let mut spec = FrameSpec::udp(c, s);
        spec.proto = IPPROTO_TCP;
        xdp.expect_pass(&spec.build(&good), Counter::PassNotDns);
        let other_port = std::net::SocketAddr::new(s.ip(), 5353);
        xdp.expect_pass(
            &FrameSpec::udp(c, other_port).build(&good),
            Counter::PassNotDns,
        );
        let other_addr = std::net::SocketAddr::new(c.ip(), 53);
        xdp.expect_pass(
            &FrameSpec::udp(c, other_addr).build(&good),
            Counter::PassNotDns,
        );

        // Link and IP layer features the program does not parse.
        let mut spec = FrameSpec::udp(c, s);
        spec.vlan = Some(7);
        xdp.expect_pass(&spec.build(&good), Counter::PassVlan);
        let mut spec = FrameSpec::udp(c, s);
        if v6 {
            spec.hop_by_hop = true;
        } else {
            spec.ipv4_options = true;
        }
        xdp.expect_pass(&spec.build(&good), Counter::PassIpUnsupported);
        if !v6 {
            let mut spec = FrameSpec::udp(c, s);
            spec.more_fragments = true;
            xdp.expect_pass(&spec.build(&good), Counter::PassIpUnsupported);
        }

        // Malformed: truncated header and question, trailing bytes, UDP
        // length that disagrees with IP.
        xdp.expect_pass(&frame(v6, &good[..10]), Counter::PassMalformed);
        xdp.expect_pass(&frame(v6, &good[..good.len() - 3]), Counter::PassMalformed);
        xdp.expect_pass(&frame(v6, &good[..20]), Counter::PassMalformed);
        let mut trailing = good.clone();
        trailing.extend_from_slice(&[0, 0]);
        xdp.expect_pass(&frame(v6, &trailing), Counter::PassMalformed);
        let mut f = frame(v6, &good);
        let ulen = if v6 { 54 + 4 } else { 34 + 4 };
        f[ulen + 1] -= 1;
        xdp.expect_pass(&f, Counter::PassMalformed);
        let mut short_opt = good_edns.clone();
        short_opt.truncate(short_opt.len() - 2);
        xdp.expect_pass(&frame(v6, &short_opt), Counter::PassMalformed);

        if !v6 {
            let mut f = frame(v6, &good);
            f[14 + 10] ^= 0x01; // IPv4 header checksum
            xdp.expect_pass(&f, Counter::PassMalformed);
        }

        // Not a plain query: QR, opcode STATUS or TC set; QDCOUNT 2 or 0,
        // ANCOUNT or NSCOUNT 1.
        for (byte, bits) in [(2, 0x80), (2, 2 << 3), (2, 0x02)] {
            let mut p = good.clone();
            p[byte] |= bits;
            xdp.expect_pass(&frame(v6, &p), Counter::PassNotQuery);
        }
        for (byte, value) in [(5, 2), (5, 0), (7, 1), (9, 1)] {
            let mut p = good.clone();
            p[byte] = value;
            xdp.expect_pass(&frame(v6, &p), Counter::PassNotQuery);
        }

        // Class other than IN.
        let mut p = good.clone();
        let n = p.len();
        p[n - 1] = 3; // CH
        xdp.expect_pass(&frame(v6, &p), Counter::PassClass);

        // Names the kernel does not take.
        let mut p = good[..12].to_vec();
        p.extend_from_slice(&[3, b'w', b'e', b'b', 0xc0, 12, 0, 1, 0, 1]);
        xdp.expect_pass(&frame(v6, &p), Counter::PassName);
        let long = format!(
            "{}.cluster.local.",
            ["abcdefghijklmnopqrstuvwxyz0123456789"; 4].join(".")
        );
        xdp.expect_pass(
            &frame(v6, &payload(&long, RecordType::A, None)),
            Counter::PassName,
        );
        let mut p = good[..12].to_vec();
        p.extend_from_slice(&[0x41, b'x', 0, 0, 1, 0, 1]); // extended label type
        xdp.expect_pass(&frame(v6, &p), Counter::PassName);

        // EDNS the kernel does not handle.
        let mut p = good_edns.clone();
        p[11] = 2; // ARCOUNT 2
        xdp.expect_pass(&frame(v6, &p), Counter::PassEdns);
        let mut msg = query_msg(0x4242, qn, RecordType::A, Some(EdnsQ::size(1232)));
        let mut edns = msg.edns.clone().unwrap();
        edns.options_mut()
            .insert(hickory_proto::rr::rdata::opt::EdnsOption::Unknown(
                12, // padding; a lone COOKIE is answered (see dns_cookies_*)
                vec![0; 8],
            ));
        msg.set_edns(edns);
        xdp.expect_pass(&frame(v6, &msg.to_vec().unwrap()), Counter::PassEdns);
        let mut p = good_edns.clone();
        let n = p.len();
        p[n - 5] = 1; // EDNS version 1
        xdp.expect_pass(&frame(v6, &p), Counter::PassEdns);
        let mut p = good_edns.clone();
        let n = p.len();
        p[n - 9] = 1; // OPT owner not root: 0x01 then the type's first byte
        xdp.expect_pass(&frame(v6, &p), Counter::PassEdns);
        let mut p = good.clone();
        p[11] = 1; // one additional that is an A record, not OPT
        p.extend_from_slice(&[0, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4, 1, 2, 3, 4]);
        xdp.expect_pass(&frame(v6, &p), Counter::PassEdns);
    }
    // Not IP at all.
    let mut arp = frame(false, &good);
    arp[12] = 0x08;
    arp[13] = 0x06;
    xdp.expect_pass(&arp, Counter::PassNotDns);
    // Shorter than an Ethernet header: BPF_PROG_TEST_RUN itself refuses
    // those, so the program's own check is covered by the fuzz test only.
}

#[test]
fn ethernet_padding_is_dropped_from_the_answer() {
    let (xdp, d) = harness_with(single_a("p.cluster.local.", 1));
    let (c, s) = endpoints(false);
    let mut spec = FrameSpec::udp(c, s);
    spec.eth_padding = 20;
    let q = spec.build(&payload("p.cluster.local.", RecordType::A, None));
    let r = xdp.run(&q);
    assert_eq!(r.action, XDP_TX);
    let mut unpadded = q.clone();
    unpadded.truncate(q.len() - 20);
    check_answer(&unpadded, &r.out, &d);
}

#[test]
fn a_full_entry_is_served_whole() {
    // 32 A records (the TTL limit) make a 512-byte body (the body limit).
    let mut xdp = Harness::new();
    let owner = "many.default.svc.cluster.local.";
    let d = EntryDef::new(
        owner,
        RecordType::A,
        (0..32).map(|i| cluster_a(owner, i)).collect(),
    );
    let (k, e) = d.encode();
    assert_eq!((e.body_len, e.ttl_count), (512, 32));
    xdp.insert(&k, &e);
    for v6 in [false, true] {
        let q = query_frame(v6, 77, owner, RecordType::A, Some(EdnsQ::size(1232)));
        let r = xdp.run(&q);
        assert_eq!(r.action, XDP_TX, "counters {:?}", xdp.counters());
        check_answer(&q, &r.out, &d);
    }
}

/// RFC 7873 section 5.2: a server without cookie support ignores a COOKIE
/// and answers normally, without a COOKIE of its own. dig sends one by
/// default, so this is what keeps plain `dig` in the kernel.
#[test]
fn dns_cookies_are_ignored_and_answered() {
    let qn = "web.default.svc.cluster.local.";
    let (xdp, d) = harness_with(single_a(qn, 10));
    let edns = EdnsQ::size(1232);
    let qn_mixed = mixed_case(qn);
    for v6 in [false, true] {
        // Client cookie alone, and with server cookies of 8..=32 bytes;
        // the query frame is longer than the answer for some of them.
        for len in [8, 16, 17, 24, 40] {
            let q = query_frame_with_options(
                v6,
                0x1234,
                &qn_mixed,
                RecordType::A,
                edns,
                &[cookie(len)],
            );
            let before = xdp.counters()[Counter::Hit as usize];
            let r = xdp.run(&q);
            assert_eq!(
                r.action,
                XDP_TX,
                "cookie of {len} bytes, v6={v6}: counters {:?}",
                xdp.counters()
            );
            let msg = check_answer(&q, &r.out, &d);
            assert!(msg.edns.is_some(), "the answer carries our OPT");
            assert_eq!(xdp.counters()[Counter::Hit as usize], before + 1);
        }
        // Malformed cookie lengths.
        for len in [0, 1, 7, 9, 15, 41, 64] {
            let q = query_frame_with_options(v6, 0x1234, qn, RecordType::A, edns, &[cookie(len)]);
            xdp.expect_pass(&q, Counter::PassEdns);
        }
        // A cookie with another option, in either order, and two cookies.
        let padding = (12u16, vec![0u8; 4]);
        let subnet = (8u16, vec![0, 1, 24, 0, 10, 0, 0]);
        for opts in [
            vec![cookie(8), padding.clone()],
            vec![padding.clone(), cookie(8)],
            vec![cookie(16), subnet.clone()],
            vec![cookie(8), cookie(8)],
            vec![subnet],
        ] {
            let q = query_frame_with_options(v6, 0x1234, qn, RecordType::A, edns, &opts);
            xdp.expect_pass(&q, Counter::PassEdns);
        }
        // RDLENGTH disagreeing with the cookie's own length, and shorter
        // than an option header.
        let q = query_frame_with_options(v6, 0x1234, qn, RecordType::A, edns, &[cookie(8)]);
        let n = q.len();
        let (rdlen, olen) = (n - 8 - 4 - 2, n - 8 - 2);
        assert_eq!(u16::from_be_bytes([q[rdlen], q[rdlen + 1]]), 12);
        assert_eq!(u16::from_be_bytes([q[olen], q[olen + 1]]), 8);
        let mut p = q.clone();
        p[olen + 1] = 16; // says 16, carries 8
        xdp.expect_pass(&p, Counter::PassEdns);
        let mut p = q.clone();
        p[rdlen + 1] = 3; // RDLENGTH 3, then 9 trailing bytes
        xdp.expect_pass(&p, Counter::PassEdns);
        // A cookie cut short: the datagram ends inside the option.
        let good = payload(qn, RecordType::A, Some(edns));
        let mut p = good.clone();
        let n = p.len();
        p[n - 1] = 12; // RDLENGTH 12, nothing follows
        xdp.expect_pass(&frame(v6, &p), Counter::PassMalformed);
        p.extend_from_slice(&[0, 10, 0, 8, 1, 2, 3]);
        xdp.expect_pass(&frame(v6, &p), Counter::PassMalformed);
    }
}

#[test]
fn a_cookie_query_too_big_for_the_answer_still_passes_as_too_big() {
    // The query's cookie makes it longer but the limit is the client's size.
    let (xdp, d) = harness_with(too_big_for_512());
    let small = EdnsQ::size(512);
    let q = query_frame_with_options(false, 1, BIG, RecordType::AAAA, small, &[cookie(24)]);
    xdp.expect_pass(&q, Counter::PassTooBig);
    let large = EdnsQ::size(1232);
    let q = query_frame_with_options(true, 1, BIG, RecordType::AAAA, large, &[cookie(40)]);
    assert_answered(&xdp, &q, &d);
}

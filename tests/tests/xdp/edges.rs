//! The XDP program at the edges of what it parses, through
//! `BPF_PROG_TEST_RUN`.
//!
//! Name lengths: for every wire length from 1 to 255 bytes and every query
//! type in the map, an answer echoes the question as sent and carries only
//! records of the asked type and class IN; anything else is passed
//! untouched. Some names start with the bytes of a query type in the map
//! followed by class IN (`03 'a' 00 01`), so a parser that read type and
//! class from the wrong offset would find a real entry and answer with it.

use std::net::{Ipv4Addr, Ipv6Addr};

use dns_common::{Counter, MAX_NAME_LEN};
use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::rdata::{A, AAAA, NULL, TXT};
use hickory_proto::rr::{DNSClass, Label, Name, RData, Record, RecordType};
use nodedns_tests::frames::{FrameSpec, parse_udp};
use nodedns_tests::xdp::{
    EntryDef, Harness, Layout, MAX_WIRE_NAME, Run, TYPE_LIKE_QTYPE, XDP_PASS, XDP_TX, check_answer,
    endpoints, name_of_len,
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
    let labels: Vec<Label> = name
        .iter()
        .map(|l| {
            let bytes: Vec<u8> = l
                .iter()
                .enumerate()
                .map(|(i, b)| {
                    if i % 2 == 1 {
                        b.to_ascii_uppercase()
                    } else {
                        *b
                    }
                })
                .collect();
            Label::from_raw_bytes(&bytes).unwrap()
        })
        .collect();
    let mut n = Name::from_labels(labels).unwrap();
    n.set_fqdn(true);
    n
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

//! Whether an answer frame is exactly what an entry says, for the query it
//! answers.

use std::net::{IpAddr, SocketAddr};

use dns_common::EDNS_UDP_SIZE;
use hickory_proto::op::{Message, MessageType, OpCode};
use hickory_proto::rr::Record;
use hickory_proto::rr::rdata::opt::EdnsOption;

use super::entry::EntryDef;
use super::query::OPT_COOKIE;
use crate::frames::{FrameSpec, UdpFrame, parse_udp};

/// Checks `out` is a well-formed answer to `query_frame` carrying exactly
/// `def`'s records; returns the parsed answer message.
pub fn check_answer(query_frame: &[u8], out: &[u8], def: &EntryDef) -> Message {
    let q = parse_query_frame(query_frame);
    let a = parse_udp(out).unwrap_or_else(|e| panic!("answer frame is broken: {e}"));
    assert_eq!(a.src, q.dst, "answer must come from the address queried");
    assert_eq!(a.dst, q.src, "answer must go back to the client");
    assert_eq!(a.dst_mac, q.src_mac);
    assert_eq!(a.src_mac, q.dst_mac);
    let query = Message::from_vec(&q.payload).unwrap();
    let msg =
        Message::from_vec(&a.payload).unwrap_or_else(|e| panic!("answer does not parse: {e}"));
    let md = &msg.metadata;
    assert_eq!(md.id, query.metadata.id);
    assert_eq!(md.message_type, MessageType::Response);
    assert_eq!(md.op_code, OpCode::Query);
    assert_eq!(md.authoritative, def.authoritative);
    assert!(!md.truncation);
    assert_eq!(md.recursion_desired, query.metadata.recursion_desired);
    assert_eq!(md.checking_disabled, query.metadata.checking_disabled);
    assert!(md.recursion_available);
    assert!(!md.authentic_data);
    assert_eq!(md.response_code, def.sections.rcode);
    // The question is echoed byte for byte (0x20 case preserved).
    let qlen = wire_name_len(&q.payload) + 4;
    assert_eq!(&a.payload[12..12 + qlen], &q.payload[12..12 + qlen]);
    assert_eq!(msg.queries.len(), 1);
    assert_eq!(
        msg.queries[0].name().to_string(),
        query.queries[0].name().to_string()
    );
    // One TTL for the whole entry: its lifetime, capped by the smallest
    // record TTL and the entry's max_ttl.
    let all = def
        .sections
        .answers
        .iter()
        .chain(&def.sections.authority)
        .chain(&def.sections.additionals);
    let bound = all.map(|r| r.ttl).fold(def.max_ttl, u32::min);
    check_section("answer", &msg.answers, &def.sections.answers, bound);
    check_section(
        "authority",
        &msg.authorities,
        &def.sections.authority,
        bound,
    );
    check_section(
        "additional",
        &msg.additionals,
        &def.sections.additionals,
        bound,
    );
    match (&query.edns, &msg.edns) {
        (None, None) => {}
        (Some(qe), Some(e)) => {
            let options: Vec<(u16, Vec<u8>)> = qe
                .options()
                .as_ref()
                .iter()
                .map(|(code, o)| match o {
                    EdnsOption::Unknown(c, d) => (*c, d.clone()),
                    other => (u16::from(*code), vec![0; other.len() as usize]),
                })
                .collect();
            assert!(
                answerable_options(&options),
                "answered a query with EDNS options other than one valid COOKIE: {options:?}"
            );
            assert_eq!(e.max_payload(), EDNS_UDP_SIZE);
            assert_eq!(e.version(), 0);
            assert_eq!(
                e.flags().dnssec_ok,
                qe.flags().dnssec_ok,
                "the query's DO bit is copied (RFC 3225 section 3)"
            );
            assert!(
                e.options().as_ref().is_empty(),
                "no EDNS options in answers"
            );
            assert_eq!(e.rcode_high(), 0);
        }
        (q, a) => panic!("EDNS mismatch: query {q:?}, answer {a:?}"),
    }
    let limit = query
        .edns
        .as_ref()
        .map_or(512, |e| e.max_payload().clamp(512, EDNS_UDP_SIZE) as usize);
    assert!(
        a.payload.len() <= limit,
        "answer of {} bytes exceeds {limit}",
        a.payload.len()
    );
    msg
}

fn check_section(what: &str, got: &[Record], want: &[Record], bound: u32) {
    assert_eq!(got.len(), want.len(), "{what} section record count");
    for (g, w) in got.iter().zip(want) {
        assert!(g.name == w.name, "{what} owner {} vs {}", g.name, w.name);
        assert_eq!(g.record_type(), w.record_type(), "{what} type");
        assert_eq!(g.data, w.data, "{what} data");
        assert!(
            g.ttl <= bound && g.ttl + 2 >= bound,
            "{what} TTL {} not within ({bound}-2..={bound})",
            g.ttl
        );
    }
}

/// Whether the kernel may answer a query carrying these EDNS options: none,
/// or exactly one COOKIE of a valid length, which it ignores.
fn answerable_options(options: &[(u16, Vec<u8>)]) -> bool {
    match options {
        [] => true,
        [(OPT_COOKIE, data)] => data.len() == 8 || (16..=40).contains(&data.len()),
        _ => false,
    }
}

/// Wire length of the name starting at `msg[12]`: the question echoed
/// in the answer is that plus type and class.
fn wire_name_len(msg: &[u8]) -> usize {
    let mut p = 12;
    while msg[p] != 0 {
        p += 1 + msg[p] as usize;
    }
    p + 1 - 12
}

/// The query frames the tests build are always valid; parse with a full
/// checksum so `parse_udp` accepts them.
fn parse_query_frame(frame: &[u8]) -> UdpFrame {
    let mut fixed = frame.to_vec();
    let l4 = if fixed[12..14] == [0x08, 0x00] {
        34
    } else {
        54
    };
    let (s, d): (IpAddr, IpAddr) = if l4 == 34 {
        (
            <[u8; 4]>::try_from(&fixed[26..30]).unwrap().into(),
            <[u8; 4]>::try_from(&fixed[30..34]).unwrap().into(),
        )
    } else {
        (
            <[u8; 16]>::try_from(&fixed[22..38]).unwrap().into(),
            <[u8; 16]>::try_from(&fixed[38..54]).unwrap().into(),
        )
    };
    let sport = u16::from_be_bytes([fixed[l4], fixed[l4 + 1]]);
    let dport = u16::from_be_bytes([fixed[l4 + 2], fixed[l4 + 3]]);
    let ip_end = if l4 == 34 {
        14 + u16::from_be_bytes([fixed[16], fixed[17]]) as usize
    } else {
        54 + u16::from_be_bytes([fixed[18], fixed[19]]) as usize
    };
    fixed.truncate(ip_end);
    let payload = fixed[l4 + 8..].to_vec();
    let mut spec = FrameSpec::udp(SocketAddr::new(s, sport), SocketAddr::new(d, dport));
    spec.full_udp_checksum = true;
    let mut p = parse_udp(&spec.build(&payload)).unwrap();
    p.dst_mac = frame[0..6].try_into().unwrap();
    p.src_mac = frame[6..12].try_into().unwrap();
    p
}

//! The wire side of the resolver's fast path (docs/design.md#the-userspace-fast-path):
//! a plain query read in place, without building a message, and answers
//! kept encoded, written back with the query's ID, flags, question case,
//! EDNS and aged TTLs patched in.
//!
//! Anything this reader does not accept goes the full way through
//! [`super::handler::Handler::handle`], which answers it exactly as before;
//! so the reader only has to be right about what it accepts.

use hickory_proto::op::{Message, OpCode, Query};
use hickory_proto::rr::{LowerName, RecordType};

use crate::answer::AnswerSections;
use dns_common::EDNS_UDP_SIZE;

/// Longest wire name (RFC 1035 section 2.3.4).
const MAX_NAME: usize = 255;
/// A key: the lower-case wire name, then the query type.
const MAX_KEY: usize = MAX_NAME + 2;
const HEADER: usize = 12;
/// Size limit of a UDP answer to a client without EDNS (RFC 1035).
const PLAIN_UDP_SIZE: usize = 512;
/// Length of our OPT record: root name, type, class, TTL, RDLENGTH.
const OPT_LEN: usize = 11;
const TYPE_OPT: u16 = 41;
/// EDNS Client Subnet, whose content the full parser checks.
const OPTION_ECS: u16 = 8;

/// The lower-case wire name and type of a question: the key of the
/// resolver's caches, built without a message.
#[derive(Clone)]
pub struct KeyBuf {
    bytes: [u8; MAX_KEY],
    len: usize,
}

impl KeyBuf {
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl Default for KeyBuf {
    fn default() -> Self {
        Self {
            bytes: [0; MAX_KEY],
            len: 0,
        }
    }
}

/// The key of (`name`, `qtype`), as [`parse`] builds it from a query.
pub fn key_of(name: &LowerName, qtype: RecordType) -> Box<[u8]> {
    let mut key = Vec::with_capacity(name.len() + 3);
    for label in name.iter() {
        key.push(label.len() as u8);
        key.extend_from_slice(label);
    }
    key.push(0);
    key.extend_from_slice(&u16::from(qtype).to_be_bytes());
    key.into_boxed_slice()
}

/// What the query's OPT record says.
#[derive(Clone, Copy)]
pub struct QueryEdns {
    pub payload: u16,
    pub dnssec_ok: bool,
}

/// A plain query as the fast path sees it.
pub struct Question<'a> {
    pub id: u16,
    /// The header's RD and CD bits, echoed in the response.
    flags: (bool, bool),
    /// The question name as sent (wire labels).
    pub qname: &'a [u8],
    pub qtype: u16,
    pub edns: Option<QueryEdns>,
}

impl Question<'_> {
    /// Largest UDP response the client takes (as the full path sizes it).
    pub fn udp_limit(&self) -> usize {
        self.edns.map_or(PLAIN_UDP_SIZE, |e| {
            (e.payload as usize).clamp(PLAIN_UDP_SIZE, EDNS_UDP_SIZE as usize)
        })
    }
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

/// Reads `query` if it is a plain one: a standard query (QR=0, opcode 0,
/// no TC) with one question of class IN and a type that is neither a
/// meta type nor OPT, nothing else but at most one well-formed OPT record
/// of version 0, and no trailing bytes. Fills `key` with its cache key.
/// None sends the query the full way.
pub fn parse<'a>(query: &'a [u8], key: &mut KeyBuf) -> Option<Question<'a>> {
    let flags = u16_at(query, 2)?;
    // QR, opcode and TC must be zero.
    if flags & 0xfa00 != 0 {
        return None;
    }
    let counts = (
        u16_at(query, 4)?,
        u16_at(query, 6)?,
        u16_at(query, 8)?,
        u16_at(query, 10)?,
    );
    let additional = match counts {
        (1, 0, 0, ar @ (0 | 1)) => ar,
        _ => return None,
    };
    let mut pos = HEADER;
    loop {
        let len = *query.get(pos)? as usize;
        if len & 0xc0 != 0 || pos - HEADER + 1 + len > MAX_NAME {
            return None; // a pointer or an extended label type, or too long
        }
        let label = query.get(pos + 1..pos + 1 + len)?;
        let at = pos - HEADER;
        key.bytes[at] = len as u8;
        for (k, b) in key.bytes[at + 1..at + 1 + len].iter_mut().zip(label) {
            *k = b.to_ascii_lowercase();
        }
        pos += 1 + len;
        if len == 0 {
            break;
        }
    }
    let qname = &query[HEADER..pos];
    let qtype = u16_at(query, pos)?;
    let qclass = u16_at(query, pos + 2)?;
    // Class IN; type 0, OPT and the meta types (IXFR, AXFR, MAILB, MAILA,
    // ANY) have answers of their own.
    if qclass != 1 || qtype == 0 || qtype == TYPE_OPT || (251..=255).contains(&qtype) {
        return None;
    }
    key.bytes[qname.len()..qname.len() + 2].copy_from_slice(&qtype.to_be_bytes());
    key.len = qname.len() + 2;
    pos += 4;
    let edns = if additional == 1 {
        Some(parse_opt(query, pos)?)
    } else if pos == query.len() {
        None
    } else {
        return None;
    };
    Some(Question {
        id: u16::from_be_bytes([query[0], query[1]]),
        flags: (flags & 0x0100 != 0, flags & 0x0010 != 0),
        qname,
        qtype,
        edns,
    })
}

/// The OPT record at `pos`, which must end the query: root owner, version
/// 0, no extended rcode, options well-formed (ECS, which the full parser
/// checks in depth, sends the query the full way).
fn parse_opt(query: &[u8], pos: usize) -> Option<QueryEdns> {
    if *query.get(pos)? != 0 || u16_at(query, pos + 1)? != TYPE_OPT {
        return None;
    }
    let payload = u16_at(query, pos + 3)?;
    let (ext_rcode, version) = (*query.get(pos + 5)?, *query.get(pos + 6)?);
    let flags = u16_at(query, pos + 7)?;
    let rdlen = u16_at(query, pos + 9)? as usize;
    if ext_rcode != 0 || version != 0 || pos + OPT_LEN + rdlen != query.len() {
        return None;
    }
    let mut at = pos + OPT_LEN;
    while at < query.len() {
        let (code, len) = (u16_at(query, at)?, u16_at(query, at + 2)? as usize);
        if code == OPTION_ECS {
            return None;
        }
        at += 4 + len;
    }
    (at == query.len()).then_some(QueryEdns {
        payload,
        dnssec_ok: flags & 0x8000 != 0,
    })
}

/// An encoded response kept for reuse: the question in lower case, ID 0,
/// no OPT record; where each record's TTL sits.
#[derive(Debug)]
pub struct WireAnswer {
    bytes: Box<[u8]>,
    qname_len: usize,
    /// (offset, TTL as stored) of every record.
    ttls: Box<[(u16, u32)]>,
}

impl WireAnswer {
    /// The response to (`name`, `qtype`) with `sections`, authoritative if
    /// `aa`; None if it cannot be kept so (an rcode that needs EDNS, or an
    /// encoding error), and the full path answers.
    pub fn encode(
        name: &LowerName,
        qtype: RecordType,
        sections: AnswerSections,
        aa: bool,
    ) -> Option<Self> {
        if u16::from(sections.rcode) > 0x0f {
            return None;
        }
        let mut reply = Message::response(0, OpCode::Query);
        reply.metadata.recursion_available = true;
        reply.metadata.authoritative = aa;
        reply.add_query(Query::query((**name).clone(), qtype));
        sections.write_to(&mut reply);
        let bytes = reply.to_vec().ok()?;
        // The wire length: each label with its length byte, then the root.
        let qname_len = name.iter().map(|l| l.len() + 1).sum::<usize>() + 1;
        let ttls = ttl_offsets(&bytes, HEADER + qname_len + 4)?;
        Some(Self {
            bytes: bytes.into_boxed_slice(),
            qname_len,
            ttls,
        })
    }

    /// Writes the response to `q` into `out`: its ID, RD and CD bits and
    /// question spelling, each TTL at most `ttl_cap`, our OPT record if it
    /// had one. False (and `out` unspecified) when that does not fit the
    /// client's UDP limit: the full path then sizes it.
    pub fn write(&self, q: &Question, ttl_cap: Option<u32>, out: &mut Vec<u8>) -> bool {
        if q.qname.len() != self.qname_len {
            return false;
        }
        let len = self.bytes.len() + q.edns.map_or(0, |_| OPT_LEN);
        if len > q.udp_limit() {
            return false;
        }
        out.clear();
        out.extend_from_slice(&self.bytes);
        out[..2].copy_from_slice(&q.id.to_be_bytes());
        let (rd, cd) = q.flags;
        out[2] = (out[2] & !0x01) | u8::from(rd);
        out[3] = (out[3] & !0x10) | (u8::from(cd) << 4);
        out[HEADER..HEADER + self.qname_len].copy_from_slice(q.qname);
        for &(at, ttl) in self.ttls.iter() {
            let ttl = ttl_cap.map_or(ttl, |cap| ttl.min(cap));
            out[at as usize..at as usize + 4].copy_from_slice(&ttl.to_be_bytes());
        }
        if let Some(edns) = q.edns {
            // Our OPT record: 1232 bytes, the query's DO bit (RFC 3225
            // section 3), as the full path's.
            let arcount = u16::from_be_bytes([out[10], out[11]]) + 1;
            out[10..12].copy_from_slice(&arcount.to_be_bytes());
            out.push(0);
            out.extend_from_slice(&TYPE_OPT.to_be_bytes());
            out.extend_from_slice(&EDNS_UDP_SIZE.to_be_bytes());
            out.extend_from_slice(&[0, 0, if edns.dnssec_ok { 0x80 } else { 0 }, 0, 0, 0]);
        }
        true
    }
}

/// Where the TTL of every record after `start` (the end of the question)
/// sits in `msg`.
fn ttl_offsets(msg: &[u8], start: usize) -> Option<Box<[(u16, u32)]>> {
    let records = [6, 8, 10]
        .iter()
        .map(|&at| u16_at(msg, at).map(usize::from))
        .sum::<Option<usize>>()?;
    let mut out = Vec::with_capacity(records);
    let mut pos = start;
    for _ in 0..records {
        pos = skip_name(msg, pos)?;
        let ttl_at = pos + 4;
        let ttl = u32::from_be_bytes(msg.get(ttl_at..ttl_at + 4)?.try_into().ok()?);
        let rdlen = u16_at(msg, pos + 8)? as usize;
        out.push((u16::try_from(ttl_at).ok()?, ttl));
        pos += 10 + rdlen;
    }
    (pos == msg.len()).then(|| out.into_boxed_slice())
}

fn skip_name(msg: &[u8], mut pos: usize) -> Option<usize> {
    loop {
        let len = *msg.get(pos)? as usize;
        match len & 0xc0 {
            0 if len == 0 => return Some(pos + 1),
            0 => pos += 1 + len,
            0xc0 => return Some(pos + 2),
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{Edns, MessageType, ResponseCode};
    use hickory_proto::rr::rdata::A;
    use hickory_proto::rr::{Name, RData, Record};

    fn query(name: &str, qtype: RecordType, edns: Option<(u16, bool)>) -> Vec<u8> {
        let mut m = Message::new(0x1234, MessageType::Query, OpCode::Query);
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
        if let Some((payload, dnssec_ok)) = edns {
            let mut e = Edns::new();
            e.set_max_payload(payload);
            e.set_dnssec_ok(dnssec_ok);
            m.set_edns(e);
        }
        m.to_vec().unwrap()
    }

    fn lower(name: &str) -> LowerName {
        LowerName::new(&Name::from_ascii(name).unwrap())
    }

    #[test]
    fn key_from_the_wire_matches_key_of_the_name() {
        let mut key = KeyBuf::default();
        let q = query("WwW.Example.COM.", RecordType::AAAA, None);
        let parsed = parse(&q, &mut key).unwrap();
        assert_eq!(parsed.id, 0x1234);
        assert_eq!(
            key.as_bytes(),
            &*key_of(&lower("www.example.com."), RecordType::AAAA)
        );
    }

    #[test]
    fn only_plain_queries_are_read() {
        let mut key = KeyBuf::default();
        let plain = query("a.example.", RecordType::A, Some((4096, true)));
        let e = parse(&plain, &mut key).unwrap().edns.unwrap();
        assert!(e.dnssec_ok && e.payload == 4096);
        assert!(parse(&query("a.example.", RecordType::ANY, None), &mut key).is_none());
        assert!(parse(&query("a.example.", RecordType::AXFR, None), &mut key).is_none());
        let mut trailing = query("a.example.", RecordType::A, None);
        trailing.push(0);
        assert!(parse(&trailing, &mut key).is_none());
        let mut response = query("a.example.", RecordType::A, None);
        response[2] |= 0x80;
        assert!(parse(&response, &mut key).is_none());
        let mut badvers = plain.clone();
        let at = badvers.len() - 5;
        badvers[at] = 1;
        assert!(parse(&badvers, &mut key).is_none());
        for cut in 0..plain.len() {
            assert!(parse(&plain[..cut], &mut key).is_none(), "cut at {cut}");
        }
    }

    #[test]
    fn written_answer_is_the_query_s_response() {
        let name = lower("a.example.");
        let mut sections = AnswerSections::new(ResponseCode::NoError);
        sections.answers.push(Record::from_rdata(
            (*name).clone(),
            300,
            RData::A(A::new(192, 0, 2, 1)),
        ));
        let wire = WireAnswer::encode(&name, RecordType::A, sections, false).unwrap();
        let q = query("A.eXample.", RecordType::A, Some((1232, true)));
        let mut key = KeyBuf::default();
        let parsed = parse(&q, &mut key).unwrap();
        let mut out = Vec::new();
        assert!(wire.write(&parsed, Some(20), &mut out));
        let m = Message::from_vec(&out).unwrap();
        assert_eq!(m.metadata.id, 0x1234);
        assert!(m.metadata.recursion_desired && m.metadata.recursion_available);
        assert!(!m.metadata.checking_disabled);
        assert_eq!(m.queries[0].name().to_ascii(), "A.eXample.");
        // The owner is a pointer to the question: it follows its case.
        assert_eq!(m.answers[0].name.to_ascii(), "A.eXample.");
        assert_eq!(m.answers[0].ttl, 20);
        let edns = m.edns.unwrap();
        assert!(edns.flags().dnssec_ok);
        assert_eq!(edns.max_payload(), EDNS_UDP_SIZE);
        let plain = query("a.example.", RecordType::A, None);
        let parsed = parse(&plain, &mut key).unwrap();
        assert!(wire.write(&parsed, None, &mut out));
        let m = Message::from_vec(&out).unwrap();
        assert_eq!(m.answers[0].ttl, 300);
        assert!(m.edns.is_none());
    }
}

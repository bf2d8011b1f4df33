//! Encodes a resolved answer into the kernel's map layout ([`AnswerKey`],
//! [`AnswerEntry`]) and decodes it back (for `dns-agent inspect` and for the
//! entries a previous agent left).
//!
//! The body is encoded as it will sit in the kernel's response: right after
//! a question equal (up to case) to the key's name at offset 12. Names are
//! compressed against the question and the earlier records, so pointers
//! stay valid whatever case the client used: the kernel echoes the
//! client's question, whose labels have the same lengths.

use dns_common::hash::{key_hash, ones_sum};
use dns_common::{
    AnswerEntry, AnswerKey, ENTRY_FLAG_AUTHORITATIVE, MAX_BODY_LEN, MAX_NAME_LEN, MAX_TTLS,
};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RecordType};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};

use crate::answer::AnswerSections;
pub use crate::kernel::clock::boot_time_ns;

/// DNS header length: the question starts right after it.
const HEADER_LEN: usize = 12;
const NS_PER_SEC: u64 = 1_000_000_000;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EncodeError {
    #[error("name {name} is {len} bytes in wire format; the kernel answers names up to {max}")]
    NameTooLong {
        name: String,
        len: usize,
        max: usize,
    },
    #[error("answer body is {len} bytes; a kernel entry holds at most {max}")]
    BodyTooLarge { len: usize, max: usize },
    #[error("answer has {count} records; a kernel entry holds at most {max}")]
    TooManyRecords { count: usize, max: usize },
    #[error("response code {0} cannot be served by the kernel (only NOERROR and NXDOMAIN)")]
    UnsupportedRcode(ResponseCode),
    #[error("record type {0} cannot go into a kernel entry (the kernel adds OPT itself)")]
    UnsupportedRecord(RecordType),
    #[error("entry is corrupt: {0}")]
    Corrupt(&'static str),
    #[error("DNS encoding failed: {0}")]
    Encode(String),
}

/// What the resolver wants the kernel to answer for (`qname`, `qtype`).
pub struct EntrySpec<'a> {
    pub qname: &'a Name,
    pub qtype: RecordType,
    /// The rcode (NoError or NXDomain only) and the records.
    pub sections: &'a AnswerSections,
    pub authoritative: bool,
    /// Upper bound of every served TTL; the records' own TTLs bound it too.
    pub max_ttl: u32,
    /// `CLOCK_BOOTTIME` nanoseconds ([`boot_time_ns`]) after which the
    /// kernel must stop serving the entry.
    pub expires_boot_ns: u64,
    /// A fresh value per update (torn-read detection).
    pub generation: u64,
}

/// An entry read back from the map.
#[derive(Debug, Clone)]
pub struct DecodedEntry {
    pub name: Name,
    pub qtype: RecordType,
    /// Records with the TTL the kernel would serve now.
    pub sections: AnswerSections,
    pub authoritative: bool,
    pub max_ttl: u32,
    pub expires_boot_ns: u64,
}

/// The map key of a question: lower-cased wire name and type.
pub fn key_for(qname: &Name, qtype: RecordType) -> Result<AnswerKey, EncodeError> {
    let wire = lower_wire_name(qname)?;
    let mut key = AnswerKey::zeroed();
    key.qtype = u16::from(qtype);
    key.name_len = wire.len() as u16;
    key.name[..wire.len()].copy_from_slice(&wire);
    Ok(key)
}

fn lower_wire_name(qname: &Name) -> Result<Vec<u8>, EncodeError> {
    let mut lower = qname.to_lowercase();
    lower.set_fqdn(true);
    let wire = lower
        .to_bytes()
        .map_err(|e| EncodeError::Encode(e.to_string()))?;
    if wire.len() > MAX_NAME_LEN {
        return Err(EncodeError::NameTooLong {
            name: qname.to_string(),
            len: wire.len(),
            max: MAX_NAME_LEN,
        });
    }
    Ok(wire)
}

/// Builds the key and the entry for `spec`: checks it fits a kernel entry,
/// writes the body as the kernel will send it, then fills in the entry.
pub fn encode(spec: &EntrySpec<'_>) -> Result<(AnswerKey, AnswerEntry), EncodeError> {
    let rcode = check(spec.sections)?;
    let key = key_for(spec.qname, spec.qtype)?;
    let body = Body::write(spec)?;
    if body.bytes.len() > MAX_BODY_LEN {
        return Err(EncodeError::BodyTooLarge {
            len: body.bytes.len(),
            max: MAX_BODY_LEN,
        });
    }
    Ok((key, entry(&key, spec, rcode, &body)))
}

/// The wire rcode, once the sections are known to fit a kernel entry.
fn check(sections: &AnswerSections) -> Result<u8, EncodeError> {
    let rcode = match sections.rcode {
        ResponseCode::NoError | ResponseCode::NXDomain => u16::from(sections.rcode) as u8,
        other => return Err(EncodeError::UnsupportedRcode(other)),
    };
    let records = sections.record_count();
    if records > MAX_TTLS {
        return Err(EncodeError::TooManyRecords {
            count: records,
            max: MAX_TTLS,
        });
    }
    if let Some(r) = sections.records().find(|r| {
        matches!(
            r.record_type(),
            RecordType::OPT | RecordType::TSIG | RecordType::SIG
        )
    }) {
        return Err(EncodeError::UnsupportedRecord(r.record_type()));
    }
    Ok(rcode)
}

/// The records as the kernel sends them after the question, with where
/// each TTL sits (the kernel writes the remaining TTL there).
struct Body {
    bytes: Vec<u8>,
    ttl_offsets: Vec<usize>,
}

impl Body {
    /// Encodes header and question first (only to compress names against
    /// the question), then keeps what follows them.
    fn write(spec: &EntrySpec<'_>) -> Result<Self, EncodeError> {
        let enc_err = |e: hickory_proto::ProtoError| EncodeError::Encode(e.to_string());
        let mut buf = Vec::with_capacity(HEADER_LEN + MAX_NAME_LEN + 4 + MAX_BODY_LEN);
        let mut ttl_offsets = Vec::with_capacity(spec.sections.record_count());
        let body_start;
        {
            let mut enc = BinEncoder::new(&mut buf);
            enc.emit_vec(&[0; HEADER_LEN]).map_err(enc_err)?;
            let mut qname = spec.qname.to_lowercase();
            qname.set_fqdn(true);
            qname.emit(&mut enc).map_err(enc_err)?;
            enc.emit_u16(u16::from(spec.qtype)).map_err(enc_err)?;
            enc.emit_u16(u16::from(DNSClass::IN)).map_err(enc_err)?;
            body_start = enc.offset();
            for r in spec.sections.records() {
                r.name.emit(&mut enc).map_err(enc_err)?;
                enc.emit_u16(u16::from(r.record_type())).map_err(enc_err)?;
                enc.emit_u16(u16::from(r.dns_class)).map_err(enc_err)?;
                ttl_offsets.push(enc.offset() - body_start);
                enc.emit_u32(0).map_err(enc_err)?;
                let place = enc.place::<u16>().map_err(enc_err)?;
                r.data.emit(&mut enc).map_err(enc_err)?;
                let len = enc.len_since_place(&place);
                place.replace(&mut enc, len as u16).map_err(enc_err)?;
            }
        }
        buf.drain(..body_start);
        Ok(Self {
            bytes: buf,
            ttl_offsets,
        })
    }
}

/// The map value: the body with its checksums, counts and TTL bounds.
fn entry(key: &AnswerKey, spec: &EntrySpec<'_>, rcode: u8, body: &Body) -> AnswerEntry {
    let sections = spec.sections;
    let hash = key_hash(&key.name[..key.name_len as usize], key.qtype);
    let record_ttl = sections.records().map(|r| r.ttl).min();
    let mut entry = AnswerEntry::zeroed();
    entry.key_hash = hash;
    entry.generation = spec.generation;
    entry.expires_ns = spec.expires_boot_ns;
    entry.max_ttl = record_ttl.map_or(spec.max_ttl, |t| t.min(spec.max_ttl));
    entry.body_sum = u32::from(ones_sum(&body.bytes));
    entry.rcode = rcode;
    entry.flags = if spec.authoritative {
        ENTRY_FLAG_AUTHORITATIVE
    } else {
        0
    };
    entry.ancount = sections.answers.len() as u16;
    entry.nscount = sections.authority.len() as u16;
    entry.arcount = sections.additionals.len() as u16;
    entry.body_len = body.bytes.len() as u16;
    entry.ttl_count = body.ttl_offsets.len() as u16;
    for (slot, off) in entry.ttl_offsets.iter_mut().zip(&body.ttl_offsets) {
        *slot = *off as u16;
    }
    entry.body[..body.bytes.len()].copy_from_slice(&body.bytes);
    entry
}

/// The TTL the kernel would serve at `now_boot_ns`: the remaining whole
/// seconds, capped by `max_ttl`; `None` once expired.
pub fn served_ttl(entry: &AnswerEntry, now_boot_ns: u64) -> Option<u32> {
    if now_boot_ns >= entry.expires_ns {
        return None;
    }
    let remaining = (entry.expires_ns - now_boot_ns) / NS_PER_SEC;
    Some(remaining.min(u64::from(entry.max_ttl)) as u32)
}

/// Decodes an entry, with the TTLs it would be served with now (zero if
/// expired). Checks the same consistency rules the kernel does.
pub fn decode(key: &AnswerKey, entry: &AnswerEntry) -> Result<DecodedEntry, EncodeError> {
    let name_len = key.name_len as usize;
    let body_len = entry.body_len as usize;
    let ttl_count = entry.ttl_count as usize;
    if name_len == 0 || name_len > MAX_NAME_LEN {
        return Err(EncodeError::Corrupt("key name length out of range"));
    }
    if body_len > MAX_BODY_LEN || ttl_count > MAX_TTLS {
        return Err(EncodeError::Corrupt(
            "body length or TTL count out of range",
        ));
    }
    let hash = key_hash(&key.name[..name_len], key.qtype);
    if entry.key_hash != hash {
        return Err(EncodeError::Corrupt("hash does not match the key"));
    }
    let body = &entry.body[..body_len];
    if u32::from(ones_sum(body)) != entry.body_sum {
        return Err(EncodeError::Corrupt("body checksum mismatch"));
    }
    let ttl = served_ttl(entry, boot_time_ns()).unwrap_or(0);

    let mut msg = Vec::with_capacity(HEADER_LEN + name_len + 4 + body_len);
    let flags: u16 = 0x8000 | u16::from(entry.rcode & 0x0f);
    let counts = [1, entry.ancount, entry.nscount, entry.arcount];
    msg.extend_from_slice(&0u16.to_be_bytes());
    msg.extend_from_slice(&flags.to_be_bytes());
    for c in counts {
        msg.extend_from_slice(&c.to_be_bytes());
    }
    msg.extend_from_slice(&key.name[..name_len]);
    msg.extend_from_slice(&key.qtype.to_be_bytes());
    msg.extend_from_slice(&u16::from(DNSClass::IN).to_be_bytes());
    let body_at = msg.len();
    msg.extend_from_slice(body);
    for off in &entry.ttl_offsets[..ttl_count] {
        let at = body_at + *off as usize;
        if *off as usize + 4 > body_len {
            return Err(EncodeError::Corrupt("TTL offset outside the body"));
        }
        msg[at..at + 4].copy_from_slice(&ttl.to_be_bytes());
    }
    let parsed = Message::from_vec(&msg).map_err(|e| EncodeError::Encode(e.to_string()))?;
    let query = parsed
        .queries
        .first()
        .ok_or(EncodeError::Corrupt("no question"))?;
    Ok(DecodedEntry {
        name: query.name().clone(),
        qtype: query.query_type(),
        sections: AnswerSections {
            rcode: ResponseCode::from(0, entry.rcode),
            answers: parsed.answers,
            authority: parsed.authorities,
            additionals: parsed.additionals,
        },
        authoritative: entry.flags & ENTRY_FLAG_AUTHORITATIVE != 0,
        max_ttl: entry.max_ttl,
        expires_boot_ns: entry.expires_ns,
    })
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use hickory_proto::rr::rdata::{A, AAAA, CNAME, SRV};
    use hickory_proto::rr::{RData, Record};

    use super::*;
    use crate::promotion::testing::{cluster_soa, name};

    fn sections(rcode: ResponseCode, answers: &[Record], authority: &[Record]) -> AnswerSections {
        AnswerSections {
            rcode,
            answers: answers.to_vec(),
            authority: authority.to_vec(),
            additionals: Vec::new(),
        }
    }

    /// `answers` to `q` `qtype` (NOERROR), encoded.
    fn encode_answers(
        q: &Name,
        qtype: RecordType,
        answers: &[Record],
    ) -> Result<(AnswerKey, AnswerEntry), EncodeError> {
        encode(&spec(
            q,
            qtype,
            &sections(ResponseCode::NoError, answers, &[]),
        ))
    }

    /// [`encode_answers`], decoded again.
    fn round_trip(q: &Name, qtype: RecordType, answers: &[Record]) -> DecodedEntry {
        let (key, entry) = encode_answers(q, qtype, answers).unwrap();
        decode(&key, &entry).unwrap()
    }

    fn spec<'a>(qname: &'a Name, qtype: RecordType, sections: &'a AnswerSections) -> EntrySpec<'a> {
        EntrySpec {
            qname,
            qtype,
            sections,
            authoritative: true,
            max_ttl: 30,
            expires_boot_ns: boot_time_ns() + 60 * NS_PER_SEC,
            generation: 7,
        }
    }

    #[test]
    fn key_is_lower_case_wire_name() {
        let key = key_for(&name("Web.Default.SVC.cluster.local."), RecordType::A).unwrap();
        assert_eq!(key.qtype, 1);
        assert_eq!(
            &key.name[..key.name_len as usize],
            b"\x03web\x07default\x03svc\x07cluster\x05local\x00"
        );
        assert!(key.name[key.name_len as usize..].iter().all(|b| *b == 0));
    }

    #[test]
    fn positive_answer_round_trips_with_pointer_to_question() {
        let q = name("web.default.svc.cluster.local.");
        let answers = [
            Record::from_rdata(q.clone(), 30, RData::A(A(Ipv4Addr::new(10, 0, 0, 1)))),
            Record::from_rdata(q.clone(), 30, RData::A(A(Ipv4Addr::new(10, 0, 0, 2)))),
        ];
        let (key, entry) = encode_answers(&q, RecordType::A, &answers).unwrap();
        // Two A records with the owner compressed to 0xC00C: 16 bytes each.
        assert_eq!(entry.body_len, 32);
        assert_eq!(&entry.body[..2], &[0xc0, 0x0c]);
        assert_eq!(entry.ttl_count, 2);
        assert_eq!(&entry.ttl_offsets[..2], &[6, 22]);
        assert_eq!(
            entry.key_hash,
            key_hash(&key.name[..key.name_len as usize], 1)
        );
        let decoded = decode(&key, &entry).unwrap();
        assert_eq!(decoded.name, q);
        assert_eq!(decoded.sections.answers.len(), 2);
        assert_eq!(decoded.sections.answers[1].data, answers[1].data);
        assert!(
            decoded
                .sections
                .answers
                .iter()
                .all(|r| r.ttl <= 30 && r.ttl >= 29)
        );
        assert!(decoded.authoritative);
    }

    #[test]
    fn negative_cname_srv_and_aaaa_round_trip() {
        let q = name("nope.cluster.local.");
        let auth = [cluster_soa()];
        let nx = sections(ResponseCode::NXDomain, &[], &auth);
        let (key, entry) = encode(&spec(&q, RecordType::A, &nx)).unwrap();
        assert_eq!(entry.max_ttl, 5, "record TTL bounds the served TTL");
        let d = decode(&key, &entry).unwrap();
        assert_eq!(d.sections.rcode, ResponseCode::NXDomain);
        assert_eq!(d.sections.authority[0].data, auth[0].data);

        let q = name("ext.default.svc.cluster.local.");
        let answers = [
            Record::from_rdata(q.clone(), 30, RData::CNAME(CNAME(name("example.com.")))),
            Record::from_rdata(
                name("example.com."),
                30,
                RData::AAAA(AAAA(Ipv6Addr::LOCALHOST)),
            ),
        ];
        let d = round_trip(&q, RecordType::AAAA, &answers);
        assert_eq!(d.sections.answers[0].data, answers[0].data);
        assert_eq!(d.sections.answers[1].name, answers[1].name);

        let q = name("_http._tcp.web.default.svc.cluster.local.");
        let srv = SRV::new(0, 100, 80, name("web.default.svc.cluster.local."));
        let answers = [Record::from_rdata(q.clone(), 30, RData::SRV(srv))];
        let d = round_trip(&q, RecordType::SRV, &answers);
        assert_eq!(d.sections.answers[0].data, answers[0].data);
    }

    #[test]
    fn errors_are_reported() {
        let long = Name::from_labels(std::iter::repeat_n("abcdefghijklmnopqrstuvwxyz", 6)).unwrap();
        assert!(matches!(
            key_for(&long, RecordType::A),
            Err(EncodeError::NameTooLong { .. })
        ));

        let q = name("a.example.");
        let fail = sections(ResponseCode::ServFail, &[], &[]);
        assert!(matches!(
            encode(&spec(&q, RecordType::A, &fail)),
            Err(EncodeError::UnsupportedRcode(_))
        ));

        let many: Vec<Record> = (0..=MAX_TTLS as u32)
            .map(|i| Record::from_rdata(q.clone(), 30, RData::A(A(Ipv4Addr::from(i)))))
            .collect();
        assert!(matches!(
            encode_answers(&q, RecordType::A, &many),
            Err(EncodeError::TooManyRecords { .. })
        ));

        let big: Vec<Record> = (0..MAX_TTLS as u32)
            .map(|i| {
                Record::from_rdata(q.clone(), 30, RData::AAAA(AAAA(Ipv6Addr::from(i as u128))))
            })
            .collect();
        assert!(matches!(
            encode_answers(&q, RecordType::AAAA, &big),
            Err(EncodeError::BodyTooLarge { .. })
        ));
    }

    #[test]
    fn decode_rejects_corrupt_entries() {
        let q = name("web.example.");
        let answers = [Record::from_rdata(
            q.clone(),
            30,
            RData::A(A(Ipv4Addr::new(1, 2, 3, 4))),
        )];
        let (key, entry) = encode_answers(&q, RecordType::A, &answers).unwrap();
        let mut torn = entry;
        torn.key_hash += 1;
        assert!(decode(&key, &torn).is_err());
        let mut torn = entry;
        torn.body[15] ^= 1;
        assert!(decode(&key, &torn).is_err());
    }

    #[test]
    fn served_ttl_is_bounded() {
        let mut e = AnswerEntry::zeroed();
        e.max_ttl = 30;
        e.expires_ns = 100 * NS_PER_SEC;
        assert_eq!(served_ttl(&e, 0), Some(30));
        assert_eq!(served_ttl(&e, 90 * NS_PER_SEC + 1), Some(9));
        assert_eq!(served_ttl(&e, 100 * NS_PER_SEC), None);
    }
}

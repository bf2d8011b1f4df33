//! An entry of the answers map as a test writes it: owned records, a
//! lifetime in seconds, encoded by the agent's own encoder.

use std::net::Ipv4Addr;

use dns_common::{AnswerEntry, AnswerKey};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};

use crate::internals::{AnswerSections, EntrySpec, boot_time_ns, encode_entry};
use crate::records::{name, rec};

const NS_PER_SEC: u64 = 1_000_000_000;
/// Defaults of [`EntryDef::new`]: the agent's success TTL cap, and a
/// lifetime longer than any test.
const MAX_TTL: u32 = 30;
const LIFETIME_SECS: u64 = 60;

/// An entry valid for `secs` seconds from when it is encoded.
#[derive(Clone, Debug)]
pub struct EntryDef {
    pub qname: Name,
    pub qtype: RecordType,
    pub authoritative: bool,
    pub sections: AnswerSections,
    pub max_ttl: u32,
    pub secs: u64,
    pub generation: u64,
}

impl EntryDef {
    /// An authoritative NOERROR entry with `answers`.
    pub fn new(qname: &str, qtype: RecordType, answers: Vec<Record>) -> Self {
        Self {
            qname: name(qname),
            qtype,
            authoritative: true,
            sections: AnswerSections {
                answers,
                ..AnswerSections::new(ResponseCode::NoError)
            },
            max_ttl: MAX_TTL,
            secs: LIFETIME_SECS,
            generation: 1,
        }
    }

    /// `qname` A with one record of TTL 30 for each address.
    pub fn a(qname: &str, addrs: &[Ipv4Addr]) -> Self {
        let answers = addrs
            .iter()
            .map(|ip| rec(qname, MAX_TTL, RData::A(A(*ip))))
            .collect();
        Self::new(qname, RecordType::A, answers)
    }

    pub fn encode(&self) -> (AnswerKey, AnswerEntry) {
        encode_entry(&EntrySpec {
            qname: &self.qname,
            qtype: self.qtype,
            sections: &self.sections,
            authoritative: self.authoritative,
            max_ttl: self.max_ttl,
            expires_boot_ns: boot_time_ns() + self.secs * NS_PER_SEC,
            generation: self.generation,
        })
        .unwrap()
    }
}

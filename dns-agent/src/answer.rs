//! The sections of a DNS answer, the one shape every part of the agent
//! passes around: the zone's authoritative answers, the forwarding cache's
//! entries, the kernel map's entries (promotion) and what `inspect` decodes.

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{Record, RecordType};

/// Response code and records of an answer, without the question.
#[derive(Debug, Clone, PartialEq)]
pub struct AnswerSections {
    /// `NoError` (data or NODATA), `NXDomain`, or `ServFail` for a cached
    /// failure.
    pub rcode: ResponseCode,
    pub answers: Vec<Record>,
    /// NXDOMAIN and NODATA from a zone carry its SOA here; the SOA record's
    /// TTL is already the negative-caching TTL.
    pub authority: Vec<Record>,
    pub additionals: Vec<Record>,
}

impl AnswerSections {
    /// No records yet.
    pub fn new(rcode: ResponseCode) -> Self {
        Self {
            rcode,
            answers: Vec::new(),
            authority: Vec::new(),
            additionals: Vec::new(),
        }
    }

    /// The sections of a received message, without the OPT pseudo-record
    /// (EDNS belongs to one exchange, not to the answer).
    pub fn from_message(message: &Message) -> Self {
        Self {
            rcode: message.metadata.response_code,
            answers: message.answers.clone(),
            authority: message.authorities.clone(),
            additionals: message
                .additionals
                .iter()
                .filter(|r| r.record_type() != RecordType::OPT)
                .cloned()
                .collect(),
        }
    }

    /// Every record, in wire order (answer, authority, additional).
    pub fn records(&self) -> impl Iterator<Item = &Record> {
        self.answers
            .iter()
            .chain(&self.authority)
            .chain(&self.additionals)
    }

    pub fn record_count(&self) -> usize {
        self.answers.len() + self.authority.len() + self.additionals.len()
    }

    /// The same answer with every TTL at most `cap` seconds.
    pub fn with_ttl_cap(&self, cap: u32) -> Self {
        self.with_ttls(|ttl| ttl.min(cap))
    }

    /// The same answer with every TTL exactly `ttl` seconds.
    pub fn with_ttl(&self, ttl: u32) -> Self {
        self.with_ttls(|_| ttl)
    }

    fn with_ttls(&self, f: impl Fn(u32) -> u32) -> Self {
        let rewrite = |records: &[Record]| -> Vec<Record> {
            records
                .iter()
                .map(|r| {
                    let mut r = r.clone();
                    r.ttl = f(r.ttl);
                    r
                })
                .collect()
        };
        Self {
            rcode: self.rcode,
            answers: rewrite(&self.answers),
            authority: rewrite(&self.authority),
            additionals: rewrite(&self.additionals),
        }
    }

    /// Puts the rcode and the records into a response.
    pub fn write_to(self, reply: &mut Message) {
        reply.metadata.response_code = self.rcode;
        reply.answers = self.answers;
        reply.authorities = self.authority;
        reply.additionals = self.additionals;
    }
}

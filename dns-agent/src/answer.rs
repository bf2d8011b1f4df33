//! The sections of a DNS answer, the one shape every part of the agent
//! passes around: the zone's authoritative answers, the forwarding cache's
//! entries, the kernel map's entries (promotion) and what `inspect` decodes.

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{Name, Record, RecordType};

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

    /// The same answer with every owner name spelled as the query spells
    /// the labels they share (RFC 4343 §4.1: a server preserves the case of
    /// the query name). The kernel's answers do the same by compressing
    /// every owner against the echoed question, so both paths agree.
    pub fn with_query_case(mut self, qname: &Name) -> Self {
        for r in self
            .answers
            .iter_mut()
            .chain(&mut self.authority)
            .chain(&mut self.additionals)
        {
            r.name = respell(&r.name, qname);
        }
        self
    }

    /// Puts the rcode and the records into a response.
    pub fn write_to(self, reply: &mut Message) {
        reply.metadata.response_code = self.rcode;
        reply.answers = self.answers;
        reply.authorities = self.authority;
        reply.additionals = self.additionals;
    }
}

/// `owner` with its longest label suffix shared with `qname` (compared
/// without case) spelled as in `qname`.
fn respell(owner: &Name, qname: &Name) -> Name {
    let own: Vec<&[u8]> = owner.iter().collect();
    let asked: Vec<&[u8]> = qname.iter().collect();
    let shared = own
        .iter()
        .rev()
        .zip(asked.iter().rev())
        .take_while(|(a, b)| a.eq_ignore_ascii_case(b))
        .count();
    if shared == 0 || own[own.len() - shared..] == asked[asked.len() - shared..] {
        return owner.clone();
    }
    let labels = own[..own.len() - shared]
        .iter()
        .chain(&asked[asked.len() - shared..]);
    match Name::from_labels(labels.copied()) {
        Ok(mut name) => {
            name.set_fqdn(owner.is_fqdn());
            name
        }
        Err(_) => owner.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::ResponseCode;
    use hickory_proto::rr::RData;
    use hickory_proto::rr::rdata::A;

    #[test]
    fn owners_take_the_query_spelling_of_shared_labels() {
        let name = |s: &str| Name::from_ascii(s).unwrap();
        let a = |owner: &str| Record::from_rdata(name(owner), 30, RData::A(A::new(10, 0, 0, 1)));
        let mut answer = AnswerSections::new(ResponseCode::NoError);
        answer.answers = vec![a("db.default.svc.cluster.local."), a("example.com.")];
        answer.authority = vec![a("cluster.local.")];
        answer.additionals = vec![a("db-0.db.default.svc.cluster.local.")];
        let out = answer.with_query_case(&name("DB.Default.svc.Cluster.local."));
        let owners: Vec<String> = out.records().map(|r| r.name.to_string()).collect();
        assert_eq!(
            owners,
            [
                "DB.Default.svc.Cluster.local.",
                "example.com.",
                "Cluster.local.",
                "db-0.DB.Default.svc.Cluster.local.",
            ]
        );
    }
}

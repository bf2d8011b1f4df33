//! Bailiwick scrubbing of upstream replies, before anything is cached or
//! answered (docs/design.md#query-path).
//!
//! An upstream may only tell us about the question it was asked. Whatever
//! else a reply carries is how cache poisoning works (an extra A record for
//! a bank's name appended to the answer of `x.evil.example`, an NS record
//! for someone else's zone in the authority section), so it is removed:
//!
//! - every record outside the servers' bailiwick: the stub domain they were
//!   asked for, or the root for the default upstreams (recursive servers);
//! - answer records other than the question's name and type and the CNAME
//!   chain that starts there (plus DNAMEs above a name of that chain);
//! - authority records other than SOA and NS of a zone that holds the
//!   chain's last name;
//! - additional records other than addresses of the names the kept NS, MX,
//!   SRV and SVCB/HTTPS records point at;
//! - every record of a class other than IN.

use hickory_proto::op::Message;
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

/// CNAME links followed in one reply; a longer chain is cut there (resolvers
/// commonly give up near 8 to 16).
pub const MAX_CHAIN: usize = 16;

/// What scrubbing removed and where the answer's chain ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scrubbed {
    /// Records dropped from the answer, authority and additional sections.
    pub dropped: [usize; 3],
    /// The question's name, then each CNAME target in order.
    pub chain: Vec<Name>,
}

impl Scrubbed {
    /// The name the answer's data is about: the end of the CNAME chain.
    pub fn last(&self) -> &Name {
        self.chain
            .last()
            .expect("the chain starts with the question")
    }
}

/// Removes from `reply` every record that servers for `bailiwick` had no
/// business sending in answer to `qname`/`qtype`.
pub fn scrub(reply: &mut Message, qname: &Name, qtype: RecordType, bailiwick: &Name) -> Scrubbed {
    let trusted = |r: &Record| r.dns_class == DNSClass::IN && bailiwick.zone_of(&r.name);
    let chain = chain(&reply.answers, qname, qtype, &trusted);
    let in_chain = |n: &Name| chain.iter().any(|c| c == n);
    let before = [
        reply.answers.len(),
        reply.authorities.len(),
        reply.additionals.len(),
    ];

    reply.answers.retain(|r| {
        trusted(r)
            && match r.record_type() {
                RecordType::DNAME => chain.iter().any(|n| r.name.zone_of(n) && r.name != *n),
                RecordType::CNAME | RecordType::RRSIG => in_chain(&r.name),
                t => in_chain(&r.name) && (t == qtype || qtype == RecordType::ANY),
            }
    });
    let last = chain.last().expect("the chain starts with the question");
    reply.authorities.retain(|r| {
        trusted(r)
            && matches!(r.record_type(), RecordType::SOA | RecordType::NS)
            && r.name.zone_of(last)
    });
    let targets: Vec<&Name> = reply
        .answers
        .iter()
        .chain(&reply.authorities)
        .filter_map(|r| glue_target(&r.data))
        .collect();
    let additionals = std::mem::take(&mut reply.additionals);
    reply.additionals = additionals
        .into_iter()
        .filter(|r| {
            trusted(r)
                && matches!(r.record_type(), RecordType::A | RecordType::AAAA)
                && targets.contains(&&r.name)
        })
        .collect();

    let after = [
        reply.answers.len(),
        reply.authorities.len(),
        reply.additionals.len(),
    ];
    Scrubbed {
        dropped: [0, 1, 2].map(|i| before[i] - after[i]),
        chain,
    }
}

/// The question's name and the CNAME targets that follow it, as long as
/// each link is a trusted record. Not followed for CNAME and ANY questions,
/// whose answer is the name's own records.
fn chain(
    answers: &[Record],
    qname: &Name,
    qtype: RecordType,
    trusted: &impl Fn(&Record) -> bool,
) -> Vec<Name> {
    let mut names = vec![qname.clone()];
    if matches!(qtype, RecordType::CNAME | RecordType::ANY) {
        return names;
    }
    while names.len() <= MAX_CHAIN {
        let current = names.last().expect("never empty");
        let next = answers.iter().find_map(|r| match &r.data {
            RData::CNAME(target) if r.name == *current && trusted(r) => Some(target.0.clone()),
            _ => None,
        });
        match next {
            // A loop ends the chain where it closes.
            Some(target) if !names.contains(&target) => names.push(target),
            _ => break,
        }
    }
    names
}

/// The name whose addresses may ride along in the additional section.
fn glue_target(data: &RData) -> Option<&Name> {
    match data {
        RData::NS(ns) => Some(&ns.0),
        RData::MX(mx) => Some(&mx.exchange),
        RData::SRV(srv) => Some(&srv.target),
        RData::SVCB(svcb) => Some(&svcb.target_name),
        RData::HTTPS(https) => Some(&https.0.target_name),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{MessageType, OpCode};
    use hickory_proto::rr::rdata::{A, CNAME, MX, NS, SOA};

    fn name(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    fn a(owner: &str, last: u8) -> Record {
        Record::from_rdata(name(owner), 60, RData::A(A::new(192, 0, 2, last)))
    }

    fn cname(owner: &str, target: &str) -> Record {
        Record::from_rdata(name(owner), 60, RData::CNAME(CNAME(name(target))))
    }

    fn ns(owner: &str, target: &str) -> Record {
        Record::from_rdata(name(owner), 60, RData::NS(NS(name(target))))
    }

    fn soa(owner: &str) -> Record {
        let soa = SOA::new(name("ns.example."), name("h.example."), 1, 60, 60, 60, 60);
        Record::from_rdata(name(owner), 60, RData::SOA(soa))
    }

    fn reply(answers: Vec<Record>, authority: Vec<Record>, additional: Vec<Record>) -> Message {
        let mut m = Message::new(1, MessageType::Response, OpCode::Query);
        m.answers = answers;
        m.authorities = authority;
        m.additionals = additional;
        m
    }

    fn owners(records: &[Record]) -> Vec<String> {
        records
            .iter()
            .map(|r| format!("{} {}", r.name, r.record_type()))
            .collect()
    }

    #[test]
    fn unrelated_answer_records_are_dropped() {
        let mut m = reply(
            vec![a("x.evil.example.", 1), a("www.bank.example.", 66)],
            vec![ns("bank.example.", "ns.evil.example.")],
            vec![a("ns.evil.example.", 6)],
        );
        let s = scrub(
            &mut m,
            &name("x.evil.example."),
            RecordType::A,
            &Name::root(),
        );
        assert_eq!(owners(&m.answers), ["x.evil.example. A"]);
        assert!(m.authorities.is_empty(), "NS for another zone");
        assert!(m.additionals.is_empty(), "glue for a dropped NS");
        assert_eq!(s.dropped, [1, 1, 1]);
    }

    #[test]
    fn cname_chain_is_kept_in_any_case() {
        let mut m = reply(
            vec![
                cname("WWW.Example.", "edge.cdn.example."),
                cname("edge.cdn.example.", "e1.cdn.example."),
                a("E1.cdn.example.", 1),
                a("other.example.", 2),
            ],
            vec![ns("cdn.example.", "ns1.cdn.example."), soa("example.")],
            vec![a("ns1.cdn.example.", 3), a("ns2.cdn.example.", 4)],
        );
        let s = scrub(&mut m, &name("www.example."), RecordType::A, &Name::root());
        assert_eq!(s.last(), &name("e1.cdn.example."));
        assert_eq!(
            owners(&m.answers),
            [
                "WWW.Example. CNAME",
                "edge.cdn.example. CNAME",
                "E1.cdn.example. A"
            ]
        );
        assert_eq!(m.authorities.len(), 2);
        assert_eq!(owners(&m.additionals), ["ns1.cdn.example. A"]);
    }

    #[test]
    fn stub_domain_servers_speak_only_for_their_zone() {
        let mut m = reply(
            vec![
                cname("db.corp.example.", "db.cloud.example."),
                a("db.cloud.example.", 9),
            ],
            vec![soa("cloud.example.")],
            vec![],
        );
        let s = scrub(
            &mut m,
            &name("db.corp.example."),
            RecordType::A,
            &name("corp.example."),
        );
        assert_eq!(owners(&m.answers), ["db.corp.example. CNAME"]);
        assert!(m.authorities.is_empty());
        assert_eq!(s.last(), &name("db.cloud.example."));
    }

    #[test]
    fn loops_and_other_classes_end_the_chain() {
        let mut m = reply(
            vec![
                cname("a.example.", "b.example."),
                cname("b.example.", "a.example."),
            ],
            vec![],
            vec![],
        );
        let s = scrub(&mut m, &name("a.example."), RecordType::A, &Name::root());
        assert_eq!(s.chain, [name("a.example."), name("b.example.")]);
        assert_eq!(m.answers.len(), 2);

        let mut chaos = a("c.example.", 1);
        chaos.dns_class = DNSClass::CH;
        let mut m = reply(vec![chaos], vec![], vec![]);
        scrub(&mut m, &name("c.example."), RecordType::A, &Name::root());
        assert!(m.answers.is_empty());
    }

    #[test]
    fn any_keeps_every_type_of_the_name_only() {
        let mx = Record::from_rdata(
            name("example."),
            60,
            RData::MX(MX::new(10, name("mail.example."))),
        );
        let mut m = reply(
            vec![a("example.", 1), mx, a("mail.example.", 2)],
            vec![],
            vec![a("mail.example.", 2), a("elsewhere.example.", 3)],
        );
        scrub(&mut m, &name("example."), RecordType::ANY, &Name::root());
        assert_eq!(owners(&m.answers), ["example. A", "example. MX"]);
        assert_eq!(owners(&m.additionals), ["mail.example. A"]);
    }

    #[test]
    fn negative_answer_keeps_the_zone_soa() {
        let mut m = reply(vec![], vec![soa("example."), soa("evil.example.")], vec![]);
        scrub(&mut m, &name("nx.example."), RecordType::A, &Name::root());
        assert_eq!(owners(&m.authorities), ["example. SOA"]);
    }
}

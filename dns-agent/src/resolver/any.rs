//! QTYPE ANY for the names we are authoritative for (RFC 8482).
//!
//! A zone answers one type at a time, so an ANY question would get NODATA
//! for a name that has A records. RFC 8482 section 4.1 lets a responder
//! answer ANY with a subset of the name's RRsets; this wrapper answers with
//! every RRset of the types cluster names carry, which is small. Forwarded
//! ANY questions go upstream as they are, and its answer (often the one
//! synthesised HINFO of section 4.2) is passed on after scrubbing.

use std::sync::Arc;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{LowerName, Name, RecordType};
use tokio::sync::watch;

use crate::answer::AnswerSections;
use crate::zone::{Zone, ZoneLookup};

/// The types an ANY answer collects, in answer order.
const ANY_TYPES: [RecordType; 8] = [
    RecordType::CNAME,
    RecordType::A,
    RecordType::AAAA,
    RecordType::SRV,
    RecordType::PTR,
    RecordType::TXT,
    RecordType::SOA,
    RecordType::NS,
];

/// `inner`, answering ANY with the name's RRsets.
pub struct AnyAware {
    inner: Arc<dyn Zone>,
}

impl AnyAware {
    pub fn wrap(inner: Arc<dyn Zone>) -> Arc<dyn Zone> {
        Arc::new(Self { inner })
    }
}

impl Zone for AnyAware {
    fn lookup(&self, name: &LowerName, qtype: RecordType) -> ZoneLookup {
        if qtype != RecordType::ANY {
            return self.inner.lookup(name, qtype);
        }
        let owner = Name::from(name);
        let mut answer: Option<AnswerSections> = None;
        for t in ANY_TYPES {
            let part = match self.inner.lookup(name, t) {
                ZoneLookup::Answer(part) => part,
                // The name holds a CNAME that leaves our zones: its data of
                // this type is the target's, not the name's own RRset (the
                // CNAME record itself comes from the CNAME lookup).
                ZoneLookup::Alias(_) => continue,
                // Ours or not, ready or not, does not depend on the type.
                other => return other,
            };
            if part.rcode == ResponseCode::NXDomain {
                return ZoneLookup::Answer(part);
            }
            let answer = answer.get_or_insert_with(|| AnswerSections {
                answers: Vec::new(),
                ..part.clone()
            });
            // Only the name's own records: a CNAME's chased target belongs
            // to the question for that type, not to this name's RRsets.
            answer.answers.extend(
                part.answers
                    .into_iter()
                    .filter(|r| r.name == owner && r.record_type() == t),
            );
        }
        // CNAME comes first and is never an Alias.
        let mut answer = answer.expect("the CNAME lookup answers");
        if !answer.answers.is_empty() {
            // Data: the negative answers' SOA does not belong.
            answer.authority.clear();
            answer.additionals.clear();
        }
        ZoneLookup::Answer(answer)
    }

    fn changes(&self) -> watch::Receiver<u64> {
        self.inner.changes()
    }

    fn is_ready(&self) -> bool {
        self.inner.is_ready()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::rdata::{A, AAAA, SOA};
    use hickory_proto::rr::{RData, Record};

    struct Fixed;

    fn name(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    fn soa() -> Record {
        let soa = SOA::new(name("ns.dns.z."), name("h.z."), 1, 1, 1, 1, 5);
        Record::from_rdata(name("z."), 5, RData::SOA(soa))
    }

    impl Zone for Fixed {
        fn lookup(&self, qname: &LowerName, qtype: RecordType) -> ZoneLookup {
            let n = Name::from(qname);
            if !name("z.").zone_of(&n) {
                return ZoneLookup::NotOurs;
            }
            let mut a = AnswerSections::new(ResponseCode::NoError);
            match (n.to_ascii().as_str(), qtype) {
                ("web.z.", RecordType::A) => {
                    a.answers
                        .push(Record::from_rdata(n, 30, RData::A(A::new(10, 0, 0, 1))))
                }
                ("web.z.", RecordType::AAAA) => a.answers.push(Record::from_rdata(
                    n,
                    30,
                    RData::AAAA(AAAA::new(0xfd00, 0, 0, 0, 0, 0, 0, 1)),
                )),
                ("web.z." | "empty.z.", _) => a.authority.push(soa()),
                _ => {
                    a.rcode = ResponseCode::NXDomain;
                    a.authority.push(soa());
                }
            }
            ZoneLookup::Answer(a)
        }
        fn changes(&self) -> watch::Receiver<u64> {
            watch::channel(0).1
        }
        fn is_ready(&self) -> bool {
            true
        }
    }

    fn any(zone: &dyn Zone, n: &str) -> ZoneLookup {
        zone.lookup(&LowerName::new(&name(n)), RecordType::ANY)
    }

    #[test]
    fn any_returns_the_names_rrsets() {
        let zone = AnyAware::wrap(Arc::new(Fixed));
        let ZoneLookup::Answer(a) = any(&*zone, "web.z.") else {
            panic!()
        };
        assert_eq!(a.rcode, ResponseCode::NoError);
        let types: Vec<_> = a.answers.iter().map(|r| r.record_type()).collect();
        assert_eq!(types, [RecordType::A, RecordType::AAAA]);
        assert!(a.authority.is_empty());
    }

    #[test]
    fn any_keeps_nodata_nxdomain_and_foreign_names() {
        let zone = AnyAware::wrap(Arc::new(Fixed));
        let ZoneLookup::Answer(a) = any(&*zone, "empty.z.") else {
            panic!()
        };
        assert_eq!(
            (a.rcode, a.answers.len(), a.authority.len()),
            (ResponseCode::NoError, 0, 1)
        );
        let ZoneLookup::Answer(a) = any(&*zone, "missing.z.") else {
            panic!()
        };
        assert_eq!(a.rcode, ResponseCode::NXDomain);
        assert_eq!(any(&*zone, "example.com."), ZoneLookup::NotOurs);
    }
}

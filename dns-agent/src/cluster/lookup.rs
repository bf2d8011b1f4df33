//! Answers from a [`Snapshot`]: the Kubernetes DNS schema 1.1.0, plus the
//! CoreDNS behaviours pods depend on (the README's conformance table lists
//! both, and what is answered for each).
//!
//! Records are not stored pre-built: the snapshot keeps compact service and
//! endpoint data and an answer is built per question (the resolver and the
//! XDP map cache the hot ones). That keeps 50k endpoints in a few MB.
//!
//! One question is answered in steps: custom hosts, then the cluster zone
//! ([`services`](super::services) for names under `svc.<zone>`), then the
//! reverse zones ([`reverse`](super::reverse)). A CNAME (an ExternalName
//! Service) is followed here while its target stays in our zones (RFC 1034
//! §4.3.2); when it leaves them the resolver finishes the answer
//! ([`ZoneLookup::Alias`]). A loop, or a chain longer than
//! [`MAX_CNAME_CHAIN`], is SERVFAIL.
//!
//! Choices where the schema leaves room (they follow CoreDNS):
//! - `<ns>.svc.<zone>` exists (NODATA) while the namespace has a Service;
//!   `svc.<zone>`, `dns.<zone>` and, with `--pod-records insecure`,
//!   `pod.<zone>` and `<ns>.pod.<zone>` always exist with no data.
//! - The apex NS is the cluster DNS Service (`--dns-service`) when it has
//!   addresses, else `ns.dns.<zone>`, which answers the agent's own listen
//!   addresses; either comes with its addresses as additional records.

use std::collections::HashSet;
use std::net::IpAddr;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, SOA, TXT};
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};

use super::hosts::HostsTable;
use super::model::ServiceKind;
use super::reverse::ReverseName;
use super::snapshot::{PodRecords, Snapshot, ZoneConfig, parse_dashed};
use crate::answer::AnswerSections;
use crate::zone::{Alias, MAX_CNAME_CHAIN, ZoneLookup};

/// The Kubernetes DNS schema version served at `dns-version.<zone>`.
pub const SCHEMA_VERSION: &str = "1.1.0";

/// What one name of the chain says.
pub(super) enum Step {
    NotOurs,
    NotReady,
    Answer(AnswerSections),
    /// The name is an alias of this (absolute, lower-case) name.
    Cname(Name),
}

pub(crate) fn lookup(
    cfg: &ZoneConfig,
    snap: &Snapshot,
    hosts: &HostsTable,
    name: &LowerName,
    qtype: RecordType,
) -> ZoneLookup {
    let mut chain: Vec<Record> = Vec::new();
    let mut current = name.clone();
    loop {
        let q = Query {
            cfg,
            snap,
            hosts,
            owner: (*current).clone(),
            qtype,
        };
        match q.step(&current) {
            Step::NotOurs if chain.is_empty() => return ZoneLookup::NotOurs,
            Step::NotOurs => {
                let target = (*current).clone();
                return ZoneLookup::Alias(Alias { chain, target });
            }
            Step::NotReady => return ZoneLookup::NotReady,
            Step::Answer(mut answer) => {
                if !chain.is_empty() {
                    chain.append(&mut answer.answers);
                    answer.answers = chain;
                }
                return ZoneLookup::Answer(answer);
            }
            Step::Cname(target) => {
                let rdata = RData::CNAME(CNAME(target.clone()));
                chain.push(Record::from_rdata(q.owner, cfg.ttl, rdata));
                let target = LowerName::new(&target);
                let looped = chain.iter().any(|r| LowerName::new(&r.name) == target);
                if looped || chain.len() > MAX_CNAME_CHAIN {
                    tracing::debug!(%name, %target, length = chain.len(), looped, "CNAME chain too long or looping: SERVFAIL");
                    return ZoneLookup::Answer(AnswerSections::new(ResponseCode::ServFail));
                }
                current = target;
            }
        }
    }
}

/// One name being answered, and what answers it.
pub(super) struct Query<'a> {
    pub(super) cfg: &'a ZoneConfig,
    pub(super) snap: &'a Snapshot,
    pub(super) hosts: &'a HostsTable,
    /// The name as asked, owner of the answer records.
    pub(super) owner: Name,
    pub(super) qtype: RecordType,
}

pub(super) fn data(answers: Vec<Record>, additionals: Vec<Record>) -> AnswerSections {
    AnswerSections {
        rcode: ResponseCode::NoError,
        answers,
        authority: Vec::new(),
        additionals,
    }
}

/// The A and AAAA records of `owner` for `ips` (each address once): the
/// complete address RRsets of a name, for additional sections.
pub(super) fn address_records(owner: &Name, ttl: u32, ips: &[IpAddr]) -> Vec<Record> {
    let mut records = Vec::with_capacity(ips.len());
    for qtype in [RecordType::A, RecordType::AAAA] {
        let mut seen = HashSet::new();
        for ip in ips.iter().filter(|ip| seen.insert(**ip)) {
            records.extend(addr_record(owner, ttl, *ip, qtype));
        }
    }
    records
}

fn addr_record(owner: &Name, ttl: u32, ip: IpAddr, qtype: RecordType) -> Option<Record> {
    let rdata = match (ip, qtype) {
        (IpAddr::V4(v4), RecordType::A) => RData::A(A(v4)),
        (IpAddr::V6(v6), RecordType::AAAA) => RData::AAAA(AAAA(v6)),
        _ => return None,
    };
    Some(Record::from_rdata(owner.clone(), ttl, rdata))
}

impl Query<'_> {
    fn step(&self, name: &LowerName) -> Step {
        if let Some(ips) = self.hosts.addresses(name) {
            // Custom hosts: exactly these names, before the cluster zone;
            // another type is NOERROR without records.
            let answers = ips
                .iter()
                .filter_map(|ip| addr_record(&self.owner, self.cfg.ttl, *ip, self.qtype))
                .collect();
            return Step::Answer(data(answers, Vec::new()));
        }
        if self.cfg.domain.zone_of(name) {
            if !self.snap.ready {
                return Step::NotReady;
            }
            return self.forward(name);
        }
        match ReverseName::parse(name) {
            Some(reverse) => self.reverse(&reverse),
            None => Step::NotOurs,
        }
    }

    pub(super) fn domain(&self) -> Name {
        (*self.cfg.domain).clone()
    }

    /// `labels` (left to right) + the cluster domain.
    pub(super) fn name_in_zone(&self, labels: &[&str]) -> Name {
        Name::from_labels(labels.iter().map(|l| l.as_bytes()))
            .and_then(|n| n.append_domain(&self.domain()))
            // Labels come from validated objects and queries; a name that is
            // too long cannot have been asked for, so the apex is harmless.
            .unwrap_or_else(|_| self.domain())
    }

    fn soa(&self, apex: Name) -> Record {
        let soa = SOA::new(
            self.name_in_zone(&["ns", "dns"]),
            self.name_in_zone(&["hostmaster"]),
            // Serial moves with the content, as secondaries would expect.
            self.snap.generation as u32,
            7200,
            1800,
            86400,
            self.cfg.ttl,
        );
        // The negative-caching TTL is min(SOA minimum, SOA TTL) = ttl.
        Record::from_rdata(apex, self.cfg.ttl, RData::SOA(soa))
    }

    pub(super) fn negative(&self, rcode: ResponseCode, apex: Name) -> AnswerSections {
        AnswerSections {
            rcode,
            answers: Vec::new(),
            authority: vec![self.soa(apex)],
            additionals: Vec::new(),
        }
    }

    pub(super) fn nodata(&self) -> Step {
        Step::Answer(self.negative(ResponseCode::NoError, self.domain()))
    }

    pub(super) fn nxdomain(&self) -> Step {
        Step::Answer(self.negative(ResponseCode::NXDomain, self.domain()))
    }

    /// Positive answer, or NODATA when the name exists but has nothing of
    /// the asked type.
    pub(super) fn answer_or_nodata(&self, answers: Vec<Record>, additionals: Vec<Record>) -> Step {
        if answers.is_empty() {
            self.nodata()
        } else {
            Step::Answer(data(answers, additionals))
        }
    }

    /// The asked type's records among `ips`, owned by the query name.
    pub(super) fn addresses(&self, ips: impl IntoIterator<Item = IpAddr>) -> Vec<Record> {
        let mut seen = HashSet::new();
        ips.into_iter()
            .filter(|ip| seen.insert(*ip))
            .filter_map(|ip| addr_record(&self.owner, self.cfg.ttl, ip, self.qtype))
            .collect()
    }

    fn forward(&self, name: &LowerName) -> Step {
        let rel = usize::from(name.num_labels() - self.cfg.domain.num_labels());
        let labels: Option<Vec<&str>> = name
            .iter()
            .take(rel)
            .map(|l| std::str::from_utf8(l).ok())
            .collect();
        let Some(labels) = labels else {
            return self.nxdomain();
        };
        let pods = self.cfg.pod_records == PodRecords::Insecure;
        match labels.as_slice() {
            [] => Step::Answer(self.apex(self.domain())),
            ["dns-version"] => match self.qtype {
                RecordType::TXT => Step::Answer(data(
                    vec![Record::from_rdata(
                        self.owner.clone(),
                        self.cfg.ttl,
                        RData::TXT(TXT::new(vec![SCHEMA_VERSION.to_string()])),
                    )],
                    Vec::new(),
                )),
                _ => self.nodata(),
            },
            ["svc"] | ["dns"] => self.nodata(),
            ["ns", "dns"] => {
                let (_, ips) = self.nameserver();
                self.answer_or_nodata(self.addresses(ips), Vec::new())
            }
            ["pod"] | [_, "pod"] if pods => self.nodata(),
            [ip, _ns, "pod"] if pods => match parse_dashed(ip) {
                Some(ip) => self.answer_or_nodata(self.addresses([ip]), Vec::new()),
                None => self.nxdomain(),
            },
            [ns, "svc"] => {
                if self.snap.namespaces.contains_key(*ns) {
                    self.nodata()
                } else {
                    self.nxdomain()
                }
            }
            [svc, ns, "svc"] => self.service(ns, svc),
            [proto, svc, ns, "svc"] if proto.starts_with('_') => {
                self.proto_node(ns, svc, &proto[1..])
            }
            [host, svc, ns, "svc"] => self.endpoint(ns, svc, host),
            [port, proto, svc, ns, "svc"] if port.starts_with('_') && proto.starts_with('_') => {
                self.srv(ns, svc, &port[1..], &proto[1..])
            }
            _ => self.nxdomain(),
        }
    }

    /// The apex of the cluster zone or of a reverse zone: SOA, NS (with the
    /// name server's addresses), NODATA for other types.
    pub(super) fn apex(&self, apex: Name) -> AnswerSections {
        match self.qtype {
            RecordType::SOA => data(vec![self.soa(apex)], Vec::new()),
            RecordType::NS => {
                let (ns, ips) = self.nameserver();
                let glue = address_records(&ns, self.cfg.ttl, &ips);
                let record =
                    Record::from_rdata(self.owner.clone(), self.cfg.ttl, RData::NS(NS(ns)));
                data(vec![record], glue)
            }
            _ => self.negative(ResponseCode::NoError, apex),
        }
    }

    /// The apex NS name and its addresses: the cluster DNS Service when it
    /// has addresses (a name pods already resolve), else `ns.dns.<zone>`
    /// with the agent's listen addresses.
    fn nameserver(&self) -> (Name, Vec<IpAddr>) {
        let key = &self.cfg.dns_service;
        if let Some(view) = self.snap.services.get(key) {
            let ips: Vec<IpAddr> = match &view.svc.kind {
                ServiceKind::ClusterIp(ips) => ips.to_vec(),
                ServiceKind::Headless => view
                    .published()
                    .flat_map(|e| e.addresses().iter().copied())
                    .collect(),
                ServiceKind::ExternalName(_) => Vec::new(),
            };
            if !ips.is_empty() {
                return (self.name_in_zone(&[&key.name, &key.namespace, "svc"]), ips);
            }
        }
        (
            self.name_in_zone(&["ns", "dns"]),
            self.cfg.ns_addresses.clone(),
        )
    }
}

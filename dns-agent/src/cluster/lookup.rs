//! Answers from a [`Snapshot`]: the Kubernetes DNS schema 1.1.0.
//!
//! Records are not stored pre-built: the snapshot keeps compact service and
//! endpoint data and an answer is built per question (the resolver and the
//! XDP map cache the hot ones). That keeps 50k endpoints in a few MB.
//!
//! Choices where the schema leaves room (they follow CoreDNS):
//! - A headless endpoint without `hostname` gets a pseudo hostname made of
//!   its address with `.`/`:` replaced by `-` (`10-0-0-1`, `fd00--1`). It is
//!   the SRV target and resolves as `<pseudo>.<svc>.<ns>.svc.<zone>`, but has
//!   no PTR record (only real hostnames do).
//! - `<ns>.svc.<zone>` exists (NODATA) while the namespace has a Service;
//!   `svc.<zone>`, `pod.<zone>`, `<ns>.pod.<zone>`, `dns.<zone>` and
//!   `ns.dns.<zone>` always exist with no data; `_<proto>.<svc>...` exists
//!   when the service has a named port of that protocol.
//! - ExternalName answers its CNAME for every query type; SRV for its named
//!   ports points at the external name.
//! - Reverse: PTR for every known ClusterIP and endpoint hostname; inside a
//!   `--reverse-cidr` an unknown address is NXDOMAIN, outside it is not ours.
//!   Only full addresses are answered (partial reverse names are not ours).

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};
use ipnet::IpNet;

use super::hosts::HostsTable;
use super::model::{EndpointInfo, ObjectKey, ServiceKind};
use super::snapshot::{ServiceView, Snapshot, ZoneConfig};
use crate::answer::AnswerSections;
use crate::zone::ZoneLookup;

/// The Kubernetes DNS schema version served at `dns-version.<zone>`.
pub const SCHEMA_VERSION: &str = "1.1.0";

pub(crate) fn lookup(
    cfg: &ZoneConfig,
    snap: &Snapshot,
    hosts: &HostsTable,
    name: &LowerName,
    qtype: RecordType,
) -> ZoneLookup {
    let owner: Name = (**name).clone();
    if let Some(ips) = hosts.addresses(name) {
        let answers = ips
            .iter()
            .filter_map(|ip| addr_record(&owner, cfg.ttl, *ip, qtype))
            .collect();
        return ZoneLookup::Answer(data(answers, Vec::new()));
    }
    if cfg.domain.zone_of(name) {
        if !snap.ready {
            return ZoneLookup::NotReady;
        }
        let q = Query {
            cfg,
            snap,
            owner,
            qtype,
        };
        return ZoneLookup::Answer(q.forward(name));
    }
    let Some(ip) = parse_reverse(name) else {
        return ZoneLookup::NotOurs;
    };
    if let Some(target) = hosts.ptr(&ip) {
        let answers = match qtype {
            RecordType::PTR => vec![Record::from_rdata(
                owner,
                cfg.ttl,
                RData::PTR(PTR(target.clone())),
            )],
            _ => Vec::new(),
        };
        return ZoneLookup::Answer(data(answers, Vec::new()));
    }
    let q = Query {
        cfg,
        snap,
        owner,
        qtype,
    };
    q.reverse(ip)
}

struct Query<'a> {
    cfg: &'a ZoneConfig,
    snap: &'a Snapshot,
    owner: Name,
    qtype: RecordType,
}

fn data(answers: Vec<Record>, additionals: Vec<Record>) -> AnswerSections {
    AnswerSections {
        rcode: ResponseCode::NoError,
        answers,
        authority: Vec::new(),
        additionals,
    }
}

fn addr_record(owner: &Name, ttl: u32, ip: IpAddr, qtype: RecordType) -> Option<Record> {
    let rdata = match (ip, qtype) {
        (IpAddr::V4(v4), RecordType::A) => RData::A(A(v4)),
        (IpAddr::V6(v6), RecordType::AAAA) => RData::AAAA(AAAA(v6)),
        _ => return None,
    };
    Some(Record::from_rdata(owner.clone(), ttl, rdata))
}

/// The pseudo hostname of an endpoint without `hostname` (see module doc).
pub fn dashed(ip: &IpAddr) -> String {
    ip.to_string().replace(['.', ':'], "-")
}

fn parse_dashed(label: &str) -> Option<IpAddr> {
    if let Ok(v4) = label.replace('-', ".").parse::<Ipv4Addr>() {
        return Some(IpAddr::V4(v4));
    }
    label
        .replace('-', ":")
        .parse::<Ipv6Addr>()
        .ok()
        .map(IpAddr::V6)
}

impl Query<'_> {
    fn domain(&self) -> Name {
        (*self.cfg.domain).clone()
    }

    /// `labels` (left to right) + the cluster domain.
    fn name_in_zone(&self, labels: &[&str]) -> Name {
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

    fn negative(&self, rcode: ResponseCode, apex: Name) -> AnswerSections {
        AnswerSections {
            rcode,
            answers: Vec::new(),
            authority: vec![self.soa(apex)],
            additionals: Vec::new(),
        }
    }

    fn nodata(&self) -> AnswerSections {
        self.negative(ResponseCode::NoError, self.domain())
    }

    fn nxdomain(&self) -> AnswerSections {
        self.negative(ResponseCode::NXDomain, self.domain())
    }

    /// Positive answer, or NODATA when the name exists but has nothing of
    /// the asked type.
    fn answer_or_nodata(&self, answers: Vec<Record>, additionals: Vec<Record>) -> AnswerSections {
        if answers.is_empty() {
            self.nodata()
        } else {
            data(answers, additionals)
        }
    }

    fn addresses(&self, ips: impl IntoIterator<Item = IpAddr>) -> Vec<Record> {
        let mut seen = HashSet::new();
        ips.into_iter()
            .filter(|ip| seen.insert(*ip))
            .filter_map(|ip| addr_record(&self.owner, self.cfg.ttl, ip, self.qtype))
            .collect()
    }

    fn forward(&self, name: &LowerName) -> AnswerSections {
        let rel = usize::from(name.num_labels() - self.cfg.domain.num_labels());
        let labels: Option<Vec<&str>> = name
            .iter()
            .take(rel)
            .map(|l| std::str::from_utf8(l).ok())
            .collect();
        let Some(labels) = labels else {
            return self.nxdomain();
        };
        match labels.as_slice() {
            [] => self.apex(),
            ["dns-version"] => match self.qtype {
                RecordType::TXT => data(
                    vec![Record::from_rdata(
                        self.owner.clone(),
                        self.cfg.ttl,
                        RData::TXT(TXT::new(vec![SCHEMA_VERSION.to_string()])),
                    )],
                    Vec::new(),
                ),
                _ => self.nodata(),
            },
            ["svc"] | ["pod"] | [_, "pod"] | ["dns"] | ["ns", "dns"] => self.nodata(),
            [ns, "svc"] => {
                if self.snap.namespaces.contains_key(*ns) {
                    self.nodata()
                } else {
                    self.nxdomain()
                }
            }
            [svc, ns, "svc"] => self.service(&ObjectKey::new(ns, svc)),
            [proto, svc, ns, "svc"] if proto.starts_with('_') => {
                self.proto_node(&ObjectKey::new(ns, svc), &proto[1..])
            }
            [host, svc, ns, "svc"] => self.endpoint(&ObjectKey::new(ns, svc), host),
            [port, proto, svc, ns, "svc"] if port.starts_with('_') && proto.starts_with('_') => {
                self.srv(&ObjectKey::new(ns, svc), &port[1..], &proto[1..])
            }
            [ip, _ns, "pod"] => match parse_dashed(ip) {
                Some(ip) => self.answer_or_nodata(self.addresses([ip]), Vec::new()),
                None => self.nxdomain(),
            },
            _ => self.nxdomain(),
        }
    }

    fn apex(&self) -> AnswerSections {
        let record = match self.qtype {
            RecordType::SOA => self.soa(self.domain()),
            RecordType::NS => Record::from_rdata(
                self.domain(),
                self.cfg.ttl,
                RData::NS(NS(self.name_in_zone(&["ns", "dns"]))),
            ),
            _ => return self.nodata(),
        };
        data(vec![record], Vec::new())
    }

    fn published<'v>(&self, view: &'v ServiceView) -> impl Iterator<Item = &'v EndpointInfo> + 'v {
        let svc = view.svc.clone();
        view.slices
            .iter()
            .flat_map(|s| s.endpoints.iter())
            .filter(move |e| e.published(&svc))
    }

    fn service(&self, key: &ObjectKey) -> AnswerSections {
        let Some(view) = self.snap.services.get(key) else {
            return self.nxdomain();
        };
        match &view.svc.kind {
            ServiceKind::ExternalName(target) => data(
                vec![Record::from_rdata(
                    self.owner.clone(),
                    self.cfg.ttl,
                    RData::CNAME(CNAME(target.clone())),
                )],
                Vec::new(),
            ),
            ServiceKind::ClusterIp(ips) => {
                self.answer_or_nodata(self.addresses(ips.iter().copied()), Vec::new())
            }
            ServiceKind::Headless => {
                let ips = self
                    .published(view)
                    .flat_map(|e| e.addresses.iter().copied());
                self.answer_or_nodata(self.addresses(ips), Vec::new())
            }
        }
    }

    /// `_<proto>.<svc>.<ns>.svc.<zone>`: an empty non-terminal when the
    /// service has a named port with that protocol.
    fn proto_node(&self, key: &ObjectKey, proto: &str) -> AnswerSections {
        let Some(view) = self.snap.services.get(key) else {
            return self.nxdomain();
        };
        let svc_ports = view.svc.ports.iter();
        let slice_ports = view.slices.iter().flat_map(|s| s.ports.iter());
        if svc_ports.chain(slice_ports).any(|p| &*p.protocol == proto) {
            self.nodata()
        } else {
            self.nxdomain()
        }
    }

    fn endpoint(&self, key: &ObjectKey, host: &str) -> AnswerSections {
        let Some(view) = self.snap.services.get(key) else {
            return self.nxdomain();
        };
        if view.svc.kind != ServiceKind::Headless {
            return self.nxdomain();
        }
        let mut found = false;
        let mut ips = Vec::new();
        for ep in self.published(view) {
            let matches = match &ep.hostname {
                Some(h) => &**h == host,
                None => ep.addresses.iter().any(|ip| dashed(ip) == host),
            };
            if matches {
                found = true;
                ips.extend(ep.addresses.iter().copied());
            }
        }
        if !found {
            return self.nxdomain();
        }
        self.answer_or_nodata(self.addresses(ips), Vec::new())
    }

    fn srv(&self, key: &ObjectKey, port_name: &str, proto: &str) -> AnswerSections {
        let Some(view) = self.snap.services.get(key) else {
            return self.nxdomain();
        };
        let svc_labels = [&*key.name, &*key.namespace, "svc"];
        let matching =
            |p: &&super::model::NamedPort| &*p.name == port_name && &*p.protocol == proto;
        let ttl = self.cfg.ttl;
        let mut answers = Vec::new();
        let mut additionals = Vec::new();
        let mut exists = view.svc.ports.iter().any(|p| matching(&p));
        let srv = |port: u16, target: Name| {
            Record::from_rdata(
                self.owner.clone(),
                ttl,
                RData::SRV(SRV::new(0, 100, port, target)),
            )
        };
        let glue = |target: &Name, ip: IpAddr| {
            let rdata = match ip {
                IpAddr::V4(v4) => RData::A(A(v4)),
                IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
            };
            Record::from_rdata(target.clone(), ttl, rdata)
        };
        match &view.svc.kind {
            ServiceKind::ClusterIp(ips) => {
                let target = self.name_in_zone(&svc_labels);
                for p in view.svc.ports.iter().filter(matching) {
                    answers.push(srv(p.port, target.clone()));
                }
                additionals.extend(ips.iter().map(|ip| glue(&target, *ip)));
            }
            ServiceKind::ExternalName(target) => {
                for p in view.svc.ports.iter().filter(matching) {
                    answers.push(srv(p.port, target.clone()));
                }
            }
            ServiceKind::Headless => {
                let mut seen = HashSet::new();
                for slice in &view.slices {
                    for p in slice.ports.iter().filter(matching) {
                        exists = true;
                        for ep in slice.endpoints.iter().filter(|e| e.published(&view.svc)) {
                            let Some(first) = ep.addresses.first() else {
                                continue;
                            };
                            let host = ep
                                .hostname
                                .as_deref()
                                .map_or_else(|| dashed(first), str::to_string);
                            let mut labels = vec![host.as_str()];
                            labels.extend(svc_labels);
                            let target = self.name_in_zone(&labels);
                            if !seen.insert((p.port, target.clone())) {
                                continue;
                            }
                            additionals.extend(ep.addresses.iter().map(|ip| glue(&target, *ip)));
                            answers.push(srv(p.port, target));
                        }
                    }
                }
            }
        }
        if !exists {
            return self.nxdomain();
        }
        if self.qtype != RecordType::SRV {
            return self.nodata();
        }
        self.answer_or_nodata(answers, additionals)
    }

    fn reverse(&self, ip: IpAddr) -> ZoneLookup {
        let cidr = self.cfg.reverse_cidrs.iter().find(|c| c.contains(&ip));
        if !self.snap.ready {
            return match cidr {
                Some(_) => ZoneLookup::NotReady,
                None => ZoneLookup::NotOurs,
            };
        }
        let apex = match cidr {
            Some(c) => reverse_apex(c),
            None => Name::from_ascii(if ip.is_ipv4() {
                "in-addr.arpa."
            } else {
                "ip6.arpa."
            })
            .unwrap_or_else(|_| Name::root()),
        };
        match self.snap.reverse.get(&ip) {
            Some(targets) => {
                if self.qtype != RecordType::PTR {
                    return ZoneLookup::Answer(self.negative(ResponseCode::NoError, apex));
                }
                let answers = targets
                    .iter()
                    .map(|t| {
                        let mut labels: Vec<&str> = t.hostname.as_deref().into_iter().collect();
                        labels.extend([&*t.service.name, &*t.service.namespace, "svc"]);
                        let target = self.name_in_zone(&labels);
                        Record::from_rdata(
                            self.owner.clone(),
                            self.cfg.ttl,
                            RData::PTR(PTR(target)),
                        )
                    })
                    .collect();
                ZoneLookup::Answer(data(answers, Vec::new()))
            }
            None if cidr.is_some() => {
                ZoneLookup::Answer(self.negative(ResponseCode::NXDomain, apex))
            }
            None => ZoneLookup::NotOurs,
        }
    }
}

/// A full address spelled as a reverse name, or `None`.
pub fn parse_reverse(name: &LowerName) -> Option<IpAddr> {
    let labels: Vec<&[u8]> = name.iter().collect();
    match labels.as_slice() {
        [d, c, b, a, b"in-addr", b"arpa"] => {
            let octet = |l: &[u8]| -> Option<u8> {
                let s = std::str::from_utf8(l).ok()?;
                // Refuse "010": it would be a second spelling of 10.
                if s.len() > 1 && s.starts_with('0') {
                    return None;
                }
                s.parse().ok()
            };
            Some(IpAddr::V4(Ipv4Addr::new(
                octet(a)?,
                octet(b)?,
                octet(c)?,
                octet(d)?,
            )))
        }
        [nibbles @ .., b"ip6", b"arpa"] if nibbles.len() == 32 => {
            let mut value: u128 = 0;
            for l in nibbles.iter().rev() {
                let [c] = l else { return None };
                let digit = (*c as char).to_digit(16)?;
                value = (value << 4) | u128::from(digit);
            }
            Some(IpAddr::V6(Ipv6Addr::from(value)))
        }
        _ => None,
    }
}

/// The reverse zone enclosing a CIDR, rounded out to a label boundary
/// (`10.96.0.0/12` → `10.in-addr.arpa.`); used as the SOA owner.
pub fn reverse_apex(cidr: &IpNet) -> Name {
    let text = match cidr {
        IpNet::V4(n) => {
            let octets = n.network().octets();
            let keep = usize::from(n.prefix_len() / 8);
            let mut parts: Vec<String> = octets[..keep].iter().rev().map(u8::to_string).collect();
            parts.push("in-addr.arpa.".into());
            parts.join(".")
        }
        IpNet::V6(n) => {
            let bits = u128::from(n.network());
            let keep = usize::from(n.prefix_len() / 4);
            let mut parts: Vec<String> = (0..keep)
                .rev()
                .map(|i| format!("{:x}", (bits >> (124 - 4 * i)) & 0xf))
                .collect();
            parts.push("ip6.arpa.".into());
            parts.join(".")
        }
    };
    Name::from_ascii(text).unwrap_or_else(|_| Name::root())
}

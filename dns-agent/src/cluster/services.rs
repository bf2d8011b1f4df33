//! Names under `svc.<zone>`: a Service, its endpoints and its SRV records
//! (schema §2.3 to §2.5, and CoreDNS's extensions the README lists).
//!
//! - A headless Service without a published endpoint does not exist: its
//!   name, its SRV names and everything under it are NXDOMAIN (§2.4.1).
//! - SRV at the Service name itself lists every named port, as CoreDNS
//!   answers it; `_<port>._<proto>` lists one port.
//! - An SRV answer carries, as additional records, the complete A and AAAA
//!   RRsets of every target it names (RFC 2181 §5): exactly what a query
//!   for that target answers.
//! - With `--endpoint-records all`, the endpoints of ClusterIP Services have
//!   names too (`<hostname or dashed IP>.<svc>...`), as in CoreDNS.

use std::collections::HashMap;
use std::net::IpAddr;

use hickory_proto::rr::rdata::{CNAME, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use super::lookup::{Query, Step, address_records, data};
use super::model::{NamedPort, ObjectKey, ServiceKind};
use super::snapshot::{ServiceView, parse_dashed};

/// The SRV records of a Service for the ports `wanted` accepts.
struct SrvSet {
    answers: Vec<Record>,
    additionals: Vec<Record>,
}

impl Query<'_> {
    fn view(&self, ns: &str, svc: &str) -> Option<&ServiceView> {
        self.snap
            .services
            .get(&ObjectKey::new(ns, svc))
            .map(|v| &**v)
    }

    /// `<svc>.<ns>.svc.<zone>`.
    pub(super) fn service(&self, ns: &str, svc: &str) -> Step {
        let Some(view) = self.view(ns, svc) else {
            return self.nxdomain();
        };
        match &view.svc.kind {
            ServiceKind::ExternalName(target) if self.qtype == RecordType::CNAME => {
                let rdata = RData::CNAME(CNAME((**target).clone()));
                let record = Record::from_rdata(self.owner.clone(), self.cfg.ttl, rdata);
                Step::Answer(data(vec![record], Vec::new()))
            }
            ServiceKind::ExternalName(target) => Step::Cname((**target).clone()),
            ServiceKind::ClusterIp(ips) => match self.qtype {
                RecordType::SRV => self.srv_answer(self.srv_set(view, |_| true)),
                _ => self.answer_or_nodata(self.addresses(ips.iter().copied()), Vec::new()),
            },
            ServiceKind::Headless => {
                let ips: Vec<IpAddr> = view
                    .published()
                    .flat_map(|e| e.addresses().iter().copied())
                    .collect();
                if ips.is_empty() {
                    return self.nxdomain();
                }
                match self.qtype {
                    RecordType::SRV => self.srv_answer(self.srv_set(view, |_| true)),
                    _ => self.answer_or_nodata(self.addresses(ips), Vec::new()),
                }
            }
        }
    }

    /// `_<proto>.<svc>.<ns>.svc.<zone>`: an empty non-terminal when an SRV
    /// record of that protocol exists under it.
    pub(super) fn proto_node(&self, ns: &str, svc: &str, proto: &str) -> Step {
        let exists = self
            .view(ns, svc)
            .is_some_and(|view| self.srv_exists(view, |p| &*p.protocol == proto));
        if exists {
            self.nodata()
        } else {
            self.nxdomain()
        }
    }

    /// `_<port>._<proto>.<svc>.<ns>.svc.<zone>`.
    pub(super) fn srv(&self, ns: &str, svc: &str, port: &str, proto: &str) -> Step {
        let wanted = |p: &NamedPort| &*p.name == port && &*p.protocol == proto;
        let Some(view) = self.view(ns, svc).filter(|v| self.srv_exists(v, wanted)) else {
            return self.nxdomain();
        };
        if self.qtype != RecordType::SRV {
            return self.nodata();
        }
        self.srv_answer(self.srv_set(view, wanted))
    }

    /// Whether an SRV name for the ports `wanted` accepts exists: a named
    /// port of the Service spec (§2.3.2), and for a headless Service at
    /// least one published endpoint too, its records being per endpoint
    /// (§2.4.2).
    fn srv_exists(&self, view: &ServiceView, wanted: impl Fn(&NamedPort) -> bool) -> bool {
        let ported = view.svc.ports.iter().any(wanted);
        match view.svc.kind {
            ServiceKind::Headless => ported && view.published().any(|e| !e.addresses().is_empty()),
            _ => ported,
        }
    }

    fn srv_answer(&self, set: SrvSet) -> Step {
        self.answer_or_nodata(set.answers, set.additionals)
    }

    fn srv_set(&self, view: &ServiceView, wanted: impl Fn(&NamedPort) -> bool) -> SrvSet {
        let key = &view.svc.key;
        let svc_labels = [&*key.name, &*key.namespace, "svc"];
        let ttl = self.cfg.ttl;
        let srv = |port: u16, target: Name| {
            let rdata = RData::SRV(SRV::new(0, 100, port, target));
            Record::from_rdata(self.owner.clone(), ttl, rdata)
        };
        let mut set = SrvSet {
            answers: Vec::new(),
            additionals: Vec::new(),
        };
        match &view.svc.kind {
            ServiceKind::ClusterIp(ips) => {
                let target = self.name_in_zone(&svc_labels);
                let ports = view.svc.ports.iter().filter(|p| wanted(p));
                set.answers = ports.map(|p| srv(p.port, target.clone())).collect();
                if !set.answers.is_empty() {
                    set.additionals = address_records(&target, ttl, ips);
                }
            }
            ServiceKind::ExternalName(target) => {
                let ports = view.svc.ports.iter().filter(|p| wanted(p));
                set.answers = ports.map(|p| srv(p.port, (**target).clone())).collect();
            }
            ServiceKind::Headless => {
                let names = endpoint_addresses(view);
                let mut targets: Vec<&str> = Vec::new();
                for p in view.svc.ports.iter().filter(|p| wanted(p)) {
                    for slice in &view.slices {
                        // The number the slice gives the port: where the
                        // pods listen (its targetPort), as kube-dns and
                        // CoreDNS answer; the Service's if it names none.
                        let number = slice
                            .ports
                            .iter()
                            .find(|sp| sp.name == p.name && sp.protocol == p.protocol)
                            .map_or(p.port, |sp| sp.port);
                        for ep in slice.endpoints.iter().filter(|e| e.published(&view.svc)) {
                            let Some(host) = ep.hosts().into_iter().next() else {
                                continue;
                            };
                            let host = names.get_key_value(&host).map_or("", |(k, _)| &**k);
                            let mut labels = vec![host];
                            labels.extend(svc_labels);
                            let record = srv(number, self.name_in_zone(&labels));
                            if !set.answers.contains(&record) {
                                set.answers.push(record);
                            }
                            if !targets.contains(&host) {
                                targets.push(host);
                            }
                        }
                    }
                }
                for host in targets {
                    let mut labels = vec![host];
                    labels.extend(svc_labels);
                    let target = self.name_in_zone(&labels);
                    set.additionals
                        .extend(address_records(&target, ttl, &names[host]));
                }
            }
        }
        set
    }

    /// `<host>.<svc>.<ns>.svc.<zone>`: the published endpoints answering to
    /// `host` (their `hostname`, or an address dashed).
    pub(super) fn endpoint(&self, ns: &str, svc: &str, host: &str) -> Step {
        let Some(view) = self.view(ns, svc) else {
            return self.nxdomain();
        };
        if !view.has_endpoint_names(self.cfg.endpoint_records) {
            return self.nxdomain();
        }
        let host_ip = parse_dashed(host);
        let mut found = false;
        let mut ips = Vec::new();
        for ep in view.published().filter(|e| e.answers_to(host, host_ip)) {
            found = true;
            ips.extend(ep.addresses().iter().copied());
        }
        if !found {
            return self.nxdomain();
        }
        self.answer_or_nodata(self.addresses(ips), Vec::new())
    }
}

/// Every name the published endpoints of `view` answer to, with all the
/// addresses it answers (an endpoint's `hostname` may repeat across slices,
/// one per address family).
fn endpoint_addresses(view: &ServiceView) -> HashMap<Box<str>, Vec<IpAddr>> {
    let mut names: HashMap<Box<str>, Vec<IpAddr>> = HashMap::new();
    for ep in view.published() {
        for host in ep.hosts() {
            names
                .entry(host)
                .or_default()
                .extend(ep.addresses().iter().copied());
        }
    }
    names
}

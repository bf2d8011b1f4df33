//! Reverse names: PTR records for the addresses the zone knows, and whole
//! authority over the reverse zones of `--reverse-cidr`.
//!
//! A CIDR becomes the zones its prefix covers at label boundaries, rounded
//! *in* so no zone holds an address outside the CIDR: `10.96.0.0/12` is the
//! sixteen zones `96.10.in-addr.arpa.` .. `111.10.in-addr.arpa.` (octets for
//! IPv4, nibbles for IPv6). Every name inside those zones is answered here:
//! the apex has its SOA and NS, a full address its PTR or NXDOMAIN, a name
//! above addresses that have PTRs is an empty non-terminal (NODATA), and
//! anything else is NXDOMAIN, all with the zone's SOA. Nothing in them is
//! forwarded. Outside them, a known address still gets its PTR; other
//! reverse names are not ours.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::PTR;
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};
use ipnet::IpNet;

use super::lookup::{Query, Step, data};
use super::snapshot::{PtrHost, ZoneConfig, dashed};

/// A name under `in-addr.arpa.` or `ip6.arpa.`, its address labels read
/// most significant first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReverseName {
    v6: bool,
    /// Each label's value, `None` when it is not a canonical digit (an
    /// octet 0-255 without leading zeros, or one hex nibble).
    digits: Vec<Option<u8>>,
}

impl ReverseName {
    pub fn parse(name: &LowerName) -> Option<Self> {
        let labels: Vec<&[u8]> = name.iter().collect();
        let (v6, address) = match labels.as_slice() {
            [rest @ .., b"in-addr", b"arpa"] => (false, rest),
            [rest @ .., b"ip6", b"arpa"] => (true, rest),
            _ => return None,
        };
        let digits = address.iter().rev().map(|l| digit(l, v6)).collect();
        Some(Self { v6, digits })
    }

    /// Bits per label.
    fn unit(&self) -> u8 {
        if self.v6 { 4 } else { 8 }
    }

    /// Labels of a full address.
    fn full(&self) -> usize {
        if self.v6 { 32 } else { 4 }
    }

    /// The address whose first `n` labels are this name's (the rest zero),
    /// if those labels are all digits.
    fn prefix(&self, n: usize) -> Option<IpAddr> {
        let digits: Option<Vec<u8>> = self.digits.get(..n)?.iter().copied().collect();
        let digits = digits?;
        let mut value: u128 = 0;
        for d in &digits {
            value = (value << self.unit()) | u128::from(*d);
        }
        value <<= u32::from(self.unit()) * (self.full() - n) as u32;
        Some(if self.v6 {
            IpAddr::V6(Ipv6Addr::from(value))
        } else {
            IpAddr::V4(Ipv4Addr::from(value as u32))
        })
    }

    /// The address this name spells, if it spells a whole one.
    pub fn address(&self) -> Option<IpAddr> {
        (self.digits.len() == self.full())
            .then(|| self.prefix(self.full()))
            .flatten()
    }

    /// The `--reverse-cidr` zone this name is in, as its apex's label count
    /// (the most specific zone when CIDRs nest).
    fn zone(&self, cfg: &ZoneConfig) -> Option<usize> {
        cfg.reverse_cidrs
            .iter()
            .filter(|c| matches!(c, IpNet::V6(_)) == self.v6)
            .filter_map(|c| {
                let labels = apex_labels(c);
                let inside = self.prefix(labels).is_some_and(|ip| c.contains(&ip));
                inside.then_some(labels)
            })
            .max()
    }

    /// The name made of this name's first `n` address labels.
    fn ancestor(&self, n: usize) -> Name {
        let mut labels: Vec<String> = self.digits[..n]
            .iter()
            .rev()
            .map(|d| match (d, self.v6) {
                (Some(d), true) => format!("{d:x}"),
                (Some(d), false) => d.to_string(),
                (None, _) => unreachable!("zone apexes are made of digits"),
            })
            .collect();
        labels.push(
            if self.v6 {
                "ip6.arpa."
            } else {
                "in-addr.arpa."
            }
            .into(),
        );
        Name::from_ascii(labels.join(".")).unwrap_or_else(|_| Name::root())
    }
}

fn digit(label: &[u8], v6: bool) -> Option<u8> {
    let text = std::str::from_utf8(label).ok()?;
    if v6 {
        let [c] = label else { return None };
        return (*c as char).to_digit(16).map(|d| d as u8);
    }
    // "010" would be a second spelling of 10.
    if text.is_empty() || (text.len() > 1 && text.starts_with('0')) {
        return None;
    }
    text.parse().ok()
}

/// Labels of the apex of a CIDR's zones: its prefix rounded up to a label.
fn apex_labels(cidr: &IpNet) -> usize {
    let unit = if matches!(cidr, IpNet::V6(_)) { 4 } else { 8 };
    usize::from(cidr.prefix_len().div_ceil(unit))
}

/// The label-aligned prefixes strictly between the zone apex and the full
/// address `ip`, for [`crate::cluster::snapshot::Snapshot::reverse_nodes`];
/// empty when `ip` is in no `--reverse-cidr` zone.
pub fn interior_prefixes(cfg: &ZoneConfig, ip: &IpAddr) -> Vec<(IpAddr, u8)> {
    let (v6, unit, full) = match ip {
        IpAddr::V4(_) => (false, 8u8, 4usize),
        IpAddr::V6(_) => (true, 4u8, 32usize),
    };
    let Some(apex) = cfg
        .reverse_cidrs
        .iter()
        .filter(|c| matches!(c, IpNet::V6(_)) == v6 && c.contains(ip))
        .map(apex_labels)
        .max()
    else {
        return Vec::new();
    };
    ((apex + 1)..full)
        .filter_map(|n| {
            let bits = unit * n as u8;
            let net = IpNet::new(*ip, bits).ok()?;
            Some((net.network(), bits))
        })
        .collect()
}

/// A PTR answer (or NODATA for another type) for an address with names.
fn ptr_answer(q: &Query<'_>, targets: Vec<Name>, apex: Name) -> Step {
    if q.qtype != RecordType::PTR {
        return Step::Answer(q.negative(ResponseCode::NoError, apex));
    }
    let answers = targets
        .into_iter()
        .map(|t| Record::from_rdata(q.owner.clone(), q.cfg.ttl, RData::PTR(PTR(t))))
        .collect();
    Step::Answer(data(answers, Vec::new()))
}

impl Query<'_> {
    /// `name` is under in-addr.arpa. or ip6.arpa.
    pub(super) fn reverse(&self, name: &ReverseName) -> Step {
        let zone = name.zone(self.cfg);
        let apex = match zone {
            Some(labels) => name.ancestor(labels),
            None => Name::from_ascii(if name.v6 {
                "ip6.arpa."
            } else {
                "in-addr.arpa."
            })
            .unwrap_or_else(|_| Name::root()),
        };
        if let Some(ip) = name.address()
            && let Some(target) = self.hosts.ptr(&ip)
        {
            // Custom hosts answer before the cluster, whatever its sync.
            return ptr_answer(self, vec![target.clone()], apex);
        }
        if !self.snap.ready {
            return if zone.is_some() {
                Step::NotReady
            } else {
                Step::NotOurs
            };
        }
        if let Some(ip) = name.address()
            && let Some(owners) = self.snap.reverse.get(&ip)
        {
            let mode = self.cfg.endpoint_records;
            let mut names: Vec<Name> = Vec::new();
            for svc in owners.iter() {
                let Some(view) = self.snap.services.get(&svc.key) else {
                    continue;
                };
                for host in view.ptr_hosts(&ip, mode) {
                    let dashed_ip;
                    let mut labels: Vec<&str> = match host {
                        PtrHost::Service => Vec::new(),
                        PtrHost::Hostname(h) => vec![h],
                        PtrHost::Dashed => {
                            dashed_ip = dashed(&ip);
                            vec![&dashed_ip]
                        }
                    };
                    labels.extend([&*svc.key.name, &*svc.key.namespace, "svc"]);
                    let target = self.name_in_zone(&labels);
                    if !names.contains(&target) {
                        names.push(target);
                    }
                }
            }
            return ptr_answer(self, names, apex);
        }
        let Some(labels) = zone else {
            return Step::NotOurs;
        };
        let count = name.digits.len();
        let exists = if count == labels {
            return Step::Answer(self.apex(apex));
        } else if count >= name.full() {
            false // a full address without PTR, or a name below one
        } else {
            self.has_addresses_under(name, count)
        };
        let rcode = if exists {
            ResponseCode::NoError
        } else {
            ResponseCode::NXDomain
        };
        Step::Answer(self.negative(rcode, apex))
    }

    /// Whether some address with a PTR lies under the first `count` labels
    /// of `name` (which is inside a zone, above full addresses).
    fn has_addresses_under(&self, name: &ReverseName, count: usize) -> bool {
        let Some(prefix) = name.prefix(count) else {
            return false; // not digits: no address can be under it
        };
        let bits = name.unit() * count as u8;
        if self.snap.reverse_nodes.get(&(prefix, bits)).is_some() {
            return true;
        }
        // Custom hosts are few; they are not indexed.
        self.hosts.ptr_addresses().any(|ip| {
            IpNet::new(*ip, bits)
                .map(|n| n.network() == prefix)
                .unwrap_or(false)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rn(s: &str) -> ReverseName {
        ReverseName::parse(&LowerName::from(Name::from_ascii(s).unwrap())).unwrap()
    }

    #[test]
    fn names_spell_addresses_and_prefixes() {
        assert_eq!(
            rn("10.0.96.10.in-addr.arpa.").address(),
            Some("10.96.0.10".parse().unwrap())
        );
        assert_eq!(rn("0.96.10.in-addr.arpa.").address(), None);
        assert_eq!(rn("010.0.96.10.in-addr.arpa.").address(), None);
        assert_eq!(
            rn("0.96.10.in-addr.arpa.").prefix(3),
            Some("10.96.0.0".parse().unwrap())
        );
        let v6 = "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.6.9.0.0.0.0.d.f.ip6.arpa.";
        assert_eq!(rn(v6).address(), Some("fd00:96::1".parse().unwrap()));
        assert!(
            ReverseName::parse(&LowerName::from(Name::from_ascii("example.com.").unwrap()))
                .is_none()
        );
    }

    #[test]
    fn cidrs_become_zones_rounded_in() {
        let cfg = crate::cluster::tests::cluster_local(&[
            "10.96.0.0/12",
            "fd00:10:96::/112",
            "10.244.0.0/16",
        ]);
        let zone_of = |s: &str| {
            let n = rn(s);
            n.zone(&cfg).map(|l| n.ancestor(l).to_string())
        };
        for (name, zone) in [
            ("96.10.in-addr.arpa.", Some("96.10.in-addr.arpa.")),
            ("1.2.111.10.in-addr.arpa.", Some("111.10.in-addr.arpa.")),
            ("1.2.112.10.in-addr.arpa.", None),
            ("10.in-addr.arpa.", None),
            ("x.96.10.in-addr.arpa.", Some("96.10.in-addr.arpa.")),
            ("5.244.10.in-addr.arpa.", Some("244.10.in-addr.arpa.")),
        ] {
            assert_eq!(zone_of(name).as_deref(), zone, "{name}");
        }
        assert_eq!(
            zone_of("0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.6.9.0.0.0.1.0.0.0.0.d.f.ip6.arpa."),
            Some("0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.6.9.0.0.0.1.0.0.0.0.d.f.ip6.arpa.".into()),
            "a /112 has its apex at 28 nibbles"
        );
        assert_eq!(
            interior_prefixes(&cfg, &"10.244.3.7".parse().unwrap()),
            [("10.244.3.0".parse().unwrap(), 24)]
        );
        assert_eq!(
            interior_prefixes(&cfg, &"10.100.3.7".parse().unwrap()),
            [("10.100.3.0".parse().unwrap(), 24)]
        );
        assert_eq!(interior_prefixes(&cfg, &"192.168.0.1".parse().unwrap()), []);
        assert_eq!(
            interior_prefixes(&cfg, &"fd00:10:96::1234".parse().unwrap()).len(),
            3,
            "a /112 zone has 28 labels: 29, 30 and 31 are interior"
        );
    }
}

//! What the cluster zone answers from: its static settings and the
//! immutable [`Snapshot`] the store swaps in after every batch. The store
//! writes it, the lookup reads it; neither needs the other's code.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use hickory_proto::rr::{LowerName, Name};
use ipnet::IpNet;

use super::model::{EndpointInfo, ObjectKey, ServiceInfo, ServiceKind, SliceInfo};
use super::sharded::ShardedMap;

/// `--pod-records`: what names under `pod.<zone>` answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PodRecords {
    /// Every name under `pod.<zone>` is NXDOMAIN.
    Disabled,
    /// `a-b-c-d.<ns>.pod.<zone>` answers the address spelled in the name,
    /// without checking that such a pod exists (kubeadm's default).
    Insecure,
}

/// `--endpoint-records`: which endpoints get names and PTR records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EndpointRecords {
    /// The endpoints of every Service: `<hostname or dashed IP>.<svc>...`
    /// A/AAAA and a PTR to that name, as CoreDNS answers them.
    All,
    /// What the schema requires: names for the endpoints of headless
    /// Services, PTR only for endpoints with a `hostname`.
    Headless,
}

/// Static settings of the cluster zone.
#[derive(Debug, Clone)]
pub struct ZoneConfig {
    /// The cluster domain, lower case and absolute (`cluster.local.`).
    pub domain: LowerName,
    /// TTL of every record; also the SOA minimum (negative-caching TTL).
    pub ttl: u32,
    /// Reverse zones we are authoritative for, whole: every name in them is
    /// answered here, never forwarded.
    pub reverse_cidrs: Vec<IpNet>,
    pub pod_records: PodRecords,
    pub endpoint_records: EndpointRecords,
    /// The cluster DNS Service (`kube-system/kube-dns`): the apex NS names
    /// it when it exists.
    pub dns_service: ObjectKey,
    /// Addresses of `ns.dns.<zone>` when the DNS Service does not exist:
    /// the agent's own listen addresses.
    pub ns_addresses: Vec<IpAddr>,
}

impl ZoneConfig {
    /// `domain` like `cluster.local` (a trailing dot is accepted); the other
    /// settings take their flags' defaults.
    pub fn new(
        domain: &str,
        ttl: u32,
        reverse_cidrs: Vec<IpNet>,
    ) -> Result<Self, hickory_proto::ProtoError> {
        let mut name = Name::from_ascii(domain)?;
        name.set_fqdn(true);
        Ok(Self {
            domain: LowerName::new(&name),
            ttl,
            reverse_cidrs,
            pod_records: PodRecords::Insecure,
            endpoint_records: EndpointRecords::All,
            dns_service: ObjectKey::new(DNS_SERVICE_NAMESPACE, DNS_SERVICE_NAME),
            ns_addresses: Vec::new(),
        })
    }
}

/// Where kubeadm, and every distribution that keeps its name, puts the
/// cluster DNS Service.
pub const DNS_SERVICE_NAMESPACE: &str = "kube-system";
pub const DNS_SERVICE_NAME: &str = "kube-dns";

/// A Service with the EndpointSlices that belong to it.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceView {
    pub svc: Arc<ServiceInfo>,
    pub slices: Vec<Arc<SliceInfo>>,
}

/// A name a reverse (PTR) query answers with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PtrTarget {
    /// Shared with the view, so 50k endpoint PTRs do not copy 50k keys.
    pub service: Arc<ServiceInfo>,
    pub host: PtrHost,
}

/// Which name under the Service a PTR target is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PtrHost {
    /// The Service name itself (a ClusterIP).
    Service,
    /// An endpoint's `hostname`.
    Hostname(Box<str>),
    /// An endpoint without one: its address dashed, spelled when answered
    /// rather than stored (one string less per endpoint).
    Dashed,
}

impl ServiceView {
    /// Published endpoints (ready, or all with `publishNotReadyAddresses`).
    pub fn published(&self) -> impl Iterator<Item = &EndpointInfo> + '_ {
        self.slices
            .iter()
            .flat_map(|s| s.endpoints.iter())
            .filter(|e| e.published(&self.svc))
    }

    /// Whether `<host>.<svc>...` names exist for this Service's endpoints.
    pub fn has_endpoint_names(&self, mode: EndpointRecords) -> bool {
        match self.svc.kind {
            ServiceKind::Headless => true,
            ServiceKind::ClusterIp(_) => mode == EndpointRecords::All,
            ServiceKind::ExternalName(_) => false,
        }
    }

    /// Addresses that reverse-resolve to this service or its endpoints.
    pub(super) fn ptr_targets(&self, mode: EndpointRecords) -> Vec<(IpAddr, PtrHost)> {
        let mut targets: Vec<(IpAddr, PtrHost)> = match &self.svc.kind {
            ServiceKind::ClusterIp(ips) => ips.iter().map(|ip| (*ip, PtrHost::Service)).collect(),
            _ => Vec::new(),
        };
        if !self.has_endpoint_names(mode) {
            return targets;
        }
        for ep in self.published() {
            for ip in &ep.addresses {
                let host = match (&ep.hostname, mode) {
                    (Some(h), _) => PtrHost::Hostname(h.clone()),
                    (None, EndpointRecords::All) => PtrHost::Dashed,
                    // The schema gives PTRs to real hostnames only.
                    (None, EndpointRecords::Headless) => continue,
                };
                targets.push((*ip, host));
            }
        }
        targets
    }
}

/// The name of an endpoint without `hostname`: its address with `.`/`:`
/// replaced by `-` (`10-0-0-1`, `fd00--1`), as CoreDNS spells it.
pub fn dashed(ip: &IpAddr) -> String {
    ip.to_string().replace(['.', ':'], "-")
}

/// The address a dashed label spells (`10-1-2-3`, `fd00--1`), if any.
pub fn parse_dashed(label: &str) -> Option<IpAddr> {
    if let Ok(v4) = label.replace('-', ".").parse::<Ipv4Addr>() {
        return Some(IpAddr::V4(v4));
    }
    label
        .replace('-', ":")
        .parse::<Ipv6Addr>()
        .ok()
        .map(IpAddr::V6)
}

impl EndpointInfo {
    /// The names this endpoint answers to under its Service: its `hostname`,
    /// else each of its addresses dashed. The first is its SRV target.
    pub fn hosts(&self) -> Vec<Box<str>> {
        match &self.hostname {
            Some(h) => vec![h.clone()],
            None => self.addresses.iter().map(|ip| dashed(ip).into()).collect(),
        }
    }

    /// Whether `host` is one of [`Self::hosts`]; `host_ip` is
    /// `parse_dashed(host)`, parsed once for all the endpoints compared.
    pub fn answers_to(&self, host: &str, host_ip: Option<IpAddr>) -> bool {
        match (&self.hostname, host_ip) {
            (Some(h), _) => &**h == host,
            // Only the canonical spelling: `10-0-0-01` is not a name.
            (None, Some(ip)) => self.addresses.contains(&ip) && dashed(&ip) == host,
            (None, None) => false,
        }
    }
}

/// What readers see: immutable, swapped as a whole.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub generation: u64,
    pub ready: bool,
    pub services: ShardedMap<ObjectKey, Arc<ServiceView>>,
    /// Number of services per namespace: `<ns>.svc.<zone>` exists (NODATA)
    /// while the namespace has at least one.
    pub namespaces: Arc<HashMap<Box<str>, u32>>,
    pub reverse: ShardedMap<IpAddr, Vec<PtrTarget>>,
    /// How many addresses of `reverse` lie under each label-aligned prefix
    /// strictly inside a `--reverse-cidr` zone: such a name exists (an empty
    /// non-terminal, NODATA) exactly when its count is not zero.
    pub reverse_nodes: ShardedMap<(IpAddr, u8), u32>,
}

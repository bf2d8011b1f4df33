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

/// The Services an address reverse-resolves under. The index keeps only
/// these pointers; the PTR names themselves (the Service, an endpoint's
/// hostname or dashed address) are spelled from the Service's view when
/// asked ([`ServiceView::ptr_hosts`]), so an endpoint costs one slot here,
/// not a stored name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PtrOwners {
    /// The usual case: one Service.
    One(Arc<ServiceInfo>),
    /// A pod selected by several Services, in the order they came.
    Many(Box<[Arc<ServiceInfo>]>),
}

impl PtrOwners {
    pub fn iter(&self) -> impl Iterator<Item = &Arc<ServiceInfo>> {
        match self {
            Self::One(svc) => std::slice::from_ref(svc).iter(),
            Self::Many(list) => list.iter(),
        }
    }

    /// Adds `svc`.
    pub(super) fn push(&mut self, svc: Arc<ServiceInfo>) {
        let mut list: Vec<Arc<ServiceInfo>> = self.iter().cloned().collect();
        list.push(svc);
        *self = Self::Many(list.into_boxed_slice());
    }

    /// Removes the Service `key`; None when no Service is left.
    pub(super) fn without(&self, key: &ObjectKey) -> Option<Self> {
        let mut list: Vec<Arc<ServiceInfo>> =
            self.iter().filter(|s| s.key != *key).cloned().collect();
        match list.len() {
            0 => None,
            1 => list.pop().map(Self::One),
            _ => Some(Self::Many(list.into_boxed_slice())),
        }
    }
}

/// The reverse index, one table per address family: a slot keyed by an
/// `IpAddr` is padded to 24 bytes, an `Ipv4Addr` key takes 4, and at 250k
/// endpoints the slots are most of the index.
#[derive(Debug, Clone, Default)]
pub struct ReverseIndex {
    v4: ShardedMap<Ipv4Addr, PtrOwners>,
    v6: ShardedMap<Ipv6Addr, PtrOwners>,
}

impl ReverseIndex {
    pub fn get(&self, ip: &IpAddr) -> Option<&PtrOwners> {
        match ip {
            IpAddr::V4(ip) => self.v4.get(ip),
            IpAddr::V6(ip) => self.v6.get(ip),
        }
    }

    pub(super) fn get_mut(&mut self, ip: &IpAddr) -> Option<&mut PtrOwners> {
        match ip {
            IpAddr::V4(ip) => self.v4.get_mut(ip),
            IpAddr::V6(ip) => self.v6.get_mut(ip),
        }
    }

    pub(super) fn insert(&mut self, ip: IpAddr, owners: PtrOwners) -> Option<PtrOwners> {
        match ip {
            IpAddr::V4(ip) => self.v4.insert(ip, owners),
            IpAddr::V6(ip) => self.v6.insert(ip, owners),
        }
    }

    pub(super) fn remove(&mut self, ip: &IpAddr) -> Option<PtrOwners> {
        match ip {
            IpAddr::V4(ip) => self.v4.remove(ip),
            IpAddr::V6(ip) => self.v6.remove(ip),
        }
    }

    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Which name under the Service a PTR target is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PtrHost<'a> {
    /// The Service name itself (a ClusterIP).
    Service,
    /// An endpoint's `hostname`.
    Hostname(&'a str),
    /// An endpoint without one: its address dashed.
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

    /// Addresses that reverse-resolve to this service or its endpoints,
    /// each once, in order.
    pub(super) fn ptr_addresses(&self, mode: EndpointRecords) -> Vec<IpAddr> {
        let mut ips: Vec<IpAddr> = match &self.svc.kind {
            ServiceKind::ClusterIp(ips) => ips.clone(),
            _ => Vec::new(),
        };
        if self.has_endpoint_names(mode) {
            for ep in self.published() {
                // The schema gives PTRs to real hostnames only.
                if ep.hostname().is_some() || mode == EndpointRecords::All {
                    ips.extend(ep.addresses().iter().copied());
                }
            }
        }
        ips.sort_unstable();
        ips.dedup();
        ips
    }

    /// The names under this Service that `ip` reverse-resolves to, in the
    /// order of [`Self::ptr_addresses`]'s sources: the Service for its
    /// ClusterIP, then each published endpoint with that address.
    pub fn ptr_hosts(&self, ip: &IpAddr, mode: EndpointRecords) -> Vec<PtrHost<'_>> {
        let mut hosts = Vec::new();
        if let ServiceKind::ClusterIp(ips) = &self.svc.kind
            && ips.contains(ip)
        {
            hosts.push(PtrHost::Service);
        }
        if !self.has_endpoint_names(mode) {
            return hosts;
        }
        for ep in self.published().filter(|ep| ep.addresses().contains(ip)) {
            hosts.push(match (ep.hostname(), mode) {
                (Some(h), _) => PtrHost::Hostname(h),
                (None, EndpointRecords::All) => PtrHost::Dashed,
                (None, EndpointRecords::Headless) => continue,
            });
        }
        hosts
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
        match self.hostname() {
            Some(h) => vec![h.into()],
            None => self
                .addresses()
                .iter()
                .map(|ip| dashed(ip).into())
                .collect(),
        }
    }

    /// Whether `host` is one of [`Self::hosts`]; `host_ip` is
    /// `parse_dashed(host)`, parsed once for all the endpoints compared.
    pub fn answers_to(&self, host: &str, host_ip: Option<IpAddr>) -> bool {
        match (self.hostname(), host_ip) {
            (Some(h), _) => h == host,
            // Only the canonical spelling: `10-0-0-01` is not a name.
            (None, Some(ip)) => self.addresses().contains(&ip) && dashed(&ip) == host,
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
    pub namespaces: Arc<HashMap<Arc<str>, u32>>,
    pub reverse: ReverseIndex,
    /// How many addresses of `reverse` lie under each label-aligned prefix
    /// strictly inside a `--reverse-cidr` zone: such a name exists (an empty
    /// non-terminal, NODATA) exactly when its count is not zero.
    pub reverse_nodes: ShardedMap<(IpAddr, u8), u32>,
}

//! What the cluster zone answers from: its static settings and the
//! immutable [`Snapshot`] the store swaps in after every batch. The store
//! writes it, the lookup reads it; neither needs the other's code.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use hickory_proto::rr::{LowerName, Name};
use ipnet::IpNet;

use super::model::{ObjectKey, ServiceInfo, ServiceKind, SliceInfo};
use super::sharded::ShardedMap;

/// Static settings of the cluster zone.
#[derive(Debug, Clone)]
pub struct ZoneConfig {
    /// The cluster domain, lower case and absolute (`cluster.local.`).
    pub domain: LowerName,
    /// TTL of every record; also the SOA minimum (negative-caching TTL).
    pub ttl: u32,
    /// Reverse zones we are authoritative for (NXDOMAIN for unknown IPs).
    pub reverse_cidrs: Vec<IpNet>,
}

impl ZoneConfig {
    /// `domain` like `cluster.local` (a trailing dot is accepted).
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
        })
    }
}

/// A Service with the EndpointSlices that belong to it.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceView {
    pub svc: Arc<ServiceInfo>,
    pub slices: Vec<Arc<SliceInfo>>,
}

/// A name a reverse (PTR) query answers with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PtrTarget {
    pub service: ObjectKey,
    /// Endpoint hostname; `None` for a ClusterIP.
    pub hostname: Option<Box<str>>,
}

impl ServiceView {
    /// Addresses that reverse-resolve to this service or its endpoints.
    pub(super) fn ptr_targets(&self) -> Vec<(IpAddr, Option<Box<str>>)> {
        match &self.svc.kind {
            ServiceKind::ClusterIp(ips) => ips.iter().map(|ip| (*ip, None)).collect(),
            ServiceKind::Headless => self
                .slices
                .iter()
                .flat_map(|s| s.endpoints.iter())
                .filter(|e| e.published(&self.svc))
                .filter_map(|e| e.hostname.as_ref().map(|h| (e, h)))
                .flat_map(|(e, h)| e.addresses.iter().map(move |ip| (*ip, Some(h.clone()))))
                .collect(),
            ServiceKind::ExternalName(_) => Vec::new(),
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
}

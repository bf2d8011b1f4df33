//! What the cluster zone answers from: its static settings and the
//! immutable [`Snapshot`] the store swaps in after every batch. The store
//! writes it, the lookup reads it; neither needs the other's code.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use hickory_proto::rr::{LowerName, Name};
use ipnet::IpNet;

use super::model::{EndpointInfo, ObjectKey, ServiceInfo, ServiceKind, SliceInfo};
use std::mem::size_of;

use super::sharded::{SHARDS, ShardedMap};

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
    pub slices: SliceList,
}

/// The EndpointSlices of one Service, sorted by name: usually exactly one,
/// held inline (a list of one would be a heap block of its own per
/// Service).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SliceList {
    One(Arc<SliceInfo>),
    /// None, or more than one.
    Other(Box<[Arc<SliceInfo>]>),
}

impl Default for SliceList {
    fn default() -> Self {
        Self::Other(Box::default())
    }
}

impl std::ops::Deref for SliceList {
    type Target = [Arc<SliceInfo>];

    fn deref(&self) -> &[Arc<SliceInfo>] {
        match self {
            Self::One(slice) => std::slice::from_ref(slice),
            Self::Other(list) => list,
        }
    }
}

impl<'a> IntoIterator for &'a SliceList {
    type Item = &'a Arc<SliceInfo>;
    type IntoIter = std::slice::Iter<'a, Arc<SliceInfo>>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl From<Vec<Arc<SliceInfo>>> for SliceList {
    fn from(mut list: Vec<Arc<SliceInfo>>) -> Self {
        match list.len() {
            1 => Self::One(list.remove(0)),
            _ => Self::Other(list.into_boxed_slice()),
        }
    }
}

/// A view in [`Views`] under the key its Service holds.
#[derive(Debug, Clone)]
struct ByServiceKey(Arc<ServiceView>);

impl std::hash::Hash for ByServiceKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.svc.key.hash(state)
    }
}

impl PartialEq for ByServiceKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.svc.key == other.0.svc.key
    }
}

impl Eq for ByServiceKey {}

impl std::borrow::Borrow<ObjectKey> for ByServiceKey {
    fn borrow(&self) -> &ObjectKey {
        &self.0.svc.key
    }
}

/// Every Service's view, by its key: a set under the key the Service
/// holds, so a slot is one pointer where a map from a copy of the key took
/// five (docs/design.md#records-path, Memory).
#[derive(Debug, Clone, Default)]
pub struct Views(ShardedMap<ByServiceKey, ()>);

impl Views {
    pub fn get(&self, key: &ObjectKey) -> Option<&Arc<ServiceView>> {
        self.0.get_key_value(key).map(|(view, ())| &view.0)
    }

    /// Sets the view of its Service.
    pub(super) fn insert(&mut self, view: Arc<ServiceView>) {
        // A map keeps the key it holds on insert: take the old one out.
        self.0.remove(&view.svc.key);
        self.0.insert(ByServiceKey(view), ());
    }

    pub(super) fn remove(&mut self, key: &ObjectKey) {
        self.0.remove(key);
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The Services an address reverse-resolves under: the first one to
/// claim it, then any others (a pod selected by several Services), in the
/// order they came. The index keeps only these pointers; the PTR names
/// themselves (the Service, an endpoint's hostname or dashed address) are
/// spelled from the Service's view when asked ([`ServiceView::ptr_hosts`]),
/// so an endpoint costs one entry here, not a stored name.
#[derive(Debug, Clone, Copy)]
pub struct PtrOwners<'a> {
    first: &'a Arc<ServiceInfo>,
    more: &'a [Arc<ServiceInfo>],
}

impl<'a> PtrOwners<'a> {
    pub fn iter(&self) -> impl Iterator<Item = &'a Arc<ServiceInfo>> + use<'a> {
        std::iter::once(self.first).chain(self.more.iter())
    }
}

/// Shards of a sorted table from an address to its first owner: two
/// parallel sorted vectors per shard, so an entry is the address and one
/// pointer (12 bytes for IPv4), where a hash-map slot with room for several
/// owners took 24 and the map ran about half full (docs/design.md#records-path,
/// Memory). Cloning copies the shard pointers; a write copies the one shard
/// it touches while an older snapshot shares it.
#[derive(Debug)]
struct SortedShards<K> {
    shards: Vec<Arc<Shard<K>>>,
    len: usize,
}

#[derive(Debug, Clone, Default)]
struct Shard<K> {
    keys: Vec<K>,
    owners: Vec<Arc<ServiceInfo>>,
}

impl<K> Clone for SortedShards<K> {
    fn clone(&self) -> Self {
        Self {
            shards: self.shards.clone(),
            len: self.len,
        }
    }
}

impl<K: Ord + Copy + std::hash::Hash> Default for SortedShards<K> {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS)
                .map(|_| {
                    Arc::new(Shard {
                        keys: Vec::new(),
                        owners: Vec::new(),
                    })
                })
                .collect(),
            len: 0,
        }
    }
}

impl<K: Ord + Copy + std::hash::Hash> SortedShards<K> {
    fn shard_of(key: &K) -> usize {
        // A fixed hasher: the shard of a key must not change between calls.
        use std::hash::BuildHasher;
        let hasher = std::hash::BuildHasherDefault::<std::hash::DefaultHasher>::default();
        (hasher.hash_one(key) as usize) % SHARDS
    }

    fn get(&self, key: &K) -> Option<&Arc<ServiceInfo>> {
        let shard = &self.shards[Self::shard_of(key)];
        let at = shard.keys.binary_search(key).ok()?;
        Some(&shard.owners[at])
    }

    /// Sets the first owner of `key`; true when `key` is new.
    fn set(&mut self, key: K, owner: Arc<ServiceInfo>) -> bool {
        let shard = Arc::make_mut(&mut self.shards[Self::shard_of(&key)]);
        match shard.keys.binary_search(&key) {
            Ok(at) => {
                shard.owners[at] = owner;
                false
            }
            Err(at) => {
                // Grow by an eighth, not double: the tables live as long as
                // the cluster, and a shard is copied whole on write anyway.
                if shard.keys.len() == shard.keys.capacity() {
                    let more = (shard.keys.len() / 8).max(4);
                    shard.keys.reserve_exact(more);
                    shard.owners.reserve_exact(more);
                }
                shard.keys.insert(at, key);
                shard.owners.insert(at, owner);
                self.len += 1;
                true
            }
        }
    }

    fn remove(&mut self, key: &K) {
        let idx = Self::shard_of(key);
        let Ok(at) = self.shards[idx].keys.binary_search(key) else {
            return;
        };
        let shard = Arc::make_mut(&mut self.shards[idx]);
        shard.keys.remove(at);
        shard.owners.remove(at);
        self.len -= 1;
    }

    fn heap_bytes(&self) -> usize {
        let entry = size_of::<K>() + size_of::<Arc<ServiceInfo>>();
        self.shards
            .iter()
            .map(|s| s.keys.capacity().max(s.owners.capacity()) * entry)
            .sum()
    }
}

/// The reverse index, one table per address family (an `IpAddr` key would
/// pad an IPv4 entry to 24 bytes), with the rare further owners of an
/// address aside.
#[derive(Debug, Clone, Default)]
pub struct ReverseIndex {
    v4: SortedShards<Ipv4Addr>,
    v6: SortedShards<Ipv6Addr>,
    /// The owners after the first, of the addresses that have several.
    more: Arc<HashMap<IpAddr, Vec<Arc<ServiceInfo>>>>,
}

impl ReverseIndex {
    pub fn get(&self, ip: &IpAddr) -> Option<PtrOwners<'_>> {
        let first = match ip {
            IpAddr::V4(ip) => self.v4.get(ip),
            IpAddr::V6(ip) => self.v6.get(ip),
        }?;
        let more = self.more.get(ip).map_or(&[][..], |v| v.as_slice());
        Some(PtrOwners { first, more })
    }

    /// Adds `svc` to the owners of `ip`; true when `ip` had none.
    pub(super) fn add(&mut self, ip: IpAddr, svc: Arc<ServiceInfo>) -> bool {
        if self.get(&ip).is_some() {
            Arc::make_mut(&mut self.more)
                .entry(ip)
                .or_default()
                .push(svc);
            return false;
        }
        match ip {
            IpAddr::V4(ip) => self.v4.set(ip, svc),
            IpAddr::V6(ip) => self.v6.set(ip, svc),
        }
    }

    /// Removes the Service `key` from the owners of `ip`; true when `ip`
    /// has none left (and left the index).
    pub(super) fn remove(&mut self, ip: &IpAddr, key: &ObjectKey) -> bool {
        let Some(owners) = self.get(ip) else {
            return false;
        };
        let mut rest: Vec<Arc<ServiceInfo>> =
            owners.iter().filter(|s| s.key != *key).cloned().collect();
        let had_more = !owners.more.is_empty();
        if rest.is_empty() {
            match ip {
                IpAddr::V4(ip) => self.v4.remove(ip),
                IpAddr::V6(ip) => self.v6.remove(ip),
            }
        } else {
            let first = rest.remove(0);
            match ip {
                IpAddr::V4(ip) => self.v4.set(*ip, first),
                IpAddr::V6(ip) => self.v6.set(*ip, first),
            };
        }
        if had_more {
            let more = Arc::make_mut(&mut self.more);
            if rest.is_empty() {
                more.remove(ip);
            } else {
                more.insert(*ip, rest);
            }
        }
        self.get(ip).is_none()
    }

    pub fn len(&self) -> usize {
        self.v4.len + self.v6.len
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Approximate bytes of the tables (what the memory metric counts).
    pub fn heap_bytes(&self) -> usize {
        let more: usize = self
            .more
            .values()
            .map(|v| size_of::<(IpAddr, Vec<Arc<ServiceInfo>>)>() + 8 * v.capacity())
            .sum();
        self.v4.heap_bytes() + self.v6.heap_bytes() + more
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
            ServiceKind::ClusterIp(ips) => ips.to_vec(),
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
    pub services: Views,
    /// Number of services per namespace: `<ns>.svc.<zone>` exists (NODATA)
    /// while the namespace has at least one.
    pub namespaces: Arc<HashMap<Arc<str>, u32>>,
    pub reverse: ReverseIndex,
    /// How many addresses of `reverse` lie under each label-aligned prefix
    /// strictly inside a `--reverse-cidr` zone: such a name exists (an empty
    /// non-terminal, NODATA) exactly when its count is not zero.
    pub reverse_nodes: ShardedMap<(IpAddr, u8), u32>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::model::ServiceKind;

    fn owner(name: &str) -> Arc<ServiceInfo> {
        Arc::new(ServiceInfo {
            key: ObjectKey::new("default", name),
            kind: ServiceKind::Headless,
            ports: Box::default(),
            publish_not_ready: false,
        })
    }

    fn names(index: &ReverseIndex, ip: &IpAddr) -> Vec<String> {
        index.get(ip).map_or_else(Vec::new, |owners| {
            owners.iter().map(|s| s.key.name.to_string()).collect()
        })
    }

    #[test]
    fn reverse_owners_keep_their_order_and_leave_with_the_last() {
        let mut index = ReverseIndex::default();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let v6: IpAddr = "fd00::1".parse().unwrap();
        assert!(index.add(ip, owner("a")));
        assert!(!index.add(ip, owner("b")));
        assert!(!index.add(ip, owner("c")));
        assert!(index.add(v6, owner("a")));
        let before = index.clone();
        assert_eq!(names(&index, &ip), ["a", "b", "c"]);
        assert!(!index.remove(&ip, &ObjectKey::new("default", "a")));
        assert_eq!(names(&index, &ip), ["b", "c"]);
        assert!(!index.remove(&ip, &ObjectKey::new("default", "c")));
        assert_eq!(names(&index, &ip), ["b"]);
        assert!(index.remove(&ip, &ObjectKey::new("default", "b")));
        assert_eq!(names(&index, &ip), Vec::<String>::new());
        assert!(index.more.is_empty());
        assert_eq!(index.len(), 1);
        assert_eq!(names(&index, &v6), ["a"]);
        assert_eq!(
            names(&before, &ip),
            ["a", "b", "c"],
            "a clone is not changed"
        );
        assert_eq!(before.len(), 2);
        for i in 0..2000u32 {
            index.add(IpAddr::V4(i.into()), owner("x"));
        }
        assert_eq!(index.len(), 2001);
        assert_eq!(names(&index, &IpAddr::V4(1234.into())), ["x"]);
    }
}

//! The record store: cluster objects in, an immutable [`Snapshot`] out.
//!
//! Writers (the sources) call [`ClusterZone::apply`] with a batch of
//! [`Change`]s. Under one mutex the store updates its object tables, rebuilds
//! the view of every Service the batch touched (and only those), and swaps a
//! new snapshot in with `arc-swap`. Readers never lock and never see a
//! half-applied batch; a relist is one `Replace*` change, so it never shows
//! an empty window.

use std::collections::HashSet;
use std::mem::size_of;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use hickory_proto::rr::{LowerName, RecordType};
use tokio::sync::watch;

use super::hosts::HostsTable;
use super::metrics::ClusterMetrics;
use super::model::{ApproxBytes, ByKey, Keyed, NamedPort, ObjectKey, ServiceInfo, SliceInfo};
use super::reverse::interior_prefixes;
use super::snapshot::{PtrOwners, ServiceView, Snapshot, ZoneConfig};
use crate::zone::{Zone, ZoneLookup};

/// One change to cluster state, from any source. Objects come in `Arc`s
/// so a source that keeps them (the manifests folder) shares them with the
/// store instead of holding a second copy of the cluster.
#[derive(Debug, Clone)]
pub enum Change {
    UpsertService(Arc<ServiceInfo>),
    DeleteService(ObjectKey),
    UpsertSlice(Arc<SliceInfo>),
    DeleteSlice(ObjectKey),
    /// A full list of Services (a relist): anything not in it is deleted.
    ReplaceServices(Vec<Arc<ServiceInfo>>),
    /// A full list of EndpointSlices (a relist).
    ReplaceSlices(Vec<Arc<SliceInfo>>),
}

/// A source whose first full sync the zone waits for before answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SyncSource {
    Services,
    EndpointSlices,
    Manifests,
}

#[derive(Default)]
struct Writer {
    /// Sets under the objects' own keys ([`ByKey`]).
    services: HashSet<ByKey<ServiceInfo>>,
    slices: HashSet<ByKey<SliceInfo>>,
    /// A Service's slices, sorted by name: usually one or two, so a sorted
    /// `Vec` (a BTreeMap node alone costs some 300 bytes per Service), in a
    /// set under the Service key the slices hold.
    by_service: HashSet<SliceGroup>,
    working: Snapshot,
    synced: HashSet<SyncSource>,
    /// Namespaces and port names: a few strings that every object repeats,
    /// held once ([`Writer::intern`]).
    strings: HashSet<Arc<str>>,
    /// `strings.len()` after its last purge of unused strings.
    strings_live: usize,
    object_bytes: usize,
    endpoints: usize,
    reverse_entries: usize,
}

/// The slices of one Service (never empty), in a set under the Service key
/// they hold: the set's slot is the `Vec` alone.
struct SliceGroup(Vec<Arc<SliceInfo>>);

impl SliceGroup {
    fn service(&self) -> &ObjectKey {
        &self.0[0].service
    }
}

impl std::hash::Hash for SliceGroup {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.service().hash(state)
    }
}

impl PartialEq for SliceGroup {
    fn eq(&self, other: &Self) -> bool {
        self.service() == other.service()
    }
}

impl Eq for SliceGroup {}

impl std::borrow::Borrow<ObjectKey> for SliceGroup {
    fn borrow(&self) -> &ObjectKey {
        self.service()
    }
}

/// The Kubernetes zone: implements [`Zone`] for the resolver.
pub struct ClusterZone {
    pub(crate) config: ZoneConfig,
    snapshot: ArcSwap<Snapshot>,
    pub(crate) hosts: ArcSwap<HostsTable>,
    writer: Mutex<Writer>,
    required: Vec<SyncSource>,
    changes: watch::Sender<u64>,
    metrics: ClusterMetrics,
}

impl ClusterZone {
    /// A zone that answers once every source in `required` has synced.
    pub fn new(config: ZoneConfig, required: &[SyncSource]) -> Self {
        let (changes, _) = watch::channel(0);
        let zone = Self {
            config,
            snapshot: ArcSwap::from_pointee(Snapshot::default()),
            hosts: ArcSwap::from_pointee(HostsTable::default()),
            writer: Mutex::new(Writer::default()),
            required: required.to_vec(),
            changes,
            metrics: ClusterMetrics::default(),
        };
        if required.is_empty() {
            zone.publish(&mut zone.lock_writer(), true);
        }
        zone
    }

    pub fn metrics(&self) -> &ClusterMetrics {
        &self.metrics
    }

    /// The current snapshot (for tests, inspection and the scale figures).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    fn lock_writer(&self) -> std::sync::MutexGuard<'_, Writer> {
        // A panic while holding the lock leaves the tables as they were
        // before the batch's rebuild finished; keep serving them.
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies a batch atomically: readers see all of it or none of it.
    pub fn apply(&self, batch: impl IntoIterator<Item = Change>) {
        let mut w = self.lock_writer();
        let mut dirty = HashSet::new();
        for change in batch {
            w.apply_one(change, &mut dirty);
        }
        if dirty.is_empty() {
            return;
        }
        for key in &dirty {
            w.rebuild(key, &self.config);
        }
        self.publish(&mut w, false);
    }

    /// Records that `source` finished its first full sync.
    pub fn mark_synced(&self, source: SyncSource) {
        let mut w = self.lock_writer();
        if w.synced.insert(source) && !w.working.ready {
            let ready = self.required.iter().all(|s| w.synced.contains(s));
            if ready {
                tracing::info!(?source, "cluster zone ready: first full sync complete");
            }
            self.publish(&mut w, ready);
        }
    }

    /// Replaces the custom host records (from the file or the ConfigMap).
    pub fn set_hosts(&self, hosts: HostsTable) {
        if **self.hosts.load() == hosts {
            return;
        }
        self.metrics.custom_records.set(hosts.len() as i64);
        self.hosts.store(Arc::new(hosts));
        self.changes.send_modify(|g| *g += 1);
    }

    fn publish(&self, w: &mut Writer, ready: bool) {
        w.working.generation += 1;
        w.working.ready |= ready;
        let snap = w.working.clone();
        let m = &self.metrics;
        m.services.set(w.services.len() as i64);
        m.endpoint_slices.set(w.slices.len() as i64);
        m.endpoints.set(w.endpoints as i64);
        m.memory_bytes.set(w.approx_bytes() as i64);
        m.ready.set(i64::from(snap.ready));
        m.generation.set(snap.generation as i64);
        self.snapshot.store(Arc::new(snap));
        self.changes.send_modify(|g| *g += 1);
    }

    /// `svc` as the store holds it when equal to what it holds, else in an
    /// `Arc` of its own. A source calls this for every object it buffers or
    /// keeps, so a relist in progress and a manifests folder share the
    /// unchanged objects with the store: no second copy of the cluster.
    /// A new object's repeated strings (namespace, port names, its
    /// Service's name) are the ones the store holds already.
    pub fn share_service(&self, mut svc: ServiceInfo) -> Arc<ServiceInfo> {
        let mut w = self.lock_writer();
        if let Some(held) = held_equal(&w.services, &svc) {
            return held;
        }
        w.intern_names(&mut svc.key, &mut svc.ports);
        Arc::new(svc)
    }

    /// [`Self::share_service`] for an EndpointSlice.
    pub fn share_slice(&self, mut slice: SliceInfo) -> Arc<SliceInfo> {
        let mut w = self.lock_writer();
        if let Some(held) = held_equal(&w.slices, &slice) {
            return held;
        }
        slice.key.namespace = w.intern(&slice.key.namespace);
        w.intern_names(&mut slice.service, &mut slice.ports);
        Arc::new(slice)
    }

    /// Approximate bytes held for cluster state (what the metric reports).
    pub fn approx_bytes(&self) -> usize {
        self.lock_writer().approx_bytes()
    }
}

/// The object `set` holds under `obj`'s key, when equal to `obj`.
fn held_equal<T: Keyed + PartialEq>(set: &HashSet<ByKey<T>>, obj: &T) -> Option<Arc<T>> {
    set.get(obj.key())
        .filter(|held| *held.0 == *obj)
        .map(|held| held.0.clone())
}

/// The keys `set` holds that `list` (a relist) no longer has.
fn missing_from<T: Keyed>(set: &HashSet<ByKey<T>>, list: &[Arc<T>]) -> Vec<ObjectKey> {
    let keep: HashSet<&ObjectKey> = list.iter().map(|o| o.key()).collect();
    set.iter()
        .map(|held| held.0.key())
        .filter(|k| !keep.contains(k))
        .cloned()
        .collect()
}

impl Writer {
    /// The held copy of `s`, added if new. Unused strings are dropped when
    /// the set has doubled since the last purge, so it stays bounded by
    /// what the objects use.
    fn intern(&mut self, s: &Arc<str>) -> Arc<str> {
        if let Some(held) = self.strings.get(s) {
            return held.clone();
        }
        if self.strings.len() >= 2 * self.strings_live.max(64) {
            self.strings.retain(|s| Arc::strong_count(s) > 1);
            self.strings_live = self.strings.len();
        }
        self.strings.insert(s.clone());
        s.clone()
    }

    /// The strings of a Service key and of ports, as held already.
    fn intern_names(&mut self, service: &mut ObjectKey, ports: &mut [NamedPort]) {
        service.namespace = self.intern(&service.namespace);
        if let Some(name) = self.held_service_name(service) {
            service.name = name;
        }
        for port in ports {
            port.name = self.intern(&port.name);
            port.protocol = self.intern(&port.protocol);
        }
    }

    /// The name string of the Service `key` (or of its slices' label) as
    /// the store holds it already.
    fn held_service_name(&self, key: &ObjectKey) -> Option<Arc<str>> {
        self.services
            .get(key)
            .map(|held| held.0.key.name.clone())
            .or_else(|| {
                self.by_service
                    .get(key)
                    .map(|group| group.0[0].service.name.clone())
            })
    }

    fn approx_bytes(&self) -> usize {
        // Object tables, the slice index, the views and the reverse index;
        // hash-table slots are counted as one key + value each.
        let views = self.working.services.len()
            * (size_of::<ServiceView>() + size_of::<ObjectKey>() + 2 * size_of::<usize>())
            + self.slices.len() * size_of::<usize>();
        let index = (self.services.len() + self.slices.len()) * size_of::<usize>()
            + self.by_service.len() * size_of::<SliceGroup>();
        let reverse = self.reverse_entries * (size_of::<(Ipv4Addr, PtrOwners)>() + 8);
        let nodes = self.working.reverse_nodes.len() * (size_of::<((IpAddr, u8), u32)>() + 8);
        self.object_bytes + views + index + reverse + nodes
    }

    fn apply_one(&mut self, change: Change, dirty: &mut HashSet<ObjectKey>) {
        match change {
            Change::UpsertService(svc) => self.upsert_service(svc, dirty),
            Change::DeleteService(key) => {
                if let Some(old) = self.services.take(&key) {
                    self.object_bytes -= old.0.approx_bytes();
                    dirty.insert(key);
                }
            }
            Change::UpsertSlice(slice) => self.upsert_slice(slice, dirty),
            Change::DeleteSlice(key) => self.delete_slice(&key, dirty),
            Change::ReplaceServices(list) => {
                for key in missing_from(&self.services, &list) {
                    self.apply_one(Change::DeleteService(key), dirty);
                }
                for svc in list {
                    self.upsert_service(svc, dirty);
                }
            }
            Change::ReplaceSlices(list) => {
                for key in missing_from(&self.slices, &list) {
                    self.delete_slice(&key, dirty);
                }
                for slice in list {
                    self.upsert_slice(slice, dirty);
                }
            }
        }
    }

    fn upsert_service(&mut self, svc: Arc<ServiceInfo>, dirty: &mut HashSet<ObjectKey>) {
        if self.services.get(&svc.key).is_some_and(|old| old.0 == svc) {
            return;
        }
        self.object_bytes += svc.approx_bytes();
        let key = svc.key.clone();
        if let Some(old) = self.services.replace(ByKey(svc)) {
            self.object_bytes -= old.0.approx_bytes();
        }
        dirty.insert(key);
    }

    fn upsert_slice(&mut self, slice: Arc<SliceInfo>, dirty: &mut HashSet<ObjectKey>) {
        if self
            .slices
            .get(&slice.key)
            .is_some_and(|old| old.0 == slice)
        {
            return;
        }
        // A slice can (in theory) be relabelled to another service.
        self.delete_slice(&slice.key.clone(), dirty);
        self.object_bytes += slice.approx_bytes();
        self.endpoints += slice.endpoints.len();
        let mut set = self
            .by_service
            .take(&slice.service)
            .map(|group| group.0)
            .unwrap_or_default();
        let at = set.partition_point(|s| s.key.name < slice.key.name);
        set.insert(at, slice.clone());
        set.shrink_to_fit();
        self.by_service.insert(SliceGroup(set));
        dirty.insert(slice.service.clone());
        self.slices.insert(ByKey(slice));
    }

    fn delete_slice(&mut self, key: &ObjectKey, dirty: &mut HashSet<ObjectKey>) {
        let Some(ByKey(old)) = self.slices.take(key) else {
            return;
        };
        self.object_bytes -= old.approx_bytes();
        self.endpoints -= old.endpoints.len();
        if let Some(SliceGroup(mut set)) = self.by_service.take(&old.service) {
            set.retain(|s| s.key.name != old.key.name);
            if !set.is_empty() {
                self.by_service.insert(SliceGroup(set));
            }
        }
        dirty.insert(old.service.clone());
    }

    /// An address gained (`added`) or lost its PTR records: counts it under
    /// every reverse-zone name above it, which exists while its count is
    /// not zero.
    fn count_nodes(&mut self, cfg: &ZoneConfig, ip: &IpAddr, added: bool) {
        for node in interior_prefixes(cfg, ip) {
            match (self.working.reverse_nodes.get_mut(&node), added) {
                (Some(n), true) => *n += 1,
                (Some(n), false) if *n > 1 => *n -= 1,
                (Some(_), false) => {
                    self.working.reverse_nodes.remove(&node);
                }
                (None, true) => {
                    self.working.reverse_nodes.insert(node, 1);
                }
                (None, false) => {}
            }
        }
    }

    /// Recomputes the view of one service and the indexes derived from it.
    fn rebuild(&mut self, key: &ObjectKey, cfg: &ZoneConfig) {
        let new = self.services.get(key).map(|held| {
            Arc::new(ServiceView {
                svc: held.0.clone(),
                slices: self
                    .by_service
                    .get(key)
                    .map(|group| group.0.clone())
                    .unwrap_or_default(),
            })
        });
        let old = self.working.services.get(key).cloned();
        if old == new {
            return;
        }
        let mode = cfg.endpoint_records;
        if let Some(old) = &old {
            for ip in old.ptr_addresses(mode) {
                let Some(owners) = self.working.reverse.get(&ip) else {
                    continue;
                };
                match owners.without(key) {
                    Some(rest) => {
                        self.working.reverse.insert(ip, rest);
                    }
                    None => {
                        self.working.reverse.remove(&ip);
                        self.count_nodes(cfg, &ip, false);
                    }
                }
                self.reverse_entries -= 1;
            }
        }
        if let Some(new) = &new {
            for ip in new.ptr_addresses(mode) {
                match self.working.reverse.get_mut(&ip) {
                    Some(owners) => owners.push(new.svc.clone()),
                    None => {
                        self.working
                            .reverse
                            .insert(ip, PtrOwners::One(new.svc.clone()));
                        self.count_nodes(cfg, &ip, true);
                    }
                }
                self.reverse_entries += 1;
            }
        }
        let namespaces = Arc::make_mut(&mut self.working.namespaces);
        match (&old, &new) {
            (None, Some(_)) => *namespaces.entry(key.namespace.clone()).or_default() += 1,
            (Some(_), None) => {
                if let Some(n) = namespaces.get_mut(&key.namespace) {
                    *n -= 1;
                    if *n == 0 {
                        namespaces.remove(&key.namespace);
                    }
                }
            }
            _ => {}
        }
        match new {
            Some(view) => {
                self.working.services.insert(key.clone(), view);
            }
            None => {
                self.working.services.remove(key);
            }
        }
    }
}

impl Zone for ClusterZone {
    fn lookup(&self, name: &LowerName, qtype: RecordType) -> ZoneLookup {
        let hosts = self.hosts.load();
        let snap = self.snapshot.load();
        super::lookup::lookup(&self.config, &snap, &hosts, name, qtype)
    }

    fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn is_ready(&self) -> bool {
        self.snapshot.load().ready
    }
}

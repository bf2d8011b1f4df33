//! The record store: cluster objects in, an immutable [`Snapshot`] out.
//!
//! Writers (the sources) call [`ClusterZone::apply`] with a batch of
//! [`Change`]s. Under one mutex the store updates its object tables, rebuilds
//! the view of every Service the batch touched (and only those), and swaps a
//! new snapshot in with `arc-swap`. Readers never lock and never see a
//! half-applied batch; a relist is one `Replace*` change, so it never shows
//! an empty window.

use std::collections::{HashMap, HashSet};
use std::mem::size_of;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use hickory_proto::rr::{LowerName, RecordType};
use tokio::sync::watch;

use super::hosts::HostsTable;
use super::metrics::ClusterMetrics;
use super::model::{ApproxBytes, ObjectKey, ServiceInfo, SliceInfo};
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
    services: HashMap<ObjectKey, Arc<ServiceInfo>>,
    slices: HashMap<ObjectKey, Arc<SliceInfo>>,
    /// A Service's slices, sorted by name: usually one or two, so a sorted
    /// `Vec` (a BTreeMap node alone costs some 300 bytes per Service).
    by_service: HashMap<ObjectKey, Vec<Arc<SliceInfo>>>,
    working: Snapshot,
    synced: HashSet<SyncSource>,
    object_bytes: usize,
    endpoints: usize,
    reverse_entries: usize,
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
    pub fn share_service(&self, svc: ServiceInfo) -> Arc<ServiceInfo> {
        let w = self.lock_writer();
        match w.services.get(&svc.key) {
            Some(held) if **held == svc => held.clone(),
            _ => Arc::new(svc),
        }
    }

    /// [`Self::share_service`] for an EndpointSlice.
    pub fn share_slice(&self, slice: SliceInfo) -> Arc<SliceInfo> {
        let w = self.lock_writer();
        match w.slices.get(&slice.key) {
            Some(held) if **held == slice => held.clone(),
            _ => Arc::new(slice),
        }
    }

    /// Approximate bytes held for cluster state (what the metric reports).
    pub fn approx_bytes(&self) -> usize {
        self.lock_writer().approx_bytes()
    }
}

impl Writer {
    fn approx_bytes(&self) -> usize {
        // Object tables, the slice index, the views and the reverse index;
        // hash-table slots are counted as one key + value each.
        let views = self.working.services.len()
            * (size_of::<ServiceView>() + size_of::<ObjectKey>() + 2 * size_of::<usize>())
            + self.slices.len() * size_of::<usize>();
        let index = (self.services.len() + 2 * self.slices.len())
            * (size_of::<ObjectKey>() + size_of::<usize>());
        let reverse = self.reverse_entries * (size_of::<(IpAddr, PtrOwners)>() + 8);
        let nodes = self.working.reverse_nodes.len() * (size_of::<((IpAddr, u8), u32)>() + 8);
        self.object_bytes + views + index + reverse + nodes
    }

    fn apply_one(&mut self, change: Change, dirty: &mut HashSet<ObjectKey>) {
        match change {
            Change::UpsertService(svc) => self.upsert_service(svc, dirty),
            Change::DeleteService(key) => {
                if let Some(old) = self.services.remove(&key) {
                    self.object_bytes -= old.approx_bytes();
                    dirty.insert(key);
                }
            }
            Change::UpsertSlice(slice) => self.upsert_slice(slice, dirty),
            Change::DeleteSlice(key) => self.delete_slice(&key, dirty),
            Change::ReplaceServices(list) => {
                let keep: HashSet<&ObjectKey> = list.iter().map(|s| &s.key).collect();
                let gone: Vec<ObjectKey> = self
                    .services
                    .keys()
                    .filter(|k| !keep.contains(k))
                    .cloned()
                    .collect();
                drop(keep);
                for key in gone {
                    self.apply_one(Change::DeleteService(key), dirty);
                }
                for svc in list {
                    self.upsert_service(svc, dirty);
                }
            }
            Change::ReplaceSlices(list) => {
                let keep: HashSet<&ObjectKey> = list.iter().map(|s| &s.key).collect();
                let gone: Vec<ObjectKey> = self
                    .slices
                    .keys()
                    .filter(|k| !keep.contains(k))
                    .cloned()
                    .collect();
                drop(keep);
                for key in gone {
                    self.delete_slice(&key, dirty);
                }
                for slice in list {
                    self.upsert_slice(slice, dirty);
                }
            }
        }
    }

    fn upsert_service(&mut self, svc: Arc<ServiceInfo>, dirty: &mut HashSet<ObjectKey>) {
        if self.services.get(&svc.key).is_some_and(|old| *old == svc) {
            return;
        }
        self.object_bytes += svc.approx_bytes();
        let key = svc.key.clone();
        if let Some(old) = self.services.insert(key.clone(), svc) {
            self.object_bytes -= old.approx_bytes();
        }
        dirty.insert(key);
    }

    fn upsert_slice(&mut self, slice: Arc<SliceInfo>, dirty: &mut HashSet<ObjectKey>) {
        if self.slices.get(&slice.key).is_some_and(|old| *old == slice) {
            return;
        }
        // A slice can (in theory) be relabelled to another service.
        self.delete_slice(&slice.key.clone(), dirty);
        self.object_bytes += slice.approx_bytes();
        self.endpoints += slice.endpoints.len();
        let set = self.by_service.entry(slice.service.clone()).or_default();
        let at = set.partition_point(|s| s.key.name < slice.key.name);
        set.insert(at, slice.clone());
        dirty.insert(slice.service.clone());
        self.slices.insert(slice.key.clone(), slice);
    }

    fn delete_slice(&mut self, key: &ObjectKey, dirty: &mut HashSet<ObjectKey>) {
        let Some(old) = self.slices.remove(key) else {
            return;
        };
        self.object_bytes -= old.approx_bytes();
        self.endpoints -= old.endpoints.len();
        if let Some(set) = self.by_service.get_mut(&old.service) {
            set.retain(|s| s.key.name != old.key.name);
            if set.is_empty() {
                self.by_service.remove(&old.service);
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
        let new = self.services.get(key).map(|svc| {
            Arc::new(ServiceView {
                svc: svc.clone(),
                slices: self.by_service.get(key).cloned().unwrap_or_default(),
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

//! Scale: 10 000 Services and 50 000 endpoints. These tests check the
//! result and print the figures (build time, memory, one-service update);
//! they assert nothing about speed. Run with `--nocapture` to see them:
//! `cargo test -p nodedns-tests --test cluster -- --nocapture --test-threads=1 scale`

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::rr::{LowerName, Name, RecordType};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use nodedns_tests::cluster::{ClusterSources, lookup};
use nodedns_tests::fakeapi::FakeApi;
use nodedns_tests::fakeapi::fixtures::{
    SCALE_ENDPOINTS_PER_SERVICE as ENDPOINTS_PER_SERVICE, SCALE_NAMESPACES as NAMESPACES,
    scale_cluster,
};
use nodedns_tests::internals::{
    Change, ClusterArgs, ClusterZone, ServiceInfo, SliceInfo, SyncSource, Zone, ZoneConfig,
    ZoneLookup,
};
use serde_json::Value;

const SERVICES: usize = 10_000;

/// Every fifth Service is headless (endpoint hostnames, PTRs, SRVs).
fn objects() -> Vec<Value> {
    scale_cluster(SERVICES).collect()
}

/// Counts the live heap bytes the current thread allocated (net of what it
/// freed), to measure what the zone really holds: RSS would hide it behind
/// memory the allocator reuses, and a process-wide count would include
/// what the other tests of this binary allocate meanwhile.
struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
}

/// Adds `delta` to this thread's count (a no-op while the thread's
/// locals are torn down).
fn count(delta: isize) {
    let _ = LIVE.try_with(|live| live.set(live.get() + delta));
}

fn live() -> isize {
    LIVE.with(Cell::get)
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size() as isize);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(-(layout.size() as isize));
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size as isize - layout.size() as isize);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn positive(zone: &dyn Zone, name: &str, qtype: RecordType) -> usize {
    match lookup(zone, name, qtype) {
        ZoneLookup::Answer(a) => a.answers.len(),
        other => panic!("{name}: {other:?}"),
    }
}

#[test]
fn build_10k_services_50k_endpoints() {
    let objs = objects();
    let t = Instant::now();
    let mut services = Vec::new();
    let mut slices = Vec::new();
    for o in &objs {
        if o["kind"] == "Service" {
            let svc: Service = serde_json::from_value(o.clone()).unwrap();
            services.push(Arc::new(ServiceInfo::from_service(&svc).unwrap()));
        } else {
            let slice: EndpointSlice = serde_json::from_value(o.clone()).unwrap();
            slices.push(Arc::new(SliceInfo::from_slice(&slice).unwrap()));
        }
    }
    let convert = t.elapsed();
    drop(objs);

    let live_before = live();
    // Copies made inside the count, which the zone then takes whole.
    let services_in: Vec<Arc<ServiceInfo>> =
        services.iter().map(|s| Arc::new((**s).clone())).collect();
    let slices_in: Vec<Arc<SliceInfo>> = slices.iter().map(|s| Arc::new((**s).clone())).collect();
    let zone = ClusterZone::new(
        ZoneConfig::new("cluster.local", 30, vec!["10.96.0.0/12".parse().unwrap()]).unwrap(),
        &[SyncSource::Services, SyncSource::EndpointSlices],
    );
    let t = Instant::now();
    zone.apply([
        Change::ReplaceServices(services_in),
        Change::ReplaceSlices(slices_in),
    ]);
    zone.mark_synced(SyncSource::Services);
    zone.mark_synced(SyncSource::EndpointSlices);
    let build = t.elapsed();
    // The copies moved into the zone, so this is what the zone holds.
    let held = (live() - live_before).max(0);

    let snap = zone.snapshot();
    assert_eq!(snap.services.len(), SERVICES);
    assert_eq!(
        positive(&zone, "svc-1.ns-1.svc.cluster.local.", RecordType::A),
        1
    );
    assert_eq!(
        positive(&zone, "svc-0.ns-0.svc.cluster.local.", RecordType::A),
        ENDPOINTS_PER_SERVICE
    );
    assert_eq!(
        positive(
            &zone,
            "_http._tcp.svc-5.ns-5.svc.cluster.local.",
            RecordType::SRV
        ),
        ENDPOINTS_PER_SERVICE
    );
    assert_eq!(
        positive(&zone, "pod-3.svc-5.ns-5.svc.cluster.local.", RecordType::A),
        1
    );

    // A relist that changes nothing, and one-service updates.
    let t = Instant::now();
    zone.apply([
        Change::ReplaceServices(services.clone()),
        Change::ReplaceSlices(slices.clone()),
    ]);
    let noop_relist = t.elapsed();
    const UPDATES: u32 = 200;
    let t = Instant::now();
    for i in 0..UPDATES {
        let mut s = (*slices[i as usize]).clone();
        s.endpoints[0].ready = false;
        zone.apply([Change::UpsertSlice(Arc::new(s))]);
    }
    let per_update = t.elapsed() / UPDATES;
    assert_eq!(zone.snapshot().generation, snap.generation + UPDATES as u64);

    // Lookups from one thread over a mix of names (cluster names are also
    // cached by the resolver and the XDP map; this is the miss path).
    let names: Vec<(LowerName, RecordType)> = (0..1000)
        .map(|i| {
            let name = match i % 4 {
                0 => format!("svc-{i}.ns-{}.svc.cluster.local.", i % NAMESPACES),
                1 => format!("svc-{i}.ns-{}.svc.cluster.local.", (i + 1) % NAMESPACES),
                2 => format!(
                    "_http._tcp.svc-{i}.ns-{}.svc.cluster.local.",
                    i % NAMESPACES
                ),
                _ => format!("{}.{}.96.10.in-addr.arpa.", i % 256, i / 256),
            };
            let qtype = [
                RecordType::A,
                RecordType::AAAA,
                RecordType::SRV,
                RecordType::PTR,
            ][i % 4];
            (LowerName::from(Name::from_ascii(name).unwrap()), qtype)
        })
        .collect();
    const ROUNDS: u32 = 100;
    let t = Instant::now();
    for _ in 0..ROUNDS {
        for (name, qtype) in &names {
            std::hint::black_box(zone.lookup(name, *qtype));
        }
    }
    let per_lookup = t.elapsed() / (ROUNDS * names.len() as u32);

    let approx = zone.approx_bytes();
    eprintln!(
        "scale: {SERVICES} services, {} endpoints ({} slices)\n\
         convert k8s objects: {convert:?}\n\
         full build (replace + index + publish): {build:?}\n\
         no-op relist: {noop_relist:?}\n\
         one-slice update: {per_update:?}\n\
         lookup (mixed A/AAAA/SRV/PTR, NXDOMAIN included): {per_lookup:?}\n\
         memory metric (approx): {:.1} MiB; live heap held by the zone: {:.1} MiB",
        SERVICES * ENDPOINTS_PER_SERVICE,
        slices.len(),
        approx as f64 / (1 << 20) as f64,
        held as f64 / (1 << 20) as f64,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_sync_of_10k_services_from_the_api_server() {
    let api = FakeApi::start().await.unwrap();
    for o in objects() {
        api.apply(o);
    }
    let args = ClusterArgs {
        kubeconfig: Some(api.kubeconfig()),
        ..ClusterArgs::default()
    };
    let t = Instant::now();
    let sources = ClusterSources::start_synced(&args, Duration::from_secs(300)).await;
    let took = t.elapsed();
    let handle = &sources.handle;
    assert_eq!(handle.zone.snapshot().services.len(), SERVICES);
    let pages = api
        .requests()
        .iter()
        .filter(|r| r.contains("continue="))
        .count();
    eprintln!(
        "first sync from the fake API server (real kube client, {pages} continue pages): {took:?}; memory metric {:.1} MiB",
        handle.zone.approx_bytes() as f64 / (1 << 20) as f64
    );
}

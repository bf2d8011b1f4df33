//! The API server source against the fake API server, with the real kube
//! client: initial sync, change propagation, 410 relists, errors, dropped
//! watches, the API server down or hung at start, and the ConfigMap.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use hickory_proto::rr::RecordType;
use nodedns_tests::cluster::{
    ClusterSources, add_service_seen, answer, assert_answers, lookup, wait_answers,
};
use nodedns_tests::fakeapi::fixtures::{headless, service, slice};
use nodedns_tests::fakeapi::{FakeApi, Resource};
use nodedns_tests::internals::{ClusterArgs, ClusterZone, Zone, ZoneLookup};
use nodedns_tests::lab::wait_until;
use nodedns_tests::repo::examples_dir;
use serde_json::Value;

const DEADLINE: Duration = Duration::from_secs(20);

fn seed(api: &FakeApi) {
    api.apply(service(
        "default",
        "web",
        &["10.96.0.10", "fd00:96::10"],
        &[("http", 80)],
    ));
    api.apply(headless("default", "db"));
    api.apply(db_slice(false));
    api.apply(service("other", "api", &["10.96.5.5"], &[]));
}

/// `db`'s slice: db-0 at 10.244.1.5, ready, and 10.244.1.6, ready or not.
fn db_slice(second_ready: bool) -> Value {
    let endpoints = [
        ("10.244.1.5", Some("db-0"), true),
        ("10.244.1.6", None, second_ready),
    ];
    slice("default", "db-1", "db", &endpoints)
}

/// The API server source on `api`, with the ClusterIP range's reverse zone
/// and, if named, the custom-records ConfigMap.
async fn start(api: &FakeApi, configmap: Option<&str>) -> ClusterSources {
    ClusterSources::start(&ClusterArgs {
        kubeconfig: Some(api.kubeconfig()),
        reverse_cidrs: vec!["10.96.0.0/12".parse().unwrap()],
        custom_configmap: configmap.map(str::to_string),
        ..ClusterArgs::default()
    })
    .await
}

/// The fake API server with [`seed`]'s objects, and the source synced.
async fn synced() -> (FakeApi, ClusterSources) {
    let api = FakeApi::start().await.unwrap();
    seed(&api);
    let agent = start(&api, None).await;
    agent.wait_synced(DEADLINE).await;
    (api, agent)
}

fn requests_contain(api: &FakeApi, needle: &str) -> bool {
    api.requests().iter().any(|r| r.contains(needle))
}

const WEB: &str = "web.default.svc.cluster.local.";

#[tokio::test]
async fn initial_sync_then_changes_propagate() {
    let (api, mut agent) = synced().await;
    let zone = agent.handle.zone.clone();
    assert_answers(
        &*zone,
        &[
            (WEB, RecordType::A, &["10.96.0.10"]),
            (WEB, RecordType::AAAA, &["fd00:96::10"]),
            (
                "db.default.svc.cluster.local.",
                RecordType::A,
                &["10.244.1.5"],
            ),
            (
                "api.other.svc.cluster.local.",
                RecordType::A,
                &["10.96.5.5"],
            ),
        ],
    );

    // A new service, a changed endpoint, a deleted service.
    api.apply(service("default", "new", &["10.96.0.99"], &[]));
    api.apply(db_slice(true));
    api.delete(Resource::Services, "other", "api");
    let rows: [(&str, RecordType, &[&str]); 3] = [
        (
            "new.default.svc.cluster.local.",
            RecordType::A,
            &["10.96.0.99"],
        ),
        (
            "db.default.svc.cluster.local.",
            RecordType::A,
            &["10.244.1.5", "10.244.1.6"],
        ),
        ("api.other.svc.cluster.local.", RecordType::A, &["NXDOMAIN"]),
    ];
    let took = wait_answers(&*zone, "changes to propagate", DEADLINE, &rows).await;
    eprintln!("change propagation: {took:?}");
    assert!(requests_contain(&api, "timeoutSeconds=50"));
    // kube's watcher lists with paging, then watches with bookmarks.
    let requests = api.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.contains("/api/v1/services?") && r.contains("limit=500")),
        "{requests:?}"
    );
    assert!(
        requests
            .iter()
            .any(|r| r.contains("/apis/discovery.k8s.io/v1/endpointslices?")
                && r.contains("watch=true")),
        "{requests:?}"
    );
    // The source tasks stop when cancelled.
    agent.cancel();
    tokio::time::timeout(DEADLINE, async {
        while agent.handle.tasks.join_next().await.is_some() {}
    })
    .await
    .expect("source tasks stop on cancel");
}

/// Looks `WEB` up in a loop and counts answers that are not its address.
fn spawn_reader(zone: Arc<ClusterZone>) -> (Arc<AtomicBool>, Arc<AtomicU64>, Arc<AtomicU64>) {
    let stop = Arc::new(AtomicBool::new(false));
    let bad = Arc::new(AtomicU64::new(0));
    let total = Arc::new(AtomicU64::new(0));
    let (s, b, t) = (stop.clone(), bad.clone(), total.clone());
    std::thread::spawn(move || {
        while !s.load(Ordering::Relaxed) {
            if answer(&*zone, WEB, RecordType::A) != ["10.96.0.10"] {
                b.fetch_add(1, Ordering::Relaxed);
            }
            t.fetch_add(1, Ordering::Relaxed);
        }
    });
    (stop, bad, total)
}

#[tokio::test]
async fn relist_after_410_never_shows_an_empty_window() {
    let (api, agent) = synced().await;
    let zone = agent.handle.zone.clone();
    let (stop, bad, total) = spawn_reader(zone.clone());
    let lists_before = api.list_requests();

    // Changes made while the watch is gone, then a 410 on resume.
    api.expire();
    api.apply(service("default", "during", &["10.96.0.77"], &[]));
    api.delete(Resource::Services, "other", "api");
    api.expire();
    let rows: [(&str, RecordType, &[&str]); 2] = [
        (
            "during.default.svc.cluster.local.",
            RecordType::A,
            &["10.96.0.77"],
        ),
        ("api.other.svc.cluster.local.", RecordType::A, &["NXDOMAIN"]),
    ];
    wait_answers(&*zone, "relist to apply", DEADLINE, &rows).await;
    stop.store(true, Ordering::Relaxed);
    let lists_after = api.list_requests();
    assert!(lists_after > lists_before, "410 must cause a relist");
    assert_eq!(
        bad.load(Ordering::Relaxed),
        0,
        "of {} lookups",
        total.load(Ordering::Relaxed)
    );
}

#[tokio::test]
async fn errors_and_dropped_watches_keep_the_last_good_state() {
    let (api, agent) = synced().await;
    let zone = agent.handle.zone.clone();
    let (stop, bad, total) = spawn_reader(zone.clone());

    // Dropped watches and 500s on the reconnects.
    api.fail_next(3);
    api.drop_watches();
    let what = "change after dropped watches";
    add_service_seen(&api, &*zone, what, ("after-drop", "10.96.0.51"), DEADLINE).await;

    // The API server goes down: the names keep answering.
    api.set_down(true);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        answer(&*zone, "db.default.svc.cluster.local.", RecordType::A),
        ["10.244.1.5"]
    );
    assert!(zone.is_ready());
    api.set_down(false);
    let what = "change after the API server is back";
    let bound = Duration::from_secs(60);
    add_service_seen(&api, &*zone, what, ("after-down", "10.96.0.52"), bound).await;
    stop.store(true, Ordering::Relaxed);
    assert_eq!(
        bad.load(Ordering::Relaxed),
        0,
        "of {} lookups",
        total.load(Ordering::Relaxed)
    );
    let errors = agent
        .handle
        .zone
        .metrics()
        .source_errors
        .get_or_create(&[("source", "services")])
        .get();
    assert!(errors > 0, "errors are counted");
}

/// With `fault` on when the source starts, the zone stays not ready
/// (cluster names NotReady, other names not ours) for `observe`; once the
/// fault is lifted, the first sync comes within `sync`.
async fn not_ready_until_the_fault_ends(
    fault: fn(&FakeApi, bool),
    observe: Duration,
    sync: Duration,
) {
    let api = FakeApi::start().await.unwrap();
    seed(&api);
    fault(&api, true);
    let agent = start(&api, None).await;
    let zone = agent.handle.zone.clone();
    tokio::time::sleep(observe).await;
    assert!(!zone.is_ready());
    assert_eq!(lookup(&*zone, WEB, RecordType::A), ZoneLookup::NotReady);
    assert_eq!(
        lookup(&*zone, "example.com.", RecordType::A),
        ZoneLookup::NotOurs
    );
    fault(&api, false);
    agent.wait_synced(sync).await;
    assert_eq!(answer(&*zone, WEB, RecordType::A), ["10.96.0.10"]);
}

#[tokio::test]
async fn api_down_at_start_is_not_ready_until_the_first_sync() {
    not_ready_until_the_fault_ends(
        FakeApi::set_down,
        Duration::from_millis(1500),
        Duration::from_secs(60),
    )
    .await;
}

#[tokio::test]
async fn hung_api_server_at_start_is_not_ready() {
    not_ready_until_the_fault_ends(FakeApi::set_hang, Duration::from_millis(1000), DEADLINE).await;
}

#[tokio::test]
async fn custom_records_configmap_applies_live() {
    let api = FakeApi::start().await.unwrap();
    seed(&api);
    let cm = |hosts: &str| {
        serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "nodedns", "namespace": "kube-system"},
            "data": {
                "hosts": hosts,
                "stubDomains": "{\"corp.example\": [\"10.0.0.53\"]}",
                "upstreamNameservers": "[\"1.1.1.1\"]"
            }
        })
    };
    api.apply(cm("192.168.1.5 nas.lab\n"));
    // A ConfigMap with the same name elsewhere must be ignored.
    let mut other = cm("192.168.9.9 nas.lab\n");
    other["metadata"]["namespace"] = "default".into();
    api.apply(other);
    let agent = start(&api, Some("kube-system/nodedns")).await;
    let zone = agent.handle.zone.clone();
    let nas = ("nas.lab.", RecordType::A, &["192.168.1.5"][..]);
    wait_answers(&*zone, "custom hosts", DEADLINE, &[nas]).await;
    let mut policy = agent.handle.forward_policy.clone();
    wait_until("forward policy", DEADLINE, || {
        !policy.borrow_and_update().upstreams.is_empty()
    })
    .await
    .unwrap();
    assert_eq!(policy.borrow().upstreams[0].to_string(), "1.1.1.1:53");
    assert_eq!(
        policy.borrow().stub_domains[0].0.to_string(),
        "corp.example."
    );

    api.apply(cm("192.168.1.6 nas.lab\n192.168.1.7 printer.lab\n"));
    let rows: [(&str, RecordType, &[&str]); 2] = [
        ("nas.lab.", RecordType::A, &["192.168.1.6"]),
        ("printer.lab.", RecordType::A, &["192.168.1.7"]),
    ];
    wait_answers(&*zone, "custom hosts reload", DEADLINE, &rows).await;
    // A broken edit keeps the last good records.
    let mut broken = cm("not-an-ip nas.lab\n");
    broken["data"]["hosts"] = "not-an-ip nas.lab\n".into();
    api.apply(broken);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(answer(&*zone, "nas.lab.", RecordType::A), ["192.168.1.6"]);
    api.delete(Resource::ConfigMaps, "kube-system", "nodedns");
    wait_until("custom hosts removed", DEADLINE, || {
        lookup(&*zone, "nas.lab.", RecordType::A) == ZoneLookup::NotOurs
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn demo_manifests_served_by_the_fake_api() {
    let api = FakeApi::start().await.unwrap();
    let applied = api.apply_manifests(&examples_dir()).unwrap();
    assert_eq!(applied, 12, "Services + EndpointSlices in deploy/examples");
    let agent = start(&api, None).await;
    agent.wait_synced(DEADLINE).await;
    assert_answers(
        &*agent.handle.zone,
        &[
            (WEB, RecordType::AAAA, &["fd00:10:96::20"]),
            (
                "db-0.db.default.svc.cluster.local.",
                RecordType::A,
                &["10.244.1.20"],
            ),
            (
                "search.default.svc.cluster.local.",
                RecordType::CNAME,
                &["www.example.com."],
            ),
        ],
    );
}

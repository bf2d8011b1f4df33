//! How the API server source treats the API server when it fails: the
//! requests it sends while the server is down are counted (a couple of
//! dozen a minute at most), it does not relist in a storm when the server
//! comes back, and a watch that goes silent is restarted. The counts are
//! printed for the README.

use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType;
use nodedns_tests::cluster::{ClusterSources, add_service_seen, answer};
use nodedns_tests::fakeapi::FakeApi;
use nodedns_tests::fakeapi::fixtures::service;
use nodedns_tests::internals::ClusterArgs;
use nodedns_tests::lab::wait_until;

/// The window the requests are counted over: the goal is per minute.
const DOWN_FOR: Duration = Duration::from_secs(60);
/// Requests per minute per node the goal allows ("a couple of dozen").
const MAX_PER_MINUTE: usize = 24;
const DEADLINE: Duration = Duration::from_secs(60);

fn lists(requests: &[String]) -> usize {
    requests
        .iter()
        .filter(|r| !r.contains("watch=true"))
        .count()
}

fn watches(requests: &[String]) -> usize {
    requests.iter().filter(|r| r.contains("watch=true")).count()
}

fn source_up(sources: &ClusterSources, source: &'static str) -> i64 {
    sources
        .handle
        .zone
        .metrics()
        .source_up
        .get_or_create(&[("source", source)])
        .get()
}

#[tokio::test]
async fn a_down_api_server_gets_a_couple_dozen_requests_a_minute_and_no_storm_after() {
    let api = FakeApi::start().await.unwrap();
    api.apply(service("default", "web", &["10.96.0.10"], &[]));
    api.set_down(true);
    let sources = ClusterSources::start(&ClusterArgs {
        kubeconfig: Some(api.kubeconfig()),
        ..ClusterArgs::default()
    })
    .await;
    tokio::time::sleep(DOWN_FOR).await;
    let down = api.requests();
    println!(
        "API server down for {DOWN_FOR:?}: {} requests from the two watches ({down:?})",
        down.len()
    );
    assert!(
        down.len() <= MAX_PER_MINUTE,
        "{} requests in {DOWN_FOR:?}: {down:#?}",
        down.len()
    );
    for resource in [
        "/api/v1/services",
        "/apis/discovery.k8s.io/v1/endpointslices",
    ] {
        let tries = down.iter().filter(|r| r.contains(resource)).count();
        assert!(tries >= 3, "{resource} still retried: {down:#?}");
    }
    assert_eq!(source_up(&sources, "services"), 0);

    // Back: one list per resource, then watches; no relist storm.
    let back = Instant::now();
    api.set_down(false);
    sources.wait_synced(DEADLINE).await;
    println!("API server back: synced after {:?}", back.elapsed());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after: Vec<String> = api.requests()[down.len()..].to_vec();
    println!(
        "API server back: {} lists and {} watches in the next {:?}",
        lists(&after),
        watches(&after),
        back.elapsed()
    );
    assert!(lists(&after) <= 2, "one list per resource: {after:#?}");
    assert_eq!(source_up(&sources, "services"), 1);
    let zone = sources.handle.zone.clone();
    assert_eq!(
        answer(&*zone, "web.default.svc.cluster.local.", RecordType::A),
        ["10.96.0.10"]
    );
}

#[tokio::test]
async fn a_watch_that_goes_silent_is_restarted() {
    // A 2 s watch timeout: a silent watch is restarted after 2 + 5 s (the
    // default, 50 s, restarts one within 55 s, under the minute).
    let api = FakeApi::start().await.unwrap();
    api.apply(service("default", "web", &["10.96.0.10"], &[]));
    let sources = ClusterSources::start_synced(
        &ClusterArgs {
            kubeconfig: Some(api.kubeconfig()),
            watch_timeout_secs: 2,
            ..ClusterArgs::default()
        },
        DEADLINE,
    )
    .await;
    let zone = sources.handle.zone.clone();
    // The sync ends with the lists; stall the watches that follow them.
    wait_until("both watches open", DEADLINE, || {
        watches(&api.requests()) >= 2
    })
    .await
    .unwrap();
    let before = api.requests();
    api.stall_watches();
    let stalled = Instant::now();
    let what = "the change behind a silent watch";
    let bound = Duration::from_secs(30);
    add_service_seen(&api, &*zone, what, ("after-stall", "10.96.0.77"), bound).await;
    println!(
        "silent watch: the change arrived after {:?}",
        stalled.elapsed()
    );
    let after: Vec<String> = api.requests()[before.len()..].to_vec();
    assert!(watches(&after) >= 1, "the watch was restarted: {after:#?}");
    assert_eq!(lists(&after), 0, "resumed, not relisted: {after:#?}");
}

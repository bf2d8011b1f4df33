//! The manifests folder under faults: an emptied or half-written file keeps
//! its objects until it parses again, deleting it deletes them, a
//! duplicate object across files is counted and the first file by path
//! wins, the file limit refuses with an error and a metric, and with
//! 20,000 files a change reads one file, not the folder.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType;
use nodedns_tests::cluster::{ClusterSources, answer};
use nodedns_tests::internals::{ClusterArgs, ClusterZone};
use nodedns_tests::lab::{TempDir, wait_until};
use nodedns_tests::repo::write_atomic;

const DEADLINE: Duration = Duration::from_secs(20);
/// How long a state that must not change is watched.
const OBSERVE: Duration = Duration::from_millis(800);

fn service(name: &str, ip: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  clusterIP: {ip}\n"
    )
}

fn a_of(zone: &ClusterZone, name: &str) -> Vec<String> {
    answer(
        zone,
        &format!("{name}.default.svc.cluster.local."),
        RecordType::A,
    )
}

/// The sources serving manifests folder `dir` (keep them: dropped, they
/// stop), synced, and their zone.
async fn start(
    dir: &std::path::Path,
    extra: impl FnOnce(&mut ClusterArgs),
) -> (ClusterSources, Arc<ClusterZone>) {
    let mut args = ClusterArgs {
        manifests: Some(dir.to_path_buf()),
        ..ClusterArgs::default()
    };
    extra(&mut args);
    let sources = ClusterSources::start_synced(&args, DEADLINE).await;
    let zone = sources.handle.zone.clone();
    (sources, zone)
}

async fn wait_a(zone: &ClusterZone, name: &str, want: &[&str]) {
    wait_until(&format!("{name} -> {want:?}"), DEADLINE, || {
        a_of(zone, name) == want
    })
    .await
    .unwrap();
}

/// `zone` answers `name` with `want` for the whole of [`OBSERVE`].
async fn stays(zone: &ClusterZone, name: &str, want: &[&str]) {
    let end = Instant::now() + OBSERVE;
    while Instant::now() < end {
        assert_eq!(a_of(zone, name), want, "{name} changed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn an_emptied_or_broken_file_keeps_its_objects_until_it_parses() {
    let scratch = TempDir::create().unwrap();
    let file = scratch.path().join("web.yaml");
    std::fs::write(&file, service("web", "10.96.1.1")).unwrap();
    let (_sources, zone) = start(scratch.path(), |_| {}).await;
    assert_eq!(a_of(&zone, "web"), ["10.96.1.1"]);

    // Truncated in place, as a writer does before it writes: kept.
    std::fs::write(&file, "").unwrap();
    stays(&zone, "web", &["10.96.1.1"]).await;
    // Half written: kept too.
    std::fs::write(
        &file,
        "apiVersion: v1\nkind: Service\nmetadata: {name: web, namesp",
    )
    .unwrap();
    stays(&zone, "web", &["10.96.1.1"]).await;
    // Whole again: applied.
    std::fs::write(&file, service("web", "10.96.1.2")).unwrap();
    wait_a(&zone, "web", &["10.96.1.2"]).await;
    // Deleted: its objects go.
    std::fs::remove_file(&file).unwrap();
    wait_a(&zone, "web", &["NXDOMAIN"]).await;
    assert_eq!(zone.metrics().manifest_files.get(), 0);
}

#[tokio::test]
async fn a_duplicate_across_files_is_counted_and_the_first_file_wins() {
    let scratch = TempDir::create().unwrap();
    let dir = scratch.path();
    write_atomic(&dir.join("b.yaml"), &service("dup", "10.96.2.2")).unwrap();
    let (_sources, zone) = start(dir, |_| {}).await;
    assert_eq!(a_of(&zone, "dup"), ["10.96.2.2"]);
    // a.yaml sorts first: its definition wins, though it came later.
    write_atomic(&dir.join("a.yaml"), &service("dup", "10.96.2.1")).unwrap();
    wait_a(&zone, "dup", &["10.96.2.1"]).await;
    assert_eq!(zone.metrics().manifest_duplicates.get(), 1);
    // b.yaml's copy changes: still a.yaml's.
    write_atomic(&dir.join("b.yaml"), &service("dup", "10.96.2.3")).unwrap();
    stays(&zone, "dup", &["10.96.2.1"]).await;
    // a.yaml goes: b.yaml's takes over.
    std::fs::remove_file(dir.join("a.yaml")).unwrap();
    wait_a(&zone, "dup", &["10.96.2.3"]).await;
    assert_eq!(zone.metrics().manifest_duplicates.get(), 0);
}

#[tokio::test]
async fn the_file_limit_refuses_with_an_error_and_a_metric() {
    let scratch = TempDir::create().unwrap();
    let dir = scratch.path();
    for i in 1..=5 {
        std::fs::write(
            dir.join(format!("f{i}.yaml")),
            service(&format!("s{i}"), &format!("10.96.3.{i}")),
        )
        .unwrap();
    }
    let (_sources, zone) = start(dir, |a| a.manifests_max_files = 3).await;
    let m = zone.metrics();
    assert_eq!(
        (m.manifest_files.get(), m.manifest_files_refused.get()),
        (3, 2)
    );
    assert!(
        m.source_errors
            .get_or_create(&[("source", "manifests")])
            .get()
            >= 2
    );
    // The first files by path are the ones loaded.
    assert_eq!(a_of(&zone, "s3"), ["10.96.3.3"]);
    assert_eq!(a_of(&zone, "s4"), ["NXDOMAIN"]);
    // Room: the first refused file is loaded.
    std::fs::remove_file(dir.join("f1.yaml")).unwrap();
    wait_a(&zone, "s4", &["10.96.3.4"]).await;
    assert_eq!(
        (m.manifest_files.get(), m.manifest_files_refused.get()),
        (3, 1)
    );
}

#[tokio::test]
async fn with_20k_files_a_change_reads_one_file() {
    const FILES: usize = 20_000;
    let scratch = TempDir::create().unwrap();
    let dir = scratch.path();
    for i in 0..FILES {
        let ip = format!("10.{}.{}.{}", 100 + i / 65536, i / 256 % 256, i % 256);
        std::fs::write(
            dir.join(format!("svc-{i:05}.yaml")),
            service(&format!("svc-{i}"), &ip),
        )
        .unwrap();
    }
    let started = Instant::now();
    let (_sources, zone) = start(dir, |_| {}).await;
    println!(
        "manifests: first sync of {FILES} files in {:?}",
        started.elapsed()
    );
    let m = zone.metrics();
    assert_eq!(m.manifest_files.get(), FILES as i64, "no silent limit");
    let reads = m.manifest_reads.get();

    // Idle: nothing is read (the old source read the folder every second).
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(m.manifest_reads.get(), reads, "an idle folder is not read");

    let changed = Instant::now();
    write_atomic(
        &dir.join("svc-12345.yaml"),
        &service("svc-12345", "10.200.0.1"),
    )
    .unwrap();
    wait_a(&zone, "svc-12345", &["10.200.0.1"]).await;
    println!(
        "manifests: one change among {FILES} files applied in {:?}",
        changed.elapsed()
    );
    let read = m.manifest_reads.get() - reads;
    println!("manifests: {read} files read for that change");
    assert!(read <= 2, "{read} files read for one change");
}

//! The manifests-folder source with the demo cluster in deploy/examples:
//! every record kind, live reload within the deadline, bad files, removed
//! files, and the custom records file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use dns_agent::cluster::{self, ClusterArgs, ClusterHandle};
use dns_agent::zone::{Zone, ZoneLookup};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{LowerName, Name, RecordType};
use nodedns_tests::fakeapi::fixtures::{wait_for, write_atomic};
use tokio_util::sync::CancellationToken;

const DEADLINE: Duration = Duration::from_secs(10);

fn answer(zone: &dyn Zone, name: &str, qtype: RecordType) -> Vec<String> {
    match zone.lookup(&LowerName::from(Name::from_ascii(name).unwrap()), qtype) {
        ZoneLookup::Answer(a) if a.rcode == ResponseCode::NoError && !a.answers.is_empty() => {
            let mut v: Vec<String> = a.answers.iter().map(|r| r.data.to_string()).collect();
            v.sort();
            v
        }
        ZoneLookup::Answer(a) if a.rcode == ResponseCode::NoError => vec!["NODATA".into()],
        ZoneLookup::Answer(a) if a.rcode == ResponseCode::NXDomain => vec!["NXDOMAIN".into()],
        other => vec![format!("{other:?}")],
    }
}

/// A scratch folder removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("nodedns-{tag}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples")
}

struct Agent {
    handle: ClusterHandle,
    cancel: CancellationToken,
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

async fn start(args: ClusterArgs) -> Agent {
    let cancel = CancellationToken::new();
    let mut registry = dns_agent::metrics::new_registry();
    let handle = cluster::start(&args, &mut registry, cancel.clone())
        .await
        .expect("cluster start");
    tokio::time::timeout(DEADLINE, handle.wait_until_ready())
        .await
        .expect("first scan");
    Agent { handle, cancel }
}

#[tokio::test]
async fn demo_cluster_answers_every_record_kind() {
    let agent = start(ClusterArgs {
        manifests: Some(examples()),
        reverse_cidrs: vec!["10.96.0.0/12".parse().unwrap()],
        ..ClusterArgs::default()
    })
    .await;
    let z = &*agent.handle.zone;
    use RecordType::*;
    let s = "svc.cluster.local.";
    let rows: Vec<(String, RecordType, Vec<&str>)> = vec![
        (format!("kubernetes.default.{s}"), A, vec!["10.96.0.1"]),
        (format!("kube-dns.kube-system.{s}"), A, vec!["10.96.0.10"]),
        (format!("web.default.{s}"), A, vec!["10.96.0.20"]),
        (format!("web.default.{s}"), AAAA, vec!["fd00:10:96::20"]),
        (
            format!("_https._tcp.web.default.{s}"),
            SRV,
            vec!["0 100 443 web.default.svc.cluster.local."],
        ),
        (
            format!("db.default.{s}"),
            A,
            vec!["10.244.1.20", "10.244.2.20"],
        ),
        (format!("db.default.{s}"), AAAA, vec!["fd00:10:244:1::20"]),
        (
            format!("db-0.db.default.{s}"),
            AAAA,
            vec!["fd00:10:244:1::20"],
        ),
        (format!("db-2.db.default.{s}"), A, vec!["NXDOMAIN"]),
        (
            format!("_postgres._tcp.db.default.{s}"),
            SRV,
            vec![
                "0 100 5432 db-0.db.default.svc.cluster.local.",
                "0 100 5432 db-1.db.default.svc.cluster.local.",
            ],
        ),
        (format!("search.default.{s}"), A, vec!["www.example.com."]),
        (format!("cart.shop.{s}"), A, vec!["10.96.1.20"]),
        (format!("cart.shop.{s}"), AAAA, vec!["NODATA"]),
        (
            format!("workers.shop.{s}"),
            A,
            vec!["10.244.1.30", "10.244.2.30"],
        ),
        (
            format!("_metrics._tcp.workers.shop.{s}"),
            SRV,
            vec![
                "0 100 9100 10-244-1-30.workers.shop.svc.cluster.local.",
                "0 100 9100 10-244-2-30.workers.shop.svc.cluster.local.",
            ],
        ),
        (format!("shop.{s}"), A, vec!["NODATA"]),
        (format!("nope.{s}"), A, vec!["NXDOMAIN"]),
        (
            "10-244-1-30.shop.pod.cluster.local.".into(),
            A,
            vec!["10.244.1.30"],
        ),
        ("dns-version.cluster.local.".into(), TXT, vec!["1.1.0"]),
        (
            "20.0.96.10.in-addr.arpa.".into(),
            PTR,
            vec!["web.default.svc.cluster.local."],
        ),
        (
            "20.1.244.10.in-addr.arpa.".into(),
            PTR,
            vec!["db-0.db.default.svc.cluster.local."],
        ),
        ("99.0.96.10.in-addr.arpa.".into(), PTR, vec!["NXDOMAIN"]),
    ];
    for (name, qtype, want) in rows {
        assert_eq!(answer(z, &name, qtype), want, "{name} {qtype}");
    }
}

#[tokio::test]
async fn folder_changes_apply_live_and_bad_files_keep_the_last_good_state() {
    let dir = TempDir::new("manifests");
    for f in ["demo-default.yaml", "demo-shop.yaml"] {
        std::fs::copy(examples().join(f), dir.0.join(f)).unwrap();
    }
    let agent = start(ClusterArgs {
        manifests: Some(dir.0.clone()),
        ..ClusterArgs::default()
    })
    .await;
    let zone = agent.handle.zone.clone();
    let z = &*zone;
    let extra = dir.0.join("extra.yaml");
    let svc = |ip: &str| {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: extra, namespace: shop}}\nspec:\n  clusterIP: {ip}\n"
        )
    };
    // A new file.
    write_atomic(&extra, &svc("10.96.9.1")).unwrap();
    let took = wait_for("new file", DEADLINE, || {
        answer(z, "extra.shop.svc.cluster.local.", RecordType::A) == ["10.96.9.1"]
    })
    .await;
    eprintln!("new file applied after {took:?}");
    // An edit in place (not atomic, as editors often do).
    std::fs::write(&extra, svc("10.96.9.2")).unwrap();
    wait_for("edited file", DEADLINE, || {
        answer(z, "extra.shop.svc.cluster.local.", RecordType::A) == ["10.96.9.2"]
    })
    .await;
    // A broken edit: logged, the last good state of that file stays.
    let errors = || {
        zone.metrics()
            .source_errors
            .get_or_create(&[("source", "manifests")])
            .get()
    };
    let before = errors();
    write_atomic(
        &extra,
        "apiVersion: v1\nkind: Service\nmetadata: {name: extra\n",
    )
    .unwrap();
    wait_for("bad file reported", DEADLINE, || errors() > before).await;
    assert_eq!(
        answer(z, "extra.shop.svc.cluster.local.", RecordType::A),
        ["10.96.9.2"]
    );
    assert_eq!(
        answer(z, "web.default.svc.cluster.local.", RecordType::A),
        ["10.96.0.20"]
    );
    // Fixed again.
    write_atomic(&extra, &svc("10.96.9.3")).unwrap();
    wait_for("fixed file", DEADLINE, || {
        answer(z, "extra.shop.svc.cluster.local.", RecordType::A) == ["10.96.9.3"]
    })
    .await;
    // Removed files take their objects with them.
    std::fs::remove_file(&extra).unwrap();
    std::fs::remove_file(dir.0.join("demo-shop.yaml")).unwrap();
    wait_for("removed files", DEADLINE, || {
        answer(z, "extra.shop.svc.cluster.local.", RecordType::A) == ["NXDOMAIN"]
            && answer(z, "cart.shop.svc.cluster.local.", RecordType::A) == ["NXDOMAIN"]
    })
    .await;
    assert_eq!(
        answer(z, "web.default.svc.cluster.local.", RecordType::A),
        ["10.96.0.20"]
    );
}

#[tokio::test]
async fn custom_records_file_reloads_live() {
    let dir = TempDir::new("custom");
    let file = dir.0.join("custom.yaml");
    std::fs::copy(examples().join("../custom-records.example.yaml"), &file).unwrap();
    let agent = start(ClusterArgs {
        manifests: Some(examples()),
        custom_records: Some(file.clone()),
        ..ClusterArgs::default()
    })
    .await;
    let z = &*agent.handle.zone;
    assert_eq!(
        answer(z, "nas.lab.example.", RecordType::A),
        ["192.168.10.5"]
    );
    assert_eq!(
        answer(z, "nas.lab.example.", RecordType::AAAA),
        ["fd00:10::5"]
    );
    assert_eq!(
        answer(z, "5.10.168.192.in-addr.arpa.", RecordType::PTR),
        ["nas.lab.example."]
    );
    assert_eq!(agent.handle.forward_policy.borrow().upstreams.len(), 2);

    write_atomic(
        &file,
        "hosts: |\n  192.168.10.7 nas.lab.example\nupstreamNameservers: [\"8.8.8.8\"]\n",
    )
    .unwrap();
    wait_for("custom records reload", DEADLINE, || {
        answer(z, "nas.lab.example.", RecordType::A) == ["192.168.10.7"]
    })
    .await;
    assert_eq!(
        answer(z, "printer.lab.example.", RecordType::A),
        ["NotOurs"],
        "removed names are no longer ours"
    );
    assert_eq!(
        agent.handle.forward_policy.borrow().upstreams[0].to_string(),
        "8.8.8.8:53"
    );
    // A broken edit keeps the last good records.
    write_atomic(&file, "hosts: |\n  bogus nas.lab.example\n").unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        answer(z, "nas.lab.example.", RecordType::A),
        ["192.168.10.7"]
    );
}

#[tokio::test]
async fn start_errors_say_what_to_fix() {
    let cancel = CancellationToken::new();
    let err = |args: ClusterArgs| {
        let mut registry = dns_agent::metrics::new_registry();
        let cancel = cancel.clone();
        async move {
            match cluster::start(&args, &mut registry, cancel).await {
                Ok(_) => panic!("start should fail"),
                Err(e) => e.to_string(),
            }
        }
    };
    let msg = err(ClusterArgs {
        manifests: Some("/nonexistent/nodedns".into()),
        ..ClusterArgs::default()
    })
    .await;
    assert!(
        msg.contains("/nonexistent/nodedns") && msg.contains("--manifests"),
        "{msg}"
    );
    let msg = err(ClusterArgs {
        manifests: Some(examples()),
        custom_records: Some("/nonexistent/custom.yaml".into()),
        ..ClusterArgs::default()
    })
    .await;
    assert!(msg.contains("--custom-records"), "{msg}");
    let msg = err(ClusterArgs {
        cluster_domain: "bad..domain".into(),
        manifests: Some(examples()),
        ..ClusterArgs::default()
    })
    .await;
    assert!(msg.contains("--cluster-domain"), "{msg}");
    let msg = err(ClusterArgs {
        kubeconfig: Some("/nonexistent/kubeconfig".into()),
        ..ClusterArgs::default()
    })
    .await;
    assert!(
        msg.contains("/nonexistent/kubeconfig") && msg.contains("--kubeconfig"),
        "{msg}"
    );
}

//! The manifests-folder source with the demo cluster in deploy/examples:
//! every record kind, live reload within the deadline, bad files, removed
//! files, and the custom records file.

use std::time::Duration;

use hickory_proto::rr::RecordType;
use nodedns_tests::cluster::{ClusterSources, answer, assert_answers, start_error};
use nodedns_tests::internals::ClusterArgs;
use nodedns_tests::lab::{TempDir, wait_until};
use nodedns_tests::repo::{copy_examples, deploy_dir, examples_dir, write_atomic};

const DEADLINE: Duration = Duration::from_secs(10);

async fn start(args: ClusterArgs) -> ClusterSources {
    ClusterSources::start_synced(&args, DEADLINE).await
}

#[tokio::test]
async fn demo_cluster_answers_every_record_kind() {
    let agent = start(ClusterArgs {
        manifests: Some(examples_dir()),
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
        (
            format!("search.default.{s}"),
            CNAME,
            vec!["www.example.com."],
        ),
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
    let scratch = TempDir::create().unwrap();
    let dir = copy_examples(scratch.path());
    let agent = start(ClusterArgs {
        manifests: Some(dir.clone()),
        ..ClusterArgs::default()
    })
    .await;
    let zone = agent.handle.zone.clone();
    let z = &*zone;
    let extra = dir.join("extra.yaml");
    let svc = |ip: &str| {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: extra, namespace: shop}}\nspec:\n  clusterIP: {ip}\n"
        )
    };
    // A new file.
    write_atomic(&extra, &svc("10.96.9.1")).unwrap();
    let took = wait_until("new file", DEADLINE, || {
        answer(z, "extra.shop.svc.cluster.local.", RecordType::A) == ["10.96.9.1"]
    })
    .await
    .unwrap();
    eprintln!("new file applied after {took:?}");
    // An edit in place (not atomic, as editors often do).
    std::fs::write(&extra, svc("10.96.9.2")).unwrap();
    wait_until("edited file", DEADLINE, || {
        answer(z, "extra.shop.svc.cluster.local.", RecordType::A) == ["10.96.9.2"]
    })
    .await
    .unwrap();
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
    wait_until("bad file reported", DEADLINE, || errors() > before)
        .await
        .unwrap();
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
    wait_until("fixed file", DEADLINE, || {
        answer(z, "extra.shop.svc.cluster.local.", RecordType::A) == ["10.96.9.3"]
    })
    .await
    .unwrap();
    // Removed files take their objects with them.
    std::fs::remove_file(&extra).unwrap();
    std::fs::remove_file(dir.join("demo-shop.yaml")).unwrap();
    wait_until("removed files", DEADLINE, || {
        answer(z, "extra.shop.svc.cluster.local.", RecordType::A) == ["NXDOMAIN"]
            && answer(z, "cart.shop.svc.cluster.local.", RecordType::A) == ["NXDOMAIN"]
    })
    .await
    .unwrap();
    assert_eq!(
        answer(z, "web.default.svc.cluster.local.", RecordType::A),
        ["10.96.0.20"]
    );
}

#[tokio::test]
async fn custom_records_file_reloads_live() {
    let dir = TempDir::create().unwrap();
    let file = dir.path().join("custom.yaml");
    std::fs::copy(deploy_dir().join("custom-records.example.yaml"), &file).unwrap();
    let agent = start(ClusterArgs {
        manifests: Some(examples_dir()),
        custom_records: Some(file.clone()),
        ..ClusterArgs::default()
    })
    .await;
    let z = &*agent.handle.zone;
    assert_answers(
        z,
        &[
            ("nas.lab.example.", RecordType::A, &["192.168.10.5"]),
            ("nas.lab.example.", RecordType::AAAA, &["fd00:10::5"]),
            (
                "5.10.168.192.in-addr.arpa.",
                RecordType::PTR,
                &["nas.lab.example."],
            ),
        ],
    );
    assert_eq!(agent.handle.forward_policy.borrow().upstreams.len(), 2);

    write_atomic(
        &file,
        "hosts: |\n  192.168.10.7 nas.lab.example\nupstreamNameservers: [\"8.8.8.8\"]\n",
    )
    .unwrap();
    wait_until("custom records reload", DEADLINE, || {
        answer(z, "nas.lab.example.", RecordType::A) == ["192.168.10.7"]
    })
    .await
    .unwrap();
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
    // Each bad setting, and what its error must name.
    let cases = [
        (
            ClusterArgs {
                manifests: Some("/nonexistent/nodedns".into()),
                ..ClusterArgs::default()
            },
            &["/nonexistent/nodedns", "--manifests"][..],
        ),
        (
            ClusterArgs {
                manifests: Some(examples_dir()),
                custom_records: Some("/nonexistent/custom.yaml".into()),
                ..ClusterArgs::default()
            },
            &["--custom-records"][..],
        ),
        (
            ClusterArgs {
                cluster_domain: "bad..domain".into(),
                manifests: Some(examples_dir()),
                ..ClusterArgs::default()
            },
            &["--cluster-domain"][..],
        ),
        (
            ClusterArgs {
                kubeconfig: Some("/nonexistent/kubeconfig".into()),
                ..ClusterArgs::default()
            },
            &["/nonexistent/kubeconfig", "--kubeconfig"][..],
        ),
    ];
    for (args, needles) in cases {
        let msg = start_error(&args).await;
        for needle in needles {
            assert!(msg.contains(needle), "{needle:?} not in: {msg}");
        }
    }
}

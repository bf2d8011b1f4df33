//! A short dnsperf run against the resolver (debug build, loopback): checks
//! that nothing is lost at a modest fixed rate and prints what it measured.
//! Ignored by default: it is a measurement, run it with
//! `cargo test -p nodedns-tests --test resolver -- --ignored --nocapture load`.

use std::net::Ipv4Addr;

use nodedns_tests::client::DnsperfSummary;
use nodedns_tests::lab::TempDir;
use nodedns_tests::resolver::TestResolver;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement; run explicitly"]
async fn dnsperf_cache_and_cluster_mix() {
    let (up, r) = TestResolver::with_service("web", Ipv4Addr::new(10, 96, 0, 10)).await;
    let scratch = TempDir::create().unwrap();
    let data = scratch.path().join("queries.txt");
    let mut lines = String::new();
    for i in 0..50 {
        lines.push_str(&format!("name{i}.example A\n"));
    }
    lines
        .push_str("web.default.svc.cluster.local A\napi.example.com.default.svc.cluster.local A\n");
    std::fs::write(&data, lines).unwrap();
    let out = tokio::process::Command::new("dnsperf")
        .args([
            "-s",
            &r.addr.ip().to_string(),
            "-p",
            &r.addr.port().to_string(),
        ])
        .args([
            "-d",
            data.to_str().unwrap(),
            "-l",
            "5",
            "-Q",
            "3000",
            "-c",
            "4",
        ])
        .output()
        .await
        .expect("dnsperf runs (apt-get install dnsperf)");
    let text = String::from_utf8_lossy(&out.stdout);
    println!("{text}");
    let summary = DnsperfSummary::parse(&text).expect("a dnsperf summary");
    println!(
        "completed={} lost={} upstream_queries={}",
        summary.completed,
        summary.lost,
        up.queries()
    );
    assert!(summary.completed > 0, "{text}");
    assert!(
        summary.lost * 100 <= summary.completed,
        "at most 1% lost at 3000 qps: {text}"
    );
    assert!(up.queries() <= 60, "the cache absorbs the load");
    r.stop().await;
}

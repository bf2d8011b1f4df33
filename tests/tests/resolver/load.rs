//! A short dnsperf run against the resolver (debug build, loopback): checks
//! that nothing is lost at a modest fixed rate and prints what it measured.
//! Ignored by default: it is a measurement, run it with
//! `cargo test -p nodedns-tests --test resolver_load -- --ignored --nocapture`.

use std::net::Ipv4Addr;

use crate::support::*;
use nodedns_tests::hostile::HostileUpstream;

fn field(out: &str, label: &str) -> f64 {
    out.lines()
        .find_map(|l| l.trim().strip_prefix(label))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement; run explicitly"]
async fn dnsperf_cache_and_cluster_mix() {
    let up = HostileUpstream::start((unique_ip(), 0).into())
        .await
        .unwrap();
    let r = TestResolver::start(&[up.addr], &[]).await;
    r.zone.set_a(
        "web.default.svc.cluster.local.",
        Ipv4Addr::new(10, 96, 0, 10),
    );
    let data = std::env::temp_dir().join(format!("nodedns-dnsperf-{}.txt", std::process::id()));
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
    let _ = std::fs::remove_file(&data);
    let text = String::from_utf8_lossy(&out.stdout);
    println!("{text}");
    let completed = field(&text, "Queries completed:");
    let lost = field(&text, "Queries lost:");
    println!(
        "completed={completed} lost={lost} upstream_queries={}",
        up.queries()
    );
    assert!(completed > 0.0, "{text}");
    assert!(
        lost <= completed * 0.01,
        "at most 1% lost at 3000 qps: {text}"
    );
    assert!(up.queries() <= 60, "the cache absorbs the load");
    r.stop().await;
}

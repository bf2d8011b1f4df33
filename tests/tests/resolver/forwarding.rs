//! Forwarding, caching and upstream hostility, against a real dnsmasq and
//! the hostile test upstream, with real `dig` as the client.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use nodedns_tests::client::{dig_at, udp_query};
use nodedns_tests::hostile::{Bad, Behavior, HostileUpstream};
use nodedns_tests::internals::ForwardPolicy;
use nodedns_tests::records::name;
use nodedns_tests::resolver::{TestResolver, hostile_upstream, unique_ip};
use nodedns_tests::upstream::{Dnsmasq, DnsmasqSpec};

/// Ports tried for dnsmasq before giving up (another process may hold one).
const DNSMASQ_ATTEMPTS: u16 = 5;

/// dnsmasq serving local data under `test.` on a loopback address of its
/// own.
fn dnsmasq() -> Dnsmasq {
    let ip = unique_ip();
    let mut last = None;
    for attempt in 0..DNSMASQ_ATTEMPTS {
        let port = 30_000 + rand::random::<u16>() % 20_000 + attempt;
        let spec = DnsmasqSpec::new((ip, port).into())
            .local_ttl(300)
            .local_domain("test")
            .wildcard("wild.test", [192, 0, 2, 10].into())
            .host("host.test", [192, 0, 2, 11].into())
            .txt("txt.test", "hello from dnsmasq");
        match spec.start_here("dnsmasq") {
            Ok(server) => return server,
            Err(e) => last = Some(e),
        }
    }
    panic!("dnsmasq did not start on {ip}: {last:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwards_and_caches_real_dnsmasq_answers() {
    let dnsmasq = dnsmasq();
    let r = TestResolver::start(&[dnsmasq.addr()], &[]).await;

    let d = dig_at(r.addr, "host.test", "A", &[]).await;
    assert_eq!(d.status, "NOERROR", "{}", d.raw);
    assert_eq!(d.addresses(), vec!["192.0.2.11"]);
    assert!(
        d.answers[0].ttl <= 30,
        "success TTL clamped to 30: {}",
        d.raw
    );
    assert!(!d.has_flag("aa"), "forwarded answers are not authoritative");

    let d = dig_at(r.addr, "x.wild.test", "A", &[]).await;
    assert_eq!(d.addresses(), vec!["192.0.2.10"]);
    let d = dig_at(r.addr, "txt.test", "TXT", &[]).await;
    assert!(
        d.answers[0].data.contains("hello from dnsmasq"),
        "{}",
        d.raw
    );

    // Negative answer, cached.
    let d = dig_at(r.addr, "missing.test", "A", &[]).await;
    assert_eq!(d.status, "NXDOMAIN", "{}", d.raw);
    let d2 = dig_at(r.addr, "missing.test", "A", &[]).await;
    assert_eq!(d2.status, "NXDOMAIN");
    r.assert_counted(
        "nodedns_queries_total",
        &[("path", "cache_hit"), ("rcode", "NXDOMAIN")],
    )
    .await;

    // Cached: a second query is a hit, and its TTL has aged.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let d = dig_at(r.addr, "host.test", "A", &[]).await;
    assert!(d.answers[0].ttl <= 28, "TTL decreases with age: {}", d.raw);
    r.assert_counted(
        "nodedns_queries_total",
        &[("path", "cache_hit"), ("rcode", "NOERROR")],
    )
    .await;
    assert_eq!(
        r.metric("nodedns_upstream_queries_total", &[]).await,
        4,
        "one upstream query per distinct question"
    );
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_stale_when_dnsmasq_is_stopped() {
    let mut dnsmasq = dnsmasq();
    let r = TestResolver::start(&[dnsmasq.addr()], &["--cache-max-success-ttl", "1"]).await;
    let d = dig_at(r.addr, "host.test", "A", &[]).await;
    assert_eq!(d.addresses(), vec!["192.0.2.11"], "{}", d.raw);
    dnsmasq.daemon_mut().kill().unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let d = dig_at(r.addr, "host.test", "A", &[]).await;
    assert_eq!(d.addresses(), vec!["192.0.2.11"], "stale answer: {}", d.raw);
    assert_eq!(d.answers[0].ttl, 30);
    r.assert_counted("nodedns_queries_total", &[("path", "stale")])
        .await;
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn popular_entries_are_prefetched_before_they_expire() {
    let up = hostile_upstream().await;
    let flags = [
        "--cache-max-success-ttl",
        "2",
        "--prefetch-hits",
        "2",
        "--prefetch-percent",
        "60",
    ];
    let r = TestResolver::start(&[up.addr], &flags).await;
    for _ in 0..3 {
        dig_at(r.addr, "pre.example", "A", &[]).await;
    }
    assert_eq!(up.queries(), 1);
    // Less than 60% of the 2 s TTL left: this hit answers from the cache and
    // refreshes the entry in the background.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let d = dig_at(r.addr, "pre.example", "A", &[]).await;
    assert_eq!(d.addresses(), vec!["192.0.2.1"]);
    let sent = up.queries();
    assert_eq!(sent, 2, "one prefetch");
    r.assert_counted("nodedns_cache_prefetches_total", &[])
        .await;
    // Past the original expiry the refreshed entry answers: a cache hit.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let hits = r
        .metric("nodedns_queries_total", &[("path", "cache_hit")])
        .await;
    dig_at(r.addr, "pre.example", "A", &[]).await;
    assert_eq!(
        r.metric("nodedns_queries_total", &[("path", "cache_hit")])
            .await,
        hits + 1
    );
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_listener_and_upstream() {
    let up = HostileUpstream::start("[::1]:0".parse().unwrap())
        .await
        .expect("hostile on ::1");
    let r = TestResolver::start(&[up.addr], &["--listen", "::1"]).await;
    let v6: SocketAddr = (std::net::Ipv6Addr::LOCALHOST, r.addr.port()).into();
    for server in [v6, r.addr] {
        let d = dig_at(server, "six.example", "A", &[]).await;
        assert_eq!(d.addresses(), vec!["192.0.2.1"], "{server}: {}", d.raw);
        let d = dig_at(server, "six.example", "A", &["+tcp"]).await;
        assert_eq!(d.addresses(), vec!["192.0.2.1"], "{server} tcp: {}", d.raw);
    }
    assert_eq!(
        up.queries(),
        1,
        "one upstream query over IPv6, then the cache"
    );
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stub_domains_from_flags_and_live_policy() {
    let dnsmasq = dnsmasq();
    let default = hostile_upstream().await;
    let other = hostile_upstream().await;
    let stub = format!("test={}", dnsmasq.addr());
    let r = TestResolver::start(&[default.addr], &["--stub-domain", &stub]).await;
    // Flag stub domain: .test goes to dnsmasq; everything else to the default.
    let d = dig_at(r.addr, "host.test", "A", &[]).await;
    assert_eq!(d.addresses(), vec!["192.0.2.11"], "{}", d.raw);
    let d = dig_at(r.addr, "elsewhere.example", "A", &[]).await;
    assert_eq!(d.addresses(), vec!["192.0.2.1"]);
    assert_eq!(default.queries(), 1);

    // The live policy (kube-dns ConfigMap): a longer stub wins, and the
    // upstream override replaces the defaults.
    r.policy.send_replace(Arc::new(ForwardPolicy {
        stub_domains: vec![(name("corp.example."), vec![other.addr])],
        upstreams: vec![other.addr],
    }));
    let d = dig_at(r.addr, "a.corp.example", "A", &[]).await;
    assert_eq!(d.addresses(), vec!["192.0.2.1"]);
    let d = dig_at(r.addr, "new.example", "A", &[]).await;
    assert_eq!(d.addresses(), vec!["192.0.2.1"]);
    assert_eq!(
        other.queries(),
        2,
        "policy stub domain and upstream override in effect"
    );
    assert_eq!(default.queries(), 1);
    let d = dig_at(r.addr, "wild.test", "A", &[]).await;
    assert_eq!(
        d.addresses(),
        vec!["192.0.2.10"],
        "flag stub domain still applies"
    );
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_clamps_and_negative_ttl_from_soa() {
    let (up, r) = TestResolver::with_hostile_upstream(&[]).await;
    up.set_ttl(3600);
    let d = dig_at(r.addr, "long.example", "A", &[]).await;
    assert_eq!(d.answers[0].ttl, 30, "{}", d.raw);
    // SOA TTL 3600, MINIMUM 60 -> negative TTL 60 -> clamped to 5.
    let d = dig_at(r.addr, "nxname.example", "A", &[]).await;
    assert_eq!(d.status, "NXDOMAIN");
    assert!(d.authority.iter().all(|a| a.ttl <= 5), "{}", d.raw);
    // NODATA is a denial too.
    let d = dig_at(r.addr, "long.example", "MX", &[]).await;
    assert_eq!(d.status, "NOERROR");
    assert!(
        d.answers.is_empty() && d.authority.iter().all(|a| a.ttl <= 5),
        "{}",
        d.raw
    );
    r.stop().await;

    // Configurable.
    let r = TestResolver::start(&[up.addr], &["--cache-max-success-ttl", "10"]).await;
    let d = dig_at(r.addr, "long2.example", "A", &[]).await;
    assert_eq!(d.answers[0].ttl, 10, "{}", d.raw);
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_identical_queries_cause_one_upstream_query() {
    let up = hostile_upstream().await;
    up.set(Behavior::Slow(Duration::from_millis(400)));
    let r = TestResolver::start(&[up.addr], &[]).await;
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let addr = r.addr;
        clients.spawn(async move { udp_query(addr, "same.example.", RecordType::A).await });
    }
    let mut answered = 0;
    while let Some(reply) = clients.join_next().await {
        let reply = reply.unwrap().expect("every client gets an answer");
        assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
        assert_eq!(reply.answers.len(), 1);
        answered += 1;
    }
    assert_eq!(answered, 50);
    assert_eq!(
        up.queries(),
        1,
        "50 identical queries in flight -> one upstream query"
    );
    r.assert_counted("nodedns_coalesced_queries_total", &[])
        .await;
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_stale_when_the_upstream_stops() {
    let (up, r) = TestResolver::with_hostile_upstream(&[
        "--cache-max-success-ttl",
        "1",
        "--upstream-timeout-ms",
        "500",
        "--serve-stale-recheck-secs",
        "3",
    ])
    .await;
    let d = dig_at(r.addr, "stale.example", "A", &[]).await;
    assert_eq!(d.addresses(), vec!["192.0.2.1"]);

    up.set(Behavior::Silence);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let started = std::time::Instant::now();
    let d = dig_at(r.addr, "stale.example", "A", &[]).await;
    assert_eq!(d.status, "NOERROR", "{}", d.raw);
    assert_eq!(d.addresses(), vec!["192.0.2.1"]);
    assert_eq!(
        d.answers[0].ttl, 30,
        "stale answers carry TTL 30 (RFC 8767)"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "answered within the client's timeout"
    );
    r.assert_counted("nodedns_queries_total", &[("path", "stale")])
        .await;

    // Within the recheck timer stale data is served without asking again.
    let asked = up.queries();
    let started = std::time::Instant::now();
    let d = dig_at(r.addr, "stale.example", "A", &[]).await;
    assert_eq!(d.addresses(), vec!["192.0.2.1"]);
    assert_eq!(
        up.queries(),
        asked,
        "no upstream query within the recheck timer"
    );
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "answered at once"
    );

    // SERVFAIL and REFUSED upstreams also leave the stale data in use.
    for b in [Behavior::ServFail, Behavior::Refused] {
        up.set(b);
        tokio::time::sleep(Duration::from_millis(3100)).await;
        let d = dig_at(r.addr, "stale.example", "A", &[]).await;
        assert_eq!(d.addresses(), vec!["192.0.2.1"], "{b:?}: {}", d.raw);
    }

    // The upstream comes back: fresh data again (the refresh runs in the background).
    up.set(Behavior::Answer);
    up.set_ttl(1);
    let mut fresh = false;
    for _ in 0..20 {
        let d = dig_at(r.addr, "stale.example", "A", &[]).await;
        if d.answers.first().is_some_and(|a| a.ttl <= 1) {
            fresh = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(fresh, "fresh answers after the upstream returns");
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_upstream_reply_is_retried_over_tcp() {
    let up = hostile_upstream().await;
    up.set(Behavior::Truncate);
    let r = TestResolver::start(&[up.addr], &[]).await;
    let d = dig_at(r.addr, "tc.example", "A", &[]).await;
    assert_eq!(d.status, "NOERROR", "{}", d.raw);
    assert_eq!(
        d.addresses(),
        vec!["192.0.2.1"],
        "the full answer came over TCP"
    );
    assert!(!d.has_flag("tc"));
    assert_eq!(up.tcp_queries(), 1);

    // An answer too big for the client's UDP size: TC=1, then full over TCP.
    up.set(Behavior::Answer);
    let d = dig_at(r.addr, "big.example", "A", &["+noedns", "+ignore"]).await;
    assert!(d.has_flag("tc"), "{}", d.raw);
    let d = dig_at(r.addr, "big.example", "A", &["+tcp"]).await;
    assert_eq!(d.addresses().len(), 60, "{}", d.raw);
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_replies_are_rejected_counted_and_never_cached() {
    // No TCP-only period after a suspected spoof, so that every kind below
    // is seen over UDP (spoofing.rs covers the period).
    let (up, r) = TestResolver::with_hostile_upstream(&[
        "--upstream-timeout-ms",
        "400",
        "--cache-servfail-ttl",
        "1",
        "--upstream-spoof-tcp-secs",
        "0",
    ])
    .await;
    let kinds = [
        (Bad::WrongId, "wrong_id"),
        (Bad::WrongQuestion, "wrong_question"),
        (Bad::NotResponse, "not_response"),
        (Bad::Garbage, "garbage"),
        (Bad::WrongCase, "wrong_case"),
    ];
    for (i, (bad, reason)) in kinds.into_iter().enumerate() {
        // A spoofed reply racing the real one: the real one wins.
        up.set(Behavior::BadThenGood(bad));
        let qname = format!("race{i}.example");
        let d = dig_at(r.addr, &qname, "A", &[]).await;
        assert_eq!(d.addresses(), vec!["192.0.2.1"], "{bad:?}: {}", d.raw);
        let rejected = r
            .metric(
                "nodedns_upstream_rejected_replies_total",
                &[("reason", reason)],
            )
            .await;
        assert!(rejected >= 1, "{bad:?} counted");

        // Only bad replies: the client gets SERVFAIL, nothing bad is cached.
        up.set(Behavior::Bad(bad));
        let qname = format!("only{i}.example");
        let d = dig_at(r.addr, &qname, "A", &[]).await;
        assert_eq!(d.status, "SERVFAIL", "{bad:?}: {}", d.raw);
        up.set(Behavior::Answer);
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let d = dig_at(r.addr, &qname, "A", &[]).await;
        assert_eq!(d.addresses(), vec!["192.0.2.1"], "{bad:?}: {}", d.raw);
    }
    // The name a wrong-question reply tried to plant was never cached.
    let before = up.queries();
    let d = dig_at(r.addr, "poison.example", "A", &[]).await;
    assert_eq!(d.addresses(), vec!["192.0.2.1"]);
    assert_eq!(
        up.queries(),
        before + 1,
        "poison.example came from upstream, not the cache"
    );
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fails_over_from_broken_upstreams() {
    let broken = hostile_upstream().await;
    let good = hostile_upstream().await;
    for b in [
        Behavior::ServFail,
        Behavior::Refused,
        Behavior::Silence,
        Behavior::Bad(Bad::Garbage),
    ] {
        broken.set(b);
        let r =
            TestResolver::start(&[broken.addr, good.addr], &["--upstream-timeout-ms", "300"]).await;
        let d = dig_at(r.addr, "failover.example", "A", &[]).await;
        assert_eq!(d.addresses(), vec!["192.0.2.1"], "{b:?}: {}", d.raw);
        let errors = r
            .metric(
                "nodedns_upstream_errors_total",
                &[("upstream", &broken.addr.to_string())],
            )
            .await;
        assert!(
            errors >= 1,
            "{b:?}: error counted against the broken upstream"
        );
        r.stop().await;
    }
    // Nobody answers: SERVFAIL, and a slow upstream counts as a timeout.
    good.set(Behavior::Slow(Duration::from_secs(2)));
    broken.set(Behavior::Refused);
    let r = TestResolver::start(&[broken.addr, good.addr], &["--upstream-timeout-ms", "300"]).await;
    let d = dig_at(r.addr, "nobody.example", "A", &[]).await;
    assert_eq!(d.status, "SERVFAIL", "{}", d.raw);
    r.assert_counted("nodedns_upstream_errors_total", &[("kind", "timeout")])
        .await;
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outstanding_upstream_queries_are_bounded() {
    let up = hostile_upstream().await;
    up.set(Behavior::Slow(Duration::from_millis(800)));
    let r = TestResolver::start(&[up.addr], &["--max-outstanding", "1"]).await;
    let a = tokio::spawn(udp_query(r.addr, "first.example.", RecordType::A));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = std::time::Instant::now();
    let second = udp_query(r.addr, "second.example.", RecordType::A)
        .await
        .expect("answered");
    assert_eq!(second.metadata.response_code, ResponseCode::ServFail);
    assert!(
        started.elapsed() < Duration::from_millis(700),
        "refused at once, not queued"
    );
    let first = a.await.unwrap().expect("answered");
    assert_eq!(first.metadata.response_code, ResponseCode::NoError);
    r.assert_counted("nodedns_upstream_overload_total", &[])
        .await;
    r.stop().await;
}

//! The resolver as a server: the authoritative cluster zone, bad input, TCP
//! limits, health and metrics, promotion to the kernel map (a MemorySink).

use std::net::Ipv4Addr;
use std::time::Duration;

use dns_common::ENTRY_FLAG_AUTHORITATIVE;
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::RecordType;
use nodedns_tests::client::{dig_at, udp_exchange, udp_query};
use nodedns_tests::hostile::Behavior;
use nodedns_tests::internals::{
    MemorySink, Registry, ResolverMetrics, boot_time_ns, key_for, new_registry,
};
use nodedns_tests::lab::wait_until;
use nodedns_tests::records::name;
use nodedns_tests::resolver::{SINK_CAPACITY, StaticZone, TestResolver};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn entry(sink: &MemorySink, qname: &str, qtype: RecordType) -> Option<dns_common::AnswerEntry> {
    sink.get(&key_for(&name(qname), qtype).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_zone_is_authoritative_and_never_forwarded() {
    let (up, r) = TestResolver::with_service("web", Ipv4Addr::new(10, 96, 0, 10)).await;

    let d = dig_at(r.addr, "web.default.svc.cluster.local", "A", &[]).await;
    assert_eq!(d.status, "NOERROR", "{}", d.raw);
    assert!(d.has_flag("aa"), "{}", d.raw);
    assert_eq!(d.addresses(), vec!["10.96.0.10"]);

    // NODATA and NXDOMAIN carry the SOA.
    let d = dig_at(r.addr, "web.default.svc.cluster.local", "AAAA", &[]).await;
    assert_eq!(d.status, "NOERROR");
    assert!(
        d.answers.is_empty() && d.authority.iter().any(|a| a.rtype == "SOA"),
        "{}",
        d.raw
    );
    let d = dig_at(
        r.addr,
        "api.example.com.default.svc.cluster.local",
        "A",
        &[],
    )
    .await;
    assert_eq!(d.status, "NXDOMAIN");
    assert!(
        d.has_flag("aa") && d.authority.iter().any(|a| a.rtype == "SOA"),
        "{}",
        d.raw
    );
    assert_eq!(up.queries(), 0, "cluster names never go upstream");

    // Before the first sync: SERVFAIL, never NXDOMAIN, and still not forwarded.
    r.zone.set_ready(false);
    let d = dig_at(r.addr, "web.default.svc.cluster.local", "A", &[]).await;
    assert_eq!(d.status, "SERVFAIL");
    assert_eq!(up.queries(), 0);
    assert_eq!(
        r.health("/readyz").await,
        503,
        "not ready before the zone syncs"
    );
    r.zone.set_ready(true);
    assert_eq!(r.health("/readyz").await, 200);
    assert_eq!(r.health("/healthz").await, 200);

    let m = r.metrics().await;
    assert!(
        m.sum(
            "nodedns_queries_total",
            &[("path", "cluster"), ("rcode", "NXDOMAIN")]
        ) >= 1,
        "{m}"
    );
    assert!(
        m.text().contains("nodedns_query_duration_seconds_bucket"),
        "latency histogram exported"
    );
    assert_eq!(
        m.value("nodedns_map_capacity"),
        Some(f64::from(SINK_CAPACITY)),
        "{m}"
    );
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_headless_answer_is_truncated_over_udp_and_whole_over_tcp() {
    let r = TestResolver::start(&[], &[]).await;
    let ips = (0..300u16)
        .map(|i| Ipv4Addr::new(10, 1, (i >> 8) as u8, i as u8))
        .collect();
    r.zone.set_many("headless.default.svc.cluster.local.", ips);
    let d = dig_at(
        r.addr,
        "headless.default.svc.cluster.local",
        "A",
        &["+ignore"],
    )
    .await;
    assert!(d.has_flag("tc") && d.answers.is_empty(), "{}", d.raw);
    let d = dig_at(
        r.addr,
        "headless.default.svc.cluster.local",
        "A",
        &["+ignore", "+noedns"],
    )
    .await;
    assert!(d.has_flag("tc"), "{}", d.raw);
    let d = dig_at(r.addr, "headless.default.svc.cluster.local", "A", &["+tcp"]).await;
    assert!(d.has_flag("aa") && !d.has_flag("tc"), "{}", d.raw);
    assert_eq!(d.addresses().len(), 300);
    // dig's default: retry over TCP on TC.
    let d = dig_at(r.addr, "headless.default.svc.cluster.local", "A", &[]).await;
    assert_eq!(d.addresses().len(), 300);
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_data_never_shadows_the_cluster_zone() {
    let (up, r) = TestResolver::with_service("db", Ipv4Addr::new(10, 96, 0, 20)).await;
    // The hostile upstream answers everything, including cluster names, but
    // only the zone's answer may be served for them.
    let d = dig_at(r.addr, "DB.Default.Svc.Cluster.Local", "A", &[]).await;
    assert_eq!(
        d.addresses(),
        vec!["10.96.0.20"],
        "case-insensitive, from the zone"
    );
    assert_eq!(up.queries(), 0);
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_formerr_notimp_badvers_or_is_dropped() {
    let (_up, r) = TestResolver::with_hostile_upstream(&[]).await;

    // Shorter than a header: dropped.
    assert!(udp_exchange(r.addr, &[0x12, 0x34, 0x01]).await.is_none());
    // A header and junk: FORMERR with the same ID.
    let mut junk = vec![0xab, 0xcd, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0];
    junk.extend_from_slice(&[0xff; 7]);
    let reply =
        Message::from_vec(&udp_exchange(r.addr, &junk).await.expect("FORMERR reply")).unwrap();
    assert_eq!(reply.metadata.id, 0xabcd);
    assert_eq!(reply.metadata.response_code, ResponseCode::FormErr);
    // A response sent to us: dropped (no reflection loops).
    let mut resp = Message::new(7, MessageType::Response, OpCode::Query);
    resp.add_query(Query::query(name("x.example."), RecordType::A));
    assert!(
        udp_exchange(r.addr, &resp.to_vec().unwrap())
            .await
            .is_none()
    );
    // Unknown opcode: NOTIMP.
    let mut q = Message::new(8, MessageType::Query, OpCode::Update);
    q.add_query(Query::query(name("x.example."), RecordType::SOA));
    let reply =
        Message::from_vec(&udp_exchange(r.addr, &q.to_vec().unwrap()).await.unwrap()).unwrap();
    assert_eq!(reply.metadata.response_code, ResponseCode::NotImp);
    // EDNS version 1: BADVERS (extended rcode 16, which hickory decodes as
    // BADSIG, so ask dig to read it).
    let d = dig_at(r.addr, "x.example", "A", &["+edns=1", "+noednsnegotiation"]).await;
    assert_eq!(d.status, "BADVERS", "{}", d.raw);
    // Random datagrams.
    for i in 0..200u32 {
        let len = (i as usize * 7) % 300 + 1;
        let bytes: Vec<u8> = (0..len).map(|_| rand::random()).collect();
        let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        sock.send_to(&bytes, r.addr).await.unwrap();
    }
    // Still healthy.
    let d = dig_at(r.addr, "after.example", "A", &[]).await;
    assert_eq!(d.addresses(), vec!["192.0.2.1"], "{}", d.raw);
    let d = dig_at(r.addr, "after.example", "A", &["+tcp"]).await;
    assert_eq!(d.addresses(), vec!["192.0.2.1"], "{}", d.raw);
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_encode_the_whole_shared_registry() {
    fn registry() -> Registry {
        // Stands for another module (the loader's collector) registering on
        // the shared registry before the resolver starts.
        let mut r = new_registry();
        let _other = ResolverMetrics::new(r.sub_registry_with_prefix("other"), None);
        r
    }
    let r = TestResolver::start_full(StaticZone::new(true), &[], &[], registry).await;
    let m = r.metrics().await;
    assert_eq!(m.value("nodedns_other_cache_hits_total"), Some(0.0), "{m}");
    assert!(m.text().contains("nodedns_cache_entries"), "{m}");
    // No upstream configured: SERVFAIL, not a hang.
    let d = dig_at(r.addr, "nowhere.example", "A", &[]).await;
    assert_eq!(d.status, "SERVFAIL");
    r.stop().await;
}

/// True once the server has closed `s` (read returns 0 or an error).
async fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 512];
    loop {
        match tokio::time::timeout(limit, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

/// Sends one A query for `qname` over `s` (RFC 7766 framing).
async fn send_query(s: &mut TcpStream, qname: &str) {
    let mut q = Message::new(rand::random(), MessageType::Query, OpCode::Query);
    q.add_query(Query::query(name(qname), RecordType::A));
    let b = q.to_vec().unwrap();
    let mut framed = (b.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&b);
    s.write_all(&framed).await.unwrap();
}

/// Reads one framed reply from `s`.
async fn read_reply(s: &mut TcpStream) -> Message {
    let len = s.read_u16().await.unwrap() as usize;
    let mut b = vec![0u8; len];
    s.read_exact(&mut b).await.unwrap();
    Message::from_vec(&b).unwrap()
}

/// One A query over `s` and its reply.
async fn tcp_query(s: &mut TcpStream, qname: &str) -> Message {
    send_query(s, qname).await;
    read_reply(s).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_pipelining_idle_garbage_and_connection_limit() {
    let (up, r) = TestResolver::with_hostile_upstream(&[
        "--tcp-idle-timeout-ms",
        "700",
        "--tcp-max-connections",
        "4",
    ])
    .await;

    // Pipelining: three queries in one write, three answers.
    let mut s = TcpStream::connect(r.addr).await.unwrap();
    let mut batch = Vec::new();
    for (i, n) in ["p1.example.", "p2.example.", "p3.example."]
        .iter()
        .enumerate()
    {
        let mut q = Message::new(100 + i as u16, MessageType::Query, OpCode::Query);
        q.add_query(Query::query(name(n), RecordType::A));
        let b = q.to_vec().unwrap();
        batch.extend_from_slice(&(b.len() as u16).to_be_bytes());
        batch.extend_from_slice(&b);
    }
    s.write_all(&batch).await.unwrap();
    let mut ids = Vec::new();
    for _ in 0..3 {
        let len = s.read_u16().await.unwrap() as usize;
        let mut b = vec![0u8; len];
        s.read_exact(&mut b).await.unwrap();
        let m = Message::from_vec(&b).unwrap();
        assert_eq!(m.answers.len(), 1);
        ids.push(m.metadata.id);
    }
    ids.sort();
    assert_eq!(ids, vec![100, 101, 102]);
    // Idle: closed after the idle timeout.
    assert!(
        closed_within(&mut s, Duration::from_secs(3)).await,
        "idle connection closed"
    );

    // Garbage: a length too small for a header closes the connection.
    let mut g = TcpStream::connect(r.addr).await.unwrap();
    g.write_all(&[0, 3, 1, 2, 3]).await.unwrap();
    assert!(
        closed_within(&mut g, Duration::from_secs(2)).await,
        "garbage connection closed"
    );
    // Half-open: a length, then nothing: closed.
    let mut h = TcpStream::connect(r.addr).await.unwrap();
    h.write_all(&[0, 40, 1, 2]).await.unwrap();
    assert!(
        closed_within(&mut h, Duration::from_secs(8)).await,
        "half-sent message closed"
    );

    // The node-wide limit: a fifth connection closes the one idle the
    // longest to make room (RFC 7766 section 6.2.3), and is served.
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(TcpStream::connect(r.addr).await.unwrap());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut extra = TcpStream::connect(r.addr).await.unwrap();
    assert!(
        closed_within(&mut held[0], Duration::from_millis(500)).await,
        "the idlest connection made room"
    );
    assert_eq!(
        tcp_query(&mut extra, "extra.example.").await.answers.len(),
        1
    );
    r.assert_counted("nodedns_tcp_reclaimed_total", &[]).await;
    drop(held);
    drop(extra);
    tokio::time::sleep(Duration::from_millis(300)).await;

    // With every connection busy (a slow upstream), nothing can make room:
    // a fifth connection is closed at once.
    up.set(Behavior::Slow(Duration::from_millis(800)));
    let mut busy = Vec::new();
    for i in 0..4 {
        let mut s = TcpStream::connect(r.addr).await.unwrap();
        send_query(&mut s, &format!("slow{i}.example.")).await;
        busy.push(s);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut refused = TcpStream::connect(r.addr).await.unwrap();
    assert!(
        closed_within(&mut refused, Duration::from_millis(500)).await,
        "over the limit with nothing idle: closed"
    );
    r.assert_counted("nodedns_tcp_refused_total", &[("bound", "total")])
        .await;
    for s in &mut busy {
        assert_eq!(read_reply(s).await.answers.len(), 1, "busy ones are served");
    }
    up.set(Behavior::Answer);
    let held = busy;
    drop(held);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let d = dig_at(r.addr, "later.example", "A", &["+tcp"]).await;
    assert_eq!(
        d.addresses(),
        vec!["192.0.2.1"],
        "healthy afterwards: {}",
        d.raw
    );
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_answers_are_promoted_to_the_kernel_map() {
    let (_up, r) = TestResolver::with_hostile_upstream(&["--hot-threshold", "2"]).await;
    r.zone.set_a(
        "web.default.svc.cluster.local.",
        Ipv4Addr::new(10, 96, 0, 10),
    );

    // Cluster answers go in at once, positive and negative (the ndots:5 names).
    dig_at(r.addr, "web.default.svc.cluster.local", "A", &[]).await;
    dig_at(
        r.addr,
        "api.example.com.default.svc.cluster.local",
        "A",
        &[],
    )
    .await;
    let e = entry(&r.sink, "web.default.svc.cluster.local.", RecordType::A)
        .expect("cluster answer promoted");
    assert_eq!(e.rcode, 0);
    assert_eq!(e.flags & ENTRY_FLAG_AUTHORITATIVE, ENTRY_FLAG_AUTHORITATIVE);
    let e = entry(
        &r.sink,
        "api.example.com.default.svc.cluster.local.",
        RecordType::A,
    )
    .expect("NXDOMAIN promoted");
    assert_eq!(e.rcode, 3);

    // Upstream answers only once hot: asked more than 2 times in the window.
    for i in 1..=3 {
        dig_at(r.addr, "popular.example", "A", &[]).await;
        let promoted = entry(&r.sink, "popular.example.", RecordType::A).is_some();
        assert_eq!(promoted, i > 2, "after {i} queries");
    }
    let e = entry(&r.sink, "popular.example.", RecordType::A).unwrap();
    assert_eq!(e.flags & ENTRY_FLAG_AUTHORITATIVE, 0);
    assert!(e.max_ttl <= 30);
    let now = boot_time_ns();
    assert!(
        e.expires_ns > now && e.expires_ns <= now + 31_000_000_000,
        "expiry follows the cache"
    );
    // Negative upstream answers too.
    for _ in 0..3 {
        dig_at(r.addr, "nxpopular.example", "A", &[]).await;
    }
    assert_eq!(
        entry(&r.sink, "nxpopular.example.", RecordType::A)
            .expect("negative promoted")
            .rcode,
        3
    );
    assert!(r.metric("nodedns_map_entries", &[]).await >= 4);
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn map_capacity_is_bounded_by_frequency_aware_eviction() {
    let (_up, r) = TestResolver::with_hostile_upstream(&[]).await;
    // The test sink holds 64 entries; answer 100 cluster names, then the
    // last 36 again. Once the map is full a name asked once stays out (it
    // is not asked more often than any entry); asked again, it replaces the
    // least recently used entry.
    let name = |i: usize| format!("svc{i}.default.svc.cluster.local.");
    for i in (0..100).chain(64..100) {
        let reply = udp_query(r.addr, &name(i), RecordType::A)
            .await
            .expect("answered");
        assert_eq!(
            reply.metadata.response_code,
            ResponseCode::NXDomain,
            "the query never fails"
        );
    }
    assert_eq!(r.sink.len(), 64);
    assert!(
        entry(&r.sink, &name(99), RecordType::A).is_some(),
        "repeated kept"
    );
    assert!(
        entry(&r.sink, &name(0), RecordType::A).is_none(),
        "least recent evicted"
    );
    r.assert_metric("nodedns_map_evictions_total", &[], 36)
        .await;
    r.assert_metric("nodedns_map_rejected_total", &[("reason", "colder")], 36)
        .await;
    r.assert_metric("nodedns_map_admitted_total", &[("reason", "hotter")], 36)
        .await;
    r.stop().await;
}

/// Waits at most a second for `condition` (a change reaching the map).
async fn within_one_second(what: &str, condition: impl FnMut() -> bool) {
    wait_until(what, Duration::from_secs(1), condition)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zone_changes_reach_the_map_within_one_second() {
    let (_up, r) = TestResolver::with_hostile_upstream(&[]).await;
    let web = "web.default.svc.cluster.local.";
    let new = "new.default.svc.cluster.local.";
    r.zone.set_a(web, Ipv4Addr::new(10, 96, 0, 10));
    dig_at(r.addr, web, "A", &[]).await;
    dig_at(r.addr, new, "A", &[]).await;
    let first = entry(&r.sink, web, RecordType::A).unwrap().generation;
    assert_eq!(entry(&r.sink, new, RecordType::A).unwrap().rcode, 3);

    // Updated address: the entry is rewritten.
    r.zone.set_a(web, Ipv4Addr::new(10, 96, 0, 11));
    let sink = r.sink.clone();
    within_one_second("updated service re-derived within 1 s", || {
        entry(&sink, web, RecordType::A).unwrap().generation != first
    })
    .await;
    // Created: NXDOMAIN becomes data.
    r.zone.set_a(new, Ipv4Addr::new(10, 96, 0, 12));
    within_one_second("new service resolves within 1 s", || {
        entry(&sink, new, RecordType::A).is_some_and(|e| e.rcode == 0)
    })
    .await;
    // Deleted: data becomes NXDOMAIN.
    r.zone.remove(web);
    within_one_second("deleted service is NXDOMAIN within 1 s", || {
        entry(&sink, web, RecordType::A).is_some_and(|e| e.rcode == 3)
    })
    .await;
    // Not ready: entries are withdrawn, so the kernel passes to userspace.
    r.zone.set_ready(false);
    within_one_second("entries withdrawn when the zone loses its sync", || {
        entry(&sink, new, RecordType::A).is_none()
    })
    .await;
    r.stop().await;
}

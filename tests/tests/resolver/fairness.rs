//! The per-client and per-zone bounds, in-process: a client at its bound
//! of queries in progress gets SERVFAIL at once while another is served; a
//! client at its bound of TCP connections is refused while another
//! connects; one zone cannot take the whole upstream budget. The goal with
//! the real agent and two pods is in `e2e/fairness.rs`.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::RecordType;
use nodedns_tests::client::dig_at;
use nodedns_tests::hostile::{Behavior, DEAD_ZONE};
use nodedns_tests::records::name;
use nodedns_tests::resolver::{TestResolver, unique_ip};
use tokio::net::{TcpSocket, UdpSocket};

/// A query for `qname` A with a random ID.
fn query(qname: &str) -> Vec<u8> {
    let mut q = Message::new(rand::random(), MessageType::Query, OpCode::Query);
    q.metadata.recursion_desired = true;
    q.add_query(Query::query(name(qname), RecordType::A));
    q.to_vec().unwrap()
}

/// Sends `qnames` at once from `client` and returns the rcodes of the
/// replies that came within 3 s, in arrival order.
async fn burst(server: SocketAddr, client: IpAddr, qnames: &[String]) -> Vec<ResponseCode> {
    let socket = UdpSocket::bind((client, 0)).await.unwrap();
    for q in qnames {
        socket.send_to(&query(q), server).await.unwrap();
    }
    let mut rcodes = Vec::new();
    let mut buf = vec![0u8; 4096];
    while rcodes.len() < qnames.len() {
        match tokio::time::timeout(Duration::from_secs(3), socket.recv(&mut buf)).await {
            Ok(Ok(n)) => rcodes.push(Message::from_vec(&buf[..n]).unwrap().metadata.response_code),
            _ => break,
        }
    }
    rcodes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_at_its_bound_gets_servfail_at_once_and_others_are_served() {
    // Shares hold once half of --max-concurrent is in use: 4 of 8.
    let (up, r) = TestResolver::with_hostile_upstream(&[
        "--max-concurrent-per-client",
        "4",
        "--max-concurrent",
        "8",
    ])
    .await;
    up.set(Behavior::Slow(Duration::from_millis(700)));
    let (noisy, quiet) = (IpAddr::from(unique_ip()), IpAddr::from(unique_ip()));
    let names: Vec<String> = (0..10).map(|i| format!("burst{i}.example.com")).collect();
    let quiet_name = ["quiet.example.com".to_string()];
    let (noisy_rcodes, quiet_rcodes) = tokio::join!(
        burst(r.addr, noisy, &names),
        burst(r.addr, quiet, &quiet_name)
    );
    // The first four wait for the slow upstream; the other six are
    // answered SERVFAIL at once, so they arrive first.
    assert_eq!(noisy_rcodes.len(), 10, "{noisy_rcodes:?}");
    assert!(
        noisy_rcodes[..6]
            .iter()
            .all(|r| *r == ResponseCode::ServFail),
        "{noisy_rcodes:?}"
    );
    assert!(
        noisy_rcodes[6..]
            .iter()
            .all(|r| *r == ResponseCode::NoError),
        "{noisy_rcodes:?}"
    );
    assert_eq!(quiet_rcodes, [ResponseCode::NoError]);
    r.assert_metric("nodedns_client_limited_total", &[("bound", "queries")], 6)
        .await;
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_at_its_connection_bound_is_refused_and_others_connect() {
    let (_up, r) =
        TestResolver::with_hostile_upstream(&["--tcp-max-connections-per-client", "2"]).await;
    let server = r.addr;
    let connect = |ip: IpAddr| async move {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind((ip, 0).into()).unwrap();
        socket.connect(server).await.unwrap()
    };
    let (noisy, quiet) = (IpAddr::from(unique_ip()), IpAddr::from(unique_ip()));
    let _held = [connect(noisy).await, connect(noisy).await];
    let mut third = connect(noisy).await;
    let mut buf = [0u8; 1];
    let closed = tokio::time::timeout(
        Duration::from_secs(2),
        tokio::io::AsyncReadExt::read(&mut third, &mut buf),
    )
    .await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "the third is closed at once"
    );
    r.assert_counted("nodedns_tcp_refused_total", &[("bound", "client")])
        .await;
    let _other = connect(quiet).await;
    let d = dig_at(r.addr, "tcp.example.com", "A", &["+tcp"]).await;
    assert_eq!(d.addresses(), ["192.0.2.1"], "{}", d.raw);
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_zone_cannot_take_the_whole_upstream_budget() {
    // Shares hold once half of --max-outstanding is in use: 4 of 8.
    let (_up, r) = TestResolver::with_hostile_upstream(&[
        "--max-outstanding",
        "8",
        "--max-outstanding-per-zone",
        "4",
        "--upstream-timeout-ms",
        "1000",
    ])
    .await;
    // Twelve names of a zone whose server never answers, from one client.
    let dead: Vec<String> = (0..12).map(|i| format!("n{i}.{DEAD_ZONE}")).collect();
    let (server, client) = (r.addr, IpAddr::from(unique_ip()));
    let flood = tokio::spawn(async move { burst(server, client, &dead).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Another zone is answered meanwhile.
    r.assert_forwarded("live.example.com").await;
    let rcodes = flood.await.unwrap();
    assert_eq!(rcodes.len(), 12);
    assert!(rcodes.iter().all(|r| *r == ResponseCode::ServFail));
    r.assert_metric("nodedns_upstream_overload_total", &[("bound", "zone")], 8)
        .await;
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_upstream_gives_servfail_that_is_not_cached() {
    let (up, r) =
        TestResolver::with_hostile_upstream(&["--max-outstanding-per-upstream", "1"]).await;
    up.set(Behavior::Slow(Duration::from_millis(500)));
    let names = [
        "first.example.com".to_string(),
        "second.example.com".to_string(),
    ];
    let rcodes = burst(r.addr, IpAddr::from(unique_ip()), &names).await;
    // The second finds the upstream's one slot taken: SERVFAIL at once.
    assert_eq!(rcodes, [ResponseCode::ServFail, ResponseCode::NoError]);
    r.assert_metric(
        "nodedns_upstream_overload_total",
        &[("bound", "upstream")],
        1,
    )
    .await;
    // Not the name's fault: asked again, it is answered.
    r.assert_forwarded("second.example.com").await;
    r.stop().await;
}

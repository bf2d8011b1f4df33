//! One pod cannot starve another: while pod 0 holds 600 TCP connections
//! to the agent and floods it with unique names of a zone whose servers
//! never answer, pod 1's TCP queries and fresh external names succeed at
//! least 99% of the time. The same load against the agent with its
//! per-client and per-zone bounds lifted (the control) shows what they
//! prevent. The rates are printed for the README.

use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::RecordType;
use nodedns_tests::agent::AgentSpec;
use nodedns_tests::hostile::{DEAD_ZONE, NodeHostile};
use nodedns_tests::lab::{LISTEN_V4, Lab, Pod};
use nodedns_tests::records::name;

/// The noisy pod's TCP connections, held open and idle.
const HELD_CONNECTIONS: usize = 600;
/// The noisy pod's queries into the dead zone, per second.
const FLOOD_QPS: u64 = 2000;
/// Load before the other pod starts asking, so every bound is reached.
const WARM_UP: Duration = Duration::from_secs(3);
/// Queries the other pod asks of each kind.
const ASKED: usize = 100;
/// How often the noisy pod reopens what the agent closed.
const TOP_UP_EVERY: Duration = Duration::from_millis(500);
/// The goal.
const MIN_SUCCESS: f64 = 0.99;
const TRUTH: &str = "192.0.2.1";

/// Lifts every bound that shares the agent between clients.
const UNBOUNDED: &[&str] = &[
    "--max-concurrent-per-client",
    "1000000",
    "--tcp-max-connections-per-client",
    "1000000",
    "--max-outstanding-per-zone",
    "1000000",
    "--max-outstanding-per-upstream",
    "1000000",
];

fn dns_server() -> SocketAddr {
    SocketAddr::new(LISTEN_V4.into(), 53)
}

/// Keeps [`HELD_CONNECTIONS`] connections open from `pod`, reopening
/// those the agent closes, until `stop`. Returns how many it opened.
fn hold_connections(pod: &Pod, stop: &AtomicBool) -> usize {
    pod.netns()
        .enter(|| {
            let mut held: Vec<TcpStream> = Vec::new();
            let mut opened = 0;
            while !stop.load(Ordering::Relaxed) {
                held.retain(|s| {
                    // Still open: a non-blocking read would block (the
                    // agent closed it: it reads the end, 0 bytes).
                    let mut byte = [0u8; 1];
                    matches!(s.peek(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
                });
                while held.len() < HELD_CONNECTIONS && !stop.load(Ordering::Relaxed) {
                    match TcpStream::connect_timeout(&dns_server(), Duration::from_secs(1)) {
                        Ok(s) => {
                            s.set_nonblocking(true).expect("non-blocking");
                            held.push(s);
                            opened += 1;
                        }
                        Err(_) => break,
                    }
                }
                std::thread::sleep(TOP_UP_EVERY);
            }
            opened
        })
        .expect("enter the pod")
}

/// Sends unique names of the dead zone from `pod` at [`FLOOD_QPS`] until
/// `stop`. Returns how many it sent.
fn flood_dead_zone(pod: &Pod, stop: &AtomicBool) -> usize {
    pod.netns()
        .enter(|| {
            let socket = UdpSocket::bind("0.0.0.0:0").expect("a UDP socket");
            socket.set_nonblocking(true).expect("non-blocking");
            let start = Instant::now();
            let mut sent = 0u64;
            let mut buf = [0u8; 2048];
            while !stop.load(Ordering::Relaxed) {
                let due = start.elapsed().as_millis() as u64 * FLOOD_QPS / 1000;
                while sent < due {
                    let mut q = Message::new(sent as u16, MessageType::Query, OpCode::Query);
                    q.metadata.recursion_desired = true;
                    let qname = format!("n{sent}.{DEAD_ZONE}");
                    q.add_query(Query::query(name(&qname), RecordType::A));
                    let _ = socket.send_to(&q.to_vec().expect("encodable"), dns_server());
                    sent += 1;
                }
                // The answers (SERVFAIL) are read and dropped.
                while socket.recv(&mut buf).is_ok() {}
                std::thread::sleep(Duration::from_millis(5));
            }
            sent as usize
        })
        .expect("enter the pod")
}

/// Share of `ASKED` fresh external names `pod` gets answered, over UDP or
/// TCP.
fn success(pod: &Pod, tag: &str, tcp: bool) -> f64 {
    let ok = AtomicUsize::new(0);
    for i in 0..ASKED {
        let qname = format!("{tag}-{i}.example.com");
        let transport = if tcp { "+tcp" } else { "+notcp" };
        let r = pod
            .dig(&[transport, "+tries=1", "+time=3", &qname, "A"])
            .unwrap();
        if r.addresses() == [TRUTH] {
            ok.fetch_add(1, Ordering::Relaxed);
        }
    }
    ok.load(Ordering::Relaxed) as f64 / ASKED as f64
}

#[test]
fn a_noisy_pod_cannot_starve_another() {
    let lab = Lab::new_alone(2).unwrap();
    let (noisy, other) = (lab.pod(0), lab.pod(1));
    let upstream = NodeHostile::start(lab.node(), "127.0.0.1:0".parse().unwrap());
    for (i, (phase, flags)) in [
        ("bounds lifted (control)", UNBOUNDED),
        ("defaults", &[][..]),
    ]
    .into_iter()
    .enumerate()
    {
        let agent = AgentSpec::examples()
            .upstream(upstream.addr)
            .args(flags)
            .start(&lab, &format!("agent-{i}"));
        let stop = AtomicBool::new(false);
        let (udp, tcp, held, flooded) = std::thread::scope(|s| {
            let held = s.spawn(|| hold_connections(noisy, &stop));
            let flooded = s.spawn(|| flood_dead_zone(noisy, &stop));
            std::thread::sleep(WARM_UP);
            let udp = success(other, &format!("udp{i}"), false);
            let tcp = success(other, &format!("tcp{i}"), true);
            stop.store(true, Ordering::Relaxed);
            (udp, tcp, held.join().unwrap(), flooded.join().unwrap())
        });
        let m = agent.metrics(lab.node());
        println!(
            "fairness, {phase}: the other pod's fresh names {:.1}% over UDP, {:.1}% over TCP; the noisy pod opened {held} connections, sent {flooded} dead-zone queries; refused connections {:?}, overload {:?}, client-limited {}",
            udp * 100.0,
            tcp * 100.0,
            m.sum_by("nodedns_tcp_refused_total", "bound"),
            m.sum_by("nodedns_upstream_overload_total", "bound"),
            m.sum("nodedns_client_limited_total", &[]),
        );
        if flags.is_empty() {
            assert!(udp >= MIN_SUCCESS, "{phase}: UDP {udp}");
            assert!(tcp >= MIN_SUCCESS, "{phase}: TCP {tcp}");
        }
        drop(agent);
    }
}

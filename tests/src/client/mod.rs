//! DNS clients and what they print: real `dig`, `kdig` and `getent` (run in
//! a lab namespace through [`crate::lab::Netns::dig`] and friends, or here
//! against a loopback server with [`dig_at`]), a small in-process client for
//! concurrency, and the parsers of their output.

mod dnsperf;
mod flood;
mod hosts;
mod hot_cold;
mod reply;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::RecordType;
use tokio::net::UdpSocket;

use dnsperf::write_names;
pub use dnsperf::{DnsperfRun, DnsperfSummary};
pub use flood::{HotSetFlood, HotSetResult};
pub use hosts::Hosts;
pub use hot_cold::{HotColdLoad, HotColdRuns};
pub use reply::{Record, Reply};

/// How long the in-process client waits for a UDP reply.
const UDP_REPLY_TIMEOUT: Duration = Duration::from_secs(3);
/// The EDNS size the in-process client advertises (the agent's own).
const EDNS_SIZE: u16 = 1232;

/// Runs the real `dig` from the test's own namespace against `server` (a
/// loopback address and port): one try, six seconds.
pub async fn dig_at(server: SocketAddr, qname: &str, qtype: &str, extra: &[&str]) -> Reply {
    let out = tokio::process::Command::new("dig")
        .arg(format!("@{}", server.ip()))
        .args([
            "-p",
            &server.port().to_string(),
            qname,
            qtype,
            "+tries=1",
            "+time=6",
        ])
        .args(extra)
        .output()
        .await
        .expect("dig runs (`cargo xtask setup` installs dnsutils)");
    Reply::parse(&out)
}

/// One query over UDP with the in-process client (EDNS, RD set).
pub async fn udp_query(server: SocketAddr, qname: &str, qtype: RecordType) -> Option<Message> {
    let mut m = Message::new(rand::random(), MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(crate::records::name(qname), qtype));
    let mut edns = Edns::new();
    edns.set_max_payload(EDNS_SIZE);
    m.set_edns(edns);
    udp_exchange(server, &m.to_vec().unwrap())
        .await
        .and_then(|b| Message::from_vec(&b).ok())
}

/// Sends raw bytes over UDP from a loopback socket of the server's family;
/// the reply, if one comes within [`UDP_REPLY_TIMEOUT`].
pub async fn udp_exchange(server: SocketAddr, bytes: &[u8]) -> Option<Vec<u8>> {
    let local: IpAddr = if server.is_ipv4() {
        [127, 0, 0, 1].into()
    } else {
        std::net::Ipv6Addr::LOCALHOST.into()
    };
    let sock = UdpSocket::bind((local, 0)).await.unwrap();
    sock.send_to(bytes, server).await.unwrap();
    let mut buf = vec![0u8; 65535];
    match tokio::time::timeout(UDP_REPLY_TIMEOUT, sock.recv_from(&mut buf)).await {
        Ok(Ok((n, _))) => Some(buf[..n].to_vec()),
        _ => None,
    }
}

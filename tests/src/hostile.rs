//! A hostile upstream DNS server for the resolver's tests: it answers like
//! a plain authoritative server, or misbehaves on demand (wrong ID, wrong
//! question, QR=0, garbage, truncation, silence, slowness, SERVFAIL,
//! REFUSED), and counts every query it receives.
//!
//! Data it serves (any name): A -> 192.0.2.1 (TTL [`HostileUpstream::set_ttl`],
//! default 300); names whose first label starts with `nx` -> NXDOMAIN with
//! an SOA (TTL 3600, MINIMUM 60); names whose first label starts with `big`
//! -> 60 A records (too big for 512-byte UDP); names whose first label
//! starts with `shadow` -> a CNAME to `web.default.svc.cluster.local.` plus
//! a forged A record for that cluster name; names whose first label starts
//! with `extra` -> their A record plus, unasked, an A record and an NS
//! delegation (with glue) for `victim.example.`; names whose first label
//! starts with `out` -> a CNAME to `target.elsewhere.example.` plus a forged
//! A record (6.6.6.6) for it; names under [`DEAD_ZONE`] -> never answered
//! (a zone whose servers are down); other types -> NODATA + SOA.
//!
//! It remembers the names it was asked, as received (case included): the
//! last [`MAX_NAMES_KEPT`].

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;

/// How a bad reply is bad.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bad {
    WrongId,
    WrongQuestion,
    /// QR=0: a query, not a response.
    NotResponse,
    Garbage,
    /// Right ID and question, but every letter of the name in the other
    /// case, and a poisonous answer: a spoofer who guessed the ID, not the
    /// DNS 0x20 case.
    WrongCase,
}

/// A zone whose names the server never answers, whatever its behavior.
pub const DEAD_ZONE: &str = "dead.test.";

/// Whether `query` asks about a name under [`DEAD_ZONE`].
fn is_dead(query: &Message) -> bool {
    query
        .queries
        .first()
        .is_some_and(|q| name(DEAD_ZONE).zone_of(&q.name))
}

/// The address the server answers an A query with, when it behaves (the
/// first of many for a name starting with `big`).
pub const ANSWER_A: &str = "192.0.2.1";

/// Names remembered by [`HostileUpstream::names`].
pub const MAX_NAMES_KEPT: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behavior {
    /// Answer correctly.
    Answer,
    /// Only ever send a bad reply.
    Bad(Bad),
    /// A bad reply first, then the right one (a spoofing attempt that races
    /// the real server).
    BadThenGood(Bad),
    /// UDP replies carry TC=1 and no records; TCP gets the full answer.
    Truncate,
    /// Never reply.
    Silence,
    /// Answer correctly after this delay.
    Slow(Duration),
    ServFail,
    Refused,
    /// Answer correctly, but echo the question's name lower-cased, as an
    /// upstream that does not preserve case does.
    FoldCase,
}

struct Shared {
    behavior: Mutex<Behavior>,
    ttl: AtomicU32,
    udp_queries: AtomicUsize,
    tcp_queries: AtomicUsize,
    names: Mutex<VecDeque<String>>,
}

impl Shared {
    fn remember(&self, query: &Message) {
        let mut names = self.names.lock().unwrap();
        for q in &query.queries {
            if names.len() == MAX_NAMES_KEPT {
                names.pop_front();
            }
            names.push_back(q.name.to_ascii());
        }
    }
}

/// The server; stops when dropped.
pub struct HostileUpstream {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    cancel: CancellationToken,
}

impl HostileUpstream {
    /// Listens on UDP and TCP `addr` (port 0 picks one for both).
    pub async fn start(addr: SocketAddr) -> std::io::Result<Self> {
        let udp = UdpSocket::bind(addr).await?;
        let addr = udp.local_addr()?;
        let tcp = TcpListener::bind(addr).await?;
        let shared = Arc::new(Shared {
            behavior: Mutex::new(Behavior::Answer),
            ttl: AtomicU32::new(300),
            udp_queries: AtomicUsize::new(0),
            tcp_queries: AtomicUsize::new(0),
            names: Mutex::new(VecDeque::new()),
        });
        let cancel = CancellationToken::new();
        tokio::spawn(serve_udp(udp, shared.clone(), cancel.clone()));
        tokio::spawn(serve_tcp(tcp, shared.clone(), cancel.clone()));
        Ok(Self {
            addr,
            shared,
            cancel,
        })
    }

    pub fn set(&self, behavior: Behavior) {
        *self.shared.behavior.lock().unwrap() = behavior;
    }

    pub fn set_ttl(&self, ttl: u32) {
        self.shared.ttl.store(ttl, Ordering::Relaxed);
    }

    pub fn udp_queries(&self) -> usize {
        self.shared.udp_queries.load(Ordering::Relaxed)
    }

    pub fn tcp_queries(&self) -> usize {
        self.shared.tcp_queries.load(Ordering::Relaxed)
    }

    pub fn queries(&self) -> usize {
        self.udp_queries() + self.tcp_queries()
    }

    /// The names asked (the last [`MAX_NAMES_KEPT`]), spelled as received.
    pub fn names(&self) -> Vec<String> {
        self.shared.names.lock().unwrap().iter().cloned().collect()
    }
}

impl Drop for HostileUpstream {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// A [`HostileUpstream`] listening inside a lab namespace (usually the
/// node's), served by a runtime of its own, for tests of the real agent.
pub struct NodeHostile {
    // Field order is drop order: the server stops before its runtime.
    upstream: HostileUpstream,
    _runtime: tokio::runtime::Runtime,
}

impl NodeHostile {
    /// Listens on `addr` inside `netns` (port 0 picks one).
    pub fn start(netns: &crate::lab::Netns, addr: SocketAddr) -> Self {
        let (upstream, runtime) = netns.serve(|| HostileUpstream::start(addr));
        Self {
            upstream,
            _runtime: runtime,
        }
    }
}

impl std::ops::Deref for NodeHostile {
    type Target = HostileUpstream;

    fn deref(&self) -> &HostileUpstream {
        &self.upstream
    }
}

fn name(s: &str) -> Name {
    Name::from_ascii(s).expect("static name")
}

fn soa(zone: &Name) -> Record {
    let soa = SOA::new(
        name("ns.hostile."),
        name("hostmaster.hostile."),
        1,
        60,
        60,
        600,
        60,
    );
    Record::from_rdata(zone.base_name(), 3600, RData::SOA(soa))
}

/// A CNAME from `owner` to `target`, and a forged A record (6.6.6.6) for
/// the target that an upstream has no business giving.
fn cname_with_forged_target(reply: &mut Message, owner: &Name, target: &str, ttl: u32) {
    let target = name(target);
    let cname = RData::CNAME(hickory_proto::rr::rdata::CNAME(target.clone()));
    reply.add_answer(Record::from_rdata(owner.clone(), ttl, cname));
    reply.add_answer(forged_a(target, ttl));
}

/// The forged address (6.6.6.6) for `owner`, which no answer may carry.
fn forged_a(owner: Name, ttl: u32) -> Record {
    Record::from_rdata(owner, ttl, RData::A(A::new(6, 6, 6, 6)))
}

/// Asks about `other` (a different name, or the same in another case) in
/// the reply's question, with a poisonous answer for it.
fn swap_question(reply: &mut Message, other: Name) {
    reply.queries[0].name = other.clone();
    reply.answers = vec![forged_a(other, 86_400)];
}

/// The correct answer to `query`.
fn answer(query: &Message, ttl: u32) -> Message {
    let mut reply = Message::response(query.metadata.id, OpCode::Query);
    reply.metadata.recursion_desired = query.metadata.recursion_desired;
    reply.metadata.recursion_available = true;
    reply.add_queries(query.queries.iter().cloned());
    let Some(q) = query.queries.first() else {
        reply.metadata.response_code = ResponseCode::FormErr;
        return reply;
    };
    let first = q
        .name
        .iter()
        .next()
        .map(|l| String::from_utf8_lossy(l).to_lowercase())
        .unwrap_or_default();
    if first.starts_with("nx") {
        reply.metadata.response_code = ResponseCode::NXDomain;
        reply.add_authority(soa(&q.name));
    } else if first.starts_with("shadow") {
        cname_with_forged_target(&mut reply, &q.name, "web.default.svc.cluster.local.", ttl);
    } else if first.starts_with("extra") {
        let victim = name("victim.example.");
        let ns = name("ns.victim.example.");
        reply.add_answer(Record::from_rdata(
            q.name.clone(),
            ttl,
            RData::A(A::new(192, 0, 2, 1)),
        ));
        reply.add_answer(forged_a(victim.clone(), ttl));
        let delegation = RData::NS(hickory_proto::rr::rdata::NS(ns.clone()));
        reply.add_authority(Record::from_rdata(victim, ttl, delegation));
        reply.add_additional(Record::from_rdata(ns, ttl, RData::A(A::new(6, 6, 6, 7))));
    } else if first.starts_with("out") {
        cname_with_forged_target(&mut reply, &q.name, "target.elsewhere.example.", ttl);
    } else if q.query_type == RecordType::A {
        let count = if first.starts_with("big") { 60 } else { 1 };
        for i in 0..count {
            let a = A(Ipv4Addr::new(192, 0, 2, 1 + i as u8));
            reply.add_answer(Record::from_rdata(q.name.clone(), ttl, RData::A(a)));
        }
    } else {
        reply.add_authority(soa(&q.name));
    }
    if query.edns.is_some() {
        let mut edns = hickory_proto::op::Edns::new();
        edns.set_max_payload(1232);
        reply.set_edns(edns);
    }
    reply
}

fn bad(query: &Message, how: Bad, ttl: u32) -> Vec<u8> {
    let mut reply = answer(query, ttl);
    match how {
        Bad::WrongId => reply.metadata.id = query.metadata.id.wrapping_add(1),
        Bad::WrongQuestion => {
            // Same ID, a different name, and a poisonous answer for it.
            swap_question(&mut reply, name("poison.example."));
        }
        Bad::NotResponse => {
            reply.metadata.message_type = MessageType::Query;
            for r in &mut reply.answers {
                r.data = RData::A(A::new(6, 6, 6, 6));
            }
        }
        Bad::WrongCase => {
            let flipped: String = reply.queries[0]
                .name
                .to_ascii()
                .chars()
                .map(|c| match c {
                    'a'..='z' => c.to_ascii_uppercase(),
                    'A'..='Z' => c.to_ascii_lowercase(),
                    c => c,
                })
                .collect();
            swap_question(
                &mut reply,
                Name::from_ascii(&flipped).expect("same name, other case"),
            );
        }
        Bad::Garbage => {
            let mut junk = vec![0u8; 64];
            junk[..2].copy_from_slice(&query.metadata.id.to_be_bytes());
            for (i, b) in junk.iter_mut().enumerate().skip(2) {
                *b = (i as u8).wrapping_mul(37) ^ 0xa5;
            }
            return junk;
        }
    }
    reply.to_vec().expect("encodable")
}

/// The datagrams to send (in order, after `delay`) for one UDP query.
fn udp_replies(query: &Message, shared: &Shared) -> (Duration, Vec<Vec<u8>>) {
    if is_dead(query) {
        return (Duration::ZERO, Vec::new());
    }
    let behavior = *shared.behavior.lock().unwrap();
    let ttl = shared.ttl.load(Ordering::Relaxed);
    let good = || answer(query, ttl).to_vec().expect("encodable");
    let coded = |rcode| {
        let mut m = answer(query, ttl);
        m.metadata.response_code = rcode;
        m.answers.clear();
        m.authorities.clear();
        m.to_vec().expect("encodable")
    };
    match behavior {
        Behavior::Answer => (Duration::ZERO, vec![good()]),
        Behavior::Bad(how) => (Duration::ZERO, vec![bad(query, how, ttl)]),
        Behavior::BadThenGood(how) => (Duration::ZERO, vec![bad(query, how, ttl), good()]),
        Behavior::Truncate => {
            let mut m = answer(query, ttl);
            m.metadata.truncation = true;
            m.answers.clear();
            m.authorities.clear();
            (Duration::ZERO, vec![m.to_vec().expect("encodable")])
        }
        Behavior::Silence => (Duration::ZERO, vec![]),
        Behavior::Slow(d) => (d, vec![good()]),
        Behavior::ServFail => (Duration::ZERO, vec![coded(ResponseCode::ServFail)]),
        Behavior::Refused => (Duration::ZERO, vec![coded(ResponseCode::Refused)]),
        Behavior::FoldCase => (Duration::ZERO, vec![folded(query, ttl)]),
    }
}

/// The right answer with the question's name lower-cased.
fn folded(query: &Message, ttl: u32) -> Vec<u8> {
    let mut m = answer(query, ttl);
    for q in &mut m.queries {
        q.name = q.name.to_lowercase();
    }
    m.to_vec().expect("encodable")
}

async fn serve_udp(socket: UdpSocket, shared: Arc<Shared>, cancel: CancellationToken) {
    let socket = Arc::new(socket);
    let mut buf = vec![0u8; 4096];
    loop {
        let (n, peer) = tokio::select! {
            _ = cancel.cancelled() => return,
            r = socket.recv_from(&mut buf) => match r { Ok(r) => r, Err(_) => continue },
        };
        shared.udp_queries.fetch_add(1, Ordering::Relaxed);
        let Ok(query) = Message::from_vec(&buf[..n]) else {
            continue;
        };
        shared.remember(&query);
        let (delay, replies) = udp_replies(&query, &shared);
        let socket = socket.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            for r in replies {
                let _ = socket.send_to(&r, peer).await;
            }
        });
    }
}

async fn serve_tcp(listener: TcpListener, shared: Arc<Shared>, cancel: CancellationToken) {
    loop {
        let mut stream = tokio::select! {
            _ = cancel.cancelled() => return,
            r = listener.accept() => match r { Ok((s, _)) => s, Err(_) => continue },
        };
        let shared = shared.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move {
            let work = async {
                let len = stream.read_u16().await.ok()? as usize;
                let mut buf = vec![0u8; len];
                stream.read_exact(&mut buf).await.ok()?;
                shared.tcp_queries.fetch_add(1, Ordering::Relaxed);
                let query = Message::from_vec(&buf).ok()?;
                shared.remember(&query);
                let behavior = *shared.behavior.lock().unwrap();
                let ttl = shared.ttl.load(Ordering::Relaxed);
                let reply = match behavior {
                    _ if is_dead(&query) => return None,
                    Behavior::Silence => return None,
                    Behavior::Slow(d) => {
                        tokio::time::sleep(d).await;
                        answer(&query, ttl).to_vec().ok()?
                    }
                    Behavior::Bad(how) => bad(&query, how, ttl),
                    Behavior::FoldCase => folded(&query, ttl),
                    _ => answer(&query, ttl).to_vec().ok()?,
                };
                let mut framed = (reply.len() as u16).to_be_bytes().to_vec();
                framed.extend_from_slice(&reply);
                stream.write_all(&framed).await.ok()
            };
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = work => {}
            }
        });
    }
}

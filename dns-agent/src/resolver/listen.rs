//! UDP and TCP listeners on every listen address. Sockets use SO_REUSEPORT
//! so a new agent can bind next to the old one during a hand-over; every
//! kind of work a client can cause is bounded.
//!
//! Hand-over without loss: each socket attaches a one-instruction reuseport
//! program that picks the socket of the group that gets new queries and
//! connections. An agent binds at once, steering to the group's oldest
//! socket (its predecessor's, or its own when alone) until its zone has
//! synced, then to the newest (its own), so the old one receives nothing
//! new; on shutdown it answers what is already queued and in flight, then
//! closes (docs/design.md#hand-over).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::clients::{Clients, ConnectionPermit};
use super::fast::FastBuffers;
use super::handler::{Handler, Transport};
use super::metrics::{BoundLabels, ResolverMetrics};

/// Largest UDP query read (larger datagrams are cut and answered FORMERR).
const UDP_QUERY_BUF: usize = 4096;
/// Queries one TCP connection may have in progress (RFC 7766 pipelining).
const TCP_PIPELINE_DEPTH: usize = 16;
/// Time a client has to send the rest of a message once its length arrived,
/// and to take a response off our hands.
const TCP_IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Pending connections the kernel queues before accept.
const TCP_BACKLOG: i32 = 1024;
/// Socket receive buffer asked for the UDP listeners (best effort).
const UDP_RCVBUF: usize = 4 << 20;
/// UDP queries read per wake-up of a listener before other tasks get a turn.
const UDP_BATCH: usize = 64;
/// On shutdown, queued UDP queries still read and answered at most.
const UDP_DRAIN_MAX: usize = 4096;
/// On shutdown, how long queries in progress (forwarded upstream) may take.
const UDP_DRAIN_TIMEOUT: Duration = Duration::from_secs(3);
/// Index, in the reuseport group, of the socket the steering program picks:
/// sockets join at the end, so in a hand-over (old, new) it is the new one.
/// Out of range (a lone agent), the kernel falls back to its hash.
const NEWEST_OF_TWO: u32 = 1;
/// The group's first socket: the predecessor's in a hand-over (a socket
/// that leaves is replaced by the last one, so when the old agent closes,
/// the new one is first).
const OLDEST: u32 = 0;

/// Which socket of a reuseport group new queries and connections go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Steering {
    /// The oldest: a predecessor that still serves, or ours when alone. A
    /// just-started agent before its first sync, which could only SERVFAIL
    /// cluster names.
    Oldest,
    /// The newest: ours, once we answer everything.
    Newest,
}

impl Steering {
    fn index(self) -> u32 {
        match self {
            Self::Oldest => OLDEST,
            Self::Newest => NEWEST_OF_TWO,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error(
    "cannot listen on {addr}/{proto}: {source} (is the address configured on this host? see --listen and --no-create-interface)"
)]
pub struct BindError {
    pub addr: SocketAddr,
    pub proto: &'static str,
    #[source]
    pub source: std::io::Error,
}

/// A DNS listening socket: bound to `addr` in its reuseport group, made
/// `ready` (a TCP socket joins the group at listen()), steered, and turned
/// into the tokio type by `finish`.
fn bind<T>(
    addr: SocketAddr,
    protocol: Protocol,
    steering: Steering,
    ready: impl FnOnce(&Socket) -> std::io::Result<()>,
    finish: impl FnOnce(Socket) -> std::io::Result<T>,
) -> Result<T, BindError> {
    let (ty, proto) = match protocol {
        Protocol::UDP => (Type::DGRAM, "udp"),
        _ => (Type::STREAM, "tcp"),
    };
    let bound = || {
        let s = Socket::new(Domain::for_address(addr), ty, Some(protocol))?;
        s.set_reuse_address(true)?;
        s.set_reuse_port(true)?;
        if addr.is_ipv6() {
            s.set_only_v6(true)?;
        }
        s.set_nonblocking(true)?;
        s.bind(&addr.into())?;
        ready(&s)?;
        steer(&s, steering, addr, proto);
        finish(s)
    };
    bound().map_err(|source| BindError {
        addr,
        proto,
        source,
    })
}

/// Attaches the classic-BPF reuseport program `return <index>` to the
/// socket's group (replacing the group's previous one). Best effort:
/// without it a hand-over still works, but the old agent keeps its hash
/// share until it closes and drops what is queued then.
pub fn steer(s: &impl std::os::fd::AsFd, to: Steering, addr: SocketAddr, proto: &str) {
    if let Err(error) = crate::kernel::socket::steer_reuseport_group(s, to.index()) {
        tracing::warn!(%addr, proto, %error, ?to, "cannot steer new queries in the reuseport group: a restart may drop queued queries");
    }
}

/// Copies of the DNS listening sockets (the same sockets, other file
/// descriptors), kept to move their groups' steering once the zone syncs.
pub struct Steerer(Vec<(Socket, SocketAddr, &'static str)>);

impl Steerer {
    /// Keeps a copy of every socket in `dns`.
    pub fn of(dns: &[(UdpSocket, TcpListener)]) -> std::io::Result<Self> {
        let mut copies = Vec::with_capacity(dns.len() * 2);
        for (udp, tcp) in dns {
            copies.push((
                socket2::SockRef::from(udp).try_clone()?,
                udp.local_addr()?,
                "udp",
            ));
            copies.push((
                socket2::SockRef::from(tcp).try_clone()?,
                tcp.local_addr()?,
                "tcp",
            ));
        }
        Ok(Self(copies))
    }

    pub fn steer(&self, to: Steering) {
        for (s, addr, proto) in &self.0 {
            steer(s, to, *addr, proto);
        }
    }
}

pub fn bind_udp(addr: SocketAddr, steering: Steering) -> Result<UdpSocket, BindError> {
    let ready = |s: &Socket| {
        // Best effort: a smaller buffer only drops sooner under a burst.
        let _ = s.set_recv_buffer_size(UDP_RCVBUF);
        Ok(())
    };
    bind(addr, Protocol::UDP, steering, ready, |s| {
        UdpSocket::from_std(s.into())
    })
}

pub fn bind_tcp(addr: SocketAddr, steering: Steering) -> Result<TcpListener, BindError> {
    let ready = |s: &Socket| s.listen(TCP_BACKLOG);
    bind(addr, Protocol::TCP, steering, ready, |s| {
        TcpListener::from_std(s.into())
    })
}

/// Limits shared by all listeners.
#[derive(Clone)]
pub struct Limits {
    /// Client queries in progress, UDP and TCP together.
    pub queries: Arc<Semaphore>,
    /// Per-client queries and connections, node-wide connections.
    pub clients: Arc<Clients>,
    pub tcp_idle: Duration,
}

pub async fn serve_udp(
    socket: UdpSocket,
    handler: Arc<Handler>,
    limits: Limits,
    cancel: CancellationToken,
) {
    let socket = Arc::new(socket);
    let in_flight = TaskTracker::new();
    let mut buf = vec![0u8; UDP_QUERY_BUF];
    let mut fast = FastBuffers::default();
    'serve: loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            r = socket.readable() => if let Err(e) = r {
                tracing::debug!(error = %e, "UDP socket not readable");
                continue;
            },
        };
        // Everything queued, up to a batch, per wake-up: one poll for many
        // queries (docs/design.md#the-userspace-fast-path).
        let mut batch = 0;
        while batch < UDP_BATCH {
            batch += 1;
            let (n, peer) = match socket.try_recv_from(&mut buf) {
                Ok(r) => r,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    tracing::debug!(error = %e, "UDP receive error");
                    continue;
                }
            };
            // Answered here and now: it holds no permit, as it is never
            // in progress while another query is read.
            if handler.answer_fast(&buf[..n], peer.is_ipv6(), &mut fast) {
                let _ = socket.send_to(&fast.out, peer).await;
                continue;
            }
            // One client at its bound is answered at once, without waiting:
            // it must not hold up the others' queries behind it.
            let Some(client) = limits.clients.try_query(peer.ip()) else {
                if let Some(response) =
                    handler.overloaded(&buf[..n], Transport::Udp, peer.is_ipv6())
                {
                    let _ = socket.try_send_to(&response, peer);
                }
                continue;
            };
            // Waiting here leaves further queries in the socket buffer, where
            // the kernel drops the excess: backpressure, not an unbounded queue.
            let permit = tokio::select! {
                _ = cancel.cancelled() => break 'serve,
                p = limits.queries.clone().acquire_owned() => p.expect("semaphore never closed"),
            };
            spawn_udp_query(
                &in_flight,
                &socket,
                &handler,
                buf[..n].to_vec(),
                peer,
                (permit, client),
            );
        }
        if batch == UDP_BATCH {
            // A full batch: let the runtime's other tasks (answers coming
            // back from upstream, TCP) run before the next.
            tokio::task::yield_now().await;
        }
    }
    drain_udp(&socket, &handler, &limits, &in_flight, &mut buf).await;
}

/// What a query in progress holds: its place in `--max-concurrent` and in
/// its client's share.
type QueryPermits = (
    tokio::sync::OwnedSemaphorePermit,
    super::clients::QueryPermit,
);

fn spawn_udp_query(
    in_flight: &TaskTracker,
    socket: &Arc<UdpSocket>,
    handler: &Arc<Handler>,
    query: Vec<u8>,
    peer: SocketAddr,
    permits: QueryPermits,
) {
    let (socket, handler) = (socket.clone(), handler.clone());
    in_flight.spawn(async move {
        // The socket is of one family (IPv6 ones are IPV6_V6ONLY).
        if let Some(response) = handler.handle(&query, Transport::Udp, peer.is_ipv6()).await {
            let _ = socket.send_to(&response, peer).await;
        }
        drop(permits);
    });
}

/// On shutdown: answer what the kernel already queued on this socket and
/// what is in progress, within bounds, before the socket closes (closing
/// drops its queue). With the steering program, a successor that has bound
/// receives everything new, so nothing is lost in a hand-over.
async fn drain_udp(
    socket: &Arc<UdpSocket>,
    handler: &Arc<Handler>,
    limits: &Limits,
    in_flight: &TaskTracker,
    buf: &mut [u8],
) {
    let mut drained = 0;
    while drained < UDP_DRAIN_MAX {
        let Ok((n, peer)) = socket.try_recv_from(buf) else {
            break; // WouldBlock: the queue is empty
        };
        let Some(client) = limits.clients.try_query(peer.ip()) else {
            continue;
        };
        let Ok(permit) = limits.queries.clone().try_acquire_owned() else {
            break;
        };
        let query = buf[..n].to_vec();
        spawn_udp_query(in_flight, socket, handler, query, peer, (permit, client));
        drained += 1;
    }
    drain_in_flight(in_flight, UDP_DRAIN_TIMEOUT, "UDP").await;
    tracing::debug!(drained, "UDP listener drained");
}

/// The end of a shutdown drain: takes no more tasks and waits for those in
/// progress up to `timeout`, then warns with the count still unanswered.
/// `what` names the queries ("UDP", "transparent").
pub(super) async fn drain_in_flight(in_flight: &TaskTracker, timeout: Duration, what: &str) {
    in_flight.close();
    if tokio::time::timeout(timeout, in_flight.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            in_flight = in_flight.len(),
            "shutting down with {what} queries still unanswered"
        );
    }
}

pub async fn serve_tcp(
    listener: TcpListener,
    handler: Arc<Handler>,
    limits: Limits,
    metrics: Arc<ResolverMetrics>,
    cancel: CancellationToken,
) {
    let mut connections = JoinSet::new();
    loop {
        let (stream, peer) = tokio::select! {
            _ = cancel.cancelled() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            r = listener.accept() => match r {
                Ok(accepted) => accepted,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "TCP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let admitted = match limits.clients.try_connection(peer.ip()) {
            Ok(admitted) => admitted,
            Err(bound) => {
                metrics
                    .tcp_refused
                    .get_or_create(&BoundLabels { bound })
                    .inc();
                drop(stream);
                continue;
            }
        };
        metrics.tcp_reclaimed.inc_by(admitted.reclaimed as u64);
        let (handler, limits, metrics, cancel) = (
            handler.clone(),
            limits.clone(),
            metrics.clone(),
            cancel.clone(),
        );
        let permit = admitted.permit;
        connections.spawn(async move {
            metrics.tcp_connections.inc();
            connection(stream, peer, handler, limits, &permit, cancel).await;
            metrics.tcp_connections.dec();
            drop(permit);
        });
    }
    connections.shutdown().await;
}

/// One client connection: length-prefixed queries read in a loop, answered
/// concurrently (up to TCP_PIPELINE_DEPTH), responses written in completion
/// order. Idle, slow or garbage-sending clients are disconnected, and so is
/// an idle connection reclaimed to make room for another.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    handler: Arc<Handler>,
    limits: Limits,
    permit: &ConnectionPermit,
    cancel: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let ipv6 = stream.local_addr().is_ok_and(|a| a.is_ipv6());
    let (mut rd, mut wr) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(TCP_PIPELINE_DEPTH);
    let writer = tokio::spawn(async move {
        while let Some(response) = rx.recv().await {
            let mut framed = Vec::with_capacity(response.len() + 2);
            framed.extend_from_slice(&(response.len() as u16).to_be_bytes());
            framed.extend_from_slice(&response);
            match tokio::time::timeout(TCP_IO_TIMEOUT, wr.write_all(&framed)).await {
                Ok(Ok(())) => {}
                _ => return,
            }
        }
        let _ = wr.shutdown().await;
    });
    let pipeline = Arc::new(Semaphore::new(TCP_PIPELINE_DEPTH));
    loop {
        let len = tokio::select! {
            _ = cancel.cancelled() => break,
            _ = permit.reclaimed.cancelled() => break,
            r = tokio::time::timeout(limits.tcp_idle, rd.read_u16()) => match r {
                Ok(Ok(len)) => len as usize,
                _ => break,
            },
        };
        if len < 12 {
            break; // cannot even hold a header: garbage
        }
        let mut query = vec![0u8; len];
        match tokio::time::timeout(TCP_IO_TIMEOUT, rd.read_exact(&mut query)).await {
            Ok(Ok(_)) => {}
            _ => break,
        }
        let Ok(slot) = pipeline.clone().acquire_owned().await else {
            break;
        };
        let Some(client) = limits.clients.try_query(peer.ip()) else {
            if let Some(response) = handler.overloaded(&query, Transport::Tcp, ipv6) {
                let _ = tx.send(response).await;
            }
            continue;
        };
        let Ok(global) = limits.queries.clone().acquire_owned().await else {
            break;
        };
        let (tx, handler) = (tx.clone(), handler.clone());
        let busy = permit.begin();
        tokio::spawn(async move {
            if let Some(response) = handler.handle(&query, Transport::Tcp, ipv6).await {
                let _ = tx.send(response).await;
            }
            drop((slot, global, client, busy));
        });
    }
    drop(tx);
    // Let answers already being prepared go out, within a bound.
    let mut writer = writer;
    if tokio::time::timeout(TCP_IO_TIMEOUT * 2, &mut writer)
        .await
        .is_err()
    {
        writer.abort();
    }
}

//! One query to one upstream server, UDP first and TCP when the reply is
//! truncated. Replies are accepted only when the source, the ID and the
//! question match what was sent; anything else is counted and ignored.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::{Instant, timeout_at};

use super::metrics::ResolverMetrics;
use dns_common::EDNS_UDP_SIZE;

/// Receive buffer for upstream UDP replies (larger than what we advertise,
/// so an oversized reply is read whole and rejected, not cut).
const UDP_RECV_BUF: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    #[error("no valid reply within the timeout")]
    Timeout,
    #[error("socket error: {0}")]
    Io(#[from] std::io::Error),
    #[error("could not encode the query: {0}")]
    Encode(String),
    #[error("TCP reply invalid: {0}")]
    BadTcpReply(&'static str),
}

impl ExchangeError {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Io(_) => "io",
            Self::Encode(_) => "encode",
            Self::BadTcpReply(_) => "tcp_invalid",
        }
    }
}

/// A fresh query for `question` with a random ID, RD=1 and EDNS 1232.
fn build(question: &Query) -> (u16, Result<Vec<u8>, ExchangeError>) {
    let id: u16 = rand::random();
    let mut msg = Message::new(id, MessageType::Query, OpCode::Query);
    msg.metadata.recursion_desired = true;
    msg.add_query(question.clone());
    let mut edns = Edns::new();
    edns.set_max_payload(EDNS_UDP_SIZE);
    msg.set_edns(edns);
    (
        id,
        msg.to_vec()
            .map_err(|e| ExchangeError::Encode(e.to_string())),
    )
}

/// Why a reply does not belong to our query, if it does not.
fn mismatch(reply: &Message, id: u16, question: &Query) -> Option<&'static str> {
    if reply.metadata.id != id {
        return Some("wrong_id");
    }
    if reply.metadata.message_type != MessageType::Response {
        return Some("not_response");
    }
    match reply.queries.as_slice() {
        [q] if q.name == question.name
            && q.query_type == question.query_type
            && q.query_class == question.query_class =>
        {
            None
        }
        _ => Some("wrong_question"),
    }
}

/// Asks `server` and returns its validated reply. The UDP socket is new for
/// every query, so the source port is the kernel's random ephemeral port, and
/// it is connected, so the kernel drops datagrams from any other source.
pub async fn exchange(
    server: SocketAddr,
    question: &Query,
    deadline: Instant,
    metrics: &ResolverMetrics,
) -> Result<Message, ExchangeError> {
    let (id, bytes) = build(question);
    let bytes = bytes?;
    let local: SocketAddr = match server {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(server).await?;
    socket.send(&bytes).await?;
    let mut buf = vec![0u8; UDP_RECV_BUF];
    loop {
        let n = match timeout_at(deadline, socket.recv(&mut buf)).await {
            Err(_) => return Err(ExchangeError::Timeout),
            // ICMP port unreachable and friends: this upstream is not there.
            Ok(Err(e)) => return Err(e.into()),
            Ok(Ok(n)) => n,
        };
        let reply = match Message::from_vec(&buf[..n]) {
            Ok(reply) => reply,
            Err(_) => {
                metrics.rejected(server, "garbage");
                continue;
            }
        };
        if let Some(reason) = mismatch(&reply, id, question) {
            metrics.rejected(server, reason);
            continue;
        }
        if reply.metadata.truncation {
            // Never used (nor cached): the full answer comes over TCP.
            return exchange_tcp(server, question, deadline, metrics).await;
        }
        return Ok(reply);
    }
}

/// The same question over TCP (RFC 7766 framing), with a new ID.
pub async fn exchange_tcp(
    server: SocketAddr,
    question: &Query,
    deadline: Instant,
    metrics: &ResolverMetrics,
) -> Result<Message, ExchangeError> {
    let (id, bytes) = build(question);
    let bytes = bytes?;
    let io = async {
        let mut stream = TcpStream::connect(server).await?;
        let mut framed = Vec::with_capacity(bytes.len() + 2);
        framed.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
        framed.extend_from_slice(&bytes);
        stream.write_all(&framed).await?;
        let len = stream.read_u16().await? as usize;
        let mut buf = vec![0u8; len];
        stream.read_exact(&mut buf).await?;
        Ok::<_, std::io::Error>(buf)
    };
    let buf = timeout_at(deadline, io)
        .await
        .map_err(|_| ExchangeError::Timeout)??;
    let reply = Message::from_vec(&buf).map_err(|_| {
        metrics.rejected(server, "garbage");
        ExchangeError::BadTcpReply("garbage")
    })?;
    if let Some(reason) = mismatch(&reply, id, question) {
        metrics.rejected(server, reason);
        return Err(ExchangeError::BadTcpReply(reason));
    }
    Ok(reply)
}

/// Deadline for one attempt.
pub fn deadline_after(d: Duration) -> Instant {
    Instant::now() + d
}

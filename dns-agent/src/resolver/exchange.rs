//! One query to one upstream server, UDP first and TCP when the reply is
//! truncated or spoofing is suspected (docs/design.md#spoofing).
//!
//! A forged reply must guess everything a blind attacker cannot see: the
//! source port (random, and the socket is connected, so the kernel drops
//! datagrams from any address or port but the server's), the 16-bit ID and,
//! with DNS 0x20, the random case of every letter of the name. A local
//! attacker can read the port from `/proc/net/udp`, so the ID and the case
//! are what is left, and every reply that does not match them is counted: at
//! `--upstream-spoof-threshold` such replies the query is asked again over
//! TCP, which a blind attacker cannot inject into, and that upstream is
//! asked over TCP only for `--upstream-spoof-tcp-secs`.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RData};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::{Instant, timeout_at};

use super::metrics::ResolverMetrics;
use dns_common::EDNS_UDP_SIZE;

/// Receive buffer for upstream UDP replies (larger than what we advertise,
/// so an oversized reply is read whole and rejected, not cut).
const UDP_RECV_BUF: usize = 4096;
/// Upstreams whose TCP-only period is remembered (policies change live).
const MAX_SUSPECTS: usize = 256;

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

/// The anti-spoofing settings (`--upstream-0x20` and friends).
#[derive(Debug, Clone)]
pub struct ExchangeConfig {
    /// DNS 0x20: random case in the name sent, the same case required back.
    pub randomize_case: bool,
    /// Mismatched UDP replies after which a query moves to TCP (0: never).
    pub spoof_threshold: u32,
    /// How long an upstream is asked over TCP only once spoofing is suspected.
    pub spoof_tcp_for: Duration,
}

/// Upstream exchanges, with the memory of which upstreams are under attack.
pub struct Exchanger {
    cfg: ExchangeConfig,
    /// Upstream → end of its TCP-only period. Bounded by [`MAX_SUSPECTS`].
    tcp_only: Mutex<HashMap<SocketAddr, Instant>>,
    metrics: Arc<ResolverMetrics>,
}

/// How the UDP half of an exchange ended, short of an error.
enum Udp {
    Reply(Message),
    /// Truncated, or spoofing suspected: ask again over TCP (the reason).
    AskOverTcp(&'static str),
}

/// A query as sent: its ID, its question (case randomised or not) and wire bytes.
struct Sent {
    id: u16,
    question: Query,
    bytes: Vec<u8>,
}

/// A fresh query for `question` with a random ID, RD=1 and EDNS 1232, the
/// name's letters in random case if `randomize_case`.
fn build(question: &Query, randomize_case: bool) -> Result<Sent, ExchangeError> {
    let id: u16 = rand::random();
    let mut question = question.clone();
    if randomize_case {
        question.name.randomize_label_case();
    }
    let mut msg = Message::new(id, MessageType::Query, OpCode::Query);
    msg.metadata.recursion_desired = true;
    msg.add_query(question.clone());
    let mut edns = Edns::new();
    edns.set_max_payload(EDNS_UDP_SIZE);
    msg.set_edns(edns);
    let bytes = msg
        .to_vec()
        .map_err(|e| ExchangeError::Encode(e.to_string()))?;
    Ok(Sent {
        id,
        question,
        bytes,
    })
}

/// Why a reply does not belong to the query `sent`, if it does not. The
/// name must come back byte for byte: that is what makes 0x20 count.
fn mismatch(reply: &Message, sent: &Sent) -> Option<&'static str> {
    if reply.metadata.id != sent.id {
        return Some("wrong_id");
    }
    if reply.metadata.message_type != MessageType::Response {
        return Some("not_response");
    }
    let q = &sent.question;
    match reply.queries.as_slice() {
        [r] if r.query_type == q.query_type
            && r.query_class == q.query_class
            && r.name == q.name =>
        {
            (!r.name.eq_case(&q.name)).then_some("wrong_case")
        }
        _ => Some("wrong_question"),
    }
}

impl Exchanger {
    pub fn new(cfg: ExchangeConfig, metrics: Arc<ResolverMetrics>) -> Self {
        Self {
            cfg,
            tcp_only: Mutex::new(HashMap::new()),
            metrics,
        }
    }

    /// Asks `server` and returns its validated reply, with the question's
    /// case as in `question` (0x20 undone). The UDP socket is new for every
    /// query, so the source port is the kernel's random ephemeral port, and
    /// it is connected, so the kernel drops datagrams from any other source.
    pub async fn exchange(
        &self,
        server: SocketAddr,
        question: &Query,
        deadline: Instant,
    ) -> Result<Message, ExchangeError> {
        if self.is_tcp_only(server) {
            self.metrics.tcp_fallback(server, "spoof_suspected");
            return self.exchange_tcp(server, question, deadline).await;
        }
        match self.exchange_udp(server, question, deadline).await? {
            Udp::Reply(reply) => Ok(reply),
            Udp::AskOverTcp(reason) => {
                self.metrics.tcp_fallback(server, reason);
                self.exchange_tcp(server, question, deadline).await
            }
        }
    }

    /// The UDP half of [`Exchanger::exchange`]. Its socket is closed when it
    /// returns, before any TCP retry: a spoofer flooding it wastes nothing.
    async fn exchange_udp(
        &self,
        server: SocketAddr,
        question: &Query,
        deadline: Instant,
    ) -> Result<Udp, ExchangeError> {
        let sent = build(question, self.cfg.randomize_case)?;
        let local: SocketAddr = match server {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let socket = UdpSocket::bind(local).await?;
        socket.connect(server).await?;
        socket.send(&sent.bytes).await?;
        let mut buf = vec![0u8; UDP_RECV_BUF];
        let mut mismatches = 0;
        loop {
            let n = match timeout_at(deadline, socket.recv(&mut buf)).await {
                Err(_) => return Err(ExchangeError::Timeout),
                // ICMP port unreachable and friends: this upstream is not there.
                Ok(Err(e)) => return Err(e.into()),
                Ok(Ok(n)) => n,
            };
            let reason = match Message::from_vec(&buf[..n]) {
                Err(_) => "garbage",
                Ok(reply) => match mismatch(&reply, &sent) {
                    Some(reason) => reason,
                    // Never used (nor cached): the full answer comes over TCP.
                    None if reply.metadata.truncation => return Ok(Udp::AskOverTcp("truncated")),
                    None => return Ok(Udp::Reply(restore_case(reply, &question.name))),
                },
            };
            self.metrics.rejected(server, reason);
            mismatches += 1;
            if self.cfg.spoof_threshold > 0 && mismatches >= self.cfg.spoof_threshold {
                self.suspect(server, &question.name, mismatches);
                return Ok(Udp::AskOverTcp("spoof_suspected"));
            }
        }
    }

    /// The same question over TCP (RFC 7766 framing), with a new ID. The
    /// connection is the server's own, so 0x20 adds nothing here.
    pub async fn exchange_tcp(
        &self,
        server: SocketAddr,
        question: &Query,
        deadline: Instant,
    ) -> Result<Message, ExchangeError> {
        let sent = build(question, false)?;
        let io = async {
            let mut stream = TcpStream::connect(server).await?;
            let mut framed = Vec::with_capacity(sent.bytes.len() + 2);
            framed.extend_from_slice(&(sent.bytes.len() as u16).to_be_bytes());
            framed.extend_from_slice(&sent.bytes);
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
            self.metrics.rejected(server, "garbage");
            ExchangeError::BadTcpReply("garbage")
        })?;
        if let Some(reason) = mismatch(&reply, &sent) {
            self.metrics.rejected(server, reason);
            return Err(ExchangeError::BadTcpReply(reason));
        }
        Ok(restore_case(reply, &question.name))
    }

    fn is_tcp_only(&self, server: SocketAddr) -> bool {
        let now = Instant::now();
        let mut suspects = self.tcp_only.lock().unwrap();
        match suspects.get(&server) {
            Some(until) if *until > now => true,
            Some(_) => {
                suspects.remove(&server);
                tracing::info!(%server, "no spoofing seen for a while: asking this upstream over UDP again");
                false
            }
            None => false,
        }
    }

    /// Spoofing suspected at `server`: TCP only for a while, logged once
    /// per period.
    fn suspect(&self, server: SocketAddr, name: &Name, mismatches: u32) {
        self.metrics.spoof_suspected(server);
        if self.cfg.spoof_tcp_for.is_zero() {
            return;
        }
        let now = Instant::now();
        let mut suspects = self.tcp_only.lock().unwrap();
        if suspects.len() >= MAX_SUSPECTS && !suspects.contains_key(&server) {
            suspects.retain(|_, until| *until > now);
            if suspects.len() >= MAX_SUSPECTS {
                // Full of live periods: this one still gets its query over
                // TCP, just not the period.
                return;
            }
        }
        if suspects
            .insert(server, now + self.cfg.spoof_tcp_for)
            .is_none()
        {
            tracing::warn!(%server, %name, mismatches, tcp_for = ?self.cfg.spoof_tcp_for,
                "replies that do not match our query arrive from this upstream: spoofing suspected, asking it over TCP only for a while");
        }
    }
}

/// `reply` with every name at or below `original` (the question, whose
/// case 0x20 randomised) spelled as in `original`, so the client, the cache
/// and the kernel map see the case they asked in, not ours.
fn restore_case(mut reply: Message, original: &Name) -> Message {
    let fix = |name: &mut Name| {
        if let Some(fixed) = respell(name, original) {
            *name = fixed;
        }
    };
    for q in &mut reply.queries {
        fix(&mut q.name);
    }
    for r in reply
        .answers
        .iter_mut()
        .chain(&mut reply.authorities)
        .chain(&mut reply.additionals)
    {
        fix(&mut r.name);
        match &mut r.data {
            RData::CNAME(n) => fix(&mut n.0),
            RData::NS(n) => fix(&mut n.0),
            RData::PTR(n) => fix(&mut n.0),
            RData::MX(mx) => fix(&mut mx.exchange),
            RData::SRV(srv) => fix(&mut srv.target),
            _ => {}
        }
    }
    reply
}

/// `name` with its `original`-long suffix replaced by `original`, if that
/// suffix equals it up to case and is not already spelled the same.
fn respell(name: &Name, original: &Name) -> Option<Name> {
    if !original.zone_of(name) || original.zone_of_case(name) {
        return None;
    }
    let prefix = name.num_labels() - original.num_labels();
    let labels = name.iter().take(prefix as usize);
    Name::from_labels(labels).ok()?.append_name(original).ok()
}

/// Deadline for one attempt.
pub fn deadline_after(d: Duration) -> Instant {
    Instant::now() + d
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::rdata::{A, CNAME};
    use hickory_proto::rr::{Record, RecordType};

    fn name(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    fn reply_to(sent: &Sent, qname: &Name) -> Message {
        let mut m = Message::response(sent.id, OpCode::Query);
        m.add_query(Query::query(qname.clone(), RecordType::A));
        m
    }

    #[test]
    fn the_case_sent_must_come_back() {
        let q = Query::query(name("www.example.com."), RecordType::A);
        let sent = build(&q, true).unwrap();
        assert_eq!(sent.question.name, q.name, "same name up to case");
        assert_eq!(mismatch(&reply_to(&sent, &sent.question.name), &sent), None);
        // Fifteen letters: the lower-case spelling is sent 1 time in 32768.
        if !sent.question.name.eq_case(&q.name) {
            assert_eq!(
                mismatch(&reply_to(&sent, &q.name), &sent),
                Some("wrong_case")
            );
        }
        let mut upper = sent.question.name.to_ascii();
        upper.make_ascii_uppercase();
        if !name(&upper).eq_case(&sent.question.name) {
            assert_eq!(
                mismatch(&reply_to(&sent, &name(&upper)), &sent),
                Some("wrong_case")
            );
        }
        let mut other = reply_to(&sent, &sent.question.name);
        other.metadata.id = sent.id.wrapping_add(1);
        assert_eq!(mismatch(&other, &sent), Some("wrong_id"));
    }

    #[test]
    fn names_without_letters_still_match() {
        let q = Query::query(name("1.2.3.4."), RecordType::A);
        let sent = build(&q, true).unwrap();
        assert!(sent.question.name.eq_case(&q.name));
        assert_eq!(mismatch(&reply_to(&sent, &q.name), &sent), None);
    }

    #[test]
    fn randomised_case_is_undone_in_the_reply() {
        let original = name("www.example.com.");
        let sent = name("wWw.ExaMple.cOm.");
        let mut m = Message::response(1, OpCode::Query);
        m.add_query(Query::query(sent.clone(), RecordType::A));
        m.add_answer(Record::from_rdata(
            sent.clone(),
            60,
            RData::CNAME(CNAME(name("edge.wWw.ExaMple.cOm."))),
        ));
        m.add_answer(Record::from_rdata(
            name("edge.wWw.ExaMple.cOm."),
            60,
            RData::A(A::new(192, 0, 2, 1)),
        ));
        m.add_answer(Record::from_rdata(
            name("Other.Example.net."),
            60,
            RData::A(A::new(192, 0, 2, 2)),
        ));
        let m = restore_case(m, &original);
        assert!(m.queries[0].name.eq_case(&original));
        assert!(m.answers[0].name.eq_case(&original));
        let RData::CNAME(target) = &m.answers[0].data else {
            panic!()
        };
        assert!(target.0.eq_case(&name("edge.www.example.com.")));
        assert!(m.answers[1].name.eq_case(&name("edge.www.example.com.")));
        assert!(
            m.answers[2].name.eq_case(&name("Other.Example.net.")),
            "not ours to change"
        );
    }
}

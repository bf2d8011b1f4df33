//! One client query in, one response out, read like a CoreDNS ServeDNS:
//! validate the query, then answer from the cluster zone or from upstream
//! (the forwarder), and size the response for the client's transport.

use std::sync::Arc;
use std::time::Instant;

use hickory_proto::op::{Edns, Header, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, LowerName, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};

use super::forwarder::Forwarder;
use super::metrics::{Path, QueryDone, ResolverMetrics};
use crate::zone::{Zone, ZoneLookup};
use dns_common::EDNS_UDP_SIZE;

/// Size limit of a UDP answer to a client without EDNS (RFC 1035).
const PLAIN_UDP_SIZE: usize = 512;
/// The largest DNS message (the TCP length prefix is 16 bits).
const MAX_TCP_SIZE: usize = u16::MAX as usize;

pub struct Handler {
    pub zone: Arc<dyn Zone>,
    /// The zone's generation, read before each lookup (for promotion).
    pub zone_generation: tokio::sync::watch::Receiver<u64>,
    pub forwarder: Arc<Forwarder>,
    /// Set once the kernel map is there (see [`super::Sink`]).
    pub promoter: super::PromoterSlot,
    pub metrics: Arc<ResolverMetrics>,
    /// What the fast path answers without this full path
    /// (docs/design.md#the-userspace-fast-path).
    pub hot: super::fast::HotAnswers,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// One query being answered: what the metrics and the encoder need.
struct Exchange {
    started: Instant,
    tcp: bool,
    /// It came in over IPv6.
    ipv6: bool,
    /// Its EDNS had the DO bit.
    dnssec_ok: bool,
    request_bytes: usize,
    /// Largest response the client takes.
    limit: usize,
}

impl Exchange {
    /// What the metrics record of it, once `response` is what goes back.
    fn done(
        &self,
        path: Path,
        qtype: RecordType,
        rcode: ResponseCode,
        response: &Option<Vec<u8>>,
    ) -> QueryDone {
        QueryDone {
            path,
            qtype,
            rcode,
            tcp: self.tcp,
            ipv6: self.ipv6,
            dnssec_ok: self.dnssec_ok,
            request_bytes: self.request_bytes,
            response_bytes: response.as_ref().map_or(0, Vec::len),
            took: self.started.elapsed(),
        }
    }
}

impl Handler {
    /// The wire response to `query`, which came in over IPv6 if `ipv6`, or
    /// None when it must be dropped (no readable header, or a response
    /// rather than a query).
    pub async fn handle(&self, query: &[u8], transport: Transport, ipv6: bool) -> Option<Vec<u8>> {
        let started = Instant::now();
        let tcp = transport == Transport::Tcp;
        let Ok(request) = Message::from_vec(query) else {
            return self.reject_unparsable(query, tcp, ipv6, started);
        };
        if request.metadata.message_type != MessageType::Query {
            return None;
        }
        let exchange = Exchange {
            started,
            tcp,
            ipv6,
            dnssec_ok: request.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok),
            request_bytes: query.len(),
            limit: size_limit(&request, transport),
        };
        let q = match validate(&request) {
            Ok(q) => q,
            Err(rcode) => return self.reject(&request, rcode, &exchange),
        };
        let mut reply = response_to(&request, &q);
        let generation = *self.zone_generation.borrow();
        let name = LowerName::new(&q.name);
        let lookup = self.zone.lookup(&name, q.query_type);
        self.hot.learn(&name, q.query_type, generation, &lookup);
        let path = match lookup {
            ZoneLookup::NotOurs => self.answer_from_upstream(&q, &mut reply).await,
            ZoneLookup::Alias(alias) => {
                self.answer_through_alias(&q, alias, generation, &mut reply)
                    .await
            }
            lookup => self.answer_from_zone(&q, lookup, generation, &mut reply),
        };
        let rcode = reply.metadata.response_code;
        let bytes = encode(&reply, exchange.limit);
        self.metrics
            .query(&exchange.done(path, q.query_type, rcode, &bytes));
        bytes
    }

    /// A query whose header is all that can be read: FORMERR, unless it is
    /// not a query at all.
    fn reject_unparsable(
        &self,
        query: &[u8],
        tcp: bool,
        ipv6: bool,
        started: Instant,
    ) -> Option<Vec<u8>> {
        let header = Header::read(&mut BinDecoder::new(query)).ok()?;
        if header.metadata.message_type != MessageType::Query {
            return None;
        }
        let rcode = ResponseCode::FormErr;
        let reply = error_reply(
            header.metadata.id,
            header.metadata.op_code,
            rcode,
            None,
            None,
        );
        let bytes = encode(&reply, usize::MAX);
        let exchange = Exchange {
            started,
            tcp,
            ipv6,
            dnssec_ok: false,
            request_bytes: query.len(),
            limit: usize::MAX,
        };
        self.metrics
            .query(&exchange.done(Path::rejected, RecordType::Unknown(0), rcode, &bytes));
        bytes
    }

    /// SERVFAIL at once for a query whose client is at its bound
    /// (`--max-concurrent-per-client`); None when it cannot be read as a
    /// query. Cheaper than answering: it must keep up with a flood.
    pub fn overloaded(&self, query: &[u8], transport: Transport, ipv6: bool) -> Option<Vec<u8>> {
        let started = Instant::now();
        self.metrics
            .client_limited
            .get_or_create(&super::metrics::BoundLabels { bound: "queries" })
            .inc();
        let request = Message::from_vec(query).ok()?;
        if request.metadata.message_type != MessageType::Query {
            return None;
        }
        let exchange = Exchange {
            started,
            tcp: transport == Transport::Tcp,
            ipv6,
            dnssec_ok: request.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok),
            request_bytes: query.len(),
            limit: size_limit(&request, transport),
        };
        self.reject(&request, ResponseCode::ServFail, &exchange)
    }

    /// An error response to a readable query that fails validation.
    fn reject(
        &self,
        request: &Message,
        rcode: ResponseCode,
        exchange: &Exchange,
    ) -> Option<Vec<u8>> {
        let question = request.queries.first().cloned();
        let qtype = question
            .as_ref()
            .map_or(RecordType::Unknown(0), |q| q.query_type);
        let reply = error_reply(
            request.metadata.id,
            request.metadata.op_code,
            rcode,
            question,
            request.edns.as_ref(),
        );
        let bytes = encode(&reply, exchange.limit);
        self.metrics
            .query(&exchange.done(Path::rejected, qtype, rcode, &bytes));
        bytes
    }

    /// The cluster zone's authoritative answer (SERVFAIL before its first
    /// sync), installed in the kernel map too.
    fn answer_from_zone(
        &self,
        q: &Query,
        lookup: ZoneLookup,
        generation: u64,
        reply: &mut Message,
    ) -> Path {
        match lookup {
            ZoneLookup::Answer(answer) => {
                if let Some(promoter) = self.promoter.get() {
                    promoter.cluster_answer(&q.name, q.query_type, &answer, generation);
                }
                // A SERVFAIL (a CNAME loop) asserts nothing about the name.
                reply.metadata.authoritative = answer.rcode != ResponseCode::ServFail;
                answer.with_query_case(&q.name).write_to(reply);
            }
            ZoneLookup::NotReady | ZoneLookup::NotOurs | ZoneLookup::Alias(_) => {
                reply.metadata.response_code = ResponseCode::ServFail;
            }
        }
        Path::cluster
    }

    /// The forwarder's answer (cache, upstream or stale), with TTLs aged;
    /// fresh answers count towards promotion.
    async fn answer_from_upstream(&self, q: &Query, reply: &mut Message) -> Path {
        let fwd = self.forwarder.resolve(&q.name, q.query_type).await;
        match &fwd.outcome {
            Ok(answer) => {
                if let (Some(promoter), Path::cache_hit | Path::forwarded) =
                    (self.promoter.get(), fwd.path)
                {
                    promoter.upstream_answer(
                        &q.name,
                        q.query_type,
                        &answer.sections,
                        answer.ttl,
                        answer.expires(),
                    );
                }
                fwd.ttl.apply(&answer.sections).write_to(reply);
            }
            Err(rcode) => reply.metadata.response_code = *rcode,
        }
        fwd.path
    }
}

/// The question, if the query is one this server answers; else the rcode
/// that says why not.
fn validate(request: &Message) -> Result<Query, ResponseCode> {
    if request.metadata.op_code != OpCode::Query {
        return Err(ResponseCode::NotImp);
    }
    if request.edns.as_ref().is_some_and(|e| e.version() > 0) {
        return Err(ResponseCode::BADVERS);
    }
    let [q] = request.queries.as_slice() else {
        return Err(ResponseCode::FormErr);
    };
    if q.query_class != DNSClass::IN {
        return Err(ResponseCode::Refused);
    }
    if matches!(
        q.query_type,
        RecordType::OPT | RecordType::AXFR | RecordType::IXFR
    ) {
        return Err(ResponseCode::NotImp);
    }
    Ok(q.clone())
}

/// The largest response the client takes over `transport`.
fn size_limit(request: &Message, transport: Transport) -> usize {
    match transport {
        Transport::Tcp => MAX_TCP_SIZE,
        Transport::Udp => request
            .edns
            .as_ref()
            .map(|e| (e.max_payload() as usize).clamp(PLAIN_UDP_SIZE, EDNS_UDP_SIZE as usize))
            .unwrap_or(PLAIN_UDP_SIZE),
    }
}

/// An empty response to `request` for question `q`: its flags echoed, EDNS
/// if the client used it.
fn response_to(request: &Message, q: &Query) -> Message {
    let mut reply = Message::response(request.metadata.id, OpCode::Query);
    reply.metadata.recursion_desired = request.metadata.recursion_desired;
    reply.metadata.recursion_available = true;
    reply.metadata.checking_disabled = request.metadata.checking_disabled;
    reply.add_query(q.clone());
    if let Some(edns) = &request.edns {
        reply.set_edns(our_edns(Some(edns)));
    }
    reply
}

/// Our OPT record: 1232 bytes, and the DO bit of the query's, which RFC
/// 3225 section 3 requires to be copied into the response.
fn our_edns(query: Option<&Edns>) -> Edns {
    let mut edns = Edns::new();
    edns.set_max_payload(EDNS_UDP_SIZE);
    edns.set_dnssec_ok(query.is_some_and(|q| q.flags().dnssec_ok));
    edns
}

fn error_reply(
    id: u16,
    op: OpCode,
    rcode: ResponseCode,
    q: Option<Query>,
    edns: Option<&Edns>,
) -> Message {
    let mut reply = Message::error_msg(id, op, rcode);
    if let Some(q) = q {
        reply.add_query(q);
    }
    // BADVERS only exists in EDNS (its upper bits live in the OPT record).
    if edns.is_some() || rcode == ResponseCode::BADVERS {
        reply.set_edns(our_edns(edns));
    }
    reply
}

/// Encodes `reply`; when it is larger than `limit`, without its additional
/// records, or failing that the question alone with TC=1 so the client
/// retries over TCP.
fn encode(reply: &Message, limit: usize) -> Option<Vec<u8>> {
    let bytes = match reply.to_vec() {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(error = %e, "could not encode a response; answering SERVFAIL");
            let mut fail = Message::error_msg(
                reply.metadata.id,
                reply.metadata.op_code,
                ResponseCode::ServFail,
            );
            fail.add_queries(reply.queries.iter().cloned());
            return fail.to_vec().ok();
        }
    };
    if bytes.len() <= limit {
        return Some(bytes);
    }
    // RFC 2181 §9: TC=1 only when the answer itself does not fit; additional
    // data that does not fit is left out, whole RRsets at a time (§5), here
    // all of it.
    if !reply.additionals.is_empty() {
        let mut lean = reply.clone();
        lean.additionals.clear();
        if let Ok(bytes) = lean.to_vec()
            && bytes.len() <= limit
        {
            return Some(bytes);
        }
    }
    let mut truncated = reply.truncate();
    truncated.metadata.truncation = true;
    truncated.to_vec().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversized_reply_is_truncated_with_question() {
        let mut reply = Message::response(7, OpCode::Query);
        let name = hickory_proto::rr::Name::from_ascii("big.example.").unwrap();
        use hickory_proto::rr::Record;
        reply.add_query(Query::query(name.clone(), RecordType::A));
        for i in 0..100u8 {
            let a = hickory_proto::rr::rdata::A::new(10, 0, 0, i);
            reply.add_answer(Record::from_rdata(
                name.clone(),
                30,
                hickory_proto::rr::RData::A(a),
            ));
        }
        let full = encode(&reply, MAX_TCP_SIZE).unwrap();
        assert!(full.len() > PLAIN_UDP_SIZE);
        let cut = Message::from_vec(&encode(&reply, PLAIN_UDP_SIZE).unwrap()).unwrap();
        assert!(cut.metadata.truncation);
        assert_eq!(cut.metadata.id, 7);
        assert_eq!(cut.queries.len(), 1);
        assert!(cut.answers.is_empty());
    }

    #[test]
    fn additional_data_is_dropped_whole_before_truncating() {
        use hickory_proto::rr::rdata::{A, SRV};
        use hickory_proto::rr::{RData, Record};
        let name = hickory_proto::rr::Name::from_ascii("_x._tcp.big.example.").unwrap();
        let target = hickory_proto::rr::Name::from_ascii("t.big.example.").unwrap();
        let mut reply = Message::response(7, OpCode::Query);
        reply.add_query(Query::query(name.clone(), RecordType::SRV));
        let srv = SRV::new(0, 100, 80, target.clone());
        reply.add_answer(Record::from_rdata(name, 30, RData::SRV(srv)));
        for i in 0..60u8 {
            let a = RData::A(A::new(10, 0, 0, i));
            reply.add_additional(Record::from_rdata(target.clone(), 30, a));
        }
        let out = Message::from_vec(&encode(&reply, PLAIN_UDP_SIZE).unwrap()).unwrap();
        assert!(!out.metadata.truncation, "the answer fits: no TC");
        assert_eq!(out.answers.len(), 1);
        assert!(out.additionals.is_empty(), "no partial RRset");
    }
}

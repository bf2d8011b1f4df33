//! One client query in, one response out: validation, the cluster zone,
//! then the forwarder; the response sized for the client's transport.

use std::sync::Arc;
use std::time::Instant;

use hickory_proto::op::{Edns, Header, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, LowerName, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};

use super::forwarder::Forwarder;
use super::metrics::{Path, ResolverMetrics};
use crate::promotion::Promoter;
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
    pub promoter: Option<Arc<Promoter>>,
    pub metrics: Arc<ResolverMetrics>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

impl Handler {
    /// The wire response to `query`, or None when it must be dropped (no
    /// readable header, or a response rather than a query).
    pub async fn handle(&self, query: &[u8], transport: Transport) -> Option<Vec<u8>> {
        let started = Instant::now();
        let tcp = transport == Transport::Tcp;
        let request = match Message::from_vec(query) {
            Ok(m) => m,
            Err(_) => {
                let header = Header::read(&mut BinDecoder::new(query)).ok()?;
                if header.metadata.message_type != MessageType::Query {
                    return None;
                }
                let rcode = ResponseCode::FormErr;
                self.metrics.query(
                    Path::rejected,
                    RecordType::Unknown(0),
                    rcode,
                    tcp,
                    started.elapsed(),
                );
                return encode(
                    &error_reply(
                        header.metadata.id,
                        header.metadata.op_code,
                        rcode,
                        None,
                        None,
                    ),
                    usize::MAX,
                );
            }
        };
        if request.metadata.message_type != MessageType::Query {
            return None;
        }
        let limit = match transport {
            Transport::Tcp => MAX_TCP_SIZE,
            Transport::Udp => request
                .edns
                .as_ref()
                .map(|e| (e.max_payload() as usize).clamp(PLAIN_UDP_SIZE, EDNS_UDP_SIZE as usize))
                .unwrap_or(PLAIN_UDP_SIZE),
        };
        let id = request.metadata.id;
        let op = request.metadata.op_code;
        let question = request.queries.first().cloned();
        let qtype = question
            .as_ref()
            .map(|q| q.query_type)
            .unwrap_or(RecordType::Unknown(0));
        let reject = |rcode: ResponseCode| {
            self.metrics
                .query(Path::rejected, qtype, rcode, tcp, started.elapsed());
            encode(
                &error_reply(id, op, rcode, question.clone(), request.edns.as_ref()),
                limit,
            )
        };
        if op != OpCode::Query {
            return reject(ResponseCode::NotImp);
        }
        if request.edns.as_ref().is_some_and(|e| e.version() > 0) {
            return reject(ResponseCode::BADVERS);
        }
        let Some(q) = question.clone().filter(|_| request.queries.len() == 1) else {
            return reject(ResponseCode::FormErr);
        };
        if q.query_class != DNSClass::IN {
            return reject(ResponseCode::Refused);
        }
        if matches!(
            q.query_type,
            RecordType::OPT | RecordType::AXFR | RecordType::IXFR
        ) {
            return reject(ResponseCode::NotImp);
        }

        let mut reply = Message::response(id, OpCode::Query);
        reply.metadata.recursion_desired = request.metadata.recursion_desired;
        reply.metadata.recursion_available = true;
        reply.metadata.checking_disabled = request.metadata.checking_disabled;
        reply.add_query(q.clone());
        if request.edns.is_some() {
            reply.set_edns(our_edns());
        }

        let generation = *self.zone_generation.borrow();
        let path = match self.zone.lookup(&LowerName::new(&q.name), q.query_type) {
            ZoneLookup::Answer(answer) => {
                if let Some(promoter) = &self.promoter {
                    promoter.cluster_answer(&q.name, q.query_type, &answer, generation);
                }
                reply.metadata.authoritative = true;
                reply.metadata.response_code = answer.rcode;
                reply.answers = answer.answers;
                reply.authorities = answer.authority;
                reply.additionals = answer.additionals;
                Path::cluster
            }
            ZoneLookup::NotReady => {
                reply.metadata.response_code = ResponseCode::ServFail;
                Path::cluster
            }
            ZoneLookup::NotOurs => {
                let fwd = self.forwarder.resolve(&q.name, q.query_type).await;
                match &fwd.outcome {
                    Ok(answer) => {
                        if let (Some(promoter), Path::cache_hit | Path::forwarded) =
                            (&self.promoter, fwd.path)
                        {
                            promoter.upstream_answer(
                                &q.name,
                                q.query_type,
                                &answer.sections,
                                answer.ttl,
                                answer.expires(),
                            );
                        }
                        reply.metadata.response_code = answer.sections.rcode;
                        let aged = |records: &[Record]| -> Vec<Record> {
                            records
                                .iter()
                                .map(|r| {
                                    let mut r = r.clone();
                                    r.ttl = r.ttl.min(fwd.ttl_cap);
                                    r
                                })
                                .collect()
                        };
                        reply.answers = aged(&answer.sections.answers);
                        reply.authorities = aged(&answer.sections.authority);
                        reply.additionals = aged(&answer.sections.additionals);
                    }
                    Err(rcode) => reply.metadata.response_code = *rcode,
                }
                fwd.path
            }
        };
        let rcode = reply.metadata.response_code;
        let bytes = encode(&reply, limit);
        self.metrics
            .query(path, q.query_type, rcode, tcp, started.elapsed());
        bytes
    }
}

fn our_edns() -> Edns {
    let mut edns = Edns::new();
    edns.set_max_payload(EDNS_UDP_SIZE);
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
        reply.set_edns(our_edns());
    }
    reply
}

/// Encodes `reply`; when it is larger than `limit`, the question alone with
/// TC=1 so the client retries over TCP.
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
}

//! Answers whose CNAME chain leaves the cluster zone: an ExternalName
//! Service pointing outside it. The zone gives the chain so far
//! ([`Alias`]); the target is resolved through the forwarder like any
//! forwarded name (cached, coalesced, serve-stale), and the client gets the
//! chain plus the target's records (RFC 1034 §4.3.2), every TTL the chain's
//! minimum. Were the target's own chain to lead back into the zone, the zone
//! finishes it, within [`MAX_CNAME_CHAIN`] forwarded hops.

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{LowerName, Name, RData, RecordType};

use super::handler::Handler;
use super::metrics::Path;
use crate::answer::AnswerSections;
use crate::zone::{Alias, MAX_CNAME_CHAIN, ZoneLookup};

/// A completed chain, and whether every forwarded part was fresh (not
/// served stale), which promotion requires.
struct Chased {
    answer: AnswerSections,
    fresh: bool,
}

impl Handler {
    /// The zone's `alias` completed through the forwarder, promoted to the
    /// kernel when fresh (it then expires with its shortest TTL).
    pub(super) async fn answer_through_alias(
        &self,
        q: &Query,
        alias: Alias,
        generation: u64,
        reply: &mut Message,
    ) -> Path {
        match self.chase(q.query_type, &alias).await {
            Ok(chased) => {
                if chased.fresh
                    && let Some(promoter) = self.promoter.get()
                {
                    promoter.chased_answer(
                        &q.name,
                        q.query_type,
                        &chased.answer,
                        &alias,
                        generation,
                    );
                }
                // Authoritative for the query name, the first owner (RFC
                // 1035 §4.1.1).
                reply.metadata.authoritative = true;
                chased.answer.with_query_case(&q.name).write_to(reply);
            }
            Err(rcode) => reply.metadata.response_code = rcode,
        }
        Path::chased
    }

    async fn chase(&self, qtype: RecordType, first: &Alias) -> Result<Chased, ResponseCode> {
        let mut alias = first.clone();
        let mut fresh = true;
        for _ in 0..MAX_CNAME_CHAIN {
            let fwd = self.forwarder.resolve(&alias.target, qtype).await;
            fresh &= matches!(fwd.path, Path::cache_hit | Path::forwarded);
            let rest = match &fwd.outcome {
                Ok(answer) => fwd.ttl.apply(&answer.sections),
                Err(rcode) => return Err(*rcode),
            };
            if rest.rcode == ResponseCode::ServFail {
                return Err(ResponseCode::ServFail);
            }
            let answer = alias.complete(&rest);
            let Some(end) = self.back_in_zone(&alias.target, &rest, qtype) else {
                return Ok(Chased { answer, fresh });
            };
            match self.zone.lookup(&LowerName::new(&end), qtype) {
                ZoneLookup::Answer(inner) => {
                    let back = Alias {
                        chain: answer.answers,
                        target: end,
                    };
                    let answer = back.complete(&inner);
                    return Ok(Chased { answer, fresh });
                }
                ZoneLookup::Alias(next) => {
                    let mut chain = answer.answers;
                    chain.extend(next.chain);
                    alias = Alias {
                        chain,
                        target: next.target,
                    };
                }
                ZoneLookup::NotReady | ZoneLookup::NotOurs => return Err(ResponseCode::ServFail),
            }
        }
        tracing::debug!(target = %first.target, "CNAME chain through upstreams too long or looping: SERVFAIL");
        Err(ResponseCode::ServFail)
    }

    /// Where the target's forwarded chain ends, when that is a name of our
    /// zone: the forwarder drops upstream records for our names, so the
    /// zone must answer that part.
    fn back_in_zone(
        &self,
        target: &Name,
        rest: &AnswerSections,
        qtype: RecordType,
    ) -> Option<Name> {
        let mut end = LowerName::new(target);
        // Bounded by the answer's size: each step consumes one CNAME.
        for _ in 0..rest.answers.len() {
            let next = rest.answers.iter().find_map(|r| match &r.data {
                RData::CNAME(cname) if LowerName::new(&r.name) == end => Some(cname.0.clone()),
                _ => None,
            });
            match next {
                Some(next) => end = LowerName::new(&next),
                None => break,
            }
        }
        let answered = rest
            .answers
            .iter()
            .any(|r| LowerName::new(&r.name) == end && r.record_type() == qtype);
        if end == LowerName::new(target) || answered {
            return None;
        }
        let ours = !matches!(self.zone.lookup(&end, qtype), ZoneLookup::NotOurs);
        ours.then(|| Name::from(&end))
    }
}

//! The userspace fast path (docs/design.md#the-userspace-fast-path): a
//! plain UDP query whose answer is already known (a cluster-zone answer,
//! kept encoded, or a fresh entry of the forwarding cache) is answered
//! where it is read, without a message built, a task spawned or a permit
//! taken, and counted in every metric as the full path counts it.
//!
//! What the full path learns of a question, at one zone generation, is kept
//! here: the cluster zone's answer, or that the name is not the zone's (so
//! the forwarding cache answers it). A new generation makes every entry
//! old until the full path learns it again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{LowerName, RecordType};

use super::handler::Handler;
use super::metrics::{Path, QueryDone};
use super::wire::{self, KeyBuf, WireAnswer};
use crate::answer::AnswerSections;
use crate::zone::ZoneLookup;

/// Questions remembered; past it, the memory starts over (the full path
/// refills it with what is asked).
const MAX_HOT: usize = 65_536;

/// What the full path learnt of one question.
struct Hot {
    generation: u64,
    name: LowerName,
    qtype: RecordType,
    kind: HotKind,
}

enum HotKind {
    /// The cluster zone's answer: encoded, and as records for promotion.
    Cluster {
        wire: WireAnswer,
        sections: AnswerSections,
    },
    /// Not the cluster zone's: the forwarding cache answers it.
    Forwarded,
}

/// The questions the fast path can answer, by [`wire::key_of`].
#[derive(Default)]
pub struct HotAnswers {
    map: Mutex<HashMap<Box<[u8]>, Arc<Hot>>>,
}

impl HotAnswers {
    fn get(&self, key: &[u8]) -> Option<Arc<Hot>> {
        self.map.lock().unwrap().get(key).cloned()
    }

    /// Remembers what the zone said of (`name`, `qtype`) at `generation`:
    /// its answer, or that the name is not the zone's. Other outcomes (not
    /// ready, an alias that leaves the zone) stay on the full path.
    pub fn learn(&self, name: &LowerName, qtype: RecordType, generation: u64, lookup: &ZoneLookup) {
        let key = wire::key_of(name, qtype);
        if self
            .get(&key)
            .is_some_and(|hot| hot.generation == generation)
        {
            return;
        }
        let kind = match lookup {
            ZoneLookup::NotOurs => HotKind::Forwarded,
            ZoneLookup::Answer(answer) => {
                // As the full path: a SERVFAIL (a CNAME loop) is not authoritative.
                let aa = answer.rcode != ResponseCode::ServFail;
                let Some(wire) = WireAnswer::encode(name, qtype, answer.clone(), aa) else {
                    return;
                };
                HotKind::Cluster {
                    wire,
                    sections: answer.clone(),
                }
            }
            _ => return,
        };
        let hot = Arc::new(Hot {
            generation,
            name: name.clone(),
            qtype,
            kind,
        });
        let mut map = self.map.lock().unwrap();
        if map.len() >= MAX_HOT && !map.contains_key(&key) {
            map.clear();
        }
        map.insert(key, hot);
    }

    pub fn len(&self) -> usize {
        self.map.lock().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One listener's buffers, reused for every query it answers.
#[derive(Default)]
pub struct FastBuffers {
    key: KeyBuf,
    /// The response, once [`Handler::answer_fast`] said yes.
    pub out: Vec<u8>,
}

impl Handler {
    /// Answers `query`, a UDP query that came in over IPv6 if `ipv6`, into
    /// `bufs.out` if the fast path can; false sends it the full way, with
    /// nothing counted.
    pub fn answer_fast(&self, query: &[u8], ipv6: bool, bufs: &mut FastBuffers) -> bool {
        let started = Instant::now();
        let Some(q) = wire::parse(query, &mut bufs.key) else {
            return false;
        };
        let Some(hot) = self.hot.get(bufs.key.as_bytes()) else {
            return false;
        };
        if hot.generation != *self.zone_generation.borrow() {
            return false;
        }
        let rcode = match &hot.kind {
            HotKind::Cluster { wire, sections } => {
                if !wire.write(&q, None, &mut bufs.out) {
                    return false;
                }
                if let Some(promoter) = self.promoter.get() {
                    promoter.cluster_answer(&hot.name, hot.qtype, sections, hot.generation);
                }
                sections.rcode
            }
            HotKind::Forwarded => {
                let cache = &self.forwarder.cache;
                let Some(answer) = cache.fresh(bufs.key.as_bytes(), started) else {
                    return false;
                };
                let Some(wire) = answer.wire(&hot.name, hot.qtype) else {
                    return false;
                };
                let cap = answer.remaining(started);
                if !wire.write(&q, Some(cap), &mut bufs.out) {
                    return false;
                }
                if cache.hit(&answer, started) {
                    self.forwarder.prefetch(&(hot.name.clone(), hot.qtype));
                }
                if let Some(promoter) = self.promoter.get() {
                    promoter.upstream_answer(
                        &hot.name,
                        hot.qtype,
                        &answer.sections,
                        answer.ttl,
                        answer.expires(),
                    );
                }
                answer.sections.rcode
            }
        };
        let path = match hot.kind {
            HotKind::Cluster { .. } => Path::cluster,
            HotKind::Forwarded => Path::cache_hit,
        };
        self.metrics.query(&QueryDone {
            path,
            qtype: hot.qtype,
            rcode,
            tcp: false,
            ipv6,
            dnssec_ok: q.edns.is_some_and(|e| e.dnssec_ok),
            request_bytes: query.len(),
            response_bytes: bufs.out.len(),
            took: started.elapsed(),
        });
        true
    }
}

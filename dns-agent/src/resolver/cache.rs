//! The forwarding cache: positive and negative answers (RFC 2308), clamped
//! TTLs, a bound in entries and in bytes, and expired data kept for
//! serve-stale (RFC 8767).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{LowerName, RData, Record, RecordType};
use hickory_proto::serialize::binary::BinEncodable;

use super::metrics::ResolverMetrics;
use super::wire::{self, WireAnswer};
use crate::answer::AnswerSections;
use crate::metrics::coredns::CacheKind;

pub type CacheKey = (LowerName, RecordType);

/// How the cache files an answer: the question's lower-case wire name and
/// type ([`wire::key_of`]), which the fast path reads off the query
/// without building a name.
type WireKey = Box<[u8]>;

/// Fixed overhead charged per entry on top of its records' wire size.
const ENTRY_OVERHEAD_BYTES: usize = 128;

#[derive(Debug, Clone, Copy)]
pub struct Clamps {
    pub max_success: u32,
    pub max_denial: u32,
    pub servfail: u32,
}

/// A cached upstream answer. `ttl` is the clamped lifetime it was stored with.
#[derive(Debug)]
pub struct CachedAnswer {
    pub sections: AnswerSections,
    pub ttl: u32,
    pub stored: Instant,
    pub bytes: usize,
    pub hits: AtomicU32,
    /// The response, encoded the first time the fast path serves it.
    wire: OnceLock<Option<WireAnswer>>,
}

impl CachedAnswer {
    /// The answer to keep from a validated upstream reply, or None when it
    /// must not be cached (TTL 0, or an rcode other than NOERROR, NXDOMAIN
    /// or SERVFAIL).
    pub fn from_reply(reply: &Message, clamps: &Clamps, now: Instant) -> Option<Self> {
        let rcode = reply.metadata.response_code;
        let ttl = match rcode {
            ResponseCode::NoError if !reply.answers.is_empty() => reply
                .answers
                .iter()
                .map(|r| r.ttl)
                .min()?
                .min(clamps.max_success),
            ResponseCode::NoError | ResponseCode::NXDomain => negative_ttl(&reply.authorities)
                .unwrap_or(clamps.max_denial)
                .min(clamps.max_denial),
            ResponseCode::ServFail => clamps.servfail,
            _ => return None,
        };
        if ttl == 0 {
            return None;
        }
        let sections = AnswerSections::from_message(reply);
        let bytes = ENTRY_OVERHEAD_BYTES
            + sections
                .records()
                .map(|r| r.to_bytes().map(|b| b.len()).unwrap_or(256))
                .sum::<usize>();
        Some(Self::new(sections, ttl, now, bytes))
    }

    /// An answer stored at `stored` for `ttl` seconds, charged `bytes`.
    pub fn new(sections: AnswerSections, ttl: u32, stored: Instant, bytes: usize) -> Self {
        Self {
            sections,
            ttl,
            stored,
            bytes,
            hits: AtomicU32::new(0),
            wire: OnceLock::new(),
        }
    }

    /// This answer encoded as the response to (`name`, `qtype`), TTLs as
    /// stored (the fast path caps them); None if it cannot be kept so.
    pub fn wire(&self, name: &LowerName, qtype: RecordType) -> Option<&WireAnswer> {
        self.wire
            .get_or_init(|| WireAnswer::encode(name, qtype, self.sections.clone(), false))
            .as_ref()
    }

    pub fn expires(&self) -> Instant {
        self.stored + Duration::from_secs(self.ttl as u64)
    }

    /// Seconds of life left at `now` (0 once expired).
    pub fn remaining(&self, now: Instant) -> u32 {
        self.expires().saturating_duration_since(now).as_secs() as u32
    }

    /// Which of CoreDNS's caches would hold it: answers with data are
    /// `success`; NXDOMAIN, NODATA and SERVFAIL are `denial`.
    pub fn kind(&self) -> CacheKind {
        if self.sections.rcode == ResponseCode::NoError && !self.sections.answers.is_empty() {
            CacheKind::Success
        } else {
            CacheKind::Denial
        }
    }
}

/// RFC 2308 §5: the negative TTL is min(SOA TTL, SOA MINIMUM).
fn negative_ttl(authority: &[Record]) -> Option<u32> {
    authority.iter().find_map(|r| match &r.data {
        RData::SOA(soa) => Some(r.ttl.min(soa.minimum)),
        _ => None,
    })
}

pub enum CacheLookup {
    Fresh {
        answer: Arc<CachedAnswer>,
        prefetch: bool,
    },
    Stale(Arc<CachedAnswer>),
    Miss,
}

struct Slot {
    answer: Arc<CachedAnswer>,
    seq: u64,
}

struct Inner {
    map: HashMap<WireKey, Slot>,
    /// Insertion order for eviction (oldest first). A key re-inserted later
    /// leaves an outdated (key, seq) pair behind that eviction skips.
    order: VecDeque<(WireKey, u64)>,
    seq: u64,
    bytes: usize,
    /// Entries of `CacheKind::Denial` in `map`.
    denials: usize,
}

pub struct CacheConfig {
    pub max_entries: usize,
    pub max_bytes: usize,
    pub clamps: Clamps,
    pub stale_max_age: Option<Duration>,
    pub prefetch: Option<(u32, u8)>,
}

pub struct Cache {
    cfg: CacheConfig,
    inner: Mutex<Inner>,
    metrics: Arc<ResolverMetrics>,
}

impl Cache {
    pub fn new(cfg: CacheConfig, metrics: Arc<ResolverMetrics>) -> Self {
        let inner = Inner {
            map: HashMap::new(),
            order: VecDeque::new(),
            seq: 0,
            bytes: 0,
            denials: 0,
        };
        Self {
            cfg,
            inner: Mutex::new(inner),
            metrics,
        }
    }

    pub fn clamps(&self) -> &Clamps {
        &self.cfg.clamps
    }

    pub fn get(&self, key: &CacheKey, now: Instant) -> CacheLookup {
        self.get_wire(&wire::key_of(&key.0, key.1), now)
    }

    /// The fresh answer filed under `key` (see [`wire::key_of`]), not yet
    /// counted ([`Self::hit`] does, once it is served); None, and nothing
    /// counted or removed, when it is stale or missing: the full path then
    /// looks again.
    pub fn fresh(&self, key: &[u8], now: Instant) -> Option<Arc<CachedAnswer>> {
        let answer = {
            let inner = self.inner.lock().unwrap();
            inner.map.get(key)?.answer.clone()
        };
        (now < answer.expires()).then_some(answer)
    }

    /// Counts a fresh hit on `answer`, as [`Self::get`] does; whether to
    /// prefetch it now.
    pub fn hit(&self, answer: &CachedAnswer, now: Instant) -> bool {
        let expires = answer.expires();
        self.metrics.cache_lookup(Some(answer.kind()));
        let hits = answer.hits.fetch_add(1, Ordering::Relaxed) + 1;
        self.cfg.prefetch.is_some_and(|(min_hits, percent)| {
            let left = expires - now;
            hits >= min_hits
                && left.as_millis() * 100 <= answer.ttl as u128 * 1000 * percent as u128
        })
    }

    fn get_wire(&self, key: &[u8], now: Instant) -> CacheLookup {
        let mut inner = self.inner.lock().unwrap();
        let Some(slot) = inner.map.get(key) else {
            self.metrics.cache_lookup(None);
            return CacheLookup::Miss;
        };
        let answer = slot.answer.clone();
        let expires = answer.expires();
        if now < expires {
            drop(inner);
            let prefetch = self.hit(&answer, now);
            return CacheLookup::Fresh { answer, prefetch };
        }
        match self.cfg.stale_max_age {
            Some(max_age)
                if now < expires + max_age && answer.sections.rcode != ResponseCode::ServFail =>
            {
                CacheLookup::Stale(answer)
            }
            _ => {
                self.remove_locked(&mut inner, key);
                self.metrics.cache_lookup(None);
                CacheLookup::Miss
            }
        }
    }

    /// Stores `answer`. A SERVFAIL never replaces other data, which stays
    /// available for serve-stale.
    pub fn insert(&self, key: CacheKey, answer: CachedAnswer) -> Arc<CachedAnswer> {
        let key = wire::key_of(&key.0, key.1);
        let answer = Arc::new(answer);
        let mut inner = self.inner.lock().unwrap();
        if answer.sections.rcode == ResponseCode::ServFail
            && inner
                .map
                .get(&key)
                .is_some_and(|s| s.answer.sections.rcode != ResponseCode::ServFail)
        {
            return answer;
        }
        self.remove_locked(&mut inner, &key);
        inner.seq += 1;
        let seq = inner.seq;
        inner.bytes += answer.bytes;
        inner.denials += usize::from(answer.kind() == CacheKind::Denial);
        inner.order.push_back((key.clone(), seq));
        inner.map.insert(
            key,
            Slot {
                answer: answer.clone(),
                seq,
            },
        );
        while inner.map.len() > self.cfg.max_entries || inner.bytes > self.cfg.max_bytes {
            let Some((old, old_seq)) = inner.order.pop_front() else {
                break;
            };
            if let Some(kind) = inner
                .map
                .get(&old)
                .filter(|s| s.seq == old_seq)
                .map(|s| s.answer.kind())
            {
                self.remove_locked(&mut inner, &old);
                self.metrics.cache_evicted(kind);
            }
        }
        // Keep the order queue bounded by the map's size.
        if inner.order.len() > 2 * inner.map.len() + 64 {
            let Inner { map, order, .. } = &mut *inner;
            order.retain(|(k, s)| map.get(k).is_some_and(|slot| slot.seq == *s));
        }
        self.publish(&inner);
        answer
    }

    fn remove_locked(&self, inner: &mut Inner, key: &[u8]) {
        if let Some(slot) = inner.map.remove(key) {
            inner.bytes -= slot.answer.bytes;
            inner.denials -= usize::from(slot.answer.kind() == CacheKind::Denial);
        }
        self.publish(inner);
    }

    fn publish(&self, inner: &Inner) {
        self.metrics
            .cache_size(inner.map.len() - inner.denials, inner.denials, inner.bytes);
    }

    pub fn len(&self) -> usize {
        self.inner.lock().unwrap().map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{MessageType, OpCode};
    use hickory_proto::rr::Name;
    use hickory_proto::rr::rdata::{A, SOA};
    use prometheus_client::registry::Registry;

    fn clamps() -> Clamps {
        Clamps {
            max_success: 30,
            max_denial: 5,
            servfail: 5,
        }
    }

    fn cache(entries: usize, stale: bool) -> Cache {
        let metrics = Arc::new(ResolverMetrics::new(&mut Registry::default(), None));
        let cfg = CacheConfig {
            max_entries: entries,
            max_bytes: 1 << 20,
            clamps: clamps(),
            stale_max_age: stale.then_some(Duration::from_secs(3600)),
            prefetch: Some((2, 10)),
        };
        Cache::new(cfg, metrics)
    }

    fn name(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    fn reply_a(ttl: u32) -> Message {
        let mut m = Message::new(1, MessageType::Response, OpCode::Query);
        m.add_answer(Record::from_rdata(
            name("a.example."),
            ttl,
            RData::A(A::new(192, 0, 2, 1)),
        ));
        m
    }

    fn soa(ttl: u32, minimum: u32) -> Record {
        let soa = SOA::new(
            name("ns.example."),
            name("h.example."),
            1,
            60,
            60,
            60,
            minimum,
        );
        Record::from_rdata(name("example."), ttl, RData::SOA(soa))
    }

    fn key(s: &str) -> CacheKey {
        (LowerName::new(&name(s)), RecordType::A)
    }

    /// Stores `reply_a(30)` under `name`, as received at `at`.
    fn insert_a(c: &Cache, name: &str, at: Instant) {
        let answer = CachedAnswer::from_reply(&reply_a(30), &clamps(), at).unwrap();
        c.insert(key(name), answer);
    }

    #[test]
    fn success_ttl_is_clamped() {
        let now = Instant::now();
        assert_eq!(
            CachedAnswer::from_reply(&reply_a(300), &clamps(), now)
                .unwrap()
                .ttl,
            30
        );
        assert_eq!(
            CachedAnswer::from_reply(&reply_a(7), &clamps(), now)
                .unwrap()
                .ttl,
            7
        );
        assert!(CachedAnswer::from_reply(&reply_a(0), &clamps(), now).is_none());
    }

    #[test]
    fn negative_ttl_comes_from_soa_and_is_clamped() {
        let now = Instant::now();
        let mut m = Message::new(1, MessageType::Response, OpCode::Query);
        m.metadata.response_code = ResponseCode::NXDomain;
        m.add_authority(soa(3600, 3));
        assert_eq!(CachedAnswer::from_reply(&m, &clamps(), now).unwrap().ttl, 3);
        m.authorities = vec![soa(3600, 900)];
        assert_eq!(CachedAnswer::from_reply(&m, &clamps(), now).unwrap().ttl, 5);
        m.metadata.response_code = ResponseCode::Refused;
        assert!(CachedAnswer::from_reply(&m, &clamps(), now).is_none());
    }

    #[test]
    fn expired_entries_are_stale_then_gone() {
        let c = cache(10, true);
        let past = Instant::now() - Duration::from_secs(40);
        insert_a(&c, "a.example.", past);
        assert!(matches!(
            c.get(&key("a.example."), Instant::now()),
            CacheLookup::Stale(_)
        ));
        let c = cache(10, false);
        insert_a(&c, "a.example.", past);
        assert!(matches!(
            c.get(&key("a.example."), Instant::now()),
            CacheLookup::Miss
        ));
        assert!(c.is_empty());
    }

    #[test]
    fn capacity_evicts_oldest() {
        let c = cache(2, true);
        let now = Instant::now();
        for n in ["a.example.", "b.example.", "c.example."] {
            insert_a(&c, n, now);
        }
        assert_eq!(c.len(), 2);
        assert!(matches!(c.get(&key("a.example."), now), CacheLookup::Miss));
        assert!(matches!(
            c.get(&key("c.example."), now),
            CacheLookup::Fresh { .. }
        ));
    }

    #[test]
    fn servfail_does_not_replace_data() {
        let c = cache(10, true);
        let now = Instant::now();
        insert_a(&c, "a.example.", now);
        let mut m = Message::new(1, MessageType::Response, OpCode::Query);
        m.metadata.response_code = ResponseCode::ServFail;
        c.insert(
            key("a.example."),
            CachedAnswer::from_reply(&m, &clamps(), now).unwrap(),
        );
        match c.get(&key("a.example."), now) {
            CacheLookup::Fresh { answer, .. } => {
                assert_eq!(answer.sections.rcode, ResponseCode::NoError)
            }
            _ => panic!("data lost"),
        }
    }

    #[test]
    fn prefetch_when_popular_and_nearly_expired() {
        let c = cache(10, true);
        let stored = Instant::now() - Duration::from_secs(28);
        insert_a(&c, "a.example.", stored);
        let now = Instant::now();
        assert!(matches!(
            c.get(&key("a.example."), now),
            CacheLookup::Fresh {
                prefetch: false,
                ..
            }
        ));
        assert!(matches!(
            c.get(&key("a.example."), now),
            CacheLookup::Fresh { prefetch: true, .. }
        ));
    }
}

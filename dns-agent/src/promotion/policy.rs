//! The promotion policy: which answers go into the kernel map and when.
//! Every cluster-zone answer the resolver gives is a candidate at once;
//! upstream answers once they are hot (asked more than `hot_threshold`
//! times within `hot_window`). While the map has room every candidate goes
//! in. Once it is full a candidate goes in only when it is asked more often
//! than the coldest of the least recently used entries, which it replaces;
//! entries the kernel was recently seen serving are passed over
//! (docs/design.md#admission-and-eviction).

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{LowerName, Name, RecordType};

use super::encoding::{EntrySpec, boot_time_ns, encode};
use super::metrics::{AdmitReason, EvictReason, PromotionMetrics, RejectReason};
use super::sink::{AnswerSink, SinkError};
use super::state::{Installed, Key, Origin, State};
use crate::answer::AnswerSections;
use crate::zone::{Alias, Zone};

/// Distinct upstream questions whose popularity is tracked at once; the
/// table is cleared of cold entries (or entirely) when it fills.
const MAX_HOT_TRACKED: usize = 65_536;
/// The kernel's hit samples are read at most this often, and only while
/// candidates wait for room in a full map.
const HIT_READ_EVERY: Duration = Duration::from_millis(100);
/// An entry with a sampled kernel hit this recent is protected: evicted
/// only when no unprotected entry is looked at and the candidate is more
/// frequent.
const PROTECTED_FOR: Duration = Duration::from_secs(60);
/// Sightings one kernel hit sample adds to its question's frequency (it
/// stands for `HOT_SAMPLE_EVERY` hits; the counters saturate at 15).
const HIT_SAMPLE_WEIGHT: u64 = 4;
/// Least recently used entries looked at for the coldest one.
const VICTIM_SCAN: usize = 8;

pub struct PromotionConfig {
    pub hot_threshold: u32,
    pub hot_window: Duration,
    pub cluster_lifetime: Duration,
}

pub struct Promoter {
    pub(super) cfg: PromotionConfig,
    pub(super) sink: Arc<dyn AnswerSink>,
    pub(super) zone: Arc<dyn Zone>,
    pub(super) state: Mutex<State>,
    generation: AtomicU64,
    pub(super) metrics: Arc<PromotionMetrics>,
    /// The zone has been ready at least once since this agent started.
    pub(super) synced_once: AtomicBool,
}

/// The entry a candidate would replace.
struct Victim {
    key: Key,
    frequency: u64,
    protected: bool,
}

/// An answer about to become a kernel entry.
struct Candidate<'a> {
    sections: &'a AnswerSections,
    authoritative: bool,
    max_ttl: u32,
    lifetime: Duration,
}

impl Candidate<'_> {
    /// Hash of what the entry says (rcode, records), so an unchanged answer
    /// is not rewritten on every zone change.
    fn content(&self) -> u64 {
        let mut h = DefaultHasher::new();
        u16::from(self.sections.rcode).hash(&mut h);
        self.max_ttl.hash(&mut h);
        let s = self.sections;
        for (section, records) in [&s.answers, &s.authority, &s.additionals]
            .iter()
            .enumerate()
        {
            section.hash(&mut h);
            for r in records.iter() {
                r.name.hash(&mut h);
                r.ttl.hash(&mut h);
                r.data.hash(&mut h);
            }
        }
        h.finish()
    }
}

impl Promoter {
    pub fn new(
        cfg: PromotionConfig,
        sink: Arc<dyn AnswerSink>,
        zone: Arc<dyn Zone>,
        metrics: Arc<PromotionMetrics>,
    ) -> Self {
        metrics.map_capacity.set(sink.capacity() as i64);
        let state = State::new(sink.capacity());
        metrics.map_frequency_bytes.set(state.sketch.bytes() as i64);
        // Start generations from the clock so a restarted agent never reuses
        // the generation of an entry its predecessor left in a pinned map.
        let generation = AtomicU64::new(boot_time_ns());
        let promoter = Self {
            cfg,
            sink,
            zone,
            state: Mutex::new(state),
            generation,
            metrics,
            synced_once: AtomicBool::new(false),
        };
        // Before any query, so the inherited entries count against the
        // capacity from the start and none is answered stale longer than
        // needed (the zone has normally synced by now: `dns-agent run` waits
        // for it before starting the resolver).
        promoter.inherit();
        promoter
    }

    /// A cluster-zone answer was given: make sure the kernel has it.
    /// `generation` is the zone's generation read before the lookup.
    pub fn cluster_answer(
        &self,
        qname: &Name,
        qtype: RecordType,
        answer: &AnswerSections,
        generation: u64,
    ) {
        let key = (LowerName::new(qname), qtype);
        self.asked(&mut self.state.lock().unwrap(), &key);
        self.install_cluster(&key, answer, Some(generation));
    }

    /// Userspace was asked `key`: one more sighting, and most recently used.
    fn asked(&self, state: &mut State, key: &Key) {
        let hash = state.sketch.hash(key);
        if state.sketch.record(hash) {
            self.metrics.map_frequency_agings.inc();
        }
        state.touch(key);
    }

    /// An upstream answer (fresh from cache or upstream) was given: count it
    /// and promote it once it is hot. `ttl` is the TTL it was cached with,
    /// `expires` when the cache lets it go.
    pub fn upstream_answer(
        &self,
        qname: &Name,
        qtype: RecordType,
        answer: &AnswerSections,
        ttl: u32,
        expires: Instant,
    ) {
        let now = Instant::now();
        let remaining = expires.saturating_duration_since(now);
        if remaining < Duration::from_secs(1) || answer.rcode == ResponseCode::ServFail {
            return;
        }
        let key = (LowerName::new(qname), qtype);
        {
            let mut state = self.state.lock().unwrap();
            self.asked(&mut state, &key);
            if state.hot.len() >= MAX_HOT_TRACKED && !state.hot.contains_key(&key) {
                let window = self.cfg.hot_window;
                state
                    .hot
                    .retain(|_, (_, start)| now.duration_since(*start) < window);
                if state.hot.len() >= MAX_HOT_TRACKED {
                    state.hot.clear();
                }
            }
            let (count, start) = state.hot.entry(key.clone()).or_insert((0, now));
            if now.saturating_duration_since(*start) >= self.cfg.hot_window {
                *count = 0;
                *start = now;
            }
            *count = count.saturating_add(1);
            if *count <= self.cfg.hot_threshold {
                return;
            }
            // Hot. Once the kernel answers it, userspace no longer sees it
            // asked; keep it hot until a window after this answer expires,
            // so the first ask after expiry promotes the fresh answer at once.
            *start = now + remaining;
        }
        let candidate = Candidate {
            sections: answer,
            authoritative: false,
            max_ttl: ttl,
            lifetime: remaining,
        };
        self.install(&key, Origin::Upstream, &candidate, None);
    }

    /// A cluster answer whose CNAME chain left the zone and was completed
    /// through the forwarder (`alias` is the zone's part): installed at once
    /// like any cluster answer, but it expires with its shortest TTL, and a
    /// zone change that alters the alias withdraws it.
    pub fn chased_answer(
        &self,
        qname: &Name,
        qtype: RecordType,
        answer: &AnswerSections,
        alias: &Alias,
        generation: u64,
    ) {
        let ttl = answer.records().map(|r| r.ttl).min().unwrap_or(0);
        if ttl == 0 {
            return;
        }
        let candidate = Candidate {
            sections: answer,
            authoritative: true,
            max_ttl: ttl,
            lifetime: Duration::from_secs(u64::from(ttl)),
        };
        let key = (LowerName::new(qname), qtype);
        self.asked(&mut self.state.lock().unwrap(), &key);
        let origin = Origin::Chased(alias_hash(alias));
        self.install(&key, origin, &candidate, Some(generation));
    }

    pub(super) fn install_cluster(
        &self,
        key: &Key,
        answer: &AnswerSections,
        seen_generation: Option<u64>,
    ) {
        if answer.rcode == ResponseCode::ServFail {
            // A CNAME loop: nothing the kernel may answer.
            self.forget(key);
            return;
        }
        let candidate = Candidate {
            sections: answer,
            authoritative: true,
            max_ttl: min_ttl(answer),
            lifetime: self.cfg.cluster_lifetime,
        };
        self.install(key, Origin::Cluster, &candidate, seen_generation);
    }

    /// Writes the entry unless the map already has the same answer with at
    /// least half of its lifetime left.
    fn install(
        &self,
        key: &Key,
        origin: Origin,
        candidate: &Candidate<'_>,
        seen_generation: Option<u64>,
    ) {
        let now = Instant::now();
        let content = candidate.content();
        {
            let state = self.state.lock().unwrap();
            let current = state.installed.get(key).is_some_and(|i| {
                i.origin == origin
                    && i.content == content
                    && i.expires > now + candidate.lifetime / 2
            });
            if current {
                return;
            }
        }
        let qname = Name::from(&key.0);
        let spec = EntrySpec {
            qname: &qname,
            qtype: key.1,
            sections: candidate.sections,
            authoritative: candidate.authoritative,
            max_ttl: candidate.max_ttl,
            expires_boot_ns: boot_time_ns() + candidate.lifetime.as_nanos() as u64,
            generation: self.generation.fetch_add(1, Ordering::Relaxed) + 1,
        };
        let (map_key, entry) = match encode(&spec) {
            Ok(kv) => kv,
            Err(e) => {
                // Too big or too long for the kernel: userspace keeps answering it.
                tracing::trace!(name = %qname, qtype = %key.1, error = %e, "answer not promoted");
                self.metrics.map_encode_skipped.inc();
                self.forget(key);
                return;
            }
        };
        let mut state = self.state.lock().unwrap();
        if seen_generation.is_some_and(|g| g < state.zone_generation) {
            return; // possibly outdated; the next query installs the current answer
        }
        let new = !state.installed.contains_key(key);
        let mut admitted = AdmitReason::room;
        if new && state.installed.len() >= self.sink.capacity() as usize {
            if !self.admit(&mut state, key, now) {
                return;
            }
            admitted = AdmitReason::hotter;
        }
        let mut result = self.sink.put(&map_key, &entry);
        if let Err(SinkError::Full { .. }) = result {
            if let Some(victim) = self.coldest(&mut state, now) {
                self.evict(&mut state, &victim.key, EvictReason::full);
            }
            result = self.sink.put(&map_key, &entry);
        }
        match result {
            Ok(()) => {
                state.write_errors.recovered("kernel answers map writes");
                self.metrics.map_writes.inc();
                if new {
                    self.metrics.admitted(admitted);
                }
                let expires = now + candidate.lifetime;
                let inst = Installed {
                    origin,
                    map_key,
                    last_used: 0,
                    expires,
                    content,
                    last_hit: None,
                };
                state.insert(key.clone(), inst);
            }
            Err(e) => {
                state.write_errors.failed(
                    "could not write the kernel answers map",
                    &format!("{qname}: {e}"),
                );
                self.metrics.map_write_errors.inc();
            }
        }
        self.metrics.map_entries.set(state.installed.len() as i64);
    }

    /// The map is full and `key` is not in it: makes room when `key` is
    /// asked more often than the coldest entry looked at (TinyLFU's
    /// admission); false (counted) when it stays out.
    fn admit(&self, state: &mut State, key: &Key, now: Instant) -> bool {
        self.read_hits(state, now);
        let frequency = state.sketch.estimate(state.sketch.hash(key));
        let Some(victim) = self.coldest(state, now) else {
            return true; // nothing tracked to evict; the kernel decides
        };
        if frequency > victim.frequency {
            let reason = if victim.protected {
                EvictReason::protected
            } else {
                EvictReason::colder
            };
            self.evict(state, &victim.key, reason);
            true
        } else {
            self.metrics.rejected(if victim.protected {
                RejectReason::protected
            } else {
                RejectReason::colder
            });
            false
        }
    }

    /// The coldest of the [`VICTIM_SCAN`] least recently used entries:
    /// expired ones first, then those without a recent kernel hit, then
    /// the least frequent. Protected entries looked at and passed over go
    /// to the back of the line (a second chance), so the next look sees
    /// others.
    fn coldest(&self, state: &mut State, now: Instant) -> Option<Victim> {
        let scanned: Vec<Key> = state.lru.values().take(VICTIM_SCAN).cloned().collect();
        let mut best: Option<Victim> = None;
        let mut passed = Vec::new();
        for key in scanned {
            let Some(inst) = state.installed.get(&key) else {
                continue;
            };
            let expired = inst.origin != Origin::Cluster && inst.expires <= now;
            let protected = !expired
                && inst
                    .last_hit
                    .is_some_and(|t| now.saturating_duration_since(t) < PROTECTED_FOR);
            let frequency = if expired {
                0
            } else {
                state.sketch.estimate(state.sketch.hash(&key))
            };
            let victim = Victim {
                key,
                frequency,
                protected,
            };
            let colder =
                |b: &Victim| (victim.protected, victim.frequency) < (b.protected, b.frequency);
            if best.as_ref().is_none_or(colder) {
                if let Some(b) = best.replace(victim) {
                    passed.push(b);
                }
            } else {
                passed.push(victim);
            }
        }
        for v in passed.into_iter().filter(|v| v.protected) {
            state.touch(&v.key);
        }
        best
    }

    fn evict(&self, state: &mut State, key: &Key, reason: EvictReason) {
        if let Some(inst) = state.remove(key) {
            if let Err(e) = self.sink.delete(&inst.map_key) {
                tracing::warn!(error = %e, "could not delete an evicted kernel map entry");
            }
            self.metrics.evicted(reason);
        }
    }

    /// Takes the kernel's hit samples (at most every [`HIT_READ_EVERY`]):
    /// each sampled entry is marked hit now, moves to the back of the line
    /// and counts [`HIT_SAMPLE_WEIGHT`] sightings. Userspace never sees
    /// the questions the kernel answers; without this a hot entry would
    /// look unused.
    fn read_hits(&self, state: &mut State, now: Instant) {
        if state
            .hits_read
            .is_some_and(|t| now.saturating_duration_since(t) < HIT_READ_EVERY)
        {
            return;
        }
        state.hits_read = Some(now);
        let samples = self.sink.hit_samples();
        self.metrics.map_hit_samples.inc_by(samples.len() as u64);
        for hash in samples {
            let Some(key) = state.by_hash.get(&hash).cloned() else {
                continue; // an entry that has left the map since
            };
            if let Some(inst) = state.installed.get_mut(&key) {
                inst.last_hit = Some(now);
            }
            state.touch(&key);
            let h = state.sketch.hash(&key);
            if state.sketch.add(h, HIT_SAMPLE_WEIGHT) {
                self.metrics.map_frequency_agings.inc();
            }
        }
    }

    pub(super) fn forget(&self, key: &Key) {
        let mut state = self.state.lock().unwrap();
        if let Some(inst) = state.remove(key) {
            let _ = self.sink.delete(&inst.map_key);
        }
        self.metrics.map_entries.set(state.installed.len() as i64);
    }

    /// Number of entries the agent has installed.
    pub fn installed(&self) -> usize {
        self.state.lock().unwrap().installed.len()
    }
}

/// What identifies the zone's part of a chased answer: the chain (owners,
/// TTLs, targets) and where it leaves the zone.
pub(super) fn alias_hash(alias: &Alias) -> u64 {
    let mut h = DefaultHasher::new();
    for r in &alias.chain {
        r.name.hash(&mut h);
        r.ttl.hash(&mut h);
        r.data.hash(&mut h);
    }
    alias.target.hash(&mut h);
    h.finish()
}

/// The TTL the kernel serves: the smallest record TTL of the answer (for a
/// negative answer, the SOA's, which the zone already set to the negative TTL).
fn min_ttl(answer: &AnswerSections) -> u32 {
    let records = if answer.answers.is_empty() {
        &answer.authority
    } else {
        &answer.answers
    };
    records.iter().map(|r| r.ttl).min().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::promotion::encoding::{boot_time_ns, decode, key_for};
    use crate::promotion::sink::MemorySink;
    use crate::zone::ZoneLookup;
    use hickory_proto::rr::RData;
    use hickory_proto::rr::Record;
    use hickory_proto::rr::rdata::A;
    use std::sync::RwLock;
    use tokio::sync::watch;

    struct OneName(RwLock<Option<A>>, watch::Sender<u64>);

    impl Zone for OneName {
        fn lookup(&self, name: &LowerName, _: RecordType) -> ZoneLookup {
            let mut answer = AnswerSections::new(ResponseCode::NXDomain);
            if let Some(a) = *self.0.read().unwrap() {
                answer.rcode = ResponseCode::NoError;
                answer
                    .answers
                    .push(Record::from_rdata(name.into(), 30, RData::A(a)));
            }
            ZoneLookup::Answer(answer)
        }
        fn changes(&self) -> watch::Receiver<u64> {
            self.1.subscribe()
        }
        fn is_ready(&self) -> bool {
            true
        }
    }

    const LIFETIME: Duration = Duration::from_secs(60);

    fn setup(
        capacity: u32,
    ) -> (
        Arc<Promoter>,
        Arc<MemorySink>,
        Arc<OneName>,
        Arc<PromotionMetrics>,
    ) {
        let sink = Arc::new(MemorySink::new(capacity));
        let zone = Arc::new(OneName(
            RwLock::new(Some(A::new(10, 0, 0, 1))),
            watch::channel(0).0,
        ));
        let (promoter, metrics) =
            crate::promotion::testing::promoter(sink.clone(), zone.clone(), LIFETIME);
        (promoter, sink, zone, metrics)
    }

    fn ask(promoter: &Promoter, zone: &OneName, n: &str) {
        let name = Name::from_ascii(n).unwrap();
        let ZoneLookup::Answer(a) = zone.lookup(&LowerName::new(&name), RecordType::A) else {
            unreachable!()
        };
        promoter.cluster_answer(&name, RecordType::A, &a, 0);
    }

    #[test]
    fn entries_left_by_a_previous_agent_follow_the_zone() {
        let (first, sink, zone, _) = setup(8);
        ask(&first, &zone, "a.cluster.local.");
        drop(first);
        // The Service changes while no agent runs; the next one inherits
        // the entries.
        *zone.0.write().unwrap() = Some(A::new(10, 0, 0, 2));
        let (second, _) = crate::promotion::testing::promoter(sink.clone(), zone.clone(), LIFETIME);
        assert_eq!(second.installed(), 1);
        second.refresh(true, None);
        let name = Name::from_ascii("a.cluster.local.").unwrap();
        let key = key_for(&name, RecordType::A).unwrap();
        let decoded = decode(&key, &sink.get(&key).unwrap()).unwrap();
        assert_eq!(
            decoded.sections.answers[0].data,
            RData::A(A::new(10, 0, 0, 2))
        );
    }

    #[test]
    fn unchanged_answers_are_not_rewritten() {
        let (promoter, _sink, zone, metrics) = setup(8);
        ask(&promoter, &zone, "a.cluster.local.");
        ask(&promoter, &zone, "a.cluster.local.");
        promoter.refresh(true, None);
        assert_eq!(metrics.map_writes.get(), 1);
        *zone.0.write().unwrap() = Some(A::new(10, 0, 0, 2));
        promoter.refresh(true, None);
        assert_eq!(metrics.map_writes.get(), 2);
        *zone.0.write().unwrap() = None;
        promoter.refresh(true, None);
        assert_eq!(metrics.map_writes.get(), 3);
    }

    #[test]
    fn answers_older_than_the_last_rederivation_are_ignored() {
        let (promoter, sink, zone, _) = setup(8);
        promoter.refresh(true, Some(5));
        let name = Name::from_ascii("a.cluster.local.").unwrap();
        let ZoneLookup::Answer(a) = zone.lookup(&LowerName::new(&name), RecordType::A) else {
            unreachable!()
        };
        promoter.cluster_answer(&name, RecordType::A, &a, 4);
        assert!(
            sink.is_empty(),
            "looked up before generation 5: not installed"
        );
        promoter.cluster_answer(&name, RecordType::A, &a, 5);
        assert_eq!(sink.len(), 1);
    }

    #[test]
    fn a_hot_answer_is_promoted_again_at_once_after_expiry() {
        let (promoter, sink, _zone, metrics) = setup(8);
        let name = Name::from_ascii("popular.example.").unwrap();
        let mut answer = AnswerSections::new(ResponseCode::NoError);
        answer.answers.push(Record::from_rdata(
            name.clone(),
            30,
            RData::A(A::new(192, 0, 2, 1)),
        ));
        let expires = || Instant::now() + Duration::from_secs(30);
        let first = expires();
        promoter.upstream_answer(&name, RecordType::A, &answer, 30, first); // threshold 1: not yet
        assert!(sink.is_empty());
        promoter.upstream_answer(&name, RecordType::A, &answer, 30, first);
        assert_eq!(sink.len(), 1);
        // The kernel entry expired and was withdrawn; the next answer is the
        // first userspace sees, and it goes straight back in.
        promoter.forget(&(LowerName::new(&name), RecordType::A));
        assert!(sink.is_empty());
        promoter.upstream_answer(&name, RecordType::A, &answer, 30, expires());
        assert_eq!(sink.len(), 1);
        assert_eq!(metrics.map_writes.get(), 2);
    }

    fn key(n: &str) -> dns_common::AnswerKey {
        key_for(&Name::from_ascii(n).unwrap(), RecordType::A).unwrap()
    }

    /// With the map full, a name asked once stays out (it is not asked more
    /// often than the entries); asked again, it replaces the least recently
    /// used entry.
    #[test]
    fn full_map_admits_a_name_once_it_repeats_and_evicts_the_lru_entry() {
        let (promoter, sink, zone, metrics) = setup(2);
        ask(&promoter, &zone, "a.cluster.local.");
        ask(&promoter, &zone, "b.cluster.local.");
        ask(&promoter, &zone, "a.cluster.local."); // a is now more recent than b
        ask(&promoter, &zone, "c.cluster.local.");
        assert!(sink.get(&key("c.cluster.local.")).is_none(), "asked once");
        assert_eq!(metrics.evictions(), 0);
        ask(&promoter, &zone, "c.cluster.local.");
        assert!(sink.get(&key("a.cluster.local.")).is_some());
        assert!(sink.get(&key("b.cluster.local.")).is_none());
        assert!(sink.get(&key("c.cluster.local.")).is_some());
        assert_eq!(metrics.evictions(), 1);
        assert_eq!(promoter.installed(), 2);
        let admitted = |reason| {
            metrics
                .map_admitted
                .get_or_create(&crate::promotion::metrics::AdmitLabels { reason })
                .get()
        };
        assert_eq!(
            (admitted(AdmitReason::room), admitted(AdmitReason::hotter)),
            (2, 1)
        );
        let rejected = metrics
            .map_rejected
            .get_or_create(&crate::promotion::metrics::RejectLabels {
                reason: RejectReason::colder,
            })
            .get();
        assert_eq!(rejected, 1);
    }

    /// Names the kernel answers are never seen by userspace again; their
    /// sampled kernel hits keep them in a map a unique-name flood tries to
    /// take over, even a flood that ages the sketch many times over.
    #[test]
    fn a_flood_of_unique_names_keeps_the_entries_the_kernel_serves() {
        const CAPACITY: u32 = 64;
        let (promoter, sink, zone, metrics) = setup(CAPACITY);
        let hot: Vec<String> = (0..8).map(|i| format!("hot{i}.cluster.local.")).collect();
        for name in &hot {
            ask(&promoter, &zone, name);
        }
        for i in 0..20_000 {
            ask(&promoter, &zone, &format!("flood{i}.cluster.local."));
            if i % 50 == 0 {
                // The kernel keeps answering the hot names (one sample
                // every so often), and the agent reads the samples.
                for name in &hot {
                    sink.sample_hit(&key(name));
                }
                promoter.state.lock().unwrap().hits_read = None;
            }
        }
        for name in &hot {
            assert!(
                sink.get(&key(name)).is_some(),
                "{name} evicted by the flood"
            );
        }
        assert_eq!(promoter.installed(), CAPACITY as usize);
        assert!(
            metrics.map_frequency_agings.get() > 0,
            "the flood aged the sketch"
        );
        assert!(
            metrics.evictions() > 0,
            "flood entries replace older flood entries"
        );
        assert!(metrics.map_hit_samples.get() > 0);
    }

    /// A full map still follows the zone: re-derivations rewrite entries in
    /// place, without admission.
    #[test]
    fn a_full_map_still_follows_the_zone() {
        let (promoter, sink, zone, metrics) = setup(1);
        ask(&promoter, &zone, "a.cluster.local.");
        ask(&promoter, &zone, "b.cluster.local.");
        *zone.0.write().unwrap() = Some(A::new(10, 0, 0, 2));
        promoter.refresh(true, Some(1));
        let entry = decode(
            &key("a.cluster.local."),
            &sink.get(&key("a.cluster.local.")).unwrap(),
        );
        assert_eq!(
            entry.unwrap().sections.answers[0].data,
            RData::A(A::new(10, 0, 0, 2))
        );
        assert_eq!(metrics.evictions(), 0);
    }

    /// A zone with one ExternalName-like name whose chain leaves the zone.
    struct Aliased(RwLock<Alias>, watch::Sender<u64>);

    impl Zone for Aliased {
        fn lookup(&self, _: &LowerName, _: RecordType) -> ZoneLookup {
            ZoneLookup::Alias(self.0.read().unwrap().clone())
        }
        fn changes(&self) -> watch::Receiver<u64> {
            self.1.subscribe()
        }
        fn is_ready(&self) -> bool {
            true
        }
    }

    fn chain_to(target: &str) -> Alias {
        let owner = Name::from_ascii("ext.default.svc.cluster.local.").unwrap();
        let target = Name::from_ascii(target).unwrap();
        let cname = hickory_proto::rr::rdata::CNAME(target.clone());
        Alias {
            chain: vec![Record::from_rdata(owner, 30, RData::CNAME(cname))],
            target,
        }
    }

    /// A chased answer is promoted at once, lives as long as its shortest
    /// TTL, and goes when the zone's part of the chain changes.
    #[test]
    fn chased_answers_expire_with_their_shortest_ttl_and_follow_the_zone() {
        let sink = Arc::new(MemorySink::new(8));
        let zone = Arc::new(Aliased(
            RwLock::new(chain_to("example.com.")),
            watch::channel(0).0,
        ));
        let (promoter, _) =
            crate::promotion::testing::promoter(sink.clone(), zone.clone(), LIFETIME);
        let qname = Name::from_ascii("ext.default.svc.cluster.local.").unwrap();
        let alias = zone.0.read().unwrap().clone();
        let mut target = AnswerSections::new(ResponseCode::NoError);
        target.answers.push(Record::from_rdata(
            Name::from_ascii("example.com.").unwrap(),
            7,
            RData::A(A::new(192, 0, 2, 1)),
        ));
        let answer = alias.complete(&target);
        assert!(answer.records().all(|r| r.ttl == 7), "{answer:?}");
        let before = boot_time_ns();
        promoter.chased_answer(&qname, RecordType::A, &answer, &alias, 0);
        let after = boot_time_ns();
        let key = key_for(&qname, RecordType::A).unwrap();
        let entry = decode(&key, &sink.get(&key).expect("promoted at once")).unwrap();
        assert!(entry.authoritative);
        assert_eq!(entry.max_ttl, 7);
        const TTL_NS: u64 = 7_000_000_000;
        assert!(
            (before + TTL_NS..=after + TTL_NS).contains(&entry.expires_boot_ns),
            "lives its shortest TTL (7 s), not the cluster lifetime"
        );
        // A zone change that keeps the alias keeps the entry...
        promoter.refresh(true, Some(1));
        assert!(sink.get(&key).is_some());
        // ... one that changes it withdraws it.
        *zone.0.write().unwrap() = chain_to("example.net.");
        promoter.refresh(true, Some(2));
        assert!(sink.get(&key).is_none());
        assert_eq!(promoter.installed(), 0);
    }
}

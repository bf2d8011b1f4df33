//! Promotes answers into the kernel map (the `AnswerSink`): every cluster-zone
//! answer the resolver gives, and upstream answers once they are hot. Keeps
//! cluster entries in step with the zone and the map within its capacity
//! (least recently used entries are evicted first).

mod adopt;

use std::collections::{BTreeMap, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dns_common::AnswerKey;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{LowerName, Name, Record, RecordType};
use tokio_util::sync::CancellationToken;

use super::cache::CachedAnswer;
use super::metrics::ResolverMetrics;
use crate::fastpath::entry::{EntrySpec, boot_time_ns, encode};
use crate::fastpath::sink::{AnswerSink, SinkError};
use crate::zone::{AuthAnswer, Zone, ZoneLookup};

pub use adopt::Adopted;

/// Distinct upstream questions whose popularity is tracked at once; the
/// table is cleared of cold entries (or entirely) when it fills.
const MAX_HOT_TRACKED: usize = 65_536;

type Key = (LowerName, RecordType);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Origin {
    Cluster,
    Upstream,
}

struct Installed {
    origin: Origin,
    map_key: AnswerKey,
    /// Position in `State::lru`.
    last_used: u64,
    expires: Instant,
    /// Hash of what the entry says (rcode, records), so an unchanged answer
    /// is not rewritten on every zone change.
    content: u64,
}

#[derive(Default)]
struct State {
    hot: HashMap<Key, (u32, Instant)>,
    installed: HashMap<Key, Installed>,
    /// Use order: the smallest tick is the least recently used key.
    lru: BTreeMap<u64, Key>,
    tick: u64,
    /// The zone generation the last full re-derivation started from. A
    /// query's answer looked up at an older generation may predate it and
    /// must not overwrite what the re-derivation wrote.
    zone_generation: u64,
}

impl State {
    /// Marks `key` used; false when it is not installed.
    fn touch(&mut self, key: &Key) -> bool {
        let Some(inst) = self.installed.get_mut(key) else {
            return false;
        };
        self.lru.remove(&inst.last_used);
        self.tick += 1;
        inst.last_used = self.tick;
        self.lru.insert(self.tick, key.clone());
        true
    }

    fn remove(&mut self, key: &Key) -> Option<Installed> {
        let inst = self.installed.remove(key)?;
        self.lru.remove(&inst.last_used);
        Some(inst)
    }

    fn insert(&mut self, key: Key, mut inst: Installed) {
        self.remove(&key);
        self.tick += 1;
        inst.last_used = self.tick;
        self.lru.insert(self.tick, key.clone());
        self.installed.insert(key, inst);
    }
}

pub struct FeederConfig {
    pub hot_threshold: u32,
    pub hot_window: Duration,
    pub cluster_lifetime: Duration,
}

pub struct Feeder {
    cfg: FeederConfig,
    sink: Arc<dyn AnswerSink>,
    zone: Arc<dyn Zone>,
    state: Mutex<State>,
    generation: AtomicU64,
    metrics: Arc<ResolverMetrics>,
    /// The zone has been ready at least once since this agent started.
    synced_once: AtomicBool,
}

/// The parts of an answer an entry is made of.
struct Parts<'a> {
    rcode: ResponseCode,
    authoritative: bool,
    answers: &'a [Record],
    authority: &'a [Record],
    additionals: &'a [Record],
    max_ttl: u32,
    lifetime: Duration,
}

impl Parts<'_> {
    fn content(&self) -> u64 {
        let mut h = DefaultHasher::new();
        u16::from(self.rcode).hash(&mut h);
        self.max_ttl.hash(&mut h);
        for (section, records) in [self.answers, self.authority, self.additionals]
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

impl Feeder {
    pub fn new(
        cfg: FeederConfig,
        sink: Arc<dyn AnswerSink>,
        zone: Arc<dyn Zone>,
        metrics: Arc<ResolverMetrics>,
    ) -> Self {
        metrics.map_capacity.set(sink.capacity() as i64);
        // Start generations from the clock so a restarted agent never reuses
        // the generation of an entry its predecessor left in a pinned map.
        let generation = AtomicU64::new(boot_time_ns());
        let feeder = Self {
            cfg,
            sink,
            zone,
            state: Mutex::new(State::default()),
            generation,
            metrics,
            synced_once: AtomicBool::new(false),
        };
        // Before any query, so the inherited entries count against the
        // capacity from the start and none is answered stale longer than
        // needed (the zone has normally synced by now: `dns-agent run` waits
        // for it before starting the resolver).
        feeder.adopt();
        feeder
    }

    /// A cluster-zone answer was given: make sure the kernel has it.
    /// `generation` is the zone's generation read before the lookup.
    pub fn cluster_answer(
        &self,
        qname: &Name,
        qtype: RecordType,
        answer: &AuthAnswer,
        generation: u64,
    ) {
        self.install_cluster(&(LowerName::new(qname), qtype), answer, Some(generation));
    }

    /// An upstream answer (fresh from cache or upstream) was given: count it
    /// and promote it once it is hot.
    pub fn upstream_answer(&self, qname: &Name, qtype: RecordType, answer: &CachedAnswer) {
        let now = Instant::now();
        let remaining = answer.expires().saturating_duration_since(now);
        if remaining < Duration::from_secs(1) || answer.rcode == ResponseCode::ServFail {
            return;
        }
        let key = (LowerName::new(qname), qtype);
        {
            let mut state = self.state.lock().unwrap();
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
        let parts = Parts {
            rcode: answer.rcode,
            authoritative: false,
            answers: &answer.answers,
            authority: &answer.authority,
            additionals: &answer.additionals,
            max_ttl: answer.ttl,
            lifetime: remaining,
        };
        self.install(&key, Origin::Upstream, &parts, None);
    }

    fn install_cluster(&self, key: &Key, answer: &AuthAnswer, seen_generation: Option<u64>) {
        let parts = Parts {
            rcode: answer.rcode,
            authoritative: true,
            answers: &answer.answers,
            authority: &answer.authority,
            additionals: &answer.additionals,
            max_ttl: min_ttl(answer),
            lifetime: self.cfg.cluster_lifetime,
        };
        self.install(key, Origin::Cluster, &parts, seen_generation);
    }

    /// Writes the entry unless the map already has the same answer with at
    /// least half of its lifetime left.
    fn install(&self, key: &Key, origin: Origin, parts: &Parts<'_>, seen_generation: Option<u64>) {
        let now = Instant::now();
        let content = parts.content();
        {
            let mut state = self.state.lock().unwrap();
            let current = state.installed.get(key).is_some_and(|i| {
                i.origin == origin && i.content == content && i.expires > now + parts.lifetime / 2
            });
            if current {
                state.touch(key);
                return;
            }
        }
        let qname = Name::from(&key.0);
        let spec = EntrySpec {
            qname: &qname,
            qtype: key.1,
            rcode: parts.rcode,
            authoritative: parts.authoritative,
            answers: parts.answers,
            authority: parts.authority,
            additionals: parts.additionals,
            max_ttl: parts.max_ttl,
            expires_boot_ns: boot_time_ns() + parts.lifetime.as_nanos() as u64,
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
        if !state.installed.contains_key(key)
            && state.installed.len() >= self.sink.capacity() as usize
        {
            self.evict_lru(&mut state);
        }
        let mut result = self.sink.put(&map_key, &entry);
        if let Err(SinkError::Full { .. }) = result {
            self.evict_lru(&mut state);
            result = self.sink.put(&map_key, &entry);
        }
        match result {
            Ok(()) => {
                self.metrics.map_writes.inc();
                let expires = now + parts.lifetime;
                let inst = Installed {
                    origin,
                    map_key,
                    last_used: 0,
                    expires,
                    content,
                };
                state.insert(key.clone(), inst);
            }
            Err(e) => {
                tracing::warn!(name = %qname, error = %e, "could not write the kernel answers map");
                self.metrics.map_write_errors.inc();
            }
        }
        self.metrics.map_entries.set(state.installed.len() as i64);
    }

    fn evict_lru(&self, state: &mut State) {
        let Some((_, victim)) = state.lru.pop_first() else {
            return;
        };
        if let Some(inst) = state.installed.remove(&victim) {
            if let Err(e) = self.sink.delete(&inst.map_key) {
                tracing::warn!(error = %e, "could not delete an evicted kernel map entry");
            }
            self.metrics.map_evictions.inc();
        }
    }

    fn forget(&self, key: &Key) {
        let mut state = self.state.lock().unwrap();
        if let Some(inst) = state.remove(key) {
            let _ = self.sink.delete(&inst.map_key);
        }
        self.metrics.map_entries.set(state.installed.len() as i64);
    }

    /// Re-derives cluster entries from the zone: all of them when `all`
    /// (unchanged answers are not rewritten), else only those due for
    /// renewal. Also drops expired upstream entries.
    /// `generation`: the zone generation a full re-derivation starts from.
    fn refresh(&self, all: bool, generation: Option<u64>) {
        if self.zone.is_ready() {
            self.synced_once.store(true, Ordering::Relaxed);
        } else if !self.synced_once.load(Ordering::Relaxed) {
            // Nothing can be re-derived before the first sync; entries taken
            // over from a previous agent keep serving until then. (A zone
            // that loses its sync later has its entries withdrawn below.)
            return;
        }
        let now = Instant::now();
        if let Some(g) = generation {
            let mut state = self.state.lock().unwrap();
            state.zone_generation = state.zone_generation.max(g);
        }
        let renew_before = now + self.cfg.cluster_lifetime / 2;
        let (cluster, expired): (Vec<Key>, Vec<Key>) = {
            let state = self.state.lock().unwrap();
            let pick = |origin: Origin, f: &dyn Fn(&Installed) -> bool| -> Vec<Key> {
                let matching = state
                    .installed
                    .iter()
                    .filter(|(_, i)| i.origin == origin && f(i));
                matching.map(|(k, _)| k.clone()).collect()
            };
            (
                pick(Origin::Cluster, &|i| all || i.expires < renew_before),
                pick(Origin::Upstream, &|i| i.expires <= now),
            )
        };
        for key in expired {
            self.forget(&key);
        }
        for key in cluster {
            match self.zone.lookup(&key.0, key.1) {
                ZoneLookup::Answer(answer) => self.install_cluster(&key, &answer, None),
                // Left the zone or the zone lost its sync: userspace decides.
                ZoneLookup::NotOurs | ZoneLookup::NotReady => self.forget(&key),
            }
        }
    }

    /// Follows zone changes (re-deriving every cluster entry at once) and
    /// renews entries before they expire, until cancelled.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        let mut changes = self.zone.changes();
        if self.zone.is_ready() {
            // Synced before this task started: no change may come for a
            // while, and entries taken over from a previous agent must
            // follow the zone now.
            let generation = *changes.borrow_and_update();
            let this = self.clone();
            let _ = tokio::task::spawn_blocking(move || this.refresh(true, Some(generation))).await;
        }
        let period = (self.cfg.cluster_lifetime / 4).max(Duration::from_secs(1));
        let mut renew = tokio::time::interval(period);
        renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                changed = changes.changed() => {
                    if changed.is_err() {
                        // The zone's sender went away; ask for a new receiver.
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        changes = self.zone.changes();
                        continue;
                    }
                    let generation = *changes.borrow_and_update();
                    // Lookups and map writes are synchronous: off the runtime.
                    let this = self.clone();
                    let _ = tokio::task::spawn_blocking(move || this.refresh(true, Some(generation))).await;
                }
                _ = renew.tick() => {
                    let this = self.clone();
                    let _ = tokio::task::spawn_blocking(move || this.refresh(false, None)).await;
                }
            }
        }
    }

    /// Number of entries the agent has installed.
    pub fn installed(&self) -> usize {
        self.state.lock().unwrap().installed.len()
    }
}

/// The TTL the kernel serves: the smallest record TTL of the answer (for a
/// negative answer, the SOA's, which the zone already set to the negative TTL).
fn min_ttl(answer: &AuthAnswer) -> u32 {
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
    use crate::fastpath::entry::{decode, key_for};
    use crate::fastpath::sink::MemorySink;
    use hickory_proto::rr::RData;
    use hickory_proto::rr::rdata::A;
    use prometheus_client::registry::Registry;
    use std::sync::RwLock;
    use tokio::sync::watch;

    struct OneName(RwLock<Option<A>>, watch::Sender<u64>);

    impl Zone for OneName {
        fn lookup(&self, name: &LowerName, _: RecordType) -> ZoneLookup {
            let mut answer = AuthAnswer {
                rcode: ResponseCode::NXDomain,
                answers: vec![],
                authority: vec![],
                additionals: vec![],
            };
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

    fn setup(
        capacity: u32,
    ) -> (
        Arc<Feeder>,
        Arc<MemorySink>,
        Arc<OneName>,
        Arc<ResolverMetrics>,
    ) {
        let sink = Arc::new(MemorySink::new(capacity));
        let zone = Arc::new(OneName(
            RwLock::new(Some(A::new(10, 0, 0, 1))),
            watch::channel(0).0,
        ));
        let metrics = Arc::new(ResolverMetrics::new(&mut Registry::default()));
        let cfg = FeederConfig {
            hot_threshold: 1,
            hot_window: Duration::from_secs(10),
            cluster_lifetime: Duration::from_secs(60),
        };
        let feeder = Arc::new(Feeder::new(
            cfg,
            sink.clone(),
            zone.clone(),
            metrics.clone(),
        ));
        (feeder, sink, zone, metrics)
    }

    fn ask(feeder: &Feeder, zone: &OneName, n: &str) {
        let name = Name::from_ascii(n).unwrap();
        let ZoneLookup::Answer(a) = zone.lookup(&LowerName::new(&name), RecordType::A) else {
            unreachable!()
        };
        feeder.cluster_answer(&name, RecordType::A, &a, 0);
    }

    #[test]
    fn entries_left_by_a_previous_agent_follow_the_zone() {
        let (first, sink, zone, _) = setup(8);
        ask(&first, &zone, "a.cluster.local.");
        drop(first);
        // The Service changes while no agent runs; the next one adopts the map.
        *zone.0.write().unwrap() = Some(A::new(10, 0, 0, 2));
        let metrics = Arc::new(ResolverMetrics::new(&mut Registry::default()));
        let cfg = FeederConfig {
            hot_threshold: 1,
            hot_window: Duration::from_secs(10),
            cluster_lifetime: Duration::from_secs(60),
        };
        let second = Feeder::new(cfg, sink.clone(), zone.clone(), metrics);
        assert_eq!(second.installed(), 1);
        second.refresh(true, None);
        let name = Name::from_ascii("a.cluster.local.").unwrap();
        let key = key_for(&name, RecordType::A).unwrap();
        let decoded = decode(&key, &sink.get(&key).unwrap()).unwrap();
        assert_eq!(decoded.answers[0].data, RData::A(A::new(10, 0, 0, 2)));
    }

    #[test]
    fn unchanged_answers_are_not_rewritten() {
        let (feeder, _sink, zone, metrics) = setup(8);
        ask(&feeder, &zone, "a.cluster.local.");
        ask(&feeder, &zone, "a.cluster.local.");
        feeder.refresh(true, None);
        assert_eq!(metrics.map_writes.get(), 1);
        *zone.0.write().unwrap() = Some(A::new(10, 0, 0, 2));
        feeder.refresh(true, None);
        assert_eq!(metrics.map_writes.get(), 2);
        *zone.0.write().unwrap() = None;
        feeder.refresh(true, None);
        assert_eq!(metrics.map_writes.get(), 3);
    }

    #[test]
    fn answers_older_than_the_last_rederivation_are_ignored() {
        let (feeder, sink, zone, _) = setup(8);
        feeder.refresh(true, Some(5));
        let name = Name::from_ascii("a.cluster.local.").unwrap();
        let ZoneLookup::Answer(a) = zone.lookup(&LowerName::new(&name), RecordType::A) else {
            unreachable!()
        };
        feeder.cluster_answer(&name, RecordType::A, &a, 4);
        assert!(
            sink.is_empty(),
            "looked up before generation 5: not installed"
        );
        feeder.cluster_answer(&name, RecordType::A, &a, 5);
        assert_eq!(sink.len(), 1);
    }

    #[test]
    fn a_hot_answer_is_promoted_again_at_once_after_expiry() {
        let (feeder, sink, _zone, metrics) = setup(8);
        let name = Name::from_ascii("popular.example.").unwrap();
        let answer = |stored: Instant| CachedAnswer {
            rcode: ResponseCode::NoError,
            answers: vec![Record::from_rdata(
                name.clone(),
                30,
                RData::A(A::new(192, 0, 2, 1)),
            )],
            authority: vec![],
            additionals: vec![],
            ttl: 30,
            stored,
            bytes: 0,
            hits: Default::default(),
        };
        let first = answer(Instant::now());
        feeder.upstream_answer(&name, RecordType::A, &first); // threshold 1: not yet
        assert!(sink.is_empty());
        feeder.upstream_answer(&name, RecordType::A, &first);
        assert_eq!(sink.len(), 1);
        // The kernel entry expired and was withdrawn; the next answer is the
        // first userspace sees, and it goes straight back in.
        feeder.forget(&(LowerName::new(&name), RecordType::A));
        assert!(sink.is_empty());
        feeder.upstream_answer(&name, RecordType::A, &answer(Instant::now()));
        assert_eq!(sink.len(), 1);
        assert_eq!(metrics.map_writes.get(), 2);
    }

    #[test]
    fn lru_entry_is_evicted_when_full() {
        let (feeder, sink, zone, metrics) = setup(2);
        ask(&feeder, &zone, "a.cluster.local.");
        ask(&feeder, &zone, "b.cluster.local.");
        ask(&feeder, &zone, "a.cluster.local."); // a is now more recent than b
        ask(&feeder, &zone, "c.cluster.local.");
        let key = |n: &str| key_for(&Name::from_ascii(n).unwrap(), RecordType::A).unwrap();
        assert!(sink.get(&key("a.cluster.local.")).is_some());
        assert!(sink.get(&key("b.cluster.local.")).is_none());
        assert!(sink.get(&key("c.cluster.local.")).is_some());
        assert_eq!(metrics.map_evictions.get(), 1);
        assert_eq!(feeder.installed(), 2);
    }
}

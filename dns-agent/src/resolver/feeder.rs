//! Promotes answers into the kernel map (the `AnswerSink`): every cluster-zone
//! answer the resolver gives, and upstream answers once they are hot. Keeps
//! cluster entries in step with the zone and the map within its capacity.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
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
    last_used: u64,
    expires: Instant,
    /// For upstream entries: when the cached answer was stored, so the same
    /// answer is not written twice.
    stored: Option<Instant>,
}

struct State {
    hot: HashMap<Key, (u32, Instant)>,
    installed: HashMap<Key, Installed>,
    tick: u64,
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

impl Feeder {
    pub fn new(
        cfg: FeederConfig,
        sink: Arc<dyn AnswerSink>,
        zone: Arc<dyn Zone>,
        metrics: Arc<ResolverMetrics>,
    ) -> Self {
        metrics.map_capacity.set(sink.capacity() as i64);
        let state = State {
            hot: HashMap::new(),
            installed: HashMap::new(),
            tick: 0,
        };
        // Start generations from the clock so a restarted agent never reuses
        // the generation of an entry its predecessor left in a pinned map.
        let generation = AtomicU64::new(boot_time_ns());
        Self {
            cfg,
            sink,
            zone,
            state: Mutex::new(state),
            generation,
            metrics,
        }
    }

    /// A cluster-zone answer was given: make sure the kernel has it.
    pub fn cluster_answer(&self, qname: &Name, qtype: RecordType, answer: &AuthAnswer) {
        let key = (LowerName::new(qname), qtype);
        let now = Instant::now();
        {
            let mut state = self.state.lock().unwrap();
            state.tick += 1;
            let tick = state.tick;
            if let Some(inst) = state.installed.get_mut(&key) {
                // Renewed by the background loop; rewriting on every query
                // would only churn the map.
                if inst.origin == Origin::Cluster
                    && inst.expires > now + self.cfg.cluster_lifetime / 2
                {
                    inst.last_used = tick;
                    return;
                }
            }
        }
        self.install_cluster(&key, answer);
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
            state.tick += 1;
            let tick = state.tick;
            if let Some(inst) = state.installed.get_mut(&key)
                && inst.stored == Some(answer.stored)
            {
                inst.last_used = tick;
                return;
            }
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
            if now.duration_since(*start) >= self.cfg.hot_window {
                *count = 0;
                *start = now;
            }
            *count += 1;
            if *count <= self.cfg.hot_threshold {
                return;
            }
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
        self.install(&key, Origin::Upstream, Some(answer.stored), &parts);
    }

    fn install_cluster(&self, key: &Key, answer: &AuthAnswer) {
        let parts = Parts {
            rcode: answer.rcode,
            authoritative: true,
            answers: &answer.answers,
            authority: &answer.authority,
            additionals: &answer.additionals,
            max_ttl: min_ttl(answer),
            lifetime: self.cfg.cluster_lifetime,
        };
        self.install(key, Origin::Cluster, None, &parts);
    }

    fn install(&self, key: &Key, origin: Origin, stored: Option<Instant>, parts: &Parts<'_>) {
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
                state.tick += 1;
                let inst = Installed {
                    origin,
                    map_key,
                    last_used: state.tick,
                    expires: Instant::now() + parts.lifetime,
                    stored,
                };
                state.installed.insert(key.clone(), inst);
            }
            Err(e) => {
                tracing::warn!(name = %qname, error = %e, "could not write the kernel answers map");
                self.metrics.map_write_errors.inc();
            }
        }
        self.metrics.map_entries.set(state.installed.len() as i64);
    }

    /// Drops the least recently used entry (a linear scan: the map holds at
    /// most a few tens of thousands of entries and eviction is rare).
    fn evict_lru(&self, state: &mut State) {
        let victim = state
            .installed
            .iter()
            .min_by_key(|(_, i)| i.last_used)
            .map(|(k, _)| k.clone());
        if let Some(victim) = victim {
            let inst = state
                .installed
                .remove(&victim)
                .expect("victim is installed");
            if let Err(e) = self.sink.delete(&inst.map_key) {
                tracing::warn!(error = %e, "could not delete an evicted kernel map entry");
            }
            self.metrics.map_evictions.inc();
        }
    }

    fn forget(&self, key: &Key) {
        let mut state = self.state.lock().unwrap();
        if let Some(inst) = state.installed.remove(key) {
            let _ = self.sink.delete(&inst.map_key);
        }
        self.metrics.map_entries.set(state.installed.len() as i64);
    }

    /// Re-derives cluster entries from the zone: all of them when `all`,
    /// else only those due for renewal. Also drops expired upstream entries.
    fn refresh(&self, all: bool) {
        let now = Instant::now();
        let renew_before = now + self.cfg.cluster_lifetime / 2;
        let (cluster, expired): (Vec<Key>, Vec<Key>) = {
            let state = self.state.lock().unwrap();
            let cluster = state
                .installed
                .iter()
                .filter(|(_, i)| i.origin == Origin::Cluster && (all || i.expires < renew_before))
                .map(|(k, _)| k.clone())
                .collect();
            let expired = state
                .installed
                .iter()
                .filter(|(_, i)| i.origin == Origin::Upstream && i.expires <= now)
                .map(|(k, _)| k.clone())
                .collect();
            (cluster, expired)
        };
        for key in expired {
            self.forget(&key);
        }
        for key in cluster {
            match self.zone.lookup(&key.0, key.1) {
                ZoneLookup::Answer(answer) => self.install_cluster(&key, &answer),
                // Left the zone or the zone lost its sync: userspace decides.
                ZoneLookup::NotOurs | ZoneLookup::NotReady => self.forget(&key),
            }
        }
    }

    /// Follows zone changes (re-deriving every cluster entry at once) and
    /// renews entries before they expire, until cancelled.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        let mut changes = self.zone.changes();
        let mut renew =
            tokio::time::interval((self.cfg.cluster_lifetime / 4).max(Duration::from_secs(1)));
        renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                changed = changes.changed() => {
                    if changed.is_err() {
                        // The zone went away; keep renewing what we have.
                        changes = self.zone.changes();
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                    changes.borrow_and_update();
                    self.refresh(true);
                }
                _ = renew.tick() => self.refresh(false),
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

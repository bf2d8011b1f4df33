//! What promotion tracks: the upstream questions it counts towards "hot",
//! the entries it put in the kernel map in use order (asked in userspace or
//! sampled hit in the kernel), and how often each question is asked
//! (docs/design.md#admission-and-eviction).

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use dns_common::AnswerKey;
use dns_common::hash::key_hash;
use hickory_proto::rr::{LowerName, RecordType};

use super::admission::FrequencySketch;

/// A question: the key of every table here.
pub(super) type Key = (LowerName, RecordType);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Origin {
    Cluster,
    Upstream,
    /// A cluster answer completed through the forwarder: it lives as long as
    /// its shortest TTL, and only while the zone still gives the alias with
    /// this hash ([`crate::promotion::policy::alias_hash`]).
    Chased(u64),
}

pub(super) struct Installed {
    pub(super) origin: Origin,
    pub(super) map_key: AnswerKey,
    /// Position in `State::lru`.
    pub(super) last_used: u64,
    pub(super) expires: Instant,
    /// Hash of what the entry says (rcode, records), so an unchanged answer
    /// is not rewritten on every zone change.
    pub(super) content: u64,
    /// When a sample of the kernel's hits last named this entry.
    pub(super) last_hit: Option<Instant>,
}

impl Installed {
    /// The hash the kernel samples its hits by (`AnswerEntry::key_hash`).
    pub(super) fn kernel_hash(&self) -> u64 {
        let k = &self.map_key;
        key_hash(
            &k.name[..usize::from(k.name_len).min(k.name.len())],
            k.qtype,
        )
    }
}

pub(super) struct State {
    pub(super) hot: HashMap<Key, (u32, Instant)>,
    pub(super) installed: HashMap<Key, Installed>,
    /// Use order: the smallest tick is the least recently used key.
    pub(super) lru: BTreeMap<u64, Key>,
    pub(super) tick: u64,
    /// Installed keys by [`Installed::kernel_hash`], to name sampled hits.
    pub(super) by_hash: HashMap<u64, Key>,
    /// How often each question was asked or hit (admission when full).
    pub(super) sketch: FrequencySketch,
    /// When the kernel's hit samples were last read.
    pub(super) hits_read: Option<Instant>,
    /// The zone generation the last full re-derivation started from. A
    /// query's answer looked up at an older generation may predate it and
    /// must not overwrite what the re-derivation wrote.
    pub(super) zone_generation: u64,
    /// Failed map writes, logged when they start, summarised while they
    /// go on, and when a write works again.
    pub(super) write_errors: crate::logging::repeated::Repeated,
}

impl State {
    /// Empty, with a frequency sketch sized for a map of `capacity` entries.
    pub(super) fn new(capacity: u32) -> Self {
        Self {
            hot: HashMap::new(),
            installed: HashMap::new(),
            lru: BTreeMap::new(),
            tick: 0,
            by_hash: HashMap::new(),
            sketch: FrequencySketch::new(capacity),
            hits_read: None,
            zone_generation: 0,
            write_errors: Default::default(),
        }
    }

    /// Marks `key` used; false when it is not installed.
    pub(super) fn touch(&mut self, key: &Key) -> bool {
        let Some(inst) = self.installed.get_mut(key) else {
            return false;
        };
        self.lru.remove(&inst.last_used);
        self.tick += 1;
        inst.last_used = self.tick;
        self.lru.insert(self.tick, key.clone());
        true
    }

    pub(super) fn remove(&mut self, key: &Key) -> Option<Installed> {
        let inst = self.installed.remove(key)?;
        self.lru.remove(&inst.last_used);
        let hash = inst.kernel_hash();
        if self.by_hash.get(&hash) == Some(key) {
            self.by_hash.remove(&hash);
        }
        Some(inst)
    }

    /// Installs `key`; a key already installed (rewritten by a zone change
    /// or a renewal) keeps its place in the use order and its last hit.
    pub(super) fn insert(&mut self, key: Key, mut inst: Installed) {
        match self.remove(&key) {
            Some(old) => {
                inst.last_used = old.last_used;
                inst.last_hit = old.last_hit;
            }
            None => {
                self.tick += 1;
                inst.last_used = self.tick;
            }
        }
        self.lru.insert(inst.last_used, key.clone());
        self.by_hash.insert(inst.kernel_hash(), key.clone());
        self.installed.insert(key, inst);
    }
}

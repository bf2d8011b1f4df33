//! What promotion tracks: the upstream questions it counts towards "hot",
//! and the entries it put in the kernel map, in use order (the least
//! recently used is evicted first when the map is full).

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use dns_common::AnswerKey;
use hickory_proto::rr::{LowerName, RecordType};

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
}

#[derive(Default)]
pub(super) struct State {
    pub(super) hot: HashMap<Key, (u32, Instant)>,
    pub(super) installed: HashMap<Key, Installed>,
    /// Use order: the smallest tick is the least recently used key.
    pub(super) lru: BTreeMap<u64, Key>,
    pub(super) tick: u64,
    /// The zone generation the last full re-derivation started from. A
    /// query's answer looked up at an older generation may predate it and
    /// must not overwrite what the re-derivation wrote.
    pub(super) zone_generation: u64,
    /// Failed map writes, logged when they start, summarised while they
    /// go on, and when a write works again.
    pub(super) write_errors: crate::logging::repeated::Repeated,
}

impl State {
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
        Some(inst)
    }

    pub(super) fn insert(&mut self, key: Key, mut inst: Installed) {
        self.remove(&key);
        self.tick += 1;
        inst.last_used = self.tick;
        self.lru.insert(self.tick, key.clone());
        self.installed.insert(key, inst);
    }
}

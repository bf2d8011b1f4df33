//! The kernel answers as the XDP program reads them: an index (question key
//! hash -> slot) over an array of answer slots, and the write protocol that
//! keeps every slot the program may be reading unchanged
//! (docs/design.md#torn-reads):
//!
//! 1. a new or changed answer goes into a free slot, which no index entry
//!    names;
//! 2. then one index update points the question at it;
//! 3. the slot it replaces (or a deleted question's slot) cools for
//!    [`SLOT_GRACE_NS`], far longer than any program run, before it is
//!    written again.
//!
//! Each agent writes only its half of the array, which it holds an
//! exclusive lock on for its whole life (`fastpath::loader`): during a
//! hand-over the previous agent, still running, writes the other half, so
//! the two never write a slot the other may have published.

use std::borrow::{Borrow, BorrowMut};
use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

use aya::maps::{Array, HashMap, MapData, MapError};
use dns_common::hash::key_hash;
use dns_common::{AnswerEntry, AnswerKey, AnswerSlot, IndexValue, SLOT_GRACE_NS};

/// Index update flag: create or replace.
const BPF_ANY: u64 = 0;

/// Why a write did not happen.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("the answers index is full")]
    Full,
    #[error(
        "every answer slot is in use or cooling down after a rewrite ({slots} slots); \
         the question goes to userspace until its next write"
    )]
    NoFreeSlot { slots: u32 },
    #[error("another question has the same key hash")]
    Collision,
    #[error("{0}")]
    Map(MapError),
}

impl TableError {
    fn map(e: MapError) -> Self {
        match errno(&e) {
            // A full hash map answers E2BIG; a non-preallocated one ENOMEM.
            Some(libc::E2BIG | libc::ENOMEM) => Self::Full,
            _ => Self::Map(e),
        }
    }
}

fn errno(e: &MapError) -> Option<i32> {
    match e {
        MapError::SyscallError(s) => s.io_error.raw_os_error(),
        _ => None,
    }
}

/// The key hash of `key`: the index key, and what the kernel samples hits by.
pub fn hash_of(key: &AnswerKey) -> u64 {
    let len = usize::from(key.name_len).min(key.name.len());
    key_hash(&key.name[..len], key.qtype)
}

/// The slots of `half` (0 or 1) of an array of `len` slots.
pub fn half_range(len: u32, half: u8) -> std::ops::Range<u32> {
    let per = len / 2;
    let start = per * u32::from(half & 1);
    start..start + per
}

/// Reads the (key, entry) a published index value names, if the slot holds
/// the question hashed to `hash`.
pub fn read_slot<T: Borrow<MapData>>(
    slots: &Array<T, AnswerSlot>,
    hash: u64,
    value: IndexValue,
) -> Option<AnswerSlot> {
    let slot = slots.get(&value.slot()?, 0).ok()?;
    (slot.entry.key_hash == hash && hash_of(&slot.key) == hash).then_some(slot)
}

/// Every (key, entry) the index names, at most `limit` of them; walks the
/// index once (a key deleted under the walk restarts it, so keys seen
/// before are skipped and the steps are bounded).
pub fn published<T: Borrow<MapData>>(
    index: &HashMap<T, u64, IndexValue>,
    slots: &Array<T, AnswerSlot>,
    limit: usize,
) -> Vec<AnswerSlot> {
    let mut seen = HashSet::with_capacity(limit.min(4096));
    let mut out = Vec::new();
    for item in index.iter().take(limit.saturating_mul(2)) {
        let Ok((hash, value)) = item else {
            break;
        };
        if !seen.insert(hash) {
            continue;
        }
        if let Some(slot) = read_slot(slots, hash, value) {
            out.push(slot);
            if out.len() >= limit {
                break;
            }
        }
    }
    out
}

/// The writer's side of the index and the slots.
pub struct AnswerTable<T> {
    index: HashMap<T, u64, IndexValue>,
    slots: Array<T, AnswerSlot>,
    capacity: u32,
    mine: std::ops::Range<u32>,
    /// Slots of this half no index entry names, ready to be written.
    free: Vec<u32>,
    /// Slots taken out of the index, and when: free once the grace period
    /// has passed.
    cooling: VecDeque<(Instant, u32)>,
    grace: Duration,
}

impl<T: Borrow<MapData> + BorrowMut<MapData>> AnswerTable<T> {
    /// Takes over the index and slots as they are, writing `half` (0 or 1)
    /// of the slots: those the index does not name are free. The caller
    /// makes sure no other writer took one of them out within the grace
    /// period (`FastPath::open_answers` waits it out after taking the
    /// half's lock). Slots of the half the index names stay out of use
    /// until this writer itself takes them out of the index.
    pub fn open(
        index: HashMap<T, u64, IndexValue>,
        slots: Array<T, AnswerSlot>,
        capacity: u32,
        half: u8,
    ) -> Self {
        let mine = half_range(slots.len(), half);
        let named: HashSet<u32> = index
            .iter()
            .take((capacity as usize).saturating_mul(2))
            .filter_map(Result::ok)
            .filter_map(|(_, v)| v.slot())
            .collect();
        // Popped from the end: the lowest slots first.
        let free = mine.clone().rev().filter(|s| !named.contains(s)).collect();
        Self {
            index,
            slots,
            capacity,
            mine,
            free,
            cooling: VecDeque::new(),
            grace: Duration::from_nanos(SLOT_GRACE_NS),
        }
    }

    /// For maps no one else writes (tests): the first half.
    pub fn fresh(
        index: HashMap<T, u64, IndexValue>,
        slots: Array<T, AnswerSlot>,
        capacity: u32,
    ) -> Self {
        Self::open(index, slots, capacity, 0)
    }

    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    /// The maps themselves, bypassing the protocol: for tests that must
    /// write what the agent never would (a slot under another question's
    /// hash, a corrupt entry).
    pub fn maps_mut(&mut self) -> (&mut HashMap<T, u64, IndexValue>, &mut Array<T, AnswerSlot>) {
        (&mut self.index, &mut self.slots)
    }

    /// A slot to write: a free one, else one whose grace period is over.
    fn take_slot(&mut self) -> Option<u32> {
        if let Some(s) = self.free.pop() {
            return Some(s);
        }
        match self.cooling.front() {
            Some(&(since, s)) if since.elapsed() >= self.grace => {
                self.cooling.pop_front();
                Some(s)
            }
            _ => None,
        }
    }

    /// A slot no longer named by the index: this writer's own cool down
    /// before reuse; the other half's are its writer's.
    fn retire(&mut self, slot: u32) {
        if self.mine.contains(&slot) {
            self.cooling.push_back((Instant::now(), slot));
        }
    }

    /// The published index value of `hash`, if any.
    fn current(&self, hash: u64) -> Option<IndexValue> {
        self.index.get(&hash, 0).ok()
    }

    /// Whether the slot `value` names holds `key` (else another question
    /// shares the hash, or the value is not whole).
    fn holds(&self, hash: u64, value: IndexValue, key: &AnswerKey) -> bool {
        read_slot(&self.slots, hash, value).is_some_and(|s| s.key == *key)
    }

    /// Publishes `entry` for `key`: a fresh slot, then the index.
    pub fn put(&mut self, key: &AnswerKey, entry: &AnswerEntry) -> Result<(), TableError> {
        let hash = hash_of(key);
        let old = self.current(hash);
        if let Some(v) = old
            && !self.holds(hash, v, key)
            && read_slot(&self.slots, hash, v).is_some()
        {
            return Err(TableError::Collision);
        }
        let Some(slot) = self.take_slot() else {
            // The old answer must not outlive a failed rewrite.
            if old.is_some() {
                self.delete(key)?;
            }
            return Err(TableError::NoFreeSlot {
                slots: self.mine.len() as u32,
            });
        };
        let mut value = AnswerSlot::zeroed();
        value.key = *key;
        value.entry = *entry;
        // The slot is published under this hash, whatever the entry says.
        value.entry.key_hash = hash;
        if let Err(e) = self.slots.set(slot, value, 0) {
            self.free.push(slot); // never published
            return Err(TableError::map(e));
        }
        if let Err(e) = self.index.insert(hash, IndexValue::new(slot), BPF_ANY) {
            self.free.push(slot);
            return Err(TableError::map(e));
        }
        if let Some(s) = old.and_then(IndexValue::slot) {
            self.retire(s);
        }
        Ok(())
    }

    /// Takes `key` out of the index; its slot cools. Not there (or another
    /// question's) is not an error.
    pub fn delete(&mut self, key: &AnswerKey) -> Result<(), TableError> {
        let hash = hash_of(key);
        let Some(v) = self.current(hash) else {
            return Ok(());
        };
        if !self.holds(hash, v, key) && v.slot().is_some() {
            return Ok(());
        }
        match self.index.remove(&hash) {
            Ok(()) => {}
            Err(e) if errno(&e) == Some(libc::ENOENT) => return Ok(()),
            Err(e) => return Err(TableError::Map(e)),
        }
        if let Some(s) = v.slot() {
            self.retire(s);
        }
        Ok(())
    }

    /// The entry published for `key`.
    pub fn read(&self, key: &AnswerKey) -> Option<AnswerEntry> {
        let hash = hash_of(key);
        let slot = read_slot(&self.slots, hash, self.current(hash)?)?;
        (slot.key == *key).then_some(slot.entry)
    }

    /// The questions published, each once, at most `capacity`.
    pub fn keys(&self) -> Vec<AnswerKey> {
        published(&self.index, &self.slots, self.capacity as usize)
            .into_iter()
            .map(|s| s.key)
            .collect()
    }
}

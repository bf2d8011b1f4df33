//! How often each question is asked, for admission to a full kernel map
//! (docs/design.md#admission-and-eviction): a TinyLFU-style frequency
//! sketch of the questions userspace sees and of the kernel's sampled hits.
//!
//! - A doorkeeper (a small Bloom filter) takes each question's first
//!   sighting, so a flood of names asked once never reaches the counters.
//! - A count-min sketch of 4-bit counters (four rows) counts the sightings
//!   after the first; a question's estimate is its smallest counter, plus
//!   one when the doorkeeper knows it.
//! - Aging: after `10 × capacity` additions every counter is halved and the
//!   doorkeeper cleared (also when the doorkeeper is half full), so old
//!   popularity fades and a name must keep being asked to stay "frequent".
//!
//! Memory is fixed at construction: 2 bytes of counters and 4 bytes of
//! doorkeeper bits per map entry (the capacity rounded up to a power of
//! two, at least 64): 96 KiB at the default 16384 entries, 1.5 MiB at the
//! largest map. Hashes are keyed per process, so names cannot be
//! chosen offline to collide with a hot one.

use std::hash::{BuildHasher, Hash, RandomState};

/// Counters per 64-bit word.
const PER_WORD: usize = 16;
/// The largest a 4-bit counter holds.
const MAX_COUNT: u64 = 15;
/// Rows of the sketch (independent hash functions).
const ROWS: usize = 4;
/// Additions between agings, per map entry (TinyLFU's sample size).
const SAMPLE_PER_ENTRY: u64 = 10;
/// Doorkeeper bits per map entry.
const DOOR_BITS_PER_ENTRY: usize = 32;
/// Hash functions of the doorkeeper.
const DOOR_HASHES: usize = 3;

pub(super) struct FrequencySketch {
    /// `ROWS` rows of `width` 4-bit counters, row after row.
    table: Vec<u64>,
    /// Counters per row (a power of two).
    width: usize,
    door: Vec<u64>,
    /// Bits set in `door`.
    door_set: usize,
    additions: u64,
    sample_size: u64,
    hasher: RandomState,
    /// Times the sketch was halved.
    pub(super) agings: u64,
}

impl FrequencySketch {
    /// A sketch for a map of `capacity` entries.
    pub(super) fn new(capacity: u32) -> Self {
        let capacity = (capacity as usize).max(64);
        let width = capacity.next_power_of_two();
        let door_bits = (capacity * DOOR_BITS_PER_ENTRY).next_power_of_two();
        Self {
            table: vec![0; ROWS * width / PER_WORD],
            width,
            door: vec![0; door_bits / 64],
            door_set: 0,
            additions: 0,
            sample_size: SAMPLE_PER_ENTRY * capacity as u64,
            hasher: RandomState::new(),
            agings: 0,
        }
    }

    /// The hash every other call takes: computed once per question.
    pub(super) fn hash<K: Hash>(&self, key: &K) -> u64 {
        self.hasher.hash_one(key)
    }

    /// Bytes the sketch holds.
    pub(super) fn bytes(&self) -> usize {
        (self.table.len() + self.door.len()) * 8
    }

    /// One more sighting of the question hashed to `hash`; true when
    /// that aged the sketch.
    pub(super) fn record(&mut self, hash: u64) -> bool {
        self.add(hash, 1)
    }

    /// `weight` more sightings at once (a kernel hit sample stands for
    /// several hits); the first goes to the doorkeeper if it is new. True
    /// when that aged the sketch.
    pub(super) fn add(&mut self, hash: u64, weight: u64) -> bool {
        let mut weight = weight;
        if weight == 0 {
            return false;
        }
        if self.door_insert(hash) {
            weight -= 1;
        }
        if weight > 0 {
            for row in 0..ROWS {
                let (word, shift) = self.slot(hash, row);
                let count = (self.table[word] >> shift) & MAX_COUNT;
                let new = (count + weight).min(MAX_COUNT);
                self.table[word] = (self.table[word] & !(MAX_COUNT << shift)) | (new << shift);
            }
        }
        self.additions += 1;
        let due = self.additions >= self.sample_size || self.door_set * 2 >= self.door.len() * 64;
        if due {
            self.age();
        }
        due
    }

    /// Estimated sightings of the question hashed to `hash` since it last
    /// aged away (at most 16).
    pub(super) fn estimate(&self, hash: u64) -> u64 {
        let counted = (0..ROWS)
            .map(|row| {
                let (word, shift) = self.slot(hash, row);
                (self.table[word] >> shift) & MAX_COUNT
            })
            .min()
            .unwrap_or(0);
        counted + u64::from(self.door_contains(hash))
    }

    /// Halves every counter and clears the doorkeeper.
    fn age(&mut self) {
        for w in &mut self.table {
            *w = (*w >> 1) & 0x7777_7777_7777_7777;
        }
        self.door.fill(0);
        self.door_set = 0;
        self.additions /= 2;
        self.agings += 1;
    }

    /// Word and bit shift of `hash`'s counter in `row`.
    fn slot(&self, hash: u64, row: usize) -> (usize, u32) {
        // Each row its own odd multiplier: independent-enough indexes from
        // one keyed hash.
        const SEEDS: [u64; ROWS] = [
            0x9E37_79B9_7F4A_7C15,
            0xC2B2_AE3D_27D4_EB4F,
            0x1656_67B1_9E37_79F9,
            0xD6E8_FEB8_6659_FD93,
        ];
        let h = hash.wrapping_mul(SEEDS[row]);
        let index = (h >> 32) as usize & (self.width - 1);
        let counter = row * self.width + index;
        (counter / PER_WORD, ((counter % PER_WORD) * 4) as u32)
    }

    /// Word and bit of each of the doorkeeper's hashes of `hash`.
    fn door_bits(&self, hash: u64) -> [(usize, u64); DOOR_HASHES] {
        let mask = self.door.len() * 64 - 1;
        let (h1, h2) = (hash, hash.rotate_left(32) | 1);
        std::array::from_fn(|i| {
            let bit = h1.wrapping_add((i as u64).wrapping_mul(h2)) as usize & mask;
            (bit / 64, 1u64 << (bit % 64))
        })
    }

    fn door_contains(&self, hash: u64) -> bool {
        self.door_bits(hash)
            .iter()
            .all(|&(w, b)| self.door[w] & b != 0)
    }

    /// True when the question was new to the doorkeeper.
    fn door_insert(&mut self, hash: u64) -> bool {
        let mut new = false;
        for (w, b) in self.door_bits(hash) {
            if self.door[w] & b == 0 {
                self.door[w] |= b;
                self.door_set += 1;
                new = true;
            }
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_sighting_is_one_and_repeats_count_up_to_sixteen() {
        let mut s = FrequencySketch::new(1024);
        let h = s.hash(&"a.cluster.local.");
        assert_eq!(s.estimate(h), 0);
        s.record(h);
        assert_eq!(s.estimate(h), 1);
        s.record(h);
        assert_eq!(s.estimate(h), 2);
        for _ in 0..40 {
            s.record(h);
        }
        assert_eq!(s.estimate(h), MAX_COUNT + 1);
    }

    #[test]
    fn a_flood_of_names_asked_once_does_not_make_any_name_frequent() {
        let capacity = 256;
        let mut s = FrequencySketch::new(capacity);
        let hot = s.hash(&"hot");
        for _ in 0..8 {
            s.record(hot);
        }
        let mut above_one = 0;
        for i in 0..300_000u32 {
            let h = s.hash(&i);
            s.record(h);
            if s.estimate(h) > 1 {
                above_one += 1;
            }
            if i % 1000 == 0 {
                // Kept warm by the hits it keeps getting.
                s.record(hot);
            }
        }
        assert!(
            above_one < 300_000 / 50,
            "{above_one} once-asked names looked repeated"
        );
        assert!(s.estimate(hot) >= 1);
        assert!(s.agings > 0, "the flood aged the sketch");
    }

    #[test]
    fn aging_halves_the_counts() {
        let mut s = FrequencySketch::new(64);
        let h = s.hash(&"x");
        for _ in 0..9 {
            s.record(h);
        }
        assert_eq!(s.estimate(h), 9);
        s.age();
        assert_eq!(s.estimate(h), 4, "8 counted, halved; doorkeeper cleared");
    }

    #[test]
    fn memory_is_bounded_by_the_capacity() {
        let s = FrequencySketch::new(16_384);
        assert_eq!(s.bytes(), 16_384 * 2 + 16_384 * 4);
        assert_eq!(FrequencySketch::new(1).bytes(), 64 * 6);
    }
}

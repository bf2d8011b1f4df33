//! The sampled top list of kernel hits (`MAP_HOT_SAMPLES`), for
//! `dns-agent inspect`: which entries the kernel serves most.
//!
//! Per-entry hit counts would have every CPU write into the shared answers
//! map on every hit, and a hot entry's cache line would bounce between CPUs.
//! Instead, one answer of a kind in each block of [`HOT_SAMPLE_EVERY`] (by
//! the per-CPU answer counter of its family, type, rcode and AA, which the
//! program increments anyway; see [`sampled`]) writes the question's key
//! hash into a per-CPU ring:
//! one branch per hit, and a write to CPU-local memory on one hit in
//! [`HOT_SAMPLE_EVERY`]. The agent tallies the rings and finds each hash's
//! entry by its `key_hash`.
//!
//! Layout of each CPU's array: slot [`HOT_CURSOR`] counts the samples that
//! CPU took; slot `1 + n % HOT_RING` holds the `n`-th sample's hash (0: no
//! sample yet).

/// One answer of a kind in this many is sampled (a power of two).
pub const HOT_SAMPLE_EVERY: u64 = 16;
/// Samples each CPU keeps: the ring covers its last
/// `HOT_RING * HOT_SAMPLE_EVERY` hits (a power of two).
pub const HOT_RING: u32 = 512;
/// The slot of each CPU's sample count.
pub const HOT_CURSOR: u32 = 0;
/// Slots in the map: the cursor and the ring.
pub const HOT_SLOTS: u32 = HOT_RING + 1;

/// Whether the `count`-th answer of its kind (the counter's value after the
/// increment) is sampled: exactly one in each block of [`HOT_SAMPLE_EVERY`]
/// counts, at a position within the block drawn from the block number by
/// a fixed mixer, rather than always the last (`count % 16 == 0`). Clients
/// that ask a fixed list of names in turn would otherwise have every
/// sample fall on the same few names (for a list of 8 or 16 names, always
/// the same one), and the others would never be sampled, which admission
/// to a full map relies on (docs/design.md#admission-and-eviction). A few
/// multiplies, shifts and xors: no helper call, no branch for the verifier.
#[inline(always)]
pub const fn sampled(count: u64) -> bool {
    let shift = HOT_SAMPLE_EVERY.trailing_zeros();
    let mut z = (count >> shift).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z ^= z >> 32;
    z = z.wrapping_mul(0xD6E8_FEB8_6659_FD93);
    z ^= z >> 32;
    count & (HOT_SAMPLE_EVERY - 1) == z >> (64 - shift)
}

/// The ring slot of the sample numbered `cursor` (the cursor's value
/// before the increment).
#[inline(always)]
pub const fn ring_slot(cursor: u64) -> u32 {
    1 + (cursor as u32 & (HOT_RING - 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client asking `names` names in turn: every name is sampled about
    /// one in HOT_SAMPLE_EVERY of its answers, whatever the list's length.
    #[test]
    fn names_asked_in_turn_are_all_sampled() {
        for names in [1u64, 2, 7, 8, 16, 17, 32, 100] {
            let rounds = 4_000;
            for name in 0..names {
                let hits = (0..rounds)
                    .filter(|r| sampled(1 + name + r * names))
                    .count() as u64;
                let want = rounds / HOT_SAMPLE_EVERY;
                assert!(
                    hits.abs_diff(want) <= want / 3,
                    "{names} names in turn: name {name} sampled {hits} times, want about {want}"
                );
            }
        }
    }

    #[test]
    fn sampling_and_ring_stay_in_bounds() {
        assert!(HOT_SAMPLE_EVERY.is_power_of_two() && HOT_RING.is_power_of_two());
        // Exactly one per block.
        for block in 0..1_000u64 {
            let start = block * HOT_SAMPLE_EVERY;
            let taken = (start..start + HOT_SAMPLE_EVERY).filter(|&c| sampled(c));
            assert_eq!(taken.count(), 1, "block {block}");
        }
        assert_eq!(ring_slot(0), 1);
        assert_eq!(ring_slot(HOT_RING as u64 - 1), HOT_RING);
        assert_eq!(ring_slot(HOT_RING as u64), 1);
        assert!(
            (0..3 * HOT_RING as u64)
                .all(|c| ring_slot(c) < HOT_SLOTS && ring_slot(c) != HOT_CURSOR)
        );
    }
}

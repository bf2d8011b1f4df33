//! The sampled top list of kernel hits (`MAP_HOT_SAMPLES`), for
//! `dns-agent inspect`: which entries the kernel serves most.
//!
//! Per-entry hit counts would have every CPU write into the shared answers
//! map on every hit, and a hot entry's cache line would bounce between CPUs.
//! Instead, every [`HOT_SAMPLE_EVERY`]-th answer of a kind (the per-CPU
//! answer counter of its family, type, rcode and AA, which the program
//! increments anyway) writes the question's key hash into a per-CPU ring:
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
/// increment) is sampled.
#[inline(always)]
pub const fn sampled(count: u64) -> bool {
    count & (HOT_SAMPLE_EVERY - 1) == 0
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

    #[test]
    fn sampling_and_ring_stay_in_bounds() {
        assert!(HOT_SAMPLE_EVERY.is_power_of_two() && HOT_RING.is_power_of_two());
        assert_eq!(
            (1..=64).filter(|&n| sampled(n)).count() as u64,
            64 / HOT_SAMPLE_EVERY
        );
        assert_eq!(ring_slot(0), 1);
        assert_eq!(ring_slot(HOT_RING as u64 - 1), HOT_RING);
        assert_eq!(ring_slot(HOT_RING as u64), 1);
        assert!(
            (0..3 * HOT_RING as u64)
                .all(|c| ring_slot(c) < HOT_SLOTS && ring_slot(c) != HOT_CURSOR)
        );
    }
}

//! Internet checksum arithmetic (RFC 1071). Sums are kept "big-endian
//! space": a 16-bit word is `(first byte << 8) | second byte`.

/// Folds a running sum (below 2^48) to 16 bits. Branch-free on purpose:
/// `dns_common::hash::fold` loops while the sum is large, and a loop bound
/// by a value makes the verifier track that value exactly, one state per
/// possible sum.
#[inline(always)]
pub fn fold(sum: u64) -> u16 {
    let s = (sum & 0xffff_ffff) + (sum >> 32);
    let s = (s & 0xffff) + (s >> 16);
    let s = (s & 0xffff) + (s >> 16);
    let s = (s & 0xffff) + (s >> 16);
    s as u16
}

/// Folds and returns the 16-bit sum as if its bytes sat at an odd offset
/// (a ones' complement sum of byte-swapped words is the swapped sum).
#[inline(always)]
pub fn shift_odd(sum: u16, odd: bool) -> u16 {
    if odd { sum.swap_bytes() } else { sum }
}

/// Sum of the two 16-bit halves of a big-endian 32-bit field.
#[inline(always)]
pub fn word32(v: u32) -> u64 {
    ((v >> 16) + (v & 0xffff)) as u64
}

/// The final checksum field value for UDP: a computed zero is sent as
/// all ones (zero means "no checksum" for IPv4 and is illegal for IPv6).
#[inline(always)]
pub fn udp_finish(sum: u64) -> u16 {
    let c = !fold(sum);
    if c == 0 { 0xffff } else { c }
}

/// How much a checksummed sum changes when the 32-bit field `old` becomes
/// `new` (host order): `~old + new`, word by word (RFC 1624).
#[inline(always)]
pub fn replace_diff32(old: u32, new: u32) -> u64 {
    (0xffff - (old >> 16)) as u64
        + (0xffff - (old & 0xffff)) as u64
        + (new >> 16) as u64
        + (new & 0xffff) as u64
}

/// A checksum field (host order) after its data changed by `diff`: the
/// incremental update of RFC 1624, `~(~check + diff)`.
#[inline(always)]
pub fn update_full(check: u16, diff: u64) -> u16 {
    !fold(!check as u64 + diff)
}

/// The pseudo-header seed a `CHECKSUM_PARTIAL` frame carries in its
/// checksum field (the folded sum, not complemented), after the
/// pseudo-header changed by `diff`: the stack completes the checksum from
/// the seed later, so it must stay a seed (docs/design.md#checksums).
#[inline(always)]
pub fn update_seed(seed: u16, diff: u64) -> u16 {
    fold(seed as u64 + diff)
}

//! The two checks the agent computes when it writes an entry and the kernel
//! recomputes when it reads one. Both sides must agree byte for byte.

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// One FNV-1a step; the kernel folds name bytes in as it lower-cases them.
#[inline(always)]
pub const fn fnv1a_step(hash: u64, byte: u8) -> u64 {
    (hash ^ byte as u64).wrapping_mul(FNV_PRIME)
}

pub const fn fnv1a_init() -> u64 {
    FNV_OFFSET
}

/// Hash of a key: FNV-1a 64 over the lower-cased wire name (`name_len`
/// bytes), then the query type's two bytes, big-endian.
pub const fn key_hash(name: &[u8], qtype: u16) -> u64 {
    let mut h = FNV_OFFSET;
    let mut i = 0;
    while i < name.len() {
        h = fnv1a_step(h, name[i]);
        i += 1;
    }
    h = fnv1a_step(h, (qtype >> 8) as u8);
    fnv1a_step(h, qtype as u8)
}

/// Folds a 32-bit accumulator of 16-bit words to 16 bits (ones' complement).
#[inline(always)]
pub const fn fold(mut sum: u64) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// Ones' complement sum (not yet inverted) of `bytes` read as big-endian
/// 16-bit words, an odd last byte padded with zero: the Internet checksum's
/// running sum (RFC 1071).
pub const fn ones_sum(bytes: &[u8]) -> u16 {
    let mut sum: u64 = 0;
    let mut i = 0;
    while i + 1 < bytes.len() {
        sum += ((bytes[i] as u64) << 8) | bytes[i + 1] as u64;
        i += 2;
    }
    if i < bytes.len() {
        sum += (bytes[i] as u64) << 8;
    }
    fold(sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_matches_reference_vector() {
        // FNV-1a 64 of "a" is 0xaf63dc4c8601ec8c (reference test vector).
        assert_eq!(fnv1a_step(fnv1a_init(), b'a'), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn ones_sum_rfc1071_example() {
        // RFC 1071 section 3 example: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2.
        assert_eq!(
            ones_sum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            0xddf2
        );
    }

    #[test]
    fn key_hash_depends_on_type() {
        let name = b"\x03svc\x00";
        assert_ne!(key_hash(name, 1), key_hash(name, 28));
    }
}

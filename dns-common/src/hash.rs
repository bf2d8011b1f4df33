//! The two checks the agent computes when it writes an entry and the kernel
//! recomputes when it reads one. Both sides must agree bit for bit.

/// Start value of [`key_hash`] (the 64-bit golden ratio).
const KEY_HASH_SEED: u64 = 0x9e37_79b9_7f4a_7c15;
/// Odd multipliers (MurmurHash3's 64-bit finaliser constants): a multiply by
/// an odd constant is a bijection that carries every bit upwards, the
/// xor-shift after it carries the high half back down.
const KEY_HASH_MUL: u64 = 0xff51_afd7_ed55_8ccd;
const KEY_HASH_FINAL_MUL: u64 = 0xc4ce_b9fe_1a85_ec53;

/// The start value for [`key_hash_word`].
#[inline(always)]
pub const fn key_hash_init() -> u64 {
    KEY_HASH_SEED
}

/// Folds one 4-byte word of the lower-cased wire name into the hash: the
/// bytes `name[4i..4i + 4]` read little-endian, bytes past the name zero.
#[inline(always)]
pub const fn key_hash_word(hash: u64, word: u32) -> u64 {
    let h = (hash ^ word as u64).wrapping_mul(KEY_HASH_MUL);
    h ^ (h >> 32)
}

/// Folds the name length and query type in and mixes the result, so names
/// that differ only in trailing zero padding, or types, hash apart.
#[inline(always)]
pub const fn key_hash_finish(hash: u64, name_len: usize, qtype: u16) -> u64 {
    let h = key_hash_word(hash, ((name_len as u32) << 16) | qtype as u32);
    let h = h.wrapping_mul(KEY_HASH_FINAL_MUL);
    h ^ (h >> 29)
}

/// Hash of a key, tying an entry to the key it was written for (torn-read
/// detection, see `AnswerEntry`); not a map index. The lower-cased wire name
/// (`name`, `name_len` bytes) is zero-padded to a multiple of 4 bytes and
/// folded in as little-endian `u32` words with [`key_hash_word`], starting
/// from [`key_hash_init`]; then [`key_hash_finish`] adds the length and the
/// type. Word at a time because the kernel walks the name in 4-byte words
/// anyway: one multiply per word instead of one per byte.
pub const fn key_hash(name: &[u8], qtype: u16) -> u64 {
    let mut h = key_hash_init();
    let mut i = 0;
    while i < name.len() {
        let mut word = 0u32;
        let mut k = 0;
        while k < 4 && i + k < name.len() {
            word |= (name[i + k] as u32) << (8 * k);
            k += 1;
        }
        h = key_hash_word(h, word);
        i += 4;
    }
    key_hash_finish(h, name.len(), qtype)
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
    fn key_hash_pins_its_definition() {
        // Computed by an independent script from the definition above: a
        // change here is a change of the agent/kernel contract.
        assert_eq!(key_hash(b"\x03svc\x00", 1), 0x7691_f620_5eb3_dfe3);
        assert_eq!(
            key_hash(b"\x03web\x07default\x03svc\x07cluster\x05local\x00", 28),
            0xc5cd_5e13_fe36_0f61
        );
    }

    /// The kernel's way: whole native (little-endian) words of a zeroed
    /// 128-byte buffer, up to the name length rounded up to 4.
    fn kernel_way(name: &[u8], qtype: u16) -> u64 {
        let mut buf = [0u8; 128];
        buf[..name.len()].copy_from_slice(name);
        let mut h = key_hash_init();
        for w in 0..name.len().div_ceil(4) {
            let word = u32::from_le_bytes(buf[4 * w..4 * w + 4].try_into().unwrap());
            h = key_hash_word(h, word);
        }
        key_hash_finish(h, name.len(), qtype)
    }

    #[test]
    fn key_hash_equals_whole_words_of_the_zero_padded_name() {
        let mut x = 0x1234_5678u32;
        let mut name = [0u8; 128];
        for b in &mut name {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            *b = (x >> 16) as u8;
        }
        for len in 1..=128 {
            let name = &name[..len];
            assert_eq!(key_hash(name, 1), kernel_way(name, 1), "length {len}");
        }
    }

    #[test]
    fn key_hash_depends_on_every_byte_the_length_and_the_type() {
        let name = *b"\x03web\x07default\x03svc\x07cluster\x05local\x00";
        let base = key_hash(&name, 1);
        assert_ne!(base, key_hash(&name, 28));
        // Same padded words, one zero byte longer.
        let mut longer = [0u8; 32];
        longer[..name.len()].copy_from_slice(&name);
        assert_ne!(base, key_hash(&longer[..name.len() + 1], 1));
        for i in 0..name.len() {
            for bit in 0..8 {
                let mut n = name;
                n[i] ^= 1 << bit;
                assert_ne!(base, key_hash(&n, 1), "byte {i} bit {bit}");
            }
        }
    }

    #[test]
    fn ones_sum_rfc1071_example() {
        // RFC 1071 section 3 example: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2.
        assert_eq!(
            ones_sum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            0xddf2
        );
    }
}

//! Finding the answer for the parsed question: the index gives a slot, the
//! slot must hold exactly this question, and the answer is read there in
//! place (docs/design.md#torn-reads: a slot the index names is never
//! written while a program run may read it).

use core::mem::offset_of;

use dns_common::{
    AnswerEntry, AnswerKey, AnswerSlot, Counter, IndexValue, MAX_BODY_LEN, MAX_NAME_LEN, MAX_TTLS,
};

use crate::csum::fold;

/// Bytes of the question copied out of the packet: the longest name the
/// kernel answers plus type and class.
pub const QBUF_LEN: usize = MAX_NAME_LEN + 4;
/// Bytes of the OPT record copied out of the packet: the longest one the
/// kernel takes (fixed part, option header, a 40-byte cookie: 55) rounded
/// up to a power of two, which lets a mask bound the copy's length.
pub const OPTBUF_LEN: usize = 64;

/// Per-CPU working memory: the question's lower-cased key, the question
/// copied out of the packet and the OPT record.
#[repr(C)]
pub struct Scratch {
    /// Only the name's words up to `name_len` (the last one zero-padded),
    /// `name_len` and `qtype` are meaningful: nothing reads past them.
    pub key: AnswerKey,
    /// The label walk's position lives in map memory (see `dns::parse`).
    pub label_pos: u32,
    pub qbuf: [u8; QBUF_LEN],
    pub _pad: [u8; 4],
    /// The OPT record, zero-padded (see `dns::opt`).
    pub optbuf: [u8; OPTBUF_LEN],
}

const _: () = assert!(
    offset_of!(Scratch, qbuf).is_multiple_of(4)
        && offset_of!(AnswerKey, name).is_multiple_of(4)
        && (offset_of!(AnswerSlot, key) + offset_of!(AnswerKey, name)).is_multiple_of(4)
        && offset_of!(Scratch, optbuf).is_multiple_of(8)
        && OPTBUF_LEN.is_power_of_two()
        && OPTBUF_LEN >= 55
);

/// Marks the key as not parsed yet: `dns::walk_labels` sets the length only
/// when it finds the root label.
#[inline(always)]
pub fn clear_key(scratch: *mut Scratch) {
    unsafe { core::ptr::write_volatile(&mut (*scratch).key.name_len, 0) };
}

/// The slot an index value names, if the value is whole (see
/// `IndexValue`). Read with one 64-bit load: the index element may be
/// recycled under the reader.
#[inline(always)]
pub fn slot_of(value: *const IndexValue) -> Result<u32, Counter> {
    let raw = unsafe { core::ptr::read_volatile(value as *const u64) };
    let v = IndexValue {
        slot: raw as u32,
        check: (raw >> 32) as u32,
    };
    v.slot().ok_or(Counter::PassInvalidEntry)
}

/// The entry of `slot` when the slot holds the parsed question: the hash,
/// the type, the length and every word of the lower-cased name equal. A
/// different question under the same hash (or a slot that no longer holds
/// this one) is `pass_invalid_entry`, answered by userspace.
#[inline(always)]
pub fn verify<'a>(
    slot: &'a AnswerSlot,
    scratch: &Scratch,
    hash: u64,
) -> Result<&'a AnswerEntry, Counter> {
    let e = &slot.entry;
    let n = scratch.key.name_len;
    if e.key_hash != hash || slot.key.qtype != scratch.key.qtype || slot.key.name_len != n {
        return Err(Counter::PassInvalidEntry);
    }
    let want = slot.key.name.as_ptr() as *const u32;
    let have = scratch.key.name.as_ptr() as *const u32;
    let mut w = 0usize;
    while w < MAX_NAME_LEN / 4 {
        // Fresh from memory each round, as in `dns::key_name`.
        let n = unsafe { core::ptr::read_volatile(&scratch.key.name_len) } as usize;
        if w * 4 >= n {
            break;
        }
        if unsafe { *want.add(w) != *have.add(w) } {
            return Err(Counter::PassInvalidEntry);
        }
        w += 1;
    }
    if e.body_len as usize > MAX_BODY_LEN || e.ttl_count as usize > MAX_TTLS {
        return Err(Counter::PassInvalidEntry);
    }
    Ok(e)
}

/// The body length, read back through memory on purpose: after a loop
/// bounded by it, a fresh bounded value lets the verifier check the rest
/// once rather than once per loop exit.
#[inline(always)]
pub fn body_len_of(e: &AnswerEntry) -> Result<usize, Counter> {
    let n = unsafe { core::ptr::read_volatile(&e.body_len) } as usize;
    if n > MAX_BODY_LEN {
        return Err(Counter::PassInvalidEntry);
    }
    Ok(n)
}

/// The TTL count, read back through memory like [`body_len_of`].
#[inline(always)]
pub fn ttl_count_of(e: &AnswerEntry) -> usize {
    let n = unsafe { core::ptr::read_volatile(&e.ttl_count) } as usize;
    if n > MAX_TTLS { MAX_TTLS } else { n }
}

/// Checks the entry's TTL offsets (inside the body, ascending and apart,
/// or the checksum would count a field twice) and returns what writing
/// `ttl` into all of them adds to the body's checksum (body-relative
/// parity). The fields are written into the answer by `answer::write`.
#[inline(always)]
pub fn ttl_sum(e: &AnswerEntry, body_len: usize, ttl: u32) -> Result<u16, Counter> {
    let n = ttl_count_of(e);
    let mut odd = 0u64;
    let mut i = 0;
    while i < MAX_TTLS {
        if i >= n {
            break;
        }
        let off = e.ttl_offsets[i] as usize;
        if off > MAX_BODY_LEN - 4 || off + 4 > body_len {
            return Err(Counter::PassInvalidEntry);
        }
        // The previous offset from memory, not a register carried through
        // the loop (whose range would differ every round).
        let prev = unsafe {
            *e.ttl_offsets
                .as_ptr()
                .add(i.wrapping_sub(1) & (MAX_TTLS - 1))
        } as usize;
        if i > 0 && off < prev + 4 {
            return Err(Counter::PassInvalidEntry);
        }
        odd += (off & 1) as u64;
        i += 1;
    }
    let one = crate::csum::word32(ttl);
    let even = n as u64 - odd;
    Ok(fold(
        fold(even * one) as u64 + fold(odd * one).swap_bytes() as u64,
    ))
}

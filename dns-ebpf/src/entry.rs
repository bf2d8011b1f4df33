//! Copying an answers-map value into per-CPU scratch and deciding whether
//! the copy can be trusted (see "Torn reads" on `AnswerEntry`).

use core::mem::offset_of;

use dns_common::{AnswerEntry, AnswerKey, Counter, MAX_BODY_LEN, MAX_NAME_LEN, MAX_TTLS};

use crate::csum::fold;

/// Bytes of the question copied out of the packet: the longest name the
/// kernel answers plus type and class.
pub const QBUF_LEN: usize = MAX_NAME_LEN + 4;
/// Bytes of the OPT record copied out of the packet: the longest one the
/// kernel takes (fixed part, option header, a 40-byte cookie: 55) rounded
/// up to a power of two, which lets a mask bound the copy's length.
pub const OPTBUF_LEN: usize = 64;

/// Per-CPU working memory: the map key being built, the question copied
/// out of the packet and the value copy.
#[repr(C)]
pub struct Scratch {
    pub key: AnswerKey,
    /// The label walk's position lives in map memory (see `dns::parse`).
    pub label_pos: u32,
    pub entry: AnswerEntry,
    pub qbuf: [u8; QBUF_LEN],
    pub _pad: [u8; 4],
    /// The OPT record, zero-padded (see `dns::opt`).
    pub optbuf: [u8; OPTBUF_LEN],
}

const HEAD_LEN: usize = offset_of!(AnswerEntry, body);
const BODY_OFF: usize = offset_of!(AnswerEntry, body);
const TAIL_OFF: usize = offset_of!(AnswerEntry, tail_generation);
const TAIL_LEN: usize = core::mem::size_of::<AnswerEntry>() - TAIL_OFF;
// The copies move whole 64-bit words: a layout change that breaks this
// must fail the build, not silently drop bytes.
const _: () = assert!(
    HEAD_LEN.is_multiple_of(8)
        && BODY_OFF.is_multiple_of(8)
        && TAIL_OFF.is_multiple_of(8)
        && TAIL_LEN.is_multiple_of(8)
);
const _: () = assert!(
    offset_of!(Scratch, qbuf).is_multiple_of(4)
        && offset_of!(AnswerKey, name).is_multiple_of(4)
        && offset_of!(Scratch, optbuf).is_multiple_of(8)
        && OPTBUF_LEN.is_power_of_two()
        && OPTBUF_LEN >= 55
);

/// Zeroes the key so bytes after the name compare and hash equal.
#[inline(always)]
pub fn clear_key(scratch: *mut Scratch) {
    // The key and its padding are 136 bytes at the start of an 8-aligned
    // map value.
    let words = scratch as *mut u64;
    let mut i = 0;
    while i < (core::mem::size_of::<AnswerKey>() + 4) / 8 {
        // Volatile so LLVM keeps 17 stores instead of calling a byte-loop memset.
        unsafe { core::ptr::write_volatile(words.add(i), 0) };
        i += 1;
    }
}

/// Copies `words` 64-bit words at byte offset `off` from the map value to
/// the scratch copy. Plain loads from the map value, volatile so each word
/// is read exactly once: everything after works on the copy only.
#[inline(always)]
fn copy_words(dst: *mut AnswerEntry, src: *const AnswerEntry, off: usize, words: usize) {
    let d = unsafe { (dst as *mut u8).add(off) as *mut u64 };
    let s = unsafe { (src as *const u8).add(off) as *const u64 };
    let mut i = 0;
    while i < words {
        unsafe { core::ptr::write_volatile(d.add(i), core::ptr::read_volatile(s.add(i))) };
        i += 1;
    }
}

/// The copy's body length, read back through memory on purpose: after a
/// loop bounded by it, a fresh bounded value lets the verifier check the
/// rest once rather than once per loop exit.
#[inline(always)]
pub fn body_len_of(e: &AnswerEntry) -> Result<usize, Counter> {
    let n = unsafe { core::ptr::read_volatile(&e.body_len) } as usize;
    if n > MAX_BODY_LEN {
        return Err(Counter::PassInvalidEntry);
    }
    Ok(n)
}

/// Copies the head (everything before the body) and checks it belongs to
/// the question hashed to `hash`. Returns the body length.
#[inline(always)]
pub fn copy_head(
    dst: *mut AnswerEntry,
    src: *const AnswerEntry,
    hash: u64,
) -> Result<usize, Counter> {
    copy_words(dst, src, 0, HEAD_LEN / 8);
    let e = unsafe { &*dst };
    let body_len = e.body_len as usize;
    if e.key_hash != hash || body_len > MAX_BODY_LEN || e.ttl_count as usize > MAX_TTLS {
        return Err(Counter::PassInvalidEntry);
    }
    Ok(body_len)
}

/// Copies the body and the tail, then checks the copy is one consistent
/// version: tail matches head, body sums to what the agent wrote.
#[inline(always)]
pub fn copy_rest(
    dst: *mut AnswerEntry,
    src: *const AnswerEntry,
    body_len: usize,
    hash: u64,
) -> Result<usize, Counter> {
    if body_len > MAX_BODY_LEN {
        return Err(Counter::PassInvalidEntry);
    }
    // Body words, summed as they are copied (native-order 32-bit halves;
    // the folded sum is swapped to big-endian space at the end).
    let d = unsafe { (dst as *mut u8).add(BODY_OFF) as *mut u64 };
    let s = unsafe { (src as *const u8).add(BODY_OFF) as *const u64 };
    let full = body_len / 8;
    let rem = body_len % 8;
    let words = full + (rem != 0) as usize;
    let mut sum: u64 = 0;
    let mut i = 0;
    while i < MAX_BODY_LEN / 8 {
        if i >= words {
            break;
        }
        let mut w = unsafe { core::ptr::read_volatile(s.add(i)) };
        unsafe { core::ptr::write_volatile(d.add(i), w) };
        if i == full {
            // The last, partial word: only its first `rem` bytes are body.
            w &= (1u64 << (rem * 8)) - 1;
            sum += (w & 0xffff_ffff) + (w >> 32);
            // Leave now rather than by the bound: the verifier cannot
            // relate `full` to `words`, and would otherwise walk every
            // later round once for each round this branch was taken.
            break;
        }
        sum += (w & 0xffff_ffff) + (w >> 32);
        i += 1;
    }
    copy_words(dst, src, TAIL_OFF, TAIL_LEN / 8);
    let e = unsafe { &*dst };
    if e.tail_hash != hash || e.tail_generation != e.generation {
        return Err(Counter::PassInvalidEntry);
    }
    if fold(sum).swap_bytes() != e.body_sum as u16 || e.body_sum > 0xffff {
        return Err(Counter::PassInvalidEntry);
    }
    body_len_of(e)
}

/// Writes `ttl` into every TTL field of the copied body and returns those
/// fields' contribution to the body's checksum (body-relative parity).
#[inline(always)]
pub fn patch_ttls(e: &mut AnswerEntry, body_len: usize, ttl: u32) -> Result<u16, Counter> {
    let n = e.ttl_count as usize;
    let bytes = ttl.to_be_bytes();
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
        // Ascending and apart, or the checksum would count a field twice.
        let prev = unsafe {
            *e.ttl_offsets
                .as_ptr()
                .add(i.wrapping_sub(1) & (MAX_TTLS - 1))
        } as usize;
        if i > 0 && off < prev + 4 {
            return Err(Counter::PassInvalidEntry);
        }
        odd += (off & 1) as u64;
        let p = unsafe { e.body.as_mut_ptr().add(off) };
        unsafe {
            *p = bytes[0];
            *p.add(1) = bytes[1];
            *p.add(2) = bytes[2];
            *p.add(3) = bytes[3];
        }
        i += 1;
    }
    let one = crate::csum::word32(ttl);
    let even = n as u64 - odd;
    Ok(fold(
        fold(even * one) as u64 + fold(odd * one).swap_bytes() as u64,
    ))
}

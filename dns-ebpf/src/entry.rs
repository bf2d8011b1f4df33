//! Copying an answers-map value into per-CPU scratch and deciding whether
//! the copy can be trusted (see "Torn reads" on `AnswerEntry`).

use core::ffi::c_void;
use core::mem::offset_of;

use aya_ebpf::helpers::generated::bpf_probe_read_kernel;
use dns_common::{AnswerEntry, AnswerKey, Counter, MAX_BODY_LEN, MAX_TTLS};

use crate::csum::fold;

/// Per-CPU working memory: the map key being built and the value copy.
#[repr(C)]
pub struct Scratch {
    pub key: AnswerKey,
    /// The label walk's "bytes left in this label" lives in map memory
    /// (see `dns::parse`).
    pub label_left: u8,
    pub _pad: [u8; 3],
    pub entry: AnswerEntry,
}

const HEAD_LEN: usize = offset_of!(AnswerEntry, body);
const BODY_OFF: usize = offset_of!(AnswerEntry, body);
const TAIL_OFF: usize = offset_of!(AnswerEntry, tail_generation);
const TAIL_LEN: usize = core::mem::size_of::<AnswerEntry>() - TAIL_OFF;

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

#[inline(always)]
fn read(
    dst: *mut AnswerEntry,
    src: *const AnswerEntry,
    off: usize,
    len: u32,
) -> Result<(), Counter> {
    let r = unsafe {
        bpf_probe_read_kernel(
            (dst as *mut u8).add(off) as *mut c_void,
            len,
            (src as *const u8).add(off) as *const c_void,
        )
    };
    if r != 0 {
        Err(Counter::PassHelperFailed)
    } else {
        Ok(())
    }
}

/// Copies the head (everything before the body) and checks it belongs to
/// the question hashed to `hash`. Returns the body length.
#[inline(always)]
pub fn copy_head(
    dst: *mut AnswerEntry,
    src: *const AnswerEntry,
    hash: u64,
) -> Result<usize, Counter> {
    read(dst, src, 0, HEAD_LEN as u32)?;
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
) -> Result<(), Counter> {
    if body_len > MAX_BODY_LEN {
        return Err(Counter::PassInvalidEntry);
    }
    read(dst, src, BODY_OFF, body_len as u32)?;
    read(dst, src, TAIL_OFF, TAIL_LEN as u32)?;
    let e = unsafe { &*dst };
    if e.tail_hash != hash || e.tail_generation != e.generation {
        return Err(Counter::PassInvalidEntry);
    }
    if body_sum(e, body_len) != e.body_sum as u16 || e.body_sum > 0xffff {
        return Err(Counter::PassInvalidEntry);
    }
    Ok(())
}

/// Ones' complement sum of the body, as `hash::ones_sum` computes it.
#[inline(always)]
fn body_sum(e: &AnswerEntry, body_len: usize) -> u16 {
    // Native (little-endian) 32-bit words; the folded sum is swapped back
    // to big-endian space at the end. The body sits at an 8-aligned offset.
    let words = e.body.as_ptr() as *const u32;
    let nwords = body_len / 4;
    let mut sum: u64 = 0;
    let mut i = 0;
    while i < MAX_BODY_LEN / 4 {
        if i >= nwords {
            break;
        }
        sum += unsafe { *words.add(i) } as u64;
        i += 1;
    }
    let base = nwords * 4;
    let mut k = 0;
    while k < 3 {
        if base + k >= body_len {
            break;
        }
        sum += (e.body[(base + k) & (MAX_BODY_LEN - 1)] as u64) << (8 * k);
        k += 1;
    }
    fold(sum).swap_bytes()
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

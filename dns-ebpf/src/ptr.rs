//! The one bounds check every packet read goes through.

use core::ffi::c_void;

use aya_ebpf::helpers::generated::bpf_xdp_load_bytes;
use aya_ebpf::programs::XdpContext;

/// A pointer to a `T` at `offset` bytes into the frame, or `None` when the
/// frame is too short. Every packet access uses this, so the verifier sees
/// one shape of check everywhere.
#[inline(always)]
pub fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Option<*mut T> {
    // Volatile loads: a fresh packet pointer per access, so no pointer with
    // a loop-dependent verified range stays live across the label loop and
    // multiplies the verifier's states.
    let (start, end) = unsafe {
        let md = ctx.ctx;
        (
            core::ptr::read_volatile(&(*md).data) as usize,
            core::ptr::read_volatile(&(*md).data_end) as usize,
        )
    };
    if start + offset + core::mem::size_of::<T>() > end {
        return None;
    }
    Some((start + offset) as *mut T)
}

/// Copies `len` bytes of the frame from `offset` to `dst` with
/// `bpf_xdp_load_bytes` (which checks the bounds itself), or `None` when
/// the frame is too short. `dst` must have room for `len` bytes.
#[inline(always)]
pub fn load_bytes(ctx: &XdpContext, offset: usize, dst: *mut u8, len: usize) -> Option<()> {
    let rc = unsafe { bpf_xdp_load_bytes(ctx.ctx, offset as u32, dst as *mut c_void, len as u32) };
    (rc == 0).then_some(())
}

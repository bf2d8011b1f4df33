//! Transparent mode's miss path (docs/design.md#transparent-mode): a query
//! to a cluster DNS address that the kernel cannot answer is copied, whole
//! frame and interface, into the agent's ring buffer, and the caller drops
//! it. The agent answers with a frame of its own on that interface, so the
//! query never enters the stack: no netfilter, no conntrack, no kube-proxy.

use aya_ebpf::btf_maps::{PerCpuArray, RingBuf};
use aya_ebpf::macros::btf_map;
use aya_ebpf::programs::XdpContext;
use dns_common::transparent::{MAX_RING_FRAME, RING_BYTES};
use dns_common::{Counter, RingHeader, RingRecord};

use crate::ptr::load_bytes;

/// The agent's ring: each agent loads its own program with its own ring,
/// so swapping the program into the links on a hand-over moves the
/// producers to the new agent's ring.
#[btf_map(name = "NODEDNS_RING")]
static RING: RingBuf<RingRecord, { RING_BYTES as usize }> = RingBuf::new();

/// Per-CPU memory of the miss path.
#[repr(C)]
pub struct MissScratch {
    /// Why the kernel did not answer, parked here rather than in a
    /// register: live in a register through the miss path, each reason
    /// would make the verifier walk that path once more.
    pub reason: u32,
    pub _pad: u32,
    /// Where a record is put together before it is copied into the ring
    /// (`bpf_ringbuf_reserve` needs a constant size; a copy of the frame's
    /// own length keeps the ring's room for queries, not padding).
    pub record: RingRecord,
}

#[btf_map(name = "NODEDNS_MISS")]
static MISS_SCRATCH: PerCpuArray<MissScratch, 1> = PerCpuArray::new();

/// Parks why the kernel did not answer, for [`parked_reason`].
#[inline(always)]
pub fn park_reason(reason: Counter) {
    if let Some(s) = MISS_SCRATCH.get_ptr_mut(0) {
        unsafe { core::ptr::write_volatile(&mut (*s).reason, reason as u32) };
    }
}

/// The counter slot [`park_reason`] left.
#[inline(always)]
pub fn parked_reason() -> u32 {
    match MISS_SCRATCH.get_ptr(0) {
        Some(s) => unsafe { core::ptr::read_volatile(&(*s).reason) },
        None => Counter::Miss as u32,
    }
}

const HEADER_LEN: usize = core::mem::size_of::<RingHeader>();
const _: () = assert!(MAX_RING_FRAME.is_power_of_two());

/// Hands the frame to the agent. `PassRingFull` when the ring has no room
/// or the frame is longer than a record takes: the caller then passes it
/// to the cluster DNS Service, which answers it too, only slower.
#[inline(always)]
pub fn redirect(ctx: &XdpContext) -> Result<(), Counter> {
    let len = ctx.data_end() - ctx.data();
    if len == 0 || len > MAX_RING_FRAME {
        return Err(Counter::PassRingFull);
    }
    // The same value, masked so the verifier sees 1..=MAX_RING_FRAME
    // however LLVM folds the check above.
    let len = ((len - 1) & (MAX_RING_FRAME - 1)) + 1;
    let scratch = MISS_SCRATCH.get_ptr_mut(0).ok_or(Counter::PassRingFull)?;
    let record = unsafe { &mut (*scratch).record };
    record.header = RingHeader {
        ifindex: ctx.ingress_ifindex() as u32,
        frame_len: len as u16,
        _pad: 0,
    };
    load_bytes(ctx, 0, record.frame.as_mut_ptr(), len).ok_or(Counter::PassRingFull)?;
    let bytes = unsafe {
        core::slice::from_raw_parts(
            record as *const RingRecord as *const u8,
            core::mem::size_of::<RingRecord>(),
        )
    };
    let used = bytes.get(..HEADER_LEN + len).ok_or(Counter::PassRingFull)?;
    RING.output_untyped::<[u8]>(used, 0)
        .map_err(|_| Counter::PassRingFull)
}

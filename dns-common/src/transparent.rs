//! Queries to the cluster DNS Service that the kernel cannot answer, handed
//! to the agent (docs/design.md#transparent-mode): the XDP program copies
//! the frame into the agent's ring buffer and drops it, so neither
//! netfilter nor conntrack ever sees it; the agent answers with a frame of
//! its own on the same interface.

/// Bytes of the ring buffer map: a power of two and a multiple of the page
/// size. A record takes its frame, [`RingHeader`] and the kernel's 8-byte
/// header, so 256 KiB holds about 2,000 typical queries (100-byte frames).
pub const RING_BYTES: u32 = 256 * 1024;
/// Longest frame (Ethernet header included) the ring takes; a longer
/// query goes to the cluster DNS Service instead (counted).
pub const MAX_RING_FRAME: usize = 512;

/// What precedes the frame in a ring record.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct RingHeader {
    /// The interface the query came in on, where the answer goes out.
    pub ifindex: u32,
    /// Bytes of the frame that follow.
    pub frame_len: u16,
    pub _pad: u16,
}

/// A record as the XDP program puts it together; only
/// `size_of::<RingHeader>() + frame_len` bytes of it go into the ring.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct RingRecord {
    pub header: RingHeader,
    pub frame: [u8; MAX_RING_FRAME],
}

//! Layouts shared by the XDP program (`dns-ebpf`) and the agent (`dns-agent`).
//!
//! Everything here is plain data: `#[repr(C)]`, `Copy`, fixed-width integers,
//! no `bool` and no implicit padding, so both sides (and `bpftool`, through BTF)
//! agree on every byte. The unit tests at the bottom pin sizes and offsets.
#![no_std]

pub mod answer_counters;
pub mod counters;
pub mod failopen;
pub mod hash;
pub mod hot_samples;
pub mod transparent;
pub mod wire;

pub use counters::Counter;
pub use failopen::{FlowKey, FlowValue, Liveness};
pub use transparent::{RingHeader, RingRecord};

/// Longest question name, in wire format including the root label, that the
/// kernel answers. Longer names are passed to userspace.
pub const MAX_NAME_LEN: usize = 128;
/// Largest answer body (answer + authority + additional sections, without the
/// header, the question and OPT) an entry can hold.
pub const MAX_BODY_LEN: usize = 512;
/// Most TTL fields an entry's body may carry (one per resource record).
pub const MAX_TTLS: usize = 32;
/// Listen addresses of each family the kernel matches.
pub const MAX_LISTEN_ADDRS: usize = 4;
/// Cluster DNS Service addresses (ClusterIPs) of each family the kernel
/// matches.
pub const MAX_CLUSTER_DNS_ADDRS: usize = 4;
/// The UDP payload size the kernel (and the agent) advertise in EDNS answers.
pub const EDNS_UDP_SIZE: u16 = 1232;
/// Default capacity of the answers map, in entries.
pub const DEFAULT_ANSWER_ENTRIES: u32 = 16_384;

/// Slots of the answers array for an index of `entries` entries: two
/// halves, one per writer during a hand-over, each with a slot per entry
/// plus an eighth more (at least 64) for slots cooling down after a
/// rewrite, which may not be written again within [`SLOT_GRACE_NS`]
/// (docs/design.md#torn-reads).
pub const fn slots_for(entries: u32) -> u32 {
    let spare = entries / 8;
    let half = entries.saturating_add(if spare < 64 { 64 } else { spare });
    half.saturating_mul(2)
}

/// How long a slot taken out of the index stays unwritten: far longer than
/// any run of the XDP program, which found it through the index within
/// that run (docs/design.md#torn-reads).
pub const SLOT_GRACE_NS: u64 = 1_000_000_000;
/// Capacity of the interfaces map: interfaces of the node the kernel path
/// knows the MAC addresses of.
pub const MAX_INTERFACES: u32 = 4096;

/// Map names, as they appear in the object file, in `bpftool map show` and
/// as pin file names under the agent's bpffs directory.
/// The answers: an array of [`AnswerSlot`]s, written only while no index
/// entry names them (docs/design.md#torn-reads).
pub const MAP_ANSWERS: &str = "NODEDNS_ANSWERS";
/// The index: `hash::key_hash` of a question (`u64`) -> [`IndexValue`],
/// the slot holding its answer.
pub const MAP_INDEX: &str = "NODEDNS_INDEX";
pub const MAP_COUNTERS: &str = "NODEDNS_COUNTERS";
pub const MAP_CONFIG: &str = "NODEDNS_CONFIG";
/// Per-CPU counters of the answers the kernel sent ([`answer_counters`]).
pub const MAP_ANSWER_COUNTS: &str = "NODEDNS_ANSWER_COUNTS";
/// Per-CPU rings of sampled kernel hits ([`hot_samples`]).
pub const MAP_HOT_SAMPLES: &str = "NODEDNS_HOT_SAMPLES";
pub const MAP_SCRATCH: &str = "NODEDNS_SCRATCH";
/// Interface index -> [`InterfaceMacs`]; filled by the agent, not pinned.
pub const MAP_INTERFACES: &str = "NODEDNS_IFACES";
/// Queries to a cluster DNS address handed to the agent
/// ([`transparent`]); each agent's own, not pinned.
pub const MAP_RING: &str = "NODEDNS_RING";
/// Per-CPU room of the miss path (the ring record being put together);
/// not pinned.
pub const MAP_MISS_SCRATCH: &str = "NODEDNS_MISS";
/// The agent's heartbeat ([`Liveness`]); each agent's own, not pinned.
pub const MAP_LIVENESS: &str = "NODEDNS_LIVENESS";
/// Failed-open flows ([`FlowKey`] -> [`FlowValue`]), shared by the XDP and
/// the egress program; pinned, so every agent's programs share it.
pub const MAP_FLOWS: &str = "NODEDNS_FLOWS";
/// Interface index -> 1 where the egress program runs; filled by the
/// agent, not pinned.
pub const MAP_EGRESS: &str = "NODEDNS_EGRESS";
/// The XDP program's function name in the object file.
pub const PROGRAM_NAME: &str = "nodedns_xdp";
/// The egress (TC) program's function name in the object file.
pub const EGRESS_PROGRAM_NAME: &str = "nodedns_egress";

/// Key of the answers map: the question name lower-cased, in wire format, and
/// the query type. Bytes after `name_len` are zero so equal questions hash
/// equally.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct AnswerKey {
    /// Query type, host byte order (1 = A, 28 = AAAA, ...).
    pub qtype: u16,
    /// Length of the wire name in `name`, including the root label's zero.
    pub name_len: u16,
    pub name: [u8; MAX_NAME_LEN],
}

impl AnswerKey {
    pub const fn zeroed() -> Self {
        Self {
            qtype: 0,
            name_len: 0,
            name: [0; MAX_NAME_LEN],
        }
    }
}

/// `AnswerEntry::flags` bit: the answer is authoritative (AA=1).
pub const ENTRY_FLAG_AUTHORITATIVE: u8 = 1;

/// An answer: a ready-made response body plus what the kernel needs to
/// finish it (counts, rcode, TTL positions and the checksum of the body).
/// The kernel finds it in an [`AnswerSlot`].
///
/// The body's names compress to the question with pointer `0xC00C`; the
/// response is `header | question (echoed) | body | OPT (if the query had one)`.
/// Every TTL field in `body` is stored as zero; the kernel writes the entry's
/// remaining lifetime at each offset in `ttl_offsets`.
///
/// # Torn reads
/// A slot is never written while the kernel may read it (the agent writes a
/// fresh slot, then points the index at it, and writes the old slot again
/// only after [`SLOT_GRACE_NS`]), so the kernel reads the slot in place,
/// without a copy or a check sum (docs/design.md#torn-reads).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct AnswerEntry {
    /// `hash::key_hash` of the key this entry was written for.
    pub key_hash: u64,
    /// Written anew by every update (agent-wide counter; not read by the
    /// kernel).
    pub generation: u64,
    /// `CLOCK_BOOTTIME` nanoseconds (`bpf_ktime_get_boot_ns`) after which the
    /// entry must not be served.
    pub expires_ns: u64,
    /// The record TTL: the served TTL is `min(max_ttl, remaining lifetime)`.
    pub max_ttl: u32,
    /// Ones' complement sum (`hash::ones_sum`) of `body[..body_len]` with the
    /// TTL fields zero, as if the body started at an even offset: the
    /// kernel adds it to the answer's UDP checksum instead of summing the
    /// body.
    pub body_sum: u32,
    /// RCODE of the answer (0 NOERROR, 3 NXDOMAIN).
    pub rcode: u8,
    /// `ENTRY_FLAG_*` bits.
    pub flags: u8,
    pub ancount: u16,
    pub nscount: u16,
    /// Additional records in the body (OPT excluded; the kernel adds it).
    pub arcount: u16,
    pub body_len: u16,
    pub ttl_count: u16,
    /// Explicit padding (zero) so `ttl_offsets` stays aligned without
    /// hidden bytes.
    pub _pad: u32,
    /// Offsets, relative to the body, of each 32-bit TTL field.
    pub ttl_offsets: [u16; MAX_TTLS],
    pub body: [u8; MAX_BODY_LEN],
}

impl AnswerEntry {
    pub const fn zeroed() -> Self {
        Self {
            key_hash: 0,
            generation: 0,
            expires_ns: 0,
            max_ttl: 0,
            body_sum: 0,
            rcode: 0,
            flags: 0,
            ancount: 0,
            nscount: 0,
            arcount: 0,
            body_len: 0,
            ttl_count: 0,
            _pad: 0,
            ttl_offsets: [0; MAX_TTLS],
            body: [0; MAX_BODY_LEN],
        }
    }
}

/// Value of the answers array: the question an answer is for, which the
/// kernel compares with the one it parsed (so a key hash shared by two
/// questions falls through to userspace, never to the wrong answer), and the
/// answer. The name sits at a 4-byte boundary so the kernel compares words.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct AnswerSlot {
    pub key: AnswerKey,
    /// Explicit padding (zero): the entry is 8-aligned.
    pub _pad: u32,
    pub entry: AnswerEntry,
}

impl AnswerSlot {
    pub const fn zeroed() -> Self {
        Self {
            key: AnswerKey::zeroed(),
            _pad: 0,
            entry: AnswerEntry::zeroed(),
        }
    }
}

/// Value of the index: the [`AnswerSlot`] holding a question's answer.
/// `check` is `!slot`: a value read while a recycled index element is being
/// written (a preallocated hash map reuses freed elements at once) is
/// either whole or fails the check (docs/design.md#torn-reads).
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct IndexValue {
    pub slot: u32,
    pub check: u32,
}

impl IndexValue {
    pub const fn new(slot: u32) -> Self {
        Self { slot, check: !slot }
    }

    /// The slot, if the value is whole.
    #[inline(always)]
    pub const fn slot(self) -> Option<u32> {
        if self.check == !self.slot {
            Some(self.slot)
        } else {
            None
        }
    }
}

/// Single-element array map set by the agent: where the kernel answers.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Config {
    /// IPv4 listen addresses, network byte order as they sit in the packet.
    pub v4_addrs: [u32; MAX_LISTEN_ADDRS],
    /// IPv6 listen addresses.
    pub v6_addrs: [[u8; 16]; MAX_LISTEN_ADDRS],
    pub v4_count: u8,
    pub v6_count: u8,
    /// Non-zero: the kernel answers; zero: it passes everything (counted).
    pub enabled: u8,
    /// The half of the answers array (0 or 1) the agent that wrote this
    /// config writes; the next agent takes the other one. Not read by the
    /// kernel (docs/design.md#torn-reads).
    pub slot_half: u8,
    /// Listen port, host byte order.
    pub port: u16,
    /// UDP payload size advertised in the answer's OPT record.
    pub edns_udp_size: u16,
    /// The cluster DNS Service's IPv4 addresses (network byte order): the
    /// fail-open target, and served like a listen address when
    /// `transparent` is set.
    pub cluster_v4_addrs: [u32; MAX_CLUSTER_DNS_ADDRS],
    pub cluster_v6_addrs: [[u8; 16]; MAX_CLUSTER_DNS_ADDRS],
    pub cluster_v4_count: u8,
    pub cluster_v6_count: u8,
    /// Non-zero: UDP queries to a cluster address are served (transparent
    /// mode); zero: they are left to the stack, and the cluster addresses
    /// are only where queries fail open to.
    pub transparent: u8,
    pub _pad1: u8,
}

impl Config {
    pub const fn zeroed() -> Self {
        Self {
            v4_addrs: [0; MAX_LISTEN_ADDRS],
            v6_addrs: [[0; 16]; MAX_LISTEN_ADDRS],
            v4_count: 0,
            v6_count: 0,
            enabled: 0,
            slot_half: 0,
            port: 0,
            edns_udp_size: 0,
            cluster_v4_addrs: [0; MAX_CLUSTER_DNS_ADDRS],
            cluster_v6_addrs: [[0; 16]; MAX_CLUSTER_DNS_ADDRS],
            cluster_v4_count: 0,
            cluster_v6_count: 0,
            transparent: 0,
            _pad1: 0,
        }
    }
}

/// Value of the interfaces map, whose key is the ifindex (`u32`): the
/// destination MAC addresses a query on that interface may carry for the
/// kernel to answer it, as the stack would accept the frame.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct InterfaceMacs {
    /// The interface's own address.
    pub mac: [u8; 6],
    /// For a bridge port, the bridge's address (the bridge delivers frames
    /// sent to it locally); all zero otherwise.
    pub bridge_mac: [u8; 6],
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all are repr(C), Copy, built of integers and arrays of
    // integers with no padding (checked by the layout tests).
    unsafe impl aya::Pod for super::AnswerKey {}
    unsafe impl aya::Pod for super::AnswerEntry {}
    unsafe impl aya::Pod for super::AnswerSlot {}
    unsafe impl aya::Pod for super::IndexValue {}
    unsafe impl aya::Pod for super::Config {}
    unsafe impl aya::Pod for super::InterfaceMacs {}
    unsafe impl aya::Pod for super::FlowKey {}
    unsafe impl aya::Pod for super::FlowValue {}
    unsafe impl aya::Pod for super::Liveness {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{align_of, offset_of, size_of};

    #[test]
    fn key_layout() {
        assert_eq!(size_of::<AnswerKey>(), 4 + MAX_NAME_LEN);
        assert_eq!(offset_of!(AnswerKey, name), 4);
        assert_eq!(
            size_of::<AnswerKey>() % 4,
            0,
            "jhash2 fast path wants u32 words"
        );
    }

    #[test]
    fn entry_layout_has_no_padding() {
        let fields = 8 * 3 + 4 * 2 + 1 + 1 + 2 * 5 + 4 + 2 * MAX_TTLS + MAX_BODY_LEN;
        assert_eq!(size_of::<AnswerEntry>(), fields);
        assert_eq!(align_of::<AnswerEntry>(), 8);
        assert_eq!(offset_of!(AnswerEntry, rcode), 32);
        assert_eq!(offset_of!(AnswerEntry, ttl_offsets), 48);
        assert_eq!(offset_of!(AnswerEntry, body), 48 + 2 * MAX_TTLS);
    }

    #[test]
    fn slot_layout_has_no_padding() {
        assert_eq!(
            size_of::<AnswerSlot>(),
            size_of::<AnswerKey>() + 4 + size_of::<AnswerEntry>()
        );
        assert_eq!(offset_of!(AnswerSlot, key) + offset_of!(AnswerKey, name), 4);
        assert_eq!(offset_of!(AnswerSlot, entry), 136);
        assert_eq!(size_of::<IndexValue>(), 8);
    }

    #[test]
    fn index_value_detects_a_mix_of_two() {
        let (a, b) = (IndexValue::new(7), IndexValue::new(0x0102_0304));
        assert_eq!(a.slot(), Some(7));
        let mixed = IndexValue {
            slot: b.slot,
            check: a.check,
        };
        assert_eq!(mixed.slot(), None);
        assert!(slots_for(16_384) == 36_864 && slots_for(100) == 328);
    }

    #[test]
    fn config_layout_has_no_padding() {
        assert_eq!(size_of::<Config>(), 16 + 64 + 4 + 4 + 16 + 64 + 4);
        assert_eq!(offset_of!(Config, port), 84);
        assert_eq!(offset_of!(Config, cluster_v4_addrs), 88);
        assert_eq!(offset_of!(Config, cluster_v4_count), 168);
    }

    #[test]
    fn failopen_layouts_have_no_padding() {
        assert_eq!(size_of::<FlowKey>(), 16 + 2 + 2 + 1 + 1 + 2);
        assert_eq!(offset_of!(FlowKey, port), 16);
        assert_eq!(size_of::<FlowValue>(), 16 + 16 + 8);
        assert_eq!(offset_of!(FlowValue, expires_ns), 32);
        assert_eq!(size_of::<Liveness>(), 8);
        assert_eq!(size_of::<RingHeader>(), 8);
    }

    #[test]
    fn interface_macs_layout_has_no_padding() {
        assert_eq!(size_of::<InterfaceMacs>(), 12);
        assert_eq!(offset_of!(InterfaceMacs, bridge_mac), 6);
    }

    #[test]
    fn counters_are_dense() {
        assert_eq!(Counter::ALL.len(), Counter::COUNT as usize);
        for (i, c) in Counter::ALL.iter().enumerate() {
            assert_eq!(*c as usize, i);
        }
    }
}

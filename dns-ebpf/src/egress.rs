//! The egress program (TCX, on the pods' host-side interfaces next to the
//! XDP program): a reply from the cluster DNS Service to a query that
//! failed open from a listen address (`failopen.rs`) gets that listen
//! address back as its source, so the pod sees the answer come from what
//! it asked (docs/design.md#fail-open).
//!
//! It touches exactly the packets of a recorded flow: UDP or TCP from the
//! cluster address the flow went to, from the DNS port, to the pod's
//! address and port (and, for UDP, with the query's DNS ID), while the
//! flow is alive. Everything else goes on untouched: the verdict is always
//! "next" (`TC_ACT_UNSPEC`, TCX_NEXT), so other programs on the interface
//! still see every packet.

use aya_ebpf::bindings::{BPF_F_MARK_MANGLED_0, BPF_F_PSEUDO_HDR, TC_ACT_UNSPEC};
use aya_ebpf::helpers::generated::bpf_ktime_get_boot_ns;
use aya_ebpf::macros::classifier;
use aya_ebpf::programs::TcContext;
use dns_common::wire::{ETH_P_IP, ETH_P_IPV6};
use dns_common::{Counter, FlowKey};

use crate::eth::ETH_LEN;
use crate::failopen::FLOWS;
use crate::ip::{IPPROTO_TCP, IPPROTO_UDP, IPV4_LEN, IPV6_LEN, Ipv4Hdr};
use crate::udp::UDP_LEN;

/// Offsets of the fields rewritten, from the start of the frame.
const V4_CHECK_OFF: usize = ETH_LEN + 10;
const V4_SADDR_OFF: usize = ETH_LEN + 12;
const V6_SADDR_OFF: usize = ETH_LEN + 8;
const V6_DADDR_OFF: usize = ETH_LEN + 24;
const UDP_CHECK_OFF: usize = 6;
const TCP_CHECK_OFF: usize = 16;
/// The size argument of `bpf_l3/l4_csum_replace` for a 32-bit field.
const FIELD32: u64 = 4;

#[classifier]
pub fn nodedns_egress(ctx: TcContext) -> i32 {
    if restore(&ctx).is_some() {
        crate::count(Counter::ReplyRestored);
    }
    TC_ACT_UNSPEC
}

/// The reply's transport: protocol, offset and destination port (network
/// order).
struct L4 {
    proto: u8,
    off: usize,
    dport: u16,
}

#[inline(always)]
fn restore(ctx: &TcContext) -> Option<()> {
    let cfg = crate::CONFIG.get(0)?;
    if cfg.enabled == 0 {
        return None;
    }
    match u16::from_be(ctx.load::<u16>(12).ok()?) {
        ETH_P_IP if cfg.cluster_v4_count > 0 => restore_v4(ctx, cfg.port),
        ETH_P_IPV6 if cfg.cluster_v6_count > 0 => restore_v6(ctx, cfg.port),
        _ => None,
    }
}

/// The transport header at `off`, if it is UDP or TCP from `port`.
#[inline(always)]
fn l4(ctx: &TcContext, proto: u8, off: usize, port: u16) -> Option<L4> {
    if proto != IPPROTO_UDP && proto != IPPROTO_TCP {
        return None;
    }
    let ports = ctx.load::<[u16; 2]>(off).ok()?;
    if u16::from_be(ports[0]) != port {
        return None;
    }
    Some(L4 {
        proto,
        off,
        dport: ports[1],
    })
}

/// The flow this reply answers, if it is one of ours and from where the
/// query went: the flow's listen address then, network order.
#[inline(always)]
fn flow_of(
    ctx: &TcContext,
    l4: &L4,
    daddr: [u8; 16],
    saddr: &[u8; 16],
    v6: bool,
) -> Option<(FlowKey, [u8; 16])> {
    let id = if l4.proto == IPPROTO_UDP {
        ctx.load::<u16>(l4.off + UDP_LEN).ok()?
    } else {
        0
    };
    let key = FlowKey {
        addr: daddr,
        port: l4.dport,
        id,
        proto: l4.proto,
        family: if v6 { 6 } else { 4 },
        _pad: [0; 2],
    };
    let flow = FLOWS.get_ptr(key)?;
    let flow = unsafe { *flow };
    let now = unsafe { bpf_ktime_get_boot_ns() };
    if now >= flow.expires_ns || &flow.cluster != saddr {
        return None;
    }
    Some((key, flow.listen))
}

/// The transport checksum's flags: the address is in the pseudo-header,
/// and a UDP checksum of zero ("none", IPv4) stays zero.
#[inline(always)]
fn l4_flags(l4: &L4) -> (usize, u64) {
    if l4.proto == IPPROTO_UDP {
        (
            l4.off + UDP_CHECK_OFF,
            (BPF_F_PSEUDO_HDR | BPF_F_MARK_MANGLED_0) as u64 | FIELD32,
        )
    } else {
        (l4.off + TCP_CHECK_OFF, BPF_F_PSEUDO_HDR as u64 | FIELD32)
    }
}

#[inline(always)]
fn restore_v4(ctx: &TcContext, port: u16) -> Option<()> {
    let ip = ctx.load::<Ipv4Hdr>(ETH_LEN).ok()?;
    // No options, no fragments: the stack's own replies have neither.
    if ip.ver_ihl != 0x45 || u16::from_be(ip.frag_off) & 0x3fff != 0 {
        return None;
    }
    let l4 = l4(ctx, ip.proto, ETH_LEN + IPV4_LEN, port)?;
    let mut daddr = [0u8; 16];
    daddr[..4].copy_from_slice(&ip.daddr.to_ne_bytes());
    let mut saddr = [0u8; 16];
    saddr[..4].copy_from_slice(&ip.saddr.to_ne_bytes());
    let (key, listen) = flow_of(ctx, &l4, daddr, &saddr, false)?;
    let new = u32::from_ne_bytes([listen[0], listen[1], listen[2], listen[3]]);
    let (check_off, flags) = l4_flags(&l4);
    // The helpers take the old and new values as the packet holds them.
    ctx.l4_csum_replace(check_off, ip.saddr as u64, new as u64, flags)
        .ok()?;
    ctx.l3_csum_replace(V4_CHECK_OFF, ip.saddr as u64, new as u64, FIELD32)
        .ok()?;
    ctx.store(V4_SADDR_OFF, &new, 0).ok()?;
    forget_answered(&key, l4.proto);
    Some(())
}

#[inline(always)]
fn restore_v6(ctx: &TcContext, port: u16) -> Option<()> {
    let next = ctx.load::<u8>(ETH_LEN + 6).ok()?;
    let l4 = l4(ctx, next, ETH_LEN + IPV6_LEN, port)?;
    let saddr = ctx.load::<[u8; 16]>(V6_SADDR_OFF).ok()?;
    let daddr = ctx.load::<[u8; 16]>(V6_DADDR_OFF).ok()?;
    let (key, listen) = flow_of(ctx, &l4, daddr, &saddr, true)?;
    let (check_off, flags) = l4_flags(&l4);
    let mut i = 0;
    while i < 16 {
        let old = u32::from_ne_bytes([saddr[i], saddr[i + 1], saddr[i + 2], saddr[i + 3]]);
        let new = u32::from_ne_bytes([listen[i], listen[i + 1], listen[i + 2], listen[i + 3]]);
        ctx.l4_csum_replace(check_off, old as u64, new as u64, flags)
            .ok()?;
        i += 4;
    }
    ctx.store(V6_SADDR_OFF, &listen, 0).ok()?;
    forget_answered(&key, l4.proto);
    Some(())
}

/// A UDP query has one reply; a TCP connection stays until it idles out.
#[inline(always)]
fn forget_answered(key: &FlowKey, proto: u8) {
    if proto == IPPROTO_UDP {
        let _ = FLOWS.remove(key);
    }
}

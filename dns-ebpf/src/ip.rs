//! IPv4 and IPv6 headers: is this UDP to one of our listen addresses, and
//! the parts of the pseudo-header the UDP checksum needs.

use aya_ebpf::programs::XdpContext;
use dns_common::{Config, Counter, MAX_LISTEN_ADDRS};

use crate::csum::word32;
use crate::eth::ETH_LEN;
use crate::ptr::ptr_at;

pub const IPV4_LEN: usize = 20;
pub const IPV6_LEN: usize = 40;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_ICMPV6: u8 = 58;
/// Hop limit of answers: a fresh value, as any host would send.
const REPLY_TTL: u8 = 64;
/// IPv4 "more fragments" flag and fragment offset bits.
const IP_FRAG_MASK: u16 = 0x3fff;

#[repr(C)]
pub struct Ipv4Hdr {
    pub ver_ihl: u8,
    pub tos: u8,
    pub tot_len: u16,
    pub id: u16,
    pub frag_off: u16,
    pub ttl: u8,
    pub proto: u8,
    pub check: u16,
    pub saddr: u32,
    pub daddr: u32,
}

#[repr(C)]
pub struct Ipv6Hdr {
    pub ver_tc_flow: u32,
    pub payload_len: u16,
    pub next_hdr: u8,
    pub hop_limit: u8,
    pub saddr: [u32; 4],
    pub daddr: [u32; 4],
}

/// What the UDP layer needs from the IP header.
pub struct Ip {
    /// Payload length the IP header declares (the UDP datagram).
    pub payload_len: usize,
    /// Pseudo-header sum without the UDP length: addresses and protocol.
    pub pseudo_sum: u64,
}

#[inline(always)]
pub fn parse_v4(ctx: &XdpContext, cfg: &Config) -> Result<Ip, Counter> {
    let ip = ptr_at::<Ipv4Hdr>(ctx, ETH_LEN).ok_or(Counter::PassMalformed)?;
    let ip = unsafe { &*ip };
    if ip.proto != IPPROTO_UDP || !v4_is_ours(cfg, ip.daddr) {
        return Err(Counter::PassNotDns);
    }
    if ip.ver_ihl != 0x45 {
        // Version 4 with options (or garbage): options are not parsed.
        return Err(if ip.ver_ihl >> 4 == 4 && ip.ver_ihl & 0xf > 5 {
            Counter::PassIpUnsupported
        } else {
            Counter::PassMalformed
        });
    }
    if u16::from_be(ip.frag_off) & IP_FRAG_MASK != 0 {
        return Err(Counter::PassIpUnsupported);
    }
    let tot_len = u16::from_be(ip.tot_len) as usize;
    if tot_len < IPV4_LEN || ETH_LEN + tot_len > ctx.data_end() - ctx.data() {
        return Err(Counter::PassMalformed);
    }
    if header_sum(ip) != 0xffff {
        // The host would drop it; so do we (to the host).
        return Err(Counter::PassMalformed);
    }
    let s = u32::from_be(ip.saddr);
    if !v4_source_ok(cfg, s, ip.saddr) {
        return Err(Counter::PassSource);
    }
    let d = u32::from_be(ip.daddr);
    Ok(Ip {
        payload_len: tot_len - IPV4_LEN,
        pseudo_sum: word32(s) + word32(d) + IPPROTO_UDP as u64,
    })
}

/// Whether the stack would answer a datagram from `saddr` (host order
/// `s`): not "this network" (0/8, the unspecified address included), not
/// loopback, multicast or the limited broadcast address, all of which
/// it drops as martians, and not one of our own listen addresses.
#[inline(always)]
fn v4_source_ok(cfg: &Config, s: u32, saddr: u32) -> bool {
    let first = s >> 24;
    let zeronet = first == 0;
    let loopback = first == 127;
    let multicast = s >> 28 == 0xe;
    let broadcast = s == u32::MAX;
    !(zeronet || loopback || multicast || broadcast || v4_is_ours(cfg, saddr))
}

#[inline(always)]
fn v4_is_ours(cfg: &Config, daddr: u32) -> bool {
    let n = cfg.v4_count as usize;
    let mut i = 0;
    while i < MAX_LISTEN_ADDRS {
        if i < n && cfg.v4_addrs[i] == daddr {
            return true;
        }
        i += 1;
    }
    false
}

#[inline(always)]
pub fn parse_v6(ctx: &XdpContext, cfg: &Config) -> Result<Ip, Counter> {
    let ip = ptr_at::<Ipv6Hdr>(ctx, ETH_LEN).ok_or(Counter::PassMalformed)?;
    let ip = unsafe { &*ip };
    if !v6_is_ours(cfg, &ip.daddr) {
        return Err(Counter::PassNotDns);
    }
    match ip.next_hdr {
        IPPROTO_UDP => {}
        IPPROTO_TCP | IPPROTO_ICMPV6 => return Err(Counter::PassNotDns),
        // Extension headers (hop-by-hop, routing, fragment, ...) and
        // anything else are not walked.
        _ => return Err(Counter::PassIpUnsupported),
    }
    if u32::from_be(ip.ver_tc_flow) >> 28 != 6 {
        return Err(Counter::PassMalformed);
    }
    let payload_len = u16::from_be(ip.payload_len) as usize;
    if ETH_LEN + IPV6_LEN + payload_len > ctx.data_end() - ctx.data() {
        return Err(Counter::PassMalformed);
    }
    if !v6_source_ok(cfg, &ip.saddr) {
        return Err(Counter::PassSource);
    }
    let mut sum = IPPROTO_UDP as u64;
    let mut i = 0;
    while i < 4 {
        sum += word32(u32::from_be(ip.saddr[i])) + word32(u32::from_be(ip.daddr[i]));
        i += 1;
    }
    Ok(Ip {
        payload_len,
        pseudo_sum: sum,
    })
}

/// Whether the stack would answer a datagram from `saddr` (network
/// order words): not unspecified, loopback or multicast, not an
/// IPv4-mapped address (which `ip6_rcv` drops as a source), and not one
/// of our own listen addresses.
#[inline(always)]
fn v6_source_ok(cfg: &Config, saddr: &[u32; 4]) -> bool {
    let w = [
        u32::from_be(saddr[0]),
        u32::from_be(saddr[1]),
        u32::from_be(saddr[2]),
        u32::from_be(saddr[3]),
    ];
    let prefix_zero = w[0] == 0 && w[1] == 0;
    let unspecified = prefix_zero && w[2] == 0 && w[3] == 0;
    let loopback = prefix_zero && w[2] == 0 && w[3] == 1;
    let v4_mapped = prefix_zero && w[2] == 0xffff;
    let multicast = w[0] >> 24 == 0xff;
    !(unspecified || loopback || v4_mapped || multicast || v6_is_ours(cfg, saddr))
}

#[inline(always)]
fn v6_is_ours(cfg: &Config, daddr: &[u32; 4]) -> bool {
    let n = cfg.v6_count as usize;
    let mut i = 0;
    while i < MAX_LISTEN_ADDRS {
        if i < n {
            let a = &cfg.v6_addrs[i];
            let w = |k: usize| u32::from_ne_bytes([a[k], a[k + 1], a[k + 2], a[k + 3]]);
            if w(0) == daddr[0] && w(4) == daddr[1] && w(8) == daddr[2] && w(12) == daddr[3] {
                return true;
            }
        }
        i += 1;
    }
    false
}

/// Folded ones' complement sum of the IPv4 header (0xffff when its
/// checksum field is right).
#[inline(always)]
fn header_sum(ip: &Ipv4Hdr) -> u16 {
    let words = ip as *const Ipv4Hdr as *const u16;
    let mut sum: u64 = 0;
    let mut i = 0;
    while i < IPV4_LEN / 2 {
        // Native-order words: the folded sum is byte-order independent as
        // long as it is stored back the same way.
        sum += unsafe { *words.add(i) } as u64;
        i += 1;
    }
    crate::csum::fold(sum)
}

/// Turns the IPv4 header around for the answer and recomputes its checksum.
#[inline(always)]
pub fn reply_v4(ip: *mut Ipv4Hdr, tot_len: u16) {
    let ip = unsafe { &mut *ip };
    core::mem::swap(&mut ip.saddr, &mut ip.daddr);
    ip.tot_len = tot_len.to_be();
    ip.ttl = REPLY_TTL;
    ip.check = 0;
    let sum = header_sum(ip);
    ip.check = !sum;
}

/// Turns the IPv6 header around for the answer.
#[inline(always)]
pub fn reply_v6(ip: *mut Ipv6Hdr, payload_len: u16) {
    let ip = unsafe { &mut *ip };
    core::mem::swap(&mut ip.saddr, &mut ip.daddr);
    ip.payload_len = payload_len.to_be();
    ip.hop_limit = REPLY_TTL;
}

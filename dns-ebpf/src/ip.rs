//! IPv4 and IPv6 headers: is this DNS to one of our listen addresses (or,
//! in transparent mode, to a cluster DNS address), and the parts of the
//! pseudo-header the UDP checksum needs.

use aya_ebpf::programs::XdpContext;
use dns_common::{Config, Counter, MAX_CLUSTER_DNS_ADDRS, MAX_LISTEN_ADDRS};

use crate::csum::word32;
use crate::eth::ETH_LEN;
use crate::ptr::ptr_at;

use dns_common::wire::{IPPROTO_ICMPV6, REPLY_TTL};
pub use dns_common::wire::{IPPROTO_TCP, IPPROTO_UDP, IPV4_LEN, IPV6_LEN};

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

/// What the layers above need from the IP header.
///
/// Which of our addresses the packet is for (a listen address or, in
/// transparent mode, a cluster DNS address) is not kept here on purpose:
/// a value live through the answer path would make the verifier walk that
/// path once per value. [`cluster_query`] tells it afterwards, from the
/// packet.
pub struct Ip {
    /// Payload length the IP header declares (the UDP datagram).
    pub payload_len: usize,
    /// Pseudo-header sum without the length: addresses and protocol.
    pub pseudo_sum: u64,
    /// TCP to a listen address (only a failed-open connection is touched)
    /// rather than UDP.
    pub tcp: bool,
}

/// Whether a packet of `proto` to a listen address (`listen`) or a cluster
/// address (`cluster`) is ours to look at, and whether it is TCP. TCP to a
/// cluster address is left to the stack (kube-proxy).
#[inline(always)]
fn ours(proto: u8, listen: bool, cluster: bool) -> Result<bool, Counter> {
    match proto {
        IPPROTO_UDP if listen || cluster => Ok(false),
        IPPROTO_TCP if listen => Ok(true),
        _ => Err(Counter::PassNotDns),
    }
}

#[inline(always)]
pub fn parse_v4(ctx: &XdpContext, cfg: &Config) -> Result<Ip, Counter> {
    let ip = ptr_at::<Ipv4Hdr>(ctx, ETH_LEN).ok_or(Counter::PassMalformed)?;
    let ip = unsafe { &*ip };
    let tcp = ours(
        ip.proto,
        v4_is_ours(cfg, ip.daddr),
        cfg.transparent != 0 && v4_cluster_slot(cfg, ip.daddr).is_some(),
    )?;
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
        pseudo_sum: word32(s) + word32(d) + ip.proto as u64,
        tcp,
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

/// The slot of `daddr` (network order) among the cluster DNS addresses.
#[inline(always)]
pub fn v4_cluster_slot(cfg: &Config, daddr: u32) -> Option<usize> {
    let n = cfg.cluster_v4_count as usize;
    let mut i = 0;
    while i < MAX_CLUSTER_DNS_ADDRS {
        if i < n && cfg.cluster_v4_addrs[i] == daddr {
            return Some(i);
        }
        i += 1;
    }
    None
}

#[inline(always)]
pub fn parse_v6(ctx: &XdpContext, cfg: &Config) -> Result<Ip, Counter> {
    let ip = ptr_at::<Ipv6Hdr>(ctx, ETH_LEN).ok_or(Counter::PassMalformed)?;
    let ip = unsafe { &*ip };
    let listen = v6_is_ours(cfg, &ip.daddr);
    let cluster = cfg.transparent != 0 && v6_cluster_slot(cfg, &ip.daddr).is_some();
    if !listen && !cluster {
        return Err(Counter::PassNotDns);
    }
    let tcp = match ip.next_hdr {
        IPPROTO_UDP | IPPROTO_TCP => ours(ip.next_hdr, listen, cluster)?,
        IPPROTO_ICMPV6 => return Err(Counter::PassNotDns),
        // Extension headers (hop-by-hop, routing, fragment, ...) and
        // anything else are not walked.
        _ => return Err(Counter::PassIpUnsupported),
    };
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
    let mut sum = ip.next_hdr as u64;
    let mut i = 0;
    while i < 4 {
        sum += word32(u32::from_be(ip.saddr[i])) + word32(u32::from_be(ip.daddr[i]));
        i += 1;
    }
    Ok(Ip {
        payload_len,
        pseudo_sum: sum,
        tcp,
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
        if i < n && v6_eq(&cfg.v6_addrs[i], daddr) {
            return true;
        }
        i += 1;
    }
    false
}

/// The slot of `daddr` (network order words) among the cluster DNS
/// addresses.
#[inline(always)]
pub fn v6_cluster_slot(cfg: &Config, daddr: &[u32; 4]) -> Option<usize> {
    let n = cfg.cluster_v6_count as usize;
    let mut i = 0;
    while i < MAX_CLUSTER_DNS_ADDRS {
        if i < n && v6_eq(&cfg.cluster_v6_addrs[i], daddr) {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// Whether the query in the frame went to a cluster address (and not to a
/// listen address that is one too): read from its destination, or from
/// its source once `answered` turned it around.
#[inline(always)]
pub fn cluster_query<const V6: bool>(ctx: &XdpContext, cfg: &Config, answered: bool) -> bool {
    if cfg.transparent == 0 {
        return false;
    }
    if V6 {
        let Some(ip) = ptr_at::<Ipv6Hdr>(ctx, ETH_LEN) else {
            return false;
        };
        let ip = unsafe { &*ip };
        let a = if answered { &ip.saddr } else { &ip.daddr };
        !v6_is_ours(cfg, a) && v6_cluster_slot(cfg, a).is_some()
    } else {
        let Some(ip) = ptr_at::<Ipv4Hdr>(ctx, ETH_LEN) else {
            return false;
        };
        let ip = unsafe { &*ip };
        let a = if answered { ip.saddr } else { ip.daddr };
        !v4_is_ours(cfg, a) && v4_cluster_slot(cfg, a).is_some()
    }
}

/// Whether `daddr` (network order words, IPv4 in the first) is one of the
/// listen addresses.
#[inline(always)]
pub fn is_listen<const V6: bool>(cfg: &Config, daddr: &[u32; 4]) -> bool {
    if V6 {
        v6_is_ours(cfg, daddr)
    } else {
        v4_is_ours(cfg, daddr[0])
    }
}

/// An address from the config against one in a packet.
#[inline(always)]
pub fn v6_eq(a: &[u8; 16], packet: &[u32; 4]) -> bool {
    let w = |k: usize| u32::from_ne_bytes([a[k], a[k + 1], a[k + 2], a[k + 3]]);
    w(0) == packet[0] && w(4) == packet[1] && w(8) == packet[2] && w(12) == packet[3]
}

/// An IPv6 address from the config as the packet holds it.
#[inline(always)]
pub fn v6_words(a: &[u8; 16]) -> [u32; 4] {
    let w = |k: usize| u32::from_ne_bytes([a[k], a[k + 1], a[k + 2], a[k + 3]]);
    [w(0), w(4), w(8), w(12)]
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

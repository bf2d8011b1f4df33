//! Turning the query frame into the answer in place: resize, swap the
//! addresses, write header, body and OPT, and the checksums.

use core::ffi::c_void;

use aya_ebpf::helpers::generated::{bpf_xdp_adjust_tail, bpf_xdp_store_bytes};
use aya_ebpf::programs::XdpContext;
use dns_common::{AnswerEntry, Counter, ENTRY_FLAG_AUTHORITATIVE, MAX_TTLS};

use crate::csum::{fold, shift_odd, udp_finish};
use crate::dns::{DNS_HDR_LEN, DnsHdr, OPT_LEN, Query};
use crate::eth::{ETH_LEN, EthHdr, swap_macs};
use crate::ip::{IPV4_LEN, IPV6_LEN, Ipv4Hdr, Ipv6Hdr, reply_v4, reply_v6};
use crate::ptr::ptr_at;
use crate::udp::{UDP_LEN, UdpHdr};

const FLAG_QR: u16 = 0x8000;
pub const FLAG_AA: u16 = 0x0400;
const FLAG_RA: u16 = 0x0080;
pub const RCODE_MASK: u16 = 0x000f;
const TYPE_OPT_HI: u8 = 0;
const TYPE_OPT_LO: u8 = 41;

/// Everything the answer needs, computed before the frame is touched.
pub struct Reply<'a> {
    pub query: &'a Query,
    pub entry: &'a AnswerEntry,
    pub body_len: usize,
    /// The value of every TTL field of the body.
    pub ttl: u32,
    /// Body checksum with the TTLs filled in, body-relative parity.
    pub body_sum: u16,
    /// Pseudo-header sum without the length.
    pub pseudo_sum: u64,
    pub edns_udp_size: u16,
}

impl Reply<'_> {
    /// DNS message length of the answer.
    #[inline(always)]
    pub fn dns_len(&self) -> usize {
        DNS_HDR_LEN + self.query.qlen() + self.body_len + if self.query.edns { OPT_LEN } else { 0 }
    }
}

/// Rewrites the frame into the answer. `V6` picks the IP header; the DNS
/// message starts at `l4 + UDP_LEN`. Returns the header flags written
/// (host order): what the answer says, whatever the entry's layout.
#[inline(always)]
pub fn write<const V6: bool>(ctx: &XdpContext, r: &Reply<'_>) -> Result<u16, Counter> {
    let l4 = ETH_LEN + if V6 { IPV6_LEN } else { IPV4_LEN };
    let dns_off = l4 + UDP_LEN;
    let udp_len = UDP_LEN + r.dns_len();
    resize(ctx, l4 + udp_len)?;
    // Every packet pointer is re-derived after the resize.
    let ports_sum = turn_around::<V6>(ctx, l4, udp_len)?;
    let (flags, header_sum) = write_header(ctx, dns_off, r)?;
    let q = r.query;
    let body_off = dns_off + DNS_HDR_LEN + q.qlen();
    write_body(ctx, body_off, r)?;
    let opt_sum = if q.edns {
        write_opt(ctx, body_off + r.body_len, r)?
    } else {
        0
    };
    let sum = r.pseudo_sum
        + 2 * udp_len as u64
        + ports_sum
        + header_sum
        + q.qsum as u64
        + shift_odd(r.body_sum, q.qlen() & 1 == 1) as u64
        + opt_sum as u64;
    let udp = ptr_at::<UdpHdr>(ctx, l4).ok_or(Counter::PassHelperFailed)?;
    unsafe { (*udp).check = udp_finish(sum).to_be() };
    Ok(flags)
}

/// Grows or shrinks the frame to `frame_len` bytes.
#[inline(always)]
fn resize(ctx: &XdpContext, frame_len: usize) -> Result<(), Counter> {
    let cur_len = ctx.data_end() - ctx.data();
    let delta = frame_len as i32 - cur_len as i32;
    if delta != 0 && unsafe { bpf_xdp_adjust_tail(ctx.ctx, delta) } != 0 {
        return Err(Counter::PassHelperFailed);
    }
    Ok(())
}

/// Sends Ethernet, IP and UDP back where they came from, with the new
/// lengths. Returns the ports' contribution to the UDP checksum.
#[inline(always)]
fn turn_around<const V6: bool>(
    ctx: &XdpContext,
    l4: usize,
    udp_len: usize,
) -> Result<u64, Counter> {
    let eth = ptr_at::<EthHdr>(ctx, 0).ok_or(Counter::PassHelperFailed)?;
    swap_macs(eth);
    if V6 {
        let ip = ptr_at::<Ipv6Hdr>(ctx, ETH_LEN).ok_or(Counter::PassHelperFailed)?;
        reply_v6(ip, udp_len as u16);
    } else {
        let ip = ptr_at::<Ipv4Hdr>(ctx, ETH_LEN).ok_or(Counter::PassHelperFailed)?;
        reply_v4(ip, (IPV4_LEN + udp_len) as u16);
    }
    let udp = ptr_at::<UdpHdr>(ctx, l4).ok_or(Counter::PassHelperFailed)?;
    crate::udp::reply(udp, udp_len as u16);
    let (sport, dport) = unsafe { (u16::from_be((*udp).source), u16::from_be((*udp).dest)) };
    Ok(sport as u64 + dport as u64)
}

/// The answer's DNS header over the query's (ID and question count stay).
/// Returns the flags written and the header's contribution to the UDP
/// checksum.
#[inline(always)]
fn write_header(ctx: &XdpContext, dns_off: usize, r: &Reply<'_>) -> Result<(u16, u64), Counter> {
    let (q, e) = (r.query, r.entry);
    let mut flags = FLAG_QR | FLAG_RA | q.rd_cd | (e.rcode as u16 & RCODE_MASK);
    if e.flags & ENTRY_FLAG_AUTHORITATIVE != 0 {
        flags |= FLAG_AA;
    }
    let arcount = e.arcount + q.edns as u16;
    let hdr = ptr_at::<DnsHdr>(ctx, dns_off).ok_or(Counter::PassHelperFailed)?;
    unsafe {
        (*hdr).flags = flags.to_be();
        (*hdr).ancount = e.ancount.to_be();
        (*hdr).nscount = e.nscount.to_be();
        (*hdr).arcount = arcount.to_be();
    }
    // QDCOUNT is 1.
    let sum = q.id as u64 + flags as u64 + 1 + e.ancount as u64 + e.nscount as u64 + arcount as u64;
    Ok((flags, sum))
}

/// The entry's records, after the echoed question: stored straight from
/// the slot (docs/design.md#torn-reads), then the TTL written into each
/// TTL field (`entry::ttl_sum` checked the offsets against the body).
#[inline(always)]
fn write_body(ctx: &XdpContext, body_off: usize, r: &Reply<'_>) -> Result<(), Counter> {
    let body_len = r.body_len;
    if body_len == 0 {
        return Ok(());
    }
    // Masked so the verifier sees 1..=512 however LLVM folds the checks
    // above (body_len is at most MAX_BODY_LEN already).
    let n = ((body_len - 1) & (dns_common::MAX_BODY_LEN - 1)) + 1;
    let rc = unsafe {
        bpf_xdp_store_bytes(
            ctx.ctx,
            body_off as u32,
            r.entry.body.as_ptr() as *mut c_void,
            n as u32,
        )
    };
    if rc != 0 {
        return Err(Counter::PassHelperFailed);
    }
    let ttl = r.ttl.to_be_bytes();
    let count = crate::entry::ttl_count_of(r.entry);
    let mut i = 0;
    while i < MAX_TTLS {
        if i >= count {
            break;
        }
        let off = r.entry.ttl_offsets[i] as usize & (dns_common::MAX_BODY_LEN - 1);
        let p = ptr_at::<[u8; 4]>(ctx, body_off + off).ok_or(Counter::PassHelperFailed)?;
        let p = p as *mut u8;
        unsafe {
            *p = ttl[0];
            *p.add(1) = ttl[1];
            *p.add(2) = ttl[2];
            *p.add(3) = ttl[3];
        }
        i += 1;
    }
    Ok(())
}

/// Our OPT record (no options) at `off`, for a query that had one.
/// Returns its contribution to the UDP checksum.
#[inline(always)]
fn write_opt(ctx: &XdpContext, off: usize, r: &Reply<'_>) -> Result<u16, Counter> {
    let opt = ptr_at::<[u8; OPT_LEN]>(ctx, off).ok_or(Counter::PassHelperFailed)?;
    let size = r.edns_udp_size.to_be_bytes();
    let rr = [
        0,
        TYPE_OPT_HI,
        TYPE_OPT_LO,
        size[0],
        size[1],
        0,
        0,
        r.query.edns_do,
        0,
        0,
        0,
    ];
    let p = opt as *mut u8;
    let mut k = 0;
    while k < OPT_LEN {
        // Volatile: plain stores of zeros become a call to a byte-loop memset.
        unsafe { core::ptr::write_volatile(p.add(k), rr[k]) };
        k += 1;
    }
    // Byte 7 (the DO flag) is the low byte of its word.
    let even = fold(
        ((TYPE_OPT_LO as u64) << 8)
            + size[0] as u64
            + ((size[1] as u64) << 8)
            + r.query.edns_do as u64,
    );
    Ok(shift_odd(even, (r.query.qlen() + r.body_len) & 1 == 1))
}

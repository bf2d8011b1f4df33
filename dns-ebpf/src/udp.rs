//! UDP header, and whether its checksum is one the stack would accept.

use aya_ebpf::programs::XdpContext;
use dns_common::Counter;

use crate::csum::fold;
use crate::ip::Ip;
use crate::ptr::ptr_at;

pub use dns_common::wire::UDP_LEN;

#[repr(C)]
pub struct UdpHdr {
    pub source: u16,
    pub dest: u16,
    pub len: u16,
    pub check: u16,
}

/// What the answer and the checksum check need from the UDP header, host
/// order.
pub struct Udp {
    /// The DNS message length.
    pub dns_len: usize,
    /// Sum of the header's words without the checksum field.
    pub header_sum: u64,
    pub check: u16,
}

/// Checks the datagram goes to our port from a port the stack would
/// answer and its length agrees with the IP header.
#[inline(always)]
pub fn parse(ctx: &XdpContext, off: usize, ip: &Ip, port: u16) -> Result<Udp, Counter> {
    let udp = ptr_at::<UdpHdr>(ctx, off).ok_or(Counter::PassMalformed)?;
    let udp = unsafe { &*udp };
    let dest = u16::from_be(udp.dest);
    if dest != port {
        return Err(Counter::PassNotDns);
    }
    let len = u16::from_be(udp.len) as usize;
    if len != ip.payload_len || len < UDP_LEN {
        return Err(Counter::PassMalformed);
    }
    let source = u16::from_be(udp.source);
    if source == 0 {
        // No port to answer to.
        return Err(Counter::PassSource);
    }
    Ok(Udp {
        dns_len: len - UDP_LEN,
        header_sum: source as u64 + dest as u64 + len as u64,
        check: u16::from_be(udp.check),
    })
}

/// Whether the stack would accept the datagram's checksum, given the sum
/// of the DNS message (`msg_sum`, big-endian space).
///
/// A query from a local socket (a pod's, through its veth) carries
/// CHECKSUM_PARTIAL: the field holds only the folded pseudo-header sum,
/// which the device was to complete, and the stack trusts such a frame
/// without verifying it. That seed is accepted as it is; rejecting it would
/// pass every pod's query. Anything else must verify: a zero field means
/// "no checksum" over IPv4 and is invalid over IPv6
/// (docs/design.md#checksums).
#[inline(always)]
pub fn checksum_ok<const V6: bool>(udp: &Udp, ip: &Ip, msg_sum: u16) -> bool {
    if udp.check == 0 {
        return !V6;
    }
    let pseudo = ip.pseudo_sum + (UDP_LEN + udp.dns_len) as u64;
    if udp.check == fold(pseudo) {
        return true;
    }
    fold(pseudo + udp.header_sum + udp.check as u64 + msg_sum as u64) == 0xffff
}

/// Turns the UDP header around; the checksum is written last.
#[inline(always)]
pub fn reply(udp: *mut UdpHdr, len: u16) {
    let udp = unsafe { &mut *udp };
    core::mem::swap(&mut udp.source, &mut udp.dest);
    udp.len = len.to_be();
    udp.check = 0;
}

//! UDP header.

use aya_ebpf::programs::XdpContext;
use dns_common::Counter;

use crate::ip::Ip;
use crate::ptr::ptr_at;

pub const UDP_LEN: usize = 8;

#[repr(C)]
pub struct UdpHdr {
    pub source: u16,
    pub dest: u16,
    pub len: u16,
    pub check: u16,
}

/// Checks the datagram goes to our port and its length agrees with the IP
/// header; returns the DNS message length.
#[inline(always)]
pub fn parse(ctx: &XdpContext, off: usize, ip: &Ip, port: u16) -> Result<usize, Counter> {
    let udp = ptr_at::<UdpHdr>(ctx, off).ok_or(Counter::PassMalformed)?;
    let udp = unsafe { &*udp };
    if u16::from_be(udp.dest) != port {
        return Err(Counter::PassNotDns);
    }
    let len = u16::from_be(udp.len) as usize;
    if len != ip.payload_len || len < UDP_LEN {
        return Err(Counter::PassMalformed);
    }
    Ok(len - UDP_LEN)
}

/// Turns the UDP header around; the checksum is written last.
#[inline(always)]
pub fn reply(udp: *mut UdpHdr, len: u16) {
    let udp = unsafe { &mut *udp };
    core::mem::swap(&mut udp.source, &mut udp.dest);
    udp.len = len.to_be();
    udp.check = 0;
}

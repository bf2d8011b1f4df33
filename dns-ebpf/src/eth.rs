//! Ethernet II header.

use aya_ebpf::programs::XdpContext;
use dns_common::{Counter, InterfaceMacs};

use crate::ptr::ptr_at;

pub use dns_common::wire::ETH_LEN;
use dns_common::wire::{ETH_P_8021AD, ETH_P_8021Q, ETH_P_IP, ETH_P_IPV6};

#[repr(C)]
pub struct EthHdr {
    pub dst: [u8; 6],
    pub src: [u8; 6],
    pub ether_type: u16,
}

pub enum L3 {
    V4,
    V6,
}

/// Which network protocol follows the Ethernet header.
#[inline(always)]
pub fn parse(ctx: &XdpContext) -> Result<L3, Counter> {
    let eth = ptr_at::<EthHdr>(ctx, 0).ok_or(Counter::PassNotDns)?;
    match u16::from_be(unsafe { (*eth).ether_type }) {
        ETH_P_IP => Ok(L3::V4),
        ETH_P_IPV6 => Ok(L3::V6),
        ETH_P_8021Q | ETH_P_8021AD => Err(Counter::PassVlan),
        _ => Err(Counter::PassNotDns),
    }
}

/// Whether the frame was sent to this interface the way the stack would
/// take it: to the interface's own unicast address, or to its bridge's
/// when the interface is a bridge port. A frame to any other address
/// (broadcast, multicast, another host) is not ours to answer, and the
/// answer would carry that address as its source
/// (docs/design.md#accepted-frames).
#[inline(always)]
pub fn to_us(ctx: &XdpContext, macs: &InterfaceMacs) -> Result<(), Counter> {
    let eth = ptr_at::<EthHdr>(ctx, 0).ok_or(Counter::PassMalformed)?;
    let dst = unsafe { (*eth).dst };
    const GROUP_BIT: u8 = 0x01;
    if dst[0] & GROUP_BIT != 0 {
        return Err(Counter::PassMac);
    }
    if dst == macs.mac || (macs.bridge_mac != [0; 6] && dst == macs.bridge_mac) {
        return Ok(());
    }
    Err(Counter::PassMac)
}

/// Sends the frame back where it came from.
#[inline(always)]
pub fn swap_macs(eth: *mut EthHdr) {
    unsafe { core::mem::swap(&mut (*eth).dst, &mut (*eth).src) };
}

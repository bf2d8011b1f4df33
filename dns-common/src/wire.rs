//! Header sizes and protocol numbers of the frames the XDP program parses
//! and writes, and the transparent path and the tests build: one copy for
//! every side.

/// Ethernet II header, without a VLAN tag.
pub const ETH_LEN: usize = 14;
pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;
/// 802.1Q VLAN tag.
pub const ETH_P_8021Q: u16 = 0x8100;
/// 802.1ad (QinQ) service tag.
pub const ETH_P_8021AD: u16 = 0x88a8;
/// IPv4 header without options.
pub const IPV4_LEN: usize = 20;
/// IPv6 fixed header.
pub const IPV6_LEN: usize = 40;
pub const UDP_LEN: usize = 8;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_ICMPV6: u8 = 58;
/// TTL / hop limit of answers: a fresh value, as any host would send.
pub const REPLY_TTL: u8 = 64;

//! Crafted Ethernet/IPv4/IPv6/UDP frames for the XDP tests, and an
//! independent parser that verifies the IPv4 header checksum and the full
//! UDP checksum of what the program sends back.
//!
//! The checksum code here is deliberately separate from `dns_common::hash`
//! so a shared bug cannot hide itself.

use std::net::{IpAddr, SocketAddr};

pub use dns_common::wire::{ETH_LEN, IPPROTO_TCP, IPPROTO_UDP, IPV4_LEN, IPV6_LEN, UDP_LEN};
use dns_common::wire::{ETH_P_8021Q, ETH_P_IP, ETH_P_IPV6};
/// IPv6 hop-by-hop options extension header.
pub const IPPROTO_HOPOPTS: u8 = 0;

pub const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
pub const SERVER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

/// How to build a frame; the defaults give a plain, valid UDP datagram.
#[derive(Clone, Debug)]
pub struct FrameSpec {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    /// IP protocol / next header for the payload (UDP by default).
    pub proto: u8,
    /// Insert an 802.1Q tag with this VLAN id.
    pub vlan: Option<u16>,
    /// IPv4 only: add 4 bytes of options (IHL 6).
    pub ipv4_options: bool,
    /// IPv4 only: set the more-fragments flag.
    pub more_fragments: bool,
    /// IPv6 only: put an empty hop-by-hop header before UDP.
    pub hop_by_hop: bool,
    /// Write a correct UDP checksum instead of the CHECKSUM_PARTIAL-style
    /// garbage (a pseudo-header-only sum) a local socket hands to XDP.
    pub full_udp_checksum: bool,
    /// Extra bytes after the IP datagram (Ethernet padding).
    pub eth_padding: usize,
}

impl FrameSpec {
    pub fn udp(src: SocketAddr, dst: SocketAddr) -> Self {
        Self {
            src,
            dst,
            proto: IPPROTO_UDP,
            vlan: None,
            ipv4_options: false,
            more_fragments: false,
            hop_by_hop: false,
            full_udp_checksum: false,
            eth_padding: 0,
        }
    }

    /// The frame carrying `payload` (a DNS message for UDP).
    pub fn build(&self, payload: &[u8]) -> Vec<u8> {
        let mut f = Vec::with_capacity(128 + payload.len());
        f.extend_from_slice(&SERVER_MAC);
        f.extend_from_slice(&CLIENT_MAC);
        if let Some(vlan) = self.vlan {
            f.extend_from_slice(&ETH_P_8021Q.to_be_bytes());
            f.extend_from_slice(&vlan.to_be_bytes());
        }
        let mut l4 = Vec::with_capacity(UDP_LEN + payload.len());
        l4.extend_from_slice(&self.src.port().to_be_bytes());
        l4.extend_from_slice(&self.dst.port().to_be_bytes());
        l4.extend_from_slice(&((UDP_LEN + payload.len()) as u16).to_be_bytes());
        l4.extend_from_slice(&[0, 0]);
        l4.extend_from_slice(payload);
        let pseudo = pseudo_sum(self.src.ip(), self.dst.ip(), l4.len());
        let check = if self.full_udp_checksum {
            finish(pseudo + sum_bytes(&l4))
        } else {
            // What a local socket's CHECKSUM_PARTIAL leaves in the field.
            fold(pseudo)
        };
        l4[6..8].copy_from_slice(&check.to_be_bytes());
        match (self.src.ip(), self.dst.ip()) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                f.extend_from_slice(&ETH_P_IP.to_be_bytes());
                let opts: &[u8] = if self.ipv4_options {
                    &[1, 1, 1, 0]
                } else {
                    &[]
                };
                let hl = IPV4_LEN + opts.len();
                let mut ip = vec![0x40 | (hl / 4) as u8, 0];
                ip.extend_from_slice(&((hl + l4.len()) as u16).to_be_bytes());
                ip.extend_from_slice(&0x1234u16.to_be_bytes());
                let frag: u16 = if self.more_fragments { 0x2000 } else { 0x4000 };
                ip.extend_from_slice(&frag.to_be_bytes());
                ip.extend_from_slice(&[63, self.proto, 0, 0]);
                ip.extend_from_slice(&s.octets());
                ip.extend_from_slice(&d.octets());
                ip.extend_from_slice(opts);
                let c = finish(sum_bytes(&ip));
                ip[10..12].copy_from_slice(&c.to_be_bytes());
                f.extend_from_slice(&ip);
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                f.extend_from_slice(&ETH_P_IPV6.to_be_bytes());
                let ext_len = if self.hop_by_hop { 8 } else { 0 };
                f.extend_from_slice(&[0x60, 0, 0, 0]);
                f.extend_from_slice(&((ext_len + l4.len()) as u16).to_be_bytes());
                f.push(if self.hop_by_hop {
                    IPPROTO_HOPOPTS
                } else {
                    self.proto
                });
                f.push(63);
                f.extend_from_slice(&s.octets());
                f.extend_from_slice(&d.octets());
                if self.hop_by_hop {
                    // Next header, length 0 (8 bytes), PadN option.
                    f.extend_from_slice(&[self.proto, 0, 1, 4, 0, 0, 0, 0]);
                }
            }
            _ => panic!("frame source and destination must be the same IP family"),
        }
        f.extend_from_slice(&l4);
        f.resize(f.len() + self.eth_padding, 0);
        f
    }
}

/// A UDP datagram the program sent, with its checksums verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpFrame {
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
    pub src: SocketAddr,
    pub dst: SocketAddr,
    /// IPv4 TTL or IPv6 hop limit.
    pub hop_limit: u8,
    pub payload: Vec<u8>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame too short: {0}")]
    Short(&'static str),
    #[error("not IPv4/IPv6 UDP: {0}")]
    Unsupported(&'static str),
    #[error("length fields disagree: {0}")]
    Length(&'static str),
    #[error("IPv4 header checksum is wrong")]
    IpChecksum,
    #[error("UDP checksum {found:#06x} is wrong (expected {expected:#06x})")]
    UdpChecksum { found: u16, expected: u16 },
}

/// Parses a plain (untagged, no options) UDP frame and verifies every
/// length and checksum as a receiving host would, plus a zero UDP checksum
/// is refused (the program must always send a full one).
pub fn parse_udp(frame: &[u8]) -> Result<UdpFrame, FrameError> {
    if frame.len() < ETH_LEN {
        return Err(FrameError::Short("ethernet"));
    }
    let dst_mac = frame[0..6].try_into().unwrap();
    let src_mac = frame[6..12].try_into().unwrap();
    let ethertype = u16::from_be_bytes([frame[12], frame[13]]);
    let l3 = &frame[ETH_LEN..];
    let (src, dst, hop_limit, l4) = match ethertype {
        ETH_P_IP => {
            if l3.len() < IPV4_LEN {
                return Err(FrameError::Short("ipv4 header"));
            }
            if l3[0] != 0x45 || l3[9] != IPPROTO_UDP {
                return Err(FrameError::Unsupported("ipv4 options or not UDP"));
            }
            let tot = u16::from_be_bytes([l3[2], l3[3]]) as usize;
            if tot != l3.len() {
                return Err(FrameError::Length("ipv4 total length vs frame"));
            }
            if fold(sum_bytes(&l3[..IPV4_LEN])) != 0xffff {
                return Err(FrameError::IpChecksum);
            }
            let s: [u8; 4] = l3[12..16].try_into().unwrap();
            let d: [u8; 4] = l3[16..20].try_into().unwrap();
            (IpAddr::from(s), IpAddr::from(d), l3[8], &l3[IPV4_LEN..])
        }
        ETH_P_IPV6 => {
            if l3.len() < IPV6_LEN {
                return Err(FrameError::Short("ipv6 header"));
            }
            if l3[6] != IPPROTO_UDP || l3[0] >> 4 != 6 {
                return Err(FrameError::Unsupported("ipv6 next header not UDP"));
            }
            let plen = u16::from_be_bytes([l3[4], l3[5]]) as usize;
            if plen + IPV6_LEN != l3.len() {
                return Err(FrameError::Length("ipv6 payload length vs frame"));
            }
            let s: [u8; 16] = l3[8..24].try_into().unwrap();
            let d: [u8; 16] = l3[24..40].try_into().unwrap();
            (IpAddr::from(s), IpAddr::from(d), l3[7], &l3[IPV6_LEN..])
        }
        _ => return Err(FrameError::Unsupported("ethertype")),
    };
    if l4.len() < UDP_LEN {
        return Err(FrameError::Short("udp header"));
    }
    let ulen = u16::from_be_bytes([l4[4], l4[5]]) as usize;
    if ulen != l4.len() {
        return Err(FrameError::Length("udp length vs ip payload"));
    }
    let found = u16::from_be_bytes([l4[6], l4[7]]);
    let mut zeroed = l4.to_vec();
    zeroed[6] = 0;
    zeroed[7] = 0;
    let expected = finish(pseudo_sum(src, dst, ulen) + sum_bytes(&zeroed));
    if found != expected {
        return Err(FrameError::UdpChecksum { found, expected });
    }
    let sport = u16::from_be_bytes([l4[0], l4[1]]);
    let dport = u16::from_be_bytes([l4[2], l4[3]]);
    Ok(UdpFrame {
        dst_mac,
        src_mac,
        src: SocketAddr::new(src, sport),
        dst: SocketAddr::new(dst, dport),
        hop_limit,
        payload: l4[UDP_LEN..].to_vec(),
    })
}

fn pseudo_sum(src: IpAddr, dst: IpAddr, udp_len: usize) -> u64 {
    pseudo_sum_of(src, dst, IPPROTO_UDP, udp_len)
}

fn pseudo_sum_of(src: IpAddr, dst: IpAddr, proto: u8, len: usize) -> u64 {
    let addrs = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => [s.octets().to_vec(), d.octets().to_vec()].concat(),
        (IpAddr::V6(s), IpAddr::V6(d)) => [s.octets().to_vec(), d.octets().to_vec()].concat(),
        _ => panic!("mixed address families"),
    };
    sum_bytes(&addrs) + u64::from(proto) + len as u64
}

/// TCP header flags.
pub const TCP_SYN: u8 = 0x02;
pub const TCP_ACK: u8 = 0x10;

/// A TCP segment without payload from `src` to `dst` with `flags`, as a
/// pod's socket hands it to the host (the checksum field holds the
/// pseudo-header seed of `CHECKSUM_PARTIAL`), or with a full checksum.
pub fn tcp_frame(src: SocketAddr, dst: SocketAddr, flags: u8, full_checksum: bool) -> Vec<u8> {
    let mut tcp = Vec::with_capacity(20);
    tcp.extend_from_slice(&src.port().to_be_bytes());
    tcp.extend_from_slice(&dst.port().to_be_bytes());
    tcp.extend_from_slice(&0x0102_0304u32.to_be_bytes());
    tcp.extend_from_slice(&0u32.to_be_bytes());
    tcp.extend_from_slice(&[5 << 4, flags, 0xff, 0xff, 0, 0, 0, 0]);
    let pseudo = pseudo_sum_of(src.ip(), dst.ip(), IPPROTO_TCP, tcp.len());
    let check = if full_checksum {
        !fold(pseudo + sum_bytes(&tcp))
    } else {
        fold(pseudo)
    };
    tcp[16..18].copy_from_slice(&check.to_be_bytes());
    let mut spec = FrameSpec::udp(src, dst);
    spec.proto = IPPROTO_TCP;
    // The UDP frame's IP header with the TCP segment in place of UDP.
    let udp = spec.build(&[]);
    let l4 = udp.len() - UDP_LEN;
    let mut frame = udp[..l4].to_vec();
    frame.extend_from_slice(&tcp);
    let delta = tcp.len() - UDP_LEN;
    if src.is_ipv4() {
        let tot = u16::from_be_bytes([frame[ETH_LEN + 2], frame[ETH_LEN + 3]]) as usize + delta;
        frame[ETH_LEN + 2..ETH_LEN + 4].copy_from_slice(&(tot as u16).to_be_bytes());
        frame[ETH_LEN + 10..ETH_LEN + 12].copy_from_slice(&[0, 0]);
        let c = !fold(sum_bytes(&frame[ETH_LEN..ETH_LEN + IPV4_LEN]));
        frame[ETH_LEN + 10..ETH_LEN + 12].copy_from_slice(&c.to_be_bytes());
    } else {
        let plen = u16::from_be_bytes([frame[ETH_LEN + 4], frame[ETH_LEN + 5]]) as usize + delta;
        frame[ETH_LEN + 4..ETH_LEN + 6].copy_from_slice(&(plen as u16).to_be_bytes());
    }
    frame
}

/// A TCP frame's addresses and ports, and how its checksum reads: the
/// pseudo-header seed, a full checksum that verifies, or neither.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpChecksum {
    Seed,
    Full,
    Wrong,
}

/// Parses a plain (no options) TCP frame: (source, destination, checksum
/// state); panics on anything else, and on a wrong IPv4 header checksum.
pub fn parse_tcp(frame: &[u8]) -> (SocketAddr, SocketAddr, TcpChecksum) {
    if u16::from_be_bytes([frame[12], frame[13]]) == ETH_P_IP {
        assert_eq!(
            fold(sum_bytes(&frame[ETH_LEN..ETH_LEN + IPV4_LEN])),
            0xffff,
            "IPv4 header checksum"
        );
    }
    let (src, dst, l4) = addresses_and_l4(frame);
    let pseudo = pseudo_sum_of(src, dst, IPPROTO_TCP, l4.len());
    let check = u16::from_be_bytes([l4[16], l4[17]]);
    let state = if check == fold(pseudo) {
        TcpChecksum::Seed
    } else if fold(pseudo + sum_bytes(l4)) == 0xffff {
        TcpChecksum::Full
    } else {
        TcpChecksum::Wrong
    };
    let port = |at: usize| u16::from_be_bytes([l4[at], l4[at + 1]]);
    (
        SocketAddr::new(src, port(0)),
        SocketAddr::new(dst, port(2)),
        state,
    )
}

/// Whether a UDP frame's checksum field holds exactly the pseudo-header
/// seed of `CHECKSUM_PARTIAL` for its current addresses.
pub fn udp_checksum_is_seed(frame: &[u8]) -> bool {
    let (src, dst, l4) = addresses_and_l4(frame);
    u16::from_be_bytes([l4[6], l4[7]]) == fold(pseudo_sum(src, dst, l4.len()))
}

/// An IPv4 or IPv6 frame's source, destination and transport bytes.
fn addresses_and_l4(frame: &[u8]) -> (IpAddr, IpAddr, &[u8]) {
    let l3 = &frame[ETH_LEN..];
    if u16::from_be_bytes([frame[12], frame[13]]) == ETH_P_IP {
        let s: [u8; 4] = l3[12..16].try_into().unwrap();
        let d: [u8; 4] = l3[16..20].try_into().unwrap();
        (s.into(), d.into(), &l3[IPV4_LEN..])
    } else {
        let s: [u8; 16] = l3[8..24].try_into().unwrap();
        let d: [u8; 16] = l3[24..40].try_into().unwrap();
        (s.into(), d.into(), &l3[IPV6_LEN..])
    }
}

/// Whether an IPv4 frame's header checksum verifies (IPv6 has none).
pub fn ip_header_ok(frame: &[u8]) -> bool {
    let ethertype = u16::from_be_bytes([frame[12], frame[13]]);
    ethertype != ETH_P_IP || fold(sum_bytes(&frame[ETH_LEN..ETH_LEN + IPV4_LEN])) == 0xffff
}

/// Plain RFC 1071 running sum of big-endian 16-bit words.
fn sum_bytes(bytes: &[u8]) -> u64 {
    bytes
        .chunks(2)
        .map(|c| u64::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum()
}

fn fold(mut sum: u64) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// The checksum field value for a running sum (UDP sends 0 as 0xffff).
fn finish(sum: u64) -> u16 {
    match !fold(sum) {
        0 => 0xffff,
        c => c,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_frames_parse_back_with_valid_checksums() {
        for (src, dst) in [
            ("10.0.0.2:40000", "169.254.20.10:53"),
            ("[fd00::2]:40000", "[fd00::53]:53"),
        ] {
            let mut spec = FrameSpec::udp(src.parse().unwrap(), dst.parse().unwrap());
            spec.full_udp_checksum = true;
            for payload in [&b"odd"[..], b"even", b""] {
                let f = spec.build(payload);
                let p = parse_udp(&f).unwrap();
                assert_eq!(p.payload, payload);
                assert_eq!(p.src, spec.src);
            }
        }
    }

    #[test]
    fn partial_checksum_is_rejected() {
        let spec = FrameSpec::udp(
            "10.0.0.2:40000".parse().unwrap(),
            "169.254.20.10:53".parse().unwrap(),
        );
        assert!(matches!(
            parse_udp(&spec.build(b"abcd")),
            Err(FrameError::UdpChecksum { .. })
        ));
    }
}

//! The frames of the transparent path: a query as the XDP program put it
//! into the ring (header, then the Ethernet frame it received), and the
//! answer as a whole Ethernet frame, sent back where the query came from
//! with the addresses and ports turned around, so it comes from the
//! cluster DNS address the pod asked.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use dns_common::RingHeader;
use dns_common::hash::{fold, ones_sum};
use dns_common::wire::{
    ETH_LEN, ETH_P_IP, ETH_P_IPV6, IPPROTO_UDP, IPV4_LEN, IPV6_LEN, REPLY_TTL, UDP_LEN,
};

/// IPv4 "don't fragment": answers are sized for the client already.
const IP_DF: u16 = 0x4000;
const HEADER_LEN: usize = size_of::<RingHeader>();

/// Why a ring record was not answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("record shorter than its header or its frame")]
    Short,
    #[error("not IPv4 or IPv6")]
    NotIp,
    #[error("IP header the kernel path does not pass on (options, extension headers, not UDP)")]
    Unsupported,
    #[error("lengths disagree")]
    Length,
    #[error("bad UDP checksum")]
    Checksum,
}

/// A query from the ring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query<'a> {
    /// Where it came in, and where the answer goes out.
    pub ifindex: u32,
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    ethertype: u16,
    pub src: IpAddr,
    /// The cluster DNS address the pod asked; the answer's source.
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    /// The DNS message.
    pub dns: &'a [u8],
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn addr_bytes(ip: &IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// The UDP pseudo-header's sum, length included.
fn pseudo_sum(src: &IpAddr, dst: &IpAddr, udp_len: usize) -> u64 {
    ones_sum(&addr_bytes(src)) as u64
        + ones_sum(&addr_bytes(dst)) as u64
        + IPPROTO_UDP as u64
        + udp_len as u64
}

impl<'a> Query<'a> {
    /// Reads a ring record. The XDP program checked the frame already;
    /// this checks again what the answer depends on, and the UDP checksum
    /// the program could not check for every query it passes on.
    pub fn parse(record: &'a [u8]) -> Result<Self, FrameError> {
        if record.len() < HEADER_LEN {
            return Err(FrameError::Short);
        }
        let ifindex = u32::from_ne_bytes(record[..4].try_into().expect("4 bytes"));
        let frame_len = u16::from_ne_bytes([record[4], record[5]]) as usize;
        let frame = record
            .get(HEADER_LEN..HEADER_LEN + frame_len)
            .ok_or(FrameError::Short)?;
        if frame.len() < ETH_LEN {
            return Err(FrameError::Short);
        }
        let ethertype = be16(frame, 12);
        let ip = &frame[ETH_LEN..];
        let (src, dst, udp) = match ethertype {
            ETH_P_IP => {
                if ip.len() < IPV4_LEN {
                    return Err(FrameError::Short);
                }
                if ip[0] != 0x45 || ip[9] != IPPROTO_UDP || be16(ip, 6) & 0x3fff != 0 {
                    return Err(FrameError::Unsupported);
                }
                let total = be16(ip, 2) as usize;
                let udp = ip.get(IPV4_LEN..total).ok_or(FrameError::Length)?;
                let octets = |at: usize| Ipv4Addr::new(ip[at], ip[at + 1], ip[at + 2], ip[at + 3]);
                (IpAddr::V4(octets(12)), IpAddr::V4(octets(16)), udp)
            }
            ETH_P_IPV6 => {
                if ip.len() < IPV6_LEN {
                    return Err(FrameError::Short);
                }
                if ip[0] >> 4 != 6 || ip[6] != IPPROTO_UDP {
                    return Err(FrameError::Unsupported);
                }
                let payload = be16(ip, 4) as usize;
                let udp = ip
                    .get(IPV6_LEN..IPV6_LEN + payload)
                    .ok_or(FrameError::Length)?;
                let octets =
                    |at: usize| -> [u8; 16] { ip[at..at + 16].try_into().expect("16 bytes") };
                (
                    IpAddr::V6(Ipv6Addr::from(octets(8))),
                    IpAddr::V6(Ipv6Addr::from(octets(24))),
                    udp,
                )
            }
            _ => return Err(FrameError::NotIp),
        };
        if udp.len() < UDP_LEN || be16(udp, 4) as usize != udp.len() {
            return Err(FrameError::Length);
        }
        if !checksum_ok(&src, &dst, udp) {
            return Err(FrameError::Checksum);
        }
        Ok(Self {
            ifindex,
            dst_mac: frame[0..6].try_into().expect("6 bytes"),
            src_mac: frame[6..12].try_into().expect("6 bytes"),
            ethertype,
            src,
            dst,
            sport: be16(udp, 0),
            dport: be16(udp, 2),
            dns: &udp[UDP_LEN..],
        })
    }

    /// The answer `dns` as a frame back to the querier: MACs, addresses and
    /// ports turned around, a fresh TTL, and full IP and UDP checksums
    /// (the querier's stack verifies them; docs/design.md#checksums).
    pub fn reply(&self, dns: &[u8]) -> Vec<u8> {
        let udp_len = UDP_LEN + dns.len();
        let mut udp = Vec::with_capacity(udp_len);
        udp.extend_from_slice(&self.dport.to_be_bytes());
        udp.extend_from_slice(&self.sport.to_be_bytes());
        udp.extend_from_slice(&(udp_len as u16).to_be_bytes());
        udp.extend_from_slice(&[0, 0]);
        udp.extend_from_slice(dns);
        let sum = pseudo_sum(&self.dst, &self.src, udp_len) + ones_sum(&udp) as u64;
        let check = match !fold(sum) {
            // Zero means "no checksum"; a computed zero is sent as all ones.
            0 => 0xffff,
            c => c,
        };
        udp[6..8].copy_from_slice(&check.to_be_bytes());

        let mut frame = Vec::with_capacity(ETH_LEN + IPV6_LEN + udp_len);
        frame.extend_from_slice(&self.src_mac);
        frame.extend_from_slice(&self.dst_mac);
        frame.extend_from_slice(&self.ethertype.to_be_bytes());
        match (self.dst, self.src) {
            (IpAddr::V4(from), IpAddr::V4(to)) => {
                let mut ip = [0u8; IPV4_LEN];
                ip[0] = 0x45;
                ip[2..4].copy_from_slice(&((IPV4_LEN + udp_len) as u16).to_be_bytes());
                ip[6..8].copy_from_slice(&IP_DF.to_be_bytes());
                ip[8] = REPLY_TTL;
                ip[9] = IPPROTO_UDP;
                ip[12..16].copy_from_slice(&from.octets());
                ip[16..20].copy_from_slice(&to.octets());
                let check = !ones_sum(&ip);
                ip[10..12].copy_from_slice(&check.to_be_bytes());
                frame.extend_from_slice(&ip);
            }
            (from, to) => {
                let mut ip = [0u8; IPV6_LEN];
                ip[0] = 0x60;
                ip[4..6].copy_from_slice(&(udp_len as u16).to_be_bytes());
                ip[6] = IPPROTO_UDP;
                ip[7] = REPLY_TTL;
                ip[8..24].copy_from_slice(&addr_bytes(&from));
                ip[24..40].copy_from_slice(&addr_bytes(&to));
                frame.extend_from_slice(&ip);
            }
        }
        frame.extend_from_slice(&udp);
        frame
    }
}

/// Whether the stack would accept the datagram's checksum: the
/// pseudo-header seed of a `CHECKSUM_PARTIAL` frame from a local socket
/// (which the stack trusts), zero over IPv4 ("no checksum"), or a full
/// checksum that verifies (docs/design.md#checksums).
fn checksum_ok(src: &IpAddr, dst: &IpAddr, udp: &[u8]) -> bool {
    let check = be16(udp, 6);
    if check == 0 {
        return src.is_ipv4();
    }
    let pseudo = pseudo_sum(src, dst, udp.len());
    check == fold(pseudo) || fold(pseudo + ones_sum(udp) as u64) == 0xffff
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ring record holding a UDP query frame from `src` to `dst`.
    pub(crate) fn record(src: IpAddr, dst: IpAddr, dns: &[u8], seed_only: bool) -> Vec<u8> {
        let q = Query {
            ifindex: 7,
            // Built as the reply of a query going the other way.
            dst_mac: [2, 0, 0, 0, 0, 2],
            src_mac: [2, 0, 0, 0, 0, 1],
            ethertype: if src.is_ipv4() { ETH_P_IP } else { ETH_P_IPV6 },
            src: dst,
            dst: src,
            sport: 53,
            dport: 40000,
            dns,
        };
        let mut frame = q.reply(dns);
        if seed_only {
            let l4 = ETH_LEN + if src.is_ipv4() { IPV4_LEN } else { IPV6_LEN };
            let seed = fold(pseudo_sum(&src, &dst, UDP_LEN + dns.len()));
            frame[l4 + 6..l4 + 8].copy_from_slice(&seed.to_be_bytes());
        }
        let mut record = Vec::new();
        record.extend_from_slice(&7u32.to_ne_bytes());
        record.extend_from_slice(&(frame.len() as u16).to_ne_bytes());
        record.extend_from_slice(&[0, 0]);
        record.extend_from_slice(&frame);
        record
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn reply_turns_the_query_around_with_checksums_that_verify() {
        for (pod, cluster) in [
            (ip("10.201.0.2"), ip("10.96.0.10")),
            (ip("fd00:10:201::2"), ip("fd00:96::a")),
        ] {
            for seed_only in [false, true] {
                let rec = record(pod, cluster, b"\x12\x34query", seed_only);
                let q = Query::parse(&rec).unwrap();
                assert_eq!((q.src, q.dst, q.sport, q.dport), (pod, cluster, 40000, 53));
                assert_eq!(q.dns, b"\x12\x34query");
                let answer = q.reply(b"\x12\x34answer!");
                let mut back = Vec::new();
                back.extend_from_slice(&7u32.to_ne_bytes());
                back.extend_from_slice(&(answer.len() as u16).to_ne_bytes());
                back.extend_from_slice(&[0, 0]);
                back.extend_from_slice(&answer);
                let r = Query::parse(&back).expect("the answer's checksums verify");
                assert_eq!((r.src, r.dst, r.sport, r.dport), (cluster, pod, 53, 40000));
                assert_eq!(r.dns, b"\x12\x34answer!");
                assert_eq!(&answer[0..6], &rec[HEADER_LEN + 6..HEADER_LEN + 12]);
                if pod.is_ipv4() {
                    let ip = &answer[ETH_LEN..ETH_LEN + IPV4_LEN];
                    assert_eq!(ones_sum(ip), 0xffff, "IPv4 header checksum");
                }
            }
        }
    }

    #[test]
    fn broken_frames_are_refused() {
        let good = record(ip("10.201.0.2"), ip("10.96.0.10"), b"\x00\x01q", false);
        assert!(Query::parse(&good).is_ok());
        assert_eq!(Query::parse(&good[..5]), Err(FrameError::Short));
        assert_eq!(
            Query::parse(&good[..good.len() - 1]),
            Err(FrameError::Short)
        );
        let mut bad = good.clone();
        *bad.last_mut().unwrap() ^= 0x40;
        assert_eq!(Query::parse(&bad), Err(FrameError::Checksum));
        let mut options = good.clone();
        options[HEADER_LEN + ETH_LEN] = 0x46;
        assert_eq!(Query::parse(&options), Err(FrameError::Unsupported));
        let mut arp = good;
        arp[HEADER_LEN + 12..HEADER_LEN + 14].copy_from_slice(&0x0806u16.to_be_bytes());
        assert_eq!(Query::parse(&arp), Err(FrameError::NotIp));
    }
}

//! An `AF_PACKET` socket that sends whole Ethernet frames on an interface:
//! the transparent path's answers (docs/design.md#transparent-mode). A
//! frame sent this way enters the interface's transmit path directly, so
//! netfilter, conntrack and kube-proxy never see it; with
//! `PACKET_QDISC_BYPASS` it also skips the qdisc and the TC egress hook.
//! Neither std nor socket2 builds a `sockaddr_ll`, hence this module.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// A send-only packet socket (protocol 0: it receives nothing).
pub struct PacketSocket {
    fd: OwnedFd,
}

impl PacketSocket {
    /// Needs `CAP_NET_RAW`.
    pub fn open() -> io::Result<Self> {
        // SAFETY: plain socket(2); the descriptor is owned below.
        let fd = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                0,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a new descriptor nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let one: libc::c_int = 1;
        // SAFETY: a valid descriptor and an int option value that outlives
        // the call.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_QDISC_BYPASS,
                (&one as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self { fd })
    }

    /// Sends `frame` (Ethernet header first) out of interface `ifindex`.
    pub fn send(&self, ifindex: u32, frame: &[u8]) -> io::Result<()> {
        if frame.len() < 14 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "an Ethernet frame has a 14-byte header",
            ));
        }
        // SAFETY: sockaddr_ll is plain integers; all-zero is valid.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = u16::from_ne_bytes([frame[12], frame[13]]);
        addr.sll_ifindex = ifindex as i32;
        addr.sll_halen = 6;
        addr.sll_addr[..6].copy_from_slice(&frame[..6]);
        // SAFETY: the buffer and the address outlive the call; the lengths
        // are theirs.
        let rc = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&addr as *const libc::sockaddr_ll).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

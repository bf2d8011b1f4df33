//! Just enough rtnetlink (NETLINK_ROUTE) for the fast path: list interfaces
//! with their kind and XDP programs, and wake up on link events.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

const NLMSG_HDR_LEN: usize = 16;
const IFINFOMSG_LEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const RTMGRP_LINK: u32 = 0x1;
const IFLA_IFNAME: u16 = 3;
const IFLA_LINKINFO: u16 = 18;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_EXT_MASK: u16 = 29;
const IFLA_XDP: u16 = 43;
const IFLA_XDP_DRV_PROG_ID: u16 = 5;
const IFLA_XDP_SKB_PROG_ID: u16 = 6;
const IFLA_XDP_HW_PROG_ID: u16 = 7;
const RTEXT_FILTER_SKIP_STATS: u32 = 1 << 3;
const NLA_TYPE_MASK: u16 = 0x3fff;
/// Receive buffer: the kernel fills dump replies up to 32 KiB.
const RECV_BUF: usize = 64 * 1024;

/// XDP programs on one interface, by mode (0: none).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct XdpPrograms {
    pub skb: u32,
    pub drv: u32,
    pub hw: u32,
}

impl XdpPrograms {
    pub fn is_empty(&self) -> bool {
        self.skb == 0 && self.drv == 0 && self.hw == 0
    }

    pub fn contains(&self, prog_id: u32) -> bool {
        prog_id != 0 && (self.skb == prog_id || self.drv == prog_id || self.hw == prog_id)
    }
}

/// One network interface in the current network namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    pub ifindex: u32,
    pub name: String,
    /// `IFLA_INFO_KIND` ("veth", "bridge", ...); `None` for physical devices.
    pub kind: Option<String>,
    pub xdp: XdpPrograms,
}

struct Socket(OwnedFd);

impl Socket {
    fn open(groups: u32) -> io::Result<Self> {
        // SAFETY: plain socket(2); the descriptor is owned right away.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor.
        let socket = Self(unsafe { OwnedFd::from_raw_fd(fd) });
        // SAFETY: sockaddr_nl is plain data; bind reads it.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as u16;
        addr.nl_groups = groups;
        let ret = unsafe {
            libc::bind(
                fd,
                &addr as *const _ as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        if ret != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(socket)
    }

    fn send(&self, buf: &[u8]) -> io::Result<()> {
        // SAFETY: buf is valid for its length; the kernel is the peer.
        let ret = unsafe { libc::send(self.0.as_raw_fd(), buf.as_ptr().cast(), buf.len(), 0) };
        if ret < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// Waits up to `timeout` for data (None: forever), then reads one datagram.
    fn recv(&self, buf: &mut [u8], timeout: Option<Duration>) -> io::Result<usize> {
        if !poll_in(&[self.0.as_raw_fd()], timeout)?[0] {
            return Err(io::ErrorKind::TimedOut.into());
        }
        // SAFETY: buf is valid for writes of its length.
        let ret = unsafe { libc::recv(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if ret < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(ret as usize)
        }
    }
}

/// poll(2) for readability; returns which descriptors are readable.
fn poll_in<const N: usize>(fds: &[i32; N], timeout: Option<Duration>) -> io::Result<[bool; N]> {
    let mut pfds = fds.map(|fd| libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    });
    let ms = timeout.map_or(-1, |t| t.as_millis().min(i32::MAX as u128) as i32);
    loop {
        // SAFETY: pfds is a valid array of N pollfd.
        let ret = unsafe { libc::poll(pfds.as_mut_ptr(), N as libc::nfds_t, ms) };
        if ret >= 0 {
            return Ok(pfds.map(|p| p.revents != 0));
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Every interface of the calling thread's network namespace.
pub fn list_interfaces() -> io::Result<Vec<Interface>> {
    /// How long one dump may take before the kernel is considered stuck.
    const DUMP_TIMEOUT: Duration = Duration::from_secs(5);
    let socket = Socket::open(0)?;
    let seq: u32 = 1;
    let mut req = Vec::with_capacity(NLMSG_HDR_LEN + IFINFOMSG_LEN + 8);
    let len = (NLMSG_HDR_LEN + IFINFOMSG_LEN + 8) as u32;
    req.extend_from_slice(&len.to_ne_bytes());
    req.extend_from_slice(&RTM_GETLINK.to_ne_bytes());
    req.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    req.extend_from_slice(&seq.to_ne_bytes());
    req.extend_from_slice(&0u32.to_ne_bytes());
    req.extend_from_slice(&[0u8; IFINFOMSG_LEN]); // AF_UNSPEC, every link
    req.extend_from_slice(&8u16.to_ne_bytes());
    req.extend_from_slice(&IFLA_EXT_MASK.to_ne_bytes());
    req.extend_from_slice(&RTEXT_FILTER_SKIP_STATS.to_ne_bytes());
    socket.send(&req)?;

    let mut buf = vec![0u8; RECV_BUF];
    let mut out = Vec::new();
    loop {
        let n = socket.recv(&mut buf, Some(DUMP_TIMEOUT))?;
        for msg in messages(&buf[..n]) {
            let (kind, msg_seq, payload) = msg?;
            if msg_seq != seq {
                continue;
            }
            match kind {
                NLMSG_DONE => return Ok(out),
                NLMSG_ERROR => {
                    let code = payload
                        .get(..4)
                        .map_or(0, |b| i32::from_ne_bytes(b.try_into().expect("4 bytes")));
                    if code != 0 {
                        return Err(io::Error::from_raw_os_error(-code));
                    }
                }
                RTM_NEWLINK => out.extend(parse_link(payload)),
                _ => {}
            }
        }
    }
}

/// Iterates the netlink messages of one datagram: (type, seq, payload).
fn messages(mut buf: &[u8]) -> impl Iterator<Item = io::Result<(u16, u32, &[u8])>> {
    std::iter::from_fn(move || {
        if buf.len() < NLMSG_HDR_LEN {
            return None;
        }
        let len = u32::from_ne_bytes(buf[0..4].try_into().unwrap()) as usize;
        if len < NLMSG_HDR_LEN || len > buf.len() {
            buf = &[];
            return Some(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "bad netlink length",
            )));
        }
        let kind = u16::from_ne_bytes(buf[4..6].try_into().unwrap());
        let seq = u32::from_ne_bytes(buf[8..12].try_into().unwrap());
        let payload = &buf[NLMSG_HDR_LEN..len];
        buf = &buf[align4(len).min(buf.len())..];
        Some(Ok((kind, seq, payload)))
    })
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// Iterates route attributes: (type without flags, payload).
fn attrs(mut buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if buf.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes(buf[0..2].try_into().unwrap()) as usize;
        let kind = u16::from_ne_bytes(buf[2..4].try_into().unwrap()) & NLA_TYPE_MASK;
        if len < 4 || len > buf.len() {
            return None;
        }
        let payload = &buf[4..len];
        buf = &buf[align4(len).min(buf.len())..];
        Some((kind, payload))
    })
}

fn parse_link(payload: &[u8]) -> Option<Interface> {
    let header = payload.get(..IFINFOMSG_LEN)?;
    let ifindex = i32::from_ne_bytes(header[4..8].try_into().ok()?) as u32;
    let mut iface = Interface {
        ifindex,
        name: String::new(),
        kind: None,
        xdp: XdpPrograms::default(),
    };
    for (kind, value) in attrs(&payload[IFINFOMSG_LEN..]) {
        match kind {
            IFLA_IFNAME => iface.name = c_string(value),
            IFLA_LINKINFO => {
                iface.kind = attrs(value)
                    .find(|(k, _)| *k == IFLA_INFO_KIND)
                    .map(|(_, v)| c_string(v));
            }
            IFLA_XDP => {
                for (k, v) in attrs(value) {
                    let id = v
                        .get(..4)
                        .map_or(0, |b| u32::from_ne_bytes(b.try_into().unwrap()));
                    match k {
                        IFLA_XDP_SKB_PROG_ID => iface.xdp.skb = id,
                        IFLA_XDP_DRV_PROG_ID => iface.xdp.drv = id,
                        IFLA_XDP_HW_PROG_ID => iface.xdp.hw = id,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    (!iface.name.is_empty()).then_some(iface)
}

fn c_string(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// What woke [`LinkEvents::wait`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// A link appeared, changed or vanished (or events were lost).
    LinkChanged,
    /// The timeout passed.
    Timeout,
    /// [`Waker::wake`] was called.
    Woken,
}

/// Link events of the creating thread's network namespace, plus a wake-up
/// descriptor so another thread can interrupt the wait.
pub struct LinkEvents {
    socket: Socket,
    wake: OwnedFd,
}

/// Interrupts a [`LinkEvents::wait`] from any thread.
#[derive(Debug)]
pub struct Waker(OwnedFd);

impl Waker {
    pub fn wake(&self) {
        let one = 1u64.to_ne_bytes();
        // SAFETY: writes 8 bytes to an eventfd we own; failure (counter
        // saturated) still leaves it readable, which is all we need.
        unsafe { libc::write(self.0.as_raw_fd(), one.as_ptr().cast(), one.len()) };
    }
}

impl LinkEvents {
    pub fn subscribe() -> io::Result<(Self, Waker)> {
        let socket = Socket::open(RTMGRP_LINK)?;
        // SAFETY: eventfd(2) returns a new descriptor or -1.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is fresh; the waker gets a duplicate.
        let wake = unsafe { OwnedFd::from_raw_fd(fd) };
        let waker = Waker(wake.try_clone()?);
        Ok((Self { socket, wake }, waker))
    }

    /// Waits for link events, a wake-up or the timeout, then drains what is
    /// pending so one burst of events means one rescan.
    pub fn wait(&self, timeout: Duration) -> io::Result<Wake> {
        let ready = poll_in(
            &[self.socket.0.as_raw_fd(), self.wake.as_raw_fd()],
            Some(timeout),
        )?;
        if ready[1] {
            let mut counter = [0u8; 8];
            // SAFETY: reads the eventfd counter into our buffer.
            unsafe { libc::read(self.wake.as_raw_fd(), counter.as_mut_ptr().cast(), 8) };
            return Ok(Wake::Woken);
        }
        if !ready[0] {
            return Ok(Wake::Timeout);
        }
        let mut buf = vec![0u8; RECV_BUF];
        loop {
            match self.socket.recv(&mut buf, Some(Duration::ZERO)) {
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::TimedOut => break,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                // ENOBUFS: the kernel dropped events; the rescan covers them.
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => break,
                Err(e) => return Err(e),
            }
        }
        Ok(Wake::LinkChanged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_loopback() {
        let all = list_interfaces().expect("netlink dump");
        let lo = all
            .iter()
            .find(|i| i.name == "lo")
            .expect("lo is always there");
        assert_eq!(lo.ifindex, 1);
    }
}

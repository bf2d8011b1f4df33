//! The few rtnetlink requests the listen interface needs (create a dummy
//! link, bring it up, add and delete addresses, delete the link), written
//! against the kernel ABI with libc so the agent needs no `ip` binary.
//! Every request asks for an ACK and returns the kernel's errno.

use std::ffi::CString;
use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const NLMSG_HDR_LEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const IFLA_IFNAME: u16 = 3;
const IFLA_LINKINFO: u16 = 18;
const IFLA_INFO_KIND: u16 = 1;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_F_NODAD: u8 = 0x02;
const RT_SCOPE_HOST: u8 = 254;
const RT_SCOPE_UNIVERSE: u8 = 0;

/// A route netlink socket in the caller's network namespace.
pub struct Netlink {
    fd: OwnedFd,
    seq: u32,
}

/// Appends a route attribute (4-byte aligned).
fn attr(buf: &mut Vec<u8>, kind: u16, data: &[u8]) {
    let len = 4 + data.len();
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(data);
    buf.resize(buf.len().next_multiple_of(4), 0);
}

fn ifinfomsg(index: i32, flags: u32, change: u32) -> Vec<u8> {
    let mut b = vec![libc::AF_UNSPEC as u8, 0, 0, 0];
    b.extend_from_slice(&index.to_ne_bytes());
    b.extend_from_slice(&flags.to_ne_bytes());
    b.extend_from_slice(&change.to_ne_bytes());
    b
}

fn ifaddrmsg(addr: IpAddr, index: u32, flags: u8, scope: u8) -> Vec<u8> {
    let (family, prefix) = match addr {
        IpAddr::V4(_) => (libc::AF_INET as u8, 32),
        IpAddr::V6(_) => (libc::AF_INET6 as u8, 128),
    };
    let mut b = vec![family, prefix, flags, scope];
    b.extend_from_slice(&index.to_ne_bytes());
    b
}

fn addr_bytes(addr: IpAddr) -> Vec<u8> {
    match addr {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// The payload of the first attribute of `kind` in `attrs`.
fn find_attr(mut attrs: &[u8], kind: u16) -> Option<&[u8]> {
    while attrs.len() >= 4 {
        let len = u16::from_ne_bytes([attrs[0], attrs[1]]) as usize;
        // The top bits of the type are flags (nested, byte order).
        let ty = u16::from_ne_bytes([attrs[2], attrs[3]]) & 0x3fff;
        if len < 4 || len > attrs.len() {
            return None;
        }
        if ty == kind {
            return Some(&attrs[4..len]);
        }
        attrs = &attrs[len.next_multiple_of(4).min(attrs.len())..];
    }
    None
}

/// The index of interface `name`, if it exists.
pub fn if_index(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    // SAFETY: c is a valid NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (index != 0).then_some(index)
}

impl Netlink {
    pub fn open() -> io::Result<Self> {
        // SAFETY: plain socket(2); the fd is owned below.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd was just returned by socket(2) and is not owned elsewhere.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let timeout = libc::timeval {
            tv_sec: 2,
            tv_usec: 0,
        };
        // SAFETY: the option value points at a timeval of the right size.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                &timeout as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::timeval>() as u32,
            );
        }
        Ok(Self { fd, seq: 1 })
    }

    /// Sends one request and waits for its ACK (errno 0) or error.
    fn request(&mut self, kind: u16, flags: u16, body: &[u8]) -> io::Result<()> {
        self.transact(kind, flags, body).map(drop)
    }

    /// Sends one request; returns the payload of the kernel's data reply, if
    /// any, once the ACK arrives.
    fn transact(&mut self, kind: u16, flags: u16, body: &[u8]) -> io::Result<Option<Vec<u8>>> {
        self.seq += 1;
        let seq = self.seq;
        let mut msg = Vec::with_capacity(NLMSG_HDR_LEN + body.len());
        msg.extend_from_slice(&((NLMSG_HDR_LEN + body.len()) as u32).to_ne_bytes());
        msg.extend_from_slice(&kind.to_ne_bytes());
        msg.extend_from_slice(
            &(flags | libc::NLM_F_REQUEST as u16 | libc::NLM_F_ACK as u16).to_ne_bytes(),
        );
        msg.extend_from_slice(&seq.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes());
        msg.extend_from_slice(body);
        // SAFETY: a zeroed sockaddr_nl with the family set addresses the kernel.
        let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        kernel.nl_family = libc::AF_NETLINK as u16;
        // SAFETY: msg and kernel outlive the call; lengths match.
        let sent = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                msg.as_ptr() as *const libc::c_void,
                msg.len(),
                0,
                &kernel as *const _ as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut buf = vec![0u8; 32 * 1024];
        let mut data = None;
        loop {
            // SAFETY: buf is writable for its length.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr() as *mut libc::c_void,
                    buf.len(),
                    0,
                )
            };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            let mut off = 0usize;
            let n = n as usize;
            while off + NLMSG_HDR_LEN <= n {
                let len = u32::from_ne_bytes(buf[off..off + 4].try_into().unwrap()) as usize;
                let ty = u16::from_ne_bytes(buf[off + 4..off + 6].try_into().unwrap());
                let rseq = u32::from_ne_bytes(buf[off + 8..off + 12].try_into().unwrap());
                if len < NLMSG_HDR_LEN || off + len > n {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "malformed netlink reply",
                    ));
                }
                if ty == NLMSG_ERROR && rseq == seq && len >= NLMSG_HDR_LEN + 4 {
                    let errno = i32::from_ne_bytes(buf[off + 16..off + 20].try_into().unwrap());
                    return if errno == 0 {
                        Ok(data)
                    } else {
                        Err(io::Error::from_raw_os_error(-errno))
                    };
                }
                if ty != NLMSG_ERROR && rseq == seq && data.is_none() {
                    data = Some(buf[off + NLMSG_HDR_LEN..off + len].to_vec());
                }
                off += len.next_multiple_of(4);
            }
        }
    }

    /// Creates a `dummy` link. EOPNOTSUPP when the kernel has no dummy
    /// driver, EEXIST when the name is taken.
    pub fn add_dummy(&mut self, name: &str) -> io::Result<()> {
        let mut body = ifinfomsg(0, 0, 0);
        let mut cname = name.as_bytes().to_vec();
        cname.push(0);
        attr(&mut body, IFLA_IFNAME, &cname);
        let mut info = Vec::new();
        attr(&mut info, IFLA_INFO_KIND, b"dummy");
        attr(&mut body, IFLA_LINKINFO, &info);
        self.request(
            libc::RTM_NEWLINK,
            (libc::NLM_F_CREATE | libc::NLM_F_EXCL) as u16,
            &body,
        )
    }

    /// The link's kind (`dummy`, `veth`, ...), None for one without a kind
    /// (physical devices, `lo`).
    pub fn link_kind(&mut self, index: u32) -> io::Result<Option<String>> {
        let reply = self.transact(libc::RTM_GETLINK, 0, &ifinfomsg(index as i32, 0, 0))?;
        let Some(reply) = reply else { return Ok(None) };
        const IFINFOMSG_LEN: usize = 16;
        let attrs = reply.get(IFINFOMSG_LEN..).unwrap_or_default();
        let Some(info) = find_attr(attrs, IFLA_LINKINFO) else {
            return Ok(None);
        };
        Ok(find_attr(info, IFLA_INFO_KIND).map(|k| {
            String::from_utf8_lossy(k)
                .trim_end_matches('\0')
                .to_string()
        }))
    }

    pub fn set_up(&mut self, index: u32) -> io::Result<()> {
        let up = libc::IFF_UP as u32;
        self.request(libc::RTM_NEWLINK, 0, &ifinfomsg(index as i32, up, up))
    }

    pub fn delete_link(&mut self, index: u32) -> io::Result<()> {
        self.request(libc::RTM_DELLINK, 0, &ifinfomsg(index as i32, 0, 0))
    }

    /// Adds `addr` as a host address (/32 or /128, no DAD). EEXIST when
    /// the interface already has it.
    pub fn add_address(&mut self, index: u32, addr: IpAddr, on_loopback: bool) -> io::Result<()> {
        let scope = if on_loopback {
            RT_SCOPE_HOST
        } else {
            RT_SCOPE_UNIVERSE
        };
        let mut body = ifaddrmsg(addr, index, IFA_F_NODAD, scope);
        attr(&mut body, IFA_LOCAL, &addr_bytes(addr));
        attr(&mut body, IFA_ADDRESS, &addr_bytes(addr));
        self.request(
            libc::RTM_NEWADDR,
            (libc::NLM_F_CREATE | libc::NLM_F_EXCL) as u16,
            &body,
        )
    }

    pub fn delete_address(&mut self, index: u32, addr: IpAddr) -> io::Result<()> {
        let mut body = ifaddrmsg(addr, index, 0, 0);
        attr(&mut body, IFA_LOCAL, &addr_bytes(addr));
        attr(&mut body, IFA_ADDRESS, &addr_bytes(addr));
        self.request(libc::RTM_DELADDR, 0, &body)
    }
}

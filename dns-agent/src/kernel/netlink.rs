//! rtnetlink (NETLINK_ROUTE) for the agent: list the links of the calling
//! thread's network namespace with their kind, MAC address, bridge and XDP
//! programs, follow
//! link events, and make the few changes the listen interface needs
//! (create a `dummy` link, bring a link up, add and delete host addresses,
//! delete a link). Every request asks for an ACK and returns the kernel's
//! errno as an `io::Error`.
//!
//! The messages are netlink-packet-route's types over netlink-sys's plain
//! socket. The rtnetlink crate (the async layer over the same crates) is
//! not used: every caller here is synchronous (a `Drop`, `dns-agent
//! cleanup`, the fast path's follower thread, which must stay in the
//! namespace it was started in), and its event channel is unbounded.

use std::io;
use std::net::IpAddr;
use std::time::Duration;

use mio::{Events, Interest, Poll, Token};
use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage,
    NetlinkPayload,
};
use netlink_packet_route::address::{
    AddressAttribute, AddressHeaderFlags, AddressMessage, AddressScope,
};
use netlink_packet_route::link::{
    InfoKind, LinkAttribute, LinkExtentMask, LinkFlags, LinkInfo, LinkMessage, LinkXdp,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
use network_interface::{NetworkInterface, NetworkInterfaceConfig};

/// Receive buffer: the kernel fills dump replies up to 32 KiB.
const RECV_BUF: usize = 64 * 1024;
/// How long the kernel may take to answer one request before it is
/// considered stuck.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);
/// `RTMGRP_LINK`: the multicast group of link changes.
const RTMGRP_LINK: u32 = 0x1;

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
    /// `IFLA_ADDRESS` when it is a 6-byte (Ethernet-like) address.
    pub mac: Option<[u8; 6]>,
    /// `IFLA_MASTER`: the bridge (or bond, ...) the interface is a port of.
    pub master: Option<u32>,
    pub xdp: XdpPrograms,
}

impl Interface {
    fn from_message(link: LinkMessage) -> Option<Self> {
        let mut iface = Interface {
            ifindex: link.header.index,
            name: String::new(),
            kind: None,
            mac: None,
            master: None,
            xdp: XdpPrograms::default(),
        };
        for attr in link.attributes {
            match attr {
                LinkAttribute::IfName(name) => iface.name = name,
                LinkAttribute::Address(bytes) => iface.mac = bytes.as_slice().try_into().ok(),
                LinkAttribute::Controller(index) => iface.master = (index != 0).then_some(index),
                LinkAttribute::LinkInfo(infos) => iface.kind = kind_of(&infos),
                LinkAttribute::Xdp(xdp) => {
                    for x in xdp {
                        match x {
                            LinkXdp::SkbProgId(id) => iface.xdp.skb = id,
                            LinkXdp::DrvProgId(id) => iface.xdp.drv = id,
                            LinkXdp::HwProgId(id) => iface.xdp.hw = id,
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        (!iface.name.is_empty()).then_some(iface)
    }
}

fn kind_of(infos: &[LinkInfo]) -> Option<String> {
    infos.iter().find_map(|info| match info {
        LinkInfo::Kind(kind) => Some(kind.to_string()),
        _ => None,
    })
}

/// Every interface of the calling thread's network namespace.
pub fn list_interfaces() -> io::Result<Vec<Interface>> {
    Netlink::open()?.links()
}

/// The index of interface `name`, if it exists. network-interface lists
/// every link (getifaddrs reports each one, with or without addresses).
pub fn if_index(name: &str) -> Option<u32> {
    NetworkInterface::show()
        .ok()?
        .into_iter()
        .find(|i| i.name == name)
        .map(|i| i.index)
}

/// A route netlink socket for requests, in the caller's network namespace.
pub struct Netlink {
    socket: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl Netlink {
    pub fn open() -> io::Result<Self> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket2::SockRef::from(&socket).set_read_timeout(Some(REPLY_TIMEOUT))?;
        Ok(Self {
            socket,
            seq: 0,
            buf: Vec::with_capacity(RECV_BUF),
        })
    }

    /// Every link, with its kind and XDP programs (statistics skipped).
    pub fn links(&mut self) -> io::Result<Vec<Interface>> {
        let mut request = LinkMessage::default();
        request
            .attributes
            .push(LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]));
        let replies = self.exchange(RouteNetlinkMessage::GetLink(request), NLM_F_DUMP)?;
        Ok(replies
            .into_iter()
            .filter_map(|reply| match reply {
                RouteNetlinkMessage::NewLink(link) => Interface::from_message(link),
                _ => None,
            })
            .collect())
    }

    /// The link's kind (`dummy`, `veth`, ...), None for one without a kind
    /// (physical devices, `lo`).
    pub fn link_kind(&mut self, index: u32) -> io::Result<Option<String>> {
        let mut request = LinkMessage::default();
        request.header.index = index;
        let replies = self.exchange(RouteNetlinkMessage::GetLink(request), NLM_F_ACK)?;
        Ok(replies.into_iter().find_map(|reply| match reply {
            RouteNetlinkMessage::NewLink(link) => link.attributes.iter().find_map(|a| match a {
                LinkAttribute::LinkInfo(infos) => kind_of(infos),
                _ => None,
            }),
            _ => None,
        }))
    }

    /// Creates a `dummy` link. EOPNOTSUPP when the kernel has no dummy
    /// driver, EEXIST when the name is taken.
    pub fn add_dummy(&mut self, name: &str) -> io::Result<()> {
        let mut request = LinkMessage::default();
        request.attributes = vec![
            LinkAttribute::IfName(name.to_string()),
            LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Dummy)]),
        ];
        self.exchange(
            RouteNetlinkMessage::NewLink(request),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        )
        .map(drop)
    }

    pub fn set_up(&mut self, index: u32) -> io::Result<()> {
        let mut request = LinkMessage::default();
        request.header.index = index;
        request.header.flags = LinkFlags::Up;
        request.header.change_mask = LinkFlags::Up;
        self.exchange(RouteNetlinkMessage::NewLink(request), NLM_F_ACK)
            .map(drop)
    }

    pub fn delete_link(&mut self, index: u32) -> io::Result<()> {
        let mut request = LinkMessage::default();
        request.header.index = index;
        self.exchange(RouteNetlinkMessage::DelLink(request), NLM_F_ACK)
            .map(drop)
    }

    /// Adds `addr` as a host address (/32 or /128, no DAD). EEXIST when
    /// the interface already has it.
    pub fn add_address(&mut self, index: u32, addr: IpAddr, on_loopback: bool) -> io::Result<()> {
        let mut request = host_address(index, addr);
        request.header.flags = AddressHeaderFlags::Nodad;
        request.header.scope = if on_loopback {
            AddressScope::Host
        } else {
            AddressScope::Universe
        };
        self.exchange(
            RouteNetlinkMessage::NewAddress(request),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        )
        .map(drop)
    }

    pub fn delete_address(&mut self, index: u32, addr: IpAddr) -> io::Result<()> {
        let request = host_address(index, addr);
        self.exchange(RouteNetlinkMessage::DelAddress(request), NLM_F_ACK)
            .map(drop)
    }

    /// Sends one request and collects the kernel's replies until the end
    /// of a dump or the ACK; a negative ACK is the request's errno. `flags`
    /// must ask for one of the two (`NLM_F_DUMP` or `NLM_F_ACK`), or no
    /// reply ends the exchange. (They cannot be told apart afterwards:
    /// `NLM_F_DUMP` shares a bit with `NLM_F_EXCL`.)
    fn exchange(
        &mut self,
        request: RouteNetlinkMessage,
        flags: u16,
    ) -> io::Result<Vec<RouteNetlinkMessage>> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = self.seq;
        let mut message = NetlinkMessage::new(header, NetlinkPayload::from(request));
        message.finalize();
        let mut out = vec![0u8; message.buffer_len()];
        message.serialize(&mut out);
        self.socket.send(&out, 0)?;

        let mut replies = Vec::new();
        loop {
            self.buf.clear();
            self.socket.recv(&mut self.buf, 0)?;
            let mut rest = &self.buf[..];
            while !rest.is_empty() {
                let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(rest)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                let len = (reply.header.length as usize).next_multiple_of(4);
                rest = rest.get(len..).unwrap_or_default();
                if reply.header.sequence_number != self.seq {
                    continue;
                }
                match reply.payload {
                    NetlinkPayload::Done(_) => return Ok(replies),
                    NetlinkPayload::Error(e) if e.code.is_none() => return Ok(replies),
                    NetlinkPayload::Error(e) => return Err(e.to_io()),
                    NetlinkPayload::InnerMessage(m) => replies.push(m),
                    _ => {}
                }
            }
        }
    }
}

fn host_address(index: u32, addr: IpAddr) -> AddressMessage {
    let mut message = AddressMessage::default();
    message.header.index = index;
    (message.header.family, message.header.prefix_len) = match addr {
        IpAddr::V4(_) => (AddressFamily::Inet, 32),
        IpAddr::V6(_) => (AddressFamily::Inet6, 128),
    };
    message.attributes = vec![
        AddressAttribute::Local(addr),
        AddressAttribute::Address(addr),
    ];
    message
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

const EVENTS: Token = Token(0);
const WAKER: Token = Token(1);

/// Link events of the creating thread's network namespace, plus a waker so
/// another thread can interrupt the wait.
pub struct LinkEvents {
    socket: Socket,
    poll: Poll,
    events: Events,
    buf: Vec<u8>,
}

/// Interrupts a [`LinkEvents::wait`] from any thread.
#[derive(Debug)]
pub struct Waker(mio::Waker);

impl Waker {
    pub fn wake(&self) {
        // A failed wake-up (the counter saturated) still leaves one pending.
        let _ = self.0.wake();
    }
}

impl LinkEvents {
    pub fn subscribe() -> io::Result<(Self, Waker)> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind(&SocketAddr::new(0, RTMGRP_LINK))?;
        socket.set_non_blocking(true)?;
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut socket, EVENTS, Interest::READABLE)?;
        let waker = Waker(mio::Waker::new(poll.registry(), WAKER)?);
        let events = LinkEvents {
            socket,
            poll,
            events: Events::with_capacity(4),
            buf: Vec::with_capacity(RECV_BUF),
        };
        Ok((events, waker))
    }

    /// Waits for link events, a wake-up or the timeout, then drains what is
    /// pending so one burst of events means one rescan.
    pub fn wait(&mut self, timeout: Duration) -> io::Result<Wake> {
        loop {
            match self.poll.poll(&mut self.events, Some(timeout)) {
                Ok(()) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        let (mut changed, mut woken) = (false, false);
        for event in &self.events {
            match event.token() {
                EVENTS => changed = true,
                WAKER => woken = true,
                _ => {}
            }
        }
        // Readiness is edge-triggered: read until the socket is empty, even
        // when a wake-up is what the caller acts on.
        if changed {
            self.drain()?;
        }
        Ok(if woken {
            Wake::Woken
        } else if changed {
            Wake::LinkChanged
        } else {
            Wake::Timeout
        })
    }

    fn drain(&mut self) -> io::Result<()> {
        loop {
            self.buf.clear();
            match self.socket.recv(&mut self.buf, 0) {
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                // ENOBUFS: the kernel dropped events; the rescan covers them.
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => continue,
                Err(e) => return Err(e),
            }
        }
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
        assert_eq!(lo.mac, Some([0; 6]));
        assert_eq!(lo.master, None);
        assert_eq!(if_index("lo"), Some(1));
        assert_eq!(Netlink::open().unwrap().link_kind(1).unwrap(), None);
    }
}

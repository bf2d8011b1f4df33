//! Query frames for the program: a client and our listen address of either
//! family, EDNS variants and options.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::rdata::opt::EdnsOption;
use hickory_proto::rr::{Name, RecordType};

use crate::frames::FrameSpec;
use crate::records::name;

pub const SERVER_V4: Ipv4Addr = Ipv4Addr::new(169, 254, 20, 10);
pub const SERVER_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0x53);
pub const CLIENT_V4: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 7);
pub const CLIENT_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0x1007);
/// The client's source port.
const CLIENT_PORT: u16 = 41000;
/// EDNS option code of a DNS COOKIE (RFC 7873).
pub const OPT_COOKIE: u16 = 10;

/// A client socket and our listen address of the family `v6`.
pub fn endpoints(v6: bool) -> (SocketAddr, SocketAddr) {
    let (client, server): (IpAddr, IpAddr) = if v6 {
        (CLIENT_V6.into(), SERVER_V6.into())
    } else {
        (CLIENT_V4.into(), SERVER_V4.into())
    };
    (
        SocketAddr::new(client, CLIENT_PORT),
        SocketAddr::new(server, 53),
    )
}

/// EDNS in a query: advertised size, DO bit.
#[derive(Clone, Copy, Debug)]
pub struct EdnsQ {
    pub size: u16,
    pub dnssec_ok: bool,
}

impl EdnsQ {
    /// An OPT advertising `size` bytes, DO clear.
    pub const fn size(size: u16) -> Self {
        Self {
            size,
            dnssec_ok: false,
        }
    }
}

pub fn query_msg(id: u16, qname: &str, qtype: RecordType, edns: Option<EdnsQ>) -> Message {
    query_msg_for(id, name(qname), qtype, edns)
}

/// [`query_msg`] for a name that has no text form (binary labels).
pub fn query_msg_for(id: u16, qname: Name, qtype: RecordType, edns: Option<EdnsQ>) -> Message {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(qname, qtype));
    if let Some(e) = edns {
        let mut opt = Edns::new();
        opt.set_max_payload(e.size);
        opt.set_dnssec_ok(e.dnssec_ok);
        m.set_edns(opt);
    }
    m
}

pub fn query_frame(
    v6: bool,
    id: u16,
    qname: &str,
    qtype: RecordType,
    edns: Option<EdnsQ>,
) -> Vec<u8> {
    let (c, s) = endpoints(v6);
    FrameSpec::udp(c, s).build(&query_msg(id, qname, qtype, edns).to_vec().unwrap())
}

/// A query with an OPT record carrying `options` (code, data) in order.
pub fn query_frame_with_options(
    v6: bool,
    id: u16,
    qname: &str,
    qtype: RecordType,
    edns: EdnsQ,
    options: &[(u16, Vec<u8>)],
) -> Vec<u8> {
    frame_with_options(v6, query_msg(id, qname, qtype, Some(edns)), options)
}

/// The frame of `msg`, a query with EDNS, with `options` added to its OPT.
pub fn frame_with_options(v6: bool, mut msg: Message, options: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let mut opt = msg.edns.clone().expect("a query with EDNS");
    for (code, data) in options {
        opt.options_mut()
            .insert(EdnsOption::Unknown(*code, data.clone()));
    }
    msg.set_edns(opt);
    let (c, s) = endpoints(v6);
    FrameSpec::udp(c, s).build(&msg.to_vec().unwrap())
}

/// A cookie option's data of `len` bytes (a client cookie is 8, with a
/// server cookie 16..=40).
pub fn cookie(len: usize) -> (u16, Vec<u8>) {
    (
        OPT_COOKIE,
        (0..len as u8).map(|b| b.wrapping_mul(37)).collect(),
    )
}

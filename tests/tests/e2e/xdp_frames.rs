//! Raw frames from a pod namespace, through its veth, to the real agent's
//! XDP program in generic mode (issue 16, item 2): the kernel answers a
//! query only when the node's stack would take the frame, and counts why it
//! passed the others. Answers are checked against the question and their
//! checksums.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RData, RecordType};
use nodedns_tests::agent::{Agent, AgentSpec};
use nodedns_tests::frames::{FrameSpec, UdpFrame, parse_udp};
use nodedns_tests::lab::{LISTEN_V4, LISTEN_V6, Lab, wait_for};

/// A ClusterIP service of the demo manifests, dual-stack.
const WEB: &str = "web.default.svc.cluster.local";
const WEB_V4: &str = "10.96.0.20";
const WEB_V6: &str = "fd00:10:96::20";
/// How long a kernel answer or a counter may take to show up.
const SETTLE: Duration = Duration::from_secs(5);
const ETH_P_ALL: u16 = 0x0003;

/// An AF_PACKET socket on one interface: frames out as they are, and
/// everything the interface sees in.
struct PacketSocket(OwnedFd);

impl PacketSocket {
    fn open(ifindex: u32) -> std::io::Result<Self> {
        // SAFETY: plain socket(2); the descriptor is owned right away.
        let fd = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW,
                (ETH_P_ALL.to_be()) as libc::c_int,
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor nobody else owns.
        let sock = Self(unsafe { OwnedFd::from_raw_fd(fd) });
        // SAFETY: sockaddr_ll is plain data; zero is a valid start.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = ETH_P_ALL.to_be();
        addr.sll_ifindex = ifindex as i32;
        // SAFETY: addr is a valid sockaddr_ll of the size given.
        let rc = unsafe {
            libc::bind(
                sock.0.as_raw_fd(),
                &addr as *const libc::sockaddr_ll as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let timeout = libc::timeval {
            tv_sec: 0,
            tv_usec: 200_000,
        };
        // SAFETY: SO_RCVTIMEO takes a timeval of this size.
        unsafe {
            libc::setsockopt(
                sock.0.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                &timeout as *const libc::timeval as *const libc::c_void,
                std::mem::size_of::<libc::timeval>() as u32,
            )
        };
        Ok(sock)
    }

    fn send(&self, frame: &[u8]) {
        // SAFETY: the buffer is valid for its length.
        let n = unsafe {
            libc::send(
                self.0.as_raw_fd(),
                frame.as_ptr() as *const libc::c_void,
                frame.len(),
                0,
            )
        };
        assert_eq!(
            n,
            frame.len() as isize,
            "send on the pod's packet socket: {}",
            std::io::Error::last_os_error()
        );
    }

    /// The next UDP frame from `server` to `client`, with its checksums
    /// verified, or `None` after `SETTLE`.
    fn reply(&self, server: SocketAddr, client: SocketAddr) -> Option<UdpFrame> {
        let deadline = Instant::now() + SETTLE;
        let mut buf = vec![0u8; 4096];
        while Instant::now() < deadline {
            // SAFETY: the buffer is valid for its length.
            let n = unsafe {
                libc::recv(
                    self.0.as_raw_fd(),
                    buf.as_mut_ptr() as *mut libc::c_void,
                    buf.len(),
                    0,
                )
            };
            if n <= 0 {
                continue;
            }
            let frame = &buf[..n as usize];
            let Ok(udp) = parse_udp(frame) else {
                continue;
            };
            if udp.src == server && udp.dst == client {
                return Some(udp);
            }
        }
        None
    }
}

fn query(id: u16, qtype: RecordType) -> Vec<u8> {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    let mut name: Name = WEB.parse().unwrap();
    name.set_fqdn(true);
    m.add_query(Query::query(name, qtype));
    m.to_vec().unwrap()
}

/// How far the kernel's counter `reason` moved from `before`, once it moved
/// at all.
fn counted(agent: &Agent, before: u64, reason: &str) -> u64 {
    let moved = || agent.inspect().counter(reason) - before;
    wait_for(&format!("{reason} counted"), SETTLE, || {
        (moved() > 0).then_some(())
    })
    .unwrap();
    moved()
}

#[test]
fn raw_frames_from_a_pod_are_answered_only_as_the_stack_would_take_them() {
    let lab = Lab::new(1).unwrap();
    let pod = lab.pod(0);
    let agent = AgentSpec::examples()
        .listen_on(&[LISTEN_V4.into(), LISTEN_V6.into()])
        .xdp_mode("auto")
        .start(&lab, "agent");
    agent.warm_kernel(pod.netns(), &LISTEN_V4.to_string(), WEB, "A");
    agent.warm_kernel(pod.netns(), &LISTEN_V6.to_string(), WEB, "AAAA");

    let pod_mac = pod.netns().mac(pod.ifname()).unwrap();
    let node_mac = lab.node().mac(pod.node_ifname()).unwrap();
    let ifindex = pod.netns().ifindex(pod.ifname()).unwrap();
    let sock = pod
        .netns()
        .enter(|| PacketSocket::open(ifindex))
        .unwrap()
        .expect("a packet socket on the pod's eth0");

    let mut port = 40_000;
    for v6 in [false, true] {
        let (pod_ip, listen, qtype, want): (IpAddr, IpAddr, _, IpAddr) = if v6 {
            (
                pod.ipv6().into(),
                LISTEN_V6.into(),
                RecordType::AAAA,
                WEB_V6.parse().unwrap(),
            )
        } else {
            (
                pod.ipv4().into(),
                LISTEN_V4.into(),
                RecordType::A,
                WEB_V4.parse().unwrap(),
            )
        };
        let server = SocketAddr::new(listen, 53);
        let mut next_client = || {
            port += 1;
            SocketAddr::new(pod_ip, port)
        };
        let payload = query(0x7a7a, qtype);
        let frame = |spec: &FrameSpec, dst_mac: [u8; 6]| {
            let mut f = spec.build(&payload);
            f[0..6].copy_from_slice(&dst_mac);
            f[6..12].copy_from_slice(&pod_mac);
            f
        };

        // A local socket's CHECKSUM_PARTIAL seed and a full checksum: both
        // are what the stack accepts, both are answered by the kernel.
        for full in [false, true] {
            let client = next_client();
            let mut spec = FrameSpec::udp(client, server);
            spec.full_udp_checksum = full;
            let before = agent.inspect().counter("hit");
            sock.send(&frame(&spec, node_mac));
            let reply = sock
                .reply(server, client)
                .unwrap_or_else(|| panic!("no answer to a valid query (v6 {v6}, full {full})"));
            assert_eq!(counted(&agent, before, "hit"), 1, "answered by the kernel");
            assert_eq!(reply.dst_mac, pod_mac);
            assert_eq!(reply.src_mac, node_mac);
            let msg = Message::from_vec(&reply.payload).unwrap();
            assert_eq!(msg.metadata.id, 0x7a7a);
            // The query has no OPT: all after its header is the question.
            assert_eq!(
                reply.payload[12..payload.len()],
                payload[12..],
                "the question is echoed"
            );
            let data: Vec<IpAddr> = msg
                .answers
                .iter()
                .filter_map(|r| match &r.data {
                    RData::A(a) => Some(IpAddr::V4(a.0)),
                    RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                    _ => None,
                })
                .collect();
            assert_eq!(data, vec![want]);
        }

        // Frames the stack would not take, or not answer: each passed to
        // it, counted by reason.
        let client = next_client();
        let mut spec = FrameSpec::udp(client, server);
        spec.full_udp_checksum = true;
        let mut bad_sum = frame(&spec, node_mac);
        let check_at = if v6 { 54 + 6 } else { 34 + 6 };
        bad_sum[check_at] ^= 0x10;
        let loopback: IpAddr = if v6 {
            std::net::Ipv6Addr::LOCALHOST.into()
        } else {
            Ipv4Addr::LOCALHOST.into()
        };
        let cases = [
            ("pass_checksum", bad_sum),
            ("pass_mac", frame(&spec, [0xff; 6])),
            ("pass_mac", frame(&spec, [0x02, 0, 0, 0, 0x0b, 0xad])),
            (
                "pass_source",
                frame(
                    &FrameSpec::udp(SocketAddr::new(loopback, 4000), server),
                    node_mac,
                ),
            ),
            (
                "pass_source",
                frame(
                    &FrameSpec::udp(SocketAddr::new(pod_ip, 0), server),
                    node_mac,
                ),
            ),
        ];
        for (reason, f) in cases {
            let before = agent.inspect().counters();
            let was = |name: &str| before.get(name).copied().unwrap_or(0);
            sock.send(&f);
            assert_eq!(
                counted(&agent, was(reason), reason),
                1,
                "{reason} (v6 {v6})"
            );
            assert_eq!(
                agent.inspect().counter("hit"),
                was("hit"),
                "{reason} (v6 {v6}) was answered by the kernel"
            );
        }
    }
}

//! The transparent and fail-open paths of the program through
//! `BPF_PROG_TEST_RUN`: a config with cluster DNS addresses, the agent's
//! heartbeat and listen socket (or their absence), the ring, the flows map
//! and the egress program.
//!
//! The program asks the kernel whether a socket listens on the listen
//! address, in the namespace `BPF_PROG_TEST_RUN` runs in (the calling
//! thread's): [`ListenerNetns`] gives a namespace of its own where a test
//! opens that socket, or not.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};

use aya::maps::{Array, HashMap, MapData, RingBuf};
use aya::programs::{SchedClassifier, TestRun, TestRunOptions};
use dns_common::{
    Config, Counter, EGRESS_PROGRAM_NAME, FlowKey, FlowValue, Liveness, MAP_EGRESS, MAP_FLOWS,
    MAP_LIVENESS, MAP_RING, MAX_CLUSTER_DNS_ADDRS,
};

use super::query::{SERVER_V4, SERVER_V6};
use super::{Harness, OUT_BUF, Run, default_config};
use crate::frames::FrameSpec;
use crate::internals::boot_time_ns;
use crate::lab::{Netns, Result};

/// The cluster DNS Service's addresses in the program's tests.
pub const CLUSTER_V4: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
pub const CLUSTER_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x96, 0, 0, 0, 0, 0, 0xa);
/// The egress program's verdict for every packet: `TC_ACT_UNSPEC` (TCX
/// "next"), as `BPF_PROG_TEST_RUN` reports it.
pub const TC_NEXT: u32 = u32::MAX;
/// The program's XDP_DROP: a query handed to the agent's ring.
pub const XDP_DROP: u32 = 1;

/// [`default_config`] with [`CLUSTER_V4`] and [`CLUSTER_V6`], transparent.
pub fn transparent_config() -> Config {
    let mut cfg = default_config();
    cfg.cluster_v4_addrs[0] = u32::from_ne_bytes(CLUSTER_V4.octets());
    cfg.cluster_v6_addrs[0] = CLUSTER_V6.octets();
    cfg.cluster_v4_count = 1;
    cfg.cluster_v6_count = 1;
    cfg.transparent = 1;
    const _: () = assert!(MAX_CLUSTER_DNS_ADDRS >= 1);
    cfg
}

/// The cluster address of a family.
pub fn cluster_addr(v6: bool) -> IpAddr {
    if v6 {
        CLUSTER_V6.into()
    } else {
        CLUSTER_V4.into()
    }
}

/// The listen address of a family.
pub fn listen_addr(v6: bool) -> IpAddr {
    if v6 {
        SERVER_V6.into()
    } else {
        SERVER_V4.into()
    }
}

/// The flows map key of a query from `client` (UDP `id`, or TCP with id 0).
pub fn flow_key(client: SocketAddr, id: u16, tcp: bool) -> FlowKey {
    let mut addr = [0u8; 16];
    match client.ip() {
        IpAddr::V4(a) => addr[..4].copy_from_slice(&a.octets()),
        IpAddr::V6(a) => addr.copy_from_slice(&a.octets()),
    }
    FlowKey {
        addr,
        port: client.port().to_be(),
        id: id.to_be(),
        proto: if tcp { 6 } else { 17 },
        family: if client.is_ipv4() { 4 } else { 6 },
        _pad: [0; 2],
    }
}

/// A UDP frame of `payload` from `src` to `dst`, with a full checksum or
/// the pseudo-header seed a pod's socket leaves.
pub fn udp_frame(src: SocketAddr, dst: SocketAddr, payload: &[u8], full: bool) -> Vec<u8> {
    let mut spec = FrameSpec::udp(src, dst);
    spec.full_udp_checksum = full;
    spec.build(payload)
}

impl Harness {
    /// The agent's heartbeat as the program reads it (0: none).
    pub fn set_heartbeat(&mut self, ns: u64) {
        let mut map: Array<&mut MapData, Liveness> =
            Array::try_from(self.ebpf.map_mut(MAP_LIVENESS).unwrap()).unwrap();
        map.set(0, Liveness { heartbeat_ns: ns }, 0).unwrap();
    }

    /// A heartbeat just now.
    pub fn beat(&mut self) {
        self.set_heartbeat(boot_time_ns());
    }

    /// Records that the egress program runs on `ifindex`.
    pub fn set_egress(&mut self, ifindex: u32) {
        let mut map: HashMap<&mut MapData, u32, u32> =
            HashMap::try_from(self.ebpf.map_mut(MAP_EGRESS).unwrap()).unwrap();
        map.insert(ifindex, 1, 0).unwrap();
    }

    pub fn flow(&self, key: &FlowKey) -> Option<FlowValue> {
        let map: HashMap<&MapData, FlowKey, FlowValue> =
            HashMap::try_from(self.ebpf.map(MAP_FLOWS).unwrap()).unwrap();
        map.get(key, 0).ok()
    }

    /// Takes every record out of the ring.
    pub fn ring_records(&mut self) -> Vec<Vec<u8>> {
        let mut ring = RingBuf::try_from(self.ebpf.map_mut(MAP_RING).unwrap()).unwrap();
        let mut out = Vec::new();
        while let Some(item) = ring.next() {
            out.push(item.to_vec());
        }
        out
    }

    /// Loads the egress program (the XDP program's object holds it).
    pub fn load_egress(&mut self) {
        let prog: &mut SchedClassifier = self
            .ebpf
            .program_mut(EGRESS_PROGRAM_NAME)
            .expect("program nodedns_egress")
            .try_into()
            .unwrap();
        if let Err(e) = prog.load() {
            panic!("the verifier rejected {EGRESS_PROGRAM_NAME}: {e}\n{e:?}");
        }
    }

    /// One run of the egress program ([`Harness::load_egress`] first).
    pub fn run_egress(&self, frame: &[u8]) -> Run {
        let prog: &SchedClassifier = self
            .ebpf
            .program(EGRESS_PROGRAM_NAME)
            .unwrap()
            .try_into()
            .unwrap();
        let mut out = vec![0u8; OUT_BUF];
        let r = prog
            .test_run(TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut out),
                ..Default::default()
            })
            .unwrap_or_else(|e| panic!("BPF_PROG_TEST_RUN of the egress program: {e:?}"));
        out.truncate(r.data_size_out as usize);
        Run {
            action: r.return_value,
            out,
        }
    }

    /// Runs `f` and returns its result with the counters that moved, and
    /// by how much.
    pub fn counted<T>(&self, f: impl FnOnce() -> T) -> (T, Vec<(Counter, u64)>) {
        let before = self.counters();
        let out = f();
        let after = self.counters();
        let moved = Counter::ALL
            .iter()
            .map(|c| (*c, after[*c as usize] - before[*c as usize]))
            .filter(|(_, d)| *d != 0)
            .collect();
        (out, moved)
    }
}

/// A namespace of its own for `BPF_PROG_TEST_RUN`, with the listen
/// addresses on `lo`, where the program's socket lookup finds the agent's
/// listen socket only while a test holds one open.
pub struct ListenerNetns {
    netns: Netns,
}

impl ListenerNetns {
    pub fn new() -> Result<Self> {
        let netns = Netns::create("xdpfo")?;
        netns.ip(&["link", "set", "lo", "up"])?;
        netns.ip(&["addr", "add", &format!("{SERVER_V4}/32"), "dev", "lo"])?;
        netns.ip(&[
            "-6",
            "addr",
            "add",
            &format!("{SERVER_V6}/128"),
            "dev",
            "lo",
            "nodad",
        ])?;
        Ok(Self { netns })
    }

    /// Runs `f` inside the namespace; with `listening`, UDP sockets are
    /// bound to both listen addresses, port 53, while it runs.
    pub fn run<T: Send>(&self, listening: bool, f: impl FnOnce() -> T + Send) -> T {
        self.netns
            .enter(|| {
                let _sockets = listening.then(|| {
                    [SERVER_V4.into(), IpAddr::from(SERVER_V6)]
                        .map(|ip| UdpSocket::bind((ip, 53)).expect("bind the listen address"))
                });
                f()
            })
            .expect("enter the test namespace")
    }
}

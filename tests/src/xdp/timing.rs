//! The XDP program's ns per run through `BPF_PROG_TEST_RUN`, for the
//! microbenchmark test and the benchmark's figure (one method for both).
//!
//! A hit rewrites the frame, and the kernel does not restore it between
//! repetitions, so `repeat` cannot time hits: they are timed one run per
//! syscall, and the per-call timer overhead (a miss timed both ways) is
//! subtracted. Frames the program leaves alone are timed with `repeat`.

use std::net::{Ipv4Addr, SocketAddr};

use hickory_proto::rr::RecordType;

use super::{EntryDef, Harness, endpoints, query_frame};
use crate::frames::{FrameSpec, IPPROTO_TCP};

/// The name of the hot entry [`web_entry`] holds.
pub const WEB: &str = "web.default.svc.cluster.local.";

/// How much to time: `rounds` medians of `repeat` runs, or `singles`
/// single runs.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    pub repeat: u32,
    pub rounds: usize,
    pub singles: usize,
}

impl Timing {
    pub const FULL: Self = Self {
        repeat: 200_000,
        rounds: 7,
        singles: 3_000,
    };
    pub const QUICK: Self = Self {
        repeat: 50_000,
        rounds: 3,
        singles: 1_000,
    };

    /// Median ns per run of a frame the program leaves alone.
    pub fn repeated(&self, xdp: &Harness, frame: &[u8]) -> u64 {
        median(
            (0..self.rounds)
                .map(|_| xdp.bench(frame, self.repeat))
                .collect(),
        )
    }

    /// Median ns of single runs, each of which must end in `expect`.
    pub fn single(&self, xdp: &Harness, frame: &[u8], expect: u32) -> u64 {
        median(
            (0..self.singles)
                .map(|_| {
                    let (action, ns) = xdp.bench_once(frame);
                    assert_eq!(action, expect, "unexpected XDP verdict while timing");
                    ns
                })
                .collect(),
        )
    }

    /// Timer overhead of one single run: a miss timed singly minus its
    /// repeated time (`miss_ns`).
    pub fn overhead(&self, xdp: &Harness, miss: &[u8], miss_ns: u64) -> u64 {
        self.single(xdp, miss, super::XDP_PASS)
            .saturating_sub(miss_ns)
    }
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

/// `web.default.svc.cluster.local.` A 10.96.0.10: the hit.
pub fn web_entry() -> EntryDef {
    EntryDef::a(WEB, &[Ipv4Addr::new(10, 96, 0, 10)])
}

/// An IPv4 query for [`WEB`] A, without EDNS.
pub fn hit_frame() -> Vec<u8> {
    query_frame(false, 1, WEB, RecordType::A, None)
}

/// A valid query for a name with no entry (an ndots:5 search-path name).
pub fn miss_frame() -> Vec<u8> {
    query_frame(
        false,
        1,
        "api.example.com.default.svc.cluster.local.",
        RecordType::A,
        None,
    )
}

/// A TCP segment to port 443 from the client: not DNS at all.
pub fn not_dns_frame() -> Vec<u8> {
    let (client, _) = endpoints(false);
    let mut tcp = FrameSpec::udp(client, SocketAddr::new(client.ip(), 443));
    tcp.proto = IPPROTO_TCP;
    tcp.build(&[0u8; 40])
}

//! XDP program ns per run through `BPF_PROG_TEST_RUN`, with the method and
//! frames of the XDP microbenchmark test (`nodedns_tests::xdp::timing`):
//! `repeat` for frames the program leaves alone (pass, miss), single runs
//! minus the timer overhead for a hit (a hit rewrites the frame, so
//! `repeat` would time a reply after the first).

use nodedns_tests::xdp::timing::{Timing, hit_frame, miss_frame, not_dns_frame, web_entry};
use nodedns_tests::xdp::{Harness, XDP_TX};

pub struct Figures {
    pub hit_ns: u64,
    pub miss_ns: u64,
    pub pass_ns: u64,
}

pub fn run(quick: bool) -> Figures {
    let t = if quick { Timing::QUICK } else { Timing::FULL };
    let mut xdp = Harness::new();
    xdp.insert_entry(&web_entry());
    let miss = miss_frame();
    let pass_ns = t.repeated(&xdp, &not_dns_frame());
    let miss_ns = t.repeated(&xdp, &miss);
    let overhead = t.overhead(&xdp, &miss, miss_ns);
    let hit_ns = t
        .single(&xdp, &hit_frame(), XDP_TX)
        .saturating_sub(overhead);
    Figures {
        hit_ns,
        miss_ns,
        pass_ns,
    }
}

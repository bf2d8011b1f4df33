//! A small hot set asked over and over while a flood of unique cluster
//! names (each asked once, so NXDOMAIN in userspace) runs beside it: two
//! dnsperf runs from one lab namespace, and the share of the hot set's
//! answers the kernel gave. What admission to a full kernel map must keep
//! (docs/design.md#admission-and-eviction).

use std::fmt::Write as _;

use super::{DnsperfRun, DnsperfSummary, write_names as write};
use crate::lab::{Lab, LabError, Netns, Result};

/// Seconds dnsperf waits for an answer.
const TIMEOUT_SECS: u64 = 2;
/// Seconds the hot set is asked before the flood, so it is in the map.
const WARM_SECS: u64 = 2;

pub struct HotSetFlood {
    /// Where both runs send (port 53).
    pub server: String,
    /// The hot set: `name TYPE` lines, asked in turn.
    pub hot: Vec<String>,
    pub hot_qps: u64,
    /// Unique names in the flood (`flood-N.default.svc.cluster.local A`).
    pub flood: u64,
    pub flood_qps: u64,
}

#[derive(Clone, Debug)]
pub struct HotSetResult {
    pub hot: DnsperfSummary,
    pub flood: DnsperfSummary,
    /// Kernel answers during the flood: the hot set's (a flood name is
    /// asked once, so the kernel never has it to answer).
    pub kernel_hits: u64,
}

impl HotSetResult {
    /// Share of the hot set's answers the kernel gave, 0 to 1.
    pub fn kernel_share(&self) -> f64 {
        (self.kernel_hits as f64 / self.hot.completed.max(1) as f64).min(1.0)
    }

    /// One line for a report.
    pub fn line(&self) -> String {
        format!(
            "hot set: {} of {} answers from the kernel ({:.2}%); flood: {}",
            self.kernel_hits,
            self.hot.completed,
            100.0 * self.kernel_share(),
            self.flood.line("flood")
        )
    }
}

impl HotSetFlood {
    /// Seconds the flood takes at its rate.
    pub fn secs(&self) -> u64 {
        self.flood.div_ceil(self.flood_qps.max(1)).max(1)
    }

    /// Warms the hot set, then runs the flood and the hot set together
    /// from `netns`. `kernel_hits` reads the kernel's answer count (the
    /// XDP `hit` counter) before and after.
    pub fn run(
        &self,
        lab: &Lab,
        netns: &Netns,
        kernel_hits: impl Fn() -> std::result::Result<u64, String>,
    ) -> Result<HotSetResult> {
        let dir = lab.log_dir();
        let hot_file = dir.join("hot-set.txt");
        let flood_file = dir.join("flood.txt");
        let mut hot = String::new();
        for line in &self.hot {
            let _ = writeln!(hot, "{line}");
        }
        write(&hot_file, hot)?;
        let mut flood = String::with_capacity(self.flood as usize * 40);
        for i in 0..self.flood {
            let _ = writeln!(flood, "flood-{i}.default.svc.cluster.local A");
        }
        write(&flood_file, flood)?;
        let run = |names, qps, secs, once, clients| DnsperfRun {
            server: self.server.clone(),
            names,
            qps,
            secs,
            timeout_secs: TIMEOUT_SECS,
            clients,
            once,
        };
        let warm = run(hot_file.clone(), self.hot_qps, WARM_SECS, false, 1);
        let mut d = warm.start(lab, netns, "dnsperf-hot-warm")?;
        warm.finish(&mut d)?;

        let hits = || kernel_hits().map_err(LabError::Other);
        let before = hits()?;
        let flood = run(flood_file, self.flood_qps, self.secs(), true, 4);
        let hot = run(hot_file, self.hot_qps, self.secs(), false, 1);
        let mut flood_d = flood.start(lab, netns, "dnsperf-flood")?;
        let mut hot_d = hot.start(lab, netns, "dnsperf-hot")?;
        let hot_summary = hot.finish(&mut hot_d)?;
        let flood_summary = flood.finish(&mut flood_d)?;
        let after = hits()?;
        Ok(HotSetResult {
            hot: hot_summary,
            flood: flood_summary,
            kernel_hits: after.saturating_sub(before),
        })
    }
}

//! A hot and a cold dnsperf side by side from one namespace, the load a
//! hand-over must not drop a query of (docs/design.md#hand-over): hot names
//! asked over and over (the kernel answers them once promoted), and cold
//! names asked once each, half NXDOMAIN in the cluster zone and half
//! external names under [`EXAMPLE_ZONE`], which only userspace answers.

use super::{DnsperfRun, DnsperfSummary, write_names};
use crate::lab::{Daemon, Lab, Netns, Result};
use crate::upstream::EXAMPLE_ZONE;

pub struct HotColdLoad<'a> {
    /// Where both runs send (port 53).
    pub server: String,
    /// The hot names: `(name, TYPE)`, asked in turn.
    pub hot: &'a [(&'a str, &'a str)],
    pub hot_qps: u64,
    pub cold_qps: u64,
    pub secs: u64,
    /// Seconds dnsperf waits for an answer before it counts a query lost.
    pub timeout_secs: u64,
    /// Client sockets per run (so SO_REUSEPORT spreads them over agents).
    pub clients: u32,
}

/// Both runs of a [`HotColdLoad`], started.
pub struct HotColdRuns {
    hot: (DnsperfRun, Daemon),
    cold: (DnsperfRun, Daemon),
}

impl HotColdLoad<'_> {
    /// Starts both runs from `netns`. `case` tells apart the cold names and
    /// the log files of several loads in one lab ("" for the only one).
    pub fn start(&self, lab: &Lab, netns: &Netns, case: &str) -> Result<HotColdRuns> {
        let hot: String = self.hot.iter().map(|(n, t)| format!("{n} {t}\n")).collect();
        let cold: String = (0..self.cold_qps * self.secs)
            .map(|i| match i % 2 {
                0 => format!("c{case}{i}.nx.default.svc.cluster.local A\n"),
                _ => format!("c{case}{i}.{EXAMPLE_ZONE} A\n"),
            })
            .collect();
        let perf = |what: &str, names: String, qps: u64, once: bool| -> Result<_> {
            let label = match case {
                "" => what.to_string(),
                _ => format!("{what}-{case}"),
            };
            let file = lab.log_dir().join(format!("{label}.txt"));
            write_names(&file, names)?;
            let run = DnsperfRun {
                server: self.server.clone(),
                names: file,
                qps,
                secs: self.secs,
                timeout_secs: self.timeout_secs,
                clients: self.clients,
                once,
            };
            let daemon = run.start(lab, netns, &format!("dnsperf-{label}"))?;
            Ok((run, daemon))
        };
        Ok(HotColdRuns {
            hot: perf("hot", hot, self.hot_qps, false)?,
            cold: perf("cold", cold, self.cold_qps, true)?,
        })
    }
}

impl HotColdRuns {
    /// Whether both runs are still sending.
    pub fn running(&mut self) -> bool {
        self.hot.1.is_running() && self.cold.1.is_running()
    }

    /// Waits for both runs to finish: the hot and the cold summary.
    pub fn finish(mut self) -> Result<(DnsperfSummary, DnsperfSummary)> {
        let result = |(run, daemon): &mut (DnsperfRun, Daemon)| run.finish(daemon);
        Ok((result(&mut self.hot)?, result(&mut self.cold)?))
    }
}

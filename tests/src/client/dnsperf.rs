//! dnsperf as a bounded load from a lab namespace, and the "Statistics:"
//! block it prints at the end of a run, parsed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::lab::{Daemon, Lab, LabError, Netns, Result};

/// Queries dnsperf keeps outstanding: enough that it never pauses while
/// nothing answers, which would hide losses.
const MAX_OUTSTANDING: &str = "5000";
/// Bound on dnsperf's exit after its run and timeout are over.
const EXIT_GRACE: Duration = Duration::from_secs(10);

/// One dnsperf run: `qps` queries a second from `names` (`name TYPE` lines)
/// for `secs` seconds, at `server`:53.
pub struct DnsperfRun {
    pub server: String,
    pub names: PathBuf,
    pub qps: u64,
    pub secs: u64,
    /// Seconds dnsperf waits for an answer before it counts a query lost.
    pub timeout_secs: u64,
    /// Client sockets (so SO_REUSEPORT spreads them over several servers).
    pub clients: u32,
    /// Send each name once instead of cycling through the file.
    pub once: bool,
}

impl DnsperfRun {
    /// Starts dnsperf in `netns`, logging to the lab's log dir as `name`.
    pub fn start(&self, lab: &Lab, netns: &Netns, name: &str) -> Result<Daemon> {
        let (qps, secs, timeout, clients) = (
            self.qps.to_string(),
            self.secs.to_string(),
            self.timeout_secs.to_string(),
            self.clients.to_string(),
        );
        let names = self.names.to_string_lossy();
        let mut args = vec![
            "-s",
            &self.server,
            "-d",
            &names,
            "-Q",
            &qps,
            "-l",
            &secs,
            "-t",
            &timeout,
            "-c",
            &clients,
            "-q",
            MAX_OUTSTANDING,
        ];
        if self.once {
            args.extend(["-n", "1"]);
        }
        lab.start_in(netns, name, "dnsperf", &args)
    }

    /// Waits for a run started by [`Self::start`] and parses its summary.
    pub fn finish(&self, daemon: &mut Daemon) -> Result<DnsperfSummary> {
        let bound = Duration::from_secs(self.secs + self.timeout_secs) + EXIT_GRACE;
        let status = daemon.wait(bound)?;
        if !status.success() {
            return Err(LabError::Other(format!(
                "{} failed ({status}):\n{}",
                daemon.name(),
                daemon.log()
            )));
        }
        DnsperfSummary::parse(&daemon.log())
            .ok_or_else(|| LabError::Other(format!("no dnsperf summary:\n{}", daemon.log())))
    }
}

/// Writes a names file for dnsperf.
pub(super) fn write_names(path: &Path, text: String) -> Result<()> {
    std::fs::write(path, text).map_err(|source| LabError::Io {
        what: format!("write {}", path.display()),
        source,
    })
}

#[derive(Clone, Debug, Default)]
pub struct DnsperfSummary {
    pub sent: u64,
    pub completed: u64,
    pub lost: u64,
    pub qps: Option<f64>,
    /// Answers by rcode (`NOERROR`, `NXDOMAIN`, ...).
    pub rcodes: BTreeMap<String, u64>,
}

impl DnsperfSummary {
    /// `None` when the text has no summary (dnsperf failed to start).
    pub fn parse(text: &str) -> Option<Self> {
        let number = |rest: &str| -> Option<u64> { rest.split_whitespace().next()?.parse().ok() };
        let mut summary = Self::default();
        let mut seen = false;
        for line in text.lines().map(str::trim) {
            if let Some(rest) = line.strip_prefix("Queries sent:") {
                summary.sent = number(rest)?;
                seen = true;
            } else if let Some(rest) = line.strip_prefix("Queries completed:") {
                summary.completed = number(rest)?;
            } else if let Some(rest) = line.strip_prefix("Queries lost:") {
                summary.lost = number(rest)?;
            } else if let Some(rest) = line.strip_prefix("Queries per second:") {
                summary.qps = rest.split_whitespace().next().and_then(|n| n.parse().ok());
            } else if let Some(rest) = line.strip_prefix("Response codes:") {
                // "NOERROR 100 (50.00%), NXDOMAIN 100 (50.00%)"
                for part in rest.split(',') {
                    let mut f = part.split_whitespace();
                    if let (Some(code), Some(n)) = (f.next(), f.next().and_then(|n| n.parse().ok()))
                    {
                        summary.rcodes.insert(code.to_string(), n);
                    }
                }
            }
        }
        seen.then_some(summary)
    }

    /// Answers other than NOERROR and NXDOMAIN (SERVFAIL, REFUSED, ...).
    pub fn failed(&self) -> u64 {
        self.rcodes
            .iter()
            .filter(|(code, _)| !matches!(code.as_str(), "NOERROR" | "NXDOMAIN"))
            .map(|(_, n)| n)
            .sum()
    }

    /// One line for a report: `what sent … completed … lost … failed …`.
    pub fn line(&self, what: &str) -> String {
        format!(
            "{what:<5} sent {:>6}  completed {:>6}  lost {:>4}  failed {:>4}  {:?}",
            self.sent,
            self.completed,
            self.lost,
            self.failed(),
            self.rcodes
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_statistics_block() {
        let text = "\
Statistics:

  Queries sent:         9600
  Queries completed:    9598 (99.98%)
  Queries lost:         2 (0.02%)

  Response codes:       NOERROR 4800 (50.01%), NXDOMAIN 4797 (49.98%), SERVFAIL 1 (0.01%)
  Queries per second:   1199.512345
";
        let s = DnsperfSummary::parse(text).unwrap();
        assert_eq!((s.sent, s.completed, s.lost), (9600, 9598, 2));
        assert_eq!(s.failed(), 1);
        assert_eq!(s.qps, Some(1199.512345));
        assert!(DnsperfSummary::parse("dnsperf: no such file\n").is_none());
    }
}

//! dnsperf as a bounded load from a lab namespace, and its summary parsed:
//! how many queries were sent, answered, lost, and with which rcodes.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::lab::{Daemon, Lab, LabError, Netns, Result};

/// One dnsperf run: `qps` queries a second from `names` (`name TYPE` lines)
/// for `secs` seconds, at `server`:53.
pub struct Run {
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

impl Run {
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
            // Enough outstanding queries that dnsperf never pauses while
            // nothing answers: a pause would hide losses.
            "-q",
            "5000",
        ];
        if self.once {
            args.extend(["-n", "1"]);
        }
        lab.start_in(netns, name, "dnsperf", &args)
    }

    /// Waits for a run started by [`Self::start`] and parses its summary.
    pub fn finish(&self, daemon: &mut Daemon) -> Result<Summary> {
        let status = daemon.wait(Duration::from_secs(self.secs + self.timeout_secs + 10))?;
        if !status.success() {
            return Err(LabError::Other(format!(
                "{} failed ({status}):\n{}",
                daemon.name(),
                daemon.log()
            )));
        }
        Summary::parse(&daemon.log())
            .ok_or_else(|| LabError::Other(format!("no dnsperf summary:\n{}", daemon.log())))
    }
}

/// The "Statistics:" block dnsperf prints at the end.
#[derive(Debug, Default)]
pub struct Summary {
    pub sent: u64,
    pub completed: u64,
    pub lost: u64,
    pub rcodes: BTreeMap<String, u64>,
}

impl Summary {
    pub fn parse(log: &str) -> Option<Self> {
        let number = |line: &str| -> Option<u64> { line.split_whitespace().next()?.parse().ok() };
        let mut summary = Self::default();
        let mut seen = false;
        for line in log.lines().map(str::trim) {
            if let Some(rest) = line.strip_prefix("Queries sent:") {
                summary.sent = number(rest)?;
                seen = true;
            } else if let Some(rest) = line.strip_prefix("Queries completed:") {
                summary.completed = number(rest)?;
            } else if let Some(rest) = line.strip_prefix("Queries lost:") {
                summary.lost = number(rest)?;
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
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "sent {} completed {} lost {} failed {} {:?}",
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
    fn parses_the_statistics_block() {
        let log = "Statistics:\n\n  Queries sent:         200\n  Queries completed:    199 (99.50%)\n  \
                   Queries lost:         1 (0.50%)\n\n  Response codes:       NOERROR 150 (75.38%), \
                   NXDOMAIN 40 (20.10%), SERVFAIL 9 (4.52%)\n";
        let s = Summary::parse(log).unwrap();
        assert_eq!((s.sent, s.completed, s.lost), (200, 199, 1));
        assert_eq!(s.failed(), 9);
    }
}

//! dnsperf from a lab pod in the background ([`DnsperfLoad`]), and the
//! "Statistics:" block it prints at the end of a run, parsed.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::lab::{Daemon, Lab, Pod};

/// Client sockets per dnsperf, so SO_REUSEPORT spreads them over agents
/// side by side.
const CLIENTS: u32 = 8;
/// Queries dnsperf keeps outstanding: enough that it never pauses while
/// nobody answers (a pause would hide losses from the figures).
const OUTSTANDING: u32 = 5000;
/// Room past the run and its timeout before a run counts as hung.
const FINISH_SLACK: Duration = Duration::from_secs(10);

/// A bounded dnsperf run: `qps` queries a second from `file` for `seconds`
/// to `server`, a query lost after `timeout_secs`.
#[derive(Clone, Debug)]
pub struct DnsperfLoad {
    pub server: IpAddr,
    pub file: PathBuf,
    pub qps: u64,
    pub seconds: u64,
    pub timeout_secs: u64,
    /// Each line of the file once (`-n 1`), for names asked only once.
    pub once: bool,
}

impl DnsperfLoad {
    /// Starts dnsperf in `pod`, logging as `name` in the lab's log dir.
    pub fn start(&self, lab: &Lab, pod: &Pod, name: &str) -> Daemon {
        let (server, file) = (self.server.to_string(), self.file.display().to_string());
        let (qps, secs, timeout) = (
            self.qps.to_string(),
            self.seconds.to_string(),
            self.timeout_secs.to_string(),
        );
        let (clients, outstanding) = (CLIENTS.to_string(), OUTSTANDING.to_string());
        let mut args = vec![
            "-s",
            &server,
            "-d",
            &file,
            "-Q",
            &qps,
            "-l",
            &secs,
            "-t",
            &timeout,
            "-c",
            &clients,
            "-q",
            &outstanding,
        ];
        if self.once {
            args.extend(["-n", "1"]);
        }
        lab.start_in(pod.netns(), name, "dnsperf", &args)
            .expect("start dnsperf (apt-get install dnsperf)")
    }

    /// Waits for the run `daemon` (from [`DnsperfLoad::start`]) to end and
    /// parses its summary.
    pub fn finish(&self, daemon: &mut Daemon) -> DnsperfSummary {
        let bound = Duration::from_secs(self.seconds + self.timeout_secs) + FINISH_SLACK;
        let status = daemon.wait(bound).expect("dnsperf finishes");
        assert!(
            status.success(),
            "{} failed: {status}\n{}",
            daemon.name(),
            daemon.log()
        );
        DnsperfSummary::parse(&daemon.log())
            .unwrap_or_else(|| panic!("no dnsperf summary:\n{}", daemon.log()))
    }
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

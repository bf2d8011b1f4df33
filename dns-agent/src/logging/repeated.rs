//! "Log on change, then summarise" for a condition that recurs: an
//! upstream that stays dead, an API server that stays down, a kernel map
//! that keeps refusing writes. Logging each occurrence floods the logs
//! (every query, every retry); logging none hides the problem. So the
//! caller logs what [`Repeated`] says: when the condition starts, a summary
//! at most once per interval while it lasts ("still failing, N errors in
//! the last minute"), and when it ends.
//!
//! The helper only decides; the caller writes the log line, with its own
//! message and fields. It holds no lock: share it behind a `Mutex` (one per
//! upstream, per source, ...).
//!
//! ```
//! # use std::time::{Duration, Instant};
//! # use dns_agent::logging::repeated::{Repeated, Report};
//! let mut down = Repeated::new(Duration::from_secs(60));
//! let now = Instant::now();
//! match down.occurred(now) {
//!     Some(Report::Started) => { /* warn!(%error, "upstream is not answering") */ }
//!     Some(Report::Continuing { errors, over, .. }) => {
//!         /* warn!(errors, ?over, last_error = %error, "upstream still not answering") */
//!     }
//!     _ => { /* debug!(%error, ...) */ }
//! }
//! if let Some(Report::Ended { errors, lasted }) = down.cleared(now) {
//!     /* info!(errors, ?lasted, "upstream answers again") */
//! }
//! ```

use std::time::{Duration, Instant};

/// The interval between summaries most callers use.
pub const SUMMARY_INTERVAL: Duration = Duration::from_secs(60);

/// What to log now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Report {
    /// The first occurrence after a quiet time.
    Started,
    /// Still happening: `errors` occurrences over the last `over` (since
    /// the previous report), `total` since it started `since` ago.
    Continuing {
        errors: u64,
        over: Duration,
        total: u64,
        since: Duration,
    },
    /// It stopped, after `errors` occurrences over `lasted`.
    Ended { errors: u64, lasted: Duration },
}

#[derive(Clone, Copy, Debug)]
struct Episode {
    started: Instant,
    total: u64,
    unreported: u64,
    last_report: Instant,
}

/// One recurring condition.
#[derive(Clone, Debug)]
pub struct Repeated {
    summary_every: Duration,
    episode: Option<Episode>,
}

impl Repeated {
    pub const fn new(summary_every: Duration) -> Self {
        Self {
            summary_every,
            episode: None,
        }
    }

    /// It happened (again) at `now`: [`Report::Started`] the first time,
    /// [`Report::Continuing`] once per interval after that, else None.
    pub fn occurred(&mut self, now: Instant) -> Option<Report> {
        let Some(e) = &mut self.episode else {
            self.episode = Some(Episode {
                started: now,
                total: 1,
                unreported: 0,
                last_report: now,
            });
            return Some(Report::Started);
        };
        e.total += 1;
        e.unreported += 1;
        let over = now.saturating_duration_since(e.last_report);
        if over < self.summary_every {
            return None;
        }
        let report = Report::Continuing {
            errors: e.unreported,
            over,
            total: e.total,
            since: now.saturating_duration_since(e.started),
        };
        e.unreported = 0;
        e.last_report = now;
        Some(report)
    }

    /// It is over (a success, a recovery): [`Report::Ended`] if it was on.
    pub fn cleared(&mut self, now: Instant) -> Option<Report> {
        let e = self.episode.take()?;
        Some(Report::Ended {
            errors: e.total,
            lasted: now.saturating_duration_since(e.started),
        })
    }

    pub fn is_on(&self) -> bool {
        self.episode.is_some()
    }

    /// [`Self::occurred`], logged: a warning when it starts and at each
    /// summary, a debug line otherwise. `what` names the condition ("upstream
    /// 10.0.0.2:53 is not answering"); `error` is this occurrence's.
    pub fn failed(&mut self, what: &str, error: &dyn std::fmt::Display) {
        match self.occurred(Instant::now()) {
            Some(Report::Started) => tracing::warn!(%error, "{what}"),
            Some(Report::Continuing {
                errors,
                over,
                total,
                since,
            }) => tracing::warn!(
                %error,
                errors,
                total,
                since_secs = since.as_secs(),
                "{what}: still failing, {errors} errors in the last {}s",
                over.as_secs()
            ),
            _ => tracing::debug!(%error, "{what}"),
        }
    }

    /// [`Self::cleared`], logged at info when the condition was on.
    pub fn recovered(&mut self, what: &str) {
        if let Some(Report::Ended { errors, lasted }) = self.cleared(Instant::now()) {
            tracing::info!(
                errors,
                lasted_secs = lasted.as_secs(),
                "{what}: recovered after {errors} errors"
            );
        }
    }
}

impl Default for Repeated {
    fn default() -> Self {
        Self::new(SUMMARY_INTERVAL)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_the_change_then_a_summary_per_interval_then_the_end() {
        let minute = Duration::from_secs(60);
        let t0 = Instant::now();
        let mut r = Repeated::new(minute);
        assert_eq!(r.cleared(t0), None, "nothing to end");
        assert_eq!(r.occurred(t0), Some(Report::Started));
        for s in 1..60 {
            assert_eq!(r.occurred(t0 + Duration::from_secs(s)), None);
        }
        assert_eq!(
            r.occurred(t0 + minute),
            Some(Report::Continuing {
                errors: 60,
                over: minute,
                total: 61,
                since: minute,
            })
        );
        assert_eq!(r.occurred(t0 + minute + Duration::from_secs(1)), None);
        assert!(r.is_on());
        assert_eq!(
            r.cleared(t0 + 2 * minute),
            Some(Report::Ended {
                errors: 62,
                lasted: 2 * minute,
            })
        );
        assert!(!r.is_on());
        assert_eq!(r.occurred(t0 + 3 * minute), Some(Report::Started));
    }
}

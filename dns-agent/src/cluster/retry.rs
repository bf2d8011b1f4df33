//! How the API server watches retry (docs/design.md#sync-path): gently.
//!
//! kube's own `default_backoff()` resets on every event the watcher yields,
//! and the watcher yields `Init` before each list attempt, so with the API
//! server down it retried about once a second per resource, forever. Here:
//!
//! - the wait doubles from [`BACKOFF_FIRST`] up to [`BACKOFF_MAX`], each one
//!   drawn at random between half and all of it, so agents that lost the API
//!   server together do not come back (and relist) together;
//! - it starts over only once a watch really worked: it delivered a change,
//!   or it ran for [`STABLE_AFTER`] without an error since its list;
//! - the log says when a watch starts failing and when it recovers, and in
//!   between sums up once a minute, instead of a line per retry: the
//!   agent's one mechanism for that, [`Repeated`], decides.

use std::time::Duration;

use tokio::time::Instant;

use crate::logging::repeated::{Repeated, Report};

/// The first wait after an error.
pub const BACKOFF_FIRST: Duration = Duration::from_secs(1);
/// The longest wait between two attempts.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A watch that ran this long without an error since its list succeeded
/// counts as working: the next error starts the backoff over.
pub const STABLE_AFTER: Duration = Duration::from_secs(60);

/// What the source's event was, for the retry state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// The watcher starts a list: no proof of anything yet.
    Starting,
    /// A page or the end of a list arrived: the API server answers.
    Listed,
    /// A change arrived on the watch: it works.
    Changed,
}

/// Retry state of one watch.
#[derive(Debug)]
pub struct Retry {
    source: &'static str,
    /// Doublings so far since the last reset.
    attempt: u32,
    /// Since when the watch has answered without an error (None while it
    /// fails).
    healthy_since: Option<Instant>,
    failing: Repeated,
}

/// What to do after an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AfterError {
    pub wait: Duration,
    /// What to log at warn level now (the first error, or a summary); the
    /// other errors are logged at debug level.
    pub report: Option<Report>,
}

impl Retry {
    pub fn new(source: &'static str) -> Self {
        Self {
            source,
            attempt: 0,
            healthy_since: None,
            failing: Repeated::default(),
        }
    }

    /// Whether the watch is failing now (for the `source_up` gauge).
    pub fn is_failing(&self) -> bool {
        self.failing.is_on()
    }

    /// An event arrived. Returns [`Report::Ended`] when this ends a failure.
    pub fn progress(&mut self, progress: Progress, now: Instant) -> Option<Report> {
        if progress == Progress::Starting {
            return None;
        }
        if progress == Progress::Changed {
            self.attempt = 0;
        }
        self.healthy_since.get_or_insert(now);
        self.failing.cleared(now.into_std())
    }

    /// An attempt failed: how long to wait before the next one.
    pub fn error(&mut self, now: Instant) -> AfterError {
        if self
            .healthy_since
            .take()
            .is_some_and(|since| now.duration_since(since) >= STABLE_AFTER)
        {
            self.attempt = 0;
        }
        let wait = self.next_wait();
        let report = self.failing.occurred(now.into_std());
        AfterError { wait, report }
    }

    /// The line for `report`, for the log ("services watch failing ...").
    pub fn describe(&self, report: Report, error: Option<&str>) -> String {
        let source = self.source;
        let error = error.unwrap_or("none");
        match report {
            Report::Started => format!(
                "{source} watch failing ({error}); retrying with backoff up to {BACKOFF_MAX:?}, the last good state keeps serving"
            ),
            Report::Continuing {
                errors,
                over,
                total,
                since,
            } => format!(
                "{source} watch still failing: {errors} errors in the last {:.0?}, {total} since {:.0?} ago; last: {error}",
                over, since
            ),
            Report::Ended { errors, lasted } => {
                format!("{source} watch recovered after {errors} errors in {lasted:.0?}")
            }
        }
    }

    /// The next wait: the doubled base, drawn in [base/2, base].
    fn next_wait(&mut self) -> Duration {
        let base = BACKOFF_FIRST
            .saturating_mul(1 << self.attempt.min(16))
            .min(BACKOFF_MAX);
        if base < BACKOFF_MAX {
            self.attempt += 1;
        }
        base.mul_f64(0.5 + rand::random::<f64>() * 0.5)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_to_the_cap_and_stay_there() {
        let mut r = Retry::new("services");
        let t = Instant::now();
        let waits: Vec<Duration> = (0..10).map(|_| r.error(t).wait).collect();
        for (i, w) in waits.iter().enumerate() {
            let base = BACKOFF_FIRST.saturating_mul(1 << i).min(BACKOFF_MAX);
            assert!(
                *w >= base / 2 && *w <= base,
                "wait {i}: {w:?} for base {base:?}"
            );
        }
        // At the cap, at most 4 attempts a minute; with the ramp, the
        // first minute holds at most 8.
        let mut elapsed = Duration::ZERO;
        let mut attempts = 1;
        let mut r = Retry::new("services");
        loop {
            elapsed += r.error(t).wait;
            if elapsed > Duration::from_secs(60) {
                break;
            }
            attempts += 1;
        }
        assert!(attempts <= 8, "{attempts} attempts in the first minute");
    }

    #[test]
    fn only_a_working_watch_starts_the_backoff_over() {
        let mut r = Retry::new("services");
        let t = Instant::now();
        for _ in 0..6 {
            r.error(t);
        }
        // A list that succeeds, then an error at once: no reset (a list
        // alone proves little, and kube yields Init before every list).
        assert!(r.progress(Progress::Starting, t).is_none());
        assert!(r.progress(Progress::Listed, t).is_some(), "recovery logged");
        let wait = r.error(t + Duration::from_secs(1)).wait;
        assert!(wait >= BACKOFF_MAX / 2, "still backed off: {wait:?}");
        // A change on the watch: the next error starts over.
        r.progress(Progress::Changed, t);
        assert!(r.error(t).wait <= BACKOFF_FIRST);
        // Quiet but error-free for STABLE_AFTER since its list: too.
        for _ in 0..6 {
            r.error(t);
        }
        r.progress(Progress::Listed, t);
        let later = t + STABLE_AFTER;
        assert!(r.error(later).wait <= BACKOFF_FIRST);
    }

    #[test]
    fn one_line_when_failing_starts_then_summaries() {
        let mut r = Retry::new("services");
        let t = Instant::now();
        let mut lines = Vec::new();
        for s in 0..180 {
            // One error a second for three minutes (more than the backoff
            // allows, to count lines, not attempts).
            let report = r.error(t + Duration::from_secs(s)).report;
            lines.extend(report.map(|report| r.describe(report, Some("down"))));
        }
        assert_eq!(lines.len(), 3, "{lines:#?}");
        assert!(lines[0].contains("watch failing"));
        assert!(
            lines[1].contains("still failing: 60 errors"),
            "{}",
            lines[1]
        );
        assert!(r.is_failing());
        let recovered = r.progress(Progress::Listed, t + Duration::from_secs(181));
        let recovered = r.describe(recovered.expect("recovery reported"), None);
        assert!(
            recovered.contains("recovered after 180 errors"),
            "{recovered}"
        );
        assert!(!r.is_failing());
    }
}

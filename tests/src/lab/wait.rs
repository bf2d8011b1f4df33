//! Bounded waiting for a condition (a port open, a log line, a counter).

use std::fmt::Debug;
use std::time::{Duration, Instant};

use super::error::{LabError, Result};

const POLL: Duration = Duration::from_millis(10);

/// Polls `condition` until it returns `Some`, for at most `timeout`. This
/// bounds a test's wait; it is not a timing assertion.
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut condition: impl FnMut() -> Option<T>,
) -> Result<T> {
    let start = Instant::now();
    loop {
        if let Some(value) = condition() {
            return Ok(value);
        }
        if start.elapsed() >= timeout {
            return Err(timed_out(what, timeout));
        }
        std::thread::sleep(POLL);
    }
}

/// [`wait_for`] for tests on a tokio runtime, whose condition is a plain
/// check: returns how long it took to hold.
pub async fn wait_until(
    what: &str,
    timeout: Duration,
    mut condition: impl FnMut() -> bool,
) -> Result<Duration> {
    let start = Instant::now();
    while !condition() {
        if start.elapsed() >= timeout {
            return Err(timed_out(what, timeout));
        }
        tokio::time::sleep(POLL).await;
    }
    Ok(start.elapsed())
}

fn timed_out(what: &str, after: Duration) -> LabError {
    LabError::Timeout {
        what: what.to_string(),
        after,
    }
}

/// Runs `probe` (typically a `dig`) until `done` accepts its value; prints
/// and returns how long that took, measured from `start` (a figure, not an
/// assertion). Fails after `bound` with `what` and the last value seen.
pub fn measure_until<T: Debug>(
    what: &str,
    start: Instant,
    bound: Duration,
    mut probe: impl FnMut() -> T,
    mut done: impl FnMut(&T) -> bool,
) -> Result<Duration> {
    loop {
        let value = probe();
        if done(&value) {
            let took = start.elapsed();
            println!("{what}: {took:?}");
            return Ok(took);
        }
        if start.elapsed() > bound {
            return Err(LabError::Other(format!(
                "{what}: not seen within {bound:?}; last: {value:?}"
            )));
        }
        std::thread::sleep(POLL);
    }
}

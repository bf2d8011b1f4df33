//! Bounded waiting for a condition (a port open, a log line, a counter).

use std::time::{Duration, Instant};

use super::error::{LabError, Result};

const POLL: Duration = Duration::from_millis(20);

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
            return Err(LabError::Timeout {
                what: what.to_string(),
                after: timeout,
            });
        }
        std::thread::sleep(POLL);
    }
}

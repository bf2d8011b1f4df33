//! Labs of one test binary take turns only when a test asks to run alone:
//! a test that measures loss under load (a restart with dnsperf running)
//! must not share the machine's two CPUs with another lab of its binary,
//! as it did not when every test file was a binary of its own.

use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

static LABS: RwLock<()> = RwLock::new(());

/// A lab's hold on the binary's labs: shared with other labs, or alone.
/// Dropping it lets the next lab go.
#[derive(Debug)]
pub(crate) struct Turn {
    _shared: Option<RwLockReadGuard<'static, ()>>,
    _alone: Option<RwLockWriteGuard<'static, ()>>,
}

impl Turn {
    /// Runs beside other labs (waits while one runs alone).
    pub(crate) fn shared() -> Self {
        Self {
            // A panicking test poisons nothing the lock protects.
            _shared: Some(LABS.read().unwrap_or_else(|e| e.into_inner())),
            _alone: None,
        }
    }

    /// Waits until no other lab of this binary exists, and keeps others
    /// from starting until dropped.
    pub(crate) fn alone() -> Self {
        Self {
            _shared: None,
            _alone: Some(LABS.write().unwrap_or_else(|e| e.into_inner())),
        }
    }
}

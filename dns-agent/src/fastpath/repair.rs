//! The fast path's self-repair (docs/design.md#self-repair). Every
//! [`CHECK_INTERVAL`] the follower thread checks, with a few `stat`s and one
//! `bpf(2)` info call per link, that the pin directory is still the one this
//! agent locked, that every map and link pin is there, and that every link
//! still runs our program on its interface. What is missing is made again
//! from the descriptors the agent holds (re-pinned, not re-created: the
//! maps keep their entries), and a detached link is attached again by the
//! reconcile that follows. Each repair is logged once and counted in
//! `nodedns_repairs_total`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use super::error::FastPathError;
use super::owner::{DirLock, LockError};
use super::pins::PINNED_MAPS;
use super::shared::{Shared, State};
use crate::health::{Fault, NodeHealth, Repair};

/// How often the pins and links are checked.
pub(crate) const CHECK_INTERVAL: Duration = Duration::from_secs(2);

/// What the follower remembers between checks.
#[derive(Default)]
pub(crate) struct Repairer {
    /// A failing pin repair was logged (once, until it succeeds).
    pins_failing: bool,
    /// Interfaces our program ran on: losing one of them for good is a
    /// fault.
    served: BTreeSet<u32>,
    /// `nodedns_xdp_detached_total` as last seen.
    detached: u64,
}

impl Repairer {
    /// The periodic check. Repairs missing pins now; returns whether a
    /// reconcile is due: a link no longer runs our program, or an interface
    /// is skipped for another program, which may go at any moment without
    /// a link event (the previous agent's link, when it could not be taken
    /// over).
    pub fn check(&mut self, shared: &Shared) -> bool {
        let mut state = shared.lock();
        if !pins_intact(shared, &state) {
            match repin(shared, &mut state) {
                Ok(made) => {
                    self.pins_failing = false;
                    if !made.is_empty() {
                        tracing::warn!(bpffs = %shared.layout.root().display(), pinned = ?made,
                            "pins were removed under the running agent; pinned them again");
                        with_health(shared, |h| h.repaired(Repair::pins));
                    }
                }
                Err(e) => {
                    if !self.pins_failing {
                        tracing::error!(bpffs = %shared.layout.root().display(), error = %e,
                            "pins were removed under the running agent and cannot be made again; retrying");
                    }
                    self.pins_failing = true;
                }
            }
        }
        state.attacher.needs_reconcile(shared.program_id)
            || state.egress.needs_reconcile()
            || state.attacher.skips_foreign()
    }

    /// After a reconcile: counts the links attached again, and reports an
    /// interface our program ran on where it cannot be attached again.
    pub fn after_reconcile(&mut self, shared: &Shared) {
        let state = shared.lock();
        let detached = state.attacher.detached_outside();
        let repaired = detached.saturating_sub(self.detached);
        self.detached = detached;
        let attached: Vec<u32> = state.attacher.status().iter().map(|s| s.ifindex).collect();
        self.served.retain(|&i| state.attacher.knows(i));
        self.served.extend(attached);
        let failing = state.attacher.failing(&self.served);
        drop(state);
        with_health(shared, |h| {
            for _ in 0..repaired {
                h.repaired(Repair::xdp);
            }
            if failing.is_empty() {
                h.clear(Fault::Xdp);
            } else {
                h.fault(
                    Fault::Xdp,
                    format!("XDP was detached and cannot be attached again on ifindex {failing:?}"),
                );
            }
        });
    }
}

fn with_health(shared: &Shared, f: impl FnOnce(&Arc<NodeHealth>)) {
    if let Some(health) = shared.health.get() {
        f(health);
    }
}

/// Whether the directory is the one we locked and every pin is there.
fn pins_intact(shared: &Shared, state: &State) -> bool {
    let layout = &shared.layout;
    let locked = lock(&shared.owner)
        .as_ref()
        .is_some_and(|o| o.covers(layout.root()));
    locked
        && PINNED_MAPS.iter().all(|m| layout.map(m).exists())
        && state.attacher.pins_present()
        && state.egress.pins_present()
}

/// Makes the directory and locks it again, pins every map of our programs
/// that lost its pin, and every link we hold. What was pinned, by name.
fn repin(shared: &Shared, state: &mut State) -> Result<Vec<String>, FastPathError> {
    let layout = &shared.layout;
    layout.ensure()?;
    {
        let mut owner = lock(&shared.owner);
        if !owner.as_ref().is_some_and(|o| o.covers(layout.root())) {
            *owner = Some(lock_dir(layout.root())?);
        }
    }
    {
        // The half of the answer slots this agent writes stays locked
        // (docs/design.md#torn-reads).
        let dir = layout.slot_lock_dir(shared.slot_half);
        let mut slot = lock(&shared.slot_lock);
        if let Some((held, _)) = slot.as_mut()
            && !held.covers(&dir)
        {
            match DirLock::exclusive(&dir) {
                Ok(again) => *held = again,
                Err(_) => tracing::warn!(dir = %dir.display(),
                    "another agent holds this agent's half of the answer slots"),
            }
        }
    }
    let mut made = Vec::new();
    for (name, map) in &shared.pinned_maps {
        let path = layout.map(name);
        if path.exists() {
            continue;
        }
        map.pin(&path)
            .map_err(|e| FastPathError::io(&path, std::io::Error::other(e.to_string())))?;
        made.push(name.to_string());
    }
    made.extend(state.attacher.repin());
    made.extend(state.egress.repin());
    Ok(made)
}

/// The agent's shared lock on its pin directory (docs/design.md#self-repair).
pub(crate) fn lock_dir(root: &std::path::Path) -> Result<DirLock, FastPathError> {
    match DirLock::shared(root) {
        Ok(lock) => Ok(lock),
        Err(LockError::Held(_)) => Err(FastPathError::io(
            root,
            std::io::Error::other("a dns-agent cleanup holds the pin directory"),
        )),
        Err(LockError::Io(e)) => Err(FastPathError::io(root, e)),
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

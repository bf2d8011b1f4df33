//! Keeping the kernel entries in step with the zone: every cluster entry is
//! re-derived when the zone changes (unchanged answers are not rewritten),
//! entries are renewed before they expire, and expired upstream entries are
//! dropped.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::Promoter;
use super::policy::alias_hash;
use super::state::{Installed, Key, Origin};
use crate::zone::ZoneLookup;

impl Promoter {
    /// Re-derives cluster entries from the zone: all of them when `all`
    /// (unchanged answers are not rewritten), else only those due for
    /// renewal. Also drops expired upstream entries.
    /// `generation`: the zone generation a full re-derivation starts from.
    pub(super) fn refresh(&self, all: bool, generation: Option<u64>) {
        if self.zone.is_ready() {
            self.synced_once.store(true, Ordering::Relaxed);
        } else if !self.synced_once.load(Ordering::Relaxed) {
            // Nothing can be re-derived before the first sync; entries taken
            // over from a previous agent keep serving until then. (A zone
            // that loses its sync later has its entries withdrawn below.)
            return;
        }
        let now = Instant::now();
        if let Some(g) = generation {
            let mut state = self.state.lock().unwrap();
            state.zone_generation = state.zone_generation.max(g);
        }
        let renew_before = now + self.cfg.cluster_lifetime / 2;
        let (cluster, expired, chased): (Vec<Key>, Vec<Key>, Vec<(Key, u64)>) = {
            let state = self.state.lock().unwrap();
            let pick = |f: &dyn Fn(&Installed) -> bool| -> Vec<Key> {
                let matching = state.installed.iter().filter(|(_, i)| f(i));
                matching.map(|(k, _)| k.clone()).collect()
            };
            let chased = state.installed.iter().filter_map(|(k, i)| match i.origin {
                Origin::Chased(alias) if all && i.expires > now => Some((k.clone(), alias)),
                _ => None,
            });
            (
                pick(&|i| i.origin == Origin::Cluster && (all || i.expires < renew_before)),
                // Upstream data, and chased answers (which hold some), end
                // with their TTL.
                pick(&|i| i.origin != Origin::Cluster && i.expires <= now),
                chased.collect(),
            )
        };
        for key in expired {
            self.forget(&key);
        }
        for key in cluster {
            match self.zone.lookup(&key.0, key.1) {
                ZoneLookup::Answer(answer) => self.install_cluster(&key, &answer, None),
                // Left the zone, now leaves it through a CNAME (the next
                // query installs the chased answer), or the zone lost its
                // sync: userspace decides.
                ZoneLookup::NotOurs | ZoneLookup::NotReady | ZoneLookup::Alias(_) => {
                    self.forget(&key)
                }
            }
        }
        for (key, installed) in chased {
            // The forwarded part stays valid until its TTL ends; the zone's
            // part must still be the same.
            let same = matches!(self.zone.lookup(&key.0, key.1),
                ZoneLookup::Alias(alias) if alias_hash(&alias) == installed);
            if !same {
                self.forget(&key);
            }
        }
    }

    /// Follows zone changes (re-deriving every cluster entry at once) and
    /// renews entries before they expire, until cancelled.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        let mut changes = self.zone.changes();
        if self.zone.is_ready() {
            // Synced before this task started: no change may come for a
            // while, and entries taken over from a previous agent must
            // follow the zone now.
            let generation = *changes.borrow_and_update();
            let this = self.clone();
            let _ = tokio::task::spawn_blocking(move || this.refresh(true, Some(generation))).await;
        }
        let period = (self.cfg.cluster_lifetime / 4).max(Duration::from_secs(1));
        let mut renew = tokio::time::interval(period);
        renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                changed = changes.changed() => {
                    if changed.is_err() {
                        // The zone's sender went away; ask for a new receiver.
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        changes = self.zone.changes();
                        continue;
                    }
                    let generation = *changes.borrow_and_update();
                    // Lookups and map writes are synchronous: off the runtime.
                    let this = self.clone();
                    let _ = tokio::task::spawn_blocking(move || this.refresh(true, Some(generation))).await;
                }
                _ = renew.tick() => {
                    let this = self.clone();
                    let _ = tokio::task::spawn_blocking(move || this.refresh(false, None)).await;
                }
            }
        }
    }
}

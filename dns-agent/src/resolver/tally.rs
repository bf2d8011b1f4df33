//! Counts of work in progress per key (a client, a zone, an upstream),
//! holding only the keys with some: the map never outgrows the work it
//! counts, which the node-wide bounds already bound.

use std::collections::HashMap;
use std::hash::Hash;

/// A share (per client, per zone) is enforced only once more than this
/// part of the node-wide bound is in use. Below it nobody else needs the
/// room, so one client's burst (a pod's queued queries answered at once
/// after a hand-over, a batch job's lookups) is served, not refused; above
/// it no one key takes more than its share of what is left.
pub const SHARES_ENFORCED_ABOVE: (usize, usize) = (1, 2);

/// Whether `in_use` of `bound` is enough that shares are enforced.
pub fn contended(in_use: usize, bound: usize) -> bool {
    let (num, den) = SHARES_ENFORCED_ABOVE;
    in_use * den >= bound * num
}

#[derive(Debug)]
pub struct Tally<K>(HashMap<K, usize>);

impl<K> Default for Tally<K> {
    fn default() -> Self {
        Self(HashMap::new())
    }
}

impl<K: Eq + Hash + Clone> Tally<K> {
    /// How much `key` has in progress.
    pub fn get(&self, key: &K) -> usize {
        self.0.get(key).copied().unwrap_or(0)
    }

    /// Counts one more for `key` if it has fewer than `bound`.
    pub fn try_add(&mut self, key: &K, bound: usize) -> bool {
        if self.get(key) >= bound {
            return false;
        }
        self.add(key);
        true
    }

    /// Counts one more for `key` (its bound checked before).
    pub fn add(&mut self, key: &K) {
        *self.0.entry(key.clone()).or_default() += 1;
    }

    /// Counts one less for `key`, forgetting it at zero.
    pub fn remove_one(&mut self, key: &K) {
        if let Some(n) = self.0.get_mut(key) {
            *n -= 1;
            if *n == 0 {
                self.0.remove(key);
            }
        }
    }

    /// Keys with work in progress.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_leave_at_zero_and_stop_at_the_bound() {
        let mut t = Tally::default();
        assert!(t.try_add(&"a", 2) && t.try_add(&"a", 2));
        assert!(!t.try_add(&"a", 2));
        t.remove_one(&"a");
        t.remove_one(&"a");
        t.remove_one(&"a");
        assert!(t.is_empty());
    }

    #[test]
    fn shares_are_enforced_from_half_the_bound() {
        assert!(!contended(0, 8));
        assert!(!contended(3, 8));
        assert!(contended(4, 8));
        assert!(contended(1, 1));
    }
}

//! Bounds on upstream queries in flight: in total, per zone and per
//! upstream server, so that a zone whose servers never answer, or one dead
//! upstream, cannot take the whole budget from everyone else
//! (docs/design.md#fair-sharing).
//!
//! A slot is taken without waiting: beyond a bound the client gets SERVFAIL
//! at once, which is what it would get after the upstream timeout anyway.
//! The per-zone share is enforced only while half the total is in use
//! ([`super::tally::SHARES_ENFORCED_ABOVE`]): a burst for one zone on an
//! idle node is asked, not refused.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use hickory_proto::rr::Name;

use super::tally::{Tally, contended};

/// The limits, from `--max-outstanding` and its per-zone and per-upstream
/// companions.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub total: usize,
    pub per_zone: usize,
    pub per_upstream: usize,
}

#[derive(Default)]
struct Counts {
    total: usize,
    /// At most `total` entries each: bounded by `--max-outstanding`.
    zones: Tally<Name>,
    upstreams: Tally<SocketAddr>,
}

pub struct Budget {
    limits: Limits,
    counts: Mutex<Counts>,
}

/// Which bound refused a slot (the `bound` label of
/// `nodedns_upstream_overload_total`).
pub type Bound = &'static str;

/// One question's place in the budget, released on drop.
pub struct ZoneSlot {
    budget: Arc<Budget>,
    zone: Name,
}

/// One exchange with one upstream, released on drop.
pub struct UpstreamSlot {
    budget: Arc<Budget>,
    server: SocketAddr,
}

impl Budget {
    pub fn new(limits: Limits) -> Arc<Self> {
        Arc::new(Self {
            limits: Limits {
                total: limits.total.max(1),
                per_zone: limits.per_zone.max(1),
                per_upstream: limits.per_upstream.max(1),
            },
            counts: Mutex::default(),
        })
    }

    /// A slot for one question whose servers answer for `zone`.
    pub fn try_zone(self: &Arc<Self>, zone: &Name) -> Result<ZoneSlot, Bound> {
        let mut counts = self.counts.lock().unwrap();
        if counts.total >= self.limits.total {
            return Err("total");
        }
        if contended(counts.total, self.limits.total)
            && counts.zones.get(zone) >= self.limits.per_zone
        {
            return Err("zone");
        }
        counts.zones.add(zone);
        counts.total += 1;
        Ok(ZoneSlot {
            budget: self.clone(),
            zone: zone.clone(),
        })
    }

    /// A slot for one exchange with `server`, or None when that server has
    /// as many queries in flight as it may have.
    pub fn try_upstream(self: &Arc<Self>, server: SocketAddr) -> Option<UpstreamSlot> {
        let mut counts = self.counts.lock().unwrap();
        if !counts.upstreams.try_add(&server, self.limits.per_upstream) {
            return None;
        }
        Some(UpstreamSlot {
            budget: self.clone(),
            server,
        })
    }

    /// Queries in flight in total (for tests and metrics).
    pub fn in_flight(&self) -> usize {
        self.counts.lock().unwrap().total
    }
}

impl Drop for ZoneSlot {
    fn drop(&mut self) {
        let mut counts = self.budget.counts.lock().unwrap();
        counts.total -= 1;
        counts.zones.remove_one(&self.zone);
    }
}

impl Drop for UpstreamSlot {
    fn drop(&mut self) {
        let mut counts = self.budget.counts.lock().unwrap();
        counts.upstreams.remove_one(&self.server);
    }
}

/// The zone a question counts against: the stub domain its servers answer
/// for, or else its last two labels, which is the registered domain of
/// most names. Without a public-suffix list, all of `co.uk` shares one
/// bucket; a bucket only fills with queries its servers are slow to answer.
pub fn zone_of_question(name: &Name, route_zone: &Name) -> Name {
    if !route_zone.is_root() {
        return route_zone.clone();
    }
    if name.num_labels() <= 2 {
        name.to_lowercase()
    } else {
        name.trim_to(2).to_lowercase()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    fn budget(total: usize, per_zone: usize, per_upstream: usize) -> Arc<Budget> {
        Budget::new(Limits {
            total,
            per_zone,
            per_upstream,
        })
    }

    #[test]
    fn one_zone_cannot_take_the_whole_budget() {
        let budget = budget(4, 2, 3);
        let dead = name("dead.example.");
        let a = budget.try_zone(&dead).unwrap();
        let _b = budget.try_zone(&dead).unwrap();
        assert_eq!(budget.try_zone(&dead).err(), Some("zone"));
        let _c = budget.try_zone(&name("live.example.")).unwrap();
        let _d = budget.try_zone(&name("other.example.")).unwrap();
        assert_eq!(budget.try_zone(&name("more.example.")).err(), Some("total"));
        drop(a);
        let _e = budget.try_zone(&dead).expect("room again");
        assert_eq!(budget.in_flight(), 4);
    }

    #[test]
    fn on_an_idle_node_one_zone_may_go_past_its_share() {
        let budget = budget(8, 1, 8);
        let busy = name("busy.example.");
        let held: Vec<ZoneSlot> = (0..4).map(|_| budget.try_zone(&busy).unwrap()).collect();
        // Half the total in use: from now on the share holds.
        assert_eq!(budget.try_zone(&busy).err(), Some("zone"));
        let _other = budget.try_zone(&name("other.example.")).unwrap();
        drop(held);
        assert!(budget.try_zone(&busy).is_ok());
    }

    #[test]
    fn one_upstream_cannot_take_the_whole_budget() {
        let budget = budget(10, 10, 1);
        let a: SocketAddr = "10.0.0.1:53".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:53".parse().unwrap();
        let slot = budget.try_upstream(a).unwrap();
        assert!(budget.try_upstream(a).is_none());
        assert!(budget.try_upstream(b).is_some());
        drop(slot);
        assert!(budget.try_upstream(a).is_some());
        assert!(budget.counts.lock().unwrap().upstreams.is_empty());
    }

    #[test]
    fn questions_count_against_their_domain() {
        let root = Name::root();
        let q = |s| zone_of_question(&name(s), &root);
        assert_eq!(q("x1.Dead.Example."), name("dead.example."));
        assert_eq!(q("a.b.dead.example."), name("dead.example."));
        assert_eq!(q("example."), name("example."));
        let stub = name("corp.example.");
        assert_eq!(zone_of_question(&name("a.b.corp.example."), &stub), stub);
    }
}

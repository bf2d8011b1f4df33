//! The node's side of `/healthz` and what the agent repaired there
//! (docs/design.md#self-repair). The resolver's address check and the fast
//! path's follower thread report here; `/healthz` fails, with the reasons
//! in its body, while any fault stands.

use std::collections::BTreeMap;
use std::sync::Mutex;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// What was repaired: the `what` label of `nodedns_repairs_total`.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Repair {
    /// A listen address (or the listen interface) added again.
    address,
    /// The pin directory, a map pin or a link pin made again.
    pins,
    /// An XDP attachment made again after it was detached from outside.
    xdp,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RepairLabels {
    what: Repair,
}

/// A condition that keeps the node from being served, by what it concerns.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    /// A listen address is not local, and the agent cannot add it.
    Address,
    /// The pins could not be made again.
    Pins,
    /// The program could not be attached again where it ran.
    Xdp,
}

#[derive(Default)]
pub struct NodeHealth {
    faults: Mutex<BTreeMap<Fault, String>>,
    repairs: Family<RepairLabels, Counter>,
}

impl NodeHealth {
    /// Registers `nodedns_repairs_total`.
    pub fn register(&self, registry: &mut Registry) {
        for what in [Repair::address, Repair::pins, Repair::xdp] {
            // Present at zero from the start, so a rate works at once.
            let _ = self.repairs.get_or_create(&RepairLabels { what });
        }
        registry.register(
            "repairs",
            "What the agent found removed under it and made again, by what (address, pins, xdp)",
            self.repairs.clone(),
        );
    }

    /// Counts one repair (the caller logs it, once per event).
    pub fn repaired(&self, what: Repair) {
        self.repairs.get_or_create(&RepairLabels { what }).inc();
    }

    pub fn repairs(&self, what: Repair) -> u64 {
        self.repairs.get_or_create(&RepairLabels { what }).get()
    }

    /// Records a fault; logs it when it appears or its reason changes.
    pub fn fault(&self, fault: Fault, reason: String) {
        let mut faults = lock(&self.faults);
        if faults.get(&fault) != Some(&reason) {
            tracing::error!(?fault, %reason, "the node cannot be served: /healthz fails until this is repaired");
            faults.insert(fault, reason);
        }
    }

    /// Clears a fault; logs it when there was one.
    pub fn clear(&self, fault: Fault) {
        if lock(&self.faults).remove(&fault).is_some() {
            tracing::info!(?fault, "repaired: the node can be served again");
        }
    }

    /// The standing faults' reasons; empty when healthy.
    pub fn faults(&self) -> Vec<String> {
        lock(&self.faults).values().cloned().collect()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_stand_until_cleared() {
        let health = NodeHealth::default();
        assert!(health.faults().is_empty());
        health.fault(
            Fault::Address,
            "listen address 169.254.20.10 is missing".into(),
        );
        health.fault(Fault::Xdp, "cannot attach".into());
        assert_eq!(health.faults().len(), 2);
        health.clear(Fault::Address);
        assert_eq!(health.faults(), ["cannot attach"]);
        health.repaired(Repair::pins);
        assert_eq!(
            (health.repairs(Repair::pins), health.repairs(Repair::xdp)),
            (1, 0)
        );
    }
}

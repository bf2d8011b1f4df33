//! The agent's one Prometheus registry. Every module registers its metrics
//! under the `nodedns_` prefix through [`Registry::sub_registry_with_prefix`]
//! or directly; `/metrics` encodes it in the text format.

pub use prometheus_client::registry::Registry;

/// Metrics prefix (without the trailing underscore, which the registry adds).
pub const PREFIX: &str = "nodedns";

/// A fresh registry with the project's prefix.
pub fn new_registry() -> Registry {
    Registry::with_prefix(PREFIX)
}

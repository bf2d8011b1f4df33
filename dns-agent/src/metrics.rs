//! The agent's one Prometheus registry. Every module registers its metrics
//! under the `nodedns_` prefix through [`Registry::sub_registry_with_prefix`]
//! or directly; `/metrics` encodes it in the text format.

use std::sync::{Arc, OnceLock};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
pub use prometheus_client::registry::Registry;

/// Metrics prefix (without the trailing underscore, which the registry adds).
pub const PREFIX: &str = "nodedns";

/// A fresh registry with the project's prefix.
pub fn new_registry() -> Registry {
    Registry::with_prefix(PREFIX)
}

/// A collector registered now whose metrics come later (the fast path's,
/// once it has loaded): it encodes nothing until [`Deferred::set`].
#[derive(Debug, Clone, Default)]
pub struct Deferred(Arc<OnceLock<Box<dyn Collector>>>);

impl Deferred {
    /// The collector to encode from now on (only the first one counts).
    pub fn set(&self, collector: Box<dyn Collector>) {
        let _ = self.0.set(collector);
    }
}

impl Collector for Deferred {
    fn encode(&self, encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        match self.0.get() {
            Some(collector) => collector.encode(encoder),
            None => Ok(()),
        }
    }
}

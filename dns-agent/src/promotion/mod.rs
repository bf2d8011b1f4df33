//! Promotion: the answers the resolver gives that the kernel should give
//! next time, written to the XDP program's answers map. The dependency
//! chain reads resolver → promotion → fastpath.
//!
//! - [`policy`]: which answers are promoted and when ([`Promoter`]): every
//!   cluster-zone answer, upstream answers once hot; within capacity by
//!   frequency-aware admission and eviction (`admission`).
//! - [`follow`]: keeps the entries in step with the zone and renews them.
//! - [`inherit`]: takes over the entries a previous agent left in a reused
//!   map.
//! - [`encoding`]: an answer as a map entry ([`dns_common::AnswerKey`],
//!   [`dns_common::AnswerEntry`]) and back.
//! - [`sink`] / [`map_sink`]: where entries go ([`AnswerSink`]): the pinned
//!   map of a running [`crate::fastpath::FastPath`], or memory in tests.
//! - [`metrics`]: the `nodedns_map_*` metrics.
//!
//! Wiring (`dns-agent run`): `MapSink::open(&fast_path)` becomes the
//! resolver's sink; the resolver builds the [`Promoter`] around it.

mod admission;
pub mod encoding;
pub mod follow;
pub mod inherit;
pub mod map_sink;
pub mod metrics;
pub mod policy;
pub mod sink;
mod state;
#[cfg(test)]
mod testing;

pub use inherit::Inherited;
pub use map_sink::MapSink;
pub use metrics::PromotionMetrics;
pub use policy::{Promoter, PromotionConfig};
pub use sink::{AnswerSink, MemorySink, SinkError};

//! nodedns agent library: everything `dns-agent` runs, split so the
//! integration tests and the benchmark can drive the same code.
//!
//! Module map (each owns its flags as a `clap::Args` struct):
//! - [`zone`]: the interface between cluster state and the resolver.
//! - [`cluster`]: Kubernetes sources (API server, manifests folder, custom
//!   records) and the record store that implements [`zone::Zone`].
//! - [`resolver`]: UDP/TCP listeners, the authoritative answers, the
//!   forwarding cache, the feeder that promotes hot answers to the kernel,
//!   `/metrics` and health.
//! - [`fastpath`]: the XDP program's loader, attachments, pins, maps and
//!   `inspect`; [`fastpath::entry`] encodes answers into map entries.
//! - [`metrics`]: the shared Prometheus registry.

#![deny(unsafe_code)]

pub mod cluster;
pub mod fastpath;
pub mod kernel;
pub mod metrics;
pub mod resolver;
pub mod zone;

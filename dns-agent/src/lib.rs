//! nodedns agent library: everything `dns-agent` runs, split so the
//! integration tests and the benchmark can drive the same code.
//!
//! Module map (each owns its flags as a `clap::Args` struct). Dependencies
//! point down the list: resolver → promotion → fastpath → kernel.
//! - [`answer`]: the sections of a DNS answer, the shape every module passes.
//! - [`zone`]: the interface between cluster state and the resolver.
//! - [`cluster`]: Kubernetes sources (API server, manifests folder, custom
//!   records) and the record store that implements [`zone::Zone`].
//! - [`resolver`]: UDP/TCP listeners, the authoritative answers, the
//!   forwarding cache, `/metrics` and health.
//! - [`promotion`]: which answers the kernel should give (cluster answers,
//!   hot upstream answers), their encoding as map entries, the map sink, and
//!   the entries a previous agent left.
//! - [`fastpath`]: the XDP program's loader, attachments, pins, maps and
//!   `cleanup`.
//! - [`health`]: what keeps the node from being served (`/healthz`) and
//!   what the agent repaired under itself.
//! - [`inspect`]: `dns-agent inspect`, the pinned maps decoded.
//! - [`kernel`]: rtnetlink and the raw syscalls; all the `unsafe` code.
//! - [`metrics`]: the shared Prometheus registry, the CoreDNS-compatible
//!   and process families, and the `/metrics` page.
//! - [`logging`]: log styles, the fatal error, repeated conditions.
//! - [`cli`]: what the command line and the `NODEDNS_*` environment share.

#![deny(unsafe_code)]

pub mod answer;
pub mod cli;
pub mod cluster;
pub mod fastpath;
pub mod health;
pub mod inspect;
pub mod kernel;
pub mod logging;
pub mod metrics;
pub mod promotion;
pub mod resolver;
pub mod zone;

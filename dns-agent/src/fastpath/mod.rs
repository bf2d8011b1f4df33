//! The XDP fast path, userspace side: load `dns-ebpf`, pin its maps (and
//! reuse those a previous agent pinned), attach it to pod interfaces as they
//! come and go, lend out the answers map (promotion writes it), export
//! counters, and `cleanup`.
//!
//! Pins (see [`pins`]) under `--bpffs-path` (default `/sys/fs/bpf/nodedns`):
//! `NODEDNS_INDEX`, `NODEDNS_ANSWERS`, `NODEDNS_COUNTERS`, `NODEDNS_CONFIG`
//! and `links/xdp-if<ifindex>`; `bpftool map dump pinned <dir>/NODEDNS_ANSWERS`
//! decodes them: the maps are BTF-defined (`#[btf_map]`), so key and value
//! print as named fields. Maps pinned by an older agent (same layout, no
//! BTF) are still reused; bpftool shows those in hex until they are
//! replaced.
//!
//! Where XDP runs: on the host-side veths of pods (`--interface`), in
//! generic mode on veth by default. Queries from hostNetwork pods and from
//! the node itself reach the listen address over loopback, where no XDP
//! program runs: userspace answers them.
//!
//! Restarts: with `--keep-on-exit` the links and maps stay pinned and the
//! kernel keeps answering the names in the map (until each entry's own
//! expiry). The next agent reuses the maps when their layout and capacity
//! match, and adopts each pinned link by swapping its program into it
//! (`bpf_link_update`),
//! so there is never a moment without a program and never a second
//! attachment.

//! Wiring (`dns-agent run`), from the host network namespace:
//! ```ignore
//! let fastpath = FastPath::start(&args.fastpath, &listen_ips, 53)?; // None: --xdp-mode off
//! let sink = fastpath.as_ref().map(MapSink::open).transpose()?; // crate::promotion
//! if let Some(fp) = &fastpath { fp.register_metrics(&mut registry) }
//! // ... on SIGTERM, after the listeners stop:
//! if let Some(fp) = fastpath { tokio::task::spawn_blocking(move || fp.shutdown()).await?? }
//! ```
//! `dns-agent cleanup` is [`run_cleanup`] with [`CleanupArgs`];
//! `dns-agent inspect` ([`crate::inspect`]) reads the pins this module
//! makes.

pub mod object;

pub mod args;
pub mod attach;
pub mod cleanup;
mod debug_log;
mod egress;
pub mod error;
mod interface_macs;
mod liveness;
pub mod loader;
mod metrics;
mod owner;
pub mod pins;
mod repair;
mod runtime;
pub mod selector;
mod shared;
pub mod slots;
pub mod stats;

pub use args::{CleanupArgs, FastPathArgs, InspectArgs, XdpModeArg};
pub use attach::{AttachMode, InterfaceStatus, SkipReason};
pub use cleanup::{CleanupClaim, CleanupReport, claim, cleanup, run_cleanup};
pub use error::FastPathError;
pub use liveness::{Heartbeat, LivenessState};
pub use runtime::{AnswersMap, ClusterDns, ExitPolicy, FastPath};

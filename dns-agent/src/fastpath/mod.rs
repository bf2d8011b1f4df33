//! The XDP fast path, userspace side: load `dns-ebpf`, pin and adopt its
//! maps, attach it to pod interfaces as they come and go, feed the answers
//! map ([`MapSink`]), export counters, and `inspect` / `cleanup`.
//!
//! Pins (see [`pins`]) under `--bpffs-path` (default `/sys/fs/bpf/nodedns`):
//! `NODEDNS_ANSWERS`, `NODEDNS_COUNTERS`, `NODEDNS_CONFIG` and
//! `links/xdp-if<ifindex>`; `bpftool map dump pinned <dir>/NODEDNS_ANSWERS`
//! decodes them: the maps are BTF-defined (`#[btf_map]`), so key and value
//! print as named fields. Maps pinned by an older agent (same layout, no
//! BTF) are still adopted; bpftool shows those in hex until they are
//! replaced.
//!
//! Where XDP runs: on the host-side veths of pods (`--interface`), in
//! generic mode on veth by default. Queries from hostNetwork pods and from
//! the node itself reach the listen address over loopback, where no XDP
//! program runs: userspace answers them.
//!
//! Restarts: with `--keep-on-exit` the links and maps stay pinned and the
//! kernel keeps answering the names in the map (until each entry's own
//! expiry). The next agent adopts the maps when their layout and capacity
//! match, and swaps its program into each pinned link (`bpf_link_update`),
//! so there is never a moment without a program and never a second
//! attachment.

//! Wiring (`dns-agent run`), from the host network namespace:
//! ```ignore
//! let fastpath = FastPath::start(&args.fastpath, &listen_ips, 53)?; // None: --xdp-mode off
//! let sink = fastpath.as_ref().map(|fp| fp.sink());
//! if let Some(fp) = &fastpath { fp.register_metrics(&mut registry) }
//! // ... on SIGTERM, after the listeners stop:
//! if let Some(fp) = fastpath { tokio::task::spawn_blocking(move || fp.shutdown()).await?? }
//! ```
//! `dns-agent inspect` and `dns-agent cleanup` are [`run_inspect`] and
//! [`run_cleanup`] with [`InspectArgs`] and [`CleanupArgs`].

pub mod entry;
pub mod object;
pub mod sink;

pub mod args;
pub mod attach;
pub mod cleanup;
pub mod error;
pub mod inspect;
pub mod loader;
pub mod map_sink;
mod metrics;
pub mod pins;
mod runtime;
pub mod selector;
mod shared;
pub mod stats;

pub use args::{CleanupArgs, FastPathArgs, InspectArgs, XdpModeArg};
pub use attach::{AttachMode, InterfaceStatus, SkipReason};
pub use cleanup::{CleanupReport, cleanup, run_cleanup};
pub use error::FastPathError;
pub use inspect::{inspect, run_inspect, snapshot};
pub use map_sink::MapSink;
pub use runtime::{ExitPolicy, FastPath};

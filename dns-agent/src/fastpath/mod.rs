//! The XDP fast path, userspace side: load `dns-ebpf`, pin and adopt its
//! maps, attach it to pod interfaces as they come and go, feed the answers
//! map ([`MapSink`]), export counters, and `inspect` / `cleanup`.
//!
//! Pins (see [`pins`]) under `--bpffs-path` (default `/sys/fs/bpf/nodedns`):
//! `NODEDNS_ANSWERS`, `NODEDNS_COUNTERS`, `NODEDNS_CONFIG` and
//! `links/xdp-if<ifindex>`; `bpftool map dump pinned <dir>/NODEDNS_ANSWERS`
//! reads them.

pub mod entry;
pub mod object;
pub mod sink;

pub mod args;
pub mod attach;
pub mod cleanup;
pub mod error;
pub mod inspect;
mod link_info;
pub mod loader;
pub mod map_sink;
mod metrics;
pub mod netlink;
pub mod pins;
mod runtime;
pub mod selector;
pub mod stats;

pub use args::{CleanupArgs, FastPathArgs, InspectArgs, XdpModeArg};
pub use attach::{AttachMode, InterfaceStatus, SkipReason};
pub use cleanup::{CleanupReport, cleanup};
pub use error::FastPathError;
pub use inspect::{inspect, snapshot};
pub use map_sink::MapSink;
pub use runtime::{ExitPolicy, FastPath};

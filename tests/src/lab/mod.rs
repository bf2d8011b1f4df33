//! The test lab: throwaway network namespaces that play a Kubernetes node and
//! its pods, joined by veth pairs, for the integration tests, the demo and the
//! benchmark.
//!
//! ```text
//!  pod netns "…-pod0"                     node netns "…-node"
//!  eth0 10.201.0.2/24 ─── veth pair ───── veth…0 10.201.0.1/24   lo: 169.254.20.10/32
//!       fd00:10:201:0::2/64                      fd00:10:201:0::1/64 fd00:169:254:20::10/128
//!  /etc/resolv.conf → nameserver 169.254.20.10, search …, ndots:5
//! ```
//!
//! The listen address sits on the node's `lo` because this kernel has no
//! `dummy` netdev (docs/design.md#no-dummy-netdev). Queries from a pod reach
//! it through the pod's default route, cross the veth and enter the node on
//! the host-side interface, where XDP attaches, like pod traffic on a real
//! node.
//!
//! Everything the lab creates has a name unique to the process and the lab
//! (pid, counter, random suffix) and is removed by a guard's `Drop`, on panic
//! too; nothing outside what it created is touched. See CONTRIBUTING.md.

mod agent_binary;
mod bpffs;
mod command;
mod error;
mod names;
mod netns;
mod pass_program;
mod process;
mod temp_dir;
mod topology;
mod turn;
mod veth;
mod wait;
mod xdp_status;

#[cfg(test)]
mod self_test;

use std::net::{Ipv4Addr, Ipv6Addr};

pub use agent_binary::agent_binary;
pub use bpffs::{BpffsDir, pin_files};
pub use command::run_here;
pub use error::{LabError, Result};
pub use names::{short_tag, unique_suffix};
pub use netns::Netns;
pub use pass_program::{PassProgram, XdpAttach};
pub use process::{Daemon, Signal, last_lines, print_log_on_panic};
pub use temp_dir::{KEEP_LOGS_ENV, TempDir};
pub use topology::{Lab, MAX_PODS, POD_IFNAME, Pod};
pub use veth::VethPair;
pub use wait::{measure_until, wait_for, wait_until};
pub use xdp_status::XdpAttachment;

/// The node-local DNS address pods use (NodeLocal DNSCache's default).
pub const LISTEN_V4: Ipv4Addr = Ipv4Addr::new(169, 254, 20, 10);
/// The lab's IPv6 listen address (a ULA; there is no IPv6 convention).
pub const LISTEN_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x169, 0x254, 0x20, 0, 0, 0, 0x10);
/// The search list of a pod in namespace `default` of zone `cluster.local`.
pub const POD_SEARCH: &str = "default.svc.cluster.local svc.cluster.local cluster.local";

/// Fails with a clear error unless the process runs as root. Privileged tests
/// call this (through [`Lab::new`], [`Netns::create`], [`BpffsDir::create`]
/// or the XDP harness) so they never pass by skipping.
pub fn require_root() -> Result<()> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Err(LabError::NotRoot);
    }
    Ok(())
}

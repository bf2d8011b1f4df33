//! The XDP tier: the program and the fast path's loader against the real
//! kernel, in-process, without the agent binary. `BPF_PROG_TEST_RUN`
//! through `nodedns_tests::xdp::Harness` first (crafted frames in, verdict,
//! bytes and counters out), then a lab node's veth with real clients in a
//! pod. Needs root (`cargo xtask test` runs it as root).
//!
//! `NODEDNS_XDP_OBJECT=<file>` tests that object instead of the one the
//! agent embeds (a fresh `dns-ebpf` build without rebuilding the agent).

mod edges;
mod kernel;
mod loader;
mod microbench;
mod race;
mod smoke;
mod verifier;
mod veth;

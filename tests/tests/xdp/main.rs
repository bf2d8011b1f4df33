//! The XDP tier: the program and the fast path's loader against the real
//! kernel, without the agent binary. Needs root.

mod kernel;
mod loader;
mod microbench;
mod race;
mod smoke;
mod support;
mod veth;

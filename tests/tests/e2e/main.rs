//! The e2e tier: the real `dns-agent` binary in a lab node.

mod adopt;
mod cluster;
mod node_support;
mod promotion;
mod restart;
mod support;
mod xdp;

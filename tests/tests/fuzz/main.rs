//! The fuzz tier: generated input through the real kernel. Needs root.

#[path = "../xdp/support.rs"]
mod support;
mod xdp;

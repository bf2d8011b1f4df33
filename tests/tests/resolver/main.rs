//! The resolver tier: the resolver in-process on loopback.

mod forwarding;
mod load;
mod server;
mod support;

//! The resolver tier: the resolver in-process (no agent binary, no XDP) on
//! a loopback address of its own, serving a static cluster zone the test
//! edits and forwarding to stand-in upstreams (dnsmasq, the hostile
//! upstream), asked by real `dig` and an in-process client. The promotion
//! to the kernel map goes to a memory sink. Also the listen interface the
//! resolver creates, in a lab namespace. `chase` puts the real cluster zone
//! behind the resolver, for ExternalName targets outside it.

mod chase;
mod fairness;
mod forwarding;
mod listen_interface;
mod load;
mod rfc;
mod server;
mod spoofing;

//! Opt-in debug tracing (the `debug-log` feature): one aya-log record per
//! packet, at the verdict, with the interface, the XDP action, the outcome
//! (its `dns_common::Counter` index, the `NODEDNS_COUNTERS` slot) and the
//! frame length. The agent forwards the records to its log when the object
//! it loads has aya-log's map. Without the feature this is empty and the
//! program carries neither the map nor any instruction of it.
//!
//! Measured on kernel 6.18: the verifier processes about 3k instructions
//! more with it (58,877 without). One call site only: the verifier walks
//! a log call once for every distinct state that reaches it. Even the
//! outcome's name instead of its index (a string per counter) took it to
//! 135k.

use aya_ebpf::programs::XdpContext;

#[cfg(feature = "debug-log")]
#[inline(always)]
pub fn verdict(ctx: &XdpContext, action: u32, counter: u32) {
    let len = ctx.data_end() - ctx.data();
    aya_log_ebpf::debug!(
        ctx,
        "ifindex {} action {} outcome #{} len {}",
        ctx.ingress_ifindex() as u32,
        action,
        counter,
        len as u32
    );
}

#[cfg(not(feature = "debug-log"))]
#[inline(always)]
pub fn verdict(_ctx: &XdpContext, _action: u32, _counter: u32) {}

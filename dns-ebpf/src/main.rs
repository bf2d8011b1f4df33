//! Minimal placeholder: counts every frame as not-DNS and passes it.
#![no_std]
#![no_main]

use aya_ebpf::{bindings::xdp_action, macros::{map, xdp}, maps::PerCpuArray, programs::XdpContext};
use dns_common::Counter;

#[map(name = "NODEDNS_COUNTERS")]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(Counter::COUNT, 0);

#[xdp]
pub fn nodedns_xdp(_ctx: XdpContext) -> u32 {
    if let Some(c) = COUNTERS.get_ptr_mut(Counter::PassNotDns as u32) {
        unsafe { *c += 1 };
    }
    xdp_action::XDP_PASS
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

//! `CLOCK_BOOTTIME`, the clock the XDP program reads: std's `Instant` is
//! `CLOCK_MONOTONIC`, which stops during suspend, so it cannot be compared
//! with `bpf_ktime_get_boot_ns`.

const NS_PER_SEC: u64 = 1_000_000_000;

/// Now on `CLOCK_BOOTTIME`, in nanoseconds.
pub fn boot_time_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid, writable timespec; CLOCK_BOOTTIME always exists
    // on Linux, so the call cannot fail.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    ts.tv_sec as u64 * NS_PER_SEC + ts.tv_nsec as u64
}

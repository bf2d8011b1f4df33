//! The one `sysconf(3)` value the process metrics need: `/proc` counts CPU
//! time and start time in clock ticks, whose length only the C library
//! reports (std has no wrapper).

/// Clock ticks per second (`_SC_CLK_TCK`), 100 where the call fails.
pub fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf reads a constant of the C library; no memory is passed.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as u64 } else { 100 }
}

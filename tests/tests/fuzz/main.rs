//! The fuzz tier: generated input, many cases per test, through the real
//! kernel. `cargo xtask fuzz-xdp --count N` runs it with `N` cases; `cargo
//! xtask test` with the default count. Needs root.

mod xdp;

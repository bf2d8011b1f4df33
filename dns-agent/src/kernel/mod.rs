//! The agent's own calls into the kernel, beside what aya, tokio and
//! socket2 already wrap: rtnetlink ([`netlink`]), the few `bpf(2)` commands
//! aya 0.14 lacks ([`bpf`]), an `AF_PACKET` sender ([`packet`]), a few small
//! calls ([`clock`], [`fs`], [`process`], [`socket`]) and one call into
//! glibc's allocator ([`heap`]). Every `unsafe` block of the agent lives in this module (the
//! crate denies `unsafe_code` everywhere else), each next to the reason no
//! crate does the job.

#[allow(unsafe_code)]
pub mod bpf;
#[allow(unsafe_code)]
pub mod clock;
#[allow(unsafe_code)]
pub mod fs;
#[allow(unsafe_code)]
pub mod heap;
pub mod netlink;
#[allow(unsafe_code)]
pub mod packet;
#[allow(unsafe_code)]
pub mod process;
#[allow(unsafe_code)]
pub mod socket;

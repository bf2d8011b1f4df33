//! `SO_ATTACH_REUSEPORT_CBPF`: socket2 wraps `SO_ATTACH_FILTER` but not the
//! reuseport variant, so this one `setsockopt` is written here.

use std::io;
use std::os::fd::{AsFd, AsRawFd};

/// Attaches the classic-BPF program `return index` to the reuseport group
/// of `socket` (replacing the group's previous program): the kernel hands
/// each packet or connection to the group's socket at `index`, and falls
/// back to its hash when the index is out of range.
pub fn steer_reuseport_group(socket: &impl AsFd, index: u32) -> io::Result<()> {
    let mut code = [libc::sock_filter {
        code: (libc::BPF_RET | libc::BPF_K) as u16,
        jt: 0,
        jf: 0,
        k: index,
    }];
    let prog = libc::sock_fprog {
        len: code.len() as u16,
        filter: code.as_mut_ptr(),
    };
    // SAFETY: a valid fd, and a sock_fprog pointing at `code`, which
    // outlives the call (the kernel copies the program).
    let rc = unsafe {
        libc::setsockopt(
            socket.as_fd().as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_REUSEPORT_CBPF,
            (&prog as *const libc::sock_fprog).cast(),
            size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

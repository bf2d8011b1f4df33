//! What a pinned XDP link is attached to, and detaching it now. aya's
//! `LinkInfo` does not expose the link's interface and aya has no
//! `BPF_LINK_DETACH`, so these are raw `bpf(2)` calls; nothing else in the
//! fast path goes around aya.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

const BPF_OBJ_GET: libc::c_long = 7;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_LINK_DETACH: libc::c_long = 34;
const BPF_LINK_TYPE_XDP: u32 = 6;
/// `struct bpf_link_info`: type, id, prog_id, then an 8-aligned union whose
/// `xdp` member starts with the ifindex.
const INFO_IFINDEX_OFFSET: usize = 16;

/// A pinned XDP link as the kernel sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XdpLinkState {
    pub link_id: u32,
    pub prog_id: u32,
    /// Zero once the interface is gone (the kernel detached the link).
    pub ifindex: u32,
}

/// Reads the pinned link at `path`. `Ok(None)`: it is a link, but not XDP.
pub fn read_pinned(path: &Path) -> io::Result<Option<XdpLinkState>> {
    let fd = obj_get(path)?;
    // Zeroed u64 words: the attr and the info must be 8-aligned.
    let mut info = [0u64; 16];
    let mut attr = [0u64; 4];
    let info_len = std::mem::size_of_val(&info) as u64;
    attr[0] = fd.as_raw_fd() as u64 | (info_len << 32);
    attr[1] = info.as_mut_ptr() as u64;
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
    let words: [u32; 5] = std::array::from_fn(|i| {
        let word = info[i / 2];
        if i % 2 == 0 {
            word as u32
        } else {
            (word >> 32) as u32
        }
    });
    debug_assert_eq!(INFO_IFINDEX_OFFSET, 4 * 4);
    if words[0] != BPF_LINK_TYPE_XDP {
        return Ok(None);
    }
    Ok(Some(XdpLinkState {
        link_id: words[1],
        prog_id: words[2],
        ifindex: words[4],
    }))
}

/// Detaches the pinned link at once. Dropping the last reference would
/// detach too, but from a kernel workqueue a little later; this way the
/// interface is free when we return. The pin itself stays.
pub fn detach_pinned(path: &Path) -> io::Result<()> {
    let fd = obj_get(path)?;
    let mut attr = [0u64; 4];
    attr[0] = fd.as_raw_fd() as u64;
    match bpf(BPF_LINK_DETACH, &mut attr) {
        Ok(_) => Ok(()),
        // Already detached (its interface is gone).
        Err(e) if e.raw_os_error() == Some(libc::ENOLINK) => Ok(()),
        Err(e) => Err(e),
    }
}

fn obj_get(path: &Path) -> io::Result<OwnedFd> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let mut attr = [0u64; 4];
    attr[0] = c_path.as_ptr() as u64;
    let fd = bpf(BPF_OBJ_GET, &mut attr)?;
    // SAFETY: BPF_OBJ_GET returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn bpf(cmd: libc::c_long, attr: &mut [u64; 4]) -> io::Result<i32> {
    // SAFETY: `attr` is a zero-padded bpf_attr for `cmd` that outlives the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr.as_mut_ptr(),
            std::mem::size_of_val(attr),
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret as i32)
    }
}

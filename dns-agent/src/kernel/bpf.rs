//! The `bpf(2)` commands aya 0.14 does not offer: what a pinned XDP or TCX
//! link is attached to (aya's `LinkInfo` has no ifindex, and its `FdLink`
//! does not lend its descriptor), detaching a link at once (no
//! `BPF_LINK_DETACH` in aya), a map's charged memory (aya's `MapInfo` lacks
//! `memlock`), and a shared mapping of a `BPF_F_MMAPABLE` array (aya maps
//! only ring buffers). The kernel ABI types are aya-obj's, the same
//! bindings aya itself uses; every other BPF operation of the agent goes
//! through aya.

use std::ffi::CString;
use std::io;
use std::mem;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

use aya_obj::generated::{bpf_attach_type, bpf_attr, bpf_cmd, bpf_link_info, bpf_link_type};

/// A pinned XDP link as the kernel sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XdpLinkState {
    pub link_id: u32,
    pub prog_id: u32,
    /// Zero once the interface is gone (the kernel detached the link).
    pub ifindex: u32,
}

/// Reads the pinned link at `path`. `Ok(None)`: it is a link, but not XDP.
pub fn read_pinned_xdp_link(path: &Path) -> io::Result<Option<XdpLinkState>> {
    let info = pinned_link_info(path)?;
    if info.type_ != bpf_link_type::BPF_LINK_TYPE_XDP as u32 {
        return Ok(None);
    }
    // SAFETY: for an XDP link the kernel fills the union's `xdp` member.
    let ifindex = unsafe { info.__bindgen_anon_1.xdp.ifindex };
    Ok(Some(XdpLinkState {
        link_id: info.id,
        prog_id: info.prog_id,
        ifindex,
    }))
}

/// Reads the pinned link at `path`. `Ok(None)`: it is a link, but not a
/// TCX egress link. The `XdpLinkState` fields mean the same for it.
pub fn read_pinned_tcx_egress_link(path: &Path) -> io::Result<Option<XdpLinkState>> {
    let info = pinned_link_info(path)?;
    if info.type_ != bpf_link_type::BPF_LINK_TYPE_TCX as u32 {
        return Ok(None);
    }
    // SAFETY: for a TCX link the kernel fills the union's `tcx` member.
    let tcx = unsafe { info.__bindgen_anon_1.tcx };
    if tcx.attach_type != bpf_attach_type::BPF_TCX_EGRESS as u32 {
        return Ok(None);
    }
    Ok(Some(XdpLinkState {
        link_id: info.id,
        prog_id: info.prog_id,
        ifindex: tcx.ifindex,
    }))
}

fn pinned_link_info(path: &Path) -> io::Result<bpf_link_info> {
    link_info(&obj_get(path)?)
}

fn link_info(fd: &OwnedFd) -> io::Result<bpf_link_info> {
    // SAFETY: bpf_link_info is plain integers and unions of them; all-zero
    // is a valid value.
    let mut info: bpf_link_info = unsafe { mem::zeroed() };
    let mut attr = zeroed_attr();
    attr.info.bpf_fd = fd.as_raw_fd() as u32;
    attr.info.info_len = size_of::<bpf_link_info>() as u32;
    attr.info.info = (&mut info as *mut bpf_link_info) as u64;
    sys_bpf(bpf_cmd::BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
    Ok(info)
}

/// Finds the XDP link that runs `prog_id` on `ifindex` among every link of
/// the system, and pins it at `path`: a link whose pin was removed while
/// its holder still runs can be taken over like a pinned one
/// (docs/design.md#self-repair). `Ok(false)`: there is no such link (the
/// program was attached through netlink). aya walks link ids, but neither
/// opens a link by id nor tells its ifindex.
pub fn pin_xdp_link_of(ifindex: u32, prog_id: u32, path: &Path) -> io::Result<bool> {
    let mut id = 0;
    loop {
        let mut attr = zeroed_attr();
        attr.__bindgen_anon_6.__bindgen_anon_1.start_id = id;
        match sys_bpf(bpf_cmd::BPF_LINK_GET_NEXT_ID, &mut attr) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(false),
            Err(e) => return Err(e),
        }
        // SAFETY: the kernel filled `next_id` of the union member we set.
        id = unsafe { attr.__bindgen_anon_6.next_id };
        let mut attr = zeroed_attr();
        attr.__bindgen_anon_6.__bindgen_anon_1.link_id = id;
        let fd = match sys_bpf(bpf_cmd::BPF_LINK_GET_FD_BY_ID, &mut attr) {
            // SAFETY: a new descriptor that nothing else owns.
            Ok(fd) => unsafe { OwnedFd::from_raw_fd(fd) },
            // Released since the id was listed.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
            Err(e) => return Err(e),
        };
        let info = link_info(&fd)?;
        if info.type_ != bpf_link_type::BPF_LINK_TYPE_XDP as u32 || info.prog_id != prog_id {
            continue;
        }
        // SAFETY: for an XDP link the kernel fills the union's `xdp` member.
        if unsafe { info.__bindgen_anon_1.xdp.ifindex } != ifindex {
            continue;
        }
        let c_path = CString::new(path.as_os_str().as_bytes())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let mut attr = zeroed_attr();
        attr.__bindgen_anon_4.bpf_fd = fd.as_raw_fd() as u32;
        attr.__bindgen_anon_4.pathname = c_path.as_ptr() as u64;
        sys_bpf(bpf_cmd::BPF_OBJ_PIN, &mut attr)?;
        return Ok(true);
    }
}

/// Detaches the pinned link at once. Dropping the last reference would
/// detach too, but from a kernel workqueue a little later; this way the
/// interface is free when we return. The pin itself stays.
pub fn detach_pinned_link(path: &Path) -> io::Result<()> {
    let fd = obj_get(path)?;
    let mut attr = zeroed_attr();
    attr.link_detach.link_fd = fd.as_raw_fd() as u32;
    match sys_bpf(bpf_cmd::BPF_LINK_DETACH, &mut attr) {
        Ok(_) => Ok(()),
        // Already detached (its interface is gone).
        Err(e) if e.raw_os_error() == Some(libc::ENOLINK) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Kernel memory charged to a BPF map, from `memlock:` in its fdinfo.
pub fn map_memlock(map: BorrowedFd<'_>) -> Option<u64> {
    let fdinfo = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", map.as_raw_fd())).ok()?;
    fdinfo
        .lines()
        .find_map(|l| l.strip_prefix("memlock:"))
        .and_then(|v| v.trim().parse().ok())
}

/// The first 8 bytes of a `BPF_F_MMAPABLE` array map (element 0's value),
/// shared with the kernel: a store here is what a BPF program reads next,
/// atomically and without a syscall (the agent's heartbeat).
pub struct MappedU64 {
    ptr: NonNull<AtomicU64>,
    len: usize,
}

// SAFETY: the mapping is plain shared memory accessed only through the
// AtomicU64; it stays valid until drop, whoever holds it.
unsafe impl Send for MappedU64 {}
unsafe impl Sync for MappedU64 {}

impl MappedU64 {
    /// Maps the array's first page. The map must be a `BPF_F_MMAPABLE`
    /// array whose value starts with a naturally aligned `u64`.
    pub fn map(map: BorrowedFd<'_>) -> io::Result<Self> {
        // SAFETY: sysconf has no preconditions.
        let len = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        // SAFETY: a fresh shared mapping of a map descriptor we borrow; the
        // kernel checks the map is mmapable and the length fits it.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                map.as_raw_fd(),
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(addr.cast::<AtomicU64>())
            .ok_or_else(|| io::Error::other("mmap of a BPF map returned null"))?;
        Ok(Self { ptr, len })
    }

    pub fn store(&self, value: u64) {
        // SAFETY: the page is mapped, page-aligned, and lives until drop.
        unsafe { self.ptr.as_ref() }.store(value, Ordering::Release);
    }

    pub fn load(&self) -> u64 {
        // SAFETY: as in `store`.
        unsafe { self.ptr.as_ref() }.load(Ordering::Acquire)
    }
}

impl Drop for MappedU64 {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map`, unmapped once.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// A ring buffer registered with the tokio reactor for readability: the
/// kernel signals its descriptor when records arrive (tokio's safe
/// constructor is deprecated for lack of I/O safety, hence this wrapper).
pub fn watch_ring(
    ring: aya::maps::RingBuf<aya::maps::MapData>,
) -> io::Result<tokio::io::unix::AsyncFd<aya::maps::RingBuf<aya::maps::MapData>>> {
    // SAFETY: the RingBuf owns its map's descriptor (in its MapData) for
    // its whole life, and `as_raw_fd` always returns that descriptor.
    unsafe { tokio::io::unix::AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
        .map_err(io::Error::from)
}

fn obj_get(path: &Path) -> io::Result<OwnedFd> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let mut attr = zeroed_attr();
    attr.__bindgen_anon_4.pathname = c_path.as_ptr() as u64;
    let fd = sys_bpf(bpf_cmd::BPF_OBJ_GET, &mut attr)?;
    // SAFETY: BPF_OBJ_GET returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn zeroed_attr() -> bpf_attr {
    // SAFETY: bpf_attr is a union of plain-integer structs; the kernel wants
    // every byte a command does not use to be zero.
    unsafe { mem::zeroed() }
}

fn sys_bpf(cmd: bpf_cmd, attr: &mut bpf_attr) -> io::Result<i32> {
    // SAFETY: `attr` is a zero-padded bpf_attr for `cmd` that outlives the
    // call; pointers in it (path, info) point at live buffers of ours.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd as libc::c_long,
            attr as *mut bpf_attr,
            size_of::<bpf_attr>(),
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret as i32)
    }
}

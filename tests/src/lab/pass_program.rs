//! A two-instruction XDP_PASS program for the pod side of a veth pair.
//!
//! In native (driver) mode, veth drops XDP_TX replies at the peer unless the
//! peer has an XDP program too (docs/design.md#generic-xdp-on-veth). The
//! benchmark's native-mode contender therefore needs one on the pod's
//! `eth0`; it must do nothing and cost next to nothing, so it is assembled
//! here instead of built with the eBPF toolchain.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::error::{LabError, Result};
use super::netns::Netns;

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_PROG_TYPE_XDP: u32 = 6;
/// `enum bpf_attach_type`'s BPF_XDP.
const BPF_XDP: u32 = 37;
const XDP_PASS: i32 = 2;

/// Where an XDP program runs on a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpAttach {
    /// Generic XDP, in the network stack (`XDP_FLAGS_SKB_MODE`).
    Skb,
    /// In the driver (`XDP_FLAGS_DRV_MODE`); veth supports it.
    Driver,
}

impl XdpAttach {
    fn flags(self) -> u32 {
        match self {
            Self::Skb => 1 << 1,
            Self::Driver => 1 << 2,
        }
    }
}

/// `struct bpf_insn`: opcode, dst/src registers, offset, immediate.
#[repr(C)]
struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

/// The head of `union bpf_attr` for BPF_PROG_LOAD; the kernel treats the
/// fields it knows beyond `size_of` as zero.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
}

/// The head of `union bpf_attr` for BPF_LINK_CREATE.
#[repr(C)]
#[derive(Default)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
}

/// An XDP_PASS program attached through a BPF link; dropping it closes the
/// link, which detaches the program.
#[derive(Debug)]
pub struct PassProgram {
    _link: OwnedFd,
    _program: OwnedFd,
}

impl PassProgram {
    /// Loads the program and attaches it to `ifname` inside `netns`.
    pub fn attach(netns: &Netns, ifname: &str, mode: XdpAttach) -> Result<Self> {
        let program = load()?;
        let ifindex = netns.ifindex(ifname)?;
        let attr = LinkCreateAttr {
            prog_fd: program.as_raw_fd() as u32,
            target_ifindex: ifindex,
            attach_type: BPF_XDP,
            flags: mode.flags(),
        };
        // The ifindex belongs to the namespace, so create the link from it.
        let link = netns.enter(|| bpf(BPF_LINK_CREATE, &attr))?.map_err(|e| {
            LabError::io(
                format!(
                    "attach the pass program to {ifname} in {} ({mode:?} mode)",
                    netns.name()
                ),
                e,
            )
        })?;
        Ok(Self {
            _link: link,
            _program: program,
        })
    }
}

fn load() -> Result<OwnedFd> {
    let insns = [
        // r0 = XDP_PASS
        Insn {
            code: 0xb7,
            regs: 0,
            off: 0,
            imm: XDP_PASS,
        },
        // exit
        Insn {
            code: 0x95,
            regs: 0,
            off: 0,
            imm: 0,
        },
    ];
    let license = CString::new("GPL").unwrap();
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_XDP,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        ..Default::default()
    };
    attr.prog_name[..10].copy_from_slice(b"ndlab_pass");
    bpf(BPF_PROG_LOAD, &attr).map_err(|e| LabError::io("load the XDP pass program", e))
}

/// bpf(2) for commands that return a new file descriptor.
fn bpf<T>(cmd: libc::c_long, attr: &T) -> std::io::Result<OwnedFd> {
    // SAFETY: `attr` is a valid repr(C) prefix of `union bpf_attr` for `cmd`
    // that lives across the call; pointers inside it outlive the call too.
    let ret = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *const T, size_of::<T>() as u32) };
    if ret < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: on success the kernel returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(ret as i32) })
}

//! What lives under the pin directory, and the bpffs checks.
//!
//! ```text
//! <bpffs-path>/NODEDNS_INDEX       hash map, question key hash (u64) -> IndexValue (slot)
//! <bpffs-path>/NODEDNS_ANSWERS     array of AnswerSlot (question + answer), by slot
//! <bpffs-path>/NODEDNS_COUNTERS    per-CPU array of u64, indexed by Counter
//! <bpffs-path>/NODEDNS_CONFIG      array of one Config
//! <bpffs-path>/NODEDNS_FLOWS       LRU hash, FlowKey -> FlowValue (failed-open flows)
//! <bpffs-path>/links/xdp-if<N>     the XDP link on the interface with ifindex N
//! <bpffs-path>/links/tc-if<N>      the TCX egress link on the interface with ifindex N
//! ```
//!
//! bpffs holds nothing but pins and directories, so this directory is the
//! complete record of what the fast path created on the node; `cleanup`
//! removes exactly these names. `NODEDNS_SCRATCH` and `NODEDNS_MISS` are
//! per-CPU scratch space with no state worth keeping; `NODEDNS_IFACES` and
//! `NODEDNS_EGRESS` are rebuilt by every agent before its programs run
//! there; `NODEDNS_RING` and `NODEDNS_LIVENESS` belong to the agent that
//! loaded them (its queries and its heartbeat): none of these is pinned.
//! `NODEDNS_FLOWS` is, because a failed-open query's reply must find its
//! flow whichever agent's programs run when it comes back.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use dns_common::{
    MAP_ANSWER_COUNTS, MAP_ANSWERS, MAP_CONFIG, MAP_COUNTERS, MAP_FLOWS, MAP_HOT_SAMPLES, MAP_INDEX,
};

use super::error::FastPathError;
use crate::kernel::bpf::{detach_pinned_link, read_pinned_tcx_egress_link, read_pinned_xdp_link};
use crate::kernel::fs::{BPF_FS_MAGIC, fs_type};
/// Sub-directory holding one pinned link per attached interface.
const LINKS_DIR: &str = "links";
/// Directories whose exclusive `flock` says which agent writes which half
/// of the answer slots (docs/design.md#torn-reads).
const SLOT_LOCK_DIRS: [&str; 2] = ["slots-0", "slots-1"];
const LINK_PREFIX: &str = "xdp-if";
const EGRESS_LINK_PREFIX: &str = "tc-if";

/// The maps the fast path pins, by name.
pub const PINNED_MAPS: [&str; 7] = [
    MAP_INDEX,
    MAP_ANSWERS,
    MAP_COUNTERS,
    MAP_ANSWER_COUNTS,
    MAP_HOT_SAMPLES,
    MAP_CONFIG,
    MAP_FLOWS,
];

#[derive(Debug, Clone)]
pub struct PinLayout {
    root: PathBuf,
}

impl PinLayout {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn map(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    pub fn links_dir(&self) -> PathBuf {
        self.root.join(LINKS_DIR)
    }

    /// The lock directory of slot half `half` (0 or 1).
    pub fn slot_lock_dir(&self, half: u8) -> PathBuf {
        self.root.join(SLOT_LOCK_DIRS[usize::from(half & 1)])
    }

    pub fn link(&self, ifindex: u32) -> PathBuf {
        self.links_dir().join(format!("{LINK_PREFIX}{ifindex}"))
    }

    /// The egress program's link on `ifindex`.
    pub fn egress_link(&self, ifindex: u32) -> PathBuf {
        self.links_dir()
            .join(format!("{EGRESS_LINK_PREFIX}{ifindex}"))
    }

    /// Every pinned XDP link, as (ifindex, path). A missing directory is
    /// empty.
    pub fn pinned_links(&self) -> Result<Vec<(u32, PathBuf)>, FastPathError> {
        self.pinned_with_prefix(LINK_PREFIX)
    }

    /// Every pinned egress link, as (ifindex, path).
    pub fn pinned_egress_links(&self) -> Result<Vec<(u32, PathBuf)>, FastPathError> {
        self.pinned_with_prefix(EGRESS_LINK_PREFIX)
    }

    fn pinned_with_prefix(&self, prefix: &str) -> Result<Vec<(u32, PathBuf)>, FastPathError> {
        let dir = self.links_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(FastPathError::io(dir, e)),
        };
        let mut links = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| FastPathError::io(&dir, e))?;
            let name = entry.file_name();
            let ifindex = name
                .to_str()
                .and_then(|n| n.strip_prefix(prefix))
                .and_then(|n| n.parse::<u32>().ok());
            if let Some(ifindex) = ifindex {
                links.push((ifindex, entry.path()));
            }
        }
        links.sort();
        Ok(links)
    }

    /// Checks the directory is (or will be) on bpffs and creates it.
    pub fn ensure(&self) -> Result<(), FastPathError> {
        check_bpffs(&self.root)?;
        for dir in [
            self.links_dir(),
            self.slot_lock_dir(0),
            self.slot_lock_dir(1),
        ] {
            fs::create_dir_all(&dir).map_err(|e| FastPathError::io(dir, e))?;
        }
        Ok(())
    }
}

/// Fails unless `path`, or its nearest existing ancestor, is on bpffs: pins
/// anywhere else fail with an obscure EPERM, and a directory made on the
/// wrong filesystem would be silently useless.
pub fn check_bpffs(path: &Path) -> Result<(), FastPathError> {
    let mut probe = path;
    while !probe.exists() {
        match probe.parent() {
            Some(parent) => probe = parent,
            None => break,
        }
    }
    let fs_type = fs_type(probe).map_err(|e| FastPathError::io(probe, e))?;
    if fs_type != BPF_FS_MAGIC {
        return Err(FastPathError::NotBpffs {
            path: path.to_path_buf(),
            found: probe.to_path_buf(),
            fs_type,
        });
    }
    Ok(())
}

/// Removes a pin; a pin that is already gone is not an error.
pub fn remove_pin(path: &Path) -> Result<bool, FastPathError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(FastPathError::io(path, e)),
    }
}

/// Detaches a pinned link now, then removes its pin.
pub(crate) fn detach_and_unpin(pin: &Path) -> Result<(), FastPathError> {
    match detach_pinned_link(pin) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(FastPathError::Link {
                path: pin.to_path_buf(),
                reason: format!("detach: {e}"),
            });
        }
    }
    remove_pin(pin).map(drop)
}

/// The two kinds of link the fast path pins under `links/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LinkKind {
    Xdp,
    Egress,
}

impl LinkKind {
    /// Whether the link pinned at `pin` still runs on `ifindex`: the kernel
    /// detaches a link whose interface went away, and its pin stays.
    pub(crate) fn runs_on(self, pin: &Path, ifindex: u32) -> bool {
        match self {
            Self::Xdp => matches!(read_pinned_xdp_link(pin), Ok(Some(s)) if s.ifindex == ifindex),
            Self::Egress => {
                matches!(read_pinned_tcx_egress_link(pin), Ok(Some(s)) if s.ifindex == ifindex)
            }
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Xdp => "XDP link",
            Self::Egress => "egress link",
        }
    }
}

/// Removes the stale ones of `pins` (links of `kind`), except those `held`
/// (ours, by ifindex): a pin whose link the kernel already detached, and
/// one `unwanted` where the agent no longer runs, detached now even if an
/// old agent still holds it (docs/design.md#hand-over).
pub(crate) fn sweep_link_pins(
    pins: Vec<(u32, PathBuf)>,
    kind: LinkKind,
    held: impl Fn(u32) -> bool,
    unwanted: impl Fn(u32) -> bool,
) {
    let what = kind.label();
    for (ifindex, pin) in pins {
        if held(ifindex) {
            continue;
        }
        let defunct = !kind.runs_on(&pin, ifindex);
        let removed = if defunct {
            remove_pin(&pin).map(drop)
        } else if unwanted(ifindex) {
            detach_and_unpin(&pin)
        } else {
            continue;
        };
        tracing::info!(pin = %pin.display(), defunct, "removed {what} pin");
        if let Err(e) = removed {
            tracing::warn!(error = %e, "cannot remove {what} pin");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_names_round_trip() {
        let layout = PinLayout::new("/sys/fs/bpf/x");
        assert_eq!(layout.link(42), Path::new("/sys/fs/bpf/x/links/xdp-if42"));
        assert_eq!(
            layout.egress_link(42),
            Path::new("/sys/fs/bpf/x/links/tc-if42")
        );
        assert_eq!(
            layout.map(MAP_ANSWERS),
            Path::new("/sys/fs/bpf/x/NODEDNS_ANSWERS")
        );
    }

    #[test]
    fn tmp_is_not_bpffs() {
        let err = check_bpffs(Path::new("/tmp/nodedns-not-bpffs/x")).unwrap_err();
        assert!(
            err.to_string().contains("mount -t bpf bpf /sys/fs/bpf"),
            "{err}"
        );
    }
}

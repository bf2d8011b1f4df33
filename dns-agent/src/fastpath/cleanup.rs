//! `dns-agent cleanup` and `--cleanup-on-exit`: remove the attachments and
//! pins the fast path made, and nothing else.

use std::fmt;
use std::fs;
use std::io;
use std::path::Path;

use dns_common::{EGRESS_PROGRAM_NAME, PROGRAM_NAME};

use super::error::FastPathError;
use super::owner::{DirLock, LockError};
use super::pins::{LinkKind, PINNED_MAPS, PinLayout, check_bpffs, remove_pin};
use crate::kernel::bpf::detach_pinned_link;
use crate::kernel::netlink;

/// What [`cleanup`] removed and what it could not.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CleanupReport {
    /// Link pins removed, as (ifindex, interface name if it still exists).
    pub links: Vec<(u32, Option<String>)>,
    /// Egress (TCX) link pins removed, the same way.
    pub egress_links: Vec<(u32, Option<String>)>,
    /// Map pins removed.
    pub maps: Vec<String>,
    pub removed_dir: bool,
    /// Interfaces (in this network namespace) still running a program named
    /// like ours (XDP or egress) after the cleanup: attached from another
    /// pin directory, or not through a pinned link.
    pub still_attached: Vec<String>,
}

impl fmt::Display for CleanupReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (what, links) in [("XDP", &self.links), ("egress", &self.egress_links)] {
            for (ifindex, name) in links {
                writeln!(
                    f,
                    "detached {what} link on {} (ifindex {ifindex})",
                    name.as_deref().unwrap_or("<gone>")
                )?;
            }
        }
        for map in &self.maps {
            writeln!(f, "removed map pin {map}")?;
        }
        if self.removed_dir {
            writeln!(f, "removed the pin directory")?;
        }
        if self.links.is_empty()
            && self.egress_links.is_empty()
            && self.maps.is_empty()
            && !self.removed_dir
        {
            writeln!(f, "nothing to clean up")?;
        }
        for name in &self.still_attached {
            writeln!(
                f,
                "warning: {name} still runs {PROGRAM_NAME} or {EGRESS_PROGRAM_NAME}, not attached \
                 from this pin directory: is an agent running with another --bpffs-path?"
            )?;
        }
        Ok(())
    }
}

/// `dns-agent cleanup`: cleans up and prints what was removed.
pub fn run_cleanup(args: &super::args::CleanupArgs) -> Result<(), FastPathError> {
    print!("{}", cleanup(&args.bpffs_path)?);
    Ok(())
}

/// `dns-agent cleanup`'s hold on the pin directory while it cleans up:
/// dropping it lets agents start there again.
#[derive(Debug)]
pub struct CleanupClaim {
    _lock: Option<DirLock>,
}

/// Takes the pin directory from every agent before `dns-agent cleanup`
/// touches anything (docs/design.md#self-repair): refuses while a running
/// agent holds it, unless `--force`.
pub fn claim(args: &super::args::CleanupArgs) -> Result<CleanupClaim, FastPathError> {
    let root = &args.bpffs_path;
    if !root.exists() {
        return Ok(CleanupClaim { _lock: None });
    }
    check_bpffs(root)?;
    match DirLock::exclusive(root) {
        Ok(lock) => Ok(CleanupClaim { _lock: Some(lock) }),
        Err(LockError::Held(pids)) => {
            let holders = if pids.is_empty() {
                "pid not visible from here".to_string()
            } else {
                let pids: Vec<String> = pids.iter().map(u32::to_string).collect();
                format!("pid {}", pids.join(", pid "))
            };
            if args.force {
                tracing::warn!(bpffs = %root.display(), %holders,
                    "a running agent owns the pin directory; cleaning up anyway (--force)");
                Ok(CleanupClaim { _lock: None })
            } else {
                Err(FastPathError::InUse {
                    path: root.clone(),
                    holders,
                })
            }
        }
        Err(LockError::Io(e)) => Err(FastPathError::io(root, e)),
    }
}

/// Removes every link pin (detaching it, unless a running agent still holds
/// the link), the map pins and the pin directory under `bpffs_path`.
pub fn cleanup(bpffs_path: &Path) -> Result<CleanupReport, FastPathError> {
    let layout = PinLayout::new(bpffs_path);
    let mut report = CleanupReport::default();
    if !layout.root().exists() {
        return Ok(report);
    }
    check_bpffs(layout.root())?;
    let names = netlink::list_interfaces().unwrap_or_default();
    let name_of = |ifindex: u32| {
        names
            .iter()
            .find(|i| i.ifindex == ifindex)
            .map(|i| i.name.clone())
    };
    let links = [
        (LinkKind::Xdp, layout.pinned_links()?, &mut report.links),
        (
            LinkKind::Egress,
            layout.pinned_egress_links()?,
            &mut report.egress_links,
        ),
    ];
    for (kind, pins, removed) in links {
        for (ifindex, pin) in pins {
            let live = kind.runs_on(&pin, ifindex);
            if remove_link(&pin, live)? {
                removed.push((ifindex, live.then(|| name_of(ifindex)).flatten()));
            }
        }
    }
    for map in PINNED_MAPS {
        if remove_pin(&layout.map(map))? {
            report.maps.push(map.to_string());
        }
    }
    remove_dir(&layout.links_dir())?;
    remove_dir(&layout.slot_lock_dir(0))?;
    remove_dir(&layout.slot_lock_dir(1))?;
    report.removed_dir = remove_dir(layout.root())?;
    report.still_attached = wait_detached()?;
    Ok(report)
}

/// Detaches a pinned link that is `live` (even if a running agent still
/// holds it: cleanup means nothing of ours stays attached) and removes its
/// pin. Whether there was a pin to remove.
fn remove_link(pin: &Path, live: bool) -> Result<bool, FastPathError> {
    if live {
        detach_pinned_link(pin).map_err(|e| FastPathError::io(pin, e))?;
    }
    remove_pin(pin)
}

/// `--cleanup-on-exit`: the same, unless a newer agent still uses the pins.
pub(crate) fn remove_if_unused(layout: &PinLayout) -> Result<(), FastPathError> {
    let mut links = layout.pinned_links()?;
    links.extend(layout.pinned_egress_links()?);
    if !links.is_empty() {
        tracing::warn!(links = links.len(), bpffs = %layout.root().display(),
            "other XDP links are still pinned (a newer agent?); keeping the maps");
        return Ok(());
    }
    for map in PINNED_MAPS {
        remove_pin(&layout.map(map))?;
    }
    remove_dir(&layout.links_dir())?;
    remove_dir(&layout.slot_lock_dir(0))?;
    remove_dir(&layout.slot_lock_dir(1))?;
    remove_dir(layout.root())?;
    tracing::info!(bpffs = %layout.root().display(), "XDP fast path cleaned up");
    Ok(())
}

/// Removes an empty directory; leaves one with foreign content, saying so.
fn remove_dir(path: &Path) -> Result<bool, FastPathError> {
    match fs::remove_dir(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) if e.kind() == io::ErrorKind::DirectoryNotEmpty => {
            tracing::warn!(dir = %path.display(), "directory holds pins nodedns did not make; left in place");
            Ok(false)
        }
        Err(e) => Err(FastPathError::io(path, e)),
    }
}

/// What still runs our program in this namespace. Links are detached
/// synchronously above, but a netlink attachment or a link not pinned here
/// (another agent's pin directory) may remain; the kernel may also still be
/// releasing one, so look again briefly before reporting it.
fn wait_detached() -> Result<Vec<String>, FastPathError> {
    const WAIT: std::time::Duration = std::time::Duration::from_secs(2);
    const STEP: std::time::Duration = std::time::Duration::from_millis(20);
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let attached = attached_here()?;
        if attached.is_empty() || std::time::Instant::now() >= deadline {
            return Ok(attached);
        }
        std::thread::sleep(STEP);
    }
}

/// Interfaces whose XDP program, or one of whose TCX egress programs, is
/// named like ours.
fn attached_here() -> Result<Vec<String>, FastPathError> {
    use aya::programs::{SchedClassifier, TcAttachType};
    let interfaces = netlink::list_interfaces().map_err(|source| FastPathError::Netlink {
        op: "link dump",
        source,
    })?;
    let ours: Vec<u32> = aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .filter(|p| p.name_as_str() == Some(PROGRAM_NAME))
        .map(|p| p.id())
        .collect();
    Ok(interfaces
        .into_iter()
        .filter(|i| {
            let egress = SchedClassifier::query_tcx(&i.name, TcAttachType::Egress)
                .map(|(_, progs)| {
                    progs
                        .iter()
                        .any(|p| p.name_as_str() == Some(EGRESS_PROGRAM_NAME))
                })
                .unwrap_or(false);
            egress || ours.iter().any(|&id| i.xdp.contains(id))
        })
        .map(|i| i.name)
        .collect())
}

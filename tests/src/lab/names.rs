//! Unique names for everything the lab creates.
//!
//! Several test binaries and several threads of one binary run at once on a
//! shared machine, so every name carries the pid and a per-process counter;
//! a random part guards against leftovers of a dead process with the same pid.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use super::error::{LabError, Result};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// `<pid>-<counter>-<random>`, unique among live processes and within one.
pub fn unique_suffix() -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{}-{n}-{:04x}", std::process::id(), rand::random::<u16>())
}

/// Creates `<parent>/ndlab-<unique suffix>`: a directory of the lab's own.
pub(crate) fn create_unique_dir(parent: &Path) -> Result<PathBuf> {
    let path = parent.join(format!("ndlab-{}", unique_suffix()));
    std::fs::create_dir(&path)
        .map_err(|e| LabError::io(format!("create {}", path.display()), e))?;
    Ok(path)
}

/// A short tag for interface names, which the kernel caps at 15 bytes:
/// 5 hex digits of the pid and 2 of a counter (the interfaces live in the
/// lab's own node namespace, so this only has to be unique enough to read).
pub fn short_tag() -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{:05x}{:02x}", std::process::id() & 0xf_ffff, n & 0xff)
}

/// Kernel interface name limit (IFNAMSIZ - 1).
pub const IFNAME_MAX: usize = 15;

/// Fails, naming the interface, when the kernel would refuse `name`.
pub(crate) fn check_ifname(name: &str) -> Result<()> {
    if name.len() > IFNAME_MAX {
        return Err(LabError::Other(format!(
            "interface name {name} is longer than {IFNAME_MAX} bytes"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes_differ_and_tags_fit_interface_names() {
        assert_ne!(unique_suffix(), unique_suffix());
        // "veth" + tag + two digits of a pod index, as the topology builds them.
        assert!(format!("veth{}{:02}", short_tag(), 99).len() <= IFNAME_MAX);
    }
}

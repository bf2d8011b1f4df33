//! A unique bpffs directory for pins, removed with its contents on drop.

use std::path::{Path, PathBuf};

use super::error::{LabError, Result};
use super::names::create_unique_dir;

/// `/sys/fs/bpf` is shared by every network namespace on the machine, so a
/// test that pins (the agent's `--bpffs-path`) gets its own directory.
#[derive(Debug)]
pub struct BpffsDir {
    path: PathBuf,
}

impl BpffsDir {
    pub const ROOT: &'static str = "/sys/fs/bpf";

    /// Creates `/sys/fs/bpf/ndlab-<pid>-<counter>-<random>`.
    pub fn create() -> Result<Self> {
        super::require_root()?;
        require_bpffs()?;
        Ok(Self {
            path: create_unique_dir(Path::new(Self::ROOT))?,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for BpffsDir {
    fn drop(&mut self) {
        // Unlinking a pin only drops that reference; the kernel frees the
        // object (and detaches a link) once nothing else holds it.
        if let Err(e) = std::fs::remove_dir_all(&self.path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            eprintln!("lab: could not remove {}: {e}", self.path.display());
        }
    }
}

/// Every file under `dir`, relative, sorted (for leak checks of pins).
pub fn pin_files(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.push(
                    path.strip_prefix(root)
                        .expect("a path under the walked dir")
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Pins need bpffs mounted at [`BpffsDir::ROOT`]; a plain directory there
/// would make every pin fail with a less helpful error.
fn require_bpffs() -> Result<()> {
    let mounts = std::fs::read_to_string("/proc/mounts")
        .map_err(|e| LabError::io("read /proc/mounts", e))?;
    let mounted = mounts.lines().any(|line| {
        let mut fields = line.split_whitespace().skip(1);
        fields.next() == Some(BpffsDir::ROOT) && fields.next() == Some("bpf")
    });
    if mounted {
        Ok(())
    } else {
        Err(LabError::NoBpffs)
    }
}

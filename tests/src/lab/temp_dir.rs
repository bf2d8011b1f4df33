//! A scratch directory under the system temp dir, removed on drop.

use std::path::{Path, PathBuf};

use super::error::Result;
use super::names::create_unique_dir;

/// Set to keep every lab's logs and scratch files (the path is printed when
/// the directory's guard is dropped).
pub const KEEP_LOGS_ENV: &str = "NODEDNS_LAB_KEEP_LOGS";

/// `<tmp>/ndlab-<pid>-<counter>-<random>`: a lab's logs, a daemon's log
/// outside any lab, manifests a test edits.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn create() -> Result<Self> {
        Ok(Self {
            path: create_unique_dir(&std::env::temp_dir())?,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // A failing test already shows each daemon's log tail (Daemon's
        // Drop), so by default nothing is left in the temp dir, even on panic.
        if std::env::var_os(KEEP_LOGS_ENV).is_some() {
            eprintln!("lab: kept {}", self.path.display());
            return;
        }
        if std::thread::panicking() {
            eprintln!(
                "lab: removing {}; set {KEEP_LOGS_ENV}=1 to keep it",
                self.path.display()
            );
        }
        if let Err(e) = std::fs::remove_dir_all(&self.path) {
            eprintln!("lab: could not remove {}: {e}", self.path.display());
        }
    }
}

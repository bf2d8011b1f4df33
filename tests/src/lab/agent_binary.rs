//! Finding the dns-agent binary the lab starts.

use std::path::PathBuf;

use super::error::{LabError, Result};

/// `NODEDNS_AGENT_BIN` if set, else the `dns-agent` built next to the running
/// executable: `<target>/debug/deps/<test>` → `<target>/debug/dns-agent`, or
/// `<target>/debug/<bin>` → `<target>/debug/dns-agent` for the demo and bench.
/// Cargo does not build another package's binary for a test, so
/// `cargo xtask test` builds it first.
pub fn agent_binary() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("NODEDNS_AGENT_BIN") {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(LabError::AgentBinaryMissing { path })
        };
    }
    let exe =
        std::env::current_exe().map_err(|e| LabError::io("find the running executable", e))?;
    let dir = exe
        .parent()
        .ok_or_else(|| LabError::Other(format!("{} has no parent", exe.display())))?;
    let candidates = [dir.join("dns-agent"), dir.join("../dns-agent")];
    candidates
        .iter()
        .find(|p| p.is_file())
        .map(|p| p.canonicalize().unwrap_or_else(|_| p.clone()))
        .ok_or_else(|| LabError::AgentBinaryMissing {
            path: dir.join("../dns-agent"),
        })
}

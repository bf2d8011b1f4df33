//! The lab's error type: each variant says what failed and what to do.

use std::path::PathBuf;
use std::time::Duration;

#[derive(thiserror::Error)]
pub enum LabError {
    #[error(
        "this test needs root (network namespaces, veth pairs, XDP): run it as root, \
         for example through `cargo xtask test`"
    )]
    NotRoot,
    #[error("/sys/fs/bpf is not a bpffs mount: mount it with `mount -t bpf bpf /sys/fs/bpf`")]
    NoBpffs,
    #[error(
        "could not start `{command}`: {source} (is it installed? `cargo xtask setup` installs the lab's tools)"
    )]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error(
        "the dns-agent binary is not at {path}: build it with `cargo build -p dns-agent` \
         (`cargo xtask test` does) or point NODEDNS_AGENT_BIN at one"
    )]
    AgentBinaryMissing { path: PathBuf },
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout { what: String, after: Duration },
    #[error("{0}")]
    Other(String),
}

/// Tests `unwrap()` lab results, which prints `Debug`: make that the
/// readable message ("this test needs root: ...") rather than `NotRoot`.
impl std::fmt::Debug for LabError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

pub type Result<T, E = LabError> = std::result::Result<T, E>;

impl LabError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            what: what.into(),
            source,
        }
    }
}

//! Where things are: the workspace root and the cargo target directory.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

/// The workspace root (xtask lives one level below it).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask has a parent directory")
        .to_path_buf()
}

/// `CARGO_TARGET_DIR` if set, else `<workspace>/target` (the same rule as
/// dns-agent's build script, so both agree on where the XDP object is).
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                root().join(dir)
            }
        }
        None => root().join("target"),
    }
}

/// Where `build-ebpf` leaves the object for dns-agent's build script.
pub fn ebpf_object() -> PathBuf {
    target_dir().join("ebpf/dns-ebpf.o")
}

/// True when running as root. `/proc/self` is owned by the effective uid,
/// which spares a libc dependency.
pub fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

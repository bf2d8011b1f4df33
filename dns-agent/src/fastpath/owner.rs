//! Who owns the pin directory (docs/design.md#self-repair): every running
//! agent holds a shared `flock` on the directory itself, and `dns-agent
//! cleanup` takes it exclusively. Agents of a rolling update share it; a
//! cleanup run while any of them lives is refused (unless `--force`), and
//! names them by pid from `/proc/locks`. The lock goes with the process,
//! however it ends, so a crashed agent never blocks a cleanup.

use std::fs::{File, TryLockError};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// A shared (agent) or exclusive (cleanup) lock on a pin directory.
#[derive(Debug)]
pub(crate) struct DirLock {
    /// The lock lives as long as this descriptor.
    _dir: File,
    dev: u64,
    ino: u64,
}

/// Why a lock was not taken.
#[derive(Debug)]
pub(crate) enum LockError {
    /// Another process holds a conflicting lock: the pids that hold one
    /// (empty when `/proc/locks` does not show them, e.g. from another pid
    /// namespace).
    Held(Vec<u32>),
    Io(io::Error),
}

impl DirLock {
    /// A running agent's lock: shared, never waiting.
    pub fn shared(dir: &Path) -> Result<Self, LockError> {
        Self::take(dir, false)
    }

    /// `dns-agent cleanup`'s lock: exclusive, never waiting.
    pub fn exclusive(dir: &Path) -> Result<Self, LockError> {
        Self::take(dir, true)
    }

    /// std's file locks are `flock(2)` on Linux, directories included.
    fn take(dir: &Path, exclusive: bool) -> Result<Self, LockError> {
        let file = File::open(dir).map_err(LockError::Io)?;
        let meta = file.metadata().map_err(LockError::Io)?;
        let taken = if exclusive {
            file.try_lock()
        } else {
            file.try_lock_shared()
        };
        match taken {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(LockError::Held(holders(meta.dev(), meta.ino())));
            }
            Err(TryLockError::Error(e)) => return Err(LockError::Io(e)),
        }
        Ok(Self {
            _dir: file,
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }

    /// Whether `dir` is still the directory this lock is on (not removed,
    /// nor removed and made again).
    pub fn covers(&self, dir: &Path) -> bool {
        std::fs::metadata(dir).is_ok_and(|m| m.dev() == self.dev && m.ino() == self.ino)
    }
}

/// The pids that hold a `flock` on the inode `(dev, ino)`, other than us.
fn holders(dev: u64, ino: u64) -> Vec<u32> {
    let Ok(locks) = std::fs::read_to_string("/proc/locks") else {
        return Vec::new();
    };
    let me = std::process::id();
    let mut pids = parse_locks(&locks, dev, ino);
    pids.retain(|&p| p != me && p != 0);
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// `/proc/locks` lines are `N: FLOCK ADVISORY READ <pid> <maj>:<min>:<ino> 0 EOF`,
/// with the device numbers in hex.
fn parse_locks(text: &str, dev: u64, ino: u64) -> Vec<u32> {
    let (major, minor) = (libc::major(dev) as u64, libc::minor(dev) as u64);
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // A blocked waiter's line starts "N: -> FLOCK": not a holder.
            if fields.get(1) != Some(&"FLOCK") {
                return None;
            }
            let pid = fields.get(4)?.parse::<u32>().ok()?;
            let mut id = fields.get(5)?.split(':');
            let maj = u64::from_str_radix(id.next()?, 16).ok()?;
            let min = u64::from_str_radix(id.next()?, 16).ok()?;
            let i = id.next()?.parse::<u64>().ok()?;
            (maj == major && min == minor && i == ino).then_some(pid)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_locks_lines_by_inode() {
        let text = "1: FLOCK  ADVISORY  WRITE 15714 fe:00:5415087 0 EOF\n\
                    2: FLOCK  ADVISORY  READ 17143 00:28:31014 0 EOF\n\
                    3: -> FLOCK  ADVISORY  WRITE 99 00:28:31014 0 EOF\n\
                    4: POSIX  ADVISORY  WRITE 5 00:28:31014 0 EOF\n\
                    5: FLOCK  ADVISORY  READ 17150 00:28:31014 0 EOF\n";
        let dev = libc::makedev(0, 0x28);
        assert_eq!(parse_locks(text, dev, 31014), [17143, 17150]);
        assert!(parse_locks(text, dev, 1).is_empty());
    }
}

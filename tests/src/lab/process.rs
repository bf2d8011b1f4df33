//! A long-running process inside a lab namespace (the agent, dnsmasq,
//! unbound, dnsperf) with its output in a log file, stopped by pid on drop.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use super::command::describe;
use super::error::{LabError, Result};
use super::wait::wait_for;

/// How long `Drop` and [`Daemon::stop`] wait after SIGKILL before giving up.
const KILL_GRACE: Duration = Duration::from_secs(5);
/// Log lines printed when a test panics with the process still running.
const LOG_TAIL_LINES: usize = 40;

/// Signals tests send to daemons (restart, crash, hang and resume).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    Term,
    Kill,
    Int,
    Hup,
    Stop,
    Cont,
}

impl Signal {
    fn raw(self) -> libc::c_int {
        match self {
            Self::Term => libc::SIGTERM,
            Self::Kill => libc::SIGKILL,
            Self::Int => libc::SIGINT,
            Self::Hup => libc::SIGHUP,
            Self::Stop => libc::SIGSTOP,
            Self::Cont => libc::SIGCONT,
        }
    }
}

/// A child process owned by a test. The child is never reaped behind the
/// guard's back, so its pid cannot be reused while the guard signals it.
#[derive(Debug)]
pub struct Daemon {
    name: String,
    command: String,
    child: Child,
    log: PathBuf,
    status: Option<ExitStatus>,
}

impl Daemon {
    /// Starts `cmd` (usually from [`super::Netns::command`]) with stdout and
    /// stderr appended to `log`.
    pub fn start(name: &str, mut cmd: Command, log: &Path) -> Result<Self> {
        let file =
            File::create(log).map_err(|e| LabError::io(format!("create {}", log.display()), e))?;
        let err = file
            .try_clone()
            .map_err(|e| LabError::io("duplicate the log file", e))?;
        cmd.stdin(Stdio::null()).stdout(file).stderr(err);
        let command = describe(&cmd);
        let child = cmd.spawn().map_err(|source| LabError::Spawn {
            command: command.clone(),
            source,
        })?;
        Ok(Self {
            name: name.to_string(),
            command,
            child,
            log: log.to_path_buf(),
            status: None,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Everything the process wrote so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends `signal` to the process (by pid; it is ours and not yet reaped).
    pub fn signal(&mut self, signal: Signal) -> Result<()> {
        if let Some(status) = self.try_status()? {
            return Err(LabError::Other(format!(
                "{} already exited ({status})",
                self.name
            )));
        }
        // SAFETY: kill(2) with a pid we own; see the type's docs on reuse.
        if unsafe { libc::kill(self.pid() as libc::pid_t, signal.raw()) } != 0 {
            let e = std::io::Error::last_os_error();
            return Err(LabError::io(
                format!("send {signal:?} to {} (pid {})", self.name, self.pid()),
                e,
            ));
        }
        Ok(())
    }

    /// The exit status if the process has exited (reaps it).
    pub fn try_status(&mut self) -> Result<Option<ExitStatus>> {
        if self.status.is_none() {
            self.status = self
                .child
                .try_wait()
                .map_err(|e| LabError::io(format!("wait for {}", self.name), e))?;
        }
        Ok(self.status)
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.try_status(), Ok(None))
    }

    /// Waits for the process to exit by itself.
    pub fn wait(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let what = format!("{} to exit", self.name);
        wait_for(&what, timeout, || self.try_status().ok().flatten())
    }

    /// SIGTERM, then SIGKILL if it is still running after `grace`.
    pub fn stop(&mut self, grace: Duration) -> Result<ExitStatus> {
        if let Some(status) = self.try_status()? {
            return Ok(status);
        }
        // A stopped process only acts on SIGTERM once continued.
        self.signal(Signal::Term)?;
        let _ = self.signal(Signal::Cont);
        match self.wait(grace) {
            Ok(status) => Ok(status),
            Err(_) => self.kill(),
        }
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) -> Result<ExitStatus> {
        if let Some(status) = self.try_status()? {
            return Ok(status);
        }
        self.signal(Signal::Kill)?;
        self.wait(KILL_GRACE)
    }

    /// Waits until the log contains `needle`; fails early, with the log, if
    /// the process exits first.
    pub fn wait_for_log(&mut self, needle: &str, timeout: Duration) -> Result<()> {
        let what = format!("{:?} in the log of {}", needle, self.name);
        let mut exited = None;
        let found = wait_for(&what, timeout, || {
            if self.log().contains(needle) {
                return Some(true);
            }
            match self.try_status() {
                Ok(Some(status)) => {
                    exited = Some(status);
                    Some(false)
                }
                _ => None,
            }
        });
        match (found, exited) {
            (Ok(true), _) => Ok(()),
            (_, Some(status)) => Err(LabError::Other(format!(
                "{} (`{}`) exited ({status}) before logging {needle:?}; its log:\n{}",
                self.name,
                self.command,
                self.log_tail()
            ))),
            (Err(e), _) => Err(LabError::Other(format!(
                "{e}; log of {}:\n{}",
                self.name,
                self.log_tail()
            ))),
            (Ok(false), None) => {
                unreachable!("wait_for only returns false once the process exited")
            }
        }
    }

    /// The last lines of the log, for failure messages.
    pub fn log_tail(&self) -> String {
        last_lines(&self.log(), LOG_TAIL_LINES)
    }
}

/// While the test thread panics, prints `who`'s last log lines (from
/// `tail`) to stderr, so a failure shows what the process said.
pub fn print_log_on_panic(who: impl std::fmt::Display, tail: impl FnOnce() -> String) {
    if std::thread::panicking() {
        eprintln!("{who}, last log lines:\n{}", tail());
    }
}

/// The last `n` lines of `text` (a log), for failure messages.
pub fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

impl Drop for Daemon {
    fn drop(&mut self) {
        print_log_on_panic(
            format_args!("lab: {} (`{}`)", self.name, self.command),
            || self.log_tail(),
        );
        if let Err(e) = self.kill() {
            eprintln!(
                "lab: could not stop {} (pid {}): {e}",
                self.name,
                self.pid()
            );
        }
    }
}

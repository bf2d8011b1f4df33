//! Running the lab's external tools (`ip`, clients, servers) with errors that
//! carry the command line and its stderr.

use std::process::{Command, Output, Stdio};

use super::error::{LabError, Result};

pub(crate) fn describe(cmd: &Command) -> String {
    let mut text = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        text.push(' ');
        text.push_str(&arg.to_string_lossy());
    }
    text
}

/// Runs `cmd` to completion and returns its output, whatever the exit status.
pub(crate) fn output(cmd: &mut Command) -> Result<Output> {
    cmd.stdin(Stdio::null())
        .output()
        .map_err(|source| LabError::Spawn {
            command: describe(cmd),
            source,
        })
}

/// Runs `cmd` and fails unless it exits with status 0.
pub(crate) fn checked(cmd: &mut Command) -> Result<Output> {
    let out = output(cmd)?;
    if !out.status.success() {
        return Err(LabError::Command {
            command: describe(cmd),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(out)
}

/// `ip <args>` that must succeed.
pub(crate) fn ip(args: &[&str]) -> Result<Output> {
    checked(Command::new("ip").args(args))
}

/// Runs `program args` in the test's own namespace (bpftool on pins, `ip
/// netns list`); fails unless it exits 0, and returns its stdout.
pub fn run_here(program: &str, args: &[&str]) -> Result<String> {
    let out = checked(Command::new(program).args(args))?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

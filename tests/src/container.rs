//! The agent's container image under test, run with podman: the image
//! reference, a `podman` command with the project's configuration, and a
//! guard that removes the container it started (on panic too).
//!
//! podman reads `xtask/containers.conf` (runc, no default ulimits; see the
//! file) unless `CONTAINERS_CONF` is already set, as `cargo xtask image`
//! does. Container names are unique like every lab name.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::lab::{LabError, Result, last_lines, print_log_on_panic, unique_suffix, wait_for};

/// Set by `cargo xtask test` to the id of the image it just built; empty
/// when that build failed.
pub const IMAGE_ENV: &str = "NODEDNS_IMAGE";
/// The tag `cargo xtask image` gives the image.
pub const IMAGE_TAG: &str = concat!("nodedns/dns-agent:", env!("CARGO_PKG_VERSION"));
/// Log lines printed when a test panics with the container still there.
const LOG_TAIL_LINES: usize = 60;

/// The image the tests run: `$NODEDNS_IMAGE`, else [`IMAGE_TAG`]. Fails,
/// saying what to run, when it is not in podman's store.
pub fn image() -> Result<String> {
    let image = match std::env::var(IMAGE_ENV) {
        Ok(id) if id.trim().is_empty() => {
            return Err(LabError::Other(format!(
                "{IMAGE_ENV} is empty: `cargo xtask image` failed earlier in this run (see its step)"
            )));
        }
        Ok(id) => id,
        Err(_) => IMAGE_TAG.to_string(),
    };
    let out = output(podman().args(["image", "inspect", "--format", "{{.Id}}", &image]))?;
    if !out.status.success() {
        return Err(LabError::Other(format!(
            "image {image} is not in podman's store: build it with `cargo xtask image` \
             (`cargo xtask test` does), or set {IMAGE_ENV}"
        )));
    }
    Ok(image)
}

/// A label of `image` (`org.opencontainers.image.version`, ...).
pub fn image_label(image: &str, label: &str) -> Result<String> {
    let format = format!("{{{{index .Labels \"{label}\"}}}}");
    checked(podman().args(["image", "inspect", "--format", &format, image]))
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `podman` with the project's containers.conf.
pub fn podman() -> Command {
    let mut cmd = Command::new("podman");
    if std::env::var_os("CONTAINERS_CONF").is_none() {
        cmd.env("CONTAINERS_CONF", containers_conf());
    }
    cmd
}

fn containers_conf() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../xtask/containers.conf")
}

/// `podman run --rm <options> <image> <args>` to completion (a one-shot
/// `dns-agent inspect` or `cleanup`), under a unique name so a hung run can
/// be told apart and removed.
pub fn run_once(role: &str, options: &[String], image: &str, args: &[&str]) -> Result<Output> {
    let name = format!("ndlab-{}-{role}", unique_suffix());
    let guard = Removal(name.clone());
    let out = output(
        podman()
            .args(["run", "--rm", "--name", &name])
            .args(options)
            .arg(image)
            .args(args),
    );
    drop(guard);
    out
}

/// What the kernel's memory cgroup of a container recorded.
#[derive(Clone, Copy, Debug)]
pub struct CgroupMemory {
    pub usage_bytes: u64,
    /// The highest usage since the container started.
    pub peak_bytes: u64,
    pub limit_bytes: u64,
    /// Kernel memory charged to the cgroup (BPF maps among it).
    pub kernel_bytes: u64,
    /// Processes the OOM killer killed in this cgroup.
    pub oom_kills: u64,
}

/// A container started with `podman run --detach`, removed (killed if need
/// be) when dropped. If the test is panicking, its log tail is printed.
pub struct Container {
    name: String,
}

impl Container {
    /// `podman run --detach --name ndlab-<unique>-<role> <options> <image> <args>`.
    pub fn start(role: &str, options: &[String], image: &str, args: &[String]) -> Result<Self> {
        let name = format!("ndlab-{}-{role}", unique_suffix());
        let mut cmd = podman();
        cmd.args(["run", "--detach", "--name", &name])
            .args(options)
            .arg(image)
            .args(args);
        // From here the guard owns the name: a failed start is removed too.
        let container = Self { name };
        checked(&mut cmd)?;
        Ok(container)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `podman inspect --format <format>`, trimmed.
    pub fn inspect(&self, format: &str) -> Result<String> {
        checked(podman().args(["container", "inspect", "--format", format, &self.name]))
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    pub fn is_running(&self) -> bool {
        self.inspect("{{.State.Running}}")
            .is_ok_and(|s| s == "true")
    }

    pub fn oom_killed(&self) -> bool {
        self.inspect("{{.State.OOMKilled}}")
            .is_ok_and(|s| s == "true")
    }

    /// The container's main process, as the machine's pid namespace sees it.
    pub fn pid(&self) -> Result<u32> {
        let pid = self.inspect("{{.State.Pid}}")?;
        pid.parse()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| LabError::Other(format!("{} has no running process", self.name)))
    }

    /// Everything the container wrote to stdout and stderr so far.
    pub fn logs(&self) -> String {
        match output(podman().args(["logs", &self.name])) {
            Ok(out) => {
                String::from_utf8_lossy(&out.stdout).into_owned()
                    + &String::from_utf8_lossy(&out.stderr)
            }
            Err(e) => format!("(podman logs failed: {e})"),
        }
    }

    /// Waits until `needle` appears in the logs; fails early if the
    /// container stops.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> Result<()> {
        let mut stopped = false;
        wait_for(
            &format!("{needle:?} in {}'s log", self.name),
            timeout,
            || {
                if self.logs().contains(needle) {
                    return Some(());
                }
                stopped = !self.is_running();
                stopped.then_some(())
            },
        )?;
        if stopped && !self.logs().contains(needle) {
            return Err(LabError::Other(format!(
                "{} stopped before logging {needle:?}; log:\n{}",
                self.name,
                self.logs()
            )));
        }
        Ok(())
    }

    /// Freezes every process of the container (the freezer cgroup).
    pub fn pause(&self) -> Result<()> {
        checked(podman().args(["pause", &self.name])).map(|_| ())
    }

    pub fn unpause(&self) -> Result<()> {
        checked(podman().args(["unpause", &self.name])).map(|_| ())
    }

    /// `podman stop`: SIGTERM, SIGKILL after `grace`, like kubelet with
    /// `terminationGracePeriodSeconds`. Returns the exit code.
    pub fn stop(&self, grace: Duration) -> Result<i32> {
        checked(podman().args(["stop", "--time", &grace.as_secs().to_string(), &self.name]))?;
        let code = self.inspect("{{.State.ExitCode}}")?;
        code.parse()
            .map_err(|_| LabError::Other(format!("exit code {code:?} of {}", self.name)))
    }

    /// The container's memory cgroup (v1 or v2), read from the machine's
    /// `/sys/fs/cgroup`. The container must be running.
    pub fn memory(&self) -> Result<CgroupMemory> {
        let pid = self.pid()?;
        let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .map_err(|e| LabError::io(format!("read /proc/{pid}/cgroup"), e))?;
        let read = |path: PathBuf| -> Result<String> {
            std::fs::read_to_string(&path)
                .map_err(|e| LabError::io(format!("read {}", path.display()), e))
        };
        let number = |text: &str| -> u64 { text.trim().parse().unwrap_or(u64::MAX) };
        let field = |text: &str, key: &str| -> u64 {
            text.lines()
                .find_map(|l| l.strip_prefix(key)?.trim().parse().ok())
                .unwrap_or(0)
        };
        // cgroup v1: "4:memory:/libpod_parent/libpod-<id>".
        if let Some(path) = cgroups
            .lines()
            .find_map(|l| l.split_once(":memory:").map(|(_, p)| p.to_string()))
        {
            let dir = PathBuf::from("/sys/fs/cgroup/memory").join(path.trim_start_matches('/'));
            return Ok(CgroupMemory {
                usage_bytes: number(&read(dir.join("memory.usage_in_bytes"))?),
                peak_bytes: number(&read(dir.join("memory.max_usage_in_bytes"))?),
                limit_bytes: number(&read(dir.join("memory.limit_in_bytes"))?),
                kernel_bytes: number(&read(dir.join("memory.kmem.usage_in_bytes"))?),
                oom_kills: field(&read(dir.join("memory.oom_control"))?, "oom_kill "),
            });
        }
        // cgroup v2: "0::/machine.slice/libpod-<id>.scope".
        let path = cgroups
            .lines()
            .find_map(|l| l.strip_prefix("0::"))
            .ok_or_else(|| LabError::Other(format!("no memory cgroup in /proc/{pid}/cgroup")))?;
        let dir = PathBuf::from("/sys/fs/cgroup").join(path.trim_start_matches('/'));
        Ok(CgroupMemory {
            usage_bytes: number(&read(dir.join("memory.current"))?),
            peak_bytes: number(&read(dir.join("memory.peak"))?),
            limit_bytes: number(&read(dir.join("memory.max"))?),
            kernel_bytes: field(&read(dir.join("memory.stat"))?, "kernel "),
            oom_kills: field(&read(dir.join("memory.events"))?, "oom_kill "),
        })
    }

    fn log_tail(&self) -> String {
        last_lines(&self.logs(), LOG_TAIL_LINES)
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        print_log_on_panic(format_args!("container {}", self.name), || self.log_tail());
        drop(Removal(self.name.clone()));
    }
}

/// Removes container `0` by name, if it exists.
struct Removal(String);

impl Drop for Removal {
    fn drop(&mut self) {
        let out = output(podman().args(["rm", "--force", "--ignore", "--time", "0", &self.0]));
        match out {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!(
                "container {}: podman rm failed: {}",
                self.0,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            Err(e) => eprintln!("container {}: {e}", self.0),
        }
    }
}

fn output(cmd: &mut Command) -> Result<Output> {
    cmd.stdin(Stdio::null())
        .output()
        .map_err(|source| LabError::Spawn {
            command: format!("{cmd:?}"),
            source,
        })
}

fn checked(cmd: &mut Command) -> Result<Output> {
    let out = output(cmd)?;
    if !out.status.success() {
        return Err(LabError::Command {
            command: format!("{cmd:?}"),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(out)
}

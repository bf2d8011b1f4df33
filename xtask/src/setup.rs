//! `cargo xtask setup`: installs every prerequisite, idempotently.
//!
//! Each step checks first and says "present" or what it installs, so a second
//! run is a fast no-op. The recipe (Debian's rustc-web with the prebuilt BPF
//! `core`, bpf-linker 0.13 against Debian's LLVM 22) is the route used on the
//! project's machines (docs/design.md#toolchain).

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Result, bail};

use crate::shell::{self, cargo, probe};
use crate::workspace;

/// Debian packages the build and the tests use.
const PACKAGES: &[&str] = &[
    // eBPF toolchain: rustc 1.96 with a prebuilt `core` for bpfel-unknown-none,
    // its clippy (lints the eBPF crate), and LLVM 22 for bpf-linker.
    "rustc-web",
    "libstd-rust-web-dev-bpf",
    "rust-web-clippy",
    "llvm-22-dev",
    "libpolly-22-dev",
    "libzstd-dev",
    "zlib1g-dev",
    "gcc",
    "libc6-dev",
    // Inspecting objects and maps, the lab, and the clients and peers the
    // tests and the benchmark drive.
    "bpftool",
    "iproute2",
    "iptables",
    "ethtool",
    "bind9-dnsutils",
    "knot-dnsutils",
    "dnsperf",
    "dnsmasq-base",
    "unbound",
    // `cargo xtask image` and the image tests: podman with the runc runtime
    // (xtask/containers.conf), and debootstrap for a base image where no
    // registry is reachable.
    "podman",
    "runc",
    "debootstrap",
];

const BPF_LINKER_SERIES: &str = "bpf-linker 0.13.";
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";
const KUBERNETES_VALIDATE: &str = "kubernetes-validate";

/// What is missing, in install order. Empty means setup has nothing to do.
#[derive(Debug, Default)]
pub struct Missing {
    pub packages: Vec<&'static str>,
    pub bpf_linker: bool,
    pub rustup_components: Vec<&'static str>,
    pub kubernetes_validate: bool,
    /// `/sys/fs/bpf` is not a bpffs mount (some VMs boot without it).
    pub bpffs: bool,
}

impl Missing {
    pub fn is_empty(&self) -> bool {
        self.packages.is_empty()
            && !self.bpf_linker
            && self.rustup_components.is_empty()
            && !self.kubernetes_validate
            && !self.bpffs
    }

    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.packages.is_empty() {
            parts.push(format!("Debian packages {}", self.packages.join(" ")));
        }
        if self.bpf_linker {
            parts.push("bpf-linker 0.13".to_string());
        }
        if !self.rustup_components.is_empty() {
            parts.push(format!(
                "rustup components {}",
                self.rustup_components.join(" ")
            ));
        }
        if self.kubernetes_validate {
            parts.push(KUBERNETES_VALIDATE.to_string());
        }
        if self.bpffs {
            parts.push(format!("a bpffs mount on {BPFFS}"));
        }
        parts.join(", ")
    }
}

/// Checks everything without changing anything (a second or so).
pub fn check() -> Missing {
    Missing {
        packages: missing_packages(PACKAGES),
        bpf_linker: !bpf_linker_ok(),
        rustup_components: ["rustfmt", "clippy"]
            .into_iter()
            .filter(|c| {
                let sub = if *c == "rustfmt" { "fmt" } else { "clippy" };
                probe(cargo().args([sub, "--version"])).is_none()
            })
            .collect(),
        kubernetes_validate: kubernetes_validate().is_none(),
        bpffs: !bpffs_mounted(),
    }
}

/// Where the agent, the tests and bpftool expect bpffs.
const BPFFS: &str = "/sys/fs/bpf";

fn bpffs_mounted() -> bool {
    probe(Command::new("stat").args(["-f", "-c", "%T", BPFFS]))
        .is_some_and(|t| t.trim() == "bpf_fs")
}

/// `cargo xtask setup`.
pub fn run() -> Result<()> {
    let missing = check();
    if missing.is_empty() {
        eprintln!("setup: every prerequisite is present, nothing to do");
        return Ok(());
    }
    install(&missing)
}

/// Installs what `check` found missing; a no-op when nothing is.
pub fn ensure() -> Result<()> {
    let missing = check();
    if missing.is_empty() {
        eprintln!("setup: every prerequisite is present");
        return Ok(());
    }
    eprintln!("setup: missing {}; installing", missing.describe());
    install(&missing)
}

fn install(missing: &Missing) -> Result<()> {
    let mut packages = missing.packages.clone();
    let need_venv = missing.kubernetes_validate && !python_venv_works();
    if need_venv {
        packages.extend(missing_packages(&["python3", "python3-venv"]));
    }
    if packages.is_empty() {
        eprintln!("setup: Debian packages: all {} present", PACKAGES.len());
    } else {
        if !workspace::is_root() {
            bail!(
                "setup must install Debian packages {} and needs root for that: run `sudo -E cargo xtask setup`",
                packages.join(" ")
            );
        }
        eprintln!("setup: installing Debian packages {}", packages.join(" "));
        shell::run(
            Command::new("apt-get")
                .arg("update")
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )?;
        shell::run(
            Command::new("apt-get")
                .args(["install", "-y", "--no-install-recommends"])
                .args(&packages)
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )?;
    }

    if missing.rustup_components.is_empty() {
        eprintln!("setup: rustfmt and clippy: present");
    } else if shell::on_path("rustup") {
        eprintln!(
            "setup: adding rustup components {}",
            missing.rustup_components.join(" ")
        );
        shell::run(
            Command::new("rustup")
                .args(["component", "add"])
                .args(&missing.rustup_components),
        )?;
    } else {
        bail!(
            "cargo {} is missing and rustup is not installed: install rustup \
             or your distribution's rustfmt/clippy for the host toolchain",
            missing.rustup_components.join(" and cargo ")
        );
    }

    if missing.bpf_linker {
        eprintln!(
            "setup: building bpf-linker 0.13 against LLVM 22 ({LLVM_PREFIX}); this takes a few minutes"
        );
        shell::run(
            cargo()
                .args([
                    "install",
                    "bpf-linker",
                    "--version",
                    "^0.13",
                    "--no-default-features",
                ])
                .args(["--features", "llvm-22"])
                .env("LLVM_PREFIX", LLVM_PREFIX),
        )?;
        if !bpf_linker_ok() {
            bail!(
                "bpf-linker was installed but `bpf-linker --version` is still not 0.13.x: is ~/.cargo/bin on PATH?"
            );
        }
    } else {
        eprintln!("setup: bpf-linker 0.13: present");
    }

    if missing.kubernetes_validate {
        let venv = venv_dir();
        eprintln!(
            "setup: installing {KUBERNETES_VALIDATE} into {}",
            venv.display()
        );
        shell::run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
        shell::run(Command::new(venv.join("bin/pip")).args([
            "install",
            "--quiet",
            KUBERNETES_VALIDATE,
        ]))?;
    } else {
        eprintln!("setup: {KUBERNETES_VALIDATE}: present");
    }
    if missing.bpffs {
        if !workspace::is_root() {
            bail!(
                "{BPFFS} is not a bpffs mount and mounting it needs root: run `sudo mount -t bpf bpf {BPFFS}`"
            );
        }
        eprintln!("setup: mounting bpffs on {BPFFS} (the agent pins its maps there)");
        shell::run(Command::new("mount").args(["-t", "bpf", "bpf", BPFFS]))?;
    } else {
        eprintln!("setup: bpffs on {BPFFS}: mounted");
    }
    eprintln!("setup: done");
    Ok(())
}

/// Packages of `wanted` that dpkg does not list as installed.
fn missing_packages(wanted: &[&'static str]) -> Vec<&'static str> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Package} ${db:Status-Abbrev}\n"])
        .args(wanted)
        .stderr(std::process::Stdio::null())
        .output();
    let installed: Vec<String> = match out {
        Ok(out) => String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.split_whitespace().nth(1) == Some("ii"))
            .filter_map(|l| l.split_whitespace().next())
            // Multi-arch packages print as name:arch.
            .map(|p| p.split(':').next().unwrap_or(p).to_string())
            .collect(),
        Err(_) => Vec::new(),
    };
    wanted
        .iter()
        .copied()
        .filter(|p| !installed.iter().any(|i| i == p))
        .collect()
}

fn bpf_linker_ok() -> bool {
    probe(Command::new("bpf-linker").arg("--version"))
        .is_some_and(|v| v.trim().starts_with(BPF_LINKER_SERIES))
}

fn python_venv_works() -> bool {
    probe(Command::new("python3").args(["-c", "import ensurepip, venv"])).is_some()
}

/// The virtualenv setup creates when kubernetes-validate is not on PATH.
fn venv_dir() -> PathBuf {
    workspace::target_dir().join("tools/venv")
}

/// Directories to prepend to PATH for the tests, so tools setup installed
/// outside the usual places are found.
pub fn extra_path() -> Vec<PathBuf> {
    let venv_bin = venv_dir().join("bin");
    if venv_bin.join(KUBERNETES_VALIDATE).is_file() {
        vec![venv_bin]
    } else {
        Vec::new()
    }
}

fn kubernetes_validate() -> Option<PathBuf> {
    shell::which(KUBERNETES_VALIDATE)
        .or_else(|| Some(venv_dir().join("bin").join(KUBERNETES_VALIDATE)).filter(|p| p.is_file()))
}

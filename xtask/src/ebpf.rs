//! `cargo xtask build-ebpf`: builds dns-ebpf for bpfel-unknown-none with BTF.
//!
//! Two toolchains can do it (docs/design.md#toolchain):
//! 1. Debian's rustc-web (/usr/bin/rustc) with the prebuilt `core` from
//!    libstd-rust-web-dev-bpf. It is stable, so RUSTC_BOOTSTRAP=1 unlocks the
//!    unstable flags the BPF target needs.
//! 2. rustup nightly with rust-src, building `core` with `-Z build-std=core`
//!    (the usual aya route on a workstation).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::shell::{self, cargo, probe};
use crate::workspace;

const TARGET: &str = "bpfel-unknown-none";
const DEBIAN_RUSTC: &str = "/usr/bin/rustc";
const DEBIAN_CARGO_CLIPPY: &str = "/usr/bin/cargo-clippy";
const DEBIAN_BPF_CORE_DIR: &str = "/usr/lib/rustlib/bpfel-unknown-none/lib";
/// `--btf` makes bpf-linker emit BTF, which the loader needs for the maps'
/// key/value types and `bpftool map dump` needs to print them.
const RUSTFLAGS: &str = "-C debuginfo=2 -C link-arg=--btf";

#[derive(Args, Default)]
pub struct BuildArgs {
    /// Build with optimisations. Always on: the verifier rejects the
    /// unoptimised program, so there is no debug variant to choose.
    #[arg(long)]
    pub release: bool,
    /// Build with the `debug-log` feature: one aya-log record per packet,
    /// which the agent logs at debug level (`--log-level info,dns_ebpf=debug`).
    /// For debugging only; the object replaces the one the agent embeds.
    #[arg(long)]
    pub debug_log: bool,
}

/// A toolchain that can build for bpfel-unknown-none.
pub enum Toolchain {
    /// Debian rustc-web with the prebuilt BPF `core`.
    Debian,
    /// rustup nightly with rust-src (`-Z build-std=core`).
    Nightly,
}

impl Toolchain {
    pub fn find() -> Result<Self> {
        if debian_toolchain_present() {
            return Ok(Self::Debian);
        }
        if nightly_with_rust_src() {
            return Ok(Self::Nightly);
        }
        bail!(
            "no Rust toolchain can build for {TARGET}: either install Debian's rustc-web and \
             libstd-rust-web-dev-bpf (`cargo xtask setup` does), or rustup nightly with rust-src \
             (`rustup toolchain install nightly --component rust-src`)"
        )
    }

    /// A cargo command for the eBPF crate with this toolchain's environment.
    /// `subcommand` is `build` or `clippy`.
    pub fn cargo(&self, subcommand: &str) -> Result<Command> {
        let mut cmd = match self {
            Self::Debian => {
                let mut cmd = if subcommand == "clippy" {
                    // Lints must come from the compiler that builds the crate:
                    // Debian's cargo-clippy runs $CARGO check with the
                    // clippy-driver next to it (rust-web-clippy, 1.96).
                    if !Path::new(DEBIAN_CARGO_CLIPPY).is_file() {
                        bail!(
                            "{DEBIAN_CARGO_CLIPPY} not found (Debian package rust-web-clippy): \
                             run `cargo xtask setup`"
                        );
                    }
                    Command::new(DEBIAN_CARGO_CLIPPY)
                } else {
                    cargo()
                };
                cmd.arg(subcommand)
                    .env("RUSTC", DEBIAN_RUSTC)
                    .env("RUSTC_BOOTSTRAP", "1");
                cmd
            }
            Self::Nightly => {
                let mut cmd = Command::new("rustup");
                cmd.args([
                    "run",
                    "nightly",
                    "cargo",
                    subcommand,
                    "-Z",
                    "build-std=core",
                ]);
                cmd
            }
        };
        cmd.current_dir(workspace::root())
            .args(["--package", "dns-ebpf", "--target", TARGET, "--release"])
            // The program's binary target requires this feature, so host-wide
            // commands (`cargo clippy --workspace`) skip it instead of failing.
            .args(["--features", "bpf-target"])
            .arg("--target-dir")
            .arg(target_dir())
            .env("RUSTFLAGS", RUSTFLAGS);
        Ok(cmd)
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::Debian => "Debian rustc-web (/usr/bin/rustc) with the prebuilt BPF core",
            Self::Nightly => "rustup nightly with -Z build-std=core",
        }
    }
}

fn debian_toolchain_present() -> bool {
    Path::new(DEBIAN_RUSTC).is_file()
        && std::fs::read_dir(DEBIAN_BPF_CORE_DIR).is_ok_and(|entries| {
            entries
                .flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("libcore-"))
        })
}

fn nightly_with_rust_src() -> bool {
    let Some(sysroot) =
        probe(Command::new("rustup").args(["run", "nightly", "rustc", "--print", "sysroot"]))
    else {
        return false;
    };
    Path::new(sysroot.trim())
        .join("lib/rustlib/src/rust/library/core/Cargo.toml")
        .is_file()
}

/// The eBPF crate's own target directory, next to the host's.
fn target_dir() -> PathBuf {
    workspace::target_dir().join("ebpf")
}

/// Builds the object, copies it to `<target>/ebpf/dns-ebpf.o` and checks its
/// BTF. Returns the path of the copy.
pub fn build(args: &BuildArgs) -> Result<PathBuf> {
    if !shell::on_path("bpf-linker") {
        bail!("bpf-linker not found: run `cargo xtask setup`");
    }
    let toolchain = Toolchain::find()?;
    let _ = args.release;
    let variant = if args.debug_log {
        ", with debug-log"
    } else {
        ""
    };
    eprintln!(
        "build-ebpf: release build{variant} with {}",
        toolchain.name()
    );
    let mut cmd = toolchain.cargo("build")?;
    if args.debug_log {
        cmd.args(["--features", "debug-log"]);
    }
    cmd.env(
        format!(
            "CARGO_TARGET_{}_LINKER",
            TARGET.to_uppercase().replace('-', "_")
        ),
        "bpf-linker",
    );
    shell::run(&mut cmd)?;

    let built = target_dir().join(TARGET).join("release/dns-ebpf");
    let object = workspace::ebpf_object();
    copy_if_changed(&built, &object)?;
    check_btf(&object)?;
    Ok(object)
}

/// dns-agent's build script reruns when the object's mtime changes; copying
/// only changed bytes keeps a no-op build-ebpf from relinking the agent.
fn copy_if_changed(from: &Path, to: &Path) -> Result<()> {
    let new = std::fs::read(from)
        .with_context(|| format!("the build left no object at {}", from.display()))?;
    if std::fs::read(to).is_ok_and(|old| old == new) {
        eprintln!("build-ebpf: {} is up to date", to.display());
        return Ok(());
    }
    std::fs::write(to, &new).with_context(|| format!("cannot write {}", to.display()))?;
    eprintln!("build-ebpf: wrote {} ({} bytes)", to.display(), new.len());
    Ok(())
}

/// The loader and `bpftool map dump` rely on BTF; a build that lost it (no
/// `--btf`, an old bpf-linker) must fail here, not at load time.
fn check_btf(object: &Path) -> Result<()> {
    if !shell::on_path("bpftool") {
        eprintln!(
            "build-ebpf: warning: bpftool not found, BTF not checked (run `cargo xtask setup`)"
        );
        return Ok(());
    }
    let out = Command::new("bpftool")
        .args(["btf", "dump", "file"])
        .arg(object)
        .output()
        .context("could not run bpftool")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let types = text.lines().filter(|l| l.starts_with('[')).count();
    if !out.status.success() || types == 0 {
        bail!(
            "{} has no usable BTF (`bpftool btf dump file` failed: {}): is bpf-linker 0.13 \
             invoked with --btf?",
            object.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    eprintln!(
        "build-ebpf: {} carries BTF ({types} types, `bpftool btf dump file` ok)",
        object.display()
    );
    Ok(())
}

//! `cargo xtask image`: builds deploy/Dockerfile into `nodedns/dns-agent:<version>`.
//!
//! - The engine is docker when a docker engine answers, else podman
//!   (daemonless, from Debian). podman reads `xtask/containers.conf`
//!   through `CONTAINERS_CONF`, and keeps its build caches (cache mounts,
//!   temporary files) under `<target>/image`, so nothing global changes.
//! - The Dockerfile's base image is pinned by digest. Where no registry can
//!   be reached (CI machines), the same Debian release is made here with
//!   debootstrap and imported as [`LOCAL_BASE`], once; later builds reuse it.

use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};

use crate::shell::{self, probe};
use crate::workspace;

/// Where `cargo xtask test` hands the built image's id to the tests
/// (tests/src/container.rs).
pub const IMAGE_ENV: &str = "NODEDNS_IMAGE";
/// The repository part of the tag; the version follows the colon.
pub const IMAGE_NAME: &str = "nodedns/dns-agent";
/// The stand-in for the pinned base where no registry is reachable.
pub const LOCAL_BASE: &str = "localhost/nodedns/debian:bookworm-minbase";
/// podman tags the Dockerfile's toolchain stage with this name, so that
/// removing this project's unused layers stops there (see
/// [`Engine::remove_stale_layers`]).
const TOOLCHAIN_TAG: &str = "localhost/nodedns/dns-agent-toolchain:latest";
/// The label every layer of the build carries (set in the Dockerfile).
const BUILD_LABEL: &str = "io.nodedns.build=dns-agent";
const DOCKERFILE: &str = "deploy/Dockerfile";
/// The podman configuration the project owns (see the file's comments).
const CONTAINERS_CONF: &str = "xtask/containers.conf";
const SUITE: &str = "bookworm";
const MIRROR: &str = "http://deb.debian.org/debian";
/// What the official image lists, so the build stage sees the same
/// packages (llvm-22 is only in bookworm-security).
const APT_SOURCES: &str = "\
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
";
/// The image config an imported rootfs lacks and the official image has.
const BASE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Bound on the registry probe and on asking docker whether an engine runs.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Args, Default)]
pub struct ImageArgs {
    /// Container engine; `auto` is docker when a docker engine answers,
    /// else podman.
    #[arg(long, value_enum, default_value_t = EngineChoice::Auto)]
    pub engine: EngineChoice,
    /// Base image; `auto` is the Dockerfile's pinned image when it is
    /// present or a registry answers, else the local debootstrap base.
    #[arg(long, value_enum, default_value_t = BaseChoice::Auto)]
    pub base: BaseChoice,
    /// Make the local debootstrap base again (a newer Debian point release).
    #[arg(long)]
    pub refresh_base: bool,
}

#[derive(Clone, Copy, Default, ValueEnum)]
pub enum EngineChoice {
    #[default]
    Auto,
    Docker,
    Podman,
}

#[derive(Clone, Copy, Default, ValueEnum)]
pub enum BaseChoice {
    #[default]
    Auto,
    /// The Dockerfile's digest-pinned registry image.
    Pinned,
    /// localhost/nodedns/debian:bookworm-minbase, made with debootstrap
    /// when missing.
    Local,
}

/// `cargo xtask image`.
pub fn run(args: &ImageArgs) -> Result<()> {
    build(args).map(|_| ())
}

/// Builds the image and returns its id.
pub fn build(args: &ImageArgs) -> Result<String> {
    let engine = Engine::find(args.engine)?;
    let pinned = pinned_base()?;
    let base = match args.base {
        BaseChoice::Pinned => pinned.clone(),
        BaseChoice::Local => engine.local_base(args.refresh_base)?,
        BaseChoice::Auto if args.refresh_base => engine.local_base(true)?,
        BaseChoice::Auto => {
            if engine.has_image(&pinned) {
                eprintln!("image: base {pinned} is present");
                pinned.clone()
            } else if let Some(host) = registry_reachable(&pinned) {
                eprintln!("image: registry {host} answers; the build pulls {pinned}");
                pinned.clone()
            } else {
                eprintln!(
                    "image: no registry answers for {pinned}: using the local base {LOCAL_BASE}"
                );
                engine.local_base(false)?
            }
        }
    };
    let version = env!("CARGO_PKG_VERSION");
    let tag = format!("{IMAGE_NAME}:{version}");
    let revision = revision();
    let start = Instant::now();
    let build = |target: Option<&str>, tag: &str| {
        let mut cmd = engine.command();
        cmd.current_dir(workspace::root())
            // Build steps use the host's network: podman would otherwise set
            // up a bridge with NAT rules on this machine for them.
            .args(["build", "--network", "host", "--file", DOCKERFILE])
            .args(["--tag", tag])
            .args(["--build-arg", &format!("VERSION={version}")])
            .args(["--build-arg", &format!("REVISION={revision}")])
            .args([
                "--secret",
                &format!("id=host-ca,src={}", ca_bundle().display()),
            ]);
        if let Some(target) = target {
            cmd.args(["--target", target]);
        }
        if base != pinned {
            cmd.args(["--build-arg", &format!("BASE_IMAGE={base}")]);
        }
        shell::run(cmd.arg(".")).context("the image build failed")
    };
    if engine.program == "podman" {
        build(Some("toolchain"), TOOLCHAIN_TAG)?;
    }
    build(None, &tag)?;
    let took = start.elapsed();
    let id = engine.inspect(&tag, "{{.Id}}")?;
    let size_bytes: u64 = engine
        .inspect(&tag, "{{.Size}}")?
        .parse()
        .context("the engine printed a size that is not a number")?;
    engine.remove_stale_layers();
    eprintln!(
        "image: {tag} ({}), revision {revision}, {:.1} MB, built in {:.0} s with {}",
        short_id(&id),
        size_bytes as f64 / 1e6,
        took.as_secs_f64(),
        engine.program
    );
    Ok(id)
}

fn short_id(id: &str) -> &str {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    &hex[..hex.len().min(12)]
}

/// The CA bundle cargo uses inside the build: the machine's, so a
/// TLS-intercepting proxy the machine trusts works there too. `/dev/null`
/// (no bundle: the build stage's own CA store) where there is none.
fn ca_bundle() -> PathBuf {
    ["CARGO_HTTP_CAINFO", "SSL_CERT_FILE"]
        .iter()
        .filter_map(std::env::var_os)
        .map(PathBuf::from)
        .chain([PathBuf::from("/etc/ssl/certs/ca-certificates.crt")])
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("/dev/null"))
}

/// The commit the context was taken from, with `-dirty` when tracked files
/// differ from it (the build copies the working tree).
fn revision() -> String {
    let root = workspace::root();
    let Some(commit) = probe(
        Command::new("git")
            .current_dir(&root)
            .args(["rev-parse", "HEAD"]),
    ) else {
        return "unknown".to_string();
    };
    let dirty = probe(Command::new("git").current_dir(&root).args([
        "status",
        "--porcelain",
        "--untracked-files=no",
    ]))
    .is_some_and(|s| !s.trim().is_empty());
    format!("{}{}", commit.trim(), if dirty { "-dirty" } else { "" })
}

/// The default of `ARG BASE_IMAGE=` in the Dockerfile: the digest is written
/// down once, there.
fn pinned_base() -> Result<String> {
    let path = workspace::root().join(DOCKERFILE);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    text.lines()
        .find_map(|l| l.trim().strip_prefix("ARG BASE_IMAGE="))
        .map(|s| s.trim().to_string())
        .with_context(|| format!("{} has no `ARG BASE_IMAGE=` line", path.display()))
}

/// The registry host of `image` if a TCP connection to it succeeds.
fn registry_reachable(image: &str) -> Option<String> {
    let first = image.split('/').next()?;
    let host = match first {
        "docker.io" => "registry-1.docker.io",
        h if h.contains('.') || h.contains(':') => h,
        _ => "registry-1.docker.io",
    };
    let addr = (host, 443).to_socket_addrs().ok()?.next()?;
    TcpStream::connect_timeout(&addr, PROBE_TIMEOUT).ok()?;
    Some(host.to_string())
}

struct Engine {
    program: &'static str,
    /// `<target>/image`: podman's temporary files and build cache mounts.
    work_dir: PathBuf,
}

impl Engine {
    fn find(choice: EngineChoice) -> Result<Self> {
        let program = match choice {
            EngineChoice::Docker => "docker",
            EngineChoice::Podman => "podman",
            EngineChoice::Auto if docker_engine_answers() => "docker",
            EngineChoice::Auto => "podman",
        };
        if !shell::on_path(program) {
            bail!("{program} not found: run `cargo xtask setup` (it installs podman)");
        }
        let work_dir = workspace::target_dir().join("image");
        std::fs::create_dir_all(work_dir.join("tmp"))
            .with_context(|| format!("cannot create {}", work_dir.display()))?;
        Ok(Self { program, work_dir })
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(self.program);
        if self.program == "podman" {
            if std::env::var_os("CONTAINERS_CONF").is_none() {
                cmd.env("CONTAINERS_CONF", workspace::root().join(CONTAINERS_CONF));
            }
            // buildah keeps `RUN --mount=type=cache` directories under
            // $TMPDIR/buildah-cache.
            cmd.env("TMPDIR", self.work_dir.join("tmp"));
        } else {
            // Cache mounts need BuildKit (the default since docker 23).
            cmd.env("DOCKER_BUILDKIT", "1");
        }
        cmd
    }

    fn has_image(&self, image: &str) -> bool {
        probe(
            self.command()
                .args(["image", "inspect", "--format", "{{.Id}}", image]),
        )
        .is_some()
    }

    fn inspect(&self, image: &str, format: &str) -> Result<String> {
        probe(
            self.command()
                .args(["image", "inspect", "--format", format, image]),
        )
        .map(|s| s.trim().to_string())
        .with_context(|| format!("`{} image inspect {image}` failed", self.program))
    }

    /// [`LOCAL_BASE`], made with debootstrap unless present (or `refresh`).
    fn local_base(&self, refresh: bool) -> Result<String> {
        if !refresh && self.has_image(LOCAL_BASE) {
            eprintln!("image: local base {LOCAL_BASE} is present (--refresh-base makes it again)");
            return Ok(LOCAL_BASE.to_string());
        }
        if !workspace::is_root() {
            bail!(
                "making the base image with debootstrap needs root: run `sudo -E cargo xtask image`"
            );
        }
        if !shell::on_path("debootstrap") {
            bail!("debootstrap not found: run `cargo xtask setup`");
        }
        let rootfs = Scratch(self.work_dir.join(format!("rootfs-{}", std::process::id())));
        rootfs.clear()?;
        let start = Instant::now();
        eprintln!("image: making {LOCAL_BASE} with debootstrap (minbase {SUITE}, {MIRROR})");
        shell::run(
            Command::new("debootstrap")
                .args(["--variant=minbase", SUITE])
                .arg(&rootfs.0)
                .arg(MIRROR),
        )?;
        trim_rootfs(&rootfs.0)?;
        let mut import = self.command();
        import
            .args(["import", "--change", &format!("ENV PATH={BASE_PATH}")])
            .args(["--change", "CMD [\"bash\"]"])
            .args(["--change", &format!("LABEL {BUILD_LABEL}")])
            .args([
                "--change",
                &format!(
                    "LABEL org.opencontainers.image.description=\"debootstrap --variant=minbase {SUITE} {MIRROR}, by cargo xtask image\""
                ),
            ])
            .args(["-", LOCAL_BASE]);
        let tar = Command::new("tar")
            .arg("-C")
            .arg(&rootfs.0)
            .args(["-c", "."])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .context("could not start tar")?;
        import.stdin(tar.stdout.context("tar's stdout is piped")?);
        shell::run(&mut import)?;
        eprintln!(
            "image: made {LOCAL_BASE} in {:.0} s",
            start.elapsed().as_secs_f64()
        );
        Ok(LOCAL_BASE.to_string())
    }

    /// With podman, each build leaves the previous image and the build
    /// stage's layers untagged. Removes those of this project only: untagged
    /// images with no children that carry the build's label. The tagged
    /// toolchain stage and the base are kept, so the next build starts from
    /// them. (docker's BuildKit keeps its cache outside the image store.)
    fn remove_stale_layers(&self) {
        if self.program != "podman" {
            return;
        }
        let mut prune = self.command();
        prune.args(["image", "prune", "--force", "--filter"]);
        prune.arg(format!("label={BUILD_LABEL}"));
        if probe(&mut prune).is_none() {
            eprintln!(
                "image: warning: could not remove unused layers (`{}`)",
                shell::describe(&prune)
            );
        }
    }
}

/// The slim image's trims: no package lists or downloaded packages (the
/// build stage runs `apt-get update` itself), and the sources the official
/// image has.
fn trim_rootfs(rootfs: &Path) -> Result<()> {
    let sources = rootfs.join("etc/apt/sources.list.d/debian.sources");
    std::fs::write(&sources, APT_SOURCES)
        .with_context(|| format!("cannot write {}", sources.display()))?;
    let _ = std::fs::remove_file(rootfs.join("etc/apt/sources.list"));
    for dir in ["var/lib/apt/lists", "var/cache/apt"] {
        let dir = rootfs.join(dir);
        for entry in std::fs::read_dir(&dir)
            .with_context(|| format!("cannot list {}", dir.display()))?
            .flatten()
        {
            let path = entry.path();
            if path.is_dir() {
                // Keep `partial/` and `archives/` themselves; apt expects them.
                for inner in std::fs::read_dir(&path).into_iter().flatten().flatten() {
                    let _ = std::fs::remove_file(inner.path());
                }
            } else {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    Ok(())
}

/// A directory of ours, removed on drop (on failure too).
struct Scratch(PathBuf);

impl Scratch {
    fn clear(&self) -> Result<()> {
        match std::fs::remove_dir_all(&self.0) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("cannot remove {}", self.0.display()))
            }
            _ => Ok(()),
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Err(e) = self.clear() {
            eprintln!("image: {e:#}");
        }
    }
}

/// Whether a docker engine (not just the client) answers.
fn docker_engine_answers() -> bool {
    if !shell::on_path("docker") {
        return false;
    }
    let Ok(mut child) = Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
    else {
        return false;
    };
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status.success(),
            Ok(None) if start.elapsed() < PROBE_TIMEOUT => {
                std::thread::sleep(Duration::from_millis(50))
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
        }
    }
}

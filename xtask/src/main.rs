//! Developer flows for nodedns: `cargo xtask <command>` (alias in .cargo/config.toml).
//!
//! xtask deliberately depends on nothing from the workspace: `dns-agent` embeds
//! the XDP object at build time, so the tool that builds that object cannot
//! link the agent. Flows that need the lab or the agent (demo, bench) run a
//! binary of the `nodedns-tests` crate after `build-ebpf`.

mod delegate;
mod ebpf;
mod fuzz;
mod image;
mod setup;
mod shell;
mod test;
mod workspace;

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "nodedns developer flows")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install every prerequisite (Debian packages, bpf-linker, rustup components,
    /// kubernetes-validate); skips what is already present. Needs root.
    Setup,
    /// Build the XDP program for bpfel-unknown-none with BTF and copy it to
    /// <target>/ebpf/dns-ebpf.o, where dns-agent's build script embeds it.
    BuildEbpf(ebpf::BuildArgs),
    /// The one test command (README, CI): setup check, build-ebpf, fmt, clippy,
    /// build, unit tests and the root integration tests. Needs root.
    Test(test::TestArgs),
    /// Build deploy/Dockerfile into nodedns/dns-agent:<version> (podman, or
    /// docker where a docker engine answers) and print its size. Makes a
    /// Debian base image with debootstrap when no registry is reachable.
    Image(image::ImageArgs),
    /// Run the kernel fuzz test of the XDP program (the `fuzz` test binary).
    FuzzXdp(fuzz::FuzzArgs),
    /// One-command demo on a lab node with two pods (no cluster needed).
    Demo(delegate::DelegateArgs),
    /// Benchmarks against dnsmasq and unbound on the lab topology.
    Bench(delegate::DelegateArgs),
}

fn main() -> ExitCode {
    match run(Cli::parse().command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}` prints the context chain on one line, without the
            // backtrace anyhow adds under RUST_BACKTRACE.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> Result<()> {
    match command {
        Command::Setup => setup::run(),
        Command::BuildEbpf(args) => ebpf::build(&args).map(|_| ()),
        Command::Test(args) => test::run(&args),
        Command::Image(args) => image::run(&args),
        Command::FuzzXdp(args) => fuzz::run(&args),
        Command::Demo(args) => delegate::run(delegate::DEMO, &args),
        Command::Bench(args) => delegate::run(delegate::BENCH, &args),
    }
}

//! `cargo xtask demo` and `cargo xtask bench` run binaries of the
//! `nodedns-tests` crate, which owns the lab. xtask cannot link the lab
//! itself: the lab's crate depends on dns-agent, whose build needs the object
//! that `build-ebpf` (an xtask command) produces.

use anyhow::Result;
use clap::Args;

use crate::shell::{self, cargo};
use crate::{ebpf, setup, test, workspace};

pub struct Flow {
    /// The xtask subcommand.
    pub command: &'static str,
    /// The binary of the `nodedns-tests` crate that implements it.
    pub binary: &'static str,
    /// Build the agent with `--release` and hand its path to the binary in
    /// `NODEDNS_AGENT_BIN` (the bench measures the agent's own CPU cost),
    /// except for `--dry-run`.
    pub release_agent: bool,
}

pub const DEMO: Flow = Flow {
    command: "demo",
    binary: "nodedns-demo",
    release_agent: false,
};
pub const BENCH: Flow = Flow {
    command: "bench",
    binary: "nodedns-bench",
    release_agent: true,
};

#[derive(Args)]
pub struct DelegateArgs {
    /// Passed on to the binary (`--keep`, `--quick`, ...).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

pub fn run(flow: Flow, args: &DelegateArgs) -> Result<()> {
    test::require_root(&format!("cargo xtask {}", flow.command))?;
    setup::ensure()?;
    ebpf::build(&Default::default())?;
    // The lab starts the agent binary, which `cargo run -p nodedns-tests`
    // does not build on its own.
    let mut build = cargo();
    build.args(["build", "--package", "dns-agent", "--bins"]);
    let mut run = cargo();
    // A dry run only checks the harness: the debug agent will do, and CI
    // spares a release build.
    let dry_run = args.args.iter().any(|a| a == "--dry-run");
    if flow.release_agent && !dry_run {
        build.arg("--release");
        run.env(
            "NODEDNS_AGENT_BIN",
            workspace::target_dir().join("release/dns-agent"),
        );
    }
    shell::run(&mut build)?;
    shell::run(
        run.args([
            "run",
            "--package",
            "nodedns-tests",
            "--bin",
            flow.binary,
            "--",
        ])
        .args(&args.args),
    )
}

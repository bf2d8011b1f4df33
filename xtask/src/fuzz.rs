//! `cargo xtask fuzz-xdp --count N`: the kernel fuzz test of the XDP program
//! (tests/tests/xdp_fuzz.rs) with a chosen number of frames.

use anyhow::{Result, bail};
use clap::Args;

use crate::shell::{self, cargo};
use crate::{ebpf, test, workspace};

#[derive(Args)]
pub struct FuzzArgs {
    /// How many generated frames to run through the verifier-loaded program.
    #[arg(long, default_value_t = 100_000)]
    pub count: u64,
}

pub fn run(args: &FuzzArgs) -> Result<()> {
    test::require_root("cargo xtask fuzz-xdp")?;
    if !workspace::root().join("tests/tests/xdp_fuzz.rs").is_file() {
        bail!("tests/tests/xdp_fuzz.rs does not exist yet (issue 3 adds it)");
    }
    ebpf::build(&Default::default())?;
    shell::run(
        cargo()
            .args([
                "test",
                "--package",
                "nodedns-tests",
                "--test",
                "xdp_fuzz",
                "--",
                "--nocapture",
            ])
            .env("NODEDNS_FUZZ_COUNT", args.count.to_string()),
    )
}

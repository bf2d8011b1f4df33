//! `cargo xtask fuzz-xdp --count N`: the kernel fuzz test of the XDP program
//! (the `fuzz` test binary, tests/tests/fuzz/) with a chosen number of frames.

use anyhow::{Result, bail};
use clap::Args;

use crate::shell::{self, cargo};
use crate::{ebpf, test, workspace};

/// The fuzz tier's test binary and its root module.
const FUZZ_BINARY: &str = "fuzz";
const FUZZ_TESTS: &str = "tests/tests/fuzz/main.rs";
/// How many frames the fuzz test runs (it reads this env var).
const COUNT_ENV: &str = "NODEDNS_FUZZ_COUNT";

#[derive(Args)]
pub struct FuzzArgs {
    /// How many generated frames to run through the verifier-loaded program.
    #[arg(long, default_value_t = 100_000)]
    pub count: u64,
}

pub fn run(args: &FuzzArgs) -> Result<()> {
    test::require_root("cargo xtask fuzz-xdp")?;
    if !workspace::root().join(FUZZ_TESTS).is_file() {
        bail!("{FUZZ_TESTS} does not exist: the fuzz tests have moved or gone");
    }
    ebpf::build(&Default::default())?;
    shell::run(
        cargo()
            .args([
                "test",
                "--package",
                "nodedns-tests",
                "--test",
                FUZZ_BINARY,
                "--",
                "--nocapture",
            ])
            .env(COUNT_ENV, args.count.to_string()),
    )
}

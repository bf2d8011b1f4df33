//! `cargo xtask test`: the one test command (README, CONTRIBUTING, .ci/run).
//!
//! Every gate runs even when an earlier one fails (so one run reports all
//! problems), except that a failed setup or build stops the steps that need
//! its output. The summary at the end lists each step with its time, and
//! the test steps with how many tests passed and were ignored.

use std::ffi::OsString;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::Args;

use crate::ebpf::{self, Toolchain};
use crate::image;
use crate::setup;
use crate::shell::{self, TestCounts, cargo};
use crate::workspace;

/// Host crates with unit tests (the workspace's default members minus the
/// integration-test crate, whose tests need root and run last).
const UNIT_TEST_PACKAGES: &[&str] = &["dns-common", "dns-agent", "xtask"];
/// The integration tests: the support library's own tests and every test
/// binary (one per tier, `tests/tests/<tier>/main.rs`), all in one run.
const INTEGRATION_PACKAGE: &str = "nodedns-tests";

#[derive(Args)]
pub struct TestArgs {
    /// Arguments after `--` go to the integration tests' harness (a name
    /// filter, `--nocapture`, `--test-threads 1`, ...).
    #[arg(last = true)]
    pub harness_args: Vec<String>,
}

enum Outcome {
    /// With what the step reports (test counts), if anything.
    Passed(Option<String>),
    Failed(String),
    Skipped(&'static str),
}

struct Step {
    name: &'static str,
    outcome: Outcome,
    took: Duration,
}

#[derive(Default)]
struct Report {
    steps: Vec<Step>,
    tests: TestCounts,
}

impl Report {
    /// Runs one step, prints a banner, records its outcome and time.
    fn step(&mut self, name: &'static str, f: impl FnOnce() -> Result<()>) -> bool {
        self.run_step(name, || f().map(|()| None))
    }

    /// A step that runs tests: its counts go into the summary.
    fn test_step(&mut self, name: &'static str, f: impl FnOnce() -> Result<TestCounts>) -> bool {
        let mut counts = TestCounts::default();
        let passed = self.run_step(name, || {
            counts = f()?;
            Ok(Some(counts.to_string()))
        });
        self.tests.passed += counts.passed;
        self.tests.ignored += counts.ignored;
        passed
    }

    fn run_step(&mut self, name: &'static str, f: impl FnOnce() -> Result<Option<String>>) -> bool {
        eprintln!("\n==> {name}");
        let start = Instant::now();
        let outcome = match f() {
            Ok(detail) => Outcome::Passed(detail),
            Err(e) => {
                eprintln!("==> {name}: FAILED: {e:#}");
                Outcome::Failed(format!("{e:#}"))
            }
        };
        let passed = matches!(outcome, Outcome::Passed(_));
        self.steps.push(Step {
            name,
            outcome,
            took: start.elapsed(),
        });
        passed
    }

    fn skip(&mut self, name: &'static str, reason: &'static str) {
        self.steps.push(Step {
            name,
            outcome: Outcome::Skipped(reason),
            took: Duration::ZERO,
        });
    }

    fn print(&self, total: Duration) {
        eprintln!("\n==> summary");
        for step in &self.steps {
            let (status, detail) = match &step.outcome {
                Outcome::Passed(detail) => ("ok", detail.clone().unwrap_or_default()),
                Outcome::Failed(e) => ("FAILED", first_line(e)),
                Outcome::Skipped(why) => ("skipped", (*why).to_string()),
            };
            eprintln!(
                "  {:<34} {:<8} {:>7.1}s  {detail}",
                step.name,
                status,
                step.took.as_secs_f64()
            );
        }
        eprintln!(
            "  {:<34} {:<8} {:>7.1}s  tests: {}",
            "total",
            "",
            total.as_secs_f64(),
            self.tests
        );
    }

    fn failures(&self) -> Vec<&'static str> {
        self.steps
            .iter()
            .filter(|s| matches!(s.outcome, Outcome::Failed(_)))
            .map(|s| s.name)
            .collect()
    }
}

fn first_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or_default();
    if line.len() > 160 {
        format!("{}...", &line[..line.floor_char_boundary(157)])
    } else {
        line.to_string()
    }
}

pub fn run(args: &TestArgs) -> Result<()> {
    require_root("cargo xtask test")?;
    let start = Instant::now();
    let mut report = Report::default();
    let ready = report.step("setup (install what is missing)", setup::ensure)
        && report.step("build-ebpf (release, BTF checked)", || {
            ebpf::build(&Default::default()).map(|_| ())
        });
    if ready {
        report.step("cargo fmt --check", || {
            shell::run(cargo().args(["fmt", "--all", "--check"]))
                .map_err(|e| e.context("code is not formatted: run `cargo fmt --all`"))
        });
        report.step("clippy: host crates", || {
            shell::run(cargo().args(["clippy", "--all-targets", "--", "-D", "warnings"]))
        });
        report.step("clippy: dns-ebpf (bpfel)", clippy_ebpf);
        let built = report.step("build dns-agent binary", || {
            shell::run(cargo().args(["build", "--package", "dns-agent", "--bins"]))
        });
        // The container image, which the deploy tests run as the DaemonSet
        // does; they get its id, or an empty one that makes them say this
        // step failed instead of testing an older image.
        let mut image_id = String::new();
        report.step("image (cargo xtask image)", || {
            image_id = image::build(&Default::default())?;
            Ok(())
        });
        report.test_step("unit tests", || {
            let mut cmd = cargo();
            cmd.args(["test", "--no-fail-fast"]);
            for package in UNIT_TEST_PACKAGES {
                cmd.args(["--package", package]);
            }
            shell::run_tests(&mut cmd)
        });
        if built {
            report.test_step("integration tests (root, real kernel)", || {
                shell::run_tests(
                    cargo()
                        .args([
                            "test",
                            "--no-fail-fast",
                            "--package",
                            INTEGRATION_PACKAGE,
                            "--",
                        ])
                        .args(&args.harness_args)
                        .env("PATH", test_path())
                        .env(image::IMAGE_ENV, &image_id),
                )
            });
            // The README's first command and the benchmark harness must keep
            // working; the bench only checks its harness here (issue 7).
            for (name, binary, flags) in [
                ("demo (cargo xtask demo)", "nodedns-demo", &[][..]),
                (
                    "bench harness (--quick --dry-run)",
                    "nodedns-bench",
                    &["--quick", "--dry-run"][..],
                ),
            ] {
                report.step(name, || {
                    shell::run(
                        cargo()
                            .args([
                                "run",
                                "--quiet",
                                "--package",
                                INTEGRATION_PACKAGE,
                                "--bin",
                                binary,
                                "--",
                            ])
                            .args(flags)
                            .env("PATH", test_path()),
                    )
                });
            }
        } else {
            report.skip(
                "integration tests (root, real kernel)",
                "the dns-agent binary did not build",
            );
        }
    } else {
        for name in ["fmt, clippy, build", "unit and integration tests"] {
            report.skip(name, "setup or build-ebpf failed");
        }
    }
    report.print(start.elapsed());
    let failures = report.failures();
    if !failures.is_empty() {
        bail!("{} step(s) failed: {}", failures.len(), failures.join(", "));
    }
    eprintln!("all checks passed");
    Ok(())
}

/// Lints dns-ebpf for its real target: clippy must come from the same
/// toolchain that builds it (Debian's rust-web-clippy, or nightly's). Both
/// builds are linted, the default one and the one with the `debug-log`
/// feature, so the opt-in code does not rot.
fn clippy_ebpf() -> Result<()> {
    let toolchain = Toolchain::find()?;
    shell::run(toolchain.cargo("clippy")?.args(["--", "-D", "warnings"]))?;
    shell::run(
        toolchain
            .cargo("clippy")?
            .args(["--features", "debug-log", "--", "-D", "warnings"]),
    )
}

/// PATH for the tests: the usual one plus tools setup installed elsewhere
/// (kubernetes-validate's virtualenv).
fn test_path() -> OsString {
    let current = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs = setup::extra_path();
    dirs.extend(std::env::split_paths(&current));
    std::env::join_paths(dirs).unwrap_or(current)
}

/// The integration tests create network namespaces and attach XDP programs;
/// without root they would fail one by one, so say it once, up front.
pub fn require_root(what: &str) -> Result<()> {
    if !workspace::is_root() {
        bail!(
            "{what} needs root: the integration tests create network namespaces and veth pairs and \
             load XDP programs. Run it as root (CI does), e.g. `sudo -E env PATH=\"$PATH\" {what}`. \
             Nothing was tested."
        );
    }
    Ok(())
}

//! Locates the XDP object built by `cargo xtask build-ebpf` so the agent can
//! embed it. The eBPF crate needs its own toolchain, so it is not built here:
//! a missing object stops the build with a message that says what to run.
//! Also records the source revision for `dns-agent --version`.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let revision = revision();
    println!("cargo:rustc-env=NODEDNS_GIT_REVISION={revision}");
    println!("cargo:rerun-if-env-changed=NODEDNS_EBPF_OBJ");
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_DIR");
    let object = match env::var_os("NODEDNS_EBPF_OBJ") {
        Some(path) => PathBuf::from(path),
        None => {
            let target = match env::var_os("CARGO_TARGET_DIR") {
                Some(dir) => PathBuf::from(dir),
                None => PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap()).join("../target"),
            };
            target.join("ebpf/dns-ebpf.o")
        }
    };
    println!("cargo:rerun-if-changed={}", object.display());
    if !object.is_file() {
        eprintln!();
        eprintln!("error: the XDP object {} does not exist.", object.display());
        eprintln!(
            "       Build it first with `cargo xtask build-ebpf` (or `cargo xtask setup` on a"
        );
        eprintln!(
            "       fresh machine), or point NODEDNS_EBPF_OBJ at a prebuilt dns-ebpf object."
        );
        eprintln!();
        std::process::exit(1);
    }
    let object = object.canonicalize().unwrap();
    println!("cargo:rustc-env=NODEDNS_EBPF_OBJ_PATH={}", object.display());
}

/// `NODEDNS_GIT_REVISION` if set (the image build has no `.git` and passes
/// it in), else the commit git reports, else "unknown".
fn revision() -> String {
    println!("cargo:rerun-if-env-changed=NODEDNS_GIT_REVISION");
    if let Some(revision) = env::var("NODEDNS_GIT_REVISION")
        .ok()
        .filter(|r| !r.trim().is_empty())
    {
        return revision.trim().to_string();
    }
    let Some(commit) = git(&["rev-parse", "HEAD"]) else {
        return "unknown".to_string();
    };
    // Rerun when HEAD moves: a checkout changes HEAD, a commit the branch's
    // ref (loose, or in packed-refs).
    let mut watched = vec!["HEAD".to_string(), "packed-refs".to_string()];
    watched.extend(git(&["symbolic-ref", "-q", "HEAD"]));
    for name in watched {
        if let Some(path) = git(&["rev-parse", "--git-path", &name])
            && Path::new(&path).is_file()
        {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    commit
}

/// `git <args>` in the crate's directory, trimmed stdout, if it succeeds.
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(env::var_os("CARGO_MANIFEST_DIR")?)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

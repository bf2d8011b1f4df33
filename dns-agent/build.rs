//! Locates the XDP object built by `cargo xtask build-ebpf` so the agent can
//! embed it. The eBPF crate needs its own toolchain, so it is not built here:
//! a missing object stops the build with a message that says what to run.

use std::env;
use std::path::PathBuf;

fn main() {
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

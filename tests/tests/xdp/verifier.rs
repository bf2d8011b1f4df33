//! How much work the verifier does to accept the XDP program: its
//! processed-instruction count (`verified_insns` of `bpf_prog_info`, the
//! "processed N insns" of the verifier log), printed and held under the
//! kernel's limit. CONTRIBUTING ("The verifier's work") says how to find
//! where the work goes.

use dns_common::PROGRAM_NAME;
use nodedns_tests::xdp::Harness;

/// The kernel rejects a program once the verifier has processed this many
/// instructions (BPF_COMPLEXITY_LIMIT_INSNS).
const KERNEL_LIMIT: u32 = 1_000_000;

#[test]
fn verifier_work_stays_within_budget() {
    let mut xdp = Harness::new();
    let info = xdp
        .program()
        .info()
        .unwrap_or_else(|e| panic!("bpf_prog_info of {PROGRAM_NAME}: {e}"));
    let processed = info
        .verified_instruction_count()
        .expect("this kernel reports verified_insns (Linux 5.16+)");
    println!("verifier: {processed} instructions processed (limit {KERNEL_LIMIT})");
    assert!(processed < KERNEL_LIMIT);
}

//! How much work the verifier does to accept the XDP program: its
//! processed-instruction count (`verified_insns` of `bpf_prog_info`, the
//! "processed N insns" of the verifier log), printed and held under a
//! budget, so a change that multiplies the verifier's states fails here
//! long before it nears the kernel's 1M limit on some node. CONTRIBUTING
//! ("The verifier's work") says how to find where the work goes.

use dns_common::PROGRAM_NAME;
use nodedns_tests::xdp::Harness;

/// The kernel rejects a program once the verifier has processed this many
/// instructions (BPF_COMPLEXITY_LIMIT_INSNS).
const KERNEL_LIMIT: u32 = 1_000_000;
/// 58,877 today on kernel 6.18 (62,967 before the index and slots), about
/// 3k more with the debug-log feature. The budget leaves room
/// for features, not for a loop whose states stop merging: the body copy
/// once cost 690k that way.
const BUDGET: u32 = 150_000;

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
    println!(
        "verifier: {processed} instructions processed (budget {BUDGET}, kernel limit {KERNEL_LIMIT})"
    );
    assert!(
        processed <= BUDGET,
        "the verifier processed {processed} instructions, over the budget of {BUDGET}: \
         find the loop whose states no longer merge (CONTRIBUTING, \"The verifier's work\")"
    );
}

//! The XDP object, embedded at build time (see build.rs).

/// The `dns-ebpf` ELF object with BTF, aligned for aya's parser.
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(env!("NODEDNS_EBPF_OBJ_PATH"));

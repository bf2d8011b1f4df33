//! glibc's allocator, told what Rust's `alloc` API cannot say: give freed
//! memory back to the kernel now. No crate wraps the call; `libc` declares
//! it. (Fewer arenas, `M_ARENA_MAX`, was measured too: the cluster state
//! lives in one arena, and capping them saved about 1%.)

/// Hands the free memory at the top of every arena back to the kernel
/// (and the free pages inside them, with `MADV_DONTNEED`). glibc keeps
/// freed memory otherwise, so the agent's RSS would stay at the peak of a
/// relist (parse buffers, the objects replaced) long after it.
pub fn release_freed() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists; it is
    // thread-safe (it takes each arena's lock).
    unsafe {
        libc::malloc_trim(0);
    }
}

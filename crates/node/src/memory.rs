//! What keeps a long-running converge small: one malloc arena, and the memory malloc keeps free
//! handed back to the kernel once a burst of work is over. For glibc only: musl's allocator
//! has no arenas per thread and returns what it frees by itself.

/// One malloc arena for every thread. glibc gives each thread that allocates an arena of its
/// own (up to 8 per core) and keeps what is freed there for reuse: a daemon that is idle most
/// of the time gains nothing from that, and each arena held megabytes. To be called before the
/// process starts any thread: a thread takes its arena at its first allocation.
pub fn one_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt sets one of the allocator's parameters; no memory is touched.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// Hands the pages malloc keeps free back to the kernel. glibc gives back only what is free at
/// the top of its heap; what a burst of work (a start with thousands of services, a resync)
/// freed lower down stayed resident.
pub fn give_back() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim works on the allocator's own free lists, under its own locks.
    unsafe {
        libc::malloc_trim(0);
    }
}

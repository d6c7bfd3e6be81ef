//! Handing memory freed during start-up back to the system.
//!
//! Loading FaceNet builds and drops several intermediate copies of its 91 MB of
//! weights (the parsed graph, the engine's decluttered graph, packed kernels).
//! glibc keeps most of the freed pages mapped for reuse, so without a trim the
//! daemon's resident memory stays near its load peak (~195 MiB measured) for
//! its whole life; after one trim it runs at ~120 MiB. That difference matters
//! on a 512 MB Pi Zero 2 W.

/// Returns the heap's free pages to the system (glibc `malloc_trim`); a no-op
/// with other C libraries. Call once the networks are loaded.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn release_freed_heap() {
    // SAFETY: malloc_trim has no preconditions; it only walks the allocator's
    // own free lists and releases whole free pages (MADV_DONTNEED / brk).
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Returns the heap's free pages to the system (glibc `malloc_trim`); a no-op
/// with other C libraries. Call once the networks are loaded.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn release_freed_heap() {}

//! Tuning the C allocator of the calling process for a long-lived worker.

/// Asks glibc's allocator to keep up to `bytes` of freed memory for reuse, and to serve
/// allocations up to half that size from its heap, instead of returning memory to the OS
/// (and taking it back, one page fault per page) every time a large buffer is freed.
///
/// For processes that allocate and free buffers of the same large sizes again and again,
/// such as a pool's worker handling one chunk of a call after another. It changes this
/// process only; with another allocator (or another C library) it does nothing. Returns
/// whether the allocator took the setting.
///
/// ```
/// // A worker that handles chunks of a few MiB at a time:
/// let kept = mproc_sys::keep_freed_memory(64 << 20);
/// # let _ = kept;
/// ```
pub fn keep_freed_memory(bytes: usize) -> bool {
    imp::keep_freed_memory(bytes)
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod imp {
    pub fn keep_freed_memory(bytes: usize) -> bool {
        let clamp = |n: usize| libc::c_int::try_from(n).unwrap_or(libc::c_int::MAX);
        // SAFETY: `mallopt` only records the two settings in the allocator's parameters
        // (under its own lock); any value is valid for both and no memory is touched.
        unsafe {
            libc::mallopt(libc::M_TRIM_THRESHOLD, clamp(bytes)) == 1
                && libc::mallopt(libc::M_MMAP_THRESHOLD, clamp(bytes / 2)) == 1
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod imp {
    pub fn keep_freed_memory(_bytes: usize) -> bool {
        false
    }
}

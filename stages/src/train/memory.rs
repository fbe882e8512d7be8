//! Process memory: allocator tuning for training and the peak RSS.

/// Raises glibc's mmap and trim thresholds so that the many large, short-lived
/// tensor buffers of a training step are reused from the heap instead of
/// being mapped, zero-filled by the kernel and unmapped every time (+30%
/// steps/s measured here). One arena for all threads: a buffer freed by
/// another thread than the one that allocated it (rayon workers in a
/// backward pass) goes back to a heap that keeps it, instead of a per-thread
/// arena heap that gives its pages back (+15% steps/s, -10% peak RSS here).
/// Threads that already allocated keep their arena.
///
/// Process-wide, so it is the binary's decision: `vgmake`'s `main` and the
/// training benchmark call it once at start, before any thread allocates.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    unsafe {
        // SAFETY: mallopt only changes allocator parameters.
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// The peak resident set size of this process in bytes (Linux: VmHWM), or
/// `None` where unknown.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    #[test]
    fn peak_rss_is_plausible_on_linux() {
        super::tune_allocator();
        if cfg!(target_os = "linux") {
            let rss = super::peak_rss_bytes().unwrap();
            assert!(rss > 1 << 20 && rss < 1 << 40, "{rss}");
        }
    }
}

//! Process memory: allocator tuning for training and the peak RSS.

/// Raises glibc's mmap and trim thresholds so that the many large, short-lived
/// tensor buffers of a training step are reused from the heap instead of
/// being mapped, zero-filled by the kernel and unmapped every time (+30%
/// steps/s measured here). One arena for all threads: a buffer freed by
/// another thread than the one that allocated it (rayon workers in a
/// backward pass) goes back to a heap that keeps it, instead of a per-thread
/// arena heap that gives its pages back (+15% steps/s, -10% peak RSS here).
/// Threads that already allocated keep their arena. Then
/// [`reserve_heap_in_huge_pages`].
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
    reserve_heap_in_huge_pages();
}

/// Grows the heap by 64 MiB of address space at start (memory is only used
/// where it is touched) and marks it `MADV_HUGEPAGE`, so that what the
/// process first touches there faults in 2 MiB at a time instead of 4 KiB.
/// A stage that keeps what it makes (the encode stage holds every song
/// until it writes the song set) touches fresh heap all along: over the
/// real corpus 3,757 page faults became 866 and the stage 7-8% faster
/// (BENCHMARKS.md). Nothing changes but speed where the kernel has no
/// transparent huge pages; with glibc's defaults the heap could give the
/// pages back, hence only after [`tune_allocator`]'s settings.
fn reserve_heap_in_huge_pages() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        const HEAP_RESERVE: usize = 64 << 20;
        // SAFETY: mallopt only changes allocator parameters; the block is
        // freed at once. With the top pad, the allocation grows the heap by
        // the reserve; freed, it stays the heap's top (the trim threshold
        // above keeps it); the pad is then back to glibc's default.
        unsafe {
            libc::mallopt(libc::M_TOP_PAD, HEAP_RESERVE as libc::c_int);
            // black_box: a malloc whose block is only freed is otherwise
            // removed by the compiler.
            libc::free(std::hint::black_box(libc::malloc(1 << 20)));
            libc::mallopt(libc::M_TOP_PAD, 128 << 10);
        }
        advise_heap(&[libc::MADV_HUGEPAGE]);
    }
}

/// `madvise` on the heap's whole 2 MiB pages with each advice in turn; the
/// bytes advised, or 0 where one fails or there is no heap.
#[cfg(target_os = "linux")]
fn advise_heap(advice: &[libc::c_int]) -> u64 {
    let Some((start, end)) = heap_range() else {
        return 0;
    };
    const HUGE: usize = 2 << 20;
    let (start, end) = (start.next_multiple_of(HUGE), end / HUGE * HUGE);
    if end <= start {
        return 0;
    }
    for &a in advice {
        // SAFETY: advice on a range of this process's own heap mapping; it
        // does not change its contents.
        if unsafe { libc::madvise(start as *mut libc::c_void, end - start, a) } != 0 {
            return 0;
        }
    }
    (end - start) as u64
}

/// Backs the heap with transparent huge pages (2 MiB) where the kernel
/// allows: marks it `MADV_HUGEPAGE` (pages it gains later fault in huge)
/// and collapses the pages it holds now (`MADV_COLLAPSE`, Linux 6.1+; a
/// one-off copy, ~0.1 s for 500 MB). Training calls it after its first
/// step, when the heap holds the buffers every later step reuses (with
/// [`tune_allocator`] nothing is given back): the step's large strided
/// passes (gemm packing, attention's kept exponentials) then miss the TLB
/// far less (-1.5% wall per step at context 1,024, see BENCHMARKS.md).
/// Returns the bytes collapsed; 0 where unsupported (other systems, older
/// kernels, THP disabled), which changes nothing but speed.
pub fn back_heap_with_huge_pages() -> u64 {
    #[cfg(target_os = "linux")]
    {
        advise_heap(&[libc::MADV_HUGEPAGE, libc::MADV_COLLAPSE])
    }
    #[cfg(not(target_os = "linux"))]
    0
}

/// The heap's address range (glibc's main arena: with [`tune_allocator`]'s
/// settings, where every buffer lives): its `[heap]` mappings, one or
/// several side by side (advice on part of it splits it).
#[cfg(target_os = "linux")]
fn heap_range() -> Option<(usize, usize)> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    let mut range: Option<(usize, usize)> = None;
    for line in maps.lines().filter(|l| l.ends_with("[heap]")) {
        let (start, end) = line.split_whitespace().next()?.split_once('-')?;
        let (start, end) = (
            usize::from_str_radix(start, 16).ok()?,
            usize::from_str_radix(end, 16).ok()?,
        );
        range = Some(match range {
            Some((first, last)) if last == start => (first, end),
            Some(seen) => seen,
            None => (start, end),
        });
    }
    range
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
    /// The heap is found (else the huge pages would silently never be
    /// asked for), and advising it keeps what it holds.
    #[test]
    #[cfg(target_os = "linux")]
    fn the_heap_is_found_and_advice_keeps_its_contents() {
        let (start, end) = super::heap_range().expect("a [heap] line in /proc/self/maps");
        assert!(start < end && start % 4096 == 0 && end % 4096 == 0);
        let data: Vec<u64> = (0..1u64 << 20).collect();
        super::back_heap_with_huge_pages();
        assert!(data.iter().enumerate().all(|(i, &x)| x == i as u64));
    }

    #[test]
    fn peak_rss_is_plausible_on_linux() {
        super::tune_allocator();
        if cfg!(target_os = "linux") {
            let rss = super::peak_rss_bytes().unwrap();
            assert!(rss > 1 << 20 && rss < 1 << 40, "{rss}");
        }
    }
}

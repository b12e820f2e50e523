//! glibc malloc tuning for the service processes.
//!
//! glibc gives threads their own malloc arenas, up to eight per core. A service allocates on its
//! async workers and on the blocking threads that read files (object storage on a filesystem),
//! and frees on others, so each arena grows to its own peak and the process keeps far more
//! resident memory than it uses: the store gateway's 50k-series benchmark held 293 MiB at its
//! peak with the default and 260 MiB with two arenas (and ran 20% faster). One arena per core,
//! one per async worker thread, keeps resident memory near the heap.

/// Whether a [`release_free_memory`] call is running (others skip rather than queue).
static RELEASING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Resident bytes just after the last release (0: none yet).
static RESIDENT_AFTER_RELEASE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A release runs only once resident memory grew this much since the last one: trimming
/// costs the next requests page faults (measured: 12% of a 2 ms query's time when every query
/// trimmed), which pays only after a request that grew the heap.
const RELEASE_GROWTH: u64 = 16 * 1024 * 1024;

/// Returns the pages of memory freed since the last call to the system, off the caller's path,
/// when resident memory grew by [`RELEASE_GROWTH`] since the last release.
///
/// glibc keeps freed memory for reuse: after one large query a querier kept 46 MiB of freed
/// heap resident (58 MiB in all; 17 MiB after `malloc_trim`), so every later query's peak
/// started from there. Go's runtime returns such memory in the background; a service calls this
/// once a request that may have allocated much is answered. The trim runs on a blocking thread;
/// while one runs, further calls do nothing.
pub fn release_free_memory() {
    use std::sync::atomic::Ordering;
    let Some(resident) = resident_bytes() else {
        return;
    };
    let baseline = RESIDENT_AFTER_RELEASE.load(Ordering::Relaxed);
    if resident < baseline.saturating_add(RELEASE_GROWTH) {
        return;
    }
    if RELEASING.swap(true, Ordering::AcqRel) {
        return;
    }
    let trim = || {
        trim_heap();
        if let Some(after) = resident_bytes() {
            RESIDENT_AFTER_RELEASE.store(after, Ordering::Relaxed);
        }
        RELEASING.store(false, Ordering::Release);
    };
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            drop(runtime.spawn_blocking(trim));
        }
        Err(_) => trim(),
    }
}

/// The process' resident memory (`/proc/self/statm`), where the system tells it.
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages.saturating_mul(page_size()))
}

/// The system's page size (4 KiB where it cannot be asked).
#[cfg(unix)]
fn page_size() -> u64 {
    // SAFETY: `sysconf` only reads a configuration value.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size)
        .ok()
        .filter(|size| *size > 0)
        .unwrap_or(4096)
}

#[cfg(not(unix))]
fn page_size() -> u64 {
    4096
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim_heap() {
    // SAFETY: `malloc_trim` only hands free pages of malloc's own arenas back to the kernel; it
    // takes the arenas' locks and is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim_heap() {}

/// Limits glibc's malloc to one arena per available core, unless the operator chose a limit
/// (`MALLOC_ARENA_MAX` or `GLIBC_TUNABLES` set). Call at start-up, before any thread starts.
pub fn limit_arenas() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_some()
        || std::env::var_os("GLIBC_TUNABLES").is_some()
    {
        return;
    }
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    set_arena_max(i32::try_from(cores.max(2)).unwrap_or(i32::MAX));
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set_arena_max(arenas: i32) {
    // SAFETY: `mallopt` only sets a tunable of the allocator; M_ARENA_MAX is one it knows, and
    // the call comes before the service starts its threads.
    let accepted = unsafe { libc::mallopt(libc::M_ARENA_MAX, arenas) };
    if accepted != 1 {
        tracing::debug!(arenas, "malloc did not take the arena limit");
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_arena_max(_arenas: i32) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn anonymous_resident_kib() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        status
            .lines()
            .find_map(|line| line.strip_prefix("RssAnon:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// Freed small allocations stay resident until released; afterwards they are gone.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn releasing_returns_freed_heap_pages() {
        // Many small blocks (below the mmap threshold) touched, then freed except every 64th,
        // so the heap's top cannot simply shrink.
        let mut blocks: Vec<Vec<u8>> = (0..40_000).map(|_| vec![1u8; 4000]).collect();
        let kept: Vec<Vec<u8>> = blocks.iter_mut().step_by(64).map(std::mem::take).collect();
        drop(blocks);
        let before = anonymous_resident_kib();
        // Grown by far more than the threshold since the (absent) last release.
        release_free_memory();
        // Without a runtime the trim runs at once; the flag is clear again.
        assert!(!RELEASING.load(std::sync::atomic::Ordering::Acquire));
        let after = anonymous_resident_kib();
        assert!(
            after + 50_000 < before,
            "resident anonymous memory {before} KiB before, {after} KiB after"
        );
        // Nothing grew since: the next call leaves the heap alone.
        let baseline = RESIDENT_AFTER_RELEASE.load(std::sync::atomic::Ordering::Relaxed);
        assert!(
            baseline > 0,
            "the release records the resident size after it"
        );
        drop(kept);
    }

    #[test]
    fn resident_size_is_read() {
        let resident = resident_bytes();
        #[cfg(target_os = "linux")]
        assert!(
            resident.is_some_and(|bytes| bytes > 1024 * 1024),
            "{resident:?}"
        );
        #[cfg(not(target_os = "linux"))]
        let _ = resident;
    }
}

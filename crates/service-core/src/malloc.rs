//! glibc malloc tuning for the service processes.
//!
//! glibc gives threads their own malloc arenas, up to eight per core. A service allocates on its
//! async workers and on the blocking threads that read files (object storage on a filesystem),
//! and frees on others, so each arena grows to its own peak and the process keeps far more
//! resident memory than it uses: the store gateway's 50k-series benchmark held 293 MiB at its
//! peak with the default and 260 MiB with two arenas (and ran 20% faster). One arena per core,
//! one per async worker thread, keeps resident memory near the heap.

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

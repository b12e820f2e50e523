//! Process figures read from Linux' `/proc`, for benchmarks that report the memory of the programs
//! they start (and of themselves) and the machine's load while they ran.

/// Memory figures of one process, in KiB, from `/proc/<pid>/status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Memory {
    /// Peak resident set size (`VmHWM`) since the process started or since [`reset_peak`].
    pub peak_kib: u64,
    /// Current resident set size (`VmRSS`).
    pub rss_kib: u64,
}

/// Reads the memory figures of process `pid`; a figure that cannot be read is 0 (the process may
/// have exited).
pub fn memory(pid: u32) -> Memory {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    parse_status(&status)
}

fn parse_status(status: &str) -> Memory {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|value| value.parse().ok())
            .unwrap_or(0)
    };
    Memory {
        peak_kib: field("VmHWM:"),
        rss_kib: field("VmRSS:"),
    }
}

/// Resets the peak resident set size of process `pid` to its current size (Linux: writing 5 to
/// `/proc/<pid>/clear_refs`). Best effort: a process that has exited is ignored.
pub fn reset_peak(pid: u32) {
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
}

/// The 1, 5 and 15 minute load averages as `/proc/loadavg` prints them, for a benchmark's report.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

/// KiB as whole MiB, for printing (`"12 MiB"`).
pub fn mib(kib: u64) -> String {
    format!("{:.0} MiB", kib as f64 / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_peak_and_current_rss() {
        let status = "Name:\tx\nVmPeak:\t  999 kB\nVmHWM:\t    2048 kB\nVmRSS:\t    1024 kB\n";
        assert_eq!(
            parse_status(status),
            Memory {
                peak_kib: 2048,
                rss_kib: 1024
            }
        );
        assert_eq!(parse_status(""), Memory::default());
    }

    #[test]
    fn reads_this_process() {
        let memory = memory(std::process::id());
        assert!(
            memory.rss_kib > 0 && memory.peak_kib >= memory.rss_kib,
            "{memory:?}"
        );
        assert_eq!(mib(3 * 1024), "3 MiB");
        assert_eq!(load_average().split(' ').count(), 3);
    }
}

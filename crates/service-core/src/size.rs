//! Sizes as Thanos' flags and YAML write them (`250MB`, `1GiB`, `1024`).

/// Parses sizes as Thanos writes them (`250MB`, `1GiB`, `1024`): base-2 units.
pub fn parse_bytes(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let multiplier: u64 = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "KB" | "KIB" | "K" => 1 << 10,
        "MB" | "MIB" | "M" => 1 << 20,
        "GB" | "GIB" | "G" => 1 << 30,
        "TB" | "TIB" | "T" => 1 << 40,
        _ => return None,
    };
    number.checked_mul(multiplier)
}

/// The memory this process may use: the machine's (`MemTotal`), or its cgroup's limit
/// (v2 `memory.max`, v1 `memory.limit_in_bytes`) when lower; `None` when neither can be read.
pub fn memory_limit() -> Option<u64> {
    let machine = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|line| line.strip_prefix("MemTotal:"))
                .and_then(|rest| {
                    rest.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<u64>()
                        .ok()
                })
        })
        .map(|kib| kib.saturating_mul(1024));
    let cgroup = [
        "/sys/fs/cgroup/memory.max",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ]
    .iter()
    .filter_map(|path| std::fs::read_to_string(path).ok())
    // "max" (v2) and huge values (v1's "unlimited") do not parse or exceed the machine.
    .find_map(|text| text.trim().parse::<u64>().ok());
    match (machine, cgroup) {
        (Some(machine), Some(cgroup)) => Some(machine.min(cgroup)),
        (machine, cgroup) => machine.or(cgroup),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_thanos_sizes_in_base_two_units() {
        assert_eq!(parse_bytes("250MB"), Some(250 << 20));
        assert_eq!(parse_bytes(" 2GiB "), Some(2 << 30));
        assert_eq!(parse_bytes("1024"), Some(1024));
        assert_eq!(parse_bytes("3k"), Some(3 << 10));
        assert_eq!(parse_bytes("1.5GB"), None);
        assert_eq!(parse_bytes("GB"), None);
        assert_eq!(parse_bytes("99999999999TB"), None);
    }

    #[test]
    fn memory_limit_is_read_on_linux() {
        let limit = memory_limit().expect("/proc/meminfo is readable");
        assert!(limit > 64 << 20, "{limit}");
    }
}

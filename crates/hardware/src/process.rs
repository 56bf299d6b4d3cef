//! Memory held by the Tunelab process itself, from `/proc/self/status` on Linux.

/// Resident memory of this process right now (VmRSS), in bytes. `None` off Linux or when
/// `/proc` cannot be read.
pub fn current_rss_bytes() -> Option<u64> {
    self_status_field("VmRSS")
}

/// The most resident memory this process has held so far (VmHWM, the "high water mark"), in
/// bytes. `None` off Linux or when `/proc` cannot be read.
pub fn peak_rss_bytes() -> Option<u64> {
    self_status_field("VmHWM")
}

#[cfg(target_os = "linux")]
fn self_status_field(key: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status_field_bytes(&status, key)
}

#[cfg(not(target_os = "linux"))]
fn self_status_field(_key: &str) -> Option<u64> {
    None
}

/// Finds a line like `VmRSS:    2212 kB` (a tab after the colon) and returns its value in bytes.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn status_field_bytes(status: &str, key: &str) -> Option<u64> {
    let line = status.lines().find_map(|line| {
        let (name, rest) = line.split_once(':')?;
        (name.trim() == key).then_some(rest)
    })?;
    let mut parts = line.split_whitespace();
    let value: u64 = parts.next()?.parse().ok()?;
    let multiplier = match parts.next() {
        None | Some("B") => 1,
        Some(unit) if unit.eq_ignore_ascii_case("kb") => 1024,
        Some(unit) if unit.eq_ignore_ascii_case("mb") => 1024 * 1024,
        Some(unit) if unit.eq_ignore_ascii_case("gb") => 1024 * 1024 * 1024,
        Some(_) => return None,
    };
    value.checked_mul(multiplier)
}

#[cfg(test)]
mod tests {
    use super::status_field_bytes;

    const SAMPLE: &str = "Name:\ttunelab\nVmPeak:\t  120000 kB\nVmHWM:\t    4096 kB\n\
                          VmRSS:\t    2212 kB\nThreads:\t3\n";

    #[test]
    fn reads_kilobyte_fields_as_bytes() {
        assert_eq!(status_field_bytes(SAMPLE, "VmRSS"), Some(2212 * 1024));
        assert_eq!(status_field_bytes(SAMPLE, "VmHWM"), Some(4096 * 1024));
    }

    #[test]
    fn missing_or_malformed_fields_are_none() {
        assert_eq!(status_field_bytes(SAMPLE, "VmSwap"), None, "absent field");
        assert_eq!(
            status_field_bytes("VmRSS:\tlots kB\n", "VmRSS"),
            None,
            "not a number"
        );
        assert_eq!(
            status_field_bytes("VmRSS:\t12 parsecs\n", "VmRSS"),
            None,
            "unknown unit"
        );
        assert_eq!(status_field_bytes("", "VmRSS"), None, "empty file");
    }

    #[test]
    fn field_names_must_match_exactly() {
        // "VmRSS" must not be confused with a longer name that merely starts with it.
        let status = "VmRSSx:\t1 kB\nVmRSS:\t2 kB\n";
        assert_eq!(status_field_bytes(status, "VmRSS"), Some(2048));
    }
}

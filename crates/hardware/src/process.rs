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

/// Starts a new high-water mark at the memory held now, so that [`peak_rss_bytes`] measures
/// the work that follows alone (Linux 4.0 and newer; writing 5 to `/proc/self/clear_refs`).
/// Returns whether it could; where it cannot, the peak stays the process's whole-life peak.
pub fn reset_peak_rss() -> bool {
    #[cfg(target_os = "linux")]
    {
        std::fs::write("/proc/self/clear_refs", "5").is_ok()
    }
    #[cfg(not(target_os = "linux"))]
    {
        false
    }
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
    use super::*;

    const SAMPLE: &str = "Name:\ttunelab\nVmPeak:\t  120000 kB\nVmHWM:\t    4096 kB\n\
                          VmRSS:\t    2212 kB\nThreads:\t3\n";

    #[cfg(target_os = "linux")]
    #[test]
    fn a_reset_peak_forgets_memory_given_back() {
        // 64 MiB touched and freed: the peak holds it until it is reset.
        let block = vec![1u8; 64 << 20];
        std::hint::black_box(&block);
        drop(block);
        let before = peak_rss_bytes().unwrap();
        assert!(
            reset_peak_rss(),
            "this kernel lets a process reset its peak"
        );
        let after = peak_rss_bytes().unwrap();
        assert!(
            after + (32 << 20) < before,
            "peak {before} before the reset, {after} after"
        );
        assert!(after >= current_rss_bytes().unwrap() / 2);
    }

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

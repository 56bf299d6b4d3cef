//! The CPU's energy while work runs, from the RAPL counters Linux exposes under
//! `/sys/class/powercap` (Intel, and AMD Zen since Linux 5.8, both as `intel-rapl:N`): one
//! counter per CPU package, in microjoules, that wraps at `max_energy_range_uj`. Since Linux
//! 5.10 the counters are readable by root only unless an administrator opens them up, so on
//! most machines there is no reading and the cost says so instead of guessing.
//!
//! A package counter is the whole package's energy: every process on it, not Tunelab's share.
//! The recorded figure says which packages it covers and that it is the package's.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use ts_rs::TS;

/// Where the kernel publishes the counters.
pub const POWERCAP_ROOT: &str = "/sys/class/powercap";

/// What a piece of work cost the CPU, from its packages' RAPL counters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export, export_to = "../../../ui/src/bindings/")]
pub struct CpuEnergy {
    /// Joules the CPU packages used from start to finish. Measured, not estimated, but for
    /// the whole of each package: other programs running at the same time are included.
    pub joules: f64,
    /// How many packages (sockets) were counted.
    pub packages: u32,
}

/// One package's counter, accumulated across wraps.
#[derive(Debug, Clone)]
struct Counter {
    file: PathBuf,
    /// The value at which the counter wraps to zero.
    range: u64,
    last: u64,
    total: u64,
}

impl Counter {
    /// Takes a new reading: the energy since the last one, counting one wrap when the
    /// counter went down (readings are taken often enough that it cannot wrap twice).
    fn advance(&mut self, now: u64) {
        let delta = if now >= self.last {
            now - self.last
        } else {
            self.range.saturating_sub(self.last) + now
        };
        self.total += delta;
        self.last = now;
    }
}

fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The package counters under `root` that can be read: the top-level `intel-rapl:N` zones
/// only (their `intel-rapl:N:M` subzones, cores and uncore, are part of the package).
fn package_counters(root: &Path) -> Vec<Counter> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let mut zones: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix("intel-rapl:"))
                .is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()))
        })
        .collect();
    zones.sort();
    zones
        .into_iter()
        .filter_map(|zone| {
            let file = zone.join("energy_uj");
            let last = read_u64(&file)?;
            let range = read_u64(&zone.join("max_energy_range_uj")).unwrap_or(u64::MAX);
            Some(Counter {
                file,
                range,
                last,
                total: 0,
            })
        })
        .collect()
}

/// Records the CPU packages' energy on a thread of its own while work runs. Dropped without
/// [`finish`](Self::finish) (the work failed), the thread stops too.
pub struct CpuEnergyRecorder {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<CpuEnergy>>,
}

impl CpuEnergyRecorder {
    /// Starts reading this machine's counters every `every`; `None` where none can be read.
    pub fn start(every: Duration) -> Option<CpuEnergyRecorder> {
        Self::start_at(Path::new(POWERCAP_ROOT), every)
    }

    /// As [`start`](Self::start), with the counters under `root`.
    pub fn start_at(root: &Path, every: Duration) -> Option<CpuEnergyRecorder> {
        let mut counters = package_counters(root);
        if counters.is_empty() {
            return None;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let read = |counters: &mut Vec<Counter>| {
                for c in counters.iter_mut() {
                    if let Some(now) = read_u64(&c.file) {
                        c.advance(now);
                    }
                }
            };
            // Short sleeps, so that finishing does not wait out a whole interval.
            let tick = every.min(Duration::from_millis(50));
            let mut waited = Duration::ZERO;
            while !flag.load(Ordering::Relaxed) {
                std::thread::sleep(tick);
                waited += tick;
                if waited >= every {
                    read(&mut counters);
                    waited = Duration::ZERO;
                }
            }
            read(&mut counters);
            CpuEnergy {
                joules: counters.iter().map(|c| c.total as f64 / 1e6).sum(),
                packages: counters.len() as u32,
            }
        });
        Some(CpuEnergyRecorder {
            stop,
            handle: Some(handle),
        })
    }

    pub fn finish(mut self) -> Option<CpuEnergy> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.take()?.join().ok()
    }
}

impl Drop for CpuEnergyRecorder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_counter_adds_across_a_wrap() {
        let mut c = Counter {
            file: PathBuf::new(),
            range: 1_000,
            last: 900,
            total: 0,
        };
        c.advance(950);
        c.advance(20);
        c.advance(70);
        assert_eq!(c.total, 50 + (50 + 20) + 50);
    }

    fn zone(root: &Path, name: &str, energy: u64, range: u64) -> PathBuf {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("energy_uj"), format!("{energy}\n")).unwrap();
        std::fs::write(dir.join("max_energy_range_uj"), format!("{range}\n")).unwrap();
        dir.join("energy_uj")
    }

    #[test]
    fn packages_are_counted_and_their_subzones_are_not() {
        let root = std::env::temp_dir().join(format!("tunelab-rapl-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let p0 = zone(&root, "intel-rapl:0", 5_000_000, 10_000_000);
        let p1 = zone(&root, "intel-rapl:1", 1_000_000, 10_000_000);
        zone(&root, "intel-rapl:0:0", 0, 10_000_000);
        zone(&root, "intel-rapl-mmio:0", 0, 10_000_000);
        assert_eq!(package_counters(&root).len(), 2);

        let recorder = CpuEnergyRecorder::start_at(&root, Duration::from_millis(10)).unwrap();
        std::fs::write(&p0, "9000000\n").unwrap();
        std::fs::write(&p1, "1500000\n").unwrap();
        std::thread::sleep(Duration::from_millis(60));
        // Package 0 wraps: 9 J → 10 J (the range) → 0 → 2 J.
        std::fs::write(&p0, "2000000\n").unwrap();
        std::thread::sleep(Duration::from_millis(60));
        let energy = recorder.finish().unwrap();
        assert_eq!(energy.packages, 2);
        assert!((energy.joules - (7.0 + 0.5)).abs() < 1e-9, "{energy:?}");
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn no_readable_counters_means_no_recorder() {
        let root = std::env::temp_dir().join(format!("tunelab-no-rapl-{}", std::process::id()));
        std::fs::create_dir_all(root.join("intel-rapl:0")).unwrap();
        // A zone without a readable energy_uj (as for a user on Linux 5.10 and later).
        assert!(CpuEnergyRecorder::start_at(&root, Duration::from_millis(10)).is_none());
        assert!(
            CpuEnergyRecorder::start_at(&root.join("absent"), Duration::from_millis(10)).is_none()
        );
        std::fs::remove_dir_all(&root).unwrap();
    }
}

//! The server's CPU time and memory from `/proc/<pid>`.

use std::fs;

/// Linux reports `utime`/`stime` in USER_HZ ticks, 100 per second on every current platform.
const TICKS_PER_SECOND: f64 = 100.0;

/// One reading of a process.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    /// User plus system CPU seconds so far.
    pub cpu_s: f64,
    /// Resident set size now, KiB.
    pub rss_kb: u64,
    /// Peak resident set size (since start or the last reset), KiB.
    pub hwm_kb: u64,
}

/// Reads `/proc/<pid>/stat` and `/proc/<pid>/status`; `None` if the process is gone.
pub fn sample(pid: u32) -> Option<Sample> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after the name.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb = |key: &str| -> u64 {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Some(Sample {
        cpu_s: (utime + stime) / TICKS_PER_SECOND,
        rss_kb: kb("VmRSS:"),
        hwm_kb: kb("VmHWM:"),
    })
}

/// Resets the peak RSS (`VmHWM`) to the current RSS, so that a scenario reports its own
/// peak. Needs to own the process (or root); returns whether it worked.
pub fn reset_peak(pid: u32) -> bool {
    fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

/// This process's own CPU seconds, to show whether the generator was the bottleneck.
pub fn self_cpu_s() -> f64 {
    sample(std::process::id()).map(|s| s.cpu_s).unwrap_or(0.0)
}

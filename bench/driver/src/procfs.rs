//! What the kernel knows about a child process: peak resident set and CPU time.

use std::time::Duration;

/// Memory of a process, from `/proc/<pid>/status`.
#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize)]
pub struct Memory {
    /// `VmHWM`: the peak resident set size, KiB.
    pub peak_rss_kib: u64,
    /// `VmRSS`: the resident set size now, KiB.
    pub rss_kib: u64,
}

pub fn memory(pid: u32) -> Option<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| kib_field(&status, name);
    Some(Memory {
        peak_rss_kib: field("VmHWM:")?,
        rss_kib: field("VmRSS:")?,
    })
}

/// The value of a `Name:   123 kB` line of a `/proc` file, KiB.
fn kib_field(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Resident memory now, split into anonymous (heap, stacks) and file-backed (the
/// binary's and libraries' pages), KiB, from `/proc/<pid>/smaps_rollup`.
pub fn resident_split(pid: u32) -> Option<(u64, u64)> {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    let field = |name: &str| kib_field(&rollup, name);
    let rss = field("Rss:")?;
    let anon = field("Anonymous:")?;
    Some((anon, rss.saturating_sub(anon)))
}

/// User plus system CPU time of a process, all its threads (exited ones included),
/// from `/proc/<pid>/stat`; clock-tick resolution.
pub fn cpu_time(pid: u32, ticks_per_second: u64) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; the fields after it are space-separated.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 (utime) and 15 (stime), counted from 1 with pid and comm as 1 and 2.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_secs_f64(
        (utime + stime) as f64 / ticks_per_second as f64,
    ))
}

/// CPU time of a process's live threads, from `/proc/<pid>/task/*/schedstat`
/// (nanosecond resolution; threads that already ended are not counted).
pub fn thread_cpu_time(pid: u32) -> Option<Duration> {
    let mut total = 0u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
    {
        let stat = std::fs::read_to_string(task.path().join("schedstat")).ok()?;
        total += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(Duration::from_nanos(total))
}

/// `getconf CLK_TCK`, 100 when it cannot be asked.
pub fn ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

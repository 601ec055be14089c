//! CPU time from /proc, so a run can say how much CPU the server and the load
//! generator each used per operation (a figure far less noisy than req/s on a
//! shared machine).

use std::path::Path;
use std::time::Duration;

/// Linux reports utime/stime in clock ticks; 100 Hz on every mainstream build.
const TICKS_PER_SECOND: f64 = 100.0;

fn stat_cpu(stat: &str) -> Option<Duration> {
    // Fields after the `(comm)` which may itself contain spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line (11 and 12 here).
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_secs_f64(
        (utime + stime) as f64 / TICKS_PER_SECOND,
    ))
}

/// User + system CPU time of a whole process (all its threads).
pub(crate) fn process(pid: u32) -> Option<Duration> {
    stat_cpu(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// CPU time of this process's threads, split by whether their name starts with `prefix`.
pub(crate) fn own_threads_split(prefix: &str) -> Option<(Duration, Duration)> {
    let mut matching = Duration::ZERO;
    let mut others = Duration::ZERO;
    for entry in std::fs::read_dir("/proc/self/task").ok()? {
        let dir = entry.ok()?.path();
        let (Some(comm), Some(cpu)) = (read(&dir.join("comm")), read(&dir.join("stat"))) else {
            continue;
        };
        let Some(cpu) = stat_cpu(&cpu) else { continue };
        if comm.trim().starts_with(prefix) {
            matching += cpu;
        } else {
            others += cpu;
        }
    }
    Some((matching, others))
}

fn read(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// Resident set size in MB from /proc/<pid>/status (`VmRSS`, or `VmHWM` for the peak).
pub(crate) fn rss_mb(pid: u32, field: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_stat_line_with_spaces_in_the_name() {
        let line = "42 (tokio runtime) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0";
        assert_eq!(stat_cpu(line), Some(Duration::from_secs(3)));
    }

    #[test]
    fn reads_own_process() {
        assert!(process(std::process::id()).is_some());
        assert!(rss_mb(std::process::id(), "VmRSS:").is_some_and(|mb| mb > 0.0));
    }
}

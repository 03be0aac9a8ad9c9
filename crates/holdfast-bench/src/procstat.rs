//! What /proc says about a process: resident memory and CPU time. Linux only; elsewhere the
//! samples are simply absent.

use std::fs;

/// One reading of a process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcSample {
    /// VmRSS in KiB.
    pub rss_kib: u64,
    /// utime + stime in seconds.
    pub cpu_s: f64,
}

/// Reads /proc/PID/status and /proc/PID/stat (`None` for "self").
pub fn sample(pid: Option<u32>) -> Option<ProcSample> {
    let dir = match pid {
        Some(pid) => format!("/proc/{pid}"),
        None => "/proc/self".to_string(),
    };
    let status = fs::read_to_string(format!("{dir}/status")).ok()?;
    let stat = fs::read_to_string(format!("{dir}/stat")).ok()?;
    Some(ProcSample {
        rss_kib: parse_rss_kib(&status)?,
        cpu_s: parse_cpu_ticks(&stat)? as f64 / clock_ticks_per_second(),
    })
}

/// The VmRSS line of /proc/PID/status, in KiB.
pub fn parse_rss_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// utime + stime (fields 14 and 15) of /proc/PID/stat, in clock ticks. The command name (field 2)
/// may hold spaces and parentheses, so fields are counted after its closing parenthesis.
pub fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11); // field 3 (state) is index 0
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

/// Raises this process's open-file soft limit to at least `want` (up to the hard limit); returns
/// the limit in force afterwards.
// rlim_t is u64 on Linux but not everywhere.
#[allow(clippy::useless_conversion)]
pub fn raise_nofile(want: u64) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid resource and a pointer to a live rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if u64::from(lim.rlim_cur) < want {
            let new = libc::rlimit {
                rlim_cur: (want as libc::rlim_t).min(lim.rlim_max),
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &new) == 0 {
                lim = new;
            }
        }
    }
    u64::from(lim.rlim_cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rss_and_cpu() {
        let status = "Name:\tmosquitto\nVmPeak:\t  9000 kB\nVmRSS:\t    6144 kB\nThreads:\t1\n";
        assert_eq!(parse_rss_kib(status), Some(6144));
        assert_eq!(parse_rss_kib("Name: x\n"), None);
        let stat = "4242 (odd (name) x) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 1 0";
        assert_eq!(parse_cpu_ticks(stat), Some(325));
        assert_eq!(parse_cpu_ticks("garbage"), None);
    }

    #[test]
    fn samples_this_process() {
        if cfg!(target_os = "linux") {
            let s = sample(None).expect("/proc/self");
            assert!(s.rss_kib > 0);
            assert!(s.cpu_s >= 0.0);
            assert!(raise_nofile(64) >= 64);
        }
    }
}

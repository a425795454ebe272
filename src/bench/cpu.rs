//! CPU-seconds per process over a measured run, from /proc (Linux only):
//! user + system time of
//!
//! - the Temporal dev server (its process, plus any children it reaped);
//! - Postgres: every process whose `comm` is `postgres`, plus what the
//!   postmaster reaped of backends that exited meanwhile. The cluster is
//!   shared with other databases and users, so their work counts too;
//! - us: this process (API, worker, load generator and the sandbox
//!   provider's receipt playback) less the SQL counter's own thread.
//!
//! A child worker process (the reminder phase) is read on its own.

use super::pg_counter;

/// `USER_HZ`, the unit of /proc's times: 100 on every Linux ABI we run on
/// (`getconf CLK_TCK` says 100 here); reading it would need libc.
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;

/// CPU-seconds spent during one run.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CpuSeconds {
    pub server: f64,
    pub postgres: f64,
    pub ours: f64,
}

impl CpuSeconds {
    /// Scaled to `per` units of work out of `done` (e.g. per 1000 notifications).
    pub fn per(&self, done: usize, per: f64) -> CpuSeconds {
        let scale = if done == 0 { 0.0 } else { per / done as f64 };
        CpuSeconds {
            server: self.server * scale,
            postgres: self.postgres * scale,
            ours: self.ours * scale,
        }
    }
}

/// Clock ticks at one moment.
#[derive(Debug, Clone, Copy)]
struct Ticks {
    server: u64,
    postgres: u64,
    ours: u64,
}

/// A reading in progress: started now, finished by [`CpuMeter::finish`].
#[derive(Debug)]
pub struct CpuMeter {
    server_pid: Option<u32>,
    start: Ticks,
}

impl CpuMeter {
    pub fn start(server_pid: Option<u32>) -> Self {
        Self {
            server_pid,
            start: ticks(server_pid),
        }
    }

    pub fn finish(&self) -> CpuSeconds {
        let end = ticks(self.server_pid);
        let seconds = |a: u64, b: u64| a.saturating_sub(b) as f64 / CLOCK_TICKS_PER_SECOND;
        CpuSeconds {
            server: seconds(end.server, self.start.server),
            postgres: seconds(end.postgres, self.start.postgres),
            ours: seconds(end.ours, self.start.ours),
        }
    }
}

fn ticks(server_pid: Option<u32>) -> Ticks {
    let own = std::process::id();
    let counter_threads: u64 = threads_named(own, pg_counter::THREAD_NAME)
        .into_iter()
        .filter_map(|tid| stat_times(&format!("/proc/{own}/task/{tid}/stat")))
        .map(|t| t.own())
        .sum();
    Ticks {
        server: server_pid.map_or(0, process_ticks),
        postgres: postgres_ticks(),
        ours: stat_times(&format!("/proc/{own}/stat"))
            .map_or(0, |t| t.own())
            .saturating_sub(counter_threads),
    }
}

/// A process's own time plus its reaped children's.
pub fn process_ticks(pid: u32) -> u64 {
    stat_times(&format!("/proc/{pid}/stat")).map_or(0, |t| t.own() + t.children())
}

/// CPU-seconds of one process (with its reaped children) so far.
pub fn process_seconds(pid: u32) -> f64 {
    process_ticks(pid) as f64 / CLOCK_TICKS_PER_SECOND
}

fn postgres_ticks() -> u64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.trim_end() == "postgres")
        })
        .map(process_ticks)
        .sum()
}

fn threads_named(pid: u32, name: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|tid| {
            std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm"))
                .is_ok_and(|comm| comm.trim_end() == name)
        })
        .collect()
}

/// utime, stime, cutime, cstime of a `stat` file.
#[derive(Debug, Clone, Copy)]
struct StatTimes([u64; 4]);

impl StatTimes {
    fn own(&self) -> u64 {
        self.0[0] + self.0[1]
    }
    fn children(&self) -> u64 {
        self.0[2] + self.0[3]
    }
}

fn stat_times(path: &str) -> Option<StatTimes> {
    let stat = std::fs::read_to_string(path).ok()?;
    parse_stat(&stat)
}

/// `pid (comm) state ppid …`: the comm may hold spaces and parentheses, so
/// fields are counted from the last `)`; utime is field 14, so the 12th
/// after it.
fn parse_stat(stat: &str) -> Option<StatTimes> {
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| fields.get(i)?.parse::<u64>().ok();
    Some(StatTimes([field(11)?, field(12)?, field(13)?, field(14)?]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_times_after_a_comm_with_spaces() {
        let stat = "42 (tokio (x) y) S 1 42 42 0 -1 4194560 100 0 0 0 250 30 7 3 20 0 9 0 1 2 3";
        let times = parse_stat(stat).expect("parses");
        assert_eq!((times.own(), times.children()), (280, 10));
    }
}

//! Reading processes: `kill(pid, 0)` and `/proc/<pid>/stat` (see proc(5)).

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::Pid;

use crate::core::{ProcessInfo, ProcessReading};

/// The system facts needed to read `/proc`: read once, used for every process.
#[derive(Debug, Clone)]
pub struct Procfs {
    root: PathBuf,
    /// Boot time, seconds since the Unix epoch (`btime` line of `/proc/stat`).
    boot_time: i64,
    /// Clock ticks per second (`sysconf(_SC_CLK_TCK)`, nearly always 100).
    ticks_per_second: u64,
    /// The largest PID the kernel hands out (`/proc/sys/kernel/pid_max`).
    pid_max: i32,
}

/// The fields of `/proc/<pid>/stat` that pidwatch uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    /// Field 2, the command name, without its parentheses.
    pub comm: String,
    /// Field 3, the state letter.
    pub state: char,
    /// Field 4, the parent's PID.
    pub ppid: i32,
    /// Field 5, the process group id.
    pub pgrp: i32,
    /// Field 6, the session id.
    pub session: i32,
    /// Field 22, start time in clock ticks after boot.
    pub start_ticks: u64,
}

impl Procfs {
    /// Reads boot time, clock-tick rate and `pid_max` from `/proc`.
    ///
    /// Errors: `/proc/stat` or `/proc/sys/kernel/pid_max` unreadable or
    /// malformed (no procfs mounted, say).
    pub fn new() -> io::Result<Procfs> {
        Procfs::at(Path::new("/proc"))
    }

    /// Like [`Procfs::new`] with another mount point of procfs.
    pub fn at(root: &Path) -> io::Result<Procfs> {
        let stat = fs::read_to_string(root.join("stat"))?;
        let boot_time = stat
            .lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse::<i64>().ok())
            .ok_or_else(|| bad_data(root.join("stat"), "no btime line"))?;
        let pid_max = fs::read_to_string(root.join("sys/kernel/pid_max"))?
            .trim()
            .parse::<i32>()
            .map_err(|e| bad_data(root.join("sys/kernel/pid_max"), &e.to_string()))?;
        let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
            .ok()
            .flatten()
            .filter(|t| *t > 0)
            .unwrap_or(100) as u64;
        Ok(Procfs {
            root: root.to_path_buf(),
            boot_time,
            ticks_per_second: ticks,
            pid_max,
        })
    }

    /// The kernel's largest PID (`/proc/sys/kernel/pid_max`).
    pub fn pid_max(&self) -> i32 {
        self.pid_max
    }

    /// When this boot began: `btime` of `/proc/stat`, whole seconds.
    pub fn boot_time(&self) -> DateTime<Utc> {
        DateTime::from_timestamp(self.boot_time, 0).unwrap_or_default()
    }

    /// The procfs mount point read (normally `/proc`).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The boot id (`/proc/sys/kernel/random/boot_id`, a UUID new at every
    /// boot), trimmed.
    ///
    /// Errors: the file cannot be read.
    pub fn boot_id(&self) -> io::Result<String> {
        Ok(
            fs::read_to_string(self.root.join("sys/kernel/random/boot_id"))?
                .trim()
                .to_string(),
        )
    }

    /// The command line (`/proc/<pid>/cmdline`, NUL-separated arguments),
    /// at most [`MAX_PROC_TEXT`] bytes of it. Empty for a zombie or a
    /// kernel thread.
    ///
    /// Errors: the process is gone or not ours to read.
    pub fn cmdline(&self, pid: i32) -> io::Result<Vec<Vec<u8>>> {
        let bytes = read_bounded(&self.root.join(pid.to_string()).join("cmdline"))?;
        Ok(bytes
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(<[u8]>::to_vec)
            .collect())
    }

    /// The pidwatch variables in a process's initial environment
    /// (`/proc/<pid>/environ`, as it was at exec; readable by the same user
    /// or root).
    ///
    /// Errors: the process is gone or not ours to read.
    pub fn markers(&self, pid: i32) -> io::Result<Markers> {
        let bytes = read_bounded(&self.root.join(pid.to_string()).join("environ"))?;
        Ok(parse_markers(&bytes))
    }

    /// Turns a start time in clock ticks after boot into wall time.
    pub fn wall_time(&self, start_ticks: u64) -> DateTime<Utc> {
        let tps = self.ticks_per_second;
        let secs = self.boot_time + (start_ticks / tps) as i64;
        let nanos = ((start_ticks % tps) * 1_000_000_000 / tps) as u32;
        DateTime::from_timestamp(secs, nanos).unwrap_or_default()
    }

    /// Wall time `at` in clock ticks after boot (the inverse of
    /// [`Procfs::wall_time`], to the second of `btime`); 0 before the boot.
    pub fn ticks_at(&self, at: DateTime<Utc>) -> u64 {
        let since_boot = at.timestamp_micros() - self.boot_time * 1_000_000;
        u64::try_from(since_boot).map_or(0, |us| us * self.ticks_per_second / 1_000_000)
    }

    /// Now, in clock ticks after boot (`CLOCK_BOOTTIME`, the clock of field
    /// 22): a process whose start time is above it started later.
    pub fn now_ticks(&self) -> u64 {
        let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME)
            .unwrap_or_else(|_| nix::sys::time::TimeSpec::new(0, 0));
        let tps = self.ticks_per_second;
        now.tv_sec() as u64 * tps + now.tv_nsec() as u64 * tps / 1_000_000_000
    }

    /// Reads `/proc/<pid>/stat`. `Ok(None)` when there is no such process.
    pub fn stat(&self, pid: i32) -> io::Result<Option<Stat>> {
        let path = self.root.join(pid.to_string()).join("stat");
        // One read into a buffer on the stack: the file is a few hundred
        // bytes, and this runs once per worker per pass.
        let mut buf = [0u8; 1024];
        let read = fs::File::open(&path).and_then(|mut f| {
            let n = f.read(&mut buf)?;
            if n < buf.len() {
                return Ok((n, None));
            }
            let mut all = buf.to_vec();
            f.read_to_end(&mut all)?;
            Ok((0, Some(all)))
        });
        let parsed = match read {
            Ok((n, None)) => parse_stat(&buf[..n]),
            Ok((_, Some(all))) => parse_stat(&all),
            // A process that exits while being read gives ENOENT or ESRCH.
            Err(e)
                if e.kind() == io::ErrorKind::NotFound
                    || e.raw_os_error() == Some(Errno::ESRCH as i32) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        parsed.map(Some).ok_or_else(|| bad_data(path, "malformed"))
    }

    /// Observes the process `pid`: `kill(pid, 0)` first (ESRCH: gone; EPERM:
    /// exists but not ours), then `/proc/<pid>/stat` for state, start time,
    /// process group and session.
    ///
    /// Errors: `/proc/<pid>/stat` unreadable for a reason other than the
    /// process being gone, or malformed.
    pub fn observe(&self, pid: i32) -> io::Result<ProcessReading> {
        let signalable = match kill(Pid::from_raw(pid), None) {
            Ok(()) => true,
            Err(Errno::EPERM) => false,
            Err(Errno::ESRCH) => return Ok(ProcessReading::Gone),
            Err(e) => return Err(io::Error::from(e)),
        };
        Ok(match self.stat(pid)? {
            None => ProcessReading::Gone,
            Some(stat) => ProcessReading::Alive(ProcessInfo {
                state: stat.state,
                start_ticks: stat.start_ticks,
                start_time: self.wall_time(stat.start_ticks),
                pgrp: stat.pgrp,
                session: stat.session,
                signalable,
            }),
        })
    }
}

/// The most of a `/proc/<pid>/cmdline` or `environ` that is read: a worker's
/// environment holds its prompt, which may be long; the pidwatch variables
/// are set before it by the wrapper, but any order is read up to this size.
pub const MAX_PROC_TEXT: u64 = 1 << 20;

fn read_bounded(path: &Path) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    fs::File::open(path)?
        .take(MAX_PROC_TEXT)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// The pidwatch variables of one process's environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Markers {
    /// `PIDWATCH_INVOCATION_ID`, when it is a well-formed incarnation id.
    pub invocation: Option<String>,
    /// `PIDWATCH_STREAM_ID`, the worker id the wrapper gave its worker.
    pub stream: Option<String>,
    /// `PIDWATCH_LOG_FILE`, the worker log the wrapper gave its worker:
    /// it names the orchestrator dir and the initiative, so that workers of
    /// the same stream id in other projects are never taken for this one's.
    pub log_file: Option<std::path::PathBuf>,
}

/// Parses the NUL-separated `KEY=VALUE` text of `/proc/<pid>/environ` for
/// the pidwatch variables.
pub fn parse_markers(bytes: &[u8]) -> Markers {
    let mut markers = Markers::default();
    for var in bytes.split(|b| *b == 0) {
        let Some(rest) = var.strip_prefix(b"PIDWATCH_") else {
            continue;
        };
        let text = |v: &[u8]| String::from_utf8(v.to_vec()).ok();
        if let Some(v) = rest.strip_prefix(b"INVOCATION_ID=") {
            markers.invocation = text(v).filter(|v| crate::core::is_incarnation_id(v));
        } else if let Some(v) = rest.strip_prefix(b"STREAM_ID=") {
            markers.stream = text(v);
        } else if let Some(v) = rest.strip_prefix(b"LOG_FILE=") {
            markers.log_file = text(v).map(std::path::PathBuf::from);
        }
    }
    markers
}

fn bad_data(path: PathBuf, what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{}: {what}", path.display()),
    )
}

/// Parses the text of `/proc/<pid>/stat`. The command name (field 2) may hold
/// spaces and parentheses, so it spans from the first `(` to the *last* `)`.
pub fn parse_stat(bytes: &[u8]) -> Option<Stat> {
    let open = bytes.iter().position(|b| *b == b'(')?;
    let close = bytes.iter().rposition(|b| *b == b')')?;
    if close < open {
        return None;
    }
    let comm = String::from_utf8_lossy(&bytes[open + 1..close]).into_owned();
    // After the name come fields 3, 4, 5, ...; only a few are parsed.
    let mut fields = bytes[close + 1..]
        .split(u8::is_ascii_whitespace)
        .filter(|f| !f.is_empty());
    fn number<T: std::str::FromStr>(field: Option<&[u8]>) -> Option<T> {
        std::str::from_utf8(field?).ok()?.parse().ok()
    }
    let state = match fields.next()? {
        [letter] if letter.is_ascii_alphabetic() => *letter as char,
        _ => return None,
    };
    let ppid = number(fields.next())?;
    let pgrp = number(fields.next())?;
    let session = number(fields.next())?;
    // Fields 7 to 21 are skipped; the 16th field from here is field 22.
    let start_ticks = number(fields.nth(15))?;
    Some(Stat {
        comm,
        state,
        ppid,
        pgrp,
        session,
        start_ticks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(comm: &str, state: char, start: u64) -> String {
        format!(
            "4242 ({comm}) {state} 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 {start} 1000 10 \
             18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0"
        )
    }

    #[test]
    fn parses_plain_and_tricky_command_names() {
        for comm in ["sleep", "my worker", "a) b (c", ")", "((", "x) S 1 2 3"] {
            let stat = parse_stat(line(comm, 'S', 987654).as_bytes()).expect(comm);
            assert_eq!(stat.comm, comm);
            assert_eq!(stat.state, 'S');
            assert_eq!(stat.ppid, 1);
            assert_eq!(stat.pgrp, 4242);
            assert_eq!(stat.session, 4242);
            assert_eq!(stat.start_ticks, 987654);
        }
    }

    #[test]
    fn rejects_malformed_stat() {
        assert_eq!(parse_stat(b""), None);
        assert_eq!(parse_stat(b"12 sleep S 1"), None);
        assert_eq!(parse_stat(b"12 (sleep) S 1 2"), None);
        assert_eq!(parse_stat(b"12 )sleep( S"), None);
    }

    #[test]
    fn reads_own_process() {
        let procfs = Procfs::new().unwrap();
        let me = std::process::id() as i32;
        let stat = procfs.stat(me).unwrap().unwrap();
        assert!(matches!(stat.state, 'R' | 'S'));
        let started = procfs.wall_time(stat.start_ticks);
        let now = Utc::now();
        assert!(
            started <= now + chrono::TimeDelta::seconds(1),
            "{started} vs {now}"
        );
        assert!(procfs.pid_max() >= 301);
        // The boot clock agrees with field 22: we started before now.
        assert!(stat.start_ticks <= procfs.now_ticks());
    }
}

//! a. What one `pidwatch check --json` costs, wall time from spawn to exit,
//! at growing worker counts.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use nix::fcntl::OFlag;
use nix::sys::signal::kill;
use nix::unistd::Pid;
use pidwatch::observe::procfs::{Procfs, Stat, parse_stat};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::fixture::Orchestration;
use crate::stats;
use crate::{Bench, BenchResult};

/// One row of the table.
#[derive(Debug, Clone)]
pub(crate) struct CheckRow {
    /// Workers in the task DB, each with a PID file.
    pub(crate) workers: usize,
    /// PID files naming a live stand-in of the worker's wrapper.
    pub(crate) live: usize,
    /// PID files naming a PID no process has.
    pub(crate) dead: usize,
    /// Timed runs (after one untimed warm-up).
    pub(crate) runs: usize,
    /// Median wall time of one check.
    pub(crate) median: Duration,
    /// Fastest run.
    pub(crate) min: Duration,
    /// Slowest run.
    pub(crate) max: Duration,
}

impl CheckRow {
    /// Median wall time per worker.
    pub(crate) fn per_worker(&self) -> Duration {
        self.median / self.workers as u32
    }
}

/// The processes named by the PID files of live workers, one per worker;
/// killed when dropped. pidwatch counts a worker as running only when the
/// process its PID file names is that worker's wrapper by its command line
/// (`<…>/worker-wrapper.sh <worker> <PID file> <log dir> <work dir>
/// <initiative> …`), so each is `sh -c 'read -r _' <wrapper> <worker> <PID
/// file> <log dir> <work dir> <initiative>`: a shell with that
/// command line, blocked reading a pipe the bench never writes to, without
/// a child (a plain `sleep`, as before incarnations, is another program:
/// `not_the_worker`, dead).
struct Sleepers(Vec<Child>);

impl Sleepers {
    fn spawn(orch: &Orchestration, workers: &[String]) -> BenchResult<Sleepers> {
        let mut all = Sleepers(Vec::with_capacity(workers.len()));
        let wrapper = orch.wrapper();
        for w in workers {
            let child = Command::new("sh")
                .args(["-c", "read -r _"])
                .arg(&wrapper)
                .arg(w)
                .arg(orch.pid_file(w))
                .arg(orch.log_dir())
                .arg(orch.work_dir(w))
                .arg(crate::fixture::INITIATIVE)
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0)
                .spawn()
                .map_err(|e| format!("starting a stand-in wrapper: {e}"))?;
            all.0.push(child);
        }
        Ok(all)
    }

    fn pids(&self) -> impl Iterator<Item = i32> + '_ {
        self.0.iter().map(|c| c.id() as i32)
    }
}

impl Drop for Sleepers {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The check's system calls at one size, counted by `strace -c -f`.
#[derive(Debug, Clone)]
pub(crate) struct Profile {
    /// Workers checked.
    pub(crate) workers: usize,
    /// System calls of the whole run.
    pub(crate) total: u64,
    /// `(system call, calls)`, most frequent first.
    pub(crate) calls: Vec<(String, u64)>,
}

/// What reading one worker's files costs, pidwatch's way and with the
/// fewest system calls, per worker (mean over all workers, median of
/// [`READ_ROUNDS`] rounds).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReadCosts {
    /// Workers whose files were read.
    pub(crate) workers: usize,
    /// `pidwatch::observe::procfs::Procfs::stat`.
    pub(crate) stat: Duration,
    /// The same `/proc/<pid>/stat`: `open`, one `read(2)` into a stack
    /// buffer, `close`, the same parser.
    pub(crate) stat_one_read: Duration,
    /// `pidwatch::observe::pidfile::read`.
    pub(crate) pidfile: Duration,
    /// The same PID file and checks: `open` (O_NOFOLLOW, O_NONBLOCK), one
    /// `fstat`, one `read(2)`, `close`, the same parser.
    pub(crate) pidfile_one_read: Duration,
    /// `kill(pid, 0)`, which `Procfs::observe` sends before reading the stat.
    pub(crate) kill_probe: Duration,
}

impl ReadCosts {
    /// What the leaner reads would save per worker.
    pub(crate) fn saving(&self) -> Duration {
        self.stat.saturating_sub(self.stat_one_read)
            + self.pidfile.saturating_sub(self.pidfile_one_read)
            + self.kill_probe
    }
}

/// The check benchmark's results.
#[derive(Debug, Clone)]
pub(crate) struct CheckCost {
    /// One row per size.
    pub(crate) rows: Vec<CheckRow>,
    /// System calls at the largest size up to 1,000 (`None` without strace).
    pub(crate) profile: Option<Profile>,
    /// File reads at the same size.
    pub(crate) reads: Option<ReadCosts>,
}

/// What is measured at the profiled size besides the timing: the system
/// calls (when strace is there) and the file reads.
type Extra = (Option<Profile>, ReadCosts);

/// Rounds of [`ReadCosts`] over every worker.
const READ_ROUNDS: usize = 7;

/// The most workers at which the system calls are counted.
const PROFILE_MAX_WORKERS: usize = 1_000;

/// Runs the check benchmark over `bench.plan.check_sizes`.
///
/// Errors: a fixture cannot be built, or a check fails or says something
/// other than expected.
pub(crate) fn run(bench: &Bench) -> BenchResult<CheckCost> {
    let sizes = &bench.plan.check_sizes;
    let profiled = sizes
        .iter()
        .copied()
        .filter(|n| *n <= PROFILE_MAX_WORKERS)
        .max();
    let mut cost = CheckCost {
        rows: Vec::new(),
        profile: None,
        reads: None,
    };
    for &n in sizes {
        let (row, extra) = measure(bench, n, profiled == Some(n))?;
        eprintln!("check: {n} workers, median {}", stats::show(row.median));
        cost.rows.push(row);
        if let Some((profile, reads)) = extra {
            cost.profile = profile;
            cost.reads = Some(reads);
        }
    }
    Ok(cost)
}

fn measure(bench: &Bench, n: usize, profile: bool) -> BenchResult<(CheckRow, Option<Extra>)> {
    let orch = Orchestration::build(n)?;
    let live = n.min(bench.plan.max_live);
    // Started before the PID files are written, as a wrapper is: pidwatch
    // checks that the process is no younger than its PID file.
    let sleepers = Sleepers::spawn(&orch, &orch.workers[..live])?;
    let live_pids: Vec<i32> = sleepers.pids().collect();
    let dead_pids = unused_pids(n - live)?;
    for (w, pid) in orch.workers.iter().zip(live_pids.iter().chain(&dead_pids)) {
        let path = orch.pid_file(w);
        std::fs::write(&path, format!("{pid}\n"))
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    let dead = n - live;
    // One untimed run warms the page cache and validates the output.
    validate(&run_check(&orch, &bench.bin)?, live, dead)?;
    crate::procs::wait_for_quiet(
        crate::procs::QUIET_LIMIT,
        &mut crate::procs::Reaper::default(),
    )?;
    let mut times = Vec::with_capacity(bench.plan.check_runs);
    for _ in 0..bench.plan.check_runs {
        crate::procs::check_interrupt()?;
        let started = Instant::now();
        let out = run_check(&orch, &bench.bin)?;
        times.push(started.elapsed());
        expect_exit(&out, dead)?;
    }
    let row = CheckRow {
        workers: n,
        live,
        dead,
        runs: times.len(),
        median: stats::median(&times).unwrap_or_default(),
        min: times.iter().copied().min().unwrap_or_default(),
        max: times.iter().copied().max().unwrap_or_default(),
    };
    let extra = if profile {
        Some((count_syscalls(&orch, &bench.bin), read_costs(&orch, live)?))
    } else {
        None
    };
    Ok((row, extra))
}

/// Times pidwatch's readers of a worker's PID file and `/proc/<pid>/stat`
/// against the leanest reads that get the same facts, over the first `live`
/// workers (those with a live process).
///
/// Errors: `/proc` cannot be read.
fn read_costs(orch: &Orchestration, live: usize) -> BenchResult<ReadCosts> {
    let procfs = Procfs::new().map_err(|e| format!("reading /proc: {e}"))?;
    let pid_max = procfs.pid_max();
    let files: Vec<(PathBuf, i32)> = orch.workers[..live]
        .iter()
        .filter_map(|w| Some((orch.pid_file(w), orch.read_pid(w)?)))
        .collect();
    let per_worker = |read: &dyn Fn(&Path, i32)| {
        let mut rounds = Vec::with_capacity(READ_ROUNDS);
        // One untimed round first: the first reads of a /proc entry set up
        // its inode and dentry.
        for round in 0..=READ_ROUNDS {
            let t0 = Instant::now();
            for (path, pid) in &files {
                read(path, *pid);
            }
            if round > 0 {
                rounds.push(t0.elapsed() / files.len().max(1) as u32);
            }
        }
        stats::median(&rounds).unwrap_or_default()
    };
    Ok(ReadCosts {
        workers: files.len(),
        stat: per_worker(&|_, pid| {
            std::hint::black_box(procfs.stat(pid).ok());
        }),
        stat_one_read: per_worker(&|_, pid| {
            std::hint::black_box(stat_one_read(pid));
        }),
        pidfile: per_worker(&|path, _| {
            std::hint::black_box(pidwatch::observe::pidfile::read(path, pid_max));
        }),
        pidfile_one_read: per_worker(&|path, _| {
            std::hint::black_box(pidfile_one_read(path, pid_max));
        }),
        kill_probe: per_worker(&|_, pid| {
            std::hint::black_box(kill(Pid::from_raw(pid), None).ok());
        }),
    })
}

/// `/proc/<pid>/stat` with one `read(2)` into a stack buffer.
fn stat_one_read(pid: i32) -> Option<Stat> {
    let mut buf = [0u8; 1024];
    let n = File::open(format!("/proc/{pid}/stat"))
        .ok()?
        .read(&mut buf)
        .ok()?;
    parse_stat(&buf[..n])
}

/// A PID file as pidwatch reads it (no symlink, no FIFO, a regular file of
/// at most 64 bytes, its mtime), with one `fstat` and one `read(2)`.
fn pidfile_one_read(path: &Path, pid_max: i32) -> Option<(i32, SystemTime)> {
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags((OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK).bits())
        .open(path)
        .ok()?;
    let meta = file.metadata().ok()?;
    if !meta.is_file() || meta.len() > pidwatch::observe::pidfile::MAX_PIDFILE_BYTES {
        return None;
    }
    let mut buf = [0u8; 65];
    let n = file.read(&mut buf).ok()?;
    let pid = pidwatch::observe::pidfile::parse(&buf[..n], pid_max).ok()?;
    Some((pid, meta.modified().ok()?))
}

/// One check under `strace -c -f`; `None` when strace is missing or fails.
fn count_syscalls(orch: &Orchestration, bin: &Path) -> Option<Profile> {
    let strace = crate::procs::which("strace")?;
    let out = orch.root().join("strace.txt");
    let ran = Command::new(strace)
        .args(["-c", "-f", "-o"])
        .arg(&out)
        .arg(bin)
        .args(["check", "--json"])
        .args(orch.location_args())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok()?;
    // Exit 1 (some worker dead) is a normal outcome of a check.
    if !matches!(ran.code(), Some(0 | 1)) {
        return None;
    }
    let mut calls = parse_strace_summary(&std::fs::read_to_string(out).ok()?);
    calls.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
    Some(Profile {
        workers: orch.workers.len(),
        total: calls.iter().map(|(_, n)| n).sum(),
        calls,
    })
}

/// The `(syscall, calls)` rows of a `strace -c` table.
fn parse_strace_summary(text: &str) -> Vec<(String, u64)> {
    text.lines()
        .filter_map(|line| {
            // % time, seconds, usecs/call, calls, [errors,] syscall
            let fields: Vec<&str> = line.split_ascii_whitespace().collect();
            let name = *fields.last()?;
            let calls = fields.get(3)?.parse().ok()?;
            (fields.len() >= 5 && name != "total").then(|| (name.to_string(), calls))
        })
        .collect()
}

fn run_check(orch: &Orchestration, bin: &Path) -> BenchResult<std::process::Output> {
    orch.pidwatch(bin, &["check", "--json"])
        .output()
        .map_err(|e| format!("running pidwatch check: {e}"))
}

/// Exit 0 when every worker is live, 1 when some is dead.
fn expect_exit(out: &std::process::Output, dead: usize) -> BenchResult<()> {
    let want = if dead > 0 { 1 } else { 0 };
    if out.status.code() == Some(want) {
        Ok(())
    } else {
        Err(format!(
            "pidwatch check exited {:?}, expected {want}; stderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// The check judged every worker, as running or dead as arranged.
fn validate(out: &std::process::Output, live: usize, dead: usize) -> BenchResult<()> {
    expect_exit(out, dead)?;
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("pidwatch check --json printed no JSON: {e}"))?;
    let count = |key: &str| doc["summary"][key].as_u64().unwrap_or(u64::MAX) as usize;
    if count("running") == live && count("dead") == dead {
        Ok(())
    } else {
        Err(format!(
            "pidwatch check saw {} running and {} dead, expected {live} and {dead}",
            count("running"),
            count("dead")
        ))
    }
}

/// `count` PIDs that no process has: counting down from the last PID the
/// kernel handed out, which is where it will come back to last.
fn unused_pids(count: usize) -> BenchResult<Vec<i32>> {
    let read = |path: &str| -> BenchResult<i32> {
        std::fs::read_to_string(path)
            .map_err(|e| format!("reading {path}: {e}"))?
            .trim()
            .parse()
            .map_err(|e| format!("reading {path}: {e}"))
    };
    let pid_max = read("/proc/sys/kernel/pid_max")?;
    let last = read("/proc/sys/kernel/ns_last_pid")?;
    /// The kernel does not hand out PIDs below this after wrapping.
    const RESERVED: i32 = 300;
    let span = pid_max - RESERVED;
    let mut found = Vec::with_capacity(count);
    for step in 1..span {
        if found.len() == count {
            break;
        }
        let pid = RESERVED + (last - RESERVED - step).rem_euclid(span);
        if !Path::new(&format!("/proc/{pid}")).exists() {
            found.push(pid);
        }
    }
    if found.len() < count {
        return Err(format!(
            "only {} unused PIDs below pid_max {pid_max}",
            found.len()
        ));
    }
    Ok(found)
}

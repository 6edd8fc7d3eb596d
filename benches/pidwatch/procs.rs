//! Processes: the bench reaps every orphan it makes (it is a child
//! subreaper), reads `/proc`, and kills everything it started when it ends,
//! pass or fail.

use std::collections::{HashMap, HashSet};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use pidwatch::observe::cgroup::{Cgroup, Delegation, parse_proc_cgroup};
use pidwatch::observe::procfs::{Stat, parse_stat};

use crate::BenchResult;

/// Set by SIGINT, SIGTERM or SIGHUP: every wait gives up, and the guards
/// clean up on the way out.
static INTERRUPTED: OnceLock<Arc<AtomicBool>> = OnceLock::new();

/// The longest single sleep of [`pause`] and [`wait_until`], so that an
/// interrupt or an orphan is handled promptly.
const MAX_NAP: Duration = Duration::from_millis(20);

/// How many times [`kill_descendants`] sweeps `/proc` before giving up.
const KILL_ROUNDS: usize = 50;

/// Makes the bench the reaper of its orphaned descendants (wrappers whose
/// launcher exited, workers whose wrapper was killed), and turns SIGINT,
/// SIGTERM and SIGHUP into the [`interrupted`] flag.
///
/// Errors: prctl(2) or sigaction(2) failed.
pub(crate) fn install() -> io::Result<()> {
    nix::sys::prctl::set_child_subreaper(true).map_err(io::Error::from)?;
    let flag = INTERRUPTED.get_or_init(|| Arc::new(AtomicBool::new(false)));
    for sig in [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ] {
        signal_hook::flag::register(sig, Arc::clone(flag))?;
    }
    Ok(())
}

/// Whether the bench was asked to stop.
pub(crate) fn interrupted() -> bool {
    INTERRUPTED.get().is_some_and(|f| f.load(Ordering::Relaxed))
}

/// `Err` once the bench was asked to stop.
pub(crate) fn check_interrupt() -> BenchResult<()> {
    if interrupted() {
        Err("interrupted by a signal".into())
    } else {
        Ok(())
    }
}

/// Makes `cmd`'s process die (SIGKILL) when the bench dies, even by SIGKILL.
pub(crate) fn die_with_parent(cmd: &mut Command) {
    // SAFETY: the closure runs in the forked child before exec and only
    // calls prctl(2), which is async-signal-safe and touches no memory
    // shared with the parent.
    unsafe {
        cmd.pre_exec(|| nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(io::Error::from));
    }
}

/// Reaps every exited child (own or adopted), keeping the status of the
/// few the bench waits for.
#[derive(Debug, Default)]
pub(crate) struct Reaper {
    watched: HashMap<i32, Option<WaitStatus>>,
}

impl Reaper {
    /// Keeps `pid`'s exit status when it is reaped.
    pub(crate) fn watch(&mut self, pid: i32) {
        self.watched.insert(pid, None);
    }

    /// Reaps every child that has exited, without blocking.
    pub(crate) fn reap(&mut self) {
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => break,
                Ok(status) => {
                    if let Some(pid) = status.pid()
                        && let Some(slot) = self.watched.get_mut(&pid.as_raw())
                    {
                        *slot = Some(status);
                    }
                }
                Err(Errno::EINTR) => continue,
                Err(_) => break,
            }
        }
    }

    /// The exit status of a watched `pid`, once it has exited.
    pub(crate) fn exit_status(&mut self, pid: i32) -> Option<WaitStatus> {
        self.reap();
        self.watched.get(&pid).copied().flatten()
    }
}

/// Sleeps `total`, reaping orphans and watching for an interrupt.
///
/// Errors: interrupted.
pub(crate) fn pause(total: Duration, reaper: &mut Reaper) -> BenchResult<()> {
    let end = Instant::now() + total;
    loop {
        reaper.reap();
        check_interrupt()?;
        let now = Instant::now();
        if now >= end {
            return Ok(());
        }
        std::thread::sleep((end - now).min(MAX_NAP));
    }
}

/// Polls `cond` (1 ms at first, backing off to 20 ms) until it holds or
/// `limit` passes, reaping orphans in between.
///
/// Errors: `limit` passed (naming `what`), or interrupted.
pub(crate) fn wait_until(
    what: &str,
    limit: Duration,
    reaper: &mut Reaper,
    mut cond: impl FnMut() -> bool,
) -> BenchResult<()> {
    let deadline = Instant::now() + limit;
    let mut nap = Duration::from_millis(1);
    loop {
        if cond() {
            return Ok(());
        }
        reaper.reap();
        check_interrupt()?;
        if Instant::now() >= deadline {
            return Err(format!("gave up after {limit:?} waiting for {what}"));
        }
        std::thread::sleep(nap);
        nap = (nap * 2).min(MAX_NAP);
    }
}

/// `/proc/<pid>/stat`, parsed by pidwatch's own (tested) parser.
pub(crate) fn stat(pid: i32) -> Option<Stat> {
    parse_stat(&std::fs::read(format!("/proc/{pid}/stat")).ok()?)
}

/// Whether `pid` is a live process: it exists and its state is not zombie
/// (`Z`) or dead (`X`).
pub(crate) fn is_live(pid: i32) -> bool {
    stat(pid).is_some_and(|s| !matches!(s.state, 'Z' | 'X'))
}

/// Every process of the system, with its stat.
pub(crate) fn process_table() -> Vec<(i32, Stat)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| Some((pid, stat(pid)?)))
        .collect()
}

/// The live processes of session `sid` other than its leader: what is left
/// of a worker after its wrapper (the session leader) was killed.
pub(crate) fn session_survivors(sid: i32) -> Vec<i32> {
    process_table()
        .into_iter()
        .filter(|(pid, s)| {
            *pid != sid && (s.session == sid || s.pgrp == sid) && !matches!(s.state, 'Z' | 'X')
        })
        .map(|(pid, _)| pid)
        .collect()
}

/// The cgroup v2 of `pid`, as `/proc/<pid>/cgroup` names it (`/` for the
/// root); `None` when it is gone or there is no cgroup v2 line.
pub(crate) fn cgroup_of(pid: i32) -> Option<String> {
    parse_proc_cgroup(&std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?)
}

/// Whether `pid` runs in another cgroup than the bench: in the bench, every
/// process starts in the bench's own cgroup unless pidwatch put it in one
/// of its incarnation cgroups.
pub(crate) fn in_other_cgroup(pid: i32) -> bool {
    static OWN: OnceLock<Option<String>> = OnceLock::new();
    let own = OWN.get_or_init(|| cgroup_of(std::process::id() as i32));
    match (own, cgroup_of(pid)) {
        (Some(own), Some(theirs)) => *own != theirs,
        _ => false,
    }
}

/// A cgroup the bench made under pidwatch's delegated base
/// (`<base>/bench-<bench PID>-<workers>`) and hands to pidwatch as
/// `PIDWATCH_CGROUP_BASE`, so that the incarnation cgroups of its runs are
/// told apart from anyone else's (tests of other checkouts use the same
/// base) and removed with it. When dropped, whatever still runs in it is
/// killed (`cgroup.kill`) and it is removed, its children first.
pub(crate) struct BenchCgroup(Cgroup);

impl BenchCgroup {
    /// Creates `<delegation base>/<name>`.
    ///
    /// Errors: mkdir(2) failed (the reason).
    pub(crate) fn create(delegation: &Delegation, name: &str) -> BenchResult<BenchCgroup> {
        delegation
            .create(name)
            .map(BenchCgroup)
            .map_err(|e| format!("creating the bench's cgroup: {e}"))
    }

    /// Its directory.
    pub(crate) fn path(&self) -> &std::path::Path {
        self.0.path()
    }

    /// Kills what is left in it, waits (up to 5 s) for it to empty, and
    /// removes it with every cgroup below it.
    ///
    /// Errors: it could not be emptied or removed.
    pub(crate) fn remove(&self) -> BenchResult<()> {
        if !self.0.exists() {
            return Ok(());
        }
        let shown = self.0.path().display();
        if self.0.populated().unwrap_or(true) {
            self.0
                .kill()
                .map_err(|e| format!("killing what is left in {shown}: {e}"))?;
        }
        self.0
            .wait_empty(Instant::now() + Duration::from_secs(5))
            .map_err(|e| format!("{shown}: {e}"))?;
        self.0.remove().map_err(|e| format!("removing {e}"))
    }
}

impl Drop for BenchCgroup {
    fn drop(&mut self) {
        if let Err(e) = self.remove() {
            eprintln!("pidwatch bench: {e}");
        }
    }
}

/// SIGTERMs `pid`, ignoring it being gone.
pub(crate) fn sigterm(pid: i32) {
    if pid > 1 {
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    }
}

/// SIGKILLs `pids`, ignoring those already gone.
pub(crate) fn sigkill_all(pids: &[i32]) {
    for pid in pids {
        if *pid > 1 {
            let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
        }
    }
}

/// The live descendants of this process. As a child subreaper it adopts
/// every orphan below it, so this is everything the bench started that
/// still runs, however it was detached (setsid, `setsid -f`, a killed
/// wrapper).
fn live_descendants() -> Vec<i32> {
    let me = std::process::id() as i32;
    let table = process_table();
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    for (pid, s) in &table {
        children.entry(s.ppid).or_default().push(*pid);
    }
    let live: HashSet<i32> = table
        .iter()
        .filter(|(_, s)| !matches!(s.state, 'Z' | 'X'))
        .map(|(pid, _)| *pid)
        .collect();
    let mut found = Vec::new();
    let mut todo = vec![me];
    while let Some(pid) = todo.pop() {
        for child in children.get(&pid).into_iter().flatten() {
            if live.contains(child) {
                found.push(*child);
            }
            todo.push(*child);
        }
    }
    found
}

/// SIGKILLs every live descendant, again and again (a dying monitor may
/// have just spawned a wrapper), and reaps them.
pub(crate) fn kill_descendants(reaper: &mut Reaper) {
    for _ in 0..KILL_ROUNDS {
        let left = live_descendants();
        if left.is_empty() {
            break;
        }
        sigkill_all(&left);
        std::thread::sleep(Duration::from_millis(10));
        reaper.reap();
    }
    reaper.reap();
}

/// Kills everything the bench started when dropped: the last line of
/// defence, pass, fail or panic.
pub(crate) struct Janitor;

impl Drop for Janitor {
    fn drop(&mut self) {
        kill_descendants(&mut Reaper::default());
    }
}

/// A long-running program the bench started (pidwatch, monit): SIGKILLed
/// when dropped unless it was stopped.
#[derive(Debug)]
pub(crate) struct Daemon {
    /// Its PID.
    pub(crate) pid: i32,
    name: &'static str,
    stopped: bool,
}

impl Daemon {
    /// Starts `cmd`, tied to the bench's life.
    ///
    /// Errors: the program cannot be started.
    pub(crate) fn spawn(
        name: &'static str,
        mut cmd: Command,
        reaper: &mut Reaper,
    ) -> BenchResult<Daemon> {
        die_with_parent(&mut cmd);
        let child = cmd.spawn().map_err(|e| format!("starting {name}: {e}"))?;
        let pid = child.id() as i32;
        // The Reaper, not the Child handle, waits for it.
        drop(child);
        reaper.watch(pid);
        Ok(Daemon {
            pid,
            name,
            stopped: false,
        })
    }

    /// `Err` when it has exited, with its status.
    pub(crate) fn ensure_running(&self, reaper: &mut Reaper) -> BenchResult<()> {
        match reaper.exit_status(self.pid) {
            None => Ok(()),
            Some(status) => Err(format!("{} exited early: {status:?}", self.name)),
        }
    }

    /// SIGTERM, then waits up to `limit` for it to exit; returns its status.
    ///
    /// Errors: it did not exit in time (it is then SIGKILLed).
    pub(crate) fn stop(mut self, limit: Duration, reaper: &mut Reaper) -> BenchResult<WaitStatus> {
        self.stopped = true;
        let _ = kill(Pid::from_raw(self.pid), Signal::SIGTERM);
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = reaper.exit_status(self.pid) {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                let _ = kill(Pid::from_raw(self.pid), Signal::SIGKILL);
                return Err(format!(
                    "{} did not exit within {limit:?} of SIGTERM",
                    self.name
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if !self.stopped {
            let _ = kill(Pid::from_raw(self.pid), Signal::SIGKILL);
        }
    }
}

/// An executable named `name` in PATH or the usual system folders.
pub(crate) fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/bin", "/usr/sbin", "/bin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Installs the Debian `package` with `apt-get install -y` (through
/// `sudo -n` when not root; after `apt-get update` when the lists are
/// missing) and returns `program` from it.
///
/// Errors: apt-get failed, or `program` is still missing.
pub(crate) fn apt_install(program: &str, package: &str) -> BenchResult<PathBuf> {
    println!("{program} is missing: apt-get install -y {package}");
    let root = nix::unistd::geteuid().is_root();
    let apt = |args: &[&str]| {
        let mut cmd = if root {
            Command::new("apt-get")
        } else {
            let mut sudo = Command::new("sudo");
            sudo.args(["-n", "apt-get"]);
            sudo
        };
        cmd.args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    // A fresh machine may have no package lists yet.
    let install = ["install", "-y", package];
    if !(apt(&install) || (apt(&["update"]) && apt(&install))) {
        return Err(format!(
            "{program} is missing and `apt-get install -y {package}` failed"
        ));
    }
    which(program).ok_or_else(|| format!("{program} is still missing after apt-get install"))
}

/// CPU time of `pid` so far: utime + stime (fields 14 and 15 of
/// `/proc/<pid>/stat`), in clock ticks.
pub(crate) fn cpu_ticks(pid: i32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_ascii_whitespace().collect();
    // fields[0] is field 3 (state): field n is at index n - 3.
    let utime: u64 = fields.get(14 - 3)?.parse().ok()?;
    let stime: u64 = fields.get(15 - 3)?.parse().ok()?;
    Some(utime + stime)
}

/// Time `pid` spent on a CPU so far (first field of `/proc/<pid>/schedstat`),
/// in nanoseconds: finer than [`cpu_ticks`].
pub(crate) fn cpu_nanos(pid: i32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/schedstat"))
        .ok()?
        .split_ascii_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`, nearly always 100).
pub(crate) fn ticks_per_second() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|t| *t > 0)
        .map_or(100, |t| t as u64)
}

/// A `kB` line of `/proc/<pid>/status` (`VmHWM`, `VmRSS`), in KiB.
pub(crate) fn status_kib(pid: i32, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))?
        .split_ascii_whitespace()
        .next()?
        .parse()
        .ok()
}

/// How many file descriptors `pid` holds open.
pub(crate) fn fd_count(pid: i32) -> Option<usize> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

/// The machine's CPU counters (first line of `/proc/stat`) and this
/// process's own CPU time, to tell how busy the machine was during a
/// measurement.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CpuSample {
    /// user + nice + system + irq + softirq, all cores, ticks.
    busy: u64,
    /// Time the hypervisor gave another guest, all cores, ticks.
    steal: u64,
    /// Every counter, all cores, ticks.
    total: u64,
    /// This process's utime + stime, ticks.
    own: u64,
    /// The watched process's utime + stime, ticks.
    watched: u64,
    /// Cores, to turn ticks of all cores into ticks of one.
    cores: u64,
}

/// How busy the machine was between two [`CpuSample`]s, percent of all its
/// cores.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Load {
    /// Busy, everything included.
    pub(crate) busy_percent: f64,
    /// Stolen by the hypervisor.
    pub(crate) steal_percent: f64,
    /// Used by the bench itself (its polling).
    pub(crate) bench_percent: f64,
    /// Used by the monitor under test, percent of one core.
    pub(crate) monitor_core_percent: f64,
}

impl CpuSample {
    /// Now, with the CPU time of `watched` (the monitor under test).
    pub(crate) fn now(watched: i32) -> CpuSample {
        let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let fields: Vec<u64> = text
            .lines()
            .next()
            .unwrap_or_default()
            .split_ascii_whitespace()
            .skip(1)
            .take(8)
            .map(|f| f.parse().unwrap_or(0))
            .collect();
        let at = |i: usize| fields.get(i).copied().unwrap_or(0);
        CpuSample {
            // user, nice, system, [idle, iowait,] irq, softirq
            busy: at(0) + at(1) + at(2) + at(5) + at(6),
            steal: at(7),
            total: fields.iter().sum(),
            own: cpu_ticks(std::process::id() as i32).unwrap_or(0),
            watched: cpu_ticks(watched).unwrap_or(0),
            cores: text
                .lines()
                .filter(|l| l.starts_with("cpu") && !l.starts_with("cpu "))
                .count()
                .max(1) as u64,
        }
    }

    /// The load from this sample to `later`.
    pub(crate) fn until(&self, later: &CpuSample) -> Load {
        let total = later.total.saturating_sub(self.total).max(1) as f64;
        let pct = |a: u64, b: u64| b.saturating_sub(a) as f64 / total * 100.0;
        Load {
            busy_percent: pct(self.busy, later.busy),
            steal_percent: pct(self.steal, later.steal),
            bench_percent: pct(self.own, later.own),
            monitor_core_percent: pct(self.watched, later.watched) * self.cores as f64,
        }
    }
}

/// The most of all cores others may keep busy for the machine to count as
/// quiet, percent.
pub(crate) const QUIET_BUSY_PERCENT: f64 = 15.0;

/// The longest wait for a quiet machine before a timed section, after which
/// it is measured anyway (its load is in the report).
pub(crate) const QUIET_LIMIT: Duration = Duration::from_secs(30);

/// How long [`wait_for_quiet`] samples the load at a time.
const QUIET_WINDOW: Duration = Duration::from_secs(1);

/// Waits, up to `limit`, for a second in which the machine is quiet (less
/// than [`QUIET_BUSY_PERCENT`] of all cores busy), so that a measurement
/// does not start in the middle of someone else's build on a shared
/// machine. Returns the time waited.
///
/// Errors: interrupted.
pub(crate) fn wait_for_quiet(limit: Duration, reaper: &mut Reaper) -> BenchResult<Duration> {
    let started = Instant::now();
    loop {
        let before = CpuSample::now(0);
        pause(QUIET_WINDOW, reaper)?;
        let load = before.until(&CpuSample::now(0));
        if load.busy_percent < QUIET_BUSY_PERCENT || started.elapsed() >= limit {
            let waited = started.elapsed().saturating_sub(QUIET_WINDOW);
            if waited >= QUIET_WINDOW {
                eprintln!(
                    "  waited {:.0} s for the machine to be quiet (now {:.0} % busy)",
                    waited.as_secs_f64(),
                    load.busy_percent
                );
            }
            return Ok(waited);
        }
    }
}

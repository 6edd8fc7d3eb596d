//! b: what containment itself costs on this machine, outside any monitor,
//! through pidwatch's own functions: spawning a child the way pidwatch
//! does, into the parent's cgroup or into a new one; stopping one leftover
//! `sleep` by its cgroup (whole, and call by call) or as a member found in
//! the process table; closing an inotify instance on `cgroup.events`; and
//! reading the process table, as the run without containment does. These
//! explain the steps of b's two runs.

use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use nix::sys::signal::Signal;
use pidwatch::act::child::prepare_child;
use pidwatch::act::spawn::stop_members;
use pidwatch::core::{Member, ProcessId, Proof};
use pidwatch::observe::cgroup::Cgroup;
use pidwatch::observe::members;
use pidwatch::observe::procfs::Procfs;

use crate::procs::Reaper;
use crate::stats;
use crate::{BenchResult, procs};

/// How long a probe's `stop_members` gives its `sleep` to exit on SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a `sleep` runs in its cgroup before it is stopped. A worker
/// has run for a while when it dies; right after a process joins, the
/// kernel would hold back the next `cgroup.events` notification (it sends
/// at most one per 10 ms), which no restart pays.
pub(crate) const RUN_BEFORE_STOP: Duration = Duration::from_millis(50);

/// One operation's times over the probe's rounds.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Cost {
    /// The median.
    pub(crate) median: Duration,
    /// The slowest.
    pub(crate) max: Duration,
}

impl Cost {
    fn of(samples: &[Duration]) -> Cost {
        Cost {
            median: stats::median(samples).unwrap_or_default(),
            max: samples.iter().copied().max().unwrap_or_default(),
        }
    }
}

/// What each operation cost over the probe's rounds.
#[derive(Debug, Clone)]
pub(crate) struct CgroupCosts {
    /// Rounds measured.
    pub(crate) runs: usize,
    /// `Command::spawn` of `sleep` (it returns once the child has exec'd)
    /// with `act::child::prepare_child(None)`: the child stays in the
    /// parent's cgroup.
    pub(crate) spawn_plain: Cost,
    /// The same with `prepare_child(Some(cgroup.procs))`: the child moves
    /// into a new cgroup before exec, as pidwatch's contained spawn does.
    pub(crate) spawn_joining: Cost,
    /// `spawn::stop_members` of one `sleep` by its cgroup: SIGTERM to
    /// `cgroup.procs`, `Cgroup::wait_empty` twice, `Cgroup::remove`.
    pub(crate) stop_cgroup: Cost,
    /// `spawn::stop_members` of a `sleep` given as a member, as the
    /// process-table scan finds it (pinned and signalled by pidfd, waited
    /// for on its pidfd).
    pub(crate) stop_member: Cost,
    /// The parts of `stop_cgroup`, called one by one in its order:
    /// `Cgroup::signal_members(SIGTERM)`.
    pub(crate) signal: Cost,
    /// `Cgroup::wait_empty` until the `sleep` has exited.
    pub(crate) wait_exit: Cost,
    /// `Cgroup::wait_empty` again, the cgroup already empty.
    pub(crate) wait_again: Cost,
    /// `Cgroup::remove` of the emptied cgroup.
    pub(crate) remove: Cost,
    /// close(2) of an inotify instance on `cgroup.events` right after it
    /// reported the cgroup empty, as the first `Cgroup::wait_empty` of a
    /// stop ends.
    pub(crate) inotify_close: Cost,
}

/// Measures [`CgroupCosts`] in fresh cgroups under `base` (a cgroup of the
/// bench's), `runs` rounds.
///
/// Errors: `/proc` unreadable, a cgroup cannot be made or written, `sleep`
/// cannot be started.
pub(crate) fn measure(base: &Path, runs: usize, reaper: &mut Reaper) -> BenchResult<CgroupCosts> {
    let procfs = Procfs::new().map_err(|e| format!("reading /proc: {e}"))?;
    let mut t: [Vec<Duration>; 9] = Default::default();
    let timed = |samples: &mut Vec<Duration>, f: &mut dyn FnMut()| {
        let t0 = Instant::now();
        f();
        samples.push(t0.elapsed());
    };
    procs::wait_for_quiet(procs::QUIET_LIMIT, reaper)?;
    for i in 0..runs {
        // stop_members by the cgroup, whole.
        let cg = make(base, &format!("probe-{i}"))?;
        let (took, pid) = spawn_into(Some(&cg))?;
        t[1].push(took);
        procs::pause(RUN_BEFORE_STOP, reaper)?;
        timed(&mut t[2], &mut || {
            stop_members(
                &procfs,
                &[],
                &[cg.path().display().to_string()],
                STOP_TIMEOUT,
            );
        });
        reap(pid, reaper);
        let _ = cg.remove();

        // The same, call by call.
        let cg = make(base, &format!("probe-parts-{i}"))?;
        let (_, pid) = spawn_into(Some(&cg))?;
        procs::pause(RUN_BEFORE_STOP, reaper)?;
        let deadline = Instant::now() + STOP_TIMEOUT;
        timed(&mut t[4], &mut || {
            let _ = cg.signal_members(Signal::SIGTERM);
        });
        timed(&mut t[5], &mut || {
            let _ = cg.wait_empty(deadline);
        });
        timed(&mut t[6], &mut || {
            let _ = cg.wait_empty(deadline);
        });
        timed(&mut t[7], &mut || {
            let _ = cg.remove();
        });
        reap(pid, reaper);

        // An inotify instance on cgroup.events that just reported the
        // cgroup empty, closed: how the first wait_empty of a stop ends.
        let cg = make(base, &format!("probe-inotify-{i}"))?;
        let (_, pid) = spawn_into(Some(&cg))?;
        procs::pause(RUN_BEFORE_STOP, reaper)?;
        let inotify = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK)
            .map_err(|e| format!("inotify_init1: {e}"))?;
        inotify
            .add_watch(&cg.events_path(), AddWatchFlags::IN_MODIFY)
            .map_err(|e| format!("inotify_add_watch: {e}"))?;
        procs::sigterm(pid);
        let mut fds = [PollFd::new(inotify.as_fd(), PollFlags::POLLIN)];
        let _ = poll(&mut fds, PollTimeout::from(1000u16));
        while matches!(inotify.read_events(), Ok(ev) if !ev.is_empty()) {}
        let mut inotify = Some(inotify);
        timed(&mut t[8], &mut || drop(inotify.take()));
        reap(pid, reaper);
        let _ = cg.remove();

        // Without a cgroup.
        let (took, pid) = spawn_into(None)?;
        t[0].push(took);
        procs::pause(RUN_BEFORE_STOP, reaper)?;
        let member = member_of(&procfs, pid)?;
        timed(&mut t[3], &mut || {
            stop_members(&procfs, std::slice::from_ref(&member), &[], STOP_TIMEOUT);
        });
        reap(pid, reaper);
    }
    Ok(CgroupCosts {
        runs,
        spawn_plain: Cost::of(&t[0]),
        spawn_joining: Cost::of(&t[1]),
        stop_cgroup: Cost::of(&t[2]),
        stop_member: Cost::of(&t[3]),
        signal: Cost::of(&t[4]),
        wait_exit: Cost::of(&t[5]),
        wait_again: Cost::of(&t[6]),
        remove: Cost::of(&t[7]),
        inotify_close: Cost::of(&t[8]),
    })
}

/// `observe::members::scan`, the read of every process's stat and environ
/// that the run without containment makes: the median of `runs` reads, and
/// the processes read.
pub(crate) fn scan_cost(runs: usize) -> Option<(Duration, usize)> {
    let procfs = Procfs::new().ok()?;
    let mut times = Vec::with_capacity(runs);
    let mut read = 0;
    for _ in 0..runs {
        let t0 = Instant::now();
        read = members::scan(&procfs, &mut Default::default()).ok()?.len();
        times.push(t0.elapsed());
    }
    Some((stats::median(&times)?, read))
}

fn make(base: &Path, name: &str) -> BenchResult<Cgroup> {
    let path = base.join(name);
    std::fs::create_dir(&path).map_err(|e| format!("creating {}: {e}", path.display()))?;
    Ok(Cgroup::at(path))
}

/// Starts `sleep` as pidwatch starts a wrapper (`prepare_child`), in cgroup
/// `join` if given; returns how long `spawn` took (until the child exec'd)
/// and its PID.
fn spawn_into(join: Option<&Cgroup>) -> BenchResult<(Duration, i32)> {
    let writer = join
        .map(Cgroup::procs_writer)
        .transpose()
        .map_err(|e| format!("opening cgroup.procs: {e}"))?;
    let fd = writer.as_ref().map(|w| w.as_raw_fd());
    let mut cmd = Command::new("sleep");
    cmd.arg("100000")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: prepare_child makes only async-signal-safe system calls and
    // allocates nothing, as pre_exec requires.
    unsafe {
        cmd.pre_exec(move || prepare_child(fd));
    }
    let t0 = Instant::now();
    let child = cmd.spawn().map_err(|e| format!("starting sleep: {e}"))?;
    let took = t0.elapsed();
    Ok((took, child.id() as i32))
}

/// `pid` as the process-table scan would give it.
fn member_of(procfs: &Procfs, pid: i32) -> BenchResult<Member> {
    let stat = procfs
        .stat(pid)
        .ok()
        .flatten()
        .ok_or_else(|| format!("sleep (PID {pid}) is gone"))?;
    Ok(Member {
        process: ProcessId {
            pid,
            start_ticks: stat.start_ticks,
        },
        comm: stat.comm,
        incarnation: None,
        proof: Proof::Session,
    })
}

/// Kills `pid` should it live on, and reaps it.
fn reap(pid: i32, reaper: &mut Reaper) {
    procs::sigkill_all(&[pid]);
    let _ = procs::wait_until(
        "a probe's sleep to exit",
        Duration::from_secs(5),
        reaper,
        || !procs::is_live(pid),
    );
    reaper.reap();
}

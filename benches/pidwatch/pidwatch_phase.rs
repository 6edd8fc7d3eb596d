//! b and d: `pidwatch run --auto-restart` over running workers: its
//! restart latency with and without containment (a cgroup per incarnation,
//! or a session and the process table), and its idle cost.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::fixture::{Orchestration, WORKER_COMMAND};
use crate::latency::{self, Breakdown, KillPlan, KillRun};
use crate::procs::{self, CpuSample, Daemon, Load, Reaper};
use crate::{Bench, BenchResult};

/// The sweep period pidwatch runs with, in seconds (its default).
pub(crate) const INTERVAL_SECONDS: &str = "30";

/// The restart options of every pidwatch the bench starts, `check` and
/// `run` alike (`run` adds `--interval`).
pub(crate) const RESTART_ARGS: [&str; 8] = [
    "--auto-restart",
    "--restart-delay",
    "0",
    "--max-restarts",
    "1000000",
    "--worker-command",
    WORKER_COMMAND,
    "-q",
];

/// The variable that chooses pidwatch's containment (`--containment`).
pub(crate) const CONTAINMENT_ENV: &str = "PIDWATCH_CONTAINMENT";

/// How long pidwatch may take to start and finish its first sweep.
const READY_LIMIT: Duration = Duration::from_secs(120);

/// What pidwatch's first sweep logs when every worker runs.
const READY_LINE: &str = "All workers healthy";

/// What pidwatch logs at start about its containment.
const PLACEMENT_PREFIX: &str = "containment: ";

/// Wait after the first sweep before measuring anything: it still opens a
/// pidfd per worker after logging [`READY_LINE`].
pub(crate) const SETTLE: Duration = Duration::from_secs(3);

/// How long pidwatch may take to exit after SIGTERM.
const STOP_LIMIT: Duration = Duration::from_secs(30);

/// How long `pidwatch check --auto-restart` may take to start every worker
/// again, per worker, when a run is primed.
const PRIME_LIMIT_PER_WORKER: Duration = Duration::from_millis(200);

/// Victims and pauses of pidwatch's kills (the same for both runs).
const SEED: u64 = 0x5EED_0001;

/// The shortest pause between a respawn and the next kill: pidwatch has
/// finished that restart by then (its follow-up pass included).
pub(crate) const PAUSE_LOW: Duration = Duration::from_millis(50);

/// The pause is uniform in `[PAUSE_LOW, PAUSE_LOW + PAUSE_SPAN)`.
pub(crate) const PAUSE_SPAN: Duration = Duration::from_millis(100);

/// How pidwatch contains the incarnations it starts in one run of b.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Containment {
    /// `PIDWATCH_CONTAINMENT=cgroup`: each incarnation in a cgroup of its
    /// own; a dead worker's leftovers are its cgroup's `cgroup.procs`.
    Cgroup,
    /// `PIDWATCH_CONTAINMENT=session`: each incarnation in a session of its
    /// own; a dead worker's leftovers are found by reading every process's
    /// stat and environ once for the restart.
    Session,
}

impl Containment {
    /// The value of [`CONTAINMENT_ENV`], and the name in the report.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Containment::Cgroup => "cgroup",
            Containment::Session => "session",
        }
    }
}

/// d: what the monitor costs while nothing happens.
#[derive(Debug, Clone)]
pub(crate) struct Footprint {
    /// Running workers watched.
    pub(crate) workers: usize,
    /// The measured window.
    pub(crate) window: Duration,
    /// utime + stime over the window, clock ticks.
    pub(crate) ticks: u64,
    /// utime + stime over the window, percent of one core.
    pub(crate) cpu_percent: f64,
    /// On-CPU time from `/proc/<pid>/schedstat` over the window (ns
    /// resolution), percent of one core.
    pub(crate) sched_percent: f64,
    /// VmHWM after the window, KiB.
    pub(crate) hwm_kib: u64,
    /// VmRSS after the window, KiB.
    pub(crate) rss_kib: u64,
    /// How busy the machine was during the window.
    pub(crate) load: Load,
}

/// What one pidwatch run over one worker set gave.
#[derive(Debug, Clone)]
pub(crate) struct PidwatchPhase {
    /// How it contained the incarnations it started.
    pub(crate) containment: Containment,
    /// What it logged at start about its containment.
    pub(crate) placement: String,
    /// How long `pidwatch check --auto-restart` took to start every worker
    /// before the run (see [`prime`]).
    pub(crate) primed_in: Duration,
    /// The timed kills.
    pub(crate) kills: KillRun,
    /// Where the time of each restart went.
    pub(crate) breakdown: Breakdown,
    /// Open descriptors before and after the kills.
    pub(crate) fds: (usize, usize),
    /// VmHWM after the kills, KiB.
    pub(crate) hwm_after_kills_kib: u64,
    /// `[ERROR]` lines of `monitor.log`, from the priming on.
    pub(crate) errors: Vec<String>,
    /// `Worker … restarted` lines of `monitor.log` (the run's, not the
    /// priming's).
    pub(crate) restarts_logged: usize,
    /// How it exited on SIGTERM.
    pub(crate) exit: String,
}

/// d: what the idle run gave.
#[derive(Debug, Clone)]
pub(crate) struct FootprintRun {
    /// The idle cost.
    pub(crate) footprint: Footprint,
    /// What pidwatch logged at start about its containment (`auto`).
    pub(crate) placement: String,
    /// `[ERROR]` lines of `monitor.log`.
    pub(crate) errors: Vec<String>,
    /// How it exited on SIGTERM.
    pub(crate) exit: String,
}

/// One pidwatch the bench starts: its containment (`None`: the default,
/// `auto`), the cgroup it makes incarnation cgroups in, and its own state
/// DB, so that no run inherits another's incarnations.
struct Setup<'a> {
    containment: Option<Containment>,
    cgroup_base: Option<&'a Path>,
    state_db: PathBuf,
}

impl Setup<'_> {
    /// `pidwatch <args> --state-db <db> <location>`, with the containment
    /// (and the cgroup base) in the environment.
    fn command(&self, bench: &Bench, orch: &Orchestration, args: &[&str]) -> Command {
        let db = self.state_db.display().to_string();
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--state-db", &db]);
        let mut cmd = orch.pidwatch(&bench.bin, &all);
        if let Some(c) = self.containment {
            cmd.env(CONTAINMENT_ENV, c.as_str());
        }
        if let Some(base) = self.cgroup_base {
            cmd.env(pidwatch::observe::cgroup::BASE_ENV, base);
        }
        cmd
    }
}

/// b: makes every worker an incarnation pidwatch started itself under
/// `containment` ([`prime`]), starts `pidwatch run` over them, then kills
/// workers and times each restart. `cgroup_base` is where the cgroup run
/// makes its incarnation cgroups (`PIDWATCH_CGROUP_BASE`).
///
/// Errors: the priming fails; pidwatch does not start, exits, or does not
/// stop on SIGTERM; the kill loop fails.
pub(crate) fn run(
    bench: &mut Bench,
    orch: &Orchestration,
    containment: Containment,
    cgroup_base: Option<&Path>,
) -> BenchResult<PidwatchPhase> {
    let setup = Setup {
        containment: Some(containment),
        cgroup_base,
        state_db: orch
            .root()
            .join(format!("pidwatch-{}.db", containment.as_str())),
    };
    let prime_from = log_len(orch);
    let primed_in = prime(bench, orch, &setup)?;
    let run_from = log_len(orch);
    let daemon = start(bench, orch, &setup, run_from)?;
    let pid = daemon.pid;
    let fds_before = procs::fd_count(pid).unwrap_or(0);
    let plan = KillPlan {
        label: format!(
            "pidwatch ({}), {} workers",
            containment.as_str(),
            orch.workers.len()
        ),
        kills: bench.plan.pidwatch_kills,
        until: None,
        warmup: bench.plan.warmup,
        pause_low: PAUSE_LOW,
        pause_span: PAUSE_SPAN,
        deadline: Duration::from_secs(10),
        seed: SEED,
    };
    let kills = latency::kill_loop(orch, &mut bench.reaper, &daemon, &plan)?;
    // Let the last restart's follow-up pass finish before counting.
    procs::pause(Duration::from_millis(200), &mut bench.reaper)?;
    let fds_after = procs::fd_count(pid).unwrap_or(0);
    let hwm_after_kills_kib = procs::status_kib(pid, "VmHWM").unwrap_or(0);
    let status = daemon.stop(STOP_LIMIT, &mut bench.reaper)?;
    let log = log_from(orch, run_from);
    Ok(PidwatchPhase {
        containment,
        placement: placement_line(&log),
        primed_in,
        breakdown: Breakdown::from_log(&log, &kills.kills),
        kills,
        fds: (fds_before, fds_after),
        hwm_after_kills_kib,
        errors: error_lines(&log_from(orch, prime_from)),
        restarts_logged: log
            .lines()
            .filter(|l| l.contains("] [SUCCESS] Worker "))
            .count(),
        exit: format!("{status:?}"),
    })
}

/// d: starts `pidwatch run` with the default containment (`auto`) over the
/// running workers of `orch` and measures its idle cost over the plan's
/// window; nothing is killed.
///
/// Errors: pidwatch does not start, exits, or does not stop on SIGTERM.
pub(crate) fn footprint(bench: &mut Bench, orch: &Orchestration) -> BenchResult<FootprintRun> {
    let setup = Setup {
        containment: None,
        cgroup_base: None,
        state_db: orch.root().join("pidwatch-auto.db"),
    };
    let from = log_len(orch);
    let daemon = start(bench, orch, &setup, from)?;
    let footprint = measure_idle(
        &mut bench.reaper,
        daemon.pid,
        orch.workers.len(),
        bench.plan.idle_window,
    )?;
    let status = daemon.stop(STOP_LIMIT, &mut bench.reaper)?;
    let log = log_from(orch, from);
    Ok(FootprintRun {
        footprint,
        placement: placement_line(&log),
        errors: error_lines(&log),
        exit: format!("{status:?}"),
    })
}

/// Makes every worker of `orch` an incarnation that pidwatch started with
/// `setup`'s containment, and returns how long that took: every wrapper and
/// worker is SIGKILLed (their PID files stay, naming dead processes), then
/// one `pidwatch check --auto-restart` starts them all again. Without this,
/// the workers a run finds were started by the bench (or by the run
/// before): pidwatch adopts them with no cgroup, and the first death of each
/// would need the process-table scan whatever the containment; with 1,000
/// workers and 200 kills, nearly every kill is a first one.
///
/// Errors: `pidwatch check` cannot run or fails (exit 2 or more), or some
/// PID file does not name a live process in time.
fn prime(bench: &mut Bench, orch: &Orchestration, setup: &Setup<'_>) -> BenchResult<Duration> {
    // Only the workers run now: no monitor is up between runs.
    procs::kill_descendants(&mut bench.reaper);
    orch.sweep_logs();
    let name = setup.containment.map_or("auto", Containment::as_str);
    let out_path = orch.root().join(format!("prime-{name}.out"));
    let out =
        File::create(&out_path).map_err(|e| format!("creating {}: {e}", out_path.display()))?;
    let err = out
        .try_clone()
        .map_err(|e| format!("{}: {e}", out_path.display()))?;
    let mut args = vec!["check"];
    args.extend(RESTART_ARGS);
    let mut cmd = setup.command(bench, orch, &args);
    cmd.stdout(Stdio::from(out)).stderr(Stdio::from(err));
    let t0 = Instant::now();
    let status = cmd
        .status()
        .map_err(|e| format!("running pidwatch check: {e}"))?;
    bench.reaper.reap();
    // 0: nothing was dead; 1: some worker was (and was restarted).
    if !matches!(status.code(), Some(0 | 1)) {
        let said = std::fs::read_to_string(&out_path).unwrap_or_default();
        return Err(format!(
            "pidwatch check --auto-restart ({name}) failed ({status}): {}",
            said.trim()
        ));
    }
    let limit = PRIME_LIMIT_PER_WORKER * orch.workers.len() as u32 + Duration::from_secs(10);
    procs::wait_until(
        "every worker started again by pidwatch check",
        limit,
        &mut bench.reaper,
        || orch.workers.iter().all(|w| orch.live_pid(w).is_some()),
    )?;
    let took = t0.elapsed();
    orch.sweep_logs();
    eprintln!(
        "  {} workers started again by pidwatch check ({name}) in {:.1} s",
        orch.workers.len(),
        took.as_secs_f64()
    );
    Ok(took)
}

/// `pidwatch run --auto-restart`, as the brief runs it, output to a file in
/// the temp dir; returns once it has logged its first sweep (after byte
/// `offset` of `monitor.log`) and settled.
///
/// Errors: it cannot start, exits, or does not finish its first sweep in
/// time.
fn start(
    bench: &mut Bench,
    orch: &Orchestration,
    setup: &Setup<'_>,
    offset: u64,
) -> BenchResult<Daemon> {
    let name = setup.containment.map_or("auto", Containment::as_str);
    let out_path = orch.root().join(format!("pidwatch-{name}.out"));
    let out =
        File::create(&out_path).map_err(|e| format!("creating {}: {e}", out_path.display()))?;
    let err = out
        .try_clone()
        .map_err(|e| format!("{}: {e}", out_path.display()))?;
    let mut args = vec!["run", "--interval", INTERVAL_SECONDS];
    args.extend(RESTART_ARGS);
    let mut cmd = setup.command(bench, orch, &args);
    cmd.stdout(Stdio::from(out)).stderr(Stdio::from(err));
    let daemon = Daemon::spawn("pidwatch", cmd, &mut bench.reaper)?;
    let pid = daemon.pid;
    procs::wait_until(
        "pidwatch's first sweep",
        READY_LIMIT,
        &mut bench.reaper,
        || !procs::is_live(pid) || log_from(orch, offset).contains(READY_LINE),
    )?;
    daemon.ensure_running(&mut bench.reaper)?;
    procs::pause(SETTLE, &mut bench.reaper)?;
    Ok(daemon)
}

/// The length of `monitor.log` now (0 when there is none).
fn log_len(orch: &Orchestration) -> u64 {
    std::fs::metadata(orch.monitor_log()).map_or(0, |m| m.len())
}

/// `monitor.log` from byte `offset` on: what one pidwatch wrote (the
/// runs of one worker count share the file).
fn log_from(orch: &Orchestration, offset: u64) -> String {
    let bytes = std::fs::read(orch.monitor_log()).unwrap_or_default();
    let start = usize::try_from(offset)
        .unwrap_or(usize::MAX)
        .min(bytes.len());
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}

/// The `[ERROR]` lines of a log.
fn error_lines(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains("] [ERROR] "))
        .map(str::to_string)
        .collect()
}

/// The message of the line pidwatch logs at start about its containment.
fn placement_line(log: &str) -> String {
    log.lines()
        .find_map(|l| {
            let at = l.find(PLACEMENT_PREFIX)?;
            Some(l[at..].to_string())
        })
        .unwrap_or_else(|| "(no containment line in monitor.log)".into())
}

/// CPU time and memory of `pid` (a monitor) over `window` of nothing
/// happening.
///
/// Errors: `pid` is gone, or interrupted.
pub(crate) fn measure_idle(
    reaper: &mut Reaper,
    pid: i32,
    workers: usize,
    window: Duration,
) -> BenchResult<Footprint> {
    let gone = || format!("the monitor (PID {pid}) is gone");
    let (ticks0, nanos0) = (procs::cpu_ticks(pid), procs::cpu_nanos(pid));
    let t0 = Instant::now();
    let machine = CpuSample::now(pid);
    procs::pause(window, reaper)?;
    let load = machine.until(&CpuSample::now(pid));
    let wall = t0.elapsed().as_secs_f64();
    let ticks = procs::cpu_ticks(pid).ok_or_else(gone)? - ticks0.ok_or_else(gone)?;
    let nanos = procs::cpu_nanos(pid)
        .unwrap_or(0)
        .saturating_sub(nanos0.unwrap_or(0));
    Ok(Footprint {
        workers,
        window: t0.elapsed(),
        ticks,
        cpu_percent: ticks as f64 / procs::ticks_per_second() as f64 / wall * 100.0,
        sched_percent: nanos as f64 / 1e9 / wall * 100.0,
        hwm_kib: procs::status_kib(pid, "VmHWM").ok_or_else(gone)?,
        rss_kib: procs::status_kib(pid, "VmRSS").ok_or_else(gone)?,
        load,
    })
}

//! b and d: `pidwatch run --auto-restart` over running workers: its idle
//! cost, then its restart latency.

use std::fs::File;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::fixture::{Orchestration, WORKER_COMMAND};
use crate::latency::{self, Breakdown, KillPlan, KillRun};
use crate::procs::{self, CpuSample, Daemon, Load, Reaper};
use crate::{Bench, BenchResult};

/// The sweep period pidwatch runs with, in seconds (its default).
pub(crate) const INTERVAL_SECONDS: &str = "30";

/// How long pidwatch may take to start and finish its first sweep.
const READY_LIMIT: Duration = Duration::from_secs(120);

/// What pidwatch's first sweep logs when every worker runs.
const READY_LINE: &str = "All workers healthy";

/// Wait after the first sweep before measuring anything: it still opens a
/// pidfd per worker after logging [`READY_LINE`].
pub(crate) const SETTLE: Duration = Duration::from_secs(3);

/// How long pidwatch may take to exit after SIGTERM.
const STOP_LIMIT: Duration = Duration::from_secs(30);

/// Victims and pauses of pidwatch's kills.
const SEED: u64 = 0x5EED_0001;

/// The shortest pause between a respawn and the next kill: pidwatch has
/// finished that restart by then (its follow-up pass included).
pub(crate) const PAUSE_LOW: Duration = Duration::from_millis(50);

/// The pause is uniform in `[PAUSE_LOW, PAUSE_LOW + PAUSE_SPAN)`.
pub(crate) const PAUSE_SPAN: Duration = Duration::from_millis(100);

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
    /// The timed kills.
    pub(crate) kills: KillRun,
    /// Where the time of each restart went.
    pub(crate) breakdown: Breakdown,
    /// Idle cost, when measured.
    pub(crate) footprint: Option<Footprint>,
    /// Open descriptors before and after the kills.
    pub(crate) fds: (usize, usize),
    /// VmHWM after the kills, KiB.
    pub(crate) hwm_after_kills_kib: u64,
    /// `[ERROR]` lines of `monitor.log`.
    pub(crate) errors: Vec<String>,
    /// `Worker … restarted` lines of `monitor.log`.
    pub(crate) restarts_logged: usize,
    /// How it exited on SIGTERM.
    pub(crate) exit: String,
}

/// Starts pidwatch over the running workers of `orch`, measures its idle
/// cost when `footprint` is set, then kills workers and times each restart.
///
/// Errors: pidwatch does not start, exits, or does not stop on SIGTERM;
/// the kill loop fails.
pub(crate) fn run(
    bench: &mut Bench,
    orch: &Orchestration,
    footprint: bool,
) -> BenchResult<PidwatchPhase> {
    let daemon = start(bench, orch)?;
    let pid = daemon.pid;
    procs::wait_until(
        "pidwatch's first sweep",
        READY_LIMIT,
        &mut bench.reaper,
        || {
            !procs::is_live(pid)
                || std::fs::read_to_string(orch.monitor_log()).is_ok_and(|t| t.contains(READY_LINE))
        },
    )?;
    daemon.ensure_running(&mut bench.reaper)?;
    procs::pause(SETTLE, &mut bench.reaper)?;
    let footprint = if footprint {
        Some(measure_idle(
            &mut bench.reaper,
            pid,
            orch.workers.len(),
            bench.plan.idle_window,
        )?)
    } else {
        None
    };
    let fds_before = procs::fd_count(pid).unwrap_or(0);
    let plan = KillPlan {
        label: format!("pidwatch, {} workers", orch.workers.len()),
        kills: bench.plan.pidwatch_kills,
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
    let log = std::fs::read_to_string(orch.monitor_log()).unwrap_or_default();
    Ok(PidwatchPhase {
        breakdown: Breakdown::from_log(&log, &kills.kills),
        kills,
        footprint,
        fds: (fds_before, fds_after),
        hwm_after_kills_kib,
        errors: log
            .lines()
            .filter(|l| l.contains("] [ERROR] "))
            .map(str::to_string)
            .collect(),
        restarts_logged: log
            .lines()
            .filter(|l| l.contains("] [SUCCESS] Worker "))
            .count(),
        exit: format!("{status:?}"),
    })
}

/// `pidwatch run --auto-restart`, as the brief runs it, output to a file
/// in the temp dir.
fn start(bench: &mut Bench, orch: &Orchestration) -> BenchResult<Daemon> {
    let out_path = orch.root().join("pidwatch.out");
    let out =
        File::create(&out_path).map_err(|e| format!("creating {}: {e}", out_path.display()))?;
    let err = out
        .try_clone()
        .map_err(|e| format!("{}: {e}", out_path.display()))?;
    let mut cmd = orch.pidwatch(
        &bench.bin,
        &[
            "run",
            "--auto-restart",
            "--interval",
            INTERVAL_SECONDS,
            "--restart-delay",
            "0",
            "--max-restarts",
            "1000000",
            "--worker-command",
            WORKER_COMMAND,
            "-q",
        ],
    );
    cmd.stdout(Stdio::from(out)).stderr(Stdio::from(err));
    Daemon::spawn("pidwatch", cmd, &mut bench.reaper)
}

/// CPU time and memory of `pid` over `window` of nothing happening.
fn measure_idle(
    reaper: &mut Reaper,
    pid: i32,
    workers: usize,
    window: Duration,
) -> BenchResult<Footprint> {
    let gone = || format!("pidwatch (PID {pid}) is gone");
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

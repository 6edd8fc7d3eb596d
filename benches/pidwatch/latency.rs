//! b and c: the time from a SIGKILL to a worker's wrapper to a new PID
//! file naming a live process, whoever the monitor; and the wrapper's own
//! start time, the floor under every restart.

use std::time::{Duration, Instant};

use chrono::NaiveDateTime;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::fixture::Orchestration;
use crate::procs::{self, CpuSample, Daemon, Load, Reaper};
use crate::stats::{self, Rng};
use crate::{Bench, BenchResult};

/// How often the PID file is polled after a kill.
pub(crate) const POLL: Duration = Duration::from_micros(200);

/// How many respawns may time out before a run is called failed.
const MAX_TIMEOUTS: usize = 5;

/// How long a victim may take to be live again before it is skipped.
const VICTIM_LIMIT: Duration = Duration::from_secs(5);

/// How a run of kills goes.
#[derive(Debug, Clone)]
pub(crate) struct KillPlan {
    /// Which monitor, for progress lines.
    pub(crate) label: String,
    /// Timed kills (the most, with `until`).
    pub(crate) kills: usize,
    /// No timed kill starts once this long has passed since the first
    /// (f kills for a time, not a count); `None`: every one of `kills`.
    pub(crate) until: Option<Duration>,
    /// Untimed kills first (they also prove the monitor is up).
    pub(crate) warmup: usize,
    /// The shortest pause between a respawn and the next kill.
    pub(crate) pause_low: Duration,
    /// The pause is uniform in `[pause_low, pause_low + pause_span)`.
    pub(crate) pause_span: Duration,
    /// How long one respawn may take before it counts as timed out.
    pub(crate) deadline: Duration,
    /// Seed of the victims and pauses.
    pub(crate) seed: u64,
}

/// One timed kill.
#[derive(Debug, Clone)]
pub(crate) struct Kill {
    /// The worker killed.
    pub(crate) worker: String,
    /// Wall time just before the SIGKILL, local time (as in `monitor.log`).
    pub(crate) at: NaiveDateTime,
    /// Kill to new PID file naming a live process; `None` when timed out.
    pub(crate) latency: Option<Duration>,
    /// Live processes left in the killed wrapper's session at respawn.
    pub(crate) survivors: usize,
    /// The killed wrapper ran in a cgroup other than the bench's: one
    /// pidwatch made for its incarnation.
    pub(crate) contained: bool,
}

/// The timed kills of one run.
#[derive(Debug, Clone, Default)]
pub(crate) struct KillRun {
    /// Every timed kill, in order.
    pub(crate) kills: Vec<Kill>,
    /// How busy the machine was during the timed kills.
    pub(crate) load: Load,
}

impl KillRun {
    /// The latencies of the kills that respawned.
    pub(crate) fn latencies(&self) -> Vec<Duration> {
        self.kills.iter().filter_map(|k| k.latency).collect()
    }

    /// Kills not followed by a respawn within the deadline.
    pub(crate) fn timeouts(&self) -> usize {
        self.kills.iter().filter(|k| k.latency.is_none()).count()
    }

    /// Kills after which the old session still had live members.
    pub(crate) fn with_survivors(&self) -> usize {
        self.kills.iter().filter(|k| k.survivors > 0).count()
    }

    /// Kills of a wrapper that ran in a cgroup of its incarnation.
    pub(crate) fn contained(&self) -> usize {
        self.kills.iter().filter(|k| k.contained).count()
    }
}

/// Kills random workers one at a time with SIGKILL and times each respawn,
/// while `monitor` runs. Before each kill the workers' logs are swept (see
/// [`Orchestration::sweep_logs`]); after each respawn the old session's
/// survivors are counted, then SIGKILLed (monit leaves them; pidwatch should
/// not).
///
/// Errors: the monitor exited, too many respawns timed out, no victim was
/// live, or interrupted.
pub(crate) fn kill_loop(
    orch: &Orchestration,
    reaper: &mut Reaper,
    monitor: &Daemon,
    plan: &KillPlan,
) -> BenchResult<KillRun> {
    let mut rng = Rng::new(plan.seed);
    let mut run = KillRun::default();
    let started = Instant::now();
    procs::wait_for_quiet(procs::QUIET_LIMIT, reaper)?;
    let mut sample = CpuSample::now(monitor.pid);
    let mut timed = Instant::now();
    for i in 0..plan.warmup + plan.kills {
        if i == plan.warmup {
            sample = CpuSample::now(monitor.pid);
            timed = Instant::now();
        }
        if i > plan.warmup && plan.until.is_some_and(|d| timed.elapsed() >= d) {
            break;
        }
        let (worker, old) = pick_victim(orch, reaper, &mut rng)?;
        let contained = procs::in_other_cgroup(old);
        orch.sweep_logs();
        let at = chrono::Local::now().naive_local();
        let t0 = Instant::now();
        let _ = kill(Pid::from_raw(old), Signal::SIGKILL);
        let latency = wait_respawn(orch, reaper, &worker, old, t0, plan.deadline)?;
        let survivors = procs::session_survivors(old);
        procs::sigkill_all(&survivors);
        monitor.ensure_running(reaper)?;
        if i >= plan.warmup {
            run.kills.push(Kill {
                worker,
                at,
                latency,
                survivors: survivors.len(),
                contained,
            });
            progress(plan, &run, started);
        }
        if run.timeouts() > MAX_TIMEOUTS {
            return Err(format!(
                "{}: {} respawns timed out after {:?}",
                plan.label,
                run.timeouts(),
                plan.deadline
            ));
        }
        procs::pause(rng.duration(plan.pause_low, plan.pause_span), reaper)?;
    }
    run.load = sample.until(&CpuSample::now(monitor.pid));
    Ok(run)
}

/// A random worker whose PID file names a live process, and that PID.
fn pick_victim(
    orch: &Orchestration,
    reaper: &mut Reaper,
    rng: &mut Rng,
) -> BenchResult<(String, i32)> {
    for _ in 0..orch.workers.len().max(10) {
        let worker = &orch.workers[rng.below(orch.workers.len())];
        if let Some(pid) = orch.live_pid(worker) {
            return Ok((worker.clone(), pid));
        }
    }
    // Every pick was down (a respawn in flight, or timed out): wait a little.
    let worker = orch.workers[rng.below(orch.workers.len())].clone();
    procs::wait_until(
        &format!("{worker} to be live"),
        VICTIM_LIMIT,
        reaper,
        || orch.live_pid(&worker).is_some(),
    )?;
    let pid = orch
        .live_pid(&worker)
        .ok_or_else(|| format!("{worker} is not live"))?;
    Ok((worker, pid))
}

/// Polls `worker`'s PID file every [`POLL`] until it names a live process
/// other than `old`; returns the time since `t0`, or `None` after `deadline`.
/// Orphans are reaped in between: an unreaped wrapper would stay a zombie,
/// which `kill(pid, 0)`-based monitors take for alive.
///
/// Errors: interrupted.
fn wait_respawn(
    orch: &Orchestration,
    reaper: &mut Reaper,
    worker: &str,
    old: i32,
    t0: Instant,
    deadline: Duration,
) -> BenchResult<Option<Duration>> {
    loop {
        if let Some(pid) = orch.read_pid(worker)
            && pid != old
            && procs::is_live(pid)
        {
            return Ok(Some(t0.elapsed()));
        }
        if t0.elapsed() >= deadline {
            return Ok(None);
        }
        reaper.reap();
        procs::check_interrupt()?;
        std::thread::sleep(POLL);
    }
}

/// Every 50 kills, a line on stderr.
fn progress(plan: &KillPlan, run: &KillRun, started: Instant) {
    let done = run.kills.len();
    if done.is_multiple_of(50) || done == plan.kills {
        let p50 = stats::median(&run.latencies()).map_or("-".into(), stats::show);
        eprintln!(
            "  {}: {done}/{} kills, median so far {p50}, {} timed out, {:.0} s",
            plan.label,
            plan.kills,
            run.timeouts(),
            started.elapsed().as_secs_f64()
        );
    }
}

/// The wrapper's start time (spawn to PID file naming it) with a given
/// number of other logs in `logs/`.
#[derive(Debug, Clone)]
pub(crate) struct FloorRow {
    /// Worker logs in `logs/` besides the wrapper's own.
    pub(crate) logs: usize,
    /// Timed starts.
    pub(crate) runs: usize,
    /// Median start time.
    pub(crate) median: Duration,
    /// Fastest start.
    pub(crate) min: Duration,
}

/// Times the wrapper alone, started as pidwatch starts it, once per
/// `(logs, runs)` of `bench.plan.floor`.
///
/// Errors: a fixture cannot be built, or a wrapper writes no PID file.
pub(crate) fn wrapper_floor(bench: &mut Bench) -> BenchResult<Vec<FloorRow>> {
    let mut rows = Vec::new();
    for &(logs, runs) in &bench.plan.floor {
        let orch = Orchestration::build(1)?;
        orch.create_work_dirs()?;
        orch.fill_logs(logs)?;
        let worker = orch.workers[0].clone();
        procs::wait_for_quiet(procs::QUIET_LIMIT, &mut bench.reaper)?;
        let mut times = Vec::with_capacity(runs);
        for _ in 0..runs {
            let t0 = Instant::now();
            let pid = orch.spawn_wrapper(&worker)?;
            let respawned = wait_respawn(
                &orch,
                &mut bench.reaper,
                &worker,
                0,
                t0,
                Duration::from_secs(60),
            )?;
            times.push(respawned.ok_or("the wrapper wrote no PID file within 60 s")?);
            stop_wrapper(&orch, &mut bench.reaper, &worker, pid)?;
        }
        rows.push(FloorRow {
            logs,
            runs,
            median: stats::median(&times).unwrap_or_default(),
            min: times.iter().copied().min().unwrap_or_default(),
        });
        procs::kill_descendants(&mut bench.reaper);
    }
    Ok(rows)
}

/// SIGKILLs a wrapper, then (once it cannot fork any more) its session, and
/// clears its PID file and log.
fn stop_wrapper(
    orch: &Orchestration,
    reaper: &mut Reaper,
    worker: &str,
    pid: i32,
) -> BenchResult<()> {
    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    procs::wait_until(
        "the wrapper to die",
        Duration::from_secs(10),
        reaper,
        || !procs::is_live(pid),
    )?;
    procs::sigkill_all(&procs::session_survivors(pid));
    reaper.reap();
    let _ = std::fs::remove_file(orch.pid_file(worker));
    orch.sweep_logs();
    Ok(())
}

/// Where pidwatch's time went in one restart, from the timestamps of its
/// `monitor.log` (local time, microseconds) against the bench's own.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Steps {
    /// Kill to `Restarting worker W (attempt …)`: noticing the death
    /// (pidfd), a scoped observe (which lists the dead incarnation's
    /// leftovers: its cgroup's `cgroup.procs`, or without a cgroup one read
    /// of every process's stat and environ) and decide.
    pub(crate) detect: Duration,
    /// `Restarting worker …` to `Stopped survivors of worker W: SIGTERM to
    /// …`: counting the attempt in the state DB, SIGTERM to the leftovers
    /// (with a cgroup: to its `cgroup.procs`), the wait for them to exit
    /// (with a cgroup: for it to empty) and, with a cgroup, its removal.
    pub(crate) survivors: Duration,
    /// `Stopped survivors …` to the new PID file seen by the bench: the
    /// observe again, the work dir, recording the incarnation, the new
    /// cgroup (when contained), fork and exec of the wrapper, and the
    /// wrapper's own start.
    pub(crate) spawn: Duration,
    /// Kill to `Worker W restarted (PID: …)`: pidwatch's own view of the
    /// whole restart, once its poll of the PID file found the new wrapper
    /// (it may come a little after the bench's poll did).
    pub(crate) logged: Option<Duration>,
}

/// The [`Steps`] of each kill, in the order of the kills (`None` when the
/// log lines were not found).
#[derive(Debug, Clone, Default)]
pub(crate) struct Breakdown(pub(crate) Vec<Option<Steps>>);

impl Breakdown {
    /// Matches each kill with the lines pidwatch logged for it.
    pub(crate) fn from_log(log: &str, kills: &[Kill]) -> Breakdown {
        let lines: Vec<(NaiveDateTime, &str)> = log.lines().filter_map(parse_log_line).collect();
        Breakdown(kills.iter().map(|k| steps_of(&lines, k)).collect())
    }

    /// The median of one step over every kill.
    pub(crate) fn median(&self, step: fn(&Steps) -> Duration) -> Option<Duration> {
        self.quantile(step, 0.5)
    }

    /// A quantile of one step over every kill (see [`stats::quantile`]).
    pub(crate) fn quantile(&self, step: fn(&Steps) -> Duration, q: f64) -> Option<Duration> {
        let all: Vec<Duration> = self.0.iter().flatten().map(step).collect();
        stats::quantile(&all, q)
    }

    /// The median time from the kill to `Worker … restarted`.
    pub(crate) fn median_logged(&self) -> Option<Duration> {
        let all: Vec<Duration> = self.0.iter().flatten().filter_map(|s| s.logged).collect();
        stats::median(&all)
    }

    /// How many kills were matched with their log lines.
    pub(crate) fn matched(&self) -> usize {
        self.0.iter().flatten().count()
    }
}

/// How long after the bench saw the new PID file pidwatch's `Worker …
/// restarted` line may come and still be this kill's.
const LOGGED_SLACK: Duration = Duration::from_secs(1);

fn steps_of(lines: &[(NaiveDateTime, &str)], k: &Kill) -> Option<Steps> {
    let done = k.at + k.latency?;
    let restarting = format!("Restarting worker {} (", k.worker);
    let stopped = format!("Stopped survivors of worker {}: ", k.worker);
    let restarted = format!("Worker {} restarted (PID: ", k.worker);
    let find = |after: NaiveDateTime, until: NaiveDateTime, prefix: &str| {
        lines
            .iter()
            .find(|(at, msg)| *at >= after && *at <= until && msg.starts_with(prefix))
            .map(|(at, _)| *at)
    };
    let t1 = find(k.at, done, &restarting)?;
    // No survivors, no stop step: it takes no time.
    let t2 = find(t1, done, &stopped).unwrap_or(t1);
    let t3 = find(t2, done + LOGGED_SLACK, &restarted);
    let span = |a: NaiveDateTime, b: NaiveDateTime| (b - a).to_std().unwrap_or_default();
    Some(Steps {
        detect: span(k.at, t1),
        survivors: span(t1, t2),
        spawn: span(t2, done),
        logged: t3.map(|t| span(k.at, t)),
    })
}

/// The kills as CSV, one line each, times in µs; with pidwatch's steps when
/// known.
pub(crate) fn samples_csv(run: &KillRun, steps: Option<&Breakdown>) -> String {
    let mut out = String::from(
        "kill,worker,latency_us,survivors,contained,detect_us,stop_survivors_us,spawn_us,logged_us\n",
    );
    let us = |d: Option<Duration>| d.map_or(String::new(), |d| d.as_micros().to_string());
    for (i, k) in run.kills.iter().enumerate() {
        let st = steps.and_then(|b| b.0.get(i).copied().flatten());
        out.push_str(&format!(
            "{i},{},{},{},{},{},{},{},{}\n",
            k.worker,
            us(k.latency),
            k.survivors,
            u8::from(k.contained),
            us(st.map(|s| s.detect)),
            us(st.map(|s| s.survivors)),
            us(st.map(|s| s.spawn)),
            us(st.and_then(|s| s.logged)),
        ));
    }
    out
}

/// `[2026-01-13T10:30:30.567890] [LEVEL] message` → time and message.
fn parse_log_line(line: &str) -> Option<(NaiveDateTime, &str)> {
    let (stamp, rest) = line.strip_prefix('[')?.split_once("] ")?;
    let at = NaiveDateTime::parse_from_str(stamp, "%Y-%m-%dT%H:%M:%S%.f").ok()?;
    let (_, message) = rest.strip_prefix('[')?.split_once("] ")?;
    Some((at, message))
}

//! e. pidwatch's config-file mode side by side with supervisord, on the
//! same plain workers (`sleep 100000`, 1,000 of them; fewer in the quick
//! run): each supervisor alone, one after the other, each in a fresh temp
//! dir, each starting every worker itself and restarting it when it dies.
//!
//! Both are watched the same way, from outside: a worker runs when it is a
//! child of the supervisor whose `/proc/<pid>/cmdline` is exactly `sleep
//! 100000` (a child that has not exec'd yet still shows its parent's).
//! The supervisor's children are one read of
//! `/proc/<pid>/task/<tid>/children` per thread (the kernel lists a child
//! under the thread that forked it); each new child's `cmdline` is read
//! until it has exec'd, then never again.
//!
//! - **start → all running**: from spawning the supervisor until every
//!   worker runs;
//! - **kill → new one running**: SIGKILL a random running worker, time
//!   until a child appears that runs `sleep 100000` and was not running
//!   before;
//! - **the supervisor's own cost**: VmRSS and VmHWM, and utime+stime over
//!   an idle window, with every worker running.
//!
//! supervisord logs each worker's output to a file of its own
//! (`stdout_logfile=<dir>/%(program_name)s_%(process_num)04d.log`,
//! `redirect_stderr=true`), as pidwatch does.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use pidwatch::observe::cgroup::{BASE_ENV, Delegation};

use crate::latency::{Kill, KillPlan, KillRun, POLL};
use crate::pidwatch_phase::{self, Footprint};
use crate::procs::{self, BenchCgroup, CpuSample, Daemon, Reaper};
use crate::stats::{self, Rng};
use crate::{Bench, BenchResult};

/// What every worker runs, under both supervisors.
pub(crate) const WORKER_ARGV: [&str; 2] = ["sleep", "100000"];

/// [`WORKER_ARGV`] as `/proc/<pid>/cmdline` shows it.
const WORKER_CMDLINE: &[u8] = b"sleep\x00100000\x00";

/// The name of the program (supervisord) and of the worker (pidwatch).
const PROGRAM: &str = "sleep";

/// How long a supervisor may take to have every worker running.
pub(crate) const START_LIMIT: Duration = Duration::from_secs(180);

/// How often the children are polled while the supervisor starts them.
const START_POLL: Duration = Duration::from_millis(1);

/// Wait after every worker runs before the idle window: the last starts'
/// bookkeeping (supervisord's `success:` lines a second later) is done.
pub(crate) const SETTLE: Duration = Duration::from_secs(3);

/// How long a supervisor may take to exit after SIGTERM (supervisord stops
/// every worker first, one by one: 13 s for 1,000 on the dev machine).
pub(crate) const STOP_LIMIT: Duration = Duration::from_secs(180);

/// How long one respawn may take before it counts as timed out.
pub(crate) const DEADLINE: Duration = Duration::from_secs(10);

/// How many respawns may time out before a run is called failed.
const MAX_TIMEOUTS: usize = 5;

/// How long every worker may take to be running again before a kill.
const VICTIM_LIMIT: Duration = Duration::from_secs(10);

/// Victims and pauses (the same for both).
const SEED: u64 = 0x5EED_0005;

/// The shortest pause between a respawn and the next kill.
pub(crate) const PAUSE_LOW: Duration = Duration::from_millis(50);

/// The pause is uniform in `[PAUSE_LOW, PAUSE_LOW + PAUSE_SPAN)`: a random
/// phase of supervisord's one-second main loop, as a real death has.
pub(crate) const PAUSE_SPAN: Duration = Duration::from_secs(1);

/// Which supervisor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Supervisor {
    /// `supervisord -c <conf> -n`.
    Supervisord,
    /// `pidwatch --config <toml> run`.
    Pidwatch,
}

impl Supervisor {
    /// Its name in the report and in file names.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Supervisor::Supervisord => "supervisord",
            Supervisor::Pidwatch => "pidwatch",
        }
    }
}

/// What one supervisor's run gave.
#[derive(Debug, Clone)]
pub(crate) struct SupervisorRun {
    /// Which supervisor.
    pub(crate) supervisor: Supervisor,
    /// From spawning it to every worker running.
    pub(crate) all_running: Duration,
    /// Its cost over the idle window, every worker running.
    pub(crate) idle: Footprint,
    /// The timed kills.
    pub(crate) kills: KillRun,
    /// VmHWM after the kills, KiB.
    pub(crate) hwm_after_kills_kib: u64,
    /// Its threads, once every worker ran.
    pub(crate) threads: u64,
    /// What its own files say (restarts logged, PID files), for the
    /// sanity checks.
    pub(crate) note: String,
    /// How it exited on SIGTERM.
    pub(crate) exit: String,
}

/// Section e: both supervisors over the same number of workers.
#[derive(Debug)]
pub(crate) struct Comparison {
    /// Workers each supervisor ran.
    pub(crate) workers: usize,
    /// supervisord's run.
    pub(crate) supervisord: BenchResult<SupervisorRun>,
    /// pidwatch's run.
    pub(crate) pidwatch: BenchResult<SupervisorRun>,
}

impl Comparison {
    /// Both runs, supervisord's first.
    pub(crate) fn runs(&self) -> [&BenchResult<SupervisorRun>; 2] {
        [&self.supervisord, &self.pidwatch]
    }
}

/// The supervisord binary: the Debian package when it is missing, else
/// `pip install supervisor`.
///
/// Errors: it is missing and neither installed it.
pub(crate) fn ensure_installed() -> BenchResult<PathBuf> {
    if let Some(path) = procs::which("supervisord") {
        return Ok(path);
    }
    procs::apt_install("supervisord", "supervisor")
        .or_else(|apt| pip_install().map_err(|pip| format!("{apt}; {pip}")))
}

fn pip_install() -> BenchResult<PathBuf> {
    println!("supervisord is missing: python3 -m pip install supervisor");
    let pip = |extra: &[&str]| {
        Command::new("python3")
            .args(["-m", "pip", "install", "--quiet"])
            .args(extra)
            .arg("supervisor")
            .stdin(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    // Debian's Python refuses pip outside a virtualenv (PEP 668) unless told.
    if !(pip(&[]) || pip(&["--break-system-packages"])) {
        return Err("`python3 -m pip install supervisor` failed".into());
    }
    procs::which("supervisord")
        .ok_or_else(|| "supervisord is still missing after pip install".into())
}

/// `supervisord --version`.
pub(crate) fn version(supervisord: &Path) -> String {
    format!(
        "supervisord {}",
        crate::machine::first_line(supervisord, &["--version"])
    )
}

/// Section e: supervisord, then pidwatch, each over `plan.supervisor_workers`
/// workers; everything they started is killed after each.
pub(crate) fn run(bench: &mut Bench) -> Comparison {
    let workers = bench.plan.supervisor_workers;
    eprintln!("{workers} workers: supervisord");
    let supervisord = match bench.supervisord.clone() {
        Some(path) => run_supervisord(bench, &path),
        None => Err("supervisord is missing and could not be installed \
                     (apt-get install -y supervisor, pip install supervisor)"
            .into()),
    };
    procs::kill_descendants(&mut bench.reaper);
    let pidwatch = if procs::interrupted() {
        Err("interrupted by a signal".into())
    } else {
        eprintln!("{workers} workers: pidwatch --config");
        run_pidwatch(bench)
    };
    procs::kill_descendants(&mut bench.reaper);
    Comparison {
        workers,
        supervisord,
        pidwatch,
    }
}

/// A fresh temp dir for one supervisor.
pub(crate) fn temp_dir(supervisor: Supervisor) -> BenchResult<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix(&format!("pidwatch-bench-{}-", supervisor.as_str()))
        .tempdir_in("/tmp")
        .map_err(|e| format!("making a temp dir: {e}"))
}

/// A path for a config file: no character that needs quoting.
fn plain(p: &Path) -> BenchResult<String> {
    let s = p.display().to_string();
    if s.contains(|c: char| c.is_whitespace() || "\"'\\%;#".contains(c)) {
        Err(format!(
            "path {s} has a character a config file cannot take"
        ))
    } else {
        Ok(s)
    }
}

/// `supervisord.conf` in `dir`: the daemon's files there, an RPC socket so
/// that `supervisorctl -c <conf> status` works, and one `[program:sleep]`
/// of `workers` processes, started at once and restarted at once, each
/// logging stdout and stderr to a file of its own.
pub(crate) fn supervisord_conf(dir: &Path, workers: usize) -> BenchResult<String> {
    let d = plain(dir)?;
    let command = WORKER_ARGV.join(" ");
    Ok(format!(
        "[supervisord]\n\
         nodaemon=true\n\
         logfile={d}/supervisord.log\n\
         pidfile={d}/supervisord.pid\n\
         childlogdir={d}/logs\n\
         minfds={minfds}\n\
         user=root\n\
         \n\
         [unix_http_server]\n\
         file={d}/supervisor.sock\n\
         \n\
         [rpcinterface:supervisor]\n\
         supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n\
         \n\
         [supervisorctl]\n\
         serverurl=unix://{d}/supervisor.sock\n\
         \n\
         [program:{PROGRAM}]\n\
         command={command}\n\
         process_name=%(program_name)s_%(process_num)04d\n\
         numprocs={workers}\n\
         autostart=true\n\
         autorestart=true\n\
         startsecs=0\n\
         startretries=1000000\n\
         redirect_stderr=true\n\
         stdout_logfile={d}/logs/%(program_name)s_%(process_num)04d.log\n\
         stopasgroup=true\n\
         killasgroup=true\n",
        // Three pipes and a log file per worker, and some to spare.
        minfds = 1024 + 4 * workers,
    ))
}

/// `pidwatch.toml` in `dir`: `workers` instances of one worker, restarted
/// at once, every time.
pub(crate) fn pidwatch_toml(dir: &Path, workers: usize) -> BenchResult<String> {
    let state = plain(&dir.join("state"))?;
    let argv: Vec<String> = WORKER_ARGV.iter().map(|a| format!("\"{a}\"")).collect();
    Ok(format!(
        "state_dir = \"{state}\"\n\
         \n\
         [worker.{PROGRAM}]\n\
         command = [{}]\n\
         instances = {workers}\n\
         max_restarts = 1000000\n\
         restart_delay = 0\n\
         max_restart_delay = 0\n",
        argv.join(", ")
    ))
}

fn write(path: &Path, text: &str) -> BenchResult<()> {
    std::fs::write(path, text).map_err(|e| format!("writing {}: {e}", path.display()))
}

fn run_supervisord(bench: &mut Bench, supervisord: &Path) -> BenchResult<SupervisorRun> {
    let sup = Supervisor::Supervisord;
    let tmp = temp_dir(sup)?;
    let dir = tmp.path();
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).map_err(|e| format!("creating {}: {e}", logs.display()))?;
    let conf = dir.join("supervisord.conf");
    write(
        &conf,
        &supervisord_conf(dir, bench.plan.supervisor_workers)?,
    )?;
    let mut cmd = Command::new(supervisord);
    cmd.arg("-c").arg(&conf).arg("-n");
    let note = |_: &Children| {
        let log = std::fs::read_to_string(dir.join("supervisord.log")).unwrap_or_default();
        format!(
            "`supervisord.log`: {} `spawned:`, {} `exited:` lines",
            log.matches("INFO spawned: ").count(),
            log.matches(" exited: ").count()
        )
    };
    measure(bench, sup, cmd, dir, note)
}

fn run_pidwatch(bench: &mut Bench) -> BenchResult<SupervisorRun> {
    let sup = Supervisor::Pidwatch;
    let tmp = temp_dir(sup)?;
    let dir = tmp.path();
    let (cmd, cgroup, placement) =
        pidwatch_config_mode(bench, dir, bench.plan.supervisor_workers, "config")?;
    let pids = dir.join("state/pids");
    let out = dir.join("pidwatch.out");
    let note = |children: &Children| {
        let files = pid_files(&pids);
        let running = files
            .iter()
            .filter(|pid| children.running.contains(pid))
            .count();
        let said = std::fs::read_to_string(&out).unwrap_or_default();
        format!(
            "{placement}; `state/pids/{PROGRAM}@*.pid`: {} files, {running} naming a running worker; {} `ERROR` lines of output",
            files.len(),
            said.lines().filter(|l| l.contains("ERROR")).count()
        )
    };
    let result = measure(bench, sup, cmd, dir, note);
    procs::kill_descendants(&mut bench.reaper);
    if let Some(cg) = &cgroup
        && let Err(e) = cg.remove()
    {
        eprintln!("pidwatch bench: {e}");
    }
    result
}

/// pidwatch's config mode over `workers` workers in `dir`: writes its
/// `pidwatch.toml` there and returns the command that runs it, the cgroup
/// of the bench's its incarnation cgroups go in (`bench-<PID>-<name>`,
/// removed with whatever runs in it when the run is done; `None` when no
/// cgroup can be had) and where its workers go, for the report.
///
/// Errors: the file cannot be written, or the cgroup cannot be made.
pub(crate) fn pidwatch_config_mode(
    bench: &Bench,
    dir: &Path,
    workers: usize,
    name: &str,
) -> BenchResult<(Command, Option<BenchCgroup>, String)> {
    let toml = dir.join("pidwatch.toml");
    write(&toml, &pidwatch_toml(dir, workers)?)?;
    let cgroup = match Delegation::probe(true) {
        Ok(d) => Some(BenchCgroup::create(
            &d,
            &format!("bench-{}-{name}", std::process::id()),
        )?),
        Err(why) => {
            eprintln!("pidwatch bench: no cgroup can be had for pidwatch's workers: {why}");
            None
        }
    };
    let mut cmd = Command::new(&bench.bin);
    cmd.arg("--config").arg(&toml).arg("run");
    let placement = match &cgroup {
        Some(cg) => {
            cmd.env(BASE_ENV, cg.path());
            format!("{BASE_ENV}=<bench cgroup>")
        }
        None => "no cgroup".into(),
    };
    Ok((cmd, cgroup, placement))
}

/// The PIDs the `<program>@<n>.pid` files of `dir` name.
fn pid_files(dir: &Path) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let prefix = format!("{PROGRAM}@");
    entries
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".pid"))
        })
        .filter_map(|e| std::fs::read_to_string(e.path()).ok()?.trim().parse().ok())
        .collect()
}

/// The workers of one supervisor: its children that run [`WORKER_ARGV`].
pub(crate) struct Children {
    supervisor: i32,
    /// The children seen running `sleep 100000`, still listed.
    pub(crate) running: HashSet<i32>,
    /// The workers the bench killed that the supervisor has not reaped
    /// yet, with their start times: one SIGKILLed a moment ago still shows
    /// its `cmdline` while it exits, and must not count as new. (PIDs wrap
    /// quickly where `pid_max` is 32768: a PID once killed may be a new
    /// worker's later.)
    dying: HashMap<i32, u64>,
}

impl Children {
    pub(crate) fn new(supervisor: i32) -> Children {
        Children {
            supervisor,
            running: HashSet::new(),
            dying: HashMap::new(),
        }
    }

    /// The supervisor's children, zombies included, over all its threads.
    fn listed(&self) -> Vec<i32> {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{}/task", self.supervisor)) else {
            return Vec::new();
        };
        let mut pids = Vec::new();
        for task in tasks.flatten() {
            if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
                pids.extend(
                    text.split_ascii_whitespace()
                        .filter_map(|p| p.parse::<i32>().ok()),
                );
            }
        }
        pids
    }

    /// Reads the children again: forgets those no longer listed, and
    /// returns how many new ones became workers (exec'd `sleep 100000`)
    /// since.
    pub(crate) fn refresh(&mut self) -> usize {
        let listed = self.listed();
        let now: HashSet<i32> = listed.iter().copied().collect();
        self.running.retain(|p| now.contains(p));
        self.dying.retain(|p, _| now.contains(p));
        let mut new = 0;
        for pid in listed {
            if self.running.contains(&pid) {
                continue;
            }
            if let Some(&started) = self.dying.get(&pid) {
                if procs::stat(pid).is_some_and(|s| s.start_ticks == started) {
                    continue;
                }
                self.dying.remove(&pid);
            }
            if is_worker(pid) {
                self.running.insert(pid);
                new += 1;
            }
        }
        new
    }

    /// Stops counting the running worker `pid`, about to be killed.
    fn forget(&mut self, pid: i32) {
        if let Some(s) = procs::stat(pid) {
            self.dying.insert(pid, s.start_ticks);
        }
        self.running.remove(&pid);
    }
}

/// Whether `pid` runs [`WORKER_ARGV`] (a zombie's cmdline is empty; a child
/// that has not exec'd yet shows its parent's).
fn is_worker(pid: i32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == WORKER_CMDLINE)
}

/// The last lines a supervisor printed, for an error.
fn output_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(8)..].join(" / ");
    if tail.is_empty() {
        format!("({} is empty)", path.display())
    } else {
        format!("{}: {tail}", path.display())
    }
}

/// Starts `cmd` (the supervisor) in `dir`, its output to
/// `<dir>/<supervisor>.out`; times every worker running, measures its idle
/// cost, kills workers and times each respawn, then stops it. `note` reads
/// its files for the sanity checks, before it stops.
///
/// Errors: it cannot start, exits, does not start every worker in time,
/// or does not stop on SIGTERM; the kill loop fails.
fn measure(
    bench: &mut Bench,
    supervisor: Supervisor,
    mut cmd: Command,
    dir: &Path,
    note: impl Fn(&Children) -> String,
) -> BenchResult<SupervisorRun> {
    let name = supervisor.as_str();
    let workers = bench.plan.supervisor_workers;
    let out_path = dir.join(format!("{name}.out"));
    let out =
        File::create(&out_path).map_err(|e| format!("creating {}: {e}", out_path.display()))?;
    let err = out
        .try_clone()
        .map_err(|e| format!("{}: {e}", out_path.display()))?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .current_dir(dir);
    procs::wait_for_quiet(procs::QUIET_LIMIT, &mut bench.reaper)?;
    let t0 = Instant::now();
    let daemon = Daemon::spawn(name, cmd, &mut bench.reaper)?;
    let mut children = Children::new(daemon.pid);
    let failed = |e: String| format!("{e}; {}", output_tail(&out_path));
    loop {
        children.refresh();
        if children.running.len() >= workers {
            break;
        }
        daemon.ensure_running(&mut bench.reaper).map_err(&failed)?;
        procs::check_interrupt()?;
        if t0.elapsed() >= START_LIMIT {
            return Err(failed(format!(
                "{name}: {} of {workers} workers running after {START_LIMIT:?}",
                children.running.len()
            )));
        }
        std::thread::sleep(START_POLL);
    }
    let all_running = t0.elapsed();
    eprintln!(
        "  {name}: {workers} workers running {:.2} s after its start",
        all_running.as_secs_f64()
    );
    procs::pause(SETTLE, &mut bench.reaper)?;
    let idle = pidwatch_phase::measure_idle(
        &mut bench.reaper,
        daemon.pid,
        workers,
        bench.plan.supervisor_idle,
    )?;
    // `Threads:` has no unit; the reader takes its first word all the same.
    let threads = procs::status_kib(daemon.pid, "Threads").unwrap_or(0);
    procs::wait_for_quiet(procs::QUIET_LIMIT, &mut bench.reaper)?;
    let plan = KillPlan {
        label: format!("{name}, {workers} workers"),
        kills: bench.plan.supervisor_kills,
        until: None,
        warmup: bench.plan.warmup,
        pause_low: PAUSE_LOW,
        pause_span: PAUSE_SPAN,
        deadline: DEADLINE,
        seed: SEED,
    };
    let kills =
        kill_loop(&mut children, workers, &daemon, &mut bench.reaper, &plan).map_err(&failed)?;
    // Let the last restart's bookkeeping finish before reading.
    procs::pause(Duration::from_millis(500), &mut bench.reaper)?;
    children.refresh();
    let hwm_after_kills_kib = procs::status_kib(daemon.pid, "VmHWM").unwrap_or(0);
    let note = note(&children);
    let status = daemon.stop(STOP_LIMIT, &mut bench.reaper)?;
    Ok(SupervisorRun {
        supervisor,
        all_running,
        idle,
        kills,
        hwm_after_kills_kib,
        threads,
        note,
        exit: format!("{status:?}"),
    })
}

/// Kills random workers one at a time with SIGKILL and times each respawn:
/// until a child runs `sleep 100000` that did not before (polled every
/// [`POLL`]).
///
/// The caller waits for a quiet machine first, when it wants one (f kills
/// under a load of its own making).
///
/// Errors: the supervisor exited, too many respawns timed out, the workers
/// were not all running again in time, or interrupted.
pub(crate) fn kill_loop(
    children: &mut Children,
    workers: usize,
    supervisor: &Daemon,
    reaper: &mut Reaper,
    plan: &KillPlan,
) -> BenchResult<KillRun> {
    let mut rng = Rng::new(plan.seed);
    let mut run = KillRun::default();
    let started = Instant::now();
    let mut sample = CpuSample::now(supervisor.pid);
    let mut timed = Instant::now();
    for i in 0..plan.warmup + plan.kills {
        if i == plan.warmup {
            sample = CpuSample::now(supervisor.pid);
            timed = Instant::now();
        }
        if i > plan.warmup && plan.until.is_some_and(|d| timed.elapsed() >= d) {
            break;
        }
        procs::wait_until("every worker to run", VICTIM_LIMIT, reaper, || {
            children.refresh();
            children.running.len() >= workers
        })?;
        let mut candidates: Vec<i32> = children.running.iter().copied().collect();
        candidates.sort_unstable();
        let old = candidates[rng.below(candidates.len())];
        let contained = procs::in_other_cgroup(old);
        let at = chrono::Local::now().naive_local();
        children.forget(old);
        let t0 = Instant::now();
        let _ = kill(Pid::from_raw(old), Signal::SIGKILL);
        let latency = loop {
            if children.refresh() > 0 {
                break Some(t0.elapsed());
            }
            if t0.elapsed() >= plan.deadline {
                break None;
            }
            reaper.reap();
            procs::check_interrupt()?;
            std::thread::sleep(POLL);
        };
        supervisor.ensure_running(reaper)?;
        if i >= plan.warmup {
            run.kills.push(Kill {
                worker: format!("pid {old}"),
                at,
                latency,
                survivors: 0,
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
    run.load = sample.until(&CpuSample::now(supervisor.pid));
    Ok(run)
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

/// A sentence on what each run's files said, for the report.
pub(crate) fn notes(c: &Comparison) -> String {
    let mut s = String::new();
    for run in c.runs().into_iter().flatten() {
        let _ = writeln!(
            s,
            "- {}: {}; threads: {}; exit on SIGTERM: {}.",
            run.supervisor.as_str(),
            run.note,
            run.threads,
            run.exit
        );
    }
    s
}

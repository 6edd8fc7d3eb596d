//! The benchmarks of pidwatch, against real processes, the real wrapper and
//! real SQLite databases in temp dirs under /tmp:
//!
//! - **a. check cost**: one `pidwatch check --json`, wall time per check and
//!   per worker, at 10 to 10,000 workers;
//! - **b. detection-to-respawn latency** under `pidwatch run --auto-restart`:
//!   SIGKILL a random worker's wrapper, time until its PID file names a new
//!   live process; p50, p95, p99, max; twice per worker count, with
//!   containment (`PIDWATCH_CONTAINMENT=cgroup`, skipped where no cgroup can
//!   be had) and without (`session`), each over workers pidwatch itself
//!   started with that containment;
//! - **c. the same for monit**, on the same workers and wrapper, one after
//!   the other; the ratio of medians against each pidwatch run;
//! - **d. the monitor's own cost**: idle CPU and peak RSS with 1,000 running
//!   workers, with the default containment (`auto`);
//! - **e. pidwatch and supervisord**: pidwatch's config-file mode
//!   (`pidwatch --config <toml> run`) and supervisord, each alone over the
//!   same 1,000 `sleep` workers it starts itself: start to all running,
//!   kill to a new one running, the supervisor's RSS and idle CPU;
//! - **f. the control API under load**: 1,000 `GET /workers/status` a
//!   second on pidwatch's control socket while its workers are killed, and
//!   the same kills without load (`api_load.rs`).
//!
//! `cargo bench --bench pidwatch` runs all six and writes
//! `benches/RESULTS.md`. `PIDWATCH_BENCH_QUICK=1` runs a small smoke version
//! (fewer workers, kills and seconds); it and a run of some sections only
//! (`cargo bench --bench pidwatch -- check latency monit footprint
//! supervisord api`) write
//! under `target/pidwatch-bench/` instead, so that RESULTS.md always comes
//! from a full run. Every kill's numbers also go to
//! `target/pidwatch-bench/samples/<monitor>-<workers>.csv`. monit is
//! installed with `apt-get install -y monit` when it is missing, supervisord
//! with `apt-get install -y supervisor` (or `pip install supervisor`).
//!
//! Everything the bench starts is killed when it ends, pass or fail: it is
//! a child subreaper, so every orphan comes back to it, and a guard SIGKILLs
//! all its descendants on the way out (also on SIGINT or SIGTERM). The
//! cgroup runs make their incarnation cgroups in a cgroup of the bench's
//! (`<pidwatch's base>/bench-<PID>-<workers>`), killed and removed with
//! everything below it when the worker count is done.

mod analysis;
mod api_load;
mod cgroup_cost;
mod check_cost;
mod fixture;
mod latency;
mod machine;
mod monit;
mod pidwatch_phase;
mod procs;
mod report;
mod stats;
mod supervisord;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use pidwatch::observe::cgroup::Delegation;

use crate::fixture::Orchestration;
use crate::pidwatch_phase::Containment;
use crate::procs::{BenchCgroup, Janitor, Reaper};

/// Errors are sentences for the report.
pub(crate) type BenchResult<T> = Result<T, String>;

/// The environment variable that asks for the quick smoke run.
const QUICK_ENV: &str = "PIDWATCH_BENCH_QUICK";

/// How long the machine's load is sampled before the run.
const QUIET_SAMPLE: Duration = Duration::from_secs(2);

/// The command that reproduces the committed results.
pub(crate) const REPRODUCE: &str = "cargo bench --bench pidwatch";

/// Which sections run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sections {
    /// a. check cost.
    pub(crate) check: bool,
    /// b. pidwatch's restart latency (and the wrapper floor).
    pub(crate) latency: bool,
    /// c. monit's restart latency.
    pub(crate) monit: bool,
    /// d. the monitor's idle cost.
    pub(crate) footprint: bool,
    /// e. pidwatch's config mode and supervisord.
    pub(crate) supervisord: bool,
    /// f. the control API under load.
    pub(crate) api: bool,
}

/// The sections' names on the command line.
pub(crate) const SECTION_NAMES: [&str; 6] = [
    "check",
    "latency",
    "monit",
    "footprint",
    "supervisord",
    "api",
];

impl Sections {
    fn all(self) -> bool {
        self.check && self.latency && self.monit && self.footprint && self.supervisord && self.api
    }

    /// The names of the sections that run, in order.
    pub(crate) fn names(self) -> Vec<&'static str> {
        let on = [
            self.check,
            self.latency,
            self.monit,
            self.footprint,
            self.supervisord,
            self.api,
        ];
        SECTION_NAMES
            .iter()
            .zip(on)
            .filter_map(|(name, on)| on.then_some(*name))
            .collect()
    }
}

/// Sizes, counts and durations of one run.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// The smoke-test run.
    pub(crate) quick: bool,
    /// Which sections run.
    pub(crate) sections: Sections,
    /// a: worker counts.
    pub(crate) check_sizes: Vec<usize>,
    /// a: most workers with a live `sleep`; the rest name dead PIDs.
    pub(crate) max_live: usize,
    /// a: timed checks per size.
    pub(crate) check_runs: usize,
    /// b: `(other logs in logs/, timed starts)` of the wrapper floor.
    pub(crate) floor: Vec<(usize, usize)>,
    /// b: rounds of the cgroup cost probe.
    pub(crate) cgroup_probe_runs: usize,
    /// b, c: running worker counts.
    pub(crate) latency_sizes: Vec<usize>,
    /// d: the worker count at which the idle cost is measured.
    pub(crate) footprint_size: usize,
    /// b: timed kills per size under pidwatch.
    pub(crate) pidwatch_kills: usize,
    /// c: timed kills per size under monit.
    pub(crate) monit_kills: usize,
    /// b, c: untimed kills first.
    pub(crate) warmup: usize,
    /// d: the idle window.
    pub(crate) idle_window: Duration,
    /// e: workers under each supervisor.
    pub(crate) supervisor_workers: usize,
    /// e: timed kills under each supervisor.
    pub(crate) supervisor_kills: usize,
    /// e: the idle window.
    pub(crate) supervisor_idle: Duration,
}

impl Plan {
    fn full(sections: Sections) -> Plan {
        Plan {
            quick: false,
            sections,
            check_sizes: vec![10, 100, 1_000, 10_000],
            max_live: 1_000,
            check_runs: 15,
            floor: vec![(0, 21), (100, 11), (1_000, 11)],
            cgroup_probe_runs: 21,
            latency_sizes: vec![100, 1_000],
            footprint_size: 1_000,
            pidwatch_kills: 200,
            monit_kills: 200,
            warmup: 3,
            idle_window: Duration::from_secs(60),
            supervisor_workers: 1_000,
            supervisor_kills: 200,
            supervisor_idle: Duration::from_secs(10),
        }
    }

    fn quick(sections: Sections) -> Plan {
        Plan {
            quick: true,
            sections,
            check_sizes: vec![10, 100],
            max_live: 100,
            check_runs: 3,
            floor: vec![(0, 5), (100, 2)],
            cgroup_probe_runs: 5,
            latency_sizes: vec![20, 100],
            footprint_size: 100,
            pidwatch_kills: 20,
            monit_kills: 10,
            warmup: 2,
            idle_window: Duration::from_secs(5),
            supervisor_workers: 100,
            supervisor_kills: 100,
            supervisor_idle: Duration::from_secs(10),
        }
    }

    /// From the command line (section names; cargo's `--bench` ignored) and
    /// [`QUICK_ENV`].
    ///
    /// Errors: an unknown argument.
    fn from_args(args: &[String], quick: bool) -> BenchResult<Plan> {
        let names: Vec<&str> = args
            .iter()
            .map(String::as_str)
            .filter(|a| !a.starts_with('-'))
            .collect();
        let want = |name: &str| names.is_empty() || names.contains(&name);
        if let Some(bad) = names.iter().find(|n| !SECTION_NAMES.contains(n)) {
            return Err(format!(
                "unknown section {bad:?}; sections are {}",
                SECTION_NAMES.join(", ")
            ));
        }
        let sections = Sections {
            check: want("check"),
            latency: want("latency"),
            monit: want("monit"),
            footprint: want("footprint"),
            supervisord: want("supervisord"),
            api: want("api"),
        };
        Ok(if quick {
            Plan::quick(sections)
        } else {
            Plan::full(sections)
        })
    }
}

/// What every section needs.
pub(crate) struct Bench {
    /// The pidwatch binary under test.
    pub(crate) bin: PathBuf,
    /// Where b's cgroup runs make their cgroups (`Delegation::probe(true)`,
    /// as `--containment cgroup` finds it); `None` when b does not run or
    /// no cgroup can be had.
    pub(crate) delegation: Option<Delegation>,
    /// monit, when section c runs.
    pub(crate) monit: Option<PathBuf>,
    /// supervisord, when section e runs.
    pub(crate) supervisord: Option<PathBuf>,
    /// Sizes and counts.
    pub(crate) plan: Plan,
    /// The reaper of every orphan.
    pub(crate) reaper: Reaper,
}

/// The results of one worker count of b, c and d.
#[derive(Debug)]
pub(crate) struct SizeResults {
    /// Running workers.
    pub(crate) workers: usize,
    /// Processes on the machine once the workers ran.
    pub(crate) processes: usize,
    /// One read of every process's stat and environ with the workers
    /// running (median), and the processes it read; when b ran.
    pub(crate) scan: Option<(Duration, usize)>,
    /// pidwatch's idle run (d), when it ran.
    pub(crate) footprint: Option<BenchResult<pidwatch_phase::FootprintRun>>,
    /// pidwatch's runs (b): with containment (when a cgroup can be had),
    /// then without.
    pub(crate) pidwatch: Vec<BenchResult<pidwatch_phase::PidwatchPhase>>,
    /// monit's run (c), when it ran.
    pub(crate) monit: Option<BenchResult<monit::MonitPhase>>,
}

/// Everything measured, and what failed.
#[derive(Debug, Default)]
pub(crate) struct Results {
    /// a.
    pub(crate) check: Option<BenchResult<check_cost::CheckCost>>,
    /// The wrapper's start time.
    pub(crate) floor: Option<BenchResult<Vec<latency::FloorRow>>>,
    /// What containment costs by itself, when the cgroup runs ran.
    pub(crate) cgroup_costs: Option<BenchResult<cgroup_cost::CgroupCosts>>,
    /// b, c, d per worker count.
    pub(crate) sizes: Vec<BenchResult<SizeResults>>,
    /// e.
    pub(crate) supervisord: Option<supervisord::Comparison>,
    /// f.
    pub(crate) api: Option<api_load::ApiLoad>,
    /// The monit version, when it ran.
    pub(crate) monit_version: Option<String>,
    /// The supervisord version, when it ran.
    pub(crate) supervisord_version: Option<String>,
    /// Why b's runs with containment were skipped: no cgroup can be had
    /// (`Delegation::probe(true)` failed).
    pub(crate) cgroup_skipped: Option<String>,
    /// How busy the machine was just before the run, over [`QUIET_SAMPLE`].
    pub(crate) load_before: procs::Load,
    /// Wall time of the whole run.
    pub(crate) elapsed: Duration,
}

fn main() -> ExitCode {
    let quick = std::env::var_os(QUICK_ENV).is_some_and(|v| !v.is_empty() && v != "0");
    scrub_environment();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let plan = match Plan::from_args(&args, quick) {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("pidwatch bench: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = procs::install() {
        eprintln!("pidwatch bench: cannot become a subreaper or catch signals: {e}");
        return ExitCode::FAILURE;
    }
    let _janitor = Janitor;
    match run(plan) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("pidwatch bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the selected sections and writes the report; `Ok(false)` when some
/// section failed.
fn run(plan: Plan) -> BenchResult<bool> {
    let started = Instant::now();
    let bin = pidwatch_binary()?;
    let machine = machine::Machine::describe(&bin);
    let mut results = Results::default();
    let before = procs::CpuSample::now(0);
    std::thread::sleep(QUIET_SAMPLE);
    results.load_before = before.until(&procs::CpuSample::now(0));
    // Without monit, section c fails on its own; the others still run.
    let monit = if plan.sections.monit {
        match monit::ensure_installed() {
            Ok(path) => {
                results.monit_version = Some(monit::version(&path));
                Some(path)
            }
            Err(e) => {
                eprintln!("pidwatch bench: {e}");
                None
            }
        }
    } else {
        None
    };
    // Likewise without supervisord for e.
    let supervisord = if plan.sections.supervisord {
        match supervisord::ensure_installed() {
            Ok(path) => {
                results.supervisord_version = Some(supervisord::version(&path));
                Some(path)
            }
            Err(e) => {
                eprintln!("pidwatch bench: {e}");
                None
            }
        }
    } else {
        None
    };
    let delegation = if plan.sections.latency {
        match Delegation::probe(true) {
            Ok(d) => Some(d),
            Err(why) => {
                eprintln!(
                    "pidwatch bench: no cgroup can be had, the cgroup runs are skipped: {why}"
                );
                results.cgroup_skipped = Some(why);
                None
            }
        }
    } else {
        None
    };
    let mut bench = Bench {
        bin,
        delegation,
        monit,
        supervisord,
        plan,
        reaper: Reaper::default(),
    };
    println!(
        "pidwatch bench: {} run with {}",
        if bench.plan.quick { "quick" } else { "full" },
        bench.bin.display()
    );
    println!("{}", report::machine_section(&machine, &results));

    if bench.plan.sections.check {
        let cost = check_cost::run(&bench);
        print_section(report::check_section(&cost));
        results.check = Some(cost);
    }
    if bench.plan.sections.latency {
        let rows = latency::wrapper_floor(&mut bench);
        procs::kill_descendants(&mut bench.reaper);
        print_section(report::floor_section(&rows));
        results.floor = Some(rows);
        if let Some(d) = &bench.delegation {
            let costs = BenchCgroup::create(d, &format!("bench-{}-probe", std::process::id()))
                .and_then(|cg| {
                    cgroup_cost::measure(cg.path(), bench.plan.cgroup_probe_runs, &mut bench.reaper)
                });
            procs::kill_descendants(&mut bench.reaper);
            print_section(report::cgroup_costs_section(Some(&costs), &[]));
            results.cgroup_costs = Some(costs);
        }
    }
    if bench.plan.sections.latency || bench.plan.sections.monit || bench.plan.sections.footprint {
        for n in bench.plan.latency_sizes.clone() {
            if procs::interrupted() {
                break;
            }
            let size = run_size(&mut bench, n);
            print_section(report::size_section(&size));
            if let Ok(size) = &size {
                write_samples(size);
            }
            results.sizes.push(size);
        }
    }
    if bench.plan.sections.supervisord && !procs::interrupted() {
        let comparison = supervisord::run(&mut bench);
        print_section(report::supervisord_section(&comparison, &bench.plan));
        write_supervisor_samples(&comparison);
        results.supervisord = Some(comparison);
    }
    if bench.plan.sections.api && !procs::interrupted() {
        let api = api_load::run(&mut bench);
        print_section(api_load::section(&api));
        api_load::write_samples(&api, &output_dir().join("samples"));
        results.api = Some(api);
    }
    results.elapsed = started.elapsed();
    let text = report::document(&machine, &bench.plan, &results);
    let path = report_path(&bench.plan);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    std::fs::write(&path, &text).map_err(|e| format!("writing {}: {e}", path.display()))?;
    println!("{}", report::targets_section(&bench.plan, &results));
    println!(
        "Wrote {} ({:.0} s)",
        path.display(),
        results.elapsed.as_secs_f64()
    );
    Ok(report::all_passed(&results) && !procs::interrupted())
}

fn print_section(text: String) {
    println!("{text}");
}

/// b, c and d at `n` running workers: the workers are started once through
/// the wrapper, watched by pidwatch idle (d), by pidwatch with containment
/// and without (b), then by monit (c); then everything is killed and the
/// bench's cgroup removed.
fn run_size(bench: &mut Bench, n: usize) -> BenchResult<SizeResults> {
    eprintln!("{n} workers: starting them through the wrapper");
    let orch = Orchestration::build(n)?;
    let cgroup = bench
        .delegation
        .as_ref()
        .map(|d| BenchCgroup::create(d, &format!("bench-{}-{n}", std::process::id())));
    let result = watch_size(bench, &orch, cgroup.as_ref());
    procs::kill_descendants(&mut bench.reaper);
    if let Some(Ok(cg)) = &cgroup
        && let Err(e) = cg.remove()
    {
        eprintln!("pidwatch bench: {e}");
    }
    drop(orch);
    result
}

fn watch_size(
    bench: &mut Bench,
    orch: &Orchestration,
    cgroup: Option<&BenchResult<BenchCgroup>>,
) -> BenchResult<SizeResults> {
    let n = orch.workers.len();
    orch.create_work_dirs()?;
    let t0 = Instant::now();
    orch.start_all(&mut bench.reaper)?;
    eprintln!(
        "{n} workers: started in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    let processes = procs::process_table().len();
    let sections = bench.plan.sections;
    let scan = sections
        .latency
        .then(|| cgroup_cost::scan_cost(5))
        .flatten();
    let footprint = sections.footprint && n == bench.plan.footprint_size;
    let footprint = footprint.then(|| {
        eprintln!("{n} workers: pidwatch run, idle (containment auto)");
        pidwatch_phase::footprint(bench, orch)
    });
    let mut pidwatch = Vec::new();
    if sections.latency {
        if let Some(cgroup) = cgroup {
            eprintln!("{n} workers: pidwatch run --auto-restart, containment cgroup");
            pidwatch.push(cgroup.as_ref().map_err(Clone::clone).and_then(|cg| {
                pidwatch_phase::run(bench, orch, Containment::Cgroup, Some(cg.path()))
            }));
        }
        if !procs::interrupted() {
            eprintln!("{n} workers: pidwatch run --auto-restart, containment session");
            pidwatch.push(pidwatch_phase::run(bench, orch, Containment::Session, None));
        }
    }
    let monit = (sections.monit && !procs::interrupted()).then(|| {
        eprintln!("{n} workers: monit");
        monit::run(bench, orch)
    });
    Ok(SizeResults {
        workers: n,
        processes,
        scan,
        footprint,
        pidwatch,
        monit,
    })
}

/// e's kills as CSV, in `<target dir>/pidwatch-bench/samples/`
/// (`supervisord-<workers>.csv`, `pidwatch-config-<workers>.csv`).
fn write_supervisor_samples(c: &supervisord::Comparison) {
    let dir = output_dir().join("samples");
    for run in c.runs().into_iter().flatten() {
        let monitor = match run.supervisor {
            supervisord::Supervisor::Supervisord => "supervisord",
            supervisord::Supervisor::Pidwatch => "pidwatch-config",
        };
        let path = dir.join(format!("{monitor}-{}.csv", c.workers));
        let csv = latency::samples_csv(&run.kills, None);
        if let Err(e) = std::fs::create_dir_all(&dir).and_then(|_| std::fs::write(&path, csv)) {
            eprintln!("pidwatch bench: writing {}: {e}", path.display());
        }
    }
}

/// Removes the variables pidwatch (or its service manager) would read from
/// the bench's own environment, so that no child sees them: `PIDWATCH_*`,
/// `WORKSPACE_ID`, `JOURNAL_STREAM` and pidwatch's [`SCRUBBED_ENV`].
///
/// [`SCRUBBED_ENV`]: pidwatch::act::spawn::SCRUBBED_ENV
fn scrub_environment() {
    let doomed: Vec<_> = std::env::vars_os()
        .map(|(key, _)| key)
        .filter(|key| {
            let key = key.to_string_lossy();
            key.starts_with("PIDWATCH_")
                || key == "WORKSPACE_ID"
                || key == "JOURNAL_STREAM"
                || pidwatch::act::spawn::SCRUBBED_ENV.contains(&key.as_ref())
        })
        .collect();
    for key in doomed {
        // SAFETY: this runs first thing in main, before the bench starts any
        // thread, so nothing reads the environment concurrently.
        unsafe { std::env::remove_var(key) };
    }
}

/// The pidwatch binary: the one cargo built for this bench, else the release
/// build next to the bench executable, else a fresh
/// `cargo build --release --bin pidwatch`.
///
/// Errors: none found and the build failed.
fn pidwatch_binary() -> BenchResult<PathBuf> {
    if let Some(path) = option_env!("CARGO_BIN_EXE_pidwatch").map(PathBuf::from)
        && path.is_file()
    {
        return Ok(path);
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join("pidwatch")));
    if let Some(path) = beside.filter(|p| p.is_file()) {
        return Ok(path);
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    eprintln!("pidwatch bench: building the pidwatch binary");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let built = Command::new(cargo)
        .args(["build", "--release", "--bin", "pidwatch"])
        .current_dir(manifest)
        .status()
        .is_ok_and(|s| s.success());
    let path = manifest.join("target/release/pidwatch");
    if built && path.is_file() {
        Ok(path)
    } else {
        Err("cannot build the pidwatch binary (cargo build --release --bin pidwatch)".into())
    }
}

/// `benches/RESULTS.md` for a full run of all sections that was not
/// interrupted; otherwise a file in [`output_dir`].
fn report_path(plan: &Plan) -> PathBuf {
    if !plan.quick && plan.sections.all() && !procs::interrupted() {
        return Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/RESULTS.md");
    }
    output_dir().join(if plan.quick {
        "RESULTS.quick.md"
    } else {
        "RESULTS.partial.md"
    })
}

/// `<target dir>/pidwatch-bench`: partial reports and raw samples.
fn output_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.parent()?.to_path_buf()))
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
        .join("pidwatch-bench")
}

/// Every kill of one worker count as CSV, in
/// `<target dir>/pidwatch-bench/samples/<monitor>-<workers>.csv`
/// (`pidwatch-cgroup`, `pidwatch-session`, `monit`).
fn write_samples(size: &SizeResults) {
    let dir = output_dir().join("samples");
    let mut files = Vec::new();
    for p in size.pidwatch.iter().flatten() {
        files.push((
            format!("pidwatch-{}", p.containment.as_str()),
            latency::samples_csv(&p.kills, Some(&p.breakdown)),
        ));
    }
    if let Some(Ok(m)) = &size.monit {
        files.push(("monit".to_string(), latency::samples_csv(&m.kills, None)));
    }
    for (monitor, csv) in files {
        let path = dir.join(format!("{monitor}-{}.csv", size.workers));
        if let Err(e) = std::fs::create_dir_all(&dir).and_then(|_| std::fs::write(&path, csv)) {
            eprintln!("pidwatch bench: writing {}: {e}", path.display());
        }
    }
}

//! The Markdown report: tables per section, the targets with their
//! verdicts, and what explains a miss.

use std::fmt::Write as _;
use std::time::Duration;

use crate::cgroup_cost::{CgroupCosts, Cost};
use crate::check_cost::{CheckCost, CheckRow, Profile, ReadCosts};
use crate::latency::{Breakdown, FloorRow, KillRun, Steps};
use crate::machine::Machine;
use crate::monit;
use crate::pidwatch_phase::{self, Containment, Footprint, FootprintRun, PidwatchPhase};
use crate::procs::Load;
use crate::stats::{self, Percentiles};
use crate::supervisord::{self, Comparison, SupervisorRun};
use crate::{BenchResult, Plan, REPRODUCE, Results, SizeResults};

/// a: the most a check may cost per worker at 1,000 workers.
pub(crate) const CHECK_TARGET: Duration = Duration::from_micros(20);
/// a: the worker count of that target.
pub(crate) const CHECK_TARGET_WORKERS: usize = 1_000;
/// b: the largest p99 restart latency at 1,000 workers, with containment.
pub(crate) const P99_TARGET: Duration = Duration::from_millis(15);
/// c: how many times monit's median pidwatch's must be, at 1,000 workers,
/// with containment.
pub(crate) const RATIO_TARGET: f64 = 60.0;
/// b, c: the containment the targets are measured with.
pub(crate) const TARGET_CONTAINMENT: Containment = Containment::Cgroup;
/// d: the most idle CPU, percent of one core.
pub(crate) const CPU_TARGET_PERCENT: f64 = 0.1;
/// d: the most peak RSS, KiB.
pub(crate) const RSS_TARGET_KIB: u64 = 16 * 1024;
/// e: the longest pidwatch's config mode may take from its start to every
/// worker running.
pub(crate) const CONFIG_START_TARGET: Duration = Duration::from_secs(2);
/// e: the largest p99 of pidwatch's kill → new one running.
pub(crate) const CONFIG_P99_TARGET: Duration = Duration::from_millis(25);
/// e: the most pidwatch's VmRSS may be, as a share of supervisord's.
pub(crate) const CONFIG_RSS_SHARE: f64 = 1.0 / 3.0;

/// The machine and programs, as a table.
pub(crate) fn machine_section(m: &Machine, results: &Results) -> String {
    let mut s = String::from("## Machine\n\n| | |\n|---|---|\n");
    let _ = writeln!(s, "| CPU | {} cores available, {} |", m.cores, m.cpu);
    let _ = writeln!(s, "| Kernel | {} |", m.kernel);
    let _ = writeln!(s, "| Memory | {:.1} GiB |", m.memory_gib);
    let _ = writeln!(s, "| pidwatch | {}, release profile |", m.pidwatch);
    if let Some(v) = &results.monit_version {
        let _ = writeln!(s, "| monit | {v} |");
    }
    if let Some(v) = &results.supervisord_version {
        let _ = writeln!(s, "| supervisord | {v} |");
    }
    let _ = writeln!(s, "| rustc | {} |", m.rustc);
    let _ = writeln!(
        s,
        "| Load before the run | {:.0} % of all cores busy, {:.0} % stolen by the hypervisor (over {} s) |",
        results.load_before.busy_percent,
        results.load_before.steal_percent,
        crate::QUIET_SAMPLE.as_secs()
    );
    s
}

/// a, as a table.
pub(crate) fn check_section(cost: &BenchResult<CheckCost>) -> String {
    let mut s = String::from("## a. Check cost\n\n");
    let (rows, profile, reads) = match cost {
        Ok(cost) => (&cost.rows, &cost.profile, &cost.reads),
        Err(e) => return failed(s, e),
    };
    s.push_str(
        "`pidwatch check --json`, wall time from spawn to exit (process start, opening the \
         databases, every PID file and the process it names, the JSON on a pipe), median of the \
         timed runs after one untimed warm-up. A live worker's PID file names a stand-in of its \
         wrapper: a shell with the wrapper's command line (`sh -c 'read -r _' \
         <…>/worker-wrapper.sh <worker> <PID file>`), since pidwatch counts a worker as running \
         only when that process proves to be its wrapper; pidwatch has recorded no incarnation \
         of these workers (a check without `--auto-restart` adopts none). A dead worker's PID \
         file names a PID no process has.\n\n\
         | workers | live | dead | runs | median per check | per worker | fastest – slowest |\n\
         |---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} – {} |",
            thousands(r.workers),
            thousands(r.live),
            thousands(r.dead),
            r.runs,
            stats::show(r.median),
            micros(r.per_worker()),
            stats::show(r.min),
            stats::show(r.max)
        );
    }
    if let Some(slope) = marginal(rows, 100, 1_000) {
        let _ = writeln!(
            s,
            "\nMarginal cost of a live worker (100 → 1,000 workers): {} per worker; the rest \
             of a check is the fixed cost of a run ({} at 10 workers).",
            micros(slope),
            rows.iter()
                .find(|r| r.workers == 10)
                .map_or("-".into(), |r| stats::show(r.median))
        );
    }
    if let Some(p) = profile {
        s.push('\n');
        s.push_str(&profile_line(p));
    }
    if let Some(r) = reads {
        s.push('\n');
        s.push_str(&reads_table(r));
    }
    s
}

/// pidwatch's file readers against the leanest reads of the same facts.
fn reads_table(r: &ReadCosts) -> String {
    format!(
        "Reading one worker's files, per worker over the {} live workers (median of rounds), \
         pidwatch's readers against the fewest system calls that get the same facts:\n\n\
         | file | pidwatch | leanest | difference |\n|---|---:|---:|---:|\n\
         | `/proc/<pid>/stat` | `Procfs::stat` {} | `open`, one `read(2)`, `close`: {} | {} |\n\
         | PID file | `pidfile::read` {} | `open`, one `fstat`, one `read(2)`, `close`: {} | {} |\n\
         | liveness probe | `kill(pid, 0)` {} | none (the stat read tells) | {} |\n",
        thousands(r.workers),
        micros(r.stat),
        micros(r.stat_one_read),
        micros(r.stat.saturating_sub(r.stat_one_read)),
        micros(r.pidfile),
        micros(r.pidfile_one_read),
        micros(r.pidfile.saturating_sub(r.pidfile_one_read)),
        micros(r.kill_probe),
        micros(r.kill_probe)
    )
}

/// The system calls of one check, per worker.
fn profile_line(p: &Profile) -> String {
    let per = |n: u64| n as f64 / p.workers as f64;
    let top: Vec<String> = p
        .calls
        .iter()
        .take(6)
        .map(|(name, n)| format!("{name} {:.1}", per(*n)))
        .collect();
    format!(
        "One check at {} workers under `strace -c -f`: {} system calls, {:.1} per worker \
         ({}, per worker).\n",
        thousands(p.workers),
        thousands(p.total as usize),
        per(p.total),
        top.join(", ")
    )
}

/// The median cost of one more worker between two sizes.
pub(crate) fn marginal(rows: &[CheckRow], from: usize, to: usize) -> Option<Duration> {
    if to <= from {
        return None;
    }
    let a = rows.iter().find(|r| r.workers == from)?;
    let b = rows.iter().find(|r| r.workers == to)?;
    Some(b.median.saturating_sub(a.median) / (to - from) as u32)
}

/// The wrapper's start time, as a table.
pub(crate) fn floor_section(rows: &BenchResult<Vec<FloorRow>>) -> String {
    let mut s = String::from("### The wrapper's own start time\n\n");
    let rows = match rows {
        Ok(rows) => rows,
        Err(e) => return failed(s, e),
    };
    s.push_str(
        "`worker-wrapper.sh` started alone, as pidwatch starts it (a new session), from spawn \
         to its PID file naming it; `logs/` holds other workers' logs, as it does with that \
         many workers running. Every restart, by pidwatch or monit, pays this.\n\n\
         | other logs in `logs/` | runs | median | fastest |\n|---:|---:|---:|---:|\n",
    );
    for r in rows {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} |",
            thousands(r.logs),
            r.runs,
            stats::show(r.median),
            stats::show(r.min)
        );
    }
    s
}

/// The latency rows of one worker count: pidwatch's runs, then monit's.
fn latency_rows(size: &SizeResults) -> String {
    let mut s = pidwatch_rows(size);
    if let Some(m) = &size.monit {
        s.push_str(&latency_row(
            "monit",
            "-",
            size.workers,
            m.as_ref().map(|m| &m.kills),
        ));
    }
    s
}

/// pidwatch's latency rows of one worker count: with containment, then
/// without.
fn pidwatch_rows(size: &SizeResults) -> String {
    let mut s = String::new();
    for run in &size.pidwatch {
        let containment = match run {
            Ok(p) => p.containment.as_str(),
            Err(_) => "?",
        };
        s.push_str(&latency_row(
            "pidwatch",
            containment,
            size.workers,
            run.as_ref().map(|p| &p.kills),
        ));
    }
    s
}

/// One worker count of b, c and d, for the console.
pub(crate) fn size_section(size: &BenchResult<SizeResults>) -> String {
    let size = match size {
        Ok(size) => size,
        Err(e) => return failed(String::from("### A worker count\n\n"), e),
    };
    let mut s = format!("### {} running workers\n\n", thousands(size.workers));
    if !size.pidwatch.is_empty() || size.monit.is_some() {
        s.push_str(LATENCY_HEADER);
        s.push_str(&latency_rows(size));
    }
    for c in [Containment::Cgroup, Containment::Session] {
        if let Some(r) = ratio(size, c) {
            let _ = writeln!(
                s,
                "\nmonit's median / pidwatch's median ({}): {r:.1}×",
                c.as_str()
            );
        }
    }
    if let Some(f) = &size.footprint {
        s.push('\n');
        match f {
            Ok(f) => s.push_str(&footprint_table(f, size)),
            Err(e) => s = failed(s, e),
        }
    }
    s
}

const LATENCY_HEADER: &str = "| monitor | containment | workers | kills | p50 | p95 | p99 | max | timed out |\n\
                              |---|---|---:|---:|---:|---:|---:|---:|---:|\n";

fn latency_row(
    monitor: &str,
    containment: &str,
    workers: usize,
    kills: Result<&KillRun, &String>,
) -> String {
    match kills {
        Err(e) => format!(
            "| {monitor} | {containment} | {} | failed: {} |||||| \n",
            thousands(workers),
            one_line(e)
        ),
        Ok(run) => {
            let lat = run.latencies();
            let show = |f: fn(&Percentiles) -> Duration| {
                Percentiles::of(&lat).map_or("-".into(), |p| stats::show(f(&p)))
            };
            format!(
                "| {monitor} | {containment} | {} | {} | {} | {} | {} | {} | {} |\n",
                thousands(workers),
                run.kills.len(),
                show(|p| p.p50),
                show(|p| p.p95),
                show(|p| p.p99),
                show(|p| p.max),
                run.timeouts()
            )
        }
    }
}

/// pidwatch's run of one worker count with `containment`, when it ran and
/// succeeded.
pub(crate) fn run_of(size: &SizeResults, containment: Containment) -> Option<&PidwatchPhase> {
    size.pidwatch
        .iter()
        .flatten()
        .find(|p| p.containment == containment)
}

/// monit's median over pidwatch's (with `containment`), when both ran.
pub(crate) fn ratio(size: &SizeResults, containment: Containment) -> Option<f64> {
    let p = stats::median(&run_of(size, containment)?.kills.latencies())?;
    let m = stats::median(&size.monit.as_ref()?.as_ref().ok()?.kills.latencies())?;
    Some(m.as_secs_f64() / p.as_secs_f64())
}

/// The highest VmHWM of pidwatch at this worker count: idle (d) and after
/// the kills of each run of b.
pub(crate) fn peak_hwm_kib(size: &SizeResults) -> Option<u64> {
    let idle = size
        .footprint
        .as_ref()
        .and_then(|f| f.as_ref().ok())
        .map(|f| f.footprint.hwm_kib);
    let after = size
        .pidwatch
        .iter()
        .flatten()
        .map(|p| p.hwm_after_kills_kib);
    idle.into_iter().chain(after).max()
}

fn footprint_table(run: &FootprintRun, size: &SizeResults) -> String {
    let f: &Footprint = &run.footprint;
    let after: Vec<String> = size
        .pidwatch
        .iter()
        .flatten()
        .map(|p| {
            format!(
                "{} ({})",
                mib(p.hwm_after_kills_kib),
                p.containment.as_str()
            )
        })
        .collect();
    format!(
        "| workers | window | CPU (utime+stime) | CPU (schedstat) | VmHWM idle | VmRSS idle | VmHWM after the kills of b | machine busy / bench / steal |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|\n\
         | {} | {:.0} s | {} ticks = {:.3} % of a core | {:.3} % of a core | {} | {} | {} | {} |\n",
        thousands(f.workers),
        f.window.as_secs_f64(),
        f.ticks,
        f.cpu_percent,
        f.sched_percent,
        mib(f.hwm_kib),
        mib(f.rss_kib),
        if after.is_empty() {
            "-".to_string()
        } else {
            after.join(", ")
        },
        load(&f.load)
    )
}

/// The whole of `RESULTS.md`.
pub(crate) fn document(machine: &Machine, plan: &Plan, results: &Results) -> String {
    let mut s = String::from("# pidwatch benchmarks\n\n");
    let ran = plan.sections.names();
    let command = if ran.len() == crate::SECTION_NAMES.len() {
        REPRODUCE.to_string()
    } else {
        format!("{REPRODUCE} -- {}", ran.join(" "))
    };
    let kind = if plan.quick {
        "A quick smoke run (`PIDWATCH_BENCH_QUICK=1`): small sizes, few kills; not the committed results."
            .to_string()
    } else if ran.len() == crate::SECTION_NAMES.len() {
        "A full run.".to_string()
    } else {
        format!(
            "A full-size run of some sections only ({}).",
            ran.join(", ")
        )
    };
    let _ = writeln!(
        s,
        "{kind} Written by `{command}` on {}, in {:.0} s. Reproduce with `{command}`; \
         `{REPRODUCE}` runs all six sections (`-- check latency monit footprint supervisord \
         api` picks some); `PIDWATCH_BENCH_QUICK=1 {REPRODUCE}` is the smoke run.\n",
        chrono::Local::now().format("%Y-%m-%d %H:%M %Z"),
        results.elapsed.as_secs_f64()
    );
    s.push_str(&machine_section(machine, results));
    s.push('\n');
    s.push_str(&targets_section(plan, results));
    s.push('\n');
    if let Some(cost) = &results.check {
        s.push_str(&check_section(cost));
        s.push('\n');
    }
    let sections = plan.sections;
    let watching = sections.latency || sections.monit || sections.footprint;
    if watching {
        s.push_str(&latency_section(plan, results));
        s.push_str(&monit_section(results));
        s.push_str(&footprint_section(plan, results));
    }
    if let Some(c) = &results.supervisord {
        s.push_str(&supervisord_section(c, plan));
        s.push('\n');
    }
    if let Some(f) = &results.api {
        s.push_str(&crate::api_load::section(f));
        s.push('\n');
    }
    s.push_str(&crate::analysis::section(plan, results));
    if watching {
        s.push_str(&health_section(results));
    }
    s.push_str(&method_section(plan));
    s
}

/// The targets of the issue and how this run fared.
pub(crate) fn targets_section(plan: &Plan, results: &Results) -> String {
    let mut s = String::from("## Targets\n\n| target | measured | verdict |\n|---|---|---|\n");
    let big = plan.latency_sizes.iter().copied().max().unwrap_or(0);
    if let Some(Ok(cost)) = &results.check
        && let Some(r) = cost
            .rows
            .iter()
            .filter(|r| r.workers <= CHECK_TARGET_WORKERS)
            .max_by_key(|r| r.workers)
    {
        let got = r.per_worker();
        let _ = writeln!(
            s,
            "| a. check ≤ {} per worker at {} workers | {} per worker at {} | {} |",
            micros(CHECK_TARGET),
            thousands(CHECK_TARGET_WORKERS),
            micros(got),
            thousands(r.workers),
            verdict_at_most(got.as_secs_f64(), CHECK_TARGET.as_secs_f64(), |v| micros(
                Duration::from_secs_f64(v)
            ))
        );
    }
    if let Some(size) = size_result(results, big) {
        let tc = TARGET_CONTAINMENT.as_str();
        let p99_of =
            |c: Containment| run_of(size, c).and_then(|p| Percentiles::of(&p.kills.latencies()));
        let b_target = format!(
            "b. restart latency p99 ≤ {} at 1,000 workers, with containment ({tc})",
            stats::show(P99_TARGET)
        );
        match p99_of(TARGET_CONTAINMENT) {
            Some(pc) => {
                let without = p99_of(Containment::Session).map_or(String::new(), |ps| {
                    format!(" (without, session: p99 {})", stats::show(ps.p99))
                });
                let _ = writeln!(
                    s,
                    "| {b_target} | p99 {} at {}{without} | {} |",
                    stats::show(pc.p99),
                    thousands(big),
                    verdict_at_most(pc.p99.as_secs_f64(), P99_TARGET.as_secs_f64(), |v| {
                        stats::show(Duration::from_secs_f64(v))
                    })
                );
            }
            None if plan.sections.latency => {
                let _ = writeln!(
                    s,
                    "| {b_target} | not measured: {} | - |",
                    not_measured(results)
                );
            }
            None => {}
        }
        let c_target = format!(
            "c. monit's median ≥ {RATIO_TARGET:.0}× pidwatch's at 1,000 workers, with containment ({tc})"
        );
        match ratio(size, TARGET_CONTAINMENT) {
            Some(r) => {
                let verdict = if r >= RATIO_TARGET {
                    "met".to_string()
                } else {
                    format!(
                        "missed: {:.1}× short ({:.0} % of the target)",
                        RATIO_TARGET - r,
                        r / RATIO_TARGET * 100.0
                    )
                };
                let without = ratio(size, Containment::Session)
                    .map_or(String::new(), |rs| format!(" (without, session: {rs:.1}×)"));
                let _ = writeln!(
                    s,
                    "| {c_target} | {r:.1}× at {}{without} | {verdict} |",
                    thousands(big)
                );
            }
            None if plan.sections.latency && size.monit.is_some() => {
                let _ = writeln!(
                    s,
                    "| {c_target} | not measured: {} | - |",
                    not_measured(results)
                );
            }
            None => {}
        }
    }
    if let Some((run, size)) = footprint_phase(plan, results) {
        let f = &run.footprint;
        let _ = writeln!(
            s,
            "| d. idle CPU ≤ {CPU_TARGET_PERCENT} % of a core | {:.3} % at {} | {} |",
            f.cpu_percent,
            thousands(f.workers),
            verdict_at_most(f.cpu_percent, CPU_TARGET_PERCENT, |v| format!(
                "{v:.3} % of a core"
            ))
        );
        let peak = peak_hwm_kib(size).unwrap_or(f.hwm_kib);
        let _ = writeln!(
            s,
            "| d. peak RSS ≤ {} | VmHWM {} at {} | {} |",
            mib(RSS_TARGET_KIB),
            mib(peak),
            thousands(f.workers),
            verdict_at_most(peak as f64, RSS_TARGET_KIB as f64, |v| mib(v as u64))
        );
    }
    if let Some(c) = &results.supervisord {
        s.push_str(&supervisord_targets(c));
    }
    if let Some(f) = &results.api {
        s.push_str(&crate::api_load::targets(f));
    }
    s
}

/// e's four rows of the targets table.
fn supervisord_targets(c: &Comparison) -> String {
    let mut s = String::new();
    let n = thousands(c.workers);
    let rows = [
        format!(
            "e. pidwatch `--config`: start → all {n} workers running ≤ {}",
            stats::show(CONFIG_START_TARGET)
        ),
        format!(
            "e. pidwatch `--config`: kill → new one running, p99 ≤ {}",
            stats::show(CONFIG_P99_TARGET)
        ),
        "e. pidwatch's median kill → new one running ≤ supervisord's".to_string(),
        "e. pidwatch's VmRSS ≤ 1/3 of supervisord's (idle, every worker running)".to_string(),
    ];
    let p = match &c.pidwatch {
        Ok(p) => p,
        Err(e) => {
            let _ = writeln!(
                s,
                "| {} | not measured: pidwatch's run failed ({}) | - |",
                rows[0],
                one_line(e)
            );
            for target in &rows[1..] {
                let _ = writeln!(
                    s,
                    "| {target} | not measured: pidwatch's run failed (see above) | - |"
                );
            }
            return s;
        }
    };
    let sd = c.supervisord.as_ref().ok();
    let show = |d: Duration| stats::show(d);
    let besides = |f: &dyn Fn(&SupervisorRun) -> Option<String>| {
        sd.and_then(f)
            .map_or(String::new(), |v| format!(" (supervisord {v})"))
    };
    let _ = writeln!(
        s,
        "| {} | {} at {n}{} | {} |",
        rows[0],
        show(p.all_running),
        besides(&|r| Some(show(r.all_running))),
        verdict_at_most(
            p.all_running.as_secs_f64(),
            CONFIG_START_TARGET.as_secs_f64(),
            |v| show(Duration::from_secs_f64(v))
        )
    );
    let pp = Percentiles::of(&p.kills.latencies());
    let sp = sd.and_then(|r| Percentiles::of(&r.kills.latencies()));
    match pp {
        Some(pp) => {
            let _ = writeln!(
                s,
                "| {} | p99 {} over {} kills{} | {} |",
                rows[1],
                show(pp.p99),
                p.kills.kills.len(),
                besides(&|r| Some(format!(
                    "p99 {}",
                    show(Percentiles::of(&r.kills.latencies())?.p99)
                ))),
                verdict_at_most(pp.p99.as_secs_f64(), CONFIG_P99_TARGET.as_secs_f64(), |v| {
                    show(Duration::from_secs_f64(v))
                })
            );
        }
        None => {
            let _ = writeln!(s, "| {} | no respawn measured | missed |", rows[1]);
        }
    }
    match (pp, sp) {
        (Some(pp), Some(sp)) => {
            let _ = writeln!(
                s,
                "| {} | p50 {} against {} ({:.3}×) | {} |",
                rows[2],
                show(pp.p50),
                show(sp.p50),
                pp.p50.as_secs_f64() / sp.p50.as_secs_f64(),
                verdict_at_most(pp.p50.as_secs_f64(), sp.p50.as_secs_f64(), |v| show(
                    Duration::from_secs_f64(v)
                ))
            );
        }
        _ => {
            let _ = writeln!(
                s,
                "| {} | not measured: {} | - |",
                rows[2],
                supervisord_missing(c)
            );
        }
    }
    match sd {
        Some(r) => {
            let share = p.idle.rss_kib as f64 / r.idle.rss_kib.max(1) as f64;
            let _ = writeln!(
                s,
                "| {} | {} against {} ({:.1} % of it) | {} |",
                rows[3],
                mib(p.idle.rss_kib),
                mib(r.idle.rss_kib),
                share * 100.0,
                verdict_at_most(share, CONFIG_RSS_SHARE, |v| format!(
                    "{:.1} points",
                    v * 100.0
                ))
            );
        }
        None => {
            let _ = writeln!(
                s,
                "| {} | not measured: {} | - |",
                rows[3],
                supervisord_missing(c)
            );
        }
    }
    s
}

/// The figures of e's table for one supervisor, in its rows' order.
fn figures(r: &SupervisorRun) -> [Option<f64>; 10] {
    let p = Percentiles::of(&r.kills.latencies());
    let q = |f: fn(&Percentiles) -> Duration| p.map(|p| f(&p).as_secs_f64());
    [
        Some(r.all_running.as_secs_f64()),
        q(|p| p.p50),
        q(|p| p.p95),
        q(|p| p.p99),
        q(|p| p.max),
        Some(r.idle.rss_kib as f64),
        Some(r.idle.hwm_kib as f64),
        Some(r.hwm_after_kills_kib as f64),
        Some(r.idle.cpu_percent),
        Some(r.idle.sched_percent),
    ]
}

/// How a figure of e's table is shown.
#[derive(Debug, Clone, Copy)]
enum Unit {
    /// Seconds.
    Time,
    /// KiB.
    Memory,
    /// Percent of one core.
    Core,
}

impl Unit {
    fn show(self, v: f64) -> String {
        match self {
            Unit::Time => stats::show(Duration::from_secs_f64(v)),
            Unit::Memory => mib(v as u64),
            Unit::Core => format!("{v:.3} % of a core"),
        }
    }
}

fn supervisord_missing(c: &Comparison) -> String {
    match &c.supervisord {
        Ok(_) => "no respawn under supervisord".into(),
        Err(_) => "supervisord's run failed (see e)".into(),
    }
}

/// e, as a table: supervisord, pidwatch, and their ratio.
pub(crate) fn supervisord_section(c: &Comparison, plan: &Plan) -> String {
    let mut s = String::from(
        "## e. pidwatch and supervisord

",
    );
    let n = thousands(c.workers);
    let _ = writeln!(
        s,
        "Each supervisor alone over the same {n} workers, which it starts itself and restarts \
         when they die, one after the other (supervisord first), each in a fresh temp dir, its \
         output to a file. Every worker is `{argv}` and logs its stdout and stderr to a file of \
         its own under both.\n\n\
         - supervisord: `supervisord -c supervisord.conf -n` with one `[program:{prog}]`: \
           `numprocs={w}`, `autostart=true`, `autorestart=true`, `startsecs=0`, \
           `startretries=1000000`, `redirect_stderr=true`, \
           `stdout_logfile=<dir>/logs/%(program_name)s_%(process_num)04d.log`, \
           `stopasgroup=true`, `killasgroup=true`; `[unix_http_server]`, \
           `[rpcinterface:supervisor]` and `[supervisorctl]` so that `supervisorctl status` works.\n\
         - pidwatch: `pidwatch --config pidwatch.toml run` with one `[worker.{prog}]`: \
           `command = [\"{a0}\", \"{a1}\"]`, `instances = {w}`, `max_restarts = 1000000`, \
           `restart_delay = 0`, `max_restart_delay = 0`; `PIDWATCH_CGROUP_BASE` a cgroup of \
           the bench's (when one can be had), removed with whatever is left in it at the end.\n\n\
         Both are watched alike, from outside: a worker runs when it is a child of the \
         supervisor (`/proc/<pid>/task/<tid>/children`, every thread) whose `cmdline` is \
         exactly `{argv}`. *Start → all running* is from spawning the supervisor until all {n} \
         run. *Kill → new one running* is from a SIGKILL to a random running worker until a \
         child runs `{argv}` that did not before (polled every {poll} µs); {kills} timed kills \
         after {warm} untimed ones, a random {lo}–{hi} ms apart (a random phase of \
         supervisord's one-second loop). Memory is VmRSS and VmHWM from `/proc/<pid>/status`, \
         idle CPU utime+stime (and `schedstat`) over {idle} s with every worker running and \
         nothing dying, starting {settle} s after the last one started (pidwatch sweeps every \
         worker every 30 s by default and otherwise waits in `epoll_wait`, so a window this \
         short may hold no sweep of it; supervisord wakes every second).\n",
        argv = supervisord::WORKER_ARGV.join(" "),
        prog = "sleep",
        w = c.workers,
        a0 = supervisord::WORKER_ARGV[0],
        a1 = supervisord::WORKER_ARGV[1],
        poll = crate::latency::POLL.as_micros(),
        kills = plan.supervisor_kills,
        warm = plan.warmup,
        lo = supervisord::PAUSE_LOW.as_millis(),
        hi = (supervisord::PAUSE_LOW + supervisord::PAUSE_SPAN).as_millis(),
        idle = plan.supervisor_idle.as_secs(),
        settle = supervisord::SETTLE.as_secs(),
    );
    for run in c.runs() {
        if let Err(e) = run {
            let _ = writeln!(s, "**Failed:** {}\n", one_line(e));
        }
    }
    let sd = c.supervisord.as_ref().ok();
    let pw = c.pidwatch.as_ref().ok();
    let _ = writeln!(
        s,
        "| {n} workers | supervisord | pidwatch | pidwatch / supervisord |\n|---|---:|---:|---:|"
    );
    let rows = [
        (format!("start → all {n} running"), Unit::Time),
        ("kill → new one running, p50".into(), Unit::Time),
        ("… p95".into(), Unit::Time),
        ("… p99".into(), Unit::Time),
        ("… max".into(), Unit::Time),
        ("VmRSS, idle".into(), Unit::Memory),
        ("VmHWM, idle".into(), Unit::Memory),
        ("VmHWM after the kills".into(), Unit::Memory),
        (
            format!(
                "idle CPU over {} s (utime+stime)",
                plan.supervisor_idle.as_secs()
            ),
            Unit::Core,
        ),
        ("idle CPU (schedstat)".into(), Unit::Core),
    ];
    let (a, b) = (sd.map(figures), pw.map(figures));
    for (i, (what, unit)) in rows.iter().enumerate() {
        let (a, b) = (a.and_then(|f| f[i]), b.and_then(|f| f[i]));
        let ratio = match (a, b) {
            (Some(a), Some(b)) if a > 0.0 => format!("{:.3}", b / a),
            _ => "-".into(),
        };
        let _ = writeln!(
            s,
            "| {what} | {} | {} | {ratio} |",
            a.map_or("-".into(), |v| unit.show(v)),
            b.map_or("-".into(), |v| unit.show(v))
        );
    }
    let count = |r: Option<&SupervisorRun>| {
        r.map_or("-".into(), |r| {
            format!("{} ({} timed out)", r.kills.kills.len(), r.kills.timeouts())
        })
    };
    let _ = writeln!(s, "| timed kills | {} | {} | |", count(sd), count(pw));
    let busy = |r: Option<&SupervisorRun>| r.map_or("-".into(), |r| load(&r.kills.load));
    let _ = writeln!(
        s,
        "| machine busy / bench / steal during the kills | {} | {} | |",
        busy(sd),
        busy(pw)
    );
    let own = |r: Option<&SupervisorRun>| {
        r.map_or("-".into(), |r| {
            format!("{:.1} %", r.kills.load.monitor_core_percent)
        })
    };
    let _ = writeln!(
        s,
        "| the supervisor's CPU during the kills (one core) | {} | {} | |",
        own(sd),
        own(pw)
    );
    let notes = supervisord::notes(c);
    if !notes.is_empty() {
        s.push('\n');
        s.push_str(&notes);
    }
    s
}

pub(crate) fn verdict_at_most(got: f64, target: f64, show: impl Fn(f64) -> String) -> String {
    if got <= target {
        "met".into()
    } else {
        format!(
            "missed by {} ({:.0} % over)",
            show(got - target),
            (got / target - 1.0) * 100.0
        )
    }
}

/// Why the run with containment has no numbers: skipped (no cgroup), or
/// failed.
fn not_measured(results: &Results) -> String {
    match &results.cgroup_skipped {
        Some(why) => format!("the cgroup run was skipped ({})", one_line(why)),
        None => "the cgroup run failed (see b)".into(),
    }
}

fn size_result(results: &Results, workers: usize) -> Option<&SizeResults> {
    results
        .sizes
        .iter()
        .filter_map(|s| s.as_ref().ok())
        .find(|s| s.workers == workers)
}

/// d's idle run, with the worker count it ran at.
pub(crate) fn footprint_phase<'a>(
    plan: &Plan,
    results: &'a Results,
) -> Option<(&'a FootprintRun, &'a SizeResults)> {
    let size = size_result(results, plan.footprint_size)?;
    Some((size.footprint.as_ref()?.as_ref().ok()?, size))
}

fn latency_section(plan: &Plan, results: &Results) -> String {
    let mut s = String::from("## b. Detection-to-respawn latency under pidwatch\n\n");
    if !plan.sections.latency {
        s.push_str("Not measured in this run.\n\n");
        return s;
    }
    let _ = writeln!(
        s,
        "`pidwatch run --auto-restart --interval {} --restart-delay 0 --max-restarts 1000000 \
         --worker-command '{}' -q` over running workers, twice per worker count: with \
         containment (`{env}=cgroup`: each incarnation pidwatch starts runs in a cgroup of its \
         own, whose `cgroup.procs` lists what is left of it after a death) and without \
         (`{env}=session`: a session of its own, what is left found by reading every \
         process's stat and environ). Before each run, the bench SIGKILLs every worker and one \
         `pidwatch check --auto-restart` with the same containment starts them all again, so \
         that every worker a run kills is an incarnation pidwatch started itself, contained as \
         the run says (workers it merely adopts have no cgroup). Each run has a state DB of \
         its own. A random worker's wrapper is SIGKILLed, and the time runs until its PID \
         file names another live process (polled every {} µs). {} timed kills per run after \
         {} untimed ones, a random {}–{} ms apart, the same victims in both runs.\n",
        pidwatch_phase::INTERVAL_SECONDS,
        crate::fixture::WORKER_COMMAND,
        crate::latency::POLL.as_micros(),
        plan.pidwatch_kills,
        plan.warmup,
        pidwatch_phase::PAUSE_LOW.as_millis(),
        (pidwatch_phase::PAUSE_LOW + pidwatch_phase::PAUSE_SPAN).as_millis(),
        env = pidwatch_phase::CONTAINMENT_ENV,
    );
    if let Some(why) = &results.cgroup_skipped {
        let _ = writeln!(
            s,
            "**The runs with containment were skipped:** no cgroup can be had here \
             (`Delegation::probe(true)`: {}).\n",
            one_line(why)
        );
    }
    s.push_str(LATENCY_HEADER);
    for size in &results.sizes {
        match size {
            Ok(size) => s.push_str(&pidwatch_rows(size)),
            Err(e) => {
                let _ = writeln!(s, "| pidwatch | ? | ? | failed: {} |||||| ", one_line(e));
            }
        }
    }
    s.push_str(
        "\nWhere the time goes, medians per step, from the timestamps pidwatch writes to \
         `monitor.log` (µs resolution) against the bench's clock. The last column ends \
         elsewhere: at pidwatch's own `Worker … restarted` line, once its poll of the PID \
         file found the new wrapper.\n\n\
         | workers | containment | kills matched | kill → `Restarting worker` (pidfd wake-up, observe: the cgroup's `cgroup.procs`, or every process's stat and environ; decide) | → `Stopped survivors` (count the attempt, SIGTERM, wait for them to exit; the cgroup removed) | → new PID file (observe again, work dir, record the incarnation, its cgroup, fork+exec, the wrapper) | kill → `Worker … restarted` |\n\
         |---:|---|---:|---:|---:|---:|---:|\n",
    );
    for size in results.sizes.iter().filter_map(|s| s.as_ref().ok()) {
        for p in size.pidwatch.iter().flatten() {
            s.push_str(&breakdown_row(size.workers, p));
        }
    }
    s.push('\n');
    let sizes: Vec<&SizeResults> = results
        .sizes
        .iter()
        .filter_map(|s| s.as_ref().ok())
        .collect();
    s.push_str(&cgroup_costs_section(results.cgroup_costs.as_ref(), &sizes));
    s.push('\n');
    if let Some(rows) = &results.floor {
        s.push_str(&floor_section(rows));
        s.push('\n');
    }
    s
}

/// What containment costs by itself, through pidwatch's own functions, and
/// what the run without it reads instead.
pub(crate) fn cgroup_costs_section(
    costs: Option<&BenchResult<CgroupCosts>>,
    sizes: &[&SizeResults],
) -> String {
    let mut s = String::from("### What containment costs by itself\n\n");
    let scans: Vec<&SizeResults> = sizes.iter().copied().filter(|s| s.scan.is_some()).collect();
    match costs {
        None if scans.is_empty() => return String::new(),
        None => {}
        Some(Err(e)) => s = failed(s, e),
        Some(Ok(c)) => {
            let _ = writeln!(
                s,
                "pidwatch's own functions called by the bench, outside any monitor, in fresh \
                 cgroups of the bench's, {} rounds; a `sleep` stands for a dead worker's \
                 leftover, and runs {} ms before it is stopped.\n\n\
                 | operation | median | slowest |\n|---|---:|---:|",
                c.runs,
                crate::cgroup_cost::RUN_BEFORE_STOP.as_millis()
            );
            let rows: [(&str, Cost); 9] = [
                (
                    "spawn of `sleep` as pidwatch spawns (`act::child::prepare_child`), until it exec'd, staying in the parent's cgroup",
                    c.spawn_plain,
                ),
                (
                    "the same, the child joining a new cgroup before exec (it writes `0` to the cgroup's `cgroup.procs`)",
                    c.spawn_joining,
                ),
                (
                    "`spawn::stop_members` of one `sleep` given as a member, as the process-table scan finds it (SIGTERM through a pidfd, the wait on it)",
                    c.stop_member,
                ),
                (
                    "`spawn::stop_members` of one `sleep` by its cgroup",
                    c.stop_cgroup,
                ),
                (
                    "… the same, call by call: `Cgroup::signal_members(SIGTERM)`",
                    c.signal,
                ),
                (
                    "… `Cgroup::wait_empty` until the `sleep` has exited",
                    c.wait_exit,
                ),
                (
                    "… `Cgroup::wait_empty` again, the cgroup empty",
                    c.wait_again,
                ),
                ("… `Cgroup::remove`", c.remove),
                (
                    "close(2) of an inotify instance on `cgroup.events` right after it reported the cgroup empty (how each `Cgroup::wait_empty` that waited ends)",
                    c.inotify_close,
                ),
            ];
            for (what, cost) in rows {
                let _ = writeln!(
                    s,
                    "| {what} | {} | {} |",
                    stats::show(cost.median),
                    stats::show(cost.max)
                );
            }
        }
    }
    if !scans.is_empty() {
        s.push_str(
            "\nWithout containment, each observe of a worker that has no live wrapper reads \
             every process's stat and environ (`observe::members::scan`), with the workers \
             running:\n\n| workers | processes read | one scan (median of 5) |\n|---:|---:|---:|\n",
        );
        for size in scans {
            if let Some((took, read)) = size.scan {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} |",
                    thousands(size.workers),
                    thousands(read),
                    stats::show(took)
                );
            }
        }
    }
    s
}

fn breakdown_row(workers: usize, p: &PidwatchPhase) -> String {
    let b: &Breakdown = &p.breakdown;
    let med = |step: fn(&Steps) -> Duration| b.median(step).map_or("-".into(), stats::show);
    format!(
        "| {} | {} | {} of {} | {} | {} | {} | {} |\n",
        thousands(workers),
        p.containment.as_str(),
        b.matched(),
        p.kills.kills.len(),
        med(|s| s.detect),
        med(|s| s.survivors),
        med(|s| s.spawn),
        b.median_logged().map_or("-".into(), stats::show)
    )
}

fn monit_section(results: &Results) -> String {
    let mut s = String::from("## c. The same latency under monit\n\n");
    let _ = writeln!(
        s,
        "monit in the foreground (`monit -c <monitrc> -I`), `set daemon {}` (its shortest \
         cycle), one `check process <id> with pidfile <pid file>` per worker whose `start \
         program` is `setsid -f worker-wrapper.sh <same arguments> -- sh -c '{}'`. (monit \
         waits for a start program to exit, up to its 30 s program timeout, then kills it and \
         calls the start failed; with the wrapper itself as start program, which runs until its \
         worker ends, every restart stalled monit's whole cycle for 30 s on this machine. \
         `setsid -f` forks, starts a new session and execs the wrapper, and returns at once; \
         the wrapper, orphaned, is reaped by the bench.) It ran on \
         the same machine and the same running workers right after pidwatch's runs were \
         stopped (one after the other, not at once; the workers then are the ones pidwatch's \
         run without containment left). The bench SIGKILLs the survivors monit leaves in \
         the old session after each respawn, outside the timed span. Kills are a random \
         {}–{} ms apart: a uniformly random phase of monit's cycle, as a real death has.\n",
        monit::CYCLE_SECONDS,
        crate::fixture::WORKER_COMMAND,
        monit::PAUSE_LOW.as_millis(),
        thousands(
            (monit::PAUSE_LOW.as_millis() + u128::from(monit::CYCLE_SECONDS) * 1000) as usize
        )
    );
    s.push_str(LATENCY_HEADER);
    for size in results.sizes.iter().filter_map(|s| s.as_ref().ok()) {
        s.push_str(&latency_rows(size));
    }
    s.push_str(
        "\n| workers | monit's median / pidwatch's, with containment (cgroup) | without (session) |\n\
         |---:|---:|---:|\n",
    );
    let show = |r: Option<f64>| r.map_or("-".to_string(), |r| format!("{r:.1}×"));
    for size in results.sizes.iter().filter_map(|s| s.as_ref().ok()) {
        if size.monit.is_some() {
            let _ = writeln!(
                s,
                "| {} | {} | {} |",
                thousands(size.workers),
                show(ratio(size, Containment::Cgroup)),
                show(ratio(size, Containment::Session))
            );
        }
    }
    s.push('\n');
    s
}

fn footprint_section(plan: &Plan, results: &Results) -> String {
    let mut s = String::from("## d. The monitor's own cost\n\n");
    let Some((run, size)) = footprint_phase(plan, results) else {
        s.push_str("Not measured in this run.\n\n");
        return s;
    };
    let f = &run.footprint;
    let _ = writeln!(
        s,
        "`pidwatch run` with the default containment (`auto`; it logged `{}`) over {} running \
         workers, nothing dying, once: CPU from `/proc/<pid>/stat` (utime+stime, {} ticks a \
         second) and `/proc/<pid>/schedstat` over {:.0} s, starting {} s after its first \
         sweep; VmHWM and VmRSS from `/proc/<pid>/status` at the end of the window. With \
         `--interval {}` the window holds two sweeps. The VmHWM after the kills is that of \
         each run of b at this worker count, after its {} kills.\n",
        run.placement,
        thousands(f.workers),
        crate::procs::ticks_per_second(),
        f.window.as_secs_f64(),
        pidwatch_phase::SETTLE.as_secs(),
        pidwatch_phase::INTERVAL_SECONDS,
        plan.pidwatch_kills
    );
    s.push_str(&footprint_table(run, size));
    s.push('\n');
    s
}

/// Whether each monitor did what it should, besides being fast.
fn health_section(results: &Results) -> String {
    let mut s = String::from(
        "## Sanity checks\n\n\
         The machine's load is over the timed kills, in percent of all its cores: everything \
         busy (the monitor, the wrapper, the bench, anything else), of which the bench's own \
         polling, and the time the hypervisor stole. A victim *in a cgroup* ran in another \
         cgroup than the bench: one pidwatch made for its incarnation. pidwatch's `[ERROR]` \
         lines count from the start of its `pidwatch check` that started the workers.\n\n\
         | workers | monitor | containment | workers started by `pidwatch check` in | respawns logged (incl. warm-up) | timed kills | victims in a cgroup | survivors left in the old session | open fds before → after the kills | `[ERROR]` lines | exit on SIGTERM | monitor's CPU during the kills (one core) | machine busy / bench / steal |\n\
         |---:|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|\n",
    );
    for size in results.sizes.iter().filter_map(|s| s.as_ref().ok()) {
        let w = thousands(size.workers);
        for run in &size.pidwatch {
            match run {
                Ok(p) => {
                    let _ = writeln!(
                        s,
                        "| {w} | pidwatch | {} | {:.1} s | {} | {} | {} | {} | {} → {} | {} | {} | {:.1} % | {} |",
                        p.containment.as_str(),
                        p.primed_in.as_secs_f64(),
                        p.restarts_logged,
                        p.kills.kills.len(),
                        p.kills.contained(),
                        p.kills.with_survivors(),
                        p.fds.0,
                        p.fds.1,
                        p.errors.len(),
                        p.exit,
                        p.kills.load.monitor_core_percent,
                        load(&p.kills.load)
                    );
                }
                Err(e) => {
                    let _ = writeln!(
                        s,
                        "| {w} | pidwatch | ? | failed: {} |||||||||| ",
                        one_line(e)
                    );
                }
            }
        }
        match &size.footprint {
            Some(Ok(f)) => {
                let _ = writeln!(
                    s,
                    "| {w} | pidwatch, idle (d) | auto | - | - | - | - | - | - | {} | {} | - | - |",
                    f.errors.len(),
                    f.exit
                );
            }
            Some(Err(e)) => {
                let _ = writeln!(
                    s,
                    "| {w} | pidwatch, idle (d) | auto | failed: {} |||||||||| ",
                    one_line(e)
                );
            }
            None => {}
        }
        match &size.monit {
            Some(Ok(m)) => {
                let _ = writeln!(
                    s,
                    "| {w} | monit | - | - | {} | {} | {} | {} (killed by the bench) | - | - | {} | {:.1} % | {} |",
                    m.restarts_logged,
                    m.kills.kills.len(),
                    m.kills.contained(),
                    m.kills.with_survivors(),
                    m.exit,
                    m.kills.load.monitor_core_percent,
                    load(&m.kills.load)
                );
            }
            Some(Err(e)) => {
                let _ = writeln!(s, "| {w} | monit | - | failed: {} |||||||||| ", one_line(e));
            }
            None => {}
        }
    }
    s.push_str("\nWhat each pidwatch logged at start about its containment:\n\n");
    for size in results.sizes.iter().filter_map(|s| s.as_ref().ok()) {
        for p in size.pidwatch.iter().flatten() {
            let _ = writeln!(
                s,
                "- {} workers, {}: `{}`",
                thousands(size.workers),
                p.containment.as_str(),
                p.placement
            );
        }
        if let Some(Ok(f)) = &size.footprint {
            let _ = writeln!(
                s,
                "- {} workers, idle (auto): `{}`",
                thousands(size.workers),
                f.placement
            );
        }
    }
    for size in results.sizes.iter().filter_map(|s| s.as_ref().ok()) {
        for p in size.pidwatch.iter().flatten() {
            for line in p.errors.iter().take(5) {
                let _ = writeln!(
                    s,
                    "\n    {} workers, {}: {line}",
                    size.workers,
                    p.containment.as_str()
                );
            }
        }
        if let Some(Ok(f)) = &size.footprint {
            for line in f.errors.iter().take(5) {
                let _ = writeln!(s, "\n    {} workers, idle: {line}", size.workers);
            }
        }
    }
    s.push('\n');
    s
}

fn method_section(plan: &Plan) -> String {
    format!(
        "## Method\n\n\
         - Workers are real: each is `worker-wrapper.sh` (the wrapper pidwatch carries) running \
           `sh -c '{cmd}'` in a session of its own, with a PID file in `pids/`, a stream with \
           one task in progress in a real Task Copilot DB, and a work dir under \
           `.claude/worktrees/`. Everything lives in a temp dir under /tmp, removed at the end.\n\
         - \"Killed\" is SIGKILL to the PID in the PID file (the wrapper); \"back\" is the PID \
           file existing, parsing, naming another PID, and that PID being neither zombie nor \
           dead in `/proc/<pid>/stat`. Victims are drawn at random (seeded SplitMix64); one \
           respawn is awaited before the next kill.\n\
         - The bench deletes the workers' logs before each kill, for both monitors alike: \
           `logs/` then holds `monitor.log` and at most one or two worker logs, so that what \
           is timed is the monitor and not what the wrapper does with a full `logs/`; the \
           wrapper's start with many logs is measured on its own (table in b).\n\
         - The bench is a child subreaper: every orphan (a killed wrapper's worker, a wrapper \
           started by `setsid -f`) is adopted and reaped by it at once, so no zombie lingers \
           for a monitor to take for alive, whatever PID 1 does; at the end, pass or fail, it SIGKILLs all its descendants.\n\
         - The machine-load figures (sanity checks) come from `/proc/stat` and \
           `/proc/<pid>/stat`, both sampled by clock ticks: approximate.\n\
         - The environment is scrubbed of `PIDWATCH_*`, `WORKSPACE_ID`, `JOURNAL_STREAM`, \
           `NOTIFY_SOCKET`, `WATCHDOG_*` and `LISTEN_*` before anything starts.\n\
         - Medians, not single runs: the machine's cores are shared, so single times wander. \
           Before each timed section the bench waits (up to {quiet} s) for a second in which \
           the machine is less than {busy:.0} % busy, so as not to start in the middle of someone \
           else's build.\n\
         - pidwatch's containment is chosen by `{env}` (`cgroup`, `session`; unset for d, \
           `auto`). The runs with containment give pidwatch a cgroup of the bench's as its \
           base (`PIDWATCH_CGROUP_BASE=<pidwatch's base>/bench-<PID>-<workers>`), so that their \
           incarnation cgroups are told apart from anyone else's and removed with it at the \
           end of the worker count.\n\
         - Sizes of this run: check at {check:?} workers ({runs} timed runs each, at most \
           {live} live); latency at {lat:?} running workers, {pk} kills per pidwatch run (with \
           and without containment) and {mk} under monit per size; idle window {idle} s at \
           {fp} workers; supervisord and pidwatch `--config` at {sw} workers, {sk} kills \
           each, idle window {si} s.\n",
        cmd = crate::fixture::WORKER_COMMAND,
        check = plan.check_sizes,
        runs = plan.check_runs,
        live = plan.max_live,
        lat = plan.latency_sizes,
        pk = plan.pidwatch_kills,
        mk = plan.monit_kills,
        idle = plan.idle_window.as_secs(),
        fp = plan.footprint_size,
        sw = plan.supervisor_workers,
        sk = plan.supervisor_kills,
        si = plan.supervisor_idle.as_secs(),
        quiet = crate::procs::QUIET_LIMIT.as_secs(),
        busy = crate::procs::QUIET_BUSY_PERCENT,
        env = pidwatch_phase::CONTAINMENT_ENV,
    )
}

/// Whether every section that ran succeeded.
pub(crate) fn all_passed(results: &Results) -> bool {
    let check = results.check.as_ref().is_none_or(Result::is_ok);
    let floor = results.floor.as_ref().is_none_or(Result::is_ok);
    let sizes = results.sizes.iter().all(|s| {
        s.as_ref().is_ok_and(|s| {
            s.pidwatch.iter().all(Result::is_ok)
                && s.footprint.as_ref().is_none_or(Result::is_ok)
                && s.monit.as_ref().is_none_or(Result::is_ok)
        })
    });
    let supervisord = results
        .supervisord
        .as_ref()
        .is_none_or(|c| c.runs().iter().all(|r| r.is_ok()));
    let api = results.api.as_ref().is_none_or(crate::api_load::passed);
    check && floor && sizes && supervisord && api
}

/// `34 % / 9 % / 2 %`: busy, the bench's share, steal.
pub(crate) fn load(l: &Load) -> String {
    format!(
        "{:.0} % / {:.0} % / {:.0} %",
        l.busy_percent, l.bench_percent, l.steal_percent
    )
}

fn failed(mut s: String, e: &str) -> String {
    let _ = writeln!(s, "**Failed:** {}\n", one_line(e));
    s
}

pub(crate) fn one_line(e: &str) -> String {
    e.replace(['\n', '|'], " ")
}

/// `12.3 µs`.
pub(crate) fn micros(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

/// `5.2 MiB`.
pub(crate) fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// `10,000`.
pub(crate) fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

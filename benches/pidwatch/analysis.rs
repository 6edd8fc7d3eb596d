//! The part of the report that explains each missed target: by how much,
//! why (from this run's own numbers), and what would close it.

use std::fmt::Write as _;
use std::time::Duration;

use crate::check_cost::CheckCost;
use crate::latency::Steps;
use crate::monit;
use crate::pidwatch_phase::{self, Footprint, PidwatchPhase};
use crate::report::{
    CHECK_TARGET, CHECK_TARGET_WORKERS, CPU_TARGET_PERCENT, P99_TARGET, RATIO_TARGET,
    RSS_TARGET_KIB, footprint_phase, marginal, mib, micros, ratio, thousands,
};
use crate::stats::{self, Percentiles};
use crate::{Plan, Results, SizeResults};

/// A saving per worker below this is not offered as a way to close (a).
const READ_SAVING_WORTH: Duration = Duration::from_micros(1);

/// For each missed target: by how much, why (from this run's numbers), and
/// what would close it.
pub(crate) fn section(plan: &Plan, results: &Results) -> String {
    let mut s =
        String::from("## Where a target is missed: by how much, why, what would close it\n\n");
    let before = s.len();
    if let Some(Ok(cost)) = &results.check {
        s.push_str(&check_analysis(cost));
    }
    let sizes: Vec<&SizeResults> = results
        .sizes
        .iter()
        .filter_map(|s| s.as_ref().ok())
        .collect();
    let floor0 = results
        .floor
        .as_ref()
        .and_then(|f| f.as_ref().ok())
        .and_then(|rows| rows.iter().find(|r| r.logs == 0))
        .map(|r| r.median);
    if let (Some(big), Some(small)) = (
        sizes.iter().max_by_key(|s| s.workers),
        sizes.iter().min_by_key(|s| s.workers),
    ) {
        s.push_str(&latency_analysis(big, small, floor0, results));
        s.push_str(&ratio_analysis(big, small, floor0));
    }
    if let Some(p) = footprint_phase(plan, results)
        && let Some(f) = &p.footprint
    {
        s.push_str(&footprint_analysis(f, p));
    }
    if s.len() == before {
        s.push_str("Every target measured in this run was met.\n\n");
    }
    s
}

fn check_analysis(cost: &CheckCost) -> String {
    let Some(r) = cost
        .rows
        .iter()
        .filter(|r| r.workers <= CHECK_TARGET_WORKERS)
        .max_by_key(|r| r.workers)
    else {
        return String::new();
    };
    let got = r.per_worker();
    if got <= CHECK_TARGET {
        return String::new();
    }
    let mut s = format!(
        "**a. Check cost: {} per worker at {} workers, {} over the {} target.** ",
        micros(got),
        thousands(r.workers),
        micros(got - CHECK_TARGET),
        micros(CHECK_TARGET)
    );
    let fixed = cost.rows.iter().find(|r| r.workers == 10).map(|r| r.median);
    if let Some(fixed) = fixed {
        let _ = write!(
            s,
            "A check is a process: its fixed cost (start-up, argument parsing, opening the task \
             and memory databases; the whole 10-worker check) is {}, {} per worker at {}. ",
            stats::show(fixed),
            micros(fixed / r.workers as u32),
            thousands(r.workers)
        );
    }
    let slope = marginal(&cost.rows, 100, r.workers);
    if let Some(slope) = slope {
        let _ = write!(
            s,
            "The rest is {} per live worker (the slope from 100 to {} workers). ",
            micros(slope),
            thousands(r.workers)
        );
    }
    if let Some(p) = &cost.profile {
        let per = |name: &str| {
            p.calls
                .iter()
                .find(|(n, _)| n == name)
                .map_or(0.0, |(_, c)| *c as f64 / p.workers as f64)
        };
        let total = p.total as f64 / p.workers as f64;
        let (reads, statx, kills) = (per("read"), per("statx") + per("fstat"), per("kill"));
        let _ = write!(
            s,
            "Under `strace -c` a check makes {total:.1} system calls per worker. "
        );
        if reads >= 4.0 {
            s.push_str(
                "It reads `/proc/<pid>/stat` with `std::fs::read`, which makes a `statx` and then \
                 grows its buffer by small `read`s, since procfs reports a size of 0 (32, 32, 64 \
                 and 128 bytes, then end of file): 8 calls for one small file. ",
            );
        }
        if statx >= 2.0 {
            s.push_str(
                "Each PID file is `fstat`ed twice (to refuse a non-regular file, then for its \
                 size and mtime). ",
            );
        }
        if kills >= 1.0 {
            s.push_str(
                "`kill(pid, 0)` is sent before the stat file is read, though reading it already \
                 tells whether the process exists. ",
            );
        }
    }
    if let (Some(slope), Some(reads)) = (slope, &cost.reads) {
        let fixed_share = fixed.map_or(Duration::ZERO, |f| f / r.workers as u32);
        let lean = slope.saturating_sub(reads.saving());
        let projected = lean + fixed_share;
        if reads.saving() >= READ_SAVING_WORTH {
            let _ = write!(
                s,
                "Measured here (table above), one `read(2)` per file, one `fstat` per PID file \
                 and no `kill` probe would save {} per worker: the marginal cost would fall from \
                 {} to about {}, and a {}-worker check to about {} per worker{} ",
                micros(reads.saving()),
                micros(slope),
                micros(lean),
                thousands(r.workers),
                micros(projected),
                if projected <= CHECK_TARGET {
                    ", under the target."
                } else {
                    ", still over."
                }
            );
        } else {
            let _ = write!(
                s,
                "pidwatch's reads of the two files are already about as lean as they go: the \
                 table above leaves {} per worker to save, the `kill` probe included. ",
                micros(reads.saving())
            );
        }
        if projected > CHECK_TARGET {
            let files = reads.stat_one_read + reads.pidfile_one_read;
            let _ = write!(
                s,
                "Of the {} per worker, reading the two files takes {} at best (the kernel \
                 formats all 52 fields of the stat file for each read); the rest is the worker's \
                 task row (SQLite, the JSON of its metadata), its verdict and its entry in the \
                 JSON output. What would close it: the workers are independent, so observing \
                 them on one thread per core (here {}) would divide most of the per-worker wall \
                 time by up to that number.",
                micros(lean),
                micros(files),
                std::thread::available_parallelism().map_or(1, |n| n.get())
            );
        }
    }
    s.push_str("\n\n");
    s
}

fn latency_analysis(
    big: &SizeResults,
    small: &SizeResults,
    floor0: Option<Duration>,
    results: &Results,
) -> String {
    let Some(Ok(p)) = &big.pidwatch else {
        return String::new();
    };
    let Some(pc) = Percentiles::of(&p.kills.latencies()) else {
        return String::new();
    };
    if pc.p99 <= P99_TARGET {
        return String::new();
    }
    let b = &p.breakdown;
    let med = |step: fn(&Steps) -> Duration| b.median(step).map_or("-".into(), stats::show);
    let mut s = format!(
        "**b. Restart latency at {} workers: p99 {}, {} over the {} target; median {}.** \
         Medians of the steps: {} from the kill to `Restarting worker` (the pidfd wakes \
         pidwatch, which observes and decides), {} more to `Stopped survivors`, and {} from \
         there to the new PID file.\n\n",
        thousands(big.workers),
        stats::show(pc.p99),
        stats::show(pc.p99.saturating_sub(P99_TARGET)),
        stats::show(P99_TARGET),
        stats::show(pc.p50),
        med(|s| s.detect),
        med(|s| s.survivors),
        med(|s| s.spawn)
    );
    let mut fixes: Vec<&str> = Vec::new();
    if let Some(floor0) = floor0
        && floor0 > P99_TARGET / 5
    {
        let _ = write!(
            s,
            "- *The wrapper.* Started alone, with `logs/` empty, it takes {} (median) to write \
             its PID file: {:.0} % of the {} budget before pidwatch has done anything",
            stats::show(floor0),
            floor0.as_secs_f64() / P99_TARGET.as_secs_f64() * 100.0,
            stats::show(P99_TARGET)
        );
        if let Some(Ok(rows)) = &results.floor
            && let Some(worst) = rows.iter().max_by_key(|r| r.logs)
            && worst.median > floor0 * 3
        {
            let _ = write!(
                s,
                "; with {} logs in `logs/`, as with that many workers running, it takes {} (the \
                 bench sweeps the logs to keep this out of the monitors' numbers)",
                thousands(worst.logs),
                stats::show(worst.median)
            );
        }
        s.push_str(".\n");
        fixes.push(
            "a wrapper that writes its PID file sooner: first, before anything that forks or \
             looks through `logs/`",
        );
    }
    let survivors = |size: &SizeResults| {
        size.pidwatch
            .as_ref()?
            .as_ref()
            .ok()?
            .breakdown
            .median(|s| s.survivors)
    };
    if let (Some(sb), Some(ss)) = (survivors(big), survivors(small))
        && big.workers > small.workers
        && sb > ss * 2
        && sb > P99_TARGET / 10
    {
        let _ = writeln!(
            s,
            "- *Finding the survivors.* The step to `Stopped survivors` grows with the processes \
             on the machine: {} with {} processes at {} workers, {} with {} at {}. To find the \
             old session's members, `spawn::stop_group` calls `Procfs::members_of`, which reads \
             `/proc/<pid>/stat` of every process on the machine.",
            stats::show(ss),
            thousands(small.processes),
            thousands(small.workers),
            stats::show(sb),
            thousands(big.processes),
            thousands(big.workers)
        );
        fixes.push(
            "finding the survivors without reading every process's stat file. The kernel \
             offers no list of a session's members; a list of a process's children \
             (`/proc/<pid>/task/<tid>/children`) exists only with CONFIG_PROC_CHILDREN, which \
             this kernel lacks, and is gone with a killed wrapper anyway. Ways that would: a \
             cgroup per worker (`cgroup.procs` lists exactly its processes, `cgroup.kill` stops \
             them at once; needs a delegated cgroup subtree, as systemd gives with \
             `Delegate=yes`), or the wrapper publishing its worker's process group so that \
             pidwatch pins the worker with a pidfd when it arms the watch and signals the \
             group with `pidfd_send_signal(PIDFD_SIGNAL_PROCESS_GROUP)` (Linux 6.9), keeping \
             the `/proc` scan as the fallback for processes that left the group",
        );
    }
    let p99 = |step: fn(&Steps) -> Duration| b.quantile(step, 0.99).map_or("-".into(), stats::show);
    let _ = write!(
        s,
        "\nThe tail (p95 {}, p99 {}) is the same steps stretched: their p99s are {} to \
         `Restarting worker`, {} to `Stopped survivors` and {} to the PID file, on two shared \
         cores that were {:.0} % busy during these kills (the bench's polling {:.0} %), with \
         {:.0} % stolen by the hypervisor.\n\n",
        stats::show(pc.p95),
        stats::show(pc.p99),
        p99(|s| s.detect),
        p99(|s| s.survivors),
        p99(|s| s.spawn),
        p.kills.load.busy_percent,
        p.kills.load.bench_percent,
        p.kills.load.steal_percent
    );
    if fixes.is_empty() {
        s.push_str(
            "No single step stands out; what is left is the cost of a fork, an exec and a \
             shell's start on this machine, and the noise of its shared cores.\n\n",
        );
    } else {
        let _ = writeln!(s, "What would close it: {}.\n", fixes.join("; and "));
    }
    s
}

fn ratio_analysis(big: &SizeResults, small: &SizeResults, floor0: Option<Duration>) -> String {
    let Some(r) = ratio(big) else {
        return String::new();
    };
    if r >= RATIO_TARGET {
        return String::new();
    }
    let Some(Ok(m)) = &big.monit else {
        return String::new();
    };
    let Some(mm) = stats::median(&m.kills.latencies()) else {
        return String::new();
    };
    let mut s = format!(
        "**c. Against monit: {r:.1}× at {} workers, {:.0} % of the {RATIO_TARGET:.0}× target.** \
         monit's median, {}, is set by its {} s cycle: a death waits on average about half a \
         cycle to be seen, then monit runs the start program. {RATIO_TARGET:.0}× asks pidwatch \
         for a median of {}",
        thousands(big.workers),
        r / RATIO_TARGET * 100.0,
        stats::show(mm),
        monit::CYCLE_SECONDS,
        stats::show(mm.div_f64(RATIO_TARGET))
    );
    if let Some(floor0) = floor0 {
        let _ = write!(
            s,
            ", of which the wrapper alone takes {}",
            stats::show(floor0)
        );
    }
    s.push('.');
    if small.workers < big.workers
        && let Some(rs) = ratio(small)
    {
        let _ = write!(
            s,
            " At {} workers the ratio is {rs:.1}×.",
            thousands(small.workers)
        );
    }
    s.push_str(
        " What would shorten pidwatch's steps in (b) closes this too; a faster wrapper helps \
         both monitors, but pidwatch's median by far the most.\n\n",
    );
    s
}

fn footprint_analysis(f: &Footprint, p: &PidwatchPhase) -> String {
    let mut s = String::new();
    let interval: f64 = pidwatch_phase::INTERVAL_SECONDS.parse().unwrap_or(30.0);
    let sweeps = (f.window.as_secs_f64() / interval).floor().max(1.0);
    if f.cpu_percent > CPU_TARGET_PERCENT {
        let per_sweep = f.sched_percent / 100.0 * f.window.as_secs_f64() / sweeps;
        let _ = write!(
            s,
            "**d. Idle CPU: {:.3} % of a core at {} workers, {:.3} points over the \
             {CPU_TARGET_PERCENT} % target.** Between events pidwatch sleeps in `epoll_wait`; \
             what it spends idle is its sweep every {interval:.0} s over every worker ({sweeps:.0} \
             in the window), about {} of CPU each: the work of a check without the process \
             start-up, so what closes (a) closes this too. A longer `--interval` would as well: \
             deaths are seen through pidfds, not by the sweep. (One clock tick is {:.3} % over \
             this window; the schedstat column has ns resolution.)\n\n",
            f.cpu_percent,
            thousands(f.workers),
            f.cpu_percent - CPU_TARGET_PERCENT,
            stats::show(Duration::from_secs_f64(per_sweep)),
            100.0 / crate::procs::ticks_per_second() as f64 / f.window.as_secs_f64()
        );
    }
    let peak = f.hwm_kib.max(p.hwm_after_kills_kib);
    if peak > RSS_TARGET_KIB {
        let _ = write!(
            s,
            "**d. Peak RSS: {} at {} workers, {} over the {} target.** It grows with the number \
             of workers watched (one pidfd watch, verdict and stream each).\n\n",
            mib(peak),
            thousands(f.workers),
            mib(peak - RSS_TARGET_KIB),
            mib(RSS_TARGET_KIB)
        );
    }
    s
}

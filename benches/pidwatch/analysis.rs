//! The part of the report that explains each missed target: by how much,
//! why (from this run's own numbers), and what would close it.

use std::fmt::Write as _;
use std::time::Duration;

use crate::check_cost::CheckCost;
use crate::latency::{Breakdown, Steps};
use crate::monit;
use crate::pidwatch_phase::{self, Containment, Footprint, PidwatchPhase};
use crate::report::{
    CHECK_TARGET, CHECK_TARGET_WORKERS, CONFIG_P99_TARGET, CONFIG_RSS_SHARE, CONFIG_START_TARGET,
    CPU_TARGET_PERCENT, P99_TARGET, RATIO_TARGET, RSS_TARGET_KIB, TARGET_CONTAINMENT,
    footprint_phase, marginal, mib, micros, peak_hwm_kib, ratio, run_of, thousands,
};
use crate::stats::{self, Percentiles};
use crate::supervisord::Comparison;
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
    if let Some((run, size)) = footprint_phase(plan, results) {
        let f = &run.footprint;
        s.push_str(&footprint_analysis(
            f,
            peak_hwm_kib(size).unwrap_or(f.hwm_kib),
        ));
    }
    if let Some(c) = &results.supervisord {
        s.push_str(&supervisord_analysis(c));
    }
    if let Some(f) = &results.api {
        s.push_str(&crate::api_load::analysis(f));
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
                 formats all 52 fields of the stat file for each read); most of the rest is the \
                 proof of identity: with no incarnation on record (a check that never acted), \
                 each live worker's `/proc/<pid>/cmdline` and `/proc/<pid>/environ` are read, \
                 which the kernel copies out of the process's memory; then the worker's task \
                 row (SQLite, the JSON of its metadata), its verdict and its entry in the JSON \
                 output. Where a monitor has recorded the incarnations, the wrapper is known by \
                 PID and start time and nothing more is read. What would close it: the workers \
                 are independent, so observing them on one thread per core (here {}) would \
                 divide most of the per-worker wall time by up to that number.",
                micros(lean),
                micros(files),
                std::thread::available_parallelism().map_or(1, |n| n.get())
            );
        }
    }
    s.push_str("\n\n");
    s
}

/// The medians of the three steps of one run, shown.
fn step_medians(b: &Breakdown) -> [String; 3] {
    let med = |step: fn(&Steps) -> Duration| b.median(step).map_or("-".into(), stats::show);
    [med(|s| s.detect), med(|s| s.survivors), med(|s| s.spawn)]
}

fn latency_analysis(
    big: &SizeResults,
    small: &SizeResults,
    floor0: Option<Duration>,
    results: &Results,
) -> String {
    let Some(p) = run_of(big, TARGET_CONTAINMENT) else {
        return String::new();
    };
    let Some(pc) = Percentiles::of(&p.kills.latencies()) else {
        return String::new();
    };
    if pc.p99 <= P99_TARGET {
        return String::new();
    }
    let b = &p.breakdown;
    let [detect, survivors, spawn] = step_medians(b);
    let mut s = format!(
        "**b. Restart latency at {} workers with containment ({}): p99 {}, {} over the {} \
         target; median {}.** Medians of the steps: {detect} from the kill to `Restarting \
         worker` (the pidfd wakes pidwatch, which observes the worker, its dead incarnation's \
         leftovers read from the cgroup's `cgroup.procs` with no process-table scan, and \
         decides), {survivors} more to `Stopped survivors` (the attempt counted in the state \
         DB, SIGTERM to each member of the cgroup pinned by a pidfd, the wait on the pidfds, \
         the cgroup's removal), and {spawn} from there to the new PID file (the worker \
         observed again, the work dir, the incarnation recorded, its cgroup made, the wrapper \
         created inside it with clone3 `CLONE_INTO_CGROUP` and exec'd, the wrapper's own \
         start).",
        thousands(big.workers),
        TARGET_CONTAINMENT.as_str(),
        stats::show(pc.p99),
        stats::show(pc.p99.saturating_sub(P99_TARGET)),
        stats::show(P99_TARGET),
        stats::show(pc.p50),
    );
    if let Some(ps) = run_of(big, Containment::Session)
        && let Some(pcs) = Percentiles::of(&ps.kills.latencies())
    {
        let [d, v, w] = step_medians(&ps.breakdown);
        let _ = write!(
            s,
            " Without containment (session) the restart takes p50 {}, p99 {}, and the steps \
             {d}, {v} and {w}: there no cgroup lists the leftovers, and every observe of a \
             worker without a live wrapper reads every process's stat and environ \
             (`observe::members::scan`, {} here with {} processes): in the observe before \
             `Restarting worker`, and again in the one after the stop that proves nothing of \
             the old incarnation is left, before the spawn.",
            stats::show(pcs.p50),
            stats::show(pcs.p99),
            big.scan.map_or("-".into(), |(t, _)| stats::show(t)),
            thousands(big.scan.map_or(big.processes, |(_, n)| n))
        );
    }
    s.push_str("\n\n");
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
    let session = run_of(big, Containment::Session);
    let costs = results.cgroup_costs.as_ref().and_then(|c| c.as_ref().ok());
    let step_med =
        |p: Option<&PidwatchPhase>, step: fn(&Steps) -> Duration| p?.breakdown.median(step);
    // What containment adds to a step, against the run without it.
    let extra =
        |step: fn(&Steps) -> Duration| match (step_med(Some(p), step), step_med(session, step)) {
            (Some(c), Some(w)) if c > w + Duration::from_millis(1) => Some((c, w)),
            _ => None,
        };
    if let Some((c, w)) = extra(|s| s.survivors) {
        let _ = write!(
            s,
            "- *Waiting for the cgroup to empty.* The step to `Stopped survivors` takes {} with \
             containment, {} without. `spawn::stop_members` calls `Cgroup::wait_empty` twice \
             (before and after its SIGKILL step, even when the cgroup is empty by then), and \
             each call makes an inotify instance on `cgroup.events` and closes it when done; \
             closing one waits until the kernel has released its marks \
             (`fsnotify_destroy_group`, an SRCU grace period), often milliseconds, while the \
             session path waits on the members' pidfds",
            stats::show(c),
            stats::show(w)
        );
        if let Some(k) = costs {
            let _ = write!(
                s,
                ". Measured here (table above): `stop_members` of one `sleep` by its cgroup {}, \
                 of the same `sleep` as a pinned member {}; call by call, `signal_members` {}, \
                 `wait_empty` until it exited {}, `wait_empty` again on the empty cgroup {}, \
                 `remove` {}; the close alone of an inotify instance on `cgroup.events` that \
                 has just reported the cgroup empty {} (median), {} at worst",
                stats::show(k.stop_cgroup.median),
                stats::show(k.stop_member.median),
                stats::show(k.signal.median),
                stats::show(k.wait_exit.median),
                stats::show(k.wait_again.median),
                stats::show(k.remove.median),
                stats::show(k.inotify_close.median),
                stats::show(k.inotify_close.max)
            );
        }
        s.push_str(".\n");
        fixes.push(
            "in `Cgroup::wait_empty`, reading `cgroup.events` before making an inotify instance \
             (an empty cgroup needs none) and keeping one instance for the monitor's life, or \
             waiting on the pidfds of the members `signal_members` just signalled, as the \
             session path does",
        );
    }
    let spawn_step = step_med(Some(p), |s| s.spawn);
    if let (Some(k), Some(c)) = (costs, spawn_step)
        && k.spawn_joining.median > k.spawn_plain.median + Duration::from_millis(1)
    {
        let _ = write!(
            s,
            "- *Joining the cgroup.* The step from `Stopped survivors` to the new PID file takes \
             {} with containment",
            stats::show(c)
        );
        if let Some(w) = step_med(session, |s| s.spawn) {
            let _ = write!(
                s,
                ", {} without (which reads the process table once more instead: {} a scan)",
                stats::show(w),
                big.scan.map_or("-".into(), |(t, _)| stats::show(t))
            );
        }
        let _ = writeln!(
            s,
            ". pidwatch creates the wrapper inside its cgroup (clone3 `CLONE_INTO_CGROUP`, \
             `act::child::spawn_into_cgroup`), which moves no process. Moving one instead (the \
             fallback before Linux 5.7: the child writes `0` to the cgroup's `cgroup.procs` \
             before exec) takes the kernel's `cgroup_threadgroup_rwsem` for writing, which \
             waits for an RCU grace period: measured here, a spawn that joins a new cgroup {} \
             (median; {} at worst), the same spawn without {}.",
            stats::show(k.spawn_joining.median),
            stats::show(k.spawn_joining.max),
            stats::show(k.spawn_plain.median)
        );
    }
    // A step of the run with containment that grows with the worker count.
    let step_of = |size: &SizeResults, step: fn(&Steps) -> Duration| {
        run_of(size, TARGET_CONTAINMENT)?.breakdown.median(step)
    };
    let grows = |step: fn(&Steps) -> Duration| match (step_of(big, step), step_of(small, step)) {
        (Some(sb), Some(ss))
            if big.workers > small.workers && sb > ss * 2 && sb > P99_TARGET / 10 =>
        {
            Some((ss, sb))
        }
        _ => None,
    };
    let grown: Vec<String> = [
        ("to `Restarting worker`", grows(|s| s.detect)),
        ("to the new PID file", grows(|s| s.spawn)),
    ]
    .into_iter()
    .filter_map(|(name, g)| {
        let (ss, sb) = g?;
        Some(format!(
            "{name} {} at {} workers, {} at {}",
            stats::show(ss),
            thousands(small.workers),
            stats::show(sb),
            thousands(big.workers)
        ))
    })
    .collect();
    if !grown.is_empty() {
        let _ = writeln!(
            s,
            "- *Steps that grow with the worker count, though the cgroup spares the \
             process-table scan*: {}. The pass a pidfd wake-up starts observes only the dead \
             worker, but reads the task DB whole (every stream's tasks and their JSON \
             metadata: one query), and the observe after the stop reads it whole again.",
            grown.join("; ")
        );
        fixes.push(
            "reading only the dead worker's stream (and what it depends on) from the task DB in \
             a pass scoped to it, so that a restart no longer costs a read of every worker's \
             tasks",
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
    let Some(r) = ratio(big, TARGET_CONTAINMENT) else {
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
        "**c. Against monit, with containment ({}): {r:.1}× at {} workers, {:.0} % of the \
         {RATIO_TARGET:.0}× target.** monit's median, {}, is set by its {} s cycle: a death \
         waits on average about half a cycle to be seen, then monit runs the start program. \
         {RATIO_TARGET:.0}× asks pidwatch for a median of {}",
        TARGET_CONTAINMENT.as_str(),
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
    if let Some(rs) = ratio(big, Containment::Session) {
        let _ = write!(s, " Without containment (session) it is {rs:.1}×.");
    }
    if small.workers < big.workers
        && let Some(rs) = ratio(small, TARGET_CONTAINMENT)
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

fn footprint_analysis(f: &Footprint, peak: u64) -> String {
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

/// e's missed targets, with this run's numbers.
fn supervisord_analysis(c: &Comparison) -> String {
    let mut s = String::new();
    let Ok(p) = &c.pidwatch else {
        return s;
    };
    let n = thousands(c.workers);
    if p.all_running > CONFIG_START_TARGET {
        let _ = write!(
            s,
            "**e. Start → all {n} running: {}, {} over the {} target**, {} per worker; the \
             machine was {:.0} % busy over the kills that followed.\n\n",
            stats::show(p.all_running),
            stats::show(p.all_running - CONFIG_START_TARGET),
            stats::show(CONFIG_START_TARGET),
            micros(p.all_running / c.workers.max(1) as u32),
            p.kills.load.busy_percent
        );
    }
    let lat = p.kills.latencies();
    if let Some(pp) = Percentiles::of(&lat)
        && pp.p99 > CONFIG_P99_TARGET
    {
        let over = lat.iter().filter(|d| **d > CONFIG_P99_TARGET).count();
        let _ = write!(
            s,
            "**e. Kill → new one running: p99 {}, {} over the {} target** (p50 {}, p95 {}); {over} \
             of {} kills took longer than the target, with the machine {:.0} % busy (the bench {:.0} \
             %, steal {:.0} %).\n\n",
            stats::show(pp.p99),
            stats::show(pp.p99 - CONFIG_P99_TARGET),
            stats::show(CONFIG_P99_TARGET),
            stats::show(pp.p50),
            stats::show(pp.p95),
            lat.len(),
            p.kills.load.busy_percent,
            p.kills.load.bench_percent,
            p.kills.load.steal_percent
        );
    }
    let Ok(sd) = &c.supervisord else {
        return s;
    };
    if let (Some(a), Some(b)) = (stats::median(&lat), stats::median(&sd.kills.latencies()))
        && a > b
    {
        let _ = write!(
            s,
            "**e. pidwatch's median kill → new one running, {}, is slower than supervisord's, \
             {}.**\n\n",
            stats::show(a),
            stats::show(b)
        );
    }
    let share = p.idle.rss_kib as f64 / sd.idle.rss_kib.max(1) as f64;
    if share > CONFIG_RSS_SHARE {
        let _ = write!(
            s,
            "**e. VmRSS: pidwatch {} is {:.0} % of supervisord's {}, over the third of it the \
             target allows** ({:.1} KiB per worker against {:.1}).\n\n",
            mib(p.idle.rss_kib),
            share * 100.0,
            mib(sd.idle.rss_kib),
            p.idle.rss_kib as f64 / c.workers.max(1) as f64,
            sd.idle.rss_kib as f64 / c.workers.max(1) as f64
        );
    }
    s
}

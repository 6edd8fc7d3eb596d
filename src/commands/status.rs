//! `pidwatch status`: the report of one observation, with what `check`
//! leaves out (uptime, live processes, memory, CPU, attempts, the newest
//! journal event), once or redrawn (`--watch`).
//!
//! [`status_report`] builds the report from an [`Observer`] and the state
//! DB, so that whoever holds them (this command, or the long-running
//! monitor answering a status request) gets the same document.

use std::collections::BTreeMap;

use chrono::Utc;
use sysinfo::{ProcessRefreshKind, ProcessesToUpdate, System};

use crate::cli::{GlobalArgs, StatusArgs};
use crate::config::{Environment, Settings};
use crate::core::{Alive, Member, Verdict, WorkerSnapshot, decide, last_ending, liveness};
use crate::error::{EXIT_FAILURES, EXIT_OK, Error, Result};
use crate::observe::cgroup::Cgroup;
use crate::observe::{Observer, ProcessTable};
use crate::render::{LastEvent, LastExit, ProcessJson, Report, StatusExtra};
use crate::store::statedb::{StateDb, format_time};

/// `pidwatch status`: each worker's verdict, PID, uptime, live processes
/// (its incarnation's, or an orphaned or given-up worker's leftovers), their
/// memory and CPU (from the incarnation's cgroup where it has one, else the
/// processes summed through sysinfo), attempts against the cap, and newest
/// journal event. Exit code as `check`.
///
/// Errors: as `check`.
pub fn status(global: &GlobalArgs, args: &StatusArgs, env: &Environment) -> Result<i32> {
    if !args.watch {
        return status_once(global, args, env);
    }
    // --watch: redraw in place every second until SIGINT or SIGTERM.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, std::sync::Arc::clone(&stop))
            .map_err(|e| Error::CannotCheck(format!("installing signal handlers: {e}")))?;
    }
    let mut code = EXIT_OK;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        crate::output::print_stdout("\x1b[H\x1b[2J");
        code = status_once(global, args, env)?;
        for _ in 0..10 {
            if stop.load(std::sync::atomic::Ordering::Relaxed) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
    Ok(code)
}

fn status_once(global: &GlobalArgs, args: &StatusArgs, env: &Environment) -> Result<i32> {
    let settings = super::settings(global, env, args.max_restarts)?;
    let observer = match Observer::open(&settings) {
        Err(Error::NoActiveInitiative(_)) => {
            crate::commands::check::print_nothing_to_watch(&settings);
            return Ok(EXIT_OK);
        }
        other => other?,
    };
    let state = StateDb::open_existing(&settings.paths.state_db)?;
    let (report, code) = status_report(&settings, &observer, state.as_ref())?;
    if !settings.output.quiet {
        for w in &report.warnings {
            crate::output::print_stderr(&format!(
                "pidwatch: warning: {}",
                crate::store::monitor_log::one_line(w)
            ));
        }
    }
    crate::commands::check::print_report(&settings, &report);
    Ok(code)
}

/// Builds the `status` report of one observation by `observer`, with the
/// restart records, incarnations and journal of `state` (none: nothing
/// recorded yet), and the exit code `check` would give (0, or 1 when a
/// worker is dead or given up). Prints nothing: the warnings are in the
/// report. A long-running monitor answers status requests with it from
/// its own observer.
///
/// Errors: the pass cannot observe (as `check`, exit 3), or the journal
/// cannot be read.
pub fn status_report(
    settings: &Settings,
    observer: &Observer,
    state: Option<&StateDb>,
) -> Result<(Report, i32)> {
    let observation = observer.observe(state, None)?;
    let decision = decide(&settings.policy, &observation.snapshot);
    let now = observation.snapshot.now;

    let mut table = ProcessTable::default();
    let processes: BTreeMap<String, Vec<Member>> = observation
        .snapshot
        .workers
        .iter()
        .map(|w| (w.id.clone(), observer.live_processes(w, &mut table)))
        .collect();
    let pids: Vec<sysinfo::Pid> = processes
        .values()
        .flatten()
        .map(|m| sysinfo::Pid::from_u32(m.process.pid as u32))
        .collect();
    // Resource figures are extras: without them, status still reports.
    let mut system = System::new().ok();
    if let Some(system) = system.as_mut() {
        system.refresh_processes_specifics(
            ProcessesToUpdate::Some(&pids),
            false,
            ProcessRefreshKind::nothing().with_memory().with_cpu(),
        );
    }

    let mut extras: BTreeMap<String, StatusExtra> = BTreeMap::new();
    for (w, d) in observation.snapshot.workers.iter().zip(&decision.workers) {
        let last_event = match state {
            Some(db) => db.last_event(&observer.scope().id, &w.id)?,
            None => None,
        };
        let members = processes.get(&w.id).map(Vec::as_slice).unwrap_or_default();
        let view = observer.source.program_view(&w.id);
        let mut extra = StatusExtra {
            attempts: w.record.attempts,
            // A program has its own cap.
            max_restarts: w
                .program
                .as_ref()
                .map_or(settings.policy.max_restarts, |p| p.policy.max_restarts),
            last_event: last_event.map(|e| LastEvent {
                at: format_time(e.at),
                kind: e.kind,
                detail: e.detail,
            }),
            incarnation: w.incarnation.as_ref().map(|i| i.id.clone()),
            processes: members
                .iter()
                .map(|m| ProcessJson {
                    pid: m.process.pid,
                    comm: m.comm.clone(),
                })
                .collect(),
            instance: view.as_ref().and_then(|v| v.instance.clone()),
            mode: view.as_ref().map(|v| v.mode),
            command: view.map(|v| v.command),
            last_exit: last_ending(w).map(|e| LastExit {
                at: format_time(e.at),
                exit_status: e.exit_status,
                signal: e.signal.clone(),
                stopped: e.stopped,
            }),
            ..StatusExtra::default()
        };
        if d.verdict == Verdict::Running {
            let started = match liveness(w).0 {
                Ok(Alive::Current { started, .. } | Alive::Adoptable { started, .. }) => {
                    Some(started)
                }
                _ => None,
            };
            extra.uptime_seconds = started.map(|s| (now - s).num_seconds().max(0) as u64);
        }
        resources(&mut extra, w, members, system.as_ref(), now);
        extras.insert(w.id.clone(), extra);
    }

    let mut warnings = observation.warnings;
    warnings.extend(decision.warnings.iter().cloned());
    let report = Report::new(
        observer.scope(),
        &observation.snapshot,
        &decision,
        warnings,
        extras,
    );
    let code = if decision.has_failures() {
        EXIT_FAILURES
    } else {
        EXIT_OK
    };
    Ok((report, code))
}

/// Fills a worker's memory and CPU: from its incarnation's cgroup when it
/// has one (every process of it, the worker's own included), else the sum
/// over its live processes.
fn resources(
    extra: &mut StatusExtra,
    worker: &WorkerSnapshot,
    members: &[Member],
    system: Option<&System>,
    now: chrono::DateTime<Utc>,
) {
    if members.is_empty() {
        return;
    }
    let inc = worker.incarnation.as_ref();
    let lifetime = inc.map(|i| (now - i.started_at).num_milliseconds().max(1) as f64 / 1000.0);
    let processes: Vec<&sysinfo::Process> = members
        .iter()
        .filter_map(|m| system?.process(sysinfo::Pid::from_u32(m.process.pid as u32)))
        .collect();
    let rss: u64 = processes.iter().map(|p| p.memory()).sum();
    let cpu_ms: u64 = processes.iter().map(|p| p.accumulated_cpu_time()).sum();
    let run_s = processes.iter().map(|p| p.run_time()).max().unwrap_or(0) as f64;
    extra.resources_from = Some("processes".into());
    extra.rss_bytes = (!processes.is_empty()).then_some(rss);
    extra.cpu_seconds = (!processes.is_empty()).then_some(cpu_ms as f64 / 1000.0);
    if let Some(cgroup) = inc.and_then(|i| i.cgroup.as_deref()) {
        let cg = Cgroup::at(std::path::PathBuf::from(cgroup));
        if let Ok(usec) = cg.cpu_usage_usec() {
            extra.resources_from = Some("cgroup".into());
            extra.cpu_seconds = Some(usec as f64 / 1e6);
            if let Ok(Some(bytes)) = cg.memory_current() {
                extra.rss_bytes = Some(bytes);
            }
        }
    }
    let span = match (extra.resources_from.as_deref(), lifetime) {
        (Some("cgroup"), Some(life)) => life,
        _ => run_s,
    };
    extra.cpu_percent = match extra.cpu_seconds {
        Some(cpu) if span > 0.0 => Some((cpu * 100.0 / span) as f32),
        _ => None,
    };
}

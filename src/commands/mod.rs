//! The small commands around the state DB: `status`, `history`, `reset`.

pub mod check;
pub mod demo;
pub mod programs;

use std::collections::BTreeMap;

use chrono::Utc;
use sysinfo::{ProcessRefreshKind, ProcessesToUpdate, System};

use crate::cli::{GlobalArgs, HistoryArgs, ResetArgs, RestartArgs, StatusArgs};
use crate::config::{self, Environment, Settings};
use crate::core::{Alive, Member, Verdict, WorkerSnapshot, decide, liveness};
use crate::error::{EXIT_FAILURES, EXIT_OK, Error, Result};
use crate::observe::cgroup::Cgroup;
use crate::observe::{self, Observer, ProcessTable};
use crate::render::{LastEvent, ProcessJson, Report, StatusExtra};
use crate::store::statedb::{Event, EventKind, StateDb, format_time};

fn settings(global: &GlobalArgs, env: &Environment, max_restarts: u32) -> Result<Settings> {
    let restart = RestartArgs {
        max_restarts,
        ..RestartArgs::default()
    };
    config::resolve(global, &restart, env)
}

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
    let settings = settings(global, env, args.max_restarts)?;
    let observer = match Observer::open(&settings) {
        Err(Error::NoActiveInitiative(_)) => {
            crate::commands::check::print_nothing_to_watch(&settings);
            return Ok(EXIT_OK);
        }
        other => other?,
    };
    let state = StateDb::open_existing(&settings.paths.state_db)?;
    let observation = observer.observe(state.as_ref(), None)?;
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
        let last_event = match &state {
            Some(db) => db.last_event(&observer.scope().id, &w.id)?,
            None => None,
        };
        let members = processes.get(&w.id).map(Vec::as_slice).unwrap_or_default();
        let mut extra = StatusExtra {
            attempts: w.record.attempts,
            max_restarts: settings.policy.max_restarts,
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
    for w in &warnings {
        if !settings.output.quiet {
            crate::output::print_stderr(&format!(
                "pidwatch: warning: {}",
                crate::store::monitor_log::one_line(w)
            ));
        }
    }
    let report = Report::new(
        observer.scope(),
        &observation.snapshot,
        &decision,
        warnings,
        extras,
    );
    crate::commands::check::print_report(&settings, &report);
    Ok(if decision.has_failures() {
        EXIT_FAILURES
    } else {
        EXIT_OK
    })
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

/// `pidwatch history [WORKER]`: the journal, oldest first, of the watched
/// initiative (of all of them when no initiative can be found).
///
/// Errors: the state DB cannot be read.
pub fn history(global: &GlobalArgs, args: &HistoryArgs, env: &Environment) -> Result<i32> {
    let settings = settings(global, env, 2)?;
    let initiative = observe::resolve_initiative(&settings).ok();
    let events: Vec<Event> = match StateDb::open_existing(&settings.paths.state_db)? {
        Some(db) => db.history(
            initiative.as_ref().map(|i| i.id.as_str()),
            args.worker.as_deref(),
            args.limit,
        )?,
        None => Vec::new(),
    };
    if settings.output.json {
        let text = serde_json::to_string_pretty(&events).unwrap_or_default();
        crate::output::print_stdout(&format!("{text}\n"));
    } else if !settings.output.quiet {
        let mut out = String::new();
        if events.is_empty() {
            out.push_str("no events recorded\n");
        }
        for e in &events {
            let local = e.at.with_timezone(&chrono::Local);
            out.push_str(&format!(
                "{}  {:<10} {:<18}",
                local.format("%Y-%m-%d %H:%M:%S%.3f"),
                e.worker.as_deref().unwrap_or("-"),
                e.kind
            ));
            if let Some(pid) = e.pid {
                out.push_str(&format!(" pid={pid}"));
            }
            if let Some(attempt) = e.attempt {
                out.push_str(&format!(" attempt={attempt}"));
            }
            if let Some(detail) = &e.detail {
                out.push_str(&format!(" {detail}"));
            }
            out.push('\n');
        }
        crate::output::print_stdout(&out);
    }
    Ok(EXIT_OK)
}

/// `pidwatch reset WORKER`: clears the worker's attempts and given-up mark
/// in the watched initiative, and journals `reset`. A running monitor sees it
/// at its next pass (SIGUSR1 makes that at once).
///
/// Errors: no initiative can be found; the state DB cannot be written.
pub fn reset(global: &GlobalArgs, args: &ResetArgs, env: &Environment) -> Result<i32> {
    let settings = settings(global, env, 2)?;
    let initiative = observe::resolve_initiative(&settings)?;
    let db = StateDb::open(&settings.paths.state_db)?;
    let known = db.knows(&initiative.id, &args.worker)?;
    if !known {
        return Err(Error::Config(format!(
            "worker {} has no restart record in initiative {} ({}); nothing to reset",
            args.worker,
            initiative.id,
            settings.paths.state_db.display()
        )));
    }
    db.reset(
        Utc::now(),
        &initiative.id,
        &args.worker,
        EventKind::Reset,
        true,
    )?;
    if settings.output.json {
        crate::output::print_stdout(&format!(
            "{}\n",
            serde_json::json!({"worker": args.worker, "initiative": initiative.id, "reset": true})
        ));
    } else if !settings.output.quiet {
        crate::output::print_stdout(&format!(
            "{}: restart attempts and given-up mark cleared (initiative {})\n",
            args.worker, initiative.name
        ));
    }
    Ok(EXIT_OK)
}

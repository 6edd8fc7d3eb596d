//! The small commands around the state DB: `status`, `history`, `reset`.

pub mod check;
pub mod demo;

use std::collections::BTreeMap;

use chrono::Utc;
use sysinfo::{ProcessRefreshKind, ProcessesToUpdate, System};

use crate::cli::{GlobalArgs, HistoryArgs, ResetArgs, RestartArgs, StatusArgs};
use crate::config::{self, Environment, Settings};
use crate::core::{ProcessReading, Verdict, decide};
use crate::error::{EXIT_FAILURES, EXIT_OK, Error, Result};
use crate::observe::{self, Observer};
use crate::render::{LastEvent, Report, StatusExtra};
use crate::store::statedb::{Event, EventKind, StateDb, format_time};

fn settings(global: &GlobalArgs, env: &Environment, max_restarts: u32) -> Result<Settings> {
    let restart = RestartArgs {
        max_restarts,
        ..RestartArgs::default()
    };
    config::resolve(global, &restart, env)
}

/// `pidwatch status`: each worker's verdict, PID, uptime, RSS and CPU (of the
/// running ones, through sysinfo, refreshing only their PIDs), attempts
/// against the cap, and newest journal event. Exit code as `check`.
///
/// Errors: as `check`.
pub fn status(global: &GlobalArgs, args: &StatusArgs, env: &Environment) -> Result<i32> {
    let settings = settings(global, env, args.max_restarts)?;
    let observer = Observer::open(&settings)?;
    let state = StateDb::open_existing(&settings.paths.state_db)?;
    let observation = observer.observe(state.as_ref(), None)?;
    let decision = decide(&settings.policy, &observation.snapshot);

    let running: Vec<(String, i32, chrono::DateTime<Utc>)> = observation
        .snapshot
        .workers
        .iter()
        .zip(&decision.workers)
        .filter(|(_, d)| d.verdict == Verdict::Running)
        .filter_map(|(w, d)| match (&w.process, d.pid) {
            (Some(ProcessReading::Alive(info)), Some(pid)) => {
                Some((w.id.clone(), pid, info.start_time))
            }
            _ => None,
        })
        .collect();
    let pids: Vec<sysinfo::Pid> = running
        .iter()
        .map(|(_, pid, _)| sysinfo::Pid::from_u32(*pid as u32))
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

    let now = observation.snapshot.now;
    let mut extras: BTreeMap<String, StatusExtra> = BTreeMap::new();
    for w in &observation.snapshot.workers {
        let last_event = match &state {
            Some(db) => db.last_event(&observer.initiative.id, &w.id)?,
            None => None,
        };
        extras.insert(
            w.id.clone(),
            StatusExtra {
                attempts: w.record.attempts,
                max_restarts: settings.policy.max_restarts,
                last_event: last_event.map(|e| LastEvent {
                    at: format_time(e.at),
                    kind: e.kind,
                    detail: e.detail,
                }),
                ..StatusExtra::default()
            },
        );
    }
    for (id, pid, started) in &running {
        let extra = extras.entry(id.clone()).or_default();
        extra.uptime_seconds = Some((now - *started).num_seconds().max(0) as u64);
        let process = system
            .as_ref()
            .and_then(|s| s.process(sysinfo::Pid::from_u32(*pid as u32)));
        if let Some(process) = process {
            extra.rss_bytes = Some(process.memory());
            let run_ms = process.run_time().saturating_mul(1000);
            extra.cpu_percent =
                (run_ms > 0).then(|| process.accumulated_cpu_time() as f32 * 100.0 / run_ms as f32);
        }
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
        &observer.initiative,
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

//! The small commands around the state DB: `status` (in [`mod@status`]),
//! `metrics` (in [`mod@metrics`]), `history`, `reset`, `audit` (in [`mod@audit`]).

pub mod audit;
pub mod check;
pub mod demo;
pub mod metrics;
pub mod programs;
pub mod status;

use chrono::Utc;

pub use audit::audit;
pub use status::{current_report, status, status_report};

use crate::cli::{GlobalArgs, HistoryArgs, ResetArgs, RestartArgs};
use crate::config::{self, Environment, Settings};
use crate::error::{EXIT_OK, Error, Result};
use crate::observe;
use crate::store::statedb::{Event, EventKind, StateDb};

fn settings(global: &GlobalArgs, env: &Environment, max_restarts: u32) -> Result<Settings> {
    let restart = RestartArgs {
        max_restarts,
        ..RestartArgs::default()
    };
    config::resolve(global, &restart, env)
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

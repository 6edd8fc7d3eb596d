//! `pidwatch check`: the pipeline run once.

use crate::act::Placement;
use crate::config::Settings;
use crate::error::{EXIT_FAILURES, EXIT_OK, Error, Result};
use crate::observe::Observer;
use crate::pass;
use crate::render::Report;
use crate::store::monitor_log::{Level, MonitorLog, one_line};
use crate::store::statedb::StateDb;

/// Opens the monitor log; when that fails the check goes on, says why on
/// stderr, and logs to nowhere.
pub fn open_log(settings: &Settings) -> MonitorLog {
    let path = &settings.paths.log_file;
    MonitorLog::open(path, None).unwrap_or_else(|e| {
        crate::output::print_stderr(&format!(
            "pidwatch: warning: cannot open {}: {e}",
            path.display()
        ));
        MonitorLog::console_only(path, None)
    })
}

/// Writes the lines the original wrote for one pass: `Found <n> dead
/// worker(s): …` (WARNING) or `All workers healthy`, then `Auto-restart
/// disabled. …` when restarting is off and some worker is dead.
pub fn log_pass_summary(log: &mut MonitorLog, failing: &[&str], auto_restart: bool) {
    if failing.is_empty() {
        log.log(Level::Info, "All workers healthy");
    } else {
        log.log(
            Level::Warning,
            &format!(
                "Found {} dead worker(s): {}",
                failing.len(),
                failing.join(", ")
            ),
        );
        if !auto_restart {
            log.log(
                Level::Info,
                "Auto-restart disabled. Use --auto-restart to enable.",
            );
        }
    }
}

/// Prints warnings on stderr (unless quiet) and writes them to the log.
pub fn report_warnings(log: &mut MonitorLog, warnings: &[String], quiet: bool) {
    for warning in warnings {
        log.file_only(Level::Warning, warning);
        if !quiet {
            crate::output::print_stderr(&format!("pidwatch: warning: {}", one_line(warning)));
        }
    }
}

/// What the original said when the memory DB names no active initiative
/// (all done, or none begun): nothing to watch, which is not a failure.
pub const NO_ACTIVE_INITIATIVE: &str = "No active initiative found";

/// Prints that there is nothing to watch: the line, or under `--json` the
/// usual document with no initiative and no workers.
pub fn print_nothing_to_watch(settings: &Settings) {
    crate::output::print_stdout(&nothing_to_watch_text(settings));
}

/// What [`print_nothing_to_watch`] prints.
pub fn nothing_to_watch_text(settings: &Settings) -> String {
    let out = &settings.output;
    if out.json {
        let doc = serde_json::json!({
            "initiative": null,
            "workers": [],
            "summary": crate::render::Summary::default(),
            "warnings": [],
        });
        format!(
            "{}\n",
            serde_json::to_string_pretty(&doc).unwrap_or_default()
        )
    } else if !out.quiet {
        format!("{NO_ACTIVE_INITIATIVE}\n")
    } else {
        String::new()
    }
}

/// Prints a pass's result: JSON, the table, or nothing under `--quiet`.
pub fn print_report(settings: &Settings, report: &Report) {
    crate::output::print_stdout(&report_text(settings, report));
}

/// What [`print_report`] prints.
pub fn report_text(settings: &Settings, report: &Report) -> String {
    let out = &settings.output;
    if out.json {
        format!("{}\n", report.to_json())
    } else if !out.quiet {
        report.to_table(out.color)
    } else {
        String::new()
    }
}

/// Runs one check and returns the exit code: 0 when no worker is dead or
/// given up, 1 otherwise (also when `--auto-restart` restarted it).
///
/// Errors: those of [`Observer::open`] and the pass (exit 3), a held lock
/// (exit 2), `--containment cgroup` where no cgroup can be had (exit 2).
pub fn run(settings: &Settings) -> Result<i32> {
    let observer = match Observer::open(settings) {
        Err(Error::NoActiveInitiative(_)) => {
            let mut log = open_log(settings);
            log.file_only(Level::Info, NO_ACTIVE_INITIATIVE);
            print_nothing_to_watch(settings);
            return Ok(EXIT_OK);
        }
        other => other?,
    };
    let mut log = open_log(settings);
    log.file_only(
        Level::Info,
        &format!("Monitoring initiative: {}", observer.scope().name),
    );

    let acting = settings.policy.auto_restart && !settings.spawn.dry_run;
    if acting && let Err(why) = observer.source.check_spawn() {
        log.file_only(Level::Error, &why);
        return Err(Error::Config(why));
    }
    // The lock is taken before reading, so that the view acted upon is not
    // one another monitor is changing.
    let _lock = if acting {
        Some(crate::daemon::lock::acquire(&settings.paths.lock_file)?)
    } else {
        None
    };
    let state = if acting {
        Some(StateDb::open(&settings.paths.state_db)?)
    } else {
        StateDb::open_existing(&settings.paths.state_db)?
    };
    let placement = if acting {
        let (placement, line) =
            Placement::choose(settings.spawn.containment).map_err(Error::Config)?;
        log.file_only(Level::Info, &line);
        placement
    } else {
        Placement::Session
    };
    let ctx = pass::Context {
        settings,
        observer: &observer,
        state: state.as_ref(),
        placement: &placement,
    };
    let mut pass = pass::observe_and_decide(&ctx, None)?;
    report_warnings(&mut log, &pass.warnings, settings.output.quiet);
    let failing: Vec<&str> = pass
        .decision
        .workers
        .iter()
        .filter(|w| w.verdict.is_failure())
        .map(|w| w.id.as_str())
        .collect();
    log_pass_summary(&mut log, &failing, settings.policy.auto_restart);
    if settings.policy.auto_restart && !settings.output.quiet && !settings.output.json {
        log.set_echo(Some(settings.output.console()));
    }
    let acted = pass::act(&ctx, &mut pass, &mut log, None);
    log.set_echo(None);
    acted?;

    let report = Report::new(
        observer.scope(),
        &pass.snapshot,
        &pass.decision,
        pass.warnings.clone(),
        Default::default(),
    );
    print_report(settings, &report);
    Ok(if pass.decision.has_failures() {
        EXIT_FAILURES
    } else {
        EXIT_OK
    })
}

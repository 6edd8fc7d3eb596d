//! `pidwatch metrics`: the workers' state as Prometheus metrics, from one
//! look like `status`'s, printed or written for node_exporter's textfile
//! collector (`--textfile`), for hosts that run `check` from a timer rather
//! than a resident monitor (whose `GET /metrics` has more: its passes,
//! respawn latencies and heals).

use std::path::Path;

use crate::cli::{GlobalArgs, MetricsArgs};
use crate::config::{self, Environment};
use crate::error::{EXIT_OK, Error, Result};
use crate::metrics::{Format, exposition};
use crate::render::{InitiativeJson, Report, Summary};

/// The mode of a written textfile: node_exporter may run as another user.
const TEXTFILE_MODE: u32 = 0o644;

/// `pidwatch metrics [--textfile PATH]`: the metrics of the report
/// `status` would show (a running monitor's, else one observation), in
/// the Prometheus text format, on stdout (nothing under `--quiet`) or
/// written to `PATH` atomically (a temp file beside it, renamed over it,
/// mode 0644, never through a symlink). Nothing to watch (no active
/// initiative) is no worker, exit 0. Exit code as `status`; a look that
/// fails leaves the file as it was.
///
/// Errors: `--json` (exit 2); as `status`; the file cannot be written
/// (a symlink there: exit 2).
pub fn run(global: &GlobalArgs, args: &MetricsArgs, env: &Environment) -> Result<i32> {
    let settings = super::settings(global, env, args.max_restarts)?;
    if settings.output.json {
        return Err(Error::Config(
            "metrics has no --json output: it prints the Prometheus text format; \
             `pidwatch status --json` has the same facts"
                .into(),
        ));
    }
    let (report, code) = super::current_report(&settings)?.unwrap_or_else(|| (nothing(), EXIT_OK));
    if !settings.output.quiet {
        super::status::print_warnings(&report.warnings);
    }
    let text = exposition(&report, None, Format::Prometheus);
    match &args.textfile {
        Some(path) => write_textfile(&config::absolute(&env.cwd, path), &text)?,
        None if !settings.output.quiet => crate::output::print_stdout(&text),
        None => {}
    }
    Ok(code)
}

/// The report of nothing to watch: no worker.
fn nothing() -> Report {
    Report {
        initiative: InitiativeJson {
            id: String::new(),
            name: String::new(),
        },
        workers: Vec::new(),
        summary: Summary::default(),
        warnings: Vec::new(),
        auto_heal: None,
        last_heal: None,
    }
}

/// Replaces `path` with `text` atomically, so that node_exporter never
/// reads half a file.
///
/// Errors: a symlink at `path` (exit 2); the folder or the file cannot be
/// written.
fn write_textfile(path: &Path, text: &str) -> Result<()> {
    crate::store::safe_fs::write_atomically(path, text.as_bytes(), TEXTFILE_MODE)
        .map_err(|e| Error::io("writing the metrics to", path, e))
}

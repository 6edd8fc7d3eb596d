//! pidwatch: a PID-file watchdog for Linux.
//!
//! # Theory of operation
//!
//! pidwatch watches workers that it may not have started, through the PID
//! files they leave. Each pass has three steps:
//!
//! - **observe** ([`observe`]) reads the world into a plain [`core::Snapshot`]:
//!   each worker's PID file ([`pidfile`]), the process behind it
//!   (`kill(pid, 0)` and `/proc/<pid>/stat`: state, start time, process group;
//!   [`procfs`]), its tasks and dependencies in the Task Copilot DB
//!   ([`taskdb`]), its restart history ([`statedb`]), and `now`.
//! - **decide** ([`core::decide`]) is pure: it gives each worker a verdict and
//!   plans restarts under the restart cap and backoff.
//! - **act** ([`act`]) stops the survivors of a dead worker's session, spawns
//!   the wrapper ([`spawn`]), waits for its new PID file, and journals every
//!   step in the state DB and `monitor.log` ([`monitor_log`]).
//!
//! `pidwatch check` runs the pipeline once ([`check`]); `pidwatch run` repeats
//! it on events: a worker's exit seen through its pidfd, a change in the PID
//! folder seen through inotify, a signal, or the sweep timer ([`run`]).

pub mod act;
pub mod check;
pub mod cli;
pub mod commands;
pub mod config;
pub mod core;
pub mod demo;
pub mod error;
pub mod lock;
pub mod monitor_log;
pub mod notify;
pub mod observe;
pub mod pidfile;
pub mod procfs;
pub mod render;
pub mod run;
pub mod signals;
pub mod spawn;
pub mod statedb;
pub mod taskdb;

use std::io::Write;

use clap::Parser;

use crate::cli::{CheckArgs, Cli, Command};
use crate::config::Environment;
use crate::error::{EXIT_USAGE, Result};

/// The wrapper script, carried in the binary for `pidwatch wrapper` and the demo.
pub const WRAPPER_SCRIPT: &str = include_str!("../wrapper/worker-wrapper.sh");

/// Writes to stdout; a closed pipe (`pidwatch check | head`) ends output
/// quietly, like any Unix tool.
pub fn print_stdout(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|_| out.flush());
}

/// Writes a line to stderr (a newline is added); a closed or broken stderr
/// is ignored, so that a lost terminal never stops the watchdog.
pub fn print_stderr(line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = err
        .write_all(line.as_bytes())
        .and_then(|_| err.write_all(b"\n"));
}

/// Parses the command line, runs the command, and returns the exit code.
pub fn main_entry() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { EXIT_USAGE } else { 0 };
        }
    };
    match dispatch(cli, &Environment::current()) {
        Ok(code) => code,
        Err(e) => {
            print_stderr(&format!("pidwatch: error: {e}"));
            e.exit_code()
        }
    }
}

/// Runs one parsed command line against an environment.
///
/// Errors: whatever the command returns; [`error::Error::exit_code`] maps it.
pub fn dispatch(cli: Cli, env: &Environment) -> Result<i32> {
    let global = cli.global;
    match cli.command.unwrap_or(Command::Check(CheckArgs::default())) {
        Command::Check(args) => check::run(&config::resolve(&global, &args.restart, env)?),
        Command::Run(args) => run::run(&config::resolve(&global, &args.restart, env)?, &args),
        Command::Status(args) => commands::status(&global, &args, env),
        Command::History(args) => commands::history(&global, &args, env),
        Command::Reset(args) => commands::reset(&global, &args, env),
        Command::Demo(args) => demo::run(&args, config::color_enabled(&global, env)),
        Command::Wrapper => {
            print_stdout(WRAPPER_SCRIPT);
            Ok(0)
        }
    }
}

//! pidwatch: a PID-file watchdog for Linux.
//!
//! # Theory of operation
//!
//! pidwatch watches workers that it may not have started, through the PID
//! files they leave, and decides from what it can prove (ARCHITECTURE.md).
//! Each pass ([`pass`]) has three steps:
//!
//! - **observe** ([`observe`]) reads the world into a plain [`core::Snapshot`]:
//!   each worker's PID file ([`observe::pidfile`]) and what the process behind
//!   it proves to be (`/proc/<pid>/stat`, `cmdline`, `environ`;
//!   [`observe::procfs`]), its current incarnation and its wrapper (the state
//!   DB, [`store::statedb`]), the live processes of earlier incarnations (a
//!   cgroup, [`observe::cgroup`], or one read of the process table,
//!   [`observe::members`]), how its last run ended ([`observe::exitfile`]),
//!   its tasks and dependencies ([`observe::taskdb`]), and `now`.
//! - **decide** ([`core::decide`]) is pure: it gives each worker a verdict and
//!   moves each restart along its state machine under the restart cap and
//!   backoff.
//! - **act** ([`act`]) carries the actions out (stop an earlier incarnation's
//!   proved processes, spawn a new one in its cgroup or session, adopt one
//!   started by someone else), reports facts back to the pass, and journals
//!   every step in the state DB and `monitor.log` ([`store::monitor_log`]).
//!
//! `pidwatch check` runs a pass once ([`commands::check`]); `pidwatch run`
//! runs one on events: a wrapper's exit seen through its pidfd, a change in
//! the PID folder seen through inotify, a signal, or the sweep timer
//! ([`daemon`]).

pub mod act;
pub mod cli;
pub mod commands;
pub mod config;
pub mod control;
pub mod core;
pub mod daemon;
pub mod error;
pub mod metrics;
pub mod observe;
pub mod output;
pub mod pass;
pub mod render;
pub mod source;
pub mod store;

use clap::{CommandFactory, Parser};

use crate::cli::{CheckArgs, Cli, Command};
use crate::config::Environment;
use crate::error::{EXIT_USAGE, Result};

/// The wrapper script, carried in the binary for `pidwatch wrapper` and the demo.
pub const WRAPPER_SCRIPT: &str = include_str!("../wrapper/worker-wrapper.sh");

/// Parses the command line, runs the command, and returns the exit code.
pub fn main_entry() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { EXIT_USAGE } else { 0 };
        }
    };
    let json = cli.global.json;
    match dispatch(cli, &Environment::current()) {
        Ok(code) => code,
        Err(e) => {
            output::print_stderr(&format!("pidwatch: error: {e}"));
            if json {
                output::print_stdout(&format!("{}\n", e.to_json()));
            }
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
        Command::Check(args) => {
            commands::check::run(&config::resolve(&global, &args.restart, env)?)
        }
        Command::Run(mut args) => {
            // The monitor of a config file's workers is what keeps them
            // running: it always restarts (their restart mode says when).
            if config::find_config(&global, env).is_some() {
                args.restart.auto_restart = true;
            }
            daemon::run(&config::resolve(&global, &args.restart, env)?, &args)
        }
        Command::Status(args) => commands::status(&global, &args, env),
        Command::Metrics(args) => commands::metrics::run(&global, &args, env),
        Command::History(args) => commands::history(&global, &args, env),
        Command::Reset(args) => commands::reset(&global, &args, env),
        Command::Audit(args) => commands::audit(&global, &args, env),
        Command::Heal(args) => commands::programs::heal(&global, &args, env),
        Command::Start(args) => commands::programs::start(&global, &args, env),
        Command::Stop(args) => commands::programs::stop(&global, &args, env),
        Command::Restart(args) => commands::programs::restart(&global, &args, env),
        Command::Logs(args) => commands::programs::logs(&global, &args, env),
        Command::Config(cli::ConfigCommand::Check) => {
            commands::programs::config_check(&global, env)
        }
        Command::Init(args) => commands::programs::init(&global, &args, env),
        Command::Demo(args) => commands::demo::run(&args, config::color_enabled(&global, env)),
        Command::Completions(args) => {
            let mut out = Vec::new();
            clap_complete::generate(args.shell, &mut Cli::command(), "pidwatch", &mut out);
            output::print_stdout(&String::from_utf8_lossy(&out));
            Ok(0)
        }
        Command::Man => {
            let mut out = Vec::new();
            clap_mangen::Man::new(Cli::command())
                .render(&mut out)
                .map_err(|e| error::Error::CannotCheck(format!("rendering the man page: {e}")))?;
            output::print_stdout(&String::from_utf8_lossy(&out));
            Ok(0)
        }
        Command::Wrapper(args) => match args.install {
            None => {
                output::print_stdout(WRAPPER_SCRIPT);
                Ok(0)
            }
            Some(path) => {
                let path = config::absolute(&env.cwd, &path);
                store::safe_fs::write_atomically(&path, WRAPPER_SCRIPT.as_bytes(), 0o755)
                    .map_err(|e| error::Error::io("installing the wrapper as", &path, e))?;
                if !global.quiet {
                    output::print_stdout(&format!("installed {}\n", path.display()));
                }
                Ok(0)
            }
        },
    }
}

//! Where workers come from (ARCHITECTURE.md, "Sources"): the claude-copilot
//! orchestrator ([`orchestrator`]: its folder, wrapper and Task Copilot DB),
//! or a config file ([`programs`], read by [`config`]).
//!
//! A source answers what only it can know: which workers there are and
//! what they depend on, where a worker's PID file is, whether a process is
//! the worker, how a new incarnation is started, and when its work is done.
//! `decide`, `act` and the monitor's loop work through [`WorkerSource`] and
//! never ask which source it is; a third source implements the trait and
//! is wired in [`open`].

pub mod config;
pub mod orchestrator;
pub mod programs;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use crate::core::{Candidate, Incarnation, ProgramState, TaskCounts};
use crate::error::Result;
use crate::observe::procfs::Procfs;
use crate::observe::taskdb::Initiative;

/// One worker as its source describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerDef {
    /// The worker id: a stream id, or a program's `<name>[@<instance>]`.
    pub id: String,
    /// A longer name to show, when the source has one (a stream's name).
    pub name: Option<String>,
    /// Ids of the workers it depends on (sorted, no duplicates).
    pub dependencies: BTreeSet<String>,
    /// Task counts of a stream (all zero for a program).
    pub tasks: TaskCounts,
}

/// What a source read in one pass.
#[derive(Debug, Clone, Default)]
pub struct SourceReading {
    /// The workers by id.
    pub workers: BTreeMap<String, WorkerDef>,
    /// Problems met, one line each, naming the row, file or entry.
    pub warnings: Vec<String>,
}

/// What a new incarnation needs from the caller.
#[derive(Debug, Clone, Copy)]
pub struct SpawnRequest<'a> {
    /// The worker id.
    pub worker: &'a str,
    /// The incarnation id (`PIDWATCH_INVOCATION_ID`).
    pub incarnation: &'a str,
    /// Its cgroup, created by the caller, when it runs in one.
    pub cgroup: Option<&'a crate::observe::cgroup::Cgroup>,
}

/// How a started incarnation came up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Started {
    /// It runs: this process leads it (the wrapper, the program, or the
    /// daemon a start command left behind).
    Running(i32),
    /// Nothing proved to be it came up within the spawn timeout.
    TimedOut {
        /// What was waited for, e.g. `no PID file naming a live process`.
        missing: String,
        /// What the spawned process is, e.g. `wrapper`.
        spawned: &'static str,
    },
    /// The spawned process exited before it came up (how, e.g. `exit 1`).
    Exited(String),
}

/// How a program of a config file is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunMode {
    /// pidwatch runs `command` as its child, and writes its PID file.
    Foreground,
    /// `start` daemonizes it; its own PID file names it (the table has `pidfile`).
    Adopt,
}

/// How a program of a config file is run, as `status` shows it. It holds
/// no environment: a value of `env` (secret or not) is never shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramView {
    /// The instance part of its id (`<name>@<instance>`), when it has one.
    pub instance: Option<String>,
    /// The argv the config gives: `command`, or in adopt mode `start`; a
    /// string is run as `["sh", "-c", text]`.
    pub command: Vec<String>,
    /// Foreground or adopt mode.
    pub mode: RunMode,
}

/// Where workers come from. Every method is an adapter: I/O at the edge,
/// no decisions.
pub trait WorkerSource {
    /// The key of this source's records in the state DB and its name for
    /// people: the initiative, or for a config file `config:<name>` and the
    /// file's path.
    fn scope(&self) -> &Initiative;

    /// The config file's programs, when this source is one: the monitor
    /// runs their probes, rotates their logs and serves start and stop
    /// requests for them. `None` for a source whose workers have none of
    /// these.
    fn programs(&self) -> Option<&programs::Programs> {
        None
    }

    /// Reads the workers: all of them (`only` = `None`), or the named ones
    /// and what they depend on, directly or not. A full read also reports
    /// what is odd around them (stray PID files, a replaced DB).
    ///
    /// Errors: the source cannot be read at all (a DB gone or locked).
    fn read(&self, only: Option<&BTreeSet<String>>) -> Result<SourceReading>;

    /// The folder that holds the PID files, watched by inotify; `None` when
    /// they lie scattered (each is then seen by its pidfd or the sweep).
    fn pid_dir(&self) -> Option<PathBuf>;

    /// The PID file that names the worker's process.
    fn pidfile(&self, worker: &str) -> PathBuf;

    /// The worker id whose PID file is `name` in [`WorkerSource::pid_dir`].
    fn worker_of_pidfile(&self, name: &str) -> Option<String> {
        name.strip_suffix(".pid").map(str::to_string)
    }

    /// The exit file where the worker's last run says how it ended.
    fn exit_file(&self, worker: &str) -> PathBuf;

    /// Whether the worker ran in this initiative (or boot) though no
    /// incarnation of it is recorded: what it left behind says so.
    fn ran_before(&self, worker: &str, boot_time: chrono::DateTime<chrono::Utc>) -> bool;

    /// What the live process `pid` named by the worker's PID file is, by
    /// its command line and environment.
    fn identify(&self, procfs: &Procfs, worker: &str, pid: i32) -> Candidate;

    /// The worker log whose path a process's `PIDWATCH_LOG_FILE` names, for
    /// telling the worker's processes apart in session containment; `None`
    /// when the source's workers carry no such marker.
    fn marker_log(&self, worker: &str) -> Option<PathBuf>;

    /// A program's state for `decide`, given its current incarnation;
    /// `None` for a worker whose work is its tasks.
    fn program(&self, worker: &str, incarnation: Option<&Incarnation>) -> Option<ProgramState>;

    /// How a program is run, for `status`; `None` for a worker that is
    /// not a program of a config file.
    fn program_view(&self, worker: &str) -> Option<ProgramView> {
        let _ = worker;
        None
    }

    /// How long the worker's processes get between the stop signal and
    /// SIGKILL, when the source sets it per worker.
    fn stop_timeout(&self, worker: &str) -> Option<Duration>;

    /// Checks, before anything is counted, that new incarnations can be
    /// started at all (the wrapper exists and runs).
    ///
    /// Errors: what is wrong and how to fix it.
    fn check_spawn(&self) -> std::result::Result<(), String>;

    /// Starts a new incarnation and returns the PID of the process started
    /// (pidwatch's child, to reap).
    ///
    /// Errors: it could not be started (the reason, for the log).
    fn spawn(&self, request: &SpawnRequest<'_>) -> std::result::Result<i32, String>;

    /// Waits up to `timeout` for the incarnation started as `child` to come
    /// up, and says how it went.
    fn confirm(&self, procfs: &Procfs, worker: &str, child: i32, timeout: Duration) -> Started;

    /// pidwatch reaped `child`, which it started for incarnation
    /// `incarnation` of `worker`, with exit status `status` (see
    /// waitpid(2)); a source without its own record of exits writes it now.
    fn child_exited(&self, worker: &str, incarnation: &str, child: i32, status: i32) {
        let _ = (worker, incarnation, child, status);
    }
}

/// The source the settings name: a config file, else the orchestrator.
///
/// Errors: as [`orchestrator::Orchestrator::open`].
pub fn open(settings: &crate::config::Settings) -> Result<Box<dyn WorkerSource>> {
    match &settings.programs {
        Some(file) => Ok(Box::new(programs::Programs::new(
            file.clone(),
            &settings.paths,
        ))),
        None => Ok(Box::new(orchestrator::Orchestrator::open(settings)?)),
    }
}

/// `ids` and every worker they depend on, directly or not.
pub fn dependency_closure(
    workers: &BTreeMap<String, BTreeSet<String>>,
    ids: &BTreeSet<String>,
) -> BTreeSet<String> {
    closure_by(ids, |id| workers.get(id))
}

/// `ids` and every worker they depend on, directly or not, where
/// `dependencies` gives a worker's own (`None`: no such worker): walks only
/// the workers reached, whatever the number of others.
pub fn closure_by<'a>(
    ids: &'a BTreeSet<String>,
    dependencies: impl Fn(&str) -> Option<&'a BTreeSet<String>>,
) -> BTreeSet<String> {
    let mut closure = BTreeSet::new();
    let mut todo: Vec<&str> = ids.iter().map(String::as_str).collect();
    while let Some(id) = todo.pop() {
        if closure.insert(id.to_string())
            && let Some(deps) = dependencies(id)
        {
            todo.extend(deps.iter().map(String::as_str));
        }
    }
    closure
}

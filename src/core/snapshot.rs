//! The plain data that `observe` reads and `decide` judges.
//!
//! Nothing here touches the system: every value is a reading taken earlier by
//! an adapter, so that a test can build any situation by hand.

use std::collections::BTreeSet;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::incarnation::{Candidate, Ending, Incarnation, Member};

/// Why a PID file could not be trusted. Each is reported, never acted upon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvalidPidFile {
    /// The file holds nothing but whitespace.
    Empty,
    /// The content is not one decimal integer (the offending text, shortened).
    NotANumber(String),
    /// A decimal integer outside `2..=pid_max` (e.g. `-1`, `0`, `1`).
    OutOfRange(String),
    /// The path is a symbolic link (refused by `O_NOFOLLOW`).
    Symlink,
    /// The path is a directory, FIFO, socket or device, not a regular file.
    NotRegular,
    /// The file is larger than a PID file can be (the size in bytes).
    TooLarge(u64),
    /// Opening or reading failed (the OS error text).
    Unreadable(String),
}

impl fmt::Display for InvalidPidFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("empty"),
            Self::NotANumber(text) => write!(f, "not a number: {text:?}"),
            Self::OutOfRange(text) => write!(f, "out of range: {text}"),
            Self::Symlink => f.write_str("symlink"),
            Self::NotRegular => f.write_str("not a regular file"),
            Self::TooLarge(size) => write!(f, "too large: {size} bytes"),
            Self::Unreadable(why) => write!(f, "unreadable: {why}"),
        }
    }
}

/// What the PID file `pids/<worker>.pid` said when it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PidFileReading {
    /// No file at that path.
    Missing,
    /// A file that is not a valid PID file, and why.
    Invalid(InvalidPidFile),
    /// One decimal PID in `2..=pid_max`, and the file's modification time
    /// (`st_mtime` of fstat(2), nanosecond precision).
    Valid {
        /// The process id written in the file.
        pid: i32,
        /// When the file was last written.
        mtime: DateTime<Utc>,
    },
}

impl PidFileReading {
    /// The PID of a valid PID file.
    pub fn pid(&self) -> Option<i32> {
        match self {
            PidFileReading::Valid { pid, .. } => Some(*pid),
            _ => None,
        }
    }
}

/// A live process as `/proc/<pid>/stat` describes it (see proc(5)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessInfo {
    /// Field 3, the state letter: `R`, `S`, `D`, `T`, `Z` (zombie), `X` (dead), ...
    pub state: char,
    /// Field 22, start time in clock ticks after boot.
    pub start_ticks: u64,
    /// Field 22 turned into wall time: `btime` of `/proc/stat` plus
    /// `start_ticks / sysconf(_SC_CLK_TCK)`. Precise to about one second,
    /// because `btime` is whole seconds.
    pub start_time: DateTime<Utc>,
    /// Field 5, the process group id.
    pub pgrp: i32,
    /// Field 6, the session id.
    pub session: i32,
    /// `false` when `kill(pid, 0)` said EPERM: the process exists but belongs
    /// to another user, and pidwatch may not signal it.
    pub signalable: bool,
}

impl ProcessInfo {
    /// A zombie (`Z`) or dead (`X`) process has exited; only its entry is left.
    pub fn has_exited(&self) -> bool {
        matches!(self.state, 'Z' | 'X')
    }
}

/// The process behind a valid PID file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcessReading {
    /// `kill(pid, 0)` said ESRCH, or `/proc/<pid>` vanished while being read.
    Gone,
    /// The process exists.
    Alive(ProcessInfo),
}

/// Task counts of one stream, by status of the `tasks.status` column.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskCounts {
    /// All non-archived tasks of the stream, whatever their status.
    pub total: u32,
    /// Status `completed`.
    pub completed: u32,
    /// Status `in_progress`.
    pub in_progress: u32,
    /// Status `pending`.
    pub pending: u32,
    /// Status `blocked`.
    pub blocked: u32,
    /// Status `cancelled`.
    pub cancelled: u32,
}

impl TaskCounts {
    /// Complete: at least one task, and every task completed or cancelled.
    pub fn is_complete(&self) -> bool {
        self.total > 0 && self.completed + self.cancelled == self.total
    }
}

/// What pidwatch's own state DB remembers of one (initiative, worker).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestartRecord {
    /// Restart attempts since the last reset (manual, or after a stable run).
    pub attempts: u32,
    /// When the latest attempt was made.
    pub last_attempt: Option<DateTime<Utc>>,
    /// Set when the restart cap was reached; cleared by `pidwatch reset`.
    pub given_up: bool,
    /// The verdict of the latest pass that recorded one, to journal changes once.
    pub last_verdict: Option<Verdict>,
}

/// Everything observed about one worker in one pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerSnapshot {
    /// The worker id: the stream id, e.g. `Stream-A`, and the PID file's stem.
    pub id: String,
    /// The PID file reading.
    pub pidfile: PidFileReading,
    /// When an empty or not-a-number PID file, written moments ago, stops
    /// counting as being written (its mtime plus
    /// [`crate::core::PIDFILE_GRACE`]); `None` for any other, or an older one.
    pub pidfile_fresh_until: Option<DateTime<Utc>>,
    /// The process named by a valid PID file; `None` when there is none.
    pub process: Option<ProcessReading>,
    /// Whether the worker ever started in this initiative: a PID file exists,
    /// or its worker log holds more than the wrapper's header.
    pub started: bool,
    /// Task counts of its stream.
    pub tasks: TaskCounts,
    /// The stream ids it depends on (sorted, no duplicates).
    pub dependencies: BTreeSet<String>,
    /// Its restart history.
    pub record: RestartRecord,
    /// What the process behind a valid PID file proved to be.
    pub candidate: Candidate,
    /// Its current incarnation in this boot, as the state DB records it.
    pub incarnation: Option<Incarnation>,
    /// The current incarnation's wrapper now, read from `/proc` by its
    /// recorded PID and start time (`Gone` when the PID now names another
    /// process); `None` when no wrapper is recorded.
    pub wrapper: Option<ProcessReading>,
    /// Live processes proved to be the worker's (by cgroup, incarnation id,
    /// stream marker or session) that are not part of a live incarnation:
    /// orphans of a dead wrapper, survivors of an earlier incarnation, or
    /// the members of one still being spawned. Empty when not looked for
    /// (a live wrapper needs no look).
    pub members: Vec<Member>,
    /// The worker's processes that carry its stream marker and whose own
    /// wrapper lives, though pidwatch does not know that wrapper (its PID
    /// file missing, invalid or naming someone else): a live incarnation.
    /// It counts as running, and nothing is started beside it.
    pub elsewhere: Vec<Member>,
    /// How the last run ended, from the wrapper's exit file, when the file
    /// belongs to the current incarnation (or, with none recorded, to this
    /// boot). Read when no wrapper lives, or when a live wrapper's PID file
    /// is gone (it may be finishing).
    pub exit: Option<Ending>,
    /// A restart of this worker under way in this pass, fed back by the pass
    /// after each step (see [`crate::core::RestartPhase`]).
    pub restart: Option<InFlight>,
    /// What a program from a config file adds (its restart mode, own
    /// policy, readiness and health); `None` for a stream of the
    /// orchestrator, whose work is done when its tasks are.
    pub program: Option<ProgramState>,
}

/// When a program that exited is started again, as systemd's `Restart=`
/// (the `restart` key of a config file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartMode {
    /// Unless it exited 0 or was stopped deliberately (the default).
    #[default]
    OnFailure,
    /// Whenever it exits, unless stopped deliberately.
    Always,
    /// Never.
    Never,
}

impl RestartMode {
    /// The name used in config files and JSON: `on-failure`, `always`, `never`.
    pub fn as_str(self) -> &'static str {
        match self {
            RestartMode::OnFailure => "on-failure",
            RestartMode::Always => "always",
            RestartMode::Never => "never",
        }
    }
}

/// What `decide` knows of a program from a config file, beyond what every
/// worker has. A program has no tasks: it runs until stopped, and its
/// restart mode says whether an exit is the end of its work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramState {
    /// Its restart mode.
    pub restart: RestartMode,
    /// Its own restart cap and backoff (`max_restarts`, `restart_delay`,
    /// `max_restart_delay`, `stable_after`); `auto_restart` is the
    /// command's.
    pub policy: super::Policy,
    /// Its readiness probe's verdict on the current incarnation: `None`
    /// when it has no probe (running is ready), `Some(false)` until the
    /// probe passed.
    pub ready: Option<bool>,
    /// Its last incarnation was ended for failing its health probe
    /// `retries` times in a row.
    pub unhealthy: bool,
    /// A start was asked for (`pidwatch start`, a reload that added or
    /// changed it) and has not happened yet: it is started whatever ended
    /// its last run (a deliberate stop, a clean exit, restart mode
    /// `never`), once what it depends on is met.
    pub start_requested: bool,
}

/// A restart carried over from one step of a pass to the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InFlight {
    /// The attempt, already counted in the state DB.
    pub attempt: u32,
    /// The step last carried out.
    pub phase: super::RestartPhase,
    /// How many times the earlier incarnation was stopped in this restart.
    pub stop_rounds: u32,
}

/// One pass's view of the world: all `decide` needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The wall-clock time of the pass.
    pub now: DateTime<Utc>,
    /// The workers, sorted by id.
    pub workers: Vec<WorkerSnapshot>,
}

/// The state decided for one worker in one pass (ARCHITECTURE.md, "Verdicts").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Its PID file names a live process that is the worker.
    Running,
    /// Not running, and every task of its stream completed or cancelled.
    Completed,
    /// Not running, and never started in this initiative.
    NotStarted,
    /// Not running: ended by a deliberate stop (SIGTERM, SIGINT or SIGHUP)
    /// in this boot; not restarted until `pidwatch reset`.
    Stopped,
    /// Not running, started, but a dependency is not complete.
    Waiting,
    /// Would be dead, but its restart cap was reached.
    GivenUp,
    /// Not running, started, not complete, dependencies complete.
    Dead,
}

impl Verdict {
    /// Every verdict, in the order of ARCHITECTURE.md.
    pub const ALL: [Verdict; 7] = [
        Verdict::Running,
        Verdict::Completed,
        Verdict::NotStarted,
        Verdict::Stopped,
        Verdict::Waiting,
        Verdict::GivenUp,
        Verdict::Dead,
    ];

    /// The snake_case name used in JSON, logs and the state DB.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Running => "running",
            Verdict::Completed => "completed",
            Verdict::NotStarted => "not_started",
            Verdict::Stopped => "stopped",
            Verdict::Waiting => "waiting",
            Verdict::GivenUp => "given_up",
            Verdict::Dead => "dead",
        }
    }

    /// Parses [`Verdict::as_str`] back.
    pub fn parse(text: &str) -> Option<Verdict> {
        Verdict::ALL.into_iter().find(|v| v.as_str() == text)
    }

    /// Dead and given-up workers make `check` exit 1.
    pub fn is_failure(self) -> bool {
        matches!(self, Verdict::Dead | Verdict::GivenUp)
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a worker is not running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// No PID file.
    NoPidfile,
    /// A PID file that could not be trusted, and why.
    InvalidPidfile(InvalidPidFile),
    /// The PID names no process.
    NoSuchProcess,
    /// The PID names a zombie (`Z`) or dead (`X`) process.
    Zombie,
    /// The PID names a process that started after the PID file was written.
    PidReused,
    /// The PID names a live process whose command line is not this
    /// worker's wrapper: a stranger, never signalled.
    NotTheWorker,
    /// The wrapper is gone but processes of the worker live on (the PIDs):
    /// they are stopped before any restart.
    Orphaned(Vec<i32>),
    /// A deliberate stop ended it (the signal's name, e.g. `TERM`).
    Stopped(String),
    /// A program exited (its exit status, e.g. `exit 0`), and its restart
    /// mode does not start it again.
    Exited(String),
    /// A program's health probe failed `retries` times in a row; its
    /// incarnation was stopped.
    Unhealthy,
}

impl Reason {
    /// The snake_case name used in JSON and logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            Reason::NoPidfile => "no_pidfile",
            Reason::InvalidPidfile(_) => "invalid_pidfile",
            Reason::NoSuchProcess => "no_such_process",
            Reason::Zombie => "zombie",
            Reason::PidReused => "pid_reused",
            Reason::NotTheWorker => "not_the_worker",
            Reason::Orphaned(_) => "orphaned",
            Reason::Stopped(_) => "stopped",
            Reason::Exited(_) => "exited",
            Reason::Unhealthy => "unhealthy",
        }
    }

    /// The detail: of an invalid PID file, e.g. `empty`; the orphans' PIDs;
    /// the signal of a stop; `None` for the others.
    pub fn detail(&self) -> Option<String> {
        match self {
            Reason::InvalidPidfile(why) => Some(why.to_string()),
            Reason::Orphaned(pids) => Some(format!(
                "PIDs {}",
                pids.iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            Reason::Stopped(signal) => Some(format!("SIG{signal}")),
            Reason::Exited(status) => Some(status.clone()),
            _ => None,
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.detail() {
            Some(detail) => write!(f, "{} ({detail})", self.as_str()),
            None => f.write_str(self.as_str()),
        }
    }
}

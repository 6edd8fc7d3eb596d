//! Incarnations: one start of a worker each, and the processes that prove
//! they belong to one (ARCHITECTURE.md, "Identity").

use chrono::{DateTime, Utc};
use serde::Serialize;

/// A process named by its PID and its start time, which together name one
/// process for the whole life of a boot (a reused PID has another start time).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ProcessId {
    /// The process id.
    pub pid: i32,
    /// Field 22 of `/proc/<pid>/stat`: start time in clock ticks after boot.
    pub start_ticks: u64,
}

/// How pidwatch came to know an incarnation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// pidwatch spawned its wrapper.
    Spawned,
    /// Someone else (the orchestrator) started it; pidwatch proved its
    /// wrapper by command line and start time and took it over.
    Adopted,
}

impl Origin {
    /// The name stored in the state DB.
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Spawned => "spawned",
            Origin::Adopted => "adopted",
        }
    }

    /// Parses [`Origin::as_str`] back.
    pub fn parse(text: &str) -> Option<Origin> {
        match text {
            "spawned" => Some(Origin::Spawned),
            "adopted" => Some(Origin::Adopted),
            _ => None,
        }
    }
}

/// How an incarnation ended, once pidwatch saw its wrapper gone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ending {
    /// When it ended: the exit file's `ended` when there is one, else when
    /// pidwatch saw or made the end.
    pub at: DateTime<Utc>,
    /// The wrapper's exit status (0..=255), when its exit file said.
    pub exit_status: Option<i32>,
    /// The signal that ended the worker (`TERM`, `KILL`, …), when known.
    pub signal: Option<String>,
    /// A deliberate stop: SIGTERM, SIGINT or SIGHUP ended it (as systemd's
    /// `Restart=on-failure` treats them). Cleared by `pidwatch reset`.
    pub stopped: bool,
}

/// One start of a worker, as pidwatch's state DB records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Incarnation {
    /// 128 random bits as 32 lowercase hex digits (as systemd's
    /// `INVOCATION_ID`); every process of the incarnation carries it in its
    /// environment as `PIDWATCH_INVOCATION_ID`, unless it scrubbed it.
    pub id: String,
    /// Spawned by pidwatch, or adopted.
    pub origin: Origin,
    /// The wrapper's PID and start time; `None` between the record (made
    /// before the spawn) and the spawn's return.
    pub wrapper: Option<ProcessId>,
    /// `/proc/sys/kernel/random/boot_id` when it started: an incarnation of
    /// another boot has no process left.
    pub boot_id: String,
    /// The wrapper's session id, when the verified wrapper leads its session
    /// (then every member of that session is the worker's).
    pub session: Option<i32>,
    /// The absolute path of its own cgroup, when it runs in one.
    pub cgroup: Option<String>,
    /// When it was recorded.
    pub started_at: DateTime<Utc>,
    /// The restart attempt that started it (spawned ones).
    pub attempt: Option<u32>,
    /// How it ended; `None` while pidwatch has not seen it end.
    pub ending: Option<Ending>,
}

/// How a process was proved to belong to a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Proof {
    /// Listed in `cgroup.procs` of an incarnation's cgroup.
    Cgroup,
    /// Carries an incarnation's id in `PIDWATCH_INVOCATION_ID`.
    InvocationId,
    /// Carries the worker's `PIDWATCH_STREAM_ID` and `PIDWATCH_LOG_FILE`
    /// (which names its orchestrator dir and initiative).
    StreamMarker,
    /// A member of the session led by a verified wrapper, started after it.
    Session,
}

/// A live (non-zombie) process proved to belong to one of a worker's
/// incarnations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Member {
    /// Its PID and start time.
    pub process: ProcessId,
    /// Field 2 of `/proc/<pid>/stat`, the command name.
    pub comm: String,
    /// The incarnation id in its environment, if any.
    pub incarnation: Option<String>,
    /// How it was proved.
    pub proof: Proof,
}

/// What the process behind a valid PID file proved to be, by its command
/// line (`/proc/<pid>/cmdline`) and environment (`/proc/<pid>/environ`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Candidate {
    /// Not looked at: no live process, or it is the current incarnation's
    /// known wrapper.
    NotLooked,
    /// Its command line is this worker's wrapper: the wrapper script, this
    /// worker id, this PID file.
    Wrapper {
        /// `PIDWATCH_INVOCATION_ID` in its environment, when present and well formed.
        invocation: Option<String>,
    },
    /// Its command line is something else (or could not be read): it is not
    /// the worker, and nothing is signalled on its strength.
    Foreign,
}

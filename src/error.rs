//! pidwatch's errors, and the one place that maps them to exit codes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::ErrorCode;

use crate::store::safe_fs::SymlinkRefused;

/// Exit code: no worker is dead or given up.
pub const EXIT_OK: i32 = 0;
/// Exit code: at least one worker is dead or given up.
pub const EXIT_FAILURES: i32 = 1;
/// Exit code: usage or configuration error.
pub const EXIT_USAGE: i32 = 2;
/// Exit code: could not check.
pub const EXIT_CANNOT_CHECK: i32 = 3;

/// An error that ends a pidwatch command. Each names the file or setting at
/// fault and what is wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting is wrong or missing (exit 2).
    #[error("{0}")]
    Config(String),
    /// Another pidwatch holds the orchestrator dir's lock (exit 2).
    #[error("another pidwatch (PID {holder}) is acting on this orchestrator dir; lock file {path}")]
    Locked {
        /// The lock file.
        path: PathBuf,
        /// The PID written in the lock file by its holder, or `?`.
        holder: String,
    },
    /// A file pidwatch must write is a symbolic link, which it refuses to
    /// follow (exit 2: a configuration problem; see [`crate::store::safe_fs`]).
    #[error("refusing to write {path}: it is a symbolic link")]
    Symlink {
        /// The symlink.
        path: PathBuf,
    },
    /// A database pidwatch must read is missing, unreadable, locked, or of an
    /// unknown schema (exit 3).
    #[error("{kind} {path}: {what}")]
    Database {
        /// Which database: "task DB", "memory DB", "state DB".
        kind: &'static str,
        /// Its path.
        path: PathBuf,
        /// What is wrong, and what to do.
        what: String,
    },
    /// A file or folder could not be read or written (exit 3).
    #[error("{verb} {path}: {source}")]
    Io {
        /// What was being done: "reading", "creating", ...
        verb: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Anything else that stops the check (exit 3).
    #[error("{0}")]
    CannotCheck(String),
    /// The memory DB names no active initiative: nothing to watch. `check`
    /// and `status` say so and exit 0, `run` waits for one; commands that
    /// need an initiative exit 3.
    #[error("No active initiative found in memory DB {}; give one with --initiative", .0.display())]
    NoActiveInitiative(PathBuf),
}

impl Error {
    /// The process exit code for this error (ARCHITECTURE.md, "Exit codes of `check`").
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Config(_) | Error::Locked { .. } | Error::Symlink { .. } => EXIT_USAGE,
            Error::Database { .. }
            | Error::Io { .. }
            | Error::CannotCheck(_)
            | Error::NoActiveInitiative(_) => EXIT_CANNOT_CHECK,
        }
    }

    /// A short name of the kind of error, for `--json` error objects:
    /// `config`, `locked`, `symlink`, `database`, `io`, `cannot_check`,
    /// `no_active_initiative`.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Config(_) => "config",
            Error::Locked { .. } => "locked",
            Error::Symlink { .. } => "symlink",
            Error::Database { .. } => "database",
            Error::Io { .. } => "io",
            Error::CannotCheck(_) => "cannot_check",
            Error::NoActiveInitiative(_) => "no_active_initiative",
        }
    }

    /// The file the error is about, when there is one.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Error::Locked { path, .. }
            | Error::Symlink { path }
            | Error::Database { path, .. }
            | Error::Io { path, .. }
            | Error::NoActiveInitiative(path) => Some(path),
            Error::Config(_) | Error::CannotCheck(_) => None,
        }
    }

    /// The error as the JSON object a `--json` command prints on stdout
    /// instead of its document, so that a script always reads JSON:
    /// `{"error": {"kind", "message", "path"}, "exit_code"}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "error": {
                "kind": self.kind(),
                "message": self.to_string(),
                "path": self.path().map(|p| p.display().to_string()),
            },
            "exit_code": self.exit_code(),
        })
    }

    /// An I/O error on `path` while doing `verb`; a refused symlink
    /// ([`SymlinkRefused`]) becomes [`Error::Symlink`] naming the symlink.
    pub fn io(verb: &'static str, path: &Path, source: std::io::Error) -> Error {
        if let Some(refused) = SymlinkRefused::of(&source) {
            return Error::Symlink {
                path: refused.path.clone(),
            };
        }
        Error::Io {
            verb,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// pidwatch's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How long a read or write waits for another program's lock on an SQLite
/// file (the task DB, written concurrently by the orchestrator; the state DB)
/// before it is "locked": 5 seconds.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Turns an SQLite error into one that says what is wrong with the file.
pub fn sql_error(kind: &'static str, path: &Path, err: &rusqlite::Error) -> Error {
    let what = match err.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => format!(
            "locked by another program for more than {} s",
            BUSY_TIMEOUT.as_secs()
        ),
        Some(ErrorCode::NotADatabase) => "not an SQLite database".to_string(),
        Some(ErrorCode::DatabaseCorrupt) => format!("corrupt: {err}"),
        Some(ErrorCode::CannotOpen | ErrorCode::PermissionDenied) => {
            format!("cannot be opened: {err}")
        }
        _ => err.to_string(),
    };
    Error::Database {
        kind,
        path: path.to_path_buf(),
        what,
    }
}

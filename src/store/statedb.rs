//! pidwatch's own SQLite state DB: restart attempts, given-up marks and the
//! journal of events, per (initiative, worker).
//!
//! It lives at `DIR/pidwatch.db` by default, is created on first write, runs
//! in WAL mode with `synchronous=NORMAL` (a crash of pidwatch never loses a
//! committed row; a power cut may lose the last ones but never corrupts the
//! file), and carries its schema version in `PRAGMA user_version`. Times are
//! stored as RFC 3339 UTC text with microseconds, so that they sort and read
//! well in the `sqlite3` shell. Neither the DB nor its side files are ever
//! followed through a symlink ([`refuse_symlinks`], `SQLITE_OPEN_NOFOLLOW`).

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use serde::Serialize;

use crate::core::{Ending, Incarnation, Origin, ProcessId, RestartRecord, Verdict};
use crate::error::{BUSY_TIMEOUT, Error, Result, sql_error};
use crate::store::audit::{AuditRecord, TrustedBy};
use crate::store::safe_fs;

/// The schema version this pidwatch writes (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = 3;

const KIND: &str = "state DB";

/// The page cache of a connection, as `PRAGMA cache_size` takes it: a
/// negative number is KiB (512 KiB, 128 pages of 4 KiB).
const CACHE_KIB: i64 = -512;

/// Schema version 1. Kept verbatim: a fixture of it is loaded by the tests.
pub const SCHEMA_V1: &str = "
CREATE TABLE workers (
    initiative      TEXT NOT NULL,
    worker          TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_attempt_at TEXT,
    given_up_at     TEXT,
    last_verdict    TEXT,
    PRIMARY KEY (initiative, worker)
);
CREATE TABLE events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    at         TEXT NOT NULL,
    initiative TEXT,
    worker     TEXT,
    kind       TEXT NOT NULL,
    pid        INTEGER,
    attempt    INTEGER,
    detail     TEXT
);
CREATE INDEX events_by_worker ON events (initiative, worker, id);
";

/// Schema version 2 adds incarnations: one row per start of a worker,
/// recorded before the spawn. Kept verbatim, as applied to a version 1 DB.
pub const SCHEMA_V2: &str = "
CREATE TABLE incarnations (
    id                  TEXT PRIMARY KEY,
    initiative          TEXT NOT NULL,
    worker              TEXT NOT NULL,
    origin              TEXT NOT NULL,
    boot_id             TEXT NOT NULL,
    wrapper_pid         INTEGER,
    wrapper_start_ticks INTEGER,
    session             INTEGER,
    cgroup              TEXT,
    attempt             INTEGER,
    started_at          TEXT NOT NULL,
    ended_at            TEXT,
    exit_status         INTEGER,
    signal              TEXT,
    stopped             INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX incarnations_by_worker ON incarnations (initiative, worker);
";

/// Schema version 3 adds the audit trail of the control API: one row per
/// mutating call, carried out or refused ([`crate::store::audit`]). Kept
/// verbatim, as applied to a version 2 DB.
pub const SCHEMA_V3: &str = "
CREATE TABLE audit (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    at         TEXT NOT NULL,
    caller_id  TEXT,
    trusted_by TEXT NOT NULL,
    peer       TEXT NOT NULL,
    method     TEXT NOT NULL,
    path       TEXT NOT NULL,
    target     TEXT,
    status     INTEGER NOT NULL,
    result     TEXT NOT NULL
);
";

/// What happened, as journaled in `events.kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A monitor (`run`) or an acting one-shot check started.
    MonitorStarted,
    /// A monitor stopped.
    MonitorStopped,
    /// A worker was found dead (or given up) after being otherwise.
    DeadDetected,
    /// A restart attempt began (recorded before the spawn).
    RestartAttempted,
    /// The restart succeeded: a new PID file names a live process.
    Restarted,
    /// The restart failed, and why.
    RestartFailed,
    /// Survivors of the dead worker's session or process group were stopped.
    SurvivorsStopped,
    /// The restart cap was reached.
    GivenUp,
    /// `pidwatch reset` cleared attempts and the given-up mark.
    Reset,
    /// Attempts reset after a stable run of `--stable-after`.
    AttemptsReset,
    /// A wrapper started by the monitor exited and was reaped.
    ChildExited,
    /// An incarnation pidwatch did not start was proved and taken over.
    Adopted,
    /// An incarnation's wrapper was seen gone, and how it ended.
    Ended,
    /// A program was started (`run`'s first start, or `pidwatch start`).
    Started,
    /// A program was stopped deliberately (`pidwatch stop`), and how.
    Stopped,
    /// A program's health probe failed `retries` times in a row.
    Unhealthy,
    /// A heal asked through the API was carried out: its steps and
    /// self-test.
    Healed,
}

impl EventKind {
    /// The snake_case name stored in the DB.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::MonitorStarted => "monitor_started",
            EventKind::MonitorStopped => "monitor_stopped",
            EventKind::DeadDetected => "dead_detected",
            EventKind::RestartAttempted => "restart_attempted",
            EventKind::Restarted => "restarted",
            EventKind::RestartFailed => "restart_failed",
            EventKind::SurvivorsStopped => "survivors_stopped",
            EventKind::GivenUp => "given_up",
            EventKind::Reset => "reset",
            EventKind::AttemptsReset => "attempts_reset",
            EventKind::ChildExited => "child_exited",
            EventKind::Adopted => "adopted",
            EventKind::Ended => "ended",
            EventKind::Started => "started",
            EventKind::Stopped => "stopped",
            EventKind::Unhealthy => "unhealthy",
            EventKind::Healed => "healed",
        }
    }
}

/// One row of the journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    /// Row id, increasing.
    pub id: i64,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// The initiative id, if any.
    pub initiative: Option<String>,
    /// The worker id, if any.
    pub worker: Option<String>,
    /// What happened (an [`EventKind`] name; kept as text to read newer rows).
    pub kind: String,
    /// The PID concerned, if any.
    pub pid: Option<i32>,
    /// The attempt number, if any.
    pub attempt: Option<u32>,
    /// Free text: a reason, an exit status.
    pub detail: Option<String>,
}

/// A new journal row.
#[derive(Debug, Clone, Default)]
pub struct NewEvent<'a> {
    /// The worker id, if any.
    pub worker: Option<&'a str>,
    /// The PID concerned, if any.
    pub pid: Option<i32>,
    /// The attempt number, if any.
    pub attempt: Option<u32>,
    /// Free text.
    pub detail: Option<String>,
}

/// An open state DB.
pub struct StateDb {
    conn: Connection,
    path: PathBuf,
    /// The schema version of the file: an old file opened by a reading
    /// command is read as it is, not migrated.
    version: i64,
    /// When the caller checkpoints the WAL itself
    /// ([`StateDb::defer_checkpoints`]): the connection's count of changed
    /// rows at the last checkpoint.
    checkpointed_at: Cell<Option<u64>>,
}

/// SQLite's own checkpoint, once a monitor takes them over: a backstop for
/// a monitor that is never idle (SQLite's default is 1,000 pages).
const BACKSTOP_AUTOCHECKPOINT: i64 = 4000;

/// Rows changed since the last checkpoint that make one due at the next
/// idle moment: about what fills SQLite's default 1,000 pages of WAL (a
/// restart changes some ten rows and writes some 25 pages).
const CHECKPOINT_AFTER_CHANGES: u64 = 300;

/// The files SQLite keeps next to a database, by suffix.
const SIDE_FILES: [&str; 3] = ["-wal", "-shm", "-journal"];

/// The path of `db`'s side file with `suffix` (`-wal`, ...).
fn side_file(db: &Path, suffix: &str) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Refuses a state DB at `path` that is a symlink, or whose `-wal`, `-shm`
/// or `-journal` file is one: SQLite would write through it (one `lstat`
/// each; a missing file is fine).
///
/// Errors: [`Error::Symlink`] (exit 2) naming the symlink; [`Error::Io`]
/// when a file cannot be looked at.
pub fn refuse_symlinks(path: &Path) -> Result<()> {
    std::iter::once(path.to_path_buf())
        .chain(SIDE_FILES.iter().map(|suffix| side_file(path, suffix)))
        .try_for_each(|file| {
            safe_fs::refuse_symlink(&file).map_err(|e| Error::io("checking", &file, e))
        })
}

/// Opens the SQLite file at `path` with `flags` and `SQLITE_OPEN_NOFOLLOW`.
/// SQLite then refuses a symlink in any component of the path it is given,
/// so it is given the real path of the folder (which comes from pidwatch's
/// settings and may be reached through a symlink) and the file's own name:
/// only the file itself must not be a symlink.
///
/// Errors: [`Error::Symlink`] when the file is a symlink; [`Error::Io`]
/// when the folder cannot be resolved; [`Error::Database`] otherwise.
fn connect(path: &Path, flags: OpenFlags) -> Result<Connection> {
    let real = match (path.parent(), path.file_name()) {
        (Some(dir), Some(name)) => {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            std::fs::canonicalize(dir)
                .map_err(|e| Error::io("resolving", dir, e))?
                .join(name)
        }
        _ => path.to_path_buf(),
    };
    Connection::open_with_flags(&real, flags | OpenFlags::SQLITE_OPEN_NOFOLLOW).map_err(
        |e| match &e {
            rusqlite::Error::SqliteFailure(failure, _)
                if failure.extended_code == rusqlite::ffi::SQLITE_CANTOPEN_SYMLINK =>
            {
                Error::Symlink {
                    path: path.to_path_buf(),
                }
            }
            _ => sql_error(KIND, path, &e),
        },
    )
}

/// Formats a time as stored: RFC 3339, UTC, microseconds.
pub fn format_time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

impl StateDb {
    /// Opens the state DB for writing, creating it and its folder if missing,
    /// and bringing its schema to [`SCHEMA_VERSION`]. Neither the DB nor its
    /// `-wal`, `-shm` and `-journal` files is followed through a symlink
    /// (see [`refuse_symlinks`]).
    ///
    /// Errors: [`Error::Symlink`] (exit 2) when the DB or a side file is a
    /// symlink; [`Error::Database`] (exit 3) when it is not SQLite, locked,
    /// of a newer schema than this pidwatch knows; [`Error::Io`] (exit 3)
    /// when the folder cannot be created.
    pub fn open(path: &Path) -> Result<StateDb> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| Error::io("creating", parent, e))?;
        }
        refuse_symlinks(path)?;
        let conn = connect(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        let db = StateDb::setup(conn, path)?;
        db.migrate()?;
        Ok(db)
    }

    /// Opens an existing state DB without creating or migrating anything;
    /// `Ok(None)` when there is no file (nothing was ever recorded).
    ///
    /// Errors: as [`StateDb::open`]; a symlink is refused even when it
    /// dangles.
    pub fn open_existing(path: &Path) -> Result<Option<StateDb>> {
        refuse_symlinks(path)?;
        if !path.exists() {
            return Ok(None);
        }
        let conn = connect(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        let mut db = StateDb::setup(conn, path)?;
        match db.version()? {
            0 => Ok(None),
            v @ (1..=SCHEMA_VERSION) => {
                db.version = v;
                Ok(Some(db))
            }
            v => Err(db.newer(v)),
        }
    }

    fn setup(conn: Connection, path: &Path) -> Result<StateDb> {
        let fail = |e: rusqlite::Error| sql_error(KIND, path, &e);
        conn.busy_timeout(BUSY_TIMEOUT).map_err(fail)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(fail)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(fail)?;
        // SQLite's default page cache is 2 MiB a connection, which the
        // monitor filled at a thousand workers (most of its heap). What a
        // pass touches again and again is a few pages (the keys' paths, the
        // journal's last leaf); a sweep's reads of every worker's rows come
        // from the kernel's page cache at a few microseconds a page.
        conn.pragma_update(None, "cache_size", CACHE_KIB)
            .map_err(fail)?;
        Ok(StateDb {
            conn,
            path: path.to_path_buf(),
            version: SCHEMA_VERSION,
            checkpointed_at: Cell::new(None),
        })
    }

    /// Leaves the WAL's checkpoints to [`StateDb::checkpoint_if_due`], for
    /// the monitor to call when nothing waits. SQLite otherwise checkpoints
    /// in the commit that fills 1,000 pages of WAL (an fsync of the WAL,
    /// the pages copied into the DB, an fsync of the DB: milliseconds), and
    /// that commit is an event pass's, between a death and the restart.
    /// A crash of pidwatch loses no commit either way; a power cut may lose
    /// the commits since the last checkpoint (`synchronous=NORMAL`), which
    /// comes after about as many of them as before, when the monitor is
    /// idle, or from SQLite itself past [`BACKSTOP_AUTOCHECKPOINT`] pages.
    ///
    /// Errors: the pragma fails.
    pub fn defer_checkpoints(&self) -> Result<()> {
        self.conn
            .pragma_update(None, "wal_autocheckpoint", BACKSTOP_AUTOCHECKPOINT)
            .map_err(|e| self.fail(e))?;
        self.checkpointed_at.set(Some(self.conn.total_changes()));
        Ok(())
    }

    /// Checkpoints the WAL (`PRAGMA wal_checkpoint(PASSIVE)`: it waits for
    /// no reader or writer) when checkpoints were deferred and enough rows
    /// changed since the last one. Returns whether it ran.
    ///
    /// Errors: the checkpoint fails.
    pub fn checkpoint_if_due(&self) -> Result<bool> {
        let Some(at) = self.checkpointed_at.get() else {
            return Ok(false);
        };
        let now = self.conn.total_changes();
        if now.saturating_sub(at) < CHECKPOINT_AFTER_CHANGES {
            return Ok(false);
        }
        self.checkpointed_at.set(Some(now));
        self.conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
            .map_err(|e| self.fail(e))?;
        Ok(true)
    }

    fn fail(&self, e: rusqlite::Error) -> Error {
        sql_error(KIND, &self.path, &e)
    }

    fn newer(&self, version: i64) -> Error {
        Error::Database {
            kind: KIND,
            path: self.path.clone(),
            what: format!(
                "schema version {version} is newer than this pidwatch knows ({SCHEMA_VERSION}); \
                 upgrade pidwatch or give another --state-db"
            ),
        }
    }

    fn version(&self) -> Result<i64> {
        self.conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| self.fail(e))
    }

    fn migrate(&self) -> Result<()> {
        // Each step brings the schema from one version to the next, all in
        // one transaction: a crash leaves the file as it was.
        let steps = match self.version()? {
            0 => [SCHEMA_V1, SCHEMA_V2, SCHEMA_V3].as_slice(),
            1 => &[SCHEMA_V2, SCHEMA_V3],
            2 => &[SCHEMA_V3],
            SCHEMA_VERSION => return Ok(()),
            v => return Err(self.newer(v)),
        };
        let sql = format!(
            "BEGIN; {} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;",
            steps.concat()
        );
        self.conn.execute_batch(&sql).map_err(|e| self.fail(e))
    }

    /// The restart records of the workers of `initiative`, by worker id:
    /// all of them, or those named in `only`.
    pub fn records(
        &self,
        initiative: &str,
        only: Option<&BTreeSet<String>>,
    ) -> Result<BTreeMap<String, RestartRecord>> {
        let Some(ids) = only else {
            return self.query_records(initiative, None);
        };
        let mut all = BTreeMap::new();
        for id in ids {
            all.extend(self.query_records(initiative, Some(id))?);
        }
        Ok(all)
    }

    fn query_records(
        &self,
        initiative: &str,
        worker: Option<&str>,
    ) -> Result<BTreeMap<String, RestartRecord>> {
        // Two statements, not `?2 IS NULL OR worker = ?2`: with the OR,
        // SQLite searches the key by initiative only, and one worker's
        // record would cost a scan of every worker's.
        let sql = match worker {
            None => {
                "SELECT worker, attempts, last_attempt_at, given_up_at, last_verdict \
                 FROM workers WHERE initiative = ?1 AND ?2 IS NULL"
            }
            Some(_) => {
                "SELECT worker, attempts, last_attempt_at, given_up_at, last_verdict \
                 FROM workers WHERE initiative = ?1 AND worker = ?2"
            }
        };
        let mut stmt = self.conn.prepare_cached(sql).map_err(|e| self.fail(e))?;
        let rows = stmt
            .query_map(params![initiative, worker], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    RestartRecord {
                        attempts: row.get::<_, i64>(1)?.clamp(0, i64::from(u32::MAX)) as u32,
                        last_attempt: row
                            .get::<_, Option<String>>(2)?
                            .as_deref()
                            .and_then(parse_time),
                        given_up: row.get::<_, Option<String>>(3)?.is_some(),
                        last_verdict: row
                            .get::<_, Option<String>>(4)?
                            .as_deref()
                            .and_then(Verdict::parse),
                    },
                ))
            })
            .map_err(|e| self.fail(e))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(|e| self.fail(e))
    }

    fn ensure_row(&self, initiative: &str, worker: &str) -> rusqlite::Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO workers (initiative, worker) VALUES (?1, ?2) \
                 ON CONFLICT (initiative, worker) DO NOTHING",
            )?
            .execute(params![initiative, worker])?;
        Ok(())
    }

    fn insert_event(
        &self,
        at: DateTime<Utc>,
        initiative: Option<&str>,
        kind: EventKind,
        event: &NewEvent<'_>,
    ) -> rusqlite::Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO events (at, initiative, worker, kind, pid, attempt, detail) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                format_time(at),
                initiative,
                event.worker,
                kind.as_str(),
                event.pid,
                event.attempt,
                event.detail
            ])?;
        Ok(())
    }

    fn in_transaction<T>(&self, f: impl FnOnce() -> rusqlite::Result<T>) -> Result<T> {
        self.conn
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(|e| self.fail(e))?;
        match f() {
            Ok(value) => {
                self.conn
                    .execute_batch("COMMIT")
                    .map_err(|e| self.fail(e))?;
                Ok(value)
            }
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                Err(self.fail(e))
            }
        }
    }

    /// Appends one event to the journal.
    pub fn journal(
        &self,
        at: DateTime<Utc>,
        initiative: Option<&str>,
        kind: EventKind,
        event: NewEvent<'_>,
    ) -> Result<()> {
        self.insert_event(at, initiative, kind, &event)
            .map_err(|e| self.fail(e))
    }

    /// Records the verdicts that changed in a pass, journaling `dead_detected`
    /// for each worker that became dead or given up, in one transaction.
    pub fn record_verdicts(
        &self,
        at: DateTime<Utc>,
        initiative: &str,
        changed: &[(&str, Verdict, Option<i32>, Option<String>)],
    ) -> Result<()> {
        if changed.is_empty() {
            return Ok(());
        }
        self.in_transaction(|| {
            for (worker, verdict, pid, reason) in changed {
                self.ensure_row(initiative, worker)?;
                self.conn
                    .prepare_cached(
                        "UPDATE workers SET last_verdict = ?3 WHERE initiative = ?1 AND worker = ?2",
                    )?
                    .execute(params![initiative, worker, verdict.as_str()])?;
                if verdict.is_failure() {
                    let event = NewEvent {
                        worker: Some(worker),
                        pid: *pid,
                        detail: reason.clone(),
                        ..NewEvent::default()
                    };
                    self.insert_event(at, Some(initiative), EventKind::DeadDetected, &event)?;
                }
            }
            Ok(())
        })
    }

    /// In one transaction: makes sure the worker has a row, runs `update`
    /// on it (`?1` the initiative, `?2` the worker, then `values` as `?3`,
    /// `?4`, ...), and journals `kind` with `event`.
    #[allow(clippy::too_many_arguments)]
    fn update_and_journal(
        &self,
        at: DateTime<Utc>,
        initiative: &str,
        worker: &str,
        update: &str,
        values: &[&dyn rusqlite::ToSql],
        kind: EventKind,
        event: NewEvent<'_>,
    ) -> Result<()> {
        self.in_transaction(|| {
            self.ensure_row(initiative, worker)?;
            let mut all: Vec<&dyn rusqlite::ToSql> = vec![&initiative, &worker];
            all.extend_from_slice(values);
            self.conn.prepare_cached(update)?.execute(&*all)?;
            self.insert_event(at, Some(initiative), kind, &event)
        })
    }

    /// Counts a restart attempt *before* the spawn, so that a crash during it
    /// still counts: sets `attempts = attempt` and journals `restart_attempted`.
    pub fn record_attempt(
        &self,
        at: DateTime<Utc>,
        initiative: &str,
        worker: &str,
        attempt: u32,
    ) -> Result<()> {
        self.update_and_journal(
            at,
            initiative,
            worker,
            "UPDATE workers SET attempts = ?3, last_attempt_at = ?4 \
             WHERE initiative = ?1 AND worker = ?2",
            &[&attempt, &format_time(at)],
            EventKind::RestartAttempted,
            NewEvent {
                worker: Some(worker),
                attempt: Some(attempt),
                ..NewEvent::default()
            },
        )
    }

    /// Journals `restarted` and records the worker as running, in one
    /// transaction.
    pub fn record_restarted(
        &self,
        at: DateTime<Utc>,
        initiative: &str,
        worker: &str,
        pid: i32,
        attempt: u32,
    ) -> Result<()> {
        self.update_and_journal(
            at,
            initiative,
            worker,
            "UPDATE workers SET last_verdict = 'running' WHERE initiative = ?1 AND worker = ?2",
            &[],
            EventKind::Restarted,
            NewEvent {
                worker: Some(worker),
                pid: Some(pid),
                attempt: Some(attempt),
                ..NewEvent::default()
            },
        )
    }

    /// Marks the worker given up and journals `given_up`.
    pub fn give_up(
        &self,
        at: DateTime<Utc>,
        initiative: &str,
        worker: &str,
        detail: String,
    ) -> Result<()> {
        self.update_and_journal(
            at,
            initiative,
            worker,
            "UPDATE workers SET given_up_at = ?3, last_verdict = 'given_up' \
             WHERE initiative = ?1 AND worker = ?2",
            &[&format_time(at)],
            EventKind::GivenUp,
            NewEvent {
                worker: Some(worker),
                detail: Some(detail),
                ..NewEvent::default()
            },
        )
    }

    /// Clears attempts (and, when `clear_given_up`, the given-up mark), and
    /// journals `kind` (`reset` or `attempts_reset`). Returns whether the
    /// worker had a row.
    pub fn reset(
        &self,
        at: DateTime<Utc>,
        initiative: &str,
        worker: &str,
        kind: EventKind,
        clear_given_up: bool,
    ) -> Result<bool> {
        self.in_transaction(|| {
            let sql = if clear_given_up {
                "UPDATE workers SET attempts = 0, last_attempt_at = NULL, given_up_at = NULL, \
                 last_verdict = NULL WHERE initiative = ?1 AND worker = ?2"
            } else {
                "UPDATE workers SET attempts = 0, last_attempt_at = NULL \
                 WHERE initiative = ?1 AND worker = ?2"
            };
            let changed = self
                .conn
                .prepare_cached(sql)?
                .execute(params![initiative, worker])?;
            if clear_given_up {
                // A reset also clears a deliberate stop.
                self.conn
                    .prepare_cached(
                        "UPDATE incarnations SET stopped = 0 WHERE initiative = ?1 AND worker = ?2",
                    )?
                    .execute(params![initiative, worker])?;
            }
            let event = NewEvent {
                worker: Some(worker),
                ..NewEvent::default()
            };
            self.insert_event(at, Some(initiative), kind, &event)?;
            Ok(changed > 0)
        })
    }

    /// The journal of `initiative` (all initiatives when `None`), optionally
    /// of one worker, oldest first, at most the `limit` newest rows.
    pub fn history(
        &self,
        initiative: Option<&str>,
        worker: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Event>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, at, initiative, worker, kind, pid, attempt, detail FROM events \
                 WHERE (?1 IS NULL OR initiative = ?1 OR initiative IS NULL) \
                   AND (?2 IS NULL OR worker = ?2) \
                 ORDER BY id DESC LIMIT ?3",
            )
            .map_err(|e| self.fail(e))?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt
            .query_map(params![initiative, worker, limit], |row| {
                Ok(Event {
                    id: row.get(0)?,
                    at: parse_time(&row.get::<_, String>(1)?).unwrap_or_default(),
                    initiative: row.get(2)?,
                    worker: row.get(3)?,
                    kind: row.get(4)?,
                    pid: row.get(5)?,
                    attempt: row.get(6)?,
                    detail: row.get(7)?,
                })
            })
            .map_err(|e| self.fail(e))?;
        let mut events: Vec<Event> = rows
            .collect::<rusqlite::Result<_>>()
            .map_err(|e| self.fail(e))?;
        events.reverse();
        Ok(events)
    }

    /// The newest event of one worker.
    pub fn last_event(&self, initiative: &str, worker: &str) -> Result<Option<Event>> {
        Ok(self
            .history(Some(initiative), Some(worker), 1)?
            .into_iter()
            .next())
    }

    /// Whether the worker has a row in `workers` (it was ever recorded).
    pub fn knows(&self, initiative: &str, worker: &str) -> Result<bool> {
        self.conn
            .query_row(
                "SELECT 1 FROM workers WHERE initiative = ?1 AND worker = ?2",
                params![initiative, worker],
                |_| Ok(()),
            )
            .optional()
            .map(|r| r.is_some())
            .map_err(|e| self.fail(e))
    }

    /// How many events of `kind` the journal holds for each worker of
    /// `initiative` (workers with none are left out). The journal is only
    /// ever appended to, so a count never goes down while the DB is kept.
    pub fn event_counts(&self, initiative: &str, kind: EventKind) -> Result<BTreeMap<String, u64>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT worker, count(*) FROM events \
                 WHERE initiative = ?1 AND kind = ?2 AND worker IS NOT NULL GROUP BY worker",
            )
            .map_err(|e| self.fail(e))?;
        let rows = stmt
            .query_map(params![initiative, kind.as_str()], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, i64>(1)?.max(0) as u64,
                ))
            })
            .map_err(|e| self.fail(e))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(|e| self.fail(e))
    }

    /// The current incarnation of each worker of `initiative` (all, or those
    /// in `only`): the newest recorded, when it belongs to boot `boot_id`
    /// (an incarnation of an earlier boot has no process left).
    ///
    /// The workers in `only` are looked up one by one through the
    /// `incarnations_by_worker` index, so that an event pass over one
    /// worker reads one row, not every incarnation ever recorded.
    pub fn current_incarnations(
        &self,
        initiative: &str,
        only: Option<&BTreeSet<String>>,
        boot_id: &str,
    ) -> Result<BTreeMap<String, Incarnation>> {
        if self.version < 2 {
            return Ok(BTreeMap::new());
        }
        const COLUMNS: &str = "worker, id, origin, boot_id, wrapper_pid, wrapper_start_ticks, \
             session, cgroup, attempt, started_at, ended_at, exit_status, signal, stopped";
        let mut all = BTreeMap::new();
        let mut keep = |(worker, inc): (String, Incarnation)| {
            if inc.boot_id == boot_id {
                all.insert(worker, inc);
            }
        };
        match only {
            None => {
                let mut stmt = self
                    .conn
                    .prepare_cached(&format!(
                        "SELECT {COLUMNS} FROM incarnations WHERE rowid IN \
                         (SELECT max(rowid) FROM incarnations WHERE initiative = ?1 \
                         GROUP BY worker)"
                    ))
                    .map_err(|e| self.fail(e))?;
                let rows = stmt
                    .query_map(params![initiative], incarnation_row)
                    .map_err(|e| self.fail(e))?;
                for row in rows {
                    keep(row.map_err(|e| self.fail(e))?);
                }
            }
            Some(ids) => {
                // The newest of a worker: the index holds (initiative,
                // worker, rowid), walked backwards from its end.
                let mut stmt = self
                    .conn
                    .prepare_cached(&format!(
                        "SELECT {COLUMNS} FROM incarnations \
                         WHERE initiative = ?1 AND worker = ?2 ORDER BY rowid DESC LIMIT 1"
                    ))
                    .map_err(|e| self.fail(e))?;
                for id in ids {
                    let row = stmt
                        .query_row(params![initiative, id], incarnation_row)
                        .optional()
                        .map_err(|e| self.fail(e))?;
                    if let Some(row) = row {
                        keep(row);
                    }
                }
            }
        }
        Ok(all)
    }

    /// Records a new incarnation (before its wrapper is spawned, or when one
    /// is adopted), journaling `adopted` for adoptions. An incarnation
    /// already recorded under that id for the same worker and not ended
    /// (spawned by a monitor that died before it recorded the wrapper) gets
    /// its wrapper recorded. Returns false, recording nothing, when the id
    /// belongs to another worker's or an ended incarnation (an id inherited
    /// where it should not have been): the caller takes a fresh one.
    pub fn record_incarnation(
        &self,
        initiative: &str,
        worker: &str,
        inc: &Incarnation,
    ) -> Result<bool> {
        self.in_transaction(|| {
            let changed = self.conn
                .prepare_cached(
                    "INSERT INTO incarnations (id, initiative, worker, origin, boot_id, wrapper_pid, \
                     wrapper_start_ticks, session, cgroup, attempt, started_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) \
                     ON CONFLICT (id) DO UPDATE SET wrapper_pid = excluded.wrapper_pid, \
                     wrapper_start_ticks = excluded.wrapper_start_ticks, session = excluded.session \
                     WHERE incarnations.initiative = excluded.initiative \
                     AND incarnations.worker = excluded.worker AND incarnations.ended_at IS NULL",
                )?
                .execute(params![
                    inc.id,
                    initiative,
                    worker,
                    inc.origin.as_str(),
                    inc.boot_id,
                    inc.wrapper.map(|w| w.pid),
                    inc.wrapper.map(|w| w.start_ticks as i64),
                    inc.session,
                    inc.cgroup,
                    inc.attempt,
                    format_time(inc.started_at),
                ])?;
            if changed == 0 {
                return Ok(false);
            }
            if inc.origin == Origin::Adopted {
                let event = NewEvent {
                    worker: Some(worker),
                    pid: inc.wrapper.map(|w| w.pid),
                    detail: Some(format!("incarnation {}", inc.id)),
                    ..NewEvent::default()
                };
                self.insert_event(inc.started_at, Some(initiative), EventKind::Adopted, &event)?;
            }
            Ok(true)
        })
    }

    /// Records the spawned wrapper of incarnation `id`: its PID, start time
    /// and session.
    pub fn set_wrapper(&self, id: &str, wrapper: ProcessId, session: Option<i32>) -> Result<()> {
        self.conn
            .prepare_cached(
                "UPDATE incarnations SET wrapper_pid = ?2, wrapper_start_ticks = ?3, session = ?4 \
                 WHERE id = ?1",
            )
            .and_then(|mut s| {
                s.execute(params![
                    id,
                    wrapper.pid,
                    wrapper.start_ticks as i64,
                    session
                ])
            })
            .map(|_| ())
            .map_err(|e| self.fail(e))
    }

    /// The cgroups of every incarnation on record, for the one that created
    /// them to remove them (the demo, which stops everything it started).
    ///
    /// Errors: the DB cannot be read.
    pub fn incarnation_cgroups(&self) -> Result<Vec<String>> {
        if self.version < 2 {
            return Ok(Vec::new());
        }
        let mut stmt = self
            .conn
            .prepare_cached("SELECT cgroup FROM incarnations WHERE cgroup IS NOT NULL")
            .map_err(|e| self.fail(e))?;
        let rows = stmt
            .query_map([], |row| row.get::<_, String>(0))
            .map_err(|e| self.fail(e))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(|e| self.fail(e))
    }

    /// Records how incarnation `id` ended and journals `ended`.
    pub fn end_incarnation(
        &self,
        initiative: &str,
        worker: &str,
        id: &str,
        ending: &Ending,
    ) -> Result<()> {
        self.in_transaction(|| {
            self.conn
                .prepare_cached(
                    "UPDATE incarnations SET ended_at = ?2, exit_status = ?3, signal = ?4, \
                     stopped = ?5 WHERE id = ?1 AND ended_at IS NULL",
                )?
                .execute(params![
                    id,
                    format_time(ending.at),
                    ending.exit_status,
                    ending.signal,
                    ending.stopped as i64
                ])?;
            let detail = describe_ending(ending);
            let event = NewEvent {
                worker: Some(worker),
                detail: Some(format!("incarnation {id}: {detail}")),
                ..NewEvent::default()
            };
            self.insert_event(ending.at, Some(initiative), EventKind::Ended, &event)
        })
    }
}

impl StateDb {
    /// Marks incarnation `id`, ended or not, as stopped deliberately (a
    /// `stop` asked for while it was dead or waiting for its restart), so
    /// that it stays stopped; journals `stopped` with `detail`.
    pub fn mark_stopped(
        &self,
        initiative: &str,
        worker: &str,
        id: &str,
        detail: &str,
    ) -> Result<()> {
        self.in_transaction(|| {
            self.conn
                .prepare_cached("UPDATE incarnations SET stopped = 1 WHERE id = ?1")?
                .execute(params![id])?;
            let event = NewEvent {
                worker: Some(worker),
                detail: Some(format!("incarnation {id}: {detail}")),
                ..NewEvent::default()
            };
            self.insert_event(Utc::now(), Some(initiative), EventKind::Stopped, &event)
        })
    }
}

impl StateDb {
    /// Records one call of the control API in the `audit` table, its fields
    /// bounded and escaped ([`AuditRecord::bounded`]).
    ///
    /// Errors: the DB cannot be written.
    pub fn record_audit(&self, record: &AuditRecord) -> Result<()> {
        let r = record.bounded();
        self.conn
            .prepare_cached(
                "INSERT INTO audit (at, caller_id, trusted_by, peer, method, path, target, \
                 status, result) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    format_time(r.at),
                    r.caller_id,
                    r.trusted_by.as_str(),
                    r.peer,
                    r.method,
                    r.path,
                    r.target,
                    r.status,
                    r.result
                ])
            })
            .map(|_| ())
            .map_err(|e| self.fail(e))
    }

    /// The newest `limit` records of the audit trail, oldest first. A DB of
    /// a schema before version 3 has none. A row whose `trusted_by` this
    /// pidwatch does not know (written by a newer one) reads as
    /// [`TrustedBy::Refused`].
    ///
    /// Errors: the DB cannot be read.
    pub fn audit(&self, limit: usize) -> Result<Vec<AuditRecord>> {
        if self.version < 3 {
            return Ok(Vec::new());
        }
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT at, caller_id, trusted_by, peer, method, path, target, status, result \
                 FROM audit ORDER BY id DESC LIMIT ?1",
            )
            .map_err(|e| self.fail(e))?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt
            .query_map(params![limit], |row| {
                Ok(AuditRecord {
                    at: parse_time(&row.get::<_, String>(0)?).unwrap_or_default(),
                    caller_id: row.get(1)?,
                    trusted_by: TrustedBy::parse(&row.get::<_, String>(2)?)
                        .unwrap_or(TrustedBy::Refused),
                    peer: row.get(3)?,
                    method: row.get(4)?,
                    path: row.get(5)?,
                    target: row.get(6)?,
                    status: row.get::<_, i64>(7)?.clamp(0, i64::from(u16::MAX)) as u16,
                    result: row.get(8)?,
                })
            })
            .map_err(|e| self.fail(e))?;
        let mut records: Vec<AuditRecord> = rows
            .collect::<rusqlite::Result<_>>()
            .map_err(|e| self.fail(e))?;
        records.reverse();
        Ok(records)
    }
}

/// A row of `incarnations` as [`StateDb::current_incarnations`] selects
/// it: the worker and its incarnation.
fn incarnation_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<(String, Incarnation)> {
    let wrapper = match (row.get::<_, Option<i32>>(4)?, row.get::<_, Option<i64>>(5)?) {
        (Some(pid), Some(ticks)) => Some(ProcessId {
            pid,
            start_ticks: ticks.max(0) as u64,
        }),
        _ => None,
    };
    let ending = row
        .get::<_, Option<String>>(10)?
        .as_deref()
        .and_then(parse_time)
        .map(|at| -> rusqlite::Result<Ending> {
            Ok(Ending {
                at,
                exit_status: row.get(11)?,
                signal: row.get(12)?,
                stopped: row.get::<_, i64>(13)? != 0,
            })
        })
        .transpose()?;
    Ok((
        row.get::<_, String>(0)?,
        Incarnation {
            id: row.get(1)?,
            origin: Origin::parse(&row.get::<_, String>(2)?).unwrap_or(Origin::Adopted),
            boot_id: row.get(3)?,
            wrapper,
            session: row.get(6)?,
            cgroup: row.get(7)?,
            attempt: row.get(8)?,
            started_at: parse_time(&row.get::<_, String>(9)?).unwrap_or_default(),
            ending,
        },
    ))
}

/// How an incarnation ended, in words: `exit 0`, `signal TERM (a deliberate
/// stop)`, `wrapper gone, no exit file`.
pub fn describe_ending(ending: &Ending) -> String {
    match (&ending.signal, ending.exit_status) {
        (Some(sig), _) if ending.stopped => format!("signal {sig} (a deliberate stop)"),
        (Some(sig), _) => format!("signal {sig}"),
        (None, Some(code)) => format!("exit {code}"),
        (None, None) => "wrapper gone, no exit file".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn refused(result: Result<impl Sized>) -> PathBuf {
        match result {
            Err(Error::Symlink { path }) => path,
            Err(e) => panic!("not a refusal: {e}"),
            Ok(_) => panic!("a symlink was opened"),
        }
    }

    #[test]
    fn symlinked_db_and_side_files_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let victim = tmp.path().join("victim");
        std::fs::write(&victim, "precious\n").unwrap();
        let db = tmp.path().join("pidwatch.db");
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let link = side_file(&db, suffix);
            symlink(&victim, &link).unwrap();
            assert_eq!(refused(StateDb::open(&db)), link);
            assert_eq!(refused(StateDb::open_existing(&db)), link);
            std::fs::remove_file(&link).unwrap();
        }
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
        // Past the checks (a symlink planted since), SQLite refuses it too.
        symlink(&victim, &db).unwrap();
        assert_eq!(
            refused(connect(
                &db,
                OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE
            )),
            db
        );
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    }

    fn audit_record(n: u16, trusted_by: TrustedBy) -> AuditRecord {
        AuditRecord {
            at: parse_time("2026-03-01T10:00:00.25Z").unwrap(),
            caller_id: Some(format!("caller-{n}")),
            trusted_by,
            peer: "uid 1000".into(),
            method: "POST".into(),
            path: "/v1/restart".into(),
            target: n.is_multiple_of(2).then(|| "code@1".to_string()),
            status: n,
            result: "executed".into(),
        }
    }

    fn user_version(db: &Path) -> i64 {
        Connection::open(db)
            .unwrap()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn audit_records_round_trip_newest_last() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("pidwatch.db");
        let db = StateDb::open(&path).unwrap();
        assert!(db.audit(10).unwrap().is_empty());
        let records: Vec<_> = [
            TrustedBy::PeerUid,
            TrustedBy::Token,
            TrustedBy::Secret,
            TrustedBy::Confirmation,
            TrustedBy::Refused,
        ]
        .into_iter()
        .zip(200..)
        .map(|(t, n)| audit_record(n, t))
        .collect();
        for r in &records {
            db.record_audit(r).unwrap();
        }
        assert_eq!(db.audit(100).unwrap(), records);
        assert_eq!(db.audit(2).unwrap(), records[3..]);
        // Stored bounded and escaped.
        let mut long = audit_record(403, TrustedBy::Refused);
        long.caller_id = Some(format!("a\n{}", "b".repeat(500)));
        db.record_audit(&long).unwrap();
        let back = db.audit(1).unwrap().remove(0);
        assert_eq!(back, long.bounded());
        assert!(back.caller_id.unwrap().starts_with("a\\u{a}b"));
    }

    #[test]
    fn every_older_schema_gains_the_audit_table() {
        let fixtures: [(&str, &str); 2] = [
            ("v1", include_str!("../../tests/fixtures/state-v1.sql")),
            ("v2", include_str!("../../tests/fixtures/state-v2.sql")),
        ];
        for (name, sql) in fixtures {
            let tmp = tempfile::tempdir().unwrap();
            let path = tmp.path().join("pidwatch.db");
            Connection::open(&path).unwrap().execute_batch(sql).unwrap();
            let old = user_version(&path);
            // A reading command reads it as it is: no audit, nothing migrated.
            let db = StateDb::open_existing(&path).unwrap().unwrap();
            assert!(db.audit(10).unwrap().is_empty(), "{name}");
            assert!(!db.history(None, None, 100).unwrap().is_empty(), "{name}");
            drop(db);
            assert_eq!(user_version(&path), old, "{name}");
            // A writing one migrates it, keeping what was there.
            let events = {
                let db = StateDb::open(&path).unwrap();
                db.record_audit(&audit_record(200, TrustedBy::Token))
                    .unwrap();
                assert_eq!(db.audit(10).unwrap().len(), 1, "{name}");
                db.history(None, None, 100).unwrap()
            };
            assert_eq!(user_version(&path), SCHEMA_VERSION, "{name}");
            let db = StateDb::open_existing(&path).unwrap().unwrap();
            assert_eq!(db.history(None, None, 100).unwrap(), events, "{name}");
            assert_eq!(db.audit(10).unwrap().len(), 1, "{name}");
        }
    }

    #[test]
    fn a_new_db_is_created_at_the_current_schema() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("pidwatch.db");
        StateDb::open(&path).unwrap();
        assert_eq!(user_version(&path), SCHEMA_VERSION);
        // Opening again changes nothing.
        StateDb::open(&path).unwrap();
        assert_eq!(user_version(&path), SCHEMA_VERSION);
    }

    #[test]
    fn a_scoped_read_gives_what_the_full_read_gives_for_those_workers() {
        let tmp = tempfile::tempdir().unwrap();
        let db = StateDb::open(&tmp.path().join("pidwatch.db")).unwrap();
        let at = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let inc = |id: &str, boot: &str| Incarnation {
            id: id.into(),
            origin: Origin::Spawned,
            wrapper: Some(ProcessId {
                pid: 7,
                start_ticks: 9,
            }),
            boot_id: boot.into(),
            session: None,
            cgroup: None,
            started_at: at,
            attempt: Some(1),
            ending: None,
        };
        // a: two incarnations, the newest current; b: the newest is of
        // another boot; c: none; d: in another initiative.
        for (worker, id, boot) in [
            ("a", "a1", "boot"),
            ("b", "b1", "boot"),
            ("a", "a2", "boot"),
            ("b", "b2", "old"),
            ("d", "d1", "boot"),
        ] {
            let initiative = if worker == "d" { "j" } else { "i" };
            assert!(
                db.record_incarnation(initiative, worker, &inc(id, boot))
                    .unwrap()
            );
        }
        db.record_attempt(at, "i", "a", 2).unwrap();
        db.record_attempt(at, "i", "b", 1).unwrap();
        db.record_attempt(at, "j", "a", 5).unwrap();
        let full = db.current_incarnations("i", None, "boot").unwrap();
        assert_eq!(full.keys().collect::<Vec<_>>(), ["a"]);
        assert_eq!(full["a"].id, "a2");
        let only: BTreeSet<String> = ["a", "b", "c", "d"].map(String::from).into();
        assert_eq!(
            db.current_incarnations("i", Some(&only), "boot").unwrap(),
            full
        );
        let records = db.records("i", None).unwrap();
        assert_eq!(records.keys().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(db.records("i", Some(&only)).unwrap(), records);
        let one: BTreeSet<String> = ["a".to_string()].into();
        assert_eq!(db.records("i", Some(&one)).unwrap()["a"].attempts, 2);
    }

    #[test]
    fn deferred_checkpoints_run_when_due() {
        let tmp = tempfile::tempdir().unwrap();
        let db = StateDb::open(&tmp.path().join("pidwatch.db")).unwrap();
        let at = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let event = || NewEvent {
            worker: Some("w"),
            ..NewEvent::default()
        };
        // Not deferred: SQLite's own, never this one.
        db.journal(at, Some("i"), EventKind::Started, event())
            .unwrap();
        assert!(!db.checkpoint_if_due().unwrap());
        db.defer_checkpoints().unwrap();
        let changes = CHECKPOINT_AFTER_CHANGES as usize;
        for _ in 1..changes {
            db.journal(at, Some("i"), EventKind::Started, event())
                .unwrap();
        }
        assert!(!db.checkpoint_if_due().unwrap(), "one change short");
        db.journal(at, Some("i"), EventKind::Started, event())
            .unwrap();
        assert!(db.checkpoint_if_due().unwrap());
        assert!(!db.checkpoint_if_due().unwrap(), "nothing changed since");
        assert_eq!(
            db.history(Some("i"), None, 10_000).unwrap().len(),
            changes + 1
        );
    }

    #[test]
    fn a_db_in_a_folder_reached_through_a_symlink_opens() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("real")).unwrap();
        symlink(tmp.path().join("real"), tmp.path().join("link")).unwrap();
        let db = tmp.path().join("link/pidwatch.db");
        StateDb::open(&db).unwrap();
        assert!(StateDb::open_existing(&db).unwrap().is_some());
        assert!(tmp.path().join("real/pidwatch.db").is_file());
    }

    #[test]
    fn restarts_are_counted_per_worker_and_a_reset_does_not_lower_the_count() {
        let tmp = tempfile::tempdir().unwrap();
        let db = StateDb::open(&tmp.path().join("pidwatch.db")).unwrap();
        let at = Utc::now();
        for (worker, pid) in [("a", 10), ("a", 11), ("b", 12)] {
            db.record_attempt(at, "init", worker, 1).unwrap();
            db.record_restarted(at, "init", worker, pid, 1).unwrap();
        }
        db.record_restarted(at, "other", "a", 13, 1).unwrap();
        db.reset(at, "init", "a", EventKind::Reset, true).unwrap();
        let counts = db.event_counts("init", EventKind::Restarted).unwrap();
        assert_eq!(counts, BTreeMap::from([("a".into(), 2), ("b".into(), 1)]));
        let attempted = db
            .event_counts("init", EventKind::RestartAttempted)
            .unwrap();
        assert_eq!(attempted.get("a"), Some(&2));
        assert!(
            db.event_counts("none", EventKind::Restarted)
                .unwrap()
                .is_empty()
        );
    }
}

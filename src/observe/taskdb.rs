//! Reading the Task Copilot task DB and the Memory Copilot memory DB.
//!
//! Both belong to another program that writes them concurrently (WAL mode), so
//! they are opened read-only, with a busy timeout of [`BUSY_TIMEOUT`], and
//! never written. The task DB is followed by path: a file replaced under it
//! (`mv new.db tasks.db`) is opened again, a file removed is an error
//! ([`TaskDb::reopen_if_replaced`]). The schema is the one of
//! `reference/claude-copilot-orchestration.md`, section 3; tables pidwatch does
//! not need may be present or absent, and `tasks.archived` is optional (it
//! came with a later migration).
//!
//! Task metadata is JSON kept in a TEXT column. It is parsed here, row by row,
//! not with SQLite's `json_extract`, which fails the whole query on one
//! malformed row: a bad row becomes a warning that names the task, and is
//! skipped.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use serde_json::Value;

use crate::core::TaskCounts;
use crate::error::{BUSY_TIMEOUT, Error, Result, sql_error};
use crate::output::quote;

/// The task DB's name in errors.
const KIND: &str = "task DB";

/// An initiative of the memory DB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Initiative {
    /// `initiatives.id`, a UUID; PRDs refer to it in `prds.initiative_id`.
    pub id: String,
    /// `initiatives.name`, for display (the id when unknown).
    pub name: String,
}

impl Initiative {
    /// The first 8 characters of the id, as in worker log names.
    pub fn short_id(&self) -> &str {
        let end = self
            .id
            .char_indices()
            .nth(8)
            .map_or(self.id.len(), |(i, _)| i);
        &self.id[..end]
    }
}

/// A task that is neither completed nor cancelled, for the restart prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenTask {
    /// `tasks.id`.
    pub id: String,
    /// `tasks.title`.
    pub title: String,
    /// `tasks.status`.
    pub status: String,
}

/// One stream: the non-archived tasks of the initiative with the same
/// `metadata.streamId`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stream {
    /// `metadata.streamId`.
    pub id: String,
    /// `metadata.streamName` of its first task that has one.
    pub name: Option<String>,
    /// Task counts by status.
    pub tasks: TaskCounts,
    /// Union of `metadata.dependencies` and `metadata.streamDependencies`
    /// over its tasks.
    pub dependencies: BTreeSet<String>,
    /// Its tasks not yet completed or cancelled, in table order.
    pub open_tasks: Vec<OpenTask>,
}

/// The streams of one initiative, and the problems met reading them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamsReading {
    /// The streams by id.
    pub streams: BTreeMap<String, Stream>,
    /// One line per skipped or doubtful row, naming the task id.
    pub warnings: Vec<String>,
}

/// An open, validated task DB.
pub struct TaskDb {
    conn: Connection,
    path: PathBuf,
    has_archived: bool,
    /// The identity of the file at `path` when it was opened.
    id: FileId,
}

/// The identity of a file: its device and inode numbers (`stat(2)`'s
/// `st_dev` and `st_ino`). A file replaced by a rename, or deleted and
/// created again, has another: while a file is open its inode cannot be
/// reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileId {
    /// `st_dev`.
    pub dev: u64,
    /// `st_ino`.
    pub ino: u64,
}

impl FileId {
    /// The identity in `meta` (of `std::fs::metadata`, which follows
    /// symlinks: the identity of the file read).
    pub fn of(meta: &std::fs::Metadata) -> FileId {
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

/// Opens an SQLite file read-only with the busy timeout, after checking that
/// it is there; `kind` names it in errors.
fn open_readonly(kind: &'static str, path: &Path) -> Result<Connection> {
    open_readonly_file(kind, path).map(|(conn, _)| conn)
}

/// [`open_readonly`], also giving the identity of the file found before it
/// was opened: if it is replaced meanwhile, the identity is the old one, so
/// that a later check sees a change and opens it again.
fn open_readonly_file(kind: &'static str, path: &Path) -> Result<(Connection, FileId)> {
    let fail = |what: String| Error::Database {
        kind,
        path: path.to_path_buf(),
        what,
    };
    let id = match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => FileId::of(&meta),
        Ok(_) => return Err(fail("not a regular file".into())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(fail("does not exist".into()));
        }
        Err(e) => return Err(fail(format!("unreadable: {e}"))),
    };
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| sql_error(kind, path, &e))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(|e| sql_error(kind, path, &e))?;
    Ok((conn, id))
}

/// The columns of `table`, empty when the table does not exist.
fn columns(conn: &Connection, table: &str) -> rusqlite::Result<BTreeSet<String>> {
    let mut stmt = conn.prepare(&format!("PRAGMA table_info({table})"))?;
    let names = stmt.query_map([], |row| row.get::<_, String>(1))?;
    names.collect()
}

/// Checks that `table` has every column of `needed`.
fn require(
    kind: &'static str,
    path: &Path,
    have: &BTreeSet<String>,
    table: &str,
    needed: &[&str],
) -> Result<()> {
    if have.is_empty() {
        return Err(Error::Database {
            kind,
            path: path.to_path_buf(),
            what: format!(
                "has no table `{table}` (not a Task Copilot database, or an unknown schema)"
            ),
        });
    }
    let missing: Vec<&str> = needed
        .iter()
        .copied()
        .filter(|c| !have.contains(*c))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Error::Database {
            kind,
            path: path.to_path_buf(),
            what: format!(
                "table `{table}` lacks column(s) {} (unknown schema)",
                missing.join(", ")
            ),
        })
    }
}

impl TaskDb {
    /// Opens the task DB read-only and checks its schema.
    ///
    /// Errors ([`Error::Database`], exit 3): the file is missing, unreadable,
    /// not SQLite, corrupt, locked past [`BUSY_TIMEOUT`], or lacks the tables
    /// `tasks` (id, prd_id, title, status, metadata) and `prds` (id,
    /// initiative_id).
    pub fn open(path: &Path) -> Result<TaskDb> {
        let (conn, id) = open_readonly_file(KIND, path)?;
        let tasks = columns(&conn, "tasks").map_err(|e| sql_error(KIND, path, &e))?;
        require(
            KIND,
            path,
            &tasks,
            "tasks",
            &["id", "prd_id", "title", "status", "metadata"],
        )?;
        let prds = columns(&conn, "prds").map_err(|e| sql_error(KIND, path, &e))?;
        require(KIND, path, &prds, "prds", &["id", "initiative_id"])?;
        Ok(TaskDb {
            conn,
            path: path.to_path_buf(),
            has_archived: tasks.contains("archived"),
            id,
        })
    }

    /// The path it was opened at.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Looks at the path again (one `stat(2)`) and, when it now names
    /// another file than the one open (replaced by a rename, deleted and
    /// created again), opens that one as [`TaskDb::open`] does. An open
    /// SQLite connection would otherwise go on reading the old file, or the
    /// deleted one, forever. Returns whether it reopened.
    ///
    /// Errors ([`Error::Database`], exit 3): the file disappeared (deleted
    /// or moved away), cannot be looked at, or the new file cannot be opened
    /// ([`TaskDb::open`]); the old file then stays open, and the next call
    /// looks again.
    pub fn reopen_if_replaced(&mut self) -> Result<bool> {
        let fail = |what: String| Error::Database {
            kind: KIND,
            path: self.path.clone(),
            what,
        };
        let id = match std::fs::metadata(&self.path) {
            Ok(meta) => FileId::of(&meta),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(fail(
                    "disappeared (deleted or moved away since it was opened)".into(),
                ));
            }
            Err(e) => return Err(fail(format!("unreadable: {e}"))),
        };
        if id == self.id {
            return Ok(false);
        }
        *self = TaskDb::open(&self.path)?;
        Ok(true)
    }

    /// Reads the streams of `initiative_id`: its PRDs' non-archived tasks,
    /// grouped by `metadata.streamId`. Tasks of other initiatives, archived
    /// tasks and tasks without a `streamId` do not count.
    ///
    /// Errors ([`Error::Database`]): the query fails (locked past the timeout,
    /// corrupt). Bad rows are not errors: they are skipped with a warning.
    pub fn streams(&self, initiative_id: &str) -> Result<StreamsReading> {
        let mut reading = StreamsReading::default();
        self.read_rows(initiative_id, &mut reading)?;
        Ok(reading)
    }

    fn read_rows(&self, initiative_id: &str, reading: &mut StreamsReading) -> Result<()> {
        let archived = if self.has_archived {
            "AND COALESCE(t.archived, 0) = 0"
        } else {
            ""
        };
        let sql = format!(
            "SELECT t.id, t.title, t.status, t.metadata \
             FROM tasks t JOIN prds p ON p.id = t.prd_id \
             WHERE p.initiative_id = ?1 {archived} ORDER BY t.rowid"
        );
        let fail = |e: rusqlite::Error| sql_error(KIND, &self.path, &e);
        let mut stmt = self.conn.prepare_cached(&sql).map_err(fail)?;
        let mut rows = stmt.query([initiative_id]).map_err(fail)?;
        let mut index = 0usize;
        while let Some(row) = rows.next().map_err(fail)? {
            index += 1;
            let cells = [0, 1, 2, 3].map(|i| row.get_ref(i).map(text_of));
            let [Ok(id), Ok(title), Ok(status), Ok(metadata)] = cells else {
                reading
                    .warnings
                    .push(format!("task row {index}: unreadable columns; skipped"));
                continue;
            };
            let Some(id) = id.filter(|s| !s.is_empty()) else {
                reading
                    .warnings
                    .push(format!("task row {index}: no id; skipped"));
                continue;
            };
            let task = TaskRow {
                id,
                title: title.unwrap_or_default(),
                status,
                metadata,
            };
            task.add_to(reading);
        }
        Ok(())
    }
}

/// A column value as text: TEXT as is, numbers printed, NULL as `None`. A
/// BLOB is taken as UTF-8 text if it is.
fn text_of(value: ValueRef<'_>) -> Option<String> {
    match value {
        ValueRef::Null => None,
        ValueRef::Integer(i) => Some(i.to_string()),
        ValueRef::Real(f) => Some(f.to_string()),
        ValueRef::Text(t) | ValueRef::Blob(t) => Some(String::from_utf8_lossy(t).into_owned()),
    }
}

/// The keys of `tasks.metadata` that pidwatch reads. serde skips every other
/// key without building it, which is most of the cost of a row. Each is kept
/// as a JSON value, to report a wrong type rather than fail the row.
#[derive(serde::Deserialize)]
struct Metadata {
    #[serde(rename = "streamId", default)]
    stream_id: Option<Value>,
    #[serde(rename = "streamName", default)]
    stream_name: Option<Value>,
    #[serde(default)]
    dependencies: Option<Value>,
    #[serde(rename = "streamDependencies", default)]
    stream_dependencies: Option<Value>,
}

struct TaskRow {
    id: String,
    title: String,
    status: Option<String>,
    metadata: Option<String>,
}

impl TaskRow {
    fn add_to(self, reading: &mut StreamsReading) {
        let Some(text) = self.metadata.as_deref().filter(|t| !t.trim().is_empty()) else {
            return; // no metadata: not a stream task
        };
        let meta: Metadata = match serde_json::from_str(text) {
            Ok(meta) => meta,
            Err(e) => {
                reading.warnings.push(format!(
                    "task {}: metadata is not valid JSON ({e}); skipped",
                    quote(&self.id)
                ));
                return;
            }
        };
        let stream_id = match &meta.stream_id {
            None | Some(Value::Null) => return,
            Some(Value::String(s)) if crate::observe::pidfile::is_safe_id(s) => s.clone(),
            Some(Value::String(s)) => {
                reading.warnings.push(format!(
                    "task {}: metadata.streamId {} cannot name a PID file or folder; skipped",
                    quote(&self.id),
                    quote(s)
                ));
                return;
            }
            Some(other) => {
                reading.warnings.push(format!(
                    "task {}: metadata.streamId is not a non-empty string ({}); skipped",
                    quote(&self.id),
                    quote(&other.to_string())
                ));
                return;
            }
        };
        let stream = reading
            .streams
            .entry(stream_id.clone())
            .or_insert_with(|| Stream {
                id: stream_id,
                ..Stream::default()
            });
        if stream.name.is_none() {
            stream.name = meta
                .stream_name
                .as_ref()
                .and_then(Value::as_str)
                .map(str::to_string);
        }
        for (key, value) in [
            ("dependencies", &meta.dependencies),
            ("streamDependencies", &meta.stream_dependencies),
        ] {
            match value {
                None | Some(Value::Null) => {}
                Some(Value::Array(items)) => {
                    for item in items {
                        match item {
                            Value::String(dep) if !dep.is_empty() => {
                                stream.dependencies.insert(dep.clone());
                            }
                            other => reading.warnings.push(format!(
                                "task {}: metadata.{key} holds {}, not a stream id; ignored",
                                quote(&self.id),
                                quote(&other.to_string())
                            )),
                        }
                    }
                }
                Some(other) => reading.warnings.push(format!(
                    "task {}: metadata.{key} is not an array ({}); ignored",
                    quote(&self.id),
                    quote(&other.to_string())
                )),
            }
        }
        let counts = &mut stream.tasks;
        counts.total += 1;
        let status = self.status.unwrap_or_default();
        match status.as_str() {
            "completed" => counts.completed += 1,
            "cancelled" => counts.cancelled += 1,
            "in_progress" => counts.in_progress += 1,
            "pending" => counts.pending += 1,
            "blocked" => counts.blocked += 1,
            other => reading.warnings.push(format!(
                "task {}: unknown status {}; counted as not complete",
                quote(&self.id),
                quote(other)
            )),
        }
        if !matches!(status.as_str(), "completed" | "cancelled") {
            stream.open_tasks.push(OpenTask {
                id: self.id,
                title: self.title,
                status,
            });
        }
    }
}

/// Finds the active initiative in the memory DB: status `IN PROGRESS`, else
/// `BLOCKED`, else `NOT STARTED`, newest `created_at` first.
///
/// Errors: [`Error::Database`] (exit 3) when the memory DB is missing,
/// unreadable, locked or lacks `initiatives` (id, name, status,
/// created_at); [`Error::NoActiveInitiative`] when it names none.
pub fn active_initiative(memory_db: &Path) -> Result<Initiative> {
    const KIND: &str = "memory DB";
    let conn = open_readonly(KIND, memory_db)?;
    let cols = columns(&conn, "initiatives").map_err(|e| sql_error(KIND, memory_db, &e))?;
    require(
        KIND,
        memory_db,
        &cols,
        "initiatives",
        &["id", "name", "status", "created_at"],
    )?;
    conn.query_row(
        "SELECT id, name FROM initiatives \
         WHERE status IN ('IN PROGRESS', 'BLOCKED', 'NOT STARTED') \
         ORDER BY CASE status WHEN 'IN PROGRESS' THEN 0 WHEN 'BLOCKED' THEN 1 ELSE 2 END, \
                  created_at DESC LIMIT 1",
        [],
        |row| {
            Ok(Initiative {
                id: row.get(0)?,
                name: row.get::<_, Option<String>>(1)?.unwrap_or_default(),
            })
        },
    )
    .optional()
    .map_err(|e| sql_error(KIND, memory_db, &e))?
    .ok_or_else(|| Error::NoActiveInitiative(memory_db.to_path_buf()))
}

/// The name of initiative `id` in the memory DB, when it can be read.
pub fn initiative_name(memory_db: &Path, id: &str) -> Option<String> {
    let conn = open_readonly("memory DB", memory_db).ok()?;
    conn.query_row("SELECT name FROM initiatives WHERE id = ?1", [id], |row| {
        row.get::<_, String>(0)
    })
    .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::demo::TASKS_SCHEMA;

    /// Writes a task DB at `path` with one task of stream `S` in initiative
    /// `I`, of `status`.
    fn task_db(path: &Path, status: &str) {
        let conn = Connection::open(path).unwrap();
        conn.execute_batch(TASKS_SCHEMA).unwrap();
        conn.execute_batch(&format!(
            "INSERT INTO prds (id, initiative_id, title, content, created_at, updated_at) \
             VALUES ('P', 'I', 'PRD', '', 'x', 'x'); \
             INSERT INTO tasks (id, prd_id, title, status, metadata, created_at, updated_at) \
             VALUES ('T', 'P', 'Task', '{status}', '{{\"streamId\": \"S\"}}', 'x', 'x');"
        ))
        .unwrap();
    }

    fn completed(db: &TaskDb) -> u32 {
        db.streams("I").unwrap().streams["S"].tasks.completed
    }

    #[test]
    fn a_replaced_task_db_is_reopened_and_a_removed_one_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("tasks.db");
        task_db(&path, "in_progress");
        let mut db = TaskDb::open(&path).unwrap();
        assert!(!db.reopen_if_replaced().unwrap(), "nothing changed");
        assert_eq!(completed(&db), 0);

        let new = tmp.path().join("new.db");
        task_db(&new, "completed");
        std::fs::rename(&new, &path).unwrap();
        assert_eq!(completed(&db), 0, "the open connection reads the old file");
        assert!(db.reopen_if_replaced().unwrap());
        assert_eq!(completed(&db), 1, "the new file is read");
        assert!(!db.reopen_if_replaced().unwrap(), "reopened once");

        std::fs::remove_file(&path).unwrap();
        match db.reopen_if_replaced() {
            Err(e @ Error::Database { .. }) => {
                assert_eq!(e.exit_code(), crate::error::EXIT_CANNOT_CHECK);
                let text = e.to_string();
                assert!(text.contains(&path.display().to_string()), "{text}");
                assert!(text.contains("disappeared"), "{text}");
            }
            Err(e) => panic!("wrong error: {e}"),
            Ok(reopened) => panic!("no error for a removed task DB (reopened: {reopened})"),
        }
        // It comes back: read again.
        task_db(&path, "completed");
        assert!(db.reopen_if_replaced().unwrap());
        assert_eq!(completed(&db), 1);
    }
}

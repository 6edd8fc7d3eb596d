//! `observe`: reads the world into a [`Snapshot`], through the adapters.
//!
//! This is the only place where a pass reads the clock, PID files, `/proc`,
//! worker logs and the databases.

pub mod pidfile;
pub mod procfs;
pub mod taskdb;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use chrono::Utc;

use crate::config::{Paths, Settings};
use crate::core::{PidFileReading, RestartRecord, Snapshot, WorkerSnapshot};
use crate::error::{Error, Result};
use crate::observe::procfs::Procfs;
use crate::observe::taskdb::{Initiative, Stream, TaskDb};
use crate::store::statedb::StateDb;

/// How much of a worker log is read to tell whether it holds more than the
/// wrapper's header.
const LOG_PEEK_BYTES: u64 = 4096;

/// The long-lived readers of one orchestrator dir and initiative.
pub struct Observer {
    /// The resolved paths.
    pub paths: Paths,
    /// The `/proc` reader.
    pub procfs: Procfs,
    /// The initiative being watched.
    pub initiative: Initiative,
    taskdb: TaskDb,
}

/// One pass's reading: the snapshot for `decide`, and what else was read.
pub struct Observation {
    /// The snapshot.
    pub snapshot: Snapshot,
    /// The streams read from the task DB (names, open tasks for prompts).
    pub streams: BTreeMap<String, Stream>,
    /// Problems met while reading, one line each, naming the row or file.
    pub warnings: Vec<String>,
}

impl Observer {
    /// Opens the readers: checks the orchestrator dir, finds the initiative
    /// (`--initiative`, else the active one of the memory DB), opens and
    /// validates the task DB.
    ///
    /// Errors (exit 3): the orchestrator dir is missing; the memory DB cannot
    /// give an initiative; the task DB cannot be read (see [`TaskDb::open`]);
    /// `/proc` cannot be read.
    pub fn open(settings: &Settings) -> Result<Observer> {
        let paths = settings.paths.clone();
        match std::fs::metadata(&paths.dir) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(Error::CannotCheck(format!(
                    "orchestrator dir {} is not a folder",
                    paths.dir.display()
                )));
            }
            Err(e) => {
                return Err(Error::CannotCheck(format!(
                    "orchestrator dir {}: {e} (run from the project root, or give --dir)",
                    paths.dir.display()
                )));
            }
        }
        let procfs = Procfs::new().map_err(|e| Error::io("reading", Path::new("/proc"), e))?;
        let taskdb = TaskDb::open(&paths.tasks_db)?;
        let initiative = resolve_initiative(settings)?;
        Ok(Observer {
            paths,
            procfs,
            initiative,
            taskdb,
        })
    }

    /// Reads every worker of the initiative (`only` = `None`), or the named
    /// ones and everything they depend on, directly or not (so that `decide`
    /// sees whole dependency chains and cycles), into a snapshot. The task
    /// DB is read whole either way: one query, and the only way to find
    /// every task of a stream (its id may be JSON-escaped in the text).
    /// Restart records come from `state` when there is one.
    ///
    /// Errors: the task DB or the state DB cannot be read. A bad PID file,
    /// process or task row is never an error: it is a verdict or a warning.
    pub fn observe(
        &self,
        state: Option<&StateDb>,
        only: Option<&BTreeSet<String>>,
    ) -> Result<Observation> {
        let mut reading = self.taskdb.streams(&self.initiative.id)?;
        let scope = only.map(|ids| dependency_closure(&reading.streams, ids));
        if let Some(scope) = &scope {
            reading.streams.retain(|id, _| scope.contains(id));
        }
        let mut warnings = reading.warnings;
        let records = match state {
            Some(db) => db.records(&self.initiative.id, scope.as_ref())?,
            None => BTreeMap::new(),
        };
        if only.is_none() {
            warnings.extend(self.stray_pidfiles(&reading.streams));
        }
        let workers = reading
            .streams
            .values()
            .map(|stream| {
                let record = records.get(&stream.id).cloned().unwrap_or_default();
                self.observe_worker(stream, record)
            })
            .collect();
        Ok(Observation {
            snapshot: Snapshot {
                now: Utc::now(),
                workers,
            },
            streams: reading.streams,
            warnings,
        })
    }

    /// Reads one worker: its PID file, the process it names, whether it ever
    /// started.
    pub fn observe_worker(&self, stream: &Stream, record: RestartRecord) -> WorkerSnapshot {
        let path = pidfile::path_for(&self.paths.pid_dir, &stream.id);
        let reading = pidfile::read(&path, self.procfs.pid_max());
        let process = match &reading {
            PidFileReading::Valid { pid, .. } => Some(
                self.procfs
                    .observe(*pid)
                    .unwrap_or(crate::core::ProcessReading::Gone),
            ),
            _ => None,
        };
        let started =
            !matches!(reading, PidFileReading::Missing) || self.log_shows_a_run(&stream.id);
        WorkerSnapshot {
            id: stream.id.clone(),
            pidfile: reading,
            process,
            started,
            tasks: stream.tasks.clone(),
            dependencies: stream.dependencies.clone(),
            record,
        }
    }

    /// The worker log of this initiative: `logs/<id>_<first 8 of initiative>.log`.
    pub fn worker_log(&self, worker: &str) -> PathBuf {
        worker_log_path(&self.paths.log_dir, worker, &self.initiative)
    }

    fn log_shows_a_run(&self, worker: &str) -> bool {
        let Ok((file, _)) = pidfile::open_regular_nofollow(&self.worker_log(worker)) else {
            return false;
        };
        let mut head = Vec::new();
        if file.take(LOG_PEEK_BYTES).read_to_end(&mut head).is_err() {
            return false;
        }
        has_more_than_header(&String::from_utf8_lossy(&head))
    }

    /// PID files in `pids/` that name no stream of the initiative.
    fn stray_pidfiles(&self, streams: &BTreeMap<String, Stream>) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.paths.pid_dir) else {
            return Vec::new();
        };
        let mut stray: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let stem = name.strip_suffix(".pid")?;
                (!streams.contains_key(stem)).then(|| {
                    format!(
                        "PID file {} names no stream of initiative {}; ignored",
                        self.paths.pid_dir.join(&name).display(),
                        self.initiative.id
                    )
                })
            })
            .collect();
        stray.sort();
        stray
    }
}

/// The initiative to watch: `--initiative` (named from the memory DB when it
/// can be read), else the active initiative of the memory DB.
///
/// Errors: see [`taskdb::active_initiative`].
pub fn resolve_initiative(settings: &Settings) -> Result<Initiative> {
    match &settings.initiative {
        Some(id) => Ok(Initiative {
            id: id.clone(),
            name: taskdb::initiative_name(&settings.paths.memory_db, id)
                .unwrap_or_else(|| id.clone()),
        }),
        None => taskdb::active_initiative(&settings.paths.memory_db),
    }
}

/// `ids` and every stream they depend on, directly or not.
pub fn dependency_closure(
    streams: &BTreeMap<String, Stream>,
    ids: &BTreeSet<String>,
) -> BTreeSet<String> {
    let mut closure = BTreeSet::new();
    let mut todo: Vec<&str> = ids.iter().map(String::as_str).collect();
    while let Some(id) = todo.pop() {
        if closure.insert(id.to_string())
            && let Some(stream) = streams.get(id)
        {
            todo.extend(stream.dependencies.iter().map(String::as_str));
        }
    }
    closure
}

/// The worker log path for `worker` in `initiative`.
pub fn worker_log_path(log_dir: &Path, worker: &str, initiative: &Initiative) -> PathBuf {
    log_dir.join(format!("{worker}_{}.log", initiative.short_id()))
}

/// The lines the wrapper writes before the worker's own output.
const HEADER_PREFIXES: [&str; 6] = [
    "Started:",
    "Stream:",
    "Initiative:",
    "PID:",
    "Working dir:",
    "Log file:",
];

/// Whether a worker log holds anything beyond the wrapper's header (rules of
/// `=` and the `Started:` … `Log file:` lines): a worker that ran, or at
/// least exited (the footer counts).
pub fn has_more_than_header(text: &str) -> bool {
    text.lines().any(|line| {
        let line = line.trim();
        !(line.is_empty()
            || line.chars().all(|c| c == '=')
            || HEADER_PREFIXES.iter().any(|p| line.starts_with(p)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_alone_is_not_a_run() {
        let header = "========================================\n\
                      Started: 2026-01-13T10:30:00+00:00\nStream: Stream-A\n\
                      Initiative: 1234\nPID: 42\nWorking dir: /p\nLog file: /p/x.log\n\
                      ========================================\n";
        assert!(!has_more_than_header(""));
        assert!(!has_more_than_header(header));
        assert!(has_more_than_header(&format!("{header}worker output\n")));
        assert!(has_more_than_header(&format!(
            "{header}Worker exited: 2026-01-13T10:31:00+00:00\nExit code: 0\n"
        )));
    }
}

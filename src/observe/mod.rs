//! `observe`: reads the world into a [`Snapshot`], through the adapters.
//!
//! This is the only place where a pass reads the clock, PID files, `/proc`,
//! worker logs and the databases.

pub mod cgroup;
pub mod exitfile;
pub mod members;
pub mod pidfile;
pub mod procfs;
pub mod taskdb;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use chrono::Utc;

use crate::config::{Paths, Settings};
use crate::core::{
    Candidate, Ending, Incarnation, Member, PidFileReading, ProcessReading, RestartRecord,
    Snapshot, WorkerSnapshot,
};
use crate::error::{Error, Result};
use crate::observe::exitfile::ExitReading;
use crate::observe::members::{Exclude, MarkerCache, ProcEntry};
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
    /// This boot's id (`/proc/sys/kernel/random/boot_id`).
    pub boot_id: String,
    /// The task DB, reopened by a pass when its file was replaced.
    taskdb: RefCell<TaskDb>,
    /// A pass reopened the task DB; the next pass over every worker says so.
    taskdb_reopened: Cell<bool>,
    /// The markers of processes read by earlier scans.
    markers: RefCell<MarkerCache>,
}

/// The process table, read at most once per pass, when a worker without a
/// live wrapper or a cgroup needs its members found.
#[derive(Default)]
pub struct ProcessTable(Option<Vec<ProcEntry>>);

impl ProcessTable {
    /// The table, read now if it was not yet in this pass.
    ///
    /// Errors: `/proc` cannot be listed (out of descriptors, say): then
    /// nothing can be said of which processes live, and the pass fails
    /// rather than take an unread table for an empty one.
    fn get(&mut self, procfs: &Procfs, cache: &RefCell<MarkerCache>) -> Result<&[ProcEntry]> {
        if self.0.is_none() {
            let scan = members::scan(procfs, &mut cache.borrow_mut())
                .map_err(|e| Error::io("listing", procfs.root(), e))?;
            self.0 = Some(scan);
        }
        Ok(self.0.as_deref().unwrap_or_default())
    }
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
        let boot_id = procfs
            .boot_id()
            .map_err(|e| Error::io("reading", Path::new("/proc/sys/kernel/random/boot_id"), e))?;
        let taskdb = TaskDb::open(&paths.tasks_db)?;
        let initiative = resolve_initiative(settings)?;
        Ok(Observer {
            paths,
            procfs,
            initiative,
            boot_id,
            taskdb: RefCell::new(taskdb),
            taskdb_reopened: Cell::new(false),
            markers: RefCell::new(MarkerCache::default()),
        })
    }

    /// Reads every worker of the initiative (`only` = `None`), or the named
    /// ones and everything they depend on, directly or not (so that `decide`
    /// sees whole dependency chains and cycles), into a snapshot. The task
    /// DB is read whole either way: one query, and the only way to find
    /// every task of a stream (its id may be JSON-escaped in the text).
    /// Restart records come from `state` when there is one. The task DB is
    /// opened again first when its file was replaced
    /// ([`TaskDb::reopen_if_replaced`]); the next pass over every worker
    /// warns `task DB <path> was replaced; reopened`.
    ///
    /// Errors: the task DB or the state DB cannot be read, or the task DB
    /// disappeared. A bad PID file, process or task row is never an error:
    /// it is a verdict or a warning.
    pub fn observe(
        &self,
        state: Option<&StateDb>,
        only: Option<&BTreeSet<String>>,
    ) -> Result<Observation> {
        if self.taskdb.borrow_mut().reopen_if_replaced()? {
            self.taskdb_reopened.set(true);
        }
        let mut reading = self.taskdb.borrow().streams(&self.initiative.id)?;
        let scope = only.map(|ids| dependency_closure(&reading.streams, ids));
        if let Some(scope) = &scope {
            reading.streams.retain(|id, _| scope.contains(id));
        }
        let mut warnings = reading.warnings;
        let records = match state {
            Some(db) => db.records(&self.initiative.id, scope.as_ref())?,
            None => BTreeMap::new(),
        };
        let mut incarnations = match state {
            Some(db) => {
                db.current_incarnations(&self.initiative.id, scope.as_ref(), &self.boot_id)?
            }
            None => BTreeMap::new(),
        };
        if only.is_none() {
            warnings.extend(self.stray_pidfiles(&reading.streams));
            if self.taskdb_reopened.take() {
                let path = self.paths.tasks_db.display();
                warnings.push(format!("task DB {path} was replaced; reopened"));
            }
        }
        let mut table = ProcessTable::default();
        let workers = reading
            .streams
            .values()
            .map(|stream| {
                let record = records.get(&stream.id).cloned().unwrap_or_default();
                let incarnation = incarnations.remove(&stream.id);
                self.observe_worker(stream, record, incarnation, &mut table)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Observation {
            snapshot: Snapshot {
                now: Utc::now(),
                workers,
            },
            streams: reading.streams,
            warnings,
        })
    }

    /// Reads one worker: its PID file and the process it names (and what
    /// that process proves to be), its current incarnation's wrapper, the
    /// live processes of its incarnations when no wrapper lives, its exit
    /// file, whether it ever started. `table` is the pass's process table,
    /// read on first need.
    ///
    /// Errors: the process table or the incarnation's cgroup cannot be read:
    /// which processes of the worker live is then unknown.
    pub fn observe_worker(
        &self,
        stream: &Stream,
        record: RestartRecord,
        incarnation: Option<Incarnation>,
        table: &mut ProcessTable,
    ) -> Result<WorkerSnapshot> {
        // A cgroup path read back from the state DB is trusted only in the
        // shape pidwatch gives it (`…/<worker>.<incarnation id>`): a row
        // pointing elsewhere (a hand edit, the mount's root) must never make
        // pidwatch signal what lives there.
        let incarnation = incarnation.map(|mut inc| {
            if inc
                .cgroup
                .as_deref()
                .is_some_and(|c| !c.ends_with(&format!(".{}", inc.id)))
            {
                inc.cgroup = None;
            }
            inc
        });
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
        // The PID file names the recorded wrapper, as it does while all is
        // well: its reading serves for both (one `/proc` read a worker a
        // sweep, not two).
        let wrapper =
            incarnation
                .as_ref()
                .and_then(|inc| inc.wrapper)
                .map(|w| match (&reading, &process) {
                    (PidFileReading::Valid { pid, .. }, Some(p)) if *pid == w.pid => match p {
                        ProcessReading::Alive(info) if info.start_ticks == w.start_ticks => {
                            p.clone()
                        }
                        _ => ProcessReading::Gone,
                    },
                    _ => self.process_if_same(w.pid, w.start_ticks),
                });
        let wrapper_lives = matches!(&wrapper, Some(ProcessReading::Alive(i)) if !i.has_exited())
            && incarnation.as_ref().is_some_and(|i| i.ending.is_none());
        let candidate = match (&reading, &process) {
            (PidFileReading::Valid { pid, mtime }, Some(ProcessReading::Alive(info)))
                if !info.has_exited()
                    && info.start_time <= *mtime + crate::core::START_TIME_TOLERANCE
                    && !(wrapper_lives
                        && incarnation
                            .as_ref()
                            .and_then(|i| i.wrapper)
                            .is_some_and(|w| {
                                w.pid == *pid && w.start_ticks == info.start_ticks
                            })) =>
            {
                self.candidate(*pid, &stream.id, &path)
            }
            _ => Candidate::NotLooked,
        };
        // Who else of the worker lives is looked for when no wrapper of it
        // is known to live, or beside a wrapper to adopt when an earlier
        // incarnation of it is on record (its survivors are stopped then).
        // A plain check of running workers pidwatch never recorded reads no
        // process table.
        let adoptable_without_record =
            matches!(candidate, Candidate::Wrapper { .. }) && incarnation.is_none();
        let found = if wrapper_lives || stream.tasks.is_complete() || adoptable_without_record {
            members::Found::default()
        } else {
            let exclude = match (&candidate, &process) {
                (Candidate::Wrapper { invocation }, Some(ProcessReading::Alive(info))) => Exclude {
                    wrapper: reading.pid(),
                    invocation: invocation.clone(),
                    session: reading.pid().filter(|p| info.session == *p),
                },
                _ => Exclude::default(),
            };
            self.members(&stream.id, incarnation.as_ref(), &exclude, table)?
        };
        // A live wrapper whose PID file is gone may be finishing: its exit
        // file, written just before, says so.
        let exit = if wrapper_lives && !matches!(reading, PidFileReading::Missing) {
            None
        } else {
            self.exit_of(&path, incarnation.as_ref())
        };
        let started =
            !matches!(reading, PidFileReading::Missing) || self.log_shows_a_run(&stream.id);
        let pidfile_fresh_until = self.fresh_until(&path, &reading);
        Ok(WorkerSnapshot {
            id: stream.id.clone(),
            pidfile: reading,
            pidfile_fresh_until,
            process,
            started,
            tasks: stream.tasks.clone(),
            dependencies: stream.dependencies.clone(),
            record,
            candidate,
            incarnation,
            wrapper,
            members: found.members,
            elsewhere: found.elsewhere,
            exit,
            restart: None,
        })
    }

    /// When an empty or not-a-number PID file stops counting as being
    /// written: its mtime plus [`crate::core::PIDFILE_GRACE`], if that is
    /// still ahead.
    fn fresh_until(&self, path: &Path, reading: &PidFileReading) -> Option<chrono::DateTime<Utc>> {
        let mtime = match reading {
            PidFileReading::Invalid(
                crate::core::InvalidPidFile::Empty | crate::core::InvalidPidFile::NotANumber(_),
            ) => pidfile::mtime_of(&std::fs::symlink_metadata(path).ok()?),
            _ => return None,
        };
        let until = mtime + crate::core::PIDFILE_GRACE;
        (until > Utc::now()).then_some(until)
    }

    /// How the last run ended, from the exit file beside `pid_file`: only
    /// a file of the current incarnation counts, or, when none is recorded,
    /// one written in this boot. An invalid file counts as no file.
    fn exit_of(&self, pid_file: &Path, incarnation: Option<&Incarnation>) -> Option<Ending> {
        let path = exitfile::path_for(pid_file);
        let ExitReading::Valid(record) = exitfile::read(&path) else {
            return None;
        };
        let belongs = match incarnation {
            Some(inc) => inc.id == record.incarnation,
            None => std::fs::symlink_metadata(&path)
                .is_ok_and(|m| pidfile::mtime_of(&m) >= self.procfs.boot_time()),
        };
        belongs.then(|| Ending {
            at: Utc::now(),
            exit_status: record.exit_status.map(i32::from),
            stopped: record.is_deliberate_stop(),
            signal: record.signal,
        })
    }

    /// The process `pid` if it still is the one that started at
    /// `start_ticks`, else `Gone`.
    fn process_if_same(&self, pid: i32, start_ticks: u64) -> ProcessReading {
        match self.procfs.observe(pid) {
            Ok(ProcessReading::Alive(info)) if info.start_ticks == start_ticks => {
                ProcessReading::Alive(info)
            }
            _ => ProcessReading::Gone,
        }
    }

    /// What the live process `pid` named by `pid_file` is: this worker's
    /// wrapper when its command line runs the wrapper script (by file name)
    /// with this worker id and this PID file, else a stranger.
    fn candidate(&self, pid: i32, worker: &str, pid_file: &Path) -> Candidate {
        let Ok(argv) = self.procfs.cmdline(pid) else {
            return Candidate::Foreign;
        };
        let Some(wrapper_name) = self.paths.wrapper.file_name() else {
            return Candidate::Foreign;
        };
        if !is_wrapper_cmdline(
            &argv,
            wrapper_name.as_encoded_bytes(),
            worker,
            pid_file,
            &self.initiative.id,
        ) {
            return Candidate::Foreign;
        }
        let invocation = self.procfs.markers(pid).ok().and_then(|m| m.invocation);
        Candidate::Wrapper { invocation }
    }

    /// Every live process of the worker, for `status`: the members of its
    /// running incarnation (its cgroup's, or its wrapper, the carriers of
    /// its id and the members of the session the wrapper leads), the
    /// workers of an incarnation pidwatch does not know, or, when it is not
    /// running, the leftovers observe found.
    pub fn live_processes(&self, worker: &WorkerSnapshot, table: &mut ProcessTable) -> Vec<Member> {
        if !worker.members.is_empty() {
            return worker.members.clone();
        }
        let (wrapper, invocation, session) = match crate::core::liveness(worker).0 {
            Ok(crate::core::Alive::Current { .. }) => {
                let inc = worker.incarnation.as_ref();
                if let Some(cgroup) = inc.and_then(|i| i.cgroup.as_deref()) {
                    return members::cgroup_members(&self.procfs, Path::new(cgroup))
                        .unwrap_or_default();
                }
                (
                    inc.and_then(|i| i.wrapper),
                    inc.map(|i| i.id.clone()),
                    inc.and_then(|i| i.session),
                )
            }
            Ok(crate::core::Alive::Adoptable {
                wrapper,
                invocation,
                session,
                ..
            }) => (Some(wrapper), invocation, session),
            // Running under a wrapper pidwatch does not know: what observe
            // found of it.
            Ok(crate::core::Alive::Unrecorded { .. }) => return worker.elsewhere.clone(),
            _ => return Vec::new(),
        };
        let Ok(processes) = table.get(&self.procfs, &self.markers) else {
            return Vec::new();
        };
        let mut found: Vec<Member> = processes
            .iter()
            .filter(|e| {
                wrapper.is_some_and(|w| w.pid == e.pid)
                    || (invocation.is_some() && e.markers.invocation == invocation)
                    || (session.is_some_and(|s| e.stat.session == s)
                        && wrapper.is_some_and(|w| e.stat.start_ticks >= w.start_ticks))
            })
            .map(|e| Member {
                process: crate::core::ProcessId {
                    pid: e.pid,
                    start_ticks: e.stat.start_ticks,
                },
                comm: e.stat.comm.clone(),
                incarnation: e.markers.invocation.clone(),
                proof: crate::core::Proof::Session,
            })
            .collect();
        found.sort_by_key(|m| m.process.pid);
        found
    }

    /// The live processes of the worker that belong to no live incarnation,
    /// and those of a live one pidwatch does not know.
    fn members(
        &self,
        worker: &str,
        incarnation: Option<&Incarnation>,
        exclude: &Exclude,
        table: &mut ProcessTable,
    ) -> Result<members::Found> {
        if let Some(cgroup) = incarnation.and_then(|i| i.cgroup.as_deref()) {
            // A cgroup lists its members exactly: no process-table scan.
            let members = members::cgroup_members(&self.procfs, Path::new(cgroup))
                .map_err(|e| Error::io("reading the cgroup", Path::new(cgroup), e))?;
            return Ok(members::Found {
                members: members
                    .into_iter()
                    .filter(|m| {
                        exclude.wrapper != Some(m.process.pid)
                            && (exclude.invocation.is_none() || m.incarnation != exclude.invocation)
                    })
                    .collect(),
                elsewhere: Vec::new(),
            });
        }
        // The session counts while a member that started by the time the
        // incarnation was last known to hold it lives.
        let cutoff = match incarnation.and_then(|i| i.ending.as_ref()) {
            Some(ending) => self.procfs.ticks_at(ending.at),
            None => self.procfs.now_ticks(),
        };
        Ok(members::members_of(
            table.get(&self.procfs, &self.markers)?,
            &self.worker_log(worker),
            worker,
            incarnation,
            exclude,
            cutoff,
        ))
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
                        "PID file {} in {} names no stream of initiative {}; ignored",
                        crate::output::quote(&name),
                        self.paths.pid_dir.display(),
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

/// Whether a command line (`/proc/<pid>/cmdline`) runs worker `worker`'s
/// wrapper: an argument whose file name is `wrapper_name`, followed by the
/// worker id, the PID file (the same path, or a relative path with the same
/// file name), the log dir, the work dir and the initiative id
/// `initiative` (the wrapper contract's order). `bash /x/worker-wrapper.sh
/// Stream-A /x/pids/Stream-A.pid /x/logs /p <initiative> …` and
/// `/x/worker-wrapper.sh Stream-A pids/Stream-A.pid …` both qualify; a
/// same-named stream of another initiative does not.
pub fn is_wrapper_cmdline(
    argv: &[Vec<u8>],
    wrapper_name: &[u8],
    worker: &str,
    pid_file: &Path,
    initiative: &str,
) -> bool {
    let file_name =
        |arg: &[u8]| -> Vec<u8> { arg.rsplit(|b| *b == b'/').next().unwrap_or(arg).to_vec() };
    let pid_file_bytes = pid_file.as_os_str().as_encoded_bytes();
    let pid_file_name = pid_file
        .file_name()
        .map(|n| n.as_encoded_bytes().to_vec())
        .unwrap_or_default();
    argv.windows(6).any(|w| {
        file_name(&w[0]) == wrapper_name
            && w[1] == worker.as_bytes()
            && (w[2] == pid_file_bytes
                || (!w[2].starts_with(b"/") && file_name(&w[2]) == pid_file_name))
            && w[5] == initiative.as_bytes()
    })
}

/// The worker log path for `worker` in `initiative`.
pub fn worker_log_path(log_dir: &Path, worker: &str, initiative: &Initiative) -> PathBuf {
    log_dir.join(format!("{worker}_{}.log", initiative.short_id()))
}

/// The lines the wrapper writes before the worker's own output.
const HEADER_PREFIXES: [&str; 7] = [
    "Started:",
    "Stream:",
    "Initiative:",
    "PID:",
    "Incarnation:",
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
    fn a_wrapper_is_known_by_its_arguments_in_the_contracts_order() {
        let argv = |args: &[&str]| -> Vec<Vec<u8>> {
            args.iter().map(|a| a.as_bytes().to_vec()).collect()
        };
        let pid_file = Path::new("/p/.claude/orchestrator/pids/W.pid");
        let name = b"worker-wrapper.sh";
        let full = argv(&[
            "bash",
            "/p/o/worker-wrapper.sh",
            "W",
            "/p/.claude/orchestrator/pids/W.pid",
            "/l",
            "/w",
            "I",
            "prompt",
        ]);
        assert!(is_wrapper_cmdline(&full, name, "W", pid_file, "I"));
        let relative = argv(&["/x/worker-wrapper.sh", "W", "pids/W.pid", "logs", "w", "I"]);
        assert!(is_wrapper_cmdline(&relative, name, "W", pid_file, "I"));
        for other in [
            argv(&[
                "/x/worker-wrapper.sh",
                "W",
                "pids/W.pid",
                "logs",
                "w",
                "Another",
            ]),
            argv(&["/x/worker-wrapper.sh", "V", "pids/W.pid", "logs", "w", "I"]),
            argv(&[
                "/x/worker-wrapper.sh",
                "W",
                "/elsewhere/W.pid",
                "logs",
                "w",
                "I",
            ]),
            argv(&["/x/other.sh", "W", "pids/W.pid", "logs", "w", "I"]),
            argv(&["/x/worker-wrapper.sh", "W", "pids/W.pid"]),
        ] {
            assert!(
                !is_wrapper_cmdline(&other, name, "W", pid_file, "I"),
                "{other:?}"
            );
        }
    }

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

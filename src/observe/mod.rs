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

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

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
use crate::observe::taskdb::Initiative;
use crate::source::{WorkerDef, WorkerSource};
use crate::store::statedb::StateDb;

/// The long-lived readers of one source of workers.
pub struct Observer {
    /// The resolved paths.
    pub paths: Paths,
    /// The `/proc` reader.
    pub procfs: Procfs,
    /// Where the workers come from.
    pub source: Box<dyn WorkerSource>,
    /// This boot's id (`/proc/sys/kernel/random/boot_id`).
    pub boot_id: String,
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
    /// The workers as their source described them.
    pub workers: BTreeMap<String, WorkerDef>,
    /// Problems met while reading, one line each, naming the row or file.
    pub warnings: Vec<String>,
}

impl Observer {
    /// Opens the readers: the source the settings name (see
    /// [`crate::source::open`]), `/proc` and the boot id.
    ///
    /// Errors (exit 3): the source cannot be opened (the orchestrator dir
    /// is missing, the memory DB gives no initiative, the task DB cannot be
    /// read); `/proc` cannot be read.
    pub fn open(settings: &Settings) -> Result<Observer> {
        let source = crate::source::open(settings)?;
        Observer::with_source(settings, source)
    }

    /// Opens the readers for a given source.
    ///
    /// Errors (exit 3): `/proc` cannot be read.
    pub fn with_source(settings: &Settings, source: Box<dyn WorkerSource>) -> Result<Observer> {
        let procfs = Procfs::new().map_err(|e| Error::io("reading", Path::new("/proc"), e))?;
        let boot_id = procfs
            .boot_id()
            .map_err(|e| Error::io("reading", Path::new("/proc/sys/kernel/random/boot_id"), e))?;
        Ok(Observer {
            paths: settings.paths.clone(),
            procfs,
            source,
            boot_id,
            markers: RefCell::new(MarkerCache::default()),
        })
    }

    /// The source's scope: the state DB's key and name of its workers.
    pub fn scope(&self) -> &Initiative {
        self.source.scope()
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
        let reading = self.source.read(only)?;
        let scope: Option<BTreeSet<String>> =
            only.map(|_| reading.workers.keys().cloned().collect());
        let warnings = reading.warnings;
        let key = &self.source.scope().id;
        let records = match state {
            Some(db) => db.records(key, scope.as_ref())?,
            None => BTreeMap::new(),
        };
        let mut incarnations = match state {
            Some(db) => db.current_incarnations(key, scope.as_ref(), &self.boot_id)?,
            None => BTreeMap::new(),
        };
        let mut table = ProcessTable::default();
        // Sized once: collected through a `Result`, the vector would grow by
        // doubling, and a sweep's snapshots are some 600 bytes a worker.
        let mut workers = Vec::with_capacity(reading.workers.len());
        for def in reading.workers.values() {
            let record = records.get(&def.id).cloned().unwrap_or_default();
            let incarnation = incarnations.remove(&def.id);
            workers.push(self.observe_worker(def, record, incarnation, &mut table)?);
        }
        Ok(Observation {
            snapshot: Snapshot {
                now: Utc::now(),
                workers,
            },
            workers: reading.workers,
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
        def: &WorkerDef,
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
        let path = self.source.pidfile(&def.id);
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
                self.source.identify(&self.procfs, &def.id, *pid)
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
        let found = if wrapper_lives || def.tasks.is_complete() || adoptable_without_record {
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
            self.members(&def.id, incarnation.as_ref(), &exclude, table)?
        };
        // A live wrapper whose PID file is gone may be finishing: its exit
        // file, written just before, says so.
        let exit = if wrapper_lives && !matches!(reading, PidFileReading::Missing) {
            None
        } else {
            self.exit_of(&def.id, incarnation.as_ref())
        };
        let started = self.source.ran_before(&def.id, self.procfs.boot_time());
        let program = self.source.program(&def.id, incarnation.as_ref());
        let pidfile_fresh_until = self.fresh_until(&path, &reading);
        Ok(WorkerSnapshot {
            id: def.id.clone(),
            pidfile: reading,
            pidfile_fresh_until,
            process,
            started,
            tasks: def.tasks.clone(),
            dependencies: def.dependencies.clone(),
            record,
            candidate,
            incarnation,
            wrapper,
            members: found.members,
            elsewhere: found.elsewhere,
            exit,
            restart: None,
            program,
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
    /// one written in this boot. An invalid file counts as no file. The
    /// ending's time is the file's `ended` (now when it has none, or one
    /// still to come).
    fn exit_of(&self, worker: &str, incarnation: Option<&Incarnation>) -> Option<Ending> {
        let path = self.source.exit_file(worker);
        let ExitReading::Valid(record) = exitfile::read(&path) else {
            return None;
        };
        let belongs = match incarnation {
            Some(inc) => inc.id == record.incarnation,
            None => std::fs::symlink_metadata(&path)
                .is_ok_and(|m| pidfile::mtime_of(&m) >= self.procfs.boot_time()),
        };
        let now = Utc::now();
        // When it ended, as the file says; a time to come is not believed.
        let ended = record
            .ended
            .as_deref()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc))
            .filter(|t| *t <= now);
        belongs.then(|| Ending {
            at: ended.unwrap_or(now),
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
            self.source.marker_log(worker).as_deref(),
            worker,
            incarnation,
            exclude,
            cutoff,
        ))
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

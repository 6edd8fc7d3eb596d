//! The claude-copilot stream orchestrator as a source of workers: one
//! worker per stream of the active initiative in the Task Copilot DB, PID
//! files in `DIR/pids`, started through the orchestrator's wrapper script
//! (reference, section 2), done when every task of its stream is.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::{Paths, Settings};
use crate::core::{Candidate, Incarnation, ProgramState};
use crate::error::{Error, Result};
use crate::observe::exitfile;
use crate::observe::pidfile;
use crate::observe::procfs::Procfs;
use crate::observe::taskdb::{Initiative, Stream, TaskDb};
use crate::source::{SourceReading, SpawnRequest, Started, WorkerDef, WorkerSource};

/// How much of a worker log is read to tell whether it holds more than the
/// wrapper's header.
const LOG_PEEK_BYTES: u64 = 4096;

/// The orchestrator's folder, initiative and task DB.
pub struct Orchestrator {
    paths: Paths,
    initiative: Initiative,
    /// A worker command run by the wrapper instead of its default.
    worker_command: Option<String>,
    /// The task DB, reopened by a read when its file was replaced.
    taskdb: RefCell<TaskDb>,
    /// A read reopened the task DB; the next full read says so.
    taskdb_reopened: Cell<bool>,
    /// The streams as last read, for the restart prompts.
    streams: RefCell<BTreeMap<String, Stream>>,
}

impl Orchestrator {
    /// Checks the orchestrator dir, finds the initiative (`--initiative`,
    /// else the active one of the memory DB), opens and validates the task DB.
    ///
    /// Errors (exit 3): the orchestrator dir is missing; the memory DB
    /// cannot give an initiative; the task DB cannot be read (see
    /// [`TaskDb::open`]).
    pub fn open(settings: &Settings) -> Result<Orchestrator> {
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
        let taskdb = TaskDb::open(&paths.tasks_db)?;
        let initiative = crate::observe::resolve_initiative(settings)?;
        Ok(Orchestrator {
            paths,
            initiative,
            worker_command: settings.spawn.worker_command.clone(),
            taskdb: RefCell::new(taskdb),
            taskdb_reopened: Cell::new(false),
            streams: RefCell::new(BTreeMap::new()),
        })
    }

    /// The worker log of this initiative: `logs/<id>_<first 8 of initiative>.log`.
    pub fn worker_log(&self, worker: &str) -> PathBuf {
        worker_log_path(&self.paths.log_dir, worker, &self.initiative)
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

impl WorkerSource for Orchestrator {
    fn scope(&self) -> &Initiative {
        &self.initiative
    }

    /// The task DB is read whole either way: one query, and the only way
    /// to find every task of a stream (its id may be JSON-escaped in the
    /// text). It is opened again first when its file was replaced
    /// ([`TaskDb::reopen_if_replaced`]); the next full read warns `task DB
    /// <path> was replaced; reopened`.
    fn read(&self, only: Option<&BTreeSet<String>>) -> Result<SourceReading> {
        if self.taskdb.borrow_mut().reopen_if_replaced()? {
            self.taskdb_reopened.set(true);
        }
        let mut reading = self.taskdb.borrow().streams(&self.initiative.id)?;
        if let Some(ids) = only {
            let graph = reading
                .streams
                .iter()
                .map(|(id, s)| (id.clone(), s.dependencies.clone()))
                .collect();
            let scope = super::dependency_closure(&graph, ids);
            reading.streams.retain(|id, _| scope.contains(id));
        }
        let mut warnings = reading.warnings;
        if only.is_none() {
            warnings.extend(self.stray_pidfiles(&reading.streams));
            if self.taskdb_reopened.take() {
                let path = self.paths.tasks_db.display();
                warnings.push(format!("task DB {path} was replaced; reopened"));
            }
        }
        let workers = reading
            .streams
            .values()
            .map(|s| {
                (
                    s.id.clone(),
                    WorkerDef {
                        id: s.id.clone(),
                        name: s.name.clone(),
                        dependencies: s.dependencies.clone(),
                        tasks: s.tasks.clone(),
                    },
                )
            })
            .collect();
        let mut cache = self.streams.borrow_mut();
        if only.is_none() {
            cache.clear();
        }
        cache.extend(reading.streams);
        Ok(SourceReading { workers, warnings })
    }

    fn pid_dir(&self) -> Option<PathBuf> {
        Some(self.paths.pid_dir.clone())
    }

    fn pidfile(&self, worker: &str) -> PathBuf {
        pidfile::path_for(&self.paths.pid_dir, worker)
    }

    fn exit_file(&self, worker: &str) -> PathBuf {
        exitfile::path_for(&self.pidfile(worker))
    }

    /// A PID file exists, or its worker log holds more than the wrapper's
    /// header.
    fn ran_before(&self, worker: &str, _boot_time: chrono::DateTime<chrono::Utc>) -> bool {
        if std::fs::symlink_metadata(self.pidfile(worker)).is_ok() {
            return true;
        }
        let Ok((file, _)) = pidfile::open_regular_nofollow(&self.worker_log(worker)) else {
            return false;
        };
        let mut head = Vec::new();
        if file.take(LOG_PEEK_BYTES).read_to_end(&mut head).is_err() {
            return false;
        }
        has_more_than_header(&String::from_utf8_lossy(&head))
    }

    /// This worker's wrapper when its command line runs the wrapper script
    /// (by file name) with this worker id and this PID file, else a stranger.
    fn identify(&self, procfs: &Procfs, worker: &str, pid: i32) -> Candidate {
        let Ok(argv) = procfs.cmdline(pid) else {
            return Candidate::Foreign;
        };
        let Some(wrapper_name) = self.paths.wrapper.file_name() else {
            return Candidate::Foreign;
        };
        if !is_wrapper_cmdline(
            &argv,
            wrapper_name.as_encoded_bytes(),
            worker,
            &self.pidfile(worker),
            &self.initiative.id,
        ) {
            return Candidate::Foreign;
        }
        let invocation = procfs.markers(pid).ok().and_then(|m| m.invocation);
        Candidate::Wrapper { invocation }
    }

    fn marker_log(&self, worker: &str) -> Option<PathBuf> {
        Some(self.worker_log(worker))
    }

    fn program(&self, _worker: &str, _incarnation: Option<&Incarnation>) -> Option<ProgramState> {
        None
    }

    fn stop_timeout(&self, _worker: &str) -> Option<Duration> {
        None
    }

    fn check_spawn(&self) -> std::result::Result<(), String> {
        crate::act::spawn::check_wrapper(&self.paths.wrapper)
    }

    /// Runs the wrapper with the contract's arguments and a prompt naming
    /// the stream's open tasks.
    fn spawn(&self, request: &SpawnRequest<'_>) -> std::result::Result<i32, String> {
        use crate::act::spawn::{WrapperCall, ensure_work_dir};
        let worker = request.worker;
        let paths = &self.paths;
        let work_dir = ensure_work_dir(&paths.project_root, worker)?;
        let stream = self
            .streams
            .borrow()
            .get(worker)
            .cloned()
            .unwrap_or_else(|| Stream {
                id: worker.to_string(),
                ..Stream::default()
            });
        let pid_file = self.pidfile(worker);
        let prompt = crate::act::prompt_for(&stream, &self.initiative);
        let call = WrapperCall {
            wrapper: &paths.wrapper,
            worker,
            pid_file: &pid_file,
            log_dir: &paths.log_dir,
            work_dir: &work_dir,
            initiative: &self.initiative.id,
            prompt: &prompt,
            worker_command: self.worker_command.as_deref(),
        };
        std::fs::create_dir_all(&paths.pid_dir)
            .map_err(|e| format!("creating {}: {e}", paths.pid_dir.display()))?;
        match request.cgroup {
            Some(cg) => call.spawn_in_cgroup(request.incarnation, cg),
            None => call.spawn_incarnation(Some(request.incarnation), None),
        }
        .map_err(|e| format!("cannot run wrapper {}: {e}", paths.wrapper.display()))
    }

    /// Success is the PID file naming this very wrapper.
    fn confirm(&self, procfs: &Procfs, worker: &str, child: i32, timeout: Duration) -> Started {
        use crate::act::spawn::{SpawnOutcome, wait_for_pidfile};
        match wait_for_pidfile(procfs, &self.pidfile(worker), child, timeout) {
            SpawnOutcome::Running(pid) => Started::Running(pid),
            SpawnOutcome::TimedOut => Started::TimedOut {
                missing: "no PID file naming a live process".into(),
                spawned: "wrapper",
            },
            SpawnOutcome::WrapperExited(status) => Started::Exited(status),
        }
    }
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

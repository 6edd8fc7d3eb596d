//! One orchestration in a temp dir under /tmp, laid out as the
//! claude-copilot orchestrator lays it out: the orchestrator dir with the
//! real wrapper, a task DB and a memory DB with one stream per worker, the
//! work dirs, and the workers themselves, run through the wrapper.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use pidwatch::act::spawn::WrapperCall;
use pidwatch::observe::taskdb::Initiative;
use rusqlite::{Connection, params};
use tempfile::TempDir;

use crate::BenchResult;
use crate::procs::{self, Reaper};

/// The initiative every bench orchestration watches.
pub(crate) const INITIATIVE: &str = "be4c0de0-0000-4000-8000-000000000001";

/// What each worker runs under the wrapper (through `sh -c`): a process
/// that lives until it is killed.
pub(crate) const WORKER_COMMAND: &str = "exec sleep 100000";

/// The prompt handed to wrappers the bench starts (one word: it also goes
/// into monit's `start program` line).
pub(crate) const PROMPT: &str = "pidwatch-bench";

/// How many wrappers are started at once: in small batches, with their logs
/// swept away in between (see [`Orchestration::sweep_logs`]), so that no
/// wrapper starts next to a thousand logs.
const START_BATCH: usize = 16;

/// How long one batch of wrappers may take to write their PID files.
const START_LIMIT: Duration = Duration::from_secs(60);

/// An orchestration: its folders and databases. The temp dir is removed
/// when it drops; the processes are the caller's to kill.
pub(crate) struct Orchestration {
    tmp: TempDir,
    /// The project root.
    pub(crate) project: PathBuf,
    /// The orchestrator dir, `<project>/.claude/orchestrator`.
    pub(crate) dir: PathBuf,
    /// The Task Copilot task DB.
    pub(crate) tasks_db: PathBuf,
    /// The Memory Copilot memory DB.
    pub(crate) memory_db: PathBuf,
    /// The worker (stream) ids, `W00001` and up.
    pub(crate) workers: Vec<String>,
}

impl Orchestration {
    /// Builds an orchestration of `count` workers, each a stream with one
    /// task in progress. No process is started.
    ///
    /// Errors: the temp dir, a folder or a database cannot be made.
    pub(crate) fn build(count: usize) -> BenchResult<Orchestration> {
        let tmp = tempfile::Builder::new()
            .prefix("pidwatch-bench-")
            .tempdir_in("/tmp")
            .map_err(|e| format!("making a temp dir: {e}"))?;
        let project = tmp.path().join("project");
        let dir = project.join(".claude/orchestrator");
        let db_dir = tmp.path().join("home");
        for d in [dir.join("pids"), dir.join("logs"), db_dir.clone()] {
            std::fs::create_dir_all(&d).map_err(|e| format!("creating {}: {e}", d.display()))?;
        }
        let orch = Orchestration {
            project,
            tasks_db: db_dir.join("tasks.db"),
            memory_db: db_dir.join("memory.db"),
            workers: (1..=count).map(|i| format!("W{i:05}")).collect(),
            dir,
            tmp,
        };
        orch.install_wrapper()?;
        orch.write_databases()
            .map_err(|e| format!("writing the bench databases: {e}"))?;
        Ok(orch)
    }

    /// The temp dir holding everything.
    pub(crate) fn root(&self) -> &Path {
        self.tmp.path()
    }

    /// The wrapper, `<dir>/worker-wrapper.sh`.
    pub(crate) fn wrapper(&self) -> PathBuf {
        self.dir.join("worker-wrapper.sh")
    }

    /// The worker logs, `<dir>/logs`.
    pub(crate) fn log_dir(&self) -> PathBuf {
        self.dir.join("logs")
    }

    /// pidwatch's own log.
    pub(crate) fn monitor_log(&self) -> PathBuf {
        self.log_dir().join("monitor.log")
    }

    /// `<dir>/pids/<worker>.pid`.
    pub(crate) fn pid_file(&self, worker: &str) -> PathBuf {
        pidwatch::observe::pidfile::path_for(&self.dir.join("pids"), worker)
    }

    /// Where `worker` works: `<project>/.claude/worktrees/<id>`.
    pub(crate) fn work_dir(&self, worker: &str) -> PathBuf {
        pidwatch::act::spawn::work_dir_for(&self.project, worker)
    }

    /// The PID its PID file names, if it holds one decimal number.
    pub(crate) fn read_pid(&self, worker: &str) -> Option<i32> {
        std::fs::read_to_string(self.pid_file(worker))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// The PID its PID file names, if that process is live.
    pub(crate) fn live_pid(&self, worker: &str) -> Option<i32> {
        self.read_pid(worker).filter(|pid| procs::is_live(*pid))
    }

    fn install_wrapper(&self) -> BenchResult<()> {
        let path = self.wrapper();
        std::fs::write(&path, pidwatch::WRAPPER_SCRIPT)
            .and_then(|_| std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)))
            .map_err(|e| format!("installing {}: {e}", path.display()))
    }

    fn write_databases(&self) -> rusqlite::Result<()> {
        let memory = Connection::open(&self.memory_db)?;
        memory.execute_batch(pidwatch::commands::demo::MEMORY_SCHEMA)?;
        memory.execute(
            "INSERT INTO initiatives (id, project_id, name, goal, status, created_at, updated_at) \
             VALUES (?1, 'bench', 'pidwatch bench', 'measure', 'IN PROGRESS', \
             '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z')",
            [INITIATIVE],
        )?;
        let mut tasks = Connection::open(&self.tasks_db)?;
        tasks.pragma_update(None, "journal_mode", "WAL")?;
        tasks.execute_batch(pidwatch::commands::demo::TASKS_SCHEMA)?;
        let tx = tasks.transaction()?;
        tx.execute(
            "INSERT INTO prds (id, initiative_id, title, content, created_at, updated_at) \
             VALUES ('PRD-bench', ?1, 'Bench PRD', '', '2026-01-01', '2026-01-01')",
            [INITIATIVE],
        )?;
        {
            let mut insert = tx.prepare(
                "INSERT INTO tasks (id, prd_id, title, status, metadata, created_at, updated_at) \
                 VALUES (?1, 'PRD-bench', ?2, 'in_progress', ?3, '2026-01-01', '2026-01-01')",
            )?;
            for w in &self.workers {
                let meta = format!(
                    "{{\"streamId\": \"{w}\", \"streamName\": \"bench stream {w}\", \"dependencies\": []}}"
                );
                insert.execute(params![
                    format!("TASK-{w}"),
                    format!("{w}: bench task"),
                    meta
                ])?;
            }
        }
        tx.commit()
    }

    /// Makes every worker's work dir, so that no git is needed.
    ///
    /// Errors: a folder cannot be made.
    pub(crate) fn create_work_dirs(&self) -> BenchResult<()> {
        for w in &self.workers {
            let d = self.work_dir(w);
            std::fs::create_dir_all(&d).map_err(|e| format!("creating {}: {e}", d.display()))?;
        }
        Ok(())
    }

    /// `--dir … --tasks-db … --memory-db …`: where pidwatch finds this
    /// orchestration.
    pub(crate) fn location_args(&self) -> Vec<OsString> {
        vec![
            "--dir".into(),
            self.dir.clone().into(),
            "--tasks-db".into(),
            self.tasks_db.clone().into(),
            "--memory-db".into(),
            self.memory_db.clone().into(),
        ]
    }

    /// `pidwatch <args> --dir … --tasks-db … --memory-db …`, stdin closed.
    pub(crate) fn pidwatch(&self, bin: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin);
        cmd.args(args)
            .args(self.location_args())
            .stdin(Stdio::null())
            .current_dir(&self.project);
        cmd
    }

    /// Starts `worker`'s wrapper the way pidwatch does (a new session,
    /// stdio on /dev/null); returns the wrapper's PID.
    ///
    /// Errors: the wrapper cannot be executed.
    pub(crate) fn spawn_wrapper(&self, worker: &str) -> BenchResult<i32> {
        let (wrapper, pid_file) = (self.wrapper(), self.pid_file(worker));
        let (log_dir, work_dir) = (self.log_dir(), self.work_dir(worker));
        WrapperCall {
            wrapper: &wrapper,
            worker,
            pid_file: &pid_file,
            log_dir: &log_dir,
            work_dir: &work_dir,
            initiative: INITIATIVE,
            prompt: PROMPT,
            worker_command: Some(WORKER_COMMAND),
        }
        .spawn()
        .map_err(|e| format!("starting the wrapper of {worker}: {e}"))
    }

    /// Starts every worker through the wrapper, a batch at a time, and
    /// waits for each PID file to name its wrapper.
    ///
    /// Errors: a wrapper cannot be started or writes no PID file in time.
    pub(crate) fn start_all(&self, reaper: &mut Reaper) -> BenchResult<()> {
        for batch in self.workers.chunks(START_BATCH) {
            let mut started = Vec::with_capacity(batch.len());
            for w in batch {
                started.push((w.as_str(), self.spawn_wrapper(w)?));
            }
            procs::wait_until(
                "a batch of wrappers' PID files",
                START_LIMIT,
                reaper,
                || {
                    started
                        .iter()
                        .all(|(w, pid)| self.read_pid(w) == Some(*pid))
                },
            )?;
            self.sweep_logs();
        }
        Ok(())
    }

    /// The worker log the wrapper appends to: `logs/<id>_<first 8 of initiative>.log`.
    pub(crate) fn worker_log(&self, worker: &str) -> PathBuf {
        let initiative = Initiative {
            id: INITIATIVE.into(),
            name: "pidwatch bench".into(),
        };
        pidwatch::source::orchestrator::worker_log_path(&self.log_dir(), worker, &initiative)
    }

    /// Removes the logs of this orchestration's workers from `logs/`
    /// (`monitor.log` and made-up logs stay). A wrapper may look at the
    /// files of `logs/` before it writes its PID file (one version forked
    /// `basename` per file); keeping `logs/` small keeps that cost out of the
    /// monitors' numbers, whatever the wrapper does (`latency::wrapper_floor`
    /// measures it on its own). A wrapper reopens its log for its worker just
    /// after writing its PID file, so the sweep is done before each kill
    /// rather than right after a respawn.
    pub(crate) fn sweep_logs(&self) {
        let suffix = format!("_{}.log", &INITIATIVE[..8]);
        let Ok(entries) = std::fs::read_dir(self.log_dir()) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let is_worker_log = name
                .to_str()
                .and_then(|n| n.strip_suffix(&suffix))
                .is_some_and(|id| id.starts_with('W'));
            if is_worker_log {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    /// `logs/` holds `count` worker logs of made-up workers, as it would
    /// with `count` workers running.
    ///
    /// Errors: a file cannot be written.
    pub(crate) fn fill_logs(&self, count: usize) -> BenchResult<()> {
        for i in 0..count {
            let path = self.worker_log(&format!("X{i:05}"));
            std::fs::write(&path, "worker output\n")
                .map_err(|e| format!("writing {}: {e}", path.display()))?;
        }
        Ok(())
    }
}

//! `pidwatch demo`: a small, real orchestration in a temp dir, watched by a
//! real monitor, so that a fresh machine can see pidwatch work end to end.
//!
//! It builds a Task Copilot task DB and a memory DB, four streams with
//! dependencies, and harmless shell-loop workers run through the real
//! wrapper; starts `pidwatch run --auto-restart`; kills a worker with
//! SIGKILL; completes a stream so that the one waiting on it is started;
//! prints status and history; and stops everything it started.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::Pid;
use owo_colors::OwoColorize;
use rusqlite::{Connection, params};

use crate::act::spawn::{self, SpawnOutcome, WrapperCall};
use crate::cli::DemoArgs;
use crate::core::{PidFileReading, ProcessReading};
use crate::error::{EXIT_OK, Error, Result};
use crate::observe::pidfile;
use crate::observe::procfs::Procfs;
use crate::store::statedb::StateDb;

/// The Task Copilot task DB schema (reference, section 3), with some of the
/// tables pidwatch does not read.
pub const TASKS_SCHEMA: &str = "
CREATE TABLE initiatives (id TEXT PRIMARY KEY, title TEXT NOT NULL, description TEXT,
    created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE TABLE prds (id TEXT PRIMARY KEY, initiative_id TEXT NOT NULL, title TEXT NOT NULL,
    description TEXT, content TEXT NOT NULL, metadata TEXT DEFAULT '{}',
    status TEXT DEFAULT 'active', created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE TABLE tasks (id TEXT PRIMARY KEY, prd_id TEXT REFERENCES prds(id), parent_id TEXT,
    title TEXT NOT NULL, description TEXT, assigned_agent TEXT,
    status TEXT DEFAULT 'pending', blocked_reason TEXT, notes TEXT, metadata TEXT DEFAULT '{}',
    created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
    archived INTEGER DEFAULT 0, archived_at TEXT, archived_by_initiative_id TEXT);
CREATE INDEX idx_prds_initiative ON prds(initiative_id);
CREATE INDEX idx_tasks_prd ON tasks(prd_id);
CREATE INDEX idx_tasks_status ON tasks(status);
CREATE INDEX idx_tasks_archived ON tasks(archived);
CREATE TABLE migrations (version INTEGER PRIMARY KEY, applied_at TEXT);
CREATE TABLE work_products (id TEXT PRIMARY KEY, task_id TEXT, content TEXT);
CREATE TABLE activity_log (id INTEGER PRIMARY KEY, message TEXT);
";

/// The memory DB's `initiatives` table (the columns pidwatch reads, and some).
pub const MEMORY_SCHEMA: &str = "
CREATE TABLE initiatives (id TEXT PRIMARY KEY, project_id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL, goal TEXT, status TEXT, decisions TEXT, lessons TEXT,
    created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
";

const INITIATIVE: &str = "d3m0c0de-0000-4000-8000-000000000001";
const WORKER_LOOP: &str = "while :; do echo \"$PIDWATCH_STREAM_ID: working\"; sleep 1; done";
/// How long each step of the demo may take before it is called a failure.
const STEP_LIMIT: Duration = Duration::from_secs(10);

/// One demo run: its folder and everything it started.
struct Demo {
    project: PathBuf,
    dir: PathBuf,
    tasks_db: PathBuf,
    memory_db: PathBuf,
    color: bool,
    procfs: Procfs,
    monitor: Option<Child>,
}

fn fail(what: impl std::fmt::Display) -> Error {
    Error::CannotCheck(format!("demo: {what}"))
}

impl Demo {
    fn say(&self, text: &str) {
        let line = format!("==> {text}");
        if self.color {
            crate::output::print_stdout(&format!("{}\n", line.bold()));
        } else {
            crate::output::print_stdout(&format!("{line}\n"));
        }
    }

    fn common_args(&self) -> Vec<String> {
        let p = |p: &Path| p.display().to_string();
        vec![
            "--dir".into(),
            p(&self.dir),
            "--tasks-db".into(),
            p(&self.tasks_db),
            "--memory-db".into(),
            p(&self.memory_db),
            "--color".into(),
            if self.color { "always" } else { "never" }.into(),
        ]
    }

    fn pidwatch(&self, args: &[&str]) -> Result<Command> {
        let exe = std::env::current_exe().map_err(|e| fail(format!("finding own binary: {e}")))?;
        let mut cmd = Command::new(exe);
        cmd.args(args).args(self.common_args()).stdin(Stdio::null());
        for (key, _) in std::env::vars_os() {
            let key_text = key.to_string_lossy();
            if key_text.starts_with("PIDWATCH_") || spawn::SCRUBBED_ENV.contains(&key_text.as_ref())
            {
                cmd.env_remove(&key);
            }
        }
        Ok(cmd)
    }

    /// Builds the folder, the databases and the wrapper.
    fn build(root: &Path, color: bool) -> Result<Demo> {
        let project = root.join("demo-project");
        let dir = project.join(".claude/orchestrator");
        let home = root.join("home");
        let tasks_db = home.join(".claude/tasks/demo-project/tasks.db");
        let memory_db = home.join(".claude/memory/demo-project/memory.db");
        for d in [
            dir.join("pids"),
            dir.join("logs"),
            tasks_db.parent().unwrap_or(root).to_path_buf(),
            memory_db.parent().unwrap_or(root).to_path_buf(),
        ] {
            std::fs::create_dir_all(&d).map_err(|e| Error::io("creating", &d, e))?;
        }
        for stream in ["Stream-A", "Stream-B", "Stream-C", "Stream-D"] {
            let d = spawn::work_dir_for(&project, stream);
            std::fs::create_dir_all(&d).map_err(|e| Error::io("creating", &d, e))?;
        }
        let wrapper = dir.join("worker-wrapper.sh");
        std::fs::write(&wrapper, crate::WRAPPER_SCRIPT)
            .and_then(|_| {
                std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755))
            })
            .map_err(|e| Error::io("writing", &wrapper, e))?;

        let db = |path: &Path, schema: &str| -> Result<Connection> {
            let conn =
                Connection::open(path).map_err(|e| fail(format!("{}: {e}", path.display())))?;
            conn.pragma_update(None, "journal_mode", "WAL")
                .and_then(|_| conn.execute_batch(schema))
                .map_err(|e| fail(format!("{}: {e}", path.display())))?;
            Ok(conn)
        };
        let memory = db(&memory_db, MEMORY_SCHEMA)?;
        memory
            .execute(
                "INSERT INTO initiatives (id, project_id, name, goal, status, created_at, updated_at) \
                 VALUES (?1, 'demo', 'pidwatch demo', 'show a watchdog at work', 'IN PROGRESS', \
                 '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z')",
                [INITIATIVE],
            )
            .map_err(fail)?;
        let tasks = db(&tasks_db, TASKS_SCHEMA)?;
        tasks
            .execute(
                "INSERT INTO prds (id, initiative_id, title, content, created_at, updated_at) \
                 VALUES ('PRD-demo', ?1, 'Demo PRD', '', '2026-01-01', '2026-01-01')",
                [INITIATIVE],
            )
            .map_err(fail)?;
        // Stream-A is done (one task cancelled); B runs; C waits on B; D
        // depends on the finished A and runs.
        let rows = [
            ("TASK-a1", "Stream-A", "completed", "[]"),
            ("TASK-a2", "Stream-A", "cancelled", "[]"),
            ("TASK-b1", "Stream-B", "completed", "[]"),
            ("TASK-b2", "Stream-B", "in_progress", "[]"),
            ("TASK-c1", "Stream-C", "pending", "[\"Stream-B\"]"),
            ("TASK-d1", "Stream-D", "in_progress", "[\"Stream-A\"]"),
        ];
        for (id, stream, status, deps) in rows {
            let meta = format!(
                "{{\"streamId\": \"{stream}\", \"streamName\": \"{stream} work\", \"dependencies\": {deps}}}"
            );
            tasks
                .execute(
                    "INSERT INTO tasks (id, prd_id, title, status, metadata, created_at, updated_at) \
                     VALUES (?1, 'PRD-demo', ?2, ?3, ?4, '2026-01-01', '2026-01-01')",
                    params![id, format!("{stream}: demo task {id}"), status, meta],
                )
                .map_err(fail)?;
        }
        Ok(Demo {
            project,
            dir,
            tasks_db,
            memory_db,
            color,
            procfs: Procfs::new().map_err(|e| Error::io("reading", Path::new("/proc"), e))?,
            monitor: None,
        })
    }

    /// Starts a worker through the wrapper, as the orchestrator would, and
    /// waits for its PID file (or for the wrapper to exit, for `command`s
    /// that end at once).
    fn start_worker(&self, stream: &str, command: &str) -> Result<SpawnOutcome> {
        let pid_file = pidfile::path_for(&self.dir.join("pids"), stream);
        let work_dir = spawn::work_dir_for(&self.project, stream);
        let call = WrapperCall {
            wrapper: &self.dir.join("worker-wrapper.sh"),
            worker: stream,
            pid_file: &pid_file,
            log_dir: &self.dir.join("logs"),
            work_dir: &work_dir,
            initiative: INITIATIVE,
            prompt: "demo worker",
            worker_command: Some(command),
        };
        let child = call
            .spawn()
            .map_err(|e| fail(format!("starting {stream}: {e}")))?;
        Ok(spawn::wait_for_pidfile(
            &self.procfs,
            &pid_file,
            child,
            STEP_LIMIT,
        ))
    }

    fn live_pid(&self, stream: &str) -> Option<i32> {
        let path = pidfile::path_for(&self.dir.join("pids"), stream);
        match pidfile::read(&path, self.procfs.pid_max()) {
            PidFileReading::Valid { pid, .. } => match self.procfs.observe(pid) {
                Ok(ProcessReading::Alive(info)) if !info.has_exited() => Some(pid),
                _ => None,
            },
            _ => None,
        }
    }

    fn wait_until(&self, what: &str, mut cond: impl FnMut() -> bool) -> Result<()> {
        let deadline = Instant::now() + STEP_LIMIT;
        while !cond() {
            if Instant::now() >= deadline {
                return Err(fail(format!(
                    "gave up after {STEP_LIMIT:?} waiting for {what}"
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    fn monitor_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("logs/monitor.log")).unwrap_or_default()
    }

    fn show(&self, args: &[&str]) -> Result<()> {
        let status = self
            .pidwatch(args)?
            .status()
            .map_err(|e| fail(format!("running pidwatch {}: {e}", args.join(" "))))?;
        // status exits 1 when some worker is dead; that is a finding, not an error.
        if status.code().is_none_or(|c| c > 1) {
            return Err(fail(format!(
                "pidwatch {} failed: {status}",
                args.join(" ")
            )));
        }
        Ok(())
    }

    fn script(&mut self) -> Result<()> {
        self.say(&format!("Demo orchestration in {}", self.project.display()));
        self.say("Starting workers Stream-B and Stream-D through the wrapper; Stream-C starts, finds Stream-B unfinished and exits");
        for (stream, cmd) in [
            ("Stream-B", WORKER_LOOP),
            ("Stream-D", WORKER_LOOP),
            ("Stream-C", "echo 'Stream-B is not done yet; exiting'"),
        ] {
            match self.start_worker(stream, cmd)? {
                SpawnOutcome::Running(_) | SpawnOutcome::WrapperExited(_) => {}
                SpawnOutcome::TimedOut => return Err(fail(format!("{stream} did not start"))),
            }
        }
        self.wait_until("Stream-C's wrapper to finish", || {
            std::fs::read_to_string(
                self.dir
                    .join("logs")
                    .join(format!("Stream-C_{}.log", &INITIATIVE[..8])),
            )
            .is_ok_and(|t| t.contains("Exit code:"))
        })?;

        self.say("Starting the monitor: pidwatch run --auto-restart --interval 2");
        let monitor = self
            .pidwatch(&[
                "run",
                "--auto-restart",
                "--interval",
                "2",
                "--restart-delay",
                "1",
                "--stop-timeout",
                "2",
                "--worker-command",
                WORKER_LOOP,
            ])?
            .spawn()
            .map_err(|e| fail(format!("starting the monitor: {e}")))?;
        self.monitor = Some(monitor);
        self.wait_until("the monitor's first pass", || {
            self.monitor_log().contains("All workers healthy")
        })?;
        self.show(&["status"])?;

        let victim = self
            .live_pid("Stream-B")
            .ok_or_else(|| fail("Stream-B is not running"))?;
        self.say(&format!(
            "kill -9 {victim}  (Stream-B's wrapper; its worker survives in its own group)"
        ));
        kill(Pid::from_raw(victim), Signal::SIGKILL).map_err(|e| fail(format!("kill: {e}")))?;
        let _ = waitpid(Pid::from_raw(victim), None);
        self.wait_until("Stream-B to come back", || {
            self.live_pid("Stream-B").is_some_and(|p| p != victim)
        })?;

        self.say(
            "Completing Stream-B's tasks in the task DB; Stream-C no longer waits and is started",
        );
        let conn = Connection::open(&self.tasks_db).map_err(fail)?;
        conn.execute(
            "UPDATE tasks SET status = 'completed' WHERE id IN ('TASK-b1', 'TASK-b2')",
            [],
        )
        .map_err(fail)?;
        if let Some(m) = &self.monitor {
            // USR1: check now, instead of at the next sweep.
            let _ = kill(Pid::from_raw(m.id() as i32), Signal::SIGUSR1);
        }
        self.wait_until("Stream-C to be started", || {
            self.live_pid("Stream-C").is_some()
        })?;

        self.say("Final status");
        self.show(&["status"])?;
        self.say("History (pidwatch history)");
        self.show(&["history"])?;
        Ok(())
    }

    /// Stops the monitor (SIGTERM: it exits 0, workers left running), then
    /// every worker session the demo's PID files name, then reaps.
    fn stop_everything(&mut self) -> Result<()> {
        let mut clean = true;
        if let Some(mut monitor) = self.monitor.take() {
            let pid = Pid::from_raw(monitor.id() as i32);
            let _ = kill(pid, Signal::SIGTERM);
            let deadline = Instant::now() + STEP_LIMIT;
            loop {
                match monitor.try_wait() {
                    Ok(Some(status)) => {
                        clean &= status.success();
                        break;
                    }
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(20))
                    }
                    _ => {
                        let _ = monitor.kill();
                        let _ = monitor.wait();
                        clean = false;
                        break;
                    }
                }
            }
        }
        // The demo is a subreaper: what the stopped wrappers and workers
        // leave comes back to it as zombies, which must be reaped while the
        // wrappers stop (a wrapper waits until its worker's group is empty,
        // and an unreaped zombie still counts there).
        let stopping = std::sync::atomic::AtomicBool::new(true);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                while stopping.load(std::sync::atomic::Ordering::Relaxed) {
                    while matches!(
                        waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)),
                        Ok(status) if status != nix::sys::wait::WaitStatus::StillAlive
                    ) {}
                    std::thread::sleep(Duration::from_millis(5));
                }
            });
            for stream in ["Stream-A", "Stream-B", "Stream-C", "Stream-D"] {
                if let Some(pid) = self.live_pid(stream) {
                    // These sessions are the demo's own wrappers.
                    let _ = spawn::stop_own_session(&self.procfs, pid, Duration::from_secs(2));
                }
            }
            stopping.store(false, std::sync::atomic::Ordering::Relaxed);
        });
        // The demo is a subreaper: orphaned wrappers came back to it.
        let deadline = Instant::now() + STEP_LIMIT;
        while Instant::now() < deadline {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(nix::sys::wait::WaitStatus::StillAlive) => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        // The cgroups the monitor made for the incarnations it started go
        // too, once empty: the demo leaves nothing behind.
        if let Ok(Some(db)) = StateDb::open_existing(&self.dir.join("pidwatch.db")) {
            for path in db.incarnation_cgroups().unwrap_or_default() {
                let cgroup = crate::observe::cgroup::Cgroup::at(PathBuf::from(&path));
                let _ = cgroup.wait_empty(Instant::now() + Duration::from_secs(2));
                let _ = cgroup.remove();
            }
        }
        if clean {
            Ok(())
        } else {
            Err(fail("the monitor did not stop cleanly on SIGTERM"))
        }
    }
}

/// Runs the demo; exit code 0 when every step happened in time.
///
/// Errors (exit 3): a step did not happen within its time limit, or the
/// temp dir could not be made.
pub fn run(args: &DemoArgs, color: bool) -> Result<i32> {
    let started = Instant::now();
    let tmp = tempfile::Builder::new()
        .prefix("pidwatch-demo-")
        .tempdir()
        .map_err(|e| fail(format!("making a temp dir: {e}")))?;
    // Orphaned wrappers (of the monitor, once it exits) are reparented to
    // the demo, which reaps them: the demo leaves no zombie behind.
    let _ = nix::sys::prctl::set_child_subreaper(true);
    let mut demo = Demo::build(tmp.path(), color)?;
    let outcome = demo.script();
    let stopped = demo.stop_everything();
    if args.keep {
        let kept = tmp.keep();
        demo.say(&format!("Demo folder kept: {}", kept.display()));
    } else {
        drop(tmp);
    }
    outcome?;
    stopped?;
    demo.say(&format!(
        "Demo finished in {:.1} s; everything it started is stopped",
        started.elapsed().as_secs_f64()
    ));
    Ok(EXIT_OK)
}

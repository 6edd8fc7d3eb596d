//! The test fixture: a real orchestration folder, real Task Copilot and
//! Memory Copilot databases in a temp dir, real processes that are killed
//! when their guard drops (pass or fail), and waits with deadlines.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use rusqlite::{Connection, params};
use serde_json::Value;
use tempfile::TempDir;

/// The initiative most tests watch.
pub const INITIATIVE: &str = "3f2a9c1e-5b7d-4e8f-9a0b-1c2d3e4f5a6b";
/// Another initiative, whose tasks must never count.
pub const OTHER_INITIATIVE: &str = "99999999-0000-4000-8000-000000000000";

pub use pidwatch::commands::demo::{MEMORY_SCHEMA, TASKS_SCHEMA};

/// Waits for `cond` to hold, polling, up to `limit`; panics with `what` when
/// it does not.
pub fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    let mut pause = Duration::from_millis(1);
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// Every PID listed in `/proc`.
pub fn all_pids() -> Vec<i32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

/// The fields of `/proc/<pid>/stat` after the command name: index 0 is the
/// state (field 3), 1 the parent PID, 2 the process group, 3 the session.
pub fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &text[text.rfind(')')? + 1..];
    Some(after.split_whitespace().map(str::to_string).collect())
}

/// The state letter of `/proc/<pid>/stat`, `None` when there is no process.
pub fn proc_state(pid: i32) -> Option<char> {
    stat_fields(pid)?.first()?.chars().next()
}

/// Whether `pid` names a live, non-zombie process.
pub fn is_alive(pid: i32) -> bool {
    matches!(proc_state(pid), Some(s) if s != 'Z' && s != 'X')
}

/// A process the test started; killed and reaped when dropped.
pub struct Proc {
    child: Option<Child>,
    pub pid: i32,
}

impl Proc {
    /// `sleep 600`.
    pub fn sleep() -> Proc {
        Proc::spawn(Command::new("sleep").arg("600"))
    }

    /// Any command, stdio on /dev/null.
    pub fn spawn(cmd: &mut Command) -> Proc {
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        let pid = child.id() as i32;
        Proc {
            child: Some(child),
            pid,
        }
    }

    /// A real zombie: a child that exited and is not reaped until the guard drops.
    pub fn zombie() -> Proc {
        let proc = Proc::spawn(&mut Command::new("true"));
        let pid = proc.pid;
        wait_for("a zombie", Duration::from_secs(10), || {
            proc_state(pid) == Some('Z')
        });
        proc
    }

    /// Waits for the process to exit and reaps it: its PID names nothing
    /// any more (until reused).
    pub fn reap(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.wait();
        }
    }

    /// The PID of a process that ran and was reaped: nobody's PID now.
    pub fn reaped_pid() -> i32 {
        let mut child = Command::new("true").spawn().expect("spawn true");
        let pid = child.id() as i32;
        child.wait().expect("reap");
        pid
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// SIGKILLs every process whose session or process group is `id`.
pub fn kill_tree(id: i32) {
    if id <= 1 {
        return;
    }
    let id = id.to_string();
    for pid in all_pids() {
        if stat_fields(pid).is_some_and(|f| f.get(2) == Some(&id) || f.get(3) == Some(&id)) {
            sigkill(pid);
        }
    }
}

/// SIGKILLs `pid` (ignoring a process already gone).
pub fn kill9(pid: i32) {
    sigkill(pid);
}

fn sigkill(pid: i32) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL);
}

/// A project with an orchestrator dir, a HOME holding the task and memory
/// DBs at their default places, and helpers to fill them.
pub struct Fixture {
    pub tmp: TempDir,
    /// The project root: `<tmp>/proj`.
    pub project: PathBuf,
    /// `<project>/.claude/orchestrator`.
    pub dir: PathBuf,
    /// `<tmp>/home`.
    pub home: PathBuf,
    pub tasks_db: PathBuf,
    pub memory_db: PathBuf,
    /// Processes started for this test.
    pub procs: Vec<Proc>,
    /// Wrappers started by the test itself (its children, reaped on drop).
    pub wrappers: Vec<i32>,
    /// Monitors started so far, to name their output files.
    monitors: std::cell::Cell<u32>,
    next_task: u32,
}

impl Drop for Fixture {
    /// Kills every process working inside the fixture's folder (wrappers
    /// and workers started by the test or by pidwatch), then reaps the
    /// test's own children, and removes the cgroups pidwatch made for the
    /// fixture's incarnations.
    fn drop(&mut self) {
        kill_processes_under(self.tmp.path());
        for pid in self.wrappers.drain(..) {
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
        }
        remove_cgroups_of(&self.dir.join("pidwatch.db"));
    }
}

/// Empties and removes the cgroups that the state DB `db` records for its
/// incarnations (`--containment cgroup` leaves them behind): `cgroup.kill`,
/// a short wait for the cgroup to empty, `rmdir`. Only paths under
/// `/sys/fs/cgroup` are touched; errors are ignored.
pub fn remove_cgroups_of(db: &Path) {
    if !db.exists() {
        return;
    }
    let Ok(conn) = Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
    else {
        return;
    };
    let cgroups: Vec<String> = conn
        .prepare("SELECT cgroup FROM incarnations WHERE cgroup IS NOT NULL")
        .and_then(|mut q| {
            q.query_map([], |r| r.get(0))?
                .collect::<Result<Vec<String>, _>>()
        })
        .unwrap_or_default();
    for cgroup in cgroups {
        let dir = Path::new(&cgroup);
        if !dir.starts_with("/sys/fs/cgroup") || !dir.is_dir() {
            continue;
        }
        let _ = fs::write(dir.join("cgroup.kill"), "1");
        let deadline = Instant::now() + Duration::from_secs(2);
        while fs::read_to_string(dir.join("cgroup.procs")).is_ok_and(|t| !t.trim().is_empty())
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = fs::remove_dir(dir);
    }
}

/// The live processes whose current directory is under `root`.
pub fn processes_under(root: &Path) -> Vec<i32> {
    all_pids()
        .into_iter()
        .filter(|pid| is_alive(*pid))
        .filter(|pid| {
            fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd.starts_with(root))
        })
        .collect()
}

/// SIGKILLs every process whose current directory is under `root`, and its
/// session and process group (three rounds, for what forks meanwhile).
pub fn kill_processes_under(root: &Path) {
    let me = std::process::id() as i32;
    for _ in 0..3 {
        for pid in processes_under(root).into_iter().filter(|p| *p != me) {
            sigkill(pid);
            kill_tree(pid);
        }
    }
}

impl Fixture {
    /// An empty orchestration for workspace `proj`, with the active
    /// initiative [`INITIATIVE`] and a PRD of it, and one of
    /// [`OTHER_INITIATIVE`], and the wrapper installed.
    pub fn new() -> Fixture {
        let tmp = tempfile::Builder::new()
            .prefix("pidwatch-test")
            .tempdir()
            .unwrap();
        let project = tmp.path().join("proj");
        let dir = project.join(".claude/orchestrator");
        let home = tmp.path().join("home");
        fs::create_dir_all(dir.join("pids")).unwrap();
        fs::create_dir_all(dir.join("logs")).unwrap();
        let tasks_db = home.join(".claude/tasks/proj/tasks.db");
        let memory_db = home.join(".claude/memory/proj/memory.db");
        fs::create_dir_all(tasks_db.parent().unwrap()).unwrap();
        fs::create_dir_all(memory_db.parent().unwrap()).unwrap();

        let t = Connection::open(&tasks_db).unwrap();
        t.pragma_update(None, "journal_mode", "WAL").unwrap();
        t.execute_batch(TASKS_SCHEMA).unwrap();
        for (prd, init) in [("PRD-1", INITIATIVE), ("PRD-OTHER", OTHER_INITIATIVE)] {
            t.execute(
                "INSERT INTO prds (id, initiative_id, title, content, created_at, updated_at) \
                 VALUES (?1, ?2, 'PRD', '', '2026-01-01', '2026-01-01')",
                params![prd, init],
            )
            .unwrap();
        }
        let m = Connection::open(&memory_db).unwrap();
        m.pragma_update(None, "journal_mode", "WAL").unwrap();
        m.execute_batch(MEMORY_SCHEMA).unwrap();
        for (id, project_id, name, status, created) in [
            (
                INITIATIVE,
                "p1",
                "Ship the thing",
                "IN PROGRESS",
                "2026-01-02",
            ),
            (
                OTHER_INITIATIVE,
                "p2",
                "Old thing",
                "COMPLETE",
                "2026-01-03",
            ),
        ] {
            m.execute(
                "INSERT INTO initiatives (id, project_id, name, status, created_at, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
                params![id, project_id, name, status, created],
            )
            .unwrap();
        }
        let fx = Fixture {
            tmp,
            project,
            dir,
            home,
            tasks_db,
            memory_db,
            procs: Vec::new(),
            wrappers: Vec::new(),
            monitors: std::cell::Cell::new(0),
            next_task: 0,
        };
        // Installed as the README says: an acting pidwatch refuses to start
        // without one.
        fx.install_wrapper();
        fx
    }

    /// Adds a task to `prd` with `status` and the given metadata JSON text.
    pub fn task_raw(&mut self, prd: &str, status: &str, metadata: &str, archived: bool) -> String {
        self.next_task += 1;
        let id = format!("TASK-{:04}", self.next_task);
        let conn = Connection::open(&self.tasks_db).unwrap();
        conn.execute(
            "INSERT INTO tasks (id, prd_id, title, status, metadata, archived, created_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, '2026-01-01', '2026-01-01')",
            params![id, prd, format!("Task {id}"), status, metadata, archived as i32],
        )
        .unwrap();
        id
    }

    /// Adds a task of stream `stream` in the active initiative.
    pub fn task(&mut self, stream: &str, status: &str, deps: &[&str]) -> String {
        let meta = serde_json::json!({"streamId": stream, "streamName": format!("{stream} work"),
            "dependencies": deps});
        self.task_raw("PRD-1", status, &meta.to_string(), false)
    }

    /// Sets the status of every task of `stream`.
    pub fn complete_stream(&self, stream: &str) {
        let conn = Connection::open(&self.tasks_db).unwrap();
        let ids: Vec<(String, String)> = conn
            .prepare("SELECT id, metadata FROM tasks")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        for (id, meta) in ids {
            let v: Value = serde_json::from_str(&meta).unwrap_or(Value::Null);
            if v.get("streamId").and_then(Value::as_str) == Some(stream) {
                conn.execute("UPDATE tasks SET status = 'completed' WHERE id = ?1", [id])
                    .unwrap();
            }
        }
    }

    pub fn pidfile_path(&self, worker: &str) -> PathBuf {
        self.dir.join("pids").join(format!("{worker}.pid"))
    }

    /// Writes `pids/<worker>.pid` with `content`.
    pub fn pidfile(&self, worker: &str, content: &str) -> PathBuf {
        let path = self.pidfile_path(worker);
        fs::write(&path, content).unwrap();
        path
    }

    /// Sets the mtime of a file.
    pub fn set_mtime(&self, path: &Path, at: SystemTime) {
        fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(at)
            .unwrap();
    }

    /// The worker log of this initiative.
    pub fn worker_log_path(&self, worker: &str) -> PathBuf {
        self.dir
            .join("logs")
            .join(format!("{worker}_{}.log", &INITIATIVE[..8]))
    }

    /// Writes a worker log that shows a run (header and some output).
    pub fn ran_before(&self, worker: &str) {
        fs::write(
            self.worker_log_path(worker),
            format!(
                "========================================\nStarted: 2026-01-13T10:00:00+00:00\n\
                 Stream: {worker}\nInitiative: {INITIATIVE}\nPID: 12345\nWorking dir: /x\n\
                 Log file: x\n========================================\nworking...\n"
            ),
        )
        .unwrap();
    }

    /// A live process whose command line is `worker`'s wrapper (a `bash`
    /// running `sleep`, with the wrapper's path, the worker id, the PID
    /// file, the log and work dirs and the initiative as its arguments), with a PID file naming it and a log showing
    /// the run. Returns the PID.
    pub fn live_worker(&mut self, worker: &str) -> i32 {
        let proc = Proc::spawn(
            Command::new("bash")
                .arg("-c")
                .arg("sleep 600; :")
                .arg(self.dir.join("worker-wrapper.sh"))
                .arg(worker)
                .arg(self.pidfile_path(worker))
                .arg(self.dir.join("logs"))
                .arg(self.work_dir(worker))
                .arg(INITIATIVE)
                .current_dir(self.tmp.path()),
        );
        let pid = proc.pid;
        self.procs.push(proc);
        self.pidfile(worker, &format!("{pid}\n"));
        self.ran_before(worker);
        pid
    }

    /// `pidwatch` run from the project root with HOME set to the fixture's,
    /// and no PIDWATCH_* setting inherited from the caller.
    pub fn cmd(&self) -> assert_cmd::Command {
        let mut cmd = assert_cmd::Command::new(env!("CARGO_BIN_EXE_pidwatch"));
        cmd.current_dir(&self.project)
            .env("HOME", &self.home)
            .env_remove("NO_COLOR")
            .env_remove("JOURNAL_STREAM")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WORKSPACE_ID")
            .timeout(Duration::from_secs(60));
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("PIDWATCH_") {
                cmd.env_remove(key);
            }
        }
        cmd
    }

    /// Runs `pidwatch check --json` and returns (exit code, JSON, stderr).
    pub fn check_json(&self, extra: &[&str]) -> (i32, Value, String) {
        let out = self
            .cmd()
            .arg("check")
            .arg("--json")
            .args(extra)
            .output()
            .unwrap();
        let code = out.status.code().unwrap_or(-1);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}); code {code}; stdout {:?}; stderr {stderr}",
                String::from_utf8_lossy(&out.stdout)
            )
        });
        (code, json, stderr)
    }

    /// Installs the wrapper (from the binary) as `DIR/worker-wrapper.sh`.
    pub fn install_wrapper(&self) -> PathBuf {
        let path = self.dir.join("worker-wrapper.sh");
        fs::write(&path, pidwatch::WRAPPER_SCRIPT).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    /// The monitor log's text.
    pub fn monitor_log(&self) -> String {
        fs::read_to_string(self.dir.join("logs/monitor.log")).unwrap_or_default()
    }
}

/// The worker object of `id` in a check/status JSON document.
pub fn worker<'a>(json: &'a Value, id: &str) -> &'a Value {
    json["workers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["id"] == id)
        .unwrap_or_else(|| panic!("no worker {id} in {json}"))
}

/// The command workers run in tests: a `sleep` that leads its own group.
pub const WORKER: &str = "exec sleep 600";

impl Fixture {
    /// Starts `worker` through the installed wrapper as the orchestrator
    /// would (new session), running `command`, and waits for its PID file.
    /// Returns the wrapper's PID.
    pub fn start_worker(&mut self, worker: &str, command: &str) -> i32 {
        let wrapper = self.install_wrapper();
        let pid_file = self.pidfile_path(worker);
        let work_dir = self.work_dir(worker);
        fs::create_dir_all(&work_dir).unwrap();
        let call = pidwatch::act::spawn::WrapperCall {
            wrapper: &wrapper,
            worker,
            pid_file: &pid_file,
            log_dir: &self.dir.join("logs"),
            work_dir: &work_dir,
            initiative: INITIATIVE,
            prompt: "test prompt",
            worker_command: Some(command),
        };
        let pid = call.spawn().unwrap();
        self.wrappers.push(pid);
        wait_for("the wrapper's PID file", Duration::from_secs(10), || {
            self.pid_in_file(worker) == Some(pid)
        });
        pid
    }

    /// The work dir of a stream (created by tests for non-git projects).
    pub fn work_dir(&self, worker: &str) -> PathBuf {
        if worker == "main" {
            self.project.clone()
        } else {
            self.project.join(".claude/worktrees").join(worker)
        }
    }

    /// The PID in a worker's PID file, if it holds one.
    pub fn pid_in_file(&self, worker: &str) -> Option<i32> {
        fs::read_to_string(self.pidfile_path(worker))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Waits until the worker's PID file names a live process other than
    /// `old`, and returns it.
    pub fn wait_restarted(&self, worker: &str, old: i32, limit: Duration) -> i32 {
        let deadline = Instant::now() + limit;
        loop {
            match self.pid_in_file(worker) {
                Some(p) if p != old && is_alive(p) => return p,
                _ if Instant::now() >= deadline => panic!(
                    "timed out after {limit:?} waiting for {worker} to be restarted; monitor.log:\n{}",
                    self.monitor_log()
                ),
                _ => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    }

    /// Reaps a wrapper the test started and killed.
    pub fn reap(&mut self, pid: i32) {
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
        self.wrappers.retain(|p| *p != pid);
    }

    /// The journal as `(worker, kind)` pairs, through `pidwatch history --json`.
    pub fn history(&self) -> Vec<(String, String)> {
        let out = self.cmd().args(["history", "--json"]).output().unwrap();
        let events: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
        events
            .iter()
            .map(|e| {
                (
                    e["worker"].as_str().unwrap_or("-").to_string(),
                    e["kind"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    /// Waits for a monitor's first pass over healthy workers.
    pub fn wait_first_pass(&self) {
        wait_for("the first pass", Duration::from_secs(15), || {
            self.monitor_log().contains("All workers healthy")
        });
    }

    /// Starts `pidwatch run` with `args`; killed when the guard drops.
    pub fn monitor(&self, args: &[&str]) -> Monitor {
        self.monitor_with(args, &[])
    }

    /// Like [`Fixture::monitor`], with extra environment variables.
    pub fn monitor_with(&self, args: &[&str], env: &[(&str, &str)]) -> Monitor {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_pidwatch"));
        cmd.current_dir(&self.project)
            .env("HOME", &self.home)
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("JOURNAL_STREAM")
            .envs(env.iter().copied())
            .arg("run")
            .args(args);
        self.monitors.set(self.monitors.get() + 1);
        Monitor::spawn(
            cmd,
            &self
                .tmp
                .path()
                .join(format!("monitor-{}.out", self.monitors.get())),
        )
    }
}

/// A running `pidwatch run`; SIGKILLed and reaped when dropped. Its stdout
/// and stderr go to a file (a pipe nobody drains would fill and block it).
pub struct Monitor {
    pub child: Option<Child>,
    pub pid: i32,
    output: PathBuf,
}

impl Monitor {
    /// Spawns `cmd` with stdout and stderr appended to `output`.
    pub fn spawn(cmd: Command, output: &Path) -> Monitor {
        Monitor::spawn_with_stdin(cmd, output, Stdio::null())
    }

    /// [`Monitor::spawn`] with this stdin (a terminal, say).
    pub fn spawn_with_stdin(mut cmd: Command, output: &Path, stdin: Stdio) -> Monitor {
        let file = fs::File::create(output).unwrap();
        cmd.stdin(stdin)
            .stdout(file.try_clone().unwrap())
            .stderr(file);
        let child = cmd.spawn().expect("spawn pidwatch run");
        let pid = child.id() as i32;
        Monitor {
            child: Some(child),
            pid,
            output: output.to_path_buf(),
        }
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid), sig).unwrap();
    }

    /// What the monitor printed so far.
    pub fn output(&self) -> String {
        fs::read_to_string(&self.output).unwrap_or_default()
    }

    /// Waits for the monitor to exit; returns its exit code and what it printed.
    pub fn wait_exit(&mut self, limit: Duration) -> (Option<i32>, String) {
        let mut child = self.child.take().unwrap();
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return (status.code(), self.output());
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "pidwatch run did not exit within {limit:?}: {}",
                    self.output()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The `NAME=value` entries of `/proc/<pid>/environ` (empty when it cannot
/// be read: the process is gone).
pub fn environ(pid: i32) -> Vec<String> {
    fs::read(format!("/proc/{pid}/environ"))
        .map(|bytes| {
            bytes
                .split(|b| *b == 0)
                .filter(|v| !v.is_empty())
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The value of `name` in `/proc/<pid>/environ`.
pub fn environ_var(pid: i32, name: &str) -> Option<String> {
    let prefix = format!("{name}=");
    environ(pid)
        .into_iter()
        .find_map(|v| v.strip_prefix(&prefix).map(str::to_string))
}

/// The live worker processes of stream `worker` in the fixture, with the
/// `PIDWATCH_INVOCATION_ID` each carries (empty when none), in PID order:
/// the live, non-zombie processes whose environment has
/// `PIDWATCH_STREAM_ID=<worker>` and `PIDWATCH_LOG_FILE=<the fixture's
/// worker log of worker>`. The wrapper exports them for its worker after
/// it started, so the wrapper itself is not counted (the helpers it runs
/// after its worker ended, such as `mv`, briefly would be). One scan of
/// `/proc`.
pub fn worker_processes(fx: &Fixture, worker: &str) -> Vec<(i32, String)> {
    let stream = format!("PIDWATCH_STREAM_ID={worker}");
    let log = format!("PIDWATCH_LOG_FILE={}", fx.worker_log_path(worker).display());
    let mut found: Vec<(i32, String)> = all_pids()
        .into_iter()
        .filter(|pid| is_alive(*pid))
        .filter_map(|pid| {
            let env = environ(pid);
            if !(env.contains(&stream) && env.contains(&log)) {
                return None;
            }
            let id = env
                .iter()
                .find_map(|v| v.strip_prefix("PIDWATCH_INVOCATION_ID="))
                .unwrap_or_default()
                .to_string();
            // Gone while being read: not live.
            is_alive(pid).then_some((pid, id))
        })
        .collect();
    found.sort();
    found
}

/// The PIDs of [`worker_processes`]: the live workers of stream `worker`.
/// "Never a second worker" is `live_workers_of(..).len() <= 1`.
pub fn live_workers_of(fx: &Fixture, worker: &str) -> Vec<i32> {
    worker_processes(fx, worker)
        .into_iter()
        .map(|(pid, _)| pid)
        .collect()
}

/// The distinct `PIDWATCH_INVOCATION_ID` values among the live workers of
/// stream `worker` (an empty string for a worker without one).
pub fn incarnations_alive(fx: &Fixture, worker: &str) -> BTreeSet<String> {
    worker_processes(fx, worker)
        .into_iter()
        .map(|(_, id)| id)
        .collect()
}

//! Programs from a config file as a source of workers (ARCHITECTURE.md,
//! "Programs"): one worker per instance of each `[worker.<name>]` table.
//!
//! A program runs in the foreground, started by pidwatch with its output
//! in its log, and pidwatch writes its PID file
//! (`<state_dir>/pids/<id>.pid`) and, when it reaps it, its exit file; or
//! (adopt mode) it daemonizes itself and writes its own PID file, whose
//! process is the worker when its command line matches `match`. Its work
//! is never done: its restart mode says whether an exit ends it.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CString;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::Paths;
use crate::core::{Candidate, Incarnation, Policy, ProcessReading, ProgramState, TaskCounts};
use crate::error::Result;
use crate::observe::pidfile;
use crate::observe::procfs::Procfs;
use crate::observe::taskdb::Initiative;
use crate::source::config::{ConfigFile, ProgramSpec};
use crate::source::{
    ProgramView, RunMode, SourceReading, SpawnRequest, Started, WorkerDef, WorkerSource,
};

/// What the monitor learned of a worker outside the pass: its probes'
/// findings and a start asked for. Lives as long as the monitor.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Runtime {
    /// The incarnation the readiness probe passed for.
    pub ready_for: Option<String>,
    /// The incarnation that was stopped for failing its health probe.
    pub unhealthy: Option<String>,
    /// A start was asked for and has not happened yet
    /// ([`ProgramState::start_requested`]).
    pub start_requested: bool,
}

/// The workers of one config file.
pub struct Programs {
    file: Arc<ConfigFile>,
    scope: Initiative,
    pid_dir: PathBuf,
    log_dir: PathBuf,
    /// Each worker's place in `file.workers`, by id.
    index: BTreeMap<String, usize>,
    /// `match` of each worker, compiled once per distinct pattern (the
    /// instances of a program share theirs: a compiled regex takes some
    /// kilobytes, a thousand instances megabytes).
    matches: BTreeMap<String, Arc<regex::Regex>>,
    /// Readiness, health and starts asked for, by worker id.
    pub runtime: RefCell<BTreeMap<String, Runtime>>,
}

impl Programs {
    /// The source of `file`'s workers, with its state under the state dir
    /// that `paths` resolved (`paths.pid_dir`, `paths.log_dir`).
    pub fn new(file: Arc<ConfigFile>, paths: &Paths) -> Programs {
        let mut compiled: BTreeMap<String, Option<Arc<regex::Regex>>> = BTreeMap::new();
        let matches = file
            .workers
            .iter()
            .filter_map(|w| {
                let pattern = match &w.adopt {
                    Some(adopt) => adopt.matches.clone(),
                    None => regex::escape(&w.command.program_name()),
                };
                let regex = compiled
                    .entry(pattern)
                    .or_insert_with_key(|p| regex::Regex::new(p).ok().map(Arc::new))
                    .clone()?;
                Some((w.id.clone(), regex))
            })
            .collect();
        let index = file
            .workers
            .iter()
            .enumerate()
            .map(|(i, w)| (w.id.clone(), i))
            .collect();
        Programs {
            index,
            scope: scope_of(&file),
            pid_dir: paths.pid_dir.clone(),
            log_dir: paths.log_dir.clone(),
            matches,
            runtime: RefCell::new(BTreeMap::new()),
            file,
        }
    }

    /// The config file.
    pub fn file(&self) -> &ConfigFile {
        &self.file
    }

    /// The spec of worker `id`.
    pub fn spec(&self, id: &str) -> Option<&ProgramSpec> {
        self.index.get(id).map(|i| &self.file.workers[*i])
    }

    /// Where the worker's stdout and stderr go.
    pub fn log_of(&self, spec: &ProgramSpec) -> PathBuf {
        spec.log
            .clone()
            .unwrap_or_else(|| self.log_dir.join(format!("{}.log", spec.id)))
    }

    /// The PID file pidwatch writes for a foreground program.
    fn own_pidfile(&self, id: &str) -> PathBuf {
        pidfile::path_for(&self.pid_dir, id)
    }
}

/// The state DB key and name of a config file's workers: `config:<name>`
/// and the file's path.
pub fn scope_of(file: &ConfigFile) -> Initiative {
    Initiative {
        id: format!("config:{}", file.name),
        name: file.path.display().to_string(),
    }
}

impl WorkerSource for Programs {
    fn scope(&self) -> &Initiative {
        &self.scope
    }

    fn programs(&self) -> Option<&Programs> {
        Some(self)
    }

    fn read(&self, only: Option<&BTreeSet<String>>) -> Result<SourceReading> {
        // A scoped read (an event pass) looks up its workers and what they
        // depend on by id: its cost does not grow with the other workers.
        let specs: Vec<&ProgramSpec> = match only {
            Some(ids) => super::closure_by(ids, |id| self.spec(id).map(|s| &s.depends_on))
                .iter()
                .filter_map(|id| self.spec(id))
                .collect(),
            None => self.file.workers.iter().collect(),
        };
        let workers = specs
            .into_iter()
            .map(|w| {
                (
                    w.id.clone(),
                    WorkerDef {
                        id: w.id.clone(),
                        name: None,
                        dependencies: w.depends_on.clone(),
                        tasks: TaskCounts::default(),
                    },
                )
            })
            .collect();
        Ok(SourceReading {
            workers,
            warnings: Vec::new(),
        })
    }

    fn pid_dir(&self) -> Option<PathBuf> {
        Some(self.pid_dir.clone())
    }

    fn pidfile(&self, worker: &str) -> PathBuf {
        match self.spec(worker).and_then(|s| s.adopt.as_ref()) {
            Some(adopt) => adopt.pidfile.clone(),
            None => self.own_pidfile(worker),
        }
    }

    fn worker_of_pidfile(&self, name: &str) -> Option<String> {
        let id = name.strip_suffix(".pid")?;
        self.spec(id)
            .filter(|s| s.adopt.is_none())
            .map(|s| s.id.clone())
    }

    fn exit_file(&self, worker: &str) -> PathBuf {
        crate::observe::exitfile::path_for(&self.own_pidfile(worker))
    }

    /// Its PID file was written in this boot.
    fn ran_before(&self, worker: &str, boot_time: chrono::DateTime<chrono::Utc>) -> bool {
        std::fs::symlink_metadata(self.pidfile(worker))
            .is_ok_and(|m| pidfile::mtime_of(&m) >= boot_time)
    }

    /// The worker when its command line (arguments joined by spaces)
    /// matches its `match` (default: its program's name).
    fn identify(&self, procfs: &Procfs, worker: &str, pid: i32) -> Candidate {
        let (Ok(argv), Some(pattern)) = (procfs.cmdline(pid), self.matches.get(worker)) else {
            return Candidate::Foreign;
        };
        let line = argv
            .iter()
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        if !pattern.is_match(&line) {
            return Candidate::Foreign;
        }
        let invocation = procfs.markers(pid).ok().and_then(|m| m.invocation);
        Candidate::Wrapper { invocation }
    }

    fn marker_log(&self, _worker: &str) -> Option<PathBuf> {
        None
    }

    fn program(&self, worker: &str, incarnation: Option<&Incarnation>) -> Option<ProgramState> {
        let spec = self.spec(worker)?;
        let runtime = self.runtime.borrow();
        let probe = runtime.get(worker);
        let current = incarnation.map(|i| i.id.as_str());
        Some(ProgramState {
            restart: spec.restart,
            policy: Policy {
                auto_restart: true,
                max_restarts: spec.max_restarts,
                restart_delay: spec.restart_delay,
                max_restart_delay: spec.max_restart_delay,
                stable_after: spec.stable_after,
            },
            ready: spec.ready.as_ref().map(|_| {
                probe.is_some_and(|p| current.is_some() && p.ready_for.as_deref() == current)
            }),
            unhealthy: probe
                .is_some_and(|p| current.is_some() && p.unhealthy.as_deref() == current),
            start_requested: probe.is_some_and(|p| p.start_requested),
        })
    }

    /// Its instance, and the argv [`WorkerSource::spawn`] runs; never its
    /// environment.
    fn program_view(&self, worker: &str) -> Option<ProgramView> {
        let spec = self.spec(worker)?;
        let (command, mode) = match &spec.adopt {
            Some(adopt) => (adopt.start.argv(), RunMode::Adopt),
            None => (spec.command.argv(), RunMode::Foreground),
        };
        Some(ProgramView {
            instance: spec.instance.clone(),
            command,
            mode,
        })
    }

    fn stop_timeout(&self, worker: &str) -> Option<Duration> {
        self.spec(worker).map(|s| s.stop_timeout)
    }

    fn check_spawn(&self) -> std::result::Result<(), String> {
        Ok(())
    }

    /// Runs the program (or, in adopt mode, its start command) in its own
    /// session, in its working dir, with its environment and its output
    /// appended to its log.
    fn spawn(&self, request: &SpawnRequest<'_>) -> std::result::Result<i32, String> {
        let spec = self
            .spec(request.worker)
            .ok_or_else(|| format!("no worker {} in {}", request.worker, self.scope.name))?;
        let argv = match &spec.adopt {
            Some(adopt) => adopt.start.argv(),
            None => spec.command.argv(),
        };
        let log = self.log_of(spec);
        let output = crate::store::worker_log::open_for_worker(&log)
            .map_err(|e| format!("opening the log {}: {e}", log.display()))?;
        std::fs::create_dir_all(&self.pid_dir)
            .map_err(|e| format!("creating {}: {e}", self.pid_dir.display()))?;
        let env = environment(spec, request.incarnation);
        let path_var = env
            .iter()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
        let program = find_program(&argv[0], &path_var, &spec.cwd)
            .ok_or_else(|| format!("command not found: {}", crate::output::quote(&argv[0])))?;
        let exec = to_exec(&program, &argv, &env, &spec.cwd, output.as_raw_fd())
            .map_err(|e| format!("{e}"))?;
        let child = match request.cgroup {
            Some(cg) => {
                let dir = std::fs::File::open(cg.path())
                    .map_err(|e| format!("opening {}: {e}", cg.path().display()))?;
                match crate::act::child::spawn_into_cgroup(&exec, dir.as_raw_fd()) {
                    Err(e) if e.kind() == std::io::ErrorKind::Unsupported => {
                        let procs = cg.procs_writer().map_err(|e| e.to_string())?;
                        spawn_plain(&program, &argv, &env, spec, &output, Some(&procs))
                    }
                    other => other,
                }
            }
            None => spawn_plain(&program, &argv, &env, spec, &output, None),
        };
        child.map_err(|e| format!("cannot run {}: {e}", program.display()))
    }

    /// A foreground program is up once it is started: pidwatch writes its
    /// PID file. A start command must exit 0 within the timeout, and the
    /// program's own PID file must then name a live process that matches.
    fn confirm(&self, procfs: &Procfs, worker: &str, child: i32, timeout: Duration) -> Started {
        let Some(spec) = self.spec(worker) else {
            return Started::Exited(format!("no worker {worker} in {}", self.scope.name));
        };
        let Some(adopt) = &spec.adopt else {
            let path = self.own_pidfile(worker);
            // Not fsync'd: it names a process of this boot (see the function).
            return match crate::store::safe_fs::write_atomically_unsynced(
                &path,
                format!("{child}\n").as_bytes(),
                0o644,
            ) {
                Ok(()) => Started::Running(child),
                Err(e) => Started::Exited(format!("its PID file {}: {e}", path.display())),
            };
        };
        let deadline = Instant::now() + timeout;
        // The daemon descends from the start command: it started no
        // earlier. A PID file naming an older process (stale, its PID
        // reused by another program that matches) is not this start's.
        let Some(not_before) = procfs.stat(child).ok().flatten().map(|s| s.start_ticks) else {
            return Started::Exited("the start command vanished".into());
        };
        // The start command first: it daemonizes the program and exits.
        // It is not reaped here, so that its PID and session stay its own
        // until the caller has stopped what it left, should it fail.
        loop {
            if let Some(status) = crate::act::spawn::peek_exit_status(child) {
                if status != 0 {
                    return Started::Exited(describe_exit(status));
                }
                break;
            }
            if Instant::now() >= deadline {
                return Started::TimedOut {
                    missing: "the start command did not exit".into(),
                    spawned: "start command",
                };
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        loop {
            if let crate::core::PidFileReading::Valid { pid, .. } =
                pidfile::read(&adopt.pidfile, procfs.pid_max())
                && let Ok(ProcessReading::Alive(info)) = procfs.observe(pid)
                && !info.has_exited()
                && info.start_ticks >= not_before
                && matches!(
                    self.identify(procfs, worker, pid),
                    Candidate::Wrapper { .. }
                )
            {
                return Started::Running(pid);
            }
            if Instant::now() >= deadline {
                return Started::TimedOut {
                    missing: format!(
                        "no PID file {} naming a live process that matches {}",
                        adopt.pidfile.display(),
                        crate::output::quote(&adopt.matches)
                    ),
                    spawned: "start command",
                };
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Writes the exit file of a foreground program, which the next pass
    /// reads as the incarnation's ending.
    fn child_exited(&self, worker: &str, incarnation: &str, child: i32, status: i32) {
        if self.spec(worker).is_none_or(|s| s.adopt.is_some()) {
            return;
        }
        let path = self.exit_file(worker);
        let text = exit_file_text(incarnation, child, status, chrono::Utc::now());
        // Not fsync'd: it ends an incarnation of this boot (see the function).
        let _ = crate::store::safe_fs::write_atomically_unsynced(&path, text.as_bytes(), 0o644);
    }
}

/// The exit file of a program that ended with wait status `status` (see
/// waitpid(2); [`crate::core::parse_exit_file`] reads it back).
pub fn exit_file_text(
    incarnation: &str,
    pid: i32,
    status: i32,
    at: chrono::DateTime<chrono::Utc>,
) -> String {
    let (code, signal) = if libc::WIFSIGNALED(status) {
        let sig = libc::WTERMSIG(status);
        (128 + sig, signal_name(sig))
    } else {
        (libc::WEXITSTATUS(status), String::new())
    };
    format!(
        "incarnation={incarnation}\npid={pid}\nexit_status={code}\nsignal={signal}\nended={}\n",
        at.to_rfc3339()
    )
}

/// `exit N`, or `killed by SIGX`, of a wait status.
pub fn describe_exit(status: i32) -> String {
    if libc::WIFSIGNALED(status) {
        format!("killed by SIG{}", signal_name(libc::WTERMSIG(status)))
    } else {
        format!("exit {}", libc::WEXITSTATUS(status))
    }
}

/// A signal's name without `SIG` (`TERM`), or its number.
pub fn signal_name(signal: i32) -> String {
    nix::sys::signal::Signal::try_from(signal)
        .map(|s| s.as_str().trim_start_matches("SIG").to_string())
        .unwrap_or_else(|_| signal.to_string())
}

/// The environment a program gets: pidwatch's own, less what belongs to
/// pidwatch's service manager and pidwatch itself, plus its `env`, plus
/// its incarnation's id.
pub fn environment(spec: &ProgramSpec, incarnation: &str) -> Vec<(String, String)> {
    let mut env: BTreeMap<String, String> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .filter(|(k, _)| {
            !crate::act::spawn::SCRUBBED_ENV.contains(&k.as_str()) && !k.starts_with("PIDWATCH_")
        })
        .collect();
    for (k, v) in &spec.env {
        env.insert(k.clone(), v.clone());
    }
    env.insert("PIDWATCH_INVOCATION_ID".into(), incarnation.into());
    env.insert("PIDWATCH_INVOCATION_WORKER".into(), spec.id.clone());
    env.into_iter().collect()
}

/// The program `name` names: a path (relative to `cwd`) when it has a
/// slash, else the first executable file of that name in `path_var`.
pub fn find_program(name: &str, path_var: &str, cwd: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if name.contains('/') {
        let p = cwd.join(name);
        return executable(&p).then_some(p);
    }
    path_var
        .split(':')
        .filter(|d| !d.is_empty())
        .map(|d| cwd.join(d).join(name))
        .find(|p| executable(p))
}

fn cstring(bytes: &[u8]) -> std::io::Result<CString> {
    CString::new(bytes).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "a NUL byte in an argument",
        )
    })
}

fn to_exec(
    program: &Path,
    argv: &[String],
    env: &[(String, String)],
    cwd: &Path,
    output: i32,
) -> std::io::Result<crate::act::child::Exec> {
    Ok(crate::act::child::Exec {
        path: cstring(program.as_os_str().as_bytes())?,
        argv: argv
            .iter()
            .map(|a| cstring(a.as_bytes()))
            .collect::<std::io::Result<_>>()?,
        envp: env
            .iter()
            .map(|(k, v)| cstring(format!("{k}={v}").as_bytes()))
            .collect::<std::io::Result<_>>()?,
        fd_limit: crate::act::spawn::original_fd_limit(),
        cwd: Some(cstring(cwd.as_os_str().as_bytes())?),
        output: Some(output),
    })
}

/// Starts the program without clone3: in a new session, joining the
/// cgroup whose `cgroup.procs` is given before exec.
fn spawn_plain(
    program: &Path,
    argv: &[String],
    env: &[(String, String)],
    spec: &ProgramSpec,
    output: &std::fs::File,
    cgroup_procs: Option<&std::fs::File>,
) -> std::io::Result<i32> {
    let mut cmd = std::process::Command::new(program);
    cmd.arg0(&argv[0])
        .args(&argv[1..])
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir(&spec.cwd)
        .stdin(std::process::Stdio::null())
        .stdout(output.try_clone()?)
        .stderr(output.try_clone()?);
    let fd_limit = crate::act::spawn::original_fd_limit();
    let join = cgroup_procs.map(|f| f.as_raw_fd());
    // SAFETY: the closure runs in the forked child before exec and only
    // makes async-signal-safe system calls (setsid(2), setrlimit(2), and
    // those of `prepare_child`), touching no memory shared with the parent.
    unsafe {
        cmd.pre_exec(move || {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            if let Some((soft, hard)) = fd_limit {
                let _ = nix::sys::resource::setrlimit(
                    nix::sys::resource::Resource::RLIMIT_NOFILE,
                    soft,
                    hard,
                );
            }
            crate::act::child::prepare_child(join)
        });
    }
    Ok(cmd.spawn()?.id() as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exit_file_reads_back_as_written() {
        let at = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let inc = "0123456789abcdef0123456789abcdef";
        let exited = crate::core::parse_exit_file(&exit_file_text(inc, 42, 3 << 8, at)).unwrap();
        assert_eq!(exited.exit_status, Some(3));
        assert_eq!(exited.signal, None);
        let killed = crate::core::parse_exit_file(&exit_file_text(inc, 42, 15, at)).unwrap();
        assert_eq!(killed.signal.as_deref(), Some("TERM"));
        assert!(killed.is_deliberate_stop());
        assert_eq!(describe_exit(9), "killed by SIGKILL");
        assert_eq!(describe_exit(1 << 8), "exit 1");
    }

    #[test]
    fn programs_are_found_on_the_path_or_by_their_path() {
        let cwd = Path::new("/");
        assert!(find_program("sh", "/nonexistent:/bin:/usr/bin", cwd).is_some());
        assert!(find_program("no-such-program-here", "/bin:/usr/bin", cwd).is_none());
        assert_eq!(
            find_program("/bin/sh", "", cwd),
            Some(PathBuf::from("/bin/sh"))
        );
    }
}

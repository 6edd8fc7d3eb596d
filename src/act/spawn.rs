//! Starting and stopping processes: the wrapper, its new PID file, the
//! survivors of a dead worker, its work dir.
//!
//! Signals are only ever sent to processes whose identity was verified after a
//! pidfd (`pidfd_open(2)`) pinned them: the PID, its start time and its group
//! or session are read again once the pidfd is open, so a PID reused in
//! between is caught, and the signal goes through the pidfd
//! (`pidfd_send_signal(2)`), which cannot reach another process.

use std::ffi::OsStr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::core::{Member, PidFileReading, ProcessReading};
use crate::observe::pidfile;
use crate::observe::procfs::Procfs;

/// Environment variables of pidwatch's own service manager that must not
/// reach workers: a worker must not talk to pidwatch's systemd socket or
/// inherit its watchdog or sockets.
pub const SCRUBBED_ENV: [&str; 5] = [
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "LISTEN_FDS",
    "LISTEN_PID",
];

/// The wrapper's argv contract (reference, section 2), plus pidwatch's
/// optional worker command.
#[derive(Debug, Clone)]
pub struct WrapperCall<'a> {
    /// The wrapper script.
    pub wrapper: &'a Path,
    /// The stream id.
    pub worker: &'a str,
    /// The PID file the wrapper writes.
    pub pid_file: &'a Path,
    /// The folder of worker logs.
    pub log_dir: &'a Path,
    /// Where the worker works.
    pub work_dir: &'a Path,
    /// The initiative id.
    pub initiative: &'a str,
    /// The prompt for the worker.
    pub prompt: &'a str,
    /// A command run by `sh -c` instead of the wrapper's default.
    pub worker_command: Option<&'a str>,
}

impl WrapperCall<'_> {
    /// The argument list after the wrapper's path.
    pub fn args(&self) -> Vec<&OsStr> {
        let mut args: Vec<&OsStr> = vec![
            self.worker.as_ref(),
            self.pid_file.as_os_str(),
            self.log_dir.as_os_str(),
            self.work_dir.as_os_str(),
            self.initiative.as_ref(),
            self.prompt.as_ref(),
        ];
        if let Some(cmd) = self.worker_command {
            args.extend(["--", "sh", "-c", cmd].map(OsStr::new));
        }
        args
    }

    /// Starts the wrapper in a new session (`setsid(2)`: it leads its own
    /// session and process group, which outlive pidwatch), with stdin, stdout
    /// and stderr on `/dev/null` and the environment inherited less
    /// [`SCRUBBED_ENV`] and every `PIDWATCH_` variable. Returns its PID; the caller must reap it.
    ///
    /// Errors: the wrapper cannot be executed (missing, not executable).
    pub fn spawn(&self) -> std::io::Result<i32> {
        self.spawn_incarnation(None, None)
    }

    /// Like [`WrapperCall::spawn`], for incarnation `invocation` (passed as
    /// `PIDWATCH_INVOCATION_ID`, which the wrapper and everything it starts
    /// carry), and inside a cgroup when `cgroup_procs` is that cgroup's
    /// `cgroup.procs` opened for writing: the child joins it before exec, so
    /// that nothing of the incarnation ever runs outside it.
    ///
    /// Errors: the wrapper cannot be executed, or the cgroup cannot be joined.
    pub fn spawn_incarnation(
        &self,
        invocation: Option<&str>,
        cgroup_procs: Option<&std::fs::File>,
    ) -> std::io::Result<i32> {
        self.spawn_with(invocation, cgroup_procs)
    }

    /// Like [`WrapperCall::spawn_incarnation`], with the child created
    /// directly inside the cgroup `cgroup` (clone3 `CLONE_INTO_CGROUP`,
    /// see [`crate::act::child::spawn_into_cgroup`]); where the kernel cannot
    /// (before Linux 5.7), it joins it before exec instead.
    ///
    /// Errors: as [`WrapperCall::spawn_incarnation`].
    pub fn spawn_in_cgroup(
        &self,
        invocation: &str,
        cgroup: &crate::observe::cgroup::Cgroup,
    ) -> std::io::Result<i32> {
        use std::os::fd::AsRawFd;
        use std::os::unix::ffi::OsStrExt;
        let dir = std::fs::File::open(cgroup.path())?;
        let cstring = |b: &[u8]| {
            std::ffi::CString::new(b).map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "a NUL byte in an argument",
                )
            })
        };
        let mut argv = vec![cstring(self.wrapper.as_os_str().as_bytes())?];
        for arg in self.args() {
            argv.push(cstring(arg.as_bytes())?);
        }
        let mut envp = Vec::new();
        for (key, value) in std::env::vars_os() {
            let key_bytes = key.as_bytes();
            if SCRUBBED_ENV.iter().any(|v| v.as_bytes() == key_bytes)
                || key_bytes.starts_with(b"PIDWATCH_")
            {
                continue;
            }
            let mut pair = key_bytes.to_vec();
            pair.push(b'=');
            pair.extend_from_slice(value.as_bytes());
            envp.push(cstring(&pair)?);
        }
        envp.push(cstring(
            format!("PIDWATCH_INVOCATION_ID={invocation}").as_bytes(),
        )?);
        let mut worker = b"PIDWATCH_INVOCATION_WORKER=".to_vec();
        worker.extend_from_slice(self.worker.as_bytes());
        envp.push(cstring(&worker)?);
        let exec = crate::act::child::Exec {
            path: cstring(self.wrapper.as_os_str().as_bytes())?,
            argv,
            envp,
            fd_limit: ORIGINAL_FD_LIMIT.get().copied(),
            cwd: None,
            output: None,
        };
        match crate::act::child::spawn_into_cgroup(&exec, dir.as_raw_fd()) {
            Err(e) if e.kind() == std::io::ErrorKind::Unsupported => {
                let procs = cgroup.procs_writer()?;
                self.spawn_with(Some(invocation), Some(&procs))
            }
            other => other,
        }
    }

    fn spawn_with(
        &self,
        invocation: Option<&str>,
        cgroup_procs: Option<&std::fs::File>,
    ) -> std::io::Result<i32> {
        use std::os::fd::AsRawFd;
        let mut cmd = Command::new(self.wrapper);
        cmd.args(self.args())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .current_dir("/");
        for var in SCRUBBED_ENV {
            cmd.env_remove(var);
        }
        // pidwatch's own PIDWATCH_ settings, and the markers of a worker
        // environment it may run in, are not the wrapper's.
        for (key, _) in std::env::vars_os() {
            if key.as_encoded_bytes().starts_with(b"PIDWATCH_") {
                cmd.env_remove(key);
            }
        }
        if let Some(id) = invocation {
            cmd.env("PIDWATCH_INVOCATION_ID", id)
                .env("PIDWATCH_INVOCATION_WORKER", self.worker);
        }
        let fd_limit = ORIGINAL_FD_LIMIT.get().copied();
        let join = cgroup_procs.map(|f| f.as_raw_fd());
        // SAFETY: the closure runs in the forked child before exec and only
        // makes async-signal-safe system calls (setsid(2), setrlimit(2), and
        // those of `prepare_child`), touching no memory shared with the parent.
        unsafe {
            cmd.pre_exec(move || {
                nix::unistd::setsid().map_err(std::io::Error::from)?;
                if let Some((soft, hard)) = fd_limit {
                    // Workers get the descriptor limit pidwatch was given.
                    let _ = setrlimit(Resource::RLIMIT_NOFILE, soft, hard);
                }
                crate::act::child::prepare_child(join)
            });
        }
        let child = cmd.spawn()?;
        Ok(child.id() as i32)
    }
}

/// Checks that the wrapper can be run before anything counts an attempt: a
/// missing or non-executable wrapper is a configuration error, not a
/// restart that fails and burns the cap.
///
/// Errors: what is wrong with it, naming it and how to fix it.
pub fn check_wrapper(wrapper: &Path) -> Result<(), String> {
    let fix = format!(
        "install it with `pidwatch wrapper --install {}`, or give --wrapper",
        wrapper.display()
    );
    match std::fs::metadata(wrapper) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(format!(
            "the wrapper {} does not exist; {fix}",
            wrapper.display()
        )),
        Err(e) => Err(format!("the wrapper {}: {e}", wrapper.display())),
        Ok(meta) if !meta.is_file() => Err(format!(
            "the wrapper {} is not a regular file; {fix}",
            wrapper.display()
        )),
        Ok(_) => nix::unistd::access(wrapper, nix::unistd::AccessFlags::X_OK).map_err(|e| {
            format!(
                "the wrapper {} cannot be executed ({e}); `chmod +x` it, or {fix}",
                wrapper.display()
            )
        }),
    }
}

/// The descriptor limit pidwatch started with, restored in the wrappers it
/// spawns, set by [`raise_fd_limit`].
static ORIGINAL_FD_LIMIT: OnceLock<(u64, u64)> = OnceLock::new();

/// Raises the soft limit of open descriptors to the hard limit: a monitor
/// holds one pidfd per running worker, more than the usual soft limit of
/// 1,024 allows. Wrappers spawned afterwards get the original limit back.
/// Returns the new soft limit.
///
/// Errors: getrlimit(2) or setrlimit(2) failed.
pub fn raise_fd_limit() -> nix::Result<u64> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    let _ = ORIGINAL_FD_LIMIT.set((soft, hard));
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    }
    Ok(hard.max(soft))
}

/// How a wrapper's wait for its PID file ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpawnOutcome {
    /// A new PID file names this live process.
    Running(i32),
    /// No such PID file within the timeout.
    TimedOut,
    /// The wrapper exited first, with this status (`exit N` or `signal N`).
    WrapperExited(String),
}

/// Describes a wait status: `exit 0`, `signal 9 (SIGKILL)`.
pub fn describe_status(status: WaitStatus) -> Option<String> {
    match status {
        WaitStatus::Exited(_, code) => Some(format!("exit {code}")),
        WaitStatus::Signaled(_, sig, _) => Some(format!("signal {} ({sig})", sig as i32)),
        _ => None,
    }
}

/// Reaps `pid` if it has exited, without waiting; its status when it had.
pub fn try_reap(pid: i32) -> Option<String> {
    match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
        Ok(status) => describe_status(status),
        Err(Errno::ECHILD) => Some("exit status unknown (reaped elsewhere)".into()),
        Err(_) => None,
    }
}

/// Waits until the PID file at `path` names `child`, the wrapper just
/// spawned, alive, or the wrapper exits, or `timeout` passes. A PID file
/// naming any other process (another wrapper's) is not this spawn's.
pub fn wait_for_pidfile(
    procfs: &Procfs,
    path: &Path,
    child: i32,
    timeout: Duration,
) -> SpawnOutcome {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_micros(500);
    loop {
        let reading = pidfile::read(path, procfs.pid_max());
        if let PidFileReading::Valid { pid, .. } = &reading
            && *pid == child
            && let Ok(ProcessReading::Alive(info)) = procfs.observe(*pid)
            && !info.has_exited()
        {
            return SpawnOutcome::Running(*pid);
        }
        if let Some(status) = try_reap(child) {
            return SpawnOutcome::WrapperExited(status);
        }
        let now = Instant::now();
        if now >= deadline {
            return SpawnOutcome::TimedOut;
        }
        // A wrapper writes its PID file within milliseconds; poll fast at
        // first, then back off, so that a slow one costs little CPU.
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(5));
    }
}

/// A process pinned by a pidfd after its identity was checked.
struct Pinned {
    pid: i32,
    fd: Option<OwnedFd>,
}

/// Opens a pidfd for `pid` and checks, *after* it is open, that the process
/// is still the one described by `start_ticks`. `Ok(None)`: gone or another
/// process. Without pidfd support (ENOSYS) the check is made without a pin.
fn pin(procfs: &Procfs, pid: i32, start_ticks: u64) -> Option<Pinned> {
    let raw = rustix::process::Pid::from_raw(pid)?;
    let fd = match rustix::process::pidfd_open(raw, rustix::process::PidfdFlags::empty()) {
        Ok(fd) => Some(fd),
        Err(rustix::io::Errno::NOSYS) => None,
        Err(_) => return None,
    };
    match procfs.stat(pid) {
        Ok(Some(stat)) if stat.start_ticks == start_ticks => Some(Pinned { pid, fd }),
        _ => None,
    }
}

impl Pinned {
    fn signal(&self, sig: nix::sys::signal::Signal) {
        match &self.fd {
            Some(fd) => {
                // The signal asked for (a program's stop_signal: INT,
                // QUIT, ...); one that rustix has no name for (a real-time
                // signal) is sent as TERM.
                let rsig = rustix::process::Signal::from_named_raw(sig as i32)
                    .unwrap_or(rustix::process::Signal::TERM);
                let _ = rustix::process::pidfd_send_signal(fd, rsig);
            }
            None => {
                let _ = nix::sys::signal::kill(Pid::from_raw(self.pid), sig);
            }
        }
    }

    fn has_exited(&self, procfs: &Procfs) -> bool {
        match &self.fd {
            // A pidfd polls readable once the process has exited.
            Some(fd) => {
                let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
                matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
            }
            None => !matches!(procfs.stat(self.pid), Ok(Some(s)) if !matches!(s.state, 'Z' | 'X')),
        }
    }
}

/// What [`stop_members`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StopReport {
    /// PIDs sent SIGTERM (or the stop signal given).
    pub terminated: Vec<i32>,
    /// PIDs that outlived the timeout and were sent SIGKILL.
    pub killed: Vec<i32>,
    /// Cgroups killed whole (`cgroup.kill`) after the timeout.
    pub cgroups_killed: Vec<String>,
}

/// Stops exactly `members` (proved by `observe`) and the members of the
/// cgroups in `cgroups` (as `cgroup.procs` lists them now): SIGTERM, up to
/// `timeout` for them to exit (their pidfds tell the moment each does),
/// then SIGKILL; a cgroup still populated then (what forked after) is
/// killed whole with `cgroup.kill`, and an emptied one removed. Each process
/// is pinned with a pidfd, and its start time (or cgroup membership) checked
/// after the pin, so a process that exited and whose PID was reused is never
/// hit. pidwatch itself and PID 1 are never signalled. What forked outside a
/// cgroup during the stop is found by the next observation, and stopped in a
/// next round.
pub fn stop_members(
    procfs: &Procfs,
    members: &[Member],
    cgroups: &[String],
    timeout: Duration,
) -> StopReport {
    stop_members_with(
        procfs,
        members,
        cgroups,
        Some(nix::sys::signal::Signal::SIGTERM),
        timeout,
    )
}

/// Like [`stop_members`], with `first` sent instead of SIGTERM (a
/// program's `stop_signal`); `None` sends nothing first and only waits
/// (its own stop command already asked it to go).
pub fn stop_members_with(
    procfs: &Procfs,
    members: &[Member],
    cgroups: &[String],
    first: Option<nix::sys::signal::Signal>,
    timeout: Duration,
) -> StopReport {
    stop_members_fed(procfs, members, cgroups, first, timeout, None)
}

/// How often a long stop calls its `progress` (the monitor feeds the
/// systemd watchdog with it: a `stop_timeout` may be 10 minutes).
const PROGRESS_PERIOD: Duration = Duration::from_secs(1);

/// Like [`stop_members_with`], calling `progress` at least every second
/// while it waits.
pub fn stop_members_fed(
    procfs: &Procfs,
    members: &[Member],
    cgroups: &[String],
    first: Option<nix::sys::signal::Signal>,
    timeout: Duration,
    progress: Option<&dyn Fn()>,
) -> StopReport {
    use nix::sys::signal::Signal;
    let me = std::process::id() as i32;
    let deadline = Instant::now() + timeout;
    let mut report = StopReport::default();
    let groups: Vec<crate::observe::cgroup::Cgroup> = cgroups
        .iter()
        .map(|p| crate::observe::cgroup::Cgroup::at(PathBuf::from(p)))
        .filter(|cg| cg.exists())
        .collect();
    // Every process to stop, pinned: a cgroup's members as listed now
    // (what forked since the observation included), then the others.
    let mut pinned: Vec<Pinned> = Vec::new();
    for cg in &groups {
        for (pid, fd) in cg.pin_members().unwrap_or_default() {
            pinned.push(Pinned { pid, fd: Some(fd) });
        }
    }
    for m in members {
        let pid = m.process.pid;
        if pid > 1
            && pid != me
            && !pinned.iter().any(|p| p.pid == pid)
            && let Some(p) = pin(procfs, pid, m.process.start_ticks)
        {
            pinned.push(p);
        }
    }
    if let Some(first) = first {
        for p in &pinned {
            p.signal(first);
            report.terminated.push(p.pid);
        }
    }
    // The pidfds tell the moment each exits.
    wait_all_exited(procfs, &pinned, deadline, progress);
    for p in pinned.iter().filter(|p| !p.has_exited(procfs)) {
        p.signal(Signal::SIGKILL);
        report.killed.push(p.pid);
    }
    // A cgroup still populated holds what forked after the pins: killed
    // whole.
    for cg in &groups {
        if cg.populated().unwrap_or(false) {
            let _ = cg.kill();
            report.cgroups_killed.push(cg.path().display().to_string());
        }
    }
    let after_kill = Instant::now() + Duration::from_secs(1);
    wait_all_exited(procfs, &pinned, after_kill, progress);
    for cg in &groups {
        // Emptied, it is of no more use: an incarnation's cgroup is never
        // reused.
        if cg.wait_empty(after_kill).unwrap_or(false) {
            let _ = cg.remove();
        }
    }
    report.terminated.sort_unstable();
    report.terminated.dedup();
    report
}

/// Stops the session `leader` leads, when it is a wrapper pidwatch spawned
/// and has not reaped (so its PID, and the session id, cannot have been
/// reused): SIGTERM to every member, then SIGKILL after `timeout`.
///
/// Errors: `/proc` cannot be listed.
pub fn stop_own_session(
    procfs: &Procfs,
    leader: i32,
    timeout: Duration,
) -> std::io::Result<StopReport> {
    let members: Vec<Member> = crate::observe::members::scan(procfs, &mut Default::default())?
        .into_iter()
        .filter(|e| e.stat.session == leader || e.pid == leader)
        .map(|e| Member {
            process: crate::core::ProcessId {
                pid: e.pid,
                start_ticks: e.stat.start_ticks,
            },
            comm: e.stat.comm,
            incarnation: e.markers.invocation,
            proof: crate::core::Proof::Session,
        })
        .collect();
    Ok(stop_members(procfs, &members, &[], timeout))
}

/// Waits until every pinned process has exited, or `until`. Pidfds are
/// polled together, so the wait ends the moment the last one exits;
/// processes without one (no pidfd support) are looked at every few ms.
fn wait_all_exited(
    procfs: &Procfs,
    pinned: &[Pinned],
    until: Instant,
    progress: Option<&dyn Fn()>,
) {
    loop {
        if let Some(progress) = progress {
            progress();
        }
        let left: Vec<&Pinned> = pinned.iter().filter(|p| !p.has_exited(procfs)).collect();
        let now = Instant::now();
        if left.is_empty() || now >= until {
            return;
        }
        let mut fds: Vec<PollFd<'_>> = left
            .iter()
            .filter_map(|p| p.fd.as_ref())
            .map(|fd| PollFd::new(fd.as_fd(), PollFlags::POLLIN))
            .collect();
        let unpinned = fds.len() < left.len();
        let mut wait = until - now;
        if unpinned {
            wait = wait.min(Duration::from_millis(5));
        }
        if progress.is_some() {
            wait = wait.min(PROGRESS_PERIOD);
        }
        let millis = u16::try_from(wait.as_millis().max(1)).unwrap_or(u16::MAX);
        if fds.is_empty() {
            std::thread::sleep(Duration::from_millis(u64::from(millis)));
        } else {
            let _ = poll(&mut fds, PollTimeout::from(millis));
        }
    }
}

/// The work dir of a worker: the project root for stream `main`, else
/// `<project>/.claude/worktrees/<id>`.
pub fn work_dir_for(project_root: &Path, worker: &str) -> PathBuf {
    if worker == "main" {
        project_root.to_path_buf()
    } else {
        project_root.join(".claude/worktrees").join(worker)
    }
}

/// Makes sure the work dir exists. A missing worktree is created with
/// `git worktree add` on branch `<id>` (made from HEAD if it does not
/// exist) when the project root is a git repository.
///
/// Errors (as text for the log): the dir is missing and the project root is
/// not a git repository, or git failed (its stderr).
pub fn ensure_work_dir(project_root: &Path, worker: &str) -> Result<PathBuf, String> {
    let dir = work_dir_for(project_root, worker);
    if dir.is_dir() {
        return Ok(dir);
    }
    if dir.exists() {
        return Err(format!("work dir {} is not a folder", dir.display()));
    }
    if worker == "main" {
        return Err(format!("project root {} does not exist", dir.display()));
    }
    let git = |args: &[&OsStr]| {
        // No hook of the user's (a post-checkout hook could take long, or
        // ask), no prompt.
        Command::new("git")
            .arg("-C")
            .arg(project_root)
            .args(["-c", "core.hooksPath=/dev/null"])
            .args(args)
            .env("GIT_TERMINAL_PROMPT", "0")
            .stdin(Stdio::null())
            .output()
    };
    let inside = git(&["rev-parse", "--is-inside-work-tree"].map(OsStr::new));
    if let Err(e) = &inside
        && e.kind() == std::io::ErrorKind::NotFound
    {
        return Err(format!(
            "work dir {} is missing and git, which makes it as a worktree, is not installed",
            dir.display()
        ));
    }
    if !matches!(&inside, Ok(out) if out.status.success()) {
        return Err(format!(
            "work dir {} is missing and the project root {} is not a git repository",
            dir.display(),
            project_root.display()
        ));
    }
    let branch = format!("refs/heads/{worker}");
    let has_branch = matches!(
        git(&["rev-parse", "--verify", "--quiet", &branch].map(OsStr::new)),
        Ok(out) if out.status.success()
    );
    let out = if has_branch {
        git(&[
            OsStr::new("worktree"),
            OsStr::new("add"),
            dir.as_os_str(),
            OsStr::new(worker),
        ])
    } else {
        git(&[
            OsStr::new("worktree"),
            OsStr::new("add"),
            OsStr::new("-b"),
            OsStr::new(worker),
            dir.as_os_str(),
        ])
    };
    match out {
        Ok(out) if out.status.success() && dir.is_dir() => Ok(dir),
        Ok(out) => Err(format!(
            "git worktree add {} failed: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => Err(format!("running git: {e}")),
    }
}

/// The `RLIMIT_NOFILE` pidwatch was given before it raised its own (see
/// [`raise_fd_limit`]), which the processes it starts get back.
pub fn original_fd_limit() -> Option<(u64, u64)> {
    ORIGINAL_FD_LIMIT.get().copied()
}

/// The wait status of our child `pid` if it exited, read without reaping
/// it (waitid(2) with `WNOWAIT`): until reaped, its PID (and the session
/// it leads) cannot be reused, so what it left behind can still be
/// stopped safely. `None` while it runs.
pub fn peek_exit_status(pid: i32) -> Option<i32> {
    use nix::sys::wait::{Id, waitid};
    let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
    waitid(Id::Pid(Pid::from_raw(pid)), flags)
        .ok()
        .and_then(raw_status)
}

/// The wait status (as waitpid(2) gives it) of a parsed one: `code << 8`
/// for an exit, the signal's number for a death by signal.
pub fn raw_status(status: WaitStatus) -> Option<i32> {
    match status {
        WaitStatus::Exited(_, code) => Some((code & 0xff) << 8),
        WaitStatus::Signaled(_, signal, _) => Some(signal as i32),
        _ => None,
    }
}

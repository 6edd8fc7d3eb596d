//! Health and readiness probes of workers from the config file: running
//! one ([`run`]) and counting failures in a row ([`HealthState`]).
//!
//! A probe runs in a process group of its own, with stdin on `/dev/null`
//! and stdout and stderr on one pipe that pidwatch reads while it waits, so
//! that a chatty probe never blocks on a full pipe and at most the last
//! [`PROBE_OUTPUT_MAX`] bytes are kept. When the probe exits, or its
//! timeout passes, its whole process group gets SIGKILL *before* the probe
//! is reaped: until then the exited (zombie) probe holds its PID, which is
//! the group's id, so the id cannot have been taken by an unrelated
//! process. Whatever a probe leaves running in its group (`cmd &`) does not
//! outlive it; a process that leaves the group (`setsid`) escapes this.

use std::io::{self, Read};
use std::os::fd::AsFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, killpg};
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid};
use nix::unistd::Pid;

use crate::act::spawn::SCRUBBED_ENV;
use crate::source::config::ProgramCommand;

/// At most this many bytes of a probe's output (the last ones, stdout and
/// stderr interleaved as written) are kept.
pub const PROBE_OUTPUT_MAX: usize = 512;

/// How long the output of a probe that exited is still read, for what its
/// children wrote last, before it is given up (a process that left the
/// probe's group may hold the pipe open).
const DRAIN_GRACE: Duration = Duration::from_millis(100);

/// How often the probe is looked at when no pidfd can be had.
const POLL_TICK: Duration = Duration::from_millis(10);

/// How one run of a probe went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// It exited 0.
    Passed,
    /// It exited non-zero or was killed by a signal, before its timeout.
    Failed {
        /// Its exit status, when it exited (127: `sh` did not find the
        /// program of a shell command).
        exit_status: Option<i32>,
        /// The signal that killed it, when one did.
        signal: Option<i32>,
        /// The end of its output: the last [`PROBE_OUTPUT_MAX`] bytes of
        /// stdout and stderr (preceded by `…` when more came before),
        /// decoded as UTF-8 with invalid bytes replaced, trailing
        /// whitespace trimmed, and control and invisible format characters
        /// escaped (`\n`, `\t`, `\r`, otherwise `\u{…}`): one line, safe
        /// for a terminal or a log.
        output: String,
    },
    /// It ran longer than its timeout; its process group was killed.
    TimedOut,
    /// It could not be started: why (the program of an argv command is
    /// missing or not executable, the working directory is missing, ...).
    CouldNotRun(String),
}

impl ProbeOutcome {
    /// Whether it passed.
    pub fn passed(&self) -> bool {
        matches!(self, ProbeOutcome::Passed)
    }

    /// In words, one line, for the log: `passed`, `exit 1: <output>`,
    /// `killed by signal 9`, `timed out`, `could not run: <why>`.
    pub fn describe(&self) -> String {
        match self {
            ProbeOutcome::Passed => "passed".into(),
            ProbeOutcome::Failed {
                exit_status,
                signal,
                output,
            } => {
                let how = match (exit_status, signal) {
                    (Some(code), _) => format!("exit {code}"),
                    (None, Some(sig)) => format!("killed by signal {sig}"),
                    (None, None) => "failed".into(),
                };
                if output.is_empty() {
                    how
                } else {
                    format!("{how}: {output}")
                }
            }
            ProbeOutcome::TimedOut => "timed out".into(),
            ProbeOutcome::CouldNotRun(why) => format!("could not run: {why}"),
        }
    }
}

/// Runs the probe `command` ([`ProgramCommand::argv`]) once and waits for
/// it, at most `timeout`.
///
/// Its environment is pidwatch's, less the systemd variables of
/// [`SCRUBBED_ENV`] and every `PIDWATCH_` variable (as for wrappers), plus
/// `env` (a later pair wins); it runs in `cwd`, with stdin on `/dev/null`,
/// stdout and stderr captured (bounded, see [`ProbeOutcome::Failed`]), in a
/// process group of its own. When it exits, or `timeout` passes, the whole
/// group gets SIGKILL and the probe is reaped: no zombie and no process of
/// its group is left behind (a member already dying is gone once the
/// kernel and its new parent have reaped it).
///
/// A missing program: an argv command (`["check-db"]`) gives
/// [`ProbeOutcome::CouldNotRun`] (exec fails in pidwatch's child); a shell
/// command (`"check-db"`) gives [`ProbeOutcome::Failed`] with exit status
/// 127, as `sh` reports it.
///
/// The probe is a child of the calling process and is reaped here: nothing
/// else may reap it meanwhile (a `waitpid(-1)` on another thread). Should
/// it be reaped elsewhere, its group is not signalled (its id may be
/// another's by then) and the outcome is [`ProbeOutcome::CouldNotRun`].
pub fn run(
    command: &ProgramCommand,
    env: &[(String, String)],
    cwd: &Path,
    timeout: Duration,
) -> ProbeOutcome {
    let argv = command.argv();
    let Some((program, args)) = argv.split_first() else {
        return ProbeOutcome::CouldNotRun("the command is empty".into());
    };
    if let Err(e) = std::fs::metadata(cwd).and_then(|m| {
        if m.is_dir() {
            Ok(())
        } else {
            Err(io::Error::from(io::ErrorKind::NotADirectory))
        }
    }) {
        return ProbeOutcome::CouldNotRun(format!(
            "cannot use {} as the working directory: {e}",
            cwd.display()
        ));
    }
    let (reader, writer) = match pipe_pair() {
        Ok(pair) => pair,
        Err(e) => return ProbeOutcome::CouldNotRun(format!("cannot make a pipe: {e}")),
    };
    let (stdout, stderr) = writer;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .process_group(0);
    for var in SCRUBBED_ENV {
        cmd.env_remove(var);
    }
    for (key, _) in std::env::vars_os() {
        if key.as_encoded_bytes().starts_with(b"PIDWATCH_") {
            cmd.env_remove(key);
        }
    }
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    let spawned = cmd.spawn();
    // `cmd` holds the write ends of the pipe: closed now, so that the
    // reader sees the end of the output once the probe's group is gone.
    drop(cmd);
    let child = match spawned {
        Ok(child) => child,
        Err(e) => {
            return ProbeOutcome::CouldNotRun(format!(
                "cannot run {}: {e}",
                crate::output::quote(program)
            ));
        }
    };
    Running::new(child, reader).finish(Instant::now() + timeout)
}

/// A pipe whose write end is cloned for stdout and stderr.
fn pipe_pair() -> io::Result<(io::PipeReader, (io::PipeWriter, io::PipeWriter))> {
    let (reader, writer) = io::pipe()?;
    let again = writer.try_clone()?;
    let flags = nix::fcntl::fcntl(&reader, nix::fcntl::FcntlArg::F_GETFL)?;
    let flags = nix::fcntl::OFlag::from_bits_truncate(flags) | nix::fcntl::OFlag::O_NONBLOCK;
    nix::fcntl::fcntl(&reader, nix::fcntl::FcntlArg::F_SETFL(flags))?;
    Ok((reader, (writer, again)))
}

/// A probe started and not reaped yet.
struct Running {
    child: Child,
    pid: Pid,
    /// The probe's pidfd, to sleep until it exits; `None` before Linux 5.3.
    pidfd: Option<std::os::fd::OwnedFd>,
    /// The read end of its output pipe; `None` once at its end.
    reader: Option<io::PipeReader>,
    output: OutputTail,
}

/// How waiting for the probe ended.
enum Waited {
    /// It exited (not reaped yet).
    Exited,
    /// Its timeout passed.
    TimedOut,
    /// It was reaped by someone else.
    Lost,
}

impl Running {
    fn new(child: Child, reader: io::PipeReader) -> Running {
        let pid = Pid::from_raw(child.id() as i32);
        let pidfd = rustix::process::Pid::from_child(&child);
        let pidfd = rustix::process::pidfd_open(pidfd, rustix::process::PidfdFlags::empty()).ok();
        Running {
            child,
            pid,
            pidfd,
            reader: Some(reader),
            output: OutputTail::default(),
        }
    }

    /// Waits for the probe until `deadline`, kills its group, reaps it.
    fn finish(mut self, deadline: Instant) -> ProbeOutcome {
        let waited = self.wait_until(deadline);
        if matches!(waited, Waited::Lost) {
            let _ = self.child.try_wait();
            return ProbeOutcome::CouldNotRun(
                "its exit status was taken by another waiter (reaped elsewhere)".into(),
            );
        }
        // The probe, exited or not, is still unreaped: its PID, the group's
        // id, is not anyone else's.
        let _ = killpg(self.pid, Signal::SIGKILL);
        let status = loop {
            match self.child.wait() {
                Ok(status) => break Some(status),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break None,
            }
        };
        if matches!(waited, Waited::TimedOut) {
            return ProbeOutcome::TimedOut;
        }
        self.drain_until(Instant::now() + DRAIN_GRACE);
        match status {
            Some(status) if status.success() => ProbeOutcome::Passed,
            Some(status) => ProbeOutcome::Failed {
                exit_status: status.code(),
                signal: status.signal(),
                output: self.output.render(),
            },
            None => ProbeOutcome::CouldNotRun("cannot reap it".into()),
        }
    }

    /// Reads output until the probe exits or `deadline` passes.
    fn wait_until(&mut self, deadline: Instant) -> Waited {
        loop {
            match waitid(
                Id::Pid(self.pid),
                WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT,
            ) {
                Ok(WaitStatus::StillAlive) => {}
                Ok(_) => return Waited::Exited,
                Err(Errno::EINTR) => continue,
                Err(Errno::ECHILD) => return Waited::Lost,
                Err(_) => return Waited::Exited,
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Waited::TimedOut;
            }
            let nap = if self.pidfd.is_some() {
                left
            } else {
                left.min(POLL_TICK)
            };
            self.wait_for_events(nap);
        }
    }

    /// Sleeps until output comes, the probe exits (its pidfd is readable)
    /// or `nap` passes, and reads what output there is.
    fn wait_for_events(&mut self, nap: Duration) {
        let timeout = PollTimeout::try_from(nap).unwrap_or(PollTimeout::MAX);
        let mut fds = Vec::with_capacity(2);
        if let Some(reader) = &self.reader {
            fds.push(PollFd::new(reader.as_fd(), PollFlags::POLLIN));
        }
        if let Some(pidfd) = &self.pidfd {
            fds.push(PollFd::new(pidfd.as_fd(), PollFlags::POLLIN));
        }
        let ready = poll(&mut fds, timeout);
        let output_ready = self.reader.is_some() && fds[0].revents().is_some_and(|r| !r.is_empty());
        drop(fds);
        if ready.is_ok() && output_ready {
            self.read_output();
        }
    }

    /// Reads what the pipe holds now; marks its end.
    fn read_output(&mut self) {
        let Some(reader) = &mut self.reader else {
            return;
        };
        let mut buf = [0u8; 4096];
        loop {
            match reader.read(&mut buf) {
                Ok(0) => {
                    self.reader = None;
                    return;
                }
                Ok(n) => self.output.push(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => {
                    self.reader = None;
                    return;
                }
            }
        }
    }

    /// Reads the rest of the output until its end or `deadline`.
    fn drain_until(&mut self, deadline: Instant) {
        self.read_output();
        while self.reader.is_some() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            if let Some(reader) = &self.reader {
                let mut fds = [PollFd::new(reader.as_fd(), PollFlags::POLLIN)];
                let timeout = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
                if let Err(e) = poll(&mut fds, timeout)
                    && e != Errno::EINTR
                {
                    return;
                }
            }
            self.read_output();
        }
    }
}

/// The last [`PROBE_OUTPUT_MAX`] bytes of output, and whether any came
/// before them.
#[derive(Debug, Default)]
struct OutputTail {
    bytes: Vec<u8>,
    cut: bool,
}

impl OutputTail {
    fn push(&mut self, chunk: &[u8]) {
        self.bytes.extend_from_slice(chunk);
        // Trimmed in batches, not on every read.
        if self.bytes.len() > 2 * PROBE_OUTPUT_MAX {
            let extra = self.bytes.len() - PROBE_OUTPUT_MAX;
            self.bytes.drain(..extra);
            self.cut = true;
        }
    }

    fn render(&self) -> String {
        let start = self.bytes.len().saturating_sub(PROBE_OUTPUT_MAX);
        let mut kept = &self.bytes[start..];
        let cut = self.cut || start > 0;
        if cut {
            // Not from the middle of a character.
            while let Some((&b, rest)) = kept.split_first() {
                if b & 0xC0 != 0x80 {
                    break;
                }
                kept = rest;
            }
        }
        let text = String::from_utf8_lossy(kept);
        let mut out = String::with_capacity(text.len() + 3);
        if cut {
            out.push('…');
        }
        for c in text.trim_end().chars() {
            match c {
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                c if crate::output::is_hidden(c) => out.extend(c.escape_unicode()),
                c => out.push(c),
            }
        }
        out
    }
}

/// The bookkeeping of a worker's health probe: failures in a row, and
/// whether they make the worker unhealthy. Pure: it is told each run's
/// result.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HealthState {
    /// Runs in a row that failed (timed out, could not run, or exited
    /// non-zero); 0 after a run that passed.
    pub failures_in_a_row: u32,
    /// Whether the last run passed; `None` before the first run (or since
    /// [`HealthState::reset`]).
    pub last: Option<bool>,
}

impl HealthState {
    /// Records a run that `passed` or not. Returns true exactly when this
    /// failure makes the failures in a row reach `retries` (the probe's
    /// `retries`; 0 counts as 1): once per unhealthy spell, not again for
    /// the failures after it. A pass starts the count again.
    pub fn record(&mut self, passed: bool, retries: u32) -> bool {
        self.last = Some(passed);
        if passed {
            self.failures_in_a_row = 0;
            return false;
        }
        self.failures_in_a_row = self.failures_in_a_row.saturating_add(1);
        self.failures_in_a_row == retries.max(1)
    }

    /// Whether the failures in a row have reached `retries` (0 counts as 1).
    pub fn is_unhealthy(&self, retries: u32) -> bool {
        self.failures_in_a_row >= retries.max(1)
    }

    /// Forgets every run: for a new incarnation of the worker.
    pub fn reset(&mut self) {
        *self = HealthState::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn sh(script: &str) -> ProgramCommand {
        ProgramCommand::Shell(script.into())
    }

    fn run_sh(script: &str) -> ProbeOutcome {
        run(&sh(script), &[], Path::new("/"), 10 * SECOND)
    }

    fn failed_output(outcome: ProbeOutcome) -> String {
        match outcome {
            ProbeOutcome::Failed { output, .. } => output,
            other => panic!("not a failure: {other:?}"),
        }
    }

    /// Whether any process of group `pgid` remains (zombies reaped by
    /// their new parent are gone).
    fn group_exists(pgid: i32) -> bool {
        nix::sys::signal::kill(Pid::from_raw(-pgid), None) != Err(Errno::ESRCH)
    }

    #[test]
    fn passes_and_fails_with_the_status() {
        assert_eq!(run_sh("exit 0"), ProbeOutcome::Passed);
        assert!(
            run(
                &ProgramCommand::Argv(vec!["true".into()]),
                &[],
                Path::new("/"),
                SECOND
            )
            .passed()
        );
        assert_eq!(
            run_sh("exit 3"),
            ProbeOutcome::Failed {
                exit_status: Some(3),
                signal: None,
                output: String::new()
            }
        );
        assert_eq!(
            run_sh("kill -KILL $$"),
            ProbeOutcome::Failed {
                exit_status: None,
                signal: Some(9),
                output: String::new()
            }
        );
    }

    #[test]
    fn output_is_captured_bounded_and_escaped() {
        assert_eq!(
            failed_output(run_sh(
                "echo out; echo err >&2; printf 'a\\tb\\033[31m\\n'; exit 1"
            )),
            "out\\nerr\\na\\tb\\u{1b}[31m"
        );
        // Far more than a pipe holds: read while it runs, the end kept.
        let output = failed_output(run_sh(
            "i=0; while [ $i -lt 20000 ]; do echo line $i; i=$((i+1)); done; echo the end; exit 1",
        ));
        assert!(output.starts_with('…'), "{output}");
        assert!(output.ends_with("line 19999\\nthe end"), "{output}");
        assert!(
            output.len() <= PROBE_OUTPUT_MAX + 200,
            "{} bytes",
            output.len()
        );
        // Cut in the middle of a character: no replacement character.
        let output = failed_output(run_sh(
            "i=0; while [ $i -lt 300 ]; do printf 'é'; i=$((i+1)); done; exit 1",
        ));
        assert!(!output.contains('\u{fffd}'), "{output}");
    }

    #[test]
    fn a_timeout_kills_the_whole_group_and_reaps() {
        let tmp = tempfile::tempdir().unwrap();
        let pids = tmp.path().join("pids");
        let script = format!(
            "trap '' TERM; sleep 100 & echo $$ $! > {}; sleep 100",
            pids.display()
        );
        let start = Instant::now();
        let outcome = run(&sh(&script), &[], tmp.path(), Duration::from_millis(300));
        assert_eq!(outcome, ProbeOutcome::TimedOut);
        assert!(start.elapsed() < 5 * SECOND, "{:?}", start.elapsed());

        let text = std::fs::read_to_string(&pids).unwrap();
        let mut words = text.split_whitespace().map(|w| w.parse::<i32>().unwrap());
        let (leader, grandchild) = (words.next().unwrap(), words.next().unwrap());
        // The probe itself was reaped here: no zombie of ours.
        assert_eq!(
            waitid(
                Id::Pid(Pid::from_raw(leader)),
                WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG
            ),
            Err(Errno::ECHILD)
        );
        // The backgrounded grandchild was killed with it; it is gone once
        // its new parent (init) has reaped it.
        let deadline = Instant::now() + 10 * SECOND;
        while group_exists(leader) {
            assert!(
                Instant::now() < deadline,
                "group {leader} (grandchild {grandchild}) remains"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn what_a_probe_leaves_in_its_group_does_not_outlive_it() {
        let tmp = tempfile::tempdir().unwrap();
        let pid_file = tmp.path().join("pid");
        let script = format!("sleep 100 & echo $$ > {}; exit 0", pid_file.display());
        let start = Instant::now();
        assert_eq!(
            run(&sh(&script), &[], tmp.path(), 10 * SECOND),
            ProbeOutcome::Passed
        );
        assert!(start.elapsed() < 5 * SECOND, "{:?}", start.elapsed());
        let leader: i32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let deadline = Instant::now() + 10 * SECOND;
        while group_exists(leader) {
            assert!(Instant::now() < deadline, "group {leader} remains");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn a_missing_program() {
        let argv = ProgramCommand::Argv(vec!["/nonexistent/pidwatch-probe".into()]);
        match run(&argv, &[], Path::new("/"), SECOND) {
            ProbeOutcome::CouldNotRun(why) => {
                assert!(why.contains("/nonexistent/pidwatch-probe"), "{why}")
            }
            other => panic!("{other:?}"),
        }
        match run(
            &sh("pidwatch-no-such-program-xyz"),
            &[],
            Path::new("/"),
            SECOND,
        ) {
            ProbeOutcome::Failed {
                exit_status: Some(127),
                output,
                ..
            } => assert!(output.contains("pidwatch-no-such-program-xyz"), "{output}"),
            other => panic!("{other:?}"),
        }
        match run(&sh("true"), &[], Path::new("/nonexistent/dir"), SECOND) {
            ProbeOutcome::CouldNotRun(why) => assert!(why.contains("/nonexistent/dir"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            run(&ProgramCommand::Argv(vec![]), &[], Path::new("/"), SECOND),
            ProbeOutcome::CouldNotRun(_)
        ));
    }

    #[test]
    fn env_and_cwd_are_applied() {
        let tmp = tempfile::tempdir().unwrap();
        let cwd = tmp.path().canonicalize().unwrap();
        let env = [
            ("PROBE_A".to_string(), "one".to_string()),
            ("PROBE_B".to_string(), "two words".to_string()),
            ("PROBE_A".to_string(), "last wins".to_string()),
        ];
        let script = r#"echo "$PROBE_A|$PROBE_B|$(pwd -P)|${PATH:+has PATH}"; exit 1"#;
        let output = failed_output(run(&sh(script), &env, &cwd, 10 * SECOND));
        assert_eq!(
            output,
            format!("last wins|two words|{}|has PATH", cwd.display())
        );
    }

    #[test]
    fn health_counts_failures_in_a_row() {
        let mut h = HealthState::default();
        assert_eq!(h.last, None);
        assert!(!h.record(false, 3));
        assert!(!h.record(false, 3));
        assert!(!h.record(true, 3), "a pass starts again");
        assert_eq!((h.failures_in_a_row, h.last), (0, Some(true)));
        assert!(!h.record(false, 3));
        assert!(!h.record(false, 3));
        assert!(!h.is_unhealthy(3));
        assert!(h.record(false, 3), "the third in a row");
        assert!(h.is_unhealthy(3));
        assert!(!h.record(false, 3), "only once");
        assert_eq!((h.failures_in_a_row, h.last), (4, Some(false)));
        h.reset();
        assert_eq!(h, HealthState::default());
        assert!(h.record(false, 1));
        h.reset();
        assert!(h.record(false, 0), "0 counts as 1");
    }
}

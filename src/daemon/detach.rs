//! `--daemon`: detaching from the terminal for hosts without systemd, with
//! a readiness pipe to the waiting parent and an atomically written PID file.

use std::path::Path;

use crate::daemon::lock::Lock;
use crate::error::{EXIT_OK, Error, Result};

/// The daemon's end of the pipe that tells the waiting parent how start-up
/// went: `<exit code> <message>`.
pub struct Readiness(Option<std::fs::File>);

impl Readiness {
    /// Tells the parent `code` and `message`, once.
    pub fn report(&mut self, code: i32, message: &str) {
        if let Some(mut pipe) = self.0.take() {
            use std::io::Write;
            let _ = writeln!(pipe, "{code} {message}");
        }
    }
}

/// Which side of the fork `daemonize` returned in.
pub enum Detached {
    /// In the parent: the exit code to leave with, once the daemon said how
    /// its start went.
    Parent(i32),
    /// In the daemon.
    Daemon(Readiness),
}

/// Detaches (the daemonize crate: fork, setsid, fork, `/dev/null` stdio, cwd
/// `/`). The parent waits on a pipe until the daemon has opened everything
/// and says so, and exits with the daemon's start-up result: a daemon that
/// cannot start is an error on the terminal, not a silent exit 0. The daemon
/// writes its PID file atomically before it reports.
pub fn daemonize(pid_file: &Path, lock: Option<&mut Lock>) -> Result<Detached> {
    if let Ok(text) = std::fs::read_to_string(pid_file)
        && let Ok(pid) = text.trim().parse::<i32>()
        && pid > 1
        && std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .is_ok_and(|c| c.trim() == "pidwatch")
    {
        return Err(Error::Config(format!(
            "pidwatch is already running as PID {pid} (PID file {})",
            pid_file.display()
        )));
    }
    let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| Error::CannotCheck(format!("pipe2: {e}")))?;
    match daemonize::Daemonize::new()
        .working_directory("/")
        .umask(0o022)
        .execute()
    {
        daemonize::Outcome::Parent(Ok(_)) => {
            drop(write);
            let mut text = String::new();
            use std::io::Read;
            let _ = std::fs::File::from(read).read_to_string(&mut text);
            let (code, message) = text.trim().split_once(' ').unwrap_or(("", ""));
            match code.parse::<i32>() {
                Ok(EXIT_OK) => Ok(Detached::Parent(EXIT_OK)),
                Ok(code) => {
                    crate::output::print_stderr(&format!("pidwatch: error: {message}"));
                    Ok(Detached::Parent(code))
                }
                Err(_) => Err(Error::CannotCheck(
                    "the daemon exited before it was ready".into(),
                )),
            }
        }
        daemonize::Outcome::Parent(Err(e)) => {
            Err(Error::CannotCheck(format!("cannot detach: {e}")))
        }
        daemonize::Outcome::Child(result) => {
            drop(read);
            let mut readiness = Readiness(Some(std::fs::File::from(write)));
            let pid = std::process::id();
            let started = result
                .map_err(|e| Error::CannotCheck(format!("cannot detach: {e}")))
                .and_then(|_| match lock {
                    Some(lock) => lock.write_pid(pid),
                    None => Ok(()),
                })
                .and_then(|_| {
                    write_atomically(pid_file, &format!("{pid}\n"))
                        .map_err(|e| Error::io("writing", pid_file, e))
                });
            match started {
                Ok(()) => Ok(Detached::Daemon(readiness)),
                Err(e) => {
                    readiness.report(e.exit_code(), &e.to_string());
                    Err(e)
                }
            }
        }
    }
}

/// Writes a file (mode 0644) through a temp file of
/// unpredictable name in the same folder and a rename, so that a reader sees
/// the old content or the whole new one; see
/// [`crate::store::safe_fs::write_atomically`].
///
/// Errors: `path` is a symlink (a [`crate::store::safe_fs::SymlinkRefused`]
/// naming it; its target is not touched); the folder or temp file cannot be
/// created, written or renamed.
pub fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    crate::store::safe_fs::write_atomically(path, text.as_bytes(), 0o644)
}

/// Removes the daemon's PID file if it still names this process.
pub fn remove_own_pid_file(path: &Path) {
    let mine = std::process::id().to_string();
    if std::fs::read_to_string(path).is_ok_and(|t| t.trim() == mine) {
        let _ = std::fs::remove_file(path);
    }
}

//! The files pidwatch writes and reads, as untrusted input: symlinks planted
//! at the names of the files it writes are refused, never written through;
//! the task DB is followed when it is replaced or removed.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::util::*;

const LIMIT: Duration = Duration::from_secs(15);

/// What the victim of a planted symlink holds, before and after.
const VICTIM: &str = "precious: pidwatch must not write here\n";

/// A fixture with one running stream `W`.
fn one_running_worker() -> Fixture {
    let mut fx = Fixture::new();
    fx.task("W", "in_progress", &[]);
    fx.live_worker("W");
    fx
}

/// Plants a symlink at `link` to a new victim file outside the orchestrator
/// dir, holding [`VICTIM`]; returns the victim.
fn plant(fx: &Fixture, link: &Path) -> PathBuf {
    let victim = fx.tmp.path().join(format!(
        "victim-of-{}",
        link.file_name().unwrap().to_string_lossy()
    ));
    fs::write(&victim, VICTIM).unwrap();
    symlink(&victim, link).unwrap();
    victim
}

fn assert_untouched(victim: &Path, link: &Path) {
    assert_eq!(
        fs::read_to_string(victim).unwrap(),
        VICTIM,
        "{} was written through the symlink {}",
        victim.display(),
        link.display()
    );
    assert!(
        fs::symlink_metadata(link).unwrap().is_symlink(),
        "{} is still the symlink",
        link.display()
    );
}

fn refusal(link: &Path) -> String {
    format!(
        "refusing to write {}: it is a symbolic link",
        link.display()
    )
}

/// Runs pidwatch with `args`; returns (exit code, stderr).
fn run(fx: &Fixture, args: &[&str]) -> (i32, String) {
    let out = fx.cmd().args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_symlinked_lock_file_is_refused_and_its_target_untouched() {
    let fx = one_running_worker();
    let lock = fx.dir.join("pidwatch.lock");
    let victim = plant(&fx, &lock);
    let (code, err) = run(&fx, &["check", "--auto-restart"]);
    assert_eq!(code, 2, "a configuration problem: {err}");
    assert!(err.contains(&refusal(&lock)), "{err}");
    assert_untouched(&victim, &lock);

    // A dangling symlink would have its target created.
    fs::remove_file(&lock).unwrap();
    fs::remove_file(&victim).unwrap();
    symlink(&victim, &lock).unwrap();
    let (code, err) = run(&fx, &["check", "--auto-restart"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains(&refusal(&lock)), "{err}");
    assert!(!victim.exists(), "the lock was created through the symlink");
}

#[test]
fn a_symlinked_monitor_log_is_refused_and_its_target_untouched() {
    let fx = one_running_worker();
    let log = fx.dir.join("logs/monitor.log");
    let victim = plant(&fx, &log);

    // A one-shot check goes on without its log, and says why.
    let (code, err) = run(&fx, &["check"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("warning: cannot open"), "{err}");
    assert!(err.contains(&refusal(&log)), "{err}");
    assert_untouched(&victim, &log);

    // The monitor does not start without it.
    let mut monitor = fx.monitor(&["--interval", "0.2"]);
    let (code, out) = monitor.wait_exit(LIMIT);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains(&refusal(&log)), "{out}");
    assert_untouched(&victim, &log);
}

#[test]
fn a_symlinked_state_db_or_side_file_is_refused_and_its_target_untouched() {
    let fx = one_running_worker();
    for name in [
        "pidwatch.db",
        "pidwatch.db-wal",
        "pidwatch.db-shm",
        "pidwatch.db-journal",
    ] {
        let link = fx.dir.join(name);
        let victim = plant(&fx, &link);
        let (code, err) = run(&fx, &["check", "--auto-restart"]);
        assert_eq!(code, 2, "{name}: {err}");
        assert!(err.contains(&refusal(&link)), "{name}: {err}");
        // Commands that only read it refuse it too: SQLite would still write.
        let (code, err) = run(&fx, &["status"]);
        assert_eq!(code, 2, "{name}: {err}");
        assert!(err.contains(&refusal(&link)), "{name}: {err}");
        assert_untouched(&victim, &link);
        fs::remove_file(&link).unwrap();
    }
    // With the symlinks gone, the state DB is created as usual.
    let (code, err) = run(&fx, &["check", "--auto-restart"]);
    assert_eq!(code, 0, "{err}");
    assert!(fx.dir.join("pidwatch.db").is_file());
}

/// The processes whose command line mentions a string (a daemon runs from
/// `/`, out of the fixture's reach); SIGKILLed when dropped.
struct Mentioning(String);

impl Mentioning {
    fn pids(&self) -> Vec<i32> {
        let me = std::process::id() as i32;
        all_pids()
            .into_iter()
            .filter(|p| *p != me)
            .filter(|pid| {
                fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&self.0))
            })
            .collect()
    }
}

impl Drop for Mentioning {
    fn drop(&mut self) {
        self.pids().into_iter().for_each(kill9);
    }
}

#[test]
fn a_symlinked_daemon_pid_file_is_refused_and_its_target_untouched() {
    let fx = one_running_worker();
    let pid_file = fx.tmp.path().join("pidwatch.pid");
    let victim = plant(&fx, &pid_file);
    let daemons = Mentioning(pid_file.display().to_string());
    let (code, err) = run(
        &fx,
        &[
            "run",
            "--auto-restart",
            "--daemon",
            "--pid-file",
            pid_file.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains(&refusal(&pid_file)), "{err}");
    assert_untouched(&victim, &pid_file);
    // The daemon that could not write its PID file gave up.
    wait_for("the daemon to exit", LIMIT, || daemons.pids().is_empty());
    let leftovers: Vec<_> = fs::read_dir(fx.tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
}

/// The verdict the state DB last recorded for `worker`.
fn recorded_verdict(fx: &Fixture, worker: &str) -> Option<String> {
    let conn = rusqlite::Connection::open_with_flags(
        fx.dir.join("pidwatch.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .ok()?;
    conn.query_row(
        "SELECT last_verdict FROM workers WHERE worker = ?1",
        [worker],
        |r| r.get(0),
    )
    .ok()?
}

/// A fixture with one stream `W` running (a `sleep` the test started), its
/// task DB in rollback-journal mode.
///
/// The task DB is replaced by renaming a file over it. Under WAL, the old
/// file's `-wal` would stay behind and SQLite would read its frames into the
/// new file (true of any reader, not only pidwatch), so these tests leave
/// WAL out of it.
fn replaceable_task_db() -> (Fixture, i32) {
    let mut fx = Fixture::new();
    fx.task("W", "in_progress", &[]);
    let pid = fx.live_worker("W");
    rusqlite::Connection::open(&fx.tasks_db)
        .unwrap()
        .pragma_update(None, "journal_mode", "DELETE")
        .unwrap();
    (fx, pid)
}

#[test]
fn a_replaced_task_db_is_read_again_and_its_completed_stream_not_restarted() {
    let (mut fx, pid) = replaceable_task_db();
    let monitor = fx.monitor(&[
        "--auto-restart",
        "--restart-delay",
        "0",
        "--interval",
        "0.2",
        "--worker-command",
        WORKER,
    ]);
    fx.wait_first_pass();

    // A copy in which W's work is done replaces the task DB.
    let new = fx.tasks_db.with_extension("db.new");
    fs::copy(&fx.tasks_db, &new).unwrap();
    rusqlite::Connection::open(&new)
        .unwrap()
        .execute(
            "UPDATE tasks SET status = 'completed' \
             WHERE json_extract(metadata, '$.streamId') = 'W'",
            [],
        )
        .unwrap();
    fs::rename(&new, &fx.tasks_db).unwrap();
    let reopened = format!(
        "[WARNING] task DB {} was replaced; reopened",
        fx.tasks_db.display()
    );
    wait_for("the monitor to reopen the task DB", LIMIT, || {
        fx.monitor_log().contains(&reopened)
    });
    assert_eq!(fx.monitor_log().matches(&reopened).count(), 1);

    // W dies: it is complete, so the monitor records it so and leaves it.
    kill9(pid);
    fx.procs.clear(); // reaps it
    wait_for("W to be recorded completed", LIMIT, || {
        recorded_verdict(&fx, "W").as_deref() == Some("completed")
    });
    let log = fx.monitor_log();
    assert!(!log.contains("Restarting worker W"), "{log}");
    assert!(
        !fx.history()
            .iter()
            .any(|(w, kind)| w == "W" && kind == "restart_attempted"),
        "{:?}",
        fx.history()
    );
    assert_eq!(fx.pid_in_file("W"), Some(pid), "no new PID file");
    assert!(is_alive(monitor.pid), "{}", monitor.output());
}

#[test]
fn a_removed_task_db_fails_the_checks_until_it_is_back() {
    let (fx, _pid) = replaceable_task_db();
    let mut monitor = fx.monitor(&[
        "--auto-restart",
        "--restart-delay",
        "0",
        "--interval",
        "0.2",
        "--worker-command",
        WORKER,
    ]);
    fx.wait_first_pass();

    let backup = fx.tasks_db.with_extension("db.backup");
    fs::copy(&fx.tasks_db, &backup).unwrap();
    fs::remove_file(&fx.tasks_db).unwrap();
    let failed = format!(
        "[ERROR] Check failed: task DB {}: disappeared",
        fx.tasks_db.display()
    );
    wait_for("the monitor to say it could not check", LIMIT, || {
        fx.monitor_log().contains(&failed)
    });
    assert!(is_alive(monitor.pid), "{}", monitor.output());

    // Back from the backup: another file, read from now on.
    fs::rename(&backup, &fx.tasks_db).unwrap();
    wait_for("the checks to work again", LIMIT, || {
        fx.monitor_log().contains("Checks work again")
    });
    let log = fx.monitor_log();
    assert_eq!(log.matches(&failed).count(), 1, "logged once: {log}");
    assert!(
        log.contains(&format!(
            "task DB {} was replaced; reopened",
            fx.tasks_db.display()
        )),
        "{log}"
    );
    assert!(!log.contains("Restarting worker"), "{log}");

    monitor.signal(nix::sys::signal::Signal::SIGTERM);
    let (code, out) = monitor.wait_exit(LIMIT);
    assert_eq!(code, Some(0), "{out}");
}

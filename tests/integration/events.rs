//! Event-driven detection in `pidwatch run`: pidfds, inotify, the sweep as
//! the fallback, and no descriptor leak.

use std::fs;
use std::time::Duration;

use crate::util::*;

const LIMIT: Duration = Duration::from_secs(20);

fn open_fds(pid: i32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count()
}

#[test]
fn a_replaced_pid_file_is_seen_at_once_and_its_new_process_watched() {
    let mut fx = Fixture::new();
    fx.task("W", "in_progress", &[]);
    let wrapper = fx.start_worker("W", WORKER);
    let _monitor = fx.monitor(&[
        "--auto-restart",
        "--interval",
        "3600",
        "--worker-command",
        WORKER,
    ]);
    fx.wait_first_pass();
    // Another live process takes over the PID file (written now, so it is
    // the worker): the monitor must watch it instead of the old one.
    let other = Proc::sleep();
    let tmp = fx.dir.join("pids/.W.tmp");
    fs::write(&tmp, format!("{}\n", other.pid)).unwrap();
    fs::rename(&tmp, fx.pidfile_path("W")).unwrap();
    // Stopping the old wrapper is no death: the file names `other`.
    kill9(wrapper);
    fx.reap(wrapper);
    // Its death is: seen through the pidfd opened after the inotify event.
    let pid = other.pid;
    drop(other);
    let new = fx.wait_restarted("W", pid, LIMIT);
    assert_ne!(new, wrapper);
    let log = fx.monitor_log();
    assert_eq!(log.matches("Restarting worker W").count(), 1, "{log}");
}

#[test]
fn without_pidfds_the_sweep_alone_sees_deaths_and_says_so_once() {
    let mut fx = Fixture::new();
    fx.task("W", "in_progress", &[]);
    let wrapper = fx.start_worker("W", WORKER);
    let _monitor = fx.monitor_with(
        &[
            "--auto-restart",
            "--interval",
            "1",
            "--worker-command",
            WORKER,
        ],
        &[("PIDWATCH_TEST_NO_PIDFD", "1")],
    );
    fx.wait_first_pass();
    // SIGKILL leaves the PID file as it was: no inotify event, no pidfd.
    kill9(wrapper);
    fx.reap(wrapper);
    fx.wait_restarted("W", wrapper, LIMIT);
    let log = fx.monitor_log();
    let notes = log
        .matches("pidfd_open is not supported by this kernel (ENOSYS)")
        .count();
    assert_eq!(notes, 1, "{log}");
}

#[test]
fn a_thousand_restarts_leak_no_descriptor() {
    let mut fx = Fixture::new();
    fx.task("W", "in_progress", &[]);
    let first = fx.start_worker("W", WORKER);
    let monitor = fx.monitor(&[
        "--auto-restart",
        "--restart-delay",
        "0",
        "--max-restarts",
        "100000",
        "--interval",
        "3600",
        "--worker-command",
        WORKER,
    ]);
    fx.wait_first_pass();
    let before = open_fds(monitor.pid);
    kill9(first);
    fx.reap(first);
    let mut pid = first;
    for _ in 0..1000 {
        pid = fx.wait_restarted("W", pid, LIMIT);
        kill9(pid);
    }
    pid = fx.wait_restarted("W", pid, LIMIT);
    // The one live worker is watched, as it was before.
    let mut after = 0;
    // No growth (a descriptor open for a moment when `before` was read,
    // the state DB's journal say, may be closed by now).
    wait_for("the descriptor count to settle", LIMIT, || {
        after = open_fds(monitor.pid);
        after <= before
    });
    assert!(
        after <= before,
        "descriptors before {before} and after 1,000 restarts {after}"
    );
    assert!(is_alive(pid));
}

/// User plus system CPU time of a process, in clock ticks (fields 14 and 15
/// of `/proc/<pid>/stat`).
fn cpu_ticks(pid: i32) -> u64 {
    let f = stat_fields(pid).unwrap();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

#[test]
fn a_failing_task_db_is_retried_with_backoff_not_in_a_busy_loop() {
    let mut fx = Fixture::new();
    fx.task("W", "in_progress", &[]);
    let wrapper = fx.start_worker("W", WORKER);
    let path = fx.tmp.path().join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(LIMIT)).unwrap();
    let socket = path.display().to_string();
    // Attempt 2 falls due 2 s after attempt 1: a due time that passes while
    // the task DB is failing.
    let monitor = fx.monitor_with(
        &[
            "--auto-restart",
            "--restart-delay",
            "1",
            "--worker-command",
            WORKER,
        ],
        &[("NOTIFY_SOCKET", &socket)],
    );
    fx.wait_first_pass();
    kill9(wrapper);
    fx.reap(wrapper);
    let second = fx.wait_restarted("W", wrapper, LIMIT);
    let db = rusqlite::Connection::open(&fx.tasks_db).unwrap();
    db.execute_batch("ALTER TABLE tasks RENAME TO tasks_away")
        .unwrap();
    kill9(second);
    // Each failed try says so in STATUS=; they must come at 1 s, 2 s, 4 s...
    let mut buf = [0u8; 4096];
    let mut tries = Vec::new();
    while tries.len() < 3 {
        let n = sock.recv(&mut buf).expect("a STATUS= datagram");
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        if text.contains("checks failing since") {
            tries.push((std::time::Instant::now(), cpu_ticks(monitor.pid)));
        }
    }
    let (first, last) = (tries[0], tries[2]);
    let elapsed = last.0 - first.0;
    assert!(
        elapsed >= Duration::from_millis(2500),
        "tries 1 to 3 came {elapsed:?} apart"
    );
    let spent = last.1 - first.1;
    assert!(
        spent < 50,
        "the monitor spun: {spent} ticks of CPU in {elapsed:?}"
    );
    let log = fx.monitor_log();
    assert_eq!(log.matches("Check failed").count(), 1, "logged once: {log}");
    db.execute_batch("ALTER TABLE tasks_away RENAME TO tasks")
        .unwrap();
    wait_for("recovery", LIMIT, || {
        fx.monitor_log().contains("Checks work again")
    });
    fx.wait_restarted("W", second, LIMIT);
}

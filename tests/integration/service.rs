//! The monitor as a service: sd_notify, journal output, --daemon; and the
//! commands around the state DB: status, history, reset, old schemas.

use std::fs;
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use rusqlite::Connection;
use serde_json::Value;

use crate::util::*;

const LIMIT: Duration = Duration::from_secs(15);

/// Receives datagrams until one contains every needle; returns all text seen.
fn receive_until(sock: &UnixDatagram, needles: &[&str]) -> String {
    let deadline = Instant::now() + LIMIT;
    let mut seen = String::new();
    let mut buf = vec![0u8; 4096];
    while !needles.iter().all(|n| seen.contains(n)) {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "timed out waiting for {needles:?}; got {seen:?}"
        );
        sock.set_read_timeout(Some(left)).unwrap();
        if let Ok(n) = sock.recv(&mut buf) {
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
            seen.push('\n');
        }
    }
    seen
}

#[test]
fn the_notify_socket_receives_ready_status_watchdog_reloading_and_stopping() {
    let mut fx = Fixture::new();
    fx.task("W", "in_progress", &[]);
    fx.live_worker("W");
    let path = fx.tmp.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    let socket = path.display().to_string();
    let mut monitor = fx.monitor_with(
        &["--interval", "3600"],
        &[("NOTIFY_SOCKET", &socket), ("WATCHDOG_USEC", "400000")],
    );

    let seen = receive_until(&sock, &["READY=1", "STATUS=1 running", "WATCHDOG=1"]);
    assert!(seen.contains("0 dead; 0 restart(s)"), "{seen}");
    // The watchdog goes on (after a pass each time), not just once.
    let again = receive_until(&sock, &["WATCHDOG=1"]);
    assert!(again.contains("WATCHDOG=1"));
    monitor.signal(Signal::SIGHUP);
    let reload = receive_until(&sock, &["RELOADING=1", "MONOTONIC_USEC=", "READY=1"]);
    assert!(
        reload.find("RELOADING=1") < reload.rfind("READY=1"),
        "{reload}"
    );
    monitor.signal(Signal::SIGTERM);
    receive_until(&sock, &["STOPPING=1"]);
    assert_eq!(monitor.wait_exit(LIMIT).0, Some(0));
}

#[test]
fn under_systemd_console_lines_carry_priorities_and_no_colour() {
    let mut fx = Fixture::new();
    fx.task("W", "in_progress", &[]);
    fx.ran_before("W"); // dead: a WARNING line
    let mut monitor = fx.monitor_with(&["--color", "always"], &[("JOURNAL_STREAM", "8:12345")]);
    wait_for("the first pass", LIMIT, || {
        fx.monitor_log().contains("Found 1 dead")
    });
    monitor.signal(Signal::SIGTERM);
    let (code, out) = monitor.wait_exit(LIMIT);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("<6>[INFO] Starting monitor daemon"), "{out}");
    assert!(
        out.contains("<4>[WARNING] Found 1 dead worker(s): W"),
        "{out}"
    );
    assert!(out.contains("<6>[INFO] Received shutdown signal"), "{out}");
    assert!(!out.contains('\u{1b}'), "no colour under systemd: {out:?}");
}

#[test]
fn daemon_mode_detaches_writes_its_pid_file_and_refuses_a_second() {
    let mut fx = Fixture::new();
    fx.task("W", "in_progress", &[]);
    fx.live_worker("W");
    let pid_file = fx.tmp.path().join("run/pidwatch.pid");
    let out = fx
        .cmd()
        .args(["run", "--daemon", "--pid-file"])
        .arg(&pid_file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let mut daemon = 0;
    wait_for("the daemon's PID file", LIMIT, || {
        daemon = fs::read_to_string(&pid_file)
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0);
        daemon > 0
    });
    struct Kill(i32);
    impl Drop for Kill {
        fn drop(&mut self) {
            kill_tree(self.0);
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.0), Signal::SIGKILL);
        }
    }
    let _guard = Kill(daemon);
    assert_eq!(
        fs::read_to_string(format!("/proc/{daemon}/comm"))
            .unwrap()
            .trim(),
        "pidwatch"
    );
    wait_for("the daemon's first pass", LIMIT, || {
        fx.monitor_log().contains("All workers healthy")
    });

    let second = fx
        .cmd()
        .args(["run", "--daemon", "--pid-file"])
        .arg(&pid_file)
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&second.stderr).contains(&daemon.to_string()));

    nix::sys::signal::kill(nix::unistd::Pid::from_raw(daemon), Signal::SIGTERM).unwrap();
    wait_for("the PID file to be removed", LIMIT, || !pid_file.exists());
    wait_for("the daemon to exit", LIMIT, || !is_alive(daemon));
    assert!(fx.monitor_log().contains("Received shutdown signal"));
}

#[test]
fn status_reports_uptime_resources_attempts_and_last_event() {
    let mut fx = Fixture::new();
    fx.task("Up", "in_progress", &[]);
    let pid = fx.live_worker("Up");
    fx.task("Down", "pending", &[]);
    fx.ran_before("Down");
    let out = fx.cmd().args(["status", "--json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let up = worker(&json, "Up");
    assert_eq!(up["verdict"], "running");
    assert_eq!(up["pid"], pid);
    assert!(up["uptime_seconds"].as_u64().is_some(), "{up}");
    assert!(up["rss_bytes"].as_u64().unwrap() > 0, "{up}");
    assert_eq!(up["attempts"], 0);
    assert_eq!(up["max_restarts"], 2);
    // The same shape as check --json, plus the status fields.
    let (_, check, _) = fx.check_json(&[]);
    for key in worker(&check, "Up").as_object().unwrap().keys() {
        assert!(up.get(key).is_some(), "status lacks {key}");
    }
    assert_eq!(json["summary"], check["summary"]);
    let text = fx
        .cmd()
        .args(["status", "--color", "never"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("UPTIME") && text.contains("RESTARTS") && text.contains("0/2"),
        "{text}"
    );
}

#[test]
fn an_old_state_db_is_read_and_a_newer_one_refused() {
    let mut fx = Fixture::new();
    for s in ["Stuck", "Flaky"] {
        fx.task(s, "in_progress", &[]);
        fx.ran_before(s);
    }
    let db = fx.dir.join("pidwatch.db");
    Connection::open(&db)
        .unwrap()
        .execute_batch(include_str!("../fixtures/state-v1.sql"))
        .unwrap();
    let (code, json, stderr) = fx.check_json(&[]);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(worker(&json, "Stuck")["verdict"], "given_up");
    assert_eq!(worker(&json, "Flaky")["verdict"], "dead", "1 attempt of 2");
    let history = fx
        .cmd()
        .args(["history", "Stuck", "--json"])
        .output()
        .unwrap();
    let events: Vec<Value> = serde_json::from_slice(&history.stdout).unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["dead_detected", "restart_attempted", "given_up"]);
    assert_eq!(events[0]["pid"], 12345);
    // reset writes to the old file without trouble.
    fx.cmd().args(["reset", "Stuck"]).assert().code(0);
    let (_, json, _) = fx.check_json(&[]);
    assert_eq!(worker(&json, "Stuck")["verdict"], "dead");
    fx.cmd().args(["reset", "Nobody"]).assert().code(2);

    Connection::open(&db)
        .unwrap()
        .execute_batch("PRAGMA user_version = 99;")
        .unwrap();
    let out = fx.cmd().arg("check").output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("schema version 99 is newer"), "{err}");
}

#[test]
fn the_wrapper_and_the_demo_ship_in_the_binary() {
    let fx = Fixture::new();
    let out = fx.cmd().arg("wrapper").output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        pidwatch::WRAPPER_SCRIPT
    );
    let demo = fx
        .cmd()
        .args(["demo", "--color", "never"])
        .timeout(Duration::from_secs(30))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&demo.stdout);
    assert_eq!(
        demo.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&demo.stderr)
    );
    assert!(
        text.contains("[SUCCESS] Worker Stream-B restarted"),
        "{text}"
    );
    assert!(
        text.contains("[SUCCESS] Worker Stream-C restarted"),
        "{text}"
    );
    assert!(text.contains("everything it started is stopped"), "{text}");
}

#[test]
fn a_daemon_that_cannot_start_says_so_on_the_terminal() {
    let mut fx = Fixture::new();
    fx.task("W", "in_progress", &[]);
    fx.live_worker("W");
    let db = fx.dir.join("pidwatch.db");
    Connection::open(&db)
        .unwrap()
        .execute_batch("CREATE TABLE x (y); PRAGMA user_version = 99;")
        .unwrap();
    let pid_file = fx.tmp.path().join("pidwatch.pid");
    let out = fx
        .cmd()
        .args(["run", "--auto-restart", "--daemon", "--pid-file"])
        .arg(&pid_file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("schema version 99 is newer"), "{err}");
    assert!(
        !pid_file.exists(),
        "no PID file of a daemon that is not running"
    );
}

#[test]
fn a_lost_terminal_does_not_stop_the_monitor() {
    let mut fx = Fixture::new();
    fx.task("W", "in_progress", &[]);
    let wrapper = fx.start_worker("W", WORKER);
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_pidwatch"));
    cmd.current_dir(&fx.project)
        .env("HOME", &fx.home)
        .args(["run", "--auto-restart", "--worker-command", WORKER])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let pid = child.id() as i32;
    struct Reap(std::process::Child);
    impl Drop for Reap {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    // Both ends of the console close, as when a terminal goes away.
    drop(child.stdout.take());
    drop(child.stderr.take());
    let mut child = Reap(child);
    fx.wait_first_pass();
    // Deaths make the monitor print (to the closed pipes) and act.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(wrapper), Signal::SIGKILL).unwrap();
    fx.reap(wrapper);
    let second = fx.wait_restarted("W", wrapper, LIMIT);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(second), Signal::SIGKILL).unwrap();
    fx.wait_restarted("W", second, LIMIT);
    assert!(
        child.0.try_wait().unwrap().is_none(),
        "the monitor is still running"
    );
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGTERM).unwrap();
    wait_for(
        "a clean exit",
        LIMIT,
        || matches!(child.0.try_wait(), Ok(Some(s)) if s.code() == Some(0)),
    );
}

#[test]
fn each_death_of_a_crash_looping_worker_is_journaled() {
    let mut fx = Fixture::new();
    fx.task("W", "in_progress", &[]);
    let mut pid = fx.start_worker("W", WORKER);
    let _monitor = fx.monitor(&[
        "--auto-restart",
        "--restart-delay",
        "0",
        "--max-restarts",
        "10",
        "--worker-command",
        WORKER,
    ]);
    fx.wait_first_pass();
    let first = pid;
    for _ in 0..3 {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL).unwrap();
        pid = fx.wait_restarted("W", pid, LIMIT);
        // Kill it only once the monitor counts the restart a success.
        let done = format!("Worker W restarted (PID: {pid})");
        wait_for("the restart to be confirmed", LIMIT, || {
            fx.monitor_log().contains(&done)
        });
    }
    fx.reap(first);
    wait_for("three deaths in the journal", LIMIT, || {
        fx.history()
            .iter()
            .filter(|(_, k)| k == "dead_detected")
            .count()
            == 3
    });
}

/// `status --json` of one worker restarted by pidwatch under `containment`,
/// whose worker burns some CPU before it sleeps.
fn status_of_a_busy_worker(containment: &str) -> Option<Value> {
    let mut fx = Fixture::new();
    fx.task("Busy", "in_progress", &[]);
    fx.ran_before("Busy");
    fs::create_dir_all(fx.work_dir("Busy")).unwrap();
    fx.install_wrapper();
    let burn = "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done; exec sleep 600";
    let out = fx
        .cmd()
        .env("PIDWATCH_CONTAINMENT", containment)
        .args(["check", "--auto-restart", "--worker-command", burn])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if containment == "cgroup" && out.status.code() == Some(2) {
        eprintln!("skipped: no cgroup can be had here: {stderr}");
        return None;
    }
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let wrapper = fx.wait_restarted("Busy", 0, Duration::from_secs(15));
    // The worker is past its busy loop once it is a sleep.
    wait_for("the worker to sleep", Duration::from_secs(30), || {
        all_pids().into_iter().any(|p| {
            stat_fields(p).is_some_and(|f| f[1] == wrapper.to_string())
                && fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "sleep")
        })
    });
    let out = fx.cmd().args(["status", "--json"]).output().unwrap();
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let busy = worker(&json, "Busy").clone();
    assert_eq!(busy["verdict"], "running", "{busy}");
    assert_eq!(busy["pid"], wrapper);
    let comms: Vec<&str> = busy["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["comm"].as_str().unwrap())
        .collect();
    assert!(
        comms.contains(&"sleep"),
        "the worker itself is listed: {busy}"
    );
    assert!(
        busy["processes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["pid"] == wrapper),
        "{busy}"
    );
    assert!(
        busy["incarnation"].as_str().is_some_and(|i| i.len() == 32),
        "{busy}"
    );
    Some(busy)
}

#[test]
fn status_shows_the_workers_own_processes_and_cpu_from_its_cgroup() {
    let Some(busy) = status_of_a_busy_worker("cgroup") else {
        return;
    };
    assert_eq!(busy["resources_from"], "cgroup", "{busy}");
    // The busy loop ran in the worker, not in the wrapper's bash: the
    // cgroup counts it, the wrapper alone would show next to nothing.
    assert!(
        busy["cpu_seconds"].as_f64().unwrap() >= 0.05,
        "the worker's CPU: {busy}"
    );
}

#[test]
fn status_shows_the_workers_own_processes_without_a_cgroup() {
    let busy = status_of_a_busy_worker("session").unwrap();
    assert_eq!(busy["resources_from"], "processes", "{busy}");
    assert!(busy["rss_bytes"].as_u64().unwrap() > 0, "{busy}");
}

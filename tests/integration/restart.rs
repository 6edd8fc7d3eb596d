//! Restarting, end to end with the real binary and the real wrapper.

use std::fs;
use std::time::{Duration, SystemTime};

use nix::sys::signal::Signal;

use crate::util::*;

const LIMIT: Duration = Duration::from_secs(15);

/// A fixture with one incomplete stream `W` running through the wrapper.
/// Returns the fixture and the wrapper's PID.
fn one_worker() -> (Fixture, i32) {
    let mut fx = Fixture::new();
    fx.task("W", "in_progress", &[]);
    let pid = fx.start_worker("W", WORKER);
    (fx, pid)
}

/// The worker of the wrapper `wrapper`: its child that leads a process
/// group of its own (not a passing `mv` of the wrapper's).
fn worker_of(wrapper: i32) -> i32 {
    let parent = wrapper.to_string();
    let mut found = None;
    wait_for("the wrapper's worker", LIMIT, || {
        found = all_pids().into_iter().find(|pid| {
            stat_fields(*pid)
                .is_some_and(|f| f.get(1) == Some(&parent) && f.get(2) == Some(&pid.to_string()))
        });
        found.is_some()
    });
    found.unwrap()
}

fn check_restart(fx: &Fixture, extra: &[&str]) -> (i32, String) {
    let out = fx
        .cmd()
        .args(["check", "--auto-restart", "--worker-command", WORKER])
        .args(extra)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout),
    )
}

#[test]
fn a_sigkilled_worker_comes_back_and_its_survivor_is_stopped() {
    let (mut fx, wrapper) = one_worker();
    let survivor = worker_of(wrapper);
    kill9(wrapper);
    fx.reap(wrapper);
    assert!(is_alive(survivor), "the worker outlives its killed wrapper");

    let (code, out) = check_restart(&fx, &[]);
    assert_eq!(code, 1, "dead workers exit 1 even when restarted: {out}");
    let new = fx.wait_restarted("W", wrapper, LIMIT);
    // Never two instances: the old worker was stopped before the spawn.
    wait_for("the survivor to be stopped", LIMIT, || !is_alive(survivor));
    let log = fs::read_to_string(fx.worker_log_path("W")).unwrap();
    assert_eq!(log.matches("Started:").count(), 2, "a new header: {log}");
    assert!(log.contains(&format!("PID: {new}")), "{log}");
    let monitor = fx.monitor_log();
    assert!(
        monitor.contains("[INFO] Restarting worker W (attempt 1/2)"),
        "{monitor}"
    );
    assert!(
        monitor.contains(&format!("[SUCCESS] Worker W restarted (PID: {new})")),
        "{monitor}"
    );
    assert!(
        monitor.contains("Stopped survivors of worker W"),
        "{monitor}"
    );
    let history = fx.history();
    for kind in [
        "dead_detected",
        "restart_attempted",
        "survivors_stopped",
        "restarted",
    ] {
        assert!(
            history.contains(&("W".into(), kind.into())),
            "{kind} in {history:?}"
        );
    }
    // The worker is healthy again.
    let (code, json, _) = fx.check_json(&[]);
    assert_eq!(code, 0);
    assert_eq!(worker(&json, "W")["pid"], new);
}

#[test]
fn the_restart_cap_holds_across_one_shot_runs_until_reset() {
    let (mut fx, first) = one_worker();
    kill9(first);
    fx.reap(first);
    let mut pid = first;
    for attempt in 1..=2 {
        let (code, out) = check_restart(&fx, &["--restart-delay", "0"]);
        assert_eq!(code, 1, "{out}");
        pid = fx.wait_restarted("W", pid, LIMIT);
        assert!(
            fx.monitor_log()
                .contains(&format!("Restarting worker W (attempt {attempt}/2)"))
        );
        kill9(pid);
    }
    wait_for("the last worker to die", LIMIT, || !is_alive(pid));
    let (code, out) = check_restart(&fx, &["--restart-delay", "0"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        fx.monitor_log()
            .contains("[ERROR] Worker W has reached max restart limit (2)")
    );
    assert!(!fx.monitor_log().contains("attempt 3/2"));
    let (_, json, _) = fx.check_json(&[]);
    assert_eq!(worker(&json, "W")["verdict"], "given_up");
    // The ERROR is logged once, not at every check.
    check_restart(&fx, &["--restart-delay", "0"]);
    assert_eq!(
        fx.monitor_log()
            .matches("has reached max restart limit")
            .count(),
        1
    );

    fx.cmd().args(["reset", "W"]).assert().code(0);
    assert!(fx.history().contains(&("W".into(), "reset".into())));
    let (code, _) = check_restart(&fx, &["--restart-delay", "0"]);
    assert_eq!(code, 1);
    fx.wait_restarted("W", pid, LIMIT);
    assert!(
        fx.monitor_log()
            .contains("Restarting worker W (attempt 1/2)")
    );
}

#[test]
fn backoff_is_respected_between_attempts() {
    let (mut fx, first) = one_worker();
    kill9(first);
    fx.reap(first);
    let (_, out) = check_restart(&fx, &["--restart-delay", "30"]);
    let second = fx.wait_restarted("W", first, LIMIT);
    kill9(second);
    wait_for("the worker to die", LIMIT, || !is_alive(second));
    // Attempt 2 is due 30 × 2 = 60 s after attempt 1: not yet.
    let (code, out2) = check_restart(&fx, &["--restart-delay", "30"]);
    assert_eq!(code, 1, "{out}{out2}");
    assert!(
        !fx.monitor_log().contains("attempt 2/2"),
        "{}",
        fx.monitor_log()
    );
    let attempts = fx
        .history()
        .iter()
        .filter(|(_, k)| k == "restart_attempted")
        .count();
    assert_eq!(attempts, 1);
    // Without a delay, it is due at once.
    check_restart(&fx, &["--restart-delay", "0"]);
    fx.wait_restarted("W", second, LIMIT);
    assert!(
        fx.monitor_log()
            .contains("Restarting worker W (attempt 2/2)")
    );
}

/// The processes of session `sid` that are alive.
fn live_members(sid: i32) -> Vec<i32> {
    let sid = sid.to_string();
    all_pids()
        .into_iter()
        .filter(|p| is_alive(*p) && stat_fields(*p).is_some_and(|f| f.get(3) == Some(&sid)))
        .collect()
}

/// A fixture whose worker W is dead, with a PID file naming `pid` and
/// written two minutes ago, before `pid` started.
fn reused_by(fx: &mut Fixture, pid: i32) {
    fx.task("W", "in_progress", &[]);
    fx.ran_before("W");
    fs::create_dir_all(fx.work_dir("W")).unwrap();
    fx.install_wrapper();
    let path = fx.pidfile("W", &format!("{pid}\n"));
    fx.set_mtime(&path, SystemTime::now() - Duration::from_secs(120));
}

#[test]
fn the_unrelated_session_behind_a_reused_pid_is_never_signalled() {
    let mut fx = Fixture::new();
    // The stranger leads a session with a member: stopping "survivors" of
    // its PID would hit both.
    let stranger = Proc::spawn(
        std::process::Command::new("setsid")
            .args(["sh", "-c", "sleep 600 & exec sleep 600"])
            .current_dir(&fx.project),
    );
    wait_for("the stranger's member", LIMIT, || {
        live_members(stranger.pid).len() == 2
    });
    reused_by(&mut fx, stranger.pid);

    let (code, out) = check_restart(&fx, &["--stop-timeout", "0"]);
    assert_eq!(code, 1, "{out}");
    let new = fx.wait_restarted("W", stranger.pid, LIMIT);
    assert_ne!(new, stranger.pid);
    assert_eq!(
        live_members(stranger.pid).len(),
        2,
        "the stranger's session lives on"
    );
    let log = fx.monitor_log();
    let note = format!(
        "PID {} of worker W now belongs to another process",
        stranger.pid
    );
    assert!(log.contains(&note), "{log}");
    assert!(!log.contains("Stopped survivors"), "{log}");
    drop(stranger);
}

#[test]
fn a_zombie_stranger_behind_a_reused_pid_is_not_taken_for_the_worker() {
    let mut fx = Fixture::new();
    // A session leader that exited unreaped (our zombie) while a member of
    // its session lives on.
    let zombie = Proc::spawn(
        std::process::Command::new("setsid")
            .args(["sh", "-c", "sleep 600 & exit 0"])
            .current_dir(&fx.project),
    );
    wait_for("the zombie leader", LIMIT, || {
        proc_state(zombie.pid) == Some('Z')
    });
    wait_for("its live member", LIMIT, || {
        live_members(zombie.pid).len() == 1
    });
    reused_by(&mut fx, zombie.pid);

    let (_, json, _) = fx.check_json(&[]);
    assert_eq!(
        worker(&json, "W")["reason"],
        "pid_reused",
        "identity before state"
    );
    let (code, out) = check_restart(&fx, &["--stop-timeout", "0"]);
    assert_eq!(code, 1, "{out}");
    fx.wait_restarted("W", zombie.pid, LIMIT);
    assert_eq!(
        live_members(zombie.pid).len(),
        1,
        "the stranger's member lives on"
    );
    assert!(
        !fx.monitor_log().contains("Stopped survivors"),
        "{}",
        fx.monitor_log()
    );
    drop(zombie);
}

#[test]
fn an_invalid_pid_file_is_reported_and_never_restarted_over() {
    let (fx, wrapper) = one_worker();
    // The live wrapper's PID file reached through a symlink: not to be
    // trusted, and not to be restarted over either (a second instance). Its
    // worker, found by its stream marker under a live wrapper, keeps it
    // running.
    let real = fx.tmp.path().join("W.pid");
    fs::rename(fx.pidfile_path("W"), &real).unwrap();
    std::os::unix::fs::symlink(&real, fx.pidfile_path("W")).unwrap();
    let (code, out) = check_restart(&fx, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("under a wrapper that its PID file does not name"),
        "{out}"
    );
    assert!(
        !fx.monitor_log().contains("Restarting worker W"),
        "{}",
        fx.monitor_log()
    );
    assert!(fx.history().iter().all(|(_, k)| k != "restart_attempted"));
    assert!(is_alive(wrapper));
    // With the worker gone too, the invalid PID file is reported, and still
    // not restarted over.
    kill_tree(wrapper);
    wait_for("W to be gone", LIMIT, || !is_alive(wrapper));
    let (code, out) = check_restart(&fx, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("W is not restarted while its PID file is invalid (symlink)"),
        "{out}"
    );
    assert!(fx.history().iter().all(|(_, k)| k != "restart_attempted"));
}

#[test]
fn a_wrapper_too_slow_to_write_its_pid_file_is_stopped() {
    let (mut fx, wrapper) = one_worker();
    kill9(wrapper);
    fx.reap(wrapper);
    // A wrapper that takes two seconds before it runs the real one.
    let slow = fx.dir.join("slow-wrapper.sh");
    fs::write(
        &slow,
        format!(
            "#!/bin/sh\nsleep 2\nexec {} \"$@\"\n",
            fx.install_wrapper().display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&slow, fs::Permissions::from_mode(0o755)).unwrap();
    let slow = slow.display().to_string();
    let (code, _) = check_restart(&fx, &["--wrapper", &slow, "--spawn-timeout", "0.3"]);
    assert_eq!(code, 1);
    let log = fx.monitor_log();
    assert!(
        log.contains("no PID file naming a live process within 0.3 s"),
        "{log}"
    );
    // Nothing of it is left to become a second instance later.
    let line = log.lines().find(|l| l.contains("wrapper PID")).expect(&log);
    let slow_pid: i32 = line
        .rsplit("wrapper PID ")
        .next()
        .and_then(|t| t.split_whitespace().next())
        .and_then(|t| t.parse().ok())
        .expect(line);
    wait_for("the slow wrapper's session to be gone", LIMIT, || {
        live_members(slow_pid).is_empty()
    });
    assert_eq!(
        fx.pid_in_file("W"),
        Some(wrapper),
        "it never wrote its PID file"
    );
}

#[test]
fn survivors_that_keep_forking_are_all_stopped() {
    let mut fx = Fixture::new();
    fx.task("W", "in_progress", &[]);
    let wrapper = fx.start_worker("W", "while :; do sleep 30 & sleep 0.005; done");
    wait_for("the worker's children", LIMIT, || {
        live_members(wrapper).len() > 5
    });
    kill9(wrapper);
    fx.reap(wrapper);
    let (code, out) = check_restart(&fx, &["--stop-timeout", "1"]);
    assert_eq!(code, 1, "{out}");
    fx.wait_restarted("W", wrapper, LIMIT);
    assert!(
        live_members(wrapper).is_empty(),
        "left: {:?}",
        live_members(wrapper)
    );
}

#[test]
fn a_missing_worktree_is_created_with_git_or_refused() {
    let mut fx = Fixture::new();
    fx.task("Feature", "in_progress", &[]);
    fx.ran_before("Feature");
    fx.install_wrapper();
    // Not a git repository: no restart, an error naming the folder.
    let (code, _) = check_restart(&fx, &[]);
    assert_eq!(code, 1);
    let log = fx.monitor_log();
    assert!(
        log.contains("[ERROR] Failed to restart worker Feature: work dir"),
        "{log}"
    );
    assert!(log.contains("is not a git repository"), "{log}");
    assert!(!fx.work_dir("Feature").exists(), "no empty folder is made");

    // A git repository: `git worktree add` on branch Feature.
    let git = |args: &[&str]| {
        let ok = std::process::Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@t", "-C"])
            .arg(&fx.project)
            .args(args)
            .output()
            .expect("this test needs git, which restarts use too: apt-get install git")
            .status
            .success();
        assert!(ok, "git {args:?}");
    };
    git(&["init", "-q"]);
    git(&["commit", "-q", "--allow-empty", "-m", "init"]);
    fx.cmd().args(["reset", "Feature"]).assert().code(0);
    let (code, out) = check_restart(&fx, &[]);
    assert_eq!(code, 1, "{out}");
    fx.wait_restarted("Feature", 0, LIMIT);
    assert!(fx.work_dir("Feature").join(".git").exists(), "a worktree");
    let branches = std::process::Command::new("git")
        .arg("-C")
        .arg(&fx.project)
        .args(["branch", "--list", "Feature"])
        .output()
        .expect("this test needs git: apt-get install git");
    assert!(String::from_utf8_lossy(&branches.stdout).contains("Feature"));
}

#[test]
fn dry_run_plans_but_does_nothing() {
    let (mut fx, wrapper) = one_worker();
    kill9(wrapper);
    fx.reap(wrapper);
    let (code, out) = check_restart(&fx, &["--dry-run"]);
    assert_eq!(code, 1);
    assert!(
        out.contains("[dry-run] would restart worker W (attempt 1/2)"),
        "{out}"
    );
    assert_eq!(fx.pid_in_file("W"), Some(wrapper), "untouched");
    assert!(fx.history().is_empty(), "nothing recorded");
}

#[test]
fn the_monitor_restarts_at_once_without_waiting_for_the_sweep() {
    let (mut fx, wrapper) = one_worker();
    let mut monitor = fx.monitor(&[
        "--auto-restart",
        "--interval",
        "3600",
        "--worker-command",
        WORKER,
    ]);
    fx.wait_first_pass();
    // A worker that exits on its own: the wrapper removes its PID file.
    let worker = worker_of(wrapper);
    kill9(worker);
    let second = fx.wait_restarted("W", wrapper, LIMIT);
    fx.reap(wrapper);
    // A wrapper killed outright: its pidfd tells.
    kill9(second);
    let third = fx.wait_restarted("W", second, LIMIT);
    assert_ne!(third, second);
    let log = fx.monitor_log();
    assert!(log.contains("Restarting worker W (attempt 1/2)"), "{log}");
    assert!(log.contains("Restarting worker W (attempt 2/2)"), "{log}");
    monitor.signal(Signal::SIGTERM);
    let (code, err) = monitor.wait_exit(LIMIT);
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn the_cap_holds_across_a_monitor_restart() {
    let (mut fx, wrapper) = one_worker();
    let args = [
        "--auto-restart",
        "--max-restarts",
        "1",
        "--restart-delay",
        "0",
        "--worker-command",
        WORKER,
    ];
    let mut monitor = fx.monitor(&args);
    fx.wait_first_pass();
    kill9(wrapper);
    fx.reap(wrapper);
    let second = fx.wait_restarted("W", wrapper, LIMIT);
    monitor.signal(Signal::SIGTERM);
    assert_eq!(monitor.wait_exit(LIMIT).0, Some(0));

    let _again = fx.monitor(&args);
    wait_for("the second monitor's pass", LIMIT, || {
        fx.monitor_log().matches("Starting monitor daemon").count() == 2
            && fx.monitor_log().matches("All workers healthy").count() >= 2
    });
    kill9(second);
    wait_for("the given-up error", LIMIT, || {
        fx.monitor_log()
            .contains("[ERROR] Worker W has reached max restart limit (1)")
    });
    assert!(!fx.monitor_log().contains("attempt 2/1"));
    assert!(
        fx.pid_in_file("W").filter(|p| is_alive(*p)).is_none(),
        "not restarted"
    );
}

#[test]
fn a_second_monitor_is_refused_and_named() {
    let (fx, _) = one_worker();
    let _first = fx.monitor(&["--auto-restart", "--worker-command", WORKER]);
    fx.wait_first_pass();
    let holder = fs::read_to_string(fx.dir.join("pidwatch.lock")).unwrap();
    for args in [
        vec!["run", "--auto-restart", "--lock-wait", "0.3"],
        vec!["check", "--auto-restart"],
    ] {
        let out = fx.cmd().args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("another pidwatch (PID {})", holder.trim())),
            "{err}"
        );
    }
    // A plain check reads only, and is allowed.
    fx.cmd().arg("check").assert().code(0);
}

#[test]
fn a_monitor_waits_for_a_lock_a_one_shot_check_holds() {
    let (fx, _) = one_worker();
    // Hold the lock as an acting check does, for a moment.
    let lock = fs::File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(fx.dir.join("pidwatch.lock"))
        .unwrap();
    let held = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusiveNonblock).unwrap();
    let mut monitor = fx.monitor(&["--auto-restart", "--worker-command", WORKER]);
    wait_for("the monitor to say it waits", LIMIT, || {
        monitor.output().contains("waiting up to 30 s")
    });
    assert!(!fx.monitor_log().contains("Starting monitor daemon"));
    drop(held);
    fx.wait_first_pass();
    monitor.signal(Signal::SIGTERM);
    assert_eq!(monitor.wait_exit(LIMIT).0, Some(0));
}

#[test]
fn sigterm_exits_zero_and_leaves_workers_running() {
    let (fx, wrapper) = one_worker();
    let mut monitor = fx.monitor(&["--auto-restart", "--worker-command", WORKER]);
    fx.wait_first_pass();
    monitor.signal(Signal::SIGTERM);
    let (code, err) = monitor.wait_exit(LIMIT);
    assert_eq!(code, Some(0), "{err}");
    assert!(fx.monitor_log().contains("[INFO] Received shutdown signal"));
    assert!(is_alive(wrapper), "workers survive the monitor");
    assert!(
        fx.history()
            .contains(&("-".into(), "monitor_stopped".into()))
    );
}

#[test]
fn sighup_reopens_a_rotated_log() {
    let (fx, _) = one_worker();
    let _monitor = fx.monitor(&["--worker-command", WORKER]);
    let log = fx.dir.join("logs/monitor.log");
    fx.wait_first_pass();
    let rotated = fx.dir.join("logs/monitor.log.1");
    fs::rename(&log, &rotated).unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(_monitor.pid), Signal::SIGHUP).unwrap();
    wait_for("a new monitor.log", LIMIT, || {
        fs::read_to_string(&log).is_ok_and(|t| t.contains("Reloading: monitor.log reopened"))
    });
    let old = fs::read_to_string(&rotated).unwrap();
    assert!(
        old.contains("Starting monitor daemon") && !old.contains("Reloading"),
        "{old}"
    );
}

#[test]
fn the_monitor_leaves_no_zombie_children() {
    let (mut fx, wrapper) = one_worker();
    let monitor = fx.monitor(&[
        "--auto-restart",
        "--max-restarts",
        "10",
        "--restart-delay",
        "0",
        "--worker-command",
        WORKER,
    ]);
    fx.wait_first_pass();
    kill9(wrapper);
    fx.reap(wrapper);
    let mut pid = wrapper;
    for _ in 0..3 {
        pid = fx.wait_restarted("W", pid, LIMIT);
        // Its wrappers are the monitor's children: kill the worker so that
        // the wrapper exits normally and must be reaped.
        kill9(worker_of(pid));
    }
    fx.wait_restarted("W", pid, LIMIT);
    let me = monitor.pid.to_string();
    let zombies = || {
        all_pids()
            .into_iter()
            .filter(|pid| {
                stat_fields(*pid).is_some_and(|f| {
                    f.first().map(String::as_str) == Some("Z") && f.get(1) == Some(&me)
                })
            })
            .count()
    };
    wait_for("no zombie children of the monitor", LIMIT, || {
        zombies() == 0
    });
    // Each exit status is journaled once the wrapper is reaped.
    wait_for("three exit statuses in the journal", LIMIT, || {
        fx.history()
            .iter()
            .filter(|(_, k)| k == "child_exited")
            .count()
            >= 3
    });
}

#[test]
fn the_wrapper_is_spawned_as_the_contract_says() {
    let (mut fx, wrapper) = one_worker();
    kill9(wrapper);
    fx.reap(wrapper);
    let probe = "env > \"$PIDWATCH_WORK_DIR/env.txt\"; printf '%s' \"$PIDWATCH_PROMPT\" > \"$PIDWATCH_WORK_DIR/prompt.txt\"; exec sleep 600";
    let out = fx
        .cmd()
        .env("NOTIFY_SOCKET", "/run/systemd/notify")
        .env("WATCHDOG_USEC", "1000000")
        .env("WATCHDOG_PID", "1")
        .env("LISTEN_FDS", "1")
        .env("LISTEN_PID", "1")
        .env("KEEP_ME", "yes")
        .args(["check", "--auto-restart", "--worker-command", probe])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let new = fx.wait_restarted("W", wrapper, LIMIT);
    let work = fx.work_dir("W");
    wait_for("the probe's files", LIMIT, || {
        work.join("prompt.txt").exists()
    });
    let env = fs::read_to_string(work.join("env.txt")).unwrap();
    for gone in [
        "NOTIFY_SOCKET",
        "WATCHDOG_USEC",
        "WATCHDOG_PID",
        "LISTEN_FDS",
        "LISTEN_PID",
    ] {
        assert!(
            !env.lines().any(|l| l.starts_with(&format!("{gone}="))),
            "{gone} leaked: {env}"
        );
    }
    assert!(env.contains("KEEP_ME=yes"), "the rest is inherited");
    let prompt = fs::read_to_string(work.join("prompt.txt")).unwrap();
    for needle in [
        "Stream: W",
        INITIATIVE,
        "Ship the thing",
        "TASK-0001",
        "Task TASK-0001",
        "(in_progress)",
    ] {
        assert!(
            prompt.contains(needle),
            "{needle:?} in the prompt: {prompt}"
        );
    }
    // A session of its own, stdio on /dev/null.
    let fields = stat_fields(new).unwrap();
    assert_eq!(fields[3], new.to_string(), "session leader");
    for fd in 0..3 {
        let target = fs::read_link(format!("/proc/{new}/fd/{fd}")).unwrap();
        assert_eq!(target, std::path::Path::new("/dev/null"), "fd {fd}");
    }
}

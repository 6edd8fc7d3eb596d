//! Incarnations, end to end: whatever PID files, the orchestrator and
//! crashes do, pidwatch never signals a process it has not proved to be a
//! worker's, and never lets a second worker of a stream run (DESIGN.md,
//! "Identity").
//!
//! Each scenario that spawns runs under both containments (`session` and
//! `cgroup`, through `PIDWATCH_CONTAINMENT`); the `cgroup` one is skipped
//! where no cgroup v2 subtree can be had. "Never two workers" is checked
//! at every poll of a window that ends at a later observable event.

use std::fs;
use std::process::Command;
use std::time::{Duration, SystemTime};

use nix::sys::signal::Signal;

use crate::util::*;

const LIMIT: Duration = Duration::from_secs(15);

/// `pidwatch run` with short timeouts and a fast sweep.
const RUN: [&str; 10] = [
    "--auto-restart",
    "--interval",
    "0.5",
    "--restart-delay",
    "0",
    "--stop-timeout",
    "1",
    "--spawn-timeout",
    "10",
    "--worker-command",
];

/// Two tests per scenario: `<scenario>::session` and `<scenario>::cgroup`.
macro_rules! under_both_containments {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            #[test]
            fn session() {
                super::$scenario("session");
            }

            #[test]
            fn cgroup() {
                super::$scenario("cgroup");
            }
        }
    )*};
}

under_both_containments!(
    a_pid_file_naming_a_foreign_zombie_session_leader,
    a_pid_file_naming_a_foreign_reaped_session_leader,
    a_pid_reused_within_the_start_time_tolerance,
    a_live_workers_pid_file_deleted_under_run,
    a_wrapper_outside_its_own_session_sigkilled,
    the_monitor_sigkilled_while_a_slow_wrapper_starts,
    a_deliberate_stop_is_not_a_crash,
    the_orchestrator_restarts_a_worker_during_the_backoff,
);

/// [`wait_for`] up to [`LIMIT`], showing monitor.log when it times out.
fn wait(fx: &Fixture, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + LIMIT;
    let mut pause = Duration::from_millis(1);
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {LIMIT:?} waiting for {what}; monitor.log:\n{}",
            fx.monitor_log()
        );
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// Whether `containment` can be had here. `cgroup` needs a cgroup v2
/// subtree pidwatch may write; without one the test says why and passes.
fn available(containment: &str) -> bool {
    if containment == "cgroup"
        && let Err(why) = pidwatch::observe::cgroup::Delegation::probe(true)
    {
        eprintln!("skipped: --containment cgroup cannot be had here: {why}");
        return false;
    }
    true
}

/// `pidwatch check --auto-restart` under `containment`, with a short stop
/// timeout, the test worker command and `extra`. Returns the exit code and
/// what it printed.
fn check_restart(fx: &Fixture, containment: &str, extra: &[&str]) -> (i32, String) {
    let out = fx
        .cmd()
        .env("PIDWATCH_CONTAINMENT", containment)
        .args(["check", "--auto-restart", "--stop-timeout", "1"])
        .args(["--worker-command", WORKER])
        .args(extra)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout),
    )
}

/// `pidwatch run` with [`RUN`] (and the test worker), `extra` and
/// `containment`.
fn monitor(fx: &Fixture, containment: &str, extra: &[&str]) -> Monitor {
    let mut args: Vec<&str> = RUN.to_vec();
    args.push(WORKER);
    args.extend(extra);
    fx.monitor_with(&args, &[("PIDWATCH_CONTAINMENT", containment)])
}

/// Asserts that at most one worker of each of `workers` lives, and at most
/// one incarnation of it; returns the live workers of the first.
fn at_most_one(fx: &Fixture, workers: &[&str]) -> Vec<i32> {
    let mut first = Vec::new();
    for (i, w) in workers.iter().enumerate() {
        let live = live_workers_of(fx, w);
        let ids = incarnations_alive(fx, w);
        assert!(
            live.len() <= 1 && ids.len() <= 1,
            "two workers of {w} at once: PIDs {live:?}, incarnations {ids:?}; monitor.log:\n{}",
            fx.monitor_log()
        );
        if i == 0 {
            first = live;
        }
    }
    first
}

/// Waits until exactly one worker of `worker` lives, never more meanwhile;
/// returns its PID and incarnation id.
fn one_worker(fx: &Fixture, worker: &str) -> (i32, String) {
    wait(fx, &format!("one live worker of {worker}"), || {
        at_most_one(fx, &[worker]).len() == 1
    });
    worker_processes(fx, worker).pop().unwrap()
}

/// Waits until exactly one worker of `worker` lives (never more
/// meanwhile), one that pidwatch started under `containment`: with
/// `cgroup`, in the cgroup of its own incarnation. Returns its PID and
/// incarnation id.
fn restarted_worker(fx: &Fixture, worker: &str, containment: &str) -> (i32, String) {
    let (pid, id) = one_worker(fx, worker);
    assert_contained(pid, worker, &id, containment);
    (pid, id)
}

/// With `cgroup` containment: process `pid` lives in the cgroup of
/// incarnation `id` of `worker` (`…/<worker>.<id>`).
fn assert_contained(pid: i32, worker: &str, id: &str, containment: &str) {
    if containment != "cgroup" {
        return;
    }
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    let own = text
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .unwrap_or_default();
    assert!(
        own.ends_with(&format!("/{worker}.{id}")),
        "PID {pid} is not in the cgroup of incarnation {id}: {text}"
    );
}

/// Waits until nothing of `worker` lives: neither `wrapper` nor a worker.
fn wait_none(fx: &Fixture, worker: &str, wrapper: i32) {
    wait(fx, &format!("nothing of {worker} to live"), || {
        !is_alive(wrapper) && live_workers_of(fx, worker).is_empty()
    });
}

/// A later full pass of a running monitor (past its first pass: SIGUSR1
/// is fatal before its handlers are in place): a PID file that names no
/// stream (`pids/<tag>.pid`) is created and SIGUSR1 asks for a sweep; the
/// sweep that reports it saw everything done before. At most one worker
/// of each of `workers` may live meanwhile.
fn later_sweep(fx: &Fixture, monitor: &Monitor, tag: &str, workers: &[&str]) {
    fs::write(fx.dir.join("pids").join(format!("{tag}.pid")), "1\n").unwrap();
    monitor.signal(Signal::SIGUSR1);
    let file = format!("{tag}.pid");
    wait(fx, &format!("a sweep that sees {file}"), || {
        at_most_one(fx, workers);
        fx.monitor_log()
            .lines()
            .any(|l| l.contains(&file) && l.contains("names no stream"))
    });
}

/// The live processes of session `sid`, in PID order.
fn session_members(sid: i32) -> Vec<i32> {
    let sid = sid.to_string();
    let mut found: Vec<i32> = all_pids()
        .into_iter()
        .filter(|p| is_alive(*p) && stat_fields(*p).is_some_and(|f| f.get(3) == Some(&sid)))
        .collect();
    found.sort();
    found
}

/// When process `pid` started, as `/proc` tells it: `btime` plus field 22
/// of its stat in clock ticks.
fn start_time(pid: i32) -> SystemTime {
    let stat = fs::read_to_string("/proc/stat").unwrap();
    let btime: u64 = stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|t| t.trim().parse().ok())
        .unwrap();
    let ticks: u64 = stat_fields(pid).unwrap()[19].parse().unwrap();
    let per_second = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .unwrap()
        .unwrap() as u64;
    SystemTime::UNIX_EPOCH
        + Duration::from_secs(btime)
        + Duration::from_millis(ticks * 1000 / per_second)
}

/// `setsid sh -c <script>` in the project folder: a stranger leading its
/// own session (killed and reaped with its guard; its members are killed
/// with the fixture).
fn stranger(fx: &Fixture, script: &str) -> Proc {
    Proc::spawn(
        Command::new("setsid")
            .args(["sh", "-c", script])
            .current_dir(&fx.project),
    )
}

/// A fixture with stream `W` started by the orchestrator and then gone
/// entirely: its wrapper SIGKILLed and reaped, its worker SIGKILLed. Its
/// PID file still names the dead wrapper.
fn gone_worker() -> Fixture {
    let mut fx = Fixture::new();
    fx.task("W", "in_progress", &[]);
    let wrapper = fx.start_worker("W", WORKER);
    let (worker, _) = one_worker(&fx, "W");
    kill9(wrapper);
    fx.reap(wrapper);
    kill9(worker);
    wait_none(&fx, "W", wrapper);
    fx
}

/// Scenario 1: W's PID file names a stranger that leads a session of its
/// own, then exits. `reap`: the leader is reaped (its PID names nothing,
/// its session id lives on in its members); else it stays a zombie.
fn foreign_session_leader(containment: &str, reap: bool) {
    if !available(containment) {
        return;
    }
    let fx = gone_worker();
    let mut leader = stranger(&fx, "sleep 600 & sleep 600 & exec sleep 1");
    let pid = leader.pid;
    // The leader's session but the leader.
    let members = || -> Vec<i32> {
        session_members(pid)
            .into_iter()
            .filter(|p| *p != pid)
            .collect()
    };
    wait(&fx, "the stranger's two members", || members().len() == 2);
    let sleeps = members();
    fx.pidfile("W", &format!("{pid}\n"));
    if reap {
        leader.reap();
    } else {
        wait(&fx, "the stranger's leader to be a zombie", || {
            proc_state(pid) == Some('Z')
        });
    }

    let (code, json, _) = fx.check_json(&[]);
    assert_eq!(code, 1, "{json}");
    let w = worker(&json, "W");
    assert_eq!(w["verdict"], "dead", "{w}");
    let reason = if reap { "no_such_process" } else { "zombie" };
    assert_eq!(w["reason"], reason, "{w}");

    let (code, out) = check_restart(&fx, containment, &["--restart-delay", "0"]);
    assert_eq!(code, 1, "{out}");
    let new = fx.wait_restarted("W", pid, LIMIT);
    assert_ne!(new, pid);
    restarted_worker(&fx, "W", containment);
    for p in &sleeps {
        assert!(is_alive(*p), "the stranger's member {p} was signalled");
    }
    assert_eq!(members(), sleeps);
    let log = fx.monitor_log();
    assert!(!log.contains("Stopped survivors"), "{log}");
    assert!(log.contains("[SUCCESS] Worker W restarted"), "{log}");
}

fn a_pid_file_naming_a_foreign_zombie_session_leader(containment: &str) {
    foreign_session_leader(containment, false);
}

fn a_pid_file_naming_a_foreign_reaped_session_leader(containment: &str) {
    foreign_session_leader(containment, true);
}

/// Scenario 2: W's PID was reused by a stranger that started half a second
/// after the PID file was written, within the start-time tolerance: only
/// its command line tells it is not the worker.
fn a_pid_reused_within_the_start_time_tolerance(containment: &str) {
    if !available(containment) {
        return;
    }
    let fx = gone_worker();
    let stranger = stranger(&fx, "sleep 600 & exec sleep 600");
    let pid = stranger.pid;
    wait(&fx, "the stranger's member", || {
        session_members(pid).len() == 2
    });
    let session = session_members(pid);
    let path = fx.pidfile("W", &format!("{pid}\n"));
    fx.set_mtime(&path, start_time(pid) - Duration::from_millis(500));

    let (code, json, _) = fx.check_json(&[]);
    assert_eq!(code, 1, "{json}");
    let w = worker(&json, "W");
    assert_eq!(w["verdict"], "dead", "{w}");
    assert_eq!(w["reason"], "not_the_worker", "{w}");

    let (code, out) = check_restart(&fx, containment, &["--restart-delay", "0"]);
    assert_eq!(code, 1, "{out}");
    fx.wait_restarted("W", pid, LIMIT);
    restarted_worker(&fx, "W", containment);
    assert_eq!(session_members(pid), session, "the stranger lives on");
    let log = fx.monitor_log();
    assert!(!log.contains("Stopped survivors"), "{log}");
    assert!(
        log.contains(&format!(
            "PID {pid} of worker W now belongs to another process"
        )),
        "{log}"
    );
}

/// Scenario 3: the PID file of a live worker is deleted under `run`. It is
/// still running; a warning says the PID file is missing, and no second
/// worker is started.
fn a_live_workers_pid_file_deleted_under_run(containment: &str) {
    if !available(containment) {
        return;
    }
    let mut fx = Fixture::new();
    fx.task("W", "in_progress", &[]);
    let wrapper = fx.start_worker("W", WORKER);
    let first = one_worker(&fx, "W");
    let monitor = monitor(&fx, containment, &[]);
    // Its first pass observed W with its PID file.
    fx.wait_first_pass();

    fs::remove_file(fx.pidfile_path("W")).unwrap();
    wait(&fx, "the warning about the missing PID file", || {
        at_most_one(&fx, &["W"]);
        fx.monitor_log()
            .contains("[WARNING] PID file of worker W is missing")
    });
    later_sweep(&fx, &monitor, "later", &["W"]);
    assert_eq!(worker_processes(&fx, "W"), vec![first]);
    assert!(is_alive(wrapper));
    let log = fx.monitor_log();
    assert!(!log.contains("Restarting worker W"), "{log}");
    let (_, json, _) = fx.check_json(&[]);
    assert_eq!(worker(&json, "W")["verdict"], "running", "{json}");
}

/// Scenario 4: the wrapper was started as `nohup worker-wrapper.sh … &`
/// starts it: in the session and process group of a parent shell, which
/// lives on. SIGKILLed, it leaves its worker behind; the worker is stopped
/// before the restart, and the parent shell is never signalled.
fn a_wrapper_outside_its_own_session_sigkilled(containment: &str) {
    if !available(containment) {
        return;
    }
    let mut fx = Fixture::new();
    fx.task("W", "in_progress", &[]);
    let wrapper_path = fx.install_wrapper();
    fs::create_dir_all(fx.work_dir("W")).unwrap();
    // The parent shell leads a session (so that a wrong signal to the
    // wrapper's session or group hits it, not the test runner); the
    // wrapper is its background job, in its group and session.
    let mut cmd = Command::new("setsid");
    cmd.arg("bash")
        .arg("-c")
        .arg("\"$0\" \"$@\" & wait; exec sleep 600")
        .arg(&wrapper_path)
        .arg("W")
        .arg(fx.pidfile_path("W"))
        .arg(fx.dir.join("logs"))
        .arg(fx.work_dir("W"))
        .arg(INITIATIVE)
        .arg("test prompt")
        .args(["--", "sh", "-c", WORKER])
        .current_dir(&fx.project);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PIDWATCH_") {
            cmd.env_remove(key);
        }
    }
    let shell = Proc::spawn(&mut cmd);
    let shell_pid = shell.pid;
    fx.procs.push(shell);
    let mut wrapper = 0;
    wait(&fx, "the wrapper's PID file", || {
        wrapper = fx.pid_in_file("W").unwrap_or(0);
        wrapper > 1 && wrapper != shell_pid && is_alive(wrapper)
    });
    let fields = stat_fields(wrapper).unwrap();
    assert_eq!(fields[2], shell_pid.to_string(), "the shell's group");
    assert_eq!(fields[3], shell_pid.to_string(), "the shell's session");
    let (orphan, old_id) = one_worker(&fx, "W");

    kill9(wrapper);
    wait(&fx, "the wrapper to die", || !is_alive(wrapper));
    assert!(is_alive(orphan), "the worker outlives its wrapper");
    let (code, out) = check_restart(&fx, containment, &["--restart-delay", "0"]);
    assert_eq!(code, 1, "{out}");
    wait(&fx, "the orphan to be stopped", || !is_alive(orphan));
    let (new, new_id) = restarted_worker(&fx, "W", containment);
    assert_ne!(new, orphan);
    assert_ne!(new_id, old_id, "a new incarnation");
    assert!(is_alive(shell_pid), "the parent shell was signalled");
    let log = fx.monitor_log();
    let stopped = log.find("Stopped survivors of worker W").expect(&log);
    let restarted = log.find("[SUCCESS] Worker W restarted").expect(&log);
    assert!(stopped < restarted, "stopped before the restart: {log}");
}

/// Scenario 5: the monitor is SIGKILLed while the wrapper of its restart
/// is still starting (a slow wrapper), and started again at once: the new
/// monitor takes the incarnation under way for what it is, and starts no
/// second one.
fn the_monitor_sigkilled_while_a_slow_wrapper_starts(containment: &str) {
    if !available(containment) {
        return;
    }
    let fx = gone_worker();
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
    let args = ["--wrapper", slow.as_str()];

    let mut first = monitor(&fx, containment, &args);
    wait(&fx, "the restart to begin", || {
        fx.monitor_log().contains("Restarting worker W")
    });
    // The slow wrapper is spawned (it sleeps for two seconds before it
    // becomes the real wrapper and writes its PID file): the monitor's
    // child, past its exec (`sh <script> W …`; before the exec, the child
    // still holds the monitor's lock, and shows the monitor's command line,
    // whose `--wrapper` names the script too).
    let mut starting = 0;
    wait(&fx, "the slow wrapper", || {
        starting = all_pids()
            .into_iter()
            .find(|p| {
                stat_fields(*p).is_some_and(|f| f[1] == first.pid.to_string())
                    && is_alive(*p)
                    && fs::read(format!("/proc/{p}/cmdline"))
                        .is_ok_and(|c| c.split(|b| *b == 0).nth(1) == Some(slow.as_bytes()))
            })
            .unwrap_or(0);
        starting > 0
    });
    first.signal(Signal::SIGKILL);
    first.wait_exit(LIMIT);
    assert!(
        fx.pid_in_file("W").is_none_or(|p| p != starting),
        "killed before the wrapper wrote its PID file"
    );

    let mut second = monitor(&fx, containment, &args);
    // (Only the second monitor logs it: the first found W dead.)
    wait(&fx, "the second monitor's first pass", || {
        if let Some(status) = second.child.as_mut().unwrap().try_wait().unwrap() {
            panic!("the second monitor exited ({status}): {}", second.output());
        }
        fx.monitor_log().contains("All workers healthy")
    });
    wait(&fx, "W to run again", || {
        at_most_one(&fx, &["W"]).len() == 1
            && fx.pid_in_file("W").is_some_and(|p| p > 1 && is_alive(p))
    });
    later_sweep(&fx, &second, "later", &["W"]);
    restarted_worker(&fx, "W", containment);
    assert_eq!(live_workers_of(&fx, "W").len(), 1);
    assert_eq!(incarnations_alive(&fx, "W").len(), 1);
    assert_eq!(
        fx.pid_in_file("W"),
        Some(starting),
        "the same wrapper; {:?}\n{}",
        fx.history(),
        fx.monitor_log()
    );
    let attempts = fx
        .history()
        .iter()
        .filter(|(w, k)| w == "W" && k == "restart_attempted")
        .count();
    assert_eq!(attempts, 1, "{:?}\n{}", fx.history(), fx.monitor_log());
}

/// Scenario 6: SIGTERM to a wrapper (the orchestrator's `stop`, which also
/// removes the PID file) is a deliberate stop, not restarted until
/// `pidwatch reset`; SIGKILL to another stream's wrapper is a crash,
/// restarted at once.
fn a_deliberate_stop_is_not_a_crash(containment: &str) {
    if !available(containment) {
        return;
    }
    let mut fx = Fixture::new();
    fx.task("W", "in_progress", &[]);
    fx.task("V", "in_progress", &[]);
    let w_wrapper = fx.start_worker("W", WORKER);
    let v_wrapper = fx.start_worker("V", WORKER);
    one_worker(&fx, "W");
    let (v_old, v_id) = one_worker(&fx, "V");
    let monitor = monitor(&fx, containment, &[]);
    fx.wait_first_pass();

    nix::sys::signal::kill(nix::unistd::Pid::from_raw(w_wrapper), Signal::SIGTERM).unwrap();
    let _ = fs::remove_file(fx.pidfile_path("W"));
    wait_none(&fx, "W", w_wrapper);
    fx.reap(w_wrapper);
    wait(&fx, "the end of W's incarnation", || {
        fx.monitor_log().contains("Worker W ended")
    });
    later_sweep(&fx, &monitor, "after-stop", &["W", "V"]);
    let (_, json, _) = fx.check_json(&[]);
    let w = worker(&json, "W");
    assert_eq!(w["verdict"], "stopped", "{w}");
    assert!(live_workers_of(&fx, "W").is_empty());
    assert!(
        !fx.monitor_log().contains("Restarting worker W"),
        "{}",
        fx.monitor_log()
    );

    kill9(v_wrapper);
    fx.reap(v_wrapper);
    wait(&fx, "V to be restarted", || {
        at_most_one(&fx, &["V", "W"]);
        worker_processes(&fx, "V")
            .first()
            .is_some_and(|(_, id)| *id != v_id)
    });
    assert!(!is_alive(v_old), "V's orphan was stopped");
    restarted_worker(&fx, "V", containment);
    later_sweep(&fx, &monitor, "after-crash", &["W", "V"]);
    assert!(live_workers_of(&fx, "W").is_empty(), "W stays stopped");
    assert!(
        !fx.monitor_log().contains("Restarting worker W"),
        "{}",
        fx.monitor_log()
    );

    fx.cmd().args(["reset", "W"]).assert().code(0);
    wait(&fx, "W to be restarted after the reset", || {
        at_most_one(&fx, &["W", "V"]);
        fx.monitor_log().contains("[SUCCESS] Worker W restarted")
    });
    restarted_worker(&fx, "W", containment);
    let (_, json, _) = fx.check_json(&[]);
    assert_eq!(worker(&json, "W")["verdict"], "running", "{json}");
}

/// Scenario 7: pidwatch restarted W (attempt 1); that wrapper is SIGKILLed,
/// its worker lives on; the orchestrator starts W itself while pidwatch's
/// backoff runs. The orchestrator's worker is adopted and left alone, the
/// orphan of the earlier incarnation is stopped.
fn the_orchestrator_restarts_a_worker_during_the_backoff(containment: &str) {
    if !available(containment) {
        return;
    }
    let mut fx = Fixture::new();
    fx.task("W", "in_progress", &[]);
    let first = fx.start_worker("W", WORKER);
    kill9(first);
    fx.reap(first);
    let (code, out) = check_restart(&fx, containment, &["--restart-delay", "0"]);
    assert_eq!(code, 1, "{out}");
    let restarted = fx.wait_restarted("W", first, LIMIT);
    let (orphan, orphan_id) = restarted_worker(&fx, "W", containment);
    kill9(restarted);
    wait(&fx, "pidwatch's wrapper to die", || !is_alive(restarted));
    assert!(is_alive(orphan));

    // The orchestrator starts W again, on its own.
    let theirs = fx.start_worker("W", WORKER);
    let mut adopted = (0, String::new());
    wait(
        &fx,
        "the orchestrator's worker",
        || match worker_processes(&fx, "W")
            .into_iter()
            .find(|(_, id)| *id != orphan_id)
        {
            Some(found) => {
                adopted = found;
                true
            }
            None => false,
        },
    );

    let (code, out) = check_restart(&fx, containment, &["--restart-delay", "60"]);
    assert_eq!(code, 0, "W runs: {out}");
    wait(&fx, "the orphan to be stopped", || !is_alive(orphan));
    assert!(is_alive(theirs), "the orchestrator's wrapper lives");
    assert_eq!(worker_processes(&fx, "W"), vec![adopted.clone()]);
    let log = fx.monitor_log();
    assert!(log.contains("Stopped survivors of worker W"), "{log}");
    assert!(log.contains("Adopted worker W"), "{log}");
    let attempts = fx
        .history()
        .iter()
        .filter(|(w, k)| w == "W" && k == "restart_attempted")
        .count();
    assert_eq!(attempts, 1, "no restart during the backoff: {log}");
}

/// Scenario 8: W's wrapper was SIGKILLed, its worker lives on; another
/// tool removed the stale PID file, and the worker log holds the header
/// only. W was started: it is dead (orphaned), not `not_started`.
#[test]
fn a_stale_pid_file_removed_while_the_orphan_lives_is_not_not_started() {
    let mut fx = Fixture::new();
    fx.task("W", "in_progress", &[]);
    let wrapper = fx.start_worker("W", WORKER);
    let (orphan, _) = one_worker(&fx, "W");
    kill9(wrapper);
    fx.reap(wrapper);
    assert!(is_alive(orphan));
    fs::remove_file(fx.pidfile_path("W")).unwrap();
    // The header: from the first rule to the second.
    let log_path = fx.worker_log_path("W");
    let text = fs::read_to_string(&log_path).unwrap();
    let mut header = String::new();
    let mut rules = 0;
    for line in text.lines() {
        header.push_str(line);
        header.push('\n');
        rules += usize::from(line.starts_with("====="));
        if rules == 2 {
            break;
        }
    }
    assert!(header.contains("Stream: W"), "{text}");
    fs::write(&log_path, &header).unwrap();

    let (code, json, _) = fx.check_json(&[]);
    assert_eq!(code, 1, "{json}");
    let w = worker(&json, "W");
    assert_eq!(w["verdict"], "dead", "{w}");
    assert_eq!(w["reason"], "orphaned", "{w}");
    assert!(is_alive(orphan), "a check signals nothing");
}

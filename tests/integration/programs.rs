//! Workers from a config file: `config check`, `init`, `start`, `stop`,
//! `run`, adopt mode, secrets. Real processes, the real binary.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;

use crate::util::{Monitor, is_alive, kill_processes_under, remove_cgroups_of, wait_for};

/// A folder with a `pidwatch.toml` whose state dir is `<tmp>/state`; every
/// process working under it is killed, and its cgroups removed, on drop.
/// Shared with the other modules of workers from a config file.
pub struct Programs {
    tmp: TempDir,
}

impl Drop for Programs {
    fn drop(&mut self) {
        kill_processes_under(self.tmp.path());
        remove_cgroups_of(&self.state().join("pidwatch.db"));
    }
}

impl Programs {
    pub fn new(config: &str) -> Programs {
        let tmp = tempfile::Builder::new()
            .prefix("pidwatch-programs")
            .tempdir()
            .unwrap();
        let p = Programs { tmp };
        p.write_config(config);
        p
    }

    pub fn path(&self) -> &Path {
        self.tmp.path()
    }

    pub fn config(&self) -> PathBuf {
        self.path().join("pidwatch.toml")
    }

    pub fn state(&self) -> PathBuf {
        self.path().join("state")
    }

    pub fn write_config(&self, body: &str) {
        fs::write(self.config(), format!("state_dir = \"state\"\n{body}")).unwrap();
    }

    pub fn cmd(&self) -> assert_cmd::Command {
        let mut cmd = assert_cmd::Command::new(env!("CARGO_BIN_EXE_pidwatch"));
        cmd.current_dir(self.path())
            .env("HOME", self.path().join("home"))
            .arg("--config")
            .arg(self.config())
            .timeout(Duration::from_secs(60));
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("PIDWATCH_") {
                cmd.env_remove(key);
            }
        }
        cmd
    }

    /// Runs pidwatch; returns (exit code, stdout, stderr).
    pub fn run(&self, args: &[&str]) -> (i32, String, String) {
        let out = self.cmd().args(args).output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    pub fn status(&self) -> Value {
        let (_, out, err) = self.run(&["status", "--json"]);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out} {err}"))
    }

    pub fn verdict(&self, id: &str) -> String {
        let status = self.status();
        crate::util::worker(&status, id)["verdict"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// The PID in the worker's PID file, when it names a live process.
    pub fn live_pid(&self, id: &str) -> Option<i32> {
        let text = fs::read_to_string(self.state().join(format!("pids/{id}.pid"))).ok()?;
        let pid: i32 = text.trim().parse().ok()?;
        (is_alive(pid) && crate::util::proc_state(pid) != Some('Z')).then_some(pid)
    }

    /// Live processes that work under this folder whose command line
    /// (arguments joined by spaces) is `needle`, or contains it when it
    /// ends with `…`.
    pub fn count(&self, needle: &str) -> usize {
        let (needle, partial) = match needle.strip_suffix('…') {
            Some(n) => (n, true),
            None => (needle, false),
        };
        crate::util::processes_under(self.path())
            .into_iter()
            .filter(|pid| crate::util::proc_state(*pid) != Some('Z'))
            .filter(|pid| {
                fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                    let line = String::from_utf8_lossy(&c).replace('\0', " ");
                    let line = line.trim_end();
                    if partial {
                        line.contains(needle)
                    } else {
                        line == needle
                    }
                })
            })
            .count()
    }

    /// pidwatch with `args` on this config, to spawn.
    pub fn pidwatch(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pidwatch"));
        cmd.current_dir(self.path())
            .env("HOME", self.path().join("home"))
            .args(["--config", &self.config().display().to_string()])
            .args(args);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("PIDWATCH_") {
                cmd.env_remove(key);
            }
        }
        cmd
    }

    pub fn monitor(&self) -> Monitor {
        Monitor::spawn(self.pidwatch(&["run"]), &self.path().join("monitor.out"))
    }
}

#[test]
fn config_check_reports_every_problem_with_its_place() {
    let p = Programs::new(
        "[worker.code]\ncommand = [\"sleep\", \"100\"]\nstop_timeout = \"ten\"\n\n\
         [worker.web]\ncommand = \"exec sleep 100\"\nstop_timout = 5\nrestart = \"sometimes\"\n",
    );
    let (code, _, err) = p.run(&["config", "check"]);
    assert_eq!(code, 2, "{err}");
    let file = p.config().display().to_string();
    assert!(
        err.contains(&format!(
            "{file}:4:16: worker.code.stop_timeout: expected seconds, found \"ten\""
        )),
        "{err}"
    );
    assert!(err.contains("worker.web.stop_timout"), "{err}");
    assert!(err.contains("did you mean `stop_timeout`"), "{err}");
    assert!(err.contains("worker.web.restart"), "{err}");
    // Any command that reads the file refuses it the same way.
    let (code, _, err) = p.run(&["check"]);
    assert_eq!(code, 2, "{err}");
    p.write_config("[worker.code]\ncommand = [\"sleep\", \"100\"]\n");
    let (code, out, err) = p.run(&["config", "check"]);
    assert_eq!(code, 0, "{out} {err}");
    assert!(out.contains("valid"), "{out}");
}

#[test]
fn init_writes_a_template_that_checks_and_never_overwrites() {
    let p = Programs::new("");
    let target = p.path().join("new.toml");
    let (code, out, err) = p.run(&["init", &target.display().to_string()]);
    assert_eq!(code, 0, "{out} {err}");
    let checked = assert_cmd::Command::new(env!("CARGO_BIN_EXE_pidwatch"))
        .current_dir(p.path())
        .env("HOME", p.path())
        .args(["--config", &target.display().to_string(), "config", "check"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&checked.stderr);
    assert_eq!(checked.status.code(), Some(0), "{err}");
    let before = fs::read(&target).unwrap();
    let (code, _, err) = p.run(&["init", &target.display().to_string()]);
    assert_eq!(code, 2);
    assert!(err.contains("exists"), "{err}");
    assert_eq!(fs::read(&target).unwrap(), before);
}

#[test]
fn a_command_that_needs_a_config_says_how_to_make_one() {
    let tmp = tempfile::tempdir().unwrap();
    let out = assert_cmd::Command::new(env!("CARGO_BIN_EXE_pidwatch"))
        .current_dir(tmp.path())
        .env("HOME", tmp.path())
        .env("XDG_CONFIG_HOME", tmp.path().join("xdg"))
        .env_remove("PIDWATCH_CONFIG")
        .args(["start", "--all"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("pidwatch init"), "{err}");
}

#[test]
fn start_runs_instances_after_what_they_depend_on_and_keeps_secrets() {
    let p = Programs::new(
        "[worker.db]\ncommand = [\"sleep\", \"1001\"]\n\
         ready = { command = \"test -e db.ready || { touch db.ready; exit 1; }\", interval = 0.05 }\n\n\
         [worker.app]\ncommand = \"echo app %i token=$API_TOKEN >&2; exec sleep 1002\"\n\
         instances = 2\ndepends_on = [\"db\"]\nenv = { API_TOKEN = \"hunter2-secret\", MODE = \"fast\" }\n",
    );
    let (code, out, err) = p.run(&["start", "--all"]);
    assert_eq!(code, 0, "{out} {err}");
    for id in ["db", "app@1", "app@2"] {
        assert!(p.live_pid(id).is_some(), "{id} runs");
    }
    // The dependency came first: its readiness probe passed (it made
    // db.ready) before the app instances were started.
    let db_started = fs::metadata(p.state().join("pids/db.pid"))
        .unwrap()
        .modified()
        .unwrap();
    let app_started = fs::metadata(p.state().join("pids/app@1.pid"))
        .unwrap()
        .modified()
        .unwrap();
    let ready_at = fs::metadata(p.path().join("db.ready"))
        .unwrap()
        .modified()
        .unwrap();
    assert!(db_started <= ready_at && ready_at <= app_started);
    wait_for("app@1's output", Duration::from_secs(10), || {
        fs::read_to_string(p.state().join("logs/app@1.log")).is_ok_and(|t| t.contains("app 1"))
    });
    let status = p.status();
    assert_eq!(crate::util::worker(&status, "app@2")["verdict"], "running");
    // The secret is the worker's own, never pidwatch's to show.
    let (_, logs, _) = p.run(&["logs", "app@1"]);
    assert!(logs.contains("token="), "{logs}");
    for text in [
        status.to_string(),
        fs::read_to_string(p.state().join("logs/monitor.log")).unwrap_or_default(),
        out,
        err,
    ] {
        assert!(!text.contains("hunter2-secret"), "{text}");
    }
    // Started twice, it is still one worker each.
    let (code, _, _) = p.run(&["start", "--all"]);
    assert_eq!(code, 0);
    assert_eq!(p.count("sleep 1002"), 2);
}

#[test]
fn start_goes_on_past_a_failure_and_says_it() {
    let p = Programs::new(
        "[worker.good]\ncommand = [\"sleep\", \"1003\"]\n\
         [worker.bad]\ncommand = [\"no-such-program-pidwatch\"]\n",
    );
    let (code, _, err) = p.run(&["start", "--all"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("bad failed to start") && err.contains("command not found"),
        "{err}"
    );
    assert!(p.live_pid("good").is_some());
    let (code, _, err) = p.run(&["start", "bad"]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = p.run(&["start", "nobody"]);
    assert_eq!(code, 2);
    assert!(err.contains("no worker \"nobody\""), "{err}");
}

#[test]
fn stop_kills_a_worker_that_ignores_sigterm_with_its_children_and_run_leaves_it_stopped() {
    let p = Programs::new(
        "[worker.stubborn]\ncommand = \"trap '' TERM; sleep 1004 & sleep 1004; wait\"\n\
         stop_timeout = 0.3\n",
    );
    let (code, _, err) = p.run(&["start", "stubborn"]);
    assert_eq!(code, 0, "{err}");
    wait_for("both sleeps", Duration::from_secs(10), || {
        p.count("sleep 1004") == 2
    });
    let (code, out, err) = p.run(&["stop", "stubborn"]);
    assert_eq!(code, 0, "{out} {err}");
    wait_for("nothing of it left", Duration::from_secs(10), || {
        p.count("sleep 1004") == 0 && p.count("trap…") == 0
    });
    assert_eq!(p.verdict("stubborn"), "stopped");
    // The monitor leaves a stopped worker stopped.
    let monitor = p.monitor();
    wait_for("the monitor's first pass", Duration::from_secs(20), || {
        monitor.output().contains("containment")
            && fs::read_to_string(p.state().join("logs/monitor.log"))
                .is_ok_and(|l| l.contains("Starting monitor"))
    });
    p.run(&["check"]);
    assert_eq!(p.count("sleep 1004"), 0, "{}", monitor.output());
    assert_eq!(p.verdict("stubborn"), "stopped");
    // start brings it back, through the monitor.
    let (code, _, err) = p.run(&["start", "stubborn"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(p.verdict("stubborn"), "running");
}

#[test]
fn run_starts_every_worker_and_restarts_a_killed_one_never_two() {
    let p = Programs::new(
        "[worker.w]\ncommand = [\"sleep\", \"1005\"]\ninstances = 3\nrestart_delay = 0\n",
    );
    let _monitor = p.monitor();
    wait_for("all three running", Duration::from_secs(20), || {
        ["w@1", "w@2", "w@3"]
            .iter()
            .all(|id| p.live_pid(id).is_some())
    });
    let victim = p.live_pid("w@2").unwrap();
    crate::util::kill9(victim);
    wait_for("w@2 restarted", Duration::from_secs(20), || {
        p.live_pid("w@2").is_some_and(|pid| pid != victim)
    });
    assert_eq!(p.count("sleep 1005"), 3, "never two of one worker");
}

#[test]
fn run_leaves_a_program_that_exited_cleanly_alone_and_restarts_a_failed_one() {
    let p = Programs::new(
        "[worker.done]\ncommand = \"exit 0\"\n\
         [worker.crash]\ncommand = \"echo crashed >> crashes; exit 3\"\nrestart_delay = 0\nmax_restarts = 2\n",
    );
    let monitor = p.monitor();
    wait_for("crash to be given up", Duration::from_secs(20), || {
        p.verdict("crash") == "given_up"
    });
    assert_eq!(
        fs::read_to_string(p.path().join("crashes"))
            .unwrap()
            .lines()
            .count(),
        3,
        "the first start and two restarts: {}",
        monitor.output()
    );
    assert_eq!(p.verdict("done"), "completed");
}

/// A program that daemonizes itself as Celery does: `start` forks a child
/// into a new session and exits; the daemon writes its PID file with
/// O_EXCL (`set -C`), as `PID\n`, removes a stale one first, and removes
/// its own at exit, a moment after SIGTERM (a warm shutdown), leaving
/// `<pidfile>.clean`. (A stale PID file names a process that is gone or a
/// zombie not yet reaped by init.)
pub const FAKE_CELERY: &str = r#"#!/bin/sh
if [ "$1" = start ]; then
  setsid "$0" --daemon "$2" </dev/null >/dev/null 2>&1 &
  i=0; while [ ! -s "$2" ] && [ $i -lt 200 ]; do sleep 0.02; i=$((i+1)); done
  exit 0
fi
old=$(cat "$2" 2>/dev/null)
case "$(awk '{print $3}' "/proc/$old/stat" 2>/dev/null)" in ''|Z|X) rm -f "$2";; esac
set -C
echo $$ > "$2" || exit 1
trap 'sleep 0.3; rm -f "$2"; echo clean > "$2.clean"; exit 0' TERM INT
while :; do sleep 0.2 & wait $!; done
"#;

#[test]
fn adopt_mode_starts_a_self_daemonizing_program_and_brings_it_back() {
    let p = Programs::new("");
    let script = p.path().join("fake-celery");
    fs::write(&script, FAKE_CELERY).unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    let run = p.path().join("run");
    fs::create_dir_all(&run).unwrap();
    p.write_config(&format!(
        "[worker.celery]\ninstances = [\"code\"]\ncommand = [\"{s}\", \"--daemon\", \"{r}/%i.pid\"]\n\
         pidfile = \"{r}/%i.pid\"\nstart = [\"{s}\", \"start\", \"{r}/%i.pid\"]\n\
         match = \"fake-celery --daemon\"\nrestart_delay = 0\n",
        s = script.display(),
        r = run.display()
    ));
    let (code, out, err) = p.run(&["start", "--all"]);
    assert_eq!(code, 0, "{out} {err}");
    let pidfile = run.join("code.pid");
    let first: i32 = fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(is_alive(first));
    assert_eq!(p.verdict("celery@code"), "running");
    let _monitor = p.monitor();
    crate::util::kill9(first);
    wait_for("a new daemon", Duration::from_secs(20), || {
        fs::read_to_string(&pidfile)
            .ok()
            .and_then(|t| t.trim().parse::<i32>().ok())
            .is_some_and(|pid| pid != first && is_alive(pid))
    });
    assert_eq!(p.count("fake-celery --daemon…"), 1, "never two");
    // A PID file naming a stranger proves nothing: it is not signalled.
    let stranger = crate::util::Proc::sleep();
    drop(_monitor);
    let (code, _, _) = p.run(&["stop", "--all"]);
    assert_eq!(code, 0);
    wait_for("the daemon gone", Duration::from_secs(10), || {
        p.count("fake-celery --daemon…") == 0
    });
    fs::write(&pidfile, format!("{}\n", stranger.pid)).unwrap();
    let (_, out, _) = p.run(&["check", "--json"]);
    assert!(
        out.contains("not_the_worker") || out.contains("stopped"),
        "{out}"
    );
    assert!(is_alive(stranger.pid));
}

#[test]
fn status_watch_redraws_until_interrupted() {
    let p = Programs::new("[worker.w]\ncommand = [\"sleep\", \"1006\"]\n");
    let out = p.path().join("watch.out");
    let mut watch = Monitor::spawn(p.pidwatch(&["status", "--watch"]), &out);
    wait_for("two frames", Duration::from_secs(20), || {
        watch.output().matches("\u{1b}[H").count() >= 2
    });
    watch.signal(nix::sys::signal::Signal::SIGINT);
    let (code, text) = watch.wait_exit(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("not_started"), "{text}");
}

#[test]
fn adopt_mode_stop_command_gets_stop_timeout_before_any_sigkill() {
    let p = Programs::new("");
    let script = p.path().join("fake-celery");
    fs::write(&script, FAKE_CELERY).unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    let run = p.path().join("run");
    fs::create_dir_all(&run).unwrap();
    // The stop command only asks (SIGTERM) and returns at once, as
    // `celery multi stop` does; the daemon needs a moment to finish.
    p.write_config(&format!(
        "[worker.celery]\ncommand = [\"{s}\", \"--daemon\", \"{r}/w.pid\"]\n\
         pidfile = \"{r}/w.pid\"\nstart = [\"{s}\", \"start\", \"{r}/w.pid\"]\n\
         stop = \"kill -TERM $(cat {r}/w.pid)\"\nmatch = \"fake-celery --daemon\"\n\
         stop_timeout = 10\n",
        s = script.display(),
        r = run.display()
    ));
    let (code, out, err) = p.run(&["start", "celery"]);
    assert_eq!(code, 0, "{out} {err}");
    let (code, out, err) = p.run(&["stop", "celery"]);
    assert_eq!(code, 0, "{out} {err}");
    assert!(!out.contains("SIGKILL"), "{out}");
    assert!(
        run.join("w.pid.clean").exists(),
        "it finished its shutdown: {out}"
    );
    assert_eq!(p.count("fake-celery --daemon…"), 0);
    assert_eq!(p.verdict("celery"), "stopped");
}

#[test]
fn adopt_mode_never_takes_an_older_matching_process_for_the_one_it_started() {
    let p = Programs::new("");
    let script = p.path().join("fake-celery");
    fs::write(&script, FAKE_CELERY).unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    let run = p.path().join("run");
    fs::create_dir_all(&run).unwrap();
    // Another node's daemon, live and matching, started before.
    let mut other = Command::new(&script);
    other
        .current_dir(p.path())
        .args(["start", &run.join("other.pid").display().to_string()]);
    assert!(other.status().unwrap().success());
    let other_pid: i32 = fs::read_to_string(run.join("other.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // This node's PID file is stale, written before that daemon started,
    // and its PID was reused by it; this node's start command starts
    // nothing.
    let stale = run.join("b.pid");
    fs::write(&stale, format!("{other_pid}\n")).unwrap();
    let before = std::time::SystemTime::now() - Duration::from_secs(60);
    fs::File::options()
        .write(true)
        .open(&stale)
        .unwrap()
        .set_modified(before)
        .unwrap();
    p.write_config(&format!(
        "[worker.b]\ncommand = [\"{s}\", \"--daemon\", \"{r}/b.pid\"]\n\
         pidfile = \"{r}/b.pid\"\nstart = [\"true\"]\nmatch = \"fake-celery --daemon\"\n",
        s = script.display(),
        r = run.display()
    ));
    let (code, out, err) = p.run(&["start", "b"]);
    assert_eq!(code, 2, "{out} {err}");
    assert!(err.contains("no PID file"), "{err}");
    // Stopping b touches nothing of the other node.
    p.run(&["stop", "b"]);
    assert!(is_alive(other_pid));
}

/// The PIDs of the live processes under `p` whose command line is `needle`.
fn pids_of(p: &Programs, needle: &str) -> Vec<i32> {
    crate::util::processes_under(p.path())
        .into_iter()
        .filter(|pid| crate::util::proc_state(*pid) != Some('Z'))
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).replace('\0', " ").trim_end() == needle)
        })
        .collect()
}

/// Waits until the monitor serves its control socket (its first pass is
/// done by then, too).
fn wait_served(p: &Programs, monitor: &Monitor) {
    wait_for("the control socket", Duration::from_secs(20), || {
        p.state().join("control.sock").exists() && monitor.output().contains("Starting monitor")
    });
}

#[test]
fn a_failing_health_probe_restarts_the_worker_with_reason_unhealthy() {
    let p = Programs::new(
        "[worker.w]\ncommand = [\"sleep\", \"1020\"]\nrestart_delay = 0\nmax_restarts = 5\n\
         health = { command = \"test ! -e sick\", interval = \"100ms\", timeout = \"2s\", retries = 2 }\n",
    );
    let monitor = p.monitor();
    wait_for("w running", Duration::from_secs(20), || {
        p.live_pid("w").is_some()
    });
    let first = p.live_pid("w").unwrap();
    fs::write(p.path().join("sick"), "").unwrap();
    wait_for("w restarted as unhealthy", Duration::from_secs(20), || {
        monitor.output().contains("Worker w is unhealthy")
            && p.live_pid("w").is_some_and(|pid| pid != first)
    });
    fs::remove_file(p.path().join("sick")).unwrap();
    assert!(!is_alive(first) || crate::util::proc_state(first) == Some('Z'));
    assert!(
        pids_of(&p, "sleep 1020").len() <= 1,
        "never two of one worker"
    );
    let (_, out, _) = p.run(&["history", "w"]);
    assert!(out.contains("unhealthy"), "{out}");
    // Healthy again: it stays up.
    let now = p.live_pid("w");
    wait_for("one w running", Duration::from_secs(20), || {
        pids_of(&p, "sleep 1020").len() == 1 && p.live_pid("w").is_some()
    });
    assert!(now.is_some());
}

#[test]
fn run_starts_a_dependent_only_once_its_dependency_passed_its_ready_probe() {
    let p = Programs::new(
        "[worker.db]\ncommand = [\"sleep\", \"1021\"]\n\
         ready = { command = \"test -e ready\", interval = \"100ms\", timeout = \"2s\" }\n\
         [worker.app]\ncommand = [\"sleep\", \"1022\"]\ndepends_on = [\"db\"]\n",
    );
    let monitor = p.monitor();
    wait_for("db running", Duration::from_secs(20), || {
        p.live_pid("db").is_some()
    });
    wait_served(&p, &monitor);
    // db runs, its probe fails: app waits.
    assert_eq!(p.verdict("app"), "waiting");
    assert_eq!(pids_of(&p, "sleep 1022").len(), 0);
    fs::write(p.path().join("ready"), "").unwrap();
    wait_for("app running", Duration::from_secs(20), || {
        p.live_pid("app").is_some()
    });
    assert!(
        monitor.output().contains("Worker db is ready"),
        "{}",
        monitor.output()
    );
}

#[test]
fn start_stop_and_restart_ask_the_running_monitor() {
    let p = Programs::new(
        "[worker.w]\ncommand = [\"sleep\", \"1023\"]\nrestart_delay = 0\n\
         [worker.x]\ncommand = [\"sleep\", \"1024\"]\n",
    );
    let monitor = p.monitor();
    wait_for("w running", Duration::from_secs(20), || {
        p.live_pid("w").is_some()
    });
    wait_served(&p, &monitor);
    // The monitor holds the lock: a command acting itself would wait 30 s
    // for it; asking the monitor is at once.
    let started = std::time::Instant::now();
    let (code, out, err) = p.run(&["stop", "w"]);
    assert_eq!(code, 0, "{out} {err}");
    assert!(out.contains("w: SIGTERM"), "{out}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "asked the monitor"
    );
    assert_eq!(pids_of(&p, "sleep 1023").len(), 0);
    assert_eq!(p.verdict("w"), "stopped");
    // A stopped worker stays stopped under the monitor.
    p.run(&["check"]);
    assert_eq!(pids_of(&p, "sleep 1023").len(), 0, "{}", monitor.output());
    let (code, out, err) = p.run(&["start", "w"]);
    assert_eq!(code, 0, "{out} {err}");
    assert!(out.contains("1 of 1 worker(s) running"), "{out}");
    let pid = p.live_pid("w").expect("w runs again");
    let (code, _, err) = p.run(&["restart", "w"]);
    assert_eq!(code, 0, "{err}");
    let again = p.live_pid("w").expect("w runs after restart");
    assert_ne!(pid, again);
    assert_eq!(
        pids_of(&p, "sleep 1023"),
        vec![again],
        "never two of one worker"
    );
    // x was never touched.
    assert_eq!(pids_of(&p, "sleep 1024").len(), 1);
    // A name the file does not have: refused, exit 2.
    let (code, _, err) = p.run(&["stop", "nope"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        monitor.output().contains("Control socket"),
        "{}",
        monitor.output()
    );
}

#[test]
fn reload_starts_added_stops_removed_restarts_changed_and_refuses_an_invalid_file() {
    let p = Programs::new(
        "[worker.a]\ncommand = [\"sleep\", \"1030\"]\n\
         [worker.b]\ncommand = [\"sleep\", \"1031\"]\n\
         [worker.c]\ncommand = [\"sleep\", \"1032\"]\n\
         [worker.e]\ncommand = [\"sleep\", \"1035\"]\n",
    );
    let monitor = p.monitor();
    wait_for("a, b, c, e running", Duration::from_secs(20), || {
        ["a", "b", "c", "e"]
            .iter()
            .all(|id| p.live_pid(id).is_some())
    });
    wait_served(&p, &monitor);
    let a = p.live_pid("a").unwrap();
    // A stopped worker that the reload changes stays stopped.
    let (code, _, err) = p.run(&["stop", "e"]);
    assert_eq!(code, 0, "{err}");
    p.write_config(
        "[worker.a]\ncommand = [\"sleep\", \"1030\"]\n\
         [worker.c]\ncommand = [\"sleep\", \"1033\"]\n\
         [worker.d]\ncommand = [\"sleep\", \"1034\"]\n\
         [worker.e]\ncommand = [\"sleep\", \"1036\"]\n",
    );
    monitor.signal(nix::sys::signal::Signal::SIGHUP);
    wait_for(
        "b stopped, c changed, d added",
        Duration::from_secs(20),
        || {
            pids_of(&p, "sleep 1031").is_empty()
                && pids_of(&p, "sleep 1032").is_empty()
                && pids_of(&p, "sleep 1033").len() == 1
                && pids_of(&p, "sleep 1034").len() == 1
        },
    );
    assert_eq!(
        p.live_pid("a"),
        Some(a),
        "an unchanged worker is not touched"
    );
    p.run(&["check"]);
    assert!(pids_of(&p, "sleep 1036").is_empty(), "e stays stopped");
    assert_eq!(p.verdict("e"), "stopped");
    assert!(
        monitor
            .output()
            .contains("1 added, 1 removed, 2 changed, 1 unchanged"),
        "{}",
        monitor.output()
    );
    // An invalid file: refused with its errors; nothing changes.
    p.write_config("[worker.a]\ncommand = [\"sleep\", \"1030\"]\nbogus = 1\n");
    monitor.signal(nix::sys::signal::Signal::SIGHUP);
    wait_for("the reload refused", Duration::from_secs(20), || {
        monitor.output().contains("Reload refused")
    });
    assert!(
        monitor.output().contains("worker.a.bogus"),
        "{}",
        monitor.output()
    );
    p.run(&["check"]);
    assert_eq!(p.live_pid("a"), Some(a));
    assert_eq!(pids_of(&p, "sleep 1033").len(), 1);
    assert_eq!(pids_of(&p, "sleep 1034").len(), 1);
}

#[test]
fn run_rotates_a_worker_log_by_size() {
    let p = Programs::new(
        "[worker.chatty]\n\
         command = \"while :; do echo 0123456789012345678901234567890123456789; sleep 0.01; done\"\n\
         log_max_bytes = 2000\nlog_keep = 2\n",
    );
    let monitor = p.monitor();
    let log = p.state().join("logs/chatty.log");
    let first = p.state().join("logs/chatty.log.1");
    wait_for("the log rotated", Duration::from_secs(30), || {
        first.exists()
    });
    let size = fs::metadata(&first).unwrap().len();
    assert!(size >= 2000, "rotated at its size: {size}");
    wait_for("a second rotation", Duration::from_secs(30), || {
        p.state().join("logs/chatty.log.2").exists()
    });
    assert!(
        !p.state().join("logs/chatty.log.3").exists(),
        "log_keep = 2"
    );
    assert!(log.exists());
    drop(monitor);
}

#[test]
fn the_control_socket_refuses_another_user() {
    use std::os::unix::process::CommandExt as _;
    let p = Programs::new("[worker.w]\ncommand = [\"sleep\", \"1040\"]\n");
    let monitor = p.monitor();
    wait_for("w running", Duration::from_secs(20), || {
        p.live_pid("w").is_some()
    });
    wait_served(&p, &monitor);
    let socket = p.state().join("control.sock");
    let mode = fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // Let user nobody reach the files, and then the socket itself: what
    // refuses it is then SO_PEERCRED, not the file's mode.
    for dir in [p.path().to_path_buf(), p.state()] {
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    }
    let as_nobody = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_pidwatch"))
            .current_dir(p.path())
            .env("HOME", p.path().join("home"))
            .arg("--config")
            .arg(p.config())
            .args(args)
            .uid(65534)
            .gid(65534)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = as_nobody(&["stop", "w"]);
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("refuses"), "{err}");
    fs::set_permissions(&socket, fs::Permissions::from_mode(0o666)).unwrap();
    let (code, err) = as_nobody(&["stop", "w"]);
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("refuses this caller"), "{err}");
    assert_eq!(pids_of(&p, "sleep 1040").len(), 1, "w untouched");
}

#[test]
fn a_start_of_a_worker_that_dies_at_once_is_one_start_then_its_restart_cap() {
    let p = Programs::new(
        "[worker.w]\ncommand = \"echo ran >> runs; exit 3\"\nrestart_delay = 0\nmax_restarts = 2\n",
    );
    let runs = || {
        fs::read_to_string(p.path().join("runs"))
            .map(|t| t.lines().count())
            .unwrap_or(0)
    };
    let monitor = p.monitor();
    wait_served(&p, &monitor);
    wait_for("w given up", Duration::from_secs(20), || {
        p.verdict("w") == "given_up"
    });
    assert_eq!(runs(), 3, "a start and two restarts");
    let (code, _, err) = p.run(&["start", "w"]);
    // It started and died: said, with exit 2 (all failed). Then it is
    // restarted up to its cap and given up again; not started each pass.
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("w failed to start: it is"), "{err}");
    wait_for("w given up again", Duration::from_secs(20), || {
        p.verdict("w") == "given_up"
    });
    assert_eq!(runs(), 6, "{}", monitor.output());
}

#[test]
fn a_start_asked_while_the_worker_is_being_stopped_starts_it_after_the_stop() {
    let p = Programs::new(
        "[worker.w]\ncommand = \"trap 'touch got-term' TERM; while :; do sleep 0.05; done\"\n\
         stop_timeout = 1\n",
    );
    let monitor = p.monitor();
    wait_for("w running", Duration::from_secs(20), || {
        p.live_pid("w").is_some()
    });
    wait_served(&p, &monitor);
    let first = p.live_pid("w").unwrap();
    let mut stop = p.cmd();
    stop.args(["stop", "w"]);
    let stopping = std::thread::spawn(move || stop.output().unwrap());
    wait_for("the stop under way", Duration::from_secs(20), || {
        p.path().join("got-term").exists()
    });
    let (code, out, err) = p.run(&["start", "w"]);
    assert_eq!(code, 0, "{out} {err}");
    let stopped = stopping.join().unwrap();
    assert_eq!(stopped.status.code(), Some(0));
    let now = p.live_pid("w").expect("w runs after the stop");
    assert_ne!(now, first);
    assert!(!is_alive(first) || crate::util::proc_state(first) == Some('Z'));
    assert_eq!(p.verdict("w"), "running");
}

#[test]
fn a_failed_adopt_mode_start_command_is_reaped() {
    let p = Programs::new(
        "[worker.bad]\ncommand = [\"sleep\", \"1060\"]\npidfile = \"bad.pid\"\n\
         start = \"exit 1\"\nrestart_delay = 0\nmax_restarts = 1\n",
    );
    let monitor = p.monitor();
    wait_for("the failed starts", Duration::from_secs(20), || {
        p.verdict("bad") == "given_up"
    });
    // Every child of the monitor's threads that exited is reaped.
    wait_for(
        "no zombie child of the monitor",
        Duration::from_secs(10),
        || {
            let tasks = fs::read_dir(format!("/proc/{}/task", monitor.pid)).unwrap();
            tasks
                .filter_map(|t| fs::read_to_string(t.ok()?.path().join("children")).ok())
                .flat_map(|c| {
                    c.split_whitespace()
                        .filter_map(|p| p.parse::<i32>().ok())
                        .collect::<Vec<_>>()
                })
                .all(|pid| crate::util::proc_state(pid) != Some('Z'))
        },
    );
}

#[test]
fn a_reload_that_adds_a_dependent_leaves_a_stopped_dependency_stopped() {
    let p = Programs::new("[worker.a]\ncommand = [\"sleep\", \"1050\"]\n");
    let monitor = p.monitor();
    wait_for("a running", Duration::from_secs(20), || {
        p.live_pid("a").is_some()
    });
    wait_served(&p, &monitor);
    let (code, _, err) = p.run(&["stop", "a"]);
    assert_eq!(code, 0, "{err}");
    p.write_config(
        "[worker.a]\ncommand = [\"sleep\", \"1050\"]\n\
         [worker.b]\ncommand = [\"sleep\", \"1051\"]\ndepends_on = [\"a\"]\n",
    );
    monitor.signal(nix::sys::signal::Signal::SIGHUP);
    wait_for("the reload", Duration::from_secs(20), || {
        monitor.output().contains("1 added")
    });
    p.run(&["check"]);
    assert_eq!(p.verdict("a"), "stopped");
    assert_eq!(p.verdict("b"), "waiting");
    assert!(pids_of(&p, "sleep 1050").is_empty());
    assert!(pids_of(&p, "sleep 1051").is_empty());
}

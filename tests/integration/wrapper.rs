//! `wrapper/worker-wrapper.sh` on its own: signal forwarding, exit status,
//! PID file, log header and footer, exact archiving, the incarnation id and
//! the exit file.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::Signal;
use pidwatch::core::ExitRecord;
use pidwatch::observe::exitfile::{self, ExitReading};

use crate::util::*;

const LIMIT: Duration = Duration::from_secs(15);

/// An incarnation id as pidwatch would pass it.
const ID: &str = "0123456789abcdef0123456789abcdef";

struct Run {
    // Dropped first: the wrapper is killed before the fixture's cleanup.
    child: Option<Wrapper>,
    fx: Fixture,
    pid: i32,
}

/// The wrapper process a test started; killed and reaped when dropped.
struct Wrapper(Child);

impl Drop for Wrapper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Run {
    /// Starts the wrapper for stream `W` with `extra` after the six
    /// arguments, without `PIDWATCH_INVOCATION_ID` (a start by the
    /// orchestrator).
    fn start(fx: Fixture, extra: &[&str], path: Option<&str>) -> Run {
        Run::start_with_id(fx, extra, path, None)
    }

    /// [`Run::start`], with `PIDWATCH_INVOCATION_ID` set to `id` when given
    /// (a start by pidwatch).
    fn start_with_id(fx: Fixture, extra: &[&str], path: Option<&str>, id: Option<&str>) -> Run {
        let wrapper = fx.install_wrapper();
        let work = fx.work_dir("W");
        fs::create_dir_all(&work).unwrap();
        let mut cmd = Command::new(&wrapper);
        cmd.arg("W")
            .arg(fx.pidfile_path("W"))
            .arg(fx.dir.join("logs"))
            .arg(&work)
            .arg(INITIATIVE)
            .arg("test prompt")
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            // Inside the fixture's folder, so that its cleanup finds the
            // wrapper and everything it starts even when a test fails early.
            .current_dir(fx.tmp.path());
        if let Some(path) = path {
            cmd.env("PATH", path);
        }
        match id {
            // As pidwatch gives it: for this worker.
            Some(id) => cmd
                .env("PIDWATCH_INVOCATION_ID", id)
                .env("PIDWATCH_INVOCATION_WORKER", "W"),
            None => cmd.env_remove("PIDWATCH_INVOCATION_ID"),
        };
        use std::os::unix::process::CommandExt;
        let child = cmd.spawn().unwrap();
        let pid = child.id() as i32;
        Run {
            child: Some(Wrapper(child)),
            fx,
            pid,
        }
    }

    fn wait_pidfile(&self) {
        wait_for("the PID file", LIMIT, || {
            self.fx.pid_in_file("W") == Some(self.pid)
        });
    }

    /// Waits for the wrapper to exit; its exit code.
    fn exit_code(&mut self) -> i32 {
        let mut child = self.child.take().unwrap();
        let mut code = None;
        wait_for("the wrapper to exit", LIMIT, || {
            code = child.0.try_wait().unwrap().map(|s| s.code().unwrap_or(-1));
            code.is_some()
        });
        code.unwrap()
    }

    fn log(&self) -> String {
        fs::read_to_string(self.fx.worker_log_path("W")).unwrap_or_default()
    }

    /// The exit file beside the PID file, read by pidwatch's own reader.
    fn exit_file(&self) -> ExitReading {
        exitfile::read(&exitfile::path_for(&self.fx.pidfile_path("W")))
    }

    /// The exit file's record; panics when there is no valid one.
    fn exit_record(&self) -> ExitRecord {
        match self.exit_file() {
            ExitReading::Valid(record) => record,
            other => panic!("no valid exit file: {other:?}\n{}", self.log()),
        }
    }

    /// Waits for the worker (the wrapper's child that leads its own process
    /// group) to run `sleep`; its PID.
    fn wait_sleeping_worker(&self) -> i32 {
        let mut worker = None;
        wait_for("the worker to run sleep", LIMIT, || {
            worker = all_pids().into_iter().find(|&pid| {
                stat_fields(pid)
                    .is_some_and(|f| f[1] == self.pid.to_string() && f[2] == pid.to_string())
                    && fs::read(format!("/proc/{pid}/cmdline"))
                        .is_ok_and(|c| c.starts_with(b"sleep\0"))
            });
            worker.is_some()
        });
        worker.unwrap()
    }

    /// The time of the log's last `Worker exited:` line.
    fn footer_time(&self) -> String {
        let log = self.log();
        let time = log
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("Worker exited: "));
        time.expect(&log).to_string()
    }
}

/// The value of `key` in `/proc/<pid>/environ` (the environment the process
/// was executed with).
fn environ_var(pid: i32, key: &str) -> Option<String> {
    let raw = fs::read(format!("/proc/{pid}/environ")).ok()?;
    let prefix = format!("{key}=");
    raw.split(|b| *b == 0)
        .find_map(|kv| kv.strip_prefix(prefix.as_bytes()))
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

fn is_incarnation_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[test]
fn it_writes_its_pid_file_and_a_header_and_footer() {
    let mut run = Run::start(
        Fixture::new(),
        &["--", "sh", "-c", "echo out: $PIDWATCH_STREAM_ID; exit 7"],
        None,
    );
    assert_eq!(run.exit_code(), 7, "the worker's exit status");
    let log = run.log();
    let started = log
        .lines()
        .find_map(|l| l.strip_prefix("Started: "))
        .expect(&log);
    assert!(
        chrono::DateTime::parse_from_rfc3339(started).is_ok(),
        "an ISO 8601 time like date -Iseconds: {started}"
    );
    for needle in [
        "Started: ".to_string(),
        "Stream: W".into(),
        format!("Initiative: {INITIATIVE}"),
        format!("PID: {}", run.pid),
        format!("Working dir: {}", run.fx.work_dir("W").display()),
        format!("Log file: {}", run.fx.worker_log_path("W").display()),
        "out: W".into(),
        "Worker exited: ".into(),
        "Exit code: 7".into(),
    ] {
        assert!(log.contains(&needle), "{needle:?} in {log}");
    }
    assert!(
        !run.fx.pidfile_path("W").exists(),
        "its own PID file is removed"
    );
}

#[test]
fn term_int_and_hup_reach_the_worker_group_at_once() {
    // The worker would sleep for ten minutes; for TERM and HUP a child of it
    // in the same group must die too. (A shell's background job ignores
    // SIGINT by POSIX rule, so INT is sent to a lone worker.)
    // (wrapper, sh and two sleeps; or wrapper and one sleep)
    for (sig, code, script, processes) in [
        (Signal::SIGTERM, 143, "sleep 600 & sleep 600", 4),
        (Signal::SIGINT, 130, "exec sleep 600", 2),
        (Signal::SIGHUP, 129, "sleep 600 & sleep 600", 4),
    ] {
        let mut run = Run::start(Fixture::new(), &["--", "sh", "-c", script], None);
        run.wait_pidfile();
        let work = run.fx.work_dir("W");
        wait_for("the worker and its children", LIMIT, || {
            processes_under(&work).len() == processes
        });
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(run.pid), sig).unwrap();
        assert_eq!(run.exit_code(), code, "{sig}");
        assert!(
            run.log().contains(&format!("Exit code: {code}")),
            "{}",
            run.log()
        );
        assert!(!run.fx.pidfile_path("W").exists());
        let record = run.exit_record();
        let name = sig.as_str().trim_start_matches("SIG");
        assert_eq!(record.signal.as_deref(), Some(name), "{record:?}");
        assert_eq!(record.exit_status, Some(code as u8), "{record:?}");
        assert!(record.is_deliberate_stop(), "{record:?}");
        wait_for("every process of the worker group to exit", LIMIT, || {
            processes_under(&work).is_empty()
        });
    }
}

#[test]
fn a_signal_before_the_worker_starts_is_not_lost() {
    // The wrapper is stopped while it puts its PID file in place: it must
    // not start the worker at all, and must exit 128+15 without leaving its
    // PID file behind.
    let fx = Fixture::new();
    let slow = fx.tmp.path().join("slow");
    fs::create_dir_all(&slow).unwrap();
    // An `mv` that waits until the test opens the gate (a file it makes).
    let gate = slow.join("gate");
    fs::write(
        slow.join("mv"),
        format!(
            "#!/bin/sh\nwhile [ ! -e '{}' ]; do sleep 0.01; done\nexec /bin/mv \"$@\"\n",
            gate.display()
        ),
    )
    .unwrap();
    fs::set_permissions(slow.join("mv"), fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:/usr/bin:/bin", slow.display());
    let mut run = Run::start(
        fx,
        &["--", "sh", "-c", "echo started; exec sleep 600"],
        Some(&path),
    );
    // The temp PID file is written: the wrapper waits in `mv`.
    let tmp = run.fx.dir.join(format!("pids/W.pid.{}.tmp", run.pid));
    wait_for("the temp PID file", LIMIT, || tmp.exists());
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(run.pid), Signal::SIGTERM).unwrap();
    fs::write(&gate, "").unwrap();
    assert_eq!(run.exit_code(), 143);
    assert!(!run.log().contains("started"), "{}", run.log());
    assert!(run.log().contains("Exit code: 143"), "{}", run.log());
    assert!(!run.fx.pidfile_path("W").exists());
    let record = run.exit_record();
    assert_eq!(record.signal.as_deref(), Some("TERM"), "{record:?}");
    assert_eq!(record.exit_status, Some(143), "{record:?}");
    assert!(record.is_deliberate_stop());
}

#[test]
fn what_a_worker_leaves_in_its_group_is_stopped_before_the_pid_file_goes() {
    // The worker exits at once and leaves a child behind in its group.
    let mut run = Run::start(
        Fixture::new(),
        &["--", "sh", "-c", "sleep 600 & exit 0"],
        None,
    );
    assert_eq!(run.exit_code(), 0);
    let work = run.fx.work_dir("W");
    assert!(
        processes_under(&work).is_empty(),
        "left: {:?}",
        processes_under(&work)
    );
    assert!(!run.fx.pidfile_path("W").exists());
}

#[test]
fn a_worker_killed_by_a_signal_gives_128_plus_the_signal() {
    let mut run = Run::start(Fixture::new(), &["--", "sh", "-c", "kill -9 $$"], None);
    assert_eq!(run.exit_code(), 137);
}

#[test]
fn a_pid_file_rewritten_by_another_is_left_alone() {
    let fx = Fixture::new();
    let pid_file = fx.pidfile_path("W").display().to_string();
    let script = format!("echo 424242 > '{pid_file}'");
    let mut run = Run::start(fx, &["--", "sh", "-c", &script], None);
    assert_eq!(run.exit_code(), 0);
    assert_eq!(run.fx.pid_in_file("W"), Some(424242));
}

#[test]
fn old_logs_are_archived_by_exact_name_only() {
    let fx = Fixture::new();
    let logs = fx.dir.join("logs");
    let current = format!("W_{}.log", &INITIATIVE[..8]);
    let names = [
        "W.log",            // old format: archived
        "W_aaaaaaaa.log",   // another initiative: archived
        current.as_str(),   // this initiative: appended to
        "WB_aaaaaaaa.log",  // another stream
        "W_aaaaaaaa_x.log", // not an 8-character initiative prefix
        "W_short.log",      // neither
        "monitor.log",
    ];
    for name in names {
        fs::write(logs.join(name), format!("{name}\n")).unwrap();
    }
    let mut run = Run::start(fx, &["--", "true"], None);
    assert_eq!(run.exit_code(), 0);
    let mut archived: Vec<String> = fs::read_dir(logs.join("archive"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    archived.sort();
    assert_eq!(archived.len(), 2, "{archived:?}");
    let stem = |a: &str| a.rsplit_once('_').unwrap().0.to_string();
    assert_eq!(stem(&archived[0]), "W");
    assert_eq!(stem(&archived[1]), "W_aaaaaaaa");
    for kept in &names[2..] {
        assert!(logs.join(kept).exists(), "{kept} must stay");
    }
    assert!(
        run.log().starts_with(&format!("{current}\n")),
        "appended, not replaced"
    );
    let mtime_part = archived[0]
        .rsplit_once('_')
        .unwrap()
        .1
        .trim_end_matches(".log");
    assert!(mtime_part.parse::<u64>().is_ok(), "{archived:?}");
}

#[test]
fn the_default_command_is_claude_with_the_prompt() {
    let fx = Fixture::new();
    let bin: PathBuf = fx.tmp.path().join("bin");
    fs::create_dir_all(&bin).unwrap();
    let fake = bin.join("claude");
    fs::write(&fake, "#!/bin/sh\necho \"claude args: $*\"\n").unwrap();
    fs::set_permissions(&fake, fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:/usr/bin:/bin", bin.display());
    let mut run = Run::start(fx, &[], Some(&path));
    assert_eq!(run.exit_code(), 0);
    assert!(
        run.log()
            .contains("claude args: --dangerously-skip-permissions -p test prompt"),
        "{}",
        run.log()
    );
}

#[test]
fn bad_arguments_are_a_usage_error() {
    let fx = Fixture::new();
    let wrapper = fx.install_wrapper();
    let status = Command::new(&wrapper)
        .args(["W", "x"])
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(2));
    let mut run = Run::start(fx, &["extra"], None);
    assert_eq!(run.exit_code(), 2);
}

#[test]
fn a_wrapper_started_without_an_id_makes_one_and_carries_it_itself() {
    // Started as the orchestrator starts it: no PIDWATCH_INVOCATION_ID.
    let mut run = Run::start(Fixture::new(), &["--", "sh", "-c", "exec sleep 600"], None);
    // The PID file names the process the test started: the re-exec kept it.
    run.wait_pidfile();
    let id = environ_var(run.pid, "PIDWATCH_INVOCATION_ID").expect("in the wrapper's environ");
    assert!(is_incarnation_id(&id), "{id:?}");
    let worker = run.wait_sleeping_worker();
    assert_eq!(
        environ_var(worker, "PIDWATCH_INVOCATION_ID").as_deref(),
        Some(id.as_str()),
        "the worker carries the same id"
    );
    assert_eq!(
        environ_var(worker, "PIDWATCH_WRAPPER_REEXEC"),
        None,
        "the re-exec guard is not passed on"
    );
    let log = run.log();
    let header: Vec<&str> = log.lines().collect();
    let at = header
        .iter()
        .position(|l| *l == format!("PID: {}", run.pid))
        .expect(&log);
    assert_eq!(header[at + 1], format!("Incarnation: {id}"), "{log}");

    // Stopped as `kill PID` stops it: the exit file says so.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(run.pid), Signal::SIGTERM).unwrap();
    assert_eq!(run.exit_code(), 143);
    assert_eq!(
        exitfile::path_for(&run.fx.pidfile_path("W")),
        run.fx.dir.join("pids/W.exit")
    );
    let record = run.exit_record();
    assert_eq!(
        record,
        ExitRecord {
            incarnation: id,
            pid: run.pid,
            exit_status: Some(143),
            signal: Some("TERM".into()),
            ended: Some(run.footer_time()),
        }
    );
    assert!(record.is_deliberate_stop());
}

#[test]
fn a_given_id_is_kept_and_a_malformed_one_replaced() {
    let upper = ID.to_uppercase();
    for given in [ID, upper.as_str(), "", "0123"] {
        let mut run = Run::start_with_id(
            Fixture::new(),
            &["--", "sh", "-c", "echo \"id: $PIDWATCH_INVOCATION_ID\""],
            None,
            Some(given),
        );
        assert_eq!(run.exit_code(), 0);
        let id = run.exit_record().incarnation;
        if given == ID {
            assert_eq!(id, ID);
        } else {
            assert!(
                is_incarnation_id(&id) && id != ID.to_lowercase(),
                "{given:?}: {id}"
            );
        }
        for needle in [format!("Incarnation: {id}"), format!("id: {id}")] {
            assert!(run.log().contains(&needle), "{needle:?} in {}", run.log());
        }
    }
}

#[test]
fn an_id_inherited_from_another_workers_environment_is_replaced() {
    // W's agent started this wrapper: its environment holds W2's id and
    // markers.
    let fx = Fixture::new();
    let wrapper = fx.install_wrapper();
    fs::create_dir_all(fx.work_dir("W")).unwrap();
    let status = Command::new(&wrapper)
        .arg("W")
        .arg(fx.pidfile_path("W"))
        .arg(fx.dir.join("logs"))
        .arg(fx.work_dir("W"))
        .arg(INITIATIVE)
        .arg("p")
        .args([
            "--",
            "sh",
            "-c",
            "echo \"id: $PIDWATCH_INVOCATION_ID stream: $PIDWATCH_STREAM_ID\"",
        ])
        .env("PIDWATCH_INVOCATION_ID", ID)
        .env("PIDWATCH_INVOCATION_WORKER", "W2")
        .env("PIDWATCH_STREAM_ID", "W2")
        .env("PIDWATCH_LOG_FILE", "/elsewhere/W2.log")
        .current_dir(fx.tmp.path())
        .stdin(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    let log = fs::read_to_string(fx.worker_log_path("W")).unwrap();
    assert!(!log.contains(ID), "the inherited id is not kept: {log}");
    assert!(log.contains("stream: W\n"), "{log}");
}

#[test]
fn the_exit_file_tells_how_the_worker_ended() {
    for (script, code, signal) in [
        ("exit 0", 0, None),
        ("exit 3", 3, None),
        // The worker itself SIGKILLed (the OOM killer's way): a crash.
        ("kill -9 $$", 137, Some("KILL")),
    ] {
        let mut run =
            Run::start_with_id(Fixture::new(), &["--", "sh", "-c", script], None, Some(ID));
        assert_eq!(run.exit_code(), code, "{script}");
        assert!(!run.fx.pidfile_path("W").exists(), "{script}");
        let record = run.exit_record();
        assert_eq!(
            record,
            ExitRecord {
                incarnation: ID.into(),
                pid: run.pid,
                exit_status: Some(code as u8),
                signal: signal.map(str::to_string),
                ended: Some(run.footer_time()),
            },
            "{script}"
        );
        assert!(!record.is_deliberate_stop(), "{script}");
        // Only the exit file is left beside where the PID file was.
        let left: Vec<String> = fs::read_dir(run.fx.dir.join("pids"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left, ["W.exit"], "{script}");
    }
}

#[test]
fn a_sigkilled_wrapper_leaves_no_exit_file_of_its_own() {
    // Without an earlier exit file: none at all.
    let mut run = Run::start(Fixture::new(), &["--", "sh", "-c", "exec sleep 600"], None);
    run.wait_pidfile();
    let worker = run.wait_sleeping_worker();
    kill9(run.pid);
    assert_eq!(run.exit_code(), -1, "killed by a signal");
    assert_eq!(run.exit_file(), ExitReading::Missing);
    kill_tree(worker);

    // With the exit file of an earlier incarnation: it is left as it was,
    // and names that incarnation, not the killed one.
    let mut earlier = Run::start(Fixture::new(), &["--", "true"], None);
    assert_eq!(earlier.exit_code(), 0);
    let old = earlier.exit_record();
    let Run { fx, .. } = earlier;
    let mut run = Run::start(fx, &["--", "sh", "-c", "exec sleep 600"], None);
    run.wait_pidfile();
    let id = environ_var(run.pid, "PIDWATCH_INVOCATION_ID").unwrap();
    let worker = run.wait_sleeping_worker();
    kill9(run.pid);
    assert_eq!(run.exit_code(), -1);
    let left = run.exit_record();
    assert_eq!(left, old, "the earlier incarnation's file, untouched");
    assert_ne!(left.incarnation, id);
    assert_ne!(left.pid, run.pid);
    kill_tree(worker);
}

/// Makes the fixture's work dir for W a git repository with one commit.
fn git_work_dir(fx: &Fixture) -> PathBuf {
    let work = fx.work_dir("W");
    fs::create_dir_all(&work).unwrap();
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .arg("-C")
            .arg(&work)
            .args(args)
            .output()
            .expect("git is needed by this test: apt-get install git");
        assert!(out.status.success(), "git {args:?}: {out:?}");
    };
    git(&["init", "-q"]);
    git(&[
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@t",
        "commit",
        "-q",
        "--allow-empty",
        "-m",
        "base",
    ]);
    // A hook that would hang the wrapper if it ran, as a pinentry would.
    fs::write(work.join(".git/hooks/pre-commit"), "#!/bin/sh\nsleep 600\n").unwrap();
    fs::set_permissions(
        work.join(".git/hooks/pre-commit"),
        fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    work
}

fn git_log(work: &std::path::Path) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(work)
        .args(["log", "--format=%s%n%b", "-n", "1"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn finished_work_is_committed_and_failed_work_is_not() {
    let fx = Fixture::new();
    let work = git_work_dir(&fx);
    let mut run = Run::start(fx, &["--", "sh", "-c", "echo done > result.txt"], None);
    assert_eq!(run.exit_code(), 0, "{}", run.log());
    let log = git_log(&work);
    assert!(log.starts_with("feat(W): Complete stream tasks"), "{log}");
    assert!(log.contains(&format!("Initiative: {INITIATIVE}")), "{log}");
    assert!(log.contains("Stream: W"), "{log}");
    assert!(
        log.contains("Automated commit from orchestration worker"),
        "{log}"
    );
    assert!(run.log().contains("Committed changes: "), "{}", run.log());

    let fx = Fixture::new();
    let work = git_work_dir(&fx);
    let mut run = Run::start(
        fx,
        &["--", "sh", "-c", "echo half > result.txt; exit 3"],
        None,
    );
    assert_eq!(run.exit_code(), 3);
    assert_eq!(
        git_log(&work).trim(),
        "base",
        "a failed worker's edits are not committed"
    );
    assert!(!run.log().contains("Committed changes"), "{}", run.log());

    let fx = Fixture::new();
    git_work_dir(&fx);
    let mut run = Run::start(fx, &["--", "true"], None);
    assert_eq!(run.exit_code(), 0);
    assert!(run.log().contains("No changes to commit"), "{}", run.log());
}

#[test]
fn the_worker_is_found_under_a_service_path_and_a_missing_one_is_named() {
    let fx = Fixture::new();
    let home = fx.tmp.path().join("home-bin");
    let bin = home.join(".local/bin");
    fs::create_dir_all(&bin).unwrap();
    let fake = bin.join("claude");
    fs::write(&fake, "#!/bin/sh\necho \"claude ran\"\n").unwrap();
    fs::set_permissions(&fake, fs::Permissions::from_mode(0o755)).unwrap();
    // systemd's default PATH, which lacks ~/.local/bin.
    let wrapper = fx.install_wrapper();
    fs::create_dir_all(fx.work_dir("W")).unwrap();
    let status = Command::new(&wrapper)
        .arg("W")
        .arg(fx.pidfile_path("W"))
        .arg(fx.dir.join("logs"))
        .arg(fx.work_dir("W"))
        .arg(INITIATIVE)
        .arg("a prompt of 24 chars....")
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("HOME", &home)
        .current_dir(fx.tmp.path())
        .stdin(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    let log = fs::read_to_string(fx.worker_log_path("W")).unwrap();
    assert!(log.contains("claude ran"), "{log}");
    assert!(log.contains("Prompt length: 24 chars"), "{log}");
    assert!(
        log.contains(&format!("Claude path: {}", fake.display())),
        "{log}"
    );
    assert!(
        log.contains("PATH: /opt/homebrew/bin:/usr/local/bin:"),
        "{log}"
    );

    let mut run = Run::start(Fixture::new(), &["--", "no-such-worker-command"], None);
    assert_eq!(run.exit_code(), 127);
    assert!(
        run.log()
            .contains("Worker command not found: no-such-worker-command"),
        "{}",
        run.log()
    );
    assert!(
        run.fx.pid_in_file("W").is_none(),
        "no PID file for a start that never was"
    );
}

#[test]
fn a_running_wrapper_survives_its_file_being_rewritten_or_installed_over() {
    let fx = Fixture::new();
    let mut run = Run::start(fx, &["--", "sh", "-c", "exec sleep 1"], None);
    run.wait_pidfile();
    let wrapper = run.fx.dir.join("worker-wrapper.sh");
    // In place, as `pidwatch wrapper > worker-wrapper.sh` does: a longer
    // text at the same offsets.
    let text = format!("{}\n# {}\n", pidwatch::WRAPPER_SCRIPT, "x".repeat(5000));
    fs::write(&wrapper, text).unwrap();
    assert_eq!(run.exit_code(), 0, "{}", run.log());
    assert!(
        run.log().contains("Exit code: 0"),
        "the footer: {}",
        run.log()
    );
    assert!(run.fx.pid_in_file("W").is_none(), "its PID file removed");

    // pidwatch wrapper --install: a new file renamed over, mode 0755.
    run.fx
        .cmd()
        .args(["wrapper", "--install"])
        .arg(&wrapper)
        .assert()
        .code(0);
    let meta = fs::metadata(&wrapper).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o755);
    assert_eq!(
        fs::read_to_string(&wrapper).unwrap(),
        pidwatch::WRAPPER_SCRIPT
    );
}

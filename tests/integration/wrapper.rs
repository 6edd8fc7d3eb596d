//! `wrapper/worker-wrapper.sh` on its own: signal forwarding, exit status,
//! PID file, log header and footer, exact archiving.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::util::*;

const LIMIT: Duration = Duration::from_secs(15);

struct Run {
    fx: Fixture,
    child: Option<Child>,
    pid: i32,
}

impl Drop for Run {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Run {
    /// Starts the wrapper for stream `W` with `extra` after the six arguments.
    fn start(fx: Fixture, extra: &[&str], path: Option<&str>) -> Run {
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
        use std::os::unix::process::CommandExt;
        let child = cmd.spawn().unwrap();
        let pid = child.id() as i32;
        Run {
            fx,
            child: Some(child),
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
            code = child.try_wait().unwrap().map(|s| s.code().unwrap_or(-1));
            code.is_some()
        });
        code.unwrap()
    }

    fn log(&self) -> String {
        fs::read_to_string(self.fx.worker_log_path("W")).unwrap_or_default()
    }
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

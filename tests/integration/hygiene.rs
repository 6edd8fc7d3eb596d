//! What a wrapper spawned by pidwatch inherits: stdin, stdout and stderr
//! only, an empty signal mask, no ignored signal (`act::child`).

use std::fs;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{SigHandler, SigSet, SigmaskHow, Signal, signal, sigprocmask};

use crate::util::*;

const LIMIT: Duration = Duration::from_secs(15);

/// The arguments of a restart of worker `W` by `check`.
const RESTART: [&str; 6] = [
    "check",
    "--auto-restart",
    "--restart-delay",
    "0",
    "--worker-command",
    WORKER,
];

/// A fixture whose worker `W` is dead: its PID file names a PID nobody has.
/// Returns the fixture and that PID.
fn dead_worker() -> (Fixture, i32) {
    let mut fx = Fixture::new();
    fx.task("W", "in_progress", &[]);
    fx.ran_before("W");
    fs::create_dir_all(fx.work_dir("W")).unwrap();
    fx.install_wrapper();
    let gone = Proc::reaped_pid();
    fx.pidfile("W", &format!("{gone}\n"));
    (fx, gone)
}

/// `pidwatch args…` started through `sh -c '<setup>; exec "$@"'`, so that
/// `setup` can open descriptors that pidwatch then inherits, with SIGUSR1
/// blocked and SIGUSR2 ignored (as `nohup` or a CI runner may leave them);
/// environment as [`Fixture::cmd`] sets it.
fn pidwatch_after(fx: &Fixture, setup: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new("sh");
    // SAFETY: the hook runs in the forked child and makes only the
    // async-signal-safe sigprocmask(2) and sigaction(2) calls.
    unsafe {
        cmd.pre_exec(|| {
            let mut set = SigSet::empty();
            set.add(Signal::SIGUSR1);
            sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None)?;
            signal(Signal::SIGUSR2, SigHandler::SigIgn)?;
            Ok(())
        });
    }
    cmd.arg("-c")
        .arg(format!("{setup}; exec \"$@\""))
        .arg("sh")
        .arg(env!("CARGO_BIN_EXE_pidwatch"))
        .args(args)
        .current_dir(&fx.project)
        .env("HOME", &fx.home);
    for var in [
        "NO_COLOR",
        "JOURNAL_STREAM",
        "NOTIFY_SOCKET",
        "WORKSPACE_ID",
    ] {
        cmd.env_remove(var);
    }
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PIDWATCH_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// The descriptors open in `pid`, with what each names.
fn open_fds(pid: i32) -> Vec<(i32, String)> {
    let mut fds: Vec<(i32, String)> = fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let fd = e.file_name().to_str()?.parse().ok()?;
            let target = fs::read_link(e.path()).ok()?;
            Some((fd, target.display().to_string()))
        })
        .collect();
    fds.sort();
    fds
}

/// The descriptor numbers open in `pid` but those `skip` names, once they
/// settle on 0, 1 and 2 or after two seconds: a program that just started
/// opens its locale files for a moment (setlocale), which is not inherited.
fn settled_fds(pid: i32, skip: impl Fn(&str) -> bool) -> Vec<i32> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let fds: Vec<i32> = open_fds(pid)
            .into_iter()
            .filter(|(_, target)| !skip(target))
            .map(|(fd, _)| fd)
            .collect();
        if fds == [0, 1, 2] || Instant::now() >= deadline {
            return fds;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A signal mask line of `/proc/<pid>/status` (`SigBlk`, `SigIgn`): bit
/// `n - 1` stands for signal `n`.
fn signal_mask(pid: i32, key: &str) -> u64 {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let value = text
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"));
    u64::from_str_radix(value.trim(), 16).unwrap()
}

/// The bit of `sig` in a signal mask.
fn bit(sig: Signal) -> u64 {
    1 << (sig as i32 - 1)
}

/// The worker of the wrapper `wrapper`: its child that leads a process
/// group of its own.
fn worker_of(wrapper: i32) -> i32 {
    let mut found = None;
    wait_for("the wrapper's worker", LIMIT, || {
        found = all_pids().into_iter().find(|pid| {
            stat_fields(*pid).is_some_and(|f| {
                f.get(1) == Some(&wrapper.to_string()) && f.get(2) == Some(&pid.to_string())
            })
        });
        found.is_some()
    });
    found.unwrap()
}

/// Waits for `child` to exit, up to `LIMIT`; its exit code.
fn wait_exit(child: &mut std::process::Child) -> Option<i32> {
    let deadline = Instant::now() + LIMIT;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("pidwatch did not exit within {LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_restarted_wrapper_gets_stdio_only_and_clean_signals() {
    let (fx, gone) = dead_worker();
    let mut check = pidwatch_after(&fx, "exec 7>/dev/null 9</dev/null", &RESTART)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert_eq!(wait_exit(&mut check), Some(1), "{}", fx.monitor_log());
    let wrapper = fx.wait_restarted("W", gone, LIMIT);
    // Once the worker runs, the wrapper waits for it and opens nothing.
    let worker = worker_of(wrapper);

    // bash keeps the script it runs open (on fd 255, close-on-exec): that
    // one is the wrapper's own, not inherited.
    let script = fx.dir.join("worker-wrapper.sh").display().to_string();
    let fds = settled_fds(wrapper, |target| target == script);
    assert_eq!(fds, [0, 1, 2], "wrapper: {:?}", open_fds(wrapper));
    // bash itself, started clean, blocks SIGCHLD while in `wait` and
    // ignores SIGQUIT once job control was on (`set -m`): anything else
    // would be inherited.
    assert_eq!(
        signal_mask(wrapper, "SigBlk") & !bit(Signal::SIGCHLD),
        0,
        "wrapper"
    );
    assert_eq!(
        signal_mask(wrapper, "SigIgn") & !bit(Signal::SIGQUIT),
        0,
        "wrapper"
    );
    // The worker gets what the wrapper got: exactly that.
    let fds = settled_fds(worker, |_| false);
    assert_eq!(fds, [0, 1, 2], "worker: {:?}", open_fds(worker));
    assert_eq!(signal_mask(worker, "SigBlk"), 0, "worker");
    assert_eq!(signal_mask(worker, "SigIgn"), 0, "worker");
}

#[test]
fn a_plain_wrapper_gets_exactly_stdio_and_clean_signals() {
    let (fx, gone) = dead_worker();
    // A wrapper that changes nothing: it writes its PID file and becomes
    // `sleep`, which shows what pidwatch handed over.
    let plain = fx.tmp.path().join("plain-wrapper.sh");
    fs::write(
        &plain,
        "#!/bin/sh\ncd \"$4\" || exit 1\necho $$ >\"$2\"\nexec sleep 600\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&plain, fs::Permissions::from_mode(0o755)).unwrap();
    let plain = plain.display().to_string();
    let mut args = RESTART.to_vec();
    args.extend(["--wrapper", &plain]);
    let mut check = pidwatch_after(&fx, "exec 7>/dev/null 9</dev/null", &args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert_eq!(wait_exit(&mut check), Some(1), "{}", fx.monitor_log());
    let wrapper = fx.wait_restarted("W", gone, LIMIT);
    wait_for("the wrapper to become sleep", LIMIT, || {
        fs::read_to_string(format!("/proc/{wrapper}/comm")).is_ok_and(|c| c == "sleep\n")
    });
    let fds = settled_fds(wrapper, |_| false);
    assert_eq!(fds, [0, 1, 2], "{:?}", open_fds(wrapper));
    assert_eq!(signal_mask(wrapper, "SigBlk"), 0);
    assert_eq!(signal_mask(wrapper, "SigIgn"), 0);
}

#[test]
fn a_restart_does_not_hold_the_callers_pipe() {
    let (fx, gone) = dead_worker();
    let mut check = pidwatch_after(&fx, "exec 7>&1", &RESTART)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut pipe = check.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = pipe.read_to_end(&mut out);
        let _ = tx.send(out);
    });
    let code = wait_exit(&mut check);
    // EOF comes when pidwatch exits: the wrapper holds no end of the pipe.
    let eof = rx.recv_timeout(LIMIT);
    let wrapper = fx.wait_restarted("W", gone, LIMIT);
    assert!(
        eof.is_ok(),
        "no EOF on pidwatch's stdout within {LIMIT:?} of its exit, while \
         the restarted worker lives (wrapper {wrapper}: {:?})",
        open_fds(wrapper)
    );
    assert_eq!(code, Some(1));
    assert!(is_alive(wrapper), "the worker lives on");
}

//! c. monit on the same workers and the same wrapper: one `check process`
//! per worker at monit's shortest cycle (`set daemon 1`), run in the
//! foreground as an ordinary user process would (`monit -c <rc> -I`).
//!
//! monit runs `start program` and waits for it to *exit* (up to its 30 s
//! program timeout; then it kills it and calls the start failed), so a
//! foreground wrapper would stall monit's whole cycle for 30 s. The start
//! program is therefore `setsid -f <wrapper> …`: setsid forks, the child
//! makes a new session and execs the wrapper (as pidwatch's own spawn
//! does), and the parent exits at once. The wrapper, orphaned, is adopted
//! by the bench (a child subreaper), which reaps it.

use std::fmt::Write as _;
use std::fs::File;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::fixture::{INITIATIVE, Orchestration, PROMPT, WORKER_COMMAND};
use crate::latency::{self, KillPlan, KillRun};
use crate::procs::{self, Daemon};
use crate::{Bench, BenchResult};

/// monit's cycle in seconds: `set daemon 1`, the shortest it accepts.
pub(crate) const CYCLE_SECONDS: u32 = 1;

/// How long monit may take to start and log that it did.
const READY_LIMIT: Duration = Duration::from_secs(60);

/// How long monit may take to exit after SIGTERM.
const STOP_LIMIT: Duration = Duration::from_secs(60);

/// Victims and pauses of monit's kills.
const SEED: u64 = 0x5EED_0002;

/// The shortest pause between a respawn and the next kill; the pause is
/// uniform in `[PAUSE_LOW, PAUSE_LOW + one cycle)`, so that a kill falls at
/// a random phase of monit's cycle, as a real death does.
pub(crate) const PAUSE_LOW: Duration = Duration::from_millis(50);

/// What one monit run over one worker set gave.
#[derive(Debug, Clone)]
pub(crate) struct MonitPhase {
    /// The timed kills.
    pub(crate) kills: KillRun,
    /// `trying to restart` lines of monit's log.
    pub(crate) restarts_logged: usize,
    /// How it exited on SIGTERM.
    pub(crate) exit: String,
}

/// The monit binary; installs the Debian package when it is missing.
///
/// Errors: monit is missing and apt-get could not install it.
pub(crate) fn ensure_installed() -> BenchResult<PathBuf> {
    procs::which("monit").map_or_else(|| procs::apt_install("monit", "monit"), Ok)
}

/// The first line of `monit -V`.
pub(crate) fn version(monit: &Path) -> String {
    crate::machine::first_line(monit, &["-V"])
}

/// Writes `<root>/monit/monitrc` (mode 0600, as monit demands): the daemon
/// files in the temp dir, and per worker a `check process` with its PID file
/// and a start program that runs the wrapper exactly as pidwatch does.
///
/// Errors: a path holds a space or quote (monit's program line splits on
/// them), or the file cannot be written.
pub(crate) fn write_monitrc(orch: &Orchestration, setsid: &Path) -> BenchResult<PathBuf> {
    let dir = orch.root().join("monit");
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let plain = |p: &Path| -> BenchResult<String> {
        let s = p.display().to_string();
        if s.contains([' ', '"', '\'']) {
            Err(format!(
                "path {s} has a space or quote; monit cannot take it"
            ))
        } else {
            Ok(s)
        }
    };
    let mut rc = String::new();
    let d = plain(&dir)?;
    let _ = writeln!(rc, "set daemon {CYCLE_SECONDS}");
    for (key, file) in [
        ("pidfile", "monit.pid"),
        ("idfile", "monit.id"),
        ("statefile", "monit.state"),
        ("logfile", "monit.log"),
    ] {
        let _ = writeln!(rc, "set {key} {d}/{file}");
    }
    let (setsid, wrapper, logs) = (
        plain(setsid)?,
        plain(&orch.wrapper())?,
        plain(&orch.log_dir())?,
    );
    for w in &orch.workers {
        let (pid_file, work_dir) = (plain(&orch.pid_file(w))?, plain(&orch.work_dir(w))?);
        let _ = writeln!(
            rc,
            "check process {w} with pidfile {pid_file}\n  start program = \"{setsid} -f {wrapper} {w} {pid_file} {logs} {work_dir} {INITIATIVE} {PROMPT} -- sh -c '{WORKER_COMMAND}'\""
        );
    }
    let path = dir.join("monitrc");
    std::fs::write(&path, rc)
        .and_then(|_| std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)))
        .map_err(|e| format!("writing {}: {e}", path.display()))?;
    Ok(path)
}

/// Starts monit over the running workers of `orch`, kills workers and
/// times each restart, then stops monit.
///
/// Errors: monit rejects the control file, does not start, exits, or does
/// not stop on SIGTERM; the kill loop fails.
pub(crate) fn run(bench: &mut Bench, orch: &Orchestration) -> BenchResult<MonitPhase> {
    let monit = bench
        .monit
        .clone()
        .ok_or("monit is missing and could not be installed (apt-get install -y monit)")?;
    let setsid = procs::which("setsid").ok_or("setsid (util-linux) is missing")?;
    let rc = write_monitrc(orch, &setsid)?;
    let syntax = Command::new(&monit)
        .args(["-c"])
        .arg(&rc)
        .arg("-t")
        .output()
        .map_err(|e| format!("running monit -t: {e}"))?;
    if !syntax.status.success() {
        return Err(format!(
            "monit rejects {}: {}",
            rc.display(),
            String::from_utf8_lossy(&syntax.stderr)
        ));
    }
    let log_path = orch.root().join("monit/monit.log");
    let out_path = orch.root().join("monit/monit.out");
    let out =
        File::create(&out_path).map_err(|e| format!("creating {}: {e}", out_path.display()))?;
    let err = out
        .try_clone()
        .map_err(|e| format!("{}: {e}", out_path.display()))?;
    let mut cmd = Command::new(&monit);
    cmd.arg("-c")
        .arg(&rc)
        .arg("-I")
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .current_dir(orch.root());
    let daemon = Daemon::spawn("monit", cmd, &mut bench.reaper)?;
    let pid = daemon.pid;
    procs::wait_until("monit to start", READY_LIMIT, &mut bench.reaper, || {
        !procs::is_live(pid)
            || std::fs::read_to_string(&log_path).is_ok_and(|t| t.contains(" started"))
    })?;
    daemon.ensure_running(&mut bench.reaper)?;
    let plan = KillPlan {
        label: format!("monit, {} workers", orch.workers.len()),
        kills: bench.plan.monit_kills,
        until: None,
        warmup: bench.plan.warmup,
        pause_low: PAUSE_LOW,
        pause_span: Duration::from_secs(CYCLE_SECONDS.into()),
        deadline: Duration::from_secs(60),
        seed: SEED,
    };
    let kills = latency::kill_loop(orch, &mut bench.reaper, &daemon, &plan)?;
    let status = daemon.stop(STOP_LIMIT, &mut bench.reaper)?;
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    Ok(MonitPhase {
        kills,
        restarts_logged: log.matches("trying to restart").count(),
        exit: format!("{status:?}"),
    })
}

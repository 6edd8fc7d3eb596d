//! `pidwatch status`: the report of one observation, with what `check`
//! leaves out (uptime, live processes, memory, CPU, attempts, how the last
//! run ended, the newest journal event, a program's command), once or
//! redrawn in place (`--watch`, until `q` or a signal).
//!
//! [`status_report`] builds the report from an [`Observer`] and the state
//! DB, so that whoever holds them (this command, or the long-running
//! monitor answering a status request) gets the same document.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use chrono::Utc;
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::termios::{self, LocalFlags, SetArg, SpecialCharacterIndices, Termios};
use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM};
use sysinfo::{ProcessRefreshKind, ProcessesToUpdate, System};

use crate::cli::{GlobalArgs, StatusArgs};
use crate::config::{Environment, Settings};
use crate::control::ControlRequest;
use crate::core::{Alive, Member, Verdict, WorkerSnapshot, decide, last_ending, liveness};
use crate::error::{EXIT_FAILURES, EXIT_OK, Error, Result};
use crate::observe::cgroup::Cgroup;
use crate::observe::{Observer, ProcessTable};
use crate::render::{LastEvent, LastExit, ProcessJson, Report, StatusExtra};
use crate::store::statedb::{EventKind, StateDb, format_time};

/// `pidwatch status`: each worker's verdict, PID, uptime, live processes
/// (its incarnation's, or an orphaned or given-up worker's leftovers), their
/// memory and CPU (from the incarnation's cgroup where it has one, else the
/// processes summed through sysinfo), attempts against the cap, how its
/// last run ended, and newest journal event; for a program of a config
/// file also its instance and command. Exit code as `check`. `--watch`
/// redraws it every second until `q` or a signal.
///
/// Errors: as `check`.
pub fn status(global: &GlobalArgs, args: &StatusArgs, env: &Environment) -> Result<i32> {
    if args.watch {
        return watch(global, args, env);
    }
    let frame = status_frame(global, args, env)?;
    print_warnings(&frame.warnings);
    crate::output::print_stdout(&frame.text);
    Ok(frame.code)
}

/// One look: the text for stdout, the warnings for stderr (none under
/// `--quiet`) and the exit code.
struct Frame {
    text: String,
    warnings: Vec<String>,
    code: i32,
}

fn status_frame(global: &GlobalArgs, args: &StatusArgs, env: &Environment) -> Result<Frame> {
    let settings = super::settings(global, env, args.max_restarts)?;
    // --url: the monitor there is asked, whatever is here.
    if settings.remote.is_some()
        && let Some(reply) = super::programs::ask_monitor(&settings, &ControlRequest::Status)?
    {
        let (report, code) = monitor_report(reply.body)?;
        return Ok(Frame {
            text: crate::commands::check::report_text(&settings, &report),
            warnings: if settings.output.quiet {
                Vec::new()
            } else {
                report.warnings
            },
            code,
        });
    }
    let Some((report, code)) = current_report(&settings)? else {
        return Ok(Frame {
            text: crate::commands::check::nothing_to_watch_text(&settings),
            warnings: Vec::new(),
            code: EXIT_OK,
        });
    };
    Ok(Frame {
        text: crate::commands::check::report_text(&settings, &report),
        warnings: if settings.output.quiet {
            Vec::new()
        } else {
            report.warnings
        },
        code,
    })
}

/// The `status` report of the workers now, and the exit code `check`
/// would give: a running monitor's, asked through its control socket (it
/// knows more: its probes' findings), else one observation of this
/// process's own ([`status_report`]). `None`: nothing to watch (no active
/// initiative).
///
/// Errors: as `check`; a monitor's reply that is not a report.
pub fn current_report(settings: &Settings) -> Result<Option<(Report, i32)>> {
    let observer = match Observer::open(settings) {
        Err(Error::NoActiveInitiative(_)) => return Ok(None),
        other => other?,
    };
    let asked = match settings.programs {
        Some(_) => super::programs::ask_monitor(settings, &ControlRequest::Status)?,
        None => None,
    };
    match asked {
        Some(reply) => monitor_report(reply.body).map(Some),
        None => {
            let state = StateDb::open_existing(&settings.paths.state_db)?;
            status_report(settings, &observer, state.as_ref()).map(Some)
        }
    }
}

/// The report and exit code of a monitor's status reply: the report's
/// JSON with `exit_code` added.
///
/// Errors ([`Error::CannotCheck`]): the reply is not such a report.
fn monitor_report(mut body: serde_json::Value) -> Result<(Report, i32)> {
    let code = body
        .as_object_mut()
        .and_then(|m| m.remove("exit_code"))
        .and_then(|c| c.as_i64())
        .and_then(|c| i32::try_from(c).ok())
        .unwrap_or(EXIT_OK);
    let report = Report::from_json(&body.to_string())
        .map_err(|e| Error::CannotCheck(format!("the monitor's status is not a report: {e}")))?;
    Ok((report, code))
}

pub(super) fn print_warnings(warnings: &[String]) {
    for w in warnings {
        crate::output::print_stderr(&format!(
            "pidwatch: warning: {}",
            crate::store::monitor_log::one_line(w)
        ));
    }
}

/// How often `--watch` redraws.
const WATCH_PERIOD: Duration = Duration::from_secs(1);

/// `status --watch`: the report redrawn in place every second, until
/// SIGINT or SIGTERM, or, like top, `q` when stdin is a terminal (then
/// also SIGHUP and SIGQUIT, so that the terminal's modes are always put
/// back). Exit code: the last frame's.
fn watch(global: &GlobalArgs, args: &StatusArgs, env: &Environment) -> Result<i32> {
    let terminal = std::io::stdin().is_terminal();
    let (wake, wake_write) = UnixStream::pair()
        .map_err(|e| Error::CannotCheck(format!("making the signal pipe: {e}")))?;
    let mut signals = vec![SIGINT, SIGTERM];
    if terminal {
        signals.extend([SIGHUP, SIGQUIT]);
    }
    for signal in signals {
        // The handler only writes a byte; the loop below wakes on it.
        wake_write
            .try_clone()
            .and_then(|w| signal_hook::low_level::pipe::register(signal, w))
            .map_err(|e| Error::CannotCheck(format!("installing signal handlers: {e}")))?;
    }
    // The handlers first: no signal can end pidwatch with the modes changed.
    let mut keys = if terminal { Keys::open() } else { None };
    loop {
        let frame = status_frame(global, args, env)?;
        crate::output::print_stdout(&over_last_frame(&frame.text));
        print_warnings(&frame.warnings);
        if wait_for_next_frame(&wake, keys.as_mut(), WATCH_PERIOD)? == Woken::Quit {
            return Ok(frame.code);
        }
    }
}

/// A frame drawn over the last one, without clearing the screen first (no
/// flicker): the cursor home, each line cleared to its end once written,
/// the rest of the screen cleared below.
fn over_last_frame(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 256);
    out.push_str("\x1b[H");
    for line in text.split_inclusive('\n') {
        match line.strip_suffix('\n') {
            Some(body) => {
                out.push_str(body);
                out.push_str("\x1b[K\n");
            }
            None => out.push_str(line),
        }
    }
    out.push_str("\x1b[J");
    out
}

/// What ended a wait between two frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Woken {
    /// Time for the next frame.
    Timeout,
    /// A signal, or `q`: stop watching.
    Quit,
}

/// Waits up to `period` for a signal (a byte on `wake`) or, with `keys`,
/// for `q` or `Q`; other keys are ignored.
///
/// Errors: poll(2) fails other than by EINTR.
fn wait_for_next_frame(
    wake: &UnixStream,
    mut keys: Option<&mut Keys>,
    period: Duration,
) -> Result<Woken> {
    let deadline = Instant::now() + period;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(Woken::Timeout);
        }
        let timeout = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
        let (signalled, key) = {
            let mut fds = vec![PollFd::new(wake.as_fd(), PollFlags::POLLIN)];
            if let Some(k) = keys.as_deref().filter(|k| k.open) {
                fds.push(PollFd::new(k.stdin.as_fd(), PollFlags::POLLIN));
            }
            match poll(&mut fds, timeout) {
                Ok(0) | Err(Errno::EINTR) => continue,
                Ok(_) => {}
                Err(e) => return Err(Error::CannotCheck(format!("waiting for a key: {e}"))),
            }
            let ready = |fd: &PollFd| fd.any().unwrap_or(false);
            (ready(&fds[0]), fds.get(1).is_some_and(ready))
        };
        if signalled {
            return Ok(Woken::Quit);
        }
        if key && let Some(k) = keys.as_deref_mut() {
            let mut buf = [0u8; 64];
            match nix::unistd::read(k.stdin.as_fd(), &mut buf) {
                Ok(n) if n > 0 => {
                    if buf[..n].iter().any(|b| matches!(b, b'q' | b'Q')) {
                        return Ok(Woken::Quit);
                    }
                }
                Err(Errno::EINTR | Errno::EAGAIN) => {}
                // The terminal hung up: no more keys; SIGHUP, if sent, ends it.
                _ => k.open = false,
            }
        }
    }
}

/// stdin when it is a terminal, put in non-canonical, no-echo mode (as
/// top does) so that a key reaches pidwatch as it is pressed and is not
/// shown. Its modes are put back when this is dropped: on `q`, a signal
/// or an error alike.
struct Keys {
    stdin: std::io::Stdin,
    saved: Termios,
    /// Reading goes on (no hang-up or read error yet).
    open: bool,
}

impl Keys {
    /// `None` when stdin is not a terminal, or its modes cannot be set:
    /// then no key is read, and signals alone stop the watch.
    fn open() -> Option<Keys> {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return None;
        }
        let saved = termios::tcgetattr(stdin.as_fd()).ok()?;
        let mut keys_mode = saved.clone();
        keys_mode
            .local_flags
            .remove(LocalFlags::ICANON | LocalFlags::ECHO);
        // A read returns as soon as one byte is there.
        keys_mode.control_chars[SpecialCharacterIndices::VMIN as usize] = 1;
        keys_mode.control_chars[SpecialCharacterIndices::VTIME as usize] = 0;
        termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &keys_mode).ok()?;
        Some(Keys {
            stdin,
            saved,
            open: true,
        })
    }
}

impl Drop for Keys {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(self.stdin.as_fd(), SetArg::TCSANOW, &self.saved);
    }
}

/// Builds the `status` report of one observation by `observer`, with the
/// restart records, incarnations and journal of `state` (none: nothing
/// recorded yet), and the exit code `check` would give (0, or 1 when a
/// worker is dead or given up). Prints nothing: the warnings are in the
/// report. A long-running monitor answers status requests with it from
/// its own observer.
///
/// Errors: the pass cannot observe (as `check`, exit 3), or the journal
/// cannot be read.
pub fn status_report(
    settings: &Settings,
    observer: &Observer,
    state: Option<&StateDb>,
) -> Result<(Report, i32)> {
    let observation = observer.observe(state, None)?;
    let decision = decide(&settings.policy, &observation.snapshot);
    let now = observation.snapshot.now;

    let mut table = ProcessTable::default();
    let processes: BTreeMap<String, Vec<Member>> = observation
        .snapshot
        .workers
        .iter()
        .map(|w| (w.id.clone(), observer.live_processes(w, &mut table)))
        .collect();
    let pids: Vec<sysinfo::Pid> = processes
        .values()
        .flatten()
        .map(|m| sysinfo::Pid::from_u32(m.process.pid as u32))
        .collect();
    // Resource figures are extras: without them, status still reports.
    let mut system = System::new().ok();
    if let Some(system) = system.as_mut() {
        system.refresh_processes_specifics(
            ProcessesToUpdate::Some(&pids),
            false,
            ProcessRefreshKind::nothing().with_memory().with_cpu(),
        );
    }

    let restarts = match state {
        Some(db) => db.event_counts(&observer.scope().id, EventKind::Restarted)?,
        None => BTreeMap::new(),
    };
    let mut extras: BTreeMap<String, StatusExtra> = BTreeMap::new();
    for (w, d) in observation.snapshot.workers.iter().zip(&decision.workers) {
        let last_event = match state {
            Some(db) => db.last_event(&observer.scope().id, &w.id)?,
            None => None,
        };
        let members = processes.get(&w.id).map(Vec::as_slice).unwrap_or_default();
        let view = observer.source.program_view(&w.id);
        let mut extra = StatusExtra {
            attempts: w.record.attempts,
            restarts: restarts.get(&w.id).copied().unwrap_or(0),
            // A program has its own cap.
            max_restarts: w
                .program
                .as_ref()
                .map_or(settings.policy.max_restarts, |p| p.policy.max_restarts),
            last_event: last_event.map(|e| LastEvent {
                at: format_time(e.at),
                kind: e.kind,
                detail: e.detail,
            }),
            incarnation: w.incarnation.as_ref().map(|i| i.id.clone()),
            processes: members
                .iter()
                .map(|m| ProcessJson {
                    pid: m.process.pid,
                    comm: m.comm.clone(),
                })
                .collect(),
            instance: view.as_ref().and_then(|v| v.instance.clone()),
            mode: view.as_ref().map(|v| v.mode),
            command: view.map(|v| v.command),
            last_exit: last_ending(w).map(|e| LastExit {
                at: format_time(e.at),
                exit_status: e.exit_status,
                signal: e.signal.clone(),
                stopped: e.stopped,
            }),
            ..StatusExtra::default()
        };
        if d.verdict == Verdict::Running {
            let started = match liveness(w).0 {
                Ok(Alive::Current { started, .. } | Alive::Adoptable { started, .. }) => {
                    Some(started)
                }
                _ => None,
            };
            extra.uptime_seconds = started.map(|s| (now - s).num_seconds().max(0) as u64);
        }
        resources(&mut extra, w, members, system.as_ref(), now);
        extras.insert(w.id.clone(), extra);
    }

    let mut warnings = observation.warnings;
    warnings.extend(decision.warnings.iter().cloned());
    let report = Report::new(
        observer.scope(),
        &observation.snapshot,
        &decision,
        warnings,
        extras,
    );
    let code = if decision.has_failures() {
        EXIT_FAILURES
    } else {
        EXIT_OK
    };
    Ok((report, code))
}

/// Fills a worker's memory and CPU: from its incarnation's cgroup when it
/// has one (every process of it, the worker's own included), else the sum
/// over its live processes.
fn resources(
    extra: &mut StatusExtra,
    worker: &WorkerSnapshot,
    members: &[Member],
    system: Option<&System>,
    now: chrono::DateTime<Utc>,
) {
    if members.is_empty() {
        return;
    }
    let inc = worker.incarnation.as_ref();
    let lifetime = inc.map(|i| (now - i.started_at).num_milliseconds().max(1) as f64 / 1000.0);
    let processes: Vec<&sysinfo::Process> = members
        .iter()
        .filter_map(|m| system?.process(sysinfo::Pid::from_u32(m.process.pid as u32)))
        .collect();
    let rss: u64 = processes.iter().map(|p| p.memory()).sum();
    let cpu_ms: u64 = processes.iter().map(|p| p.accumulated_cpu_time()).sum();
    let run_s = processes.iter().map(|p| p.run_time()).max().unwrap_or(0) as f64;
    extra.resources_from = Some("processes".into());
    extra.rss_bytes = (!processes.is_empty()).then_some(rss);
    extra.cpu_seconds = (!processes.is_empty()).then_some(cpu_ms as f64 / 1000.0);
    if let Some(cgroup) = inc.and_then(|i| i.cgroup.as_deref()) {
        let cg = Cgroup::at(std::path::PathBuf::from(cgroup));
        if let Ok(usec) = cg.cpu_usage_usec() {
            extra.resources_from = Some("cgroup".into());
            extra.cpu_seconds = Some(usec as f64 / 1e6);
            if let Ok(Some(bytes)) = cg.memory_current() {
                extra.rss_bytes = Some(bytes);
            }
        }
    }
    let span = match (extra.resources_from.as_deref(), lifetime) {
        (Some("cgroup"), Some(life)) => life,
        _ => run_s,
    };
    extra.cpu_percent = match extra.cpu_seconds {
        Some(cpu) if span > 0.0 => Some((cpu * 100.0 / span) as f32),
        _ => None,
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_is_drawn_over_the_last_without_clearing_first() {
        let drawn = over_last_frame("WORKER  VERDICT\nw       running\n");
        assert_eq!(
            drawn,
            "\x1b[HWORKER  VERDICT\x1b[K\nw       running\x1b[K\n\x1b[J"
        );
        assert!(!drawn.contains("\x1b[2J"));
    }

    #[test]
    fn a_signal_ends_the_wait_at_once_and_none_lets_it_time_out() {
        let (wake, write) = UnixStream::pair().unwrap();
        let started = Instant::now();
        let woken = wait_for_next_frame(&wake, None, Duration::from_millis(50)).unwrap();
        assert_eq!(woken, Woken::Timeout);
        assert!(started.elapsed() >= Duration::from_millis(50));
        std::io::Write::write_all(&mut &write, b"x").unwrap();
        let woken = wait_for_next_frame(&wake, None, Duration::from_secs(60)).unwrap();
        assert_eq!(woken, Woken::Quit);
    }
}

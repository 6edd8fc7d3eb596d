//! `pidwatch run`: the long-running monitor.
//!
//! One `epoll_wait(2)` over every event source:
//!
//! - a **pidfd** per running worker (`pidfd_open(2)`, Linux 5.3+), readable
//!   the moment the process exits: that worker is observed, judged and, if
//!   need be, restarted at once;
//! - an **inotify** watch on `pids/`: a PID file created, replaced or removed
//!   is seen at once;
//! - the **signal** self-pipe: TERM/INT stop, HUP reloads, USR1 checks now,
//!   CHLD reaps;
//! - a **timer** (the wait's timeout): the `--interval` sweep over every
//!   worker and the task DB, the end of a backoff, the systemd watchdog.
//!
//! A pass is always observe → decide → act. An event pass observes only
//! the workers concerned (and what they depend on), so its `/proc` and PID
//! file reads do not grow with the number of workers; it reads the task DB
//! whole, once (a few milliseconds at a thousand streams).

pub mod cgroup_events;
pub mod detach;
mod duties;
mod heal;
pub use duties::{CONTROL_SOCKET, REPLY_TIMEOUT};
pub mod lock;
pub mod notify;
pub mod pid_folder;
pub mod signals;
pub mod watches;

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::Utc;
use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::act::Placement;
use crate::act::spawn::describe_status;
use crate::cli::RunArgs;
use crate::commands::check::log_pass_summary;
use crate::config::{self, Settings};
use crate::core::Verdict;
use crate::daemon::cgroup_events::{CgroupEvents, TOKEN_CGROUPS};
use crate::daemon::detach::{Detached, daemonize, remove_own_pid_file};
use crate::daemon::notify::Notifier;
use crate::daemon::pid_folder::PidFolder;
use crate::daemon::signals::Signals;
use crate::daemon::watches::{Watched, Watches};
use crate::error::{EXIT_OK, Error, Result};
use crate::metrics::{MonitorMetrics, PassKind};
use crate::observe::Observer;
use crate::pass;
use crate::source::WorkerDef;
use crate::store::monitor_log::{Level, MonitorLog};
use crate::store::statedb::{EventKind, NewEvent, StateDb};

const TOKEN_SIGNALS: u64 = 0;
use crate::daemon::pid_folder::TOKEN_INOTIFY;
/// The first wait before trying again after a failed pass; it doubles up to
/// the interval.
const FIRST_FAILURE_BACKOFF: Duration = Duration::from_secs(1);

/// Runs the monitor until SIGTERM or SIGINT; returns exit code 0 then.
///
/// Errors (before the loop starts): a bad `--interval` (exit 2), the lock
/// held by another monitor (exit 2), `--daemon` while its PID file names a
/// live pidwatch (exit 2), or anything that stops a check (exit 3).
pub fn run(settings: &Settings, args: &RunArgs) -> Result<i32> {
    let interval = config::seconds("--interval", args.interval)?;
    let lock_wait = config::seconds("--lock-wait", args.lock_wait)?;
    if interval.is_zero() {
        return Err(Error::Config(
            "--interval 0: the sweep needs a period above 0 s".into(),
        ));
    }
    let listen = args
        .listen
        .or_else(|| settings.programs.as_ref().and_then(|f| f.api.listen));
    if let Some(addr) = listen {
        let api = settings.programs.as_ref().map(|f| &f.api);
        if settings.programs.is_none() {
            return Err(Error::Config(
                "--listen serves the control API of workers from a config file; give --config"
                    .into(),
            ));
        }
        if !addr.ip().is_loopback() && api.is_none_or(|a| a.token.is_none()) {
            return Err(Error::Config(format!(
                "--listen {addr}: plain HTTP only on loopback; a non-loopback address needs \
                 the config's [api] token_file"
            )));
        }
    }
    if settings.output.json {
        return Err(Error::Config(
            "run has no --json output: it writes monitor.log's lines; \
             `pidwatch status --json` and `pidwatch history --json` read its state"
                .into(),
        ));
    }
    if settings.policy.auto_restart
        && !settings.spawn.dry_run
        && settings.programs.is_none()
        && let Err(why) = crate::act::spawn::check_wrapper(&settings.paths.wrapper)
    {
        return Err(Error::Config(why));
    }
    // Fail early, on the terminal, for what can be checked before detaching
    // (no active initiative is not a failure: the monitor waits for one).
    match Observer::open(settings) {
        Ok(_) | Err(Error::NoActiveInitiative(_)) => {}
        Err(e) => return Err(e),
    }
    let mut lock = if settings.spawn.dry_run {
        None
    } else {
        Some(lock::acquire_waiting(
            &settings.paths.lock_file,
            lock_wait,
            |held| {
                crate::output::print_stderr(&format!(
                    "pidwatch: {held}; waiting up to {} s for it (--lock-wait)",
                    lock_wait.as_secs_f64()
                ))
            },
        )?)
    };
    let mut daemon: Option<(PathBuf, crate::daemon::detach::Readiness)> = None;
    if args.daemon {
        let path = args
            .pid_file
            .as_deref()
            .map(|p| config::absolute(&std::env::current_dir().unwrap_or_default(), p))
            .unwrap_or_else(|| settings.paths.dir.join("pidwatch.pid"));
        match daemonize(&path, lock.as_mut())? {
            Detached::Parent(code) => return Ok(code),
            Detached::Daemon(readiness) => daemon = Some((path, readiness)),
        }
    }
    let readiness = daemon.as_mut().map(|(_, r)| r);
    let waited = wait_for_initiative(settings, interval, args.daemon, readiness);
    let started = waited.and_then(|go| {
        go.then(|| Monitor::start(settings, interval, args.daemon, listen))
            .transpose()
    });
    let result = match started {
        Ok(None) => Ok(EXIT_OK),
        Ok(Some(mut monitor)) => {
            if let Some((_, readiness)) = daemon.as_mut() {
                readiness.report(EXIT_OK, "ready");
            }
            Ok(monitor.run_loop())
        }
        Err(e) => {
            if let Some((path, readiness)) = daemon.as_mut() {
                // No PID file of a daemon that is not running, by the time
                // the parent hears of it.
                remove_own_pid_file(path);
                readiness.report(e.exit_code(), &e.to_string());
            }
            Err(e)
        }
    };
    if let Some((path, _)) = daemon {
        remove_own_pid_file(&path);
    }
    drop(lock);
    result
}

/// Waits, before the monitor starts, while the memory DB names no active
/// initiative (all done, or none begun): logs `No active initiative found`
/// once, tells systemd and a waiting `--daemon` parent that it is up, and
/// looks again every `interval`, feeding the systemd watchdog meanwhile.
/// Returns whether to start the monitor (false: SIGTERM or SIGINT came).
///
/// Errors: the memory DB or the log cannot be read or opened.
fn wait_for_initiative(
    settings: &Settings,
    interval: Duration,
    daemon: bool,
    readiness: Option<&mut crate::daemon::detach::Readiness>,
) -> Result<bool> {
    match Observer::open(settings) {
        Err(Error::NoActiveInitiative(_)) => {}
        Ok(_) => return Ok(true),
        Err(e) => return Err(e),
    }
    let echo = (!settings.output.quiet && !daemon).then(|| settings.output.console());
    let mut log = MonitorLog::open(&settings.paths.log_file, echo)
        .map_err(|e| Error::io("opening", &settings.paths.log_file, e))?;
    let signals = Signals::install()
        .map_err(|e| Error::CannotCheck(format!("installing signal handlers: {e}")))?;
    log.log(
        Level::Info,
        &format!(
            "{}; looking again every {}s",
            crate::commands::check::NO_ACTIVE_INITIATIVE,
            interval.as_secs_f64()
        ),
    );
    if let Some(readiness) = readiness {
        readiness.report(EXIT_OK, "ready");
    }
    let notifier = Notifier::from_env();
    notifier.ready("waiting for an active initiative");
    let wait = notifier
        .watchdog_interval()
        .map_or(interval, |w| w.min(interval));
    loop {
        let mut fds = [nix::poll::PollFd::new(
            signals.fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        let millis = u16::try_from(wait.as_millis()).unwrap_or(u16::MAX);
        let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(millis));
        if signals.take().shutdown {
            log.log(Level::Info, "Received shutdown signal");
            notifier.stopping();
            return Ok(false);
        }
        notifier.watchdog();
        match Observer::open(settings) {
            Err(Error::NoActiveInitiative(_)) => {}
            Ok(_) => return Ok(true),
            Err(e) => return Err(e),
        }
    }
}

/// The monitor's state between passes.
struct Monitor {
    settings: Settings,
    interval: Duration,
    observer: Observer,
    state: Option<StateDb>,
    placement: Placement,
    /// Which containment was chosen, and why: logged at start.
    placement_line: String,
    /// The active initiative went away (completed): nothing is watched
    /// until one is active again.
    idle: bool,
    log: MonitorLog,
    signals: Signals,
    notifier: Notifier,
    epoll: Epoll,
    pid_folder: PidFolder,
    /// Watches on running incarnations' `cgroup.events`.
    cgroup_events: CgroupEvents,
    watches: Watches,
    /// Workers as last read from the source.
    workers: BTreeMap<String, WorkerDef>,
    /// The latest verdict of every worker.
    verdicts: BTreeMap<String, Verdict>,
    /// The failing workers last logged, to log a change once.
    failing: Option<BTreeSet<String>>,
    /// Warnings already logged.
    warned: BTreeSet<String>,
    /// Workers already warned about for want of a pidfd or a cgroup watch.
    watch_warned: BTreeSet<String>,
    /// Processes this monitor started, by PID, to reap and journal.
    children: BTreeMap<i32, crate::act::Spawned>,
    /// Workers to observe again at the next wake.
    retry: BTreeSet<String>,
    restarts: u64,
    /// When passes started failing (local time), while they do.
    failing_since: Option<String>,
    /// The last failure logged, to log each distinct one once.
    last_failure: Option<String>,
    /// The wait before the next try after a failed pass.
    failure_backoff: Duration,
    /// Failed passes in a row.
    failed_tries: u32,
    next_sweep: Instant,
    next_due: Option<chrono::DateTime<Utc>>,
    watchdog: Option<Duration>,
    /// When `WATCHDOG=1` was last sent (a cell: restarts ping from inside a pass).
    last_ping: Cell<Instant>,
    passes_since_ping: u64,
    /// Probes, stops, starts asked for, the control socket: programs'.
    duties: duties::Duties,
    /// Pass durations, respawn latencies, heals: for `GET /metrics`.
    metrics: MonitorMetrics,
    /// The TCP address the control API is also served on.
    listen: Option<std::net::SocketAddr>,
    /// Passes completed: a status report is built again only after one.
    passes: u64,
    /// What `GET /health` reads: the last pass, or why it failed.
    health: std::sync::Arc<crate::control::server::HealthBoard>,
}

impl Monitor {
    fn start(
        settings: &Settings,
        interval: Duration,
        daemon: bool,
        listen: Option<std::net::SocketAddr>,
    ) -> Result<Monitor> {
        let settings = settings.clone();
        let echo = (!settings.output.quiet && !daemon).then(|| settings.output.console());
        let log = MonitorLog::open(&settings.paths.log_file, echo)
            .map_err(|e| Error::io("opening", &settings.paths.log_file, e))?;
        let observer = Observer::open(&settings)?;
        let state = if settings.policy.auto_restart && !settings.spawn.dry_run {
            Some(StateDb::open(&settings.paths.state_db)?)
        } else {
            StateDb::open_existing(&settings.paths.state_db)?
        };
        if let Some(state) = &state {
            state.defer_checkpoints()?;
        }
        let (placement, placement_line) = if settings.policy.auto_restart && !settings.spawn.dry_run
        {
            Placement::choose(settings.spawn.containment).map_err(Error::Config)?
        } else {
            (
                Placement::Session,
                "containment: none (not restarting)".to_string(),
            )
        };
        let signals = Signals::install()
            .map_err(|e| Error::CannotCheck(format!("installing signal handlers: {e}")))?;
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)
            .map_err(|e| Error::CannotCheck(format!("epoll_create1: {e}")))?;
        epoll
            .add(
                signals.fd(),
                EpollEvent::new(EpollFlags::EPOLLIN, TOKEN_SIGNALS),
            )
            .map_err(|e| Error::CannotCheck(format!("epoll_ctl: {e}")))?;
        let duties = duties::Duties::new(&epoll)
            .map_err(|e| Error::CannotCheck(format!("eventfd for probes and stops: {e}")))?;
        let notifier = Notifier::from_env();
        let fd_limit = crate::act::spawn::raise_fd_limit();
        let now = Instant::now();
        let mut monitor = Monitor {
            watchdog: notifier.watchdog_interval(),
            settings,
            interval,
            observer,
            state,
            placement,
            placement_line,
            idle: false,
            log,
            signals,
            notifier,
            epoll,
            pid_folder: PidFolder::default(),
            cgroup_events: CgroupEvents::default(),
            watches: Watches::new(std::env::var_os("PIDWATCH_TEST_NO_PIDFD").is_none()),
            workers: BTreeMap::new(),
            verdicts: BTreeMap::new(),
            failing: None,
            warned: BTreeSet::new(),
            watch_warned: BTreeSet::new(),
            children: BTreeMap::new(),
            retry: BTreeSet::new(),
            restarts: 0,
            failing_since: None,
            last_failure: None,
            failure_backoff: FIRST_FAILURE_BACKOFF,
            failed_tries: 0,
            next_sweep: now,
            next_due: None,
            last_ping: Cell::new(now),
            passes_since_ping: 0,
            duties,
            metrics: MonitorMetrics::new(),
            listen,
            passes: 0,
            // A pass older than two intervals (and a minute) is a stuck one.
            health: std::sync::Arc::new(crate::control::server::HealthBoard::new(
                interval * 2 + Duration::from_secs(60),
            )),
        };
        if let Err(e) = fd_limit {
            monitor.log.log(
                Level::Warning,
                &format!("cannot raise the open-file limit: {e}; many workers may exhaust it"),
            );
        }
        monitor.watch_pid_dir();
        monitor.serve_control();
        if matches!(monitor.placement, Placement::Cgroup(_))
            && let Err(why) = monitor.cgroup_events.arm(&monitor.epoll)
        {
            monitor.log.log(Level::Warning, &why);
        }
        Ok(monitor)
    }

    fn journal(&self, kind: EventKind, event: NewEvent<'_>) {
        if let Some(state) = &self.state
            && let Err(e) = state.journal(Utc::now(), Some(&self.observer.scope().id), kind, event)
        {
            crate::output::print_stderr(&format!("pidwatch: {e}"));
        }
    }

    /// Watches `pids/` for PID files created, replaced or removed; logs
    /// why when it cannot (PID files are then seen by the sweep only).
    fn watch_pid_dir(&mut self) {
        let Some(dir) = self.observer.source.pid_dir() else {
            return;
        };
        if let Err(why) = self.pid_folder.watch(&self.epoll, &dir) {
            self.log.log(Level::Warning, &why);
        }
    }

    /// The workers named by PID file events; `None` asks for a full sweep.
    fn read_inotify(&mut self) -> Option<BTreeSet<String>> {
        self.pid_folder.read(&self.epoll, &self.workers)
    }

    fn status_line(&self) -> String {
        let count = |v: Verdict| self.verdicts.values().filter(|x| **x == v).count();
        format!(
            "{} running, {} completed, {} not started, {} stopped, {} waiting, {} given up, \
             {} dead; {} restart(s)",
            count(Verdict::Running),
            count(Verdict::Completed),
            count(Verdict::NotStarted),
            count(Verdict::Stopped),
            count(Verdict::Waiting),
            count(Verdict::GivenUp),
            count(Verdict::Dead),
            self.restarts
        )
    }

    /// One pass over every worker (`None`) or some. Returns whether it
    /// completed.
    fn pass(&mut self, scope: Option<&BTreeSet<String>>) -> bool {
        if self.idle {
            return true;
        }
        let started = Instant::now();
        let ctx = pass::Context {
            settings: &self.settings,
            observer: &self.observer,
            state: self.state.as_ref(),
            placement: &self.placement,
        };
        let mut result = match pass::observe_and_decide(&ctx, scope) {
            Ok(r) => r,
            Err(e) => {
                self.pass_failed(e);
                return false;
            }
        };
        if let Some(error) = self.failing_since.take() {
            self.log.log(
                Level::Success,
                &format!("Checks work again (failing since {error})"),
            );
            self.failure_backoff = FIRST_FAILURE_BACKOFF;
            self.last_failure = None;
            self.failed_tries = 0;
        }
        // Scoped passes see part of the graph: their dependency warnings are
        // partial; a sweep logs new ones. Warnings about one worker's
        // evidence are logged once, whichever pass finds them.
        for w in &result.warnings {
            if !self.warned.contains(w) && (scope.is_none() || w.starts_with("PID file of worker"))
            {
                self.log.log(Level::Warning, w);
            }
        }
        if scope.is_none() {
            self.warned = result.warnings.iter().cloned().collect();
        } else {
            self.warned.extend(
                result
                    .warnings
                    .iter()
                    .filter(|w| w.starts_with("PID file of worker"))
                    .cloned(),
            );
        }

        match scope {
            None => {
                let gone: Vec<String> = self
                    .verdicts
                    .keys()
                    .filter(|id| !result.workers.contains_key(*id))
                    .cloned()
                    .collect();
                for id in gone {
                    self.watches.remove(&self.epoll, &id);
                    self.verdicts.remove(&id);
                }
                self.workers = std::mem::take(&mut result.workers);
                self.next_due = result.decision.next_due;
            }
            Some(_) => {
                self.workers.append(&mut result.workers);
                if let Some(due) = result.decision.next_due {
                    self.next_due = Some(self.next_due.map_or(due, |d| d.min(due)));
                }
            }
        }
        for w in &result.decision.workers {
            self.verdicts.insert(w.id.clone(), w.verdict);
        }
        self.log_failures();

        if self.settings.policy.auto_restart {
            // A pass that restarts several workers can take a while (stop
            // timeouts, spawn timeouts); the loop is making progress, so the
            // watchdog is fed between restarts.
            let ctx = pass::Context {
                settings: &self.settings,
                observer: &self.observer,
                state: self.state.as_ref(),
                placement: &self.placement,
            };
            let (notifier, watchdog, last_ping) = (&self.notifier, self.watchdog, &self.last_ping);
            let feed = move || {
                if let Some(wd) = watchdog
                    && last_ping.get().elapsed() >= wd
                {
                    notifier.watchdog();
                    last_ping.set(Instant::now());
                }
            };
            // Workers being stopped on purpose are judged, not acted on.
            let held = &self.duties.held;
            result
                .decision
                .actions
                .retain(|a| !held.contains_key(a.worker()));
            // Survivors stopped before a start: the start comes at the
            // next pass, soon.
            let survivors = result
                .decision
                .actions
                .iter()
                .any(|a| matches!(a, crate::core::Action::StopOld { restart: None, .. }));
            if let Err(e) = pass::act(&ctx, &mut result, &mut self.log, Some(&feed)) {
                self.log
                    .log(Level::Error, &format!("Restart step failed: {e}"));
            }
            for s in std::mem::take(&mut result.spawned) {
                self.children.insert(s.pid, s);
            }
            self.restarts += result.restarted.len() as u64;
            // Restarts are confirmed by now: the pass found them dead at its start.
            self.metrics.observe_heals(&result, started.elapsed());
            // Restarted workers are watched from now on, and what waits
            // for them is looked at again.
            for (started, _) in &result.restarted {
                self.retry.insert(started.clone());
                self.retry.extend(
                    self.workers
                        .values()
                        .filter(|w| w.dependencies.contains(started))
                        .map(|w| w.id.clone()),
                );
            }
            // A failed start or restart is judged again at once: its next
            // attempt is due by the backoff, counted against the cap.
            self.retry
                .extend(result.failed.iter().map(|(w, _)| w.clone()));
            if survivors {
                let soon = Utc::now() + chrono::Duration::seconds(1);
                self.next_due = Some(self.next_due.map_or(soon, |d| d.min(soon)));
            }
        }
        self.after_pass(&result);

        for d in &result.decision.workers {
            match result.cgroups.get(&d.id) {
                Some(cgroup) => {
                    if let Err(why) = self.cgroup_events.ensure(&self.epoll, &d.id, cgroup)
                        && self.watch_warned.insert(format!("cgroup {}", d.id))
                    {
                        self.log.log(Level::Warning, &why);
                    }
                }
                None => self.cgroup_events.remove(&d.id),
            }
            let Some(wrapper) = result.running.get(&d.id) else {
                self.watches.remove(&self.epoll, &d.id);
                continue;
            };
            let watched = self.watches.ensure(
                &self.epoll,
                &self.observer.procfs,
                &d.id,
                wrapper.pid,
                wrapper.start_ticks,
            );
            match watched {
                Watched::Yes => {}
                Watched::Changed => {
                    self.retry.insert(d.id.clone());
                }
                Watched::Unavailable(Errno::ENOSYS) => {} // logged once at start
                Watched::Unavailable(e) => {
                    let warning = format!(
                        "cannot watch worker {} (PID {}) through a pidfd: {e}; \
                         its death is seen by inotify or the sweep",
                        d.id, wrapper.pid
                    );
                    if self.watch_warned.insert(d.id.clone()) {
                        self.log.log(Level::Warning, &warning);
                    }
                }
            }
        }
        self.passes_since_ping += 1;
        self.passes += 1;
        self.notifier.status(&self.status_line());
        self.health.pass_done();
        let kind = if scope.is_none() {
            PassKind::Sweep
        } else {
            PassKind::Event
        };
        self.metrics.observe_pass(kind, started.elapsed());
        true
    }

    /// A pass could not read the world (the task DB locked past its timeout,
    /// its schema gone): log it once, forget pending due times (they would
    /// make the loop spin) and try again with a sweep after a backoff that
    /// doubles up to the interval.
    fn pass_failed(&mut self, error: Error) {
        let text = error.to_string();
        self.health.pass_failed(text.clone());
        if self.last_failure.as_deref() != Some(text.as_str()) {
            self.log.log(
                Level::Error,
                &format!(
                    "Check failed: {text}; trying again in {:.0} s",
                    self.failure_backoff.as_secs_f64()
                ),
            );
            self.last_failure = Some(text);
        }
        let since = self
            .failing_since
            .get_or_insert_with(|| chrono::Local::now().format("%H:%M:%S").to_string())
            .clone();
        self.failed_tries += 1;
        self.notifier.status(&format!(
            "checks failing since {since} ({} tries): {}",
            self.failed_tries,
            self.last_failure.as_deref().unwrap_or("")
        ));
        self.next_due = None;
        self.retry.clear();
        self.next_sweep = Instant::now() + self.failure_backoff;
        self.failure_backoff = (self.failure_backoff * 2).min(self.interval);
    }

    /// Logs the original's pass summary when the set of failing workers changed.
    fn log_failures(&mut self) {
        let failing: BTreeSet<String> = self
            .verdicts
            .iter()
            // A worker being stopped on purpose is no failure.
            .filter(|(id, v)| v.is_failure() && !self.duties.held.contains_key(*id))
            .map(|(id, _)| id.clone())
            .collect();
        if self.failing.as_ref() == Some(&failing) {
            return;
        }
        let ids: Vec<&str> = failing.iter().map(String::as_str).collect();
        log_pass_summary(&mut self.log, &ids, self.settings.policy.auto_restart);
        self.failing = Some(failing);
    }

    fn sweep(&mut self) -> bool {
        self.watch_pid_dir();
        self.next_sweep = Instant::now() + self.interval;
        if !self.follow_initiative() {
            return true;
        }
        // (A failed pass sets an earlier retry.)
        self.pass(None)
    }

    /// Follows the memory DB's active initiative at every sweep (unless
    /// `--initiative` names one): switches to a new one, logging it, and
    /// goes idle while there is none. Returns whether there is one to watch.
    fn follow_initiative(&mut self) -> bool {
        if self.settings.initiative.is_some() {
            return true;
        }
        match crate::observe::resolve_initiative(&self.settings) {
            Ok(active) if &active == self.observer.scope() && !self.idle => true,
            Ok(_) => match Observer::open(&self.settings) {
                Ok(observer) => {
                    self.switch_to(observer);
                    true
                }
                Err(e) => {
                    self.pass_failed(e);
                    false
                }
            },
            Err(Error::NoActiveInitiative(_)) => {
                if !self.idle {
                    self.log
                        .log(Level::Info, crate::commands::check::NO_ACTIVE_INITIATIVE);
                    self.forget_workers();
                    self.idle = true;
                    self.notifier
                        .status("no active initiative; nothing to watch");
                }
                false
            }
            // The memory DB unreadable for a moment: watch on as before.
            Err(_) => !self.idle,
        }
    }

    /// Watches `observer`'s initiative from now on, logging the switch.
    fn switch_to(&mut self, observer: Observer) {
        if observer.scope() != self.observer.scope() || self.idle {
            self.log.log(
                Level::Info,
                &format!("Monitoring initiative: {}", observer.scope().name),
            );
            self.forget_workers();
        }
        self.observer = observer;
        self.idle = false;
    }

    /// Forgets what was watched of the previous initiative.
    fn forget_workers(&mut self) {
        self.watches.clear(&self.epoll);
        self.verdicts.clear();
        self.workers.clear();
        self.failing = None;
        self.retry.clear();
        self.next_due = None;
    }

    /// Reads, without reaping, how the children started for `scope` (all
    /// of them: `None`) that exited ended, and lets their source record it
    /// (a program's exit file) before the pass that judges them. The child
    /// stays a zombie, its PID not reusable, until [`Monitor::reap`].
    fn note_exits(&mut self, scope: Option<&BTreeSet<String>>) {
        use nix::sys::wait::{Id, waitid};
        for child in self.children.values_mut() {
            if child.noted || scope.is_some_and(|s| !s.contains(&child.worker)) {
                continue;
            }
            let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
            let Ok(status) = waitid(Id::Pid(Pid::from_raw(child.pid)), flags) else {
                continue;
            };
            if let Some(raw) = crate::act::spawn::raw_status(status) {
                self.observer.source.child_exited(
                    &child.worker,
                    &child.incarnation,
                    child.pid,
                    raw,
                );
                child.noted = true;
            }
        }
    }

    /// Reaps every exited child this monitor started (the processes of
    /// [`Monitor::children`]) and journals its exit status.
    ///
    /// Only those, by PID: probes and stop commands run on other threads,
    /// which reap their own children. A peek (`waitid(P_ALL, WNOWAIT)`)
    /// first says whether any child exited at all, so a wake with nothing to
    /// reap costs one system call, not one per worker.
    fn reap(&mut self) {
        use nix::sys::wait::{Id, waitid};
        let peek = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
        loop {
            let pid = match waitid(Id::All, peek) {
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return,
                Err(Errno::EINTR) => continue,
                Err(_) => return,
                Ok(status) => status.pid(),
            };
            match pid {
                Some(pid) if self.children.contains_key(&pid.as_raw()) => {
                    self.reap_child(pid.as_raw());
                }
                // Another thread's child (a probe): look at ours one by one.
                _ => {
                    let pids: Vec<i32> = self.children.keys().copied().collect();
                    for pid in pids {
                        self.reap_child(pid);
                    }
                    return;
                }
            }
        }
    }

    /// Reaps child `pid` if it exited: lets its source record how, logs
    /// and journals it.
    fn reap_child(&mut self, pid: i32) {
        let status = loop {
            match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
                Err(Errno::EINTR) => continue,
                // Reaped elsewhere (cannot happen for our own): forget it.
                Err(Errno::ECHILD) => {
                    self.children.remove(&pid);
                    return;
                }
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(status) => break status,
            }
        };
        let Some(desc) = describe_status(status) else {
            return;
        };
        let Some(child) = self.children.remove(&pid) else {
            return;
        };
        let worker = child.worker;
        if !child.noted
            && let Some(raw) = crate::act::spawn::raw_status(status)
        {
            self.observer
                .source
                .child_exited(&worker, &child.incarnation, child.pid, raw);
        }
        self.log.log(
            Level::Info,
            &format!("Process of worker {worker} (PID {pid}) exited ({desc})"),
        );
        self.journal(
            EventKind::ChildExited,
            NewEvent {
                worker: Some(&worker),
                pid: Some(pid),
                detail: Some(desc),
                ..NewEvent::default()
            },
        );
    }

    /// SIGHUP: reopen `monitor.log`, find the initiative again, reopen the
    /// task DB.
    fn reload(&mut self) {
        self.notifier.reloading();
        if let Err(e) = self.log.reopen() {
            crate::output::print_stderr(&format!(
                "pidwatch: reopening {}: {e}",
                self.log.path().display()
            ));
        }
        if self.settings.programs.is_some() {
            match self.reload_config() {
                Ok(_) => {}
                Err(why) => self.log.log(
                    Level::Error,
                    &format!(
                        "Reload refused, the running set stays as it was: {}",
                        why.lines().collect::<Vec<_>>().join("; ")
                    ),
                ),
            }
            return;
        }
        self.log.log(
            Level::Info,
            "Reloading: monitor.log reopened, settings read again",
        );
        match Observer::open(&self.settings) {
            Ok(observer) => self.switch_to(observer),
            Err(Error::NoActiveInitiative(_)) => {} // the sweep that follows says so
            Err(e) => self.log.log(
                Level::Error,
                &format!("Reload failed, keeping the old settings: {e}"),
            ),
        }
    }

    fn timeout(&self) -> Duration {
        let now = Instant::now();
        let mut wake = self.next_sweep;
        if let Some(due) = self.next_due {
            let wait = (due - Utc::now()).to_std().unwrap_or(Duration::ZERO);
            wake = wake.min(now + wait);
        }
        if let Some(wd) = self.watchdog {
            wake = wake.min(self.last_ping.get() + wd);
        }
        if let Some(duty) = self.duties.next_wake(self.settings.programs.is_some()) {
            wake = wake.min(duty);
        }
        if !self.retry.is_empty() {
            wake = now;
        }
        wake.saturating_duration_since(now)
    }

    fn run_loop(&mut self) -> i32 {
        let policy = &self.settings.policy;
        self.log.log(
            Level::Info,
            &format!(
                "Starting monitor daemon (interval: {}s, max_restarts: {})",
                self.interval.as_secs_f64(),
                policy.max_restarts
            ),
        );
        self.log.log(
            Level::Info,
            &format!("Monitoring initiative: {}", self.observer.scope().name),
        );
        self.log.log(Level::Info, &self.placement_line.clone());
        self.journal(
            EventKind::MonitorStarted,
            NewEvent {
                pid: Some(std::process::id() as i32),
                detail: Some(format!(
                    "interval {}s, auto-restart {}, max_restarts {}",
                    self.interval.as_secs_f64(),
                    policy.auto_restart,
                    policy.max_restarts
                )),
                ..NewEvent::default()
            },
        );
        self.sweep();
        if !self.watches.supported {
            self.log.log(
                Level::Warning,
                &format!(
                    "pidfd_open is not supported by this kernel (ENOSYS): deaths are noticed by the sweep every {}s",
                    self.interval.as_secs_f64()
                ),
            );
        }
        self.notifier.ready(&self.status_line());

        let mut events = vec![EpollEvent::empty(); 64];
        loop {
            let timeout = self.timeout();
            let millis = timeout.as_millis().min(u128::from(u16::MAX)) as u16;
            let n = match self.epoll.wait(&mut events, EpollTimeout::from(millis)) {
                Ok(n) => n,
                Err(Errno::EINTR) => 0,
                Err(e) => {
                    self.log.log(Level::Error, &format!("epoll_wait: {e}"));
                    std::thread::sleep(Duration::from_millis(100));
                    0
                }
            };
            let mut scope: BTreeSet<String> = std::mem::take(&mut self.retry);
            let (mut sweep, mut shutdown, mut reload) = (false, false, false);
            let mut requests = false;
            for ev in &events[..n] {
                match ev.data() {
                    TOKEN_SIGNALS => {
                        let p = self.signals.take();
                        shutdown |= p.shutdown;
                        reload |= p.reload;
                        sweep |= p.check_now;
                    }
                    TOKEN_INOTIFY => match self.read_inotify() {
                        Some(workers) => scope.extend(workers),
                        None => sweep = true,
                    },
                    TOKEN_CGROUPS => scope.extend(self.cgroup_events.read()),
                    duties::TOKEN_DUTIES => self.take_done(),
                    // Answered after the pass: a death in the same wake-up
                    // is restarted first.
                    duties::TOKEN_CONTROL => requests = true,
                    token => {
                        if let Some(worker) = self.watches.fired(&self.epoll, token) {
                            scope.insert(worker);
                        }
                    }
                }
            }
            if shutdown {
                self.reap();
                break;
            }
            if reload {
                self.reload();
                sweep = true;
            }
            let now = Instant::now();
            let due = self.next_due.is_some_and(|d| d <= Utc::now());
            if sweep || due || now >= self.next_sweep {
                self.note_exits(None);
                self.sweep();
            } else if !scope.is_empty() {
                self.note_exits(Some(&scope));
                self.pass(Some(&scope));
            }
            if requests {
                self.take_requests();
            }
            self.run_due_probes();
            self.rotate_logs();
            self.check_starts();
            // Children last: while a wrapper of ours is an unreaped zombie, its
            // PID cannot be reused, so its survivors were safe to stop above.
            self.reap();
            // The WAL's checkpoint when nothing waits, not in an event
            // pass's commit (StateDb::defer_checkpoints).
            if self.retry.is_empty()
                && let Some(state) = &self.state
                && let Err(e) = state.checkpoint_if_due()
            {
                crate::output::print_stderr(&format!("pidwatch: {e}"));
            }
            if reload {
                self.notifier.ready(&self.status_line());
            }
            if let Some(wd) = self.watchdog
                && Instant::now() >= self.last_ping.get() + wd
            {
                // WATCHDOG=1 only after a completed pass: prove the pipeline
                // works, not just the loop.
                if self.passes_since_ping > 0 || self.sweep() {
                    self.notifier.watchdog();
                }
                self.passes_since_ping = 0;
                self.last_ping.set(Instant::now());
            }
        }

        self.log.log(Level::Info, "Received shutdown signal");
        self.journal(
            EventKind::MonitorStopped,
            NewEvent {
                pid: Some(std::process::id() as i32),
                ..NewEvent::default()
            },
        );
        self.notifier.stopping();
        self.watches.clear(&self.epoll);
        EXIT_OK
    }
}

//! `act`: carries out the actions of a decision, records each step in the
//! state DB and `monitor.log`, and reports facts back to the pass. It never
//! decides: what to stop, when to spawn and whether to give up come from
//! `decide`.

pub mod child;
pub mod probe;
pub mod spawn;
pub mod stop;

use chrono::Utc;

use crate::config::{Containment, Settings};
use crate::core::{Action, Ending, Incarnation, Member, Origin, ProcessId, RestartAttempt};
use crate::observe::Observer;
use crate::observe::cgroup::{Cgroup, Delegation};
use crate::observe::taskdb::Stream;
use crate::source::Started;
use crate::store::monitor_log::{Level, MonitorLog};
use crate::store::statedb::{EventKind, NewEvent, StateDb, describe_ending};

/// A process the monitor started, to be reaped when it exits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spawned {
    /// The worker id.
    pub worker: String,
    /// The process's PID (our child): the wrapper, the program, or a
    /// program's start command.
    pub pid: i32,
    /// The incarnation it was started for.
    pub incarnation: String,
    /// Its exit was seen and handed to its source (it awaits reaping).
    pub noted: bool,
}

/// What happened when an action was carried out, for the pass to feed back
/// into the next decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fact {
    /// The old incarnation's processes were sent their signals, as part of
    /// restart attempt `attempt` (counted now).
    OldStopped {
        /// The worker id.
        worker: String,
        /// The attempt.
        attempt: u32,
    },
    /// A new incarnation runs: its PID file names the wrapper spawned.
    Restarted {
        /// The worker id.
        worker: String,
        /// The wrapper's PID.
        pid: i32,
    },
    /// A start or restart failed; a restart's attempt stays counted.
    Failed {
        /// The worker id.
        worker: String,
        /// Why, for the log and whoever asked for the start.
        why: String,
    },
}

/// Where new incarnations go: their own cgroup, or (without one) their own
/// session and the incarnation id in their environment.
pub enum Placement {
    /// Each incarnation in a cgroup under this delegated base.
    Cgroup(Delegation),
    /// No cgroup: the session and the incarnation id.
    Session,
}

impl Placement {
    /// Chooses the placement for `--containment` (ARCHITECTURE.md,
    /// "Containment"): `auto` takes a cgroup where one can be had,
    /// `cgroup` insists, `session` never tries. Returns it and one line
    /// saying which, and why, for the log.
    ///
    /// Errors: `cgroup` was asked for and none can be had (the reason).
    pub fn choose(containment: Containment) -> Result<(Placement, String), String> {
        match containment {
            Containment::Session => Ok((
                Placement::Session,
                "containment: session (asked for); workers are told apart by their incarnation id"
                    .into(),
            )),
            Containment::Cgroup => Delegation::probe(true)
                .map(|d| {
                    let line = format!("containment: cgroup, under {}", d.base().display());
                    (Placement::Cgroup(d), line)
                })
                .map_err(|why| format!("--containment cgroup: {why}")),
            Containment::Auto => Ok(match Delegation::probe(false) {
                Ok(d) => {
                    let line = format!("containment: cgroup, under {}", d.base().display());
                    (Placement::Cgroup(d), line)
                }
                Err(why) => (
                    Placement::Session,
                    format!(
                        "containment: session ({why}); workers are told apart by their incarnation id"
                    ),
                ),
            }),
        }
    }
}

/// Carries out actions for one orchestrator dir and initiative.
pub struct Actor<'a> {
    settings: &'a Settings,
    observer: &'a Observer,
    state: Option<&'a StateDb>,
    placement: &'a Placement,
    /// Wrappers started by this actor, for the caller to reap.
    pub spawned: Vec<Spawned>,
    /// What happened, in order.
    pub facts: Vec<Fact>,
    /// Called between actions, to show the caller that work goes on (the
    /// monitor feeds the systemd watchdog from it).
    pub progress: Option<&'a dyn Fn()>,
}

impl<'a> Actor<'a> {
    /// An actor; `state` is `None` when nothing may be recorded (dry run).
    pub fn new(
        settings: &'a Settings,
        observer: &'a Observer,
        state: Option<&'a StateDb>,
        placement: &'a Placement,
    ) -> Self {
        Actor {
            settings,
            observer,
            state,
            placement,
            spawned: Vec::new(),
            facts: Vec::new(),
            progress: None,
        }
    }

    fn initiative(&self) -> &str {
        &self.observer.scope().id
    }

    /// Records verdicts that changed since the last recorded pass, and
    /// journals `dead_detected` for workers that became dead or given up.
    pub fn record_verdicts(&self, at: chrono::DateTime<Utc>, decision: &crate::core::Decision) {
        let Some(state) = self.state else { return };
        let changed: Vec<(&str, crate::core::Verdict, Option<i32>, Option<String>)> = decision
            .workers
            .iter()
            .filter(|w| w.changed)
            .map(|w| {
                (
                    w.id.as_str(),
                    w.verdict,
                    w.pid,
                    w.reason.as_ref().map(|r| r.to_string()),
                )
            })
            .collect();
        if let Err(e) = state.record_verdicts(at, self.initiative(), &changed) {
            crate::output::print_stderr(&format!("pidwatch: {e}"));
        }
    }

    fn journal(&self, kind: EventKind, event: NewEvent<'_>) {
        if let Some(state) = self.state
            && let Err(e) = state.journal(Utc::now(), Some(self.initiative()), kind, event)
        {
            crate::output::print_stderr(&format!("pidwatch: {e}"));
        }
    }

    /// Carries out `actions`, in order.
    pub fn act(&mut self, log: &mut MonitorLog, actions: &[Action]) {
        let dry_run = self.settings.spawn.dry_run;
        for action in actions {
            if let Some(progress) = self.progress {
                progress();
            }
            if dry_run {
                if let Some(line) = dry_run_line(action) {
                    log.log(Level::Info, &format!("[dry-run] {line}"));
                }
                continue;
            }
            match action {
                Action::Adopt {
                    worker,
                    wrapper,
                    invocation,
                    session,
                } => self.adopt(log, worker, *wrapper, invocation.as_deref(), *session),
                Action::EndIncarnation {
                    worker,
                    incarnation,
                    ending,
                    cgroup,
                } => self.end(log, worker, incarnation, ending, cgroup.as_deref()),
                Action::StopOld {
                    worker,
                    members,
                    cgroups,
                    restart,
                } => self.stop_old(log, worker, members, cgroups, *restart),
                Action::Start { worker } => self.start(log, worker),
                Action::Spawn { worker, restart } => self.spawn(log, worker, *restart),
                Action::RestartFailed {
                    worker,
                    attempt,
                    why,
                } => self.failed(log, worker, *attempt, why.clone()),
                Action::GiveUp { worker, max } => {
                    log.log(
                        Level::Error,
                        &format!("Worker {worker} has reached max restart limit ({max})"),
                    );
                    if let Some(state) = self.state {
                        let detail = format!("{max} restart attempt(s) used");
                        if let Err(e) = state.give_up(Utc::now(), self.initiative(), worker, detail)
                        {
                            log.log(Level::Error, &e.to_string());
                        }
                    }
                }
                Action::ResetAttempts { worker } => {
                    log.log(
                        Level::Info,
                        &format!(
                            "Worker {worker} ran stably for {} s; restart attempts reset",
                            self.settings.policy.stable_after.as_secs()
                        ),
                    );
                    if let Some(state) = self.state
                        && let Err(e) = state.reset(
                            Utc::now(),
                            self.initiative(),
                            worker,
                            EventKind::AttemptsReset,
                            false,
                        )
                    {
                        log.log(Level::Error, &e.to_string());
                    }
                }
            }
        }
    }

    fn adopt(
        &mut self,
        log: &mut MonitorLog,
        worker: &str,
        wrapper: ProcessId,
        invocation: Option<&str>,
        session: Option<i32>,
    ) {
        let Some(state) = self.state else { return };
        let mut inc = Incarnation {
            id: invocation.map_or_else(new_incarnation_id, str::to_string),
            origin: Origin::Adopted,
            wrapper: Some(wrapper),
            boot_id: self.observer.boot_id.clone(),
            session,
            cgroup: None,
            started_at: Utc::now(),
            attempt: None,
            ending: None,
        };
        // An id that names another worker's incarnation is not this one's.
        let recorded = state
            .record_incarnation(self.initiative(), worker, &inc)
            .and_then(|fresh| {
                if fresh {
                    return Ok(());
                }
                inc.id = new_incarnation_id();
                state
                    .record_incarnation(self.initiative(), worker, &inc)
                    .map(|_| ())
            });
        match recorded {
            Ok(()) => log.file_only(
                Level::Info,
                &format!(
                    "Adopted worker {worker} (PID {}), started by another program (incarnation {})",
                    wrapper.pid, inc.id
                ),
            ),
            Err(e) => log.log(Level::Error, &e.to_string()),
        }
    }

    fn end(
        &mut self,
        log: &mut MonitorLog,
        worker: &str,
        incarnation: &str,
        ending: &Ending,
        cgroup: Option<&str>,
    ) {
        // An emptied cgroup goes at once; one that still holds orphans goes
        // when they are stopped.
        if let Some(path) = cgroup {
            let cg = Cgroup::at(path.into());
            if !cg.populated().unwrap_or(true) {
                let _ = cg.remove();
            }
        }
        let Some(state) = self.state else { return };
        let level = if ending.stopped {
            Level::Info
        } else {
            Level::Warning
        };
        log.file_only(
            level,
            &format!("Worker {worker} ended: {}", describe_ending(ending)),
        );
        if let Err(e) = state.end_incarnation(self.initiative(), worker, incarnation, ending) {
            log.log(Level::Error, &e.to_string());
        }
    }

    /// Counts attempt `restart` unless counted: logs `Restarting worker …`
    /// and records it before anything can fail or crash. Returns false when
    /// it could not be recorded (then nothing is started).
    fn count(&mut self, log: &mut MonitorLog, worker: &str, restart: RestartAttempt) -> bool {
        if restart.counted {
            return true;
        }
        log.log(
            Level::Info,
            &format!(
                "Restarting worker {worker} (attempt {}/{})",
                restart.attempt, restart.max
            ),
        );
        if let Some(state) = self.state
            && let Err(e) =
                state.record_attempt(Utc::now(), self.initiative(), worker, restart.attempt)
        {
            log.log(
                Level::Error,
                &format!("Failed to restart worker {worker}: {e}"),
            );
            return false;
        }
        true
    }

    fn stop_old(
        &mut self,
        log: &mut MonitorLog,
        worker: &str,
        members: &[Member],
        cgroups: &[String],
        restart: Option<RestartAttempt>,
    ) {
        if let Some(restart) = restart
            && !self.count(log, worker, restart)
        {
            self.facts.push(Fact::Failed {
                worker: worker.to_string(),
                why: "the restart attempt could not be recorded".into(),
            });
            return;
        }
        let timeout = self
            .observer
            .source
            .stop_timeout(worker)
            .unwrap_or(self.settings.spawn.stop_timeout);
        // A long stop_timeout must not starve the watchdog.
        let report = spawn::stop_members_fed(
            &self.observer.procfs,
            members,
            cgroups,
            Some(nix::sys::signal::Signal::SIGTERM),
            timeout,
            self.progress,
        );
        let list = |v: &[i32]| {
            v.iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut detail = format!("SIGTERM to {}", list(&report.terminated));
        if !report.killed.is_empty() {
            detail.push_str(&format!("; SIGKILL to {}", list(&report.killed)));
        }
        for cg in &report.cgroups_killed {
            detail.push_str(&format!("; cgroup.kill on {cg}"));
        }
        log.log(
            Level::Warning,
            &format!("Stopped survivors of worker {worker}: {detail}"),
        );
        self.journal(
            EventKind::SurvivorsStopped,
            NewEvent {
                worker: Some(worker),
                attempt: restart.map(|r| r.attempt),
                detail: Some(detail),
                ..NewEvent::default()
            },
        );
        if let Some(restart) = restart {
            self.facts.push(Fact::OldStopped {
                worker: worker.to_string(),
                attempt: restart.attempt,
            });
        }
    }

    fn failed(&mut self, log: &mut MonitorLog, worker: &str, attempt: u32, why: String) {
        log.log(
            Level::Error,
            &format!("Failed to restart worker {worker}: {why}"),
        );
        self.journal(
            EventKind::RestartFailed,
            NewEvent {
                worker: Some(worker),
                attempt: Some(attempt),
                detail: Some(why.clone()),
                ..NewEvent::default()
            },
        );
        self.facts.push(Fact::Failed {
            worker: worker.to_string(),
            why,
        });
    }

    /// Starts a program's first incarnation in this boot (no attempt is
    /// counted), and records it running.
    fn start(&mut self, log: &mut MonitorLog, worker: &str) {
        match self.spawn_incarnation(log, worker, None) {
            Ok(pid) => {
                log.log(
                    Level::Success,
                    &format!("Worker {worker} started (PID: {pid})"),
                );
                self.journal(
                    EventKind::Started,
                    NewEvent {
                        worker: Some(worker),
                        pid: Some(pid),
                        ..NewEvent::default()
                    },
                );
                self.facts.push(Fact::Restarted {
                    worker: worker.to_string(),
                    pid,
                });
            }
            Err(why) => {
                log.log(
                    Level::Error,
                    &format!("Failed to start worker {worker}: {why}"),
                );
                self.journal(
                    EventKind::RestartFailed,
                    NewEvent {
                        worker: Some(worker),
                        detail: Some(why.clone()),
                        ..NewEvent::default()
                    },
                );
                self.facts.push(Fact::Failed {
                    worker: worker.to_string(),
                    why,
                });
            }
        }
    }

    /// Starts a new incarnation: counts the attempt, records the
    /// incarnation before the spawn (so a monitor that dies meanwhile finds
    /// it), has the source start it in its cgroup or session, and waits
    /// for it to come up.
    fn spawn(&mut self, log: &mut MonitorLog, worker: &str, restart: RestartAttempt) {
        if !self.count(log, worker, restart) {
            self.facts.push(Fact::Failed {
                worker: worker.to_string(),
                why: "the restart attempt could not be recorded".into(),
            });
            return;
        }
        match self.spawn_incarnation(log, worker, Some(restart.attempt)) {
            Ok(pid) => {
                log.log(
                    Level::Success,
                    &format!("Worker {worker} restarted (PID: {pid})"),
                );
                // Recorded as running at once, so that a death before the
                // next pass is journaled as a death of its own.
                if let Some(state) = self.state
                    && let Err(e) = state.record_restarted(
                        Utc::now(),
                        self.initiative(),
                        worker,
                        pid,
                        restart.attempt,
                    )
                {
                    log.log(Level::Error, &e.to_string());
                }
                self.facts.push(Fact::Restarted {
                    worker: worker.to_string(),
                    pid,
                });
            }
            Err(why) => self.failed(log, worker, restart.attempt, why),
        }
    }

    /// Starts incarnation of `worker` (for restart attempt `attempt`, if
    /// one) and returns the PID of the process that leads it.
    ///
    /// Errors: why it could not be started or did not come up (the
    /// incarnation is then stopped whole).
    pub fn spawn_incarnation(
        &mut self,
        log: &mut MonitorLog,
        worker: &str,
        attempt: Option<u32>,
    ) -> Result<i32, String> {
        let procfs = &self.observer.procfs;
        let source = &self.observer.source;
        let id = new_incarnation_id();
        let cgroup = match self.placement {
            Placement::Cgroup(delegation) => match delegation.create(&cgroup_name(worker, &id)) {
                Ok(cg) => Some(cg),
                Err(e) => {
                    log.log(
                        Level::Warning,
                        &format!(
                            "cannot create a cgroup for worker {worker} under {}: {e}; \
                             it runs in its own session",
                            delegation.base().display()
                        ),
                    );
                    None
                }
            },
            Placement::Session => None,
        };
        let inc = Incarnation {
            id: id.clone(),
            origin: Origin::Spawned,
            wrapper: None,
            boot_id: self.observer.boot_id.clone(),
            session: None,
            cgroup: cgroup.as_ref().map(|c| c.path().display().to_string()),
            started_at: Utc::now(),
            attempt,
            ending: None,
        };
        if let Some(state) = self.state {
            // A fresh id of 128 random bits: never one recorded already.
            state
                .record_incarnation(self.initiative(), worker, &inc)
                .map_err(|e| e.to_string())?;
        }
        let child = source.spawn(&crate::source::SpawnRequest {
            worker,
            incarnation: &id,
            cgroup: cgroup.as_ref(),
        });
        let child = match child {
            Ok(pid) => pid,
            Err(why) => {
                if let Some(cg) = &cgroup {
                    let _ = cg.remove();
                }
                return Err(why);
            }
        };
        self.spawned.push(Spawned {
            worker: worker.to_string(),
            pid: child,
            incarnation: id.clone(),
            noted: false,
        });
        // Our own unreaped child: its PID and start time are its until we
        // reap it, and it leads the session it made.
        let mut set_leader = |pid: i32, session: Option<i32>| {
            if let Ok(Some(stat)) = procfs.stat(pid)
                && let Some(state) = self.state
            {
                let leader = ProcessId {
                    pid,
                    start_ticks: stat.start_ticks,
                };
                if let Err(e) = state.set_wrapper(&id, leader, session) {
                    log.log(Level::Error, &e.to_string());
                }
            }
        };
        set_leader(child, Some(child));
        let timeout = self.settings.spawn.spawn_timeout;
        match source.confirm(procfs, worker, child, timeout) {
            Started::Running(pid) => {
                if pid != child {
                    // A start command that left a daemon behind: the daemon
                    // is the incarnation now.
                    let session = procfs
                        .stat(pid)
                        .ok()
                        .flatten()
                        .and_then(|s| (s.session == pid).then_some(pid));
                    set_leader(pid, session);
                }
                Ok(pid)
            }
            Started::TimedOut { missing, spawned } => {
                // A process too slow to count must not live on: a later
                // attempt would make it a second instance. It is our own
                // unreaped child, so its session and cgroup are ours to stop.
                self.stop_spawned(child, cgroup.as_ref());
                Err(format!(
                    "{missing} within {:.1} s; {spawned} PID {child} stopped",
                    timeout.as_secs_f64()
                ))
            }
            Started::Exited(status) => {
                // A start command that failed is exited but unreaped (the
                // source only peeked at it): its session id is still its
                // own, so what it left in it is stopped, then it is reaped.
                let unreaped = spawn::peek_exit_status(child).is_some();
                if let Some(cg) = &cgroup {
                    let _ = spawn::stop_members(
                        procfs,
                        &[],
                        &[cg.path().display().to_string()],
                        self.settings.spawn.stop_timeout,
                    );
                } else if unreaped {
                    let _ =
                        spawn::stop_own_session(procfs, child, self.settings.spawn.stop_timeout);
                }
                if unreaped {
                    let _ = spawn::try_reap(child);
                }
                self.spawned.retain(|s| s.pid != child);
                self.journal(
                    EventKind::ChildExited,
                    NewEvent {
                        worker: Some(worker),
                        pid: Some(child),
                        detail: Some(status.clone()),
                        ..NewEvent::default()
                    },
                );
                let hint = if status == "exit 127" {
                    "; its command was not found (see the worker log)"
                } else {
                    ""
                };
                Err(format!("it exited ({status}) before it came up{hint}"))
            }
        }
    }

    /// Stops a wrapper this actor spawned and everything of its incarnation.
    fn stop_spawned(&mut self, child: i32, cgroup: Option<&Cgroup>) {
        let procfs = &self.observer.procfs;
        let timeout = self.settings.spawn.stop_timeout;
        match cgroup {
            Some(cg) => {
                let _ =
                    spawn::stop_members(procfs, &[], &[cg.path().display().to_string()], timeout);
            }
            None => {
                let _ = spawn::stop_own_session(procfs, child, timeout);
            }
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
        while std::time::Instant::now() < deadline {
            if spawn::try_reap(child).is_some() {
                // Reaped here; otherwise the monitor's loop reaps it.
                self.spawned.retain(|s| s.pid != child);
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
}

/// The line a dry run logs for an action, if any.
fn dry_run_line(action: &Action) -> Option<String> {
    match action {
        Action::StopOld {
            worker,
            members,
            restart,
            ..
        } => {
            let pids = members
                .iter()
                .map(|m| m.process.pid.to_string())
                .collect::<Vec<_>>()
                .join(", ");
            Some(match restart {
                Some(r) => format!(
                    "would restart worker {worker} (attempt {}/{}), after stopping its \
                     earlier incarnation: PIDs {pids}",
                    r.attempt, r.max
                ),
                None => format!("would stop the earlier incarnation of {worker}: PIDs {pids}"),
            })
        }
        Action::Spawn { worker, restart } => Some(format!(
            "would restart worker {worker} (attempt {}/{})",
            restart.attempt, restart.max
        )),
        Action::ResetAttempts { worker } => {
            Some(format!("would reset restart attempts of {worker}"))
        }
        Action::GiveUp { worker, max } => Some(format!(
            "would give worker {worker} up: it reached max restart limit ({max})"
        )),
        _ => None,
    }
}

/// A new incarnation id: 128 random bits from getrandom(2), as 32 lowercase
/// hex digits.
pub fn new_incarnation_id() -> String {
    let mut bytes = [0u8; 16];
    if rustix::rand::getrandom(&mut bytes, rustix::rand::GetRandomFlags::empty()).is_err() {
        // getrandom(2) cannot fail on Linux ≥ 3.17 once the pool is ready;
        // should it, the boot-unique clock and PID still give a unique id.
        let now = Utc::now().timestamp_nanos_opt().unwrap_or_default() as u128;
        bytes = (now ^ (u128::from(std::process::id()) << 64)).to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The cgroup name of an incarnation: the worker id reduced to letters,
/// digits, `-` and `_` (at most 64), a dot, and the incarnation id.
pub fn cgroup_name(worker: &str, id: &str) -> String {
    let safe: String = worker
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    format!("{safe}.{id}")
}

/// At most this many open tasks are listed in a restart prompt; the rest
/// are counted (`… and K more`).
pub const PROMPT_MAX_TASKS: usize = 50;

/// At most this many characters of one text from the task DB (a title, a
/// name, an id) go into a prompt.
pub const PROMPT_MAX_FIELD: usize = 500;

/// A text from the task DB made fit for a prompt: NUL and other control
/// characters (a prompt is one argv string, where NUL cannot be) become
/// spaces, and it is cut to [`PROMPT_MAX_FIELD`] characters.
fn prompt_field(text: &str) -> String {
    let mut out: String = text
        .chars()
        .take(PROMPT_MAX_FIELD)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().nth(PROMPT_MAX_FIELD).is_some() {
        out.push('…');
    }
    out
}

/// The prompt a restarted worker gets: its stream, the initiative, and the
/// tasks still open. Bounded whatever the task DB holds (at most
/// [`PROMPT_MAX_TASKS`] tasks of [`PROMPT_MAX_FIELD`] characters a field,
/// about 80 KB in all, below Linux's 128 KiB limit on one argument), with no
/// NUL or control character.
pub fn prompt_for(stream: &Stream, initiative: &crate::observe::taskdb::Initiative) -> String {
    let deps = if stream.dependencies.is_empty() {
        "None".to_string()
    } else {
        stream
            .dependencies
            .iter()
            .take(PROMPT_MAX_TASKS)
            .map(|d| prompt_field(d))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let id = prompt_field(&stream.id);
    let mut prompt = format!(
        "You are a worker agent in the Claude Copilot orchestration system, \
         restarted by pidwatch after the previous worker died.\n\n\
         ## Your Assignment\n\
         - Stream: {id}\n\
         - Stream Name: {}\n\
         - Initiative: {} ({})\n\
         - Dependencies: {deps}\n\n\
         ## Incomplete tasks\n",
        prompt_field(stream.name.as_deref().unwrap_or(&stream.id)),
        prompt_field(&initiative.name),
        prompt_field(&initiative.id),
    );
    for task in stream.open_tasks.iter().take(PROMPT_MAX_TASKS) {
        prompt.push_str(&format!(
            "- {}: {} ({})\n",
            prompt_field(&task.id),
            prompt_field(&task.title),
            prompt_field(&task.status)
        ));
    }
    let more = stream.open_tasks.len().saturating_sub(PROMPT_MAX_TASKS);
    if more > 0 {
        prompt.push_str(&format!("- … and {more} more\n"));
    }
    prompt.push_str(&format!(
        "\nCall task_list(metadata.streamId=\"{id}\") to confirm their state, continue where \
         the previous worker stopped, and do not redo completed tasks. Stay on {id} tasks only.\n"
    ));
    prompt
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::taskdb::{Initiative, OpenTask};

    #[test]
    fn any_task_db_gives_a_bounded_prompt_without_nul() {
        let open_tasks = (0..3000)
            .map(|i| OpenTask {
                id: format!("TASK-{i}"),
                title: format!(
                    "title\0with NUL\u{1b}[31m {}",
                    "x".repeat(140_000 * (i == 0) as usize)
                ),
                status: "pending".into(),
            })
            .collect();
        let stream = Stream {
            id: "Stream-A".into(),
            open_tasks,
            ..Stream::default()
        };
        let initiative = Initiative {
            id: "i".into(),
            name: "n".into(),
        };
        let prompt = prompt_for(&stream, &initiative);
        assert!(prompt.len() < 100_000, "{} bytes", prompt.len());
        assert!(!prompt.contains('\0') && !prompt.contains('\u{1b}'));
        assert!(prompt.contains("- … and 2950 more"), "{prompt}");
        assert!(prompt.contains("TASK-49:") && !prompt.contains("TASK-50:"));
    }
}

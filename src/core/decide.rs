//! `decide`: every rule of pidwatch, as a pure function of a snapshot.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use super::incarnation::{Candidate, Ending, Member, ProcessId, Proof};
use super::snapshot::{
    InvalidPidFile, PidFileReading, ProcessReading, Reason, RestartMode, Snapshot, Verdict,
    WorkerSnapshot,
};

/// How long a PID file that is empty or not (yet) a number counts as being
/// written: the original wrapper writes it with `echo $$ >`, which creates
/// it empty before the write, so a reader can catch it empty or half
/// written. It is looked at again after this; nothing is reported before.
pub const PIDFILE_GRACE: TimeDelta = TimeDelta::seconds(2);

/// How far a process's start time may lie after its PID file's mtime and
/// still be the process that wrote it. The start time is known to one second
/// only (`btime` in `/proc/stat` is whole seconds).
pub const START_TIME_TOLERANCE: TimeDelta = TimeDelta::seconds(1);

/// How many times one restart stops an earlier incarnation (new processes
/// it forked meanwhile are found by the next look) before it gives up.
pub const MAX_STOP_ROUNDS: u32 = 3;

/// The restart policy, from the command line (ARCHITECTURE.md, "Restart").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Restart dead workers (`--auto-restart`); without it `decide` plans no action.
    pub auto_restart: bool,
    /// The restart cap per (initiative, worker) (`--max-restarts`).
    pub max_restarts: u32,
    /// The base of the backoff (`--restart-delay`).
    pub restart_delay: Duration,
    /// The most the backoff ever waits (`--max-restart-delay`).
    pub max_restart_delay: Duration,
    /// A restarted worker running this long gets its attempts reset (`--stable-after`).
    pub stable_after: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            auto_restart: false,
            max_restarts: 2,
            restart_delay: Duration::from_secs(5),
            max_restart_delay: Duration::from_secs(300),
            stable_after: Duration::from_secs(600),
        }
    }
}

impl Policy {
    /// How long attempt `attempt` (1-based) waits after the previous attempt:
    /// `restart_delay × 2^(attempt-1)`, capped at `max_restart_delay`. The
    /// first attempt has no previous one to wait after, so it is due at once.
    pub fn backoff(&self, attempt: u32) -> Duration {
        if attempt <= 1 {
            return Duration::ZERO;
        }
        let factor = 1u32.checked_shl(attempt - 1).unwrap_or(u32::MAX);
        self.restart_delay
            .checked_mul(factor)
            .unwrap_or(Duration::MAX)
            .min(self.max_restart_delay)
    }
}

/// The decision for one worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerDecision {
    /// The worker id.
    pub id: String,
    /// Its verdict.
    pub verdict: Verdict,
    /// Why it is not running; `None` when running.
    pub reason: Option<Reason>,
    /// The running wrapper's PID, else the PID of a valid PID file.
    pub pid: Option<i32>,
    /// The verdict differs from the one the state DB recorded last.
    pub changed: bool,
}

/// Where a restart stands between the steps of one pass (ARCHITECTURE.md,
/// "Restart"): pending → stopping the old incarnation → spawning →
/// confirmed or failed. Pending is no restart in flight; the spawn is one
/// step of `act`, which reports it confirmed or failed, and that ends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPhase {
    /// The attempt is counted; the earlier incarnation's live processes
    /// were sent SIGTERM and then SIGKILL.
    StoppingOld,
}

/// Something `act` is to carry out. `act` executes and reports facts; it
/// never decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Take over a running incarnation started by someone else, whose
    /// wrapper the PID file names and whose identity was proved.
    Adopt {
        /// The worker id.
        worker: String,
        /// The wrapper's PID and start time.
        wrapper: ProcessId,
        /// The incarnation id in the wrapper's environment, if any.
        invocation: Option<String>,
        /// The wrapper's session, when it leads it.
        session: Option<i32>,
    },
    /// Record that the current incarnation ended, and how.
    EndIncarnation {
        /// The worker id.
        worker: String,
        /// The incarnation id.
        incarnation: String,
        /// How it ended (a wrapper gone without an exit file: unknown, not a stop).
        ending: Ending,
        /// Its cgroup, removed once empty.
        cgroup: Option<String>,
    },
    /// Stop exactly these processes of earlier incarnations (SIGTERM, then
    /// SIGKILL after the stop timeout), before anything is started.
    StopOld {
        /// The worker id.
        worker: String,
        /// The processes, pinned by start time.
        members: Vec<Member>,
        /// Cgroups of the worker's incarnations that hold them, stopped whole.
        cgroups: Vec<String>,
        /// Part of restart attempt `(attempt, max)`, counted first when
        /// `counted` is false; `None` for survivors beside an adopted incarnation.
        restart: Option<RestartAttempt>,
    },
    /// Start a program from a config file that has not run in this boot
    /// (its dependencies are up): its first incarnation, no restart attempt.
    Start {
        /// The worker id.
        worker: String,
    },
    /// Start a new incarnation of a dead worker.
    Spawn {
        /// The worker id.
        worker: String,
        /// The attempt.
        restart: RestartAttempt,
    },
    /// A restart cannot go on (the earlier incarnation would not die).
    RestartFailed {
        /// The worker id.
        worker: String,
        /// The attempt.
        attempt: u32,
        /// Why.
        why: String,
    },
    /// The worker reached its restart cap: mark it given up, log one ERROR.
    GiveUp {
        /// The worker id.
        worker: String,
        /// The restart cap.
        max: u32,
    },
    /// The worker ran for `stable_after` since its restart: reset its attempts.
    ResetAttempts {
        /// The worker id.
        worker: String,
    },
}

impl Action {
    /// The worker the action is about.
    pub fn worker(&self) -> &str {
        match self {
            Action::Adopt { worker, .. }
            | Action::EndIncarnation { worker, .. }
            | Action::StopOld { worker, .. }
            | Action::Start { worker }
            | Action::Spawn { worker, .. }
            | Action::RestartFailed { worker, .. }
            | Action::GiveUp { worker, .. }
            | Action::ResetAttempts { worker } => worker,
        }
    }
}

/// Attempt `attempt` of `max`, and whether the state DB has counted it yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartAttempt {
    /// 1-based attempt number.
    pub attempt: u32,
    /// The restart cap.
    pub max: u32,
    /// Already counted by an earlier step of this restart.
    pub counted: bool,
}

/// The outcome of [`decide`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decision {
    /// One decision per worker, in snapshot order.
    pub workers: Vec<WorkerDecision>,
    /// What to do, in worker order.
    pub actions: Vec<Action>,
    /// Problems with the dependency graph (unknown streams, cycles), and
    /// with the evidence (a live worker without its PID file).
    pub warnings: Vec<String>,
    /// The earliest moment a planned step falls due (a backoff that ends, a
    /// run that becomes stable), for the loop to wake at.
    pub next_due: Option<DateTime<Utc>>,
}

impl Decision {
    /// The number of workers with each verdict, in [`Verdict::ALL`] order.
    pub fn summary(&self) -> BTreeMap<Verdict, usize> {
        let mut counts: BTreeMap<Verdict, usize> = Verdict::ALL.iter().map(|v| (*v, 0)).collect();
        for w in &self.workers {
            *counts.entry(w.verdict).or_default() += 1;
        }
        counts
    }

    /// Whether any worker is dead or given up (exit code 1).
    pub fn has_failures(&self) -> bool {
        self.workers.iter().any(|w| w.verdict.is_failure())
    }
}

/// A live incarnation, as [`liveness`] found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Alive {
    /// The current incarnation's recorded wrapper lives.
    Current {
        /// The wrapper's PID.
        pid: i32,
        /// When it started.
        started: DateTime<Utc>,
    },
    /// The current incarnation is being spawned: its wrapper is not
    /// recorded yet, but processes carrying its id live.
    Starting {
        /// The oldest of them.
        pid: i32,
    },
    /// Processes of the worker live under a wrapper of their own that
    /// pidwatch does not know (the PID file is missing, invalid or names
    /// someone else): an incarnation started by another program. Nothing is
    /// started beside it.
    Unrecorded {
        /// The oldest of them.
        pid: i32,
    },
    /// The PID file was written less than [`PIDFILE_GRACE`] ago and does
    /// not name the worker yet: it is being written; look again then.
    BeingWritten {
        /// When the grace ends.
        until: DateTime<Utc>,
    },
    /// The PID file names this worker's wrapper, of an incarnation pidwatch
    /// has not recorded: to be adopted.
    Adoptable {
        /// The wrapper's PID and start time.
        wrapper: ProcessId,
        /// When it started.
        started: DateTime<Utc>,
        /// Its incarnation id, if its environment has one.
        invocation: Option<String>,
        /// Its session, when it leads it.
        session: Option<i32>,
    },
}

impl Alive {
    /// The PID shown for the running worker, when one is known.
    pub fn pid(&self) -> Option<i32> {
        match self {
            Alive::Current { pid, .. } | Alive::Starting { pid } | Alive::Unrecorded { pid } => {
                Some(*pid)
            }
            Alive::Adoptable { wrapper, .. } => Some(wrapper.pid),
            Alive::BeingWritten { .. } => None,
        }
    }
}

/// Whether the worker is running (ARCHITECTURE.md, "Liveness"): its current
/// incarnation has a live wrapper, or the PID file names a wrapper proved to
/// be this worker's. The PID file is evidence, not the truth: a live wrapper
/// whose PID file is gone is still running, and a PID file naming a
/// stranger (by start time or command line) proves nothing. When not
/// running, orphans of the worker outweigh what the PID file says. Also
/// returns the PID to show.
pub fn liveness(worker: &WorkerSnapshot) -> (Result<Alive, Reason>, Option<i32>) {
    let live_inc = worker.incarnation.as_ref().filter(|i| i.ending.is_none());
    if let Some(inc) = live_inc {
        if let (Some(recorded), Some(ProcessReading::Alive(info))) = (&inc.wrapper, &worker.wrapper)
            && !info.has_exited()
        {
            return (
                Ok(Alive::Current {
                    pid: recorded.pid,
                    started: info.start_time,
                }),
                Some(recorded.pid),
            );
        }
        if inc.wrapper.is_none()
            && let Some(first) = worker
                .members
                .iter()
                .filter(|m| m.incarnation.as_deref() == Some(inc.id.as_str()))
                .min_by_key(|m| m.process.start_ticks)
        {
            return (
                Ok(Alive::Starting {
                    pid: first.process.pid,
                }),
                Some(first.process.pid),
            );
        }
    }
    let (evidence, pid) = match &worker.pidfile {
        PidFileReading::Missing => (Err(Reason::NoPidfile), None),
        PidFileReading::Invalid(why) => (Err(Reason::InvalidPidfile(why.clone())), None),
        PidFileReading::Valid { pid, mtime } => {
            // Identity first: a process that started after the PID file was
            // written is someone else, zombie or not.
            let state = match &worker.process {
                None | Some(ProcessReading::Gone) => Err(Reason::NoSuchProcess),
                Some(ProcessReading::Alive(info))
                    if mtime
                        .checked_add_signed(START_TIME_TOLERANCE)
                        .is_some_and(|limit| info.start_time > limit) =>
                {
                    Err(Reason::PidReused)
                }
                Some(ProcessReading::Alive(info)) if info.has_exited() => Err(Reason::Zombie),
                Some(ProcessReading::Alive(info)) => match &worker.candidate {
                    Candidate::Wrapper { invocation } => Ok(Alive::Adoptable {
                        wrapper: ProcessId {
                            pid: *pid,
                            start_ticks: info.start_ticks,
                        },
                        started: info.start_time,
                        invocation: invocation.clone(),
                        session: (info.session == *pid).then_some(*pid),
                    }),
                    Candidate::NotLooked | Candidate::Foreign => Err(Reason::NotTheWorker),
                },
            };
            (state, Some(*pid))
        }
    };
    match evidence {
        Err(Reason::InvalidPidfile(InvalidPidFile::Empty | InvalidPidFile::NotANumber(_)))
            if worker.members.is_empty() && worker.pidfile_fresh_until.is_some() =>
        {
            let until = worker.pidfile_fresh_until.unwrap_or_default();
            (Ok(Alive::BeingWritten { until }), None)
        }
        Err(_) if !worker.elsewhere.is_empty() => {
            let first = worker
                .elsewhere
                .iter()
                .min_by_key(|m| m.process.start_ticks)
                .map_or(0, |m| m.process.pid);
            (Ok(Alive::Unrecorded { pid: first }), pid)
        }
        Err(_) if !worker.members.is_empty() => {
            let pids = worker.members.iter().map(|m| m.process.pid).collect();
            (Err(Reason::Orphaned(pids)), pid)
        }
        other => (other, pid),
    }
}

/// Judges every worker of a snapshot and plans what to do (ARCHITECTURE.md,
/// "Verdicts" and "Restart"). Pure: same input, same output.
pub fn decide(policy: &Policy, snapshot: &Snapshot) -> Decision {
    let mut decision = Decision::default();
    let known: BTreeMap<&str, &WorkerSnapshot> = snapshot
        .workers
        .iter()
        .map(|w| (w.id.as_str(), w))
        .collect();
    let in_cycle = cycle_members(&known);

    for worker in &snapshot.workers {
        for dep in &worker.dependencies {
            if !known.contains_key(dep.as_str()) {
                decision.warnings.push(format!(
                    "{} depends on unknown stream {dep}; it counts as incomplete",
                    worker.id
                ));
            }
        }
    }
    if !in_cycle.is_empty() {
        let members: Vec<&str> = in_cycle.iter().copied().collect();
        decision.warnings.push(format!(
            "dependency cycle among {}; they wait until it is broken",
            members.join(", ")
        ));
    }

    for worker in &snapshot.workers {
        let (alive, pid) = liveness(worker);
        let deps_complete = !in_cycle.contains(worker.id.as_str())
            && worker
                .dependencies
                .iter()
                .all(|dep| known.get(dep.as_str()).is_some_and(|d| dependency_met(d)));
        // A program has its own caps and backoff; whether to act is the command's.
        let own_policy;
        let policy = match &worker.program {
            Some(program) => {
                own_policy = Policy {
                    auto_restart: policy.auto_restart,
                    ..program.policy.clone()
                };
                &own_policy
            }
            None => policy,
        };
        let record = &worker.record;
        // A restart under way was allowed when it began; its own attempt,
        // counted since, does not stop it.
        let at_cap =
            record.given_up || (worker.restart.is_none() && record.attempts >= policy.max_restarts);
        let started = worker.started || worker.incarnation.is_some() || !worker.members.is_empty();

        let (verdict, reason) = match &alive {
            Ok(_) => (Verdict::Running, None),
            Err(reason) if worker.program.is_some() => {
                program_verdict(worker, reason, started, deps_complete, at_cap)
            }
            Err(reason) => {
                // A deliberate stop stays one even when the worker left a
                // process behind (stopped below, and nothing is started).
                let stop = deliberate_stop(worker);
                if worker.tasks.is_complete() {
                    (Verdict::Completed, Some(reason.clone()))
                } else if let Some(signal) = stop {
                    (Verdict::Stopped, Some(Reason::Stopped(signal)))
                } else if !started {
                    (Verdict::NotStarted, Some(reason.clone()))
                } else if !deps_complete {
                    (Verdict::Waiting, Some(reason.clone()))
                } else if at_cap {
                    (Verdict::GivenUp, Some(reason.clone()))
                } else {
                    (Verdict::Dead, Some(reason.clone()))
                }
            }
        };
        warn_about_evidence(worker, &alive, verdict, &mut decision);

        if policy.auto_restart {
            plan(
                policy,
                snapshot.now,
                worker,
                &alive,
                verdict,
                reason.as_ref(),
                &mut decision,
            );
        }
        decision.workers.push(WorkerDecision {
            id: worker.id.clone(),
            verdict,
            reason,
            pid: alive.as_ref().ok().and_then(Alive::pid).or(pid),
            changed: record.last_verdict != Some(verdict),
        });
    }
    decision
}

/// Whether a worker that another depends on lets it start: a stream when
/// its tasks are complete; a program when it runs and, if it has a
/// readiness probe, the probe passed.
fn dependency_met(dep: &WorkerSnapshot) -> bool {
    match &dep.program {
        None => dep.tasks.is_complete(),
        Some(program) => liveness(dep).0.is_ok() && program.ready != Some(false),
    }
}

/// The verdict of a program that is not running (ARCHITECTURE.md,
/// "Programs"): stopped deliberately; exited and not to be started again by
/// its restart mode; never started in this boot; waiting for what it
/// depends on; given up; or dead.
fn program_verdict(
    worker: &WorkerSnapshot,
    reason: &Reason,
    started: bool,
    deps_met: bool,
    at_cap: bool,
) -> (Verdict, Option<Reason>) {
    let restart = worker
        .program
        .as_ref()
        .map_or(RestartMode::OnFailure, |p| p.restart);
    let unhealthy = worker.program.as_ref().is_some_and(|p| p.unhealthy);
    if worker.program.as_ref().is_some_and(|p| p.start_requested) {
        let verdict = if deps_met {
            Verdict::NotStarted
        } else {
            Verdict::Waiting
        };
        return (verdict, Some(reason.clone()));
    }
    // pidwatch's own stop of an unhealthy incarnation is no deliberate
    // stop of the worker: it is restarted.
    if !unhealthy && let Some(signal) = deliberate_stop(worker) {
        return (Verdict::Stopped, Some(Reason::Stopped(signal)));
    }
    let ending = last_ending(worker);
    let status = ending.and_then(|e| match (e.exit_status, &e.signal) {
        (Some(code), _) => Some(format!("exit {code}")),
        (None, Some(signal)) => Some(format!("SIG{signal}")),
        (None, None) => None,
    });
    let clean = ending.is_some_and(|e| e.exit_status == Some(0));
    let reason = if unhealthy {
        Reason::Unhealthy
    } else {
        reason.clone()
    };
    if !unhealthy {
        match restart {
            RestartMode::OnFailure | RestartMode::Never if clean => {
                return (Verdict::Completed, Some(Reason::Exited("exit 0".into())));
            }
            // Not started again, whatever the exit: dead, and left so.
            RestartMode::Never if started => {
                let status = status.unwrap_or_else(|| "exit status unknown".into());
                return (Verdict::Dead, Some(Reason::Exited(status)));
            }
            _ => {}
        }
    }
    if !deps_met {
        (Verdict::Waiting, Some(reason))
    } else if !started {
        (Verdict::NotStarted, Some(reason))
    } else if at_cap {
        (Verdict::GivenUp, Some(reason))
    } else {
        (Verdict::Dead, Some(reason))
    }
}

/// How the worker's last run ended: its incarnation's recorded ending, or
/// its exit file.
pub fn last_ending(worker: &WorkerSnapshot) -> Option<&Ending> {
    match &worker.incarnation {
        Some(inc) => inc.ending.as_ref().or(worker.exit.as_ref()),
        None => worker.exit.as_ref(),
    }
}

/// The signal of a deliberate stop that ended the worker's last run, if it
/// was one: recorded with its incarnation, or read from the exit file of
/// the current incarnation (or of this boot when none is recorded).
fn deliberate_stop(worker: &WorkerSnapshot) -> Option<String> {
    let ending = last_ending(worker)?;
    ending
        .stopped
        .then(|| ending.signal.clone().unwrap_or_else(|| "TERM".into()))
}

/// Warnings about evidence that disagrees with the truth: a live worker
/// whose PID file is gone or names another process; a given-up worker whose
/// processes live on.
fn warn_about_evidence(
    worker: &WorkerSnapshot,
    alive: &Result<Alive, Reason>,
    verdict: Verdict,
    decision: &mut Decision,
) {
    let id = &worker.id;
    match alive {
        Ok(Alive::Current { pid, .. }) => match &worker.pidfile {
            // A wrapper that wrote its exit file is finishing.
            PidFileReading::Missing if worker.exit.is_none() => decision.warnings.push(format!(
                "PID file of worker {id} is missing, but its wrapper (PID {pid}) lives; \
                 it counts as running"
            )),
            PidFileReading::Valid { pid: other, .. } if other != pid => {
                decision.warnings.push(format!(
                    "PID file of worker {id} names PID {other}, but its wrapper is PID {pid}, \
                     which lives; it counts as running"
                ))
            }
            _ => {}
        },
        Ok(Alive::Unrecorded { .. }) => decision.warnings.push(format!(
            "worker {id} runs (PIDs {}) under a wrapper that its PID file does not name; \
             it counts as running, and nothing is started beside it",
            worker
                .elsewhere
                .iter()
                .map(|m| m.process.pid.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )),
        Err(Reason::PidReused | Reason::NotTheWorker) if verdict != Verdict::Completed => {
            if let Some(pid) = worker.pidfile.pid() {
                decision.warnings.push(format!(
                    "PID {pid} of worker {id} now belongs to another process; it is not signalled"
                ));
            }
        }
        Err(Reason::Orphaned(pids)) if verdict == Verdict::GivenUp => {
            decision.warnings.push(format!(
                "worker {id} is given up, but its processes live on without their wrapper: \
                 PIDs {}; `pidwatch reset {id}` lets pidwatch stop them and restart it",
                pids.iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        }
        _ => {}
    }
}

/// Plans the actions for one judged worker under `--auto-restart`: adopt a
/// proved incarnation, record an ended one, and move a dead worker's
/// restart one step along its state machine.
///
/// A worker whose PID file cannot be trusted is not restarted: whether its
/// process lives is unknown (a symlink, a file of another user, one being
/// written), and a restart could start a second instance.
fn plan(
    policy: &Policy,
    now: DateTime<Utc>,
    worker: &WorkerSnapshot,
    alive: &Result<Alive, Reason>,
    verdict: Verdict,
    reason: Option<&Reason>,
    decision: &mut Decision,
) {
    let record = &worker.record;
    let id = &worker.id;
    let live_inc = worker.incarnation.as_ref().filter(|i| i.ending.is_none());
    if let Ok(Alive::BeingWritten { until }) = alive {
        note_due(decision, *until);
        return;
    }
    // The current incarnation ended when its recorded wrapper is gone.
    if let Some(inc) = live_inc
        && inc.wrapper.is_some()
        && !matches!(&worker.wrapper, Some(ProcessReading::Alive(info)) if !info.has_exited())
    {
        let ending = worker.exit.clone().unwrap_or(Ending {
            at: now,
            exit_status: None,
            signal: None,
            stopped: false,
        });
        decision.actions.push(Action::EndIncarnation {
            worker: id.clone(),
            incarnation: inc.id.clone(),
            ending,
            cgroup: inc.cgroup.clone(),
        });
    }
    if let Ok(Alive::Adoptable {
        wrapper,
        invocation,
        session,
        ..
    }) = alive
    {
        decision.actions.push(Action::Adopt {
            worker: id.clone(),
            wrapper: *wrapper,
            invocation: invocation.clone(),
            session: *session,
        });
    }
    // Processes of an earlier incarnation beside a live one (started by
    // another program) are stopped; nothing new is started.
    if matches!(
        alive,
        Ok(Alive::Adoptable { .. } | Alive::Unrecorded { .. })
    ) && !worker.members.is_empty()
    {
        decision.actions.push(Action::StopOld {
            worker: id.clone(),
            members: worker.members.clone(),
            cgroups: cgroups_of(worker),
            restart: None,
        });
    }
    match verdict {
        // Never a second one while a process of the last one lives: those
        // are stopped first, and the start waits for the next pass.
        Verdict::NotStarted if worker.program.is_some() && !worker.members.is_empty() => {
            decision.actions.push(Action::StopOld {
                worker: id.clone(),
                members: worker.members.clone(),
                cgroups: cgroups_of(worker),
                restart: None,
            });
        }
        Verdict::NotStarted if worker.program.is_some() => {
            decision.actions.push(Action::Start { worker: id.clone() });
        }
        // A program that its restart mode leaves as it is.
        Verdict::Dead if matches!(reason, Some(Reason::Exited(_))) => {}
        Verdict::Dead if matches!(reason, Some(Reason::InvalidPidfile(_))) => {
            decision.warnings.push(format!(
                "{id} is not restarted while its PID file is invalid ({}); fix or remove it",
                reason.and_then(Reason::detail).unwrap_or_default()
            ));
        }
        Verdict::Dead => {
            let attempt = match worker.restart {
                Some(in_flight) => in_flight.attempt,
                None => {
                    let attempt = record.attempts + 1;
                    let due = match record.last_attempt {
                        Some(last) => last.checked_add_signed(to_delta(policy.backoff(attempt))),
                        None => Some(now),
                    };
                    // A backoff beyond the calendar never ends.
                    let Some(due) = due else { return };
                    if due > now {
                        note_due(decision, due);
                        return;
                    }
                    attempt
                }
            };
            let restart = RestartAttempt {
                attempt,
                max: policy.max_restarts,
                counted: worker.restart.is_some(),
            };
            if !worker.members.is_empty() {
                let rounds = worker.restart.map_or(0, |r| r.stop_rounds);
                if rounds >= MAX_STOP_ROUNDS {
                    decision.actions.push(Action::RestartFailed {
                        worker: id.clone(),
                        attempt,
                        why: format!(
                            "processes of the earlier incarnation outlived {rounds} rounds of \
                             SIGTERM and SIGKILL: PIDs {}",
                            worker
                                .members
                                .iter()
                                .map(|m| m.process.pid.to_string())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    });
                } else {
                    decision.actions.push(Action::StopOld {
                        worker: id.clone(),
                        members: worker.members.clone(),
                        cgroups: cgroups_of(worker),
                        restart: Some(restart),
                    });
                }
            } else {
                decision.actions.push(Action::Spawn {
                    worker: id.clone(),
                    restart,
                });
            }
        }
        Verdict::Stopped if !worker.members.is_empty() => {
            decision.actions.push(Action::StopOld {
                worker: id.clone(),
                members: worker.members.clone(),
                cgroups: cgroups_of(worker),
                restart: None,
            });
        }
        Verdict::GivenUp if !record.given_up => {
            decision.actions.push(Action::GiveUp {
                worker: id.clone(),
                max: policy.max_restarts,
            });
        }
        Verdict::Running if record.attempts > 0 => {
            if let Ok(Alive::Current { started, .. } | Alive::Adoptable { started, .. }) = alive
                && let Some(stable_at) = started.checked_add_signed(to_delta(policy.stable_after))
            {
                if stable_at <= now {
                    decision
                        .actions
                        .push(Action::ResetAttempts { worker: id.clone() });
                } else {
                    note_due(decision, stable_at);
                }
            }
        }
        _ => {}
    }
}

/// The cgroups that hold members of the worker's incarnations.
fn cgroups_of(worker: &WorkerSnapshot) -> Vec<String> {
    let in_cgroup = worker.members.iter().any(|m| m.proof == Proof::Cgroup);
    match (&worker.incarnation, in_cgroup) {
        (Some(inc), true) => inc.cgroup.iter().cloned().collect(),
        _ => Vec::new(),
    }
}

fn note_due(decision: &mut Decision, due: DateTime<Utc>) {
    decision.next_due = Some(decision.next_due.map_or(due, |d| d.min(due)));
}

fn to_delta(duration: Duration) -> TimeDelta {
    TimeDelta::from_std(duration).unwrap_or(TimeDelta::MAX)
}

/// The workers that lie on a dependency cycle (a self-dependency included).
fn cycle_members<'a>(known: &BTreeMap<&'a str, &'a WorkerSnapshot>) -> BTreeSet<&'a str> {
    // Tarjan would do it in one pass; the graphs are a handful of streams, so
    // "can I reach myself?" per worker is clearer and fast enough.
    let mut members = BTreeSet::new();
    for (&start, worker) in known {
        let mut seen: BTreeSet<&str> = BTreeSet::new();
        let mut stack: Vec<&str> = worker.dependencies.iter().map(String::as_str).collect();
        while let Some(next) = stack.pop() {
            if next == start {
                members.insert(start);
                break;
            }
            if !seen.insert(next) {
                continue;
            }
            if let Some(dep) = known.get(next) {
                stack.extend(dep.dependencies.iter().map(String::as_str));
            }
        }
    }
    members
}

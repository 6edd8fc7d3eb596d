//! `decide`: every rule of pidwatch, as a pure function of a snapshot.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use super::snapshot::{PidFileReading, ProcessReading, Reason, Snapshot, Verdict, WorkerSnapshot};

/// How far a process's start time may lie after its PID file's mtime and
/// still be the process that wrote it. The start time is known to one second
/// only (`btime` in `/proc/stat` is whole seconds).
pub const START_TIME_TOLERANCE: TimeDelta = TimeDelta::seconds(1);

/// The restart policy, from the command line (DESIGN.md, "Restart policy").
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
    /// The PID of a valid PID file, running or not.
    pub pid: Option<i32>,
    /// The verdict differs from the one the state DB recorded last.
    pub changed: bool,
}

/// Something `act` is to carry out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Restart a dead worker; this will be attempt `attempt` of `max`.
    Restart {
        /// The worker id.
        worker: String,
        /// 1-based attempt number.
        attempt: u32,
        /// The restart cap.
        max: u32,
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

/// The outcome of [`decide`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decision {
    /// One decision per worker, in snapshot order.
    pub workers: Vec<WorkerDecision>,
    /// What to do, in worker order.
    pub actions: Vec<Action>,
    /// Problems with the dependency graph (unknown streams, cycles).
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

/// Whether the worker is running, and if not, why not. Also returns the PID
/// named by a valid PID file.
pub fn liveness(worker: &WorkerSnapshot) -> (Result<(), Reason>, Option<i32>) {
    match &worker.pidfile {
        PidFileReading::Missing => (Err(Reason::NoPidfile), None),
        PidFileReading::Invalid(why) => (Err(Reason::InvalidPidfile(why.clone())), None),
        PidFileReading::Valid { pid, mtime } => {
            // Identity first: a process that started after the PID file was
            // written is someone else, zombie or not; its group and session
            // are not the worker's.
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
                Some(ProcessReading::Alive(_)) => Ok(()),
            };
            (state, Some(*pid))
        }
    }
}

/// Judges every worker of a snapshot and plans what to do (DESIGN.md,
/// "Verdicts" and "Restart policy"). Pure: same input, same output.
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
            && worker.dependencies.iter().all(|dep| {
                known
                    .get(dep.as_str())
                    .is_some_and(|d| d.tasks.is_complete())
            });
        let record = &worker.record;
        let at_cap = record.given_up || record.attempts >= policy.max_restarts;

        let (verdict, reason) = match alive {
            Ok(()) => (Verdict::Running, None),
            Err(reason) => {
                let verdict = if worker.tasks.is_complete() {
                    Verdict::Completed
                } else if !worker.started {
                    Verdict::NotStarted
                } else if !deps_complete {
                    Verdict::Waiting
                } else if at_cap {
                    Verdict::GivenUp
                } else {
                    Verdict::Dead
                };
                (verdict, Some(reason))
            }
        };

        if policy.auto_restart {
            plan(
                policy,
                snapshot.now,
                worker,
                verdict,
                reason.as_ref(),
                &mut decision,
            );
        }
        decision.workers.push(WorkerDecision {
            id: worker.id.clone(),
            verdict,
            reason,
            pid,
            changed: record.last_verdict != Some(verdict),
        });
    }
    decision
}

/// Plans the actions for one judged worker under `--auto-restart`.
///
/// A worker whose PID file cannot be trusted is not restarted: whether its
/// process lives is unknown (a symlink, a file of another user, one being
/// written), and a restart could start a second instance.
fn plan(
    policy: &Policy,
    now: DateTime<Utc>,
    worker: &WorkerSnapshot,
    verdict: Verdict,
    reason: Option<&Reason>,
    decision: &mut Decision,
) {
    let record = &worker.record;
    match verdict {
        Verdict::Dead if matches!(reason, Some(Reason::InvalidPidfile(_))) => {
            decision.warnings.push(format!(
                "{} is not restarted while its PID file is invalid ({}); fix or remove it",
                worker.id,
                reason.and_then(Reason::detail).unwrap_or_default()
            ));
        }
        Verdict::Dead => {
            let attempt = record.attempts + 1;
            let due = match record.last_attempt {
                Some(last) => last.checked_add_signed(to_delta(policy.backoff(attempt))),
                None => Some(now),
            };
            // A backoff beyond the calendar never ends.
            let Some(due) = due else { return };
            if due <= now {
                decision.actions.push(Action::Restart {
                    worker: worker.id.clone(),
                    attempt,
                    max: policy.max_restarts,
                });
            } else {
                note_due(decision, due);
            }
        }
        Verdict::GivenUp if !record.given_up => {
            decision.actions.push(Action::GiveUp {
                worker: worker.id.clone(),
                max: policy.max_restarts,
            });
        }
        Verdict::Running if record.attempts > 0 => {
            if let Some(ProcessReading::Alive(info)) = &worker.process
                && let Some(stable_at) = info
                    .start_time
                    .checked_add_signed(to_delta(policy.stable_after))
            {
                if stable_at <= now {
                    decision.actions.push(Action::ResetAttempts {
                        worker: worker.id.clone(),
                    });
                } else {
                    note_due(decision, stable_at);
                }
            }
        }
        _ => {}
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

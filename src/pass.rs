//! One pass: observe → decide → act → record, the same for `check` (once)
//! and `run` (on every event). The caller holds the lock when it acts.
//!
//! A restart moves through its steps within one pass: `decide` plans the
//! first step (stop the earlier incarnation, or spawn), `act` carries it
//! out and reports a fact, and the pass observes the worker again and lets
//! `decide` plan the next step from what is there now, until the restart
//! is confirmed or failed.

use std::collections::{BTreeMap, BTreeSet};

use crate::act::{Actor, Fact, Placement, Spawned};
use crate::config::Settings;
use crate::core::{
    Action, Alive, Decision, InFlight, ProcessId, ProcessReading, RestartPhase, Snapshot, decide,
    liveness,
};
use crate::error::Result;
use crate::observe::{Observation, Observer};
use crate::source::WorkerDef;
use crate::store::monitor_log::MonitorLog;
use crate::store::statedb::StateDb;

/// The most steps one pass takes for its restarts after the first (stop
/// rounds and the spawn that follows them).
const MAX_FOLLOW_UPS: usize = 8;

/// What a pass works with.
pub struct Context<'a> {
    /// The settings.
    pub settings: &'a Settings,
    /// The readers.
    pub observer: &'a Observer,
    /// The state DB; `None` when nothing may be recorded.
    pub state: Option<&'a StateDb>,
    /// Where new incarnations go.
    pub placement: &'a Placement,
}

/// What a pass saw and did.
pub struct PassResult {
    /// The first observation of the pass.
    pub snapshot: Snapshot,
    /// Its decision: the verdicts reported (a worker restarted in this pass
    /// is reported dead, as it was found).
    pub decision: Decision,
    /// The workers as their source described them.
    pub workers: BTreeMap<String, WorkerDef>,
    /// Problems met while reading, then those of the decision.
    pub warnings: Vec<String>,
    /// Wrappers spawned, for the caller to reap.
    pub spawned: Vec<Spawned>,
    /// Workers restarted, with their new wrapper's PID.
    pub restarted: Vec<(String, i32)>,
    /// Workers whose start or restart failed, with why.
    pub failed: Vec<(String, String)>,
    /// The live wrapper of each worker found running, to watch.
    pub running: BTreeMap<String, ProcessId>,
    /// The cgroup of each running worker's incarnation that has one.
    pub cgroups: BTreeMap<String, String>,
}

/// The first half of a pass: observes every worker (`scope` = `None`) or
/// the named ones and what they depend on, and decides. The caller logs
/// what it found, then calls [`act`].
///
/// Errors: the task DB or the state DB cannot be read.
pub fn observe_and_decide(
    ctx: &Context<'_>,
    scope: Option<&BTreeSet<String>>,
) -> Result<PassResult> {
    let Observation {
        snapshot,
        workers,
        mut warnings,
    } = ctx.observer.observe(ctx.state, scope)?;
    let decision = decide(&ctx.settings.policy, &snapshot);
    warnings.extend(decision.warnings.iter().cloned());
    let running = running_wrappers(&snapshot);
    let cgroups = snapshot
        .workers
        .iter()
        .filter(|w| running.contains_key(&w.id))
        .filter_map(|w| {
            let inc = w.incarnation.as_ref().filter(|i| i.ending.is_none())?;
            Some((w.id.clone(), inc.cgroup.clone()?))
        })
        .collect();
    Ok(PassResult {
        snapshot,
        decision,
        workers,
        warnings,
        spawned: Vec::new(),
        restarted: Vec::new(),
        failed: Vec::new(),
        running,
        cgroups,
    })
}

/// The second half of a pass, under `--auto-restart`: records the
/// verdicts, carries out the decision, and takes each restart through its
/// next steps. `progress` is called between actions.
///
/// Errors: the task DB or the state DB cannot be read again.
pub fn act(
    ctx: &Context<'_>,
    result: &mut PassResult,
    log: &mut MonitorLog,
    progress: Option<&dyn Fn()>,
) -> Result<()> {
    if !ctx.settings.policy.auto_restart {
        return Ok(());
    }
    let mut actor = Actor::new(ctx.settings, ctx.observer, ctx.state, ctx.placement);
    actor.progress = progress;
    actor.record_verdicts(result.snapshot.now, &result.decision);
    actor.act(log, &result.decision.actions);
    let mut in_flight: BTreeMap<String, InFlight> = BTreeMap::new();
    let mut outcome = Ok(());
    for _ in 0..MAX_FOLLOW_UPS {
        let next = follow_ups(
            &mut actor.facts,
            &mut in_flight,
            &mut result.restarted,
            &mut result.failed,
        );
        if next.is_empty() {
            break;
        }
        let Observation { mut snapshot, .. } = match ctx.observer.observe(ctx.state, Some(&next)) {
            Ok(o) => o,
            Err(e) => {
                outcome = Err(e);
                break;
            }
        };
        for w in &mut snapshot.workers {
            w.restart = in_flight.get(&w.id).copied();
        }
        let actions: Vec<Action> = decide(&ctx.settings.policy, &snapshot)
            .actions
            .into_iter()
            .filter(|a| next.contains(a.worker()))
            .collect();
        actor.act(log, &actions);
    }
    follow_ups(
        &mut actor.facts,
        &mut in_flight,
        &mut result.restarted,
        &mut result.failed,
    );
    result.spawned = actor.spawned;
    outcome
}

/// Turns the facts reported by `act` into the next step's scope: a worker
/// whose earlier incarnation was stopped is looked at again, with its
/// restart carried over. Restarted workers are collected.
fn follow_ups(
    facts: &mut Vec<Fact>,
    in_flight: &mut BTreeMap<String, InFlight>,
    restarted: &mut Vec<(String, i32)>,
    failed: &mut Vec<(String, String)>,
) -> BTreeSet<String> {
    let mut next = BTreeSet::new();
    for fact in facts.drain(..) {
        match fact {
            Fact::OldStopped { worker, attempt } => {
                let rounds = in_flight.get(&worker).map_or(0, |f| f.stop_rounds);
                in_flight.insert(
                    worker.clone(),
                    InFlight {
                        attempt,
                        phase: RestartPhase::StoppingOld,
                        stop_rounds: rounds + 1,
                    },
                );
                next.insert(worker);
            }
            Fact::Restarted { worker, pid } => {
                in_flight.remove(&worker);
                restarted.push((worker, pid));
            }
            Fact::Failed { worker, why } => {
                in_flight.remove(&worker);
                failed.push((worker, why));
            }
        }
    }
    next
}

/// The live wrapper of each running worker: the current incarnation's, or
/// the one about to be adopted.
fn running_wrappers(snapshot: &Snapshot) -> BTreeMap<String, ProcessId> {
    let mut running = BTreeMap::new();
    for w in &snapshot.workers {
        let wrapper = match liveness(w).0 {
            Ok(Alive::Current { pid, .. }) => match &w.wrapper {
                Some(ProcessReading::Alive(info)) => Some(ProcessId {
                    pid,
                    start_ticks: info.start_ticks,
                }),
                _ => None,
            },
            Ok(Alive::Adoptable { wrapper, .. }) => Some(wrapper),
            _ => None,
        };
        if let Some(wrapper) = wrapper {
            running.insert(w.id.clone(), wrapper);
        }
    }
    running
}

//! Heals asked through the control API (`POST /workers/heal`): what an
//! automated operator may have pidwatch do about failing workers, planned
//! from the status report ([`plan`], pure), carried out under the restart
//! cap and a rate limit, and checked by the config's `post_heal` self-test.
//!
//! A heal restarts each `dead` worker at once (its backoff skipped, the
//! attempt counted against its cap like any other restart) and leaves a
//! `given_up` one to a person (`escalate`): its cap says restarting it
//! again is not the answer. `plan` changes nothing; `execute` is let
//! through at most `heal_max` times per `heal_window`, one at a time.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::act::probe::ProbeOutcome;
use crate::control::api::HealMode;
use crate::control::ratelimit::{Limited, RateLimiter};
use crate::control::{ControlReply, Pending};
use crate::core::Verdict;
use crate::render::Report;
use crate::store::monitor_log::{Level, one_line};
use crate::store::statedb::{EventKind, NewEvent};

use super::Monitor;
use super::duties::{Done, Duties, PendingStart, START_WAIT, refuse};

/// One step of a heal: what is done to which worker, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    /// The worker id.
    pub worker: String,
    /// `restart` (carried out), or `escalate` (left to a person).
    pub action: &'static str,
    /// Why: its verdict and reason.
    pub why: String,
    /// How it went, once carried out: `running`, or what failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
}

/// The self-heal summary of a report (`autoHeal` in `GET
/// /workers/status`): `status` `ok` (nothing failing), `warning` (dead
/// workers, which the monitor restarts) or `critical` (a worker given up);
/// the failing ids; the last error seen; and what to do: `monitor`,
/// `restart` or `escalate`.
pub fn auto_heal(report: &Report) -> serde_json::Value {
    let failing: Vec<&crate::render::WorkerJson> = report
        .workers
        .iter()
        .filter(|w| matches!(w.verdict, Verdict::Dead | Verdict::GivenUp))
        .collect();
    let critical = failing.iter().any(|w| w.verdict == Verdict::GivenUp);
    let (status, action) = match (failing.is_empty(), critical) {
        (true, _) => ("ok", "monitor"),
        (false, false) => ("warning", "restart"),
        (false, true) => ("critical", "escalate"),
    };
    let last_error = failing.first().map(|w| why(w));
    serde_json::json!({
        "status": status,
        "failing": failing.iter().map(|w| w.id.clone()).collect::<Vec<_>>(),
        "lastError": last_error,
        "recommendedAction": action,
    })
}

/// A worker's verdict and reason in words: `dead: no_such_process`.
fn why(w: &crate::render::WorkerJson) -> String {
    let verdict = serde_json::to_value(w.verdict)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    match (&w.reason, &w.detail) {
        (Some(reason), Some(detail)) => format!("{verdict}: {reason} ({})", one_line(detail)),
        (Some(reason), None) => format!("{verdict}: {reason}"),
        _ => verdict,
    }
}

/// The steps of a heal of `report`'s workers: restart each dead one,
/// escalate each given-up one. Pure.
pub fn plan(report: &Report) -> Vec<Step> {
    report
        .workers
        .iter()
        .filter_map(|w| {
            let action = match w.verdict {
                Verdict::Dead => "restart",
                Verdict::GivenUp => "escalate",
                _ => return None,
            };
            Some(Step {
                worker: w.id.clone(),
                action,
                why: why(w),
                result: None,
            })
        })
        .collect()
}

/// A heal under way.
pub struct HealJob {
    id: u64,
    reply: Pending,
    steps: Vec<Step>,
    reason: Option<String>,
    caller: Option<String>,
    severity: String,
    at: DateTime<Utc>,
    /// Held until the heal is answered: the next one waits for it.
    _permit: crate::control::ratelimit::HealPermit,
}

impl Monitor {
    /// The heal limiter of the config's `[api]` (1 per 5 minutes without).
    fn heal_limiter(&mut self) -> &RateLimiter {
        let (max, window) = self
            .settings
            .programs
            .as_ref()
            .map(|f| (f.api.heal_max, f.api.heal_window))
            .unwrap_or((1, std::time::Duration::from_secs(300)));
        self.duties
            .heal_limiter
            .get_or_insert_with(|| RateLimiter::new(max, window))
    }

    /// `POST /workers/heal`: answers a plan at once; carries out an
    /// `execute` and answers when its restarts settled and its self-test
    /// ran.
    pub(super) fn heal(
        &mut self,
        pending: Pending,
        mode: HealMode,
        reason: Option<String>,
        caller: Option<String>,
    ) {
        if mode == HealMode::Execute && self.observer.source.programs().is_none() {
            return pending.respond(refuse(
                409,
                "heals restart programs of a config file; the orchestrator's streams are \
                 restarted by the monitor itself, under their backoff"
                    .into(),
            ));
        }
        let state = self.state.as_ref();
        let report = match crate::commands::status_report(&self.settings, &self.observer, state) {
            Ok((report, _)) => report,
            Err(e) => return pending.respond(refuse(503, e.to_string())),
        };
        let steps = plan(&report);
        let severity = auto_heal(&report)["status"]
            .as_str()
            .unwrap_or("ok")
            .to_string();
        if mode == HealMode::Plan {
            return pending.respond(ControlReply::ok(serde_json::json!({
                "mode": "plan",
                "severity": severity,
                "steps": steps,
            })));
        }
        let permit = match self.heal_limiter().try_begin(Instant::now()) {
            Ok(permit) => permit,
            Err(limited) => {
                let mut reply = refuse(limited.status(), limited.to_string());
                if let (Limited::TooMany { .. }, Some(map)) = (&limited, reply.body.as_object_mut())
                {
                    map.insert("retryAfter".into(), limited.retry_after_secs().into());
                }
                return pending.respond(reply);
            }
        };
        let id = self.duties_next_id();
        let job = HealJob {
            id,
            reply: pending,
            steps,
            reason,
            caller,
            severity,
            at: Utc::now(),
            _permit: permit,
        };
        let restart: BTreeSet<String> = job
            .steps
            .iter()
            .filter(|s| s.action == "restart")
            .map(|s| s.worker.clone())
            .collect();
        if restart.is_empty() {
            return self.heal_started(job, &[], &BTreeMap::new());
        }
        // Each restart counts against the worker's cap, as any other.
        let scope = self.observer.scope().id.clone();
        let mut refused = BTreeMap::new();
        if let Some(state) = &self.state {
            let records = state.records(&scope, Some(&restart)).unwrap_or_default();
            for id in &restart {
                let attempts = records.get(id).map_or(0, |r| r.attempts);
                if let Err(e) = state.record_attempt(Utc::now(), &scope, id, attempts + 1) {
                    refused.insert(id.clone(), e.to_string());
                }
            }
        }
        for id in restart.iter().filter(|id| !refused.contains_key(*id)) {
            self.verdicts.remove(id);
            self.with_runtime(id, |r| r.start_requested = true);
            self.retry.insert(id.clone());
        }
        self.log.log(
            Level::Info,
            &format!(
                "Healing on request of {}: restarting {}",
                job.caller.as_deref().unwrap_or("an unnamed caller"),
                restart.iter().cloned().collect::<Vec<_>>().join(", ")
            ),
        );
        self.duties.starts.push(PendingStart {
            reply: None,
            targets: restart,
            deadline: Instant::now() + START_WAIT,
            heal: Some(job),
        });
    }

    /// A new id; heals and stop jobs share the counter.
    fn duties_next_id(&mut self) -> u64 {
        let id = self.duties.next_job;
        self.duties.next_job += 1;
        id
    }

    /// A heal's restarts settled: notes each step's result, then runs the
    /// self-test (`post_heal`) on a thread, or answers at once without one.
    pub(super) fn heal_started(
        &mut self,
        mut job: HealJob,
        started: &[String],
        failed: &BTreeMap<String, String>,
    ) {
        for step in job.steps.iter_mut().filter(|s| s.action == "restart") {
            step.result = Some(if started.contains(&step.worker) {
                "running".into()
            } else {
                failed
                    .get(&step.worker)
                    .cloned()
                    .unwrap_or_else(|| "not restarted".into())
            });
        }
        let post_heal = self.settings.programs.as_ref().and_then(|f| {
            let api = &f.api;
            let cwd = f.path.parent()?.to_path_buf();
            Some((api.post_heal.clone()?, api.post_heal_timeout, cwd))
        });
        let Some((command, timeout, cwd)) = post_heal else {
            return self.heal_done(job, None);
        };
        let (tx, wake) = (self.duties.tx.clone(), self.duties.wake.clone());
        let heal = job.id;
        self.duties.heals.insert(job.id, job);
        let spawned = std::thread::Builder::new()
            .name("pidwatch-post-heal".into())
            .spawn(move || {
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    crate::act::probe::run(&command, &[], &cwd, timeout)
                }))
                .unwrap_or_else(|_| ProbeOutcome::CouldNotRun("its thread panicked".into()));
                Duties::report(&tx, &wake, Done::SelfTest { heal, outcome });
            });
        if let Err(e) = spawned
            && let Some(job) = self.duties.heals.remove(&heal)
        {
            let outcome = ProbeOutcome::CouldNotRun(format!("cannot start a thread: {e}"));
            self.heal_done(job, Some(outcome));
        }
    }

    /// A heal's self-test ended.
    pub(super) fn heal_tested(&mut self, heal: u64, outcome: ProbeOutcome) {
        if let Some(job) = self.duties.heals.remove(&heal) {
            self.heal_done(job, Some(outcome));
        }
    }

    /// Records the heal (`lastHeal`, the journal, `monitor.log`) and answers.
    fn heal_done(&mut self, job: HealJob, self_test: Option<ProbeOutcome>) {
        let self_test = self_test.map(|o| {
            serde_json::json!({
                "passed": o.passed(),
                "exit_status": match &o {
                    ProbeOutcome::Passed => Some(0),
                    ProbeOutcome::Failed { exit_status, .. } => *exit_status,
                    _ => None,
                },
                "outcome": o.describe(),
            })
        });
        let record = serde_json::json!({
            "at": crate::store::statedb::format_time(job.at),
            "caller": job.caller,
            "reason": job.reason,
            "severity": job.severity,
            "actions": job.steps,
            "selfTest": self_test,
        });
        self.log.log(
            Level::Info,
            &format!(
                "Heal done ({} step(s)); self-test: {}",
                job.steps.len(),
                self_test
                    .as_ref()
                    .and_then(|t| t["outcome"].as_str().map(str::to_string))
                    .unwrap_or_else(|| "none configured".into())
            ),
        );
        self.journal(
            EventKind::Healed,
            NewEvent {
                detail: Some(crate::control::api::bounded(&record.to_string(), 2000)),
                ..NewEvent::default()
            },
        );
        self.duties.last_heal = Some(record.clone());
        self.duties.invalidate_status();
        let mut body = record;
        if let Some(map) = body.as_object_mut() {
            map.insert("mode".into(), "execute".into());
        }
        job.reply.respond(ControlReply::ok(body));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(workers: &[(&str, Verdict)]) -> Report {
        let json = serde_json::json!({
            "initiative": {"id": "config:t", "name": "t"},
            "workers": workers.iter().map(|(id, v)| serde_json::json!({
                "id": id, "verdict": v, "reason": "no_such_process", "detail": null,
                "pid": null, "dependencies": [],
                "tasks": {"total": 0, "completed": 0, "in_progress": 0, "pending": 0,
                          "blocked": 0, "cancelled": 0},
            })).collect::<Vec<_>>(),
            "summary": {"running": 0, "completed": 0, "not_started": 0, "stopped": 0,
                        "waiting": 0, "given_up": 0, "dead": 0},
            "warnings": [],
        });
        Report::from_json(&json.to_string()).unwrap()
    }

    #[test]
    fn a_heal_restarts_the_dead_and_escalates_the_given_up() {
        let r = report(&[
            ("a", Verdict::Running),
            ("b", Verdict::Dead),
            ("c", Verdict::GivenUp),
            ("d", Verdict::Stopped),
        ]);
        let steps = plan(&r);
        let actions: Vec<(&str, &str)> = steps
            .iter()
            .map(|s| (s.worker.as_str(), s.action))
            .collect();
        assert_eq!(actions, [("b", "restart"), ("c", "escalate")]);
        assert_eq!(steps[0].why, "dead: no_such_process");
        let summary = auto_heal(&r);
        assert_eq!(summary["status"], "critical");
        assert_eq!(summary["recommendedAction"], "escalate");
        assert_eq!(summary["failing"], serde_json::json!(["b", "c"]));
    }

    #[test]
    fn nothing_failing_is_ok_and_dead_only_is_a_warning() {
        let ok = auto_heal(&report(&[("a", Verdict::Running), ("s", Verdict::Stopped)]));
        assert_eq!(ok["status"], "ok");
        assert_eq!(ok["recommendedAction"], "monitor");
        assert!(ok["lastError"].is_null());
        let warn = auto_heal(&report(&[("b", Verdict::Dead)]));
        assert_eq!(warn["status"], "warning");
        assert_eq!(warn["recommendedAction"], "restart");
        assert_eq!(warn["lastError"], "dead: no_such_process");
    }
}

//! What the monitor does for workers from a config file besides the pass
//! (ARCHITECTURE.md, "Programs"): runs their `ready` and `health` probes,
//! stops them on request or when unhealthy, serves the control socket's
//! start, stop, restart, status and reload requests, re-reads the config
//! on SIGHUP, and rotates their logs.
//!
//! Everything slow runs on threads of its own (a probe, a stop that waits
//! `stop_timeout`), so that the loop keeps noticing deaths meanwhile; each
//! thread reports through a channel and wakes the loop through an eventfd
//! ([`TOKEN_DUTIES`]). The state DB and the decisions stay on the loop's
//! thread. While a worker is being stopped it is *held*: the passes observe
//! and judge it, but nothing is done to it, so that the death the stop
//! causes is never taken for a failure to restart.
//!
//! A start asked for marks the worker ([`Runtime::start_requested`]); the
//! pass's `decide` then starts it once what it depends on runs and is ready,
//! as it starts a worker that never ran. The caller's answer waits until
//! each worker asked for runs (and passed its `ready` probe), failed to
//! start, or [`START_WAIT`] passed.

use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::AsFd;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use chrono::Utc;
use nix::sys::epoll::{EpollEvent, EpollFlags};
use nix::sys::eventfd::{EfdFlags, EventFd};

use crate::act::probe::{self, HealthState, ProbeOutcome};
use crate::cli::TargetArgs;
use crate::control::{ControlReply, ControlRequest, Pending, Server, ServerOptions};
use crate::core::{Ending, Verdict, liveness};
use crate::error::Error;
use crate::observe::ProcessTable;
use crate::pass::PassResult;
use crate::source::config::{ConfigFile, ProgramSpec};
use crate::source::programs::Runtime;
use crate::store::monitor_log::{Level, one_line};
use crate::store::statedb::{EventKind, NewEvent};

use super::Monitor;

/// The epoll token of the duties' eventfd (a probe or a stop finished).
pub(super) const TOKEN_DUTIES: u64 = 3;
/// The epoll token of the control socket's eventfd (requests wait).
pub(super) const TOKEN_CONTROL: u64 = 4;

/// How long a start asked of the monitor waits for its workers to run and
/// be ready before it answers with those still missing.
pub const START_WAIT: Duration = crate::commands::programs::READY_WAIT;

/// How often the worker logs' sizes are looked at.
const LOG_CHECK_PERIOD: Duration = Duration::from_secs(5);

/// How long the server waits for the monitor's answer: a stop may take
/// `stop_timeout` (at most 10 minutes), then a start [`START_WAIT`].
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(12 * 60);

/// How long one status report may serve requests when no pass came since.
const STATUS_REUSE: Duration = Duration::from_secs(1);

/// The most log lines one request returns.
const MAX_LOG_LINES: usize = 10_000;

/// The most journal events one request returns.
const MAX_HISTORY: usize = 10_000;

/// The file name of the control socket in the state dir.
pub const CONTROL_SOCKET: &str = "control.sock";

/// Which probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ProbeKind {
    Ready,
    Health,
}

/// The probes of one running incarnation.
#[derive(Debug)]
struct Watching {
    incarnation: String,
    /// When the readiness probe runs next; `None` once it passed (or when
    /// there is none).
    ready_due: Option<Instant>,
    /// When the health probe runs next; `None` while not ready yet (or
    /// when there is none).
    health_due: Option<Instant>,
    health: HealthState,
    /// A probe of it runs now.
    in_flight: bool,
}

/// What a thread reports.
pub(super) enum Done {
    Probe {
        worker: String,
        incarnation: String,
        kind: ProbeKind,
        outcome: ProbeOutcome,
    },
    Stopped {
        job: u64,
        worker: String,
        said: String,
    },
    /// A heal's self-test (`post_heal`) ended.
    SelfTest { heal: u64, outcome: ProbeOutcome },
}

/// Why workers are being stopped.
enum Purpose {
    /// Asked for (`stop`, `restart`, a reload that removed or changed
    /// them): recorded as a deliberate stop; then started again when
    /// `then_start` names them.
    Asked {
        reply: Option<Pending>,
        then_start: BTreeSet<String>,
        /// A reload's: a worker that does not run is left as it is (not
        /// marked stopped, not started).
        by_reload: bool,
        /// The start after counts against the restart cap (the API's
        /// restarts).
        counted: bool,
    },
    /// Its health probe failed `retries` times in a row: not recorded as a
    /// stop, so that the pass restarts it with reason `unhealthy`.
    Unhealthy,
}

/// Workers being stopped together.
struct StopJob {
    purpose: Purpose,
    /// Workers whose thread has not reported yet.
    waiting: BTreeSet<String>,
    /// What was done to each, in words.
    said: BTreeMap<String, String>,
    /// The incarnation each stop ends, with the stop signal's name.
    ending: BTreeMap<String, (String, String)>,
    /// The workers whose stop is recorded as deliberate: all of an asked
    /// job's; those of an unhealthy one that a `stop` came for meanwhile.
    deliberate: BTreeSet<String>,
}

/// A start asked of the monitor, waiting for its workers.
pub(super) struct PendingStart {
    pub(super) reply: Option<Pending>,
    pub(super) targets: BTreeSet<String>,
    pub(super) deadline: Instant,
    /// The heal this start carries out, answered when it settles.
    pub(super) heal: Option<super::heal::HealJob>,
}

/// The monitor's duties towards programs.
pub(super) struct Duties {
    pub(super) wake: Arc<EventFd>,
    pub(super) tx: mpsc::Sender<Done>,
    rx: mpsc::Receiver<Done>,
    watching: BTreeMap<String, Watching>,
    /// Workers being stopped, with their job.
    pub(super) held: BTreeMap<String, u64>,
    jobs: BTreeMap<u64, StopJob>,
    pub(super) next_job: u64,
    pub(super) starts: Vec<PendingStart>,
    /// Failures of starts asked for, by worker, since they were asked.
    start_failures: BTreeMap<String, String>,
    /// Workers asked to start while being stopped: marked when the stop
    /// is done.
    after_stop: BTreeSet<String>,
    /// The live incarnation of each running worker, as the passes found it.
    incarnations: BTreeMap<String, String>,
    next_log_check: Instant,
    /// The control socket, when one is served.
    pub(super) server: Option<Server>,
    /// Heals waiting for their self-test, by id.
    pub(super) heals: BTreeMap<u64, super::heal::HealJob>,
    /// At most `heal_max` heals per `heal_window`, one at a time.
    pub(super) heal_limiter: Option<crate::control::ratelimit::RateLimiter>,
    /// The last heal carried out, for `status` (`lastHeal`).
    pub(super) last_heal: Option<serde_json::Value>,
    /// The last status reply: when it was built, after how many passes.
    status_cache: Option<(Instant, u64, ControlReply)>,
}

impl Duties {
    /// Duties with nothing to do yet, their eventfd added to `epoll`.
    ///
    /// Errors: the eventfd cannot be had or watched.
    pub(super) fn new(epoll: &nix::sys::epoll::Epoll) -> std::io::Result<Duties> {
        let wake = Arc::new(EventFd::from_flags(
            EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK,
        )?);
        epoll.add(
            wake.as_fd(),
            EpollEvent::new(EpollFlags::EPOLLIN, TOKEN_DUTIES),
        )?;
        let (tx, rx) = mpsc::channel();
        Ok(Duties {
            wake,
            tx,
            rx,
            watching: BTreeMap::new(),
            held: BTreeMap::new(),
            jobs: BTreeMap::new(),
            next_job: 0,
            starts: Vec::new(),
            start_failures: BTreeMap::new(),
            after_stop: BTreeSet::new(),
            incarnations: BTreeMap::new(),
            next_log_check: Instant::now(),
            server: None,
            heals: BTreeMap::new(),
            heal_limiter: None,
            last_heal: None,
            status_cache: None,
        })
    }

    /// When the loop must wake next for a duty: a probe due, a start's
    /// deadline, the log check.
    pub(super) fn next_wake(&self, programs: bool) -> Option<Instant> {
        let probes = self
            .watching
            .iter()
            .filter(|(id, w)| !w.in_flight && !self.held.contains_key(*id))
            .map(|(_, w)| w)
            .flat_map(|w| [w.ready_due, w.health_due])
            .flatten();
        let starts = self.starts.iter().map(|s| s.deadline);
        let logs = programs.then_some(self.next_log_check);
        probes.chain(starts).chain(logs).min()
    }

    /// Forgets the status report kept for the next requests (something
    /// it shows changed without a pass).
    pub(super) fn invalidate_status(&mut self) {
        self.status_cache = None;
    }

    /// Sends `done` to the loop and wakes it.
    pub(super) fn report(tx: &mpsc::Sender<Done>, wake: &EventFd, done: Done) {
        if tx.send(done).is_ok() {
            let _ = wake.write(1);
        }
    }
}

/// `{"error": ...}` with an HTTP status.
pub(super) fn refuse(status: u16, message: String) -> ControlReply {
    ControlReply::error(status, one_line(&message))
}

impl Monitor {
    /// Binds the control socket in the state dir, when workers come from
    /// a config file; logs why not when it cannot (the monitor runs on:
    /// `start` and `stop` then wait for its lock instead).
    pub(super) fn serve_control(&mut self) {
        // Without a config file (the orchestrator's dir) the socket serves
        // what reads and its own user's commands; nothing listens on TCP.
        let path = self.settings.paths.dir.join(CONTROL_SOCKET);
        let api = self.file().map(|f| f.api.clone()).unwrap_or_default();
        let options = ServerOptions {
            reply_timeout: REPLY_TIMEOUT,
            policy: crate::control::trust::TrustPolicy::from_config(
                &api,
                nix::unistd::geteuid().as_raw(),
            ),
            challenge_ttl: api.challenge_ttl,
            tcp: self.listen,
            audit: Some(crate::control::server::AuditSink {
                state_db: self.settings.paths.state_db.clone(),
                jsonl: crate::store::audit::jsonl_path(&self.settings.paths.log_dir),
            }),
            health: self.health.clone(),
            ..ServerOptions::default()
        };
        match Server::bind_with(&path, &options) {
            Ok(server) => {
                if let Err(e) = self.epoll.add(
                    server.wake_fd(),
                    EpollEvent::new(EpollFlags::EPOLLIN, TOKEN_CONTROL),
                ) {
                    self.log.log(
                        Level::Warning,
                        &format!("cannot watch the control socket: {e}; it is not served"),
                    );
                    return;
                }
                self.log
                    .log(Level::Info, &format!("Control socket: {}", path.display()));
                if let Some(addr) = self.listen {
                    self.log
                        .log(Level::Info, &format!("Control API on http://{addr}/"));
                }
                self.duties.server = Some(server);
            }
            Err(e) => self.log.log(
                Level::Warning,
                &format!("cannot serve the control socket: {e}"),
            ),
        }
    }

    /// The config file's programs, when workers come from one.
    fn file(&self) -> Option<Arc<ConfigFile>> {
        self.settings.programs.clone()
    }

    fn spec(&self, id: &str) -> Option<ProgramSpec> {
        self.observer.source.programs()?.spec(id).cloned()
    }

    pub(super) fn with_runtime(&self, id: &str, f: impl FnOnce(&mut Runtime)) {
        if let Some(programs) = self.observer.source.programs() {
            f(programs
                .runtime
                .borrow_mut()
                .entry(id.to_string())
                .or_default());
        }
    }

    /// Answers every request waiting on the control socket.
    pub(super) fn take_requests(&mut self) {
        let Some(server) = &self.duties.server else {
            return;
        };
        for pending in server.take() {
            let request = pending.request().clone();
            match request {
                ControlRequest::Status => {
                    let reply = self.status_reply(false);
                    pending.respond(reply);
                }
                ControlRequest::StatusRecent => {
                    let reply = self.status_reply(true);
                    pending.respond(reply);
                }
                ControlRequest::Reload => {
                    let reply = match self.reload_config() {
                        Ok(summary) => ControlReply::ok(summary),
                        Err(why) => refuse(400, why),
                    };
                    pending.respond(reply);
                }
                ControlRequest::Start { workers, all } => match self.targets(workers, all) {
                    Ok(ids) => self.request_start(&ids, Some(pending), true),
                    Err(reply) => pending.respond(reply),
                },
                ControlRequest::Stop { workers, all } => match self.targets(workers, all) {
                    Ok(ids) => self.stop_workers(
                        &ids,
                        Purpose::Asked {
                            reply: Some(pending),
                            then_start: BTreeSet::new(),
                            by_reload: false,
                            counted: false,
                        },
                    ),
                    Err(reply) => pending.respond(reply),
                },
                ControlRequest::Logs { worker, lines } => {
                    let reply = self.logs_reply(&worker, lines);
                    pending.respond(reply);
                }
                ControlRequest::History { worker, limit } => {
                    let reply = self.history_reply(worker.as_deref(), limit);
                    pending.respond(reply);
                }
                ControlRequest::Metrics => {
                    let reply = self.metrics_reply();
                    pending.respond(reply);
                }
                ControlRequest::Heal {
                    mode,
                    reason,
                    caller,
                } => self.heal(pending, mode, reason, caller),
                ControlRequest::Restart {
                    workers,
                    all,
                    counted,
                } => match self.targets(workers, all) {
                    Ok(ids) if counted && ids.iter().any(|id| self.duties.held.contains_key(id)) => {
                        pending.respond(refuse(409, "a worker named is being stopped or restarted now; try again when it is done".into()))
                    }
                    Ok(ids) => {
                        let then_start = ids.clone();
                        self.stop_workers(
                            &ids,
                            Purpose::Asked {
                                reply: Some(pending),
                                then_start,
                                by_reload: false,
                                counted,
                            },
                        )
                    }
                    Err(reply) => pending.respond(reply),
                },
            }
        }
    }

    /// The worker ids a request names.
    fn targets(&self, workers: Vec<String>, all: bool) -> Result<BTreeSet<String>, ControlReply> {
        let Some(file) = self.file() else {
            return Err(refuse(
                409,
                "this monitor watches an orchestrator dir: start, stop and restart are for \
                 workers from a config file"
                    .into(),
            ));
        };
        if workers.is_empty() && !all {
            return Err(refuse(
                400,
                "name the workers, or ask for all of them".into(),
            ));
        }
        crate::commands::programs::targets(&file, &TargetArgs { workers, all })
            .map_err(|e| refuse(404, e.to_string()))
    }

    /// The status report, as `status --json` prints it, from what this
    /// monitor sees (its probes' findings included).
    /// The status report: the one kept, when no pass came since it was
    /// built (or, `recent`, whatever came, when it is under a second
    /// old), else a new one. Building one reads every worker's `/proc`
    /// and cgroup files, and the loop has restarts to do.
    fn status_reply(&mut self, recent: bool) -> ControlReply {
        if let Some((at, passes, reply)) = &self.duties.status_cache
            && (*passes == self.passes || recent)
            && at.elapsed() < STATUS_REUSE
        {
            return reply.clone();
        }
        let mut reply = self.build_status_reply();
        if reply.status == 200 {
            // Kept as its JSON text: each request then costs a copy of the
            // text, not a copy of the document and its encoding.
            let text = std::mem::take(&mut reply.body).to_string();
            reply = ControlReply::text("application/json", text);
            self.duties.status_cache = Some((Instant::now(), self.passes, reply.clone()));
        }
        reply
    }

    fn build_status_reply(&mut self) -> ControlReply {
        let state = self.state.as_ref();
        match crate::commands::status_report(&self.settings, &self.observer, state) {
            Ok((mut report, code)) => {
                report.auto_heal = Some(super::heal::auto_heal(&report));
                report.last_heal = self.duties.last_heal.clone();
                match serde_json::to_value(&report) {
                    Ok(mut body) => {
                        if let Some(map) = body.as_object_mut() {
                            map.insert("exit_code".into(), code.into());
                        }
                        ControlReply::ok(body)
                    }
                    Err(e) => refuse(500, format!("encoding the status: {e}")),
                }
            }
            Err(e) => refuse(500, e.to_string()),
        }
    }

    /// The last `lines` lines of worker `id`'s log.
    fn logs_reply(&self, id: &str, lines: usize) -> ControlReply {
        let Some(programs) = self.observer.source.programs() else {
            return refuse(
                409,
                "this monitor's workers have no logs of pidwatch's".into(),
            );
        };
        let Some(spec) = programs.spec(id) else {
            return refuse(404, format!("no worker {}", crate::output::quote(id)));
        };
        let path = programs.log_of(spec);
        match crate::store::worker_log::tail(&path, lines.min(MAX_LOG_LINES)) {
            Ok(lines) => ControlReply::ok(serde_json::json!({
                "worker": id,
                "path": path,
                "lines": lines
                    .iter()
                    .map(|l| crate::output::escape_controls(l))
                    .collect::<Vec<_>>(),
            })),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                ControlReply::ok(serde_json::json!({ "worker": id, "path": path, "lines": [] }))
            }
            Err(e) => refuse(500, format!("reading {}: {e}", path.display())),
        }
    }

    /// The journal of this monitor's scope, newest last.
    fn history_reply(&self, worker: Option<&str>, limit: usize) -> ControlReply {
        let Some(state) = &self.state else {
            return ControlReply::ok(serde_json::json!({ "events": [] }));
        };
        let scope = self.observer.scope().id.clone();
        match state.history(Some(&scope), worker, limit.min(MAX_HISTORY)) {
            Ok(events) => ControlReply::ok(serde_json::json!({ "events": events })),
            Err(e) => refuse(500, e.to_string()),
        }
    }

    /// The Prometheus exposition (OpenMetrics text) of what this monitor
    /// sees, with its own histograms and counters.
    fn metrics_reply(&mut self) -> ControlReply {
        let state = self.state.as_ref();
        match crate::commands::status_report(&self.settings, &self.observer, state) {
            Ok((report, _)) => {
                let format = crate::metrics::Format::OpenMetrics;
                let text = crate::metrics::exposition(&report, Some(&self.metrics), format);
                ControlReply::text(format.content_type(), text)
            }
            Err(e) => refuse(500, e.to_string()),
        }
    }

    /// Asks for `ids` (and, `with_dependencies`, what they depend on) to
    /// start: a worker that runs is left as it is; one that is stopped,
    /// spent or never started is marked, and the next pass starts it when
    /// its dependencies are met; one being stopped is marked once its stop
    /// is done. `reply`, if any, is answered once each of `ids` runs and is
    /// ready, failed, or [`START_WAIT`] passed.
    fn request_start(
        &mut self,
        ids: &BTreeSet<String>,
        reply: Option<Pending>,
        with_dependencies: bool,
    ) {
        let closure = if with_dependencies {
            crate::source::dependency_closure(&self.dependency_graph(), ids)
        } else {
            ids.clone()
        };
        let scope = self.observer.scope().id.clone();
        for id in &closure {
            self.duties.start_failures.remove(id);
            if self.duties.held.contains_key(id) {
                self.duties.after_stop.insert(id.clone());
                continue;
            }
            // Judged afresh by the pass that follows before the start is
            // said done (the verdict in hand may predate a stop).
            let was = self.verdicts.remove(id);
            // (A mark on a worker that runs is cleared by the next pass.)
            self.with_runtime(id, |r| r.start_requested = true);
            self.retry.insert(id.clone());
            if was == Some(Verdict::Running) {
                continue;
            }
            // A start by hand clears the restart cap's count, as
            // `systemctl reset-failed` and a start do.
            if let Some(state) = &self.state {
                let one = BTreeSet::from([id.clone()]);
                let spent = state
                    .records(&scope, Some(&one))
                    .ok()
                    .and_then(|r| r.get(id).map(|r| r.attempts > 0 || r.given_up))
                    .unwrap_or(false);
                if spent && let Err(e) = state.reset(Utc::now(), &scope, id, EventKind::Reset, true)
                {
                    self.with_runtime(id, |r| r.start_requested = false);
                    self.duties.start_failures.insert(id.clone(), e.to_string());
                }
            }
        }
        self.duties.starts.push(PendingStart {
            reply,
            targets: ids.clone(),
            deadline: Instant::now() + START_WAIT,
            heal: None,
        });
        self.check_starts();
    }

    /// Asks for `ids` to start as a restart counted against each one's cap
    /// (the API's restarts): one at its cap is refused ("restart cap
    /// reached"); the others have their attempt counted, then start as
    /// [`Monitor::request_start`] starts them (without their dependencies).
    fn request_counted_start(&mut self, ids: &BTreeSet<String>, reply: Option<Pending>) {
        let scope = self.observer.scope().id.clone();
        let records = self
            .state
            .as_ref()
            .and_then(|s| s.records(&scope, Some(ids)).ok())
            .unwrap_or_default();
        let mut capped = BTreeMap::new();
        for id in ids {
            let max = self
                .spec(id)
                .map_or(self.settings.policy.max_restarts, |s| s.max_restarts);
            let record = records.get(id);
            let attempts = record.map_or(0, |r| r.attempts);
            if record.is_some_and(|r| r.given_up) || attempts >= max {
                capped.insert(
                    id.clone(),
                    format!(
                        "its restart cap is reached ({attempts}/{max}); `pidwatch start` or \
                         `pidwatch reset` by hand lets it start again"
                    ),
                );
                continue;
            }
            if let Some(state) = &self.state
                && let Err(e) = state.record_attempt(Utc::now(), &scope, id, attempts + 1)
            {
                capped.insert(id.clone(), e.to_string());
            }
        }
        let go: BTreeSet<String> = ids
            .difference(&capped.keys().cloned().collect())
            .cloned()
            .collect();
        for id in &go {
            self.duties.start_failures.remove(id);
            self.verdicts.remove(id);
            if self.duties.held.contains_key(id) {
                self.duties.after_stop.insert(id.clone());
            } else {
                self.with_runtime(id, |r| r.start_requested = true);
                self.retry.insert(id.clone());
            }
        }
        self.duties.start_failures.extend(capped);
        self.duties.starts.push(PendingStart {
            reply,
            targets: ids.clone(),
            deadline: Instant::now() + START_WAIT,
            heal: None,
        });
        self.check_starts();
    }

    /// The verdict of worker `id` when its start, done, came to an end
    /// other than running: dead again, given up after its restarts,
    /// stopped, or completed. `None` while it may yet come up (being stopped first,
    /// marked, waiting, dead with a restart due).
    fn settled_otherwise(&self, id: &str) -> Option<Verdict> {
        if self.duties.held.contains_key(id) || self.duties.after_stop.contains(id) {
            return None;
        }
        let requested = self.observer.source.programs().is_some_and(|p| {
            p.runtime
                .borrow()
                .get(id)
                .is_some_and(|r| r.start_requested)
        });
        let verdict = *self.verdicts.get(id)?;
        // Dead once started: it died (its restart is the policy's now).
        let settled = matches!(
            verdict,
            Verdict::GivenUp | Verdict::Stopped | Verdict::Completed | Verdict::Dead
        );
        (!requested && settled).then_some(verdict)
    }

    /// Whether worker `id` runs and, if it has a readiness probe, passed it
    /// (not while it is being stopped).
    fn runs_ready(&self, id: &str) -> bool {
        if self.verdicts.get(id) != Some(&Verdict::Running) || self.duties.held.contains_key(id) {
            return false;
        }
        let Some(programs) = self.observer.source.programs() else {
            return true;
        };
        if programs.spec(id).is_none_or(|s| s.ready.is_none()) {
            return true;
        }
        let current = self.duties.incarnations.get(id);
        self.observer
            .source
            .programs()
            .and_then(|p| p.runtime.borrow().get(id).map(|r| r.ready_for.clone()))
            .flatten()
            .is_some_and(|ready| Some(&ready) == current)
    }

    /// Answers each start asked for whose workers all run and are ready,
    /// failed, or whose time is up.
    pub(super) fn check_starts(&mut self) {
        if self.duties.starts.is_empty() {
            return;
        }
        let now = Instant::now();
        let graph = self.dependency_graph();
        let starts = std::mem::take(&mut self.duties.starts);
        for mut start in starts {
            let mut started = Vec::new();
            let mut failed = BTreeMap::new();
            let mut waiting = Vec::new();
            for id in &start.targets {
                if self.runs_ready(id) {
                    started.push(id.clone());
                } else if let Some(why) = self.duties.start_failures.get(id) {
                    failed.insert(id.clone(), why.clone());
                } else if let Some(dep) = self.failed_dependency(&graph, id) {
                    failed.insert(id.clone(), format!("its dependency {dep} did not start"));
                } else if let Some(verdict) = self.settled_otherwise(id) {
                    failed.insert(id.clone(), format!("it is {verdict}"));
                } else {
                    waiting.push(id.clone());
                }
            }
            if !waiting.is_empty() && now < start.deadline {
                self.duties.starts.push(start);
                continue;
            }
            for id in waiting {
                let why = match self.verdicts.get(&id) {
                    Some(Verdict::Running) => format!(
                        "it did not pass its ready probe within {} s",
                        START_WAIT.as_secs()
                    ),
                    Some(Verdict::Waiting) => format!(
                        "what it depends on did not come up within {} s",
                        START_WAIT.as_secs()
                    ),
                    Some(v) => format!("not running after {} s ({v})", START_WAIT.as_secs()),
                    None => format!("not running after {} s", START_WAIT.as_secs()),
                };
                failed.insert(id, why);
            }
            if let Some(reply) = start.reply.take() {
                reply.respond(ControlReply::ok(serde_json::json!({
                    "started": started,
                    "failed": failed,
                })));
            }
            if let Some(heal) = start.heal.take() {
                self.heal_started(heal, &started, &failed);
            }
        }
    }

    /// What each worker of the config file depends on.
    fn dependency_graph(&self) -> BTreeMap<String, BTreeSet<String>> {
        self.file()
            .map(|f| {
                f.workers
                    .iter()
                    .map(|w| (w.id.clone(), w.depends_on.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A worker `id` depends on, directly or not, whose start failed.
    fn failed_dependency(
        &self,
        graph: &BTreeMap<String, BTreeSet<String>>,
        id: &str,
    ) -> Option<String> {
        let closure = crate::source::dependency_closure(graph, &BTreeSet::from([id.to_string()]));
        closure
            .into_iter()
            .find(|d| d != id && self.duties.start_failures.contains_key(d))
    }

    /// Stops the running workers of `ids` on threads of their own, holding
    /// them meanwhile; a worker that does not run is answered at once (and,
    /// when asked, its last incarnation is marked stopped so that it is
    /// not restarted).
    fn stop_workers(&mut self, ids: &BTreeSet<String>, purpose: Purpose) {
        let job = self.duties.next_job;
        self.duties.next_job += 1;
        let mut said = BTreeMap::new();
        let mut waiting = BTreeSet::new();
        let mut ending = BTreeMap::new();
        let asked = matches!(
            purpose,
            Purpose::Asked {
                by_reload: false,
                ..
            }
        );
        let scope = self.observer.scope().id.clone();
        let observation = self
            .observer
            .observe(self.state.as_ref(), Some(ids))
            .map(|o| o.snapshot.workers);
        let workers = match observation {
            Ok(workers) => workers,
            Err(e) => {
                for id in ids {
                    said.insert(id.clone(), format!("cannot observe it: {e}"));
                }
                Vec::new()
            }
        };
        let mut table = ProcessTable::default();
        for w in workers.iter().filter(|w| ids.contains(&w.id)) {
            if asked {
                self.with_runtime(&w.id, |r| r.start_requested = false);
                self.duties.starts.iter_mut().for_each(|s| {
                    s.targets.remove(&w.id);
                });
            }
            if let Some(other) = self.duties.held.get(&w.id).copied() {
                // Already being stopped: a stop asked for now makes it a
                // deliberate one, and nothing starts it after.
                if asked && let Some(j) = self.duties.jobs.get_mut(&other) {
                    j.deliberate.insert(w.id.clone());
                    if let Purpose::Asked { then_start, .. } = &mut j.purpose {
                        then_start.remove(&w.id);
                    }
                    self.duties.after_stop.remove(&w.id);
                }
                said.insert(
                    w.id.clone(),
                    "already being stopped; it stays stopped".into(),
                );
                continue;
            }
            let Some(spec) = self.spec(&w.id) else {
                continue;
            };
            let members = self.observer.live_processes(w, &mut table);
            let live = w.incarnation.as_ref().filter(|i| i.ending.is_none());
            if members.is_empty() && (live.is_none() || liveness(w).0.is_err()) {
                if asked
                    && let (Some(state), Some(inc)) = (&self.state, &w.incarnation)
                    && let Err(e) =
                        state.mark_stopped(&scope, &w.id, &inc.id, "stopped while not running")
                {
                    self.log.log(Level::Error, &e.to_string());
                }
                said.insert(w.id.clone(), "not running".into());
                continue;
            }
            if let Some(inc) = live {
                ending.insert(
                    w.id.clone(),
                    (inc.id.clone(), spec.stop_signal.name.clone()),
                );
            }
            let cgroup = live.and_then(|i| i.cgroup.clone());
            self.duties.held.insert(w.id.clone(), job);
            waiting.insert(w.id.clone());
            let (tx, wake, procfs) = (
                self.duties.tx.clone(),
                self.duties.wake.clone(),
                self.observer.procfs.clone(),
            );
            let worker = w.id.clone();
            let spawned = std::thread::Builder::new()
                .name("pidwatch-stop".into())
                .spawn(move || {
                    // Reported even if it panics: the worker is never left
                    // held, nor its caller waiting.
                    let said = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        crate::act::stop::stop_program(&procfs, &spec, &members, cgroup.as_deref())
                    }))
                    .unwrap_or_else(|_| "the stop failed (a bug: its thread panicked)".into());
                    Duties::report(&tx, &wake, Done::Stopped { job, worker, said });
                });
            if let Err(e) = spawned {
                self.duties.held.remove(&w.id);
                waiting.remove(&w.id);
                said.insert(
                    w.id.clone(),
                    format!("cannot start a thread to stop it: {e}"),
                );
            }
        }
        for id in ids {
            if !said.contains_key(id) && !waiting.contains(id) {
                said.insert(id.clone(), "not running".into());
            }
        }
        let deliberate = match purpose {
            Purpose::Asked { .. } => waiting.clone(),
            Purpose::Unhealthy => BTreeSet::new(),
        };
        self.duties.jobs.insert(
            job,
            StopJob {
                purpose,
                waiting,
                said,
                ending,
                deliberate,
            },
        );
        self.finish_job_if_done(job);
    }

    /// Ends job `job` once every one of its workers reported: records the
    /// deliberate stops, releases the workers, answers the caller, starts
    /// again what a restart names.
    fn finish_job_if_done(&mut self, job: u64) {
        self.duties.invalidate_status();
        if self
            .duties
            .jobs
            .get(&job)
            .is_none_or(|j| !j.waiting.is_empty())
        {
            return;
        }
        let Some(done) = self.duties.jobs.remove(&job) else {
            return;
        };
        let held: Vec<String> = self
            .duties
            .held
            .iter()
            .filter(|(_, j)| **j == job)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &held {
            self.duties.held.remove(id);
            self.retry.insert(id.clone());
        }
        // An unhealthy incarnation's end is recorded as what it is, not a
        // deliberate stop of the worker: the pass restarts it.
        self.record_endings(&done.ending, &done.deliberate);
        for id in &done.deliberate {
            self.with_runtime(id, |r| *r = Runtime::default());
        }
        // Starts asked for while they were being stopped.
        let again: BTreeSet<String> = held
            .iter()
            .filter(|id| self.duties.after_stop.remove(*id))
            .cloned()
            .collect();
        if !again.is_empty() {
            self.request_start(&again, None, false);
        }
        match done.purpose {
            Purpose::Unhealthy => {}
            Purpose::Asked {
                reply,
                mut then_start,
                by_reload,
                counted,
            } => {
                if by_reload {
                    then_start.retain(|id| done.ending.contains_key(id));
                }
                for (id, what) in &done.said {
                    if what != "not running" {
                        self.log
                            .log(Level::Info, &format!("Stopped worker {id}: {what}"));
                    }
                }
                if then_start.is_empty() {
                    if let Some(reply) = reply {
                        reply.respond(ControlReply::ok(serde_json::json!({
                            "stopped": done.said,
                        })));
                    }
                } else {
                    if counted {
                        self.request_counted_start(&then_start, reply);
                    } else {
                        self.request_start(&then_start, reply, true);
                    }
                }
            }
        }
    }

    /// Records the end of each incarnation in `endings` (worker →
    /// incarnation, stop signal): a deliberate stop for the workers in
    /// `deliberate`, else pidwatch's stop of an unhealthy one.
    fn record_endings(
        &mut self,
        endings: &BTreeMap<String, (String, String)>,
        deliberate: &BTreeSet<String>,
    ) {
        let Some(state) = &self.state else { return };
        let scope = self.observer.scope().id.clone();
        for (id, (incarnation, signal)) in endings {
            let stopped = deliberate.contains(id);
            let ending = Ending {
                at: Utc::now(),
                exit_status: None,
                signal: Some(signal.clone()),
                stopped,
            };
            let mut recorded = state.end_incarnation(&scope, id, incarnation, &ending);
            if stopped && recorded.is_ok() {
                // Also when the incarnation had ended meanwhile.
                recorded = state.mark_stopped(&scope, id, incarnation, "stopped on request");
            }
            if let Err(e) = recorded {
                self.log.log(Level::Error, &e.to_string());
            }
        }
    }

    /// Takes what the probe and stop threads reported.
    pub(super) fn take_done(&mut self) {
        let _ = self.duties.wake.read();
        while let Ok(done) = self.duties.rx.try_recv() {
            match done {
                Done::Stopped { job, worker, said } => {
                    if let Some(j) = self.duties.jobs.get_mut(&job) {
                        j.waiting.remove(&worker);
                        j.said.insert(worker, said);
                    }
                    self.finish_job_if_done(job);
                }
                Done::Probe {
                    worker,
                    incarnation,
                    kind,
                    outcome,
                } => self.probe_done(&worker, &incarnation, kind, &outcome),
                Done::SelfTest { heal, outcome } => self.heal_tested(heal, outcome),
            }
        }
        self.check_starts();
    }

    fn probe_done(&mut self, id: &str, incarnation: &str, kind: ProbeKind, outcome: &ProbeOutcome) {
        let Some(spec) = self.spec(id) else { return };
        let Some(watching) = self
            .duties
            .watching
            .get_mut(id)
            .filter(|w| w.incarnation == incarnation)
        else {
            return;
        };
        watching.in_flight = false;
        let now = Instant::now();
        match kind {
            ProbeKind::Ready => {
                let Some(ready) = &spec.ready else { return };
                if !outcome.passed() {
                    watching.ready_due = Some(now + ready.interval);
                    return;
                }
                watching.ready_due = None;
                watching.health_due = spec.health.as_ref().map(|h| now + h.interval);
                self.with_runtime(id, |r| r.ready_for = Some(incarnation.to_string()));
                self.log
                    .log(Level::Success, &format!("Worker {id} is ready"));
                // What waits for it is looked at again.
                let dependents: Vec<String> = self
                    .workers
                    .values()
                    .filter(|w| w.dependencies.contains(id))
                    .map(|w| w.id.clone())
                    .collect();
                self.retry.extend(dependents);
                self.retry.insert(id.to_string());
            }
            ProbeKind::Health => {
                let Some(health) = &spec.health else { return };
                let unhealthy = watching.health.record(outcome.passed(), health.retries);
                watching.health_due = Some(now + health.interval);
                if !unhealthy {
                    return;
                }
                watching.health_due = None;
                let why = format!(
                    "failed its health probe {} time(s) in a row (last: {})",
                    health.retries.max(1),
                    outcome.describe()
                );
                self.log.log(
                    Level::Warning,
                    &format!(
                        "Worker {id} is unhealthy: {}; restarting it",
                        one_line(&why)
                    ),
                );
                self.journal(
                    EventKind::Unhealthy,
                    NewEvent {
                        worker: Some(id),
                        detail: Some(why),
                        ..NewEvent::default()
                    },
                );
                self.with_runtime(id, |r| r.unhealthy = Some(incarnation.to_string()));
                self.stop_workers(&BTreeSet::from([id.to_string()]), Purpose::Unhealthy);
            }
        }
    }

    /// After a pass: follows which incarnation of each program runs (for
    /// its probes), clears the starts asked for that happened, takes the
    /// failed ones, and answers the starts that are settled.
    pub(super) fn after_pass(&mut self, result: &PassResult) {
        let Some(programs) = self.observer.source.programs() else {
            return;
        };
        let now = Instant::now();
        // Started in this pass: the start asked for is done, whatever
        // comes of it (a death now is the restart policy's).
        for (id, _) in &result.restarted {
            if let Some(r) = programs.runtime.borrow_mut().get_mut(id) {
                r.start_requested = false;
            }
        }
        let snapshots: BTreeMap<&str, &crate::core::WorkerSnapshot> = result
            .snapshot
            .workers
            .iter()
            .map(|w| (w.id.as_str(), w))
            .collect();
        for d in &result.decision.workers {
            let w = snapshots.get(d.id.as_str());
            let live = w
                .and_then(|w| w.incarnation.as_ref())
                .filter(|i| i.ending.is_none() && d.verdict == Verdict::Running)
                .map(|i| i.id.clone());
            let Some(incarnation) = live else {
                self.duties.incarnations.remove(&d.id);
                self.duties.watching.remove(&d.id);
                continue;
            };
            if d.verdict == Verdict::Running
                && let Some(r) = programs.runtime.borrow_mut().get_mut(&d.id)
            {
                r.start_requested = false;
            }
            self.duties
                .incarnations
                .insert(d.id.clone(), incarnation.clone());
            let Some(spec) = programs.spec(&d.id) else {
                continue;
            };
            if spec.ready.is_none() && spec.health.is_none() {
                continue;
            }
            if self
                .duties
                .watching
                .get(&d.id)
                .is_some_and(|w| w.incarnation == incarnation)
            {
                continue;
            }
            let ready_for = programs
                .runtime
                .borrow()
                .get(&d.id)
                .and_then(|r| r.ready_for.clone());
            let is_ready = ready_for.as_deref() == Some(incarnation.as_str());
            self.duties.watching.insert(
                d.id.clone(),
                Watching {
                    incarnation,
                    ready_due: (spec.ready.is_some() && !is_ready).then_some(now),
                    health_due: spec
                        .health
                        .as_ref()
                        .filter(|_| spec.ready.is_none() || is_ready)
                        .map(|h| now + h.interval),
                    health: HealthState::default(),
                    in_flight: false,
                },
            );
        }
        for (id, why) in &result.failed {
            let requested = programs
                .runtime
                .borrow()
                .get(id)
                .is_some_and(|r| r.start_requested);
            if requested {
                self.with_runtime(id, |r| r.start_requested = false);
                self.duties.start_failures.insert(id.clone(), why.clone());
            }
        }
        self.check_starts();
    }

    /// Starts each probe that is due, on a thread of its own.
    pub(super) fn run_due_probes(&mut self) {
        let now = Instant::now();
        let due: Vec<(String, ProbeKind)> = self
            .duties
            .watching
            .iter()
            .filter(|(id, w)| !w.in_flight && !self.duties.held.contains_key(*id))
            .filter_map(|(id, w)| {
                if w.ready_due.is_some_and(|t| t <= now) {
                    Some((id.clone(), ProbeKind::Ready))
                } else if w.health_due.is_some_and(|t| t <= now) {
                    Some((id.clone(), ProbeKind::Health))
                } else {
                    None
                }
            })
            .collect();
        for (id, kind) in due {
            let Some(spec) = self.spec(&id) else { continue };
            let probe = match kind {
                ProbeKind::Ready => spec.ready.clone(),
                ProbeKind::Health => spec.health.clone(),
            };
            let (Some(probe), Some(w)) = (probe, self.duties.watching.get_mut(&id)) else {
                continue;
            };
            w.in_flight = true;
            let incarnation = w.incarnation.clone();
            let (tx, wake) = (self.duties.tx.clone(), self.duties.wake.clone());
            let worker = id.clone();
            let spawned = std::thread::Builder::new()
                .name("pidwatch-probe".into())
                .spawn(move || {
                    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        probe::run(&probe.command, &spec.env, &spec.cwd, probe.timeout)
                    }))
                    .unwrap_or_else(|_| ProbeOutcome::CouldNotRun("its thread panicked".into()));
                    Duties::report(
                        &tx,
                        &wake,
                        Done::Probe {
                            worker,
                            incarnation,
                            kind,
                            outcome,
                        },
                    );
                });
            if spawned.is_err()
                && let Some(w) = self.duties.watching.get_mut(&id)
            {
                w.in_flight = false;
            }
        }
    }

    /// Rotates each program's log that grew past its `log_max_bytes`
    /// (every [`LOG_CHECK_PERIOD`]).
    pub(super) fn rotate_logs(&mut self) {
        if Instant::now() < self.duties.next_log_check {
            return;
        }
        self.duties.next_log_check = Instant::now() + LOG_CHECK_PERIOD;
        let Some(programs) = self.observer.source.programs() else {
            return;
        };
        let mut failures = Vec::new();
        for spec in &programs.file().workers {
            let path = programs.log_of(spec);
            match crate::store::worker_log::rotate_if_needed(
                &path,
                spec.log_max_bytes,
                spec.log_keep,
            ) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => failures.push(format!("rotating {}: {e}", path.display())),
            }
        }
        for f in failures {
            if self.watch_warned.insert(f.clone()) {
                self.log.log(Level::Warning, &f);
            }
        }
    }

    /// Reads the config file again (SIGHUP, `POST /v1/reload`): added
    /// workers start, removed ones stop, changed ones restart, unchanged
    /// ones are not touched. An invalid file is refused with its errors,
    /// and the running set stays as it was. Returns what changed, as JSON.
    ///
    /// Errors: the file's problems, one a line; a changed `state_dir`.
    pub(super) fn reload_config(&mut self) -> Result<serde_json::Value, String> {
        let Some(old) = self.file() else {
            return Err("this monitor watches an orchestrator dir, not a config file".into());
        };
        let env = crate::config::Environment::current();
        let new = crate::config::load_config(&old.path, &env).map_err(|e| match e {
            Error::Config(text) => text,
            other => other.to_string(),
        })?;
        if new.state_dir != old.state_dir || new.name != old.name {
            return Err(format!(
                "{}: its state_dir or name changed; that takes a restart of pidwatch",
                old.path.display()
            ));
        }
        let before: BTreeMap<&str, &ProgramSpec> =
            old.workers.iter().map(|w| (w.id.as_str(), w)).collect();
        let after: BTreeMap<&str, &ProgramSpec> =
            new.workers.iter().map(|w| (w.id.as_str(), w)).collect();
        let added: BTreeSet<String> = after
            .keys()
            .filter(|id| !before.contains_key(*id))
            .map(|id| id.to_string())
            .collect();
        let removed: BTreeSet<String> = before
            .keys()
            .filter(|id| !after.contains_key(*id))
            .map(|id| id.to_string())
            .collect();
        let changed: BTreeSet<String> = after
            .iter()
            .filter(|(id, spec)| before.get(*id).is_some_and(|old| old != *spec))
            .map(|(id, _)| id.to_string())
            .collect();
        let unchanged = after.len() - added.len() - changed.len();

        let mut settings = self.settings.clone();
        settings.programs = Some(Arc::new(new));
        let observer = crate::observe::Observer::open(&settings).map_err(|e| e.to_string())?;
        // Removed and changed workers are stopped as the old file says
        // (their stop command, signal and timeout).
        let going: BTreeSet<String> = removed.union(&changed).cloned().collect();
        if !going.is_empty() {
            self.stop_workers(
                &going,
                Purpose::Asked {
                    reply: None,
                    then_start: changed.clone(),
                    by_reload: true,
                    counted: false,
                },
            );
        }
        // What the probes found of unchanged workers carries over.
        if let (Some(old_programs), Some(new_programs)) =
            (self.observer.source.programs(), observer.source.programs())
        {
            let kept: BTreeMap<String, Runtime> = old_programs
                .runtime
                .borrow()
                .iter()
                .filter(|(id, _)| !going.contains(*id))
                .map(|(id, r)| (id.clone(), r.clone()))
                .collect();
            *new_programs.runtime.borrow_mut() = kept;
        }
        for id in &removed {
            self.duties.watching.remove(id);
        }
        for id in &changed {
            self.duties.watching.remove(id);
        }
        self.settings = settings;
        self.observer = observer;
        if !added.is_empty() {
            // Only what was added: a dependency stopped on purpose stays
            // so (the added worker waits for it).
            self.request_start(&added, None, false);
        }
        let list = |s: &BTreeSet<String>| s.iter().cloned().collect::<Vec<_>>();
        self.log.log(
            Level::Info,
            &format!(
                "Config reloaded: {} added, {} removed, {} changed, {unchanged} unchanged",
                added.len(),
                removed.len(),
                changed.len()
            ),
        );
        Ok(serde_json::json!({
            "added": list(&added),
            "removed": list(&removed),
            "changed": list(&changed),
            "unchanged": unchanged,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_workers_due_probe_does_not_wake_the_loop() {
        let epoll =
            nix::sys::epoll::Epoll::new(nix::sys::epoll::EpollCreateFlags::EPOLL_CLOEXEC).unwrap();
        let mut duties = Duties::new(&epoll).unwrap();
        let due = Instant::now();
        duties.watching.insert(
            "w".into(),
            Watching {
                incarnation: "i".into(),
                ready_due: None,
                health_due: Some(due),
                health: HealthState::default(),
                in_flight: false,
            },
        );
        assert_eq!(duties.next_wake(false), Some(due));
        // Being stopped: its probes wait, and so does the loop.
        duties.held.insert("w".into(), 0);
        assert_eq!(duties.next_wake(false), None);
        duties.held.clear();
        duties.watching.get_mut("w").unwrap().in_flight = true;
        assert_eq!(duties.next_wake(false), None);
    }
}

//! `act`: carries out the actions of a decision, and records each step in the
//! state DB and `monitor.log`.

pub mod spawn;

use std::collections::BTreeMap;

use crate::act::spawn::{SpawnOutcome, WrapperCall};
use crate::config::Settings;
use crate::core::{Action, Decision, Reason, RestartRecord, Snapshot, Verdict, liveness};
use crate::observe::Observer;
use crate::observe::pidfile;
use crate::observe::taskdb::Stream;
use crate::store::monitor_log::{Level, MonitorLog};
use crate::store::statedb::{EventKind, NewEvent, StateDb};

/// A wrapper the monitor started, to be reaped when it exits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spawned {
    /// The worker id.
    pub worker: String,
    /// The wrapper's PID (our child).
    pub pid: i32,
}

/// Carries out actions for one orchestrator dir and initiative.
pub struct Actor<'a> {
    settings: &'a Settings,
    observer: &'a Observer,
    state: Option<&'a StateDb>,
    /// Wrappers started by this actor, for the caller to reap.
    pub spawned: Vec<Spawned>,
    /// Workers restarted, with the PID of their new PID file.
    pub restarted: Vec<(String, i32)>,
    /// Called between actions, to show the caller that work goes on (the
    /// monitor feeds the systemd watchdog from it).
    pub progress: Option<&'a dyn Fn()>,
}

impl<'a> Actor<'a> {
    /// An actor; `state` is `None` when nothing may be recorded (dry run).
    pub fn new(settings: &'a Settings, observer: &'a Observer, state: Option<&'a StateDb>) -> Self {
        Actor {
            settings,
            observer,
            state,
            spawned: Vec::new(),
            restarted: Vec::new(),
            progress: None,
        }
    }

    fn initiative(&self) -> &str {
        &self.observer.initiative.id
    }

    /// Records verdicts that changed since the last recorded pass, and
    /// journals `dead_detected` for workers that became dead or given up.
    pub fn record_verdicts(&self, snapshot: &Snapshot, decision: &Decision) {
        let Some(state) = self.state else { return };
        let changed: Vec<(&str, Verdict, Option<i32>, Option<String>)> = decision
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
        if let Err(e) = state.record_verdicts(snapshot.now, self.initiative(), &changed) {
            crate::output::print_stderr(&format!("pidwatch: {e}"));
        }
    }

    fn journal(&self, kind: EventKind, event: NewEvent<'_>) {
        if let Some(state) = self.state
            && let Err(e) = state.journal(spawn::now(), Some(self.initiative()), kind, event)
        {
            crate::output::print_stderr(&format!("pidwatch: {e}"));
        }
    }

    /// Carries out every action of `decision`, in order. `streams` gives the
    /// names, dependencies and open tasks for the restart prompts.
    pub fn act(
        &mut self,
        log: &mut MonitorLog,
        decision: &Decision,
        streams: &BTreeMap<String, Stream>,
    ) {
        let dry_run = self.settings.spawn.dry_run;
        for action in &decision.actions {
            if let Some(progress) = self.progress {
                progress();
            }
            match action {
                Action::GiveUp { worker, max } => {
                    log.log(
                        Level::Error,
                        &format!("Worker {worker} has reached max restart limit ({max})"),
                    );
                    if let (Some(state), false) = (self.state, dry_run) {
                        let detail = format!("{max} restart attempt(s) used");
                        if let Err(e) =
                            state.give_up(spawn::now(), self.initiative(), worker, detail)
                        {
                            log.log(Level::Error, &e.to_string());
                        }
                    }
                }
                Action::ResetAttempts { worker } => {
                    if dry_run {
                        log.log(
                            Level::Info,
                            &format!("[dry-run] would reset restart attempts of {worker}"),
                        );
                        continue;
                    }
                    log.log(
                        Level::Info,
                        &format!(
                            "Worker {worker} ran stably for {} s; restart attempts reset",
                            self.settings.policy.stable_after.as_secs()
                        ),
                    );
                    if let Some(state) = self.state
                        && let Err(e) = state.reset(
                            spawn::now(),
                            self.initiative(),
                            worker,
                            EventKind::AttemptsReset,
                            false,
                        )
                    {
                        log.log(Level::Error, &e.to_string());
                    }
                }
                Action::Restart {
                    worker,
                    attempt,
                    max,
                } => {
                    if dry_run {
                        log.log(
                            Level::Info,
                            &format!(
                                "[dry-run] would restart worker {worker} (attempt {attempt}/{max})"
                            ),
                        );
                        continue;
                    }
                    if let Some(stream) = streams.get(worker) {
                        self.restart(log, stream, *attempt, *max);
                    }
                }
            }
        }
    }

    /// One restart, step by step (DESIGN.md, "Restart policy").
    fn restart(&mut self, log: &mut MonitorLog, stream: &Stream, attempt: u32, max: u32) {
        let worker = stream.id.as_str();
        // 1. Look again at what changes fast, the PID file and the process:
        // no restart on a stale view. (Tasks and dependencies were read by
        // this same pass.) Survivors of the old worker all started before
        // this moment.
        let started_by = self.observer.procfs.now_ticks();
        let fresh = self
            .observer
            .observe_worker(stream, RestartRecord::default());
        let (alive, old_pid) = liveness(&fresh);
        let reason = match alive {
            Ok(()) => {
                log.log(
                    Level::Info,
                    &format!("Worker {worker} is running again; restart not needed"),
                );
                return;
            }
            Err(Reason::InvalidPidfile(why)) => {
                log.log(
                    Level::Warning,
                    &format!("Worker {worker}'s PID file became invalid ({why}); not restarted"),
                );
                return;
            }
            Err(reason) => Some(reason),
        };

        // 2. Count the attempt before anything can fail or crash.
        log.log(
            Level::Info,
            &format!("Restarting worker {worker} (attempt {attempt}/{max})"),
        );
        if let Some(state) = self.state
            && let Err(e) = state.record_attempt(spawn::now(), self.initiative(), worker, attempt)
        {
            log.log(
                Level::Error,
                &format!("Failed to restart worker {worker}: {e}"),
            );
            return;
        }

        match self.prepare_and_spawn(log, stream, reason, old_pid, started_by) {
            Ok(pid) => {
                self.restarted.push((worker.to_string(), pid));
                log.log(
                    Level::Success,
                    &format!("Worker {worker} restarted (PID: {pid})"),
                );
                // Recorded as running at once, so that a death before the
                // next pass is journaled as a death of its own.
                if let Some(state) = self.state
                    && let Err(e) = state.record_restarted(
                        spawn::now(),
                        self.initiative(),
                        worker,
                        pid,
                        attempt,
                    )
                {
                    log.log(Level::Error, &e.to_string());
                }
            }
            Err(why) => {
                log.log(
                    Level::Error,
                    &format!("Failed to restart worker {worker}: {why}"),
                );
                self.journal(
                    EventKind::RestartFailed,
                    NewEvent {
                        worker: Some(worker),
                        attempt: Some(attempt),
                        detail: Some(why),
                        ..NewEvent::default()
                    },
                );
            }
        }
    }

    /// Steps 3 to 6: stop survivors, ensure the work dir, spawn, wait for the
    /// PID file. Returns the new PID, or why it failed.
    fn prepare_and_spawn(
        &mut self,
        log: &mut MonitorLog,
        stream: &Stream,
        reason: Option<Reason>,
        old_pid: Option<i32>,
        started_by: u64,
    ) -> Result<i32, String> {
        let worker = stream.id.as_str();
        let paths = &self.observer.paths;
        let procfs = &self.observer.procfs;

        // 3. Survivors of the old session or process group. Only when the old
        // PID is gone or a zombie: then the kernel cannot have given that id
        // to anyone else while members remain.
        match (reason, old_pid) {
            (Some(Reason::NoSuchProcess | Reason::Zombie), Some(leader)) => {
                let report = spawn::stop_group(
                    procfs,
                    leader,
                    self.settings.spawn.stop_timeout,
                    Some(started_by),
                )
                    .map_err(|e| format!("listing survivors of PID {leader}: {e}"))?;
                if !report.terminated.is_empty() {
                    let list = |v: &[i32]| {
                        v.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", ")
                    };
                    let detail = if report.killed.is_empty() {
                        format!("SIGTERM to {}", list(&report.terminated))
                    } else {
                        format!(
                            "SIGTERM to {}; SIGKILL to {}",
                            list(&report.terminated),
                            list(&report.killed)
                        )
                    };
                    log.log(
                        Level::Warning,
                        &format!("Stopped survivors of worker {worker} (group {leader}): {detail}"),
                    );
                    self.journal(
                        EventKind::SurvivorsStopped,
                        NewEvent {
                            worker: Some(worker),
                            pid: Some(leader),
                            detail: Some(detail),
                            ..NewEvent::default()
                        },
                    );
                }
            }
            (Some(Reason::PidReused), Some(pid)) => log.log(
                Level::Warning,
                &format!(
                    "PID {pid} of worker {worker} now belongs to another process; it is not signalled"
                ),
            ),
            _ => {}
        }

        // 4. The work dir.
        let work_dir = spawn::ensure_work_dir(&paths.project_root, worker)?;

        // 5. Spawn the wrapper.
        let pid_file = pidfile::path_for(&paths.pid_dir, worker);
        let before = pidfile::read(&pid_file, procfs.pid_max());
        let prompt = prompt_for(stream, &self.observer.initiative);
        let call = WrapperCall {
            wrapper: &paths.wrapper,
            worker,
            pid_file: &pid_file,
            log_dir: &paths.log_dir,
            work_dir: &work_dir,
            initiative: &self.observer.initiative.id,
            prompt: &prompt,
            worker_command: self.settings.spawn.worker_command.as_deref(),
        };
        std::fs::create_dir_all(&paths.pid_dir)
            .map_err(|e| format!("creating {}: {e}", paths.pid_dir.display()))?;
        let child = call
            .spawn()
            .map_err(|e| format!("cannot run wrapper {}: {e}", paths.wrapper.display()))?;
        self.spawned.push(Spawned {
            worker: worker.to_string(),
            pid: child,
        });

        // 6. Success is a new PID file naming a live process.
        match spawn::wait_for_pidfile(
            procfs,
            &pid_file,
            &before,
            child,
            self.settings.spawn.spawn_timeout,
        ) {
            SpawnOutcome::Running(pid) => Ok(pid),
            SpawnOutcome::TimedOut => {
                // A wrapper too slow to count must not live on: a later
                // attempt would make it a second instance. It is our own
                // unreaped child, so its session id is ours to stop.
                let _ = spawn::stop_group(procfs, child, self.settings.spawn.stop_timeout, None);
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(child),
                    nix::sys::signal::Signal::SIGKILL,
                );
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
                while std::time::Instant::now() < deadline {
                    if spawn::try_reap(child).is_some() {
                        // Reaped here; otherwise the monitor's loop reaps it.
                        self.spawned.retain(|s| s.pid != child);
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                Err(format!(
                    "no PID file naming a live process within {:.1} s; wrapper PID {child} stopped",
                    self.settings.spawn.spawn_timeout.as_secs_f64()
                ))
            }
            SpawnOutcome::WrapperExited(status) => {
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
                Err(format!(
                    "wrapper exited ({status}) before a PID file naming a live process appeared"
                ))
            }
        }
    }
}

/// The prompt a restarted worker gets: its stream, the initiative, and the
/// tasks still open.
pub fn prompt_for(stream: &Stream, initiative: &crate::observe::taskdb::Initiative) -> String {
    let deps = if stream.dependencies.is_empty() {
        "None".to_string()
    } else {
        stream
            .dependencies
            .iter()
            .cloned()
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut prompt = format!(
        "You are a worker agent in the Claude Copilot orchestration system, \
         restarted by pidwatch after the previous worker died.\n\n\
         ## Your Assignment\n\
         - Stream: {}\n\
         - Stream Name: {}\n\
         - Initiative: {} ({})\n\
         - Dependencies: {deps}\n\n\
         ## Incomplete tasks\n",
        stream.id,
        stream.name.as_deref().unwrap_or(&stream.id),
        initiative.name,
        initiative.id,
    );
    for task in &stream.open_tasks {
        prompt.push_str(&format!(
            "- {}: {} ({})\n",
            task.id, task.title, task.status
        ));
    }
    prompt.push_str(&format!(
        "\nCall task_list(metadata.streamId=\"{}\") to confirm their state, continue where \
         the previous worker stopped, and do not redo completed tasks. Stay on {} tasks only.\n",
        stream.id, stream.id
    ));
    prompt
}

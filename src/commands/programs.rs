//! The commands of workers from a config file: `start`, `stop`,
//! `restart`, `logs`, `config check` and `init`.
//!
//! Without a monitor they act themselves, under the same lock the monitor
//! holds, so that two pidwatches never act on the same workers at once.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;

use crate::act::{Actor, Placement};
use crate::cli::{GlobalArgs, InitArgs, LogsArgs, RestartArgs, TargetArgs};
use crate::config::{self, Environment, Settings};
use crate::control::client::Endpoint;
use crate::control::{ClientError, ControlReply, ControlRequest};
use crate::core::{Ending, liveness};
use crate::error::{EXIT_FAILURES, EXIT_OK, Error, Result};
use crate::observe::{Observer, ProcessTable};
use crate::output::{print_stderr, print_stdout, quote};
use crate::source::config::{ConfigFile, ProgramSpec};
use crate::store::monitor_log::{Level, MonitorLog};
use crate::store::statedb::StateDb;

/// How long `start` waits for a dependency's readiness probe to pass.
pub const READY_WAIT: Duration = Duration::from_secs(60);

/// How long `start`, `stop` and `restart` wait for the lock a monitor or
/// another command holds.
const LOCK_WAIT: Duration = Duration::from_secs(30);

/// The settings of a command that needs a config file.
///
/// Errors ([`Error::Config`], exit 2): none is found (and how to make
/// one), or it is invalid.
pub fn program_settings(global: &GlobalArgs, env: &Environment) -> Result<Settings> {
    let settings = config::resolve(
        global,
        &RestartArgs {
            auto_restart: true,
            ..RestartArgs::default()
        },
        env,
    )?;
    if settings.programs.is_none() {
        return Err(no_config_error(global));
    }
    Ok(settings)
}

fn no_config_error(global: &GlobalArgs) -> Error {
    let why = if global.dir.is_some() {
        "--dir names an orchestrator dir, whose workers are its streams"
    } else {
        "none at ./pidwatch.toml, $XDG_CONFIG_HOME/pidwatch/pidwatch.toml or /etc/pidwatch/pidwatch.toml"
    };
    Error::Config(format!(
        "this command needs a config file ({why}); `pidwatch init` writes a commented one, \
         or give --config PATH"
    ))
}

/// The worker ids that `args` names: every worker (`--all`), or each name's
/// instances and each instance id.
///
/// Errors ([`Error::Config`]): a name that is no worker of the file.
pub fn targets(file: &ConfigFile, args: &TargetArgs) -> Result<BTreeSet<String>> {
    if args.all {
        return Ok(file.workers.iter().map(|w| w.id.clone()).collect());
    }
    let mut ids = BTreeSet::new();
    let mut unknown = Vec::new();
    for name in &args.workers {
        let found: Vec<&ProgramSpec> = file
            .workers
            .iter()
            .filter(|w| &w.id == name || &w.name == name)
            .collect();
        if found.is_empty() {
            unknown.push(quote(name));
        }
        ids.extend(found.into_iter().map(|w| w.id.clone()));
    }
    if !unknown.is_empty() {
        return Err(Error::Config(format!(
            "no worker {} in {}",
            unknown.join(", "),
            file.path.display()
        )));
    }
    Ok(ids)
}

/// Everything one acting command holds.
struct Acting {
    settings: Settings,
    file: Arc<ConfigFile>,
    observer: Observer,
    state: StateDb,
    placement: Placement,
    log: MonitorLog,
    _lock: crate::daemon::lock::Lock,
}

impl Acting {
    fn open(global: &GlobalArgs, settings: Settings) -> Result<Acting> {
        let file = settings
            .programs
            .clone()
            .ok_or_else(|| no_config_error(global))?;
        std::fs::create_dir_all(&settings.paths.dir)
            .map_err(|e| Error::io("creating", &settings.paths.dir, e))?;
        let lock =
            crate::daemon::lock::acquire_waiting(&settings.paths.lock_file, LOCK_WAIT, |e| {
                print_stderr(&format!(
                    "pidwatch: {e}; waiting up to {} s",
                    LOCK_WAIT.as_secs()
                ))
            })?;
        let observer = Observer::open(&settings)?;
        let state = StateDb::open(&settings.paths.state_db)?;
        let (placement, _) =
            Placement::choose(settings.spawn.containment).map_err(Error::Config)?;
        let log = MonitorLog::open(&settings.paths.log_file, None)
            .map_err(|e| Error::io("opening", &settings.paths.log_file, e))?;
        Ok(Acting {
            settings,
            file,
            observer,
            state,
            placement,
            log,
            _lock: lock,
        })
    }

    fn spec(&self, id: &str) -> Option<&ProgramSpec> {
        self.file.workers.iter().find(|w| w.id == id)
    }

    /// The workers of `ids` (and what they depend on) that run now.
    fn running(
        &self,
        ids: &BTreeSet<String>,
    ) -> Result<BTreeMap<String, crate::core::WorkerSnapshot>> {
        let observation = self.observer.observe(Some(&self.state), Some(ids))?;
        Ok(observation
            .snapshot
            .workers
            .into_iter()
            .filter(|w| liveness(w).0.is_ok())
            .map(|w| (w.id.clone(), w))
            .collect())
    }

    /// Waits for `id`'s readiness probe to pass (at once when it has none).
    fn wait_ready(&self, id: &str) -> std::result::Result<(), String> {
        let Some(spec) = self.spec(id) else {
            return Ok(());
        };
        let Some(ready) = &spec.ready else {
            return Ok(());
        };
        let deadline = Instant::now() + READY_WAIT;
        loop {
            let outcome =
                crate::act::probe::run(&ready.command, &spec.env, &spec.cwd, ready.timeout);
            if outcome.passed() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{id} did not become ready within {} s (its ready probe: {outcome:?})",
                    READY_WAIT.as_secs()
                ));
            }
            std::thread::sleep(ready.interval);
        }
    }

    /// Starts every worker of `ids` that is not running, dependencies
    /// first: in waves, each of the workers whose dependencies run and are
    /// ready. Returns the failures, by worker.
    fn start(&mut self, ids: &BTreeSet<String>) -> Result<BTreeMap<String, String>> {
        let mut failed: BTreeMap<String, String> = BTreeMap::new();
        let mut ready: BTreeSet<String> = BTreeSet::new();
        let mut pending: BTreeSet<String> = ids.clone();
        // What the targets depend on starts too.
        let mut todo: Vec<String> = ids.iter().cloned().collect();
        while let Some(id) = todo.pop() {
            if let Some(spec) = self.spec(&id) {
                for dep in &spec.depends_on {
                    if pending.insert(dep.clone()) {
                        todo.push(dep.clone());
                    }
                }
            }
        }
        while !pending.is_empty() {
            let running = self.running(&pending)?;
            let mut wave = Vec::new();
            for id in &pending {
                let deps = self
                    .spec(id)
                    .map(|s| s.depends_on.clone())
                    .unwrap_or_default();
                if let Some(bad) = deps.iter().find(|d| failed.contains_key(*d)) {
                    failed.insert(id.clone(), format!("its dependency {bad} did not start"));
                    continue;
                }
                if deps.iter().all(|d| ready.contains(d)) {
                    wave.push(id.clone());
                }
            }
            pending.retain(|id| !failed.contains_key(id) && !wave.contains(id));
            if wave.is_empty() {
                for id in std::mem::take(&mut pending) {
                    failed.insert(id, "its dependencies never came up".into());
                }
                break;
            }
            let mut actor = Actor::new(
                &self.settings,
                &self.observer,
                Some(&self.state),
                &self.placement,
            );
            let mut started = Vec::new();
            for id in &wave {
                if running.contains_key(id) {
                    started.push(id.clone());
                    continue;
                }
                // A start by hand clears the restart cap's count, as
                // `systemctl reset-failed` and a start do.
                let scope = &self.observer.scope().id;
                let one = BTreeSet::from([id.clone()]);
                let spent = self
                    .state
                    .records(scope, Some(&one))?
                    .get(id)
                    .is_some_and(|r| r.attempts > 0 || r.given_up);
                if spent
                    && let Err(e) = self.state.reset(
                        Utc::now(),
                        scope,
                        id,
                        crate::store::statedb::EventKind::Reset,
                        true,
                    )
                {
                    failed.insert(id.clone(), e.to_string());
                    continue;
                }
                match actor.spawn_incarnation(&mut self.log, id, None) {
                    Ok(pid) => {
                        self.log.file_only(
                            Level::Success,
                            &format!("Worker {id} started (PID: {pid})"),
                        );
                        started.push(id.clone());
                    }
                    Err(why) => {
                        self.log.file_only(
                            Level::Error,
                            &format!("Failed to start worker {id}: {why}"),
                        );
                        failed.insert(id.clone(), why);
                    }
                }
            }
            for id in started {
                match self.wait_ready(&id) {
                    Ok(()) => {
                        ready.insert(id);
                    }
                    Err(why) => {
                        failed.insert(id, why);
                    }
                }
            }
        }
        Ok(failed)
    }

    /// Stops every running worker of `ids`, all at once: its `stop`
    /// command or its `stop_signal`, up to its `stop_timeout`, then SIGKILL
    /// to all of its incarnation; records each as stopped deliberately.
    /// Returns what it did, by worker.
    fn stop(&mut self, ids: &BTreeSet<String>) -> Result<BTreeMap<String, String>> {
        let observation = self.observer.observe(Some(&self.state), Some(ids))?;
        let mut table = ProcessTable::default();
        let mut jobs = Vec::new();
        for w in observation
            .snapshot
            .workers
            .iter()
            .filter(|w| ids.contains(&w.id))
        {
            let members = self.observer.live_processes(w, &mut table);
            let Some(spec) = self.spec(&w.id) else {
                continue;
            };
            let cgroup = w
                .incarnation
                .as_ref()
                .filter(|i| i.ending.is_none())
                .and_then(|i| i.cgroup.clone());
            jobs.push((w.clone(), spec.clone(), members, cgroup));
        }
        let procfs = &self.observer.procfs;
        let results: Vec<(String, String)> = std::thread::scope(|scope| {
            let handles: Vec<_> = jobs
                .iter()
                .map(|(w, spec, members, cgroup)| {
                    scope.spawn(move || {
                        (
                            w.id.clone(),
                            crate::act::stop::stop_program(
                                procfs,
                                spec,
                                members,
                                cgroup.as_deref(),
                            ),
                        )
                    })
                })
                .collect();
            handles.into_iter().filter_map(|h| h.join().ok()).collect()
        });
        let mut done = BTreeMap::new();
        for ((w, spec, members, _), (id, what)) in jobs.iter().zip(results) {
            if let Some(inc) = w.incarnation.as_ref().filter(|i| i.ending.is_none()) {
                let ending = Ending {
                    at: Utc::now(),
                    exit_status: None,
                    signal: Some(spec.stop_signal.name.clone()),
                    stopped: true,
                };
                self.state
                    .end_incarnation(&self.observer.scope().id, &id, &inc.id, &ending)?;
            } else if members.is_empty() {
                done.insert(id, "not running".to_string());
                continue;
            }
            self.log
                .file_only(Level::Info, &format!("Stopped worker {id}: {what}"));
            done.insert(id, what);
        }
        Ok(done)
    }
}

/// The exit code of `start`: 0 all started, 1 some failed, 2 all failed.
fn start_exit_code(tried: usize, failed: usize) -> i32 {
    match failed {
        0 => EXIT_OK,
        n if n >= tried => crate::error::EXIT_USAGE,
        _ => EXIT_FAILURES,
    }
}

fn say_failures(failed: &BTreeMap<String, String>, verb: &str) {
    for (id, why) in failed {
        print_stderr(&format!("pidwatch: {id} failed to {verb}: {why}"));
    }
}

/// How long a command waits for the monitor's answer: a stop may take
/// `stop_timeout` (at most 10 minutes), a start up to [`READY_WAIT`].
const MONITOR_WAIT: Duration = crate::daemon::REPLY_TIMEOUT;

/// Asks the monitor that serves the state dir's control socket, if one
/// does; `None` when none does (the caller then acts itself, under the
/// lock).
///
/// Errors ([`Error::CannotCheck`], exit 3): the monitor refuses this user,
/// or did not answer; [`Error::Config`] (exit 2) when it answered that the
/// request is wrong (an unknown worker).
pub fn ask_monitor(settings: &Settings, request: &ControlRequest) -> Result<Option<ControlReply>> {
    let (endpoint, remote) = match &settings.remote {
        Some(endpoint) => (endpoint.clone(), true),
        None => {
            let socket = settings.paths.dir.join(crate::daemon::CONTROL_SOCKET);
            if !socket.exists() {
                return Ok(None);
            }
            (Endpoint::Socket(socket), false)
        }
    };
    let mut confirmed: Option<String> = None;
    let reply = loop {
        match crate::control::client::call_endpoint(
            &endpoint,
            request,
            confirmed.as_deref(),
            MONITOR_WAIT,
        ) {
            Ok(reply) => break reply,
            // --url names a monitor: none answering is an error, never a
            // reason to act here behind its back.
            Err(ClientError::NoMonitor) if remote => {
                return Err(Error::CannotCheck(format!(
                    "no monitor answers at {}",
                    endpoint.describe()
                )));
            }
            Err(ClientError::NoMonitor) => return Ok(None),
            Err(ClientError::Challenged(challenge)) if confirmed.is_none() => {
                confirmed = Some(confirm(&challenge)?);
            }
            Err(e) => {
                return Err(Error::CannotCheck(format!(
                    "asking the monitor at {}: {e}",
                    endpoint.describe()
                )));
            }
        }
    };
    match reply.status {
        200 => Ok(Some(reply)),
        400 | 404 => Err(Error::Config(format!(
            "the monitor says: {}",
            reply.error_message().unwrap_or("bad request")
        ))),
        code => Err(Error::CannotCheck(format!(
            "the monitor answered {code}: {}",
            reply.error_message().unwrap_or("no reason given")
        ))),
    }
}

/// Answers a confirmation challenge: asks the person on the terminal, and
/// returns the challenge's id when they say yes.
///
/// Errors ([`Error::CannotCheck`]): no terminal to ask, or they said no.
fn confirm(challenge: &ControlReply) -> Result<String> {
    use std::io::{BufRead, IsTerminal, Write};
    let c = &challenge.body["challenge"];
    let (id, method, path) = (
        c["id"].as_str().unwrap_or_default().to_string(),
        c["method"].as_str().unwrap_or("?"),
        c["path"].as_str().unwrap_or("?"),
    );
    let stdin = std::io::stdin();
    if id.is_empty() || !stdin.is_terminal() {
        return Err(Error::CannotCheck(format!(
            "the monitor asks for a confirmation of {method} {path}, and there is no terminal \
             to ask: name a trusted caller (PIDWATCH_CALLER_ID, with --token-file), or run \
             this on a terminal"
        )));
    }
    eprint!("pidwatch: the monitor asks you to confirm {method} {path} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    let _ = stdin.lock().read_line(&mut answer);
    if matches!(answer.trim(), "y" | "Y" | "yes") {
        Ok(id)
    } else {
        Err(Error::CannotCheck(format!(
            "{method} {path}: not confirmed"
        )))
    }
}

/// The started workers and failures of a start's reply from the monitor.
fn start_reply(reply: &ControlReply) -> (Vec<String>, BTreeMap<String, String>) {
    let started = reply
        .body
        .get("started")
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .unwrap_or_default();
    let failed = reply
        .body
        .get("failed")
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .unwrap_or_default();
    (started, failed)
}

/// The settings of a command that needs a config file, and the worker
/// ids `args` names in it.
///
/// Errors: as [`program_settings`] and [`targets`].
fn selected(
    global: &GlobalArgs,
    args: &TargetArgs,
    env: &Environment,
) -> Result<(Settings, BTreeSet<String>)> {
    if global.url.is_some() {
        let settings = remote_settings(global, env)?;
        let ids = remote_targets(&settings, args)?;
        return Ok((settings, ids));
    }
    let settings = program_settings(global, env)?;
    let file = settings
        .programs
        .clone()
        .ok_or_else(|| no_config_error(global))?;
    let ids = targets(&file, args)?;
    Ok((settings, ids))
}

/// The settings of a command that asks the monitor at `--url`: no config
/// file is needed here.
///
/// Errors: as [`config::resolve`].
fn remote_settings(global: &GlobalArgs, env: &Environment) -> Result<Settings> {
    config::resolve(global, &RestartArgs::default(), env)
}

/// The worker ids `args` names among those the monitor at `--url` has
/// (its status): every one (`--all`), or each name's instances and each
/// instance id.
///
/// Errors: the monitor cannot be asked (exit 3); a name it has no worker
/// of (exit 2).
fn remote_targets(settings: &Settings, args: &TargetArgs) -> Result<BTreeSet<String>> {
    let reply = ask_monitor(settings, &ControlRequest::Status)?
        .ok_or_else(|| Error::CannotCheck("no monitor answers".into()))?;
    let known: Vec<String> = reply.body["workers"]
        .as_array()
        .map(|ws| {
            ws.iter()
                .filter_map(|w| w["id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if args.all {
        return Ok(known.into_iter().collect());
    }
    let mut ids = BTreeSet::new();
    let mut unknown = Vec::new();
    for name in &args.workers {
        let found: Vec<&String> = known
            .iter()
            .filter(|id| *id == name || id.split('@').next() == Some(name.as_str()))
            .collect();
        if found.is_empty() {
            unknown.push(quote(name));
        }
        ids.extend(found.into_iter().cloned());
    }
    if !unknown.is_empty() {
        return Err(Error::Config(format!(
            "the monitor has no worker {}",
            unknown.join(", ")
        )));
    }
    Ok(ids)
}

/// What a selection of worker ids asks of the monitor.
fn selection(ids: &BTreeSet<String>) -> Vec<String> {
    ids.iter().cloned().collect()
}

/// `pidwatch start`: through the monitor when one runs, else itself.
///
/// Errors: no or an invalid config file, an unknown worker (exit 2); the
/// state dir cannot be used (exit 2 or 3); the monitor did not answer
/// (exit 3).
pub fn start(global: &GlobalArgs, args: &TargetArgs, env: &Environment) -> Result<i32> {
    let (settings, ids) = selected(global, args, env)?;
    let request = ControlRequest::Start {
        workers: selection(&ids),
        all: false,
    };
    let failed = match ask_monitor(&settings, &request)? {
        Some(reply) => start_reply(&reply).1,
        None => Acting::open(global, settings)?.start(&ids)?,
    };
    say_failures(&failed, "start");
    if !global.quiet {
        let ok = ids.iter().filter(|id| !failed.contains_key(*id)).count();
        print_stdout(&format!("{ok} of {} worker(s) running\n", ids.len()));
    }
    let failed_targets = failed.keys().filter(|id| ids.contains(*id)).count();
    Ok(start_exit_code(ids.len(), failed_targets))
}

/// `pidwatch stop`: through the monitor when one runs, else itself.
///
/// Errors: as [`start`].
pub fn stop(global: &GlobalArgs, args: &TargetArgs, env: &Environment) -> Result<i32> {
    let (settings, ids) = selected(global, args, env)?;
    let request = ControlRequest::Stop {
        workers: selection(&ids),
        all: false,
    };
    let done: BTreeMap<String, String> = match ask_monitor(&settings, &request)? {
        Some(reply) => reply
            .body
            .get("stopped")
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .unwrap_or_default(),
        None => Acting::open(global, settings)?.stop(&ids)?,
    };
    if !global.quiet {
        for (id, what) in &done {
            print_stdout(&format!("{id}: {}\n", crate::output::escape_controls(what)));
        }
    }
    Ok(EXIT_OK)
}

/// `pidwatch restart`: stop, then start; through the monitor when one
/// runs, else itself.
///
/// Errors: as [`start`].
pub fn restart(global: &GlobalArgs, args: &TargetArgs, env: &Environment) -> Result<i32> {
    let (settings, ids) = selected(global, args, env)?;
    let request = ControlRequest::Restart {
        workers: selection(&ids),
        all: false,
        counted: false,
    };
    let failed = match ask_monitor(&settings, &request)? {
        Some(reply) => start_reply(&reply).1,
        None => {
            let mut acting = Acting::open(global, settings)?;
            acting.stop(&ids)?;
            acting.start(&ids)?
        }
    };
    say_failures(&failed, "start");
    let failed_targets = failed.keys().filter(|id| ids.contains(*id)).count();
    Ok(start_exit_code(ids.len(), failed_targets))
}

/// `pidwatch heal`: asks the running monitor for a heal (a plan with
/// `--plan`) and says its steps, their results and the self-test.
///
/// Errors: no monitor runs (exit 3, said as such); the monitor refused
/// (the rate limit: exit 3 with its reason); as [`start`].
pub fn heal(global: &GlobalArgs, args: &crate::cli::HealArgs, env: &Environment) -> Result<i32> {
    let settings = if global.url.is_some() {
        remote_settings(global, env)?
    } else {
        program_settings(global, env)?
    };
    let request = ControlRequest::Heal {
        mode: if args.plan {
            crate::control::api::HealMode::Plan
        } else {
            crate::control::api::HealMode::Execute
        },
        reason: args.reason.clone(),
        caller: Some(crate::control::trust::CLI_CALLER_ID.into()),
    };
    let reply = ask_monitor(&settings, &request)?.ok_or_else(|| {
        Error::CannotCheck(format!(
            "no monitor runs for {}: a heal is the running monitor's (`pidwatch run`)",
            settings.paths.dir.display()
        ))
    })?;
    if global.json {
        print_stdout(&format!("{}\n", reply.body));
    }
    let steps = reply
        .body
        .get("steps")
        .or_else(|| reply.body.get("actions"))
        .and_then(|s| s.as_array())
        .cloned()
        .unwrap_or_default();
    let mut failed = false;
    if !global.json && !global.quiet {
        if steps.is_empty() {
            print_stdout("nothing to heal\n");
        }
        for step in &steps {
            let field = |k: &str| {
                step.get(k)
                    .and_then(|v| v.as_str())
                    .unwrap_or("")
                    .to_string()
            };
            let result = step.get("result").and_then(|v| v.as_str());
            print_stdout(&format!(
                "{} {}: {}{}\n",
                field("action"),
                field("worker"),
                crate::output::escape_controls(&field("why")),
                result
                    .map(|r| format!(" -> {}", crate::output::escape_controls(r)))
                    .unwrap_or_default()
            ));
        }
        if let Some(test) = reply.body.get("selfTest").filter(|t| !t.is_null()) {
            print_stdout(&format!(
                "self-test: {}\n",
                crate::output::escape_controls(test["outcome"].as_str().unwrap_or("?"))
            ));
        }
    }
    for step in &steps {
        if step
            .get("result")
            .and_then(|v| v.as_str())
            .is_some_and(|r| r != "running")
        {
            failed = true;
        }
    }
    if reply.body.get("selfTest").and_then(|t| t.get("passed"))
        == Some(&serde_json::Value::Bool(false))
    {
        failed = true;
    }
    Ok(if failed { EXIT_FAILURES } else { EXIT_OK })
}

/// `pidwatch logs`.
///
/// Errors: no such worker (exit 2); its log cannot be read (exit 3).
pub fn logs(global: &GlobalArgs, args: &LogsArgs, env: &Environment) -> Result<i32> {
    let settings = program_settings(global, env)?;
    let file = settings
        .programs
        .clone()
        .ok_or_else(|| no_config_error(global))?;
    let ids = targets(
        &file,
        &TargetArgs {
            workers: vec![args.worker.clone()],
            all: false,
        },
    )?;
    let [id] = ids.iter().collect::<Vec<_>>()[..] else {
        return Err(Error::Config(format!(
            "{} has {} instances; name one: {}",
            quote(&args.worker),
            ids.len(),
            ids.iter().cloned().collect::<Vec<_>>().join(", ")
        )));
    };
    let spec = file
        .workers
        .iter()
        .find(|w| &w.id == id)
        .ok_or_else(|| no_config_error(global))?;
    let path: PathBuf = spec
        .log
        .clone()
        .unwrap_or_else(|| settings.paths.log_dir.join(format!("{id}.log")));
    let lines = match crate::store::worker_log::tail(&path, args.lines) {
        Ok(lines) => lines,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && args.follow => Vec::new(),
        Err(e) => return Err(Error::io("reading", &path, e)),
    };
    for line in &lines {
        print_stdout(&format!("{}\n", crate::output::escape_controls(line)));
    }
    if args.follow {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            let _ = signal_hook::flag::register(signal, Arc::clone(&stop));
        }
        let from = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        crate::store::worker_log::follow(
            &path,
            from,
            &mut |text| print_stdout(&crate::output::escape_controls_keep_newlines(text)),
            &|| stop.load(std::sync::atomic::Ordering::Relaxed),
        )
        .map_err(|e| Error::io("following", &path, e))?;
    }
    Ok(EXIT_OK)
}

/// `pidwatch config check`: 0 when valid, 2 with every problem.
///
/// Errors: none is found (exit 2).
pub fn config_check(global: &GlobalArgs, env: &Environment) -> Result<i32> {
    let path = config::find_config(global, env).ok_or_else(|| no_config_error(global))?;
    let file = config::load_config(&path, env)?;
    if !global.quiet {
        let instances = file.workers.len();
        let names: BTreeSet<&str> = file.workers.iter().map(|w| w.name.as_str()).collect();
        print_stdout(&format!(
            "{}: valid; {} worker(s), {instances} instance(s)\n",
            path.display(),
            names.len()
        ));
    }
    Ok(EXIT_OK)
}

/// `pidwatch init`: writes the commented template, never over an existing
/// file (nor through a symlink).
///
/// Errors ([`Error::Config`]): the file exists; it cannot be written.
pub fn init(global: &GlobalArgs, args: &InitArgs, env: &Environment) -> Result<i32> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = config::absolute(
        &env.cwd,
        args.path
            .as_deref()
            .or(global.config.as_deref())
            .unwrap_or(std::path::Path::new("pidwatch.toml")),
    );
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("creating", dir, e))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => Error::Config(format!(
                "{} exists; pidwatch init never writes over a file",
                path.display()
            )),
            _ => Error::io("creating", &path, e),
        })?;
    file.write_all(crate::source::config::TEMPLATE.as_bytes())
        .map_err(|e| Error::io("writing", &path, e))?;
    if !global.quiet {
        print_stdout(&format!(
            "wrote {}; edit it, then `pidwatch --config {} config check`\n",
            path.display(),
            path.display()
        ));
    }
    Ok(EXIT_OK)
}

//! f. The control API under load: pidwatch's config mode (the same
//! `[worker.sleep]` as e, fewer instances) answering `GET /workers/status`
//! on its control socket at a target of 1,000 a second while workers are
//! SIGKILLed and restarted.
//!
//! Per worker count (100, then 1,000; 100 in the quick run): pidwatch
//! starts its workers; once all run, a few sequential status requests on
//! one connection give a report's cost without load; then the same kills
//! run twice, timed exactly as in e (its [`kill_loop`] over its
//! [`Children`]): first without load (the baseline), then while a load
//! generator on a thread of the bench sends `GET /workers/status`:
//!
//! - **open loop**: request *i* is due at `start + i / rate`, whatever
//!   happened to the ones before; its latency runs from that due time, so
//!   a request that waits for a free connection counts its wait (no
//!   coordinated omission);
//! - over [`CONNECTIONS`] keep-alive HTTP/1.1 connections (hyper's client
//!   on a current-thread tokio runtime, over `tokio::net::UnixStream`), each
//!   taking the next due request as soon as its last one is answered;
//! - for [`Settings::duration`] and at least until the kills are done;
//!   requests still waiting for a connection when it ends were never sent.
//!
//! A restart is lost when no new worker runs within e's deadline (10 s) of
//! its kill, or when fewer workers run at the end than were started.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::sync::{Mutex, mpsc};

use crate::latency::{KillPlan, KillRun};
use crate::procs::{self, Daemon};
use crate::report::{load, one_line, thousands};
use crate::stats::{self, Percentiles};
use crate::supervisord::{self, Children, Supervisor};
use crate::{Bench, BenchResult, Plan};

/// The route under load.
pub(crate) const STATUS_PATH: &str = "/workers/status";

/// Requests a second the generator aims at.
pub(crate) const TARGET_RATE: f64 = 1_000.0;

/// Keep-alive connections the requests share (the server serves 32 at
/// once).
pub(crate) const CONNECTIONS: usize = 8;

/// How long one request may take, from its sending, before it counts as
/// failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Sequential requests of the unloaded probe.
const PROBE_REQUESTS: usize = 20;

/// The load alone before the first kill: the connections are open and
/// the monitor is answering.
const LEAD_IN: Duration = Duration::from_secs(1);

/// The shortest pause between a respawn and the next kill.
pub(crate) const PAUSE_LOW: Duration = Duration::from_millis(250);

/// The pause is uniform in `[PAUSE_LOW, PAUSE_LOW + PAUSE_SPAN)`: a kill
/// about every 300 ms.
pub(crate) const PAUSE_SPAN: Duration = Duration::from_millis(100);

/// Victims and pauses (the same for both runs of a worker count).
const SEED: u64 = 0x5EED_000F;

/// How many times the baseline's p99 the p99 under load may be and still
/// count as the usual restart latency.
pub(crate) const TOLERANCE: f64 = 2.0;

/// The share of the target rate that counts as the load delivered.
const DELIVERED_SHARE: f64 = 0.99;

/// Sizes and durations of section f.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// Worker counts, in order.
    pub(crate) sizes: Vec<usize>,
    /// How long the load runs (at least until the kills are done).
    pub(crate) duration: Duration,
    /// How long each run kills, from its first timed kill: the load's
    /// duration less its lead-in.
    pub(crate) killing: Duration,
    /// The most timed kills that fit `killing` (one every [`PAUSE_LOW`]).
    pub(crate) most_kills: usize,
    /// Untimed kills first.
    pub(crate) warmup: usize,
}

impl Settings {
    /// For this run: 100 and 1,000 workers and 60 s; quick, 100 and 5 s.
    pub(crate) fn of(plan: &Plan) -> Settings {
        let (sizes, duration) = if plan.quick {
            (vec![100], Duration::from_secs(5))
        } else {
            (vec![100, 1_000], Duration::from_secs(60))
        };
        let killing = duration.saturating_sub(LEAD_IN);
        Settings {
            sizes,
            duration,
            killing,
            most_kills: (killing.as_secs_f64() / PAUSE_LOW.as_secs_f64()).ceil() as usize,
            warmup: plan.warmup,
        }
    }
}

/// Section f: every worker count.
#[derive(Debug)]
pub(crate) struct ApiLoad {
    /// Sizes and durations.
    pub(crate) settings: Settings,
    /// Each worker count with its run.
    pub(crate) sizes: Vec<(usize, BenchResult<SizeRun>)>,
}

/// Sequential status requests on one connection, without load.
#[derive(Debug, Clone)]
pub(crate) struct Probe {
    /// Send to whole answer, each request.
    pub(crate) times: Vec<Duration>,
    /// The report's size.
    pub(crate) bytes: usize,
    /// Workers it lists.
    pub(crate) listed: usize,
    /// Its `summary.running`.
    pub(crate) running: usize,
}

/// One worker count of f.
#[derive(Debug)]
pub(crate) struct SizeRun {
    /// Workers pidwatch ran.
    pub(crate) workers: usize,
    /// From spawning pidwatch to every worker running.
    pub(crate) all_running: Duration,
    /// The status report without load.
    pub(crate) probe: Probe,
    /// The kills without load.
    pub(crate) baseline: KillRun,
    /// The same kills under load.
    pub(crate) loaded: KillRun,
    /// The status requests.
    pub(crate) load: LoadRun,
    /// Workers running once the load ended (given e's deadline to come
    /// back).
    pub(crate) running_after: usize,
    /// `ERROR` lines in pidwatch's output.
    pub(crate) error_lines: usize,
    /// Where its workers went.
    pub(crate) placement: String,
    /// How it exited on SIGTERM.
    pub(crate) exit: String,
}

impl SizeRun {
    /// Kills without a respawn in time, both runs, and workers missing at
    /// the end.
    pub(crate) fn lost(&self) -> usize {
        self.baseline.timeouts()
            + self.loaded.timeouts()
            + self.workers.saturating_sub(self.running_after)
    }

    /// The p99 under load may be at most this.
    pub(crate) fn usual_limit(&self) -> Option<Duration> {
        let base = Percentiles::of(&self.baseline.latencies())?;
        Some(base.p99.mul_f64(TOLERANCE))
    }
}

/// How one status request went.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Request {
    /// Its number: due at `start + index / rate`.
    pub(crate) index: u64,
    /// From its due time to the whole answer (or the failure).
    pub(crate) latency: Duration,
    /// From its sending to the whole answer (or the failure).
    pub(crate) service: Duration,
    /// Answered 200 with a body.
    pub(crate) ok: bool,
}

/// The status requests of one window.
#[derive(Debug, Clone, Default)]
pub(crate) struct LoadRun {
    /// From the first due time until the generator was stopped.
    pub(crate) window: Duration,
    /// Requests that came due in the window.
    pub(crate) due: usize,
    /// Every request sent, in the order they ended.
    pub(crate) requests: Vec<Request>,
    /// Failures by kind.
    pub(crate) errors: BTreeMap<String, usize>,
    /// Connections opened (one each, unless one failed).
    pub(crate) connects: usize,
    /// Body size of the last report.
    pub(crate) bytes: usize,
}

impl LoadRun {
    /// Requests answered 200.
    pub(crate) fn answered(&self) -> usize {
        self.requests.iter().filter(|r| r.ok).count()
    }

    /// Requests that failed.
    pub(crate) fn failed(&self) -> usize {
        self.requests.len() - self.answered()
    }

    /// Requests due but still waiting for a connection at the end.
    pub(crate) fn unsent(&self) -> usize {
        self.due.saturating_sub(self.requests.len())
    }

    /// Answers 200 a second over the window.
    pub(crate) fn rate(&self) -> f64 {
        self.answered() as f64 / self.window.as_secs_f64().max(1e-9)
    }

    /// Due time to answer, of the requests answered 200.
    pub(crate) fn latencies(&self) -> Vec<Duration> {
        self.requests
            .iter()
            .filter(|r| r.ok)
            .map(|r| r.latency)
            .collect()
    }

    /// Sending to answer, of the requests answered 200.
    pub(crate) fn service_times(&self) -> Vec<Duration> {
        self.requests
            .iter()
            .filter(|r| r.ok)
            .map(|r| r.service)
            .collect()
    }

    /// Whether the target rate was delivered: nearly every request due
    /// was answered 200.
    pub(crate) fn delivered(&self) -> bool {
        self.failed() == 0 && self.answered() as f64 >= self.due as f64 * DELIVERED_SHARE
    }
}

/// Section f over every worker count; everything started is killed after
/// each.
pub(crate) fn run(bench: &mut Bench) -> ApiLoad {
    let settings = Settings::of(&bench.plan);
    let mut sizes = Vec::new();
    for &n in &settings.sizes {
        if procs::interrupted() {
            break;
        }
        eprintln!("{n} workers: pidwatch --config, {STATUS_PATH} under load");
        let result = run_size(bench, &settings, n);
        if let Err(e) = &result {
            eprintln!("pidwatch bench: f, {n} workers: {e}");
        }
        sizes.push((n, result));
    }
    ApiLoad { settings, sizes }
}

fn run_size(bench: &mut Bench, settings: &Settings, n: usize) -> BenchResult<SizeRun> {
    let tmp = supervisord::temp_dir(Supervisor::Pidwatch)?;
    let dir = tmp.path();
    let (mut cmd, cgroup, placement) =
        supervisord::pidwatch_config_mode(bench, dir, n, &format!("api-{n}"))?;
    let out_path = dir.join("pidwatch.out");
    let out =
        File::create(&out_path).map_err(|e| format!("creating {}: {e}", out_path.display()))?;
    let err = out
        .try_clone()
        .map_err(|e| format!("{}: {e}", out_path.display()))?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .current_dir(dir);
    let result = measure(bench, settings, n, cmd, dir, &out_path).map(|mut r| {
        r.placement = placement;
        r
    });
    procs::kill_descendants(&mut bench.reaper);
    if let Some(cg) = &cgroup
        && let Err(e) = cg.remove()
    {
        eprintln!("pidwatch bench: {e}");
    }
    result
}

/// Sets the flag when dropped: the load generator stops whatever happens
/// to the kills.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Starts pidwatch (`cmd`) over `n` workers and, once they all run, probes
/// its report, kills without load, then under load; then stops it.
///
/// Errors: pidwatch cannot start, exits, does not start every worker in
/// time, or does not stop on SIGTERM; the probe or a kill loop fails.
fn measure(
    bench: &mut Bench,
    settings: &Settings,
    n: usize,
    cmd: std::process::Command,
    dir: &Path,
    out_path: &Path,
) -> BenchResult<SizeRun> {
    let reaper = &mut bench.reaper;
    procs::wait_for_quiet(procs::QUIET_LIMIT, reaper)?;
    let t0 = Instant::now();
    let daemon = Daemon::spawn("pidwatch", cmd, reaper)?;
    let mut children = Children::new(daemon.pid);
    procs::wait_until(
        &format!("all {n} workers to run"),
        supervisord::START_LIMIT,
        reaper,
        || {
            children.refresh();
            children.running.len() >= n || !procs::is_live(daemon.pid)
        },
    )?;
    daemon.ensure_running(reaper)?;
    let all_running = t0.elapsed();
    eprintln!(
        "  pidwatch: {n} workers running {:.2} s after its start",
        all_running.as_secs_f64()
    );
    procs::pause(supervisord::SETTLE, reaper)?;
    let socket = dir.join("state/control.sock");
    let probe = probe(&socket, n)?;
    eprintln!(
        "  one status report without load: {} ({:.0} KiB), median of {PROBE_REQUESTS}",
        stats::median(&probe.times).map_or("-".into(), stats::show),
        probe.bytes as f64 / 1024.0,
    );
    let plan = |label: &str| KillPlan {
        label: format!("pidwatch, {n} workers, {label}"),
        kills: settings.most_kills,
        until: Some(settings.killing),
        warmup: settings.warmup,
        pause_low: PAUSE_LOW,
        pause_span: PAUSE_SPAN,
        deadline: supervisord::DEADLINE,
        seed: SEED,
    };
    procs::wait_for_quiet(procs::QUIET_LIMIT, reaper)?;
    let baseline =
        supervisord::kill_loop(&mut children, n, &daemon, reaper, &plan("without load"))?;
    procs::pause(supervisord::SETTLE, reaper)?;

    let stop = Arc::new(AtomicBool::new(false));
    let guard = StopOnDrop(stop.clone());
    let generator = {
        let socket = socket.clone();
        std::thread::Builder::new()
            .name("api-load".into())
            .spawn(move || generate(&socket, TARGET_RATE, CONNECTIONS, &stop))
            .map_err(|e| format!("starting the load generator: {e}"))?
    };
    let started = Instant::now();
    let loaded = procs::pause(LEAD_IN, reaper).and_then(|()| {
        supervisord::kill_loop(&mut children, n, &daemon, reaper, &plan("under load"))
    });
    let held = procs::pause(settings.duration.saturating_sub(started.elapsed()), reaper);
    drop(guard);
    let load = generator
        .join()
        .map_err(|_| "the load generator panicked".to_string())??;
    let loaded = loaded?;
    held?;
    eprintln!(
        "  {STATUS_PATH}: {} due over {:.1} s, {} answered ({:.0}/s), {} failed, {} never sent",
        load.due,
        load.window.as_secs_f64(),
        load.answered(),
        load.rate(),
        load.failed(),
        load.unsent()
    );
    // A restart still owed gets e's deadline after the load, then counts
    // as lost.
    let _ = procs::wait_until("every worker to run", supervisord::DEADLINE, reaper, || {
        children.refresh();
        children.running.len() >= n
    });
    procs::check_interrupt()?;
    let running_after = children.running.len();
    let said = std::fs::read_to_string(out_path).unwrap_or_default();
    let error_lines = said.lines().filter(|l| l.contains("ERROR")).count();
    let status = daemon.stop(supervisord::STOP_LIMIT, reaper)?;
    Ok(SizeRun {
        workers: n,
        all_running,
        probe,
        baseline,
        loaded,
        load,
        running_after,
        error_lines,
        placement: String::new(),
        exit: format!("{status:?}"),
    })
}

/// A current-thread tokio runtime for the client.
fn runtime() -> BenchResult<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting a tokio runtime: {e}"))
}

/// A keep-alive HTTP/1.1 connection to the control socket.
async fn connect(socket: &Path) -> Result<SendRequest<Empty<Bytes>>, String> {
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// `GET /workers/status` on `sender` (a new connection first when there is
/// none or it closed): the status code and the whole body.
async fn get_status(
    socket: &Path,
    sender: &mut Option<SendRequest<Empty<Bytes>>>,
    connects: &mut usize,
) -> Result<(u16, Bytes), String> {
    let live = match sender.take() {
        Some(s) if !s.is_closed() => s,
        _ => {
            *connects += 1;
            connect(socket).await?
        }
    };
    let s = sender.insert(live);
    s.ready().await.map_err(|e| format!("send: {e}"))?;
    let request = hyper::Request::get(STATUS_PATH)
        .header(hyper::header::HOST, "localhost")
        .body(Empty::new())
        .map_err(|e| format!("request: {e}"))?;
    let response = s
        .send_request(request)
        .await
        .map_err(|e| format!("send: {e}"))?;
    let code = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    Ok((code, body))
}

/// [`PROBE_REQUESTS`] status requests one after the other on one
/// connection; the first report must list `n` running workers.
///
/// Errors: a request failed or was not answered 200, or the report is not
/// the one expected.
fn probe(socket: &Path, n: usize) -> BenchResult<Probe> {
    runtime()?.block_on(async {
        let mut sender = None;
        let mut connects = 0;
        let mut times = Vec::with_capacity(PROBE_REQUESTS);
        let mut first = None;
        for _ in 0..PROBE_REQUESTS {
            let t0 = Instant::now();
            let (code, body) = tokio::time::timeout(
                REQUEST_TIMEOUT,
                get_status(socket, &mut sender, &mut connects),
            )
            .await
            .map_err(|_| format!("{STATUS_PATH}: no answer within {REQUEST_TIMEOUT:?}"))?
            .map_err(|e| format!("{STATUS_PATH}: {e}"))?;
            times.push(t0.elapsed());
            if code != 200 {
                return Err(format!("{STATUS_PATH}: HTTP {code}"));
            }
            first.get_or_insert(body);
        }
        let body = first.unwrap_or_default();
        let report: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| format!("{STATUS_PATH}: not JSON: {e}"))?;
        let listed = report["workers"].as_array().map_or(0, Vec::len);
        let running = report["summary"]["running"].as_u64().unwrap_or(0) as usize;
        if listed != n || running != n {
            return Err(format!(
                "{STATUS_PATH}: {listed} workers listed, {running} running; expected {n}"
            ));
        }
        Ok(Probe {
            times,
            bytes: body.len(),
            listed,
            running,
        })
    })
}

/// The due time of request `index`.
fn due(start: Instant, rate: f64, index: u64) -> Instant {
    start + Duration::from_secs_f64(index as f64 / rate)
}

/// What one connection did.
#[derive(Debug, Default)]
struct Tally {
    requests: Vec<Request>,
    errors: BTreeMap<String, usize>,
    connects: usize,
    bytes: usize,
}

/// The load: requests due at `rate` a second, sent over `connections`
/// keep-alive connections, until `stop` is set.
///
/// Errors: no runtime could be had.
fn generate(
    socket: &Path,
    rate: f64,
    connections: usize,
    stop: &AtomicBool,
) -> BenchResult<LoadRun> {
    runtime()?.block_on(async {
        let (tx, rx) = mpsc::unbounded_channel::<u64>();
        let rx = Arc::new(Mutex::new(rx));
        let start = Instant::now();
        let stop_flag = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::with_capacity(connections);
        for _ in 0..connections {
            let socket: PathBuf = socket.to_path_buf();
            let rx = rx.clone();
            let stop_flag = stop_flag.clone();
            tasks.push(tokio::spawn(async move {
                connection(&socket, &rx, start, rate, &stop_flag).await
            }));
        }
        let mut index = 0u64;
        while !stop.load(Ordering::Relaxed) {
            tokio::time::sleep_until(due(start, rate, index).into()).await;
            if tx.send(index).is_err() {
                break;
            }
            index += 1;
        }
        let window = start.elapsed();
        stop_flag.store(true, Ordering::Relaxed);
        drop(tx);
        let mut run = LoadRun {
            window,
            due: index as usize,
            ..LoadRun::default()
        };
        for task in tasks {
            let tally = task
                .await
                .map_err(|e| format!("a connection task failed: {e}"))?;
            run.requests.extend(tally.requests);
            for (kind, count) in tally.errors {
                *run.errors.entry(kind).or_default() += count;
            }
            run.connects += tally.connects;
            run.bytes = run.bytes.max(tally.bytes);
        }
        Ok(run)
    })
}

/// One connection: takes the next due request, sends it, waits for the
/// whole answer, again, until `stop` is set; what is still queued then is
/// never sent.
async fn connection(
    socket: &Path,
    queue: &Mutex<mpsc::UnboundedReceiver<u64>>,
    start: Instant,
    rate: f64,
    stop: &AtomicBool,
) -> Tally {
    let mut tally = Tally::default();
    let mut sender = None;
    loop {
        let next = queue.lock().await.recv().await;
        let Some(index) = next else { break };
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let sent = Instant::now();
        let outcome = tokio::time::timeout(
            REQUEST_TIMEOUT,
            get_status(socket, &mut sender, &mut tally.connects),
        )
        .await;
        let done = Instant::now();
        let ok = match outcome {
            Ok(Ok((200, body))) => {
                tally.bytes = body.len();
                true
            }
            Ok(Ok((code, _))) => {
                *tally.errors.entry(format!("HTTP {code}")).or_default() += 1;
                false
            }
            Ok(Err(e)) => {
                sender = None;
                *tally.errors.entry(e).or_default() += 1;
                false
            }
            Err(_) => {
                sender = None;
                *tally
                    .errors
                    .entry(format!("no answer within {REQUEST_TIMEOUT:?}"))
                    .or_default() += 1;
                false
            }
        };
        tally.requests.push(Request {
            index,
            latency: done.saturating_duration_since(due(start, rate, index)),
            service: done - sent,
            ok,
        });
    }
    tally
}

/// f's kills and status requests as CSV, in `dir`: `api-<workers>-baseline.csv`
/// and `api-<workers>-load.csv` (the kills, as e's), `api-<workers>-status.csv`
/// (every request sent).
pub(crate) fn write_samples(f: &ApiLoad, dir: &Path) {
    for (n, run) in &f.sizes {
        let Ok(run) = run else { continue };
        let mut status = String::from("request,due_us,latency_us,service_us,ok\n");
        let mut requests = run.load.requests.clone();
        requests.sort_by_key(|r| r.index);
        for r in &requests {
            let _ = writeln!(
                status,
                "{},{},{},{},{}",
                r.index,
                (r.index as f64 / TARGET_RATE * 1e6) as u64,
                r.latency.as_micros(),
                r.service.as_micros(),
                u8::from(r.ok)
            );
        }
        let files = [
            ("baseline", crate::latency::samples_csv(&run.baseline, None)),
            ("load", crate::latency::samples_csv(&run.loaded, None)),
            ("status", status),
        ];
        for (what, csv) in files {
            let path = dir.join(format!("api-{n}-{what}.csv"));
            if let Err(e) = std::fs::create_dir_all(dir).and_then(|_| std::fs::write(&path, csv)) {
                eprintln!("pidwatch bench: writing {}: {e}", path.display());
            }
        }
    }
}

/// Whether every worker count ran through.
pub(crate) fn passed(f: &ApiLoad) -> bool {
    f.sizes.iter().all(|(_, r)| r.is_ok())
}

fn show(d: Duration) -> String {
    stats::show(d)
}

fn quantiles(samples: &[Duration]) -> Option<Percentiles> {
    Percentiles::of(samples)
}

/// A column of f's restart table: p50, p95, p99, max, kills, pidwatch's
/// CPU, the machine's load.
fn kill_cells(k: &KillRun) -> [String; 7] {
    let p = quantiles(&k.latencies());
    let q = |f: fn(&Percentiles) -> Duration| p.map_or("-".into(), |p| show(f(&p)));
    [
        q(|p| p.p50),
        q(|p| p.p95),
        q(|p| p.p99),
        q(|p| p.max),
        format!("{} ({})", k.kills.len(), k.timeouts()),
        format!("{:.1} %", k.load.monitor_core_percent),
        load(&k.load),
    ]
}

/// f's rows of the targets table: per worker count, no restart lost, the
/// restart latency under load within the usual, and the load delivered.
pub(crate) fn targets(f: &ApiLoad) -> String {
    let mut s = String::new();
    for (n, run) in &f.sizes {
        let n = thousands(*n);
        let rows = [
            format!(
                "f. no restart lost under {} `GET {STATUS_PATH}` a second, {n} workers",
                thousands(TARGET_RATE as usize)
            ),
            format!(
                "f. kill → running p99 under that load ≤ {TOLERANCE}× its p99 without, {n} workers"
            ),
            format!(
                "f. the load delivered: {} a second answered, {n} workers",
                thousands(TARGET_RATE as usize)
            ),
        ];
        let r = match run {
            Ok(r) => r,
            Err(e) => {
                for row in &rows {
                    let _ = writeln!(s, "| {row} | not measured: {} | - |", one_line(e));
                }
                continue;
            }
        };
        let lost = r.lost();
        let _ = writeln!(
            s,
            "| {} | {} + {} kills, {} + {} timed out; {} of {n} running after | {} |",
            rows[0],
            r.baseline.kills.len(),
            r.loaded.kills.len(),
            r.baseline.timeouts(),
            r.loaded.timeouts(),
            thousands(r.running_after),
            if lost == 0 {
                "met".to_string()
            } else {
                format!(
                    "missed: {} not back within {} s, {} not running at the end",
                    r.baseline.timeouts() + r.loaded.timeouts(),
                    supervisord::DEADLINE.as_secs(),
                    r.workers.saturating_sub(r.running_after)
                )
            }
        );
        match (
            quantiles(&r.loaded.latencies()),
            quantiles(&r.baseline.latencies()),
            r.usual_limit(),
        ) {
            (Some(l), Some(b), Some(limit)) => {
                let _ = writeln!(
                    s,
                    "| {} | p99 {} under load, {} without (p50 {} and {}) | {} |",
                    rows[1],
                    show(l.p99),
                    show(b.p99),
                    show(l.p50),
                    show(b.p50),
                    crate::report::verdict_at_most(l.p99.as_secs_f64(), limit.as_secs_f64(), |v| {
                        show(Duration::from_secs_f64(v))
                    })
                );
            }
            _ => {
                let _ = writeln!(s, "| {} | no respawn measured | missed |", rows[1]);
            }
        }
        let load = &r.load;
        let lat = quantiles(&load.latencies());
        let _ = writeln!(
            s,
            "| {} | {:.0}/s ({} of {} due answered, {} failed, {} never sent); p50 {}, p99 {}, max {} from the due time | {} |",
            rows[2],
            load.rate(),
            thousands(load.answered()),
            thousands(load.due),
            thousands(load.failed()),
            thousands(load.unsent()),
            lat.map_or("-".into(), |p| show(p.p50)),
            lat.map_or("-".into(), |p| show(p.p99)),
            lat.map_or("-".into(), |p| show(p.max)),
            if load.delivered() {
                "reached".to_string()
            } else {
                format!(
                    "not reached: {:.1} % of the target",
                    load.rate() / TARGET_RATE * 100.0
                )
            }
        );
    }
    s
}

/// For each of f's missed targets: by how much, why (from this run's
/// numbers), and what would close it.
pub(crate) fn analysis(f: &ApiLoad) -> String {
    let mut s = String::new();
    for (_, run) in &f.sizes {
        let Ok(r) = run else { continue };
        let n = thousands(r.workers);
        let one = stats::median(&r.probe.times).unwrap_or_default();
        let batch = one * CONNECTIONS as u32;
        let capacity = 1.0 / one.as_secs_f64().max(1e-9);
        if let (Some(l), Some(b), Some(limit)) = (
            quantiles(&r.loaded.latencies()),
            quantiles(&r.baseline.latencies()),
            r.usual_limit(),
        ) && l.p99 > limit
        {
            let _ = writeln!(
                s,
                "**f. Kill → running under the load, {n} workers: p99 {}, {} over the usual {} \
                 ({TOLERANCE}× the p99 without load, {}); p50 {} against {}.** The monitor cannot \
                 keep up with the load: one `GET {STATUS_PATH}` costs its loop {} (a whole \
                 observe of every worker, its resources and its last event, then the JSON: \
                 {:.0} KiB), so it answers at most about {capacity:.0} a second, and with \
                 {CONNECTIONS} connections always waiting its loop did little else ({:.0} % of \
                 a core over the kills). A death seen while a report is built waits for it \
                 ({} for {CONNECTIONS}).\n",
                show(l.p99),
                show(l.p99.saturating_sub(limit)),
                show(limit),
                show(b.p99),
                show(l.p50),
                show(b.p50),
                show(one),
                r.probe.bytes as f64 / 1024.0,
                r.loaded.load.monitor_core_percent,
                show(batch),
            );
        }
        if !r.load.delivered() {
            let _ = writeln!(
                s,
                "**f. The load, {n} workers: {:.0} answers a second of {} due ({:.1} %).** \
                 Each report is built anew on the monitor's one loop thread ({} each without \
                 load, about {capacity:.0} a second at most); {} requests came due that no \
                 connection was free to send, and those sent waited for a connection first \
                 (p50 {} from their due time, against {} from their sending). Most of a report \
                 changes only when a worker does (its CPU and memory figures drift): served by \
                 the API's own thread from the last report built, rebuilt on a change or at most \
                 every so often (a second, say), {} a second would cost the HTTP server, not the \
                 loop.\n",
                r.load.rate(),
                thousands(TARGET_RATE as usize),
                r.load.rate() / TARGET_RATE * 100.0,
                show(one),
                thousands(r.load.unsent()),
                quantiles(&r.load.latencies()).map_or("-".into(), |p| show(p.p50)),
                quantiles(&r.load.service_times()).map_or("-".into(), |p| show(p.p50)),
                thousands(TARGET_RATE as usize),
            );
        }
        if r.lost() > 0 {
            let _ = writeln!(
                s,
                "**f. Restarts lost, {n} workers: {} kills not followed by a new worker within \
                 {} s, {} workers not running at the end.** See the samples \
                 (`api-{}-load.csv`) for which.\n",
                r.baseline.timeouts() + r.loaded.timeouts(),
                supervisord::DEADLINE.as_secs(),
                r.workers.saturating_sub(r.running_after),
                r.workers,
            );
        }
    }
    s
}

/// f, as tables: the restarts without and under load, and the status
/// requests, per worker count.
pub(crate) fn section(f: &ApiLoad) -> String {
    let st = &f.settings;
    let mut s = String::from("## f. The control API under load\n\n");
    let _ = writeln!(
        s,
        "pidwatch's config mode as in e (`pidwatch --config pidwatch.toml run`, one \
         `[worker.sleep]` of `{argv}`, `instances` = the worker count, its incarnation cgroups in \
         a cgroup of the bench's), at {sizes} workers, one after the other, each in a fresh temp \
         dir. {settle} s after every worker runs, {probe} `GET {STATUS_PATH}` one after the other \
         on one connection give a report's cost without load. Then the same kills run twice, \
         timed as in e (SIGKILL to a random running worker, until a child of pidwatch runs \
         `{argv}` that did not before, polled every {poll} µs): {warm} untimed kills, then timed \
         ones for {killing} s, each a random {lo}–{hi} ms after the previous respawn, the same \
         victims and pauses in the same order both times; first without load, then under it.\n\n\
         The load: `GET {STATUS_PATH}` on `<state_dir>/control.sock` at a target {rate} a second \
         for {secs} s, and on until the kills are done (they start {lead} s in). It is open-loop: \
         request *i* is due at start + *i* / {rate} s whatever became of the others, and its \
         latency runs from that due time, so a request that waited for a free connection counts \
         its wait (no coordinated omission). It goes over {conns} keep-alive HTTP/1.1 connections \
         (hyper's client over `tokio::net::UnixStream`, a current-thread runtime on one thread of \
         the bench), each sending the next due request as soon as its last one is answered \
         (a request fails after {timeout} s); the requests still waiting for a connection when the \
         window closes were never sent.\n\n\
         A restart is lost when no new worker runs within {deadline} s of its kill, or fewer \
         than all workers run at the end. The usual restart latency is at most {tol}× the p99 \
         without load: a p99 of under 200 kills rests on its two or three largest samples, which \
         on these two shared cores move by tens of percent between identical runs; {tol}× leaves \
         room for that and still catches restarts that wait behind a queue of status reports.\n",
        argv = supervisord::WORKER_ARGV.join(" "),
        sizes = st
            .sizes
            .iter()
            .map(|n| thousands(*n))
            .collect::<Vec<_>>()
            .join(" and "),
        settle = supervisord::SETTLE.as_secs(),
        probe = PROBE_REQUESTS,
        poll = crate::latency::POLL.as_micros(),
        killing = st.killing.as_secs(),
        timeout = REQUEST_TIMEOUT.as_secs(),
        warm = st.warmup,
        lo = PAUSE_LOW.as_millis(),
        hi = (PAUSE_LOW + PAUSE_SPAN).as_millis(),
        rate = thousands(TARGET_RATE as usize),
        secs = st.duration.as_secs(),
        lead = LEAD_IN.as_secs(),
        conns = CONNECTIONS,
        deadline = supervisord::DEADLINE.as_secs(),
        tol = TOLERANCE,
    );
    for (n, run) in &f.sizes {
        if let Err(e) = run {
            let _ = writeln!(
                s,
                "**Failed at {} workers:** {}\n",
                thousands(*n),
                one_line(e)
            );
        }
    }
    let ok: Vec<&SizeRun> = f
        .sizes
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok())
        .collect();
    if ok.is_empty() {
        return s;
    }
    s.push_str("| kill → new one running | ");
    s.push_str(
        &ok.iter()
            .map(|r| {
                format!(
                    "{} workers, without load | under load",
                    thousands(r.workers)
                )
            })
            .collect::<Vec<_>>()
            .join(" | "),
    );
    s.push_str(" |\n|---|");
    s.push_str(&"---:|---:|".repeat(ok.len()));
    s.push('\n');
    let names = [
        "p50",
        "p95",
        "p99",
        "max",
        "timed kills (timed out)",
        "pidwatch's CPU during the kills (one core)",
        "machine busy / bench / steal",
    ];
    let cells: Vec<([String; 7], [String; 7])> = ok
        .iter()
        .map(|r| (kill_cells(&r.baseline), kill_cells(&r.loaded)))
        .collect();
    for (i, what) in names.iter().enumerate() {
        let _ = write!(s, "| {what} |");
        for (without, under) in &cells {
            let _ = write!(s, " {} | {} |", without[i], under[i]);
        }
        s.push('\n');
    }
    let _ = write!(s, "| workers running after |");
    for r in &ok {
        let _ = write!(
            s,
            " - | {} of {} |",
            thousands(r.running_after),
            thousands(r.workers)
        );
    }
    s.push_str("\n\n");

    let _ = writeln!(
        s,
        "| `GET {STATUS_PATH}` | {} |\n|---|{}",
        ok.iter()
            .map(|r| format!("{} workers", thousands(r.workers)))
            .collect::<Vec<_>>()
            .join(" | "),
        "---:|".repeat(ok.len())
    );
    let cells =
        |f: &dyn Fn(&SizeRun) -> String| ok.iter().map(|r| f(r)).collect::<Vec<_>>().join(" | ");
    let q = |v: Vec<Duration>, f: fn(&Percentiles) -> Duration| {
        quantiles(&v).map_or("-".into(), |p| show(f(&p)))
    };
    let table: Vec<(String, String)> = vec![
        (
            "one report without load (median of the probe)".into(),
            cells(&|r| stats::median(&r.probe.times).map_or("-".into(), show)),
        ),
        (
            "report size".into(),
            cells(&|r| format!("{:.0} KiB", r.probe.bytes as f64 / 1024.0)),
        ),
        (
            "requests due in the window".into(),
            cells(&|r| {
                format!(
                    "{} over {:.1} s",
                    thousands(r.load.due),
                    r.load.window.as_secs_f64()
                )
            }),
        ),
        (
            "answered 200".into(),
            cells(&|r| thousands(r.load.answered())),
        ),
        (
            "rate achieved".into(),
            cells(&|r| format!("{:.0}/s", r.load.rate())),
        ),
        (
            "failed".into(),
            cells(&|r| {
                if r.load.errors.is_empty() {
                    "0".into()
                } else {
                    r.load
                        .errors
                        .iter()
                        .map(|(k, v)| format!("{v} {}", one_line(k)))
                        .collect::<Vec<_>>()
                        .join("; ")
                }
            }),
        ),
        (
            "never sent (waiting for a connection at the end)".into(),
            cells(&|r| thousands(r.load.unsent())),
        ),
        (
            "latency from the due time, p50".into(),
            cells(&|r| q(r.load.latencies(), |p| p.p50)),
        ),
        ("… p99".into(), cells(&|r| q(r.load.latencies(), |p| p.p99))),
        ("… max".into(), cells(&|r| q(r.load.latencies(), |p| p.max))),
        (
            "sending to answer, p50".into(),
            cells(&|r| q(r.load.service_times(), |p| p.p50)),
        ),
        (
            "… p99".into(),
            cells(&|r| q(r.load.service_times(), |p| p.p99)),
        ),
        (
            "connections opened".into(),
            cells(&|r| r.load.connects.to_string()),
        ),
    ];
    for (what, row) in table {
        let _ = writeln!(s, "| {what} | {row} |");
    }
    s.push('\n');
    for r in &ok {
        let one = stats::median(&r.probe.times).unwrap_or_default();
        let _ = writeln!(
            s,
            "- {n} workers: pidwatch started all in {}; {}; `ERROR` lines of its output: {}; \
             exit on SIGTERM: {}. Its report lists {} workers, {} running; a request takes {} \
             without load (the monitor builds a report after each pass, or once a second, and \
             answers every request with it until then). Under the load it answered {:.0}/s, \
             using {:.0} % of a core. It answers requests after the pass of their wake-up, so a \
             death noticed with them is restarted first.",
            show(r.all_running),
            r.placement,
            r.error_lines,
            r.exit,
            thousands(r.probe.listed),
            thousands(r.probe.running),
            show(one),
            r.load.rate(),
            r.loaded.load.monitor_core_percent,
            n = thousands(r.workers),
        );
    }
    s
}

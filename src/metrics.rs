//! Prometheus metrics: each worker's state from a `status` report, and the
//! monitor's own (how long its passes take, how soon a dead worker is back,
//! how its heals end).
//!
//! The exposition is built afresh from a [`Report`] each time it is asked
//! for ([`exposition`]): per-worker values are read from the report, never
//! kept, so a worker that is gone from the config leaves no series behind.
//! The monitor's histograms and counters live as long as the monitor
//! ([`MonitorMetrics`]), which observes them in its loop; a one-shot
//! `pidwatch metrics` has none.
//!
//! Per worker, labelled `worker` (its full id, `name@instance` for an
//! instance; `instance` is left to Prometheus, which names the scraped
//! target with it):
//!
//! | metric | type | what |
//! |---|---|---|
//! | `pidwatch_worker_up` | gauge | 1 when its verdict is `running`, else 0 |
//! | `pidwatch_worker_verdict` | gauge | one series per verdict (label `verdict`), 1 for the worker's own, 0 for the others |
//! | `pidwatch_worker_given_up` | gauge | 1 when it reached its restart cap (until `pidwatch reset`) |
//! | `pidwatch_worker_restarts_total` | counter | restarts after a death, ever: the journal's `restarted` events, which a reset does not clear |
//! | `pidwatch_worker_restart_attempts` | gauge | attempts counted against the cap (cleared by a stable run or a reset) |
//! | `pidwatch_worker_restart_limit` | gauge | the cap |
//! | `pidwatch_worker_last_exit_code` | gauge | the exit status of its last run (128+N where the wrapper saw signal N end the worker); absent while it runs, and when no status was seen (a stop by signal, a run pidwatch did not see end) |
//! | `pidwatch_worker_cpu_seconds_total` | counter | CPU time of its incarnation (its cgroup, else its live processes summed); starts again at a restart; absent without live processes |
//! | `pidwatch_worker_memory_bytes` | gauge | its cgroup's `memory.current`, else its live processes' RSS summed; absent without live processes |
//!
//! The monitor's:
//!
//! | metric | type | what |
//! |---|---|---|
//! | `pidwatch_pass_duration_seconds` | histogram | one completed pass, label `kind`: `sweep` (every worker) or `event` (those a pidfd, inotify or a timer named) |
//! | `pidwatch_respawn_latency_seconds` | histogram | from the start of the pass that found a worker dead to its new incarnation confirmed (the end of that pass's restart steps); a backoff before that pass is not in it |
//! | `pidwatch_heals_total` | counter | dead workers acted on, label `result`: `restarted`, `failed` (the start failed), `given_up` (the cap reached, nothing started) |
//!
//! Two text formats: OpenMetrics 1.0 (what `prometheus-client` encodes, for
//! an HTTP scrape, [`OPENMETRICS_CONTENT_TYPE`]) and the Prometheus text
//! format 0.0.4 (what node_exporter's textfile collector parses,
//! [`PROMETHEUS_CONTENT_TYPE`]). They differ in three places only: a
//! counter's `# HELP` and `# TYPE` name its family without `_total` in
//! OpenMetrics and with it in the other (where node_exporter would
//! otherwise see an untyped `…_total`); OpenMetrics has `# UNIT` lines;
//! and it ends with `# EOF`.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::core::{Action, Verdict};
use crate::pass::PassResult;
use crate::render::{Report, WorkerJson};

/// The content type of [`Format::OpenMetrics`].
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The content type of [`Format::Prometheus`].
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Every metric's name starts with this and `_`.
const PREFIX: &str = "pidwatch";

/// Bucket bounds of both histograms, seconds: a pass without restarts
/// takes milliseconds; one that stops survivors or waits for a PID file,
/// up to the stop and spawn timeouts (10 s and 5 s by default).
const BUCKETS: [f64; 16] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0,
];

/// A text format of the exposition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0 text, ending with `# EOF`: for an HTTP scrape.
    OpenMetrics,
    /// The Prometheus text format 0.0.4: for node_exporter's textfile
    /// collector, and anything else that parses only that.
    Prometheus,
}

impl Format {
    /// Its HTTP `Content-Type`.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
            Format::Prometheus => PROMETHEUS_CONTENT_TYPE,
        }
    }
}

/// What kind of pass took the time observed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassKind {
    /// A pass over every worker (start, the interval, SIGUSR1, a reload).
    Sweep,
    /// A pass over the workers an event named, and what they depend on.
    Event,
}

impl PassKind {
    fn as_str(self) -> &'static str {
        match self {
            PassKind::Sweep => "sweep",
            PassKind::Event => "event",
        }
    }
}

/// How a heal of a dead worker ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealResult {
    /// A new incarnation was started and confirmed.
    Restarted,
    /// Its stop or start failed; the next attempt waits for the backoff.
    Failed,
    /// It reached its restart cap: given up, nothing started.
    GivenUp,
}

impl HealResult {
    const ALL: [HealResult; 3] = [
        HealResult::Restarted,
        HealResult::Failed,
        HealResult::GivenUp,
    ];

    fn as_str(self) -> &'static str {
        match self {
            HealResult::Restarted => "restarted",
            HealResult::Failed => "failed",
            HealResult::GivenUp => "given_up",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PassLabels {
    kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HealLabels {
    result: &'static str,
}

fn new_histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

/// The monitor's own metrics, observed by its loop for as long as it runs.
/// Cheap to clone (each clone observes into the same values), and `Send`
/// and `Sync`: another thread may hold one to encode.
#[derive(Debug, Clone)]
pub struct MonitorMetrics {
    passes: Family<PassLabels, Histogram>,
    respawns: Histogram,
    heals: Family<HealLabels, Counter>,
}

impl Default for MonitorMetrics {
    fn default() -> Self {
        MonitorMetrics::new()
    }
}

impl MonitorMetrics {
    /// Metrics with nothing observed yet; every label value they can take
    /// is there from the start, at 0, so that `rate()` sees the first one.
    pub fn new() -> MonitorMetrics {
        let metrics = MonitorMetrics {
            passes: Family::new_with_constructor(new_histogram as fn() -> Histogram),
            respawns: new_histogram(),
            heals: Family::default(),
        };
        for kind in [PassKind::Sweep, PassKind::Event] {
            let _ = metrics.passes.get_or_create_owned(&PassLabels {
                kind: kind.as_str(),
            });
        }
        for result in HealResult::ALL {
            let _ = metrics.heals.get_or_create_owned(&HealLabels {
                result: result.as_str(),
            });
        }
        metrics
    }

    /// One completed pass of `kind` took `took`.
    pub fn observe_pass(&self, kind: PassKind, took: Duration) {
        self.passes
            .get_or_create(&PassLabels {
                kind: kind.as_str(),
            })
            .observe(took.as_secs_f64());
    }

    /// Counts how the heals of a pass ended: each worker found dead and
    /// restarted (its respawn observed as `since_detection`, the time from
    /// the start of the pass to now, the end of its restart steps), whose
    /// restart failed, or given up. A first start of a program (not dead:
    /// `not_started`) is no heal.
    pub fn observe_heals(&self, result: &PassResult, since_detection: Duration) {
        let dead: BTreeSet<&str> = result
            .decision
            .workers
            .iter()
            .filter(|d| d.verdict == Verdict::Dead)
            .map(|d| d.id.as_str())
            .collect();
        for (worker, _) in &result.restarted {
            if dead.contains(worker.as_str()) {
                self.count_heal(HealResult::Restarted);
                self.respawns.observe(since_detection.as_secs_f64());
            }
        }
        for (worker, _) in &result.failed {
            if dead.contains(worker.as_str()) {
                self.count_heal(HealResult::Failed);
            }
        }
        for action in &result.decision.actions {
            if matches!(action, Action::GiveUp { .. }) {
                self.count_heal(HealResult::GivenUp);
            }
        }
    }

    fn count_heal(&self, result: HealResult) {
        self.heals
            .get_or_create(&HealLabels {
                result: result.as_str(),
            })
            .inc();
    }

    fn register(&self, registry: &mut Registry) {
        registry.register_with_unit(
            "pass_duration",
            "How long one completed pass of the monitor took, by kind: sweep (every worker) \
             or event (the workers an event named)",
            Unit::Seconds,
            self.passes.clone(),
        );
        registry.register_with_unit(
            "respawn_latency",
            "From the start of the pass that found a worker dead to its new incarnation \
             confirmed",
            Unit::Seconds,
            self.respawns.clone(),
        );
        registry.register(
            "heals",
            "Dead workers the monitor acted on, by result: restarted, failed, given_up",
            self.heals.clone(),
        );
    }
}

/// The metrics of the workers in `report` (their `status` fields, where it
/// has them) and, when given, the monitor's, as text in `format`.
pub fn exposition(report: &Report, monitor: Option<&MonitorMetrics>, format: Format) -> String {
    let mut workers = Registry::with_prefix(PREFIX);
    workers.register_collector(Box::new(Workers(report.workers.clone())));
    let mut own = Registry::with_prefix(PREFIX);
    if let Some(monitor) = monitor {
        monitor.register(&mut own);
    }
    let mut text = String::new();
    // Writing to a String cannot fail.
    let _ = encode_registry(&mut text, &workers)
        .and_then(|()| encode_registry(&mut text, &own))
        .and_then(|()| encode_eof(&mut text));
    match format {
        Format::OpenMetrics => text,
        Format::Prometheus => to_prometheus_text(&text),
    }
}

/// OpenMetrics text as the Prometheus text format 0.0.4: a counter's
/// `# HELP` and `# TYPE` name the `_total` its samples carry; no `# UNIT`,
/// no `# EOF`. Samples are the same in both.
fn to_prometheus_text(openmetrics: &str) -> String {
    let counters: BTreeSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let descriptor = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|tag| Some((tag, line.strip_prefix(tag)?)));
        match descriptor {
            Some((tag, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                let total = if counters.contains(name) {
                    "_total"
                } else {
                    ""
                };
                let _ = writeln!(out, "{tag}{name}{total} {tail}");
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

/// The workers of one report, encoded at once: in the report's order (by
/// id), each family only when some worker has a value for it.
#[derive(Debug)]
struct Workers(Vec<WorkerJson>);

impl Collector for Workers {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let workers = &self.0;
        let flag = |on: bool| ConstGauge::new(i64::from(on));
        family(
            &mut encoder,
            ("worker_up", None, MetricType::Gauge),
            "1 when the worker runs, else 0.",
            workers
                .iter()
                .map(|w| (labels(w), flag(w.verdict == Verdict::Running))),
        )?;
        family(
            &mut encoder,
            ("worker_verdict", None, MetricType::Gauge),
            "The worker's verdict: 1 in the series of its own, 0 in the others.",
            workers.iter().flat_map(|w| {
                Verdict::ALL.into_iter().map(move |v| {
                    let labels = [("worker", w.id.as_str()), ("verdict", v.as_str())];
                    (labels, flag(w.verdict == v))
                })
            }),
        )?;
        family(
            &mut encoder,
            ("worker_given_up", None, MetricType::Gauge),
            "1 when the worker reached its restart cap and is left dead until pidwatch reset.",
            workers
                .iter()
                .map(|w| (labels(w), flag(w.verdict == Verdict::GivenUp))),
        )?;
        let status = || {
            workers
                .iter()
                .filter_map(|w| Some((labels(w), w.status.as_ref()?)))
        };
        family(
            &mut encoder,
            ("worker_restarts", None, MetricType::Counter),
            "Restarts of the worker after a death, as journaled in the state DB.",
            status().map(|(l, s)| (l, ConstCounter::new(s.restarts))),
        )?;
        family(
            &mut encoder,
            ("worker_restart_attempts", None, MetricType::Gauge),
            "Restart attempts counted against the cap; cleared by a stable run or a reset.",
            status().map(|(l, s)| (l, ConstGauge::new(i64::from(s.attempts)))),
        )?;
        family(
            &mut encoder,
            ("worker_restart_limit", None, MetricType::Gauge),
            "The worker's restart cap.",
            status().map(|(l, s)| (l, ConstGauge::new(i64::from(s.max_restarts)))),
        )?;
        family(
            &mut encoder,
            ("worker_last_exit_code", None, MetricType::Gauge),
            "The exit status of the worker's last run, while it does not run, when one was seen.",
            status().filter_map(|(l, s)| {
                let code = s.last_exit.as_ref()?.exit_status?;
                Some((l, ConstGauge::new(i64::from(code))))
            }),
        )?;
        family(
            &mut encoder,
            ("worker_cpu", Some(&Unit::Seconds), MetricType::Counter),
            "CPU time of the worker's current incarnation: its cgroup, else its live processes.",
            status().filter_map(|(l, s)| Some((l, ConstCounter::new(s.cpu_seconds?)))),
        )?;
        family(
            &mut encoder,
            ("worker_memory", Some(&Unit::Bytes), MetricType::Gauge),
            "Memory of the worker: its cgroup's memory.current, else its live processes' RSS.",
            status().filter_map(|(l, s)| Some((l, ConstGauge::new(s.rss_bytes? as f64)))),
        )?;
        Ok(())
    }
}

/// A worker's labels: `worker`, its id.
fn labels(worker: &WorkerJson) -> [(&'static str, &str); 1] {
    [("worker", worker.id.as_str())]
}

/// Encodes one metric family, `(name, unit, type)`, with its samples;
/// nothing when it has none.
fn family<L: EncodeLabelSet, M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    (name, unit, kind): (&str, Option<&Unit>, MetricType),
    help: &str,
    samples: impl Iterator<Item = (L, M)>,
) -> std::fmt::Result {
    let mut samples = samples.peekable();
    if samples.peek().is_none() {
        return Ok(());
    }
    let mut metric = encoder.encode_descriptor(name, help, unit, kind)?;
    for (labels, value) in samples {
        value.encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::core::{Decision, Snapshot, TaskCounts, WorkerDecision};
    use crate::render::{InitiativeJson, LastExit, StatusExtra, Summary};

    /// One sample read back from an exposition.
    #[derive(Debug, Clone, PartialEq)]
    struct Sample {
        family: String,
        name: String,
        labels: BTreeMap<String, String>,
        value: f64,
    }

    fn is_name(text: &str, colons: bool) -> bool {
        let mut chars = text.chars();
        let ok_first = |c: char| c.is_ascii_alphabetic() || c == '_' || (colons && c == ':');
        chars.next().is_some_and(ok_first) && chars.all(|c| ok_first(c) || c.is_ascii_digit())
    }

    /// Reads `{name="value",...}`, unescaping values; returns them and the
    /// rest of the line.
    fn read_labels(text: &str) -> (BTreeMap<String, String>, &str) {
        let mut labels = BTreeMap::new();
        let Some(mut rest) = text.strip_prefix('{') else {
            return (labels, text);
        };
        loop {
            if let Some(after) = rest.strip_prefix('}') {
                return (labels, after);
            }
            let (name, after) = rest.split_once("=\"").expect("label=\"value\"");
            assert!(is_name(name, false), "label name {name:?}");
            let mut value = String::new();
            let mut chars = after.char_indices();
            let end = loop {
                match chars.next().expect("a closing quote") {
                    (i, '"') => break i,
                    (_, '\\') => match chars.next().expect("an escape").1 {
                        '\\' => value.push('\\'),
                        '"' => value.push('"'),
                        'n' => value.push('\n'),
                        other => panic!("bad escape \\{other}"),
                    },
                    (_, '\n') => panic!("a raw newline in a label value"),
                    (_, c) => value.push(c),
                }
            };
            assert!(
                labels.insert(name.to_string(), value).is_none(),
                "{name} twice"
            );
            rest = &after[end + 1..];
            rest = rest.strip_prefix(',').unwrap_or(rest);
        }
    }

    /// Parses an exposition strictly: every line is a `# HELP` and a
    /// `# TYPE` of a family before its samples, a sample of the family
    /// last typed (by the suffixes its type allows in `format`) without a
    /// timestamp, or, in OpenMetrics, `# UNIT` and the final `# EOF`.
    fn parse(text: &str, format: Format) -> Vec<Sample> {
        assert!(text.ends_with('\n'), "{text}");
        let mut samples = Vec::new();
        let mut typed: BTreeMap<String, String> = BTreeMap::new();
        let mut current: Option<(String, String)> = None;
        let mut help: Option<String> = None;
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if *line == "# EOF" {
                assert_eq!(format, Format::OpenMetrics, "{text}");
                assert_eq!(i + 1, lines.len(), "# EOF is last: {text}");
                continue;
            }
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, _) = rest.split_once(' ').expect("help text");
                assert!(is_name(name, true), "{line}");
                help = Some(name.to_string());
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("a type");
                assert_eq!(help.as_deref(), Some(name), "HELP before TYPE: {line}");
                assert!(["gauge", "counter", "histogram"].contains(&kind), "{line}");
                assert!(
                    typed.insert(name.into(), kind.into()).is_none(),
                    "{line} again"
                );
                current = Some((name.to_string(), kind.to_string()));
                continue;
            }
            if let Some(rest) = line.strip_prefix("# UNIT ") {
                assert_eq!(format, Format::OpenMetrics, "{line}");
                let (name, unit) = rest.split_once(' ').expect("a unit");
                assert!(name.ends_with(&format!("_{unit}")), "{line}");
                continue;
            }
            assert!(!line.starts_with('#'), "unknown comment: {line}");
            let name_end = line.find(['{', ' ']).expect("a value");
            let name = &line[..name_end];
            assert!(is_name(name, true), "{line}");
            let (labels, rest) = read_labels(&line[name_end..]);
            let value = rest.strip_prefix(' ').expect("one space, then the value");
            assert!(!value.contains(' '), "no timestamp: {line}");
            let value: f64 = match value {
                "+Inf" => f64::INFINITY,
                v => v.parse().unwrap_or_else(|e| panic!("{e}: {line}")),
            };
            let (family, kind) = current.clone().expect("a TYPE first");
            let suffix = name.strip_prefix(family.as_str());
            let fits = match (kind.as_str(), format) {
                ("gauge", _) | ("counter", Format::Prometheus) => suffix == Some(""),
                ("counter", Format::OpenMetrics) => suffix == Some("_total"),
                ("histogram", _) => match suffix {
                    Some("_bucket") => labels.contains_key("le"),
                    Some("_sum" | "_count") => true,
                    _ => false,
                },
                _ => false,
            };
            assert!(fits, "{line} is not of {family} ({kind})");
            if format == Format::Prometheus && kind == "counter" {
                assert!(family.ends_with("_total"), "{family}");
            }
            samples.push(Sample {
                family,
                name: name.to_string(),
                labels,
                value,
            });
        }
        samples
    }

    fn find<'a>(samples: &'a [Sample], name: &str, labels: &[(&str, &str)]) -> Option<&'a Sample> {
        samples.iter().find(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
    }

    fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
        find(samples, name, labels)
            .unwrap_or_else(|| panic!("no {name} {labels:?} in {samples:#?}"))
            .value
    }

    const ODD: &str = "odd \"name\" \\ with\na newline@1";

    fn worker(id: &str, verdict: Verdict, status: Option<StatusExtra>) -> WorkerJson {
        WorkerJson {
            id: id.into(),
            verdict,
            reason: None,
            detail: None,
            pid: None,
            dependencies: Vec::new(),
            tasks: TaskCounts::default(),
            status,
        }
    }

    fn report() -> Report {
        let running = StatusExtra {
            rss_bytes: Some(3 << 20),
            cpu_seconds: Some(1.5),
            attempts: 1,
            restarts: 4,
            max_restarts: 3,
            ..StatusExtra::default()
        };
        let stopped = StatusExtra {
            max_restarts: 2,
            last_exit: Some(LastExit {
                at: "2026-01-13T10:00:00.000Z".into(),
                exit_status: Some(143),
                signal: Some("TERM".into()),
                stopped: true,
            }),
            ..StatusExtra::default()
        };
        let given_up = StatusExtra {
            attempts: 2,
            restarts: 2,
            max_restarts: 2,
            ..StatusExtra::default()
        };
        Report {
            initiative: InitiativeJson {
                id: "config:pidwatch".into(),
                name: "pidwatch.toml".into(),
            },
            workers: vec![
                worker("app@1", Verdict::Running, Some(running)),
                worker("app@2", Verdict::Stopped, Some(stopped)),
                worker("cache", Verdict::GivenUp, Some(given_up)),
                worker(ODD, Verdict::Dead, Some(StatusExtra::default())),
            ],
            summary: Summary::default(),
            warnings: Vec::new(),
            auto_heal: None,
            last_heal: None,
        }
    }

    fn families(samples: &[Sample]) -> BTreeSet<&str> {
        samples.iter().map(|s| s.family.as_str()).collect()
    }

    #[test]
    fn each_worker_has_its_metrics_with_their_documented_names_and_labels() {
        let text = exposition(&report(), None, Format::OpenMetrics);
        let samples = parse(&text, Format::OpenMetrics);
        assert_eq!(
            families(&samples),
            BTreeSet::from([
                "pidwatch_worker_up",
                "pidwatch_worker_verdict",
                "pidwatch_worker_given_up",
                "pidwatch_worker_restarts",
                "pidwatch_worker_restart_attempts",
                "pidwatch_worker_restart_limit",
                "pidwatch_worker_last_exit_code",
                "pidwatch_worker_cpu_seconds",
                "pidwatch_worker_memory_bytes",
            ]),
            "{text}"
        );
        for s in &samples {
            let mut names: Vec<&str> = s.labels.keys().map(String::as_str).collect();
            names.sort_unstable();
            let expected: &[&str] = match s.family.as_str() {
                "pidwatch_worker_verdict" => &["verdict", "worker"],
                _ => &["worker"],
            };
            assert_eq!(names, expected, "{s:?}");
        }
        let up = |w: &str| value(&samples, "pidwatch_worker_up", &[("worker", w)]);
        assert_eq!(
            (up("app@1"), up("app@2"), up("cache"), up(ODD)),
            (1.0, 0.0, 0.0, 0.0)
        );
        let given_up = |w: &str| value(&samples, "pidwatch_worker_given_up", &[("worker", w)]);
        assert_eq!((given_up("app@1"), given_up("cache")), (0.0, 1.0));
        // A stopped worker: down, and its verdict says why.
        for v in Verdict::ALL {
            let on = value(
                &samples,
                "pidwatch_worker_verdict",
                &[("worker", "app@2"), ("verdict", v.as_str())],
            );
            assert_eq!(on, f64::from(v == Verdict::Stopped), "{v}");
        }
        let one = |name: &str, w: &str| value(&samples, name, &[("worker", w)]);
        assert_eq!(one("pidwatch_worker_restarts_total", "app@1"), 4.0);
        assert_eq!(one("pidwatch_worker_restarts_total", ODD), 0.0);
        assert_eq!(one("pidwatch_worker_restart_attempts", "cache"), 2.0);
        assert_eq!(one("pidwatch_worker_restart_limit", "app@1"), 3.0);
        assert_eq!(one("pidwatch_worker_last_exit_code", "app@2"), 143.0);
        assert_eq!(one("pidwatch_worker_cpu_seconds_total", "app@1"), 1.5);
        assert_eq!(
            one("pidwatch_worker_memory_bytes", "app@1"),
            f64::from(3 << 20)
        );
        // Unknown is absent, not 0.
        for name in [
            "pidwatch_worker_last_exit_code",
            "pidwatch_worker_cpu_seconds_total",
            "pidwatch_worker_memory_bytes",
        ] {
            assert!(
                find(&samples, name, &[("worker", "cache")]).is_none(),
                "{name}"
            );
        }
        assert!(
            text.contains("# UNIT pidwatch_worker_memory_bytes bytes\n"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn a_worker_id_from_a_config_file_is_escaped_in_its_label_and_reads_back_as_it_was() {
        let text = exposition(&report(), None, Format::Prometheus);
        assert!(
            text.contains(r#"worker="odd \"name\" \\ with\na newline@1""#),
            "{text}"
        );
        let samples = parse(&text, Format::Prometheus);
        assert_eq!(
            value(&samples, "pidwatch_worker_up", &[("worker", ODD)]),
            0.0
        );
        assert_eq!(
            value(
                &samples,
                "pidwatch_worker_verdict",
                &[("worker", ODD), ("verdict", "dead")]
            ),
            1.0
        );
    }

    #[test]
    fn the_prometheus_format_types_counters_by_their_total_and_has_no_unit_or_eof() {
        let monitor = MonitorMetrics::new();
        monitor.observe_pass(PassKind::Sweep, Duration::from_millis(3));
        let om = exposition(&report(), Some(&monitor), Format::OpenMetrics);
        let text = exposition(&report(), Some(&monitor), Format::Prometheus);
        let samples = parse(&text, Format::Prometheus);
        assert!(
            text.contains("# TYPE pidwatch_worker_restarts_total counter\n"),
            "{text}"
        );
        assert!(text.contains("# HELP pidwatch_heals_total "), "{text}");
        assert!(
            text.contains("# TYPE pidwatch_worker_memory_bytes gauge\n"),
            "{text}"
        );
        assert!(
            !text.contains("# UNIT") && !text.contains("# EOF"),
            "{text}"
        );
        // The samples are the same in both.
        let strip = |s: Vec<Sample>| -> Vec<(String, BTreeMap<String, String>, f64)> {
            s.into_iter().map(|s| (s.name, s.labels, s.value)).collect()
        };
        assert_eq!(strip(samples), strip(parse(&om, Format::OpenMetrics)));
        assert_eq!(Format::Prometheus.content_type(), PROMETHEUS_CONTENT_TYPE);
        assert!(OPENMETRICS_CONTENT_TYPE.starts_with("application/openmetrics-text"));
    }

    #[test]
    fn without_status_fields_only_the_verdicts_are_shown() {
        let mut report = report();
        for w in &mut report.workers {
            w.status = None;
        }
        let samples = parse(
            &exposition(&report, None, Format::OpenMetrics),
            Format::OpenMetrics,
        );
        assert_eq!(
            families(&samples),
            BTreeSet::from([
                "pidwatch_worker_up",
                "pidwatch_worker_verdict",
                "pidwatch_worker_given_up"
            ])
        );
        report.workers.clear();
        assert_eq!(exposition(&report, None, Format::OpenMetrics), "# EOF\n");
        assert_eq!(exposition(&report, None, Format::Prometheus), "");
    }

    fn decided(id: &str, verdict: Verdict) -> WorkerDecision {
        WorkerDecision {
            id: id.into(),
            verdict,
            reason: None,
            pid: None,
            changed: true,
        }
    }

    fn pass_result(decision: Decision) -> PassResult {
        PassResult {
            snapshot: Snapshot {
                now: chrono::Utc::now(),
                workers: Vec::new(),
            },
            decision,
            workers: BTreeMap::new(),
            warnings: Vec::new(),
            spawned: Vec::new(),
            restarted: Vec::new(),
            failed: Vec::new(),
            running: BTreeMap::new(),
            cgroups: BTreeMap::new(),
        }
    }

    #[test]
    fn the_monitor_counts_heals_of_dead_workers_and_times_their_respawn() {
        let monitor = MonitorMetrics::new();
        let fresh = parse(
            &exposition(&report(), Some(&monitor), Format::OpenMetrics),
            Format::OpenMetrics,
        );
        for result in ["restarted", "failed", "given_up"] {
            assert_eq!(
                value(&fresh, "pidwatch_heals_total", &[("result", result)]),
                0.0
            );
        }
        assert_eq!(
            value(&fresh, "pidwatch_respawn_latency_seconds_count", &[]),
            0.0
        );

        let mut result = pass_result(Decision {
            workers: vec![
                decided("a", Verdict::Dead),
                decided("b", Verdict::Dead),
                decided("c", Verdict::GivenUp),
                decided("new", Verdict::NotStarted),
            ],
            actions: vec![Action::GiveUp {
                worker: "c".into(),
                max: 2,
            }],
            ..Decision::default()
        });
        result.restarted = vec![("a".into(), 10), ("new".into(), 11)];
        result.failed = vec![("b".into(), "no PID file within 5 s".into())];
        monitor.observe_heals(&result, Duration::from_millis(40));
        monitor.observe_pass(PassKind::Event, Duration::from_millis(45));
        monitor.observe_pass(PassKind::Sweep, Duration::from_secs(2));

        let text = exposition(&report(), Some(&monitor), Format::OpenMetrics);
        let samples = parse(&text, Format::OpenMetrics);
        let heals = |r: &str| value(&samples, "pidwatch_heals_total", &[("result", r)]);
        // The first start of "new" is no heal.
        assert_eq!(
            (heals("restarted"), heals("failed"), heals("given_up")),
            (1.0, 1.0, 1.0)
        );
        let latency = |name: &str, labels: &[(&str, &str)]| {
            value(
                &samples,
                &format!("pidwatch_respawn_latency_seconds{name}"),
                labels,
            )
        };
        assert_eq!(latency("_count", &[]), 1.0);
        assert!((latency("_sum", &[]) - 0.04).abs() < 1e-9, "{text}");
        assert_eq!(latency("_bucket", &[("le", "0.025")]), 0.0, "{text}");
        assert_eq!(latency("_bucket", &[("le", "0.05")]), 1.0, "{text}");
        let passes = |kind: &str| {
            let labels = [("kind", kind)];
            value(&samples, "pidwatch_pass_duration_seconds_count", &labels)
        };
        assert_eq!((passes("sweep"), passes("event")), (1.0, 1.0));
        assert_eq!(
            value(
                &samples,
                "pidwatch_pass_duration_seconds_bucket",
                &[("kind", "sweep"), ("le", "+Inf")]
            ),
            1.0
        );
        // The monitor's metrics come after the workers'.
        let first_own = text.find("pidwatch_pass_duration").unwrap();
        assert!(
            text.find("pidwatch_worker_up").unwrap() < first_own,
            "{text}"
        );
    }
}

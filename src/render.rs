//! Output: the human table and the `--json` document.
//!
//! The JSON document (`check --json`, `status --json`):
//!
//! ```json
//! {
//!   "initiative": {"id": "…", "name": "…"},
//!   "workers": [
//!     {"id": "Stream-B", "verdict": "dead", "reason": "no_such_process", "detail": null,
//!      "pid": 4242, "dependencies": ["Stream-A"],
//!      "tasks": {"total": 3, "completed": 1, "in_progress": 1, "pending": 1,
//!                "blocked": 0, "cancelled": 0}}
//!   ],
//!   "summary": {"running": 0, "completed": 0, "not_started": 0, "stopped": 0,
//!               "waiting": 0, "given_up": 0, "dead": 1},
//!   "warnings": []
//! }
//! ```
//!
//! `status --json` adds to each worker the fields of [`StatusExtra`], after
//! `tasks`; for a program of a config file, e.g.:
//!
//! ```json
//! {"id": "app@1", "verdict": "stopped", "reason": "stopped", "detail": "SIGTERM",
//!  "pid": null, "dependencies": [], "tasks": {"total": 0, "…": 0},
//!  "uptime_seconds": null, "rss_bytes": null, "cpu_percent": null,
//!  "attempts": 0, "restarts": 0, "max_restarts": 2, "last_event": {"at": "…", "kind": "ended", "detail": "…"},
//!  "incarnation": "0123…", "resources_from": null, "cpu_seconds": null, "processes": [],
//!  "instance": "1", "command": ["celery", "-A", "app", "worker"], "mode": "foreground",
//!  "last_exit": {"at": "2026-01-13T10:00:00.000Z", "exit_status": null, "signal": "TERM",
//!                "stopped": true}}
//! ```
//!
//! `instance`, `command` and `mode` are `null` for a stream of the
//! orchestrator; `command` is the argv the config gives (in adopt mode,
//! `start`), and no value of `env` is ever shown. `last_exit` is how the
//! current incarnation ended (its recorded ending, else its exit file),
//! `null` while it runs or when nothing says. A report reads back from its
//! JSON ([`Report::from_json`]), so that a table can be drawn from a
//! document received from a monitor.

use std::collections::BTreeMap;

use owo_colors::OwoColorize;
use serde::{Deserialize, Serialize};

use crate::core::{Decision, Snapshot, TaskCounts, Verdict};
use crate::observe::taskdb::Initiative;
use crate::source::RunMode;

/// Extra per-worker facts shown by `status`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StatusExtra {
    /// Seconds since the running process started (`None` when not running).
    pub uptime_seconds: Option<u64>,
    /// Memory of the worker's live processes, bytes: `memory.current` of
    /// its cgroup where the memory controller is on, else their resident
    /// set sizes summed (sysinfo).
    pub rss_bytes: Option<u64>,
    /// CPU use of the worker's live processes over the incarnation's life,
    /// percent of one core (the cgroup's `cpu.stat`, or sysinfo summed).
    pub cpu_percent: Option<f32>,
    /// Restart attempts counted against the cap.
    pub attempts: u32,
    /// Restarts of the worker after a death, ever: the `restarted` events
    /// of its journal, which a reset or a stable run does not clear (a
    /// first start or a `pidwatch restart` is none). Read as 0 from a
    /// document without it.
    #[serde(default)]
    pub restarts: u64,
    /// The restart cap.
    pub max_restarts: u32,
    /// The newest journal event: `(time RFC 3339, kind, detail)`.
    pub last_event: Option<LastEvent>,
    /// The current incarnation's id, when one is recorded.
    pub incarnation: Option<String>,
    /// Where the figures come from: `cgroup` (the incarnation's cgroup,
    /// every process of it) or `processes` (the live processes listed).
    pub resources_from: Option<String>,
    /// CPU time used by the incarnation's live processes, seconds.
    pub cpu_seconds: Option<f64>,
    /// The worker's live processes: its incarnation's (wrapper, worker and
    /// what they started), or an orphaned or given-up worker's leftovers.
    pub processes: Vec<ProcessJson>,
    /// A program of a config file: the instance part of its id
    /// (`<name>@<instance>`); `None` without instances, and for a stream.
    pub instance: Option<String>,
    /// A program of a config file: the argv the config gives (a string
    /// command is `["sh", "-c", text]`), in adopt mode its `start`; never
    /// its environment. `None` for a stream.
    pub command: Option<Vec<String>>,
    /// A program of a config file: `foreground` or `adopt`; `None` for a
    /// stream.
    pub mode: Option<RunMode>,
    /// How the current incarnation (the last run) ended: its recorded
    /// ending, else its exit file; `None` while it runs, or when nothing
    /// says.
    pub last_exit: Option<LastExit>,
}

/// How a worker's last run ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastExit {
    /// When, RFC 3339 UTC: the exit file's time, else when pidwatch saw
    /// (or, stopping it, made) the end.
    pub at: String,
    /// Its exit status (128+N when signal N ended it), when known.
    pub exit_status: Option<i32>,
    /// The signal that ended it, without `SIG` (`TERM`), when one did.
    pub signal: Option<String>,
    /// A deliberate stop (`pidwatch stop`, or SIGTERM, SIGINT, SIGHUP).
    pub stopped: bool,
}

impl LastExit {
    /// In a few words: `SIGTERM (stop)`, `SIGKILL`, `exit 1`, `unknown`.
    pub fn short(&self) -> String {
        match (&self.signal, self.exit_status) {
            (Some(sig), _) if self.stopped => format!("SIG{sig} (stop)"),
            (Some(sig), _) => format!("SIG{sig}"),
            (None, Some(code)) => format!("exit {code}"),
            (None, None) => "unknown".into(),
        }
    }
}

/// One live process of a worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessJson {
    /// Its PID.
    pub pid: i32,
    /// Its command name (field 2 of `/proc/<pid>/stat`).
    pub comm: String,
}

/// The newest journal event of a worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastEvent {
    /// When, RFC 3339 UTC.
    pub at: String,
    /// The event kind, e.g. `restarted`.
    pub kind: String,
    /// Its detail, if any.
    pub detail: Option<String>,
}

/// One worker in the JSON document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerJson {
    /// Worker (stream) id.
    pub id: String,
    /// Verdict name.
    pub verdict: Verdict,
    /// Reason name, `null` when running.
    pub reason: Option<String>,
    /// The exact problem of an invalid PID file, else `null`.
    pub detail: Option<String>,
    /// The PID of a valid PID file, else `null`.
    pub pid: Option<i32>,
    /// Stream ids it depends on.
    pub dependencies: Vec<String>,
    /// Task counts.
    pub tasks: TaskCounts,
    /// `status` only.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub status: Option<StatusExtra>,
}

/// The count of workers per verdict.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// Running workers.
    pub running: usize,
    /// Completed workers.
    pub completed: usize,
    /// Workers never started.
    pub not_started: usize,
    /// Workers stopped on purpose.
    pub stopped: usize,
    /// Workers waiting on a dependency.
    pub waiting: usize,
    /// Workers given up.
    pub given_up: usize,
    /// Dead workers.
    pub dead: usize,
}

impl Summary {
    /// Counts the verdicts of a decision.
    pub fn of(decision: &Decision) -> Summary {
        let mut s = Summary::default();
        for w in &decision.workers {
            *match w.verdict {
                Verdict::Running => &mut s.running,
                Verdict::Completed => &mut s.completed,
                Verdict::NotStarted => &mut s.not_started,
                Verdict::Stopped => &mut s.stopped,
                Verdict::Waiting => &mut s.waiting,
                Verdict::GivenUp => &mut s.given_up,
                Verdict::Dead => &mut s.dead,
            } += 1;
        }
        s
    }

    /// One line: `4 workers: 1 running, 1 completed, …`.
    pub fn line(&self) -> String {
        let total = self.running
            + self.completed
            + self.not_started
            + self.stopped
            + self.waiting
            + self.given_up
            + self.dead;
        format!(
            "{total} worker(s): {} running, {} completed, {} not started, {} stopped, {} waiting, \
             {} given up, {} dead",
            self.running,
            self.completed,
            self.not_started,
            self.stopped,
            self.waiting,
            self.given_up,
            self.dead
        )
    }
}

/// The JSON document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The initiative watched.
    pub initiative: InitiativeJson,
    /// The workers, sorted by id.
    pub workers: Vec<WorkerJson>,
    /// Count per verdict.
    pub summary: Summary,
    /// Warnings met (also printed on stderr).
    pub warnings: Vec<String>,
    /// A monitor's self-heal summary (`autoHeal`: status, failing,
    /// lastError, recommendedAction), when a monitor made the report.
    #[serde(rename = "autoHeal", default, skip_serializing_if = "Option::is_none")]
    pub auto_heal: Option<serde_json::Value>,
    /// The last heal the monitor carried out (`lastHeal`: at, caller,
    /// severity, actions, selfTest), when one did since it started.
    #[serde(rename = "lastHeal", default, skip_serializing_if = "Option::is_none")]
    pub last_heal: Option<serde_json::Value>,
}

/// The initiative in the JSON document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InitiativeJson {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
}

impl Report {
    /// Builds the document from a pass. `extras` adds `status` fields per worker id.
    pub fn new(
        initiative: &Initiative,
        snapshot: &Snapshot,
        decision: &Decision,
        warnings: Vec<String>,
        mut extras: BTreeMap<String, StatusExtra>,
    ) -> Report {
        let workers = decision
            .workers
            .iter()
            .zip(&snapshot.workers)
            .map(|(d, w)| WorkerJson {
                id: d.id.clone(),
                verdict: d.verdict,
                reason: d.reason.as_ref().map(|r| r.as_str().to_string()),
                detail: d.reason.as_ref().and_then(|r| r.detail()),
                pid: d.pid,
                dependencies: w.dependencies.iter().cloned().collect(),
                tasks: w.tasks.clone(),
                status: extras.remove(&d.id),
            })
            .collect();
        Report {
            initiative: InitiativeJson {
                id: initiative.id.clone(),
                name: initiative.name.clone(),
            },
            workers,
            summary: Summary::of(decision),
            warnings,
            auto_heal: None,
            last_heal: None,
        }
    }

    /// Reads back the document [`Report::to_json`] wrote (of `check` or
    /// `status`), e.g. one a monitor sent over its socket, to render it
    /// with [`Report::to_table`]. A worker has its `status` fields when
    /// the text has them all (`attempts`, `max_restarts`, `processes`
    /// among them).
    ///
    /// Errors: the text is not such a document (the "nothing to watch"
    /// document, whose `initiative` is `null`, is not one).
    pub fn from_json(text: &str) -> Result<Report, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// The document as pretty JSON text.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }

    /// The human table: a header, one line per worker, the summary line.
    pub fn to_table(&self, color: bool) -> String {
        let status = self.workers.iter().any(|w| w.status.is_some());
        let mut rows: Vec<Vec<String>> = vec![
            [
                "WORKER",
                "VERDICT",
                "PID",
                "REASON",
                "TASKS",
                "DEPENDENCIES",
            ]
            .map(String::from)
            .to_vec(),
        ];
        if status {
            rows[0].extend(
                [
                    "UPTIME",
                    "PROCS",
                    "RSS",
                    "CPU",
                    "RESTARTS",
                    "LAST EXIT",
                    "LAST EVENT",
                ]
                .map(String::from),
            );
        }
        for w in &self.workers {
            let reason = match (&w.reason, &w.detail) {
                (Some(r), Some(d)) => format!("{r} ({d})"),
                (Some(r), None) => r.to_string(),
                (None, _) => "-".into(),
            };
            let mut row = vec![
                w.id.clone(),
                w.verdict.to_string(),
                w.pid.map_or("-".into(), |p| p.to_string()),
                reason,
                format!(
                    "{}/{}",
                    w.tasks.completed + w.tasks.cancelled,
                    w.tasks.total
                ),
                if w.dependencies.is_empty() {
                    "-".into()
                } else {
                    w.dependencies.join(",")
                },
            ];
            if let Some(s) = &w.status {
                row.push(s.uptime_seconds.map_or("-".into(), human_duration));
                row.push(if s.processes.is_empty() {
                    "-".into()
                } else {
                    s.processes.len().to_string()
                });
                row.push(
                    s.rss_bytes
                        .map_or("-".into(), |b| format!("{:.1}M", b as f64 / 1048576.0)),
                );
                row.push(s.cpu_percent.map_or("-".into(), |c| format!("{c:.1}%")));
                row.push(format!("{}/{}", s.attempts, s.max_restarts));
                row.push(s.last_exit.as_ref().map_or("-".into(), LastExit::short));
                row.push(s.last_event.as_ref().map_or("-".into(), |e| {
                    format!("{} {}", e.kind, e.at.get(..19).unwrap_or(&e.at))
                }));
            }
            rows.push(row);
        }
        // Names come from the task DB: no control character reaches the terminal.
        for row in &mut rows {
            for cell in row.iter_mut() {
                *cell = crate::store::monitor_log::one_line(cell);
            }
        }
        let columns = rows[0].len();
        let widths: Vec<usize> = (0..columns)
            .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
            .collect();
        let heading = match self.initiative.id.strip_prefix("config:") {
            Some(_) => format!("Config: {}", self.initiative.name),
            None => format!(
                "Initiative: {} ({})",
                self.initiative.name, self.initiative.id
            ),
        };
        let mut out = crate::store::monitor_log::one_line(&heading) + "\n";
        for (i, row) in rows.iter().enumerate() {
            let mut line = String::new();
            for (c, cell) in row.iter().enumerate() {
                let padded = if c + 1 == columns {
                    cell.clone()
                } else {
                    format!("{cell:<width$}  ", width = widths[c])
                };
                if color && i == 0 {
                    line.push_str(&padded.bold().to_string());
                } else if color && c == 1 {
                    line.push_str(&paint(self.workers[i - 1].verdict, &padded));
                } else {
                    line.push_str(&padded);
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out.push_str(&self.summary.line());
        out.push('\n');
        if let Some(heal) = &self.last_heal {
            let field = |k: &str| heal.get(k).and_then(|v| v.as_str()).unwrap_or("-");
            let actions = heal
                .get("actions")
                .and_then(|a| a.as_array())
                .map_or(0, Vec::len);
            let test = heal
                .get("selfTest")
                .and_then(|t| t.get("outcome"))
                .and_then(|o| o.as_str())
                .unwrap_or("none");
            out.push_str(&crate::store::monitor_log::one_line(&format!(
                "Last heal: {} by {} ({} step(s), self-test {test})",
                field("at"),
                field("caller"),
                actions
            )));
            out.push('\n');
        }
        out
    }
}

fn paint(verdict: Verdict, text: &str) -> String {
    match verdict {
        Verdict::Running => text.green().to_string(),
        Verdict::Completed => text.cyan().to_string(),
        Verdict::NotStarted => text.dimmed().to_string(),
        Verdict::Stopped => text.blue().to_string(),
        Verdict::Waiting => text.yellow().to_string(),
        Verdict::GivenUp => text.magenta().bold().to_string(),
        Verdict::Dead => text.red().bold().to_string(),
    }
}

/// `3d4h`, `2h05m`, `4m10s`, `9s`.
pub fn human_duration(seconds: u64) -> String {
    let (d, h, m, s) = (
        seconds / 86400,
        seconds / 3600 % 24,
        seconds / 60 % 60,
        seconds % 60,
    );
    if d > 0 {
        format!("{d}d{h}h")
    } else if h > 0 {
        format!("{h}h{m:02}m")
    } else if m > 0 {
        format!("{m}m{s:02}s")
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(id: &str, verdict: Verdict, status: Option<StatusExtra>) -> WorkerJson {
        WorkerJson {
            id: id.into(),
            verdict,
            reason: (verdict != Verdict::Running).then(|| "no_such_process".into()),
            detail: None,
            pid: Some(4242),
            dependencies: vec!["db".into()],
            tasks: TaskCounts::default(),
            status,
        }
    }

    fn report(workers: Vec<WorkerJson>) -> Report {
        Report {
            initiative: InitiativeJson {
                id: "config:pidwatch".into(),
                name: "/etc/pidwatch/pidwatch.toml".into(),
            },
            workers,
            summary: Summary {
                running: 1,
                dead: 1,
                ..Summary::default()
            },
            warnings: vec!["a warning".into()],
            auto_heal: None,
            last_heal: None,
        }
    }

    fn status_extra() -> StatusExtra {
        StatusExtra {
            uptime_seconds: Some(65),
            rss_bytes: Some(3 << 20),
            cpu_percent: Some(1.25),
            attempts: 1,
            restarts: 4,
            max_restarts: 3,
            last_event: Some(LastEvent {
                at: "2026-01-13T10:00:00.000Z".into(),
                kind: "restarted".into(),
                detail: None,
            }),
            incarnation: Some("0123456789abcdef0123456789abcdef".into()),
            resources_from: Some("processes".into()),
            cpu_seconds: Some(0.8),
            processes: vec![ProcessJson {
                pid: 4242,
                comm: "sleep".into(),
            }],
            instance: Some("1".into()),
            command: Some(vec!["sh".into(), "-c".into(), "exec sleep 9".into()]),
            mode: Some(RunMode::Foreground),
            last_exit: Some(LastExit {
                at: "2026-01-13T09:59:00.000Z".into(),
                exit_status: None,
                signal: Some("TERM".into()),
                stopped: true,
            }),
        }
    }

    #[test]
    fn a_status_report_reads_back_from_its_json_as_it_was() {
        let sent = report(vec![
            worker("app@1", Verdict::Running, Some(status_extra())),
            worker("app@2", Verdict::Dead, Some(StatusExtra::default())),
        ]);
        let text = sent.to_json();
        let received = Report::from_json(&text).unwrap();
        assert_eq!(received, sent);
        assert_eq!(received.to_json(), text);
        assert_eq!(received.to_table(false), sent.to_table(false));
        assert!(sent.to_table(false).contains("SIGTERM (stop)"));
        // The fields of a program are null for a stream, not left out.
        let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(doc["workers"][0]["mode"], "foreground");
        assert_eq!(doc["workers"][0]["last_exit"]["signal"], "TERM");
        for key in ["instance", "command", "mode", "last_exit"] {
            assert!(doc["workers"][1][key].is_null(), "{key}: {text}");
        }
    }

    #[test]
    fn a_check_report_reads_back_without_status_fields() {
        let sent = report(vec![worker("Stream-B", Verdict::Dead, None)]);
        let text = sent.to_json();
        assert!(!text.contains("attempts"), "{text}");
        let received = Report::from_json(&text).unwrap();
        assert_eq!(received.workers[0].status, None);
        assert_eq!(received.to_json(), text);
        // Not a report: the document of "nothing to watch".
        assert!(Report::from_json(r#"{"initiative": null, "workers": []}"#).is_err());
    }
}

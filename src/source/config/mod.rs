//! Workers from a TOML config file (`pidwatch.toml`): the parsed, validated
//! and expanded model that the rest of pidwatch works with.
//!
//! Parsing and validation live in [`mod@parse`]; instance expansion (`%i`,
//! `%f`, `%h`, `%%`) in [`expand`]; the commented template of `pidwatch
//! init` in [`template`]; where the file is found in [`mod@discover`].

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::control::trust::{Secret, SecretHeader};

pub mod discover;
pub mod expand;
pub mod parse;
pub mod template;

pub use discover::{default_state_dir, discover};
pub use parse::{load, parse};
pub use template::TEMPLATE;

/// What a config file's values may refer to besides the file itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseContext {
    /// The host name, for `%h` (e.g. from gethostname(2)).
    pub host: String,
    /// The home directory, for `~` and `~/…` (`$HOME`); `None`: a path
    /// starting with `~` is an error.
    pub home: Option<PathBuf>,
}

/// A command to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProgramCommand {
    /// An argv list, run as it is (`command = ["celery", "-A", "app", "worker"]`).
    Argv(Vec<String>),
    /// A string, run by `sh -c` (`command = "exec node worker.js"`).
    Shell(String),
}

impl ProgramCommand {
    /// The argv that runs it: the list itself, or `["sh", "-c", text]`.
    pub fn argv(&self) -> Vec<String> {
        match self {
            ProgramCommand::Argv(argv) => argv.clone(),
            ProgramCommand::Shell(text) => vec!["sh".into(), "-c".into(), text.clone()],
        }
    }

    /// The program's name: the file name of argv\[0\], or of the first word
    /// of a shell string (after a leading `exec`); used as the default
    /// `match` of adopt mode.
    pub fn program_name(&self) -> String {
        let first = match self {
            ProgramCommand::Argv(argv) => argv.first().cloned().unwrap_or_default(),
            ProgramCommand::Shell(text) => {
                let mut words = text.split_whitespace();
                let mut w = words.next().unwrap_or_default();
                if w == "exec" {
                    w = words.next().unwrap_or_default();
                }
                w.to_string()
            }
        };
        first.rsplit('/').next().unwrap_or_default().to_string()
    }
}

pub use crate::core::RestartMode;

/// A signal by number and name (`TERM`, without the `SIG` prefix).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopSignal {
    /// The signal number (signal(7)).
    pub number: i32,
    /// Its name without `SIG`, e.g. `TERM`.
    pub name: String,
}

/// A probe (`health` or `ready`): a command whose exit status 0 means
/// healthy (or ready).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// What to run (with `%i`, `%f`, `%h` expanded).
    pub command: ProgramCommand,
    /// Time between two runs (default 10 s for `health`, 1 s for `ready`).
    pub interval: Duration,
    /// How long one run may take before it counts as failed (default 5 s).
    pub timeout: Duration,
    /// `health`: failures in a row that make the worker unhealthy (default
    /// 3). `ready`: ignored (it is run until it passes).
    pub retries: u32,
}

/// Adopt mode: the program daemonizes itself and writes its own PID file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Adopt {
    /// The PID file the program writes (absolute, expanded).
    pub pidfile: PathBuf,
    /// The regular expression its command line (`/proc/<pid>/cmdline`,
    /// arguments joined by single spaces) must match to be the worker.
    /// Default: the program name of `start` (or `command`), escaped.
    pub matches: String,
    /// What starts it (it is expected to daemonize and write `pidfile`).
    pub start: ProgramCommand,
    /// What stops it; `None`: `stop_signal` to the incarnation.
    pub stop: Option<ProgramCommand>,
}

/// One worker of the config file: one instance of a `[worker.<name>]`
/// table, with `[defaults]` applied and `%` sequences expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramSpec {
    /// The worker id: `<name>`, or `<name>@<instance>`.
    pub id: String,
    /// The table name, `<name>`.
    pub name: String,
    /// The instance (`%i`), if the table has `instances`.
    pub instance: Option<String>,
    /// The file an instance was made for (`%f`), with a glob `instances`.
    pub file: Option<PathBuf>,
    /// What runs in the foreground (`command`); in adopt mode, `start`
    /// is used instead when given.
    pub command: ProgramCommand,
    /// The working directory (absolute; default: the config file's folder).
    pub cwd: PathBuf,
    /// Variables added to the inherited environment, in order: `env_file`
    /// first, then `env` (a later one wins).
    pub env: Vec<(String, String)>,
    /// Names whose values are never shown: `secret_env`, plus every name in
    /// `env` ending in `_KEY`, `_TOKEN`, `_SECRET` or `_PASSWORD`.
    pub secret_env: BTreeSet<String>,
    /// Adopt mode, when the table has `pidfile`.
    pub adopt: Option<Adopt>,
    /// Sent to stop the worker (default TERM).
    pub stop_signal: StopSignal,
    /// How long after `stop_signal` the whole incarnation gets SIGKILL
    /// (default 10 s, at most 10 minutes).
    pub stop_timeout: Duration,
    /// When it is started again after it exits.
    pub restart: RestartMode,
    /// The restart cap (default 2, as `--max-restarts`).
    pub max_restarts: u32,
    /// The base of the backoff (default 5 s, as `--restart-delay`).
    pub restart_delay: Duration,
    /// The most the backoff waits (default 300 s, as `--max-restart-delay`).
    pub max_restart_delay: Duration,
    /// A run this long resets the attempts (default 600 s, as `--stable-after`).
    pub stable_after: Duration,
    /// Worker ids (every instance of a named worker) that must be running,
    /// and ready if they have `ready`, before this one starts. Sorted.
    pub depends_on: BTreeSet<String>,
    /// The health probe.
    pub health: Option<Probe>,
    /// The readiness probe.
    pub ready: Option<Probe>,
    /// Where stdout and stderr go (absolute); `None`: the default,
    /// `<state_dir>/logs/<id>.log`.
    pub log: Option<PathBuf>,
    /// The log is rotated when larger than this (default 10 MiB; 0: never).
    pub log_max_bytes: u64,
    /// Rotated logs kept (`<log>.1` … `<log>.N`, default 5).
    pub log_keep: u32,
}

impl ProgramSpec {
    /// Whether the value of `name` is never shown.
    pub fn is_secret(&self, name: &str) -> bool {
        self.secret_env.contains(name) || is_secret_by_name(name)
    }

    /// `env` as `KEY=VALUE` lines for display, secret values replaced by `***`.
    pub fn shown_env(&self) -> Vec<String> {
        self.env
            .iter()
            .map(|(k, v)| {
                if self.is_secret(k) {
                    format!("{k}=***")
                } else {
                    format!("{k}={v}")
                }
            })
            .collect()
    }
}

/// Names ending in `_KEY`, `_TOKEN`, `_SECRET` or `_PASSWORD` are secret by
/// default (ASCII case-insensitively).
pub fn is_secret_by_name(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    ["_KEY", "_TOKEN", "_SECRET", "_PASSWORD"]
        .iter()
        .any(|s| upper.ends_with(s))
        || ["KEY", "TOKEN", "SECRET", "PASSWORD"].contains(&upper.as_str())
}

/// A parsed and validated config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigFile {
    /// Its absolute path.
    pub path: PathBuf,
    /// Its name: the file stem (`pidwatch` for `pidwatch.toml`), used in the
    /// default state dir.
    pub name: String,
    /// `state_dir` (absolute) when given.
    pub state_dir: Option<PathBuf>,
    /// The workers, every instance expanded, sorted by id.
    pub workers: Vec<ProgramSpec>,
    /// The `[api]` table: who may use the control API and how; its
    /// defaults when the file has none.
    pub api: ApiConfig,
}

/// The `[api]` table: the TCP listener, who is trusted, and the limits of
/// heals (README, "Trust and audit"; [`crate::control::trust`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiConfig {
    /// `listen`: a TCP address to serve the API on too; `None`: the control
    /// socket only. A non-loopback address comes with a token.
    pub listen: Option<SocketAddr>,
    /// `token_file` (absolute), the file the token was read from.
    pub token_file: Option<PathBuf>,
    /// The bearer token, read (trimmed) from `token_file` at load.
    pub token: Option<Secret>,
    /// `trusted_callers`: caller ids (`X-Caller-Id`) that, with a valid
    /// credential, execute directly.
    pub trusted_callers: BTreeSet<String>,
    /// `secret_header` and the secret read (trimmed) from `secret_file`.
    pub secret: Option<SecretHeader>,
    /// `secret_file` (absolute).
    pub secret_file: Option<PathBuf>,
    /// `heal_max`: heals allowed per `heal_window` (default 1).
    pub heal_max: u32,
    /// `heal_window` (default 5 minutes).
    pub heal_window: Duration,
    /// `post_heal`: a self-test run after each executed heal.
    pub post_heal: Option<ProgramCommand>,
    /// `post_heal_timeout` (default 60 s).
    pub post_heal_timeout: Duration,
    /// `challenge_ttl`: how long a confirmation challenge is good for
    /// (default 120 s, at most an hour).
    pub challenge_ttl: Duration,
}

impl Default for ApiConfig {
    fn default() -> ApiConfig {
        ApiConfig {
            listen: None,
            token_file: None,
            token: None,
            trusted_callers: BTreeSet::new(),
            secret: None,
            secret_file: None,
            heal_max: crate::control::ratelimit::DEFAULT_HEAL_MAX,
            heal_window: crate::control::ratelimit::DEFAULT_HEAL_WINDOW,
            post_heal: None,
            post_heal_timeout: parse::DEFAULT_POST_HEAL_TIMEOUT,
            challenge_ttl: crate::control::challenges::DEFAULT_TTL,
        }
    }
}

/// One problem in a config file, located.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file.
    pub file: PathBuf,
    /// 1-based line, 0 when unknown.
    pub line: usize,
    /// 1-based column (in characters), 0 when unknown.
    pub column: usize,
    /// The field's path, e.g. `worker.code.stop_timeout`; empty for the file.
    pub field: String,
    /// What is wrong, with any quoted input bounded and escaped.
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    /// `file:line:col: field: message`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

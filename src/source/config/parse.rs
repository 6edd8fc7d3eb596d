//! Parsing and validation of `pidwatch.toml`: from text to [`ConfigFile`],
//! or every problem at once, each located to the line and column of the
//! offending value (or key).
//!
//! The file is read with toml's span-preserving [`DeTable`], so that a
//! position is the exact place in the text. Parsing is three steps: each
//! table is read into a `Raw` of checked values that keep their spans
//! (`[defaults]` too); `[defaults]` is applied under each worker; each
//! instance is expanded into a [`ProgramSpec`], and `depends_on` resolved
//! and checked for cycles.
//!
//! `[defaults]` takes every worker key but those that name one program
//! (`command`, `start`, `stop`, `pidfile`, `match`, `instances`) and
//! `depends_on`. A worker's key replaces the default's, except for `env`
//! (merged, the worker's entries win), `secret_env` (united), and the keys
//! of `health` and `ready`, which are merged key by key: a default
//! `health.interval` applies to every worker that has a health probe, and a
//! default `health.command` gives every worker one.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::ops::Range;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use nix::sys::signal::Signal;
use toml::Spanned;
use toml::de::{DeInteger, DeTable, DeValue};

use super::expand::{self, Vars};
use super::{
    Adopt, ApiConfig, ConfigError, ConfigFile, ParseContext, Probe, ProgramCommand, ProgramSpec,
    RestartMode, StopSignal, is_secret_by_name,
};
use crate::control::trust::{self, Secret, SecretHeader};

/// The most a config file or an `env_file` may hold: 1 MiB.
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// Default `stop_timeout`: 10 s.
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// The most `stop_timeout` may be: 600 s.
pub const MAX_STOP_TIMEOUT: Duration = Duration::from_secs(600);
/// Default `max_restarts`: 2.
pub const DEFAULT_MAX_RESTARTS: u32 = 2;
/// Default `restart_delay`: 5 s.
pub const DEFAULT_RESTART_DELAY: Duration = Duration::from_secs(5);
/// Default `max_restart_delay`: 300 s.
pub const DEFAULT_MAX_RESTART_DELAY: Duration = Duration::from_secs(300);
/// Default `stable_after`: 600 s.
pub const DEFAULT_STABLE_AFTER: Duration = Duration::from_secs(600);
/// Default `health.interval`: 10 s.
pub const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(10);
/// Default `ready.interval`: 1 s.
pub const DEFAULT_READY_INTERVAL: Duration = Duration::from_secs(1);
/// Default probe `timeout`: 5 s.
pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// Default `health.retries`: 3.
pub const DEFAULT_PROBE_RETRIES: u32 = 3;
/// Default `log_max_bytes`: 10 MiB.
pub const DEFAULT_LOG_MAX_BYTES: u64 = 10 << 20;
/// Default `log_keep`: 5.
pub const DEFAULT_LOG_KEEP: u32 = 5;
/// The most instances a number `instances` may ask for.
pub const MAX_INSTANCES: u32 = 1000;

/// Default `api.post_heal_timeout`: 60 s.
pub const DEFAULT_POST_HEAL_TIMEOUT: Duration = Duration::from_secs(60);
/// The most `api.challenge_ttl` may be: an hour.
pub const MAX_CHALLENGE_TTL: Duration = Duration::from_secs(3600);
/// The most a `token_file` or `secret_file` may hold: 4 KiB.
pub const MAX_SECRET_BYTES: u64 = 4096;

/// The top-level keys.
pub const TOP_KEYS: &[&str] = &["state_dir", "api", "defaults", "worker"];
/// The keys of the `[api]` table.
pub const API_KEYS: &[&str] = &[
    "listen",
    "token_file",
    "trusted_callers",
    "secret_header",
    "secret_file",
    "heal_max",
    "heal_window",
    "post_heal",
    "post_heal_timeout",
    "challenge_ttl",
];
/// Headers HTTP or the control API use, which `secret_header` may not name.
pub const RESERVED_HEADERS: &[&str] = &[
    "authorization",
    "connection",
    "content-length",
    "content-type",
    "cookie",
    "host",
    "transfer-encoding",
    trust::HEADER_CALLER_ID,
    trust::HEADER_CONFIRMED,
];
/// The keys of a `[worker.<name>]` table.
pub const WORKER_KEYS: &[&str] = &[
    "command",
    "cwd",
    "env",
    "env_file",
    "secret_env",
    "instances",
    "pidfile",
    "match",
    "start",
    "stop",
    "stop_signal",
    "stop_timeout",
    "restart",
    "max_restarts",
    "restart_delay",
    "max_restart_delay",
    "stable_after",
    "depends_on",
    "health",
    "ready",
    "log",
    "log_max_bytes",
    "log_keep",
];
/// The worker keys that `[defaults]` refuses.
pub const NOT_IN_DEFAULTS: &[&str] = &[
    "command",
    "instances",
    "pidfile",
    "match",
    "start",
    "stop",
    "depends_on",
];
/// The keys of a `health` or `ready` table.
pub const PROBE_KEYS: &[&str] = &["command", "interval", "timeout", "retries"];

type Span = Range<usize>;
type Value<'i> = Spanned<DeValue<'i>>;

/// Reads and parses the config file at `path` (made absolute against the
/// current directory when relative).
///
/// # Errors
///
/// Every problem of the file (see [`parse`]); a file that cannot be read,
/// is not a regular file, is larger than 1 MiB or is not UTF-8 is one
/// [`ConfigError`] with line 0.
pub fn load(path: &Path, ctx: &ParseContext) -> Result<ConfigFile, Vec<ConfigError>> {
    let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    match read_bounded(&path) {
        Ok(text) => parse(&text, &path, ctx),
        Err(message) => Err(vec![ConfigError {
            file: path,
            line: 0,
            column: 0,
            field: String::new(),
            message,
        }]),
    }
}

/// Reads a regular file of at most [`MAX_FILE_BYTES`] as UTF-8 text; the
/// error message names what failed, not the path.
fn read_bounded(path: &Path) -> Result<String, String> {
    // O_NONBLOCK: opening a FIFO must not wait for a writer; it is then
    // refused as not a regular file.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| format!("cannot open: {e}"))?;
    let meta = file.metadata().map_err(|e| format!("cannot stat: {e}"))?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read: {e}"))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(format!("larger than {MAX_FILE_BYTES} bytes"));
    }
    String::from_utf8(bytes).map_err(|_| "not UTF-8 text".into())
}

/// Parses and validates the text of a config file; `path` is its absolute
/// path (relative paths in the file resolve against its folder, and errors
/// name it).
///
/// # Errors
///
/// Every problem found, sorted by position: a TOML syntax error alone, or
/// all the unknown keys, wrong types, bad values, unknown dependencies and
/// cycles of every worker.
pub fn parse(text: &str, path: &Path, ctx: &ParseContext) -> Result<ConfigFile, Vec<ConfigError>> {
    let mut cx = Cx::new(text, path, ctx);
    let doc = match DeTable::parse(text) {
        Ok(doc) => doc,
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            cx.error(&span, "", sanitize(e.message().trim()));
            return Err(cx.errors);
        }
    };
    let (state_dir, api, workers) = cx.file(doc.get_ref());
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    if cx.errors.is_empty() {
        Ok(ConfigFile {
            path: path.to_path_buf(),
            name,
            state_dir,
            workers,
            api,
        })
    } else {
        let mut errors = cx.errors;
        errors.sort_by(|a, b| {
            (a.file != path, &a.file, a.line, a.column).cmp(&(
                b.file != path,
                &b.file,
                b.line,
                b.column,
            ))
        });
        let mut seen = BTreeSet::new();
        errors.retain(|e| seen.insert(e.to_string()));
        Err(errors)
    }
}

/// Reads a secret from the file at `path`: a regular file (a FIFO is never
/// waited on), with no permission for group or others, of at most
/// [`MAX_SECRET_BYTES`], holding printable ASCII once trimmed (it goes in
/// an HTTP header). The mode is read from the open file, so the file
/// checked is the file read. The message names what is wrong, never the
/// content.
fn read_secret(path: &Path) -> Result<Secret, String> {
    use std::os::unix::fs::PermissionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| format!("cannot open: {e}"))?;
    let meta = file.metadata().map_err(|e| format!("cannot stat: {e}"))?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "mode {mode:04o} lets group or others at it; it must be the owner's only \
             (chmod 600)"
        ));
    }
    let mut bytes = Vec::new();
    file.take(MAX_SECRET_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read: {e}"))?;
    if bytes.len() as u64 > MAX_SECRET_BYTES {
        return Err(format!("larger than {MAX_SECRET_BYTES} bytes"));
    }
    let secret = bytes.trim_ascii();
    if secret.is_empty() {
        return Err("empty".into());
    }
    if !secret.iter().all(|b| (0x20..0x7f).contains(b)) {
        return Err("not printable ASCII text (it is sent in an HTTP header)".into());
    }
    Ok(Secret::new(secret))
}

/// A checked value and where it was written.
#[derive(Debug, Clone)]
struct At<T> {
    value: T,
    span: Span,
    field: String,
}

/// What `instances` asks for.
#[derive(Debug, Clone)]
enum Instances {
    Count(u32),
    Names(Vec<String>),
    Glob(String),
}

/// A `health` or `ready` table, checked.
#[derive(Debug, Clone, Default)]
struct RawProbe {
    command: Option<At<ProgramCommand>>,
    interval: Option<Duration>,
    timeout: Option<Duration>,
    retries: Option<u32>,
    /// Whether `command` was written (even with a bad value).
    command_given: bool,
    /// Where the table was written, and its field path.
    at: Option<At<()>>,
}

/// A worker table (or `[defaults]`), every value checked, nothing applied
/// or expanded yet.
#[derive(Debug, Clone, Default)]
struct Raw {
    command: Option<At<ProgramCommand>>,
    start: Option<At<ProgramCommand>>,
    stop: Option<At<ProgramCommand>>,
    cwd: Option<At<String>>,
    env_file: Option<At<String>>,
    pidfile: Option<At<String>>,
    matches: Option<At<String>>,
    log: Option<At<String>>,
    env: Vec<(String, At<String>)>,
    secret_env: BTreeSet<String>,
    instances: Option<At<Instances>>,
    stop_signal: Option<StopSignal>,
    stop_timeout: Option<Duration>,
    restart: Option<RestartMode>,
    max_restarts: Option<u32>,
    restart_delay: Option<Duration>,
    max_restart_delay: Option<Duration>,
    stable_after: Option<Duration>,
    depends_on: Option<At<Vec<At<String>>>>,
    health: Option<RawProbe>,
    ready: Option<RawProbe>,
    log_max_bytes: Option<u64>,
    log_keep: Option<u32>,
    /// The keys written in the table, even those with bad values.
    given: BTreeSet<String>,
}

impl Raw {
    /// `self` (a worker) over `defaults`.
    fn over(self, d: &Raw) -> Raw {
        let mut env = d.env.clone();
        for (k, v) in self.env {
            set_env(&mut env, k, v);
        }
        Raw {
            command: self.command,
            start: self.start,
            stop: self.stop,
            pidfile: self.pidfile,
            matches: self.matches,
            instances: self.instances,
            depends_on: self.depends_on,
            cwd: self.cwd.or_else(|| d.cwd.clone()),
            env_file: self.env_file.or_else(|| d.env_file.clone()),
            log: self.log.or_else(|| d.log.clone()),
            env,
            secret_env: self.secret_env.union(&d.secret_env).cloned().collect(),
            stop_signal: self.stop_signal.or_else(|| d.stop_signal.clone()),
            stop_timeout: self.stop_timeout.or(d.stop_timeout),
            restart: self.restart.or(d.restart),
            max_restarts: self.max_restarts.or(d.max_restarts),
            restart_delay: self.restart_delay.or(d.restart_delay),
            max_restart_delay: self.max_restart_delay.or(d.max_restart_delay),
            stable_after: self.stable_after.or(d.stable_after),
            health: merge_probe(self.health, d.health.as_ref()),
            ready: merge_probe(self.ready, d.ready.as_ref()),
            log_max_bytes: self.log_max_bytes.or(d.log_max_bytes),
            log_keep: self.log_keep.or(d.log_keep),
            given: self.given,
        }
    }
}

/// A worker's probe over the default one, key by key; a probe exists when
/// either has one.
fn merge_probe(w: Option<RawProbe>, d: Option<&RawProbe>) -> Option<RawProbe> {
    match (w, d) {
        (None, None) => None,
        (Some(w), None) => Some(w),
        (None, Some(d)) => d.command.is_some().then(|| d.clone()),
        (Some(w), Some(d)) => Some(RawProbe {
            command: w.command.or_else(|| d.command.clone()),
            interval: w.interval.or(d.interval),
            timeout: w.timeout.or(d.timeout),
            retries: w.retries.or(d.retries),
            command_given: w.command_given || d.command_given,
            at: w.at,
        }),
    }
}

/// Sets `key` in `env`, in place when it is there already.
fn set_env<V>(env: &mut Vec<(String, V)>, key: String, value: V) {
    match env.iter_mut().find(|(k, _)| *k == key) {
        Some(slot) => slot.1 = value,
        None => env.push((key, value)),
    }
}

/// A worker table after `[defaults]`, with its instances.
struct Worker {
    name: String,
    /// Where its name was written.
    name_span: Span,
    raw: Raw,
    /// `(instance, file)` of each instance; `None` when `instances` is bad.
    instances: Option<Vec<(Option<String>, Option<PathBuf>)>>,
}

/// The parse in progress: the text, where it came from, and the errors so
/// far.
struct Cx<'a> {
    text: &'a str,
    file: &'a Path,
    base: PathBuf,
    ctx: &'a ParseContext,
    line_starts: Vec<usize>,
    errors: Vec<ConfigError>,
}

impl<'a> Cx<'a> {
    fn new(text: &'a str, file: &'a Path, ctx: &'a ParseContext) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Cx {
            text,
            file,
            base: file.parent().unwrap_or(Path::new("/")).to_path_buf(),
            ctx,
            line_starts,
            errors: Vec::new(),
        }
    }

    /// 1-based line and column (in characters) of a byte offset.
    fn position(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&s| s <= offset).max(1);
        let start = self.line_starts[line - 1];
        let column = self
            .text
            .get(start..offset)
            .map_or(0, |s| s.chars().count())
            + 1;
        (line, column)
    }

    fn error(&mut self, span: &Span, field: &str, message: impl Into<String>) {
        let (line, column) = self.position(span.start);
        self.errors.push(ConfigError {
            file: self.file.to_path_buf(),
            line,
            column,
            field: field.to_string(),
            message: message.into(),
        });
    }

    /// The value of `r`, or `None` after reporting its error.
    fn check<T>(&mut self, r: Result<T, Bad>, field: &str) -> Option<T> {
        r.map_err(|bad| self.error(&bad.0, field, bad.1)).ok()
    }

    fn unknown_key(
        &mut self,
        key: &Spanned<std::borrow::Cow<'_, str>>,
        field: &str,
        known: &[&str],
    ) {
        let name = key.get_ref().as_ref();
        let mut message = format!("unknown key {}", code(name));
        if let Some(near) = closest(name, known) {
            message.push_str(&format!("; did you mean `{near}`?"));
        }
        self.error(&key.span(), field, message);
    }

    /// The whole file: `state_dir`, `[api]` and the workers.
    fn file(&mut self, doc: &DeTable<'_>) -> (Option<PathBuf>, ApiConfig, Vec<ProgramSpec>) {
        let mut state_dir = None;
        let mut api = ApiConfig::default();
        let mut defaults = Raw::default();
        let mut workers_table = None;
        for (key, value) in doc {
            let name = key.get_ref().as_ref();
            match name {
                "state_dir" => {
                    let field = "state_dir";
                    if let Some(s) = self.check(string(value), field) {
                        let resolved = expand::resolve_path(&s, &self.base, self.home());
                        state_dir = self.check(resolved.map_err(|m| Bad(value.span(), m)), field);
                    }
                }
                "api" => {
                    if let Some(t) = self.check(table(value), "api") {
                        api = self.api(t);
                    }
                }
                "defaults" => {
                    if let Some(t) = self.check(table(value), "defaults") {
                        defaults = self.raw(t, "defaults", true, &BTreeSet::new());
                    }
                }
                "worker" => workers_table = self.check(table(value), "worker"),
                _ => self.unknown_key(key, &field_of("", name), TOP_KEYS),
            }
        }
        let mut workers = Vec::new();
        for (key, value) in workers_table.into_iter().flatten() {
            let name = key.get_ref().as_ref();
            let field = field_of("worker", name);
            let valid = expand::is_valid_name(name);
            if !valid {
                self.error(
                    &key.span(),
                    &field,
                    format!(
                        "invalid worker name {}: use letters, digits, `_`, `.` and `-` (not `@`)",
                        quote(name)
                    ),
                );
            }
            let Some(t) = self.check(worker_table(value), &field) else {
                continue;
            };
            let raw = self
                .raw(t, &field, false, &defaults.secret_env)
                .over(&defaults);
            if valid {
                let instances = self.instances(raw.instances.as_ref());
                workers.push(Worker {
                    name: name.to_string(),
                    name_span: key.span(),
                    raw,
                    instances,
                });
            }
        }
        let mut specs = Vec::new();
        let mut depends = BTreeMap::new();
        for w in &workers {
            for (instance, file) in w.instances.iter().flatten() {
                if let Some(spec) = self.spec(w, instance.as_deref(), file.as_deref()) {
                    depends.insert(spec.id.clone(), w.raw.depends_on.clone());
                    specs.push(spec);
                }
            }
        }
        self.depends_on(&workers, &mut specs, &depends);
        specs.sort_by(|a, b| a.id.cmp(&b.id));
        (state_dir, api, specs)
    }

    /// The `[api]` table; a bad value is reported and its default kept.
    fn api(&mut self, t: &DeTable<'_>) -> ApiConfig {
        let mut api = ApiConfig::default();
        let mut listen: Option<At<std::net::SocketAddr>> = None;
        let mut token_file: Option<At<String>> = None;
        let mut secret_header: Option<At<String>> = None;
        let mut secret_file: Option<At<String>> = None;
        let mut given = BTreeSet::new();
        let no_instance = Vars {
            instance: None,
            file: None,
            host: &self.ctx.host,
        };
        for (key, v) in t {
            let name = key.get_ref().as_ref();
            let field = field_of("api", name);
            let f = field.as_str();
            given.insert(name.to_string());
            match name {
                "listen" => listen = self.check(socket_addr(v), f).map(at_of(v, f)),
                "token_file" => token_file = self.check(string(v), f).map(at_of(v, f)),
                "secret_file" => secret_file = self.check(string(v), f).map(at_of(v, f)),
                "secret_header" => secret_header = self.check(header_name(v), f).map(at_of(v, f)),
                "trusted_callers" => {
                    for id in self.check(string_list(v), f).into_iter().flatten() {
                        if trust::is_valid_caller_id(&id.value) {
                            api.trusted_callers.insert(id.value);
                        } else {
                            self.error(
                                &id.span,
                                f,
                                format!(
                                    "invalid caller id {}: 1 to {} visible ASCII characters, \
                                     no spaces",
                                    quote(&id.value),
                                    trust::MAX_CALLER_ID
                                ),
                            );
                        }
                    }
                }
                "heal_max" => {
                    if let Some(n) = self.check(uint(v, 1, u32::MAX.into()), f) {
                        api.heal_max = n as u32;
                    }
                }
                "heal_window" => {
                    if let Some(d) = self.check(duration(v, true, None), f) {
                        api.heal_window = d;
                    }
                }
                "post_heal" => {
                    if let Some(c) = self.check(command(v), f).map(at_of(v, f)) {
                        api.post_heal = self.expand_command(&c, &no_instance);
                    }
                }
                "post_heal_timeout" => {
                    if let Some(d) = self.check(duration(v, true, None), f) {
                        api.post_heal_timeout = d;
                    }
                }
                "challenge_ttl" => {
                    if let Some(d) = self.check(duration(v, true, Some(MAX_CHALLENGE_TTL)), f) {
                        api.challenge_ttl = d;
                    }
                }
                _ => self.unknown_key(key, f, API_KEYS),
            }
        }
        if let Some(at) = &token_file
            && let Some((path, secret)) = self.secret_file(at)
        {
            api.token_file = Some(path);
            api.token = Some(secret);
        }
        match (&secret_header, &secret_file) {
            (Some(header), Some(file)) => {
                if let Some((path, secret)) = self.secret_file(file) {
                    api.secret_file = Some(path);
                    api.secret = Some(SecretHeader {
                        name: header.value.clone(),
                        secret,
                    });
                }
            }
            (Some(header), None) if !given.contains("secret_file") => {
                self.error(
                    &header.span,
                    &header.field,
                    "`secret_header` needs `secret_file`",
                );
            }
            (None, Some(file)) if !given.contains("secret_header") => {
                self.error(
                    &file.span,
                    &file.field,
                    "`secret_file` needs `secret_header`",
                );
            }
            _ => {}
        }
        if let Some(at) = listen {
            if !at.value.ip().to_canonical().is_loopback() && !given.contains("token_file") {
                self.error(
                    &at.span,
                    &at.field,
                    format!(
                        "plain HTTP only on loopback: a non-loopback listen ({}) needs token_file",
                        at.value
                    ),
                );
            }
            api.listen = Some(at.value);
        }
        api
    }

    /// The secret in the file `at` names (its path resolved): the file
    /// must be a regular file of at most [`MAX_SECRET_BYTES`], readable by
    /// its owner only, holding printable ASCII (trimmed); `None` after
    /// reporting. Its content is never quoted.
    fn secret_file(&mut self, at: &At<String>) -> Option<(PathBuf, Secret)> {
        let path = match expand::resolve_path(&at.value, &self.base, self.home()) {
            Ok(path) => path,
            Err(m) => {
                self.error(&at.span, &at.field, m);
                return None;
            }
        };
        match read_secret(&path) {
            Ok(secret) => Some((path, secret)),
            Err(m) => {
                self.error(
                    &at.span,
                    &at.field,
                    format!("{}: {m}", quote(&path.display().to_string())),
                );
                None
            }
        }
    }

    fn home(&self) -> Option<&'a Path> {
        self.ctx.home.as_deref()
    }

    /// Reads one worker table (or `[defaults]`); `secret` holds the names
    /// already secret (from `[defaults]`).
    fn raw(
        &mut self,
        t: &DeTable<'_>,
        prefix: &str,
        in_defaults: bool,
        secret: &BTreeSet<String>,
    ) -> Raw {
        let mut raw = Raw::default();
        let mut secret = secret.clone();
        if let Some((_, v)) = t.iter().find(|(k, _)| k.get_ref() == "secret_env")
            && let Ok(names) = string_list(v)
        {
            secret.extend(names.into_iter().map(|n| n.value));
        }
        for (key, v) in t {
            let name = key.get_ref().as_ref();
            let field = field_of(prefix, name);
            let f = field.as_str();
            raw.given.insert(name.to_string());
            if in_defaults && NOT_IN_DEFAULTS.contains(&name) {
                self.error(
                    &key.span(),
                    f,
                    format!("`{name}` cannot be in [defaults]: set it in each [worker.<name>]"),
                );
                continue;
            }
            match name {
                "command" => raw.command = self.check(command(v), f).map(at_of(v, f)),
                "start" => raw.start = self.check(command(v), f).map(at_of(v, f)),
                "stop" => raw.stop = self.check(command(v), f).map(at_of(v, f)),
                "cwd" => raw.cwd = self.check(string(v), f).map(at_of(v, f)),
                "env_file" => raw.env_file = self.check(string(v), f).map(at_of(v, f)),
                "pidfile" => raw.pidfile = self.check(string(v), f).map(at_of(v, f)),
                "log" => raw.log = self.check(string(v), f).map(at_of(v, f)),
                "match" => raw.matches = self.check(regex(v), f).map(at_of(v, f)),
                "env" => raw.env = self.env(v, f, &secret),
                "secret_env" => {
                    if let Some(names) = self.check(string_list(v), f) {
                        for n in names {
                            if expand::is_valid_env_name(&n.value) {
                                raw.secret_env.insert(n.value);
                            } else {
                                self.error(&n.span, f, bad_env_name(&n.value));
                            }
                        }
                    }
                }
                "instances" => raw.instances = self.check(instances(v), f).map(at_of(v, f)),
                "stop_signal" => raw.stop_signal = self.check(signal(v), f),
                "stop_timeout" => {
                    raw.stop_timeout = self.check(duration(v, false, Some(MAX_STOP_TIMEOUT)), f);
                }
                "restart" => raw.restart = self.check(restart(v), f),
                "max_restarts" => {
                    raw.max_restarts = self.check(uint(v, 0, u32::MAX.into()), f).map(|n| n as u32)
                }
                "restart_delay" => raw.restart_delay = self.check(duration(v, false, None), f),
                "max_restart_delay" => {
                    raw.max_restart_delay = self.check(duration(v, false, None), f)
                }
                "stable_after" => raw.stable_after = self.check(duration(v, false, None), f),
                "depends_on" => raw.depends_on = self.check(string_list(v), f).map(at_of(v, f)),
                "health" => raw.health = self.probe(v, f),
                "ready" => raw.ready = self.probe(v, f),
                "log_max_bytes" => raw.log_max_bytes = self.check(size(v), f),
                "log_keep" => {
                    raw.log_keep = self.check(uint(v, 0, u32::MAX.into()), f).map(|n| n as u32)
                }
                _ => {
                    let known: Vec<&str> = WORKER_KEYS
                        .iter()
                        .copied()
                        .filter(|k| !in_defaults || !NOT_IN_DEFAULTS.contains(k))
                        .collect();
                    self.unknown_key(key, f, &known);
                }
            }
        }
        raw
    }

    fn env(
        &mut self,
        v: &Value<'_>,
        field: &str,
        secret: &BTreeSet<String>,
    ) -> Vec<(String, At<String>)> {
        let Some(t) = self.check(table(v), field) else {
            return Vec::new();
        };
        let mut env = Vec::new();
        for (key, value) in t {
            let name = key.get_ref().as_ref();
            let f = field_of(field, name);
            if !expand::is_valid_env_name(name) {
                self.error(&key.span(), &f, bad_env_name(name));
                continue;
            }
            let is_secret = secret.contains(name) || is_secret_by_name(name);
            match value.get_ref() {
                DeValue::String(s) => set_env(
                    &mut env,
                    name.to_string(),
                    At {
                        value: s.to_string(),
                        span: value.span(),
                        field: f,
                    },
                ),
                other if is_secret => {
                    self.error(
                        &value.span(),
                        &f,
                        format!("expected a string, found {}", kind(other)),
                    );
                }
                other => self.error(
                    &value.span(),
                    &f,
                    format!("expected a string, found {}", describe(other)),
                ),
            }
        }
        env
    }

    fn probe(&mut self, v: &Value<'_>, field: &str) -> Option<RawProbe> {
        let t = self.check(table(v), field)?;
        let mut probe = RawProbe {
            at: Some(At {
                value: (),
                span: v.span(),
                field: field.to_string(),
            }),
            ..RawProbe::default()
        };
        for (key, v) in t {
            let name = key.get_ref().as_ref();
            let f = field_of(field, name);
            match name {
                "command" => {
                    probe.command_given = true;
                    probe.command = self.check(command(v), &f).map(|value| At {
                        value,
                        span: v.span(),
                        field: f.clone(),
                    });
                }
                "interval" => probe.interval = self.check(duration(v, true, None), &f),
                "timeout" => probe.timeout = self.check(duration(v, true, None), &f),
                "retries" => {
                    probe.retries = self
                        .check(uint(v, 1, u32::MAX.into()), &f)
                        .map(|n| n as u32)
                }
                _ => self.unknown_key(key, &f, PROBE_KEYS),
            }
        }
        Some(probe)
    }

    /// The `(instance, file)` pairs of a worker; `None` after an error.
    fn instances(
        &mut self,
        i: Option<&At<Instances>>,
    ) -> Option<Vec<(Option<String>, Option<PathBuf>)>> {
        let Some(i) = i else {
            return Some(vec![(None, None)]);
        };
        match &i.value {
            Instances::Count(n) => Some((1..=*n).map(|k| (Some(k.to_string()), None)).collect()),
            Instances::Names(names) => {
                Some(names.iter().map(|n| (Some(n.clone()), None)).collect())
            }
            Instances::Glob(pattern) => {
                match expand::glob_instances(pattern, &self.base, self.home()) {
                    Ok(found) => Some(found.into_iter().map(|(n, f)| (Some(n), Some(f))).collect()),
                    Err(m) => {
                        self.error(&i.span, &i.field, m);
                        None
                    }
                }
            }
        }
    }

    /// `text` expanded for one instance, or `None` after reporting.
    fn expand(&mut self, at: &At<String>, vars: &Vars<'_>) -> Option<String> {
        self.expand_str(&at.value, &at.span, &at.field, vars)
    }

    fn expand_str(
        &mut self,
        text: &str,
        span: &Span,
        field: &str,
        vars: &Vars<'_>,
    ) -> Option<String> {
        match expand::expand(text, vars) {
            Ok(s) => Some(s),
            Err(e) => {
                self.error(span, field, e.to_string());
                None
            }
        }
    }

    fn expand_command(
        &mut self,
        at: &At<ProgramCommand>,
        vars: &Vars<'_>,
    ) -> Option<ProgramCommand> {
        match &at.value {
            ProgramCommand::Shell(s) => self
                .expand_str(s, &at.span, &at.field, vars)
                .map(ProgramCommand::Shell),
            ProgramCommand::Argv(argv) => {
                let out: Vec<Option<String>> = argv
                    .iter()
                    .map(|a| self.expand_str(a, &at.span, &at.field, vars))
                    .collect();
                out.into_iter()
                    .collect::<Option<Vec<_>>>()
                    .map(ProgramCommand::Argv)
            }
        }
    }

    /// A path value expanded and made absolute.
    fn path(&mut self, at: &At<String>, vars: &Vars<'_>) -> Option<PathBuf> {
        let s = self.expand(at, vars)?;
        match expand::resolve_path(&s, &self.base, self.home()) {
            Ok(p) => Some(p),
            Err(m) => {
                self.error(&at.span, &at.field, m);
                None
            }
        }
    }

    fn probe_spec(
        &mut self,
        p: Option<&RawProbe>,
        vars: &Vars<'_>,
        ready: bool,
    ) -> Option<Option<Probe>> {
        let Some(p) = p else {
            return Some(None);
        };
        let Some(cmd) = &p.command else {
            if let (Some(at), false) = (&p.at, p.command_given) {
                self.error(&at.span, &at.field, "missing `command`");
            }
            return None;
        };
        let command = self.expand_command(cmd, vars)?;
        Some(Some(Probe {
            command,
            interval: p.interval.unwrap_or(if ready {
                DEFAULT_READY_INTERVAL
            } else {
                DEFAULT_HEALTH_INTERVAL
            }),
            timeout: p.timeout.unwrap_or(DEFAULT_PROBE_TIMEOUT),
            retries: p.retries.unwrap_or(DEFAULT_PROBE_RETRIES),
        }))
    }

    /// One instance of a worker, `depends_on` not yet resolved; `None`
    /// after reporting what is wrong.
    fn spec(
        &mut self,
        w: &Worker,
        instance: Option<&str>,
        file: Option<&Path>,
    ) -> Option<ProgramSpec> {
        let r = &w.raw;
        let vars = Vars {
            instance,
            file,
            host: &self.ctx.host,
        };
        let field = field_of("worker", &w.name);
        let mut ok = true;
        let mut opt_cmd = |cx: &mut Self, c: &Option<At<ProgramCommand>>| match c {
            Some(c) => match cx.expand_command(c, &vars) {
                Some(c) => Some(c),
                None => {
                    ok = false;
                    None
                }
            },
            None => None,
        };
        let command = opt_cmd(self, &r.command);
        let start = opt_cmd(self, &r.start);
        let stop = opt_cmd(self, &r.stop);
        let adopt = match &r.pidfile {
            Some(pidfile) => {
                let pidfile = self.path(pidfile, &vars);
                let start = start.or_else(|| command.clone());
                if !r.given.contains("start") && !r.given.contains("command") {
                    self.error(
                        &w.name_span,
                        &field,
                        "adopt mode (`pidfile`) needs `start` or `command`",
                    );
                }
                // `%i`, `%f` and `%h` in `match` stand for themselves:
                // expanded regex-escaped, so that a match can name its
                // instance (`-n %i@`) whatever characters the name has.
                let escaped = (
                    instance.map(regex::escape),
                    file.map(|f| PathBuf::from(regex::escape(&f.to_string_lossy()))),
                    regex::escape(&self.ctx.host),
                );
                let regex_vars = Vars {
                    instance: escaped.0.as_deref(),
                    file: escaped.1.as_deref(),
                    host: &escaped.2,
                };
                let matches = match &r.matches {
                    Some(m) => self.expand_str(&m.value, &m.span, &m.field, &regex_vars),
                    None => start.as_ref().map(|s| regex::escape(&s.program_name())),
                };
                match (pidfile, start, matches) {
                    (Some(pidfile), Some(start), Some(matches)) => Some(Adopt {
                        pidfile,
                        matches,
                        start,
                        stop,
                    }),
                    _ => {
                        ok = false;
                        None
                    }
                }
            }
            None => {
                for (key, at) in [
                    ("start", r.start.as_ref().map(|a| &a.span)),
                    ("stop", r.stop.as_ref().map(|a| &a.span)),
                    ("match", r.matches.as_ref().map(|a| &a.span)),
                ] {
                    if let Some(span) = at {
                        self.error(
                            span,
                            &field_of(&field, key),
                            format!("`{key}` is for adopt mode and needs `pidfile`"),
                        );
                        ok = false;
                    }
                }
                None
            }
        };
        let command = match command.or_else(|| adopt.as_ref().map(|a| a.start.clone())) {
            Some(c) => c,
            None => {
                if !r.given.contains("command") && !r.given.contains("pidfile") {
                    self.error(&w.name_span, &field, "missing `command`");
                }
                return None;
            }
        };
        let cwd = match &r.cwd {
            Some(cwd) => self.path(cwd, &vars),
            None => Some(self.base.clone()),
        };
        let mut env: Vec<(String, String)> = Vec::new();
        if let Some(env_file) = &r.env_file {
            match self
                .path(env_file, &vars)
                .map(|p| self.env_file(&p, env_file))
            {
                Some(Some(vars)) => {
                    for (k, v) in vars {
                        set_env(&mut env, k, v);
                    }
                }
                _ => ok = false,
            }
        }
        for (k, v) in &r.env {
            match self.expand(v, &vars) {
                Some(value) => set_env(&mut env, k.clone(), value),
                None => ok = false,
            }
        }
        let log = match &r.log {
            Some(log) => self.path(log, &vars).map(Some),
            None => Some(None),
        };
        let health = self.probe_spec(r.health.as_ref(), &vars, false);
        let ready = self.probe_spec(r.ready.as_ref(), &vars, true);
        let (Some(cwd), Some(log), Some(health), Some(ready), true) = (cwd, log, health, ready, ok)
        else {
            return None;
        };
        let secret_env = r
            .secret_env
            .iter()
            .cloned()
            .chain(
                env.iter()
                    .map(|(k, _)| k.clone())
                    .filter(|k| is_secret_by_name(k)),
            )
            .collect();
        Some(ProgramSpec {
            id: match instance {
                Some(i) => format!("{}@{i}", w.name),
                None => w.name.clone(),
            },
            name: w.name.clone(),
            instance: instance.map(str::to_string),
            file: file.map(Path::to_path_buf),
            command,
            cwd,
            env,
            secret_env,
            adopt,
            stop_signal: r.stop_signal.clone().unwrap_or(StopSignal {
                number: libc::SIGTERM,
                name: "TERM".into(),
            }),
            stop_timeout: r.stop_timeout.unwrap_or(DEFAULT_STOP_TIMEOUT),
            restart: r.restart.unwrap_or_default(),
            max_restarts: r.max_restarts.unwrap_or(DEFAULT_MAX_RESTARTS),
            restart_delay: r.restart_delay.unwrap_or(DEFAULT_RESTART_DELAY),
            max_restart_delay: r.max_restart_delay.unwrap_or(DEFAULT_MAX_RESTART_DELAY),
            stable_after: r.stable_after.unwrap_or(DEFAULT_STABLE_AFTER),
            depends_on: BTreeSet::new(),
            health,
            ready,
            log,
            log_max_bytes: r.log_max_bytes.unwrap_or(DEFAULT_LOG_MAX_BYTES),
            log_keep: r.log_keep.unwrap_or(DEFAULT_LOG_KEEP),
        })
    }

    /// The variables of an `env_file`; `None` after reporting. A bad line
    /// is reported in the env file itself, by line, never with its text.
    fn env_file(&mut self, path: &Path, at: &At<String>) -> Option<Vec<(String, String)>> {
        let text = match read_bounded(path) {
            Ok(text) => text,
            Err(m) => {
                self.error(
                    &at.span,
                    &at.field,
                    format!("{}: {m}", quote(&path.display().to_string())),
                );
                return None;
            }
        };
        let mut vars = Vec::new();
        let mut ok = true;
        for (n, line) in text.lines().enumerate() {
            match env_line(line) {
                Ok(Some((k, v))) => set_env(&mut vars, k, v),
                Ok(None) => {}
                Err(message) => {
                    ok = false;
                    self.errors.push(ConfigError {
                        file: path.to_path_buf(),
                        line: n + 1,
                        column: 1,
                        field: at.field.clone(),
                        message,
                    });
                }
            }
        }
        ok.then_some(vars)
    }

    /// Resolves every spec's `depends_on` into worker ids and reports
    /// unknown names and cycles.
    fn depends_on(
        &mut self,
        workers: &[Worker],
        specs: &mut [ProgramSpec],
        depends: &BTreeMap<String, Option<At<Vec<At<String>>>>>,
    ) {
        let ids: BTreeMap<&str, Option<Vec<String>>> = workers
            .iter()
            .map(|w| {
                let ids = w.instances.as_ref().map(|list| {
                    list.iter()
                        .map(|(i, _)| match i {
                            Some(i) => format!("{}@{i}", w.name),
                            None => w.name.clone(),
                        })
                        .collect()
                });
                (w.name.as_str(), ids)
            })
            .collect();
        let names: Vec<&str> = ids.keys().copied().collect();
        for spec in specs.iter_mut() {
            let Some(Some(list)) = depends.get(&spec.id) else {
                continue;
            };
            for dep in &list.value {
                let (name, instance) = match dep.value.split_once('@') {
                    Some((n, i)) => (n, Some(i)),
                    None => (dep.value.as_str(), None),
                };
                let Some(known) = ids.get(name) else {
                    let mut message = format!("unknown worker {}", quote(name));
                    if let Some(near) = closest(name, &names) {
                        message.push_str(&format!("; did you mean `{near}`?"));
                    }
                    self.error(&dep.span, &list.field, message);
                    continue;
                };
                // A worker whose instances are in error is reported there.
                let Some(known) = known else { continue };
                match instance {
                    None => spec.depends_on.extend(known.iter().cloned()),
                    Some(_) if known.contains(&dep.value) => {
                        spec.depends_on.insert(dep.value.clone());
                    }
                    Some(_) => self.error(
                        &dep.span,
                        &list.field,
                        format!(
                            "worker {} has no instance {}",
                            quote(name),
                            quote(&dep.value)
                        ),
                    ),
                }
            }
        }
        for cycle in cycles(specs) {
            let first = &cycle[0];
            let Some(Some(at)) = depends.get(first) else {
                continue;
            };
            let message = if cycle.len() == 1 {
                format!("`{first}` depends on itself")
            } else {
                format!(
                    "a dependency cycle among {}",
                    cycle
                        .iter()
                        .map(|c| format!("`{c}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            self.error(&at.span, &at.field, message);
        }
    }
}

/// The dependency cycles among `specs`: each strongly connected component
/// of more than one member, or of one that depends on itself, its members
/// sorted (Tarjan's algorithm).
fn cycles(specs: &[ProgramSpec]) -> Vec<Vec<String>> {
    struct Tarjan<'s> {
        edges: BTreeMap<&'s str, Vec<&'s str>>,
        index: BTreeMap<&'s str, usize>,
        low: BTreeMap<&'s str, usize>,
        stack: Vec<&'s str>,
        on_stack: BTreeSet<&'s str>,
        found: Vec<Vec<String>>,
    }
    impl<'s> Tarjan<'s> {
        fn visit(&mut self, v: &'s str) {
            let i = self.index.len();
            self.index.insert(v, i);
            self.low.insert(v, i);
            self.stack.push(v);
            self.on_stack.insert(v);
            for w in self.edges.get(v).cloned().unwrap_or_default() {
                if !self.edges.contains_key(w) {
                    continue;
                }
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let low = self.low[v].min(self.low[w]);
                    self.low.insert(v, low);
                } else if self.on_stack.contains(w) {
                    let low = self.low[v].min(self.index[w]);
                    self.low.insert(v, low);
                }
            }
            if self.low[v] == self.index[v] {
                let mut members = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(w);
                    members.push(w.to_string());
                    if w == v {
                        break;
                    }
                }
                let self_loop = self.edges[v].contains(&v);
                if members.len() > 1 || self_loop {
                    members.sort();
                    self.found.push(members);
                }
            }
        }
    }
    let mut t = Tarjan {
        edges: specs
            .iter()
            .map(|s| {
                (
                    s.id.as_str(),
                    s.depends_on.iter().map(String::as_str).collect(),
                )
            })
            .collect(),
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for s in specs {
        if !t.index.contains_key(s.id.as_str()) {
            t.visit(&s.id);
        }
    }
    t.found.sort();
    t.found
}

/// One line of an env file: `None` for a blank line or a comment.
fn env_line(line: &str) -> Result<Option<(String, String)>, String> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let line = line.strip_prefix("export ").map_or(line, str::trim_start);
    let Some((key, value)) = line.split_once('=') else {
        return Err("expected KEY=VALUE".into());
    };
    let key = key.trim();
    if !expand::is_valid_env_name(key) {
        return Err(bad_env_name(key));
    }
    let value = value.trim();
    let unquoted = match value.chars().next() {
        Some(q @ ('"' | '\'')) => {
            if value.len() >= 2 && value.ends_with(q) {
                &value[1..value.len() - 1]
            } else {
                return Err(format!("the value of `{key}` has no closing {q}"));
            }
        }
        _ => value,
    };
    Ok(Some((key.to_string(), unquoted.to_string())))
}

/// Wraps a checked value with where `v` was written.
fn at_of<T>(v: &Value<'_>, field: &str) -> impl FnOnce(T) -> At<T> {
    let span = v.span();
    let field = field.to_string();
    move |value| At { value, span, field }
}

/// A value's error: where and what.
struct Bad(Span, String);

fn bad<T>(v: &Value<'_>, expected: &str) -> Result<T, Bad> {
    Err(Bad(
        v.span(),
        format!("expected {expected}, found {}", describe(v.get_ref())),
    ))
}

fn string(v: &Value<'_>) -> Result<String, Bad> {
    match v.get_ref() {
        DeValue::String(s) => Ok(s.to_string()),
        _ => bad(v, "a string"),
    }
}

fn table<'v, 'i>(v: &'v Value<'i>) -> Result<&'v DeTable<'i>, Bad> {
    match v.get_ref() {
        DeValue::Table(t) => Ok(t),
        _ => bad(v, "a table"),
    }
}

fn worker_table<'v, 'i>(v: &'v Value<'i>) -> Result<&'v DeTable<'i>, Bad> {
    match v.get_ref() {
        DeValue::Table(t) => Ok(t),
        _ => bad(v, "a table ([worker.<name>])"),
    }
}

fn string_list(v: &Value<'_>) -> Result<Vec<At<String>>, Bad> {
    let DeValue::Array(items) = v.get_ref() else {
        return bad(v, "a list of strings");
    };
    items
        .iter()
        .map(|item| match item.get_ref() {
            DeValue::String(s) => Ok(At {
                value: s.to_string(),
                span: item.span(),
                field: String::new(),
            }),
            _ => bad(item, "a string"),
        })
        .collect()
}

fn command(v: &Value<'_>) -> Result<ProgramCommand, Bad> {
    match v.get_ref() {
        DeValue::String(s) if s.trim().is_empty() => bad(v, "a non-empty command"),
        DeValue::String(s) => Ok(ProgramCommand::Shell(s.to_string())),
        DeValue::Array(items) if items.is_empty() => bad(v, "a non-empty list"),
        DeValue::Array(items) => items
            .iter()
            .map(|item| match item.get_ref() {
                DeValue::String(s) => Ok(s.to_string()),
                _ => bad(item, "a string in the command's list"),
            })
            .collect::<Result<Vec<_>, _>>()
            .and_then(|argv| {
                if argv[0].is_empty() {
                    bad(&items[0], "a program name")
                } else {
                    Ok(ProgramCommand::Argv(argv))
                }
            }),
        _ => bad(v, "a list of strings or a string"),
    }
}

/// A socket address, `ADDR:PORT` (`"127.0.0.1:7070"`, `"[::1]:7070"`).
fn socket_addr(v: &Value<'_>) -> Result<std::net::SocketAddr, Bad> {
    let s = string(v)?;
    s.trim().parse().map_err(|_| {
        Bad(
            v.span(),
            format!(
                "expected ADDR:PORT with an IP address (\"127.0.0.1:7070\", \"[::1]:7070\"), \
                 found {}",
                quote(&s)
            ),
        )
    })
}

/// An HTTP header name that neither HTTP nor the control API uses, lowercase.
fn header_name(v: &Value<'_>) -> Result<String, Bad> {
    let s = string(v)?;
    let name = axum::http::HeaderName::from_bytes(s.as_bytes()).map_err(|_| {
        Bad(
            v.span(),
            format!(
                "invalid header name {}: letters, digits and `-`, e.g. \"X-Automation-Secret\"",
                quote(&s)
            ),
        )
    })?;
    if RESERVED_HEADERS.contains(&name.as_str()) {
        return Err(Bad(
            v.span(),
            format!(
                "{} is used by HTTP or the control API; choose another, e.g. \
                 \"X-Automation-Secret\"",
                code(&s)
            ),
        ));
    }
    Ok(name.as_str().to_string())
}

fn integer(i: &DeInteger<'_>) -> Option<i128> {
    i128::from_str_radix(&i.as_str().replace('_', ""), i.radix()).ok()
}

fn uint(v: &Value<'_>, min: u64, max: u64) -> Result<u64, Bad> {
    let expected = if max == u64::from(u32::MAX) {
        format!("an integer ≥ {min}")
    } else {
        format!("an integer from {min} to {max}")
    };
    match v.get_ref() {
        DeValue::Integer(i) => match integer(i) {
            Some(n) if n >= i128::from(min) && n <= i128::from(max) => Ok(n as u64),
            _ => bad(v, &expected),
        },
        _ => bad(v, &expected),
    }
}

/// A duration: seconds (an integer or a float ≥ 0), or a string with units
/// (`"500ms"`, `"10s"`, `"5m"`, `"1h 30m"`; a bare number is seconds).
fn duration(v: &Value<'_>, positive: bool, max: Option<Duration>) -> Result<Duration, Bad> {
    let d = match v.get_ref() {
        DeValue::Integer(i) => match integer(i) {
            Some(n) if n >= 0 => Duration::from_secs(u64::try_from(n).unwrap_or(u64::MAX)),
            _ => return bad(v, "seconds ≥ 0"),
        },
        DeValue::Float(f) => match f.as_str().replace('_', "").parse::<f64>() {
            Ok(x) if x >= 0.0 => Duration::try_from_secs_f64(x).or_else(|_| bad(v, "seconds"))?,
            _ => return bad(v, "seconds ≥ 0"),
        },
        DeValue::String(s) => {
            let s = s.trim();
            match s.parse::<f64>() {
                Ok(x) if x >= 0.0 => {
                    Duration::try_from_secs_f64(x).or_else(|_| bad(v, "seconds"))?
                }
                Ok(_) => return bad(v, "seconds ≥ 0"),
                Err(_) => humantime::parse_duration(s).or_else(|_| bad(v, "seconds"))?,
            }
        }
        _ => return bad(v, "seconds"),
    };
    if positive && d.is_zero() {
        return bad(v, "seconds > 0");
    }
    if let Some(max) = max
        && d > max
    {
        return bad(v, &format!("at most {} seconds", max.as_secs()));
    }
    Ok(d)
}

/// A size in bytes: an integer, or a string with a unit (`"512k"`,
/// `"10MiB"`, `"1G"`): `k`, `m`, `g` and `KiB`, `MiB`, `GiB` are powers of
/// 1024, `KB`, `MB`, `GB` powers of 1000, `B` or none bytes (ASCII
/// case-insensitively).
fn size(v: &Value<'_>) -> Result<u64, Bad> {
    const EXPECTED: &str =
        "a size in bytes (an integer ≥ 0, or a string like \"10MiB\" or \"512k\")";
    match v.get_ref() {
        DeValue::Integer(_) => uint(v, 0, u64::MAX).or_else(|_| bad(v, EXPECTED)),
        DeValue::String(s) => {
            let s = s.trim();
            let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
            let (digits, unit) = s.split_at(split);
            let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
                "" | "b" => 1,
                "k" | "kib" => 1 << 10,
                "m" | "mib" => 1 << 20,
                "g" | "gib" => 1 << 30,
                "kb" => 1_000,
                "mb" => 1_000_000,
                "gb" => 1_000_000_000,
                _ => return bad(v, EXPECTED),
            };
            digits
                .parse::<u64>()
                .ok()
                .and_then(|n| n.checked_mul(factor))
                .map_or_else(|| bad(v, EXPECTED), Ok)
        }
        _ => bad(v, EXPECTED),
    }
}

fn signal(v: &Value<'_>) -> Result<StopSignal, Bad> {
    const EXPECTED: &str = "a signal name (TERM, INT, QUIT, HUP, KILL, USR1, USR2, …) or number";
    let sig = match v.get_ref() {
        DeValue::String(s) => {
            let upper = s.trim().to_ascii_uppercase();
            let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
            Signal::from_str(&format!("SIG{bare}")).ok()
        }
        DeValue::Integer(i) => integer(i)
            .and_then(|n| i32::try_from(n).ok())
            .and_then(|n| Signal::try_from(n).ok()),
        _ => None,
    };
    match sig {
        Some(sig) => Ok(StopSignal {
            number: sig as i32,
            name: sig.as_str().trim_start_matches("SIG").to_string(),
        }),
        None => bad(v, EXPECTED),
    }
}

fn restart(v: &Value<'_>) -> Result<RestartMode, Bad> {
    match v.get_ref() {
        DeValue::String(s) if s == "on-failure" => Ok(RestartMode::OnFailure),
        DeValue::String(s) if s == "always" => Ok(RestartMode::Always),
        DeValue::String(s) if s == "never" => Ok(RestartMode::Never),
        _ => bad(v, "\"on-failure\", \"always\" or \"never\""),
    }
}

fn regex(v: &Value<'_>) -> Result<String, Bad> {
    let s = string(v)?;
    match regex::Regex::new(&s) {
        Ok(_) => Ok(s),
        Err(e) => {
            // The error's text spans lines (the pattern, a caret): keep the
            // last, which says what is wrong.
            let text = e.to_string();
            let what = text
                .lines()
                .last()
                .unwrap_or_default()
                .trim_start_matches("error: ");
            Err(Bad(
                v.span(),
                format!(
                    "invalid regular expression {}: {}",
                    quote(&s),
                    sanitize(what)
                ),
            ))
        }
    }
}

fn instances(v: &Value<'_>) -> Result<Instances, Bad> {
    const EXPECTED: &str = "a number ≥ 1, a list of names or a glob of files";
    match v.get_ref() {
        DeValue::Integer(i) => match integer(i) {
            Some(n) if (1..=i128::from(MAX_INSTANCES)).contains(&n) => {
                Ok(Instances::Count(n as u32))
            }
            _ => bad(v, &format!("a number from 1 to {MAX_INSTANCES}")),
        },
        DeValue::Array(items) if items.is_empty() => bad(v, "a non-empty list of names"),
        DeValue::Array(_) => {
            let names = string_list(v)?;
            let mut seen = BTreeSet::new();
            for n in &names {
                if !expand::is_valid_name(&n.value) {
                    return Err(Bad(
                        n.span.clone(),
                        format!(
                            "invalid instance name {}: use letters, digits, `_`, `.` and `-`",
                            quote(&n.value)
                        ),
                    ));
                }
                if !seen.insert(n.value.as_str()) {
                    return Err(Bad(
                        n.span.clone(),
                        format!("duplicate instance {}", quote(&n.value)),
                    ));
                }
            }
            Ok(Instances::Names(
                names.into_iter().map(|n| n.value).collect(),
            ))
        }
        DeValue::String(s) => match glob::Pattern::new(s) {
            Ok(_) => Ok(Instances::Glob(s.to_string())),
            Err(e) => Err(Bad(v.span(), format!("invalid glob {}: {e}", quote(s)))),
        },
        _ => bad(v, EXPECTED),
    }
}

/// A value for a message: a string quoted (bounded, escaped), else its type
/// and value.
fn describe(v: &DeValue<'_>) -> String {
    match v {
        DeValue::String(s) => quote(s),
        DeValue::Integer(i) => format!("integer {i}"),
        DeValue::Float(f) => format!("float {f}"),
        DeValue::Boolean(b) => format!("boolean {b}"),
        DeValue::Datetime(d) => format!("datetime {d}"),
        DeValue::Array(_) => "an array".into(),
        DeValue::Table(_) => "a table".into(),
    }
}

/// A value's type only, for values that must not be shown.
fn kind(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a datetime",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

/// The most characters of a value quoted in a message.
const QUOTE_CHARS: usize = 60;

/// `s` quoted with Rust's escapes (no control character reaches a
/// terminal), cut to [`QUOTE_CHARS`] characters with `…` after.
pub(super) fn quote(s: &str) -> String {
    let cut: String = s.chars().take(QUOTE_CHARS).collect();
    if cut.len() < s.len() {
        format!("{cut:?}…")
    } else {
        format!("{cut:?}")
    }
}

/// A name in backquotes when plain, else quoted.
fn code(name: &str) -> String {
    if name.chars().all(|c| c.is_ascii_graphic() && c != '`') && !name.is_empty() {
        format!("`{name}`")
    } else {
        quote(name)
    }
}

/// A field path: `prefix.key`, the key quoted when it is not a plain name.
fn field_of(prefix: &str, key: &str) -> String {
    let key = if expand::is_valid_name(key) {
        key.to_string()
    } else {
        quote(key)
    };
    if prefix.is_empty() {
        key
    } else {
        format!("{prefix}.{key}")
    }
}

/// Control characters of a message escaped.
fn sanitize(message: &str) -> String {
    message
        .chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() && c != '\n' {
                c.escape_debug().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect::<String>()
        .replace('\n', " ")
}

fn bad_env_name(name: &str) -> String {
    format!(
        "{} is not a valid variable name (letters, digits and `_`, not starting with a digit)",
        code(name)
    )
}

/// The known name nearest to `name`, when near enough to be a typo.
fn closest<'k>(name: &str, known: &[&'k str]) -> Option<&'k str> {
    known
        .iter()
        .map(|k| (strsim::damerau_levenshtein(name, k), *k))
        .filter(|(d, k)| *d <= (k.len() / 3).max(1))
        .min()
        .map(|(_, k)| k)
}

#[cfg(test)]
mod tests;

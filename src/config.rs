//! Resolved settings: paths, durations and caps, from the parsed command line
//! and the environment. Validation happens here, once; the rest of the program
//! only sees settings that make sense.

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

pub use crate::cli::Containment;
use crate::cli::{ColorChoice, GlobalArgs, RestartArgs};
use crate::core::Policy;
use crate::error::{Error, Result};
use crate::store::monitor_log::Console;

/// Every path pidwatch uses, resolved and absolute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// The orchestrator dir (`--dir`).
    pub dir: PathBuf,
    /// `DIR/pids`, the PID files.
    pub pid_dir: PathBuf,
    /// `DIR/logs`, the worker logs.
    pub log_dir: PathBuf,
    /// The project root, two levels above `DIR`.
    pub project_root: PathBuf,
    /// The workspace id (`--workspace`, else the project root's folder name).
    pub workspace: String,
    /// The task DB.
    pub tasks_db: PathBuf,
    /// The memory DB.
    pub memory_db: PathBuf,
    /// The state DB.
    pub state_db: PathBuf,
    /// The monitor log.
    pub log_file: PathBuf,
    /// `DIR/pidwatch.lock`, flocked by the one monitor that acts.
    pub lock_file: PathBuf,
    /// The wrapper script (`--wrapper`, else `DIR/worker-wrapper.sh`).
    pub wrapper: PathBuf,
}

/// How output looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Output {
    /// `--json`.
    pub json: bool,
    /// `--quiet`.
    pub quiet: bool,
    /// Colour on stdout.
    pub color: bool,
    /// stdout goes to the systemd journal (`JOURNAL_STREAM` set): priority
    /// prefixes, no colour.
    pub journal: bool,
}

impl Output {
    /// How log lines look on the console: sd-daemon priorities under
    /// systemd, else `[LEVEL]` tags, coloured or not.
    pub fn console(&self) -> Console {
        if self.journal {
            Console::Journal
        } else {
            Console::Plain(self.color)
        }
    }
}

/// How restarts are carried out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpawnSettings {
    /// How long to wait for the new PID file.
    pub spawn_timeout: Duration,
    /// How long survivors get between SIGTERM and SIGKILL.
    pub stop_timeout: Duration,
    /// The worker command handed to the wrapper, if not its default.
    pub worker_command: Option<String>,
    /// Plan and log, but do nothing.
    pub dry_run: bool,
    /// How spawned incarnations are contained.
    pub containment: Containment,
}

/// All settings of one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The paths. For a config file: `dir` is the state dir, which holds
    /// `pids/`, `logs/` (`monitor.log` too), the state DB, the lock and the
    /// control socket; the task and memory DB paths are unused.
    pub paths: Paths,
    /// The config file, when workers come from one (`--config`, or one
    /// found in the usual places); `None`: the orchestrator.
    pub programs: Option<std::sync::Arc<crate::source::config::ConfigFile>>,
    /// `--url` and `--token-file`: the monitor to ask over TCP, when given.
    pub remote: Option<crate::control::client::Endpoint>,
    /// `--initiative`, if given.
    pub initiative: Option<String>,
    /// The restart policy.
    pub policy: Policy,
    /// Spawn and stop settings.
    pub spawn: SpawnSettings,
    /// Output settings.
    pub output: Output,
}

/// What the process environment contributes, gathered by `main` so that
/// resolution itself reads nothing.
#[derive(Debug, Clone, Default)]
pub struct Environment {
    /// The current directory.
    pub cwd: PathBuf,
    /// `HOME`, or the home dir of the user in the password database.
    pub home: Option<PathBuf>,
    /// `NO_COLOR` is set to a non-empty value.
    pub no_color: bool,
    /// stdout is a terminal.
    pub stdout_is_terminal: bool,
    /// `JOURNAL_STREAM` is set.
    pub journal_stream: bool,
    /// `XDG_CONFIG_HOME`, when set and absolute.
    pub xdg_config_home: Option<PathBuf>,
    /// `XDG_STATE_HOME`, when set and absolute.
    pub xdg_state_home: Option<PathBuf>,
    /// The effective user is root.
    pub is_root: bool,
    /// The host name (uname(2)'s nodename), for `%h`.
    pub host: String,
}

impl Environment {
    /// Reads the real environment.
    pub fn current() -> Environment {
        use std::io::IsTerminal;
        let home = std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(PathBuf::from)
            .or_else(|| {
                nix::unistd::User::from_uid(nix::unistd::getuid())
                    .ok()
                    .flatten()
                    .map(|u| u.dir)
            });
        Environment {
            cwd: std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/")),
            home,
            no_color: std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()),
            stdout_is_terminal: std::io::stdout().is_terminal(),
            journal_stream: std::env::var_os("JOURNAL_STREAM").is_some(),
            xdg_config_home: xdg("XDG_CONFIG_HOME"),
            xdg_state_home: xdg("XDG_STATE_HOME"),
            is_root: nix::unistd::geteuid().is_root(),
            host: nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
                .unwrap_or_else(|| "localhost".into()),
        }
    }
}

/// An XDG base directory variable, when set to an absolute path (the
/// specification ignores relative ones).
fn xdg(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
}

/// The config file to use: `--config` (or `PIDWATCH_CONFIG`), else, unless
/// `--dir` names an orchestrator dir, the first of `./pidwatch.toml`,
/// `$XDG_CONFIG_HOME/pidwatch/pidwatch.toml` and
/// `/etc/pidwatch/pidwatch.toml` that exists; `None`: the orchestrator.
pub fn find_config(global: &GlobalArgs, env: &Environment) -> Option<PathBuf> {
    if global.config.is_none() && global.dir.is_some() {
        return None;
    }
    crate::source::config::discover(
        global.config.as_deref(),
        &env.cwd,
        env.xdg_config_home.as_deref(),
        env.home.as_deref(),
    )
}

/// The monitor `--url` names, with the token of `--token-file`.
///
/// Errors ([`Error::Config`]): a URL that is not `http://HOST:PORT`;
/// `--token-file` without `--url`; a token file that cannot be read, is
/// open to group or others, or is empty.
fn remote(
    global: &GlobalArgs,
    env: &Environment,
) -> Result<Option<crate::control::client::Endpoint>> {
    use std::os::unix::fs::PermissionsExt;
    let Some(url) = global.url.as_deref().filter(|u| !u.is_empty()) else {
        if global.token_file.is_some() {
            return Err(Error::Config("--token-file goes with --url".into()));
        }
        return Ok(None);
    };
    let token = match &global.token_file {
        Some(path) => {
            let path = absolute(&env.cwd, path);
            let meta = std::fs::metadata(&path).map_err(|e| Error::io("reading", &path, e))?;
            if meta.permissions().mode() & 0o077 != 0 {
                return Err(Error::Config(format!(
                    "{}: open to group or others; a token file must be its owner's only (chmod 600)",
                    path.display()
                )));
            }
            let text =
                std::fs::read_to_string(&path).map_err(|e| Error::io("reading", &path, e))?;
            let token = text.trim().to_string();
            if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(Error::Config(format!(
                    "{}: expected one token of visible ASCII",
                    path.display()
                )));
            }
            Some(token)
        }
        None => None,
    };
    crate::control::client::Endpoint::url(url, token)
        .map(Some)
        .map_err(Error::Config)
}

/// Reads and validates the config file at `path`.
///
/// Errors ([`Error::Config`], exit 2): every problem in it, one a line,
/// `file:line:col: field: what is wrong`.
pub fn load_config(path: &Path, env: &Environment) -> Result<crate::source::config::ConfigFile> {
    let ctx = crate::source::config::ParseContext {
        host: env.host.clone(),
        home: env.home.clone(),
    };
    crate::source::config::load(path, &ctx).map_err(|errors| {
        Error::Config(
            errors
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n"),
        )
    })
}

/// The paths of a config file's workers: everything lives in its state dir
/// (`state_dir`, else `$XDG_STATE_HOME/pidwatch/<config name>` for a user,
/// `/var/lib/pidwatch` for root).
///
/// Errors ([`Error::Config`]): no state dir can be derived (no home).
pub fn config_paths(
    file: &crate::source::config::ConfigFile,
    global: &GlobalArgs,
    env: &Environment,
) -> Result<Paths> {
    let state_dir = match &file.state_dir {
        Some(dir) => dir.clone(),
        None => crate::source::config::default_state_dir(
            &file.name,
            env.is_root,
            env.xdg_state_home.as_deref(),
            env.home.as_deref(),
        )
        .ok_or_else(|| {
            Error::Config(format!(
                "{}: no state_dir, and HOME is not set to derive one; set state_dir",
                file.path.display()
            ))
        })?,
    };
    let under = |opt: &Option<PathBuf>, default: &str| match opt {
        Some(p) => absolute(&env.cwd, p),
        None => state_dir.join(default),
    };
    Ok(Paths {
        pid_dir: state_dir.join("pids"),
        log_dir: state_dir.join("logs"),
        state_db: under(&global.state_db, "pidwatch.db"),
        log_file: under(&global.log_file, "logs/monitor.log"),
        lock_file: state_dir.join("pidwatch.lock"),
        wrapper: PathBuf::new(),
        tasks_db: PathBuf::new(),
        memory_db: PathBuf::new(),
        workspace: file.name.clone(),
        project_root: file
            .path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("/")),
        dir: state_dir,
    })
}

/// Makes `path` absolute against `cwd` and removes `.` and `..` components
/// lexically (symlinks are kept as named, as the original did).
pub fn absolute(cwd: &Path, path: &Path) -> PathBuf {
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        cwd.join(path)
    };
    let mut out = PathBuf::new();
    for part in joined.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Seconds from the command line as a duration; negative, NaN or absurd
/// values are configuration errors naming the option.
pub fn seconds(option: &str, value: f64) -> Result<Duration> {
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|d| *d <= MAX_SECONDS)
        .ok_or_else(|| {
            Error::Config(format!(
                "{option} {value}: expected a number of seconds from 0 to {}",
                MAX_SECONDS.as_secs()
            ))
        })
}

/// The longest duration any option takes: ten years, far beyond any use,
/// and far from the limits of clocks and timers.
pub const MAX_SECONDS: Duration = Duration::from_secs(10 * 365 * 86_400);

/// Resolves the paths from the global options.
///
/// Errors ([`Error::Config`], exit 2): no workspace id can be derived, or no
/// home dir is known for the default DB paths.
pub fn resolve_paths(
    global: &GlobalArgs,
    wrapper: Option<&Path>,
    env: &Environment,
) -> Result<Paths> {
    let dir = absolute(
        &env.cwd,
        global
            .dir
            .as_deref()
            .unwrap_or(Path::new(".claude/orchestrator")),
    );
    let project_root = dir
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/"));
    let workspace = match &global.workspace {
        Some(ws) if !ws.is_empty() => ws.clone(),
        _ => project_root
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_string)
            .ok_or_else(|| {
                if !dir.exists() {
                    // The likelier mistake: say that, as a check would (exit 3).
                    return Error::CannotCheck(format!(
                        "orchestrator dir {} does not exist (run from the project root, or \
                         give --dir)",
                        dir.display()
                    ));
                }
                Error::Config(format!(
                    "cannot derive a workspace id from the project root {} (two levels above {}); \
                     give --workspace or WORKSPACE_ID",
                    project_root.display(),
                    dir.display()
                ))
            })?,
    };
    if workspace.contains('/') || workspace == ".." {
        return Err(Error::Config(format!(
            "workspace id {workspace:?} is not a folder name"
        )));
    }
    let home_db = |kind: &str, file: &str, flag: &str| -> Result<PathBuf> {
        let home = env.home.as_ref().ok_or_else(|| {
            Error::Config(format!("HOME is not set; give {flag} to locate the {kind}"))
        })?;
        Ok(home.join(".claude").join(kind).join(&workspace).join(file))
    };
    let tasks_db = match &global.tasks_db {
        Some(p) => absolute(&env.cwd, p),
        None => home_db("tasks", "tasks.db", "--tasks-db")?,
    };
    let memory_db = match &global.memory_db {
        Some(p) => absolute(&env.cwd, p),
        None => home_db("memory", "memory.db", "--memory-db")?,
    };
    let under_dir = |opt: &Option<PathBuf>, default: &str| match opt {
        Some(p) => absolute(&env.cwd, p),
        None => dir.join(default),
    };
    Ok(Paths {
        pid_dir: dir.join("pids"),
        log_dir: dir.join("logs"),
        state_db: under_dir(&global.state_db, "pidwatch.db"),
        log_file: under_dir(&global.log_file, "logs/monitor.log"),
        lock_file: dir.join("pidwatch.lock"),
        wrapper: match wrapper {
            Some(p) => absolute(&env.cwd, p),
            None => dir.join("worker-wrapper.sh"),
        },
        tasks_db,
        memory_db,
        workspace,
        project_root,
        dir,
    })
}

/// Whether stdout gets colour: `--color`, `NO_COLOR`, a terminal, and never
/// under systemd (`JOURNAL_STREAM`).
pub fn color_enabled(global: &GlobalArgs, env: &Environment) -> bool {
    !env.journal_stream
        && match global.color {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => env.stdout_is_terminal && !env.no_color,
        }
}

/// Resolves all settings of a command.
///
/// Workers come from a config file when one is found ([`find_config`]),
/// else from the orchestrator.
///
/// Errors ([`Error::Config`], exit 2): as [`resolve_paths`], an invalid
/// config file ([`load_config`]), or a duration option that is not a
/// number of seconds ≥ 0.
pub fn resolve(global: &GlobalArgs, restart: &RestartArgs, env: &Environment) -> Result<Settings> {
    let programs = match find_config(global, env) {
        Some(path) => Some(std::sync::Arc::new(load_config(&path, env)?)),
        None => None,
    };
    let paths = match &programs {
        Some(file) => config_paths(file, global, env)?,
        None => resolve_paths(global, restart.wrapper.as_deref(), env)?,
    };
    let policy = Policy {
        auto_restart: restart.auto_restart,
        max_restarts: restart.max_restarts,
        restart_delay: seconds("--restart-delay", restart.restart_delay)?,
        max_restart_delay: seconds("--max-restart-delay", restart.max_restart_delay)?,
        stable_after: seconds("--stable-after", restart.stable_after)?,
    };
    let spawn = SpawnSettings {
        spawn_timeout: seconds("--spawn-timeout", restart.spawn_timeout)?,
        stop_timeout: seconds("--stop-timeout", restart.stop_timeout)?,
        worker_command: restart.worker_command.clone().filter(|c| !c.is_empty()),
        dry_run: restart.dry_run,
        containment: restart.containment,
    };
    let journal = env.journal_stream;
    let color = color_enabled(global, env);
    Ok(Settings {
        paths,
        programs,
        remote: remote(global, env)?,
        initiative: global.initiative.clone().filter(|i| !i.is_empty()),
        policy,
        spawn,
        output: Output {
            json: global.json,
            quiet: global.quiet,
            color,
            journal,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;
    use clap::Parser;

    fn env() -> Environment {
        Environment {
            cwd: PathBuf::from("/home/ann/proj"),
            home: Some(PathBuf::from("/home/ann")),
            ..Environment::default()
        }
    }

    fn global(args: &[&str]) -> GlobalArgs {
        let mut argv = vec!["pidwatch"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).unwrap().global
    }

    #[test]
    fn defaults_follow_the_orchestrator_layout() {
        let p = resolve_paths(&global(&[]), None, &env()).unwrap();
        assert_eq!(p.dir, PathBuf::from("/home/ann/proj/.claude/orchestrator"));
        assert_eq!(p.project_root, PathBuf::from("/home/ann/proj"));
        assert_eq!(p.workspace, "proj");
        assert_eq!(
            p.tasks_db,
            PathBuf::from("/home/ann/.claude/tasks/proj/tasks.db")
        );
        assert_eq!(
            p.memory_db,
            PathBuf::from("/home/ann/.claude/memory/proj/memory.db")
        );
        assert_eq!(
            p.state_db,
            PathBuf::from("/home/ann/proj/.claude/orchestrator/pidwatch.db")
        );
        assert_eq!(
            p.log_file,
            PathBuf::from("/home/ann/proj/.claude/orchestrator/logs/monitor.log")
        );
        assert_eq!(
            p.wrapper,
            PathBuf::from("/home/ann/proj/.claude/orchestrator/worker-wrapper.sh")
        );
    }

    #[test]
    fn options_override_and_relative_paths_resolve_against_cwd() {
        let g = global(&[
            "--dir",
            "../other/.claude/./orchestrator",
            "--workspace",
            "ws",
            "--tasks-db",
            "t.db",
        ]);
        let p = resolve_paths(&g, None, &env()).unwrap();
        assert_eq!(p.dir, PathBuf::from("/home/ann/other/.claude/orchestrator"));
        assert_eq!(p.workspace, "ws");
        assert_eq!(p.tasks_db, PathBuf::from("/home/ann/proj/t.db"));
        assert_eq!(
            p.memory_db,
            PathBuf::from("/home/ann/.claude/memory/ws/memory.db")
        );
    }

    #[test]
    fn missing_home_is_a_configuration_error() {
        let e = Environment {
            home: None,
            ..env()
        };
        let err = resolve_paths(&global(&[]), None, &e).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("--tasks-db"), "{err}");
    }

    #[test]
    fn bad_durations_are_named() {
        let err = seconds("--restart-delay", -1.0).unwrap_err();
        assert!(err.to_string().contains("--restart-delay -1"), "{err}");
        assert!(seconds("--stable-after", 1e13).is_err());
        assert!(seconds("--interval", f64::NAN).is_err());
        assert_eq!(seconds("--restart-delay", 0.0).unwrap(), Duration::ZERO);
    }
}

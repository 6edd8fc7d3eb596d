//! The command line (clap derive). Parsing only: no I/O, no system calls.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

const EXAMPLES: &str = "\
Examples:
  pidwatch                                  # the same as `pidwatch check`
  pidwatch check --json | jq .summary       # for scripts; exit code 0, 1, 2 or 3
  pidwatch check --auto-restart             # one-shot heal, for cron or CI
  pidwatch run --auto-restart               # long-running monitor (what systemd runs)
  pidwatch run --auto-restart --daemon      # detached, for hosts without systemd
  pidwatch status                           # verdicts, PIDs, uptime, attempts
  pidwatch history Stream-B                 # the journal of one worker
  pidwatch reset Stream-B                   # clear attempts and the given-up mark
  pidwatch demo                             # a real orchestration in a temp dir

Exit codes: 0 none dead or given up; 1 some; 2 usage or configuration error;
3 could not check (task DB or orchestrator dir missing, unreadable, locked,
or of an unknown schema).";

/// A PID-file watchdog for the claude-copilot stream orchestrator (and any
/// worker that leaves a PID file).
///
/// pidwatch reads each worker's PID file and proves which process is the
/// worker (its start time against the PID file, its command line, the
/// incarnation id in its environment, its cgroup where one can be had),
/// reads the worker's tasks and dependencies from the Task Copilot database,
/// and decides which workers died before their work was done. With
/// --auto-restart it brings them back through the orchestrator's wrapper,
/// under a restart cap with exponential backoff, and journals every step.
#[derive(Debug, Parser)]
#[command(name = "pidwatch", version, after_help = EXAMPLES)]
pub struct Cli {
    /// Settings shared by every subcommand.
    #[command(flatten)]
    pub global: GlobalArgs,

    /// What to do; `check` when none is given.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Where output colour comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    /// Colour when stdout is a terminal and `NO_COLOR` is unset.
    Auto,
    /// Always colour.
    Always,
    /// Never colour.
    Never,
}

/// Options accepted before or after any subcommand.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// Workers from this config file [default: ./pidwatch.toml, then
    /// $XDG_CONFIG_HOME/pidwatch/pidwatch.toml, then /etc/pidwatch/pidwatch.toml,
    /// unless --dir is given; without one: the orchestrator]
    #[arg(long, global = true, env = "PIDWATCH_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// The orchestrator dir, holding `pids/` and `logs/` [default: .claude/orchestrator]
    #[arg(long, global = true, env = "PIDWATCH_DIR", value_name = "DIR")]
    pub dir: Option<PathBuf>,

    /// The Task Copilot DB [default: ~/.claude/tasks/<workspace>/tasks.db]
    #[arg(long, global = true, env = "PIDWATCH_TASKS_DB", value_name = "PATH")]
    pub tasks_db: Option<PathBuf>,

    /// The Memory Copilot DB, for the active initiative [default: ~/.claude/memory/<workspace>/memory.db]
    #[arg(long, global = true, env = "PIDWATCH_MEMORY_DB", value_name = "PATH")]
    pub memory_db: Option<PathBuf>,

    /// The workspace id [default: the folder name of the project root, two levels above DIR]
    #[arg(long, global = true, env = "WORKSPACE_ID", value_name = "ID")]
    pub workspace: Option<String>,

    /// The initiative to watch [default: the active initiative of the memory DB]
    #[arg(long, global = true, env = "PIDWATCH_INITIATIVE", value_name = "ID")]
    pub initiative: Option<String>,

    /// pidwatch's own state DB (restart attempts, journal) [default: DIR/pidwatch.db]
    #[arg(long, global = true, env = "PIDWATCH_STATE_DB", value_name = "PATH")]
    pub state_db: Option<PathBuf>,

    /// The monitor log [default: DIR/logs/monitor.log]
    #[arg(long, global = true, env = "PIDWATCH_LOG_FILE", value_name = "PATH")]
    pub log_file: Option<PathBuf>,

    /// Ask the monitor serving this URL (`http://HOST:PORT`, its `--listen`)
    /// instead of the local control socket: start, stop, restart, status, heal
    #[arg(long, global = true, env = "PIDWATCH_URL", value_name = "URL")]
    pub url: Option<String>,

    /// The bearer token to present with --url (a file, owner's only)
    #[arg(long, global = true, env = "PIDWATCH_TOKEN_FILE", value_name = "PATH")]
    pub token_file: Option<PathBuf>,

    /// Print JSON on stdout instead of a table
    #[arg(long, global = true)]
    pub json: bool,

    /// Print nothing but errors (the exit code tells the outcome)
    #[arg(short, long, global = true)]
    pub quiet: bool,

    /// Colour the output (NO_COLOR is honoured under `auto`)
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto, value_name = "WHEN")]
    pub color: ColorChoice,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check every worker once and exit 0, 1, 2 or 3 (the default)
    #[command(after_help = "\
Examples:
  pidwatch check
  pidwatch check --json
  pidwatch check --auto-restart --max-restarts 3
  pidwatch check --auto-restart --dry-run

Exit codes:
  0  no worker is dead or given up (also: no active initiative, nothing to watch)
  1  at least one worker is dead or given up (also when --auto-restart restarted it)
  2  usage or configuration error (a bad option, another pidwatch holds the lock,
     a symlink where pidwatch writes, a missing or non-executable wrapper)
  3  could not check (orchestrator dir, task DB or memory DB missing, unreadable,
     locked or of an unknown schema); with --json, an error object on stdout")]
    Check(CheckArgs),

    /// Watch the workers until stopped, reacting to deaths at once
    #[command(after_help = "\
Examples:
  pidwatch run --auto-restart
  pidwatch run --auto-restart --interval 10
  pidwatch run --auto-restart --daemon --pid-file /run/pidwatch.pid

Signals: TERM/INT stop after the step in hand (workers keep running); HUP
reopens monitor.log, looks up the active initiative and reopens the task DB
(options are not re-read; restart pidwatch for those); USR1 checks at once.")]
    Run(RunArgs),

    /// Show each worker's verdict, PID, uptime, resources, attempts and last event
    #[command(after_help = "Examples:\n  pidwatch status\n  pidwatch status --json")]
    Status(StatusArgs),

    /// Print each worker's state as Prometheus metrics, or write them for node_exporter
    #[command(after_help = "\
Examples:
  pidwatch metrics
  pidwatch metrics --textfile /var/lib/node_exporter/textfile_collector/pidwatch.prom

The metrics of the workers `status` shows, in the Prometheus text format
(version 0.0.4), which node_exporter's textfile collector reads: from a
systemd timer, beside `check`, on hosts without a resident monitor. Names,
types and labels: the README's \"Metrics\". Exit codes as `status`; a look
that fails (exit 2 or 3) leaves the file as it was.")]
    Metrics(MetricsArgs),

    /// Print the journal of restarts and other events
    #[command(
        after_help = "Examples:\n  pidwatch history\n  pidwatch history Stream-B --limit 20\n  pidwatch history --json"
    )]
    History(HistoryArgs),

    /// Clear a worker's restart attempts and given-up mark
    #[command(after_help = "Examples:\n  pidwatch reset Stream-B")]
    Reset(ResetArgs),

    /// Print the audit trail of the control API: every call that would change something,
    /// carried out or refused, and who made it
    #[command(after_help = "\
Examples:
  pidwatch audit
  pidwatch audit -n 200
  pidwatch audit --json | jq '.[] | select(.trusted_by == \"refused\")'

Each record: time, caller id (X-Caller-Id), how it was trusted (peer_uid, token,
secret, confirmation, or refused), the peer (uid or address), method and path,
target, HTTP status and result. Newest last. The same records are appended to
<state_dir>/logs/audit.jsonl as they happen.")]
    Audit(AuditArgs),

    /// Ask the running monitor to heal: restart each dead worker now (counted against its
    /// cap), escalate each given-up one; then its post_heal self-test
    #[command(after_help = "\
Examples:
  pidwatch heal --plan               # the steps, nothing changed
  pidwatch heal --reason 'queue stuck'
  pidwatch heal --json

Needs a running monitor (`pidwatch run`): it is asked through its control socket,
as its own user. Heals are rate-limited ([api] heal_max per heal_window, one at a
time): exit 3 with the reason when refused. Exit 0 when every restart ran, 1 when
some did not or the self-test failed.")]
    Heal(HealArgs),

    /// Start workers of the config file (detached, in parallel; dependencies first)
    #[command(after_help = "\
Examples:
  pidwatch start --all
  pidwatch start code review@2

Exit codes: 0 all started (or running already); 1 some failed; 2 all failed,
or a usage or configuration error. Each failure is said with its reason.")]
    Start(TargetArgs),

    /// Stop workers of the config file: stop_signal, stop_timeout, then SIGKILL; they stay stopped
    #[command(after_help = "Examples:\n  pidwatch stop --all\n  pidwatch stop code")]
    Stop(TargetArgs),

    /// Stop, then start workers of the config file
    #[command(after_help = "Examples:\n  pidwatch restart code@1")]
    Restart(TargetArgs),

    /// Print a worker's log (the last lines; -f follows it)
    #[command(after_help = "Examples:\n  pidwatch logs code@1 -n 50\n  pidwatch logs redis -f")]
    Logs(LogsArgs),

    /// Work with the config file
    #[command(subcommand)]
    Config(ConfigCommand),

    /// Write a commented config file to start from (never over an existing file)
    #[command(
        after_help = "Examples:\n  pidwatch init\n  pidwatch init /etc/pidwatch/pidwatch.toml"
    )]
    Init(InitArgs),

    /// Print shell completions for bash, zsh or fish
    #[command(after_help = "\
Examples:
  pidwatch completions bash > /usr/share/bash-completion/completions/pidwatch
  pidwatch completions zsh > /usr/local/share/zsh/site-functions/_pidwatch
  pidwatch completions fish > ~/.config/fish/completions/pidwatch.fish")]
    Completions(CompletionsArgs),

    /// Print the manual page (roff), generated from this help
    #[command(after_help = "\
Examples:
  pidwatch man > /usr/local/share/man/man1/pidwatch.1
  pidwatch man | man -l -")]
    Man,

    /// Build a small real orchestration in a temp dir and show pidwatch at work
    #[command(after_help = "Examples:\n  pidwatch demo\n  pidwatch demo --keep")]
    Demo(DemoArgs),

    /// Print the worker wrapper script, or install it as DIR/worker-wrapper.sh
    #[command(
        after_help = "Examples:\n  pidwatch wrapper --install .claude/orchestrator/worker-wrapper.sh\n  pidwatch wrapper | less"
    )]
    Wrapper(WrapperArgs),
}

/// Options of `check`.
#[derive(Debug, Clone, Default, Args)]
pub struct CheckArgs {
    /// Restart options.
    #[command(flatten)]
    pub restart: RestartArgs,
}

/// Options of restarting, shared by `check` and `run`.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Restart options")]
pub struct RestartArgs {
    /// Restart dead workers through the wrapper
    #[arg(long)]
    pub auto_restart: bool,

    /// Restart cap per worker and initiative
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub max_restarts: u32,

    /// Backoff base: attempt k ≥ 2 waits SECS × 2^(k-1) after attempt k-1; 0 allowed
    #[arg(long, value_name = "SECS", default_value_t = 5.0, value_parser = parse_seconds)]
    pub restart_delay: f64,

    /// The longest backoff
    #[arg(long, value_name = "SECS", default_value_t = 300.0, value_parser = parse_seconds)]
    pub max_restart_delay: f64,

    /// A restarted worker running this long gets its attempts reset
    #[arg(long, value_name = "SECS", default_value_t = 600.0, value_parser = parse_seconds)]
    pub stable_after: f64,

    /// How long to wait for the new PID file after spawning the wrapper
    #[arg(long, value_name = "SECS", default_value_t = 5.0, value_parser = parse_seconds)]
    pub spawn_timeout: f64,

    /// How long survivors get between SIGTERM and SIGKILL
    #[arg(long, value_name = "SECS", default_value_t = 10.0, value_parser = parse_seconds)]
    pub stop_timeout: f64,

    /// The worker command the wrapper runs (through `sh -c`) [default: the wrapper's own, `claude`]
    #[arg(long, env = "PIDWATCH_WORKER_COMMAND", value_name = "CMD")]
    pub worker_command: Option<String>,

    /// The wrapper script [default: DIR/worker-wrapper.sh]
    #[arg(long, env = "PIDWATCH_WRAPPER", value_name = "PATH")]
    pub wrapper: Option<PathBuf>,

    /// Log and print what would be done; do nothing
    #[arg(long)]
    pub dry_run: bool,

    /// How incarnations are held: `cgroup` (each in its own cgroup v2, where
    /// a delegated subtree can be written), `session` (its own session and
    /// its incarnation id), or `auto` (a cgroup where one can be had)
    #[arg(long, env = "PIDWATCH_CONTAINMENT", value_enum, default_value_t = Containment::Auto, value_name = "HOW")]
    pub containment: Containment,
}

/// How spawned incarnations are contained (`--containment`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Containment {
    /// A cgroup where one can be had, else the session; says which at start.
    #[default]
    Auto,
    /// Always a cgroup; an error where none can be created.
    Cgroup,
    /// Never a cgroup: the session and the incarnation id.
    Session,
}

impl Default for RestartArgs {
    fn default() -> Self {
        RestartArgs {
            auto_restart: false,
            max_restarts: 2,
            restart_delay: 5.0,
            max_restart_delay: 300.0,
            stable_after: 600.0,
            spawn_timeout: 5.0,
            stop_timeout: 10.0,
            worker_command: None,
            wrapper: None,
            dry_run: false,
            containment: Containment::Auto,
        }
    }
}

/// Options of `run`.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Restart options.
    #[command(flatten)]
    pub restart: RestartArgs,

    /// Seconds between full sweeps (deaths are seen at once regardless)
    #[arg(long, value_name = "SECS", default_value_t = 30.0, value_parser = parse_seconds)]
    pub interval: f64,

    /// Detach from the terminal (for hosts without systemd)
    #[arg(long)]
    pub daemon: bool,

    /// How long to wait for the lock another pidwatch holds (a one-shot
    /// `check --auto-restart` acting just then) before giving up with exit 2
    #[arg(long, env = "PIDWATCH_LOCK_WAIT", value_name = "SECS", default_value_t = 30.0, value_parser = parse_seconds)]
    pub lock_wait: f64,

    /// The monitor's own PID file under --daemon [default: DIR/pidwatch.pid]
    #[arg(long, value_name = "PATH")]
    pub pid_file: Option<PathBuf>,

    /// Also serve the control API on this TCP address (e.g.
    /// 127.0.0.1:7070; config `[api] listen`). A non-loopback address needs
    /// the config's `token_file`: plain HTTP only on loopback
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<std::net::SocketAddr>,
}

/// Options of `status`.
#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// Redraw in place every second, like top, until q (when stdin is a terminal), Ctrl-C or SIGTERM
    #[arg(long)]
    pub watch: bool,

    /// The restart cap the monitor runs with, to show attempts against (a program of a config
    /// file has its own, `max_restarts`)
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub max_restarts: u32,
}

/// Options of `metrics`.
#[derive(Debug, Clone, Args)]
pub struct MetricsArgs {
    /// Write them to PATH instead of stdout: a temp file beside it, renamed
    /// over it (node_exporter never reads half a file), mode 0644
    #[arg(long, value_name = "PATH")]
    pub textfile: Option<PathBuf>,

    /// The restart cap the monitor runs with, as for `status`
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub max_restarts: u32,
}

/// Options of `history`.
#[derive(Debug, Clone, Args)]
pub struct HistoryArgs {
    /// Only this worker's events
    pub worker: Option<String>,

    /// At most this many of the newest events
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
}

/// Options of `reset`.
#[derive(Debug, Clone, Args)]
pub struct ResetArgs {
    /// The worker (stream id) to reset
    pub worker: String,
}

/// Options of `heal`.
#[derive(Debug, Clone, Args)]
pub struct HealArgs {
    /// Only say what would be done
    #[arg(long)]
    pub plan: bool,

    /// Why, for the record (bounded to 300 bytes)
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
}

/// Options of `audit`.
#[derive(Debug, Clone, Args)]
pub struct AuditArgs {
    /// At most this many of the newest records
    #[arg(short = 'n', long, default_value_t = 50, value_name = "N")]
    pub limit: usize,
}

/// Options of `wrapper`.
#[derive(Debug, Clone, Args)]
pub struct WrapperArgs {
    /// Write the script to PATH (a temp file beside it, renamed over it, mode
    /// 0755), safe while wrappers run from the old one; without it, print it
    #[arg(long, value_name = "PATH")]
    pub install: Option<PathBuf>,
}

/// Which workers `start`, `stop` and `restart` act on.
#[derive(Debug, Clone, Args)]
pub struct TargetArgs {
    /// Worker names (all their instances) or instance ids (`name@instance`)
    #[arg(value_name = "WORKER", required_unless_present = "all")]
    pub workers: Vec<String>,

    /// Every worker of the config file
    #[arg(long, conflicts_with = "workers")]
    pub all: bool,
}

/// Options of `logs`.
#[derive(Debug, Clone, Args)]
pub struct LogsArgs {
    /// The worker (an instance id, or a name with one instance)
    pub worker: String,

    /// How many of the last lines
    #[arg(short = 'n', long, default_value_t = 20, value_name = "N")]
    pub lines: usize,

    /// Follow the log as it grows (also across rotations), until Ctrl-C
    #[arg(short, long)]
    pub follow: bool,
}

/// `pidwatch config …`.
#[derive(Debug, Clone, Subcommand)]
pub enum ConfigCommand {
    /// Validate the config file: every problem with file:line:col; exit 0 or 2
    #[command(
        after_help = "Examples:\n  pidwatch config check\n  pidwatch --config /etc/pidwatch/pidwatch.toml config check"
    )]
    Check,
}

/// Options of `init`.
#[derive(Debug, Clone, Args)]
pub struct InitArgs {
    /// Where to write it [default: ./pidwatch.toml, or --config]
    pub path: Option<PathBuf>,
}

/// Options of `completions`.
#[derive(Debug, Clone, Args)]
pub struct CompletionsArgs {
    /// The shell
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Options of `demo`.
#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Leave the demo folder in place for a look
    #[arg(long)]
    pub keep: bool,
}

/// Parses a number of seconds given on the command line (`5`, `0.5`); the
/// range is checked when the settings are resolved.
///
/// Errors: not a number, with an example of one.
fn parse_seconds(text: &str) -> Result<f64, String> {
    text.trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .ok_or_else(|| "expected seconds, e.g. 5 or 0.5".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_options_go_before_or_after_the_subcommand() {
        let before = Cli::try_parse_from(["pidwatch", "--dir", "x", "check", "--json"]).unwrap();
        let after = Cli::try_parse_from(["pidwatch", "check", "--dir", "x", "--json"]).unwrap();
        assert_eq!(before.global.dir, after.global.dir);
        assert!(before.global.json && after.global.json);
        let bare = Cli::try_parse_from(["pidwatch"]).unwrap();
        assert!(bare.command.is_none());
    }
}

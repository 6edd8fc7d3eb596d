//! The commented template that `pidwatch init` writes: a config that parses
//! as it is, and shows every key with what it means and its default.

/// The text of a new `pidwatch.toml`: one worker to edit, every other key
/// shown commented out with its default.
pub const TEMPLATE: &str = r#"# pidwatch.toml: the workers pidwatch starts, watches and restarts.
#
# Durations are seconds (10, 0.5) or strings with a unit ("500ms", "10s",
# "5m", "1h"). Relative paths resolve against this file's folder; `~` is
# your home. In command, start, stop, cwd, env values, env_file, pidfile,
# log and probe commands: %i is the instance, %f the instance's file (with a
# glob `instances`), %h the host name, %% a literal %; any other % sequence
# (Celery's %n, %I) is passed through as written.
# Unknown keys are errors: a typo is never silently ignored.

# Where pidwatch keeps its state and the default logs. Default: as root
# /var/lib/pidwatch, else $XDG_STATE_HOME/pidwatch/<this file's name>
# (~/.local/state/pidwatch/...).
# state_dir = "~/.local/state/pidwatch/pidwatch"

# The control API that `pidwatch run` serves on <state_dir>/control.sock (and
# on TCP with `listen`): who may change things through it, and how often a
# heal may run. Reading needs the socket's user (or root), or on TCP the
# token; a change needs, in addition, a trusted caller with a valid
# credential, or a confirmation (the caller repeats the call with the
# challenge it was given). Every change, carried out or refused, is audited
# (<state_dir>/logs/audit.jsonl, `pidwatch audit`).
# [api]
# Serve on TCP too, plain HTTP: a non-loopback address needs token_file.
# listen = "127.0.0.1:7070"
# A file holding the bearer token (`Authorization: Bearer <token>`); it
# must be the owner's only (chmod 600).
# token_file = "api.token"
# Caller ids (the X-Caller-Id header) that, with a valid credential (the
# socket's user, the token or the secret), act at once.
# trusted_callers = ["claude-opus-4"]
# An automation secret: the header that carries it, and a file holding it
# (chmod 600).
# secret_header = "X-Automation-Secret"
# secret_file = "automation.secret"
# At most heal_max heals per heal_window, one at a time.
# heal_max = 1
# heal_window = "5m"
# A self-test run after each heal (a list or a string), and how long it
# may take.
# post_heal = "curl -fsS http://localhost:8000/"
# post_heal_timeout = "60s"
# How long a confirmation challenge is good for (at most 1h).
# challenge_ttl = "120s"

# Values every worker gets unless it sets its own. Any worker key but
# command, instances, pidfile, match, start, stop and depends_on. `env` is
# merged (the worker's entries win); `health`/`ready` keys apply to the
# workers that have that probe (a `command` here gives every worker one).
[defaults]
# Sent to stop a worker: a name (TERM, INT, QUIT, HUP, USR1, KILL, ...) or a
# number.
stop_signal = "TERM"
# How long after stop_signal the worker gets SIGKILL (at most 600).
stop_timeout = 10
# When a worker that exited is started again: "on-failure" (unless it
# exited 0), "always", or "never".
restart = "on-failure"
# Restarts allowed before pidwatch gives up (the attempts reset after a
# stable run).
max_restarts = 2
# The backoff: the first wait, doubling up to max_restart_delay.
restart_delay = "5s"
max_restart_delay = "5m"
# A run this long resets the attempts.
stable_after = "10m"
# Where stdout and stderr go; default <state_dir>/logs/<worker id>.log.
# log = "logs/%i.log"
# Rotate the log past this size (bytes, or "10MiB", "512k"; 0: never) and
# keep this many old ones (<log>.1 ... <log>.N).
log_max_bytes = "10MiB"
log_keep = 5

[worker.app]
# What runs in the foreground: a list (run as it is) or a string (run by
# `sh -c`).
command = ["python3", "-m", "http.server", "8000"]
# The working directory; default this file's folder.
cwd = "."
# Variables added to the inherited environment. Names ending in _KEY,
# _TOKEN, _SECRET or _PASSWORD are never shown; list others in secret_env.
env = { PYTHONUNBUFFERED = "1" }
# KEY=VALUE lines (# comments, `export ` and quotes allowed), read before
# `env`.
# env_file = "app.env"
# secret_env = ["DATABASE_URL"]
# One worker per instance, <name>@<instance>: a number (app@1 ... app@N), a
# list of names, or a glob of files ("workers/*.js": one per file, named by
# its stem; no match gives no instance).
# instances = 2
# Workers (or <name>@<instance>) that must run, and be ready, first.
# depends_on = ["db"]
# Run while the worker is up; `retries` failures in a row make it unhealthy.
# health = { command = "curl -fsS http://localhost:8000/", interval = "10s", timeout = "5s", retries = 3 }
# Run after a start until it passes; dependents wait for it.
ready = { command = ["python3", "-c", "import urllib.request as u; u.urlopen('http://localhost:8000/')"], interval = "1s", timeout = "5s" }

# Adopt mode: a program that daemonizes itself and writes its own PID file.
# [worker.celery]
# pidfile = "/run/celery/%i.pid"
# instances = ["code", "review"]
# start = "celery multi start %i -A proj --pidfile=/run/celery/%n.pid"
# stop = "celery multi stopwait %i --pidfile=/run/celery/%n.pid"
# A regular expression its command line must match; default the start
# command's program name. Name the instance (%i, regex-escaped) so that one
# node's PID file never proves another node's process.
# match = "celery.* -n %i@"
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::config::parse::{API_KEYS, TOP_KEYS, WORKER_KEYS};
    use crate::source::config::{ParseContext, parse};
    use std::path::Path;

    #[test]
    fn template_parses() {
        let ctx = ParseContext {
            host: "box".into(),
            home: Some("/home/u".into()),
        };
        let config = parse(TEMPLATE, Path::new("/etc/pw/pidwatch.toml"), &ctx)
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(config.workers.len(), 1);
        assert_eq!(config.workers[0].cwd, Path::new("/etc/pw"));
        assert_eq!(config.api, crate::source::config::ApiConfig::default());
    }

    #[test]
    fn the_api_table_parses_uncommented() {
        let tmp = tempfile::tempdir().unwrap();
        for name in ["api.token", "automation.secret"] {
            let path = tmp.path().join(name);
            std::fs::write(&path, "secret\n").unwrap();
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .unwrap();
        }
        let start = TEMPLATE.find("# [api]").unwrap();
        let end = TEMPLATE.find("\n[defaults]").unwrap();
        let api: String = TEMPLATE[start..end]
            .lines()
            .filter_map(|l| l.strip_prefix("# "))
            .filter(|l| l.starts_with('[') || l.contains(" = "))
            .map(|l| format!("{l}\n"))
            .collect();
        let text = format!("{api}[worker.a]\ncommand = \"true\"\n");
        let ctx = ParseContext {
            host: "box".into(),
            home: None,
        };
        let config = parse(&text, &tmp.path().join("pidwatch.toml"), &ctx)
            .unwrap_or_else(|e| panic!("{text}\n{e:?}"));
        assert_eq!(config.api.listen, Some("127.0.0.1:7070".parse().unwrap()));
        assert!(config.api.token.is_some() && config.api.secret.is_some());
    }

    #[test]
    fn template_shows_every_key() {
        for key in TOP_KEYS.iter().chain(WORKER_KEYS).chain(API_KEYS) {
            let shown = ["", "# "].iter().any(|p| {
                TEMPLATE.contains(&format!("\n{p}{key} = "))
                    || TEMPLATE.contains(&format!("[{key}"))
            });
            assert!(shown, "{key} is not in the template");
        }
        for key in ["interval", "timeout", "retries"] {
            assert!(TEMPLATE.contains(&format!("{key} = ")), "{key}");
        }
    }
}

use super::*;
use std::path::Path;

fn ctx() -> ParseContext {
    ParseContext {
        host: "box".into(),
        home: Some("/home/u".into()),
    }
}

const FILE: &str = "/etc/pw/pidwatch.toml";

fn ok(text: &str) -> ConfigFile {
    parse(text, Path::new(FILE), &ctx()).unwrap_or_else(|errors| {
        panic!(
            "{}",
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        )
    })
}

fn ok_at(text: &str, file: &Path) -> ConfigFile {
    parse(text, file, &ctx()).unwrap_or_else(|errors| {
        panic!(
            "{}",
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        )
    })
}

/// The errors as `line:col: field: message`.
fn errs(text: &str) -> Vec<String> {
    errs_at(text, Path::new(FILE))
}

fn errs_at(text: &str, file: &Path) -> Vec<String> {
    match parse(text, file, &ctx()) {
        Ok(c) => panic!("parsed: {c:?}"),
        Err(errors) => errors
            .iter()
            .map(|e| {
                let s = e.to_string();
                s.strip_prefix(&format!("{}:", file.display()))
                    .map_or(s.clone(), str::to_string)
            })
            .collect(),
    }
}

fn one(text: &str) -> String {
    let e = errs(text);
    assert_eq!(e.len(), 1, "{e:#?}");
    e.into_iter().next().unwrap()
}

fn worker<'c>(c: &'c ConfigFile, id: &str) -> &'c ProgramSpec {
    c.workers
        .iter()
        .find(|w| w.id == id)
        .unwrap_or_else(|| panic!("no {id}"))
}

#[test]
fn minimal_worker_gets_the_defaults() {
    let c = ok("[worker.code]\ncommand = \"exec node w.js\"\n");
    assert_eq!(c.name, "pidwatch");
    assert_eq!(c.state_dir, None);
    let w = worker(&c, "code");
    assert_eq!(w.name, "code");
    assert_eq!(w.instance, None);
    assert_eq!(w.command, ProgramCommand::Shell("exec node w.js".into()));
    assert_eq!(w.cwd, Path::new("/etc/pw"));
    assert_eq!(
        w.stop_signal,
        StopSignal {
            number: 15,
            name: "TERM".into()
        }
    );
    assert_eq!(w.stop_timeout, Duration::from_secs(10));
    assert_eq!(w.restart, RestartMode::OnFailure);
    assert_eq!(w.max_restarts, 2);
    assert_eq!(w.restart_delay, Duration::from_secs(5));
    assert_eq!(w.max_restart_delay, Duration::from_secs(300));
    assert_eq!(w.stable_after, Duration::from_secs(600));
    assert_eq!(w.log, None);
    assert_eq!(w.log_max_bytes, 10 << 20);
    assert_eq!(w.log_keep, 5);
    assert!(w.adopt.is_none() && w.health.is_none() && w.ready.is_none());
    assert!(w.depends_on.is_empty() && w.env.is_empty());
}

#[test]
fn values_of_every_key() {
    let c = ok(r#"
state_dir = "state"
[worker.code]
command = ["node", "w.js"]
cwd = "~/src"
env = { A = "1", API_KEY = "k" }
secret_env = ["DB_URL"]
stop_signal = "sigint"
stop_timeout = "1m"
restart = "always"
max_restarts = 0
restart_delay = 0.5
max_restart_delay = "2m"
stable_after = 60
log = "/var/log/code.log"
log_max_bytes = "512k"
log_keep = 0
health = { command = "true", interval = "500ms" }
ready = { command = ["true"], retries = 7 }
"#);
    assert_eq!(c.state_dir, Some("/etc/pw/state".into()));
    let w = worker(&c, "code");
    assert_eq!(
        w.command,
        ProgramCommand::Argv(vec!["node".into(), "w.js".into()])
    );
    assert_eq!(w.cwd, Path::new("/home/u/src"));
    assert_eq!(
        w.stop_signal,
        StopSignal {
            number: 2,
            name: "INT".into()
        }
    );
    assert_eq!(w.stop_timeout, Duration::from_secs(60));
    assert_eq!(w.restart, RestartMode::Always);
    assert_eq!(w.max_restarts, 0);
    assert_eq!(w.restart_delay, Duration::from_millis(500));
    assert_eq!(w.max_restart_delay, Duration::from_secs(120));
    assert_eq!(w.stable_after, Duration::from_secs(60));
    assert_eq!(w.log, Some("/var/log/code.log".into()));
    assert_eq!(w.log_max_bytes, 512 << 10);
    assert_eq!(w.log_keep, 0);
    let h = w.health.as_ref().unwrap();
    assert_eq!(h.command, ProgramCommand::Shell("true".into()));
    assert_eq!(
        (h.interval, h.timeout, h.retries),
        (Duration::from_millis(500), Duration::from_secs(5), 3)
    );
    let r = w.ready.as_ref().unwrap();
    assert_eq!((r.interval, r.retries), (Duration::from_secs(1), 7));
    assert_eq!(
        w.secret_env,
        ["API_KEY", "DB_URL"]
            .map(String::from)
            .into_iter()
            .collect()
    );
}

#[test]
fn signals_by_name_and_number() {
    for (value, number, name) in [
        ("\"QUIT\"", 3, "QUIT"),
        ("\"SIGHUP\"", 1, "HUP"),
        ("\"usr2\"", 12, "USR2"),
        ("9", 9, "KILL"),
    ] {
        let c = ok(&format!(
            "[worker.a]\ncommand = \"x\"\nstop_signal = {value}\n"
        ));
        assert_eq!(
            c.workers[0].stop_signal,
            StopSignal {
                number,
                name: name.into()
            }
        );
    }
}

#[test]
fn sizes() {
    for (value, bytes) in [
        ("0", 0),
        ("1_000", 1000),
        ("\"10MiB\"", 10 << 20),
        ("\"10MB\"", 10_000_000),
        ("\"2g\"", 2 << 30),
        ("\"77\"", 77),
    ] {
        let c = ok(&format!(
            "[worker.a]\ncommand = \"x\"\nlog_max_bytes = {value}\n"
        ));
        assert_eq!(c.workers[0].log_max_bytes, bytes, "{value}");
    }
    assert_eq!(
        one("[worker.a]\ncommand = \"x\"\nlog_max_bytes = \"lots\"\n"),
        "3:17: worker.a.log_max_bytes: expected a size in bytes (an integer ≥ 0, or a string like \"10MiB\" or \"512k\"), found \"lots\""
    );
}

#[test]
fn defaults_are_applied_and_overridden() {
    let c = ok(r#"
[defaults]
stop_timeout = 30
restart = "never"
env = { A = "d", B = "d" }
secret_env = ["B"]
health = { interval = 20, retries = 5 }
ready = { command = "ready-check" }

[worker.a]
command = "a"
env = { B = "a", C = "a" }
health = { command = "check-a" }

[worker.b]
command = "b"
stop_timeout = 5
restart = "always"
"#);
    let a = worker(&c, "a");
    assert_eq!(a.stop_timeout, Duration::from_secs(30));
    assert_eq!(a.restart, RestartMode::Never);
    assert_eq!(
        a.env,
        [("A", "d"), ("B", "a"), ("C", "a")].map(|(k, v)| (k.to_string(), v.to_string()))
    );
    assert!(a.is_secret("B"));
    assert_eq!(a.shown_env(), ["A=d", "B=***", "C=a"]);
    let h = a.health.as_ref().unwrap();
    assert_eq!(h.command, ProgramCommand::Shell("check-a".into()));
    assert_eq!((h.interval, h.retries), (Duration::from_secs(20), 5));
    assert_eq!(
        a.ready.as_ref().unwrap().command,
        ProgramCommand::Shell("ready-check".into())
    );
    let b = worker(&c, "b");
    assert_eq!(b.stop_timeout, Duration::from_secs(5));
    assert_eq!(b.restart, RestartMode::Always);
    assert!(
        b.health.is_none(),
        "a default health without command gives none"
    );
    assert!(b.ready.is_some());
}

#[test]
fn relative_and_tilde_paths() {
    let c = ok(r#"
[worker.a]
command = "a"
cwd = "./sub/../x"
log = "logs/a.log"
[worker.b]
command = "b"
cwd = "~"
log = "~/b.log"
"#);
    assert_eq!(worker(&c, "a").cwd, Path::new("/etc/pw/sub/../x"));
    assert_eq!(worker(&c, "a").log, Some("/etc/pw/logs/a.log".into()));
    assert_eq!(worker(&c, "b").cwd, Path::new("/home/u"));
    assert_eq!(worker(&c, "b").log, Some("/home/u/b.log".into()));
    let no_home = ParseContext {
        host: "h".into(),
        home: None,
    };
    let e = parse(
        "[worker.a]\ncommand = \"a\"\ncwd = \"~/x\"\n",
        Path::new(FILE),
        &no_home,
    )
    .unwrap_err();
    assert_eq!(
        e[0].to_string(),
        "/etc/pw/pidwatch.toml:3:7: worker.a.cwd: `~` needs a home directory, and HOME is not set"
    );
}

#[test]
fn instances_by_number_and_list() {
    let c = ok(r#"
[worker.n]
instances = 3
command = ["run", "--id=%i", "--host=%h", "100%%", "%n%I"]
cwd = "/srv/%i"
env = { ID = "%i" }
pidfile = "/run/%i.pid"
log = "/log/%i.log"
health = { command = "ping %i" }
[worker.l]
instances = ["code", "review"]
command = "celery worker -n %i@%h"
"#);
    let ids: Vec<&str> = c.workers.iter().map(|w| w.id.as_str()).collect();
    assert_eq!(ids, ["l@code", "l@review", "n@1", "n@2", "n@3"]);
    let n2 = worker(&c, "n@2");
    assert_eq!(n2.instance.as_deref(), Some("2"));
    assert_eq!(
        n2.command.argv(),
        ["run", "--id=2", "--host=box", "100%", "%n%I"]
    );
    assert_eq!(n2.cwd, Path::new("/srv/2"));
    assert_eq!(n2.env, [("ID".to_string(), "2".to_string())]);
    let adopt = n2.adopt.as_ref().unwrap();
    assert_eq!(adopt.pidfile, Path::new("/run/2.pid"));
    assert_eq!(adopt.matches, "run");
    assert_eq!(adopt.start, n2.command);
    assert_eq!(n2.log, Some("/log/2.log".into()));
    assert_eq!(
        n2.health.as_ref().unwrap().command,
        ProgramCommand::Shell("ping 2".into())
    );
    assert_eq!(
        worker(&c, "l@review").command,
        ProgramCommand::Shell("celery worker -n review@box".into())
    );
}

#[test]
fn instances_by_glob() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("workers")).unwrap();
    for f in ["summarize.js", "classify.js", "notes.txt"] {
        std::fs::write(dir.path().join("workers").join(f), "").unwrap();
    }
    let file = dir.path().join("pw.toml");
    let c = ok_at(
        "[worker.js]\ninstances = \"workers/*.js\"\ncommand = [\"node\", \"%f\"]\n[worker.none]\ninstances = \"nothing/*.js\"\ncommand = \"x %f\"\n",
        &file,
    );
    assert_eq!(c.name, "pw");
    let ids: Vec<&str> = c.workers.iter().map(|w| w.id.as_str()).collect();
    assert_eq!(ids, ["js@classify", "js@summarize"]);
    let path = dir.path().join("workers/classify.js");
    let w = worker(&c, "js@classify");
    assert_eq!(w.file.as_deref(), Some(path.as_path()));
    assert_eq!(
        w.command.argv(),
        ["node".to_string(), path.display().to_string()]
    );
}

#[test]
fn adopt_mode() {
    let c = ok(r#"
[worker.celery]
instances = ["code"]
pidfile = "/run/celery/%i.pid"
start = "celery multi start %i --pidfile=/run/celery/%n.pid"
stop = ["celery", "multi", "stopwait", "%i"]
"#);
    let w = &c.workers[0];
    let a = w.adopt.as_ref().unwrap();
    assert_eq!(
        a.start,
        ProgramCommand::Shell("celery multi start code --pidfile=/run/celery/%n.pid".into())
    );
    assert_eq!(w.command, a.start);
    assert_eq!(a.matches, "celery");
    assert_eq!(
        a.stop,
        Some(ProgramCommand::Argv(
            ["celery", "multi", "stopwait", "code"]
                .map(String::from)
                .to_vec()
        ))
    );
    let c =
        ok("[worker.x]\ncommand = \"/usr/bin/a.b+c run\"\npidfile = \"x.pid\"\nmatch = \"a.*\"\n");
    assert_eq!(c.workers[0].adopt.as_ref().unwrap().matches, "a.*");
    assert_eq!(
        c.workers[0].adopt.as_ref().unwrap().pidfile,
        Path::new("/etc/pw/x.pid")
    );
    let c = ok("[worker.x]\ncommand = \"/usr/bin/a.b+c run\"\npidfile = \"x.pid\"\n");
    assert_eq!(c.workers[0].adopt.as_ref().unwrap().matches, r"a\.b\+c");
}

#[test]
fn depends_on_resolves_to_worker_ids() {
    let c = ok(r#"
[worker.redis]
command = "redis-server"
[worker.celery]
instances = ["code", "review"]
command = "celery -n %i"
[worker.web]
command = "web"
depends_on = ["redis", "celery"]
[worker.api]
command = "api"
depends_on = ["celery@review"]
"#);
    let deps = |id: &str| {
        worker(&c, id)
            .depends_on
            .iter()
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(deps("web"), ["celery@code", "celery@review", "redis"]);
    assert_eq!(deps("api"), ["celery@review"]);
    assert!(deps("redis").is_empty());
}

#[test]
fn env_file_then_env() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a.env"),
        "# comment\n\nexport OPENAI_API_KEY=\"sk-x\"\nMODEL = 'gpt'\nPLAIN=a=b\nEMPTY=\n",
    )
    .unwrap();
    let file = dir.path().join("pidwatch.toml");
    let c = ok_at(
        "[worker.a]\ncommand = \"a\"\nenv_file = \"a.env\"\nenv = { MODEL = \"mine\", X = \"1\" }\n",
        &file,
    );
    let w = &c.workers[0];
    assert_eq!(
        w.env,
        [
            ("OPENAI_API_KEY", "sk-x"),
            ("MODEL", "mine"),
            ("PLAIN", "a=b"),
            ("EMPTY", ""),
            ("X", "1")
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
    );
    assert_eq!(
        w.shown_env(),
        [
            "OPENAI_API_KEY=***",
            "MODEL=mine",
            "PLAIN=a=b",
            "EMPTY=",
            "X=1"
        ]
    );
}

#[test]
fn env_file_errors_name_its_path_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let env = dir.path().join("bad.env");
    std::fs::write(&env, "A=1\nthis is wrong\n1X=2\nQ=\"open\n").unwrap();
    let file = dir.path().join("pidwatch.toml");
    let errors = parse(
        "[worker.a]\ncommand = \"a\"\nenv_file = \"bad.env\"\n",
        &file,
        &ctx(),
    )
    .unwrap_err();
    let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
    let e = env.display();
    assert_eq!(
        shown,
        [
            format!("{e}:2:1: worker.a.env_file: expected KEY=VALUE"),
            format!(
                "{e}:3:1: worker.a.env_file: `1X` is not a valid variable name (letters, digits and `_`, not starting with a digit)"
            ),
            format!("{e}:4:1: worker.a.env_file: the value of `Q` has no closing \""),
        ]
    );
    let missing = errs_at(
        "[worker.a]\ncommand = \"a\"\nenv_file = \"none.env\"\n",
        &file,
    );
    assert_eq!(missing.len(), 1);
    assert!(
        missing[0].starts_with(&format!(
            "3:12: worker.a.env_file: {:?}: cannot open: No such file",
            dir.path().join("none.env").display().to_string()
        )),
        "{missing:?}"
    );
}

#[test]
fn syntax_error_is_one_error_with_its_position() {
    let e = errs("[worker.a]\ncommand = \"a\"\nstop_timeout = = 3\n");
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e, ["3:16: extra `=`, expected nothing"]);
    let e = errs("[worker.a]\ncommand = \"a\"\ncommand = \"b\"\n");
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].starts_with("3:1: "), "{e:?}");
}

#[test]
fn unknown_keys_with_suggestions() {
    assert_eq!(
        one("state_dri = \"x\"\n"),
        "1:1: state_dri: unknown key `state_dri`; did you mean `state_dir`?"
    );
    assert_eq!(
        one("[worker.code]\ncommand = \"a\"\nstop_timout = 3\n"),
        "3:1: worker.code.stop_timout: unknown key `stop_timout`; did you mean `stop_timeout`?"
    );
    assert_eq!(
        one("[defaults]\nrestrat = \"always\"\n"),
        "2:1: defaults.restrat: unknown key `restrat`; did you mean `restart`?"
    );
    assert_eq!(
        one("[worker.code]\ncommand = \"a\"\nhealth = { command = \"x\", intervall = 3 }\n"),
        "3:27: worker.code.health.intervall: unknown key `intervall`; did you mean `interval`?"
    );
    assert_eq!(
        one("[worker.code]\ncommand = \"a\"\nfrobnicate = 1\n"),
        "3:1: worker.code.frobnicate: unknown key `frobnicate`"
    );
    assert_eq!(
        one("[workers.code]\ncommand = \"a\"\n"),
        "1:2: workers: unknown key `workers`; did you mean `worker`?"
    );
    assert_eq!(
        one("[defaults]\ncommand = \"a\"\n"),
        "2:1: defaults.command: `command` cannot be in [defaults]: set it in each [worker.<name>]"
    );
}

#[test]
fn wrong_types() {
    assert_eq!(
        one("[worker.code]\ncommand = 5\n"),
        "2:11: worker.code.command: expected a list of strings or a string, found integer 5"
    );
    assert_eq!(
        one("[worker.code]\ncommand = []\n"),
        "2:11: worker.code.command: expected a non-empty list, found an array"
    );
    assert_eq!(
        one("[worker.code]\ncommand = [\"a\", true]\n"),
        "2:17: worker.code.command: expected a string in the command's list, found boolean true"
    );
    assert_eq!(
        one("[worker.code]\ncommand = \"a\"\ncwd = 1.5\n"),
        "3:7: worker.code.cwd: expected a string, found float 1.5"
    );
    assert_eq!(
        one("[worker.code]\ncommand = \"a\"\nenv = [\"A=1\"]\n"),
        "3:7: worker.code.env: expected a table, found an array"
    );
    assert_eq!(
        one("[worker.code]\ncommand = \"a\"\nmax_restarts = -1\n"),
        "3:16: worker.code.max_restarts: expected an integer ≥ 0, found integer -1"
    );
    assert_eq!(
        one("[worker.code]\ncommand = \"a\"\nhealth = { command = \"x\", retries = 0 }\n"),
        "3:37: worker.code.health.retries: expected an integer ≥ 1, found integer 0"
    );
    assert_eq!(
        one("[worker]\ncode = 3\n"),
        "2:8: worker.code: expected a table ([worker.<name>]), found integer 3"
    );
    assert_eq!(
        one("[worker.code]\ncommand = \"a\"\nhealth = { interval = 3 }\n"),
        "3:10: worker.code.health: missing `command`"
    );
    assert_eq!(
        one("[worker.code]\ncwd = \"/\"\n"),
        "1:9: worker.code: missing `command`"
    );
}

#[test]
fn durations() {
    let base = "[worker.code]\ncommand = \"a\"\n";
    assert_eq!(
        one(&format!("{base}stop_timeout = \"ten\"\n")),
        "3:16: worker.code.stop_timeout: expected seconds, found \"ten\""
    );
    assert_eq!(
        one(&format!("{base}restart_delay = -5\n")),
        "3:17: worker.code.restart_delay: expected seconds ≥ 0, found integer -5"
    );
    assert_eq!(
        one(&format!("{base}stable_after = -0.5\n")),
        "3:16: worker.code.stable_after: expected seconds ≥ 0, found float -0.5"
    );
    assert_eq!(
        one(&format!("{base}stop_timeout = 601\n")),
        "3:16: worker.code.stop_timeout: expected at most 600 seconds, found integer 601"
    );
    assert_eq!(
        one(&format!("{base}stop_timeout = \"15m\"\n")),
        "3:16: worker.code.stop_timeout: expected at most 600 seconds, found \"15m\""
    );
    assert_eq!(
        one(&format!(
            "{base}health = {{ command = \"x\", interval = 0 }}\n"
        )),
        "3:38: worker.code.health.interval: expected seconds > 0, found integer 0"
    );
    assert_eq!(
        one(&format!("{base}stop_timeout = true\n")),
        "3:16: worker.code.stop_timeout: expected seconds, found boolean true"
    );
    let long = "x".repeat(100);
    let e = one(&format!("{base}stop_timeout = \"\\u001b[31m{long}\"\n"));
    assert!(
        e.ends_with(&format!("found \"\\u{{1b}}[31m{}\"…", &long[..55])),
        "{e}"
    );
    let c = ok(&format!(
        "{base}stop_timeout = \"1.5\"\nrestart_delay = \"1h\"\n"
    ));
    assert_eq!(c.workers[0].stop_timeout, Duration::from_millis(1500));
    assert_eq!(c.workers[0].restart_delay, Duration::from_secs(3600));
}

#[test]
fn bad_signal_restart_regex() {
    let base = "[worker.code]\ncommand = \"a\"\n";
    assert_eq!(
        one(&format!("{base}stop_signal = \"TERN\"\n")),
        "3:15: worker.code.stop_signal: expected a signal name (TERM, INT, QUIT, HUP, KILL, USR1, USR2, …) or number, found \"TERN\""
    );
    assert_eq!(
        one(&format!("{base}stop_signal = 99\n")),
        "3:15: worker.code.stop_signal: expected a signal name (TERM, INT, QUIT, HUP, KILL, USR1, USR2, …) or number, found integer 99"
    );
    assert_eq!(
        one(&format!("{base}restart = \"sometimes\"\n")),
        "3:11: worker.code.restart: expected \"on-failure\", \"always\" or \"never\", found \"sometimes\""
    );
    assert_eq!(
        one(&format!("{base}pidfile = \"a.pid\"\nmatch = \"(celery\"\n")),
        "4:9: worker.code.match: invalid regular expression \"(celery\": unclosed group"
    );
}

#[test]
fn adopt_keys_need_pidfile() {
    let e = errs("[worker.code]\ncommand = \"a\"\nstart = \"s\"\nstop = \"t\"\nmatch = \"m\"\n");
    assert_eq!(
        e,
        [
            "3:9: worker.code.start: `start` is for adopt mode and needs `pidfile`",
            "4:8: worker.code.stop: `stop` is for adopt mode and needs `pidfile`",
            "5:9: worker.code.match: `match` is for adopt mode and needs `pidfile`",
        ]
    );
    assert_eq!(
        one("[worker.code]\npidfile = \"a.pid\"\n"),
        "1:9: worker.code: adopt mode (`pidfile`) needs `start` or `command`"
    );
}

#[test]
fn percent_sequences_need_their_instances() {
    assert_eq!(
        one("[worker.code]\ncommand = \"run %i\"\n"),
        "2:11: worker.code.command: `%i` needs `instances` (write `%%` for a literal `%`)"
    );
    assert_eq!(
        one("[worker.code]\ninstances = 2\ncommand = [\"run\", \"%f\"]\n"),
        "3:11: worker.code.command: `%f` needs `instances` to be a glob of files (write `%%` for a literal `%`)"
    );
    // Never the value of a secret.
    assert_eq!(
        one("[worker.code]\ncommand = \"a\"\nenv = { API_KEY = \"s3cr3t-%i\" }\n"),
        "3:19: worker.code.env.API_KEY: `%i` needs `instances` (write `%%` for a literal `%`)"
    );
    let c = ok("[worker.code]\ncommand = \"date +%%s %n %\"\n");
    assert_eq!(
        c.workers[0].command,
        ProgramCommand::Shell("date +%s %n %".into())
    );
}

#[test]
fn names_and_instances() {
    assert_eq!(
        one("[worker.\"a@b\"]\ncommand = \"a\"\n"),
        "1:9: worker.\"a@b\": invalid worker name \"a@b\": use letters, digits, `_`, `.` and `-` (not `@`)"
    );
    assert_eq!(
        one("[worker.a]\ncommand = \"a\"\ninstances = [\"x\", \"y z\"]\n"),
        "3:19: worker.a.instances: invalid instance name \"y z\": use letters, digits, `_`, `.` and `-`"
    );
    assert_eq!(
        one("[worker.a]\ncommand = \"a\"\ninstances = [\"x\", \"x\"]\n"),
        "3:19: worker.a.instances: duplicate instance \"x\""
    );
    assert_eq!(
        one("[worker.a]\ncommand = \"a\"\ninstances = 0\n"),
        "3:13: worker.a.instances: expected a number from 1 to 1000, found integer 0"
    );
    assert_eq!(
        one("[worker.a]\ncommand = \"a\"\ninstances = true\n"),
        "3:13: worker.a.instances: expected a number ≥ 1, a list of names or a glob of files, found boolean true"
    );
    assert_eq!(
        one("[worker.a]\ncommand = \"a\"\ninstances = \"w/[\"\n"),
        "3:13: worker.a.instances: invalid glob \"w/[\": Pattern syntax error near position 2: invalid range pattern"
    );
}

#[test]
fn env_names_and_secret_values() {
    assert_eq!(
        one("[worker.a]\ncommand = \"a\"\nenv = { \"1BAD\" = \"x\" }\n"),
        "3:9: worker.a.env.1BAD: `1BAD` is not a valid variable name (letters, digits and `_`, not starting with a digit)"
    );
    assert_eq!(
        one("[worker.a]\ncommand = \"a\"\nsecret_env = [\"A-B\"]\n"),
        "3:15: worker.a.secret_env: `A-B` is not a valid variable name (letters, digits and `_`, not starting with a digit)"
    );
    assert_eq!(
        one("[worker.a]\ncommand = \"a\"\nenv = { PORT = 6379 }\n"),
        "3:16: worker.a.env.PORT: expected a string, found integer 6379"
    );
    assert_eq!(
        one("[worker.a]\ncommand = \"a\"\nenv = { DB_PASSWORD = 123456 }\n"),
        "3:23: worker.a.env.DB_PASSWORD: expected a string, found an integer"
    );
    assert_eq!(
        one("[worker.a]\ncommand = \"a\"\nsecret_env = [\"PIN\"]\nenv = { PIN = 1234 }\n"),
        "4:15: worker.a.env.PIN: expected a string, found an integer"
    );
    assert_eq!(
        one(
            "[defaults]\nsecret_env = [\"PIN\"]\n[worker.a]\ncommand = \"a\"\nenv = { PIN = 1234 }\n"
        ),
        "5:15: worker.a.env.PIN: expected a string, found an integer"
    );
}

#[test]
fn depends_on_errors_and_cycles() {
    assert_eq!(
        one(
            "[worker.redis]\ncommand = \"r\"\n[worker.a]\ncommand = \"a\"\ndepends_on = [\"rdis\"]\n"
        ),
        "5:15: worker.a.depends_on: unknown worker \"rdis\"; did you mean `redis`?"
    );
    assert_eq!(
        one(
            "[worker.r]\ncommand = \"r\"\ninstances = 2\n[worker.a]\ncommand = \"a\"\ndepends_on = [\"r@3\"]\n"
        ),
        "6:15: worker.a.depends_on: worker \"r\" has no instance \"r@3\""
    );
    assert_eq!(
        one("[worker.a]\ncommand = \"a\"\ndepends_on = [\"a\"]\n"),
        "3:14: worker.a.depends_on: `a` depends on itself"
    );
    assert_eq!(
        one(r#"
[worker.a]
command = "a"
depends_on = ["b"]
[worker.b]
command = "b"
depends_on = ["c"]
[worker.c]
command = "c"
depends_on = ["a"]
[worker.d]
command = "d"
depends_on = ["a"]
"#),
        "4:14: worker.a.depends_on: a dependency cycle among `a`, `b`, `c`"
    );
    assert_eq!(
        one("[worker.a]\ncommand = \"a\"\ninstances = 2\ndepends_on = [\"a\"]\n"),
        "4:14: worker.a.depends_on: a dependency cycle among `a@1`, `a@2`"
    );
}

#[test]
fn several_errors_are_all_reported_in_order() {
    let e = errs(
        r#"state_dir = 5
[defaults]
restart = "no"

[worker.code]
command = "run"
stop_timeout = "ten"
stop_timout = 3

[worker.review]
command = 7
depends_on = ["nobody"]
health = { command = "x", interval = "soon" }
"#,
    );
    assert_eq!(
        e,
        [
            "1:13: state_dir: expected a string, found integer 5",
            "3:11: defaults.restart: expected \"on-failure\", \"always\" or \"never\", found \"no\"",
            "7:16: worker.code.stop_timeout: expected seconds, found \"ten\"",
            "8:1: worker.code.stop_timout: unknown key `stop_timout`; did you mean `stop_timeout`?",
            "11:11: worker.review.command: expected a list of strings or a string, found integer 7",
            "13:38: worker.review.health.interval: expected seconds, found \"soon\"",
        ]
    );
}

#[test]
fn columns_count_characters() {
    assert_eq!(
        errs("[worker.a]\ncommand = \"a\"\nenv = { \"É\" = \"x\", B = 1 }\n"),
        [
            "3:9: worker.a.env.\"É\": \"É\" is not a valid variable name (letters, digits and `_`, not starting with a digit)",
            "3:24: worker.a.env.B: expected a string, found integer 1",
        ]
    );
}

#[test]
fn a_bad_probe_command_is_not_also_missing() {
    assert_eq!(
        one("[worker.a]\ncommand = \"a\"\nhealth = { command = 5 }\n"),
        "3:22: worker.a.health.command: expected a list of strings or a string, found integer 5"
    );
}

#[test]
fn load_reads_regular_files_only() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("celery.toml");
    std::fs::write(&file, "[worker.a]\ncommand = \"a\"\n").unwrap();
    let c = load(&file, &ctx()).unwrap();
    assert_eq!(
        (c.name.as_str(), c.path.as_path()),
        ("celery", file.as_path())
    );
    assert_eq!(c.workers[0].cwd, dir.path());

    let io_error = |path: &Path| {
        let e = load(path, &ctx()).unwrap_err();
        assert_eq!(e.len(), 1);
        assert_eq!((e[0].line, e[0].column, e[0].field.as_str()), (0, 0, ""));
        e[0].to_string()
    };
    let missing = dir.path().join("missing.toml");
    assert!(io_error(&missing).starts_with(&format!("{}: cannot open: ", missing.display())));
    assert_eq!(
        io_error(dir.path()),
        format!("{}: not a regular file", dir.path().display())
    );
    let fifo = dir.path().join("fifo.toml");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    assert_eq!(
        io_error(&fifo),
        format!("{}: not a regular file", fifo.display())
    );
    let big = dir.path().join("big.toml");
    std::fs::write(&big, "#".repeat(MAX_FILE_BYTES as usize + 1)).unwrap();
    assert_eq!(
        io_error(&big),
        format!("{}: larger than 1048576 bytes", big.display())
    );
    let binary = dir.path().join("bin.toml");
    std::fs::write(&binary, [0xff, 0xfe]).unwrap();
    assert_eq!(
        io_error(&binary),
        format!("{}: not UTF-8 text", binary.display())
    );
}

#[test]
fn every_example_loads() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut loaded = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let config = load(&path, &ctx()).unwrap_or_else(|errors| {
                panic!(
                    "{}",
                    errors
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("\n")
                )
            });
            loaded.insert(config.name.clone(), config);
        }
    }
    let ids =
        |name: &str| -> Vec<String> { loaded[name].workers.iter().map(|w| w.id.clone()).collect() };
    assert_eq!(ids("celery"), ["celery@code", "celery@review", "redis"]);
    assert_eq!(ids("celery-multi"), ["celery@code", "celery@review"]);
    assert_eq!(ids("node-workers"), ["ai@classify", "ai@summarize"]);
    assert_eq!(ids("workers-list"), ["bot@alpha", "bot@beta"]);
    assert_eq!(ids("redis"), ["consumer", "producer", "redis"]);

    let celery = &loaded["celery"].workers[0];
    assert_eq!(
        celery.command.argv().join(" "),
        "celery -A proj worker -n code@box -Q code --loglevel=INFO"
    );
    assert_eq!(celery.depends_on, BTreeSet::from(["redis".to_string()]));
    assert_eq!(celery.stop_timeout, Duration::from_secs(600));
    let multi = loaded["celery-multi"].workers[1].adopt.as_ref().unwrap();
    assert_eq!(multi.pidfile, Path::new("/run/celery/review.pid"));
    assert_eq!(
        multi.start,
        ProgramCommand::Shell(
            "celery multi start review -A proj --pidfile=/run/celery/%n.pid --logfile=/var/log/celery/%n%I.log".into()
        )
    );
    let ai = &loaded["node-workers"].workers[1];
    assert_eq!(
        ai.command.argv(),
        [
            "node".to_string(),
            dir.join("node-workers/workers/summarize.js")
                .display()
                .to_string()
        ]
    );
    assert_eq!(
        ai.shown_env(),
        [
            "OPENAI_API_KEY=***",
            "AI_MODEL=gpt-4o-mini",
            "WORKER_NAME=summarize"
        ]
    );
    assert_eq!(
        (ai.max_restarts, ai.restart_delay),
        (3, Duration::from_secs(5))
    );
    let bot = &loaded["workers-list"].workers[1];
    assert_eq!(bot.cwd, Path::new("/srv/bots/beta"));
    assert_eq!(
        bot.shown_env(),
        ["BOT_TOKEN=***", "BOT_CHANNEL=#beta", "BOT_NAME=beta"]
    );
    let producer = &loaded["redis"].workers[1];
    assert!(producer.command.argv()[2].contains("date +%s"));
    assert!(loaded["redis"].workers[2].ready.is_some());
}

#[test]
fn a_match_names_its_instance_regex_escaped() {
    let c = ok(r#"
[worker.celery]
instances = ["code", "a.b"]
pidfile = "/run/%i.pid"
start = "celery multi start %i"
match = "celery.* -n %i@%h( |$)"
"#);
    let code = worker(&c, "celery@code").adopt.as_ref().unwrap();
    assert_eq!(code.matches, "celery.* -n code@box( |$)");
    // A name's regex characters match only themselves.
    let dotted = worker(&c, "celery@a.b").adopt.as_ref().unwrap();
    assert_eq!(dotted.matches, r"celery.* -n a\.b@box( |$)");
    let re = regex::Regex::new(&dotted.matches).unwrap();
    assert!(re.is_match("python -m celery worker -n a.b@box"));
    assert!(!re.is_match("python -m celery worker -n axb@box"));
    // %i without instances is an error at its place, as elsewhere.
    let e = one("[worker.w]\npidfile = \"/run/w.pid\"\nstart = \"w\"\nmatch = \"w %i\"\n");
    assert!(e.contains("worker.w.match"), "{e}");
}

/// A folder holding a config file's secrets: `name` with `content` and
/// `mode`.
fn secret_dir(files: &[(&str, &str, u32)]) -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    for (name, content, mode) in files {
        let path = dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(*mode)).unwrap();
    }
    dir
}

const A_WORKER: &str = "[worker.a]\ncommand = \"a\"\n";

#[test]
fn no_api_table_gives_its_defaults() {
    let c = ok(A_WORKER);
    assert_eq!(c.api, ApiConfig::default());
    assert_eq!(c.api.listen, None);
    assert_eq!(c.api.token, None);
    assert!(c.api.trusted_callers.is_empty());
    assert_eq!(c.api.secret, None);
    assert_eq!(c.api.heal_max, 1);
    assert_eq!(c.api.heal_window, Duration::from_secs(300));
    assert_eq!(c.api.post_heal, None);
    assert_eq!(c.api.post_heal_timeout, Duration::from_secs(60));
    assert_eq!(c.api.challenge_ttl, Duration::from_secs(120));
    // An empty table too.
    assert_eq!(ok(&format!("[api]\n{A_WORKER}")).api, ApiConfig::default());
}

#[test]
fn api_values_of_every_key() {
    let dir = secret_dir(&[
        ("api.token", "  tok-123 abc\n", 0o600),
        ("auto.secret", "s3cret\n", 0o400),
    ]);
    let file = dir.path().join("pidwatch.toml");
    let c = ok_at(
        &format!(
            r#"[api]
listen = "0.0.0.0:7070"
token_file = "api.token"
trusted_callers = ["claude-opus-4", "gpt-5", "claude-opus-4"]
secret_header = "X-Automation-Secret"
secret_file = "auto.secret"
heal_max = 3
heal_window = "10m"
post_heal = ["/usr/bin/selftest", "--host", "%h"]
post_heal_timeout = 30
challenge_ttl = "1h"
{A_WORKER}"#
        ),
        &file,
    );
    let api = &c.api;
    assert_eq!(api.listen, Some("0.0.0.0:7070".parse().unwrap()));
    assert_eq!(api.token_file, Some(dir.path().join("api.token")));
    let token = api.token.as_ref().unwrap();
    assert!(token.matches(b"tok-123 abc"), "read trimmed");
    assert!(!token.matches(b"  tok-123 abc\n"));
    assert_eq!(
        api.trusted_callers,
        ["claude-opus-4", "gpt-5"].map(String::from).into()
    );
    let secret = api.secret.as_ref().unwrap();
    assert_eq!(secret.name, "x-automation-secret");
    assert!(secret.secret.matches(b"s3cret"));
    assert_eq!(api.secret_file, Some(dir.path().join("auto.secret")));
    assert_eq!(api.heal_max, 3);
    assert_eq!(api.heal_window, Duration::from_secs(600));
    assert_eq!(
        api.post_heal,
        Some(ProgramCommand::Argv(vec![
            "/usr/bin/selftest".into(),
            "--host".into(),
            "box".into()
        ]))
    );
    assert_eq!(api.post_heal_timeout, Duration::from_secs(30));
    assert_eq!(api.challenge_ttl, Duration::from_secs(3600));
    // Nothing of a secret is ever shown.
    let shown = format!("{c:?}");
    assert!(
        !shown.contains("tok-123") && !shown.contains("s3cret"),
        "{shown}"
    );

    let c = ok("[api]\nlisten = \"[::1]:7070\"\npost_heal = \"exec selftest\"\n");
    assert_eq!(c.api.listen, Some("[::1]:7070".parse().unwrap()));
    assert_eq!(
        c.api.post_heal,
        Some(ProgramCommand::Shell("exec selftest".into()))
    );
}

#[test]
fn a_non_loopback_listen_needs_a_token() {
    assert_eq!(
        one("[api]\nlisten = \"0.0.0.0:7070\"\n"),
        "2:10: api.listen: plain HTTP only on loopback: a non-loopback listen (0.0.0.0:7070) \
         needs token_file"
    );
    assert_eq!(
        one("[api]\nlisten = \"[2001:db8::1]:80\"\n"),
        "2:10: api.listen: plain HTTP only on loopback: a non-loopback listen \
         ([2001:db8::1]:80) needs token_file"
    );
    for loopback in [
        "127.0.0.1:7070",
        "127.1.2.3:1",
        "[::1]:7070",
        "[::ffff:127.0.0.1]:7070",
    ] {
        let c = ok(&format!("[api]\nlisten = \"{loopback}\"\n"));
        assert_eq!(c.api.listen, Some(loopback.parse().unwrap()));
    }
    // A token file that cannot be read is reported once, as itself.
    let e = errs("[api]\nlisten = \"0.0.0.0:7070\"\ntoken_file = \"/nonexistent/token\"\n");
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].starts_with("3:14: api.token_file: "), "{e:?}");
}

#[test]
fn bad_listen_addresses() {
    for (value, col) in [
        ("\"localhost:7070\"", 10),
        ("\"127.0.0.1\"", 10),
        ("\"127.0.0.1:99999\"", 10),
        ("7070", 10),
    ] {
        let e = one(&format!("[api]\nlisten = {value}\n"));
        assert!(
            e.starts_with(&format!("2:{col}: api.listen: expected ")),
            "{e}"
        );
    }
    assert_eq!(
        one("[api]\nlisten = \"localhost:7070\"\n"),
        "2:10: api.listen: expected ADDR:PORT with an IP address (\"127.0.0.1:7070\", \
         \"[::1]:7070\"), found \"localhost:7070\""
    );
}

#[test]
fn secret_files_must_be_the_owners_only() {
    let dir = secret_dir(&[
        ("group.token", "t\n", 0o640),
        ("other.token", "t\n", 0o604),
        ("writable.token", "t\n", 0o620),
        ("empty.token", " \n\n", 0o600),
        ("binary.token", "t\u{1}x\n", 0o600),
        ("big.token", &"x".repeat(5000), 0o600),
        ("ok.token", "t\n", 0o600),
    ]);
    std::fs::create_dir(dir.path().join("dir.token")).unwrap();
    let file = dir.path().join("pidwatch.toml");
    let shown = |name: &str| format!("{:?}", dir.path().join(name).display().to_string());
    for (name, what) in [
        (
            "group.token",
            "mode 0640 lets group or others at it; it must be the owner's only (chmod 600)",
        ),
        (
            "other.token",
            "mode 0604 lets group or others at it; it must be the owner's only (chmod 600)",
        ),
        (
            "writable.token",
            "mode 0620 lets group or others at it; it must be the owner's only (chmod 600)",
        ),
        ("empty.token", "empty"),
        (
            "binary.token",
            "not printable ASCII text (it is sent in an HTTP header)",
        ),
        ("big.token", "larger than 4096 bytes"),
        ("dir.token", "not a regular file"),
    ] {
        let e = errs_at(&format!("[api]\ntoken_file = \"{name}\"\n"), &file);
        assert_eq!(
            e,
            [format!("2:14: api.token_file: {}: {what}", shown(name))],
            "{name}"
        );
        let e = errs_at(
            &format!("[api]\nsecret_header = \"X-S\"\nsecret_file = \"{name}\"\n"),
            &file,
        );
        assert_eq!(
            e,
            [format!("3:15: api.secret_file: {}: {what}", shown(name))],
            "{name}"
        );
    }
    let missing = errs_at("[api]\ntoken_file = \"none.token\"\n", &file);
    assert!(
        missing[0].starts_with(&format!(
            "2:14: api.token_file: {}: cannot open: No such file",
            shown("none.token")
        )),
        "{missing:?}"
    );
    // `~` and relative paths resolve as other paths do.
    let c = ok_at("[api]\ntoken_file = \"./ok.token\"\n", &file);
    assert_eq!(c.api.token_file, Some(dir.path().join("ok.token")));
    let e = one("[api]\ntoken_file = \"~x/t\"\n");
    assert!(e.starts_with("2:14: api.token_file: only `~`"), "{e}");
}

#[test]
fn a_secret_header_and_its_file_come_together() {
    assert_eq!(
        one("[api]\nsecret_header = \"X-Automation-Secret\"\n"),
        "2:17: api.secret_header: `secret_header` needs `secret_file`"
    );
    assert_eq!(
        one("[api]\nsecret_file = \"s\"\n"),
        "2:15: api.secret_file: `secret_file` needs `secret_header`"
    );
    assert_eq!(
        one("[api]\nsecret_header = \"Bad Header\"\nsecret_file = \"/nonexistent\"\n"),
        "2:17: api.secret_header: invalid header name \"Bad Header\": letters, digits and `-`, \
         e.g. \"X-Automation-Secret\""
    );
    for reserved in ["Authorization", "x-caller-id", "X-Confirmed", "Host"] {
        let e = errs(&format!(
            "[api]\nsecret_header = \"{reserved}\"\nsecret_file = \"/nonexistent\"\n"
        ));
        assert_eq!(
            e[0],
            format!(
                "2:17: api.secret_header: `{reserved}` is used by HTTP or the control API; \
                 choose another, e.g. \"X-Automation-Secret\""
            )
        );
    }
}

#[test]
fn api_bad_values() {
    assert_eq!(
        one("[api]\ntrusted_callers = \"claude\"\n"),
        "2:19: api.trusted_callers: expected a list of strings, found \"claude\""
    );
    assert_eq!(
        one("[api]\ntrusted_callers = [\"ok\", \"two words\"]\n"),
        "2:26: api.trusted_callers: invalid caller id \"two words\": 1 to 128 visible ASCII \
         characters, no spaces"
    );
    assert_eq!(
        errs("[api]\ntrusted_callers = [\"a b\", \"\"]\n"),
        [
            "2:20: api.trusted_callers: invalid caller id \"a b\": 1 to 128 visible ASCII \
             characters, no spaces",
            "2:27: api.trusted_callers: invalid caller id \"\": 1 to 128 visible ASCII \
             characters, no spaces"
        ]
    );
    assert_eq!(
        one("[api]\nheal_max = 0\n"),
        "2:12: api.heal_max: expected an integer ≥ 1, found integer 0"
    );
    assert_eq!(
        one("[api]\nheal_window = 0\n"),
        "2:15: api.heal_window: expected seconds > 0, found integer 0"
    );
    assert_eq!(
        one("[api]\npost_heal_timeout = \"soon\"\n"),
        "2:21: api.post_heal_timeout: expected seconds, found \"soon\""
    );
    assert_eq!(
        one("[api]\nchallenge_ttl = \"2h\"\n"),
        "2:17: api.challenge_ttl: expected at most 3600 seconds, found \"2h\""
    );
    assert_eq!(
        one("[api]\npost_heal = []\n"),
        "2:13: api.post_heal: expected a non-empty list, found an array"
    );
    assert_eq!(
        one("[api]\npost_heal = \"selftest %i\"\n"),
        format!(
            "2:13: api.post_heal: {}",
            super::expand::ExpandError::NoInstance
        )
    );
    assert_eq!(
        one("api = 1\n"),
        "1:7: api: expected a table, found integer 1"
    );
}

#[test]
fn api_unknown_keys_with_suggestions() {
    assert_eq!(
        one("[api]\nheal_windw = 3\n"),
        "2:1: api.heal_windw: unknown key `heal_windw`; did you mean `heal_window`?"
    );
    assert_eq!(
        one("[api]\ntoken = \"inline\"\n"),
        "2:1: api.token: unknown key `token`"
    );
    assert_eq!(
        one("[apii]\n"),
        "1:2: apii: unknown key `apii`; did you mean `api`?"
    );
}

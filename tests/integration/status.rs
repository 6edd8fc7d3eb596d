//! `status` of workers from a config file: what `--json` says of a
//! program (instance, command, mode, live processes, how its last run
//! ended), that no value of its environment is shown, and how `--watch`
//! ends (a signal; `q` on a terminal). Real processes, the real binary.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::termios::{LocalFlags, tcgetattr};
use serde_json::{Value, json};

use crate::programs::{FAKE_CELERY, Programs};
use crate::util::{Monitor, is_alive, proc_state, wait_for, worker};

const SECRETS: [&str; 2] = ["hunter2-status-token", "plain-status-value"];

fn config() -> String {
    "[worker.app]\ninstances = [\"blue\"]\ncommand = [\"sleep\", \"1021\"]\n\
     env = { API_TOKEN = \"hunter2-status-token\", PLAIN = \"plain-status-value\" }\n\
     secret_env = [\"PLAIN\"]\n\n\
     [worker.solo]\ncommand = \"exec sleep 1022\"\n"
        .into()
}

fn json_of(text: &str, err: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text} {err}"))
}

fn assert_no_secret(texts: &[&str]) {
    for text in texts {
        for secret in SECRETS {
            assert!(!text.contains(secret), "{secret} shown: {text}");
        }
    }
}

#[test]
fn status_json_shows_a_programs_instance_command_processes_and_last_exit_never_its_env() {
    let p = Programs::new(&config());
    let (code, out, err) = p.run(&["start", "--all"]);
    assert_eq!(code, 0, "{out} {err}");
    let pid = p.live_pid("app@blue").expect("app@blue runs");

    let (code, text, err) = p.run(&["status", "--json"]);
    assert_eq!(code, 0, "{text} {err}");
    let doc = json_of(&text, &err);
    let app = worker(&doc, "app@blue");
    assert_eq!(app["verdict"], "running", "{text}");
    assert_eq!(app["instance"], "blue");
    assert_eq!(app["command"], json!(["sleep", "1021"]));
    assert_eq!(app["mode"], "foreground");
    let pids: Vec<i64> = app["processes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["pid"].as_i64())
        .collect();
    assert!(pids.contains(&i64::from(pid)), "{pid} in {text}");
    assert!(app["last_exit"].is_null(), "{text}");
    let solo = worker(&doc, "solo");
    assert!(solo["instance"].is_null(), "{text}");
    assert_eq!(solo["command"], json!(["sh", "-c", "exec sleep 1022"]));
    assert_no_secret(&[&out, &err, &text]);

    let (code, out, err) = p.run(&["stop", "app@blue"]);
    assert_eq!(code, 0, "{out} {err}");
    wait_for("app@blue gone", Duration::from_secs(20), || {
        !is_alive(pid) || proc_state(pid) == Some('Z')
    });
    let (code, text, err) = p.run(&["status", "--json"]);
    assert_eq!(code, 0, "{text} {err}");
    let doc = json_of(&text, &err);
    let app = worker(&doc, "app@blue");
    assert_eq!(app["verdict"], "stopped", "{text}");
    assert_eq!(app["processes"], json!([]), "{text}");
    let last = &app["last_exit"];
    assert_eq!(last["stopped"], true, "{text}");
    assert_eq!(last["signal"], "TERM", "{text}");
    assert!(last["exit_status"].is_null(), "{text}");
    let at = last["at"].as_str().unwrap_or_default();
    assert!(chrono::DateTime::parse_from_rfc3339(at).is_ok(), "{text}");
    // The table says it too.
    let (_, table, table_err) = p.run(&["status"]);
    assert!(table.contains("SIGTERM (stop)"), "{table}");
    assert_no_secret(&[&out, &err, &text, &table, &table_err]);
}

#[test]
fn status_json_of_an_adopted_program_shows_its_start_command() {
    let p = Programs::new("");
    let script = p.path().join("fake-celery");
    fs::write(&script, FAKE_CELERY).unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    let run = p.path().join("run");
    fs::create_dir_all(&run).unwrap();
    let (s, r) = (script.display(), run.display());
    p.write_config(&format!(
        "[worker.celery]\ncommand = [\"{s}\", \"--daemon\", \"{r}/c.pid\"]\n\
         pidfile = \"{r}/c.pid\"\nstart = [\"{s}\", \"start\", \"{r}/c.pid\"]\n\
         match = \"fake-celery --daemon\"\n"
    ));
    let (code, out, err) = p.run(&["start", "--all"]);
    assert_eq!(code, 0, "{out} {err}");
    let doc = p.status();
    let celery = worker(&doc, "celery");
    assert_eq!(celery["verdict"], "running", "{doc}");
    assert_eq!(celery["mode"], "adopt");
    assert_eq!(
        celery["command"],
        json!([s.to_string(), "start", format!("{r}/c.pid")])
    );
    assert!(celery["instance"].is_null());
    let (code, _, _) = p.run(&["stop", "--all"]);
    assert_eq!(code, 0);
}

#[test]
fn status_watch_without_a_terminal_redraws_in_place_until_sigterm() {
    let p = Programs::new(&config());
    let (code, out, err) = p.run(&["start", "app"]);
    assert_eq!(code, 0, "{out} {err}");
    let mut watch = Monitor::spawn(
        p.pidwatch(&["status", "--watch"]),
        &p.path().join("watch.out"),
    );
    wait_for("two frames", Duration::from_secs(20), || {
        watch.output().matches("\u{1b}[J").count() >= 2
    });
    watch.signal(nix::sys::signal::Signal::SIGTERM);
    let (code, text) = watch.wait_exit(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("app@blue") && text.contains("running"),
        "{text}"
    );
    // Drawn over the last frame: home, each line cleared to its end, the
    // rest cleared below; never the whole screen first.
    assert!(text.starts_with("\u{1b}[H"), "{text:?}");
    assert!(text.contains("\u{1b}[K\n"), "{text:?}");
    assert!(!text.contains("\u{1b}[2J"), "{text:?}");
    assert_no_secret(&[&text]);
}

#[test]
fn status_watch_on_a_terminal_quits_on_q_and_gives_the_terminal_back() {
    let p = Programs::new(&config());
    let pty = nix::pty::openpty(None, None).unwrap();
    let before = tcgetattr(&pty.slave).unwrap();
    assert!(
        before
            .local_flags
            .contains(LocalFlags::ICANON | LocalFlags::ECHO)
    );
    let mut watch = Monitor::spawn_with_stdin(
        p.pidwatch(&["status", "--watch"]),
        &p.path().join("watch.out"),
        Stdio::from(pty.slave.try_clone().unwrap()),
    );
    wait_for("a frame", Duration::from_secs(20), || {
        watch.output().contains("\u{1b}[J")
    });
    // Keys are read one by one and not echoed while it watches.
    let during = tcgetattr(&pty.slave).unwrap();
    assert!(
        !during
            .local_flags
            .intersects(LocalFlags::ICANON | LocalFlags::ECHO)
    );
    nix::unistd::write(&pty.master, b"xq").unwrap();
    let (code, text) = watch.wait_exit(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("not_started"), "{text}");
    let after = tcgetattr(&pty.slave).unwrap();
    assert_eq!(after.local_flags, before.local_flags);
}

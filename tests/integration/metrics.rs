//! `pidwatch metrics`: the workers of a config file as Prometheus metrics,
//! printed or written for node_exporter's textfile collector, from one
//! look like `status`'s (a running monitor's, else its own). Real
//! processes, the real binary.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::programs::Programs;
use crate::util::{kill9, wait_for};

/// The samples of an exposition by name and labels as written
/// (`pidwatch_worker_up{worker="app"}`), each line checked: a `# HELP` or
/// `# TYPE`, or a sample with one value and no timestamp.
fn samples(text: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if line.starts_with("# HELP ") || line.starts_with("# TYPE ") {
            continue;
        }
        assert!(!line.starts_with('#'), "not the Prometheus format: {line}");
        let (key, value) = line.rsplit_once(' ').expect("a sample");
        assert!(key.starts_with("pidwatch_"), "{line}");
        let value: f64 = value.parse().unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(
            out.insert(key.to_string(), value).is_none(),
            "twice: {line}"
        );
    }
    out
}

fn sample(all: &BTreeMap<String, f64>, key: &str) -> f64 {
    *all.get(key)
        .unwrap_or_else(|| panic!("no {key} in {all:#?}"))
}

fn read_textfile(path: &Path) -> BTreeMap<String, f64> {
    samples(&fs::read_to_string(path).unwrap())
}

const CONFIG: &str = "[worker.app]\ncommand = [\"sleep\", \"1041\"]\nrestart_delay = 0\n\n\
     [worker.crash]\ncommand = \"exit 3\"\nrestart_delay = 0\nmax_restarts = 1\n\n\
     [worker.idle]\ncommand = [\"sleep\", \"1042\"]\n";

#[test]
fn metrics_textfile_shows_workers_and_counts_restarts_across_monitor_restarts() {
    let p = Programs::new(CONFIG);
    let textfile = p.path().join("textfile/pidwatch.prom");
    let textfile_arg = textfile.display().to_string();
    let mut monitor = p.monitor();
    wait_for(
        "app and idle running, crash given up",
        Duration::from_secs(20),
        || {
            p.live_pid("app").is_some()
                && p.live_pid("idle").is_some()
                && p.verdict("crash") == "given_up"
        },
    );
    let victim = p.live_pid("app").unwrap();
    kill9(victim);
    wait_for("app restarted", Duration::from_secs(20), || {
        p.live_pid("app").is_some_and(|pid| pid != victim)
    });

    // Through the monitor: exit 1, crash being given up.
    let (code, out, err) = p.run(&["metrics", "--textfile", &textfile_arg]);
    assert_eq!(code, 1, "{out} {err}");
    assert_eq!(out, "", "nothing on stdout with --textfile");
    let mode = fs::metadata(&textfile).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o644);
    let leftovers: Vec<_> = fs::read_dir(textfile.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, ["pidwatch.prom"], "no temp file left");
    let m = read_textfile(&textfile);
    let text = fs::read_to_string(&textfile).unwrap();
    assert!(
        text.contains("# TYPE pidwatch_worker_restarts_total counter\n"),
        "{text}"
    );
    assert_eq!(
        sample(&m, r#"pidwatch_worker_up{worker="app"}"#),
        1.0,
        "{text}"
    );
    assert_eq!(
        sample(&m, r#"pidwatch_worker_restarts_total{worker="app"}"#),
        1.0,
        "{text}"
    );
    assert_eq!(sample(&m, r#"pidwatch_worker_up{worker="crash"}"#), 0.0);
    assert_eq!(
        sample(&m, r#"pidwatch_worker_given_up{worker="crash"}"#),
        1.0
    );
    assert_eq!(
        sample(
            &m,
            r#"pidwatch_worker_verdict{worker="crash",verdict="given_up"}"#
        ),
        1.0
    );
    assert_eq!(
        sample(&m, r#"pidwatch_worker_restart_limit{worker="crash"}"#),
        1.0
    );
    assert_eq!(
        sample(&m, r#"pidwatch_worker_last_exit_code{worker="crash"}"#),
        3.0,
        "{text}"
    );
    assert!(
        sample(&m, r#"pidwatch_worker_memory_bytes{worker="idle"}"#) > 0.0,
        "{text}"
    );
    assert!(
        m.contains_key(r#"pidwatch_worker_cpu_seconds_total{worker="idle"}"#),
        "{text}"
    );
    // A one-shot look has none of the monitor's own metrics.
    assert!(!text.contains("pidwatch_pass_duration"), "{text}");

    // A stopped worker is down, and says it was stopped.
    let (code, _, err) = p.run(&["stop", "idle"]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = p.run(&["metrics"]);
    assert_eq!(code, 1, "{out} {err}");
    let m = samples(&out);
    assert_eq!(
        sample(&m, r#"pidwatch_worker_up{worker="idle"}"#),
        0.0,
        "{out}"
    );
    assert_eq!(
        sample(
            &m,
            r#"pidwatch_worker_verdict{worker="idle",verdict="stopped"}"#
        ),
        1.0,
        "{out}"
    );
    assert_eq!(
        sample(
            &m,
            r#"pidwatch_worker_verdict{worker="idle",verdict="dead"}"#
        ),
        0.0
    );
    assert!(
        !m.contains_key(r#"pidwatch_worker_memory_bytes{worker="idle"}"#),
        "{out}"
    );

    // Without the monitor, from the state DB: the count of restarts stays.
    monitor.signal(Signal::SIGTERM);
    let (code, output) = monitor.wait_exit(Duration::from_secs(20));
    assert_eq!(code, Some(0), "{output}");
    let (code, out, err) = p.run(&["metrics", "--textfile", &textfile_arg]);
    assert_eq!(code, 1, "{out} {err}");
    let m = read_textfile(&textfile);
    assert_eq!(
        sample(&m, r#"pidwatch_worker_restarts_total{worker="app"}"#),
        1.0
    );
    assert_eq!(sample(&m, r#"pidwatch_worker_up{worker="app"}"#), 1.0);
}

#[test]
fn metrics_are_never_written_through_a_symlink_and_have_no_json() {
    let p = Programs::new(CONFIG);
    let victim = p.path().join("victim");
    fs::write(&victim, "precious\n").unwrap();
    let link = p.path().join("pidwatch.prom");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    let (code, out, err) = p.run(&["metrics", "--textfile", "pidwatch.prom"]);
    assert_eq!(code, 2, "{out} {err}");
    assert!(err.contains("is a symbolic link"), "{err}");
    assert_eq!(fs::read_to_string(&victim).unwrap(), "precious\n");
    assert!(fs::symlink_metadata(&link).unwrap().is_symlink());

    let (code, out, err) = p.run(&["metrics", "--json"]);
    assert_eq!(code, 2, "{out} {err}");
    assert!(err.contains("no --json"), "{err}");

    // Nothing started yet: every worker down, no failure, exit 0.
    let (code, out, err) = p.run(&["metrics"]);
    assert_eq!(code, 0, "{out} {err}");
    let m = samples(&out);
    for worker in ["app", "crash", "idle"] {
        let key = format!("pidwatch_worker_verdict{{worker=\"{worker}\",verdict=\"not_started\"}}");
        assert_eq!(sample(&m, &key), 1.0, "{out}");
    }
    let (code, out, _) = p.run(&["metrics", "--quiet"]);
    assert_eq!((code, out.as_str()), (0, ""));
}

//! `pidwatch check` end to end.

use std::fs;
use std::os::unix::fs::symlink;
use std::time::{Duration, SystemTime};

use rusqlite::Connection;
use serde_json::json;

use crate::util::*;

#[test]
fn verdicts_of_live_dead_zombie_and_reused_workers() {
    let mut fx = Fixture::new();
    for stream in ["Live", "Dead", "Zombie", "Reused"] {
        fx.task(stream, "in_progress", &[]);
        fx.ran_before(stream);
    }
    let live = fx.live_worker("Live");
    let dead = Proc::reaped_pid();
    fx.pidfile("Dead", &format!("{dead}\n"));
    let zombie = Proc::zombie();
    fx.pidfile("Zombie", &format!("{}\n", zombie.pid));
    // A live process whose PID file was written a minute before it started.
    let reused = Proc::sleep();
    let path = fx.pidfile("Reused", &format!("{}\n", reused.pid));
    fx.set_mtime(&path, SystemTime::now() - Duration::from_secs(60));

    let (code, out, _) = fx.check_json(&[]);
    assert_eq!(code, 1, "{out}");
    let expect = [
        ("Live", "running", None, Some(live)),
        ("Dead", "dead", Some("no_such_process"), Some(dead)),
        ("Zombie", "dead", Some("zombie"), Some(zombie.pid)),
        ("Reused", "dead", Some("pid_reused"), Some(reused.pid)),
    ];
    for (id, verdict, reason, pid) in expect {
        let w = worker(&out, id);
        assert_eq!(w["verdict"], verdict, "{id}: {w}");
        assert_eq!(w["reason"], json!(reason), "{id}: {w}");
        assert_eq!(w["pid"], json!(pid), "{id}: {w}");
    }
    assert_eq!(out["summary"]["running"], 1);
    assert_eq!(out["summary"]["dead"], 3);
    drop(zombie);
    drop(reused);
}

#[test]
fn every_kind_of_invalid_pidfile_is_reported_with_its_reason() {
    let mut fx = Fixture::new();
    let live = fx.live_worker("Target");
    fx.task("Target", "pending", &[]);
    type Make = Box<dyn Fn(&std::path::Path)>;
    let cases: Vec<(&str, Make, &str)> = vec![
        ("Empty", Box::new(|p| fs::write(p, "").unwrap()), "empty"),
        (
            "Blank",
            Box::new(|p| fs::write(p, " \n\n").unwrap()),
            "empty",
        ),
        (
            "Text",
            Box::new(|p| fs::write(p, "hello\n").unwrap()),
            "not a number",
        ),
        (
            "Two",
            Box::new(|p| fs::write(p, "12 34\n").unwrap()),
            "not a number",
        ),
        (
            "Minus",
            Box::new(|p| fs::write(p, "-1\n").unwrap()),
            "out of range: -1",
        ),
        (
            "Zero",
            Box::new(|p| fs::write(p, "0\n").unwrap()),
            "out of range: 0",
        ),
        (
            "One",
            Box::new(|p| fs::write(p, "1\n").unwrap()),
            "out of range: 1",
        ),
        (
            "Huge",
            Box::new(|p| fs::write(p, "99999999999\n").unwrap()),
            "out of range",
        ),
        (
            "Large",
            Box::new(|p| fs::write(p, "7".repeat(100)).unwrap()),
            "too large: 100 bytes",
        ),
        (
            "Folder",
            Box::new(|p| fs::create_dir(p).unwrap()),
            "not a regular file",
        ),
        (
            "Fifo",
            Box::new(|p| nix::unistd::mkfifo(p, nix::sys::stat::Mode::S_IRWXU).unwrap()),
            "not a regular file",
        ),
    ];
    for (stream, make, _) in &cases {
        fx.task(stream, "in_progress", &[]);
        fx.ran_before(stream);
        let path = fx.pidfile_path(stream);
        make(&path);
        // Older than the grace given to a PID file being written.
        if fs::symlink_metadata(&path).is_ok_and(|m| m.is_file()) {
            fx.set_mtime(&path, SystemTime::now() - Duration::from_secs(60));
        }
    }
    // A symlink to a valid PID file of a live process is still refused.
    fx.task("Link", "in_progress", &[]);
    fx.ran_before("Link");
    symlink(fx.pidfile_path("Target"), fx.pidfile_path("Link")).unwrap();

    let (code, out, _) = fx.check_json(&[]);
    assert_eq!(code, 1);
    for (stream, _, detail) in &cases {
        let w = worker(&out, stream);
        assert_eq!(w["verdict"], "dead", "{stream}: {w}");
        assert_eq!(w["reason"], "invalid_pidfile", "{stream}: {w}");
        assert_eq!(w["pid"], json!(null), "{stream}: {w}");
        let got = w["detail"].as_str().unwrap();
        assert!(
            got.starts_with(detail),
            "{stream}: {got:?} should start with {detail:?}"
        );
    }
    let link = worker(&out, "Link");
    assert_eq!(link["reason"], "invalid_pidfile");
    assert_eq!(link["detail"], "symlink");
    // The bad files did not stop the check of the good one, and are untouched.
    assert_eq!(worker(&out, "Target")["verdict"], "running");
    assert_eq!(worker(&out, "Target")["pid"], live);
    assert_eq!(
        fs::read_to_string(fx.pidfile_path("Text")).unwrap(),
        "hello\n"
    );
    assert!(fx.pidfile_path("Empty").exists());
}

#[test]
fn dependencies_completion_and_initiative_scope() {
    let mut fx = Fixture::new();
    // Done: complete with a cancelled task; archived and other-initiative
    // tasks of the same stream id must not count.
    fx.task("Done", "completed", &[]);
    fx.task("Done", "cancelled", &[]);
    fx.task_raw("PRD-1", "pending", r#"{"streamId":"Done"}"#, true);
    fx.task_raw("PRD-OTHER", "pending", r#"{"streamId":"Done"}"#, false);
    fx.ran_before("Done");
    // Busy: incomplete, running.
    fx.task("Busy", "in_progress", &[]);
    fx.live_worker("Busy");
    // OnBusy waits on an incomplete stream; OnGhost on an unknown one;
    // Cycle1 and Cycle2 on each other; OnDone may run and is dead.
    fx.task("OnBusy", "pending", &["Busy"]);
    fx.task("OnGhost", "pending", &["Ghost"]);
    fx.task("Cycle1", "pending", &["Cycle2"]);
    fx.task("Cycle2", "pending", &[]);
    fx.task_raw(
        "PRD-1",
        "pending",
        r#"{"streamId":"Cycle2","streamDependencies":["Cycle1"]}"#,
        false,
    );
    fx.task("OnDone", "pending", &["Done"]);
    for s in ["OnBusy", "OnGhost", "Cycle1", "Cycle2", "OnDone"] {
        fx.ran_before(s);
    }
    // Fresh never ran: not started.
    fx.task("Fresh", "pending", &[]);
    // A task of another initiative only: not a worker at all.
    fx.task_raw("PRD-OTHER", "pending", r#"{"streamId":"Elsewhere"}"#, false);

    let (code, out, stderr) = fx.check_json(&[]);
    assert_eq!(code, 1, "{out}");
    let verdict = |id: &str| worker(&out, id)["verdict"].as_str().unwrap().to_string();
    assert_eq!(verdict("Done"), "completed");
    assert_eq!(
        worker(&out, "Done")["tasks"],
        json!({"total": 2, "completed": 1,
        "in_progress": 0, "pending": 0, "blocked": 0, "cancelled": 1})
    );
    assert_eq!(verdict("Busy"), "running");
    assert_eq!(verdict("OnBusy"), "waiting");
    assert_eq!(verdict("OnGhost"), "waiting");
    assert_eq!(verdict("Cycle1"), "waiting");
    assert_eq!(verdict("Cycle2"), "waiting");
    assert_eq!(worker(&out, "Cycle2")["dependencies"], json!(["Cycle1"]));
    assert_eq!(verdict("OnDone"), "dead");
    assert_eq!(verdict("Fresh"), "not_started");
    let ids: Vec<&str> = out["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["id"].as_str().unwrap())
        .collect();
    assert!(!ids.contains(&"Elsewhere"), "{ids:?}");
    assert!(
        stderr.contains("OnGhost depends on unknown stream Ghost"),
        "{stderr}"
    );
    assert!(
        stderr.contains("dependency cycle among Cycle1, Cycle2"),
        "{stderr}"
    );
    assert_eq!(
        out["summary"],
        json!({"running": 1, "completed": 1, "not_started": 1, "stopped": 0,
        "waiting": 4, "given_up": 0, "dead": 1})
    );
}

#[test]
fn a_row_with_broken_metadata_is_named_and_skipped() {
    let mut fx = Fixture::new();
    fx.live_worker("A");
    fx.task("A", "in_progress", &[]);
    let bad = fx.task_raw("PRD-1", "pending", r#"{"streamId": "A", oops"#, false);
    fx.task("A", "completed", &[]);
    let (code, out, stderr) = fx.check_json(&[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains(&format!("task \"{bad}\": metadata is not valid JSON")),
        "{stderr}"
    );
    assert_eq!(worker(&out, "A")["tasks"]["total"], 2);
    assert!(out["warnings"].to_string().contains(&bad));
}

#[test]
fn healthy_workers_exit_zero_and_log_like_the_original() {
    let mut fx = Fixture::new();
    fx.task("Stream-A", "in_progress", &[]);
    fx.live_worker("Stream-A");
    fx.cmd().arg("check").assert().code(0);
    let log = fx.monitor_log();
    assert!(
        log.contains("[INFO] Monitoring initiative: Ship the thing"),
        "{log}"
    );
    assert!(log.contains("[INFO] All workers healthy"), "{log}");

    fx.task("Stream-B", "pending", &[]);
    fx.task("Stream-E", "pending", &[]);
    fx.ran_before("Stream-B");
    fx.ran_before("Stream-E");
    fx.cmd().arg("check").assert().code(1);
    let log = fx.monitor_log();
    let line = log
        .lines()
        .find(|l| l.contains("[WARNING] Found"))
        .expect(&log);
    assert!(
        line.ends_with("[WARNING] Found 2 dead worker(s): Stream-B, Stream-E"),
        "{line}"
    );
    // [2026-01-13T10:30:30.567890] [WARNING] ...
    let stamp = &line[1..27];
    assert!(
        chrono::NaiveDateTime::parse_from_str(stamp, "%Y-%m-%dT%H:%M:%S%.6f").is_ok(),
        "{line}"
    );
    assert_eq!(&line[27..29], "] ");
    assert!(log.contains("[INFO] Auto-restart disabled. Use --auto-restart to enable."));
}

#[test]
fn human_output_has_a_line_per_worker_and_a_summary() {
    let mut fx = Fixture::new();
    fx.task("Stream-A", "in_progress", &[]);
    let pid = fx.live_worker("Stream-A");
    fx.task("Stream-B", "pending", &["Stream-A"]);
    fx.ran_before("Stream-B");
    let out = fx
        .cmd()
        .args(["check", "--color", "never"])
        .assert()
        .code(0)
        .get_output()
        .clone();
    let text = String::from_utf8(out.stdout).unwrap();
    let a = text
        .lines()
        .find(|l| l.starts_with("Stream-A"))
        .expect(&text);
    assert!(
        a.contains("running") && a.contains(&pid.to_string()) && a.contains("0/1"),
        "{a}"
    );
    let b = text
        .lines()
        .find(|l| l.starts_with("Stream-B"))
        .expect(&text);
    assert!(
        b.contains("waiting") && b.contains("no_pidfile") && b.contains("Stream-A"),
        "{b}"
    );
    assert!(
        text.contains("2 worker(s): 1 running, 0 completed, 0 not started, 0 stopped, 1 waiting"),
        "{text}"
    );
    assert!(!text.contains('\u{1b}'), "no colour with --color never");
    let colored = fx
        .cmd()
        .args(["check", "--color", "always"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&colored.stdout).contains('\u{1b}'));
    let quiet = fx.cmd().args(["check", "-q"]).output().unwrap();
    assert!(quiet.stdout.is_empty());
}

#[test]
fn default_paths_come_from_home_and_the_folder_layout() {
    let mut fx = Fixture::new();
    fx.task("Stream-A", "in_progress", &[]);
    fx.live_worker("Stream-A");
    // No --dir, --tasks-db or --memory-db: cwd is the project root, the
    // workspace is its folder name, the DBs are under HOME.
    let (code, out, stderr) = fx.check_json(&[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(out["initiative"]["id"], INITIATIVE);
    assert_eq!(out["initiative"]["name"], "Ship the thing");
    // From elsewhere, --dir (here through the environment) finds the same.
    let (code, _, stderr) = {
        let out = fx
            .cmd()
            .current_dir(fx.tmp.path())
            .env("PIDWATCH_DIR", "proj/.claude/orchestrator")
            .args(["check", "--json"])
            .output()
            .unwrap();
        (
            out.status.code(),
            (),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    assert_eq!(code, Some(0), "{stderr}");
    // A wrong workspace id points at a DB that does not exist: exit 3, named.
    let out = fx
        .cmd()
        .args(["check", "--workspace", "nope"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(".claude/tasks/nope/tasks.db") && err.contains("does not exist"),
        "{err}"
    );
}

#[test]
fn an_explicit_initiative_overrides_the_active_one() {
    let mut fx = Fixture::new();
    fx.task_raw("PRD-OTHER", "pending", r#"{"streamId":"Old"}"#, false);
    fx.task("New", "pending", &[]);
    let (_, out, _) = fx.check_json(&["--initiative", OTHER_INITIATIVE]);
    let ids: Vec<&str> = out["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["Old"]);
    assert_eq!(out["initiative"]["name"], "Old thing");
}

fn assert_exit_3(fx: &Fixture, needles: &[&str]) {
    let out = fx.cmd().arg("check").output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    for n in needles {
        assert!(err.contains(n), "stderr {err:?} should contain {n:?}");
    }
}

#[test]
fn a_missing_task_db_cannot_be_checked() {
    let fx = Fixture::new();
    fs::remove_file(&fx.tasks_db).unwrap();
    assert_exit_3(
        &fx,
        &[
            "task DB",
            &fx.tasks_db.display().to_string(),
            "does not exist",
        ],
    );
}

#[test]
fn a_corrupt_task_db_cannot_be_checked() {
    let fx = Fixture::new();
    let _ = fs::remove_file(fx.tasks_db.with_extension("db-wal"));
    let _ = fs::remove_file(fx.tasks_db.with_extension("db-shm"));
    fs::write(
        &fx.tasks_db,
        b"this is not an sqlite database, just text that is long enough to fill a header........",
    )
    .unwrap();
    assert_exit_3(
        &fx,
        &[
            "task DB",
            &fx.tasks_db.display().to_string(),
            "not an SQLite database",
        ],
    );
}

#[test]
fn a_task_db_without_the_schema_cannot_be_checked() {
    let fx = Fixture::new();
    fs::remove_file(&fx.tasks_db).unwrap();
    Connection::open(&fx.tasks_db)
        .unwrap()
        .execute_batch("CREATE TABLE unrelated (x);")
        .unwrap();
    assert_exit_3(&fx, &["task DB", "has no table `tasks`"]);

    fs::remove_file(&fx.tasks_db).unwrap();
    Connection::open(&fx.tasks_db)
        .unwrap()
        .execute_batch("CREATE TABLE tasks (id TEXT, title TEXT); CREATE TABLE prds (id TEXT);")
        .unwrap();
    assert_exit_3(&fx, &["lacks column(s) prd_id, status, metadata"]);
}

#[test]
fn a_task_db_locked_past_the_timeout_cannot_be_checked() {
    let fx = Fixture::new();
    let conn = Connection::open(&fx.tasks_db).unwrap();
    conn.pragma_update(None, "journal_mode", "DELETE").unwrap();
    conn.execute_batch("BEGIN EXCLUSIVE; INSERT INTO migrations VALUES (1, 'x');")
        .unwrap();
    assert_exit_3(
        &fx,
        &["task DB", "locked by another program for more than 5 s"],
    );
    conn.execute_batch("ROLLBACK").unwrap();
}

#[test]
fn a_missing_orchestrator_dir_or_memory_db_cannot_be_checked() {
    let fx = Fixture::new();
    let out = fx
        .cmd()
        .args(["check", "--dir", "nowhere/.claude/orchestrator"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("orchestrator dir"));

    fs::remove_file(&fx.memory_db).unwrap();
    assert_exit_3(&fx, &["memory DB", "does not exist"]);
    // ... unless the initiative is given.
    fx.cmd()
        .args(["check", "--initiative", INITIATIVE])
        .assert()
        .code(0);
}

#[test]
fn usage_errors_exit_2() {
    let fx = Fixture::new();
    fx.cmd()
        .args(["check", "--color", "sometimes"])
        .assert()
        .code(2);
    fx.cmd()
        .args(["check", "--restart-delay", "-3"])
        .assert()
        .code(2);
    fx.cmd().arg("frobnicate").assert().code(2);
    fx.cmd()
        .args(["check", "--workspace", "a/b"])
        .assert()
        .code(2);
}

#[test]
fn help_shows_examples() {
    let fx = Fixture::new();
    let help = fx.cmd().arg("--help").output().unwrap();
    assert!(String::from_utf8_lossy(&help.stdout).contains("Examples:"));
    let help = fx.cmd().args(["check", "--help"]).output().unwrap();
    assert!(String::from_utf8_lossy(&help.stdout).contains("pidwatch check --json"));
}

/// Sets the status of initiative `id` in the fixture's memory DB.
fn set_initiative_status(fx: &Fixture, id: &str, status: &str) {
    rusqlite::Connection::open(&fx.memory_db)
        .unwrap()
        .execute(
            "UPDATE initiatives SET status = ?1 WHERE id = ?2",
            [status, id],
        )
        .unwrap();
}

#[test]
fn no_active_initiative_is_nothing_to_watch_not_a_failure() {
    let mut fx = Fixture::new();
    fx.task("W", "completed", &[]);
    set_initiative_status(&fx, INITIATIVE, "COMPLETE");
    let out = fx.cmd().arg("check").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "No active initiative found"
    );
    let (code, json, _) = fx.check_json(&[]);
    assert_eq!(code, 0);
    assert!(json["initiative"].is_null(), "{json}");
    assert_eq!(json["workers"], serde_json::json!([]));
    assert_eq!(json["summary"]["dead"], 0);
    let status = fx.cmd().args(["status"]).output().unwrap();
    assert_eq!(status.status.code(), Some(0));
    assert!(
        fx.monitor_log()
            .contains("[INFO] No active initiative found")
    );
}

#[test]
fn the_monitor_follows_the_active_initiative() {
    const LIMIT: Duration = Duration::from_secs(15);
    let mut fx = Fixture::new();
    fx.task("W", "in_progress", &[]);
    fx.live_worker("W");
    set_initiative_status(&fx, INITIATIVE, "COMPLETE");
    let _monitor = fx.monitor(&["--interval", "0.2"]);
    wait_for("the monitor to wait for an initiative", LIMIT, || {
        fx.monitor_log().contains("No active initiative found")
    });
    set_initiative_status(&fx, INITIATIVE, "IN PROGRESS");
    wait_for("the monitor to watch it", LIMIT, || {
        fx.monitor_log().contains("All workers healthy")
    });
    set_initiative_status(&fx, INITIATIVE, "COMPLETE");
    wait_for("the monitor to notice it is complete", LIMIT, || {
        fx.monitor_log()
            .matches("No active initiative found")
            .count()
            == 2
    });
    set_initiative_status(&fx, OTHER_INITIATIVE, "IN PROGRESS");
    wait_for("the monitor to switch", LIMIT, || {
        fx.monitor_log()
            .contains("Monitoring initiative: Old thing")
    });
}

#[test]
fn hostile_ids_are_cut_and_escaped_in_every_message() {
    let mut fx = Fixture::new();
    fx.task("A", "in_progress", &[]);
    // A 100 KB stream id with a right-to-left override, and a task whose
    // status hides one too.
    let huge = format!("evil\u{202E}{}", "x".repeat(100_000));
    let meta = serde_json::json!({"streamId": format!("{huge}/slash")});
    fx.task_raw("PRD-1", "pending", &meta.to_string(), false);
    fx.task_raw(
        "PRD-1",
        "odd\u{202E}status",
        &serde_json::json!({"streamId": "A"}).to_string(),
        false,
    );
    let (_, _, stderr) = fx.check_json(&[]);
    for text in [stderr.clone(), fx.monitor_log()] {
        assert!(
            !text.contains('\u{202E}'),
            "an override reached the output: {text:.300}"
        );
        for line in text.lines() {
            assert!(line.len() < 1000, "an unbounded line: {line:.300}");
        }
    }
    assert!(stderr.contains("more bytes)"), "{stderr:.1000}");
    assert!(
        stderr.contains("\\u{202e}"),
        "shown escaped: {stderr:.1000}"
    );
}

#[test]
fn a_pid_file_caught_while_being_written_is_not_a_death() {
    let mut fx = Fixture::new();
    fx.task("E", "in_progress", &[]);
    fx.ran_before("E");
    // As `echo $$ > pids/E.pid` leaves it between its open and its write.
    let path = fx.pidfile("E", "");
    let (code, out, stderr) = fx.check_json(&["--auto-restart", "--restart-delay", "0"]);
    assert_eq!(code, 0, "nothing reported yet: {stderr}");
    assert_eq!(worker(&out, "E")["verdict"], "running");
    assert!(
        !fx.monitor_log().contains("dead worker"),
        "{}",
        fx.monitor_log()
    );
    // Still empty after the grace: now it is what it is.
    fx.set_mtime(&path, SystemTime::now() - Duration::from_secs(10));
    let (code, out, _) = fx.check_json(&[]);
    assert_eq!(code, 1);
    assert_eq!(worker(&out, "E")["reason"], "invalid_pidfile");
}

#[test]
fn a_missing_or_unusable_wrapper_is_a_configuration_error_not_an_attempt() {
    let mut fx = Fixture::new();
    fx.task("W", "in_progress", &[]);
    fx.ran_before("W");
    let wrapper = fx.dir.join("worker-wrapper.sh");
    fs::remove_file(&wrapper).unwrap();
    let out = fx.cmd().args(["check", "--auto-restart"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("the wrapper {} does not exist", wrapper.display())),
        "{err}"
    );
    assert!(err.contains("pidwatch wrapper --install"), "{err}");
    assert_eq!(
        fx.monitor_log().matches("[ERROR]").count(),
        1,
        "{}",
        fx.monitor_log()
    );
    fs::write(&wrapper, "#!/bin/sh\n").unwrap();
    let out = fx.cmd().args(["check", "--auto-restart"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot be executed"));
    // Nothing was attempted.
    assert!(fx.history().iter().all(|(_, k)| k != "restart_attempted"));
    let run = fx.cmd().args(["run", "--auto-restart"]).output().unwrap();
    assert_eq!(run.status.code(), Some(2));
}

#[test]
fn cli_errors_are_plain_and_json_errors_are_json() {
    let fx = Fixture::new();
    let out = fx
        .cmd()
        .args(["--dir", "/nonexistent/orchestrator", "check"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
    let out = fx
        .cmd()
        .args(["check", "--json", "--tasks-db", "/nonexistent/tasks.db"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(doc["exit_code"], 3);
    assert_eq!(doc["error"]["kind"], "database");
    assert_eq!(doc["error"]["path"], "/nonexistent/tasks.db");
    assert!(
        doc["error"]["message"]
            .as_str()
            .unwrap()
            .contains("tasks.db")
    );
    let out = fx
        .cmd()
        .args(["check", "--restart-delay", "abc"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected seconds, e.g. 5 or 0.5"));
    let out = fx.cmd().args(["run", "--json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let help = fx.cmd().args(["check", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("Exit codes:") && help.contains("Global options:"),
        "{help}"
    );
}

#[test]
fn the_man_page_and_completions_come_from_the_help() {
    let fx = Fixture::new();
    let man = fx.cmd().arg("man").output().unwrap();
    assert_eq!(man.status.code(), Some(0));
    let man = String::from_utf8_lossy(&man.stdout);
    assert!(
        man.contains(".TH pidwatch 1") && man.contains("SYNOPSIS"),
        "{man:.500}"
    );
    for shell in ["bash", "zsh", "fish"] {
        let out = fx.cmd().args(["completions", shell]).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{shell}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("auto-restart") && text.contains("pidwatch"),
            "{shell}: {text:.300}"
        );
    }
}

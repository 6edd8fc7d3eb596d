//! `pidwatch audit` through the real binary, on state DBs filled through
//! the library; the `[api]` table's token file checked by `config check`.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use chrono::{DateTime, Utc};
use pidwatch::store::audit::{AuditRecord, TrustedBy};
use pidwatch::store::statedb::StateDb;
use rusqlite::Connection;
use serde_json::Value;

use crate::programs::Programs;

const WORKER: &str = "[worker.app]\ncommand = \"sleep 600\"\n";

fn record(minute: u32, caller: Option<&str>, trusted_by: TrustedBy, status: u16) -> AuditRecord {
    AuditRecord {
        at: DateTime::parse_from_rfc3339(&format!("2026-03-01T10:{minute:02}:00.250Z"))
            .unwrap()
            .with_timezone(&Utc),
        caller_id: caller.map(String::from),
        trusted_by,
        peer: if trusted_by == TrustedBy::Token {
            "127.0.0.1:40312".into()
        } else {
            "uid 1000".into()
        },
        method: "POST".into(),
        path: "/v1/restart".into(),
        target: Some("app".into()),
        status,
        result: if status == 200 {
            "executed".into()
        } else {
            "confirmation required".into()
        },
    }
}

fn records() -> Vec<AuditRecord> {
    vec![
        record(1, Some("claude-opus"), TrustedBy::Token, 200),
        record(2, None, TrustedBy::Refused, 403),
        record(3, Some("gpt-x\u{1b}[2J"), TrustedBy::Confirmation, 200),
    ]
}

fn user_version(db: &std::path::Path) -> i64 {
    Connection::open(db)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn audit_prints_the_state_dbs_records_newest_last() {
    let p = Programs::new(WORKER);
    let db_path = p.state().join("pidwatch.db");

    // Nothing recorded yet: said, exit 0, and no DB created.
    let (code, out, err) = p.run(&["audit"]);
    assert_eq!((code, out.as_str()), (0, "no audit records\n"), "{err}");
    let (code, out, _) = p.run(&["audit", "--json"]);
    assert_eq!(code, 0);
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap(),
        Value::Array(vec![])
    );
    assert!(!db_path.exists());

    let db = StateDb::open(&db_path).unwrap();
    for r in records() {
        db.record_audit(&r).unwrap();
    }
    drop(db);

    let (code, out, err) = p.run(&["audit", "--json"]);
    assert_eq!(code, 0, "{err}");
    let back: Vec<AuditRecord> = serde_json::from_str(&out).unwrap();
    let expected: Vec<AuditRecord> = records().iter().map(AuditRecord::bounded).collect();
    assert_eq!(back, expected);
    let json: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json[0]["trusted_by"], "token");
    assert_eq!(json[0]["peer"], "127.0.0.1:40312");
    assert_eq!(json[1]["caller_id"], Value::Null);
    assert_eq!(json[2]["caller_id"], "gpt-x\\u{1b}[2J");

    let (code, out, _) = p.run(&["audit", "--json", "-n", "2"]);
    assert_eq!(code, 0);
    let back: Vec<AuditRecord> = serde_json::from_str(&out).unwrap();
    assert_eq!(back, expected[1..]);

    let (code, out, err) = p.run(&["audit"]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert!(lines[0].starts_with("TIME"), "{out}");
    assert!(
        lines[1].contains("claude-opus") && lines[1].contains("token"),
        "{out}"
    );
    assert!(lines[2].contains("refused") && lines[2].ends_with("confirmation required"));
    assert!(lines[3].contains("confirmation") && lines[3].ends_with("executed"));
    assert!(
        !out.contains('\u{1b}'),
        "no escape reaches the terminal: {out:?}"
    );
    let (code, out, _) = p.run(&["audit", "--limit", "1"]);
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), 2, "{out}");

    let (code, out, _) = p.run(&["audit", "--quiet"]);
    assert_eq!((code, out.as_str()), (0, ""));
}

#[test]
fn audit_reads_an_old_state_db_as_it_is() {
    let p = Programs::new(WORKER);
    fs::create_dir_all(p.state()).unwrap();
    let db_path = p.state().join("pidwatch.db");
    Connection::open(&db_path)
        .unwrap()
        .execute_batch(include_str!("../fixtures/state-v2.sql"))
        .unwrap();
    let (code, out, err) = p.run(&["audit"]);
    assert_eq!((code, out.as_str()), (0, "no audit records\n"), "{err}");
    assert_eq!(
        user_version(&db_path),
        2,
        "a reading command migrates nothing"
    );

    // A writer migrates it; the old journal is kept, the audit read.
    let db = StateDb::open(&db_path).unwrap();
    db.record_audit(&records()[0]).unwrap();
    drop(db);
    assert_eq!(user_version(&db_path), 3);
    let (code, out, _) = p.run(&["audit", "--json"]);
    assert_eq!(code, 0);
    assert_eq!(serde_json::from_str::<Vec<Value>>(&out).unwrap().len(), 1);
    let (code, out, _) = p.run(&["history", "--json"]);
    assert_eq!(code, 0);
    let kinds: Vec<String> = serde_json::from_str::<Vec<Value>>(&out)
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(kinds, ["monitor_started", "started", "ended"]);
}

#[test]
fn a_token_file_open_to_others_is_refused_by_name() {
    let p = Programs::new("");
    let token = p.path().join("api.token");
    fs::write(&token, "tok\n").unwrap();
    fs::set_permissions(&token, fs::Permissions::from_mode(0o644)).unwrap();
    p.write_config(&format!(
        "[api]\nlisten = \"0.0.0.0:7070\"\ntoken_file = \"api.token\"\n{WORKER}"
    ));
    let (code, _, err) = p.run(&["config", "check"]);
    assert_eq!(code, 2, "{err}");
    let config = p.config();
    assert!(
        err.contains(&format!(
            "{}:4:14: api.token_file: {:?}: mode 0644 lets group or others at it; it must be \
             the owner's only (chmod 600)",
            config.display(),
            token.display().to_string()
        )),
        "{err}"
    );
    fs::set_permissions(&token, fs::Permissions::from_mode(0o600)).unwrap();
    let (code, _, err) = p.run(&["config", "check"]);
    assert_eq!(code, 0, "{err}");
    // Without the token, the non-loopback listen is refused.
    p.write_config(&format!("[api]\nlisten = \"0.0.0.0:7070\"\n{WORKER}"));
    let (code, _, err) = p.run(&["config", "check"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("api.listen: plain HTTP only on loopback: a non-loopback listen"),
        "{err}"
    );
}

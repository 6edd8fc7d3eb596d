//! The audit trail of the control API: one [`AuditRecord`] per mutating
//! call, carried out or refused, appended as one JSON line to
//! `<state_dir>/logs/audit.jsonl` ([`append_jsonl`]) and kept in the state
//! DB's `audit` table ([`crate::store::statedb::StateDb::record_audit`]),
//! which `pidwatch audit` reads; [`record`] does both.
//!
//! What a caller sent (its id, the path, the target) is untrusted: every
//! field is bounded ([`AuditRecord::bounded`]) and its control and hidden
//! characters escaped before it is written, so that a line stays short,
//! one line, and safe to print. The JSON file is opened for each record with
//! `O_APPEND | O_NOFOLLOW`, only as a regular file, mode 0600; a record is
//! one `write(2)` of one whole line, so that lines of concurrent writers
//! never interleave.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::store::safe_fs;
use crate::store::statedb::StateDb;

/// The file name of the JSON-lines audit log, in `<state_dir>/logs/`.
pub const AUDIT_FILE: &str = "audit.jsonl";

/// The most bytes of a caller id kept.
pub const MAX_CALLER_ID: usize = 128;
/// The most bytes of a peer kept.
pub const MAX_PEER: usize = 64;
/// The most bytes of a method kept.
pub const MAX_METHOD: usize = 16;
/// The most bytes of a path kept.
pub const MAX_PATH: usize = 256;
/// The most bytes of a target kept.
pub const MAX_TARGET: usize = 512;
/// The most bytes of a result kept.
pub const MAX_RESULT: usize = 512;

/// How a mutating call was let through, or that it was not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrustedBy {
    /// A trusted caller on the control socket, by its peer uid
    /// (`SO_PEERCRED`).
    PeerUid,
    /// A trusted caller with the bearer token.
    Token,
    /// A trusted caller with the automation secret.
    Secret,
    /// Any caller that repeated the call with a valid confirmation.
    Confirmation,
    /// Not carried out: refused, or answered with a confirmation challenge.
    Refused,
}

impl TrustedBy {
    /// The snake_case name stored in the DB and the JSON lines.
    pub fn as_str(self) -> &'static str {
        match self {
            TrustedBy::PeerUid => "peer_uid",
            TrustedBy::Token => "token",
            TrustedBy::Secret => "secret",
            TrustedBy::Confirmation => "confirmation",
            TrustedBy::Refused => "refused",
        }
    }

    /// The value of a stored name; `None` for a name this pidwatch does not
    /// know.
    pub fn parse(name: &str) -> Option<TrustedBy> {
        [
            TrustedBy::PeerUid,
            TrustedBy::Token,
            TrustedBy::Secret,
            TrustedBy::Confirmation,
            TrustedBy::Refused,
        ]
        .into_iter()
        .find(|t| t.as_str() == name)
    }
}

/// One mutating call of the control API, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// When the call was answered.
    pub at: DateTime<Utc>,
    /// The caller's `X-Caller-Id`, bounded and escaped; `None` when it gave
    /// none.
    pub caller_id: Option<String>,
    /// How it was let through, or [`TrustedBy::Refused`].
    pub trusted_by: TrustedBy,
    /// Who called: `uid 1000` on the control socket, `127.0.0.1:40312` on
    /// TCP.
    pub peer: String,
    /// The HTTP method.
    pub method: String,
    /// The request's path.
    pub path: String,
    /// What the call acts on (`all`, or worker names), when it names
    /// anything.
    pub target: Option<String>,
    /// The HTTP status answered.
    pub status: u16,
    /// What came of it, in words: `executed`, `confirmation required`, why
    /// it was refused.
    pub result: String,
}

impl AuditRecord {
    /// `self` with every text field bounded to its maximum (`MAX_*`, cut at
    /// a character boundary, `…` appended) and its control and hidden
    /// characters escaped as `\u{…}`: what is written.
    pub fn bounded(&self) -> AuditRecord {
        AuditRecord {
            at: self.at,
            caller_id: self.caller_id.as_deref().map(|s| clean(s, MAX_CALLER_ID)),
            trusted_by: self.trusted_by,
            peer: clean(&self.peer, MAX_PEER),
            method: clean(&self.method, MAX_METHOD),
            path: clean(&self.path, MAX_PATH),
            target: self.target.as_deref().map(|s| clean(s, MAX_TARGET)),
            status: self.status,
            result: clean(&self.result, MAX_RESULT),
        }
    }

    /// The record as one JSON line, newline included, bounded first.
    pub fn json_line(&self) -> String {
        // Serializing plain strings, numbers and a time cannot fail.
        let mut line = serde_json::to_string(&self.bounded()).unwrap_or_default();
        line.push('\n');
        line
    }
}

/// `text` with its control and hidden characters (tabs and newlines too)
/// escaped, then cut to at most `max` bytes at a character boundary, `…`
/// appended when cut.
pub fn clean(text: &str, max: usize) -> String {
    let escaped: String = text
        .chars()
        .map(|c| {
            if crate::output::is_hidden(c) {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect();
    if escaped.len() <= max {
        return escaped;
    }
    let mut end = max;
    while !escaped.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &escaped[..end])
}

/// Appends `record` (bounded) as one JSON line to the file at `path`,
/// creating it and its folder if missing.
///
/// The file is opened with `O_APPEND | O_NOFOLLOW`, only if it is a regular
/// file, created with mode 0600 (a file found with a wider mode is narrowed
/// to 0600). The line is written with a single `write(2)`: appends of
/// concurrent writers never interleave within a line.
///
/// Errors: [`safe_fs::SymlinkRefused`] (in the `io::Error`) when `path` is a
/// symlink; `InvalidInput` when it is not a regular file; `WriteZero` when
/// the line could be written only in part (a full disk); the OS error when
/// the folder or file cannot be created, opened or written.
pub fn append_jsonl(path: &Path, record: &AuditRecord) -> io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = safe_fs::open_regular_nofollow(
        OpenOptions::new().create(true).append(true).mode(0o600),
        path,
    )?;
    let mode = file.metadata()?.permissions().mode();
    if mode & 0o077 != 0 {
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    let line = record.json_line();
    let written = file.write(line.as_bytes())?;
    if written != line.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            format!(
                "{}: only {written} of {} bytes of an audit record written",
                path.display(),
                line.len()
            ),
        ));
    }
    Ok(())
}

/// The JSON-lines audit log of a state dir whose logs are in `log_dir`:
/// `<log_dir>/audit.jsonl`.
pub fn jsonl_path(log_dir: &Path) -> std::path::PathBuf {
    log_dir.join(AUDIT_FILE)
}

/// Records `record` both ways: appended to the JSON-lines log at `jsonl`
/// ([`append_jsonl`]) and inserted in the state DB
/// ([`StateDb::record_audit`]). Both are tried even when the first fails.
///
/// Errors: the first failure ([`Error::Symlink`] for a symlink at `jsonl`,
/// [`Error::Io`] naming it otherwise; the DB's error).
pub fn record(db: &StateDb, jsonl: &Path, record: &AuditRecord) -> Result<()> {
    let file = append_jsonl(jsonl, record).map_err(|e| Error::io("appending to", jsonl, e));
    let row = db.record_audit(record);
    file.and(row)
}

/// Reads the JSON-lines audit log at `path`, oldest first; a line that is
/// not a record is skipped. For tests and tools: `pidwatch audit` reads the
/// state DB.
///
/// Errors: the file cannot be read.
pub fn read_jsonl(path: &Path) -> io::Result<Vec<AuditRecord>> {
    let text = std::fs::read_to_string(path)?;
    Ok(text
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn record_of(n: u16) -> AuditRecord {
        AuditRecord {
            at: DateTime::parse_from_rfc3339("2026-03-01T10:00:00.5Z")
                .unwrap()
                .with_timezone(&Utc),
            caller_id: Some("claude-opus".into()),
            trusted_by: TrustedBy::Confirmation,
            peer: "uid 1000".into(),
            method: "POST".into(),
            path: "/v1/restart".into(),
            target: Some("code@1".into()),
            status: n,
            result: "executed".into(),
        }
    }

    #[test]
    fn a_line_per_record_that_reads_back() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("logs/audit.jsonl");
        let records: Vec<_> = (200..205).map(record_of).collect();
        for r in &records {
            append_jsonl(&path, r).unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 5);
        assert!(text.ends_with('\n'));
        assert_eq!(read_jsonl(&path).unwrap(), records);
        let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(first["trusted_by"], "confirmation");
        assert_eq!(first["caller_id"], "claude-opus");
        assert_eq!(first["at"], "2026-03-01T10:00:00.500Z");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn concurrent_writers_never_interleave_lines() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("audit.jsonl");
        std::thread::scope(|s| {
            for t in 0..8u16 {
                let path = &path;
                s.spawn(move || {
                    let mut r = record_of(t);
                    r.result = format!("{t}").repeat(400);
                    for _ in 0..50 {
                        append_jsonl(path, &r).unwrap();
                    }
                });
            }
        });
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 400);
        for line in text.lines() {
            let r: AuditRecord = serde_json::from_str(line).unwrap();
            assert_eq!(r.result, format!("{}", r.status).repeat(400));
        }
    }

    #[test]
    fn a_wider_file_is_narrowed_to_0600() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("audit.jsonl");
        std::fs::write(&path, "").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        append_jsonl(&path, &record_of(200)).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn symlinks_and_fifos_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let victim = tmp.path().join("victim");
        std::fs::write(&victim, "precious\n").unwrap();
        let link = tmp.path().join("audit.jsonl");
        symlink(&victim, &link).unwrap();
        let err = append_jsonl(&link, &record_of(200)).unwrap_err();
        assert_eq!(safe_fs::SymlinkRefused::of(&err).unwrap().path, link);
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");

        let fifo = tmp.path().join("fifo.jsonl");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let err = append_jsonl(&fifo, &record_of(200)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
    }

    #[test]
    fn fields_are_bounded_and_escaped() {
        let mut r = record_of(403);
        r.caller_id = Some(format!("evil\n{}", "x".repeat(1000)));
        r.path = "/v1/\u{202E}stop\ttab".into();
        r.target = Some("é".repeat(1000));
        r.result = "r".repeat(10_000);
        let line = r.json_line();
        assert_eq!(line.matches('\n').count(), 1, "one line");
        assert!(line.len() < 2048, "{} bytes", line.len());
        let back: AuditRecord = serde_json::from_str(&line).unwrap();
        let id = back.caller_id.unwrap();
        assert!(id.starts_with("evil\\u{a}xxx") && id.ends_with('…'), "{id}");
        assert!(id.len() <= MAX_CALLER_ID + '…'.len_utf8());
        assert_eq!(back.path, "/v1/\\u{202e}stop\\u{9}tab");
        let target = back.target.unwrap();
        assert!(target.len() <= MAX_TARGET + 3 && target.ends_with('…'));
        assert_eq!(back.result.len(), MAX_RESULT + '…'.len_utf8());
    }

    #[test]
    fn record_writes_the_line_and_the_row() {
        let tmp = tempfile::tempdir().unwrap();
        let db = StateDb::open(&tmp.path().join("pidwatch.db")).unwrap();
        let jsonl = jsonl_path(&tmp.path().join("logs"));
        assert!(jsonl.ends_with("logs/audit.jsonl"));
        record(&db, &jsonl, &record_of(200)).unwrap();
        assert_eq!(read_jsonl(&jsonl).unwrap(), [record_of(200)]);
        assert_eq!(db.audit(10).unwrap(), [record_of(200)]);
        // A symlink at the log is refused, and the row still written.
        std::fs::remove_file(&jsonl).unwrap();
        symlink(tmp.path().join("victim"), &jsonl).unwrap();
        let err = record(&db, &jsonl, &record_of(403)).unwrap_err();
        assert!(matches!(err, Error::Symlink { .. }), "{err}");
        assert_eq!(db.audit(10).unwrap().len(), 2);
        assert!(!tmp.path().join("victim").exists());
    }

    #[test]
    fn trusted_by_names_round_trip() {
        for t in [
            TrustedBy::PeerUid,
            TrustedBy::Token,
            TrustedBy::Secret,
            TrustedBy::Confirmation,
            TrustedBy::Refused,
        ] {
            assert_eq!(TrustedBy::parse(t.as_str()), Some(t));
            assert_eq!(
                serde_json::to_value(t).unwrap(),
                serde_json::Value::from(t.as_str())
            );
        }
        assert_eq!(TrustedBy::parse("magic"), None);
    }
}

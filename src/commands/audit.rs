//! `pidwatch audit`: the audit trail of the control API, from the state DB.

use chrono::Local;

use crate::cli::{AuditArgs, GlobalArgs};
use crate::config::Environment;
use crate::error::{EXIT_OK, Result};
use crate::store::audit::{self, AuditRecord};
use crate::store::statedb::StateDb;

/// The widest a column of the table grows (in characters); a longer value
/// is cut with `…` (`--json` shows it whole).
const MAX_COLUMN: usize = 40;

/// `pidwatch audit [-n N]`: the newest N records of the audit trail, oldest
/// first, as a table or (`--json`) an array of records. A state DB that does
/// not exist yet, or of a schema before the audit (3), has none.
///
/// Errors: the settings cannot be resolved; the state DB cannot be read.
pub fn audit(global: &GlobalArgs, args: &AuditArgs, env: &Environment) -> Result<i32> {
    let settings = super::settings(global, env, 2)?;
    let records = match StateDb::open_existing(&settings.paths.state_db)? {
        Some(db) => db.audit(args.limit)?,
        None => Vec::new(),
    };
    if settings.output.json {
        let text = serde_json::to_string_pretty(&records).unwrap_or_default();
        crate::output::print_stdout(&format!("{text}\n"));
    } else if !settings.output.quiet {
        crate::output::print_stdout(&table(&records));
    }
    Ok(EXIT_OK)
}

/// The records as a table, one a line, times in local time; every cell on
/// one line, its control characters escaped, at most 40 characters wide.
pub fn table(records: &[AuditRecord]) -> String {
    if records.is_empty() {
        return "no audit records\n".into();
    }
    let mut rows: Vec<Vec<String>> = vec![
        [
            "TIME",
            "CALLER",
            "TRUSTED BY",
            "PEER",
            "REQUEST",
            "TARGET",
            "STATUS",
            "RESULT",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for r in records {
        let cell = |text: &str| cut(&audit::clean(text, usize::MAX), MAX_COLUMN);
        rows.push(vec![
            r.at.with_timezone(&Local)
                .format("%Y-%m-%d %H:%M:%S%.3f")
                .to_string(),
            r.caller_id.as_deref().map_or("-".into(), cell),
            r.trusted_by.as_str().to_string(),
            cell(&r.peer),
            cell(&format!("{} {}", r.method, r.path)),
            r.target.as_deref().map_or("-".into(), cell),
            r.status.to_string(),
            // The last column is not padded: it is shown whole.
            audit::clean(&r.result, usize::MAX),
        ]);
    }
    let columns = rows[0].len();
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == columns {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  ", width = widths[c]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `text` cut to `max` characters, the last one `…` when cut.
fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::audit::TrustedBy;
    use chrono::{DateTime, Utc};

    fn record(
        caller: Option<&str>,
        trusted_by: TrustedBy,
        status: u16,
        result: &str,
    ) -> AuditRecord {
        AuditRecord {
            at: DateTime::parse_from_rfc3339("2026-03-01T10:00:00Z")
                .unwrap()
                .with_timezone(&Utc),
            caller_id: caller.map(String::from),
            trusted_by,
            peer: "uid 1000".into(),
            method: "POST".into(),
            path: "/v1/restart".into(),
            target: None,
            status,
            result: result.into(),
        }
    }

    #[test]
    fn a_table_with_a_line_per_record() {
        let text = table(&[
            record(Some("claude-opus"), TrustedBy::Token, 200, "executed"),
            record(None, TrustedBy::Refused, 403, "confirmation required"),
        ]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].starts_with("TIME ") && lines[0].ends_with("RESULT"));
        assert!(
            lines[1].contains("claude-opus  token ") && lines[1].ends_with(" 200     executed")
        );
        assert!(lines[2].contains(" -            refused "), "{text}");
        assert!(lines[2].contains("POST /v1/restart  -"), "{text}");
        assert_eq!(table(&[]), "no audit records\n");
    }

    #[test]
    fn cells_stay_on_one_line_and_bounded() {
        let mut r = record(Some(&"x".repeat(100)), TrustedBy::Refused, 401, "bad\nline");
        r.target = Some("a\u{1b}[2J".into());
        let text = table(&[r]);
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(text.contains(&format!("{}…", "x".repeat(39))), "{text}");
        assert!(text.contains("a\\u{1b}[2J"), "{text}");
        assert!(text.ends_with("bad\\u{a}line\n"), "{text}");
    }
}

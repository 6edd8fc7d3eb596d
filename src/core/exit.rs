//! How an incarnation ended, as its wrapper recorded it in the exit file.
//!
//! `wrapper/worker-wrapper.sh` writes `<dir>/<name>.exit` beside its PID
//! file just before it removes the PID file: one `key=value` a line, ASCII.
//!
//! ```text
//! incarnation=<32 lowercase hex digits: PIDWATCH_INVOCATION_ID>
//! pid=<the wrapper's PID>
//! exit_status=<the wrapper's exit status, 0..=255>
//! signal=<TERM, INT or HUP it received and forwarded; else the signal that
//!         killed the worker (KILL, SEGV, …); else empty>
//! ended=<ISO 8601 time, as the log footer's `Worker exited:`>
//! ```
//!
//! A wrapper that is SIGKILLed writes none, so an exit file that is missing
//! or names another incarnation means the wrapper did not end on its own.
//! This module only parses the text; reading the file (untrusted input) is
//! `observe::exitfile`'s job.

/// The content of an exit file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitRecord {
    /// The incarnation id (`PIDWATCH_INVOCATION_ID`): 32 lowercase hex digits.
    pub incarnation: String,
    /// The wrapper's PID (at least 2).
    pub pid: i32,
    /// The status the wrapper exited with (the worker's, 128+N when a
    /// signal N killed it); `None` when the file leaves it out or empty.
    pub exit_status: Option<u8>,
    /// The signal that ended the worker, without the `SIG` prefix (`TERM`,
    /// `KILL`, `RTMIN+3`, …); `None` when it exited on its own.
    pub signal: Option<String>,
    /// When the worker ended, as the wrapper wrote it (RFC 3339, e.g.
    /// `2026-01-13T10:00:00+00:00`); `None` when left out or empty.
    pub ended: Option<String>,
}

impl ExitRecord {
    /// SIGTERM, SIGINT or SIGHUP ended it: a deliberate stop, as systemd's
    /// Restart=on-failure treats them.
    pub fn is_deliberate_stop(&self) -> bool {
        matches!(self.signal.as_deref(), Some("TERM" | "INT" | "HUP"))
    }
}

/// The longest signal name accepted (`RTMIN+15` and the like fit).
const MAX_SIGNAL_NAME: usize = 16;

/// How many characters of a bad value an error message quotes.
const QUOTED_CHARS: usize = 40;

/// Parses the text of an exit file.
///
/// Lines are `key=value`, surrounding whitespace ignored; blank lines and
/// unknown keys are ignored. `incarnation` (32 lowercase hex digits) and
/// `pid` (a decimal in `2..=i32::MAX`) are required; `exit_status`
/// (`0..=255`), `signal` (letters, digits, `+`, `-`; a `SIG` prefix is
/// dropped) and `ended` (RFC 3339) may be missing or empty.
///
/// Errors: a line without `=`, a key given twice, a required key missing,
/// or a bad value; the message names the key and quotes (escaped) at most
/// 40 characters of the value.
pub fn parse_exit_file(text: &str) -> Result<ExitRecord, String> {
    let mut incarnation = None;
    let mut pid = None;
    let mut exit_status = None;
    let mut signal = None;
    let mut ended = None;
    let mut seen: Vec<&str> = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!("a line without '=': {}", quote(line)));
        };
        let (key, value) = (key.trim(), value.trim());
        if !matches!(
            key,
            "incarnation" | "pid" | "exit_status" | "signal" | "ended"
        ) {
            continue;
        }
        if seen.contains(&key) {
            return Err(format!("{key} given twice"));
        }
        seen.push(key);
        let bad = |what: &str| format!("bad {key} {}: {what}", quote(value));
        match key {
            "incarnation" => {
                if !is_incarnation_id(value) {
                    return Err(bad("not 32 lowercase hex digits"));
                }
                incarnation = Some(value.to_string());
            }
            "pid" => {
                let ok = value.bytes().all(|b| b.is_ascii_digit())
                    && !value.is_empty()
                    && value.parse::<i32>().is_ok_and(|p| p >= 2);
                if !ok {
                    return Err(bad("not a PID (a decimal of at least 2)"));
                }
                pid = value.parse::<i32>().ok();
            }
            "exit_status" if !value.is_empty() => {
                let status = value
                    .bytes()
                    .all(|b| b.is_ascii_digit())
                    .then(|| value.parse::<u8>().ok())
                    .flatten();
                if status.is_none() {
                    return Err(bad("not an exit status in 0..=255"));
                }
                exit_status = status;
            }
            "signal" if !value.is_empty() => {
                let name = value.strip_prefix("SIG").unwrap_or(value);
                let ok = !name.is_empty()
                    && name.len() <= MAX_SIGNAL_NAME
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'-');
                if !ok {
                    return Err(bad("not a signal name"));
                }
                signal = Some(name.to_string());
            }
            "ended" if !value.is_empty() => {
                if chrono::DateTime::parse_from_rfc3339(value).is_err() {
                    return Err(bad("not an ISO 8601 time"));
                }
                ended = Some(value.to_string());
            }
            _ => {}
        }
    }
    Ok(ExitRecord {
        incarnation: incarnation.ok_or("incarnation missing")?,
        pid: pid.ok_or("pid missing")?,
        exit_status,
        signal,
        ended,
    })
}

/// Whether `id` is an incarnation id: exactly 32 lowercase hex digits, as
/// the wrapper makes and checks `PIDWATCH_INVOCATION_ID`.
pub fn is_incarnation_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// At most [`QUOTED_CHARS`] characters of `value`, quoted and escaped
/// (`…` marks a cut).
fn quote(value: &str) -> String {
    let mut shown: String = value.chars().take(QUOTED_CHARS).collect();
    if value.chars().nth(QUOTED_CHARS).is_some() {
        shown.push('…');
    }
    format!("{shown:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef";

    fn text(lines: &[&str]) -> String {
        lines.iter().map(|l| format!("{l}\n")).collect()
    }

    #[test]
    fn parses_what_the_wrapper_writes() {
        let got = parse_exit_file(&text(&[
            &format!("incarnation={ID}"),
            "pid=4242",
            "exit_status=143",
            "signal=TERM",
            "ended=2026-01-13T10:00:00+01:00",
        ]))
        .unwrap();
        assert_eq!(
            got,
            ExitRecord {
                incarnation: ID.into(),
                pid: 4242,
                exit_status: Some(143),
                signal: Some("TERM".into()),
                ended: Some("2026-01-13T10:00:00+01:00".into()),
            }
        );
        assert!(got.is_deliberate_stop());
    }

    #[test]
    fn empty_and_missing_optional_values_are_none_and_unknown_keys_ignored() {
        let got = parse_exit_file(&text(&[
            "future=whatever it is",
            &format!("incarnation={ID}"),
            "",
            "pid=2",
            "exit_status=",
            "signal=",
        ]))
        .unwrap();
        assert_eq!(got.exit_status, None);
        assert_eq!(got.signal, None);
        assert_eq!(got.ended, None);
        assert!(!got.is_deliberate_stop());
    }

    #[test]
    fn only_term_int_and_hup_are_deliberate_stops() {
        let with = |signal: Option<&str>| ExitRecord {
            incarnation: ID.into(),
            pid: 10,
            exit_status: Some(0),
            signal: signal.map(str::to_string),
            ended: None,
        };
        for sig in ["TERM", "INT", "HUP"] {
            assert!(with(Some(sig)).is_deliberate_stop(), "{sig}");
        }
        for sig in [None, Some("KILL"), Some("SEGV"), Some("ABRT"), Some("term")] {
            assert!(!with(sig).is_deliberate_stop(), "{sig:?}");
        }
    }

    #[test]
    fn a_sig_prefix_is_dropped() {
        let got = parse_exit_file(&text(&[
            &format!("incarnation={ID}"),
            "pid=9",
            "signal=SIGHUP",
        ]))
        .unwrap();
        assert_eq!(got.signal.as_deref(), Some("HUP"));
        assert!(got.is_deliberate_stop());
    }

    #[test]
    fn bad_values_are_errors_naming_the_key() {
        let base = |line: &str| {
            text(&[
                &format!("incarnation={ID}"),
                "pid=100",
                line,
                "ended=2026-01-13T10:00:00+00:00",
            ])
        };
        for (line, key) in [
            ("exit_status=256", "exit_status"),
            ("exit_status=-1", "exit_status"),
            ("exit_status=+3", "exit_status"),
            ("exit_status=x", "exit_status"),
            ("signal=TE RM", "signal"),
            ("signal=SIG", "signal"),
            ("signal=ABCDEFGHIJKLMNOPQ", "signal"),
            ("signal=TERM\u{7}", "signal"),
        ] {
            let err = parse_exit_file(&base(line)).unwrap_err();
            assert!(err.contains(key), "{line}: {err}");
        }
        for (input, key) in [
            (text(&["incarnation=0123", "pid=5"]), "incarnation"),
            (
                text(&["incarnation=0123456789ABCDEF0123456789ABCDEF", "pid=5"]),
                "incarnation",
            ),
            (text(&[&format!("incarnation={ID}"), "pid=1"]), "pid"),
            (text(&[&format!("incarnation={ID}"), "pid=0"]), "pid"),
            (text(&[&format!("incarnation={ID}"), "pid=-7"]), "pid"),
            (
                text(&[&format!("incarnation={ID}"), "pid=99999999999"]),
                "pid",
            ),
            (text(&[&format!("incarnation={ID}"), "pid="]), "pid"),
            (
                text(&[&format!("incarnation={ID}"), "pid=5", "ended=yesterday"]),
                "ended",
            ),
            (text(&["pid=5"]), "incarnation missing"),
            (text(&[&format!("incarnation={ID}")]), "pid missing"),
            (
                text(&[&format!("incarnation={ID}"), "pid=5", "pid=6"]),
                "pid given twice",
            ),
            (
                text(&[&format!("incarnation={ID}"), "pid=5", "garbage"]),
                "without '='",
            ),
        ] {
            let err = parse_exit_file(&input).unwrap_err();
            assert!(err.contains(key), "{input:?}: {err}");
        }
    }

    #[test]
    fn a_quoted_value_is_cut_at_40_characters_and_escaped() {
        let long = format!("{}\u{1b}[31m", "x".repeat(50));
        let err = parse_exit_file(&text(&[&format!("incarnation={long}"), "pid=5"])).unwrap_err();
        assert!(err.contains(&format!("\"{}…\"", "x".repeat(40))), "{err}");
        assert!(!err.contains('\u{1b}'), "{err}");
        let err = parse_exit_file(&text(&[
            &format!("incarnation={ID}"),
            "pid=5",
            "signal=\u{1b}]0;x",
        ]))
        .unwrap_err();
        assert!(err.contains("\\u{1b}"), "escaped: {err}");
    }

    #[test]
    fn the_incarnation_id_is_exactly_32_lowercase_hex_digits() {
        assert!(is_incarnation_id(ID));
        assert!(!is_incarnation_id(&ID[1..]));
        assert!(!is_incarnation_id(&format!("{ID}0")));
        assert!(!is_incarnation_id("0123456789abcdef0123456789abcdeg"));
        assert!(!is_incarnation_id("01234567-89ab-cdef-0123-456789abcdef"));
    }
}

//! Reading PID files, which are untrusted input.
//!
//! A PID file is opened with `O_NOFOLLOW` (a symlink is refused) and
//! `O_NONBLOCK` (a FIFO planted in its place cannot hang the check), must be a
//! regular file of at most [`MAX_PIDFILE_BYTES`], and must hold exactly one
//! decimal integer in `2..=pid_max`, surrounding whitespace allowed. pidwatch
//! never deletes or rewrites a PID file.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use crate::core::{InvalidPidFile, PidFileReading};

/// The largest PID file accepted, in bytes: a 7-digit PID, a newline and
/// some whitespace fit many times over.
pub const MAX_PIDFILE_BYTES: u64 = 64;

/// The path of a worker's PID file: `<dir>/pids/<worker>.pid`.
pub fn path_for(pid_dir: &Path, worker: &str) -> PathBuf {
    pid_dir.join(format!("{worker}.pid"))
}

/// Opens a file for reading without following a final symlink and without
/// blocking on a FIFO; returns the file and its metadata (fstat(2)) once it
/// is known to be regular.
///
/// Errors: `ELOOP` for a symlink, `NotRegular` as [`io::ErrorKind::InvalidInput`].
pub fn open_regular_nofollow(path: &Path) -> io::Result<(File, std::fs::Metadata)> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc_flags())
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.file_type().is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    Ok((file, meta))
}

fn libc_flags() -> i32 {
    (nix::fcntl::OFlag::O_NOFOLLOW | nix::fcntl::OFlag::O_NONBLOCK).bits()
}

/// Reads and validates the PID file at `path`.
///
/// `pid_max` is the kernel's limit (`/proc/sys/kernel/pid_max`). Never fails:
/// every problem becomes a [`PidFileReading::Invalid`] with its reason, and a
/// missing file is [`PidFileReading::Missing`].
pub fn read(path: &Path, pid_max: i32) -> PidFileReading {
    let (mut file, meta) = match open_regular_nofollow(path) {
        Ok(opened) => opened,
        Err(err) => return reading_from_open_error(&err),
    };
    if meta.len() > MAX_PIDFILE_BYTES {
        return PidFileReading::Invalid(InvalidPidFile::TooLarge(meta.len()));
    }
    // One read(2) returns a small regular file whole; a full buffer means
    // the file grew past the limit since fstat.
    let mut buf = [0u8; MAX_PIDFILE_BYTES as usize + 1];
    let n = match file.read(&mut buf) {
        Ok(n) => n,
        Err(err) => return PidFileReading::Invalid(InvalidPidFile::Unreadable(err.to_string())),
    };
    if n as u64 > MAX_PIDFILE_BYTES {
        return PidFileReading::Invalid(InvalidPidFile::TooLarge(n as u64));
    }
    match parse(&buf[..n], pid_max) {
        Ok(pid) => PidFileReading::Valid {
            pid,
            mtime: mtime_of(&meta),
        },
        Err(why) => PidFileReading::Invalid(why),
    }
}

fn reading_from_open_error(err: &io::Error) -> PidFileReading {
    let why = match (err.kind(), err.raw_os_error()) {
        (io::ErrorKind::NotFound, _) => return PidFileReading::Missing,
        (_, Some(code)) if code == nix::errno::Errno::ELOOP as i32 => InvalidPidFile::Symlink,
        (io::ErrorKind::InvalidInput, None) => InvalidPidFile::NotRegular,
        _ => InvalidPidFile::Unreadable(err.to_string()),
    };
    PidFileReading::Invalid(why)
}

/// Whether a worker id can name a file and a folder (`pids/<id>.pid`,
/// `.claude/worktrees/<id>`): not empty, at most 255 bytes, no `/`, no
/// control character, not `.` or `..`, not starting with `-` (an option to
/// git or the wrapper).
pub fn is_safe_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 255
        && id != "."
        && id != ".."
        && !id.starts_with('-')
        && !id.chars().any(|c| c == '/' || c.is_control())
}

/// The modification time of a file as UTC wall time, to the nanosecond.
pub fn mtime_of(meta: &std::fs::Metadata) -> DateTime<Utc> {
    DateTime::from_timestamp(meta.mtime(), meta.mtime_nsec() as u32).unwrap_or_default()
}

/// Parses the content of a PID file: one decimal integer in `2..=pid_max`,
/// surrounding ASCII whitespace allowed.
pub fn parse(bytes: &[u8], pid_max: i32) -> Result<i32, InvalidPidFile> {
    let text = bytes.trim_ascii();
    if text.is_empty() {
        return Err(InvalidPidFile::Empty);
    }
    let shown = || {
        let s = String::from_utf8_lossy(text);
        s.chars().take(24).collect::<String>()
    };
    let (negative, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(InvalidPidFile::NotANumber(shown()));
    }
    // All ASCII digits, so this is valid UTF-8; an overflow is out of range.
    let value = std::str::from_utf8(digits)
        .ok()
        .and_then(|d| d.parse::<i64>().ok());
    match value {
        Some(v) if !negative && v >= 2 && v <= i64::from(pid_max) => Ok(v as i32),
        _ => Err(InvalidPidFile::OutOfRange(shown())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_accepts_one_decimal_with_whitespace() {
        assert_eq!(parse(b"1234\n", 32768), Ok(1234));
        assert_eq!(parse(b"  42  \n\n", 32768), Ok(42));
        assert_eq!(parse(b"2", 32768), Ok(2));
        assert_eq!(parse(b"32768", 32768), Ok(32768));
    }

    #[test]
    fn parse_rejects_everything_else_with_its_reason() {
        let cases: &[(&[u8], InvalidPidFile)] = &[
            (b"", InvalidPidFile::Empty),
            (b" \n\t", InvalidPidFile::Empty),
            (b"abc", InvalidPidFile::NotANumber("abc".into())),
            (b"12 34", InvalidPidFile::NotANumber("12 34".into())),
            (b"+5", InvalidPidFile::NotANumber("+5".into())),
            (b"0x10", InvalidPidFile::NotANumber("0x10".into())),
            (b"-", InvalidPidFile::NotANumber("-".into())),
            (b"12.5", InvalidPidFile::NotANumber("12.5".into())),
            (
                b"\xff\xfe",
                InvalidPidFile::NotANumber("\u{fffd}\u{fffd}".into()),
            ),
            (b"-1", InvalidPidFile::OutOfRange("-1".into())),
            (b"0", InvalidPidFile::OutOfRange("0".into())),
            (b"1", InvalidPidFile::OutOfRange("1".into())),
            (b"32769", InvalidPidFile::OutOfRange("32769".into())),
            (
                b"99999999999999999999999",
                InvalidPidFile::OutOfRange("99999999999999999999999".into()),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(
                parse(input, 32768).as_ref(),
                Err(want),
                "input {:?}",
                String::from_utf8_lossy(input)
            );
        }
    }
}

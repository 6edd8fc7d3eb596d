//! Reading exit files, which are untrusted input.
//!
//! The wrapper (`wrapper/worker-wrapper.sh`) writes `<dir>/<name>.exit`
//! beside its PID file `<dir>/<name>.pid` just before it removes the PID
//! file; its format is in [`crate::core::ExitRecord`]'s module. Like a PID
//! file, it is opened with `O_NOFOLLOW` and `O_NONBLOCK`
//! ([`open_regular_nofollow`]), must be a regular file of at most
//! [`MAX_EXIT_FILE_BYTES`], and is parsed by [`parse_exit_file`]. pidwatch
//! never deletes or rewrites an exit file.

use std::ffi::OsString;
use std::io::{self, Read};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use crate::core::{ExitRecord, parse_exit_file};
use crate::observe::pidfile::open_regular_nofollow;

/// The largest exit file accepted, in bytes (the wrapper writes about 150).
pub const MAX_EXIT_FILE_BYTES: u64 = 1024;

/// What an exit file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitReading {
    /// There is no exit file.
    Missing,
    /// There is one, but it cannot be used; the reason, bounded and escaped.
    Invalid(String),
    /// A well-formed exit file. It may be an earlier incarnation's: compare
    /// [`ExitRecord::incarnation`].
    Valid(ExitRecord),
}

/// The exit file that goes with `pid_file`: `<dir>/<name>.exit` for
/// `<dir>/<name>.pid`, else `<pid_file>.exit`, as the wrapper names it.
pub fn path_for(pid_file: &Path) -> PathBuf {
    let mut bytes = pid_file.as_os_str().as_bytes().to_vec();
    if bytes.ends_with(b".pid") {
        bytes.truncate(bytes.len() - 4);
    }
    bytes.extend_from_slice(b".exit");
    PathBuf::from(OsString::from_vec(bytes))
}

/// Reads and parses the exit file at `path`.
///
/// Never fails: a missing file is [`ExitReading::Missing`]; a symlink, a
/// file that is not regular, one larger than [`MAX_EXIT_FILE_BYTES`], one
/// that is not UTF-8, an unreadable one or one that does not parse is
/// [`ExitReading::Invalid`] with its reason.
pub fn read(path: &Path) -> ExitReading {
    let (file, meta) = match open_regular_nofollow(path) {
        Ok(opened) => opened,
        Err(err) => return reading_from_open_error(&err),
    };
    if meta.len() > MAX_EXIT_FILE_BYTES {
        return too_large(meta.len());
    }
    // One byte past the limit tells a file that grew since fstat.
    let mut buf = Vec::with_capacity(MAX_EXIT_FILE_BYTES as usize + 1);
    if let Err(err) = file.take(MAX_EXIT_FILE_BYTES + 1).read_to_end(&mut buf) {
        return ExitReading::Invalid(format!("unreadable: {err}"));
    }
    if buf.len() as u64 > MAX_EXIT_FILE_BYTES {
        return too_large(buf.len() as u64);
    }
    let Ok(text) = std::str::from_utf8(&buf) else {
        return ExitReading::Invalid("not UTF-8 text".into());
    };
    match parse_exit_file(text) {
        Ok(record) => ExitReading::Valid(record),
        Err(why) => ExitReading::Invalid(why),
    }
}

fn too_large(len: u64) -> ExitReading {
    ExitReading::Invalid(format!(
        "too large: {len} bytes, more than {MAX_EXIT_FILE_BYTES}"
    ))
}

fn reading_from_open_error(err: &io::Error) -> ExitReading {
    let why = match (err.kind(), err.raw_os_error()) {
        (io::ErrorKind::NotFound, _) => return ExitReading::Missing,
        (_, Some(code)) if code == nix::errno::Errno::ELOOP as i32 => "a symlink".to_string(),
        (io::ErrorKind::InvalidInput, None) => "not a regular file".to_string(),
        _ => format!("unreadable: {err}"),
    };
    ExitReading::Invalid(why)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn the_exit_file_sits_beside_the_pid_file() {
        let cases = [
            ("/o/pids/W.pid", "/o/pids/W.exit"),
            ("pids/Stream-A.pid", "pids/Stream-A.exit"),
            ("/o/pids/W", "/o/pids/W.exit"),
            ("/o/pids/W.pid.old", "/o/pids/W.pid.old.exit"),
            ("W.pid", "W.exit"),
        ];
        for (pid_file, want) in cases {
            assert_eq!(path_for(Path::new(pid_file)), PathBuf::from(want));
        }
    }

    #[test]
    fn reads_a_valid_file_and_reports_a_missing_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("W.exit");
        assert_eq!(read(&path), ExitReading::Missing);
        std::fs::write(
            &path,
            format!("incarnation={ID}\npid=77\nexit_status=0\nsignal=\nended=2026-01-13T10:00:00+00:00\n"),
        )
        .unwrap();
        let ExitReading::Valid(record) = read(&path) else {
            panic!("{:?}", read(&path));
        };
        assert_eq!(record.pid, 77);
        assert_eq!(record.exit_status, Some(0));
    }

    #[test]
    fn refuses_symlinks_fifos_large_and_binary_files() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.exit");
        std::fs::write(&real, format!("incarnation={ID}\npid=77\n")).unwrap();
        let link = dir.path().join("link.exit");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let fifo = dir.path().join("fifo.exit");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let big = dir.path().join("big.exit");
        std::fs::write(
            &big,
            format!("incarnation={ID}\npid=77\n{}\n", "x=y\n".repeat(300)),
        )
        .unwrap();
        let binary = dir.path().join("binary.exit");
        std::fs::write(&binary, b"incarnation=\xff\xfe\npid=77\n").unwrap();
        let bad = dir.path().join("bad.exit");
        std::fs::write(&bad, "incarnation=nope\npid=77\n").unwrap();
        for (path, reason) in [
            (&link, "symlink"),
            (&fifo, "not a regular file"),
            (&dir.path().to_path_buf(), "not a regular file"),
            (&big, "too large"),
            (&binary, "UTF-8"),
            (&bad, "incarnation"),
        ] {
            match read(path) {
                ExitReading::Invalid(why) => assert!(why.contains(reason), "{path:?}: {why}"),
                other => panic!("{path:?}: {other:?}"),
            }
        }
    }
}

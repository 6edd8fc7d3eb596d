//! Worker logs: where the stdout and stderr of a worker started from the
//! config file go, and how pidwatch keeps them bounded.
//!
//! A worker outlives pidwatch, so its output does not pass through a pipe
//! that pidwatch reads: the worker is given a descriptor of its log file,
//! opened with `O_APPEND` ([`open_for_worker`]), as stdout and stderr.
//! pidwatch rotates the log by size itself ([`rotate_if_needed`]), in the
//! "copytruncate" way of logrotate: the worker keeps its descriptor, so the
//! file cannot be renamed away from under it; its content is copied to
//! `<log>.1` and the live file is truncated. A writer with `O_APPEND` goes
//! on at the new end of the file, so the live file starts small again with
//! no hole of zeros.
//!
//! Like every file pidwatch writes, a log is never written through a
//! symlink ([`super::safe_fs`]), and a FIFO or device planted at its name
//! is refused rather than handed to a worker.

use std::ffi::OsString;
use std::fs::{DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

use super::safe_fs::open_regular_nofollow;

/// The mode of a log file pidwatch creates (before the umask): the owner
/// reads and writes, the group reads.
pub const LOG_MODE: u32 = 0o640;

/// The mode of the folders pidwatch creates for logs (before the umask).
pub const LOG_DIR_MODE: u32 = 0o750;

/// [`tail`] reads the file backwards in blocks of this many bytes.
pub const TAIL_BLOCK: u64 = 8192;

/// [`tail`] reads at most this many bytes from the end of the file (4 MiB),
/// so that a log without newlines (a progress bar drawn with `\r`) cannot
/// make it read the whole file.
pub const TAIL_MAX_BYTES: u64 = 4 << 20;

/// The longest [`follow`] waits between two looks at the file and two
/// calls of `stop`.
pub const FOLLOW_TICK: Duration = Duration::from_millis(200);

/// Opens the log at `path` for a worker: for appending (`O_APPEND`),
/// creating it with mode [`LOG_MODE`] if missing and its missing parent
/// folders with mode [`LOG_DIR_MODE`] (both before the umask). The file is
/// meant to be given to the child as stdout and stderr (it is opened
/// close-on-exec; `std::process::Command` duplicates it onto fds 1 and 2,
/// which stay open in the child).
///
/// Errors: [`super::safe_fs::SymlinkRefused`] when `path` is a symlink;
/// `InvalidInput` when it is not a regular file (a folder, FIFO, socket or
/// device); the OS error when a folder or the file cannot be created or
/// opened.
pub fn open_for_worker(path: &Path) -> io::Result<File> {
    if let Some(dir) = parent_of(path) {
        DirBuilder::new()
            .recursive(true)
            .mode(LOG_DIR_MODE)
            .create(dir)?;
    }
    open_regular_nofollow(
        OpenOptions::new().append(true).create(true).mode(LOG_MODE),
        path,
    )
}

/// `path` with `.k` appended: the `k`-th rotated log (`worker.log.1`).
pub fn rotated_path(path: &Path, k: u32) -> PathBuf {
    let mut name = OsString::from(path.as_os_str());
    name.push(format!(".{k}"));
    PathBuf::from(name)
}

/// Rotates the log at `path` when it is larger than `max_bytes` bytes
/// (`0`: never), keeping `keep` rotated files: removes `<path>.<keep>`,
/// shifts `<path>.<k>` to `<path>.<k+1>` for `k` = `keep`-1 down to 1,
/// copies `path` to `<path>.1` (into a temp file of the same folder with
/// an unpredictable name, mode [`LOG_MODE`], fsync'd, then renamed into
/// place), then truncates `path` to 0 bytes. With `keep` = 0 the log is
/// only truncated. Writers that opened it with `O_APPEND` go on writing at
/// its new end.
///
/// Returns whether it rotated; a missing log is not rotated.
///
/// Copytruncate's known window: what a worker writes between the end of
/// the copy and the truncation is lost (neither in `<path>.1` nor in
/// `path`). A rotated file is renamed, never written through, so a
/// symlink at `<path>.<k>` is moved or replaced, its target untouched.
/// Only one rotation of a log may run at a time (the monitor's loop).
///
/// Errors: [`super::safe_fs::SymlinkRefused`] when `path` is a symlink;
/// `InvalidInput` when it is not a regular file; the OS error when a
/// rotated file cannot be renamed or written, or `path` truncated (a
/// failure before the truncation leaves `path` as it was).
pub fn rotate_if_needed(path: &Path, max_bytes: u64, keep: u32) -> io::Result<bool> {
    if max_bytes == 0 {
        return Ok(false);
    }
    let file = match open_regular_nofollow(OpenOptions::new().read(true).write(true), path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    if file.metadata()?.len() <= max_bytes {
        return Ok(false);
    }
    if keep > 0 {
        remove_if_present(&rotated_path(path, keep))?;
        for k in (1..keep).rev() {
            rename_if_present(&rotated_path(path, k), &rotated_path(path, k + 1))?;
        }
        copy_into_place(&file, &rotated_path(path, 1))?;
    }
    file.set_len(0)?;
    Ok(true)
}

/// The last `n` lines of the log at `path`, without their newlines, oldest
/// first, decoded as UTF-8 with invalid bytes replaced (U+FFFD). A last
/// line without a trailing newline counts as a line; an empty file has
/// none.
///
/// The file is read backwards in blocks of [`TAIL_BLOCK`] bytes until `n`
/// lines are found, and never more than the last [`TAIL_MAX_BYTES`] bytes:
/// the first line returned may then be the end of a longer one.
///
/// Errors: the OS error when it cannot be opened or read (`NotFound` for a
/// missing log); `InvalidInput` when it is not a regular file.
pub fn tail(path: &Path, n: usize) -> io::Result<Vec<String>> {
    if n == 0 {
        return Ok(Vec::new());
    }
    let file = open_for_reading(path)?;
    let size = file.metadata()?.len();
    if size == 0 {
        return Ok(Vec::new());
    }
    let floor = size.saturating_sub(TAIL_MAX_BYTES);
    // Blocks from the end backwards, and the newlines found in them that
    // end a line before the last one.
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    let mut newlines = 0usize;
    let mut end = size;
    while end > floor && newlines < n {
        let start = end.saturating_sub(TAIL_BLOCK).max(floor);
        let mut block = vec![0u8; (end - start) as usize];
        let got = read_at_most(&file, &mut block, start)?;
        // A short read: the log was truncated meanwhile.
        block.truncate(got);
        let mut count = block.iter().filter(|&&b| b == b'\n').count();
        if end == size && block.last() == Some(&b'\n') {
            count -= 1;
        }
        newlines += count;
        blocks.push(block);
        end = start;
    }
    let mut data = Vec::with_capacity(blocks.iter().map(Vec::len).sum());
    for block in blocks.iter().rev() {
        data.extend_from_slice(block);
    }
    if data.last() == Some(&b'\n') {
        data.pop();
    }
    let lines: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
    let skip = lines.len().saturating_sub(n);
    Ok(lines[skip..]
        .iter()
        .map(|line| String::from_utf8_lossy(line).into_owned())
        .collect())
}

/// Follows the log at `path` like `tail -F`: calls `emit` with each chunk
/// of text appended to it (UTF-8, invalid bytes replaced; a character
/// split between two writes is held back until it is whole), starting at
/// byte offset `from` (e.g. the size after printing a [`tail`]). Returns
/// when `stop` returns true; `stop` is called at least every
/// [`FOLLOW_TICK`].
///
/// - A truncated log (a rotation) is read again from offset 0.
/// - A log replaced by another file (renamed over, or removed and created
///   again) is read to its end, then the new file from offset 0. A missing
///   log is waited for.
/// - Appends are noticed at once through inotify on the log's folder, and
///   in any case every [`FOLLOW_TICK`] (the fallback when inotify cannot be
///   had).
///
/// As with `tail -f`, a truncation is noticed by the file having become
/// shorter than what was read: when a log is truncated and grows past that
/// length again between two looks, the text before that length is missed.
///
/// Errors: the OS error when the log cannot be opened (other than missing)
/// or read; `InvalidInput` when it is not a regular file.
pub fn follow(
    path: &Path,
    from: u64,
    emit: &mut dyn FnMut(&str),
    stop: &dyn Fn() -> bool,
) -> io::Result<()> {
    let watch = FolderWatch::new(path);
    let mut current: Option<(File, (u64, u64))> = None;
    // Where the next file opened is read from: `from` for the log found
    // at the start, 0 for any later one.
    let mut start_at = from;
    let mut offset = 0;
    let mut pending = Vec::new();
    while !stop() {
        if current.is_none() {
            match open_for_reading(path) {
                Ok(file) => {
                    let meta = file.metadata()?;
                    offset = start_at;
                    current = Some((file, (meta.dev(), meta.ino())));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        start_at = 0;
        if let Some((file, id)) = &current {
            if file.metadata()?.len() < offset {
                flush(&mut pending, emit);
                offset = 0;
            }
            offset = read_new(file, offset, &mut pending, emit)?;
            let replaced =
                std::fs::metadata(path).is_ok_and(|meta| (meta.dev(), meta.ino()) != *id);
            if replaced {
                // What was written to the old file before it was replaced.
                read_new(file, offset, &mut pending, emit)?;
                flush(&mut pending, emit);
                current = None;
                continue;
            }
        }
        watch.wait(FOLLOW_TICK);
    }
    Ok(())
}

/// The folder of `path`, when it names one.
fn parent_of(path: &Path) -> Option<&Path> {
    path.parent().filter(|dir| !dir.as_os_str().is_empty())
}

/// Opens a log for reading: it may be reached through a symlink (nothing
/// is written), but must be a regular file. The open does not block on a
/// FIFO.
fn open_for_reading(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags((OFlag::O_NONBLOCK | OFlag::O_CLOEXEC).bits())
        .open(path)?;
    if !file.metadata()?.file_type().is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a regular file", path.display()),
        ));
    }
    Ok(file)
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn rename_if_present(from: &Path, to: &Path) -> io::Result<()> {
    match std::fs::rename(from, to) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Copies all of `source` (from its start to its end at the time) to a new
/// temp file beside `dest`, fsyncs it and renames it onto `dest`.
fn copy_into_place(source: &File, dest: &Path) -> io::Result<()> {
    let dir = parent_of(dest).unwrap_or(Path::new("."));
    let mut tmp = super::safe_fs::temp_beside(dest, dir, LOG_MODE)?;
    // `source` was just opened: its offset is 0. On Linux this copy is
    // copy_file_range(2), done in the kernel.
    let mut reader = source;
    io::copy(&mut reader, tmp.as_file_mut())?;
    tmp.as_file().sync_data()?;
    // rename(2) replaces whatever is at `dest`, a symlink too, and never
    // writes through it.
    tmp.persist(dest).map_err(|e| e.error)?;
    Ok(())
}

/// Reads into `buf` at `offset` until it is full or the end of the file;
/// returns how many bytes were read.
fn read_at_most(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match file.read_at(&mut buf[got..], offset + got as u64) {
            Ok(0) => break,
            Ok(k) => got += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Reads `file` from `offset` to its end, emitting the text; returns the
/// offset reached.
fn read_new(
    file: &File,
    mut offset: u64,
    pending: &mut Vec<u8>,
    emit: &mut dyn FnMut(&str),
) -> io::Result<u64> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let got = read_at_most(file, &mut buf, offset)?;
        if got == 0 {
            return Ok(offset);
        }
        offset += got as u64;
        pending.extend_from_slice(&buf[..got]);
        let whole = pending.len() - incomplete_tail(pending);
        if whole > 0 {
            emit(&String::from_utf8_lossy(&pending[..whole]));
            pending.drain(..whole);
        }
    }
}

/// Emits what is held back (an incomplete character), as it is.
fn flush(pending: &mut Vec<u8>, emit: &mut dyn FnMut(&str)) {
    if !pending.is_empty() {
        emit(&String::from_utf8_lossy(pending));
        pending.clear();
    }
}

/// How many bytes at the end of `bytes` begin a UTF-8 character that is
/// not complete yet (0 to 3).
fn incomplete_tail(bytes: &[u8]) -> usize {
    for back in 1..=bytes.len().min(3) {
        let b = bytes[bytes.len() - back];
        if b & 0xC0 != 0x80 {
            let len = match b {
                0xF0.. => 4,
                0xE0.. => 3,
                0xC0.. => 2,
                _ => 1,
            };
            return if len > back { back } else { 0 };
        }
    }
    0
}

/// An inotify watch on a log's folder, to wake [`follow`] when the log
/// changes; `None` when it cannot be had (then it just sleeps).
struct FolderWatch {
    inotify: Option<Inotify>,
    name: Option<OsString>,
}

impl FolderWatch {
    fn new(path: &Path) -> FolderWatch {
        let dir = parent_of(path).unwrap_or(Path::new("."));
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
            .ok()
            .filter(|inotify| {
                inotify
                    .add_watch(
                        dir,
                        AddWatchFlags::IN_MODIFY
                            | AddWatchFlags::IN_CREATE
                            | AddWatchFlags::IN_MOVED_TO
                            | AddWatchFlags::IN_MOVED_FROM
                            | AddWatchFlags::IN_DELETE
                            | AddWatchFlags::IN_ATTRIB,
                    )
                    .is_ok()
            });
        FolderWatch {
            inotify,
            name: path.file_name().map(OsString::from),
        }
    }

    /// Waits until the log changes or `tick` has passed.
    fn wait(&self, tick: Duration) {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        use std::os::fd::AsFd;
        let Some(inotify) = &self.inotify else {
            std::thread::sleep(tick);
            return;
        };
        let deadline = Instant::now() + tick;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            let timeout = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
            let mut fds = [PollFd::new(inotify.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, timeout) {
                Ok(0) => return,
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => {
                    std::thread::sleep(left);
                    return;
                }
            }
            let events = inotify.read_events().unwrap_or_default();
            // Other files of the folder (other workers' logs) do not wake
            // it; an overflow (no name) does.
            if events
                .iter()
                .any(|e| e.name.is_none() || e.name == self.name)
            {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::safe_fs::SymlinkRefused;
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    use std::process::{Child, Command, Stdio};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    /// Kills and reaps the child when the test ends, passed or failed.
    struct KillOnDrop(Child);

    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap()
    }

    fn size(path: &Path) -> u64 {
        std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
    }

    #[test]
    fn open_creates_folders_and_appends() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("logs/sub/w.log");
        open_for_worker(&path).unwrap().write_all(b"a\n").unwrap();
        open_for_worker(&path).unwrap().write_all(b"b\n").unwrap();
        assert_eq!(read(&path), "a\nb\n");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & !LOG_MODE, 0, "file mode {mode:o}");
        let dir = tmp.path().join("logs/sub");
        let mode = std::fs::metadata(dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & !LOG_DIR_MODE, 0, "folder mode {mode:o}");
    }

    #[test]
    fn symlinks_and_fifos_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let victim = tmp.path().join("victim");
        std::fs::write(&victim, "precious\n".repeat(100)).unwrap();
        let link = tmp.path().join("w.log");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        let err = open_for_worker(&link).unwrap_err();
        assert_eq!(SymlinkRefused::of(&err).unwrap().path, link);
        let err = rotate_if_needed(&link, 10, 2).unwrap_err();
        assert!(SymlinkRefused::of(&err).is_some(), "{err}");
        assert_eq!(read(&victim), "precious\n".repeat(100));
        assert!(!rotated_path(&link, 1).exists());

        let fifo = tmp.path().join("fifo.log");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let err = open_for_worker(&fifo).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
        assert_eq!(
            tail(&fifo, 1).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
    }

    #[test]
    fn rotation_shifts_and_drops_the_oldest() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("w.log");
        let live = "new\n".repeat(50);
        std::fs::write(&path, &live).unwrap();
        for (k, text) in [(1, "one"), (2, "two"), (3, "three")] {
            std::fs::write(rotated_path(&path, k), text).unwrap();
        }
        assert!(
            !rotate_if_needed(&path, 200, 3).unwrap(),
            "200 bytes is not over 200"
        );
        assert!(!rotate_if_needed(&path, 0, 3).unwrap(), "0 is never");
        assert_eq!(size(&path), 200);

        assert!(rotate_if_needed(&path, 199, 3).unwrap());
        assert_eq!(read(&path), "");
        assert_eq!(read(&rotated_path(&path, 1)), live);
        assert_eq!(read(&rotated_path(&path, 2)), "one");
        assert_eq!(read(&rotated_path(&path, 3)), "two");
        assert!(!rotated_path(&path, 4).exists());
        let mode = std::fs::metadata(rotated_path(&path, 1))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777 & !LOG_MODE, 0, "mode {mode:o}");
        let mut names: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["w.log", "w.log.1", "w.log.2", "w.log.3"],
            "no temp file left"
        );

        assert!(!rotate_if_needed(&tmp.path().join("missing.log"), 1, 3).unwrap());
    }

    #[test]
    fn keep_zero_only_truncates() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("w.log");
        std::fs::write(&path, "x".repeat(100)).unwrap();
        assert!(rotate_if_needed(&path, 10, 0).unwrap());
        assert_eq!(size(&path), 0);
        assert!(!rotated_path(&path, 1).exists());
    }

    #[test]
    fn a_running_writer_goes_on_after_rotation_and_the_log_starts_small() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("logs/w.log");
        let file = open_for_worker(&path).unwrap();
        let child = Command::new("sh")
            .args(["-c", "while :; do echo x; sleep 0.01; done"])
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap();
        let _child = KillOnDrop(child);

        wait_for("the log to pass 100 bytes", || size(&path) > 100);
        assert!(rotate_if_needed(&path, 100, 2).unwrap());
        let rotated = read(&rotated_path(&path, 1));
        assert!(
            rotated.len() > 100 && rotated.lines().all(|l| l == "x"),
            "{rotated:?}"
        );
        assert!(
            size(&path) < rotated.len() as u64,
            "the live log starts small"
        );

        wait_for("the writer to go on", || size(&path) >= 20);
        let live = read(&path);
        // O_APPEND: writes land at the new end, with no hole of zeros.
        assert!(live.lines().all(|l| l == "x"), "{live:?}");
        assert!(size(&path) < rotated.len() as u64 + 100);
    }

    #[test]
    fn tail_takes_the_last_lines() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("w.log");
        let lines: Vec<String> = (0..5000).map(|i| format!("line {i}")).collect();
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        assert_eq!(
            tail(&path, 3).unwrap(),
            ["line 4997", "line 4998", "line 4999"]
        );
        assert_eq!(tail(&path, 2000).unwrap(), lines[3000..]);
        assert!(tail(&path, 0).unwrap().is_empty());

        std::fs::write(&path, "a\nb\nno newline").unwrap();
        assert_eq!(tail(&path, 2).unwrap(), ["b", "no newline"]);
        assert_eq!(tail(&path, 10).unwrap(), ["a", "b", "no newline"]);

        std::fs::write(&path, "only\n").unwrap();
        assert_eq!(tail(&path, 10).unwrap(), ["only"]);
        std::fs::write(&path, "\n\n").unwrap();
        assert_eq!(tail(&path, 10).unwrap(), ["", ""]);
        std::fs::write(&path, b"bad \xff byte\n").unwrap();
        assert_eq!(tail(&path, 1).unwrap(), ["bad \u{fffd} byte"]);
        std::fs::write(&path, "").unwrap();
        assert!(tail(&path, 10).unwrap().is_empty());
        assert_eq!(
            tail(&tmp.path().join("missing"), 1).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
    }

    #[test]
    fn tail_reads_at_most_its_bound() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("w.log");
        let long = "y".repeat(TAIL_MAX_BYTES as usize + 10);
        std::fs::write(&path, format!("first\n{long}\n")).unwrap();
        let got = tail(&path, 2).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].len() as u64, TAIL_MAX_BYTES - 1);
    }

    /// Runs `follow` in a thread; returns what it emitted so far, and a
    /// guard that stops it.
    struct Follower {
        text: Arc<Mutex<String>>,
        stop: Arc<AtomicBool>,
        thread: Option<std::thread::JoinHandle<io::Result<()>>>,
    }

    impl Follower {
        fn start(path: &Path, from: u64) -> Follower {
            let text = Arc::new(Mutex::new(String::new()));
            let stop = Arc::new(AtomicBool::new(false));
            let (t, s, p) = (text.clone(), stop.clone(), path.to_path_buf());
            let thread = std::thread::spawn(move || {
                follow(
                    &p,
                    from,
                    &mut |chunk| t.lock().unwrap().push_str(chunk),
                    &|| s.load(Ordering::SeqCst),
                )
            });
            Follower {
                text,
                stop,
                thread: Some(thread),
            }
        }

        fn wait_for(&self, expected: &str) {
            wait_for(expected, || self.text.lock().unwrap().as_str() == expected);
        }

        fn stop(mut self) -> io::Result<()> {
            self.stop.store(true, Ordering::SeqCst);
            self.thread.take().unwrap().join().unwrap()
        }
    }

    impl Drop for Follower {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::SeqCst);
        }
    }

    fn append(path: &Path, text: &[u8]) {
        let mut f = OpenOptions::new().append(true).open(path).unwrap();
        f.write_all(text).unwrap();
    }

    #[test]
    fn follow_picks_up_appends_truncation_and_replacement() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("w.log");
        std::fs::write(&path, "already shown\n").unwrap();
        let follower = Follower::start(&path, size(&path));

        append(&path, b"one\n");
        follower.wait_for("one\n");
        // A character written in two halves comes out whole.
        append(&path, b"\xc3");
        std::thread::sleep(Duration::from_millis(50));
        append(&path, b"\xa9\n");
        follower.wait_for("one\n\u{e9}\n");

        // Truncated (a rotation), then written again from the start.
        let start = Instant::now();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(0)
            .unwrap();
        std::thread::sleep(Duration::from_millis(50));
        append(&path, b"two\n");
        follower.wait_for("one\n\u{e9}\ntwo\n");
        assert!(start.elapsed() < Duration::from_secs(2));

        // Replaced by another file.
        let new = tmp.path().join("w.log.new");
        std::fs::write(&new, "three\n").unwrap();
        std::fs::rename(&new, &path).unwrap();
        follower.wait_for("one\n\u{e9}\ntwo\nthree\n");
        append(&path, b"four\n");
        follower.wait_for("one\n\u{e9}\ntwo\nthree\nfour\n");

        let start = Instant::now();
        follower.stop().unwrap();
        assert!(start.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn follow_waits_for_a_missing_log() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("w.log");
        let follower = Follower::start(&path, 0);
        std::thread::sleep(Duration::from_millis(50));
        std::fs::write(&path, "hello\n").unwrap();
        follower.wait_for("hello\n");
        follower.stop().unwrap();
    }
}

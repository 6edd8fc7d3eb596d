//! Opening and writing the files pidwatch writes (its lock, `monitor.log`,
//! the state DB, the daemon's PID file) without following a symlink.
//!
//! pidwatch often runs as root in a folder other users can write to. A
//! symlink planted at one of its file names would make it create, truncate
//! or append to the symlink's target with its rights (ARCHITECTURE.md, "Untrusted
//! input": files pidwatch writes are never followed through symlinks). So
//! every such file is opened with `O_NOFOLLOW`, and a symlink found there is
//! refused with [`SymlinkRefused`], an error that names the file. Only the
//! last component is checked: the folders come from pidwatch's settings.

use std::fmt;
use std::fs::{File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The error of refusing to write through a symlink. It travels inside an
/// [`io::Error`] (kind `Other`); [`crate::error::Error::io`] turns it into
/// [`crate::error::Error::Symlink`] (exit 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SymlinkRefused {
    /// The symlink: the path pidwatch was asked to write.
    pub path: PathBuf,
}

impl fmt::Display for SymlinkRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "refusing to write {}: it is a symbolic link",
            self.path.display()
        )
    }
}

impl std::error::Error for SymlinkRefused {}

impl SymlinkRefused {
    /// The refusal for `path`, as an [`io::Error`].
    pub fn io_error(path: &Path) -> io::Error {
        io::Error::other(SymlinkRefused {
            path: path.to_path_buf(),
        })
    }

    /// The refusal carried by `err`, if it is one.
    pub fn of(err: &io::Error) -> Option<&SymlinkRefused> {
        err.get_ref()?.downcast_ref::<SymlinkRefused>()
    }
}

/// Fails when `path` itself is a symlink (one `lstat(2)`); a missing file is
/// fine.
///
/// Errors: [`SymlinkRefused`] when it is a symlink; the `lstat` error when it
/// cannot be looked at (EACCES on a folder, ENOTDIR, ...).
pub fn refuse_symlink(path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => Err(SymlinkRefused::io_error(path)),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Opens `path` with `options` plus `O_NOFOLLOW | O_CLOEXEC`, and turns the
/// `ELOOP` of a symlink into [`SymlinkRefused`].
fn open_nofollow(options: &mut OpenOptions, path: &Path) -> io::Result<File> {
    open_nofollow_with(options, path, nix::fcntl::OFlag::empty())
}

/// [`open_nofollow`] with `extra` open flags.
fn open_nofollow_with(
    options: &mut OpenOptions,
    path: &Path,
    extra: nix::fcntl::OFlag,
) -> io::Result<File> {
    options
        .custom_flags(nofollow_flags() | extra.bits())
        .open(path)
        .map_err(|e| {
            // ELOOP also comes from a loop in the folders: only a symlink
            // in the last component is named as such.
            if e.raw_os_error() == Some(nix::errno::Errno::ELOOP as i32)
                && std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
            {
                SymlinkRefused::io_error(path)
            } else {
                e
            }
        })
}

fn nofollow_flags() -> i32 {
    (nix::fcntl::OFlag::O_NOFOLLOW | nix::fcntl::OFlag::O_CLOEXEC).bits()
}

/// Opens `path` for appending, creating it (mode 0666 before the umask) if
/// missing, without following a symlink: for `monitor.log`.
///
/// Errors: [`SymlinkRefused`] when `path` is a symlink (dangling or not);
/// the OS error when it cannot be created or opened.
pub fn open_append_nofollow(path: &Path) -> io::Result<File> {
    open_nofollow(OpenOptions::new().create(true).append(true), path)
}

/// Opens `path` for reading and writing, creating it (mode 0666 before the
/// umask) if missing and never truncating it, without following a symlink:
/// for the lock file, whose content (the holder's PID) is read by others.
///
/// Errors: as [`open_append_nofollow`].
pub fn open_lock_nofollow(path: &Path) -> io::Result<File> {
    open_nofollow(
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false),
        path,
    )
}

/// Opens `path` with `options` (mode, create, append... as the caller sets
/// them) plus `O_NOFOLLOW | O_CLOEXEC`, and only when it is a regular file:
/// for files pidwatch hands to others or copies, such as worker logs.
///
/// The open itself is non-blocking, so that a FIFO planted at `path` can
/// neither hang pidwatch (a FIFO opened for writing waits for a reader) nor
/// be accepted; `O_NONBLOCK` is cleared again on the regular file returned.
///
/// Errors: [`SymlinkRefused`] when `path` is a symlink; `InvalidInput`
/// naming `path` when it is a folder, FIFO, socket or device; the OS error
/// when it cannot be opened.
pub fn open_regular_nofollow(options: &mut OpenOptions, path: &Path) -> io::Result<File> {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    let not_regular = || {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("refusing {}: it is not a regular file", path.display()),
        )
    };
    let file = open_nofollow_with(options, path, OFlag::O_NONBLOCK).map_err(|e| {
        // ENXIO: a FIFO without a reader, or a device without its driver;
        // EISDIR: a folder opened for writing.
        let errno = e.raw_os_error();
        if (errno == Some(nix::errno::Errno::ENXIO as i32)
            || errno == Some(nix::errno::Errno::EISDIR as i32))
            && std::fs::symlink_metadata(path).is_ok_and(|m| !m.file_type().is_file())
        {
            not_regular()
        } else {
            e
        }
    })?;
    if !file.metadata()?.file_type().is_file() {
        return Err(not_regular());
    }
    let flags = OFlag::from_bits_truncate(fcntl(&file, FcntlArg::F_GETFL)?);
    fcntl(&file, FcntlArg::F_SETFL(flags - OFlag::O_NONBLOCK))?;
    Ok(file)
}

/// Replaces `path` with `bytes`, atomically: readers see the old content or
/// the whole new one. The bytes go to a new temp file of the same folder
/// (created with `O_EXCL` under a random name, then given exactly mode
/// `mode` through its descriptor, whatever the umask), are fsync'd, and the
/// temp file is renamed onto `path`. The folder is created if missing.
///
/// Errors: [`SymlinkRefused`] when `path` is a symlink (its target is left
/// as it is); the OS error when the folder or temp file cannot be created,
/// written or renamed (the temp file is removed then).
pub fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    replace(path, bytes, mode, true)
}

/// [`write_atomically`] without the fsync, for a file whose content matters
/// only in the boot that wrote it: a program's PID file and exit file,
/// which name processes of this boot and are read as such (an exit file
/// counts for an incarnation of this boot, or when written since boot; a
/// PID file proves a process only when that process started before the
/// file was written). A crash of pidwatch loses nothing (the kernel keeps
/// the written pages); a crash of the kernel that loses them ends every
/// process they name too, and what it leaves (the old content, an empty or
/// missing file) reads as a stale file of an earlier boot. Readers still
/// see the old content or the whole new one. The fsync cost a millisecond
/// a start (more on a busy disk), a second for a thousand programs.
///
/// Errors: as [`write_atomically`].
pub fn write_atomically_unsynced(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    replace(path, bytes, mode, false)
}

/// [`write_atomically`], with the fsync before the rename when `sync`.
fn replace(path: &Path, bytes: &[u8], mode: u32, sync: bool) -> io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir)?;
    refuse_symlink(path)?;
    let mut tmp = temp_beside(path, dir, mode)?;
    tmp.as_file_mut().write_all(bytes)?;
    if sync {
        tmp.as_file().sync_all()?;
    }
    // rename(2) replaces whatever is at `path` (even a symlink planted since
    // the check above) and never writes through it.
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// A temp file in `dir` for a file to be renamed onto `path`: named
/// `.<name>.<random>.tmp` (unpredictable, created with `O_EXCL`), with
/// mode `mode` (set again after creation, whatever the umask).
///
/// Errors: the OS error of creating it or setting its mode.
pub fn temp_beside(path: &Path, dir: &Path, mode: u32) -> io::Result<tempfile::NamedTempFile> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .permissions(Permissions::from_mode(mode))
        .tempfile_in(dir)?;
    tmp.as_file()
        .set_permissions(Permissions::from_mode(mode))?;
    Ok(tmp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn victim(dir: &Path) -> PathBuf {
        let path = dir.join("victim");
        std::fs::write(&path, "precious\n").unwrap();
        path
    }

    fn assert_refused(err: io::Error, path: &Path) {
        let refused = SymlinkRefused::of(&err).unwrap_or_else(|| panic!("not a refusal: {err}"));
        assert_eq!(refused.path, path);
        assert_eq!(
            err.to_string(),
            format!(
                "refusing to write {}: it is a symbolic link",
                path.display()
            )
        );
    }

    #[test]
    fn opening_through_a_symlink_is_refused_and_the_target_untouched() {
        let tmp = tempfile::tempdir().unwrap();
        let victim = victim(tmp.path());
        let link = tmp.path().join("link");
        symlink(&victim, &link).unwrap();
        assert_refused(open_append_nofollow(&link).unwrap_err(), &link);
        assert_refused(open_lock_nofollow(&link).unwrap_err(), &link);
        assert_refused(refuse_symlink(&link).unwrap_err(), &link);
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");

        // A dangling symlink would create its target.
        let nowhere = tmp.path().join("nowhere");
        let dangling = tmp.path().join("dangling");
        symlink(&nowhere, &dangling).unwrap();
        assert_refused(open_lock_nofollow(&dangling).unwrap_err(), &dangling);
        assert!(!nowhere.exists());
    }

    #[test]
    fn regular_files_open_and_append() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("log");
        open_append_nofollow(&path)
            .unwrap()
            .write_all(b"a\n")
            .unwrap();
        open_append_nofollow(&path)
            .unwrap()
            .write_all(b"b\n")
            .unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a\nb\n");
        drop(open_lock_nofollow(&path).unwrap());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a\nb\n");
        refuse_symlink(&path).unwrap();
        refuse_symlink(&tmp.path().join("missing")).unwrap();
    }

    #[test]
    fn write_atomically_replaces_files_and_refuses_symlinks() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("sub/daemon.pid");
        write_atomically(&path, b"1\n", 0o644).unwrap();
        write_atomically(&path, b"42\n", 0o644).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "42\n");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & !0o644, 0, "mode {mode:o}");
        // No temp file is left behind.
        let names: Vec<_> = std::fs::read_dir(tmp.path().join("sub"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["daemon.pid"]);

        let victim = victim(tmp.path());
        let link = tmp.path().join("link.pid");
        symlink(&victim, &link).unwrap();
        assert_refused(write_atomically(&link, b"42\n", 0o644).unwrap_err(), &link);
        assert_refused(
            write_atomically_unsynced(&link, b"42\n", 0o644).unwrap_err(),
            &link,
        );
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
        assert!(std::fs::symlink_metadata(&link).unwrap().is_symlink());
        write_atomically_unsynced(&path, b"7\n", 0o600).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "7\n");
    }
}

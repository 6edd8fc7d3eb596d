//! One monitor at a time: an `flock(2)` on `DIR/pidwatch.lock`.
//!
//! The lock belongs to the open file, so it is released when the holder exits,
//! however it exits; there is no stale lock to clean. The holder writes its
//! PID into the file so that a refused second monitor can name it.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use crate::error::{Error, Result};
use crate::store::safe_fs;

/// A held lock; dropping it releases the lock.
#[derive(Debug)]
pub struct Lock {
    file: Flock<File>,
    path: PathBuf,
}

/// Takes the lock at `path` without waiting, creating the file if needed,
/// and writes this process's PID into it. The file is opened with
/// `O_NOFOLLOW` ([`safe_fs::open_lock_nofollow`]).
///
/// Errors: [`Error::Locked`] (exit 2) naming the PID of the holder when the
/// lock is held; [`Error::Symlink`] (exit 2) when `path` is a symlink;
/// [`Error::Io`] when the file cannot be created.
pub fn acquire(path: &Path) -> Result<Lock> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("creating", dir, e))?;
    }
    let file =
        safe_fs::open_lock_nofollow(path).map_err(|e| Error::io("opening lock file", path, e))?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(file) => {
            let mut lock = Lock {
                file,
                path: path.to_path_buf(),
            };
            lock.write_pid(std::process::id())?;
            Ok(lock)
        }
        Err((mut file, Errno::EWOULDBLOCK)) => {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            let holder = text.trim();
            Err(Error::Locked {
                path: path.to_path_buf(),
                holder: if holder.is_empty() {
                    "?".into()
                } else {
                    holder.chars().take(12).collect()
                },
            })
        }
        Err((_, errno)) => Err(Error::io("locking", path, errno.into())),
    }
}

/// Like [`acquire`], but waits up to `timeout` for a holder to let go (a
/// one-shot `check --auto-restart` that is acting when the monitor starts),
/// trying again every 100 ms; `on_wait` is called once, with the first
/// refusal, to say that it waits.
///
/// Errors: as [`acquire`], the last refusal once `timeout` has passed.
pub fn acquire_waiting(
    path: &Path,
    timeout: std::time::Duration,
    on_wait: impl FnOnce(&Error),
) -> Result<Lock> {
    let deadline = std::time::Instant::now() + timeout;
    let mut on_wait = Some(on_wait);
    loop {
        match acquire(path) {
            Err(e @ Error::Locked { .. }) if std::time::Instant::now() < deadline => {
                if let Some(say) = on_wait.take() {
                    say(&e);
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            other => return other,
        }
    }
}

impl Lock {
    /// Rewrites the holder PID (after `--daemon` forked, say).
    ///
    /// Errors: the file cannot be written.
    pub fn write_pid(&mut self, pid: u32) -> Result<()> {
        let path = self.path.clone();
        let file: &mut File = &mut self.file;
        file.set_len(0)
            .and_then(|_| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(format!("{pid}\n").as_bytes()))
            .map(|_| ())
            .map_err(|e| Error::io("writing", &path, e))
    }
}

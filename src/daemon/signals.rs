//! Signals for the long-running monitor, the signal-hook way: handlers only
//! set a flag and write a byte to a self-pipe; the loop waits on the pipe and
//! does the work.

use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use signal_hook::SigId;
use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGTERM, SIGUSR1};

/// The signals that arrived since the last [`Signals::take`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pending {
    /// SIGTERM or SIGINT: stop after the step in hand.
    pub shutdown: bool,
    /// SIGHUP: reopen the log, reload settings.
    pub reload: bool,
    /// SIGUSR1: check now.
    pub check_now: bool,
    /// SIGCHLD: a child changed state; reap.
    pub child: bool,
}

/// The installed handlers and the read end of their pipe.
pub struct Signals {
    pipe: UnixStream,
    shutdown: Arc<AtomicBool>,
    reload: Arc<AtomicBool>,
    check_now: Arc<AtomicBool>,
    child: Arc<AtomicBool>,
    ids: Vec<SigId>,
}

impl Signals {
    /// Installs handlers for TERM, INT, HUP, USR1 and CHLD.
    ///
    /// Errors: the pipe cannot be made or a handler cannot be installed.
    pub fn install() -> io::Result<Signals> {
        let (read, write) = UnixStream::pair()?;
        read.set_nonblocking(true)?;
        let mut signals = Signals {
            pipe: read,
            shutdown: Arc::default(),
            reload: Arc::default(),
            check_now: Arc::default(),
            child: Arc::default(),
            ids: Vec::new(),
        };
        let flags = [
            (SIGTERM, Arc::clone(&signals.shutdown)),
            (SIGINT, Arc::clone(&signals.shutdown)),
            (SIGHUP, Arc::clone(&signals.reload)),
            (SIGUSR1, Arc::clone(&signals.check_now)),
            (SIGCHLD, Arc::clone(&signals.child)),
        ];
        for (sig, flag) in flags {
            // The flag first, then the wake-up byte: the loop never wakes
            // without finding the flag set.
            // (A failure drops `signals`, which unregisters what was set.)
            signals.ids.push(signal_hook::flag::register(sig, flag)?);
            signals.ids.push(signal_hook::low_level::pipe::register(
                sig,
                write.try_clone()?,
            )?);
        }
        Ok(signals)
    }

    /// The descriptor that becomes readable when a signal arrived.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.pipe.as_fd()
    }

    /// Drains the pipe and returns (and clears) the signals that arrived.
    pub fn take(&self) -> Pending {
        let mut buf = [0u8; 64];
        while matches!((&self.pipe).read(&mut buf), Ok(n) if n > 0) {}
        Pending {
            shutdown: self.shutdown.swap(false, Ordering::SeqCst),
            reload: self.reload.swap(false, Ordering::SeqCst),
            check_now: self.check_now.swap(false, Ordering::SeqCst),
            child: self.child.swap(false, Ordering::SeqCst),
        }
    }
}

impl Drop for Signals {
    fn drop(&mut self) {
        for id in self.ids.drain(..) {
            signal_hook::low_level::unregister(id);
        }
    }
}

//! The pidfds of running workers' wrappers, registered in the monitor's
//! epoll set: one becomes readable the moment its process exits.

use std::collections::HashMap;
use std::os::fd::OwnedFd;

use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollEvent, EpollFlags};

use crate::observe::procfs::Procfs;

/// The first epoll token handed to a pidfd (lower ones are the monitor's own).
pub const FIRST_PIDFD_TOKEN: u64 = 16;

/// A pidfd watch on one running worker.
struct Watch {
    fd: OwnedFd,
    pid: i32,
    start_ticks: u64,
    token: u64,
}

/// Whether a running worker could be watched through a pidfd.
pub enum Watched {
    /// Its pidfd is in the epoll set.
    Yes,
    /// It exited, or its PID now names another process: observe it again.
    Changed,
    /// No pidfd can be had (no kernel support, out of descriptors): the
    /// sweep and inotify still see it.
    Unavailable(Errno),
}

/// The pidfds of running workers, registered in the epoll set.
pub struct Watches {
    by_worker: HashMap<String, Watch>,
    by_token: HashMap<u64, String>,
    next_token: u64,
    /// Whether pidfds can be had (false after ENOSYS).
    pub supported: bool,
}

impl Watches {
    /// `pidfd` is false to act as on a kernel without `pidfd_open` (tests
    /// set `PIDWATCH_TEST_NO_PIDFD` for that: ENOSYS cannot be had on a
    /// modern kernel).
    pub fn new(pidfd: bool) -> Watches {
        Watches {
            by_worker: HashMap::new(),
            by_token: HashMap::new(),
            next_token: FIRST_PIDFD_TOKEN,
            supported: pidfd,
        }
    }

    /// Stops watching `worker`.
    pub fn remove(&mut self, epoll: &Epoll, worker: &str) {
        if let Some(w) = self.by_worker.remove(worker) {
            let _ = epoll.delete(&w.fd);
            self.by_token.remove(&w.token);
        }
    }

    /// The worker whose pidfd fired; its watch is dropped (a pidfd stays
    /// readable for good once the process exited).
    pub fn fired(&mut self, epoll: &Epoll, token: u64) -> Option<String> {
        let worker = self.by_token.get(&token)?.clone();
        self.remove(epoll, &worker);
        Some(worker)
    }

    /// Watches `worker`, running as `pid` started at `start_ticks`. The pidfd
    /// is opened first and the start time read again after, so that a PID
    /// reused in between is caught.
    pub fn ensure(
        &mut self,
        epoll: &Epoll,
        procfs: &Procfs,
        worker: &str,
        pid: i32,
        start_ticks: u64,
    ) -> Watched {
        if let Some(w) = self.by_worker.get(worker) {
            if w.pid == pid && w.start_ticks == start_ticks {
                return Watched::Yes;
            }
            self.remove(epoll, worker);
        }
        if !self.supported {
            return Watched::Unavailable(Errno::ENOSYS);
        }
        let Some(raw) = rustix::process::Pid::from_raw(pid) else {
            return Watched::Changed;
        };
        let fd = match rustix::process::pidfd_open(raw, rustix::process::PidfdFlags::NONBLOCK) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOSYS) => {
                self.supported = false;
                return Watched::Unavailable(Errno::ENOSYS);
            }
            Err(rustix::io::Errno::SRCH) => return Watched::Changed,
            Err(e) => return Watched::Unavailable(Errno::from_raw(e.raw_os_error())),
        };
        let same = matches!(procfs.stat(pid), Ok(Some(s)) if s.start_ticks == start_ticks);
        if !same {
            return Watched::Changed;
        }
        let token = self.next_token;
        self.next_token += 1;
        if let Err(e) = epoll.add(&fd, EpollEvent::new(EpollFlags::EPOLLIN, token)) {
            return Watched::Unavailable(e);
        }
        self.by_token.insert(token, worker.to_string());
        self.by_worker.insert(
            worker.to_string(),
            Watch {
                fd,
                pid,
                start_ticks,
                token,
            },
        );
        Watched::Yes
    }

    /// Stops watching every worker.
    pub fn clear(&mut self, epoll: &Epoll) {
        let workers: Vec<String> = self.by_worker.keys().cloned().collect();
        for w in workers {
            self.remove(epoll, &w);
        }
    }
}

//! The monitor's inotify watch on each running incarnation's
//! `cgroup.events`: the kernel marks the file modified when `populated`
//! changes, so the moment the last process of an incarnation's tree is
//! gone is seen at once (the kernel's cgroup-v2 documentation, "Core
//! Interface Files").

use std::collections::{BTreeSet, HashMap};
use std::os::fd::AsFd;
use std::path::Path;

use nix::sys::epoll::{Epoll, EpollEvent, EpollFlags};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};

/// The epoll token of the cgroup inotify descriptor.
pub const TOKEN_CGROUPS: u64 = 2;

/// One watch per worker whose running incarnation has a cgroup.
#[derive(Default)]
pub struct CgroupEvents {
    inotify: Option<Inotify>,
    by_wd: HashMap<WatchDescriptor, String>,
    by_worker: HashMap<String, (WatchDescriptor, String)>,
}

impl CgroupEvents {
    /// Watches `cgroup`'s `cgroup.events` for `worker`, replacing a watch
    /// on another cgroup; adds the inotify descriptor to `epoll` under
    /// [`TOKEN_CGROUPS`] on first use.
    ///
    /// Errors: why it cannot watch, as a line for the log (the pidfd of the
    /// wrapper and the sweep still see deaths).
    pub fn ensure(&mut self, epoll: &Epoll, worker: &str, cgroup: &str) -> Result<(), String> {
        if self
            .by_worker
            .get(worker)
            .is_some_and(|(_, path)| path == cgroup)
        {
            return Ok(());
        }
        self.remove(worker);
        self.arm(epoll)?;
        let Some(inotify) = &self.inotify else {
            return Ok(());
        };
        let events = Path::new(cgroup).join("cgroup.events");
        let wd = inotify
            .add_watch(&events, AddWatchFlags::IN_MODIFY)
            .map_err(|e| format!("inotify on {}: {e}", events.display()))?;
        self.by_wd.insert(wd, worker.to_string());
        self.by_worker
            .insert(worker.to_string(), (wd, cgroup.to_string()));
        Ok(())
    }

    /// Makes the inotify descriptor and adds it to `epoll` under
    /// [`TOKEN_CGROUPS`], once (the monitor does it at start, so that its
    /// descriptor count does not change with what it watches).
    ///
    /// Errors: why it cannot, as a line for the log.
    pub fn arm(&mut self, epoll: &Epoll) -> Result<(), String> {
        if self.inotify.is_some() {
            return Ok(());
        }
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
            .map_err(|e| format!("inotify_init1 for cgroup.events: {e}"))?;
        epoll
            .add(
                inotify.as_fd(),
                EpollEvent::new(EpollFlags::EPOLLIN, TOKEN_CGROUPS),
            )
            .map_err(|e| format!("epoll_ctl for cgroup.events: {e}"))?;
        self.inotify = Some(inotify);
        Ok(())
    }

    /// Stops watching `worker`'s cgroup.
    pub fn remove(&mut self, worker: &str) {
        if let Some((wd, _)) = self.by_worker.remove(worker) {
            self.by_wd.remove(&wd);
            if let Some(inotify) = &self.inotify {
                let _ = inotify.rm_watch(wd);
            }
        }
    }

    /// The workers whose cgroup changed since the last read.
    pub fn read(&mut self) -> BTreeSet<String> {
        let mut workers = BTreeSet::new();
        let Some(inotify) = &self.inotify else {
            return workers;
        };
        while let Ok(events) = inotify.read_events() {
            if events.is_empty() {
                break;
            }
            for ev in events {
                if let Some(worker) = self.by_wd.get(&ev.wd) {
                    workers.insert(worker.clone());
                }
                if ev.mask.contains(AddWatchFlags::IN_IGNORED) {
                    // The cgroup was removed: the kernel dropped the watch.
                    if let Some(worker) = self.by_wd.remove(&ev.wd) {
                        self.by_worker.remove(&worker);
                    }
                }
            }
        }
        workers
    }
}

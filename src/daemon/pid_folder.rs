//! The monitor's inotify watch on `pids/`: a PID file created, replaced or
//! removed is seen at once.

use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::AsFd;
use std::path::Path;

use nix::sys::epoll::{Epoll, EpollEvent, EpollFlags};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

/// The epoll token of the inotify descriptor.
pub const TOKEN_INOTIFY: u64 = 1;

/// The watch, once armed.
#[derive(Default)]
pub struct PidFolder {
    inotify: Option<Inotify>,
}

impl PidFolder {
    /// Arms the watch on `dir` (creating the folder if missing) and adds it
    /// to `epoll` under [`TOKEN_INOTIFY`]; does nothing when armed.
    ///
    /// Errors: why it cannot watch, as a line for the log.
    pub fn watch(&mut self, epoll: &Epoll, dir: &Path) -> Result<(), String> {
        if self.inotify.is_some() {
            return Ok(());
        }
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
            .map_err(|e| format!("inotify_init1: {e}; PID files are seen by the sweep only"))?;
        let mask = AddWatchFlags::IN_CREATE
            | AddWatchFlags::IN_CLOSE_WRITE
            | AddWatchFlags::IN_MOVED_TO
            | AddWatchFlags::IN_MOVED_FROM
            | AddWatchFlags::IN_DELETE
            | AddWatchFlags::IN_DELETE_SELF
            | AddWatchFlags::IN_MOVE_SELF;
        inotify
            .add_watch(dir, mask)
            .map_err(|e| format!("inotify on {}: {e}", dir.display()))?;
        epoll
            .add(
                inotify.as_fd(),
                EpollEvent::new(EpollFlags::EPOLLIN, TOKEN_INOTIFY),
            )
            .map_err(|e| format!("epoll_ctl for inotify on {}: {e}", dir.display()))?;
        self.inotify = Some(inotify);
        Ok(())
    }

    /// The workers of `streams` named by the PID file events read now;
    /// `None` asks for a full sweep (queue overflow, the folder itself moved
    /// or deleted), and disarms the watch, to be armed again by the sweep.
    pub fn read<T>(
        &mut self,
        epoll: &Epoll,
        streams: &BTreeMap<String, T>,
    ) -> Option<BTreeSet<String>> {
        let inotify = self.inotify.as_ref()?;
        let mut workers = BTreeSet::new();
        let mut sweep = false;
        while let Ok(events) = inotify.read_events() {
            if events.is_empty() {
                break;
            }
            for ev in events {
                if ev.mask.intersects(
                    AddWatchFlags::IN_Q_OVERFLOW
                        | AddWatchFlags::IN_DELETE_SELF
                        | AddWatchFlags::IN_MOVE_SELF
                        | AddWatchFlags::IN_IGNORED,
                ) {
                    sweep = true;
                }
                if let Some(name) = ev.name.as_ref().and_then(|n| n.to_str())
                    && let Some(stem) = name.strip_suffix(".pid")
                    && streams.contains_key(stem)
                {
                    workers.insert(stem.to_string());
                }
            }
        }
        if sweep {
            if let Some(old) = self.inotify.take() {
                let _ = epoll.delete(old.as_fd());
            }
            return None;
        }
        Some(workers)
    }
}

//! Finding a worker's processes without a cgroup: one read of every
//! process's `/proc/<pid>/stat` and `/proc/<pid>/environ`, kept for a pass.
//!
//! Linux lists the members of a session or the carriers of an environment
//! variable nowhere, so this reads every process. It is done only when a
//! worker has no live wrapper and no cgroup holds its incarnation: once per
//! pass, shared by all workers that need it.

use std::collections::HashMap;
use std::io;
use std::path::Path;

use crate::core::{Incarnation, Member, ProcessId, Proof};
use crate::observe::procfs::{Markers, Procfs, Stat};

/// One live process, as the scan read it.
#[derive(Debug, Clone)]
pub struct ProcEntry {
    /// Its PID.
    pub pid: i32,
    /// Its stat fields.
    pub stat: Stat,
    /// The pidwatch variables in its environment.
    pub markers: Markers,
}

/// The pidwatch variables of processes read before, by PID and start time.
///
/// `/proc/<pid>/environ` shows the environment a process was given at
/// exec, which is where the markers are, and a PID with its start time names
/// one process for good: what was read once needs no second read. Reading
/// every process's environment is the costly part of a scan (the kernel
/// reads each one's memory); with the cache, a later scan reads only the
/// processes started since, and `/proc/<pid>/stat` of the others.
#[derive(Debug, Default)]
pub struct MarkerCache(HashMap<(i32, u64), Markers>);

/// Reads every live (non-zombie) process but pidwatch itself and PID 1,
/// taking the markers of processes seen before from `cache` and keeping
/// only the processes seen now in it.
///
/// Errors: `/proc` cannot be listed. A process that exits during the read,
/// or whose environment cannot be read (another user's, for a non-root
/// pidwatch), is skipped or read without markers.
pub fn scan(procfs: &Procfs, cache: &mut MarkerCache) -> io::Result<Vec<ProcEntry>> {
    let me = std::process::id() as i32;
    let mut entries = Vec::new();
    let mut seen = HashMap::with_capacity(cache.0.len());
    for entry in std::fs::read_dir(procfs.root())? {
        let Some(pid) = entry
            .ok()
            .and_then(|e| e.file_name().to_str()?.parse::<i32>().ok())
        else {
            continue;
        };
        if pid <= 1 || pid == me {
            continue;
        }
        let Ok(Some(stat)) = procfs.stat(pid) else {
            continue;
        };
        if matches!(stat.state, 'Z' | 'X') {
            continue;
        }
        let key = (pid, stat.start_ticks);
        let markers = match cache.0.remove(&key) {
            Some(markers) => markers,
            None => procfs.markers(pid).unwrap_or_default(),
        };
        seen.insert(key, markers.clone());
        entries.push(ProcEntry { pid, stat, markers });
    }
    cache.0 = seen;
    Ok(entries)
}

/// What must not count as an earlier incarnation's process: the live
/// incarnation's own (its wrapper, the carriers of its id, its session).
#[derive(Debug, Clone, Default)]
pub struct Exclude {
    /// The live wrapper's PID.
    pub wrapper: Option<i32>,
    /// The live incarnation's id.
    pub invocation: Option<String>,
    /// The live wrapper's session, when it leads one.
    pub session: Option<i32>,
}

/// What one look at the process table found of a worker.
#[derive(Debug, Clone, Default)]
pub struct Found {
    /// Processes of its earlier incarnations, to be stopped before a
    /// restart.
    pub members: Vec<Member>,
    /// Its workers that carry its stream marker and whose own wrapper lives,
    /// though pidwatch does not know that wrapper (the PID file missing,
    /// invalid or naming someone else): a live incarnation, never stopped,
    /// and a reason never to start another beside it.
    pub elsewhere: Vec<Member>,
}

/// The live processes among `scan` proved to be worker `worker`'s, and not
/// the live incarnation's (`exclude`):
///
/// - carriers of the incarnation's id (whose stream marker, if any, is this
///   worker's: an id inherited into another stream's wrapper proves nothing);
/// - carriers of the worker's stream marker (its id and its worker log
///   `log_file`, which names the orchestrator dir and the initiative; a
///   source without markers gives `None`): of an
///   earlier incarnation when their wrapper is gone, else found
///   `elsewhere`;
/// - members of the session the incarnation's verified wrapper led, started
///   no earlier than it, while the session has a member that started by
///   `session_cutoff` (clock ticks after boot: when the incarnation was last
///   known to hold it). The kernel does not reuse a session id while a
///   process of the session lives, so such a member proves that the session
///   is still the worker's and not a new one that took the freed id.
pub fn members_of(
    scan: &[ProcEntry],
    log_file: Option<&Path>,
    worker: &str,
    incarnation: Option<&Incarnation>,
    exclude: &Exclude,
    session_cutoff: u64,
) -> Found {
    // Whether a process of incarnation `id` other than its worker's lives:
    // its wrapper carries the id but not the stream marker, which the
    // wrapper exports to its worker only.
    let wrapper_lives = |e: &ProcEntry| match &e.markers.invocation {
        Some(id) => scan
            .iter()
            .any(|o| o.markers.invocation.as_ref() == Some(id) && o.markers.stream.is_none()),
        // Without an id: the session's leader (the wrapper, when it led one).
        None => scan.iter().any(|o| o.pid == e.stat.session),
    };
    let session = incarnation.and_then(|inc| match (inc.session, inc.wrapper) {
        (Some(sid), Some(w))
            if scan
                .iter()
                .any(|o| o.stat.session == sid && o.stat.start_ticks <= session_cutoff) =>
        {
            Some((sid, w.start_ticks))
        }
        _ => None,
    });
    let mut found = Found::default();
    for e in scan {
        if exclude.wrapper == Some(e.pid)
            || (exclude.invocation.is_some() && e.markers.invocation == exclude.invocation)
            || exclude.session.is_some_and(|s| e.stat.session == s)
        {
            continue;
        }
        let ours = log_file.is_some()
            && e.markers.stream.as_deref() == Some(worker)
            && e.markers.log_file.as_deref() == log_file;
        let by_id = incarnation.is_some_and(|inc| e.markers.invocation.as_deref() == Some(&inc.id))
            && (e.markers.stream.is_none() || ours);
        let by_session = session
            .is_some_and(|(sid, start)| e.stat.session == sid && e.stat.start_ticks >= start);
        let member = Member {
            process: ProcessId {
                pid: e.pid,
                start_ticks: e.stat.start_ticks,
            },
            comm: e.stat.comm.clone(),
            incarnation: e.markers.invocation.clone(),
            proof: Proof::StreamMarker,
        };
        if by_id {
            found.members.push(Member {
                proof: Proof::InvocationId,
                ..member
            });
        } else if ours && !wrapper_lives(e) {
            found.members.push(member);
        } else if ours {
            found.elsewhere.push(member);
        } else if by_session {
            found.members.push(Member {
                proof: Proof::Session,
                ..member
            });
        }
    }
    found.members.sort_by_key(|m| m.process.pid);
    found.elsewhere.sort_by_key(|m| m.process.pid);
    found
}

/// The live members of a cgroup (its `cgroup.procs`, descendants included),
/// with their start times; zombies and processes gone meanwhile are left out.
///
/// Errors: the cgroup's files cannot be read (it is gone: then it is empty).
pub fn cgroup_members(procfs: &Procfs, cgroup: &Path) -> io::Result<Vec<Member>> {
    let cg = crate::observe::cgroup::Cgroup::at(cgroup.to_path_buf());
    if !cg.exists() {
        return Ok(Vec::new());
    }
    let mut members = Vec::new();
    for pid in cg.procs()? {
        let Ok(Some(stat)) = procfs.stat(pid) else {
            continue;
        };
        if matches!(stat.state, 'Z' | 'X') {
            continue;
        }
        let markers = procfs.markers(pid).unwrap_or_default();
        members.push(Member {
            process: ProcessId {
                pid,
                start_ticks: stat.start_ticks,
            },
            comm: stat.comm,
            incarnation: markers.invocation,
            proof: Proof::Cgroup,
        });
    }
    members.sort_by_key(|m| m.process.pid);
    Ok(members)
}

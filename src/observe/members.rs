//! Finding a worker's processes without a cgroup: one read of every
//! process's `/proc/<pid>/stat` and `/proc/<pid>/environ`, kept for a pass.
//!
//! Linux lists the members of a session or the carriers of an environment
//! variable nowhere, so this reads every process. It is done only when a
//! worker has no live wrapper and no cgroup holds its incarnation: once per
//! pass, shared by all workers that need it.

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

/// Reads every live (non-zombie) process but pidwatch itself and PID 1.
///
/// Errors: `/proc` cannot be listed. A process that exits during the read,
/// or whose environment cannot be read (another user's, for a non-root
/// pidwatch), is skipped or read without markers.
pub fn scan(procfs: &Procfs) -> io::Result<Vec<ProcEntry>> {
    let me = std::process::id() as i32;
    let mut entries = Vec::new();
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
        let markers = procfs.markers(pid).unwrap_or_default();
        entries.push(ProcEntry { pid, stat, markers });
    }
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

/// The live processes among `scan` proved to be worker `worker`'s, and not
/// the live incarnation's (`exclude`): carriers of the incarnation's id, of
/// the worker's stream marker (its id and its worker log `log_file`, which
/// names the orchestrator dir and the initiative), or members of the
/// session its verified wrapper led (started no earlier than that wrapper).
pub fn members_of(
    scan: &[ProcEntry],
    log_file: &Path,
    worker: &str,
    incarnation: Option<&Incarnation>,
    exclude: &Exclude,
) -> Vec<Member> {
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
    let mut members = Vec::new();
    for e in scan {
        if exclude.wrapper == Some(e.pid)
            || (exclude.invocation.is_some() && e.markers.invocation == exclude.invocation)
            || exclude.session.is_some_and(|s| e.stat.session == s)
        {
            continue;
        }
        let by_id = incarnation.is_some_and(|inc| e.markers.invocation.as_deref() == Some(&inc.id));
        // A worker found by its stream marker alone is an earlier
        // incarnation's only when its own wrapper is gone: a live wrapper's
        // worker is that wrapper's business (its PID file may be missing or
        // invalid; pidwatch then reports, and never signals).
        let by_stream = e.markers.stream.as_deref() == Some(worker)
            && e.markers.log_file.as_deref() == Some(log_file)
            && !wrapper_lives(e);
        let by_session = incarnation.is_some_and(|inc| {
            matches!((inc.session, inc.wrapper), (Some(sid), Some(w))
                if e.stat.session == sid && e.stat.start_ticks >= w.start_ticks)
        });
        let proof = if by_id {
            Proof::InvocationId
        } else if by_stream {
            Proof::StreamMarker
        } else if by_session {
            Proof::Session
        } else {
            continue;
        };
        members.push(Member {
            process: ProcessId {
                pid: e.pid,
                start_ticks: e.stat.start_ticks,
            },
            comm: e.stat.comm.clone(),
            incarnation: e.markers.invocation.clone(),
            proof,
        });
    }
    members.sort_by_key(|m| m.process.pid);
    members
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

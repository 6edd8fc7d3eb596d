//! The cgroup v2 adapter (ARCHITECTURE.md, "Containment"): where the cgroup2 file
//! system is mounted, which cgroup pidwatch runs in, whether it may create
//! cgroups there ([`Delegation`]), and one incarnation's cgroup ([`Cgroup`]):
//! its members, whether it is populated, its CPU time and memory, signalling
//! and killing its members, removing it.
//!
//! Sources: proc(5) for `/proc/<pid>/mountinfo` and `/proc/<pid>/cgroup`;
//! the kernel's cgroup-v2 documentation
//! (`Documentation/admin-guide/cgroup-v2.rst`) for the interface files
//! (`cgroup.procs`, `cgroup.events`, `cgroup.kill`, `cpu.stat`,
//! `memory.current`); systemd's "Control Group APIs and Delegation" for the
//! delegation mark.
//!
//! Nothing here assumes `/sys/fs/cgroup`: the mount point is read from
//! `/proc/self/mountinfo` (hybrid layouts mount cgroup2 at
//! `/sys/fs/cgroup/unified`, say).

use std::ffi::OsString;
use std::fs;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use nix::sys::signal::Signal;

/// Environment variable naming an existing, writable cgroup directory to use
/// as the base of incarnation cgroups, instead of `<own cgroup>/pidwatch`
/// (for tests and unusual setups). It counts as a delegation.
pub const BASE_ENV: &str = "PIDWATCH_CGROUP_BASE";

/// The directory pidwatch creates in its own cgroup to hold incarnation
/// cgroups: `<own cgroup>/pidwatch`.
pub const BASE_NAME: &str = "pidwatch";

/// Where pidwatch reads its mounts (proc(5)).
const MOUNTINFO: &str = "/proc/self/mountinfo";
/// Where pidwatch reads its own cgroup (proc(5)).
const OWN_CGROUP: &str = "/proc/self/cgroup";
/// Present while systemd is the service manager (sd_booted(3)).
const SYSTEMD_RUNNING: &str = "/run/systemd/system";
/// The extended attributes systemd sets on a delegated cgroup, to "1".
const DELEGATE_XATTRS: [&str; 2] = ["trusted.delegate", "user.delegate"];

/// At most this many SIGKILL rounds in [`Cgroup::kill`]'s fallback.
const KILL_ROUNDS: u32 = 20;
/// How long each SIGKILL round of the fallback waits for the cgroup to empty.
const KILL_ROUND_WAIT: Duration = Duration::from_millis(100);
/// The longest single sleep of [`Cgroup::wait_empty`]: a safety net should
/// an inotify event be missed, not the way the wait normally ends.
const WAIT_SLICE: Duration = Duration::from_millis(250);

/// One cgroup2 mount, from a line of `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cgroup2Mount {
    /// Field 4: the cgroup at the mount's root, as `/proc/<pid>/cgroup`
    /// names cgroups (`/` unless a subtree is mounted, or the mount was made
    /// in another cgroup namespace).
    pub root: String,
    /// Field 5: the mount point, octal escapes (`\040` for a space) decoded.
    pub mount_point: PathBuf,
}

/// Every cgroup2 mount in mountinfo text (proc(5): the mount point is field
/// 5, the file system type is the first field after the `-` separator that
/// ends the optional fields), in the order of the text.
pub fn parse_cgroup2_mounts(text: &str) -> Vec<Cgroup2Mount> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // Fields 1 to 6 are fixed; optional fields follow, then "-".
            let sep = 6 + fields.get(6..)?.iter().position(|f| *f == "-")?;
            if *fields.get(sep + 1)? != "cgroup2" {
                return None;
            }
            let root = String::from_utf8_lossy(&unescape(fields[3])).into_owned();
            let mount_point = PathBuf::from(OsString::from_vec(unescape(fields[4])));
            mount_point
                .is_absolute()
                .then_some(Cgroup2Mount { root, mount_point })
        })
        .collect()
}

/// The mount point of the first cgroup2 mount in mountinfo text (see
/// [`parse_cgroup2_mounts`]); `None` when there is none.
pub fn parse_mountinfo(text: &str) -> Option<PathBuf> {
    parse_cgroup2_mounts(text)
        .into_iter()
        .next()
        .map(|m| m.mount_point)
}

/// Decodes the octal escapes (`\040` space, `\011` tab, `\012` newline,
/// `\134` backslash) the kernel writes in mountinfo paths.
fn unescape(field: &str) -> Vec<u8> {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && let Some(code) = bytes.get(i + 1..i + 4)
            && code.iter().all(|b| (b'0'..=b'7').contains(b))
        {
            let value = code
                .iter()
                .fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
            if let Ok(byte) = u8::try_from(value) {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// The cgroup v2 path in `/proc/<pid>/cgroup` text: what follows `0::` on
/// its `0::<path>` line (proc(5); `/` is the root of the hierarchy, or of the
/// cgroup namespace). The path is returned as the kernel wrote it, ` (deleted)`
/// suffix of a removed cgroup included. `None` when there is no such line
/// (no cgroup2 hierarchy).
pub fn parse_proc_cgroup(text: &str) -> Option<String> {
    text.lines()
        .find_map(|line| line.strip_prefix("0::"))
        .filter(|path| path.starts_with('/'))
        .map(str::to_string)
}

/// The PIDs in the text of a `cgroup.procs` file, one decimal per line.
pub fn parse_procs(text: &str) -> Vec<i32> {
    text.lines()
        .filter_map(|line| line.trim().parse().ok())
        .collect()
}

/// The value of `key` in a flat-keyed cgroup file (`cgroup.events`,
/// `cpu.stat`: one `key value` pair a line, see "Interface Files" in the
/// kernel's cgroup-v2 documentation).
pub fn parse_keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok())?
    })
}

/// The directory of cgroup `cgroup` (as `/proc/<pid>/cgroup` names it) under
/// `mount`; `None` when the cgroup is outside the mount's root.
pub fn dir_of(mount: &Cgroup2Mount, cgroup: &str) -> Option<PathBuf> {
    let rest = if mount.root == "/" {
        cgroup.strip_prefix('/')?
    } else if cgroup == mount.root {
        ""
    } else {
        cgroup
            .strip_prefix(mount.root.as_str())?
            .strip_prefix('/')?
    };
    if rest.split('/').any(|c| c == "..") {
        return None;
    }
    Some(if rest.is_empty() {
        mount.mount_point.clone()
    } else {
        mount.mount_point.join(rest)
    })
}

/// The name `/proc/<pid>/cgroup` gives the cgroup at directory `dir` under
/// `mount`; `None` when `dir` is not under the mount point.
pub fn cgroup_name(mount: &Cgroup2Mount, dir: &Path) -> Option<String> {
    let rest = dir.strip_prefix(&mount.mount_point).ok()?;
    let mut name = mount.root.trim_end_matches('/').to_string();
    for component in rest.components() {
        match component {
            Component::Normal(part) => {
                name.push('/');
                name.push_str(part.to_str()?);
            }
            Component::CurDir => {}
            _ => return None,
        }
    }
    if name.is_empty() {
        name.push('/');
    }
    Some(name)
}

/// Whether a process whose `/proc/<pid>/cgroup` path is `process_cgroup` is
/// in cgroup `cgroup` or one of its descendants.
pub fn is_within(process_cgroup: &str, cgroup: &str) -> bool {
    cgroup == "/"
        || process_cgroup == cgroup
        || process_cgroup
            .strip_prefix(cgroup)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// The cgroup2 mount holding `dir`: the one with the longest mount point
/// that is a prefix of it.
fn mount_holding<'a>(mounts: &'a [Cgroup2Mount], dir: &Path) -> Option<&'a Cgroup2Mount> {
    mounts
        .iter()
        .filter(|m| dir.starts_with(&m.mount_point))
        .max_by_key(|m| m.mount_point.as_os_str().len())
}

/// The delegation rule (see [`Delegation::probe`]): our own cgroup `own`
/// is ours to divide when it is the root of the hierarchy (no manager above
/// us: a container, a plain machine), when systemd is not running, or when
/// it carries systemd's delegation mark.
pub fn is_delegated(own: &str, systemd_running: bool, delegate_mark: bool) -> bool {
    own == "/" || !systemd_running || delegate_mark
}

/// Whether `dir` carries systemd's delegation mark: the extended attribute
/// `trusted.delegate` or `user.delegate` set to `1` (systemd, "Control Group
/// APIs and Delegation").
fn has_delegate_mark(dir: &Path) -> bool {
    DELEGATE_XATTRS.iter().any(|name| {
        let mut value = [0u8; 8];
        matches!(rustix::fs::getxattr(dir, *name, &mut value[..]), Ok(n) if value[..n].trim_ascii() == b"1")
    })
}

/// Reads the cgroup2 mounts of `/proc/self/mountinfo`.
fn own_mounts() -> io::Result<Vec<Cgroup2Mount>> {
    Ok(parse_cgroup2_mounts(&read_text(Path::new(MOUNTINFO))?))
}

/// `io::Error` with the same kind, its message prefixed by `path`.
fn at_path(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// An `InvalidData` error naming `path`.
fn malformed(path: &Path, what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{}: {what}", path.display()),
    )
}

/// Reads a small text file; errors name it.
fn read_text(path: &Path) -> io::Result<String> {
    fs::read_to_string(path).map_err(|e| at_path(path, e))
}

/// Checks that `dir` and its `cgroup.procs` may be written
/// (`access(2)`, `W_OK`).
fn check_writable(dir: &Path) -> Result<(), String> {
    for path in [dir.to_path_buf(), dir.join("cgroup.procs")] {
        rustix::fs::access(&path, rustix::fs::Access::WRITE_OK)
            .map_err(|e| format!("{} is not writable: {e}", path.display()))?;
    }
    Ok(())
}

/// Where incarnation cgroups can be made: a directory in a writable cgroup v2
/// subtree that is pidwatch's to divide.
#[derive(Debug, Clone)]
pub struct Delegation {
    /// The absolute directory under the cgroup2 mount that holds incarnation
    /// cgroups.
    base: PathBuf,
}

impl Delegation {
    /// Finds where incarnation cgroups can be made: the cgroup2 mount (in
    /// `/proc/self/mountinfo`), our own cgroup (the `0::` line of
    /// `/proc/self/cgroup`), and whether we may create a child there. The
    /// base is `<own cgroup>/pidwatch`, created (mode 0755) if missing; or
    /// the directory named by [`BASE_ENV`], if set, used as it is.
    ///
    /// Our own cgroup is delegated to us ([`is_delegated`]) when it is the
    /// root of the hierarchy (no manager above us, as in a container), when
    /// systemd is not running (`/run/systemd/system` absent), or when it
    /// carries systemd's delegation mark (xattr `trusted.delegate` or
    /// `user.delegate` set to `1`); [`BASE_ENV`] counts as a delegation too.
    /// `force` skips the delegation rule and requires only a writable cgroup
    /// (for `--containment cgroup`).
    ///
    /// Errors, each a sentence saying why: no cgroup2 mount; no `0::` line
    /// in `/proc/self/cgroup`; our cgroup outside the mount; a
    /// systemd-managed cgroup not delegated to us; [`BASE_ENV`] not naming a
    /// cgroup2 directory; the base cannot be created or is not writable.
    pub fn probe(force: bool) -> Result<Delegation, String> {
        Delegation::probe_with(force, std::env::var_os(BASE_ENV).filter(|v| !v.is_empty()))
    }

    /// [`Delegation::probe`] with the value of [`BASE_ENV`] given.
    fn probe_with(force: bool, env_base: Option<OsString>) -> Result<Delegation, String> {
        let mounts = own_mounts().map_err(|e| format!("cannot read the mounts: {e}"))?;
        if mounts.is_empty() {
            return Err(format!(
                "no cgroup2 file system is mounted (no cgroup2 line in {MOUNTINFO})"
            ));
        }
        if let Some(base) = env_base {
            return Delegation::from_env(Path::new(&base), &mounts);
        }
        let text = read_text(Path::new(OWN_CGROUP)).map_err(|e| e.to_string())?;
        let own = parse_proc_cgroup(&text).ok_or_else(|| {
            format!("{OWN_CGROUP} has no cgroup v2 line (0::/path): not in a cgroup2 hierarchy")
        })?;
        let own_dir = mounts.iter().find_map(|m| dir_of(m, &own)).ok_or_else(|| {
            format!("our cgroup {own} is outside every cgroup2 mount's root in {MOUNTINFO}")
        })?;
        if !force {
            let systemd = Path::new(SYSTEMD_RUNNING).exists();
            if !is_delegated(&own, systemd, has_delegate_mark(&own_dir)) {
                return Err(format!(
                    "our cgroup {own} ({}) is managed by systemd and not delegated to us \
                     (no trusted.delegate or user.delegate xattr set to 1): run pidwatch in a \
                     unit with Delegate=yes, or set {BASE_ENV} to a writable cgroup",
                    own_dir.display()
                ));
            }
        }
        let base = own_dir.join(BASE_NAME);
        match fs::DirBuilder::new().mode(0o755).create(&base) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && base.is_dir() => {}
            Err(e) => return Err(format!("cannot create cgroup {}: {e}", base.display())),
        }
        check_writable(&base)?;
        Ok(Delegation { base })
    }

    /// The base given by [`BASE_ENV`]: an existing, writable directory of a
    /// cgroup2 file system (`statfs(2)` type `CGROUP2_SUPER_MAGIC`) under a
    /// cgroup2 mount of ours.
    fn from_env(base: &Path, mounts: &[Cgroup2Mount]) -> Result<Delegation, String> {
        let shown = format!("{BASE_ENV}={}", base.display());
        let base = fs::canonicalize(base).map_err(|e| format!("{shown}: {e}"))?;
        let fs_type = nix::sys::statfs::statfs(&base)
            .map_err(|e| format!("{shown}: {e}"))?
            .filesystem_type();
        if fs_type != nix::sys::statfs::CGROUP2_SUPER_MAGIC || !base.is_dir() {
            return Err(format!("{shown}: not a cgroup2 directory"));
        }
        if mount_holding(mounts, &base).is_none() {
            return Err(format!(
                "{shown}: not under any cgroup2 mount in {MOUNTINFO}"
            ));
        }
        check_writable(&base).map_err(|e| format!("{shown}: {e}"))?;
        Ok(Delegation { base })
    }

    /// The directory holding incarnation cgroups (absolute, under the
    /// cgroup2 mount).
    pub fn base(&self) -> &Path {
        &self.base
    }

    /// Creates the cgroup `<base>/<name>` (mode 0755) for one incarnation.
    ///
    /// Errors: `name` is empty, `.` or `..`, or holds `/` or a newline
    /// (`InvalidInput`); the cgroup exists already (`AlreadyExists`, never
    /// reused); mkdir(2) failed. Each names the path.
    pub fn create(&self, name: &str) -> io::Result<Cgroup> {
        if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\n']) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{}: bad cgroup name {name:?}", self.base.display()),
            ));
        }
        let path = self.base.join(name);
        fs::DirBuilder::new()
            .mode(0o755)
            .create(&path)
            .map_err(|e| at_path(&path, e))?;
        Ok(Cgroup::at(path))
    }
}

/// One incarnation's cgroup, a directory under the cgroup2 mount.
#[derive(Debug, Clone)]
pub struct Cgroup {
    path: PathBuf,
    /// Its name as `/proc/<pid>/cgroup` gives it, found on first use.
    name: OnceLock<String>,
}

impl Cgroup {
    /// The cgroup at `path` (absolute, under the cgroup2 mount), recorded
    /// earlier (state DB). Nothing is checked until it is used.
    pub fn at(path: PathBuf) -> Cgroup {
        Cgroup {
            path,
            name: OnceLock::new(),
        }
    }

    /// Its directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether its directory exists.
    pub fn exists(&self) -> bool {
        self.path.is_dir()
    }

    /// The `cgroup.events` file: an inotify watch on it (`IN_MODIFY`) fires
    /// when `populated` (or `frozen`) changes.
    pub fn events_path(&self) -> PathBuf {
        self.path.join("cgroup.events")
    }

    /// Its name as `/proc/<pid>/cgroup` gives it (`/pidwatch/abc`): its path
    /// relative to the cgroup2 mount holding it, under the mount's root.
    ///
    /// Errors: `/proc/self/mountinfo` unreadable; no cgroup2 mount holds the
    /// path.
    pub fn name(&self) -> io::Result<&str> {
        if let Some(name) = self.name.get() {
            return Ok(name);
        }
        let mounts = own_mounts()?;
        let name = mount_holding(&mounts, &self.path)
            .and_then(|m| cgroup_name(m, &self.path))
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!(
                        "{}: not under any cgroup2 mount in {MOUNTINFO}",
                        self.path.display()
                    ),
                )
            })?;
        Ok(self.name.get_or_init(|| name))
    }

    /// Opens its `cgroup.procs` for writing (`O_WRONLY | O_CLOEXEC`, as std
    /// opens every file): a child writes `0` to it before exec to join the
    /// cgroup (see [`crate::act::child::prepare_child`]).
    ///
    /// Errors: the file cannot be opened (the cgroup is gone: `NotFound`);
    /// the error names it.
    pub fn procs_writer(&self) -> io::Result<fs::File> {
        let path = self.path.join("cgroup.procs");
        fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| at_path(&path, e))
    }

    /// The PIDs in the `cgroup.procs` of this cgroup and of every descendant
    /// cgroup, sorted. A process that moves or exits during the walk may be
    /// missed or listed while already gone: callers that act on a PID pin
    /// and check it first (see [`Cgroup::signal_members`]).
    ///
    /// Errors: this cgroup's `cgroup.procs` or directory unreadable (gone:
    /// `NotFound`); a descendant removed during the walk is skipped.
    pub fn procs(&self) -> io::Result<Vec<i32>> {
        let mut pids = parse_procs(&read_text(&self.path.join("cgroup.procs"))?);
        let mut todo = vec![self.path.clone()];
        let mut top = true;
        while let Some(dir) = todo.pop() {
            let entries = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if !top && e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(at_path(&dir, e)),
            };
            top = false;
            for entry in entries.flatten() {
                if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                let child = entry.path();
                match fs::read_to_string(child.join("cgroup.procs")) {
                    Ok(text) => pids.extend(parse_procs(&text)),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(at_path(&child.join("cgroup.procs"), e)),
                }
                todo.push(child);
            }
        }
        pids.sort_unstable();
        pids.dedup();
        Ok(pids)
    }

    /// The `populated` line of `cgroup.events` (kernel's cgroup-v2
    /// documentation): true while any process lives in this cgroup or a
    /// descendant. A process counts until it exits, not until it is reaped.
    ///
    /// Errors: `cgroup.events` unreadable (gone: `NotFound`) or without a
    /// `populated` line; the error names the file.
    pub fn populated(&self) -> io::Result<bool> {
        let path = self.events_path();
        parse_keyed(&read_text(&path)?, "populated")
            .map(|v| v != 0)
            .ok_or_else(|| malformed(&path, "no populated line"))
    }

    /// Sends `sig` to every member (see [`Cgroup::procs`]); returns the PIDs
    /// signalled. Each PID is pinned with a pidfd (`pidfd_open(2)`), its
    /// membership checked again after the pin (its `/proc/<pid>/cgroup`
    /// names this cgroup or a descendant, see [`Cgroup::name`]), and the
    /// signal goes through the pidfd (`pidfd_send_signal(2)`): a PID reused
    /// in between is never hit. pidwatch itself is never signalled; members
    /// gone meanwhile are left out of the result.
    ///
    /// Errors: the cgroup cannot be read (see [`Cgroup::procs`]); pidfds are
    /// not supported (Linux before 5.3: `Unsupported`, nothing is signalled
    /// unpinned); a pidfd cannot be opened or used for another reason than
    /// the process being gone.
    pub fn signal_members(&self, sig: Signal) -> io::Result<Vec<i32>> {
        let cgroup = self.name()?.to_string();
        let rsig = rustix::process::Signal::from_named_raw(sig as i32).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("signal {sig} unknown to rustix"),
            )
        })?;
        let me = std::process::id() as i32;
        let mut signalled = Vec::new();
        for pid in self.procs()? {
            if pid == me {
                continue;
            }
            let Some(pidfd) = pin_member(pid, &cgroup)? else {
                continue;
            };
            match rustix::process::pidfd_send_signal(&pidfd, rsig) {
                Ok(()) => signalled.push(pid),
                Err(rustix::io::Errno::SRCH) => {}
                Err(e) => {
                    return Err(io::Error::new(
                        io::Error::from(e).kind(),
                        format!("sending {sig} to PID {pid} of {}: {e}", self.path.display()),
                    ));
                }
            }
        }
        Ok(signalled)
    }

    /// Pins every member now: a pidfd for each PID of `cgroup.procs`
    /// (descendants included), opened first and the PID's membership read
    /// again after, so that each fd names a process of this cgroup for
    /// good. pidwatch itself is left out. For a caller that signals the
    /// members and then waits on their pidfds, which tell the moment each
    /// exits (cheaper than waiting for `populated 0`).
    ///
    /// Errors: as [`Cgroup::signal_members`].
    pub fn pin_members(&self) -> io::Result<Vec<(i32, OwnedFd)>> {
        let cgroup = self.name()?.to_string();
        let me = std::process::id() as i32;
        let mut pinned = Vec::new();
        for pid in self.procs()? {
            if pid == me {
                continue;
            }
            match pin_member(pid, &cgroup) {
                Ok(Some(fd)) => pinned.push((pid, fd)),
                Ok(None) => {}
                // No pidfds at all: nothing may be signalled unpinned.
                Err(e) if e.kind() == io::ErrorKind::Unsupported => return Err(e),
                // One process that cannot be pinned (out of descriptors)
                // does not keep the others from their SIGTERM; the cgroup's
                // kill reaches it.
                Err(_) => {}
            }
        }
        Ok(pinned)
    }

    /// Kills every member: writes `1` to `cgroup.kill` (Linux 5.14+), which
    /// SIGKILLs the whole subtree at once, forks in flight included. Where
    /// the file is missing, SIGKILLs each member as [`Cgroup::signal_members`]
    /// does, in rounds (up to 20, each waiting up to 100 ms for the cgroup to
    /// empty) while members remain. Does not wait for the members to be
    /// gone: [`Cgroup::wait_empty`] does.
    ///
    /// Errors: writing `cgroup.kill` failed, or see [`Cgroup::signal_members`];
    /// each names the file.
    pub fn kill(&self) -> io::Result<()> {
        let path = self.path.join("cgroup.kill");
        match fs::OpenOptions::new().write(true).open(&path) {
            Ok(mut file) => file.write_all(b"1").map_err(|e| at_path(&path, e)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => self.kill_by_signal(),
            Err(e) => Err(at_path(&path, e)),
        }
    }

    /// [`Cgroup::kill`] without `cgroup.kill`: SIGKILL rounds.
    fn kill_by_signal(&self) -> io::Result<()> {
        for _ in 0..KILL_ROUNDS {
            if self.signal_members(Signal::SIGKILL)?.is_empty()
                || self.wait_empty(Instant::now() + KILL_ROUND_WAIT)?
            {
                break;
            }
        }
        Ok(())
    }

    /// Waits until the cgroup is empty (`populated 0` in `cgroup.events`) or
    /// `deadline` passes; returns whether it emptied. Sleeps on an inotify
    /// watch of `cgroup.events` (`IN_MODIFY`, see the kernel's cgroup-v2
    /// documentation), looking again at least every 250 ms; without inotify
    /// it looks with a backoff from 1 to 50 ms. A cgroup that is gone counts
    /// as empty (a populated cgroup cannot be removed).
    ///
    /// Errors: `cgroup.events` unreadable for another reason or malformed.
    pub fn wait_empty(&self, deadline: Instant) -> io::Result<bool> {
        // Empty already, the common case: no inotify instance to make (its
        // close waits for an RCU grace period, milliseconds).
        match self.populated() {
            Ok(false) => return Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(true),
            _ => {}
        }
        let events = self.events_path();
        let watch = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK)
            .ok()
            .filter(|i| i.add_watch(&events, AddWatchFlags::IN_MODIFY).is_ok());
        let mut backoff = Duration::from_millis(1);
        loop {
            match self.populated() {
                Ok(false) => return Ok(true),
                Ok(true) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(true),
                Err(e) => return Err(e),
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            let left = deadline - now;
            match &watch {
                Some(inotify) => {
                    let wait = left.min(WAIT_SLICE);
                    let millis = u16::try_from(wait.as_millis().max(1)).unwrap_or(u16::MAX);
                    let mut fds = [PollFd::new(inotify.as_fd(), PollFlags::POLLIN)];
                    let _ = poll(&mut fds, PollTimeout::from(millis));
                    // Drain the queue; what changed is read from the file.
                    while matches!(inotify.read_events(), Ok(ev) if !ev.is_empty()) {}
                }
                None => {
                    std::thread::sleep(left.min(backoff));
                    backoff = (backoff * 2).min(Duration::from_millis(50));
                }
            }
        }
    }

    /// The `usage_usec` line of `cpu.stat` (kernel's cgroup-v2
    /// documentation; present without the cpu controller): CPU time used by
    /// every process that ran in this cgroup and its descendants,
    /// microseconds.
    ///
    /// Errors: `cpu.stat` unreadable or without `usage_usec`; the error
    /// names the file.
    pub fn cpu_usage_usec(&self) -> io::Result<u64> {
        let path = self.path.join("cpu.stat");
        parse_keyed(&read_text(&path)?, "usage_usec")
            .ok_or_else(|| malformed(&path, "no usage_usec line"))
    }

    /// `memory.current` (kernel's cgroup-v2 documentation): memory used by
    /// the subtree, bytes. `Ok(None)` when the memory controller is not
    /// enabled for this cgroup (the file is missing, as under a hybrid
    /// layout where memory stays with cgroup v1).
    ///
    /// Errors: the file unreadable for another reason or not a number; the
    /// error names it.
    pub fn memory_current(&self) -> io::Result<Option<u64>> {
        let path = self.path.join("memory.current");
        match fs::read_to_string(&path) {
            Ok(text) => text
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| malformed(&path, "not a number")),
            Err(e) if e.kind() == io::ErrorKind::NotFound && self.exists() => Ok(None),
            Err(e) => Err(at_path(&path, e)),
        }
    }

    /// Removes the cgroup (rmdir(2)), its empty descendant cgroups first.
    /// Fine if it is already gone.
    ///
    /// Errors: it or a descendant is still populated (`ResourceBusy`), or
    /// rmdir(2) failed otherwise; the error names the directory.
    pub fn remove(&self) -> io::Result<()> {
        // Post-order: children before parents.
        let mut order = Vec::new();
        let mut todo = vec![self.path.clone()];
        while let Some(dir) = todo.pop() {
            if let Ok(entries) = fs::read_dir(&dir) {
                todo.extend(
                    entries
                        .flatten()
                        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                        .map(|e| e.path()),
                );
            }
            order.push(dir);
        }
        for dir in order.iter().rev() {
            match fs::remove_dir(dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) if e.kind() == io::ErrorKind::ResourceBusy => {
                    return Err(io::Error::new(
                        io::ErrorKind::ResourceBusy,
                        format!("{}: still populated, not removed ({e})", dir.display()),
                    ));
                }
                Err(e) => return Err(at_path(dir, e)),
            }
        }
        Ok(())
    }
}

/// Pins `pid` with a pidfd and checks, after the pin, that its
/// `/proc/<pid>/cgroup` is within `cgroup`. `Ok(None)`: gone, or no longer
/// a member.
fn pin_member(pid: i32, cgroup: &str) -> io::Result<Option<OwnedFd>> {
    let Some(raw) = rustix::process::Pid::from_raw(pid) else {
        return Ok(None);
    };
    let pidfd = match rustix::process::pidfd_open(raw, rustix::process::PidfdFlags::empty()) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::SRCH) => return Ok(None),
        Err(rustix::io::Errno::NOSYS) => {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "pidfd_open(2) is not supported (Linux 5.3+ needed); members are never \
                 signalled unpinned",
            ));
        }
        Err(e) => {
            return Err(io::Error::new(
                io::Error::from(e).kind(),
                format!("pidfd_open(2) of PID {pid}: {e}"),
            ));
        }
    };
    let path = PathBuf::from(format!("/proc/{pid}/cgroup"));
    match fs::read(&path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            Ok(parse_proc_cgroup(&text)
                .filter(|c| is_within(c, cgroup))
                .map(|_| pidfd))
        }
        // Gone between the pin and the read (ESRCH from a dying process).
        Err(e)
            if e.kind() == io::ErrorKind::NotFound
                || e.raw_os_error() == Some(nix::errno::Errno::ESRCH as i32) =>
        {
            Ok(None)
        }
        Err(e) => Err(at_path(&path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    use std::process::{Child, Command, Stdio};
    use std::sync::atomic::{AtomicU32, Ordering};

    /// This machine's layout: cgroup v1 controllers, cgroup2 at
    /// `/sys/fs/cgroup/unified`.
    const HYBRID: &str = "\
22 28 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    /// A pure v2 layout, with optional fields.
    const UNIFIED: &str = "\
25 30 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
34 25 0:29 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 master:1 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

    #[test]
    fn finds_the_cgroup2_mount() {
        assert_eq!(
            parse_mountinfo(HYBRID),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        assert_eq!(
            parse_mountinfo(UNIFIED),
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
        let mounts = parse_cgroup2_mounts(UNIFIED);
        assert_eq!(mounts.len(), 1);
        assert_eq!(mounts[0].root, "/");
    }

    #[test]
    fn decodes_octal_escapes_in_the_mount_point() {
        let text = "50 23 0:40 /a\\040b /mnt/my\\040cgroups\\134x rw - cgroup2 none rw\n";
        let mounts = parse_cgroup2_mounts(text);
        assert_eq!(mounts[0].mount_point, PathBuf::from("/mnt/my cgroups\\x"));
        assert_eq!(mounts[0].root, "/a b");
        // A backslash not followed by three octal digits stays.
        assert_eq!(unescape("a\\9b\\04"), b"a\\9b\\04");
    }

    #[test]
    fn no_cgroup2_no_mount() {
        let v1_only: String = HYBRID
            .lines()
            .filter(|l| !l.contains("cgroup2"))
            .collect::<Vec<_>>()
            .join("\n");
        assert_eq!(parse_mountinfo(&v1_only), None);
        assert_eq!(parse_mountinfo(""), None);
        // "cgroup2" as a mount point or source is not the type.
        assert_eq!(
            parse_mountinfo("1 2 0:1 / /cgroup2 rw - tmpfs cgroup2 rw\n"),
            None
        );
        assert_eq!(parse_mountinfo("garbage\n1 2 3\n"), None);
    }

    #[test]
    fn reads_the_v2_line_of_proc_cgroup() {
        let hybrid = "9:name=systemd:/\n4:memory:/x/y\n1:cpu:/\n0::/\n";
        assert_eq!(parse_proc_cgroup(hybrid).as_deref(), Some("/"));
        assert_eq!(
            parse_proc_cgroup("0::/user.slice/user-1000.slice/session-2.scope\n").as_deref(),
            Some("/user.slice/user-1000.slice/session-2.scope")
        );
        assert_eq!(parse_proc_cgroup("4:memory:/x\n1:cpu:/\n"), None);
        assert_eq!(parse_proc_cgroup(""), None);
    }

    #[test]
    fn maps_cgroups_to_dirs_and_back() {
        let root = Cgroup2Mount {
            root: "/".into(),
            mount_point: "/sys/fs/cgroup/unified".into(),
        };
        assert_eq!(
            dir_of(&root, "/"),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        assert_eq!(
            dir_of(&root, "/a/b"),
            Some(PathBuf::from("/sys/fs/cgroup/unified/a/b"))
        );
        assert_eq!(dir_of(&root, "/../x"), None);
        assert_eq!(
            cgroup_name(&root, Path::new("/sys/fs/cgroup/unified/pidwatch/i1")).as_deref(),
            Some("/pidwatch/i1")
        );
        assert_eq!(
            cgroup_name(&root, Path::new("/sys/fs/cgroup/unified")).as_deref(),
            Some("/")
        );
        assert_eq!(cgroup_name(&root, Path::new("/tmp/x")), None);
        // A subtree mounted on its own.
        let sub = Cgroup2Mount {
            root: "/system.slice/x.service".into(),
            mount_point: "/mnt/cg".into(),
        };
        assert_eq!(
            dir_of(&sub, "/system.slice/x.service"),
            Some(PathBuf::from("/mnt/cg"))
        );
        assert_eq!(
            dir_of(&sub, "/system.slice/x.service/a"),
            Some(PathBuf::from("/mnt/cg/a"))
        );
        assert_eq!(dir_of(&sub, "/system.slice/x.servicea"), None);
        assert_eq!(dir_of(&sub, "/other"), None);
        assert_eq!(
            cgroup_name(&sub, Path::new("/mnt/cg/a")).as_deref(),
            Some("/system.slice/x.service/a")
        );
    }

    #[test]
    fn membership_covers_descendants_only() {
        assert!(is_within("/pidwatch/a", "/pidwatch/a"));
        assert!(is_within("/pidwatch/a/sub", "/pidwatch/a"));
        assert!(!is_within("/pidwatch/ab", "/pidwatch/a"));
        assert!(!is_within("/pidwatch", "/pidwatch/a"));
        assert!(!is_within("/pidwatch/a (deleted)", "/pidwatch/a"));
        assert!(is_within("/anything", "/"));
    }

    #[test]
    fn parses_interface_files() {
        assert_eq!(parse_procs("12\n345\n\n"), vec![12, 345]);
        assert_eq!(parse_procs(""), Vec::<i32>::new());
        let events = "populated 1\nfrozen 0\n";
        assert_eq!(parse_keyed(events, "populated"), Some(1));
        assert_eq!(parse_keyed(events, "frozen"), Some(0));
        assert_eq!(parse_keyed(events, "popu"), None);
        let cpu = "usage_usec 1234\nuser_usec 1000\nsystem_usec 234\nnr_periods 0\n";
        assert_eq!(parse_keyed(cpu, "usage_usec"), Some(1234));
        assert_eq!(parse_keyed("usage_usec x\n", "usage_usec"), None);
    }

    #[test]
    fn the_delegation_rule() {
        assert!(is_delegated("/", true, false), "root of the hierarchy");
        assert!(
            is_delegated("/system.slice/a.service", false, false),
            "no systemd"
        );
        assert!(
            is_delegated("/system.slice/a.service", true, true),
            "marked"
        );
        assert!(!is_delegated("/system.slice/a.service", true, false));
    }

    // Real cgroups. Each test skips, saying why, where no writable cgroup v2
    // is at hand; each cleans up through `Guard`, pass or fail.

    /// A cgroup made for one test, and the processes started in it: on
    /// drop, they are killed and reaped and the cgroup removed.
    struct Guard {
        cgroup: Cgroup,
        children: Vec<Child>,
    }

    impl Drop for Guard {
        fn drop(&mut self) {
            let _ = self.cgroup.kill();
            for child in &mut self.children {
                let _ = child.kill();
                let _ = child.wait();
            }
            let _ = self
                .cgroup
                .wait_empty(Instant::now() + Duration::from_secs(5));
            if let Err(e) = self.cgroup.remove() {
                eprintln!("cleanup: {e}");
            }
        }
    }

    /// A fresh cgroup, or `None` (skip) when cgroups cannot be made here.
    fn fresh(label: &str) -> Option<Guard> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let delegation = match Delegation::probe_with(true, None) {
            Ok(d) => d,
            Err(why) => {
                eprintln!("skipped: no writable cgroup v2 here: {why}");
                return None;
            }
        };
        let name = format!(
            "test-{}-{}-{label}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let cgroup = delegation.create(&name).expect("create a test cgroup");
        Some(Guard {
            cgroup,
            children: Vec::new(),
        })
    }

    impl Guard {
        /// Starts `sh -c script` inside `cgroup` (the guard's, or another).
        fn start_in(&mut self, cgroup: &Cgroup, script: &str) -> i32 {
            let procs = cgroup.procs_writer().unwrap();
            let fd = procs.as_raw_fd();
            let mut cmd = Command::new("sh");
            cmd.args(["-c", script])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            // SAFETY: prepare_child is made for running between fork and exec.
            unsafe {
                cmd.pre_exec(move || crate::act::child::prepare_child(Some(fd)));
            }
            let child = cmd.spawn().expect("spawn in cgroup");
            let pid = child.id() as i32;
            self.children.push(child);
            pid
        }

        fn wait_members(&self, count: usize) -> Vec<i32> {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let procs = self.cgroup.procs().unwrap();
                if procs.len() >= count {
                    return procs;
                }
                assert!(Instant::now() < deadline, "{count} members, have {procs:?}");
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(10)
    }

    #[test]
    fn a_member_is_seen_measured_signalled_and_gone() {
        let Some(mut guard) = fresh("one") else {
            return;
        };
        let cg = guard.cgroup.clone();
        assert!(cg.exists());
        assert!(!cg.populated().unwrap());
        let pid = guard.start_in(&cg, "exec sleep 600");
        assert_eq!(guard.wait_members(1), vec![pid]);
        assert!(cg.populated().unwrap());
        cg.cpu_usage_usec().unwrap();
        let _ = cg.memory_current().unwrap();
        assert!(
            !cg.wait_empty(Instant::now() + Duration::from_millis(50))
                .unwrap()
        );
        assert!(cg.remove().is_err(), "populated cgroups stay");
        assert_eq!(cg.signal_members(Signal::SIGTERM).unwrap(), vec![pid]);
        // Empty once the member exited, before anyone reaps it.
        assert!(cg.wait_empty(soon()).unwrap());
        assert!(cg.procs().unwrap().is_empty());
        let status = guard.children[0].wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGTERM));
        assert!(cg.signal_members(Signal::SIGTERM).unwrap().is_empty());
        cg.remove().unwrap();
        assert!(!cg.exists());
        cg.remove().unwrap();
        assert_eq!(
            cg.populated().unwrap_err().kind(),
            io::ErrorKind::NotFound,
            "a removed cgroup"
        );
        assert!(cg.wait_empty(soon()).unwrap(), "gone is empty");
    }

    #[test]
    fn kill_ends_a_member_and_what_it_forked() {
        let Some(mut guard) = fresh("fork") else {
            return;
        };
        let cg = guard.cgroup.clone();
        guard.start_in(&cg, "sleep 600 & exec sleep 600");
        let members = guard.wait_members(2);
        cg.kill().unwrap();
        assert!(cg.wait_empty(soon()).unwrap());
        for pid in members {
            let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            assert!(
                stat.is_empty() || stat.contains(") Z "),
                "{pid} lives: {stat}"
            );
        }
    }

    #[test]
    fn the_signal_fallback_kills_descendant_cgroups_too() {
        let Some(mut guard) = fresh("nested") else {
            return;
        };
        let cg = guard.cgroup.clone();
        // A descendant cgroup, known only by its path.
        fs::create_dir(cg.path().join("sub")).unwrap();
        let sub = Cgroup::at(cg.path().join("sub"));
        assert!(sub.name().unwrap().ends_with("/sub"));
        let top = guard.start_in(&cg, "exec sleep 600");
        let nested = guard.start_in(&sub, "sleep 600 & exec sleep 600");
        let members = guard.wait_members(3);
        assert!(
            members.contains(&top) && members.contains(&nested),
            "{members:?}"
        );
        assert_eq!(sub.procs().unwrap().len(), 2);
        cg.kill_by_signal().unwrap();
        assert!(cg.wait_empty(soon()).unwrap());
        assert!(!sub.populated().unwrap());
        cg.remove().unwrap();
        assert!(!sub.exists());
    }

    #[test]
    fn names_are_checked_and_never_reused() {
        let Some(guard) = fresh("dup") else { return };
        let base = Delegation {
            base: guard.cgroup.path().to_path_buf(),
        };
        for bad in ["", ".", "..", "a/b", "a\nb"] {
            assert_eq!(
                base.create(bad).unwrap_err().kind(),
                io::ErrorKind::InvalidInput,
                "{bad:?}"
            );
        }
        let child = base.create("x").unwrap();
        let err = base.create("x").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert!(
            err.to_string()
                .contains(&child.path().display().to_string()),
            "{err}"
        );
        child.remove().unwrap();
    }

    #[test]
    fn the_base_lies_in_our_own_cgroup() {
        let delegation = match Delegation::probe_with(false, None) {
            Ok(d) => d,
            Err(why) => {
                eprintln!("skipped: no delegated cgroup v2 here: {why}");
                return;
            }
        };
        assert!(delegation.base().ends_with(BASE_NAME));
        let own = parse_proc_cgroup(&fs::read_to_string(OWN_CGROUP).unwrap()).unwrap();
        let base = Cgroup::at(delegation.base().to_path_buf());
        assert_eq!(
            base.name().unwrap(),
            format!("{}/{BASE_NAME}", own.trim_end_matches('/'))
        );
        // Probing again finds the base made by the first probe.
        assert_eq!(Delegation::probe(true).unwrap().base(), delegation.base());
    }

    #[test]
    fn the_environment_can_name_the_base() {
        let Some(guard) = fresh("env") else { return };
        let dir = guard.cgroup.path().as_os_str().to_owned();
        let delegation = Delegation::probe_with(false, Some(dir)).unwrap();
        assert_eq!(delegation.base(), guard.cgroup.path());
        let tmp = tempfile::tempdir().unwrap();
        let err =
            Delegation::probe_with(false, Some(tmp.path().as_os_str().to_owned())).unwrap_err();
        assert!(err.contains("not a cgroup2 directory"), "{err}");
        let err = Delegation::probe_with(false, Some("/nonexistent/x".into())).unwrap_err();
        assert!(
            err.contains(BASE_ENV) && err.contains("/nonexistent/x"),
            "{err}"
        );
    }
}

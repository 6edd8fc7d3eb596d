//! What a process pidwatch spawns inherits: exactly stdin, stdout and
//! stderr, an empty signal mask and the default disposition of every signal.
//!
//! Without this, a wrapper inherits whatever descriptors pidwatch itself
//! inherited without close-on-exec: `( pidwatch check --auto-restart … 7>&1 )
//! | cat` would wait for the worker's whole life, the wrapper holding the
//! pipe. And a signal ignored or blocked by pidwatch's caller (`nohup`, a
//! CI runner) would stay ignored or blocked in the worker, since exec(2)
//! keeps both (signal(7), "Signal mask and pending signals" and
//! "Signal dispositions").

use std::io;
use std::os::fd::RawFd;

use nix::sys::resource::{Resource, getrlimit};
use nix::sys::signal::{SigSet, SigmaskHow, sigprocmask};

/// The fallback of [`prepare_child`] marks descriptors below this bound,
/// or below the soft `RLIMIT_NOFILE` when that is lower.
pub const FALLBACK_FD_BOUND: u64 = 65536;

/// The highest signal number on Linux (`_NSIG - 1`, `SIGRTMAX`).
const LAST_SIGNAL: i32 = 64;

/// Prepares a forked child for exec, from [`std::os::unix::process::CommandExt::pre_exec`]:
///
/// 1. if `join_cgroup` is given (a descriptor of a `cgroup.procs` opened for
///    writing, see [`crate::observe::cgroup::Cgroup::procs_writer`]), writes
///    `0` to it, which moves the child into that cgroup before exec;
/// 2. marks every descriptor from 3 up close-on-exec, with
///    `close_range(3, ~0U, CLOSE_RANGE_CLOEXEC)` (Linux 5.11; close_range(2)),
///    or where that is missing (`ENOSYS`, `EINVAL`), `fcntl(fd, F_SETFD,
///    FD_CLOEXEC)` on each descriptor below the soft `RLIMIT_NOFILE` or
///    [`FALLBACK_FD_BOUND`], whichever is lower. Close-on-exec rather than
///    closed: std's `Command` keeps a close-on-exec pipe to report an exec
///    failure, and `join_cgroup` must stay open until it is written;
/// 3. resets every catchable signal (1 to 64 but `SIGKILL` and `SIGSTOP`) to
///    its default disposition (`SIG_DFL`) with sigaction(2); for the numbers
///    glibc keeps for itself and refuses (`EINVAL`: 32 and 33), with the raw
///    rt_sigaction(2) system call, whose failure is ignored;
/// 4. sets an empty signal mask (`sigprocmask(SIG_SETMASK, ∅)`).
///
/// Only async-signal-safe system calls, no allocation, no lock: fit to run
/// between fork and exec. It changes the calling process, so it must never
/// run anywhere else.
///
/// Errors: the raw OS error of the write to `join_cgroup` (the cgroup is
/// gone, or may not take the process), of close_range(2) for a reason other
/// than being unsupported, of sigaction(2) other than `EINVAL`, or of
/// sigprocmask(2). `Command::spawn` then fails with it.
pub fn prepare_child(join_cgroup: Option<RawFd>) -> io::Result<()> {
    if let Some(fd) = join_cgroup {
        join(fd)?;
    }
    cloexec_from_3()?;
    default_dispositions()?;
    sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)?;
    Ok(())
}

/// Writes `0` to the `cgroup.procs` descriptor `fd`.
fn join(fd: RawFd) -> io::Result<()> {
    // SAFETY: write(2) reads one byte from a static buffer; an `fd` that is
    // not open gives EBADF, nothing worse.
    let written = unsafe { libc::write(fd, b"0".as_ptr().cast(), 1) };
    match written {
        1 => Ok(()),
        0 => Err(io::Error::from_raw_os_error(libc::EIO)),
        _ => Err(io::Error::last_os_error()),
    }
}

/// Marks every descriptor from 3 up close-on-exec.
fn cloexec_from_3() -> io::Result<()> {
    // SAFETY: close_range(2) takes three integers and touches no memory; with
    // CLOSE_RANGE_CLOEXEC it only sets flags, closing nothing.
    let done = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3 as libc::c_uint,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if done == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        // Before Linux 5.11 (EINVAL: the flag is unknown) or 5.9 (ENOSYS).
        Some(libc::ENOSYS | libc::EINVAL) => {
            cloexec_each();
            Ok(())
        }
        _ => Err(err),
    }
}

/// The fallback of [`cloexec_from_3`]: `fcntl(2)` on each descriptor.
fn cloexec_each() {
    let soft = getrlimit(Resource::RLIMIT_NOFILE).map_or(FALLBACK_FD_BOUND, |(soft, _)| soft);
    let bound = soft.min(FALLBACK_FD_BOUND) as RawFd;
    for fd in 3..bound {
        // SAFETY: fcntl(2) with F_GETFD and F_SETFD only reads and sets the
        // descriptor flags; on a descriptor that is not open it fails with
        // EBADF, which is ignored.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags >= 0 && flags & libc::FD_CLOEXEC == 0 {
                libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
            }
        }
    }
}

/// Sets the disposition of every catchable signal to `SIG_DFL`.
fn default_dispositions() -> io::Result<()> {
    for sig in 1..=LAST_SIGNAL {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: an all-zero `sigaction` is a valid value (SIG_DFL, empty
        // mask, no flags), built on the stack; sigaction(2) reads it and, with
        // a null old-action pointer, writes nothing.
        let failed = unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = libc::SIG_DFL;
            libc::sigaction(sig, &action, std::ptr::null_mut()) != 0
        };
        if failed {
            let err = io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EINVAL) {
                return Err(err);
            }
            // glibc refuses the signals it keeps for itself (32 and 33), yet
            // an ignored one survives exec: ask the kernel directly.
            // SAFETY: rt_sigaction(2) reads a zeroed buffer larger than the
            // kernel's `struct sigaction` (all zero: SIG_DFL, no flags, empty
            // mask, whatever the architecture's field order) and writes
            // nothing (null old action); 8 is the kernel's sigset size.
            unsafe {
                let action = [0u64; 8];
                libc::syscall(
                    libc::SYS_rt_sigaction,
                    sig as libc::c_long,
                    action.as_ptr(),
                    std::ptr::null_mut::<u64>(),
                    8 as libc::size_t,
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};

    /// A `sleep` whose pre-exec hook first spoils what it would inherit
    /// (descriptors 7 and 9 without close-on-exec, SIGUSR1 blocked, SIGUSR2,
    /// SIGRTMIN+3 and signal 32 ignored), then runs `fix`.
    fn spoiled_sleep(fix: fn() -> io::Result<()>) -> std::process::Child {
        let mut cmd = Command::new("sleep");
        cmd.arg("30")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: the hook runs in the forked child and makes only
        // async-signal-safe system calls (dup2, sigprocmask, sigaction).
        unsafe {
            cmd.pre_exec(move || {
                libc::dup2(1, 7);
                libc::dup2(0, 9);
                let mut set = SigSet::empty();
                set.add(nix::sys::signal::Signal::SIGUSR1);
                sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None)?;
                for sig in [libc::SIGUSR2, libc::SIGRTMIN() + 3] {
                    let mut action: libc::sigaction = std::mem::zeroed();
                    action.sa_sigaction = libc::SIG_IGN;
                    libc::sigaction(sig, &action, std::ptr::null_mut());
                }
                // Signal 32, which glibc refuses to touch: the kernel's
                // `struct sigaction` starts with the handler on these.
                #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
                {
                    let mut action = [0u64; 8];
                    action[0] = libc::SIG_IGN as u64;
                    libc::syscall(
                        libc::SYS_rt_sigaction,
                        32 as libc::c_long,
                        action.as_ptr(),
                        std::ptr::null_mut::<u64>(),
                        8 as libc::size_t,
                    );
                }
                fix()
            });
        }
        cmd.spawn().expect("spawn sleep")
    }

    /// The descriptors of `pid` and its `SigBlk`/`SigIgn` lines.
    fn inherited(pid: u32) -> (Vec<i32>, String, String) {
        let mut fds: Vec<i32> = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect();
        fds.sort_unstable();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let field = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .unwrap_or_default()
                .trim()
                .to_string()
        };
        (fds, field("SigBlk:"), field("SigIgn:"))
    }

    fn check(fix: fn() -> io::Result<()>, clean: bool) {
        let mut child = spoiled_sleep(fix);
        // The exec is done once /proc shows sleep's own command name.
        let pid = child.id();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default() != "sleep\n"
        {
            assert!(std::time::Instant::now() < deadline, "sleep never ran");
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        // sleep opens its locale files for a moment at start (setlocale):
        // what was inherited is what stays.
        let mut seen = inherited(pid);
        while clean && seen.0 != [0, 1, 2] && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(2));
            seen = inherited(pid);
        }
        let (fds, blocked, ignored) = seen;
        let _ = child.kill();
        let _ = child.wait();
        if clean {
            assert_eq!(fds, [0, 1, 2]);
            assert_eq!(blocked, "0000000000000000");
            assert_eq!(ignored, "0000000000000000");
        } else {
            assert!(
                fds.contains(&7) && fds.contains(&9),
                "the spoiling works: {fds:?}"
            );
            assert_ne!(blocked, "0000000000000000");
            assert_ne!(ignored, "0000000000000000");
        }
    }

    #[test]
    fn a_spoiled_child_is_cleaned() {
        check(|| Ok(()), false);
        check(|| prepare_child(None), true);
    }

    #[test]
    fn the_fcntl_fallback_marks_descriptors_too() {
        check(
            || {
                cloexec_each();
                default_dispositions()?;
                sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)?;
                Ok(())
            },
            true,
        );
    }

    #[test]
    fn joining_a_closed_descriptor_fails_the_spawn() {
        let mut cmd = Command::new("true");
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: prepare_child is made for running between fork and exec.
        unsafe {
            cmd.pre_exec(|| prepare_child(Some(1000)));
        }
        let err = cmd.spawn().expect_err("EBADF");
        assert_eq!(err.raw_os_error(), Some(libc::EBADF));
    }
}

/// `struct clone_args` of clone3(2), up to `cgroup` (`CLONE_ARGS_SIZE_VER2`,
/// 88 bytes), as linux/sched.h lays it out.
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// `CLONE_INTO_CGROUP` of linux/sched.h (Linux 5.7).
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// What the child of [`spawn_into_cgroup`] runs, all prepared before the
/// fork so that the child allocates nothing.
pub struct Exec {
    /// The program, an absolute path.
    pub path: std::ffi::CString,
    /// argv, the program's name first.
    pub argv: Vec<std::ffi::CString>,
    /// The whole environment, `KEY=VALUE`.
    pub envp: Vec<std::ffi::CString>,
    /// The soft and hard `RLIMIT_NOFILE` to give it back, when pidwatch
    /// raised its own.
    pub fd_limit: Option<(u64, u64)>,
    /// The working directory (default `/`).
    pub cwd: Option<std::ffi::CString>,
    /// An open file for stdout and stderr (default `/dev/null`); it must
    /// stay open until the call returns.
    pub output: Option<RawFd>,
}

/// Starts `exec` directly inside the cgroup whose directory `cgroup_dir` is
/// open (clone3(2) with `CLONE_INTO_CGROUP`): the child never runs outside
/// it, and no migration is needed. A migration (writing to `cgroup.procs`)
/// takes the cgroup core's write lock, which waits for an RCU grace period:
/// milliseconds on every restart, where a clone into the cgroup costs what a
/// fork does. The child leads a new session, has stdin, stdout and stderr on
/// `/dev/null` and nothing else (see [`prepare_child`]), works in `/`, and
/// is pidwatch's child (it gets `SIGCHLD`); `exec` may give it a working
/// dir and a file for stdout and stderr instead. Returns its PID.
///
/// Errors: `Unsupported` when the kernel has no clone3 or no
/// `CLONE_INTO_CGROUP` (before Linux 5.7: the caller migrates instead); the
/// OS error of clone3, of opening `/dev/null`, or of the child's exec
/// (reported through a close-on-exec pipe).
pub fn spawn_into_cgroup(exec: &Exec, cgroup_dir: RawFd) -> io::Result<i32> {
    use std::os::fd::AsRawFd;
    let devnull = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    let (report_read, report_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let mut argv: Vec<*const libc::c_char> = exec.argv.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = exec.envp.iter().map(|e| e.as_ptr()).collect();
    envp.push(std::ptr::null());
    let args = CloneArgs {
        flags: CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: cgroup_dir as u64,
        ..CloneArgs::default()
    };
    let null = devnull.as_raw_fd();
    let report = report_write.as_raw_fd();
    // SAFETY: clone3(2) without CLONE_VM and without a stack is fork(2): the
    // child gets a copy of this address space. In the child (0 returned) only
    // async-signal-safe system calls run, on memory prepared above (argv,
    // envp and the path are NUL-terminated C strings and NULL-terminated
    // pointer arrays that live until after the exec or the `_exit`), and it
    // never returns from this block.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if pid == 0 {
        // SAFETY: see above; every call is a plain system call wrapper.
        unsafe {
            let fail = |report: RawFd| -> ! {
                let errno = *libc::__errno_location();
                let bytes = errno.to_ne_bytes();
                libc::write(report, bytes.as_ptr().cast(), bytes.len());
                libc::_exit(127)
            };
            let output = exec.output.unwrap_or(null);
            for (fd, from) in [(0, null), (1, output), (2, output)] {
                if libc::dup2(from, fd) < 0 {
                    fail(report);
                }
            }
            let cwd = exec.cwd.as_ref().map_or(c"/".as_ptr(), |c| c.as_ptr());
            if libc::chdir(cwd) < 0 || libc::setsid() < 0 {
                fail(report);
            }
            if let Some((soft, hard)) = exec.fd_limit {
                let limit = libc::rlimit {
                    rlim_cur: soft,
                    rlim_max: hard,
                };
                libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
            }
            if let Err(e) = prepare_child(None) {
                *libc::__errno_location() = e.raw_os_error().unwrap_or(libc::EINVAL);
                fail(report);
            }
            libc::execve(exec.path.as_ptr(), argv.as_ptr(), envp.as_ptr());
            fail(report)
        }
    }
    if pid < 0 {
        let err = io::Error::last_os_error();
        return Err(match err.raw_os_error() {
            Some(libc::ENOSYS | libc::E2BIG | libc::EINVAL) => io::Error::new(
                io::ErrorKind::Unsupported,
                format!("clone3 with CLONE_INTO_CGROUP: {err}"),
            ),
            _ => err,
        });
    }
    drop(report_write);
    drop(devnull);
    let mut errno = [0u8; 4];
    let mut file = std::fs::File::from(report_read);
    use std::io::Read;
    match file.read(&mut errno) {
        Ok(4) => {
            // The exec failed: reap the child, which exits at once.
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid as i32), None);
            Err(io::Error::from_raw_os_error(i32::from_ne_bytes(errno)))
        }
        _ => Ok(pid as i32),
    }
}

#[cfg(test)]
mod clone_tests {
    use super::*;
    use std::ffi::CString;

    fn exec(path: &str, args: &[&str]) -> Exec {
        Exec {
            path: CString::new(path).unwrap(),
            argv: args.iter().map(|a| CString::new(*a).unwrap()).collect(),
            envp: vec![CString::new("PATH=/usr/bin:/bin").unwrap()],
            fd_limit: None,
            cwd: None,
            output: None,
        }
    }

    #[test]
    fn a_child_is_born_in_its_cgroup_and_an_exec_failure_is_reported() {
        let delegation = match crate::observe::cgroup::Delegation::probe(true) {
            Ok(d) => d,
            Err(why) => {
                eprintln!("skipped: no cgroup can be made here: {why}");
                return;
            }
        };
        let name = format!("clone-test-{}", std::process::id());
        let cg = delegation.create(&name).unwrap();
        let dir = std::fs::File::open(cg.path()).unwrap();
        use std::os::fd::AsRawFd;
        let pid =
            spawn_into_cgroup(&exec("/bin/sleep", &["sleep", "30"]), dir.as_raw_fd()).unwrap();
        let inside = cg.procs().unwrap().contains(&pid);
        let session = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
        let missing = spawn_into_cgroup(&exec("/nonexistent/program", &["x"]), dir.as_raw_fd());
        let _ = cg.remove();
        assert!(inside, "born inside {}", cg.path().display());
        let fields: Vec<&str> = session
            .rsplit(')')
            .next()
            .unwrap()
            .split_whitespace()
            .collect();
        assert_eq!(fields[3], pid.to_string(), "it leads its own session");
        assert_eq!(missing.unwrap_err().kind(), io::ErrorKind::NotFound);
    }
}

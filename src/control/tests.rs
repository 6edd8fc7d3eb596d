//! The control socket end to end: a real server on a socket in a temp dir,
//! a thread playing the monitor, the real client.

use std::fs;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixListener as StdUnixListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, poll};
use serde_json::json;

use super::ControlError;
use super::api::{ControlReply, ControlRequest, Method};
use super::client::{ClientError, call, monitor_alive, ping, send};
use super::server::{Pending, Server, ServerOptions};

const TIMEOUT: Duration = Duration::from_secs(10);

fn socket_in(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("control.sock")
}

/// Plays the monitor until `stop`: waits on the wake fd, takes what waits,
/// and hands each request to `answer`.
fn play_monitor(server: &Server, stop: &AtomicBool, mut answer: impl FnMut(Pending)) {
    while !stop.load(Ordering::Relaxed) {
        let mut fds = [PollFd::new(server.wake_fd(), PollFlags::POLLIN)];
        let ready = poll(&mut fds, 50u16).expect("poll");
        if ready > 0 {
            for pending in server.take() {
                answer(pending);
            }
        }
    }
}

/// Sets its flag when dropped, panics included: a failed assertion must not
/// leave [`play_monitor`] running and the scope waiting for it.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Echoes each request, with the caller's uid, as the reply's body.
fn echo(pending: Pending) {
    let body = json!({
        "request": serde_json::to_value(pending.request()).expect("serializable"),
        "uid": pending.peer_uid(),
    });
    pending.respond(ControlReply {
        status: 200,
        body,
        text: None,
    });
}

#[test]
fn each_request_goes_to_the_monitor_and_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = socket_in(&dir);
    let server = Server::bind(&path).expect("bind");
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| play_monitor(&server, &stop, echo));
        let _stop = StopOnDrop(&stop);
        let me = nix::unistd::geteuid().as_raw();
        let requests = [
            ControlRequest::Status,
            ControlRequest::Start {
                workers: vec!["a".into(), "b".into()],
                all: false,
            },
            ControlRequest::Stop {
                workers: vec![],
                all: true,
            },
            ControlRequest::Restart {
                workers: vec!["c".into()],
                all: false,
                counted: false,
            },
            ControlRequest::Reload,
        ];
        for request in requests {
            let reply = call(&path, &request, TIMEOUT).expect("call");
            assert_eq!(reply.status, 200);
            let back: ControlRequest =
                serde_json::from_value(reply.body["request"].clone()).expect("a request");
            assert_eq!(back, request);
            assert_eq!(reply.body["uid"], me);
        }
    });
}

#[test]
fn the_monitors_status_code_and_errors_reach_the_caller() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = socket_in(&dir);
    let server = Server::bind(&path).expect("bind");
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            play_monitor(&server, &stop, |p| {
                p.respond(ControlReply::error(409, "worker x is given up"))
            })
        });
        let _stop = StopOnDrop(&stop);
        let reply = call(&path, &ControlRequest::Reload, TIMEOUT).expect("call");
        assert_eq!(reply.status, 409);
        assert_eq!(reply.error_message(), Some("worker x is given up"));
    });
}

#[test]
fn ping_answers_without_the_monitor() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = socket_in(&dir);
    let _server = Server::bind(&path).expect("bind");
    assert_eq!(ping(&path, TIMEOUT).expect("ping"), std::process::id());
    assert!(monitor_alive(&path));
    assert!(!monitor_alive(&dir.path().join("nothing.sock")));
}

#[test]
fn unknown_routes_bad_methods_and_bad_bodies_get_json_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = socket_in(&dir);
    let _server = Server::bind(&path).expect("bind");

    let reply = send(&path, Method::Get, "/v1/nope", Vec::new(), TIMEOUT).expect("send");
    assert_eq!(reply.status, 404);
    assert_eq!(reply.error_message(), Some("no route GET /v1/nope"));

    let reply = send(&path, Method::Get, "/v1/start", Vec::new(), TIMEOUT).expect("send");
    assert_eq!(reply.status, 405);
    assert!(reply.error_message().is_some(), "{reply:?}");

    let cases: [(&[u8], &str); 4] = [
        (b"{not json", "key must be a string"),
        (br#"{"workers": "a"}"#, "invalid type"),
        (br#"{"workers": [], "bogus": 1}"#, "unknown field `bogus`"),
        (b"", "empty body"),
    ];
    for (body, says) in cases {
        let reply = send(&path, Method::Post, "/v1/start", body.to_vec(), TIMEOUT).expect("send");
        assert_eq!(reply.status, 400, "{reply:?}");
        let message = reply.error_message().expect("an error message");
        assert!(message.contains(says), "{message:?} should say {says:?}");
    }

    // A long bad field name is quoted bounded.
    let long = format!(r#"{{"{}": 1}}"#, "x".repeat(10_000));
    let reply = send(&path, Method::Post, "/v1/stop", long.into_bytes(), TIMEOUT).expect("send");
    assert_eq!(reply.status, 400);
    assert!(reply.error_message().expect("message").len() < 400);

    let huge = format!(r#"{{"workers": ["{}"]}}"#, "x".repeat(100_000));
    let reply = send(&path, Method::Post, "/v1/stop", huge.into_bytes(), TIMEOUT).expect("send");
    assert_eq!(reply.status, 413, "{reply:?}");
    assert!(reply.error_message().is_some());
}

#[test]
fn the_socket_is_0600_at_once_and_removed_on_drop() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = socket_in(&dir);
    let server = Server::bind(&path).expect("bind");
    let meta = fs::symlink_metadata(&path).expect("socket exists");
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o7777, 0o600);
    // Only the socket is left in the directory: the private one it was
    // bound in is gone.
    let names: Vec<_> = fs::read_dir(dir.path())
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("control.sock")]);
    drop(server);
    assert!(!path.exists(), "the socket file is removed on drop");
}

#[test]
fn drop_leaves_a_socket_that_is_not_its_own() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = socket_in(&dir);
    let server = Server::bind(&path).expect("bind");
    fs::remove_file(&path).expect("remove");
    let _other = StdUnixListener::bind(&path).expect("another socket");
    drop(server);
    assert!(path.exists(), "another's socket is left alone");
}

#[test]
fn a_stale_socket_is_replaced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = socket_in(&dir);
    drop(StdUnixListener::bind(&path).expect("bind a listener"));
    assert!(path.exists(), "the stale socket file stays");
    assert!(!monitor_alive(&path));
    let _server = Server::bind(&path).expect("bind over a stale socket");
    assert!(monitor_alive(&path));
}

#[test]
fn a_live_socket_or_another_file_makes_bind_fail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = socket_in(&dir);
    let _server = Server::bind(&path).expect("bind");
    let err = Server::bind(&path).err().expect("a second bind fails");
    assert!(matches!(err, ControlError::InUse(_)), "{err}");
    assert_eq!(
        err.to_string(),
        format!("another monitor serves {}", path.display())
    );
    assert!(monitor_alive(&path), "the first server still serves");

    let file = dir.path().join("file");
    fs::write(&file, b"keep me").expect("write");
    let err = Server::bind(&file).err().expect("bind over a file fails");
    assert!(matches!(err, ControlError::NotASocket(_)), "{err}");
    assert_eq!(fs::read(&file).expect("read"), b"keep me");

    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&path, &link).expect("symlink");
    let err = Server::bind(&link)
        .err()
        .expect("bind over a symlink fails");
    assert!(matches!(err, ControlError::NotASocket(_)), "{err}");
}

#[test]
fn no_socket_means_no_monitor() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = socket_in(&dir);
    let err = call(&path, &ControlRequest::Status, TIMEOUT).expect_err("no socket");
    assert!(matches!(err, ClientError::NoMonitor), "{err}");
    drop(StdUnixListener::bind(&path).expect("bind a listener"));
    let err = call(&path, &ControlRequest::Status, TIMEOUT).expect_err("stale socket");
    assert!(matches!(err, ClientError::NoMonitor), "{err}");
}

#[test]
fn an_unanswered_request_times_out_with_504() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = socket_in(&dir);
    let options = ServerOptions {
        reply_timeout: Duration::from_millis(200),
        ..ServerOptions::default()
    };
    let server = Server::bind_with(&path, &options).expect("bind");
    let started = Instant::now();
    let reply = call(&path, &ControlRequest::Status, TIMEOUT).expect("call");
    assert_eq!(reply.status, 504);
    assert!(reply.error_message().is_some());
    assert!(started.elapsed() < Duration::from_secs(5));
    // The monitor took too long: its late answer goes nowhere, harmlessly.
    for pending in server.take() {
        pending.respond(ControlReply::ok(json!({})));
    }
}

#[test]
fn the_client_gives_up_after_its_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = socket_in(&dir);
    let server = Server::bind(&path).expect("bind");
    let started = Instant::now();
    let err =
        call(&path, &ControlRequest::Reload, Duration::from_millis(200)).expect_err("no answer");
    assert!(matches!(err, ClientError::Other(_)), "{err}");
    assert!(err.to_string().contains("did not answer"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
    drop(server);
}

#[test]
fn a_dropped_request_answers_503() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = socket_in(&dir);
    let server = Server::bind(&path).expect("bind");
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| play_monitor(&server, &stop, drop));
        let _stop = StopOnDrop(&stop);
        let reply = call(&path, &ControlRequest::Status, TIMEOUT).expect("call");
        assert_eq!(reply.status, 503);
        assert!(reply.error_message().is_some());
    });
}

#[test]
fn the_wake_fd_is_readable_while_requests_wait() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = socket_in(&dir);
    let server = Server::bind(&path).expect("bind");
    let readable = |timeout: u16| {
        let mut fds = [PollFd::new(server.wake_fd(), PollFlags::POLLIN)];
        poll(&mut fds, timeout).expect("poll") > 0
    };
    assert!(!readable(0));
    std::thread::scope(|scope| {
        let caller = scope.spawn(|| call(&path, &ControlRequest::Status, TIMEOUT));
        let deadline = Instant::now() + TIMEOUT;
        while !readable(50) {
            assert!(
                Instant::now() < deadline,
                "the wake fd never became readable"
            );
        }
        let taken = server.take();
        assert!(!readable(0), "take clears the wake fd");
        assert_eq!(taken.len(), 1);
        for pending in taken {
            pending.respond(ControlReply::ok(json!({"workers": []})));
        }
        let reply = caller.join().expect("caller").expect("call");
        assert_eq!(reply, ControlReply::ok(json!({"workers": []})));
    });
}

/// What a connection from another user got.
#[derive(Debug, PartialEq)]
enum Foreign {
    /// connect() failed with EACCES.
    NoAccess,
    /// It connected; these bytes came back before the server closed.
    Answer(String),
}

/// Forks a child that becomes uid/gid 65534, connects to `path`, sends a
/// literal status request, and pipes back what it reads until the server closes.
fn connect_as_nobody(path: &Path) -> Foreign {
    use std::ffi::c_int;
    use std::io::Read;

    let mut addr = libc::sockaddr_un {
        sun_family: libc::AF_UNIX as libc::sa_family_t,
        sun_path: [0; 108],
    };
    let bytes = path.as_os_str().as_encoded_bytes();
    assert!(bytes.len() < addr.sun_path.len());
    for (dst, src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    let request = b"GET /v1/status HTTP/1.1\r\nHost: x\r\n\r\n";
    let (read_end, write_end) = nix::unistd::pipe().expect("pipe");

    /// Runs in the forked child: only async-signal-safe calls, on memory
    /// prepared before the fork.
    fn child(addr: &libc::sockaddr_un, request: &[u8], out: RawFd) -> ! {
        // SAFETY: plain system calls on valid pointers and lengths; the child
        // ends with _exit and never returns into the test harness.
        unsafe {
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setgid(65534) != 0
                || libc::setuid(65534) != 0
            {
                libc::_exit(2);
            }
            let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
            if fd < 0 {
                libc::_exit(3);
            }
            let limit = libc::timeval {
                tv_sec: 10,
                tv_usec: 0,
            };
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const limit).cast(),
                size_of::<libc::timeval>() as libc::socklen_t,
            );
            if libc::connect(
                fd,
                (addr as *const libc::sockaddr_un).cast(),
                size_of::<libc::sockaddr_un>() as libc::socklen_t,
            ) != 0
            {
                let code: c_int = if *libc::__errno_location() == libc::EACCES {
                    10
                } else {
                    4
                };
                libc::_exit(code);
            }
            if libc::write(fd, request.as_ptr().cast(), request.len()) != request.len() as isize {
                libc::_exit(5);
            }
            let mut buf = [0u8; 4096];
            loop {
                let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
                if n <= 0 {
                    break;
                }
                libc::write(out, buf.as_ptr().cast(), n as usize);
            }
            libc::_exit(0);
        }
    }

    // SAFETY: the child runs only `child`, which makes async-signal-safe
    // calls and _exits; nothing it shares with the parent's other threads
    // (locks, allocator) is touched.
    match unsafe { nix::unistd::fork() }.expect("fork") {
        nix::unistd::ForkResult::Child => child(&addr, request, write_end.as_raw_fd()),
        nix::unistd::ForkResult::Parent { child } => {
            drop(write_end);
            let mut got = Vec::new();
            fs::File::from(read_end)
                .read_to_end(&mut got)
                .expect("read the pipe");
            let status = nix::sys::wait::waitpid(child, None).expect("waitpid");
            match status {
                nix::sys::wait::WaitStatus::Exited(_, 0) => {
                    Foreign::Answer(String::from_utf8_lossy(&got).into_owned())
                }
                nix::sys::wait::WaitStatus::Exited(_, 10) => Foreign::NoAccess,
                other => panic!("the child failed: {other:?}"),
            }
        }
    }
}

#[test]
fn another_user_is_refused() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: another_user_is_refused needs root to become uid 65534");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o711)).expect("chmod dir");
    let path = socket_in(&dir);
    let server = Server::bind(&path).expect("bind");
    let stop = AtomicBool::new(false);
    let served = AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            play_monitor(&server, &stop, |p| {
                served.store(true, Ordering::Relaxed);
                echo(p)
            })
        });
        let _stop = StopOnDrop(&stop);

        // The socket's mode refuses it before the server sees it.
        assert_eq!(connect_as_nobody(&path), Foreign::NoAccess);

        // With the mode opened up, SO_PEERCRED still refuses it.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o666)).expect("chmod socket");
        match connect_as_nobody(&path) {
            Foreign::Answer(text) => {
                assert!(text.starts_with("HTTP/1.1 403"), "{text:?}");
                assert!(text.contains(r#""error":"#), "{text:?}");
            }
            Foreign::NoAccess => panic!("connect refused despite mode 0666"),
        }
    });
    assert!(
        !served.load(Ordering::Relaxed),
        "no request reached the monitor"
    );
    // And the monitor's own user is still served.
    assert!(monitor_alive(&path));
}

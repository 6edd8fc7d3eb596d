//! The monitor's side of the control socket: an HTTP server on one extra
//! thread that hands each request to the monitor's thread and waits for its
//! answer (the protocol is described in [`crate::control`]).

use std::convert::Infallible;
use std::fs;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener as StdUnixListener, UnixStream as StdUnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Extension, State};
use axum::http::{Method, Request, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use nix::sys::eventfd::{EfdFlags, EventFd};
use tokio::sync::{Semaphore, oneshot};
use tower::ServiceExt;

use super::ControlError;
use super::api::{self, ControlReply, ControlRequest, Selection, bounded};

/// How long error messages quoting a caller's input may grow, in bytes.
const MAX_MESSAGE: usize = 300;

/// Settings of a [`Server`]; [`Default`] gives the ones `pidwatch run` uses.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// How long a request waits for the monitor's answer before the caller
    /// gets 504 (default 60 s).
    pub reply_timeout: Duration,
    /// How long a connection may take to send a request's headers, idle
    /// keep-alive time included, before it is closed (default 10 s).
    pub header_read_timeout: Duration,
    /// How many connections are served at once (default 32); more wait in
    /// the listen backlog.
    pub max_connections: usize,
}

impl Default for ServerOptions {
    fn default() -> ServerOptions {
        ServerOptions {
            reply_timeout: Duration::from_secs(60),
            header_read_timeout: Duration::from_secs(10),
            max_connections: 32,
        }
    }
}

/// The control socket, served by a thread of its own while this value lives.
///
/// Requests reach the owner through [`Server::take`], after
/// [`Server::wake_fd`] became readable.
pub struct Server {
    path: PathBuf,
    /// Device and inode of the socket file bound, to remove only our own.
    bound: (u64, u64),
    wake: Arc<EventFd>,
    requests: Mutex<mpsc::Receiver<Pending>>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// One request waiting for the monitor's answer.
///
/// Answer it with [`Pending::respond`]; dropping it unanswered answers
/// `503 {"error": "..."}`.
#[derive(Debug)]
pub struct Pending {
    request: ControlRequest,
    peer_uid: u32,
    reply: Option<oneshot::Sender<ControlReply>>,
}

impl Pending {
    /// What the caller asks.
    pub fn request(&self) -> &ControlRequest {
        &self.request
    }

    /// The caller's user id, from `SO_PEERCRED` (the monitor's own or 0).
    pub fn peer_uid(&self) -> u32 {
        self.peer_uid
    }

    /// Sends `reply` to the caller. A caller that gave up meanwhile (its
    /// connection closed, or the reply timeout passed) is not told.
    pub fn respond(mut self, reply: ControlReply) {
        if let Some(tx) = self.reply.take() {
            let _ = tx.send(reply);
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(tx) = self.reply.take() {
            let _ = tx.send(ControlReply::error(
                503,
                "the monitor dropped the request unanswered",
            ));
        }
    }
}

impl Server {
    /// Binds the control socket at `path` with [`ServerOptions::default`],
    /// starts the server thread, and returns.
    ///
    /// The socket file is mode 0600 from the moment it appears at `path`:
    /// it is bound in a fresh 0700 directory beside `path`, set to 0600 there
    /// and renamed into place without replacing anything.
    ///
    /// Errors: [`ControlError::NotASocket`] if `path` exists and is not a
    /// socket (a symlink included); [`ControlError::InUse`] if a live
    /// process answers there (a socket nobody answers is removed and
    /// replaced); [`ControlError::Io`] if binding or placing the socket fails
    /// (a path longer than the 107 bytes a socket address holds, once the
    /// temporary directory's name is added, fails here);
    /// [`ControlError::Start`] if the thread or its runtime cannot be had.
    pub fn bind(path: &Path) -> Result<Server, ControlError> {
        Server::bind_with(path, &ServerOptions::default())
    }

    /// [`Server::bind`] with other settings (tests use a short reply timeout).
    pub fn bind_with(path: &Path, options: &ServerOptions) -> Result<Server, ControlError> {
        let io = |verb: &'static str, p: &Path| {
            let p = p.to_path_buf();
            move |source| ControlError::Io {
                verb,
                path: p,
                source,
            }
        };
        // Everything that can fail is had before the socket appears at
        // `path`, but the thread: a failed bind leaves nothing behind.
        let wake = Arc::new(
            EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)
                .map_err(|e| ControlError::Start(e.into()))?,
        );
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(ControlError::Start)?;

        clear_stale(path)?;
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        // tempfile makes the directory 0700: nobody but us (and root) can
        // reach the socket before its mode is narrowed.
        let dir = tempfile::Builder::new()
            .prefix(".pidwatch-control.")
            .tempdir_in(parent)
            .map_err(io("creating a private directory in", parent))?;
        let temp = dir.path().join("s");
        let listener = StdUnixListener::bind(&temp).map_err(io("binding", &temp))?;
        fs::set_permissions(&temp, fs::Permissions::from_mode(0o600))
            .map_err(io("setting the mode of", &temp))?;
        let meta = fs::symlink_metadata(&temp).map_err(io("examining", &temp))?;
        listener
            .set_nonblocking(true)
            .map_err(io("setting non-blocking", &temp))?;
        let listener = {
            let _entered = runtime.enter();
            tokio::net::UnixListener::from_std(listener).map_err(ControlError::Start)?
        };
        place(&temp, path)?;
        drop(dir);

        let (queue, requests) = mpsc::channel();
        let shared = Arc::new(Shared {
            queue,
            wake: wake.clone(),
            reply_timeout: options.reply_timeout,
            pid: std::process::id(),
        });
        let (shutdown, shutdown_rx) = oneshot::channel();
        let conn = ConnSettings {
            router: router(shared),
            allowed_uid: nix::unistd::geteuid().as_raw(),
            header_read_timeout: options.header_read_timeout,
        };
        let max_connections = options.max_connections.max(1);
        let bound = (meta.dev(), meta.ino());
        let thread = std::thread::Builder::new()
            .name("pidwatch-control".into())
            .spawn(move || {
                runtime.block_on(accept_loop(listener, conn, max_connections, shutdown_rx));
            })
            .map_err(|e| {
                remove_if_ours(path, bound);
                ControlError::Start(e)
            })?;
        Ok(Server {
            path: path.to_path_buf(),
            bound,
            wake,
            requests: Mutex::new(requests),
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// An eventfd that is readable while requests wait (level-triggered:
    /// it stays readable until [`Server::take`]), for the monitor's epoll.
    pub fn wake_fd(&self) -> BorrowedFd<'_> {
        self.wake.as_fd()
    }

    /// The requests waiting, oldest first; clears [`Server::wake_fd`]. Each
    /// must be answered with [`Pending::respond`] (a dropped one answers 503).
    pub fn take(&self) -> Vec<Pending> {
        // The counter is cleared before the queue is drained: a request
        // queued after the drain sets it again, so none is left unwoken.
        let _ = self.wake.read();
        let requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        requests.try_iter().collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        remove_if_ours(&self.path, self.bound);
    }
}

/// Removes the socket file at `path` if it is still the one bound (device
/// and inode `bound`): another monitor's, bound since, is left alone.
fn remove_if_ours(path: &Path, bound: (u64, u64)) {
    if let Ok(m) = fs::symlink_metadata(path)
        && (m.dev(), m.ino()) == bound
    {
        let _ = fs::remove_file(path);
    }
}

/// Removes a socket at `path` that nobody answers; refuses anything else
/// that exists there.
fn clear_stale(path: &Path) -> Result<(), ControlError> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(ControlError::Io {
                verb: "examining",
                path: path.to_path_buf(),
                source,
            });
        }
    };
    if !meta.file_type().is_socket() {
        return Err(ControlError::NotASocket(path.to_path_buf()));
    }
    match StdUnixStream::connect(path) {
        Ok(_) => Err(ControlError::InUse(path.to_path_buf())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            // Remove the file only if it is still the socket found dead.
            match fs::symlink_metadata(path) {
                Ok(m) if (m.dev(), m.ino()) == (meta.dev(), meta.ino()) => {
                    match fs::remove_file(path) {
                        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(ControlError::Io {
                            verb: "removing the stale socket",
                            path: path.to_path_buf(),
                            source: e,
                        }),
                        _ => Ok(()),
                    }
                }
                _ => Ok(()),
            }
        }
        Err(source) => Err(ControlError::Io {
            verb: "connecting to",
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Renames the bound socket `temp` to `path` without replacing whatever
/// appeared there meanwhile.
fn place(temp: &Path, path: &Path) -> Result<(), ControlError> {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    use rustix::io::Errno;
    let err = |source: io::Error| ControlError::Io {
        verb: "renaming the socket into place as",
        path: path.to_path_buf(),
        source,
    };
    for _ in 0..2 {
        match renameat_with(CWD, temp, CWD, path, RenameFlags::NOREPLACE) {
            Ok(()) => return Ok(()),
            // Something appeared at `path` since it was examined: examine it
            // again (a dead socket goes, anything else is refused).
            Err(Errno::EXIST) => clear_stale(path)?,
            // A filesystem without RENAME_NOREPLACE: `path` was free when
            // examined, and only one monitor binds it (the state dir's lock).
            Err(Errno::INVAL | Errno::NOSYS) => return fs::rename(temp, path).map_err(err),
            Err(e) => return Err(err(e.into())),
        }
    }
    Err(ControlError::InUse(path.to_path_buf()))
}

/// What the HTTP handlers share.
struct Shared {
    queue: mpsc::Sender<Pending>,
    wake: Arc<EventFd>,
    reply_timeout: Duration,
    pid: u32,
}

/// The caller of a connection, put into each of its requests.
#[derive(Debug, Clone, Copy)]
struct Peer {
    uid: u32,
}

/// What each connection is served with.
struct ConnSettings {
    router: Router,
    allowed_uid: u32,
    header_read_timeout: Duration,
}

async fn accept_loop(
    listener: tokio::net::UnixListener,
    conn: ConnSettings,
    max_connections: usize,
    mut shutdown: oneshot::Receiver<()>,
) {
    let conn = Arc::new(conn);
    let slots = Arc::new(Semaphore::new(max_connections));
    loop {
        let slot = tokio::select! {
            _ = &mut shutdown => return,
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => return,
            },
        };
        let stream = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => {
                    // Out of descriptors or memory: let what runs finish
                    // rather than spin on accept.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let conn = conn.clone();
        tokio::spawn(async move {
            serve_connection(stream, &conn).await;
            drop(slot);
        });
    }
}

/// Serves one connection: the router if its peer is the monitor's user or
/// root, else one 403 and the connection closed.
async fn serve_connection(stream: tokio::net::UnixStream, conn: &ConnSettings) {
    let Ok(cred) = stream.peer_cred() else {
        return;
    };
    let uid = cred.uid();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(conn.header_read_timeout);
    let io = TokioIo::new(stream);
    if uid == conn.allowed_uid || uid == 0 {
        let router = conn.router.clone();
        let service = service_fn(move |mut request: Request<Incoming>| {
            request.extensions_mut().insert(Peer { uid });
            router.clone().oneshot(request)
        });
        let _ = builder.serve_connection(io, service).await;
    } else {
        builder.keep_alive(false);
        let service = service_fn(move |_request: Request<Incoming>| async move {
            Ok::<_, Infallible>(json_error(
                StatusCode::FORBIDDEN,
                format!(
                    "user {uid} may not use this monitor's control socket \
                     (only its own user and root may)"
                ),
            ))
        });
        let _ = builder.serve_connection(io, service).await;
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(api::ROUTE_PING, get(ping))
        .route(
            api::ROUTE_STATUS,
            get(
                |State(shared): State<Arc<Shared>>, Extension(peer): Extension<Peer>| async move {
                    forward(&shared, peer, ControlRequest::Status).await
                },
            ),
        )
        .route(
            api::ROUTE_START,
            selection_route(|s| ControlRequest::Start {
                workers: s.workers,
                all: s.all,
            }),
        )
        .route(
            api::ROUTE_STOP,
            selection_route(|s| ControlRequest::Stop {
                workers: s.workers,
                all: s.all,
            }),
        )
        .route(
            api::ROUTE_RESTART,
            selection_route(|s| ControlRequest::Restart {
                workers: s.workers,
                all: s.all,
            }),
        )
        .route(
            api::ROUTE_RELOAD,
            post(
                |State(shared): State<Arc<Shared>>, Extension(peer): Extension<Peer>| async move {
                    forward(&shared, peer, ControlRequest::Reload).await
                },
            ),
        )
        .fallback(|method: Method, uri: Uri| async move {
            json_error(
                StatusCode::NOT_FOUND,
                bounded(&format!("no route {method} {}", uri.path()), MAX_MESSAGE),
            )
        })
        .method_not_allowed_fallback(|method: Method, uri: Uri| async move {
            json_error(
                StatusCode::METHOD_NOT_ALLOWED,
                bounded(
                    &format!("{} does not take {method}", uri.path()),
                    MAX_MESSAGE,
                ),
            )
        })
        .layer(DefaultBodyLimit::max(api::MAX_REQUEST_BODY))
        .with_state(shared)
}

async fn ping(State(shared): State<Arc<Shared>>) -> Response {
    (
        StatusCode::OK,
        axum::Json(serde_json::json!({ "ok": true, "pid": shared.pid })),
    )
        .into_response()
}

/// A `POST` route whose body is a [`Selection`], made into a request by `make`.
fn selection_route(make: fn(Selection) -> ControlRequest) -> MethodRouter<Arc<Shared>> {
    post(
        move |State(shared): State<Arc<Shared>>,
              Extension(peer): Extension<Peer>,
              body: Result<Bytes, BytesRejection>| async move {
            match parse_selection(body) {
                Ok(selection) => forward(&shared, peer, make(selection)).await,
                Err((status, message)) => json_error(status, message),
            }
        },
    )
}

/// The selection in `body`, or the status and message saying what is wrong.
fn parse_selection(body: Result<Bytes, BytesRejection>) -> Result<Selection, (StatusCode, String)> {
    let bytes = body.map_err(|rejection| {
        let status = rejection.status();
        let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
            format!("request body larger than {} bytes", api::MAX_REQUEST_BODY)
        } else {
            bounded(&rejection.body_text(), MAX_MESSAGE)
        };
        (status, message)
    })?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err((
            StatusCode::BAD_REQUEST,
            r#"empty body: expected {"workers": [...], "all": false}"#.to_string(),
        ));
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        (
            StatusCode::BAD_REQUEST,
            bounded(&format!("bad JSON body: {e}"), MAX_MESSAGE),
        )
    })
}

/// Hands `request` to the monitor and waits for its answer, at most the
/// reply timeout.
async fn forward(shared: &Shared, peer: Peer, request: ControlRequest) -> Response {
    let (tx, rx) = oneshot::channel();
    let pending = Pending {
        request,
        peer_uid: peer.uid,
        reply: Some(tx),
    };
    if shared.queue.send(pending).is_err() {
        return json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the monitor is shutting down".to_string(),
        );
    }
    // Fails only when the counter would overflow: it is readable then anyway.
    let _ = shared.wake.write(1);
    match tokio::time::timeout(shared.reply_timeout, rx).await {
        Ok(Ok(reply)) => {
            let status =
                StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (status, axum::Json(reply.body)).into_response()
        }
        Ok(Err(_)) => json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the monitor is shutting down".to_string(),
        ),
        Err(_) => json_error(
            StatusCode::GATEWAY_TIMEOUT,
            format!(
                "the monitor did not answer within {} s",
                shared.reply_timeout.as_secs_f64()
            ),
        ),
    }
}

fn json_error(status: StatusCode, message: String) -> Response<Body> {
    (status, axum::Json(serde_json::json!({ "error": message }))).into_response()
}

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
use axum::extract::{Extension, State};
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
use super::api::{self, ControlReply, ControlRequest, HealMode, Selection, bounded};
use super::challenges::ChallengeStore;
use super::trust::{self, PeerAddr, RequestFacts, TrustPolicy};

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
    /// Who is trusted to change what (the config's `[api]`).
    pub policy: TrustPolicy,
    /// How long a confirmation challenge lives (default 120 s).
    pub challenge_ttl: Duration,
    /// Also serve on this TCP address (`--listen`, `[api] listen`).
    pub tcp: Option<std::net::SocketAddr>,
    /// Where mutating calls are audited; `None`: not audited (tests).
    pub audit: Option<AuditSink>,
    /// What `GET /health` reads.
    pub health: Arc<HealthBoard>,
}

impl Default for ServerOptions {
    fn default() -> ServerOptions {
        ServerOptions {
            reply_timeout: Duration::from_secs(60),
            header_read_timeout: Duration::from_secs(10),
            max_connections: 32,
            policy: TrustPolicy {
                trusted_callers: Default::default(),
                token: None,
                secret_header: None,
                monitor_uid: nix::unistd::geteuid().as_raw(),
            },
            challenge_ttl: Duration::from_secs(120),
            tcp: None,
            audit: None,
            health: Arc::new(HealthBoard::new(Duration::from_secs(90))),
        }
    }
}

/// Where the audit trail of mutating calls goes.
#[derive(Debug, Clone)]
pub struct AuditSink {
    /// The state DB (its `audit` table).
    pub state_db: PathBuf,
    /// `<state_dir>/logs/audit.jsonl`.
    pub jsonl: PathBuf,
}

/// The monitor's liveness, as its loop reports it, for `GET /health`
/// (answered by the server thread, so a stuck loop shows).
#[derive(Debug)]
pub struct HealthBoard {
    /// How old the last completed pass may be, at most.
    max_age: Duration,
    state: Mutex<(Option<std::time::Instant>, Option<String>)>,
}

impl HealthBoard {
    /// A board on which a pass older than `max_age` is unhealthy.
    pub fn new(max_age: Duration) -> HealthBoard {
        HealthBoard {
            max_age,
            state: Mutex::new((None, None)),
        }
    }

    /// A pass completed now.
    pub fn pass_done(&self) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        *s = (Some(std::time::Instant::now()), None);
    }

    /// A pass failed: the sources cannot be read (`why`).
    pub fn pass_failed(&self, why: String) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.1 = Some(why);
    }

    /// Seconds since the last pass, or why the monitor is unhealthy.
    pub fn check(&self) -> Result<f64, String> {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(why) = &s.1 {
            return Err(format!("its last pass failed: {why}"));
        }
        match s.0 {
            None => Err("no pass completed yet".into()),
            Some(at) if at.elapsed() > self.max_age => Err(format!(
                "its last pass completed {:.0} s ago (more than {:.0} s)",
                at.elapsed().as_secs_f64(),
                self.max_age.as_secs_f64()
            )),
            Some(at) => Ok(at.elapsed().as_secs_f64()),
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
    peer: PeerAddr,
    reply: Option<oneshot::Sender<ControlReply>>,
}

impl Pending {
    /// What the caller asks.
    pub fn request(&self) -> &ControlRequest {
        &self.request
    }

    /// The caller's user id, from `SO_PEERCRED` (the monitor's own or 0),
    /// when it came through the socket.
    pub fn peer_uid(&self) -> Option<u32> {
        match self.peer {
            PeerAddr::Uid(uid) => Some(uid),
            PeerAddr::Tcp(_) => None,
        }
    }

    /// Who is at the other end.
    pub fn peer(&self) -> PeerAddr {
        self.peer
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

        // The TCP address first: a refused bind leaves no socket behind.
        let tcp = match options.tcp {
            Some(addr) => {
                let listener =
                    std::net::TcpListener::bind(addr).map_err(|source| ControlError::Io {
                        verb: "listening on",
                        path: PathBuf::from(addr.to_string()),
                        source,
                    })?;
                listener
                    .set_nonblocking(true)
                    .map_err(ControlError::Start)?;
                let _entered = runtime.enter();
                Some(tokio::net::TcpListener::from_std(listener).map_err(ControlError::Start)?)
            }
            None => None,
        };
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
            policy: options.policy.clone(),
            challenges: Mutex::new(ChallengeStore::new(options.challenge_ttl)),
            audit: options.audit.clone(),
            health: options.health.clone(),
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
                runtime.block_on(async move {
                    let conn = Arc::new(conn);
                    let slots = Arc::new(Semaphore::new(max_connections));
                    let unix = tokio::spawn(accept_loop(
                        Listener::Unix(listener),
                        conn.clone(),
                        slots.clone(),
                    ));
                    let tcp = tcp.map(|l| tokio::spawn(accept_loop(Listener::Tcp(l), conn, slots)));
                    let _ = shutdown_rx.await;
                    unix.abort();
                    if let Some(tcp) = tcp {
                        tcp.abort();
                    }
                });
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
    policy: TrustPolicy,
    challenges: Mutex<ChallengeStore>,
    audit: Option<AuditSink>,
    health: Arc<HealthBoard>,
}

/// The most header lines a request may carry.
const MAX_HEADERS: usize = 64;

/// How long a request's body may take to arrive.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// The caller of a connection, put into each of its requests.
#[derive(Debug, Clone, Copy)]
struct Peer {
    addr: PeerAddr,
}

/// What each connection is served with.
struct ConnSettings {
    router: Router,
    allowed_uid: u32,
    header_read_timeout: Duration,
}

/// A listener the server accepts on.
enum Listener {
    Unix(tokio::net::UnixListener),
    Tcp(tokio::net::TcpListener),
}

async fn accept_loop(listener: Listener, conn: Arc<ConnSettings>, slots: Arc<Semaphore>) {
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let accepted = match &listener {
            Listener::Unix(l) => l.accept().await.map(|(s, _)| Accepted::Unix(s)),
            Listener::Tcp(l) => l.accept().await.map(|(s, addr)| Accepted::Tcp(s, addr)),
        };
        let Ok(stream) = accepted else {
            // Out of descriptors or memory: let what runs finish rather
            // than spin on accept.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let conn = conn.clone();
        tokio::spawn(async move {
            match stream {
                Accepted::Unix(stream) => serve_connection(stream, &conn).await,
                Accepted::Tcp(stream, addr) => serve_tcp(stream, addr, &conn).await,
            }
            drop(slot);
        });
    }
}

/// A connection accepted.
enum Accepted {
    Unix(tokio::net::UnixStream),
    Tcp(tokio::net::TcpStream, std::net::SocketAddr),
}

/// The HTTP/1.1 settings of every connection: how long its headers may
/// take, and how many it may send.
fn http1(conn: &ConnSettings) -> hyper::server::conn::http1::Builder {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(conn.header_read_timeout)
        .max_headers(MAX_HEADERS);
    builder
}

/// Serves one TCP connection: every request goes through the trust rules
/// (the token; [`crate::control::trust`]).
async fn serve_tcp(stream: tokio::net::TcpStream, addr: std::net::SocketAddr, conn: &ConnSettings) {
    let builder = http1(conn);
    let router = conn.router.clone();
    let service = service_fn(move |mut request: Request<Incoming>| {
        request.extensions_mut().insert(Peer {
            addr: PeerAddr::Tcp(addr),
        });
        router.clone().oneshot(request)
    });
    let _ = builder
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

/// Serves one connection: the router if its peer is the monitor's user or
/// root, else one 403 and the connection closed.
async fn serve_connection(stream: tokio::net::UnixStream, conn: &ConnSettings) {
    let Ok(cred) = stream.peer_cred() else {
        return;
    };
    let uid = cred.uid();
    let mut builder = http1(conn);
    let io = TokioIo::new(stream);
    if uid == conn.allowed_uid || uid == 0 {
        let router = conn.router.clone();
        let service = service_fn(move |mut request: Request<Incoming>| {
            request.extensions_mut().insert(Peer {
                addr: PeerAddr::Uid(uid),
            });
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
    let forwarding = |make: fn() -> ControlRequest| {
        move |State(shared): State<Arc<Shared>>, Extension(peer): Extension<Peer>| async move {
            forward(&shared, peer, make()).await
        }
    };
    Router::new()
        .route(api::ROUTE_PING, get(ping))
        .route(
            api::ROUTE_STATUS,
            get(forwarding(|| ControlRequest::Status)),
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
                counted: false,
            }),
        )
        .route(
            api::ROUTE_RELOAD,
            post(forwarding(|| ControlRequest::Reload)),
        )
        // The API of issue 10 (README, "The control API").
        .route("/", get(dashboard))
        .route("/health", get(health))
        .route("/metrics", get(forwarding(|| ControlRequest::Metrics)))
        .route(
            "/workers/status",
            get(forwarding(|| ControlRequest::Status)),
        )
        .route(
            "/workers/restart-all",
            post(forwarding(|| ControlRequest::Restart {
                workers: Vec::new(),
                all: true,
                counted: true,
            })),
        )
        .route(
            "/workers/restart/{id}",
            one_worker(|id| ControlRequest::Restart {
                workers: vec![id],
                all: false,
                counted: true,
            }),
        )
        .route(
            "/workers/start/{id}",
            one_worker(|id| ControlRequest::Start {
                workers: vec![id],
                all: false,
            }),
        )
        .route(
            "/workers/stop/{id}",
            one_worker(|id| ControlRequest::Stop {
                workers: vec![id],
                all: false,
            }),
        )
        .route("/workers/logs/{id}", get(logs))
        .route("/workers/history", get(history))
        .route("/workers/heal", post(heal))
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
        .layer(axum::middleware::from_fn_with_state(shared.clone(), guard))
        .with_state(shared)
}

/// A `POST` route on one worker, `/…/{id}`, made into a request by `make`.
fn one_worker(make: fn(String) -> ControlRequest) -> MethodRouter<Arc<Shared>> {
    post(
        move |State(shared): State<Arc<Shared>>,
              Extension(peer): Extension<Peer>,
              axum::extract::Path(id): axum::extract::Path<String>| async move {
            forward(&shared, peer, make(id)).await
        },
    )
}

/// The query of `GET /workers/logs/{id}`.
#[derive(Debug, serde::Deserialize)]
struct LogsQuery {
    lines: Option<usize>,
    follow: Option<String>,
}

async fn logs(
    State(shared): State<Arc<Shared>>,
    Extension(peer): Extension<Peer>,
    axum::extract::Path(id): axum::extract::Path<String>,
    query: Result<axum::extract::Query<LogsQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(axum::extract::Query(query)) = query else {
        return json_error(StatusCode::BAD_REQUEST, "lines must be a number".into());
    };
    let request = ControlRequest::Logs {
        worker: id,
        lines: query.lines.unwrap_or(100),
    };
    let follow = query.follow.is_some_and(|f| f == "1" || f == "true");
    if !follow {
        return forward(&shared, peer, request).await;
    }
    let Ok(reply) = ask(&shared, peer, request).await else {
        return json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the monitor did not answer".into(),
        );
    };
    if reply.status != 200 {
        return reply_response(reply);
    }
    let Some(path) = reply
        .body
        .get("path")
        .and_then(|p| p.as_str())
        .map(PathBuf::from)
    else {
        return json_error(StatusCode::INTERNAL_SERVER_ERROR, "no log path".into());
    };
    let lines: Vec<String> = reply
        .body
        .get("lines")
        .and_then(|l| serde_json::from_value(l.clone()).ok())
        .unwrap_or_default();
    super::sse::follow(path, lines)
}

/// The query of `GET /workers/history`.
#[derive(Debug, serde::Deserialize)]
struct HistoryQuery {
    worker: Option<String>,
    limit: Option<usize>,
}

async fn history(
    State(shared): State<Arc<Shared>>,
    Extension(peer): Extension<Peer>,
    query: Result<axum::extract::Query<HistoryQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(axum::extract::Query(query)) = query else {
        return json_error(StatusCode::BAD_REQUEST, "limit must be a number".into());
    };
    let request = ControlRequest::History {
        worker: query.worker.filter(|w| !w.is_empty()),
        limit: query.limit.unwrap_or(100),
    };
    forward(&shared, peer, request).await
}

/// The body of `POST /workers/heal`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct HealBody {
    mode: Option<HealMode>,
    reason: Option<String>,
}

async fn heal(
    State(shared): State<Arc<Shared>>,
    Extension(peer): Extension<Peer>,
    Extension(caller): Extension<trust::Caller>,
    body: Bytes,
) -> Response {
    let parsed: HealBody = if body.iter().all(u8::is_ascii_whitespace) {
        HealBody::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(b) => b,
            Err(e) => {
                return json_error(
                    StatusCode::BAD_REQUEST,
                    bounded(
                        &format!(
                            r#"bad JSON body: {e}; expected {{"mode": "plan" | "execute", "reason": "..."}}"#
                        ),
                        MAX_MESSAGE,
                    ),
                );
            }
        }
    };
    // A trusted caller's heal executes unless it asks for a plan; anyone
    // else's plans unless it asks (and confirmed) to execute.
    let trusted = shared
        .policy
        .trusted_callers
        .contains(caller.id.as_deref().unwrap_or(""));
    let mode = parsed.mode.unwrap_or(if trusted {
        HealMode::Execute
    } else {
        HealMode::Plan
    });
    let request = ControlRequest::Heal {
        mode,
        reason: parsed.reason.map(|r| bounded(&r, MAX_MESSAGE)),
        caller: caller.id.clone(),
    };
    forward(&shared, peer, request).await
}

async fn dashboard() -> Response {
    (
        [
            (axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                axum::http::header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'unsafe-inline'",
            ),
        ],
        DASHBOARD,
    )
        .into_response()
}

/// The dashboard: one page, its script and style inline, nothing fetched
/// from elsewhere.
const DASHBOARD: &str = include_str!("dashboard.html");

async fn health(State(shared): State<Arc<Shared>>) -> Response {
    match shared.health.check() {
        Ok(age) => (
            StatusCode::OK,
            axum::Json(
                serde_json::json!({ "ok": true, "lastPassSecondsAgo": age, "pid": shared.pid }),
            ),
        )
            .into_response(),
        Err(why) => json_error(StatusCode::SERVICE_UNAVAILABLE, why),
    }
}

/// Checks every request against the trust rules before it is served
/// ([`trust::admit`]): reads the body (bounded in size and time), refuses
/// or challenges what is not let through, and audits every mutating call,
/// carried out or refused.
async fn guard(
    State(shared): State<Arc<Shared>>,
    request: Request<Body>,
    next: axum::middleware::Next,
) -> Response {
    let path = request.uri().path().to_string();
    if path == api::ROUTE_PING {
        return next.run(request).await;
    }
    let Some(peer) = request.extensions().get::<Peer>().copied() else {
        return json_error(StatusCode::INTERNAL_SERVER_ERROR, "no peer".into());
    };
    let (parts, body) = request.into_parts();
    let secret_name = shared.policy.secret_header.as_ref().map(|h| h.name.clone());
    let mut names = vec![
        trust::HEADER_CALLER_ID.to_string(),
        axum::http::header::AUTHORIZATION.as_str().to_string(),
        trust::HEADER_CONFIRMED.to_string(),
    ];
    names.extend(secret_name.clone());
    for name in &names {
        if parts.headers.get_all(name.as_str()).iter().count() > 1 {
            return json_error(
                StatusCode::BAD_REQUEST,
                format!("the header {name} is given more than once"),
            );
        }
    }
    let bytes = match tokio::time::timeout(
        BODY_TIMEOUT,
        axum::body::to_bytes(body, api::MAX_REQUEST_BODY),
    )
    .await
    {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(_)) => {
            return json_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body larger than {} bytes", api::MAX_REQUEST_BODY),
            );
        }
        Err(_) => {
            return json_error(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the body did not arrive within {} s",
                    BODY_TIMEOUT.as_secs()
                ),
            );
        }
    };
    let header = |name: &str| parts.headers.get(name).map(|v| v.as_bytes());
    // A heal that only plans changes nothing: admitted as a read.
    let plans = path == "/workers/heal"
        && heal_plans(&shared.policy, &bytes, header(trust::HEADER_CALLER_ID));
    let facts = RequestFacts {
        method: if plans { "GET" } else { parts.method.as_str() },
        path: &path,
        body: &bytes,
        peer: peer.addr,
        caller_id: header(trust::HEADER_CALLER_ID),
        authorization: header(axum::http::header::AUTHORIZATION.as_str()),
        secret: secret_name.as_deref().and_then(header),
        confirmed: header(trust::HEADER_CONFIRMED),
    };
    let admission = {
        let mut store = shared.challenges.lock().unwrap_or_else(|e| e.into_inner());
        trust::admit(&shared.policy, &facts, &mut store, chrono::Utc::now())
    };
    let mutating = !trust::is_read(facts.method);
    let target = target_of(&path, &bytes);
    if let Some(reply) = admission.refusal_reply() {
        if mutating {
            let message = reply.error_message().unwrap_or("refused").to_string();
            let record =
                admission.audit_record(&facts, chrono::Utc::now(), target, reply.status, &message);
            audit(&shared, record).await;
        }
        return reply_response(reply);
    }
    let record_facts = mutating.then(|| (facts.method.to_string(), path.clone()));
    let mut request = Request::from_parts(parts.clone(), Body::from(bytes.clone()));
    request.extensions_mut().insert(admission.caller.clone());
    let response = next.run(request).await;
    if let Some((method, path)) = record_facts {
        let status = response.status().as_u16();
        let result = if response.status().is_success() {
            "executed".to_string()
        } else {
            format!("failed ({status})")
        };
        let facts = RequestFacts {
            method: &method,
            path: &path,
            body: &bytes,
            peer: peer.addr,
            caller_id: None,
            authorization: None,
            secret: None,
            confirmed: None,
        };
        let record = admission.audit_record(&facts, chrono::Utc::now(), target, status, &result);
        audit(&shared, record).await;
    }
    response
}

/// Whether a heal's `body` asks only for a plan: `"mode": "plan"`, or no
/// mode from a caller that is not trusted (whose heal plans by default).
/// A body that is not a heal's is no plan (the handler refuses it).
fn heal_plans(policy: &TrustPolicy, body: &[u8], caller_id: Option<&[u8]>) -> bool {
    let parsed: HealBody = if body.iter().all(u8::is_ascii_whitespace) {
        HealBody::default()
    } else {
        match serde_json::from_slice(body) {
            Ok(b) => b,
            Err(_) => return false,
        }
    };
    let trusted = caller_id
        .and_then(|id| std::str::from_utf8(id).ok())
        .is_some_and(|id| policy.trusted_callers.contains(id));
    match parsed.mode {
        Some(mode) => mode == HealMode::Plan,
        None => !trusted,
    }
}

/// What a mutating call acts on: the worker of `/workers/…/{id}`, or the
/// workers a selection body names.
fn target_of(path: &str, body: &[u8]) -> Option<String> {
    for prefix in ["/workers/restart/", "/workers/start/", "/workers/stop/"] {
        if let Some(id) = path.strip_prefix(prefix) {
            return Some(id.to_string());
        }
    }
    if path == "/workers/restart-all" {
        return Some("all".into());
    }
    let selection: Selection = serde_json::from_slice(body).ok()?;
    if selection.all {
        Some("all".into())
    } else {
        Some(selection.workers.join(","))
    }
}

/// Records `record` in the audit trail (the state DB and `audit.jsonl`),
/// off the runtime's thread; a failure is said on stderr.
async fn audit(shared: &Shared, record: crate::store::audit::AuditRecord) {
    let Some(sink) = shared.audit.clone() else {
        return;
    };
    let _ = tokio::task::spawn_blocking(move || {
        let written = crate::store::statedb::StateDb::open(&sink.state_db)
            .and_then(|db| crate::store::audit::record(&db, &sink.jsonl, &record));
        if let Err(e) = written {
            crate::output::print_stderr(&format!("pidwatch: audit: {e}"));
        }
    })
    .await;
}

/// Hands `request` to the monitor and waits for its reply.
async fn ask(shared: &Shared, peer: Peer, request: ControlRequest) -> Result<ControlReply, ()> {
    let (tx, rx) = oneshot::channel();
    let pending = Pending {
        request,
        peer: peer.addr,
        reply: Some(tx),
    };
    shared.queue.send(pending).map_err(|_| ())?;
    let _ = shared.wake.write(1);
    match tokio::time::timeout(shared.reply_timeout, rx).await {
        Ok(Ok(reply)) => Ok(reply),
        _ => Err(()),
    }
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
        peer: peer.addr,
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
        Ok(Ok(reply)) => reply_response(reply),
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
    let body = api::error_body(api::error_code(status.as_u16()), &message);
    (status, axum::Json(body)).into_response()
}

/// The HTTP response of a reply: its JSON (or text) body, with
/// `Retry-After` on a 429 that says when, and `WWW-Authenticate` on a 401.
fn reply_response(reply: ControlReply) -> Response {
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let retry_after = reply
        .body
        .get("retryAfter")
        .and_then(serde_json::Value::as_u64);
    let mut response = match reply.text {
        Some((content_type, text)) => (
            status,
            [(axum::http::header::CONTENT_TYPE, content_type)],
            text,
        )
            .into_response(),
        None => (status, axum::Json(reply.body)).into_response(),
    };
    let headers = response.headers_mut();
    if let Some(secs) = retry_after.filter(|_| status == StatusCode::TOO_MANY_REQUESTS) {
        headers.insert(axum::http::header::RETRY_AFTER, secs.into());
    }
    if status == StatusCode::UNAUTHORIZED {
        headers.insert(
            axum::http::header::WWW_AUTHENTICATE,
            axum::http::HeaderValue::from_static("Bearer"),
        );
    }
    response
}

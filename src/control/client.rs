//! The callers' side of the control socket: synchronous calls for `start`,
//! `stop`, `restart` and `status` (the protocol is described in
//! [`crate::control`]).
//!
//! Each call builds a small current-thread runtime, opens one connection,
//! sends one request over hyper's HTTP/1.1 client, and closes it.

use std::io;
use std::path::Path;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;

use super::api::{self, ControlReply, ControlRequest, Method, bounded};

/// How long [`monitor_alive`] waits for the ping's answer.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a call to the monitor got no reply from it.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No monitor serves the socket (it is missing, or nobody listens on
    /// it): the caller acts itself.
    #[error("no monitor serves the control socket")]
    NoMonitor,
    /// The monitor refuses this caller (403, or the socket's mode refused
    /// the connection): the message says why.
    #[error("the monitor refuses this caller: {0}")]
    Refused(String),
    /// The monitor asks for a confirmation (`403 CONFIRMATION_REQUIRED`):
    /// its reply carries the challenge.
    #[error("the monitor asks for a confirmation")]
    Challenged(ControlReply),
    /// Anything else: the timeout passed, the connection broke, the answer
    /// was not JSON.
    #[error("{0}")]
    Other(String),
}

/// Sends `request` to the monitor at `socket` and waits up to `timeout` for
/// the reply, connecting included.
///
/// Every status but 403 is returned as a [`ControlReply`], errors the server
/// gives included (400, 404, 503 when the monitor dropped the request, 504
/// when it did not answer in time).
///
/// Errors: [`ClientError::NoMonitor`] if the socket is missing or refuses
/// connections; [`ClientError::Refused`] on 403 or `EACCES`;
/// [`ClientError::Other`] on a timeout, a broken connection, or a reply that
/// is not JSON (or over [`api::MAX_REPLY_BODY`]).
pub fn call(
    socket: &Path,
    request: &ControlRequest,
    timeout: Duration,
) -> Result<ControlReply, ClientError> {
    call_endpoint(
        &Endpoint::Socket(socket.to_path_buf()),
        request,
        None,
        timeout,
    )
}

/// Whether a live monitor answers `GET /v1/ping` at `socket` within 2 s.
pub fn monitor_alive(socket: &Path) -> bool {
    ping(socket, PING_TIMEOUT).is_ok()
}

/// Pings the monitor at `socket`, waiting up to `timeout`, and returns its
/// PID.
///
/// Errors: as [`call`]'s; a reply that is not `200 {"ok": true, "pid": N}`
/// is [`ClientError::Other`].
pub fn ping(socket: &Path, timeout: Duration) -> Result<u32, ClientError> {
    let reply = send(socket, Method::Get, api::ROUTE_PING, Vec::new(), timeout)?;
    let pid = reply.body.get("pid").and_then(serde_json::Value::as_u64);
    match (reply.status, reply.body.get("ok"), pid) {
        (200, Some(serde_json::Value::Bool(true)), Some(pid)) => u32::try_from(pid)
            .map_err(|_| ClientError::Other(format!("ping answered an impossible PID {pid}"))),
        _ => Err(ClientError::Other(format!(
            "ping answered {}: {}",
            reply.status,
            bounded(&reply.body.to_string(), 300)
        ))),
    }
}

/// Where a monitor is asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// Its control socket.
    Socket(std::path::PathBuf),
    /// Its TCP listener (`--url http://host:port`), with the bearer token
    /// to present, if any.
    Url {
        /// `host:port`.
        authority: String,
        /// The token (`--token-file`).
        token: Option<String>,
    },
}

impl Endpoint {
    /// The endpoint of `url` (`http://host:port`, a trailing `/` allowed).
    ///
    /// Errors: not such a URL (https is not served: pidwatch speaks plain
    /// HTTP, on loopback or behind a proxy that terminates TLS).
    pub fn url(url: &str, token: Option<String>) -> Result<Endpoint, String> {
        let uri: hyper::Uri = url
            .parse()
            .map_err(|e| format!("--url {}: {e}", bounded(url, 200)))?;
        if uri.scheme_str() != Some("http") {
            return Err(format!(
                "--url {}: expected http://HOST:PORT (pidwatch serves plain HTTP)",
                bounded(url, 200)
            ));
        }
        let authority = uri
            .authority()
            .map(|a| a.as_str().to_string())
            .filter(|a| !a.is_empty())
            .ok_or_else(|| format!("--url {}: no host", bounded(url, 200)))?;
        if uri.path() != "/" && !uri.path().is_empty() {
            return Err(format!("--url {}: give no path", bounded(url, 200)));
        }
        Ok(Endpoint::Url { authority, token })
    }

    /// The endpoint in words: the socket's path, or `http://host:port`.
    pub fn describe(&self) -> String {
        match self {
            Endpoint::Socket(p) => p.display().to_string(),
            Endpoint::Url { authority, .. } => format!("http://{authority}"),
        }
    }
}

/// Sends `request` to the monitor at `endpoint`, with `confirmed` (a
/// challenge's id) when it answers one, and waits up to `timeout`.
///
/// Errors: as [`call`]; a `403` that is a confirmation challenge is
/// [`ClientError::Challenged`] with the reply, for the caller to ask.
pub fn call_endpoint(
    endpoint: &Endpoint,
    request: &ControlRequest,
    confirmed: Option<&str>,
    timeout: Duration,
) -> Result<ControlReply, ClientError> {
    let (method, path) = request.route();
    let body = match request.body() {
        Some(selection) => serde_json::to_vec(&selection)
            .map_err(|e| ClientError::Other(format!("encoding the request: {e}")))?,
        None => Vec::new(),
    };
    send_to(endpoint, method, path, body, confirmed, timeout)
}

/// Sends one request with a raw `body` to `path`
/// (tests use it for what [`ControlRequest`] cannot say).
pub(crate) fn send(
    socket: &Path,
    method: Method,
    path: &str,
    body: Vec<u8>,
    timeout: Duration,
) -> Result<ControlReply, ClientError> {
    send_to(
        &Endpoint::Socket(socket.to_path_buf()),
        method,
        path,
        body,
        None,
        timeout,
    )
}

fn send_to(
    endpoint: &Endpoint,
    method: Method,
    path: &str,
    body: Vec<u8>,
    confirmed: Option<&str>,
    timeout: Duration,
) -> Result<ControlReply, ClientError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(|e| ClientError::Other(format!("starting the client runtime: {e}")))?;
    runtime.block_on(async {
        let exchange = async {
            let refused = |e: io::Error| match e.kind() {
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
                    ClientError::NoMonitor
                }
                io::ErrorKind::PermissionDenied => {
                    ClientError::Refused(format!("connecting to {}: {e}", endpoint.describe()))
                }
                _ => ClientError::Other(format!("connecting to {}: {e}", endpoint.describe())),
            };
            match endpoint {
                Endpoint::Socket(socket) => {
                    let stream = tokio::net::UnixStream::connect(socket)
                        .await
                        .map_err(refused)?;
                    exchange(stream, endpoint, method, path, body, confirmed).await
                }
                Endpoint::Url { authority, .. } => {
                    let stream = tokio::net::TcpStream::connect(authority.as_str())
                        .await
                        .map_err(refused)?;
                    exchange(stream, endpoint, method, path, body, confirmed).await
                }
            }
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(ClientError::Other(format!(
                "the monitor at {} did not answer within {} s",
                endpoint.describe(),
                timeout.as_secs_f64()
            ))),
        }
    })
}

async fn exchange<S>(
    stream: S,
    endpoint: &Endpoint,
    method: Method,
    path: &str,
    body: Vec<u8>,
    confirmed: Option<&str>,
) -> Result<ControlReply, ClientError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let broken = |what: &str, e: &dyn std::fmt::Display| {
        ClientError::Other(format!(
            "{what} the monitor at {}: {e}",
            endpoint.describe()
        ))
    };
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| broken("talking to", &e))?;
    let connection = tokio::spawn(connection);
    let caller = std::env::var(CALLER_ID_ENV)
        .ok()
        .filter(|id| super::trust::is_valid_caller_id(id))
        .unwrap_or_else(|| super::trust::CLI_CALLER_ID.to_string());
    let mut request = Request::builder()
        .method(match method {
            Method::Get => hyper::Method::GET,
            Method::Post => hyper::Method::POST,
        })
        .uri(path)
        .header(CONTENT_TYPE, "application/json")
        // pidwatch's own commands name themselves: trusted on the socket
        // by the peer's uid (crate::control::trust).
        .header(super::trust::HEADER_CALLER_ID, caller);
    match endpoint {
        Endpoint::Socket(_) => request = request.header(HOST, "localhost"),
        Endpoint::Url { authority, token } => {
            request = request.header(HOST, authority.as_str());
            if let Some(token) = token {
                request = request.header(AUTHORIZATION, format!("Bearer {token}"));
            }
        }
    }
    if let Some(id) = confirmed {
        request = request.header(
            super::trust::HEADER_CONFIRMED,
            format!("{}{id}", super::trust::CONFIRMED_PREFIX),
        );
    }
    let request = request
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| ClientError::Other(format!("building the request: {e}")))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| broken("sending to", &e))?;
    let status = response.status();
    let bytes = Limited::new(response.into_body(), api::MAX_REPLY_BODY)
        .collect()
        .await
        .map_err(|e| broken("reading the reply of", &e))?
        .to_bytes();
    drop(sender);
    connection.abort();
    let body: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
        ClientError::Other(format!(
            "the monitor at {} answered {status} with a body that is not JSON: {e}",
            endpoint.describe()
        ))
    })?;
    let reply = ControlReply {
        status: status.as_u16(),
        body,
        text: None,
    };
    if status == StatusCode::FORBIDDEN {
        if reply.body.get("code").and_then(|c| c.as_str())
            == Some(super::trust::CODE_CONFIRMATION_REQUIRED)
        {
            return Err(ClientError::Challenged(reply));
        }
        return Err(ClientError::Refused(
            reply
                .error_message()
                .map(|m| bounded(m, 300))
                .unwrap_or_else(|| "403 Forbidden".to_string()),
        ));
    }
    if status == StatusCode::UNAUTHORIZED {
        return Err(ClientError::Refused(format!(
            "{} (give --token-file)",
            reply
                .error_message()
                .map(|m| bounded(m, 300))
                .unwrap_or_default()
        )));
    }
    Ok(reply)
}

/// The environment variable that names the caller to the monitor
/// (`X-Caller-Id`); default `pidwatch`.
pub const CALLER_ID_ENV: &str = "PIDWATCH_CALLER_ID";

//! The control socket: how `start`, `stop`, `restart` and `status` ask a
//! running monitor (`pidwatch run`) instead of acting behind its back.
//!
//! # Shape
//!
//! The monitor binds a unix socket in its state dir ([`Server::bind`]). A
//! current-thread tokio runtime on one extra thread serves HTTP/1.1 on it
//! (hyper, with axum's router), checks each caller, parses each request into
//! a [`ControlRequest`] and hands it to the monitor's thread through a
//! channel, waking it through an eventfd ([`Server::wake_fd`]) that the
//! monitor's epoll loop watches. The monitor takes what waits
//! ([`Server::take`]), acts on it between passes, and answers each
//! [`Pending`] with a [`ControlReply`]. The HTTP side waits for that answer
//! at most the reply timeout (60 s by default), so a stuck monitor never
//! hangs a caller for good. The other commands reach the socket through the
//! synchronous [`client`] ([`call`], [`monitor_alive`]).
//!
//! # Who is served
//!
//! The socket file is mode 0600 from the moment it appears at its path (it is
//! bound inside a fresh 0700 directory, set to 0600 there and renamed into
//! place). Every connection's peer is read with `SO_PEERCRED`; only the
//! monitor's own effective user and root are served. Any other caller gets
//! `403 {"error": "..."}` for its first request and the connection is closed;
//! nothing it sends reaches the monitor.
//!
//! # Protocol
//!
//! HTTP/1.1, JSON bodies (`Content-Type: application/json`; a request body
//! is read as JSON whatever its content type). Every answer, errors included,
//! is a JSON object; an error's is `{"error": "<what is wrong>"}`.
//!
//! | method and path | body | answer |
//! |---|---|---|
//! | `GET /v1/ping` | none | `200 {"ok": true, "pid": <the monitor's PID>}`, from the server thread, without the monitor |
//! | `GET /v1/status` | none | the monitor's reply to [`ControlRequest::Status`] |
//! | `POST /v1/start` | `{"workers": ["name", ...], "all": false}` | the monitor's reply to [`ControlRequest::Start`] |
//! | `POST /v1/stop` | the same | the monitor's reply to [`ControlRequest::Stop`] |
//! | `POST /v1/restart` | the same | the monitor's reply to [`ControlRequest::Restart`] |
//! | `POST /v1/reload` | none (ignored) | the monitor's reply to [`ControlRequest::Reload`] |
//!
//! In the selection body ([`api::Selection`]) both fields may be left out
//! (an empty list, `false`); an unknown field is an error. Which names exist,
//! and what an empty selection means, is the monitor's to answer.
//!
//! Status codes the server itself gives:
//!
//! | code | when |
//! |---|---|
//! | 400 | a body that is not the JSON asked for; the message names what is wrong (bounded to 300 bytes) |
//! | 403 | the caller is neither the monitor's user nor root |
//! | 404 | no such route |
//! | 405 | a known path with another method |
//! | 413 | a request body over [`api::MAX_REQUEST_BODY`] (64 KiB) |
//! | 503 | the monitor dropped the request unanswered, or is shutting down |
//! | 504 | the monitor did not answer within the reply timeout |
//!
//! Any other code, and 200, is the monitor's own ([`ControlReply::status`]).
//!
//! # The socket's life
//!
//! [`Server::bind`] refuses a path that exists and is not a socket. A socket
//! that nobody answers (connect refused: its monitor died) is removed and
//! replaced; one that a live process answers makes bind fail ("another
//! monitor serves `<path>`"). Only one monitor acts on a state dir at a time
//! anyway (the lock, ARCHITECTURE.md "Restart"), so that check races with
//! nothing but a dying monitor. Dropping the [`Server`] stops its thread and
//! removes the socket file if it is still the one it bound (same device and
//! inode).

pub mod api;
pub mod challenges;
pub mod client;
pub mod ratelimit;
pub mod server;
mod sse;
pub mod trust;

#[cfg(test)]
mod tests;

use std::path::PathBuf;

pub use api::{ControlReply, ControlRequest};
pub use client::{ClientError, call, monitor_alive, ping};
pub use server::{Pending, Server, ServerOptions};

/// Why the control socket could not be served.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Something exists at the socket's path that is not a socket: it is left
    /// alone.
    #[error("{}: exists and is not a socket; remove it or choose another state dir", .0.display())]
    NotASocket(PathBuf),
    /// A live process answers at the socket's path.
    #[error("another monitor serves {}", .0.display())]
    InUse(PathBuf),
    /// A system call on the socket or its directory failed.
    #[error("{verb} {path}: {source}")]
    Io {
        /// What was being done: "binding", "renaming into place", ...
        verb: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The server thread or its runtime could not be started.
    #[error("starting the control server: {0}")]
    Start(std::io::Error),
}

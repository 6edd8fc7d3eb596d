//! `GET /workers/logs/{id}?follow=1`: a worker's log as Server-Sent
//! Events, one `data:` event per line, its last lines first, then each new
//! line as it is written (through rotations), until the caller goes away.

use std::convert::Infallible;
use std::path::PathBuf;

use axum::body::{Body, Bytes};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use http_body_util::StreamBody;
use hyper::body::Frame;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

/// How many events may wait for a slow reader before the follower waits.
const BACKLOG: usize = 256;

/// One SSE event of a log line, its control characters escaped (so one
/// line is one event).
fn event(line: &str) -> String {
    format!("data: {}\n\n", crate::output::escape_controls(line))
}

/// The response that streams `path`, after `lines` (its last lines, as the
/// monitor read them). A thread follows the file and ends when the caller
/// closed the connection.
pub fn follow(path: PathBuf, lines: Vec<String>) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<String>(BACKLOG);
    let spawned = std::thread::Builder::new()
        .name("pidwatch-log-follow".into())
        .spawn(move || {
            for line in &lines {
                if tx.blocking_send(event(line)).is_err() {
                    return;
                }
            }
            let from = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            let mut partial = String::new();
            let _ = crate::store::worker_log::follow(
                &path,
                from,
                &mut |text| {
                    partial.push_str(text);
                    while let Some(end) = partial.find('\n') {
                        let line: String = partial.drain(..=end).collect();
                        let _ = tx.blocking_send(event(line.trim_end_matches('\n')));
                    }
                },
                &|| tx.is_closed(),
            );
        });
    if spawned.is_err() {
        return (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(super::api::error_body(
                "UNAVAILABLE",
                "cannot start a thread to follow the log",
            )),
        )
            .into_response();
    }
    let stream = ReceiverStream::new(rx).map(|e| Ok::<_, Infallible>(Frame::data(Bytes::from(e))));
    (
        [
            (CONTENT_TYPE, "text/event-stream"),
            (CACHE_CONTROL, "no-cache"),
        ],
        Body::new(StreamBody::new(stream)),
    )
        .into_response()
}

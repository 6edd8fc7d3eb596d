//! What goes over the control socket: the requests a command makes of the
//! monitor, the monitor's replies, and how each maps to a route and body
//! (the protocol is described in [`crate::control`]).

use serde::{Deserialize, Serialize};

/// `GET`: a liveness probe answered by the server thread itself.
pub const ROUTE_PING: &str = "/v1/ping";
/// `GET`: [`ControlRequest::Status`].
pub const ROUTE_STATUS: &str = "/v1/status";
/// `POST`: [`ControlRequest::Start`].
pub const ROUTE_START: &str = "/v1/start";
/// `POST`: [`ControlRequest::Stop`].
pub const ROUTE_STOP: &str = "/v1/stop";
/// `POST`: [`ControlRequest::Restart`].
pub const ROUTE_RESTART: &str = "/v1/restart";
/// `POST`: [`ControlRequest::Reload`].
pub const ROUTE_RELOAD: &str = "/v1/reload";

/// The largest request body the server reads, in bytes (64 KiB); a larger
/// one is answered 413.
pub const MAX_REQUEST_BODY: usize = 64 * 1024;

/// The largest reply body the client reads, in bytes (16 MiB).
pub const MAX_REPLY_BODY: usize = 16 * 1024 * 1024;

/// What a caller asks of the monitor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "snake_case")]
pub enum ControlRequest {
    /// The monitor's view of every worker, as of its last pass: `GET
    /// /v1/status` (pidwatch's own commands).
    Status,
    /// The same, from a report at most a second old (`GET
    /// /workers/status`): many callers a second cost the monitor one
    /// report a second.
    StatusRecent,
    /// Start the named workers, or all of them: `POST /v1/start`.
    Start {
        /// Worker names, as the configuration spells them.
        workers: Vec<String>,
        /// Every configured worker, whatever `workers` names.
        all: bool,
    },
    /// Stop the named workers, or all of them: `POST /v1/stop`.
    Stop {
        /// Worker names, as the configuration spells them.
        workers: Vec<String>,
        /// Every configured worker, whatever `workers` names.
        all: bool,
    },
    /// Restart the named workers, or all of them: `POST /v1/restart`
    /// (`pidwatch restart`), `POST /workers/restart/{id}` and
    /// `/workers/restart-all`.
    Restart {
        /// Worker names, as the configuration spells them.
        workers: Vec<String>,
        /// Every configured worker, whatever `workers` names.
        all: bool,
        /// The start counts against each worker's restart cap, like any
        /// restart (the API's); else it clears the count, as a start by
        /// hand does (`pidwatch restart`).
        #[serde(default)]
        counted: bool,
    },
    /// Read the configuration again: `POST /v1/reload`.
    Reload,
    /// The last lines of a worker's log: `GET /workers/logs/{id}?lines=N`.
    Logs {
        /// The worker id.
        worker: String,
        /// How many lines, at most.
        lines: usize,
    },
    /// The journal: `GET /workers/history?worker=&limit=`.
    History {
        /// One worker's events only.
        worker: Option<String>,
        /// The newest this many.
        limit: usize,
    },
    /// Restart what failed: `POST /workers/heal`.
    Heal {
        /// Plan only, or carry it out.
        mode: HealMode,
        /// Why, as the caller says (bounded).
        reason: Option<String>,
        /// Who asks (`X-Caller-Id`), for the record.
        caller: Option<String>,
    },
    /// The Prometheus metrics: `GET /metrics`.
    Metrics,
}

/// What a heal does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealMode {
    /// Return the steps; change nothing.
    Plan,
    /// Carry the steps out.
    Execute,
}

/// The body of `POST /v1/start`, `/v1/stop` and `/v1/restart`:
/// `{"workers": ["a", "b"], "all": false}`. Both fields may be left out
/// (an empty list, `false`); unknown fields are refused.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Selection {
    /// Worker names.
    #[serde(default)]
    pub workers: Vec<String>,
    /// Every configured worker.
    #[serde(default)]
    pub all: bool,
}

/// An HTTP method the protocol uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `GET`: no body.
    Get,
    /// `POST`: a JSON body, or none.
    Post,
}

impl ControlRequest {
    /// The method and path that carry this request.
    pub fn route(&self) -> (Method, &'static str) {
        match self {
            ControlRequest::Status => (Method::Get, ROUTE_STATUS),
            ControlRequest::StatusRecent => (Method::Get, "/workers/status"),
            ControlRequest::Start { .. } => (Method::Post, ROUTE_START),
            ControlRequest::Stop { .. } => (Method::Post, ROUTE_STOP),
            ControlRequest::Restart { .. } => (Method::Post, ROUTE_RESTART),
            ControlRequest::Reload => (Method::Post, ROUTE_RELOAD),
            ControlRequest::Logs { .. } => (Method::Get, "/workers/logs"),
            ControlRequest::History { .. } => (Method::Get, "/workers/history"),
            ControlRequest::Heal { .. } => (Method::Post, "/workers/heal"),
            ControlRequest::Metrics => (Method::Get, "/metrics"),
        }
    }

    /// The JSON body that carries this request, if it has one: a
    /// [`Selection`] for start, stop and restart; `{"mode", "reason"}` for
    /// a heal.
    pub fn body(&self) -> Option<serde_json::Value> {
        match self {
            ControlRequest::Start { workers, all }
            | ControlRequest::Stop { workers, all }
            | ControlRequest::Restart { workers, all, .. } => serde_json::to_value(Selection {
                workers: workers.clone(),
                all: *all,
            })
            .ok(),
            ControlRequest::Heal { mode, reason, .. } => {
                let mut body = serde_json::json!({ "mode": mode });
                if let Some(reason) = reason {
                    body["reason"] = reason.clone().into();
                }
                Some(body)
            }
            _ => None,
        }
    }
}

/// The monitor's answer: an HTTP status and a JSON body (or, for
/// [`ControlRequest::Metrics`], a text one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControlReply {
    /// The HTTP status code (100..=999; anything else is sent as 500).
    pub status: u16,
    /// The JSON body.
    pub body: serde_json::Value,
    /// A body that is not JSON: its content type and text, sent instead
    /// of `body`.
    #[serde(skip)]
    pub text: Option<(&'static str, String)>,
}

impl ControlReply {
    /// A `200 OK` reply carrying `body`.
    pub fn ok(body: serde_json::Value) -> ControlReply {
        ControlReply {
            status: 200,
            body,
            text: None,
        }
    }

    /// A `200 OK` reply carrying `text` of `content_type`.
    pub fn text(content_type: &'static str, text: String) -> ControlReply {
        ControlReply {
            status: 200,
            body: serde_json::Value::Null,
            text: Some((content_type, text)),
        }
    }

    /// An error reply: `status` with `{"error": {"code": ..., "message":
    /// message}}`, the code named after the status ([`error_code`]).
    pub fn error(status: u16, message: impl Into<String>) -> ControlReply {
        ControlReply {
            status,
            body: error_body(error_code(status), &message.into()),
            text: None,
        }
    }

    /// The error's message of the body, if it carries one (also the older
    /// `{"error": "..."}`).
    pub fn error_message(&self) -> Option<&str> {
        let error = self.body.get("error")?;
        error
            .as_str()
            .or_else(|| error.get("message").and_then(serde_json::Value::as_str))
    }
}

/// `{"error": {"code": code, "message": message}}`.
pub fn error_body(code: &str, message: &str) -> serde_json::Value {
    serde_json::json!({ "error": { "code": code, "message": message } })
}

/// The stable code of an error status: `BAD_REQUEST`, `UNAUTHORIZED`,
/// `FORBIDDEN`, `NOT_FOUND`, `METHOD_NOT_ALLOWED`, `CONFLICT`,
/// `PAYLOAD_TOO_LARGE`, `RATE_LIMITED`, `UNAVAILABLE`, `TIMEOUT`, else
/// `ERROR`.
pub fn error_code(status: u16) -> &'static str {
    match status {
        400 => "BAD_REQUEST",
        401 => "UNAUTHORIZED",
        403 => "FORBIDDEN",
        404 => "NOT_FOUND",
        405 => "METHOD_NOT_ALLOWED",
        409 => "CONFLICT",
        413 => "PAYLOAD_TOO_LARGE",
        429 => "RATE_LIMITED",
        503 => "UNAVAILABLE",
        504 => "TIMEOUT",
        _ => "ERROR",
    }
}

/// `text` cut to at most `max` bytes (at a character boundary), with `…`
/// appended when cut: messages that quote what a caller sent stay bounded.
pub(crate) fn bounded(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

//! Who may read, and who may change, through the control API: the decision
//! taken on each request before it reaches the monitor ([`admit`]).
//!
//! # The rules
//!
//! - **Reading** (`GET`, `HEAD`) needs a caller the transport admits. On the
//!   control socket that is the monitor's own user or root, by its peer uid
//!   (`SO_PEERCRED`); any other user is refused (403) whatever it presents.
//!   On TCP it is a caller with the bearer token (or the automation
//!   secret); when the config sets neither (allowed on a loopback `listen`
//!   only), any loopback caller reads, and a caller from elsewhere is
//!   refused (403).
//! - **Every other method mutates**, and needs in addition to be
//!   *trusted* or *confirmed*. A caller names itself with `X-Caller-Id`; it
//!   is trusted when that id is in the config's `trusted_callers` and it
//!   holds a valid credential: the peer uid, the bearer token, or the
//!   automation secret. The pidwatch commands themselves (`start`, `stop`,
//!   `restart` asking the monitor) name themselves [`CLI_CALLER_ID`] and are
//!   trusted on the control socket by the peer uid alone: its user can run
//!   them anyway.
//! - **Anyone else** is given a confirmation challenge (`403
//!   CONFIRMATION_REQUIRED`, [`ChallengeStore`]). Repeating the same call
//!   (method, path and body) with `X-Confirmed: token:<id>` before the
//!   challenge expires carries it out, once; a reused, expired, misdirected
//!   or unknown challenge is refused (403).
//! - **A credential presented and wrong** is refused (401), whatever else
//!   the caller could have done without it: a wrong bearer token, a bearer
//!   token where none is configured, a wrong secret.
//!
//! Secrets are compared in constant time on their SHA-256 digests
//! ([`Secret`]), which hides their length as well as their bytes; only the
//! digest of a configured secret is kept in memory.
//!
//! # Shape
//!
//! [`admit`] takes the policy (from the config), the facts of one request
//! as plain values ([`RequestFacts`]: headers as bytes, the peer, the
//! body), the challenge store and `now`, and returns an [`Admission`]: who
//! the caller is and what to do. It does no I/O and reads no clock; the
//! only thing it draws is a fresh challenge's random id.

use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::api::ControlReply;
use super::challenges::{Challenge, ChallengeRefused, ChallengeStore};
use crate::store::audit::{self, AuditRecord, TrustedBy};

/// The header a caller names itself with.
pub const HEADER_CALLER_ID: &str = "x-caller-id";
/// The header that confirms a call: `X-Confirmed: token:<challenge id>`.
pub const HEADER_CONFIRMED: &str = "x-confirmed";
/// The prefix of [`HEADER_CONFIRMED`]'s value.
pub const CONFIRMED_PREFIX: &str = "token:";
/// The id pidwatch's own commands give when they ask the monitor; trusted
/// on the control socket by the peer uid alone.
pub const CLI_CALLER_ID: &str = "pidwatch";
/// The longest caller id that can be trusted, in bytes; a longer one is
/// kept (cut) for the audit only.
pub const MAX_CALLER_ID: usize = audit::MAX_CALLER_ID;

/// The `code` of the 403 answer that carries a challenge.
pub const CODE_CONFIRMATION_REQUIRED: &str = "CONFIRMATION_REQUIRED";
/// The `code` of a 401 answer: a credential is missing or wrong.
pub const CODE_UNAUTHORIZED: &str = "UNAUTHORIZED";
/// The `code` of a 403 answer: this caller may not use the API.
pub const CODE_FORBIDDEN: &str = "FORBIDDEN";
/// The `code` of a 403 answer to a refused confirmation.
pub const CODE_CONFIRMATION_REFUSED: &str = "CONFIRMATION_REFUSED";
/// The `code` of a 503 answer: no challenge could be issued.
pub const CODE_UNAVAILABLE: &str = "UNAVAILABLE";

/// A shared secret (the bearer token, the automation secret), kept as its
/// SHA-256 digest only. Compared in constant time; never shown.
#[derive(Clone)]
pub struct Secret {
    digest: [u8; 32],
}

impl Secret {
    /// The secret whose bytes are `bytes`.
    pub fn new(bytes: &[u8]) -> Secret {
        Secret {
            digest: Sha256::digest(bytes).into(),
        }
    }

    /// Whether `presented` is this secret. Both sides are hashed and the
    /// digests compared in constant time: neither the secret's bytes nor
    /// its length can be learnt from how long a refusal takes.
    pub fn matches(&self, presented: &[u8]) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented).into();
        self.digest.ct_eq(&digest).into()
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Secret) -> bool {
        self.digest.ct_eq(&other.digest).into()
    }
}

impl Eq for Secret {}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Who is at the other end of the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerAddr {
    /// A caller on the control socket, by its uid (`SO_PEERCRED`).
    Uid(u32),
    /// A caller on the TCP listener, by its address.
    Tcp(SocketAddr),
}

impl fmt::Display for PeerAddr {
    /// `uid 1000`, or the address (`127.0.0.1:40312`, `[::1]:40312`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerAddr::Uid(uid) => write!(f, "uid {uid}"),
            PeerAddr::Tcp(addr) => write!(f, "{addr}"),
        }
    }
}

/// The credential a caller proved; at most one is counted, the first of
/// token, secret, peer uid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    /// The monitor's own user or root on the control socket.
    PeerUid(u32),
    /// The bearer token (`Authorization: Bearer …`).
    Token,
    /// The automation secret, in the header the config names.
    Secret,
    /// None.
    None,
}

impl Credential {
    /// How a trusted call was let through on the strength of this
    /// credential; `None` for [`Credential::None`].
    pub fn trusted_by(self) -> Option<TrustedBy> {
        match self {
            Credential::PeerUid(_) => Some(TrustedBy::PeerUid),
            Credential::Token => Some(TrustedBy::Token),
            Credential::Secret => Some(TrustedBy::Secret),
            Credential::None => None,
        }
    }
}

/// The caller of one request, as established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Its `X-Caller-Id`, bounded to [`MAX_CALLER_ID`] bytes and its
    /// control characters escaped (for logs and the audit); `None` when it
    /// gave none (or an empty one).
    pub id: Option<String>,
    /// The credential it proved.
    pub credential: Credential,
    /// Who is at the other end.
    pub peer: PeerAddr,
}

/// The automation secret: the header that carries it, and the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretHeader {
    /// The header's name, lowercase.
    pub name: String,
    /// The secret.
    pub secret: Secret,
}

/// Who is trusted, and with what: from the config's `[api]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustPolicy {
    /// Caller ids that, with a valid credential, execute directly.
    pub trusted_callers: BTreeSet<String>,
    /// The bearer token (`token_file`), if any.
    pub token: Option<Secret>,
    /// The automation secret (`secret_header` and `secret_file`), if any.
    pub secret_header: Option<SecretHeader>,
    /// The monitor's effective uid: it and root are admitted on the control
    /// socket.
    pub monitor_uid: u32,
}

impl TrustPolicy {
    /// The policy of a config's `[api]` table, for a monitor running as
    /// `monitor_uid`.
    pub fn from_config(api: &crate::source::config::ApiConfig, monitor_uid: u32) -> TrustPolicy {
        TrustPolicy {
            trusted_callers: api.trusted_callers.clone(),
            token: api.token.clone(),
            secret_header: api.secret.clone(),
            monitor_uid,
        }
    }

    /// Whether a TCP caller must prove a credential to be served at all:
    /// the config sets a token or a secret.
    fn tcp_needs_credential(&self) -> bool {
        self.token.is_some() || self.secret_header.is_some()
    }
}

/// What [`admit`] is told about one request; every header as the raw bytes
/// received, `None` when absent. A header given more than once should be
/// refused (400) before this is built: which copy counts is not this
/// module's guess.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts<'a> {
    /// The method, e.g. `POST`.
    pub method: &'a str,
    /// The path, without the query, e.g. `/v1/restart`.
    pub path: &'a str,
    /// The body (a challenge is bound to it).
    pub body: &'a [u8],
    /// Who is at the other end.
    pub peer: PeerAddr,
    /// `X-Caller-Id`.
    pub caller_id: Option<&'a [u8]>,
    /// `Authorization`, whole (`Bearer <token>`).
    pub authorization: Option<&'a [u8]>,
    /// The value of the header [`TrustPolicy::secret_header`] names.
    pub secret: Option<&'a [u8]>,
    /// `X-Confirmed`.
    pub confirmed: Option<&'a [u8]>,
}

/// A refusal: the status, a stable code, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// 401, 403, or 503 (no challenge could be issued).
    pub status: u16,
    /// [`CODE_UNAUTHORIZED`], [`CODE_FORBIDDEN`],
    /// [`CODE_CONFIRMATION_REFUSED`] or [`CODE_UNAVAILABLE`].
    pub code: &'static str,
    /// What is wrong and what to do, for the caller.
    pub message: String,
}

impl Refusal {
    fn unauthorized(message: impl Into<String>) -> Refusal {
        Refusal {
            status: 401,
            code: CODE_UNAUTHORIZED,
            message: message.into(),
        }
    }

    fn forbidden(message: impl Into<String>) -> Refusal {
        Refusal {
            status: 403,
            code: CODE_FORBIDDEN,
            message: message.into(),
        }
    }

    fn confirmation(why: ChallengeRefused) -> Refusal {
        Refusal {
            status: 403,
            code: CODE_CONFIRMATION_REFUSED,
            message: why.to_string(),
        }
    }
}

/// What to do with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// A read by an admitted caller: serve it.
    Read,
    /// A mutating call by a trusted caller with a valid credential
    /// ([`Caller::credential`] says which): carry it out.
    Trusted,
    /// A mutating call that must be confirmed: answer 403 with this
    /// challenge ([`Admission::refusal_reply`]).
    NeedsConfirmation(Challenge),
    /// A mutating call confirmed with this challenge (now spent): carry it
    /// out.
    Confirmed(String),
    /// Refused: answer with it.
    Refused(Refusal),
}

/// The outcome of [`admit`]: who called, and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    /// The caller.
    pub caller: Caller,
    /// What to do.
    pub decision: Decision,
}

impl Admission {
    /// Whether the request is to be served (read, or carried out).
    pub fn proceeds(&self) -> bool {
        matches!(
            self.decision,
            Decision::Read | Decision::Trusted | Decision::Confirmed(_)
        )
    }

    /// How a mutating call was let through, for the audit:
    /// [`TrustedBy::Refused`] when it was not; `None` for a read (reads are
    /// not audited).
    pub fn trusted_by(&self) -> Option<TrustedBy> {
        match &self.decision {
            Decision::Read => None,
            Decision::Trusted => self.caller.credential.trusted_by(),
            Decision::Confirmed(_) => Some(TrustedBy::Confirmation),
            Decision::NeedsConfirmation(_) | Decision::Refused(_) => Some(TrustedBy::Refused),
        }
    }

    /// The answer to give instead of serving the request, when it does not
    /// proceed: the challenge (403, `{"code": "CONFIRMATION_REQUIRED",
    /// "challenge": {...}, "error": ...}`) or the refusal (`{"code": ...,
    /// "error": ...}`). A 401 should carry `WWW-Authenticate: Bearer`.
    pub fn refusal_reply(&self) -> Option<ControlReply> {
        match &self.decision {
            Decision::Read | Decision::Trusted | Decision::Confirmed(_) => None,
            Decision::NeedsConfirmation(challenge) => Some(ControlReply {
                status: 403,
                text: None,
                body: serde_json::json!({
                    "code": CODE_CONFIRMATION_REQUIRED,
                    "challenge": challenge,
                    "error": {"code": CODE_CONFIRMATION_REQUIRED, "message": format!(
                        "confirmation required: repeat this {} {} with the same body and \
                         the header `X-Confirmed: {CONFIRMED_PREFIX}{}` before {}",
                        challenge.method,
                        challenge.path,
                        challenge.id,
                        crate::store::statedb::format_time(challenge.expires_at),
                    )},
                }),
            }),
            Decision::Refused(refusal) => Some(ControlReply {
                status: refusal.status,
                text: None,
                body: serde_json::json!({
                    "code": refusal.code,
                    "error": {"code": refusal.code, "message": refusal.message},
                }),
            }),
        }
    }

    /// The audit record of this mutating call, answered at `at` with
    /// `status` and `result` (`executed`, what failed, or the refusal's
    /// message); `target` is what it acts on, when it names anything.
    pub fn audit_record(
        &self,
        facts: &RequestFacts<'_>,
        at: DateTime<Utc>,
        target: Option<String>,
        status: u16,
        result: &str,
    ) -> AuditRecord {
        AuditRecord {
            at,
            caller_id: self.caller.id.clone(),
            trusted_by: self.trusted_by().unwrap_or(TrustedBy::Refused),
            peer: self.caller.peer.to_string(),
            method: facts.method.to_string(),
            path: facts.path.to_string(),
            target,
            status,
            result: result.to_string(),
        }
        .bounded()
    }
}

/// Whether `id` can be a trusted caller's id: 1 to [`MAX_CALLER_ID`] bytes
/// of visible ASCII (no space, no control character).
pub fn is_valid_caller_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_CALLER_ID && id.bytes().all(|b| b.is_ascii_graphic())
}

/// Whether a method only reads.
pub fn is_read(method: &str) -> bool {
    method == "GET" || method == "HEAD"
}

/// Decides what to do with one request (the rules are in the module's
/// documentation). A challenge is issued, or redeemed, in `challenges` at
/// `now`.
pub fn admit(
    policy: &TrustPolicy,
    facts: &RequestFacts<'_>,
    challenges: &mut ChallengeStore,
    now: DateTime<Utc>,
) -> Admission {
    let raw_id = facts.caller_id.filter(|id| !id.is_empty());
    let mut caller = Caller {
        id: raw_id.map(|id| audit::clean(&String::from_utf8_lossy(id), MAX_CALLER_ID)),
        credential: Credential::None,
        peer: facts.peer,
    };
    let decision = decide(policy, facts, raw_id, &mut caller, challenges, now);
    Admission { caller, decision }
}

fn decide(
    policy: &TrustPolicy,
    facts: &RequestFacts<'_>,
    raw_id: Option<&[u8]>,
    caller: &mut Caller,
    challenges: &mut ChallengeStore,
    now: DateTime<Utc>,
) -> Decision {
    // Who is at the other end, first: a stranger on the socket is refused
    // whatever it presents.
    let peer_credential = match facts.peer {
        PeerAddr::Uid(uid) if uid == policy.monitor_uid || uid == 0 => Credential::PeerUid(uid),
        PeerAddr::Uid(uid) => {
            return Decision::Refused(Refusal::forbidden(format!(
                "user {uid} may not use this monitor's control socket (only its own user and \
                 root may)"
            )));
        }
        PeerAddr::Tcp(_) => Credential::None,
    };
    caller.credential = match credential(policy, facts) {
        Ok(Credential::None) => peer_credential,
        Ok(presented) => presented,
        Err(refusal) => return Decision::Refused(refusal),
    };
    if let PeerAddr::Tcp(addr) = facts.peer {
        if policy.tcp_needs_credential() {
            if caller.credential == Credential::None {
                let how = match &policy.secret_header {
                    Some(h) if policy.token.is_none() => format!("the header {}", h.name),
                    _ => "`Authorization: Bearer <token>`".to_string(),
                };
                return Decision::Refused(Refusal::unauthorized(format!(
                    "this listener needs a credential: {how}"
                )));
            }
        } else if !addr.ip().to_canonical().is_loopback() {
            return Decision::Refused(Refusal::forbidden(
                "without a token this listener serves loopback callers only",
            ));
        }
    }
    if is_read(facts.method) {
        return Decision::Read;
    }
    let id = raw_id.and_then(|id| std::str::from_utf8(id).ok());
    let trusted_id = id.is_some_and(|id| {
        is_valid_caller_id(id)
            && (policy.trusted_callers.contains(id)
                || (id == CLI_CALLER_ID && matches!(caller.credential, Credential::PeerUid(_))))
    });
    if trusted_id && caller.credential != Credential::None {
        return Decision::Trusted;
    }
    if let Some(value) = facts.confirmed {
        let token = std::str::from_utf8(value)
            .ok()
            .map(str::trim)
            .and_then(|v| v.strip_prefix(CONFIRMED_PREFIX))
            .map(str::trim);
        let Some(token) = token else {
            return Decision::Refused(Refusal {
                status: 403,
                code: CODE_CONFIRMATION_REFUSED,
                message: format!(
                    "X-Confirmed must be `{CONFIRMED_PREFIX}<challenge id>`, as the challenge said"
                ),
            });
        };
        return match challenges.redeem(token, facts.method, facts.path, facts.body, now) {
            Ok(()) => Decision::Confirmed(token.to_string()),
            Err(why) => Decision::Refused(Refusal::confirmation(why)),
        };
    }
    match challenges.issue(facts.method, facts.path, facts.body, now) {
        Ok(challenge) => Decision::NeedsConfirmation(challenge),
        Err(e) => Decision::Refused(Refusal {
            status: 503,
            code: CODE_UNAVAILABLE,
            message: format!("no confirmation challenge could be issued: {e}"),
        }),
    }
}

/// The credential the request's headers prove: the token, else the secret,
/// else none.
///
/// Errors: a credential presented and wrong (401).
fn credential(policy: &TrustPolicy, facts: &RequestFacts<'_>) -> Result<Credential, Refusal> {
    let mut proved = Credential::None;
    if let Some(secret) = facts.secret {
        let valid = policy
            .secret_header
            .as_ref()
            .is_some_and(|h| h.secret.matches(secret.trim_ascii()));
        if !valid {
            return Err(Refusal::unauthorized("invalid secret"));
        }
        proved = Credential::Secret;
    }
    if let Some(authorization) = facts.authorization {
        let token = bearer(authorization).ok_or_else(|| {
            Refusal::unauthorized("the Authorization header must be `Bearer <token>`")
        })?;
        match &policy.token {
            None => {
                return Err(Refusal::unauthorized(
                    "a bearer token was given, but this monitor has none (no token_file)",
                ));
            }
            Some(expected) if expected.matches(token) => proved = Credential::Token,
            Some(_) => return Err(Refusal::unauthorized("invalid token")),
        }
    }
    Ok(proved)
}

/// The token of `Bearer <token>` (the scheme in any case), trimmed;
/// `None` for another scheme or an empty token.
fn bearer(value: &[u8]) -> Option<&[u8]> {
    let value = value.trim_ascii();
    let split = value.iter().position(u8::is_ascii_whitespace)?;
    let (scheme, token) = value.split_at(split);
    let token = token.trim_ascii();
    (scheme.eq_ignore_ascii_case(b"bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests;

use super::*;
use crate::control::challenges::DEFAULT_TTL;
use chrono::TimeDelta;

const MONITOR: u32 = 1000;
const TOKEN: &[u8] = b"s3cret-token-0123456789";
const SECRET: &[u8] = b"automation-secret";
const BODY: &[u8] = br#"{"workers": ["code@1"]}"#;

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-01T10:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

/// The policy of a config with a token, a secret header and one trusted
/// caller, `claude-opus`.
fn policy() -> TrustPolicy {
    TrustPolicy {
        trusted_callers: ["claude-opus".to_string()].into(),
        token: Some(Secret::new(TOKEN)),
        secret_header: Some(SecretHeader {
            name: "x-automation-secret".into(),
            secret: Secret::new(SECRET),
        }),
        monitor_uid: MONITOR,
    }
}

/// A policy with no credential configured (a loopback listener).
fn open_policy() -> TrustPolicy {
    TrustPolicy {
        token: None,
        secret_header: None,
        ..policy()
    }
}

fn socket(uid: u32) -> PeerAddr {
    PeerAddr::Uid(uid)
}

fn tcp(addr: &str) -> PeerAddr {
    PeerAddr::Tcp(addr.parse().unwrap())
}

fn facts<'a>(method: &'a str, path: &'a str, peer: PeerAddr) -> RequestFacts<'a> {
    RequestFacts {
        method,
        path,
        body: BODY,
        peer,
        caller_id: None,
        authorization: None,
        secret: None,
        confirmed: None,
    }
}

fn post(peer: PeerAddr) -> RequestFacts<'static> {
    facts("POST", "/v1/restart", peer)
}

struct Gate {
    policy: TrustPolicy,
    challenges: ChallengeStore,
}

impl Gate {
    fn new(policy: TrustPolicy) -> Gate {
        Gate {
            policy,
            challenges: ChallengeStore::new(DEFAULT_TTL),
        }
    }

    fn admit(&mut self, facts: &RequestFacts<'_>) -> Admission {
        self.admit_at(facts, t0())
    }

    fn admit_at(&mut self, facts: &RequestFacts<'_>, now: DateTime<Utc>) -> Admission {
        admit(&self.policy, facts, &mut self.challenges, now)
    }

    fn decide(&mut self, facts: &RequestFacts<'_>) -> Decision {
        self.admit(facts).decision
    }

    /// The challenge an untrusted `facts` is given.
    fn challenge(&mut self, facts: &RequestFacts<'_>) -> Challenge {
        match self.decide(facts) {
            Decision::NeedsConfirmation(c) => c,
            other => panic!("no challenge: {other:?}"),
        }
    }
}

fn refused(decision: Decision) -> Refusal {
    match decision {
        Decision::Refused(r) => r,
        other => panic!("not refused: {other:?}"),
    }
}

fn confirmed(id: &str) -> Vec<u8> {
    format!("token:{id}").into_bytes()
}

#[test]
fn the_monitors_user_and_root_read_on_the_socket() {
    let mut gate = Gate::new(policy());
    for uid in [MONITOR, 0] {
        let a = gate.admit(&facts("GET", "/v1/status", socket(uid)));
        assert_eq!(a.decision, Decision::Read);
        assert_eq!(a.caller.credential, Credential::PeerUid(uid));
        assert_eq!(a.caller.peer.to_string(), format!("uid {uid}"));
        assert!(a.proceeds());
        assert_eq!(a.trusted_by(), None, "reads are not audited");
        assert_eq!(a.refusal_reply(), None);
    }
}

#[test]
fn another_uid_is_refused_whatever_it_presents() {
    let mut gate = Gate::new(policy());
    for method in ["GET", "POST"] {
        let mut f = facts(method, "/v1/restart", socket(1001));
        f.caller_id = Some(b"claude-opus");
        f.authorization = Some(b"Bearer s3cret-token-0123456789");
        let a = gate.admit(&f);
        let r = refused(a.decision.clone());
        assert_eq!((r.status, r.code), (403, CODE_FORBIDDEN));
        assert!(r.message.contains("user 1001"), "{}", r.message);
        assert!(!a.proceeds());
        let reply = a.refusal_reply().unwrap();
        assert_eq!(reply.status, 403);
        assert_eq!(reply.body["code"], "FORBIDDEN");
        assert_eq!(reply.error_message(), Some(r.message.as_str()));
    }
    assert!(gate.challenges.is_empty());
}

#[test]
fn no_credential_on_tcp_is_401() {
    let mut gate = Gate::new(policy());
    for method in ["GET", "POST"] {
        let mut f = facts(method, "/v1/status", tcp("127.0.0.1:40000"));
        f.caller_id = Some(b"claude-opus");
        let r = refused(gate.decide(&f));
        assert_eq!((r.status, r.code), (401, CODE_UNAUTHORIZED));
        assert!(r.message.contains("Authorization: Bearer"), "{}", r.message);
    }
    // With only a secret configured, the message names its header.
    let mut gate = Gate::new(TrustPolicy {
        token: None,
        ..policy()
    });
    let r = refused(gate.decide(&facts("GET", "/v1/status", tcp("127.0.0.1:1"))));
    assert!(r.message.contains("x-automation-secret"), "{}", r.message);
}

#[test]
fn the_token_or_the_secret_reads_on_tcp() {
    let mut gate = Gate::new(policy());
    let mut f = facts("GET", "/v1/status", tcp("192.0.2.7:40000"));
    f.authorization = Some(b"Bearer s3cret-token-0123456789");
    let a = gate.admit(&f);
    assert_eq!(a.decision, Decision::Read);
    assert_eq!(a.caller.credential, Credential::Token);
    assert_eq!(a.caller.peer.to_string(), "192.0.2.7:40000");
    // The scheme in any case, spaces around the token.
    f.authorization = Some(b"  bearer   s3cret-token-0123456789 ");
    assert_eq!(gate.decide(&f), Decision::Read);
    let mut f = facts("GET", "/v1/status", tcp("[::1]:40000"));
    f.secret = Some(SECRET);
    let a = gate.admit(&f);
    assert_eq!(a.decision, Decision::Read);
    assert_eq!(a.caller.credential, Credential::Secret);
    assert_eq!(a.caller.peer.to_string(), "[::1]:40000");
}

#[test]
fn a_wrong_token_is_refused_even_of_the_right_length() {
    let mut gate = Gate::new(policy());
    let mut right_length = TOKEN.to_vec();
    *right_length.last_mut().unwrap() ^= 1;
    let right_length = [b"Bearer ".as_slice(), &right_length].concat();
    let wrong: [&[u8]; 6] = [
        &right_length,
        b"Bearer s3cret-token-012345678",
        b"Bearer s3cret-token-01234567890",
        b"Bearer ",
        b"Basic czNjcmV0",
        b"s3cret-token-0123456789",
    ];
    for peer in [tcp("127.0.0.1:1"), socket(MONITOR)] {
        for method in ["GET", "POST"] {
            for authorization in wrong {
                let mut f = facts(method, "/v1/restart", peer);
                f.caller_id = Some(b"claude-opus");
                f.authorization = Some(authorization);
                let r = refused(gate.decide(&f));
                assert_eq!(
                    r.status,
                    401,
                    "{:?}",
                    String::from_utf8_lossy(authorization)
                );
                assert!(!r.message.contains("s3cret"), "{}", r.message);
            }
        }
    }
    assert!(gate.challenges.is_empty());
}

#[test]
fn a_wrong_secret_is_refused() {
    let mut gate = Gate::new(policy());
    for secret in [
        b"automation-secreT".as_slice(),
        b"",
        b"automation-secret-and-more",
    ] {
        let mut f = post(tcp("127.0.0.1:1"));
        f.secret = Some(secret);
        f.caller_id = Some(b"claude-opus");
        let r = refused(gate.decide(&f));
        assert_eq!((r.status, r.message.as_str()), (401, "invalid secret"));
    }
}

#[test]
fn a_token_where_none_is_configured_is_refused() {
    let mut gate = Gate::new(open_policy());
    let mut f = facts("GET", "/v1/status", socket(MONITOR));
    f.authorization = Some(b"Bearer anything");
    let r = refused(gate.decide(&f));
    assert_eq!(r.status, 401);
    assert!(r.message.contains("no token_file"), "{}", r.message);
}

#[test]
fn trusted_by_peer_uid() {
    let mut gate = Gate::new(policy());
    let mut f = post(socket(MONITOR));
    f.caller_id = Some(b"claude-opus");
    let a = gate.admit(&f);
    assert_eq!(a.decision, Decision::Trusted);
    assert_eq!(a.caller.id.as_deref(), Some("claude-opus"));
    assert_eq!(a.trusted_by(), Some(TrustedBy::PeerUid));
    assert!(a.proceeds());
    assert_eq!(a.refusal_reply(), None);
    // Root too.
    f.peer = socket(0);
    assert_eq!(gate.decide(&f), Decision::Trusted);
    assert!(gate.challenges.is_empty());
}

#[test]
fn trusted_by_token() {
    let mut gate = Gate::new(policy());
    let mut f = post(tcp("192.0.2.7:40000"));
    f.caller_id = Some(b"claude-opus");
    f.authorization = Some(b"Bearer s3cret-token-0123456789");
    let a = gate.admit(&f);
    assert_eq!(a.decision, Decision::Trusted);
    assert_eq!(a.trusted_by(), Some(TrustedBy::Token));
    // On the socket the token is counted before the peer uid.
    f.peer = socket(MONITOR);
    assert_eq!(gate.admit(&f).trusted_by(), Some(TrustedBy::Token));
}

#[test]
fn trusted_by_secret() {
    let mut gate = Gate::new(policy());
    let mut f = post(tcp("127.0.0.1:40000"));
    f.caller_id = Some(b"claude-opus");
    f.secret = Some(b" automation-secret ");
    let a = gate.admit(&f);
    assert_eq!(a.decision, Decision::Trusted);
    assert_eq!(a.trusted_by(), Some(TrustedBy::Secret));
}

#[test]
fn pidwatchs_own_commands_are_trusted_on_the_socket_only() {
    let mut gate = Gate::new(policy());
    let mut f = post(socket(MONITOR));
    f.caller_id = Some(CLI_CALLER_ID.as_bytes());
    assert_eq!(gate.decide(&f), Decision::Trusted);
    f.peer = tcp("127.0.0.1:1");
    f.authorization = Some(b"Bearer s3cret-token-0123456789");
    assert!(matches!(gate.decide(&f), Decision::NeedsConfirmation(_)));
}

#[test]
fn an_untrusted_caller_needs_confirmation() {
    let mut gate = Gate::new(policy());
    let ids: [Option<&[u8]>; 4] = [
        None,
        Some(b""),
        Some(b"gpt-something"),
        Some(b"Claude-Opus"),
    ];
    for id in ids {
        let mut f = post(socket(MONITOR));
        f.caller_id = id;
        let a = gate.admit(&f);
        let Decision::NeedsConfirmation(c) = &a.decision else {
            panic!("{:?}", a.decision);
        };
        assert_eq!(
            (c.method.as_str(), c.path.as_str()),
            ("POST", "/v1/restart")
        );
        assert_eq!(c.expires_at, t0() + TimeDelta::seconds(120));
        assert_eq!(a.trusted_by(), Some(TrustedBy::Refused));
        assert!(!a.proceeds());
        let reply = a.refusal_reply().unwrap();
        assert_eq!(reply.status, 403);
        assert_eq!(reply.body["code"], "CONFIRMATION_REQUIRED");
        assert_eq!(reply.body["challenge"]["id"], c.id.as_str());
        assert_eq!(reply.body["challenge"]["expiresAt"], "2026-03-01T10:02:00Z");
        assert_eq!(reply.body["challenge"]["method"], "POST");
        assert_eq!(reply.body["challenge"]["path"], "/v1/restart");
        let message = reply.error_message().unwrap();
        assert!(
            message.contains(&format!("X-Confirmed: token:{}", c.id)),
            "{message}"
        );
    }
    // A trusted id without a credential (a loopback listener with no token)
    // is not trusted.
    let mut gate = Gate::new(open_policy());
    let mut f = post(tcp("127.0.0.1:1"));
    f.caller_id = Some(b"claude-opus");
    let a = gate.admit(&f);
    assert_eq!(a.caller.credential, Credential::None);
    assert!(matches!(a.decision, Decision::NeedsConfirmation(_)));
}

#[test]
fn confirmed_once_then_refused() {
    let mut gate = Gate::new(policy());
    let mut f = post(socket(MONITOR));
    f.caller_id = Some(b"gpt-something");
    let c = gate.challenge(&f);
    let token = confirmed(&c.id);
    f.confirmed = Some(&token);
    let at = t0() + TimeDelta::seconds(119);
    let a = gate.admit_at(&f, at);
    assert_eq!(a.decision, Decision::Confirmed(c.id.clone()));
    assert_eq!(a.trusted_by(), Some(TrustedBy::Confirmation));
    assert!(a.proceeds());
    let r = refused(gate.admit_at(&f, at).decision);
    assert_eq!((r.status, r.code), (403, CODE_CONFIRMATION_REFUSED));
    assert!(r.message.contains("used already"), "{}", r.message);
}

#[test]
fn an_expired_challenge_is_refused() {
    let mut gate = Gate::new(policy());
    let mut f = post(socket(MONITOR));
    let c = gate.challenge(&f);
    let token = confirmed(&c.id);
    f.confirmed = Some(&token);
    let r = refused(gate.admit_at(&f, t0() + TimeDelta::seconds(120)).decision);
    assert_eq!(r.status, 403);
    assert!(r.message.contains("expired"), "{}", r.message);
}

#[test]
fn a_challenge_for_another_call_is_refused() {
    let mut gate = Gate::new(policy());
    let other_body = br#"{"all": true}"#;
    for (method, path, body) in [
        ("POST", "/v1/stop", BODY),
        ("DELETE", "/v1/restart", BODY),
        ("POST", "/v1/restart", other_body.as_slice()),
    ] {
        let c = gate.challenge(&post(socket(MONITOR)));
        let token = confirmed(&c.id);
        let mut f = facts(method, path, socket(MONITOR));
        f.body = body;
        f.confirmed = Some(&token);
        let r = refused(gate.decide(&f));
        assert_eq!(r.status, 403);
        assert!(r.message.contains("another call"), "{}", r.message);
        // Spent: not good for its own call either.
        let mut own = post(socket(MONITOR));
        own.confirmed = Some(&token);
        assert!(refused(gate.decide(&own)).message.contains("used already"));
    }
}

#[test]
fn unknown_and_malformed_confirmations_are_refused() {
    let mut gate = Gate::new(policy());
    gate.challenge(&post(socket(MONITOR)));
    let values: [&[u8]; 4] = [
        b"token:0123456789abcdef0123456789abcdef",
        b"0123456789abcdef0123456789abcdef",
        b"token:",
        b"\xff\xfe",
    ];
    for value in values {
        let mut f = post(socket(MONITOR));
        f.confirmed = Some(value);
        let r = refused(gate.decide(&f));
        assert_eq!((r.status, r.code), (403, CODE_CONFIRMATION_REFUSED));
    }
}

#[test]
fn a_confirmation_by_another_allowed_caller_works() {
    // The challenge is the caller's to show; it binds the call, not the
    // connection (a client may reconnect between the two).
    let mut gate = Gate::new(policy());
    let c = gate.challenge(&post(socket(MONITOR)));
    let token = confirmed(&c.id);
    let mut f = post(socket(0));
    f.confirmed = Some(&token);
    assert_eq!(gate.decide(&f), Decision::Confirmed(c.id));
}

#[test]
fn a_trusted_caller_does_not_spend_a_challenge() {
    let mut gate = Gate::new(policy());
    let c = gate.challenge(&post(socket(MONITOR)));
    let token = confirmed(&c.id);
    let mut f = post(socket(MONITOR));
    f.caller_id = Some(b"claude-opus");
    f.confirmed = Some(&token);
    assert_eq!(gate.decide(&f), Decision::Trusted);
    f.caller_id = None;
    assert_eq!(gate.decide(&f), Decision::Confirmed(c.id));
}

#[test]
fn without_credentials_tcp_serves_loopback_only() {
    let mut gate = Gate::new(open_policy());
    for peer in ["127.0.0.1:1", "[::1]:1", "[::ffff:127.0.0.1]:1"] {
        assert_eq!(
            gate.decide(&facts("GET", "/v1/status", tcp(peer))),
            Decision::Read
        );
    }
    for peer in ["192.0.2.7:1", "[2001:db8::1]:1"] {
        for method in ["GET", "POST"] {
            let r = refused(gate.decide(&facts(method, "/v1/status", tcp(peer))));
            assert_eq!((r.status, r.code), (403, CODE_FORBIDDEN));
        }
    }
}

#[test]
fn caller_ids_are_bounded_and_escaped_and_then_never_trusted() {
    let mut policy = policy();
    let long = "a".repeat(MAX_CALLER_ID + 1);
    policy.trusted_callers.insert(long.clone());
    policy.trusted_callers.insert("two words".into());
    let mut gate = Gate::new(policy);
    let mut f = post(socket(MONITOR));
    f.caller_id = Some(long.as_bytes());
    let a = gate.admit(&f);
    assert!(matches!(a.decision, Decision::NeedsConfirmation(_)));
    let id = a.caller.id.unwrap();
    assert!(id.len() <= MAX_CALLER_ID + 3 && id.ends_with('…'), "{id}");
    f.caller_id = Some(b"two words");
    assert!(matches!(gate.decide(&f), Decision::NeedsConfirmation(_)));
    f.caller_id = Some(b"claude-opus\n\x1b[31m");
    let a = gate.admit(&f);
    assert!(matches!(a.decision, Decision::NeedsConfirmation(_)));
    assert_eq!(a.caller.id.as_deref(), Some("claude-opus\\u{a}\\u{1b}[31m"));
    f.caller_id = Some(b"\xffclaude-opus");
    let a = gate.admit(&f);
    assert_eq!(a.caller.id.as_deref(), Some("\u{fffd}claude-opus"));
    assert!(matches!(a.decision, Decision::NeedsConfirmation(_)));
    assert!(is_valid_caller_id("claude-opus-4.1@anthropic"));
    for bad in ["", "a b", "tab\there", "é"] {
        assert!(!is_valid_caller_id(bad), "{bad:?}");
    }
}

#[test]
fn the_audit_record_of_each_outcome() {
    let mut gate = Gate::new(policy());
    let mut f = post(tcp("127.0.0.1:40312"));
    f.caller_id = Some(b"claude-opus");
    f.authorization = Some(b"Bearer s3cret-token-0123456789");
    let at = t0() + TimeDelta::seconds(5);
    let a = gate.admit(&f);
    let r = a.audit_record(&f, at, Some("code@1".into()), 200, "executed");
    assert_eq!(
        r,
        AuditRecord {
            at,
            caller_id: Some("claude-opus".into()),
            trusted_by: TrustedBy::Token,
            peer: "127.0.0.1:40312".into(),
            method: "POST".into(),
            path: "/v1/restart".into(),
            target: Some("code@1".into()),
            status: 200,
            result: "executed".into(),
        }
    );
    f.authorization = Some(b"Bearer nope");
    let a = gate.admit(&f);
    let reply = a.refusal_reply().unwrap();
    let r = a.audit_record(&f, at, None, reply.status, reply.error_message().unwrap());
    assert_eq!(r.trusted_by, TrustedBy::Refused);
    assert_eq!((r.status, r.result.as_str()), (401, "invalid token"));
}

#[test]
fn secrets_compare_by_digest_and_never_show() {
    let s = Secret::new(b"abc");
    assert!(s.matches(b"abc"));
    assert!(!s.matches(b"abd"));
    assert!(!s.matches(b"ab"));
    assert!(!s.matches(b""));
    assert_eq!(s, Secret::new(b"abc"));
    assert_ne!(s, Secret::new(b"abd"));
    assert_eq!(format!("{s:?}"), "Secret(***)");
    let p = policy();
    assert!(!format!("{p:?}").contains("s3cret"));
}

#[test]
fn only_get_and_head_read() {
    assert!(is_read("GET") && is_read("HEAD"));
    for m in ["POST", "PUT", "PATCH", "DELETE", "get", "OPTIONS"] {
        assert!(!is_read(m), "{m}");
    }
}

//! Confirmation challenges: what an untrusted caller of a mutating call is
//! given instead of the call, and must hand back to have it carried out.
//!
//! A challenge is bound to the call it was issued for: its method, its path
//! and (a SHA-256 digest of) its body, so that a confirmation of "restart
//! `code@1`" cannot carry out "stop all". It is good once, until its expiry
//! (the TTL, 120 s by default, after it was issued). Its id is 128 bits
//! from getrandom(2): it cannot be guessed, and it is the only thing a
//! caller must show.
//!
//! The store is plain data: the time is passed in, nothing reads the clock.
//! Redeemed challenges are kept, marked used, until they expire, so that a
//! second use is told apart from an unknown id. At most
//! [`MAX_OUTSTANDING`] are kept: expired ones are dropped first, then used
//! ones, then those that expire soonest.

use std::collections::HashMap;
use std::io;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// How long a challenge is good for when the config does not say
/// (`challenge_ttl`): 120 s.
pub const DEFAULT_TTL: Duration = Duration::from_secs(120);

/// The most challenges kept at once, used or not.
pub const MAX_OUTSTANDING: usize = 1000;

/// A challenge as the caller sees it, in the body of the `403
/// CONFIRMATION_REQUIRED` answer: `{"id", "expiresAt", "method", "path"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Challenge {
    /// 32 lowercase hex digits; the caller repeats the call with
    /// `X-Confirmed: token:<id>`.
    pub id: String,
    /// When it stops being good.
    pub expires_at: DateTime<Utc>,
    /// The method of the call it confirms.
    pub method: String,
    /// The path of the call it confirms.
    pub path: String,
}

/// Why a confirmation is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChallengeRefused {
    /// The challenge was used already (each is good once).
    #[error("the challenge was used already; each confirms one call")]
    Reused,
    /// The challenge's time ran out.
    #[error("the challenge expired; repeat the call without X-Confirmed for a new one")]
    Expired,
    /// The challenge was issued for another method, path or body; it is
    /// spent all the same.
    #[error("the challenge was issued for another call (method, path or body)")]
    Misdirected,
    /// No such challenge is known (never issued, or forgotten long after
    /// its expiry).
    #[error("no such challenge")]
    Unknown,
}

#[derive(Debug, Clone)]
struct Entry {
    /// SHA-256 of the method, path and body it was issued for.
    binding: [u8; 32],
    expires_at: DateTime<Utc>,
    used: bool,
}

/// The challenges issued and not yet forgotten.
#[derive(Debug)]
pub struct ChallengeStore {
    ttl: Duration,
    capacity: usize,
    entries: HashMap<String, Entry>,
}

impl ChallengeStore {
    /// A store whose challenges are good for `ttl`, keeping at most
    /// [`MAX_OUTSTANDING`].
    pub fn new(ttl: Duration) -> ChallengeStore {
        ChallengeStore::with_capacity(ttl, MAX_OUTSTANDING)
    }

    /// A store keeping at most `capacity` challenges (at least 1).
    pub fn with_capacity(ttl: Duration, capacity: usize) -> ChallengeStore {
        ChallengeStore {
            ttl,
            capacity: capacity.max(1),
            entries: HashMap::new(),
        }
    }

    /// How long a challenge is good for.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// How many challenges are kept, used ones included.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether none is kept.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Issues a challenge for the call `method path` with `body`, good
    /// until `now` plus the TTL.
    ///
    /// Errors: getrandom(2) fails (it does not on Linux ≥ 3.17 once the
    /// entropy pool is ready): no predictable id is ever handed out.
    pub fn issue(
        &mut self,
        method: &str,
        path: &str,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> io::Result<Challenge> {
        self.forget_expired(now);
        self.make_room();
        let id = loop {
            let id = random_id()?;
            if !self.entries.contains_key(&id) {
                break id;
            }
        };
        let ttl = TimeDelta::from_std(self.ttl).unwrap_or(TimeDelta::MAX);
        let expires_at = now
            .checked_add_signed(ttl)
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        self.entries.insert(
            id.clone(),
            Entry {
                binding: binding(method, path, body),
                expires_at,
                used: false,
            },
        );
        Ok(Challenge {
            id,
            expires_at,
            method: method.to_string(),
            path: path.to_string(),
        })
    }

    /// Redeems challenge `id` for the call `method path` with `body` at
    /// `now`: `Ok` once, for the call it was issued for, before its expiry.
    /// Any redemption of a known, unexpired challenge spends it, a
    /// misdirected one included.
    ///
    /// Errors: [`ChallengeRefused`] says why.
    pub fn redeem(
        &mut self,
        id: &str,
        method: &str,
        path: &str,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<(), ChallengeRefused> {
        let outcome = match self.entries.get_mut(id) {
            None => Err(ChallengeRefused::Unknown),
            Some(entry) if entry.used => Err(ChallengeRefused::Reused),
            Some(entry) if now >= entry.expires_at => Err(ChallengeRefused::Expired),
            Some(entry) => {
                entry.used = true;
                if bool::from(entry.binding.ct_eq(&binding(method, path, body))) {
                    Ok(())
                } else {
                    Err(ChallengeRefused::Misdirected)
                }
            }
        };
        self.forget_expired(now);
        outcome
    }

    /// Drops the challenges expired at `now`.
    fn forget_expired(&mut self, now: DateTime<Utc>) {
        self.entries.retain(|_, e| now < e.expires_at);
    }

    /// When the store is full, drops used challenges, then those that
    /// expire soonest, leaving room for one more.
    fn make_room(&mut self) {
        if self.entries.len() < self.capacity {
            return;
        }
        self.entries.retain(|_, e| !e.used);
        let excess = (self.entries.len() + 1).saturating_sub(self.capacity);
        if excess == 0 {
            return;
        }
        let mut by_expiry: Vec<(DateTime<Utc>, String)> = self
            .entries
            .iter()
            .map(|(id, e)| (e.expires_at, id.clone()))
            .collect();
        by_expiry.sort();
        for (_, id) in by_expiry.into_iter().take(excess) {
            self.entries.remove(&id);
        }
    }
}

/// What a challenge is bound to: SHA-256 over the method, path and body,
/// each length-prefixed so that no two calls share a digest by moving bytes
/// from one part to the next.
fn binding(method: &str, path: &str, body: &[u8]) -> [u8; 32] {
    let mut hash = Sha256::new();
    for part in [method.as_bytes(), path.as_bytes(), body] {
        hash.update((part.len() as u64).to_le_bytes());
        hash.update(part);
    }
    hash.finalize().into()
}

/// 128 bits from getrandom(2) as 32 lowercase hex digits.
fn random_id() -> io::Result<String> {
    let mut bytes = [0u8; 16];
    let mut filled = 0;
    while filled < bytes.len() {
        match rustix::rand::getrandom(&mut bytes[filled..], rustix::rand::GetRandomFlags::empty()) {
            Ok(n) => filled += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-03-01T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn secs(n: i64) -> TimeDelta {
        TimeDelta::seconds(n)
    }

    const BODY: &[u8] = br#"{"workers": ["code@1"]}"#;

    #[test]
    fn a_challenge_confirms_its_call_once() {
        let mut store = ChallengeStore::new(DEFAULT_TTL);
        let c = store.issue("POST", "/v1/restart", BODY, t0()).unwrap();
        assert_eq!(c.method, "POST");
        assert_eq!(c.path, "/v1/restart");
        assert_eq!(c.expires_at, t0() + secs(120));
        assert_eq!(c.id.len(), 32);
        assert!(c.id.chars().all(|ch| ch.is_ascii_hexdigit()));
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(json["expiresAt"], "2026-03-01T10:02:00Z");
        assert_eq!(json["id"], c.id.as_str());

        let at = t0() + secs(119);
        assert_eq!(store.redeem(&c.id, "POST", "/v1/restart", BODY, at), Ok(()));
        assert_eq!(
            store.redeem(&c.id, "POST", "/v1/restart", BODY, at),
            Err(ChallengeRefused::Reused)
        );
    }

    #[test]
    fn ids_are_unpredictable_and_distinct() {
        let mut store = ChallengeStore::new(DEFAULT_TTL);
        let ids: std::collections::BTreeSet<String> = (0..500)
            .map(|_| store.issue("POST", "/v1/stop", b"", t0()).unwrap().id)
            .collect();
        assert_eq!(ids.len(), 500);
    }

    #[test]
    fn an_expired_challenge_is_refused() {
        let mut store = ChallengeStore::new(Duration::from_secs(120));
        let c = store.issue("POST", "/v1/stop", BODY, t0()).unwrap();
        assert_eq!(
            store.redeem(&c.id, "POST", "/v1/stop", BODY, t0() + secs(120)),
            Err(ChallengeRefused::Expired)
        );
        // Expired and so dropped: later it is unknown.
        assert_eq!(
            store.redeem(&c.id, "POST", "/v1/stop", BODY, t0() + secs(121)),
            Err(ChallengeRefused::Unknown)
        );
        assert!(store.is_empty());
    }

    #[test]
    fn another_method_path_or_body_is_misdirected_and_spends_it() {
        let mut store = ChallengeStore::new(DEFAULT_TTL);
        for (method, path, body) in [
            ("POST", "/v1/stop", BODY),
            ("PUT", "/v1/restart", BODY),
            ("POST", "/v1/restart", br#"{"all": true}"#.as_slice()),
        ] {
            let c = store.issue("POST", "/v1/restart", BODY, t0()).unwrap();
            assert_eq!(
                store.redeem(&c.id, method, path, body, t0()),
                Err(ChallengeRefused::Misdirected),
                "{method} {path}"
            );
            assert_eq!(
                store.redeem(&c.id, "POST", "/v1/restart", BODY, t0()),
                Err(ChallengeRefused::Reused)
            );
        }
        // Parts are length-prefixed: moving bytes between them is noticed.
        let c = store.issue("POST", "/v1/a", b"b", t0()).unwrap();
        assert_eq!(
            store.redeem(&c.id, "POST", "/v1/ab", b"", t0()),
            Err(ChallengeRefused::Misdirected)
        );
    }

    #[test]
    fn an_unknown_id_is_refused() {
        let mut store = ChallengeStore::new(DEFAULT_TTL);
        store.issue("POST", "/v1/stop", b"", t0()).unwrap();
        for id in ["", "0123456789abcdef0123456789abcdef", "token:x"] {
            assert_eq!(
                store.redeem(id, "POST", "/v1/stop", b"", t0()),
                Err(ChallengeRefused::Unknown)
            );
        }
    }

    #[test]
    fn the_store_is_bounded_expired_then_used_then_oldest_go_first() {
        let mut store = ChallengeStore::with_capacity(DEFAULT_TTL, 3);
        let a = store.issue("POST", "/a", b"", t0()).unwrap();
        let b = store.issue("POST", "/b", b"", t0() + secs(1)).unwrap();
        let c = store.issue("POST", "/c", b"", t0() + secs(2)).unwrap();
        assert_eq!(store.len(), 3);
        // Used ones go before outstanding ones.
        store
            .redeem(&b.id, "POST", "/b", b"", t0() + secs(3))
            .unwrap();
        let d = store.issue("POST", "/d", b"", t0() + secs(3)).unwrap();
        assert_eq!(store.len(), 3);
        assert_eq!(
            store.redeem(&b.id, "POST", "/b", b"", t0() + secs(3)),
            Err(ChallengeRefused::Unknown)
        );
        // Then the one that expires soonest.
        let e = store.issue("POST", "/e", b"", t0() + secs(4)).unwrap();
        assert_eq!(store.len(), 3);
        let at = t0() + secs(5);
        assert_eq!(
            store.redeem(&a.id, "POST", "/a", b"", at),
            Err(ChallengeRefused::Unknown)
        );
        for (ch, path) in [(&c, "/c"), (&d, "/d"), (&e, "/e")] {
            assert_eq!(store.redeem(&ch.id, "POST", path, b"", at), Ok(()));
        }
        // Expired ones are dropped whenever the store is touched.
        let mut store = ChallengeStore::with_capacity(Duration::from_secs(10), 1000);
        for i in 0..1000 {
            store
                .issue("POST", "/x", b"", t0() + secs(i / 100))
                .unwrap();
        }
        assert_eq!(store.len(), 1000);
        store.issue("POST", "/x", b"", t0() + secs(15)).unwrap();
        // Those issued at t0+6 s .. t0+9 s are still good, and the new one.
        assert_eq!(store.len(), 401);
    }

    #[test]
    fn the_default_cap_holds_under_a_flood() {
        let mut store = ChallengeStore::new(DEFAULT_TTL);
        for _ in 0..(MAX_OUTSTANDING + 500) {
            store.issue("POST", "/v1/stop", b"", t0()).unwrap();
        }
        assert_eq!(store.len(), MAX_OUTSTANDING);
    }
}

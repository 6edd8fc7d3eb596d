//! The rate limit of heals through the control API: at most `heal_max`
//! begun in any `heal_window` (1 per 5 minutes by default), and one at a
//! time.
//!
//! A heal counts from the moment it is let begin, whatever comes of it, so
//! that a failing heal cannot be retried in a tight loop. One that runs
//! makes the next wait (`409`); one past the limit is told when it may try
//! again (`429` with `Retry-After`). The time is passed in (a monotonic
//! [`Instant`]); nothing here reads the clock. The limiter is shared by
//! reference between threads; a [`HealPermit`] ends the heal it stands for
//! when finished or dropped, a panicking heal included.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Default `heal_max`: 1.
pub const DEFAULT_HEAL_MAX: u32 = 1;
/// Default `heal_window`: 5 minutes.
pub const DEFAULT_HEAL_WINDOW: Duration = Duration::from_secs(300);

/// Why a heal may not begin now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Limited {
    /// Another heal runs (`409 Conflict`).
    #[error("another heal is running; try again when it has finished")]
    Busy,
    /// `heal_max` heals began within the last `heal_window` (`429 Too Many
    /// Requests`); the oldest of them leaves the window after `retry_after`.
    #[error("too many heals: the next may begin in {} s", retry_after_secs(*.retry_after))]
    TooMany {
        /// How long until one may begin.
        retry_after: Duration,
    },
}

impl Limited {
    /// The HTTP status: 409 or 429.
    pub fn status(&self) -> u16 {
        match self {
            Limited::Busy => 409,
            Limited::TooMany { .. } => 429,
        }
    }

    /// The `Retry-After` header's value in whole seconds (rounded up, at
    /// least 1), for [`Limited::TooMany`].
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Limited::Busy => None,
            Limited::TooMany { retry_after } => Some(retry_after_secs(*retry_after)),
        }
    }
}

fn retry_after_secs(d: Duration) -> u64 {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    secs.max(1)
}

#[derive(Debug, Default)]
struct State {
    /// When the heals of the window began, oldest first.
    begun: VecDeque<Instant>,
    running: bool,
}

/// The limiter: `max` heals per `window`, one at a time.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    max: u32,
    window: Duration,
    state: Arc<Mutex<State>>,
}

/// The right to run one heal; it ends with [`HealPermit::finish`] or when
/// dropped.
#[derive(Debug)]
#[must_use = "the heal ends when the permit is dropped"]
pub struct HealPermit {
    state: Arc<Mutex<State>>,
}

impl HealPermit {
    /// Ends the heal: another may begin (within the limit).
    pub fn finish(self) {
        drop(self);
    }
}

impl Drop for HealPermit {
    fn drop(&mut self) {
        lock(&self.state).running = false;
    }
}

/// The state, even when a thread panicked holding it: it stays consistent
/// (each change is one assignment).
fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

impl RateLimiter {
    /// At most `max` heals (at least 1) begun in any `window`, one at a time.
    pub fn new(max: u32, window: Duration) -> RateLimiter {
        RateLimiter {
            max: max.max(1),
            window,
            state: Arc::default(),
        }
    }

    /// Lets a heal begin at `now`, or says why not.
    ///
    /// Errors: [`Limited::Busy`] while a permit is held;
    /// [`Limited::TooMany`] when `max` heals began in the window that ends
    /// at `now`.
    pub fn try_begin(&self, now: Instant) -> Result<HealPermit, Limited> {
        let mut state = lock(&self.state);
        if state.running {
            return Err(Limited::Busy);
        }
        while let Some(&oldest) = state.begun.front() {
            if now.saturating_duration_since(oldest) >= self.window {
                state.begun.pop_front();
            } else {
                break;
            }
        }
        if state.begun.len() >= self.max as usize {
            let oldest = state.begun[0];
            return Err(Limited::TooMany {
                retry_after: (oldest + self.window).saturating_duration_since(now),
            });
        }
        state.begun.push_back(now);
        state.running = true;
        Ok(HealPermit {
            state: self.state.clone(),
        })
    }

    /// Whether a heal runs now.
    pub fn is_busy(&self) -> bool {
        lock(&self.state).running
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn one_per_window_by_default_with_its_retry_after() {
        let t0 = Instant::now();
        let limiter = RateLimiter::new(DEFAULT_HEAL_MAX, DEFAULT_HEAL_WINDOW);
        limiter.try_begin(t0).unwrap().finish();
        let limited = limiter.try_begin(t0 + MIN).unwrap_err();
        assert_eq!(
            limited,
            Limited::TooMany {
                retry_after: 4 * MIN
            }
        );
        assert_eq!(limited.status(), 429);
        assert_eq!(limited.retry_after_secs(), Some(240));
        assert_eq!(
            limited.to_string(),
            "too many heals: the next may begin in 240 s"
        );
        let almost = t0 + 5 * MIN - Duration::from_millis(1);
        let limited = limiter.try_begin(almost).unwrap_err();
        assert_eq!(
            limited,
            Limited::TooMany {
                retry_after: Duration::from_millis(1)
            }
        );
        assert_eq!(limited.retry_after_secs(), Some(1), "rounded up");
        limiter.try_begin(t0 + 5 * MIN).unwrap().finish();
    }

    #[test]
    fn one_at_a_time_until_finished_or_dropped() {
        let t0 = Instant::now();
        let limiter = RateLimiter::new(10, MIN);
        let permit = limiter.try_begin(t0).unwrap();
        assert!(limiter.is_busy());
        let busy = limiter.try_begin(t0).unwrap_err();
        assert_eq!(busy, Limited::Busy);
        assert_eq!(busy.status(), 409);
        assert_eq!(busy.retry_after_secs(), None);
        permit.finish();
        assert!(!limiter.is_busy());
        {
            let _permit = limiter.try_begin(t0).unwrap();
            assert_eq!(limiter.try_begin(t0).unwrap_err(), Limited::Busy);
        }
        limiter.try_begin(t0).unwrap().finish();
        // A heal that panicked ends too.
        let shared = limiter.clone();
        let _ = std::thread::spawn(move || {
            let _permit = shared.try_begin(t0).unwrap();
            panic!("the heal failed");
        })
        .join();
        assert!(!limiter.is_busy());
    }

    #[test]
    fn the_window_slides() {
        let t0 = Instant::now();
        let limiter = RateLimiter::new(3, MIN);
        for s in [0, 10, 20] {
            limiter
                .try_begin(t0 + Duration::from_secs(s))
                .unwrap()
                .finish();
        }
        // The oldest, at 0 s, leaves the window at 60 s.
        assert_eq!(
            limiter.try_begin(t0 + Duration::from_secs(30)).unwrap_err(),
            Limited::TooMany {
                retry_after: Duration::from_secs(30)
            }
        );
        limiter
            .try_begin(t0 + Duration::from_secs(60))
            .unwrap()
            .finish();
        // Now 10 s, 20 s and 60 s are in the window: the next at 70 s.
        assert_eq!(
            limiter.try_begin(t0 + Duration::from_secs(61)).unwrap_err(),
            Limited::TooMany {
                retry_after: Duration::from_secs(9)
            }
        );
        limiter
            .try_begin(t0 + Duration::from_secs(70))
            .unwrap()
            .finish();
    }

    #[test]
    fn busy_comes_before_too_many_and_refusals_do_not_count() {
        let t0 = Instant::now();
        let limiter = RateLimiter::new(1, MIN);
        let permit = limiter.try_begin(t0).unwrap();
        for _ in 0..5 {
            assert_eq!(limiter.try_begin(t0).unwrap_err(), Limited::Busy);
        }
        drop(permit);
        assert!(matches!(
            limiter.try_begin(t0).unwrap_err(),
            Limited::TooMany { .. }
        ));
        limiter.try_begin(t0 + MIN).unwrap().finish();
    }

    #[test]
    fn a_max_of_zero_is_one() {
        let t0 = Instant::now();
        let limiter = RateLimiter::new(0, MIN);
        limiter.try_begin(t0).unwrap().finish();
        assert!(limiter.try_begin(t0).is_err());
    }
}

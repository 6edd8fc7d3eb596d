//! Order statistics over timed samples, how durations are shown, and the
//! seeded random numbers that pick victims.

use std::time::Duration;

/// The value at quantile `q` (0 < q ≤ 1) by the nearest-rank method: the
/// smallest sample with at least `q` of all samples at or below it. With an
/// odd count, `q = 0.5` is the exact median. `None` for no samples.
pub(crate) fn quantile(samples: &[Duration], q: f64) -> Option<Duration> {
    if samples.is_empty() {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let rank = (q * sorted.len() as f64).ceil().max(1.0) as usize;
    Some(sorted[rank.min(sorted.len()) - 1])
}

/// The median ([`quantile`] at 0.5).
pub(crate) fn median(samples: &[Duration]) -> Option<Duration> {
    quantile(samples, 0.5)
}

/// p50, p95, p99 and max of a set of latencies.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Percentiles {
    /// Median.
    pub(crate) p50: Duration,
    /// 95th percentile.
    pub(crate) p95: Duration,
    /// 99th percentile.
    pub(crate) p99: Duration,
    /// Largest sample.
    pub(crate) max: Duration,
}

impl Percentiles {
    /// The percentiles of `samples`; `None` for no samples.
    pub(crate) fn of(samples: &[Duration]) -> Option<Percentiles> {
        Some(Percentiles {
            p50: quantile(samples, 0.50)?,
            p95: quantile(samples, 0.95)?,
            p99: quantile(samples, 0.99)?,
            max: quantile(samples, 1.0)?,
        })
    }
}

/// A duration for a table: `850 µs`, `12.3 ms`, `1.24 s`.
pub(crate) fn show(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1_000.0 {
        format!("{us:.0} µs")
    } else if us < 100_000.0 {
        format!("{:.1} ms", us / 1e3)
    } else if us < 1_000_000.0 {
        format!("{:.0} ms", us / 1e3)
    } else {
        format!("{:.2} s", us / 1e6)
    }
}

/// SplitMix64: a tiny, seeded generator, so that a run's victims and pauses
/// can be replayed.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    /// A generator starting from `seed`.
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// A duration uniformly in `[low, low + span)`.
    pub(crate) fn duration(&mut self, low: Duration, span: Duration) -> Duration {
        let frac = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        low + span.mul_f64(frac)
    }
}

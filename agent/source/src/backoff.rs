//! Retry and polling delays with jitter, as pure functions of an injectable random source.
//!
//! Jitter keeps many agents (or many sources in one agent) from hitting a git server in
//! lockstep after an outage; the random source is a parameter so tests are exact and never
//! depend on timing.
//!
//! Why not `backon` (in the tree already, through kube-runtime): its `ExponentialBuilder` reaches
//! the same bounds only by halving both ends (its jitter adds `[0, d)` on top of `d`; ours keeps
//! `[d/2, d)`), it draws from a private `fastrand` generator that takes at most a seed, so the
//! exact delays asserted below could only be checked as ranges, and it has no symmetric jitter for
//! [`interval_with_jitter`]: [`RandomSource`] would stay, beside a second generator.

use std::{
    hash::{BuildHasher, Hasher},
    time::Duration,
};

/// A source of uniformly distributed numbers in `[0, 1)`.
pub trait RandomSource {
    /// The next number in `[0, 1)`.
    fn next_unit(&mut self) -> f64;
}

/// SplitMix64: tiny, fast, statistically fine for jitter (not for secrets), and reproducible
/// from a seed.
#[derive(Debug, Clone)]
pub struct SeededRandom {
    state: u64,
}

impl SeededRandom {
    /// A generator that always yields the same sequence for `seed` (tests, replays).
    pub fn new(seed: u64) -> Self {
        SeededRandom { state: seed }
    }

    /// A generator seeded from the process's hash randomisation (different per process and per
    /// call), without pulling in a random-number crate.
    pub fn from_entropy() -> Self {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(std::process::id().into());
        Self::new(hasher.finish())
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

impl RandomSource for SeededRandom {
    fn next_unit(&mut self) -> f64 {
        // 53 random bits → exactly representable in [0, 1).
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The delay before retry number `attempt` (0 for the first retry): `base · 2^attempt` capped
/// at `max`, then "equal jitter" — half of it fixed, half random — so delays keep growing
/// (never collapse to zero and hammer the server) yet spread out. `unit` is a number in `[0, 1)`.
pub fn backoff_delay(base: Duration, max: Duration, attempt: u32, unit: f64) -> Duration {
    let exponential = base.saturating_mul(2u32.saturating_pow(attempt.min(31)));
    let capped = exponential.min(max);
    let half = capped / 2;
    half + half.mul_f64(clamp_unit(unit))
}

/// `interval` moved randomly by up to `jitter_fraction` of itself either way (fraction clamped
/// to `[0, 1]`): `interval_with_jitter(60s, 0.1, …)` lies in `[54s, 66s)`.
pub fn interval_with_jitter(
    interval: Duration,
    jitter_fraction: f64,
    random: &mut impl RandomSource,
) -> Duration {
    let fraction = if jitter_fraction.is_finite() {
        jitter_fraction.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let offset = (clamp_unit(random.next_unit()) * 2.0 - 1.0) * fraction;
    interval.mul_f64(1.0 + offset)
}

fn clamp_unit(unit: f64) -> f64 {
    if unit.is_finite() {
        unit.clamp(0.0, 1.0)
    } else {
        0.0
    }
}

/// Retry state for one source: the agent calls [`Backoff::next_delay`] after each failure and
/// [`Backoff::reset`] after a success.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// Start at `base`, never wait longer than `max`.
    pub fn new(base: Duration, max: Duration) -> Self {
        Backoff {
            base,
            max,
            attempt: 0,
        }
    }

    /// The delay before the next retry; each call doubles the next one (up to `max`).
    pub fn next_delay(&mut self, random: &mut impl RandomSource) -> Duration {
        let delay = backoff_delay(self.base, self.max, self.attempt, random.next_unit());
        self.attempt = self.attempt.saturating_add(1);
        delay
    }

    /// Failures since the last success, for status and metrics.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// Back to `base` after a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Always returns the same number.
    struct Fixed(f64);
    impl RandomSource for Fixed {
        fn next_unit(&mut self) -> f64 {
            self.0
        }
    }

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn delay_doubles_per_attempt_between_half_and_full() {
        assert_eq!(backoff_delay(S, 60 * S, 0, 0.0), S / 2);
        assert_eq!(backoff_delay(S, 60 * S, 3, 0.0), 4 * S);
        assert_eq!(backoff_delay(S, 60 * S, 3, 0.5), 6 * S);
    }

    #[test]
    fn delay_never_exceeds_max() {
        for attempt in [6, 10, 100, u32::MAX] {
            assert!(backoff_delay(S, 60 * S, attempt, 0.999_999) <= 60 * S);
            assert!(backoff_delay(S, 60 * S, attempt, 0.0) >= 30 * S);
        }
    }

    #[test]
    fn out_of_range_randomness_is_clamped() {
        assert_eq!(backoff_delay(S, 60 * S, 0, 7.0), S);
        assert_eq!(backoff_delay(S, 60 * S, 0, f64::NAN), S / 2);
    }

    #[test]
    fn backoff_grows_then_resets() {
        let mut backoff = Backoff::new(S, 8 * S);
        let mut random = Fixed(0.0);
        let delays: Vec<_> = (0..5).map(|_| backoff.next_delay(&mut random)).collect();
        assert_eq!(delays, vec![S / 2, S, 2 * S, 4 * S, 4 * S]);
        assert_eq!(backoff.attempts(), 5);
        backoff.reset();
        assert_eq!(backoff.next_delay(&mut random), S / 2);
    }

    #[test]
    fn interval_jitter_stays_within_fraction() {
        let interval = 60 * S;
        assert_eq!(interval_with_jitter(interval, 0.1, &mut Fixed(0.0)), 54 * S);
        assert_eq!(
            interval_with_jitter(interval, 0.1, &mut Fixed(0.5)),
            interval
        );
        let mut random = SeededRandom::new(42);
        for _ in 0..1000 {
            let d = interval_with_jitter(interval, 0.1, &mut random);
            assert!(d >= 54 * S && d < 66 * S, "{d:?}");
        }
    }

    #[test]
    fn zero_or_invalid_jitter_keeps_the_interval() {
        assert_eq!(interval_with_jitter(60 * S, 0.0, &mut Fixed(0.9)), 60 * S);
        assert_eq!(
            interval_with_jitter(60 * S, f64::NAN, &mut Fixed(0.9)),
            60 * S
        );
    }

    #[test]
    fn seeded_random_is_reproducible_and_in_unit_range() {
        let a: Vec<f64> = {
            let mut r = SeededRandom::new(7);
            (0..100).map(|_| r.next_unit()).collect()
        };
        let b: Vec<f64> = {
            let mut r = SeededRandom::new(7);
            (0..100).map(|_| r.next_unit()).collect()
        };
        assert_eq!(a, b);
        assert!(a.iter().all(|u| (0.0..1.0).contains(u)));
        assert!(a.windows(2).any(|w| w[0] != w[1]));
    }
}

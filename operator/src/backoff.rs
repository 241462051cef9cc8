//! Retry delays for transient reconcile failures: exponential (doubled per consecutive failure
//! from `base`), capped at `cap`, with jitter so that retries of many failures (or replicas) do
//! not hit a recovering API server in lockstep, and reset by the next successful reconcile.
//!
//! The jitter is "equal jitter": the delay is half the exponential step plus a random share of
//! the other half, so it never falls below half the step (retries still slow down) nor exceeds
//! the step or the cap.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;
use std::time::Duration;

/// How retries of transient failures are spaced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The first retry's step.
    pub base: Duration,
    /// The largest delay between two attempts.
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(300),
        }
    }
}

impl RetryPolicy {
    /// The delay after `failures` consecutive failures (1 = the first), given `jitter` in
    /// [0, 1]: between half and all of `min(cap, base * 2^(failures - 1))`.
    pub fn delay(&self, failures: u32, jitter: f64) -> Duration {
        let doublings = failures.saturating_sub(1).min(63);
        let step = self
            .base
            .checked_mul(1u32.checked_shl(doublings).unwrap_or(u32::MAX))
            .unwrap_or(self.cap)
            .min(self.cap);
        step / 2 + (step / 2).mul_f64(jitter.clamp(0.0, 1.0))
    }
}

/// A random number in [0, 1] from the standard library's randomly keyed hasher (no generator
/// crate for one number per failed reconcile).
pub fn jitter() -> f64 {
    RandomState::new().hash_one(std::time::Instant::now()) as f64 / u64::MAX as f64
}

/// Consecutive failures per object: counted by the error policy, reset by a success.
#[derive(Debug, Default)]
pub struct Retries {
    failures: Mutex<HashMap<String, u32>>,
}

impl Retries {
    /// Counts one more failure of `key` and returns how many there have been in a row.
    pub fn fail(&self, key: &str) -> u32 {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let count = failures.entry(key.to_owned()).or_default();
        *count = count.saturating_add(1);
        *count
    }

    /// `key` reconciled successfully: its next failure is a first one again.
    pub fn reset(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: RetryPolicy = RetryPolicy {
        base: Duration::from_secs(1),
        cap: Duration::from_secs(300),
    };

    #[test]
    fn the_step_doubles_per_failure_up_to_the_cap() {
        let full: Vec<u64> = (1..=11).map(|n| POLICY.delay(n, 1.0).as_secs()).collect();
        assert_eq!(full, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(POLICY.delay(u32::MAX, 1.0), Duration::from_secs(300));
        assert_eq!(POLICY.delay(0, 1.0), Duration::from_secs(1));
    }

    #[test]
    fn jitter_spreads_each_delay_over_the_upper_half_of_its_step() {
        assert_eq!(POLICY.delay(4, 0.0), Duration::from_secs(4));
        assert_eq!(POLICY.delay(4, 0.5), Duration::from_secs(6));
        assert_eq!(POLICY.delay(20, 0.0), Duration::from_secs(150));
        assert_eq!(POLICY.delay(4, 7.0), Duration::from_secs(8), "clamped");
        let samples: Vec<f64> = (0..64).map(|_| jitter()).collect();
        assert!(samples.iter().all(|x| (0.0..=1.0).contains(x)));
        assert!(
            samples.iter().any(|x| *x != samples[0]),
            "jitter varies: {samples:?}"
        );
    }

    #[test]
    fn a_success_resets_the_count() {
        let retries = Retries::default();
        assert_eq!(retries.fail("default"), 1);
        assert_eq!(retries.fail("default"), 2);
        assert_eq!(retries.fail("other"), 1);
        retries.reset("default");
        assert_eq!(retries.fail("default"), 1);
        assert_eq!(retries.fail("other"), 2);
    }
}

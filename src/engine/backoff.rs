//! Exponential backoff with full jitter for reconnects and retries: each delay is drawn
//! uniformly between half and all of `initial * multiplier^n`, capped at `max`, so links
//! that failed together do not retry in lockstep. The settings are validated when the
//! config loads (`0 < initial <= max`, `multiplier >= 1`).

use std::time::Duration;

use crate::config::BackoffConfig;

/// One sequence of delays; `reset` after a success.
#[derive(Debug, Clone)]
pub struct Backoff {
    settings: BackoffConfig,
    attempt: u32,
    seed: u64,
}

impl Backoff {
    /// A new sequence; `seed` varies the jitter between users.
    pub fn new(settings: BackoffConfig, seed: u64) -> Backoff {
        Backoff {
            settings,
            attempt: 0,
            seed: seed | 1,
        }
    }

    /// The next delay.
    pub fn next_delay(&mut self) -> Duration {
        let settings = &self.settings;
        let growth = settings.multiplier.powi(self.attempt.min(64) as i32);
        let ceiling = settings.initial.as_secs_f64() * growth;
        let ceiling = ceiling.min(settings.max.as_secs_f64());
        self.attempt = self.attempt.saturating_add(1);
        let jitter = 0.5 + 0.5 * self.unit();
        Duration::from_secs_f64(ceiling * jitter).max(Duration::from_millis(1))
    }

    /// Starts over from `initial`.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// A number in [0, 1) from an xorshift generator (jitter needs no cryptography).
    fn unit(&mut self) -> f64 {
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        (self.seed >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> BackoffConfig {
        BackoffConfig {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(2),
            multiplier: 2.0,
        }
    }

    #[test]
    fn delays_grow_within_jitter_and_stop_at_the_cap() {
        let mut backoff = Backoff::new(settings(), 7);
        for n in 0..10 {
            let ceiling = (0.1 * 2f64.powi(n)).min(2.0);
            let delay = backoff.next_delay().as_secs_f64();
            assert!(
                delay >= ceiling * 0.5 - 1e-9 && delay <= ceiling + 1e-9,
                "attempt {n}: {delay} outside [{}, {ceiling}]",
                ceiling * 0.5
            );
        }
        backoff.reset();
        assert!(backoff.next_delay() <= Duration::from_millis(100));
    }

    #[test]
    fn two_seeds_do_not_retry_in_lockstep() {
        let (mut a, mut b) = (Backoff::new(settings(), 1), Backoff::new(settings(), 2));
        let same = (0..8).filter(|_| a.next_delay() == b.next_delay()).count();
        assert!(same < 8);
    }
}

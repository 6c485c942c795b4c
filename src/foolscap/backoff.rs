//! Jittered exponential backoff for reconnecting to an upstream.

use std::time::{Duration, Instant};

/// Doubles the wait after each failure, from `base` up to `max`, with "full
/// jitter" (a random wait between half the step and the step), and resets on
/// success.
#[derive(Debug)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    step: Duration,
    /// No attempt before this instant.
    not_before: Option<Instant>,
}

impl Backoff {
    pub fn new(base: Duration, max: Duration) -> Backoff {
        Backoff {
            base,
            max,
            step: base,
            not_before: None,
        }
    }

    /// Whether an attempt may be made now; otherwise how long until one may.
    pub fn ready(&self, now: Instant) -> Result<(), Duration> {
        match self.not_before {
            Some(t) if t > now => Err(t - now),
            _ => Ok(()),
        }
    }

    /// Record a failed attempt; returns the wait before the next.
    pub fn failed(&mut self, now: Instant) -> Duration {
        let half = self.step / 2;
        let jitter = Duration::from_nanos(rand::random::<u64>() % (half.as_nanos() as u64).max(1));
        let wait = half + jitter;
        self.not_before = Some(now + wait);
        self.step = (self.step * 2).min(self.max);
        wait
    }

    pub fn succeeded(&mut self) {
        self.step = self.base;
        self.not_before = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_with_jitter_up_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let t = Instant::now();
        assert!(b.ready(t).is_ok());
        let mut waits = Vec::new();
        for _ in 0..8 {
            waits.push(b.failed(t));
        }
        assert!(waits[0] >= Duration::from_millis(50) && waits[0] < Duration::from_millis(100));
        assert!(waits[1] >= Duration::from_millis(100) && waits[1] < Duration::from_millis(200));
        assert!(
            waits.iter().all(|w| *w < Duration::from_secs(1)),
            "{waits:?}"
        );
        assert!(
            waits[7] >= Duration::from_millis(500),
            "capped at max: {waits:?}"
        );
        assert!(b.ready(t).is_err());
        assert!(b.ready(t + Duration::from_secs(2)).is_ok());
        b.succeeded();
        assert!(b.ready(t).is_ok());
        assert!(b.failed(t) < Duration::from_millis(100));
    }
}

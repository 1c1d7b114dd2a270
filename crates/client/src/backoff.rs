//! Exponential backoff with jitter between retries of one call.
//!
//! Invariant: pauses double from `initial` up to `max`, and each is drawn from
//! `[pause/2, pause]` so clients that failed together (a leader died under all of them) do not
//! retry together.

use std::time::Duration;

use rand::Rng;

#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    pub(crate) fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            next: initial.min(max),
            max,
        }
    }

    /// The pause before the next attempt.
    pub(crate) fn next_pause(&mut self) -> Duration {
        let ceiling = self.next;
        self.next = (self.next * 2).min(self.max);
        let ceiling_us = u64::try_from(ceiling.as_micros()).unwrap_or(u64::MAX);
        Duration::from_micros(rand::rng().random_range(ceiling_us / 2..=ceiling_us))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_grow_to_the_cap_with_jitter() {
        let mut b = Backoff::new(Duration::from_millis(10), Duration::from_millis(80));
        let ceilings = [10, 20, 40, 80, 80, 80];
        for ceiling in ceilings {
            let pause = b.next_pause();
            let ceiling = Duration::from_millis(ceiling);
            assert!(
                pause <= ceiling && pause >= ceiling / 2,
                "{pause:?} vs {ceiling:?}"
            );
        }
    }
}

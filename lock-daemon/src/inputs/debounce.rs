//! Debouncing, pure: time is passed in, nothing sleeps or reads a pin.
//!
//! A change of the sampled value counts only once the new value has been seen, without
//! interruption, for the debounce time. Contact bounce (a reed switch or a push button
//! chattering for a few milliseconds) therefore never produces an event, and a stable
//! change produces exactly one.

use std::time::Duration;

/// One debounced boolean input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Debouncer {
    debounce: Duration,
    stable: bool,
    /// Since when the samples have differed from `stable`, without interruption.
    differs_since: Option<Duration>,
}

impl Debouncer {
    /// Starts with `initial` as the stable value (nothing is reported for it).
    pub fn new(initial: bool, debounce: Duration) -> Debouncer {
        Debouncer {
            debounce,
            stable: initial,
            differs_since: None,
        }
    }

    /// The current debounced value.
    pub fn stable(&self) -> bool {
        self.stable
    }

    /// Feeds one sample taken at `now` (time since any fixed origin; non-decreasing).
    /// Returns the new debounced value when it changes, once per change.
    ///
    /// A sample equal to the stable value cancels a pending change: the new value must
    /// then hold for the whole debounce time again. With a zero debounce the first
    /// differing sample counts.
    pub fn sample(&mut self, value: bool, now: Duration) -> Option<bool> {
        if value == self.stable {
            self.differs_since = None;
            return None;
        }
        let since = *self.differs_since.get_or_insert(now);
        if now.saturating_sub(since) >= self.debounce {
            self.stable = value;
            self.differs_since = None;
            Some(value)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(t: u64) -> Duration {
        Duration::from_millis(t)
    }

    /// Feeds `(ms, value)` samples; returns `(ms, new value)` for every reported change.
    fn run(debouncer: &mut Debouncer, samples: &[(u64, bool)]) -> Vec<(u64, bool)> {
        samples
            .iter()
            .filter_map(|&(t, v)| debouncer.sample(v, ms(t)).map(|c| (t, c)))
            .collect()
    }

    #[test]
    fn bounces_shorter_than_the_debounce_time_are_ignored() {
        let mut d = Debouncer::new(false, ms(50));
        // Chatter: never 50 ms in a row at `true`.
        let samples: Vec<(u64, bool)> = (0..40).map(|i| (i * 5, i % 3 == 0)).collect();
        assert_eq!(run(&mut d, &samples), []);
        // A single 45 ms pulse is still a bounce.
        assert_eq!(
            run(
                &mut d,
                &[
                    (250, false),
                    (300, true),
                    (320, true),
                    (345, true),
                    (350, false)
                ]
            ),
            []
        );
        assert!(!d.stable());
    }

    #[test]
    fn a_stable_change_is_reported_once_after_the_debounce_time() {
        let mut d = Debouncer::new(false, ms(50));
        let samples: Vec<(u64, bool)> = (0..=40).map(|i| (100 + i * 5, true)).collect();
        assert_eq!(run(&mut d, &samples), [(150, true)]);
        assert!(d.stable());
        // And back, once.
        let samples: Vec<(u64, bool)> = (0..=40).map(|i| (400 + i * 5, false)).collect();
        assert_eq!(run(&mut d, &samples), [(450, false)]);
    }

    #[test]
    fn a_bounce_restarts_the_stability_timer() {
        let mut d = Debouncer::new(false, ms(50));
        let reported = run(
            &mut d,
            &[
                (0, true),
                (40, true),
                (45, false), // bounce back: the 45 ms so far do not count
                (50, true),
                (95, true),
                (100, true), // 50 ms since 50
                (105, true),
            ],
        );
        assert_eq!(reported, [(100, true)]);
    }

    #[test]
    fn bouncing_while_settling_into_the_new_state_gives_one_change() {
        // A button press: chatter on the way down, then held.
        let mut d = Debouncer::new(false, ms(20));
        let press = [
            (0, true),
            (1, false),
            (2, true),
            (3, false),
            (4, true),
            (10, true),
            (24, true),
            (30, true),
            (200, true),
        ];
        assert_eq!(run(&mut d, &press), [(24, true)]);
    }

    #[test]
    fn a_zero_debounce_reports_the_first_differing_sample() {
        let mut d = Debouncer::new(true, Duration::ZERO);
        assert_eq!(
            run(&mut d, &[(0, true), (5, false), (6, false), (7, true)]),
            [(5, false), (7, true)]
        );
    }
}

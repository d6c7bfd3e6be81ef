//! Rate limits for the HTTP API: token buckets keyed by client address (failed
//! authentication) or by token name (unlock requests). Pure: time is passed in.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// A bucket of `capacity` tries, refilled one per `refill_every`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub capacity: u32,
    pub refill_every: Duration,
}

#[derive(Debug, Clone)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn full(rate: Rate, now: Instant) -> Bucket {
        Bucket {
            tokens: f64::from(rate.capacity),
            last: now,
        }
    }

    fn refill(&mut self, rate: Rate, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last);
        self.last = now;
        let added = elapsed.as_secs_f64() / rate.refill_every.as_secs_f64();
        self.tokens = (self.tokens + added).min(f64::from(rate.capacity));
    }

    /// How long until one whole try is available again.
    fn wait(&self, rate: Rate) -> Duration {
        let missing = (1.0 - self.tokens).max(0.0);
        rate.refill_every.mul_f64(missing)
    }
}

/// Buckets per key, at most `max_keys` of them (the least recently used goes first, so a
/// flood of addresses cannot grow memory without bound).
#[derive(Debug)]
pub struct Limiter<K> {
    rate: Rate,
    max_keys: usize,
    buckets: HashMap<K, Bucket>,
}

impl<K: Hash + Eq + Clone> Limiter<K> {
    pub fn new(rate: Rate, max_keys: usize) -> Limiter<K> {
        Limiter {
            rate,
            max_keys: max_keys.max(1),
            buckets: HashMap::new(),
        }
    }

    /// Takes one try for `key`; `Err(wait)` when none is left.
    pub fn take(&mut self, key: &K, now: Instant) -> Result<(), Duration> {
        let rate = self.rate;
        let bucket = self.bucket(key, now);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(bucket.wait(rate))
        }
    }

    /// Whether `key` has tries left, without taking one; `Err(wait)` when it has none.
    pub fn check(&mut self, key: &K, now: Instant) -> Result<(), Duration> {
        let rate = self.rate;
        let bucket = self.bucket(key, now);
        if bucket.tokens >= 1.0 {
            Ok(())
        } else {
            Err(bucket.wait(rate))
        }
    }

    fn bucket(&mut self, key: &K, now: Instant) -> &mut Bucket {
        if !self.buckets.contains_key(key) && self.buckets.len() >= self.max_keys {
            // Full buckets carry no information: drop them first, then the stalest.
            let rate = self.rate;
            self.buckets.retain(|_, b| {
                let mut b2 = b.clone();
                b2.refill(rate, now);
                b2.tokens < f64::from(rate.capacity)
            });
            if self.buckets.len() >= self.max_keys {
                if let Some(oldest) = self
                    .buckets
                    .iter()
                    .min_by_key(|(_, b)| b.last)
                    .map(|(k, _)| k.clone())
                {
                    self.buckets.remove(&oldest);
                }
            }
        }
        let rate = self.rate;
        let bucket = self
            .buckets
            .entry(key.clone())
            .or_insert_with(|| Bucket::full(rate, now));
        bucket.refill(rate, now);
        bucket
    }

    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: Rate = Rate {
        capacity: 3,
        refill_every: Duration::from_secs(10),
    };

    #[test]
    fn a_key_gets_its_capacity_then_waits_for_the_refill() {
        let t0 = Instant::now();
        let mut limiter = Limiter::new(RATE, 16);
        for _ in 0..3 {
            assert!(limiter.take(&"a", t0).is_ok());
        }
        let wait = limiter.take(&"a", t0).unwrap_err();
        assert_eq!(wait, Duration::from_secs(10));
        let later = t0 + Duration::from_secs(4);
        assert_eq!(limiter.check(&"a", later), Err(Duration::from_secs(6)));
        assert!(limiter.take(&"a", t0 + Duration::from_secs(10)).is_ok());
        assert!(limiter.take(&"a", t0 + Duration::from_secs(10)).is_err());
    }

    #[test]
    fn keys_are_limited_independently() {
        let t0 = Instant::now();
        let mut limiter = Limiter::new(RATE, 16);
        for _ in 0..3 {
            limiter.take(&"a", t0).unwrap();
        }
        assert!(limiter.take(&"a", t0).is_err());
        assert!(limiter.take(&"b", t0).is_ok());
    }

    #[test]
    fn check_takes_nothing() {
        let t0 = Instant::now();
        let mut limiter = Limiter::new(RATE, 16);
        for _ in 0..10 {
            assert!(limiter.check(&"a", t0).is_ok());
        }
        for _ in 0..3 {
            assert!(limiter.take(&"a", t0).is_ok());
        }
    }

    #[test]
    fn a_flood_of_keys_keeps_the_table_bounded_and_the_exhausted_keys_limited() {
        let t0 = Instant::now();
        let mut limiter = Limiter::new(RATE, 8);
        for _ in 0..3 {
            limiter.take(&0u32, t0).unwrap();
        }
        for key in 1..10_000u32 {
            let _ = limiter.take(&key, t0);
            assert!(limiter.len() <= 8);
        }
        // Buckets with tries taken are kept over full ones; the oldest goes when all are
        // in use.
        let mut limiter = Limiter::new(RATE, 2);
        for _ in 0..3 {
            limiter.take(&"attacker", t0).unwrap();
        }
        limiter.take(&"x", t0).unwrap();
        limiter.take(&"y", t0 + Duration::from_millis(1)).unwrap();
        assert_eq!(limiter.len(), 2);
    }
}

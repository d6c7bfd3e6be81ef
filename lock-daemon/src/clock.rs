//! Time readings for logs: wall time (RFC 3339, UTC) for people, `CLOCK_MONOTONIC`
//! milliseconds for comparing events across processes. Decisions never read the clock; they
//! take `now: Instant` from the loop, which reads it through the [`Clock`] seam: the
//! [`SystemClock`] in service, a [`FakeClock`] that tests move by hand.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use time::macros::format_description;
use time::OffsetDateTime;

/// Where the service reads the time and how it waits: the door loop's deadlines and the
/// vision thread's camera backoff. Waits on other threads (the input channel, the vision
/// thread's heartbeat and join) stay in real time.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The time now.
    fn now(&self) -> Instant;
    /// Lets `d` pass (a backoff step).
    fn sleep(&self, d: Duration);
    /// How long the door loop may block waiting for an input when its next deadline is `d`
    /// away on this clock: `d` on a real clock.
    fn wait_limit(&self, d: Duration) -> Duration {
        d
    }
}

/// The real clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn sleep(&self, d: Duration) {
        std::thread::sleep(d);
    }
}

/// A clock for tests: it stands still until the test [`advance`](FakeClock::advance)s it,
/// or until a [`sleep`](Clock::sleep) on it moves it on by the time slept (at once). The
/// door loop polls it (a short real wait) instead of blocking until a deadline, so a move
/// is noticed at once. Clones share the time.
#[derive(Debug, Clone)]
pub struct FakeClock {
    start: Instant,
    offset: Arc<Mutex<Duration>>,
}

impl Default for FakeClock {
    fn default() -> FakeClock {
        FakeClock {
            start: Instant::now(),
            offset: Arc::default(),
        }
    }
}

impl FakeClock {
    /// The longest real wait the door loop makes on a fake clock.
    pub const POLL: Duration = Duration::from_millis(1);

    /// Moves the time on by `d`.
    pub fn advance(&self, d: Duration) {
        *self.offset.lock().unwrap_or_else(PoisonError::into_inner) += d;
    }

    /// How far the time has moved since this clock was made.
    pub fn elapsed(&self) -> Duration {
        *self.offset.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Clock for FakeClock {
    fn now(&self) -> Instant {
        self.start + self.elapsed()
    }

    fn sleep(&self, d: Duration) {
        self.advance(d);
        std::thread::yield_now();
    }

    fn wait_limit(&self, d: Duration) -> Duration {
        d.min(Self::POLL)
    }
}

/// The current wall time as RFC 3339 in UTC with milliseconds, e.g. `2025-05-01T08:30:00.123Z`.
/// Always three fractional digits (`.080`, `.000`), so lines line up and sort as text.
pub fn wall_rfc3339() -> String {
    let format =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    OffsetDateTime::now_utc()
        .format(&format)
        .expect("a current UTC time formats")
}

/// Milliseconds of `CLOCK_MONOTONIC`: never jumps with wall-clock changes and is the same
/// clock in every process (unlike `Instant`, whose origin is private), so lines written by
/// the daemon and by `lock-daemon secure` can be compared.
pub fn monotonic_ms() -> u64 {
    monotonic_us() / 1000
}

/// Microseconds of `CLOCK_MONOTONIC` (systemd's `MONOTONIC_USEC`).
pub fn monotonic_us() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000 + t.tv_nsec as u64 / 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wall_time_is_rfc3339_utc_with_milliseconds() {
        let t = wall_rfc3339();
        assert!(t.ends_with('Z'), "{t}");
        assert_eq!(t.len(), "2025-05-01T08:30:00.123Z".len(), "{t}");
        assert_eq!((&t[4..5], &t[10..11], &t[19..20]), ("-", "T", "."), "{t}");
    }

    #[test]
    fn a_fake_clock_moves_only_when_advanced_or_slept_on() {
        let clock = FakeClock::default();
        let shared = clock.clone();
        let t0 = clock.now();
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(clock.now(), t0);
        shared.advance(Duration::from_secs(3));
        clock.sleep(Duration::from_millis(250));
        assert_eq!(clock.now() - t0, Duration::from_millis(3250));
        assert_eq!(clock.wait_limit(Duration::from_secs(5)), FakeClock::POLL);
        assert_eq!(
            SystemClock.wait_limit(Duration::from_secs(5)),
            Duration::from_secs(5)
        );
    }

    #[test]
    fn monotonic_clock_advances_with_instant() {
        let (a, start) = (monotonic_ms(), std::time::Instant::now());
        std::thread::sleep(std::time::Duration::from_millis(20));
        let b = monotonic_ms();
        let elapsed = start.elapsed().as_millis() as u64;
        assert!(b >= a + 19 && b <= a + elapsed + 2, "{a} {b} {elapsed}");
    }
}

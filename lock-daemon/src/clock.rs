//! Time readings for logs: wall time (RFC 3339, UTC) for people, `CLOCK_MONOTONIC`
//! milliseconds for comparing events across processes. Decisions never read the clock; they
//! take `now: Instant` from the loop.

use time::macros::format_description;
use time::OffsetDateTime;

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
    fn monotonic_clock_advances_with_instant() {
        let (a, start) = (monotonic_ms(), std::time::Instant::now());
        std::thread::sleep(std::time::Duration::from_millis(20));
        let b = monotonic_ms();
        let elapsed = start.elapsed().as_millis() as u64;
        assert!(b >= a + 19 && b <= a + elapsed + 2, "{a} {b} {elapsed}");
    }
}

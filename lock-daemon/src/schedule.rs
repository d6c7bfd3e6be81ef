//! The weekly schedule: time windows in the lock's configured time zone that hold the door
//! unlocked (reception hours) and that limit when face unlock is allowed, for everybody or
//! per person (a contractor only on weekdays 8-18). Pure, like the policy: the civil time is
//! passed in; only [`civil`], [`zone`] and [`clock_synchronized`] touch the system.
//!
//! # Rules
//!
//! * A window is a set of days and a start and end time of day: `"mon-fri 08:00-18:00"`. The
//!   start is inclusive, the end exclusive. An end before the start crosses midnight into
//!   the next day (`"fri 22:00-06:00"` covers Saturday 00:00-05:59). `24:00` is allowed as
//!   an end; a window that starts and ends at the same time is refused as empty.
//! * Times are the civil time of the configured zone, so a window opens at local 08:00 on
//!   both sides of a DST change. In the hour skipped in spring, a window whose edge falls in
//!   the gap changes at the jump (02:30 becomes 03:00); in the hour repeated in autumn, the
//!   window follows the wall clock through it twice.
//! * No `unlock` windows: the schedule never holds the door unlocked. No `face` windows: face
//!   unlock is always allowed. A person listed in `people` follows their own windows instead
//!   of `face` (so they may be let in outside `face`, or less); a person listed with no
//!   windows is never let in by face.
//! * **Unsynchronised clock** (`now` is `None`): a Pi without a real-time clock boots with a
//!   stale time, so nothing time-based is trusted. The door is never held unlocked by a
//!   window, and face unlock keeps working without time limits: refusing everybody until
//!   NTP answers would lock enrolled people out of their own door, and the unlock itself
//!   still needs a recognised face.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use jiff::civil::Date;
use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::Timestamp;

/// Minutes in a day; the exclusive upper bound of [`Civil::minute`], and `24:00`.
pub const MINUTES_PER_DAY: u16 = 24 * 60;

/// Day names as written in windows, Monday first (the index is [`Civil::weekday`]).
const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// The accepted syntax, appended to every parse error.
const SYNTAX: &str = "write windows like \"mon-fri 08:00-18:00\" (days: mon tue wed thu fri \
                      sat sun, ranges with -, lists with \",\", or \"daily\"; times HH:MM, \
                      24:00 allowed as an end)";

/// Longest value quoted back in an error message, in characters.
const ECHO_LIMIT: usize = 80;

/// systemd-timesyncd creates this file when it first synchronises the clock after boot.
const TIMESYNC_FLAG: &str = "/run/systemd/timesync/synchronized";

/// How far ahead [`Schedule::next_change`] looks, in days: two weeks, so a window whose only
/// edge this week falls into a DST gap is still found next week.
const HORIZON_DAYS: i64 = 15;

/// Local civil time as the schedule sees it: weekday (Mon=0..Sun=6) and minute of the day
/// (0..1440).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Civil {
    pub weekday: u8,
    pub minute: u16,
}

impl Civil {
    /// The civil time `weekday` (Mon=0) at `hour:minute`.
    pub fn at(weekday: u8, hour: u8, minute: u8) -> Civil {
        Civil {
            weekday,
            minute: u16::from(hour) * 60 + u16::from(minute),
        }
    }
}

/// `mon 08:00`, for logs.
impl fmt::Display for Civil {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let day = DAY_NAMES.get(usize::from(self.weekday)).unwrap_or(&"day?");
        write!(f, "{day} {}", Hhmm(self.minute))
    }
}

/// A weekly window, e.g. "mon-fri 08:00-18:00", "sat,sun 10:00-12:30", "fri 22:00-06:00"
/// (crosses midnight into the next day), "daily 07:00-19:00", "mon-sun 00:00-24:00".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Window {
    /// Bit `d` set: the window starts on weekday `d` (Mon=0).
    days: u8,
    /// Minute of the day the window opens (0..1440).
    start: u16,
    /// Minute of the day it closes (0..=1440); before `start` means on the next day.
    end: u16,
}

impl Window {
    /// Parses a window (see the module documentation). Day names and `daily` are
    /// case-insensitive; spaces around `,` and `-` are allowed.
    pub fn parse(text: &str) -> Result<Window, String> {
        let fail = |problem: String| format!("{}: {problem}; {SYNTAX}", echo(text));
        let trimmed = text.trim();
        let Some(split) = trimmed.find(|c: char| c.is_ascii_digit()) else {
            return Err(fail("no times (HH:MM-HH:MM)".into()));
        };
        let (days, times) = trimmed.split_at(split);
        let days = parse_days(days).map_err(fail)?;
        let times: String = times.chars().filter(|c| !c.is_whitespace()).collect();
        let Some((start, end)) = times.split_once('-') else {
            return Err(fail(format!(
                "{} is not a start and an end joined by -",
                echo(&times)
            )));
        };
        let start = parse_time(start).map_err(fail)?;
        let end = parse_time(end).map_err(fail)?;
        if start == MINUTES_PER_DAY {
            return Err(fail(
                "24:00 is only allowed as an end (start at 00:00)".into(),
            ));
        }
        if start == end {
            return Err(fail(format!(
                "the window starts and ends at {}, so it is empty (a whole day is 00:00-24:00)",
                Hhmm(start)
            )));
        }
        Ok(Window { days, start, end })
    }

    /// Whether the window covers `t` (start inclusive, end exclusive).
    pub fn contains(&self, t: Civil) -> bool {
        if t.weekday >= 7 || t.minute >= MINUTES_PER_DAY {
            return false;
        }
        if self.start < self.end {
            self.on(t.weekday) && (self.start..self.end).contains(&t.minute)
        } else {
            (self.on(t.weekday) && t.minute >= self.start)
                || (self.on((t.weekday + 6) % 7) && t.minute < self.end)
        }
    }

    /// Whether the window ends on the day after it starts.
    pub fn crosses_midnight(&self) -> bool {
        self.end < self.start
    }

    /// Whether the window starts on `weekday` (Mon=0).
    fn on(&self, weekday: u8) -> bool {
        self.days & (1 << weekday) != 0
    }

    /// The civil times at which [`Window::contains`] may change: every start and every end.
    fn edges(&self) -> impl Iterator<Item = Civil> + '_ {
        (0..7u8).filter(|&d| self.on(d)).flat_map(move |d| {
            let next = (d + 1) % 7;
            let end = match self.end {
                MINUTES_PER_DAY => Civil::at(next, 0, 0),
                end if end < self.start => Civil {
                    weekday: next,
                    minute: end,
                },
                end => Civil {
                    weekday: d,
                    minute: end,
                },
            };
            [
                Civil {
                    weekday: d,
                    minute: self.start,
                },
                end,
            ]
        })
    }
}

/// The canonical form, which parses back to the same window: `daily`, `mon-fri`, `sat,sun`,
/// `fri-mon`, `mon,wed`.
impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.days == 0x7f {
            f.write_str("daily")?;
        } else {
            // Start at a day that begins a run, so a run through Sunday into Monday stays
            // one range (fri-mon).
            let first = (0..7u8)
                .find(|&d| self.on(d) && !self.on((d + 6) % 7))
                .unwrap_or(0);
            let mut parts = Vec::new();
            let mut offset = 0;
            while offset < 7 {
                let day = (first + offset) % 7;
                if !self.on(day) {
                    offset += 1;
                    continue;
                }
                let mut len = 1;
                while offset + len < 7 && self.on((first + offset + len) % 7) {
                    len += 1;
                }
                let last = (day + len - 1) % 7;
                let (a, b) = (DAY_NAMES[usize::from(day)], DAY_NAMES[usize::from(last)]);
                parts.push(match len {
                    1 => a.to_owned(),
                    2 => format!("{a},{b}"),
                    _ => format!("{a}-{b}"),
                });
                offset += len;
            }
            f.write_str(&parts.join(","))?;
        }
        write!(f, " {}-{}", Hhmm(self.start), Hhmm(self.end))
    }
}

/// Minutes of the day as `HH:MM` (1440 is `24:00`).
struct Hhmm(u16);

impl fmt::Display for Hhmm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.0 / 60, self.0 % 60)
    }
}

/// `"mon-fri"`, `"sat, sun"`, `"fri-mon"` (wraps), `"daily"` → a bit set of weekdays.
fn parse_days(text: &str) -> Result<u8, String> {
    let text = text.trim().to_ascii_lowercase();
    if text.is_empty() {
        return Err("no days before the times".into());
    }
    if text == "daily" {
        return Ok(0x7f);
    }
    let mut days = 0u8;
    for item in text.split(',').map(str::trim) {
        if item.is_empty() {
            return Err("an empty item in the list of days".into());
        }
        match item.split_once('-') {
            None => days |= 1 << day(item)?,
            Some((from, to)) => {
                let (from, to) = (day(from.trim())?, day(to.trim())?);
                let mut d = from;
                loop {
                    days |= 1 << d;
                    if d == to {
                        break;
                    }
                    d = (d + 1) % 7;
                }
            }
        }
    }
    Ok(days)
}

/// `"mon"` → 0 … `"sun"` → 6.
fn day(name: &str) -> Result<u8, String> {
    match DAY_NAMES.iter().position(|&d| d == name) {
        Some(index) => Ok(index as u8),
        None if name == "daily" => Err("\"daily\" cannot be combined with other days".into()),
        None => Err(format!("unknown day {}", echo(name))),
    }
}

/// `"08:00"` → 480; `"24:00"` → 1440. Hours may have one digit, minutes need two.
fn parse_time(text: &str) -> Result<u16, String> {
    let malformed = || format!("time {} is not HH:MM", echo(text));
    let (hours, minutes) = text.split_once(':').ok_or_else(malformed)?;
    let digits = |s: &str, len: std::ops::RangeInclusive<usize>| {
        len.contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
    };
    if !digits(hours, 1..=2) || !digits(minutes, 2..=2) {
        return Err(malformed());
    }
    let (hours, minutes): (u16, u16) = (
        hours.parse().map_err(|_| malformed())?,
        minutes.parse().map_err(|_| malformed())?,
    );
    let minute = hours * 60 + minutes;
    if hours > 24 || minutes > 59 || minute > MINUTES_PER_DAY {
        return Err(format!(
            "time {} is out of range (00:00 to 23:59, or 24:00 as an end)",
            echo(text)
        ));
    }
    Ok(minute)
}

/// The configured schedule. Empty `unlock` = never held unlocked by schedule; empty `face` =
/// face unlock always allowed; a person absent from `people` follows `face`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Schedule {
    /// Windows in which the door is held unlocked.
    pub unlock: Vec<Window>,
    /// Windows in which face unlock is allowed (empty: always).
    pub face: Vec<Window>,
    /// Per-person windows for face unlock, replacing `face` for that person (empty: never).
    pub people: BTreeMap<String, Vec<Window>>,
}

impl Schedule {
    /// Whether a schedule window holds the door unlocked now. `None` (clock not
    /// synchronised) → false: windows that would unlock never engage on an unsynchronised
    /// clock.
    pub fn holds_unlocked(&self, now: Option<Civil>) -> bool {
        now.is_some_and(|t| self.unlock.iter().any(|w| w.contains(t)))
    }

    /// Whether face unlock is allowed for `person` now. `None` (clock not synchronised) →
    /// true: face unlock keeps working (documented choice, see the module documentation).
    pub fn face_allowed(&self, person: &str, now: Option<Civil>) -> bool {
        let Some(t) = now else { return true };
        match self.people.get(person) {
            Some(windows) => windows.iter().any(|w| w.contains(t)),
            None => self.face.is_empty() || self.face.iter().any(|w| w.contains(t)),
        }
    }

    /// Whether the schedule has no windows at all (nothing to enforce, nothing to wake for).
    pub fn is_empty(&self) -> bool {
        self.unlock.is_empty() && self.face.is_empty() && self.people.is_empty()
    }

    /// When the answer of holds_unlocked / face_allowed can next change, as a wall-clock
    /// Timestamp (so the service can wake exactly at window edges), given the zone.
    ///
    /// The first instant after `now` at which [`Schedule::holds_unlocked`], or
    /// [`Schedule::face_allowed`] for anybody (listed in `people` or not), differs from its
    /// answer at `now`. Across a DST change this is the instant the local clock reaches the
    /// edge (or jumps over it). `None` when nothing changes within two weeks: no windows, or
    /// windows that cover the whole week. Assumes a synchronised clock; while it is not,
    /// the answers do not depend on the time.
    pub fn next_change(&self, now: Timestamp, zone: &TimeZone) -> Option<Timestamp> {
        let mut edges: Vec<Civil> = self
            .unlock
            .iter()
            .chain(&self.face)
            .chain(self.people.values().flatten())
            .flat_map(Window::edges)
            .collect();
        if edges.is_empty() {
            return None;
        }
        edges.sort_unstable();
        edges.dedup();

        let limit = Timestamp::from_second(now.as_second().saturating_add(HORIZON_DAYS * 86_400))
            .unwrap_or(Timestamp::MAX);
        let mut candidates: Vec<Timestamp> = Vec::new();
        // From the day before today's local date: an edge yesterday can still lie ahead in
        // a repeated hour.
        let mut date = zone.to_datetime(now).date();
        date = date.yesterday().unwrap_or(date);
        for _ in 0..=HORIZON_DAYS + 1 {
            candidates.extend(edge_instants(date, &edges, zone));
            match date.tomorrow() {
                Ok(next) => date = next,
                Err(_) => break,
            }
        }
        // Jumps of the local clock: an edge inside a skipped hour takes effect at the jump,
        // and a repeated hour can leave and re-enter a window.
        candidates.extend(
            zone.following(now)
                .map(|transition| transition.timestamp())
                .take_while(|&t| t <= limit),
        );
        candidates.retain(|&t| t > now && t <= limit);
        candidates.sort_unstable();
        candidates.dedup();

        let current = self.answers(civil(now, zone));
        candidates
            .into_iter()
            .find(|&t| self.answers(civil(t, zone)) != current)
    }

    /// Every answer the schedule gives at `t`: held unlocked, face allowed for somebody not
    /// in `people`, face allowed for each person in `people`.
    fn answers(&self, t: Civil) -> Vec<bool> {
        let mut answers = vec![
            self.holds_unlocked(Some(t)),
            self.face.is_empty() || self.face.iter().any(|w| w.contains(t)),
        ];
        answers.extend(
            self.people
                .keys()
                .map(|person| self.face_allowed(person, Some(t))),
        );
        answers
    }
}

/// The instants at which the local clock of `zone` shows one of `edges` on `date`: none for a
/// time skipped by a DST jump, two for a time repeated.
fn edge_instants<'a>(
    date: Date,
    edges: &'a [Civil],
    zone: &'a TimeZone,
) -> impl Iterator<Item = Timestamp> + 'a {
    let weekday = date.weekday().to_monday_zero_offset() as u8;
    edges
        .iter()
        .filter(move |edge| edge.weekday == weekday)
        .flat_map(move |edge| {
            let at = date.at((edge.minute / 60) as i8, (edge.minute % 60) as i8, 0, 0);
            let offsets = match zone.to_ambiguous_timestamp(at).offset() {
                AmbiguousOffset::Unambiguous { offset } => [Some(offset), None],
                AmbiguousOffset::Fold { before, after } => [Some(before), Some(after)],
                AmbiguousOffset::Gap { .. } => [None, None],
            };
            offsets
                .into_iter()
                .flatten()
                .filter_map(move |offset| offset.to_timestamp(at).ok())
        })
}

/// Converts an instant to the zone's civil time (DST-correct, via jiff).
pub fn civil(at: Timestamp, zone: &TimeZone) -> Civil {
    let local = zone.to_datetime(at);
    Civil {
        weekday: local.weekday().to_monday_zero_offset() as u8,
        minute: local.hour() as u16 * 60 + local.minute() as u16,
    }
}

/// Looks up an IANA zone name ("Europe/Berlin", "UTC"); error text names the value and the
/// fix (e.g. `ls /usr/share/zoneinfo`, `timedatectl list-timezones`).
///
/// Zones come from the system's tz database (`/usr/share/zoneinfo`, Debian's `tzdata`,
/// or `$TZDIR`), which apt keeps current when governments change their DST rules. "UTC"
/// works without it.
pub fn zone(name: &str) -> Result<TimeZone, String> {
    let trimmed = name.trim();
    if trimmed.is_empty() {
        return Err(
            "the time zone is empty; write an IANA name such as \"Europe/Berlin\" or \"UTC\" \
             (list them with `timedatectl list-timezones` or `ls /usr/share/zoneinfo`)"
                .into(),
        );
    }
    if trimmed.eq_ignore_ascii_case("UTC") {
        return Ok(TimeZone::UTC);
    }
    let db = jiff::tz::db();
    match db.get(trimmed) {
        Ok(zone) => Ok(zone),
        Err(_) if db.is_definitively_empty() => Err(format!(
            "time zone {}: no time zone database found in /usr/share/zoneinfo; install it \
             (`apt install tzdata`) or use \"UTC\"",
            echo(name)
        )),
        Err(_) => Err(format!(
            "unknown time zone {}; write an IANA name such as \"Europe/Berlin\" or \"UTC\" \
             (list them with `timedatectl list-timezones` or `ls /usr/share/zoneinfo`)",
            echo(name)
        )),
    }
}

/// Whether the system clock is synchronised: systemd-timesyncd's flag file
/// /run/systemd/timesync/synchronized exists, or adjtimex(2) read-only (modes = 0) reports
/// no STA_UNSYNC. Any error → false.
///
/// * **systemd-timesyncd** (Raspberry Pi OS's default) creates the flag file at its first
///   synchronisation after boot; it stays until reboot, even if the server later becomes
///   unreachable (the kernel keeps the time).
/// * **chrony** (and ntpd) write no flag file; they clear the kernel's STA_UNSYNC, which
///   adjtimex(2) reads. The packaged unit sets `ProtectClock=yes`, which filters adjtimex
///   (`SystemCallErrorNumber=EPERM` makes it fail rather than kill the process), so under
///   that unit with chrony the clock counts as unsynchronised: schedule windows never hold
///   the door unlocked and face windows are not enforced. Use systemd-timesyncd, or create
///   the flag once chrony is synchronised (e.g. a oneshot `chronyc waitsync 0 && touch
///   /run/systemd/timesync/synchronized`).
pub fn clock_synchronized() -> bool {
    synchronized(Path::new(TIMESYNC_FLAG), kernel_clock_synchronized)
}

/// The decision of [`clock_synchronized`], with its two sources passed in.
fn synchronized(flag: &Path, kernel: impl FnOnce() -> Option<bool>) -> bool {
    flag.exists() || kernel().unwrap_or(false)
}

/// The kernel's view: `Some(true)` when no STA_UNSYNC, `None` when adjtimex fails (e.g.
/// filtered by seccomp).
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn kernel_clock_synchronized() -> Option<bool> {
    // SAFETY: `timex` is a plain C struct of integers, for which all-zero bytes are a valid
    // value. With `modes` = 0 adjtimex only reads the kernel's clock state into the struct
    // we own and pass by a valid, exclusive pointer; it changes nothing.
    let (state, status) = unsafe {
        let mut tx: libc::timex = std::mem::zeroed();
        tx.modes = 0;
        let state = libc::adjtimex(&mut tx);
        (state, tx.status)
    };
    if state == -1 {
        return None;
    }
    Some(state != libc::TIME_ERROR && status & libc::STA_UNSYNC == 0)
}

/// Not Linux: no kernel clock state to read.
#[cfg(not(target_os = "linux"))]
fn kernel_clock_synchronized() -> Option<bool> {
    None
}

/// `text` quoted for a message, at most [`ECHO_LIMIT`] characters.
fn echo(text: &str) -> String {
    match text.char_indices().nth(ECHO_LIMIT) {
        None => format!("{text:?}"),
        Some((cut, _)) => format!("{:?}… ({} bytes)", &text[..cut], text.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MON: u8 = 0;
    const TUE: u8 = 1;
    const WED: u8 = 2;
    const THU: u8 = 3;
    const FRI: u8 = 4;
    const SAT: u8 = 5;
    const SUN: u8 = 6;

    fn at(weekday: u8, hour: u8, minute: u8) -> Civil {
        Civil::at(weekday, hour, minute)
    }

    fn window(text: &str) -> Window {
        Window::parse(text).unwrap_or_else(|e| panic!("{e}"))
    }

    fn windows(texts: &[&str]) -> Vec<Window> {
        texts.iter().map(|t| window(t)).collect()
    }

    fn ts(text: &str) -> Timestamp {
        text.parse()
            .unwrap_or_else(|e| panic!("timestamp {text}: {e}"))
    }

    fn berlin() -> TimeZone {
        zone("Europe/Berlin").expect("the tz database has Europe/Berlin")
    }

    fn new_york() -> TimeZone {
        zone("America/New_York").expect("the tz database has America/New_York")
    }

    #[test]
    fn valid_windows_parse_and_display_canonically_and_round_trip() {
        let cases = [
            ("mon-fri 08:00-18:00", "mon-fri 08:00-18:00"),
            ("sat,sun 10:00-12:30", "sat,sun 10:00-12:30"),
            ("fri 22:00-06:00", "fri 22:00-06:00"),
            ("daily 07:00-19:00", "daily 07:00-19:00"),
            ("mon-sun 00:00-24:00", "daily 00:00-24:00"),
            ("  Sat , SUN  8:00 - 9:30 ", "sat,sun 08:00-09:30"),
            ("DAILY 00:00-00:01", "daily 00:00-00:01"),
            ("fri-mon 09:00-17:00", "fri-mon 09:00-17:00"),
            ("sat-fri 09:00-17:00", "daily 09:00-17:00"),
            ("tue-tue 01:00-02:00", "tue 01:00-02:00"),
            ("mon,wed,fri 09:00-10:00", "mon,wed,fri 09:00-10:00"),
            ("sun,mon 09:00-10:00", "sun,mon 09:00-10:00"),
            ("mon-wed,fri 22:00-00:00", "mon-wed,fri 22:00-00:00"),
            ("mon,tue,wed 23:59-24:00", "mon-wed 23:59-24:00"),
        ];
        for (text, canonical) in cases {
            let parsed = window(text);
            assert_eq!(parsed.to_string(), canonical, "{text}");
            assert_eq!(window(canonical), parsed, "{text} round-trips");
        }
    }

    #[test]
    fn invalid_windows_are_refused_saying_what_is_wrong_and_the_syntax() {
        let cases = [
            ("mon-fry 08:00-18:00", "unknown day \"fry\""),
            ("monday 08:00-18:00", "unknown day \"monday\""),
            ("08:00-18:00", "no days before the times"),
            ("mon-fri", "no times"),
            ("", "no times"),
            (
                "mon-fri 08:00",
                "\"08:00\" is not a start and an end joined by -",
            ),
            ("mon-fri 25:00-18:00", "time \"25:00\" is out of range"),
            ("mon-fri 08:60-18:00", "time \"08:60\" is out of range"),
            ("mon-fri 08:00-24:30", "time \"24:30\" is out of range"),
            ("mon-fri 24:00-06:00", "24:00 is only allowed as an end"),
            (
                "mon 08:00-08:00",
                "starts and ends at 08:00, so it is empty",
            ),
            (
                "daily 00:00-00:00",
                "starts and ends at 00:00, so it is empty",
            ),
            ("mon 8-18", "time \"8\" is not HH:MM"),
            ("mon 08:0-18:00", "time \"08:0\" is not HH:MM"),
            ("mon 008:00-18:00", "time \"008:00\" is not HH:MM"),
            ("mon 08:00-18:00-19:00", "time \"18:00-19:00\" is not HH:MM"),
            ("mon,,tue 08:00-09:00", "an empty item in the list of days"),
            ("mon- 08:00-09:00", "unknown day \"\""),
            ("daily,mon 08:00-09:00", "\"daily\" cannot be combined"),
        ];
        for (text, problem) in cases {
            let err = Window::parse(text).expect_err(text);
            assert!(err.contains(problem), "{text}: {err}");
            assert!(err.ends_with(SYNTAX), "{text}: {err}");
        }
        assert_eq!(
            Window::parse("mon-fry 08:00-18:00").unwrap_err(),
            "\"mon-fry 08:00-18:00\": unknown day \"fry\"; write windows like \
             \"mon-fri 08:00-18:00\" (days: mon tue wed thu fri sat sun, ranges with -, \
             lists with \",\", or \"daily\"; times HH:MM, 24:00 allowed as an end)"
        );
    }

    #[test]
    fn a_huge_invalid_window_is_clipped_in_the_message() {
        let text = format!("mon {}", "x".repeat(10_000));
        let err = Window::parse(&text).unwrap_err();
        assert!(err.len() < 600, "{} bytes", err.len());
        assert!(err.contains("(10004 bytes)"), "{err}");
    }

    #[test]
    fn a_window_contains_its_start_but_not_its_end() {
        let w = window("mon-fri 08:00-18:00");
        let cases = [
            (at(MON, 7, 59), false),
            (at(MON, 8, 0), true),
            (at(WED, 12, 0), true),
            (at(FRI, 17, 59), true),
            (at(FRI, 18, 0), false),
            (at(SAT, 8, 0), false),
            (at(SUN, 12, 0), false),
            (at(MON, 0, 0), false),
            (at(MON, 23, 59), false),
        ];
        for (t, expected) in cases {
            assert_eq!(w.contains(t), expected, "{w} at {t}");
        }
    }

    #[test]
    fn windows_crossing_midnight_continue_on_the_next_day() {
        let cases = [
            ("fri 22:00-06:00", at(FRI, 21, 59), false),
            ("fri 22:00-06:00", at(FRI, 22, 0), true),
            ("fri 22:00-06:00", at(FRI, 23, 59), true),
            ("fri 22:00-06:00", at(SAT, 0, 0), true),
            ("fri 22:00-06:00", at(SAT, 5, 59), true),
            ("fri 22:00-06:00", at(SAT, 6, 0), false),
            ("fri 22:00-06:00", at(FRI, 5, 0), false), // Thursday night is not in it
            ("fri 22:00-06:00", at(SAT, 22, 0), false),
            // Sunday night wraps into Monday morning.
            ("sun 22:00-06:00", at(SUN, 23, 59), true),
            ("sun 22:00-06:00", at(MON, 0, 0), true),
            ("sun 22:00-06:00", at(MON, 5, 59), true),
            ("sun 22:00-06:00", at(MON, 6, 0), false),
            ("sun 22:00-06:00", at(SUN, 5, 0), false),
            // Ending at midnight: 00:00 and 24:00 are the same edge.
            ("daily 22:00-00:00", at(TUE, 23, 59), true),
            ("daily 22:00-00:00", at(WED, 0, 0), false),
            ("mon 22:00-24:00", at(MON, 23, 59), true),
            ("mon 22:00-24:00", at(TUE, 0, 0), false),
            // A whole day, and nothing of its neighbours.
            ("thu 00:00-24:00", at(WED, 23, 59), false),
            ("thu 00:00-24:00", at(THU, 0, 0), true),
            ("thu 00:00-24:00", at(THU, 23, 59), true),
            ("thu 00:00-24:00", at(FRI, 0, 0), false),
        ];
        for (text, t, expected) in cases {
            assert_eq!(window(text).contains(t), expected, "{text} at {t}");
        }
        assert!(window("fri 22:00-06:00").crosses_midnight());
        assert!(!window("fri 22:00-24:00").crosses_midnight());
    }

    #[test]
    fn out_of_range_civil_times_are_in_no_window() {
        let w = window("daily 00:00-24:00");
        assert!(!w.contains(Civil {
            weekday: 7,
            minute: 0
        }));
        assert!(!w.contains(Civil {
            weekday: 0,
            minute: MINUTES_PER_DAY
        }));
    }

    #[test]
    fn unlock_windows_hold_the_door_unlocked_only_inside_them() {
        let schedule = Schedule {
            unlock: windows(&["mon-fri 09:00-12:00", "mon-fri 13:00-17:00"]),
            ..Schedule::default()
        };
        let cases = [
            (at(MON, 8, 59), false),
            (at(MON, 9, 0), true),
            (at(MON, 12, 30), false),
            (at(MON, 16, 59), true),
            (at(SAT, 10, 0), false),
        ];
        for (t, expected) in cases {
            assert_eq!(schedule.holds_unlocked(Some(t)), expected, "{t}");
        }
        let never = Schedule::default();
        assert!(!never.holds_unlocked(Some(at(MON, 10, 0))));
    }

    #[test]
    fn face_unlock_follows_face_windows_or_the_persons_own() {
        let schedule = Schedule {
            unlock: Vec::new(),
            face: windows(&["daily 06:00-22:00"]),
            people: BTreeMap::from([
                ("contractor".into(), windows(&["mon-fri 08:00-18:00"])),
                ("guard".into(), windows(&["daily 20:00-06:00"])),
                ("banned".into(), Vec::new()),
            ]),
        };
        let cases = [
            // Not listed: follows `face`.
            ("ada", at(SAT, 6, 0), true),
            ("ada", at(SAT, 5, 59), false),
            ("ada", at(SUN, 21, 59), true),
            ("ada", at(SUN, 22, 0), false),
            // Listed: their own windows, narrower than `face`...
            ("contractor", at(MON, 8, 0), true),
            ("contractor", at(FRI, 17, 59), true),
            ("contractor", at(FRI, 18, 0), false),
            ("contractor", at(SAT, 10, 0), false),
            ("contractor", at(MON, 7, 59), false),
            // ...or outside it.
            ("guard", at(TUE, 3, 0), true),
            ("guard", at(TUE, 12, 0), false),
            // Listed with no windows: never.
            ("banned", at(TUE, 12, 0), false),
        ];
        for (person, t, expected) in cases {
            assert_eq!(
                schedule.face_allowed(person, Some(t)),
                expected,
                "{person} at {t}"
            );
        }
        let unrestricted = Schedule::default();
        assert!(unrestricted.face_allowed("ada", Some(at(SUN, 3, 0))));
    }

    #[test]
    fn an_unsynchronised_clock_never_holds_the_door_but_keeps_face_unlock() {
        let schedule = Schedule {
            unlock: windows(&["daily 00:00-24:00"]),
            face: windows(&["mon 08:00-09:00"]),
            people: BTreeMap::from([("banned".into(), Vec::new())]),
        };
        assert!(!schedule.holds_unlocked(None));
        for person in ["ada", "banned"] {
            assert!(schedule.face_allowed(person, None), "{person}");
        }
    }

    #[test]
    fn civil_time_follows_the_zones_dst_changes() {
        let cases = [
            // Berlin, spring: 02:00 CET jumps to 03:00 CEST at 01:00 UTC.
            (berlin(), "2026-03-29T00:59:59Z", at(SUN, 1, 59)),
            (berlin(), "2026-03-29T01:00:00Z", at(SUN, 3, 0)),
            (berlin(), "2026-03-28T23:00:00Z", at(SUN, 0, 0)),
            // Berlin, autumn: 03:00 CEST falls back to 02:00 CET at 01:00 UTC.
            (berlin(), "2026-10-25T00:30:00Z", at(SUN, 2, 30)),
            (berlin(), "2026-10-25T00:59:59Z", at(SUN, 2, 59)),
            (berlin(), "2026-10-25T01:00:00Z", at(SUN, 2, 0)),
            (berlin(), "2026-10-25T01:30:00Z", at(SUN, 2, 30)),
            (berlin(), "2026-10-25T02:00:00Z", at(SUN, 3, 0)),
            // New York: 02:00 EST -> 03:00 EDT at 07:00 UTC; 02:00 EDT -> 01:00 EST at 06:00.
            (new_york(), "2026-03-08T06:59:59Z", at(SUN, 1, 59)),
            (new_york(), "2026-03-08T07:00:00Z", at(SUN, 3, 0)),
            (new_york(), "2026-11-01T05:30:00Z", at(SUN, 1, 30)),
            (new_york(), "2026-11-01T06:30:00Z", at(SUN, 1, 30)),
            (new_york(), "2026-11-01T05:00:00Z", at(SUN, 1, 0)),
            (new_york(), "2026-11-02T04:59:59Z", at(SUN, 23, 59)),
            (new_york(), "2026-11-02T05:00:00Z", at(MON, 0, 0)),
            (TimeZone::UTC, "2026-03-29T01:00:00Z", at(SUN, 1, 0)),
        ];
        for (zone, instant, expected) in cases {
            assert_eq!(
                civil(ts(instant), &zone),
                expected,
                "{instant} in {:?}",
                zone.iana_name()
            );
        }
    }

    #[test]
    fn a_window_opens_at_local_eight_on_both_sides_of_a_dst_change() {
        let schedule = Schedule {
            unlock: windows(&["daily 08:00-18:00"]),
            ..Schedule::default()
        };
        // (zone, now, next change, open from then on)
        let cases = [
            // Berlin spring: Saturday 08:00 CET is 07:00 UTC, Sunday 08:00 CEST is 06:00 UTC.
            (
                berlin(),
                "2026-03-28T05:00:00Z",
                "2026-03-28T07:00:00Z",
                true,
            ),
            (
                berlin(),
                "2026-03-28T07:00:00Z",
                "2026-03-28T17:00:00Z",
                false,
            ),
            (
                berlin(),
                "2026-03-28T17:00:00Z",
                "2026-03-29T06:00:00Z",
                true,
            ),
            (
                berlin(),
                "2026-03-29T06:00:00Z",
                "2026-03-29T16:00:00Z",
                false,
            ),
            // Berlin autumn: Saturday 08:00 CEST is 06:00 UTC, Sunday 08:00 CET is 07:00 UTC.
            (
                berlin(),
                "2026-10-24T05:00:00Z",
                "2026-10-24T06:00:00Z",
                true,
            ),
            (
                berlin(),
                "2026-10-24T16:00:00Z",
                "2026-10-25T07:00:00Z",
                true,
            ),
            (
                berlin(),
                "2026-10-25T07:00:00Z",
                "2026-10-25T17:00:00Z",
                false,
            ),
            // New York spring: 08:00 EST is 13:00 UTC, 08:00 EDT is 12:00 UTC.
            (
                new_york(),
                "2026-03-07T14:00:00Z",
                "2026-03-07T23:00:00Z",
                false,
            ),
            (
                new_york(),
                "2026-03-07T23:00:00Z",
                "2026-03-08T12:00:00Z",
                true,
            ),
            // New York autumn: 08:00 EDT is 12:00 UTC, 08:00 EST is 13:00 UTC.
            (
                new_york(),
                "2026-10-31T22:00:00Z",
                "2026-11-01T13:00:00Z",
                true,
            ),
            (
                new_york(),
                "2026-11-01T13:00:00Z",
                "2026-11-01T23:00:00Z",
                false,
            ),
        ];
        for (zone, now, next, open) in cases {
            let next = ts(next);
            assert_eq!(
                schedule.next_change(ts(now), &zone),
                Some(next),
                "after {now} in {:?}",
                zone.iana_name()
            );
            let just_before = civil(Timestamp::from_second(next.as_second() - 1).unwrap(), &zone);
            assert_eq!(schedule.holds_unlocked(Some(just_before)), !open, "{next}");
            assert_eq!(
                schedule.holds_unlocked(Some(civil(next, &zone))),
                open,
                "{next}"
            );
        }
    }

    /// Follows `next_change` from `from`, `count` times.
    fn changes(schedule: &Schedule, zone: &TimeZone, from: &str, count: usize) -> Vec<String> {
        let mut now = ts(from);
        let mut out = Vec::new();
        for _ in 0..count {
            match schedule.next_change(now, zone) {
                Some(next) => {
                    out.push(next.to_string());
                    now = next;
                }
                None => break,
            }
        }
        out
    }

    #[test]
    fn an_edge_in_the_skipped_hour_takes_effect_at_the_jump() {
        // 02:30 does not exist in Berlin on 2026-03-29: the clock jumps from 02:00 to 03:00
        // (01:00 UTC), right into the window.
        let schedule = Schedule {
            unlock: windows(&["sun 02:30-04:00"]),
            ..Schedule::default()
        };
        assert_eq!(
            changes(&schedule, &berlin(), "2026-03-28T12:00:00Z", 3),
            [
                "2026-03-29T01:00:00Z", // the jump: local 03:00, inside
                "2026-03-29T02:00:00Z", // 04:00 CEST
                "2026-04-05T00:30:00Z", // next Sunday 02:30 CEST
            ]
        );
        // A window entirely inside the skipped hour is skipped; the next week's counts.
        let skipped = Schedule {
            unlock: windows(&["sun 02:10-02:50"]),
            ..Schedule::default()
        };
        assert_eq!(
            changes(&skipped, &berlin(), "2026-03-28T12:00:00Z", 1),
            ["2026-04-05T00:10:00Z"]
        );
    }

    #[test]
    fn a_window_in_the_repeated_hour_opens_twice() {
        // 02:00-03:00 happens twice in Berlin on 2026-10-25: 00:00-01:00 and 01:00-02:00 UTC.
        let schedule = Schedule {
            unlock: windows(&["sun 02:30-02:45"]),
            ..Schedule::default()
        };
        assert_eq!(
            changes(&schedule, &berlin(), "2026-10-24T12:00:00Z", 5),
            [
                "2026-10-25T00:30:00Z",
                "2026-10-25T00:45:00Z",
                "2026-10-25T01:30:00Z",
                "2026-10-25T01:45:00Z",
                "2026-11-01T01:30:00Z", // next Sunday, CET
            ]
        );
        // A window around the change closes at the fall-back and opens again.
        let around = Schedule {
            unlock: windows(&["sun 02:30-03:30"]),
            ..Schedule::default()
        };
        assert_eq!(
            changes(&around, &berlin(), "2026-10-24T12:00:00Z", 4),
            [
                "2026-10-25T00:30:00Z", // 02:30 CEST: opens
                "2026-10-25T01:00:00Z", // 03:00 CEST becomes 02:00 CET: before the window
                "2026-10-25T01:30:00Z", // 02:30 CET: opens again
                "2026-10-25T02:30:00Z", // 03:30 CET: closes
            ]
        );
    }

    #[test]
    fn next_change_at_midnight_and_across_the_week() {
        let utc = TimeZone::UTC;
        // 2026-03-06 is a Friday, 2026-03-08 a Sunday.
        let cases: [(&[&str], &str, Option<&str>); 8] = [
            (
                &["fri 22:00-06:00"],
                "2026-03-06T21:00:00Z",
                Some("2026-03-06T22:00:00Z"),
            ),
            (
                &["fri 22:00-06:00"],
                "2026-03-06T22:00:00Z", // exactly at an edge: the next one
                Some("2026-03-07T06:00:00Z"),
            ),
            (
                &["sun 22:00-06:00"],
                "2026-03-08T23:00:00Z",
                Some("2026-03-09T06:00:00Z"),
            ),
            (
                &["mon 22:00-24:00"],
                "2026-03-09T23:00:00Z",
                Some("2026-03-10T00:00:00Z"),
            ),
            (
                &["sat 12:00-13:00"],
                "2026-03-07T13:00:00Z", // just closed: a week ahead
                Some("2026-03-14T12:00:00Z"),
            ),
            // Adjoining windows: the answer does not change at 12:00.
            (
                &["mon 08:00-12:00", "mon 12:00-18:00"],
                "2026-03-09T09:00:00Z",
                Some("2026-03-09T18:00:00Z"),
            ),
            // Always open or never configured: nothing to wake for.
            (&["daily 00:00-24:00"], "2026-03-09T09:00:00Z", None),
            (&[], "2026-03-09T09:00:00Z", None),
        ];
        for (unlock, now, expected) in cases {
            let schedule = Schedule {
                unlock: windows(unlock),
                ..Schedule::default()
            };
            assert_eq!(
                schedule.next_change(ts(now), &utc),
                expected.map(ts),
                "{unlock:?} after {now}"
            );
        }
    }

    #[test]
    fn next_change_counts_face_and_per_person_windows() {
        let utc = TimeZone::UTC;
        // 2026-03-09 is a Monday.
        let contractor = Schedule {
            people: BTreeMap::from([("contractor".into(), windows(&["mon-fri 08:00-18:00"]))]),
            ..Schedule::default()
        };
        assert_eq!(
            contractor.next_change(ts("2026-03-09T07:00:00Z"), &utc),
            Some(ts("2026-03-09T08:00:00Z"))
        );
        let face = Schedule {
            face: windows(&["daily 06:00-22:00"]),
            ..Schedule::default()
        };
        assert_eq!(
            face.next_change(ts("2026-03-09T07:00:00Z"), &utc),
            Some(ts("2026-03-09T22:00:00Z"))
        );
    }

    #[test]
    fn zones_are_looked_up_by_iana_name_and_unknown_ones_say_how_to_list_them() {
        for (name, iana) in [
            ("Europe/Berlin", "Europe/Berlin"),
            (" America/New_York ", "America/New_York"),
            ("UTC", "UTC"),
            ("utc", "UTC"),
        ] {
            let zone = zone(name).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(zone.iana_name(), Some(iana), "{name}");
        }
        for (name, problem) in [
            ("Europe/Berlinn", "unknown time zone \"Europe/Berlinn\""),
            ("CEST+2", "unknown time zone \"CEST+2\""),
            ("../../etc/passwd", "unknown time zone"),
            ("", "the time zone is empty"),
        ] {
            let err = zone(name).expect_err(name);
            assert!(err.contains(problem), "{name}: {err}");
            assert!(err.contains("timedatectl list-timezones"), "{err}");
            assert!(err.contains("ls /usr/share/zoneinfo"), "{err}");
        }
    }

    #[test]
    fn the_clock_counts_as_synchronised_by_the_timesyncd_flag_or_the_kernel() {
        let dir = tempfile::tempdir().unwrap();
        let present = dir.path().join("synchronized");
        std::fs::write(&present, b"").unwrap();
        let absent = dir.path().join("absent");
        let cases = [
            (&present, None, true),
            (&present, Some(false), true),
            (&absent, Some(true), true),
            (&absent, Some(false), false),
            (&absent, None, false), // adjtimex failed, e.g. filtered
        ];
        for (flag, kernel, expected) in cases {
            assert_eq!(
                synchronized(flag, || kernel),
                expected,
                "{flag:?} {kernel:?}"
            );
        }
        // The real sources answer without failing, whatever the machine's state.
        let _ = clock_synchronized();
    }
}

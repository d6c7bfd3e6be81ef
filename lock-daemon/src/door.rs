//! The door controller: a pure state machine over the strike, the door contact, the exit
//! button, the fire-release input and the operating mode. Time is passed in, never read.
//!
//! The face [`Policy`](crate::policy::Policy) decides *who* was confirmed at the door; this
//! module decides whether and for how long the strike is released, and what the door did.
//!
//! # Rules
//!
//! * **Releases.** The strike is released (Unlocked) while any of these holds:
//!   - a *grant*: a confirmed face (`unlock`), an exit request (`exit`), or a manual unlock
//!     from the control socket or another front-end, each for its own time;
//!   - the mode is `unlocked` (held open, e.g. reception hours);
//!   - a schedule window holds the door unlocked (not in lockdown; never on an
//!     unsynchronised clock, which [`crate::schedule`] decides);
//!   - the fire-release input is asserted (in every mode: egress is a safety rule).
//! * **Modes.** `normal`; `lockdown`: faces and manual unlocks are refused, schedule windows
//!   do not hold the door, but the exit button and fire release still work; `unlocked`: held
//!   unlocked. Entering lockdown ends face and manual grants at once.
//! * **Door contact** (when one is wired):
//!   - Opened during a face grant → `entry` for that person. While the door stays open the
//!     grant is kept, so the strike is not re-energised against an open door, but never for
//!     longer than `held_open` after it opened.
//!   - Closed after being opened under a grant → re-lock at once (`relock_on_close`), or else
//!     at the grant's own end, whichever is later; never later than `unlock` after it
//!     closed.
//!   - Opened while nothing releases the strike → `forced-open` alarm. A door opening within
//!     [`FORCED_GRACE`] of a release ending (someone pulling as it re-locks) is not forced.
//!   - Open longer than `held_open` → `held-open` alarm, cleared (and reported) when it
//!     closes. Not raised while the door is held unlocked on purpose (mode, schedule, fire).
//!   - A read error makes the door state unknown: no entry, forced or held-open decisions
//!     are made on it until the contact reports again.
//! * Without a door contact, grants end on time only, exactly as before door inputs existed.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

use crate::relay::LockState;

/// A door opening this soon after a release ended is not reported as forced.
pub const FORCED_GRACE: Duration = Duration::from_secs(1);

/// The operating mode, persisted across restarts and changed through the control socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Faces, exit button and manual unlocks work as configured.
    #[default]
    Normal,
    /// Faces and manual unlocks never release the door; the exit button and fire release do.
    Lockdown,
    /// The door is held unlocked.
    Unlocked,
}

impl Mode {
    pub const ALL: [Mode; 3] = [Mode::Normal, Mode::Lockdown, Mode::Unlocked];

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Normal => "normal",
            Mode::Lockdown => "lockdown",
            Mode::Unlocked => "unlocked",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Mode {
    type Err = String;

    fn from_str(s: &str) -> Result<Mode, String> {
        Mode::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| format!("unknown mode {s:?}; use normal, lockdown or unlocked"))
    }
}

/// What the door contact says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contact {
    Open,
    Closed,
}

impl Contact {
    pub fn as_str(self) -> &'static str {
        match self {
            Contact::Open => "open",
            Contact::Closed => "closed",
        }
    }
}

/// The door controller's parameters (validated by `config`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DoorConfig {
    /// How long a face grant releases the strike.
    pub unlock: Duration,
    /// How long an exit request releases the strike.
    pub exit: Duration,
    /// Open longer than this raises the held-open alarm.
    pub held_open: Duration,
    /// Re-lock as soon as the door closes after an entry.
    pub relock_on_close: bool,
    /// The longest a manual unlock may ask for.
    pub max_manual: Duration,
}

/// Why the strike is released for a while.
#[derive(Debug, Clone, PartialEq)]
pub enum GrantKind {
    /// A confirmed, enrolled face.
    Face { person: String },
    /// The exit button (request to exit).
    Exit,
    /// A manual unlock from a front-end, naming who asked and why.
    Manual { by: String, reason: String },
}

impl fmt::Display for GrantKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GrantKind::Face { person } => write!(f, "{person}"),
            GrantKind::Exit => f.write_str("exit"),
            GrantKind::Manual { by, .. } => write!(f, "manual unlock by {by}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Grant {
    kind: GrantKind,
    until: Instant,
    /// When the door opened under this grant (None: not opened yet).
    opened: Option<Instant>,
}

/// What the caller must do or record, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum DoorEvent {
    /// Drive the strike to this state (only emitted on a change).
    Strike(LockState),
    /// A face grant was refused by the mode or the schedule.
    Refused { request: String, reason: String },
    /// A manual unlock was granted.
    ManualUnlock {
        by: String,
        reason: String,
        secs: f64,
    },
    /// The exit button released the door.
    Exit,
    /// The door opened under a face grant.
    Entry { person: String },
    /// The door opened (any other legitimate reason, named).
    Opened { why: String },
    /// The door closed.
    Closed,
    /// The door opened while nothing released the strike.
    ForcedOpen,
    /// The door has been open longer than `held_open`.
    HeldOpen { secs: f64 },
    /// The held-open alarm ended: the door closed.
    HeldOpenEnded { secs: f64 },
    /// A grant ended and nothing else holds the door: locked again.
    Relocked { after: String, why: &'static str },
    /// The mode changed.
    ModeChanged { from: Mode, to: Mode, by: String },
    /// The fire-release input changed.
    FireRelease { asserted: bool },
    /// An input could not be read; the door state is unknown until it reports again.
    InputError { message: String },
}

/// What the status snapshot shows of the door.
#[derive(Debug, Clone, PartialEq)]
pub struct DoorStatus {
    pub strike: LockState,
    pub mode: Mode,
    /// `None`: no contact wired, or its state is unknown after a read error.
    pub contact: Option<Contact>,
    pub held_open_alarm: bool,
    /// Why the strike is released, when it is.
    pub released_by: Option<String>,
    pub fire: bool,
}

/// The door controller.
#[derive(Debug, Clone)]
pub struct Door {
    config: DoorConfig,
    mode: Mode,
    contact: Option<Contact>,
    /// When the door was last seen opening (while it is open).
    opened_at: Option<Instant>,
    held_alarm: bool,
    grant: Option<Grant>,
    fire: bool,
    schedule_holds: bool,
    /// The strike state last emitted.
    strike: LockState,
    /// When the strike last went from released to locked (for the forced-open grace).
    relocked_at: Option<Instant>,
}

impl Door {
    /// A door controller with the strike locked, in `mode`.
    pub fn new(config: DoorConfig, mode: Mode) -> Door {
        Door {
            config,
            mode,
            contact: None,
            opened_at: None,
            held_alarm: false,
            grant: None,
            fire: false,
            schedule_holds: false,
            strike: LockState::Locked,
            relocked_at: None,
        }
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    pub fn strike(&self) -> LockState {
        self.strike
    }

    pub fn status(&self) -> DoorStatus {
        DoorStatus {
            strike: self.strike,
            mode: self.mode,
            contact: self.contact,
            held_open_alarm: self.held_alarm,
            released_by: self.released_by(),
            fire: self.fire,
        }
    }

    fn released_by(&self) -> Option<String> {
        if self.fire {
            Some("fire release".into())
        } else if self.mode == Mode::Unlocked {
            Some("mode unlocked".into())
        } else if self.schedule_holds && self.mode != Mode::Lockdown {
            Some("schedule".into())
        } else {
            self.grant.as_ref().map(|g| g.kind.to_string())
        }
    }

    /// Whether the door is held unlocked on purpose (not by a timed grant).
    fn held_unlocked(&self) -> bool {
        self.fire
            || self.mode == Mode::Unlocked
            || (self.schedule_holds && self.mode != Mode::Lockdown)
    }

    fn door_open(&self) -> bool {
        self.contact == Some(Contact::Open)
    }

    /// When [`tick`](Door::tick) next has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut consider = |t: Instant| next = Some(next.map_or(t, |n| n.min(t)));
        if let Some(grant) = &self.grant {
            match grant.opened {
                Some(opened) if self.door_open() => consider(opened + self.config.held_open),
                _ => consider(grant.until),
            }
        }
        if let (Some(opened), false) = (self.opened_at, self.held_alarm) {
            if self.door_open() {
                consider(opened + self.config.held_open);
            }
        }
        next
    }

    /// A face was confirmed by the policy. `schedule_allows`: whether the schedule lets this
    /// person in now.
    pub fn face(&mut self, now: Instant, person: &str, schedule_allows: bool) -> Vec<DoorEvent> {
        let mut events = self.tick(now, self.schedule_holds);
        let refusal = match (self.mode, schedule_allows) {
            (Mode::Lockdown, _) => Some("lockdown: faces do not open the door"),
            (_, false) => Some("outside the schedule's face-unlock hours"),
            _ => None,
        };
        if let Some(reason) = refusal {
            events.push(DoorEvent::Refused {
                request: format!("face unlock for {person}"),
                reason: reason.into(),
            });
            return events;
        }
        self.grant(
            now,
            GrantKind::Face {
                person: person.into(),
            },
            self.config.unlock,
        );
        self.settle(now, &mut events);
        events
    }

    /// The exit button was pressed. Works in every mode.
    pub fn exit(&mut self, now: Instant) -> Vec<DoorEvent> {
        let mut events = self.tick(now, self.schedule_holds);
        self.grant(now, GrantKind::Exit, self.config.exit);
        events.push(DoorEvent::Exit);
        self.settle(now, &mut events);
        events
    }

    /// A manual unlock for `secs` from a front-end. Refused in lockdown and when asking for
    /// more than the configured maximum.
    pub fn manual_unlock(
        &mut self,
        now: Instant,
        secs: Duration,
        by: &str,
        reason: &str,
    ) -> Result<Vec<DoorEvent>, String> {
        if self.mode == Mode::Lockdown {
            return Err("refused: the lock is in lockdown; change the mode first".into());
        }
        if secs.is_zero() || secs > self.config.max_manual {
            return Err(format!(
                "refused: {:.1} s is outside 0..{:.0} s (door.max_manual_unlock_secs)",
                secs.as_secs_f64(),
                self.config.max_manual.as_secs_f64()
            ));
        }
        let mut events = self.tick(now, self.schedule_holds);
        self.grant(
            now,
            GrantKind::Manual {
                by: by.into(),
                reason: reason.into(),
            },
            secs,
        );
        events.push(DoorEvent::ManualUnlock {
            by: by.into(),
            reason: reason.into(),
            secs: secs.as_secs_f64(),
        });
        self.settle(now, &mut events);
        Ok(events)
    }

    /// Locks now: ends the timed grant (a face, the exit button or a manual unlock). Refused
    /// while something holds the door unlocked on purpose (fire release, mode unlocked, the
    /// schedule), saying what; the door is already locked when nothing holds it.
    pub fn lock_now(&mut self, now: Instant) -> Result<Vec<DoorEvent>, String> {
        let mut events = self.tick(now, self.schedule_holds);
        if self.held_unlocked() {
            return Err(format!(
                "refused: the door is held unlocked by {}; {}",
                self.released_by().unwrap_or_default(),
                if self.fire {
                    "the fire release overrides every command"
                } else {
                    "change the mode (or the schedule) first"
                }
            ));
        }
        self.end_grant(now, "locked on command", &mut events);
        self.settle(now, &mut events);
        Ok(events)
    }

    /// Changes the mode. Entering lockdown ends face and manual grants at once.
    pub fn set_mode(&mut self, now: Instant, mode: Mode, by: &str) -> Vec<DoorEvent> {
        let mut events = self.tick(now, self.schedule_holds);
        if mode == self.mode {
            return events;
        }
        let from = self.mode;
        self.mode = mode;
        events.push(DoorEvent::ModeChanged {
            from,
            to: mode,
            by: by.into(),
        });
        if mode == Mode::Lockdown
            && matches!(
                self.grant.as_ref().map(|g| &g.kind),
                Some(GrantKind::Face { .. } | GrantKind::Manual { .. })
            )
        {
            self.end_grant(now, "lockdown", &mut events);
        }
        self.settle(now, &mut events);
        events
    }

    /// The door contact reported a state.
    pub fn contact(&mut self, now: Instant, contact: Contact) -> Vec<DoorEvent> {
        let mut events = self.tick(now, self.schedule_holds);
        let previous = self.contact;
        self.contact = Some(contact);
        match (previous, contact) {
            (Some(Contact::Open), Contact::Open) | (Some(Contact::Closed), Contact::Closed) => {}
            // First report (at start, or after a read error): just the state.
            (None, Contact::Open) => self.opened_at = Some(now),
            (None, Contact::Closed) => self.opened_at = None,
            (Some(Contact::Closed), Contact::Open) => {
                self.opened_at = Some(now);
                self.on_opened(now, &mut events);
            }
            (Some(Contact::Open), Contact::Closed) => {
                self.on_closed(now, &mut events);
            }
        }
        self.settle(now, &mut events);
        events
    }

    fn on_opened(&mut self, now: Instant, events: &mut Vec<DoorEvent>) {
        if let Some(grant) = &mut self.grant {
            if grant.opened.is_none() {
                grant.opened = Some(now);
                events.push(match &grant.kind {
                    GrantKind::Face { person } => DoorEvent::Entry {
                        person: person.clone(),
                    },
                    kind => DoorEvent::Opened {
                        why: kind.to_string(),
                    },
                });
            } else {
                events.push(DoorEvent::Opened {
                    why: grant.kind.to_string(),
                });
            }
        } else if let Some(why) = self.released_by() {
            events.push(DoorEvent::Opened { why });
        } else if self
            .relocked_at
            .is_some_and(|t| now.saturating_duration_since(t) < FORCED_GRACE)
        {
            events.push(DoorEvent::Opened {
                why: "just after re-locking".into(),
            });
        } else {
            events.push(DoorEvent::ForcedOpen);
        }
    }

    fn on_closed(&mut self, now: Instant, events: &mut Vec<DoorEvent>) {
        events.push(DoorEvent::Closed);
        if self.held_alarm {
            self.held_alarm = false;
            let secs = self
                .opened_at
                .map_or(0.0, |t| now.saturating_duration_since(t).as_secs_f64());
            events.push(DoorEvent::HeldOpenEnded { secs });
        }
        self.opened_at = None;
        let Some(grant) = &mut self.grant else {
            return;
        };
        if grant.opened.is_none() {
            return;
        }
        if self.config.relock_on_close || grant.until <= now {
            self.end_grant(now, "door closed", events);
        } else {
            // Keep the grant's own end, which is at most `unlock` after it began, so never
            // later than `unlock` after the door closed.
            grant.opened = None;
        }
    }

    /// The fire-release input changed.
    pub fn fire(&mut self, now: Instant, asserted: bool) -> Vec<DoorEvent> {
        let mut events = self.tick(now, self.schedule_holds);
        if asserted != self.fire {
            self.fire = asserted;
            events.push(DoorEvent::FireRelease { asserted });
        }
        self.settle(now, &mut events);
        events
    }

    /// An input could not be read: the door state is unknown until the contact reports
    /// again.
    pub fn input_error(&mut self, now: Instant, message: &str) -> Vec<DoorEvent> {
        let mut events = self.tick(now, self.schedule_holds);
        self.contact = None;
        self.opened_at = None;
        self.held_alarm = false;
        events.push(DoorEvent::InputError {
            message: message.into(),
        });
        self.settle(now, &mut events);
        events
    }

    /// Applies what is due at `now`: grants ending, the held-open alarm, and the schedule's
    /// hold (`schedule_holds`, computed by the caller from the wall clock).
    pub fn tick(&mut self, now: Instant, schedule_holds: bool) -> Vec<DoorEvent> {
        let mut events = Vec::new();
        self.schedule_holds = schedule_holds;
        if let Some(grant) = &self.grant {
            let expired = match grant.opened {
                // Open under the grant: kept until it closes, at most `held_open`.
                Some(opened) if self.door_open() => now >= opened + self.config.held_open,
                _ => now >= grant.until,
            };
            if expired {
                let why = if grant.opened.is_some() && self.door_open() {
                    "door open too long"
                } else {
                    "time over"
                };
                self.end_grant(now, why, &mut events);
            }
        }
        if let (Some(opened), true, false) = (self.opened_at, self.door_open(), self.held_alarm) {
            let open_for = now.saturating_duration_since(opened);
            if open_for >= self.config.held_open && !self.held_unlocked() {
                self.held_alarm = true;
                events.push(DoorEvent::HeldOpen {
                    secs: open_for.as_secs_f64(),
                });
            }
        }
        self.settle(now, &mut events);
        events
    }

    fn grant(&mut self, now: Instant, kind: GrantKind, length: Duration) {
        // A new grant replaces the current one; an open door stays counted as opened.
        let opened = self
            .grant
            .as_ref()
            .and_then(|g| g.opened)
            .filter(|_| self.door_open());
        self.grant = Some(Grant {
            kind,
            until: now + length,
            opened,
        });
    }

    fn end_grant(&mut self, now: Instant, why: &'static str, events: &mut Vec<DoorEvent>) {
        if let Some(grant) = self.grant.take() {
            if !self.held_unlocked() {
                events.push(DoorEvent::Relocked {
                    after: grant.kind.to_string(),
                    why,
                });
            }
            let _ = now;
        }
    }

    /// Emits a strike change when the wanted state differs from the last one emitted. The
    /// strike event goes before the other events of the same step when releasing (the door
    /// opens, then it is recorded) and after them when locking.
    fn settle(&mut self, now: Instant, events: &mut Vec<DoorEvent>) {
        let wanted = if self.held_unlocked() || self.grant.is_some() {
            LockState::Unlocked
        } else {
            LockState::Locked
        };
        if wanted == self.strike {
            return;
        }
        self.strike = wanted;
        match wanted {
            LockState::Unlocked => events.insert(0, DoorEvent::Strike(wanted)),
            LockState::Locked => {
                self.relocked_at = Some(now);
                events.insert(0, DoorEvent::Strike(wanted));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: DoorConfig = DoorConfig {
        unlock: Duration::from_secs(5),
        exit: Duration::from_secs(3),
        held_open: Duration::from_secs(30),
        relock_on_close: true,
        max_manual: Duration::from_secs(600),
    };

    /// One scripted input, at a time in milliseconds.
    #[derive(Clone)]
    enum In {
        Face(&'static str),
        /// A face the schedule does not allow now.
        FaceOutsideSchedule(&'static str),
        Exit,
        Open,
        Close,
        Tick,
        /// The schedule starts (true) or stops (false) holding the door.
        Schedule(bool),
        SetMode(Mode),
        Manual(u64),
        Fire(bool),
        Error,
    }
    use In::*;

    /// Runs a script; returns every event as `"<ms> <event>"`.
    fn run_with(config: DoorConfig, mode: Mode, script: &[(u64, In)]) -> (Vec<String>, Door) {
        let t0 = Instant::now();
        let mut door = Door::new(config, mode);
        let mut schedule = false;
        let mut out = Vec::new();
        // The contact reports its state at start, like the inputs do.
        door.contact(t0, Contact::Closed);
        for (ms, input) in script {
            let now = t0 + Duration::from_millis(*ms);
            let events = match input {
                Face(p) => door.face(now, p, true),
                FaceOutsideSchedule(p) => door.face(now, p, false),
                Exit => door.exit(now),
                Open => door.contact(now, Contact::Open),
                Close => door.contact(now, Contact::Closed),
                Tick => door.tick(now, schedule),
                Schedule(on) => {
                    schedule = *on;
                    door.tick(now, schedule)
                }
                SetMode(m) => door.set_mode(now, *m, "uid 0 (root)"),
                Manual(secs) => door
                    .manual_unlock(now, Duration::from_secs(*secs), "uid 0 (root)", "delivery")
                    .unwrap_or_else(|e| {
                        vec![DoorEvent::Refused {
                            request: "manual".into(),
                            reason: e,
                        }]
                    }),
                Fire(on) => door.fire(now, *on),
                Error => door.input_error(now, "wire cut"),
            };
            out.extend(events.iter().map(|e| format!("{ms} {}", short(e))));
        }
        (out, door)
    }

    fn run(script: &[(u64, In)]) -> Vec<String> {
        run_with(CONFIG, Mode::Normal, script).0
    }

    fn short(e: &DoorEvent) -> String {
        match e {
            DoorEvent::Strike(s) => format!("strike {s}"),
            DoorEvent::Refused { reason, .. } => format!("refused ({reason})"),
            DoorEvent::ManualUnlock { secs, .. } => format!("manual {secs}"),
            DoorEvent::Exit => "exit".into(),
            DoorEvent::Entry { person } => format!("entry {person}"),
            DoorEvent::Opened { why } => format!("opened ({why})"),
            DoorEvent::Closed => "closed".into(),
            DoorEvent::ForcedOpen => "forced-open".into(),
            DoorEvent::HeldOpen { .. } => "held-open".into(),
            DoorEvent::HeldOpenEnded { .. } => "held-open-end".into(),
            DoorEvent::Relocked { after, why } => format!("relocked after {after} ({why})"),
            DoorEvent::ModeChanged { from, to, .. } => format!("mode {from} -> {to}"),
            DoorEvent::FireRelease { asserted } => format!("fire {asserted}"),
            DoorEvent::InputError { message } => format!("input-error {message}"),
        }
    }

    /// A rule's name, its script and the events it must produce.
    type Case = (&'static str, Vec<(u64, In)>, Vec<&'static str>);

    #[test]
    fn every_rule_as_a_table() {
        let cases: Vec<Case> = vec![
            (
                "a face grant without a door contact relocks on time",
                vec![(0, Face("ada")), (4999, Tick), (5000, Tick)],
                vec![
                    "0 strike UNLOCKED",
                    "5000 strike LOCKED",
                    "5000 relocked after ada (time over)",
                ],
            ),
            (
                "an entry is reported and the door relocks when it closes",
                vec![(0, Face("ada")), (1000, Open), (2500, Close), (5000, Tick)],
                vec![
                    "0 strike UNLOCKED",
                    "1000 entry ada",
                    "2500 strike LOCKED",
                    "2500 closed",
                    "2500 relocked after ada (door closed)",
                ],
            ),
            (
                "the grant is kept while the door is open past its time",
                vec![(0, Face("ada")), (4000, Open), (6000, Tick), (9000, Close)],
                vec![
                    "0 strike UNLOCKED",
                    "4000 entry ada",
                    "9000 strike LOCKED",
                    "9000 closed",
                    "9000 relocked after ada (door closed)",
                ],
            ),
            (
                "but never longer than held_open after it opened, with the alarm",
                vec![(0, Face("ada")), (1000, Open), (31000, Tick), (40000, Close)],
                vec![
                    "0 strike UNLOCKED",
                    "1000 entry ada",
                    "31000 strike LOCKED",
                    "31000 relocked after ada (door open too long)",
                    "31000 held-open",
                    "40000 closed",
                    "40000 held-open-end",
                ],
            ),
            (
                "the exit button releases for exit_secs and its opening is no alarm",
                vec![(0, Exit), (500, Open), (1500, Close)],
                vec![
                    "0 strike UNLOCKED",
                    "0 exit",
                    "500 opened (exit)",
                    "1500 strike LOCKED",
                    "1500 closed",
                    "1500 relocked after exit (door closed)",
                ],
            ),
            (
                "an unused exit request ends on time",
                vec![(0, Exit), (3000, Tick)],
                vec![
                    "0 strike UNLOCKED",
                    "0 exit",
                    "3000 strike LOCKED",
                    "3000 relocked after exit (time over)",
                ],
            ),
            (
                "a door opened with nothing released is forced",
                vec![(0, Open), (1000, Close)],
                vec!["0 forced-open", "1000 closed"],
            ),
            (
                "a door opened just after re-locking is not forced",
                vec![(0, Face("ada")), (5000, Tick), (5400, Open), (6000, Close)],
                vec![
                    "0 strike UNLOCKED",
                    "5000 strike LOCKED",
                    "5000 relocked after ada (time over)",
                    "5400 opened (just after re-locking)",
                    "6000 closed",
                ],
            ),
            (
                "a door propped open raises held-open once, cleared on close",
                vec![(0, Open), (29999, Tick), (30000, Tick), (31000, Tick), (35000, Close)],
                vec![
                    "0 forced-open",
                    "30000 held-open",
                    "35000 closed",
                    "35000 held-open-end",
                ],
            ),
            (
                "lockdown refuses faces but honours the exit button",
                vec![(0, SetMode(Mode::Lockdown)), (100, Face("ada")), (200, Exit)],
                vec![
                    "0 mode normal -> lockdown",
                    "100 refused (lockdown: faces do not open the door)",
                    "200 strike UNLOCKED",
                    "200 exit",
                ],
            ),
            (
                "lockdown refuses a manual unlock",
                vec![(0, SetMode(Mode::Lockdown)), (100, Manual(10))],
                vec![
                    "0 mode normal -> lockdown",
                    "100 refused (refused: the lock is in lockdown; change the mode first)",
                ],
            ),
            (
                "entering lockdown ends a face grant at once",
                vec![(0, Face("ada")), (1000, SetMode(Mode::Lockdown))],
                vec![
                    "0 strike UNLOCKED",
                    "1000 strike LOCKED",
                    "1000 mode normal -> lockdown",
                    "1000 relocked after ada (lockdown)",
                ],
            ),
            (
                "a manual unlock lasts its seconds",
                vec![(0, Manual(10)), (9999, Tick), (10000, Tick)],
                vec![
                    "0 strike UNLOCKED",
                    "0 manual 10",
                    "10000 strike LOCKED",
                    "10000 relocked after manual unlock by uid 0 (root) (time over)",
                ],
            ),
            (
                "a manual unlock past the maximum is refused",
                vec![(0, Manual(601))],
                vec!["0 refused (refused: 601.0 s is outside 0..600 s (door.max_manual_unlock_secs))"],
            ),
            (
                "mode unlocked holds the door and the opening is no alarm",
                vec![
                    (0, SetMode(Mode::Unlocked)),
                    (100, Open),
                    (60000, Tick),
                    (61000, Close),
                    (62000, SetMode(Mode::Normal)),
                ],
                vec![
                    "0 strike UNLOCKED",
                    "0 mode normal -> unlocked",
                    "100 opened (mode unlocked)",
                    "61000 closed",
                    "62000 strike LOCKED",
                    "62000 mode unlocked -> normal",
                ],
            ),
            (
                "a schedule window holds the door, except in lockdown",
                vec![
                    (0, Schedule(true)),
                    (100, SetMode(Mode::Lockdown)),
                    (200, SetMode(Mode::Normal)),
                    (300, Schedule(false)),
                ],
                vec![
                    "0 strike UNLOCKED",
                    "100 strike LOCKED",
                    "100 mode normal -> lockdown",
                    "200 strike UNLOCKED",
                    "200 mode lockdown -> normal",
                    "300 strike LOCKED",
                ],
            ),
            (
                "a face outside its schedule hours is refused",
                vec![(0, FaceOutsideSchedule("contractor"))],
                vec!["0 refused (outside the schedule's face-unlock hours)"],
            ),
            (
                "fire release opens the door in lockdown until it clears",
                vec![
                    (0, SetMode(Mode::Lockdown)),
                    (100, Fire(true)),
                    (200, Open),
                    (60000, Tick),
                    (61000, Fire(false)),
                ],
                vec![
                    "0 mode normal -> lockdown",
                    "100 strike UNLOCKED",
                    "100 fire true",
                    "200 opened (fire release)",
                    "61000 strike LOCKED",
                    "61000 fire false",
                ],
            ),
            (
                "a read error makes the door unknown: no forced-open on the next report",
                vec![(0, Error), (100, Open), (200, Close), (300, Open)],
                vec![
                    "0 input-error wire cut",
                    "200 closed",
                    "300 forced-open",
                ],
            ),
        ];
        for (name, script, expected) in cases {
            assert_eq!(run(&script), expected, "{name}");
        }
    }

    #[test]
    fn without_relock_on_close_the_grant_keeps_its_own_end() {
        let config = DoorConfig {
            relock_on_close: false,
            ..CONFIG
        };
        let (events, _) = run_with(
            config,
            Mode::Normal,
            &[
                (0, Face("ada")),
                (1000, Open),
                (2000, Close),
                (4999, Tick),
                (5000, Tick),
            ],
        );
        assert_eq!(
            events,
            [
                "0 strike UNLOCKED",
                "1000 entry ada",
                "2000 closed",
                "5000 strike LOCKED",
                "5000 relocked after ada (time over)",
            ]
        );
    }

    #[test]
    fn the_next_deadline_covers_grants_and_the_held_open_alarm() {
        let t0 = Instant::now();
        let mut door = Door::new(CONFIG, Mode::Normal);
        door.contact(t0, Contact::Closed);
        assert_eq!(door.next_deadline(), None);
        door.face(t0, "ada", true);
        assert_eq!(door.next_deadline(), Some(t0 + CONFIG.unlock));
        let opened = t0 + Duration::from_secs(1);
        door.contact(opened, Contact::Open);
        assert_eq!(door.next_deadline(), Some(opened + CONFIG.held_open));
    }

    #[test]
    fn status_says_why_the_door_is_released() {
        let t0 = Instant::now();
        let mut door = Door::new(CONFIG, Mode::Normal);
        assert_eq!(door.status().released_by, None);
        door.face(t0, "ada", true);
        assert_eq!(door.status().released_by.as_deref(), Some("ada"));
        assert_eq!(door.status().strike, LockState::Unlocked);
        door.set_mode(t0, Mode::Unlocked, "x");
        assert_eq!(door.status().released_by.as_deref(), Some("mode unlocked"));
    }

    #[test]
    fn modes_parse_and_print() {
        for mode in Mode::ALL {
            assert_eq!(mode.to_string().parse::<Mode>(), Ok(mode));
        }
        let err = "open".parse::<Mode>().unwrap_err();
        assert!(err.contains("normal, lockdown or unlocked"), "{err}");
    }

    #[test]
    fn lock_now_ends_a_grant_at_once_but_not_a_held_door() {
        let t0 = Instant::now();
        let mut door = Door::new(CONFIG, Mode::Normal);
        door.manual_unlock(t0, Duration::from_secs(30), "ha", "guest")
            .unwrap();
        assert_eq!(door.strike(), LockState::Unlocked);
        let events = door.lock_now(t0 + Duration::from_secs(1)).unwrap();
        assert_eq!(door.strike(), LockState::Locked);
        assert!(events.contains(&DoorEvent::Strike(LockState::Locked)));
        assert!(events.iter().any(|e| matches!(
            e,
            DoorEvent::Relocked {
                why: "locked on command",
                ..
            }
        )));
        // Locked already: nothing to do, no error.
        assert!(door
            .lock_now(t0 + Duration::from_secs(2))
            .unwrap()
            .is_empty());
        // Held unlocked by the mode: refused, saying why.
        door.set_mode(t0, Mode::Unlocked, "admin");
        let refusal = door.lock_now(t0 + Duration::from_secs(3)).unwrap_err();
        assert!(refusal.contains("mode unlocked"), "{refusal}");
        assert_eq!(door.strike(), LockState::Unlocked);
    }
}

//! Commands from the front-ends (control socket, HTTP API, MQTT): answered at once by the
//! door loop through the door controller, audited under who asked.

use std::time::Duration;

use anyhow::Result;

use super::{modes, Command, Service};
use crate::audit::{Event, Record};
use crate::control::{Reply, Request};
use crate::door::{DoorEvent, Mode};
use crate::relay::LockState;

impl Service {
    /// Answers a front-end's command through the door controller and the audit log.
    pub(super) fn on_command(&mut self, command: Command) -> Result<()> {
        let Command { request, by, reply } = command;
        let now = self.now();
        let answer = match request {
            Request::Status => Reply {
                ok: true,
                message: self.status_line(),
                status: Some(self.board.json()),
            },
            Request::Mode { mode } => match mode.parse::<Mode>() {
                Err(e) => Reply::refused(e),
                Ok(mode) if mode == self.door.mode() => {
                    Reply::ok(format!("mode is already {mode}"))
                }
                Ok(mode) => match modes::save(&self.state, mode, &by) {
                    // Not persisted, not changed: a restart must not silently undo it.
                    Err(e) => {
                        self.audit_event(
                            Record::new(Event::Refused)
                                .by(&by)
                                .message(format!("mode {mode}: {e:#}")),
                        );
                        Reply::refused(format!("{e:#}"))
                    }
                    Ok(()) => {
                        let events = self.door.set_mode(now, mode, &by);
                        self.apply_door(events)?;
                        Reply::ok(format!("mode {mode}"))
                    }
                },
            },
            Request::Unlock { seconds, reason } => {
                let secs = Duration::try_from_secs_f64(seconds).unwrap_or(Duration::ZERO);
                match self.door.manual_unlock(now, secs, &by, &reason) {
                    Ok(events) => {
                        self.apply_door(events)?;
                        Reply::ok(format!("unlocked for {seconds} s"))
                    }
                    Err(refusal) => {
                        self.audit_event(
                            Record::new(Event::Refused)
                                .by(&by)
                                .message(format!("unlock for {seconds} s ({reason}): {refusal}")),
                        );
                        Reply::refused(refusal)
                    }
                }
            }
            Request::Capture {
                person,
                count,
                seconds,
            } => self.start_capture(person, count, seconds, &by),
            Request::CaptureCancel => self.cancel_capture(&by),
            Request::Lock => match self.door.lock_now(now) {
                Ok(events) => {
                    let changed = events.contains(&DoorEvent::Strike(LockState::Locked));
                    // The relock record names who asked.
                    let (relocks, rest): (Vec<DoorEvent>, Vec<DoorEvent>) = events
                        .into_iter()
                        .partition(|e| matches!(e, DoorEvent::Relocked { .. }));
                    self.apply_door(rest)?;
                    for relock in relocks {
                        if let DoorEvent::Relocked { after, why } = relock {
                            log::info!("relock after {after}: {why} by {by}");
                            self.audit_event(
                                Record::new(Event::Relock)
                                    .person(after)
                                    .by(&by)
                                    .message(why),
                            );
                        }
                    }
                    Reply::ok(if changed { "locked" } else { "already locked" })
                }
                Err(refusal) => {
                    self.audit_event(
                        Record::new(Event::Refused)
                            .by(&by)
                            .message(format!("lock: {refusal}")),
                    );
                    Reply::refused(refusal)
                }
            },
        };
        self.publish(now);
        let _ = reply.send(answer);
        Ok(())
    }
}

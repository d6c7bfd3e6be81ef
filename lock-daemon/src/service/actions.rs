//! Carrying out decisions: the face policy's actions and the door controller's events go to
//! the relay (a relay that fails stops the service, locked), the indicator and the audit
//! log, in that order.

use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};

use super::{Decision, Service};
use crate::audit::{Event, Record};
use crate::door::DoorEvent;
use crate::indicator::Signal;
use crate::metrics::{Outcome, Stage};
use crate::policy::Action;
use crate::relay::LockState;

impl Service {
    /// Carries out the face policy's decisions: a confirmed face goes to the door
    /// controller, which releases the strike or refuses (mode, schedule).
    pub(super) fn apply(&mut self, now: Instant, actions: Vec<Action>) -> Result<()> {
        for action in actions {
            log::info!("{action}");
            match &action {
                Action::Unlock { person, .. } => {
                    let allowed = self.face_allowed(now, person);
                    let events = self.door.face(now, person, allowed);
                    let refusal = events.iter().find_map(|e| match e {
                        DoorEvent::Refused { reason, .. } => Some(reason.clone()),
                        _ => None,
                    });
                    // The strike first, then the record of the decision.
                    let (strike, rest): (Vec<DoorEvent>, Vec<DoorEvent>) = events
                        .into_iter()
                        .partition(|e| matches!(e, DoorEvent::Strike(_)));
                    self.apply_door(strike)?;
                    if refusal.is_some() {
                        self.show(Signal::Refused);
                    }
                    let record = Record::from_action(&action);
                    let record = match &refusal {
                        // Real time: the camera stamped the frame on the real clock.
                        None => Record {
                            latency_ms: match action {
                                Action::Unlock { first_seen, .. } => {
                                    let latency = first_seen.elapsed();
                                    self.metrics.stage(Stage::Unlock, latency);
                                    Some(latency.as_millis() as u64)
                                }
                                _ => None,
                            },
                            ..record
                        },
                        Some(reason) => Record {
                            event: Event::Refused,
                            message: Some(reason.clone()),
                            ..record
                        },
                    };
                    self.metrics.decision(match refusal {
                        None => Outcome::Unlock,
                        Some(_) => Outcome::Refused,
                    });
                    self.decided(record.event, Some(person.clone()));
                    self.record_with_snapshot(record);
                    let rest = rest
                        .into_iter()
                        .filter(|e| !matches!(e, DoorEvent::Refused { .. }))
                        .collect();
                    self.apply_door(rest)?;
                    if let (
                        None,
                        Action::Unlock {
                            probability,
                            similarity,
                            ..
                        },
                    ) = (&refusal, &action)
                    {
                        self.collect_unlock(now, person, (*probability, *similarity));
                    }
                    let _ = self
                        .notifier
                        .status(&format!("{action}; {}", self.status_line()));
                }
                // The policy's own timer ends its unlocked state; the door controller
                // decides when the strike locks.
                Action::Relock { .. } => {}
                Action::DeniedUnknown { .. } => {
                    self.metrics.decision(Outcome::DeniedUnknown);
                    self.show(Signal::Refused);
                    self.decided(Event::DeniedUnknown, None);
                    self.record_with_snapshot(Record::from_action(&action));
                    if let Some(collector) = &mut self.collector {
                        collector.unknown(self.last_frame.as_ref(), &self.last_faces);
                    }
                }
            }
        }
        Ok(())
    }

    /// Shows a signal on the LED and buzzer, if any (never blocks).
    pub(super) fn show(&self, signal: Signal) {
        self.show_for(signal, Duration::ZERO);
    }

    fn show_for(&self, signal: Signal, lasts: Duration) {
        if let Some(indicator) = &self.indicator {
            indicator.send(signal, lasts);
        }
    }

    fn decided(&mut self, event: Event, person: Option<String>) {
        self.last_decision = Some(Decision {
            time: crate::clock::wall_rfc3339(),
            event: event.as_str().into(),
            person,
        });
    }

    fn record_with_snapshot(&mut self, mut record: Record) {
        let result = match &self.last_frame {
            Some(frame) => self
                .audit
                .record_with_snapshot(&mut record, frame, &self.last_faces),
            None => self.audit.record(&record),
        };
        if let Err(e) = result {
            log::error!("audit log: {e}");
        }
        self.feed.push(record);
    }

    /// Carries out the door controller's events: strike changes go to the relay (a relay
    /// that fails stops the service, locked), everything else to the audit log.
    pub(super) fn apply_door(&mut self, events: Vec<DoorEvent>) -> Result<()> {
        for event in events {
            let record = match event {
                DoorEvent::Strike(state) => {
                    if let Err(e) = self.relay.set(state) {
                        self.jammed = true;
                        let _ = self.relay.set(LockState::Locked);
                        self.audit_event(Record::new(Event::Error).message(format!("relay: {e}")));
                        return Err(anyhow!(e).context("relay failed"));
                    }
                    log::info!("strike {state}");
                    let _ = self.notifier.status(&self.status_line());
                    if state == LockState::Unlocked {
                        // Lit for as long as the grant lasts (a held door just beeps).
                        let now = self.now();
                        let lasts = self
                            .door
                            .next_deadline()
                            .map_or(Duration::ZERO, |d| d.saturating_duration_since(now));
                        self.show_for(Signal::Granted, lasts);
                    }
                    continue;
                }
                DoorEvent::Refused { request, reason } => {
                    self.metrics.decision(Outcome::Refused);
                    self.show(Signal::Refused);
                    Record::new(Event::Refused).message(format!("{request}: {reason}"))
                }
                DoorEvent::ManualUnlock { by, reason, secs } => {
                    self.metrics.decision(Outcome::ManualUnlock);
                    self.decided(Event::ManualUnlock, None);
                    Record::new(Event::ManualUnlock)
                        .by(by)
                        .message(format!("{secs:.1} s: {reason}"))
                }
                DoorEvent::Exit => {
                    self.metrics.decision(Outcome::Exit);
                    self.decided(Event::Exit, None);
                    Record::new(Event::Exit)
                }
                DoorEvent::Entry { person } => Record::new(Event::Entry).person(person),
                DoorEvent::Opened { why } => Record::new(Event::DoorOpened).message(why),
                DoorEvent::Closed => {
                    // Ends a forced-open alarm (which has no end event of its own).
                    self.show(Signal::AlarmCleared);
                    Record::new(Event::DoorClosed)
                }
                DoorEvent::ForcedOpen => {
                    self.show(Signal::Alarm);
                    Record::new(Event::ForcedOpen)
                        .message("the door opened while locked (no grant, no exit request)")
                }
                DoorEvent::HeldOpen { secs } => {
                    self.show(Signal::Alarm);
                    Record::new(Event::HeldOpen).message(format!("open for {secs:.0} s"))
                }
                DoorEvent::HeldOpenEnded { secs } => {
                    self.show(Signal::AlarmCleared);
                    Record::new(Event::HeldOpenEnd).message(format!("closed after {secs:.0} s"))
                }
                DoorEvent::Relocked { after, why } => {
                    Record::new(Event::Relock).person(after).message(why)
                }
                DoorEvent::ModeChanged { from, to, by } => Record::new(Event::ModeChanged)
                    .by(by)
                    .message(format!("{from} -> {to}")),
                DoorEvent::FireRelease { asserted } => {
                    Record::new(Event::FireRelease).message(if asserted {
                        "asserted: door released"
                    } else {
                        "cleared"
                    })
                }
                DoorEvent::InputError { message } => {
                    Record::new(Event::InputError).message(message)
                }
            };
            match record.event {
                Event::ForcedOpen | Event::HeldOpen | Event::InputError => {
                    log::warn!(
                        "{}: {}",
                        record.event.as_str(),
                        record.message.as_deref().unwrap_or("")
                    )
                }
                _ => log::info!(
                    "{}{}",
                    record.event.as_str(),
                    record
                        .message
                        .as_deref()
                        .map(|m| format!(": {m}"))
                        .unwrap_or_default()
                ),
            }
            self.audit_event(record);
        }
        Ok(())
    }

    /// Writes a record to the audit log, and hands it to the front-ends that push events.
    /// A record the log cannot take is still handed on (the log's error is logged).
    pub(super) fn audit_event(&mut self, record: Record) {
        if let Err(e) = self.audit.record(&record) {
            log::error!("audit log: {e}");
        }
        self.feed.push(record);
    }
}

impl Service {
    /// Hands a face unlock to the data collector, if it is on.
    fn collect_unlock(&mut self, now: Instant, person: &str, scores: (f32, f32)) {
        let (Some(collector), Some(thresholds)) = (&mut self.collector, self.classifier.thresholds)
        else {
            return;
        };
        collector.unlocked(
            now,
            person,
            scores,
            &thresholds,
            self.last_frame.as_ref(),
            &self.last_faces,
        );
    }
}

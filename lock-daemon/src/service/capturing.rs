//! Guided capture in the door loop ([`crate::capture`]): started and cancelled by
//! commands, fed the frames the loop has already decided on, audited at both ends.

use std::time::{Duration, Instant};

use image::RgbImage;
use recognition::quality::QualityGate;
use recognition::Face;

use super::Service;
use crate::audit::{Event, Record};
use crate::capture::{Capture, Order, Progress, State};
use crate::control::Reply;

/// The door loop's capture: the one running, and the last one's result for the status.
#[derive(Debug, Default)]
pub(super) struct Capturing {
    running: Option<Capture>,
    last: Option<Progress>,
}

impl Capturing {
    /// What the status shows: the running capture, or the last one.
    pub(super) fn progress(&self) -> Option<Progress> {
        match &self.running {
            Some(capture) => Some(capture.progress()),
            None => self.last.clone(),
        }
    }

    pub(super) fn is_running(&self) -> bool {
        self.running.is_some()
    }

    /// Hands a decided frame to the running capture (never waits).
    pub(super) fn offer(&self, image: &RgbImage, faces: &[Face]) {
        if let Some(capture) = &self.running {
            capture.offer(image, faces);
        }
    }
}

impl Service {
    /// Starts a capture, or says why not.
    pub(super) fn start_capture(
        &mut self,
        person: String,
        count: u32,
        seconds: f64,
        by: &str,
    ) -> Reply {
        let Some(settings) = self.settings.capture.clone() else {
            return Reply::refused(
                "capture is off on this lock: set [capture] enabled = true in its \
                 configuration and restart it (README, \"Enrolling people\")",
            );
        };
        if let Some(running) = &self.capturing.running {
            let p = running.progress();
            return Reply::refused(format!(
                "a capture of {} is running (kept {} of {}): wait for it, or stop it with \
                 `lock-daemon ctl capture --cancel`",
                p.person, p.kept, p.wanted
            ));
        }
        let order = Order {
            person,
            count,
            timeout: Duration::try_from_secs_f64(seconds).unwrap_or(Duration::ZERO),
            by: by.to_owned(),
        };
        let gate = QualityGate::for_door(self.settings.recognition.min_face_px);
        // The capture's thread keeps real time, whatever clock the door loop runs on.
        match Capture::start(&settings, &order, gate, Instant::now()) {
            Err(e) => {
                self.audit_event(
                    Record::new(Event::Capture)
                        .person(&order.person)
                        .by(by)
                        .message(format!("refused: {e}")),
                );
                Reply::refused(e)
            }
            Ok(capture) => {
                let message = format!(
                    "capturing {} frames of {} for up to {:.0} s into {}",
                    order.count,
                    order.person,
                    seconds,
                    capture.progress().dir.display()
                );
                log::info!("{message} ({by})");
                self.audit_event(
                    Record::new(Event::Capture)
                        .person(&order.person)
                        .by(by)
                        .message(format!(
                            "started: {} frames, up to {seconds:.0} s",
                            order.count
                        )),
                );
                self.capturing.running = Some(capture);
                Reply::ok(message)
            }
        }
    }

    /// Stops the running capture.
    pub(super) fn cancel_capture(&mut self, by: &str) -> Reply {
        match &self.capturing.running {
            None => Reply::refused("no capture is running"),
            Some(capture) => {
                capture.cancel();
                log::info!("capture cancelled by {by}");
                Reply::ok(format!(
                    "capture of {} stopping; the frames kept so far stay",
                    capture.progress().person
                ))
            }
        }
    }

    /// Audits a capture that has ended, and keeps its result for the status.
    pub(super) fn capture_tick(&mut self) {
        let Some(capture) = &self.capturing.running else {
            return;
        };
        if !capture.finished() {
            return;
        }
        let progress = capture.progress();
        let summary = progress.summary(capture.elapsed(Instant::now()));
        log::info!("capture of {}: {summary}", progress.person);
        self.audit_event(
            Record::new(Event::Capture)
                .person(&progress.person)
                .by(&progress.by)
                .message(summary),
        );
        self.capturing.running = None;
        self.capturing.last = Some(progress);
    }

    /// At shutdown: stops the running capture without waiting for it, and audits it.
    pub(super) fn stop_capture(&mut self) {
        let Some(capture) = self.capturing.running.take() else {
            return;
        };
        capture.cancel();
        let mut progress = capture.progress();
        if progress.state == State::Running {
            progress.state = State::Cancelled;
            progress.message = Some("the service stopped".to_owned());
        }
        let summary = progress.summary(capture.elapsed(Instant::now()));
        self.audit_event(
            Record::new(Event::Capture)
                .person(&progress.person)
                .by(&progress.by)
                .message(summary),
        );
        self.capturing.last = Some(progress);
    }
}

//! What happens to a frame after recognition, wherever it was recognised (the vision
//! thread, or a worker of the frame pipeline): the idle-scene state, figures and metrics,
//! the live preview, the pace check, and the [`Input`] to the door loop. Results arrive
//! here in the order the camera delivered their frames.

use std::sync::mpsc::SyncSender;
use std::time::{Duration, Instant};

use anyhow::Result;
use image::RgbImage;

use crate::audit::{Event, Record};
use crate::camera;
use crate::config::Settings;
use crate::metrics::{Metrics, Stage};
use crate::preview::PreviewFeed;
use crate::recognizer::FrameResult;
use crate::scene::IdleSkip;

use super::pace::PaceCheck;
use super::stats::FrameStats;
use super::{Input, Seen};
use std::sync::Arc;

/// Frames whose mean luma differs by less than this from the last frame without
/// a face skip recognition ([`IdleSkip`]), for at most `IDLE_MAX_SKIP`.
const IDLE_DIFF_THRESHOLD: f32 = 2.0;
const IDLE_MAX_SKIP: Duration = Duration::from_secs(1);

/// A frame on its way through recognition.
#[derive(Debug)]
pub(super) struct Job {
    pub image: RgbImage,
    /// When the camera delivered it.
    pub captured: Instant,
    /// When the vision thread took it (the idle-scene check's time).
    pub started: Instant,
}

/// The door loop has gone: stop.
#[derive(Debug)]
pub(super) struct Gone;

/// The post-recognition half of the vision side.
pub(super) struct Delivery {
    pub idle: IdleSkip,
    pub stats: FrameStats,
    pace: PaceCheck,
    metrics: Arc<Metrics>,
    preview: PreviewFeed,
    out: SyncSender<Input>,
    camera_interval: Option<Duration>,
    frames_required: u32,
    window: Duration,
    /// Frames recognised at once (set when the workers have started): face frames come
    /// `recognition time / workers` apart.
    pub workers: u32,
}

impl Delivery {
    pub fn new(
        settings: &Settings,
        metrics: Arc<Metrics>,
        preview: PreviewFeed,
        out: SyncSender<Input>,
    ) -> Delivery {
        Delivery {
            idle: IdleSkip::new(IDLE_DIFF_THRESHOLD, IDLE_MAX_SKIP),
            stats: FrameStats::default(),
            pace: PaceCheck::default(),
            metrics,
            preview,
            out,
            camera_interval: camera::frame_interval(&settings.camera),
            frames_required: settings.policy.frames_required,
            window: settings.policy.window,
            workers: 1,
        }
    }

    pub fn send(&self, input: Input) -> Result<(), Gone> {
        self.out.send(input).map_err(|_| Gone)
    }

    /// Hands one frame's recognition to the door loop: a [`Seen`], or, when recognition
    /// failed, [`Input::RecognitionFailed`] (audited; the confirmation starts over).
    pub fn deliver(&mut self, job: Job, result: Result<FrameResult>) -> Result<(), Gone> {
        let Job {
            image,
            captured,
            started,
        } = job;
        let result = match result {
            Ok(result) => result,
            Err(e) => {
                log::error!("recognition failed: {e:#}");
                return self.send(Input::RecognitionFailed(format!(
                    "recognition failed: {e:#}"
                )));
            }
        };
        let FrameResult {
            faces,
            small,
            stages,
        } = result;
        // The recognition itself, without any wait for a worker or for earlier frames.
        let took = stages.map_or_else(|| started.elapsed(), |(detect, embed)| detect + embed);
        self.idle.recognised(&image, faces.len(), started);
        self.stats.recognised(took);
        self.metrics.frame_recognized(faces.len());
        self.metrics.stage(Stage::Recognize, took);
        if let Some((detect, embed)) = stages {
            self.metrics.stage(Stage::Detect, detect);
            if !faces.is_empty() {
                self.metrics.stage(Stage::Embed, embed);
            }
        }
        self.preview
            .offer(Instant::now(), &image, &faces, || small.clone());
        if !faces.is_empty() {
            if let Some(warning) = self.pace.face_frame(
                took,
                self.workers,
                self.camera_interval,
                self.frames_required,
                self.window,
            ) {
                log::warn!("{warning}");
                self.send(Input::Audit(Record::new(Event::Error).message(warning)))?;
            }
        }
        log::debug!(
            "frame: {} face(s) in {:.0} ms",
            faces.len(),
            took.as_secs_f64() * 1e3
        );
        self.send(Input::Seen(Box::new(Seen {
            image,
            faces,
            small,
            captured,
        })))
    }
}

//! The live preview feed: while someone watches (`GET /api/v1/preview.mjpeg`, admin, off
//! unless `http.preview = true`), the vision thread leaves its latest recognised frame
//! here, at most [`PREVIEW_EVERY`] apart. It only clones the frame; drawing and JPEG
//! encoding happen on the viewer's side, so watching never slows recognition or the door.
//! Nobody watching costs one atomic load per frame.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use image::RgbImage;
use recognition::Recognized;

/// The fastest the preview is refreshed (2 frames a second: enough to aim a camera).
pub const PREVIEW_EVERY: Duration = Duration::from_millis(500);
/// Viewers at once.
pub const MAX_VIEWERS: usize = 2;

/// One frame for the preview.
#[derive(Debug)]
pub struct PreviewFrame {
    pub image: RgbImage,
    pub faces: Vec<Recognized>,
    /// Faces too small to be recognised (below `min_face_px`).
    pub small: Vec<recognition::Face>,
    /// Increases with every frame left here.
    pub seq: u64,
}

#[derive(Debug, Default)]
struct Inner {
    viewers: AtomicUsize,
    seq: AtomicU64,
    latest: Mutex<Option<Arc<PreviewFrame>>>,
    last_offer: Mutex<Option<Instant>>,
}

/// Shared between the vision thread (offers frames) and the HTTP server (watches).
#[derive(Debug, Clone, Default)]
pub struct PreviewFeed(Arc<Inner>);

/// A viewer's place; the feed stops when the last one is dropped.
#[derive(Debug)]
pub struct Viewer(PreviewFeed);

impl Drop for Viewer {
    fn drop(&mut self) {
        self.0 .0.viewers.fetch_sub(1, Ordering::SeqCst);
        if self.0 .0.viewers.load(Ordering::SeqCst) == 0 {
            *self
                .0
                 .0
                .latest
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = None;
        }
    }
}

impl Viewer {
    /// The latest frame, if newer than `seen`.
    pub fn newer_than(&self, seen: u64) -> Option<Arc<PreviewFrame>> {
        let latest = self
            .0
             .0
            .latest
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        latest.filter(|f| f.seq > seen)
    }
}

impl PreviewFeed {
    /// Whether anyone is watching (the vision thread's cheap check per frame).
    pub fn watched(&self) -> bool {
        self.0.viewers.load(Ordering::Relaxed) > 0
    }

    /// Joins as a viewer; `None` when [`MAX_VIEWERS`] are already watching.
    pub fn watch(&self) -> Option<Viewer> {
        let before = self.0.viewers.fetch_add(1, Ordering::SeqCst);
        if before >= MAX_VIEWERS {
            self.0.viewers.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        Some(Viewer(self.clone()))
    }

    /// Called by the vision thread for every recognised frame: keeps a copy when someone
    /// watches and the last copy is at least [`PREVIEW_EVERY`] old.
    pub fn offer(
        &self,
        now: Instant,
        image: &RgbImage,
        faces: &[Recognized],
        small: impl FnOnce() -> Vec<recognition::Face>,
    ) {
        if !self.watched() {
            return;
        }
        {
            let mut last = self
                .0
                .last_offer
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if last.is_some_and(|t| now.saturating_duration_since(t) < PREVIEW_EVERY) {
                return;
            }
            *last = Some(now);
        }
        let seq = self.0.seq.fetch_add(1, Ordering::SeqCst) + 1;
        let frame = Arc::new(PreviewFrame {
            image: image.clone(),
            faces: faces.to_vec(),
            small: small(),
            seq,
        });
        *self.0.latest.lock().unwrap_or_else(PoisonError::into_inner) = Some(frame);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_kept_only_while_someone_watches_and_at_a_reduced_rate() {
        let feed = PreviewFeed::default();
        let image = RgbImage::new(4, 4);
        let t0 = Instant::now();
        feed.offer(t0, &image, &[], Vec::new);
        let viewer = feed.watch().unwrap();
        assert!(
            viewer.newer_than(0).is_none(),
            "nothing kept while unwatched"
        );
        feed.offer(t0, &image, &[], Vec::new);
        let first = viewer.newer_than(0).unwrap();
        feed.offer(t0 + Duration::from_millis(100), &image, &[], Vec::new);
        assert!(viewer.newer_than(first.seq).is_none(), "too soon");
        feed.offer(t0 + PREVIEW_EVERY, &image, &[], Vec::new);
        assert!(viewer.newer_than(first.seq).is_some());
        drop(viewer);
        assert!(!feed.watched());
    }

    #[test]
    fn viewers_are_limited_and_their_places_freed() {
        let feed = PreviewFeed::default();
        let viewers: Vec<Viewer> = (0..MAX_VIEWERS).map(|_| feed.watch().unwrap()).collect();
        assert!(feed.watch().is_none());
        drop(viewers);
        assert!(feed.watch().is_some());
    }
}

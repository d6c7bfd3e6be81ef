//! The pace check: whether recognition keeps up with the policy's window.

use std::time::Duration;

/// Frames with a face timed before the pace check speaks (it speaks once).
const PACE_SAMPLE: usize = 5;

/// Whether recognition keeps up with the policy. `frames_required` frames with
/// a face must fall within the window; frames `interval` apart (the slower of
/// the camera and recognition) span (N − 1)·interval. When that is over 80 % of
/// the window the door opens rarely or never (a Pi Zero 2 W, or a Pi 4 on one
/// thread with a long N), and the operator should hear why, with the fix.
fn pace_warning(
    median_face_frame: Duration,
    workers: u32,
    camera_interval: Option<Duration>,
    frames_required: u32,
    window: Duration,
) -> Option<String> {
    // With several frames recognised at once, a result comes every `1 / workers` of it.
    let recognition = median_face_frame / workers.max(1);
    let interval = camera_interval.map_or(recognition, |c| c.max(recognition));
    let span = interval * frames_required.saturating_sub(1);
    if span.as_secs_f64() <= 0.8 * window.as_secs_f64() {
        return None;
    }
    let camera = camera_interval.map_or("as fast as possible".to_owned(), |c| {
        format!("{:.0} ms", c.as_secs_f64() * 1e3)
    });
    Some(format!(
        "frames with a face come every {:.0} ms (recognition {:.0} ms a frame, {workers} at \
         once, camera {camera}), so \
         {frames_required} of them span about {:.2} s against policy.window_secs = {:.2} s: \
         the door will open rarely or never. Set recognition.workers to the number of \
         cores, lengthen policy.window_secs or lower policy.frames_required",
        interval.as_secs_f64() * 1e3,
        median_face_frame.as_secs_f64() * 1e3,
        span.as_secs_f64(),
        window.as_secs_f64()
    ))
}

/// Times the first frames with a face and runs [`pace_warning`] once.
#[derive(Debug, Default)]
pub(super) struct PaceCheck {
    face_frames: Vec<Duration>,
    done: bool,
}

impl PaceCheck {
    /// Records one recognised frame with a face; returns the warning, if any,
    /// when the sample is complete.
    pub(super) fn face_frame(
        &mut self,
        took: Duration,
        workers: u32,
        camera_interval: Option<Duration>,
        frames_required: u32,
        window: Duration,
    ) -> Option<String> {
        if self.done {
            return None;
        }
        self.face_frames.push(took);
        if self.face_frames.len() < PACE_SAMPLE {
            return None;
        }
        self.done = true;
        self.face_frames.sort();
        let median = self.face_frames[PACE_SAMPLE / 2];
        pace_warning(median, workers, camera_interval, frames_required, window)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_fast_pipeline_raises_no_pace_warning() {
        // x86: 80 ms per face frame, camera at 5 frames/s, 3 frames in 2 s.
        assert_eq!(pace_warning(80 * MS, 1, Some(200 * MS), 3, 2000 * MS), None);
    }

    #[test]
    fn a_pipeline_too_slow_for_the_window_is_reported_with_the_fix() {
        // Pi Zero 2 W estimate: ~1.3 s per face frame; 3 frames span 2.6 s > 2 s.
        let warning = pace_warning(1300 * MS, 1, Some(200 * MS), 3, 2000 * MS).unwrap();
        assert!(warning.contains("recognition 1300 ms"), "{warning}");
        assert!(warning.contains("recognition.workers"), "{warning}");
        assert!(warning.contains("policy.window_secs"), "{warning}");
    }

    #[test]
    fn frames_recognised_at_once_come_that_much_more_often() {
        // A Pi 4 estimate: 400 ms a frame; 3 frames span 0.8 s on one worker, and 3 workers
        // at 15 frames/s bring them under the window of 0.6 s.
        let window = 600 * MS;
        assert!(pace_warning(400 * MS, 1, Some(67 * MS), 3, window).is_some());
        assert!(pace_warning(400 * MS, 3, Some(67 * MS), 3, window).is_none());
        let warning = pace_warning(400 * MS, 2, Some(67 * MS), 3, 300 * MS).unwrap();
        assert!(
            warning.contains("recognition 400 ms a frame, 2 at once"),
            "{warning}"
        );
    }

    #[test]
    fn the_camera_interval_counts_when_it_is_the_slower_one() {
        // Fast recognition, but a 1 frame/s camera: 3 frames span 2 s.
        assert!(pace_warning(50 * MS, 1, Some(1000 * MS), 3, 2000 * MS).is_some());
        assert!(pace_warning(50 * MS, 1, None, 3, 2000 * MS).is_none());
    }

    #[test]
    fn the_pace_check_speaks_once_after_its_sample() {
        let mut check = PaceCheck::default();
        let slow = |c: &mut PaceCheck| c.face_frame(1500 * MS, 1, None, 3, 2000 * MS);
        for _ in 0..PACE_SAMPLE - 1 {
            assert_eq!(slow(&mut check), None);
        }
        assert!(slow(&mut check).is_some());
        assert_eq!(slow(&mut check), None);
    }
}

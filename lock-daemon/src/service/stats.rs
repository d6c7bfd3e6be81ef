//! Frame-processing figures, logged when the vision thread stops.

use std::time::{Duration, Instant};

/// Frame-processing figures, logged when the service stops.
#[derive(Debug, Default)]
pub(super) struct FrameStats {
    first: Option<Instant>,
    /// Frames taken from the camera (recognised or skipped).
    frames: usize,
    /// Time spent on each recognised frame.
    millis: Vec<f32>,
    /// When the last recognised frame was done.
    last: Option<Instant>,
}

impl FrameStats {
    pub(super) fn arrived(&mut self, at: Instant) {
        self.first.get_or_insert(at);
        self.frames += 1;
    }

    /// A frame was recognised in `took`.
    pub(super) fn recognised(&mut self, took: Duration) {
        self.millis.push(took.as_secs_f32() * 1e3);
        self.last = Some(Instant::now());
    }

    pub(super) fn summary(&mut self) -> Option<String> {
        let first = self.first?;
        let secs = first.elapsed().as_secs_f64();
        self.millis.sort_by(f32::total_cmp);
        let n = self.millis.len();
        let per_frame = match n {
            0 => "none recognised".to_owned(),
            _ => {
                // From the first frame to the last recognition: the throughput.
                let span = self.last.map_or(0.0, |last| {
                    last.saturating_duration_since(first).as_secs_f64()
                });
                format!(
                    "{n} recognised ({:.1} frames/s): median {:.0} ms, max {:.0} ms",
                    n as f64 / span.max(1e-3),
                    self.millis[n / 2],
                    self.millis[n - 1]
                )
            }
        };
        Some(format!(
            "{} frames in {secs:.1} s ({:.1} frames/s); {per_frame}; RSS {}",
            self.frames,
            self.frames as f64 / secs,
            rss()
        ))
    }
}

/// Resident memory now and at peak, from /proc.
pub fn rss() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
            .map_or("?".to_owned(), |kb| format!("{:.0} MiB", kb / 1024.0))
    };
    format!("{} (peak {})", field("VmRSS:"), field("VmHWM:"))
}

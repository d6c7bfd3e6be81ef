//! The daemon's Prometheus metrics: a registry of counters and histograms, and its
//! rendering in the Prometheus text exposition format 0.0.4 (for `GET /metrics`).
//!
//! What is measured:
//!
//! - the vision pipeline: frames read from the camera, frames that went through
//!   recognition (not skipped as idle or dark), faces recognised, camera errors;
//! - access decisions by outcome (unlock, unknown face denied, refused by the mode or
//!   the schedule, manual unlock, exit button);
//! - classifier reloads, accepted or refused;
//! - the HTTP API: responses by status class, authentication failures, and requests
//!   turned away with 503 because recognition was busy;
//! - how long each stage of a frame takes (capture, detection, embedding, the whole
//!   recognition, capture to decision), as histograms with buckets sized for a Pi;
//! - at render time, gauges the caller passes in ([`Gauges`]): resident memory, uptime,
//!   whether the strike is locked, whether the camera works, how many people are
//!   enrolled; and the build's version.
//!
//! No person's name, embedding, score or image ever appears here. Every label takes its
//! value from a fixed enum ([`Outcome`], [`Stage`], a status class, a reload result) or
//! from the build's version. Metrics are served to any token with the `read` scope and
//! are typically scraped and kept by a monitoring server: a person's name as a label
//! value would tell everyone who can read them who comes and goes, and when. Only the
//! audit log records who; counts by outcome say how busy the door is, not who used it.
//!
//! Updates are single relaxed atomic additions: the vision thread, the door loop and the
//! HTTP threads can all call them without ever waiting on each other. Share one registry
//! as `Arc<Metrics>`. Rendering reads each atomic once; a render that races with updates
//! may show a histogram's `_sum` a few observations apart from its buckets, but a
//! histogram's `_count` always equals its `+Inf` bucket (both come from one reading).

use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The `Content-Type` of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// An access decision, the `outcome` label of `facelock_decisions_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// A confirmed, enrolled face released the strike.
    Unlock,
    /// A qualifying unknown face was seen.
    DeniedUnknown,
    /// A face grant was refused by the mode or the schedule.
    Refused,
    /// A manual unlock was granted.
    ManualUnlock,
    /// The exit button released the strike.
    Exit,
}

impl Outcome {
    /// Every outcome, in the order they are rendered.
    pub const ALL: [Outcome; 5] = [
        Outcome::Unlock,
        Outcome::DeniedUnknown,
        Outcome::Refused,
        Outcome::ManualUnlock,
        Outcome::Exit,
    ];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Unlock => "unlock",
            Outcome::DeniedUnknown => "denied-unknown",
            Outcome::Refused => "refused",
            Outcome::ManualUnlock => "manual-unlock",
            Outcome::Exit => "exit",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A timed stage, the `stage` label of `facelock_stage_seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// Reading one frame from the camera.
    Capture,
    /// Face detection in one frame.
    Detect,
    /// Embedding the faces of one frame.
    Embed,
    /// The whole recognition of one frame (detection, embedding, classification).
    Recognize,
    /// From the capture of a frame to the door loop's decision on it.
    Decide,
    /// From the capture of the first frame of a confirmed face to the relay command.
    Unlock,
}

impl Stage {
    /// Every stage, in the order they are rendered.
    pub const ALL: [Stage; 6] = [
        Stage::Capture,
        Stage::Detect,
        Stage::Embed,
        Stage::Recognize,
        Stage::Decide,
        Stage::Unlock,
    ];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            Stage::Capture => "capture",
            Stage::Detect => "detect",
            Stage::Embed => "embed",
            Stage::Recognize => "recognize",
            Stage::Decide => "decide",
            Stage::Unlock => "unlock",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The values only the caller knows, read when the metrics are rendered.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gauges {
    /// The process's resident memory; `None` leaves `facelock_resident_memory_bytes` out.
    pub rss_bytes: Option<u64>,
    /// Seconds since the daemon started.
    pub uptime_secs: f64,
    /// Whether the strike is locked.
    pub locked: bool,
    /// Whether the camera delivers frames.
    pub camera_ok: bool,
    /// How many people the loaded classifier knows.
    pub people_enrolled: usize,
}

/// The `code` label values of `facelock_http_requests_total`.
const HTTP_CLASSES: [&str; 4] = ["2xx", "3xx", "4xx", "5xx"];

/// The `result` label values of `facelock_reloads_total` (index 0: accepted).
const RELOAD_RESULTS: [&str; 2] = ["ok", "refused"];

/// Histogram bucket upper bounds: the `le` label and the bound in nanoseconds.
const BUCKETS: [(&str, u64); 11] = [
    ("0.005", 5_000_000),
    ("0.01", 10_000_000),
    ("0.025", 25_000_000),
    ("0.05", 50_000_000),
    ("0.1", 100_000_000),
    ("0.25", 250_000_000),
    ("0.5", 500_000_000),
    ("1", 1_000_000_000),
    ("2.5", 2_500_000_000),
    ("5", 5_000_000_000),
    ("10", 10_000_000_000),
];

/// One histogram: a count per bucket (not cumulative; the last one is `+Inf` only) and
/// the sum of the observations in nanoseconds (wraps after 584 years of summed time).
#[derive(Debug, Default)]
struct Histogram {
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

impl Histogram {
    fn observe(&self, d: Duration) {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        // `le` is inclusive: an observation equal to a bound falls in that bucket.
        let slot = BUCKETS
            .iter()
            .position(|&(_, bound)| nanos <= bound)
            .unwrap_or(BUCKETS.len());
        self.buckets[slot].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// The cumulative counts, one per bound and the last for `+Inf` (= the total count).
    fn cumulative(&self) -> [u64; BUCKETS.len() + 1] {
        let mut out = [0; BUCKETS.len() + 1];
        let mut total = 0u64;
        for (slot, count) in out.iter_mut().zip(&self.buckets) {
            total = total.wrapping_add(count.load(Ordering::Relaxed));
            *slot = total;
        }
        out
    }

    fn count(&self) -> u64 {
        self.cumulative()[BUCKETS.len()]
    }

    fn sum(&self) -> Duration {
        Duration::from_nanos(self.sum_nanos.load(Ordering::Relaxed))
    }
}

/// The registry. Every update is one or two relaxed atomic additions; share it as
/// `Arc<Metrics>`.
#[derive(Debug, Default)]
pub struct Metrics {
    frames: AtomicU64,
    frames_recognized: AtomicU64,
    faces: AtomicU64,
    frames_dropped: AtomicU64,
    decisions: [AtomicU64; Outcome::ALL.len()],
    camera_errors: AtomicU64,
    reloads: [AtomicU64; RELOAD_RESULTS.len()],
    http: [AtomicU64; HTTP_CLASSES.len()],
    auth_failures: AtomicU64,
    busy: AtomicU64,
    /// 1 while connected to the MQTT broker.
    mqtt_connected: AtomicU64,
    mqtt_events_dropped: AtomicU64,
    stages: [Histogram; Stage::ALL.len()],
}

fn inc(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// The index in [`HTTP_CLASSES`] of a status code's class; `None` outside 200..=599.
fn http_class(status: u16) -> Option<usize> {
    match status {
        200..=599 => Some(usize::from(status / 100 - 2)),
        _ => None,
    }
}

impl Metrics {
    /// A registry with every counter at zero.
    pub fn new() -> Metrics {
        Metrics::default()
    }

    /// A frame was read from the camera.
    pub fn frame(&self) {
        inc(&self.frames);
    }

    /// A frame went through recognition (it was not skipped as idle or dark) and `faces`
    /// faces were recognised in it. Counted on top of [`Metrics::frame`].
    pub fn frame_recognized(&self, faces: usize) {
        inc(&self.frames_recognized);
        self.faces
            .fetch_add(u64::try_from(faces).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// A frame waiting for a free recognition worker was replaced by a newer one.
    pub fn frame_dropped(&self) {
        inc(&self.frames_dropped);
    }

    /// An access decision was made.
    pub fn decision(&self, outcome: Outcome) {
        inc(&self.decisions[outcome.index()]);
    }

    /// Reading a frame from the camera failed.
    pub fn camera_error(&self) {
        inc(&self.camera_errors);
    }

    /// A classifier reload was accepted (`ok`) or refused.
    pub fn reload(&self, ok: bool) {
        inc(&self.reloads[usize::from(!ok)]);
    }

    /// The HTTP API answered with `status`; counted by class (`2xx` to `5xx`). Statuses
    /// outside 200..=599 are not counted.
    pub fn http_response(&self, status: u16) {
        if let Some(class) = http_class(status) {
            inc(&self.http[class]);
        }
    }

    /// An HTTP request failed authentication (its response is counted separately by
    /// [`Metrics::http_response`]).
    pub fn auth_failure(&self) {
        inc(&self.auth_failures);
    }

    /// An HTTP request was answered 503 because recognition was busy (its response is
    /// counted separately by [`Metrics::http_response`]).
    pub fn busy(&self) {
        inc(&self.busy);
    }

    /// Whether the MQTT client is connected to its broker.
    pub fn mqtt_connected(&self, connected: bool) {
        self.mqtt_connected
            .store(u64::from(connected), Ordering::Relaxed);
    }

    /// Events the MQTT client dropped (its buffer was full while the broker was away),
    /// since the start; set by the client, which counts them.
    pub fn mqtt_events_dropped(&self, total: u64) {
        self.mqtt_events_dropped.store(total, Ordering::Relaxed);
    }

    /// A stage took `took`.
    pub fn stage(&self, stage: Stage, took: Duration) {
        self.stages[stage.index()].observe(took);
    }

    /// Frames read from the camera.
    pub fn frames(&self) -> u64 {
        get(&self.frames)
    }

    /// Frames that went through recognition.
    pub fn frames_recognized(&self) -> u64 {
        get(&self.frames_recognized)
    }

    /// Faces recognised.
    pub fn faces(&self) -> u64 {
        get(&self.faces)
    }

    /// Decisions with this outcome.
    pub fn decisions(&self, outcome: Outcome) -> u64 {
        get(&self.decisions[outcome.index()])
    }

    /// Frames dropped for a newer one while every recognition worker was busy.
    pub fn frames_dropped(&self) -> u64 {
        get(&self.frames_dropped)
    }

    /// Camera errors.
    pub fn camera_errors(&self) -> u64 {
        get(&self.camera_errors)
    }

    /// Reloads accepted (`ok`) or refused.
    pub fn reloads(&self, ok: bool) -> u64 {
        get(&self.reloads[usize::from(!ok)])
    }

    /// HTTP responses in the class of `status` (e.g. 404: all `4xx`); 0 outside 200..=599.
    pub fn http_responses(&self, status: u16) -> u64 {
        http_class(status).map_or(0, |class| get(&self.http[class]))
    }

    /// HTTP authentication failures.
    pub fn auth_failures(&self) -> u64 {
        get(&self.auth_failures)
    }

    /// HTTP requests turned away because recognition was busy.
    pub fn busy_responses(&self) -> u64 {
        get(&self.busy)
    }

    /// How many times this stage was timed.
    pub fn stage_count(&self, stage: Stage) -> u64 {
        self.stages[stage.index()].count()
    }

    /// The total time spent in this stage.
    pub fn stage_sum(&self, stage: Stage) -> Duration {
        self.stages[stage.index()].sum()
    }

    /// Every metric in the Prometheus text exposition format 0.0.4 ([`CONTENT_TYPE`]).
    pub fn render(&self, gauges: &Gauges) -> String {
        let mut out = String::with_capacity(8 * 1024);
        self.render_into(&mut out, gauges)
            .expect("writing to a String cannot fail");
        out
    }

    fn render_into(&self, out: &mut String, gauges: &Gauges) -> fmt::Result {
        family(
            out,
            "facelock_build_info",
            "gauge",
            "The daemon's version; always 1.",
        )?;
        writeln!(
            out,
            "facelock_build_info{{version=\"{}\"}} 1",
            escape_label_value(env!("CARGO_PKG_VERSION"))
        )?;

        counter(
            out,
            "facelock_frames_total",
            "Frames read from the camera.",
            self.frames(),
        )?;
        counter(
            out,
            "facelock_frames_recognized_total",
            "Frames that went through recognition (not skipped as idle or dark).",
            self.frames_recognized(),
        )?;
        counter(
            out,
            "facelock_faces_total",
            "Faces recognised.",
            self.faces(),
        )?;
        counter(
            out,
            "facelock_frames_dropped_total",
            "Frames replaced by a newer one while every recognition worker was busy.",
            self.frames_dropped(),
        )?;

        family(
            out,
            "facelock_decisions_total",
            "counter",
            "Access decisions, by outcome.",
        )?;
        for outcome in Outcome::ALL {
            labelled(
                out,
                "facelock_decisions_total",
                "outcome",
                outcome.label(),
                self.decisions(outcome),
            )?;
        }

        counter(
            out,
            "facelock_camera_errors_total",
            "Failed reads from the camera.",
            self.camera_errors(),
        )?;

        family(
            out,
            "facelock_reloads_total",
            "counter",
            "Classifier reloads, accepted (ok) or refused.",
        )?;
        for (result, count) in RELOAD_RESULTS.iter().zip(&self.reloads) {
            labelled(out, "facelock_reloads_total", "result", result, get(count))?;
        }

        family(
            out,
            "facelock_http_requests_total",
            "counter",
            "HTTP API responses, by status class.",
        )?;
        for (code, count) in HTTP_CLASSES.iter().zip(&self.http) {
            labelled(
                out,
                "facelock_http_requests_total",
                "code",
                code,
                get(count),
            )?;
        }
        counter(
            out,
            "facelock_http_auth_failures_total",
            "HTTP API requests that failed authentication.",
            self.auth_failures(),
        )?;
        counter(
            out,
            "facelock_http_busy_total",
            "HTTP API requests answered 503 because recognition was busy.",
            self.busy_responses(),
        )?;
        gauge(
            out,
            "facelock_mqtt_connected",
            "1 while connected to the MQTT broker (0 when MQTT is off or disconnected).",
            &get(&self.mqtt_connected).to_string(),
        )?;
        counter(
            out,
            "facelock_mqtt_events_dropped_total",
            "Access events the MQTT client dropped while the broker was away (its buffer was \
             full).",
            get(&self.mqtt_events_dropped),
        )?;

        family(
            out,
            "facelock_stage_seconds",
            "histogram",
            "Time taken by each stage of a frame, in seconds.",
        )?;
        for stage in Stage::ALL {
            let histogram = &self.stages[stage.index()];
            let cumulative = histogram.cumulative();
            let label = escape_label_value(stage.label());
            for ((le, _), count) in BUCKETS.iter().zip(&cumulative) {
                writeln!(
                    out,
                    "facelock_stage_seconds_bucket{{stage=\"{label}\",le=\"{le}\"}} {count}"
                )?;
            }
            let total = cumulative[BUCKETS.len()];
            writeln!(
                out,
                "facelock_stage_seconds_bucket{{stage=\"{label}\",le=\"+Inf\"}} {total}"
            )?;
            writeln!(
                out,
                "facelock_stage_seconds_sum{{stage=\"{label}\"}} {}",
                float(histogram.sum().as_secs_f64())
            )?;
            writeln!(
                out,
                "facelock_stage_seconds_count{{stage=\"{label}\"}} {total}"
            )?;
        }

        if let Some(rss) = gauges.rss_bytes {
            gauge(
                out,
                "facelock_resident_memory_bytes",
                "Resident memory of the daemon, in bytes.",
                &rss.to_string(),
            )?;
        }
        gauge(
            out,
            "facelock_uptime_seconds",
            "Seconds since the daemon started.",
            &float(gauges.uptime_secs),
        )?;
        gauge(
            out,
            "facelock_locked",
            "1 while the strike is locked, 0 while it is released.",
            flag(gauges.locked),
        )?;
        gauge(
            out,
            "facelock_camera_ok",
            "1 while the camera delivers frames, 0 otherwise.",
            flag(gauges.camera_ok),
        )?;
        gauge(
            out,
            "facelock_enrolled_people",
            "People the loaded classifier knows.",
            &gauges.people_enrolled.to_string(),
        )?;
        Ok(())
    }
}

/// The `# HELP` and `# TYPE` lines of a metric family.
fn family(out: &mut String, name: &str, kind: &str, help: &str) -> fmt::Result {
    writeln!(out, "# HELP {name} {}", escape_help(help))?;
    writeln!(out, "# TYPE {name} {kind}")
}

fn counter(out: &mut String, name: &str, help: &str, value: u64) -> fmt::Result {
    family(out, name, "counter", help)?;
    writeln!(out, "{name} {value}")
}

fn gauge(out: &mut String, name: &str, help: &str, value: &str) -> fmt::Result {
    family(out, name, "gauge", help)?;
    writeln!(out, "{name} {value}")
}

/// One sample with one label.
fn labelled(out: &mut String, name: &str, label: &str, value: &str, count: u64) -> fmt::Result {
    writeln!(
        out,
        "{name}{{{label}=\"{}\"}} {count}",
        escape_label_value(value)
    )
}

fn flag(on: bool) -> &'static str {
    if on {
        "1"
    } else {
        "0"
    }
}

/// A float as the text format spells it (`NaN`, `+Inf`, `-Inf`, or a plain decimal).
fn float(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_string()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.to_string()
    } else {
        value.to_string()
    }
}

/// A label value escaped for the text format: backslash, double quote and line feed.
fn escape_label_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// A `# HELP` text escaped for the text format: backslash and line feed.
fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_parse::{Scrape, Value};
    use std::collections::{HashMap, HashSet};
    use std::sync::Arc;
    use std::thread;

    fn gauges() -> Gauges {
        Gauges {
            rss_bytes: Some(123_456_789),
            uptime_secs: 3600.5,
            locked: true,
            camera_ok: false,
            people_enrolled: 7,
        }
    }

    fn parse(text: &str) -> Scrape {
        Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("the text parses")
    }

    /// The value of the sample `metric` whose labels are exactly `labels`.
    fn value(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> Value {
        let want: HashMap<String, String> = labels
            .iter()
            .map(|&(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let found: Vec<_> = scrape
            .samples
            .iter()
            .filter(|s| s.metric == metric && *s.labels == want)
            .collect();
        assert_eq!(found.len(), 1, "one sample {metric} {labels:?}");
        found[0].value.clone()
    }

    fn untyped(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
        match value(scrape, metric, labels) {
            Value::Untyped(v) => v,
            other => panic!("{metric}: {other:?}"),
        }
    }

    /// The (le, cumulative count) pairs of one stage's histogram.
    fn buckets(scrape: &Scrape, stage: &str) -> Vec<(f64, f64)> {
        match value(scrape, "facelock_stage_seconds", &[("stage", stage)]) {
            Value::Histogram(b) => b.iter().map(|h| (h.less_than, h.count)).collect(),
            other => panic!("{stage}: {other:?}"),
        }
    }

    #[test]
    fn counters_move_with_each_event() {
        let m = Metrics::new();
        m.frame();
        m.frame();
        m.frame();
        m.frame_recognized(2);
        m.frame_recognized(0);
        m.decision(Outcome::Unlock);
        m.decision(Outcome::DeniedUnknown);
        m.decision(Outcome::DeniedUnknown);
        m.camera_error();
        m.reload(true);
        m.reload(false);
        m.reload(false);
        m.http_response(200);
        m.http_response(204);
        m.http_response(302);
        m.http_response(401);
        m.http_response(503);
        m.http_response(101);
        m.http_response(600);
        m.auth_failure();
        m.busy();

        assert_eq!(m.frames(), 3);
        assert_eq!(m.frames_recognized(), 2);
        assert_eq!(m.faces(), 2);
        assert_eq!(m.decisions(Outcome::Unlock), 1);
        assert_eq!(m.decisions(Outcome::DeniedUnknown), 2);
        assert_eq!(m.decisions(Outcome::Refused), 0);
        assert_eq!(m.decisions(Outcome::ManualUnlock), 0);
        assert_eq!(m.decisions(Outcome::Exit), 0);
        assert_eq!(m.camera_errors(), 1);
        assert_eq!(m.reloads(true), 1);
        assert_eq!(m.reloads(false), 2);
        assert_eq!(m.http_responses(200), 2);
        assert_eq!(m.http_responses(301), 1);
        assert_eq!(m.http_responses(404), 1);
        assert_eq!(m.http_responses(500), 1);
        assert_eq!(m.http_responses(101), 0, "1xx is not counted");
        assert_eq!(m.auth_failures(), 1);
        assert_eq!(m.busy_responses(), 1);
    }

    #[test]
    fn every_labelled_counter_is_rendered_at_zero_from_the_start() {
        let scrape = parse(&Metrics::new().render(&gauges()));
        for outcome in [
            "unlock",
            "denied-unknown",
            "refused",
            "manual-unlock",
            "exit",
        ] {
            assert_eq!(
                value(&scrape, "facelock_decisions_total", &[("outcome", outcome)]),
                Value::Counter(0.0)
            );
        }
        for result in ["ok", "refused"] {
            assert_eq!(
                value(&scrape, "facelock_reloads_total", &[("result", result)]),
                Value::Counter(0.0)
            );
        }
        for code in ["2xx", "3xx", "4xx", "5xx"] {
            assert_eq!(
                value(&scrape, "facelock_http_requests_total", &[("code", code)]),
                Value::Counter(0.0)
            );
        }
        for stage in ["capture", "detect", "embed", "recognize", "decide"] {
            assert!(buckets(&scrape, stage).iter().all(|&(_, n)| n == 0.0));
            assert_eq!(
                untyped(&scrape, "facelock_stage_seconds_count", &[("stage", stage)]),
                0.0
            );
        }
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_count_equals_the_inf_bucket() {
        let m = Metrics::new();
        let ms = Duration::from_millis;
        for d in [ms(3), ms(5), ms(7), ms(200), ms(20_000)] {
            m.stage(Stage::Recognize, d);
        }
        m.stage(Stage::Capture, ms(1));
        assert_eq!(m.stage_count(Stage::Recognize), 5);
        assert_eq!(m.stage_sum(Stage::Recognize), ms(20_215));
        assert_eq!(m.stage_count(Stage::Detect), 0);

        let scrape = parse(&m.render(&gauges()));
        let b = buckets(&scrape, "recognize");
        let les: Vec<f64> = b.iter().map(|&(le, _)| le).collect();
        assert_eq!(
            les,
            [
                0.005,
                0.01,
                0.025,
                0.05,
                0.1,
                0.25,
                0.5,
                1.0,
                2.5,
                5.0,
                10.0,
                f64::INFINITY
            ]
        );
        let counts: Vec<f64> = b.iter().map(|&(_, n)| n).collect();
        // 5 ms lands in le="0.005" (bounds are inclusive); 20 s only in +Inf.
        assert_eq!(
            counts,
            [2.0, 3.0, 3.0, 3.0, 3.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 5.0]
        );
        assert!(counts.windows(2).all(|w| w[0] <= w[1]));
        let count = untyped(
            &scrape,
            "facelock_stage_seconds_count",
            &[("stage", "recognize")],
        );
        assert_eq!(count, counts[counts.len() - 1]);
        let sum = untyped(
            &scrape,
            "facelock_stage_seconds_sum",
            &[("stage", "recognize")],
        );
        assert!((sum - 20.215).abs() < 1e-9, "sum {sum}");

        let capture = buckets(&scrape, "capture");
        assert!(capture.iter().all(|&(_, n)| n == 1.0));
        assert_eq!(
            untyped(
                &scrape,
                "facelock_stage_seconds_count",
                &[("stage", "capture")]
            ),
            1.0
        );
    }

    #[test]
    fn rendering_parses_with_the_values_recorded() {
        let m = Metrics::new();
        for _ in 0..10 {
            m.frame();
        }
        m.frame_recognized(3);
        m.decision(Outcome::Refused);
        m.decision(Outcome::Exit);
        m.decision(Outcome::Exit);
        m.camera_error();
        m.frame_dropped();
        m.reload(true);
        m.http_response(200);
        m.http_response(401);
        m.http_response(401);
        m.auth_failure();
        m.auth_failure();
        m.busy();

        let text = m.render(&gauges());
        let scrape = parse(&text);
        let counters = [
            ("facelock_frames_total", 10.0),
            ("facelock_frames_recognized_total", 1.0),
            ("facelock_faces_total", 3.0),
            ("facelock_camera_errors_total", 1.0),
            ("facelock_frames_dropped_total", 1.0),
            ("facelock_http_auth_failures_total", 2.0),
            ("facelock_http_busy_total", 1.0),
        ];
        for (name, want) in counters {
            assert_eq!(value(&scrape, name, &[]), Value::Counter(want), "{name}");
        }
        let labelled = [
            ("facelock_decisions_total", "outcome", "refused", 1.0),
            ("facelock_decisions_total", "outcome", "exit", 2.0),
            ("facelock_decisions_total", "outcome", "unlock", 0.0),
            ("facelock_reloads_total", "result", "ok", 1.0),
            ("facelock_reloads_total", "result", "refused", 0.0),
            ("facelock_http_requests_total", "code", "2xx", 1.0),
            ("facelock_http_requests_total", "code", "4xx", 2.0),
            ("facelock_http_requests_total", "code", "5xx", 0.0),
        ];
        for (name, label, v, want) in labelled {
            assert_eq!(
                value(&scrape, name, &[(label, v)]),
                Value::Counter(want),
                "{name}{{{label}={v}}}"
            );
        }
        let gauges = [
            ("facelock_resident_memory_bytes", 123_456_789.0),
            ("facelock_uptime_seconds", 3600.5),
            ("facelock_locked", 1.0),
            ("facelock_camera_ok", 0.0),
            ("facelock_enrolled_people", 7.0),
        ];
        for (name, want) in gauges {
            assert_eq!(value(&scrape, name, &[]), Value::Gauge(want), "{name}");
        }
        assert_eq!(
            value(
                &scrape,
                "facelock_build_info",
                &[("version", env!("CARGO_PKG_VERSION"))]
            ),
            Value::Gauge(1.0)
        );

        // Every sample's family has its HELP text, and every name has the prefix.
        for sample in &scrape.samples {
            let family = sample
                .metric
                .strip_suffix("_sum")
                .or_else(|| sample.metric.strip_suffix("_count"))
                .filter(|f| *f == "facelock_stage_seconds")
                .unwrap_or(&sample.metric);
            assert!(scrape.docs.contains_key(family), "no HELP for {family}");
            assert!(family.starts_with("facelock_"), "{family}");
        }
    }

    /// The format's structure, which the parser above is lenient about: each family has
    /// one HELP then one TYPE line, before and adjacent to all its samples.
    #[test]
    fn each_family_has_help_and_type_before_its_samples() {
        let m = Metrics::new();
        m.stage(Stage::Decide, Duration::from_millis(300));
        let text = m.render(&gauges());
        assert!(text.ends_with('\n'));
        let mut seen = HashSet::new();
        let mut current: Option<(String, String)> = None;
        let mut pending_help: Option<String> = None;
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').expect("HELP has a text");
                assert!(!help.is_empty());
                assert!(seen.insert(name.to_string()), "{name} twice");
                pending_help = Some(name.to_string());
                current = None;
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("TYPE has a kind");
                assert_eq!(
                    pending_help.take().as_deref(),
                    Some(name),
                    "HELP before TYPE"
                );
                assert!(["counter", "gauge", "histogram"].contains(&kind), "{kind}");
                current = Some((name.to_string(), kind.to_string()));
            } else {
                let (family, kind) = current.as_ref().expect("a sample after its TYPE");
                let name = line.split(['{', ' ']).next().unwrap();
                let ok = if kind == "histogram" {
                    ["_bucket", "_sum", "_count"]
                        .iter()
                        .any(|suffix| name == format!("{family}{suffix}"))
                } else {
                    name == family
                };
                assert!(ok, "{name} under {family}");
                let value = line.rsplit(' ').next().unwrap();
                assert!(value.parse::<f64>().is_ok(), "{line}");
            }
        }
        assert_eq!(seen.len(), 19);
    }

    #[test]
    fn memory_is_left_out_when_unknown() {
        let text = Metrics::new().render(&Gauges {
            rss_bytes: None,
            ..gauges()
        });
        assert!(!text.contains("facelock_resident_memory_bytes"));
        assert!(text.contains("facelock_uptime_seconds 3600.5\n"));
    }

    #[test]
    fn label_values_and_help_are_escaped() {
        assert_eq!(escape_label_value("plain-1.0"), "plain-1.0");
        assert_eq!(
            escape_label_value("a\\b\"c\nd"),
            "a\\\\b\\\"c\\nd",
            "backslash, quote, newline"
        );
        assert_eq!(escape_help("a\\b\nc \"d\""), "a\\\\b\\nc \"d\"");
    }

    #[test]
    fn floats_are_spelt_as_the_format_wants() {
        assert_eq!(float(0.25), "0.25");
        assert_eq!(float(3.0), "3");
        assert_eq!(float(f64::NAN), "NaN");
        assert_eq!(float(f64::INFINITY), "+Inf");
        assert_eq!(float(f64::NEG_INFINITY), "-Inf");
    }

    #[test]
    fn concurrent_updates_lose_no_counts() {
        const THREADS: u64 = 4;
        const EACH: u64 = 10_000;
        let m = Arc::new(Metrics::new());
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let m = Arc::clone(&m);
                thread::spawn(move || {
                    for i in 0..EACH {
                        m.frame();
                        m.frame_recognized(1);
                        m.decision(Outcome::ALL[(i % 5) as usize]);
                        m.http_response(200 + (t as u16 % 4) * 100);
                        m.stage(Stage::Recognize, Duration::from_micros(i % 3000 * 1000));
                        // Rendering while others write must not block or panic.
                        if i % 2500 == 0 {
                            m.render(&gauges());
                        }
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        let total = THREADS * EACH;
        assert_eq!(m.frames(), total);
        assert_eq!(m.frames_recognized(), total);
        assert_eq!(m.faces(), total);
        let decisions: u64 = Outcome::ALL.iter().map(|&o| m.decisions(o)).sum();
        assert_eq!(decisions, total);
        for outcome in Outcome::ALL {
            assert_eq!(m.decisions(outcome), total / 5);
        }
        for status in [200, 300, 400, 500] {
            assert_eq!(m.http_responses(status), EACH);
        }
        assert_eq!(m.stage_count(Stage::Recognize), total);
        // Each thread observes 0..3000 ms in 1 ms steps, 3000 values repeated over EACH.
        let per_thread: u64 = (0..EACH).map(|i| i % 3000).sum();
        assert_eq!(
            m.stage_sum(Stage::Recognize),
            Duration::from_millis(per_thread * THREADS)
        );

        let scrape = parse(&m.render(&gauges()));
        assert_eq!(
            value(&scrape, "facelock_frames_total", &[]),
            Value::Counter(total as f64)
        );
        let b = buckets(&scrape, "recognize");
        assert_eq!(b.last().unwrap().1, total as f64);
    }
}

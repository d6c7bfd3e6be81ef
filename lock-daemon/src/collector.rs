//! The data collector: face crops from the door for retraining (`[collect]`, off by
//! default: they are photos of people).
//!
//! It keeps three kinds of face, as crops (the face with half its size of margin), or
//! whole frames with `collect.whole_frames`:
//! * `low-margin`: a genuine unlock whose weakest frame passed the gate by less than
//!   `collect.margin` (in probability or similarity): the next photo of this kind may be
//!   refused, so it is worth enrolling;
//! * `near-miss`: a frame whose candidate face was refused while its nearest person was
//!   let in within `collect.near_miss_secs` after it (a false reject, probably);
//! * `unknown`: the face of a refused unknown encounter.
//!
//! Files go to `collect.dir/<kind>/` (0700, files 0600) with an index line each in
//! `collect.dir/index.jsonl` (the suggested person and scores, never an embedding). At
//! most `collect.max_files` files are kept and none older than `collect.max_age_days`:
//! the oldest go first. Each kept file is audited (`collected`). `trainer review DIR`
//! shows them to the admin, and nothing reaches `images/` without the admin's say.
//!
//! The door loop decides what to keep ([`Collector`], pure, time passed in) and hands the
//! crops to a writer thread through a short queue: it never waits for the disk.

use std::collections::VecDeque;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::time::{Duration, Instant, SystemTime};

use image::RgbImage;
use recognition::{BBox, Recognized, Thresholds};
use serde::{Deserialize, Serialize};

/// `[collect]` settings (present only when the collector is enabled).
#[derive(Debug, Clone, PartialEq)]
pub struct CollectSettings {
    pub dir: PathBuf,
    pub max_files: usize,
    pub max_age: Duration,
    /// A genuine unlock within this of a threshold is kept.
    pub margin: f32,
    /// A refused face is a near-miss when its nearest person is let in within this.
    pub near_miss: Duration,
    /// Keep whole frames instead of face crops.
    pub whole_frames: bool,
}

/// What kind of face was kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    LowMargin,
    NearMiss,
    Unknown,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::LowMargin => "low-margin",
            Kind::NearMiss => "near-miss",
            Kind::Unknown => "unknown",
        }
    }
}

/// One index line: what a kept file shows, as the lock saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// The file, relative to the collector's directory (`near-miss/…jpg`).
    pub file: String,
    pub kind: Kind,
    /// The person the lock thought it nearest (the one let in, for low margins).
    pub suggested: String,
    pub probability: f32,
    pub similarity: f32,
    /// Wall time, RFC 3339 UTC.
    pub time: String,
}

/// A face to write.
#[derive(Debug)]
pub struct Item {
    pub image: RgbImage,
    pub entry: Entry,
}

/// A refused candidate face, held for a while in case its person is let in.
#[derive(Debug)]
struct Held {
    at: Instant,
    image: RgbImage,
    nearest: String,
    probability: f32,
    similarity: f32,
}

/// Refused faces held at most (at the camera's rate, several seconds' worth).
const HELD: usize = 16;
/// Frames waiting for the writer; more are dropped (and logged), never waited for.
const QUEUE: usize = 8;

/// The collector's decisions (pure: time comes in as `now`).
#[derive(Debug)]
pub struct Collector {
    settings: CollectSettings,
    held: VecDeque<Held>,
    out: SyncSender<Item>,
    dropped: u64,
}

impl Collector {
    /// A collector whose items go to `out` (the writer: [`start`]).
    pub fn new(settings: CollectSettings, out: SyncSender<Item>) -> Collector {
        Collector {
            settings,
            held: VecDeque::new(),
            out,
            dropped: 0,
        }
    }

    /// Looks at a decided frame: a candidate (largest) face the gate refused is held, in
    /// case its nearest person is let in soon.
    pub fn frame(&mut self, now: Instant, image: &RgbImage, faces: &[Recognized]) {
        self.forget_old(now);
        let Some(candidate) = faces
            .iter()
            .max_by(|a, b| a.face.bbox.area().total_cmp(&b.face.bbox.area()))
        else {
            return;
        };
        let p = &candidate.prediction;
        if p.identity.is_some() {
            return;
        }
        if self.held.len() == HELD {
            self.held.pop_front();
        }
        self.held.push_back(Held {
            at: now,
            image: self.cut(image, &candidate.face.bbox),
            nearest: p.nearest.clone(),
            probability: p.probability,
            similarity: p.similarity,
        });
    }

    /// A face unlock for `person` with the weakest frame's scores: keeps the near-misses
    /// held for them, and the deciding face when it passed by a small margin.
    pub fn unlocked(
        &mut self,
        now: Instant,
        person: &str,
        scores: (f32, f32),
        thresholds: &Thresholds,
        image: Option<&RgbImage>,
        faces: &[Recognized],
    ) {
        self.forget_old(now);
        let (near, rest): (Vec<Held>, Vec<Held>) =
            self.held.drain(..).partition(|h| h.nearest == person);
        self.held = rest.into();
        for held in near {
            self.send(
                held.image,
                Kind::NearMiss,
                &held.nearest,
                held.probability,
                held.similarity,
            );
        }
        let (probability, similarity) = scores;
        let margin =
            (probability - thresholds.min_probability).min(similarity - thresholds.min_similarity);
        if margin < self.settings.margin {
            let face = faces
                .iter()
                .find(|f| f.prediction.identity.as_deref() == Some(person));
            if let (Some(image), Some(face)) = (image, face) {
                let crop = self.cut(image, &face.face.bbox);
                self.send(crop, Kind::LowMargin, person, probability, similarity);
            }
        }
    }

    /// A refused unknown encounter: keeps its unknown faces.
    pub fn unknown(&mut self, image: Option<&RgbImage>, faces: &[Recognized]) {
        let Some(image) = image else { return };
        for face in faces.iter().filter(|f| f.prediction.identity.is_none()) {
            let crop = self.cut(image, &face.face.bbox);
            let p = &face.prediction;
            self.send(
                crop,
                Kind::Unknown,
                &p.nearest.clone(),
                p.probability,
                p.similarity,
            );
        }
    }

    fn forget_old(&mut self, now: Instant) {
        while self
            .held
            .front()
            .is_some_and(|h| now.saturating_duration_since(h.at) > self.settings.near_miss)
        {
            self.held.pop_front();
        }
    }

    fn cut(&self, image: &RgbImage, bbox: &BBox) -> RgbImage {
        if self.settings.whole_frames {
            image.clone()
        } else {
            crate::capture::with_margin(image, bbox)
        }
    }

    fn send(
        &mut self,
        image: RgbImage,
        kind: Kind,
        suggested: &str,
        probability: f32,
        similarity: f32,
    ) {
        let item = Item {
            image,
            entry: Entry {
                file: String::new(),
                kind,
                suggested: suggested.to_owned(),
                probability,
                similarity,
                time: crate::clock::wall_rfc3339(),
            },
        };
        match self.out.try_send(item) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.dropped += 1;
                log::warn!(
                    "collector busy: a {} face was not kept ({} so far)",
                    kind.as_str(),
                    self.dropped
                );
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }
}

/// Starts the writer thread; each file it keeps is reported through `kept` (for the audit
/// log), each failure through `failed`. Prepares the directory (0700) and applies the
/// limits once at start.
pub fn start(
    settings: &CollectSettings,
    kept: impl Fn(&Entry) + Send + 'static,
    failed: impl Fn(String) + Send + 'static,
) -> Result<SyncSender<Item>, String> {
    for kind in [Kind::LowMargin, Kind::NearMiss, Kind::Unknown] {
        crate::capture::private_dir(&settings.dir.join(kind.as_str()))
            .map_err(|e| e.replace("capture", "collect"))?;
    }
    crate::capture::private_dir(&settings.dir).map_err(|e| e.replace("capture", "collect"))?;
    prune(settings, SystemTime::now())
        .map_err(|e| format!("collect.dir {}: {e}", settings.dir.display()))?;
    let (tx, rx) = mpsc::sync_channel(QUEUE);
    let settings = settings.clone();
    std::thread::Builder::new()
        .name("collector".into())
        .spawn(move || write_loop(&settings, rx, kept, failed))
        .map_err(|e| format!("cannot start the collector thread: {e}"))?;
    Ok(tx)
}

fn write_loop(
    settings: &CollectSettings,
    items: Receiver<Item>,
    kept: impl Fn(&Entry),
    failed: impl Fn(String),
) {
    let mut n: u32 = 0;
    for item in items {
        n = n.wrapping_add(1);
        let written = write(settings, item, n);
        if let Err(e) = prune(settings, SystemTime::now()) {
            failed(format!("collector: cannot apply the limits: {e}"));
        }
        match written {
            Ok(entry) => kept(&entry),
            Err(e) => failed(format!(
                "collector: {e}; check that collect.dir is writable and the disk has room"
            )),
        }
    }
}

fn write(settings: &CollectSettings, item: Item, n: u32) -> Result<Entry, String> {
    let Item { image, mut entry } = item;
    let stamp: String = entry
        .time
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '.')
        .collect();
    let name: String = entry
        .suggested
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    entry.file = format!("{}/{stamp}-{n:04}-{name}.jpg", entry.kind.as_str());
    let path = settings.dir.join(&entry.file);
    recognition::atomic::replace_file(&path, 0o600, |out| {
        image::codecs::jpeg::JpegEncoder::new_with_quality(out, 92)
            .encode_image(&image)
            .map_err(std::io::Error::other)
    })
    .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    let mut line = serde_json::to_string(&entry).expect("entries serialise");
    line.push('\n');
    let index = settings.dir.join("index.jsonl");
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&index)
        .and_then(|mut f| f.write_all(line.as_bytes()))
        .map_err(|e| format!("cannot append to {}: {e}", index.display()))?;
    Ok(entry)
}

/// Deletes kept files beyond the count limit and past the age limit, oldest first, and
/// drops their index lines.
pub fn prune(settings: &CollectSettings, now: SystemTime) -> std::io::Result<()> {
    let mut files = Vec::new();
    for kind in [Kind::LowMargin, Kind::NearMiss, Kind::Unknown] {
        let dir = settings.dir.join(kind.as_str());
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let modified = entry.metadata()?.modified()?;
            files.push((modified, format!("{}/{name}", kind.as_str())));
        }
    }
    files.sort();
    let too_many = files.len().saturating_sub(settings.max_files);
    let removed: Vec<String> = files
        .iter()
        .enumerate()
        .filter(|(i, (modified, _))| {
            *i < too_many
                || now
                    .duration_since(*modified)
                    .is_ok_and(|age| age > settings.max_age)
        })
        .map(|(_, (_, file))| file.clone())
        .collect();
    if removed.is_empty() {
        return Ok(());
    }
    for file in &removed {
        std::fs::remove_file(settings.dir.join(file))?;
    }
    let index = settings.dir.join("index.jsonl");
    if let Ok(text) = std::fs::read_to_string(&index) {
        let keep: String = text
            .lines()
            .filter(|line| {
                serde_json::from_str::<Entry>(line).is_ok_and(|e| !removed.contains(&e.file))
            })
            .map(|line| format!("{line}\n"))
            .collect();
        recognition::atomic::replace_file(&index, 0o600, |out| out.write_all(keep.as_bytes()))?;
    }
    Ok(())
}

/// Reads the index of a collector directory (for `trainer review`): the entries whose
/// files are still there.
pub fn read_index(dir: &Path) -> std::io::Result<Vec<Entry>> {
    let text = std::fs::read_to_string(dir.join("index.jsonl"))?;
    Ok(text
        .lines()
        .filter_map(|line| serde_json::from_str::<Entry>(line).ok())
        .filter(|e| dir.join(&e.file).is_file())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use recognition::{Face, Prediction};
    use std::os::unix::fs::PermissionsExt as _;

    fn settings(dir: &Path) -> CollectSettings {
        CollectSettings {
            dir: dir.to_owned(),
            max_files: 100,
            max_age: Duration::from_secs(30 * 86400),
            margin: 0.05,
            near_miss: Duration::from_secs(10),
            whole_frames: false,
        }
    }

    fn face(identity: Option<&str>, nearest: &str, side: f32, p: f32, s: f32) -> Recognized {
        Recognized {
            face: Face {
                bbox: BBox {
                    x1: 10.0,
                    y1: 10.0,
                    x2: 10.0 + side,
                    y2: 10.0 + side,
                },
                score: 0.99,
                landmarks: [(0.0, 0.0); 5],
            },
            prediction: Prediction {
                identity: identity.map(str::to_owned),
                nearest: nearest.to_owned(),
                probability: p,
                similarity: s,
            },
        }
    }

    const GATE: Thresholds = Thresholds {
        min_probability: 0.5,
        min_similarity: 0.4,
    };

    fn collector() -> (Collector, Receiver<Item>) {
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        (Collector::new(settings(Path::new("/x")), tx), rx)
    }

    fn kinds(rx: &Receiver<Item>) -> Vec<(Kind, String)> {
        rx.try_iter()
            .map(|i| (i.entry.kind, i.entry.suggested))
            .collect()
    }

    #[test]
    fn a_refused_face_of_someone_let_in_soon_after_is_a_near_miss() {
        let (mut c, rx) = collector();
        let image = RgbImage::new(200, 200);
        let t0 = Instant::now();
        c.frame(t0, &image, &[face(None, "ada", 100.0, 0.6, 0.35)]);
        c.frame(t0, &image, &[face(None, "bob", 100.0, 0.6, 0.30)]);
        let ada = face(Some("ada"), "ada", 100.0, 0.9, 0.7);
        c.frame(
            t0 + Duration::from_secs(2),
            &image,
            std::slice::from_ref(&ada),
        );
        c.unlocked(
            t0 + Duration::from_secs(2),
            "ada",
            (0.9, 0.7),
            &GATE,
            Some(&image),
            &[ada],
        );
        assert_eq!(kinds(&rx), vec![(Kind::NearMiss, "ada".to_owned())]);
        // bob's refused face stays held; it is forgotten after the window.
        c.unlocked(
            t0 + Duration::from_secs(11),
            "bob",
            (0.9, 0.7),
            &GATE,
            None,
            &[],
        );
        assert_eq!(kinds(&rx), vec![]);
    }

    #[test]
    fn an_unlock_that_passed_by_a_small_margin_is_kept_and_a_clear_one_is_not() {
        let (mut c, rx) = collector();
        let image = RgbImage::new(200, 200);
        let ada = face(Some("ada"), "ada", 100.0, 0.9, 0.42);
        let now = Instant::now();
        c.unlocked(
            now,
            "ada",
            (0.9, 0.42),
            &GATE,
            Some(&image),
            std::slice::from_ref(&ada),
        );
        assert_eq!(kinds(&rx), vec![(Kind::LowMargin, "ada".to_owned())]);
        c.unlocked(now, "ada", (0.9, 0.60), &GATE, Some(&image), &[ada]);
        assert_eq!(kinds(&rx), vec![]);
    }

    #[test]
    fn unknown_faces_of_a_refused_encounter_are_kept_as_crops() {
        let (mut c, rx) = collector();
        let image = RgbImage::new(400, 300);
        c.unknown(
            Some(&image),
            &[
                face(None, "ada", 80.0, 0.3, 0.1),
                face(Some("bob"), "bob", 80.0, 0.9, 0.8),
            ],
        );
        let items: Vec<Item> = rx.try_iter().collect();
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].entry.kind, Kind::Unknown);
        // The face (80 px at 10, 10) with half its side of margin on every side, clipped
        // to the frame.
        assert_eq!(items[0].image.dimensions(), (130, 130));
    }

    #[test]
    fn a_busy_writer_drops_faces_instead_of_blocking_the_door() {
        let (tx, _rx) = mpsc::sync_channel(1);
        let mut c = Collector::new(settings(Path::new("/x")), tx);
        let image = RgbImage::new(100, 100);
        for _ in 0..5 {
            c.unknown(Some(&image), &[face(None, "ada", 50.0, 0.3, 0.1)]);
        }
        assert_eq!(c.dropped, 4);
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn kept_faces_are_private_indexed_and_held_to_the_count_and_age_limits() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = settings(&dir.path().join("collected"));
        s.max_files = 3;
        let (kept_tx, kept_rx) = mpsc::channel();
        let tx = start(
            &s,
            move |e| kept_tx.send(e.clone()).unwrap(),
            |e| panic!("{e}"),
        )
        .unwrap();
        let (mut c, _) = collector();
        c.out = tx;
        let image = RgbImage::new(100, 100);
        for _ in 0..5 {
            c.unknown(Some(&image), &[face(None, "ada", 50.0, 0.3, 0.1)]);
            kept_rx.recv_timeout(Duration::from_secs(5)).unwrap();
        }
        assert_eq!(mode(&s.dir), 0o700);
        assert_eq!(mode(&s.dir.join("unknown")), 0o700);
        let entries = read_index(&s.dir).unwrap();
        assert_eq!(entries.len(), 3, "{entries:?}");
        let files: Vec<_> = std::fs::read_dir(s.dir.join("unknown")).unwrap().collect();
        assert_eq!(files.len(), 3);
        for e in &entries {
            assert_eq!(mode(&s.dir.join(&e.file)), 0o600);
            assert_eq!(e.suggested, "ada");
        }
        assert_eq!(mode(&s.dir.join("index.jsonl")), 0o600);
        // Age: everything older than the limit goes at the next prune.
        s.max_age = Duration::from_secs(60);
        prune(&s, SystemTime::now() + Duration::from_secs(120)).unwrap();
        assert!(read_index(&s.dir).unwrap().is_empty());
        assert_eq!(std::fs::read_dir(s.dir.join("unknown")).unwrap().count(), 0);
    }
}

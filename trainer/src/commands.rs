//! The body of each `trainer` subcommand. `main.rs` only parses the command line and
//! prints what these return: each result is an [`Outcome`], whose `Display` is the
//! command's standard output, and whose [`Outcome::failures`] (photos that could not be
//! used) make the exit status 1 after the output is printed. Warnings go to standard error
//! as they are found.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use recognition::photo::{DecodeLimits, DETECT_MAX_SIDE};
use recognition::{BBox, ClassifierMeta, FacePipeline, ModelDir, PipelineConfig, Prediction};

use crate::dataset::{shown, Dataset, Sample};
use crate::enroll::{Extraction, Pick};
use crate::evaluate::{evaluate_with, Evaluation, Scope};
use crate::forget::Forgotten;
use crate::people::{PeopleOptions, PeopleReport};
use crate::push::{check_classifier, parse_url, push_bytes, read_token, ClientOptions};
use crate::train::{
    embed_dataset, train_with, write_classifier, TrainOptions, TrainReport, MIN_PHOTOS_WARNING,
};

pub use crate::enroll::PhotoOptions;

/// What a command returns: printed on standard output.
pub trait Outcome: fmt::Display {
    /// Errors to report on standard error after the output; any makes the exit status 1.
    fn failures(&self) -> Vec<String> {
        Vec::new()
    }
}

/// The options every command that looks at photos shares.
#[derive(Debug, Clone)]
pub struct Setup {
    /// The folder with the ONNX models and manifest.json; `None`: the fetch script's output.
    pub models: Option<PathBuf>,
    /// Detector minimum face and crop margin.
    pub config: PipelineConfig,
    /// The embedding cache folder (`trainer forget` cleans it even when it is not used).
    pub cache_dir: PathBuf,
    /// Read and write the embedding cache.
    pub use_cache: bool,
    /// Show a progress bar.
    pub progress: bool,
    pub photos: PhotoOptions,
}

impl Setup {
    /// `~/.cache/facelock/embeddings`, next to the models' default folder.
    pub fn default_cache_dir() -> PathBuf {
        ModelDir::default_location()
            .parent()
            .unwrap_or(Path::new("."))
            .join("embeddings")
    }

    fn pipeline(&self) -> Result<FacePipeline> {
        let dir = self
            .models
            .clone()
            .unwrap_or_else(ModelDir::default_location);
        let models = ModelDir::open(&dir)?;
        Ok(FacePipeline::load(&models, self.config.clone())?)
    }

    fn cache(&self) -> Option<&Path> {
        self.use_cache.then_some(self.cache_dir.as_path())
    }
}

/// Loads a classifier through recognition's trust path: with `trusted_key`, only when
/// signed with its private half (an unsigned or otherwise signed file is refused, with the
/// fix); always only when made for these models and with this pipeline's settings.
fn load_classifier(
    pipeline: &FacePipeline,
    path: &Path,
    trusted_key: Option<&Path>,
) -> Result<recognition::Classifier> {
    let key = trusted_key
        .map(recognition::signature::read_verifying_key)
        .transpose()?;
    Ok(pipeline.load_classifier(path, key.as_ref())?)
}

// ---- train --------------------------------------------------------------------------------

/// `trainer train`.
#[derive(Debug, Clone)]
pub struct Train {
    pub images: PathBuf,
    pub output: PathBuf,
    pub unknown: Option<PathBuf>,
    pub target_far: f64,
    pub tar_slack: f64,
    pub folds: usize,
    /// Sign with this private key.
    pub sign: Option<PathBuf>,
}

/// A classifier trained and written.
#[derive(Debug)]
pub struct Trained {
    pub report: TrainReport,
    pub output: PathBuf,
    pub signed_with: Option<PathBuf>,
}

/// Trains on `args.images`, signs when asked, and writes the classifier file.
pub fn train(setup: &Setup, args: Train) -> Result<Trained> {
    // Read the key first: a bad key path should not cost a training run.
    let key = args
        .sign
        .as_deref()
        .map(recognition::signature::read_signing_key)
        .transpose()?;
    let pipeline = setup.pipeline()?;
    let options = TrainOptions {
        images: args.images,
        output: args.output.clone(),
        unknown: args.unknown,
        target_far: args.target_far,
        tar_slack: args.tar_slack,
        folds: args.folds,
        cache_dir: setup.cache().map(Path::to_owned),
        progress: setup.progress,
    };
    let report = train_with(&pipeline, &options, &setup.photos)?;
    for (person, n) in &report.meta.photos_per_person {
        if *n < MIN_PHOTOS_WARNING {
            log::warn!(
                "{person} has only {n} usable photo(s); {MIN_PHOTOS_WARNING} or more \
                 from different days and angles make recognition reliable"
            );
        }
    }
    let bytes = match &key {
        Some(key) => recognition::signature::sign(&report.bytes, key),
        None => report.bytes.clone(),
    };
    write_classifier(&args.output, &bytes)?;
    Ok(Trained {
        report,
        output: args.output,
        signed_with: key.and(args.sign),
    })
}

impl fmt::Display for Trained {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let report = &self.report;
        for s in &report.extraction.skipped {
            writeln!(f, "skipped {}: {}", shown(&s.path), s.reason)?;
        }
        for c in &report.copies {
            writeln!(f, "left out {}: {}", shown(&c.path), c.reason())?;
        }
        for u in &report.unusable_people {
            writeln!(
                f,
                "not enrolled: {} (folder {}): no usable photo",
                u.person,
                shown(&u.folder)
            )?;
        }
        for e in report.extraction.multi_face() {
            let how = match e.pick {
                Pick::Agrees { similarity } => format!(
                    "used the one that looks like {}'s other photos (similarity {similarity:.2})",
                    e.sample.person
                ),
                _ => format!(
                    "used the main one (size and closeness to the centre): {} has no \
                     single-face photo to compare with",
                    e.sample.person
                ),
            };
            writeln!(f, "{}: {} faces, {how}", shown(&e.sample.path), e.faces)?;
        }
        if let Some(key) = &self.signed_with {
            writeln!(f, "signed with {}", key.display())?;
        }
        let c = &report.choice;
        writeln!(
            f,
            "enrolled {} people from {} photos ({} skipped, {} copies counted once, {} from \
             cache); {} stranger photos",
            report.meta.labels.len(),
            report.extraction.embedded.len() - report.copies.len(),
            report.extraction.skipped.len(),
            report.copies.len(),
            report.extraction.cache_hits,
            report.unknown_used
        )?;
        writeln!(
            f,
            "gate: probability >= {:.2}, similarity >= {:.2}; cross-validated: \
             accuracy {:.1} %, true accept {:.1} %, false accept {:.1} %",
            c.thresholds.min_probability,
            c.thresholds.min_similarity,
            c.closed_set_accuracy * 100.0,
            c.true_accept_rate * 100.0,
            c.false_accept_rate * 100.0
        )?;
        writeln!(f, "wrote {}", self.output.display())
    }
}

impl Outcome for Trained {}

// ---- keygen, sign -------------------------------------------------------------------------

/// A signing key pair written by `trainer keygen`.
#[derive(Debug, Clone)]
pub struct KeyFiles {
    pub private: PathBuf,
    pub public: PathBuf,
}

/// Creates an ed25519 key pair in `out`: `facelock-signing.key` (0600, never overwritten)
/// and `facelock-signing.pub`.
pub fn keygen(out: &Path) -> Result<KeyFiles> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let keys = recognition::signature::keygen();
    let private = out.join("facelock-signing.key");
    let public = out.join("facelock-signing.pub");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&private)
        .with_context(|| {
            format!(
                "cannot create {} (an existing key is never overwritten)",
                private.display()
            )
        })?;
    f.write_all(keys.private_pem.as_bytes())
        .with_context(|| format!("writing {}", private.display()))?;
    std::fs::write(&public, keys.public_pem.as_bytes())
        .with_context(|| format!("writing {}", public.display()))?;
    Ok(KeyFiles { private, public })
}

impl fmt::Display for KeyFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "private key: {} (keep it on this workstation)",
            self.private.display()
        )?;
        writeln!(
            f,
            "public key:  {} (copy it to the lock and set security.trusted_key)",
            self.public.display()
        )
    }
}

impl Outcome for KeyFiles {}

/// A classifier file signed in place.
#[derive(Debug, Clone)]
pub struct Signed(pub PathBuf);

/// Signs (or re-signs) `classifier` in place with the private key in `key`.
pub fn sign(key: &Path, classifier: &Path) -> Result<Signed> {
    let key = recognition::signature::read_signing_key(key)?;
    let bytes =
        std::fs::read(classifier).with_context(|| format!("reading {}", classifier.display()))?;
    write_classifier(classifier, &recognition::signature::sign(&bytes, &key))?;
    Ok(Signed(classifier.to_owned()))
}

impl fmt::Display for Signed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "signed {}", self.0.display())
    }
}

impl Outcome for Signed {}

// ---- evaluate -----------------------------------------------------------------------------

/// `trainer evaluate`.
#[derive(Debug, Clone)]
pub struct Evaluate {
    pub classifier: PathBuf,
    pub images: PathBuf,
    pub trusted_key: Option<PathBuf>,
    pub unknown: Option<PathBuf>,
    /// The photos the classifier was trained on: each error is linked to the enrolment
    /// photos nearest to it.
    pub enrolled: Option<PathBuf>,
    /// Write the full results as JSON here.
    pub json: Option<PathBuf>,
    /// The HTML report (default: next to the JSON, or `report.html`).
    pub html: Option<PathBuf>,
}

/// An evaluation, with where its HTML report was written.
#[derive(Debug)]
pub struct Evaluated {
    pub evaluation: Evaluation,
    pub html: PathBuf,
}

/// Measures a classifier on labelled photos; writes the JSON results (when asked) and the
/// HTML report.
pub fn evaluate(setup: &Setup, args: Evaluate) -> Result<Evaluated> {
    let pipeline = setup.pipeline()?;
    let classifier = load_classifier(&pipeline, &args.classifier, args.trusted_key.as_deref())?;
    let evaluation = evaluate_with(
        &pipeline,
        &classifier,
        &args.images,
        &Scope {
            unknown: args.unknown.as_deref(),
            enrolment: args.enrolled.as_deref(),
            cache_dir: setup.cache(),
            photos: &setup.photos,
            progress: setup.progress,
        },
    )?;
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&evaluation)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let html = args.html.unwrap_or_else(|| match &args.json {
        Some(j) => j.with_extension("html"),
        None => PathBuf::from("report.html"),
    });
    std::fs::write(
        &html,
        crate::report::html(&evaluation, "facelock evaluation"),
    )
    .with_context(|| format!("writing {}", html.display()))?;
    Ok(Evaluated { evaluation, html })
}

impl fmt::Display for Evaluated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let eval = &self.evaluation;
        for p in &eval.photos {
            writeln!(
                f,
                "{}\t{}\t{}\tp={:.3}\tsim={:.3}",
                shown(&p.path),
                p.person,
                p.predicted,
                p.probability,
                p.similarity
            )?;
        }
        for p in eval.photos.iter().filter(|p| !p.causes.is_empty()) {
            writeln!(f, "{}: {}", shown(&p.path), p.diagnosis())?;
        }
        for s in &eval.skipped {
            writeln!(f, "skipped {}: {}", shown(&s.path), s.reason)?;
        }
        writeln!(
            f,
            "closed-set accuracy {:.1} % | true accept {:.1} % of {} | false accept {:.1} % of {} | misidentified {}",
            eval.closed_set_accuracy * 100.0,
            eval.true_accept_rate * 100.0,
            eval.enrolled_photos,
            eval.false_accept_rate * 100.0,
            eval.impostor_photos,
            eval.misidentified
        )?;
        writeln!(f, "report: {}", self.html.display())
    }
}

impl Outcome for Evaluated {}

// ---- recognize ----------------------------------------------------------------------------

/// `trainer recognize`.
#[derive(Debug, Clone)]
pub struct Recognize {
    pub classifier: PathBuf,
    pub trusted_key: Option<PathBuf>,
    pub images: Vec<PathBuf>,
    /// Write a copy of the (single) image with boxes and names.
    pub annotate: Option<PathBuf>,
}

/// The faces found in one photo: boxes in the photo's own pixels.
#[derive(Debug, Clone)]
pub struct PhotoFaces {
    pub path: PathBuf,
    pub faces: Vec<(BBox, Prediction)>,
}

/// What `trainer recognize` found, and the photos it could not use.
#[derive(Debug, Clone)]
pub struct Recognitions {
    pub photos: Vec<PhotoFaces>,
    pub errors: Vec<String>,
}

/// Names every face in the given photos. A photo that cannot be used is reported and the
/// others are still recognised.
pub fn recognize(setup: &Setup, args: Recognize) -> Result<Recognitions> {
    let pipeline = setup.pipeline()?;
    let classifier = load_classifier(&pipeline, &args.classifier, args.trusted_key.as_deref())?;
    let limits = DecodeLimits::photos(setup.photos.max_side);
    let mut out = Recognitions {
        photos: Vec::new(),
        errors: Vec::new(),
    };
    for path in &args.images {
        let photo = match recognition::photo::load_photo(path, &limits, DETECT_MAX_SIDE) {
            Ok(photo) => photo,
            Err(e) => {
                out.errors.push(escaped_error(&e, path));
                continue;
            }
        };
        let found = pipeline.recognize(&photo.image, &classifier, 0.0)?;
        out.photos.push(PhotoFaces {
            path: path.clone(),
            faces: found
                .iter()
                .map(|r| (photo.to_original(&r.face.bbox), r.prediction.clone()))
                .collect(),
        });
        if let Some(annotated) = &args.annotate {
            // Drawn on the photo as detection saw it (scaled down when large).
            let mut canvas = photo.image.clone();
            let options = recognition::annotate::AnnotateOptions {
                min_face_px: None,
                landmarks: true,
            };
            recognition::annotate::draw_recognized(&mut canvas, &found, &options);
            canvas
                .save(annotated)
                .with_context(|| format!("writing {}", shown(annotated)))?;
        }
    }
    if !out.errors.is_empty() {
        let n = out.errors.len();
        out.errors.push(format!(
            "{n} of {} photo(s) could not be used",
            args.images.len()
        ));
    }
    Ok(out)
}

/// An error about one photo, with its path escaped when it is not UTF-8.
fn escaped_error(e: &recognition::Error, path: &Path) -> String {
    match e {
        recognition::Error::Image { reason, .. } => {
            format!("cannot use image {}: {reason}", shown(path))
        }
        other => other.to_string(),
    }
}

impl fmt::Display for Recognitions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for photo in &self.photos {
            if photo.faces.is_empty() {
                writeln!(f, "{}\tno face", shown(&photo.path))?;
            }
            for (b, p) in &photo.faces {
                writeln!(
                    f,
                    "{}\t{}\tbox=[{:.0},{:.0},{:.0},{:.0}]\tp={:.3}\tsim={:.3}\tnearest={}",
                    shown(&photo.path),
                    p.label(),
                    b.x1,
                    b.y1,
                    b.x2,
                    b.y2,
                    p.probability,
                    p.similarity,
                    p.nearest
                )?;
            }
        }
        Ok(())
    }
}

impl Outcome for Recognitions {
    fn failures(&self) -> Vec<String> {
        self.errors.clone()
    }
}

// ---- embed --------------------------------------------------------------------------------

/// The main face's embedding of each photo.
#[derive(Debug)]
pub struct Embeddings {
    pub extraction: Extraction,
    /// How many photos were given.
    pub photos: usize,
}

/// Embeds the main face of each photo (no cache).
pub fn embed(setup: &Setup, images: &[PathBuf]) -> Result<Embeddings> {
    let pipeline = setup.pipeline()?;
    let dataset = Dataset {
        samples: images
            .iter()
            .map(|p| Sample {
                person: String::new(),
                path: p.clone(),
            })
            .collect(),
        ..Dataset::default()
    };
    let extraction = embed_dataset(&pipeline, &dataset, None, &setup.photos, false)?;
    Ok(Embeddings {
        extraction,
        photos: images.len(),
    })
}

/// One JSON object a line: `path`, `box`, `faces`, `embedding`, and `path_bytes` (the
/// exact bytes) when the name is not UTF-8 (it is escaped in `path`).
impl fmt::Display for Embeddings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for e in &self.extraction.embedded {
            let mut line = serde_json::json!({
                "path": shown(&e.sample.path),
                "box": e.bbox,
                "faces": e.faces,
                "embedding": e.embedding.as_slice(),
            });
            if e.sample.path.to_str().is_none() {
                line["path_bytes"] = e.sample.path.as_os_str().as_encoded_bytes().into();
            }
            writeln!(f, "{line}")?;
        }
        Ok(())
    }
}

impl Outcome for Embeddings {
    fn failures(&self) -> Vec<String> {
        let skipped = &self.extraction.skipped;
        if skipped.is_empty() {
            return Vec::new();
        }
        skipped
            .iter()
            .map(|s| format!("no embedding for {}: {}", shown(&s.path), s.reason))
            .chain([format!(
                "{} of {} photo(s) gave no embedding",
                skipped.len(),
                self.photos
            )])
            .collect()
    }
}

// ---- people -------------------------------------------------------------------------------

/// Lists the people of `images` and the photos that will hurt them at the door.
pub fn people(
    setup: &Setup,
    images: &Path,
    door_min_face_px: u32,
    classifier: Option<&Path>,
) -> Result<PeopleReport> {
    let classifier: Option<ClassifierMeta> = classifier
        .map(|path| {
            let bytes = std::fs::read(path)
                .with_context(|| format!("cannot read classifier {}", shown(path)))?;
            Ok::<_, anyhow::Error>(recognition::artifact::meta_from_bytes(path, &bytes)?)
        })
        .transpose()?;
    let pipeline = setup.pipeline()?;
    let dataset = Dataset::people(images)?;
    let mut extraction = embed_dataset(
        &pipeline,
        &dataset,
        setup.cache(),
        &setup.photos,
        setup.progress,
    )?;
    crate::enroll::pick_by_person(&mut extraction);
    let options = PeopleOptions {
        door_min_face_px: door_min_face_px as f32,
        classifier,
    };
    Ok(crate::people::people(&dataset, &extraction, &options))
}

impl Outcome for PeopleReport {}

// ---- forget -------------------------------------------------------------------------------

/// What `trainer forget` did.
#[derive(Debug, Clone)]
pub enum ForgetOutcome {
    Removed(Forgotten),
    /// The administrator answered no.
    Kept,
}

/// Removes a person's folder under `images` and their cached embeddings, after asking on
/// the terminal unless `yes`. The cache is cleaned even when it is not used: it may hold
/// them from earlier runs.
pub fn forget(setup: &Setup, person: &str, images: &Path, yes: bool) -> Result<ForgetOutcome> {
    use std::io::{BufRead as _, IsTerminal as _, Write as _};
    let plan = crate::forget::plan(images, person)?;
    if !yes {
        if !std::io::stdin().is_terminal() {
            anyhow::bail!(
                "this removes {} ({} file(s)); run it in a terminal to confirm, or add --yes",
                shown(&plan.folder),
                plan.files.len()
            );
        }
        print!(
            "remove {} ({} file(s)) and {person}'s cached embeddings? [y/N] ",
            shown(&plan.folder),
            plan.files.len()
        );
        std::io::stdout().flush()?;
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            return Ok(ForgetOutcome::Kept);
        }
    }
    Ok(ForgetOutcome::Removed(crate::forget::forget(
        &plan,
        Some(&setup.cache_dir),
    )?))
}

impl fmt::Display for ForgetOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ForgetOutcome::Removed(forgotten) => writeln!(f, "{forgotten}"),
            ForgetOutcome::Kept => writeln!(f, "nothing removed"),
        }
    }
}

impl Outcome for ForgetOutcome {}

// ---- capture ------------------------------------------------------------------------------

/// `trainer capture`.
#[derive(Debug, Clone)]
pub struct Capture {
    pub person: String,
    pub camera: crate::capture::Camera,
    pub size: crate::capture::FrameSize,
    pub count: u32,
    pub timeout: Duration,
    /// The image tree: photos go to `images/<person>/`.
    pub images: PathBuf,
    /// The lock's `recognition.min_face_px`: faces must be 1.5 times as large.
    pub door_min_face_px: f32,
}

/// Captures enrolment photos from a camera at this workstation with the door's quality
/// gate, printing progress as it goes (unless `--quiet`).
pub fn capture(setup: &Setup, args: Capture) -> Result<crate::capture::Captured> {
    lock_daemon::capture::check_name(&args.person).map_err(anyhow::Error::msg)?;
    let pipeline = setup.pipeline()?;
    let mut source = crate::capture::open(&args.camera, args.size)?;
    let dir = crate::capture::person_dir(&args.images, &args.person)?;
    let order = lock_daemon::capture::Order {
        person: args.person,
        count: args.count,
        timeout: args.timeout,
        by: "trainer capture".into(),
    };
    let gate = recognition::quality::QualityGate::for_door(args.door_min_face_px);
    let mut detect = |image: &image::RgbImage| Ok(pipeline.detect(image)?);
    let mut stdout = std::io::stdout();
    let mut sink = std::io::sink();
    let out: &mut dyn std::io::Write = if setup.progress {
        &mut stdout
    } else {
        &mut sink
    };
    crate::capture::run(&mut *source, &mut detect, &order, gate, &dir, out)
}

impl Outcome for crate::capture::Captured {
    fn failures(&self) -> Vec<String> {
        self.failure().into_iter().collect()
    }
}

// ---- push ---------------------------------------------------------------------------------

/// `trainer push`.
#[derive(Debug, Clone)]
pub struct Push {
    pub url: String,
    pub token_file: PathBuf,
    pub ca_cert: Option<PathBuf>,
    pub timeout: Duration,
    pub classifier: PathBuf,
}

/// A classifier put in service on the lock.
#[derive(Debug)]
pub struct InService {
    pub local: crate::push::LocalClassifier,
    pub endpoint: String,
    pub answer: crate::push::Pushed,
}

/// Uploads a classifier to the lock. Everything is checked here before the token leaves
/// this machine; warnings (clear text, an unsigned file) are printed before the upload.
pub fn push(args: Push) -> Result<InService> {
    let target = parse_url(&args.url)?;
    if let Some(warning) = target.clear_text_warning() {
        eprintln!("warning: {warning}");
    }
    if args.ca_cert.is_some() && !target.https {
        eprintln!("warning: --ca-cert is not used with an http:// URL");
    }
    let token = read_token(&args.token_file)?;
    for warning in &token.warnings {
        eprintln!("warning: {warning}");
    }
    let local = check_classifier(&args.classifier)?;
    if let Some(warning) = local.unsigned_warning() {
        eprintln!("warning: {warning}");
    }
    let options = ClientOptions {
        ca_cert: args.ca_cert,
        timeout: args.timeout,
    };
    let answer = push_bytes(&target, &token.token, &local.bytes, &options)?;
    if !answer.ok {
        eprintln!(
            "warning: the lock wrote and checked the classifier but has not confirmed it in \
             service yet; check its events (reload / reload-refused)"
        );
    }
    Ok(InService {
        local,
        endpoint: target.endpoint,
        answer,
    })
}

impl fmt::Display for InService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (local, answer) = (&self.local, &self.answer);
        writeln!(
            f,
            "pushed {} ({} bytes, {}): {} people ({}), created {}",
            shown(&self.local.path),
            local.bytes.len(),
            if local.signed { "signed" } else { "unsigned" },
            local.meta.labels.len(),
            local.meta.labels.join(", "),
            local.meta.created
        )?;
        writeln!(f, "to {}", self.endpoint)?;
        if !answer.message.is_empty() {
            writeln!(f, "lock: {}", answer.message)?;
        }
        writeln!(
            f,
            "in service: {} people ({}), created {}",
            answer.people.len(),
            answer.people.join(", "),
            answer.created
        )?;
        writeln!(
            f,
            "sha256 {} (matches {})",
            local.sha256,
            shown(&self.local.path)
        )
    }
}

impl Outcome for InService {}

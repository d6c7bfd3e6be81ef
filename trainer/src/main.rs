//! `trainer`: command-line front end; the work happens in the library.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use recognition::photo::{DecodeLimits, DETECT_MAX_SIDE, MAX_PHOTO_SIDE};
use recognition::{DetectorConfig, FacePipeline, ModelDir, PipelineConfig};
use trainer::dataset::{shown, Dataset};
use trainer::enroll::PhotoOptions;
use trainer::evaluate::evaluate_with;
use trainer::train::{
    embed_dataset, train_with, write_classifier, TrainOptions, MIN_PHOTOS_WARNING,
};

#[derive(Debug, Parser)]
#[command(
    name = "trainer",
    version,
    about = "Enrol faces and train the facelock classifier"
)]
struct Cli {
    #[command(flatten)]
    pipeline: PipelineArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct PipelineArgs {
    /// Folder with the ONNX models and manifest.json (default: the fetch script's output).
    #[arg(long, global = true, env = "FACELOCK_MODELS")]
    models: Option<PathBuf>,
    /// Smallest face, in pixels, the detector looks for.
    #[arg(long, global = true, default_value_t = 20.0)]
    min_face_px: f32,
    /// Crop margin around the face box, as a fraction of its side.
    #[arg(long, global = true, default_value_t = 0.0)]
    crop_margin: f32,
    /// Folder for the embedding cache (default: ~/.cache/facelock/embeddings).
    #[arg(long, global = true)]
    cache_dir: Option<PathBuf>,
    /// Do not read or write the embedding cache.
    #[arg(long, global = true)]
    no_cache: bool,
    /// No progress bar.
    #[arg(long, short, global = true)]
    quiet: bool,
    /// Largest photo width or height, in pixels. Larger photos are refused before they
    /// are decoded (a few KB of file can declare gigabytes of pixels).
    #[arg(
        long,
        global = true,
        default_value_t = MAX_PHOTO_SIDE,
        value_parser = clap::value_parser!(u32).range(i64::from(MIN_PHOTO_LIMIT)..=i64::from(MAX_PHOTO_LIMIT)),
    )]
    max_photo_px: u32,
}

/// Bounds of `--max-photo-px`: below the lower one no usable face fits; above the upper
/// one a single photo needs more than 2 GiB to decode.
const MIN_PHOTO_LIMIT: u32 = 160;
const MAX_PHOTO_LIMIT: u32 = 16384;

impl PipelineArgs {
    fn photos(&self) -> PhotoOptions {
        PhotoOptions {
            max_side: self.max_photo_px,
            detect_side: DETECT_MAX_SIDE,
        }
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Train a classifier on images/<person>/*.jpg and write it.
    Train {
        images: PathBuf,
        /// Where to write the classifier file.
        #[arg(short, long)]
        output: PathBuf,
        /// Photos of people who must not get in (any folder layout).
        #[arg(long)]
        unknown: Option<PathBuf>,
        /// Largest tolerated false-accept rate on the strangers seen in calibration.
        #[arg(long, default_value_t = 0.0)]
        target_far: f64,
        /// Genuine accept rate the gate may give up (below the best reachable)
        /// to sit further from the strangers.
        #[arg(long, default_value_t = 0.05)]
        tar_slack: f64,
        /// Cross-validation folds for calibrating the gate.
        #[arg(long, default_value_t = 5)]
        folds: usize,
        /// Sign the classifier with this private key (from `trainer keygen`).
        #[arg(long)]
        sign: Option<PathBuf>,
    },
    /// Create an ed25519 key pair for signing classifiers.
    Keygen {
        /// Folder for `facelock-signing.key` (private, keep it on the workstation) and
        /// `facelock-signing.pub` (copy it to the lock, `security.trusted_key`).
        #[arg(long, default_value = ".")]
        out: PathBuf,
    },
    /// Sign (or re-sign) an existing classifier file in place.
    Sign {
        /// Private key from `trainer keygen`.
        key: PathBuf,
        classifier: PathBuf,
    },
    /// Measure a classifier on labelled photos.
    Evaluate {
        classifier: PathBuf,
        images: PathBuf,
        /// Refuse the classifier unless signed with the private half of this public key
        /// (PEM, from `trainer keygen`; the lock's `security.trusted_key`).
        #[arg(long, value_name = "FILE")]
        trusted_key: Option<PathBuf>,
        #[arg(long)]
        unknown: Option<PathBuf>,
        /// Write the full results as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Write the HTML report here (default: next to the JSON, or report.html).
        #[arg(long)]
        html: Option<PathBuf>,
    },
    /// Name every face in the given photos.
    Recognize {
        classifier: PathBuf,
        /// Refuse the classifier unless signed with the private half of this public key
        /// (PEM, from `trainer keygen`; the lock's `security.trusted_key`).
        #[arg(long, value_name = "FILE")]
        trusted_key: Option<PathBuf>,
        #[arg(required = true)]
        images: Vec<PathBuf>,
        /// Write a copy of the (single) image with boxes and names.
        #[arg(long)]
        annotate: Option<PathBuf>,
    },
    /// Print the main face's embedding of each photo as JSON lines.
    Embed {
        #[arg(required = true)]
        images: Vec<PathBuf>,
        /// JSON lines output (the only format).
        #[arg(long)]
        json: bool,
    },
    /// List the people of an image tree, and the photos that will hurt them at the door.
    ///
    /// For each person: photos, usable photos and (with --classifier) how many the
    /// classifier was trained on. Warns about too few photos, a photo unlike the person's
    /// others (likely mislabelled), two people the gate cannot keep apart, faces smaller
    /// than the door looks at, and unusable files.
    People {
        images: PathBuf,
        /// The lock's `recognition.min_face_px`: photos with smaller faces are flagged.
        #[arg(long, default_value_t = 80, value_parser = clap::value_parser!(u32).range(20..=2000))]
        door_min_face_px: u32,
        /// The classifier in service, to show whom it knows and from how many photos.
        #[arg(long)]
        classifier: Option<PathBuf>,
    },
    /// Remove a person: their folder under --images and their cached embeddings.
    ///
    /// Asks first (or pass --yes). The lock keeps letting them in until a classifier
    /// trained without them is pushed.
    Forget {
        person: String,
        /// The image tree (one folder per person).
        #[arg(long, default_value = "images")]
        images: PathBuf,
        /// Remove without asking.
        #[arg(long)]
        yes: bool,
    },
    /// Upload a classifier to the lock over its HTTP API and put it in service.
    ///
    /// Sends CLASSIFIER (as written by `trainer train` or `trainer sign`) to
    /// `PUT URL/api/v1/classifier` with an admin token. The lock checks it exactly as a file
    /// copied into place (signature, embedder, no rollback), replaces its classifier
    /// atomically and reloads it; a refused file leaves the old one in service. The file is
    /// checked here first, and the sha256 the lock reports must match it.
    ///
    /// The lock must run with `[http]` enabled and know the token: create it on the lock with
    /// `lock-daemon token new NAME --scope admin`, and keep the token in a file only you can
    /// read (`chmod 600`). Use https (with --ca-cert for the lock's own certificate), or
    /// plain http through an SSH tunnel to the lock's 127.0.0.1.
    Push {
        /// Base address of the lock's HTTP API, e.g. https://lock.local:8443 or
        /// http://127.0.0.1:8080 (over an SSH tunnel). No token, user or query in it.
        #[arg(long)]
        url: String,
        /// File holding the admin token (only the token; surrounding whitespace is ignored).
        #[arg(long)]
        token_file: PathBuf,
        /// PEM file with the lock's certificate or its CA (self-signed or private CA). When
        /// given, only these certificates are trusted, instead of the public web roots.
        #[arg(long)]
        ca_cert: Option<PathBuf>,
        /// Longest the whole upload and reload may take, in seconds.
        #[arg(long, default_value_t = trainer::push::DEFAULT_TIMEOUT_SECS,
              value_parser = clap::value_parser!(u64).range(1..=3600))]
        timeout_secs: u64,
        /// The classifier file to put in service.
        classifier: PathBuf,
    },
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load_pipeline(args: &PipelineArgs) -> Result<FacePipeline> {
    let dir = args
        .models
        .clone()
        .unwrap_or_else(ModelDir::default_location);
    let models = ModelDir::open(&dir)?;
    let config = PipelineConfig {
        detector: DetectorConfig {
            min_face_px: args.min_face_px,
            ..DetectorConfig::default()
        },
        crop_margin: args.crop_margin,
    };
    Ok(FacePipeline::load(&models, config)?)
}

fn cache_dir(args: &PipelineArgs) -> Option<PathBuf> {
    if args.no_cache {
        return None;
    }
    Some(args.cache_dir.clone().unwrap_or_else(default_cache_dir))
}

fn default_cache_dir() -> PathBuf {
    ModelDir::default_location()
        .parent()
        .unwrap_or(Path::new("."))
        .join("embeddings")
}

fn run(cli: Cli) -> Result<()> {
    // Key handling needs no models.
    match &cli.command {
        Command::Keygen { out } => return keygen(out),
        Command::Push {
            url,
            token_file,
            ca_cert,
            timeout_secs,
            classifier,
        } => return push(url, token_file, ca_cert.clone(), *timeout_secs, classifier),
        Command::Forget {
            person,
            images,
            yes,
        } => return forget(person, images, *yes, &cli.pipeline),
        Command::Sign { key, classifier } => {
            let key = recognition::signature::read_signing_key(key)?;
            let bytes = std::fs::read(classifier)
                .with_context(|| format!("reading {}", classifier.display()))?;
            write_classifier(classifier, &recognition::signature::sign(&bytes, &key))?;
            println!("signed {}", classifier.display());
            return Ok(());
        }
        _ => {}
    }
    let pipeline = load_pipeline(&cli.pipeline)?;
    let progress = !cli.pipeline.quiet;
    match cli.command {
        Command::Train {
            images,
            output,
            unknown,
            target_far,
            tar_slack,
            folds,
            sign,
        } => {
            // Read the key first: a bad key path should not cost a training run.
            let key = sign
                .as_deref()
                .map(recognition::signature::read_signing_key)
                .transpose()?;
            let options = TrainOptions {
                images,
                output: output.clone(),
                unknown,
                target_far,
                tar_slack,
                folds: folds.max(2),
                cache_dir: cache_dir(&cli.pipeline),
                progress,
            };
            let report = train_with(&pipeline, &options, &cli.pipeline.photos())?;
            for s in &report.extraction.skipped {
                println!("skipped {}: {}", shown(&s.path), s.reason);
            }
            for c in &report.copies {
                println!("left out {}: {}", shown(&c.path), c.reason());
            }
            for u in &report.unusable_people {
                println!(
                    "not enrolled: {} (folder {}): no usable photo",
                    u.person,
                    shown(&u.folder)
                );
            }
            for e in report.extraction.multi_face() {
                let how = match e.pick {
                    trainer::enroll::Pick::Agrees { similarity } => format!(
                        "used the one that looks like {}'s other photos (similarity {similarity:.2})",
                        e.sample.person
                    ),
                    _ => format!(
                        "used the main one (size and closeness to the centre): {} has no \
                         single-face photo to compare with",
                        e.sample.person
                    ),
                };
                println!("{}: {} faces, {how}", shown(&e.sample.path), e.faces);
            }
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
            write_classifier(&output, &bytes)?;
            if key.is_some() {
                println!("signed with {}", sign.unwrap_or_default().display());
            }
            let c = &report.choice;
            println!(
                "enrolled {} people from {} photos ({} skipped, {} copies counted once, {} from \
                 cache); {} stranger photos",
                report.meta.labels.len(),
                report.extraction.embedded.len() - report.copies.len(),
                report.extraction.skipped.len(),
                report.copies.len(),
                report.extraction.cache_hits,
                report.unknown_used
            );
            println!(
                "gate: probability >= {:.2}, similarity >= {:.2}; cross-validated: \
                 accuracy {:.1} %, true accept {:.1} %, false accept {:.1} %",
                c.thresholds.min_probability,
                c.thresholds.min_similarity,
                c.closed_set_accuracy * 100.0,
                c.true_accept_rate * 100.0,
                c.false_accept_rate * 100.0
            );
            println!("wrote {}", output.display());
        }
        Command::Evaluate {
            classifier,
            images,
            trusted_key,
            unknown,
            json,
            html,
        } => {
            let classifier = load_classifier(&pipeline, &classifier, trusted_key.as_deref())?;
            let eval = evaluate_with(
                &pipeline,
                &classifier,
                &images,
                unknown.as_deref(),
                cache_dir(&cli.pipeline).as_deref(),
                &cli.pipeline.photos(),
                progress,
            )?;
            for p in &eval.photos {
                println!(
                    "{}\t{}\t{}\tp={:.3}\tsim={:.3}",
                    shown(&p.path),
                    p.person,
                    p.predicted,
                    p.probability,
                    p.similarity
                );
            }
            for s in &eval.skipped {
                println!("skipped {}: {}", shown(&s.path), s.reason);
            }
            println!(
                "closed-set accuracy {:.1} % | true accept {:.1} % of {} | false accept {:.1} % of {} | misidentified {}",
                eval.closed_set_accuracy * 100.0,
                eval.true_accept_rate * 100.0,
                eval.enrolled_photos,
                eval.false_accept_rate * 100.0,
                eval.impostor_photos,
                eval.misidentified
            );
            if let Some(path) = &json {
                std::fs::write(path, serde_json::to_vec_pretty(&eval)?)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            let html_path = html.unwrap_or_else(|| match &json {
                Some(j) => j.with_extension("html"),
                None => PathBuf::from("report.html"),
            });
            std::fs::write(
                &html_path,
                trainer::report::html(&eval, "facelock evaluation"),
            )
            .with_context(|| format!("writing {}", html_path.display()))?;
            println!("report: {}", html_path.display());
        }
        Command::Recognize {
            classifier,
            trusted_key,
            images,
            annotate,
        } => {
            let classifier = load_classifier(&pipeline, &classifier, trusted_key.as_deref())?;
            let limits = DecodeLimits::photos(cli.pipeline.max_photo_px);
            let mut failed = 0;
            for path in &images {
                // A bad photo is reported and the others are still recognised.
                let photo = match recognition::photo::load_photo(path, &limits, DETECT_MAX_SIDE) {
                    Ok(photo) => photo,
                    Err(e) => {
                        eprintln!("error: {}", escaped_error(&e, path));
                        failed += 1;
                        continue;
                    }
                };
                let found = pipeline.recognize(&photo.image, &classifier, 0.0)?;
                if found.is_empty() {
                    println!("{}\tno face", shown(path));
                }
                for r in &found {
                    let b = photo.to_original(&r.face.bbox);
                    println!(
                        "{}\t{}\tbox=[{:.0},{:.0},{:.0},{:.0}]\tp={:.3}\tsim={:.3}\tnearest={}",
                        shown(path),
                        r.prediction.label(),
                        b.x1,
                        b.y1,
                        b.x2,
                        b.y2,
                        r.prediction.probability,
                        r.prediction.similarity,
                        r.prediction.nearest
                    );
                }
                if let Some(out) = &annotate {
                    // Drawn on the photo as detection saw it (scaled down when large).
                    let mut canvas = photo.image.clone();
                    let options = recognition::annotate::AnnotateOptions {
                        min_face_px: None,
                        landmarks: true,
                    };
                    recognition::annotate::draw_recognized(&mut canvas, &found, &options);
                    canvas
                        .save(out)
                        .with_context(|| format!("writing {}", shown(out)))?;
                }
            }
            if failed > 0 {
                anyhow::bail!("{failed} of {} photo(s) could not be used", images.len());
            }
        }
        Command::People {
            images,
            door_min_face_px,
            classifier,
        } => {
            let classifier = classifier
                .map(|path| {
                    let bytes = std::fs::read(&path)
                        .with_context(|| format!("cannot read classifier {}", shown(&path)))?;
                    Ok::<_, anyhow::Error>(recognition::artifact::meta_from_bytes(&path, &bytes)?)
                })
                .transpose()?;
            let dataset = Dataset::people(&images)?;
            let mut extraction = embed_dataset(
                &pipeline,
                &dataset,
                cache_dir(&cli.pipeline).as_deref(),
                &cli.pipeline.photos(),
                progress,
            )?;
            trainer::enroll::pick_by_person(&mut extraction);
            let options = trainer::people::PeopleOptions {
                door_min_face_px: door_min_face_px as f32,
                classifier,
            };
            print!(
                "{}",
                trainer::people::people(&dataset, &extraction, &options)
            );
        }
        Command::Keygen { .. }
        | Command::Sign { .. }
        | Command::Push { .. }
        | Command::Forget { .. } => {
            unreachable!("handled above")
        }
        Command::Embed { images, json: _ } => {
            let dataset = Dataset {
                samples: images
                    .iter()
                    .map(|p| trainer::dataset::Sample {
                        person: String::new(),
                        path: p.clone(),
                    })
                    .collect(),
                ..Dataset::default()
            };
            let extraction =
                embed_dataset(&pipeline, &dataset, None, &cli.pipeline.photos(), false)?;
            for e in &extraction.embedded {
                let mut line = serde_json::json!({
                    "path": shown(&e.sample.path),
                    "box": e.bbox,
                    "faces": e.faces,
                    "embedding": e.embedding.as_slice(),
                });
                // A name that is not UTF-8 is escaped in "path"; its exact bytes follow.
                if e.sample.path.to_str().is_none() {
                    line["path_bytes"] = e.sample.path.as_os_str().as_encoded_bytes().into();
                }
                println!("{line}");
            }
            for s in &extraction.skipped {
                eprintln!("skipped {}: {}", shown(&s.path), s.reason);
            }
            if !extraction.skipped.is_empty() {
                anyhow::bail!(
                    "{} of {} photo(s) gave no embedding (see above)",
                    extraction.skipped.len(),
                    images.len()
                );
            }
        }
    }
    Ok(())
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

/// `trainer forget`: asks (unless --yes), then removes the folder and cache entries.
fn forget(person: &str, images: &Path, yes: bool, args: &PipelineArgs) -> Result<()> {
    use std::io::{BufRead, IsTerminal, Write};
    let plan = trainer::forget::plan(images, person)?;
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
            println!("nothing removed");
            return Ok(());
        }
    }
    // The cache is cleaned even with --no-cache: it may hold them from earlier runs.
    let dir = args.cache_dir.clone().unwrap_or_else(default_cache_dir);
    println!("{}", trainer::forget::forget(&plan, Some(&dir))?);
    Ok(())
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

/// `trainer push`: everything is checked locally before the token leaves this machine.
fn push(
    url: &str,
    token_file: &Path,
    ca_cert: Option<PathBuf>,
    timeout_secs: u64,
    classifier: &Path,
) -> Result<()> {
    use trainer::push::{check_classifier, parse_url, push_bytes, read_token, ClientOptions};
    let target = parse_url(url)?;
    if let Some(warning) = target.clear_text_warning() {
        eprintln!("warning: {warning}");
    }
    if ca_cert.is_some() && !target.https {
        eprintln!("warning: --ca-cert is not used with an http:// URL");
    }
    let token = read_token(token_file)?;
    for warning in &token.warnings {
        eprintln!("warning: {warning}");
    }
    let local = check_classifier(classifier)?;
    if let Some(warning) = local.unsigned_warning() {
        eprintln!("warning: {warning}");
    }
    println!(
        "pushing {} ({} bytes, {}): {} people ({}), created {}",
        shown(classifier),
        local.bytes.len(),
        if local.signed { "signed" } else { "unsigned" },
        local.meta.labels.len(),
        local.meta.labels.join(", "),
        local.meta.created
    );
    println!("to {}", target.endpoint);
    let options = ClientOptions {
        ca_cert,
        timeout: std::time::Duration::from_secs(timeout_secs),
    };
    let pushed = push_bytes(&target, &token.token, &local.bytes, &options)?;
    if !pushed.ok {
        eprintln!(
            "warning: the lock wrote and checked the classifier but has not confirmed it in \
             service yet; check its events (reload / reload-refused)"
        );
    }
    if !pushed.message.is_empty() {
        println!("lock: {}", pushed.message);
    }
    println!(
        "in service: {} people ({}), created {}",
        pushed.people.len(),
        pushed.people.join(", "),
        pushed.created
    );
    println!("sha256 {} (matches {})", local.sha256, shown(classifier));
    Ok(())
}

fn keygen(out: &Path) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
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
    f.write_all(keys.private_pem.as_bytes())?;
    std::fs::write(&public, keys.public_pem.as_bytes())
        .with_context(|| format!("writing {}", public.display()))?;
    println!(
        "private key: {} (keep it on this workstation)",
        private.display()
    );
    println!(
        "public key:  {} (copy it to the lock and set security.trusted_key)",
        public.display()
    );
    Ok(())
}

//! `trainer`: the command line. It parses the arguments and prints what the library's
//! [`trainer::commands`] return; the work happens there.

use std::fmt::Display;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use recognition::photo::{DETECT_MAX_SIDE, MAX_PHOTO_SIDE};
use recognition::{DetectorConfig, PipelineConfig};
use trainer::capture::{Camera, FrameSize};
use trainer::commands::{self, Outcome, PhotoOptions, Setup};

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
    /// Smallest face, in pixels, the detector looks for (12 to 1024).
    #[arg(long, global = true, default_value_t = 20.0, value_parser = min_face_px)]
    min_face_px: f32,
    /// Crop margin around the face box, as a fraction of its side (0 to 1).
    #[arg(long, global = true, default_value_t = 0.0, value_parser = crop_margin)]
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
    fn setup(self) -> Setup {
        Setup {
            models: self.models,
            config: PipelineConfig {
                detector: DetectorConfig {
                    min_face_px: self.min_face_px,
                    ..DetectorConfig::default()
                },
                crop_margin: self.crop_margin,
            },
            cache_dir: self.cache_dir.unwrap_or_else(Setup::default_cache_dir),
            use_cache: !self.no_cache,
            progress: !self.quiet,
            photos: PhotoOptions {
                max_side: self.max_photo_px,
                detect_side: DETECT_MAX_SIDE,
            },
        }
    }
}

/// A number in `range`, or a message saying what is expected.
fn number_in<T>(text: &str, range: std::ops::RangeInclusive<T>, what: &str) -> Result<T, String>
where
    T: std::str::FromStr + PartialOrd + Display,
{
    match text.trim().parse::<T>() {
        Ok(v) if range.contains(&v) => Ok(v),
        _ => Err(format!(
            "expected a number from {} to {}: {what}",
            range.start(),
            range.end()
        )),
    }
}

/// `--min-face-px`: MTCNN's smallest window is 12 px; photos are detected at most
/// [`DETECT_MAX_SIDE`] px a side.
fn min_face_px(text: &str) -> Result<f32, String> {
    number_in(
        text,
        12.0..=DETECT_MAX_SIDE as f32,
        "the smallest face in pixels (MTCNN's smallest window is 12 px)",
    )
}

/// `--crop-margin`: the lock's `recognition.crop_margin` must be the same.
fn crop_margin(text: &str) -> Result<f32, String> {
    number_in(
        text,
        0.0..=1.0,
        "a fraction of the face box side (the lock's recognition.crop_margin must be the same)",
    )
}

/// `trainer capture PERSON`: a name that can be a folder (the door's rule).
fn person_name(text: &str) -> Result<String, String> {
    lock_daemon::capture::check_name(text)?;
    Ok(text.to_owned())
}

/// `--target-far`, `--tar-slack`.
fn rate(text: &str) -> Result<f64, String> {
    number_in(text, 0.0..=1.0, "a rate (0.05 = 5 %)")
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
        /// Largest tolerated false-accept rate on the strangers seen in calibration (0 to 1).
        #[arg(long, default_value_t = 0.0, value_parser = rate)]
        target_far: f64,
        /// Genuine accept rate the gate may give up (below the best reachable)
        /// to sit further from the strangers (0 to 1).
        #[arg(long, default_value_t = 0.05, value_parser = rate)]
        tar_slack: f64,
        /// Cross-validation folds for calibrating the gate (2 to 20).
        #[arg(long, default_value_t = 5,
              value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(2..=20))]
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
        /// The photos the classifier was trained on: the report links each false reject
        /// and false accept to the enrolment photos nearest to it, and says which to fix.
        #[arg(long, value_name = "IMAGES")]
        enrolled: Option<PathBuf>,
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
    /// Capture enrolment photos of one person from a webcam at this workstation.
    ///
    /// Each frame is judged as the door's guided capture (`lock-daemon ctl capture`) judges
    /// it: exactly one face, at least 1.5 × --door-min-face-px, sharp, lit, with contrast,
    /// and not a near-copy of a photo already kept. The kept faces (with a margin of half
    /// their size) go to IMAGES/PERSON/ (created 0700, files 0600). Ends when --count
    /// photos are kept (exit status 0) or after --seconds (exit status 1, saying how many
    /// were kept). A webcam's lens and light are not the door's camera's: capture at the
    /// door when you can.
    Capture {
        /// The person's folder name under --images (letters, digits, spaces, '-', '_', '.').
        #[arg(value_parser = person_name)]
        person: String,
        /// The webcam (V4L2), e.g. /dev/video0 or /dev/v4l/by-id/usb-...-video-index0.
        #[arg(long, default_value = "/dev/video0", conflicts_with = "replay")]
        camera: PathBuf,
        /// Replay the .jpg/.png files of this folder (in name order) instead of a camera.
        #[arg(long, value_name = "DIR")]
        replay: Option<PathBuf>,
        /// Photos to keep (1 to 200).
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=200))]
        count: u32,
        /// Time limit in seconds (1 to 3600).
        #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
        seconds: u64,
        /// The image tree (one folder per person).
        #[arg(long, default_value = "images")]
        images: PathBuf,
        /// Frame width asked of the camera (replayed images are fitted to it).
        #[arg(long, default_value_t = 640, value_parser = clap::value_parser!(u32).range(160..=4096))]
        width: u32,
        /// Frame height asked of the camera.
        #[arg(long, default_value_t = 480, value_parser = clap::value_parser!(u32).range(120..=4096))]
        height: u32,
        /// The lock's `recognition.min_face_px`: faces must be at least 1.5 times as large.
        #[arg(long, default_value_t = 80, value_parser = clap::value_parser!(u32).range(20..=2000))]
        door_min_face_px: u32,
    },
    /// Review the faces the lock's data collector kept ([collect]), copied from the lock.
    ///
    /// Writes an HTML page of them grouped by the person the lock suggested, with their
    /// scores and kind (low-margin, near-miss, unknown), and the command that adds a
    /// group's faces to IMAGES/PERSON/. With --accept PERSON FILE..., copies the named
    /// files (as the page names them) there. Nothing is added without --accept.
    Review {
        /// The collector's directory (collect.dir), copied from the lock.
        dir: PathBuf,
        /// The image tree (one folder per person).
        #[arg(long, default_value = "images")]
        images: PathBuf,
        /// Where to write the page.
        #[arg(long, default_value = "review.html")]
        html: PathBuf,
        /// Add these collected files to this person's photos: PERSON FILE...
        #[arg(long, num_args = 2.., value_names = ["PERSON", "FILE"])]
        accept: Option<Vec<String>>,
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
    let cli = Cli::parse();
    let setup = cli.pipeline.setup();
    match cli.command {
        Command::Train {
            images,
            output,
            unknown,
            target_far,
            tar_slack,
            folds,
            sign,
        } => finish(commands::train(
            &setup,
            commands::Train {
                images,
                output,
                unknown,
                target_far,
                tar_slack,
                folds,
                sign,
            },
        )),
        Command::Keygen { out } => finish(commands::keygen(&out)),
        Command::Sign { key, classifier } => finish(commands::sign(&key, &classifier)),
        Command::Evaluate {
            classifier,
            images,
            trusted_key,
            unknown,
            enrolled,
            json,
            html,
        } => finish(commands::evaluate(
            &setup,
            commands::Evaluate {
                classifier,
                images,
                trusted_key,
                unknown,
                enrolled,
                json,
                html,
            },
        )),
        Command::Recognize {
            classifier,
            trusted_key,
            images,
            annotate,
        } => finish(commands::recognize(
            &setup,
            commands::Recognize {
                classifier,
                trusted_key,
                images,
                annotate,
            },
        )),
        Command::Embed { images } => finish(commands::embed(&setup, &images)),
        Command::People {
            images,
            door_min_face_px,
            classifier,
        } => finish(commands::people(
            &setup,
            &images,
            door_min_face_px,
            classifier.as_deref(),
        )),
        Command::Forget {
            person,
            images,
            yes,
        } => finish(commands::forget(&setup, &person, &images, yes)),
        Command::Review {
            dir,
            images,
            html,
            accept,
        } => match accept {
            Some(accept) => finish(trainer::review::accept(
                &dir,
                &images,
                &accept[0],
                &accept[1..],
            )),
            None => finish(trainer::review::review(&dir, &html, &images)),
        },
        Command::Capture {
            person,
            camera,
            replay,
            count,
            seconds,
            images,
            width,
            height,
            door_min_face_px,
        } => finish(commands::capture(
            &setup,
            commands::Capture {
                person,
                camera: match replay {
                    Some(dir) => Camera::Replay(dir),
                    None => Camera::Device(camera),
                },
                size: FrameSize { width, height },
                count,
                timeout: Duration::from_secs(seconds),
                images,
                door_min_face_px: door_min_face_px as f32,
            },
        )),
        Command::Push {
            url,
            token_file,
            ca_cert,
            timeout_secs,
            classifier,
        } => finish(commands::push(commands::Push {
            url,
            token_file,
            ca_cert,
            timeout: Duration::from_secs(timeout_secs),
            classifier,
        })),
    }
}

/// Prints the outcome, then its failures (exit status 1), or the error.
fn finish(outcome: anyhow::Result<impl Outcome>) -> ExitCode {
    match outcome {
        Ok(outcome) => {
            print!("{outcome}");
            let failures = outcome.failures();
            for failure in &failures {
                eprintln!("error: {failure}");
            }
            if failures.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn numbers_out_of_range_are_refused_not_clamped() {
        let parse = |args: &[&str]| Cli::try_parse_from([&["trainer"], args].concat());
        let train = ["train", "images", "-o", "c.onnx"];
        for bad in [
            "--folds=1",
            "--folds=21",
            "--target-far=-0.1",
            "--tar-slack=1.5",
            "--tar-slack=NaN",
            "--min-face-px=11",
            "--crop-margin=-1",
        ] {
            let err = parse(&[&train[..], &[bad]].concat()).unwrap_err();
            assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation, "{bad}");
            let flag = bad.split('=').next().unwrap();
            assert!(err.to_string().contains(flag), "{err}");
        }
        let cli = parse(&[&train[..], &["--folds", "2", "--min-face-px", "12"]].concat()).unwrap();
        assert!(matches!(cli.command, Command::Train { folds: 2, .. }));
        assert_eq!(cli.pipeline.min_face_px, 12.0);
        assert!(min_face_px("5").unwrap_err().contains("from 12 to 1024"));
    }

    #[test]
    fn capture_checks_the_name_and_its_numbers_in_the_parser() {
        let parse = |args: &[&str]| Cli::try_parse_from([&["trainer", "capture"], args].concat());
        for bad in [
            &["../etc"][..],
            &[".hidden"],
            &["ada", "--count=0"],
            &["ada", "--count=201"],
            &["ada", "--seconds=0"],
            &["ada", "--width=10"],
            &["ada", "--door-min-face-px=5"],
        ] {
            let err = parse(bad).unwrap_err();
            assert_eq!(
                err.kind(),
                clap::error::ErrorKind::ValueValidation,
                "{bad:?}"
            );
        }
        let err = parse(&["../etc"]).unwrap_err();
        assert!(err.to_string().contains("use letters, digits"), "{err}");
        let err = parse(&["ada", "--camera", "/dev/video1", "--replay", "frames"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ArgumentConflict);
        let cli = parse(&["Ada Lovelace", "--replay", "frames", "--count", "5"]).unwrap();
        let Command::Capture {
            person,
            camera,
            replay,
            count,
            seconds,
            images,
            door_min_face_px,
            ..
        } = cli.command
        else {
            panic!("capture parses")
        };
        assert_eq!((person.as_str(), count, seconds), ("Ada Lovelace", 5, 60));
        assert_eq!(camera, PathBuf::from("/dev/video0"));
        assert_eq!(replay, Some(PathBuf::from("frames")));
        assert_eq!((images, door_min_face_px), (PathBuf::from("images"), 80));
    }

    #[test]
    fn embed_has_no_json_flag() {
        assert!(Cli::try_parse_from(["trainer", "embed", "--json", "a.jpg"]).is_err());
    }
}

//! Enrolment picks the person's face in photos that show several: a larger bystander is
//! not enrolled, and a photo where nobody looks like the person is left out. `trainer
//! people` flags a photo in the wrong folder; `trainer forget` removes a person so that
//! the next training no longer knows them.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;

use image::{imageops, Rgb, RgbImage};
use trainer::enroll::Pick;
use trainer::train::{train, TrainOptions, TrainReport};

use crate::support::{
    celeb5, copy_tree, extra, output_within, pipeline, workspace_binary, PROCESS_LIMIT,
};

/// The photo's single face, cut out as a square of `side` pixels with some context.
pub(crate) fn face_tile(photo: &Path, side: u32) -> RgbImage {
    // By content: the sample set holds a PNG named .jpg.
    let image = image::ImageReader::open(photo)
        .unwrap()
        .with_guessed_format()
        .unwrap()
        .decode()
        .unwrap()
        .to_rgb8();
    let faces = pipeline().detect(&image).unwrap();
    let b = faces.first().expect("the photo shows a face").bbox;
    let (cx, cy) = ((b.x1 + b.x2) / 2.0, (b.y1 + b.y2) / 2.0);
    let half = (b.side() * 0.9).min(cx).min(cy);
    let half = half
        .min(image.width() as f32 - cx)
        .min(image.height() as f32 - cy);
    let crop = imageops::crop_imm(
        &image,
        (cx - half) as u32,
        (cy - half) as u32,
        (2.0 * half) as u32,
        (2.0 * half) as u32,
    )
    .to_image();
    imageops::resize(&crop, side, side, imageops::FilterType::Triangle)
}

/// A 640×360 photo with `left` and `right` face tiles at the same distance from the centre.
pub(crate) fn group_photo(left: &RgbImage, right: &RgbImage) -> RgbImage {
    let mut canvas = RgbImage::from_pixel(640, 360, Rgb([128, 128, 128]));
    let place = |canvas: &mut RgbImage, tile: &RgbImage, centre_x: i64| {
        let x = centre_x - tile.width() as i64 / 2;
        let y = 180 - tile.height() as i64 / 2;
        imageops::overlay(canvas, tile, x, y);
    };
    place(&mut canvas, left, 190);
    place(&mut canvas, right, 450);
    canvas
}

fn first_photo(dir: &Path) -> PathBuf {
    let mut photos: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    photos.sort();
    photos.remove(0)
}

struct Enrolled {
    _dir: tempfile::TempDir,
    report: TrainReport,
}

/// madonna and jerry_seinfeld from the sample set, plus two group photos in madonna's
/// folder: one of her beside a larger stranger, one of two strangers.
fn enrolled() -> &'static Enrolled {
    static ENROLLED: OnceLock<Enrolled> = OnceLock::new();
    ENROLLED.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let images = dir.path().join("images");
        for person in ["madonna", "jerry_seinfeld"] {
            copy_tree(&celeb5("train").join(person), &images.join(person));
        }
        // Her photo from the validation split: not one of her training photos.
        let madonna = face_tile(&first_photo(&celeb5("val").join("madonna")), 150);
        let hopper = face_tile(&extra("stranger").join("grace_hopper.jpg"), 230);
        let ben = face_tile(&first_photo(&celeb5("val").join("ben_afflek")), 200);
        group_photo(&madonna, &hopper)
            .save(images.join("madonna/group_with_a_larger_stranger.jpg"))
            .unwrap();
        group_photo(&ben, &hopper)
            .save(images.join("madonna/two_strangers.jpg"))
            .unwrap();
        let options = TrainOptions {
            images,
            output: PathBuf::from("unused.onnx"),
            unknown: None,
            target_far: 0.0,
            tar_slack: 0.05,
            folds: 5,
            cache_dir: None,
            progress: false,
        };
        let report = train(pipeline(), &options).expect("training succeeds");
        Enrolled { _dir: dir, report }
    })
}

#[test]
fn a_larger_bystander_beside_the_person_is_not_enrolled() {
    let report = &enrolled().report;
    let group = report
        .extraction
        .embedded
        .iter()
        .find(|e| e.sample.path.ends_with("group_with_a_larger_stranger.jpg"))
        .expect("the group photo is used");
    assert_eq!(group.faces, 2);
    // Without context the stranger would be taken: larger, and as close to the centre.
    let (main_box, _) = &group.others[0];
    assert!(
        main_box.x1 > 320.0,
        "the stranger on the right is the main face: {main_box:?}"
    );
    let Pick::Agrees { similarity } = group.pick else {
        panic!(
            "the face was not chosen by her other photos: {:?}",
            group.pick
        );
    };
    assert!(
        group.bbox.x2 < 320.0,
        "madonna, on the left, is enrolled from the group photo: {:?} (similarity {similarity})",
        group.bbox
    );
    assert!(similarity >= recognition::subject::AGREE_SIMILARITY);
}

#[test]
fn a_photo_where_nobody_looks_like_the_person_is_left_out() {
    let report = &enrolled().report;
    assert!(
        !report
            .extraction
            .embedded
            .iter()
            .any(|e| e.sample.path.ends_with("two_strangers.jpg")),
        "a photo of two strangers must not enrol either of them as madonna"
    );
    let skipped = report
        .extraction
        .skipped
        .iter()
        .find(|s| s.path.ends_with("two_strangers.jpg"))
        .expect("the photo is reported as left out");
    assert!(
        skipped.reason.contains("none looks like madonna")
            && skipped
                .reason
                .contains("check that the photo shows madonna"),
        "{}",
        skipped.reason
    );
}

/// Runs the trainer binary with its embedding cache in `cache`.
fn trainer<S: AsRef<OsStr>>(cache: &Path, args: impl IntoIterator<Item = S>) -> Output {
    let mut command = std::process::Command::new(workspace_binary("trainer"));
    command
        .arg("--quiet")
        .arg("--cache-dir")
        .arg(cache)
        .args(args);
    output_within(command, PROCESS_LIMIT)
}

#[test]
fn people_flags_a_photo_put_in_the_wrong_folder() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    for person in ["elton_john", "madonna", "mindy_kaling"] {
        copy_tree(&celeb5("train").join(person), &images.join(person));
    }
    let elton = first_photo(&celeb5("val").join("elton_john"));
    std::fs::copy(&elton, images.join("madonna/actually_elton.jpg")).unwrap();
    let out = trainer(
        &dir.path().join("cache"),
        [OsStr::new("people"), images.as_os_str()],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("actually_elton.jpg looks unlike the other photos"),
        "{stdout}"
    );
    // The planted photo is the least like its folder. Measured on the sample set: two
    // real photos with tiny faces (24 and 34 px) are flagged too, at 0.19 and 0.30, against
    // 0.05 for the planted one; the check must stay that selective.
    let flagged: Vec<f32> = stdout
        .lines()
        .filter(|l| l.contains("looks unlike the other photos"))
        .map(|l| {
            l.split("(similarity ").nth(1).unwrap()[..4]
                .parse()
                .unwrap()
        })
        .collect();
    let planted = stdout
        .lines()
        .find(|l| l.contains("actually_elton.jpg looks unlike"))
        .unwrap();
    let planted: f32 = planted.split("(similarity ").nth(1).unwrap()[..4]
        .parse()
        .unwrap();
    assert!(flagged.iter().all(|&s| s >= planted), "{stdout}");
    assert!(
        flagged.len() <= 3,
        "too many of 60 photos flagged: {stdout}"
    );
    let madonna = stdout.lines().find(|l| l.starts_with("madonna ")).unwrap();
    let photos = std::fs::read_dir(images.join("madonna")).unwrap().count();
    assert!(madonna.contains(&photos.to_string()), "{madonna}");
}

#[test]
fn a_forgotten_person_is_not_known_to_the_next_training() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    let cache = dir.path().join("cache");
    for person in ["elton_john", "madonna", "mindy_kaling"] {
        copy_tree(&celeb5("train").join(person), &images.join(person));
    }
    let train = |name: &str| {
        let classifier = dir.path().join(name);
        let out = trainer(
            &cache,
            [
                OsStr::new("train"),
                images.as_os_str(),
                OsStr::new("--output"),
                classifier.as_os_str(),
            ],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let bytes = std::fs::read(&classifier).unwrap();
        recognition::artifact::meta_from_bytes(&classifier, &bytes).unwrap()
    };
    assert!(train("before.onnx").labels.contains(&"madonna".to_owned()));
    let cached = || std::fs::read_to_string(single_cache_file(&cache)).unwrap();
    let madonna_photo = first_photo(&images.join("madonna"));
    let madonna_hash = recognition::models::sha256_hex(&std::fs::read(&madonna_photo).unwrap());
    assert!(cached().contains(&madonna_hash));

    // Without a terminal and without --yes nothing is removed.
    let forget = |yes: &[&str]| {
        let mut args: Vec<&OsStr> = ["forget", "madonna"].map(OsStr::new).to_vec();
        args.extend(yes.iter().map(OsStr::new));
        args.extend([OsStr::new("--images"), images.as_os_str()]);
        trainer(&cache, args)
    };
    let out = forget(&[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--yes"));
    assert!(images.join("madonna").exists());

    let out = forget(&["--yes"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("the lock still lets madonna in"),
        "{stdout}"
    );
    assert!(!images.join("madonna").exists());
    assert!(
        !cached().contains(&madonna_hash),
        "her embeddings left the cache"
    );
    assert!(!train("after.onnx").labels.contains(&"madonna".to_owned()));
}

fn single_cache_file(cache: &Path) -> PathBuf {
    let files: Vec<PathBuf> = std::fs::read_dir(cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    files[0].clone()
}

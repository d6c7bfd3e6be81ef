//! Hostile and degenerate input: image bombs, non-UTF-8 names, copies of one photo.
//! The trainer and the daemon refuse what they cannot use before it costs memory, say
//! why, and never crash.

use std::ffi::OsStr;

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use image::codecs::jpeg::JpegEncoder;
use image::{GrayImage, Luma, RgbImage};
use lock_daemon::relay::LockState;
use recognition::photo::{load_rgb, shrink_to};
use trainer::train::{train, TrainOptions, TrainReport, DUPLICATE_SIMILARITY};

use crate::daemon::{empty_hallway, photos, Lock, FAST};
use crate::support::{celeb5, copy_tree, extra, output_within, pipeline, workspace_binary};
use crate::training::sample_classifier;

// ---- Crafted images --------------------------------------------------------------------

/// A real 16×16 JPEG whose frame header is rewritten to declare 65000×65000 pixels.
fn jpeg_bomb() -> Vec<u8> {
    let image = RgbImage::from_fn(16, 16, |x, y| image::Rgb([x as u8 * 9, y as u8 * 9, 77]));
    let mut bytes = Vec::new();
    JpegEncoder::new_with_quality(&mut bytes, 75)
        .encode_image(&image)
        .unwrap();
    let sof = bytes.windows(2).position(|m| m == [0xFF, 0xC0]).unwrap();
    bytes[sof + 5..sof + 9].copy_from_slice(&[0xFD, 0xE8, 0xFD, 0xE8]); // 65000, 65000
    bytes
}

/// A real grey baseline JPEG of `side`×`side` (a multiple of 32), mid-grey everywhere,
/// written without ever holding its pixels: the header of a small encoded image, the
/// size patched, and entropy data in which every 8×8 block is "DC difference 0, end of
/// block" (6 bits in the standard tables, so four blocks make three bytes).
fn grey_jpeg(side: u16) -> Vec<u8> {
    assert_eq!(side % 32, 0);
    let mut small = Vec::new();
    JpegEncoder::new_with_quality(&mut small, 75)
        .encode_image(&GrayImage::from_pixel(8, 8, Luma([128])))
        .unwrap();
    let sof = small.windows(2).position(|m| m == [0xFF, 0xC0]).unwrap();
    small[sof + 5..sof + 7].copy_from_slice(&side.to_be_bytes());
    small[sof + 7..sof + 9].copy_from_slice(&side.to_be_bytes());
    let sos = small.windows(2).position(|m| m == [0xFF, 0xDA]).unwrap();
    let scan = sos + 2 + usize::from(u16::from_be_bytes([small[sos + 2], small[sos + 3]]));
    let mut bytes = small[..scan].to_vec();
    let blocks = (usize::from(side) / 8).pow(2);
    for _ in 0..blocks / 4 {
        bytes.extend_from_slice(&[0x28, 0xA2, 0x8A]); // 001010 ×4
    }
    bytes.extend_from_slice(&[0xFF, 0xD9]);
    bytes
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                0xEDB8_8320 ^ (crc >> 1)
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&u32::try_from(data.len()).unwrap().to_be_bytes());
    let mut body = kind.to_vec();
    body.extend_from_slice(data);
    out.extend_from_slice(&body);
    out.extend_from_slice(&crc32(&body).to_be_bytes());
}

/// A PNG of 8-bit grey pixels with a valid IHDR (and CRC) declaring `w`×`h`, and `idat`
/// as its image data.
fn png(w: u32, h: u32, idat: &[u8]) -> Vec<u8> {
    let mut out = vec![0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];
    let mut ihdr = w.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]);
    png_chunk(&mut out, b"IHDR", &ihdr);
    png_chunk(&mut out, b"IDAT", idat);
    png_chunk(&mut out, b"IEND", &[]);
    out
}

/// A zlib stream of `n` zero bytes: one fixed-Huffman deflate block of a literal 0 and
/// matches of 258 bytes at distance 1 (13 bits each), then literals for the rest.
fn zlib_zeros(n: u64) -> Vec<u8> {
    struct Bits {
        out: Vec<u8>,
        acc: u64,
        len: u32,
    }
    impl Bits {
        fn put(&mut self, value: u64, n: u32) {
            self.acc |= value << self.len;
            self.len += n;
            while self.len >= 8 {
                self.out.push(self.acc as u8);
                self.acc >>= 8;
                self.len -= 8;
            }
        }
        /// Huffman codes go most significant bit first.
        fn code(&mut self, code: u64, n: u32) {
            let reversed = (0..n).fold(0, |r, i| (r << 1) | ((code >> i) & 1));
            self.put(reversed, n);
        }
    }
    let mut bits = Bits {
        out: vec![0x78, 0x01],
        acc: 0,
        len: 0,
    };
    bits.put(1, 1); // final block
    bits.put(1, 2); // fixed Huffman codes
    let literal_zero = |b: &mut Bits| b.code(0b0011_0000, 8);
    literal_zero(&mut bits);
    for _ in 0..(n - 1) / 258 {
        bits.code(0b1100_0101, 8); // length 258 (code 285)
        bits.code(0, 5); // distance 1
    }
    for _ in 0..(n - 1) % 258 {
        literal_zero(&mut bits);
    }
    bits.code(0, 7); // end of block
    bits.put(0, 7); // pad to a byte
    let mut out = bits.out;
    let adler = (((n % 65521) as u32) << 16) | 1; // a = 1, b = n for zeros
    out.extend_from_slice(&adler.to_be_bytes());
    out
}

/// A real black PNG of `side`×`side`, compressed to about 1/1000 of its pixels.
fn black_png(side: u32) -> Vec<u8> {
    png(
        side,
        side,
        &zlib_zeros(u64::from(side) * (u64::from(side) + 1)),
    )
}

/// A PNG declaring 50000×50000 pixels, with 1 MiB of zeros as its (far too short) data.
fn png_bomb() -> Vec<u8> {
    png(50000, 50000, &zlib_zeros(1 << 20))
}

/// The four bombs of the audit, written into `dir`; returns their names and declared
/// sizes.
fn write_bombs(dir: &Path) -> Vec<(&'static str, &'static str)> {
    std::fs::create_dir_all(dir).unwrap();
    let bombs: [(&str, Vec<u8>, &str); 4] = [
        ("bomb-65000.jpg", jpeg_bomb(), "65000x65000"),
        ("bomb-50000.png", png_bomb(), "50000x50000"),
        ("real-12000.jpg", grey_jpeg(12000), "12000x12000"),
        ("real-13000.png", black_png(13000), "13000x13000"),
    ];
    bombs
        .into_iter()
        .map(|(name, bytes, size)| {
            std::fs::write(dir.join(name), bytes).unwrap();
            (name, size)
        })
        .collect()
}

#[test]
fn the_crafted_images_are_real_images_of_their_declared_size() {
    let jpeg = recognition::photo::decode_rgb(&grey_jpeg(64)).unwrap();
    assert_eq!(jpeg.dimensions(), (64, 64));
    assert!(jpeg
        .pixels()
        .all(|p| p.0.iter().all(|&v| v.abs_diff(128) <= 1)));
    let png = recognition::photo::decode_rgb(&black_png(100)).unwrap();
    assert_eq!(png.dimensions(), (100, 100));
    assert!(png.pixels().all(|p| p.0 == [0, 0, 0]));
    assert!(jpeg_bomb().len() < 2048);
    let big = grey_jpeg(12000);
    assert_eq!(
        recognition::photo::declared_size(&big),
        Some((12000, 12000))
    );
    assert!(big.len() < 2 << 20, "{}", big.len());
    let big = black_png(13000);
    assert_eq!(
        recognition::photo::declared_size(&big),
        Some((13000, 13000))
    );
    assert!(big.len() < 2 << 20, "{}", big.len());
}

// ---- Running the programs ---------------------------------------------------------------

/// Runs a command to its end, killing it and failing the test after `limit`.
fn run(cmd: Command, limit: Duration) -> Output {
    output_within(cmd, limit)
}

/// The trainer binary, built once.
fn trainer_binary() -> PathBuf {
    workspace_binary("trainer")
}

fn trainer(args: &[&OsStr]) -> Output {
    let mut cmd = Command::new(trainer_binary());
    cmd.arg("--quiet").arg("--no-cache").args(args);
    run(cmd, Duration::from_secs(120))
}

/// Exited with a plain failure: no panic (101), no signal (abort, out of memory).
fn failed_cleanly(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{:?}: {stderr}", out.status);
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

/// The sample set's classifier, written to `dir`.
fn classifier_file(dir: &Path) -> PathBuf {
    let path = dir.join("classifier.onnx");
    std::fs::write(&path, &sample_classifier().0.bytes).unwrap();
    path
}

#[test]
fn recognize_and_embed_refuse_each_image_bomb_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let bombs = write_bombs(&dir.path().join("bombs"));
    let classifier = classifier_file(dir.path());
    for (name, size) in bombs {
        let path = dir.path().join("bombs").join(name);
        for command in ["recognize", "embed"] {
            let args: Vec<&OsStr> = match command {
                "recognize" => vec![command.as_ref(), classifier.as_os_str(), path.as_os_str()],
                _ => vec![command.as_ref(), path.as_os_str()],
            };
            let started = Instant::now();
            let out = trainer(&args);
            let stderr = failed_cleanly(&out);
            assert!(
                stderr.contains(&format!(
                    "declares {size} pixels, more than the 8192 px limit"
                )),
                "{command} {name}: {stderr}"
            );
            assert!(stderr.contains(name), "{command} {name}: {stderr}");
            eprintln!("{command} {name}: refused in {:?}", started.elapsed());
        }
    }
    // The others are still recognised when one photo of several is a bomb.
    let good = celeb5("val").join("madonna");
    let good = std::fs::read_dir(good)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let bomb = dir.path().join("bombs/bomb-65000.jpg");
    let out = trainer(&[
        "recognize".as_ref(),
        classifier.as_os_str(),
        bomb.as_os_str(),
        good.as_os_str(),
    ]);
    failed_cleanly(&out);
    assert!(String::from_utf8_lossy(&out.stdout).contains("\tmadonna\t"));
}

#[test]
fn the_photo_limit_is_checked_by_the_command_line() {
    for bad in ["10", "100000", "big"] {
        let out = trainer(&[
            "--max-photo-px".as_ref(),
            bad.as_ref(),
            "embed".as_ref(),
            "x.jpg".as_ref(),
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad}: {stderr}");
        assert!(stderr.contains("--max-photo-px"), "{stderr}");
    }
}

// ---- Training ---------------------------------------------------------------------------

/// One embedding cache for these tests; training runs one at a time.
fn cache() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().unwrap()).path()
}

fn train_on(images: &Path) -> TrainReport {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _guard = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let options = TrainOptions {
        images: images.to_owned(),
        output: PathBuf::from("unused.onnx"),
        unknown: None,
        target_far: 0.0,
        tar_slack: 0.05,
        folds: 5,
        cache_dir: Some(cache().to_owned()),
        progress: false,
    };
    train(pipeline(), &options).expect("training succeeds")
}

fn reason_of(report: &TrainReport, name: &str) -> String {
    report
        .extraction
        .skipped
        .iter()
        .find(|s| s.path.file_name().unwrap() == name)
        .map(|s| s.reason.clone())
        .unwrap_or_else(|| panic!("{name} not reported: {:#?}", report.extraction.skipped))
}

fn first_photo(dir: &Path) -> PathBuf {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v.remove(0)
}

#[test]
fn training_skips_image_bombs_and_still_enrols_everyone() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    copy_tree(&celeb5("train"), root);
    let bombs = write_bombs(&root.join("madonna"));
    // A genuine photo larger than detection needs: scaled down, used, its box reported in
    // its own pixels.
    let val = first_photo(&celeb5("val").join("madonna"));
    let small = load_rgb(&val).unwrap();
    let k = 3000.0 / small.width().max(small.height()) as f32;
    let (w, h) = (
        (small.width() as f32 * k) as u32,
        (small.height() as f32 * k) as u32,
    );
    image::imageops::resize(&small, w, h, image::imageops::FilterType::Triangle)
        .save(root.join("madonna/large.jpg"))
        .unwrap();
    // A person whose folder holds nothing usable, and one whose folder is empty.
    std::fs::create_dir_all(root.join("nobody")).unwrap();
    std::fs::copy(extra("noface/present.png"), root.join("nobody/present.png")).unwrap();
    std::fs::write(root.join("nobody/notes.jpg"), b"not a picture").unwrap();
    std::fs::create_dir_all(root.join("empty")).unwrap();

    let started = Instant::now();
    let report = train_on(root);
    eprintln!("trained with the bombs in {:?}", started.elapsed());
    for (name, size) in bombs {
        let reason = reason_of(&report, name);
        assert!(
            reason.contains(&format!(
                "declares {size} pixels, more than the 8192 px limit; resize it"
            )),
            "{name}: {reason}"
        );
    }
    assert_eq!(
        report.meta.labels,
        [
            "ben_afflek",
            "elton_john",
            "jerry_seinfeld",
            "madonna",
            "mindy_kaling"
        ]
    );
    assert_eq!(report.meta.photos_per_person["madonna"], 19 + 1);
    let large = report
        .extraction
        .embedded
        .iter()
        .find(|e| e.sample.path.ends_with("large.jpg"))
        .expect("the large photo is used");
    let native = pipeline().detect(&small).unwrap()[0].bbox;
    let b = large.bbox;
    let scaled = recognition::BBox {
        x1: native.x1 * k,
        y1: native.y1 * k,
        x2: native.x2 * k,
        y2: native.y2 * k,
    };
    assert!(b.iou(&scaled) > 0.8, "{b:?} vs {scaled:?}");

    let unusable: Vec<&str> = report
        .unusable_people
        .iter()
        .map(|u| u.person.as_str())
        .collect();
    assert_eq!(unusable, ["empty", "nobody"]);
    let nobody = &report.unusable_people[1];
    let reasons: Vec<&str> = nobody.files.iter().map(|s| s.reason.as_str()).collect();
    assert_eq!(nobody.files.len(), 2, "{reasons:?}");
    assert!(
        reasons.iter().any(|r| r.contains("not a JPEG or PNG")),
        "{reasons:?}"
    );
    assert!(reasons.iter().any(|r| r.contains("no face")), "{reasons:?}");
}

#[test]
fn non_utf8_person_folders_are_enrolled_as_distinct_people() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    copy_tree(
        &celeb5("train").join("madonna"),
        &root.join(OsStr::from_bytes(b"\xff")),
    );
    copy_tree(
        &celeb5("train").join("elton_john"),
        &root.join(OsStr::from_bytes(b"\xfe")),
    );
    copy_tree(
        &celeb5("train").join("jerry_seinfeld"),
        &root.join("jerry_seinfeld"),
    );
    let report = train_on(root);
    assert_eq!(report.meta.labels, ["\\xFE", "\\xFF", "jerry_seinfeld"]);
    assert_eq!(report.meta.photos_per_person["\\xFF"], 19);
    assert_eq!(report.meta.photos_per_person["\\xFE"], 17);
}

#[test]
fn embed_and_evaluate_handle_non_utf8_file_names() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    let person = images.join(OsStr::from_bytes(b"jos\xe9"));
    std::fs::create_dir_all(&person).unwrap();
    let photo = person.join(OsStr::from_bytes(b"caf\xe9.jpg"));
    std::fs::copy(first_photo(&celeb5("val").join("madonna")), &photo).unwrap();

    let out = trainer(&["embed".as_ref(), photo.as_os_str()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        line["path"]
            .as_str()
            .unwrap()
            .ends_with("jos\\xE9/caf\\xE9.jpg"),
        "{line}"
    );
    let bytes: Vec<u8> = serde_json::from_value(line["path_bytes"].clone()).unwrap();
    assert_eq!(bytes, photo.as_os_str().as_bytes());
    assert_eq!(line["embedding"].as_array().unwrap().len(), 128);

    let classifier = classifier_file(dir.path());
    let json = dir.path().join("eval.json");
    let out = trainer(&[
        "evaluate".as_ref(),
        classifier.as_os_str(),
        images.as_os_str(),
        "--json".as_ref(),
        json.as_os_str(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let eval: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(eval["photos"][0]["person"], "jos\\xE9");
    assert!(eval["photos"][0]["path"]
        .as_str()
        .unwrap()
        .ends_with("caf\\xE9.jpg"));
    let html = std::fs::read_to_string(dir.path().join("eval.html")).unwrap();
    assert!(html.contains("caf\\xE9.jpg"));
}

fn max_similarity_within_a_person(report: &TrainReport) -> f32 {
    let e = &report.extraction.embedded;
    let mut best = f32::MIN;
    for (i, a) in e.iter().enumerate() {
        for b in &e[i + 1..] {
            if a.sample.person == b.sample.person && a.content != b.content {
                let s: f32 = a
                    .embedding
                    .as_slice()
                    .iter()
                    .zip(b.embedding.as_slice())
                    .map(|(x, y)| x * y)
                    .sum();
                best = best.max(s);
            }
        }
    }
    best
}

#[test]
fn copies_of_one_photo_count_once_and_do_not_inflate_the_gate() {
    // The sample set as it is: different photos of a person are never taken for copies.
    let plain = train_on(&celeb5("train"));
    let genuine = max_similarity_within_a_person(&plain);
    eprintln!("most similar different photos of one person: {genuine:.4}");
    assert!(genuine < DUPLICATE_SIMILARITY, "{genuine}");
    assert!(plain.copies.is_empty(), "{:#?}", plain.copies);

    // madonna's folder: 30 copies of one photo, one re-encoded copy, and her other photos.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    copy_tree(&celeb5("train"), root);
    let original = first_photo(&root.join("madonna"));
    for i in 0..30 {
        std::fs::copy(&original, root.join(format!("madonna/copy-{i:02}.jpg"))).unwrap();
    }
    let mut reencoded = Vec::new();
    JpegEncoder::new_with_quality(&mut reencoded, 70)
        .encode_image(&load_rgb(&original).unwrap())
        .unwrap();
    std::fs::write(root.join("madonna/reencoded.jpg"), reencoded).unwrap();
    let report = train_on(root);
    let embedding = |name: &str| {
        report
            .extraction
            .embedded
            .iter()
            .find(|e| e.sample.path.file_name().unwrap() == name)
            .unwrap()
            .embedding
            .clone()
    };
    let reencoded_similarity: f32 = embedding("reencoded.jpg")
        .as_slice()
        .iter()
        .zip(embedding("copy-00.jpg").as_slice())
        .map(|(a, b)| a * b)
        .sum();
    eprintln!("a copy re-encoded at JPEG quality 70: similarity {reencoded_similarity:.4}");
    let same_bytes = report.copies.iter().filter(|c| c.same_bytes).count();
    let near: Vec<f32> = report
        .copies
        .iter()
        .filter(|c| !c.same_bytes)
        .map(|c| c.similarity)
        .collect();
    eprintln!("re-encoded copy: similarity {near:?}");
    assert_eq!((same_bytes, near.len()), (30, 1), "{:#?}", report.copies);
    assert_eq!(report.meta.photos_per_person["madonna"], 19);
    assert_eq!(report.meta.photos_per_person, plain.meta.photos_per_person);
    // The gate and the cross-validation are those of the set without the copies.
    assert_eq!(report.choice, plain.choice);

    // A person who is nothing but copies of one photo: one photo, a sane gate.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for person in ["elton_john", "jerry_seinfeld", "mindy_kaling"] {
        copy_tree(&celeb5("train").join(person), &root.join(person));
    }
    std::fs::create_dir_all(root.join("madonna")).unwrap();
    for i in 0..30 {
        std::fs::copy(&original, root.join(format!("madonna/{i:02}.jpg"))).unwrap();
    }
    let report = train_on(root);
    assert_eq!(report.meta.photos_per_person["madonna"], 1);
    assert_eq!(report.copies.len(), 29);
    assert!(
        report.meta.thresholds.min_similarity < 0.9,
        "{:?}",
        report.meta.thresholds
    );
}

// ---- The daemon -------------------------------------------------------------------------

#[test]
fn bomb_frames_while_the_door_is_open_do_not_crash_the_daemon_and_it_relocks() {
    let lock = Lock::new(&sample_classifier().0.bytes, FAST, None);
    lock.add_frames(&photos("madonna"), 1);
    let bombs = tempfile::tempdir().unwrap();
    let names = write_bombs(bombs.path());
    let files: Vec<PathBuf> = names.iter().map(|(n, _)| bombs.path().join(n)).collect();
    lock.add_frames(&files, 3);
    lock.add_frames(&empty_hallway(), 5);
    let out = run(
        lock.command(&["run", "--exit-when-replay-ends"]),
        Duration::from_secs(120),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}: {stderr}", out.status);
    for (_, size) in &names {
        assert!(
            stderr.contains(&format!("declares {size} pixels")),
            "{stderr}"
        );
    }
    let relay = lock.relay();
    let unlocked = relay
        .iter()
        .position(|t| t.state == LockState::Unlocked)
        .unwrap_or_else(|| panic!("madonna was not let in: {relay:?}"));
    let relocked = relay[unlocked..]
        .iter()
        .find(|t| t.state == LockState::Locked)
        .expect("locked again");
    let open_ms = relocked.monotonic_ms - relay[unlocked].monotonic_ms;
    assert!((995..2000).contains(&open_ms), "door open for {open_ms} ms");
    assert_eq!(relay.last().unwrap().state, LockState::Locked);
}

// ---- Measurement ------------------------------------------------------------------------

fn sample_photos() -> Vec<PathBuf> {
    let mut v = Vec::new();
    for split in ["train", "val"] {
        for person in std::fs::read_dir(celeb5(split)).unwrap() {
            for photo in std::fs::read_dir(person.unwrap().path()).unwrap() {
                v.push(photo.unwrap().path());
            }
        }
    }
    v.sort();
    v
}

fn peak_rss_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM")).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        / 1024
}

/// How a photo much larger than the sample photos fares when scaled down to a bound
/// before detection: each of the 118 sample photos is scaled up to SOURCE px (default
/// 4096) on its longer side, then down to each bound in BOUNDS, and detected; the faces
/// are compared with the ones found on the photo itself.
#[test]
#[ignore = "measurement: cargo test --release -p facelock-tests -- --ignored --nocapture measure_detection_downscale"]
fn measure_detection_downscale() {
    let p = pipeline();
    let photos = sample_photos();
    let bounds: Vec<u32> = std::env::var("BOUNDS")
        .unwrap_or_else(|_| "640,1024,2048".into())
        .split(',')
        .map(|b| b.parse().unwrap())
        .collect();
    let source: u32 = std::env::var("SOURCE")
        .map(|s| s.parse().unwrap())
        .unwrap_or(4096);
    let mut native = Vec::new();
    let mut max_side = 0;
    for path in &photos {
        let image = load_rgb(path).unwrap();
        max_side = max_side.max(image.width().max(image.height()));
        let faces = p.detect(&image).unwrap();
        let emb = faces.first().map(|f| p.embed_face(&image, f).unwrap());
        native.push((image, faces, emb));
    }
    println!(
        "{} photos, largest side {max_side} px, peak rss {} MiB",
        photos.len(),
        peak_rss_mib()
    );
    for &bound in &bounds {
        let (mut same_count, mut same_main, mut min_cos, mut time) = (0, 0, 1.0f32, 0.0f64);
        for (image, faces, emb) in &native {
            let (w, h) = image.dimensions();
            let k = f64::from(source) / f64::from(w.max(h));
            let up: RgbImage = image::imageops::resize(
                image,
                (f64::from(w) * k).round() as u32,
                (f64::from(h) * k).round() as u32,
                image::imageops::FilterType::Triangle,
            );
            let small = shrink_to(up, bound);
            let back = w as f32 / small.width() as f32;
            let t = Instant::now();
            let found = p.detect(&small).unwrap();
            time += t.elapsed().as_secs_f64();
            same_count += usize::from(found.len() == faces.len());
            match (faces.first(), found.first(), emb) {
                (Some(f0), Some(f1), Some(e0)) => {
                    let b = f1.bbox;
                    let mapped = recognition::BBox {
                        x1: b.x1 * back,
                        y1: b.y1 * back,
                        x2: b.x2 * back,
                        y2: b.y2 * back,
                    };
                    same_main += usize::from(mapped.iou(&f0.bbox) > 0.7);
                    let e1 = p.embed_face(&small, f1).unwrap();
                    let cos: f32 = e0
                        .as_slice()
                        .iter()
                        .zip(e1.as_slice())
                        .map(|(a, b)| a * b)
                        .sum();
                    min_cos = min_cos.min(cos);
                }
                (None, None, _) => same_main += 1,
                _ => {}
            }
        }
        println!(
            "bound {bound}: same face count {same_count}/{n}, same main face {same_main}/{n}, \
             min cosine {min_cos:.4}, detect {:.0} ms/photo, peak rss {} MiB",
            time * 1000.0 / native.len() as f64,
            peak_rss_mib(),
            n = native.len()
        );
    }
}

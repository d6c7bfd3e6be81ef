//! MTCNN finds the same faces as the reference implementation on the sample
//! photos, and nothing where there is no face.

use std::collections::BTreeMap;

use recognition::BBox;
use serde::Deserialize;

use crate::support::{celeb5, extra, fixture, pipeline};

#[derive(Deserialize)]
struct Reference {
    boxes: Vec<[f32; 5]>,
}

/// The reference decoded the JPEGs with libjpeg; the `image` crate's decoder
/// rounds differently (pixels differ by up to 4 levels), which moves
/// borderline candidates. Fed identical pixels (libjpeg's, saved as PNG), this
/// pipeline finds the same faces in all 118 photos, with 118 of the 124 boxes
/// within 0.01 px of the reference and six moved by 4 to 9 px; so the bounds
/// below mostly measure decoder drift. They are the figures the README states
/// (measured on x86_64: 115/118, 115/124, median 0.9985, two faces under IoU 0.5),
/// less one face of slack for the other CPUs' kernels (aarch64 and armv7 run this
/// test under qemu): a regression of two faces fails it.
#[test]
fn detections_match_the_reference_on_the_sample_photos() {
    let text = std::fs::read_to_string(fixture("mtcnn_reference_detections.json")).unwrap();
    let reference: BTreeMap<String, Reference> = serde_json::from_str(&text).unwrap();
    assert_eq!(reference.len(), 118);
    let root = celeb5("train").parent().unwrap().to_owned();
    let (mut photos_same_count, mut faces, mut faces_close) = (0, 0, 0);
    let mut ious = Vec::new();
    let mut report = Vec::new();
    for (name, expected) in &reference {
        let image = recognition::photo::load_rgb(&root.join(name)).unwrap();
        let found = pipeline().mtcnn.detect(&image).unwrap();
        if found.len() == expected.boxes.len() {
            photos_same_count += 1;
        } else {
            report.push(format!(
                "{name}: {} faces, reference {}",
                found.len(),
                expected.boxes.len()
            ));
        }
        for b in &expected.boxes {
            let want = BBox {
                x1: b[0],
                y1: b[1],
                x2: b[2],
                y2: b[3],
            };
            let best = found.iter().map(|f| f.bbox.iou(&want)).fold(0.0, f32::max);
            faces += 1;
            ious.push(best);
            if best >= 0.9 {
                faces_close += 1;
            } else {
                report.push(format!("{name}: IoU {best:.3}"));
            }
        }
    }
    ious.sort_by(f32::total_cmp);
    let median = ious[ious.len() / 2];
    let far = ious.iter().filter(|&&iou| iou < 0.5).count();
    eprintln!(
        "same face count on {photos_same_count}/118 photos; IoU >= 0.9 for {faces_close}/{faces} faces; median IoU {median:.4}; {far} faces under IoU 0.5\n{report:#?}"
    );
    assert_eq!(faces, 124);
    assert!(photos_same_count >= 114, "{report:#?}");
    assert!(faces_close >= 114, "{report:#?}");
    assert!(median >= 0.995, "median IoU {median}");
    // Measured: two faces (a borderline face in a crowd, and a box taken from a
    // neighbouring candidate) move further than that.
    assert!(far <= 2, "{report:#?}");
}

#[test]
fn a_photo_without_a_face_yields_no_face() {
    let image = recognition::photo::load_rgb(&extra("noface/present.png")).unwrap();
    assert!(pipeline().mtcnn.detect(&image).unwrap().is_empty());
}

#[test]
fn a_blank_frame_yields_no_face() {
    let image = image::RgbImage::from_pixel(640, 480, image::Rgb([128, 128, 128]));
    assert!(pipeline().detect(&image).unwrap().is_empty());
}

#[test]
fn fixed_size_plans_give_the_same_faces_as_the_generic_plan() {
    let path = extra("stranger/grace_hopper.jpg");
    let image = recognition::photo::load_rgb(&path).unwrap();
    let generic = pipeline().mtcnn.detect(&image).unwrap();
    let mut mtcnn =
        recognition::Mtcnn::load(&crate::support::models(), Default::default()).unwrap();
    mtcnn
        .prepare_for_frame_size(image.width(), image.height())
        .unwrap();
    let fixed = mtcnn.detect(&image).unwrap();
    assert_eq!(generic.len(), 1);
    assert_eq!(fixed.len(), generic.len());
    assert!(fixed[0].bbox.iou(&generic[0].bbox) > 0.999);
}

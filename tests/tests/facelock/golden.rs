//! The converted networks reproduce the reference outputs (onnxruntime on a
//! verified conversion) within 1e-4, through the project's own engine.

use recognition::detect::Stage;
use serde::Deserialize;

use crate::support::{fixture, pipeline};

#[derive(Deserialize)]
struct Golden {
    input_shape: Vec<usize>,
    input: Vec<f32>,
    outputs: std::collections::BTreeMap<String, Output>,
}

#[derive(Deserialize)]
struct Output {
    shape: Vec<usize>,
    data: Vec<f32>,
}

fn load(name: &str) -> Golden {
    let text = std::fs::read_to_string(fixture(&format!("golden/{name}.json"))).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn check_mtcnn(name: &str, stage: Stage, order: &[&str]) {
    let golden = load(name);
    let out = pipeline()
        .mtcnn
        .run_network(stage, golden.input_shape.clone(), golden.input.clone())
        .unwrap();
    assert_eq!(out.len(), order.len());
    for ((shape, data), key) in out.iter().zip(order) {
        let expected = &golden.outputs[*key];
        assert_eq!(shape, &expected.shape, "{name}.{key} shape");
        let diff = max_abs_diff(data, &expected.data);
        eprintln!("{name}.{key}: max abs diff {diff:.2e}");
        assert!(diff <= 1e-4, "{name}.{key}: max abs diff {diff}");
    }
}

#[test]
fn pnet_matches_reference_outputs() {
    check_mtcnn("pnet", Stage::PNet, &["reg", "prob"]);
}

#[test]
fn rnet_matches_reference_outputs() {
    check_mtcnn("rnet", Stage::RNet, &["reg", "prob"]);
}

#[test]
fn onet_matches_reference_outputs() {
    check_mtcnn("onet", Stage::ONet, &["reg", "landmarks", "prob"]);
}

#[test]
fn facenet_matches_reference_embedding() {
    let golden = load("facenet");
    let raw = pipeline()
        .embedder
        .embed_tensor(golden.input.clone())
        .unwrap();
    let diff = max_abs_diff(&raw, &golden.outputs["embedding"].data);
    eprintln!("facenet.embedding: max abs diff {diff:.2e}");
    assert!(diff <= 1e-4, "facenet: max abs diff {diff}");
}

#[test]
fn pnet_output_shapes_follow_the_640x480_pyramid() {
    #[derive(Deserialize)]
    struct Level {
        in_hw: [usize; 2],
        out_shape: Vec<usize>,
    }
    let text = std::fs::read_to_string(fixture("pnet_pyramid_640x480.json")).unwrap();
    let levels: std::collections::BTreeMap<String, Vec<Level>> =
        serde_json::from_str(&text).unwrap();
    for (min_face, levels) in levels {
        let config = recognition::DetectorConfig {
            min_face_px: min_face.parse().unwrap(),
            ..Default::default()
        };
        let scales = recognition::detect::pyramid(640, 480, &config);
        assert_eq!(scales.len(), levels.len(), "min face {min_face}");
        for (s, level) in scales.iter().zip(&levels) {
            assert_eq!([s.height, s.width], level.in_hw);
            let n = 3 * s.height * s.width;
            let out = pipeline()
                .mtcnn
                .run_network(Stage::PNet, vec![1, 3, s.height, s.width], vec![0.0; n])
                .unwrap();
            assert_eq!(out[1].0, level.out_shape);
        }
    }
}

#[test]
fn multithreaded_matrix_products_give_the_same_embedding() {
    let golden = load("facenet");
    recognition::set_threads(2);
    let raw = pipeline().embedder.embed_tensor(golden.input.clone());
    recognition::set_threads(1);
    let diff = max_abs_diff(&raw.unwrap(), &golden.outputs["embedding"].data);
    eprintln!("facenet.embedding on 2 threads: max abs diff {diff:.2e}");
    assert!(diff <= 1e-4, "facenet on 2 threads: max abs diff {diff}");
}

//! Prints MTCNN detections for images: `cargo run --release --example detect -- IMAGE...`.
fn main() {
    let models = recognition::ModelDir::open(recognition::ModelDir::default_location()).unwrap();
    let mtcnn = recognition::Mtcnn::load(&models, Default::default()).unwrap();
    for path in std::env::args().skip(1) {
        let image = recognition::photo::load_rgb(std::path::Path::new(&path)).unwrap();
        for f in mtcnn.detect(&image).unwrap() {
            let b = f.bbox;
            println!(
                "{path} {}x{} [{:.1}, {:.1}, {:.1}, {:.1}, {:.4}]",
                image.width(),
                image.height(),
                b.x1,
                b.y1,
                b.x2,
                b.y2,
                f.score
            );
        }
    }
}

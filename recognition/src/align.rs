//! Face crops for the embedder: cut the detected box (plus an optional margin),
//! resize to the embedder's 160×160 input, and the embedder's normalisation
//! ("prewhitening") next to it.

use image::imageops::FilterType;
use image::RgbImage;

use crate::detect::BBox;

/// Side of the square crop FaceNet takes.
pub const FACE_SIZE: u32 = 160;

/// Cuts `bbox` out of `image`, enlarged by `margin` (a fraction of the box
/// side, split between both sides; 0 = the detector's tight box), clipped to
/// the image, and resized to 160×160 with a bilinear (triangle) filter.
pub fn crop_face(image: &RgbImage, bbox: &BBox, margin: f32) -> RgbImage {
    let pad = margin.max(0.0) * bbox.side() / 2.0;
    let (w, h) = (image.width() as f32, image.height() as f32);
    let x1 = (bbox.x1 - pad).max(0.0).min(w - 1.0) as u32;
    let y1 = (bbox.y1 - pad).max(0.0).min(h - 1.0) as u32;
    let x2 = ((bbox.x2 + pad).min(w) as u32).max(x1 + 1);
    let y2 = ((bbox.y2 + pad).min(h) as u32).max(y1 + 1);
    let view = image::imageops::crop_imm(image, x1, y1, x2 - x1, y2 - y1).to_image();
    image::imageops::resize(&view, FACE_SIZE, FACE_SIZE, FilterType::Triangle)
}

/// FaceNet's input normalisation: subtract the mean of all values and divide by
/// their population standard deviation (floored at `1/sqrt(n)`), giving NHWC
/// `f32` values in the crop's own pixel order.
pub fn prewhiten(crop: &RgbImage) -> Vec<f32> {
    let values: Vec<f32> = crop.as_raw().iter().map(|&v| f32::from(v)).collect();
    let n = values.len() as f64;
    let mean = values.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let var = values
        .iter()
        .map(|&v| (f64::from(v) - mean).powi(2))
        .sum::<f64>()
        / n;
    let std = var.sqrt().max(1.0 / n.sqrt());
    values
        .iter()
        .map(|&v| ((f64::from(v) - mean) / std) as f32)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prewhitened_crop_has_zero_mean_and_unit_variance() {
        let crop = RgbImage::from_fn(160, 160, |x, y| {
            image::Rgb([x as u8, y as u8, (x ^ y) as u8])
        });
        let v = prewhiten(&crop);
        let n = v.len() as f64;
        let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
        let var = v
            .iter()
            .map(|&x| (f64::from(x) - mean).powi(2))
            .sum::<f64>()
            / n;
        assert!(mean.abs() < 1e-5, "mean {mean}");
        assert!((var - 1.0).abs() < 1e-4, "var {var}");
    }

    #[test]
    fn a_flat_crop_does_not_divide_by_zero() {
        let crop = RgbImage::from_pixel(160, 160, image::Rgb([90, 90, 90]));
        assert!(prewhiten(&crop).iter().all(|v| *v == 0.0));
    }

    #[test]
    fn crop_is_always_160_square_even_at_the_image_border() {
        let image = RgbImage::new(100, 80);
        let bbox = BBox {
            x1: -10.0,
            y1: 50.0,
            x2: 40.0,
            y2: 120.0,
        };
        let crop = crop_face(&image, &bbox, 0.2);
        assert_eq!(crop.dimensions(), (FACE_SIZE, FACE_SIZE));
    }
}

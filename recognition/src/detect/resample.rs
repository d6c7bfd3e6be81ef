//! Image resampling for MTCNN: OpenCV's `INTER_AREA`, which the reference
//! pipeline uses for the pyramid and for the 24×24 / 48×48 crops.
//!
//! Downscaling averages the source area each output pixel covers; upscaling
//! uses OpenCV's area-style linear weights. Works on interleaved `f32` pixels.
//!
//! Hand-written on purpose: no Rust image crate implements `INTER_AREA`, and the networks'
//! outputs match the reference (the golden tests) only with OpenCV's exact weights.

/// A planar-free, interleaved `f32` image with `channels` values per pixel.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Plane {
    pub width: usize,
    pub height: usize,
    pub channels: usize,
    pub data: Vec<f32>,
}

impl Plane {
    pub fn zeros(width: usize, height: usize, channels: usize) -> Plane {
        Plane {
            width,
            height,
            channels,
            data: vec![0.0; width * height * channels],
        }
    }

    pub fn from_rgb(image: &image::RgbImage) -> Plane {
        Plane {
            width: image.width() as usize,
            height: image.height() as usize,
            channels: 3,
            data: image.as_raw().iter().map(|&v| f32::from(v)).collect(),
        }
    }
}

/// Source taps and weights for each output sample along one axis.
#[derive(Debug, Clone)]
struct Taps {
    start: Vec<usize>,
    weights: Vec<Vec<f32>>,
}

fn taps(src: usize, dst: usize) -> Taps {
    let scale = src as f64 / dst as f64;
    let mut start = Vec::with_capacity(dst);
    let mut weights = Vec::with_capacity(dst);
    if scale >= 1.0 {
        // Area average: output i covers [i·scale, (i+1)·scale) of the source.
        for i in 0..dst {
            let a = i as f64 * scale;
            let b = ((i + 1) as f64 * scale).min(src as f64);
            let first = a.floor() as usize;
            let last = (b.ceil() as usize).min(src);
            let w: Vec<f32> = (first..last)
                .map(|j| ((b.min(j as f64 + 1.0) - a.max(j as f64)) / scale) as f32)
                .collect();
            start.push(first);
            weights.push(w);
        }
    } else {
        // OpenCV INTER_AREA when enlarging.
        let inv = dst as f64 / src as f64;
        for i in 0..dst {
            let sx = (i as f64 * scale).floor() as usize;
            let mut fx = (i + 1) as f64 - (sx + 1) as f64 * inv;
            fx = if fx <= 0.0 { 0.0 } else { fx - fx.floor() };
            if sx + 1 >= src {
                start.push(src - 1);
                weights.push(vec![1.0]);
            } else {
                start.push(sx);
                weights.push(vec![(1.0 - fx) as f32, fx as f32]);
            }
        }
    }
    Taps { start, weights }
}

/// Resizes `src` to `width`×`height` the way `cv2.resize(..., INTER_AREA)` does.
///
/// The vertical pass runs first, over whole rows (contiguous, so it
/// vectorises); the horizontal pass then works on the already shortened image.
pub(crate) fn resize_area(src: &Plane, width: usize, height: usize) -> Plane {
    let c = src.channels;
    let tx = taps(src.width, width);
    let ty = taps(src.height, height);
    let stride = src.width * c;
    // Vertical pass: height rows × src.width columns.
    // Each output row is built in chunks that stay in registers across all
    // its source rows, so the row is written once rather than once per tap.
    // The sums are formed in the same order as a plain loop would.
    const CHUNK: usize = 64;
    let mut vertical = vec![0.0f32; height * stride];
    for (y, out) in vertical.chunks_exact_mut(stride).enumerate() {
        let s = ty.start[y];
        for (i, dst) in out.chunks_mut(CHUNK).enumerate() {
            let mut acc = [0.0f32; CHUNK];
            let acc = &mut acc[..dst.len()];
            for (k, &w) in ty.weights[y].iter().enumerate() {
                let at = (s + k) * stride + i * CHUNK;
                for (a, &v) in acc.iter_mut().zip(&src.data[at..at + dst.len()]) {
                    *a += v * w;
                }
            }
            dst.copy_from_slice(acc);
        }
    }
    // Horizontal pass.
    let mut out = Plane::zeros(width, height, c);
    for (row, dst) in vertical
        .chunks_exact(stride)
        .zip(out.data.chunks_exact_mut(width * c))
    {
        for x in 0..width {
            let s = tx.start[x];
            let px = &mut dst[x * c..(x + 1) * c];
            for (k, &w) in tx.weights[x].iter().enumerate() {
                let p = &row[(s + k) * c..(s + k + 1) * c];
                for (d, v) in px.iter_mut().zip(p) {
                    *d += v * w;
                }
            }
        }
    }
    out
}

/// Converts an interleaved plane to one NCHW sample normalised for MTCNN:
/// `(v − 127.5) / 128`. Appends to `out`.
pub(crate) fn push_mtcnn_chw(plane: &Plane, out: &mut Vec<f32>) {
    let (w, h, c) = (plane.width, plane.height, plane.channels);
    out.reserve(w * h * c);
    for ch in 0..c {
        out.extend(
            plane
                .data
                .iter()
                .skip(ch)
                .step_by(c)
                .map(|&v| (v - 127.5) * 0.0078125),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gray(width: usize, height: usize, values: &[f32]) -> Plane {
        Plane {
            width,
            height,
            channels: 1,
            data: values.to_vec(),
        }
    }

    #[test]
    fn halving_averages_two_by_two_blocks() {
        let src = gray(4, 2, &[0.0, 2.0, 4.0, 6.0, 2.0, 4.0, 6.0, 8.0]);
        let out = resize_area(&src, 2, 1);
        assert_eq!(out.data, vec![2.0, 6.0]);
    }

    #[test]
    fn fractional_downscale_weights_partial_pixels() {
        // 3 -> 2: output 0 covers [0, 1.5): pixel 0 fully, pixel 1 half.
        let src = gray(3, 1, &[0.0, 3.0, 6.0]);
        let out = resize_area(&src, 2, 1);
        assert!((out.data[0] - 1.0).abs() < 1e-6, "{:?}", out.data);
        assert!((out.data[1] - 5.0).abs() < 1e-6, "{:?}", out.data);
    }

    #[test]
    fn upscaling_keeps_constant_images_constant() {
        let src = gray(5, 5, &[7.0; 25]);
        let out = resize_area(&src, 24, 24);
        assert!(out.data.iter().all(|v| (v - 7.0).abs() < 1e-5));
    }

    #[test]
    fn chw_normalisation_maps_255_to_just_under_one() {
        let plane = Plane {
            width: 1,
            height: 1,
            channels: 3,
            data: vec![255.0, 127.5, 0.0],
        };
        let mut out = Vec::new();
        push_mtcnn_chw(&plane, &mut out);
        assert_eq!(out, vec![0.99609375, 0.0, -0.99609375]);
    }
}

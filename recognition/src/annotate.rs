//! Drawing detections onto a frame, for `trainer recognize --annotate` and the
//! daemon's optional snapshots.

use image::{Rgb, RgbImage};

use crate::detect::Face;

const KNOWN: Rgb<u8> = Rgb([40, 200, 80]);
const UNKNOWN: Rgb<u8> = Rgb([230, 50, 60]);

/// Draws a 2-px rectangle around the face (green if recognised, red if not)
/// and a dot on each landmark.
pub fn draw_face(image: &mut RgbImage, face: &Face, recognised: bool) {
    let colour = if recognised { KNOWN } else { UNKNOWN };
    let b = face.bbox;
    draw_rect(
        image,
        b.x1 as i64,
        b.y1 as i64,
        b.x2 as i64,
        b.y2 as i64,
        colour,
    );
    for &(x, y) in &face.landmarks {
        draw_rect(
            image,
            x as i64 - 1,
            y as i64 - 1,
            x as i64 + 1,
            y as i64 + 1,
            colour,
        );
    }
}

fn put(image: &mut RgbImage, x: i64, y: i64, colour: Rgb<u8>) {
    if x >= 0 && y >= 0 && (x as u32) < image.width() && (y as u32) < image.height() {
        image.put_pixel(x as u32, y as u32, colour);
    }
}

/// A rectangle outline, 2 px thick, clipped to the image.
pub fn draw_rect(image: &mut RgbImage, x1: i64, y1: i64, x2: i64, y2: i64, colour: Rgb<u8>) {
    for t in 0..2 {
        for x in x1..=x2 {
            put(image, x, y1 + t, colour);
            put(image, x, y2 - t, colour);
        }
        for y in y1..=y2 {
            put(image, x1 + t, y, colour);
            put(image, x2 - t, y, colour);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rectangles_are_clipped_to_the_image() {
        let mut image = RgbImage::new(10, 10);
        draw_rect(&mut image, -5, -5, 20, 20, KNOWN);
        draw_rect(&mut image, 2, 2, 6, 6, UNKNOWN);
        assert_eq!(*image.get_pixel(2, 2), UNKNOWN);
        assert_eq!(*image.get_pixel(4, 4), Rgb([0, 0, 0]));
    }
}

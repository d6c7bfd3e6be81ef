//! Drawing recognised faces onto a frame: `trainer recognize --annotate`, the
//! daemon's audit snapshots and the live preview all use this code.
//!
//! Each face gets a box (green: recognised, red: unknown) and a label such as
//! `ada  p=0.97 sim=0.81` on a filled box of the same colour, above the face or,
//! when there is no room above, inside or below it. Line width and text size
//! follow the image's shorter side, so labels are readable on a 640×480 frame
//! and on a 4000-px photo alike. Boxes are drawn in the coordinates of the
//! image given: draw on the image the faces were detected in (for a photo
//! scaled down for detection, the scaled copy).
//!
//! Everything is clipped to the image: faces partly or wholly outside it,
//! non-finite coordinates, tiny images and hostile names never panic, and a
//! label is at most [`MAX_LABEL_CHARS`] characters long.

use font8x8::{UnicodeFonts, BASIC_FONTS, LATIN_FONTS};
use image::{Rgb, RgbImage};

use crate::classify::Prediction;
use crate::detect::Face;
use crate::pipeline::Recognized;

/// Recognised faces.
pub const KNOWN: Rgb<u8> = Rgb([40, 200, 80]);
/// Faces the open-set gate turned down.
pub const UNKNOWN: Rgb<u8> = Rgb([230, 50, 60]);
/// The size line of a face below [`AnnotateOptions::min_face_px`], and
/// unlabelled faces below it.
pub const TOO_SMALL: Rgb<u8> = Rgb([255, 176, 0]);
/// Unlabelled faces (detected, not classified) that are big enough.
pub const UNCLASSIFIED: Rgb<u8> = Rgb([90, 160, 230]);

/// Longest label line, in characters; longer ones are cut.
pub const MAX_LABEL_CHARS: usize = 40;
/// Longest name shown; longer names end in `..`, so the scores stay visible.
const MAX_NAME_CHARS: usize = 20;

/// What to write next to a face.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Label<'a> {
    /// The recognised person, or `None` for unknown.
    pub name: Option<&'a str>,
    pub probability: f32,
    pub similarity: f32,
}

impl<'a> From<&'a Prediction> for Label<'a> {
    fn from(p: &'a Prediction) -> Label<'a> {
        Label {
            name: p.identity.as_deref(),
            probability: p.probability,
            similarity: p.similarity,
        }
    }
}

impl Label<'_> {
    /// The label line, e.g. `ada  p=0.97 sim=0.81` or `unknown  p=0.41 sim=0.22`.
    pub fn text(&self) -> String {
        let name = match self.name.map(str::trim) {
            None => "unknown".to_owned(),
            Some("") => "?".to_owned(),
            Some(name) if name.chars().count() > MAX_NAME_CHARS => {
                let mut short: String = name.chars().take(MAX_NAME_CHARS - 2).collect();
                short.push_str("..");
                short
            }
            Some(name) => name.to_owned(),
        };
        let line = format!(
            "{name}  p={:.2} sim={:.2}",
            self.probability, self.similarity
        );
        line.chars().take(MAX_LABEL_CHARS).collect()
    }
}

/// How to annotate.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct AnnotateOptions {
    /// Adds a second line with the face's size (its shorter side, as the size
    /// floor measures it): `112 px`, or `48 px < 80 min` in amber when the face
    /// is too small to be recognised. For the installation preview.
    pub min_face_px: Option<f32>,
    /// Marks the five landmarks.
    pub landmarks: bool,
}

/// Draws every face with its label. Boxes are drawn first and labels on top,
/// the first face's label last, so the largest face's label (the pipeline
/// returns faces largest first) is never covered.
pub fn draw_recognized(image: &mut RgbImage, faces: &[Recognized], options: &AnnotateOptions) {
    let style = Style::for_image(image);
    for r in faces {
        let label = Label::from(&r.prediction);
        draw_box(image, &r.face, Some(&label), options, style);
    }
    for r in faces.iter().rev() {
        let label = Label::from(&r.prediction);
        draw_label(image, &r.face, Some(&label), options, style);
    }
}

/// Draws one face. `label: None` is a face that was detected but not classified
/// (e.g. below the size floor): its box is amber when it is below
/// `options.min_face_px`, blue otherwise, and only the size line (if asked
/// for) is written.
pub fn draw_face(
    image: &mut RgbImage,
    face: &Face,
    label: Option<&Label>,
    options: &AnnotateOptions,
) {
    let style = Style::for_image(image);
    draw_box(image, face, label, options, style);
    draw_label(image, face, label, options, style);
}

/// Line width and text scale for one image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Style {
    line_width: i64,
    /// Pixels per font pixel: the text is 8 × this high.
    text_scale: i64,
}

impl Style {
    fn for_size(width: u32, height: u32) -> Style {
        let short = i64::from(width.min(height));
        Style {
            line_width: ((short + 125) / 250).max(2),
            text_scale: (short / 400).max(1),
        }
    }

    fn for_image(image: &RgbImage) -> Style {
        Style::for_size(image.width(), image.height())
    }
}

/// Coordinates far outside any image are clamped to this, which keeps the
/// integer arithmetic below far from overflowing.
const FAR: f32 = (1 << 24) as f32;

fn coordinate(v: f32) -> i64 {
    v.round().clamp(-FAR, FAR) as i64
}

/// A face box in whole pixels, `x2`/`y2` inclusive; `None` for non-finite boxes.
fn pixel_box(face: &Face) -> Option<[i64; 4]> {
    let b = face.bbox;
    if ![b.x1, b.y1, b.x2, b.y2].iter().all(|v| v.is_finite()) {
        return None;
    }
    let (x1, x2) = (coordinate(b.x1.min(b.x2)), coordinate(b.x1.max(b.x2)));
    let (y1, y2) = (coordinate(b.y1.min(b.y2)), coordinate(b.y1.max(b.y2)));
    Some([x1, y1, x2, y2])
}

/// The face box when any of it is inside the image: a face wholly outside is
/// not drawn at all (its label would otherwise point at the wrong place).
fn visible_box(width: u32, height: u32, face: &Face) -> Option<[i64; 4]> {
    let [x1, y1, x2, y2] = pixel_box(face)?;
    let (w, h) = (i64::from(width), i64::from(height));
    (x2 >= 0 && y2 >= 0 && x1 < w && y1 < h).then_some([x1, y1, x2, y2])
}

fn too_small(face: &Face, options: &AnnotateOptions) -> bool {
    options
        .min_face_px
        .is_some_and(|min| face.bbox.side() < min)
}

fn box_colour(face: &Face, label: Option<&Label>, options: &AnnotateOptions) -> Rgb<u8> {
    match label {
        Some(Label { name: Some(_), .. }) => KNOWN,
        Some(Label { name: None, .. }) => UNKNOWN,
        None if too_small(face, options) => TOO_SMALL,
        None => UNCLASSIFIED,
    }
}

fn draw_box(
    image: &mut RgbImage,
    face: &Face,
    label: Option<&Label>,
    options: &AnnotateOptions,
    style: Style,
) {
    let Some([x1, y1, x2, y2]) = visible_box(image.width(), image.height(), face) else {
        return;
    };
    let colour = box_colour(face, label, options);
    let lw = style.line_width;
    fill(image, x1, y1, x2 + 1, y1 + lw, colour);
    fill(image, x1, y2 + 1 - lw, x2 + 1, y2 + 1, colour);
    fill(image, x1, y1, x1 + lw, y2 + 1, colour);
    fill(image, x2 + 1 - lw, y1, x2 + 1, y2 + 1, colour);
    if options.landmarks {
        let r = (lw + 1) / 2;
        for &(x, y) in &face.landmarks {
            if x.is_finite() && y.is_finite() {
                let (x, y) = (coordinate(x), coordinate(y));
                fill(image, x - r, y - r, x + r + 1, y + r + 1, colour);
            }
        }
    }
}

/// One line of a face's label, placed: `text` on a `background` box whose
/// top-left corner is (`x`, `y`).
#[derive(Debug, Clone, PartialEq)]
struct PlacedLine {
    text: String,
    background: Rgb<u8>,
    x: i64,
    y: i64,
}

/// The label lines of a face and where they go: above the box when they fit
/// there, else inside its top when the box is tall enough, else below it, else
/// as far down the image as they fit; shifted left when they would run off
/// the right edge.
fn layout(
    width: u32,
    height: u32,
    face: &Face,
    label: Option<&Label>,
    options: &AnnotateOptions,
    style: Style,
) -> Vec<PlacedLine> {
    let (w, h) = (i64::from(width), i64::from(height));
    let Some([x1, y1, _, y2]) = visible_box(width, height, face) else {
        return Vec::new();
    };
    let colour = box_colour(face, label, options);
    let mut lines = Vec::new();
    if let Some(label) = label {
        lines.push((label.text(), colour));
    }
    if let Some(min) = options.min_face_px {
        let side = coordinate(face.bbox.side());
        if too_small(face, options) {
            lines.push((format!("{side} px < {} min", coordinate(min)), TOO_SMALL));
        } else {
            lines.push((format!("{side} px"), colour));
        }
    }
    let line_height = line_height(style);
    let block_height = line_height * lines.len() as i64;
    let block_width = lines
        .iter()
        .map(|(text, _)| line_width(text, style))
        .max()
        .unwrap_or(0);
    let y = if y1 - block_height >= 0 {
        y1 - block_height
    } else if y1.max(0) + block_height <= (y2 + 1).min(h) {
        y1.max(0)
    } else if y2 + 1 + block_height <= h {
        y2 + 1
    } else {
        y1.max(0).min(h - block_height).max(0)
    };
    let x = x1.min(w - block_width).max(0);
    lines
        .into_iter()
        .enumerate()
        .map(|(i, (text, background))| PlacedLine {
            text,
            background,
            x,
            y: y + i as i64 * line_height,
        })
        .collect()
}

/// Space around the text inside its box, in image pixels.
fn padding(style: Style) -> i64 {
    style.text_scale
}

fn line_height(style: Style) -> i64 {
    8 * style.text_scale + 2 * padding(style)
}

fn line_width(text: &str, style: Style) -> i64 {
    8 * style.text_scale * text.chars().count() as i64 + 2 * padding(style)
}

fn draw_label(
    image: &mut RgbImage,
    face: &Face,
    label: Option<&Label>,
    options: &AnnotateOptions,
    style: Style,
) {
    let lines = layout(image.width(), image.height(), face, label, options, style);
    for line in lines {
        let (x, y) = (line.x, line.y);
        let (lw, lh) = (line_width(&line.text, style), line_height(style));
        fill(image, x, y, x + lw, y + lh, line.background);
        let pad = padding(style);
        draw_text(
            image,
            x + pad,
            y + pad,
            &line.text,
            style.text_scale,
            contrast(line.background),
        );
    }
}

/// Black on light backgrounds, white on dark ones.
fn contrast(background: Rgb<u8>) -> Rgb<u8> {
    let [r, g, b] = background.0.map(u32::from);
    if 299 * r + 587 * g + 114 * b >= 128_000 {
        Rgb([0, 0, 0])
    } else {
        Rgb([255, 255, 255])
    }
}

/// The 8×8 bitmap of `c` (bit 0 of each row is its leftmost pixel); `?` for
/// control characters and characters the font lacks.
fn glyph(c: char) -> [u8; 8] {
    let found = if c.is_control() {
        None
    } else {
        BASIC_FONTS.get(c).or_else(|| LATIN_FONTS.get(c))
    };
    found.unwrap_or_else(|| BASIC_FONTS.get('?').unwrap_or([0; 8]))
}

fn draw_text(image: &mut RgbImage, x: i64, y: i64, text: &str, scale: i64, colour: Rgb<u8>) {
    let w = i64::from(image.width());
    for (i, c) in text.chars().enumerate() {
        let left = x + i as i64 * 8 * scale;
        if left >= w {
            break;
        }
        for (row, bits) in glyph(c).iter().enumerate() {
            for col in 0..8 {
                if bits & (1 << col) != 0 {
                    let px = left + col * scale;
                    let py = y + row as i64 * scale;
                    fill(image, px, py, px + scale, py + scale, colour);
                }
            }
        }
    }
}

/// Fills `[x1, x2) × [y1, y2)`, clipped to the image.
fn fill(image: &mut RgbImage, x1: i64, y1: i64, x2: i64, y2: i64, colour: Rgb<u8>) {
    let (w, h) = (i64::from(image.width()), i64::from(image.height()));
    let (x1, x2) = (x1.clamp(0, w), x2.clamp(0, w));
    let (y1, y2) = (y1.clamp(0, h), y2.clamp(0, h));
    for y in y1..y2 {
        for x in x1..x2 {
            // In range: clamped to the image's u32 size above.
            image.put_pixel(x as u32, y as u32, colour);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::BBox;

    const GREY: Rgb<u8> = Rgb([128, 128, 128]);
    const BLACK: Rgb<u8> = Rgb([0, 0, 0]);
    const WHITE: Rgb<u8> = Rgb([255, 255, 255]);

    fn grey(width: u32, height: u32) -> RgbImage {
        RgbImage::from_pixel(width, height, GREY)
    }

    fn face(x1: f32, y1: f32, x2: f32, y2: f32) -> Face {
        let (cx, cy) = ((x1 + x2) / 2.0, (y1 + y2) / 2.0);
        Face {
            bbox: BBox { x1, y1, x2, y2 },
            score: 0.99,
            landmarks: [(cx, cy); 5],
        }
    }

    fn recognized(face: Face, identity: Option<&str>) -> Recognized {
        Recognized {
            face,
            prediction: Prediction {
                identity: identity.map(str::to_owned),
                nearest: "ada".to_owned(),
                probability: 0.4,
                similarity: 0.2,
            },
        }
    }

    /// Rows holding at least one pixel of `colour` in columns `x1..x2`.
    fn rows_with(image: &RgbImage, colour: Rgb<u8>, x1: u32, x2: u32) -> Vec<u32> {
        (0..image.height())
            .filter(|&y| (x1..x2.min(image.width())).any(|x| *image.get_pixel(x, y) == colour))
            .collect()
    }

    /// Reads `n` characters of text drawn at (x, y) in `colour` back from the image.
    fn read_text(
        image: &RgbImage,
        x: i64,
        y: i64,
        scale: i64,
        n: usize,
        colour: Rgb<u8>,
    ) -> String {
        (0..n as i64)
            .map(|i| {
                let mut bits = [0u8; 8];
                for (row, b) in bits.iter_mut().enumerate() {
                    for col in 0..8 {
                        let px = (x + (i * 8 + col) * scale) as u32;
                        let py = (y + row as i64 * scale) as u32;
                        if *image.get_pixel(px, py) == colour {
                            *b |= 1 << col;
                        }
                    }
                }
                (' '..='~').find(|&c| glyph(c) == bits).unwrap_or('#')
            })
            .collect()
    }

    /// The text of a label line as drawn on the image.
    fn drawn(image: &RgbImage, line: &PlacedLine, style: Style) -> String {
        let pad = padding(style);
        read_text(
            image,
            line.x + pad,
            line.y + pad,
            style.text_scale,
            line.text.chars().count(),
            contrast(line.background),
        )
    }

    #[test]
    fn line_width_and_text_grow_with_image_size() {
        let vga = Style::for_size(640, 480);
        let photo = Style::for_size(4000, 3000);
        assert_eq!(
            vga,
            Style {
                line_width: 2,
                text_scale: 1
            }
        );
        assert!(photo.line_width >= 10 && photo.text_scale >= 6, "{photo:?}");
        assert!(Style::for_size(1920, 1080).line_width > vga.line_width);

        let mut image = grey(4000, 3000);
        let f = face(1000.0, 1000.0, 1600.0, 1800.0);
        draw_face(&mut image, &f, None, &AnnotateOptions::default());
        let lw = photo.line_width as u32;
        assert_eq!(*image.get_pixel(1300, 1000 + lw - 1), UNCLASSIFIED);
        assert_eq!(*image.get_pixel(1300, 1000 + lw), GREY);
    }

    #[test]
    fn label_is_drawn_above_a_face_in_the_middle() {
        let mut image = grey(640, 480);
        let f = face(250.0, 200.0, 350.0, 320.0);
        let options = AnnotateOptions::default();
        draw_recognized(&mut image, &[recognized(f.clone(), Some("ada"))], &options);
        let style = Style::for_image(&image);
        let text_rows = rows_with(&image, BLACK, 0, 640);
        assert!(!text_rows.is_empty());
        assert!(text_rows.iter().all(|&y| y < 200), "{text_rows:?}");
        let lines = layout(
            640,
            480,
            &f,
            Some(&Label::from(&recognized(f.clone(), Some("ada")).prediction)),
            &options,
            style,
        );
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].y + line_height(style), 200);
        assert_eq!(drawn(&image, &lines[0], style), "ada  p=0.40 sim=0.20");
        assert_eq!(*image.get_pixel(250, 200), KNOWN);
    }

    #[test]
    fn label_goes_inside_or_below_a_face_at_the_top_edge() {
        let options = AnnotateOptions::default();
        // Room inside the box: the label covers its top.
        let mut image = grey(640, 480);
        draw_recognized(
            &mut image,
            &[recognized(face(250.0, 3.0, 350.0, 120.0), Some("ada"))],
            &options,
        );
        let text_rows = rows_with(&image, BLACK, 0, 640);
        assert!(!text_rows.is_empty());
        assert!(
            text_rows.iter().all(|&y| (3..120).contains(&y)),
            "{text_rows:?}"
        );
        assert!(rows_with(&image, KNOWN, 0, 640).iter().all(|&y| y >= 3));

        // A flat box: the label goes below it.
        let mut image = grey(640, 480);
        draw_recognized(
            &mut image,
            &[recognized(face(250.0, 2.0, 350.0, 8.0), Some("ada"))],
            &options,
        );
        let text_rows = rows_with(&image, BLACK, 0, 640);
        assert!(!text_rows.is_empty());
        assert!(text_rows.iter().all(|&y| y > 8), "{text_rows:?}");
    }

    #[test]
    fn label_stays_inside_the_image_at_the_right_edge() {
        let mut image = grey(640, 480);
        let f = face(600.0, 200.0, 700.0, 300.0);
        draw_recognized(
            &mut image,
            &[recognized(f.clone(), Some("ada"))],
            &AnnotateOptions::default(),
        );
        let style = Style::for_image(&image);
        let prediction = recognized(f.clone(), Some("ada")).prediction;
        let lines = layout(
            640,
            480,
            &f,
            Some(&Label::from(&prediction)),
            &AnnotateOptions::default(),
            style,
        );
        assert_eq!(lines[0].x + line_width(&lines[0].text, style), 640);
        assert_eq!(drawn(&image, &lines[0], style), "ada  p=0.40 sim=0.20");
    }

    #[test]
    fn unknown_faces_are_red_and_labelled_unknown() {
        let mut image = grey(640, 480);
        let f = face(250.0, 200.0, 350.0, 320.0);
        let r = recognized(f.clone(), None);
        let options = AnnotateOptions {
            min_face_px: None,
            landmarks: true,
        };
        draw_recognized(&mut image, std::slice::from_ref(&r), &options);
        assert_eq!(*image.get_pixel(250, 260), UNKNOWN);
        assert_eq!(*image.get_pixel(300, 260), UNKNOWN, "landmark");
        assert_eq!(*image.get_pixel(280, 240), GREY);
        let style = Style::for_image(&image);
        let lines = layout(
            640,
            480,
            &f,
            Some(&Label::from(&r.prediction)),
            &options,
            style,
        );
        assert_eq!(lines[0].background, UNKNOWN);
        assert_eq!(contrast(UNKNOWN), WHITE);
        assert_eq!(drawn(&image, &lines[0], style), "unknown  p=0.40 sim=0.20");
        assert!(rows_with(&image, KNOWN, 0, 640).is_empty());
    }

    #[test]
    fn too_small_annotation_only_when_asked_and_below_the_minimum() {
        let f = face(250.0, 200.0, 298.0, 260.0); // 48 × 60: side 48
        let r = recognized(f.clone(), Some("ada"));
        let draw = |min_face_px| {
            let mut image = grey(640, 480);
            let options = AnnotateOptions {
                min_face_px,
                landmarks: false,
            };
            draw_recognized(&mut image, std::slice::from_ref(&r), &options);
            let style = Style::for_image(&image);
            let lines = layout(
                640,
                480,
                &f,
                Some(&Label::from(&r.prediction)),
                &options,
                style,
            );
            let texts: Vec<String> = lines.iter().map(|l| drawn(&image, l, style)).collect();
            (image, lines, texts)
        };

        let (image, lines, texts) = draw(Some(80.0));
        assert_eq!(texts, ["ada  p=0.40 sim=0.20", "48 px < 80 min"]);
        assert_eq!(lines[1].background, TOO_SMALL);
        assert!(!rows_with(&image, TOO_SMALL, 0, 640).is_empty());
        assert!(
            lines[1].y + line_height(Style::for_image(&image)) <= 200,
            "above the face"
        );

        let (image, lines, texts) = draw(Some(40.0));
        assert_eq!(texts, ["ada  p=0.40 sim=0.20", "48 px"]);
        assert_eq!(lines[1].background, KNOWN);
        assert!(rows_with(&image, TOO_SMALL, 0, 640).is_empty());

        let (image, _, texts) = draw(None);
        assert_eq!(texts, ["ada  p=0.40 sim=0.20"]);
        assert!(rows_with(&image, TOO_SMALL, 0, 640).is_empty());

        // Detected but not classified: an amber box and only the size line.
        let mut image = grey(640, 480);
        let options = AnnotateOptions {
            min_face_px: Some(80.0),
            landmarks: false,
        };
        draw_face(&mut image, &f, None, &options);
        assert_eq!(*image.get_pixel(250, 230), TOO_SMALL);
        let style = Style::for_image(&image);
        let lines = layout(640, 480, &f, None, &options, style);
        assert_eq!(lines.len(), 1);
        assert_eq!(drawn(&image, &lines[0], style), "48 px < 80 min");
    }

    #[test]
    fn faces_outside_the_image_are_skipped_without_panicking() {
        let options = AnnotateOptions {
            min_face_px: Some(80.0),
            landmarks: true,
        };
        let mut image = grey(64, 48);
        let outside = [
            face(-500.0, -500.0, -100.0, -100.0),
            face(100.0, 10.0, 200.0, 40.0),
            face(10.0, 1e9, 20.0, 2e9),
            face(f32::NAN, 0.0, 10.0, 10.0),
            face(f32::NEG_INFINITY, 0.0, f32::INFINITY, 10.0),
        ];
        for f in &outside {
            draw_face(&mut image, f, None, &options);
            draw_recognized(&mut image, &[recognized(f.clone(), Some("ada"))], &options);
        }
        assert!(image.pixels().all(|p| *p == GREY));

        // Partly outside, huge or inverted boxes are drawn, clipped.
        let partly = [
            face(-30.0, -30.0, 20.0, 20.0),
            face(50.0, 40.0, 90.0, 90.0),
            face(-1e30, -1e30, 1e30, 1e30),
            face(40.0, 40.0, 10.0, 10.0),
        ];
        for f in &partly {
            draw_recognized(&mut image, &[recognized(f.clone(), None)], &options);
        }
        assert!(image.pixels().any(|p| *p == UNKNOWN));
    }

    #[test]
    fn tiny_images_do_not_panic() {
        let options = AnnotateOptions {
            min_face_px: Some(80.0),
            landmarks: true,
        };
        for (w, h) in [(4, 4), (1, 1), (0, 0), (1, 300), (300, 1)] {
            let mut image = grey(w, h);
            let faces = [
                recognized(face(0.0, 0.0, 3.0, 3.0), Some("ada")),
                recognized(face(1.0, 1.0, 2.0, 2.0), None),
                recognized(face(-2.0, -2.0, 9.0, 9.0), Some("")),
            ];
            draw_recognized(&mut image, &faces, &options);
            draw_face(&mut image, &faces[0].face, None, &options);
        }
    }

    #[test]
    fn empty_long_and_non_ascii_names_are_clipped_and_drawn() {
        let label = |name| Label {
            name: Some(name),
            probability: 0.97,
            similarity: 0.81,
        };
        assert_eq!(label("").text(), "?  p=0.97 sim=0.81");
        assert_eq!(label(" ada ").text(), "ada  p=0.97 sim=0.81");
        let long = "x".repeat(10_000);
        let text = label(&long).text();
        assert!(text.chars().count() <= MAX_LABEL_CHARS, "{text}");
        assert!(text.ends_with("..  p=0.97 sim=0.81"), "{text}");
        let huge = Label {
            name: Some("ada"),
            probability: 1e30,
            similarity: f32::NAN,
        };
        assert!(huge.text().chars().count() <= MAX_LABEL_CHARS);

        assert_eq!(glyph('é'), LATIN_FONTS.get('é').unwrap());
        assert_eq!(glyph('李'), glyph('?'));
        assert_eq!(glyph('\n'), glyph('?'));
        assert_ne!(glyph('a'), glyph('?'));

        for name in ["", &long, "Zoë", "李小龍", "🙂\u{202e}evil\n\t\0", "\u{85}"] {
            for (w, h) in [(640, 480), (4000, 3000), (40, 30)] {
                let mut image = grey(w, h);
                let f = face(
                    w as f32 * 0.4,
                    h as f32 * 0.4,
                    w as f32 * 0.6,
                    h as f32 * 0.6,
                );
                let r = recognized(f, Some(name));
                draw_recognized(&mut image, &[r], &AnnotateOptions::default());
            }
        }

        // A hostile name cannot paint more than a label's width.
        let mut image = grey(4000, 3000);
        let r = recognized(face(0.0, 1000.0, 100.0, 1100.0), Some(&long));
        draw_recognized(&mut image, &[r], &AnnotateOptions::default());
        let style = Style::for_size(4000, 3000);
        let widest = line_width(&"x".repeat(MAX_LABEL_CHARS), style) as u32;
        assert!((widest..4000).all(|x| *image.get_pixel(x, 990) == GREY));

        // Characters the font lacks are drawn as '?'.
        let mut image = grey(640, 480);
        let f = face(250.0, 200.0, 350.0, 320.0);
        let r = recognized(f.clone(), Some("李"));
        draw_recognized(
            &mut image,
            std::slice::from_ref(&r),
            &AnnotateOptions::default(),
        );
        let style = Style::for_image(&image);
        let lines = layout(
            640,
            480,
            &f,
            Some(&Label::from(&r.prediction)),
            &AnnotateOptions::default(),
            style,
        );
        assert_eq!(drawn(&image, &lines[0], style), "?  p=0.40 sim=0.20");
    }
}

//! Reading photos and camera frames: any JPEG or PNG, EXIF orientation honoured,
//! converted to RGB. Errors say what is wrong with which file.
//!
//! # Image bombs
//!
//! An image's header declares its size, and a decoder allocates that many pixels whatever
//! the size of the file: a 2 KB JPEG can declare 65000×65000 pixels, 12.7 GB as RGB. So the
//! declared size is read from the header first ([`declared_size`], a few bytes of PNG's
//! IHDR or JPEG's frame header) and an image above the [`DecodeLimits`] is refused before
//! any pixel buffer exists. The decoder gets the same limits as a second line, and the
//! buffer it is about to allocate is checked against [`DecodeLimits::max_bytes`].
//!
//! # Large photos
//!
//! Detection needs far fewer pixels than a camera takes: FaceNet sees every face at
//! 160×160 whatever its size in the photo. [`load_photo`] scales photos whose longer side
//! is above [`DETECT_MAX_SIDE`] down (area averaging) before detection, so detection time
//! and memory stay those of a photo of that size, whatever the camera.

use std::io::Cursor;
use std::path::Path;

use image::{imageops, DynamicImage, ImageDecoder, ImageFormat, ImageReader, RgbImage};

use crate::detect::BBox;
use crate::error::{Error, Result};

/// The largest photo side, in pixels, accepted by default (a 67-megapixel square).
pub const MAX_PHOTO_SIDE: u32 = 8192;

/// Photos larger than this on their longer side are scaled down before detection.
///
/// Measured on the 118 sample photos scaled up to 4096 px and back down to the bound: at
/// 1024 px detection finds the same main face as on the photo itself in 116 of 118, in
/// 0.7 s per photo and 30 MiB more peak memory; at 2048 px also 116, but in 4.8 s and
/// 330 MiB more; at 640 px 117, in 0.3 s, but faces under 20 px in the scaled photo (3 %
/// of its side) are lost. 1024 px keeps every face of at least 2 % of the photo's longer
/// side, e.g. 80 px in a 4000 px photo; the sample photos (at most 380 px) are untouched.
pub const DETECT_MAX_SIDE: u32 = 1024;

/// The widest decoded pixel: RGBA with 16 bits per channel (PNG).
const MAX_BYTES_PER_PIXEL: u64 = 8;

/// How large an image may be before it is decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    pub max_width: u32,
    pub max_height: u32,
    /// The largest pixel buffer the decoder may allocate, in bytes.
    pub max_bytes: u64,
}

impl DecodeLimits {
    /// Photos up to `max_side` pixels wide and high.
    pub fn photos(max_side: u32) -> DecodeLimits {
        DecodeLimits {
            max_width: max_side,
            max_height: max_side,
            max_bytes: u64::from(max_side).pow(2) * MAX_BYTES_PER_PIXEL,
        }
    }

    /// Camera frames of the configured size: at most twice as wide and twice as high.
    pub fn frames(width: u32, height: u32) -> DecodeLimits {
        let (width, height) = (width.saturating_mul(2), height.saturating_mul(2));
        DecodeLimits {
            max_width: width,
            max_height: height,
            max_bytes: u64::from(width) * u64::from(height) * MAX_BYTES_PER_PIXEL,
        }
    }

    /// Refuses a declared size above the limits, saying by how much.
    pub fn check(&self, width: u32, height: u32) -> std::result::Result<(), String> {
        if width <= self.max_width && height <= self.max_height {
            return Ok(());
        }
        let limit = if self.max_width == self.max_height {
            format!("the {} px limit", self.max_width)
        } else {
            format!("the {}x{} limit", self.max_width, self.max_height)
        };
        Err(format!(
            "declares {width}x{height} pixels, more than {limit}; resize it"
        ))
    }

    fn for_decoder(&self) -> image::Limits {
        let mut limits = image::Limits::default();
        limits.max_image_width = Some(self.max_width);
        limits.max_image_height = Some(self.max_height);
        limits.max_alloc = Some(self.max_bytes);
        limits
    }
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits::photos(MAX_PHOTO_SIDE)
    }
}

/// A photo ready for detection: decoded, upright, and scaled down to at most the
/// detection bound.
#[derive(Debug, Clone)]
pub struct Photo {
    pub image: RgbImage,
    /// The decoded size, before scaling.
    pub original: (u32, u32),
}

impl Photo {
    /// Original pixels per pixel of `image` (1 when it was not scaled).
    pub fn scale(&self) -> f32 {
        if self.image.width() == 0 {
            return 1.0;
        }
        self.original.0 as f32 / self.image.width() as f32
    }

    /// A box found in `image`, in the original photo's pixels.
    pub fn to_original(&self, b: &BBox) -> BBox {
        let s = self.scale();
        BBox {
            x1: b.x1 * s,
            y1: b.y1 * s,
            x2: b.x2 * s,
            y2: b.y2 * s,
        }
    }
}

/// Decodes an image file to upright RGB within the default photo limits
/// ([`MAX_PHOTO_SIDE`]). The format is recognised from the content, not the file name.
pub fn load_rgb(path: &Path) -> Result<RgbImage> {
    load_rgb_limited(path, &DecodeLimits::default())
}

/// Decodes an image file to upright RGB, refusing it before decoding when its header
/// declares more pixels than `limits` allow.
pub fn load_rgb_limited(path: &Path, limits: &DecodeLimits) -> Result<RgbImage> {
    let fail = |reason: String| Error::Image {
        path: path.to_owned(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
    if bytes.is_empty() {
        return Err(fail("the file is empty".into()));
    }
    decode(&bytes, limits).map_err(fail)
}

/// Loads a photo for detection: decoded within `limits`, then scaled down (area
/// averaging) so that its longer side is at most `detect_max_side`.
pub fn load_photo(path: &Path, limits: &DecodeLimits, detect_max_side: u32) -> Result<Photo> {
    let image = load_rgb_limited(path, limits)?;
    let original = image.dimensions();
    Ok(Photo {
        image: shrink_to(image, detect_max_side),
        original,
    })
}

/// Scales `image` down so that its longer side is at most `max_side`, keeping the aspect
/// ratio (area averaging, like OpenCV's INTER_AREA). Smaller images are returned as they are.
pub fn shrink_to(image: RgbImage, max_side: u32) -> RgbImage {
    let (w, h) = image.dimensions();
    let longer = w.max(h);
    if longer <= max_side || max_side == 0 {
        return image;
    }
    let scale = f64::from(max_side) / f64::from(longer);
    let nw = ((f64::from(w) * scale).round() as u32).clamp(1, max_side);
    let nh = ((f64::from(h) * scale).round() as u32).clamp(1, max_side);
    imageops::thumbnail(&image, nw, nh)
}

/// Decodes an in-memory JPEG or PNG within the default photo limits.
pub fn decode_rgb(bytes: &[u8]) -> std::result::Result<RgbImage, String> {
    decode_rgb_limited(bytes, &DecodeLimits::default())
}

/// Decodes an in-memory JPEG or PNG (e.g. an MJPEG camera frame) to RGB, refusing it
/// before decoding when it declares more pixels than `limits` allow.
pub fn decode_rgb_limited(
    bytes: &[u8],
    limits: &DecodeLimits,
) -> std::result::Result<RgbImage, String> {
    if bytes.is_empty() {
        return Err("no image data (0 bytes)".into());
    }
    decode(bytes, limits)
}

fn decode(bytes: &[u8], limits: &DecodeLimits) -> std::result::Result<RgbImage, String> {
    let format = match image::guess_format(bytes) {
        Ok(f @ (ImageFormat::Jpeg | ImageFormat::Png)) => f,
        _ => return Err("not a JPEG or PNG image".into()),
    };
    if let Some((w, h)) = declared_size(bytes) {
        limits.check(w, h)?;
    }
    if format == ImageFormat::Jpeg && !jpeg_is_complete(bytes) {
        // The decoder would fill the missing part with grey and carry on.
        return Err(
            "the JPEG is truncated: it ends before its end-of-image marker (an \
                    interrupted copy or upload?)"
                .into(),
        );
    }
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    reader.limits(limits.for_decoder());
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| format!("cannot decode: {e}"))?;
    // The decoder's own reading of the header, in case the quick parse missed it.
    let (w, h) = decoder.dimensions();
    limits.check(w, h)?;
    let needed = decoder.total_bytes();
    if needed > limits.max_bytes {
        return Err(format!(
            "decoding it needs {} MiB, more than the {} MiB limit; resize it",
            needed >> 20,
            limits.max_bytes >> 20
        ));
    }
    let orientation = decoder.orientation().ok();
    let mut image = DynamicImage::from_decoder(decoder)
        .map_err(|e| format!("cannot decode (corrupt or truncated?): {e}"))?;
    if let Some(o) = orientation {
        image.apply_orientation(o);
    }
    Ok(image.into_rgb8())
}

/// The width and height an image's header declares, read without decoding: PNG's IHDR
/// or JPEG's frame header. `None` when neither is found.
pub fn declared_size(bytes: &[u8]) -> Option<(u32, u32)> {
    png_size(bytes).or_else(|| jpeg_size(bytes))
}

fn png_size(bytes: &[u8]) -> Option<(u32, u32)> {
    const SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];
    if !bytes.starts_with(&SIGNATURE) || bytes.get(12..16)? != b"IHDR" {
        return None;
    }
    let be = |at: usize| -> Option<u32> {
        Some(u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
    };
    Some((be(16)?, be(20)?))
}

/// The width and height in a JPEG's frame header (SOF0–SOF15), found by walking the
/// marker segments from the start of the image up to the first scan. `None` when the
/// bytes are not a JPEG or end before a frame header.
pub fn jpeg_size(bytes: &[u8]) -> Option<(u32, u32)> {
    walk_segments(bytes, |marker, pos, _| match marker {
        // A scan before any frame header.
        0xDA => Some(None),
        // SOFn, except DHT (C4), JPG (C8) and DAC (CC), which share the range.
        0xC0..=0xCF if !matches!(marker, 0xC4 | 0xC8 | 0xCC) => {
            // Length, precision (1 byte), height, width.
            Some(bytes.get(pos + 2..pos + 7).map(|header| {
                let height = u16::from_be_bytes([header[1], header[2]]);
                let width = u16::from_be_bytes([header[3], header[4]]);
                (u32::from(width), u32::from(height))
            }))
        }
        _ => None,
    })
}

/// Walks a JPEG's marker segments from the start of the image. `visit` gets each segment's
/// marker, where its length field starts and its length, and ends the walk by returning
/// `Some(answer)`. The walk gives `None` at another SOI or an EOI, at bytes that are not a
/// marker, or at the end of the data.
fn walk_segments<T>(
    bytes: &[u8],
    mut visit: impl FnMut(u8, usize, usize) -> Option<Option<T>>,
) -> Option<T> {
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return None;
    }
    let mut pos = 2;
    loop {
        if *bytes.get(pos)? != 0xFF {
            return None;
        }
        // Any number of fill bytes may precede a marker.
        while *bytes.get(pos + 1)? == 0xFF {
            pos += 1;
        }
        let marker = bytes[pos + 1];
        pos += 2;
        match marker {
            // Markers without a length: TEM, RSTn.
            0x01 | 0xD0..=0xD7 => continue,
            0xD8 | 0xD9 => return None,
            _ => {}
        }
        let length = usize::from(u16::from_be_bytes([*bytes.get(pos)?, *bytes.get(pos + 1)?]));
        if length < 2 {
            return None;
        }
        if let Some(answer) = visit(marker, pos, length) {
            return answer;
        }
        pos += length;
    }
}

/// Whether a JPEG reaches its end-of-image marker after its first scan. The marker
/// segments before the scan are walked by their lengths (so a thumbnail's markers inside
/// EXIF are skipped); in the entropy-coded data that follows, 0xFF is always followed by 0
/// or a restart marker, so the first 0xFF 0xD9 there is the end of the image. Data after
/// it (a phone's appended video, padding) does not matter.
pub fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let Some(scan) = first_scan(bytes) else {
        return false;
    };
    bytes[scan..].windows(2).any(|w| w == [0xFF, 0xD9])
}

/// Where the first scan's entropy-coded data starts.
fn first_scan(bytes: &[u8]) -> Option<usize> {
    walk_segments(bytes, |marker, pos, length| {
        (marker == 0xDA).then(|| (pos + length <= bytes.len()).then_some(pos + length))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::codecs::jpeg::JpegEncoder;
    use image::Rgb;

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("facelock-photo-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn jpeg(w: u32, h: u32) -> Vec<u8> {
        let image = RgbImage::from_fn(w, h, |x, y| Rgb([x as u8, y as u8, 90]));
        let mut out = Vec::new();
        JpegEncoder::new_with_quality(&mut out, 80)
            .encode_image(&image)
            .unwrap();
        out
    }

    /// A real JPEG whose frame header is rewritten to declare `w`×`h`.
    fn jpeg_declaring(w: u16, h: u16) -> Vec<u8> {
        let mut bytes = jpeg(16, 16);
        let at = bytes
            .windows(2)
            .position(|m| m == [0xFF, 0xC0])
            .expect("a baseline frame header");
        bytes[at + 5..at + 7].copy_from_slice(&h.to_be_bytes());
        bytes[at + 7..at + 9].copy_from_slice(&w.to_be_bytes());
        bytes
    }

    #[test]
    fn empty_file_is_reported_as_empty() {
        let dir = scratch("empty");
        let path = dir.join("empty.jpg");
        std::fs::write(&path, b"").unwrap();
        let err = load_rgb(&path).unwrap_err().to_string();
        assert!(err.contains("empty"), "{err}");
        let path = dir.join("notes.jpg");
        std::fs::write(&path, b"these are not pixels").unwrap();
        let err = load_rgb(&path).unwrap_err().to_string();
        assert!(err.contains("not a JPEG or PNG"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_declared_size_is_read_from_the_header() {
        assert_eq!(jpeg_size(&jpeg(33, 17)), Some((33, 17)));
        assert_eq!(
            declared_size(&jpeg_declaring(65000, 65000)),
            Some((65000, 65000))
        );
        let mut png = Vec::new();
        RgbImage::new(40, 30)
            .write_to(&mut Cursor::new(&mut png), ImageFormat::Png)
            .unwrap();
        assert_eq!(declared_size(&png), Some((40, 30)));
        assert_eq!(declared_size(b"\xFF\xD8\xFF"), None);
        assert_eq!(declared_size(b"not an image"), None);
        // A scan before any frame header: no size.
        assert_eq!(jpeg_size(&[0xFF, 0xD8, 0xFF, 0xDA, 0x00, 0x02]), None);
    }

    #[test]
    fn a_jpeg_declaring_65000_pixels_a_side_is_refused_before_decoding() {
        let bytes = jpeg_declaring(65000, 65000);
        assert!(bytes.len() < 4096);
        let err = decode_rgb(&bytes).unwrap_err();
        assert!(err.contains("declares 65000x65000 pixels"), "{err}");
        assert!(err.contains("8192 px limit"), "{err}");
        let err = decode_rgb_limited(&bytes, &DecodeLimits::frames(640, 480)).unwrap_err();
        assert!(err.contains("1280x960 limit"), "{err}");
    }

    #[test]
    fn frames_up_to_twice_the_configured_size_decode() {
        let limits = DecodeLimits::frames(64, 48);
        assert_eq!(
            decode_rgb_limited(&jpeg(128, 96), &limits)
                .unwrap()
                .dimensions(),
            (128, 96)
        );
        let err = decode_rgb_limited(&jpeg(129, 96), &limits).unwrap_err();
        assert!(err.contains("declares 129x96"), "{err}");
    }

    #[test]
    fn large_photos_are_scaled_down_for_detection() {
        let dir = scratch("shrink");
        let path = dir.join("wide.jpg");
        std::fs::write(&path, jpeg(300, 100)).unwrap();
        let photo = load_photo(&path, &DecodeLimits::default(), 150).unwrap();
        assert_eq!(photo.image.dimensions(), (150, 50));
        assert_eq!(photo.original, (300, 100));
        assert_eq!(photo.scale(), 2.0);
        let b = photo.to_original(&BBox {
            x1: 10.0,
            y1: 5.0,
            x2: 20.0,
            y2: 15.0,
        });
        assert_eq!((b.x1, b.y1, b.x2, b.y2), (20.0, 10.0, 40.0, 30.0));
        let small = load_photo(&path, &DecodeLimits::default(), 2048).unwrap();
        assert_eq!((small.image.dimensions(), small.scale()), ((300, 100), 1.0));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_truncated_jpeg_is_refused_and_trailing_data_after_the_end_is_not() {
        let whole = jpeg(64, 48);
        assert!(jpeg_is_complete(&whole));
        assert!(decode_rgb(&whole).is_ok());
        let cut = &whole[..whole.len() * 2 / 3];
        assert!(!jpeg_is_complete(cut));
        assert!(decode_rgb(cut).unwrap_err().contains("truncated"));
        let mut with_trailer = whole.clone();
        with_trailer.extend_from_slice(&[0u8; 100]);
        with_trailer.extend_from_slice(b"ftypmp42 appended video");
        assert!(jpeg_is_complete(&with_trailer));
        assert!(!jpeg_is_complete(b"not a jpeg"));
    }
}

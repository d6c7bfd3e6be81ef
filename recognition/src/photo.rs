//! Reading photos from disk: any JPEG or PNG, EXIF orientation honoured,
//! converted to RGB. Errors say what is wrong with which file.

use std::path::Path;

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, RgbImage};

use crate::error::{Error, Result};

/// Decodes an image file to upright RGB. The format is recognised from the
/// content, not the file name.
pub fn load_rgb(path: &Path) -> Result<RgbImage> {
    let fail = |reason: String| Error::Image {
        path: path.to_owned(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
    if bytes.is_empty() {
        return Err(fail("the file is empty".into()));
    }
    let format = match image::guess_format(&bytes) {
        Ok(f @ (ImageFormat::Jpeg | ImageFormat::Png)) => f,
        _ => return Err(fail("not a JPEG or PNG image".into())),
    };
    let mut decoder = ImageReader::with_format(Cursor::new(&bytes), format)
        .into_decoder()
        .map_err(|e| fail(format!("cannot decode: {e}")))?;
    let orientation = decoder.orientation().ok();
    let mut image = DynamicImage::from_decoder(decoder)
        .map_err(|e| fail(format!("cannot decode (corrupt or truncated?): {e}")))?;
    if let Some(o) = orientation {
        image.apply_orientation(o);
    }
    Ok(image.to_rgb8())
}

/// Decodes an in-memory JPEG or PNG (e.g. an MJPEG camera frame) to RGB.
pub fn decode_rgb(bytes: &[u8]) -> std::result::Result<RgbImage, String> {
    image::load_from_memory(bytes)
        .map(|i| i.to_rgb8())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_reported_as_empty() {
        let dir = std::env::temp_dir().join(format!("facelock-photo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
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
}
